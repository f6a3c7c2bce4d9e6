"""The one place for shapes, validation, reductions, sample weights, masks and the chain rule.

A loss is declared once as a :class:`LossDef`: its per-sample kernel (value and gradient side by side,
over the last axis), its options with their checks, its input domain as data and its names. From that
declaration :func:`make_function` builds the Keras-style per-sample function and :func:`make_class`
the reduced ``Loss`` subclass; the registry, the validation messages and the docs come from it too.

Data flows one way: arrays -> :func:`prepare` (array library, dtype, rank repair, axis, checks) ->
the kernel -> :meth:`Loss.__call__` / :meth:`Loss.gradient` (weights, mask, reduction, chain rule).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .. import _array, _backends, _bridge
from .._backends import numpy as _numpy_backend
from .._numerics import xmul

Array = Any
Kernel = Callable[..., tuple[Any, ...]]

REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "batchmean", "none",
              None)


# ----------------------------------------------------------------------------------------- options


# Options accept Python scalars and NumPy scalars alike (np.True_, np.float32(0.1), np.int64(-1)) and
# store Python ones, so that configs stay JSON-ready; booleans are never taken for numbers.
_INTEGER = (int, np.integer)
_REAL = (int, float, np.integer, np.floating)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def check_bool(name: str, value: Any) -> bool:
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False; found {value!r}")
    return bool(value)


def check_fraction(name: str, value: Any) -> float:
    if _is_bool(value) or not isinstance(value, _REAL):
        raise TypeError(f"{name} must be a number in [0, 1]; found {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1]; found {value!r}")
    return float(value)


def check_axis(name: str, value: Any) -> int:
    if _is_bool(value) or not isinstance(value, _INTEGER):
        raise TypeError(f"{name} must be an integer axis; found {value!r}")
    return int(value)


def check_real(name: str, value: Any) -> float:
    if _is_bool(value) or not isinstance(value, _REAL):
        raise TypeError(f"{name} must be a real number; found {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite; found {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    value = check_real(name, value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0; found {value!r}")
    return value


def check_nonnegative(name: str, value: Any) -> float:
    value = check_real(name, value)
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0; found {value!r}")
    return value


def check_weights(name: str, value: Any) -> float | tuple[float, ...] | None:
    """None, a non-negative number, or a 1-D sequence of them (kept as a tuple: a JSON-ready config)."""
    if value is None:
        return None
    if isinstance(value, _REAL) and not _is_bool(value):
        return check_nonnegative(name, value)
    try:
        arr = _array._to_numpy(value) if _array.backend_name(value) != "numpy" else np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray([None])
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be None, a number or a 1-D sequence of numbers (one per "
                        f"class); found {value!r}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise ValueError(f"{name} must hold finite non-negative numbers; found {float(arr[bad][0])!r} at "
                         f"index {int(np.flatnonzero(bad)[0])}")
    return tuple(float(v) for v in arr)


def weights_array(xp: Any, value: float | tuple[float, ...], like: Array) -> Array:
    """A :func:`check_weights` value as an array of ``like``'s dtype and device (broadcasts on the
    last axis)."""
    return xp.asarray(value, dtype=like.dtype, device=_array.device(like))


def check_optional_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if _is_bool(value) or not isinstance(value, _INTEGER):
        raise TypeError(f"{name} must be an integer class index or None; found {value!r}")
    return int(value)


def binary_checker(name: str, what: str = "hold binary labels 0 or 1", *, nan_ok: bool = False
                   ) -> Callable[..., None]:
    """A ``check_values`` for targets that must be 0 or 1 (the message says ``y_true must <what>``);
    with ``nan_ok``, NaN passes (and propagates to its sample)."""

    def check(xp: Any, y_true: Array, y_pred: Array, **_: Any) -> None:
        bad = (y_true != 0) & (y_true != 1)
        if nan_ok:
            bad = bad & ~xp.isnan(y_true)
        if _array.to_bool(xp.any(bad)):
            raise ValueError(f"{name}: y_true must {what}; "
                             + _array.describe_range(xp, y_true, bad, "y_true")
                             .replace("outside", "that are neither 0 nor 1"))

    return check


def class_index_checker(name: str, *, weight_per_class: bool = False) -> Callable[..., None]:
    """A ``check_values`` for integer class labels: whole numbers in ``[0, K)`` (K = the size of
    ``y_pred``'s class axis), except ``ignore_class`` when the loss has that option; with
    ``weight_per_class``, a ``weight`` tuple must have K entries."""

    def check(xp: Any, y_true: Array, y_pred: Array, *, axis: int | None = None,
              ignore_class: int | None = None, weight: Any = None, **_: Any) -> None:
        k = y_pred.shape[-1]
        if (ignore_class is None and type(y_true) is np.ndarray and y_true.dtype.kind in "iu"
                and y_true.size and np.minimum.reduce(y_true, axis=None) >= 0
                and np.maximum.reduce(y_true, axis=None) < k
                and not (weight_per_class and isinstance(weight, tuple) and len(weight) != k)):
            return  # the common call: NumPy integer labels, all in range (two reductions)
        counted = None if ignore_class is None else y_true != ignore_class
        if _array.is_floating(y_true):
            fractional = y_true != xp.round(y_true)
            fractional = fractional if counted is None else counted & fractional
            if _array.to_bool(xp.any(fractional)):
                raise ValueError(f"{name}: y_true must hold integer class indices; "
                                 + _array.describe_range(xp, y_true, fractional, "y_true")
                                 .replace("outside", "that are not whole numbers"))
        bad = (y_true < 0) | (y_true >= k)
        bad = bad if counted is None else counted & bad
        where = "its last axis" if axis is None else f"axis {axis}"
        if _array.to_bool(xp.any(bad)):
            ignore = "" if ignore_class is None else f" other than ignore_class={ignore_class}"
            raise ValueError(f"{name}: class indices{ignore} must lie in [0, {k - 1}] for y_pred "
                             f"with {k} classes on {where}; "
                             + _array.describe_range(xp, y_true, bad, "y_true"))
        if weight_per_class and isinstance(weight, tuple) and len(weight) != k:
            raise ValueError(f"{name}: weight has {len(weight)} entries but y_pred has {k} classes "
                             f"on {where}; give one weight per class")

    # only the labels' range is tested (for the callers that test it themselves: losskit.torch)
    check.labels_only = not weight_per_class  # type: ignore[attr-defined]
    return check


@dataclass(frozen=True)
class Option:
    """A keyword-only option of a loss: its name, default and the check that normalises it."""

    name: str
    default: Any
    check: Callable[[str, Any], Any]
    doc: str


FROM_LOGITS = Option("from_logits", False, check_bool,
                     "whether ``y_pred`` holds logits (True) or probabilities (False)")
LABEL_SMOOTHING = Option("label_smoothing", 0.0, check_fraction,
                         "amount in [0, 1] by which hard targets are pulled towards uniform")
AXIS = Option("axis", -1, check_axis, "the axis of ``y_pred`` that the loss reduces over")


@dataclass(frozen=True)
class Interval:
    """A range of allowed values (closed unless an end is declared open), used for validation
    messages and test inputs."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        return (f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open or math.isinf(self.high) else ']'}")

    def any_outside(self, xp: Any, arr: Array) -> bool:
        """Whether any value lies outside, from two reductions (min and max) rather than elementwise
        masks; NaN is not flagged (if either reduction is NaN, the elementwise check decides)."""
        if type(arr) is np.ndarray:  # the ufuncs' reductions directly: no wrapper per call
            if arr.size == 0:
                return False
            both = _numpy_backend.minmax(arr)  # one compiled pass, or NumPy's two reductions
            low, high = both if both is not None else (float(np.minimum.reduce(arr, axis=None)),
                                                       float(np.maximum.reduce(arr, axis=None)))
            if self.low < low and high < self.high:  # inside, NaN-free and away from both ends
                return False
        else:
            if math.prod(arr.shape) == 0:
                return False
            if hasattr(arr, "detach"):  # a torch tensor that requires grad: read its values only
                arr = arr.detach()
            low, high = float(xp.min(arr)), float(xp.max(arr))
        if math.isnan(low) or math.isnan(high):
            return _array.to_bool(xp.any(self.outside(arr)))
        return self._outside_scalar(low) or self._outside_scalar(high)

    def _outside_scalar(self, v: float) -> bool:
        return ((v <= self.low if self.low_open else v < self.low)
                or (v >= self.high if self.high_open else v > self.high))

    def outside(self, arr: Array) -> Array:
        """Where ``arr`` lies outside the interval (NaN is not flagged: it propagates)."""
        below = arr <= self.low if self.low_open else arr < self.low
        above = arr >= self.high if self.high_open else arr > self.high
        return below | above


UNIT = Interval(0.0, 1.0)
NONNEGATIVE = Interval(0.0, math.inf)
POSITIVE = Interval(0.0, math.inf, low_open=True)


@dataclass(frozen=True)
class Input:
    """An extra array a loss takes at call time (Gaussian NLL's ``var``, a ``where`` mask).

    It is passed by keyword to the function and to the class's ``__call__``, ``call``, ``gradient``
    and ``value_and_gradient``; it must broadcast to ``y_pred``'s shape, and reaches the kernel
    broadcast to that shape, in the compute dtype (``kind="real"``) or as booleans (``kind="bool"``),
    with the reduced axis last, or as ``None`` when an optional input is not given.

    A ``differentiable`` input (the second member of a pair, a triplet's negative) has a gradient
    too: asked with ``wrt`` (see :class:`LossDef`), the kernel returns the derivative of each sample's
    value with respect to each element of the input's row, and the core applies the same weights,
    mask and reduction to it as to the gradient of ``y_pred`` (:meth:`Loss.value_and_gradients`,
    the PyTorch and JAX autograd bridges). Other inputs are not differentiated (autograd through
    them raises).
    """

    name: str
    doc: str
    required: bool = True
    kind: str = "real"
    domain: Interval | None = None
    per_sample: bool = False  # one value per sample (shape: y_pred's without its reduced/event axes)
    differentiable: bool = False  # the kernel gives its gradient too, when asked (``wrt``)


@dataclass(frozen=True, repr=False)
class LossDef:
    """Everything about one loss, declared once.

    ``targets`` says what ``y_true`` holds: ``"real"`` values, ``"binary"`` probabilities (each in
    [0, 1]), a ``"distribution"`` over the reduced axis, class ``"index"`` labels, or ``"sign"`` labels
    (-1/1); the docs and the generated test inputs use it.
    ``kernel(xp, y_true, y_pred, *, grad, **options)`` works on arrays whose reduced axis is last and
    returns the per-sample value and, when ``grad`` is true, the derivative of each sample's value with
    respect to each element of its ``y_pred`` row. A ``precision_aware`` kernel also gets ``widened``:
    whether the inputs were promoted to a wider compute dtype, so the kernel may skip work that only
    input-precision arithmetic needs. ``domain(options)`` gives the interval that
    ``y_true`` and ``y_pred`` must lie in (None: any real). ``check_values`` runs further checks on
    concrete values; ``mask`` marks the samples that count (``ignore_class``).

    Gradients beyond ``y_pred``: ``differentiable_target`` (``y_true`` is an input like ``y_pred``,
    e.g. a triplet's positive) and ``Input(differentiable=True)``. Asked with the keyword
    ``wrt=(names...)`` (``"y_true"`` or input names, only ever passed when not empty), the kernel
    returns ``(value, gradient, others)``: ``others`` a tuple of the per-sample value's derivatives
    with respect to each named array, in ``wrt``'s order, shaped like the ``y_pred`` gradient.

    ``reads(xp, y_true, y_pred, **options)``, for a loss that reads only some entries of each
    ``y_pred`` row (NLL: the one at the label): their positions on the reduced axis, integers of shape
    ``y_pred.shape[:-1] + (m,)``, -1 where a sample reads nothing (an ignored label). ``y_pred``'s
    domain is then checked on those entries only, as PyTorch does: an entry the loss does not read
    is not checked (and is not read by the kernel either). Called on concrete arrays with the
    reduced axis last, after ``check_values`` accepted ``y_true``; a fast kernel with the attribute
    ``checks_reads = True`` checks them in its own pass instead (raising through
    :func:`_check_read_domain`), where the reduced axis is already last.

    Row chunks: on NumPy, the generic kernel runs on chunks of rows (of the samples' flattened batch
    axes; :func:`_runner`), each chunk widened to the compute dtype only when it runs, so that the
    temporaries are one chunk's rather than the batch's; a kernel gets fewer rows, possibly with
    the batch axes flattened into one. Every registered loss is checked to give the same values and
    gradients either way (``tests/test_chunks.py``). A loss where one sample's value depends on
    other samples' rows (a statistic over the batch, a sort across samples) sets
    ``batch_coupled=True`` and always sees the whole batch.
    """

    name: str
    class_name: str
    kernel: Kernel
    doc: str
    targets: str = "real"
    options: tuple[Option, ...] = ()
    aliases: tuple[str, ...] = ()
    sparse: bool = False
    domain: Callable[[Mapping[str, Any]], dict[str, Interval]] = field(
        default=lambda opts: {})
    check_values: Callable[..., None] | None = None
    mask: Callable[..., Array] | None = None
    precision_aware: bool = False
    option_aliases: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[Input, ...] = ()
    event_ndim: int = 1  # trailing axes of y_pred one sample reduces over (see prepare_events)
    differentiable_target: bool = False  # y_true has a gradient too (kernel: wrt=("y_true", ...))
    reads: Callable[..., Array] | None = None  # y_pred's entries the loss reads (see above)
    batch_coupled: bool = False  # a sample's value reads other samples' rows (see below)

    def __repr__(self) -> str:
        return f"LossDef({self.name!r})"

    def differentiable(self) -> tuple[str, ...]:
        """The arrays besides ``y_pred`` that the kernel can differentiate, in the order ``wrt``
        takes them: ``"y_true"`` (``differentiable_target``), then the differentiable inputs."""
        return (("y_true",) if self.differentiable_target else ()) + tuple(
            i.name for i in self.inputs if i.differentiable)

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    @functools.cached_property
    def _plans(self) -> dict[tuple[Any, ...], Any]:  # option items -> the quick path's _Plan
        return {}

    @functools.cached_property
    def host_generic(self) -> _HostGeneric | None:
        """The generic path as a NumPy fast kernel (one per loss); None for a loss with an option
        named like a fast kernel's own arguments (``scale``, ``wrt``, ``grad``)."""
        clash = {"scale", "wrt", "grad"} & {o.name for o in self.options}
        return None if clash else _HostGeneric(self)

    @functools.cached_property
    def _checked_defaults(self) -> dict[str, Any]:
        return {o.name: o.check(o.name, o.default) for o in self.options}

    def normalise(self, given: Mapping[str, Any]) -> dict[str, Any]:
        if not given:  # the common call: the defaults, checked once per loss
            return dict(self._checked_defaults)
        known = {o.name: o for o in self.options}
        given = dict(given)
        for alias, canonical in self.option_aliases.items():
            if alias in given:
                if canonical in given:
                    raise TypeError(f"{self.name} got both {canonical} and its alias {alias}; "
                                    "pass one of them")
                given[canonical] = given.pop(alias)
        unknown = sorted(set(given) - set(known))
        if unknown:
            choices = ", ".join(known) or "none"
            inputs = "".join(f", {i.name}" for i in self.inputs)
            raise TypeError(f"{self.name} got unknown option(s) {', '.join(unknown)}; "
                            f"its options are: {choices}"
                            + (f" (and the input arrays y_true, y_pred{inputs})" if inputs else ""))
        values = self.defaults() | dict(given)
        return {name: known[name].check(name, value) for name, value in values.items()}


# ------------------------------------------------------------------------------- preparing inputs


@dataclass
class Batch:
    """Inputs ready for a kernel: compute dtype, rank repaired, reduced axis moved last."""

    xp: Any
    backend: str
    y_true: Array
    y_pred: Array
    out_dtype: Any
    widened: bool
    pred_shape: tuple[int, ...]
    axis: int
    mask: Array | None
    inputs: tuple[Array | None, ...] = ()
    fast: Kernel | None = None  # the backend's kernel in the input precision, if it has one
    event_shape: tuple[int, ...] = ()  # y_pred's event axes, flattened into the last (event_ndim > 1)
    # the generic NumPy path of a loss evaluated in row chunks (not batch_coupled): y_pred, a float
    # y_true and the full-size real inputs are still in out_dtype; the runner widens each chunk to
    # the compute dtype as it runs it (a batch-sized float64 copy of each would cost 2x the input)
    narrow: bool = False


def _repair_rank(xp: Any, y_true: Array, y_pred: Array, sparse: bool) -> tuple[Array, Array]:
    """Keras's ``squeeze_or_expand_to_same_rank``: ranks that differ by one trailing axis of size 1."""
    if sparse:
        if y_true.ndim == y_pred.ndim and y_true.ndim and y_true.shape[-1] == 1:
            y_true = xp.squeeze(y_true, axis=-1)
        return y_true, y_pred
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        if y_pred.ndim == 1:
            y_pred = xp.expand_dims(y_pred, axis=-1)
        else:
            y_true = xp.squeeze(y_true, axis=-1)
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        if y_true.ndim == 1:
            y_true = xp.expand_dims(y_true, axis=-1)
        else:
            y_pred = xp.squeeze(y_pred, axis=-1)
    return y_true, y_pred


def split_inputs(defn: LossDef, given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate a call's keyword arguments into options and extra input arrays."""
    names = {i.name for i in defn.inputs}
    return ({k: v for k, v in given.items() if k not in names},
            {k: v for k, v in given.items() if k in names})


def _check_input_names(defn: LossDef, inputs: Mapping[str, Any]) -> None:
    known = {i.name for i in defn.inputs}
    unknown = sorted(set(inputs) - known)
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        raise TypeError(f"{defn.name} got unknown input(s) {', '.join(unknown)}; its extra inputs "
                        f"are: {accepted}")
    for spec in defn.inputs:
        if spec.required and inputs.get(spec.name) is None:
            raise TypeError(f"{defn.name} needs the input array {spec.name}= ({spec.doc})")


def _prepare_input(defn: LossDef, spec: Input, value: Any, y_pred: Array, pred_shape: tuple[int, ...],
                   out_dtype: Any, work: Any, axis: int = -1) -> Array:
    xp = _array.namespace(y_pred)
    arr = _array.like(value, y_pred, spec.name)
    if spec.per_sample:  # one value per sample: y_pred's shape without the reduced axis
        shape = tuple(s for i, s in enumerate(y_pred.shape) if i != axis % y_pred.ndim)
        try:
            arr = xp.broadcast_to(arr, shape)
        except (ValueError, RuntimeError):
            raise ValueError(f"{defn.name}: {spec.name} has shape {tuple(arr.shape)}, which does not "
                             f"broadcast to the per-sample shape {shape} (y_pred's shape "
                             f"{pred_shape} without the axis the loss reduces over)") from None
        return xp.astype(xp.astype(arr, out_dtype, copy=False), work, copy=False)
    if spec.domain is not None and _array.is_concrete(arr):
        bad = spec.domain.outside(arr)
        found = xp.any(bad)  # traced under jax.jit even for a captured concrete array: no check then
        if _array.is_concrete(found) and _array.to_bool(found):
            raise ValueError(f"{defn.name}: {spec.name} must lie in {spec.domain}; "
                             f"{_array.describe_range(xp, arr, bad, spec.name)}")
    try:
        arr = xp.broadcast_to(arr, pred_shape)
    except (ValueError, RuntimeError):
        raise ValueError(f"{defn.name}: {spec.name} has shape {tuple(arr.shape)}, which does not "
                         f"broadcast to y_pred's shape {pred_shape}") from None
    arr = xp.reshape(arr, tuple(y_pred.shape))
    if spec.kind == "bool":
        if not (str(arr.dtype).endswith("bool") or _array.is_integral_dtype(arr)):
            raise TypeError(f"{defn.name}: {spec.name} must be a boolean mask; found dtype "
                            f"{arr.dtype}")
        return xp.astype(arr, xp.bool)
    return xp.astype(xp.astype(arr, out_dtype, copy=False), work, copy=False)


def prepare(defn: LossDef, y_true: Any, y_pred: Any, opts: Mapping[str, Any],
            dtype: Any = None, inputs: Mapping[str, Any] | None = None) -> Batch:
    """Convert, check and lay out the inputs of one evaluation (see the module docstring)."""
    if defn.event_ndim > 1:
        return prepare_events(defn, y_true, y_pred, opts, dtype, inputs)
    y_pred = _array.as_array(y_pred, "y_pred")
    y_true = _array.like(y_true, y_pred, "y_true")
    backend = _array.backend_name(y_pred)
    xp = _array.namespace(y_pred)
    out_dtype = _array.result_dtype(y_pred, dtype)
    inputs = dict(inputs or {})
    fast = _backends.fast_kernel(backend, defn.name, opts, _array.dtype_name(out_dtype),
                                 _array.device(y_pred) if backend == "torch" else None,
                                 defn.host_generic if backend == "torch" else None)
    if fast is not None and not {k for k, v in inputs.items() if v is not None} <= set(
            getattr(fast, "inputs", ())):  # extra arrays the fast kernel does not take
        fast = None
    work = out_dtype if fast is not None else _array.compute_dtype(y_pred)
    narrow = (fast is None and backend == "numpy" and not defn.batch_coupled
              and _array.dtype_name(out_dtype) != _array.dtype_name(work))
    full = out_dtype if narrow else work  # the dtype of the full-size arrays from here on
    pred_shape = tuple(y_pred.shape)
    true_shape = tuple(y_true.shape)
    if y_pred.ndim == 0:
        raise ValueError(f"{defn.name}: y_pred must have at least one axis (the one the loss "
                         f"reduces over); found a scalar")
    y_true, y_pred = _repair_rank(xp, y_true, y_pred, defn.sparse)
    axis = opts.get("axis", -1)
    if not -y_pred.ndim <= axis < y_pred.ndim:
        raise ValueError(f"{defn.name}: axis={axis} is out of range for y_pred of shape "
                         f"{pred_shape}")
    axis %= y_pred.ndim
    y_true, y_pred = _array.check_reduced_axis(defn.name, xp, y_true, y_pred, axis, defn.sparse)
    expected = tuple(y_pred.shape)
    if defn.sparse:
        expected = expected[:axis] + expected[axis + 1:]
    if tuple(y_true.shape) != expected:
        what = "the shape of y_pred without its class axis" if defn.sparse else "y_pred's shape"
        raise ValueError(f"{defn.name}: y_true has shape {true_shape} and y_pred has shape "
                         f"{pred_shape}; y_true must have {what} {expected}"
                         + (" (or that shape with a trailing axis of size 1)" if defn.sparse
                            else ", up to one trailing axis of size 1"))
    _check_input_names(defn, inputs)
    extras = {spec.name: None if inputs.get(spec.name) is None else
              _prepare_input(defn, spec, inputs[spec.name], y_pred, pred_shape, out_dtype,
                             work if spec.per_sample else full, axis)
              for spec in defn.inputs}
    per_sample_inputs = {spec.name for spec in defn.inputs if spec.per_sample}
    y_pred = xp.astype(xp.astype(y_pred, out_dtype, copy=False), full, copy=False)
    if defn.sparse:
        if not (_array.is_integral_dtype(y_true) or _array.is_floating(y_true)):
            raise TypeError(f"{defn.name}: y_true must hold integer class indices; found dtype "
                            f"{y_true.dtype}")
    else:
        y_true = xp.astype(xp.astype(y_true, out_dtype, copy=False), full, copy=False)
    concrete = _array.is_concrete(y_pred) and _array.is_concrete(y_true)
    check_xp, check_true, check_pred = xp, y_true, y_pred
    if fast is not None and backend == "torch":  # a CPU tensor: check its NumPy view, no thread hand-offs
        check_xp, check_true, check_pred = np, y_true.detach().numpy(), y_pred.detach().numpy()
    if concrete:  # before moving the axis, so that messages give the caller's indices
        _check_domain(defn, check_xp, check_true, check_pred, opts)
    if axis != y_pred.ndim - 1:
        y_pred = xp.moveaxis(y_pred, axis, -1)
        if not defn.sparse:
            y_true = xp.moveaxis(y_true, axis, -1)
        extras = {k: None if v is None or k in per_sample_inputs else xp.moveaxis(v, axis, -1)
                  for k, v in extras.items()}
    if concrete and (defn.check_values is not None or defn.reads is not None):
        if check_xp is np and axis != y_pred.ndim - 1:
            check_pred = np.moveaxis(check_pred, axis, -1)
            check_true = check_true if defn.sparse else np.moveaxis(check_true, axis, -1)
        if defn.check_values is not None:
            defn.check_values(check_xp, check_true, check_pred, **opts)
        if defn.reads is not None and not (axis == y_pred.ndim - 1
                                           and getattr(fast, "checks_reads", False)):
            _check_read_domain(defn, check_xp, check_true, check_pred if check_xp is np else y_pred,
                               opts, axis)
    mask = defn.mask(xp, y_true, **opts, **extras) if defn.mask is not None else None
    widened = _array.dtype_name(out_dtype) != _array.dtype_name(work)
    return Batch(xp, backend, y_true, y_pred, out_dtype, widened, pred_shape, axis, mask,
                 tuple(extras.values()), fast, narrow=narrow)


def prepare_events(defn: LossDef, y_true: Any, y_pred: Any, opts: Mapping[str, Any],
                   dtype: Any = None, inputs: Mapping[str, Any] | None = None) -> Batch:
    """:func:`prepare` for a loss whose sample is a block of ``event_ndim`` trailing axes of
    ``y_pred`` (CTC: ``(N, T, C)``, one value per sequence) and whose ``y_true`` holds one row per
    sample (``(N, S)``: labels; its last axis is free).

    ``y_pred`` reaches the kernel with its event axes flattened into one (``(N, T*C)``), so the
    reduction, the weights, the chain rule and the autograd bridges work unchanged (the gradient is
    reshaped back); the kernel gets ``event_shape=(T, C)``. ``y_true`` keeps its dtype (labels).
    Extra inputs declared ``per_sample`` (lengths) have the batch shape ``(N,)``; ``check_values``
    also receives the inputs and ``event_shape``. No fast kernel, no ``axis`` option."""
    n_event = defn.event_ndim
    y_pred = _array.as_array(y_pred, "y_pred")
    y_true = _array.like(y_true, y_pred, "y_true")
    backend, xp = _array.backend_name(y_pred), _array.namespace(y_pred)
    out_dtype = _array.result_dtype(y_pred, dtype)
    work = _array.compute_dtype(y_pred)
    pred_shape = tuple(y_pred.shape)
    if y_pred.ndim < n_event + 1:
        raise ValueError(f"{defn.name}: y_pred must have at least {n_event + 1} axes (a batch axis, "
                         f"then {n_event} axes per sample); found shape {pred_shape}")
    batch_shape, event_shape = pred_shape[:-n_event], pred_shape[-n_event:]
    empty_axes = [len(batch_shape) + i for i, size in enumerate(event_shape) if size == 0]
    if math.prod(batch_shape) and empty_axes:
        raise ValueError(f"{defn.name}: y_pred has shape {pred_shape}, with no entries on axis "
                         f"{empty_axes[0]}, one of the {n_event} axes each sample reduces over; each "
                         f"of its {math.prod(batch_shape)} sample(s) needs at least one entry there")
    if y_true.ndim != len(batch_shape) + 1 or tuple(y_true.shape[:-1]) != batch_shape:
        raise ValueError(f"{defn.name}: y_true has shape {tuple(y_true.shape)} and y_pred has shape "
                         f"{pred_shape}; y_true must have shape {(*batch_shape, 'S')}: one row per "
                         f"sample of y_pred's batch shape {batch_shape}")
    if not (_array.is_integral_dtype(y_true) or _array.is_floating(y_true)):
        raise TypeError(f"{defn.name}: y_true must hold integer labels; found dtype {y_true.dtype}")
    _check_input_names(defn, dict(inputs or {}))
    extras: dict[str, Array | None] = {}
    for spec in defn.inputs:
        value = (inputs or {}).get(spec.name)
        if value is None:
            extras[spec.name] = None
            continue
        arr = _array.like(value, y_pred, spec.name)
        shape = batch_shape if spec.per_sample else pred_shape
        try:
            arr = xp.broadcast_to(arr, shape)
        except (ValueError, RuntimeError):
            raise ValueError(f"{defn.name}: {spec.name} has shape {tuple(arr.shape)}, which does not "
                             f"broadcast to {shape}") from None
        if spec.kind == "bool" or (not spec.per_sample):
            raise NotImplementedError("prepare_events: only real per-sample inputs")  # not needed yet
        extras[spec.name] = arr
    narrow = (backend == "numpy" and not defn.batch_coupled
              and _array.dtype_name(out_dtype) != _array.dtype_name(work))  # see Batch.narrow
    y_pred = xp.astype(xp.astype(y_pred, out_dtype, copy=False), out_dtype if narrow else work,
                       copy=False)
    y_pred = xp.reshape(y_pred, (*batch_shape, math.prod(event_shape)))
    if _array.is_concrete(y_pred) and _array.is_concrete(y_true) and math.prod(batch_shape):
        _check_domain(defn, xp, y_true, y_pred, opts)
        if defn.check_values is not None:
            defn.check_values(xp, y_true, y_pred, event_shape=event_shape, **opts, **extras)
    for name, arr in extras.items():
        if arr is not None:
            extras[name] = xp.astype(arr, work)
    widened = _array.dtype_name(out_dtype) != _array.dtype_name(work)
    return Batch(xp, backend, y_true, y_pred, out_dtype, widened, pred_shape, y_pred.ndim - 1, None,
                 tuple(extras.values()), None, event_shape, narrow)


def _check_domain(defn: LossDef, xp: Any, y_true: Array, y_pred: Array,
                  opts: Mapping[str, Any]) -> None:
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        interval = defn.domain(opts).get(name)
        if interval is None or (defn.sparse and name == "y_true") or (
                name == "y_pred" and defn.reads is not None):  # _check_read_domain's
            continue
        if not interval.any_outside(xp, arr):
            continue
        bad = interval.outside(arr)
        if _array.to_bool(xp.any(bad)):
            hint = ""
            if name == "y_pred" and "from_logits" in opts:
                hint = "; pass from_logits=True if y_pred holds logits"
            raise ValueError(f"{defn.name}: {name} must lie in {interval}"
                             f"{' when from_logits=False' if hint else ''}; "
                             f"{_array.describe_range(xp, arr, bad, name)}{hint}")


def _check_read_domain(defn: LossDef, xp: Any, y_true: Array, y_pred: Array, opts: Mapping[str, Any],
                       axis: int = -1) -> None:
    """``y_pred``'s domain on the entries the loss reads (:attr:`LossDef.reads`), from a gather and
    two reductions; ``y_pred`` has the reduced axis last, ``axis`` is where the caller has it (the
    message gives the caller's index)."""
    interval = defn.domain(opts).get("y_pred")
    if interval is None or math.prod(y_pred.shape) == 0 or defn.reads is None:
        return
    index = defn.reads(xp, y_true, y_pred, **opts)
    if math.prod(index.shape) == 0:
        return
    every = float(xp.min(index)) >= 0  # no sample that reads nothing: no mask
    read = None if every else index >= 0
    values = _array.take_last(xp, y_pred, index if every else xp.where(read, index,
                                                                        xp.zeros_like(index)))
    if not interval.any_outside(xp, values if every else values[read]):
        return
    bad = interval.outside(values)
    bad = bad if every else bad & read
    if not _array.to_bool(xp.any(bad)):
        return
    flat_bad = np.asarray(_array._to_numpy(bad)).reshape(-1) != 0
    flat_values = np.asarray(_array._to_numpy(values)).reshape(-1)
    first = int(np.argmax(flat_bad))
    where = [int(i) for i in np.unravel_index(first, tuple(values.shape))]
    column = int(np.asarray(_array._to_numpy(index)).reshape(-1)[first])
    caller = where[:-1]
    caller.insert(axis % y_pred.ndim, column)
    offending = flat_values[flat_bad]
    raise ValueError(f"{defn.name}: y_pred must lie in {interval} (checked at the entries the loss "
                     f"reads); found {int(flat_bad.sum())} value(s) outside, from "
                     f"{offending.min():.6g} to {offending.max():.6g} (first: y_pred["
                     f"{', '.join(map(str, caller))}] = {flat_values[first]:.6g})")


# ------------------------------------------------------------------------------------ evaluation


def _runner(defn: LossDef, batch: Batch, opts: Mapping[str, Any], scale: Array | None = None
            ) -> _bridge.Run:
    """The kernel with the options bound and the ignored samples zeroed, value and gradient.

    With ``scale`` (the reduction's per-sample weight), the gradients come back already scaled
    (ignored samples have scale 0, so their gradient is 0 too): from a fast kernel that takes it,
    or, on NumPy's generic path, multiplied chunk by chunk and in the result dtype. That path runs
    the kernel in row chunks (:func:`_chunked`) unless the loss is ``batch_coupled``."""
    xp, mask = batch.xp, batch.mask
    kernel_opts = {k: v for k, v in opts.items() if k != "axis"}
    kernel = defn.kernel if batch.fast is None else batch.fast
    if defn.precision_aware and batch.fast is None:
        kernel_opts["widened"] = batch.widened
    if scale is not None and batch.fast is not None:
        kernel_opts["scale"] = scale
    if batch.event_shape:
        kernel_opts["event_shape"] = batch.event_shape
    names = [spec.name for spec in defn.inputs]

    def evaluate(y_true: Array, y_pred: Array, grad: bool, extras: tuple[Array | None, ...],
                 wrt: tuple[str, ...], mask: Array | None) -> Any:
        more = {"wrt": tuple(wrt)} if wrt else {}
        others: tuple[Array, ...] = ()
        with _quiet_numpy():  # both branches of every where() are computed; their 1/0 is intended
            out = kernel(xp, y_true, y_pred, grad=grad, **kernel_opts, **more,
                         **dict(zip(names, extras, strict=True)))
            if wrt:
                value, g, others = out
            else:
                value, g = out
            if getattr(kernel, "recheck_nonfinite", False):
                value, g = _recheck_rows(xp, defn, kernel_opts, y_true, y_pred, grad, value, g, scale)
        if mask is not None:
            value = xp.where(mask, value, xp.zeros_like(value))
            if g is not None and scale is None:
                g = xp.where(mask[..., None], g, xp.zeros_like(g))
                others = tuple(xp.where(mask[..., None], o, xp.zeros_like(o)) for o in others)
        return (value, g, tuple(others)) if wrt else (value, g)

    def run(y_true: Array, y_pred: Array, grad: bool, *extras: Array | None,
            wrt: tuple[str, ...] = ()) -> Any:
        """``(value, gradient)``; with ``wrt`` (names of :meth:`LossDef.differentiable`, ``grad``
        true, generic kernels only), ``(value, gradient, others)`` with ``others`` the gradients
        with respect to those arrays, masked like ``gradient``."""
        return evaluate(y_true, y_pred, grad, extras, wrt, mask)

    if batch.fast is not None:
        return _FastRun(run, tuple(names), defn, batch, opts)
    if batch.backend == "numpy":
        run = _chunked(defn, batch, evaluate, scale)
    elif scale is not None:
        plain = run

        def run(y_true: Array, y_pred: Array, grad: bool, *extras: Array | None,
                wrt: tuple[str, ...] = ()) -> Any:
            return _scaled(xp, plain(y_true, y_pred, grad, *extras, wrt=wrt), scale,
                           batch.out_dtype)

    run.input_names = tuple(names)  # type: ignore[attr-defined]
    return run


def _scaled(xp: Any, out: tuple[Any, ...], scale: Array | None, dtype: Any) -> tuple[Any, ...]:
    """A runner's result with its gradients multiplied by the per-sample ``scale`` (``0 * anything =
    0``) and cast to ``dtype``; unchanged without ``scale``."""
    if scale is None or out[1] is None:
        return out
    s = scale[..., None]
    with _quiet_numpy():  # a float64 gradient beyond float32's range rounds to inf, correctly
        g = _xmul_cast(xp, s, out[1], dtype)
        if len(out) == 2:
            return out[0], g
        return out[0], g, tuple(_xmul_cast(xp, s, o, dtype) for o in out[2])


def _xmul_cast(xp: Any, s: Array, g: Array, dtype: Any) -> Array:
    """``xmul(s, g)`` cast to ``dtype``; on NumPy rows of ``g`` (..., k) with ``s`` (..., 1), into
    the result a block of rows at a time, so that the (float64) product and its select are a block's
    temporaries rather than two more arrays of ``g``'s size (the same numbers: each element is the
    product rounded once to ``dtype``)."""
    if (xp is not np or type(g) is not np.ndarray or g.ndim < 2 or g.shape[-1] == 0
            or tuple(np.shape(s)) != (*g.shape[:-1], 1)):
        return xp.astype(xmul(xp, s, g), dtype, copy=False)
    res = np.empty(g.shape, dtype=dtype)
    k = g.shape[-1]
    g2, s2, r2 = g.reshape(-1, k), np.reshape(s, (-1, 1)), res.reshape(-1, k)
    step = max(1, 8192 // k)
    for lo in range(0, g2.shape[0], step):
        r2[lo:lo + step] = xmul(np, s2[lo:lo + step], g2[lo:lo + step])
    return res


def _row_view(a: Any, lead: int, rows: int) -> Any:
    """``a`` with its first ``lead`` axes as one of ``rows`` entries, as a view (None if that takes a
    copy)."""
    if lead == 1:
        return a
    try:
        return np.reshape(a, (rows, *a.shape[lead:]), copy=False)
    except ValueError:
        return None


def _chunked(defn: LossDef, batch: Batch, evaluate: Callable[..., Any], scale: Array | None
             ) -> _bridge.Run:
    """The runner of a generic kernel on NumPy arrays: a large batch of a loss that is not
    ``batch_coupled`` in chunks of rows (about ``GENERIC_CHUNK_ELEMENTS`` elements each, spread
    over losskit's threads by ``_backends.numpy.for_each_chunk``), each chunk widened to the compute
    dtype (``Batch.narrow``), evaluated, and its values and gradients written into arrays of the
    batch's size (the gradients scaled and in the result dtype when ``scale`` is given). Peak memory
    is then the outputs and a chunk's temporaries per thread, not the kernel's temporaries for
    the whole batch. The batch axes are flattened into one where that is a view (else chunks of
    the first axis). A chunk that raises is evaluated again with the whole batch, so that its
    error message counts the whole batch."""
    wide = _array.compute_dtype(batch.y_pred)
    widen_true = batch.narrow and not defn.sparse and not batch.event_shape
    out_dtype = batch.out_dtype
    coupled = defn.batch_coupled
    mask = batch.mask

    def widen(a: Any) -> Any:
        return a if a is None or a.dtype.kind != "f" or a.dtype == wide else a.astype(wide)

    def part(y_true: Array, y_pred: Array, grad: bool, extras: tuple[Array | None, ...],
             wrt: tuple[str, ...], mask: Array | None, scale: Array | None) -> tuple[Any, ...]:
        if batch.narrow:
            y_pred = y_pred.astype(wide)
            y_true = widen(y_true) if widen_true else y_true
            extras = tuple(widen(e) for e in extras)
        return _scaled(np, evaluate(y_true, y_pred, grad, extras, wrt, mask), scale, out_dtype)

    def run(y_true: Array, y_pred: Array, grad: bool, *extras: Array | None,
            wrt: tuple[str, ...] = ()) -> Any:
        shape = tuple(y_pred.shape[:-1])
        bounds: list[tuple[int, int]] = []
        if shape and not coupled:
            rows, lead = math.prod(shape), len(shape)
            bounds = _numpy_backend.row_chunks(rows, y_pred.shape[-1])
        if len(bounds) < 2:
            return part(y_true, y_pred, grad, extras, wrt, mask, scale)
        per_sample = [None if a is None else np.ascontiguousarray(np.broadcast_to(a, shape))
                      for a in (mask, scale)]  # (small: one value per sample)
        arrays = (y_true, y_pred, *extras, *per_sample)
        views = [None if a is None else _row_view(a, lead, rows) for a in arrays]
        if any(v is None and a is not None for v, a in zip(views, arrays, strict=True)):
            rows, lead = shape[0], 1  # chunks of the first axis
            bounds = _numpy_backend.row_chunks(rows, math.prod(y_pred.shape[1:]))
            if len(bounds) < 2:
                return part(y_true, y_pred, grad, extras, wrt, mask, scale)
            views = list(arrays)
        n = len(extras)

        def piece(lo: int, hi: int) -> tuple[Any, ...]:
            p = [None if v is None else v[lo:hi] for v in views]
            return part(p[0], p[1], grad, tuple(p[2:2 + n]), wrt, p[2 + n], p[3 + n])

        try:
            first = piece(*bounds[0])
            outs: list[Any] = [np.empty((rows, *first[0].shape[1:]), dtype=first[0].dtype)]
            if first[1] is not None:
                outs.append(np.empty((rows, *first[1].shape[1:]), dtype=first[1].dtype))
            if wrt:
                outs += [np.empty((rows, *o.shape[1:]), dtype=o.dtype) for o in first[2]]

            def store(lo: int, hi: int, out: tuple[Any, ...]) -> None:
                parts = [out[0], *([] if out[1] is None else [out[1]]), *(out[2] if wrt else ())]
                with _quiet_numpy():
                    for whole, chunk in zip(outs, parts, strict=True):
                        whole[lo:hi] = chunk

            store(*bounds[0], first)
            del first
            _numpy_backend.for_each_chunk(lambda lo, hi: store(lo, hi, piece(lo, hi)), bounds[1:])
        except (ValueError, TypeError):  # the whole batch's error (and its message)
            return part(y_true, y_pred, grad, extras, wrt, mask, scale)
        value = outs[0].reshape(shape)
        grads = [o.reshape(y_pred.shape) for o in outs[1:]]
        g = grads.pop(0) if len(grads) > len(wrt) else None
        return (value, g, tuple(grads)) if wrt else (value, g)

    return run


class _FastRun:
    """A runner of a fast kernel, with ``generic``: the runner of the array-API kernel on the same
    batch, for gradients that autograd must record (:mod:`losskit._bridge`); built on first use."""

    def __init__(self, run: Callable[..., Any], input_names: tuple[str, ...], defn: LossDef,
                 batch: Batch, opts: Mapping[str, Any]) -> None:
        self.run, self.input_names = run, input_names
        self._args = defn, batch, opts

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs)

    @functools.cached_property
    def generic(self) -> _bridge.Run:
        defn, batch, opts = self._args
        return _runner(defn, dataclasses.replace(batch, fast=None, widened=False), opts)


class _HostGeneric:
    """A loss's generic kernel as a fast kernel of NumPy arrays in the input dtype: NumPy's generic
    path (:func:`_runner` on a ``narrow`` batch: row chunks widened to float64 as they run, spread
    over losskit's threads, gradients scaled chunk by chunk), for a backend that views its arrays as
    NumPy ones (eager CPU torch tensors: ``_backends.torch.host_kernel``). The caller applies the
    mask, as for every fast kernel; the options come without ``axis`` (the axis is last)."""

    takes_scale = True
    takes_wrt = True

    def __init__(self, defn: LossDef) -> None:
        self.defn = defn
        self.inputs = tuple(spec.name for spec in defn.inputs)

    def __call__(self, xp: Any, y_true: Array, y_pred: Array, *, grad: bool, scale: Array | None = None,
                 wrt: tuple[str, ...] = (), **opts: Any) -> Any:
        extras = tuple(opts.pop(name, None) for name in self.inputs)
        out_dtype = y_pred.dtype
        widened = out_dtype != _array.compute_dtype(y_pred)
        batch = Batch(np, "numpy", y_true, y_pred, out_dtype, widened, tuple(y_pred.shape),
                      y_pred.ndim - 1, None, extras, None, narrow=True)
        return _runner(self.defn, batch, opts, scale)(y_true, y_pred, grad, *extras, wrt=tuple(wrt))


def _recheck_rows(xp: Any, defn: LossDef, kernel_opts: Mapping[str, Any], y_true: Array, y_pred: Array,
                  grad: bool, value: Array, g: Array | None, scale: Array | None
                  ) -> tuple[Array, Array | None]:
    """The rows of a float64 fast kernel's result that are not finite, recomputed by the generic kernel
    (the fast kernels sum plainly, where the generic ones rescale a mean that overflows only in its
    partial sums; NaN rows come out NaN either way). Only for same-shape elementwise losses."""
    bad = ~xp.isfinite(value)
    if not bool(xp.any(bad)):
        return value, g
    opts = {k: v for k, v in kernel_opts.items() if k != "scale"}
    v_bad, g_bad = defn.kernel(xp, y_true[bad], y_pred[bad], grad=grad, **opts)
    value[bad] = v_bad
    if g is not None and g_bad is not None:
        if scale is not None:
            s = xp.broadcast_to(xp.asarray(scale, dtype=g.dtype), tuple(value.shape))[bad][:, None]
            g_bad = xp.where(s == 0, xp.zeros_like(g_bad), g_bad * s)
        g[bad] = g_bad
    return value, g


def per_sample(defn: LossDef, batch: Batch, opts: Mapping[str, Any]) -> Array:
    """Per-sample values in the compute dtype, differentiable by autograd through the kernel."""
    run = _runner(defn, batch, opts)
    flags = (defn.differentiable_target, *(spec.differentiable for spec in defn.inputs))
    if batch.backend == "torch":
        return _bridge.torch_values(run, batch.y_true, batch.y_pred, batch.inputs, flags)
    if batch.backend == "jax":
        return _bridge.jax_values(run, batch.y_true, batch.y_pred, batch.inputs, flags)
    return run(batch.y_true, batch.y_pred, False, *batch.inputs)[0]


def _errstate() -> Any:
    return np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore")


try:  # NumPy 2 keeps the error state in a context variable: see _Quiet
    from numpy._core._ufunc_config import _extobj_contextvar as _EXTOBJ  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - NumPy 1
    _EXTOBJ = None
_quiet_slot: tuple[Any, Any] = (None, None)  # (a caller's error state, that state with every warning off)


def _quiet_token() -> Any:
    """Enter the quiet error state (NumPy 2); the token that ``_EXTOBJ.reset`` takes to leave it."""
    global _quiet_slot
    current = _EXTOBJ.get()
    slot = _quiet_slot
    if slot[0] is not current:
        with _errstate():
            slot = _quiet_slot = (current, _EXTOBJ.get())
    return _EXTOBJ.set(slot[1])


class _Quiet:
    """``np.errstate`` with divide, invalid, over and under ignored, at about half its cost per call.

    ``np.errstate`` builds a new error-state object on every entry (most of its ~2 us); the state it
    builds depends only on the caller's state, so the one built for the caller's last state is
    remembered (one slot: inside a caller's own ``np.errstate`` every call builds it again) and set
    into NumPy's context variable directly, exactly as ``np.errstate`` sets it."""

    __slots__ = ("token",)

    def __enter__(self) -> None:
        self.token = _quiet_token()

    def __exit__(self, *exc: Any) -> None:
        _EXTOBJ.reset(self.token)


def _quiet_numpy() -> Any:
    return _Quiet() if _EXTOBJ is not None else _errstate()


def finish_gradient(batch: Batch, g: Array) -> Array:
    """Undo the kernel layout: axis back in place, original rank, result dtype."""
    xp = batch.xp
    if batch.axis != g.ndim - 1:
        g = xp.moveaxis(g, -1, batch.axis)
    g = xp.reshape(g, batch.pred_shape)
    return xp.astype(g, batch.out_dtype, copy=False)


def _gradient_scale(batch: Batch, shape: tuple[int, ...], weight: Array | None, reduction: str
                    ) -> Array:
    """Each sample's factor in the reduced loss (float64 where the library has it): the weight over
    the reduction's divisor."""
    xp = batch.xp
    wide = _array.compute_dtype(batch.y_pred)
    ones = xp.ones(shape, dtype=wide, device=_array.device(batch.y_pred))
    scale = ones if weight is None else xp.astype(weight, wide) * ones
    if reduction == "none":
        return scale
    divisor = _divisor(batch, shape, weight, reduction)
    if not isinstance(divisor, float):
        divisor = xp.astype(divisor, wide)
    return _safe_divide(xp, scale, divisor)


def _weights(batch: Batch, shape: tuple[int, ...], sample_weight: Any) -> Array | None:
    """Per-sample weights (sample_weight times the ignore mask), broadcast to the values' shape."""
    xp = batch.xp
    weight = None
    if sample_weight is not None:
        sw = _array.like(sample_weight, batch.y_pred, "sample_weight")
        sw = xp.astype(sw, _array.compute_dtype(batch.y_pred))  # float64 even for a fast kernel
        weight = xp.broadcast_to(_align_weight(xp, sw, shape, batch.pred_shape), shape)
    if batch.mask is not None:
        valid = xp.astype(batch.mask, _array.compute_dtype(batch.y_pred))
        weight = valid if weight is None else xmul(xp, valid, weight)
    return weight


def _align_weight(xp: Any, sw: Array, shape: tuple[int, ...], pred_shape: tuple[int, ...]) -> Array:
    sw_shape = tuple(sw.shape)
    if sw.ndim == 0 or sw_shape == shape:
        return sw
    if sw_shape == (*shape, 1):
        return xp.squeeze(sw, axis=-1)
    if sw.ndim < len(shape) and sw_shape == shape[: sw.ndim]:
        return xp.reshape(sw, sw_shape + (1,) * (len(shape) - sw.ndim))
    raise ValueError(f"sample_weight has shape {sw_shape}, which does not fit the per-sample loss "
                     f"of shape {shape} (y_pred shape {pred_shape}); expected a scalar, {shape}, "
                     f"or a leading part of it such as {shape[:1]}")


def _divisor(batch: Batch, shape: tuple[int, ...], weight: Array | None, reduction: str) -> Any:
    xp = batch.xp
    if reduction == "sum":
        return 1.0
    if reduction == "mean_with_sample_weight" and weight is not None:
        return xp.sum(weight)
    if reduction == "batchmean":
        return float(shape[0]) if shape else 1.0
    if batch.mask is not None:
        return xp.sum(xp.astype(batch.mask, _array.compute_dtype(batch.y_pred)))
    return float(math.prod(shape))


def _safe_divide(xp: Any, total: Array, divisor: Any) -> Array:
    """``total / divisor``, and 0 when the divisor is 0 (an empty or fully ignored batch)."""
    if isinstance(divisor, float):
        return total / divisor if divisor else total * 0.0  # total: the sum of nothing, 0 (keeps a graph)
    nonzero = divisor != 0
    return xp.where(nonzero, total / xp.where(nonzero, divisor, xp.ones_like(divisor)),
                    xp.zeros_like(total))


def check_reduction(reduction: Any) -> str:
    if reduction is None:
        return "none"
    if reduction not in REDUCTIONS:
        choices = ", ".join(repr(r) for r in REDUCTIONS)
        raise ValueError(f"reduction must be one of {choices}; found {reduction!r}")
    return str(reduction)


# ----------------------------------------------------------------------------------- the classes


# Keras 3 wraps a loss or metric that is not its own (``compile(loss=losskit.MeanSquaredError())``)
# in ``LossFunctionWrapper`` / ``MeanMetricWrapper``, calls it as ``fn(y_true, y_pred)`` and then
# applies ``sample_weight``, ``class_weight``, masks and its reduction to what it returns: a reduced
# value would be the batch mean multiplied by the weights. Called from there, a Loss returns its
# per-sample values instead (``losskit.keras.plain_loss_call``), as the ``losskit.keras`` classes do.
_KERAS_WRAPPERS = frozenset({("keras.src.losses.losses", "call"),
                             ("keras.src.metrics.reduction_metrics", "update_state")})


def _keras_wrapper(frame: Any) -> bool:
    return (frame.f_globals.get("__name__"), frame.f_code.co_name) in _KERAS_WRAPPERS


class Loss:
    """Base class of every losskit loss: a configured loss that reduces and differentiates.

    ``loss(y_true, y_pred, sample_weight=None)`` returns the reduced loss with Keras 3's semantics:

    - ``"sum_over_batch_size"`` (default) and its synonym ``"mean"``: ``sum(w * l) / n``, with ``n``
      the number of per-sample values (for a ``(B, T)`` loss, ``B * T``), or the number of valid ones
      when samples are ignored (``ignore_class``);
    - ``"sum"``: ``sum(w * l)``;
    - ``"mean_with_sample_weight"``: ``sum(w * l) / sum(w)``;
    - ``"batchmean"`` (PyTorch's, for KL): ``sum(w * l) / B``, with ``B`` the size of the first axis of
      the per-sample values (1 for a single sample);
    - ``"none"`` or ``None``: the per-sample values ``w * l``.

    ``l`` is what the loss's function returns and ``w`` the ``sample_weight``: a scalar, an array of the
    per-sample shape, or a leading part of that shape (``(B,)`` for a ``(B, T)`` loss), broadcast over
    the rest. A sample of weight 0 contributes exactly 0, even where its loss is infinite, and an empty
    or fully ignored batch reduces to 0, never NaN.

    ``gradient(y_true, y_pred, sample_weight=None)`` is the derivative of that reduced value with
    respect to ``y_pred`` (to the logits when ``from_logits=True``), shaped like ``y_pred``; for
    ``"none"`` it is the derivative of the sum of the returned values. ``value_and_gradient`` returns
    both from one evaluation.

    ``dtype`` (default None: follow ``y_pred``) casts ``y_pred`` and float ``y_true`` before the
    computation; results come back in that dtype. Integer labels are never cast.
    """

    definition: ClassVar[LossDef]

    def __init__(self, reduction: str | None = "sum_over_batch_size", name: str | None = None,
                 dtype: Any = None, **options: Any) -> None:
        self.reduction = check_reduction(reduction)
        self.name = self.definition.name if name is None else str(name)
        self.dtype = None if dtype is None else _array.check_dtype_name(dtype)
        self.options = self.definition.normalise(options)

    # -- Keras API
    def call(self, y_true: Any, y_pred: Any, **inputs: Any) -> Array:
        """The per-sample values (what the loss's function returns), before weights and reduction."""
        batch = prepare(self.definition, y_true, y_pred, self.options, self.dtype, inputs)
        values = per_sample(self.definition, batch, self.options)
        with _quiet_numpy():  # a finite float64 value beyond float32's range rounds to inf, correctly
            return batch.xp.astype(values, batch.out_dtype, copy=False)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None, **inputs: Any) -> Array:
        if sample_weight is None and not inputs and _keras_wrapper(sys._getframe(1)):
            from .. import keras as keras_losses  # Keras is running: it weights and reduces

            return keras_losses.plain_loss_call(self, y_true, y_pred)
        if sample_weight is None and not inputs:
            plan = _plan(self.definition, self.options)
            if plan is not None and plan.whole is not None and self.dtype is None:
                whole = plan.whole(y_true, y_pred, self.reduction, self.options)
                if whole is not None:
                    return whole
            quick = _quick(self.definition, plan, self.options, self.dtype, self.reduction, y_true,
                           y_pred, False)
            if quick is not None:
                return quick[0]
            if plan is not None and type(y_pred) is not np.ndarray and self.dtype is None:
                tensor = _quick_torch(self.definition, plan, self.options, self.reduction, y_true,
                                      y_pred)
                if tensor is not None:
                    return tensor
        batch = prepare(self.definition, y_true, y_pred, self.options, self.dtype, inputs)
        if (batch.backend == "torch" and self.reduction != "none" and batch.fast is not None
                and getattr(batch.fast, "takes_scale", False) and getattr(y_pred, "requires_grad", False)
                and batch.out_dtype == y_pred.dtype and not any(
                    spec.differentiable and getattr(v, "requires_grad", False)
                    for spec, v in zip(self.definition.inputs, batch.inputs, strict=True))):
            return self._torch_fused(batch, y_pred, sample_weight)  # (its gradient: y_pred's only)
        values = per_sample(self.definition, batch, self.options)
        return self._reduce(batch, values, _weights(batch, tuple(values.shape), sample_weight))

    def _torch_fused(self, batch: Batch, y_pred: Any, sample_weight: Any) -> Array:
        """The reduced loss on torch tensors with a fused kernel: value and gradient from one pass,
        handed to autograd as the reduced value's gradient (see :func:`_bridge.torch_reduced`)."""
        import torch

        with torch.no_grad():
            shape = tuple(batch.y_pred.shape[:-1])
            weight = _weights(batch, shape, sample_weight)
            scale = _gradient_scale(batch, shape, weight, self.reduction)
            values, g = _runner(self.definition, batch, self.options, scale)(
                batch.y_true, batch.y_pred, True, *batch.inputs)
            value = self._reduce(batch, values, weight)
            grad = finish_gradient(batch, g)
        if batch.y_true.requires_grad and torch.is_grad_enabled():
            raise ValueError(_bridge._Y_TRUE_GRAD)
        generic = _runner(self.definition, dataclasses.replace(batch, fast=None, widened=False),
                          self.options)

        def recompute() -> Array:  # the gradient with autograd recording (create_graph=True)
            with torch.enable_grad():
                _, g_kernel = generic(batch.y_true, batch.y_pred, True, *batch.inputs)
                return finish_gradient(batch, scale[..., None].to(g_kernel.dtype) * g_kernel)

        return _bridge.torch_reduced(value, grad, y_pred, recompute)

    def gradient(self, y_true: Any, y_pred: Any, sample_weight: Any = None, **inputs: Any) -> Array:
        """d(reduced loss)/d(y_pred), shaped like ``y_pred`` (see the class docstring)."""
        return self.value_and_gradient(y_true, y_pred, sample_weight, **inputs)[1]

    def value_and_gradient(self, y_true: Any, y_pred: Any, sample_weight: Any = None,
                           **inputs: Any) -> tuple[Array, Array]:
        """``(loss(y_true, y_pred, sample_weight), gradient(...))`` from a single evaluation."""
        if sample_weight is None and not inputs:
            quick = _quick(self.definition, _plan(self.definition, self.options), self.options,
                           self.dtype, self.reduction, y_true, y_pred, True)
            if quick is not None:
                return quick
        with _no_autograd(y_pred):
            y_pred = _detach(y_pred)
            batch = prepare(self.definition, y_true, y_pred, self.options, self.dtype, inputs)
            xp = batch.xp
            shape = tuple(batch.y_pred.shape[:-1])  # every kernel reduces over the last axis
            weight = _weights(batch, shape, sample_weight)
            if (getattr(batch.fast, "takes_scale", False)
                    or (batch.fast is None and batch.backend == "numpy")):
                # the chain rule fused into the kernel's one write of the gradient (or, on NumPy's
                # generic path, into each row chunk's)
                scale = _gradient_scale(batch, shape, weight, self.reduction)
                values, g = _runner(self.definition, batch, self.options, scale)(
                    batch.y_true, batch.y_pred, True, *batch.inputs)
                return self._reduce(batch, values, weight), finish_gradient(batch, g)
            values, g = _runner(self.definition, batch, self.options)(batch.y_true, batch.y_pred,
                                                                       True, *batch.inputs)
            scale = weight if weight is not None else xp.ones_like(values)
            if self.reduction != "none":
                scale = _safe_divide(xp, scale, _divisor(batch, shape, weight, self.reduction))
            with _quiet_numpy():
                grad = finish_gradient(batch, xmul(xp, scale[..., None], g))
            return self._reduce(batch, values, weight), grad

    def value_and_gradients(self, y_true: Any, y_pred: Any, sample_weight: Any = None,
                            **inputs: Any) -> tuple[Array, dict[str, Array]]:
        """The reduced loss and its gradients with respect to ``y_pred`` and every array the loss
        can differentiate (``y_true`` for a triplet's positive, the inputs declared
        ``differentiable``, e.g. ``x2``, ``negative``), as ``(value, {name: gradient})``; each
        gradient has the shape of the array as given (summed over axes it was broadcast along) and
        the weights, mask and reduction of :meth:`value_and_gradient`.

        >>> import losskit
        >>> value, grads = losskit.MarginRanking(reduction="sum").value_and_gradients(
        ...     [[1.0]], [[0.0]], x2=[[0.5]])
        >>> float(value), grads["y_pred"].tolist(), grads["x2"].tolist()
        (0.5, [[-1.0]], [[1.0]])
        """
        defn = self.definition
        wrt = defn.differentiable()
        shapes = {"y_true": _shape(y_true), **{k: _shape(v) for k, v in inputs.items()}}
        with _no_autograd(y_pred):
            y_pred = _detach(y_pred)
            y_true = _detach(y_true)
            inputs = {k: _detach(v) for k, v in inputs.items()}
            batch = prepare(defn, y_true, y_pred, self.options, self.dtype, inputs)
            fused = (batch.fast is not None and getattr(batch.fast, "takes_wrt", False)
                     and getattr(batch.fast, "takes_scale", False))
            if wrt and batch.fast is not None and not fused:  # the generic kernels take wrt
                batch = dataclasses.replace(batch, fast=None, widened=False)
            xp = batch.xp
            shape = tuple(batch.y_pred.shape[:-1])
            weight = _weights(batch, shape, sample_weight)
            fused = fused or (batch.fast is None and batch.backend == "numpy")  # see _runner
            fused_scale = _gradient_scale(batch, shape, weight, self.reduction) if fused else None
            out = _runner(defn, batch, self.options, fused_scale)(batch.y_true, batch.y_pred, True,
                                                                  *batch.inputs, wrt=wrt)
            values, g = out[0], out[1]
            others = out[2] if wrt else ()
            scale = weight if weight is not None else xp.ones_like(values)
            if self.reduction != "none":
                scale = _safe_divide(xp, scale, _divisor(batch, shape, weight, self.reduction))

            def scaled(a: Array) -> Array:  # a fused kernel's gradients come scaled (NumPy's too)
                return a if fused else xmul(xp, scale[..., None], a)

            grads: dict[str, Array] = {}
            with _quiet_numpy():
                grads["y_pred"] = finish_gradient(batch, scaled(g))
                for name, other in zip(wrt, others, strict=True):
                    full = finish_gradient(batch, scaled(other))
                    grads[name] = _unbroadcast(xp, full, shapes[name])
            return self._reduce(batch, values, weight), grads

    def _reduce(self, batch: Batch, values: Array, weight: Array | None) -> Array:
        with _quiet_numpy():
            return self._reduce_values(batch, values, weight)

    def _reduce_values(self, batch: Batch, values: Array, weight: Array | None) -> Array:
        xp = batch.xp
        shape = tuple(values.shape)
        weighted = values if weight is None else xmul(xp, weight, values)
        if self.reduction == "none":
            return xp.astype(weighted, batch.out_dtype, copy=False)
        total = xp.sum(weighted)
        divisor = _divisor(batch, shape, weight, self.reduction)
        return xp.astype(_safe_divide(xp, total, divisor), batch.out_dtype, copy=False)

    # -- configuration
    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype,
                **self.options}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Loss:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Loss) and type(self) is type(other) \
            and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(map(str, self.get_config().items())))))


@dataclass(frozen=True)
class _Plan:
    """What the quick path of one loss and option set needs, worked out once: the float32 NumPy kernel
    and its options, and the checks of :func:`prepare` that apply (intervals, value checks)."""

    kernel: Kernel
    axis: int
    true_domain: Interval | None
    pred_domain: Interval | None
    check_reads: bool
    kernel64: Kernel | None = None  # float64 arrays: a float64 kernel with nothing to recheck, or None
    # the whole reduced call of the common form in one compiled call (the kernel's ``whole``:
    # ``whole(y_true, y_pred, reduction, options)``, a result or None), asked first by Loss.__call__
    whole: Callable[..., Any] | None = None


def _plan(defn: LossDef, options: Mapping[str, Any]) -> _Plan | None:
    """:func:`_make_plan`, remembered per loss for its last few option sets."""
    try:
        key = tuple(options.items())
        return defn._plans[key]
    except KeyError:
        pass
    except TypeError:  # an option value that is not hashable
        return _make_plan(defn, options)
    plans = defn._plans
    if len(plans) >= 64:
        plans.clear()
    plan = plans[key] = _make_plan(defn, options)
    return plan


def _make_plan(defn: LossDef, options: Mapping[str, Any]) -> _Plan | None:
    """The quick path's plan for ``options`` (normalised), or None when the call always takes the
    general path (no compiled float32 kernel, a kernel of extra arrays, masked samples, events)."""
    if defn.event_ndim > 1 or (defn.mask is not None and options.get("ignore_class") is not None):
        return None
    kernel = _backends.fast_kernel("numpy", defn.name, options, "float32")
    if kernel is None or getattr(kernel, "inputs", None):  # a kernel of extra arrays: none were given
        return None
    domain = defn.domain(options)
    # float64: only kernels whose every row is final (no rows of non-finite values for the generic
    # kernel, which _runner's recheck gives; the flagged kernels recompute their own rows)
    kernel64 = _backends.fast_kernel("numpy", defn.name, options, "float64")
    if kernel64 is not None and (getattr(kernel64, "inputs", None) or getattr(
            kernel64, "recheck_nonfinite", False) or getattr(kernel64, "checks_reads", False)
            != getattr(kernel, "checks_reads", False)):
        kernel64 = None
    return _Plan(kernel, options.get("axis", -1),
                 None if defn.sparse else domain.get("y_true"),
                 None if defn.reads is not None else domain.get("y_pred"),
                 defn.reads is not None and not getattr(kernel, "checks_reads", False), kernel64,
                 getattr(kernel, "whole", None))


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _quick(defn: LossDef, plan: _Plan | None, options: Mapping[str, Any], dtype: Any, reduction: str,
           y_true: Any, y_pred: Any, grad: bool) -> tuple[Array, Array] | None:
    """The common call without the general machinery: NumPy float32 arrays of the same shape (integer
    labels of the batch shape for a sparse loss), or float64 ones where the plan has a float64 kernel
    (``_Plan.kernel64``), the last axis reduced, no weights, masks, extra inputs or dtype option, and
    a compiled kernel for the loss (``plan``, from :func:`_plan`). The checks are the same as
    :func:`prepare`'s, the result is the same; None when the call is not of that form."""
    if (plan is None or dtype is not None or type(y_pred) is not np.ndarray
            or type(y_true) is not np.ndarray):
        return None
    pred_dtype = y_pred.dtype
    ndim = y_pred.ndim
    kernel, out = plan.kernel, np.float32  # the result's type
    if pred_dtype is not _F32 and pred_dtype != _F32:
        if plan.kernel64 is None or (pred_dtype is not _F64 and pred_dtype != _F64):
            return None
        kernel, out = plan.kernel64, np.float64  # type: ignore[assignment]
    if ndim == 0 or y_pred.shape[-1] == 0 or plan.axis not in (-1, ndim - 1):
        return None
    if defn.sparse:
        if y_true.shape != y_pred.shape[:-1] or y_true.dtype.kind not in "iu":
            return None
    elif y_true.shape != y_pred.shape or (y_true.dtype is not pred_dtype and y_true.dtype != pred_dtype):
        return None
    quiet, token = (None, _quiet_token()) if _EXTOBJ is not None else (_errstate(), None)
    if quiet is not None:
        quiet.__enter__()
    try:  # in _quiet_numpy()'s error state (without its object per call)
        pred_domain = None if getattr(kernel, "checks_domain", False) else plan.pred_domain
        true_domain = None if getattr(kernel, "checks_true_domain", False) else plan.true_domain
        for interval, arr in ((true_domain, y_true), (pred_domain, y_pred)):
            if interval is not None and interval.any_outside(np, arr):
                _check_domain(defn, np, y_true, y_pred, options)  # raises, with prepare's message
        if defn.check_values is not None and not getattr(kernel, "checks_labels", False):
            defn.check_values(np, y_true, y_pred, **options)  # (else the kernel refuses bad labels)
        if plan.check_reads:
            _check_read_domain(defn, np, y_true, y_pred, options)
        shape = y_pred.shape[:-1]
        count = math.prod(shape)
        divisor = 1.0 if reduction in ("sum", "none") else (
            float(shape[0]) if reduction == "batchmean" and shape else float(count))
        scale = None
        if grad and divisor != 1.0:
            scale = np.empty(shape)
            scale.fill(1.0 / divisor if divisor else 0.0)
        kernel_opts = ({k: v for k, v in options.items() if k != "axis"}
                       if "axis" in options and not getattr(kernel, "checks_labels", False)
                       else options)  # (a kernel that checks the labels names the axis as prepare)
        reduced = getattr(kernel, "reduced", None) if not grad and reduction != "none" else None
        if reduced is not None:  # a kernel that sums its values itself (nll), or None
            total = reduced(y_true, y_pred, **kernel_opts)
            if total is not None:
                return out(total / divisor if divisor else 0.0), None
        values, g = kernel(np, y_true, y_pred, grad=grad, scale=scale, **kernel_opts)
        if reduction == "none":
            return values.astype(out), g
        return out(float(np.add.reduce(values, axis=None)) / divisor if divisor else 0.0), g
    finally:
        if quiet is not None:
            quiet.__exit__(None, None, None)
        else:
            _EXTOBJ.reset(token)


def _quick_torch(defn: LossDef, plan: _Plan, options: Mapping[str, Any], reduction: str,
                 y_true: Any, y_pred: Any) -> Any:
    """:func:`_quick` for real CPU torch tensors outside ``torch.compile``, ``torch.func``
    transforms, dispatch modes and ``generic_kernels()`` (``losskit.torch._eager_context``), for the
    kernels that declare ``torch_quick`` (every kernel of ``_backends.numpy``'s table): the same
    checks and kernel on zero-copy NumPy views, the result as a tensor, and when ``y_pred``
    requires a gradient (reduced losses only), the gradient computed with the value and handed to
    autograd as :meth:`Loss._torch_fused` does. The general path's torch reductions and
    per-call dispatch are skipped (on a loaded machine each parallel torch op on a large tensor
    can wait a scheduler slice for its pool). None: the call takes the general path."""
    if not getattr(plan.kernel, "torch_quick", False):
        return None
    torch = sys.modules.get("torch")
    if (torch is None or type(y_pred) is not torch.Tensor or type(y_true) is not torch.Tensor
            or y_pred.device.type != "cpu" or y_true.device.type != "cpu" or y_true.requires_grad):
        return None
    from .. import torch as losskit_torch  # imported already: y_pred is a tensor

    if not losskit_torch._eager_context() or torch._C._functorch.is_functorch_wrapped_tensor(y_pred):
        return None
    grad = y_pred.requires_grad and torch.is_grad_enabled()
    if grad and reduction == "none":
        return None
    try:
        t_np, p_np = y_true.numpy(), y_pred.detach().numpy()
    except (RuntimeError, TypeError):  # no NumPy view (conjugate or negative bit, bfloat16, ...)
        return None
    quick = _quick(defn, plan, options, None, reduction, t_np, p_np, grad)
    if quick is None:
        return None
    value, g = quick
    if reduction == "none":
        return torch.from_numpy(value)
    result = torch.from_numpy(np.asarray(value))  # (a 0-d view: a third of torch.tensor's time)
    if not grad:
        return result

    def recompute() -> Array:  # create_graph=True: the generic kernel's gradient, recorded
        batch = prepare(defn, y_true, y_pred, options)
        shape = tuple(batch.y_pred.shape[:-1])
        scale = _gradient_scale(batch, shape, None, reduction)
        generic = _runner(defn, dataclasses.replace(batch, fast=None, widened=False), options)
        with torch.enable_grad():
            _, g_kernel = generic(batch.y_true, batch.y_pred, True, *batch.inputs)
            return finish_gradient(batch, scale[..., None].to(g_kernel.dtype) * g_kernel)

    return _bridge.torch_reduced(result, torch.from_numpy(g), y_pred, recompute)


class _no_autograd:
    """Run the analytic path without recording a PyTorch graph."""

    def __init__(self, y_pred: Any) -> None:
        self.ctx: Any = None
        if _array.backend_name(y_pred) == "torch":
            import torch

            self.ctx = torch.no_grad()

    def __enter__(self) -> None:
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


def _detach(x: Any) -> Any:
    return x.detach() if _array.backend_name(x) == "torch" else x


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else tuple(np.shape(x))


def _unbroadcast(xp: Any, g: Array, shape: tuple[int, ...]) -> Array:
    """A gradient of ``y_pred``'s shape summed back to the shape of the array it belongs to (an
    input broadcast to ``y_pred``, a ``y_true`` whose rank was repaired)."""
    if tuple(g.shape) == shape:
        return g
    if math.prod(shape) == math.prod(g.shape):
        return xp.reshape(g, shape)
    lead = g.ndim - len(shape)
    if lead > 0:
        g = xp.sum(g, axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return xp.sum(g, axis=axes, keepdims=True) if axes else g


# ------------------------------------------------------------------------------ code generation


def make_function(defn: LossDef) -> Callable[..., Array]:
    """The Keras-style per-sample function of a loss, ``fn(y_true, y_pred, *, **options)``."""

    def fn(y_true: Any, y_pred: Any, **options: Any) -> Array:
        options, inputs = split_inputs(defn, options)
        opts = defn.normalise(options)
        if not inputs:
            quick = _quick(defn, _plan(defn, opts), opts, None, "none", y_true, y_pred, False)
            if quick is not None:
                return quick[0]
        batch = prepare(defn, y_true, y_pred, opts, inputs=inputs)
        values = per_sample(defn, batch, opts)
        with _quiet_numpy():  # a finite float64 value beyond float32's range rounds to inf, correctly
            return batch.xp.astype(values, batch.out_dtype, copy=False)

    params = [inspect.Parameter("y_true", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("y_pred", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += _input_params(defn)
    params += [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default)
               for o in defn.options]
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    fn.__name__ = fn.__qualname__ = defn.name
    fn.__doc__ = defn.doc + _options_doc(defn)
    fn.__module__ = "losskit"
    return fn


def make_class(defn: LossDef) -> type[Loss]:
    """The reduced ``Loss`` subclass of a loss, constructed with its options."""

    cls = type(defn.class_name, (Loss,), {"definition": defn, "__module__": "losskit",
                                          "__qualname__": defn.class_name})
    first_line = defn.doc.strip().splitlines()[0]
    cls.__doc__ = (f"{first_line}\n\n    The reduced form of :func:`losskit.{defn.name}`; reduction, "
                   f"``sample_weight``, ``dtype`` and the gradient work as described in "
                   f":class:`losskit.Loss`.\n" + _options_doc(defn))

    cls.__init__ = signature_init(defn, Loss)  # type: ignore[misc]
    return cls


def signature_init(defn: LossDef, base: type) -> Callable[..., None]:
    """``base.__init__`` with the signature a generated class of ``defn`` shows: the loss's options
    (keyword-only, with their defaults), then ``reduction``, ``name`` and ``dtype``."""

    def __init__(self: Any, **kwargs: Any) -> None:
        base.__init__(self, **kwargs)  # type: ignore[misc]

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default)
               for o in defn.options]
    params += [inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY,
                                 default="sum_over_batch_size"),
               inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=None),
               inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY, default=None)]
    __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{defn.class_name}.__init__"
    return __init__


def _input_params(defn: LossDef) -> list[Any]:
    import inspect

    return [inspect.Parameter(i.name, inspect.Parameter.KEYWORD_ONLY,
                              **({} if i.required else {"default": None})) for i in defn.inputs]


def _options_doc(defn: LossDef) -> str:
    text = ""
    if defn.inputs:
        lines = [f"        {i.name} ({'required' if i.required else 'optional'}"
                 f"{', in ' + str(i.domain) if i.domain else ''}): {i.doc}." for i in defn.inputs]
        text += "\n    Input arrays (keyword-only, broadcast to y_pred's shape):\n" + "\n".join(lines) + "\n"
    if defn.options:
        lines = [f"        {o.name} (default {o.default!r}): {o.doc}." for o in defn.options]
        aliases = [f"{a} for {c}" for a, c in defn.option_aliases.items()]
        text += ("\n    Options (keyword-only" + (f"; also accepted: {', '.join(aliases)}" if aliases
                                                   else "") + "):\n" + "\n".join(lines) + "\n")
    return text
