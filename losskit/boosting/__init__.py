"""Gradient and hessian of the pointwise losses used by gradient boosting, in raw-score space.

Gradient-boosting libraries (scikit-learn's HistGradientBoosting, XGBoost, LightGBM) fit trees to
the first and second derivatives of a loss with respect to the *raw prediction* ``r`` (the score
before the inverse link), one sample at a time. This module gives them exactly, for the losses and
links of scikit-learn's private ``sklearn._loss`` module, under its names and "half" conventions:

===================== ============================== =========================== ===============
name (aliases)        class                          link: ``y_pred = ...``      options
===================== ============================== =========================== ===============
``squared_error``     :class:`HalfSquaredError`      ``r`` (identity)
``mean_squared_error`` :class:`MeanSquaredError`     ``r`` (identity)            (``mse``: twice the above)
``absolute_error``    :class:`AbsoluteError`         ``r`` (identity)
``pinball_loss``      :class:`PinballLoss`           ``r`` (identity)            ``quantile``
``huber_loss``        :class:`HuberLoss`             ``r`` (identity)            ``delta``
``poisson_loss``      :class:`HalfPoissonLoss`       ``exp(r)`` (log link)
``gamma_loss``        :class:`HalfGammaLoss`         ``exp(r)`` (log link)
``tweedie_loss``      :class:`HalfTweedieLoss`       ``exp(r)`` (log link)       ``power``
``binomial_loss``     :class:`HalfBinomialLoss`      ``expit(r)`` (logit link)
``multinomial_loss``  :class:`HalfMultinomialLoss`   ``softmax(r)`` over classes
``exponential_loss``  :class:`ExponentialLoss`       ``expit(2 r)`` (half logit)
===================== ============================== =========================== ===============

Every loss has ``loss``, ``gradient`` and ``gradient_hessian`` taking
``(y_true, raw_prediction, sample_weight=None)``; the results have the shape of ``raw_prediction``
and are multiplied by ``sample_weight`` when it is given (no reduction: boosting needs them per
sample). ``link`` / ``inverse_link`` convert between predictions and raw scores; ``init_score``
gives the best constant raw score to start boosting from, ``predict(model, X)`` a trained model's
means or probabilities; ``as_xgboost_objective()`` / ``as_lightgbm_objective()`` (one
:class:`Objective` for both libraries and both of their APIs) and ``as_catboost_objective()`` wrap
the loss as a custom objective (``docs/boosting.md`` has the recipe for each library).

Each objective is declared once in :mod:`losskit.boosting.objectives` (a :class:`BoostingDef`, the
losses' ``LossDef`` with a link and a raw-score kernel): options, domains and checks are the
losses'; a name that ``losskit.get`` also accepts means the same loss there, on the prediction
instead of the raw score.

Accuracy. Gradients and hessians are within 8 ulp of the exact derivative (measured against
mpmath, ``tests/test_boosting.py``; the worst measured is 1.8 ulp) for finite inputs, in float64
and float32, including raw scores of +-700 and +-1000 and the neighbourhood of the optimum, where
``exp(r) - y`` (log link), ``sigmoid(r) - y`` (soft binomial labels) and
``(1 - y) exp(r) - y exp(-r)`` (exponential loss) cancel. Each sample takes the cheapest of four
tiers that keeps the bound (the error budgets are in the comments of the kernels): plain float64
where the terms are far enough apart (for Poisson, while ``|exp(r) - y|`` is at least a quarter of
the binade of ``exp(r)``); an exponential from a 2048-entry table to 2**-62
(``_kernels._exp_mid``) near the optimum; the same to 2**-76 (``_kernels._exp_precise``) where the terms
agree to 2**-10; and, where they agree to 2**-22 or better or the raw score is beyond about
+-650, double-double numbers scaled by a power of two (``_kernels._exp_parts``, about 2**-104
relative), so nothing overflows before the result does and a cancellation keeps ~100 bits. The
one exception:
where the terms cancel to less than 2**-40 of their size, e.g. at a perfect prediction
``r = fl(log y)``, the gradient is within 2**-100 of the larger term rather than 8 ulp of itself
(measured: up to 28 ulp of a gradient of ~1e-16 * y; scikit-learn has no correct digit there).
Results whose exact value lies beyond the largest float are ``inf``; below the smallest
subnormal they are ``0`` (e.g. the binomial hessian ``e**-1000``), never NaN. float16/float32
inputs are computed in float64 and rounded once (other floating types give float64). Speed
(``docs/boosting-speed.md``, against scikit-learn's Cython loops on the same arrays): the log-link
and binomial losses run their first tiers in one compiled loop (``losskit/_backends/_cpu.c``) and
are about as fast as scikit-learn, absolute error, pinball and Huber one compiled elementwise pass
(1.2-1.6x); the multinomial loss runs class by class over chunks of rows (1.1-1.5x; its results
are column-major), the others in cache-sized chunks of NumPy operations (1.0-1.5x); soft
binomial/exponential labels that cancel cost 8-10x.

Conventions (and where they differ from scikit-learn):

* Zero or undefined hessians: the absolute-error, pinball and Huber hessians are reported as the
  constant ``1`` (times ``sample_weight``): the exact value is ``0`` almost everywhere (outside
  ``delta`` for Huber) and undefined at the kink, and Newton steps need a positive curvature.
  scikit-learn does the same for absolute error and pinball (``approx_hessian = True``) but
  returns ``0`` for Huber outside ``delta``; ``1`` makes the Huber hessian constant, an upper
  bound of the true curvature (so a Newton step never overshoots the minimum of the quadratic
  model's majorant) and never zero. ``approx_hessian`` is ``True`` on these three classes.
* Kinks: at ``r == y`` the absolute-error gradient is ``0`` and the pinball gradient is
  ``0.5 - quantile`` (the mean of the two one-sided slopes, losskit's convention everywhere);
  scikit-learn returns ``-1`` and ``-quantile`` there.
* Huber ``delta`` is a fixed option (default ``1.0``, as Keras, PyTorch and Optax). scikit-learn's
  ``HuberLoss(quantile=0.9)`` re-estimates ``delta`` as that quantile of ``|y_true - r|`` at every
  boosting stage; :func:`huber_delta` computes that estimate so a caller can do the same.
* Tweedie ``power``: any real power, as scikit-learn; the hessian is positive only for
  ``1 <= power <= 2`` (outside, the log-link Tweedie deviance is not convex in ``r`` and the
  exact, possibly negative, hessian is returned). XGBoost and LightGBM accept ``1 < power < 2``.
* Binomial and exponential losses accept any ``y_true`` in ``[0, 1]`` (soft labels), as
  scikit-learn; multinomial labels are integers ``0 <= y < n_classes`` (any integer or
  integer-valued float dtype).
* Loss values follow scikit-learn exactly, constant terms dropped where it drops them (so the
  Poisson, Gamma and Tweedie values can be negative, and Tweedie is not continuous in ``power``).
  They are accurate to a few ulp of their largest term; only the derivatives carry the 8-ulp
  guarantee near the zero crossings of the value.

Example:

>>> import numpy as np
>>> from losskit import boosting
>>> loss = boosting.get("poisson_loss")
>>> g, h = loss.gradient_hessian(np.array([0.0, 3.0]), np.array([0.0, 1.0]))
>>> g, h
(array([ 1.        , -0.28171817]), array([1.        , 2.71828183]))

Near the optimum the cancellation in ``exp(r) - y`` costs nothing: at ``r = fl(log 2)`` the
gradient is ``exp(r) - 2`` to the last digit (scikit-learn returns 0 here, and loses about
``log10(1/|r - log y|)`` digits near the optimum: 5 of 16 at a relative distance of 1e-5):

>>> float(loss.gradient([2.0], [np.log(2.0)])[0])
-4.638093627e-17
"""

from . import objectives
from ._core import (
    BoostingDef,
    BoostingLoss,
    CatBoostObjective,
    Link,
    Objective,
    definitions,
    get,
    huber_delta,
    names,
)
from ._kernels import _exp_parts  # noqa: F401  (tests/test_double.py checks it through this name)
from .objectives import (
    AbsoluteError,
    ExponentialLoss,
    HalfBinomialLoss,
    HalfGammaLoss,
    HalfMultinomialLoss,
    HalfPoissonLoss,
    HalfSquaredError,
    HalfTweedieLoss,
    HuberLoss,
    MeanSquaredError,
    PinballLoss,
)

__all__ = [
    "AbsoluteError", "BoostingDef", "BoostingLoss", "CatBoostObjective", "ExponentialLoss",
    "HalfBinomialLoss", "HalfGammaLoss", "HalfMultinomialLoss", "HalfPoissonLoss", "HalfSquaredError",
    "HalfTweedieLoss", "HuberLoss", "Link", "MeanSquaredError", "Objective", "PinballLoss",
    "definitions", "get", "huber_delta", "names", "objectives",
]
