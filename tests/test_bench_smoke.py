"""Smoke tests of the benchmarks: benchmarks/speed.py's quick run exits 0 and reports every registered
loss and every target of issue 8;
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
IMPLS = ["losskit NumPy", "NumPy formula", "PyTorch", "losskit torch", "losskit JAX", "Optax", "Keras"]
RATIOS = ["NumPy / PyTorch", "NumPy / formula", "torch / PyTorch", "JAX / Optax", "JAX / Keras"]
TIME_ROW = re.compile(r"^\| ([a-z_0-9]+)(?: \([^)]*\))? \| \d+x\d+ \| (value|value\+grad) \| ")
TIMED = re.compile(r"^[\d.e+-]+( \[\d+\])*$")
MISSING = re.compile(r"^— \[(\d+)\]$")
TARGETS = ["PyTorch's own loss", "Optax", "tutorial's seven (float32)", "rest of the catalog",
           "float64", "peak memory", "(32, 1) call", "compile time"]


def run_quick(output: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    command = [sys.executable, str(SCRIPT), "--quick", "--output", str(output)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def section(text: str, heading: str) -> list[str]:
    """The lines of the Markdown section whose heading starts with ``heading``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start + 1:end]


def test_quick_benchmark_reports_every_loss_and_target(tmp_path):
    output = tmp_path / "speed.md"
    result = run_quick(output)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    assert output.read_text().strip() == text.strip()
    assert "losskit's time divided by the peer's time" in text

    # the summary has a row per target, each with a worst ratio and a verdict
    summary = [line for line in section(text, "## Summary") if line.startswith("| ") and "goal" not in line]
    for target in TARGETS:
        row = next((cells(line) for line in summary if target in line), None)
        assert row is not None, f"no summary row for {target!r}"
        assert re.match(r"^[\d.]+( s|x) \(", row[2]), row
        assert row[3] == "met" or row[3].startswith("**missed**"), row

    # the float32 table: every registered loss, both modes, and every column either a time or a note
    rows = [cells(line) for line in section(text, "## Time, float32") if TIME_ROW.match(line)]
    header = cells(next(line for line in section(text, "## Time, float32") if line.startswith("| loss")))
    assert header[3:] == [f"{impl} ms" for impl in IMPLS] + RATIOS
    assert {TIME_ROW.match("| " + " | ".join(r) + " |").group(1) for r in rows} == set(registered())
    assert {r[2] for r in rows} == {"value", "value+grad"}
    notes = [line for line in section(text, "## Notes") if re.match(r"^\d+\. ", line)]
    for row in rows:
        for cell in row[3:3 + len(IMPLS)]:
            missing = MISSING.match(cell)
            assert TIMED.match(cell) or (missing and int(missing.group(1)) <= len(notes)), row
    # losskit itself runs everywhere it is asked to: on NumPy and torch for every loss, and under jax.jit
    # (with Optax and Keras) for the cases --quick compiles
    assert all(TIMED.match(r[3]) and TIMED.match(r[6]) for r in rows)
    for column in (7, 8, 9):
        assert any(TIMED.match(r[column]) for r in rows), IMPLS[column - 3]
    rows64 = [cells(line) for line in section(text, "## Time, float64") if TIME_ROW.match(line)]
    assert {r[0] for r in rows64} >= {"mean_squared_error", "binary_crossentropy", "kl_divergence"}

    # the memory, small-batch and compile tables are filled
    for heading in ("## Peak memory", "## One call", "## `jax.jit` compile time"):
        body = [line for line in section(text, heading)
                if line.startswith("| ") and not line.startswith(("| loss", "|---"))]
        assert len(body) >= 3, heading

    # --merge: re-measure one loss into this record; every other row is kept as it was
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    again = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--only", "mae", "--merge",
                            "--output", str(output)], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    merged = output.read_text()
    assert "partial run" not in merged
    assert "Merged report" in merged
    assert "mean_absolute_error were measured at" in merged
    kept = [line for line in section(text, "## Time, float32")
            if TIME_ROW.match(line) and not line.startswith("| mean_absolute_error |")]
    assert kept
    assert all(line in merged for line in kept)
    remeasured = [cells(line) for line in section(merged, "## Time, float32")
                  if line.startswith("| mean_absolute_error |")]
    assert {r[2] for r in remeasured} == {"value", "value+grad"}


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
