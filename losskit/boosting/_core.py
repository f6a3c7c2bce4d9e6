"""The boosting objectives' declaration type, API, registry and library adapters.

A boosting objective is declared once, as a loss is (:class:`losskit.losses._core.LossDef`): a
:class:`BoostingDef` *is* a ``LossDef`` (name, class name, options as :class:`Option` with the losses'
checks, the ``y_true`` domain as an :class:`Interval`, aliases, option aliases, docstring) plus what
boosting adds: the link between the raw score and the prediction, the kernel class that computes the
gradient and hessian in raw-score space (``losskit.boosting._kernels``), the constant start
(``init_score``) and, where one exists, the name of the same loss in ``losskit.get``'s registry.
:func:`register` builds the public class from the declaration, as :func:`losskit.losses._core.make_class`
does for the losses, and files every name it answers to.

Data flow: arrays -> :meth:`BoostingLoss._prepare` (types, shapes, finiteness, the declared domain,
weights) -> the kernel (float64) -> weights, dtype -> the caller, or a boosting library through
:class:`Objective` / :class:`CatBoostObjective`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..losses._core import Interval, LossDef, Option, check_fraction, check_positive, check_real
from . import _kernels as K

__all__ = ["BoostingDef", "BoostingLoss", "CatBoostObjective", "Link", "Objective", "get", "huber_delta",
           "names", "register"]


# ------------------------------------------------------------------------------------------ options


def _scalar(check: Callable[[str, Any], float]) -> Callable[[str, Any], float]:
    """One of the losses' option checks, also taking a 0-d NumPy array (``np.array(1.5)``, what a
    grid search may hand over) as the number it holds."""

    def run(name: str, value: Any) -> float:
        if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
            value = value[()]
        return check(name, value)

    run.__name__ = check.__name__
    return run


QUANTILE = Option("quantile", 0.5, _scalar(check_fraction),
                  "the quantile the raw score estimates, in [0, 1] (0.5: the median)")
DELTA = Option("delta", 1.0, _scalar(check_positive),
               "where the Huber loss turns from quadratic to linear, > 0")
POWER = Option("power", 1.5, _scalar(check_real),
               "the Tweedie power, any real number (1 Poisson, (1, 2) compound Poisson-Gamma, 2 Gamma)")


# -------------------------------------------------------------------------------------------- links


@dataclass(frozen=True)
class Link:
    """A link: ``raw = link(prediction)``, ``prediction = inverse(raw)``."""

    name: str
    link: Callable[[Any], np.ndarray]
    inverse: Callable[[Any], np.ndarray]


IDENTITY = Link("identity", K.identity_link, K.identity_inverse)
LOG = Link("log", K.log_link, K.log_inverse)
LOGIT = Link("logit", K.logit_link, K.logit_inverse)
HALF_LOGIT = Link("half_logit", K.half_logit_link, K.half_logit_inverse)
MULTINOMIAL_LOGIT = Link("multinomial_logit", K.multinomial_link, K.multinomial_inverse)


# -------------------------------------------------------------------------------------- declaration


def _no_domain(options: Mapping[str, Any]) -> dict[str, Interval]:
    return {}


@dataclass(frozen=True, repr=False)
class BoostingDef(LossDef):
    """A boosting objective, declared once (the fields of :class:`LossDef` plus the following).

    ``kernel(**options)`` builds the object whose ``_value`` / ``_grad_hess`` compute the loss and
    its raw-score derivatives on checked float64 arrays. ``link`` maps predictions to raw scores.
    ``start`` says how :meth:`BoostingLoss.init_score` finds the best constant raw score: ``"mean"``
    (the link of the weighted mean of ``y_true``: every loss whose gradient sums to zero there),
    ``"quantile"`` (the weighted ``quantile``; absolute error: the median) or ``"huber"`` (the
    weighted Huber M-estimate). ``same_as`` names the loss in ``losskit.get``'s registry that is this
    objective composed with the inverse link (constants dropped); ``tests/test_boosting_objectives.py``
    checks that every name both registries accept means the same loss there.
    """

    kernel: Callable[..., Any]  # here: kernel(**options) -> a _kernels.Kernel
    link: Link = IDENTITY
    approx_hessian: bool = False
    multiclass: bool = False
    start: str = "mean"
    same_as: str | None = None

    def __repr__(self) -> str:
        return f"BoostingDef({self.name!r})"


# ------------------------------------------------------------------------------------------- arrays


def _check_domain(name: str, options: Mapping[str, Any], dom: Interval | None, y: np.ndarray,
                  lo: float, hi: float) -> None:
    """Raise unless every ``y`` lies in the declared domain (``lo``, ``hi``: y's min and max decide;
    the offending element is looked for only to name it)."""
    if dom is None or not y.size or not dom.outside(np.array([lo, hi])).any():
        return
    bad = y[dom.outside(y)].ravel()
    if dom.low == 0 and math.isinf(dom.high):
        what = "positive" if dom.low_open else "non-negative"
    else:
        what = f"in {dom}"
    opts = ", ".join(f"{k}={v}" for k, v in options.items())
    raise ValueError(f"y_true for {name} must be {what}{f' ({opts})' if opts else ''}, found {bad[0]}")


# ------------------------------------------------------------------------------------ the loss class


class BoostingLoss:
    """A boosting objective: per-sample loss, gradient and hessian with respect to the raw score.

    Subclasses are generated by :func:`register` from a :class:`BoostingDef`; construct them with
    their options as keywords (``HalfTweedieLoss(power=1.2)``) or through :func:`get`.
    """

    definition: ClassVar[BoostingDef]
    name: ClassVar[str] = ""
    link_name: ClassVar[str] = "identity"
    approx_hessian: ClassVar[bool] = False
    is_multiclass: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        defn = self.definition
        self.options = defn.normalise(options)
        self._kernel: K.Kernel = defn.kernel(**self.options)
        self._domain = defn.domain(self.options).get("y_true")

    def __getattr__(self, item: str) -> Any:  # the options as attributes: loss.quantile, loss.power
        options = self.__dict__.get("options", {})
        if item in options:
            return options[item]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {item!r}")

    # ---- configuration
    def get_config(self) -> dict[str, Any]:
        """The options of this loss (``get(name, **config)`` rebuilds it)."""
        return dict(self.options)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({opts})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoostingLoss) and type(self) is type(other) and (
            self.get_config() == other.get_config())

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    # ---- input handling
    def _prepare(self, y_true: Any, raw_prediction: Any, sample_weight: Any, late: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.dtype, Any]:
        if self.is_multiclass:
            return self._prepare_multiclass(y_true, raw_prediction, sample_weight)
        raw = K._as_float("raw_prediction", raw_prediction, allow_bool=False)
        y = K._as_float("y_true", y_true)
        if y.shape != raw.shape:
            raise ValueError(f"y_true and raw_prediction must have the same shape, found y_true {y.shape} "
                             f"and raw_prediction {raw.shape}")
        dtype = K._out_dtype(raw)
        r64 = raw.astype(K._F64, copy=False)
        y64 = y.astype(K._F64, copy=False)
        w = K._check_weight(sample_weight, y.shape)
        if late:  # the kernel checks r - y instead (_kernels._difference)
            return y64, r64, w, dtype, None
        rlo, rhi = K._check_finite("raw_prediction", r64)
        ylo, yhi = K._check_finite("y_true", y64)
        _check_domain(self.name, self.options, self._domain, y64, ylo, yhi)
        return y64, r64, w, dtype, (rlo, rhi, ylo, yhi)

    def _prepare_multiclass(self, y_true: Any, raw_prediction: Any, sample_weight: Any
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.dtype, Any]:
        raw = K._as_float("raw_prediction", raw_prediction, allow_bool=False)
        if raw.ndim != 2 or raw.shape[1] < 1:
            raise ValueError("raw_prediction must have shape (n_samples, n_classes), found shape "
                             f"{raw.shape}")
        y = K._as_float("y_true", y_true)
        if y.shape != raw.shape[:1]:
            raise ValueError(f"y_true must have shape ({raw.shape[0]},) to match raw_prediction {raw.shape}, "
                             f"found shape {y.shape}")
        dtype = K._out_dtype(raw)
        r64 = raw.astype(K._F64, copy=False)
        rlo, rhi = K._check_finite("raw_prediction", r64)
        y64 = y.astype(K._F64, copy=False)
        ylo, yhi = K._check_finite("y_true", y64)
        k = raw.shape[1]
        if ylo < 0 or yhi >= k or np.any(y64 != np.floor(y64)):
            bad = (y64 != np.floor(y64)) | (y64 < 0) | (y64 >= k)
            raise ValueError(f"y_true for {self.name} must hold integer labels in [0, {k - 1}] "
                             f"(n_classes={k}), found {y64[bad][0]}")
        w = K._check_weight(sample_weight, y.shape)
        return y64, r64, w, dtype, (rlo, rhi, ylo, yhi)

    # ---- values and derivatives
    def loss(self, y_true: Any, raw_prediction: Any, sample_weight: Any = None) -> np.ndarray:
        """Per-sample loss (times ``sample_weight``), shape of ``y_true``."""
        y, r, w, dtype, _bounds = self._prepare(y_true, raw_prediction, sample_weight)
        with np.errstate(all="ignore"):
            v = K._apply_weight(self._kernel._value(y, r), w).astype(dtype, copy=False)
        return np.asarray(v)

    def gradient(self, y_true: Any, raw_prediction: Any, sample_weight: Any = None) -> np.ndarray:
        """Derivative of the per-sample loss with respect to ``raw_prediction``, same shape."""
        return self.gradient_hessian(y_true, raw_prediction, sample_weight)[0]

    def gradient_hessian(self, y_true: Any, raw_prediction: Any, sample_weight: Any = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """``(gradient, hessian)`` of the per-sample loss with respect to ``raw_prediction``.

        Both have the shape and floating dtype of ``raw_prediction`` (float64 for integer input)
        and are multiplied by ``sample_weight`` when given. The formulas are in the class
        docstring.
        """
        kernel = self._kernel
        y, r, w, dtype, bounds = self._prepare(y_true, raw_prediction, sample_weight, kernel.finite_late)
        with np.errstate(all="ignore"):
            g, h = kernel._grad_hess(y, r, bounds)
            g = K._apply_weight(g, w).astype(dtype, copy=False)
            h = K._apply_weight(h, w).astype(dtype, copy=False)
        return np.asarray(g), np.asarray(h)

    # ---- links and the recipe
    def link(self, y_pred: Any) -> np.ndarray:
        """Raw score of a prediction (mean, probability): the link function. NaN gives NaN."""
        return self.definition.link.link(y_pred)

    def inverse_link(self, raw_prediction: Any) -> np.ndarray:
        """Prediction (mean, probability) of a raw score: the inverse link. NaN gives NaN."""
        return self.definition.link.inverse(raw_prediction)

    def init_score(self, y_true: Any, sample_weight: Any = None, *, n_classes: int | None = None
                   ) -> Any:
        """The constant raw score that minimises the weighted loss over ``y_true``: where boosting
        should start (XGBoost's ``base_score``, LightGBM's ``init_score``, CatBoost's ``baseline``).

        Log, logit and identity links with a mean-matching loss (squared error, Poisson, Gamma,
        Tweedie, binomial, exponential): the link of the weighted mean; absolute error and pinball:
        the weighted median / ``quantile`` (the smallest ``y`` whose cumulative weight reaches it);
        Huber: the weighted Huber M-estimate; multinomial: ``log`` of the weighted class frequencies,
        centred to sum 0 (shape ``(n_classes,)``; ``n_classes`` defaults to the largest label + 1).
        A start that is infinite (every label 0 for a log or logit link, an empty class) is refused
        with a ValueError: no constant is best there.

        >>> import numpy as np
        >>> from losskit import boosting
        >>> float(boosting.get("poisson").init_score([1.0, 2.0, 3.0]))   # log(2)
        0.6931471805599453
        """
        y = K._as_float("y_true", y_true).astype(K._F64)
        if y.ndim != 1 or y.size == 0:
            raise ValueError(f"y_true must be a non-empty 1-D array of targets, found shape {y.shape}")
        lo, hi = K._check_finite("y_true", y)
        w = K._check_weight(sample_weight, y.shape)
        w = np.ones_like(y) if w is None else w
        total = float(np.sum(w))
        if not total > 0:
            raise ValueError("sample_weight must not be all zero")
        if self.is_multiclass:
            return self._init_multiclass(y, w, total, n_classes)
        _check_domain(self.name, self.options, self._domain, y, lo, hi)
        start = self.definition.start
        if start == "quantile":
            return _weighted_quantile(y, w, self.options.get("quantile", 0.5))
        if start == "huber":
            return _huber_location(y, w, self.options["delta"])
        mean = float(np.sum(w * y) / total)
        with np.errstate(divide="ignore"):
            c = float(self.link(np.clip(mean, lo, hi)))
        if not math.isfinite(c):
            raise ValueError(f"the weighted mean of y_true is {mean}, whose {self.link_name} link is {c}: "
                             f"{self.name} has no finite best constant raw score for these targets")
        return c

    def _init_multiclass(self, y: np.ndarray, w: np.ndarray, total: float, n_classes: int | None
                         ) -> np.ndarray:
        k = int(np.max(y)) + 1 if n_classes is None else n_classes
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise TypeError(f"n_classes must be a positive integer, found {n_classes!r}")
        if np.min(y) < 0 or np.max(y) >= k or np.any(y != np.floor(y)):
            raise ValueError(f"y_true for {self.name} must hold integer labels in [0, {k - 1}]")
        freq = np.bincount(y.astype(np.intp), weights=w, minlength=k) / total
        if np.any(freq == 0):
            missing = int(np.flatnonzero(freq == 0)[0])
            raise ValueError(f"class {missing} has no weight in y_true: its best constant raw score is "
                             f"-inf; pass the labels it will be trained on (n_classes={k})")
        lp = np.log(freq)
        return np.asarray(lp - np.mean(lp))

    def base_score(self, y_true: Any, sample_weight: Any = None, *, estimator: Any = None) -> Any:
        """The value XGBoost wants in ``base_score`` to start from :meth:`init_score`.

        ``xgboost.train`` and ``XGBRegressor`` run a custom objective under ``reg:squarederror``,
        which reads ``base_score`` as a raw score: the :meth:`init_score` itself (multiclass: the
        vector of per-class raw scores, which XGBoost >= 3.1 accepts). A binary ``XGBClassifier``
        runs it under ``binary:logistic``, which reads ``base_score`` as a *probability* (a raw,
        negative value is refused or turned into predictions of ~1e-6): pass the estimator and
        this gives ``inverse_link(init_score)``, which XGBoost maps back to the same raw score.
        """
        c = self.init_score(y_true, sample_weight)
        if estimator is not None and type(estimator).__name__ == "XGBClassifier" and not self.is_multiclass:
            if self.link_name not in ("logit",):
                raise ValueError(f"a binary XGBClassifier reads base_score through the logit link; "
                                 f"{self.name} has the {self.link_name} link: use XGBRegressor or "
                                 "xgboost.train with this objective")
            return float(self.inverse_link(c))
        return c.tolist() if isinstance(c, np.ndarray) else c

    def raw_score(self, model: Any, X: Any, *, init_score: Any = None) -> np.ndarray:
        """The raw scores of ``model`` on ``X``, plus ``init_score`` (what the model was started
        from when it did not store it: LightGBM's ``init_score``, CatBoost's ``baseline``; an
        XGBoost model started with ``base_score`` has it already).

        ``model``: an ``xgboost.Booster`` or ``XGBModel``, a ``lightgbm.Booster`` or ``LGBMModel``,
        a CatBoost model. Single-output: shape ``(n,)``; multiclass ``(n, n_classes)``.
        """
        lib = type(model).__module__.split(".")[0]
        if lib == "xgboost":
            if type(model).__name__ == "Booster":
                import xgboost

                data = X if isinstance(X, xgboost.DMatrix) else xgboost.DMatrix(X)
                raw = model.predict(data, output_margin=True)
            else:
                raw = model.predict(X, output_margin=True)
        elif lib == "lightgbm":
            raw = model.predict(X, raw_score=True)
        elif lib == "catboost":
            raw = model.predict(X, prediction_type="RawFormulaVal")
        else:
            raise TypeError(f"model must be an XGBoost, LightGBM or CatBoost model, found "
                            f"{type(model).__module__}.{type(model).__name__}")
        raw = np.asarray(raw, dtype=K._F64)
        if self.is_multiclass and raw.ndim == 1:
            raise ValueError(f"{self.name} needs one raw score per class, but the model gives one per "
                             "sample: was it trained with num_class / a multiclass estimator?")
        if not self.is_multiclass and raw.ndim == 2 and raw.shape[1] > 1:
            raise ValueError(f"{self.name} is a single-output loss, but the model gives {raw.shape[1]} "
                             "raw scores per sample")
        if init_score is not None:
            raw = raw + np.asarray(init_score, dtype=K._F64)
        return raw

    def predict(self, model: Any, X: Any, *, init_score: Any = None) -> np.ndarray:
        """Predictions (means, probabilities) of a model trained with this objective: the inverse
        link of :meth:`raw_score`. Binomial: the probability of class 1; multinomial: ``(n, K)``
        class probabilities.

        >>> import numpy as np
        >>> from losskit import boosting
        >>> boosting.get("poisson").inverse_link(np.log([2.0, 5.0]))   # the same map, on raw scores
        array([2., 5.])
        """
        return self.inverse_link(self.raw_score(model, X, init_score=init_score))

    # ---- adapters
    def as_xgboost_objective(self) -> Objective:
        """A custom objective for XGBoost: ``xgboost.train(params, dtrain, obj=...)`` and
        ``XGBRegressor`` / ``XGBClassifier(objective=...)`` (also with ``sample_weight``). See
        :class:`Objective`."""
        return Objective(self)

    def as_lightgbm_objective(self) -> Objective:
        """A custom objective for LightGBM: ``params["objective"] = ...`` in ``lightgbm.train`` and
        ``LGBMRegressor`` / ``LGBMClassifier(objective=...)`` (also with ``sample_weight``). See
        :class:`Objective`."""
        return Objective(self)

    def as_catboost_objective(self) -> CatBoostObjective:
        """A CatBoost ``loss_function`` object (:class:`CatBoostObjective`)."""
        return CatBoostObjective(self)


def _weighted_quantile(y: np.ndarray, w: np.ndarray, q: float) -> float:
    """The smallest ``y`` whose cumulative weight reaches ``q`` of the total (a minimiser of the
    weighted pinball loss; NumPy's ``inverted_cdf``)."""
    order = np.argsort(y, kind="stable")
    cum = np.cumsum(w[order])
    idx = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(y[order][min(idx, y.size - 1)])


def _huber_location(y: np.ndarray, w: np.ndarray, delta: float) -> float:
    """The constant ``c`` minimising ``sum w huber(c - y)``: the zero of the non-decreasing
    ``sum w clip(c - y, -delta, delta)``, by bisection between min(y) and max(y) to the last bit."""
    lo, hi = float(np.min(y)), float(np.max(y))
    for _ in range(2100):  # enough halvings to reach adjacent floats from any finite interval
        mid = lo + (hi - lo) / 2
        if mid in (lo, hi):
            break
        if np.sum(w * np.clip(mid - y, -delta, delta)) < 0:
            lo = mid
        else:
            hi = mid
    return hi


def huber_delta(y_true: Any, raw_prediction: Any, quantile: float = 0.9, sample_weight: Any = None) -> float:
    """scikit-learn's choice of Huber ``delta``: the ``quantile`` of ``|y_true - raw_prediction|``.

    Unweighted, ``numpy.percentile`` with linear interpolation (as scikit-learn's
    ``GradientBoostingRegressor(loss="huber", alpha=quantile)``); weighted, NumPy's
    ``inverted_cdf`` weighted percentile (scikit-learn uses its own ``_weighted_percentile``,
    which may differ by one order statistic). ``quantile`` in [0, 1], checked as the losses' options.

    >>> huber_delta([0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0], quantile=0.5)
    3.0
    """
    q = QUANTILE.check("quantile", quantile)
    y = K._as_float("y_true", y_true).astype(K._F64)
    r = K._as_float("raw_prediction", raw_prediction).astype(K._F64)
    if y.shape != r.shape:
        raise ValueError(f"y_true and raw_prediction must have the same shape, found {y.shape} and {r.shape}")
    if y.size == 0:
        raise ValueError("huber_delta needs at least one sample")
    K._check_finite("y_true", y)
    K._check_finite("raw_prediction", r)
    with np.errstate(over="ignore"):  # |y - r| beyond the largest float is inf, its true rank
        err = np.abs(y - r).ravel()
    w = K._check_weight(sample_weight, y.shape)
    if w is None:
        return float(np.percentile(err, 100.0 * q))
    if not np.sum(w) > 0:
        raise ValueError("sample_weight must not be all zero")
    return _weighted_quantile(err, w.ravel(), q)


# ----------------------------------------------------------------------------------------- adapters


def _is_dataset(x: Any) -> bool:
    """An ``xgboost.DMatrix`` or a ``lightgbm.Dataset`` (what the native APIs pass)."""
    return hasattr(x, "get_label") and hasattr(x, "get_weight")


class Objective:
    """A losskit boosting loss as a custom objective for XGBoost and LightGBM, both APIs each.

    One callable serves the four calling conventions:

    * XGBoost native, ``xgboost.train(params, dtrain, obj=f)``: ``f(preds, dtrain)``;
    * LightGBM native, ``params["objective"] = f`` in ``lightgbm.train``: ``f(preds, train_set)``;
      labels and weights are read from the ``DMatrix`` / ``Dataset`` (an empty or missing weight
      array means unweighted);
    * XGBoost scikit-learn API, ``XGBRegressor(objective=f)``: ``f(y_true, y_pred)`` or, when ``fit``
      has a ``sample_weight``, ``f(y_true, y_pred, sample_weight=w)`` (XGBoost looks for that
      parameter name);
    * LightGBM scikit-learn API, ``LGBMRegressor(objective=f)``: LightGBM counts three parameters and
      passes the weights third (``None`` when unweighted).

    ``preds`` are raw scores. Multiclass: ``(n, K)`` (XGBoost >= 2, LightGBM >= 4), or the flat
    layouts of older versions (XGBoost row-major ``n*K``, LightGBM class-major ``preds[k*n + i]``);
    the gradient and hessian come back in the layout they came in. A single-output loss given
    several scores per sample, or the multinomial loss given one, is refused with a message that
    says which to use.
    """

    def __init__(self, loss: BoostingLoss) -> None:
        if not isinstance(loss, BoostingLoss):
            raise TypeError(f"loss must be a losskit.boosting loss, found {type(loss).__name__}")
        self.loss = loss
        self.__name__ = f"{loss.name}_objective"

    def __repr__(self) -> str:
        return f"Objective({self.loss!r})"

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if _is_dataset(y_pred):  # native: (preds, dataset)
            if sample_weight is not None:
                raise TypeError("a native objective is called as f(preds, dataset), without weights "
                                "(they are read from the dataset)")
            preds, data = y_true, y_pred
            y = np.asarray(data.get_label())
            wv = data.get_weight()
            w = None if wv is None or np.size(wv) == 0 else np.asarray(wv)
            layout = "lightgbm" if type(data).__module__.startswith("lightgbm") else "xgboost"
        elif _is_dataset(y_true):
            raise TypeError(f"the objective got a {type(y_true).__name__} first: native APIs call it "
                            "as f(preds, dataset), scikit-learn APIs as f(y_true, y_pred)")
        else:
            preds, y = y_pred, np.asarray(y_true)
            w = None if sample_weight is None or np.size(sample_weight) == 0 else sample_weight
            layout = "auto"
        p = np.asarray(preds)
        p2, flat = self._shape(y, p, layout)
        g, h = self.loss.gradient_hessian(y, p2, w)
        if flat == "F":  # back to LightGBM < 4's class-major layout
            return g.T.reshape(-1), h.T.reshape(-1)
        return g.reshape(p.shape), h.reshape(p.shape)

    def _shape(self, y: np.ndarray, p: np.ndarray, layout: str) -> tuple[np.ndarray, str]:
        """``preds`` as the loss takes them, and ``"F"`` when they came flat and class-major."""
        loss = self.loss
        n = y.shape[0] if y.ndim else 1
        if loss.is_multiclass:
            if p.ndim == 2:
                return p, ""
            if p.ndim == 1 and p.size == n:
                raise ValueError(
                    f"{loss.name} needs one raw score per class, but the model gives one per sample: "
                    "set num_class (XGBoost, LightGBM native) or use a multiclass estimator; for two "
                    "classes use boosting.get('binomial_loss')")
            if n == 0 or p.size % n:
                raise ValueError(f"preds of size {p.size} do not hold a whole number of classes for "
                                 f"{n} labels")
            k = p.size // n
            if layout == "lightgbm":  # LightGBM < 4: class-major
                return p.reshape(k, n).T, "F"
            return p.reshape(n, k), ""  # XGBoost < 2 (and any other flat caller): row-major
        if p.ndim == 2 and p.shape[1] > 1 and y.ndim == 1:
            raise ValueError(
                f"{loss.name} is a single-output objective, but the model gives {p.shape[1]} raw scores "
                "per sample (a multiclass model): use boosting.get('multinomial_loss'), or a regressor / "
                "binary classifier")
        if p.ndim == 2 and p.shape[1] == 1 and y.ndim == 1:
            return p[:, 0], ""
        return p, ""


class CatBoostObjective:
    """A losskit boosting loss as CatBoost's ``loss_function`` object.

    ``CatBoostRegressor(loss_function=boosting.get("poisson").as_catboost_objective(),
    eval_metric="Poisson")``. CatBoost *maximises*: it wants the derivatives of the negated loss,
    so ``calc_ders_range`` returns ``(-gradient, -hessian)`` per sample (times the weight), and
    ``calc_ders_multi`` (multiclass, ``CatBoostClassifier(loss_function=..., eval_metric=
    "MultiClass")``) returns ``-gradient`` and the diagonal ``-hessian`` as a K x K matrix.
    CatBoost requires an ``eval_metric`` with a custom objective and reads the class's source with
    ``inspect``: this class lives in an importable module, so it can.
    """

    def __init__(self, loss: BoostingLoss) -> None:
        if not isinstance(loss, BoostingLoss):
            raise TypeError(f"loss must be a losskit.boosting loss, found {type(loss).__name__}")
        self.loss = loss

    def __repr__(self) -> str:
        return f"CatBoostObjective({self.loss!r})"

    def calc_ders_range(self, approxes: Any, targets: Any, weights: Any) -> list[tuple[float, float]]:
        """``[(der1, der2), ...]`` for the samples of one call (CatBoost's single-output API)."""
        if self.loss.is_multiclass:
            raise TypeError(f"{self.loss.name} is multiclass: CatBoost calls calc_ders_multi for it "
                            "(use CatBoostClassifier with a MultiClass eval_metric)")
        r = np.fromiter(approxes, dtype=K._F64, count=len(approxes))
        y = np.fromiter(targets, dtype=K._F64, count=len(targets))
        w = None if weights is None else np.fromiter(weights, dtype=K._F64, count=len(weights))
        g, h = self.loss.gradient_hessian(y, r, w)
        return list(zip((-g).tolist(), (-h).tolist(), strict=True))

    def calc_ders_multi(self, approx: Any, target: Any, weight: Any) -> tuple[list[float], list[list[float]]]:
        """``(der1, der2)`` of one sample: K first derivatives and the K x K second-derivative
        matrix (diagonal; CatBoost's multiclass API)."""
        if not self.loss.is_multiclass:
            raise TypeError(f"{self.loss.name} is a single-output loss: CatBoost calls calc_ders_range "
                            "for it")
        r = np.fromiter(approx, dtype=K._F64, count=len(approx))[None, :]
        g, h = self.loss.gradient_hessian(np.array([float(target)]), r,
                                          None if weight is None else np.array([float(weight)]))
        k = r.shape[1]
        der2 = np.zeros((k, k))
        der2[np.arange(k), np.arange(k)] = -h[0]
        return (-g[0]).tolist(), der2.tolist()


# ----------------------------------------------------------------------------------------- registry

_DEFINITIONS: dict[str, BoostingDef] = {}
_CLASSES: dict[str, type[BoostingLoss]] = {}
_BY_NAME: dict[str, str] = {}  # lower-cased name or alias -> definition name


def register(defn: BoostingDef) -> type[BoostingLoss]:
    """Build an objective's class from its declaration and file every name it answers to (names are
    matched case-insensitively)."""
    cls = type(defn.class_name, (BoostingLoss,), {
        "definition": defn, "name": defn.name, "link_name": defn.link.name,
        "approx_hessian": defn.approx_hessian, "is_multiclass": defn.multiclass,
        "__module__": "losskit.boosting", "__qualname__": defn.class_name, "__doc__": defn.doc})

    def __init__(self: BoostingLoss, **options: Any) -> None:
        BoostingLoss.__init__(self, **options)

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default)
               for o in defn.options]
    __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]
    _DEFINITIONS[defn.name] = defn
    _CLASSES[defn.name] = cls
    for name in (defn.name, defn.class_name, *defn.aliases):
        key = name.lower()
        if _BY_NAME.get(key, defn.name) != defn.name:
            raise ValueError(f"the boosting name {name!r} is registered twice")
        _BY_NAME[key] = defn.name
    return cls


def names() -> list[str]:
    """Every name and alias :func:`get` accepts (lower case; matching ignores case), sorted."""
    return sorted(_BY_NAME)


def definitions() -> list[BoostingDef]:
    """The declaration of every boosting objective."""
    return list(_DEFINITIONS.values())


def get(identifier: str | BoostingLoss, **options: Any) -> BoostingLoss:
    """A boosting loss by scikit-learn name (``"poisson_loss"``), alias (``"poisson"``,
    ``"HalfPoissonLoss"``, any case) or instance, with its options as keywords.

    >>> get("tweedie", power=1.2)
    HalfTweedieLoss(power=1.2)
    >>> get("quantile", alpha=0.9)
    PinballLoss(quantile=0.9)
    """
    if isinstance(identifier, BoostingLoss):
        if options:
            raise TypeError("options cannot be given with a loss instance")
        return identifier
    if not isinstance(identifier, str):
        raise TypeError("identifier must be a loss name or a BoostingLoss, found "
                        f"{type(identifier).__name__}")
    key = identifier.strip().lower()
    if key not in _BY_NAME:
        known = ", ".join(sorted(_DEFINITIONS))
        raise ValueError(f"unknown boosting loss {identifier!r}; known: {known} (and aliases: "
                         "losskit.boosting.names())")
    return _CLASSES[_BY_NAME[key]](**options)
