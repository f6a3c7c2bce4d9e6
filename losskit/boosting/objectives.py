"""The boosting objectives, each declared once (:class:`BoostingDef`) and registered.

A declaration names the objective, its class, aliases, options (the losses' :class:`Option` and
checks), the ``y_true`` domain (the losses' :class:`Interval`), the link, the kernel class of
:mod:`losskit.boosting._kernels` and, where ``losskit.get`` knows the same loss on predictions, its
name there (``same_as``). A name both registries accept means the same loss in both; the one
deliberate difference is the argument: boosting takes the raw score, ``losskit.get`` the prediction
(``losskit.get("poisson")`` is ``y_pred - y log y_pred``, ``boosting.get("poisson")`` is the same
at ``y_pred = exp(r)``: ``exp(r) - y r``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..losses._core import NONNEGATIVE, POSITIVE, UNIT, Interval
from . import _kernels as K
from ._core import (
    DELTA,
    HALF_LOGIT,
    LOG,
    LOGIT,
    MULTINOMIAL_LOGIT,
    POWER,
    QUANTILE,
    BoostingDef,
    register,
)


def _unit(options: Mapping[str, Any]) -> dict[str, Interval]:
    return {"y_true": UNIT}


def _nonnegative(options: Mapping[str, Any]) -> dict[str, Interval]:
    return {"y_true": NONNEGATIVE}


def _positive(options: Mapping[str, Any]) -> dict[str, Interval]:
    return {"y_true": POSITIVE}


def _tweedie_domain(options: Mapping[str, Any]) -> dict[str, Interval]:
    """``y`` real for ``power <= 0``, ``y >= 0`` for ``0 < power < 2``, ``y > 0`` from 2 on
    (scikit-learn's ``HalfTweedieLoss``; unlike ``mean_tweedie_deviance``, any real power is
    accepted: the raw-score function is defined for all of them)."""
    p = options["power"]
    if p <= 0:
        return {}
    return {"y_true": NONNEGATIVE if p < 2 else POSITIVE}


SQUARED_ERROR = BoostingDef(
    name="squared_error", class_name="HalfSquaredError", kernel=K.SquaredKernel,
    aliases=("half_squared_error", "l2", "reg:squarederror", "regression"),
    doc="""Half squared error, identity link (scikit-learn ``HalfSquaredError``; XGBoost's
    ``reg:squarederror``, LightGBM's ``l2``).

    ``loss = (r - y)**2 / 2``, ``gradient = r - y``, ``hessian = 1``; ``y`` real.
    ``"mse"`` is :class:`MeanSquaredError` (twice this, as ``losskit.get("mse")``).

    >>> HalfSquaredError().gradient_hessian([1.0, 2.0], [1.5, 0.0])
    (array([ 0.5, -2. ]), array([1., 1.]))
    """)
HalfSquaredError = register(SQUARED_ERROR)

class _DoubledSquared(K.SquaredKernel):
    """``(r - y)**2`` and its derivatives: the half squared error's, doubled (exactly)."""

    def _value(self, y: Any, r: Any) -> Any:
        return 2.0 * super()._value(y, r)

    def _grad_hess(self, y: Any, r: Any, bounds: Any = None) -> Any:
        g, h = super()._grad_hess(y, r, bounds)
        g *= 2.0
        h *= 2.0
        return g, h


MEAN_SQUARED_ERROR = BoostingDef(
    name="mean_squared_error", class_name="MeanSquaredError", kernel=_DoubledSquared,
    aliases=("mse",), same_as="mean_squared_error",
    doc="""Squared error, identity link: the per-sample loss of ``losskit.get("mse")``.

    ``loss = (r - y)**2``, ``gradient = 2 (r - y)``, ``hessian = 2``; ``y`` real. Twice
    :class:`HalfSquaredError` (the doubling is exact), so a Newton step and the trees it grows are
    the same; only ``reg_lambda`` / ``min_child_weight``, which compare with the hessian sum, act
    at half strength.

    >>> MeanSquaredError().gradient_hessian([1.0, 2.0], [1.5, 0.0])
    (array([ 1., -4.]), array([2., 2.]))
    """)
MeanSquaredError = register(MEAN_SQUARED_ERROR)

ABSOLUTE_ERROR = BoostingDef(
    name="absolute_error", class_name="AbsoluteError", kernel=K.AbsoluteKernel, approx_hessian=True,
    aliases=("absolute", "l1", "mae", "mean_absolute_error"), start="quantile", same_as="mean_absolute_error",
    doc="""Absolute error, identity link (scikit-learn ``AbsoluteError``).

    ``loss = |r - y|``, ``gradient = sign(r - y)`` (``0`` at ``r == y``), ``hessian = 1``: the
    exact hessian is 0 (undefined at the kink); 1 is scikit-learn's ``approx_hessian`` value.

    >>> AbsoluteError().gradient_hessian([1.0, 2.0, 3.0], [1.5, 0.0, 3.0])
    (array([ 1., -1.,  0.]), array([1., 1., 1.]))
    """)
AbsoluteError = register(ABSOLUTE_ERROR)

PINBALL = BoostingDef(
    name="pinball_loss", class_name="PinballLoss", kernel=K.PinballKernel, approx_hessian=True,
    options=(QUANTILE,), option_aliases={"alpha": "quantile"}, start="quantile",
    aliases=("pinball", "quantile", "reg:quantileerror"), same_as="pinball",
    doc="""Pinball (quantile) loss, identity link (scikit-learn ``PinballLoss(quantile)``).

    With ``q = quantile`` in ``[0, 1]`` (``alpha`` also accepted, as ``losskit.get("pinball")``
    does) and ``u = y - r``: ``loss = q*u`` if ``u >= 0`` else ``(q - 1)*u``; ``gradient = -q`` if
    ``r < y``, ``1 - q`` if ``r > y``, ``1/2 - q`` at ``r == y``; ``hessian = 1``
    (``approx_hessian``, the exact value being 0). ``2 * PinballLoss(quantile=0.5)`` is
    :class:`AbsoluteError`. scikit-learn refuses ``q`` of exactly 0 or 1; losskit accepts them
    (a one-sided loss) as its ``pinball`` does.

    >>> PinballLoss(quantile=0.25).gradient_hessian([1.0, 1.0, 1.0], [0.0, 2.0, 1.0])
    (array([-0.25,  0.75,  0.25]), array([1., 1., 1.]))
    """)
PinballLoss = register(PINBALL)

HUBER = BoostingDef(
    name="huber_loss", class_name="HuberLoss", kernel=K.HuberKernel, approx_hessian=True,
    options=(DELTA,), aliases=("huber",), start="huber", same_as="huber",
    doc="""Huber loss with a fixed ``delta``, identity link (scikit-learn ``HuberLoss``).

    With ``d = r - y``: ``loss = d**2/2`` if ``|d| <= delta`` else ``delta*(|d| - delta/2)``;
    ``gradient = d`` if ``|d| <= delta`` else ``delta*sign(d)``; ``hessian = 1`` everywhere (the
    exact hessian is 0 outside ``delta``, where scikit-learn returns 0; 1 is an upper bound of the
    curvature, so a Newton leaf is never a division by zero). scikit-learn re-estimates ``delta``
    from the data (:func:`huber_delta`); here it is an option (> 0), as in ``losskit.get("huber")``.

    >>> HuberLoss(delta=1.0).gradient_hessian([0.0, 0.0], [0.5, -3.0])
    (array([ 0.5, -1. ]), array([1., 1.]))
    """)
HuberLoss = register(HUBER)

POISSON = BoostingDef(
    name="poisson_loss", class_name="HalfPoissonLoss", kernel=lambda: K.TweedieKernel(power=1.0),
    link=LOG, domain=_nonnegative, aliases=("poisson", "half_poisson", "count:poisson"), same_as="poisson",
    doc="""Half Poisson deviance with log link (scikit-learn ``HalfPoissonLoss``).

    ``loss = exp(r) - y r``, ``gradient = exp(r) - y``, ``hessian = exp(r)``; ``y >= 0``. This is
    ``losskit.get("poisson")`` (``y_pred - y log y_pred``) at ``y_pred = exp(r)``.

    >>> HalfPoissonLoss().gradient_hessian([1.0, 3.0], [0.0, 0.0])
    (array([ 0., -2.]), array([1., 1.]))
    """)
HalfPoissonLoss = register(POISSON)

GAMMA = BoostingDef(
    name="gamma_loss", class_name="HalfGammaLoss", kernel=lambda: K.TweedieKernel(power=2.0),
    link=LOG, domain=_positive, aliases=("gamma", "half_gamma", "reg:gamma"),
    doc="""Half Gamma deviance with log link (scikit-learn ``HalfGammaLoss``).

    ``loss = r + y exp(-r)``, ``gradient = 1 - y exp(-r)``, ``hessian = y exp(-r)``; ``y > 0``.
    (``losskit.mean_gamma_deviance`` is twice this plus terms in ``y`` alone.)

    >>> HalfGammaLoss().gradient_hessian([1.0, 2.0], [0.0, 0.0])
    (array([ 0., -1.]), array([1., 2.]))
    """)
HalfGammaLoss = register(GAMMA)

TWEEDIE = BoostingDef(
    name="tweedie_loss", class_name="HalfTweedieLoss", kernel=K.TweedieKernel, link=LOG,
    options=(POWER,), domain=_tweedie_domain, aliases=("tweedie", "half_tweedie", "reg:tweedie"),
    doc="""Half Tweedie deviance with log link (scikit-learn ``HalfTweedieLoss(power)``).

    With ``p = power`` (any real number; ``losskit.mean_tweedie_deviance`` refuses ``0 < p < 1``,
    where no distribution exists, but the raw-score function is defined there) and constant terms
    dropped as scikit-learn does: ``loss = exp((2-p) r)/(2-p) - y exp((1-p) r)/(1-p)`` (``p`` not
    0, 1, 2); ``p = 0``: ``(exp(r) - y)**2 / 2``; ``p = 1``: ``exp(r) - y r``; ``p = 2``:
    ``r + y exp(-r)``. For every ``p``: ``gradient = exp((2-p) r) - y exp((1-p) r)`` and
    ``hessian = (2-p) exp((2-p) r) - (1-p) y exp((1-p) r)``. ``y`` real for ``p <= 0``,
    ``y >= 0`` for ``0 < p < 2``, ``y > 0`` for ``p >= 2``. The hessian is positive for
    ``1 <= p <= 2``; outside that range the loss is not convex in ``r`` and the exact hessian can
    be negative. XGBoost and LightGBM accept ``1 < p < 2``.

    >>> import numpy as np
    >>> g, h = HalfTweedieLoss(power=1.5).gradient_hessian([4.0], [np.log(4.0)])
    >>> g, h
    (array([0.]), array([1.]))
    """)
HalfTweedieLoss = register(TWEEDIE)

BINOMIAL = BoostingDef(
    name="binomial_loss", class_name="HalfBinomialLoss", kernel=K.BinomialKernel, link=LOGIT,
    domain=_unit, targets="binary",
    aliases=("binomial", "half_binomial", "log_loss", "logistic", "binary:logistic", "binary"),
    same_as="binary_crossentropy",
    doc="""Binary log loss with logit link (scikit-learn ``HalfBinomialLoss``).

    ``loss = log(1 + exp(r)) - y r = y softplus(-r) + (1 - y) softplus(r)``,
    ``gradient = sigmoid(r) - y``, ``hessian = sigmoid(r) sigmoid(-r) = e/(1 + e)**2`` with
    ``e = exp(-|r|)``; ``y`` in ``[0, 1]`` (soft labels allowed). The hessian is finite
    everywhere: ``e**r`` to full accuracy down to the underflow threshold.

    >>> HalfBinomialLoss().gradient_hessian([1.0, 0.0], [0.0, 0.0])
    (array([-0.5,  0.5]), array([0.25, 0.25]))
    """)
HalfBinomialLoss = register(BINOMIAL)

MULTINOMIAL = BoostingDef(
    name="multinomial_loss", class_name="HalfMultinomialLoss", kernel=K.MultinomialKernel,
    link=MULTINOMIAL_LOGIT, targets="index", multiclass=True,
    aliases=("multinomial", "half_multinomial", "categorical_crossentropy", "softmax", "multiclass",
             "multi:softprob"),
    same_as="categorical_crossentropy",
    doc="""Categorical cross-entropy with softmax link (scikit-learn ``HalfMultinomialLoss``).

    ``raw_prediction`` has shape ``(n, K)``, ``y_true`` shape ``(n,)`` with integer labels
    ``0 <= y < K`` (integer-valued floats accepted; ``losskit.get("categorical_crossentropy")`` takes
    the same labels one-hot), ``sample_weight`` shape ``(n,)``. With ``p = softmax(r)`` over the
    classes: ``loss = logsumexp(r) - r[y]``, ``gradient[k] = p[k] - [k == y]``,
    ``hessian[k] = p[k] (1 - p[k])`` (the diagonal of the class hessian, as scikit-learn and the
    boosting libraries). ``1 - p[k]`` is computed as the sum of the other probabilities, so a
    confident row keeps its tiny gradient and hessian. For raw scores within +-300 and up to 128
    classes (the fast path, which computes class by class) the gradient and hessian come back in
    column-major (Fortran) order; ``np.ascontiguousarray`` gives row-major arrays.

    >>> g, h = HalfMultinomialLoss().gradient_hessian([0], [[0.0, 0.0]])
    >>> g, h
    (array([[-0.5,  0.5]]), array([[0.25, 0.25]]))
    """)
HalfMultinomialLoss = register(MULTINOMIAL)

EXPONENTIAL = BoostingDef(
    name="exponential_loss", class_name="ExponentialLoss", kernel=K.ExponentialKernel, link=HALF_LOGIT,
    domain=_unit, targets="binary", aliases=("exponential", "adaboost"),
    doc="""Exponential (AdaBoost) loss with half-logit link (scikit-learn ``ExponentialLoss``).

    ``loss = y exp(-r) + (1 - y) exp(r)``, ``gradient = (1 - y) exp(r) - y exp(-r)``,
    ``hessian = loss``; ``y`` in ``[0, 1]``; ``y_pred = expit(2 r)``.

    >>> ExponentialLoss().gradient_hessian([1.0, 0.0], [0.0, 0.0])
    (array([-1.,  1.]), array([1., 1.]))
    """)
ExponentialLoss = register(EXPONENTIAL)


__all__ = [
    "AbsoluteError", "ExponentialLoss", "HalfBinomialLoss", "HalfGammaLoss", "HalfMultinomialLoss",
    "HalfPoissonLoss", "HalfSquaredError", "HalfTweedieLoss", "HuberLoss", "MeanSquaredError",
    "PinballLoss",
]
