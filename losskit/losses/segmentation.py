"""Overlap losses for segmentation: Dice (and Jaccard) and Tversky, with each peer's smoothing.

One kernel serves all of them. With :math:`I = \\sum_i p_i t_i` (the soft intersection),
:math:`F_P = \\sum_i p_i (1 - t_i)` and :math:`F_N = \\sum_i t_i (1 - p_i)` (soft false positives and
negatives), the Tversky ratio is

.. math:: r = \\frac{I + s_n}{I + \\alpha F_P + \\beta F_N + s_d}

and the loss :math:`1 - r` is computed as :math:`N / D` with :math:`N = \\alpha F_P + \\beta F_N +
(s_d - s_n)` and :math:`D = I + \\alpha F_P + \\beta F_N + s_d`: every sum has non-negative terms, so
a near-perfect prediction (r within rounding of 1) keeps its small loss instead of cancelling in
``1 - r``, and an empty mask (tiny sums) keeps its relative accuracy. Dice is the case
:math:`\\alpha = \\beta = 1/2` (its smoothing constants halved), Jaccard :math:`\\alpha = \\beta = 1`;
with squared predictions (MONAI's ``squared_pred``) :math:`\\alpha F_P + \\beta F_N` becomes
:math:`\\alpha \\sum_i (p_i - t_i)^2`, again non-negative terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _array
from .._numerics import accurate_sum, sigmoid_pair
from ._core import (
    AXIS,
    FROM_LOGITS,
    UNIT,
    Interval,
    LossDef,
    Option,
    binary_checker,
    check_bool,
    check_nonnegative,
)
from ._registry import Alias

Array = Any

# Each convention's (s_n, s_d), in the scale of the loss's own formula: Dice's 2I / (P + T) and
# Tversky's I / (I + a FP + b FN). Keras adds backend.epsilon() = 1e-7 to the denominator only;
# Optax adds smooth = 1 to both terms of its Tversky-form ratio (I + 1)/(I + a FP + b FN + 1), which
# for Dice (a = b = 1/2) is (2I + 2)/(P + T + 2); MONAI adds smooth_nr = smooth_dr = 1e-5.
CONVENTIONS = {
    "keras": {"dice": (0.0, 1e-7), "tversky": (0.0, 1e-7)},
    "optax": {"dice": (2.0, 2.0), "tversky": (1.0, 1.0)},
    "monai": {"dice": (1e-5, 1e-5), "tversky": (1e-5, 1e-5)},
}


def check_smooth(name: str, value: Any) -> str | float | tuple[float, float]:
    """A convention name, one non-negative number (added to numerator and denominator), or a pair
    ``(smooth_nr, smooth_dr)`` of non-negative numbers (kept as a tuple: a JSON-ready config)."""
    if isinstance(value, str):
        if value not in CONVENTIONS:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, CONVENTIONS))}, a "
                             f"non-negative number or a pair (smooth_nr, smooth_dr); found {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} as a sequence must be a pair (smooth_nr, smooth_dr); found "
                             f"{len(value)} entries: {value!r}")
        return (check_nonnegative(f"{name}[0] (smooth_nr)", value[0]),
                check_nonnegative(f"{name}[1] (smooth_dr)", value[1]))
    try:
        return check_nonnegative(name, value)
    except TypeError:
        raise TypeError(f"{name} must be 'keras', 'optax', 'monai', a non-negative number or a pair "
                        f"(smooth_nr, smooth_dr); found {value!r}") from None


def smoothing(smooth: str | float | tuple[float, float], form: str) -> tuple[float, float]:
    """``(s_n, s_d)`` of a ``smooth`` option for the ``"dice"`` or ``"tversky"`` formula."""
    if isinstance(smooth, str):
        return CONVENTIONS[smooth][form]
    if isinstance(smooth, tuple):
        return smooth
    return (float(smooth), float(smooth))


def _overlap(xp: Any, t: Array, y_pred: Array, *, grad: bool, widened: bool, from_logits: bool,
             alpha: float, beta: float, s_n: float, s_d: float, squared: bool) -> tuple[Array, Any]:
    # value: N / D, N = A + (s_d - s_n), D = I + A + s_d, with I = sum p t and
    #        A = sum a p (1 - t) + b t (1 - p), or a sum (p - t)^2 (squared, a = b): sums of
    #        non-negative terms, each product rounded once (1 - p is exact for p >= 1/2 by
    #        Sterbenz, else rounded once; from logits it is sigmoid(-x), with full relative
    #        accuracy). Inputs promoted from float32 or narrower are summed plainly (float64 has 29
    #        spare bits); inputs in the compute precision with compensation (accurate_sum), so that
    #        long rows and every backend's summation order stay within a few ulps.
    #        s_d - s_n >= 0 (every convention) keeps N a sum of non-negative parts.
    # gradient: dL/dp_j = (A'_j (I + s_n) - t_j N) / D^2, written (A'_j u - t_j L) / D with
    #        u = (I + s_n) / D = 1 - L and L = N / D; A'_j = a (1 - t_j) - b t_j (its two parts kept
    #        apart: a (1 - t) u - t (b u + L), one of them 0 for a binary target), or 2a (p_j - t_j)
    #        (squared; both parts <= 0 at t = 1). Times p (1 - p) from logits.
    if widened and xp is np and not from_logits and not squared:
        return _overlap_plain(t, y_pred, grad, alpha, beta, s_n, s_d)
    if from_logits:
        e = xp.exp(-xp.abs(y_pred))
        p, q = sigmoid_pair(xp, y_pred, e)
    else:
        p = y_pred
        q = 1.0 - p
    total = (lambda v: xp.sum(v, axis=-1)) if widened else (lambda v: accurate_sum(xp, v))
    inter = total(p * t)
    if squared:
        # p - t: where t = 1, -(1 - p) = -q keeps q's accuracy (from logits: sigmoid(-x))
        d = xp.where(t == 1.0, -q, p - t)
        spread = alpha * total(d * d)
    else:
        spread = total(alpha * (p * (1.0 - t)) + beta * (t * q))
    num = spread + (s_d - s_n)
    den = inter + spread + s_d
    empty = den == 0  # both masks empty and s_d = 0: the perfect prediction, loss 0
    safe = xp.where(empty, xp.ones_like(den), den)
    value = xp.where(empty, xp.zeros_like(num), num / safe)
    if not grad:
        return value, None
    u = ((inter + s_n) / safe)[..., None]
    big_l = value[..., None]
    g = ((2.0 * alpha) * d * u - t * big_l if squared
         else (alpha * (1.0 - t)) * u - t * (beta * u + big_l))
    g = g / safe[..., None]
    if from_logits:
        g = g * (p * q)
    g = xp.where(empty[..., None], xp.zeros_like(g), g)
    return value, g


BLOCK = 1 << 15  # elements per block of rows in the NumPy paths: the temporaries stay in cache


def row_blocks(rows: int, n: int, block: int = BLOCK) -> list[slice]:
    """Slices of about ``block`` elements of whole rows (at least one row each)."""
    step = max(1, block // max(n, 1))
    return [slice(r, min(r + step, rows)) for r in range(0, rows, step)]


def by_blocks(kernel: Any, xp: Any, y_true: Array, y_pred: Array, *, grad: bool,
              row_inputs: tuple[str, ...] = (), **kw: Any) -> tuple[Array, Any]:
    """A row-wise kernel on 2-D NumPy input, run over blocks of about ``4 * BLOCK`` elements of
    whole rows: each of its full-size temporaries becomes block-sized and stays in cache (a fresh
    full-size array costs its page faults at every operation). The results are the kernel's, row by
    row; ``row_inputs`` names keyword arrays shaped like ``y_pred`` (sliced with it). Other input
    is passed through unchanged."""
    if xp is not np or y_pred.ndim != 2:
        return kernel(xp, y_true, y_pred, grad=grad, **kw)
    rows, n = y_pred.shape
    blocks = row_blocks(rows, n, 4 * BLOCK)
    if len(blocks) < 2:
        return kernel(xp, y_true, y_pred, grad=grad, **kw)
    value = np.empty(rows, dtype=y_pred.dtype)
    g = np.empty_like(y_pred) if grad else None
    for b in blocks:
        sliced = {k: (v[b] if k in row_inputs and v is not None else v) for k, v in kw.items()}
        v_b, g_b = kernel(xp, y_true[b], y_pred[b], grad=grad, **sliced)
        value[b] = v_b
        if g is not None:
            g[b] = g_b
    return value, g


def overlap_sums(t2: Any, p2: Any) -> tuple[Any, Any, Any, Any]:
    """Per row of 2-D float64 NumPy arrays (values promoted from float32 or narrower): the sums
    ``I = sum p t``, ``F_P = sum p (1 - t)``, ``F_N = sum t (1 - p)`` and ``T = sum t``, over blocks of
    rows with two block-sized temporaries.

    p t is exact in float64 (two 24-bit significands), so p (1 - t) = p - p t and t (1 - p) = t - p t
    are each rounded once and non-negative: the general kernel's terms. Each sum carries a relative
    error below n u (u = 2**-53, n the row length: 2**-33 for n = 10**6), far inside a float32 ulp.
    """
    rows, n = p2.shape
    sums = np.empty((4, rows))
    blocks = row_blocks(rows, n)
    first = blocks[0].stop * n if blocks else 0
    pt_buf, w_buf = np.empty(first), np.empty(first)
    for b in blocks:
        size = (b.stop - b.start) * n
        pt, w = pt_buf[:size].reshape(-1, n), w_buf[:size].reshape(-1, n)
        np.multiply(p2[b], t2[b], out=pt)
        np.sum(pt, axis=-1, out=sums[0, b])
        np.subtract(p2[b], pt, out=w)
        np.sum(w, axis=-1, out=sums[1, b])
        np.subtract(t2[b], pt, out=w)
        np.sum(w, axis=-1, out=sums[2, b])
        np.sum(t2[b], axis=-1, out=sums[3, b])
    return sums[0], sums[1], sums[2], sums[3]


def affine_gradient(t2: Any, k1: Any, k2: Any) -> Any:
    """``(1 - t) k1 - t k2`` with one coefficient pair per row (``(rows, 1)``), written once into a new
    float64 array over blocks of rows (one block-sized temporary). ``1 - t`` is exact for t >= 2**-29
    and rounded once below; two more roundings: a few u relative to each part."""
    rows, n = t2.shape
    g = np.empty((rows, n))
    blocks = row_blocks(rows, n)
    w_buf = np.empty(blocks[0].stop * n if blocks else 0)
    for b in blocks:
        w = w_buf[:(b.stop - b.start) * n].reshape(-1, n)
        np.subtract(1.0, t2[b], out=g[b])
        g[b] *= k1[b]
        np.multiply(t2[b], k2[b], out=w)
        g[b] -= w
    return g


def _overlap_plain(t: Any, p: Any, grad: bool, alpha: float, beta: float, s_n: float, s_d: float
                   ) -> tuple[Any, Any]:
    """:func:`_overlap` of NumPy probabilities promoted from float32 (or narrower) to float64: the
    sums by :func:`overlap_sums`, the gradient's two parts by :func:`affine_gradient` (N, D and each
    part within a few u of their values: far inside a float32 ulp; with a binary target one part is
    0, with soft targets the gradient is the documented difference of two terms)."""
    shape, n = p.shape, p.shape[-1]
    t2 = t.reshape(-1, n)
    inter, false_pos, false_neg, _ = overlap_sums(t2, p.reshape(-1, n))
    spread = alpha * false_pos + beta * false_neg
    num = spread + (s_d - s_n)
    den = inter + spread + s_d
    empty = den == 0  # both masks empty and s_d = 0: the perfect prediction, loss 0
    safe = np.where(empty, 1.0, den)
    value = np.where(empty, 0.0, num / safe)
    if not grad:
        return value.reshape(shape[:-1]), None
    # dL/dp = a (1 - t) u / D - t (b u + L) / D, u = (I + s_n) / D, L = N / D; 0 for an empty row
    u = (inter + s_n) / safe
    k1 = np.where(empty, 0.0, alpha * u / safe)[:, None]
    k2 = np.where(empty, 0.0, (beta * u + value) / safe)[:, None]
    return value.reshape(shape[:-1]), affine_gradient(t2, k1, k2).reshape(shape)


def _dice(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool, smooth: Any,
          squared_pred: bool, jaccard: bool, from_logits: bool) -> tuple[Array, Any]:
    s_n, s_d = smoothing(smooth, "dice")
    # (2I + s_n)/(P + T + s_d) is the Tversky ratio with a = b = 1/2 and halved constants;
    # MONAI's Jaccard (2I + s_n)/(2(P + T - I) + s_d) the one with a = b = 1
    a = 1.0 if jaccard else 0.5
    return _overlap(xp, y_true, y_pred, grad=grad, widened=widened, from_logits=from_logits,
                    alpha=a, beta=a, s_n=s_n / 2, s_d=s_d / 2, squared=squared_pred)


def _tversky(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool, alpha: float,
             beta: float, smooth: Any, from_logits: bool) -> tuple[Array, Any]:
    s_n, s_d = smoothing(smooth, "tversky")
    return _overlap(xp, y_true, y_pred, grad=grad, widened=widened, from_logits=from_logits,
                    alpha=alpha, beta=beta, s_n=s_n, s_d=s_d, squared=False)


def _domain(opts: Mapping[str, Any]) -> dict[str, Interval]:
    return {"y_true": UNIT} if opts["from_logits"] else {"y_true": UNIT, "y_pred": UNIT}


SMOOTH_DOC = ("the smoothing: 'keras' (add 1e-7 to the denominator only), 'optax' (add 1 to both "
              "terms of the Tversky-form ratio), 'monai' (add 1e-5 to both), one non-negative "
              "number s (add s to both, as MONAI's smooth_nr = smooth_dr = s or "
              "segmentation-models' smooth), or a pair (smooth_nr, smooth_dr)")

_SEGMENTATION_SHAPES = r"""
    Shapes: ``y_true`` and ``y_pred`` of the same shape; the overlap is taken over ``axis`` (one axis,
    the core's convention) and the result has the remaining shape. For images flatten the spatial
    axes into one: ``(B, C, H, W)`` -> ``(B, C, H*W)`` gives one value per image and class, and the
    default ``"sum_over_batch_size"`` reduction averages them over images and classes (MONAI's
    default). Keras's default ``axis=None`` (one overlap over the whole batch) is
    ``reshape(1, -1)``; its ``axis=(1, 2, 3)`` on ``(B, H, W, C)`` is ``reshape(B, -1)``.
    A multi-class softmax over the class axis (Optax's ``apply_softmax``, MONAI's ``softmax``) couples
    the per-class values, so it is not an option here: apply it first (its gradient chains through
    autograd). MONAI's ``include_background=False`` and Optax's ``ignore_background=True`` are
    ``y[:, 1:]`` (drop the first class before the call).
"""

DICE = LossDef(
    name="dice", class_name="Dice", kernel=_dice, precision_aware=True, targets="binary",
    options=(Option("smooth", "keras", check_smooth, SMOOTH_DOC),
             Option("squared_pred", False, check_bool,
                    "whether the denominator sums squares, sum p^2 + sum t^2 (MONAI's squared_pred)"),
             Option("jaccard", False, check_bool,
                    "MONAI's Jaccard form (2I + s_n) / (2(P + T - I) + s_d)"),
             FROM_LOGITS, AXIS),
    aliases=(Alias("DiceLoss", smooth="monai", note="MONAI's DiceLoss (smooth_nr = smooth_dr = 1e-5)"),
             Alias("dice_loss", smooth="optax",
                   note="Optax's dice_loss(predictions, targets) over classes: the mask and its "
                        "complement as two classes"),
             Alias("binary_dice_loss", smooth="optax", from_logits=True)),
    domain=_domain,
    doc=r"""Soft Dice loss over ``axis``: one minus the smoothed Dice coefficient.

    .. math:: \ell = 1 - \frac{2 I + s_n}{P + T + s_d}
              = \frac{\sum_i \bigl(p_i (1 - t_i) + t_i (1 - p_i)\bigr) + s_d - s_n}{P + T + s_d},

    with :math:`I = \sum_i p_i t_i`, :math:`P = \sum_i p_i`, :math:`T = \sum_i t_i`. Gradient, with
    :math:`D = P + T + s_d`:

    .. math:: \frac{\partial \ell}{\partial p_j} = \frac{(1 - 2t_j)(2I + s_n) - 2 t_j N}{D^2},
              \qquad N = D - 2I - s_n.

    It is computed as the quotient of two sums of non-negative terms (never as ``1 - ratio``), so a
    near-perfect prediction keeps its small loss and an empty mask its relative accuracy.
    ``from_logits=True`` applies the sigmoid (MONAI's ``sigmoid=True``; Optax's ``binary_dice_loss``)
    and differentiates with respect to the logits. ``squared_pred=True`` uses :math:`\sum p^2 + \sum
    t^2` in the denominator (numerator :math:`\sum (p_i - t_i)^2 + s_d - s_n`); ``jaccard=True``
    MONAI's :math:`1 - (2I + s_n)/(2(P + T - I) + s_d)`.

    ``smooth`` picks :math:`(s_n, s_d)`: ``"keras"`` (default, the function's name is Keras's)
    :math:`(0, 10^{-7})`, as ``keras.losses.dice``; ``"optax"`` :math:`(2, 2)`, which is Optax's
    ``dice_loss(smooth=1)`` (its ratio :math:`(I + 1)/((P + T)/2 + 1)`); ``"monai"``
    :math:`(10^{-5}, 10^{-5})`; a number :math:`s` gives :math:`(s, s)` (MONAI's ``smooth_nr =
    smooth_dr``, segmentation-models' ``smooth``); a pair gives :math:`(s_n, s_d)`. The peers
    disagree on an empty target with an empty prediction: Keras's convention gives 1 there, the
    others 0. The bound of 8 ulp holds for :math:`s_n \le s_d` (every convention above); with
    :math:`s_n = s_d = 0` an all-empty row gives 0 with a zero gradient (the limit of a perfect
    prediction; the peers give NaN). Soft (non-binary) targets keep the value exact; the gradient
    is then a difference of two terms that may cancel.
    """ + _SEGMENTATION_SHAPES + r"""
    Peers: ``keras.losses.dice(y_true, y_pred, axis=-1)`` is ``dice(y_true, y_pred)``; Optax
    ``dice_loss(p[..., None], t[..., None], apply_softmax=False, reduction="none", axis=-2)[..., 0]``
    is ``dice(t, p, smooth="optax")`` (and ``binary_dice_loss`` with ``from_logits=True``); MONAI
    ``DiceLoss(reduction="none", smooth_nr=a, smooth_dr=b, squared_pred=..., jaccard=...,
    sigmoid=...)`` on ``(B, C, N)`` is ``dice(..., smooth=(a, b), ...)``. PyTorch has no Dice loss.

    Example (by hand: I = 1, P = 1.5, T = 1; 1 - 2/(2.5 + 1e-7) = 0.2000000...):

    >>> import losskit
    >>> round(float(losskit.dice([[1.0, 0.0]], [[1.0, 0.5]])[0]), 6)
    0.2
    >>> round(float(losskit.dice([[1.0, 0.0]], [[1.0, 0.5]], smooth="optax")[0]), 6)
    0.111111
    """)

TVERSKY = LossDef(
    name="tversky", class_name="Tversky", kernel=_tversky, precision_aware=True, targets="binary",
    options=(Option("alpha", 0.5, check_nonnegative,
                    "the weight of the false positives sum p (1 - t) (Optax's, MONAI's and "
                    "Salehi et al.'s alpha; Keras's beta)"),
             Option("beta", 0.5, check_nonnegative,
                    "the weight of the false negatives sum t (1 - p) (Optax's, MONAI's and Salehi "
                    "et al.'s beta; Keras's alpha)"),
             Option("smooth", "keras", check_smooth, SMOOTH_DOC),
             FROM_LOGITS, AXIS),
    aliases=(Alias("TverskyLoss", smooth="monai", note="MONAI's TverskyLoss"), "tversky_loss"),
    domain=_domain,
    doc=r"""Tversky loss over ``axis``: one minus the smoothed Tversky index (Salehi et al., 2017).

    .. math:: \ell = 1 - \frac{I + s_n}{I + \alpha F_P + \beta F_N + s_d}
              = \frac{\alpha F_P + \beta F_N + s_d - s_n}{I + \alpha F_P + \beta F_N + s_d},

    with :math:`I = \sum_i p_i t_i`, :math:`F_P = \sum_i p_i (1 - t_i)`, :math:`F_N = \sum_i t_i (1 -
    p_i)`. Gradient, with :math:`D` the denominator and :math:`N` the numerator of the second form:

    .. math:: \frac{\partial \ell}{\partial p_j}
              = \frac{\bigl(\alpha (1 - t_j) - \beta t_j\bigr)(I + s_n) - t_j N}{D^2}.

    :math:`\alpha = \beta = 1/2` is the Dice loss (with the Tversky-form smoothing), :math:`\alpha =
    \beta = 1` the Jaccard loss. Computed as the quotient of sums of non-negative terms, so it keeps
    its digits near a perfect prediction and on empty masks. ``from_logits=True`` applies the
    sigmoid and differentiates with respect to the logits.

    ``alpha`` weighs the false positives, as in the paper, Optax (``dice_loss(alpha=, beta=)``),
    MONAI and segmentation-models. **Keras swaps the names**: its ``tversky(alpha=a, beta=b)``
    multiplies ``sum t (1 - p)`` by ``a``, so it is ``tversky(alpha=b, beta=a)`` here. ``smooth``
    picks :math:`(s_n, s_d)`: ``"keras"`` (default) :math:`(0, 10^{-7})`; ``"optax"`` :math:`(1, 1)`
    (Optax's ``smooth=1``); ``"monai"`` :math:`(10^{-5}, 10^{-5})`; a number :math:`s` gives
    :math:`(s, s)`, a pair :math:`(s_n, s_d)`. The bound of 8 ulp holds for :math:`s_n \le s_d`;
    with soft targets the gradient is a difference that may cancel.
    """ + _SEGMENTATION_SHAPES + r"""
    Peers: ``keras.losses.tversky(t, p, alpha=b, beta=a, axis=-1)`` is ``tversky(t, p, alpha=a,
    beta=b)``; Optax ``dice_loss(p[..., None], t[..., None], alpha=a, beta=b, apply_softmax=False,
    reduction="none", axis=-2)[..., 0]`` is ``tversky(t, p, alpha=a, beta=b, smooth="optax")``;
    MONAI ``TverskyLoss(alpha=a, beta=b, smooth_nr=s, smooth_dr=s)`` is ``smooth=s``. PyTorch has
    none.

    Example (by hand: I = 1, FP = 0.5, FN = 0, alpha = 0.3: 1 - 1/(1 + 0.15 + 1e-7) = 0.130434...):

    >>> import losskit
    >>> round(float(losskit.tversky([[1.0, 0.0]], [[1.0, 0.5]], alpha=0.3, beta=0.7)[0]), 6)
    0.130435
    """)


# ------------------------------------------------------------------------------ generalized Dice


def _generalized_dice(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool,
                      classes: int, w_type: str, smooth: Any, from_logits: bool
                      ) -> tuple[Array, Any]:
    # Each row holds `classes` masks one after the other; with T_c, I_c and the per-class spread
    # A_c = sum_n p (1 - t) + t (1 - p) >= 0 (non-negative terms, as in _overlap):
    # value: N / D, N = sum_c w_c A_c + (s_d - s_n), D = sum_c w_c (2 I_c + A_c) + s_d
    #        (= 1 - (2 sum_c w_c I_c + s_n) / (sum_c w_c (P_c + T_c) + s_d)); w_c from T_c.
    # gradient: w_c ((1 - 2t)(2 I_w + s_n) - 2 t N) / D^2, I_w = sum_c w_c I_c, written as
    #        w_c ((1 - t) u - t (u + 2 L)) / D with u = (2 I_w + s_n) / D, L = N / D; from logits
    #        times p (1 - p).
    s_n, s_d = smoothing(smooth, "dice")
    shape = tuple(y_pred.shape)
    n = shape[-1] // classes
    if widened and xp is np and not from_logits:
        return _generalized_dice_plain(y_true, y_pred, grad, classes, w_type, s_n, s_d)
    t = xp.reshape(y_true, (*shape[:-1], classes, n))
    x = xp.reshape(y_pred, (*shape[:-1], classes, n))
    if from_logits:
        p, q = sigmoid_pair(xp, x, xp.exp(-xp.abs(x)))
    else:
        p, q = x, 1.0 - x
    total = (lambda v: xp.sum(v, axis=-1)) if widened else (lambda v: accurate_sum(xp, v))
    inter = total(p * t)
    spread = total(p * (1.0 - t) + t * q)
    volume = xp.sum(t, axis=-1)
    if w_type == "uniform":
        w = xp.ones_like(volume)
    else:
        # MONAI: w = 1 / T_c^2 ("square") or 1 / T_c ("simple"); an empty class's infinite weight
        # becomes the largest finite weight of the sample (0 when every class is empty)
        empty = volume == 0
        safe = xp.where(empty, xp.ones_like(volume), volume)
        w = 1.0 / (safe * safe) if w_type == "square" else 1.0 / safe
        w = xp.where(empty, xp.zeros_like(w), w)
        w = xp.where(empty, xp.max(w, axis=-1, keepdims=True) + xp.zeros_like(w), w)
    num = total(w * spread) + (s_d - s_n)
    inter_w = total(w * inter)
    den = 2.0 * inter_w + (num - (s_d - s_n)) + s_d
    zero_den = den == 0
    safe_den = xp.where(zero_den, xp.ones_like(den), den)
    value = xp.where(zero_den, xp.zeros_like(num), num / safe_den)
    if not grad:
        return value, None
    u = ((2.0 * inter_w + s_n) / safe_den)[..., None, None]
    big_l = value[..., None, None]
    g = w[..., None] * ((1.0 - t) * u - t * (u + 2.0 * big_l)) / safe_den[..., None, None]
    if from_logits:
        g = g * (p * q)
    g = xp.where(zero_den[..., None, None], xp.zeros_like(g), g)
    return value, xp.reshape(g, shape)


def _class_weights(volume: Any, w_type: str) -> Any:
    """MONAI's weights from the class volumes ``(..., classes)``: 1 / T_c^2, 1 / T_c or 1; an empty
    class takes the largest finite weight of its sample (0 when every class is empty)."""
    if w_type == "uniform":
        return np.ones_like(volume)
    empty = volume == 0
    safe = np.where(empty, 1.0, volume)
    w = 1.0 / (safe * safe) if w_type == "square" else 1.0 / safe
    w = np.where(empty, 0.0, w)
    return np.where(empty, np.max(w, axis=-1, keepdims=True), w)


def _generalized_dice_plain(y_true: Any, y_pred: Any, grad: bool, classes: int, w_type: str,
                            s_n: float, s_d: float) -> tuple[Any, Any]:
    """:func:`_generalized_dice` of NumPy probabilities promoted from float32 (or narrower): the
    per-class sums by :func:`overlap_sums` (non-negative terms, n u relative), the weighted sums over
    the classes plainly (C u more), the gradient's two parts by :func:`affine_gradient`."""
    shape = tuple(y_pred.shape)
    n = shape[-1] // classes
    t2 = y_true.reshape(-1, n)
    inter, false_pos, false_neg, volume = overlap_sums(t2, y_pred.reshape(-1, n))
    inter, volume = inter.reshape(-1, classes), volume.reshape(-1, classes)
    spread = (false_pos + false_neg).reshape(-1, classes)
    w = _class_weights(volume, w_type)
    num = np.sum(w * spread, axis=-1) + (s_d - s_n)
    inter_w = np.sum(w * inter, axis=-1)
    den = 2.0 * inter_w + (num - (s_d - s_n)) + s_d
    zero_den = den == 0
    safe = np.where(zero_den, 1.0, den)
    value = np.where(zero_den, 0.0, num / safe)
    if not grad:
        return value.reshape(shape[:-1]), None
    # w_c ((1 - t) u - t (u + 2L)) / D, u = (2 I_w + s_n) / D, L = N / D; 0 where D = 0
    u = ((2.0 * inter_w + s_n) / safe)[:, None]
    k1 = np.where(zero_den[:, None], 0.0, w * (u / safe[:, None]))
    k2 = np.where(zero_den[:, None], 0.0, w * ((u + 2.0 * value[:, None]) / safe[:, None]))
    g = affine_gradient(t2, k1.reshape(-1, 1), k2.reshape(-1, 1))
    return value.reshape(shape[:-1]), g.reshape(shape)


def _check_classes(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer (the number of classes whose masks the "
                         f"reduced axis holds one after the other); found {value!r}")
    return int(value)


def _check_w_type(name: str, value: Any) -> str:
    if value not in ("square", "simple", "uniform"):
        raise ValueError(f"{name} must be 'square', 'simple' or 'uniform'; found {value!r}")
    return str(value)


def _check_layout(xp: Any, y_true: Array, y_pred: Array, *, classes: int, **_: Any) -> None:
    size = y_pred.shape[-1]
    if size % classes:
        raise ValueError(f"generalized_dice: the reduced axis has {size} entries, which is not a "
                         f"multiple of classes={classes}; it must hold {classes} masks of equal size "
                         f"(y_pred shape {tuple(y_pred.shape)} with the reduced axis last)")


GENERALIZED_DICE = LossDef(
    name="generalized_dice", class_name="GeneralizedDice", kernel=_generalized_dice,
    precision_aware=True, targets="binary",
    options=(Option("classes", 1, _check_classes,
                    "the number C of class masks the reduced axis holds, one after the other (1: "
                    "the whole axis is one mask, where the weight only rescales the smoothing)"),
             Option("w_type", "square", _check_w_type,
                    "the class weights from the target volumes T_c: 'square' 1/T_c^2 (Sudre et al.), "
                    "'simple' 1/T_c, 'uniform' 1 (MONAI's w_type)"),
             Option("smooth", "monai", check_smooth, SMOOTH_DOC),
             FROM_LOGITS, AXIS),
    aliases=(Alias("GeneralizedDiceLoss", smooth="monai", note="MONAI's GeneralizedDiceLoss"),
             "generalized_dice_loss"),
    domain=_domain, check_values=_check_layout,
    doc=r"""Generalized Dice loss (Sudre et al., 2017) over ``axis``, which holds the ``classes``
    masks of one sample one after the other.

    .. math:: \ell = 1 - \frac{2 \sum_c w_c I_c + s_n}{\sum_c w_c (P_c + T_c) + s_d},
              \qquad w_c = T_c^{-2}\ (\text{square}),\ T_c^{-1}\ (\text{simple}),\ 1\ (\text{uniform})

    with, per class :math:`c`, :math:`I_c = \sum_n p_{cn} t_{cn}`, :math:`P_c = \sum_n p_{cn}`,
    :math:`T_c = \sum_n t_{cn}`. An empty class (:math:`T_c = 0`) takes the largest weight of the
    other classes of its sample (0 if all are empty), as MONAI does. Gradient, with :math:`D` the
    denominator, :math:`N = D - 2\sum_c w_c I_c - s_n` and :math:`I_w = \sum_c w_c I_c`:

    .. math:: \frac{\partial \ell}{\partial p_{cn}}
              = w_c\,\frac{(1 - 2t_{cn})(2 I_w + s_n) - 2 t_{cn} N}{D^2}

    (the weights depend on the targets only). Computed like :func:`dice` as a quotient of sums of
    non-negative terms. ``smooth`` as for :func:`dice` (default ``"monai"``, :math:`(10^{-5},
    10^{-5})`: MONAI is the peer with this loss); ``from_logits=True`` applies the sigmoid.

    Shapes: ``y_true`` and ``y_pred`` ``(..., C * N)``: a channels-first ``(B, C, H, W)`` tensor as
    ``y.reshape(B, -1)`` (channels-last: ``np.moveaxis(y, -1, 1).reshape(B, -1)``); returns ``(...)``,
    one value per sample. The reduced axis must be a multiple of ``classes``; under ``jax.jit`` the
    check cannot run (the shapes are still static: a mismatch fails in the reshape).

    Peers: MONAI ``GeneralizedDiceLoss(w_type=..., smooth_nr=a, smooth_dr=b, sigmoid=...,
    reduction="none")`` on ``(B, C, N)`` is ``generalized_dice(t.reshape(B, -1), p.reshape(B, -1),
    classes=C, w_type=..., smooth=(a, b))``. Optax's ``multiclass_generalized_dice_loss`` is a
    different loss: per-class Dice losses multiplied by batch-level weights :math:`\propto 1/(T_c^2 +
    10^{-7})` (summed over the whole batch) and averaged: that is :func:`dice` on ``(B, C, N)`` with
    ``smooth="optax"`` and those weights, broadcast to ``(B, C)``, as ``sample_weight``. Keras and
    PyTorch have none.

    Example (by hand: two classes of two pixels, t = [1, 0 | 0, 1], p = [1, 0 | 0.5, 0.5];
    w = [1, 1]; 1 - (2 (1 + 0.5) + 1e-5)/(1 + 1 + 1 + 1 + 1e-5) = 0.2499994...):

    >>> import losskit
    >>> round(float(losskit.generalized_dice([[1.0, 0.0, 0.0, 1.0]], [[1.0, 0.0, 0.5, 0.5]],
    ...                                      classes=2)[0]), 6)
    0.249999
    """)



# ------------------------------------------------------------------------------------ Lovasz hinge


def _lovasz_hinge(xp: Any, y_true: Array, y_pred: Array, *, grad: bool,
                  widened: bool) -> tuple[Array, Any]:
    return by_blocks(_lovasz_rows, xp, y_true, y_pred, grad=grad, widened=widened)


def _lovasz_rows(xp: Any, y_true: Array, y_pred: Array, *, grad: bool,
                 widened: bool) -> tuple[Array, Any]:
    # value: sum_k relu(e_(k)) g_k over the errors e = 1 - x s (s = 2t - 1) sorted in decreasing
    #        order, g the increments of the Jaccard loss along that order (Berman et al., 2018):
    #        with I_k = G - (positives among the first k), U_k = G + (negatives among the first k)
    #        (G the number of positives; integers, exact), g_1 = (U_1 - I_1) / U_1 and, for k > 1,
    #        g_k = 1 / U_k at a positive, I_k / (U_k (U_k - 1)) at a negative: j_k - j_{k-1} formed
    #        without subtracting, one or two roundings. Every term is non-negative; 1 - x s is exact
    #        near 0 (Sterbenz) and rounded once elsewhere; summed with compensation unless the inputs
    #        were promoted from float32 or narrower.
    # gradient: -s_i g_(rank of i) where e_i > 0, 0 where e_i < 0 (at e_i = 0, half of it: the
    #        average of the one-sided slopes)
    n = y_pred.shape[-1]
    s = 2.0 * y_true - 1.0
    e = 1.0 - y_pred * s
    if xp is np:  # quicksort, then the rows with tied errors again with the stable sort
        neg = np.negative(e)
        order = np.argsort(neg, axis=-1)
        e_sorted = np.take_along_axis(e, order, axis=-1)
        tied = np.any(e_sorted[..., 1:] == e_sorted[..., :-1], axis=-1)
        if np.any(tied):
            order[tied] = np.argsort(neg[tied], axis=-1, kind="stable")
            e_sorted[tied] = np.take_along_axis(e[tied], order[tied], axis=-1)
        del neg
    else:
        order = xp.argsort(-e, axis=-1, stable=True)
        e_sorted = _array.take_last(xp, e, order)
    t_sorted = _array.take_last(xp, y_true, order)
    positives = xp.sum(y_true, axis=-1, keepdims=True)
    seen = xp.cumulative_sum(t_sorted, axis=-1)
    ranks = xp.arange(1, n + 1, dtype=e.dtype, device=_array.device(e))
    inter = positives - seen
    union = positives + (ranks - seen)
    first = (union[..., :1] - inter[..., :1]) / union[..., :1]
    prev = xp.where(union > 1.0, union - 1.0, xp.ones_like(union))
    g = xp.where(t_sorted > 0, 1.0 / union, inter / (union * prev))
    g = xp.concat([first, g[..., 1:]], axis=-1)
    zero = xp.zeros_like(e)
    terms = xp.where(e_sorted > 0, e_sorted * g, zero)
    value = xp.sum(terms, axis=-1) if widened else accurate_sum(xp, terms)
    nan = xp.any(xp.isnan(y_pred), axis=-1)
    value = xp.where(nan, xp.full_like(value, float("nan")), value)
    if not grad:
        return value, None
    if xp is np:  # scatter the sorted slopes back (O(n)) rather than sorting again for the ranks
        slope = np.where(e_sorted > 0, g, np.where(e_sorted == 0, 0.5 * g, 0.0))
        out = np.empty_like(e)
        np.put_along_axis(out, order, slope, axis=-1)
        out *= s
        np.negative(out, out=out)
        out[nan] = np.nan
        return value, out
    ranks_of = xp.argsort(order, axis=-1, stable=True)
    g_here = _array.take_last(xp, g, ranks_of)
    slope = xp.where(e > 0, g_here, xp.where(e == 0, 0.5 * g_here, zero))
    return value, xp.where(nan[..., None], xp.full_like(e, float("nan")), -s * slope)


LOVASZ_HINGE = LossDef(
    name="lovasz_hinge", class_name="LovaszHinge", kernel=_lovasz_hinge, targets="binary",
    precision_aware=True,
    options=(AXIS,), aliases=("LovaszHingeLoss", "lovasz_hinge_loss", "LovaszLoss"),
    domain=lambda opts: {"y_true": UNIT},
    check_values=binary_checker("lovasz_hinge", "hold binary masks of 0 and 1"),
    doc=r"""Lovász hinge loss (Berman, Rannen Triki and Blaschko, 2018) of logits ``y_pred`` for
    binary masks ``y_true``, over ``axis``: the Lovász extension of the Jaccard loss applied to the
    hinge errors.

    .. math:: \ell = \sum_{k=1}^{n} \max(e_{(k)}, 0)\, g_k,
              \qquad \frac{\partial \ell}{\partial x_i} = -s_i\, g_{r(i)}\,[e_i > 0]

    with :math:`s = 2t - 1`, errors :math:`e = 1 - x s` sorted in decreasing order
    (:math:`e_{(1)} \ge e_{(2)} \ge \dots`, :math:`r(i)` the rank of :math:`e_i`) and
    :math:`g_k = J_k - J_{k-1}` the increments of the Jaccard loss :math:`J_k = 1 - I_k / U_k` of the
    first :math:`k` pixels predicted positive (:math:`I_k` = positives not among them, :math:`U_k` =
    all positives plus the negatives among them). The increments are formed without subtracting
    (:math:`1/U_k` at a positive, :math:`I_k / (U_k (U_k - 1))` at a negative), so every term is
    non-negative and the value and gradient are exact. At :math:`e_i = 0` the gradient is half the
    slope (the average of the one-sided slopes); at tied errors it is the subgradient of the
    stable sort order.

    Shapes: ``y_true`` (0/1) and ``y_pred`` (logits) of the same shape; the result has the shape
    without ``axis``: one value per image is the reference's ``per_image=True`` on
    ``(B, H*W)``, and ``per_image=False`` is ``reshape(1, -1)``.

    Peers: the reference implementation's ``lovasz_hinge(logits, labels, per_image)`` (no
    ``ignore``), kornia's ``LovaszHingeLoss`` and segmentation-models' ``LovaszLoss(mode="binary")``
    compute the same value (their gradients come from autograd through the sort). Keras, PyTorch and
    Optax have none.

    Example (by hand: t = [1, 0], x = [0, 0]: errors [1, 1]; J_1 = 1 - 0/1 = 1 (the positive
    first), g = [1, 0]: loss 1):

    >>> import losskit
    >>> float(losskit.lovasz_hinge([[1.0, 0.0]], [[0.0, 0.0]])[0])
    1.0
    """)


__all__ = ["CONVENTIONS", "DICE", "GENERALIZED_DICE", "LOVASZ_HINGE", "TVERSKY", "check_smooth",
           "smoothing"]
