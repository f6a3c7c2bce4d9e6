"""Poisson bootstrap weights from a counter-based hash: the same weights whatever the partitioning.

Replicate ``r`` gives row ``i`` (its global index in the file order) the weight
``F^-1(u)`` with ``F`` the Poisson(1) distribution function and ``u = hash(seed, r, i) / 2**64``:
``hash`` is SplitMix64's output function (Steele, Lea and Flood, "Fast splittable pseudorandom number
generators", 2014) applied to ``base(seed, r) + i * 0x9E3779B97F4A7C15``, as SplitMix64 itself
walks its stream. Being a function of ``(seed, r, i)`` alone, a row's weights do not depend on which
batch or partition it arrives in. ``P(Poisson(1) > 18) < 2**-53``, so with a 53-bit ``u`` no weight
exceeds 19 (the exact accumulation allows up to 31).
"""

from __future__ import annotations

import math

import numpy as np

_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def _mix_int(z: int) -> int:
    z &= _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _mix(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> np.uint64(30))
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def _poisson1_cdf() -> np.ndarray:
    """``P(X <= k)`` for ``X ~ Poisson(1)``, ``k = 0..19``, from exact rationals rounded once."""
    from fractions import Fraction

    e_inv = math.exp(-1.0)
    terms = [Fraction(1, math.factorial(k)) for k in range(20)]
    cdf, acc = [], Fraction(0)
    for t in terms:
        acc += t
        cdf.append(float(acc * Fraction(e_inv)))
    return np.array(cdf)


_CDF = _poisson1_cdf()


def poisson_weights(seed: int, replicate: int, rows: np.ndarray) -> np.ndarray:
    """Poisson(1) bootstrap weights of the rows with global indices ``rows`` in one replicate.

    A pure function of ``(seed, replicate, row)``: the same row always gets the same weight.

    >>> w = poisson_weights(0, 3, np.arange(100_000))
    >>> bool(abs(w.mean() - 1) < 0.01), bool(abs(w.var() - 1) < 0.02), int(w.max()) < 20
    (True, True, True)
    >>> bool((poisson_weights(0, 3, np.arange(10, 20)) == w[10:20]).all())
    True
    """
    base = _mix_int(_mix_int(int(seed) * _GOLDEN + 0x5851F42D4C957F2D) + int(replicate) * _GOLDEN)
    with np.errstate(over="ignore"):
        z = np.asarray(rows, dtype=np.uint64) * np.uint64(_GOLDEN) + np.uint64(base)
        u = (_mix(z) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    # searchsorted(_CDF, u, "right"), the count of CDF values <= u: the first four comparisons
    # vectorised (98% of rows stop there), the search only for the rest
    w = (u >= _CDF[0]).astype(np.int64)
    for k in range(1, 4):
        w += u >= _CDF[k]
    tail = np.flatnonzero(w == 4)
    if tail.size:
        w[tail] = np.searchsorted(_CDF, u[tail], side="right")
    return w


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of replicate means along the last
    axis (linear interpolation, NaN replicates left out: a replicate that drew no row of a slice)."""
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    with np.errstate(all="ignore"):
        finite = np.where(np.isnan(replicates), np.nan, replicates)
        if finite.size == 0 or finite.shape[-1] == 0:
            nan = np.full(replicates.shape[:-1], np.nan)
            return nan, nan
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return (np.nanquantile(finite, lo_q, axis=-1), np.nanquantile(finite, hi_q, axis=-1))
