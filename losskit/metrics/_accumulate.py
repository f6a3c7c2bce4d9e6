"""``LossMean``: exact, mergeable, sliced and bootstrapped means of registered losses."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import _array
from .._double import two_product
from ..losses._core import Loss
from ..losses._registry import deserialize, get, serialize
from . import _bootstrap
from ._exact import BUCKETS, OFFSET, Grid, divide

try:
    from .._backends import _cpu  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: every batch takes the loss API and the NumPy sums
    _cpu = None

Array = Any

#: Why a row was not scored (the codes of ``row_status`` and the keys of ``refused``).
REASONS = ("nan", "domain", "label", "weight", "missing", "unparsable", "ignored")
_CODE = {r: i + 1 for i, r in enumerate(REASONS)}
_EXPLAIN = {
    "nan": "NaN in y_true, y_pred or the loss value",
    "domain": "a value outside the loss's domain",
    "label": "a label the loss does not accept (class index out of range, not a whole number, ...)",
    "weight": "a sample weight that is negative, infinite or NaN",
    "missing": "an empty (null) cell",
    "unparsable": "text that is not a number",
    "ignored": "the label equals the loss's ignore_class",
}
#: rows at a time inside ``update`` (bounds the bootstrap weight matrix and the temporaries)
_ROWS = 1 << 20
_STATE_FORMAT = "losskit.metrics.LossMean/1"


class BadRowError(ValueError):
    """A row the loss cannot score, under ``on_bad_row="error"``: its global row index, the reason
    (one of :data:`REASONS`) and the offending value."""

    def __init__(self, row: int, reason: str, detail: str, loss: str) -> None:
        self.row, self.reason, self.detail, self.loss = row, reason, detail, loss
        super().__init__(f"row {row}: {detail} ({reason}: {_EXPLAIN[reason]}; loss {loss}); "
                         "pass on_bad_row='skip' to count such rows and go on")


def _numpy(x: Any, name: str) -> np.ndarray:
    backend = _array.backend_name(x)
    if backend == "torch":
        return x.detach().cpu().numpy()
    if backend == "jax":
        return np.asarray(x)
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers; found dtype {arr.dtype}")
    return arr


def _by_spec(by: Any) -> list[tuple[str, ...]]:
    """``None``, ``"a"``, ``["a", "b"]`` (two slicings) or ``[["a", "b"]]`` (one crossed slicing)."""
    if by is None:
        return []
    if isinstance(by, str):
        return [(by,)]
    out = []
    for item in by:
        cols = (item,) if isinstance(item, str) else tuple(item)
        if not cols or not all(isinstance(c, str) for c in cols):
            raise TypeError(f"by must hold column names or lists of them; found {item!r}")
        out.append(cols)
    return out


def _scalar(v: Any) -> Any:
    """A slice key value as a plain JSON value (NaN and missing become None)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def factorize(values: Any) -> tuple[np.ndarray, list[Any]]:
    """``(codes, uniques)`` with ``uniques[codes[i]] == values[i]`` (missing values: None).

    A ``(codes, uniques)`` pair passes through unchanged (e.g. from ``pyarrow``'s dictionary encoding,
    with code ``-1`` for a missing value).
    """
    if isinstance(values, tuple) and len(values) == 2:
        codes, uniques = values
        codes = np.asarray(codes, dtype=np.int64)
        uniques = [_scalar(u) for u in uniques]
        if (codes < 0).any():
            codes = np.where(codes < 0, len(uniques), codes)
            uniques = [*uniques, None]
        return codes, uniques
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"a slice column must be 1-D; found shape {arr.shape}")
    if arr.dtype.kind != "O":
        uniques, codes = np.unique(arr, return_inverse=True)
        values = uniques.tolist()
        if arr.dtype.kind in "fcSV":
            values = [_scalar(u) for u in values]
        return codes.astype(np.int64).reshape(-1), values
    index: dict[Any, int] = {}
    codes = np.empty(arr.size, dtype=np.int64)
    for i, v in enumerate(arr):
        codes[i] = index.setdefault(_scalar(v), len(index))
    return codes, list(index)


class _Slicing:
    """The groups of one slicing (``()`` = the overall row): key tuples in first-seen order."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.index: dict[tuple[Any, ...], int] = {}
        self.keys: list[tuple[Any, ...]] = []

    def ids(self, keys: Mapping[str, Any] | None, n: int) -> np.ndarray:
        if not self.names:
            if not self.keys:
                self._id(())
            return np.broadcast_to(np.int64(0), (n,))   # read-only zeros, without an allocation
        if keys is None or any(name not in keys for name in self.names):
            missing = [name for name in self.names if keys is None or name not in keys]
            raise ValueError(f"update needs the slice column(s) {', '.join(missing)} in keys= "
                             f"(by={list(self.names)})")
        combined = np.zeros(0, dtype=np.int64)
        columns: list[tuple[np.ndarray, list[Any]]] = []
        size = 1
        for name in self.names:
            codes, uniques = factorize(keys[name])
            if codes.shape != (n,):
                raise ValueError(f"slice column {name} has {codes.shape[0]} values for {n} rows")
            # one column: its codes as they are (no arithmetic over the rows)
            combined = codes if not columns else combined * (len(uniques) + 1) + codes
            size *= len(uniques) + 1
            columns.append((codes, uniques))
        if size <= 4 * n + 4096:   # dense codes: the keys present, in O(n), by counting
            present = np.flatnonzero(np.bincount(combined, minlength=size))
            digits, rest = [], present
            for _, uniques in reversed(columns):
                digits.append(rest % (len(uniques) + 1))
                rest = rest // (len(uniques) + 1)
            local = digits[::-1]
            inverse = None
        else:
            present, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
            local = [codes[first] for codes, _ in columns]
        parts = []
        for (_, uniques), idx in zip(columns, local, strict=True):
            table = np.empty(len(uniques), dtype=object)
            table[:] = uniques
            parts.append(table[idx].tolist())
        get = self.index.get
        mapping = [get(key) for key in zip(*parts, strict=True)]
        for j, key in enumerate(zip(*parts, strict=True)):
            if mapping[j] is None:
                mapping[j] = self._id(key)
        ids = np.asarray(mapping, dtype=np.int64)
        if inverse is not None:
            return ids[inverse.reshape(-1)]
        lut = np.zeros(size, dtype=np.int64)
        lut[present] = ids
        return lut[combined]

    def _id(self, key: tuple[Any, ...]) -> int:
        gid = self.index.get(key)
        if gid is None:
            gid = self.index[key] = len(self.keys)
            self.keys.append(key)
        return gid


class _Stats:
    """Exact sums for one loss in one slicing: ``[group, replicate]`` cells (replicate 0 = the data)."""

    def __init__(self, reps: int) -> None:
        self.reps = reps
        self.value = Grid(reps)
        self.weight: Grid | None = None          # None until a sample_weight is seen
        self.count = np.zeros((0, reps), dtype=np.int64)
        self.pos_inf = np.zeros((0, reps), dtype=np.int64)
        self.neg_inf = np.zeros((0, reps), dtype=np.int64)

    def _grow(self, groups: int) -> None:
        extra = groups - self.count.shape[0]
        if extra > 0:
            pad = ((0, extra), (0, 0))
            self.count = np.pad(self.count, pad)
            self.pos_inf = np.pad(self.pos_inf, pad)
            self.neg_inf = np.pad(self.neg_inf, pad)

    def _weighted(self) -> Grid:
        """Switch to weighted sums: the counts so far become exact weight sums (weight 1 each)."""
        if self.weight is None:
            self.weight = Grid(self.reps)
            self.weight.add_cells(self.count.astype(np.float64))
        return self.weight

    def add(self, gid: np.ndarray, values: np.ndarray, weights: np.ndarray | None, groups: int,
            mult: np.ndarray | None) -> None:
        self._grow(groups)

        def counts(mask: np.ndarray | None) -> np.ndarray:
            g = gid if mask is None else gid[mask]
            out = np.zeros((groups, self.reps), dtype=np.int64)
            out[:, 0] = g.size if groups == 1 else np.bincount(g, minlength=groups)
            for r in range(1, self.reps):
                m = mult[r - 1] if mask is None else mult[r - 1][mask]  # type: ignore[index]
                out[:, r] = np.bincount(g, weights=m, minlength=groups).astype(np.int64)
            return out

        def multipliers(mask: np.ndarray) -> Callable[[int], Any] | None:
            if mult is None:
                return None
            if mask.all():
                return lambda r: None if r == 0 else mult[r - 1]
            return lambda r: None if r == 0 else mult[r - 1][mask]

        if weights is not None:
            self._weighted()   # before the counts grow: they become the weight sums so far
        self.count += counts(None)
        finite = np.isfinite(values)
        all_finite = bool(finite.all())
        if weights is None and all_finite:  # the common case: no masks, no copies
            if self.weight is not None:
                self.weight.add(gid, np.ones(gid.size), groups, multipliers(finite))
            self.value.add(gid, values, groups, multipliers(finite))
            return
        contributes = np.ones(values.shape, dtype=bool) if weights is None else weights > 0
        if not all_finite:
            pos = (values == np.inf) & contributes
            neg = (values == -np.inf) & contributes
            if pos.any():
                self.pos_inf += counts(pos)
            if neg.any():
                self.neg_inf += counts(neg)
        if weights is None:
            if self.weight is not None:
                self.weight.add(gid, np.ones(gid.size), groups, multipliers(np.ones(gid.size, bool)))
            self.value.add(gid[finite], values[finite], groups, multipliers(finite))
            return
        self._weighted().add(gid, weights, groups, multipliers(np.ones(gid.size, bool)))
        keep = finite & contributes
        hi, lo = two_product(np, weights[keep], values[keep])
        inf = ~np.isfinite(hi)   # w * l beyond the float64 range: counted as infinite
        if inf.any():
            where = np.flatnonzero(keep)[inf]
            sel = np.zeros(values.shape, dtype=bool)
            sel[where] = True
            self.pos_inf += counts(sel & (values > 0))
            self.neg_inf += counts(sel & (values < 0))
            keep[where] = False
            hi, lo = hi[~inf], lo[~inf]
        both = np.concatenate([np.flatnonzero(keep)] * 2)
        self.value.add(gid[both], np.concatenate([hi, lo]), groups,
                       None if mult is None else (lambda r: None if r == 0 else mult[r - 1][both]))

    def add_buckets(self, gid: np.ndarray, acc: np.ndarray, groups: int) -> None:
        """Add rows whose values are already summed into int64 buckets ``acc`` (``groups x
        BUCKETS``, by ``_cpu.bce_exact``): finite, unweighted, without replicates."""
        self._grow(groups)
        self.count[:, 0] += gid.size if groups == 1 else np.bincount(gid, minlength=groups)
        self.value.add_buckets(acc, gid.size)

    def merge(self, other: _Stats, rows: np.ndarray, groups: int) -> None:
        """Add ``other`` whose group ``i`` is this one's ``rows[i]``."""
        self._grow(groups)
        if other.weight is not None:
            self._weighted()   # before the counts grow: they become the weight sums so far
        k = other.count.shape[0]   # groups it has counted (it grows lazily)
        self.count[rows[:k]] += other.count
        self.pos_inf[rows[:k]] += other.pos_inf
        self.neg_inf[rows[:k]] += other.neg_inf
        self.value.merge(other.value.take(rows, groups))
        if other.weight is not None or self.weight is not None:
            mine = self._weighted()
            theirs = other.weight
            if theirs is None:
                theirs = Grid(self.reps)
                theirs.add_cells(other.count.astype(np.float64))
            mine.merge(theirs.take(rows, groups))

    def total(self) -> _Stats:
        """The sums over every group: the overall cell, derived exactly from a slicing's cells."""
        out = _Stats(self.reps)
        out.value = self.value.total()
        out.weight = None if self.weight is None else self.weight.total()
        for name in ("count", "pos_inf", "neg_inf"):
            setattr(out, name, getattr(self, name).sum(axis=0, keepdims=True))
        return out

    def means(self) -> np.ndarray:
        """The correctly rounded mean of every cell, float64 ``(groups, reps)``."""
        num = self.value.integers()
        g = self.count.shape[0]
        if num.shape[0] < g:
            num = np.concatenate([num, np.zeros((g - num.shape[0], self.reps), dtype=object)])
        if self.weight is None:
            den = self.count.astype(object) * (1 << OFFSET)
        else:
            den = self.weight.integers()
            if den.shape[0] < g:
                den = np.concatenate([den, np.zeros((g - den.shape[0], self.reps), dtype=object)])
        out = np.frompyfunc(divide, 2, 1)(num, den).astype(np.float64).reshape(g, self.reps)
        out[self.pos_inf > 0] = np.inf
        out[self.neg_inf > 0] = -np.inf
        out[(self.pos_inf > 0) & (self.neg_inf > 0)] = np.nan
        out[self.count == 0] = np.nan
        return out

    def weights(self) -> np.ndarray:
        """The total weight of each group (replicate 0), as the nearest float."""
        if self.weight is None:
            return self.count[:, 0].astype(np.float64)
        ints = self.weight.integers()[:, 0]
        return np.array([divide(v, 1 << OFFSET) for v in ints], dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value.to_json(),
                "weight": None if self.weight is None else self.weight.to_json(),
                "count": self.count.tolist(), "pos_inf": self.pos_inf.tolist(),
                "neg_inf": self.neg_inf.tolist()}

    @classmethod
    def from_json(cls, state: Mapping[str, Any], reps: int) -> _Stats:
        out = cls(reps)
        out.value = Grid.from_json(state["value"], reps)
        out.weight = None if state["weight"] is None else Grid.from_json(state["weight"], reps)
        for name in ("count", "pos_inf", "neg_inf"):
            setattr(out, name, np.array(state[name], dtype=np.int64).reshape(-1, reps))
        return out


def _labels(losses: Sequence[Loss]) -> list[str]:
    labels: list[str] = []
    for loss in losses:
        label = loss.name
        k = 2
        while label in labels:
            label, k = f"{loss.name}#{k}", k + 1
        labels.append(label)
    return labels


class LossMean:
    """The exact mean of one or several losses over a stream of batches, overall and per slice, with
    Poisson-bootstrap intervals; mergeable, with a JSON-ready state.

    For each loss ``L`` (a name, class, instance or config, as :func:`losskit.get` takes) and each
    cell (the whole stream, or one slice value), the result is

    .. math:: \\bar\\ell = \\frac{\\sum_i \\ell_i}{n} \\quad\\text{or, with sample weights,}\\quad
              \\bar\\ell_w = \\frac{\\sum_i w_i \\ell_i}{\\sum_i w_i}

    where ``l_i = L.call(y_true, y_pred)[i]`` is the loss's per-sample value of row ``i``. The sums are
    exact (see :mod:`losskit.metrics._exact`) and divided once, so ``result()`` is the correctly rounded
    mean, bit for bit the same whatever the batch sizes, the partitioning and the order of
    :meth:`merge`. Each product ``w_i * l_i`` is taken exactly as a pair of floats (Dekker's
    TwoProduct), unless it falls below ``2**-969``, where the pair's rounding error (less than
    ``2**-1074`` per row) is lost. An infinite per-sample value (of positive weight) makes its cell's
    mean infinite, as it should.

    Args:
        losses: one loss, or a list of them (evaluated in the same pass over each batch).
        by: slices: ``["country"]`` (one slicing), ``["country", "device"]`` (two),
            ``[["country", "device"]]`` (one crossed slicing). The overall cell is always kept.
        replicates: number of Poisson-bootstrap replicates (0: no intervals).
        seed: seed of the bootstrap weights (a function of ``(seed, replicate, row index)``).
        on_bad_row: ``"error"`` (raise :class:`BadRowError` at the first row that cannot be scored)
            or ``"skip"`` (count it under its reason in ``refused`` and go on).

    Shapes: ``y_pred`` is ``(n,)`` (one prediction per row) or ``(n, k)`` (a row of ``k``, e.g.
    class probabilities or logits); ``y_true`` is ``(n,)``, or ``(n, k)`` for losses whose target
    is a row (one-hot, distributions). Each row gives one per-sample value. NumPy, PyTorch and JAX
    arrays are accepted (taken to NumPy; float64 input gives float64 values).

    >>> m = LossMean(["binary_crossentropy", "mse"], by=["country"])
    >>> m.update([1.0, 0.0, 1.0], [0.5, 0.25, 0.75], keys={"country": ["fr", "fr", "de"]})
    >>> m.result()["mean_squared_error"]          # (0.25 + 0.0625 + 0.0625) / 3
    0.125
    >>> [(r["slice"], r["mean"]) for r in m.report() if r["loss"] == "mean_squared_error"]
    [({}, 0.125), ({'country': 'de'}, 0.0625), ({'country': 'fr'}, 0.15625)]
    """

    def __init__(self, losses: Any, *, by: Any = None, replicates: int = 0, seed: int = 0,
                 on_bad_row: str = "error") -> None:
        self._single = not isinstance(losses, list | tuple)
        items = [losses] if self._single else list(losses)
        if not items:
            raise ValueError("losses must name at least one loss")
        self.losses: list[Loss] = [get(item) for item in items]
        self.labels = _labels(self.losses)
        self.by = _by_spec(by)
        if isinstance(replicates, bool) or not isinstance(replicates, int | np.integer) \
                or replicates < 0:
            raise ValueError(f"replicates must be a whole number >= 0; found {replicates!r}")
        self.replicates = int(replicates)
        self.seed = int(seed)
        if on_bad_row not in ("error", "skip"):
            raise ValueError(f"on_bad_row must be 'error' or 'skip'; found {on_bad_row!r}")
        self.on_bad_row = on_bad_row
        self.reset()

    # ------------------------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every row seen."""
        self.rows = 0
        self.refused: dict[str, dict[str, int]] = {label: {} for label in self.labels}
        self.slicings = [_Slicing(())] + [_Slicing(names) for names in self.by]
        self.stats = [[_Stats(self.replicates + 1) for _ in self.losses] for _ in self.slicings]

    @property
    def state(self) -> dict[str, Any]:
        """A JSON-ready dict of everything accumulated (exact sums as hexadecimal integers in units
        of ``2**-1126``); :meth:`from_state` rebuilds the accumulator."""
        return {
            "format": _STATE_FORMAT,
            "losses": [serialize(loss) for loss in self.losses], "single": self._single,
            "by": [list(b) for b in self.by], "replicates": self.replicates, "seed": self.seed,
            "on_bad_row": self.on_bad_row, "rows": self.rows, "refused": self.refused,
            "slicings": [{"by": list(s.names), "keys": [list(k) for k in s.keys],
                          "stats": [st.to_json() for st in stats]}
                         for s, stats in zip(self.slicings, self.stats, strict=True)],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LossMean:
        """The accumulator a :attr:`state` describes."""
        if not isinstance(state, Mapping) or state.get("format") != _STATE_FORMAT:
            raise ValueError(f"not a LossMean state (expected format {_STATE_FORMAT!r})")
        losses = [deserialize(c) for c in state["losses"]]
        out = cls(losses[0] if state["single"] else losses, by=state["by"],
                  replicates=state["replicates"], seed=state["seed"],
                  on_bad_row=state["on_bad_row"])
        out.rows = int(state["rows"])
        out.refused = {k: dict(v) for k, v in state["refused"].items()}
        for i, s in enumerate(state["slicings"]):
            for key in s["keys"]:
                out.slicings[i]._id(tuple(key))
            out.stats[i] = [_Stats.from_json(st, out.replicates + 1) for st in s["stats"]]
        return out

    def merge(self, other: LossMean) -> LossMean:
        """Add another accumulator's rows (same losses, slices, replicates and seed); returns self.

        Its rows keep the row indices they were given, so bootstrap weights match a single pass
        only when the row indices do (``row_offset`` in :meth:`update`)."""
        if not isinstance(other, LossMean):
            raise TypeError(f"merge expects a LossMean; found {type(other).__name__}")
        mine = ([serialize(x) for x in self.losses], self.by, self.replicates, self.seed)
        theirs = ([serialize(x) for x in other.losses], other.by, other.replicates, other.seed)
        if mine != theirs:
            raise ValueError("merge needs accumulators with the same losses, by, replicates and seed")
        self.rows += other.rows
        for label, counts in other.refused.items():
            for reason, k in counts.items():
                self.refused[label][reason] = self.refused[label].get(reason, 0) + k
        for i, (s, os_) in enumerate(zip(self.slicings, other.slicings, strict=True)):
            rows = np.array([s._id(key) for key in os_.keys], dtype=np.int64)
            for j, st in enumerate(other.stats[i]):
                self.stats[i][j].merge(st, rows, len(s.keys))
        return self

    # ----------------------------------------------------------------------------------- update
    def update(self, y_true: Any, y_pred: Any, sample_weight: Any = None, *,
               keys: Mapping[str, Any] | None = None, row_offset: int | None = None,
               row_status: np.ndarray | None = None, keep_values: bool = False) -> Any:
        """Score one batch of rows and add it.

        ``keys`` maps each slice column named in ``by`` to its ``n`` values (or a ``(codes,
        uniques)`` pair). ``row_offset`` is the global index of the batch's first row (default: the
        number of rows seen so far): the bootstrap weights are a function of it, so give it when
        batches arrive out of order or in parallel. ``row_status`` (internal, from the file readers)
        marks rows already refused (``REASONS`` codes, 0 = fine). With ``keep_values``, returns
        ``[(codes, values)]`` per loss: each row's refusal code (0: scored) and per-sample value.
        """
        yt = _numpy(y_true, "y_true")
        yp = _numpy(y_pred, "y_pred")
        if yp.ndim == 0 or yp.ndim > 2:
            raise ValueError(f"y_pred must have shape (n,) or (n, k); found {yp.shape}")
        n = yp.shape[0]
        if yt.shape[:1] != (n,):
            raise ValueError(f"y_true has {yt.shape[0] if yt.ndim else 0} rows but y_pred has {n}")
        sw = None
        if sample_weight is not None:
            sw = np.broadcast_to(_numpy(sample_weight, "sample_weight").astype(np.float64),
                                 (n,)).copy() if np.ndim(sample_weight) == 0 else \
                _numpy(sample_weight, "sample_weight").astype(np.float64)
            if sw.shape != (n,):
                raise ValueError(f"sample_weight must have shape ({n},); found {sw.shape}")
        offset = self.rows if row_offset is None else int(row_offset)
        status = None if row_status is None else np.asarray(row_status, dtype=np.int8)
        key_arrays = None if keys is None else dict(keys)
        kept: list[list[tuple[np.ndarray, np.ndarray]]] = []
        for start in range(0, max(n, 1), _ROWS):
            stop = min(start + _ROWS, n)
            if stop <= start:
                break
            sub_keys = None if key_arrays is None else {
                k: (v[0][start:stop], v[1]) if isinstance(v, tuple) and len(v) == 2
                else np.asarray(v)[start:stop] for k, v in key_arrays.items()}
            kept.append(self._update(yt[start:stop], yp[start:stop],
                                     None if sw is None else sw[start:stop], sub_keys, offset + start,
                                     None if status is None else status[start:stop], keep_values))
        self.rows += n
        if not keep_values:
            return None
        if not kept:
            return [(np.zeros(0, np.int8), np.zeros(0)) for _ in self.losses]
        return [(np.concatenate([k[j][0] for k in kept]), np.concatenate([k[j][1] for k in kept]))
                for j in range(len(self.losses))]

    def _update(self, yt: np.ndarray, yp: np.ndarray, sw: np.ndarray | None,
                keys: Mapping[str, Any] | None, offset: int,
                status: np.ndarray | None, keep: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
        n = yp.shape[0]
        gids = [s.ids(keys, n) for s in self.slicings]
        mult = None
        if self.replicates:
            row_ids = np.arange(offset, offset + n, dtype=np.int64)
            mult = np.empty((self.replicates, n), dtype=np.int8)
            for r in range(self.replicates):
                mult[r] = _bootstrap.poisson_weights(self.seed, r, row_ids)
        scored = []
        clean = status is None or not status.any()
        for j, (loss, label) in enumerate(zip(self.losses, self.labels, strict=True)):
            if clean and sw is None and mult is None:
                values = self._fused(j, loss, yt, yp, gids, keep)
                if values is not None:
                    scored.append((np.zeros(n if keep else 0, dtype=np.int8), values))
                    continue
            codes, values = _score(loss, yt, yp, sw, status)
            values = np.asarray(values, dtype=np.float64)
            nan_value = np.isnan(values) & (codes == 0)
            codes[nan_value] = _CODE["nan"]
            bad = codes != 0
            if bad.any():
                self._refuse(label, codes, offset, yt, yp, sw)
            every = not bad.any()
            ok = slice(None) if every else ~bad
            sub_mult = mult if (mult is None or every) else mult[:, ok]
            for i, s in enumerate(self.slicings):
                if i == 0 and len(self.slicings) > 1:
                    continue   # the overall cell is the exact total of the first slicing's cells
                self.stats[i][j].add(gids[i][ok], values[ok], None if sw is None else sw[ok],
                                     len(s.keys), sub_mult)
            scored.append((codes, values))
        return scored

    def _fused(self, j: int, loss: Loss, yt: np.ndarray, yp: np.ndarray, gids: list[np.ndarray],
               keep: bool) -> np.ndarray | None:
        """Score and add loss ``j`` in one compiled pass (``_cpu.bce_exact``: binary cross-entropy on
        float64 probabilities), when it applies and every row of the batch is fine: the per-sample
        values (or, when they are not needed, an empty array); None otherwise, and nothing added (the
        caller then takes the general path, which finds, counts or reports the bad rows)."""
        n = yp.shape[0]
        if (_cpu is None or not _fusable(loss) or yp.dtype != np.float64
                or yp.shape[1:] not in ((), (1,)) or yt.shape not in ((n,), (n, 1))
                or yt.dtype.kind not in "biuf" or (yt.dtype.kind == "f" and yt.itemsize not in (4, 8))
                or n == 0):
            return None
        targets = [i for i in range(len(self.slicings)) if not (i == 0 and len(self.slicings) > 1)]
        first = targets[0]
        groups = len(self.slicings[first].keys)
        stats = self.stats[first][j]
        summed = stats.weight is None and groups <= _FUSED_MAX_GROUPS
        want_values = keep or len(targets) > 1 or not summed
        values = np.empty(n if want_values else 0)
        acc = np.zeros((groups, BUCKETS), dtype=np.int64) if summed else None
        yt1 = np.ascontiguousarray(yt.reshape(n))
        counts = _cpu.bce_exact(yt1, yt1.dtype.kind, yt1.itemsize,
                                np.ascontiguousarray(yp.reshape(n)), "f", 8, n,
                                None if groups == 1 or acc is None else
                                np.ascontiguousarray(gids[first], dtype=np.int64), acc, BUCKETS,
                                values if want_values else None)
        if any(counts):
            return None
        for i in targets:
            if i == first and acc is not None:
                stats.add_buckets(gids[i], acc, groups)
            else:
                self.stats[i][j].add(gids[i], values, None, len(self.slicings[i].keys), None)
        return values

    def _refuse(self, label: str, codes: np.ndarray, offset: int, yt: np.ndarray, yp: np.ndarray,
                sw: np.ndarray | None) -> None:
        counts = np.bincount(codes, minlength=len(REASONS) + 1)
        if self.on_bad_row == "error":
            errors = np.flatnonzero((codes != 0) & (codes != _CODE["ignored"]))
            if errors.size:
                i = int(errors[0])
                reason = REASONS[codes[i] - 1]
                weight = "" if sw is None else f", sample_weight={sw[i]!r}"
                detail = (f"y_true={_show(yt[i])}, y_pred={_show(yp[i])}{weight}"
                          if reason not in ("missing", "unparsable") else "a cell of the row")
                raise BadRowError(offset + i, reason, detail, label)
        for code, reason in enumerate(REASONS, start=1):
            if counts[code]:
                self.refused[label][reason] = self.refused[label].get(reason, 0) + int(counts[code])

    # ---------------------------------------------------------------------------------- results
    def result(self) -> Any:
        """The overall mean: a float for a single loss, else ``{label: mean}``."""
        means = {label: float(self._stats(0, j).means()[0, 0]) if self._stats(0, j).count.size
                 else math.nan for j, label in enumerate(self.labels)}
        return means[self.labels[0]] if self._single else means

    def _stats(self, i: int, j: int) -> _Stats:
        """Slicing ``i``'s sums for loss ``j`` (the overall ones derived from the first slicing)."""
        if i == 0 and len(self.slicings) > 1:
            st = self.stats[1][j]
            st._grow(len(self.slicings[1].keys))
            return st.total() if st.count.shape[0] else _Stats(self.replicates + 1)
        return self.stats[i][j]

    def report(self, ci: float | None = 0.95) -> list[dict[str, Any]]:
        """One dict per (loss, cell): ``loss``, ``slice`` (``{column: value}``; ``{}`` overall),
        ``rows`` (scored), ``weight`` (their total weight), ``mean``, and with replicates ``lo``,
        ``hi`` (percentile interval of level ``ci`` over the replicate means)."""
        if ci is not None and not 0 < ci < 1:
            raise ValueError(f"ci must lie in (0, 1); found {ci!r}")
        rows = []
        for i, s in enumerate(self.slicings):
            try:
                order = sorted(range(len(s.keys)), key=s.keys.__getitem__)
            except TypeError:   # None or mixed types in a key column
                order = sorted(range(len(s.keys)), key=lambda g: tuple(
                    (v is None, type(v).__name__, v if v is not None else 0) for v in s.keys[g]))
            for j, label in enumerate(self.labels):
                st = self._stats(i, j)
                st._grow(len(s.keys))
                means = st.means()
                weights = st.weights()
                lo = hi = None
                if self.replicates and ci is not None:
                    lo, hi = _bootstrap.percentile_interval(means[:, 1:], ci)
                for g in order:
                    row: dict[str, Any] = {
                        "loss": label, "slice": dict(zip(s.names, s.keys[g], strict=True)),
                        "rows": int(st.count[g, 0]), "weight": float(weights[g]),
                        "mean": float(means[g, 0])}
                    if lo is not None and hi is not None:
                        row["lo"], row["hi"] = float(lo[g]), float(hi[g])
                    rows.append(row)
        return rows

    def __repr__(self) -> str:
        return (f"LossMean({self.labels}, by={[list(b) for b in self.by]}, "
                f"replicates={self.replicates}, rows={self.rows})")


#: the most groups whose int64 buckets ``_cpu.bce_exact`` fills directly (more: values, then Grid.add)
_FUSED_MAX_GROUPS = 4096


def _fusable(loss: Loss) -> bool:
    """Whether ``_cpu.bce_exact`` gives this loss's per-sample values (bit for bit, for float64
    input): binary cross-entropy on probabilities, no smoothing, no pos_weight, the last axis, the
    default dtype."""
    opts = loss.options
    return (loss.definition.name == "binary_crossentropy" and not opts.get("from_logits")
            and not opts.get("label_smoothing") and opts.get("pos_weight") is None
            and opts.get("axis", -1) == -1 and loss.dtype is None and hasattr(_cpu, "bce_exact"))


def _show(v: Any) -> str:
    arr = np.asarray(v)
    return repr(arr.item()) if arr.ndim == 0 else np.array2string(arr, threshold=6)


def _rows_any(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask if mask.ndim == 1 else mask.reshape(mask.shape[0], -1).any(axis=1))


def _score(loss: Loss, yt: np.ndarray, yp: np.ndarray, sw: np.ndarray | None,
           status: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, values)``: a refusal code per row (0: scored) and the per-sample values (0 where
    refused)."""
    defn = loss.definition
    n = yp.shape[0]
    codes = np.zeros(n, dtype=np.int8) if status is None else status.copy()
    yp2 = yp[:, None] if yp.ndim == 1 else yp
    yt2 = yt[:, None] if (yt.ndim == 1 and not defn.sparse) else yt
    if sw is not None:
        codes[(codes == 0) & ~(np.isfinite(sw) & (sw >= 0))] = _CODE["weight"]
    if not codes.any() and loss.options.get("ignore_class") is None and n:
        # the common case: the loss's own checks pass on the whole batch, and a NaN input gives a
        # NaN value (which the caller counts); any ValueError sends the batch through the screening
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                values = np.asarray(loss.call(yt2, yp2), dtype=np.float64)
            except ValueError:
                values = None
        if values is not None:
            if values.shape != (n,):
                raise ValueError(f"{loss.name} gives per-sample values of shape {values.shape} "
                                 f"for y_pred of shape {yp.shape}; LossMean needs one value per row")
            return codes, values
    floats = [a for a in (yt2, yp2) if a.dtype.kind == "f"]
    for a in floats:
        codes[(codes == 0) & _rows_any(np.isnan(a))] = _CODE["nan"]
    domain = defn.domain(loss.options)
    for name, arr in (("y_true", yt2), ("y_pred", yp2)):
        interval = domain.get(name)
        if interval is not None and not (defn.sparse and name == "y_true"):
            with np.errstate(invalid="ignore"):
                codes[(codes == 0) & _rows_any(interval.outside(arr))] = _CODE["domain"]
    if defn.sparse:
        k = yp2.shape[-1]
        with np.errstate(invalid="ignore"):
            labels = yt2.reshape(n, -1)
            wrong = _rows_any((labels != np.round(labels)) | (labels < 0) | (labels >= k))
        ignore = loss.options.get("ignore_class")
        if ignore is not None:
            ignored = _rows_any(labels == ignore)
            codes[(codes == 0) & ignored] = _CODE["ignored"]
            wrong &= ~ignored
        codes[(codes == 0) & wrong] = _CODE["label"]
    values = np.zeros(n, dtype=np.float64)
    ok = np.flatnonzero(codes == 0)
    if ok.size:
        values[ok], failed = _call(loss, yt2[ok], yp2[ok])
        if failed is not None:
            codes[ok[failed[0]]] = failed[1]
    return codes, values


def _call(loss: Loss, yt: np.ndarray, yp: np.ndarray) -> tuple[np.ndarray, Any]:
    """The per-sample values; rows the loss still refuses (its own value checks) are found by
    bisection and returned as ``(indices, code)`` with value 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            values = np.asarray(loss.call(yt, yp), dtype=np.float64)
        except ValueError as exc:
            return _bisect(loss, yt, yp, exc)
    if values.shape != (yp.shape[0],):
        raise ValueError(f"{loss.name} gives per-sample values of shape {values.shape} for "
                         f"y_pred of shape {yp.shape}; LossMean needs one value per row")
    return values, None


def _bisect(loss: Loss, yt: np.ndarray, yp: np.ndarray, exc: ValueError) -> tuple[np.ndarray, Any]:
    n = yp.shape[0]
    values = np.zeros(n)
    bad: list[int] = []

    def walk(lo: int, hi: int) -> None:
        try:
            values[lo:hi] = np.asarray(loss.call(yt[lo:hi], yp[lo:hi]), dtype=np.float64)
        except ValueError:
            if hi - lo == 1:
                bad.append(lo)
                return
            mid = (lo + hi) // 2
            walk(lo, mid)
            walk(mid, hi)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        walk(0, n)
    if len(bad) == n:  # not a row's fault: the batch as a whole is wrong (shapes, options)
        raise exc
    code = _CODE["label"] if "y_true" in str(exc) else _CODE["domain"]
    return values, (np.array(bad, dtype=np.int64), code)
