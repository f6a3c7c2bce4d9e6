"""examples/evaluate_demo.py runs end to end on a small data set and finds the miscalibrated country."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[2]


def test_demo_flags_the_miscalibrated_country(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "evaluate_demo.py"), "--rows",
                           "60000", "--replicates", "5", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    worst = proc.stdout.split("worst first:")[1].splitlines()[1]
    assert worst.strip().startswith("BR:")
    assert "<- the miscalibrated slice" in worst
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["rows_read"] == 60000
    assert (tmp_path / "report" / "reliability.png").stat().st_size > 10_000
