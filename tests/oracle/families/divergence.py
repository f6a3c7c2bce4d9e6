"""Oracle entries for the divergences (issue 4): KL on log-probabilities (PyTorch's ``kl_div``, Optax's
``kl_divergence``), generalized KL, Jensen-Shannon and total variation.

Terms are written from the definitions in mpmath (80 digits, with exact differences near equality).
Regimes keep every row differentiable: no infinite log-probabilities and no zero prediction under a
positive target (those are checked in ``tests/test_divergence.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from .. import reference as R
from ..catalog import Entry
from ..peers import jax_peer, torch_peer, values_only

ROWS = 8


# ------------------------------------------------------------------------------------------- terms


def _kl_div_terms(t: Any, x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``t_j (log t_j - x_j)``, with ``t = exp(y)`` for log targets; 0 where ``t_j = 0``."""
    out = []
    for tj, xj in zip(t, x, strict=True):
        if opts.get("log_target", False):
            out.append(mpf(0) if tj == mpf("-inf") else mpmath.exp(tj) * (tj - xj))
        else:
            if tj < 0:
                raise R.DomainError("negative target")
            out.append(mpf(0) if tj == 0 else tj * (mpmath.log(tj) - xj))
    return out


def _generalized_kl_terms(t: Any, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``t_j log(t_j / p_j) - t_j + p_j``."""
    out = []
    for tj, pj in zip(t, p, strict=True):
        if tj < 0 or pj < 0:
            raise R.DomainError("negative measure")
        out.append(R._xlogratio(tj, tj, pj) - tj + pj)
    return out


def _generalized_kl_log_terms(t: Any, x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``t_j (log t_j - x_j) - t_j + exp(x_j)`` (``x = log p``)."""
    out = []
    for tj, xj in zip(t, x, strict=True):
        if tj < 0:
            raise R.DomainError("negative measure")
        q = mpmath.exp(xj)
        out.append(q if tj == 0 else tj * (mpmath.log(tj) - xj) - tj + q)
    return out


def _js_terms(t: Any, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``1/2 [t_j log(2 t_j / (t_j + p_j)) + p_j log(2 p_j / (t_j + p_j))]``."""
    out = []
    for tj, pj in zip(t, p, strict=True):
        if tj < 0 or pj < 0:
            raise R.DomainError("negative probability")
        s = mpmath.fadd(tj, pj, exact=True)
        out.append((R._xlogratio(tj, 2 * tj, s) + R._xlogratio(pj, 2 * pj, s)) / 2)
    return out


def _tv_terms(t: Any, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``|t_j - p_j| / 2``."""
    return [abs(R._exact_sub(tj, pj)) / 2 for tj, pj in zip(t, p, strict=True)]


# ----------------------------------------------------------------------------------------- regimes


def _dist(rng: np.random.Generator, rows: int = ROWS, n: int = 5, spread: float = 0.0) -> np.ndarray:
    """Random distributions; ``spread`` > 0 gives log-uniform entries over that many decades."""
    w = 10.0 ** rng.uniform(-spread, 0, size=(rows, n)) if spread else rng.uniform(0.01, 1, (rows, n))
    return w / w.sum(-1, keepdims=True)


def _cast(dtype: Any, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v.astype(dtype) for k, v in arrays.items()}


def _near(rng: np.random.Generator, dtype: Any, t: np.ndarray, max_ulps: int = 64) -> np.ndarray:
    """``t`` moved by a few ulps (of ``dtype``) per element, and some entries left equal."""
    t = t.astype(dtype)
    k = rng.integers(-max_ulps, max_ulps + 1, size=t.shape)
    return t + (k * np.spacing(np.abs(t))).astype(dtype)


def _near_rel(rng: np.random.Generator, dtype: Any, t: np.ndarray) -> np.ndarray:
    """``t (1 + d)`` with relative changes from 1e-12 to 1e-2 (cast to ``dtype``)."""
    d = rng.choice([-1.0, 1.0], size=t.shape) * 10.0 ** rng.uniform(-12, -2, size=t.shape)
    return (t * (1 + d)).astype(dtype)


# kl_div: y_pred = log q


def _kl_div_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    return _cast(dtype, y_true=_dist(rng), y_pred=np.log(_dist(rng)))


def _kl_div_tiny(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    decades = 35 if np.dtype(dtype) == np.float32 else 300
    t = _dist(rng, spread=decades)
    return _cast(dtype, y_true=t, y_pred=np.log(_dist(rng, spread=decades)))


def _kl_div_near(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Log-probabilities of a nearby distribution (relative changes 1e-12 .. 1e-2)."""
    t = _dist(rng).astype(dtype)
    return {"y_true": t, "y_pred": np.log(_near_rel(rng, np.float64, t.astype(np.float64))
                                          ).astype(dtype)}


def _kl_div_rounded(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """``x = log(t)`` rounded to ``dtype`` (a few ulps either way): the divergence is that rounding."""
    t = _dist(rng).astype(dtype)
    x = np.log(t.astype(np.float64)).astype(dtype)
    return {"y_true": t, "y_pred": _near(rng, dtype, x, max_ulps=3)}


def _cancelling(log_target: bool) -> Any:
    """Rows whose terms cancel: ``x_j`` a few ulps from ``y_j = log t_j`` for three classes, and the
    fourth chosen (then rounded to the grid) so that ``sum_j t_j (y_j - x_j)`` is nearly 0."""

    def make(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
        t = _dist(rng, n=4).astype(dtype)
        y = np.log(t.astype(np.float64)).astype(dtype)
        e = np.exp(y.astype(np.float64)) if log_target else t.astype(np.float64)
        x = y.copy()
        k = rng.integers(-40, 41, size=(ROWS, 3))
        x[:, :3] = y[:, :3] + (k * np.spacing(np.abs(y[:, :3]))).astype(dtype)
        d = (y[:, :3].astype(np.float64) - x[:, :3].astype(np.float64))
        x[:, 3] = (y[:, 3] + (d * e[:, :3]).sum(-1) / e[:, 3]).astype(dtype)
        x[:, 3] += (rng.integers(-1, 2, size=ROWS) * np.spacing(np.abs(x[:, 3]))).astype(dtype)
        return {"y_true": y if log_target else t, "y_pred": x}

    return make


def _kl_div_zeros(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Zero targets (their terms vanish whatever x is) next to very negative log-probabilities."""
    t = _dist(rng)
    t[:, 0] = 0.0
    t /= t.sum(-1, keepdims=True)
    x = np.log(_dist(rng))
    x[:, 0] = -rng.uniform(50, 700 if np.dtype(dtype) == np.float64 else 80, size=ROWS)
    return _cast(dtype, y_true=t, y_pred=x)


def _kl_div_logits_wide(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """``x = log_softmax(z)`` for logits z up to +-1000 (exact in float64, then cast)."""
    z = rng.uniform(-1000, 1000, size=(ROWS, 5))
    x = z - z.max(-1, keepdims=True)
    x = x - np.log(np.exp(x).sum(-1, keepdims=True))
    return _cast(dtype, y_true=_dist(rng), y_pred=x)


def _log_targets(regime: Any) -> Any:
    def make(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
        d = regime(rng, dtype)
        with np.errstate(divide="ignore"):
            y = np.log(d["y_true"].astype(np.float64))
        y = np.where(np.isinf(y), -745.0 if np.dtype(dtype) == np.float64 else -104.0, y)
        return {"y_true": y.astype(dtype), "y_pred": d["y_pred"]}

    return make


# generalized KL, JS, TV: probabilities / non-negative measures


def _prob_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    return _cast(dtype, y_true=_dist(rng), y_pred=_dist(rng))


def _prob_near(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Nearby distributions: a few ulps apart (half the rows), or 1e-12 .. 1e-2 relatively."""
    t = _dist(rng).astype(dtype)
    p = np.concatenate([_near(rng, dtype, t[:4]), _near_rel(rng, dtype, t[4:])])
    p[0, 0] = t[0, 0]
    return {"y_true": t, "y_pred": p}


def _prob_near_unequal(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """As :func:`_prob_near` with no two entries equal (where the gradient of JS is exactly 0, a central
    difference of the oracle is off by O(h^2))."""
    d = _prob_near(rng, dtype)
    t, p = d["y_true"], d["y_pred"].copy()
    p = np.where(p == t, np.nextafter(t, np.asarray(1.0, dtype)), p)
    return {"y_true": t, "y_pred": p}


def _prob_tiny(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    decades = 35 if np.dtype(dtype) == np.float32 else 300
    return _cast(dtype, y_true=_dist(rng, spread=decades), y_pred=_dist(rng, spread=decades))


def _prob_far(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Ratios 10^+-k (far from equality), and zero targets where the prediction is positive."""
    t = _dist(rng, spread=8)
    p = _dist(rng, spread=8)
    t[:4, 0] = 0.0
    return _cast(dtype, y_true=t, y_pred=p)


def _prob_zeros(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Disjoint-looking supports: zero targets, tiny predictions under positive targets, both 0."""
    t = _dist(rng)
    p = _dist(rng)
    t[:, 0] = 0.0
    p[:, 1] = 1e-30 if np.dtype(dtype) == np.float32 else 1e-300
    t[:, 2] = p[:, 2] = 0.0
    return _cast(dtype, y_true=t, y_pred=p)


def _log_measures(regime: Any) -> Any:
    """A regime of (t, p) measures as (t, log p), computed from p in float64 and then cast."""

    def make(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
        d = regime(rng, np.float64)
        return _cast(dtype, y_true=d["y_true"], y_pred=np.log(d["y_pred"]))

    return make


def _log_rounded(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """``x = log t`` rounded to ``dtype``, moved by a few ulps."""
    t = rng.uniform(0.01, 3, size=(ROWS, 5)).astype(dtype)
    x = np.log(t.astype(np.float64)).astype(dtype)
    return {"y_true": t, "y_pred": _near(rng, dtype, x, max_ulps=3)}


def _log_wide(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """log p from -700 to 700 (float64; +-80 in float32) against tiny to huge targets."""
    top = 80 if np.dtype(dtype) == np.float32 else 700
    t = 10.0 ** rng.uniform(-top / 2.4, top / 2.4, size=(ROWS, 4))
    t[:2, 0] = 0.0
    return _cast(dtype, y_true=t, y_pred=rng.uniform(-top, top, size=(ROWS, 4)))


def _log_thresholds(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """d = log t - x around +-2, where the computation switches between series and exponentials."""
    t = rng.uniform(0.1, 3, size=(ROWS, 4))
    d = rng.choice([-2.0, 2.0], size=t.shape) + rng.uniform(-1e-3, 1e-3, size=t.shape)
    return _cast(dtype, y_true=t, y_pred=np.log(t) - d)


def _prob_thresholds(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Ratios t/p around 2, 1/2, 4 and 1/4, where the computations switch from series to logarithms
    (and where the logarithms cancel most)."""
    p = _dist(rng, ROWS, 4)
    ratio = rng.choice([2.0, 0.5, 4.0, 0.25], size=p.shape) * (1 + rng.uniform(-1e-3, 1e-3, p.shape))
    return _cast(dtype, y_true=p * ratio / 4, y_pred=p / 4)  # within [0, 1]


def _measure_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Unnormalised non-negative measures."""
    return _cast(dtype, y_true=rng.uniform(0, 3, size=(ROWS, 5)),
                 y_pred=rng.uniform(0.01, 3, size=(ROWS, 5)))


def _measure_huge(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    top = 30 if np.dtype(dtype) == np.float32 else 300
    return _cast(dtype, y_true=10.0 ** rng.uniform(-3, top, size=(ROWS, 4)),
                 y_pred=10.0 ** rng.uniform(-3, top, size=(ROWS, 4)))


# ------------------------------------------------------------------------------------------- peers


def _torch_kl_div(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    return F.kl_div(p, a["y_true"], reduction="none", log_target=o["log_target"]).sum(-1)


def _optax_kl(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import optax

    if o["log_target"]:
        return optax.losses.kl_divergence_with_log_targets(p, a["y_true"])
    return optax.losses.kl_divergence(p, a["y_true"])


def _optax_generalized_kl(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import jax.numpy as jnp
    import optax

    return optax.losses.generalized_kl_divergence(jnp.log(p), a["y_true"])


def _optax_generalized_kl_log(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import optax

    return optax.losses.generalized_kl_divergence(p, a["y_true"])


def _scipy_js(a: dict[str, np.ndarray], o: Mapping[str, Any]) -> np.ndarray:
    from scipy.spatial.distance import jensenshannon

    return jensenshannon(a["y_true"], a["y_pred"], axis=-1) ** 2


# ----------------------------------------------------------------------------------------- entries

KL_DIV_REGIMES = {"generic": _kl_div_generic, "tiny": _kl_div_tiny, "near_equal": _kl_div_near,
                  "rounded_log": _kl_div_rounded, "zero_targets": _kl_div_zeros,
                  "logits_wide": _kl_div_logits_wide}

ENTRIES = [
    *[Entry("kl_div", R.Spec(_kl_div_terms, mean=False, separable=True),
            regimes={**(KL_DIV_REGIMES if not log_target
                        else {k: _log_targets(v) for k, v in KL_DIV_REGIMES.items()}),
                     "cancelling": _cancelling(log_target)},
            options={"log_target": log_target},
            peers={"torch": torch_peer(_torch_kl_div), "optax": jax_peer(_optax_kl)},
            peer_names={"torch": "torch.nn.KLDivLoss",
                        "optax": ("optax.losses.kl_divergence_with_log_targets" if log_target
                                  else "optax.losses.kl_divergence")},
            peer_regimes=("generic", "tiny", "logits_wide"))
      for log_target in (False, True)],
    Entry("generalized_kl_divergence", R.Spec(_generalized_kl_terms, mean=False, separable=True),
          regimes={"generic": _measure_generic, "near_equal": _prob_near, "tiny": _prob_tiny,
                   "far": _prob_far, "huge": _measure_huge,
                   "thresholds": _prob_thresholds},
          peers={"optax": jax_peer(_optax_generalized_kl)},
          peer_names={"optax": "optax.losses.generalized_kl_divergence"}),
    Entry("generalized_kl_divergence", R.Spec(_generalized_kl_log_terms, mean=False, separable=True),
          regimes={"generic": _log_measures(_measure_generic),
                   "near_equal": lambda rng, dt: {**_prob_near(rng, dt),
                                                  "y_pred": np.log(_prob_near(rng, np.float64)
                                                                   ["y_pred"]).astype(dt)},
                   "rounded_log": _log_rounded, "wide": _log_wide, "thresholds": _log_thresholds},
          options={"log_predictions": True},
          peers={"optax": jax_peer(_optax_generalized_kl_log)},
          peer_names={"optax": "optax.losses.generalized_kl_divergence"}),
    Entry("jensen_shannon_divergence", R.Spec(_js_terms, mean=False, separable=True),
          regimes={"generic": _prob_generic, "near_equal": _prob_near_unequal, "tiny": _prob_tiny,
                   "far": _prob_far, "zeros": _prob_zeros, "thresholds": _prob_thresholds},
          peers={"scipy": values_only(_scipy_js)},
          peer_names={"scipy": "scipy.spatial.distance.jensenshannon (squared)"}),
    Entry("total_variation_distance", R.Spec(_tv_terms, mean=False, separable=True),
          regimes={"generic": _prob_generic, "near_equal": _prob_near, "tiny": _prob_tiny,
                   "far": _prob_far}),
]
