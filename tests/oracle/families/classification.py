"""Oracle entries of the classification catalog (issue 4): binary and categorical focal
cross-entropy, generalized cross-entropy, Poly-1 cross-entropy and NLL.

The terms are written from each loss's definition in mpmath (softmax and sigmoid at 80 digits, the
log-sum-exp as ``log1p`` of the other classes so that a confident row keeps its tiny loss), never
from losskit's kernels. A regime draws at most 16 rows of ``N`` classes and casts them to the dtype;
the oracle sees the cast values exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from ..catalog import Entry
from ..peers import jax_peer, keras_peer, torch_peer
from ..reference import DomainError, Spec
from .crossentropy_options import _kept, _mask_row

N = 5  # classes (columns) of every regime
ROWS = 12
Arrays = dict[str, np.ndarray]
Regime = Callable[[np.random.Generator, Any], Arrays]


# --------------------------------------------------------------------------------------- helpers


def _f64(dtype: Any) -> bool:
    return np.dtype(dtype) == np.float64


def _sigmoid(z: mpf) -> mpf:
    return 1 / (1 + mpmath.exp(-z))


def _softplus(z: mpf) -> mpf:
    return mpmath.log1p(mpmath.exp(z))


def _binary_smooth(t: mpf, ls: mpf) -> mpf:
    """``t (1 - ls) + ls / 2``, exact."""
    return mpmath.fadd(mpmath.fmul(t, mpmath.fsub(1, ls, exact=True), exact=True),
                       mpmath.ldexp(ls, -1), exact=True)


def _coef(c: mpf, x: mpf) -> mpf:
    """``c * x`` with ``0 * anything = 0``."""
    return mpf(0) if c == 0 else c * x


def _softmax_pieces(x: list[mpf]) -> tuple[list[mpf], list[mpf], list[mpf]]:
    """``(q, n, v)``: softmax, ``-log softmax`` and ``1 - softmax`` of one row of logits.

    ``n_j = (m - x_j) + log1p(sum of exp(x_k - m) over k other than the first maximum)`` and
    ``v_j = (sum of the other classes' exp(x_k - m)) / Z``: no ``1 - (1 - tiny)`` at 80 digits."""
    top = max(range(len(x)), key=lambda j: x[j])
    m = x[top]
    e = [mpmath.exp(xj - m) for xj in x]
    rest = mpmath.fsum(ek for k, ek in enumerate(e) if k != top)
    z = 1 + rest
    q = [ej / z for ej in e]
    n = [(m - xj) + mpmath.log1p(rest) for xj in x]
    v = [mpmath.fsum(ek for k, ek in enumerate(e) if k != j) / z for j in range(len(x))]
    return q, n, v


def _simplex_pieces(p: list[mpf]) -> tuple[list[mpf], list[mpf], list[mpf]]:
    """``(q, n, v)`` of probabilities renormalised over the row: ``q = p / P``, ``n = log(P / p)``,
    ``v = (sum of the other classes) / P``."""
    if any(pj < 0 or pj > 1 for pj in p):
        raise DomainError("probability outside [0, 1]")
    total = mpmath.fsum(p)
    others = [mpmath.fsum(pk for k, pk in enumerate(p) if k != j) for j in range(len(p))]
    n = [mpf("inf") if pj == 0 else mpmath.log1p(r / pj) for pj, r in zip(p, others, strict=True)]
    return [pj / total for pj in p], n, [r / total for r in others]


def _with_where(base: Regime, mask: str = "some", label: bool = False) -> Regime:
    """The regime's arrays plus a ``where`` mask per row (``"some"``: at least one element kept;
    ``"rows"``: whole rows kept or excluded, some mixed); with ``label``, the label's class is kept
    unless the row keeps nothing (integer labels)."""
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        arrays = dict(base(rng, dtype))
        rows = arrays["y_pred"].shape[0]
        where = np.stack([_mask_row(rng, mask) for _ in range(rows)])
        if label:  # (an ignored label, outside [0, N), is not a class)
            y = arrays["y_true"]
            ok = (y >= 0) & (y < N)
            where[np.arange(rows)[ok], y[ok]] |= where.any(axis=1)[ok]
        arrays["where"] = where
        return arrays
    return regime


def _where_regimes(regimes: Mapping[str, Regime], label: bool = False) -> dict[str, Regime]:
    """Every regime with a mask keeping some elements of each row, and ``"rows"``: the generic one
    with whole rows excluded."""
    out = {name: _with_where(r, "some", label) for name, r in regimes.items()}
    out["rows"] = _with_where(regimes["generic"], "rows", label)
    return out


_WHERE_NOTE = ("where: {what}; a sample with nothing kept gives 0 (the Optax peer, where there is "
               "one, gives NaN there, so it runs on 'generic' only)")


# -------------------------------------------------------------------------------- binary focal


def _binary_focal_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``w u^gamma b`` per element: ``u = 1 - p_t = t (1 - p) + (1 - t) p`` and
    ``b = -t log p - (1 - t) log(1 - p)``, ``w = alpha t + (1 - alpha)(1 - t)`` if balancing."""
    ls = mpf(opts.get("label_smoothing", 0.0))
    gamma = mpf(opts.get("gamma", 2.0))
    alpha = mpf(opts.get("alpha", 0.25))
    out = []
    for ti, pi in zip(t, p, strict=True):
        a = _binary_smooth(ti, ls)
        c = mpmath.fsub(1, a, exact=True)
        if opts.get("from_logits", False):
            prob, comp = _sigmoid(pi), _sigmoid(-pi)
            b = _coef(a, _softplus(-pi)) + _coef(c, _softplus(pi))
        else:
            if pi < 0 or pi > 1:
                raise DomainError("probability outside [0, 1]")
            prob, comp = pi, mpmath.fsub(1, pi, exact=True)
            b = (_coef(a, mpf("inf") if pi == 0 else -mpmath.log(pi))
                 + _coef(c, mpf("inf") if pi == 1 else -mpmath.log1p(-pi)))
        u = a * comp + c * prob
        term = _coef(u ** gamma, b)
        if opts.get("apply_class_balancing", False):
            term = (alpha * a + (1 - alpha) * c) * term
        out.append(term)
    return out


def _labels01(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 2, size=shape).astype(np.float64)


def _bf_logits_generic(rng: np.random.Generator, dtype: Any) -> Arrays:
    y = _labels01(rng, (ROWS, N))
    z = rng.normal(scale=3.0, size=(ROWS, N))
    return {"y_true": y.astype(dtype), "y_pred": z.astype(dtype)}


def _bf_logits_large(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Logits of magnitude 20 to 1000 (exactly ±1000 in the first row), right and wrong."""
    y = _labels01(rng, (ROWS, N))
    z = rng.choice([-1.0, 1.0], size=(ROWS, N)) * 10 ** rng.uniform(np.log10(20), 3, (ROWS, N))
    z[0] = [1000.0, -1000.0, 1000.0, -1000.0, 700.0]
    y[0] = [1.0, 1.0, 0.0, 0.0, 1.0]
    return {"y_true": y.astype(dtype), "y_pred": z.astype(dtype)}


def _bf_logits_tails(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Confident, mostly right predictions: |z| in [5, 80], the sign of the label."""
    y = _labels01(rng, (ROWS, N))
    z = (2 * y - 1) * rng.uniform(5, 80, (ROWS, N))
    flip = rng.random((ROWS, N)) < 0.2
    return {"y_true": y.astype(dtype), "y_pred": np.where(flip, -z, z).astype(dtype)}


def _bf_probs_generic(rng: np.random.Generator, dtype: Any) -> Arrays:
    y = _labels01(rng, (ROWS, N))
    return {"y_true": y.astype(dtype), "y_pred": rng.uniform(0.01, 0.99, (ROWS, N)).astype(dtype)}


def _bf_probs_tiny(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Probabilities down to 1e-300 (1e-37 in float32) and within 1e-16 (1e-7) of 1."""
    low = -300 if _f64(dtype) else -37
    top = -16 if _f64(dtype) else -7
    y = _labels01(rng, (ROWS, N))
    tiny = 10 ** rng.uniform(low, -1, (ROWS, N))
    near_one = 1 - 10 ** rng.uniform(top, -1, (ROWS, N))
    p = np.where(rng.random((ROWS, N)) < 0.5, tiny, near_one).astype(dtype)
    return {"y_true": y.astype(dtype), "y_pred": p}


def _bf_probs_confident(rng: np.random.Generator, dtype: Any) -> Arrays:
    """Probabilities a few ulp to 1e-3 from the label (the tiny loss of a good prediction)."""
    y = _labels01(rng, (ROWS, N))
    gap = 10 ** rng.uniform(-12 if _f64(dtype) else -6, -3, (ROWS, N))
    p = np.where(y == 1, 1 - gap, gap).astype(dtype)
    return {"y_true": y.astype(dtype), "y_pred": p}


def _bf_soft(base: Regime) -> Regime:
    """The regime's predictions with soft targets in [0, 1] (some still 0 or 1)."""
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        arrays = base(rng, dtype)
        y = rng.uniform(0, 1, arrays["y_pred"].shape)
        y[:, 0] = np.round(y[:, 0])
        return {"y_true": y.astype(dtype), "y_pred": arrays["y_pred"]}
    return regime


def _keras_binary_focal(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import keras

    return keras.losses.binary_focal_crossentropy(a["y_true"], p, **o)


def _optax_binary_focal(arrays: Arrays, o: Mapping[str, Any]) -> Any:
    """optax.losses.sigmoid_focal_loss, averaged over the last axis (over the kept elements when the
    regime has a ``where`` mask)."""
    if not o.get("from_logits", False):
        return None  # Optax takes logits only

    def fn(p: Any, a: dict[str, Any], _: Mapping[str, Any]) -> Any:
        import jax.numpy as jnp
        import optax

        ls = o.get("label_smoothing", 0.0)
        t = a["y_true"] * (1.0 - ls) + 0.5 * ls
        alpha = o.get("alpha", 0.25) if o.get("apply_class_balancing", False) else None
        terms = optax.losses.sigmoid_focal_loss(p, t, alpha=alpha, gamma=o.get("gamma", 2.0))
        return jnp.mean(terms, axis=-1, where=a.get("where"))

    return jax_peer(fn)(arrays, o)


def _binary_focal_entry(options: dict[str, Any], regimes: Mapping[str, Regime],
                       note: str = "") -> Entry:
    # soft-target entries (note) have no peers: their regimes are the confident rows where the
    # peers clip or round; tests/test_classification.py compares the peers on soft targets
    return Entry(
        "binary_focal_crossentropy", Spec(_binary_focal_terms, mean=True, separable=True),
        regimes=regimes, options=options,
        peers={} if note else {"keras": keras_peer(_keras_binary_focal),
                               "optax": _optax_binary_focal},
        peer_names={"keras": "keras.losses.BinaryFocalCrossentropy",
                    "optax": "optax.losses.sigmoid_focal_loss"}, note=note)


def _binary_focal_where_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """The mean of the focal terms over the kept elements (summed: Spec(mean=False)); nothing kept
    gives 0."""
    kept = _kept(opts, len(p))
    terms = _binary_focal_terms([t[i] for i in kept], [p[i] for i in kept], opts)
    return [term / len(kept) for term in terms] or [mpf(0)]


def _binary_focal_where_entry(options: dict[str, Any], regimes: Mapping[str, Regime]) -> Entry:
    return Entry(
        "binary_focal_crossentropy", Spec(_binary_focal_where_terms, mean=False, separable=False),
        regimes=_where_regimes(regimes), options=options,
        peers={"optax": _optax_binary_focal},
        peer_names={"optax": "mean(optax.losses.sigmoid_focal_loss, where=)"},
        note=_WHERE_NOTE.format(what="the mean over the kept elements"))


_BF_LOGITS = {"generic": _bf_logits_generic, "large": _bf_logits_large, "tails": _bf_logits_tails}
_BF_PROBS = {"generic": _bf_probs_generic, "tiny": _bf_probs_tiny,
             "confident": _bf_probs_confident}


# --------------------------------------------------------------------------- categorical focal


def _categorical_focal_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``alpha t_j (1 - q_j)^gamma (-log q_j)``, q the softmax or the renormalised probabilities."""
    ls = mpf(opts.get("label_smoothing", 0.0))
    gamma = mpf(opts.get("gamma", 2.0))
    alpha = mpf(opts.get("alpha", 0.25))
    k = len(t)
    ts = [mpmath.fmul(tj, mpmath.fsub(1, ls, exact=True), exact=True) + ls / k for tj in t]
    _, n, v = _softmax_pieces(p) if opts.get("from_logits", False) else _simplex_pieces(p)
    return [_coef(tj, alpha * _coef(vj ** gamma, nj)) for tj, nj, vj in zip(ts, n, v, strict=True)]


def _categorical_focal_where_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]
                                   ) -> list[mpf]:
    """The focal terms of the kept classes W only: q the softmax (or the renormalisation) over W,
    smoothing ls / |W|; nothing kept gives 0."""
    kept = _kept(opts, len(p))
    if not kept:
        return [mpf(0)]
    return _categorical_focal_terms([t[j] for j in kept], [p[j] for j in kept], opts)


def _one_hot(rng: np.random.Generator, rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, N, size=rows)
    return labels, np.eye(N)[labels]


def _logits_generic(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    labels, _ = _one_hot(rng)
    return labels, rng.normal(scale=3.0, size=(ROWS, N))


def _logits_large(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """Logits spread over ±1000 (the label sometimes the maximum, sometimes 2000 below it)."""
    labels, _ = _one_hot(rng)
    x = rng.uniform(-1000, 1000, (ROWS, N))
    x[0] = [1000.0, -1000.0, 0.0, 999.0, -999.0]
    labels[0] = 0
    x[1] = [1000.0, -1000.0, 0.0, 500.0, -500.0]
    labels[1] = 2
    return labels, x


def _logits_confident(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """The label's logit 10 to 700 above the others (tiny losses); every fourth row wrong."""
    labels, _ = _one_hot(rng)
    x = rng.normal(size=(ROWS, N))
    lead = 10 ** rng.uniform(1, np.log10(700), ROWS)
    winner = np.where(np.arange(ROWS) % 4 == 3, (labels + 1) % N, labels)
    x[np.arange(ROWS), winner] += lead
    return labels, x


def _probs_generic(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    labels, _ = _one_hot(rng)
    return labels, rng.dirichlet(np.ones(N), ROWS) * 0.98 + 0.004


def _probs_tiny(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rows with probabilities down to 1e-300 (1e-37), the label often among them."""
    labels, _ = _one_hot(rng)
    low = -300 if _f64(dtype) else -37
    p = 10 ** rng.uniform(low, 0, (ROWS, N))
    p /= p.sum(axis=1, keepdims=True)
    return labels, p


def _probs_confident(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """The label's probability within 1e-12 (1e-6) to 1e-2 of 1, the others sharing the rest."""
    labels, _ = _one_hot(rng)
    rest = 10 ** rng.uniform(-12 if _f64(dtype) else -6, -2, ROWS)
    share = rng.dirichlet(np.ones(N - 1), ROWS) * rest[:, None]
    p = np.empty((ROWS, N))
    for r in range(ROWS):
        p[r] = np.insert(share[r], labels[r], 1 - rest[r])
    return labels, p


def _dense(draw: Callable[..., tuple[np.ndarray, np.ndarray]], soft: bool = False) -> Regime:
    """One-hot (or soft, Dirichlet) targets with the drawn predictions."""
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        labels, pred = draw(rng, dtype)
        y = np.eye(N)[labels]
        if soft:
            y = rng.dirichlet(np.ones(N), len(labels))
            y[0] = np.eye(N)[labels[0]]
        return {"y_true": y.astype(dtype), "y_pred": np.asarray(pred).astype(dtype)}
    return regime


def _sparse(draw: Callable[..., tuple[np.ndarray, np.ndarray]]) -> Regime:
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        labels, pred = draw(rng, dtype)
        return {"y_true": labels.astype(np.int64), "y_pred": np.asarray(pred).astype(dtype)}
    return regime


def _keras_categorical_focal(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import keras

    return keras.losses.categorical_focal_crossentropy(a["y_true"], p, **o)


def _categorical_focal_entry(options: dict[str, Any], regimes: Mapping[str, Regime],
                             note: str = "") -> Entry:
    return Entry(
        "categorical_focal_crossentropy", Spec(_categorical_focal_terms, mean=False,
                                               separable=False),
        regimes=regimes, options=options,
        peers={} if note else {"keras": keras_peer(_keras_categorical_focal)},
        peer_names={"keras": "keras.losses.CategoricalFocalCrossentropy"}, note=note)


def _categorical_focal_where_entry(options: dict[str, Any], regimes: Mapping[str, Regime]
                                   ) -> Entry:
    return Entry(
        "categorical_focal_crossentropy",
        Spec(_categorical_focal_where_terms, mean=False, separable=False),
        regimes=_where_regimes(regimes), options=options,
        note=_WHERE_NOTE.format(what="excluded classes leave the softmax or the renormalisation"))


_CF_LOGITS = {"generic": _dense(_logits_generic), "large": _dense(_logits_large),
              "confident": _dense(_logits_confident)}
_CF_PROBS = {"generic": _dense(_probs_generic), "tiny": _dense(_probs_tiny),
             "confident": _dense(_probs_confident)}


# ------------------------------------------------------------------- generalized cross-entropy


def _gce_terms(k: int, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``(1 - p_k^q) / q = -expm1(q log p_k) / q``."""
    q = mpf(opts.get("q", 0.5))
    if opts.get("from_logits", False):
        log_pk = -_softmax_pieces(p)[1][k]
    else:
        if any(pj < 0 or pj > 1 for pj in p):
            raise DomainError("probability outside [0, 1]")
        if p[k] == 0:
            return [1 / q]
        log_pk = mpmath.log(p[k])
    return [-mpmath.expm1(q * log_pk) / q]


def _gce_where_terms(k: int, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """The loss over the kept classes W (the softmax over W from logits; probabilities are not
    renormalised); nothing kept gives 0."""
    kept = _kept(opts, len(p))
    if not kept:
        return [mpf(0)]
    assert k in kept, "a regime row excludes its own label"
    return _gce_terms(kept.index(k), [p[j] for j in kept], opts)


def _keras_gce(arrays: Arrays, o: Mapping[str, Any]) -> Any:
    if o.get("from_logits", False) or o.get("q", 0.5) >= 1:
        return None  # Keras takes probabilities and q in (0, 1)

    def fn(p: Any, a: dict[str, Any], _: Mapping[str, Any]) -> Any:
        import keras

        return keras.losses.categorical_generalized_cross_entropy(a["y_true"], p, q=o.get("q", 0.5))

    return keras_peer(fn)(arrays, o)


def _gce_entry(options: dict[str, Any], regimes: Mapping[str, Regime]) -> Entry:
    return Entry(
        "categorical_generalized_cross_entropy",
        Spec(_gce_terms, mean=False, separable=False, integer_target=True),
        regimes=regimes, options=options, peers={"keras": _keras_gce},
        peer_names={"keras": "keras.losses.CategoricalGeneralizedCrossEntropy"})


def _gce_where_entry(options: dict[str, Any], regimes: Mapping[str, Regime]) -> Entry:
    return Entry(
        "categorical_generalized_cross_entropy",
        Spec(_gce_where_terms, mean=False, separable=False, integer_target=True),
        regimes=_where_regimes(regimes, label=True), options=options,
        note=_WHERE_NOTE.format(what="excluded classes leave the softmax (probabilities are not "
                                     "renormalised)"))


_GCE_LOGITS = {"generic": _sparse(_logits_generic), "large": _sparse(_logits_large),
               "confident": _sparse(_logits_confident)}
_GCE_PROBS = {"generic": _sparse(_probs_generic), "tiny": _sparse(_probs_tiny),
              "confident": _sparse(_probs_confident)}


# ------------------------------------------------------------------------------------- Poly-1


def _poly1_terms(t: list[mpf], x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``t_j (-log q_j + epsilon (1 - q_j))``, q = softmax(x)."""
    eps = mpf(opts.get("epsilon", 2.0))
    # for eps < 0, n_j + eps v_j cancels down to ~v_j^2/2 where q_j -> 1: raise the precision by
    # twice the decimal exponent of the smallest v_j, so the difference keeps its digits
    _, _, v = _softmax_pieces(x)
    smallest = min(vj for vj in v)
    extra = 0 if eps >= 0 or smallest == 0 else int(-2 * mpmath.log10(smallest)) + 10
    with mpmath.mp.workdps(mpmath.mp.dps + max(extra, 0)):
        _, n, v = _softmax_pieces(x)
        out = [_coef(tj, nj + eps * vj) for tj, nj, vj in zip(t, n, v, strict=True)]
    return [+o for o in out]


def _poly1_where_terms(t: list[mpf], x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """The Poly-1 terms of the kept classes W, q the softmax over W; nothing kept gives 0."""
    kept = _kept(opts, len(x))
    if not kept:
        return [mpf(0)]
    return _poly1_terms([t[j] for j in kept], [x[j] for j in kept], opts)


def _optax_poly1_where(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import optax

    return optax.losses.poly_loss_cross_entropy(p, a["y_true"], epsilon=o.get("epsilon", 2.0),
                                                where=a["where"])


def _poly1_where_entry(options: dict[str, Any], regimes: Mapping[str, Regime]) -> Entry:
    return Entry(
        "poly_loss_cross_entropy", Spec(_poly1_where_terms, mean=False, separable=False),
        regimes=_where_regimes(regimes), options=options,
        peers={"optax": jax_peer(_optax_poly1_where)},
        peer_names={"optax": "optax.losses.poly_loss_cross_entropy(where=)"},
        note=_WHERE_NOTE.format(what="excluded classes leave the softmax"))


def _optax_poly1(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import optax

    return optax.losses.poly_loss_cross_entropy(p, a["y_true"], epsilon=o.get("epsilon", 2.0))


def _poly1_entry(options: dict[str, Any], regimes: Mapping[str, Regime], note: str = "") -> Entry:
    return Entry(
        "poly_loss_cross_entropy", Spec(_poly1_terms, mean=False, separable=False),
        regimes=regimes, options=options,
        peers={} if note else {"optax": jax_peer(_optax_poly1)},
        peer_names={"optax": "optax.losses.poly_loss_cross_entropy"}, note=note)


# ---------------------------------------------------------------------------------------- NLL


def _nll_terms(k: int, x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``-w_k x_k`` (0 for an ignored label)."""
    if opts.get("ignore_class") is not None and k == opts["ignore_class"]:
        return [mpf(0)]
    weight = opts.get("weight")
    w = mpf(1) if weight is None else mpf(weight[k])
    return [_coef(w, -x[k])]


def _nll_where_terms(k: int, x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``-w_k x_k`` for a kept label (the log-probabilities are not renormalised); 0 for an
    ignored label or a row with nothing kept."""
    kept = _kept(opts, len(x))
    if not kept or (opts.get("ignore_class") is not None and k == opts["ignore_class"]):
        return [mpf(0)]
    assert k in kept, "a regime row excludes its own label"
    return _nll_terms(k, x, opts)


def _log_probs(draw: Callable[..., tuple[np.ndarray, np.ndarray]], ignore: int | None = None
               ) -> Regime:
    """Log-softmax of the drawn logits (computed in float64, then cast); with ``ignore``, every
    third label replaced by it."""
    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        labels, x = draw(rng, dtype)
        x = np.asarray(x, dtype=np.float64)
        m = x.max(axis=1, keepdims=True)
        logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
        labels = labels.astype(np.int64)
        if ignore is not None:
            labels[::3] = ignore
        return {"y_true": labels, "y_pred": np.minimum(logp, 0.0).astype(dtype)}
    return regime


def _torch_nll(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import torch
    import torch.nn.functional as F

    weight = o.get("weight")
    w = None if weight is None else torch.tensor(weight, dtype=p.dtype)
    ignore = o.get("ignore_class")
    return F.nll_loss(p, a["y_true"], weight=w, reduction="none",
                      ignore_index=-100 if ignore is None else ignore)


def _nll_entry(options: dict[str, Any], regimes: Mapping[str, Regime]) -> Entry:
    return Entry(
        "nll", Spec(_nll_terms, mean=False, separable=False, integer_target=True),
        regimes=regimes, options=options, peers={"torch": torch_peer(_torch_nll)},
        peer_names={"torch": "torch.nn.NLLLoss"})


def _nll_where_entry(options: dict[str, Any], regimes: Mapping[str, Regime]) -> Entry:
    return Entry(
        "nll", Spec(_nll_where_terms, mean=False, separable=False, integer_target=True),
        regimes=_where_regimes(regimes, label=True), options=options,
        note=_WHERE_NOTE.format(what="-w_k x_k unchanged for a kept label"))


# --------------------------------------------------------------------------------------- entries

_SOFT_NOTE = ("label smoothing makes every target soft; a gradient element of a soft target is a "
              "difference of two terms and cancels near its zero, where it is exact to 8 ulp of the "
              "larger term (the core cross-entropies' soft-target exception, checked in "
              "tests/test_classification.py); the regimes here are confident or large rows")

ENTRIES: list[Entry] = [
    _binary_focal_entry({}, _BF_PROBS),
    _binary_focal_entry({"apply_class_balancing": True, "alpha": 0.25, "gamma": 0.5}, _BF_PROBS),
    _binary_focal_entry({"from_logits": True}, _BF_LOGITS),
    _binary_focal_entry({"from_logits": True, "apply_class_balancing": True, "gamma": 3.0},
                        _BF_LOGITS),
    _binary_focal_entry({"from_logits": True, "label_smoothing": 0.1, "gamma": 1.5},
                        {"generic": _bf_logits_tails, "large": _bf_soft(_bf_logits_large)},
                        note=_SOFT_NOTE),
    _categorical_focal_entry({}, _CF_PROBS),
    _categorical_focal_entry({"from_logits": True}, _CF_LOGITS),
    _categorical_focal_entry({"from_logits": True, "gamma": 0.5, "alpha": 1.0}, _CF_LOGITS),
    _categorical_focal_entry({"from_logits": True, "label_smoothing": 0.1},
                             {"generic": _dense(_logits_confident), "large": _dense(_logits_large)},
                             note=_SOFT_NOTE),
    # -- where (entry ids are made of the options only: these option sets are used nowhere else)
    _binary_focal_where_entry({"gamma": 1.0, "apply_class_balancing": True, "alpha": 0.6},
                              _BF_PROBS),
    _binary_focal_where_entry({"from_logits": True, "gamma": 2.5}, _BF_LOGITS),
    _categorical_focal_where_entry({"gamma": 3.0}, _CF_PROBS),
    _categorical_focal_where_entry({"from_logits": True, "gamma": 1.0}, _CF_LOGITS),
    _gce_entry({}, _GCE_PROBS),
    _gce_entry({"q": 0.7}, _GCE_PROBS),
    _gce_entry({"from_logits": True}, _GCE_LOGITS),
    _gce_entry({"from_logits": True, "q": 0.3}, _GCE_LOGITS),
    _gce_where_entry({"q": 0.4}, _GCE_PROBS),
    _gce_where_entry({"from_logits": True, "q": 0.6}, _GCE_LOGITS),
    _poly1_where_entry({"epsilon": 3.0}, _CF_LOGITS),
    _poly1_where_entry({"epsilon": -0.5}, _CF_LOGITS),
    _nll_where_entry({"weight": (1.0, 2.0, 0.5, 0.0, 4.0)},
                     {"generic": _log_probs(_logits_generic), "large": _log_probs(_logits_large)}),
    _nll_where_entry({"weight": (1.0, 2.0, 0.5, 0.0, 4.0), "ignore_class": -100},
                     {"generic": _log_probs(_logits_generic, ignore=-100)}),
    _poly1_entry({}, _CF_LOGITS),
    _poly1_entry({"epsilon": -1.0}, _CF_LOGITS),
    _poly1_entry({"epsilon": 1.0}, {"generic": _dense(_logits_confident, soft=True),
                                    "large": _dense(_logits_large, soft=True)}, note=_SOFT_NOTE),
    _nll_entry({}, {"generic": _log_probs(_logits_generic), "large": _log_probs(_logits_large)}),
    _nll_entry({"weight": (0.5, 1.0, 2.0, 0.0, 3.0), "ignore_class": -100},
               {"generic": _log_probs(_logits_generic, ignore=-100)}),
]
