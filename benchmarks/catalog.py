"""The generated catalog page: one row per registered loss, written to ``docs/catalog.md``.

Each row gives the losskit function, class and aliases, the options with their defaults and the extra
input arrays (from the loss's ``LossDef``), its name in each peer library (``Entry.peer_names`` of its
catalog entries in ``tests/oracle/families/``; a fixed table for the core seven, which predate the
catalog), and the worst error measured by ``benchmarks/accuracy.py`` (read from
``docs/accuracy.json``; this script measures nothing itself).

Run: ``python benchmarks/catalog.py`` (instant; run ``benchmarks/accuracy.py`` first for fresh
numbers). ``tests/test_bench_smoke.py`` fails when a registered loss has no row in docs/catalog.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from oracle import catalog as K  # noqa: E402

from losskit.losses._core import LossDef  # noqa: E402
from losskit.losses._registry import definitions  # noqa: E402

ACCURACY_JSON = ROOT / "docs" / "accuracy.json"
OUTPUT = ROOT / "docs" / "catalog.md"
PEERS = {"keras": "Keras", "torch": "PyTorch", "optax": "Optax", "sklearn": "sklearn"}
"""Peer keys of ``Entry.peer_names`` and their column names (the accuracy summary's peer names)."""

CORE_PEER_NAMES: dict[str, dict[str, str]] = {
    "mean_squared_error": {"keras": "keras.losses.MeanSquaredError", "torch": "torch.nn.MSELoss",
                           "optax": "optax.losses.squared_error",
                           "sklearn": "sklearn.metrics.mean_squared_error"},
    "mean_absolute_error": {"keras": "keras.losses.MeanAbsoluteError", "torch": "torch.nn.L1Loss",
                            "sklearn": "sklearn.metrics.mean_absolute_error"},
    "binary_crossentropy": {"keras": "keras.losses.BinaryCrossentropy",
                            "torch": "torch.nn.BCELoss, torch.nn.BCEWithLogitsLoss",
                            "optax": "optax.losses.sigmoid_binary_cross_entropy",
                            "sklearn": "sklearn.metrics.log_loss"},
    "categorical_crossentropy": {"keras": "keras.losses.CategoricalCrossentropy",
                                 "torch": "torch.nn.CrossEntropyLoss",
                                 "optax": "optax.losses.softmax_cross_entropy",
                                 "sklearn": "sklearn.metrics.log_loss"},
    "sparse_categorical_crossentropy": {
        "keras": "keras.losses.SparseCategoricalCrossentropy", "torch": "torch.nn.CrossEntropyLoss",
        "optax": "optax.losses.softmax_cross_entropy_with_integer_labels",
        "sklearn": "sklearn.metrics.log_loss"},
    "hinge": {"keras": "keras.losses.Hinge", "optax": "optax.losses.hinge_loss"},
    "kl_divergence": {"keras": "keras.losses.KLDivergence", "torch": "torch.nn.KLDivLoss",
                      "optax": "optax.losses.kl_divergence"},
}
"""Peer names of the core seven (the functions ``benchmarks/accuracy.py`` measures them with)."""


def peer_names(defn: LossDef, entries: list[K.Entry]) -> dict[str, list[str]]:
    """Peer key -> the distinct names the loss has there, over all its entries."""
    out: dict[str, list[str]] = {}
    sources = [CORE_PEER_NAMES.get(defn.name, {})] + [e.peer_names for e in entries]
    for names in sources:
        for key, name in names.items():
            if name not in out.setdefault(key, []):
                out[key].append(name)
    return out


def worst_text(cells: Mapping[str, Any] | None) -> str:
    """``value / grad`` worst errors in ulp (``–``: not measured)."""
    if not cells:
        return "–"
    value = cells.get("value", {}).get("cell", "–")
    grad = cells.get("grad", {}).get("cell", "–")
    return f"{value} / {grad}"


def options_text(defn: LossDef) -> str:
    parts = [f"`{o.name}={o.default!r}`" for o in defn.options]
    parts += [f"`{alias}` (= `{name}`)" for alias, name in defn.option_aliases.items()]
    return ", ".join(parts) or "–"


def inputs_text(defn: LossDef) -> str:
    parts = [f"`{i.name}`" + ("" if i.required else " (optional)") for i in defn.inputs]
    return ", ".join(parts) or "–"


def _ulp(cell: Mapping[str, Any]) -> float:
    return math.inf if cell.get("ulp") is None else float(cell["ulp"])


def measured(accuracy: Mapping[str, Any], loss: str) -> dict[str, dict[str, Any]]:
    """Peer -> the worst value and gradient cells of a loss over the core and catalog parts of the
    accuracy summary (a core loss with catalog options is in both)."""
    out: dict[str, dict[str, Any]] = {}
    for part in ("core", "catalog"):
        for peer, cells in accuracy.get(part, {}).get(loss, {}).items():
            slot = out.setdefault(peer, {})
            for kind, cell in cells.items():
                if kind not in slot or _ulp(cell) > _ulp(slot[kind]):
                    slot[kind] = cell
    return out


def row(defn: LossDef, entries: list[K.Entry], accuracy: Mapping[str, Any], keys: list[str]) -> str:
    names = peer_names(defn, entries)
    worst = measured(accuracy, defn.name)
    aliases = ", ".join(f"`{a}`" for a in defn.aliases) or "–"
    cells = [f"`{defn.name}`", f"`{defn.class_name}`", aliases, options_text(defn), inputs_text(defn),
             worst_text(worst.get("losskit"))]
    for key in keys:
        label = PEERS.get(key, key)
        if key in names:
            cells.append("<br>".join(f"`{n}`" for n in names[key]) + f"<br>{worst_text(worst.get(label))}")
        else:
            cells.append("–")
    return "| " + " | ".join(cells) + " |"


INTRO = """\
# The loss catalog

Generated by `python benchmarks/catalog.py` from the loss registry, the catalog entries of
`tests/oracle/families/` and the accuracy summary `docs/accuracy.json` of `benchmarks/accuracy.py`
(measured on {date}); do not edit by hand.

One row per registered loss: its function (the name `losskit.get` also accepts), class and aliases,
its options with their defaults (keyword-only), its extra input arrays (keyword-only, broadcast to
`y_pred`), and its name in each peer library. The error columns give the worst error in ulp over
every measured case of the loss (all option sets, regimes, float32 and float64), values / gradients,
by the rules of `docs/accuracy.md` (`≠0`, `≠inf`, `NaN`: a wrong zero, a wrong infinity, a NaN; `–`:
not measured, or the peer has no gradient; `†`: the peer's output dtype is not the input's); see
`docs/accuracy.md` for each case. These are worst cases over deliberately hard regimes (extreme
probabilities, huge and tiny magnitudes, near-equal arguments), not typical errors. losskit is held to
8 ulp on every case by `tests/test_oracle.py` and `tests/test_catalog.py` (exceptions an entry
documents are listed under Notes at the end); the one documented
exception shows in the cross-entropy gradients of the core seven: for soft or smoothed targets, an
element near its zero is bounded by 8 ulp of the larger of its two cancelling terms. Keras's float64
numbers are float32 accuracy (`keras.ops.mean` computes in float32).
"""


DEFAULT_MAX_ULP = 8.0


def note(entry: K.Entry) -> str:
    """A documented exception of an entry: its note and any bound other than 8 ulp."""
    opts = ", ".join(f"{k}={v}" for k, v in sorted(entry.options.items())) or "default options"
    bound = f"held to {entry.max_ulp:g} ulp. " if entry.max_ulp != DEFAULT_MAX_ULP else ""
    return f"- `{entry.loss}` ({opts}): {bound}{entry.note}".rstrip()


def page() -> str:
    """The Markdown of docs/catalog.md."""
    accuracy: dict[str, Any] = {}
    if ACCURACY_JSON.exists():
        accuracy = json.loads(ACCURACY_JSON.read_text())
    by_loss: dict[str, list[K.Entry]] = {}
    for entry in K.ENTRIES:
        by_loss.setdefault(entry.loss, []).append(entry)
    defs = definitions()
    keys = list(PEERS)
    keys += sorted({k for e in K.ENTRIES for k in e.peer_names} - set(keys))
    header = ["loss", "class", "aliases", "options", "inputs", "losskit (ulp)"]
    header += [f"{PEERS.get(k, k)} (ulp)" for k in keys]
    lines = [INTRO.format(date=accuracy.get("measured", "never")),
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [row(d, by_loss.get(d.name, []), accuracy, keys) for d in defs]
    notes = [note(e) for e in K.ENTRIES if e.note or e.max_ulp != DEFAULT_MAX_ULP]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write the page")
    args = parser.parse_args(argv)
    text = page()
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
