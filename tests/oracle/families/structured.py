"""Oracle entries for the structured losses (issue 12): binary and multiclass sparsemax, Fenchel-Young
(sparsemax and softmax regularisers) and the softmax ranking loss.

The sparsemax projection is computed here from its definition (sort, the largest k with
``1 + k z_(k) > sum_{i <= k} z_(i)``, ``tau = (sum_{i <= k} z_(i) - 1) / k``) in exact rational
steps at 1200 extra bits, and the losses from the textbook forms that cancel (Optax's
``sum_j p_j (z_j - z_y) + (1 - ||p||^2)/2``; ``KL = sum y log y + sum y (lse - z)``): the extra
precision pays for the cancellation, so the oracle needs no rewriting of the formulas.

Regimes that break the textbook forms: nearly right rows (``p`` within 1e-12 of the target, where
the loss is ~1e-24 and ``1 - ||p||^2`` keeps no digit), a support entry within a few ulps of the
threshold (``p_j`` tiny, ``z_j - tau`` cancelling), scores of 1e4, confident ranking lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from .. import reference as R
from ..catalog import Entry
from ..peers import jax_peer

ROWS = 6
N = 6
EXTRA_BITS = 1200


def _wide(fn: Any) -> Any:
    """Evaluate a terms function with ``EXTRA_BITS`` more bits (the textbook forms cancel)."""

    def terms(t: Any, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
        with mpmath.mp.workprec(mpmath.mp.prec + EXTRA_BITS):
            out = fn(t, p, opts)
        return [+v for v in out]

    terms.__name__ = fn.__name__
    return terms


def sparsemax(z: list[mpf]) -> tuple[list[mpf], mpf]:
    """The Euclidean projection of ``z`` onto the simplex and its threshold tau (Michelot's sort)."""
    zs = sorted(z, reverse=True)
    k, cumulative = 0, mpf(0)
    for j, v in enumerate(zs, start=1):
        cumulative += v
        if 1 + j * v > cumulative:
            k = j
    tau = (mpmath.fsum(zs[:k]) - 1) / k
    return [max(v - tau, mpf(0)) for v in z], tau


def _multiclass_sparsemax_terms(k: int, z: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Optax's form: ``sum_j p_j (z_j - z_k) + (1 - ||p||^2) / 2``."""
    p, _ = sparsemax(z)
    return [mpmath.fsum(pj * (zj - z[k]) for pj, zj in zip(p, z, strict=True))
            + (1 - mpmath.fsum(pj * pj for pj in p)) / 2]


def _fy_sparsemax_terms(y: Any, z: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``Omega*(z') + Omega(y) - <y, z'>`` with ``Omega = ||.||^2 / 2`` on the simplex and the scores
    shifted by the threshold, ``z' = z - tau``: ``<p - y, z'> - ||p||^2/2 + ||y||^2/2``."""
    p, tau = sparsemax(z)
    shifted = [v - tau for v in z]
    return [mpmath.fsum((pj - yj) * sj for pj, yj, sj in zip(p, y, shifted, strict=True))
            - mpmath.fsum(pj * pj for pj in p) / 2 + mpmath.fsum(yj * yj for yj in y) / 2]


def _fy_softmax_terms(y: Any, z: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``sum_j y_j log y_j + sum_j y_j (lse(z) - z_j)`` (0 log 0 = 0)."""
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))
    return [mpmath.fsum(yj * mpmath.log(yj) for yj in y if yj != 0)
            + mpmath.fsum(yj * (lse - zj) for yj, zj in zip(y, z, strict=True))]


def _sparse_plus_terms(t: Any, x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``sparse_plus(s)``, ``s = -x`` for label 1 and ``x`` for label 0."""
    out = []
    for ti, xi in zip(t, x, strict=True):
        s = -xi if ti != 0 else xi
        out.append(mpf(0) if s <= -1 else s if s >= 1 else (s + 1) ** 2 / 4)
    return out


def _ranking_terms(t: Any, x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``-sum_{i in W} t_i w_i log softmax_W(x)_i``; 0 when W is empty."""
    n = len(x)
    where = opts.get("where")
    weights = opts.get("weights")
    kept = [i for i in range(n) if where is None or where[i] != 0]
    if not kept:
        return [mpf(0)]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(x[i]) for i in kept))
    coef = [t[i] * (1 if weights is None else weights[i]) for i in range(n)]
    return [mpmath.fsum(-coef[i] * (x[i] - lse) for i in kept if coef[i] != 0)]


# ----------------------------------------------------------------------------------------- regimes


def _cast(dtype: Any, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    return {k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in arrays.items()}


def _labels_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    return _cast(dtype, y_true=rng.integers(0, N, ROWS), y_pred=rng.normal(0, 1, (ROWS, N)))


def _labels_nearly_right(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """The label's score leads the runner-up by 1 - d (d from 1e-12 up to 1e-2 in float64): the
    support is {label, runner-up}, p = (1 - d/2, d/2), loss d^2/4."""
    labels = rng.integers(0, N, ROWS)
    z = rng.uniform(-3, 0, (ROWS, N))
    low = -7 if np.dtype(dtype) == np.float32 else -12
    d = 10.0 ** rng.uniform(low, -2, ROWS)
    runner = (labels + 1) % N
    z[np.arange(ROWS), runner] = 0.5
    z[np.arange(ROWS), labels] = 1.5 - d
    return _cast(dtype, y_true=labels, y_pred=z)


def _labels_edge(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """A support entry a few ulps above the threshold: p_j tiny (z_j - tau cancels)."""
    z = rng.normal(0, 1, (ROWS, N)).astype(dtype)
    for r in range(ROWS):
        zr = z[r].astype(np.float64)
        order = np.argsort(-zr)
        top = zr[order[:2]]
        tau = (top.sum() - 1) / 2  # a support of the two largest, if the third sits at tau
        if top[1] <= tau:  # the runner-up is out: lift it
            zr[order[1]] = top[0] - 0.5
            tau = (zr[order[0]] + zr[order[1]] - 1) / 2
        j = order[2]
        zr[j] = tau
        z[r] = zr.astype(dtype)
        z[r, j] = np.nextafter(z[r, j], np.asarray(np.inf, dtype))
        for _ in range(rng.integers(0, 4)):
            z[r, j] = np.nextafter(z[r, j], np.asarray(np.inf, dtype))
    labels = np.argmax(z, axis=-1)
    return {"y_true": labels, "y_pred": z}


def _labels_huge(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Scores of 1e4 (tau and the scores far above the spacing of the probabilities)."""
    z = 1e4 + rng.normal(0, 1, (ROWS, N))
    return _cast(dtype, y_true=rng.integers(0, N, ROWS), y_pred=z)


def _dist_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    y = rng.dirichlet(np.ones(N), ROWS)
    return _cast(dtype, y_true=y, y_pred=rng.normal(0, 2, (ROWS, N)))


def _dist_sparse(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Targets with zeros, scores near the targets (the sparsemax map reaches them exactly)."""
    y = rng.dirichlet(np.ones(N), ROWS)
    y[:, :2] = 0.0
    y /= y.sum(-1, keepdims=True)
    y = y.astype(dtype)
    z = (y.astype(np.float64) + rng.normal(0, 1e-3, (ROWS, N)) + rng.normal(0, 3, (ROWS, 1)))
    return {"y_true": y, "y_pred": z.astype(dtype)}


def _dist_near(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """sparsemax(z) within 1e-9 .. 1e-3 of y (scores = y + a shift + a small move): loss ~ d^2."""
    y = rng.dirichlet(np.ones(N), ROWS)
    y = y.astype(dtype)
    low = -6 if np.dtype(dtype) == np.float32 else -9
    d = 10.0 ** rng.uniform(low, -3, (ROWS, 1))
    z = y.astype(np.float64) + d * rng.normal(0, 1, (ROWS, N)) + 2.0
    return {"y_true": y, "y_pred": z.astype(dtype)}


def _binary_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    return _cast(dtype, y_true=rng.integers(0, 2, (ROWS, N)).astype(float),
                 y_pred=rng.normal(0, 1.5, (ROWS, N)))


def _binary_edges(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Logits a few ulps on the inner side of -1 and 1 and near 0 (s + 1 tiny or rounded)."""
    base = rng.choice([-1.0, 1.0], (ROWS, N))
    move = 10.0 ** rng.uniform(-7 if np.dtype(dtype) == np.float32 else -15, -1, (ROWS, N))
    return _cast(dtype, y_true=rng.integers(0, 2, (ROWS, N)).astype(float),
                 y_pred=base * (1 - move))


def _ranking_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    return _cast(dtype, y_true=rng.integers(0, 5, (ROWS, N)).astype(float),
                 y_pred=rng.normal(0, 2, (ROWS, N)))


def _ranking_where(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    where = rng.random((ROWS, N)) < 0.7
    where[0] = False  # a list with no valid item
    out = _ranking_generic(rng, dtype)
    return {**out, "where": where, "weights": rng.uniform(0, 2, (ROWS, N)).astype(dtype)}


def _ranking_confident(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """The relevant item scores 30 .. 700 above the others (float32: 30 .. 80): loss ~ e^-gap."""
    y = np.zeros((ROWS, N))
    best = rng.integers(0, N, ROWS)
    y[np.arange(ROWS), best] = rng.integers(1, 5, ROWS)
    x = rng.normal(0, 1, (ROWS, N))
    top = 80 if np.dtype(dtype) == np.float32 else 700
    x[np.arange(ROWS), best] += rng.uniform(30, top, ROWS)
    return _cast(dtype, y_true=y, y_pred=x)


# ------------------------------------------------------------------------------------------- peers


def _optax_multiclass_sparsemax(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import optax

    return optax.losses.multiclass_sparsemax_loss(p, a["y_true"])


def _optax_fy(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    """``make_fenchel_young_loss(max_fun)`` plus Omega(y), which Optax leaves out (a constant)."""
    import jax.numpy as jnp
    import optax
    from jax.scipy.special import logsumexp

    y = a["y_true"]
    if o.get("regularizer", "sparsemax") == "softmax":
        loss = optax.losses.make_fenchel_young_loss(logsumexp)
        return loss(p, y) + jnp.sum(jnp.where(y > 0, y * jnp.log(jnp.where(y > 0, y, 1.0)), 0.0), -1)

    def conjugate(z: Any) -> Any:
        q = optax.projections.projection_simplex(z)
        return jnp.dot(q, z) - 0.5 * jnp.dot(q, q)

    return optax.losses.make_fenchel_young_loss(conjugate)(p, y) + 0.5 * jnp.sum(y * y, -1)


def _optax_sparsemax(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import jax.numpy as jnp
    import optax

    return jnp.mean(optax.losses.sparsemax_loss(p, a["y_true"]), axis=-1)


def _optax_ranking(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import optax

    return optax.losses.ranking_softmax_loss(p, a["y_true"], where=a.get("where"),
                                             weights=a.get("weights"), reduce_fn=None)


def _softmax_fy_scale(arrays: dict[str, np.ndarray], opts: Mapping[str, Any]) -> np.ndarray:
    """The documented weaker bound of the softmax Fenchel-Young loss: 8 ulp of the cross-entropy
    ``sum y (lse - z)`` (the larger of the two cancelling parts), from the definition."""
    out = np.empty(len(arrays["y_pred"]), dtype=object)
    with mpmath.mp.workdps(40):
        for r, (y, z) in enumerate(zip(arrays["y_true"], arrays["y_pred"], strict=True)):
            zm = [R.to_mpf(v) for v in z]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in zm))
            out[r] = mpmath.fsum(R.to_mpf(yj) * (lse - zj) for yj, zj in zip(y, zm, strict=True))
    return out


def _softmax_fy_grad_scale(arrays: dict[str, np.ndarray], opts: Mapping[str, Any]) -> np.ndarray:
    """The gradient ``(sum y) softmax(z) - y`` of soft targets: 8 ulp of the larger of its two
    terms (they cancel as softmax(z) nears y), as the core cross-entropies' soft targets."""
    y, z = arrays["y_true"].astype(np.float64), arrays["y_pred"].astype(np.float64)
    q = np.exp(z - z.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    out = np.empty(z.shape, dtype=object)
    for idx in np.ndindex(z.shape):
        out[idx] = mpf(max(abs(float(y[idx[0]].sum() * q[idx])), abs(float(y[idx]))))
    return out


def _ranking_grad_scale(arrays: dict[str, np.ndarray], opts: Mapping[str, Any]) -> np.ndarray:
    """Graded labels are soft targets: the gradient ``Y softmax_W(x)_i - t_i`` (``Y = sum t``) is
    held to 8 ulp of the larger of its two terms, as the core cross-entropies' soft targets."""
    x = arrays["y_pred"].astype(np.float64)
    t = arrays["y_true"].astype(np.float64)
    if "weights" in arrays:
        t = t * arrays["weights"].astype(np.float64)
    kept = arrays.get("where", np.ones(x.shape, bool))
    t = np.where(kept, t, 0.0)
    e = np.where(kept, np.exp(x - np.where(kept, x, -np.inf).max(-1, keepdims=True)), 0.0)
    q = e / np.maximum(e.sum(-1, keepdims=True), 1e-300)
    big = np.maximum(np.abs(t.sum(-1, keepdims=True) * q), np.abs(t))
    out = np.empty(x.shape, dtype=object)
    for idx in np.ndindex(x.shape):
        out[idx] = mpf(float(big[idx])) if big[idx] > 0 else None  # excluded items: exact 0
    return out


# ----------------------------------------------------------------------------------------- entries

ENTRIES = [
    Entry("multiclass_sparsemax",
          R.Spec(_wide(_multiclass_sparsemax_terms), mean=False, separable=False, integer_target=True),
          regimes={"generic": _labels_generic, "nearly_right": _labels_nearly_right,
                   "threshold_edge": _labels_edge, "huge": _labels_huge},
          peers={"optax": jax_peer(_optax_multiclass_sparsemax)},
          peer_names={"optax": "optax.losses.multiclass_sparsemax_loss"}),
    Entry("fenchel_young", R.Spec(_wide(_fy_sparsemax_terms), mean=False, separable=False),
          regimes={"generic": _dist_generic, "sparse_targets": _dist_sparse, "near": _dist_near},
          peers={"optax": jax_peer(_optax_fy)},
          peer_names={"optax": "optax.losses.make_fenchel_young_loss(sparsemax conjugate) + Omega(y)"}),
    Entry("fenchel_young", R.Spec(_wide(_fy_softmax_terms), mean=False, separable=False),
          regimes={"generic": _dist_generic, "sparse_targets": _dist_sparse},
          options={"regularizer": "softmax"},
          peers={"optax": jax_peer(_optax_fy)},
          peer_names={"optax": "optax.losses.make_fenchel_young_loss(logsumexp) + Omega(y)"},
          note="soft targets: the value is held to 8 ulp of the cross-entropy and the gradient to "
               "8 ulp of the larger of (sum y) softmax(z) and y (both differences cancel as "
               "softmax(z) nears y)",
          value_scale=_softmax_fy_scale, grad_scale=_softmax_fy_grad_scale),
    Entry("sparsemax", R.Spec(_sparse_plus_terms, mean=True, separable=True),
          regimes={"generic": _binary_generic, "edges": _binary_edges},
          peers={"optax": jax_peer(_optax_sparsemax)},
          peer_names={"optax": "optax.losses.sparsemax_loss"}),
    Entry("ranking_softmax", R.Spec(_wide(_ranking_terms), mean=False, separable=False),
          regimes={"generic": _ranking_generic, "where_weights": _ranking_where,
                   "confident": _ranking_confident},
          peers={"optax": jax_peer(_optax_ranking)},
          peer_names={"optax": "optax.losses.ranking_softmax_loss(reduce_fn=None)"},
          peer_regimes=("generic", "where_weights"),
          note="graded labels are soft targets: the gradient (sum t) softmax(x) - t is held to 8 ulp "
               "of the larger of its two terms (they cancel where softmax(x) nears t / sum t)",
          grad_scale=_ranking_grad_scale),
]
