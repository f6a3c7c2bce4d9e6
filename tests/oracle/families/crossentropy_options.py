"""Oracle entries for the options of the core cross-entropies (issue 4): ``pos_weight`` on
binary_crossentropy, ``class_weight`` on categorical_crossentropy and
sparse_categorical_crossentropy, ``label_smoothing`` on the sparse one, ``ignore_index`` (the alias of
``ignore_class``) and the ``where`` mask on all three.

The terms are written from the definitions in mpmath (PyTorch's ``BCEWithLogitsLoss(pos_weight=)``
and ``CrossEntropyLoss(weight=, label_smoothing=)``, Optax's ``where``), never from losskit's code.

Rows are drawn at random and, for the option sets whose targets are soft (label smoothing, soft
target distributions), kept only where every gradient element is well conditioned: the gradient there
is a difference ``A - B`` of two positive terms (e.g. ``(sum c) softmax_i - c_i``), and within a factor
of two of each other the error is bounded by ulps of the larger term, not of the difference (the
exception documented in families/core.py for the core cross-entropies). Hard targets have no such
exception: one of the two terms is exactly 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from ..catalog import Entry
from ..peers import jax_peer, torch_peer
from ..reference import Spec

K = 5  # classes (columns) of every regime
ROWS = 12
Arrays = dict[str, np.ndarray]
Regime = Callable[[np.random.Generator, Any], Arrays]

PW = (0.0, 0.5, 1.0, 3.0, 1000.0)  # per-class pos_weight / class_weight: a zero, tiny and huge ones
CW = (0.25, 1.0, 0.0, 3.0, 40.0)


# --------------------------------------------------------------------------------------- the oracle


def _m(x: Any) -> mpf:
    return x if isinstance(x, mpf) else mpf(float(x))


def _sub(a: mpf, b: mpf) -> mpf:
    return mpmath.fsub(a, b, exact=True)


def _vector(opts: Mapping[str, Any], name: str, n: int) -> list[mpf]:
    """A weight option as n mpf values: a per-class list (already exact), a number, or 1."""
    value = opts.get(name)
    if value is None:
        return [mpf(1)] * n
    if isinstance(value, list | tuple):
        return [_m(v) for v in value]
    return [_m(value)] * n


def _kept(opts: Mapping[str, Any], n: int) -> list[int]:
    where = opts.get("where")
    return list(range(n)) if where is None else [i for i in range(n) if _m(where[i]) != 0]


def _softplus(c: mpf, z: mpf) -> mpf:
    """``c * log(1 + exp(z))``, 0 when c = 0."""
    return mpf(0) if c == 0 else c * mpmath.log1p(mpmath.exp(z))


def _xlog(c: mpf, p: mpf) -> mpf:
    """``-c * log(p)``, 0 when c = 0, +inf when p = 0 < c."""
    if c == 0:
        return mpf(0)
    return mpf("inf") if p == 0 else -c * mpmath.log(p)


def _xlog1m(c: mpf, p: mpf) -> mpf:
    """``-c * log(1 - p)``, 0 when c = 0, +inf when p = 1 and c > 0."""
    if c == 0:
        return mpf(0)
    return mpf("inf") if p == 1 else -c * mpmath.log1p(-p)


def _bce_term(t: mpf, p: mpf, w: mpf, opts: Mapping[str, Any]) -> mpf:
    """-(w t' log sigma(x) + (1 - t') log(1 - sigma(x))), t' = t (1 - ls) + ls / 2 (exact)."""
    ls = _m(opts.get("label_smoothing", 0.0))
    a = mpmath.fadd(mpmath.fmul(t, _sub(mpf(1), ls), exact=True), mpmath.ldexp(ls, -1), exact=True)
    b = _sub(mpf(1), a)
    if opts.get("from_logits", False):
        return _softplus(w * a, -p) + _softplus(b, p)
    return _xlog(w * a, p) + _xlog1m(b, p)


def _bce_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Binary cross-entropy terms with pos_weight (separable: pos_weight rows are sliced with p)."""
    w = _vector(opts, "pos_weight", len(p))
    return [_bce_term(ti, pi, wi, opts) for ti, pi, wi in zip(t, p, w, strict=True)]


def _bce_where_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """The mean over the kept elements only (summed: Spec(mean=False)); nothing kept gives 0."""
    kept = _kept(opts, len(p))
    w = _vector(opts, "pos_weight", len(p))
    return [_bce_term(t[i], p[i], w[i], opts) / len(kept) for i in kept] or [mpf(0)]


def _neglog_softmax(x: list[mpf]) -> list[mpf]:
    """lse(x) - x_j = (m - x_j) + log1p(sum of exp(x_i - m) over i but the first maximum): no
    cancellation, and a confident row's tiny log1p is kept (log of 1 + 1e-197 would round to 0)."""
    top = max(range(len(x)), key=lambda j: x[j])
    m = x[top]
    log_total = mpmath.log1p(mpmath.fsum(mpmath.exp(xj - m) for j, xj in enumerate(x) if j != top))
    return [(m - xj) + log_total for xj in x]


def _neglog_renormalised(p: list[mpf]) -> list[mpf]:
    """log(P / p_j) = log1p(sum of the others / p_j) for every j; +inf where p_j = 0."""
    others = [mpmath.fsum(pi for i, pi in enumerate(p) if i != j) for j in range(len(p))]
    return [mpf("inf") if pj == 0 else mpmath.log1p(r / pj) for pj, r in zip(p, others, strict=True)]


def _soft_ce(c: list[mpf], pred: list[mpf], from_logits: bool) -> list[mpf]:
    """sum_j c_j (-log q_j) with q the softmax (or the renormalised probabilities) of ``pred``."""
    nll = _neglog_softmax(pred) if from_logits else _neglog_renormalised(pred)
    return [cj * v for cj, v in zip(c, nll, strict=True) if cj != 0] or [mpf(0)]


def _cce_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """sum_{j in W} w_j t'_j (-log q_j): q over the kept classes W, t' = t (1 - ls) + ls / |W|."""
    kept = _kept(opts, len(p))
    if not kept:
        return [mpf(0)]
    ls = _m(opts.get("label_smoothing", 0.0))
    w = _vector(opts, "class_weight", len(p))
    c = [w[j] * (mpmath.fmul(t[j], _sub(mpf(1), ls), exact=True) + ls / len(kept)) for j in kept]
    return _soft_ce(c, [p[j] for j in kept], opts.get("from_logits", False))


def _scce_terms(k: int, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """(1 - ls) w_k (-log q_k) + ls / |W| sum_{j in W} w_j (-log q_j), q over the kept classes W."""
    ignore = opts.get("ignore_class", opts.get("ignore_index"))
    kept = _kept(opts, len(p))
    if k == ignore or not kept:
        return [mpf(0)]
    assert k in kept, "a regime row excludes its own label"
    ls = _m(opts.get("label_smoothing", 0.0))
    w = _vector(opts, "class_weight", len(p))
    c = [ls / len(kept) * w[j] + (_sub(mpf(1), ls) * w[k] if j == k else 0) for j in kept]
    return _soft_ce(c, [p[j] for j in kept], opts.get("from_logits", False))


BCE = Spec(_bce_terms, mean=True, separable=True)
BCE_WHERE = Spec(_bce_where_terms, mean=False, separable=False)
CCE = Spec(_cce_terms, mean=False, separable=False)
SCCE = Spec(_scce_terms, mean=False, separable=False, integer_target=True)


# --------------------------------------------------------------------------------------- regimes


def _cast(dtype: Any, **arrays: Any) -> Arrays:
    return {k: (np.asarray(v) if np.asarray(v).dtype.kind in "biu"
                else np.asarray(v, dtype=np.float64).astype(dtype)) for k, v in arrays.items()}


def _conditioned(a: np.ndarray, b: np.ndarray) -> bool:
    """Every difference a - b of positive terms is at least half the larger one (or one is 0)."""
    a, b = np.abs(a), np.abs(b)
    return bool(np.all((np.minimum(a, b) == 0) | (np.abs(a - b) >= 0.5 * np.maximum(a, b))))


def _softmax_pairs(c: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two terms of each gradient element of sum_j c_j (lse(x) - x_j), as the kernels form them:
    C softmax_i and c_i, and at the row maximum C - c_top and c_top S (S = sum of the others' exp)."""
    top = int(np.argmax(x))
    e = np.exp(x - x[top])
    s = e.sum() - 1.0
    big_c = c.sum()
    a, b = big_c * e / (1.0 + s), c.copy()
    a[top], b[top] = big_c - c[top], c[top] * s
    return a, b


def _renorm_pairs(c: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient terms of sum_j c_j log(P / p_j): (C - c_i) p_i and c_i (P - p_i)."""
    return (c.sum() - c) * p, c * (p.sum() - p)


def _rows(rng: np.random.Generator, dtype: Any, draw: Callable[[np.random.Generator], Arrays],
          accept: Callable[[Arrays], bool] | None = None) -> Arrays:
    """ROWS rows from ``draw`` (one row per call), cast to dtype, kept only where ``accept``."""
    rows: list[Arrays] = []
    for _ in range(2000):
        row = _cast(dtype, **draw(rng))
        if accept is None or accept(row):
            rows.append(row)
        if len(rows) == ROWS:
            return {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    raise RuntimeError("a regime could not draw enough well-conditioned rows")


def _logit_row(rng: np.random.Generator, kind: str) -> np.ndarray:
    if kind == "generic":
        return rng.normal(scale=3.0, size=K)
    if kind == "confident":  # one logit far above the others: tiny losses, S down to e^-80
        x = rng.normal(size=K)
        x[rng.integers(K)] += rng.uniform(10.0, 80.0)
        return x
    if kind == "large":  # magnitudes up to 1e4: softplus and lse in their linear regime
        return rng.choice([-1.0, 1.0], size=K) * 10.0 ** rng.uniform(1.0, 4.0, size=K)
    if kind == "small":  # logits near 0, down to 1e-12
        return rng.choice([-1.0, 1.0], size=K) * 10.0 ** rng.uniform(-12.0, -1.0, size=K)
    raise ValueError(kind)


def _prob_row(rng: np.random.Generator, kind: str) -> np.ndarray:
    if kind == "generic":
        return rng.uniform(0.02, 1.0, size=K)
    if kind == "tails":  # probabilities down to 1e-30 and within 1e-7 of 1
        p = 10.0 ** rng.uniform(-30.0, -1.0, size=K)
        near_one = rng.random(K) < 0.4
        return np.where(near_one, 1.0 - 10.0 ** rng.uniform(-7.0, -1.0, size=K), p)
    raise ValueError(kind)


# -- binary


def _bce_regime(kind: str, logits: bool, accept: Callable[..., bool] | None = None,
                mask: str | None = None) -> Regime:
    def draw(rng: np.random.Generator) -> Arrays:
        row = {"y_true": rng.integers(0, 2, size=K).astype(float),
               "y_pred": _logit_row(rng, kind) if logits else _prob_row(rng, kind)}
        if mask is not None:
            row["where"] = _mask_row(rng, mask)
        return row

    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        return _rows(rng, dtype, draw, accept)
    return regime


def _mask_row(rng: np.random.Generator, mask: str) -> np.ndarray:
    if mask == "some":  # at least one element kept
        w = rng.random(K) < 0.6
        w[rng.integers(K)] = True
        return w
    # "rows": whole rows excluded or kept, and some mixed
    return np.full(K, rng.random() < 0.5) if rng.random() < 0.6 else rng.random(K) < 0.5


def _bce_smooth_ok(pos_weight: Any, ls: float, logits: bool) -> Callable[[Arrays], bool]:
    """Soft targets t' = t (1 - ls) + ls / 2: the gradient (1-t') s(x) - w t' s(-x) (or
    (1-t')/(1-p) - w t'/p) must not cancel."""
    w = np.asarray(pos_weight, dtype=np.float64)

    def accept(row: Arrays) -> bool:
        t = row["y_true"].astype(np.float64) * (1 - ls) + ls / 2
        x = row["y_pred"].astype(np.float64)
        with np.errstate(over="ignore"):
            if logits:
                a, b = (1 - t) / (1 + np.exp(-x)), w * t / (1 + np.exp(x))
            else:
                a, b = (1 - t) / (1 - x), w * t / x
        return _conditioned(a, b)
    return accept


# -- categorical


def _onehot_or_soft(rng: np.random.Generator, soft: bool) -> np.ndarray:
    if soft:
        t = rng.uniform(0.0, 1.0, size=K)
        return t / t.sum()
    t = np.zeros(K)
    t[rng.integers(K)] = 1.0
    return t


def _coefficients(t: np.ndarray, opts: Mapping[str, Any], where: np.ndarray | None) -> np.ndarray:
    kept = np.ones(K, bool) if where is None else where.astype(bool)
    ls = opts.get("label_smoothing", 0.0)
    w = np.asarray(opts.get("class_weight") or np.ones(K), dtype=np.float64)
    c = w * (t * (1 - ls) + ls / max(kept.sum(), 1))
    return np.where(kept, c, 0.0)


def _well_conditioned(row: Arrays, t: np.ndarray, opts: Mapping[str, Any], logits: bool) -> bool:
    """Whether a drawn row's gradient terms do not cancel (rows with nothing kept always pass)."""
    where = row.get("where")
    kept = np.ones(K, bool) if where is None else where
    if not kept.any():
        return True
    c = _coefficients(t, opts, where)[kept]
    x = row["y_pred"].astype(np.float64)[kept]
    a, b = _softmax_pairs(c, x) if logits else _renorm_pairs(c, x)
    return _conditioned(a, b)


def _cce_regime(kind: str, opts: Mapping[str, Any], soft: bool, mask: str | None = None) -> Regime:
    logits = opts.get("from_logits", False)

    def draw(rng: np.random.Generator) -> Arrays:
        row = {"y_true": _onehot_or_soft(rng, soft),
               "y_pred": _logit_row(rng, kind) if logits else _prob_row(rng, kind)}
        if mask is not None:
            row["where"] = _mask_row(rng, mask)
        return row

    def accept(row: Arrays) -> bool:
        return _well_conditioned(row, row["y_true"].astype(np.float64), opts, logits)

    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        return _rows(rng, dtype, draw, accept)
    return regime


def _scce_regime(kind: str, opts: Mapping[str, Any], mask: str | None = None,
                 ignore: int | None = None) -> Regime:
    logits = opts.get("from_logits", False)

    def draw(rng: np.random.Generator) -> Arrays:
        x = _logit_row(rng, kind) if logits else _prob_row(rng, kind)
        label = int(rng.integers(K))
        if kind == "confident" and rng.random() < 0.7:  # mostly confidently right
            label = int(np.argmax(x))
        row: dict[str, Any] = {"y_true": np.int64(label), "y_pred": x}
        if mask is not None:
            where = _mask_row(rng, mask)
            where[label] |= bool(where.any())  # the label's class is kept unless nothing is
            row["where"] = where
        return row

    def accept(row: Arrays) -> bool:
        label = int(row["y_true"])
        if label == ignore:
            return True
        return _well_conditioned(row, np.eye(K)[label], opts, logits)

    def regime(rng: np.random.Generator, dtype: Any) -> Arrays:
        return _rows(rng, dtype, draw, accept)
    return regime


# --------------------------------------------------------------------------------------- peers


def _torch_bce(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    """PyTorch's BCEWithLogitsLoss(pos_weight=) on the smoothed targets (it has no label smoothing),
    on torch.logit(p) for probabilities; the mean over the last axis."""
    import torch
    import torch.nn.functional as F

    ls = o.get("label_smoothing", 0.0)
    t = a["y_true"] * (1 - ls) + ls / 2
    x = p if o.get("from_logits", False) else torch.logit(p)
    pw = torch.as_tensor(o["pos_weight"], dtype=p.dtype)
    return F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="none").mean(-1)


def _optax_bce_where(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    """Optax's elementwise sigmoid_binary_cross_entropy, averaged over the kept elements."""
    import jax.numpy as jnp
    import optax

    x = p if o.get("from_logits", False) else jnp.log(p) - jnp.log1p(-p)
    return jnp.mean(optax.losses.sigmoid_binary_cross_entropy(x, a["y_true"]), axis=-1,
                    where=a["where"])


def _torch_ce(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    """PyTorch's cross_entropy (weight=, label_smoothing=, ignore_index=); probabilities enter as
    log p, whose softmax is the renormalised p."""
    import torch
    import torch.nn.functional as F

    x = p if o.get("from_logits", False) else torch.log(p)
    kw: dict[str, Any] = {"label_smoothing": o.get("label_smoothing", 0.0)}
    if o.get("class_weight") is not None:
        kw["weight"] = torch.as_tensor(o["class_weight"], dtype=p.dtype)
    ignore = o.get("ignore_class", o.get("ignore_index"))
    if ignore is not None:
        kw["ignore_index"] = ignore
    return F.cross_entropy(x, a["y_true"], reduction="none", **kw)


def _optax_ce_where(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    """Optax's softmax_cross_entropy(where=) on smooth_labels(where=) targets (integer labels
    one-hot encoded first); probabilities enter as log p."""
    import jax
    import jax.numpy as jnp
    import optax

    x = p if o.get("from_logits", False) else jnp.log(p)
    where = a["where"]
    ls = o.get("label_smoothing", 0.0)
    if a["y_true"].ndim == x.ndim - 1:
        if not ls and o.get("from_logits", False):
            return optax.losses.softmax_cross_entropy_with_integer_labels(x, a["y_true"],
                                                                          where=where)
        labels = jax.nn.one_hot(a["y_true"], x.shape[-1], dtype=x.dtype)
    else:
        labels = a["y_true"]
    if ls:
        labels = optax.losses.smooth_labels(labels, ls, where=where)
    return optax.losses.softmax_cross_entropy(x, labels, where=where)


TORCH_BCE = "torch.nn.BCEWithLogitsLoss(pos_weight=)"
TORCH_CE = "torch.nn.CrossEntropyLoss"
OPTAX_CE = "optax.losses.softmax_cross_entropy(where=)"
OPTAX_ICE = "optax.losses.softmax_cross_entropy_with_integer_labels(where=)"


# --------------------------------------------------------------------------------------- entries


def _bce_entry(options: dict[str, Any], regimes: Mapping[str, Regime], **kw: Any) -> Entry:
    return Entry("binary_crossentropy", BCE, regimes=regimes, options=options,
                 peers={"torch": torch_peer(_torch_bce)}, peer_names={"torch": TORCH_BCE}, **kw)


def _bce_where_entry(options: dict[str, Any], logits: bool) -> Entry:
    return Entry("binary_crossentropy", BCE_WHERE, options=options, tag="where",
                 regimes={"generic": _bce_regime("generic", logits, mask="some"),
                          "rows": _bce_regime("generic", logits, mask="rows"),
                          "tails": _bce_regime("large" if logits else "tails", logits, mask="some")},
                 peers={"optax": jax_peer(_optax_bce_where)},
                 peer_names={"optax": "mean(optax.losses.sigmoid_binary_cross_entropy, where=)"},
                 note="where: the mean over the kept elements; a sample with none kept gives 0 "
                      "(jnp.mean(where=) gives NaN, so the peer runs on 'generic' only)")


def _ce_entry(loss: str, spec: Spec, options: dict[str, Any], regimes: Mapping[str, Regime],
              torch: bool = True, optax: str | None = None, **kw: Any) -> Entry:
    peers: dict[str, Any] = {}
    names: dict[str, str] = {}
    if torch:
        peers["torch"], names["torch"] = torch_peer(_torch_ce), TORCH_CE
    if optax is not None:
        peers["optax"], names["optax"] = jax_peer(_optax_ce_where), optax
        kw["tag"] = "where"
    return Entry(loss, spec, regimes=regimes, options=options, peers=peers, peer_names=names, **kw)


def _cce_entry(options: dict[str, Any], soft: bool = True, **kw: Any) -> Entry:
    logits = options.get("from_logits", False)
    mask = "some" if kw.get("optax") else None
    regimes = {"generic": _cce_regime("generic", options, soft, mask),
               "onehot": _cce_regime("generic", options, False, mask)}
    if logits:
        regimes["confident"] = _cce_regime("confident", options, False, mask)
        regimes["large"] = _cce_regime("large", options, soft, mask)
    else:
        regimes["tails"] = _cce_regime("tails", options, soft, mask)
    if mask:
        regimes["rows"] = _cce_regime("generic", options, soft, "rows")
    return _ce_entry("categorical_crossentropy", CCE, options, regimes, **kw)


def _scce_entry(options: dict[str, Any], mask: str | None = None, ignore: int | None = None,
                **kw: Any) -> Entry:
    logits = options.get("from_logits", False)
    regimes = {"generic": _scce_regime("generic", options, mask, ignore)}
    if logits:
        regimes["confident"] = _scce_regime("confident", options, mask, ignore)
        regimes["large"] = _scce_regime("large", options, mask, ignore)
        regimes["small"] = _scce_regime("small", options, mask, ignore)
    else:
        regimes["tails"] = _scce_regime("tails", options, mask, ignore)
    if mask:
        regimes["rows"] = _scce_regime("generic", options, "rows", ignore)
    return _ce_entry("sparse_categorical_crossentropy", SCCE, options, regimes, **kw)


# The where entries (where is an input array, not an option) carry the tag "where" in their ids.
ENTRIES = [
    # -- pos_weight (PyTorch BCEWithLogitsLoss): scalar and per class, logits and probabilities
    _bce_entry({"from_logits": True, "pos_weight": 2.5},
               {"generic": _bce_regime("generic", True), "large": _bce_regime("large", True),
                "small": _bce_regime("small", True)}),
    _bce_entry({"from_logits": True, "pos_weight": PW},
               {"generic": _bce_regime("generic", True), "large": _bce_regime("large", True),
                "small": _bce_regime("small", True)}),
    _bce_entry({"from_logits": False, "pos_weight": PW},
               {"generic": _bce_regime("generic", False), "tails": _bce_regime("tails", False)}),
    _bce_entry({"from_logits": True, "pos_weight": PW, "label_smoothing": 0.1},
               {"generic": _bce_regime("generic", True, _bce_smooth_ok(PW, 0.1, True)),
                "large": _bce_regime("large", True, _bce_smooth_ok(PW, 0.1, True))},
               note="soft targets: rows where the gradient's two terms cancel are left out"),
    # -- where on BCE: the mean over the kept elements
    _bce_where_entry({"from_logits": True}, logits=True),
    _bce_where_entry({"from_logits": False}, logits=False),
    # -- class_weight on CCE (PyTorch CrossEntropyLoss(weight=) with probability targets)
    _cce_entry({"from_logits": True, "class_weight": CW}),
    _cce_entry({"from_logits": False, "class_weight": CW}),
    _cce_entry({"from_logits": True, "class_weight": CW, "label_smoothing": 0.1}),
    # -- where on CCE (Optax softmax_cross_entropy(where=), smooth_labels(where=))
    _cce_entry({"from_logits": True}, torch=False, optax=OPTAX_CE),
    _cce_entry({"from_logits": True, "label_smoothing": 0.1}, torch=False, optax=OPTAX_CE),
    _cce_entry({"from_logits": False}, torch=False, optax=OPTAX_CE),
    # -- label_smoothing on sparse CCE (PyTorch cross_entropy(label_smoothing=) with indices)
    _scce_entry({"from_logits": True, "label_smoothing": 0.1}),
    _scce_entry({"from_logits": False, "label_smoothing": 0.1}),
    # -- class_weight on sparse CCE, alone and with smoothing
    _scce_entry({"from_logits": True, "class_weight": CW}),
    _scce_entry({"from_logits": False, "class_weight": CW}),
    _scce_entry({"from_logits": True, "class_weight": CW, "label_smoothing": 0.1}),
    # -- ignore_index, the alias of ignore_class
    _scce_entry({"from_logits": True, "ignore_index": 1}, ignore=1),
    # -- where on sparse CCE (Optax softmax_cross_entropy_with_integer_labels(where=))
    _scce_entry({"from_logits": True}, mask="some", torch=False, optax=OPTAX_ICE),
    _scce_entry({"from_logits": True, "label_smoothing": 0.2}, mask="some", torch=False,
                optax=OPTAX_CE),
    _scce_entry({"from_logits": False}, mask="some", torch=False, optax=OPTAX_CE),
]
