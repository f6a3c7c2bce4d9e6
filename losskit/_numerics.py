"""Stable numerical primitives, written once against the array API (``xp``).

Each primitive keeps its full relative accuracy over the whole floating-point range; the comments give
the reason for every branch and threshold. They are tested one by one against mpmath in
``tests/test_numerics.py``. Double-length arithmetic (TwoSum, TwoProduct, pairs, ``log_double``,
``exp_double``) lives in ``losskit/_double.py``.

JAX (XLA on CPU) pitfalls met so far, each handled where it bites: float64 ``log1p`` is off by up to
~120 ulp near -0.4 (:func:`log1p`); ``jax.jit`` rewrites ``(1 + x) - 1`` to ``x`` unless the sum is
behind ``lax.optimization_barrier``; that barrier is dropped before fusion, after which LLVM
contracts a recomputed product into fused multiply-adds (``_double.barrier`` adds an identity
select); subnormals are flushed to zero; and a long unrolled chain of double-length steps made the
CPU fusion emitters' compile time and memory grow exponentially (``_double.dd_horner`` loops).
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from . import _array
from ._double import (
    barrier,
    dd_sum,
    exp_double,
    fast_two_sum,
    is_jax,
    log_double,
    product_parts,
    split,
    split_factor,
    two_product,
    two_sum,
)

Array = Any


def log1p(xp: Any, x: Array) -> Array:
    """``log(1 + x)`` to within about an ulp on every backend.

    XLA's float64 ``log1p`` (JAX on CPU) is off by up to ~120 ulp for x in [-0.5, -0.3] (measured
    against mpmath); there it is replaced by Goldberg's ``log(u) * x / (u - 1)`` with ``u = 1 + x``
    ("What every computer scientist should know about floating-point arithmetic", 1991, Thm. 4).
    """
    if not is_jax(xp):
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
    d, r = two_sum(xp, a, -b)
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
    return dd_sum(xp, x)[0]  # hi = fl(s + err): the sum rounded once; the plain sum where not finite


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
    factor = split_factor(xp, a)
    scalar = np.float32 if factor < 2.0**20 else np.float64  # the working precision
    cw = scalar(c)  # c as the working precision holds it; c - cw is applied below
    c_rest = c - float(cw)
    c_big = scalar(cw * scalar(factor))
    c_hi = float(c_big - (c_big - cw))  # Veltkamp's split of the constant, in Python
    c_lo = float(cw) - c_hi
    cw_f = float(cw)
    d, r = two_sum(xp, a, -b)
    h = barrier(xp, cw_f * d)
    d_hi, d_lo = split(xp, d, factor)
    err = (((c_hi * d_hi - h) + c_hi * d_lo) + c_lo * d_hi) + c_lo * d_lo  # TwoProduct's error
    low = err + (cw_f * r + c_rest * d)
    low = xp.where(xp.isfinite(low), low, xp.zeros_like(low))
    return xp.exp(h) * (1.0 + low)


# --------------------------------------------- double-length KL terms (see losskit/_double.py)


def kl_log_parts(xp: Any, t: Array, x: Array, log: Any = log_double) -> tuple[Array, Array, Array]:
    """Three arrays whose exact sum is ``t (log t - x)`` to about twice the working precision
    (``0`` where ``t = 0``), for probabilities ``t >= 0`` and log-probabilities ``x``.

    With ``log t = hi + lo`` (:func:`log_double`), ``hi - x`` is exact (TwoSum; Sterbenz near
    equality), and ``t (hi - x)`` is split exactly by TwoProduct: summing the parts of a row with
    :func:`accurate_sum` keeps the divergence of two nearly equal distributions even when ``x`` is
    within rounding of ``log t``, where ``t * (log(t) - x)`` would keep no correct digit. ``x = -inf``
    under ``t > 0`` gives ``inf``; NaN propagates.
    """
    zero = xp.zeros_like(t)
    positive = t > 0
    safe_t = xp.where(positive, t, xp.ones_like(t))
    l_hi, l_lo = log(xp, safe_t)  # log_double, or log_table (absolute error eps/128)
    d_hi, d_lo = two_sum(xp, l_hi, -x)
    d_lo = xp.where(xp.isfinite(d_lo), d_lo, zero)  # x = -inf: d = inf
    d_hi, d_lo = fast_two_sum(xp, d_hi, d_lo + l_lo)
    first, second, third = product_parts(xp, xp.where(positive, t, zero), d_hi, d_lo)
    nan = xp.isnan(t) | xp.isnan(x)
    return xp.where(nan, t + x, first), second, third


def kl_log_target_parts(xp: Any, y: Array, x: Array, log: Any = log_double
                        ) -> tuple[Array, Array, Array]:
    """Three arrays whose exact sum is ``exp(y) (y - x)`` to about twice the working precision
    (``0`` where ``exp(y) = 0``), for log-probabilities ``y`` (target) and ``x`` (prediction).

    ``exp(y)`` in double length (:func:`exp_double`), ``y - x`` exact (TwoSum) and their product
    split exactly (TwoProduct), so that a row whose terms cancel (``sum_j e^y_j (y_j - x_j)`` far
    below ``sum_j e^y_j |y_j - x_j|``) keeps its digits when summed with :func:`accurate_sum`.
    ``x = -inf`` under ``y > -inf`` gives ``inf``; NaN propagates.
    """
    zero = xp.zeros_like(y)
    e_hi, e_lo = exp_double(xp, y, log=log)  # log_table: relative error eps/128
    d_hi, d_lo = two_sum(xp, y, -x)
    d_lo = xp.where(xp.isfinite(d_lo), d_lo, zero)
    p, pe = two_product(xp, e_hi, d_hi)
    live = e_hi > 0
    finite = xp.isfinite(p) & xp.isfinite(pe)
    first = xp.where(live, p, zero)
    second = xp.where(live & finite, pe, zero)
    third = xp.where(live & finite, e_hi * d_lo + e_lo * d_hi, zero)
    nan = xp.isnan(y) | xp.isnan(x)
    return xp.where(nan, y + x, first), second, third

# ----------------------------------------------------------------- masks (``where``) and smoothing
# Shared by the cross-entropies and the classification losses that take Optax's ``where``.


def masked_mean(xp: Any, terms: Array, g: Array | None, where: Array) -> tuple[Array, Any]:
    """Mean of the terms that ``where`` keeps, and its gradient (0 for the others); a row with
    nothing kept gives 0."""
    count = xp.sum(xp.astype(where, terms.dtype), axis=-1, keepdims=True)
    count = xp.where(count > 0, count, xp.ones_like(count))
    zero = xp.zeros_like(terms)
    value = xp.sum(xp.where(where, terms, zero), axis=-1) / count[..., 0]
    return value, (None if g is None else xp.where(where, g, zero) / count)


def smooth_labels(t: Array, label_smoothing: float) -> Array:
    """Keras's label smoothing over the last axis: ``t (1 - ls) + ls / K`` (``t`` itself for 0)."""
    if not label_smoothing:
        return t
    return t * (1.0 - label_smoothing) + label_smoothing / t.shape[-1]


def log_ratio_plus_one(xp: Any, r: Array, p: Array) -> Array:
    """``log((r + p) / p) = log1p(r / p)``, switching to ``log(r) - log(p)`` where r/p overflows."""
    ratio = r / p
    huge = (ratio == float("inf")) & (p > 0)
    return xp.where(huge, xp.log(r) - xp.log(xp.where(huge, p, xp.ones_like(p))), log1p(xp, ratio))


def zero_excluded(xp: Any, value: Array, g: Any, where: Array, kept_any: Array) -> tuple[Array, Any]:
    """Value 0 for samples ``where`` keeps no class of, gradient 0 outside ``where``."""
    value = xp.where(kept_any[..., 0], value, xp.zeros_like(value))
    return value, (None if g is None else xp.where(where & kept_any, g, xp.zeros_like(g)))


def restrict_to_kept(xp: Any, y_true: Array, y_pred: Array, where: Array, from_logits: bool,
                     label_smoothing: float) -> tuple[Array, Array, Array]:
    """Soft targets and predictions restricted to the classes ``where`` keeps.

    The other classes leave the softmax (logit -inf) or the renormalisation (probability 0) and
    their targets become 0; a row with nothing kept is computed on harmless values (logits 0,
    probabilities 1) and zeroed by the caller. Returns ``(targets, predictions, row has a kept
    class)``.
    """
    count = xp.sum(xp.astype(where, y_pred.dtype), axis=-1, keepdims=True)
    kept_any = count > 0
    zero = xp.zeros_like(y_pred)
    t = y_true
    if label_smoothing:
        safe = xp.where(kept_any, count, xp.ones_like(count))
        t = t * (1.0 - label_smoothing) + label_smoothing / safe
    t = xp.where(where, t, zero)
    outside = zero - float("inf") if from_logits else zero
    pred = xp.where(where, y_pred, outside)
    pred = xp.where(kept_any, pred, zero if from_logits else zero + 1.0)
    return t, pred, kept_any


def check_label_kept(xp: Any, y_true: Array, k: Array, where: Array,
                     ignore_class: int | None) -> None:
    """On concrete arrays: the label's class must be among the kept classes of its row."""
    if not (_array.is_concrete(where) and _array.is_concrete(k)):
        return
    kept_any = xp.any(where, axis=-1)
    label_kept = _array.take_last(xp, where, k)[..., 0]
    bad = kept_any & ~label_kept
    if ignore_class is not None:
        bad = bad & (y_true != ignore_class)
    if _array.to_bool(xp.any(bad)):
        count = int(xp.sum(xp.astype(bad, xp.int32)))
        raise ValueError(f"sparse_categorical_crossentropy: where excludes the label's own class in "
                         f"{count} sample(s) that keep other classes; the restricted softmax would "
                         f"give the label probability 0 (loss inf). Keep the label's class, or "
                         f"exclude the whole sample (where all False, or sample_weight 0)")
