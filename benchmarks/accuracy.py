"""Accuracy benchmark: worst error in ulp of losskit and its peers against the mpmath oracle.

For every oracle entry (``tests/oracle/catalog.py``: every loss x option set, the tutorial's seven
included, x regime x dtype), the per-sample values and per-sample gradients of losskit and of each
peer the entry names (Keras 3 on JAX, PyTorch, Optax, scikit-learn, ...) are compared with the exact
values of the entry's mpmath oracle. Prints a Markdown table and writes it, with an explanation, to
``docs/accuracy.md``; the worst error of each loss and peer over all its cases goes to
``docs/accuracy.json``, which ``benchmarks/catalog.py`` reads for ``docs/catalog.md``.

Run: ``python benchmarks/accuracy.py`` (a few minutes on 2 cores); ``--loss NAME`` (repeatable)
re-measures those losses only and keeps the other rows and summaries of the last run.
``--catalog-only`` is accepted for older instructions and measures everything.
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
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax

jax.config.update("jax_enable_x64", True)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402

import losskit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from oracle import catalog as K  # noqa: E402
from oracle import reference as R  # noqa: E402

Result = tuple[np.ndarray, np.ndarray | None]  # per-sample values, per-sample gradients


# --------------------------------------------------------------------------- measuring


def worst_ulp(computed: np.ndarray, exact: Any, dtype: Any) -> tuple[float, str]:
    """Worst error of an array in ulp and its formatted cell; special markers for rule breaks
    (their number is inf)."""
    comp = np.asarray(computed)
    shape = np.shape(np.asarray(exact, dtype=object))
    if comp.shape != shape and comp.size == math.prod(shape):
        comp = comp.reshape(shape)  # a block sample (CTC's (T, C)): the oracle's gradient is flat per row
    if comp.shape != shape:
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


# --------------------------------------------------------------------------- the catalog

CATALOG_PEERS = {"keras": "Keras", "torch": "PyTorch", "optax": "Optax", "sklearn": "sklearn"}
"""Catalog peer keys (``Entry.peers``) and their column names; other keys get a column of their own."""
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


def header_of(peers: Mapping[str, str]) -> list[str]:
    header = ["loss", "options", "regime", "dtype", "losskit value", "losskit grad"]
    return header + [f"{name} {kind}" for name in peers.values() for kind in ("value", "grad")]


def entry_rows(entry: K.Entry, peers: Mapping[str, str], summary: Summary | None = None) -> list[str]:
    """The Markdown rows of one entry: every regime x dtype."""
    lines = []
    for regime in entry.regimes:
        for dtype in CATALOG_DTYPES:
            cells = measure_entry(entry, regime, dtype, peers, summary)
            row = [entry.loss, entry_options(entry), regime, np.dtype(dtype).name]
            lines.append("| " + " | ".join(row + [c[1] for c in cells]) + " |")
    return lines


def catalog_table(summary: Summary | None = None, entries: Iterable[K.Entry] | None = None) -> str:
    """The Markdown table for every entry x regime x dtype."""
    entries = list(K.ENTRIES if entries is None else entries)
    peers = catalog_peers(K.ENTRIES)
    header = header_of(peers)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in entries:
        lines += entry_rows(entry, peers, summary)
    return "\n".join(lines)


EXPLANATION = """\
# Accuracy of losskit and its peers

Generated by `python benchmarks/accuracy.py`; do not edit by hand.

Every loss losskit has, one row per oracle entry of `tests/oracle/families/*.py` (a loss with one
option set; the tutorial's seven are in `core.py`), regime and dtype. Every cell is the worst
error, in units in the last place (ulp = `finfo(dtype).eps` relative to the exact value), over all
per-sample values (or all per-sample gradient elements) of that case. The inputs are the entry's
deterministic regimes (at most {rows} rows, already in the dtype, seeded by the entry, regime and
dtype), and the exact values come from the entry's arbitrary-precision mpmath oracle
(`reference.Spec`: values at 80 digits from the exactly converted inputs; gradients by numerical
differentiation at 400+ bits, independent of any analytic formula). Where the exact value is 0 a
peer must return exactly 0 (else `≠0`); where it overflows the dtype a peer must return +inf (else
`≠inf`); subnormal exact values are measured in subnormal spacings (a flush to zero counts as
exact); `NaN` means the peer returned NaN somewhere; `†` means the peer's output dtype differs from
the input dtype; `–` means the entry names no such peer, the peer lacks the option set, or it has
no autograd; `err (...)` means the peer refused the input.

Peers are the entry's own adapters (`tests/oracle/peers.py`: values, and autograd gradients of the
summed per-sample values), with the names listed in `docs/catalog.md`: Keras {keras} on JAX {jax}
(`keras.config.set_floatx` set to the case's dtype, gradients by `jax.grad`), PyTorch {torch}
(autograd), Optax {optax} (`jax.grad`, with `jax_enable_x64` so float64 really runs in float64),
scikit-learn {sklearn} (row by row, values only). For the tutorial's seven: Keras's function of the
same name; PyTorch's `mse_loss`/`l1_loss` averaged over the last axis,
`binary_cross_entropy[_with_logits]` on the smoothed targets, `cross_entropy` on logits or on
`log(p)`, `kl_div(log p, t)`; Optax's `squared_error`, `sigmoid_binary_cross_entropy`,
`softmax_cross_entropy[_with_integer_labels]` on logits or `log(p)`, `kl_divergence(log p, t)`,
`hinge_loss`; scikit-learn's `log_loss` (hard labels only), `mean_squared_error`,
`mean_absolute_error`.

Every library is measured by the same strict rule. `tests/test_catalog.py` holds losskit to
`max_ulp` (8 unless an entry documents otherwise) on every one of these cases, with the documented
weaker bounds the entries declare (`docs/catalog.md`, Notes): for soft or smoothed targets a
bce/cce gradient element near its zero is the difference of two terms (e.g. `sigmoid(x) - t'`) and
is bounded by 8 ulp of the larger term, so the large "losskit grad" numbers of the soft-target and
`label_smoothing=0.1` rows are such elements, measured here relative to the tiny difference (and
likewise the distillation losses' gradient elements `T (q_j - p_j)` where student and teacher
nearly agree). Keras's
float64 columns show float32 accuracy (~1e8 ulp) because `keras.ops.mean` computes in
`keras.src.backend.common.dtypes.result_type(x.dtype, "float32")`, which Keras {keras} resolves to
float32 even for float64 inputs; its results are still returned as float64. Measured on {date}.

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
    """Print the table and write docs/accuracy.md and docs/accuracy.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loss", action="append", default=[],
                        help="re-measure this loss only (repeatable); keep the other rows of the last run")
    parser.add_argument("--catalog-only", action="store_true",
                        help="accepted for older instructions: there is one table, measured in full")
    args = parser.parse_args(argv)
    start = time.time()
    out = ROOT / "docs" / "accuracy.md"
    versions = {"keras": keras.__version__, "jax": jax.__version__, "torch": torch.__version__,
                "optax": optax.__version__, "sklearn": sklearn.__version__}
    date = time.strftime("%Y-%m-%d")
    peers = catalog_peers(K.ENTRIES)
    header = header_of(peers)
    rows: dict[str, list[str]] = {}  # loss -> its rows, in the entries' order
    old: dict[str, Any] = {}
    if args.loss:
        unknown = sorted(set(args.loss) - {e.loss for e in K.ENTRIES})
        if unknown:
            parser.error(f"no oracle entry for {unknown}")
        old = json.loads(JSON_PATH.read_text()).get("catalog", {}) if JSON_PATH.exists() else {}
        previous = out.read_text().splitlines() if out.exists() else []
        if not any(line.startswith("| " + " | ".join(header) + " |") for line in previous):
            parser.error("docs/accuracy.md has other columns than the entries' peers: run in full")
        for line in previous:
            loss = line.split("|")[1].strip() if line.startswith("| ") else ""
            if loss and loss not in ("loss", *args.loss) and not line.startswith("|---"):
                rows.setdefault(loss, []).append(line)
    summary: Summary = {}
    for entry in K.ENTRIES:
        if args.loss and entry.loss not in args.loss:
            continue
        rows.setdefault(entry.loss, []).extend(entry_rows(entry, peers, summary))
        print("\n".join(rows[entry.loss][-2 * len(entry.regimes):]), flush=True)
    order = list(dict.fromkeys(e.loss for e in K.ENTRIES))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [line for loss in order for line in rows.get(loss, [])]
    rows_max = max(e.max_rows for e in K.ENTRIES)
    out.write_text(EXPLANATION.format(rows=rows_max, date=date, **versions) + "\n".join(lines) + "\n")
    measured = {loss: cells for loss, cells in old.items() if loss in order} | summary_json(summary)
    payload = {"measured": date, "versions": versions,
               "catalog": {loss: measured[loss] for loss in sorted(measured)}}
    JSON_PATH.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)} and {JSON_PATH.relative_to(ROOT)} in "
          f"{time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
