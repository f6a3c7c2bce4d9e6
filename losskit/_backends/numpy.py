"""Fast kernels for NumPy arrays: the fused C kernels of ``_cpu.c`` over row chunks on a thread pool.

Each kernel reads a float32 row once, evaluates it in double precision (why that is within the 8-ulp
contract: the comment at the top of ``_cpu.c``) and writes the gradient once, already multiplied by the
reduction's per-sample weight when the caller passes ``scale``. Rows are split into contiguous chunks,
one per thread; the C code releases the GIL, so the chunks run in parallel. ``set_num_threads`` sets
the number of threads (default: the cores this process may use).

Covered (float32 input, no extra input arrays): sparse categorical and categorical cross-entropy from
logits or probabilities (any ``ignore_class``), binary cross-entropy from logits or
probabilities (with label smoothing), mean squared and absolute error, KL divergence and hinge.
Everything else takes the generic kernels. Without a C compiler at install time there is no ``_cpu``
module and every loss takes the generic kernels.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import Kernel

try:
    from . import _cpu  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the generic kernels run
    _cpu = None

# kernel ids in _cpu.c's KERNELS table
SCCE_LOGITS, CCE_LOGITS, BCE_LOGITS, BCE_PROBS, MSE, MAE, KL, HINGE, CCE_PROBS, SCCE_PROBS = range(10)

# below this many elements a call runs on the calling thread: a thread hand-off costs ~20-50 us
PARALLEL_MIN_ELEMENTS = 1 << 16

_threads = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else
               (os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads for losskit's CPU kernels (None: the cores this process may use)."""
    global _threads, _pool
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"num_threads must be a positive integer or None; found {n!r}")
    with _pool_lock:
        if _pool is not None and n != _threads:
            _pool.shutdown(wait=True)
            _pool = None
        _threads = int(n)


def get_num_threads() -> int:
    """The number of threads losskit's CPU kernels use."""
    return _threads


def available() -> bool:
    """Whether the compiled CPU kernels are installed."""
    return _cpu is not None


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="losskit")
        return _pool


def run(kernel_id: int, t: np.ndarray, x: np.ndarray, grad: bool, scale: np.ndarray | None,
        params: tuple[float, ...] = (0.0,)) -> tuple[np.ndarray, np.ndarray | None]:
    """Run one C kernel on contiguous rows: ``x`` float32 ``(..., k)``, ``t`` float32 of the same
    shape (or int64 labels of shape ``x.shape[:-1]``), ``scale`` float64 of shape ``x.shape[:-1]``.
    Returns the per-row values (float64, shape ``x.shape[:-1]``) and the float32 gradient."""
    k = x.shape[-1]
    rows = x.size // k if k else 0
    value = np.empty(x.shape[:-1], dtype=np.float64)
    g = np.empty(x.shape, dtype=np.float32) if grad else None
    if rows == 0 or k == 0:
        if g is not None:
            g.fill(0.0)
        value.fill(0.0)
        return value, g
    prm = np.asarray(params, dtype=np.float64)
    t_rows = t.reshape(rows, -1)
    x_rows, v_rows = x.reshape(rows, k), value.reshape(rows)
    g_rows = None if g is None else g.reshape(rows, k)
    s_rows = None if scale is None else scale.reshape(rows)
    n_chunks = min(_threads, rows) if x.size >= PARALLEL_MIN_ELEMENTS else 1

    def chunk(lo: int, hi: int) -> None:
        _cpu.run(kernel_id, t_rows[lo:hi], x_rows[lo:hi], hi - lo, k, v_rows[lo:hi],
                 None if g_rows is None else g_rows[lo:hi],
                 None if s_rows is None else s_rows[lo:hi], prm)

    if n_chunks == 1:
        chunk(0, rows)
    else:
        bounds = np.linspace(0, rows, n_chunks + 1).astype(int)
        futures = [_get_pool().submit(chunk, int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        for f in futures:
            f.result()
    return value, g


def _kernel(kernel_id: int, *, sparse: bool = False, params: Callable[..., tuple[float, ...]] | None = None,
            labels: Callable[[np.ndarray], np.ndarray] | None = None) -> Kernel:
    """A LossDef-style kernel over the C kernel ``kernel_id`` (takes ``scale``: the caller's chain rule
    is fused into the gradient's single write)."""

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, **opts: Any) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(y_pred, dtype=np.float32)
        if sparse:
            t = np.ascontiguousarray(y_true, dtype=np.int64)
        else:
            t = np.ascontiguousarray(y_true if labels is None else labels(y_true), dtype=np.float32)
        s = None if scale is None else np.ascontiguousarray(
            np.broadcast_to(scale, x.shape[:-1]), dtype=np.float64)
        return run(kernel_id, t, x, grad, s, params(**opts) if params else (0.0,))

    kernel.takes_scale = True  # type: ignore[attr-defined]
    return kernel


def _signs(y: np.ndarray) -> np.ndarray:
    """Keras's hinge rule: labels all 0 or 1 become -1/+1 (the array as a whole)."""
    binary = bool(np.all((y == 0) | (y == 1)))
    return 2.0 * y - 1.0 if binary else y


def _smoothing(label_smoothing: float = 0.0, **_: Any) -> tuple[float, ...]:
    return (float(label_smoothing),)


_KERNELS = {
    "scce_logits": _kernel(SCCE_LOGITS, sparse=True),
    "scce_probs": _kernel(SCCE_PROBS, sparse=True),
    "cce_logits": _kernel(CCE_LOGITS),
    "cce_probs": _kernel(CCE_PROBS),
    "bce_logits": _kernel(BCE_LOGITS, params=_smoothing),
    "bce_probs": _kernel(BCE_PROBS, params=_smoothing),
    "mse": _kernel(MSE),
    "mae": _kernel(MAE),
    "kl": _kernel(KL),
    "hinge": _kernel(HINGE, labels=_signs),
}


def select(name: str, opts: Mapping[str, Any]) -> str | None:
    """Which C kernel covers this loss and option set (None: the generic kernel)."""
    if name in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        if opts.get("label_smoothing") or opts.get("class_weight") is not None:
            return None
        kind = "scce" if name.startswith("sparse") else "cce"
        return f"{kind}_{'logits' if opts.get('from_logits') else 'probs'}"
    if name == "binary_crossentropy":
        if opts.get("pos_weight") is not None:
            return None
        return "bce_logits" if opts.get("from_logits") else "bce_probs"
    return {"mean_squared_error": "mse", "mean_absolute_error": "mae", "kl_divergence": "kl",
            "hinge": "hinge"}.get(name)


def fast_kernel(name: str, opts: Mapping[str, Any], dtype_name: str, device: Any = None
                ) -> Kernel | None:
    """The fused C kernel for float32 NumPy input, or None (see the module doc)."""
    if _cpu is None or dtype_name != "float32":
        return None
    which = select(name, opts)
    return None if which is None else _KERNELS[which]
