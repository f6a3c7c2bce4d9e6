"""Embedding and ranking losses: NT-Xent / InfoNCE, circle, triplet margin, cosine embedding, margin
ranking and hinge embedding (issue 12).

The convention that maps these multi-input losses onto ``(y_true, y_pred, **inputs)``:

* ``y_pred`` is the array the loss is differentiated with respect to: one row of a similarity matrix
  (``ntxent``, ``circle``), the anchor embeddings (``triplet_margin``), the first embeddings or scores
  (``cosine_embedding``, ``margin_ranking``) or the distances (``hinge_embedding``). Every loss here is
  a function of one row of ``y_pred`` (the last axis), so weights, reductions, empty batches and the
  property suite work as for every other loss.
* ``y_true`` holds the labels where the loss has them: a 0/1 mask of the positives of each row
  (``ntxent``, ``circle``; see :func:`pair_masks`), -1/1 labels (``cosine_embedding``: one per row;
  ``margin_ranking``, ``hinge_embedding``: one per element). ``triplet_margin`` has no labels: its
  ``y_true`` is the positive embedding, the one the anchor should be close to (as ``y_true`` is what
  ``y_pred`` should match in a regression loss).
* The other members of a pair or triplet are extra input arrays named as PyTorch names them
  (``x2=``, ``negative=``), declared ``Input(differentiable=True)``; the triplet's positive
  (``y_true``) is differentiable too (``differentiable_target``). Their gradients are derived
  analytically next to the anchor's (as exact) and reach PyTorch's and JAX's autograd through
  every member; ``Loss.value_and_gradients`` returns them all for NumPy arrays.
* Batch-coupled forms (in-batch negatives from two embedding matrices, Optax's ``ntxent(embeddings,
  labels)``, Keras's ``circle(labels, embeddings)``) are the row losses of a similarity matrix the
  caller forms (``S = normalize(Q) @ normalize(K).T``) with the masks of :func:`pair_masks`; the
  symmetric (CLIP) InfoNCE is ``(ntxent(I, S) + ntxent(I, S.T)) / 2``. Each docstring shows how.

Exactness: scores are scaled and compared in double length (TwoSum, TwoProduct, ``_double``), so a
temperature of 0.01 or a scale of 80 does not multiply the rounding of the logits into the
exponentials; distances, dot products and norms are double-length sums, so ``1 - cos`` of nearly
parallel vectors and a hinge that cancels keep their digits.
"""

from __future__ import annotations

from decimal import Context, Decimal
from fractions import Fraction
from typing import Any

import numpy as np

from .. import _array
from .._double import dd_add, dd_constant, dd_mul, dd_sum, fast_two_sum, two_product, two_sum
from .._numerics import sigmoid, softplus
from ._core import (
    Input,
    Interval,
    LossDef,
    Option,
    binary_checker,
    check_bool,
    check_nonnegative,
    check_positive,
    check_real,
)
from ._registry import Alias
from .margin import kink_slope, shifted_difference, sign_checker

Array = Any
Pair = tuple[Array, Array]


# ------------------------------------------------------------------------- double-length helpers


def _neg(a: Pair) -> Pair:
    return -a[0], -a[1]


def _finite(xp: Any, x: Array) -> Array:
    """``x`` with non-finite values (the NaN low part of an infinite sum) replaced by 0."""
    return xp.where(xp.isfinite(x), x, xp.zeros_like(x))


def _add(xp: Any, a: Pair, b: Pair) -> Pair:
    """:func:`dd_add` where the plain sum is finite; the plain sum (``lo = 0``) where it is not."""
    hi, lo = dd_add(xp, a, b)
    plain = a[0] + b[0]
    ok = xp.isfinite(plain)
    return xp.where(ok, hi, plain), xp.where(ok, _finite(xp, lo), xp.zeros_like(lo))


def _dd_row_sum(xp: Any, a: Pair) -> Pair:
    """Sum of a pair over the last axis, as a pair (both halves summed with compensation)."""
    return dd_sum(xp, xp.concat([a[0], _finite(xp, a[1])], axis=-1))


def _dd_dot(xp: Any, a: Array, b: Array) -> Pair:
    """Row dot product ``sum_i a_i b_i`` as a pair: exact products (TwoProduct), compensated sum."""
    p, e = two_product(xp, a, b)
    return dd_sum(xp, xp.concat([p, _finite(xp, e)], axis=-1))


def _dd_sqrt(xp: Any, a: Pair) -> Pair:
    """``sqrt(hi + lo)`` as a pair: one Newton correction with the exact square (TwoProduct)."""
    s = xp.sqrt(a[0])
    p, pe = two_product(xp, s, s)
    r = ((a[0] - p) - pe) + a[1]
    live = (s > 0) & xp.isfinite(s)
    return s, xp.where(live, r / xp.where(live, 2.0 * s, xp.ones_like(s)), xp.zeros_like(s))


def _dd_div(xp: Any, a: Pair, b: Pair) -> Pair:
    """``a / b`` for pairs (one correction step: the remainder from TwoProduct)."""
    q = a[0] / b[0]
    p, pe = two_product(xp, q, b[0])
    r = (((a[0] - p) - pe) + a[1]) - q * b[1]
    lo = _finite(xp, r / b[0])
    return fast_two_sum(xp, q, lo)


def _scale(xp: Any, x: Array, c: tuple[float, float]) -> Pair:
    """``c * x`` as a pair, for a constant ``c = c_hi + c_lo`` (e.g. ``1/temperature``, exact)."""
    p, e = two_product(xp, x, xp.zeros_like(x) + c[0])
    return p, _finite(xp, e + x * c[1])


def _log_fraction(x: Fraction) -> Fraction:
    """``log(x)`` of a positive rational to about 40 digits, as a Fraction (for :func:`dd_constant`)."""
    context = Context(prec=45)
    return Fraction(context.ln(context.divide(Decimal(x.numerator), Decimal(x.denominator))))


def _lse_parts(xp: Any, t: Pair, mask: Array) -> tuple[Pair, Pair, Array, Pair, Array]:
    """Log-sum-exp over the masked entries of a row of pairs ``t`` (last axis), in parts.

    Returns ``(top, log_s, e, s, empty)``: the row maximum ``M`` as a pair ``(..., 1)`` (its low part
    is that of the maximal entry, so the entry's own term is exactly ``exp(0) = 1``),
    ``e_k = exp(t_k - M)`` (0 off the mask), their sum ``s >= 1`` as a pair (compensated), ``log s``
    as a pair (``log s_hi``, ``s_lo / s_hi``) and the empty rows; the log-sum-exp is ``M + log s``.
    ``t_k - M`` is formed with TwoSum and the low parts are applied as ``exp(d)(1 + r)``, so each
    ``e_k`` is within an ulp or two whatever the size of ``t``. An entry of ``+inf`` takes all the
    weight (the limit).
    """
    neg_inf = xp.full_like(t[0], -float("inf"))
    top = xp.max(xp.where(mask, t[0], neg_inf), axis=-1, keepdims=True)
    empty = top == -float("inf")
    inf_top = top == float("inf")
    top0 = xp.where(empty, xp.zeros_like(top), top)
    tied = mask & (t[0] == top)
    top_lo = xp.max(xp.where(tied, _finite(xp, t[1]), neg_inf), axis=-1, keepdims=True)
    top_lo = xp.where(empty | inf_top, xp.zeros_like(top_lo), top_lo)
    d, r = two_sum(xp, t[0], -top0)
    r = _finite(xp, r) + (_finite(xp, t[1]) - top_lo)
    d = xp.where(inf_top, xp.where(t[0] == float("inf"), xp.zeros_like(d),
                                   xp.full_like(d, -float("inf"))), d)
    e = xp.where(mask, xp.exp(d) * (1.0 + _finite(xp, r)), xp.zeros_like(d))
    s = dd_sum(xp, e)
    s_hi = xp.where(empty[..., 0], xp.ones_like(s[0]), s[0])
    log_s = (xp.log(s_hi), s[1] / s_hi)
    return (top0, top_lo), log_s, e, (s_hi, s[1]), empty[..., 0]


def _lse(xp: Any, t: Pair, mask: Array) -> tuple[Pair, Array, Pair, Array]:
    """Log-sum-exp over the masked entries of a row of pairs: ``(lse, e, s, empty)``, the log-sum-exp
    as a pair (``-inf`` where the mask is empty) and the rest as :func:`_lse_parts` gives them."""
    (top0, top_lo), log_s, e, s, empty = _lse_parts(xp, t, mask)
    hi, lo = _add(xp, (top0[..., 0], top_lo[..., 0]), log_s)
    hi = xp.where(empty, -float("inf") + xp.zeros_like(hi), hi)
    return (hi, xp.where(empty, xp.zeros_like(lo), lo)), e, s, empty


def _softplus_pair(xp: Any, y: Pair) -> Array:
    """``softplus(hi + lo)`` (``softplus(hi) + sigmoid(hi) lo``): relative accuracy for ``y << 0``."""
    return softplus(xp, y[0]) + xmul0(xp, sigmoid(xp, y[0]), y[1])


def _sigmoid_pair(xp: Any, y: Pair) -> Array:
    """``sigmoid(hi + lo)`` (``s (1 + (1 - s) lo)``)."""
    s = sigmoid(xp, y[0])
    return s * (1.0 + xmul0(xp, sigmoid(xp, -y[0]), y[1]))


def xmul0(xp: Any, a: Array, b: Array) -> Array:
    """``a * b`` with ``0 * anything = 0`` (a NaN low part of an infinite high part)."""
    return xp.where(a == 0, xp.zeros_like(a), a * _finite(xp, b))


def _nan_rows(xp: Any, y_pred: Array, value: Array, y_true: Array | None = None) -> Array:
    """NaN where a row of ``y_pred`` (or of ``y_true``) holds a NaN (masked-out entries included)."""
    bad = xp.any(xp.isnan(y_pred), axis=-1)
    if y_true is not None:
        bad = bad | xp.any(xp.isnan(y_true), axis=-1)
    return xp.where(bad, xp.full_like(value, float("nan")), value)


def _positives_checker(name: str) -> Any:
    """``check_values`` for a 0/1 mask of positives (NaN passes: it propagates to its row)."""
    return binary_checker(name, "be a 0/1 mask of the positives of each row (see losskit.pair_masks)",
                          nan_ok=True)


def pair_masks(labels: Any, ref_labels: Any = None, *, remove_diagonal: bool = True
               ) -> tuple[Array, Array]:
    """The ``y_true`` and ``where`` of :func:`ntxent` and :func:`circle` from class labels.

    For anchors with ``labels`` ``(B,)`` against references with ``ref_labels`` ``(R,)`` (default:
    the anchors themselves), returns ``(positives, where)`` of shape ``(B, R)``: ``positives[i, j] =
    1.0`` where the labels agree, and ``where`` False on the diagonal when ``remove_diagonal`` (an
    embedding is neither its own positive nor its own negative; Keras's ``remove_diagonal=True`` and
    Optax's "no self cos"), True elsewhere. Arrays of the labels' library (NumPy, PyTorch, JAX).

    >>> import numpy as np, losskit
    >>> y, where = losskit.pair_masks(np.array([0, 0, 1]))
    >>> y
    array([[1., 1., 0.],
           [1., 1., 0.],
           [0., 0., 1.]])
    >>> where
    array([[False,  True,  True],
           [ True, False,  True],
           [ True,  True, False]])
    """
    check_bool("remove_diagonal", remove_diagonal)
    labels = _array.as_array(labels, "labels")
    ref = labels if ref_labels is None else _array.like(ref_labels, labels, "ref_labels")
    if labels.ndim != 1 or ref.ndim != 1:
        raise ValueError(f"pair_masks: labels and ref_labels must be 1-D; found shapes "
                         f"{tuple(labels.shape)} and {tuple(ref.shape)}")
    xp = _array.namespace(labels)
    same = labels[:, None] == ref[None, :]
    dtype = labels.dtype if _array.is_floating(labels) else _array.compute_dtype(labels)
    positives = xp.astype(same, dtype)
    where = xp.ones_like(same)
    if remove_diagonal:
        rows = xp.arange(labels.shape[0], device=_array.device(labels))
        cols = xp.arange(ref.shape[0], device=_array.device(labels))
        where = rows[:, None] != cols[None, :]
        positives = xp.where(where, positives, xp.zeros_like(positives))
    return positives, where


def _check_choice(choices: tuple[str, ...]) -> Any:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; "
                             f"found {value!r}")
        return value

    return check


WHERE = Input("where", "which entries of each row count (False: neither positive nor negative, "
              "e.g. an embedding's similarity with itself); default all", required=False, kind="bool")


# ----------------------------------------------------------------------------------------- NT-Xent


def _supcon(xp: Any, y_pred: Array, z: Pair, pos: Array, valid: Array, temperature: float,
            grad: bool) -> tuple[Array, Any]:
    # denominator="all" (Khosla et al.'s SupCon, L_out): mean_p (LSE_V(z) - z_p), V = P and N.
    # LSE_V is a pair whose log carries the compensated sum's remainder, so a dominant positive
    # (a loss near 0: LSE_V - z_p = log(1 + tiny)) keeps its digits.
    # gradient: (w_k - [k in P]/|P|) / T, w = softmax over V; for a positive the numerator
    #   |P| e_k - S is formed with TwoProduct and TwoSum (exact for one positive per row; with
    #   several, e_k's own rounding limits it where w_k is within rounding of 1/|P|).
    (top, top_lo), log_s, e, s, _ = _lse_parts(xp, z, valid)
    zero = xp.zeros_like(y_pred)
    # LSE - z_p = (M - z_p) + log s with M - z_p from the pairs (exactly 0 for the maximum): the
    # large terms cancel before the small ones are added (a sum of pairs keeps only ~2**-106 of M,
    # too little for a loss of 1e-25)
    d, r = two_sum(xp, top + zero, -z[0])
    d_lo = _finite(xp, r) + (top_lo - _finite(xp, z[1]))
    gap = _add(xp, fast_two_sum(xp, d, d_lo),
               (log_s[0][..., None] + zero, log_s[1][..., None] + zero))
    count = xp.sum(xp.astype(pos, y_pred.dtype), axis=-1)
    count1 = xp.where(count > 0, count, xp.ones_like(count))
    value = xp.sum(xp.where(pos, gap[0] + gap[1], zero), axis=-1) / count1
    if not grad:
        return value, None
    # e_k / T for a negative as exp(d_k + log(1/T)) (1 + r_k): in float32 (JAX without x64) e_k
    # itself may be subnormal, which XLA flushes to zero, where e_k / T is not
    lc = dd_constant(_log_fraction(Fraction(1) / Fraction(temperature)), y_pred)
    d_top, r_top = two_sum(xp, z[0], -(top + zero))
    r_top = _finite(xp, r_top) + (_finite(xp, z[1]) - top_lo)
    h, err = two_sum(xp, d_top, zero + lc[0])
    e_over_t = xp.exp(h) * (1.0 + _finite(xp, err + r_top + lc[1]))
    k = count1[..., None] + zero
    p, pe = two_product(xp, k, e)
    h, r = two_sum(xp, p, -(s[0][..., None] + zero))
    num = h + ((_finite(xp, r) + pe) - s[1][..., None])
    g = xp.where(pos, num / (k * s[0][..., None]) / temperature, e_over_t / s[0][..., None])
    none = (count == 0)[..., None]
    return value, xp.where(valid & ~none, g, zero)


def _ntxent(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, temperature: float,
            denominator: str, where: Array | None) -> tuple[Array, Any]:
    # z = s / T as pairs (s times the exact 1/T: TwoProduct), so T = 0.01 does not turn the rounding
    # of z into a relative error |z| eps of exp(z).
    # value: mean over the positives p of softplus(y_p), y_p = LSE_N(z) - z_p (N: the negatives of
    #   the row); y_p as a pair, and softplus(y) ~ e^y for y << 0 keeps its relative accuracy.
    # gradient: d/ds_p = -sigmoid(y_p) / (|P| T); d/ds_k = w_k sum_p sigmoid(y_p) / (|P| T) for a
    #   negative k, w = softmax over the negatives; products and sums of positive numbers.
    valid = xp.ones_like(y_pred, dtype=xp.bool) if where is None else where
    pos = valid & (y_true == 1)
    neg = valid & (y_true != 1)
    c = dd_constant(Fraction(1) / Fraction(temperature), y_pred)
    z = _scale(xp, y_pred, c)
    if denominator == "all":
        value, g = _supcon(xp, y_pred, z, pos, valid, temperature, grad)
        return _nan_rows(xp, y_pred, value, y_true), g
    lse, e, s, empty = _lse(xp, z, neg)
    y = _add(xp, (lse[0][..., None] + xp.zeros_like(z[0]), lse[1][..., None] + xp.zeros_like(z[0])),
               _neg(z))
    y = (xp.where(empty[..., None], -float("inf") + xp.zeros_like(y[0]), y[0]),
         xp.where(empty[..., None], xp.zeros_like(y[1]), y[1]))
    zero = xp.zeros_like(y_pred)
    count = xp.sum(xp.astype(pos, y_pred.dtype), axis=-1)
    count1 = xp.where(count > 0, count, xp.ones_like(count))
    terms = xp.where(pos, _softplus_pair(xp, (xp.where(pos, y[0], zero), y[1])), zero)
    value = _nan_rows(xp, y_pred, xp.sum(terms, axis=-1) / count1, y_true)
    if not grad:
        return value, None
    sig = xp.where(pos, _sigmoid_pair(xp, (xp.where(pos, y[0], zero), y[1])), zero)
    scale = (count1 * temperature)[..., None]
    weight = e / s[0][..., None] * (1.0 - s[1] / s[0])[..., None]
    g = xp.where(neg, weight * xp.sum(sig, axis=-1, keepdims=True), -sig) / scale
    g = xp.where(pos | neg, g, zero)
    return value, g


NTXENT = LossDef(
    name="ntxent", class_name="NTXent", kernel=_ntxent, targets="binary",
    options=(Option("temperature", 0.07, check_positive,
                    "the temperature T that divides the similarities (> 0; Optax's default)"),
             Option("denominator", "negatives", _check_choice(("negatives", "all")),
                    "``'negatives'``: each positive against the negatives only (NT-Xent, Optax); "
                    "``'all'``: against every valid entry, other positives included (SupCon)")),
    inputs=(WHERE,),
    check_values=_positives_checker("ntxent"),
    aliases=("NTXentLoss", "nt_xent", "info_nce", "InfoNCE", "info_nce_loss", "InfoNCELoss",
             "multiple_negatives_ranking", "MultipleNegativesRankingLoss"),
    doc=r"""NT-Xent / InfoNCE: the contrastive cross-entropy of one row of a similarity matrix.

    Row ``s`` of similarities (cosine or dot products between an anchor and its candidates), ``y_true``
    the 0/1 mask of its positives ``P``, the valid entries that are not positives its negatives ``N``
    (``where`` excludes entries, e.g. the anchor itself), ``z = s / T``:

    .. math:: \ell = \frac{1}{|P|}\sum_{p\in P} \log\Bigl(1 + \sum_{k\in N} e^{z_k - z_p}\Bigr)
              = \frac{1}{|P|}\sum_{p\in P} -\log\frac{e^{z_p}}{e^{z_p} + \sum_{k\in N} e^{z_k}}

    .. math:: \frac{\partial\ell}{\partial s_p} = -\frac{\sigma(y_p)}{|P|\,T},\qquad
              \frac{\partial\ell}{\partial s_k} = \frac{w_k}{|P|\,T}\sum_{p\in P}\sigma(y_p),\quad
              y_p = \log\sum_{k\in N} e^{z_k} - z_p,\ w = \mathrm{softmax}_N(z)

    By default each positive is contrasted with the negatives only (SimCLR's NT-Xent, Optax
    ``ntxent``, pytorch-metric-learning ``NTXentLoss``); with one positive per row it is the
    cross-entropy of the row's logits ``z`` with the positive as the class (InfoNCE, CLIP,
    sentence-transformers' ``MultipleNegativesRankingLoss``, whose ``scale=20`` is
    ``temperature=0.05``). A row without positives gives 0 (gradient 0); a row without negatives
    gives 0.

    With ``denominator="all"`` (Khosla et al.'s supervised contrastive loss, ``L_out``;
    pytorch-metric-learning ``SupConLoss``) each positive is contrasted with every valid entry,
    the other positives included (a row without negatives but with several positives is not 0):

    .. math:: \ell = \frac{1}{|P|}\sum_{p\in P}\Bigl(\log\sum_{k\in P\cup N} e^{z_k} - z_p\Bigr),
              \qquad \frac{\partial\ell}{\partial s_k} = \frac{1}{T}\Bigl(\mathrm{softmax}_{P\cup N}(z)_k
              - \frac{[k\in P]}{|P|}\Bigr)

    Shapes: ``y_pred`` ``(..., n)`` similarities, ``y_true`` ``(..., n)`` 0/1, ``where`` (optional,
    bool) broadcastable to them; returns ``(...)``.

    - In-batch negatives from two embedding matrices ``Q``, ``K`` ``(B, d)`` (positive on the
      diagonal): ``ntxent(eye(B), normalize(Q) @ normalize(K).T)``; symmetric (CLIP):
      ``(ntxent(I, S) + ntxent(I, S.T)) / 2``. Autograd reaches ``Q`` and ``K`` through ``S``.
    - Labels defining the positives (supervised, Optax ``ntxent(embeddings, labels)``): ``y, where =
      pair_masks(labels)``, ``S`` the cosine similarities of the embeddings with themselves. Optax
      averages over all positive pairs, losskit per anchor: Optax's number is
      ``NTXent(reduction="mean_with_sample_weight")(y, S, sample_weight=y.sum(-1), where=where)``.

    Exactness: within 8 ulp of the value and gradient for any temperature (``T = 0.01`` included)
    and for confident rows whose loss is far below eps (e.g. 1e-30, which every peer rounds to 0):
    ``z`` is carried in double length and the loss is ``softplus`` of a double-length argument (for
    ``"all"``, a double-length log-sum-exp minus ``z_p``). With ``"all"`` and several positives in a
    row, a positive's gradient ``softmax_k - 1/|P|`` is limited by the rounding of ``softmax_k``
    where the two nearly cancel (an ulp of ``1/|P|`` rather than of the difference).

    Peers: Optax ``ntxent(embeddings, labels, temperature=0.07)`` (cosine similarity with an epsilon
    of ``finfo.eps``, mean over positive pairs; no ``where``); pytorch-metric-learning
    ``NTXentLoss(temperature=0.07)``; PyTorch has none (an open pull request proposes
    ``F.info_nce_loss``). Khosla et al.'s SupCon form (``log`` of the softmax over *all* other entries,
    other positives included in the denominator) is not this loss: with one positive per row they
    coincide.

    Example (one positive, two negatives, T = 1: log(1 + e^-1 + e^-2) = 0.4076059644443803):

    >>> import losskit
    >>> round(float(losskit.ntxent([[1.0, 0.0, 0.0]], [[1.0, 0.0, -1.0]], temperature=1.0)[0]), 15)
    0.40760596444438
    """)


# ------------------------------------------------------------------------------------------ circle


def _circle(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, gamma: float, margin: float,
            where: Array | None) -> tuple[Array, Any]:
    # Keras's circle loss on one row of cosine similarities s (d = max(1 - s, 0), m = margin):
    #   positives: t_j = gamma (d_j + m)(d_j - m)          (weight max(m + d, 0) = d + m for m >= 0)
    #   negatives: t_k = gamma max(s'_k + m, 0)(s'_k - m)  (s' = min(s, 1): 1 + m - d = s' + m)
    #   value: softplus(LSE_P(t) + LSE_N(t)); each factor exact (TwoSum) and the products in double
    #   length, so gamma = 80 does not multiply their rounding into the exponentials.
    # gradient: sigmoid(A) w_j dt_j/ds_j, w the softmax of t within P or N:
    #   dt_j/ds_j = -2 gamma d_j (positives), 2 gamma s_k on (-m, 1) (negatives), 0 beyond; at the
    #   kinks s = -m and s = 1 the average of the two sides (-gamma m and gamma).
    valid = xp.ones_like(y_pred, dtype=xp.bool) if where is None else where
    pos = valid & (y_true == 1)
    neg = valid & (y_true != 1)
    one = xp.ones_like(y_pred)
    sc = xp.minimum(y_pred, one)
    d = two_sum(xp, one, -sc)  # exact pair: d = 1 - s'
    zero = xp.zeros_like(y_pred)
    a_p = dd_add(xp, d, (zero + margin, zero))
    b_p = dd_add(xp, d, (zero - margin, zero))
    t_p = dd_mul(xp, a_p, b_p)
    a_n = two_sum(xp, sc, zero + margin)
    b_n = two_sum(xp, sc, zero - margin)
    off = a_n[0] < 0
    t_n = dd_mul(xp, (xp.where(off, zero, a_n[0]), xp.where(off, zero, a_n[1])), b_n)
    t_n = (xp.where(off, zero, t_n[0]), xp.where(off, zero, _finite(xp, t_n[1])))
    t_hi, t_e = two_product(xp, xp.where(pos, t_p[0], t_n[0]), zero + gamma)
    t_lo = _finite(xp, t_e + gamma * xp.where(pos, _finite(xp, t_p[1]), t_n[1]))
    lp, ep, sp, emp = _lse(xp, (t_hi, t_lo), pos)
    ln, en, sn, emn = _lse(xp, (t_hi, t_lo), neg)
    either = emp | emn
    total = _add(xp, (xp.where(either, xp.zeros_like(lp[0]), lp[0]), lp[1]),
                   (xp.where(either, xp.zeros_like(ln[0]), ln[0]), ln[1]))
    value = xp.where(either, xp.zeros_like(total[0]), _softplus_pair(xp, total))
    value = _nan_rows(xp, y_pred, value, y_true)
    if not grad:
        return value, None
    sig = xp.where(either, xp.zeros_like(total[0]), _sigmoid_pair(xp, total))[..., None]
    w = xp.where(pos, ep / sp[0][..., None], en / sn[0][..., None])
    dpos = -2.0 * gamma * (d[0] + _finite(xp, d[1]))
    inner = (y_pred > -margin) & (y_pred < 1)
    dneg = xp.where(inner, 2.0 * gamma * y_pred, zero)
    dneg = xp.where(y_pred == -margin, zero - gamma * margin, dneg)
    dneg = xp.where(y_pred == 1, zero + gamma, dneg)
    g = sig * w * xp.where(pos, dpos, dneg)
    return value, xp.where(pos | neg, g, zero)


CIRCLE = LossDef(
    name="circle", class_name="Circle", kernel=_circle, targets="binary",
    options=(Option("gamma", 80.0, check_positive, "the scale of the similarities (> 0)"),
             Option("margin", 0.4, check_nonnegative, "the relaxation margin m (>= 0)")),
    inputs=(WHERE,),
    check_values=_positives_checker("circle"),
    aliases=("CircleLoss",),
    doc=r"""Circle loss (Sun et al., 2020) in Keras's form, on one row of cosine similarities.

    Row ``s`` of cosine similarities of an anchor with its references, ``y_true`` the 0/1 mask of its
    positives ``P``, the valid entries that are not positives its negatives ``N``; ``d = max(1 - s,
    0)``, ``m`` the margin, ``gamma`` the scale:

    .. math:: \ell = \mathrm{softplus}\Bigl(\log\sum_{j\in P} e^{\gamma\,\max(d_j + m, 0)(d_j - m)}
              + \log\sum_{k\in N} e^{\gamma\,\max(1 + m - d_k, 0)(1 - m - d_k)}\Bigr)

    Gradient: ``sigmoid(A) softmax(t)_j dt_j/ds_j`` with ``dt_j/ds_j = -2 gamma d_j`` for a positive
    and ``2 gamma s_k`` for a negative with ``-m < s_k < 1`` (0 outside; the average of the two sides
    exactly at ``s = -m`` or ``s = 1``). A row without positives or without negatives gives 0.

    Shapes: ``y_pred`` ``(..., n)`` similarities, ``y_true`` ``(..., n)`` 0/1 (see
    :func:`pair_masks`), ``where`` (optional, bool) broadcastable; returns ``(...)``.

    Keras's call ``keras.losses.circle(labels, embeddings, ref_labels, ref_embeddings,
    remove_diagonal, gamma, margin)`` is ``circle(y, E @ R.T, where=where, gamma=..., margin=...)``
    with ``y, where = pair_masks(labels, ref_labels, remove_diagonal=...)`` and ``E``, ``R`` the
    L2-normalised embeddings (``R = E`` by default); autograd reaches the embeddings through the
    similarity matrix.

    Exactness: within 8 ulp of the value and gradient; the exponents (up to ``gamma (1 + m)^2``) are
    carried in double length, so a confident row (a loss far below eps) keeps its digits.

    Peers: Keras ``circle``/``Circle`` (same formula and defaults ``gamma=80, margin=0.4``; its
    ``Circle`` class sets a mask so that its mean runs over the rows with a non-zero loss, where
    losskit's ``"sum_over_batch_size"`` divides by the number of rows; and it accepts a negative
    margin, which losskit refuses). pytorch-metric-learning ``CircleLoss(m=0.4, gamma=80)`` is the
    same loss over all pairs of a batch.

    Example (one positive at s = 0.9, one negative at s = 0.1, m = 0.4, gamma = 1:
    softplus((0.1 + 0.4)(0.1 - 0.4) + (0.1 + 0.4)(0.1 - 0.4)) = softplus(-0.3) = 0.5543552444685271):

    >>> import losskit
    >>> round(float(losskit.circle([[1.0, 0.0]], [[0.9, 0.1]], gamma=1.0)[0]), 15)
    0.554355244468527
    """)


# ---------------------------------------------------------------------------------- triplet margin

_DISTANCES = ("pnorm", "euclidean", "cosine")
EMBEDDING = Interval(-2.0**500, 2.0**500, low_open=True, high_open=True)
"""Components of embeddings: finite, below 2**500 (~3e150) in magnitude, so that squares and
products stay finite in float64 (beyond it a distance would overflow to inf - inf = NaN)."""
_PLACEMENTS = ("difference", "sum")


def _distance(xp: Any, a: Array, x: Array, p: float, eps: float, placement: str, kind: str,
              second: bool = False) -> tuple[Pair, Pair, Pair | None]:
    """``(distance, d distance / d a, d distance / d x)`` between the rows of ``a`` and ``x``, as
    pairs; the last only with ``second`` (else None). The p-norm distances are functions of
    ``a - x``, so their derivative with respect to ``x`` is minus that with respect to ``a``
    (exactly: the same pair negated); the cosine distance's is its own (see :func:`_cosine`)."""
    if kind == "cosine":
        one_minus, dcos, dcos_x = _cosine(xp, a, x, second)
        return one_minus, _neg(dcos), (None if dcos_x is None else _neg(dcos_x))
    dist, g = _pnorm_distance(xp, a, x, p, eps, placement, kind)
    return dist, g, (_neg(g) if second else None)


def _pnorm_distance(xp: Any, a: Array, x: Array, p: float, eps: float, placement: str, kind: str
                    ) -> tuple[Pair, Pair]:
    """``(distance, d distance / d a)`` for the p-norm distances (``kind`` "pnorm", "euclidean")."""
    zero = xp.zeros_like(a)
    if kind == "euclidean":
        p = 2.0
    u = two_sum(xp, a, -x)
    u = (u[0], _finite(xp, u[1]))
    if placement == "difference":  # PyTorch: || a - x + eps ||_p
        h, e = two_sum(xp, u[0], zero + eps)
        u = fast_two_sum(xp, h, _finite(xp, e) + u[1])
    if p == 2.0:
        total = _dd_row_sum(xp, dd_mul(xp, u, u))
        if placement == "sum":
            total = dd_add(xp, total, (xp.zeros_like(total[0]) + eps, xp.zeros_like(total[0])))
        dist = _dd_sqrt(xp, total)
        live = dist[0] > 0
        safe = (xp.where(live, dist[0], xp.ones_like(dist[0]))[..., None],
                xp.where(live, dist[1], xp.zeros_like(dist[1]))[..., None])
        safe = (safe[0] + zero, safe[1] + zero)
        g = _dd_div(xp, u, safe)
        return dist, (xp.where(live[..., None], g[0], zero), xp.where(live[..., None], g[1], zero))
    if p == 1.0:
        sign = xp.sign(u[0])
        if placement == "difference":
            total = _dd_row_sum(xp, (sign * u[0], sign * u[1]))
            return total, (sign, zero)
        total = dd_add(xp, _dd_row_sum(xp, u), (xp.zeros_like(u[0][..., 0]) + eps,
                                                xp.zeros_like(u[0][..., 0])))
        return total, (zero + 1.0, zero)
    # other powers: working precision (the compute dtype), documented
    v = u[0] + u[1]
    base = xp.abs(v) if placement == "difference" else v
    total = xp.sum(base ** p, axis=-1, keepdims=True) + (eps if placement == "sum" else 0.0)
    dist = total ** (1.0 / p)
    g = xp.sign(v) * xp.abs(v) ** (p - 1.0) if placement == "difference" else v ** (p - 1.0)
    live = dist > 0
    g = xp.where(live, g / xp.where(live, dist, xp.ones_like(dist)) ** (p - 1.0), zero)
    return (dist[..., 0], xp.zeros_like(dist[..., 0])), (g, zero)


def _cosine(xp: Any, a: Array, x: Array, second: bool = False) -> tuple[Pair, Pair, Pair | None]:
    """``(1 - cos(a, x), d cos / d a, d cos / d x)`` per row, as pairs (the last only with
    ``second``, else None: ``(a |x|^2 - (a.x) x) / (|x|^3 |a|)``, the same formula with the roles
    swapped, from the same dot products).

    ``a.a``, ``x.x`` and ``a.x`` are double-length dot products, so ``1 - cos`` of nearly parallel
    vectors keeps its digits (to about 2**-100 of 1); the gradient ``(x |a|^2 - (a.x) a) / (|a|^3 |x|)``
    has its numerator in double length (it cancels for nearly parallel vectors). A zero vector has
    cosine 0 (gradient 0), as PyTorch's clamped norms give.
    """
    qa, qx, dot = _dd_dot(xp, a, a), _dd_dot(xp, x, x), _dd_dot(xp, a, x)
    norm = _dd_sqrt(xp, dd_mul(xp, qa, qx))
    live = norm[0] > 0
    one = xp.ones_like(norm[0])
    safe = (xp.where(live, norm[0], one), xp.where(live, norm[1], xp.zeros_like(one)))
    cos = _dd_div(xp, dot, safe)
    cos = (xp.where(live, cos[0], 0 * one), xp.where(live, cos[1], 0 * one))
    one_minus = dd_add(xp, (one, 0 * one), _neg(cos))
    zero = xp.zeros_like(a)

    def row(v: Pair) -> Pair:
        return v[0][..., None] + zero, v[1][..., None] + zero

    def grad(u: Array, v: Array, qu: Pair) -> Pair:  # d cos / d u = (v |u|^2 - (u.v) u) / (|u|^3 |v|)
        num = dd_add(xp, dd_mul(xp, (v, zero), row(qu)), _neg(dd_mul(xp, row(dot), (u, zero))))
        den = dd_mul(xp, row(safe), row((xp.where(live, qu[0], one), xp.where(live, qu[1], 0 * one))))
        g = _dd_div(xp, num, den)
        return xp.where(live[..., None], g[0], zero), xp.where(live[..., None], g[1], zero)

    return one_minus, grad(a, x, qa), (grad(x, a, qx) if second else None)


def _triplet(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, margin: float, p: float,
             eps: float, swap: bool, eps_placement: str, distance_function: str,
             negative: Array, wrt: tuple[str, ...] = (), widened: bool = False) -> Any:
    # value: max(0, d(a, pos) - d(a, neg) + margin), a = y_pred, pos = y_true; with swap, d(a, neg)
    #   is replaced by d(pos, neg) where that is smaller (PyTorch's "distance swap").
    #   The distances are double-length pairs (exact differences, squares and sums; a Newton-corrected
    #   square root), and margin + d_ap - d_an is summed from them in double length: a hinge that
    #   cancels keeps its digits. Other powers than 1 and 2: working precision (see the docstring).
    # gradient: slope * (d d_ap/da - d d_an/da) (the second term absent when the swap chose
    #   d(pos, neg)), slope = 1 inside the margin, 1/2 on it, 0 outside; the difference in double
    #   length (it cancels when pos and neg are close).
    # gradients of the positive and the negative (wrt "y_true", "negative"), from the same distances:
    #   d/dpos = slope (dD(a, pos)/dpos - [swapped] dD(pos, neg)/dpos)   (double-length difference)
    #   d/dneg = -slope ([not swapped] dD(a, neg)/dneg + [swapped] dD(pos, neg)/dneg)  (one term)
    #   with dD(a, x)/dx = -dD(a, x)/da for the p-norms (functions of a - x + eps or of sum (a - x)^p)
    #   and the cosine's own dcos/dx; eps sits inside the difference or the sum, as in the value.
    p_eff = 2.0 if distance_function == "euclidean" else p
    if (_tier_ok(y_pred, widened) and distance_function != "cosine"
            and (p_eff == 2.0 or (p_eff == 1.0 and eps_placement == "difference"))):
        return _triplet_tier(y_true, y_pred, negative, grad=grad, margin=margin, p=p_eff, eps=eps,
                             swap=swap, placement=eps_placement, wrt=tuple(wrt),
                             opts={"p": p, "eps": eps, "swap": swap, "eps_placement": eps_placement,
                                   "distance_function": distance_function})
    more = bool(wrt)
    d_ap, g_ap, s_ap = _distance(xp, y_pred, y_true, p, eps, eps_placement, distance_function, more)
    d_an, g_an, s_an = _distance(xp, y_pred, negative, p, eps, eps_placement, distance_function, more)
    use_an = xp.ones_like(d_an[0], dtype=xp.bool)
    g_pn = s_pn = None
    if swap:
        d_pn, g_pn, s_pn = _distance(xp, y_true, negative, p, eps, eps_placement, distance_function,
                                     more)
        use_an = (d_an[0] < d_pn[0]) | ((d_an[0] == d_pn[0]) & (d_an[1] <= d_pn[1]))
        d_an = (xp.where(use_an, d_an[0], d_pn[0]), xp.where(use_an, d_an[1], d_pn[1]))
    diff = dd_add(xp, d_ap, _neg(d_an))
    h, e = two_sum(xp, diff[0], xp.zeros_like(diff[0]) + margin)
    m = h + (_finite(xp, e) + diff[1])
    m = xp.where(xp.isnan(diff[0]), diff[0], m)
    value = xp.maximum(m, xp.zeros_like(m))
    if not grad:
        return value, None
    zero = xp.zeros_like(y_pred)
    keep = use_an[..., None]
    g_neg = (xp.where(keep, g_an[0], zero), xp.where(keep, g_an[1], zero))
    g = dd_add(xp, g_ap, _neg(g_neg))
    slope = kink_slope(xp, m)[..., None]
    nan = xp.isnan(m)[..., None]

    def finish(pair: Pair) -> Array:
        out = slope * (pair[0] + pair[1])
        return xp.where(nan, m[..., None] + out, out)

    if not wrt:
        return value, finish(g)
    if s_ap is None or s_an is None:  # not reached: _distance gives them when wrt is given
        raise RuntimeError("triplet_margin: the distances' second gradients are missing")
    others = []
    for name in wrt:
        if name == "y_true":
            pos = s_ap
            if g_pn is not None:
                pos = dd_add(xp, s_ap, _neg((xp.where(keep, zero, g_pn[0]),
                                             xp.where(keep, zero, g_pn[1]))))
            others.append(finish(pos))
        elif name == "negative":
            neg = s_an if s_pn is None else (xp.where(keep, s_an[0], s_pn[0]),
                                             xp.where(keep, s_an[1], s_pn[1]))
            others.append(finish(_neg(neg)))
        else:
            raise ValueError(f"triplet_margin: no gradient with respect to {name!r}")
    return value, finish(g), tuple(others)


# ------------------------------------------------------------------ the float32 tier (plain float64)
#
# float32 (and float16) input is computed in float64. Where the error analysis below shows plain
# float64 arithmetic lands within a few float32 ulps, the rows take it (a handful of passes); the
# rows where it cannot promise that (a hinge within rounding of 0, a gradient whose two terms
# cancel, a tie of the swap, nearly parallel vectors for 1 - cos) are recomputed by the
# double-length kernels above. NumPy arrays only (the row selection needs concrete values). With the
# compiled kernels built, float32 input of triplet_margin (p 2, or p 1 with eps in the difference) and
# cosine_embedding takes _cpu.embed instead (the same argument, in C: _cpu.c above triplet_rows), and
# this tier serves float16 input and installs without the compiled kernels.
#
# Error argument. Inputs are float32 values held in float64 (24-bit significands): ``a_i - x_i`` is
# exact in float64 unless the exponents differ by more than 29 bits, and then rounded once, so with
# eps added u_i carries a relative error below 2**-52. A sum of n non-negative terms (squares, |u_i|)
# has a relative error below (n + 2) 2**-53 (recursive summation; NumPy's pairwise is better), a square
# root halves it, a division adds 2**-53: the distances and each term u_i / D of their gradients are
# within rho = (n + 8) 2**-53 relative. A dot product of signed terms is within (n + 2) 2**-53 |a||x|
# (Cauchy-Schwarz), so cos is within 4 rho absolute. A difference A - B of such quantities is within
# rho (|A| + |B|) absolute; it is accepted when that is below 2**-22 of the result (4 float32 ulps,
# with the final rounding to float32: 4.5 ulp < 8), else the row is recomputed in double length.
_ACCEPT = 2.0**22


def _rows(*arrays: Array) -> list[Array]:
    n = arrays[0].shape[-1]
    return [a.reshape(-1, n) for a in arrays]


def _tier_ok(y_pred: Array, widened: bool) -> bool:
    return widened and isinstance(y_pred, np.ndarray) and y_pred.dtype == np.float64


def _plain_distance(a: Array, x: Array, p: float, eps: float, placement: str) -> tuple[Array, Array]:
    """``(D, dD/da)`` in plain float64 for p in (1, 2) (rows of 2-D arrays); ``dD/dx = -dD/da``."""
    u = a - x
    if placement == "difference" and eps:
        u += eps
    if p == 2.0:
        s = np.einsum("ij,ij->i", u, u)
        if placement == "sum":
            s += eps
        d = np.sqrt(s)
        safe = np.where(d > 0, d, 1.0)
        u /= safe[:, None]
        return d, u
    return np.abs(u).sum(axis=-1), np.sign(u)  # p = 1 with the eps inside: a sum of |u_i| >= 0


def _recompute(bad: Array, out: list[Array], kernel: Any, y_true: Array, y_pred: Array,
               inputs: dict[str, Array], **opts: Any) -> None:
    """The rows ``bad`` of the results ``out`` (value, gradient, others...) from the double-length
    ``kernel``, written in place."""
    if not bad.any():
        return
    fixed = kernel(np, y_true[bad], y_pred[bad], **{k: v[bad] for k, v in inputs.items()}, **opts)
    flat = [fixed[0], fixed[1], *(fixed[2] if len(fixed) > 2 else ())]
    for target, value in zip(out, flat, strict=False):
        if target is not None and value is not None:
            target[bad] = value


def _triplet_tier(y_true: Array, y_pred: Array, negative: Array, *, grad: bool, margin: float,
                  p: float, eps: float, swap: bool, placement: str, wrt: tuple[str, ...],
                  opts: dict[str, Any]) -> Any:
    shape = y_pred.shape[:-1]
    t, a, neg = _rows(y_true, y_pred, negative)
    n = a.shape[-1]
    rho = (n + 8) * 2.0**-53
    d_ap, g_ap = _plain_distance(a, t, p, eps, placement)
    d_an, g_an = _plain_distance(a, neg, p, eps, placement)
    bad = (d_ap == 0) | (d_an == 0)
    use = np.ones(d_an.shape, dtype=bool)
    g_pn = None
    if swap:
        d_pn, g_pn = _plain_distance(t, neg, p, eps, placement)
        use = d_an <= d_pn
        bad |= (np.abs(d_an - d_pn) <= 2 * rho * (d_an + d_pn)) | (d_pn == 0)
        d_an = np.where(use, d_an, d_pn)
    m = (d_ap - d_an) + margin
    bad |= ~(np.abs(m) > _ACCEPT * (rho + 2.0**-51) * (d_ap + d_an + abs(margin)))  # NaN too
    value = np.maximum(m, 0.0)
    out: list[Array] = [value, None]
    if grad:
        live = (m > 0)[:, None]
        g_neg = g_an if g_pn is None else np.where(use[:, None], g_an, 0.0)
        g = g_ap - g_neg
        cancel = np.abs(g) <= _ACCEPT * (rho + 2.0**-50) * (np.abs(g_ap) + np.abs(g_neg))
        bad |= (live & cancel & (g_neg != 0)).any(axis=-1)
        out[1] = np.where(live, g, 0.0)
        for name in wrt:
            if name == "y_true":  # -dD(a,p)/da - [swapped] dD(p,n)/dp
                if g_pn is None:
                    gp = -g_ap
                else:
                    other = np.where(use[:, None], 0.0, g_pn)
                    gp = -g_ap - other
                    cancel = np.abs(gp) <= _ACCEPT * (rho + 2.0**-50) * (np.abs(g_ap) + np.abs(other))
                    bad |= (live & cancel & (other != 0)).any(axis=-1)
                out.append(np.where(live, gp, 0.0))
            elif name == "negative":  # -dD(a,n)/dn = dD(a,n)/da, or -dD(p,n)/dn = dD(p,n)/dp
                gn = g_an if g_pn is None else np.where(use[:, None], g_an, g_pn)
                out.append(np.where(live, gn, 0.0))
            else:
                raise ValueError(f"triplet_margin: no gradient with respect to {name!r}")
    _recompute(bad, out, _triplet, t, a, {"negative": neg}, grad=grad, margin=margin, wrt=wrt,
               **opts)
    value = out[0].reshape(shape)
    if not grad:
        return value, None
    grads = [g.reshape((*shape, n)) for g in out[1:]]
    return (value, grads[0], tuple(grads[1:])) if wrt else (value, grads[0])


def _cosine_embedding_tier(y_true: Array, y_pred: Array, x2: Array, *, grad: bool, margin: float,
                           wrt: tuple[str, ...]) -> Any:
    shape = y_pred.shape[:-1]
    a, x = _rows(y_pred, x2)
    y = y_true.reshape(-1)
    n = a.shape[-1]
    rho = (n + 8) * 2.0**-53
    qa, qx, dot = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", a, x)
    norm = np.sqrt(qa * qx)
    bad = ~(norm > 0)
    safe = np.where(bad, 1.0, norm)
    cos = dot / safe
    similar = y == 1
    hinge = cos - margin
    value = np.where(similar, 1.0 - cos, np.maximum(hinge, 0.0))
    err = 4 * rho + 2.0**-52 * (1 + abs(margin))
    bad |= ~(np.abs(np.where(similar, 1.0 - cos, hinge)) > _ACCEPT * err)  # NaN too
    out: list[Array] = [value, None]
    if grad:
        slope = np.where(similar, -1.0, (hinge > 0).astype(np.float64))[:, None]
        live = slope != 0

        def dcos(u: Array, v: Array, qu: Array) -> Array:  # (v |u|^2 - (u.v) u) / (|u|^3 |v|)
            t1, t2 = v * qu[:, None], dot[:, None] * u
            num = t1 - t2
            cancel = np.abs(num) <= _ACCEPT * 2 * rho * (np.abs(t1) + np.abs(t2))
            nonlocal bad
            bad |= (live & cancel).any(axis=-1)
            return slope * num / (np.where(qu > 0, qu, 1.0) * safe)[:, None]

        out[1] = dcos(a, x, qa)
        if wrt:
            if tuple(wrt) != ("x2",):
                raise ValueError(f"cosine_embedding: no gradient with respect to {wrt!r}")
            out.append(dcos(x, a, qx))
    _recompute(bad, out, _cosine_embedding, y, a, {"x2": x}, grad=grad, margin=margin, wrt=wrt)
    value = out[0].reshape(shape)
    if not grad:
        return value, None
    grads = [g.reshape((*shape, n)) for g in out[1:]]
    return (value, grads[0], tuple(grads[1:])) if wrt else (value, grads[0])


def _margin_ranking_tier(y_true: Array, y_pred: Array, x2: Array, *, grad: bool, margin: float,
                         wrt: tuple[str, ...]) -> Any:
    # x2 - x1 of float32 values: exact, or rounded once (relative 2**-53) when the exponents are
    # far apart; margin + y d: one more rounding: |error| <= 2**-52 (|margin| + |d|) <= 2**-52
    # (2 |margin| + |m|). Accepted where that is below 2**-22 |m|, which holds for
    # |m| > 2**-28 |margin| (m = 0 at margin 0, the kink, goes to the double-length kernel).
    shape = y_pred.shape[:-1]
    t, a, x = _rows(y_true, y_pred, x2)
    n = a.shape[-1]
    m = x - a
    m *= t
    m += margin
    bad = ~(np.abs(m) > 2.0**-28 * abs(margin)).all(axis=-1)  # NaN too
    value = np.maximum(m, 0.0).mean(axis=-1)
    out: list[Array] = [value, None]
    if grad:
        g = np.where(m > 0, -t, 0.0) / n
        out[1] = g
        if wrt:
            if tuple(wrt) != ("x2",):
                raise ValueError(f"margin_ranking: no gradient with respect to {wrt!r}")
            out.append(-g)
    _recompute(bad, out, _margin_ranking, t, a, {"x2": x}, grad=grad, margin=margin, wrt=wrt)
    value = out[0].reshape(shape)
    if not grad:
        return value, None
    grads = [g.reshape((*shape, n)) for g in out[1:]]
    return (value, grads[0], tuple(grads[1:])) if wrt else (value, grads[0])


TRIPLET_MARGIN = LossDef(
    name="triplet_margin", class_name="TripletMargin", kernel=_triplet, precision_aware=True,
    options=(Option("margin", 1.0, check_real, "the margin by which d(a, n) should exceed d(a, p)"),
             Option("p", 2.0, check_positive, "the norm degree of the distance (> 0; Optax's "
                    "``norm_degree``)"),
             Option("eps", 1e-6, check_nonnegative,
                    "the small constant of the distance (>= 0; where it goes: ``eps_placement``)"),
             Option("swap", False, check_bool,
                    "whether d(a, n) is replaced by d(p, n) where that is smaller (PyTorch's "
                    "distance swap)"),
             Option("eps_placement", "difference", _check_choice(_PLACEMENTS),
                    "``'difference'``: ``||a - x + eps||_p`` (PyTorch); ``'sum'``: "
                    "``(sum (a - x)^p + eps)^(1/p)`` (Optax, no absolute value)"),
             Option("distance_function", "pnorm", _check_choice(_DISTANCES),
                    "``'pnorm'`` (the distance above), ``'euclidean'`` (it with p = 2) or "
                    "``'cosine'`` (``1 - cos(a, x)``; p, eps and eps_placement unused)")),
    option_aliases={"norm_degree": "p"},
    domain=lambda opts: {"y_true": EMBEDDING, "y_pred": EMBEDDING},
    inputs=(Input("negative", "the negative embeddings, shaped like y_pred (the anchors)",
                  differentiable=True),),
    differentiable_target=True,
    aliases=(Alias("triplet_margin_loss"), "TripletMarginLoss", Alias("triplet_margin_with_distance_loss"),
             "TripletMarginWithDistanceLoss",
             Alias("optax.triplet_margin_loss", eps_placement="sum",
                   note="Optax's triplet_margin_loss adds eps to the distances' sum of powers")),
    doc=r"""Triplet margin loss of anchor, positive and negative embeddings.

    ``y_pred`` holds the anchors ``a``, ``y_true`` the positives ``p`` (the embeddings each anchor
    should be close to: a triplet has no labels) and the input array ``negative`` the negatives
    ``n``, each ``(..., d)``:

    .. math:: \ell = \max\bigl(0,\ D(a, p) - D(a, n) + \text{margin}\bigr),\qquad
              \frac{\partial \ell}{\partial a} = [\,\ell > 0\,]\Bigl(\frac{\partial D(a,p)}{\partial a}
              - \frac{\partial D(a,n)}{\partial a}\Bigr)

    with ``D(a, x) = ||a - x + eps||_p`` (``eps_placement="difference"``, PyTorch's
    ``pairwise_distance``; ``dD/da = sign(u)|u|^(p-1) / D^(p-1)``, ``u = a - x + eps``) or
    ``D = (sum_i (a_i - x_i)^p + eps)^(1/p)`` (``"sum"``, Optax's; no absolute value, so an odd
    ``p`` is not a norm), or ``D = 1 - cos(a, x)`` (``distance_function="cosine"``). With ``swap``,
    ``D(a, n)`` is replaced by ``D(p, n)`` where that is smaller. Exactly on the hinge the gradient is
    half the slope (the average of the two sides). The positive and negative are differentiated too
    (``dD(a, x)/dx = -dD(a, x)/da`` for the p-norm distances, the cosine's own derivative for
    ``"cosine"``; with ``swap``, through ``D(p, n)`` where it is chosen), with the same exactness.

    Shapes: ``y_pred``, ``y_true`` and ``negative`` ``(..., d)``; returns ``(...)``.

    Exactness: for ``p = 1`` and ``p = 2`` and the cosine distance, within 8 ulp of the value and
    gradient, also where the hinge cancels (``D(a, n) - D(a, p)`` within rounding of the margin) and
    for nearly parallel vectors (``1 - cos`` near 0): the distances are double-length. Other powers
    are computed in the compute precision (float64): within a few ulp of each distance, so a loss that
    cancels near the hinge has an error relative to the distances, not to itself. Components of
    ``y_pred``, ``y_true`` and ``negative`` must be finite and below 2**500 (~3e150) in magnitude
    (``ValueError`` otherwise): beyond, squares overflow and a distance would be ``inf - inf``.

    Peers: PyTorch ``TripletMarginLoss(margin=1.0, p=2.0, eps=1e-06, swap=False)`` /
    ``F.triplet_margin_loss(anchor, positive, negative, ...)`` (``eps_placement="difference"``, the
    default); ``TripletMarginWithDistanceLoss(distance_function=..., margin, swap)`` with the default
    distance (``pairwise_distance``: ``distance_function="euclidean"``) or ``1 - cosine_similarity``
    (``"cosine"``; PyTorch clamps the norms at 1e-8, losskit does not). Optax
    ``triplet_margin_loss(anchors, positives, negatives, norm_degree=2, margin=1.0, eps=1e-6)`` is
    ``eps_placement="sum"`` (``norm_degree`` is accepted as an alias of ``p``). The two peers differ
    by about ``eps`` in the distances: the choice is explicit rather than a silent difference.

    Example (a = (0, 0), p = (3, 4), n = (6, 8), eps = 0: max(0, 5 - 10 + 1) = 0; margin 6: 1):

    >>> import losskit
    >>> float(losskit.triplet_margin([[3.0, 4.0]], [[0.0, 0.0]], negative=[[6.0, 8.0]], eps=0.0,
    ...                              margin=6.0)[0])
    1.0
    """)


# -------------------------------------------------------------------------------- cosine embedding


def _cosine_embedding(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, margin: float,
                      x2: Array, wrt: tuple[str, ...] = (), widened: bool = False) -> Any:
    # value: 1 - cos(x1, x2) for y = 1, max(0, cos(x1, x2) - margin) for y = -1 (x1 = y_pred)
    #   cos, 1 - cos and cos - margin from double-length dot products (see _cosine)
    # gradient: -dcos/dx1 (y = 1); slope * dcos/dx1 (y = -1), slope 1, 1/2 on the hinge, 0 outside;
    #   wrt x2 the same with dcos/dx2 (the cosine is symmetric; _cosine forms both from one set of
    #   double-length dot products)
    if _tier_ok(y_pred, widened):
        return _cosine_embedding_tier(y_true, y_pred, x2, grad=grad, margin=margin, wrt=tuple(wrt))
    if wrt and tuple(wrt) != ("x2",):
        raise ValueError(f"cosine_embedding: no gradient with respect to {wrt!r}")
    one_minus, dcos, dcos2 = _cosine(xp, y_pred, x2, bool(wrt))
    cos = dd_add(xp, (xp.ones_like(one_minus[0]), xp.zeros_like(one_minus[0])), _neg(one_minus))
    h, e = two_sum(xp, cos[0], xp.zeros_like(cos[0]) - margin)
    hinge = h + (_finite(xp, e) + cos[1])
    y = xp.astype(y_true, y_pred.dtype)
    similar = y == 1
    value = xp.where(similar, one_minus[0] + one_minus[1], xp.maximum(hinge, xp.zeros_like(hinge)))
    value = _nan_rows(xp, y_pred, xp.where(xp.isnan(y), y, value), x2)  # NaN in x1 or x2: NaN
    if not grad:
        return value, None
    slope = kink_slope(xp, hinge)[..., None]

    def finish(pair: Pair) -> Array:
        d = pair[0] + pair[1]
        g = xp.where(similar[..., None], -d, slope * d)
        return xp.where(xp.isnan(value)[..., None], value[..., None] + g, g)

    if dcos2 is None:
        return value, finish(dcos)
    return value, finish(dcos), (finish(dcos2),)


def _row_sign_checker(name: str) -> Any:
    check = sign_checker(name, keras_rule=False)

    def run(xp: Any, y_true: Array, y_pred: Array, **opts: Any) -> None:
        check(xp, y_true, y_pred, **opts)

    return run


COSINE_EMBEDDING = LossDef(
    name="cosine_embedding", class_name="CosineEmbedding", kernel=_cosine_embedding,
    precision_aware=True,
    targets="row_sign", sparse=True,
    options=(Option("margin", 0.0, check_real, "the cosine below which a dissimilar pair costs "
                    "nothing (PyTorch suggests 0 to 0.5)"),),
    inputs=(Input("x2", "the second embeddings of each pair, shaped like y_pred", differentiable=True),),
    check_values=_row_sign_checker("cosine_embedding"),
    aliases=("cosine_embedding_loss", "CosineEmbeddingLoss"),
    doc=r"""Cosine embedding loss (PyTorch's ``CosineEmbeddingLoss``) of pairs of embeddings.

    ``y_pred`` holds the first embeddings ``x1`` ``(..., d)``, the input array ``x2`` the second
    ``(..., d)`` and ``y_true`` one label per pair ``(...)``: 1 (similar) or -1 (dissimilar):

    .. math:: \ell = \begin{cases} 1 - \cos(x_1, x_2) & y = 1\\
              \max(0,\ \cos(x_1, x_2) - \text{margin}) & y = -1\end{cases},\qquad
              \frac{\partial\cos}{\partial x_1} = \frac{x_2\,|x_1|^2 - (x_1\cdot x_2)\,x_1}
              {|x_1|^3\,|x_2|}

    Exactly on the hinge the gradient is half the slope. Labels other than -1 and 1 raise a
    ``ValueError``. ``x2`` is differentiated too (the same formula with ``x1`` and ``x2`` swapped,
    from the same double-length dot products).

    Shapes: ``y_pred`` and ``x2`` ``(..., d)``, ``y_true`` ``(...)`` (or ``(..., 1)``); returns
    ``(...)``.

    Exactness: within 8 ulp of the value and gradient; ``1 - cos`` of nearly parallel vectors (which
    PyTorch's ``1 - cos`` loses entirely below about 1e-8 in float32) is computed from double-length
    dot products and keeps its digits down to about 2**-100.

    Peers: PyTorch ``CosineEmbeddingLoss(margin=0.0)`` / ``F.cosine_embedding_loss(x1, x2, y)`` adds
    ``1e-12`` to the squared norms (a relative difference of ``1e-12 / |x|^2``); a zero vector has
    cosine 0 in both. Keras, Optax and scikit-learn have none.

    Example (orthogonal vectors: 1 - 0 = 1 for y = 1; max(0, 0 - 0.5) = 0 for y = -1):

    >>> import losskit
    >>> losskit.cosine_embedding([1.0, -1.0], [[1.0, 0.0], [1.0, 0.0]], x2=[[0.0, 2.0], [0.0, 2.0]],
    ...                          margin=0.5).tolist()
    [1.0, 0.0]
    """)


# ---------------------------------------------------------------------------------- margin ranking


def _margin_ranking(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, margin: float, x2: Array,
                    wrt: tuple[str, ...] = (), widened: bool = False) -> Any:
    # value: mean_i max(0, margin - y_i (x1_i - x2_i)); margin + (y x2 - y x1) with the difference
    #   exact (TwoSum), so a margin that cancels keeps its digits (one rounding)
    # gradient: -y_i / n inside the margin, -y_i / (2n) on it, 0 outside; wrt x2 its negative (exact)
    if _tier_ok(y_pred, widened):
        return _margin_ranking_tier(y_true, y_pred, x2, grad=grad, margin=margin, wrt=tuple(wrt))
    if wrt and tuple(wrt) != ("x2",):
        raise ValueError(f"margin_ranking: no gradient with respect to {wrt!r}")
    n = y_pred.shape[-1]
    m = shifted_difference(xp, margin, y_true * x2, y_true * y_pred)
    value = xp.mean(xp.maximum(m, xp.zeros_like(m)), axis=-1)
    if not grad:
        return value, None
    g = xp.where(xp.isnan(m), m, -y_true * kink_slope(xp, m)) / n
    return (value, g, (-g,)) if wrt else (value, g)


MARGIN_RANKING = LossDef(
    name="margin_ranking", class_name="MarginRanking", kernel=_margin_ranking, targets="sign",
    precision_aware=True,
    options=(Option("margin", 0.0, check_real, "the margin by which the preferred score should win"),),
    inputs=(Input("x2", "the second scores, shaped like y_pred", differentiable=True),),
    check_values=sign_checker("margin_ranking", keras_rule=False),
    aliases=("margin_ranking_loss", "MarginRankingLoss"),
    doc=r"""Margin ranking loss (PyTorch's ``MarginRankingLoss``) of pairs of scores.

    ``y_pred`` holds the first scores ``x1``, the input array ``x2`` the second and ``y_true`` the
    labels: 1 where ``x1`` should rank higher, -1 where ``x2`` should. Averaged over the last axis:

    .. math:: \ell = \frac1n\sum_i \max\bigl(0,\ -y_i(x_{1,i} - x_{2,i}) + \text{margin}\bigr),\qquad
              \frac{\partial\ell}{\partial x_{1,i}} = -\frac{y_i}{n}\,[\,\cdot > 0\,]

    Exactly on the hinge the gradient is half the slope. The gradient with respect to ``x2`` (also
    given) is the negative of that with respect to ``x1``.
    Shapes: ``y_true``, ``y_pred`` and ``x2`` ``(..., n)``; returns ``(...)``.

    Exactness: ``x2 - x1`` is exact (TwoSum) and the margin is added with one rounding, so the loss is
    within an ulp also where the difference cancels the margin.

    Peers: PyTorch ``MarginRankingLoss(margin=0.0)`` / ``F.margin_ranking_loss(x1, x2, y)``: the same
    per-element value (reduced over everything; losskit's per-sample value is the mean over the last
    axis). Labels other than -1 and 1 raise a ``ValueError`` (PyTorch accepts any number).

    Example (by hand: (max(0, -(2 - 1) + 0.5) + max(0, (2 - 1) + 0.5)) / 2 = 0.75):

    >>> import losskit
    >>> float(losskit.margin_ranking([[1.0, -1.0]], [[2.0, 2.0]], x2=[[1.0, 1.0]], margin=0.5)[0])
    0.75
    """)


# --------------------------------------------------------------------------------- hinge embedding


def _hinge_embedding(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, margin: float
                     ) -> tuple[Array, Any]:
    # value: mean_i (x_i if y_i = 1, max(0, margin - x_i) if y_i = -1); one rounding
    # gradient: 1/n (y = 1); -1/n inside the margin, -1/(2n) on it, 0 outside (y = -1)
    n = y_pred.shape[-1]
    m = margin - y_pred
    similar = y_true == 1
    value = xp.mean(xp.where(similar, y_pred, xp.maximum(m, xp.zeros_like(m))), axis=-1)
    value = xp.where(xp.any(xp.isnan(y_true), axis=-1), xp.full_like(value, float("nan")), value)
    if not grad:
        return value, None
    g = xp.where(similar, xp.ones_like(m), -kink_slope(xp, m))
    return value, xp.where(xp.isnan(m), m, g) / n


HINGE_EMBEDDING = LossDef(
    name="hinge_embedding", class_name="HingeEmbedding", kernel=_hinge_embedding, targets="sign",
    options=(Option("margin", 1.0, check_real, "the distance beyond which a dissimilar pair costs "
                    "nothing"),),
    check_values=sign_checker("hinge_embedding", keras_rule=False),
    aliases=("hinge_embedding_loss", "HingeEmbeddingLoss"),
    doc=r"""Hinge embedding loss (PyTorch's ``HingeEmbeddingLoss``) of distances.

    ``y_pred`` holds distances ``x`` (e.g. ``|x1 - x2|``), ``y_true`` labels 1 (similar: the distance
    itself is the loss) or -1 (dissimilar: penalised below the margin). Averaged over the last axis:

    .. math:: \ell = \frac1n\sum_i \begin{cases} x_i & y_i = 1\\ \max(0,\ \text{margin} - x_i) &
              y_i = -1\end{cases},\qquad \frac{\partial\ell}{\partial x_i} = \frac1n
              \begin{cases} 1 \\ -[\,\text{margin} > x_i\,]\end{cases}

    Exactly on the hinge the gradient is ``-1/(2n)``. Shapes: ``y_true``, ``y_pred`` ``(..., n)``;
    returns ``(...)``. One rounding per element (within an ulp before the mean).

    Peers: PyTorch ``HingeEmbeddingLoss(margin=1.0)`` / ``F.hinge_embedding_loss(x, y)``: the same
    per-element value (reduced over everything; losskit's per-sample value is the mean over the last
    axis). Labels other than -1 and 1 raise a ``ValueError`` (PyTorch gives such elements 0 or a
    partial term silently).

    Example (by hand: (0.3 + max(0, 1 - 0.25)) / 2 = 0.525):

    >>> import losskit
    >>> float(losskit.hinge_embedding([[1.0, -1.0]], [[0.3, 0.25]])[0])
    0.525
    """)
