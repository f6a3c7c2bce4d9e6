"""Regression losses: mean squared and absolute error, and the catalog's regression losses (Huber,
smooth L1, log-cosh, MAPE, MSLE, pinball, cosine similarity, Poisson, Gamma and Tweedie deviance,
Gaussian NLL)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Context, Decimal
from fractions import Fraction
from typing import Any

from .. import _array
from .._double import (
    barrier,
    dd_constant,
    dd_mul,
    dd_sum,
    exp_double,
    log_double,
    log_table,
    product_parts,
    two_product,
    two_sum,
)
from .._numerics import accurate_sum, log1p, xmul
from ._core import (
    AXIS,
    NONNEGATIVE,
    POSITIVE,
    Input,
    Interval,
    LossDef,
    Option,
    check_bool,
    check_fraction,
    check_nonnegative,
    check_positive,
    check_real,
)
from ._registry import Alias

Array = Any


def _unoverflowed_mean(xp: Any, value: Array, n: int, scaled_sum: Any, degree: int = 1) -> Array:
    """``value`` (a per-row mean over the last axis), recomputed where it is not finite from
    ``scaled_sum(s)``: the row sums of the terms computed from inputs multiplied by ``s = 2**-k``
    (exact; ``2**k >= 2n``), divided by ``n`` and scaled back by ``s**-degree``.

    The plain sum overflows when its terms are near the largest float although their mean is finite
    (issue 9: the mean absolute error of values near max/4 was ``inf``); with the scaled terms the
    sum stays below max/2, and only a mean beyond max gives ``inf``. Rows with an infinite or NaN
    input give the same non-finite value as before. On NumPy the recomputation runs only when some
    row needs it.
    """
    bad = ~xp.isfinite(value)
    if not _array.is_concrete(value) or _array.to_bool(xp.any(bad)):
        k = max(1, math.ceil(math.log2(max(n, 1))) + 1)
        again = (scaled_sum(2.0 ** -k) / n) * 2.0 ** (k * degree)
        value = xp.where(bad, again, value)
    return value


def _mse(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i (p_i - t_i)^2        gradient: 2 (p_i - t_i) / n
    n = y_pred.shape[-1]
    diff = y_pred - y_true
    value = _unoverflowed_mean(xp, xp.mean(diff * diff, axis=-1), n, lambda s: xp.sum(
        _sq(y_pred * s - y_true * s), axis=-1), degree=2)
    return value, (2.0 / n) * diff if grad else None


def _sq(x: Array) -> Array:
    return x * x


def _mae(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i |p_i - t_i|          gradient: sign(p_i - t_i) / n, and 0 at zero error
    n = y_pred.shape[-1]
    diff = y_pred - y_true
    value = _unoverflowed_mean(xp, xp.mean(xp.abs(diff), axis=-1), n, lambda s: xp.sum(
        xp.abs(y_pred * s - y_true * s), axis=-1))
    return value, xp.sign(diff) / n if grad else None


MEAN_SQUARED_ERROR = LossDef(
    name="mean_squared_error", class_name="MeanSquaredError", kernel=_mse,
    aliases=("mse", "MSE", "MSELoss", Alias("mse_loss"),
             Alias("squared_error",
                   note="per sample the mean over the last axis; Optax returns every element")),
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
    aliases=("mae", "MAE", "L1Loss", Alias("l1_loss")),
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
    """``value`` in ``x``'s shape and dtype (not ``x * 0 + value``, which is NaN where ``x`` is
    infinite)."""
    return _array.namespace(x).zeros_like(x) + value


def _row_sum(xp: Any, *parts: Array) -> Array:
    """Sum over the last axis of all ``parts`` together, compensated (terms of both signs meet)."""
    return accurate_sum(xp, xp.concat(list(parts), axis=-1) if len(parts) > 1 else parts[0])


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
    value = _unoverflowed_mean(xp, value, y_pred.shape[-1], lambda s: xp.sum(xp.where(
        quad, (0.5 * d * d) * s, delta * (xp.abs(y_pred * s - y_true * s) - (0.5 * delta) * s)),
        axis=-1))
    if not grad:
        return value, None
    return value, xp.where(quad, d, delta * xp.sign(d)) / y_pred.shape[-1]


HUBER = LossDef(
    name="huber", class_name="Huber", kernel=_huber,
    options=(Option("delta", 1.0, check_positive,
                    "the error size at which the loss turns from quadratic to linear (> 0)"),),
    aliases=(Alias("huber_loss"), "HuberLoss"),
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
    value = _unoverflowed_mean(xp, value, y_pred.shape[-1], lambda s: xp.sum(xp.where(
        quad, (0.5 * d * (d / b)) * s, xp.abs(y_pred * s - y_true * s) - (0.5 * beta) * s),
        axis=-1))
    if not grad:
        return value, None
    return value, xp.where(quad, d / b, xp.sign(d)) / y_pred.shape[-1]


SMOOTH_L1 = LossDef(
    name="smooth_l1", class_name="SmoothL1", kernel=_smooth_l1,
    options=(Option("beta", 1.0, check_nonnegative,
                    "the error size below which the loss is quadratic (>= 0; 0 gives the mean "
                    "absolute error)"),),
    aliases=(Alias("smooth_l1_loss"), "SmoothL1Loss"),
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
    value = _unoverflowed_mean(xp, value, y_pred.shape[-1], lambda s: xp.sum(xp.where(
        small, near * s, (xp.abs(y_pred * s - y_true * s) - LOG2 * s)
        + log1p(xp, xp.exp(-2.0 * a)) * s), axis=-1))
    if not grad:
        return value, None
    return value, xp.tanh(d) / y_pred.shape[-1]


LOG_COSH = LossDef(
    name="log_cosh", class_name="LogCosh", kernel=_log_cosh,
    aliases=("logcosh", Alias("log_cosh_loss")),
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
    # at y_pred = +inf: L/(1 + p) -> 0 (log grows slower), where inf/inf would give NaN
    slope = xp.where(xp.isinf(pp) & xp.isfinite(tp), xp.zeros_like(pp), log_ratio / pp)
    return value, (2.0 / y_pred.shape[-1]) * slope


ABOVE_MINUS_ONE = Interval(-1.0, math.inf, low_open=True)

MEAN_SQUARED_LOGARITHMIC_ERROR = LossDef(
    name="mean_squared_logarithmic_error", class_name="MeanSquaredLogarithmicError", kernel=_msle,
    aliases=("msle", "MSLE", Alias("mean_squared_log_error")),
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


# -------------------------------------------------------------------------------------- pinball


def _pinball(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, quantile: float
             ) -> tuple[Array, Any]:
    # value: mean_i rho(t_i - p_i), rho(d) = quantile d for d >= 0, (quantile - 1) d for d < 0
    # gradient: -quantile/n where t > p, (1 - quantile)/n where t < p, and at t = p the mean of the
    #           two one-sided slopes, (1/2 - quantile)/n (0 for the median, as MAE)
    q = quantile
    d = y_true - y_pred
    value = xp.mean(xp.where(d >= 0, q * d, (q - 1.0) * d), axis=-1)
    value = _unoverflowed_mean(xp, value, y_pred.shape[-1], lambda s: xp.sum(xp.where(
        d >= 0, q * (y_true * s - y_pred * s), (q - 1.0) * (y_true * s - y_pred * s)), axis=-1))
    if not grad:
        return value, None
    g = xp.where(d > 0, _const(d, -q), xp.where(d < 0, _const(d, 1.0 - q), _const(d, 0.5 - q)))
    g = xp.where(xp.isnan(d), d, g)  # NaN propagates to its sample
    return value, g / y_pred.shape[-1]


PINBALL = LossDef(
    name="pinball", class_name="Pinball", kernel=_pinball,
    options=(Option("quantile", 0.5, check_fraction,
                    "the quantile the prediction estimates, in [0, 1] (0.5: the median)"),),
    option_aliases={"alpha": "quantile"},
    aliases=(Alias("pinball_loss"), "PinballLoss", Alias("quantile_loss"), Alias("mean_pinball_loss"),
             "QuantileLoss"),
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
    >>> float(losskit.pinball([[3.0, 0.0]], [[1.0, 2.0]], quantile=0.75)[0])
    1.0
    """)


# ----------------------------------------------------------------------------- cosine similarity


def _pow2_scale(xp: Any, x: Array) -> Array:
    """A power of two near each row's largest magnitude (1 for zero or non-finite rows): dividing by
    it is exact and keeps the products and splits below from over- or underflowing."""
    m = xp.max(xp.abs(x), axis=-1, keepdims=True)
    ok = (m > 0) & (m < math.inf)
    one = xp.ones_like(m)
    # the exponent from frexp (exact): floor(log2(m)) rounds up to 1024 near the largest double,
    # whose 2**1024 overflowed and zeroed the rows (issue 9: 0 instead of -1 for identical rows)
    _, e = xp.frexp(xp.where(ok, m, one))
    return xp.where(ok, xp.pow(2.0 * one, xp.astype(e, m.dtype) - 1.0), one)


def _cosine_similarity(xp: Any, y_true: Array, y_pred: Array, *, grad: bool
                       ) -> tuple[Array, Any]:
    # value: -cos = -<t, p> / (|t| |p|), and 0 when t = 0 or p = 0 (Keras's value)
    #   rows are first scaled by powers of two (exact); <t, p> and the squared norms are summed from
    #   exact products (TwoProduct) in double-length arithmetic, so nearly orthogonal rows keep their
    #   small cosine.
    # gradient: -r / (|t| |p|), r = t - alpha p, alpha = <t, p> / |p|^2 (the part of t orthogonal to
    #   p): r_i cancels where t_i ~ alpha p_i, so alpha is kept as a double-length pair and alpha p_i
    #   is formed exactly; 0 when t = 0 (the loss is then 0 for every p) or p = 0 (no derivative)
    # an infinite component: the vector's direction is the limit of the infinite components' signs
    # (the loss is scale invariant), and the gradient with respect to an infinite y_pred is 0 (it
    # scales as 1/|y_pred|); rows with a NaN keep it
    inf_t, inf_p = _infinite_row(xp, y_true), _infinite_row(xp, y_pred)
    y_true, y_pred = _direction_limit(xp, y_true, inf_t), _direction_limit(xp, y_pred, inf_p)
    st, sp = _pow2_scale(xp, y_true), _pow2_scale(xp, y_pred)
    t, p = y_true / st, y_pred / sp
    dot_h, dot_l = dd_sum(xp, xp.concat(list(two_product(xp, t, p)), axis=-1))
    tt_h, _ = dd_sum(xp, xp.concat(list(two_product(xp, t, t)), axis=-1))
    pp_h, pp_l = dd_sum(xp, xp.concat(list(two_product(xp, p, p)), axis=-1))
    denom = xp.sqrt(tt_h) * xp.sqrt(pp_h)
    ok = denom > 0
    one = xp.ones_like(denom)
    safe = xp.where(ok, denom, one)
    zero = xp.zeros_like(denom)
    value = xp.where(ok, -((dot_h + dot_l) / safe), zero)
    value = xp.maximum(xp.minimum(value, one), -one)  # |cos| <= 1 also after rounding
    value = xp.where(xp.isnan(denom) | xp.isnan(dot_h), dot_h + denom, value)  # NaN propagates
    if not grad:
        return value, None
    pp_safe = xp.where(ok, pp_h, one)
    a_h = barrier(xp, dot_h / pp_safe)
    x, e = two_product(xp, a_h, pp_safe)
    a_l = (((dot_h - x) - e) + dot_l - a_h * pp_l) / pp_safe  # alpha = a_h + a_l
    a_h, a_l = a_h[..., None], a_l[..., None]
    x, e = two_product(xp, a_h * xp.ones_like(p), p)
    r = ((t - x) - e) - a_l * p
    g = -r / (safe * sp[..., 0])[..., None]
    g = xp.where(ok[..., None], g, xp.zeros_like(g))
    g = xp.where(inf_p[..., None], xp.zeros_like(g), g)
    # a NaN in the row gives a NaN value and NaN gradients (PyTorch's), not the zero-vector 0
    return value, xp.where(xp.isnan(value)[..., None], value[..., None] + g, g)


def _infinite_row(xp: Any, v: Array) -> Array:
    """Rows (last axis) with an infinite component and no NaN."""
    return xp.any(xp.isinf(v), axis=-1) & ~xp.any(xp.isnan(v), axis=-1)


def _direction_limit(xp: Any, v: Array, rows: Array) -> Array:
    """In the given rows, the signs of the infinite components (0 elsewhere): the direction ``v``
    tends to; other rows unchanged."""
    limit = xp.where(xp.isinf(v), xp.sign(v), xp.zeros_like(v))
    return xp.where(rows[..., None], limit, v)


COSINE_SIMILARITY = LossDef(
    name="cosine_similarity", class_name="CosineSimilarity", kernel=_cosine_similarity,
    options=(AXIS,),
    aliases=(Alias("cosine_similarity_loss"),),
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
    ``-sum(normalize(y) * normalize(y_pred))`` with ``1/norm`` capped at 1e7: zero vectors give 0
    there too, but the gradient at ``y_pred = 0`` is NaN (JAX backend), vectors with norms below
    1e-7 are not normalised, and vectors whose squared norm overflows give 0 (``[1e200, 1e200]``
    against itself: Keras 0, losskit -1). Optax ``cosine_similarity`` returns ``+cos`` (and
    ``cosine_distance`` ``1 - cos``) with the squared norms clipped at ``epsilon`` (default 0, so a
    zero vector gives NaN, and an overflowing squared norm 0). PyTorch's ``CosineEmbeddingLoss`` is a
    different, margin-based loss on pairs with labels; ``F.cosine_similarity`` (``+cos``, norms
    clamped at ``eps=1e-8``) is the related function. The peers sum plain products, so nearly
    orthogonal rows lose their small cosine (float32, cos = -1.17e-8: Keras -1.49e-8).

    Example (by hand: y = [1, 0], y_pred = [1, 1]: -(1*1 + 0*1) / (1 * sqrt(2)) = -0.7071067811865475):

    >>> import losskit
    >>> float(losskit.cosine_similarity([[1.0, 0.0]], [[1.0, 1.0]])[0])
    -0.7071067811865475
    """)


# ------------------------------------------------------- double-length exp and log (Poisson family)
# The Poisson losses subtract terms such as y*log(y_pred) or exp(x) from others of the same size. A
# correctly rounded exp or log is still off by half an ulp of the *term*, which becomes many ulps of
# a small difference; log_double and exp_double (losskit/_double.py) give them as unevaluated pairs
# hi + lo good to about 2**-100 (relative), so differences that cancel still come out within a few ulps.


# ---------------------------------------------------------------------------- Poisson (Keras's)


def _poisson(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i (p_i - t_i log p_i), with 0 log 0 = 0 (t = 0 contributes p) and +inf for
    #   p = 0 < t; the 2n parts p_i and -t_i log p_i have both signs: summed with compensation
    # gradient: (1 - t_i/p_i)/n, written (p_i - t_i)/(p_i n) (no cancellation near p = t); 1/n at t = 0
    #   log p is taken as a double-length pair (see log_double), so y_pred ~ y_true log y_pred cancels
    #   without losing the result
    #   Two tiers, selected per row: log p from the table-driven pair (log_table: absolute error
    #   below eps/128), whose error in the row is at most sum_i t_i eps/128 (+ 2**-45 relative);
    #   rows where that could exceed 4 eps |value| (8 ulp), i.e. sum_i t_i / 512 > |value|
    #   (a value cancelled ~100x on small counts), are recomputed with log_double (2**-100).
    #   (On PyTorch and JAX both tiers would run on every row: the second alone is used.)
    n = y_pred.shape[-1]
    numpy = _array.backend_name(y_pred) == "numpy"
    log_p = (log_table if numpy else log_double)(xp, y_pred)
    value = _row_sum(xp, y_pred, *[-v for v in product_parts(xp, y_true, *log_p)])
    if numpy:
        bound = xp.sum(y_true * (1.0 / 512 + 2.0**-43 * xp.abs(log_p[0])), axis=-1)
        value = _refine_rows(xp, bound > xp.abs(value), value, lambda t, p: _row_sum(
            xp, p, *[-v for v in product_parts(xp, t, *log_double(xp, p))]), y_true, y_pred)
    value = value / n
    value = _unoverflowed_mean(xp, value, n, lambda s: _row_sum(
        xp, y_pred * s, *[-v for v in product_parts(xp, y_true * s, *log_p)]))
    # y_pred = +inf: p - t log p -> +inf (p outgrows t log p), gradient 1 - t/p -> 1 (inf - inf and
    # inf/inf would give NaN); NaN rows stay NaN
    at_inf = (y_pred == math.inf) & xp.isfinite(y_true)
    row_inf = xp.any(at_inf, axis=-1) & ~xp.any(xp.isnan(y_pred) | xp.isnan(y_true), axis=-1)
    value = xp.where(row_inf, math.inf * xp.ones_like(value), value)
    if not grad:
        return value, None
    g = xp.where(y_true == 0, xp.ones_like(y_pred), (y_pred - y_true) / y_pred)
    g = xp.where(at_inf, xp.ones_like(g), g)
    return value, g / n


POISSON = LossDef(
    name="poisson", class_name="Poisson", kernel=_poisson,
    domain=lambda opts: {"y_true": NONNEGATIVE, "y_pred": NONNEGATIVE},
    aliases=(Alias("poisson_loss"),),
    doc=r"""Poisson loss in Keras's form, ``y_pred - y_true log y_pred``, averaged over the last axis.

    It is the negative log-likelihood of the rate ``y_pred`` without the ``log(y!)`` constant.

    .. math:: \ell = \frac{1}{n}\sum_i \bigl(\hat y_i - y_i \log \hat y_i\bigr),\qquad
              \frac{\partial \ell}{\partial \hat y_i} = \frac{1}{n}\Bigl(1 - \frac{y_i}{\hat y_i}
              \Bigr)

    Domain: ``y_true >= 0`` (counts or rates) and ``y_pred >= 0`` (the predicted rate; ``ValueError``
    otherwise). ``0 log 0 = 0``: a zero target contributes ``y_pred`` (gradient ``1/n`` even at
    ``y_pred = 0``); ``y_pred = 0 < y_true`` gives ``+inf``. The value can be negative (no constant
    makes it a deviance; see :func:`mean_tweedie_deviance` with ``power=1`` for that).

    Exactness: ``log y_pred`` is carried to about 2**-100 (a double-length pair) and ``y_true`` times it
    is exact, so the sum stays within 8 ulp even where ``y_pred`` and ``y_true log y_pred`` cancel by
    a factor of ~100. On the curve ``y_true = y_pred / log y_pred`` itself (for example
    ``y_true = y_pred = e``) the value is 0 and no finite precision suffices: there the error is
    bounded by about 2**-100 of the larger term. float32 input, computed in float64, is exact except
    within ~2**-30 of that curve. On NumPy the 2**-100 logarithm is taken only on the rows whose
    error bound needs it (a table-driven one, good to eps/128, serves the others).

    Shapes as for :func:`huber`.

    Peers: Keras ``poisson``/``Poisson`` computes ``y_pred - y_true * log(y_pred + 1e-7)``: the
    epsilon shifts values and gradients by about ``1e-7 * y_true / y_pred`` (relative), avoids the
    ``inf`` at ``y_pred = 0``, and does not check the domain. PyTorch's form with ``log_input=False``
    is ``y_pred - y_true * log(y_pred + 1e-8)`` (see :func:`poisson_nll`). Optax has no Poisson loss;
    scikit-learn's ``mean_poisson_deviance`` is twice the deviance (``mean_tweedie_deviance`` with
    ``power=1``).

    Example (by hand: ((1 - 0 * log 1) + (e - e * log e)) / 2 = (1 + 0) / 2 = 0.5, for y_true = [0, e]
    and y_pred = [1, e]):

    >>> import math, losskit
    >>> round(float(losskit.poisson([[0.0, math.e]], [[1.0, math.e]])[0]), 15)
    0.5
    """)


# ---------------------------------------------------------------------------- Poisson (PyTorch's)


def _poisson_nll(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, log_input: bool,
                 full: bool, eps: float) -> tuple[Array, Any]:
    # value, log_input=True:  mean_i (exp(x_i) - t_i x_i)                   gradient: (exp(x_i) - t_i)/n
    # value, log_input=False: mean_i (x_i - t_i log(x_i + eps))             gradient: (1 - t_i/(x_i + eps))/n
    #   x + eps = s + err exactly (TwoSum): log(x + eps) = log s + err/s, and 1 - t/(x + eps) =
    #   ((s - t) + err)/s, which does not cancel near x + eps = t
    # full=True adds Stirling's term t log t - t + log(2 pi t)/2 where t > 1 (PyTorch's mask)
    # the parts have both signs: summed with compensation
    # exp and log are double-length pairs and the products are exact (TwoProduct), so the parts
    # cancel without losing the result; exp(x) - t = (hi - t) + lo. Two tiers, selected per row
    # (value) and per element (gradient): first the table-driven pairs (log_table, and exp_double
    # on it: absolute error eps/128 of log, relative of exp); where that error could exceed 8 ulp
    # (4 eps) of the value or the gradient, i.e. sum_i w_i / 512 > |value| with w = exp(x)
    # (log_input) or t (else; and t for Stirling's t log t), or exp(x)/512 > |exp(x) - t|, the
    # 2**-100 pairs (log_double, exp_double).
    # (On PyTorch and JAX both tiers would run everywhere: the second alone is used.)
    n = y_pred.shape[-1]
    numpy = _array.backend_name(y_pred) == "numpy"
    parts, weight, g = _pnll_parts(xp, y_true, y_pred, log_input, full, eps,
                                   log_table if numpy else log_double)
    value = _row_sum(xp, *parts)
    if numpy:
        bound = xp.sum(weight, axis=-1) / 512 + 2.0**-40 * xp.sum(xp.abs(parts[0]), axis=-1)
        value = _refine_rows(xp, bound > xp.abs(value), value, lambda t, x: _row_sum(
            xp, *_pnll_parts(xp, t, x, log_input, full, eps, log_double)[0]), y_true, y_pred)
    value = value / n
    if not grad:
        return value, None
    if log_input and numpy:
        g = _refine_rows(xp, weight / 512 > xp.abs(g), g, lambda t, x: _pnll_parts(
            xp, t, x, True, False, eps, log_double)[2], y_true, y_pred)
    return value, g / n


def _pnll_parts(xp: Any, t: Array, x: Array, log_input: bool, full: bool, eps: float,
                log: Any) -> tuple[list[Array], Array, Array]:
    """The parts of :func:`_poisson_nll`'s value (summed over a row they give it), the weights of
    their error bound and the gradient, with ``log`` (log_table or log_double) for the pairs."""
    if log_input:
        e_hi, e_lo = exp_double(xp, x, log=log)
        tx = product_parts(xp, t, x, xp.zeros_like(x))
        # exp(x) and t x both overflow (x > 709.78 and t x > max): inf - inf would be NaN; the
        # term is +inf where x > log(t) + log(x) (the exponential wins), else -inf
        both = (e_hi == math.inf) & (tx[0] == math.inf)
        one = xp.ones_like(x)
        wins = x > xp.log(xp.where(both, t, one)) + xp.log(xp.where(both, x, one))
        e_hi = xp.where(both, xp.where(wins, e_hi, -e_hi), e_hi)
        parts = [e_hi, e_lo, *[xp.where(both, xp.zeros_like(v), -v) for v in tx]]
        g = (e_hi - t) + e_lo
        g = xp.where(both, _const(g, math.inf), g)
        weight = xp.abs(e_hi)
    else:
        s, err = two_sum(xp, x, _const(x, eps))
        l_hi, l_lo = log(xp, s)
        parts = [x, *[-v for v in product_parts(xp, t, l_hi, l_lo + err / s)]]
        g = ((s - t) + err) / s
        weight = t
    if full:
        big = t > 1
        zero = xp.zeros_like(t)
        tb = xp.where(big, t, xp.ones_like(t))
        l_hi, l_lo = log(xp, tb)
        parts += [xp.where(big, v, zero) for v in product_parts(xp, tb, l_hi, l_lo)]
        parts += [xp.where(big, -tb, zero), xp.where(big, 0.5 * l_hi, zero),
                  xp.where(big, 0.5 * l_lo + 0.5 * LOG_2PI, zero)]
        weight = weight + xp.where(big, tb + 0.5, zero)
    return parts, weight, g


def _poisson_nll_domain(opts: Mapping[str, Any]) -> dict[str, Interval]:
    return {"y_true": NONNEGATIVE} | ({} if opts["log_input"] else {"y_pred": NONNEGATIVE})


POISSON_NLL = LossDef(
    name="poisson_nll", class_name="PoissonNLL", kernel=_poisson_nll,
    options=(Option("log_input", True, check_bool,
                    "whether ``y_pred`` is the log of the rate (True) or the rate itself (False)"),
             Option("full", False, check_bool,
                    "whether to add Stirling's approximation of ``log(y_true!)`` (where "
                    "``y_true > 1``)"),
             Option("eps", 1e-8, check_positive,
                    "added to the rate inside the logarithm when ``log_input=False`` (> 0)")),
    domain=_poisson_nll_domain,
    aliases=(Alias("poisson_nll_loss"), "PoissonNLLLoss"),
    doc=r"""Poisson negative log-likelihood in PyTorch's form (``PoissonNLLLoss``), over the last axis.

    .. math:: \ell = \frac{1}{n}\sum_i \begin{cases} e^{x_i} - y_i x_i & \texttt{log\_input} \\
              x_i - y_i \log(x_i + \varepsilon) & \text{otherwise} \end{cases}
              \;+\; \frac{1}{n}\sum_{i:\,y_i > 1} \Bigl(y_i \log y_i - y_i + \tfrac12 \log(2\pi
              y_i)\Bigr)\ \ (\texttt{full})

    Gradient: ``(exp(x_i) - y_i)/n`` with ``log_input``, else ``(1 - y_i/(x_i + eps))/n``.
    Domain: ``y_true >= 0``; with ``log_input=False`` also ``y_pred >= 0``. Exactly PyTorch's
    function, options and defaults (``log_input=True, full=False, eps=1e-8``), with the Stirling term
    masked for ``y_true <= 1`` as PyTorch does; PyTorch's per-element values reduced over everything
    correspond to losskit's per-sample mean over the last axis.

    Exactness: ``exp`` and ``log`` are carried to 2**-94 or better (double-length pairs) and products
    are exact, so values and gradients stay within 8 ulp where the parts cancel by a factor of ~100
    (``exp(x)`` against ``y x``; for the gradient ``exp(x)`` against ``y`` near the optimum
    ``x = log y``, and the Stirling term against the rest). Where a value or gradient is exactly 0 in
    real arithmetic but not in floating point (``x`` the float nearest ``log y``) the error is about
    2**-94 of the larger part, not of the result.

    Shapes as for :func:`huber`. Keras's form is :func:`poisson`.

    Example (by hand, log_input: ((e^0 - 1 * 0) + (e^1 - 2 * 1)) / 2 = (1 + e - 2) / 2 =
    0.8591409142295225):

    >>> import losskit
    >>> round(float(losskit.poisson_nll([[1.0, 2.0]], [[0.0, 1.0]])[0]), 15)
    0.859140914229523
    """)


# ------------------------------------------------------------------------ Gaussian NLL (PyTorch's)


def _gaussian_nll(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, full: bool, eps: float,
                  var: Array) -> tuple[Array, Any]:
    # value: mean_i (log v_i + (p_i - t_i)^2 / v_i) / 2 [+ log(2 pi)/2], v = max(var, eps)
    #   log v < 0 meets the positive square, and a calibrated model (d^2 ~ v < 1) makes them cancel
    #   routinely. The parts are summed with compensation, so only their roundings count: within
    #   1 ulp (eps |x| / 2) for each half-log L_i, 2 eps for each half-square Q_i (d, d/v and the
    #   product rounded). The row stays within 8 ulp (4 eps |value|) while
    #   sum_i (|L_i| / 4 + Q_i / 2) <= |value|; rows beyond that are recomputed, and only those:
    #   - with the square as a double-length pair (_square_over), leaving sum |L_i| / 4 <= |value|;
    #   - rows still beyond it with log v in double length too (_gaussian_exact): rare unless the
    #     value is near 0.
    # gradient: (p_i - t_i) / (v_i n)
    #   (On PyTorch and JAX every tier would run on every row: the last alone is used.)
    n = y_pred.shape[-1]
    v = xp.maximum(var, _const(var, eps))
    d = y_pred - y_true
    half_log = 0.5 * xp.log(v)
    if _array.backend_name(y_pred) != "numpy":
        q_hi, q_lo = _square_over(xp, y_true, y_pred, v)
        value = _gaussian_exact(xp, half_log, 0.5 * q_hi, 0.5 * q_lo, v, full)
        return value / n, (d / v) / n if grad else None
    half_square = 0.5 * d * (d / v)
    constant = [_const(v, 0.5 * LOG_2PI)] if full else []
    value = _row_sum(xp, half_log, half_square, *constant)
    log_bound = 0.25 * xp.sum(xp.abs(half_log), axis=-1) + (0.125 * LOG_2PI * n if full else 0.0)
    hard = log_bound + 0.5 * xp.sum(half_square, axis=-1) > xp.abs(value)  # never NaN rows
    value = _refine_rows(xp, hard, value, lambda t, p, w, lh, lb: _gaussian_rows(
        xp, t, p, w, lh, lb, full), y_true, y_pred, v, half_log, log_bound)
    return value / n, (d / v) / n if grad else None


def _gaussian_rows(xp: Any, t: Array, p: Array, v: Array, half_log: Array, log_bound: Array,
                   full: bool) -> Array:
    """The second and third tiers of :func:`_gaussian_nll` on the rows that need them."""
    q_hi, q_lo = _square_over(xp, t, p, v)
    q_hi, q_lo = 0.5 * q_hi, 0.5 * q_lo
    constant = [_const(v, 0.5 * LOG_2PI)] if full else []
    value = _row_sum(xp, half_log, q_hi, q_lo, *constant)
    return _refine_rows(xp, log_bound > xp.abs(value), value, lambda lh, qh, ql, w: (
        _gaussian_exact(xp, lh, qh, ql, w, full)), half_log, q_hi, q_lo, v)


def _square_over(xp: Any, t: Array, p: Array, v: Array) -> tuple[Array, Array]:
    """``(p - t)^2 / v`` as a pair ``hi + lo`` good to about ``2**-100`` (float64): ``p - t``
    exact (TwoSum), squared with :func:`dd_mul`, divided by ``v`` with the remainder recovered by
    TwoProduct. Where a step overflows (``|p - t|`` beyond ~1e150) the plain ``d (d / v)`` with
    ``lo = 0``."""
    zero = xp.zeros_like(v)
    d_hi, d_lo = two_sum(xp, p, -t)
    d_lo = xp.where(xp.isfinite(d_lo), d_lo, zero)
    s_hi, s_lo = dd_mul(xp, (d_hi, d_lo), (d_hi, d_lo))
    h = s_hi / v
    ph, pe = two_product(xp, h, v)
    r = (((s_hi - ph) - pe) + s_lo) / v
    ok = xp.isfinite(h) & xp.isfinite(r)
    return xp.where(ok, h, d_hi * (d_hi / v)), xp.where(ok, r, zero)


def _gaussian_exact(xp: Any, half_log: Array, q_hi: Array, q_lo: Array, v: Array, full: bool
                    ) -> Array:
    """Row sums of the Gaussian NLL's parts with ``log v`` as a double-length pair
    (:func:`log_double`) beside the square's pair, summed with :func:`dd_sum`: about ``2**-100``
    of the parts, so a sum that cancels to near 0 keeps its digits."""
    l_hi, l_lo = log_double(xp, v)
    l_hi = xp.where(xp.isfinite(l_hi), 0.5 * l_hi, half_log)
    parts = [l_hi, 0.5 * l_lo, q_hi, q_lo]
    if full:
        c_hi, c_lo = dd_constant(Fraction(_LOG_2PI_EXACT) / 2, v)
        zero = xp.zeros_like(v)
        parts += [zero + c_hi, zero + c_lo]
    return dd_sum(xp, xp.concat(parts, axis=-1))[0]


_LOG_2PI_EXACT = Decimal(2 * Decimal("3.14159265358979323846264338327950288419716939937510")).ln(
    Context(prec=60))


def _refine_rows(xp: Any, hard: Array, value: Array, fn: Any, *arrays: Array) -> Array:
    """``value`` with the rows where ``hard`` holds replaced by ``fn(*rows of arrays)``.

    On NumPy only those rows are passed to ``fn`` (nothing is computed when there are none), so the
    double-length work is paid where the result needs it; on other backends ``fn`` runs on every
    row and ``where`` selects (no data-dependent shapes under ``jax.jit`` or ``torch.compile``).
    """
    if _array.backend_name(value) == "numpy":
        if not _array.to_bool(xp.any(hard)):
            return value
        out = xp.asarray(value, copy=True)
        out[hard] = fn(*[a[hard] for a in arrays])
        return out
    return xp.where(hard, fn(*arrays), value)


GAUSSIAN_NLL = LossDef(
    name="gaussian_nll", class_name="GaussianNLL", kernel=_gaussian_nll,
    options=(Option("full", False, check_bool, "whether to add the constant ``log(2 pi)/2``"),
             Option("eps", 1e-6, check_positive,
                    "the floor of the variance (PyTorch's clamp; > 0)")),
    inputs=(Input("var", "the predicted variance of each element of y_pred (>= 0, floored at eps)",
                  domain=NONNEGATIVE),),
    aliases=(Alias("gaussian_nll_loss"), "GaussianNLLLoss"),
    doc=r"""Gaussian negative log-likelihood with a predicted variance (PyTorch's ``GaussianNLLLoss``).

    Averaged over the last axis:

    .. math:: \ell = \frac{1}{n}\sum_i \frac12\Bigl(\log v_i + \frac{(\hat y_i - y_i)^2}{v_i}\Bigr)
              \;[+\ \tfrac12\log 2\pi],\quad v_i = \max(\mathrm{var}_i, \varepsilon),\qquad
              \frac{\partial \ell}{\partial \hat y_i} = \frac{\hat y_i - y_i}{n\,v_i}

    Call it as ``gaussian_nll(y_true, y_pred, var=var)`` (and ``GaussianNLL()(y_true, y_pred,
    var=var)``); ``var`` must broadcast to ``y_pred``'s shape (``(B, 1)`` for one variance per
    sample) and be non-negative (``ValueError`` otherwise). It is floored at ``eps`` exactly as
    PyTorch clamps it; gradients are taken with respect to ``y_pred`` only (PyTorch's autograd
    ignores the clamp for the gradient with respect to ``var``).

    Shapes: ``y_true``, ``y_pred`` ``(..., n)`` and ``var`` broadcastable to them; returns ``(...)``.

    Exactness: within 8 ulp also where ``log v < 0`` cancels the squared error almost completely
    (a value near 0): those rows, and only those, are recomputed with every part in double length.
    ``var = inf`` gives ``inf`` (gradient 0).

    Peers: PyTorch ``GaussianNLLLoss(full, eps)`` / ``F.gaussian_nll_loss``: the same per-element
    value (reduced over everything; losskit's per-sample value is the mean over the last axis).
    PyTorch also accepts a ``var`` with one fewer dimension (one variance per sample, unsqueezed);
    losskit uses plain broadcasting, so pass ``var[..., None]``. Keras, Optax and scikit-learn have no
    Gaussian NLL.

    Example (by hand: ((log 2 + (3 - 1)^2 / 2) + (log 1 + 0 / 1)) / 4 = (log 2 + 2) / 4 =
    0.6732867951399863):

    >>> import losskit
    >>> round(float(losskit.gaussian_nll([[1.0, 0.0]], [[3.0, 0.0]], var=[[2.0, 1.0]])[0]), 15)
    0.673286795139986
    """)


# --------------------------------------------------------------------- Tweedie and Gamma deviance


def _series(xp: Any, x: Array, coefs: list[float]) -> Array:
    """``sum_k coefs[k] x^(k+2)`` by Horner's rule (the series below start at x^2)."""
    acc = xp.zeros_like(x) + coefs[-1]
    for c in reversed(coefs[:-1]):
        acc = acc * x + c
    return acc * x * x


_E1_COEFS = [1.0 / math.factorial(k) for k in range(2, 23)]  # e^x - 1 - x = sum_{k>=2} x^k/k!
_F_COEFS = [(k - 1) / math.factorial(k) for k in range(2, 25)]  # x e^x - e^x + 1 = sum (k-1) x^k/k!


def _expm1_minus_x(xp: Any, x: Array) -> Array:
    """``e^x - 1 - x`` without cancellation: the Taylor series for |x| <= 1 (22 terms: the first
    omitted one is below 2**-70 of the sum), ``expm1(x) - x`` beyond (cancellation at most 3x)."""
    small = xp.abs(x) <= 1.0
    return xp.where(small, _series(xp, xp.where(small, x, xp.zeros_like(x)), _E1_COEFS),
                    xp.expm1(x) - x)


def _xexp_minus_expm1(xp: Any, x: Array) -> Array:
    """``x e^x - e^x + 1 = x e^x - expm1(x)`` (>= 0), the Taylor series for |x| <= 1."""
    small = xp.abs(x) <= 1.0
    return xp.where(small, _series(xp, xp.where(small, x, xp.zeros_like(x)), _F_COEFS),
                    x * xp.exp(x) - xp.expm1(x))


FAR = 4.0
"""Powers 1 and 2 use the deviance's own terms beyond |log(y/y_pred)| > FAR (see ``_tweedie``)."""

NEAR = 1.5
"""The series branch of the Tweedie deviance covers |L| max(1, |a|, |b|) <= NEAR: its terms then fall
at least like 1.5^k / k! (40 terms: the first omitted one is below 2**-100 of the sum), and measured
errors stay below 3 ulp (thresholds 0.5 and 1.0 left up to 7 ulp in the three-term branch)."""


def _tweedie(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, power: float
             ) -> tuple[Array, Any]:
    # value: mean_i dev(t_i, m_i), m = y_pred, with a = 1 - power, b = 2 - power:
    #   dev = 2 (max(t, 0)^b / (a b) - t m^a / a + m^b / b); its limits at power 0, 1, 2 are
    #   (t - m)^2, 2 (t log(t/m) - t + m), 2 (log(m/t) + t/m - 1).
    #   For t > 0 write r = t/m = e^L: dev = 2 m^b B(L) with B(L) = (e^(bL) - 1 - b(e^L - 1))/(a b),
    #   which vanishes to second order at L = 0 (the naive sum cancels completely there):
    #   - near (|L| max(1, |a|, |b|) <= NEAR): B = sum_{k>=2} c_k L^k/k!, c_k = 1 + b + ... + b^(k-2);
    #   - a L small (power near 1): B = (e^L E(aL)/a + F(L)) / b, E(x) = e^x - 1 - x,
    #     F(x) = x e^x - e^x + 1; b L small (power near 2): B = (E(bL)/b - E(L)) / a: both finite at
    #     a = 0 or b = 0 and free of the 1/a, 1/b cancellation;
    #   - otherwise the three terms of dev themselves (they no longer cancel much).
    #   L itself is log1p((t - m)/m) near t = m, so it keeps its relative accuracy.
    #   t <= 0 (power <= 0 or t = 0): dev = 2 (-t m^a / a + m^b / b), a sum of non-negative terms.
    # gradient: d dev / dm = 2 (m - t) / m^power = 2 ((m - t)/m) m^a
    n = y_pred.shape[-1]
    t, m = y_true, y_pred
    a, b = 1.0 - power, 2.0 - power
    # (m - t)/m -> 1 at an infinite prediction (inf/inf would give NaN): the gradient's limit is then
    # 2 m^a: +-inf for power 0, 2 for power 1, 0 for power > 1
    ratio = xp.where(xp.isinf(m) & xp.isfinite(t), xp.ones_like(m), (m - t) / m)
    g = 2.0 * ratio * (m ** a if a != 0 else xp.ones_like(m))
    if power == 0:
        d = m - t
        return xp.mean(d * d, axis=-1), (g / n if grad else None)
    one, zero = xp.ones_like(m), xp.zeros_like(m)
    pos = t > 0
    tp = xp.where(pos, t, one)
    u = (tp - m) / m
    near_u = xp.abs(u) <= 0.5
    r = tp / m
    finite_r = (r > 1e-300) & (r < 1e300)
    ell = xp.where(near_u, log1p(xp, xp.where(near_u, u, zero)),
                   xp.where(finite_r, xp.log(xp.where(finite_r, r, one)), xp.log(tp) - xp.log(m)))
    k = max(1.0, abs(a), abs(b))
    near = xp.abs(ell) * k <= NEAR
    coefs, c = [], 1.0
    for j in range(2, 42):
        coefs.append(c / math.factorial(j))
        c = 1.0 + b * c
    e_near = xp.where(near, ell, zero)
    series = _series(xp, e_near, coefs)
    if abs(a) * 1.0 <= abs(b):  # power <= 1.5: the a-form is the safe one
        ga = _expm1_minus_x(xp, a * ell) / a if a != 0 else zero
        mid = (xp.exp(ell) * ga + _xexp_minus_expm1(xp, ell)) / b
        use_mid = xp.abs(a * ell) <= 0.5
    else:
        gb = _expm1_minus_x(xp, b * ell) / b if b != 0 else zero
        mid = (gb - _expm1_minus_x(xp, ell)) / a
        use_mid = xp.abs(b * ell) <= 0.5
    mb = m ** b if b != 0 else one
    scaled = 2.0 * mb * xp.where(near, series, mid)
    if a == 0 or b == 0:
        # powers 1 and 2 far from r = 1 (|L| > FAR): mid rebuilds r as exp(L), whose error grows
        # like |L| eps (107 ulp at r = 1e8 .. 256 ulp at 1e300). There the deviance is a sum that
        # no longer cancels, written with L and r themselves:
        #   power 1: 2 (t (L - 1) + m): L - 1 >= 3 for r > e^4; for r < e^-4 the negative
        #            t (1 - L) <= 0.1 m;
        #   power 2: 2 ((r - 1) - L): r - 1 >= 53 > L for r > e^4; -L >= 4 > 1 - r for r < e^-4.
        # L has an absolute error of about eps (r rounded once, or log t - log m), which is a
        # relative error below eps/4 of these sums.
        far = xp.abs(ell) > FAR
        direct = 2.0 * (tp * (ell - 1.0) + m) if a == 0 else 2.0 * ((r - 1.0) - ell)
        scaled = xp.where(far, direct, scaled)
    else:
        direct = 2.0 * (tp ** b / (a * b) - tp * m ** a / a + mb / b)
        scaled = xp.where(near | use_mid, scaled, direct)
    if power < 2:  # t <= 0 is in the domain (t = 0 for 1 <= power < 2; any t for power < 0)
        rest = 2.0 * mb / b  # t = 0 (the only t <= 0 when power >= 1)
        if a != 0:
            rest = rest + 2.0 * xmul(xp, -t, m ** a) / a
        dev = xp.where(pos, scaled, rest)
    else:
        dev = scaled
    dev = xp.where(xp.isnan(t), t, dev)
    return xp.mean(dev, axis=-1), (g / n if grad else None)


def _check_power(name: str, value: Any) -> float:
    value = check_real(name, value)
    if 0 < value < 1:
        raise ValueError(f"{name} must be <= 0 or >= 1 (no Tweedie distribution has a power in "
                         f"(0, 1)); found {value!r}")
    return value


def _tweedie_domain(opts: Mapping[str, Any]) -> dict[str, Interval]:
    power = opts["power"]
    if power == 0:
        return {}
    if power < 0:
        return {"y_pred": POSITIVE}
    return {"y_true": NONNEGATIVE if power < 2 else POSITIVE, "y_pred": POSITIVE}


MEAN_TWEEDIE_DEVIANCE = LossDef(
    name="mean_tweedie_deviance", class_name="MeanTweedieDeviance", kernel=_tweedie,
    options=(Option("power", 0.0, _check_power,
                    "the Tweedie power: 0 normal, 1 Poisson, (1, 2) compound Poisson-Gamma, 2 Gamma, "
                    "3 inverse Gaussian; <= 0 or >= 1"),),
    domain=_tweedie_domain,
    aliases=("tweedie_deviance", Alias("mean_poisson_deviance", power=1.0)),
    doc=r"""Mean Tweedie deviance over the last axis (scikit-learn's ``mean_tweedie_deviance``).

    .. math:: \ell = \frac{1}{n}\sum_i 2\Bigl(\frac{\max(y_i, 0)^{2-p}}{(1-p)(2-p)} -
              \frac{y_i\,\hat y_i^{1-p}}{1-p} + \frac{\hat y_i^{2-p}}{2-p}\Bigr),\qquad
              \frac{\partial \ell}{\partial \hat y_i} = \frac{2\,(\hat y_i - y_i)}{n\,\hat y_i^{p}}

    with its limits ``(y - y_pred)^2`` at ``p = 0``, ``2 (y log(y/y_pred) - y + y_pred)`` at ``p = 1``
    (Poisson; ``0 log 0 = 0``) and ``2 (log(y_pred/y) + y/y_pred - 1)`` at ``p = 2`` (Gamma).
    Domain (``ValueError`` otherwise): ``p < 0``: ``y_pred > 0``; ``p = 0``: any; ``1 <= p < 2``:
    ``y_true >= 0``, ``y_pred > 0``; ``p >= 2``: both ``> 0``; ``0 < p < 1`` is refused. The
    deviance is 0 at ``y_pred = y_true`` and is computed without the cancellation of the three-term
    formula there (a series in ``log(y/y_pred)``), so near-perfect predictions keep their tiny loss.

    Peers: scikit-learn ``mean_tweedie_deviance(power=p)`` (and ``mean_poisson_deviance``,
    ``mean_gamma_deviance``) averages over everything (losskit's per-sample value is the mean over
    the last axis) and evaluates the three-term formula, which cancels near ``y_pred = y_true``
    (relative error ~ eps / (relative error of the prediction)^2). Its private
    ``_loss.HalfTweedieLoss`` is half the deviance without constant terms, on a log-link raw
    prediction. Keras, PyTorch and Optax have no Tweedie deviance.

    Shapes as for :func:`huber`.

    Example (by hand, p = 3 (inverse Gaussian, dev = (y - m)^2 / (y m^2)): (1 - 2)^2 / (1 * 4) = 0.25
    and 0 for the second element; the mean is 0.125):

    >>> import losskit
    >>> float(losskit.mean_tweedie_deviance([[1.0, 2.0]], [[2.0, 2.0]], power=3)[0])
    0.125
    """)


def _gamma(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value and gradient: the Tweedie deviance at power 2 (see _tweedie):
    #   mean_i 2 (log(m_i/t_i) + t_i/m_i - 1)        gradient: 2 (m_i - t_i) / (m_i^2 n)
    return _tweedie(xp, y_true, y_pred, grad=grad, power=2.0)


MEAN_GAMMA_DEVIANCE = LossDef(
    name="mean_gamma_deviance", class_name="MeanGammaDeviance", kernel=_gamma,
    domain=lambda opts: {"y_true": POSITIVE, "y_pred": POSITIVE},
    aliases=("gamma_deviance",),
    doc=r"""Mean Gamma deviance over the last axis (scikit-learn's ``mean_gamma_deviance``).

    .. math:: \ell = \frac{1}{n}\sum_i 2\Bigl(\log\frac{\hat y_i}{y_i} + \frac{y_i}{\hat y_i} -
              1\Bigr),\qquad \frac{\partial \ell}{\partial \hat y_i} = \frac{2\,(\hat y_i -
              y_i)}{n\,\hat y_i^2}

    :func:`mean_tweedie_deviance` with ``power=2``. Domain: ``y_true > 0`` and ``y_pred > 0``
    (``ValueError`` otherwise). Scale-invariant: it depends on ``y_true/y_pred`` only. Computed
    without the cancellation of ``log(m/y) + y/m - 1`` near ``y_pred = y_true``.

    Peers: scikit-learn ``mean_gamma_deviance`` averages over everything and cancels near
    ``y_pred = y_true``; its private ``_loss.HalfGammaLoss`` is half the deviance up to a constant, on
    a log-link raw prediction. Keras, PyTorch and Optax have none.

    Shapes as for :func:`huber`.

    Example (by hand: 2 (log(2/1) + 1/2 - 1) = 2 log 2 - 1 = 0.3862943611198906 for y = 1,
    y_pred = 2):

    >>> import losskit
    >>> round(float(losskit.mean_gamma_deviance([[1.0]], [[2.0]])[0]), 15)
    0.386294361119891
    """)
