"""Mergeable summaries for the plots: a histogram of per-sample losses and a reliability table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._accumulate import _Slicing
from ._exact import OFFSET, Grid, divide

#: histogram edges of positive per-sample values: 10 bins per decade from 1e-12 to 1e4
EDGES = 10.0 ** np.linspace(-12, 4, 161)


class Histogram:
    """Counts of per-sample values: ``<= 0``, below 1e-12, 160 log-spaced bins, above 1e4, NaN/inf.

    >>> h = Histogram(); h.update(np.array([0.0, 1e-3, 1e-3, 50.0])); int(h.counts.sum())
    4
    """

    def __init__(self) -> None:
        self.counts = np.zeros(EDGES.size + 3, dtype=np.int64)   # [<=0, <1e-12, bins..., >1e4, inf]

    def update(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = np.log10(v)   # bin by floor(10 log10 v): an edge value may land one bin off
        pos += 12.0
        pos *= 10.0
        np.clip(pos, -1.0, EDGES.size - 1.0, out=pos)
        idx = pos.astype(np.int64) + 2                          # 1 below 1e-12, EDGES.size+1 above
        idx[pos < 0] = 1
        idx[v <= 0] = 0
        idx[~np.isfinite(v)] = EDGES.size + 2
        self.counts += np.bincount(idx, minlength=self.counts.size)

    def merge(self, other: Histogram) -> None:
        self.counts += other.counts

    @property
    def state(self) -> list[int]:
        return self.counts.tolist()

    @classmethod
    def from_state(cls, state: list[int]) -> Histogram:
        out = cls()
        out.counts = np.array(state, dtype=np.int64)
        return out


class Reliability:
    """For binary probabilities: per probability bin (``bins`` equal bins of [0, 1]) and per value of
    one slice column, the number of rows, the exact sum of ``p`` and the number of ``y = 1``, so that
    the mean prediction and the observed frequency of each bin are correctly rounded."""

    def __init__(self, column: str | None = None, bins: int = 20) -> None:
        self.bins = bins
        self.slicing = _Slicing((column,) if column else ())
        self.count = np.zeros((0,), dtype=np.int64)
        self.p = Grid()
        self.positives = np.zeros((0,), dtype=np.int64)   # y is 0 or 1: its sum is a count

    def update(self, y: np.ndarray, p: np.ndarray, keys: Mapping[str, Any] | None = None) -> None:
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        p = np.asarray(p, dtype=np.float64).reshape(-1)
        gid = self.slicing.ids(keys, p.size)
        b = np.clip((p * self.bins).astype(np.int64), 0, self.bins - 1)
        cell = gid * self.bins + b
        cells = len(self.slicing.keys) * self.bins
        self.count = np.pad(self.count, (0, cells - self.count.size))
        self.count += np.bincount(cell, minlength=cells)
        self.positives = np.pad(self.positives, (0, cells - self.positives.size))
        self.positives += np.bincount(cell[y == 1], minlength=cells)
        self.p.add(cell, p, cells)

    def merge(self, other: Reliability) -> None:
        rows = np.array([self.slicing._id(k) for k in other.slicing.keys], dtype=np.int64)
        cells = len(self.slicing.keys) * self.bins
        mapped = (rows[:, None] * self.bins + np.arange(self.bins)).ravel()
        self.count = np.pad(self.count, (0, cells - self.count.size))
        self.positives = np.pad(self.positives, (0, cells - self.positives.size))
        np.add.at(self.count, mapped[:other.count.size], other.count)
        np.add.at(self.positives, mapped[:other.positives.size], other.positives)
        self.p.merge(other.p.take(mapped[:other.p.groups], cells))

    def table(self) -> list[dict[str, Any]]:
        """One dict per (slice value, non-empty bin): ``slice``, ``bin``, ``rows``, ``mean_p``,
        ``frequency``."""
        out = []
        cells = len(self.slicing.keys) * self.bins
        self.count = np.pad(self.count, (0, cells - self.count.size))
        self.positives = np.pad(self.positives, (0, cells - self.positives.size))
        ps = self.p.integers()[:, 0] if self.p.groups else np.zeros(0, dtype=object)
        keys = self.slicing.keys
        try:   # slices in key order: the first-seen order depends on the batching
            order = sorted(range(len(keys)), key=keys.__getitem__)
        except TypeError:
            order = sorted(range(len(keys)), key=lambda g: str(keys[g]))
        for g in order:
            key = keys[g]
            for b in range(self.bins):
                c = g * self.bins + b
                n = int(self.count[c])
                if n:
                    out.append({"slice": dict(zip(self.slicing.names, key, strict=True)), "bin": b,
                                "rows": n, "mean_p": divide(ps[c], n << OFFSET),
                                "frequency": divide(int(self.positives[c]), n)})
        return out
