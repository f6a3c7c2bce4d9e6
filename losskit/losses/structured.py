"""Losses of structured predictions over a score vector: sparsemax (binary and multiclass),
Fenchel-Young with the sparsemax and softmax regularisers, and the softmax ranking loss.

The sparsemax projection :math:`p = \\operatorname{argmin}_{q \\in \\Delta} \\|q - z\\|^2` is
:math:`p_j = \\max(z_j - \\tau, 0)` with the threshold :math:`\\tau = (\\sum_{j \\in S} z_j - 1)/|S|`
over the support :math:`S` (found by sorting; Michelot 1986, Martins and Astudillo 2016). A small
:math:`p_j = z_j - \\tau` is a cancelling difference, so :math:`\\tau` is carried in double length
(a compensated sum of the support, divided by :math:`|S|` with its remainder) and
:math:`z_j - \\tau` formed with TwoSum: the projection is then exact to about an ulp of each
:math:`p_j`, however small. The Fenchel-Young loss of the Gini regulariser is written as
:math:`\\tfrac12 \\|p - y\\|^2 + \\sum_j y_j \\max(\\tau - z_j, 0)` (both sums of non-negative
terms), never as the difference of two quadratics that cancel when :math:`p` nears :math:`y`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _array, _double
from .._double import dd_sum, two_product, two_sum
from .._numerics import accurate_sum, restrict_to_kept, xmul, zero_excluded
from ._core import (
    AXIS,
    NONNEGATIVE,
    UNIT,
    Input,
    LossDef,
    Option,
    binary_checker,
    class_index_checker,
)
from .crossentropy import WHERE, cross_entropy_of_logits
from .segmentation import by_blocks

Array = Any


# ----------------------------------------------------------------------------- sparsemax projection


def _threshold(xp: Any, z: Array, mask: Array, widened: bool) -> tuple[Array, Array]:
    """``tau = (sum_{mask} z - 1) / |mask|`` over the last axis as a pair ``hi + lo`` (keepdims).

    Inputs promoted from float32 or narrower: the float64 sum is exact enough (``lo = 0``).
    Otherwise the masked sum is compensated (``dd_sum``), 1 is subtracted with TwoSum and the
    division by the integer ``k`` keeps its remainder: ``hi = a / k``, ``lo = (a - k hi + b) / k``
    with ``k hi`` split exactly by TwoProduct.
    """
    zero = xp.zeros_like(z)
    masked = xp.where(mask, z, zero)
    k = xp.sum(xp.astype(mask, z.dtype), axis=-1)
    k = xp.where(k > 0, k, xp.ones_like(k))
    if widened:
        hi = (xp.sum(masked, axis=-1) - 1.0) / k
        return hi[..., None], xp.zeros_like(hi)[..., None]
    s_hi, s_lo = dd_sum(xp, masked)
    a, b = two_sum(xp, s_hi, -xp.ones_like(s_hi))
    b = b + s_lo
    hi = a / k
    ph, pl = two_product(xp, hi, k)
    lo = (((a - ph) - pl) + b) / k
    lo = xp.where(xp.isfinite(lo), lo, xp.zeros_like(lo))
    return hi[..., None], lo[..., None]


def _gap(xp: Any, z: Array, hi: Array, lo: Array) -> tuple[Array, Array]:
    """``z - (hi + lo)`` as ``(u, v)`` with ``u + v`` the difference to about twice the working
    precision (``u = fl(z - hi)`` by TwoSum, its error and ``-lo`` in ``v``)."""
    u, v = two_sum(xp, z, -hi)
    v = xp.where(xp.isfinite(v), v, xp.zeros_like(v))
    return u, v - lo


def sparsemax_parts(xp: Any, z: Array, widened: bool) -> tuple[Array, Array, Array, Array]:
    """The sparsemax projection of each row of ``z`` (last axis): ``(support, u, v, k)`` with
    ``support`` the boolean support, ``u + v = z - tau`` in double length (so ``p = u + v`` on the
    support, ``tau - z = -(u + v)`` off it) and ``k`` its size (keepdims).

    The support is first read from the sorted scores (``1 + j z_(j) > sum_{i <= j} z_(i)``), then,
    with that threshold, re-read as ``z - tau > 0`` and the threshold recomputed: a score within
    rounding of the threshold may fall on either side of the first test, where the second is
    exact to double length (either choice gives the same ``tau`` to first order; the recomputation
    removes the remainder).
    """
    n = z.shape[-1]
    zs = -xp.sort(-z, axis=-1)
    cs = xp.cumulative_sum(zs, axis=-1)
    ranks = xp.arange(1, n + 1, dtype=z.dtype, device=_array.device(z))
    count = xp.sum(xp.astype(1.0 + ranks * zs > cs, z.dtype), axis=-1, keepdims=True)
    count = xp.astype(xp.clip(count, 1.0, float(n)), _array.index_dtype(xp, z))
    edge = _array.take_last(xp, zs, count - 1)
    support = z >= edge
    hi, lo = _threshold(xp, z, support, widened)
    u, v = _gap(xp, z, hi, lo)
    support = (u + v > 0) | (z == xp.max(z, axis=-1, keepdims=True))
    hi, lo = _threshold(xp, z, support, widened)
    u, v = _gap(xp, z, hi, lo)
    k = xp.sum(xp.astype(support, z.dtype), axis=-1, keepdims=True)
    return support, u, v, k


_U = 2.0 ** -53  # float64's unit roundoff
_BUDGET = 6.0 * 2.0 ** -24  # 6 float32 ulps (an ulp of v is at least 2**-24 |v|), before the final rounding


def _sparsemax_fy_plain(y: Any, z: Any, grad: bool, soft: bool) -> tuple[Any, Any, Any]:
    """:func:`_sparsemax_fy` of 2-D NumPy float64 arrays promoted from float32 (or narrower), in plain
    float64, and the rows whose error bound exceeds the budget (``redo``).

    Error analysis (u = 2**-53, n the row length, k the support size, M the largest |z| of the
    support). The scores are sorted, the support read from the sorted prefix sums and the threshold
    tau = (sum_S z - 1) / k, with an absolute error eps <= u ((k + 1) M + (1 + 2 |tau|) / k); z - tau
    is formed as (z - z_max) + (z_max - tau), the first exact (float32 values in float64), the second
    off by eps + u |z_max - tau|; for k = 1, z_max - tau = 1 exactly (eps = 0: a confident row is
    exact). So each z_j - tau is off by at most eps + 2 u D (D: the row's largest |z - tau| + max y),
    and the row is recomputed in double length if any score lies within 4 (eps + u D) of tau (the
    support would be ambiguous). value = 1/2 sum_S d^2 + sum_{not S} y (tau - z), d = (z - tau) - y
    on S and -y off it, non-negative terms: its error is at most (eps + 4 n u D) sum |d| + 4 n u value,
    required within 6 float32 ulps of the value. gradient d (minus c / k on S, c = 1 - sum y, off by
    n u): each element on S within (eps + 4 u D + n u) of exact, required within 6 ulps of it; off S
    -y exactly. Rounding to float32 adds half an ulp: 8 in all.
    """
    rows, n = z.shape
    r = np.arange(rows)
    zs = np.sort(z, axis=-1)[:, ::-1]
    cs = np.cumsum(zs, axis=-1)
    test = np.arange(1.0, n + 1.0) * zs
    test += 1.0
    k = np.clip(np.count_nonzero(test > cs, axis=-1), 1, n)
    del test
    top = zs[:, 0]
    tau = (cs[r, k - 1] - 1.0) / k
    one = k == 1
    gap = np.where(one, 1.0, top - tau)  # z_max - tau
    eps = np.where(one, 0.0, _U * ((k + 1) * np.maximum(np.abs(top), np.abs(zs[r, k - 1]))
                                   + (1.0 + 2.0 * np.abs(tau)) / k))
    low = zs[:, -1]
    big = np.maximum(gap, tau - low) + np.max(y, axis=-1)
    del zs, cs
    diff = np.subtract(z, top[:, None])
    diff += gap[:, None]
    support = diff > 0
    redo = ~(np.isfinite(top) & np.isfinite(low) & np.isfinite(big))
    redo |= np.count_nonzero(support, axis=-1) != k
    redo |= ~(np.min(np.abs(diff), axis=-1) >= 4.0 * (eps + _U * big))
    d = np.multiply(diff, support)
    d -= y
    np.minimum(diff, 0.0, out=diff)  # -(tau - z) off the support, 0 on it
    diff *= y
    value = -np.sum(diff, axis=-1)
    del diff
    absd = np.abs(d)
    sum_abs = np.sum(absd, axis=-1)
    np.multiply(d, d, out=absd)
    value += 0.5 * np.sum(absd, axis=-1)
    bound = (eps + 4.0 * n * _U * big) * sum_abs + 4.0 * n * _U * value
    redo |= ~(bound <= _BUDGET * value)
    if not grad:
        return value, None, redo
    if soft:
        c = 1.0 - np.sum(y, axis=-1)
        d -= support * (c / k)[:, None]
    err = eps + 4.0 * _U * big + (n * _U if soft else 0.0)
    np.abs(d, out=absd)
    smallest = np.min(absd, axis=-1, where=support, initial=np.inf)
    check = ~one | soft
    redo |= check & ~(err <= _BUDGET * smallest)
    return value, d, redo


def _sparsemax_fy(xp: Any, y: Array, z: Array, grad: bool, widened: bool,
                  soft: bool) -> tuple[Array, Any]:
    if xp is np and widened and z.ndim == 2:
        value, g, redo = _sparsemax_fy_plain(y, z, grad, soft)
        if np.any(redo):
            idx = np.nonzero(redo)[0]
            v_bad, g_bad = _sparsemax_fy_exact(np, y[idx], z[idx], grad, False, soft)
            value[idx] = v_bad
            if g is not None:
                g[idx] = g_bad
        return value, g
    return _sparsemax_fy_exact(xp, y, z, grad, widened, soft)


def _sparsemax_fy_exact(xp: Any, y: Array, z: Array, grad: bool, widened: bool,
                        soft: bool) -> tuple[Array, Any]:
    # value: 1/2 sum_j (p_j - y_j)^2 + sum_{j not in S} y_j (tau - z_j), non-negative terms, with
    #        p_j - y_j = (z_j - tau) - y_j in double length on the support (exact however close
    #        p is to y: u + v = z - tau, then TwoSum with -y) and -y_j off it; tau - z_j = -(u + v).
    # gradient: p - y, and on the support - c / |S| with c = 1 - sum_j y_j (0 for one-hot targets;
    #        the derivative of the shift-invariant form, see the docstring).
    # +inf scores: the limit puts the mass uniformly on them (scores 0 there, -inf elsewhere)
    top = z == float("inf")
    z = xp.where(xp.any(top, axis=-1, keepdims=True), xp.where(top, 0.0, -float("inf")), z)
    support, u, v, k = sparsemax_parts(xp, z, widened)
    zero = xp.zeros_like(z)
    w, x = two_sum(xp, u, -y)
    x = xp.where(xp.isfinite(x), x, zero)
    d = xp.where(support, w + (x + v), -y)
    below = xp.where(support, zero, -(u + v))  # tau - z_j >= 0 off the support
    terms = 0.5 * (d * d) + xmul(xp, y, below)
    nan = xp.isnan(z) | xp.isnan(y)
    terms = xp.where(nan, z + y, terms)
    value = xp.sum(terms, axis=-1) if widened else accurate_sum(xp, terms)
    if not grad:
        return value, None
    d = xp.where(xp.any(nan, axis=-1, keepdims=True), xp.full_like(d, float("nan")), d)
    if soft:
        ones = xp.ones_like(y[..., :1])
        c = accurate_sum(xp, xp.concat([ones, -y], axis=-1))[..., None]
        d = xp.where(support, d - c / k, d)
    return value, d


# ------------------------------------------------------------------------------- multiclass sparsemax


def _multiclass_sparsemax(xp: Any, y_true: Array, y_pred: Array, *, grad: bool,
                          widened: bool) -> tuple[Array, Any]:
    return by_blocks(_multiclass_sparsemax_rows, xp, y_true, y_pred, grad=grad, widened=widened)


def _multiclass_sparsemax_rows(xp: Any, y_true: Array, y_pred: Array, *, grad: bool,
                               widened: bool) -> tuple[Array, Any]:
    labels = xp.astype(y_true, _array.index_dtype(xp, y_true))
    classes = xp.arange(y_pred.shape[-1], device=_array.device(y_pred))
    onehot = xp.astype(labels[..., None] == classes, y_pred.dtype)
    return _sparsemax_fy(xp, onehot, y_pred, grad, widened, soft=False)


MULTICLASS_SPARSEMAX = LossDef(
    name="multiclass_sparsemax", class_name="MulticlassSparsemax", kernel=_multiclass_sparsemax,
    precision_aware=True, targets="index", sparse=True, options=(AXIS,),
    aliases=("multiclass_sparsemax_loss", "sparsemax_loss_multiclass"),
    check_values=class_index_checker("multiclass_sparsemax"),
    doc=r"""Multiclass sparsemax loss (Martins and Astudillo, 2016) of scores ``y_pred`` for integer
    labels ``y_true``, over the class ``axis``.

    With :math:`p = \operatorname{sparsemax}(z)` (the Euclidean projection of the scores onto the
    simplex, :math:`p_j = \max(z_j - \tau, 0)`, support :math:`S`) and the label :math:`k`:

    .. math:: \ell = \tfrac12 \|p - e_k\|^2 + \max(\tau - z_k, 0)
              = \sum_j p_j z_j - \tfrac12 \|p\|^2 + \tfrac12 - z_k,
              \qquad \frac{\partial \ell}{\partial z} = p - e_k,

    the Fenchel-Young loss of the Gini regulariser (:func:`fenchel_young` with one-hot targets). It
    is 0 exactly when :math:`p = e_k`, i.e. when :math:`z_k \ge z_j + 1` for every other class.
    Computed from the first form (non-negative terms, :math:`p_k - 1` and :math:`\tau` in double
    length), so a nearly right row keeps its tiny loss and its tiny gradient entries, where Optax's
    second form cancels.

    Shapes: ``y_pred`` ``(..., K)`` scores with the classes on ``axis``; ``y_true`` the same shape
    without that axis, integer labels in ``[0, K)``. Returns the shape of ``y_true``.

    Peers: Optax ``multiclass_sparsemax_loss(scores, labels)`` (2-D input, the classes last).
    Keras and PyTorch have none.

    Example (by hand: z = [2, 0.5] gives tau = 1, p = [1, 0]: label 0 costs 0; label 1 costs
    1/2 (1 + 1) + (1 - 0.5) = 1.5):

    >>> import losskit
    >>> [float(v) for v in losskit.multiclass_sparsemax([0, 1], [[2.0, 0.5], [2.0, 0.5]])]
    [0.0, 1.5]
    """)


# ------------------------------------------------------------------------------------ Fenchel-Young


def _fenchel_young(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool,
                   regularizer: str) -> tuple[Array, Any]:
    return by_blocks(_fenchel_young_rows, xp, y_true, y_pred, grad=grad, widened=widened,
                     regularizer=regularizer)


def _fenchel_young_rows(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool,
                        regularizer: str) -> tuple[Array, Any]:
    if regularizer == "sparsemax":
        return _sparsemax_fy(xp, y_true, y_pred, grad, widened, soft=True)
    # softmax: sum_j y_j (lse(z) - z_j) + sum_j y_j log y_j, the cross-entropy from logits (its
    # terms non-negative; a confident row keeps its tiny log1p, see crossentropy.cross_entropy_of_logits)
    # plus the targets' negative entropy (0 log 0 = 0). The two cancel when softmax(z) nears y.
    # gradient: (sum_j y_j) softmax(z) - y, as the cross-entropy's.
    value, g = _ce_logits(xp, y_true, y_pred, grad, widened)
    if xp is np:
        logs = np.zeros_like(y_true)
        np.log(y_true, out=logs, where=y_true > 0)
        logs *= y_true
        return value + np.sum(logs, axis=-1), g
    safe = xp.where(y_true > 0, y_true, xp.ones_like(y_true))
    if _double.is_jax(xp):  # y log 1 = 0 already at y = 0 (targets are finite): one select, not two
        return value + xp.sum(y_true * xp.log(safe), axis=-1), g
    negentropy = xp.sum(xmul(xp, y_true, xp.log(safe)), axis=-1)
    return value + negentropy, g


def _ce_logits(xp: Any, t: Array, x: Array, grad: bool, widened: bool) -> tuple[Array, Any]:
    """:func:`cross_entropy_of_logits`; for 2-D NumPy float64 arrays promoted from float32 (a block
    of rows, see :func:`by_blocks`) the same formula in fewer passes: e = exp(x - m) with the top's
    entry set to 0, the top's ``sum_{j != top} t_j`` summed directly (no cancellation), every term
    as the general kernel's widened path rounds it (float64 for float32 data: a few u of each
    non-negative term). A block with a non-finite value or gradient takes the general kernel.
    JAX float32/float64 arrays: the fast kernel of categorical cross-entropy from logits
    (:func:`losskit._backends.jax._cce_logits`, the same formula and contract in one fused pass,
    select-free; the general kernel's ``jnp.argmax`` and scatters cost 4-5x Optax under jax.jit)."""
    if _double.is_jax(xp) and _array.dtype_name(x.dtype) in ("float32", "float64"):
        from .._backends import jax as _jax_kernels

        return _jax_kernels._cce_logits(t, x, grad)
    if not (xp is np and widened and x.ndim == 2):
        return cross_entropy_of_logits(xp, t, x, grad, widened)
    rows = np.arange(x.shape[0])
    top = np.argmax(x, axis=-1)
    m = x[rows, top][:, None]
    e = np.subtract(x, m)
    np.exp(e, out=e)
    e[rows, top] = 0.0
    s = np.sum(e, axis=-1)
    w = np.subtract(m, x)
    w *= t
    total = np.sum(t, axis=-1)
    value = np.sum(w, axis=-1) + np.where(total == 0, 0.0, total * np.log1p(s))
    if not np.all(np.isfinite(value)):
        return cross_entropy_of_logits(xp, t, x, grad, widened)
    if not grad:
        return value, None
    inv = 1.0 / (1.0 + s)
    e *= (total * inv)[:, None]
    e -= t
    np.copyto(w, t)
    w[rows, top] = 0.0
    t_top = t[rows, top]
    e[rows, top] = (np.sum(w, axis=-1) - t_top * s) * inv
    return value, e


def _check_regularizer(name: str, value: Any) -> str:
    if value not in ("sparsemax", "softmax"):
        raise ValueError(f"{name} must be 'sparsemax' or 'softmax'; found {value!r}")
    return str(value)


FENCHEL_YOUNG = LossDef(
    name="fenchel_young", class_name="FenchelYoung", kernel=_fenchel_young, precision_aware=True,
    targets="distribution",
    options=(Option("regularizer", "sparsemax", _check_regularizer,
                    "'sparsemax' (the Gini negentropy 1/2 ||p||^2) or 'softmax' (the Shannon "
                    "negentropy sum p log p)"), AXIS),
    aliases=("fenchel_young_loss", "FenchelYoungLoss"),
    domain=lambda opts: {"y_true": UNIT},
    doc=r"""Fenchel-Young loss (Blondel, Martins and Niculae, 2020) of scores ``y_pred`` against
    target distributions ``y_true``, over ``axis``.

    .. math:: \ell = \Omega^*(z) + \Omega(y) - \langle y, z \rangle,
              \qquad \frac{\partial \ell}{\partial z} = \nabla\Omega^*(z) - y,

    evaluated at the scores shifted by the regulariser's normaliser (the sparsemax threshold
    :math:`\tau`, or the log-sum-exp), which leaves it unchanged for targets summing to 1 and makes it
    invariant under :math:`z \to z + c` when their sum is off by rounding:

    - ``regularizer="sparsemax"`` (default; :math:`\Omega(p) = \frac12\|p\|^2` on the simplex):
      :math:`\ell = \frac12\|p - y\|^2 + \sum_j y_j \max(\tau - z_j, 0)` with
      :math:`p = \operatorname{sparsemax}(z)`; gradient :math:`p - y` (minus
      :math:`(1 - \sum_j y_j)/|S|` on the support :math:`S`, 0 for exact distributions). Exact:
      non-negative terms, :math:`p - y` and :math:`\tau` in double length.
    - ``regularizer="softmax"`` (:math:`\Omega(p) = \sum_j p_j \log p_j`): :math:`\ell =
      \sum_j y_j(\operatorname{lse}(z) - z_j) + \sum_j y_j \log y_j
      = \mathrm{KL}(y \,\|\, \operatorname{softmax}(z))`; gradient
      :math:`(\sum_j y_j)\operatorname{softmax}(z) - y`. The cross-entropy and the entropy are each
      exact, and their difference is held to 8 ulp of the cross-entropy: it cancels when
      :math:`\operatorname{softmax}(z)` nears :math:`y` (use :func:`kl_div` on log-probabilities for
      that regime). With one-hot targets it is the cross-entropy, exact.

    :math:`\ell \ge 0`, with 0 exactly when the prediction map gives ``y``. Targets with a zero
    entry contribute nothing there (:math:`0 \log 0 = 0`).

    Shapes: ``y_true`` and ``y_pred`` ``(..., n)``; returns ``(...)``.

    Peers: Optax ``make_fenchel_young_loss(max_fun)(scores, targets)`` computes
    :math:`\Omega^*(z) - \langle y, z\rangle` without :math:`\Omega(y)`: with
    ``max_fun=jax.scipy.special.logsumexp`` it is ``fenchel_young(y, z, regularizer="softmax") -
    sum(y log y)``, the cross-entropy (equal for one-hot targets; the same gradient always); with
    the sparsemax conjugate :math:`\langle p, z\rangle - \frac12\|p\|^2` as ``max_fun`` it is
    ``fenchel_young(y, z) - ||y||^2 / 2`` (for targets summing to 1). ``multiclass_sparsemax_loss``
    is the sparsemax case with integer labels (:func:`multiclass_sparsemax`).

    Example (by hand: z = [2, 0.5] gives p = [1, 0]; y = [0.5, 0.5]: 1/2 (0.25 + 0.25) + 0.5 (1 -
    0.5) = 0.5):

    >>> import losskit
    >>> float(losskit.fenchel_young([[0.5, 0.5]], [[2.0, 0.5]])[0])
    0.5
    """)


# ------------------------------------------------------------------------------- binary sparsemax


def _sparse_plus(xp: Any, s: Array) -> tuple[Array, Array]:
    """``(sparse_plus(s), sparse_sigmoid(s))``: 0 / 0 for s <= -1, (s + 1)^2/4 / (s + 1)/2 between,
    s / 1 for s >= 1. ``s + 1`` is exact for s in [-2, -1/2] (Sterbenz), rounded once above."""
    one = xp.ones_like(s)
    zero = xp.zeros_like(s)
    a = s + 1.0
    value = xp.where(s <= -1.0, zero, xp.where(s >= 1.0, s, 0.25 * (a * a)))
    slope = xp.where(s <= -1.0, zero, xp.where(s >= 1.0, one, 0.5 * a))
    nan = xp.isnan(s)
    return xp.where(nan, s, value), xp.where(nan, s, slope)


def _sparsemax_binary(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    return by_blocks(_sparsemax_binary_rows, xp, y_true, y_pred, grad=grad)


def _sparsemax_binary_rows(xp: Any, y_true: Array, y_pred: Array, *, grad: bool
                           ) -> tuple[Array, Any]:
    # value: mean_j sparse_plus(s_j), s = -x where y = 1, x where y = 0 (the sparse analogue of
    #        the logistic loss softplus(-/+x)); non-negative terms
    # gradient: sign * sparse_sigmoid(s) / n, sign = -1 where y = 1
    n = y_pred.shape[-1]
    positive = y_true != 0
    s = xp.where(positive, -y_pred, y_pred)
    value, slope = _sparse_plus(xp, s)
    total = xp.mean(value, axis=-1)
    if not grad:
        return total, None
    return total, xp.where(positive, -slope, slope) / n


SPARSEMAX = LossDef(
    name="sparsemax", class_name="Sparsemax", kernel=_sparsemax_binary, targets="binary",
    options=(AXIS,), aliases=("sparsemax_loss", "binary_sparsemax_loss", "SparsemaxLoss"),
    domain=lambda opts: {"y_true": UNIT}, check_values=binary_checker("sparsemax"),
    doc=r"""Binary sparsemax loss of logits ``y_pred`` for 0/1 labels ``y_true``, averaged over
    ``axis`` (Blondel, Martins and Niculae, 2020, sec. 4.4).

    .. math:: \ell = \frac1n \sum_i \operatorname{sparse\_plus}(s_i), \quad s_i = (1 - 2y_i)\,x_i,
              \qquad \frac{\partial \ell}{\partial x_i} = \frac{(1 - 2y_i)\,
              \operatorname{sparse\_sigmoid}(s_i)}{n}

    with :math:`\operatorname{sparse\_plus}(s) = 0` for :math:`s \le -1`, :math:`(s+1)^2/4` for
    :math:`-1 < s < 1` and :math:`s` for :math:`s \ge 1`, and its derivative
    :math:`\operatorname{sparse\_sigmoid}(s) = \operatorname{clip}((s+1)/2, 0, 1)`: the Fenchel-Young
    loss of the sparse sigmoid, 0 once a logit is on the right side of :math:`\pm 1`.

    Shapes: ``y_true`` and ``y_pred`` the same shape; returns that shape without ``axis``. Labels
    other than 0 and 1 raise ``ValueError``.

    Peers: Optax ``sparsemax_loss(logits, labels)`` is elementwise (``reduction="none"`` with a
    trailing axis of size 1 here, or the mean over the last axis as above); it reads any non-zero
    label as 1. Keras and PyTorch have none.

    Example (by hand: x = 0 costs (0 + 1)^2/4 = 0.25 for either label; x = 3 with label 1 costs 0):

    >>> import losskit
    >>> float(losskit.sparsemax([[1.0, 1.0]], [[0.0, 3.0]])[0])
    0.125
    """)


# --------------------------------------------------------------------------------- ranking softmax


def _ranking_softmax(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool,
                     where: Array | None = None, weights: Array | None = None
                     ) -> tuple[Array, Any]:
    return by_blocks(_ranking_rows, xp, y_true, y_pred, grad=grad, widened=widened, where=where,
                     weights=weights, row_inputs=("where", "weights"))


def _ranking_rows(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool,
                  where: Array | None = None, weights: Array | None = None) -> tuple[Array, Any]:
    # value: sum_i t_i (lse_W(x) - x_i), t = labels * weights on the kept items W (0 elsewhere):
    #        the soft-target cross-entropy from logits, every term non-negative and a confident
    #        list keeping its tiny log1p (crossentropy.cross_entropy_of_logits); labels are not normalised.
    # gradient: (sum_i t_i) softmax_W(x) - t, 0 outside W; a list with no kept item gives 0.
    t = y_true if weights is None else xmul(xp, weights, y_true)
    if where is None:
        return _ce_logits(xp, t, y_pred, grad, widened)
    t, x, kept_any = restrict_to_kept(xp, t, y_pred, where, True, 0.0)
    value, g = cross_entropy_of_logits(xp, t, x, grad, widened)
    return zero_excluded(xp, value, g, where, kept_any)


RANKING_SOFTMAX = LossDef(
    name="ranking_softmax", class_name="RankingSoftmax", kernel=_ranking_softmax,
    precision_aware=True, targets="real", options=(AXIS,),
    inputs=(WHERE, Input("weights", "a non-negative weight per item, multiplying its label "
                         "(Optax's weights); None: 1", required=False, domain=NONNEGATIVE)),
    aliases=("ranking_softmax_loss", "softmax_ranking", "listnet"),
    domain=lambda opts: {"y_true": NONNEGATIVE},
    doc=r"""Softmax cross-entropy ranking loss of item scores ``y_pred`` against graded relevance
    labels ``y_true``, over the list ``axis`` (Optax's ``ranking_softmax_loss``; ListNet with the
    top-one probabilities).

    .. math:: \ell = -\sum_{i \in W} t_i \log\frac{e^{x_i}}{\sum_{j \in W} e^{x_j}},
              \qquad \frac{\partial \ell}{\partial x_i} = \Bigl(\sum_{j \in W} t_j\Bigr)
              \mathrm{softmax}_W(x)_i - t_i \ (i \in W), \quad 0 \ (i \notin W)

    with :math:`t = \text{labels} \times \text{weights}` (not normalised) and :math:`W` the items
    that ``where`` keeps (all by default). A list with no kept item gives 0 and a zero gradient; a
    list whose labels are all 0 gives 0. Computed as the cross-entropy from logits of
    :func:`categorical_crossentropy` (non-negative terms, a confident list keeps its tiny loss).

    Shapes: ``y_true``, ``y_pred`` and the optional ``where`` (booleans) and ``weights``
    (non-negative) ``(..., list_size)``, broadcast to ``y_pred``; returns ``(...)``.

    Peers: Optax ``ranking_softmax_loss(logits, labels, where=, weights=, reduce_fn=None)`` gives
    the same per-list values; its default ``reduce_fn=jnp.mean`` averages over the lists that keep an
    item, where the ``"sum_over_batch_size"`` reduction here averages over all lists (use
    ``reduction="sum"`` and divide by the number of lists that keep an item, or give those lists
    ``sample_weight`` 1 and the others 0 with ``"mean_with_sample_weight"``). Keras and PyTorch have
    none.

    Example (by hand: two items with scores 0 and 0, label 1 on the first: log 2 = 0.693147...):

    >>> import losskit
    >>> round(float(losskit.ranking_softmax([[1.0, 0.0]], [[0.0, 0.0]])[0]), 6)
    0.693147
    """)
