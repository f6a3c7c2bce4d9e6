"""Oracle entries for the embedding and ranking losses (issue 12): NT-Xent, circle, triplet margin,
cosine embedding, margin ranking, hinge embedding.

Terms are written from the definitions (Optax's / SimCLR's NT-Xent, Keras's circle, PyTorch's and
Optax's triplet distances, PyTorch's formulas) in mpmath on the exact float inputs. Regimes show where
the textbook formula loses digits: a temperature of 0.01 and confident rows whose loss is far below
eps (NT-Xent), scale 80 (circle), hinges that cancel (triplet, cosine embedding, margin ranking) and
nearly parallel vectors (``1 - cos``).

The batch-coupled peers (Optax ``ntxent(embeddings, labels)``, Keras ``circle(labels, embeddings)``)
take embeddings, not rows of a similarity matrix: their parity, values and gradients with respect to
the embeddings, is in ``tests/test_embedding.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from .. import reference as R
from ..catalog import Entry
from ..peers import jax_peer, torch_peer

ROWS = 8


def _cast(dtype: Any, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    return {k: (v if v.dtype.kind in "bi" else v.astype(dtype)) for k, v in arrays.items()}


def _lse(values: list[mpf]) -> mpf:
    top = max(values)
    return top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in values))


# ------------------------------------------------------------------------------------------- terms


def _roles(t: list[mpf], opts: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    where = opts.get("where") or [mpf(1)] * len(t)
    pos = [j for j, tj in enumerate(t) if where[j] and tj == 1]
    neg = [j for j, tj in enumerate(t) if where[j] and tj != 1]
    return pos, neg


def _ntxent_terms(t: list[mpf], s: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``mean_p log(1 + sum_{k in N} exp((s_k - s_p) / T))`` (Optax's per-pair NT-Xent), one term."""
    temperature = mpf(opts["temperature"])
    pos, neg = _roles(t, opts)
    if not pos or not neg:
        return [mpf(0)]
    total = mpmath.fsum(mpmath.log1p(mpmath.fsum(mpmath.exp((s[k] - s[p]) / temperature)
                                                 for k in neg)) for p in pos)
    return [total / len(pos)]


def _supcon_terms(t: list[mpf], s: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Khosla et al.'s ``L_out``: ``mean_p log sum_{k in P and N} exp((s_k - s_p) / T)``, one term."""
    temperature = mpf(opts["temperature"])
    pos, neg = _roles(t, opts)
    if not pos:
        return [mpf(0)]
    total = mpmath.fsum(mpmath.log(mpmath.fsum(mpmath.exp((s[k] - s[p]) / temperature)
                                               for k in pos + neg)) for p in pos)
    return [total / len(pos)]


def _circle_terms(t: list[mpf], s: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Keras's circle loss on one row of cosine similarities, one term."""
    gamma, m = mpf(opts["gamma"]), mpf(opts["margin"])
    pos, neg = _roles(t, opts)
    if not pos or not neg:
        return [mpf(0)]
    d = [max(1 - sj, mpf(0)) for sj in s]
    tp = [-gamma * max(m + d[j], mpf(0)) * (m - d[j]) for j in pos]
    tn = [gamma * max(1 + m - d[k], mpf(0)) * (1 - m - d[k]) for k in neg]
    x = _lse(tp) + _lse(tn)
    return [mpmath.log1p(mpmath.exp(x))]


def _distance(a: list[mpf], x: list[mpf], opts: Mapping[str, Any]) -> mpf:
    kind = opts.get("distance_function", "pnorm")
    if kind == "cosine":
        qa, qx = mpmath.fsum(v * v for v in a), mpmath.fsum(v * v for v in x)
        dot = mpmath.fsum(u * v for u, v in zip(a, x, strict=True))
        return 1 - (dot / mpmath.sqrt(qa * qx) if qa * qx else mpf(0))
    p = mpf(2) if kind == "euclidean" else mpf(opts.get("p", 2.0))
    eps = mpf(opts.get("eps", 1e-6))
    if opts.get("eps_placement", "difference") == "difference":  # PyTorch: ||a - x + eps||_p
        return mpmath.fsum(abs(u - v + eps) ** p for u, v in zip(a, x, strict=True)) ** (1 / p)
    return (mpmath.fsum((u - v) ** p for u, v in zip(a, x, strict=True)) + eps) ** (1 / p)


def _triplet_terms(t: list[mpf], a: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``max(0, D(a, p) - D(a, n) + margin)`` (with the swap: ``min(D(a, n), D(p, n))``), one term."""
    neg = opts["negative"]
    d_an = _distance(a, neg, opts)
    if opts.get("swap"):
        d_an = min(d_an, _distance(t, neg, opts))
    return [max(mpf(0), _distance(a, t, opts) - d_an + mpf(opts["margin"]))]


def _cosine_embedding_terms(t: list[mpf], x1: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``1 - cos`` (y = 1) or ``max(0, cos - margin)`` (y = -1), one term (t = [y])."""
    x2 = opts["x2"]
    q = mpmath.fsum(v * v for v in x1) * mpmath.fsum(v * v for v in x2)
    cos = mpmath.fsum(u * v for u, v in zip(x1, x2, strict=True)) / mpmath.sqrt(q) if q else mpf(0)
    return [1 - cos if t[0] == 1 else max(mpf(0), cos - mpf(opts["margin"]))]


def _margin_ranking_terms(t: list[mpf], x1: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``max(0, -y (x1 - x2) + margin)`` per element."""
    return [max(mpf(0), -y * (u - v) + mpf(opts["margin"]))
            for y, u, v in zip(t, x1, opts["x2"], strict=True)]


def _hinge_embedding_terms(t: list[mpf], x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``x`` (y = 1) or ``max(0, margin - x)`` (y = -1) per element."""
    return [xi if y == 1 else max(mpf(0), mpf(opts["margin"]) - xi) for y, xi in zip(t, x, strict=True)]


# ----------------------------------------------------------------------------------------- regimes


def _masks(rng: np.random.Generator, n: int, positives: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Rows with 1..positives positives, at least two negatives, and the diagonal-like entry 0
    excluded through ``where`` in half of the rows."""
    t = np.zeros((ROWS, n))
    where = np.ones((ROWS, n), dtype=bool)
    for r in range(ROWS):
        k = rng.integers(1, positives + 1)
        t[r, rng.permutation(np.arange(1, n))[:k]] = 1.0
        if r % 2:
            where[r, 0] = False
    return t, where


def _similarity_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    t, where = _masks(rng, 6)
    return _cast(dtype, y_true=t, y_pred=rng.uniform(-1, 1, size=(ROWS, 6)), where=where)


def _similarity_single(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """One positive per row (SupCon's gradient is exact there; see the loss's docstring)."""
    t, where = _masks(rng, 6, positives=1)
    return _cast(dtype, y_true=t, y_pred=rng.uniform(-1, 1, size=(ROWS, 6)), where=where)


def _similarity_confident(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Positives near 1, negatives 0.3..0.6 below: NT-Xent at T = 0.01 gives losses of 1e-13..1e-26
    (peers round them to 0), circle its smallest values."""
    t, where = _masks(rng, 6, positives=1)
    s = np.where(t == 1, rng.uniform(0.9, 1.0, size=t.shape), 0.0)
    s = np.where(t == 1, s, s.max(-1, keepdims=True) - rng.uniform(0.3, 0.6, size=t.shape))
    return _cast(dtype, y_true=t, y_pred=s, where=where)


def _similarity_ties(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Positives and negatives within a few ulps of each other (``z_k - z_p`` is all rounding)."""
    t, where = _masks(rng, 5, positives=1)
    base = rng.uniform(-0.9, 0.9, size=(ROWS, 1)).astype(dtype)
    k = rng.integers(-3, 4, size=t.shape).astype(dtype)
    s = base + k * np.finfo(dtype).eps * np.abs(base)
    return _cast(dtype, y_true=t, y_pred=s.astype(dtype), where=where)


def _circle_kinks(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Negatives below -margin (weight 0) and similarities of exactly 1 (d = 0)."""
    t, where = _masks(rng, 6)
    s = rng.uniform(-1, 1, size=t.shape)
    s[:, -1] = rng.uniform(-1.0, -0.5, size=ROWS)
    s[::3, 1] = 1.0
    return _cast(dtype, y_true=t, y_pred=s, where=where)


def _triplet_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    a, p, n = (rng.normal(size=(ROWS, 4)) for _ in range(3))
    return _cast(dtype, y_true=p, y_pred=a, negative=n)


def _triplet_near_hinge(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """``D(a, n)`` within rounding of ``D(a, p) + 1``: the loss is all cancellation (or 0)."""
    a, p = rng.normal(size=(ROWS, 4)), rng.normal(size=(ROWS, 4))
    a, p = a.astype(dtype).astype(float), p.astype(dtype).astype(float)
    u = rng.normal(size=(ROWS, 4))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    reach = np.linalg.norm(a - p, axis=-1, keepdims=True) + 1.0
    n = a + reach * u * (1 + rng.uniform(-1e-4, 1e-4, size=(ROWS, 1)))
    return _cast(dtype, y_true=p, y_pred=a, negative=n)


def _triplet_close(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Positive and negative nearly equal (the gradient's two terms cancel), anchors nearly parallel
    to them (``1 - cos`` near 0)."""
    p = rng.normal(size=(ROWS, 4))
    n = p * (1 + 1e-3 * rng.normal(size=(ROWS, 4)))
    a = p * 3.0 * (1 + 1e-4 * rng.normal(size=(ROWS, 4)))
    return _cast(dtype, y_true=p, y_pred=a, negative=n)


def _triplet_scales(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Magnitudes from 1e-3 to 1e12 (float64; 1e-3 to 1e6 in float32) per row."""
    top = 12 if dtype == np.float64 else 6
    scale = 10.0 ** rng.uniform(-3, top, size=(ROWS, 1))
    a, p, n = (rng.normal(size=(ROWS, 4)) * scale for _ in range(3))
    return _cast(dtype, y_true=p, y_pred=a, negative=n)


def _pairs_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    y = rng.choice([-1.0, 1.0], size=ROWS)
    return _cast(dtype, y_true=y, y_pred=rng.normal(size=(ROWS, 4)), x2=rng.normal(size=(ROWS, 4)))


def _pairs_parallel(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Nearly parallel pairs: ``1 - cos`` from 1e-6 down to ~1e-14 (float64), where PyTorch's
    ``1 - cos`` is rounding noise."""
    y = np.ones(ROWS)
    x2 = rng.normal(size=(ROWS, 4))
    tilt = 10.0 ** rng.uniform(-7 if dtype == np.float64 else -3, -3, size=(ROWS, 1))
    x1 = 2.5 * x2 + tilt * rng.normal(size=(ROWS, 4))
    return _cast(dtype, y_true=y, y_pred=x1, x2=x2)


def _pairs_near_margin(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Dissimilar pairs with ``cos`` within 1e-4 of the margin 0.5 (the hinge cancels)."""
    y = -np.ones(ROWS)
    x2 = rng.normal(size=(ROWS, 4))
    unit = x2 / np.linalg.norm(x2, axis=-1, keepdims=True)
    other = rng.normal(size=(ROWS, 4))
    other -= np.sum(other * unit, axis=-1, keepdims=True) * unit
    other /= np.linalg.norm(other, axis=-1, keepdims=True)
    angle = np.arccos(0.5 + rng.uniform(-1e-4, 1e-4, size=(ROWS, 1)))
    x1 = np.cos(angle) * unit + np.sin(angle) * other
    return _cast(dtype, y_true=y, y_pred=x1 * 2.0, x2=x2)


def _ranking_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    y = rng.choice([-1.0, 1.0], size=(ROWS, 4))
    return _cast(dtype, y_true=y, y_pred=rng.normal(size=(ROWS, 4)), x2=rng.normal(size=(ROWS, 4)))


def _ranking_near_margin(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """``y (x1 - x2)`` within a few ulps of the margin 0.5 (TwoSum keeps the remainder)."""
    y = rng.choice([-1.0, 1.0], size=(ROWS, 4))
    x2 = rng.uniform(1, 2, size=(ROWS, 4)).astype(dtype)
    k = rng.integers(-4, 5, size=(ROWS, 4))
    x1 = (x2 + y * 0.5).astype(dtype)
    x1 = x1 + k * np.finfo(dtype).eps * np.abs(x1)
    return _cast(dtype, y_true=y, y_pred=x1.astype(dtype), x2=x2)


def _hinge_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    y = rng.choice([-1.0, 1.0], size=(ROWS, 4))
    return _cast(dtype, y_true=y, y_pred=rng.uniform(0, 2, size=(ROWS, 4)))


def _hinge_near_margin(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    y = -np.ones((ROWS, 4))
    k = rng.integers(-4, 5, size=(ROWS, 4))
    x = 1.0 + k * np.finfo(dtype).eps
    x[x == 1.0] = 1.0 - np.finfo(dtype).eps
    return _cast(dtype, y_true=y, y_pred=x)


# ------------------------------------------------------------------------------------------- peers


def _torch_triplet(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    if o.get("eps_placement", "difference") != "difference":
        return None
    if o.get("distance_function", "pnorm") == "cosine":
        import torch.nn as nn

        loss = nn.TripletMarginWithDistanceLoss(
            distance_function=lambda x, y: 1 - F.cosine_similarity(x, y),
            margin=o.get("margin", 1.0), swap=o.get("swap", False), reduction="none")
        return loss(p, a["y_true"], a["negative"])
    return F.triplet_margin_loss(p, a["y_true"], a["negative"], margin=o.get("margin", 1.0),
                                 p=o.get("p", 2.0), eps=o.get("eps", 1e-6), swap=o.get("swap", False),
                                 reduction="none")


def _optax_triplet(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import optax

    return optax.losses.triplet_margin_loss(p, a["y_true"], a["negative"], norm_degree=o.get("p", 2.0),
                                            margin=o.get("margin", 1.0), eps=o.get("eps", 1e-6))


TRIPLET_DEFAULTS = {"eps_placement": "difference", "distance_function": "pnorm", "swap": False}


def _optional(fn: Any, **needs: Any) -> Any:
    """A peer that exists only for some option values (None elsewhere)."""
    run = fn

    def peer(arrays: Any, options: Mapping[str, Any]) -> Any:
        given = {**TRIPLET_DEFAULTS, **options}
        if any(given[k] != v for k, v in needs.items()):
            return None
        return run(arrays, options)

    return peer


SIMILARITY_REGIMES = {"generic": _similarity_generic, "confident": _similarity_confident,
                      "ties": _similarity_ties}
TRIPLET_REGIMES = {"generic": _triplet_generic, "near_hinge": _triplet_near_hinge,
                   "close": _triplet_close, "scales": _triplet_scales}

ENTRIES = [
    *[Entry("ntxent", R.Spec(_ntxent_terms, mean=False, separable=False),
            regimes=SIMILARITY_REGIMES, options={"temperature": temp},
            peer_names={"optax": "optax.losses.ntxent (on embeddings: tests/test_embedding.py)"})
      for temp in (0.07, 0.01, 1.0)],
    *[Entry("ntxent", R.Spec(_supcon_terms, mean=False, separable=False),
            regimes={"generic": _similarity_single, "confident": _similarity_confident,
                     "ties": _similarity_ties},
            options={"temperature": temp, "denominator": "all"},
            note="denominator='all' is checked on rows with one positive: with several, a positive's "
                 "gradient softmax_k - 1/|P| is held to the rounding of softmax_k (tests/test_embedding.py "
                 "checks it against PyTorch autograd)")
      for temp in (0.1, 0.01)],
    *[Entry("circle", R.Spec(_circle_terms, mean=False, separable=False),
            regimes={**SIMILARITY_REGIMES, "kinks": _circle_kinks}, options=opts,
            peer_names={"keras": "keras.losses.Circle (on embeddings: tests/test_embedding.py)"})
      for opts in ({"gamma": 80.0, "margin": 0.4}, {"gamma": 2.0, "margin": 0.25})],
    *[Entry("triplet_margin", R.Spec(_triplet_terms, mean=False, separable=False),
            regimes=TRIPLET_REGIMES, options=opts,
            peers={"torch": _optional(torch_peer(_torch_triplet), eps_placement="difference"),
                   "optax": _optional(jax_peer(_optax_triplet), eps_placement="sum",
                                      distance_function="pnorm", swap=False)},
            peer_names={"torch": "torch.nn.TripletMarginLoss / TripletMarginWithDistanceLoss",
                        "optax": "optax.losses.triplet_margin_loss"})
      for opts in ({"margin": 1.0}, {"margin": 1.0, "swap": True}, {"margin": 1.0, "p": 1.0},
                   {"margin": 1.0, "eps_placement": "sum"},
                   {"margin": 1.0, "distance_function": "cosine"},
                   {"margin": 0.5, "distance_function": "cosine", "swap": True})],
    *[Entry("cosine_embedding", R.Spec(_cosine_embedding_terms, mean=False, separable=False),
            regimes={"generic": _pairs_generic, "parallel": _pairs_parallel,
                     "near_margin": _pairs_near_margin},
            options={"margin": margin},
            peers={"torch": torch_peer(lambda p, a, o: __import__("torch").nn.functional
                                       .cosine_embedding_loss(p, a["x2"], a["y_true"],
                                                              reduction="none", **o))},
            peer_names={"torch": "torch.nn.CosineEmbeddingLoss"})
      for margin in (0.0, 0.5)],
    *[Entry("margin_ranking", R.Spec(_margin_ranking_terms, mean=True, separable=True),
            regimes={"generic": _ranking_generic, "near_margin": _ranking_near_margin},
            options={"margin": margin},
            peers={"torch": torch_peer(lambda p, a, o: __import__("torch").nn.functional
                                       .margin_ranking_loss(p, a["x2"], a["y_true"],
                                                            reduction="none", **o).mean(-1))},
            peer_names={"torch": "torch.nn.MarginRankingLoss"})
      for margin in (0.0, 0.5)],
    Entry("hinge_embedding", R.Spec(_hinge_embedding_terms, mean=True, separable=True),
          regimes={"generic": _hinge_generic, "near_margin": _hinge_near_margin},
          options={"margin": 1.0},
          peers={"torch": torch_peer(lambda p, a, o: __import__("torch").nn.functional
                                     .hinge_embedding_loss(p, a["y_true"], reduction="none",
                                                           **o).mean(-1))},
          peer_names={"torch": "torch.nn.HingeEmbeddingLoss"}),
]


# ------------------------------------------------------------- gradients of the other members


def _as_member(terms: Any, member: str) -> Any:
    """The row terms as a function of another member (``y_true``: the triplet's positive; an input
    array: ``negative``, ``x2``) at the row's fixed ``y_pred``, which travels in the options as
    ``"y_pred"``: its gradient by the oracle's numerical differentiation is the exact gradient with
    respect to that member."""

    def member_terms(t: Any, v: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
        if member == "y_true":
            return terms(v, opts["y_pred"], opts)
        return terms(t, opts["y_pred"], {**opts, member: v})

    return member_terms


MEMBERS = {"triplet_margin": ("y_true", "negative"), "cosine_embedding": ("x2",),
           "margin_ranking": ("x2",)}
"""The arrays besides ``y_pred`` that each loss differentiates (``LossDef.differentiable()``)."""


def member_spec(entry: Entry, member: str) -> R.Spec:
    spec = entry.spec
    return R.Spec(_as_member(spec.terms, member), mean=spec.mean, separable=spec.separable,
                  integer_target=spec.integer_target)
