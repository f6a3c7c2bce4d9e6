"""Smoke tests of the benchmarks: benchmarks/speed.py's quick run exits 0 and prints its table;
benchmarks/catalog.py writes a row for every registered loss, and the committed docs/catalog.md has one.

Timings are never asserted: they depend on the machine and its load.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "speed.py"
CATALOG_SCRIPT = ROOT / "benchmarks" / "catalog.py"
CATALOG_PAGE = ROOT / "docs" / "catalog.md"
CATALOG_ROW = re.compile(r"^\| `([A-Za-z0-9_]+)` \| `[A-Za-z0-9_]+` \|")
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


def catalog_rows(text: str) -> list[str]:
    """The loss names of the rows of a catalog page."""
    return [m.group(1) for line in text.splitlines() if (m := CATALOG_ROW.match(line))]


def registered() -> list[str]:
    from losskit.losses._registry import definitions

    return sorted(d.name for d in definitions())


def test_catalog_page_lists_every_registered_loss():
    rows = catalog_rows(CATALOG_PAGE.read_text())
    missing = sorted(set(registered()) - set(rows))
    stale = sorted(set(rows) - set(registered()))
    hint = "docs/catalog.md is out of date; regenerate it with `python benchmarks/catalog.py`"
    assert not missing, f"{hint} (no row for: {missing})"
    assert not stale, f"{hint} (rows of unregistered losses: {stale})"
    assert len(rows) == len(set(rows)), "docs/catalog.md lists a loss twice"


def test_catalog_script_writes_a_row_per_loss(tmp_path):
    output = tmp_path / "catalog.md"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, str(CATALOG_SCRIPT), "--output", str(output)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(catalog_rows(output.read_text())) == registered()
    assert output.read_text().strip() == result.stdout.strip()
