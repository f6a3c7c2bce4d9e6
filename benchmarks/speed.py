"""Speed and memory of every registered loss against every peer that has it (issue 8's check).

One interleaved run; every figure is reported as a ratio **losskit time / peer time** (below 1:
losskit is faster, above 1: losskit is slower), the way issue 8 states its targets. For every loss
of the registry (a table of cases, one line each, below) and every peer that has it:

* losskit on NumPy arrays against PyTorch eager on the same data and against the textbook NumPy
  formula;
* losskit on torch tensors against PyTorch's own loss (``torch.nn.functional``), forward ("value")
  and forward+backward through autograd ("value+grad");
* losskit on JAX arrays under ``jax.jit`` (``jax.value_and_grad`` for "value+grad") against Optax
  and Keras 3 (JAX backend) under the same ``jax.jit``;
* float32 and float64; the cross-entropies at 65536x10, 8192x1000 and 1024x32000, every other
  loss at 8192x1000 (one representative shape keeps the full run to about 15 minutes of CPU on 2
  cores; multilabel_margin at 8192x32, see PAIRWISE_SHAPE), float64 at 8192x1000 only;
* peak memory of one NumPy ``value_and_gradient`` (tracemalloc, which NumPy reports to) divided by
  the size of ``y_pred``; per-call time on a (32, 1) batch for the tutorial's seven losses against
  the two-line NumPy formula; the ``jax.jit`` compile time of every loss.

All ``jax.jit`` work runs in a worker subprocess (this script with ``--worker``): a compile that
takes longer than ``--compile-limit`` seconds (20) is reported as such and skipped, the worker is
restarted and the run goes on. Inputs come from the property suite's generator
(``tests/conftest.py:make_inputs``), which draws valid inputs for any registered loss from its
declaration. A peer that lacks a loss, or raises on its inputs, shows as "—" with the reason in a
note; a peer whose value or gradient differs from losskit's is flagged in a note too. Each process
may allocate at most ``--memory-limit`` GiB (8), so a loss with huge temporaries raises MemoryError
(reported) instead of exhausting a shared machine. Ctrl-C (or ``kill -INT``) stops the run and
writes the report of what was measured.

    python benchmarks/speed.py                # full run, writes docs/speed.md (~15 min on idle 2 cores)
    python benchmarks/speed.py --quick        # tiny shapes, a smoke test (well under a minute)
    python benchmarks/speed.py --threads 1    # pin NumPy/BLAS, PyTorch, XLA (and losskit) threads
    python benchmarks/speed.py --load         # the same while a subprocess keeps every core busy
    python benchmarks/speed.py --only mse,nll --output /tmp/x.md   # some losses (registry names)
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--threads" in sys.argv:  # before NumPy, torch or jax start their pools
    import os as _os

    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        _os.environ[_var] = _n
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                                + ("false" if _n == "1" else "true")
                                + f" intra_op_parallelism_threads={_n}").strip()

import argparse
import json
import math
import os
import platform
import queue
import resource
import statistics
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_inputs  # noqa: E402

import losskit  # noqa: E402
from losskit.losses._registry import definitions  # noqa: E402

DEFAULT_OUTPUT = ROOT / "docs" / "speed.md"

CROSS_ENTROPY_SHAPES = [(65536, 10), (8192, 1000), (1024, 32000)]
OTHER_SHAPE = (8192, 1000)
FLOAT64_SHAPES = [(8192, 1000)]  # float64 at the representative shape only (run time)
QUICK_CROSS_ENTROPY_SHAPES = [(64, 10), (16, 100)]
QUICK_OTHER_SHAPE = (32, 20)
PAIRWISE_SHAPE = (8192, 32)
"""multilabel_margin's shape: losskit's kernel holds (rows, classes, classes) temporaries, which at
8192x1000 would take ~65 GB each in float64."""
SMALL_SHAPE = (32, 1)
SMALL_CLASSES_SHAPE = (32, 10)  # the losses over a class axis: one class would be degenerate (loss 0)
DTYPES = ("float32", "float64")

TUTORIAL = ("mean_squared_error", "mean_absolute_error", "binary_crossentropy",
            "categorical_crossentropy", "sparse_categorical_crossentropy", "hinge", "kl_divergence")
"""The seven losses of the Keras tutorial (issue 8's stricter NumPy target applies to them)."""
CLASS_AXIS = ("categorical_crossentropy", "sparse_categorical_crossentropy", "kl_divergence")


@dataclass(frozen=True)
class Timing:
    """How long each measurement runs: interleaved rounds (every implementation once per round)
    until ``min_rounds`` are done and ``budget_s`` is spent, at most ``max_rounds``."""

    budget_s: float
    min_rounds: int
    max_rounds: int
    small_calls: int  # calls per sample on the (32, 1) batch
    compile_limit_s: float


FULL = Timing(budget_s=1.0, min_rounds=3, max_rounds=7, small_calls=300, compile_limit_s=20.0)
QUICK = Timing(budget_s=0.02, min_rounds=2, max_rounds=2, small_calls=20, compile_limit_s=10.0)
SLOW_CALL_S = 2.0  # a call whose warm-up takes longer is timed once


# ---------------------------------------------------------------------------------------------
# Textbook NumPy formulas: (t, p, extras, grad) -> value, or (value, d value / d p).
# ---------------------------------------------------------------------------------------------

NumpyFn = Callable[[np.ndarray, np.ndarray, Mapping[str, np.ndarray], bool], Any]


def elementwise(f: Callable[..., np.ndarray], df: Callable[..., np.ndarray],
                rowsum: bool = False) -> NumpyFn:
    """The formula of a loss that is a mean of elementwise terms ``f(t, p)`` (``rowsum``: summed over
    each row, then averaged over the rows), with its derivative ``df(t, p)``."""

    def run(t: np.ndarray, p: np.ndarray, x: Mapping[str, np.ndarray], grad: bool) -> Any:
        scale = 1.0 / (p.shape[0] if rowsum else p.size)
        value = np.sum(f(t, p, **x)) * scale
        return (value, df(t, p, **x) * np.asarray(scale, p.dtype)) if grad else value

    return run


def rowwise(f: Callable[..., tuple[np.ndarray, np.ndarray | None]]) -> NumpyFn:
    """The formula of a loss given per row: ``f(t, p, grad) -> (per-row values, their gradient)``,
    averaged over the rows."""

    def run(t: np.ndarray, p: np.ndarray, x: Mapping[str, np.ndarray], grad: bool) -> Any:
        values, g = f(t, p, grad)
        value = np.mean(values)
        return (value, g / np.asarray(p.shape[0], p.dtype)) if grad else value

    return run


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _rows(p: np.ndarray) -> np.ndarray:
    return np.arange(p.shape[0])


def _one_hot(labels: np.ndarray, p: np.ndarray) -> np.ndarray:
    out = np.zeros_like(p)
    out[_rows(p), labels.astype(np.int64)] = 1
    return out


def _cce_logits(t, x, grad):
    log_q = _log_softmax(x)
    return -np.sum(t * log_q, axis=-1), (np.exp(log_q) * t.sum(-1, keepdims=True) - t if grad else None)


def _cce_probs(t, p, grad):
    return -np.sum(t * np.log(p), axis=-1), (-t / p if grad else None)


def _scce_logits(y, x, grad):
    log_q = _log_softmax(x)
    g = None
    if grad:
        g = np.exp(log_q)
        g[_rows(x), y] -= 1
    return -log_q[_rows(x), y], g


def _scce_probs(y, p, grad):
    picked = p[_rows(p), y]
    g = None
    if grad:
        g = np.zeros_like(p)
        g[_rows(p), y] = -1 / picked
    return -np.log(picked), g


def _cosine(t, p, grad):
    tn = np.sqrt(np.sum(t * t, -1, keepdims=True))
    pn = np.sqrt(np.sum(p * p, -1, keepdims=True))
    cos = np.sum(t * p, -1, keepdims=True) / (tn * pn)
    return -cos[:, 0], (-(t / (tn * pn) - cos * p / (pn * pn)) if grad else None)


def _poly1(t, x, grad, eps=2.0):
    log_q = _log_softmax(x)
    q = np.exp(log_q)
    s = np.sum(t * q, -1, keepdims=True)
    values = -np.sum(t * log_q, -1) + eps * (1 - s[:, 0])
    return values, ((q - t) - eps * q * (t - s) if grad else None)


def _nll(y, x, grad):
    g = None
    if grad:
        g = np.zeros_like(x)
        g[_rows(x), y] = -1
    return -x[_rows(x), y], g


def _argmax_one_hot(s: np.ndarray) -> np.ndarray:
    return _one_hot(np.argmax(s, -1), s)


def _categorical_hinge(t, p, grad):
    neg = np.max((1 - t) * p, -1)
    values = np.maximum(0, neg - np.sum(t * p, -1) + 1)
    g = None
    if grad:
        g = (_argmax_one_hot((1 - t) * p) - t) * (values > 0)[:, None]
    return values, g


def _multiclass_hinge(y, s, grad):
    shifted = s + 1 - _one_hot(y, s)
    values = np.max(shifted, -1) - s[_rows(s), y]
    return values, (_argmax_one_hot(shifted) - _one_hot(y, s) if grad else None)


def _multiclass_perceptron(y, s, grad):
    values = np.max(s, -1) - s[_rows(s), y]
    return values, (_argmax_one_hot(s) - _one_hot(y, s) if grad else None)


def _multi_margin(y, x, grad):
    k = x.shape[-1]
    m = np.maximum(0, 1 - x[_rows(x), y][:, None] + x)
    m[_rows(x), y] = 0
    g = None
    if grad:
        g = (m > 0).astype(x.dtype) / k
        g[_rows(x), y] = -g.sum(-1)
    return m.sum(-1) / k, g


def _gce_probs(y, p, grad, q=0.5):
    picked = p[_rows(p), y]
    g = None
    if grad:
        g = np.zeros_like(p)
        g[_rows(p), y] = -picked ** (q - 1)
    return (1 - picked ** q) / q, g


def _binary_focal_terms(t, p, gamma=2.0):
    return -(t * (1 - p) ** gamma * np.log(p) + (1 - t) * p ** gamma * np.log1p(-p))


def _binary_focal_derivative(t, p, gamma=2.0):
    d1 = gamma * (1 - p) ** (gamma - 1) * np.log(p) - (1 - p) ** gamma / p
    d0 = -gamma * p ** (gamma - 1) * np.log1p(-p) + p ** gamma / (1 - p)
    return t * d1 + (1 - t) * d0


def _categorical_focal_logits(t, x, grad, alpha=0.25, gamma=2.0):
    q = np.exp(_log_softmax(x))
    values = -np.sum(alpha * t * (1 - q) ** gamma * np.log(q), -1)
    g = None
    if grad:
        dq = alpha * t * (gamma * (1 - q) ** (gamma - 1) * np.log(q) - (1 - q) ** gamma / q)
        g = q * (dq - np.sum(dq * q, -1, keepdims=True))
    return values, g


def _tweedie(power: float) -> NumpyFn:
    a, b = 1 - power, 2 - power
    return elementwise(
        lambda t, m: 2 * (np.maximum(t, 0) ** b / (a * b) - t * m ** a / a + m ** b / b),
        lambda t, m: 2 * m ** -power * (m - t))


def _gaussian_nll(t, p, var):
    v = np.maximum(var, 1e-6)
    return 0.5 * (np.log(v) + (p - t) ** 2 / v)


def _js_terms(t, p):
    m = t + p
    return 0.5 * (t * np.log(2 * t / m) + p * np.log(2 * p / m))


# -- issue 12: overlap, sparsemax and ranking losses (textbook formulas)


def _dice_formula(t, p, grad):
    inter, card = (t * p).sum(-1), t.sum(-1) + p.sum(-1) + 1e-7
    value = 1 - 2 * inter / card
    return value, ((2 * inter[:, None] - 2 * t * card[:, None]) / card[:, None] ** 2 if grad else None)


def _tversky_formula(t, p, grad, a=0.5, b=0.5):
    inter, fp, fn = (t * p).sum(-1), (p * (1 - t)).sum(-1), (t * (1 - p)).sum(-1)
    den = inter + a * fp + b * fn + 1e-7
    g = None
    if grad:
        dden = t + a * (1 - t) - b * t
        g = -(t * den[:, None] - inter[:, None] * dden) / den[:, None] ** 2
    return 1 - inter / den, g


def _generalized_dice_formula(t, p, grad, classes=10):
    rows = t.shape[0]
    tc, pc = t.reshape(rows, classes, -1), p.reshape(rows, classes, -1)
    w = 1 / np.maximum(tc.sum(-1), 1) ** 2
    inter, card = (w * (tc * pc).sum(-1)).sum(-1), (w * (tc.sum(-1) + pc.sum(-1))).sum(-1) + 1e-5
    value = 1 - (2 * inter + 1e-5) / card
    g = None
    if grad:
        g = (w[..., None] * ((2 * inter + 1e-5)[:, None, None] - 2 * tc * card[:, None, None])
             / card[:, None, None] ** 2).reshape(t.shape)
    return value, g


def _lovasz_formula(t, x, grad):
    s = 2 * t - 1
    e = 1 - x * s
    order = np.argsort(-e, axis=-1)
    es, ts = np.take_along_axis(e, order, -1), np.take_along_axis(t, order, -1)
    gts = ts.sum(-1, keepdims=True)
    jac = 1 - (gts - np.cumsum(ts, -1)) / (gts + np.cumsum(1 - ts, -1))
    jac[:, 1:] = jac[:, 1:] - jac[:, :-1]
    g = None
    if grad:
        g = np.empty_like(x)
        np.put_along_axis(g, order, -np.take_along_axis(s, order, -1) * jac * (es > 0), -1)
    return (np.maximum(es, 0) * jac).sum(-1), g


def _sparsemax_np(z):
    zs = -np.sort(-z, axis=-1)
    cs = np.cumsum(zs, axis=-1)
    k = np.arange(1, z.shape[-1] + 1)
    support = (1 + k * zs > cs).sum(-1)
    tau = (cs[_rows(z), support - 1] - 1) / support
    return np.maximum(z - tau[:, None], 0)


def _multiclass_sparsemax(y, z, grad):
    p = _sparsemax_np(z)
    onehot = _one_hot(y, z)
    value = (p * (z - z[_rows(z), y][:, None])).sum(-1) + 0.5 * (1 - (p * p).sum(-1))
    return value, (p - onehot if grad else None)


def _fy_sparsemax(t, z, grad):
    p = _sparsemax_np(z)
    value = ((p - t) * z).sum(-1) - 0.5 * (p * p).sum(-1) + 0.5 * (t * t).sum(-1)
    return value, (p - t if grad else None)


def _ranking_softmax(t, x, grad):
    log_q = _log_softmax(x)
    return -(t * log_q).sum(-1), (np.exp(log_q) * t.sum(-1, keepdims=True) - t if grad else None)


def _optax_fy_sparsemax(t, p, x):
    def conjugate(z):
        q = optax.projections.projection_simplex(z)
        return jnp.dot(q, z) - 0.5 * jnp.dot(q, q)

    loss = optax.losses.make_fenchel_young_loss(conjugate)
    return jnp.mean(loss(p, t) + 0.5 * jnp.sum(t * t, axis=-1))


def _optax_dice(t, p, x):
    """Optax's ``dice_loss`` on the mask and its complement (it wants classes that sum to 1)."""
    out = optax.losses.dice_loss(jnp.stack([p, 1 - p], -1), jnp.stack([t, 1 - t], -1),
                                 apply_softmax=False, reduction="none", axis=-2)
    return jnp.mean(out[..., 0])

# -- issue 12: embedding and ranking losses (textbook formulas: NumPy, and PyTorch ops where PyTorch
# has no such loss). Rows of similarities for ntxent and circle; anchors, positives (y_true) and
# negatives for the triplet; pairs (x1 = y_pred, x2) for cosine embedding and margin ranking.


def _ntxent_np(t, s, x, grad, temperature=0.07):
    z = s / temperature
    zn = np.where(t == 1, -np.inf, z)
    top = zn.max(-1, keepdims=True)
    e = np.exp(zn - top)
    total = e.sum(-1, keepdims=True)
    y = top + np.log(total) - z
    count = np.maximum(t.sum(-1, keepdims=True), 1)
    value = np.mean(np.sum(t * np.logaddexp(0, y), -1) / count[:, 0])
    if not grad:
        return value
    sig = t * _sigmoid(y) / count
    g = np.where(t == 1, -sig, e / total * sig.sum(-1, keepdims=True)) / temperature
    return value, g / np.asarray(s.shape[0], s.dtype)


def _ntxent_torch(t, s, x, temperature=0.07):
    z = s / temperature
    lse = torch.logsumexp(z.masked_fill(t == 1, -torch.inf), -1, keepdim=True)
    per_row = (t * F.softplus(lse - z)).sum(-1) / t.sum(-1).clamp(min=1)
    return per_row.mean()


def _circle_terms_np(t, s, gamma=80.0, margin=0.4):
    d = np.maximum(1 - s, 0)
    tp = np.where(t == 1, gamma * np.maximum(margin + d, 0) * (d - margin), -np.inf)
    tn = np.where(t == 1, -np.inf, gamma * np.maximum(1 + margin - d, 0) * (1 - margin - d))
    return d, tp, tn


def _circle_np(t, s, x, grad):
    from scipy.special import logsumexp

    d, tp, tn = _circle_terms_np(t, s)
    a = logsumexp(tp, -1, keepdims=True) + logsumexp(tn, -1, keepdims=True)
    value = np.mean(np.logaddexp(0, a))
    if not grad:
        return value
    wp, wn = np.exp(tp - logsumexp(tp, -1, keepdims=True)), np.exp(tn - logsumexp(tn, -1, keepdims=True))
    inner = (s > -0.4) & (s < 1)
    g = _sigmoid(a) * np.where(t == 1, wp * -160.0 * d, wn * np.where(inner, 160.0 * s, 0))
    return value, g / np.asarray(s.shape[0], s.dtype)


def _circle_torch(t, s, x, gamma=80.0, margin=0.4):
    d = torch.clamp(1 - s, min=0)
    tp = torch.where(t == 1, gamma * torch.clamp(margin + d, min=0) * (d - margin), -torch.inf)
    tn = torch.where(t == 1, -torch.inf, gamma * torch.clamp(1 + margin - d, min=0) * (1 - margin - d))
    return F.softplus(torch.logsumexp(tp, -1) + torch.logsumexp(tn, -1)).mean()


def _triplet_np(t, a, x, grad, eps=1e-6):
    up, un = a - t + eps, a - x["negative"] + eps
    dp, dn = np.sqrt((up * up).sum(-1, keepdims=True)), np.sqrt((un * un).sum(-1, keepdims=True))
    m = dp - dn + 1.0
    value = np.mean(np.maximum(m, 0))
    if not grad:
        return value
    return value, (m > 0) * (up / dp - un / dn) / np.asarray(a.shape[0], a.dtype)


def _cosine_embedding_np(y, x1, x, grad, margin=0.0):
    x2 = x["x2"]
    q1, q2 = (x1 * x1).sum(-1, keepdims=True), (x2 * x2).sum(-1, keepdims=True)
    dot = (x1 * x2).sum(-1, keepdims=True)
    cos = dot / np.sqrt(q1 * q2)
    similar = (y == 1)[:, None]
    values = np.where(similar, 1 - cos, np.maximum(cos - margin, 0))
    value = np.mean(values)
    if not grad:
        return value
    dcos = (x2 * q1 - dot * x1) / (np.sqrt(q1 * q2) * q1)
    g = np.where(similar, -dcos, (cos > margin) * dcos)
    return value, g / np.asarray(x1.shape[0], x1.dtype)


def _margin_ranking_np(y, x1, x, grad, margin=0.0):
    m = margin - y * (x1 - x["x2"])
    value = np.mean(np.maximum(m, 0))
    return (value, -y * (m > 0) / np.asarray(x1.size, x1.dtype)) if grad else value



# ---------------------------------------------------------------------------------------------
# The cases: one line per loss (and per option set timed), with the peers that have it.
# ---------------------------------------------------------------------------------------------

def _log_softmax_np(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _distill_np(t: np.ndarray, p: np.ndarray, grad: bool, temperature: float, beta: float
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """The textbook distillation KL (beta = 0, times T^2) or generalized JSD from log-softmax."""
    lp, lq = _log_softmax_np(t / temperature), _log_softmax_np(p / temperature)
    pp, qq = np.exp(lp), np.exp(lq)
    if beta == 0.0:
        values = temperature**2 * (pp * (lp - lq)).sum(-1)
        return values, (temperature * (qq - pp) if grad else None)
    lm = np.logaddexp(lp + np.log(beta), lq + np.log1p(-beta))
    a = lm - lq
    values = (beta * pp * (lp - lm) + (1 - beta) * qq * (lq - lm)).sum(-1)
    kl = (qq * -a).sum(-1, keepdims=True)
    return values, (-(1 - beta) / temperature * qq * (a + kl) if grad else None)


def _trl_jsd(t: Any, p: Any, beta: float) -> Any:
    lq, lp = F.log_softmax(p, -1), F.log_softmax(t, -1)
    lm = torch.logsumexp(torch.stack([lp + math.log(beta), lq + math.log(1 - beta)]), dim=0)
    return (beta * F.kl_div(lm, lp, reduction="batchmean", log_target=True)
            + (1 - beta) * F.kl_div(lm, lq, reduction="batchmean", log_target=True))


PeerFn = Callable[[Any, Any, Mapping[str, Any]], Any]
"""``peer(y_true, y_pred, extras) -> scalar`` in the peer's own array type (the reduced loss)."""


@dataclass(frozen=True)
class Case:
    loss: str  # the registry name
    options: Mapping[str, Any] = field(default_factory=dict)
    torch: PeerFn | None = None
    optax: PeerFn | None = None
    keras: PeerFn | None = None
    numpy: NumpyFn | None = None
    notes: Mapping[str, str] = field(default_factory=dict)  # implementation -> note on its cell
    cross_entropy: bool = False  # timed at every cross-entropy shape
    shape: tuple[int, int] | None = None  # instead of the representative shape (full runs)

    @property
    def label(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.loss} ({opts})" if opts else self.loss

    def peer(self, impl: str) -> PeerFn | None:
        return {"PyTorch": self.torch, "Optax": self.optax, "Keras": self.keras}[impl]

    def loss_object(self) -> Any:
        return losskit.get(self.loss).__class__(**self.options)


def _keras(name: str, **kw: Any) -> PeerFn:
    return lambda t, p, x: jnp.mean(getattr(keras.losses, name)(t, p, **kw))


def _optax(name: str, **kw: Any) -> PeerFn:
    return lambda t, p, x: jnp.mean(getattr(optax.losses, name)(p, t, **kw))


LOGITS = {"from_logits": True}
FORMULA = "a formula of PyTorch ops: PyTorch has no {what}"
MISSING = "{peer} has no such loss"
UNNORMALISED = "takes the probabilities as given (losskit and Keras renormalise each row: gradients differ)"

CASES: list[Case] = [
    # -- the tutorial's seven (the cross-entropies also from logits, at three shapes)
    Case("mean_squared_error", torch=lambda t, p, x: F.mse_loss(p, t), optax=_optax("squared_error"),
         keras=_keras("mean_squared_error"),
         numpy=elementwise(lambda t, p: (p - t) ** 2, lambda t, p: 2 * (p - t))),
    Case("mean_absolute_error", torch=lambda t, p, x: F.l1_loss(p, t), keras=_keras("mean_absolute_error"),
         numpy=elementwise(lambda t, p: np.abs(p - t), lambda t, p: np.sign(p - t))),
    Case("binary_crossentropy", cross_entropy=True,
         torch=lambda t, p, x: F.binary_cross_entropy(p, t), keras=_keras("binary_crossentropy"),
         numpy=elementwise(lambda t, p: -(t * np.log(p) + (1 - t) * np.log1p(-p)),
                           lambda t, p: (p - t) / (p * (1 - p))),
         notes={"Optax": "Optax's binary cross-entropy takes logits only"}),
    Case("binary_crossentropy", LOGITS, cross_entropy=True,
         torch=lambda t, p, x: F.binary_cross_entropy_with_logits(p, t),
         optax=_optax("sigmoid_binary_cross_entropy"), keras=_keras("binary_crossentropy", **LOGITS),
         numpy=elementwise(lambda t, x: np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))),
                           lambda t, x: _sigmoid(x) - t)),
    Case("categorical_crossentropy", cross_entropy=True,
         torch=lambda t, p, x: -(t * torch.log(p)).sum(-1).mean(),
         keras=_keras("categorical_crossentropy"), numpy=rowwise(_cce_probs),
         notes={"PyTorch": FORMULA.format(what="cross-entropy on probabilities") + "; " + UNNORMALISED,
                "NumPy formula": UNNORMALISED,
                "Optax": "Optax's softmax cross-entropy takes logits only"}),
    Case("categorical_crossentropy", LOGITS, cross_entropy=True,
         torch=lambda t, p, x: F.cross_entropy(p, t), optax=_optax("softmax_cross_entropy"),
         keras=_keras("categorical_crossentropy", **LOGITS), numpy=rowwise(_cce_logits)),
    Case("sparse_categorical_crossentropy", cross_entropy=True,
         torch=lambda t, p, x: F.nll_loss(torch.log(p), t),
         keras=_keras("sparse_categorical_crossentropy"), numpy=rowwise(_scce_probs),
         notes={"PyTorch": "`nll_loss(log p)`: " + UNNORMALISED, "NumPy formula": UNNORMALISED,
                "Optax": "Optax's integer-label cross-entropy takes logits only"}),
    Case("sparse_categorical_crossentropy", LOGITS, cross_entropy=True,
         torch=lambda t, p, x: F.cross_entropy(p, t),
         optax=_optax("softmax_cross_entropy_with_integer_labels"),
         keras=_keras("sparse_categorical_crossentropy", **LOGITS), numpy=rowwise(_scce_logits)),
    Case("hinge", optax=_optax("hinge_loss"), keras=_keras("hinge"),
         numpy=elementwise(lambda t, p: np.maximum(0, 1 - t * p),
                           lambda t, p: np.where(t * p < 1, -t, 0).astype(p.dtype))),
    Case("kl_divergence", torch=lambda t, p, x: F.kl_div(torch.log(p), t, reduction="batchmean"),
         optax=lambda t, p, x: jnp.mean(optax.losses.kl_divergence(jnp.log(p), t)),
         keras=_keras("kl_divergence"),
         numpy=elementwise(lambda t, p: t * np.log(t / p), lambda t, p: -t / p, rowsum=True),
         notes={"PyTorch": "`kl_div(log p)`: PyTorch and Optax take log-probabilities",
                "Optax": "`kl_divergence(log p)`: PyTorch and Optax take log-probabilities"}),
    # -- regression
    Case("huber", torch=lambda t, p, x: F.huber_loss(p, t), optax=_optax("huber_loss"),
         keras=_keras("huber"),
         numpy=elementwise(lambda t, p: np.where(np.abs(p - t) <= 1, (p - t) ** 2 / 2, np.abs(p - t) - 0.5),
                           lambda t, p: np.clip(p - t, -1, 1))),
    Case("smooth_l1", torch=lambda t, p, x: F.smooth_l1_loss(p, t),
         numpy=elementwise(lambda t, p: np.where(np.abs(p - t) < 1, (p - t) ** 2 / 2, np.abs(p - t) - 0.5),
                           lambda t, p: np.clip(p - t, -1, 1))),
    Case("log_cosh", optax=_optax("log_cosh"), keras=_keras("log_cosh"),
         numpy=elementwise(lambda t, p: np.log(np.cosh(p - t)), lambda t, p: np.tanh(p - t))),
    Case("mean_absolute_percentage_error", keras=_keras("mean_absolute_percentage_error"),
         numpy=elementwise(lambda t, p: 100 * np.abs(p - t) / np.abs(t),
                           lambda t, p: 100 * np.sign(p - t) / np.abs(t))),
    Case("mean_squared_logarithmic_error", keras=_keras("mean_squared_logarithmic_error"),
         numpy=elementwise(lambda t, p: (np.log1p(p) - np.log1p(t)) ** 2,
                           lambda t, p: 2 * (np.log1p(p) - np.log1p(t)) / (1 + p))),
    Case("pinball", numpy=elementwise(lambda t, p: np.maximum(0.5 * (t - p), -0.5 * (t - p)),
                                      lambda t, p: np.where(t > p, -0.5, 0.5).astype(p.dtype))),
    Case("cosine_similarity", optax=lambda t, p, x: -jnp.mean(optax.losses.cosine_similarity(p, t)),
         keras=_keras("cosine_similarity"), numpy=rowwise(_cosine)),
    Case("poisson", keras=_keras("poisson"),
         numpy=elementwise(lambda t, p: p - t * np.log(p), lambda t, p: 1 - t / p)),
    Case("poisson_nll", torch=lambda t, p, x: F.poisson_nll_loss(p, t),
         numpy=elementwise(lambda t, x: np.exp(x) - t * x, lambda t, x: np.exp(x) - t)),
    Case("mean_gamma_deviance",
         numpy=elementwise(lambda t, m: 2 * (np.log(m / t) + t / m - 1), lambda t, m: 2 * (m - t) / m ** 2)),
    Case("mean_tweedie_deviance", {"power": 1.5}, numpy=_tweedie(1.5)),
    Case("gaussian_nll", torch=lambda t, p, x: F.gaussian_nll_loss(p, t, x["var"]),
         numpy=elementwise(_gaussian_nll, lambda t, p, var: (p - t) / np.maximum(var, 1e-6))),
    # -- classification
    Case("binary_focal_crossentropy", keras=_keras("binary_focal_crossentropy"),
         numpy=elementwise(_binary_focal_terms, _binary_focal_derivative),
         notes={"Optax": "Optax's focal loss takes logits only"}),
    Case("binary_focal_crossentropy", LOGITS, keras=_keras("binary_focal_crossentropy", **LOGITS),
         optax=_optax("sigmoid_focal_loss"),
         numpy=elementwise(lambda t, x: _binary_focal_terms(t, _sigmoid(x)),
                           lambda t, x: _binary_focal_derivative(t, _sigmoid(x))
                           * _sigmoid(x) * _sigmoid(-x))),
    Case("categorical_focal_crossentropy", keras=_keras("categorical_focal_crossentropy"),
         numpy=elementwise(lambda t, p: -0.25 * t * (1 - p) ** 2 * np.log(p),
                           lambda t, p: 0.25 * t * (2 * (1 - p) * np.log(p) - (1 - p) ** 2 / p),
                           rowsum=True),
         notes={"NumPy formula": "the formula does not renormalise the rows (Keras and losskit do)"}),
    Case("categorical_focal_crossentropy", LOGITS,
         keras=_keras("categorical_focal_crossentropy", **LOGITS), numpy=rowwise(_categorical_focal_logits)),
    Case("categorical_generalized_cross_entropy", numpy=rowwise(_gce_probs),
         keras=_keras("categorical_generalized_cross_entropy", q=0.5)),
    Case("poly_loss_cross_entropy", optax=_optax("poly_loss_cross_entropy"), numpy=rowwise(_poly1)),
    Case("nll", torch=lambda t, p, x: F.nll_loss(p, t), numpy=rowwise(_nll)),
    # -- divergences
    Case("kl_div", torch=lambda t, p, x: F.kl_div(p, t, reduction="batchmean"),
         optax=lambda t, p, x: jnp.mean(optax.losses.kl_divergence(p, t)),
         numpy=elementwise(lambda t, x: t * (np.log(t) - x), lambda t, x: -t, rowsum=True)),
    Case("generalized_kl_divergence",
         optax=lambda t, p, x: jnp.mean(optax.losses.generalized_kl_divergence(jnp.log(p), t)),
         numpy=elementwise(lambda t, p: t * np.log(t / p) - t + p, lambda t, p: 1 - t / p, rowsum=True),
         notes={"Optax": "`generalized_kl_divergence(log p)`: Optax takes log-predictions"}),
    Case("jensen_shannon_divergence",
         numpy=elementwise(_js_terms, lambda t, p: 0.5 * np.log(2 * p / (t + p)), rowsum=True)),
    Case("total_variation_distance",
         numpy=elementwise(lambda t, p: np.abs(t - p) / 2, lambda t, p: np.sign(p - t) / 2, rowsum=True)),
    # -- margins
    Case("squared_hinge", keras=_keras("squared_hinge"),
         numpy=elementwise(lambda t, p: np.maximum(0, 1 - t * p) ** 2,
                           lambda t, p: -2 * t * np.maximum(0, 1 - t * p))),
    Case("categorical_hinge", keras=_keras("categorical_hinge"), numpy=rowwise(_categorical_hinge)),
    Case("multiclass_hinge", optax=_optax("multiclass_hinge_loss"), numpy=rowwise(_multiclass_hinge)),
    Case("multi_margin", torch=lambda t, p, x: F.multi_margin_loss(p, t), numpy=rowwise(_multi_margin)),
    Case("multilabel_margin", torch=lambda t, p, x: F.multilabel_margin_loss(p, t.long()),
         shape=PAIRWISE_SHAPE,
         notes={"NumPy formula": "no textbook NumPy formula written (a double loop over target lists)"}),
    Case("soft_margin", torch=lambda t, p, x: F.soft_margin_loss(p, t),
         numpy=elementwise(lambda t, x: np.log1p(np.exp(-t * x)), lambda t, x: -t * _sigmoid(-t * x))),
    Case("multilabel_soft_margin", torch=lambda t, p, x: F.multilabel_soft_margin_loss(p, t),
         numpy=elementwise(lambda t, x: np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))),
                           lambda t, x: _sigmoid(x) - t)),
    Case("perceptron", optax=_optax("perceptron_loss"),
         numpy=elementwise(lambda t, p: np.maximum(0, -t * p),
                           lambda t, p: np.where(t * p < 0, -t, 0).astype(p.dtype))),
    Case("multiclass_perceptron", optax=_optax("multiclass_perceptron_loss"),
         numpy=rowwise(_multiclass_perceptron)),
    # -- issue 12: segmentation, sparsemax and ranking (rows = images x classes, columns = pixels)
    Case("dice", keras=_keras("dice", axis=-1), numpy=rowwise(_dice_formula),
         notes={"PyTorch": MISSING.format(peer="PyTorch")}),
    Case("dice", {"smooth": "optax"}, optax=_optax_dice,
         notes={"Optax": "`dice_loss` on the mask and its complement as two classes (its "
                         "`apply_softmax=False` requires classes that sum to 1)"}),
    Case("tversky", keras=_keras("tversky", axis=-1), numpy=rowwise(_tversky_formula)),
    Case("lovasz_hinge", numpy=rowwise(_lovasz_formula),
         notes={"PyTorch": MISSING.format(peer="PyTorch")}),
    Case("generalized_dice", {"classes": 10}, numpy=rowwise(_generalized_dice_formula),
         notes={"Optax": "Optax's `multiclass_generalized_dice_loss` is another loss (batch weights)"}),
    Case("sparsemax", optax=_optax("sparsemax_loss"),
         numpy=elementwise(lambda t, x: np.where(np.abs(x) < 1, (np.where(t > 0, -x, x) + 1) ** 2 / 4,
                                                 np.maximum(np.where(t > 0, -x, x), 0)),
                           lambda t, x: np.where(t > 0, -1, 1)
                           * np.clip((np.where(t > 0, -x, x) + 1) / 2, 0, 1))),
    Case("multiclass_sparsemax", optax=_optax("multiclass_sparsemax_loss"),
         numpy=rowwise(_multiclass_sparsemax)),
    Case("fenchel_young", optax=_optax_fy_sparsemax, numpy=rowwise(_fy_sparsemax),
         notes={"Optax": "`make_fenchel_young_loss(sparsemax conjugate)` plus Omega(y)"}),
    Case("fenchel_young", {"regularizer": "softmax"},
         optax=lambda t, p, x: jnp.mean(optax.losses.make_fenchel_young_loss(
             jax.scipy.special.logsumexp)(p, t) + jnp.sum(t * jnp.log(t), axis=-1)),
         numpy=rowwise(lambda t, x, grad: (_cce_logits(t, x, grad)[0] + (t * np.log(t)).sum(-1),
                                           _cce_logits(t, x, grad)[1]))),
    Case("ranking_softmax", optax=lambda t, p, x: optax.losses.ranking_softmax_loss(p, t),
         numpy=rowwise(_ranking_softmax)),
    # -- issue 12: CTC and distillation (CTC: (N, T) = CTC_SHAPE, C = T // 8 classes, labels of T // 8)
    Case("ctc", torch=lambda t, p, x: F.ctc_loss(
             F.log_softmax(p, -1).transpose(0, 1), t, torch.full((p.shape[0],), p.shape[1]),
             torch.full((p.shape[0],), t.shape[1]), reduction="none").mean(),
         optax=lambda t, p, x: jnp.mean(optax.losses.ctc_loss(
             p, jnp.zeros(p.shape[:2], p.dtype), t, jnp.zeros(t.shape, p.dtype))),
         keras=lambda t, p, x: jnp.mean(keras.losses.ctc(t, p)), shape=(32, 200),
         notes={"NumPy formula": "no textbook NumPy formula written (the forward-backward recursion)",
                "PyTorch": "`ctc_loss(log_softmax(logits))`: PyTorch takes log-probabilities"}),
    Case("logits_distillation", {"temperature": 2.0},
         torch=lambda t, p, x: F.kl_div(F.log_softmax(p / 2.0, -1), F.log_softmax(t / 2.0, -1),
                                        reduction="batchmean", log_target=True) * 4.0,
         optax=lambda t, p, x: jnp.mean(optax.losses.kl_divergence_with_log_targets(
             jax.nn.log_softmax(p / 2.0), jax.nn.log_softmax(t / 2.0))) * 4.0,
         keras=lambda t, p, x: keras.distillation.LogitsDistillation(
             temperature=2.0, loss=keras.losses.KLDivergence()).compute_loss(t, p),
         numpy=rowwise(lambda t, p, grad: _distill_np(t, p, grad, 2.0, 0.0)),
         notes={"PyTorch": "`kl_div(log_softmax(w/T), log_softmax(z/T), log_target=True) * T^2`, "
                           "the common recipe",
                "Optax": "`kl_divergence_with_log_targets` of `log_softmax(./T)`, times T^2",
                "Keras": "`keras.distillation.LogitsDistillation(T, loss=KLDivergence())`"}),
    Case("generalized_jsd", {"beta": 0.5},
         torch=lambda t, p, x: _trl_jsd(t, p, 0.5),
         numpy=rowwise(lambda t, p, grad: _distill_np(t, p, grad, 1.0, 0.5)),
         notes={"PyTorch": "TRL's `generalized_jsd_loss` formula (mixture by logsumexp); PyTorch has "
                           "no JSD (Liger's is a Triton kernel, GPU only)"}),
    # -- issue 12: embedding and ranking losses
    Case("ntxent", torch=_ntxent_torch, numpy=_ntxent_np,
         notes={"PyTorch": FORMULA.format(what="NT-Xent"),
                "Optax": "`ntxent` takes embeddings and labels (the batch-level form), not rows of a "
                         "similarity matrix"}),
    Case("circle", torch=_circle_torch, numpy=_circle_np,
         notes={"PyTorch": FORMULA.format(what="circle loss"),
                "Keras": "`circle` takes labels and embeddings (the batch-level form), not rows of a "
                         "similarity matrix"}),
    Case("triplet_margin", torch=lambda t, p, x: F.triplet_margin_loss(p, t, x["negative"]),
         numpy=_triplet_np),
    Case("triplet_margin", {"eps_placement": "sum"},
         optax=lambda t, p, x: jnp.mean(optax.losses.triplet_margin_loss(p, t, x["negative"]))),
    Case("cosine_embedding", torch=lambda t, p, x: F.cosine_embedding_loss(p, x["x2"], t),
         numpy=_cosine_embedding_np),
    Case("margin_ranking", torch=lambda t, p, x: F.margin_ranking_loss(p, x["x2"], t),
         numpy=_margin_ranking_np),
    Case("hinge_embedding", torch=lambda t, p, x: F.hinge_embedding_loss(p, t),
         numpy=elementwise(lambda t, p: np.where(t == 1, p, np.maximum(0, 1 - p)),
                           lambda t, p: np.where(t == 1, 1.0, -1.0 * (1 - p > 0)).astype(p.dtype))),
]

QUICK_JAX = {("binary_crossentropy (from_logits=True)", "float32"), ("gaussian_nll", "float32"),
             ("mean_squared_error", "float64")}
"""The (case, dtype) whose jax.jit columns --quick runs, at their first shape (compiling every loss
takes minutes)."""

MAIN_IMPLS = ("losskit NumPy", "NumPy formula", "PyTorch", "losskit torch")
JAX_IMPLS = ("losskit JAX", "Optax", "Keras")
IMPLS = MAIN_IMPLS + JAX_IMPLS
MODES = ("value", "value+grad")
RATIOS = [("NumPy / PyTorch", "losskit NumPy", "PyTorch"),
          ("NumPy / formula", "losskit NumPy", "NumPy formula"),
          ("torch / PyTorch", "losskit torch", "PyTorch"),
          ("JAX / Optax", "losskit JAX", "Optax"),
          ("JAX / Keras", "losskit JAX", "Keras")]
"""(column, numerator, denominator): each ratio is losskit's time divided by the peer's."""


def case_inputs(case: Case, shape: tuple[int, ...], dtype: str, seed: int
                ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Valid inputs of the case's loss (the property suite's generator), the same in every process."""
    defn = next(d for d in definitions() if d.name == case.loss)
    rng = np.random.default_rng(seed)
    t, p, extras = make_inputs(defn, dict(case.options), rng, shape=shape, dtype=np.dtype(dtype))
    return t, p, dict(extras)


# ---------------------------------------------------------------------------------------------
# Measuring: interleaved rounds of every implementation, medians.
# ---------------------------------------------------------------------------------------------

Key = tuple[str, str]  # (implementation, mode)


def interleaved(runners: dict[Key, Callable[[], Any]], timing: Timing
                ) -> tuple[dict[Key, float], dict[Key, Any], dict[Key, str]]:
    """Median seconds per runner over interleaved rounds, after one warm-up round whose results
    are returned (for the value checks); a runner that raises is dropped with its error. A runner
    whose warm-up took over SLOW_CALL_S is timed once; the others at least ``min_rounds`` times,
    more while the budget lasts."""
    outputs: dict[Key, Any] = {}
    errors: dict[Key, str] = {}
    warm: dict[Key, float] = {}
    for key, run in list(runners.items()):
        try:
            t0 = time.perf_counter()
            outputs[key] = run()
            warm[key] = time.perf_counter() - t0
        except Exception as exc:  # a peer that cannot take these inputs: reported, not fatal
            errors[key] = f"raises {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            del runners[key]
    times: dict[Key, list[float]] = {key: [] for key in runners}
    spent, rounds = 0.0, 0
    while rounds < timing.min_rounds or (rounds < timing.max_rounds and spent < timing.budget_s):
        for key, run in runners.items():
            if warm[key] > SLOW_CALL_S and times[key]:
                continue
            t0 = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - t0)
            spent += times[key][-1]
        rounds += 1
    return {key: statistics.median(v) for key, v in times.items() if v}, outputs, errors


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def value_and_grad_of(output: Any) -> tuple[float, np.ndarray | None]:
    if isinstance(output, tuple):
        return float(_as_numpy(output[0])), _as_numpy(output[1]).astype(np.float64)
    return float(_as_numpy(output)), None


def compare(reference: Any, other: Any) -> dict[str, float]:
    """How far a peer's value (relative) and gradient (relative to losskit's largest element) are
    from losskit's, where they differ by more than 1e-3: a different definition, or a peer that
    loses accuracy on these inputs."""
    v0, g0 = value_and_grad_of(reference)
    v1, g1 = value_and_grad_of(other)
    out = {}
    if not math.isclose(v0, v1, rel_tol=1e-3, abs_tol=1e-6):
        out["value"] = abs(v1 - v0) / max(abs(v0), 1e-30) if math.isfinite(v1) else math.inf
    if g0 is not None and g1 is not None:
        finite = np.abs(g0[np.isfinite(g0)])
        scale = max(float(np.max(finite, initial=0.0)), 1e-30)
        if g0.shape == g1.shape:
            gap = np.where(g0 == g1, 0.0, np.abs(g1 - g0))  # equal infinities agree
            err = float(np.max(gap, initial=0.0)) / scale
        else:
            err = math.inf
        if not err <= 1e-3:
            out["gradient"] = err if math.isfinite(err) else math.inf
    return out


def checks_against(reference: Key, outputs: dict[Key, Any]) -> dict[Key, dict[str, float]]:
    """The differences of every other implementation's output from ``reference``'s (same mode)."""
    found = {}
    for key, out in outputs.items():
        if reference in outputs and key[0] != reference[0] and key[1] == reference[1]:
            diff = compare(outputs[reference], out)
            if diff:
                found[key] = diff
    return found


@dataclass
class Problem:
    """The measurements of one case at one shape and dtype."""

    case: int
    shape: tuple[int, ...]
    dtype: str
    seconds: dict[Key, float] = field(default_factory=dict)
    missing: dict[Key, str] = field(default_factory=dict)  # why a cell is empty
    flags: dict[Key, dict[str, float]] = field(default_factory=dict)  # differences from losskit
    compile_s: dict[Key, float | str] = field(default_factory=dict)
    memory: dict[str, float | str] = field(default_factory=dict)  # peak / y_pred size


def main_runners(case: Case, t: np.ndarray, p: np.ndarray, x: dict[str, np.ndarray]
                 ) -> dict[Key, Callable[[], Any]]:
    """losskit on NumPy and on torch tensors, PyTorch eager and the NumPy formula."""
    loss = case.loss_object()
    tt, tp = torch.from_numpy(t), torch.from_numpy(p)
    tx = {k: torch.from_numpy(v) for k, v in x.items()}

    def torch_pair(fn: Callable[[Any, Any], Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
        def value_and_grad() -> Any:
            leaf = tp.detach().requires_grad_(True)
            value = fn(tt, leaf)
            return value.detach(), torch.autograd.grad(value, leaf)[0]

        return (lambda: fn(tt, tp)), value_and_grad

    runners: dict[Key, Callable[[], Any]] = {
        ("losskit NumPy", "value"): lambda: loss(t, p, **x),
        ("losskit NumPy", "value+grad"): lambda: loss.value_and_gradient(t, p, **x),
    }
    pairs = {"losskit torch": torch_pair(lambda a, b: loss(a, b, **tx))}
    if case.torch is not None:
        peer = case.torch
        pairs["PyTorch"] = torch_pair(lambda a, b: peer(a, b, tx))
    for impl, (value, value_and_grad) in pairs.items():
        runners[(impl, "value")], runners[(impl, "value+grad")] = value, value_and_grad
    if case.numpy is not None:
        formula = case.numpy
        runners[("NumPy formula", "value")] = lambda: formula(t, p, x, False)
        runners[("NumPy formula", "value+grad")] = lambda: formula(t, p, x, True)
    return runners


def peak_memory(run: Callable[[], Any], size: int) -> float:
    """Peak bytes NumPy allocates during ``run()`` (its result included), over ``size`` bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del result
    return (peak - base) / size


def measure_main(problem: Problem, timing: Timing, seed: int) -> None:
    case = CASES[problem.case]
    t, p, x = case_inputs(case, problem.shape, problem.dtype, seed)
    runners = main_runners(case, t, p, x)
    seconds, outputs, errors = interleaved(runners, timing)
    problem.seconds.update(seconds)
    problem.missing.update(errors)
    problem.flags.update(checks_against(("losskit NumPy", "value+grad"), outputs))
    problem.flags.update(checks_against(("losskit NumPy", "value"), outputs))
    loss = case.loss_object()
    for impl, run in (("losskit NumPy", lambda: loss.value_and_gradient(t, p, **x)),
                      ("NumPy formula", lambda: case.numpy(t, p, x, True) if case.numpy else None)):
        if (impl, "value+grad") in seconds:
            problem.memory[impl] = peak_memory(run, p.nbytes)


# ---------------------------------------------------------------------------------------------
# The jax.jit worker: a subprocess, so that a pathological compile cannot stall the run.
# ---------------------------------------------------------------------------------------------

STOPPED_WITH_VALUE = "not compiled: the value's compile was stopped"
MARK = "@@speed "  # prefix of the worker's protocol lines on stdout


def _emit(**msg: Any) -> None:
    print(MARK + json.dumps(msg), flush=True)


def worker_job(job: Mapping[str, Any]) -> None:
    """Compile (each compile announced first, so the parent can time it out), then time."""
    case = CASES[job["case"]]
    dtype, shape = job["dtype"], tuple(job["shape"])
    timing = Timing(**job["timing"])
    jax.config.update("jax_enable_x64", dtype == "float64")
    keras.config.set_floatx(dtype)
    t, p, x = case_inputs(case, shape, dtype, job["seed"])
    if t.dtype.kind in "iu" and dtype == "float32":
        t = t.astype(np.int32)
    jt, jp = jnp.asarray(t), jnp.asarray(p)
    jx = {k: jnp.asarray(v) for k, v in x.items()}
    loss = case.loss_object()
    functions: dict[str, PeerFn] = {"losskit JAX": lambda a, b, c: loss(a, b, **c)}
    for impl in ("Optax", "Keras"):
        peer = case.peer(impl)
        if peer is not None:
            functions[impl] = peer
    runners: dict[Key, Callable[[], Any]] = {}
    for impl, fn in functions.items():
        for mode in MODES:
            if [impl, mode] in job["skip"]:
                continue
            jitted = jax.jit(fn if mode == "value" else jax.value_and_grad(fn, argnums=1))
            _emit(event="compiling", impl=impl, mode=mode)
            try:
                t0 = time.perf_counter()
                compiled = jitted.lower(jt, jp, jx).compile()
                _emit(event="compiled", impl=impl, mode=mode, seconds=time.perf_counter() - t0)
            except Exception as exc:
                _emit(event="error", impl=impl, mode=mode,
                      text=f"raises {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
                continue
            runners[(impl, mode)] = (lambda c=compiled: jax.block_until_ready(c(jt, jp, jx)))
    seconds, outputs, errors = interleaved(runners, timing)
    flags = {**checks_against(("losskit JAX", "value+grad"), outputs),
             **checks_against(("losskit JAX", "value"), outputs)}
    _emit(event="done", seconds=[[*k, v] for k, v in seconds.items()],
          errors=[[*k, v] for k, v in errors.items()], flags=[[*k, v] for k, v in flags.items()])


def worker_main() -> int:
    _emit(event="ready")
    for line in sys.stdin:
        try:
            worker_job(json.loads(line))
        except Exception as exc:
            _emit(event="failed", text=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return 0


class Worker:
    """The parent's handle on the jax.jit worker: started lazily, killed on a compile timeout."""

    def __init__(self, extra_args: list[str]) -> None:
        self.extra_args = extra_args
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", *self.extra_args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc, self.lines), daemon=True).start()
        ready = self.read(300.0)
        if ready is None or ready.get("event") != "ready":
            self.stop()
            raise RuntimeError("the jax.jit worker did not start")

    @staticmethod
    def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(MARK):
                lines.put(line[len(MARK):])
        lines.put(None)

    def read(self, timeout: float) -> dict[str, Any] | None:
        """The next message, ``{"event": "died"}`` if the worker exited, None on a timeout."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        return {"event": "died"} if line is None else json.loads(line)

    def send(self, job: Mapping[str, Any]) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def measure_jax(worker: Worker, problem: Problem, timing: Timing, seed: int,
                skip: set[Key]) -> None:
    """Run the problem's jax.jit part in the worker; a compile over the limit is recorded, added
    to ``skip`` (kept for the case's other shapes) and the job is sent again without it."""
    limit = timing.compile_limit_s
    job = {"case": problem.case, "shape": list(problem.shape), "dtype": problem.dtype, "seed": seed,
           "timing": timing.__dict__}
    while True:
        worker.send({**job, "skip": [list(k) for k in sorted(skip)]})
        current: Key | None = None
        while True:
            msg = worker.read(limit if current else 600.0)
            if msg is None or msg["event"] == "died":
                worker.stop()
                if current is None:
                    problem.missing[("losskit JAX", "")] = "the jax.jit worker stopped or hung"
                    return
                reason = (f"compile > {limit:g} s: skipped" if msg is None
                          else "the jax.jit worker crashed while compiling")
                problem.compile_s[current] = reason
                problem.missing[current] = reason
                skip.add(current)
                if current[1] == "value":  # the value+grad graph holds the value's: skip it too
                    other = (current[0], "value+grad")
                    problem.compile_s[other] = problem.missing[other] = STOPPED_WITH_VALUE
                    skip.add(other)
                break  # send the job again without it
            event = msg["event"]
            if event == "compiling":
                current = (msg["impl"], msg["mode"])
            elif event == "compiled":
                problem.compile_s[(msg["impl"], msg["mode"])] = msg["seconds"]
                current = None
            elif event == "error":
                problem.missing[(msg["impl"], msg["mode"])] = msg["text"]
                current = None
            elif event == "failed":
                problem.missing[("losskit JAX", "")] = msg["text"]
                return
            elif event == "done":
                problem.seconds.update({(i, m): s for i, m, s in msg["seconds"]})
                problem.missing.update({(i, m): s for i, m, s in msg["errors"]})
                problem.flags.update({(i, m): s for i, m, s in msg["flags"]})
                for key in skip:
                    earlier = f"compile > {limit:g} s at an earlier shape: skipped"
                    problem.missing.setdefault(key, earlier)
                    problem.compile_s.setdefault(key, earlier)
                return


# ---------------------------------------------------------------------------------------------
# The (32, 1) batch: per-call time of the tutorial's seven against the NumPy formula.
# ---------------------------------------------------------------------------------------------


def small_batch(case: Case, timing: Timing, seed: int) -> dict[str, float]:
    """Per-call seconds (best of 5 samples of ``small_calls`` calls, interleaved) of losskit and of
    the formula, value and value+grad, float32 on a (32, 1) batch ((32, 10) for the losses over a
    class axis, which a single class makes degenerate)."""
    shape = SMALL_CLASSES_SHAPE if case.loss in CLASS_AXIS else SMALL_SHAPE
    t, p, x = case_inputs(case, shape, "float32", seed)
    loss = case.loss_object()
    formula = case.numpy
    assert formula is not None
    runs = {"losskit value": lambda: loss(t, p, **x),
            "formula value": lambda: formula(t, p, x, False),
            "losskit value+grad": lambda: loss.value_and_gradient(t, p, **x),
            "formula value+grad": lambda: formula(t, p, x, True)}
    best = dict.fromkeys(runs, math.inf)
    for _ in range(5):
        for name, run in runs.items():
            run()
            t0 = time.perf_counter()
            for _ in range(timing.small_calls):
                run()
            best[name] = min(best[name], (time.perf_counter() - t0) / timing.small_calls)
    return best


# ---------------------------------------------------------------------------------------------
# The report: machine facts, a summary per target, then the detailed tables.
# ---------------------------------------------------------------------------------------------


class Notes:
    """Numbered notes: the same text gets the same number."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"

    def markdown(self) -> list[str]:
        return [f"{i}. {text}" for i, text in enumerate(self.texts, 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}" if seconds < 0.1 else f"{seconds * 1e3:.0f}"


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def ratio(problem: Problem, num: str, den: str, mode: str) -> float | None:
    a, b = problem.seconds.get((num, mode)), problem.seconds.get((den, mode))
    return None if a is None or b is None else a / b


def missing_reason(problem: Problem, impl: str, mode: str) -> str:
    case = CASES[problem.case]
    if impl in ("PyTorch", "Optax", "Keras") and case.peer(impl) is None:
        return case.notes.get(impl, MISSING.format(peer=impl))
    if impl == "NumPy formula" and case.numpy is None:
        return case.notes.get(impl, "no textbook NumPy formula written")
    return (problem.missing.get((impl, mode)) or problem.missing.get((impl, ""))
            or (problem.missing.get(("losskit JAX", "")) if impl in JAX_IMPLS else None)
            or "not measured")


def differences(problems: list[Problem]) -> dict[tuple[str, str], dict[str, float]]:
    """(implementation, case label) -> the largest difference from losskit of each kind."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for pr in problems:
        for (impl, _), diff in pr.flags.items():
            slot = out.setdefault((impl, CASES[pr.case].label), {})
            for kind, amount in diff.items():
                slot[kind] = max(slot.get(kind, 0.0), amount)
    return out


def difference_text(diff: Mapping[str, float]) -> str:
    parts = []
    if "value" in diff:
        parts.append(f"its value by up to {diff['value']:.2g} (relative)")
    if "gradient" in diff:
        parts.append(f"its gradient by up to {diff['gradient']:.2g} of losskit's largest element")
    return "differs from losskit's result: " + " and ".join(parts)


def time_cell(problem: Problem, impl: str, mode: str, notes: Notes,
              diffs: Mapping[tuple[str, str], Mapping[str, float]]) -> str:
    """Milliseconds with its notes, or "—" and the reason; case-specific notes name the case."""
    seconds = problem.seconds.get((impl, mode))
    case = CASES[problem.case]
    if seconds is None:
        reason = missing_reason(problem, impl, mode)
        where = f" on {case.label}" if reason == case.notes.get(impl) else ""
        return "— " + notes.ref(f"{impl}{where}: {reason}")
    extra = []
    if impl in case.notes:
        extra.append(notes.ref(f"{impl} on {case.label}: {case.notes[impl]}"))
    if (impl, mode) in problem.flags:
        extra.append(notes.ref(f"{impl} on {case.label}: "
                               + difference_text(diffs[(impl, case.label)])))
    return " ".join([ms(seconds), *extra])


def ratio_cell(value: float | None, goal: float | None = None) -> str:
    if value is None:
        return "—"
    text = f"{value:.2f}"
    return f"**{text}**" if goal is not None and value > goal else text


@dataclass(frozen=True)
class Target:
    """One of issue 8's targets over the time ratios: the worst ratio of the selected cells."""

    name: str
    goal: float
    ratios: tuple[str, ...]  # RATIOS columns
    dtype: str
    select: Callable[[Case], bool] = lambda case: True


TARGETS = [
    Target("losskit on torch tensors / PyTorch's own loss (float32, every shape)", 1.3,
           ("torch / PyTorch",), "float32"),
    Target("losskit under `jax.jit` / Optax under `jax.jit` (float32)", 1.3, ("JAX / Optax",), "float32"),
    Target("losskit on NumPy / PyTorch eager, the tutorial's seven (float32)", 1.0,
           ("NumPy / PyTorch",), "float32", lambda case: case.loss in TUTORIAL),
    Target("losskit on NumPy / PyTorch eager, the rest of the catalog (float32)", 1.5,
           ("NumPy / PyTorch",), "float32", lambda case: case.loss not in TUTORIAL),
    Target("float64: losskit / the same peer in float64 (torch, JAX, NumPy vs PyTorch)", 2.0,
           ("torch / PyTorch", "JAX / Optax", "NumPy / PyTorch"), "float64"),
]
MEMORY_GOAL, SMALL_GOAL, COMPILE_GOAL = 3.0, 2.0, 2.0
NUMERATOR = {label: num for label, num, _ in RATIOS}


def worst(items: list[tuple[float, str]]) -> tuple[float | None, str, int]:
    """(worst value, where, how many) of (value, where) pairs."""
    if not items:
        return None, "no measurement", 0
    value, where = max(items)
    return value, where, len(items)


def summary_row(name: str, goal: float, items: list[tuple[float, str]], unit: str = "x") -> str:
    value, where, n = worst(items)
    missed = sum(v > goal for v, _ in items)
    verdict = "—" if value is None else ("met" if missed == 0 else f"**missed** ({missed} of {n})")
    shown = "—" if value is None else f"{value:.2f}{unit} ({where})"
    return f"| {name} | <= {goal:g}{unit} | {shown} | {verdict} |"


def summary(problems: list[Problem], small: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| target | goal | worst (where) | verdict |", "|---|---|---|---|"]
    for target in TARGETS:
        items = []
        for pr in problems:
            case = CASES[pr.case]
            if pr.dtype != target.dtype or not target.select(case):
                continue
            for label in target.ratios:
                _, num, den = next(r for r in RATIOS if r[0] == label)
                for mode in MODES:
                    r = ratio(pr, num, den, mode)
                    if r is not None:
                        items.append((r, f"{case.label}, {shape_text(pr.shape)}, {mode}, {label}"))
        lines.append(summary_row(target.name, target.goal, items))
    memory = [(m, f"{CASES[pr.case].label}, {shape_text(pr.shape)}, {pr.dtype}")
              for pr in problems for impl, m in pr.memory.items() if impl == "losskit NumPy"
              and isinstance(m, float)]
    lines.append(summary_row("peak memory of NumPy `value_and_gradient` / `y_pred` size", MEMORY_GOAL,
                             memory))
    small_items = [(row[f"losskit {mode}"] / row[f"formula {mode}"], f"{loss}, {mode}")
                   for loss, row in small.items() for mode in MODES]
    lines.append(summary_row("one (32, 1) call / the two-line NumPy formula (tutorial's seven)",
                             SMALL_GOAL, small_items))
    compiles = [(s, f"{CASES[pr.case].label}, {pr.dtype}, {mode}") for pr in problems
                for (impl, mode), s in pr.compile_s.items() if impl == "losskit JAX" and isinstance(s, float)]
    stopped: dict[str, set[str]] = {}
    for pr in problems:
        if any(impl == "losskit JAX" and isinstance(v, str) for (impl, _), v in pr.compile_s.items()):
            stopped.setdefault(CASES[pr.case].label, set()).add(pr.dtype)
    row = summary_row("`jax.jit` compile time of losskit (issue 8 item 6: a second or two)", COMPILE_GOAL,
                      compiles, unit=" s")
    if stopped:
        where = "; ".join(f"{label} ({', '.join(sorted(d))})" for label, d in stopped.items())
        row = row[:-2] + f"; stopped at the compile limit and skipped: {where} |"
    lines.append(row)
    lines.append("| boosting `gradient_hessian` / scikit-learn's `_loss` | <= 1.5x | not measured by this "
                 "script | — |")
    return lines


def detail_table(problems: list[Problem], dtype: str, notes: Notes) -> list[str]:
    diffs = differences(problems)
    header = ["loss", "shape", "mode", *(f"{impl} ms" for impl in IMPLS), *(r[0] for r in RATIOS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for pr in problems:
        if pr.dtype != dtype:
            continue
        case = CASES[pr.case]
        goals = {label: None for label, _, _ in RATIOS}
        for target in TARGETS:
            if target.dtype == dtype and target.select(case):
                goals.update(dict.fromkeys(target.ratios, target.goal))
        for mode in MODES:
            cells = [case.label, shape_text(pr.shape), mode]
            cells += [time_cell(pr, impl, mode, notes, diffs) for impl in IMPLS]
            cells += [ratio_cell(ratio(pr, num, den, mode), goals[label]) for label, num, den in RATIOS]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def memory_table(problems: list[Problem]) -> list[str]:
    lines = ["| loss | shape | dtype | losskit | NumPy formula |", "|---|---|---|---|---|"]
    for pr in problems:
        if pr.memory:
            cells = [CASES[pr.case].label, shape_text(pr.shape), pr.dtype]
            for impl in ("losskit NumPy", "NumPy formula"):
                m = pr.memory.get(impl)
                goal = MEMORY_GOAL if impl == "losskit NumPy" else None
                cells.append(ratio_cell(m, goal) if isinstance(m, float) else "—")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def compile_table(problems: list[Problem]) -> list[str]:
    """Compile seconds per case and dtype (the representative shape, else the first measured)."""
    chosen: dict[tuple[int, str], Problem] = {}
    for pr in problems:
        if pr.compile_s and ((pr.case, pr.dtype) not in chosen or pr.shape == OTHER_SHAPE):
            chosen[(pr.case, pr.dtype)] = pr
    keys = [(impl, mode) for impl in JAX_IMPLS for mode in MODES]
    header = ["loss", "dtype", *(f"{impl} {mode} s" for impl, mode in keys)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (case, dtype), pr in sorted(chosen.items()):
        cells = [CASES[case].label, dtype]
        for key in keys:
            s = pr.compile_s.get(key)
            cells.append("—" if s is None else s if isinstance(s, str) else
                         ratio_cell(s, COMPILE_GOAL if key[0] == "losskit JAX" else None))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def small_table(small: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| loss | losskit value µs | formula value µs | ratio | losskit value+grad µs | "
             "formula value+grad µs | ratio |", "|---|---|---|---|---|---|---|"]
    for loss, row in small.items():
        cells = [loss]
        for mode in MODES:
            a, b = row[f"losskit {mode}"], row[f"formula {mode}"]
            cells += [f"{a * 1e6:.1f}", f"{b * 1e6:.1f}", ratio_cell(a / b, SMALL_GOAL)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ffi_targets() -> str:
    """The XLA FFI targets the compiled kernels export (built only where jaxlib's header was found)."""
    try:
        from losskit._backends import _cpu  # type: ignore[attr-defined]
    except ImportError:
        return "none (no compiled kernels)"
    names = sorted(_cpu.xla_targets()) if hasattr(_cpu, "xla_targets") else []
    return ", ".join(names) if names else "**none** (the extension was built without jaxlib's header)"


def machine_facts(args: argparse.Namespace) -> list[str]:
    thread_env = {k: v for k, v in os.environ.items()
                  if k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")}
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores; torch threads: {torch.get_num_threads()}; "
        f"`--threads`: {args.threads or 'not set (library defaults)'}",
        f"- Python {platform.python_version()} on {platform.system()} {platform.machine()}",
        f"- numpy {np.__version__}, torch {torch.__version__}, jax {jax.__version__}, "
        f"keras {keras.__version__} (backend {keras.backend.backend()}), "
        f"optax {optax.__version__}, losskit {losskit.__version__}",
        f"- Thread environment: {thread_env or 'none set'}",
        f"- losskit's XLA FFI targets (JAX on CPU; without them those losses take a host callback, "
        f"which copies every operand): {ffi_targets()}",
        "- Extra load: " + ("a subprocess kept every core busy (`--load`)" if args.load
                            else "none (`--load` not given)"),
        "- Load average (1, 5, 15 min) at the end of the run: "
        + ", ".join(f"{load:.1f}" for load in os.getloadavg())
        + (" (above the core count: other work shared the machine)"
           if os.getloadavg()[0] > (os.cpu_count() or 1) else ""),
    ]


def stamp_lines(stamps: Mapping[str, str]) -> list[str]:
    """When each loss's rows were measured, if more than one run made this report (``--merge``)."""
    runs: dict[str, list[str]] = {}
    for loss, when in stamps.items():
        runs.setdefault(when, []).append(loss)
    if len(runs) < 2:
        return []
    latest = max(runs)
    return [f"- Merged report (`--merge`): the rows of {', '.join(sorted(runs[latest]))} were measured at "
            f"{latest}; every other row at "
            + "; ".join(f"{when} ({len(losses)} losses)" for when, losses in sorted(runs.items())
                        if when != latest)
            + ". The machine facts above are the latest run's."]


INTRO = """\
Generated by `python benchmarks/speed.py{flags}`; do not edit by hand. Every ratio is
**losskit's time divided by the peer's time**: below 1 losskit is faster, above 1 it is slower
(issue 8 states its targets this way). Bold: a ratio over its goal.

What runs: every registered loss (one row per loss, and per `from_logits` for the cross-entropies)
against every peer that has it. losskit on NumPy arrays; the textbook NumPy formula; PyTorch eager
(`torch.nn.functional`, autograd for the gradient); losskit on torch tensors; losskit on JAX arrays,
Optax and Keras 3 (JAX backend), all three under `jax.jit` (`jax.value_and_grad` for the gradient),
compiled ahead of the timing in a worker process. "value" is the reduced loss (mean over the batch),
"value+grad" the loss and its gradient with respect to `y_pred`. Each time is the median of
interleaved rounds (every implementation once per round) after a warm-up round; inputs come from the
property suite's generator (`tests/conftest.py`). The cross-entropies run at {ce_shapes}; every
other loss at {other_shape} (one representative shape keeps the full run near 15 minutes on 2 cores),
except `multilabel_margin` at {pairwise} (losskit's kernel holds rows x classes x classes temporaries);
float64 at {f64_shapes} only (or the loss's own shape). Peers that lack a loss, raise on its inputs,
or disagree with losskit's value or gradient (a different definition, or a peer that loses accuracy)
carry a numbered note.
"""


def report(args: argparse.Namespace, problems: list[Problem], small: dict[str, dict[str, float]],
           elapsed: float, planned: int, stamps: Mapping[str, str] | None = None) -> str:
    ce_shapes, other_shape, f64_shapes = shapes(args.quick)
    flags = "".join(f" {f}" for f, on in (("--quick", args.quick), ("--load", args.load)) if on)
    flags += f" --threads {args.threads}" if args.threads else ""
    flags += f" --only {','.join(sorted(args.only))}" if args.only and not args.merge else ""
    notes = Notes()
    title = "# losskit speed" + (" (--quick smoke run: tiny shapes, not a measurement)" if args.quick
                                 else " (partial run: --only)" if args.only and not args.merge else "")
    if len(problems) < planned:
        title += f" (interrupted: {len(problems)} of {planned} measurements)"
    lines = [title,
             "", INTRO.format(flags=flags, ce_shapes=", ".join(map(shape_text, ce_shapes)),
                              other_shape=shape_text(other_shape),
                              pairwise=shape_text(other_shape if args.quick else PAIRWISE_SHAPE),
                              f64_shapes=", ".join(map(shape_text, f64_shapes))),
             "Machine:", "", *machine_facts(args), *stamp_lines(stamps or {}), "",
             "## Summary: issue 8's targets", "",
             "The worst ratio over every measured cell (both modes) of each target.", "",
             *summary(problems, small), ""]
    for dtype in DTYPES:
        lines += [f"## Time, {dtype} (milliseconds; ratios losskit / peer)", "",
                  *detail_table(problems, dtype, notes), ""]
    lines += ["## Peak memory of one NumPy `value_and_gradient`, over the size of `y_pred`", "",
              "tracemalloc's peak during the call (NumPy reports its buffers to it), the returned "
              f"gradient included; goal <= {MEMORY_GOAL:g}.", "", *memory_table(problems), "",
              f"## One call on a {shape_text(SMALL_SHAPE)} batch, float32 (microseconds per call)", "",
              "The tutorial's seven against the two-line NumPy formula (best of 5 samples); "
              f"goal <= {SMALL_GOAL:g}. {', '.join(CLASS_AXIS)} run on {shape_text(SMALL_CLASSES_SHAPE)}: "
              "a single class makes them degenerate (the loss is 0, and losskit warns).", "",
              *small_table(small), "",
              "## `jax.jit` compile time (seconds, lowering and compiling, ahead of time)", "",
              f"Measured in the worker at {shape_text(other_shape)}; a compile over "
              f"{timing_for(args).compile_limit_s:g} s is stopped and the loss is skipped under `jax.jit`.",
              "", *compile_table(problems), "", "## Notes", "", *notes.markdown(), "",
              f"Total run time: {elapsed:.0f} s.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The record: every measurement in JSON next to the Markdown, so that a later `--merge` run can
# re-measure a few losses and keep the rest (each row stays one interleaved run of its own).
# ---------------------------------------------------------------------------------------------


def _keyed(d: Mapping[Key, Any]) -> list[list[Any]]:
    return [[impl, mode, value] for (impl, mode), value in d.items()]


def _unkeyed(rows: list[list[Any]]) -> dict[Key, Any]:
    return {(impl, mode): value for impl, mode, value in rows}


def record(problems: list[Problem], small: dict[str, dict[str, float]], stamps: Mapping[str, str]
           ) -> dict[str, Any]:
    """The measurements as JSON data; problems by case label (case indices move as CASES grows)."""
    return {"problems": [{"case": CASES[p.case].label, "shape": list(p.shape), "dtype": p.dtype,
                          "seconds": _keyed(p.seconds), "missing": _keyed(p.missing),
                          "flags": _keyed(p.flags), "compile_s": _keyed(p.compile_s),
                          "memory": p.memory} for p in problems],
            "small": small, "stamps": dict(stamps)}


def load_record(path: Path) -> tuple[list[Problem], dict[str, dict[str, float]], dict[str, str]]:
    """A record written by :func:`record`; rows whose case no longer exists are dropped."""
    data = json.loads(path.read_text())
    index = {case.label: i for i, case in enumerate(CASES)}
    problems = [Problem(index[p["case"]], tuple(p["shape"]), p["dtype"], _unkeyed(p["seconds"]),
                        _unkeyed(p["missing"]), _unkeyed(p["flags"]), _unkeyed(p["compile_s"]),
                        p["memory"])
                for p in data["problems"] if p["case"] in index]
    return problems, data["small"], data.get("stamps", {})


def merged(old: list[Problem], new: list[Problem]) -> list[Problem]:
    """``old`` with the rows of ``new`` put in place (same case, shape and dtype), in plan order."""
    fresh = {(p.case, p.shape, p.dtype): p for p in new}
    rows = {(p.case, p.shape, p.dtype): p for p in old} | fresh
    order = {dtype: i for i, dtype in enumerate(DTYPES)}
    return sorted(rows.values(), key=lambda p: (order[p.dtype], p.case))


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------


def shapes(quick: bool) -> tuple[list[tuple[int, int]], tuple[int, int], list[tuple[int, int]]]:
    if quick:
        return QUICK_CROSS_ENTROPY_SHAPES, QUICK_OTHER_SHAPE, [QUICK_OTHER_SHAPE]
    return CROSS_ENTROPY_SHAPES, OTHER_SHAPE, FLOAT64_SHAPES


def timing_for(args: argparse.Namespace) -> Timing:
    base = QUICK if args.quick else FULL
    return Timing(**{**base.__dict__, "compile_limit_s": args.compile_limit or base.compile_limit_s})


def plan(quick: bool, only: set[str] | None = None) -> list[Problem]:
    """Every (case, shape, dtype) to measure, float32 first; --quick runs float64 for the tutorial's
    seven only (unless ``only`` names the losses)."""
    ce_shapes, other_shape, f64_shapes = shapes(quick)
    out = []
    for dtype in DTYPES:
        for i, case in enumerate(CASES):
            if only is not None and case.loss not in only:
                continue
            if quick and only is None and dtype == "float64" and case.loss not in TUTORIAL:
                continue
            own = case.shape if case.shape and not quick else other_shape
            case_shapes = ce_shapes if case.cross_entropy else [own]
            if dtype == "float64":
                case_shapes = [s for s in case_shapes if s in f64_shapes] or [own]
            out += [Problem(i, shape, dtype) for shape in case_shapes]
    return out


def start_load() -> subprocess.Popen[bytes]:
    """A subprocess with one busy thread per core (single-threaded BLAS products, which release the GIL)."""
    code = ("import threading, numpy as np\n"
            "def spin():\n    a = np.random.rand(300, 300)\n    while True: a @ a\n"
            f"for _ in range({os.cpu_count() or 1}): threading.Thread(target=spin).start()\n")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repeats: a smoke test")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"Markdown file to write (default {DEFAULT_OUTPUT}; none with --quick)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for NumPy's BLAS, PyTorch, XLA and losskit (default: theirs)")
    parser.add_argument("--load", action="store_true",
                        help="run while a subprocess keeps every core busy")
    parser.add_argument("--compile-limit", type=float, default=None,
                        help="seconds a jax.jit compile may take before the loss is skipped (20)")
    parser.add_argument("--only", type=lambda text: {losskit.get(n).name for n in text.split(",")},
                        default=None, help="comma-separated loss names or aliases: measure only these "
                                           "(with --quick, under jax.jit too)")
    parser.add_argument("--merge", action="store_true",
                        help="with --only: re-measure those losses and merge them into the record "
                             "(the output's .json) of an earlier full run, then write the whole report")
    parser.add_argument("--memory-limit", type=float, default=8.0,
                        help="GiB of data each process may allocate (RLIMIT_DATA; 0: no limit): a loss "
                             "that needs more raises MemoryError, reported in a note (default 8)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.merge and args.only is None:
        parser.error("--merge needs --only (the losses to re-measure)")
    return args


def set_threads(n: int | None) -> None:
    torch.set_num_threads(n or os.cpu_count() or 1)
    setter = getattr(losskit, "set_num_threads", None)
    if n and setter is not None:
        setter(n)


def limit_memory(gib: float) -> None:
    """Cap this process's data segment, so that a loss with huge temporaries fails with MemoryError
    instead of exhausting a shared machine."""
    if gib > 0 and hasattr(resource, "RLIMIT_DATA"):
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        soft = int(gib * 2**30)
        resource.setrlimit(resource.RLIMIT_DATA, (soft if hard < 0 else min(soft, hard), hard))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    limit_memory(args.memory_limit)
    if args.worker:
        return worker_main()
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if args.merge and (output is None or not output.with_suffix(".json").exists()):  # before measuring
        raise SystemExit("--merge: no record to merge into ("
                         + ("give --output" if output is None else f"{output.with_suffix('.json')} is "
                            "missing; a full run without --only writes it") + ")")
    timing = timing_for(args)
    load = start_load() if args.load else None
    worker = Worker([*(["--threads", str(args.threads)] if args.threads else []),
                     "--memory-limit", str(args.memory_limit)])
    start = time.perf_counter()
    problems = plan(args.quick, args.only)
    if not problems:
        raise SystemExit(f"no registered loss among {sorted(args.only or [])}")
    skips: dict[tuple[int, str], set[Key]] = {}
    small: dict[str, dict[str, float]] = {}
    done = 0
    np.seterr(all="ignore")  # the textbook formulas overflow or divide by zero where they do
    try:
        wanted = TUTORIAL if args.only is None else [n for n in TUTORIAL if n in args.only]
        small = {case.loss: small_batch(case, timing, seed=1) for case in CASES
                 if case.loss in wanted and not case.options}
        for pr in problems:
            case = CASES[pr.case]
            seed = 1000 + pr.case
            measure_main(pr, timing, seed)
            if args.quick and args.only is None and ((case.label, pr.dtype) not in QUICK_JAX
                                                     or (pr.case, pr.dtype) in skips):
                pr.missing[("losskit JAX", "")] = "not run with --quick (compiling every loss takes minutes)"
            else:
                measure_jax(worker, pr, timing, seed, skips.setdefault((pr.case, pr.dtype), set()))
            done += 1
            print(f"[{done}/{len(problems)}] {time.perf_counter() - start:5.0f} s  {case.label} "
                  f"{shape_text(pr.shape)} {pr.dtype}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:  # Ctrl-C (or kill -INT): report what was measured
        print(f"interrupted: reporting the {done} measurements done", file=sys.stderr)
    finally:
        worker.stop()
        if load is not None:
            load.kill()
            load.wait()
    measured, when = problems[:done], time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    stamps = {CASES[p.case].loss: when for p in measured}
    planned = len(problems)
    if args.merge:
        old, old_small, old_stamps = load_record(output.with_suffix(".json"))
        measured, small = merged(old, measured), {**old_small, **small}
        stamps, planned = {**old_stamps, **stamps}, len(measured) - len(problems) + planned
    text = report(args, measured, small, time.perf_counter() - start, planned, stamps)
    print(text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        output.with_suffix(".json").write_text(json.dumps(record(measured, small, stamps), indent=1))
    return 0

if __name__ == "__main__":
    sys.exit(main())
