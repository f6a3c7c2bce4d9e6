"""Accuracy benchmark: worst error in ulp of losskit and its peers against the mpmath oracle.

For every case of ``tests/oracle/cases.py`` (loss x regime x dtype x options), the per-sample
values and per-sample gradients of losskit, Keras 3 (JAX backend), PyTorch, Optax and
scikit-learn are compared with the exact values of ``tests/oracle/reference.py``.  Prints a
Markdown table and writes it, with an explanation, to ``docs/accuracy.md``.

A second table does the same for every entry of the catalog (``tests/oracle/catalog.py``: every
loss x option set x regime x dtype, against each peer the entry names), and the worst error of each
loss and peer over all its cases goes to ``docs/accuracy.json``, which ``benchmarks/catalog.py``
reads for ``docs/catalog.md``.

Run: ``python benchmarks/accuracy.py`` (about a minute on 2 cores), or
``python benchmarks/accuracy.py --catalog-only`` to re-measure the catalog only (the first table
and the core seven's summary are kept from the previous run).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable
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
from oracle import catalog as K  # noqa: E402
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


def worst_ulp(computed: np.ndarray, exact: Any, dtype: Any) -> tuple[float, str]:
    """Worst error of an array in ulp and its formatted cell; special markers for rule breaks
    (their number is inf)."""
    comp = np.asarray(computed)
    if comp.shape != np.shape(np.asarray(exact, dtype=object)):
        return math.inf, "shape?"
    if np.isnan(comp.astype(np.float64)).any():
        return math.inf, "NaN"
    viol = R.violation_ulp(comp, exact, dtype)
    w = float(viol.max()) if viol.size else 0.0
    mark = "" if comp.dtype == np.dtype(dtype) else "†"
    if np.isinf(w):
        ex = np.asarray(exact, dtype=object).reshape(-1)[int(np.argmax(viol))]
        return w, ("≠0" if ex == 0 else "≠inf" if not R.mpmath.isfinite(ex) else "inf") + mark
    return w, (f"{w:.3g}" if w < 1e4 else f"{w:.1e}") + mark


def worst(computed: np.ndarray, exact: Any, dtype: Any) -> str:
    """Worst error of an array in ulp, formatted; special markers for rule breaks."""
    return worst_ulp(computed, exact, dtype)[1]


Cell = tuple[float, str]
"""(worst error in ulp, formatted cell); the number is inf for a rule break or an error, NaN for
"not measured" (the peer has no such loss, or no gradient)."""
NONE: Cell = (math.nan, "–")
Summary = dict[str, dict[str, dict[str, Cell]]]
"""losskit function name -> peer -> "value"/"grad" -> the worst cell over all its cases."""


def cells_of(run: Callable[[], Result | None], exact_v: list[Any], exact_g: list[list[Any]],
             dtype: Any) -> tuple[Cell, Cell]:
    """Worst value and gradient errors of one peer on one case."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = run()
    except Exception as exc:  # a peer refusing the input is a result too
        return (math.inf, f"err ({type(exc).__name__})"), NONE
    if res is None:
        return NONE, NONE
    values, grads = res
    value = worst_ulp(values, exact_v, dtype)
    return value, (NONE if grads is None else worst_ulp(grads, exact_g, dtype))


def record(summary: Summary | None, loss: str, peer: str, value: Cell, grad: Cell) -> None:
    """Keep the worst cell of each (loss, peer, value/grad) in ``summary``."""
    if summary is None:
        return
    for kind, cell in (("value", value), ("grad", grad)):
        if math.isnan(cell[0]):
            continue
        slot = summary.setdefault(loss, {}).setdefault(peer, {})
        if kind not in slot or cell[0] > slot[kind][0]:
            slot[kind] = cell


def measure(case: C.Case, exact_v: list[Any], exact_g: list[list[Any]],
            summary: Summary | None = None) -> list[str]:
    """Cells (value, gradient) of every peer for one case."""
    cells = []
    for name, peer in PEERS.items():
        value, grad = cells_of(functools.partial(peer, case), exact_v, exact_g, case.dtype)
        record(summary, LOSSKIT[case.loss][0], name, value, grad)
        if name == "sklearn":
            cells.append("err" if value[1].startswith("err") else value[1])
        else:
            cells += [value[1], grad[1]]
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


def table(summary: Summary | None = None) -> str:
    """The Markdown table for every case (and the worst cell of each loss and peer in ``summary``)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for case in C.all_cases():
        exact_v, exact_g = exact_of(case)
        cells = [case.loss, options_label(case), case.regime, np.dtype(case.dtype).name]
        cells += measure(case, exact_v, exact_g, summary)
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


# --------------------------------------------------------------------------- the catalog

CATALOG_PEERS = {"keras": "Keras", "torch": "PyTorch", "optax": "Optax", "sklearn": "sklearn"}
"""Catalog peer keys (``Entry.peers``) and their column names; other keys get a column of their own."""
CATALOG_HEADING = "## The catalog"
CATALOG_DTYPES = (np.float32, np.float64)


def catalog_peers(entries: Iterable[K.Entry]) -> dict[str, str]:
    """Peer key -> column name, for every peer any entry names."""
    keys = {k for e in entries for k in e.peers}
    out = {k: v for k, v in CATALOG_PEERS.items() if k in keys}
    return out | {k: k for k in sorted(keys - set(out))}


def run_entry(entry: K.Entry, arrays: K.Arrays) -> Result:
    """losskit function values and reduction='none' gradients of one catalog entry."""
    extras = {k: v for k, v in arrays.items() if k not in ("y_true", "y_pred")}
    values = getattr(losskit, entry.loss)(arrays["y_true"], arrays["y_pred"], **extras, **entry.options)
    obj = type(losskit.get(entry.loss))(reduction="none", **entry.options)
    return np.asarray(values), np.asarray(obj.gradient(arrays["y_true"], arrays["y_pred"], **extras))


def entry_options(entry: K.Entry) -> str:
    """Short options text of an entry."""
    return ", ".join(f"{k}={v}" for k, v in sorted(entry.options.items())) or "–"


def measure_entry(entry: K.Entry, regime: str, dtype: Any, peers: Iterable[str],
                  summary: Summary | None = None) -> list[Cell]:
    """[losskit value, losskit grad, then value and grad of each peer] on one regime and dtype."""
    arrays = entry.inputs(regime, dtype)
    exact_v, exact_g = entry.exact(arrays)
    cells = list(cells_of(functools.partial(run_entry, entry, arrays), exact_v, exact_g, dtype))
    record(summary, entry.loss, "losskit", *cells)
    for key in peers:
        if key in entry.peers:
            copy = {k: np.array(v) for k, v in arrays.items()}
            pair = cells_of(functools.partial(entry.peers[key], copy, dict(entry.options)),
                            exact_v, exact_g, dtype)
        else:
            pair = (NONE, NONE)
        record(summary, entry.loss, CATALOG_PEERS.get(key, key), *pair)
        cells += pair
    return cells


def catalog_table(summary: Summary | None = None, entries: Iterable[K.Entry] | None = None) -> str:
    """The Markdown table for every catalog entry x regime x dtype."""
    entries = list(K.ENTRIES if entries is None else entries)
    peers = catalog_peers(entries)
    header = ["loss", "options", "regime", "dtype", "losskit value", "losskit grad"]
    header += [f"{name} {kind}" for name in peers.values() for kind in ("value", "grad")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in entries:
        for regime in entry.regimes:
            for dtype in CATALOG_DTYPES:
                cells = measure_entry(entry, regime, dtype, peers, summary)
                row = [entry.loss, entry_options(entry), regime, np.dtype(dtype).name]
                lines.append("| " + " | ".join(row + [c[1] for c in cells]) + " |")
    if not entries:
        lines.append("| (no catalog entries yet) |" + " |" * (len(header) - 1))
    return "\n".join(lines)


CATALOG_EXPLANATION = """\
{heading}

Every loss of the catalog (issue 4), one row per entry of `tests/oracle/families/*.py` (a loss with
one option set), regime and dtype, measured by the same rules as above against the entry's mpmath
oracle (`reference.Spec`: values at 80 digits, gradients by numerical differentiation at 400+ bits)
on at most {rows} rows per regime. Peers are the entry's own adapters (`tests/oracle/peers.py`:
values, and autograd gradients of the summed per-sample values; `–` where the entry names no such
peer or the peer has no gradient); their names in each library are listed in `docs/catalog.md`.
`tests/test_catalog.py` holds losskit to `max_ulp` (8 unless an entry documents otherwise) on
every one of these cases. Measured on {date}.

"""

JSON_PATH = ROOT / "docs" / "accuracy.json"
"""Worst error of each loss and peer over all its cases; read by ``benchmarks/catalog.py``."""


def summary_json(summary: Summary) -> dict[str, Any]:
    """JSON-ready summary: ``{loss: {peer: {"value"|"grad": {"ulp": float|None, "cell": str}}}}``
    (``ulp`` is None for rule breaks, NaN outputs and errors)."""
    return {loss: {peer: {kind: {"ulp": None if math.isinf(c[0]) else c[0], "cell": c[1]}
                          for kind, c in kinds.items()}
                   for peer, kinds in peers.items()}
            for loss, peers in sorted(summary.items())}


def main(argv: list[str] | None = None) -> None:
    """Print the tables and write docs/accuracy.md and docs/accuracy.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog-only", action="store_true",
                        help="re-measure the catalog only; keep the core seven from the last run")
    args = parser.parse_args(argv)
    start = time.time()
    out = ROOT / "docs" / "accuracy.md"
    versions = {"keras": keras.__version__, "jax": jax.__version__, "torch": torch.__version__,
                "optax": optax.__version__, "sklearn": sklearn.__version__}
    date = time.strftime("%Y-%m-%d")
    if args.catalog_only:
        head = out.read_text().split(CATALOG_HEADING)[0].rstrip("\n") + "\n"
        core = json.loads(JSON_PATH.read_text())["core"] if JSON_PATH.exists() else {}
    else:
        summary: Summary = {}
        text = table(summary)
        print(text)
        head = EXPLANATION.format(rows=C.ROWS, date=date, **versions) + text + "\n"
        core = summary_json(summary)
    cat_summary: Summary = {}
    cat_text = catalog_table(cat_summary)
    print(cat_text)
    doc = head + "\n" + CATALOG_EXPLANATION.format(heading=CATALOG_HEADING, rows=K.ROWS, date=date)
    out.write_text(doc + cat_text + "\n")
    payload = {"measured": date, "versions": versions, "core": core,
               "catalog": summary_json(cat_summary)}
    JSON_PATH.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)} and {JSON_PATH.relative_to(ROOT)} in "
          f"{time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
