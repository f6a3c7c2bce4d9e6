"""Every ```python snippet in docs/training.md runs: the losskit.nn snippets in order in one namespace
(as a reader would type them), each Keras snippet on its own when Keras is installed."""

from __future__ import annotations

import os
import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "training.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def _is_keras(block: str) -> bool:
    return re.search(r"^\s*(from keras|import keras)", block, flags=re.MULTILINE) is not None


def test_the_page_has_snippets():
    assert len([b for b in BLOCKS if not _is_keras(b)]) >= 4


def test_losskit_snippets_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "training_md"}
    for i, block in enumerate(BLOCKS):
        if _is_keras(block):
            continue
        try:
            exec(compile(block, f"docs/training.md snippet {i}", "exec"), namespace)
        except Exception as error:  # pragma: no cover - the message says which snippet failed
            pytest.fail(f"docs/training.md snippet {i} failed: {error!r}\n{block}")


@pytest.mark.parametrize("index", [i for i, b in enumerate(BLOCKS) if _is_keras(b)])
def test_keras_snippets_run(index, monkeypatch):
    monkeypatch.setitem(os.environ, "KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "jax"))
    pytest.importorskip("keras")
    block = BLOCKS[index].replace("epochs=10", "epochs=1")  # the program as written, one epoch (speed)
    exec(compile(block, f"docs/training.md snippet {index}", "exec"), {"__name__": "training_md"})
