"""Divergences: Kullback-Leibler (on probabilities and on log-probabilities), generalized KL,
Jensen-Shannon and total variation."""

from __future__ import annotations

import math
from typing import Any

from .. import _array
from .._double import log_double, log_table, two_sum
from .._numerics import (
    accurate_sum,
    kl_log_parts,
    kl_log_target_parts,
    kl_parts,
    log1p,
    xmul,
)
from ._core import NONNEGATIVE, UNIT, Interval, LossDef, Option, check_bool
from ._registry import Alias

Array = Any


def _kl(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool) -> tuple[Array, Any]:
    # value: sum_j t_j log(t_j / p_j), each term split by kl_parts where it cancels against the
    #        others and the whole row summed with compensation, so two near-equal distributions
    #        keep every digit of their tiny divergence; terms with t_j = 0 are exactly 0. Inputs
    #        promoted from float32 or narrower have 29 spare bits: see _kl_terms_widened.
    # gradient: -t_j / p_j (0 where t_j = 0)
    t, p = y_true, y_pred
    if widened:
        value = xp.sum(_kl_terms_widened(xp, t, p), axis=-1)
    else:
        first, second = kl_parts(xp, t, p)
        value = accurate_sum(xp, xp.concat([first, second], axis=-1))
    if not grad:
        return value, None
    return value, xp.where(t != 0, -t / p, xp.zeros_like(t))


def _kl_terms_widened(xp: Any, t: Array, p: Array) -> Array:
    """``t log(t/p)`` per element for float32-or-narrower inputs computed in float64.

    Near equality ``log(t/p) = log1p((t - p)/p)`` with ``t - p`` exact, so each term is right to a
    float64 rounding; summing them then cancels by at most ``1/|t/p - 1| <= 2**24`` (two distinct
    float32 numbers), which leaves the float32 result within a fraction of an ulp. Farther apart,
    ``log(t/p)`` is exact enough and keeps tiny ratios that ``log1p(-1 + tiny)`` would lose.
    """
    zero = xp.zeros_like(t)
    safe_p = xp.where(p > 0, p, xp.ones_like(p))
    ratio = t / safe_p
    near = xp.abs(ratio - 1.0) <= 0.5
    log_ratio = xp.where(near, log1p(xp, (t - p) / safe_p), xp.log(xp.where(near, 1.0, ratio)))
    terms = xp.where(t == 0, zero, t * log_ratio)
    return xp.where((p == 0) & (t > 0), float("inf") + zero, terms)


KL_DIVERGENCE = LossDef(
    name="kl_divergence", class_name="KLDivergence", kernel=_kl, precision_aware=True,
    targets="distribution",
    aliases=("kld", "KLD", "kullback_leibler_divergence"),
    domain=lambda opts: {"y_true": UNIT, "y_pred": UNIT},
    doc=r"""Kullback-Leibler divergence of ``y_pred`` from ``y_true``, summed over the last axis.

    .. math:: \ell = \sum_j t_j \log\frac{t_j}{p_j},
              \qquad \frac{\partial \ell}{\partial p_j} = -\frac{t_j}{p_j}

    with :math:`0 \log 0 = 0` in the value and a zero gradient where :math:`t_j = 0`; :math:`p_j = 0 <
    t_j` gives ``inf`` (gradient ``-inf``). Both arguments are probabilities in [0, 1].

    Differences from Keras: no clipping of either argument to [1e-7, 1] (Keras's clip adds
    ``1e-7 log(1e-7 / p)`` for every zero target), and near-equal distributions keep their tiny
    divergence to the last bits instead of cancelling. PyTorch's ``kl_div`` and Optax's ``kl_divergence`` take
    log-probability predictions: that form is :func:`kl_div` (``kl_div(t, log(q)) ==
    kl_divergence(t, q)``).

    Shapes as for :func:`mean_squared_error`.

    Example (by hand: 1 * log(1 / 0.5) = log 2 = 0.693147...):

    >>> import losskit
    >>> round(float(losskit.kl_divergence([[1.0, 0.0]], [[0.5, 0.5]])[0]), 6)
    0.693147
    """)


# ------------------------------------------------------------------------------------------ helpers


def _two_sum(xp: Any, a: Array, b: Array) -> tuple[Array, Array]:
    """:func:`losskit._double.two_sum` with ``e = 0`` where ``s`` is not finite."""
    s, e = two_sum(xp, a, b)
    return s, xp.where(xp.isfinite(e), e, xp.zeros_like(e))


NONPOSITIVE = Interval(-math.inf, 0.0)
"""Log-probabilities: [-inf, 0]."""


# ---------------------------------------------------------------------- KL on log-probabilities


def _kl_div(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool,
            log_target: bool) -> tuple[Array, Any]:
    # value: sum_j t_j (log t_j - x_j), x = log q (PyTorch's kl_div); 0 where t_j = 0 (even for
    #        x_j = -inf); the row summed with compensation.
    #   probabilities: log t_j is rounded before x_j is subtracted, which near equality (x_j within
    #        rounding of log t_j) leaves no correct digit; so log t_j is taken in double length and
    #        t_j (log t_j - x_j) split exactly (kl_log_parts).
    #   log_target: t_j = exp(y_j), y_j - x_j exact (TwoSum); the terms of a row can still cancel
    #        (sum e^y (y - x) far below sum e^y |y - x|), where the rounding of exp(y_j) would show,
    #        so exp(y_j) is taken in double length and the product split exactly
    #        (kl_log_target_parts).
    #   Inputs promoted from float32 or narrower have 29 spare bits and need only plain products.
    # gradient: -t_j
    x = y_pred
    zero = xp.zeros_like(x)
    if log_target and widened:
        t = xp.exp(y_true)
        terms = xmul(xp, t, y_true - x)
    elif log_target:
        t = xp.exp(y_true)
        if _numpy(x):
            return _kl_div_tiered(xp, y_true, x, t, grad, kl_log_target_parts,
                                  t * xp.abs(y_true - x))
        terms = xp.concat(kl_log_target_parts(xp, y_true, x), axis=-1)
    elif widened:
        t = y_true
        log_t = xp.log(xp.where(t > 0, t, xp.ones_like(t)))
        terms = xp.where(t == 0, zero, t * (log_t - x))
    else:
        t = y_true
        if _numpy(x):
            return _kl_div_tiered(xp, t, x, t, grad, kl_log_parts, t)
        terms = xp.concat(kl_log_parts(xp, t, x), axis=-1)
    nan = xp.isnan(x) | xp.isnan(t)
    if terms.shape[-1] != x.shape[-1]:
        nan = xp.concat([nan, nan, nan], axis=-1)
    terms = xp.where(nan, xp.full_like(terms, float("nan")), terms)
    value = accurate_sum(xp, terms)
    if not grad:
        return value, None
    return value, -t + zero


def _numpy(x: Array) -> bool:
    return _array.backend_name(x) == "numpy"


def _kl_div_tiered(xp: Any, y: Array, x: Array, t: Array, grad: bool, parts_fn: Any,
                   weight: Array) -> tuple[Array, Any]:
    """:func:`_kl_div` on NumPy in two tiers, selected per row: the terms from the table-driven
    pairs (``log_table``: absolute error eps/128 of ``log t``, relative of ``exp(y)``), whose
    error in a row is at most ``sum_j w_j eps / 128`` (``w = t``, or ``t |y - x|`` for log
    targets); rows where that could exceed 8 ulp (``sum_j w_j / 512 > |value|``: two nearly equal
    distributions) are recomputed with the ``2**-100`` pairs. (On PyTorch and JAX ``where`` would
    run both tiers everywhere: the second alone is used there.)"""
    def value_of(yy: Array, xx: Array, log: Any) -> Array:
        terms = xp.concat(parts_fn(xp, yy, xx, log=log), axis=-1)
        bad = xp.isnan(xx) | xp.isnan(yy)
        bad = xp.concat([bad, bad, bad], axis=-1)
        return accurate_sum(xp, xp.where(bad, xp.full_like(terms, float("nan")), terms))

    value = value_of(y, x, log_table)
    bound = xp.sum(xp.where(xp.isnan(weight), xp.zeros_like(weight), weight), axis=-1) / 512
    value = _refine_rows(xp, bound > xp.abs(value), value,
                         lambda yy, xx: value_of(yy, xx, log_double), y, x)
    return value, (-t + xp.zeros_like(x) if grad else None)


def _refine_rows(xp: Any, hard: Array, value: Array, fn: Any, *arrays: Array) -> Array:
    """``value`` with the rows where ``hard`` holds replaced by ``fn(*those rows)`` (NumPy)."""
    if not _array.to_bool(xp.any(hard)):
        return value
    out = xp.asarray(value, copy=True)
    out[hard] = fn(*[a[hard] for a in arrays])
    return out


KL_DIV = LossDef(
    name="kl_div", class_name="KLDiv", kernel=_kl_div, targets="distribution", precision_aware=True,
    aliases=("KLDivLoss", Alias("kl_div_loss"), Alias("kl_divergence_with_log_targets", log_target=True),
             Alias("optax.kl_divergence", note="kl_divergence is Keras's (probabilities); Optax's takes "
                                              "log-predictions, as kl_div does")),
    options=(Option("log_target", False, check_bool,
                    "whether ``y_true`` holds log-probabilities (True) or probabilities (False)"),),
    domain=lambda opts: {"y_true": NONPOSITIVE if opts["log_target"] else UNIT,
                         "y_pred": NONPOSITIVE},
    doc=r"""Kullback-Leibler divergence with log-probability predictions (PyTorch's ``kl_div``), summed
    over the last axis.

    .. math:: \ell = \sum_j t_j\,(\log t_j - x_j),
              \qquad \frac{\partial \ell}{\partial x_j} = -t_j

    where ``y_pred`` holds :math:`x = \log q` (e.g. a ``log_softmax`` output, so :math:`x \le 0`) and
    ``y_true`` the probabilities :math:`t`, or :math:`\log t` with ``log_target=True`` (then
    :math:`t = e^{y}`). Terms with :math:`t_j = 0` are exactly 0, also where :math:`x_j = -\infty`
    (PyTorch gives NaN there); :math:`x_j = -\infty < \log t_j` gives ``inf``.

    This is :func:`kl_divergence` with the prediction in log space: ``kl_div(t, log(q)) ==
    kl_divergence(t, q)`` for probabilities ``q`` (Keras-style). Exact also for nearly equal
    distributions: ``log t`` (or, with ``log_target``, ``exp(y)``) is taken in double length and each
    term split exactly, so ``x`` within rounding of ``log t`` keeps the tiny divergence, and so does
    a row whose terms cancel (PyTorch's ``xlogy(t, t) - t x`` and Optax's ``t (log t - x)`` keep no
    correct digit there; float32 inputs are computed in float64, where plain products suffice).
    Where the computation itself runs in float32 (JAX without ``jax_enable_x64``), double length is
    48 bits, which covers near equality but not a row whose terms cancel by more than about
    :math:`10^3` (25 ulp measured at a cancellation of :math:`1.4 \cdot 10^4`).

    Reductions: PyTorch's ``KLDivLoss(reduction="mean")`` averages over *all elements* (divides by
    batch times classes), which is not the KL divergence; its ``"batchmean"`` divides the total by the
    batch size. ``KLDiv(reduction="batchmean")`` gives the latter (the core's ``"batchmean"``: sum over
    everything divided by the size of ``y_pred``'s first axis), and the default
    ``"sum_over_batch_size"`` equals it for 2-D inputs.

    Shapes: ``y_true`` and ``y_pred`` ``(..., n)``; the result ``(...)``.

    Peers: PyTorch ``KLDivLoss(log_target=...)`` / ``F.kl_div(input, target)`` (elementwise with
    ``reduction="none"``; its row sums are this loss); Optax ``kl_divergence(log_predictions,
    targets)`` and ``kl_divergence_with_log_targets(log_predictions, log_targets)`` (per row, as
    here).

    Example (by hand: 1 * (log 1 - log 0.5) = log 2 = 0.693147...):

    >>> import math, losskit
    >>> round(float(losskit.kl_div([[1.0, 0.0]], [[math.log(0.5), math.log(0.5)]])[0]), 6)
    0.693147
    """)


# ------------------------------------------------------------------------------- generalized KL


def _generalized_kl(xp: Any, y_true: Array, y_pred: Array, *, grad: bool,
                    log_predictions: bool) -> tuple[Array, Any]:
    if log_predictions:
        return _generalized_kl_log(xp, y_true, y_pred, grad=grad)
    # value: sum_j t_j log(t_j / p_j) - t_j + p_j, every term >= 0. Near equality kl_parts splits
    #        t log(t/p) into the excess t log(t/p) - (t - p) (first) and t - p (second, exact and
    #        non-zero unless t = p, where the excess is 0 too): the excess is then the whole term.
    #        Farther apart t log(t/p) + (p - t), which cancels by at most a factor ~4 (ratio 2).
    #        The row is a plain sum of non-negative terms.
    # gradient: 1 - t_j / p_j = (p_j - t_j) / p_j; 1 where t_j = 0; -inf where p_j = 0 < t_j
    # at p = +inf (t finite) the term is +inf and the gradient 1 (where inf - inf, inf/inf give NaN)
    t, p = y_true, y_pred
    at_inf = (p == math.inf) & xp.isfinite(t)
    first, second = kl_parts(xp, t, p)
    terms = first + xp.where(second != 0, xp.zeros_like(p), p - t)
    terms = xp.where(at_inf, p, terms)
    value = xp.sum(terms, axis=-1)
    if not grad:
        return value, None
    safe_p = xp.where(p > 0, p, xp.ones_like(p))
    g = xp.where((t == 0) | at_inf, xp.ones_like(p), (p - t) / safe_p)
    g = xp.where((p == 0) & (t > 0), -float("inf") + xp.zeros_like(p), g)
    return value, xp.where(xp.isnan(p) | xp.isnan(t), p + t, g)


# phi(d) = exp(-d) - 1 + d = d^2 sum_k (-d)^k / (k + 2)!, k = 0..29: for |d| <= 2 the first omitted
# term is below 2**31 / 31! < 2**-80 of d^2/2; the alternating sum cancels by at most a factor ~2.
_PHI_SERIES = tuple(1.0 / math.factorial(k + 2) for k in range(30))
_PHI_NEAR = 2.0


def _generalized_kl_log(xp: Any, t: Array, x: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: sum_j t_j (log t_j - x_j) - t_j + exp(x_j) = sum_j t_j phi(d_j), d = log t - x,
    #        phi(d) = exp(-d) - 1 + d >= 0 (exp(-d) = q/t). d in double length (log_double and an
    #        exact subtraction), then rounded once: near equality phi(d) ~ d^2/2 keeps its relative
    #        accuracy however small d is. |d| <= 2: the series; d > 2: expm1(-d) + d (cancels by at
    #        most 2.5); d < -2 (q > 7 t): (q - t) + t d directly (q dominates; no overflow of q/t).
    #        t = 0: the term is q = exp(x).
    # gradient: q - t = t expm1(-d) (no cancellation near equality); q where t = 0 or d < -2
    #        On NumPy d is first taken with log_table (absolute error eps/128): its relative error
    #        eps/(128 |d|) is within eps/8 for |d| >= 1/16, where phi's relative error is at most
    #        twice d's; the elements with |d| < 1/16 are recomputed with log_double (selected; on
    #        PyTorch and JAX log_double everywhere).
    zero = xp.zeros_like(x)
    positive = t > 0
    if _numpy(x):
        d = _log_gap(xp, t, x, log_table)
        d = _refine_rows(xp, xp.abs(d) < 0.0625, d, lambda tt, xx: _log_gap(xp, tt, xx, log_double),
                         t, x)
    else:
        d = _log_gap(xp, t, x, log_double)
    near = xp.abs(d) <= _PHI_NEAR
    dn = xp.where(near, d, zero)
    series = zero + _PHI_SERIES[-1]
    for c in reversed(_PHI_SERIES[:-1]):
        series = series * (-dn) + c
    q = xp.exp(x)
    big = d > _PHI_NEAR
    phi = xp.where(near, dn * dn * series, xp.expm1(-xp.where(big, d, zero)) + d)
    terms = xp.where(d < -_PHI_NEAR, (q - t) + t * d, t * phi)
    terms = xp.where(positive, terms, q)
    nan = xp.isnan(t) | xp.isnan(x)
    terms = xp.where(nan, t + x, terms)
    value = xp.sum(terms, axis=-1)
    if not grad:
        return value, None
    g = xp.where(positive & (d >= -_PHI_NEAR), t * xp.expm1(-xp.where(d >= -_PHI_NEAR, d, zero)),
                 q - t)
    g = xp.where(positive, g, q)
    return value, xp.where(nan, t + x, g)


def _log_gap(xp: Any, t: Array, x: Array, log: Any) -> Array:
    """``log t - x`` from a pair for ``log t`` and an exact subtraction, rounded once (``log 1``
    where ``t = 0``)."""
    l_hi, l_lo = log(xp, xp.where(t > 0, t, xp.ones_like(t)))
    d_hi, d_lo = _two_sum(xp, l_hi, -x)
    d = d_hi + (d_lo + l_lo)
    return xp.where(xp.isfinite(d_hi), d, d_hi)


GENERALIZED_KL_DIVERGENCE = LossDef(
    name="generalized_kl_divergence", class_name="GeneralizedKLDivergence",
    kernel=_generalized_kl, targets="distribution", aliases=(
        "generalized_kl", Alias("convex_kl_divergence", log_predictions=True),
        Alias("optax.generalized_kl_divergence", log_predictions=True)),
    options=(Option("log_predictions", False, check_bool,
                    "whether ``y_pred`` holds log p (Optax's convention) instead of p"),),
    domain=lambda opts: ({"y_true": NONNEGATIVE} if opts["log_predictions"]
                         else {"y_true": NONNEGATIVE, "y_pred": NONNEGATIVE}),
    doc=r"""Generalized (unnormalised) Kullback-Leibler divergence, summed over the last axis.

    .. math:: \ell = \sum_j \Bigl(t_j \log\frac{t_j}{p_j} - t_j + p_j\Bigr),
              \qquad \frac{\partial \ell}{\partial p_j} = 1 - \frac{t_j}{p_j}

    the Bregman divergence of :math:`x \log x - x`, for non-negative measures that need not sum to 1
    (for two distributions it equals :func:`kl_divergence`). Every term is non-negative; near equality
    it is computed as the excess ``t log(t/p) - (t - p)`` without cancellation, so nearly equal inputs
    keep their tiny divergence. :math:`0 \log 0 = 0`; :math:`p_j = 0 < t_j` gives ``inf``.

    With ``log_predictions=True`` ``y_pred`` holds :math:`x = \log p` (Optax's convention) and the
    gradient is with respect to it: :math:`\partial \ell / \partial x_j = p_j - t_j`. Each term is
    then :math:`t_j \varphi(d_j)` with :math:`d = \log t - x` taken in double length and
    :math:`\varphi(d) = e^{-d} - 1 + d \ge 0`, so ``x`` within rounding of ``log t`` still gives the
    exact (tiny) divergence.

    Shapes: ``y_true`` and ``y_pred`` ``(..., n)``, ``y_true`` :math:`\ge 0` (and ``y_pred`` too
    unless ``log_predictions``); the result ``(...)``.

    Peers: Optax ``generalized_kl_divergence(log_predictions, targets)`` (and its deprecated
    ``convex_kl_divergence``) is ``log_predictions=True``; by default ``y_pred`` is :math:`p` itself,
    like Keras's ``kl_divergence``. Optax computes the KL sum and ``sum(exp(log p) - t)`` separately
    and adds them, which cancels for nearly equal inputs. PyTorch and Keras have no generalized KL.

    Example (by hand: 2 log(2/1) - 2 + 1 = 2 log 2 - 1 = 0.386294...):

    >>> import losskit
    >>> round(float(losskit.generalized_kl_divergence([[2.0]], [[1.0]])[0]), 6)
    0.386294
    >>> round(float(losskit.generalized_kl_divergence([[2.0]], [[0.0]], log_predictions=True)[0]), 6)
    0.386294
    """)


# ------------------------------------------------------------------------------- Jensen-Shannon

# Coefficients 1/(k(2k-1)), k = 2..33, of G(r^2) = 1 + r^2/6 + r^4/15 + ..., where the JS term is
# (t - p)^2 / (4 (t + p)) * G(r^2), r = (t - p)/(t + p). For |r| <= 0.6 the first omitted term is below
# 0.36^33 / 2145 < 2**-60 relative, so the truncated series is exact in float64.
_JS_SERIES = tuple(1.0 / (k * (2 * k - 1)) for k in range(2, 34))
_JS_NEAR = 0.6


def _js(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: sum_j 1/2 [t_j log(2 t_j / s_j) + p_j log(2 p_j / s_j)], s = t + p (natural log).
    #   With r = (t - p)/s the term is (s/2) g(r), g(r) = sum_k r^(2k) / (2k(2k-1)) >= 0: near
    #   equality (|r| <= 0.6) the series (t - p)^2/(4s) G(r^2), with t - p and t + p exact as two
    #   floats each (TwoSum), so there is no cancellation at all; farther apart the two logarithms
    #   directly (they cancel by at most a factor 3).
    # gradient: 1/2 log(2 p_j / s_j) = 1/2 log1p(-r); 1/2 log 2 where t_j = p_j = 0; -inf where p_j = 0
    t, p = y_true, y_pred
    zero, one = xp.zeros_like(p), xp.ones_like(p)
    d_hi, d_lo = _two_sum(xp, t, -p)
    s_hi, s_lo = _two_sum(xp, t, p)
    positive = s_hi > 0
    safe_s = xp.where(positive, s_hi, one)
    safe_d = xp.where(d_hi != 0, d_hi, one)
    s_corr = 1.0 - s_lo / safe_s  # 1/s = (1/s_hi) (1 - s_lo/s_hi), to second order
    r = xp.where(positive, (d_hi / safe_s) * (s_corr + d_lo / safe_d), zero)
    near = xp.abs(r) <= _JS_NEAR
    r2 = xp.where(near, r * r, zero)
    series = xp.zeros_like(p) + _JS_SERIES[-1]
    for c in reversed(_JS_SERIES[:-1]):
        series = series * r2 + c
    series = 1.0 + series * r2
    d2_over_s = (d_hi * d_hi / safe_s) * (s_corr + 2.0 * d_lo / safe_d)
    near_term = xp.where(d_hi != 0, 0.25 * d2_over_s * series, zero)
    ratio_t = (2.0 * t / safe_s) * s_corr
    ratio_p = (2.0 * p / safe_s) * s_corr
    far_term = 0.5 * (xmul(xp, t, xp.log(xp.where(near, one, ratio_t)))
                      + xmul(xp, p, xp.log(xp.where(near, one, ratio_p))))
    terms = xp.where(positive, xp.where(near, near_term, far_term), zero)
    terms = xp.where(xp.isnan(s_hi), s_hi, terms)
    value = xp.sum(terms, axis=-1)
    if not grad:
        return value, None
    g_near = 0.5 * log1p(xp, -xp.where(near, r, zero))
    g_far = 0.5 * xp.log(xp.where(near, one, ratio_p))
    g = xp.where(positive, xp.where(near, g_near, g_far), 0.5 * math.log(2.0) + zero)
    return value, xp.where(xp.isnan(s_hi), s_hi, g)


JENSEN_SHANNON_DIVERGENCE = LossDef(
    name="jensen_shannon_divergence", class_name="JensenShannonDivergence", kernel=_js,
    targets="distribution", aliases=("jsd", "js_divergence", "jensen_shannon"),
    domain=lambda opts: {"y_true": UNIT, "y_pred": UNIT},
    doc=r"""Jensen-Shannon divergence between ``y_true`` and ``y_pred``, in nats, over the last axis.

    .. math:: \ell = \tfrac12 \mathrm{KL}(t \,\|\, m) + \tfrac12 \mathrm{KL}(p \,\|\, m)
              = \sum_j \tfrac12\Bigl(t_j \log\frac{2 t_j}{t_j + p_j} + p_j \log\frac{2 p_j}{t_j + p_j}\Bigr),
              \qquad \frac{\partial \ell}{\partial p_j} = \tfrac12 \log\frac{2 p_j}{t_j + p_j}

    with :math:`m = (t + p)/2` and the natural logarithm: for two distributions
    :math:`0 \le \ell \le \log 2`; divide by :math:`\log 2` for bits. Symmetric in its arguments,
    finite for disjoint supports (:math:`0 \log 0 = 0`); the gradient is :math:`-\infty` where
    :math:`p_j = 0 < t_j`. Each term is written as :math:`\frac{(t - p)^2}{4(t + p)}(1 + r^2/6 + \ldots)`
    near equality (no cancellation), so nearly equal distributions keep their tiny divergence.

    Shapes: ``y_true`` and ``y_pred`` ``(..., n)`` probabilities; the result ``(...)``.

    Peers: no Keras, PyTorch or Optax function (torchmetrics ``JensenShannonDivergence`` and Liger's
    ``LigerJSD`` work on log-probabilities; with ``beta=0.5`` Liger's is this divergence).

    Example (by hand: disjoint supports, 1/2 (1 log 2) + 1/2 (1 log 2) = log 2 = 0.693147...):

    >>> import losskit
    >>> round(float(losskit.jensen_shannon_divergence([[1.0, 0.0]], [[0.0, 1.0]])[0]), 6)
    0.693147
    """)


# ------------------------------------------------------------------------------ total variation


def _tv(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: 1/2 sum_j |t_j - p_j|   (non-negative terms, one rounding each)
    # gradient: 1/2 sign(p_j - t_j); 0 where p_j = t_j (average of the one-sided slopes)
    diff = y_pred - y_true
    value = 0.5 * xp.sum(xp.abs(diff), axis=-1)
    if not grad:
        return value, None
    return value, 0.5 * xp.sign(diff)


TOTAL_VARIATION_DISTANCE = LossDef(
    name="total_variation_distance", class_name="TotalVariationDistance", kernel=_tv,
    targets="distribution", aliases=("tvd", "total_variation"),
    domain=lambda opts: {"y_true": UNIT, "y_pred": UNIT},
    doc=r"""Total variation distance between ``y_true`` and ``y_pred``, over the last axis.

    .. math:: \ell = \tfrac12 \sum_j |t_j - p_j|,
              \qquad \frac{\partial \ell}{\partial p_j} = \tfrac12\,\mathrm{sign}(p_j - t_j)

    and 0 where :math:`p_j = t_j` (the average of the one-sided slopes). For two distributions
    :math:`0 \le \ell \le 1`.

    Shapes: ``y_true`` and ``y_pred`` ``(..., n)`` probabilities; the result ``(...)``.

    Peers: no Keras, PyTorch or Optax function (Liger's ``LigerTVDLoss`` is the same distance). It is
    half of the per-row sum of :func:`mean_absolute_error`'s terms.

    Example (by hand: 1/2 (|0.5 - 0.25| + |0.5 - 0.75|) = 0.25):

    >>> import losskit
    >>> float(losskit.total_variation_distance([[0.5, 0.5]], [[0.25, 0.75]])[0])
    0.25
    """)
