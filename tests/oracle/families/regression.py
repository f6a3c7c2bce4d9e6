"""Oracle entries of the regression catalog (issue 4): terms written from each loss's definition in
mpmath, the regimes of inputs each loss must be exact on, and the peers that have it.

A regime draws at most 16 rows of ``N`` columns and casts them to the dtype; the oracle then sees the
cast values exactly. Scales are per dtype so that the results stay normal numbers of that dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from ..catalog import Entry
from ..peers import jax_peer, keras_peer, torch_peer, values_only
from ..reference import DomainError, Spec

N = 5  # columns of every regime
ROWS = 12
Arrays = dict[str, np.ndarray]


# --------------------------------------------------------------------------------------- helpers


def _f64(dtype: Any) -> bool:
    return np.dtype(dtype) == np.float64


def _cast(dtype: Any, **arrays: Any) -> Arrays:
    return {k: np.asarray(v, dtype=np.float64).astype(dtype) for k, v in arrays.items()}


def _near(rng: np.random.Generator, t: np.ndarray, dtype: Any, ulps: int = 64) -> np.ndarray:
    """``t`` moved by a few (0 to ``ulps``) units in the last place of ``dtype``, either way."""
    t = np.asarray(t, dtype=dtype)
    k = rng.integers(-ulps, ulps + 1, size=t.shape)
    return (t + k * np.spacing(t)).astype(dtype)


def _sub(a: mpf, b: mpf) -> mpf:
    return mpmath.fsub(a, b, exact=True)


def _errors(scale32: float, scale64: float, spread: float = 1.0) -> Callable[..., Arrays]:
    """Regime: targets ~ N(0, 1) * scale, predictions = targets + N(0, spread^2) * scale."""
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        s = scale64 if _f64(dtype) else scale32
        t = rng.normal(size=(ROWS, N))
        return _cast(dtype, y_true=t * s, y_pred=(t + spread * rng.normal(size=t.shape)) * s)
    return regime


def _near_equal(scale32: float, scale64: float) -> Callable[..., Arrays]:
    """Regime: predictions within a few ulps of the targets (and some exactly equal)."""
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        s = scale64 if _f64(dtype) else scale32
        t = np.asarray(rng.normal(size=(ROWS, N)) * s, dtype=dtype)
        return {"y_true": t, "y_pred": _near(rng, t, dtype)}
    return regime


def _by_row(fn: Callable[[np.ndarray, np.ndarray, Mapping[str, Any]], float]
            ) -> Callable[[Arrays, Mapping[str, Any]], np.ndarray]:
    """A metric of one row (scikit-learn's, which averages everything) applied row by row."""
    def run(arrays: Arrays, opts: Mapping[str, Any]) -> np.ndarray:
        return np.array([fn(t, p, opts) for t, p in zip(arrays["y_true"], arrays["y_pred"],
                                                        strict=True)])
    return run


# ------------------------------------------------------------------------------------------ Huber


def _huber_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    delta = mpf(opts["delta"])
    out = []
    for ti, pi in zip(t, p, strict=True):
        d = abs(_sub(pi, ti))
        out.append(d * d / 2 if d <= delta else delta * (d - delta / 2))
    return out


def _around_delta(delta: float) -> Callable[..., Arrays]:
    """Regime: errors within a few ulps of +-delta (where the two branches meet)."""
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        t = np.asarray(rng.normal(size=(ROWS, N)), dtype=dtype)
        d = _near(rng, np.full(t.shape, delta), dtype) * rng.choice([-1.0, 1.0], size=t.shape)
        return {"y_true": t, "y_pred": (t + d).astype(dtype)}
    return regime


def _huber_regimes(delta: float) -> dict[str, Callable[..., Arrays]]:
    return {"generic": _errors(delta, delta),
            "large": _errors(1e30, 1e300),
            "small": _errors(1e-15, 1e-150),
            "near_equal": _near_equal(1.0, 1.0),
            "around_delta": _around_delta(delta)}


def _huber_entry(delta: float) -> Entry:
    return Entry(
        "huber", Spec(_huber_terms, mean=True, separable=True), regimes=_huber_regimes(delta),
        options={"delta": delta},
        peers={"keras": keras_peer(lambda p, a, o: __import__("keras").losses.huber(
                   a["y_true"], p, delta=o["delta"])),
               "torch": torch_peer(lambda p, a, o: __import__("torch").nn.functional.huber_loss(
                   p, a["y_true"], reduction="none", delta=o["delta"]).mean(-1)),
               "optax": jax_peer(lambda p, a, o: __import__("optax").losses.huber_loss(
                   p, a["y_true"], delta=o["delta"]).mean(-1))},
        peer_names={"keras": "keras.losses.Huber", "torch": "torch.nn.HuberLoss",
                    "optax": "optax.losses.huber_loss"})


# -------------------------------------------------------------------------------------- smooth L1


def _smooth_l1_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    beta = mpf(opts["beta"])
    out = []
    for ti, pi in zip(t, p, strict=True):
        d = abs(_sub(pi, ti))
        out.append(d * d / (2 * beta) if d < beta else d - beta / 2)
    return out


def _smooth_l1_entry(beta: float) -> Entry:
    regimes = _huber_regimes(beta if beta > 0 else 1.0)
    if beta == 0:
        del regimes["around_delta"]
        regimes["generic"] = _errors(1.0, 1.0)
    return Entry(
        "smooth_l1", Spec(_smooth_l1_terms, mean=True, separable=True), regimes=regimes,
        options={"beta": beta},
        peers={"torch": torch_peer(lambda p, a, o: __import__("torch").nn.functional.smooth_l1_loss(
            p, a["y_true"], reduction="none", beta=o["beta"]).mean(-1))},
        peer_names={"torch": "torch.nn.SmoothL1Loss"})


# --------------------------------------------------------------------------------------- log-cosh


def _log_cosh_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    out = []
    for ti, pi in zip(t, p, strict=True):
        d = abs(_sub(pi, ti))
        if d < 50:  # cosh(d) = 1 + 2 sinh(d/2)^2, without forming 1 + tiny
            s = mpmath.sinh(d / 2)
            out.append(mpmath.log1p(2 * s * s))
        else:  # cosh(d) = e^d (1 + e^(-2d)) / 2, without forming e^d
            out.append(d - mpmath.log(2) + mpmath.log1p(mpmath.exp(-2 * d)))
    return out


def _log_cosh_entry() -> Entry:
    keras_ok = ("generic", "moderate")
    return Entry(
        "log_cosh", Spec(_log_cosh_terms, mean=True, separable=True),
        regimes={"generic": _errors(1.0, 1.0),
                 "moderate": _errors(3.0, 3.0),  # both sides of the |d| = 2 switch
                 "large": _errors(1e30, 1e300),
                 "small": _errors(1e-10, 1e-100),
                 "near_equal": _near_equal(1.0, 1.0)},
        peers={"keras": keras_peer(lambda p, a, o: __import__("keras").losses.log_cosh(
                   a["y_true"], p)),
               "optax": jax_peer(lambda p, a, o: __import__("optax").losses.log_cosh(
                   p, a["y_true"]).mean(-1))},
        peer_names={"keras": "keras.losses.LogCosh", "optax": "optax.losses.log_cosh"},
        peer_regimes=keras_ok)


# ------------------------------------------------------------------- mean absolute percentage error


def _mape_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    for ti in t:
        if ti == 0:
            raise DomainError("zero target")
    return [100 * abs(_sub(pi, ti)) / abs(ti) for ti, pi in zip(t, p, strict=True)]


def _mape_tiny_targets(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Targets of 1e-30 (float32) / 1e-300 (float64) magnitude, predictions of order 1."""
    s = 1e-30 if not _f64(dtype) else 1e-300
    t = rng.uniform(1.0, 2.0, size=(ROWS, N)) * rng.choice([-1.0, 1.0], size=(ROWS, N)) * s
    return _cast(dtype, y_true=t, y_pred=rng.normal(size=t.shape) * 1e-4)


def _mape_entry() -> Entry:
    def sk(t: np.ndarray, p: np.ndarray, o: Mapping[str, Any]) -> float:
        from sklearn.metrics import mean_absolute_percentage_error

        return 100.0 * mean_absolute_percentage_error(t, p)

    return Entry(
        "mean_absolute_percentage_error", Spec(_mape_terms, mean=True, separable=True),
        regimes={"generic": _errors(1.0, 1.0),
                 "large": _errors(1e30, 1e300),
                 "small": _errors(1e-30, 1e-300),
                 "tiny_targets": _mape_tiny_targets,
                 "near_equal": _near_equal(1.0, 1.0)},
        peers={"keras": keras_peer(lambda p, a, o: __import__(
                   "keras").losses.mean_absolute_percentage_error(a["y_true"], p)),
               "sklearn": values_only(_by_row(sk))},
        peer_names={"keras": "keras.losses.MeanAbsolutePercentageError",
                    "sklearn": "sklearn.metrics.mean_absolute_percentage_error (x100)"})


# ---------------------------------------------------------------- mean squared logarithmic error


def _msle_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    out = []
    for ti, pi in zip(t, p, strict=True):
        if ti <= -1 or pi <= -1:
            raise DomainError("argument <= -1")
        d = mpmath.log1p(pi) - mpmath.log1p(ti)
        out.append(d * d)
    return out


def _msle_positive(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Non-negative targets and predictions of order 1 (where Keras's clipping does nothing)."""
    t = rng.uniform(0.0, 3.0, size=(ROWS, N))
    return _cast(dtype, y_true=t, y_pred=t * rng.uniform(0.5, 1.5, size=t.shape))


def _msle_near_minus_one(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Arguments just above -1 (1 + x down to 1e-7 / 1e-16), against each other and against O(1)."""
    lo = 1e-7 if not _f64(dtype) else 1e-16
    t = -1.0 + np.exp(rng.uniform(np.log(lo), 0.0, size=(ROWS, N)))
    p = np.where(rng.random(size=t.shape) < 0.5, -1.0 + np.exp(rng.uniform(np.log(lo), 0.0,
                                                                          size=t.shape)),
                 rng.uniform(0.0, 5.0, size=t.shape))
    out = _cast(dtype, y_true=t, y_pred=p)
    for k in out.values():
        k[k <= -1] = np.nextafter(np.asarray(-1.0, dtype=dtype), np.asarray(0.0, dtype=dtype))
    return out


def _msle_huge(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Arguments up to 1e30 / 1e300, with ratios both near 1 and far from it."""
    s = 30 if not _f64(dtype) else 300
    t = 10.0 ** rng.uniform(-2, s, size=(ROWS, N))
    p = np.where(rng.random(size=t.shape) < 0.5, t * rng.uniform(0.9, 1.1, size=t.shape),
                 10.0 ** rng.uniform(-2, s, size=t.shape))
    return _cast(dtype, y_true=t, y_pred=p)


def _msle_near_equal(rng: np.random.Generator, dtype: Any) -> Arrays:
    t = np.asarray(rng.uniform(-0.9, 10.0, size=(ROWS, N)), dtype=dtype)
    return {"y_true": t, "y_pred": _near(rng, t, dtype)}


def _msle_entry() -> Entry:
    def sk(t: np.ndarray, p: np.ndarray, o: Mapping[str, Any]) -> float:
        from sklearn.metrics import mean_squared_log_error

        return float(mean_squared_log_error(t, p))

    return Entry(
        "mean_squared_logarithmic_error", Spec(_msle_terms, mean=True, separable=True),
        regimes={"generic": _msle_positive,
                 "near_minus_one": _msle_near_minus_one,
                 "huge": _msle_huge,
                 "small": _errors(1e-20, 1e-200, spread=0.5),
                 "near_equal": _msle_near_equal},
        peers={"keras": keras_peer(lambda p, a, o: __import__(
                   "keras").losses.mean_squared_logarithmic_error(a["y_true"], p)),
               "sklearn": values_only(_by_row(sk))},
        peer_names={"keras": "keras.losses.MeanSquaredLogarithmicError",
                    "sklearn": "sklearn.metrics.mean_squared_log_error"})


# -------------------------------------------------------------------------------------- pinball


def _pinball_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    q = mpf(opts["quantile"])
    out = []
    for ti, pi in zip(t, p, strict=True):
        d = _sub(ti, pi)
        out.append(max(q * d, (q - 1) * d))
    return out


def _pinball_entry(quantile: float) -> Entry:
    def sk(t: np.ndarray, p: np.ndarray, o: Mapping[str, Any]) -> float:
        from sklearn.metrics import mean_pinball_loss

        return float(mean_pinball_loss(t, p, alpha=o["quantile"]))

    return Entry(
        "pinball", Spec(_pinball_terms, mean=True, separable=True),
        regimes={"generic": _errors(1.0, 1.0),
                 "large": _errors(1e30, 1e300),
                 "small": _errors(1e-30, 1e-300),
                 "near_equal": _near_equal(1.0, 1.0)},
        options={"quantile": quantile},
        peers={"sklearn": values_only(_by_row(sk))},
        peer_names={"sklearn": "sklearn.metrics.mean_pinball_loss"})


# ----------------------------------------------------------------------------- cosine similarity


def _cosine_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    dot = mpmath.fsum(ti * pi for ti, pi in zip(t, p, strict=True))
    nt = mpmath.sqrt(mpmath.fsum(ti * ti for ti in t))
    np_ = mpmath.sqrt(mpmath.fsum(pi * pi for pi in p))
    if nt == 0 or np_ == 0:
        return [mpf(0)]
    return [-dot / (nt * np_)]


def _cosine_near_orthogonal(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Predictions orthogonal to the targets up to rounding: cosines of about 1e-7 .. 1e-16."""
    t = rng.normal(size=(ROWS, N))
    p = rng.normal(size=t.shape)
    p -= (p * t).sum(-1, keepdims=True) / (t * t).sum(-1, keepdims=True) * t
    return _cast(dtype, y_true=t, y_pred=p)


def _cosine_near_parallel(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Predictions along the targets up to a relative 1e-5 (float32) / 1e-12 (float64) deviation."""
    rel = 1e-5 if not _f64(dtype) else 1e-12
    t = rng.normal(size=(ROWS, N))
    p = t * rng.uniform(0.5, 2.0, size=(ROWS, 1)) * (1 + rel * rng.normal(size=t.shape))
    return _cast(dtype, y_true=t, y_pred=p)


def _cosine_scaled(s32: float, s64: float) -> Callable[..., Arrays]:
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        s = s64 if _f64(dtype) else s32
        t = rng.normal(size=(ROWS, N)) * s
        return _cast(dtype, y_true=t, y_pred=rng.normal(size=t.shape) * s * 10.0 ** rng.uniform(
            -5, 5, size=(ROWS, 1)))
    return regime


def _cosine_entry() -> Entry:
    return Entry(
        "cosine_similarity", Spec(_cosine_terms, mean=False, separable=False),
        regimes={"generic": _errors(1.0, 1.0),
                 "near_orthogonal": _cosine_near_orthogonal,
                 "near_parallel": _cosine_near_parallel,
                 "huge": _cosine_scaled(1e30, 1e250),
                 "tiny": _cosine_scaled(1e-30, 1e-250)},
        peers={"keras": keras_peer(lambda p, a, o: __import__("keras").losses.cosine_similarity(
                   a["y_true"], p, axis=-1)),
               "optax": jax_peer(lambda p, a, o: -__import__("optax").losses.cosine_similarity(
                   p, a["y_true"]))},
        peer_names={"keras": "keras.losses.CosineSimilarity",
                    "optax": "optax.losses.cosine_similarity (negated)"})


# ---------------------------------------------------------------------------- Poisson (Keras's)


def _poisson_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    out = []
    for ti, pi in zip(t, p, strict=True):
        if ti < 0 or pi < 0:
            raise DomainError("negative count or rate")
        if ti == 0:
            out.append(pi)  # 0 log 0 = 0
        elif pi == 0:
            out.append(mpf("inf"))
        else:
            out.append(pi - ti * mpmath.log(pi))
    return out


def _counts(rng: np.random.Generator, lam: float = 3.0) -> np.ndarray:
    return rng.poisson(lam, size=(ROWS, N)).astype(float)


def _poisson_generic(rng: np.random.Generator, dtype: Any) -> Arrays:
    t = _counts(rng)
    return _cast(dtype, y_true=t, y_pred=rng.uniform(0.1, 6.0, size=t.shape))


def _poisson_near_equal(rng: np.random.Generator, dtype: Any) -> Arrays:
    t = np.asarray(_counts(rng, 20.0) + 1.0, dtype=dtype)
    return {"y_true": t, "y_pred": _near(rng, t, dtype)}


def _poisson_tiny_rates(rng: np.random.Generator, dtype: Any) -> Arrays:
    s = 1e-30 if not _f64(dtype) else 1e-300
    t = _counts(rng, 0.5)
    return _cast(dtype, y_true=t, y_pred=rng.uniform(1.0, 10.0, size=t.shape) * s)


def _poisson_large(rng: np.random.Generator, dtype: Any) -> Arrays:
    s = 1e30 if not _f64(dtype) else 1e300
    t = rng.uniform(0.0, 1.0, size=(ROWS, N)) * s
    return _cast(dtype, y_true=t, y_pred=t * rng.uniform(0.5, 2.0, size=t.shape))


def _poisson_entry() -> Entry:
    return Entry(
        "poisson", Spec(_poisson_terms, mean=True, separable=True),
        regimes={"generic": _poisson_generic, "near_equal": _poisson_near_equal,
                 "tiny_rates": _poisson_tiny_rates, "large": _poisson_large},
        peers={"keras": keras_peer(lambda p, a, o: __import__("keras").losses.poisson(
            a["y_true"], p))},
        peer_names={"keras": "keras.losses.Poisson"},
        peer_rtol=1e-5,  # Keras adds 1e-7 to y_pred inside the log: ~1e-7 relative on generic rows
        note="float64: on the curve y_true = y_pred/log(y_pred), where the value vanishes, the error "
             "is ~2**-56 of the larger term (log is carried to double length, not further)")


# ---------------------------------------------------------------------------- Poisson (PyTorch's)


def _poisson_nll_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    eps = mpf(opts["eps"])
    out = []
    for ti, xi in zip(t, p, strict=True):
        if ti < 0:
            raise DomainError("negative count")
        if opts["log_input"]:
            v = mpmath.exp(xi) - ti * xi
        else:
            if xi < 0:
                raise DomainError("negative rate")
            v = xi - (ti * mpmath.log(xi + eps) if ti != 0 else 0)
        if opts["full"] and ti > 1:
            v += ti * mpmath.log(ti) - ti + mpmath.log(2 * mpmath.pi * ti) / 2
        out.append(v)
    return out


def _pnll_generic(rng: np.random.Generator, dtype: Any) -> Arrays:
    t = _counts(rng)
    return _cast(dtype, y_true=t, y_pred=rng.normal(0.5, 1.5, size=t.shape))


def _pnll_extreme_logits(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Log-rates far out in both tails (exp(x) up to ~1e300 / 1e34, down to ~1e-300 / 1e-35)."""
    s = 80.0 if not _f64(dtype) else 690.0
    t = _counts(rng)
    x = rng.uniform(0.3, 1.0, size=t.shape) * s * rng.choice([-1.0, 1.0], size=t.shape)
    return _cast(dtype, y_true=t, y_pred=x)


def _pnll_large_counts(rng: np.random.Generator, dtype: Any) -> Arrays:
    t = _counts(rng, 1e6)
    return _cast(dtype, y_true=t, y_pred=np.log(t) + rng.normal(0, 1.0, size=t.shape))


def _pnll_rates(rng: np.random.Generator, dtype: Any) -> Arrays:
    t = _counts(rng)
    return _cast(dtype, y_true=t, y_pred=rng.uniform(0.05, 6.0, size=t.shape))


def _pnll_tiny_rates(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Rates around eps = 1e-8 and far below it (the eps shift matters), and exact zeros."""
    t = _counts(rng, 1.0)
    x = 10.0 ** rng.uniform(-20, -6, size=t.shape)
    x[rng.random(size=t.shape) < 0.2] = 0.0
    return _cast(dtype, y_true=t, y_pred=x)


def _poisson_nll_entry(log_input: bool, full: bool) -> Entry:
    if log_input:
        regimes = {"generic": _pnll_generic, "extreme_logits": _pnll_extreme_logits,
                   "large_counts": _pnll_large_counts}
    else:
        regimes = {"generic": _pnll_rates, "tiny_rates": _pnll_tiny_rates,
                   "large": _poisson_large}
    return Entry(
        "poisson_nll", Spec(_poisson_nll_terms, mean=True, separable=True), regimes=regimes,
        options={"log_input": log_input, "full": full, "eps": 1e-8},
        peers={"torch": torch_peer(lambda p, a, o: __import__("torch").nn.functional.poisson_nll_loss(
            p, a["y_true"], log_input=o["log_input"], full=o["full"], eps=o["eps"],
            reduction="none").mean(-1))},
        peer_names={"torch": "torch.nn.PoissonNLLLoss"},
        note="float64: where the value or the gradient (x = log y) vanishes in real arithmetic, the "
             "error is ~2**-56 of the larger part (exp and log are carried to double length)")


# ------------------------------------------------------------------------ Gaussian NLL (PyTorch's)


def _gaussian_nll_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    eps = mpf(opts["eps"])
    out = []
    for ti, pi, vi in zip(t, p, opts["var"], strict=True):
        if vi < 0:
            raise DomainError("negative variance")
        v = max(vi, eps)
        d = _sub(pi, ti)
        out.append((mpmath.log(v) + d * d / v) / 2 + (mpmath.log(2 * mpmath.pi) / 2
                                                      if opts["full"] else 0))
    return out


def _gnll(var_lo: float, var_hi: float, scale32: float = 1.0, scale64: float = 1.0,
          spread: float = 1.0) -> Callable[..., Arrays]:
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        s = scale64 if _f64(dtype) else scale32
        t = rng.normal(size=(ROWS, N))
        var = 10.0 ** rng.uniform(np.log10(var_lo), np.log10(var_hi), size=t.shape)
        return _cast(dtype, y_true=t * s, y_pred=(t + spread * rng.normal(size=t.shape)) * s,
                     var=var * s * s)
    return regime


def _gnll_clamped(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Variances at and below eps = 1e-6 (clamped), zeros included, with small errors."""
    t = rng.normal(size=(ROWS, N))
    var = 10.0 ** rng.uniform(-12, -5.5, size=t.shape)
    var[rng.random(size=t.shape) < 0.2] = 0.0
    return _cast(dtype, y_true=t, y_pred=t + 1e-3 * rng.normal(size=t.shape), var=var)


def _gnll_cancel(full: bool) -> Callable[..., Arrays]:
    """Errors chosen so that (p - t)^2 / v nearly cancels -log v [- log 2 pi] in every element: the
    value is near 0 (issue 8: the plain parts lost every digit there). Half the rows cancel within
    each element, half across the elements of the row."""
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        t = rng.normal(size=(ROWS, N))
        v = 10.0 ** rng.uniform(-5.0, -1.0, size=t.shape)
        target = -np.log(v) - (np.log(2 * np.pi) if full else 0.0)
        d = np.sqrt(v * target) * (1.0 + 1e-9 * rng.normal(size=t.shape))
        # the other rows: odd elements exact (term -target), even ones carry their neighbour's
        h, even, odd = slice(ROWS // 2, None), slice(0, N - 1, 2), slice(1, N, 2)
        d[h, even] = np.sqrt(v[h, even] * (target[h, even] + target[h, odd]))
        d[h, odd] = 0.0
        return _cast(dtype, y_true=t, y_pred=t + d * np.where(rng.random(t.shape) < 0.5, 1, -1),
                     var=v)
    return regime


def _gaussian_nll_entry(full: bool) -> Entry:
    return Entry(
        "gaussian_nll", Spec(_gaussian_nll_terms, mean=True, separable=True),
        regimes={"generic": _gnll(0.1, 10.0), "clamped": _gnll_clamped,
                 "large": _gnll(0.1, 10.0, 1e15, 1e150), "small": _gnll(0.1, 10.0, 1e-2, 1e-2),
                 "near_equal": _gnll(0.5, 2.0, spread=1e-6), "cancel": _gnll_cancel(full)},
        options={"full": full, "eps": 1e-6},
        peers={"torch": torch_peer(lambda p, a, o: __import__(
            "torch").nn.functional.gaussian_nll_loss(p, a["y_true"], a["var"], full=o["full"],
                                                     eps=o["eps"], reduction="none").mean(-1))},
        peer_names={"torch": "torch.nn.GaussianNLLLoss"})


# --------------------------------------------------------------------- Tweedie and Gamma deviance


def _tweedie_dev(t: mpf, m: mpf, power: float) -> mpf:
    p = mpf(power)
    if power == 0:
        return _sub(t, m) ** 2
    if m <= 0 or (power >= 1 and t < 0) or (power >= 2 and t == 0):
        raise DomainError("outside the Tweedie domain")
    if power == 1:
        return 2 * ((t * mpmath.log(t / m) if t > 0 else 0) - t + m)
    if power == 2:
        return 2 * (mpmath.log(m / t) + t / m - 1)
    a, b = 1 - p, 2 - p
    return 2 * ((max(t, 0) ** b) / (a * b) - t * m ** a / a + m ** b / b)


def _tweedie_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    return [_tweedie_dev(ti, pi, opts["power"]) for ti, pi in zip(t, p, strict=True)]


def _gamma_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    return [_tweedie_dev(ti, pi, 2.0) for ti, pi in zip(t, p, strict=True)]


def _tw_targets(rng: np.random.Generator, power: float, shape: tuple[int, ...]) -> np.ndarray:
    t = rng.uniform(0.1, 5.0, size=shape)
    if power < 2:
        t[rng.random(size=shape) < 0.15] = 0.0
    if power < 0:
        t[rng.random(size=shape) < 0.15] *= -1.0
    return t


def _tw_ratio(lo: float, hi: float) -> Callable[..., Callable[..., Arrays]]:
    """Regime factory: predictions = targets (or 1 for zero/negative ones) times 10^U(lo, hi)."""
    def make(power: float) -> Callable[..., Arrays]:
        def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
            t = _tw_targets(rng, power, (ROWS, N))
            base = np.where(t > 0, t, 1.0)
            return _cast(dtype, y_true=t, y_pred=base * 10.0 ** rng.uniform(lo, hi, size=t.shape))
        return regime
    return make


def _tw_near_equal(power: float) -> Callable[..., Arrays]:
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        t = np.asarray(rng.uniform(0.1, 5.0, size=(ROWS, N)), dtype=dtype)
        return {"y_true": t, "y_pred": _near(rng, t, dtype, ulps=1000)}
    return regime


def _tw_scaled(power: float) -> Callable[..., Arrays]:
    """Targets and predictions of magnitude 1e-20 .. 1e20 (1e-5 .. 1e5 for float32)."""
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        e = 20 if _f64(dtype) else 5
        s = 10.0 ** rng.uniform(-e, e, size=(ROWS, 1))
        t = _tw_targets(rng, power, (ROWS, N))
        base = np.where(t > 0, t, 1.0)
        return _cast(dtype, y_true=t * s, y_pred=base * s * 10.0 ** rng.uniform(-0.5, 0.5,
                                                                                size=t.shape))
    return regime


def _tw_extreme_ratio(power: float) -> Callable[..., Arrays]:
    """y_true / y_pred of 1e6 .. 1e200 and its inverse (1e3 .. 1e30 in float32), rows of either sign of
    the logarithm (issue 8: at powers 1 and 2 the ratio rebuilt as exp(log(y/m)) was up to
    107 ulp off beyond about 1e8, and 256 ulp at 1e300)."""
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        lo, hi = (6.0, 200.0) if _f64(dtype) else (3.0, 30.0)
        t = rng.uniform(0.1, 5.0, size=(ROWS, N))
        sign = np.where(np.arange(ROWS)[:, None] % 2 == 0, 1.0, -1.0)
        return _cast(dtype, y_true=t, y_pred=t * 10.0 ** (sign * rng.uniform(lo, hi, size=t.shape)))
    return regime


def _tweedie_regimes(power: float) -> dict[str, Callable[..., Arrays]]:
    regimes = {"generic": _tw_ratio(-0.5, 0.5)(power),
               "close": _tw_ratio(-0.05, 0.05)(power),
               "near_equal": _tw_near_equal(power),
               "far": _tw_ratio(-3.0, 3.0)(power),
               "scaled": _tw_scaled(power)}
    if power in (1.0, 2.0):
        regimes["extreme_ratio"] = _tw_extreme_ratio(power)
    return regimes


def _tweedie_entry(power: float) -> Entry:
    def sk(t: np.ndarray, p: np.ndarray, o: Mapping[str, Any]) -> float:
        from sklearn.metrics import mean_tweedie_deviance

        return float(mean_tweedie_deviance(t, p, power=o["power"]))

    return Entry(
        "mean_tweedie_deviance", Spec(_tweedie_terms, mean=True, separable=True),
        regimes=_tweedie_regimes(power), options={"power": power},
        peers={"sklearn": values_only(_by_row(sk))},
        peer_names={"sklearn": "sklearn.metrics.mean_tweedie_deviance"})


def _gamma_entry() -> Entry:
    def sk(t: np.ndarray, p: np.ndarray, o: Mapping[str, Any]) -> float:
        from sklearn.metrics import mean_gamma_deviance

        return float(mean_gamma_deviance(t, p))

    return Entry(
        "mean_gamma_deviance", Spec(_gamma_terms, mean=True, separable=True),
        regimes=_tweedie_regimes(2.0),
        peers={"sklearn": values_only(_by_row(sk))},
        peer_names={"sklearn": "sklearn.metrics.mean_gamma_deviance"})


ENTRIES: list[Entry] = [
    _huber_entry(1.0), _huber_entry(0.25),
    _smooth_l1_entry(1.0), _smooth_l1_entry(0.0),
    _log_cosh_entry(),
    _mape_entry(),
    _msle_entry(),
    _pinball_entry(0.5), _pinball_entry(0.9),
    _cosine_entry(),
    _poisson_entry(),
    _poisson_nll_entry(True, False), _poisson_nll_entry(True, True),
    _poisson_nll_entry(False, False),
    _gaussian_nll_entry(False), _gaussian_nll_entry(True),
    _gamma_entry(),
    *[_tweedie_entry(p) for p in (0.0, 1.0, 1.01, 1.2, 1.5, 1.8, 1.99, 2.0, 2.5, 3.0, 5.0, -0.5,
                                  -1.0, -3.0)],
]
