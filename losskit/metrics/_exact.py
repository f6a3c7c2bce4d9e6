"""Exact sums of float64 values, vectorised, in groups: the arithmetic under every accumulator.

Every finite float64 is ``M * 2**E`` with an integer ``|M| < 2**53`` and ``E >= -1126`` (``frexp``
gives ``x = f * 2**e`` with ``0.5 <= |f| < 1``; ``M = f * 2**53`` and ``E = e - 53`` are exact, the
smallest subnormal being ``0.5 * 2**-1073``). With ``S = E + 1126 >= 0``, shifting ``M`` left by
``S % 8`` aligns it to a bucket of 8 bits: ``x = M' * 2**(8 b - 1126)`` with ``b = S // 8`` and
``|M'| < 2**60`` (an exact int64). ``M'`` is cut into three digits of 24 bits (two's complement, so
the top digit carries the sign): ``x = sum_k c_k * 2**(8 (b + 3 k) - 1126)`` with ``0 <= c_0, c_1 <
2**24`` and ``|c_2| < 2**12``, each an integer float, exact. A bootstrap multiplier ``m <= 31`` keeps
``c * m`` below ``2**29``. A row's three digits fall in three different buckets, so a chunk of at
most ``2**22`` rows adds at most ``2**22`` integers below ``2**29`` to a bucket: every partial sum is an
integer below ``2**51`` and ``np.bincount`` adds them exactly, in whatever order it likes. After each
chunk the buckets are normalised (carries moved up: every digit in ``[0, 256)``, the top one signed,
the grid widened when needed), so a bucket never holds more than ``2**51 + 2**8 < 2**53``.

A faster first level does most of the work when the cells are few: within one binade (values with
the same exponent field), clearing the low 27 stored significand bits splits ``x = hi + lo`` exactly
(``lo = x - hi`` is exact) into multiples of ``2**(e - 1048)`` below ``2**(e - 1022)`` (26 bits) and
multiples of ``2**(e - 1075)`` below ``2**(e - 1048)`` (27 bits); times a multiplier ``<= 31`` they
stay below ``2**32`` units, so ``np.bincount`` sums of at most ``2**21`` of them per (cell, binade)
are exact. Only those sums then go through the digits above.

The grid therefore holds ``sum = N * 2**-1126`` exactly, with ``N`` an integer that depends only on the
multiset of values added, never on the batch sizes, the partitioning or the order of merges. A mean is
``N / (count * 2**1126)`` and a weighted mean ``N_num / N_den``: Python's integer true division rounds
the exact quotient once, correctly (to nearest, ties to even), so the result is the correctly rounded
mean, bit for bit the same whatever the history.

Only NumPy is used here, plus the compiled loop of ``losskit/_backends/_cpu.c`` (``exact_sum``: the
same digits and buckets, in one pass) for the common case of plain sums without replicates; its int64
buckets (and those of ``bce_exact``, evaluate's fused binary cross-entropy) are added batch after batch
as int64 while their bound allows, and folded into the digits when read (:meth:`Grid.add_buckets`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

OFFSET = 1126          # every finite float64 is an integer multiple of 2**-1126 ... (see above)
DIGIT = 24             # bits per digit of the aligned significand (3 buckets)
NPIECES = 3
WIDTH = 8              # bits per bucket
RADIX = float(1 << WIDTH)
MAX_CHUNK = 1 << 21    # rows per bincount (see the module docstring for the bound)
MAX_MULTIPLIER = 31    # the largest bootstrap multiplier the bound allows
_MASK = (1 << DIGIT) - 1


_HI_MASK = np.int64(-(1 << 27))   # clears the low 27 of the 52 stored significand bits
BUCKETS = 272          # 8-bit buckets of a finite float64's digits: b + 6 <= 268 (exact_sum)
C_CHUNK = 1 << 28      # values per exact_sum call: its int64 buckets stay below 2**52

try:
    from .._backends import _cpu  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the NumPy path
    _cpu = None


def _active_binades(x: np.ndarray) -> tuple[np.ndarray, int, np.ndarray, int]:
    """``(e, a, lut, top)``: each value's biased exponent field, the number of distinct ones, a table
    from exponent field to ``0..a-1`` and the largest field."""
    e = (np.ascontiguousarray(x).view(np.int64) >> 52) & 0x7FF
    seen = np.flatnonzero(np.bincount(e, minlength=2048))
    lut = np.zeros(2048, dtype=np.int64)
    lut[seen] = np.arange(seen.size)
    return e, int(seen.size), lut, int(seen[-1]) if seen.size else 0


def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bucket indices and exact float contributions of finite float64 values, shape ``(3, n)`` each.

    ``sum_k c[k, i] * 2**(8 * b[k, i] - 1126) == x[i]`` exactly.

    >>> b, c = split(np.array([1.0, -0.75]))
    >>> [math.fsum(float(ci) * 2.0 ** (8 * int(bi) - OFFSET) for bi, ci in zip(b[:, j], c[:, j]))
    ...  for j in range(2)]
    [1.0, -0.75]
    """
    f, e = np.frexp(np.asarray(x, dtype=np.float64))
    s = e + np.int32(OFFSET - 53)
    aligned = (f * 2.0**53).astype(np.int64) << (s & 7)   # |M'| < 2**60
    base = s >> 3
    buckets = np.empty((NPIECES, base.size), dtype=np.int64)
    contrib = np.empty((NPIECES, base.size), dtype=np.float64)
    for k in range(NPIECES):
        digit = aligned >> (DIGIT * k)
        if k < NPIECES - 1:
            digit &= _MASK
        np.add(base, 3 * k, out=buckets[k])
        contrib[k] = digit
    return buckets, contrib


class Grid:
    """Exact sums ``S[g, r]`` of float64 values for ``groups x reps`` cells.

    ``digits[g, r, j]`` holds an integer; ``S[g, r] = sum_j digits[g, r, j] * 2**(8 (lo + j) - 1126)``.
    Add values with :meth:`add`, combine grids with :meth:`merge`, read the sums as Python integers
    (in units of ``2**-1126``) with :meth:`integers`.
    """

    def __init__(self, reps: int = 1) -> None:
        self.reps = int(reps)
        self.digits = np.zeros((0, self.reps, 0))
        self.lo = 0
        # compiled sums not yet in the digits: int64 buckets (groups, BUCKETS) and a bound on their
        # buckets in units of 2**24 (folded in before it passes 2**28, so every bucket stays below
        # 2**52); see add_buckets
        self._pending: np.ndarray | None = None
        self._pending_bound = 0

    @property
    def groups(self) -> int:
        self.fold()
        return int(self.digits.shape[0])

    def _fit(self, groups: int, lo: int, hi: int) -> None:
        """Grow to at least ``groups`` rows and to cover buckets ``[lo, hi)``."""
        g0, _, w0 = self.digits.shape
        if w0 == 0:
            self.lo = lo
            w0 = 0
        new_lo = min(self.lo, lo)
        new_hi = max(self.lo + w0, hi)
        add_groups = max(groups - g0, 0)
        if add_groups or new_lo != self.lo or new_hi != self.lo + w0:
            self.digits = np.pad(self.digits, ((0, add_groups), (0, 0),
                                               (self.lo - new_lo, new_hi - self.lo - w0)))
            self.lo = new_lo

    def add(self, gid: np.ndarray, x: np.ndarray, groups: int,
            multipliers: Any = None) -> None:
        """Add ``x[i] * multipliers(r)[i]`` to cell ``(gid[i], r)`` for every rep ``r``.

        ``x``: finite float64 values; ``gid``: their group in ``[0, groups)``; ``multipliers``: None
        (every rep gets each value once) or a callable ``r -> int array`` of values in ``[0, 31]``
        (called once per rep, on the whole of ``x``; it may return None for "1 for every row").
        """
        x = np.asarray(x, dtype=np.float64)
        gid = np.asarray(gid, dtype=np.int64)
        if x.size == 0:
            self._fit(groups, self.lo, self.lo)
        if _cpu is not None and multipliers is None and self.reps == 1:
            for start in range(0, x.size, C_CHUNK):
                self._add_compiled(gid[start:start + C_CHUNK], x[start:start + C_CHUNK], groups)
            return
        for start in range(0, x.size, MAX_CHUNK):
            g, xs = gid[start:start + MAX_CHUNK], x[start:start + MAX_CHUNK]
            binades = _active_binades(xs)
            # few cells for the rows, and no sum near float64's overflow (exponent field 2000: 2**977)
            if groups * binades[1] <= 2 * xs.size and binades[3] < 2000:
                self._add_binades(g, xs, groups, multipliers, start, binades)
            else:
                self._add_chunk(g, xs, groups, multipliers, start)

    def _add_compiled(self, gid: np.ndarray, x: np.ndarray, groups: int) -> None:
        """One pass of ``_cpu.exact_sum`` into int64 buckets, then merged as a grid (its buckets
        below ``2**52``, so exact as float64 digits)."""
        acc = np.zeros((groups, BUCKETS), dtype=np.int64)
        _cpu.exact_sum(np.ascontiguousarray(x), None if groups == 1 else np.ascontiguousarray(gid),
                       acc, BUCKETS)
        self.add_buckets(acc, x.size)

    def add_buckets(self, acc: np.ndarray, rows: int) -> None:
        """Add sums held as int64 buckets ``acc`` of shape ``(groups, BUCKETS)`` (bucket ``j`` in
        units of ``2**(8 j - 1126)``), as ``_cpu.exact_sum`` and ``_cpu.bce_exact`` fill them from
        ``rows`` values: each bucket then holds less than ``2**24 max(rows, 256)``. They are added to
        the pending int64 buckets (exact while the bound stays below ``2**52``), which go into the
        digits (one float64 conversion, merge and carry) only when read or when the bound is near:
        a batch costs one int64 addition of the buckets."""
        bound = max(int(rows), 256)
        if self._pending is not None and self._pending_bound + bound > 1 << 28:
            self.fold()
        if self._pending is None:
            self._pending, self._pending_bound = acc, bound
            if acc.size > 1 << 16:   # many groups: no large int64 array kept beside the digits
                self.fold()
            return
        if acc.shape[0] > self._pending.shape[0]:
            self._pending = np.pad(self._pending, ((0, acc.shape[0] - self._pending.shape[0]), (0, 0)))
        self._pending[:acc.shape[0]] += acc
        self._pending_bound += bound

    def fold(self) -> None:
        """Move the pending compiled sums into the digits."""
        acc = self._pending
        if acc is None:
            return
        self._pending, self._pending_bound = None, 0
        groups = acc.shape[0]
        used = np.flatnonzero(acc.any(axis=0))
        if used.size == 0:
            self._fit(groups, self.lo, self.lo)
            return
        lo, hi = int(used[0]), int(used[-1]) + 1
        part = Grid(1)
        part.lo = lo
        part.digits = acc[:, None, lo:hi].astype(np.float64)
        self.merge(part)

    def _add_binades(self, gid: np.ndarray, x: np.ndarray, groups: int, multipliers: Any,
                     start: int, binades: tuple[np.ndarray, int, np.ndarray, int]) -> None:
        """First level: per (group, binade) sums of the values' high and low halves, exact in float64
        (see the module docstring); then only those sums go through :func:`split`."""
        e, active, lut, _ = binades
        hi = (np.ascontiguousarray(x).view(np.int64) & _HI_MASK).view(np.float64)
        lo = x - hi
        key = lut[e]
        if groups > 1:
            key += gid * active
        cells = groups * active
        parts = []
        for r in range(self.reps):
            m = None if multipliers is None else multipliers(r)
            if m is None:
                whi, wlo = hi, lo
            else:
                m = np.asarray(m, dtype=np.float64)[start:start + gid.size]
                whi, wlo = hi * m, lo * m
            parts.append(np.bincount(key, weights=whi, minlength=cells))
            parts.append(np.bincount(key, weights=wlo, minlength=cells))
        sums = np.concatenate(parts)
        nz = np.flatnonzero(sums)
        rep = nz // (2 * cells)
        self._add_cells(((nz % cells) // active) * self.reps + rep, sums[nz], groups)

    def _add_cells(self, cell: np.ndarray, x: np.ndarray, groups: int) -> None:
        """Add finite values (at most ``2**28``) to the cells ``cell = group * reps + rep``."""
        if x.size == 0:
            self._fit(groups, self.lo, self.lo)
            return
        b, c = split(x)
        self._fit(groups, int(b.min()), int(b.max()) + 1)
        g, reps, w = self.digits.shape
        key = b
        key -= self.lo
        key += cell[None, :] * w
        self.digits += np.bincount(key.ravel(), weights=c.ravel(),
                                   minlength=g * reps * w).reshape(g, reps, w)
        self.normalise()

    def _add_chunk(self, gid: np.ndarray, x: np.ndarray, groups: int, multipliers: Any,
                   start: int) -> None:
        b, c = split(x)
        self._fit(groups, int(b.min()), int(b.max()) + 1)
        g, _, w = self.digits.shape
        key = b
        key -= self.lo
        if g > 1:
            key += gid[None, :] * w
        key = key.ravel()
        for r in range(self.reps):
            m = None if multipliers is None else multipliers(r)
            if m is None:
                weights = c.ravel()
            else:
                m = np.asarray(m, dtype=np.float64)[start:start + gid.size]
                weights = (c * m[None, :]).ravel()
            self.digits[:, r, :] += np.bincount(key, weights=weights, minlength=g * w).reshape(g, w)
        self.normalise()

    def add_cells(self, values: np.ndarray) -> None:
        """Add ``values[g, r]`` (finite floats, shape ``(groups, reps)``) to cell ``(g, r)``."""
        values = np.asarray(values, dtype=np.float64)
        groups = values.shape[0]
        if values.size == 0:
            self._fit(groups, self.lo, self.lo)
            return
        b, c = split(values.ravel())
        self._fit(groups, int(b.min()), int(b.max()) + 1)
        _, reps, w = self.digits.shape
        cells = np.arange(values.size, dtype=np.int64)
        key = (cells[None, :] * w + (b - self.lo)).ravel()
        sums = np.bincount(key, weights=c.ravel(), minlength=values.size * w)
        self.digits[:groups] += sums.reshape(groups, reps, w)
        self.normalise()

    def normalise(self) -> None:
        """Carry: every digit but the top one into ``[0, 256)``, the top one into ``(-256, 256)``."""
        d = self.digits
        for j in range(d.shape[2] - 1):
            q = np.floor(d[:, :, j] / RADIX)
            d[:, :, j] -= q * RADIX
            d[:, :, j + 1] += q
        while d.shape[2] and np.any(np.abs(d[:, :, -1]) >= RADIX):
            d = np.pad(d, ((0, 0), (0, 0), (0, 1)))
            q = np.floor(d[:, :, -2] / RADIX)
            d[:, :, -2] -= q * RADIX
            d[:, :, -1] += q
        self.digits = d

    def merge(self, other: Grid) -> None:
        """Add ``other``'s sums cell by cell (rows beyond ``other.groups`` unchanged)."""
        self.fold()
        other.fold()
        if other.reps != self.reps:
            raise ValueError(f"cannot merge sums with {other.reps} replicates into {self.reps}")
        ow = other.digits.shape[2]
        if ow == 0:
            self._fit(other.groups, self.lo, self.lo)
            return
        self._fit(other.groups, other.lo, other.lo + ow)
        j = other.lo - self.lo
        self.digits[:other.groups, :, j:j + ow] += other.digits
        self.normalise()

    def total(self) -> Grid:
        """A one-row grid holding the sum of all rows (exact: digits below 2**8, rows below 2**40)."""
        self.fold()
        out = Grid(self.reps)
        out.lo = self.lo
        out.digits = self.digits.sum(axis=0, keepdims=True)
        out.normalise()
        return out

    def take(self, rows: np.ndarray, groups: int) -> Grid:
        """A grid whose row ``rows[i]`` holds this grid's row ``i`` (for re-numbering groups)."""
        self.fold()
        out = Grid(self.reps)
        out.lo = self.lo
        out.digits = np.zeros((groups, self.reps, self.digits.shape[2]))
        out.digits[rows[:self.groups]] = self.digits
        return out

    def integers(self) -> np.ndarray:
        """The sums as Python integers in units of ``2**-1126``: an object array ``(groups, reps)``."""
        self.fold()
        g, r, w = self.digits.shape
        out = np.zeros((g, r), dtype=object)
        if w == 0:
            return out
        d = self.digits.astype(np.int64)
        # 6 digits (48 bits) at a time in int64, then Python integers for the rest of the Horner sum
        for top in range(w, 0, -6):
            bottom = max(top - 6, 0)
            part = np.zeros((g, r), dtype=np.int64)
            for j in range(top - 1, bottom - 1, -1):
                part = part * 256 + d[:, :, j]
            out = out * (1 << (8 * (top - bottom))) + part.astype(object)
        return out * (1 << (8 * self.lo))

    # -- a JSON-ready form
    def to_json(self) -> list[list[str]]:
        """Each sum as a hexadecimal integer string (units of ``2**-1126``)."""
        return [[hex(int(v)) for v in row] for row in self.integers()]

    @classmethod
    def from_json(cls, rows: list[list[str]], reps: int) -> Grid:
        grid = cls(reps)
        ints = [[int(v, 16) for v in row] for row in rows]
        if not ints:
            return grid
        bits = max((abs(v).bit_length() for row in ints for v in row), default=0)
        width = bits // WIDTH + 2
        digits = np.zeros((len(ints), reps, width))
        for gi, row in enumerate(ints):
            for ri, v in enumerate(row):
                for j in range(width):  # floor-division digits: lower ones in [0, 256), top signed
                    v, digit = divmod(v, 256) if j < width - 1 else (0, v)
                    digits[gi, ri, j] = digit
        grid.digits = digits
        grid.lo = 0
        grid.normalise()
        return grid


def divide(num: Any, den: Any) -> float:
    """``num / den`` for Python integers, correctly rounded; NaN for ``0 / 0``, ±inf for ``x / 0``."""
    num, den = int(num), int(den)
    if den == 0:
        return math.nan if num == 0 else math.copysign(math.inf, num)
    if den < 0:
        num, den = -num, -den
    try:
        return num / den  # CPython: correctly rounded integer true division
    except OverflowError:
        return math.copysign(math.inf, num)


def mean_of(values: np.ndarray) -> float:
    """The correctly rounded mean of finite float64 values (a one-shot use of :class:`Grid`).

    >>> mean_of(np.array([1e100, 1.0, -1e100, 2.0]))
    0.75
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    grid = Grid()
    grid.add(np.zeros(values.size, dtype=np.int64), values, 1)
    return divide(grid.integers()[0, 0], values.size << OFFSET)
