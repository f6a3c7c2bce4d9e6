"""The README's "Use it from ..." examples run as written (from a scratch directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    text = README.read_text()
    start = text.index("## Use it from PyTorch, Keras, JAX and XGBoost")
    section = text[start:text.index("\n## ", start + 3)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_one_example_per_framework():
    code = "\n".join(_blocks())
    for module in ("losskit.torch", "losskit.keras", "losskit import optax", "xgboost",
                   "linear_cross_entropy"):
        assert module in code


@pytest.mark.parametrize("code", _blocks(), ids=lambda c: c.splitlines()[0][:40])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
