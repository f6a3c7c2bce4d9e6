"""``jax.jit`` compile time of every registered loss (issue 8 item 6, issue 9 item 2).

The double-length logarithm once unrolled into a chain that XLA's CPU fusion emitters re-emitted
without sharing, so compiling ``Poisson`` on a 4x5 float32 input took minutes and more than 6 GB.
Here every registered loss (with its default options, plus the options that take the double-length
paths) is jitted under ``jax.value_and_grad`` on a tiny input, in a subprocess
with a memory cap and a time limit, and the compile times are reported (``pytest -s`` prints them).
Float32 runs with JAX's default precision; the double-length losses also run with x64 enabled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[1]

PER_LOSS_LIMIT = 20.0
"""Seconds for one loss's lowering and compilation: about 0.1-1 s on an idle 2-core machine, up
to 7 s measured with the cores shared by ~14 busy processes; the regression took over a minute."""
MEMORY_LIMIT = 4 * 2**30
"""Address space of the subprocess: the regression reached 6 GB before it was stopped."""

EXTRA_OPTIONS = {
    # the options that take the double-length logarithm/exponential or their selections
    "poisson_nll": [{"log_input": False}, {"full": True}, {"log_input": False, "full": True}],
    "kl_div": [{"log_target": True}],
    "generalized_kl_divergence": [{"log_predictions": True}],
    "mean_tweedie_deviance": [{"power": 1.0}, {"power": 1.5}, {"power": 2.0}, {"power": 3.0}],
}
DOUBLE_LENGTH = ("poisson", "poisson_nll", "kl_div", "generalized_kl_divergence", "cosine_similarity",
                 "mean_tweedie_deviance")

SCRIPT = r"""
import json, os, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
import numpy as np
import jax
import jax.numpy as jnp
sys.path.insert(0, {tests!r})
from conftest import make_inputs
from losskit.losses import _registry
extra = json.loads({extra!r})
only = json.loads({only!r})
dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
for defn in _registry.definitions():
    if only and defn.name not in only:
        continue
    for opts in [{{}}] + extra.get(defn.name, []):
        inp = make_inputs(defn, opts, np.random.default_rng(0), shape=(4, 5), dtype=dtype)
        loss = _registry._CLASSES[defn.class_name](**opts)
        args = (jnp.asarray(inp.y_pred), jnp.asarray(inp.y_true),
                {{k: jnp.asarray(v) for k, v in inp.extras.items()}})
        f = jax.jit(jax.value_and_grad(lambda p, y, ex: loss(y, p, **ex)))
        start = time.perf_counter()
        compiled = f.lower(*args).compile()
        seconds = time.perf_counter() - start
        value, grad = compiled(*args)
        print(json.dumps([defn.name, opts, seconds, bool(np.isfinite(float(value)))]), flush=True)
"""


def _compile_times(x64: bool, only: tuple[str, ...]) -> list[tuple[str, dict, float, bool]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               JAX_ENABLE_X64="1" if x64 else "0")
    code = SCRIPT.format(memory=MEMORY_LIMIT, tests=str(ROOT / "tests"),
                         extra=json.dumps(EXTRA_OPTIONS), only=json.dumps(list(only)))
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=env, timeout=150, check=False, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - the failure being guarded
        done = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"compiling every loss took over 150 s; finished:\n{done}")
    rows = [tuple(json.loads(line)) for line in result.stdout.splitlines() if line.startswith("[")]
    assert result.returncode == 0, (
        f"the compile run failed (exit {result.returncode}; a memory cap of "
        f"{MEMORY_LIMIT / 2**30:.0f} GB is set) after {len(rows)} losses:\n{result.stderr[-3000:]}")
    return rows  # type: ignore[return-value]


def _report(title: str, rows: list[tuple[str, dict, float, bool]]) -> None:
    print(f"\n{title}: jax.jit(value_and_grad) compile seconds, slowest first")
    for name, opts, seconds, _ in sorted(rows, key=lambda r: -r[2]):
        print(f"  {seconds:6.2f}  {name} {opts or ''}")


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "x64"])
def test_every_loss_compiles_quickly(x64: bool) -> None:
    from losskit.losses import _registry

    rows = _compile_times(x64, DOUBLE_LENGTH if x64 else ())
    _report("x64, float64 input" if x64 else "float32", rows)
    names = {r[0] for r in rows}
    expected = set(DOUBLE_LENGTH) if x64 else {d.name for d in _registry.definitions()}
    assert names == expected
    slow = [(name, opts, round(s, 2)) for name, opts, s, _ in rows if s > PER_LOSS_LIMIT]
    assert not slow, f"compile time above {PER_LOSS_LIMIT} s: {slow}"
    assert all(finite for *_, finite in rows), [r for r in rows if not r[3]]
