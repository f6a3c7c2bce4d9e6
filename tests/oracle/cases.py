"""Deterministic input regimes for the oracle suite and the accuracy benchmark.

Every :class:`Case` holds small arrays (``ROWS`` rows, at most 8 columns) already cast to its
dtype, generated from a NumPy ``Generator`` seeded by a hash of the case's id, so a case is
identical across runs, processes and machines.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ROWS = 40
DTYPES: tuple[type[np.floating[Any]], ...] = (np.float32, np.float64)
LOSSES = ("mse", "mae", "bce", "cce", "scce", "hinge", "kld")

Arrays = tuple[np.ndarray, np.ndarray]
RegimeFn = Callable[[np.random.Generator, Any], Arrays]


@dataclass(frozen=True)
class Case:
    """One loss evaluated on one regime of inputs, for one dtype and set of options."""

    loss: str
    regime: str
    dtype: Any
    y_true: np.ndarray = field(repr=False)
    y_pred: np.ndarray = field(repr=False)
    from_logits: bool = False
    label_smoothing: float = 0.0

    @property
    def id(self) -> str:
        """Readable unique id, e.g. ``bce-logits-large-ls0.1-float32``."""
        return case_id(self.loss, self.regime, self.dtype, self.from_logits, self.label_smoothing)

    @property
    def options(self) -> dict[str, Any]:
        """Keyword options of the loss (only those it accepts)."""
        if self.loss in ("bce", "cce"):
            return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}
        if self.loss == "scce":
            return {"from_logits": self.from_logits}
        return {}

    @property
    def oracle_targets(self) -> np.ndarray:
        """Targets as the oracle sees them (hinge {0, 1} labels become 2y - 1, as in Keras)."""
        if self.loss == "hinge" and np.isin(self.y_true, (0, 1)).all():
            return 2 * self.y_true - 1
        return self.y_true


def case_id(loss: str, regime: str, dtype: Any, from_logits: bool, ls: float) -> str:
    """Id of a case; also the seed source."""
    parts = [loss]
    if loss in ("bce", "cce", "scce"):
        parts.append("logits" if from_logits else "probs")
    parts.append(regime)
    if loss in ("bce", "cce"):
        parts.append(f"ls{ls:g}")
    parts.append(np.dtype(dtype).name)
    return "-".join(parts)


def _rng(key: str) -> np.random.Generator:
    """Generator seeded by a stable hash of ``key``."""
    return np.random.default_rng(zlib.crc32(key.encode()))


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


# --------------------------------------------------------------------------- registry

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
    ("hinge", False): {"pm1": _hinge_pm1, "zero_one": _hinge_01, "scales": _hinge_scales},
    ("kld", False): {
        "random": _kld_random,
        "near_equal": _kld_near_equal,
        "zeros": _kld_zeros,
        "extreme": _kld_extreme,
        "tiny_targets": _kld_tiny_targets,
    },
}
REGIMES[("mae", False)] = REGIMES[("mse", False)]

PROBABILITY_INPUTS = {("bce", False), ("cce", False), ("scce", False), ("kld", False)}


def _finish(loss: str, from_logits: bool, dtype: Any, t: np.ndarray, p: np.ndarray) -> Arrays:
    """Cast to ``dtype``; keep probability inputs inside [0, 1 - eps] after the cast."""
    t_c, p_c = _cast(dtype, np.asarray(t), np.asarray(p))
    if (loss, from_logits) in PROBABILITY_INPUTS and loss in ("bce", "kld"):
        fi = _fi(dtype)
        p_c = np.where(p_c > 0, np.clip(p_c, fi.smallest_normal, 1 - fi.eps), 0).astype(dtype)
    return t_c, p_c


def make_case(
    loss: str, regime: str, dtype: Any, from_logits: bool = False, label_smoothing: float = 0.0
) -> Case:
    """Build one case deterministically."""
    key = case_id(loss, regime, dtype, from_logits, label_smoothing)
    gen = REGIMES[(loss, from_logits)][regime]
    t, p = _finish(loss, from_logits, dtype, *gen(_rng(key), dtype))
    return Case(loss, regime, np.dtype(dtype).type, t, p, from_logits, label_smoothing)


def _options(loss: str) -> Iterator[tuple[bool, float]]:
    """(from_logits, label_smoothing) combinations tested for a loss."""
    logits = (False, True) if loss in ("bce", "cce", "scce") else (False,)
    smoothing = (0.0, 0.1) if loss in ("bce", "cce") else (0.0,)
    for fl in logits:
        for ls in smoothing:
            yield fl, ls


def all_cases(losses: tuple[str, ...] = LOSSES) -> list[Case]:
    """Every (loss, regime, dtype, options) case."""
    out = []
    for loss in losses:
        for fl, ls in _options(loss):
            for regime in REGIMES[(loss, fl)]:
                for dtype in DTYPES:
                    out.append(make_case(loss, regime, dtype, fl, ls))
    return out
