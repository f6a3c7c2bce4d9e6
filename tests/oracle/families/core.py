"""Oracle entries of the tutorial's seven losses: mean squared and absolute error, the binary,
categorical and sparse categorical cross-entropies (probabilities and logits, with and without label
smoothing), hinge and Kullback-Leibler divergence.

The oracle is ``reference.SPECS`` (terms written from the definitions in mpmath). The regimes cover
the whole domain: huge, tiny and spread magnitudes, extreme probabilities (from the smallest normal
to ``1 - eps``), logits up to 1e4, confidently correct rows whose loss is ~1e-30, rows like
``[30, 0]``, near-equal distributions, zero targets; each draws ``ROWS`` rows (more than the
catalog's default, as the tutorial's suite always did) of at most 8 columns and casts them to the
dtype, probabilities kept inside ``[smallest normal, 1 - eps]`` after the cast.

Documented exception (``grad_scale``): for soft or smoothed targets (``t'`` not exactly 0 or 1) a
bce/cce gradient element near its zero is the difference of two terms (``sigmoid(x) - t'`` from
logits); where the two are within a factor 2 of each other, the error is bounded by 8 ulp of the
larger term instead of 8 ulp of the difference.

The peers (Keras, PyTorch, Optax, scikit-learn) are measured by ``benchmarks/accuracy.py`` on every
regime; parity on ordinary inputs is ``tests/test_peers.py``'s, so ``peer_regimes`` is empty here.
The edge choices (zero probabilities, ``0 log 0``, infinite logits, kinks) are
``tests/test_oracle.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from .. import reference as R
from ..catalog import Entry
from ..peers import jax_peer, keras_peer, torch_peer, values_only

ROWS = 40
Arrays = tuple[np.ndarray, np.ndarray]
RegimeFn = Callable[[np.random.Generator, Any], Arrays]


# --------------------------------------------------------------------------- helpers


def _fi(dtype: Any) -> np.finfo:
    """finfo of the dtype."""
    return np.finfo(dtype)


def _loguniform(rng: np.random.Generator, lo: float, hi: float, shape: Any) -> np.ndarray:
    """Values whose log10 is uniform in [lo, hi]."""
    return 10.0 ** rng.uniform(lo, hi, shape)


def _signs(rng: np.random.Generator, shape: Any) -> np.ndarray:
    """Random +-1."""
    return rng.choice([-1.0, 1.0], shape)


def _hard(rng: np.random.Generator, shape: Any) -> np.ndarray:
    """Random {0, 1} labels."""
    return rng.integers(0, 2, shape).astype(np.float64)


def _one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    """One-hot rows of the integer labels."""
    return np.eye(k)[labels]


def _cast(dtype: Any, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cast float arrays to ``dtype`` (integer arrays are left alone)."""
    return tuple(a if a.dtype.kind in "iu" else a.astype(dtype) for a in arrays)


def _clip_prob(p: np.ndarray, dtype: Any) -> np.ndarray:
    """Clip probabilities (already in dtype) to [smallest normal, 1 - eps]."""
    fi = _fi(dtype)
    return np.clip(p, fi.smallest_normal, dtype(1) - fi.eps).astype(dtype)


# --------------------------------------------------------------------------- MSE / MAE


def _max_exp(dtype: Any) -> int:
    """Decimal exponent of the 'huge'/'tiny' regimes: squares stay normal."""
    return 150 if np.dtype(dtype) == np.float64 else 15


def _reg_generic(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Normal values with row scales from 1e-2 to 1e2."""
    scale = _loguniform(rng, -2, 2, (ROWS, 1))
    return rng.normal(size=(ROWS, 6)) * scale, rng.normal(size=(ROWS, 6)) * scale


def _reg_huge(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Magnitudes near 1e+150 (float64) / 1e+15 (float32); some near-equal pairs."""
    e = _max_exp(dtype)
    t = _signs(rng, (ROWS, 6)) * _loguniform(rng, e - 3, e, (ROWS, 6))
    p = _signs(rng, (ROWS, 6)) * _loguniform(rng, e - 3, e, (ROWS, 6))
    near = rng.random((ROWS, 6)) < 0.25
    p = np.where(near, t * (1 + rng.normal(size=(ROWS, 6)) * 1e-3), p)
    return t, p


def _reg_tiny(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Magnitudes near 1e-150 (float64) / 1e-15 (float32)."""
    e = _max_exp(dtype)
    t = _signs(rng, (ROWS, 6)) * _loguniform(rng, -e, -e + 3, (ROWS, 6))
    p = _signs(rng, (ROWS, 6)) * _loguniform(rng, -e, -e + 3, (ROWS, 6))
    return t, p


def _reg_spread(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Magnitudes spread from 1e-150 to 1e+150 (float64) / 1e-15 to 1e+15 (float32) in a row."""
    e = _max_exp(dtype)
    t = _signs(rng, (ROWS, 6)) * _loguniform(rng, -e, e, (ROWS, 6))
    p = _signs(rng, (ROWS, 6)) * _loguniform(rng, -e, e, (ROWS, 6))
    return t, p


def _reg_equal(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Exactly equal entries (zero error), whole equal rows, and zeros."""
    t = rng.normal(size=(ROWS, 6))
    p = np.where(rng.random((ROWS, 6)) < 0.5, t, rng.normal(size=(ROWS, 6)))
    p[::4] = t[::4]
    t[1::6, :2] = 0.0
    p[1::6, :2] = 0.0
    p[2::6, 0] = 0.0
    return t, p


# --------------------------------------------------------------------------- BCE


def _extreme_probs(rng: np.random.Generator, dtype: Any, shape: Any) -> np.ndarray:
    """Probabilities from the smallest normal to 1 - eps (both ends included)."""
    fi = _fi(dtype)
    lo = np.log10(fi.smallest_normal)
    small = _loguniform(rng, lo, np.log10(0.5), shape)
    gap = _loguniform(rng, np.log10(fi.eps), np.log10(0.5), shape)
    p = np.where(rng.random(shape) < 0.5, small, 1.0 - gap).astype(dtype)
    flat = p.reshape(-1)
    flat[::7] = fi.smallest_normal
    flat[3::7] = dtype(1) - fi.eps
    return _clip_prob(p, dtype)


def _bce_generic(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Hard labels, moderate probabilities."""
    return _hard(rng, (ROWS, 6)), rng.uniform(0.001, 0.999, (ROWS, 6))


def _bce_soft(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Soft labels, moderate probabilities (some close to the label)."""
    t = rng.uniform(0, 1, (ROWS, 6))
    near = t + rng.normal(size=(ROWS, 6)) * 1e-4
    p = np.where(rng.random((ROWS, 6)) < 0.3, near, rng.uniform(0.001, 0.999, (ROWS, 6)))
    return t, np.clip(p, 1e-3, 1 - 1e-3)


def _bce_extreme(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Hard labels on extreme probabilities: tiny p for positives, p ~ 1 for positives."""
    return _hard(rng, (ROWS, 6)), _extreme_probs(rng, dtype, (ROWS, 6))


def _bce_extreme_soft(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Soft labels on extreme probabilities."""
    return rng.uniform(0, 1, (ROWS, 6)), _extreme_probs(rng, dtype, (ROWS, 6))


def _bce_logit_generic(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Hard labels, logits ~ N(0, 4^2)."""
    return _hard(rng, (ROWS, 6)), rng.normal(size=(ROWS, 6)) * 4


def _bce_logit_soft(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Soft labels, logits ~ N(0, 4^2), some at the loss's minimum logit(t)."""
    t = rng.uniform(0.01, 0.99, (ROWS, 6))
    x = rng.normal(size=(ROWS, 6)) * 4
    at_min = rng.random((ROWS, 6)) < 0.3
    x = np.where(at_min, np.log(t / (1 - t)) + rng.normal(size=(ROWS, 6)) * 1e-6, x)
    return t, x


def _bce_logit_large(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Logits up to +-1e4 with hard labels."""
    x = _signs(rng, (ROWS, 6)) * _loguniform(rng, 0, 4, (ROWS, 6))
    x[::5, 0] = 1e4
    x[1::5, 0] = -1e4
    return _hard(rng, (ROWS, 6)), x


def _bce_logit_confident(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Confidently correct: margins 15..80 (true loss down to ~1e-35; ~1e-30 at 69)."""
    t = _hard(rng, (ROWS, 6))
    margin = rng.uniform(15, 80, (ROWS, 6))
    margin[::3] = 69.0
    return t, (2 * t - 1) * margin


# --------------------------------------------------------------------------- CCE / SCCE

K = 5


def _dirichlet(rng: np.random.Generator, rows: int, k: int = K) -> np.ndarray:
    """Random probability rows."""
    return rng.dirichlet(np.ones(k), rows)


def _labels(rng: np.random.Generator, rows: int = ROWS, k: int = K) -> np.ndarray:
    """Random integer labels."""
    return rng.integers(0, k, rows)


def _cat_extreme_probs(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rows with tiny entries, rows [1 - eps, tiny, ...]; labels on tiny and on large entries."""
    fi = _fi(dtype)
    lo = np.log10(fi.smallest_normal)
    p = _loguniform(rng, lo, 0, (ROWS, K))
    labels = _labels(rng)
    for r in range(0, ROWS, 2):
        big = rng.integers(0, K)
        p[r] = fi.smallest_normal * rng.integers(1, 100, K)
        p[r, big] = 1 - fi.eps
        labels[r] = big if r % 4 == 0 else (big + 1) % K
    p = p.astype(dtype)
    return labels, np.maximum(p, fi.smallest_normal).astype(dtype)


def _unnormalised(rng: np.random.Generator) -> np.ndarray:
    """Rows in [0, 1] summing to 1e-3 .. 1 (even rows) or up to K (odd rows, uniform entries)."""
    p = _dirichlet(rng, ROWS) * _loguniform(rng, -3, 0, (ROWS, 1))
    p[1::2] = rng.uniform(0.001, 1, (ROWS // 2, K))
    return p


def _cce_generic(rng: np.random.Generator, dtype: Any) -> Arrays:
    """One-hot labels, Dirichlet probabilities."""
    return _one_hot(_labels(rng), K), _dirichlet(rng, ROWS)


def _cce_soft(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Soft labels; some predictions almost equal to the labels."""
    t = _dirichlet(rng, ROWS)
    p = _dirichlet(rng, ROWS)
    p[::3] = t[::3] * (1 + rng.normal(size=(len(t[::3]), K)) * 1e-5)
    return t, p


def _cce_extreme(rng: np.random.Generator, dtype: Any) -> Arrays:
    """One-hot labels on extreme probability rows."""
    labels, p = _cat_extreme_probs(rng, dtype)
    return _one_hot(labels, K), p


def _cce_unnormalised(rng: np.random.Generator, dtype: Any) -> Arrays:
    """One-hot labels; rows that do not sum to 1 (the loss renormalises)."""
    return _one_hot(_labels(rng), K), _unnormalised(rng)


def _cat_logits_generic(rng: np.random.Generator) -> np.ndarray:
    """Logits ~ N(0, 3^2)."""
    return rng.normal(size=(ROWS, K)) * 3


def _cat_logits_large(rng: np.random.Generator) -> np.ndarray:
    """Rows centred anywhere in +-9000, spreading +-1000 (|x| <= 1e4)."""
    centre = rng.uniform(-9000, 9000, (ROWS, 1))
    x = centre + rng.uniform(-1000, 1000, (ROWS, K))
    x[::6, 0] = 1e4
    x[1::6, 0] = -1e4
    return x


def _cat_logits_confident(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Label logit above the others by 15..80 (true loss ~1e-30 at margin ~69)."""
    x = rng.normal(size=(ROWS, K))
    margin = rng.uniform(15, 80, ROWS)
    margin[::3] = 69.0
    x[np.arange(ROWS), labels] = x.max(axis=1) + margin
    return x


def _thirty(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows like [30, 0] (and [0, 30], [a, 0] for a in 20..40) with labels 0 or 1."""
    a = np.concatenate([[30.0, 30.0, 30.0, 30.0], rng.uniform(20, 40, ROWS - 4)])
    x = np.stack([a, np.zeros(ROWS)], axis=1)
    labels = np.zeros(ROWS, dtype=np.int64)
    labels[1::4] = 1
    x[2::4] = x[2::4, ::-1]
    labels[2::8] = 1
    return labels, x


def _cce_logit_generic(rng: np.random.Generator, dtype: Any) -> Arrays:
    """One-hot labels, generic logits."""
    return _one_hot(_labels(rng), K), _cat_logits_generic(rng)


def _cce_logit_soft(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Soft labels, generic logits; some rows at the minimum (softmax(x) ~ t)."""
    t = _dirichlet(rng, ROWS)
    x = _cat_logits_generic(rng)
    x[::3] = np.log(t[::3]) + rng.normal(size=(len(t[::3]), K)) * 1e-6
    return t, x


def _cce_logit_large(rng: np.random.Generator, dtype: Any) -> Arrays:
    """One-hot labels, logits up to +-1e4 spreading +-1000."""
    return _one_hot(_labels(rng), K), _cat_logits_large(rng)


def _cce_logit_confident(rng: np.random.Generator, dtype: Any) -> Arrays:
    """One-hot labels, confidently correct logits."""
    labels = _labels(rng)
    return _one_hot(labels, K), _cat_logits_confident(rng, labels)


def _cce_logit_thirty(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Two-class rows [30, 0] and friends."""
    labels, x = _thirty(rng)
    return _one_hot(labels, 2), x


def _scce_generic(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Integer labels, Dirichlet probabilities."""
    return _labels(rng), _dirichlet(rng, ROWS)


def _scce_extreme(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Integer labels on extreme probability rows."""
    return _cat_extreme_probs(rng, dtype)


def _scce_unnormalised(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Integer labels; rows that do not sum to 1."""
    return _labels(rng), _unnormalised(rng)


def _scce_logit_generic(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Integer labels, generic logits."""
    return _labels(rng), _cat_logits_generic(rng)


def _scce_logit_large(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Integer labels, large logits."""
    return _labels(rng), _cat_logits_large(rng)


def _scce_logit_confident(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Integer labels, confidently correct logits."""
    labels = _labels(rng)
    return labels, _cat_logits_confident(rng, labels)


def _scce_logit_thirty(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Two-class rows [30, 0] and friends."""
    return _thirty(rng)


# --------------------------------------------------------------------------- hinge


def _away_from_margin(t: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Move predictions whose margin t*f is within 1e-3 of 1."""
    close = np.abs(t * f - 1) < 1e-3
    return np.where(close, f + 0.01 * t, f)


def _hinge_pm1(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Labels +-1, scores ~ N(0, 2^2)."""
    t = _signs(rng, (ROWS, 6))
    return t, _away_from_margin(t, rng.normal(size=(ROWS, 6)) * 2)


def _hinge_01(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Labels {0, 1} (converted with 2y - 1), scores ~ N(0, 2^2)."""
    y = _hard(rng, (ROWS, 6))
    y[0] = [0, 1, 0, 1, 0, 1]
    return y, _away_from_margin(2 * y - 1, rng.normal(size=(ROWS, 6)) * 2)


def _hinge_scales(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Labels +-1, scores of magnitude 1e-6 .. 1e6, a few just inside/outside the margin."""
    t = _signs(rng, (ROWS, 6))
    f = _signs(rng, (ROWS, 6)) * _loguniform(rng, -6, 6, (ROWS, 6))
    f[::4, 0] = t[::4, 0] * (1 - 1e-2)
    f[1::4, 0] = t[1::4, 0] * (1 + 1e-2)
    return t, _away_from_margin(t, f)


# --------------------------------------------------------------------------- KL


def _kld_random(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Random distributions."""
    return _dirichlet(rng, ROWS), _dirichlet(rng, ROWS)


def _kld_near_equal(rng: np.random.Generator, dtype: Any) -> Arrays:
    """q = p (1 + delta * noise), renormalised, delta from 1e-2 down to 1e-12."""
    p = _dirichlet(rng, ROWS)
    delta = np.logspace(-2, -12, ROWS)[:, None]
    q = p * (1 + delta * rng.normal(size=(ROWS, K)))
    return p, q / q.sum(axis=1, keepdims=True)


def _kld_zeros(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Targets with zeros (0 log 0 = 0), including zero predictions under zero targets."""
    t = _dirichlet(rng, ROWS)
    t[rng.random((ROWS, K)) < 0.4] = 0.0
    t[:, 0] = np.where(t.sum(axis=1) == 0, 1.0, t[:, 0])
    t = t / t.sum(axis=1, keepdims=True)
    p = _dirichlet(rng, ROWS)
    p[::3] = np.where(t[::3] == 0, 0.0, p[::3])
    return t, p


def _kld_extreme(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Predictions spanning the smallest normal to 1: large ratios t/p."""
    fi = _fi(dtype)
    p = _loguniform(rng, np.log10(fi.smallest_normal), 0, (ROWS, K)).astype(dtype)
    return _dirichlet(rng, ROWS), np.maximum(p, fi.smallest_normal)


def _kld_tiny_targets(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Targets from the smallest normal to 1 against moderate predictions: t/p spans 1e-300."""
    fi = _fi(dtype)
    t = _loguniform(rng, np.log10(fi.smallest_normal), 0, (ROWS, K)).astype(dtype)
    return np.maximum(t, fi.smallest_normal), _dirichlet(rng, ROWS)


BCE_PROB = {
    "generic": _bce_generic,
    "soft": _bce_soft,
    "extreme": _bce_extreme,
    "extreme_soft": _bce_extreme_soft,
}
BCE_LOGIT = {
    "generic": _bce_logit_generic,
    "soft": _bce_logit_soft,
    "large": _bce_logit_large,
    "confident": _bce_logit_confident,
}
REGIMES: dict[tuple[str, bool], dict[str, RegimeFn]] = {
    ("mse", False): {
        "generic": _reg_generic,
        "huge": _reg_huge,
        "tiny": _reg_tiny,
        "spread": _reg_spread,
        "equal": _reg_equal,
    },
    ("bce", False): BCE_PROB,
    ("bce", True): BCE_LOGIT,
    ("cce", False): {
        "generic": _cce_generic,
        "soft": _cce_soft,
        "extreme": _cce_extreme,
        "unnormalised": _cce_unnormalised,
    },
    ("cce", True): {
        "generic": _cce_logit_generic,
        "soft": _cce_logit_soft,
        "large": _cce_logit_large,
        "confident": _cce_logit_confident,
        "thirty": _cce_logit_thirty,
    },
    ("scce", False): {
        "generic": _scce_generic,
        "extreme": _scce_extreme,
        "unnormalised": _scce_unnormalised,
    },
    ("scce", True): {
        "generic": _scce_logit_generic,
        "large": _scce_logit_large,
        "confident": _scce_logit_confident,
        "thirty": _scce_logit_thirty,
    },
    ("hinge", False): {"generic": _hinge_pm1, "zero_one": _hinge_01, "scales": _hinge_scales},
    ("kld", False): {
        "generic": _kld_random,
        "near_equal": _kld_near_equal,
        "zeros": _kld_zeros,
        "extreme": _kld_extreme,
        "tiny_targets": _kld_tiny_targets,
    },
}
REGIMES[("mae", False)] = REGIMES[("mse", False)]
PROBABILITY_INPUTS = {("bce", False), ("kld", False)}
HARD_REGIMES = {"spread", "extreme", "large", "confident", "near_equal"}
"""Also run on PyTorch tensors and JAX arrays (``Entry.backend_regimes``)."""


def _regime(loss: str, from_logits: bool, fn: RegimeFn) -> Callable[[np.random.Generator, Any], dict]:
    """A regime of (t, p) in float64 as an entry's regime: cast to ``dtype``; probabilities kept in
    [smallest normal, 1 - eps] after the cast (exact zeros stay)."""

    def regime(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
        t, p = _cast(dtype, *(np.asarray(a) for a in fn(rng, dtype)))
        if (loss, from_logits) in PROBABILITY_INPUTS:
            fi = _fi(dtype)
            p = np.where(p > 0, np.clip(p, fi.smallest_normal, 1 - fi.eps), 0).astype(dtype)
        return {"y_true": t, "y_pred": p}

    regime.__doc__ = fn.__doc__
    return regime


# --------------------------------------------------------------------------- the oracle


def _hinge_terms(t: list[mpf], f: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Keras's hinge: {0, 1} labels become 2y - 1 (a row of the regime's array is converted alike)."""
    if all(ti in (0, 1) for ti in t):
        t = [2 * ti - 1 for ti in t]
    return R.SPECS["hinge"].terms(t, f, opts)


SPECS = {**R.SPECS, "hinge": R.Spec(_hinge_terms, mean=True, separable=True)}


def _effective_targets(t: Any, ls: float, binary: bool) -> list[mpf]:
    """Smoothed targets t' of a bce/cce row, in mpmath."""
    lsm = mpf(float(ls))
    tm = [mpf(float(v)) for v in t]
    denom = 2 if binary else len(tm)
    return [tj * (1 - lsm) + lsm / denom for tj in tm]


def _cancelling_terms(tp: list[mpf], p: list[mpf], binary: bool, logits: bool) -> list[tuple[mpf, mpf]]:
    """The two terms whose difference is each gradient element of a bce/cce row (by hand).

    bce logits: sigmoid(x)/n vs t'/n; bce probabilities: t'/(p n) vs (1-t')/((1-p) n);
    cce logits: softmax_j * sum(t') vs t'_j; cce probabilities: sum(t')/P vs t'_j/p_j.
    """
    n = len(p)
    if binary and logits:
        return [(1 / (1 + mpmath.exp(-x)) / n, t / n) for t, x in zip(tp, p, strict=True)]
    if binary:
        return [(t / pj / n if t else mpf(0), (1 - t) / (1 - pj) / n if t != 1 else mpf(0))
                for t, pj in zip(tp, p, strict=True)]
    total = mpmath.fsum(tp)
    if logits:
        m = max(p)
        e = [mpmath.exp(x - m) for x in p]
        s = mpmath.fsum(e)
        return [(ej / s * total, t) for ej, t in zip(e, tp, strict=True)]
    big_p = mpmath.fsum(p)
    return [(total / big_p, t / pj if t else mpf(0)) for t, pj in zip(tp, p, strict=True)]


def _soft_target_scale(binary: bool) -> Callable[[dict, Mapping[str, Any]], np.ndarray]:
    """``grad_scale`` of bce (``binary``) or cce: the larger cancelling term where the effective
    target is not 0 or 1 and the gradient (their difference) is at most half of it, else None."""

    def scale(arrays: dict, options: Mapping[str, Any]) -> np.ndarray:
        t_all, p_all = arrays["y_true"], arrays["y_pred"]
        out = np.full(p_all.shape, None, dtype=object)
        logits = bool(options.get("from_logits", False))
        with mpmath.mp.workdps(40):
            for r in range(p_all.shape[0]):
                tp = _effective_targets(t_all[r], options.get("label_smoothing", 0.0), binary)
                p = [mpf(float(v)) for v in p_all[r]]
                for j, (a, b) in enumerate(_cancelling_terms(tp, p, binary, logits)):
                    big = max(abs(a), abs(b))
                    if tp[j] not in (0, 1) and abs(a - b) <= big / 2:
                        out[r, j] = big
        return out

    return scale


def _unnormalised_kl_scale(arrays: dict, options: Mapping[str, Any]) -> np.ndarray:
    """``value_scale`` of kl_divergence: for a row whose targets and predictions have clearly
    different totals (not two distributions), the sum of the magnitudes of its terms
    ``|t_j log(t_j / p_j)|``; else None (the strict bound).

    Such a row's terms have both signs and may cancel: ``t = [0.53125, 0.7265625]`` against
    ``p = [0.6875, 0.6015625]`` has terms of about -0.137 and +0.137 and a value of 2.0e-4, which
    losskit gives to 29 ulp (a float64 rounding of each term, magnified 700 times). Between two
    distributions the terms' excesses over ``t_j - p_j`` are non-negative and the strict bound holds
    (the ``near_equal`` regime).
    """
    t_all, p_all = arrays["y_true"], arrays["y_pred"]
    out = np.full(t_all.shape[:1], None, dtype=object)
    with mpmath.mp.workdps(40):
        for r in range(t_all.shape[0]):
            t = [mpf(float(v)) for v in t_all[r]]
            p = [mpf(float(v)) for v in p_all[r]]
            big_t, big_p = mpmath.fsum(t), mpmath.fsum(p)
            magnitude = mpmath.fsum(abs(R._xlogratio(tj, tj, pj)) for tj, pj in zip(t, p, strict=True))
            if abs(big_t - big_p) > max(big_t, big_p) * mpf(2) ** -20 and magnitude > 0:
                out[r] = magnitude
    return out


# --------------------------------------------------------------------------- random rows


def _floats(dtype: Any, lo: float, hi: float) -> Any:
    """Finite floats of ``dtype`` in [lo, hi] (subnormals excluded)."""
    from hypothesis import strategies as st

    width = 32 if np.dtype(dtype) == np.float32 else 64
    return st.floats(lo, hi, width=width, allow_subnormal=False)


def _random_rows(loss: str) -> Callable[[Any, Any], dict]:
    """One to three Hypothesis-drawn rows of one to five columns for ``loss``."""

    def draw(data: Any, dtype: Any) -> dict[str, np.ndarray]:
        from hypothesis import strategies as st

        rows = data.draw(st.integers(1, 3), label="rows")
        cols = data.draw(st.integers(1 if loss != "cce" else 2, 5), label="cols")
        big = float(np.dtype(dtype).type(1e150 if np.dtype(dtype) == np.float64 else 1e15))
        tiny = float(np.finfo(dtype).smallest_normal)

        def matrix(elements: Any) -> np.ndarray:
            flat = data.draw(st.lists(elements, min_size=rows * cols, max_size=rows * cols))
            return np.array(flat, dtype).reshape(rows, cols)

        if loss in ("mse", "mae"):
            t, p = matrix(_floats(dtype, -big, big)), matrix(_floats(dtype, -big, big))
        elif loss == "hinge":
            t, p = matrix(st.sampled_from([-1.0, 1.0])), matrix(_floats(dtype, -1e6, 1e6))
        elif loss == "kld":
            t, p = matrix(_floats(dtype, 0.0, 1.0)), matrix(_floats(dtype, tiny, 1.0))
        else:  # bce / cce from logits, hard or soft targets
            t = matrix(st.sampled_from([0.0, 1.0]) | _floats(dtype, 0.0, 1.0))
            if loss == "cce":  # categorical targets are distributions: one-hot or normalised rows
                hot = np.eye(cols, dtype=dtype)[data.draw(st.integers(0, cols - 1), label="label")]
                sums = t.sum(axis=1, keepdims=True)
                t = np.where(sums > 0, t / np.where(sums > 0, sums, 1), hot).astype(dtype)
                if data.draw(st.booleans(), label="one_hot"):
                    t = np.broadcast_to(hot, t.shape).copy()
            p = matrix(_floats(dtype, -1e4, 1e4))
        return {"y_true": t, "y_pred": p}

    return draw


# --------------------------------------------------------------------------- the peers
# As benchmarks/accuracy.py has always measured them: Keras's function of the same name; PyTorch's
# functional losses averaged over the last axis (cross_entropy and kl_div on log p for
# probabilities); Optax on logits or log p; scikit-learn's metrics row by row (hard labels only).


def _pm1(t: Any) -> Any:
    """Keras's hinge labels: {0, 1} become 2y - 1 (the array's own type)."""
    return 2 * t - 1 if bool(((t == 0) | (t == 1)).all()) else t


def _smoothed(t: Any, ls: float, k: int) -> Any:
    return t * (1 - ls) + ls / k if ls else t


def _keras(name: str) -> Any:
    def fn(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
        import keras

        return getattr(keras.losses, name)(a["y_true"], p, **o)

    return keras_peer(fn)


def _torch(loss: str) -> Any:
    def fn(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
        import torch
        import torch.nn.functional as F

        t, ls, fl = a["y_true"], o.get("label_smoothing", 0.0), o.get("from_logits", False)
        if loss == "mse":
            return F.mse_loss(p, t, reduction="none").mean(-1)
        if loss == "mae":
            return F.l1_loss(p, t, reduction="none").mean(-1)
        if loss == "bce":
            bce = F.binary_cross_entropy_with_logits if fl else F.binary_cross_entropy
            return bce(p, _smoothed(t, ls, 2), reduction="none").mean(-1)
        if loss in ("cce", "scce"):
            target = t.long() if loss == "scce" else t
            kw = {"label_smoothing": ls} if loss == "cce" else {}
            return F.cross_entropy(p if fl else torch.log(p), target, reduction="none", **kw)
        return F.kl_div(torch.log(p), t, reduction="none").sum(-1)  # kld

    return torch_peer(fn)


def _optax(loss: str) -> Any:
    def fn(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
        import jax.numpy as jnp
        import optax

        t, ls, fl = a["y_true"], o.get("label_smoothing", 0.0), o.get("from_logits", False)
        if loss == "mse":
            return optax.squared_error(p, t).mean(-1)
        if loss == "bce":
            return optax.sigmoid_binary_cross_entropy(p, _smoothed(t, ls, 2)).mean(-1)
        if loss == "cce":
            return optax.softmax_cross_entropy(p if fl else jnp.log(p),
                                               optax.smooth_labels(t, ls) if ls else t)
        if loss == "scce":
            return optax.softmax_cross_entropy_with_integer_labels(p if fl else jnp.log(p), t)
        if loss == "kld":
            return optax.kl_divergence(jnp.log(p), t)
        return optax.hinge_loss(p, _pm1(t)).mean(-1)  # hinge

    return jax_peer(fn)


def _sklearn(loss: str) -> Any:
    def fn(a: dict[str, np.ndarray], o: Mapping[str, Any]) -> np.ndarray | None:
        from sklearn import metrics

        t, p = a["y_true"], a["y_pred"]
        if loss in ("mse", "mae"):
            metric = metrics.mean_squared_error if loss == "mse" else metrics.mean_absolute_error
            return np.array([metric(tr, pr) for tr, pr in zip(t, p, strict=True)], p.dtype)
        if loss == "bce":
            if not np.isin(t, (0, 1)).all():
                return None
            return np.array([metrics.log_loss(tr, pr, labels=[0, 1]) for tr, pr in zip(t, p, strict=True)],
                            p.dtype)
        if loss == "cce" and not np.isin(t, (0, 1)).all():
            return None
        labels = t if loss == "scce" else t.argmax(-1)
        k = p.shape[1]
        return np.array([metrics.log_loss([lab], pr[None], labels=list(range(k)))
                         for lab, pr in zip(labels, p, strict=True)], p.dtype)

    run = values_only(fn)

    def peer(arrays: dict[str, np.ndarray], options: Mapping[str, Any]) -> Any:
        if options.get("from_logits") or options.get("label_smoothing"):
            return None
        values, grads = run(arrays, options)
        return None if values.ndim == 0 else (values, grads)

    return peer


NAMES = {  # key -> (losskit function, keras, torch, optax, sklearn names as the catalog page shows them)
    "mse": ("mean_squared_error", "keras.losses.MeanSquaredError", "torch.nn.MSELoss",
            "optax.losses.squared_error", "sklearn.metrics.mean_squared_error"),
    "mae": ("mean_absolute_error", "keras.losses.MeanAbsoluteError", "torch.nn.L1Loss", None,
            "sklearn.metrics.mean_absolute_error"),
    "bce": ("binary_crossentropy", "keras.losses.BinaryCrossentropy",
            "torch.nn.BCELoss / torch.nn.BCEWithLogitsLoss", "optax.losses.sigmoid_binary_cross_entropy",
            "sklearn.metrics.log_loss"),
    "cce": ("categorical_crossentropy", "keras.losses.CategoricalCrossentropy",
            "torch.nn.CrossEntropyLoss (probability targets)", "optax.losses.softmax_cross_entropy",
            "sklearn.metrics.log_loss"),
    "scce": ("sparse_categorical_crossentropy", "keras.losses.SparseCategoricalCrossentropy",
             "torch.nn.CrossEntropyLoss", "optax.losses.softmax_cross_entropy_with_integer_labels",
             "sklearn.metrics.log_loss"),
    "hinge": ("hinge", "keras.losses.Hinge", None, "optax.losses.hinge_loss", None),
    "kld": ("kl_divergence", "keras.losses.KLDivergence", "torch.nn.KLDivLoss (on log p)",
            "optax.losses.kl_divergence (on log p)", None),
}
PEER_KEYS = ("keras", "torch", "optax", "sklearn")


def _peers(loss: str, from_logits: bool) -> tuple[dict[str, Any], dict[str, str]]:
    fn_name, *names = NAMES[loss]
    makers = {"keras": lambda: _keras(fn_name), "torch": lambda: _torch(loss),
              "optax": lambda: _optax(loss), "sklearn": lambda: _sklearn(loss)}
    peers, peer_names = {}, {}
    for key, name in zip(PEER_KEYS, names, strict=True):
        if name is None or (key == "optax" and loss == "bce" and not from_logits) or \
                (key == "sklearn" and from_logits):
            continue
        peers[key], peer_names[key] = makers[key](), name
    return peers, peer_names


# --------------------------------------------------------------------------- entries


def _option_sets(loss: str) -> list[tuple[bool, float]]:
    """(from_logits, label_smoothing) combinations of a loss."""
    logits = (False, True) if loss in ("bce", "cce", "scce") else (False,)
    smoothing = (0.0, 0.1) if loss in ("bce", "cce") else (0.0,)
    return [(fl, ls) for fl in logits for ls in smoothing]


def _entry(loss: str, from_logits: bool, ls: float) -> Entry:
    options: dict[str, Any] = {}
    if loss in ("bce", "cce", "scce"):
        options["from_logits"] = from_logits
    if loss in ("bce", "cce"):
        options["label_smoothing"] = ls
    regimes = {name: _regime(loss, from_logits, fn)
               for name, fn in REGIMES[(loss, from_logits)].items()}
    peers, peer_names = _peers(loss, from_logits)
    soft = loss in ("bce", "cce")
    random = from_logits if soft else loss in ("mse", "mae", "hinge", "kld")
    return Entry(
        NAMES[loss][0], SPECS[loss], regimes=regimes, options=options,
        peers=peers, peer_names=peer_names, peer_regimes=(),
        grad_scale=_soft_target_scale(loss == "bce") if soft else None,
        value_scale=_unnormalised_kl_scale if loss == "kld" else None,
        backend_regimes=tuple(r for r in regimes if r in HARD_REGIMES) or ("generic",),
        random_rows=_random_rows(loss) if random else None,
        max_rows=ROWS,
        note=NOTES.get(loss, ""))


NOTES = {
    "bce": "soft or smoothed targets: a gradient element that is the difference of two terms within a "
           "factor 2 of each other is held to 8 ulp of the larger term",
    "kld": "targets and predictions with different totals (not two distributions): the value is held "
           "to 8 ulp of the sum of the terms' magnitudes (they may cancel; 29 ulp of the value seen)",
}
NOTES["cce"] = NOTES["bce"]


ENTRIES = [_entry(loss, fl, ls) for loss in NAMES for fl, ls in _option_sets(loss)]
