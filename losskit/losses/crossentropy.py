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
    exp_difference,
    log1p,
    log_both,
    sigmoid_pair,
    softplus_pair,
    sum_others,
    xmul,
)
from ._core import (
    AXIS,
    FROM_LOGITS,
    LABEL_SMOOTHING,
    UNIT,
    Interval,
    LossDef,
    Option,
    check_optional_int,
)

Array = Any


# -------------------------------------------------------------------------------------- binary


def _bce(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, from_logits: bool,
         label_smoothing: float) -> tuple[Array, Any]:
    y, ls = y_true, label_smoothing
    t = y * (1.0 - ls) + 0.5 * ls if ls else y
    n = y_pred.shape[-1]
    g = None
    if from_logits:
        # value: t softplus(-x) + (1-t) softplus(x)        gradient: sigmoid(x) - t, as
        # (1-y) sigmoid(x) - y sigmoid(-x) + ls (y - 1/2): a hard label takes one exact term, and the
        # smoothing shift ls (y - 1/2) is exact, where t itself is rounded
        e = xp.exp(-xp.abs(y_pred))  # shared by softplus(±x) and sigmoid(±x)
        sp_pos, sp_neg = softplus_pair(xp, y_pred, e)
        terms = xmul(xp, t, sp_neg) + xmul(xp, 1.0 - t, sp_pos)
        if grad:
            sig_pos, sig_neg = sigmoid_pair(xp, y_pred, e)
            g = xmul(xp, 1.0 - y, sig_pos) - xmul(xp, y, sig_neg)
            g = g + ls * (y - 0.5) if ls else g
    else:
        # value: -t log p - (1-t) log(1-p)                 gradient: (p - t) / (p (1-p)), with
        # p - t = (p - y) + ls (y - 1/2) (both exact for hard labels: Sterbenz, and a halving)
        p = y_pred
        log_p, log_q = log_both(xp, p)
        terms = xmul(xp, t, -log_p) + xmul(xp, 1.0 - t, -log_q)
        if grad:
            diff = (p - y) + ls * (y - 0.5) if ls else p - y
            g = diff / (p * (1.0 - p))
            if not ls:  # the limits at p = 0 or 1 where the numerator vanishes too
                g = xp.where(y == 0, 1.0 / (1.0 - p), xp.where(y == 1, -1.0 / p, g))
    return xp.mean(terms, axis=-1), (g / n if grad else None)


def _probability_domain(opts: Mapping[str, Any]) -> dict[str, Interval]:
    return {"y_true": UNIT} if opts["from_logits"] else {"y_true": UNIT, "y_pred": UNIT}


BINARY_CROSSENTROPY = LossDef(
    name="binary_crossentropy", class_name="BinaryCrossentropy", kernel=_bce, targets="binary",
    options=(FROM_LOGITS, LABEL_SMOOTHING, AXIS), aliases=("bce", "BCE"),
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

    Example (by hand: -log(1/2) = log 2 = 0.693147...):

    >>> import losskit
    >>> round(float(losskit.binary_crossentropy([[1.0]], [[0.5]])[0]), 6)
    0.693147
    """)


# --------------------------------------------------------------------------------- categorical


def _smooth(t: Array, label_smoothing: float) -> Array:
    if not label_smoothing:
        return t
    return t * (1.0 - label_smoothing) + label_smoothing / t.shape[-1]


def _from_logits(xp: Any, t: Array, x: Array, grad: bool, widened: bool) -> tuple[Array, Any]:
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
    nll = (m - x) + log1p(xp, s)
    value = xp.sum(xmul(xp, t, nll), axis=-1)
    if not grad:
        return value, None
    total, others = sum_others(xp, t)
    g_top = (_array.take_last(xp, others, top) - _array.take_last(xp, t, top) * s) / (1.0 + s)
    g = total * (e / (1.0 + s)) - t
    return value, _array.put_last(xp, g, top, g_top)


def _log_ratio_plus_one(xp: Any, r: Array, p: Array) -> Array:
    """``log((r + p) / p) = log1p(r / p)``, switching to ``log(r) - log(p)`` where r/p overflows."""
    ratio = r / p
    huge = (ratio == float("inf")) & (p > 0)
    return xp.where(huge, xp.log(r) - xp.log(xp.where(huge, p, xp.ones_like(p))), log1p(xp, ratio))


def _from_probabilities(xp: Any, t: Array, p: Array, grad: bool) -> tuple[Array, Any]:
    """Soft-target cross-entropy of renormalised probabilities: sum_j t_j log(P / p_j), P = sum p.

    log(P / p_j) = log1p(R_j / p_j) with R_j the sum of the other probabilities (exact for the
    largest one, see sum_others), so a row [1 - 1e-12, 1e-12] keeps its loss 1e-12.
    Gradient: Y/P - t_i/p_i = ((Y - t_i) p_i - t_i R_i) / (p_i P), with Y - t_i also summed directly.
    """
    big, others = sum_others(xp, p)
    nll = _log_ratio_plus_one(xp, others, p)
    value = xp.sum(xmul(xp, t, nll), axis=-1)
    if not grad:
        return value, None
    t_total, t_others = sum_others(xp, t)
    g = ((t_others * p - t * others) / p) / big
    return value, xp.where(t == 0, xp.broadcast_to(t_total / big, t.shape), g)


def _cce(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool, from_logits: bool,
         label_smoothing: float) -> tuple[Array, Any]:
    t = _smooth(y_true, label_smoothing)
    if from_logits:
        return _from_logits(xp, t, y_pred, grad, widened)
    return _from_probabilities(xp, t, y_pred, grad)


def _warn_single_class(xp: Any, y_true: Array, y_pred: Array, **_: Any) -> None:
    if y_pred.shape[-1] == 1:
        warnings.warn("categorical_crossentropy: y_pred has a single class on its class axis, so the "
                      f"loss is always 0 (y_pred shape {tuple(y_pred.shape)} with the classes last); "
                      "use binary_crossentropy for two classes", stacklevel=5)


CATEGORICAL_CROSSENTROPY = LossDef(
    name="categorical_crossentropy", class_name="CategoricalCrossentropy", kernel=_cce, precision_aware=True,
    targets="distribution",
    options=(FROM_LOGITS, LABEL_SMOOTHING, AXIS), aliases=("cce", "CCE"),
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

    Example (by hand: -log(0.25) = log 4 = 1.386294...):

    >>> import losskit
    >>> round(float(losskit.categorical_crossentropy([[0.0, 1.0]], [[0.75, 0.25]])[0]), 6)
    1.386294
    """)


# -------------------------------------------------------------------------------------- sparse


def _scce(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool, from_logits: bool,
          ignore_class: int | None) -> tuple[Array, Any]:
    """The one-hot special case of the two functions above, without materialising the one-hot
    targets: the label's entries are gathered and the gradient patched with O(rows) index work."""
    labels = y_true
    if ignore_class is not None:
        labels = xp.where(labels == ignore_class, xp.zeros_like(labels), labels)
    k = xp.expand_dims(xp.astype(labels, _array.index_dtype(xp, labels)), axis=-1)
    top_index = xp.argmax(y_pred, axis=-1, keepdims=True)
    if from_logits:
        # value: (m - x_k) + log1p(S), S = sum of exp(x_j - m) over j other than the first max
        # gradient: softmax - onehot, with softmax_top - 1 = -S / (1 + S) at a correct top
        x = y_pred
        m = _array.take_last(xp, x, top_index)
        e = xp.exp(x - m) if widened else exp_difference(xp, x, m)
        e = _array.put_last(xp, e, top_index, xp.zeros_like(m))  # the others only
        s = xp.sum(e, axis=-1, keepdims=True)
        value = ((m - _array.take_last(xp, x, k)) + log1p(xp, s))[..., 0]
        if not grad:
            return value, None
        g = e / (1.0 + s)  # softmax, with 0 in place of the top entry
        g = _array.put_last(xp, g, k, _array.take_last(xp, g, k) - 1.0)
        top_value = xp.where(k == top_index, -s / (1.0 + s), 1.0 / (1.0 + s))
        return value, _array.put_last(xp, g, top_index, top_value)
    classes = xp.arange(y_pred.shape[-1], device=_array.device(y_pred))
    hit = xp.expand_dims(labels, axis=-1) == classes
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
    value = _log_ratio_plus_one(xp, r_k, p_k)[..., 0]
    if not grad:
        return value, None
    inv = xp.broadcast_to(1.0 / total, p.shape)
    return value, xp.where(hit, xp.broadcast_to(-(r_k / p_k) / total, p.shape), inv)


def _check_labels(xp: Any, y_true: Array, y_pred: Array, *, from_logits: bool,
                  ignore_class: int | None, axis: int) -> None:
    k = y_pred.shape[-1]
    counted = xp.ones_like(y_true, dtype=xp.bool) if ignore_class is None else y_true != ignore_class
    if _array.is_floating(y_true):
        fractional = counted & (y_true != xp.round(y_true))
        if _array.to_bool(xp.any(fractional)):
            raise ValueError("sparse_categorical_crossentropy: y_true must hold integer class "
                             "indices; " + _array.describe_range(xp, y_true, fractional, "y_true")
                             .replace("outside", "that are not whole numbers"))
    bad = counted & ((y_true < 0) | (y_true >= k))
    if _array.to_bool(xp.any(bad)):
        ignore = "" if ignore_class is None else f" other than ignore_class={ignore_class}"
        raise ValueError(f"sparse_categorical_crossentropy: class indices{ignore} must lie in "
                         f"[0, {k - 1}] for y_pred with {k} classes on axis {axis}; "
                         + _array.describe_range(xp, y_true, bad, "y_true"))


def _valid(xp: Any, y_true: Array, *, ignore_class: int | None, **_: Any) -> Array | None:
    return None if ignore_class is None else y_true != ignore_class


SPARSE_CATEGORICAL_CROSSENTROPY = LossDef(
    name="sparse_categorical_crossentropy", class_name="SparseCategoricalCrossentropy",
    kernel=_scce, precision_aware=True, targets="index", sparse=True, aliases=("scce", "SCCE"),
    options=(FROM_LOGITS,
             Option("ignore_class", None, check_optional_int,
                    "a label value whose samples are left out: their loss and gradient are 0 "
                    "and the mean is over the other samples"),
             AXIS),
    domain=lambda opts: {} if opts["from_logits"] else {"y_pred": UNIT},
    check_values=_check_labels, mask=_valid,
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

    Labels outside ``[0, K)`` (other than ``ignore_class``) or with a fractional part raise a
    ``ValueError`` when the values are concrete (NumPy, eager PyTorch or JAX).

    Example (by hand: log(1 + e^-30) = e^-30 - e^-60/2 + ... = 9.357622968839737e-14):

    >>> import losskit
    >>> float(losskit.sparse_categorical_crossentropy([0], [[30.0, 0.0]], from_logits=True)[0])
    9.357622968839737e-14
    """)
