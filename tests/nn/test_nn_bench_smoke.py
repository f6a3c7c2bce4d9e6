"""benchmarks/train.py --quick runs every worker (losskit, Keras, PyTorch) and writes its tables.
Timings are never asserted."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_train_benchmark_quick_run_writes_its_tables(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    out = tmp_path / "train-speed.md"
    command = [sys.executable, str(ROOT / "benchmarks" / "train.py"), "--quick", "--out", str(out)]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    for row in ("| losskit.nn |", "| Keras 3 (JAX) |", "| PyTorch loop |", "| Keras / losskit |",
                "| PyTorch / losskit |", "1,280 random samples", "## Default threads on a busy machine",
                "| losskit.nn, BLAS not limited |"):
        assert row in text
