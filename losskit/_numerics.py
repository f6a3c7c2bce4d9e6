"""Stable numerical primitives, written once against the array API (``xp``).

Each primitive keeps its full relative accuracy over the whole floating-point range; the comments give
the reason for every branch and threshold. They are tested one by one against mpmath in
``tests/test_numerics.py``.
"""

from __future__ import annotations

import math
from decimal import Context, Decimal
from fractions import Fraction
from typing import Any

import array_api_compat
import numpy as np

Array = Any


def _is_jax(xp: Any) -> bool:
    return str(getattr(xp, "__name__", "")).startswith("jax")


def barrier(xp: Any, x: Array) -> Array:
    """Stop XLA from re-associating across this point (under ``jax.jit`` it rewrites ``(1 + x) - 1``
    to ``x``, which would undo every error-free transformation below); the identity elsewhere."""
    if _is_jax(xp):
        import jax

        return jax.lax.optimization_barrier(x)
    return x


def log1p(xp: Any, x: Array) -> Array:
    """``log(1 + x)`` to within about an ulp on every backend.

    XLA's float64 ``log1p`` (JAX on CPU) is off by up to ~120 ulp for x in [-0.5, -0.3] (measured
    against mpmath); there it is replaced by Goldberg's ``log(u) * x / (u - 1)`` with ``u = 1 + x``
    ("What every computer scientist should know about floating-point arithmetic", 1991, Thm. 4).
    """
    if not _is_jax(xp):
        return xp.log1p(x)
    u = barrier(xp, 1.0 + x)
    d = u - 1.0
    exact = d == 0
    out = xp.where(exact, x, xp.log(u) * (x / xp.where(exact, xp.ones_like(d), d)))
    return xp.where(x == float("inf"), x, out)


def softplus_pair(xp: Any, x: Array, e: Array) -> tuple[Array, Array]:
    """``(softplus(x), softplus(-x))`` given ``e = exp(-|x|)``, from one ``log1p``.

    ``softplus(±x) = max(±x, 0) + log1p(e)`` (Mächler's ``log1pexp``, "Accurately computing
    log(1 - exp(-|a|))", 2012, written branch-free): a small positive correction to x for x >> 0, and
    ``log1p`` of a tiny number, to full relative accuracy, for x << 0. ``e`` never overflows.
    ``softplus(+inf) = inf``, ``softplus(-inf) = 0``.
    """
    tail = log1p(xp, e)
    zero = xp.zeros_like(x)
    return xp.maximum(x, zero) + tail, xp.maximum(-x, zero) + tail


def sigmoid_pair(xp: Any, x: Array, e: Array) -> tuple[Array, Array]:
    """``(sigmoid(x), sigmoid(-x))`` given ``e = exp(-|x|)``: ``1/(1 + e)`` on one side and
    ``e/(1 + e)`` on the other, full relative accuracy in both tails."""
    big = 1.0 / (1.0 + e)
    small = e * big
    positive = x >= 0
    return xp.where(positive, big, small), xp.where(positive, small, big)


def softplus(xp: Any, x: Array) -> Array:
    """``log(1 + exp(x))`` without overflow or loss of the small tail (see :func:`softplus_pair`)."""
    return softplus_pair(xp, x, xp.exp(-xp.abs(x)))[0]


def sigmoid(xp: Any, x: Array) -> Array:
    """``1 / (1 + exp(-x))`` with full relative accuracy in both tails (see :func:`sigmoid_pair`)."""
    return sigmoid_pair(xp, x, xp.exp(-xp.abs(x)))[0]


def log_both(xp: Any, p: Array) -> tuple[Array, Array]:
    """``(log(p), log(1 - p))`` for probabilities, both to the last bit, from two logarithms.

    With ``q = min(p, 1 - p)`` (``1 - p`` is exact for p > 0.5, by Sterbenz) ``log(q)`` is the log of
    the smaller one and ``log1p(-q)`` that of the larger; so a tiny ``1 - p`` keeps its digits in
    ``log(1 - p)`` and ``-log(p)`` keeps its relative accuracy when ``p`` is within ulps of 1, where
    a vectorised ``log`` is only good to an absolute ulp.
    """
    upper = p > 0.5
    q = xp.where(upper, 1.0 - p, p)
    of_small, of_large = xp.log(q), log1p(xp, -q)
    return xp.where(upper, of_large, of_small), xp.where(upper, of_small, of_large)


def xmul(xp: Any, coef: Array, value: Array) -> Array:
    """``coef * value`` with ``0 * anything = 0`` (so ``0 * log 0 = 0`` and ``0 * inf = 0``)."""
    return xp.where(coef == 0, xp.zeros_like(value), coef * value)


def exp_difference(xp: Any, a: Array, b: Array) -> Array:
    """``exp(a - b)`` as if ``a - b`` were exact.

    ``a - b`` rounds by up to half an ulp of the difference, which ``exp`` turns into a relative error
    of ``|a - b| * eps / 2``: 32 ulp for a logit 70 below the maximum. The rounding error ``r`` of the
    subtraction is recovered exactly (Knuth's TwoSum) and applied as ``exp(d + r) = exp(d) (1 + r)``
    (rounding ``1 + r`` costs at most half an ulp).
    Needed only when the inputs are in the compute precision: float32 inputs computed in float64 have
    an exact (or 2**-29 times smaller) difference already.
    """
    d = barrier(xp, a - b)
    bv = barrier(xp, d - a)
    r = (a - (d - bv)) - (b + bv)
    r = xp.where(xp.isfinite(r), r, xp.zeros_like(r))  # a = -inf gives d = -inf and r = NaN
    return xp.exp(d) * (1.0 + r)  # not e + e*r: e*r may be subnormal, which XLA flushes to zero


def argmax_mask(xp: Any, x: Array) -> Array:
    """Boolean mask of the first maximum along the last axis."""
    idx = xp.argmax(x, axis=-1, keepdims=True)
    return xp.arange(x.shape[-1], device=array_api_compat.device(x)) == idx


def sum_others(xp: Any, v: Array) -> tuple[Array, Array]:
    """Row totals and, per element, the sum of the *other* elements of its row (last axis).

    ``total - v_j`` cancels catastrophically only for the largest element of a row (every other element is
    at most half the total); for that one element the others are summed directly, so a row such as
    ``[1 - 1e-12, 1e-12]`` keeps its ``1e-12``.
    """
    top = argmax_mask(xp, v)
    total = xp.sum(v, axis=-1, keepdims=True)
    others_of_top = xp.sum(xp.where(top, xp.zeros_like(v), v), axis=-1, keepdims=True)
    return total, xp.where(top, others_of_top, total - v)


def accurate_sum(xp: Any, x: Array) -> Array:
    """Sum over the last axis with compensated (TwoSum) pairwise cascading.

    As accurate as summing in twice the working precision and rounding once: the error is at most
    ``eps*|sum| + (n*eps)**2 * sum(|x|)`` (Ogita, Rump and Oishi, "Accurate sum and dot product", 2005,
    Sum2, here in pairwise order), where a plain sum has ``n*eps*sum(|x|)``.
    Used where terms of both signs meet, e.g. the mass difference ``sum(y - p)`` in the KL divergence.
    """
    plain = xp.sum(x, axis=-1)
    s = x
    err = xp.zeros_like(x)
    while s.shape[-1] > 1:
        if s.shape[-1] % 2:
            pad = xp.zeros_like(s[..., :1])
            s = xp.concat([s, pad], axis=-1)
            err = xp.concat([err, pad], axis=-1)
        a, b = s[..., 0::2], s[..., 1::2]
        t = barrier(xp, a + b)
        bv = barrier(xp, t - a)
        err = err[..., 0::2] + err[..., 1::2] + ((a - (t - bv)) + (b - bv))
        s = t
    if s.shape[-1] == 0:
        return plain
    # an infinite or NaN term makes the error terms NaN; the plain sum is then the answer
    return xp.where(xp.isfinite(plain), s[..., 0] + err[..., 0], plain)


# Coefficients 1/(2k+1), k = 1..17, of atanh(r)/r - 1 = r^2/3 + r^4/5 + ... . With |r| <= 1/3 the
# 17th term is below 2**-53 relative to the first, so the truncated series is exact in float64.
_ATANH_SERIES = tuple(1.0 / (2 * k + 1) for k in range(1, 18))


def _atanh_ratio_minus_one(xp: Any, r2: Array) -> Array:
    """``atanh(r)/r - 1`` as a series in ``r2 = r*r`` (Horner), for ``|r| <= 1/3``."""
    acc = xp.zeros_like(r2) + _ATANH_SERIES[-1]
    for c in reversed(_ATANH_SERIES[:-1]):
        acc = acc * r2 + c
    return acc * r2


def kl_parts(xp: Any, y: Array, p: Array) -> tuple[Array, Array]:
    """Two arrays whose exact sum is ``y*log(y/p)`` (``0`` where ``y = 0``), for ``y, p >= 0``.

    Near equality (``|r| <= 1/3`` with ``r = (y - p)/(y + p)``, i.e. ``p/2 <= y <= 2p``) the term
    cancels against its neighbours, so it is split into the non-negative excess
    ``y*log(y/p) - (y - p)`` and the mass difference ``y - p`` (exact there, by Sterbenz). With
    ``log(y/p) = 2*atanh(r)`` the excess is ``r * (r*(y + p) + 2*y*(atanh(r)/r - 1))``, a sum whose
    relative cancellation is at most 1/3, with the series above. Farther apart the term is
    ``y*log(y/p)`` itself (second part 0), with ``log(y) - log(p)`` where ``y/p`` over- or underflows.
    Summing all parts of a row with :func:`accurate_sum` then keeps the tiny divergence of two
    near-equal distributions to the last bits. ``p = 0 < y`` gives ``inf``; NaN propagates.
    """
    zero = xp.zeros_like(y)
    one = xp.ones_like(y)
    ssum = y + p
    r = xp.where(ssum > 0, (y - p) / xp.where(ssum > 0, ssum, one), zero)
    near = (xp.abs(r) <= 1.0 / 3.0) & (y > 0)
    r_near = xp.where(near, r, zero)
    excess = r_near * (r_near * ssum + 2.0 * y * _atanh_ratio_minus_one(xp, r_near * r_near))
    safe_y = xp.where(y > 0, y, one)
    safe_p = xp.where(p > 0, p, one)
    quotient = safe_y / safe_p
    finite_q = (quotient > 0) & (quotient < float("inf"))
    log_ratio = xp.where(finite_q, xp.log(xp.where(finite_q, quotient, one)),
                         xp.log(safe_y) - xp.log(safe_p))
    direct = xp.where(y > 0, y * log_ratio, zero)  # 0 * log(0/p) = 0
    direct = xp.where((p == 0) & (y > 0), float("inf") + zero, direct)
    first = xp.where(near, excess, direct)
    second = xp.where(near, y - p, zero)
    nan = xp.isnan(ssum)  # NaN in either input propagates
    return xp.where(nan, ssum, first), xp.where(nan, ssum, second)


# ------------------------------------------------------------------ scaled exponentials (catalog)


def _working_float(xp: Any, x: Array) -> tuple[type[np.floating[Any]], float]:
    """The NumPy scalar type of ``x``'s precision and Veltkamp's splitting constant ``2**s + 1``
    for it (s = ceil(p/2): 27 in float64, 12 in float32)."""
    digits = round(-math.log2(float(xp.finfo(x.dtype).eps))) + 1
    scalar = np.float32 if digits <= 24 else np.float64
    return scalar, float(2 ** ((digits + 1) // 2) + 1)


def exp_scaled_difference(xp: Any, c: float, a: Array, b: Array) -> Array:
    """``exp(c * (a - b))`` for a Python float ``c``, as if ``c * (a - b)`` were exact.

    Rounding ``c * (a - b)`` costs ``|c (a - b)| * eps / 2`` relative in the exponential: 250 ulp for
    ``c = 0.5`` and a logit 1000 below the maximum (the generalized cross-entropy's ``p_k ** q``). The
    subtraction's error is recovered with TwoSum (as in :func:`exp_difference`), the product's with
    Dekker's TwoProduct (Veltkamp's split; Dekker, "A floating-point technique for extending the
    available precision", 1971), and the part of ``c`` that the working precision cannot hold is
    multiplied in separately; all three are applied as ``exp(h) (1 + low)``. Where the split would
    overflow (``|a - b|`` beyond ~1e300 in float64) the correction is dropped.
    """
    scalar, factor = _working_float(xp, a)
    cw = scalar(c)  # c as the working precision holds it; c - cw is applied below
    c_rest = c - float(cw)
    c_big = scalar(cw * scalar(factor))
    c_hi = float(c_big - (c_big - cw))
    c_lo = float(cw) - c_hi
    cw_f = float(cw)
    d = barrier(xp, a - b)
    bv = barrier(xp, d - a)
    r = (a - (d - bv)) - (b + bv)
    h = barrier(xp, cw_f * d)
    t = barrier(xp, factor * d)
    d_hi = barrier(xp, t - barrier(xp, t - d))
    d_lo = d - d_hi
    err = (((c_hi * d_hi - h) + c_hi * d_lo) + c_lo * d_hi) + c_lo * d_lo
    low = err + (cw_f * r + c_rest * d)
    low = xp.where(xp.isfinite(low), low, xp.zeros_like(low))
    return xp.exp(h) * (1.0 + low)


# ------------------------------------------------------- double-length logarithm (divergences)
# Error-free transformations (Knuth's TwoSum, Dekker's TwoProduct with Veltkamp's split; Dekker, "A
# floating-point technique for extending the available precision", 1971) and double-length ("double-
# double") sums and products built from them, in the working precision of the arrays (float64: 106
# bits, float32: 48 bits). Barriers keep XLA from simplifying them away.


def _dl_split_factor(xp: Any, x: Array) -> float:
    """Veltkamp's constant ``2**ceil(p/2) + 1`` for ``x``'s precision p (2**27 + 1 in float64)."""
    digits = round(-math.log2(float(xp.finfo(x.dtype).eps))) + 1
    return float(2 ** ((digits + 1) // 2) + 1)


def _dl_two_sum(xp: Any, a: Array, b: Array) -> tuple[Array, Array]:
    s = barrier(xp, a + b)
    bv = barrier(xp, s - a)
    return s, (a - (s - bv)) + (b - bv)


def _dl_fast_two_sum(xp: Any, a: Array, b: Array) -> tuple[Array, Array]:
    """TwoSum for ``|a| >= |b|`` (or a = 0)."""
    s = barrier(xp, a + b)
    return s, b - barrier(xp, s - a)


def _dl_two_prod(xp: Any, a: Array, b: Array, factor: float) -> tuple[Array, Array]:
    p = barrier(xp, a * b)
    ca, cb = barrier(xp, factor * a), barrier(xp, factor * b)
    a_hi, b_hi = barrier(xp, ca - barrier(xp, ca - a)), barrier(xp, cb - barrier(xp, cb - b))
    a_lo, b_lo = a - a_hi, b - b_hi
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def _dl_add(xp: Any, a: tuple[Array, Array], b: tuple[Array, Array]) -> tuple[Array, Array]:
    s, e = _dl_two_sum(xp, a[0], b[0])
    t, f = _dl_two_sum(xp, a[1], b[1])
    s, e = _dl_fast_two_sum(xp, s, e + t)
    return _dl_fast_two_sum(xp, s, e + f)


def _dl_mul(xp: Any, a: tuple[Array, Array], b: tuple[Array, Array],
            factor: float) -> tuple[Array, Array]:
    p, e = _dl_two_prod(xp, a[0], b[0], factor)
    return _dl_fast_two_sum(xp, p, e + (a[0] * b[1] + a[1] * b[0]))


def _dl_constant(x: Array, value: Fraction) -> tuple[float, float]:
    """A rational constant as two numbers of ``x``'s precision (hi + lo, rounded once each)."""
    scalar = np.float32 if str(x.dtype).endswith("float32") else np.float64
    hi = scalar(float(value))
    return float(hi), float(scalar(float(value - Fraction(float(hi)))))


_LN2 = Fraction(Decimal(2).ln(Context(prec=60)))
# log(m) = 2 atanh(s) = s * sum_k 2 s^(2k) / (2k+1), s = (m - 1)/(m + 1), |s| <= 0.1716 for m in
# [sqrt(1/2), sqrt(2)]: the terms from k = 11 on are below 2**-53 of the first (0.1716**22 / 23), so
# they are summed in working precision and the first eleven in double length.
_ATANH_DOUBLE_TERMS = 11
_ATANH_TERMS = 24


def log_double(xp: Any, x: Array) -> tuple[Array, Array]:
    """``(hi, lo)`` with ``hi + lo = log(x)`` to about twice the working precision, for ``x > 0``.

    ``x = m 2**e`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` (``frexp``, exact); ``log(m) = 2 atanh(s)``
    with ``s = f/(2 + f)``, ``f = m - 1`` exact (Sterbenz), ``s`` divided in double length, and the
    series summed in double length (its tail in working precision); ``e log 2`` with ``log 2`` as two
    numbers and an exact product. The relative error is about ``2**-100`` in float64 (``2**-45`` in
    float32), which lets ``log(t) - x`` keep its digits when ``x`` is within rounding of ``log(t)``
    (the KL divergence of log-probabilities). ``x = 0`` gives ``(-inf, 0)``; ``inf`` and NaN pass
    through in ``hi`` with ``lo = 0``; negative ``x`` gives NaN.
    """
    factor = _dl_split_factor(xp, x)
    one, zero = xp.ones_like(x), xp.zeros_like(x)
    ok = (x > 0) & (x < float("inf"))
    mant, expo = xp.frexp(xp.where(ok, x, one))
    expo = xp.astype(expo, x.dtype)
    low = mant < math.sqrt(0.5)
    m = xp.where(low, 2.0 * mant, mant)  # exact
    e = xp.where(low, expo - 1.0, expo)
    f = m - 1.0  # exact: m in [0.70, 1.42]
    d_hi, d_lo = _dl_two_sum(xp, f, 2.0 + zero)
    s_hi = f / d_hi
    p, pe = _dl_two_prod(xp, s_hi, d_hi, factor)
    s_lo = (((f - p) - pe) - s_hi * d_lo) / d_hi
    s = (s_hi, s_lo)
    z = _dl_mul(xp, s, s, factor)
    tail = zero
    for k in range(_ATANH_TERMS, _ATANH_DOUBLE_TERMS - 1, -1):
        tail = tail * z[0] + 2.0 / (2 * k + 1)
    acc = (tail, zero)
    for k in range(_ATANH_DOUBLE_TERMS - 1, -1, -1):
        c_hi, c_lo = _dl_constant(x, Fraction(2, 2 * k + 1))
        acc = _dl_add(xp, _dl_mul(xp, acc, z, factor), (c_hi + zero, c_lo + zero))
    log_m = _dl_mul(xp, s, acc, factor)
    ln2_hi, ln2_lo = _dl_constant(x, _LN2)
    el_hi, el_lo = _dl_two_prod(xp, e, ln2_hi + zero, factor)
    hi, lo = _dl_add(xp, (el_hi, el_lo + e * ln2_lo), log_m)
    hi = xp.where(ok, hi, xp.log(x))  # 0 -> -inf, inf -> inf, NaN and negatives -> NaN
    return hi, xp.where(ok, lo, zero)


def kl_log_parts(xp: Any, t: Array, x: Array) -> tuple[Array, Array, Array]:
    """Three arrays whose exact sum is ``t (log t - x)`` to about twice the working precision
    (``0`` where ``t = 0``), for probabilities ``t >= 0`` and log-probabilities ``x``.

    With ``log t = hi + lo`` (:func:`log_double`), ``hi - x`` is exact (TwoSum; Sterbenz near
    equality), and ``t (hi - x)`` is split exactly by TwoProduct: summing the parts of a row with
    :func:`accurate_sum` keeps the divergence of two nearly equal distributions even when ``x`` is
    within rounding of ``log t``, where ``t * (log(t) - x)`` would keep no correct digit. ``x = -inf``
    under ``t > 0`` gives ``inf``; NaN propagates.
    """
    factor = _dl_split_factor(xp, t)
    zero = xp.zeros_like(t)
    positive = t > 0
    safe_t = xp.where(positive, t, xp.ones_like(t))
    l_hi, l_lo = log_double(xp, safe_t)
    d_hi, d_lo = _dl_two_sum(xp, l_hi, -x)
    d_lo = xp.where(xp.isfinite(d_lo), d_lo, zero)  # x = -inf: d = inf
    d_hi, d_lo = _dl_fast_two_sum(xp, d_hi, d_lo + l_lo)
    p, pe = _dl_two_prod(xp, safe_t, d_hi, factor)
    finite = xp.isfinite(p) & xp.isfinite(pe)
    first = xp.where(positive, p, zero)
    second = xp.where(positive & finite, pe, zero)
    third = xp.where(positive & finite, safe_t * d_lo, zero)
    nan = xp.isnan(t) | xp.isnan(x)
    return xp.where(nan, t + x, first), second, third


def exp_double(xp: Any, y: Array) -> tuple[Array, Array]:
    """``(hi, lo)`` with ``hi + lo = exp(y)`` to about twice the working precision.

    ``hi = exp(y)`` rounded; its error is recovered from the double-length logarithm of ``hi``:
    ``exp(y) = hi exp(d)`` with ``d = (y - log_hi) - log_lo`` (``y - log_hi`` exact, Sterbenz), so
    ``lo = hi expm1(d)``. ``hi = 0`` (``y = -inf`` or underflow) and ``inf`` give ``lo = 0``. Below
    ``exp(-600)`` in float64 ``lo`` is subnormal and the pair keeps fewer extra bits (about 2**-64
    relative at ``exp(-700)``).
    """
    hi = xp.exp(y)
    ok = (hi > 0) & (hi < float("inf"))
    one, zero = xp.ones_like(y), xp.zeros_like(y)
    l_hi, l_lo = log_double(xp, xp.where(ok, hi, one))
    d = (xp.where(ok, y, zero) - l_hi) - l_lo
    return hi, xp.where(ok, hi * xp.expm1(d), zero)


def kl_log_target_parts(xp: Any, y: Array, x: Array) -> tuple[Array, Array, Array]:
    """Three arrays whose exact sum is ``exp(y) (y - x)`` to about twice the working precision
    (``0`` where ``exp(y) = 0``), for log-probabilities ``y`` (target) and ``x`` (prediction).

    ``exp(y)`` in double length (:func:`exp_double`), ``y - x`` exact (TwoSum) and their product
    split exactly (TwoProduct), so that a row whose terms cancel (``sum_j e^y_j (y_j - x_j)`` far
    below ``sum_j e^y_j |y_j - x_j|``) keeps its digits when summed with :func:`accurate_sum`.
    ``x = -inf`` under ``y > -inf`` gives ``inf``; NaN propagates.
    """
    factor = _dl_split_factor(xp, y)
    zero = xp.zeros_like(y)
    e_hi, e_lo = exp_double(xp, y)
    d_hi, d_lo = _dl_two_sum(xp, y, -x)
    d_lo = xp.where(xp.isfinite(d_lo), d_lo, zero)
    p, pe = _dl_two_prod(xp, e_hi, d_hi, factor)
    live = e_hi > 0
    finite = xp.isfinite(p) & xp.isfinite(pe)
    first = xp.where(live, p, zero)
    second = xp.where(live & finite, pe, zero)
    third = xp.where(live & finite, e_hi * d_lo + e_lo * d_hi, zero)
    nan = xp.isnan(y) | xp.isnan(x)
    return xp.where(nan, y + x, first), second, third
