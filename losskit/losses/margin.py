"""Margin losses: hinge, squared hinge, categorical and multiclass hinges, PyTorch's margin losses,
soft margins and perceptrons.

Conventions shared by every loss here:

* Kinks. Exactly on a kink of ``max(0, .)`` or of a row maximum the gradient is the average of the two
  one-sided slopes (the symmetric central difference), which is what autograd of ``torch.maximum`` /
  ``jnp.maximum`` gives for ``max(0, m)`` at ``m = 0``. A maximum shared by two entries gives each of
  them 1/2 (``jnp.max``/``torch.amax`` autograd agree for two entries; for three or more tied entries
  they give ``1/count`` each, losskit 1/2, the average of each entry's one-sided slopes).
* Margins ``c + (a - b)`` are computed with ``a - b`` exact (Knuth's TwoSum), so a score difference
  that cancels the margin (``x_j - x_y`` close to ``-1``) keeps every digit of the small remainder.
* Labels are checked on concrete inputs: signs must be -1/1 (Keras's losses also accept 0/1, mapped
  by Keras's rule), class indices whole numbers in range.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _array
from .._backends import numpy as _numpy_backend
from .._double import barrier, two_sum
from .._numerics import sigmoid_pair, softplus_pair, xmul
from ._core import UNIT, LossDef, Option, check_real, check_weights, class_index_checker, weights_array
from ._registry import Alias

Array = Any


# -------------------------------------------------------------------------------------- helpers


def _to_signs(xp: Any, y_true: Array) -> Array:
    """Keras's rule: if every label of the array is 0 or 1, map it to -1/+1 with 2y - 1."""
    binary = xp.all((y_true == 0) | (y_true == 1))
    return xp.where(binary, 2.0 * y_true - 1.0, y_true)


def sign_checker(name: str, keras_rule: bool) -> Any:
    """``check_values`` for -1/1 labels (and 0/1 ones under Keras's rule)."""

    def check(xp: Any, y_true: Array, y_pred: Array, **_: Any) -> None:
        kind = _numpy_backend.label_kind(y_true)  # one compiled pass, where the extension has it
        if kind == 1 or (keras_rule and kind == 2):  # the common cases: -1/1, and 0/1 under Keras's rule
            return
        if kind is None and _all_signs(y_true):  # Keras's mapping leaves -1/1 labels as they are
            return
        t = _to_signs(xp, y_true) if keras_rule else y_true
        if keras_rule and _all_signs(t):
            return
        bad = (t != 1) & (t != -1) & ~xp.isnan(t)
        if _array.to_bool(xp.any(bad)):
            accepted = ("labels -1 and 1 (or only 0 and 1, which are mapped to -1 and 1)"
                        if keras_rule else "labels -1 and 1")
            raise ValueError(f"{name}: y_true must hold {accepted}; "
                             + _array.describe_range(xp, y_true, bad, "y_true")
                             .replace("outside", "that are not labels"))

    return check


_SIGN_BLOCK = 1 << 15


def _all_signs(t: Array) -> bool:
    """Whether ``t`` is a NumPy float array of only -1 and 1 (the common case, which then needs no
    further check): |t| != 1 over blocks that stay in cache, about twice as fast as whole-array
    passes on large label arrays. False for anything else (the caller checks in full)."""
    if not isinstance(t, np.ndarray) or t.dtype.kind != "f":
        return False
    flat = t.reshape(-1)
    if flat.size <= _SIGN_BLOCK:  # one block: a small call pays three NumPy calls
        size = np.abs(flat)
        return bool(size.min(initial=1.0) == 1.0 and size.max(initial=1.0) == 1.0)
    n = _SIGN_BLOCK
    size, differs = np.empty(n, flat.dtype), np.empty(n, bool)
    for i in range(0, flat.size, n):
        block = flat[i:i + n]
        m = block.size
        np.abs(block, out=size[:m])
        np.not_equal(size[:m], 1, out=differs[:m])
        if differs[:m].any():
            return False
    return True


def _labels(xp: Any, y_true: Array, y_pred: Array) -> tuple[Array, Array]:
    """``(k, hit)``: labels as an index array of shape ``(..., 1)`` and the one-hot mask ``(..., n)``."""
    k = xp.expand_dims(xp.astype(y_true, _array.index_dtype(xp, y_true)), axis=-1)
    classes = xp.arange(y_pred.shape[-1], device=_array.device(y_pred))
    return k, k == classes


def shifted_difference(xp: Any, c: float, a: Array, b: Array) -> Array:
    """``c + (a - b)`` with ``a - b`` exact (TwoSum: ``a - b = d + e``), so that a difference which
    cancels ``c`` leaves its remainder exact (Sterbenz) and the result is within an ulp."""
    d, e = two_sum(xp, a, -b)
    e = xp.where(xp.isfinite(e), e, xp.zeros_like(e))  # infinite scores: d is the answer
    return barrier(xp, c + d) + e


def kink_slope(xp: Any, m: Array) -> Array:
    """Derivative of ``max(0, m)`` with respect to ``m``: 1, 0, and 1/2 exactly at ``m = 0``."""
    one = xp.ones_like(m)
    return xp.where(m > 0, one, xp.where(m == 0, 0.5 * one, xp.zeros_like(m)))


def _max_weights(xp: Any, v: Array, top: Array) -> Array:
    """Derivative of the row maximum ``top`` (shape ``(..., 1)``) with respect to each entry: 1 for a
    unique maximum, 1/2 for each of several tied ones (average of the one-sided slopes), else 0."""
    ties = v == top
    count = xp.sum(xp.astype(ties, v.dtype), axis=-1, keepdims=True)
    weight = xp.where(count > 1, 0.5 * xp.ones_like(count), xp.ones_like(count))
    return xp.where(ties, weight, xp.zeros_like(v))


def _nan_rows(xp: Any, value: Array, g: Array) -> Array:
    """NaN gradients for rows whose value is NaN."""
    return xp.where(xp.isnan(value)[..., None], value[..., None] + g, g)


def _class_weight(xp: Any, weight: Any, k: Array, like: Array, name: str) -> Array | None:
    """Per-sample class weights ``w[y]`` (shape ``(..., 1)``) from a ``weight`` option, or None."""
    if weight is None:
        return None
    if isinstance(weight, float):
        return xp.zeros_like(like[..., :1]) + weight
    n = like.shape[-1]
    if len(weight) != n:
        raise ValueError(f"{name}: weight has {len(weight)} entries; y_pred has {n} classes on its "
                         "last axis, and weight needs one per class")
    w = weights_array(xp, weight, like)
    return xp.reshape(xp.take(w, xp.reshape(k, (-1,)), axis=0), k.shape)


# ---------------------------------------------------------------------------------------- hinge


def _hinge(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i max(0, 1 - t_i f_i)
    # gradient: -t_i / n inside the margin, 0 outside, -t_i / (2n) exactly on it (the average of the
    # one-sided slopes, which is what autograd of torch.maximum / jnp.maximum gives there)
    t = _to_signs(xp, y_true)
    margin = 1.0 - t * y_pred
    value = xp.mean(xp.maximum(margin, xp.zeros_like(margin)), axis=-1)
    if not grad:
        return value, None
    slope = xp.where(margin > 0, -t, xp.where(margin == 0, -0.5 * t, xp.zeros_like(t)))
    slope = xp.where(xp.isnan(margin), margin, slope)
    return value, slope / y_pred.shape[-1]


HINGE = LossDef(
    name="hinge", class_name="Hinge", kernel=_hinge, targets="sign",
    check_values=sign_checker("hinge", keras_rule=True), aliases=(Alias("hinge_loss"),),
    doc=r"""Hinge loss over the last axis, for labels -1 and 1.

    .. math:: \ell = \frac{1}{n}\sum_i \max(0,\ 1 - t_i f_i),
              \qquad \frac{\partial \ell}{\partial f_i} = -\frac{t_i}{n}\,[t_i f_i < 1]

    Exactly on the margin (:math:`t_i f_i = 1`) the subgradient is :math:`-t_i/(2n)`, the average of
    the two one-sided slopes, as autograd gives for Keras's formula ``maximum(1 - t f, 0)`` on both
    PyTorch (``torch.maximum``) and JAX (``jnp.maximum``); ``torch.clamp``/``relu`` would give
    :math:`-t_i/n` or 0 instead.

    Labels: when every label of ``y_true`` is 0 or 1 they are mapped to -1 and 1 (Keras's rule, applied
    to the whole array). Any other label raises a ``ValueError`` (Keras silently accepts it).
    Shapes as for :func:`mean_squared_error`.

    Example (by hand: (max(0, 1 - 0.5) + max(0, 1 + 2)) / 2 = 1.75):

    >>> import losskit
    >>> float(losskit.hinge([[1.0, -1.0]], [[0.5, 2.0]])[0])
    1.75
    """)


# -------------------------------------------------------------------------------- squared hinge


def _squared_hinge(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i max(0, 1 - t_i f_i)^2     (t_i f_i is exact for t = +-1; one rounding in 1 - t f)
    # gradient: -2 t_i max(0, 1 - t_i f_i) / n (continuous: 0 on the margin)
    t = _to_signs(xp, y_true)
    active = xp.maximum(1.0 - t * y_pred, xp.zeros_like(y_pred))
    value = xp.mean(active * active, axis=-1)
    if not grad:
        return value, None
    return value, (-2.0 * t * active) / y_pred.shape[-1]


SQUARED_HINGE = LossDef(
    name="squared_hinge", class_name="SquaredHinge", kernel=_squared_hinge, targets="sign",
    check_values=sign_checker("squared_hinge", keras_rule=True),
    doc=r"""Squared hinge loss over the last axis, for labels -1 and 1.

    .. math:: \ell = \frac{1}{n}\sum_i \max(0,\ 1 - t_i f_i)^2,
              \qquad \frac{\partial \ell}{\partial f_i} = -\frac{2 t_i}{n}\max(0,\ 1 - t_i f_i)

    The gradient is continuous (0 exactly on the margin). Labels as for :func:`hinge`: 0/1 labels
    are mapped to -1/1 when every label of the array is 0 or 1 (Keras's rule); any other label raises
    a ``ValueError`` (Keras accepts it silently). Shapes as for :func:`mean_squared_error`.

    Peers: Keras ``squared_hinge``/``SquaredHinge`` (same formula and label rule). PyTorch has no
    squared hinge (``MultiMarginLoss(p=2)`` is a different, multiclass loss); Optax neither.

    Example (by hand: (max(0, 1 - 0.5)^2 + max(0, 1 + 2)^2) / 2 = (0.25 + 9) / 2 = 4.625):

    >>> import losskit
    >>> float(losskit.squared_hinge([[1.0, -1.0]], [[0.5, 2.0]])[0])
    4.625
    """)


# ---------------------------------------------------------------------------- categorical hinge


def _categorical_hinge(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: max(0, neg - pos + 1), pos = sum_j t_j f_j, neg = max_j (1 - t_j) f_j (Keras's formula);
    #        1 + neg - sum_j t_j f_j is summed with compensation (exact products for 0/1 targets), so a
    #        margin that cancels keeps its digits
    # gradient: a * ((1 - t_j) [j attains neg] - t_j), a = 1 inside the margin, 1/2 on it, 0 outside;
    #        tied maxima get 1/2 each (see the module docstring)
    from .._numerics import accurate_sum

    t, f = y_true, y_pred
    v = xmul(xp, 1.0 - t, f)
    neg = xp.max(v, axis=-1, keepdims=True)
    terms = xp.concat([xp.ones_like(neg), neg, -xmul(xp, t, f)], axis=-1)
    m = accurate_sum(xp, terms)
    value = xp.maximum(m, xp.zeros_like(m))
    if not grad:
        return value, None
    g = kink_slope(xp, m)[..., None] * ((1.0 - t) * _max_weights(xp, v, neg) - t)
    return value, _nan_rows(xp, value, g)


CATEGORICAL_HINGE = LossDef(
    name="categorical_hinge", class_name="CategoricalHinge", kernel=_categorical_hinge,
    targets="onehot", domain=lambda opts: {"y_true": UNIT},
    doc=r"""Categorical hinge loss over the last axis, for one-hot targets.

    .. math:: \ell = \max\bigl(0,\ 1 + \max_j (1 - t_j) f_j - \textstyle\sum_j t_j f_j\bigr),
              \qquad \frac{\partial \ell}{\partial f_j} = a\,\bigl((1 - t_j)[j = j^*] - t_j\bigr)

    with :math:`j^*` the entry that attains the maximum and :math:`a = 1` inside the margin, 0 outside.
    For a one-hot :math:`t` with label :math:`y` this is :math:`\max(0, 1 + \max(0, \max_{j \ne y}
    f_j) - f_y)`: note the 0 that the label's own entry contributes to the maximum (Keras's formula).
    On the margin :math:`a = 1/2`; an entry tied for the maximum gets weight 1/2 (average of one-sided
    slopes). ``y_true`` must lie in [0, 1] (one-hot or soft targets; anything else raises a
    ``ValueError``, where Keras scores it); the result is exact for 0/1 targets.

    Peers: Keras ``categorical_hinge``/``CategoricalHinge``: same formula, computed here with a
    compensated sum. Optax's ``multiclass_hinge_loss`` is the Crammer-Singer loss without the 0 above
    (:func:`multiclass_hinge`, integer labels); PyTorch's ``MultiMarginLoss`` sums over classes
    (:func:`multi_margin`).

    Shapes: ``y_true`` and ``y_pred`` ``(..., n)``; the result ``(...)``.

    Example (by hand: 1 + max(0, 0.3) - 0.5 = 0.8):

    >>> import losskit
    >>> round(float(losskit.categorical_hinge([[0.0, 1.0, 0.0]], [[0.3, 0.5, -1.0]])[0]), 12)
    0.8
    """)


# -------------------------------------------------------------------- multiclass hinge (Optax)


def _multiclass_hinge(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: max_j (s_j + 1 - [j = y]) - s_y = max(0, 1 + max_{j != y} s_j - s_y); 1 + (m - s_y)
    #        with m - s_y exact (TwoSum)
    # gradient: a ([j attains m] - [j = y]); a = 1 inside the margin, 1/2 on it, 0 outside
    s = y_pred
    k, hit = _labels(xp, y_true, s)
    s_y = _array.take_last(xp, s, k)
    others = xp.where(hit, -float("inf") + xp.zeros_like(s), s)
    top = xp.max(others, axis=-1, keepdims=True)
    m = shifted_difference(xp, 1.0, top, s_y)[..., 0]
    m = xp.where(xp.isnan(s_y[..., 0]), s_y[..., 0], m)
    value = xp.maximum(m, xp.zeros_like(m))
    if not grad:
        return value, None
    g = kink_slope(xp, m)[..., None] * (_max_weights(xp, others, top) - xp.astype(hit, s.dtype))
    return value, _nan_rows(xp, value, g)


MULTICLASS_HINGE = LossDef(
    name="multiclass_hinge", class_name="MulticlassHinge", kernel=_multiclass_hinge,
    targets="index", sparse=True, aliases=(Alias("multiclass_hinge_loss"),),
    check_values=class_index_checker("multiclass_hinge"),
    doc=r"""Multiclass (Crammer-Singer) hinge loss with integer labels, over the last axis.

    .. math:: \ell = \max_j\,(s_j + 1 - [j = y]) - s_y = \max\bigl(0,\ 1 + \max_{j \ne y} s_j - s_y\bigr),
              \qquad \frac{\partial \ell}{\partial s_j} = a\,\bigl([j = j^*] - [j = y]\bigr)

    with :math:`j^*` the best other class and :math:`a = 1` inside the margin, 0 outside, 1/2 exactly on
    it; scores tied for the best other class get 1/2 each. The margin is computed with
    :math:`s_{j^*} - s_y` exact, so a loss close to 0 keeps its digits.

    Shapes: ``y_pred`` ``(..., n)`` scores; ``y_true`` ``(...)`` (or ``(..., 1)``) integer labels in
    ``[0, n - 1]`` (whole-number floats accepted); the result ``(...)``.

    Peers: Optax ``multiclass_hinge_loss(scores, labels)`` (same value; autograd splits ties of three
    or more entries evenly instead). Keras's :func:`categorical_hinge` differs (a 0 in its maximum,
    one-hot targets); PyTorch's :func:`multi_margin` sums over classes and divides by ``n``.

    Example (by hand: label 1, scores [0.3, 0.5, -1]: 1 + 0.3 - 0.5 = 0.8):

    >>> import losskit
    >>> round(float(losskit.multiclass_hinge([1], [[0.3, 0.5, -1.0]])[0]), 12)
    0.8
    """)


# ------------------------------------------------------------------------- multi-margin (torch)


def _check_power(name: str, value: Any) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be the integer 1 or 2; found {value!r}")
    if value not in (1, 2):
        raise ValueError(f"{name} must be 1 or 2; found {value!r}")
    return int(value)


def _multi_margin(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, p: int, margin: float,
                  weight: Any) -> tuple[Array, Any]:
    # value: w_y / n * sum_{j != y} max(0, margin + x_j - x_y)^p   (x_j - x_y exact: TwoSum)
    # gradient: w_y / n * p max(0, m_j)^(p-1) at j != y (1/2 exactly on the kink for p = 1), minus
    #           their sum at y
    x = y_pred
    n = x.shape[-1]
    k, hit = _labels(xp, y_true, x)
    x_y = _array.take_last(xp, x, k)
    m = shifted_difference(xp, margin, x, x_y)
    m = xp.where(hit, -float("inf") + xp.zeros_like(m), m)  # the label's own term is left out
    active = xp.maximum(m, xp.zeros_like(m))
    terms = active if p == 1 else active * active
    w = _class_weight(xp, weight, k, x, "multi_margin")
    value = xp.sum(terms, axis=-1, keepdims=True) / n
    if w is not None:
        value = xmul(xp, w, value)
    value = value[..., 0]
    if not grad:
        return value, None
    slope = kink_slope(xp, m) if p == 1 else 2.0 * active
    slope = xp.where(hit, -xp.sum(slope, axis=-1, keepdims=True), slope) / n
    if w is not None:
        slope = xmul(xp, w, slope)
    return value, _nan_rows(xp, value, slope)


MULTI_MARGIN = LossDef(
    name="multi_margin", class_name="MultiMargin", kernel=_multi_margin,
    targets="index", sparse=True, aliases=(Alias("multi_margin_loss"), "MultiMarginLoss"),
    check_values=class_index_checker("multi_margin"),
    options=(Option("p", 1, _check_power, "the power of each hinge term, 1 or 2"),
             Option("margin", 1.0, check_real, "the margin between the label's score and the others"),
             Option("weight", None, check_weights,
                    "None, or one non-negative weight per class; a sample is scaled by its label's")),
    doc=r"""PyTorch's multiclass margin loss with integer labels, over the last axis.

    .. math:: \ell = \frac{w_y}{n}\sum_{j \ne y} \max(0,\ \mathrm{margin} - x_y + x_j)^p,
              \qquad \frac{\partial \ell}{\partial x_j} = \frac{w_y}{n}\,p\,\max(0, m_j)^{p-1}
              \ (j \ne y), \qquad \frac{\partial \ell}{\partial x_y} = -\sum_{j \ne y}
              \frac{\partial \ell}{\partial x_j}

    with :math:`m_j = \mathrm{margin} - x_y + x_j` computed with :math:`x_j - x_y` exact. Note the
    division by the number of classes :math:`n` (PyTorch's), not by :math:`n - 1`. For ``p=1`` the
    kink :math:`m_j = 0` gets slope 1/2 (PyTorch's hand-written backward gives 0 there); for ``p=2``
    the gradient is continuous.

    Shapes: ``y_pred`` ``(..., n)`` scores; ``y_true`` ``(...)`` (or ``(..., 1)``) integer labels in
    ``[0, n - 1]``; the result ``(...)``. PyTorch's class axis is 1 and its input at most 2-D; here
    the class axis is the last one and any leading shape works.

    Peers: PyTorch ``MultiMarginLoss(p, margin, weight)`` / ``F.multi_margin_loss`` (same value;
    ``reduction="mean"`` there is the mean over samples, as here). Optax's
    :func:`multiclass_hinge` and Keras's :func:`categorical_hinge` take the maximum over classes
    instead of the sum.

    Example (by hand: label 0, x = [1, 0.5, -1]: (max(0, 1 - 1 + 0.5) + max(0, 1 - 1 - 1)) / 3 = 1/6):

    >>> import losskit
    >>> round(float(losskit.multi_margin([0], [[1.0, 0.5, -1.0]])[0]), 12)
    0.166666666667
    """)


# ----------------------------------------------------------------------- multilabel margin (torch)


def _target_sets(xp: Any, y_true: Array, n: int) -> tuple[Array, Array, Array]:
    """``(index, listed, is_target)`` for PyTorch's multilabel targets: class indices padded with -1.

    ``index`` ``(..., t)`` integer indices (0 where not listed) and ``listed`` ``(..., t)`` the
    entries before the first -1, for the first ``t`` positions of each row, where ``t`` is the longest
    list in the batch (``n`` when the values are not concrete, under ``jax.jit``); ``is_target``
    ``(..., n)`` whether each class is listed. Memory and work are O(t n) per row, as in PyTorch.
    """
    pad = y_true < 0
    positions = xp.arange(n, device=_array.device(y_true))
    first_pad = xp.argmax(xp.astype(pad, xp.int32), axis=-1, keepdims=True)
    first = xp.where(xp.any(pad, axis=-1, keepdims=True), first_pad, xp.full_like(first_pad, n))
    t = n
    if _array.is_concrete(first) and math.prod(tuple(first.shape)):
        t = max(int(xp.max(first)), 1)
    listed = positions[:t] < first
    index = xp.where(listed, y_true[..., :t], xp.zeros_like(y_true[..., :t]))
    index = xp.astype(index, _array.index_dtype(xp, index))
    slot = xp.where(listed, index, xp.full_like(index, n))  # unlisted entries go to a spare slot n
    counts = _scatter_add_last(xp, slot, xp.astype(listed, xp.float32), n + 1)
    return index, listed, counts[..., :n] > 0


def _scatter_add_last(xp: Any, idx: Array, values: Array, size: int) -> Array:
    """``out[..., c] = sum of values[..., j] over j with idx[..., j] == c``, ``out`` of last size
    ``size``: O(t + size) per row."""
    shape = (*tuple(idx.shape[:-1]), size)
    backend = _array.backend_name(values)
    if backend == "torch":
        import torch

        zeros = torch.zeros(shape, dtype=values.dtype, device=values.device)
        return zeros.scatter_add(-1, idx.to(torch.int64), values)
    if backend == "jax":
        import jax.numpy as jnp

        rows = jnp.indices(tuple(idx.shape))[:-1]
        return jnp.zeros(shape, dtype=values.dtype).at[(*rows, idx)].add(values)
    n_rows = math.prod(shape[:-1])
    flat = (np.arange(n_rows).reshape(-1, 1) * size + np.reshape(idx, (n_rows, idx.shape[-1])))
    total = np.bincount(flat.reshape(-1), weights=np.reshape(values, (-1,)), minlength=n_rows * size)
    return total.reshape(shape).astype(values.dtype, copy=False)


def _multilabel_margin(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: 1/n sum_{k listed} sum_{i not a target} max(0, 1 - (x_{y_k} - x_i))   (x_i - x_{y_k}
    #        exact: TwoSum); a class listed twice counts twice (as in PyTorch)
    # gradient: 1/n [i not a target] sum_k a_ki  minus  1/n sum_{k: y_k = c} sum_i a_ki at targets c,
    #        a = 1 inside the margin, 1/2 on it
    x = y_pred
    n = x.shape[-1]
    index, listed, is_target = _target_sets(xp, y_true, n)
    t = index.shape[-1]
    rows = math.prod(tuple(x.shape[:-1]))
    block = t if not _array.is_concrete(x) else max(1, min(t, _PAIRS // max(1, rows * n)))
    value, g = None, None
    for start in range(0, t, block):  # blocks of target positions: memory O(block n) per row
        v, gb = _margin_pairs(xp, x, index[..., start:start + block], listed[..., start:start + block],
                              is_target, grad)
        value = v if value is None else value + v
        g = gb if g is None else (None if gb is None else g + gb)
    if not grad:
        return value / n, None
    return value / n, _nan_rows(xp, value / n, g / n)


_PAIRS = 1 << 21
"""Largest (target, class) margin table the kernel forms at once: 2M entries (16 MB in float64)."""


def _margin_pairs(xp: Any, x: Array, index: Array, listed: Array, is_target: Array,
                  grad: bool) -> tuple[Array, Array | None]:
    """The value sum (not divided by n) and gradient sum of the listed targets ``index`` (``(..., b)``)
    against every non-target class."""
    n = x.shape[-1]
    x_t = _array.take_last(xp, x, index)  # (..., b)
    m = shifted_difference(xp, 1.0, x[..., None, :], x_t[..., :, None])  # (..., b, i)
    counted = listed[..., :, None] & ~is_target[..., None, :]
    zero = xp.zeros_like(m)
    active = xp.where(counted, xp.maximum(m, zero), zero)
    value = xp.sum(xp.sum(active, axis=-1), axis=-1)
    if not grad:
        return value, None
    a = xp.where(counted, kink_slope(xp, m), zero)
    per_target = xp.where(listed, xp.sum(a, axis=-1), xp.zeros_like(x_t))  # (..., b)
    return value, xp.sum(a, axis=-2) - _scatter_add_last(xp, index, per_target, n)


def _check_target_lists(xp: Any, y_true: Array, y_pred: Array, **_: Any) -> None:
    n = y_pred.shape[-1]
    bad = (y_true != xp.round(y_true)) | (y_true < -1) | (y_true >= n)
    if _array.to_bool(xp.any(bad)):
        raise ValueError(f"multilabel_margin: y_true must hold class indices in [0, {n - 1}], padded "
                         "with -1 after the last one (PyTorch's MultiLabelMarginLoss targets); "
                         + _array.describe_range(xp, y_true, bad, "y_true"))


MULTILABEL_MARGIN = LossDef(
    name="multilabel_margin", class_name="MultiLabelMargin", kernel=_multilabel_margin,
    targets="index_list", check_values=_check_target_lists,
    aliases=(Alias("multilabel_margin_loss"), "MultiLabelMarginLoss", "MultilabelMargin"),
    doc=r"""PyTorch's multilabel margin loss: every target class above every other class by a margin of 1.

    .. math:: \ell = \frac{1}{n}\sum_{k} \sum_{i \notin Y} \max\bigl(0,\ 1 - (x_{y_k} - x_i)\bigr),
              \qquad \frac{\partial \ell}{\partial x_i} = \frac{1}{n}\sum_k a_{ki}\ (i \notin Y),
              \qquad \frac{\partial \ell}{\partial x_c} = -\frac{1}{n}\sum_{k: y_k = c}\sum_i a_{ki}

    ``y_true`` holds, per row, the target class indices :math:`y_0, y_1, \ldots` followed by ``-1``
    padding (PyTorch's layout: same shape as ``y_pred``; entries after the first -1 are ignored);
    :math:`Y` is the set of listed classes, :math:`a_{ki} = 1` inside the margin, 1/2 exactly on it,
    0 outside. A class listed twice counts twice, as in PyTorch. A row without targets has loss 0.
    The margin is computed with :math:`x_i - x_{y_k}` exact.

    Shapes: ``y_true`` and ``y_pred`` ``(..., n)`` (class indices as integers or whole-number floats in
    ``[-1, n - 1]``); the result ``(...)``. Cost :math:`O(t\,n)` time per row, with :math:`t` the
    longest target list of the batch (as PyTorch; :math:`t = n` under ``jax.jit``), and memory
    :math:`O(n)` per row beyond a 2M-entry block (:math:`O(t\,n)` under ``jax.jit``).

    Peers: PyTorch ``MultiLabelMarginLoss`` / ``F.multilabel_margin_loss`` (same value; its backward
    gives 0 exactly on the kink, losskit 1/2). Keras and Optax have no equivalent.

    Example (by hand: targets {1}, x = [0.1, 0.2, 0.4]: (max(0, 1 - 0.1) + max(0, 1 - (-0.2))) / 3
    = (0.9 + 1.2) / 3 = 0.7):

    >>> import losskit
    >>> round(float(losskit.multilabel_margin([[1, -1, -1]], [[0.1, 0.2, 0.4]])[0]), 12)
    0.7
    """)


# ------------------------------------------------------------------------- soft margins (torch)


def _soft_margin(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i softplus(-t_i x_i) = mean_i log(1 + exp(-t_i x_i))  (-t x exact for t = +-1)
    # gradient: -t_i sigmoid(-t_i x_i) / n
    z = -y_true * y_pred
    e = xp.exp(-xp.abs(z))
    value = xp.mean(softplus_pair(xp, z, e)[0], axis=-1)
    if not grad:
        return value, None
    return value, -y_true * sigmoid_pair(xp, z, e)[0] / y_pred.shape[-1]


SOFT_MARGIN = LossDef(
    name="soft_margin", class_name="SoftMargin", kernel=_soft_margin, targets="sign",
    aliases=(Alias("soft_margin_loss"), "SoftMarginLoss"),
    check_values=sign_checker("soft_margin", keras_rule=False),
    doc=r"""Logistic loss for labels -1 and 1 (PyTorch's soft margin loss), averaged over the last axis.

    .. math:: \ell = \frac{1}{n}\sum_i \log\bigl(1 + e^{-t_i x_i}\bigr),
              \qquad \frac{\partial \ell}{\partial x_i} = -\frac{t_i}{n}\,\sigma(-t_i x_i)

    computed as a stable softplus (finite and exact for any score, ``inf`` only for an infinite
    wrong score). Labels must be -1 or 1: any other value raises a ``ValueError`` (PyTorch computes
    with whatever it gets, e.g. ``log 2`` for a label 0).

    Shapes as for :func:`mean_squared_error`: ``y_true`` and ``y_pred`` ``(..., n)``, the result
    ``(...)``, the mean over the last axis (PyTorch's ``reduction="none"`` returns the elements and
    ``"mean"`` averages all of them: equal to the ``"sum_over_batch_size"`` reduction here).

    Peers: PyTorch ``SoftMarginLoss`` / ``F.soft_margin_loss``. Keras and Optax have no ±1 form
    (Optax's ``sigmoid_binary_cross_entropy`` takes 0/1 labels).

    Example (by hand: (log(1 + e^0) + log(1 + e^0)) / 2 = log 2 = 0.693147...):

    >>> import losskit
    >>> round(float(losskit.soft_margin([[1.0, -1.0]], [[0.0, 0.0]])[0]), 6)
    0.693147
    """)


def _multilabel_soft_margin(xp: Any, y_true: Array, y_pred: Array, *, grad: bool,
                            weight: Any) -> tuple[Array, Any]:
    # value: 1/n sum_i w_i (y_i softplus(-x_i) + (1 - y_i) softplus(x_i))  (non-negative terms)
    # gradient: w_i / n ((1 - y_i) sigmoid(x_i) - y_i sigmoid(-x_i))  (one exact term for 0/1 labels)
    y, x = y_true, y_pred
    n = x.shape[-1]
    e = xp.exp(-xp.abs(x))
    sp_pos, sp_neg = softplus_pair(xp, x, e)
    terms = xmul(xp, y, sp_neg) + xmul(xp, 1.0 - y, sp_pos)
    w = None
    if weight is not None:
        if not isinstance(weight, float) and len(weight) != n:
            raise ValueError(f"multilabel_soft_margin: weight has {len(weight)} entries; y_pred has "
                             f"{n} classes on its last axis, and weight needs one per class")
        w = weights_array(xp, weight, x)
        terms = xmul(xp, w + xp.zeros_like(terms), terms)
    value = xp.sum(terms, axis=-1) / n
    if not grad:
        return value, None
    sig_pos, sig_neg = sigmoid_pair(xp, x, e)
    g = xmul(xp, 1.0 - y, sig_pos) - xmul(xp, y, sig_neg)
    if w is not None:
        g = w * g
    return value, _nan_rows(xp, value, g / n)


MULTILABEL_SOFT_MARGIN = LossDef(
    name="multilabel_soft_margin", class_name="MultiLabelSoftMargin",
    kernel=_multilabel_soft_margin, targets="binary",
    aliases=(Alias("multilabel_soft_margin_loss"), "MultiLabelSoftMarginLoss", "MultilabelSoftMargin"),
    options=(Option("weight", None, check_weights,
                    "None, a number, or one non-negative weight per class (last axis)"),),
    domain=lambda opts: {"y_true": UNIT},
    doc=r"""PyTorch's multilabel soft margin loss: binary cross-entropy from logits, per-class weights,
    averaged over the classes (last axis).

    .. math:: \ell = \frac{1}{n}\sum_i w_i\bigl(y_i \log(1 + e^{-x_i}) + (1 - y_i)\log(1 + e^{x_i})\bigr),
              \qquad \frac{\partial \ell}{\partial x_i} = \frac{w_i}{n}\bigl(\sigma(x_i) - y_i\bigr)

    with :math:`w_i = 1` unless ``weight`` is given; every term is a non-negative stable softplus, so
    any logit gives an exact, finite value. Targets lie in [0, 1] (0/1 labels; soft targets work too).

    Shapes: ``y_true`` and ``y_pred`` ``(..., n)``; the result ``(...)``.

    Peers: PyTorch ``MultiLabelSoftMarginLoss(weight)`` (same value; it computes
    ``log_sigmoid``). It equals :func:`binary_crossentropy` with ``from_logits=True`` when no weight
    is given.

    Example (by hand: (log(1 + e^0) + log(1 + e^0)) / 2 = log 2 = 0.693147...):

    >>> import losskit
    >>> round(float(losskit.multilabel_soft_margin([[1.0, 0.0]], [[0.0, 0.0]])[0]), 6)
    0.693147
    """)


# ------------------------------------------------------------------------ perceptrons (Optax)


def _perceptron(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i max(0, -t_i f_i)   (exact products and maxima; one rounding in the mean)
    # gradient: -t_i / n where t_i f_i < 0, -t_i / (2n) where t_i f_i = 0, else 0
    t = y_true
    z = -t * y_pred
    value = xp.mean(xp.maximum(z, xp.zeros_like(z)), axis=-1)
    if not grad:
        return value, None
    g = -t * kink_slope(xp, z)
    g = xp.where(xp.isnan(z), z, g)
    return value, g / y_pred.shape[-1]


PERCEPTRON = LossDef(
    name="perceptron", class_name="Perceptron", kernel=_perceptron, targets="sign",
    aliases=(Alias("perceptron_loss"),),
    check_values=sign_checker("perceptron", keras_rule=False),
    doc=r"""Perceptron loss for labels -1 and 1, averaged over the last axis.

    .. math:: \ell = \frac{1}{n}\sum_i \max(0,\ -t_i f_i),
              \qquad \frac{\partial \ell}{\partial f_i} = -\frac{t_i}{n}\,[t_i f_i < 0]

    and :math:`-t_i/(2n)` exactly at :math:`f_i = 0` (average of the one-sided slopes, as autograd of
    ``jnp.maximum`` gives). Labels must be -1 or 1 (a ``ValueError`` otherwise).

    Shapes as for :func:`mean_squared_error`.

    Peers: Optax ``perceptron_loss(predictor_outputs, targets)`` returns the elements
    ``max(0, -t f)`` without averaging: its mean over the last axis is this loss. Keras and PyTorch
    have no perceptron loss.

    Example (by hand: (max(0, -0.5) + max(0, -(-1)(2))) / 2 = 1):

    >>> import losskit
    >>> float(losskit.perceptron([[1.0, -1.0]], [[0.5, 2.0]])[0])
    1.0
    """)


def _multiclass_perceptron(xp: Any, y_true: Array, y_pred: Array, *,
                           grad: bool) -> tuple[Array, Any]:
    # value: max_j s_j - s_y  (one rounding)
    # gradient: [j attains the maximum] - [j = y]; tied maxima get 1/2 each
    s = y_pred
    k, hit = _labels(xp, y_true, s)
    top = xp.max(s, axis=-1, keepdims=True)
    s_y = _array.take_last(xp, s, k)
    value = (top - s_y)[..., 0]
    if not grad:
        return value, None
    g = _max_weights(xp, s, top) - xp.astype(hit, s.dtype)
    return value, _nan_rows(xp, value, g)


MULTICLASS_PERCEPTRON = LossDef(
    name="multiclass_perceptron", class_name="MulticlassPerceptron",
    kernel=_multiclass_perceptron, targets="index", sparse=True,
    aliases=(Alias("multiclass_perceptron_loss"),),
    check_values=class_index_checker("multiclass_perceptron"),
    doc=r"""Multiclass perceptron loss with integer labels, over the last axis.

    .. math:: \ell = \max_j s_j - s_y,
              \qquad \frac{\partial \ell}{\partial s_j} = [j = j^*] - [j = y]

    with :math:`j^*` the best-scoring class; several tied best scores get 1/2 each (the average of
    each one's one-sided slopes), so a label tied for the best gets -1/2.

    Shapes: ``y_pred`` ``(..., n)`` scores; ``y_true`` ``(...)`` (or ``(..., 1)``) integer labels in
    ``[0, n - 1]``; the result ``(...)``.

    Peers: Optax ``multiclass_perceptron_loss(scores, labels)`` (same value; its autograd splits a
    tie of three or more scores evenly). Keras and PyTorch have none.

    Example (by hand: label 1, scores [0.3, 0.5, 2]: 2 - 0.5 = 1.5):

    >>> import losskit
    >>> float(losskit.multiclass_perceptron([1], [[0.3, 0.5, 2.0]])[0])
    1.5
    """)


__all__ = ["CATEGORICAL_HINGE", "HINGE", "MULTICLASS_HINGE", "MULTICLASS_PERCEPTRON",
           "MULTILABEL_MARGIN", "MULTILABEL_SOFT_MARGIN", "MULTI_MARGIN", "PERCEPTRON", "SOFT_MARGIN",
           "SQUARED_HINGE"]
