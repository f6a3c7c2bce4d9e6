"""Which array library an input belongs to, the dtype rules, and value checks.

Everything that depends on *which* array library is in use lives here, so that the losses themselves
are written once against the array API (``xp``) and run unchanged on NumPy, PyTorch and JAX.

Dtype rules (the same for every loss):

- the *result dtype* is the floating dtype of ``y_pred`` (or the loss's ``dtype`` option); integer or
  boolean predictions get the library's default float dtype;
- the *compute dtype* is float64 wherever the library has it (NumPy, PyTorch on CPU/CUDA, JAX with
  ``jax_enable_x64``), otherwise float32. float32, float16 and bfloat16 inputs are therefore evaluated in
  float64 and rounded once at the end, which is what makes every result correctly rounded to within a
  few units in the last place;
- integer labels are never cast to a float dtype.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import array_api_compat
import numpy as np

Array = Any  # a NumPy, PyTorch or JAX array


def backend_name(x: Array) -> str:
    """``"torch"``, ``"jax"`` or ``"numpy"`` for an array; anything else is treated as NumPy input."""
    if isinstance(x, np.ndarray | np.generic | float | int | list | tuple):
        return "numpy"  # the common case, without array_api_compat's checks (~3 us each)
    if array_api_compat.is_torch_array(x):
        return "torch"
    if array_api_compat.is_jax_array(x):
        return "jax"
    return "numpy"


# NumPy 2.1+ is itself an array-API (2023.12) namespace: using it directly skips the compat wrapper's
# per-call overhead and its ~70 ms first import. Older NumPy goes through array_api_compat.
_NUMPY_IS_ARRAY_API = tuple(int(v) for v in np.__version__.split(".")[:2]) >= (2, 1)


def namespace(x: Array) -> Any:
    """The array-API namespace of ``x``: NumPy itself (2.1+), else the ``array_api_compat`` wrapper."""
    if _NUMPY_IS_ARRAY_API and isinstance(x, np.ndarray | np.generic):
        return np
    return array_api_compat.array_namespace(x)


def as_array(x: Any, name: str) -> Array:
    """Accept NumPy/PyTorch/JAX arrays of real numbers as they are; lists and scalars become NumPy arrays.

    Refused with a ``TypeError`` naming ``name``: complex dtypes (on every library: taking the real
    part would be a silent wrong number), NumPy masked arrays (their mask would be dropped; pass the
    mask as ``sample_weight`` or ``where``, or ``x.filled(...)``), and anything that is not an array of
    numbers (strings, objects, ``None``). ``ndarray`` subclasses are read as plain arrays.
    """
    backend = backend_name(x)
    if backend == "torch":
        if x.is_complex():
            raise TypeError(f"{name} must hold real numbers; found complex dtype {x.dtype} (pass "
                            f"{name}.real or {name}.abs() explicitly)")
        return x
    if backend == "jax":
        if getattr(x.dtype, "kind", "") == "c":
            raise TypeError(f"{name} must hold real numbers; found complex dtype {x.dtype} (pass "
                            f"{name}.real or abs({name}) explicitly)")
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a NumPy masked array, whose mask losskit would silently drop; "
                        f"pass {name}.filled(value) and give the mask as sample_weight (or where=, "
                        "for losses that take it)")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be an array of numbers; could not convert {type(x).__name__}: "
                        f"{exc}") from None
    if arr.dtype.kind not in "biuf":
        hint = (" (NumPy has no native bfloat16: cast to float32, or pass a PyTorch or JAX array)"
                if arr.dtype.name == "bfloat16" else "")
        raise TypeError(f"{name} must hold real numbers; found dtype {arr.dtype}{hint}")
    return arr


def like(x: Any, ref: Array, name: str) -> Array:
    """Convert ``x`` (array, list, scalar) to the array library and device of ``ref``."""
    x = as_array(x, name)
    src, dst = backend_name(x), backend_name(ref)
    if src == dst:
        if dst == "torch" and x.device != ref.device:
            raise ValueError(f"{name} is on device {x.device} but y_pred is on {ref.device}")
        return x
    if src == "numpy" and dst == "torch":
        import torch

        return torch.as_tensor(x, device=ref.device)
    if src == "numpy" and dst == "jax":
        import jax.numpy as jnp

        return jnp.asarray(x)
    raise TypeError(f"{name} is a {src} array but y_pred is a {dst} array; pass both from the same "
                    "array library")


def is_floating(x: Array) -> bool:
    return bool(namespace(x).isdtype(x.dtype, "real floating"))


def is_integral_dtype(x: Array) -> bool:
    return bool(namespace(x).isdtype(x.dtype, ("integral", "bool")))


FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def check_dtype_name(dtype: Any) -> str:
    """The name of a floating dtype given as a string, NumPy, PyTorch or JAX dtype; else ValueError."""
    name = dtype_name(dtype)
    if name not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be a floating dtype ({', '.join(FLOAT_DTYPES)}); "
                         f"found {dtype!r}")
    return name


def resolve_dtype(backend: str, dtype: Any) -> Any:
    """Turn a dtype name (``"float32"``), a NumPy dtype or a library dtype into ``backend``'s dtype."""
    if dtype is None:
        return None
    name = check_dtype_name(dtype)
    if backend == "torch":
        import torch

        return getattr(torch, name)
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.dtype(name)
    if name == "bfloat16":
        raise ValueError("NumPy has no bfloat16 dtype; use float16, float32 or float64 for NumPy input")
    return np.dtype(name)


_DTYPE_NAMES: dict[Any, str] = {}


def dtype_name(dtype: Any) -> str:
    """``"float32"`` for ``np.float32``, ``torch.float32``, ``jnp.float32`` or ``"float32"``."""
    if isinstance(dtype, str):
        return dtype
    try:
        return _DTYPE_NAMES[dtype]  # NumPy's dtype.name is slow Python; the set of dtypes is small
    except (KeyError, TypeError):
        pass
    name = _dtype_name(dtype)
    with contextlib.suppress(TypeError):
        _DTYPE_NAMES[dtype] = name
    return name


def _dtype_name(dtype: Any) -> str:
    text = str(dtype)
    if text.startswith("torch."):
        return text[len("torch."):]
    try:
        return np.dtype(dtype).name
    except TypeError:
        return text


def default_float(backend: str) -> Any:
    if backend == "torch":
        import torch

        return torch.get_default_dtype()
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray(0.0).dtype
    return np.dtype(np.float64)


def result_dtype(y_pred: Array, requested: Any) -> Any:
    """The dtype a loss returns: ``requested`` if given, else y_pred's float dtype or the default."""
    backend = backend_name(y_pred)
    if requested is not None:
        return resolve_dtype(backend, requested)
    if is_floating(y_pred):
        return y_pred.dtype
    return default_float(backend)


def compute_dtype(y_pred: Array) -> Any:
    """float64 where the library has it on this device, otherwise float32 (see the module doc)."""
    backend = backend_name(y_pred)
    if backend == "torch":
        import torch

        return torch.float32 if y_pred.device.type == "mps" else torch.float64
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    return np.dtype(np.float64)


def is_concrete(x: Array) -> bool:
    """True when the values of ``x`` can be inspected now (not under ``jax.jit`` or torch.compile)."""
    backend = backend_name(x)
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return True


def to_bool(x: Array) -> bool:
    """A concrete 0-d boolean array as a Python bool."""
    return bool(x.item()) if hasattr(x, "item") else bool(x)


def describe_range(xp: Any, x: Array, bad: Array, name: str) -> str:
    """Say where the first offending element is and the range of the offending values."""
    flat_bad = _to_numpy(bad).reshape(-1) != 0
    values = np.asarray(_to_numpy(x)).reshape(-1)
    idx = int(np.argmax(flat_bad))
    where = np.unravel_index(idx, tuple(x.shape)) if x.ndim else ()
    offending = values[flat_bad]
    index = ", ".join(str(int(i)) for i in where)
    return (f"found {int(flat_bad.sum())} value(s) outside, from {offending.min():.6g} to "
            f"{offending.max():.6g} (first: {name}[{index}] = {values[idx]:.6g})")


def _to_numpy(x: Array) -> np.ndarray:
    if backend_name(x) == "torch":
        import torch

        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def device(x: Array) -> Any:
    return array_api_compat.device(x)


def take_last(xp: Any, x: Array, idx: Array) -> Array:
    """``x[..., idx]`` row by row along the last axis; ``idx`` has shape ``x.shape[:-1] + (1,)``."""
    return xp.take_along_axis(x, idx, axis=-1)


def put_last(xp: Any, x: Array, idx: Array, values: Array) -> Array:
    """``x`` with ``x[..., idx] = values`` row by row along the last axis, O(rows) work.

    Writes in place where the library allows it (NumPy, PyTorch), so ``x`` must be a temporary of the
    caller's; JAX returns a new array. ``idx`` and ``values`` have shape ``x.shape[:-1] + (1,)``.
    """
    backend = backend_name(x)
    if backend == "torch":  # out of place while autograd records (a second derivative, see _bridge)
        return x.scatter(-1, idx, values) if x.requires_grad else x.scatter_(-1, idx, values)
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.put_along_axis(x, idx, values, axis=-1, inplace=False)
    np.put_along_axis(x, idx, values, axis=-1)
    return x


def index_dtype(xp: Any, labels: Array) -> Any:
    """Integer labels keep their dtype; boolean labels (read as 0/1, as Keras does) and whole-number
    float labels become the default index dtype."""
    if is_integral_dtype(labels) and not str(labels.dtype).endswith("bool"):
        return labels.dtype
    return xp.argmax(xp.zeros(1)).dtype


def check_reduced_axis(name: str, xp: Any, y_true: Array, y_pred: Array, axis: int,
                       sparse: bool) -> tuple[Array, Array]:
    """Refuse a reduced axis of size 0 when there are samples; pad it to size 1 for an empty batch.

    A loss reduces over ``axis`` (already normalised to ``0 <= axis < y_pred.ndim``): with samples
    (``N > 0``) and no entry on that axis there is no value to give (a mean over nothing is not a
    loss), so it is a ``ValueError``. An empty batch (``N = 0``) has no samples whatever the axis size:
    ``(0, 0)`` is padded to ``(0, 2)`` (by concatenation, which keeps a PyTorch graph) so that every
    kernel sees some classes, and reduces to 0 like any empty batch. ``y_true`` is padded with
    ``y_pred`` when it has ``y_pred``'s shape (not for sparse labels, which have no class axis).
    """
    shape = tuple(y_pred.shape)
    if shape[axis] != 0:
        return y_true, y_pred
    samples = math.prod(shape[:axis] + shape[axis + 1:])
    if samples:
        raise ValueError(f"{name}: y_pred has shape {shape}, with no entries on axis {axis}, the "
                         f"axis the loss reduces over; each of its {samples} sample(s) needs at "
                         "least one entry there")

    def pad(x: Array) -> Array:
        extra = (*shape[:axis], 2, *shape[axis + 1:])
        return xp.concat([x, xp.zeros(extra, dtype=x.dtype, device=device(x))], axis=axis)

    if not sparse and tuple(y_true.shape) == shape:
        y_true = pad(y_true)
    return y_true, pad(y_pred)
