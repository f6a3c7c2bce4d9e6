"""What an evaluation writes: a terminal table, ``report.json``, ``report.csv`` and PNG plots."""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any

import numpy as np

from ._accumulate import REASONS
from ._extras import EDGES
from .files import Evaluation, require

MIN_BIN_ROWS = 30


def report(ev: Evaluation) -> dict[str, Any]:
    """The JSON report: settings, rows read, refused rows by reason per loss, one row per (loss,
    slice) with its mean and interval, and the reliability table when there is one."""
    m = ev.metric
    return {
        "losses": {label: {"class_name": type(loss).__name__, "config": loss.get_config()}
                   for label, loss in zip(m.labels, m.losses, strict=True)},
        "by": [list(b) for b in m.by],
        "rows_read": m.rows,
        "refused": {label: {r: m.refused[label].get(r, 0) for r in REASONS if m.refused[label].get(r)}
                    for label in m.labels},
        "ci": ev.ci if m.replicates else None,
        "replicates": m.replicates,
        "seed": m.seed,
        "interval": "percentile of Poisson-bootstrap replicate means" if m.replicates else None,
        "seconds": round(ev.seconds, 3),
        "results": m.report(ev.ci if ev.ci is not None else 0.95),
        "reliability": None if ev.reliability is None else ev.reliability.table(),
        "histograms": {label: {"edges": "0, then 10**k for k in -12..4 step 0.1, then inf",
                               "counts": h.state} for label, h in ev.histograms.items()},
    }


def _slice_text(s: dict[str, Any]) -> str:
    return "(all)" if not s else ", ".join(f"{k}={v}" for k, v in s.items())


def _num(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.6g}"


def table(rep: dict[str, Any], max_rows: int = 40) -> str:
    """The results as aligned text: one line per (loss, slice), then the refused rows."""
    has_ci = rep["ci"] is not None
    head = ["loss", "slice", "rows", "mean"] + ([f"{rep['ci']:.0%} interval"] if has_ci else [])
    lines = []
    for r in rep["results"][:max_rows]:
        cells = [r["loss"], _slice_text(r["slice"]), str(r["rows"]), _num(r["mean"])]
        if has_ci:
            cells.append(f"[{_num(r['lo'])}, {_num(r['hi'])}]")
        lines.append(cells)
    widths = [max(len(x) for x in col) for col in zip(head, *lines, strict=True)]
    fmt = "  ".join(f"{{:{'>' if i in (2, 3) else '<'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*cells) for cells in lines]
    if len(rep["results"]) > max_rows:
        out.append(f"... {len(rep['results']) - max_rows} more rows in report.csv")
    out.append(f"{rep['rows_read']} rows read in {rep['seconds']:.2f} s")
    for label, counts in rep["refused"].items():
        if counts:
            out.append(f"refused by {label}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(out)


def write(ev: Evaluation, out: str) -> dict[str, Any]:
    """Write ``report.json``, ``report.csv`` and the plots into the folder ``out``; returns the report."""
    os.makedirs(out, exist_ok=True)
    rep = report(ev)
    with open(os.path.join(out, "report.json"), "w") as fh:
        json.dump(rep, fh, indent=1, default=str)
    slice_cols = list(dict.fromkeys(k for r in rep["results"] for k in r["slice"]))
    with open(os.path.join(out, "report.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["loss", *slice_cols, "rows", "weight", "mean", "lo", "hi"])
        for r in rep["results"]:
            w.writerow([r["loss"], *[r["slice"].get(c, "") for c in slice_cols], r["rows"],
                        repr(r["weight"]), repr(r["mean"]),
                        repr(r["lo"]) if "lo" in r else "", repr(r["hi"]) if "hi" in r else ""])
    plots(ev, rep, out)
    return rep


def plots(ev: Evaluation, rep: dict[str, Any], out: str) -> list[str]:
    """PNG files: loss per slice with its interval, per-sample loss histogram, reliability diagram."""
    require("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for label in ev.metric.labels:
        if label not in ev.histograms:
            continue
        rows = [r for r in rep["results"] if r["loss"] == label]
        overall = rows[0]
        sliced = [r for r in rows if r["slice"]]
        if sliced:
            sliced = sliced[:60]
            fig, ax = plt.subplots(figsize=(8, 1.2 + 0.28 * len(sliced)))
            y = np.arange(len(sliced))[::-1]
            means = np.array([r["mean"] for r in sliced])
            ax.scatter(means, y, color="C0", zorder=3, label="mean")
            if "lo" in overall:
                lo = np.array([r["lo"] for r in sliced])
                hi = np.array([r["hi"] for r in sliced])
                ax.hlines(y, lo, hi, color="C0", lw=2, label=f"{rep['ci']:.0%} interval")
            ax.axvline(overall["mean"], color="gray", ls="--", label="all rows")
            ax.set_yticks(y, [_slice_text(r["slice"]) for r in sliced])
            ax.set_xlabel(f"mean {label}")
            ax.set_title(f"{label} per slice")
            ax.legend(loc="best", fontsize=8)
            fig.tight_layout()
            path = os.path.join(out, f"{label}_by_slice.png")
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
        counts = ev.histograms[label].counts
        fig, ax = plt.subplots(figsize=(7, 4))
        inner = counts[2:-2]
        ax.stairs(inner, EDGES, fill=True, alpha=0.7)
        ax.set_xscale("log")
        ax.set_xlabel(f"per-sample {label}")
        ax.set_ylabel("rows")
        extra = {"<= 0": counts[0], "< 1e-12": counts[1], "> 1e4": counts[-2], "inf": counts[-1]}
        note = ", ".join(f"{k}: {v}" for k, v in extra.items() if v)
        ax.set_title(f"distribution of per-sample {label}" + (f"\n({note})" if note else ""))
        fig.tight_layout()
        path = os.path.join(out, f"{label}_histogram.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if rep["reliability"]:
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="perfect calibration")
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rep["reliability"]:
            if r["rows"] >= MIN_BIN_ROWS:   # a bin of a few rows says little: left out
                groups.setdefault(_slice_text(r["slice"]), []).append(r)
        for i, (name, rs) in enumerate(sorted(groups.items())[:12]):
            ax.plot([r["mean_p"] for r in rs], [r["frequency"] for r in rs], marker="o", ms=3,
                    color=plt.get_cmap("tab20")(i % 20), label=name)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean predicted probability (bin)")
        ax.set_ylabel("observed frequency of y = 1")
        ax.set_title(f"reliability diagram (bins of >= {MIN_BIN_ROWS} rows)")
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        path = os.path.join(out, "reliability.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
