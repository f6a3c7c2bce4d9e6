"""Optax-style losses computed by losskit: pure per-example functions for JAX.

Each function has the name, argument order and keywords of its ``optax.losses`` twin
(``softmax_cross_entropy(logits, labels, axis=-1, where=None)``, ``huber_loss(predictions, targets,
delta=1.0)``, ...) and returns per-example values without any reduction, as Optax does: the
elementwise losses (``squared_error``, ``huber_loss``, ``sigmoid_binary_cross_entropy``, ...) one
value per element, the others one value per example (the class or feature ``axis`` reduced;
``axis`` may be an int or a tuple of axes, whose elements are then taken together, and ``where``
keeps some elements or examples, as Optax's). They work under ``jax.jit``, ``jax.vmap``,
``jax.grad`` and forward mode (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``): the value and the
analytic gradient come from losskit's JAX kernels through a ``jax.custom_jvp`` rule whose tangent
is linear in the input tangent, so reverse mode is its transpose and keeps no graph of the kernel.

Values are losskit's: exact (within 8 ulp) where Optax's formulas lose digits (confident logits,
nearly equal distributions, the linear branch of Huber, ``log_cosh`` of small errors).

Invalid inputs (labels outside [0, 1] for a cross-entropy, an integer label outside ``[0, K)``,
negative targets for a KL divergence, hinge targets other than -1 and 1): called eagerly (on
concrete arrays, outside any transformation), a function raises a ``ValueError`` that names the
argument and the offending values. Under ``jax.jit``, ``jax.vmap`` or ``jax.grad`` the values are
not known when the computation is built, so the examples with an invalid input get ``NaN`` as their
loss and as their gradient (NaN-poisoned), which a training step's loss shows at once (and
``optax.apply_if_finite`` skips), rather than the finite wrong number a formula would give.

Differentiating with respect to the targets/labels is refused with a ``ValueError``, as in the rest
of losskit (wrap them in ``jax.lax.stop_gradient``). Where a per-example weight multiplies an
infinite loss, its gradient is ``0 * inf = NaN``: mask such examples with ``where``.

>>> import jax, jax.numpy as jnp
>>> from losskit import optax as lo
>>> logits, labels = jnp.array([[2.0, 0.0, -1.0]]), jnp.array([0])
>>> lo.softmax_cross_entropy_with_integer_labels(logits, labels)   # log(1 + e**-2 + e**-3)
Array([0.169846], dtype=float32)
>>> total = lambda x: lo.softmax_cross_entropy_with_integer_labels(x, labels).sum()
>>> [round(float(g), 6) for g in jax.grad(total)(logits)[0]]   # softmax - onehot
[-0.156205, 0.114195, 0.04201]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from . import _array
from ._bridge import _INPUT_GRAD, _Y_TRUE_GRAD
from .losses import _core, _registry

Array = Any
Axis = int | tuple[int, ...] | None

__all__ = [
    "convex_kl_divergence", "cosine_distance", "cosine_similarity", "generalized_kl_divergence",
    "hinge_loss", "huber_loss", "kl_divergence", "kl_divergence_with_log_targets", "l2_loss",
    "log_cosh", "multiclass_hinge_loss", "multiclass_perceptron_loss", "perceptron_loss",
    "poly_loss_cross_entropy", "safe_softmax_cross_entropy", "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss", "softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels",
    "squared_error",
]


# ------------------------------------------------------------------------------------ machinery


def _values(name: str, y_true: Array, y_pred: Array, options: Mapping[str, Any],
            inputs: Mapping[str, Any] | None = None) -> Array:
    """Per-sample values of a registered loss (reduced axis last), differentiable in forward and
    reverse mode through losskit's analytic gradient (a ``custom_jvp``)."""
    defn = _registry._DEFINITIONS[name]
    opts = defn.normalise(options)
    batch = _core.prepare(defn, y_true, y_pred, opts, inputs=inputs)
    run = _core._runner(defn, batch, opts)
    extras = tuple(batch.inputs)

    @jax.custom_jvp
    def loss(t: Array, p: Array, extras: tuple[Array | None, ...]) -> Array:
        return run(t, p, False, *extras)[0]

    def loss_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Array, Array]:
        t, p, extras = primals
        dt, dp, dextras = tangents
        if not isinstance(dt, SymbolicZero):
            raise ValueError(_Y_TRUE_GRAD)
        if any(not isinstance(d, SymbolicZero) for d in dextras if d is not None):
            raise ValueError(_INPUT_GRAD)
        value, g = run(t, p, True, *extras)
        if isinstance(dp, SymbolicZero):
            return value, jnp.zeros_like(value)
        return value, jnp.sum(g * dp.astype(g.dtype), axis=-1)

    loss.defjvp(loss_jvp, symbolic_zeros=True)
    return loss(batch.y_true, batch.y_pred, extras).astype(batch.out_dtype)


def _array_arg(x: Any, what: str, *, floating: bool = True) -> Array:
    if x is None:
        raise TypeError(f"{what} must be an array; found None")
    x = jnp.asarray(x)
    if floating and not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{what} must be a floating-point array; found dtype {x.dtype}")
    return x


def _broadcast(x: Array, shape: tuple[int, ...], what: str, other: str) -> Array:
    """``x`` broadcast to ``shape`` (Optax's broadcasting of targets), or a clear error."""
    try:
        return jnp.broadcast_to(x, shape)
    except ValueError:
        raise ValueError(f"{what} of shape {tuple(x.shape)} does not broadcast to the shape of "
                         f"{other} {shape}") from None


def _axes(axis: Axis, ndim: int, what: str) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) and not isinstance(axis, bool) else axis
    if not isinstance(axes, tuple) or not all(isinstance(a, int) and not isinstance(a, bool)
                                              for a in axes):
        raise TypeError(f"axis must be an int, a tuple of ints or None; found {axis!r}")
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for {what} with {ndim} dimensions")
        out.append(a % ndim)
    if len(set(out)) != len(out) or not out:
        raise ValueError(f"axis must name distinct axes; found {axis!r}")
    return tuple(out)


def _to_last(x: Array, axes: tuple[int, ...]) -> Array:
    """``x`` with ``axes`` moved to the end (in order) and flattened into one axis (None stays)."""
    if x is None:
        return None
    rest = tuple(i for i in range(x.ndim) if i not in axes)
    x = jnp.transpose(x, rest + axes)
    return jnp.reshape(x, (*x.shape[:len(rest)], math.prod(x.shape[len(rest):])))


def _where_arg(where: Any, like: Array, axes: tuple[int, ...]) -> Array | None:
    """Optax's ``where``: the shape of ``like``, or of the examples (the reduced axes added)."""
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
        raise TypeError(f"where must be a boolean array; found dtype {where.dtype}")
    if where.ndim != like.ndim:
        where = jnp.expand_dims(where, axes)
    return _broadcast(where, tuple(like.shape), "where", "the predictions")


# --------------------------------------------------------------------------- invalid inputs


def _guarded(bad: Array, message: Callable[[], str], compute: Callable[[], Array]) -> Array:
    """``compute()``, checked. Eagerly: a ValueError when any example is invalid. Traced: NaN as
    the invalid examples' values and gradients (``values * NaN`` carries NaN into the cotangent)."""
    if _array.is_concrete(bad):
        if bool(jnp.any(bad)):
            raise ValueError(message())
        return compute()
    values = compute()
    return values * jnp.where(bad, jnp.nan, 1.0).astype(values.dtype)


def _describe(x: Array, bad: Array, what: str, expected: str) -> str:
    index = tuple(int(i[0]) for i in jnp.nonzero(bad))
    return (f"{what} must {expected}; found {int(jnp.sum(bad))} value(s) outside, e.g. "
            f"{float(x[index])!r} at index {index}")


def _outside(name: str, options: Mapping[str, Any], y_true: Array, y_pred: Array,
             where: Array | None, names: tuple[str, str]) -> tuple[Array, Callable[[], str]]:
    """Per-example invalid flags from the loss's declared domain, with the eager message."""
    defn = _registry._DEFINITIONS[name]
    domain = defn.domain(defn.normalise(options))
    flags = jnp.zeros(y_pred.shape[:-1], dtype=bool)
    found: list[tuple[Array, Array, str, str]] = []
    for key, arg, what in (("y_true", y_true, names[0]), ("y_pred", y_pred, names[1])):
        interval = domain.get(key)
        if interval is None or (defn.sparse and key == "y_true"):
            continue
        bad = interval.outside(arg)
        if where is not None:
            bad = bad & where
        found.append((arg, bad, what, f"lie in {interval}"))
        flags = flags | jnp.any(bad, axis=-1)
    return flags, lambda: next(_describe(*f) for f in found if bool(jnp.any(f[1])))


def _check_labels(labels: Array, k: int, what: str) -> tuple[Array, Callable[[], str]]:
    bad = (labels < 0) | (labels >= k)
    return bad, lambda: _describe(labels, bad, what, f"be class indices in [0, {k - 1}]")


def _check_signs(targets: Array, what: str) -> tuple[Array, Callable[[], str]]:
    bad = (targets != 1) & (targets != -1)
    return bad, lambda: _describe(targets, bad, what, "be -1 or 1")


# ----------------------------------------------------------------------- elementwise losses


def _elementwise(name: str, targets: Array, predictions: Array, names: tuple[str, str],
                 **options: Any) -> Array:
    """A loss that losskit averages over the last axis, per element: each element its own row."""
    p = _array_arg(predictions, names[1])
    t = jnp.zeros_like(p) if targets is None else _broadcast(
        jnp.asarray(targets, dtype=p.dtype), tuple(p.shape), names[0], names[1])
    bad, message = _outside(name, options, t[..., None], p[..., None], None, names)
    return _guarded(bad, message, lambda: _values(name, t[..., None], p[..., None], options))


def squared_error(predictions: Array, targets: Array | None = None) -> Array:
    """Elementwise squared error ``(predictions - targets)**2`` (``targets=None``: zeros).

    Shapes: ``targets`` broadcasts to ``predictions``; the result has ``predictions``' shape.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import squared_error
    >>> squared_error(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0]))
    Array([1., 4.], dtype=float32)
    """
    return _elementwise("mean_squared_error", targets, predictions, ("targets", "predictions"))


def l2_loss(predictions: Array, targets: Array | None = None) -> Array:
    """Elementwise half squared error ``0.5 * (predictions - targets)**2`` (Optax's ``l2_loss``).

    >>> import jax.numpy as jnp
    >>> from losskit.optax import l2_loss
    >>> l2_loss(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0]))
    Array([0.5, 2. ], dtype=float32)
    """
    return 0.5 * squared_error(predictions, targets)  # halving is exact


def huber_loss(predictions: Array, targets: Array | None = None, *, delta: float = 1.0) -> Array:
    """Elementwise Huber loss: ``d**2 / 2`` for ``|d| <= delta``, else ``delta * (|d| - delta/2)``,
    with ``d = predictions - targets``; the linear branch is computed as written (Optax's
    ``delta * |d| - delta**2 / 2`` cancels just above ``delta``).

    >>> import jax.numpy as jnp
    >>> from losskit.optax import huber_loss
    >>> huber_loss(jnp.array([0.5, 3.0]), jnp.array([0.0, 0.0]))
    Array([0.125, 2.5  ], dtype=float32)
    """
    return _elementwise("huber", targets, predictions, ("targets", "predictions"), delta=delta)


def log_cosh(predictions: Array, targets: Array | None = None) -> Array:
    """Elementwise ``log(cosh(predictions - targets))``, exact also for small errors (where Optax's
    ``logaddexp(d, -d) - log 2`` keeps no digit below about 1e-4 in float32).

    >>> import jax.numpy as jnp
    >>> from losskit.optax import log_cosh
    >>> log_cosh(jnp.array([1e-5]))   # d**2 / 2
    Array([5.e-11], dtype=float32)
    """
    return _elementwise("log_cosh", targets, predictions, ("targets", "predictions"))


def sigmoid_binary_cross_entropy(logits: Array, labels: Array) -> Array:
    """Elementwise binary cross-entropy of logits: ``-labels log σ(x) - (1 - labels) log σ(-x)``.

    ``labels`` (in [0, 1]) broadcast to ``logits``' shape.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import sigmoid_binary_cross_entropy
    >>> sigmoid_binary_cross_entropy(jnp.array([0.0, 40.0]), jnp.array([1.0, 1.0]))  # log 2, e**-40
    Array([6.931472e-01, 4.248354e-18], dtype=float32)
    """
    return _elementwise("binary_crossentropy", labels, logits, ("labels", "logits"), from_logits=True)


def sigmoid_focal_loss(logits: Array, labels: Array, *, alpha: float | None = None,
                       gamma: float = 2.0) -> Array:
    """Elementwise sigmoid focal loss (Lin et al., 2017): ``(1 - p_t)**gamma`` times the binary
    cross-entropy of the logits, times ``alpha labels + (1 - alpha)(1 - labels)`` when ``alpha`` is
    given.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import sigmoid_focal_loss
    >>> sigmoid_focal_loss(jnp.array([0.0]), jnp.array([1.0]))   # (1/2)**2 log 2
    Array([0.173287], dtype=float32)
    """
    options = {"gamma": gamma, "from_logits": True, "apply_class_balancing": alpha is not None}
    if alpha is not None:
        options["alpha"] = alpha
    return _elementwise("binary_focal_crossentropy", labels, logits, ("labels", "logits"), **options)


def _signed(name: str, predictor_outputs: Array, targets: Array) -> Array:
    p = _array_arg(predictor_outputs, "predictor_outputs")
    t = _broadcast(jnp.asarray(targets, dtype=p.dtype), tuple(p.shape), "targets", "predictor_outputs")
    bad, message = _check_signs(t, "targets")
    t_safe = jnp.where(bad, jnp.ones_like(t), t)  # losskit maps all-{0, 1} labels: keep Optax's {-1, 1}
    return _guarded(bad, message, lambda: _values(name, t_safe[..., None], p[..., None], {}))


def hinge_loss(predictor_outputs: Array, targets: Array) -> Array:
    """Elementwise hinge loss ``max(0, 1 - predictor_outputs * targets)``, targets -1 or 1.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import hinge_loss
    >>> hinge_loss(jnp.array([0.5, 2.0]), jnp.array([1.0, -1.0]))
    Array([0.5, 3. ], dtype=float32)
    """
    return _signed("hinge", predictor_outputs, targets)


def perceptron_loss(predictor_outputs: Array, targets: Array) -> Array:
    """Elementwise perceptron loss ``max(0, -predictor_outputs * targets)``, targets -1 or 1.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import perceptron_loss
    >>> perceptron_loss(jnp.array([0.5, 2.0]), jnp.array([1.0, -1.0]))
    Array([0., 2.], dtype=float32)
    """
    return _signed("perceptron", predictor_outputs, targets)


# --------------------------------------------------------------------- losses over an axis


def _over_axis(name: str, targets: Array, predictions: Array, axis: Axis, where: Any,
               names: tuple[str, str], *, options: Mapping[str, Any] | None = None,
               fill: tuple[float, float] | None = None) -> Array:
    """A loss over ``axis`` (an int or a tuple, moved last and flattened). ``where`` goes to the
    loss's own ``where`` input, or, with ``fill``, replaces the left-out elements of targets and
    predictions by values whose terms are exactly 0 (with a zero gradient)."""
    options = dict(options or {})
    p = _array_arg(predictions, names[1])
    t = _broadcast(jnp.asarray(targets, dtype=p.dtype), tuple(p.shape), names[0], names[1])
    axes = _axes(axis, p.ndim, names[1])
    w = _to_last(_where_arg(where, p, axes), axes)
    p, t = _to_last(p, axes), _to_last(t, axes)
    inputs = {}
    if w is not None and fill is not None:
        t = jnp.where(w, t, jnp.asarray(fill[0], t.dtype))
        p = jnp.where(w, p, jnp.asarray(fill[1], p.dtype))
    elif w is not None:
        inputs["where"] = w
    bad, message = _outside(name, options, t, p, w, names)
    return _guarded(bad, message, lambda: _values(name, t, p, options, inputs))


def softmax_cross_entropy(logits: Array, labels: Array, axis: Axis = -1,
                          where: Any = None) -> Array:
    """Softmax cross-entropy ``sum_j labels_j (logsumexp(x) - x_j)`` over ``axis``.

    ``labels`` in [0, 1] (one-hot or soft), broadcast to ``logits``; ``where`` (the logits' shape
    or the examples' shape) keeps classes or examples: left-out classes leave the softmax and their
    labels are ignored, an example with no class kept gives 0. A confident row keeps its tiny loss
    (logits ``[40, 0]``, label 0: 4.2e-18, where Optax returns 0).

    >>> import jax.numpy as jnp
    >>> from losskit.optax import softmax_cross_entropy
    >>> softmax_cross_entropy(jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 0.0]]))   # log 2
    Array([0.6931472], dtype=float32)
    """
    return _over_axis("categorical_crossentropy", labels, logits, axis, where, ("labels", "logits"),
                      options={"from_logits": True})


def safe_softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """:func:`softmax_cross_entropy` over the last axis; ``logits = -inf`` with ``labels = 0``
    contributes 0 (``0 log 0 = 0``), as in every losskit cross-entropy.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import safe_softmax_cross_entropy
    >>> safe_softmax_cross_entropy(jnp.array([[0.0, -jnp.inf]]), jnp.array([[1.0, 0.0]]))
    Array([0.], dtype=float32)
    """
    return softmax_cross_entropy(logits, labels)


def softmax_cross_entropy_with_integer_labels(logits: Array, labels: Array, axis: Axis = -1,
                                              where: Any = None) -> Array:
    """Softmax cross-entropy ``logsumexp(x) - x[label]`` with integer labels.

    ``labels`` has the logits' shape without ``axis``; with a tuple ``axis`` a label is a flat
    index into those axes taken together (as Optax). ``where``: the logits' shape (classes kept) or
    the labels' shape (examples kept; the others give 0).

    >>> import jax.numpy as jnp
    >>> from losskit.optax import softmax_cross_entropy_with_integer_labels as ce
    >>> ce(jnp.array([[0.0, 0.0]]), jnp.array([1]))   # log 2
    Array([0.6931472], dtype=float32)
    """
    x = _array_arg(logits, "logits")
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be an integer array (class indices); found dtype {labels.dtype}")
    axes = _axes(axis, x.ndim, "logits")
    w = _to_last(_where_arg(where, x, axes), axes)
    x = _to_last(x, axes)
    k = x.shape[-1]
    expected = x.shape[:-1]
    if tuple(labels.shape) != expected:
        raise ValueError(f"labels has shape {tuple(labels.shape)}; expected the shape of logits "
                         f"without axis {axis}: {expected}")
    bad, message = _check_labels(labels, k, "labels")
    safe = jnp.where(bad, jnp.zeros_like(labels), labels)
    return _guarded(bad, message, lambda: _values(
        "sparse_categorical_crossentropy", safe, x, {"from_logits": True},
        {} if w is None else {"where": w}))


def poly_loss_cross_entropy(logits: Array, labels: Array, *, epsilon: float = 2.0, axis: Axis = -1,
                            where: Any = None) -> Array:
    """Poly-1 cross-entropy (Leng et al., 2022): ``CE + epsilon * (sum(labels) - p_t)`` over
    ``axis``, with ``p_t = sum_j labels_j softmax(x)_j``; ``epsilon >= -1``.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import poly_loss_cross_entropy
    >>> poly_loss_cross_entropy(jnp.array([[0.0, 0.0]]), jnp.array([[0.0, 1.0]]))  # log 2 + 2 / 2
    Array([1.6931472], dtype=float32)
    """
    return _over_axis("poly_loss_cross_entropy", labels, logits, axis, where, ("labels", "logits"),
                      options={"epsilon": epsilon})


def kl_divergence(log_predictions: Array, targets: Array, axis: Axis = -1,
                  where: Any = None) -> Array:
    """Kullback-Leibler divergence ``sum_j t_j (log t_j - log_predictions_j)`` over ``axis``
    (``0 log 0 = 0``); exact also for nearly equal distributions, where Optax's formula cancels.

    ``targets`` in [0, 1], ``log_predictions <= 0``.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import kl_divergence
    >>> kl_divergence(jnp.log(jnp.array([[0.5, 0.5]])), jnp.array([[1.0, 0.0]]))   # log 2
    Array([0.6931472], dtype=float32)
    """
    return _over_axis("kl_div", targets, log_predictions, axis, where,
                      ("targets", "log_predictions"), fill=(0.0, 0.0))


def kl_divergence_with_log_targets(log_predictions: Array, log_targets: Array, axis: Axis = -1,
                                   where: Any = None) -> Array:
    """:func:`kl_divergence` with the targets given as logarithms: ``sum_j e^{y_j} (y_j - x_j)``.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import kl_divergence_with_log_targets
    >>> kl_divergence_with_log_targets(jnp.log(jnp.array([[0.5, 0.5]])), jnp.array([[0.0, -jnp.inf]]))
    Array([0.6931472], dtype=float32)
    """
    return _over_axis("kl_div", log_targets, log_predictions, axis, where,
                      ("log_targets", "log_predictions"), options={"log_target": True},
                      fill=(-math.inf, 0.0))


def generalized_kl_divergence(log_predictions: Array, targets: Array, axis: Axis = -1,
                              where: Any = None) -> Array:
    """Generalized KL divergence ``sum_j (t_j log(t_j / p_j) - t_j + p_j)`` with ``p = exp(x)``,
    over ``axis``, for non-negative ``targets`` that need not sum to 1; each term is computed as a
    non-negative excess, so nearly equal inputs keep their tiny divergence.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import generalized_kl_divergence
    >>> generalized_kl_divergence(jnp.array([[0.0]]), jnp.array([[2.0]]))   # 2 log 2 - 1
    Array([0.38629436], dtype=float32)
    """
    return _over_axis("generalized_kl_divergence", targets, log_predictions, axis, where,
                      ("targets", "log_predictions"), options={"log_predictions": True},
                      fill=(0.0, -math.inf))


def convex_kl_divergence(log_predictions: Array, targets: Array, axis: Axis = -1,
                         where: Any = None) -> Array:
    """Optax's older name of :func:`generalized_kl_divergence` (the same function).

    >>> import jax.numpy as jnp
    >>> from losskit.optax import convex_kl_divergence
    >>> convex_kl_divergence(jnp.array([[0.0]]), jnp.array([[2.0]]))
    Array([0.38629436], dtype=float32)
    """
    return generalized_kl_divergence(log_predictions, targets, axis, where)


def cosine_similarity(predictions: Array, targets: Array, *, epsilon: float = 0.0, axis: Axis = -1,
                      where: Any = None) -> Array:
    """Cosine similarity ``<a, b> / (|a| |b|)`` over ``axis`` (``+cos``, Optax's sign; Keras's and
    :func:`losskit.cosine_similarity` are ``-cos``).

    The dot product is compensated (nearly orthogonal vectors keep their small cosine). A squared
    norm below ``epsilon`` is taken as ``epsilon`` (Optax's clip); with ``epsilon=0`` a zero vector
    gives 0 here (NaN in Optax).

    >>> import jax.numpy as jnp
    >>> from losskit.optax import cosine_similarity
    >>> cosine_similarity(jnp.array([[1.0, 1.0]]), jnp.array([[1.0, 0.0]]))   # 1 / sqrt(2)
    Array([0.70710677], dtype=float32)
    """
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be a finite number >= 0; found {epsilon!r}")
    a = _array_arg(predictions, "predictions")
    b = _broadcast(jnp.asarray(targets, dtype=a.dtype), tuple(a.shape), "targets", "predictions")
    axes = _axes(axis, a.ndim, "predictions")
    w = _to_last(_where_arg(where, a, axes), axes)
    a, b = _to_last(a, axes), _to_last(b, axes)
    if w is not None:
        a, b = jnp.where(w, a, jnp.zeros_like(a)), jnp.where(w, b, jnp.zeros_like(b))
    cos = -_values("cosine_similarity", b, a, {})
    if epsilon > 0:  # Optax's clipped norms, only where a squared norm is below epsilon
        a2, b2 = jnp.sum(a * a, axis=-1), jnp.sum(b * b, axis=-1)
        small = (a2 < epsilon) | (b2 < epsilon)
        root = jnp.sqrt(jnp.asarray(epsilon, a.dtype))
        clipped = jnp.sum(a * b, axis=-1) / (jnp.maximum(jnp.sqrt(a2), root)
                                             * jnp.maximum(jnp.sqrt(b2), root))
        cos = jnp.where(small, clipped, cos)
    return cos


def cosine_distance(predictions: Array, targets: Array, *, epsilon: float = 0.0, axis: Axis = -1,
                    where: Any = None) -> Array:
    """Cosine distance ``1 - cosine_similarity(predictions, targets)`` over ``axis``.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import cosine_distance
    >>> cosine_distance(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 2.0]]))
    Array([1.], dtype=float32)
    """
    return 1.0 - cosine_similarity(predictions, targets, epsilon=epsilon, axis=axis, where=where)


def _sparse_scores(name: str, scores: Array, labels: Array) -> Array:
    s = _array_arg(scores, "scores")
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be an integer array (class indices); found dtype {labels.dtype}")
    if tuple(labels.shape) != tuple(s.shape[:-1]):
        raise ValueError(f"labels has shape {tuple(labels.shape)}; expected the shape of scores "
                         f"without its last axis: {tuple(s.shape[:-1])}")
    bad, message = _check_labels(labels, s.shape[-1], "labels")
    safe = jnp.where(bad, jnp.zeros_like(labels), labels)
    return _guarded(bad, message, lambda: _values(name, safe, s, {}))


def multiclass_hinge_loss(scores: Array, labels: Array) -> Array:
    """Multiclass (Crammer-Singer) hinge loss ``max_j (s_j + 1 - [j = y]) - s_y`` over the last axis.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import multiclass_hinge_loss
    >>> multiclass_hinge_loss(jnp.array([[0.3, 0.5, -1.0]]), jnp.array([1]))   # 1 + 0.3 - 0.5
    Array([0.8], dtype=float32)
    """
    return _sparse_scores("multiclass_hinge", scores, labels)


def multiclass_perceptron_loss(scores: Array, labels: Array) -> Array:
    """Multiclass perceptron loss ``max_j s_j - s_y`` over the last axis.

    >>> import jax.numpy as jnp
    >>> from losskit.optax import multiclass_perceptron_loss
    >>> multiclass_perceptron_loss(jnp.array([[0.3, 0.5, 2.0]]), jnp.array([1]))
    Array([1.5], dtype=float32)
    """
    return _sparse_scores("multiclass_perceptron", scores, labels)
