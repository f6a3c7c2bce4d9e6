"""Double-length ("double-double") arithmetic, written once against the array API (``xp``).

Error-free transformations and the unevaluated pairs ``hi + lo`` built from them, in the working
precision of the arrays (float64: about 106 bits; float32, e.g. JAX without x64: about 48 bits):

* :func:`two_sum`, :func:`fast_two_sum`: ``a + b = s + e`` exactly (Knuth, TAOCP vol. 2, 4.2.2,
  Theorem B; Dekker, "A floating-point technique for extending the available precision", 1971);
* :func:`two_product`: ``a * b = p + e`` exactly, with Veltkamp's split (Dekker 1971);
* :func:`dd_add`, :func:`dd_mul`: double-length sum and product of pairs; :func:`product_parts`:
  a float times a pair as three parts to be summed;
* :func:`dd_sum`: a compensated pairwise sum (Ogita, Rump and Oishi, "Accurate sum and dot
  product", 2005, Sum2);
* :func:`log_double`, :func:`exp_double`: the logarithm and the exponential as pairs.

Under ``jax.jit`` XLA may re-associate ``(a + b) - a`` to ``b``, which would undo every transformation
here; :func:`barrier` (``lax.optimization_barrier``) stops it and is the identity on other backends.
Every function is tested against mpmath in ``tests/test_double.py``.
"""

from __future__ import annotations

import math
from decimal import Context, Decimal
from fractions import Fraction
from typing import Any

import numpy as np

Array = Any
Pair = tuple[Any, Any]

__all__ = [
    "barrier",
    "dd_add",
    "dd_constant",
    "dd_horner",
    "dd_mul",
    "dd_sum",
    "exp_double",
    "fast_two_sum",
    "is_jax",
    "log_double",
    "log_table",
    "product_parts",
    "split",
    "split_factor",
    "two_product",
    "two_sum",
]


def is_jax(xp: Any) -> bool:
    """Whether ``xp`` is JAX's namespace."""
    return str(getattr(xp, "__name__", "")).startswith("jax")


def barrier(xp: Any, x: Array) -> Array:
    """Stop XLA from re-associating across this point (under ``jax.jit`` it rewrites ``(1 + x) - 1``
    to ``x``, which would undo every error-free transformation below); the identity elsewhere.

    ``optimization_barrier`` alone is not enough on XLA's CPU backend: it is removed before fusion,
    a product ``p = a * b`` is then recomputed inside each fusion that uses it, and LLVM contracts
    ``p + t`` and ``s - p`` into fused multiply-adds with the *exact* product, so TwoProduct's error
    term was counted twice (``dd_mul`` lost its low part under ``jax.jit``). The select
    ``where(x == x, x, nan)`` (the identity, NaN included) is not a multiply, so nothing downstream
    can be contracted with the operation that produced ``x``.
    """
    if is_jax(xp):
        import jax

        x = jax.lax.optimization_barrier(x)
        return xp.where(x == x, x, float("nan"))
    return x


# ------------------------------------------------------------------ error-free transformations


def split_factor(xp: Any, x: Array) -> float:
    """Veltkamp's constant ``2**ceil(p/2) + 1`` for ``x``'s precision p (``2**27 + 1`` in float64,
    ``2**12 + 1`` in float32)."""
    digits = round(-math.log2(float(xp.finfo(x.dtype).eps))) + 1
    return float(2 ** ((digits + 1) // 2) + 1)


def two_sum(xp: Any, a: Array, b: Array) -> Pair:
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly, for any finite ``a``, ``b``
    (Knuth's TwoSum, TAOCP vol. 2, 4.2.2, Theorem B; 6 operations, no branch). Where ``s`` is not
    finite ``e`` is NaN (callers that need 0 there say so)."""
    s = barrier(xp, a + b)
    bv = barrier(xp, s - a)
    return s, (a - (s - bv)) + (b - bv)


def fast_two_sum(xp: Any, a: Array, b: Array) -> Pair:
    """:func:`two_sum` for ``|a| >= |b|`` (or ``a = 0``), in 3 operations (Dekker 1971,
    "Quick-Two-Sum"); exact under that condition only."""
    s = barrier(xp, a + b)
    return s, b - barrier(xp, s - a)


def split(xp: Any, a: Array, factor: float) -> Pair:
    """Veltkamp's split ``a = hi + lo`` with ``hi`` and ``lo`` of at most half the precision each
    (``factor`` from :func:`split_factor`); ``factor * a`` must not overflow (``|a| < 2**995`` in
    float64)."""
    c = barrier(xp, factor * a)
    hi = barrier(xp, c - barrier(xp, c - a))
    return hi, a - hi


def two_product(xp: Any, a: Array, b: Array, factor: float | None = None) -> Pair:
    """``(p, e)`` with ``p = fl(a * b)`` and ``a * b = p + e`` exactly (Dekker's TwoProduct with
    Veltkamp's split, 17 operations), for ``|a|, |b| < 2**995`` (float64; 2**115 in float32) and
    no underflow of the partial products. ``factor`` defaults to :func:`split_factor` of ``a``."""
    if factor is None:
        factor = split_factor(xp, a)
    p = barrier(xp, a * b)
    a_hi, a_lo = split(xp, a, factor)
    b_hi, b_lo = split(xp, b, factor)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


# ------------------------------------------------------------------------- double-length pairs


def dd_add(xp: Any, a: Pair, b: Pair) -> Pair:
    """``a + b`` for pairs, normalised (``|lo| <= ulp(hi)/2``), with a relative error of about
    ``3 u**2`` (u = half an ulp of 1) even when ``a`` and ``b`` cancel: both halves are added with
    :func:`two_sum` (the "accurate" double-double addition; Shewchuk 1997, Bailey's QD library)."""
    s, e = two_sum(xp, a[0], b[0])
    t, f = two_sum(xp, a[1], b[1])
    s, e = fast_two_sum(xp, s, e + t)
    return fast_two_sum(xp, s, e + f)


def dd_mul(xp: Any, a: Pair, b: Pair, factor: float | None = None) -> Pair:
    """``a * b`` for pairs, normalised, with a relative error of about ``4 u**2`` (Dekker 1971,
    mul2: the exact product of the high parts plus the cross terms ``a_hi b_lo + a_lo b_hi``)."""
    p, e = two_product(xp, a[0], b[0], factor)
    return fast_two_sum(xp, p, e + (a[0] * b[1] + a[1] * b[0]))


def dd_horner(xp: Any, acc: Pair, z: Pair, consts: list[tuple[float, float]],
              factor: float | None = None) -> Pair:
    """Horner's rule in double length: ``acc = acc * z + c`` for each pair ``c`` of ``consts`` in
    turn (each step :func:`dd_mul` then :func:`dd_add`).

    Under JAX the steps run in a ``lax.fori_loop`` over a table of the constants: unrolled, the
    chain of pairs (each half used several times by the next step) made XLA's CPU fusion emitters
    re-emit shared subexpressions, so compile time and memory grew about 2.7x per step (a 4x5
    ``poisson`` needed over 6 GB and minutes); the loop compiles its body once.
    """
    if is_jax(xp) and len(consts) > 1:
        import jax

        c_hi = xp.asarray([c[0] for c in consts], dtype=acc[0].dtype)
        c_lo = xp.asarray([c[1] for c in consts], dtype=acc[0].dtype)
        zero = xp.zeros_like(acc[0])

        def step(i: Any, state: tuple[Array, Array, Array, Array]) -> tuple[Array, ...]:
            a_hi, a_lo, z_hi, z_lo = state
            a = dd_add(xp, dd_mul(xp, (a_hi, a_lo), (z_hi, z_lo), factor),
                       (c_hi[i] + zero, c_lo[i] + zero))
            return a[0], a[1], z_hi, z_lo

        out = jax.lax.fori_loop(0, len(consts), step, (acc[0], acc[1] + zero, z[0], z[1] + zero))
        return out[0], out[1]
    for c in consts:
        acc = dd_add(xp, dd_mul(xp, acc, z, factor), (c[0] + xp.zeros_like(acc[0]),
                                                      c[1] + xp.zeros_like(acc[0])))
    return acc


def dd_constant(value: Fraction | float, like: Array | None = None) -> tuple[float, float]:
    """A real constant as two Python floats ``hi + lo`` of ``like``'s precision (float64 if
    ``like`` is None), each rounded once: ``hi = fl(value)``, ``lo = fl(value - hi)``."""
    scalar = np.float32 if like is not None and str(like.dtype).endswith("float32") else np.float64
    value = Fraction(value)
    hi = scalar(float(value))
    return float(hi), float(scalar(float(value - Fraction(float(hi)))))


def dd_sum(xp: Any, x: Array) -> Pair:
    """Sum over the last axis as a pair ``hi + lo``: a pairwise :func:`two_sum` cascade whose errors
    are summed alongside (Ogita, Rump and Oishi, "Accurate sum and dot product", 2005, Sum2, in
    pairwise order). ``hi`` is as accurate as summing in twice the working precision and rounding
    once: ``|hi - S| <= eps |S| + (n eps)**2 sum |x|``. Where the plain sum is not finite (an
    infinite or NaN term) ``hi`` is that sum and ``lo = 0``."""
    plain = xp.sum(x, axis=-1)
    s, err = x, xp.zeros_like(x)
    while s.shape[-1] > 1:
        if s.shape[-1] % 2:
            pad = xp.zeros_like(s[..., :1])
            s, err = xp.concat([s, pad], axis=-1), xp.concat([err, pad], axis=-1)
        t, e = two_sum(xp, s[..., 0::2], s[..., 1::2])
        err = err[..., 0::2] + err[..., 1::2] + e
        s = t
    if s.shape[-1] == 0:
        return plain, xp.zeros_like(plain)
    hi, lo = two_sum(xp, s[..., 0], err[..., 0])
    finite = xp.isfinite(plain)
    return xp.where(finite, hi, plain), xp.where(finite, lo, xp.zeros_like(lo))


def product_parts(xp: Any, t: Array, hi: Array, lo: Array) -> tuple[Array, Array, Array]:
    """``t * (hi + lo)`` as three arrays whose exact sum it is up to the rounding of ``t * lo``
    (about ``u**2`` relative for a normalised pair): :func:`two_product`'s ``(p, e)`` and
    ``t * lo``, for summing with others by :func:`dd_sum`. ``0 * anything = 0`` (all three parts 0
    where ``t = 0``); where the product or its split is not finite only ``p`` is kept."""
    p, e = two_product(xp, t, hi)
    zero = xp.zeros_like(p)
    live = t != 0
    exact = live & xp.isfinite(p) & xp.isfinite(e)
    return xp.where(live, p, zero), xp.where(exact, e, zero), xp.where(exact, t * lo, zero)


# ------------------------------------------------------------------- logarithm and exponential

_LN2 = Fraction(Decimal(2).ln(Context(prec=60)))
# log(m) = 2 atanh(s) = s * sum_k 2 s^(2k) / (2k+1), s = (m - 1)/(m + 1), |s| <= 0.1716 for m in
# [sqrt(1/2), sqrt(2)]: the terms from k = 11 on are below 2**-53 of the first (0.1716**22 / 23), so
# they are summed in working precision and the first eleven in double length.
_ATANH_DOUBLE_TERMS = 11
_ATANH_TERMS = 24


def log_double(xp: Any, x: Array) -> Pair:
    """``(hi, lo)`` with ``hi + lo = log(x)`` to about twice the working precision, for ``x > 0``.

    ``x = m 2**e`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` (``frexp``, exact); ``log(m) = 2 atanh(s)``
    with ``s = f/(2 + f)``, ``f = m - 1`` exact (Sterbenz), ``s`` divided in double length, and the
    series summed in double length (its tail in working precision); ``e log 2`` with ``log 2`` as two
    numbers and an exact product. The relative error is about ``2**-100`` in float64 (``2**-45`` in
    float32), which lets ``log(t) - x`` keep its digits when ``x`` is within rounding of ``log(t)``
    (the KL divergence of log-probabilities). ``x = 0`` gives ``(-inf, 0)``; ``inf`` and NaN pass
    through in ``hi`` with ``lo = 0``; negative ``x`` gives NaN.
    """
    factor = split_factor(xp, x)
    one, zero = xp.ones_like(x), xp.zeros_like(x)
    ok = (x > 0) & (x < float("inf"))
    mant, expo = xp.frexp(xp.where(ok, x, one))
    expo = xp.astype(expo, x.dtype)
    low = mant < math.sqrt(0.5)
    m = xp.where(low, 2.0 * mant, mant)  # exact
    e = xp.where(low, expo - 1.0, expo)
    f = m - 1.0  # exact: m in [0.70, 1.42]
    d_hi, d_lo = two_sum(xp, f, 2.0 + zero)
    s_hi = barrier(xp, f / d_hi)  # else XLA may rewrite (f / d) * d below to f
    p, pe = two_product(xp, s_hi, d_hi, factor)
    s_lo = (((f - p) - pe) - s_hi * d_lo) / d_hi
    s = (s_hi, s_lo)
    z = dd_mul(xp, s, s, factor)
    tail = zero
    for k in range(_ATANH_TERMS, _ATANH_DOUBLE_TERMS - 1, -1):
        tail = tail * z[0] + 2.0 / (2 * k + 1)
    consts = [dd_constant(Fraction(2, 2 * k + 1), x) for k in range(_ATANH_DOUBLE_TERMS - 1, -1, -1)]
    acc = dd_horner(xp, (tail, zero), z, consts, factor)
    log_m = dd_mul(xp, s, acc, factor)
    ln2_hi, ln2_lo = dd_constant(_LN2, x)
    el_hi, el_lo = two_product(xp, e, ln2_hi + zero, factor)
    hi, lo = dd_add(xp, (el_hi, el_lo + e * ln2_lo), log_m)
    hi = xp.where(ok, hi, xp.log(x))  # 0 -> -inf, inf -> inf, NaN and negatives -> NaN
    return hi, xp.where(ok, lo, zero)


def exp_double(xp: Any, y: Array, log: Any = None) -> Pair:
    """``(hi, lo)`` with ``hi + lo = exp(y)`` to about twice the working precision.

    ``hi = exp(y)`` rounded; its error is recovered from the double-length logarithm of ``hi``:
    ``exp(y) = hi exp(d)`` with ``d = (y - log_hi) - log_lo`` (``y - log_hi`` exact, Sterbenz), so
    ``lo = hi expm1(d)``. The relative error is about ``|y| 2**-104`` in float64. ``hi = 0``
    (``y = -inf`` or underflow) and ``inf`` give ``lo = 0``. Below ``exp(-600)`` in float64 ``lo``
    is subnormal and the pair keeps fewer extra bits (about 2**-64 relative at ``exp(-700)``).
    ``log`` replaces :func:`log_double` (e.g. :func:`log_table`: then the relative error is that
    function's absolute error, about ``eps / 2**7``).
    """
    hi = xp.exp(y)
    ok = (hi > 0) & (hi < float("inf"))
    one, zero = xp.ones_like(y), xp.zeros_like(y)
    l_hi, l_lo = (log or log_double)(xp, xp.where(ok, hi, one))
    d = (xp.where(ok, y, zero) - l_hi) - l_lo
    return hi, xp.where(ok, hi * xp.expm1(d), zero)


# ------------------------------------------------------- a cheaper, table-driven logarithm pair

_TABLE_BITS = 8  # 256 intervals of [1/2, 1): |r| <= 2**-10 / (1/2) = 2**-9 below
_TABLE_TERMS = 7  # log1p(r) - r = sum_{k=2..7} (-1)^(k+1) r^k / k: the first omitted term < 2**-72


def _log_table_constants(digits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Centres ``c_j`` of the intervals, ``log(c_j)`` as pairs, and ``log 2`` split so that
    ``e * ln2_hi`` is exact for every exponent ``e`` (``ln2_hi`` keeps ``digits - 11`` bits)."""
    scalar = np.float64 if digits == 53 else np.float32
    n = 2**_TABLE_BITS
    centres = [Fraction(1, 2) + Fraction(2 * j + 1, 4 * n) for j in range(n)]
    ctx = Context(prec=50)
    logs = [Fraction(Decimal(c.numerator).ln(ctx) - Decimal(c.denominator).ln(ctx)) for c in centres]
    hi = np.array([scalar(float(v)) for v in logs])
    lo = np.array([scalar(float(v - Fraction(float(h)))) for v, h in zip(logs, hi, strict=True)])
    keep = digits - 11
    ln2_hi = math.ldexp(math.floor(math.ldexp(float(_LN2), keep)), -keep)
    ln2_lo = float(scalar(float(_LN2 - Fraction(ln2_hi))))
    return np.array([scalar(float(c)) for c in centres]), hi, lo, ln2_hi, ln2_lo


_LOG_TABLES: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, float, float]] = {}


def _backend_has_device(xp: Any) -> bool:
    return "torch" in str(getattr(xp, "__name__", ""))


def log_table(xp: Any, x: Array) -> Pair:
    """``(hi, lo)`` with ``hi + lo = log(x)`` to an absolute error below ``eps / 2**7`` of the
    working precision (``2**-59`` in float64; measured: ``eps / 2**11`` in float64, ``eps / 200``
    in float32) plus ``2**-100 |log x|``, for ``x > 0``; an
    eighth of the cost of :func:`log_double`, for callers whose error analysis needs only a few
    more bits than a rounded ``log`` (and that fall back to :func:`log_double` otherwise).

    ``x = m 2**e`` (``frexp``, exact), ``m`` in ``[1/2, 1)`` falls in one of 256 intervals with
    centre ``c``; ``log x = e log 2 + log c + log1p(r)``, ``r = (m - c)/c`` (``m - c`` exact,
    ``|r| <= 2**-9``, the division's rounding is the ``2**-62`` absolute error), ``log c`` from a
    table of pairs and ``log1p(r) - r`` by a 6-term series. The parts are added with TwoSum.
    ``x = 0`` gives ``(-inf, 0)``; ``inf`` and NaN pass through in ``hi``; negative ``x`` gives NaN.
    """
    digits = round(-math.log2(float(xp.finfo(x.dtype).eps))) + 1
    if digits not in _LOG_TABLES:
        _LOG_TABLES[digits] = _log_table_constants(digits)
    centres, t_hi, t_lo, ln2_hi, ln2_lo = _LOG_TABLES[digits]
    one, zero = xp.ones_like(x), xp.zeros_like(x)
    ok = (x > 0) & (x < float("inf"))
    mant, expo = xp.frexp(xp.where(ok, x, one))
    e = xp.astype(expo, x.dtype)
    n = 2**_TABLE_BITS
    j = xp.astype(xp.floor((mant - 0.5) * (2 * n)), xp.int32 if digits == 24 else xp.int64)
    j = xp.reshape(xp.clip(j, 0, n - 1), (-1,))  # take() wants a vector index (PyTorch)

    device = getattr(x, "device", None) if _backend_has_device(xp) else None

    def lookup(table: np.ndarray) -> Array:
        vec = xp.asarray(table, dtype=x.dtype, **({"device": device} if device is not None else {}))
        return xp.reshape(xp.take(vec, j), x.shape)

    c = lookup(centres)
    r = (mant - c) / c
    poly = zero + (-1.0) ** (_TABLE_TERMS + 1) / _TABLE_TERMS
    for k in range(_TABLE_TERMS - 1, 1, -1):
        poly = poly * r + (-1.0) ** (k + 1) / k
    poly = poly * r * r
    h1, l1 = two_sum(xp, e * ln2_hi, lookup(t_hi))
    h2, l2 = two_sum(xp, h1, r)
    lo = ((l1 + l2) + (lookup(t_lo) + e * ln2_lo)) + poly
    hi, lo = fast_two_sum(xp, h2, lo)
    return xp.where(ok, hi, xp.log(x)), xp.where(ok, lo, zero)
