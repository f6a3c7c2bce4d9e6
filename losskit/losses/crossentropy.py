"""Cross-entropies: binary, categorical and sparse categorical, from probabilities or logits.

No probability is ever clipped. Every value is a sum of non-negative terms computed in log space, and
a confidently correct row keeps its tiny loss: the log-sum-exp and the renormalised probabilities add
the *other* classes directly (``log1p`` of their sum) instead of forming ``1 + tiny`` and subtracting.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from .. import _array
from .._numerics import (
    check_label_kept,
    exp_difference,
    log1p,
    log_both,
    log_ratio_plus_one,
    masked_mean,
    restrict_to_kept,
    sigmoid_pair,
    smooth_labels,
    softplus_pair,
    sum_others,
    xmul,
    zero_excluded,
)
from ._core import (
    AXIS,
    FROM_LOGITS,
    LABEL_SMOOTHING,
    UNIT,
    Input,
    Interval,
    LossDef,
    Option,
    check_optional_int,
    check_weights,
    class_index_checker,
    weights_array,
)
from ._registry import Alias

Array = Any


# -------------------------------------------------------------------------------------- binary


def _bce(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, from_logits: bool,
         label_smoothing: float, pos_weight: float | tuple[float, ...] | None = None,
         where: Array | None = None) -> tuple[Array, Any]:
    y, ls = y_true, label_smoothing
    t = y * (1.0 - ls) + 0.5 * ls if ls else y
    # 1 - t formed directly: for a hard label it is then exact (0.5 ls, or 1 - ls/2 rounded once),
    # where 1 - t would carry t's rounding error relative to a small 1 - t
    q = (1.0 - y) * (1.0 - ls) + 0.5 * ls if ls else 1.0 - y
    n = y_pred.shape[-1]
    g = None
    pw = None if pos_weight is None else _per_class(xp, pos_weight, y_pred, "pos_weight")
    pt = t if pw is None else t * pw  # the coefficient of the positive term
    if from_logits:
        # value: t softplus(-x) + (1-t) softplus(x)        gradient: sigmoid(x) - t, as
        # (1-y) sigmoid(x) - y sigmoid(-x) + ls (y - 1/2): a hard label takes one exact term, and the
        # smoothing shift ls (y - 1/2) is exact, where t itself is rounded
        # with pos_weight w: w t softplus(-x) + (1-t) softplus(x), gradient (1-t) sigmoid(x) - w t
        # sigmoid(-x) (one exact term for a hard label)
        e = xp.exp(-xp.abs(y_pred))  # shared by softplus(±x) and sigmoid(±x)
        sp_pos, sp_neg = softplus_pair(xp, y_pred, e)
        terms = xmul(xp, pt, sp_neg) + xmul(xp, q, sp_pos)
        if grad:
            sig_pos, sig_neg = sigmoid_pair(xp, y_pred, e)
            if pw is None:
                g = xmul(xp, 1.0 - y, sig_pos) - xmul(xp, y, sig_neg)
                g = g + ls * (y - 0.5) if ls else g
            else:
                g = xmul(xp, q, sig_pos) - xmul(xp, pt, sig_neg)
    else:
        # value: -t log p - (1-t) log(1-p)                 gradient: (p - t) / (p (1-p)), with
        # p - t = (p - y) + ls (y - 1/2) (both exact for hard labels: Sterbenz, and a halving)
        # with pos_weight w: -w t log p - (1-t) log(1-p), gradient (1-t)/(1-p) - w t/p (one term for
        # a hard label; 0 * inf = 0 at p = 0 or 1)
        p = y_pred
        log_p, log_q = log_both(xp, p)
        terms = xmul(xp, pt, -log_p) + xmul(xp, q, -log_q)
        if grad and pw is None:
            diff = (p - y) + ls * (y - 0.5) if ls else p - y
            g = diff / (p * (1.0 - p))
            if not ls:  # the limits at p = 0 or 1 where the numerator vanishes too
                g = xp.where(y == 0, 1.0 / (1.0 - p), xp.where(y == 1, -1.0 / p, g))
        elif grad:
            g = xmul(xp, q, 1.0 / (1.0 - p)) - xmul(xp, pt, 1.0 / p)
    if where is not None:
        return masked_mean(xp, terms, g, where)
    return xp.mean(terms, axis=-1), (g / n if grad else None)


def _per_class(xp: Any, value: float | tuple[float, ...], like: Array, name: str) -> Array:
    """A weight option as an array on ``like``'s last axis; a sequence must have one entry per
    element of that axis."""
    w = weights_array(xp, value, like)
    if w.ndim and w.shape[0] != like.shape[-1]:
        raise ValueError(f"{name} has {w.shape[0]} entries but y_pred has {like.shape[-1]} "
                         f"elements on the axis the loss reduces over; give one {name} per element "
                         f"of that axis (or a single number)")
    return w



WHERE_DOC = ("which elements of ``y_pred`` take part (booleans broadcast to its shape, as Optax's "
             "``where``); None: all")
WHERE = Input("where", WHERE_DOC, required=False, kind="bool")
CLASS_WEIGHT = Option("class_weight", None, check_weights,
                      "None, or one non-negative weight per class that multiplies the class's term "
                      "(PyTorch's ``CrossEntropyLoss(weight=)``); a single number weighs every "
                      "class alike")


def _probability_domain(opts: Mapping[str, Any]) -> dict[str, Interval]:
    return {"y_true": UNIT} if opts["from_logits"] else {"y_true": UNIT, "y_pred": UNIT}


BINARY_CROSSENTROPY = LossDef(
    name="binary_crossentropy", class_name="BinaryCrossentropy", kernel=_bce, targets="binary",
    options=(FROM_LOGITS, LABEL_SMOOTHING, AXIS,
             Option("pos_weight", None, check_weights,
                    "None, or a non-negative weight of the positive term ``t log p``: one number, "
                    "or one per element of ``axis`` (PyTorch's ``BCEWithLogitsLoss(pos_weight=)``)")),
    inputs=(WHERE,), aliases=(
        "bce", "BCE", "BCELoss", Alias("binary_cross_entropy"),
        Alias("BCEWithLogitsLoss", from_logits=True),
        Alias("binary_cross_entropy_with_logits", from_logits=True),
        Alias("sigmoid_binary_cross_entropy", from_logits=True,
              note="per sample the mean over the last axis (Keras); Optax returns every element"),
        Alias("log_loss", note="binary: y_pred the probability of class 1 (predict_proba[:, 1]); for "
                               "(N, K) probabilities with labels use sparse_categorical_crossentropy")),
    domain=_probability_domain,
    doc=r"""Binary cross-entropy, averaged over ``axis``.

    With targets :math:`t = y(1-s) + s/2` (label smoothing :math:`s`):

    .. math:: \ell = \frac{1}{n}\sum_i -t_i \log p_i - (1-t_i)\log(1-p_i),
              \qquad \frac{\partial \ell}{\partial p_i} = \frac{p_i - t_i}{n\,p_i(1-p_i)}

    and from logits :math:`x` (``from_logits=True``), with :math:`p = \sigma(x)`:

    .. math:: \ell = \frac{1}{n}\sum_i t_i\,\mathrm{softplus}(-x_i) + (1-t_i)\,\mathrm{softplus}(x_i),
              \qquad \frac{\partial \ell}{\partial x_i} = \frac{\sigma(x_i) - t_i}{n}

    Shapes: ``y_true`` and ``y_pred`` the same shape (or differing by one trailing axis of size 1);
    returns that shape without ``axis``. ``y_true`` must lie in [0, 1], and so must ``y_pred`` unless
    ``from_logits=True``.

    Differences from Keras: no clipping to [1e-7, 1 - 1e-7], so ``p = 1e-9`` for a positive label costs
    20.72, not 16.12, and its gradient is not zero. A probability of exactly 0 for a positive target
    (or 1 for a negative one) costs ``inf`` with gradient ``-inf`` (``+inf``): the exact limits, never
    NaN. Use ``from_logits=True`` to train: it is exact for logits of any size, including ±inf.

    ``pos_weight`` :math:`w` (a number, or one per element of ``axis``, broadcast like PyTorch's
    ``pos_weight`` along the last axis) multiplies the positive term:
    :math:`-w_i t_i \log p_i - (1-t_i)\log(1-p_i)` (from logits
    :math:`w_i t_i\,\mathrm{softplus}(-x_i) + (1-t_i)\,\mathrm{softplus}(x_i)`), gradient
    :math:`\big((1-t_i)\,\sigma(x_i) - w_i t_i\,\sigma(-x_i)\big)/n` from logits and
    :math:`\big((1-t_i)/(1-p_i) - w_i t_i/p_i\big)/n` from probabilities. It is applied after label
    smoothing (PyTorch has no label smoothing here: pass it smoothed targets to compare), and works
    on probabilities too (PyTorch's ``BCELoss`` has no ``pos_weight``). PyTorch's ``weight`` (per
    element) is ``sample_weight`` with ``reduction="none"`` here.

    ``where`` (booleans broadcast to ``y_pred``'s shape) leaves elements out: the value is the mean
    over the kept elements of each sample, :math:`\frac{1}{|W|}\sum_{i \in W}\ell_i`, the others get
    a zero gradient, and a sample with nothing kept gives 0. (Optax's
    ``sigmoid_binary_cross_entropy`` is elementwise and has no ``where``; this is
    ``jnp.mean(optax.sigmoid_binary_cross_entropy(x, t), axis=-1, where=where)``, except that an
    all-excluded sample gives 0 rather than NaN.)

    Example (by hand: -log(1/2) = log 2 = 0.693147...):

    >>> import losskit
    >>> round(float(losskit.binary_crossentropy([[1.0]], [[0.5]])[0]), 6)
    0.693147
    """)


# --------------------------------------------------------------------------------- categorical



def cross_entropy_of_logits(xp: Any, t: Array, x: Array, grad: bool, widened: bool) -> tuple[Array, Any]:
    """Soft-target cross-entropy from logits: sum_j t_j (lse(x) - x_j), both terms non-negative.

    lse(x) - x_j = (m - x_j) + log1p(S) with m the row maximum and S the sum of exp(x_k - m) over
    every k but the first maximum, so a confident row keeps its tiny loss log1p(S).
    Gradient: Y softmax_i - t_i with Y = sum_j t_j; at the maximum, softmax = 1/(1+S), which is
    rewritten as (sum_{j != top} t_j - t_top S) / (1 + S) so no 1 - (1 - tiny) is ever formed.
    """
    top = xp.argmax(x, axis=-1, keepdims=True)
    m = _array.take_last(xp, x, top)
    e = xp.exp(x - m) if widened else exp_difference(xp, x, m)
    e = _array.put_last(xp, e, top, xp.zeros_like(m))  # the others only
    s = xp.sum(e, axis=-1, keepdims=True)
    tail = log1p(xp, s)
    # at the top m - x is 0, also for an infinite top (where inf - inf would be NaN): the limit
    nll = _array.put_last(xp, (m - x) + tail, top, tail)
    value = xp.sum(xmul(xp, t, nll), axis=-1)
    if not grad:
        return value, None
    total, others = sum_others(xp, t)
    g_top = (_array.take_last(xp, others, top) - _array.take_last(xp, t, top) * s) / (1.0 + s)
    g = total * (e / (1.0 + s)) - t
    return value, _array.put_last(xp, g, top, g_top)



def _from_probabilities(xp: Any, t: Array, p: Array, grad: bool) -> tuple[Array, Any]:
    """Soft-target cross-entropy of renormalised probabilities: sum_j t_j log(P / p_j), P = sum p.

    log(P / p_j) = log1p(R_j / p_j) with R_j the sum of the other probabilities (exact for the
    largest one, see sum_others), so a row [1 - 1e-12, 1e-12] keeps its loss 1e-12.
    Gradient: Y/P - t_i/p_i = ((Y - t_i) p_i - t_i R_i) / (p_i P), with Y - t_i also summed directly.
    """
    big, others = sum_others(xp, p)
    nll = log_ratio_plus_one(xp, others, p)
    value = xp.sum(xmul(xp, t, nll), axis=-1)
    if not grad:
        return value, None
    t_total, t_others = sum_others(xp, t)
    g = ((t_others * p - t * others) / p) / big
    return value, xp.where(t == 0, xp.broadcast_to(t_total / big, t.shape), g)


def _cce(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool, from_logits: bool,
         label_smoothing: float, class_weight: tuple[float, ...] | None = None,
         where: Array | None = None) -> tuple[Array, Any]:
    if where is None:
        t = smooth_labels(y_true, label_smoothing)
    else:  # smoothing spreads over the kept classes only (Optax's smooth_labels(where=))
        t, y_pred, kept_any = restrict_to_kept(xp, y_true, y_pred, where, from_logits, label_smoothing)
    if class_weight is not None:
        t = t * _per_class(xp, class_weight, y_pred, "class_weight")
    if from_logits:
        value, g = cross_entropy_of_logits(xp, t, y_pred, grad, widened)
    else:
        value, g = _from_probabilities(xp, t, y_pred, grad)
    if where is not None:
        value, g = zero_excluded(xp, value, g, where, kept_any)
    return value, g




def _warn_single_class(xp: Any, y_true: Array, y_pred: Array, **_: Any) -> None:
    if y_pred.shape[-1] == 1:
        warnings.warn("categorical_crossentropy: y_pred has a single class on its class axis, so the "
                      f"loss is always 0 (y_pred shape {tuple(y_pred.shape)} with the classes last); "
                      "use binary_crossentropy for two classes", stacklevel=5)


CATEGORICAL_CROSSENTROPY = LossDef(
    name="categorical_crossentropy", class_name="CategoricalCrossentropy", kernel=_cce, precision_aware=True,
    targets="distribution",
    options=(FROM_LOGITS, LABEL_SMOOTHING, AXIS, CLASS_WEIGHT), inputs=(WHERE,),
    aliases=("cce", "CCE", Alias("softmax_cross_entropy", from_logits=True),
             Alias("safe_softmax_cross_entropy", from_logits=True)),
    domain=_probability_domain, check_values=_warn_single_class,
    doc=r"""Categorical cross-entropy between target distributions and predictions, over ``axis``.

    With targets :math:`t = y(1-s) + s/K` (label smoothing :math:`s`, :math:`K` classes), from logits
    :math:`x` (``from_logits=True``):

    .. math:: \ell = \sum_j t_j \big(\operatorname{logsumexp}(x) - x_j\big),
              \qquad \frac{\partial \ell}{\partial x_i} = \Big(\sum_j t_j\Big)\,\mathrm{softmax}(x)_i - t_i

    and from probabilities (renormalised, as Keras does, with :math:`P = \sum_k p_k`):

    .. math:: \ell = \sum_j t_j \log\frac{P}{p_j},
              \qquad \frac{\partial \ell}{\partial p_i} = \frac{\sum_j t_j}{P} - \frac{t_i}{p_i}

    Shapes: ``y_true`` and ``y_pred`` ``(..., K)`` with the classes on ``axis``; returns the shape
    without ``axis``. ``y_true`` must lie in [0, 1], and so must ``y_pred`` unless ``from_logits``.

    Differences from Keras: no clipping to [1e-7, 1 - 1e-7] (a confident ``softmax`` output gives the
    same loss as its logits, not a loss capped at 16.1); the logits path keeps the loss of confidently
    correct rows (logits ``[30, 0]`` give 9.357622968839737e-14, where ``log_softmax`` returns about
    9.348e-14 in float64 and 0 in float32). A zero probability for a positive target costs ``inf``.
    Label smoothing divides by the size of ``axis`` (Keras uses the last axis whatever ``axis`` is).

    ``class_weight`` :math:`w` (one non-negative number per class) weighs each class's term,
    :math:`\ell = \sum_j w_j t_j (\operatorname{logsumexp}(x) - x_j)` with gradient
    :math:`(\sum_j w_j t_j)\,\mathrm{softmax}(x)_i - w_i t_i` (and likewise from probabilities),
    after label smoothing: PyTorch's ``CrossEntropyLoss(weight=)`` with probability targets, whose
    ``reduction='mean'`` divides by the number of samples, as ``"mean"`` does here.

    ``where`` (booleans broadcast to ``y_pred``'s shape, Optax's ``where``) keeps some classes of
    each sample: the others leave the softmax (or the renormalisation of probabilities) and their
    targets are ignored; label smoothing spreads over the kept classes (:math:`s/|W|`, as Optax's
    ``smooth_labels(where=)``); a sample with no class kept gives 0 with a zero gradient. Pass
    ``where[..., None]`` to drop whole samples (Optax also accepts a mask of the batch shape), or
    use ``sample_weight``.

    Example (by hand: -log(0.25) = log 4 = 1.386294...):

    >>> import losskit
    >>> round(float(losskit.categorical_crossentropy([[0.0, 1.0]], [[0.75, 0.25]])[0]), 6)
    1.386294
    """)


# -------------------------------------------------------------------------------------- sparse


def _scce(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool, from_logits: bool,
          ignore_class: int | None, label_smoothing: float = 0.0,
          class_weight: tuple[float, ...] | None = None,
          where: Array | None = None) -> tuple[Array, Any]:
    labels = y_true
    if ignore_class is not None:
        labels = xp.where(labels == ignore_class, xp.zeros_like(labels), labels)
    k = xp.expand_dims(xp.astype(labels, _array.index_dtype(xp, labels)), axis=-1)
    if not (label_smoothing or class_weight is not None or where is not None):
        return _scce_hard(xp, k, y_pred, grad, widened, from_logits)
    kept_any = None
    if where is not None:
        check_label_kept(xp, y_true, k, where, ignore_class)
        _, y_pred, kept_any = restrict_to_kept(xp, y_pred, y_pred, where, from_logits, 0.0)
    w = None if class_weight is None else _per_class(xp, class_weight, y_pred, "class_weight")
    if label_smoothing:
        value, g = _scce_smooth(xp, k, y_pred, grad, widened, from_logits, label_smoothing, w,
                                where)
    else:  # class weight w_k times the unweighted loss and gradient
        value, g = _scce_hard(xp, k, y_pred, grad, widened, from_logits)
        if w is not None:
            w_k = _array.take_last(xp, xp.broadcast_to(w, y_pred.shape), k)
            value = xmul(xp, w_k[..., 0], value)
            g = None if g is None else xmul(xp, w_k, g)
    if kept_any is not None:
        value, g = zero_excluded(xp, value, g, where, kept_any)
    return value, g


def _scce_hard(xp: Any, k: Array, y_pred: Array, grad: bool, widened: bool,
               from_logits: bool) -> tuple[Array, Any]:
    """The one-hot special case of the two functions above, without materialising the one-hot
    targets: the label's entries are gathered and the gradient patched with O(rows) index work."""
    top_index = xp.argmax(y_pred, axis=-1, keepdims=True)
    if from_logits:
        # value: (m - x_k) + log1p(S), S = sum of exp(x_j - m) over j other than the first max
        # gradient: softmax - onehot, with softmax_top - 1 = -S / (1 + S) at a correct top
        x = y_pred
        m = _array.take_last(xp, x, top_index)
        e = xp.exp(x - m) if widened else exp_difference(xp, x, m)
        e = _array.put_last(xp, e, top_index, xp.zeros_like(m))  # the others only
        s = xp.sum(e, axis=-1, keepdims=True)
        tail = log1p(xp, s)  # the whole loss when the label is the top (also an infinite top)
        value = xp.where(k == top_index, tail, (m - _array.take_last(xp, x, k)) + tail)[..., 0]
        if not grad:
            return value, None
        g = e / (1.0 + s)  # softmax, with 0 in place of the top entry
        g = _array.put_last(xp, g, k, _array.take_last(xp, g, k) - 1.0)
        top_value = xp.where(k == top_index, -s / (1.0 + s), 1.0 / (1.0 + s))
        return value, _array.put_last(xp, g, top_index, top_value)
    classes = xp.arange(y_pred.shape[-1], device=_array.device(y_pred))
    hit = k == classes
    top = classes == top_index
    zero = xp.zeros_like(y_pred)
    # value: log(P / p_k) = log1p(R_k / p_k), R_k the other classes' sum (exact at the top)
    # gradient: 1/P, and 1/P - 1/p_k = -R_k / (P p_k) at the label
    p = y_pred
    total = xp.sum(p, axis=-1, keepdims=True)
    others_of_top = xp.sum(xp.where(top, zero, p), axis=-1, keepdims=True)
    p_k = _array.take_last(xp, p, k)
    label_is_top = k == top_index
    r_k = xp.where(label_is_top, others_of_top, total - p_k)
    value = log_ratio_plus_one(xp, r_k, p_k)[..., 0]
    if not grad:
        return value, None
    inv = xp.broadcast_to(1.0 / total, p.shape)
    return value, xp.where(hit, xp.broadcast_to(-(r_k / p_k) / total, p.shape), inv)


def _scce_smooth(xp: Any, k: Array, y_pred: Array, grad: bool, widened: bool, from_logits: bool,
                 ls: float, w: Array | None, where: Array | None) -> tuple[Array, Any]:
    """Label-smoothed sparse cross-entropy with class weights ``w`` (None: 1) over the kept classes.

    The smoothed, weighted target is c_j = a w_j + b [j = k] with a = ls / K (K the number of kept
    classes) and b = (1 - ls) w_k; it is never formed (from probabilities see
    :func:`_scce_smooth_probabilities`). From logits:
    value = b (lse - x_k) + a sum_j w_j (lse - x_j), every term non-negative, with
    lse - x_j = (m - x_j) + log1p(S) as in :func:`_scce_hard`;
    gradient = C softmax_i - c_i with C = sum_j c_j = a W + b (W = sum_j w_j), and at the row
    maximum (C - c_top - c_top S) / (1 + S) (softmax_top = 1 / (1 + S)) so that no 1 - softmax is
    formed, C - c_top summed from the other classes.
    """
    n_classes = y_pred.shape[-1]
    ones = xp.ones_like(y_pred[..., :1])
    if where is not None:
        keep = xp.astype(where, y_pred.dtype)
        count = xp.sum(keep, axis=-1, keepdims=True)
        a = ls / xp.where(count > 0, count, ones)
        cw = keep if w is None else xmul(xp, keep, w)  # the weights of the kept classes
    else:
        a = ls / n_classes + 0.0 * ones
        cw = None if w is None else xp.broadcast_to(w, y_pred.shape)
    w_k = ones if w is None else _array.take_last(xp, xp.broadcast_to(w, y_pred.shape), k)
    b = (1.0 - ls) * w_k
    total_w = n_classes + 0.0 * ones if cw is None else xp.sum(cw, axis=-1, keepdims=True)
    if not from_logits:
        return _scce_smooth_probabilities(xp, k, y_pred, grad, a, b, w, cw, total_w, where)
    x = y_pred
    top = xp.argmax(x, axis=-1, keepdims=True)
    m = _array.take_last(xp, x, top)
    e = xp.exp(x - m) if widened else exp_difference(xp, x, m)
    e = _array.put_last(xp, e, top, xp.zeros_like(m))  # the others only
    s = xp.sum(e, axis=-1, keepdims=True)
    tail = log1p(xp, s)
    d = m - x  # >= 0; +inf at excluded classes, whose weight is 0
    spread = xp.sum(d if cw is None else xmul(xp, cw, d), axis=-1, keepdims=True)
    value = xmul(xp, b, (m - _array.take_last(xp, x, k)) + tail) \
        + a * (spread + total_w * tail)
    if not grad:
        return value[..., 0], None
    big_c = a * total_w + b
    sig = e / (1.0 + s)  # softmax, with 0 in place of the top entry
    g = big_c * sig - (a if cw is None else a * cw)
    c_k = a * (1.0 if cw is None else _array.take_last(xp, cw, k)) + b
    g = _array.put_last(xp, g, k, big_c * _array.take_last(xp, sig, k) - c_k)
    # at the maximum: c_top and C - c_top (the other classes' weights summed directly)
    if cw is None or w is None:  # weights 0/1: the others of the top number total_w - 1, exactly
        cw_top = ones
        others_w = total_w - 1.0
    else:
        classes = xp.arange(n_classes, device=_array.device(x))
        cw_top = _array.take_last(xp, cw, top)
        others_w = xp.sum(xp.where(classes == top, xp.zeros_like(cw), cw), axis=-1, keepdims=True)
    label_is_top = k == top
    c_top = a * cw_top + xp.where(label_is_top, b, 0.0 * b)
    others_c = a * others_w + xp.where(label_is_top, 0.0 * b, b)
    g = _array.put_last(xp, g, top, (others_c - c_top * s) / (1.0 + s))
    return value[..., 0], g


def _scce_smooth_probabilities(xp: Any, k: Array, p: Array, grad: bool, a: Array, b: Array,
                               w: Array | None, cw: Array | None, total_w: Array,
                               where: Array | None) -> tuple[Array, Any]:
    """:func:`_scce_smooth` on renormalised probabilities, by index: the targets c_j = a cw_j +
    b [j = k] (cw: the kept classes' weights, None: all 1; total_w = W = sum_j cw_j) are never formed.

    value = b log(P / p_k) + a sum_j cw_j log(P / p_j), every term non-negative, with
    log(P / p_j) = log1p(R_j / p_j) as in :func:`_from_probabilities` (R_j the other classes' sum);
    gradient C/P - c_i/p_i = ((C - c_i) p_i - c_i R_i) / (p_i P) with C = a W + b and
    C - c_i = a (W - cw_i) + b [i != k] summed from positive parts (W - cw_i directly at the
    largest weight), C/P where c_i = 0; the label's entry is patched with O(rows) index work.
    """
    big, others = sum_others(xp, p)
    nll = log_ratio_plus_one(xp, others, p)
    spread = xp.sum(nll if cw is None else xmul(xp, cw, nll), axis=-1, keepdims=True)
    value = xmul(xp, b, _array.take_last(xp, nll, k)) + a * spread
    if not grad:
        return value[..., 0], None
    big_c = a * total_w + b
    if cw is None:  # every weight 1: c_i = a off the label, and W - 1 is exact
        g = (((a * (total_w - 1.0) + b) * p - a * others) / p) / big
        cw_k, cw_others_k = 1.0, total_w - 1.0
    else:
        if w is None:  # where only: weights 0/1, so W - cw_i is exact
            row, row_others = cw, total_w - cw
        elif where is None:  # class weights only: one row of weights shared by every sample
            row = xp.broadcast_to(w, p.shape[-1:])
            row_others = sum_others(xp, row)[1]
        else:
            row = cw
            row_others = sum_others(xp, cw)[1]
        g = (((a * row_others + b) * p - (a * row) * others) / p) / big
        g = xp.where(row == 0, xp.broadcast_to(big_c / big, p.shape), g)
        cw_k = _array.take_last(xp, xp.broadcast_to(row, p.shape), k)
        cw_others_k = _array.take_last(xp, xp.broadcast_to(row_others, p.shape), k)
    p_k = _array.take_last(xp, p, k)
    c_k = a * cw_k + b
    g_k = (((a * cw_others_k) * p_k - c_k * _array.take_last(xp, others, k)) / p_k) / big
    g_k = xp.where(c_k == 0, big_c / big, g_k)
    return value[..., 0], _array.put_last(xp, g, k, g_k)



def _valid(xp: Any, y_true: Array, *, ignore_class: int | None, **_: Any) -> Array | None:
    return None if ignore_class is None else y_true != ignore_class


_INDEX_TARGETS = ("class-index targets, as PyTorch's for a (N,) target; for probability targets (a "
       "(N, C) target) use categorical_crossentropy(from_logits=True)")
SPARSE_CATEGORICAL_CROSSENTROPY = LossDef(
    name="sparse_categorical_crossentropy", class_name="SparseCategoricalCrossentropy",
    kernel=_scce, precision_aware=True, targets="index", sparse=True,
    aliases=("scce", "SCCE", Alias("softmax_cross_entropy_with_integer_labels", from_logits=True),
             Alias("CrossEntropyLoss", from_logits=True, note=_INDEX_TARGETS),
             Alias("cross_entropy", from_logits=True, note=_INDEX_TARGETS)),
    options=(FROM_LOGITS,
             Option("ignore_class", None, check_optional_int,
                    "a label value whose samples are left out: their loss and gradient are 0 "
                    "and the mean is over the other samples"),
             AXIS, LABEL_SMOOTHING, CLASS_WEIGHT),
    option_aliases={"ignore_index": "ignore_class"}, inputs=(WHERE,),
    domain=lambda opts: {} if opts["from_logits"] else {"y_pred": UNIT},
    check_values=class_index_checker("sparse_categorical_crossentropy"), mask=_valid,
    doc=r"""Cross-entropy with integer class labels, over the class ``axis`` of ``y_pred``.

    For label :math:`k`, from logits :math:`x`:

    .. math:: \ell = \operatorname{logsumexp}(x) - x_k,
              \qquad \frac{\partial \ell}{\partial x_i} = \mathrm{softmax}(x)_i - [i = k]

    and from probabilities (renormalised, :math:`P = \sum_j p_j`):

    .. math:: \ell = \log\frac{P}{p_k},
              \qquad \frac{\partial \ell}{\partial p_i} = \frac{1}{P} - \frac{[i = k]}{p_k}

    Shapes: ``y_pred`` ``(..., K)`` with the classes on ``axis``; ``y_true`` the same shape without
    that axis (or with a trailing axis of size 1), integer labels or whole-number floats, never cast
    to a float dtype. Returns the shape of ``y_true``.

    ``ignore_class``: samples with this label return 0 and get a zero gradient; the class's ``"mean"``
    reduction divides by the number of other samples (Keras divides by that number plus 1e-7), and a
    batch in which every sample is ignored reduces to 0, not NaN as in PyTorch.

    ``ignore_index`` is accepted for ``ignore_class`` (PyTorch's name; the config keeps
    ``ignore_class``). PyTorch's default ``ignore_index=-100`` is not implied: nothing is ignored
    unless asked.

    ``label_smoothing`` :math:`s` gives the cross-entropy with the smoothed target
    :math:`(1-s)[j=k] + s/K`, computed without forming it:
    :math:`\ell = (1-s)(\operatorname{lse}(x) - x_k) + \frac{s}{K}\sum_j (\operatorname{lse}(x) - x_j)`,
    gradient :math:`\mathrm{softmax}(x)_i - (1-s)[i=k] - s/K`, as PyTorch's
    ``cross_entropy(label_smoothing=)`` with class indices (Keras 3.15 has no label smoothing here).

    ``class_weight`` :math:`w` (one non-negative number per class) multiplies the label's term and,
    with smoothing, each class's smoothing term, as PyTorch's ``weight``:
    :math:`\ell = (1-s)\,w_k(\operatorname{lse}(x) - x_k)
    + \frac{s}{K}\sum_j w_j(\operatorname{lse}(x) - x_j)` (from probabilities,
    :math:`\log(P/p_j)` in place of :math:`\operatorname{lse}(x) - x_j`). The per-sample values
    equal PyTorch's ``reduction='none'``. PyTorch's weighted ``'mean'`` divides by
    :math:`\sum_n w_{y_n}` (over the samples not ignored), the ``"mean"`` here by the number of
    samples; to reproduce PyTorch's mean, take ``reduction="sum"`` and divide by
    ``class_weight[y_true].sum()``, or, without smoothing, use the unweighted loss with
    ``sample_weight=class_weight[y_true]`` and ``reduction="mean_with_sample_weight"``.

    ``where`` (booleans broadcast to ``y_pred``'s shape, Optax's ``where``) keeps some classes of
    each sample: :math:`\ell = \operatorname{lse}_{j \in W}(x_j) - x_k` (probabilities renormalised
    over :math:`W`), smoothing spreads over :math:`W` (:math:`s/|W|`), excluded classes get a zero
    gradient, and a sample with no class kept gives 0 (as in Optax). A label whose own class is
    excluded (in a sample that keeps other classes) raises ``ValueError`` on concrete arrays (NumPy,
    PyTorch, eager JAX), where Optax returns :math:`\operatorname{lse}_W - x_k`, which may be
    negative; under ``jax.jit`` (no check possible) its value is ``inf``: the label has
    probability 0 under the restricted softmax. Optax's batch-shaped ``where`` is
    ``where[..., None]`` here (masks broadcast like NumPy arrays).

    Labels outside ``[0, K)`` (other than ``ignore_class``) or with a fractional part raise a
    ``ValueError`` when the values are concrete (NumPy, eager PyTorch or JAX).

    Example (by hand: log(1 + e^-30) = e^-30 - e^-60/2 + ... = 9.357622968839737e-14):

    >>> import losskit
    >>> float(losskit.sparse_categorical_crossentropy([0], [[30.0, 0.0]], from_logits=True)[0])
    9.357622968839737e-14
    """)
