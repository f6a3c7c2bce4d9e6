"""Classification losses of the catalog: focal (binary and categorical), generalized cross-entropy,
Poly-1 cross-entropy and the negative log-likelihood on log-probabilities.

As in ``crossentropy.py``, nothing is clipped: every value is a sum of non-negative terms, the
probabilities and their complements come from logits without forming ``1 - (1 - tiny)``, and powers
are taken of relatively accurate bases (``pow`` of a base with relative error ``d`` has relative
error ``gamma d``, where ``exp(gamma log(base))`` would have ``|gamma log(base)| d``: 2000 ulp at a
logit of 1000).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import _array
from .._numerics import (
    check_label_kept,
    exp_difference,
    exp_scaled_difference,
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
    Interval,
    LossDef,
    Option,
    check_bool,
    check_fraction,
    check_nonnegative,
    check_optional_int,
    check_real,
    check_weights,
    class_index_checker,
    weights_array,
)
from ._registry import Alias
from .crossentropy import WHERE

Array = Any


def _probability_domain(opts: Mapping[str, Any]) -> dict[str, Interval]:
    return {"y_true": UNIT} if opts["from_logits"] else {"y_true": UNIT, "y_pred": UNIT}


# ---------------------------------------------------------------------------------- binary focal


def _binary_focal(xp: Any, y_true: Array, y_pred: Array, *, grad: bool,
                  apply_class_balancing: bool, alpha: float, gamma: float, from_logits: bool,
                  label_smoothing: float, where: Array | None = None) -> tuple[Array, Any]:
    # t = y (1 - ls) + ls/2 and c = 1 - t = (1 - y)(1 - ls) + ls/2, each from its own formula (for a
    # hard label one of them is ls/2 exactly; 1 - t would cancel), and 1 - 2t = (1 - 2y)(1 - ls)
    y, ls = y_true, label_smoothing
    t = y * (1.0 - ls) + 0.5 * ls if ls else y
    c = (1.0 - y) * (1.0 - ls) + 0.5 * ls if ls else 1.0 - y
    slope = (1.0 - 2.0 * y) * (1.0 - ls) if ls else 1.0 - 2.0 * y
    n = y_pred.shape[-1]
    if from_logits:
        # u = 1 - p_t = t sigmoid(-z) + (1-t) sigmoid(z)     b = t softplus(-z) + (1-t) softplus(z)
        # both sums of non-negative terms, each relatively accurate in both tails
        z = y_pred
        e = xp.exp(-xp.abs(z))
        s, sc = sigmoid_pair(xp, z, e)
        sp_pos, sp_neg = softplus_pair(xp, z, e)
        u = xmul(xp, t, sc) + xmul(xp, c, s)
        b = xmul(xp, t, sp_neg) + xmul(xp, c, sp_pos)
    else:
        # u = t (1-p) + (1-t) p                              b = -t log p - (1-t) log(1-p)
        p = y_pred
        log_p, log_q = log_both(xp, p)
        u = xmul(xp, t, 1.0 - p) + xmul(xp, c, p)
        b = xmul(xp, t, -log_p) + xmul(xp, c, -log_q)
    focal = u ** gamma  # pow of an accurate base (see the module docstring); 0 ** 0 = 1
    w = t * alpha + c * (1.0 - alpha) if apply_class_balancing else None
    value = xmul(xp, focal, b)  # 0 * (finite) where u = 0; inf only where b is
    if w is not None:
        value = w * value
    if not grad:
        if where is not None:
            return masked_mean(xp, value, None, where)
        return xp.mean(value, axis=-1), None
    # value w u^g b: d/dy_pred = w u^g (g (du/u) b + db), with du/u the relative derivative of u
    if from_logits:
        # du/dz = s sc (1 - 2t), so du/u = (1-2t) h, h = s sc / u: s for t = 1, sc for t = 0
        # db/dz = sigmoid(z) - t = (1-y) s - y sc + ls (y - 1/2) (as in the BCE)
        safe_u = xp.where(u > 0, u, xp.ones_like(u))
        h = xp.where(t == 1, s, xp.where(t == 0, sc, (s * sc) / safe_u))
        db = xmul(xp, 1.0 - y, s) - xmul(xp, y, sc)
        db = db + ls * (y - 0.5) if ls else db
        g = focal * ((gamma * slope) * xmul(xp, h, b) + db)
    else:
        # du/dp = 1 - 2t, so g (du/u) b = g (1-2t) (b/u), with b/u -> 1 where u = 0 (hard label,
        # p at its target); db/dp = (p - t) / (p (1-p)), with the BCE's exact limits
        ratio = xp.where(u > 0, b / xp.where(u > 0, u, xp.ones_like(u)), xp.ones_like(u))
        diff = (p - y) + ls * (y - 0.5) if ls else p - y
        db = diff / (p * (1.0 - p))
        if not ls:
            db = xp.where(y == 0, 1.0 / (1.0 - p), xp.where(y == 1, -1.0 / p, db))
        g = focal * ((gamma * slope) * ratio + db)
        g = xp.where(xp.isinf(b), db, g)  # an infinite loss: the log term's infinite slope
    if w is not None:
        g = w * g
    if where is not None:  # the mean over the kept elements (as binary_crossentropy)
        return masked_mean(xp, value, g, where)
    return xp.mean(value, axis=-1), g / n


_FOCAL_GAMMA = Option("gamma", 2.0, check_nonnegative,
                      "the focusing exponent of the modulating factor ``(1 - p_t) ** gamma``")

BINARY_FOCAL_CROSSENTROPY = LossDef(
    name="binary_focal_crossentropy", class_name="BinaryFocalCrossentropy", kernel=_binary_focal,
    targets="binary",
    options=(Option("apply_class_balancing", False, check_bool,
                    "whether to weight positive terms by ``alpha`` and negative ones by "
                    "``1 - alpha``"),
             Option("alpha", 0.25, check_fraction,
                    "the weight of the positive class when ``apply_class_balancing``"),
             _FOCAL_GAMMA, FROM_LOGITS, LABEL_SMOOTHING, AXIS),
    inputs=(WHERE,),
    aliases=("focal_loss", "binary_focal_loss", Alias("sigmoid_focal_loss", from_logits=True)),
    domain=_probability_domain,
    doc=r"""Binary focal cross-entropy (Lin et al., 2017), averaged over ``axis``.

    With targets :math:`t = y(1-s) + s/2` (label smoothing :math:`s`), probabilities :math:`p`
    (:math:`p = \sigma(z)` from logits), :math:`u = 1 - p_t = t(1-p) + (1-t)p` and the binary
    cross-entropy :math:`b = -t\log p - (1-t)\log(1-p)`:

    .. math:: \ell = \frac{1}{n}\sum_i w_i\,u_i^{\gamma}\,b_i,
              \qquad w_i = \begin{cases} \alpha t_i + (1-\alpha)(1-t_i) & \text{apply\_class\_balancing}
              \\ 1 & \text{otherwise}\end{cases}

    .. math:: \frac{\partial \ell}{\partial p_i} = \frac{w_i u_i^{\gamma}}{n}\Big(\gamma(1-2t_i)
              \frac{b_i}{u_i} + \frac{p_i - t_i}{p_i(1-p_i)}\Big),
              \qquad \frac{\partial \ell}{\partial z_i} = \frac{w_i u_i^{\gamma}}{n}\Big(\gamma(1-2t_i)
              \frac{\sigma(z_i)\sigma(-z_i)}{u_i} b_i + \sigma(z_i) - t_i\Big)

    For a hard label both terms of each gradient have the same sign, so nothing cancels; from
    logits :math:`u` and :math:`b` are sums of sigmoids and softplus terms, exact for logits of any
    size, and :math:`u^\gamma` is a power of that accurate base.

    Shapes: ``y_true`` and ``y_pred`` the same shape (or differing by one trailing axis of size 1);
    returns that shape without ``axis``. ``y_true`` must lie in [0, 1], and so must ``y_pred``
    unless ``from_logits=True``. ``gamma >= 0``, ``alpha`` in [0, 1].

    Differences from Keras (``keras.losses.binary_focal_crossentropy``): Keras computes the
    cross-entropy of probabilities clipped to [1e-7, 1 - 1e-7], also with ``from_logits=True`` (it
    applies ``sigmoid`` first), so a logit of 30 for a negative label costs 16.1 there instead of
    30, a logit of -1000 for a positive label 16.1 instead of 1000, and the gradient vanishes
    beyond the clip. The modulating factor and the weights are the same, with the smoothed targets;
    ``alpha`` outside [0, 1] and a negative ``gamma`` are refused here (Keras does not check).
    Differences from Optax (``optax.losses.sigmoid_focal_loss(logits, labels, alpha=None,
    gamma=2.0)``): Optax takes logits only, and its ``alpha`` is this ``alpha`` with
    ``apply_class_balancing=True`` (``alpha=None``: no weights); it computes
    :math:`u^\gamma = \exp(\gamma \log u)`, whose relative error grows with :math:`\gamma|\log u|`.
    torchvision's ``sigmoid_focal_loss(alpha=0.25, gamma=2)`` always applies the weights (alpha
    < 0 disables them) and is not in ``torch.nn``.

    ``where`` (booleans broadcast to ``y_pred``'s shape, Optax's ``where``) leaves elements out, as
    in ``binary_crossentropy``: the value is the mean over the kept elements of each sample,
    :math:`\frac{1}{|W|}\sum_{i \in W} w_i u_i^{\gamma} b_i`, the others get a zero gradient, and a
    sample with nothing kept gives 0. (Optax's ``sigmoid_focal_loss`` is elementwise and has no
    ``where``; this is ``jnp.mean(optax.losses.sigmoid_focal_loss(x, t), axis=-1, where=where)``,
    except that an all-excluded sample gives 0 rather than NaN.)

    Example (by hand: (1 - 0.5)^2 * log 2 = 0.25 * 0.693147... = 0.173287):

    >>> import losskit
    >>> round(float(losskit.binary_focal_crossentropy([[1.0]], [[0.5]])[0]), 6)
    0.173287
    """)


# ----------------------------------------------------------------------------- softmax pieces


def _softmax_parts(xp: Any, x: Array, widened: bool) -> tuple[Array, Array, Array, Array, Array]:
    """``(q, n, v, m, s)``: softmax, ``-log softmax`` and ``1 - softmax`` of logits, each to a few
    ulp, and the row maximum ``m`` and sum ``S`` below.

    With ``m`` the row maximum, ``e_j = exp(x_j - m)`` and ``S`` the sum of ``e_j`` over every class
    but the first maximum (as in ``crossentropy._from_logits``): ``q_j = e_j / (1 + S)``,
    ``n_j = (m - x_j) + log1p(S)`` and ``v_j = R_j / (1 + S)`` with ``R_j`` the sum of the other
    classes' ``e``: ``S`` for the maximum, ``1 + (S - e_j)`` for the others (``S - e_j`` may cancel,
    but it is added to 1, which keeps the relative error of ``R_j`` within an ulp or two).
    """
    top = xp.argmax(x, axis=-1, keepdims=True)
    m = _array.take_last(xp, x, top)
    e = xp.exp(x - m) if widened else exp_difference(xp, x, m)
    e = _array.put_last(xp, e, top, xp.zeros_like(m))  # the others only
    s = xp.sum(e, axis=-1, keepdims=True)
    z = 1.0 + s
    q = _array.put_last(xp, e / z, top, 1.0 / z)
    tail = log1p(xp, s)
    n = _array.put_last(xp, (m - x) + tail, top, tail)  # m - x is 0 at the top, even an infinite one
    v = _array.put_last(xp, (1.0 + (s - e)) / z, top, s / z)
    return q, n, v, m, s


def _simplex_parts(xp: Any, p: Array) -> tuple[Array, Array, Array, Array, Array]:
    """``(q, n, v, r, total)`` of probabilities renormalised over the row (``total = sum p``):
    ``q = p / total``, ``n = log(total / p)``, ``v = 1 - q = r / total``, ``r`` the sum of the
    other classes (summed directly for the largest, see ``sum_others``)."""
    total, r = sum_others(xp, p)
    n = log_ratio_plus_one(xp, r, p)
    return p / total, n, r / total, r, total


# ----------------------------------------------------------------------------- categorical focal


def _categorical_focal(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool,
                       alpha: float, gamma: float, from_logits: bool,
                       label_smoothing: float, where: Array | None = None) -> tuple[Array, Any]:
    if where is None:
        value, g = _categorical_focal_kept(xp, smooth_labels(y_true, label_smoothing), y_pred, grad,
                                           widened, alpha, gamma, from_logits)
        return value, g
    # excluded classes leave the softmax (or the renormalisation), smoothing spreads over the kept
    # ones, and a sample with nothing kept gives 0 (as categorical_crossentropy)
    t, y_pred, kept_any = restrict_to_kept(xp, y_true, y_pred, where, from_logits, label_smoothing)
    value, g = _categorical_focal_kept(xp, t, y_pred, grad, widened, alpha, gamma, from_logits)
    return zero_excluded(xp, value, g, where, kept_any)


def _categorical_focal_kept(xp: Any, t: Array, y_pred: Array, grad: bool, widened: bool,
                            alpha: float, gamma: float, from_logits: bool) -> tuple[Array, Any]:
    # value: alpha sum_j t_j v_j^g n_j, with q = softmax (or p / sum p), n = -log q, v = 1 - q
    if from_logits:
        q, n, v, _, _ = _softmax_parts(xp, y_pred, widened)
        r: Array = None
        total: Array = None
    else:
        q, n, v, r, total = _simplex_parts(xp, y_pred)
    f = v ** gamma
    value = alpha * xp.sum(xmul(xp, t, xmul(xp, f, n)), axis=-1)
    if not grad:
        return value, None
    # dn_j/dx_i = q_i - [i=j], dv_j/dx_i = -q_j ([i=j] - q_i), so with
    # c_j = t_j v_j^g (g q_j n_j / v_j + 1) >= 0 (n_j / v_j -> 1 where v_j = 0):
    #   d/dx_i = alpha (q_i C - c_i) = alpha (q_i sum_{j != i} c_j - t_i v_i^g (g q_i n_i + v_i))
    # and from probabilities (d/dp_i of the renormalised q):
    #   d/dp_i = alpha (sum_{j != i} c_j - t_i v_i^g (g n_i + r_i / p_i)) / total
    # a hard label's own element is a single negative term and the others a single positive one
    safe_v = xp.where(v > 0, v, xp.ones_like(v))
    qn_over_v = xp.where(v > 0, xmul(xp, q, n) / safe_v, q)
    c = xmul(xp, t, f * (gamma * qn_over_v + 1.0))
    _, c_others = sum_others(xp, c)
    if from_logits:
        own = xmul(xp, t, f * (gamma * xmul(xp, q, n) + v))
        g = q * c_others - own
    else:
        own = xmul(xp, t, f * (gamma * n + r / y_pred))
        g = (c_others - own) / total
    return value, alpha * g


CATEGORICAL_FOCAL_CROSSENTROPY = LossDef(
    name="categorical_focal_crossentropy", class_name="CategoricalFocalCrossentropy",
    kernel=_categorical_focal, precision_aware=True, targets="distribution",
    options=(Option("alpha", 0.25, check_nonnegative, "a constant factor on every term"),
             _FOCAL_GAMMA, FROM_LOGITS, LABEL_SMOOTHING, AXIS),
    inputs=(WHERE,),
    aliases=("categorical_focal_loss", "softmax_focal_loss"),
    domain=_probability_domain,
    doc=r"""Categorical focal cross-entropy (Lin et al., 2017) over the class ``axis``.

    With targets :math:`t = y(1-s) + s/K` (label smoothing :math:`s`, :math:`K` classes) and
    :math:`q = \mathrm{softmax}(x)` from logits, or the renormalised :math:`q = p / P`,
    :math:`P = \sum_k p_k`, from probabilities; :math:`n_j = -\log q_j`, :math:`v_j = 1 - q_j`:

    .. math:: \ell = \alpha \sum_j t_j\, v_j^{\gamma}\, n_j

    .. math:: \frac{\partial \ell}{\partial x_i} = \alpha\Big(q_i \sum_{j \ne i} c_j
              - t_i v_i^{\gamma}(\gamma q_i n_i + v_i)\Big),
              \qquad \frac{\partial \ell}{\partial p_i} = \frac{\alpha}{P}\Big(\sum_{j \ne i} c_j
              - t_i v_i^{\gamma}\big(\gamma n_i + \tfrac{P - p_i}{p_i}\big)\Big)

    with :math:`c_j = t_j v_j^{\gamma}(\gamma q_j n_j / v_j + 1) \ge 0`. For one-hot targets each
    gradient element is a single term, so nothing cancels; :math:`n`, :math:`v` and :math:`q` come
    from the logits without forming ``1 - (1 - tiny)`` (a confident row keeps its tiny loss).

    Shapes: ``y_true`` and ``y_pred`` ``(..., K)`` with the classes on ``axis``; returns the shape
    without ``axis``. ``y_true`` must lie in [0, 1], and so must ``y_pred`` unless ``from_logits``.
    ``gamma >= 0``, ``alpha >= 0``.

    Differences from Keras (``keras.losses.categorical_focal_crossentropy``): Keras clips the
    renormalised probabilities to [1e-7, 1 - 1e-7], also with ``from_logits=True`` (it applies
    ``softmax`` first), so a true class 30 logits below another costs at most
    ``alpha * 16.1`` there instead of ``alpha * 30``, and a confident correct row costs
    ``alpha * 1e-7^gamma * 1e-7`` instead of its exact (tinier) value. Keras smooths labels by the
    size of the last axis whatever ``axis`` is; here by the size of ``axis``. No other peer has it.

    ``where`` (booleans broadcast to ``y_pred``'s shape, Optax's ``where``) keeps some classes of
    each sample, as in ``categorical_crossentropy``: the others leave the softmax (or the
    renormalisation of probabilities, :math:`P = \sum_{k \in W} p_k`) and their targets are ignored,
    so :math:`q`, :math:`n` and :math:`v` are those of the kept classes and
    :math:`\ell = \alpha\sum_{j \in W} t_j v_j^{\gamma} n_j`; label smoothing spreads over the kept
    classes (:math:`s/|W|`); excluded classes get a zero gradient, and a sample with no class kept
    gives 0. Pass ``where[..., None]`` to drop whole samples.

    Example (by hand: 0.25 * (1 - 0.5)^2 * log 2 = 0.0625 * 0.693147... = 0.043322):

    >>> import losskit
    >>> round(float(losskit.categorical_focal_crossentropy([[0.0, 1.0]], [[0.5, 0.5]])[0]), 6)
    0.043322
    """)


# ------------------------------------------------------------------------- integer class labels


def _nan_rows(xp: Any, y_pred: Array, value: Array) -> Array:
    """``value``, and NaN for rows with a NaN anywhere (a loss that reads one class would hide it)."""
    return xp.where(xp.any(xp.isnan(y_pred), axis=-1), xp.full_like(value, float("nan")), value)


def _label_index(xp: Any, y_true: Array, ignore_class: int | None = None) -> Array:
    """Labels as an index array ``(..., 1)``; ignored labels point at class 0 (masked later)."""
    labels = y_true
    if ignore_class is not None:
        labels = xp.where(labels == ignore_class, xp.zeros_like(labels), labels)
    return xp.expand_dims(xp.astype(labels, _array.index_dtype(xp, labels)), axis=-1)


def _refuse_excluded_label(xp: Any, name: str, y_true: Array, k: Array, where: Array,
                           ignore_class: int | None, loss: str) -> None:
    """``_numerics.check_label_kept`` (on concrete arrays: the label's class must be kept in
    every sample that keeps a class), its message naming this loss and its value ``loss``."""
    try:
        check_label_kept(xp, y_true, k, where, ignore_class)
    except ValueError as error:
        message = str(error).replace("sparse_categorical_crossentropy", name, 1)
        raise ValueError(message.replace("(loss inf)", loss, 1)) from None


# -------------------------------------------------------------------- generalized cross-entropy


def _gce(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool, q: float,
         from_logits: bool, where: Array | None = None) -> tuple[Array, Any]:
    if where is not None:
        return _gce_where(xp, y_true, y_pred, grad, widened, q, from_logits, where)
    # value: (1 - p_k^q) / q = -expm1(q log p_k) / q, well conditioned for every p_k (a relative
    # error d in log p_k moves the value by at most d relative)
    k = _label_index(xp, y_true)
    if from_logits:
        # log p_k = -n_k, n_k = (m - x_k) + log1p(S)
        # gradient: p_k^q (softmax_i - [i = k]), with softmax_k - 1 = -v_k, and
        # p_k^q = exp(q (x_k - m)) (1 + S)^-q, the first factor as if q (x_k - m) were exact
        soft, n, v, m, s = _softmax_parts(xp, y_pred, widened)
        n_k = _array.take_last(xp, n, k)
        value = (-xp.expm1(-q * n_k) / q)[..., 0]
        if not grad:
            return value, None
        pk_q = exp_scaled_difference(xp, q, _array.take_last(xp, y_pred, k), m) * (1.0 + s) ** (-q)
        g = pk_q * soft
        return value, _array.put_last(xp, g, k, -pk_q * _array.take_last(xp, v, k))
    # from probabilities (not renormalised, as Keras): gradient -p_k^(q-1) at the label, 0 elsewhere
    p_k = _array.take_last(xp, y_pred, k)
    log_pk = log_both(xp, p_k)[0]
    value = _nan_rows(xp, y_pred, (-xp.expm1(q * log_pk) / q)[..., 0])
    if not grad:
        return value, None
    g = xp.zeros_like(y_pred)
    return value, _array.put_last(xp, g, k, -(p_k ** (q - 1.0)))


def _gce_where(xp: Any, y_true: Array, y_pred: Array, grad: bool, widened: bool, q: float,
               from_logits: bool, where: Array) -> tuple[Array, Any]:
    """The loss over the kept classes: they alone make the softmax (the probabilities are not
    renormalised, so there only the all-excluded rows change); the label's class must be kept."""
    _refuse_excluded_label(xp, "categorical_generalized_cross_entropy", y_true,
                           _label_index(xp, y_true), where, None, "(loss 1/q)")
    _, pred, kept_any = restrict_to_kept(xp, y_pred, y_pred, where, from_logits, 0.0)
    value, g = _gce(xp, y_true, pred, grad=grad, widened=widened, q=q, from_logits=from_logits)
    return zero_excluded(xp, value, g, where, kept_any)


def _check_q(name: str, value: Any) -> float:
    value = check_real(name, value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1]; found {value!r}")
    return value


CATEGORICAL_GENERALIZED_CROSS_ENTROPY = LossDef(
    name="categorical_generalized_cross_entropy", class_name="CategoricalGeneralizedCrossEntropy",
    kernel=_gce, precision_aware=True, targets="index", sparse=True,
    options=(Option("q", 0.5, _check_q,
                     "the exponent in (0, 1]: towards 0 the loss tends to the cross-entropy, at 1 it "
                     "is 1 - p_k (MAE-like, robust to noisy labels)"),
             FROM_LOGITS, AXIS),
    inputs=(WHERE,),
    aliases=("generalized_cross_entropy", "gce", "GCE"),
    domain=lambda opts: {} if opts["from_logits"] else {"y_pred": UNIT},
    check_values=class_index_checker("categorical_generalized_cross_entropy", weight_per_class=True),
    doc=r"""Generalized cross-entropy (Zhang & Sabuncu, 2018) with integer class labels.

    For label :math:`k` and the probability :math:`p_k` of that class (``y_pred[..., k]``, or
    :math:`\mathrm{softmax}(x)_k` from logits):

    .. math:: \ell = \frac{1 - p_k^{q}}{q} = -\frac{\operatorname{expm1}(q \log p_k)}{q},
              \qquad \frac{\partial \ell}{\partial p_i} = -[i = k]\,p_k^{q-1},
              \qquad \frac{\partial \ell}{\partial x_i} = p_k^{q}\big(\mathrm{softmax}(x)_i - [i = k]\big)

    As :math:`q \to 0` it tends to the cross-entropy :math:`-\log p_k`; at :math:`q = 1` it is
    :math:`1 - p_k`. The ``expm1`` form keeps the small loss of a confident prediction, and from
    logits :math:`\log p_k` and :math:`p_k^q` come from the logits directly (exact for logits of
    ±1000, where ``softmax`` underflows).

    Shapes: ``y_pred`` ``(..., K)`` with the classes on ``axis``; ``y_true`` the same shape without
    that axis (or with a trailing axis of size 1), integer labels or whole-number floats. Returns the
    shape of ``y_true``. Probabilities must lie in [0, 1]; rows are *not* renormalised (as in
    Keras); a zero probability for the label costs :math:`1/q` with an infinite gradient.

    Differences from Keras (``keras.losses.categorical_generalized_cross_entropy``, probabilities
    only, q in (0, 1)): the same formula and labels; ``q = 1`` is accepted, ``from_logits`` and
    ``axis`` are added, and Keras's ``1 - p ** q`` loses the loss of a confident prediction
    (``p = 1 - 1e-12``, q = 0.5: 1.000088900582341e-12 there, 4 digits; 9.999778782801285e-13
    here, exact). The class is
    also reachable by name (Keras leaves it out of ``keras.losses.get``). No other peer has it.

    ``where`` (booleans broadcast to ``y_pred``'s shape, Optax's ``where``) keeps some classes of
    each sample, as in ``sparse_categorical_crossentropy``: from logits the others leave the
    softmax, :math:`p_k = e^{x_k} / \sum_{j \in W} e^{x_j}`; from probabilities (not renormalised)
    :math:`p_k` is unchanged. Excluded classes get a zero gradient and a sample with no class kept
    gives 0. A label whose own class is excluded (in a sample that keeps other classes) raises
    ``ValueError`` on concrete arrays; under ``jax.jit`` (no check possible) it has probability 0
    from logits, so its value is :math:`1/q` with a zero gradient. No peer has ``where``.

    Example (by hand: (1 - 0.25^0.5) / 0.5 = (1 - 0.5) / 0.5 = 1):

    >>> import losskit
    >>> float(losskit.categorical_generalized_cross_entropy([1], [[0.75, 0.25]])[0])
    1.0
    """)


# ------------------------------------------------------------------------------------- Poly-1

# 1/(2k+1), k = 1..40, for atanh(r)/r - 1 = r^2/3 + r^4/5 + ... with |r| <= 0.6: the 40th term is
# below 2**-53 relative to the first (0.36**39 < 1e-17)
_ATANH_TERMS = tuple(1.0 / (2 * k + 1) for k in range(1, 41))


def _neglog1m_minus(xp: Any, v: Array, n: Array) -> Array:
    """``-log(1 - v) - v >= 0`` for ``v`` in [0, 1], given ``n = -log(1 - v)``, to a few ulp.

    For ``v <= 3/4`` with ``r = v / (2 - v)`` (so ``-log(1 - v) = 2 atanh(r)``, ``v = 2r/(1 + r)``):
    ``2 r^2 / (1 + r) + 2 r (atanh(r)/r - 1)``, two non-negative terms and a series; above, ``n - v``
    cancels by at most a factor 2.2.
    """
    small = v <= 0.75
    r = xp.where(small, v, xp.zeros_like(v)) / (2.0 - v)
    r2 = r * r
    acc = xp.zeros_like(r) + _ATANH_TERMS[-1]
    for c in reversed(_ATANH_TERMS[:-1]):
        acc = acc * r2 + c
    series = 2.0 * r2 / (1.0 + r) + 2.0 * r * (acc * r2)
    return xp.where(small, series, n - v)


def _poly1(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool,
           epsilon: float, where: Array | None = None) -> tuple[Array, Any]:
    if where is not None:  # the kept classes alone (as Optax's where), then 0 where none is kept
        t, x, kept_any = restrict_to_kept(xp, y_true, y_pred, where, True, 0.0)
        value, g = _poly1(xp, t, x, grad=grad, widened=widened, epsilon=epsilon)
        return zero_excluded(xp, value, g, where, kept_any)
    # value: sum_j t_j (n_j + eps v_j), n = -log softmax, v = 1 - softmax; for eps < 0 the term is
    # written (n_j - v_j) + (1 + eps) v_j, both non-negative (eps >= -1)
    t = y_true
    q, n, v, _, _ = _softmax_parts(xp, y_pred, widened)
    if epsilon >= 0:
        term = n + epsilon * v
        c = 1.0 + epsilon * q
    else:
        term = _neglog1m_minus(xp, v, n) + (1.0 + epsilon) * v
        c = (1.0 + epsilon) - epsilon * v  # = 1 + eps q, as a sum of non-negative terms
    value = xp.sum(xmul(xp, t, term), axis=-1)
    if not grad:
        return value, None
    # d/dx_i = sum_j t_j (q_i - [i=j]) (1 + eps q_j) = q_i sum_{j != i} a_j - v_i a_i, a = t c >= 0:
    # for a one-hot target each element is a single term
    a = xmul(xp, t, c)
    _, a_others = sum_others(xp, a)
    return value, q * a_others - v * a


def _check_epsilon(name: str, value: Any) -> float:
    value = check_real(name, value)
    if value < -1.0:
        raise ValueError(f"{name} must be >= -1 (below, the loss is negative for confident "
                         f"predictions); found {value!r}")
    return value


POLY_LOSS_CROSS_ENTROPY = LossDef(
    name="poly_loss_cross_entropy", class_name="PolyLossCrossEntropy", kernel=_poly1,
    precision_aware=True, targets="distribution",
    options=(Option("epsilon", 2.0, _check_epsilon,
                    "the coefficient of the first polynomial term ``1 - p_t``, at least -1"),
             AXIS),
    inputs=(WHERE,), domain=lambda opts: {"y_true": UNIT},
    aliases=("poly1", "poly1_crossentropy", Alias("poly_loss"), "Poly1CrossEntropy"),
    doc=r"""Poly-1 cross-entropy (Leng et al., "PolyLoss", 2022) of logits over the class ``axis``.

    With :math:`q = \mathrm{softmax}(x)` and targets :math:`t` (one-hot or soft), as in Optax:

    .. math:: \ell = \sum_j t_j\big(-\log q_j + \varepsilon\,(1 - q_j)\big)
              = \mathrm{CE} + \varepsilon\,\Big(\sum_j t_j - p_t\Big),\quad p_t = \sum_j t_j q_j

    .. math:: \frac{\partial \ell}{\partial x_i} = q_i \sum_{j \ne i} t_j (1 + \varepsilon q_j)
              - (1 - q_i)\, t_i (1 + \varepsilon q_i)

    For one-hot targets each gradient element is a single term; :math:`-\log q_j` and
    :math:`1 - q_j` come from the logits without cancellation (a confident row keeps its tiny loss
    and gradient), and for :math:`\varepsilon < 0` the term is evaluated as
    :math:`(-\log q_j - (1 - q_j)) + (1 + \varepsilon)(1 - q_j)`, two non-negative parts.

    Shapes: ``y_true`` and ``y_pred`` (logits) ``(..., K)`` with the classes on ``axis``; returns the
    shape without ``axis``. Logits only (there is no probability form). ``epsilon >= -1``. Targets
    must lie in [0, 1], as for every cross-entropy (a ``ValueError`` otherwise; Optax scores any).

    Differences from Optax (``optax.losses.poly_loss_cross_entropy(logits, labels, epsilon=2.0)``):
    the same formula, with ``y_true`` first; Optax accepts any ``epsilon`` (below -1 the loss is
    negative for confident predictions, so it is refused here), computes ``1 - p`` from
    ``softmax`` and the cross-entropy from ``log_softmax`` (so a confident row loses its tiny loss:
    logits ``[40, 0]`` with label 0 give 0 there, in float32 and float64, and
    1.2745062765874767e-17 here). Keras and PyTorch do not have it.

    ``where`` (booleans broadcast to ``y_pred``'s shape) keeps some classes of each sample, as
    Optax's ``where`` and ``categorical_crossentropy``'s: the others leave the softmax and their
    targets are ignored, :math:`\ell = \sum_{j \in W} t_j\big(-\log q_j + \varepsilon(1 - q_j)\big)`
    with :math:`q` the softmax over :math:`W`; excluded classes get a zero gradient, and a sample
    with no class kept gives 0 (NaN in Optax).

    Example (by hand: log 2 + 2 (1 - 1/2) = 1.693147...):

    >>> import losskit
    >>> round(float(losskit.poly_loss_cross_entropy([[0.0, 1.0]], [[0.0, 0.0]])[0]), 6)
    1.693147
    """)


# ---------------------------------------------------------------------------------------- NLL


def _nll(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, weight: Any,
         ignore_class: int | None, where: Array | None = None) -> tuple[Array, Any]:
    if where is not None:
        return _nll_where(xp, y_true, y_pred, grad, weight, ignore_class, where)
    # value: -w_k x_k (x: log-probabilities, k: the label)       gradient: -w_k at k, 0 elsewhere
    k = _label_index(xp, y_true, ignore_class)
    x_k = _array.take_last(xp, y_pred, k)
    if weight is None:
        w_k = xp.ones_like(x_k)
    else:
        w = xp.broadcast_to(weights_array(xp, weight, y_pred), y_pred.shape)
        w_k = _array.take_last(xp, w, k)
    value = xmul(xp, w_k, -x_k)[..., 0]  # only the label's entry is read (NaN elsewhere is not)
    if not grad:
        return value, None
    return value, _array.put_last(xp, xp.zeros_like(y_pred), k, -w_k)


def _nll_where(xp: Any, y_true: Array, y_pred: Array, grad: bool, weight: Any,
               ignore_class: int | None, where: Array) -> tuple[Array, Any]:
    """``-w_k x_k`` unchanged for a kept label (excluded classes are not read, not even for NaN);
    0 for a sample with nothing kept; a label whose class is excluded is refused (concrete arrays)
    or, under ``jax.jit``, costs inf: it has probability 0 among the kept classes."""
    k = _label_index(xp, y_true, ignore_class)
    _refuse_excluded_label(xp, "nll", y_true, k, where, ignore_class, "(loss inf)")
    pred = xp.where(where, y_pred, xp.zeros_like(y_pred))
    value, g = _nll(xp, y_true, pred, grad=grad, weight=weight, ignore_class=ignore_class)
    label_kept = _array.take_last(xp, where, k)[..., 0]
    value = xp.where(label_kept, value, xp.full_like(value, float("inf")))
    return zero_excluded(xp, value, g, where, xp.any(where, axis=-1, keepdims=True))


def _valid(xp: Any, y_true: Array, *, ignore_class: int | None, **_: Any) -> Array | None:
    return None if ignore_class is None else y_true != ignore_class


def _nll_reads(xp: Any, y_true: Array, y_pred: Array, *, ignore_class: int | None = None, **_: Any
               ) -> Array:
    """The one entry NLL reads per sample: the label's (-1 for an ignored sample)."""
    dtype = _array.index_dtype(xp, y_true)
    labels = xp.astype(y_true, xp.int64 if "uint" in str(dtype) else dtype)  # room for -1
    if ignore_class is not None:
        labels = xp.where(y_true == ignore_class, xp.full_like(labels, -1), labels)
    return xp.expand_dims(labels, axis=-1)


NEGATIVE_LOG_LIKELIHOOD = LossDef(
    name="nll", class_name="NLL", kernel=_nll, targets="index", sparse=True,
    options=(Option("weight", None, check_weights,
                    "None, or one non-negative weight per class (a number: the same for all) that "
                    "multiplies the loss of samples of that class"),
             Option("ignore_class", None, check_optional_int,
                    "a label value whose samples are left out: their loss and gradient are 0 and "
                    "the mean is over the other samples (also accepted as ``ignore_index``)"),
             AXIS),
    option_aliases={"ignore_index": "ignore_class"}, inputs=(WHERE,),
    aliases=(Alias("nll_loss"), "NLLLoss", "negative_log_likelihood"),
    domain=lambda opts: {"y_pred": Interval(-float("inf"), 0.0)},
    check_values=class_index_checker("nll", weight_per_class=True), mask=_valid, reads=_nll_reads,
    doc=r"""Negative log-likelihood of log-probabilities with integer class labels (PyTorch's
    ``nll_loss``, ``NLLLoss``; both names are aliases here).

    For label :math:`k`, log-probabilities :math:`x` (e.g. ``log_softmax`` outputs) and class
    weights :math:`w` (all 1 when ``weight`` is None):

    .. math:: \ell = -w_k\,x_k, \qquad \frac{\partial \ell}{\partial x_i} = -[i = k]\,w_k

    Shapes: ``y_pred`` ``(..., K)`` with the classes on ``axis`` (default the last; PyTorch's class
    axis is 1: pass ``axis=1`` for ``(N, C, d1, ...)`` inputs); ``y_true`` the same shape without
    that axis, integer labels or whole-number floats. Returns the shape of ``y_true``. ``y_pred``
    must be ``<= 0`` (log-probabilities; probabilities passed by mistake are refused) at the entries
    the loss reads: one per sample, at its label. As in PyTorch, the entries it does not read are
    not checked and not read at all (a NaN or a positive number there changes nothing; a NaN at
    the label gives NaN), so the loss costs O(samples), not O(samples x classes), besides the
    gradient's zeros.

    Reductions and PyTorch: ``reduction="sum"`` and ``"none"`` match ``torch.nn.NLLLoss``. PyTorch's
    ``"mean"`` with ``weight`` divides by the sum of the weights of the counted targets,
    :math:`\sum_n w_{y_n} \ell_n / \sum_n w_{y_n}`; here ``"mean"`` divides by the number of
    counted samples, as Keras does. PyTorch's weighted mean is obtained with the class weights as
    sample weights and no ``weight`` option: ``NLL(reduction="mean_with_sample_weight")(y, x,
    sample_weight=w[y])`` (ignored samples drop out of both sums). ``ignore_class`` (alias
    ``ignore_index``) defaults to None, not PyTorch's -100: a label of -100 is refused unless it is
    declared. A batch whose samples are all ignored reduces to 0, not NaN as in PyTorch.

    ``where`` (booleans broadcast to ``y_pred``'s shape, as the cross-entropies' Optax ``where``)
    keeps some classes of each sample. ``y_pred`` already holds log-probabilities, which are not
    renormalised, so for a kept label the value :math:`-w_k x_k` and its gradient are unchanged
    (excluded classes are not read: a NaN there does not make the sample NaN); a sample with no
    class kept gives 0 with a zero gradient. A label whose own class is excluded (in a sample that
    keeps other classes) raises ``ValueError`` on concrete arrays, as in
    ``sparse_categorical_crossentropy``; under ``jax.jit`` its value is ``inf`` (probability 0
    among the kept classes) with a zero gradient. PyTorch's ``nll_loss`` has no ``where``.

    Example (by hand: -(-2) = 2):

    >>> import losskit
    >>> float(losskit.nll([1], [[-1.0, -2.0, -3.0]])[0])
    2.0
    """)
