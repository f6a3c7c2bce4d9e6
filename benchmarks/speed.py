"""Speed of losskit against PyTorch, JAX, Keras 3 (on JAX) and the textbook NumPy formula.

Times the reduced loss ("value") and the loss with its gradient w.r.t. y_pred ("value+grad") on
float32 inputs, in one run, and prints a Markdown table (milliseconds; ratio = peer time /
losskit time, so above 1 means losskit is faster).  The full run writes it to docs/speed.md
with the machine's facts; ``--quick`` uses small shapes and is a smoke test.

    python benchmarks/speed.py            # full run, about 3 to 5 minutes on 2 cores
    python benchmarks/speed.py --quick    # seconds; writes a file only with --output

Each cell is the median of several calls after one warm-up call (which also compiles the jitted
peers).  JAX results are waited for with block_until_ready; PyTorch uses every core.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ["KERAS_BACKEND"] = "jax"

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import torch
import torch.nn.functional as F

import losskit

CROSS_ENTROPY_SHAPES = [(65536, 10), (8192, 1000), (1024, 32000)]
REGRESSION_SHAPE = (10_000, 1000)
OTHER_SHAPE = (8192, 1000)
QUICK_CROSS_ENTROPY_SHAPES = [(512, 10), (64, 100)]
QUICK_REGRESSION_SHAPE = (100, 100)
QUICK_OTHER_SHAPE = (64, 100)

MIN_REPEATS, MAX_REPEATS, TIME_BUDGET_S = 3, 15, 0.4
SLOW_CALL_S, SLOW_MIN_REPEATS = 1.0, 2  # calls over a second: 2 timed repeats keep the run short
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "speed.md"

Arrays = tuple[np.ndarray, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Inputs (float32; integer labels for the sparse losses).
# ---------------------------------------------------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _normal(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def soft_labels_logits(rng, shape) -> Arrays:
    return rng.random(shape, dtype=np.float32), 3 * _normal(rng, shape)


def soft_labels_probs(rng, shape) -> Arrays:
    return rng.random(shape, dtype=np.float32), rng.uniform(0.02, 0.98, shape).astype(np.float32)


def distributions_logits(rng, shape) -> Arrays:
    return _softmax(_normal(rng, shape)), 2 * _normal(rng, shape)


def distributions(rng, shape) -> Arrays:
    return _softmax(_normal(rng, shape)), _softmax(_normal(rng, shape))


def indices_logits(rng, shape) -> Arrays:
    return rng.integers(0, shape[-1], shape[:-1]), 2 * _normal(rng, shape)


def indices_probs(rng, shape) -> Arrays:
    return rng.integers(0, shape[-1], shape[:-1]), _softmax(_normal(rng, shape))


def regression(rng, shape) -> Arrays:
    return _normal(rng, shape), _normal(rng, shape)


def signed_labels(rng, shape) -> Arrays:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32), _normal(rng, shape)


# ---------------------------------------------------------------------------------------------
# Textbook NumPy formulas: the mean over the batch, and its gradient.
# ---------------------------------------------------------------------------------------------


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _rows(labels: np.ndarray) -> np.ndarray:
    return np.arange(labels.shape[0])


def np_bce_probs(t, p, grad):
    value = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    return (value, (p - t) / (p * (1 - p)) / p.size) if grad else value


def np_bce_logits(t, x, grad):
    value = np.mean(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))
    return (value, (1 / (1 + np.exp(-x)) - t) / x.size) if grad else value


def np_cce_logits(t, x, grad):
    log_p = _log_softmax(x)
    value = -np.mean(np.sum(t * log_p, axis=-1))
    return (value, (np.exp(log_p) - t) / x.shape[0]) if grad else value


def np_cce_probs(t, p, grad):
    value = -np.mean(np.sum(t * np.log(p), axis=-1))
    return (value, -t / p / p.shape[0]) if grad else value


def np_scce_logits(labels, x, grad):
    log_p = _log_softmax(x)
    value = -np.mean(log_p[_rows(labels), labels])
    if not grad:
        return value
    g = np.exp(log_p)
    g[_rows(labels), labels] -= 1
    return value, g / x.shape[0]


def np_scce_probs(labels, p, grad):
    picked = p[_rows(labels), labels]
    value = -np.mean(np.log(picked))
    if not grad:
        return value
    g = np.zeros_like(p)
    g[_rows(labels), labels] = -1 / picked / p.shape[0]
    return value, g


def np_mse(t, p, grad):
    d = p - t
    return (np.mean(d * d), 2 * d / d.size) if grad else np.mean(d * d)


def np_mae(t, p, grad):
    d = p - t
    return (np.mean(np.abs(d)), np.sign(d) / d.size) if grad else np.mean(np.abs(d))


def np_kld(t, p, grad):
    value = np.sum(t * np.log(t / p)) / p.shape[0]
    return (value, -t / p / p.shape[0]) if grad else value


def np_hinge(y, f, grad):
    margin = 1 - y * f
    value = np.mean(np.maximum(margin, 0))
    return (value, np.where(margin > 0, -y, 0) / f.size) if grad else value


# ---------------------------------------------------------------------------------------------
# The losses: losskit class, the PyTorch and JAX formulations, the Keras class, NumPy formula.
# ---------------------------------------------------------------------------------------------


def _jax_pick(p, labels):
    return jnp.take_along_axis(p, labels[:, None], axis=-1)


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[np.random.Generator, tuple], Arrays]
    losskit: Callable[[], Any]
    keras: Callable[[], Any]
    torch: Callable[[Any, Any], Any]
    jax: Callable[[Any, Any], Any]
    numpy: Callable[[np.ndarray, np.ndarray, bool], Any]


L = optax.losses
FAMILIES = {
    "bce_logits": Family(
        "binary_crossentropy (logits)",
        soft_labels_logits,
        lambda: losskit.BinaryCrossentropy(from_logits=True),
        lambda: keras.losses.BinaryCrossentropy(from_logits=True),
        lambda t, x: F.binary_cross_entropy_with_logits(x, t),
        lambda t, x: L.sigmoid_binary_cross_entropy(x, t).mean(),
        np_bce_logits,
    ),
    "bce_probs": Family(
        "binary_crossentropy (probs)",
        soft_labels_probs,
        losskit.BinaryCrossentropy,
        keras.losses.BinaryCrossentropy,
        lambda t, p: F.binary_cross_entropy(p, t),
        lambda t, p: -jnp.mean(t * jnp.log(p) + (1 - t) * jnp.log1p(-p)),
        np_bce_probs,
    ),
    "cce_logits": Family(
        "categorical_crossentropy (logits)",
        distributions_logits,
        lambda: losskit.CategoricalCrossentropy(from_logits=True),
        lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
        lambda t, x: F.cross_entropy(x, t),
        lambda t, x: L.softmax_cross_entropy(x, t).mean(),
        np_cce_logits,
    ),
    "cce_probs": Family(
        "categorical_crossentropy (probs)",
        distributions,
        losskit.CategoricalCrossentropy,
        keras.losses.CategoricalCrossentropy,
        lambda t, p: -(t * torch.log(p)).sum(-1).mean(),
        lambda t, p: -jnp.mean(jnp.sum(t * jnp.log(p), axis=-1)),
        np_cce_probs,
    ),
    "scce_logits": Family(
        "sparse_categorical_crossentropy (logits)",
        indices_logits,
        lambda: losskit.SparseCategoricalCrossentropy(from_logits=True),
        lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        lambda t, x: F.cross_entropy(x, t),
        lambda t, x: L.softmax_cross_entropy_with_integer_labels(x, t).mean(),
        np_scce_logits,
    ),
    "scce_probs": Family(
        "sparse_categorical_crossentropy (probs)",
        indices_probs,
        losskit.SparseCategoricalCrossentropy,
        keras.losses.SparseCategoricalCrossentropy,
        lambda t, p: F.nll_loss(torch.log(p), t),
        lambda t, p: -jnp.mean(jnp.log(_jax_pick(p, t))),
        np_scce_probs,
    ),
    "mse": Family(
        "mean_squared_error",
        regression,
        losskit.MeanSquaredError,
        keras.losses.MeanSquaredError,
        lambda t, p: F.mse_loss(p, t),
        lambda t, p: L.squared_error(p, t).mean(),
        np_mse,
    ),
    "mae": Family(
        "mean_absolute_error",
        regression,
        losskit.MeanAbsoluteError,
        keras.losses.MeanAbsoluteError,
        lambda t, p: F.l1_loss(p, t),
        lambda t, p: jnp.mean(jnp.abs(p - t)),
        np_mae,
    ),
    "kld": Family(
        "kl_divergence",
        distributions,
        losskit.KLDivergence,
        keras.losses.KLDivergence,
        lambda t, p: F.kl_div(torch.log(p), t, reduction="batchmean"),
        lambda t, p: L.kl_divergence(jnp.log(p), t).sum() / p.shape[0],
        np_kld,
    ),
    "hinge": Family(
        "hinge",
        signed_labels,
        losskit.Hinge,
        keras.losses.Hinge,
        lambda y, f: torch.clamp_min(1 - y * f, 0).mean(),
        lambda y, f: L.hinge_loss(f, y).mean(),
        np_hinge,
    ),
}


def problems(quick: bool) -> list[tuple[str, tuple[int, ...]]]:
    ce_shapes = QUICK_CROSS_ENTROPY_SHAPES if quick else CROSS_ENTROPY_SHAPES
    regression_shape = QUICK_REGRESSION_SHAPE if quick else REGRESSION_SHAPE
    other_shape = QUICK_OTHER_SHAPE if quick else OTHER_SHAPE
    cross_entropies = ["bce_logits", "bce_probs", "cce_logits", "cce_probs"]
    cross_entropies += ["scce_logits", "scce_probs"]
    ce = [(key, shape) for key in cross_entropies for shape in ce_shapes]
    others = [("mse", regression_shape), ("mae", regression_shape)]
    others += [("kld", other_shape), ("hinge", other_shape)]
    return ce + others


# ---------------------------------------------------------------------------------------------
# Runners: (value, value+grad) callables per implementation, each waiting for its result.
# ---------------------------------------------------------------------------------------------

Runner = Callable[[], Any]


def losskit_runners(family: Family, t: np.ndarray, p: np.ndarray) -> tuple[Runner, Runner]:
    loss = family.losskit()
    return (lambda: loss(t, p)), (lambda: loss.value_and_gradient(t, p))


def torch_runners(family: Family, t: np.ndarray, p: np.ndarray) -> tuple[Runner, Runner]:
    tt, tp = torch.from_numpy(t), torch.from_numpy(p)

    def value():
        with torch.no_grad():
            return family.torch(tt, tp)

    def value_and_grad():
        leaf = tp.detach().requires_grad_(True)
        loss = family.torch(tt, leaf)
        return loss.detach(), torch.autograd.grad(loss, leaf)[0]

    return value, value_and_grad


def _jitted_runners(fn, t: np.ndarray, p: np.ndarray) -> tuple[Runner, Runner]:
    jt, jp = jnp.asarray(t), jnp.asarray(p)
    value = jax.jit(fn)
    value_and_grad = jax.jit(jax.value_and_grad(fn, argnums=1))
    return (
        lambda: jax.block_until_ready(value(jt, jp)),
        lambda: jax.block_until_ready(value_and_grad(jt, jp)),
    )


def jax_runners(family: Family, t: np.ndarray, p: np.ndarray) -> tuple[Runner, Runner]:
    return _jitted_runners(family.jax, t, p)


def keras_runners(family: Family, t: np.ndarray, p: np.ndarray) -> tuple[Runner, Runner]:
    loss = family.keras()
    return _jitted_runners(lambda a, b: loss(a, b), t, p)


def numpy_runners(family: Family, t: np.ndarray, p: np.ndarray) -> tuple[Runner, Runner]:
    return (lambda: family.numpy(t, p, False)), (lambda: family.numpy(t, p, True))


IMPLEMENTATIONS = {
    "losskit": losskit_runners,
    "PyTorch": torch_runners,
    "JAX jit": jax_runners,
    "Keras jit": keras_runners,
    "NumPy": numpy_runners,
}
PEERS = [name for name in IMPLEMENTATIONS if name != "losskit"]


def median_seconds(run: Runner) -> float:
    """Median wall time of ``run`` after one warm-up call: at least MIN_REPEATS calls (only
    SLOW_MIN_REPEATS when the warm-up took over SLOW_CALL_S), more while the total stays under
    TIME_BUDGET_S (at most MAX_REPEATS)."""
    start = time.perf_counter()
    run()
    slow = time.perf_counter() - start > SLOW_CALL_S
    min_repeats = SLOW_MIN_REPEATS if slow else MIN_REPEATS
    times: list[float] = []
    while len(times) < min_repeats or (len(times) < MAX_REPEATS and sum(times) < TIME_BUDGET_S):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------
# Table and machine facts.
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    loss: str
    shape: tuple[int, ...]
    mode: str
    seconds: dict[str, float]


def time_problem(key: str, shape: tuple[int, ...], seed: int = 0) -> list[Row]:
    family = FAMILIES[key]
    t, p = family.make(np.random.default_rng(seed), shape)
    timings: dict[str, tuple[float, float]] = {}
    for name, make_runners in IMPLEMENTATIONS.items():
        value, value_and_grad = make_runners(family, t, p)
        timings[name] = (median_seconds(value), median_seconds(value_and_grad))
    return [
        Row(family.name, shape, mode, {name: pair[i] for name, pair in timings.items()})
        for i, mode in enumerate(["value", "value+grad"])
    ]


def format_cell(seconds: float, reference: float | None = None) -> str:
    ms = f"{seconds * 1e3:.3g}" if seconds < 1e-3 else f"{seconds * 1e3:.1f}"
    return ms if reference is None else f"{ms} ({seconds / reference:.3g}x)"


def markdown_table(rows: list[Row]) -> str:
    header = ["loss", "shape", "mode", "losskit ms", *(f"{peer} ms (ratio)" for peer in PEERS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        ours = row.seconds["losskit"]
        shape = " x ".join(str(n) for n in row.shape)
        cells = [row.loss, shape, row.mode, format_cell(ours)]
        cells += [format_cell(row.seconds[peer], ours) for peer in PEERS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> list[str]:
    blas_env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores (torch threads: {torch.get_num_threads()})",
        f"- Python {platform.python_version()} on {platform.system()} {platform.machine()}",
        f"- numpy {np.__version__}, torch {torch.__version__}, jax {jax.__version__}, "
        f"keras {keras.__version__} (backend {keras.backend.backend()}), "
        f"optax {optax.__version__}, losskit {losskit.__version__}",
        f"- OpenBLAS environment: {blas_env or 'none set'}",
        "- Load average (1, 5, 15 min) at the end of the run: "
        + ", ".join(f"{load:.1f}" for load in os.getloadavg()),
    ]


def report(rows: list[Row], quick: bool, elapsed: float) -> str:
    title = "# losskit speed" + (" (--quick smoke run, small shapes)" if quick else "")
    return "\n".join(
        [
            title,
            "",
            "Generated by `python benchmarks/speed.py`: float32, the default reduction (mean over",
            "the batch), median wall time in milliseconds after a warm-up call; `(ratio)` is the",
            "peer's time divided by losskit's, so above 1 means losskit is faster. losskit runs on",
            "NumPy arrays. PyTorch runs eagerly (autograd for the gradient); JAX (Optax's losses,",
            "or the jnp formula where Optax has none) and Keras 3 on JAX run under `jax.jit`",
            "(`jax.value_and_grad` for the gradient); NumPy is the textbook formula and its",
            "textbook gradient. PyTorch and JAX sparse losses from probabilities use",
            "`nll_loss(log p)` / `-log p[label]`, which read one entry per row, while Keras and",
            "losskit renormalise each row of probabilities. Keras clips probabilities; losskit",
            "does not. A load average above the core count means other work shared the machine.",
            "",
            "Machine:",
            "",
            *machine_facts(),
            "",
            markdown_table(rows),
            "",
            f"Total run time: {elapsed:.0f} s.",
            "",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, for a smoke test")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"Markdown file to write (default {DEFAULT_OUTPUT}; none with --quick)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    rows: list[Row] = []
    for key, shape in problems(args.quick):
        rows += time_problem(key, shape)
        print(f"timed {key} {shape}", file=sys.stderr, flush=True)
    text = report(rows, args.quick, time.perf_counter() - start)
    print(text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
