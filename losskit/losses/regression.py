"""Regression losses: mean squared and absolute error, and the catalog's regression losses (Huber,
smooth L1, log-cosh, MAPE, MSLE, pinball, cosine similarity, Poisson, Gamma and Tweedie deviance,
Gaussian NLL)."""

from __future__ import annotations

import math
from typing import Any

from .. import _array
from .._numerics import accurate_sum, barrier, log1p
from ._core import (
    AXIS,
    Interval,
    LossDef,
    Option,
    check_fraction,
    check_nonnegative,
    check_positive,
)

Array = Any


def _mse(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i (p_i - t_i)^2        gradient: 2 (p_i - t_i) / n
    diff = y_pred - y_true
    value = xp.mean(diff * diff, axis=-1)
    return value, (2.0 / y_pred.shape[-1]) * diff if grad else None


def _mae(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i |p_i - t_i|          gradient: sign(p_i - t_i) / n, and 0 at zero error
    diff = y_pred - y_true
    value = xp.mean(xp.abs(diff), axis=-1)
    return value, xp.sign(diff) / y_pred.shape[-1] if grad else None


MEAN_SQUARED_ERROR = LossDef(
    name="mean_squared_error", class_name="MeanSquaredError", kernel=_mse,
    aliases=("mse", "MSE"),
    doc=r"""Mean squared error over the last axis.

    .. math:: \ell = \frac{1}{n}\sum_{i=1}^{n} (\hat y_i - y_i)^2,
              \qquad \frac{\partial \ell}{\partial \hat y_i} = \frac{2(\hat y_i - y_i)}{n}

    Shapes: ``y_true`` and ``y_pred`` ``(..., n)`` (ranks may differ by one trailing axis of size 1,
    as in Keras); returns ``(...)``.

    Unlike Keras, float64 input is computed in float64 (Keras computes in float32, so
    ``mse(1e30, -1e30)`` overflows there); float32 input is accumulated in float64 and rounded once.

    Example (by hand: ((1-0)^2 + (1-1)^2) / 2 = 0.5):

    >>> import losskit
    >>> float(losskit.mean_squared_error([[0.0, 1.0]], [[1.0, 1.0]])[0])
    0.5
    """)

MEAN_ABSOLUTE_ERROR = LossDef(
    name="mean_absolute_error", class_name="MeanAbsoluteError", kernel=_mae,
    aliases=("mae", "MAE"),
    doc=r"""Mean absolute error over the last axis.

    .. math:: \ell = \frac{1}{n}\sum_{i=1}^{n} |\hat y_i - y_i|,
              \qquad \frac{\partial \ell}{\partial \hat y_i} = \frac{\operatorname{sign}(\hat y_i - y_i)}{n}

    At zero error the subgradient is 0, as PyTorch autograd gives for ``torch.abs`` (and JAX for
    ``jnp.abs``). Shapes as for :func:`mean_squared_error`.

    Example (by hand: (|2-0| + |1-1|) / 2 = 1):

    >>> import losskit
    >>> float(losskit.mean_absolute_error([[0.0, 1.0]], [[2.0, 1.0]])[0])
    1.0
    """)


# =================================================================================== the catalog
# Issue 4: the regression losses of Keras 3, PyTorch, Optax and scikit-learn. Every kernel keeps its
# value and its gradient side by side, with the formula in the comments; ``n`` is the size of the
# reduced (last) axis. Exactness notes name the cancellation each branch avoids.

LOG2 = 0.6931471805599453  # log(2) rounded to float64
LOG_2PI = 1.8378770664093453  # log(2*pi) rounded to float64


def _const(x: Array, value: float) -> Array:
    return x * 0.0 + value


def _row_sum(xp: Any, *parts: Array) -> Array:
    """Sum over the last axis of all ``parts`` together, compensated (terms of both signs meet)."""
    return accurate_sum(xp, xp.concat(list(parts), axis=-1) if len(parts) > 1 else parts[0])


def _two_sum(xp: Any, a: Array, b: Array) -> tuple[Array, Array]:
    """``a + b = s + e`` exactly (Knuth's TwoSum)."""
    s = barrier(xp, a + b)
    bv = barrier(xp, s - a)
    return s, (a - (s - bv)) + (b - bv)


# ------------------------------------------------------------------------------------------ Huber


def _huber(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, delta: float
           ) -> tuple[Array, Any]:
    # value: mean_i h(d_i), d = p - t, h(d) = d^2/2 for |d| <= delta, else delta (|d| - delta/2)
    #        (|d| - delta/2 >= delta/2 there: no cancellation, unlike delta |d| - delta^2/2)
    # gradient: h'(d)/n = clip(d, -delta, delta)/n
    d = y_pred - y_true
    a = xp.abs(d)
    quad = a <= delta
    value = xp.mean(xp.where(quad, 0.5 * d * d, delta * (a - 0.5 * delta)), axis=-1)
    if not grad:
        return value, None
    return value, xp.where(quad, d, delta * xp.sign(d)) / y_pred.shape[-1]


HUBER = LossDef(
    name="huber", class_name="Huber", kernel=_huber,
    options=(Option("delta", 1.0, check_positive,
                    "the error size at which the loss turns from quadratic to linear (> 0)"),),
    aliases=("huber_loss", "HuberLoss"),
    doc=r"""Huber loss over the last axis: quadratic for small errors, linear for large ones.

    .. math:: \ell = \frac{1}{n}\sum_i h(\hat y_i - y_i),\quad
              h(d) = \begin{cases} d^2/2 & |d| \le \delta \\ \delta\,(|d| - \delta/2) & |d| > \delta
              \end{cases},\qquad
              \frac{\partial \ell}{\partial \hat y_i} = \frac{\operatorname{clip}(\hat y_i - y_i,
              -\delta, \delta)}{n}

    Shapes: ``y_true`` and ``y_pred`` ``(..., n)`` (ranks may differ by one trailing axis of size 1);
    returns ``(...)``.

    Peers: the same function as Keras ``huber``/``Huber``, PyTorch ``HuberLoss(delta)`` (elementwise,
    then reduced over everything; losskit's per-sample value is the mean over the last axis, as
    Keras's) and Optax ``huber_loss(delta)`` (elementwise, no mean). The linear branch is computed as
    ``delta * (|d| - delta/2)``; Keras's ``delta*|d| - delta^2/2`` and Optax's form lose the low bits
    when ``|d|`` is just above ``delta``. Keras computes in float32 by default; losskit computes
    float64 input in float64.

    Example (by hand, delta = 1: (0.5^2/2 + 1*(3 - 1/2)) / 2 = (0.125 + 2.5) / 2 = 1.3125):

    >>> import losskit
    >>> float(losskit.huber([[0.0, 0.0]], [[0.5, 3.0]])[0])
    1.3125
    """)


# -------------------------------------------------------------------------------------- smooth L1


def _smooth_l1(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, beta: float
               ) -> tuple[Array, Any]:
    # value: mean_i s(d_i), d = p - t, s(d) = d^2/(2 beta) for |d| < beta, else |d| - beta/2
    #        (d * (d/beta) / 2: d/beta <= 1 there, so a tiny beta does not underflow d^2 first)
    # gradient: s'(d)/n = d/beta for |d| < beta, else sign(d) (0 at d = 0 when beta = 0)
    d = y_pred - y_true
    a = xp.abs(d)
    quad = a < beta  # never true when beta = 0: the loss is then the mean absolute error
    b = beta if beta > 0 else 1.0
    value = xp.mean(xp.where(quad, 0.5 * d * (d / b), a - 0.5 * beta), axis=-1)
    if not grad:
        return value, None
    return value, xp.where(quad, d / b, xp.sign(d)) / y_pred.shape[-1]


SMOOTH_L1 = LossDef(
    name="smooth_l1", class_name="SmoothL1", kernel=_smooth_l1,
    options=(Option("beta", 1.0, check_nonnegative,
                    "the error size below which the loss is quadratic (>= 0; 0 gives the mean "
                    "absolute error)"),),
    aliases=("smooth_l1_loss", "SmoothL1Loss"),
    doc=r"""Smooth L1 loss (PyTorch's) over the last axis: Huber divided by ``beta``.

    .. math:: \ell = \frac{1}{n}\sum_i s(\hat y_i - y_i),\quad
              s(d) = \begin{cases} d^2/(2\beta) & |d| < \beta \\ |d| - \beta/2 & |d| \ge \beta
              \end{cases},\qquad
              \frac{\partial \ell}{\partial \hat y_i} = \frac{1}{n}\begin{cases} d/\beta & |d| <
              \beta \\ \operatorname{sign}(d) & |d| \ge \beta \end{cases}

    ``beta = 0`` gives the mean absolute error (gradient 0 at zero error, as PyTorch). For ``beta > 0``
    it equals ``huber(delta=beta) / beta``. Shapes as for :func:`huber`.

    Peers: PyTorch ``SmoothL1Loss(beta)`` / ``F.smooth_l1_loss`` (elementwise, then reduced over
    everything; losskit's per-sample value is the mean over the last axis). Keras and Optax have no
    smooth L1 (use :func:`huber`).

    Example (by hand, beta = 1: (0.5^2/2 + (3 - 0.5)) / 2 = (0.125 + 2.5) / 2 = 1.3125):

    >>> import losskit
    >>> float(losskit.smooth_l1([[0.0, 0.0]], [[0.5, 3.0]])[0])
    1.3125
    """)


# --------------------------------------------------------------------------------------- log-cosh


def _log_cosh(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i log(cosh(d_i)), d = p - t
    #   |d| <= 2: log1p(cosh d - 1) = log1p(2 sinh(d/2)^2): no cancellation near 0, where the value
    #             is d^2/2 and |d| + log1p(exp(-2|d|)) - log 2 would lose every digit;
    #   |d| >  2: |d| - log 2 + log1p(exp(-2|d|)): never overflows (|d| - log 2 >= 1.3, no cancellation)
    # gradient: tanh(d)/n
    d = y_pred - y_true
    a = xp.abs(d)
    small = a <= 2.0
    s = xp.sinh(0.5 * xp.where(small, d, xp.zeros_like(d)))
    near = log1p(xp, 2.0 * s * s)
    far = (a - LOG2) + log1p(xp, xp.exp(-2.0 * a))
    value = xp.mean(xp.where(small, near, far), axis=-1)
    if not grad:
        return value, None
    return value, xp.tanh(d) / y_pred.shape[-1]


LOG_COSH = LossDef(
    name="log_cosh", class_name="LogCosh", kernel=_log_cosh,
    aliases=("logcosh", "log_cosh_loss"),
    doc=r"""Logarithm of the hyperbolic cosine of the error, averaged over the last axis.

    .. math:: \ell = \frac{1}{n}\sum_i \log\cosh(\hat y_i - y_i),\qquad
              \frac{\partial \ell}{\partial \hat y_i} = \frac{\tanh(\hat y_i - y_i)}{n}

    About ``d^2/2`` for small errors and ``|d| - log 2`` for large ones. Computed as
    ``log1p(2 sinh(d/2)^2)`` for ``|d| <= 2`` and ``|d| - log 2 + log1p(exp(-2|d|))`` beyond, so it
    neither overflows nor cancels. Shapes as for :func:`huber`.

    Peers: Keras ``log_cosh``/``LogCosh`` computes ``d + softplus(-2d) - log 2`` and Optax
    ``log_cosh`` ``logaddexp(d, -d) - log 2`` (elementwise, no mean); both subtract ``log 2`` from a
    number close to it for small errors, so they lose the relative accuracy of values below about
    1e-8 (float64) or 1e-4 (float32): Keras returns 0 or a few ulps of log 2 for ``d = 1e-5`` in
    float32, where the value is 5e-11.

    Example (by hand: log(cosh(0)) = 0 and log(cosh(1)) = log((e + 1/e)/2) = 0.4337808304830271;
    their mean is 0.21689041524151356):

    >>> import losskit
    >>> round(float(losskit.log_cosh([[0.0, 0.0]], [[0.0, 1.0]])[0]), 12)
    0.216890415242
    """)


# ------------------------------------------------------------------- mean absolute percentage error


def _check_nonzero_targets(xp: Any, y_true: Array, y_pred: Array, **opts: Any) -> None:
    zero = y_true == 0
    if _array.to_bool(xp.any(zero)):
        raise ValueError("mean_absolute_percentage_error: y_true must be non-zero (the percentage "
                         "error of a zero target is undefined); "
                         f"{_array.describe_range(xp, y_true, zero, 'y_true')}. Keras divides by "
                         "max(|y_true|, 1e-7) instead, which turns a zero target into an error of "
                         "order 1e9 percent")


def _mape(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: 100 * mean_i |p_i - t_i| / |t_i|
    # gradient: 100 * sign(p_i - t_i) / (|t_i| n)
    d = y_pred - y_true
    a = xp.abs(y_true)
    value = 100.0 * xp.mean(xp.abs(d) / a, axis=-1)
    if not grad:
        return value, None
    return value, (100.0 / y_pred.shape[-1]) * (xp.sign(d) / a)


MEAN_ABSOLUTE_PERCENTAGE_ERROR = LossDef(
    name="mean_absolute_percentage_error", class_name="MeanAbsolutePercentageError", kernel=_mape,
    aliases=("mape", "MAPE"), check_values=_check_nonzero_targets,
    doc=r"""Mean absolute percentage error over the last axis, in percent (Keras's x100 convention).

    .. math:: \ell = \frac{100}{n}\sum_i \frac{|\hat y_i - y_i|}{|y_i|},\qquad
              \frac{\partial \ell}{\partial \hat y_i} =
              \frac{100\,\operatorname{sign}(\hat y_i - y_i)}{n\,|y_i|}

    The result is a percentage: a prediction 10% off gives 10, not 0.1. ``y_true`` must be non-zero:
    a zero target raises ``ValueError`` (where values are not concrete, under ``jax.jit``, it gives
    ``inf``, or NaN when the prediction is 0 too). The gradient is 0 at zero error. Shapes as for
    :func:`huber`.

    Peers: Keras ``mean_absolute_percentage_error``/``MeanAbsolutePercentageError`` ("mape") has the
    same x100 scale but divides by ``max(|y_true|, 1e-7)``, so a zero target silently contributes
    ``1e9 * |y_pred|`` percent, and targets below 1e-7 in magnitude are divided by 1e-7.
    scikit-learn ``mean_absolute_percentage_error`` returns a fraction (losskit's value / 100) and
    divides by ``max(|y_true|, eps(float64))``. PyTorch and Optax have no MAPE.

    Example (by hand: 100 * (|110 - 100|/100 + |45 - 50|/50) / 2 = 100 * (0.1 + 0.1) / 2 = 10):

    >>> import losskit
    >>> float(losskit.mean_absolute_percentage_error([[100.0, 50.0]], [[110.0, 45.0]])[0])
    10.0
    """)


# ---------------------------------------------------------------- mean squared logarithmic error


def _msle(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i L_i^2, L = log1p(p) - log1p(t) = log((1 + p)/(1 + t))
    #   ratio in [1/2, 2]: L = log1p(u), u = (p - t)/(1 + t): the difference of two close logarithms
    #     would cancel; p - t and 1 + t round once each, and log1p keeps u's relative accuracy;
    #   farther apart: L = log(r), r = (1 + p)/(1 + t) (|L| >= log 2, so r's rounding costs < 1 ulp),
    #     or log1p(p) - log1p(t) where r over- or underflows (|L| > 690: no cancellation).
    # gradient: 2 L_i / ((1 + p_i) n)
    one = xp.ones_like(y_pred)
    pp, tp = 1.0 + y_pred, 1.0 + y_true
    u = (y_pred - y_true) / tp
    near = (u >= -0.5) & (u <= 1.0)
    r = pp / tp
    finite_r = (r > 1e-300) & (r < 1e300)
    far = xp.where(finite_r, xp.log(xp.where(finite_r, r, one)),
                   log1p(xp, y_pred) - log1p(xp, y_true))
    log_ratio = xp.where(near, log1p(xp, xp.where(near, u, xp.zeros_like(u))), far)
    value = xp.mean(log_ratio * log_ratio, axis=-1)
    if not grad:
        return value, None
    return value, (2.0 / y_pred.shape[-1]) * (log_ratio / pp)


ABOVE_MINUS_ONE = Interval(-1.0, math.inf, low_open=True)

MEAN_SQUARED_LOGARITHMIC_ERROR = LossDef(
    name="mean_squared_logarithmic_error", class_name="MeanSquaredLogarithmicError", kernel=_msle,
    aliases=("msle", "MSLE"),
    domain=lambda opts: {"y_true": ABOVE_MINUS_ONE, "y_pred": ABOVE_MINUS_ONE},
    doc=r"""Mean squared logarithmic error over the last axis.

    .. math:: \ell = \frac{1}{n}\sum_i \bigl(\log(1 + \hat y_i) - \log(1 + y_i)\bigr)^2,\qquad
              \frac{\partial \ell}{\partial \hat y_i} =
              \frac{2\,(\log(1 + \hat y_i) - \log(1 + y_i))}{n\,(1 + \hat y_i)}

    Domain: ``y_true`` and ``y_pred`` greater than -1 (``ValueError`` otherwise); nothing is clipped.
    The log difference is computed as ``log1p((p - t)/(1 + t))`` when the two are close, so near-equal
    arguments keep their tiny loss. Shapes as for :func:`huber`.

    Peers: Keras ``mean_squared_logarithmic_error``/``MeanSquaredLogarithmicError`` ("msle") clips
    both arguments at ``1e-7`` from below (negative values count as 1e-7, with zero gradient) and uses
    ``log(x + 1)``, which loses values below about 1e-8; for ``y_true, y_pred >= 1e-7`` it is the same
    function. scikit-learn ``mean_squared_log_error`` raises for values <= -1 (older versions for any
    negative value). PyTorch and Optax have no MSLE.

    Example (by hand: (log(1 + e - 1) - log(1 + 0))^2 / 2 = 1/2 for the row [0, 0] vs [e - 1, 0]):

    >>> import math, losskit
    >>> float(losskit.mean_squared_logarithmic_error([[0.0, 0.0]], [[math.e - 1, 0.0]])[0])
    0.5
    """)


# --------------------------------------------------------------------------------- pinball loss


def _pinball(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, quantile: float
             ) -> tuple[Array, Any]:
    # value: mean_i rho(t_i - p_i), rho(d) = quantile d for d >= 0, (quantile - 1) d for d < 0
    # gradient: -quantile/n where t > p, (1 - quantile)/n where t < p, and at t = p the mean of the
    #           two one-sided slopes, (1/2 - quantile)/n (0 for the median, as MAE)
    q = quantile
    d = y_true - y_pred
    value = xp.mean(xp.where(d >= 0, q * d, (q - 1.0) * d), axis=-1)
    if not grad:
        return value, None
    g = xp.where(d > 0, _const(d, -q), xp.where(d < 0, _const(d, 1.0 - q), _const(d, 0.5 - q)))
    return value, g / y_pred.shape[-1]


PINBALL_LOSS = LossDef(
    name="pinball_loss", class_name="PinballLoss", kernel=_pinball,
    options=(Option("quantile", 0.5, check_fraction,
                    "the quantile the prediction estimates, in [0, 1] (0.5: the median)"),),
    option_aliases={"alpha": "quantile"},
    aliases=("quantile_loss", "mean_pinball_loss", "QuantileLoss"),
    doc=r"""Pinball (quantile) loss over the last axis.

    .. math:: \ell = \frac{1}{n}\sum_i \rho_q(y_i - \hat y_i),\quad
              \rho_q(d) = \max(q\,d,\ (q - 1)\,d),\qquad
              \frac{\partial \ell}{\partial \hat y_i} = \frac{1}{n}\begin{cases} -q & y_i > \hat y_i
              \\ 1 - q & y_i < \hat y_i \\ 1/2 - q & y_i = \hat y_i \end{cases}

    Minimised, in expectation, by the ``q``-quantile of ``y``; ``q = 0.5`` gives half the mean absolute
    error. At zero error the gradient is the mean of the two one-sided slopes. Shapes as for
    :func:`huber`.

    Peers: scikit-learn ``mean_pinball_loss(alpha=q)`` averages over everything (losskit's per-sample
    value is the mean over the last axis; ``alpha=`` is accepted as an alias of ``quantile``), and its
    private ``_loss.PinballLoss(quantile)`` works on raw predictions. Keras, PyTorch and Optax have no
    pinball loss.

    Example (by hand, q = 0.75: (0.75 * (3 - 1) + 0.25 * (2 - 0)) / 2 = (1.5 + 0.5) / 2 = 1):

    >>> import losskit
    >>> float(losskit.pinball_loss([[3.0, 0.0]], [[1.0, 2.0]], quantile=0.75)[0])
    1.0
    """)


# ----------------------------------------------------------------------------- cosine similarity


def _pow2_scale(xp: Any, x: Array) -> Array:
    """A power of two near each row's largest magnitude (1 for zero or non-finite rows): dividing by
    it is exact and keeps the products and splits below from over- or underflowing."""
    m = xp.max(xp.abs(x), axis=-1, keepdims=True)
    ok = (m > 0) & (m < math.inf)
    one = xp.ones_like(m)
    e = xp.floor(xp.log2(xp.where(ok, m, one)))
    return xp.where(ok, xp.pow(2.0 * one, e), one)


def _two_product(xp: Any, a: Array, b: Array) -> tuple[Array, Array]:
    """``a * b = x + e`` exactly (Dekker's TwoProduct, with Veltkamp's split for the dtype)."""
    digits = round(-math.log2(float(xp.finfo(a.dtype).eps))) + 1  # 53 for float64, 24 for float32
    factor = float(2 ** ((digits + 1) // 2) + 1)

    def split(v: Array) -> tuple[Array, Array]:
        c = barrier(xp, factor * v)
        hi = barrier(xp, c - (c - v))
        return hi, v - hi

    x = barrier(xp, a * b)
    ah, al = split(a)
    bh, bl = split(b)
    return x, al * bl - (((x - ah * bh) - al * bh) - ah * bl)


def _dd_sum(xp: Any, x: Array) -> tuple[Array, Array]:
    """Sum over the last axis as an unevaluated pair ``hi + lo`` (pairwise TwoSum cascade, the
    scheme of :func:`accurate_sum`, kept in two parts); ``lo`` is 0 where the sum is not finite."""
    plain = xp.sum(x, axis=-1)
    s, err = x, xp.zeros_like(x)
    while s.shape[-1] > 1:
        if s.shape[-1] % 2:
            pad = xp.zeros_like(s[..., :1])
            s, err = xp.concat([s, pad], axis=-1), xp.concat([err, pad], axis=-1)
        a, b = s[..., 0::2], s[..., 1::2]
        t, e = _two_sum(xp, a, b)
        err = err[..., 0::2] + err[..., 1::2] + e
        s = t
    if s.shape[-1] == 0:
        return plain, xp.zeros_like(plain)
    hi, lo = _two_sum(xp, s[..., 0], err[..., 0])
    finite = xp.isfinite(plain)
    return xp.where(finite, hi, plain), xp.where(finite, lo, xp.zeros_like(lo))


def _cosine_similarity(xp: Any, y_true: Array, y_pred: Array, *, grad: bool
                       ) -> tuple[Array, Any]:
    # value: -cos = -<t, p> / (|t| |p|), and 0 when t = 0 or p = 0 (Keras's value)
    #   rows are first scaled by powers of two (exact); <t, p> and the squared norms are summed from
    #   exact products (TwoProduct) in double-length arithmetic, so nearly orthogonal rows keep their
    #   small cosine.
    # gradient: -r / (|t| |p|), r = t - alpha p, alpha = <t, p> / |p|^2 (the part of t orthogonal to
    #   p): r_i cancels where t_i ~ alpha p_i, so alpha is kept as a double-length pair and alpha p_i
    #   is formed exactly; 0 when t = 0 (the loss is then 0 for every p) or p = 0 (no derivative)
    st, sp = _pow2_scale(xp, y_true), _pow2_scale(xp, y_pred)
    t, p = y_true / st, y_pred / sp
    dot_h, dot_l = _dd_sum(xp, xp.concat(list(_two_product(xp, t, p)), axis=-1))
    tt_h, _ = _dd_sum(xp, xp.concat(list(_two_product(xp, t, t)), axis=-1))
    pp_h, pp_l = _dd_sum(xp, xp.concat(list(_two_product(xp, p, p)), axis=-1))
    denom = xp.sqrt(tt_h) * xp.sqrt(pp_h)
    ok = denom > 0
    one = xp.ones_like(denom)
    safe = xp.where(ok, denom, one)
    zero = xp.zeros_like(denom)
    value = xp.where(ok, -((dot_h + dot_l) / safe), zero)
    value = xp.where(xp.isnan(denom) | xp.isnan(dot_h), dot_h + denom, value)  # NaN propagates
    if not grad:
        return value, None
    pp_safe = xp.where(ok, pp_h, one)
    a_h = barrier(xp, dot_h / pp_safe)
    x, e = _two_product(xp, a_h, pp_safe)
    a_l = (((dot_h - x) - e) + dot_l - a_h * pp_l) / pp_safe  # alpha = a_h + a_l
    a_h, a_l = a_h[..., None], a_l[..., None]
    x, e = _two_product(xp, a_h * xp.ones_like(p), p)
    r = ((t - x) - e) - a_l * p
    g = -r / (safe * sp[..., 0])[..., None]
    return value, xp.where(ok[..., None], g, xp.zeros_like(g))


COSINE_SIMILARITY = LossDef(
    name="cosine_similarity", class_name="CosineSimilarity", kernel=_cosine_similarity,
    options=(AXIS,),
    aliases=("cosine_similarity_loss",),
    doc=r"""Negative cosine similarity of ``y_true`` and ``y_pred`` along ``axis`` (Keras's sign).

    .. math:: \ell = -\frac{\langle y, \hat y\rangle}{\|y\|\,\|\hat y\|},\qquad
              \frac{\partial \ell}{\partial \hat y} = -\frac{y - \alpha\,\hat y}{\|y\|\,\|\hat y\|},
              \quad \alpha = \frac{\langle y, \hat y\rangle}{\|\hat y\|^2}

    Values lie in [-1, 1]; -1 means the same direction (the minimum). A zero vector (in ``y_true`` or
    ``y_pred``) gives 0, as in Keras, with gradient 0 (for ``y_true = 0`` the loss is 0 for every
    prediction; at ``y_pred = 0`` it has no derivative). The dot product is compensated, so nearly
    orthogonal rows keep their small cosine to the last bits, and rows are rescaled by powers of two
    so that norms of huge or tiny vectors neither overflow nor underflow.

    Shapes: ``y_true`` and ``y_pred`` of the same shape (ranks may differ by one trailing axis of
    size 1); returns that shape without ``axis``.

    Peers: Keras ``cosine_similarity``/``CosineSimilarity(axis)`` is the same function, computed as
    ``-sum(normalize(y) * normalize(y_pred))`` with the norms floored at 1e-7: zero vectors give 0
    there too, but the gradient at ``y_pred = 0`` is ``-1e7 * y/|y|`` rather than 0, and vectors with
    norms below 1e-7 are not normalised. Optax ``cosine_similarity`` returns ``+cos`` (and
    ``cosine_distance`` ``1 - cos``) with the squared norms clipped at ``epsilon`` (default 0, so a
    zero vector gives NaN). PyTorch's ``CosineEmbeddingLoss`` is a different, margin-based loss on
    pairs with labels; ``F.cosine_similarity`` (``+cos``, norms clamped at ``eps=1e-8``) is the
    related function. Squared norms beyond the float range overflow in the peers (``|x| > 1e154`` in
    float64); losskit rescales.

    Example (by hand: y = [1, 0], y_pred = [1, 1]: -(1*1 + 0*1) / (1 * sqrt(2)) = -0.7071067811865475):

    >>> import losskit
    >>> float(losskit.cosine_similarity([[1.0, 0.0]], [[1.0, 1.0]])[0])
    -0.7071067811865475
    """)
