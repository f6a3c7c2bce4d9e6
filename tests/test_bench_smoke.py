"""Smoke test of benchmarks/speed.py: the quick run exits 0 and prints its table.

Timings are never asserted: they depend on the machine and its load.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "speed.py"
PEERS = ["PyTorch", "JAX jit", "Keras jit", "NumPy"]
DATA_ROW = re.compile(r"^\| [a-z_]+.* \| \d+ x \d+ \| value(\+grad)? \| [\d.e+-]+ \|")


def run_quick(output: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    command = [sys.executable, str(SCRIPT), "--quick", "--output", str(output)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_quick_benchmark_prints_a_table(tmp_path):
    output = tmp_path / "speed.md"
    result = run_quick(output)
    assert result.returncode == 0, result.stderr[-3000:]

    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| loss |"))
    for peer in PEERS:
        assert f"{peer} ms (ratio)" in header
    rows = [line for line in lines if DATA_ROW.match(line)]
    modes = {row.split(" | ")[2] for row in rows}
    assert modes == {"value", "value+grad"}
    assert len(rows) >= 20
    assert output.read_text().strip() == result.stdout.strip()
