"""Oracle entries for the overlap losses (issue 12): Dice (and Jaccard, squared predictions) and
Tversky, with the smoothing conventions of Keras, Optax and MONAI.

Each row's value is written from the definition, ``1 - (I + s_n) / (I + a FP + b FN + s_d)`` (Dice:
``1 - (2I + s_n) / (P + T + s_d)``) at 80 digits, with the peers' constants typed in here from their
documentation (Keras ``backend.epsilon() = 1e-7`` in the denominator; Optax ``smooth = 1`` in both
terms of its Tversky-form ratio; MONAI ``smooth_nr = smooth_dr = 1e-5``), not from losskit. The
regimes that break the textbook formula: a near-perfect prediction (the ratio within 1e-15 of 1, where
``1 - ratio`` keeps no digit in float32), empty and one-pixel masks with tiny predictions, and
logits up to +-40 (``1 - sigmoid(x)`` rounds to 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from .. import reference as R
from ..catalog import Entry
from ..peers import jax_peer, keras_peer

ROWS = 6
N = 8
EXTRA_BITS = 1200
"""``1 - ratio`` is evaluated with this many more bits than the caller's precision: the loss may be as
small as 1e-300 (float64 predictions), so the subtraction may cancel ~1000 bits, and the numerical
gradient (``reference.row_grad``) needs the row value to the caller's relative precision."""

# (s_n, s_d) of each convention, from the peers' documentation, in Dice's 2I/(P + T) scale and in
# Tversky's I/(I + a FP + b FN) scale
SMOOTH = {"keras": {"dice": ("0", "1e-7"), "tversky": ("0", "1e-7")},
          "optax": {"dice": ("2", "2"), "tversky": ("1", "1")},
          "monai": {"dice": ("1e-5", "1e-5"), "tversky": ("1e-5", "1e-5")}}


def _constants(smooth: Any, form: str) -> tuple[mpf, mpf]:
    if isinstance(smooth, str):
        s_n, s_d = SMOOTH[smooth][form]
        # the library holds each constant as the nearest double
        return mpf(float(s_n)), mpf(float(s_d))
    if isinstance(smooth, tuple):
        return mpf(smooth[0]), mpf(smooth[1])
    return mpf(smooth), mpf(smooth)


def _probabilities(p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    if opts.get("from_logits", False):
        return [1 / (1 + mpmath.exp(-x)) for x in p]
    if any(x < 0 or x > 1 for x in p):
        raise R.DomainError("probability outside [0, 1]")
    return p


def _dice_terms(t: Any, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``1 - (2I + s_n) / (P + T + s_d)``; squared: ``P = sum p^2``, ``T = sum t^2``; Jaccard (MONAI):
    ``1 - (2I + s_n) / (2(P + T - I) + s_d)``."""
    with mpmath.mp.workprec(mpmath.mp.prec + EXTRA_BITS):
        return [+v for v in _dice_wide(t, p, opts)]


def _dice_wide(t: Any, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    s_n, s_d = _constants(opts.get("smooth", "keras"), "dice")
    p = _probabilities(p, opts)
    inter = mpmath.fsum(a * b for a, b in zip(t, p, strict=True))
    power = 2 if opts.get("squared_pred", False) else 1
    card = mpmath.fsum(a**power for a in t) + mpmath.fsum(b**power for b in p)
    den = 2 * (card - inter) if opts.get("jaccard", False) else card
    den += s_d
    if den == 0:
        return [mpf(0)]
    return [1 - (2 * inter + s_n) / den]


def _tversky_terms(t: Any, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``1 - (I + s_n) / (I + alpha FP + beta FN + s_d)``, FP = sum p (1 - t), FN = sum t (1 - p)."""
    with mpmath.mp.workprec(mpmath.mp.prec + EXTRA_BITS):
        return [+v for v in _tversky_wide(t, p, opts)]


def _tversky_wide(t: Any, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    s_n, s_d = _constants(opts.get("smooth", "keras"), "tversky")
    p = _probabilities(p, opts)
    a, b = mpf(opts.get("alpha", 0.5)), mpf(opts.get("beta", 0.5))
    inter = mpmath.fsum(x * y for x, y in zip(t, p, strict=True))
    fp = mpmath.fsum(y * (1 - x) for x, y in zip(t, p, strict=True))
    fn = mpmath.fsum(x * (1 - y) for x, y in zip(t, p, strict=True))
    return [1 - (inter + s_n) / (inter + a * fp + b * fn + s_d)]


def _generalized_dice_terms(t: Any, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    with mpmath.mp.workprec(mpmath.mp.prec + EXTRA_BITS):
        return [+v for v in _generalized_dice_wide(t, p, opts)]


def _generalized_dice_wide(t: Any, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Sudre et al. / MONAI: ``1 - (2 sum_c w_c I_c + s_n) / (sum_c w_c (P_c + T_c) + s_d)`` over
    the row's ``classes`` consecutive masks, ``w_c = 1/T_c^2`` (square), ``1/T_c`` (simple) or 1; an
    empty class takes the sample's largest finite weight (MONAI's documented rule)."""
    s_n, s_d = _constants(opts.get("smooth", "monai"), "dice")
    p = _probabilities(p, opts)
    c = opts.get("classes", 1)
    n = len(p) // c
    blocks = [(t[k * n:(k + 1) * n], p[k * n:(k + 1) * n]) for k in range(c)]
    volumes = [mpmath.fsum(tb) for tb, _ in blocks]
    kind = opts.get("w_type", "square")
    weights = [None if v == 0 else (1 / v**2 if kind == "square" else 1 / v if kind == "simple" else
                                    mpf(1)) for v in volumes]
    if kind == "uniform":
        weights = [mpf(1)] * c
    finite = [w for w in weights if w is not None]
    largest = max(finite) if finite else mpf(0)
    weights = [largest if w is None else w for w in weights]
    inter = mpmath.fsum(w * mpmath.fsum(a * b for a, b in zip(tb, pb, strict=True))
                        for w, (tb, pb) in zip(weights, blocks, strict=True))
    card = mpmath.fsum(w * (mpmath.fsum(tb) + mpmath.fsum(pb))
                       for w, (tb, pb) in zip(weights, blocks, strict=True))
    den = card + s_d
    return [mpf(0)] if den == 0 else [1 - (2 * inter + s_n) / den]


def _lovasz_terms(t: Any, x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Berman et al.: ``sum_k relu(e_(k)) (J_k - J_{k-1})``, errors ``e = 1 - x (2t - 1)`` sorted
    decreasingly, ``J_k`` the Jaccard loss of predicting the first k pixels positive."""
    errors = [1 - xi * (2 * ti - 1) for ti, xi in zip(t, x, strict=True)]
    order = sorted(range(len(x)), key=lambda i: -errors[i])
    positives = mpmath.fsum(t)
    total, previous, seen_pos, seen_neg = mpf(0), mpf(0), mpf(0), mpf(0)
    for i in order:
        seen_pos += t[i]
        seen_neg += 1 - t[i]
        jaccard = 1 - (positives - seen_pos) / (positives + seen_neg)
        total += max(errors[i], mpf(0)) * (jaccard - previous)
        previous = jaccard
    return [total]


# ----------------------------------------------------------------------------------------- regimes


def _masks(rng: np.random.Generator, rows: int = ROWS, n: int = N) -> np.ndarray:
    t = (rng.random((rows, n)) < 0.5).astype(float)
    t[:, 0] = 1.0  # every mask non-empty
    return t


def _generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    return {"y_true": _masks(rng).astype(dtype), "y_pred": rng.uniform(0, 1, (ROWS, N)).astype(dtype)}


def _near_perfect(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """``p`` within 1e-3 .. one ulp of the mask: the ratio within ~1e-16 of 1."""
    t = _masks(rng)
    eps = float(np.finfo(dtype).eps)
    gap = 10.0 ** rng.uniform(np.log10(eps), -3, (ROWS, N))
    p = np.where(t == 1, 1.0 - gap, gap * 10.0 ** rng.uniform(-20, 0, (ROWS, N)))
    p[0] = np.where(t[0] == 1, 1.0 - eps / 2, 0.0)  # one ulp below 1 under the mask, exactly 0 off it
    return {"y_true": t.astype(dtype), "y_pred": p.astype(dtype)}


def _empty(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Empty and one-pixel masks under tiny predictions (1e-30 .. 1e-3): tiny intersections and
    sums, the smoothing constants dominate."""
    t = np.zeros((ROWS, N))
    t[ROWS // 2:, 0] = 1.0
    low = -30 if np.dtype(dtype) == np.float32 else -200
    p = 10.0 ** rng.uniform(low, -3, (ROWS, N))
    p[-1, 0] = 10.0 ** rng.uniform(low, -3)  # a one-pixel mask with a tiny prediction under it
    return {"y_true": t.astype(dtype), "y_pred": p.astype(dtype)}


def _logits_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    return {"y_true": _masks(rng).astype(dtype), "y_pred": rng.normal(0, 3, (ROWS, N)).astype(dtype)}


def _logits_confident(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Confidently right logits (|x| from 5 to 40): 1 - sigmoid(x) below the rounding of 1."""
    t = _masks(rng)
    x = rng.uniform(5, 40, (ROWS, N)) * np.where(t == 1, 1.0, -1.0)
    return {"y_true": t.astype(dtype), "y_pred": x.astype(dtype)}


def _classes(regime: Any) -> Any:
    """A regime's rows as two classes of N/2 pixels each, the second class empty in one row."""

    def make(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
        out = regime(rng, dtype)
        t = out["y_true"].copy()
        t[:, N // 2] = 1.0  # the second class non-empty ...
        t[1, N // 2:] = 0.0  # ... except in row 1
        return {"y_true": t, "y_pred": out["y_pred"]}

    return make


REGIMES = {"generic": _generic, "near_perfect": _near_perfect, "empty": _empty}
LOGIT_REGIMES = {"generic": _logits_generic, "confident": _logits_confident}


# ------------------------------------------------------------------------------------------- peers


def _keras_dice(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import keras

    return keras.losses.dice(a["y_true"], p, axis=-1)


def _keras_tversky(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import keras

    # Keras's alpha weighs sum t (1 - p), the false negatives: the names are swapped
    return keras.losses.tversky(a["y_true"], p, alpha=o["beta"], beta=o["alpha"], axis=-1)


def _optax_two_class(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    """Optax's ``dice_loss`` on the mask and its complement as two classes (with
    ``apply_softmax=False`` it requires the classes to sum to 1), class 0's per-class value."""
    import jax.numpy as jnp
    import optax

    t = a["y_true"]
    probs = jnp.stack([p, 1 - p], axis=-1)
    targets = jnp.stack([t, 1 - t], axis=-1)
    out = optax.losses.dice_loss(probs, targets, alpha=o.get("alpha", 0.5), beta=o.get("beta", 0.5),
                                 apply_softmax=False, reduction="none", axis=-2)
    return out[..., 0]


def _optax_binary_logits(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    """One class: Optax applies the sigmoid."""
    import optax

    return optax.losses.dice_loss(p[..., None], a["y_true"][..., None], reduction="none",
                                  axis=-2)[..., 0]


def _lovasz_margin(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Logits within 1e-12 .. 1e-2 of the margin (x s near 1: the errors 1 - x s are tiny, exact by
    Sterbenz), on both sides, and one row without positives."""
    t = _masks(rng)
    t[0] = 0.0
    low = -6 if np.dtype(dtype) == np.float32 else -12
    gap = rng.choice([-1.0, 1.0], (ROWS, N)) * 10.0 ** rng.uniform(low, -2, (ROWS, N))
    return {"y_true": t.astype(dtype), "y_pred": ((1 + gap) * (2 * t - 1)).astype(dtype)}


GDL_REGIMES = {"generic": _classes(_generic), "near_perfect": _classes(_near_perfect),
               "empty": _empty}

ENTRIES = [
    Entry("dice", R.Spec(_dice_terms, mean=False, separable=False), regimes=REGIMES,
          peers={"keras": keras_peer(_keras_dice)}, peer_names={"keras": "keras.losses.Dice"}),
    Entry("dice", R.Spec(_dice_terms, mean=False, separable=False), regimes=REGIMES,
          options={"smooth": "optax"},
          peers={"optax": jax_peer(_optax_two_class)}, peer_names={"optax": "optax.losses.dice_loss"}),
    Entry("dice", R.Spec(_dice_terms, mean=False, separable=False), regimes=REGIMES,
          options={"smooth": "monai", "squared_pred": True}),
    Entry("dice", R.Spec(_dice_terms, mean=False, separable=False), regimes=REGIMES,
          options={"smooth": 1e-5, "jaccard": True}),
    Entry("dice", R.Spec(_dice_terms, mean=False, separable=False), regimes=LOGIT_REGIMES,
          options={"smooth": "optax", "from_logits": True},
          peers={"optax": jax_peer(_optax_binary_logits)},
          peer_names={"optax": "optax.losses.binary_dice_loss"}),
    Entry("tversky", R.Spec(_tversky_terms, mean=False, separable=False), regimes=REGIMES,
          options={"alpha": 0.3, "beta": 0.7},
          peers={"keras": keras_peer(_keras_tversky)},
          peer_names={"keras": "keras.losses.Tversky"}),
    Entry("tversky", R.Spec(_tversky_terms, mean=False, separable=False),
          regimes=REGIMES, options={"alpha": 0.7, "beta": 0.3, "smooth": "optax"},
          peers={"optax": jax_peer(_optax_two_class)},
          peer_names={"optax": "optax.losses.dice_loss(alpha, beta)"}),
    Entry("generalized_dice", R.Spec(_generalized_dice_terms, mean=False, separable=False),
          regimes=GDL_REGIMES, options={"classes": 2}),
    Entry("generalized_dice", R.Spec(_generalized_dice_terms, mean=False, separable=False),
          regimes={"generic": _classes(_logits_generic), "confident": _classes(_logits_confident)},
          options={"classes": 2, "w_type": "simple", "smooth": "keras", "from_logits": True}),
    Entry("lovasz_hinge", R.Spec(_lovasz_terms, mean=False, separable=False),
          regimes={"generic": _logits_generic, "margin": _lovasz_margin,
                   "confident": _logits_confident}),
]
