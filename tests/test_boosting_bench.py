"""Smoke test of benchmarks/boosting.py: the quick run exits 0, prints a row per case, and rewrites
only the table between the markers of its output file. Timings are never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "boosting.py"


def test_quick_boosting_benchmark(tmp_path):
    out = tmp_path / "speed.md"
    out.write_text("prose before\n<!-- table:start -->\nold table\n<!-- table:end -->\nprose after\n")
    cmd = [sys.executable, str(SCRIPT), "--quick", "--only", "poisson", "--output", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| poisson |")]
    assert {row.split(" | ")[1] for row in rows} == {"near", "counts", "generic"}
    text = out.read_text()
    assert text.startswith("prose before\n<!-- table:start -->")
    assert text.endswith("<!-- table:end -->\nprose after\n")
    assert "old table" not in text
    assert "| poisson | near | 1,000 |" in text


def test_quick_training_benchmark(tmp_path):
    """``--training-only`` trains XGBoost and LightGBM with losskit's and the built-in objectives and
    writes its own table between its markers (appended when the file has none)."""
    out = tmp_path / "speed.md"
    out.write_text("prose\n")
    cmd = [sys.executable, str(SCRIPT), "--quick", "--training-only", "--output", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("prose\n<!-- training:start -->")
    for lib in ("xgboost", "lightgbm"):
        for loss in ("squared_error", "poisson", "binomial", "multinomial"):
            assert f"| {lib} | {loss} | 2,000 |" in text
