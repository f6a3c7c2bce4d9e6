"""Accuracy benchmark: worst error in ulp of losskit and its peers against the mpmath oracle.

For every case of ``tests/oracle/cases.py`` (loss x regime x dtype x options), the per-sample
values and per-sample gradients of losskit, Keras 3 (JAX backend), PyTorch, Optax and
scikit-learn are compared with the exact values of ``tests/oracle/reference.py``.  Prints a
Markdown table and writes it, with an explanation, to ``docs/accuracy.md``.

Run: ``python benchmarks/accuracy.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn import metrics  # noqa: E402

import losskit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from oracle import cases as C  # noqa: E402
from oracle import reference as R  # noqa: E402

Result = tuple[np.ndarray, np.ndarray | None]  # per-sample values, per-sample gradients
Peer = Callable[[C.Case], Result | None]  # None: the peer has no such loss

ORACLE = R.ORACLE
LOSSKIT = R.LOSSKIT_NAMES


# --------------------------------------------------------------------------- peers


def run_losskit(case: C.Case) -> Result:
    """losskit function values and reduction='none' gradients."""
    fn_name, cls_name = LOSSKIT[case.loss]
    values = getattr(losskit, fn_name)(case.y_true, case.y_pred, **case.options)
    obj = getattr(losskit, cls_name)(reduction="none", **case.options)
    return np.asarray(values), np.asarray(obj.gradient(case.y_true, case.y_pred))


def _jax_result(per_sample: Callable[[Any], Any], y_pred: np.ndarray) -> Result:
    """Values and jax.grad of the summed per-sample values."""
    p = jnp.asarray(y_pred)
    values = np.asarray(per_sample(p))
    grads = np.asarray(jax.grad(lambda q: jnp.sum(per_sample(q)))(p))
    return values, grads


def run_keras(case: C.Case) -> Result:
    """keras.losses.<same name> on the JAX backend (floatx = the case's dtype), jax.grad."""
    keras.config.set_floatx(np.dtype(case.dtype).name)
    fn = getattr(keras.losses, LOSSKIT[case.loss][0])
    t = jnp.asarray(case.y_true)
    return _jax_result(lambda p: fn(t, p, **case.options), case.y_pred)


def _smoothed(t: Any, ls: float, k: int) -> Any:
    """t (1 - ls) + ls / k in the array's own dtype."""
    return t * (1 - ls) + ls / k if ls else t


def _optax_per_sample(case: C.Case) -> Callable[[Any], Any] | None:
    """Optax per-sample loss as a function of y_pred, or None."""
    t = jnp.asarray(case.oracle_targets)
    ls, fl = case.label_smoothing, case.from_logits
    if case.loss == "mse":
        return lambda p: optax.squared_error(p, t).mean(-1)
    if case.loss == "bce" and fl:
        return lambda p: optax.sigmoid_binary_cross_entropy(p, _smoothed(t, ls, 2)).mean(-1)
    if case.loss == "cce":
        tk = optax.smooth_labels(t, ls) if ls else t
        if fl:
            return lambda p: optax.softmax_cross_entropy(p, tk)
        return lambda p: optax.softmax_cross_entropy(jnp.log(p), tk)
    if case.loss == "scce":
        if fl:
            return lambda p: optax.softmax_cross_entropy_with_integer_labels(p, t)
        return lambda p: optax.softmax_cross_entropy_with_integer_labels(jnp.log(p), t)
    if case.loss == "kld":
        return lambda p: optax.kl_divergence(jnp.log(p), t)
    if case.loss == "hinge":
        return lambda p: optax.hinge_loss(p, t).mean(-1)
    return None


def run_optax(case: C.Case) -> Result | None:
    """Optax losses (log of the probabilities where it wants logits), grads by jax.grad."""
    fn = _optax_per_sample(case)
    return None if fn is None else _jax_result(fn, case.y_pred)


def _torch_per_sample(case: C.Case) -> Callable[[Any], Any] | None:
    """torch.nn.functional per-sample loss as a function of y_pred, or None."""
    t = torch.from_numpy(np.ascontiguousarray(case.oracle_targets))
    ls, fl = case.label_smoothing, case.from_logits
    if case.loss == "mse":
        return lambda p: F.mse_loss(p, t, reduction="none").mean(-1)
    if case.loss == "mae":
        return lambda p: F.l1_loss(p, t, reduction="none").mean(-1)
    if case.loss == "bce":
        ts = _smoothed(t, ls, 2)
        if fl:
            return lambda p: F.binary_cross_entropy_with_logits(p, ts, reduction="none").mean(-1)
        return lambda p: F.binary_cross_entropy(p, ts, reduction="none").mean(-1)
    if case.loss in ("cce", "scce"):
        target = t.long() if case.loss == "scce" else t
        opts = {"label_smoothing": ls} if case.loss == "cce" else {}
        if fl:
            return lambda p: F.cross_entropy(p, target, reduction="none", **opts)
        return lambda p: F.cross_entropy(torch.log(p), target, reduction="none", **opts)
    if case.loss == "kld":
        return lambda p: F.kl_div(torch.log(p), t, reduction="none").sum(-1)
    return None


def run_torch(case: C.Case) -> Result | None:
    """PyTorch functional losses, gradients by autograd."""
    fn = _torch_per_sample(case)
    if fn is None:
        return None
    p = torch.from_numpy(case.y_pred.copy()).requires_grad_(True)
    out = fn(p)
    out.sum().backward()
    assert p.grad is not None
    return out.detach().numpy(), p.grad.numpy()


def run_sklearn(case: C.Case) -> Result | None:
    """scikit-learn metrics row by row (values only); log_loss for hard-label probabilities."""
    t, p = case.y_true, case.y_pred
    if case.loss in ("mse", "mae"):
        fn = metrics.mean_squared_error if case.loss == "mse" else metrics.mean_absolute_error
        return np.array([fn(tr, pr) for tr, pr in zip(t, p, strict=True)], p.dtype), None
    hard = case.label_smoothing == 0 and not case.from_logits
    if case.loss == "bce" and hard and np.isin(t, (0, 1)).all():
        rows = [metrics.log_loss(tr, pr, labels=[0, 1]) for tr, pr in zip(t, p, strict=True)]
        return np.array(rows, p.dtype), None
    if case.loss in ("cce", "scce") and hard:
        k = p.shape[1]
        labels = t if case.loss == "scce" else t.argmax(-1)
        if case.loss == "cce" and not np.isin(t, (0, 1)).all():
            return None
        rows = [
            metrics.log_loss([lab], pr[None], labels=list(range(k)))
            for lab, pr in zip(labels, p, strict=True)
        ]
        return np.array(rows, p.dtype), None
    return None


PEERS: dict[str, Peer] = {
    "losskit": run_losskit,
    "Keras": run_keras,
    "PyTorch": run_torch,
    "Optax": run_optax,
    "sklearn": run_sklearn,
}


# --------------------------------------------------------------------------- measuring


def worst(computed: np.ndarray, exact: Any, dtype: Any) -> str:
    """Worst error of an array in ulp, formatted; special markers for rule breaks."""
    comp = np.asarray(computed)
    if comp.shape != np.shape(np.asarray(exact, dtype=object)):
        return "shape?"
    if np.isnan(comp.astype(np.float64)).any():
        return "NaN"
    viol = R.violation_ulp(comp, exact, dtype)
    w = float(viol.max()) if viol.size else 0.0
    mark = "" if comp.dtype == np.dtype(dtype) else "†"
    if np.isinf(w):
        ex = np.asarray(exact, dtype=object).reshape(-1)[int(np.argmax(viol))]
        return ("≠0" if ex == 0 else "≠inf" if not R.mpmath.isfinite(ex) else "inf") + mark
    return (f"{w:.3g}" if w < 1e4 else f"{w:.1e}") + mark


def measure(case: C.Case, exact_v: list[Any], exact_g: list[list[Any]]) -> list[str]:
    """Cells (value, gradient) of every peer for one case."""
    cells = []
    for name, peer in PEERS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = peer(case)
        except Exception as exc:  # a peer refusing the input is a result too
            cells += [f"err ({type(exc).__name__})", "–"] if name != "sklearn" else ["err"]
            continue
        if res is None:
            cells += ["–", "–"] if name != "sklearn" else ["–"]
            continue
        values, grads = res
        cells.append(worst(values, exact_v, case.dtype))
        if name != "sklearn":
            cells.append("–" if grads is None else worst(grads, exact_g, case.dtype))
    return cells


def exact_of(case: C.Case) -> tuple[list[Any], list[list[Any]]]:
    """Oracle values and gradients of every row."""
    fn = ORACLE[case.loss]
    values, grads = [], []
    for t, p in zip(case.oracle_targets, case.y_pred, strict=True):
        values.append(fn(t, p, **case.options))
        grads.append(R.grad(fn, t, p, **case.options))
    return values, grads


HEADER = [
    "loss",
    "options",
    "regime",
    "dtype",
    "losskit value",
    "losskit grad",
    "Keras value",
    "Keras grad",
    "PyTorch value",
    "PyTorch grad",
    "Optax value",
    "Optax grad",
    "sklearn value",
]


def options_label(case: C.Case) -> str:
    """Short options text."""
    parts = []
    if case.loss in ("bce", "cce", "scce"):
        parts.append("logits" if case.from_logits else "probs")
    if case.label_smoothing:
        parts.append(f"ls={case.label_smoothing:g}")
    return ", ".join(parts) or "–"


def table() -> str:
    """The Markdown table for every case."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for case in C.all_cases():
        exact_v, exact_g = exact_of(case)
        cells = [case.loss, options_label(case), case.regime, np.dtype(case.dtype).name]
        cells += measure(case, exact_v, exact_g)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


EXPLANATION = """\
# Accuracy of losskit and its peers

Generated by `python benchmarks/accuracy.py`; do not edit by hand.

Every cell is the worst error, in units in the last place (ulp = `finfo(dtype).eps` relative to
the exact value), over all per-sample values (or all per-sample gradient elements) of one case.
The inputs are the deterministic regimes of `tests/oracle/cases.py` ({rows} rows, at most 8
columns, already in the dtype), and the exact values come from the arbitrary-precision mpmath
oracle `tests/oracle/reference.py` (values at 80 digits from the exactly converted inputs;
gradients by numerical differentiation at 400+ bits, independent of any analytic formula). Where
the exact value is 0 a peer must return exactly 0 (else `≠0`); where it overflows the dtype a
peer must return +inf (else `≠inf`); subnormal exact values are measured in subnormal spacings
(a flush to zero counts as exact); `NaN` means the peer returned NaN somewhere; `†` means the
peer's output dtype differs from the input dtype; `–` means the peer has no such loss or no
autograd. Peers: Keras {keras} on JAX {jax} (`keras.losses.<same name>` with
`keras.config.set_floatx` set to the case's dtype, gradients by `jax.grad`); PyTorch {torch}
(`torch.nn.functional`: `mse_loss`/`l1_loss` averaged over the last axis,
`binary_cross_entropy[_with_logits]` with the smoothed targets, `cross_entropy` on logits or on
`log(p)`, `kl_div(log p, t)`; autograd); Optax {optax} (`squared_error`,
`sigmoid_binary_cross_entropy`, `softmax_cross_entropy[_with_integer_labels]` on logits or
`log(p)`, `kl_divergence(log p, t)`, `hinge_loss`; `jax.grad`, with `jax_enable_x64` so float64
really runs in float64); scikit-learn {sklearn} (`log_loss`, `mean_squared_error`,
`mean_absolute_error` row by row, hard labels only, values only). Every library is measured by
the same strict rule. losskit's contract is at most 8 ulp everywhere, except one documented
weaker bound: for soft or smoothed targets (t' not exactly 0 or 1) a bce/cce gradient element
near its zero is the difference of two terms (e.g. `sigmoid(x) - t'`), and there the error is
bounded by 8 ulp of the larger term (`tests/test_oracle.py` checks exactly that); the large
"losskit grad" numbers of the soft-target and `ls=0.1` rows are such elements, measured here
relative to the tiny difference. Keras's float64 columns show float32 accuracy (~1e8 ulp)
because `keras.ops.mean` computes in `keras.src.backend.common.dtypes.result_type(x.dtype,
"float32")`, which Keras {keras} resolves to float32 even for float64 inputs; its results are
still returned as float64. Measured on {date}.

"""


def main() -> None:
    """Print the table and write docs/accuracy.md."""
    start = time.time()
    text = table()
    print(text)
    doc = EXPLANATION.format(
        rows=C.ROWS,
        keras=keras.__version__,
        jax=jax.__version__,
        torch=torch.__version__,
        optax=optax.__version__,
        sklearn=sklearn.__version__,
        date=time.strftime("%Y-%m-%d"),
    )
    out = ROOT / "docs" / "accuracy.md"
    out.write_text(doc + text + "\n")
    print(f"\nwrote {out.relative_to(ROOT)} in {time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
