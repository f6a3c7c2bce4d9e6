"""The demo program (make demo): the tutorial trains, and the plot is written or its absence explained."""

from __future__ import annotations

import builtins
import importlib.util
import pathlib

import numpy as np

TUTORIAL = pathlib.Path(__file__).resolve().parents[2] / "examples" / "tutorial.py"


def _module():
    spec = importlib.util.spec_from_file_location("examples_tutorial", TUTORIAL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tutorial_trains_with_progress_and_plots(tmp_path, capsys):
    demo = _module()
    np.random.seed(0)  # noqa: NPY002  (the tutorial draws its data from the legacy global generator)
    demo.main([str(tmp_path / "loss.png")])
    out = capsys.readouterr().out
    assert "Epoch 10/10" in out
    assert "32/32 ━━━━━━━━━━━━━━━━━━━━" in out
    if (tmp_path / "loss.png").exists():
        assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"training loss plot: {tmp_path / 'loss.png'}" in out
    else:
        assert "pip install 'losskit[plot]'" in out


def test_without_matplotlib_the_demo_says_how_to_get_the_plot(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    demo = _module()
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert demo.plot_loss([1.0, 0.5], str(tmp_path / "x.png")) is None
    demo.main([str(tmp_path / "x.png")])
    assert "pip install 'losskit[plot]'" in capsys.readouterr().out
    assert not (tmp_path / "x.png").exists()
