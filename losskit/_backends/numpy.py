"""Fast kernels for NumPy arrays: the fused C kernels of ``_cpu.c`` over row chunks on a thread pool.

Each kernel reads a float32 row once, evaluates it in double precision (why that is within the 8-ulp
contract: the comment at the top of ``_cpu.c``) and writes the gradient once, already multiplied by the
reduction's per-sample weight when the caller passes ``scale``. Rows are split into contiguous chunks,
one per thread; the C code releases the GIL, so the chunks run in parallel. ``set_num_threads`` sets
the number of threads (default: the cores this process may use).

Covered (float32 input, no extra input arrays): sparse categorical and categorical cross-entropy from
logits or probabilities (any ``ignore_class``), binary cross-entropy from logits or
probabilities (with label smoothing), mean squared and absolute error, KL divergence and hinge; and
from the catalog, with every option set: huber, smooth_l1, log_cosh, squared_hinge,
categorical_hinge, soft_margin, mean_absolute_percentage_error, mean_squared_logarithmic_error,
pinball, binary and categorical focal cross-entropy, kl_div, jensen_shannon_divergence,
total_variation_distance, multilabel_soft_margin, perceptron, nll, poly_loss_cross_entropy,
categorical_generalized_cross_entropy, multiclass_hinge, multi_margin, logits_distillation,
generalized_jsd, generalized_kl_divergence without ``log_predictions``, poisson (Keras's
``p - t log p``) and mean_gamma_deviance (the checked kernels, as poisson_nll); hinge_embedding,
multilabel_margin and margin_ranking (with its extra input ``x2``, whose gradient it gives when asked
with ``wrt``). float64 input (``WIDE``): binary cross-entropy, MSE, MAE, hinge, huber, smooth L1, MAPE,
pinball, squared hinge, soft margin, perceptron, hinge_embedding, multilabel_margin, multi_margin,
multilabel_soft_margin, multiclass_hinge, categorical_hinge and total_variation_distance; and, with
exact pairs and rows flagged for the generic kernel where the error bound fails, sparse and
categorical cross-entropy (logits or probabilities), kl_divergence and kl_div, poisson_nll and
gaussian_nll (``_checked(..., float64=True)``); logits_distillation and generalized_jsd at beta < 1
(``distill_d``; beta = 1: the generic kernel in row chunks, also for float64 torch tensors). nll
reads only the
label's entry (``_cpu.nll``, float32 and float64). Everything else takes the generic kernels.
Without a C compiler at install time there is no ``_cpu`` module and every loss takes the generic
kernels.

Losses with several differentiable members (``_cpu.embed``, float32; every member's gradient asked
for by ``wrt`` from the one pass): triplet_margin (p 2, p 1 with eps in the difference, or the cosine
distance) and cosine_embedding; in float64 (double-length pairs with fma), triplet_margin with p 2 and
cosine_embedding. Also through ``_cpu.embed``: cosine_similarity (float32 and float64: compensated dot
products) and, on float32 rows of similarities, ntxent (denominator "negatives") and circle, with
``where``; on float64 rows the same two with their exponents as double-length pairs and the log-sum
and everything after it in double length. Rows these kernels cannot keep within the contract are
recomputed by the generic kernels.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import numpy as np

from .._double import dd_constant
from . import Kernel, thread_flag

try:
    from . import _cpu  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the generic kernels run
    _cpu = None

# kernel ids in _cpu.c's KERNELS table
SCCE_LOGITS, CCE_LOGITS, BCE_LOGITS, BCE_PROBS, MSE, MAE, KL, HINGE, CCE_PROBS, SCCE_PROBS = range(10)
(HUBER, SMOOTH_L1, LOG_COSH, SQUARED_HINGE, CATEGORICAL_HINGE, SOFT_MARGIN, MAPE, MSLE, PINBALL,
 FOCAL_LOGITS, FOCAL_PROBS, CFOCAL_LOGITS, CFOCAL_PROBS, KL_DIV, JENSEN_SHANNON, TOTAL_VARIATION,
 GENERALIZED_KL, MULTILABEL_SOFT_MARGIN, PERCEPTRON, NLL, POLY1, GCE_LOGITS, GCE_PROBS,
 MULTICLASS_HINGE, MULTI_MARGIN, DISTILL) = range(10, 36)
HINGE_EMBEDDING, MULTILABEL_MARGIN = range(36, 38)
CCE_PROBS_SPARSE = 38  # value only with sparse targets (else cce_probs itself)
SCCE_PROBS_CHECKED = 39  # scce_probs with y_pred's domain check in its pass (probs3's ids: 39-44)
CCE_PROBS_CHECKED = 40  # cce_probs with both inputs' domain checks in its pass (probs4)
# the kernels that flag the rows they cannot keep within the contract (_cpu.c's KERNELS3 table, whose
# ids follow KERNELS's)
_N = 36 if _cpu is None else _cpu.N_KERNELS
POISSON_NLL_LOG, POISSON_NLL_RATE, GAUSSIAN_NLL = range(_N, _N + 3)
MARGIN_RANKING = _N + 3
POISSON, GAMMA_DEVIANCE = _N + 4, _N + 5

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


_local = threading.local()


def calling_thread_only() -> contextlib.AbstractContextManager[None]:
    """Within the block, this thread runs the C kernels itself instead of splitting rows over the pool
    (for callers that already run one batch per thread, such as ``losskit evaluate``)."""
    return thread_flag(_local, "alone")


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


MINMAX_MAX_ELEMENTS = 1 << 14  # above, NumPy's two (memory-bound) reductions are as fast


def minmax(arr: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of a small C-contiguous float32 or float64 array in one compiled call (both NaN
    when an element is NaN, as NumPy's reductions give): a small call's range check pays one call
    rather than two ufunc reductions. None for other arrays, large ones, and without the extension.

    >>> minmax(np.array([3.0, -1.0, 2.0])) if available() else (-1.0, 3.0)
    (-1.0, 3.0)
    """
    if _cpu is None or not 0 < arr.size <= MINMAX_MAX_ELEMENTS or not arr.flags.c_contiguous:
        return None
    dtype = arr.dtype
    if dtype == _F32:
        return _cpu.minmax(0, arr)
    if dtype == _F64:
        return _cpu.minmax(1, arr)
    return None


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="losskit")
        return _pool


_NO_PARAMS = np.zeros(1)  # the parameters of a kernel that has none (read only by the C code)
_NO_PARAMS.setflags(write=False)


def _split_rows(chunk: Callable[[int, int], None], rows: int, size: int) -> None:
    """``chunk(lo, hi)`` over ``rows`` rows: on the calling thread below ``PARALLEL_MIN_ELEMENTS``
    elements (``size``) or inside :func:`calling_thread_only`, else one contiguous part per thread
    of the pool (the C kernels release the GIL)."""
    n_chunks = min(_threads, rows) if size >= PARALLEL_MIN_ELEMENTS else 1
    if n_chunks <= 1 or getattr(_local, "alone", False):
        chunk(0, rows)
        return
    bounds = np.linspace(0, rows, n_chunks + 1).astype(int)
    for f in [_get_pool().submit(chunk, int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]:
        f.result()


def run(kernel_id: int, t: np.ndarray, x: np.ndarray, grad: bool, scale: np.ndarray | None,
        params: tuple[float, ...] = (0.0,), extra: np.ndarray | None = None,
        out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Run one C kernel on contiguous rows: ``x`` float32 (or float64, for the kernels in ``WIDE``)
    ``(..., k)``, ``t`` of the same shape and dtype (or int64 labels of shape ``x.shape[:-1]``),
    ``scale`` float64 of shape ``x.shape[:-1]``, ``extra`` (the checked kernels' third array, Gaussian
    NLL's variance) float32 of ``x``'s shape; ``out``: a C-contiguous array of ``x``'s shape and
    dtype for the gradient (else a new one). Returns the per-row values (float64, shape
    ``x.shape[:-1]``) and the gradient in ``x``'s dtype."""
    k = x.shape[-1]
    rows = x.size // k if k else 0
    wide = x.dtype == np.float64
    value = np.empty(x.shape[:-1], dtype=np.float64)
    g = (np.empty(x.shape, dtype=x.dtype) if out is None else out) if grad else None
    if rows == 0 or k == 0:
        if g is not None:
            g.fill(0.0)
        value.fill(0.0)
        return value, g
    prm = (_NO_PARAMS if params == (0.0,) and math.copysign(1.0, params[0]) > 0
           else np.asarray(params, dtype=np.float64))
    if x.size < PARALLEL_MIN_ELEMENTS:  # the calling thread, whole arrays: no views, no closure
        _cpu.run(kernel_id, wide, t, x, rows, k, value, g, scale, prm, extra)
        return value, g
    t_rows = t.reshape(rows, -1)
    x_rows, v_rows = x.reshape(rows, k), value.reshape(rows)
    g_rows = None if g is None else g.reshape(rows, k)
    s_rows = None if scale is None else scale.reshape(rows)
    e_rows = None if extra is None else extra.reshape(rows, k)

    def chunk(lo: int, hi: int) -> None:
        _cpu.run(kernel_id, wide, t_rows[lo:hi], x_rows[lo:hi], hi - lo, k, v_rows[lo:hi],
                 None if g_rows is None else g_rows[lo:hi],
                 None if s_rows is None else s_rows[lo:hi], prm,
                 None if e_rows is None else e_rows[lo:hi])

    _split_rows(chunk, rows, x.size)
    return value, g


def _scale_rows(scale: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The reduction's per-sample ``scale`` as a C-contiguous float64 array of ``shape``."""
    if type(scale) is np.ndarray and scale.shape == shape and scale.dtype == np.float64 \
            and scale.flags.c_contiguous:
        return scale
    return np.ascontiguousarray(np.broadcast_to(scale, shape), dtype=np.float64)


def _kernel(kernel_id: int, *, sparse: bool = False, params: Callable[..., tuple[float, ...]] | None = None,
            labels: Callable[[np.ndarray], np.ndarray] | None = None, dtype: Any = np.float32) -> Kernel:
    """A LossDef-style kernel over the C kernel ``kernel_id`` (takes ``scale``: the caller's chain rule
    is fused into the gradient's single write) for ``dtype`` input (float32, or float64 for the
    ``WIDE`` kernels). ``params(k, **options)`` gives the kernel's numeric parameters (``k`` the size
    of the reduced axis)."""

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, **opts: Any) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(y_pred, dtype=dtype)
        if sparse:
            t = np.ascontiguousarray(y_true, dtype=np.int64)
        else:
            t = np.ascontiguousarray(y_true if labels is None else labels(y_true), dtype=dtype)
        s = None if scale is None else _scale_rows(scale, x.shape[:-1])
        return run(kernel_id, t, x, grad, s, params(x.shape[-1], **opts) if params else (0.0,))

    kernel.kernel_id, kernel.params, kernel.labels = kernel_id, params, labels  # type: ignore[attr-defined]
    kernel.takes_scale = True  # type: ignore[attr-defined]
    # float64: a row whose value overflows (or is NaN) is recomputed by the generic kernel (_core)
    kernel.recheck_nonfinite = dtype == np.float64  # type: ignore[attr-defined]
    return kernel


def _redo_rows(loss: str, bad: np.ndarray, value: np.ndarray, g: np.ndarray | None,
               s: np.ndarray | None, t: np.ndarray, x: np.ndarray, grad: bool, opts: dict[str, Any],
               float64_input: bool = False, generic: Kernel | None = None) -> None:
    """Recompute the rows ``bad`` that a C kernel could not keep within the contract with the loss's
    generic kernel on float64 rows, in place: values and gradients (times the rows' ``scale``, 0
    where it is 0). ``float64_input``: the input was float64 already (a precision-aware kernel is
    told it was not widened). ``generic``: that kernel given directly (``opts`` complete for it)."""
    if generic is None:
        from ..losses import _registry  # here: the registry imports the backends

        defn = _registry._DEFINITIONS[loss]
        generic = defn.kernel
        if float64_input and defn.precision_aware:
            opts = dict(opts, widened=False)
    v_bad, g_bad = generic(np, t[bad].astype(np.float64), x[bad].astype(np.float64), grad=grad,
                           **opts)
    value[bad] = v_bad
    if g is not None and g_bad is not None:
        if s is not None:
            sb = s[bad][:, None]
            g_bad = np.where(sb == 0, 0.0, g_bad * sb)
        g[bad] = g_bad


def _checked(kernel_id: int, loss: str, params: Callable[..., tuple[float, ...]],
             extra: str | None = None, *, float64: bool = False) -> Kernel:
    """A kernel over one of ``_cpu.c``'s checked kernels (``extra``: the name of the loss's extra
    input array, passed to the C kernel): float32 input through ``_cpu.run`` (``KERNELS3``), or with
    ``float64`` float64 input through ``_cpu.run3_d`` (``KERNELS3_D``: Poisson and Gaussian NLL, the
    pairs and the row check above ``poisson_nll_d``). The C kernel gives the value NaN to the rows it
    cannot keep within the contract (and to rows that are not finite); those rows, and only those,
    are recomputed here by the loss's generic kernel on float64 input, values and gradients
    (scaled)."""
    dtype = np.float64 if float64 else np.float32

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, **opts: Any) -> tuple[np.ndarray, np.ndarray | None]:
        given = None if extra is None else opts.pop(extra)
        x = np.ascontiguousarray(y_pred, dtype=dtype)
        t = np.ascontiguousarray(y_true, dtype=dtype)
        e = None if given is None else np.ascontiguousarray(np.broadcast_to(given, x.shape),
                                                            dtype=dtype)
        s = None if scale is None else np.ascontiguousarray(
            np.broadcast_to(scale, x.shape[:-1]), dtype=np.float64)
        if float64:  # run3_d always takes a third array
            value, g = _run3_d(kernel_id, t, x, x if e is None else e, grad, s,
                               params(x.shape[-1], **opts))
        else:
            value, g = run(kernel_id, t, x, grad, s, params(x.shape[-1], **opts), e)
        bad = ~np.isfinite(value)
        if bad.any():
            more = {} if e is None or extra is None else {extra: e[bad].astype(np.float64)}
            _redo_rows(loss, bad, value, g, s, t, x, grad, {**opts, **more}, float64_input=float64)
        return value, g

    kernel.kernel_id, kernel.params, kernel.labels = kernel_id, params, None  # type: ignore[attr-defined]
    kernel.takes_scale = True  # type: ignore[attr-defined]
    kernel.inputs = () if extra is None else (extra,)  # type: ignore[attr-defined]
    return kernel


def _pair(kernel_id: int, loss: str, params: Callable[..., tuple[float, ...]], extra: str) -> Kernel:
    """A kernel over a ``_cpu.c`` KERNELS3 kernel whose every row is within the contract (no rows to
    recompute) and whose extra input ``extra`` is differentiable: its gradient, asked with
    ``wrt=(extra,)``, is the negative of ``y_pred``'s (margin ranking's ``x2``), as the generic
    kernel gives it (float32). The C kernel's last parameter: where it writes that negated gradient
    (0: not at all; else that many elements after the first gradient's start)."""

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, wrt: tuple[str, ...] = (), **opts: Any) -> Any:
        if wrt and tuple(wrt) != (extra,):
            raise ValueError(f"{loss}: no gradient with respect to {wrt!r}")
        given = opts.pop(extra)
        x = np.ascontiguousarray(y_pred, dtype=np.float32)
        t = np.ascontiguousarray(y_true, dtype=np.float32)
        e = np.ascontiguousarray(np.broadcast_to(given, x.shape), dtype=np.float32)
        s = None if scale is None else np.ascontiguousarray(
            np.broadcast_to(scale, x.shape[:-1]), dtype=np.float64)
        prm = params(x.shape[-1], **opts)
        if not (wrt and grad):
            return run(kernel_id, t, x, grad, s, (*prm, 0.0), e)
        # one buffer (the twin hands it over as is): the kernel writes the negated gradient
        # x.size elements after the first
        both = (np.empty if x.size else np.zeros)((2, *x.shape), dtype=np.float32)
        value, _ = run(kernel_id, t, x, grad, s, (*prm, float(x.size)), e, out=both[0])
        return value, both[0], (both[1],)

    kernel.kernel_id, kernel.params, kernel.labels = kernel_id, params, None  # type: ignore[attr-defined]
    kernel.takes_scale = True  # type: ignore[attr-defined]
    kernel.inputs = (extra,)  # type: ignore[attr-defined]
    kernel.takes_wrt = True  # type: ignore[attr-defined]
    return kernel


def _poisson_params(k: int, log_input: bool, full: bool, eps: float, **_: Any) -> tuple[float, ...]:
    return (float(log_input), float(full), float(eps))


def _no_params(k: int, **_: Any) -> tuple[float, ...]:
    return (0.0,)


def _gaussian_params(k: int, full: bool, eps: float, **_: Any) -> tuple[float, ...]:
    return (float(full), float(eps))


def label_kind(arr: Any) -> int | None:
    """1 when the NumPy float32/float64 array ``arr`` holds only -1 and 1, 2 when only 0 and 1, 0
    otherwise (NaN included), in one compiled pass; None without the extension or for another
    array (the caller checks with NumPy).

    >>> label_kind(np.array([1.0, -1.0])) if available() else 1
    1
    """
    if (_cpu is None or type(arr) is not np.ndarray or not arr.flags.c_contiguous
            or arr.dtype not in (_F32, _F64)):
        return None
    return int(_cpu.label_kind(int(arr.dtype == _F64), arr))


def _signs(y: np.ndarray) -> np.ndarray:
    """Keras's hinge rule: labels all 0 or 1 become -1/+1 (the array as a whole)."""
    kind = label_kind(y)
    if kind is not None:
        return 2.0 * y - 1.0 if kind == 2 and y.size else y
    if y.size and np.minimum.reduce(y, axis=None) < 0:  # a negative label: not all 0 or 1 (one pass)
        return y
    either = np.equal(y, 0)
    np.logical_or(either, np.equal(y, 1), out=either)
    binary = bool(either.all())
    return 2.0 * y - 1.0 if binary else y


def _smoothing(k: int, label_smoothing: float = 0.0, **_: Any) -> tuple[float, ...]:
    return (float(label_smoothing),)


def _option(name: str) -> Callable[..., tuple[float, ...]]:
    """The numeric option ``name`` as the kernel's one parameter."""
    return lambda k, **opts: (float(opts[name]),)


def _class_weights(loss: str, k: int, weight: Any) -> tuple[float, ...]:
    """``(has weight, w_0, ..., w_{k-1})``: a ``weight`` option (None, a number or one per class)."""
    if weight is None:
        return (0.0,)
    if isinstance(weight, float):
        return (1.0,) + (weight,) * k
    if len(weight) != k:
        raise ValueError(f"{loss}: weight has {len(weight)} entries; y_pred has {k} classes on its "
                         "last axis, and weight needs one per class")
    return (1.0, *weight)


def _focal(k: int, label_smoothing: float, gamma: float, apply_class_balancing: bool, alpha: float,
           **_: Any) -> tuple[float, ...]:
    return (label_smoothing, gamma, float(apply_class_balancing), alpha)


def _cfocal(k: int, alpha: float, gamma: float, label_smoothing: float, **_: Any
            ) -> tuple[float, ...]:
    return (alpha, gamma, label_smoothing)


def _distill(k: int, temperature: float, temperature_squared: bool, beta: float = 0.0, **_: Any
             ) -> tuple[float, ...]:
    c = temperature * temperature if temperature_squared else 1.0
    return (1.0 / temperature, c, beta, temperature if temperature_squared else 1.0 / temperature)


def _multi_margin(k: int, p: int, margin: float, weight: Any, **_: Any) -> tuple[float, ...]:
    return (float(p), margin, *_class_weights("multi_margin", k, weight))


def _nll_kernel(dtype: Any) -> Kernel:
    """NLL over ``_cpu.nll``, the gathered kernel: only the entry at each label is read (the value
    path touches nothing else of ``y_pred``), the gradient is zeros with one entry per row (already
    times ``scale``), on the calling thread (O(rows) work besides the zeros). float32 or float64
    input (``-w_y x_y`` is one rounding either way); ignored labels read nothing (value 0). It
    checks the entries it reads against the domain (``checks_reads``: the core does not) and the
    labels (``checks_labels``: the quick path skips check_values's reductions over them).

    What is refused, with the core's messages (``_refuse_nll``): a label outside ``[0, k)`` that is
    not ``ignore_class``; a read entry above 0 (+inf included: outside the log-probabilities'
    ``[-inf, 0]``); a ``weight`` of the wrong length; shapes and dtypes are refused before (the
    quick path's shape tests, else ``prepare``). A NaN at a read entry gives a NaN value (the domain
    lets NaN through, as everywhere in losskit); entries the loss does not read are neither read nor
    checked, as PyTorch's ``nll_loss`` (the semantics ``LossDef.reads`` declares; unchanged here)."""

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, weight: Any = None, ignore_class: int | None = None,
               axis: int | None = None, **_: Any) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(y_pred, dtype=dtype)
        t = np.ascontiguousarray(y_true, dtype=np.int64)
        k = x.shape[-1]
        rows = x.size // k if k else 0
        value = np.empty(x.shape[:-1], dtype=np.float64)
        g = np.zeros(x.shape, dtype=dtype) if grad else None
        s = None if scale is None else np.ascontiguousarray(
            np.broadcast_to(scale, x.shape[:-1]), dtype=np.float64)
        opts = {"weight": weight, "ignore_class": ignore_class, "axis": axis}  # (axis: messages)
        if isinstance(weight, tuple) and len(weight) != k:
            _refuse_nll(t, x, opts)  # check_values's message
        w = None if weight is None else np.asarray(_class_weights("nll", k, weight)[1:], np.float64)
        bad_labels = bad_entries = 0
        if rows:
            bad_labels, bad_entries = _cpu.nll(
                x, dtype == np.float64, t, rows, k, 1, 0 if ignore_class is None else ignore_class,
                ignore_class is not None, w, value, g, s, 1.0)[:2]
        else:
            value.fill(0.0)
        if bad_labels or bad_entries:
            _refuse_nll(t, x, opts)
        return value, g

    def reduced(y_true: np.ndarray, y_pred: np.ndarray, *, weight: Any = None,
                ignore_class: int | None = None, axis: int | None = None, **_: Any) -> float | None:
        """The sum of the per-sample values without an array of them (float32 input: ``_cpu.nll``'s
        own sum, in double, whose order cannot change the float32 result beyond its rounding: n
        terms, n 2^-53 relative at worst, below 2^-30 for n < 2^23); None where the call needs the
        values (float64, ignore_class, copies)."""
        x, t = y_pred, y_true
        if (dtype != np.float32 or ignore_class is not None or x.dtype != np.float32
                or t.dtype != np.int64 or not x.flags.c_contiguous or not t.flags.c_contiguous
                or x.size == 0 or t.size >= 1 << 23):
            return None
        k = x.shape[-1]
        opts = {"weight": weight, "ignore_class": None, "axis": axis}
        if isinstance(weight, tuple) and len(weight) != k:
            _refuse_nll(t, x, opts)
        w = None if weight is None else np.asarray(_class_weights("nll", k, weight)[1:], np.float64)
        bad_labels, bad_entries, _, total, _ = _cpu.nll(x, False, t, x.size // k, k, 1, 0, False, w,
                                                        None, None, None, 1.0)
        if bad_labels or bad_entries:
            _refuse_nll(t, x, opts)
        return float(total)

    def whole(y_true: Any, y_pred: Any, reduction: str, options: Mapping[str, Any]) -> Any:
        """The whole reduced call of the common form in one ``_cpu.nll`` call (``Loss.__call__``
        asks it first, through ``_core._Plan.whole``): C-contiguous float32 or float64 NumPy arrays
        with int64 labels of the batch shape, or CPU torch tensors of those types with no gradient
        to record (eager mode: ``torch_backend.eager_context``), the default options (no weight,
        ``ignore_class`` or axis), reduction ``"sum"`` or the mean. The result is ``_quick``'s for
        the same call: float32, the kernel's own sum (``reduced`` above); float64, the per-sample
        values summed by NumPy. None (the call takes the usual path, which also raises the
        messages): any other call, or a bad label or entry counted by the kernel."""
        if (options["weight"] is not None or options["ignore_class"] is not None
                or options["axis"] != -1 or _cpu is None):
            return None
        if reduction == "sum":
            mean = False
        elif reduction in ("sum_over_batch_size", "mean"):
            mean = True
        else:
            return None
        tensor = type(y_pred) is not np.ndarray
        if tensor:
            tb = _torch_backend()
            if tb is None or not tb.plain_pair(y_true, y_pred):
                return None
            try:
                x = (y_pred.detach() if y_pred.requires_grad else y_pred).numpy()
                t = y_true.numpy()
            except (RuntimeError, TypeError):  # no NumPy view (bfloat16, conjugate bit, ...)
                return None
        elif type(y_true) is np.ndarray:
            x, t = y_pred, y_true
        else:
            return None
        xd = x.dtype
        wide = xd == _F64
        if (not (wide or xd == _F32) or t.dtype != _I64
                or t.shape != x.shape[:-1] or not x.flags.c_contiguous
                or not t.flags.c_contiguous):
            return None
        rows, k = t.size, x.shape[-1]
        if not rows or not k or rows >= 1 << 23:
            return None
        if wide:
            values = np.empty(t.shape)
            bad_labels, bad_entries = _cpu.nll(x, True, t, rows, k, 1, 0, False, None, values, None,
                                               None, 1.0)[:2]
            if bad_labels or bad_entries:
                return None
            total = float(np.add.reduce(values, axis=None))
        else:
            bad_labels, bad_entries, _, total, _ = _cpu.nll(x, False, t, rows, k, 1, 0, False, None,
                                                            None, None, None, 1.0)
            if bad_labels or bad_entries:
                return None
        result = total / rows if mean else total
        if not abs(result) < (1.7e308 if wide else 3.4e38):  # NaN, or a float32 overflow: the core's
            return None
        out = np.float64(result) if wide else np.float32(result)
        return tb.from_numpy(np.asarray(out)) if tensor else out

    kernel.kernel_id, kernel.params, kernel.labels = NLL, None, None  # type: ignore[attr-defined]
    kernel.takes_scale = True  # type: ignore[attr-defined]
    kernel.checks_reads = True  # type: ignore[attr-defined]
    kernel.whole = whole  # type: ignore[attr-defined]
    # _core._quick's value-only reduced call: the sum straight from the gather (no array of values
    # to write and reduce: a cold 64 KB for 8192 samples)
    kernel.reduced = reduced  # type: ignore[attr-defined]
    # the labels too: _cpu.nll counts the labels outside [0, k) that are not ignore_class, so
    # _core._quick leaves out check_values's two reductions over them (its message comes from here)
    kernel.checks_labels = True  # type: ignore[attr-defined]
    return kernel


_I64 = np.dtype(np.int64)


def _torch_backend() -> Any:
    """losskit's torch backend module when torch is imported (a tensor was given), else None."""
    global _TORCH_BACKEND
    if _TORCH_BACKEND is None and "torch" in sys.modules:
        from . import torch as torch_backend

        _TORCH_BACKEND = torch_backend
    return _TORCH_BACKEND


_TORCH_BACKEND: Any = None


def _refuse_nll(t: np.ndarray, x: np.ndarray, opts: dict[str, Any]) -> None:
    """Raise the core's message for what ``_cpu.nll`` counted (labels outside ``[0, k)`` other
    than ``ignore_class``, read entries above 0) or a ``weight`` of the wrong length: the loss's
    ``check_values``, then the domain of the entries read (``LossDef.reads``)."""
    from ..losses import _core, _registry  # here: the registry imports the backends

    defn = _registry._DEFINITIONS["nll"]
    if defn.check_values is not None:
        defn.check_values(np, t, x, **opts)
    _core._check_read_domain(defn, np, t, x, {k: v for k, v in opts.items() if k != "axis"})


def _probs_checked(checked: int, unchecked: int, loss: str, sparse: bool) -> Kernel:
    """Cross-entropy from float32 probabilities over ``_cpu.c``'s kernel ``checked``
    (``scce_probs_checked``: sparse labels, y_pred's domain; ``cce_probs_checked``: dense targets,
    the domain [0, 1] of y_true and y_pred), which checks the domain in the pass that reads the
    arrays (``checks_domain``, ``checks_true_domain``: ``_core._quick`` leaves out its min/max
    reductions over them). A row it flags (value NaN: an element outside [+0, 1] or NaN) sends the
    call to ``_core._check_domain``, which raises the core's message for an element outside
    [0, 1]; when it does not (NaN, which the domain lets through, or -0.0), the unchecked kernel
    ``unchecked`` runs the call again (dense targets without a gradient: ``cce_probs``'s value-only
    variant): the values and gradients are the unchecked kernel's either way."""

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, **opts: Any) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(y_pred, dtype=np.float32)
        t = np.ascontiguousarray(y_true, dtype=np.int64 if sparse else np.float32)
        s = None if scale is None else _scale_rows(scale, x.shape[:-1])
        value, g = run(checked, t, x, grad, s)
        both = minmax(value)  # one compiled call for a small batch
        total = both[0] if both is not None else np.add.reduce(value, axis=None) if value.size else 0.0
        if math.isnan(total):  # a flagged row (or NaN)
            from ..losses import _core, _registry  # here: the registry imports the backends

            _core._check_domain(_registry._DEFINITIONS[loss], np, t, x, {**opts, "from_logits": False})
            again = unchecked if grad or sparse else CCE_PROBS_SPARSE
            value, g = run(again, t, x, grad, s, out=g)
        return value, g

    kernel.kernel_id, kernel.params, kernel.labels = unchecked, None, None  # type: ignore[attr-defined]
    kernel.takes_scale = True  # type: ignore[attr-defined]
    kernel.checks_domain = True  # type: ignore[attr-defined]
    kernel.checks_true_domain = not sparse  # type: ignore[attr-defined]
    return kernel


_KERNELS = {
    "scce_logits": _kernel(SCCE_LOGITS, sparse=True),
    "scce_probs": _probs_checked(SCCE_PROBS_CHECKED, SCCE_PROBS, "sparse_categorical_crossentropy", True),
    "cce_logits": _kernel(CCE_LOGITS),
    "cce_probs": _probs_checked(CCE_PROBS_CHECKED, CCE_PROBS, "categorical_crossentropy", False),
    "bce_logits": _kernel(BCE_LOGITS, params=_smoothing),
    "bce_probs": _kernel(BCE_PROBS, params=_smoothing),
    "mse": _kernel(MSE),
    "mae": _kernel(MAE),
    "kl": _kernel(KL),
    "hinge": _kernel(HINGE, labels=_signs),
    "huber": _kernel(HUBER, params=_option("delta")),
    "smooth_l1": _kernel(SMOOTH_L1, params=_option("beta")),
    "log_cosh": _kernel(LOG_COSH),
    "squared_hinge": _kernel(SQUARED_HINGE, labels=_signs),
    "categorical_hinge": _kernel(CATEGORICAL_HINGE),
    "soft_margin": _kernel(SOFT_MARGIN),
    "mape": _kernel(MAPE),
    "msle": _kernel(MSLE),
    "pinball": _kernel(PINBALL, params=_option("quantile")),
    "focal_logits": _kernel(FOCAL_LOGITS, params=_focal),
    "focal_probs": _kernel(FOCAL_PROBS, params=_focal),
    "cfocal_logits": _kernel(CFOCAL_LOGITS, params=_cfocal),
    "cfocal_probs": _kernel(CFOCAL_PROBS, params=_cfocal),
    "kl_div": _kernel(KL_DIV, params=_option("log_target")),
    "jensen_shannon": _kernel(JENSEN_SHANNON),
    "total_variation": _kernel(TOTAL_VARIATION),
    "generalized_kl": _kernel(GENERALIZED_KL),
    "multilabel_soft_margin": _kernel(MULTILABEL_SOFT_MARGIN, params=lambda k, weight, **_:
                                      _class_weights("multilabel_soft_margin", k,
                                                     1.0 if weight is None else weight)),
    "perceptron": _kernel(PERCEPTRON),
    "nll": _nll_kernel(np.float32),
    "poly1": _kernel(POLY1, params=_option("epsilon")),
    "gce_logits": _kernel(GCE_LOGITS, sparse=True, params=_option("q")),
    "gce_probs": _kernel(GCE_PROBS, sparse=True, params=_option("q")),
    "multiclass_hinge": _kernel(MULTICLASS_HINGE, sparse=True),
    "multi_margin": _kernel(MULTI_MARGIN, sparse=True, params=_multi_margin),
    "distill": _kernel(DISTILL, params=_distill),
    "poisson_nll_log": _checked(POISSON_NLL_LOG, "poisson_nll", _poisson_params),
    "poisson_nll_rate": _checked(POISSON_NLL_RATE, "poisson_nll", _poisson_params),
    "gaussian_nll": _checked(GAUSSIAN_NLL, "gaussian_nll", _gaussian_params, extra="var"),
    "poisson": _checked(POISSON, "poisson", _no_params),
    "gamma_deviance": _checked(GAMMA_DEVIANCE, "mean_gamma_deviance", _no_params),
    "hinge_embedding": _kernel(HINGE_EMBEDDING, params=_option("margin")),
    "multilabel_margin": _kernel(MULTILABEL_MARGIN),
    "margin_ranking": _pair(MARGIN_RANKING, "margin_ranking", _option("margin"), "x2"),
}

# the kernels _core._quick_torch may run on CPU torch tensors (the call through losskit.get(...) or a
# Loss object: its checks and kernel on zero-copy NumPy views, the general path's torch ops skipped):
# every kernel of the table. On a loaded machine the general path's small torch ops on (rows,) arrays
# (ones, sum, divide) each waited for torch's thread pool: BCE from logits at 65536x10 took 2x the
# NumPy call on torch tensors, quiet, and 7x loaded.
for _kernel_fn in _KERNELS.values():
    _kernel_fn.torch_quick = True  # type: ignore[attr-defined]

# ------------------------------------------------------------------------------- embedding losses
# _cpu.embed's kernels: several differentiable members (anchor, positive, negative; x1, x2), every
# gradient asked for (``wrt``) written by the one pass that computes the value, into one float32
# buffer (1 + len(wrt), rows, k), already scaled. The error argument is _cpu.c's (above triplet_rows).
EMBED_TRIPLET, EMBED_COSINE = 0, 1  # _cpu.embed's ids


def _embed_run(kernel_id: int, a: np.ndarray, b: np.ndarray, c: np.ndarray | None,
               y: np.ndarray | None, slots: list[np.ndarray | None], scale: np.ndarray | None,
               params: tuple[float, ...]) -> np.ndarray:
    """Rows of ``a`` (float32 ``(rows, k)``) through ``_cpu.embed``, split over the thread pool as
    :func:`run` splits them; returns the per-row values (NaN: rows to recompute)."""
    rows, k = a.shape
    value = np.empty(rows, dtype=np.float64)
    prm = np.asarray(params, dtype=np.float64)

    def chunk(lo: int, hi: int) -> None:
        _cpu.embed(kernel_id, a, b, c, y, lo, hi, k, value, *slots, scale, prm)

    _split_rows(chunk, rows, a.size)
    return value


def _embedding(kernel_id: int, loss: str, member: str, members: tuple[str, ...],
               params: Callable[..., tuple[float, ...]], dtype: Any = np.float32) -> Kernel:
    """The kernel of ``loss`` (float32) over ``_cpu.embed``: ``member`` is the extra input array the
    C kernel takes, ``members`` the names ``wrt`` may ask for, in the C kernel's gradient slots 2, 3
    (``"y_true"`` is the triplet's positive). Rows the C kernel flags (value NaN) are recomputed by the
    loss's generic double-length kernel on widened input: value and every gradient, scaled."""

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, wrt: tuple[str, ...] = (), **opts: Any) -> Any:
        other = opts.pop(member)
        wrt = tuple(wrt)
        for name in wrt:
            if name not in members:
                raise ValueError(f"{loss}: no gradient with respect to {name!r}")
        shape, k = tuple(y_pred.shape[:-1]), int(y_pred.shape[-1])
        a = np.ascontiguousarray(y_pred, dtype=dtype).reshape(-1, k)
        rows = a.shape[0]
        x = np.ascontiguousarray(np.broadcast_to(other, y_pred.shape), dtype=dtype).reshape(rows, k)
        t: np.ndarray
        if kernel_id in (EMBED_TRIPLET, EMBED_TRIPLET_D):
            b, c, y = np.ascontiguousarray(y_true, dtype=dtype).reshape(rows, k), x, None
            t = b
        else:
            b, c = x, None
            y = t = np.ascontiguousarray(y_true, dtype=np.float64).reshape(rows)
        s = None if scale is None else np.ascontiguousarray(
            np.broadcast_to(scale, shape), dtype=np.float64).reshape(rows)
        buf = np.empty((1 + len(wrt), rows, k), dtype=dtype) if grad else None
        slots: list[np.ndarray | None] = [None, None, None]
        if buf is not None:
            slots[0] = buf[0]
            for i, name in enumerate(wrt):
                slots[1 + members.index(name)] = buf[1 + i]
        if rows and k:
            value = _embed_run(kernel_id, a, b, c, y, slots, s, params(k, **opts))
        else:  # empty rows: the generic kernel's answer (0 distance, cosine 0)
            value = np.full(rows, np.nan)
        bad = np.isnan(value)
        if bad.any():
            from ..losses import _registry  # here: the registry imports the backends

            more = {"wrt": wrt} if wrt else {}
            fixed = _registry._DEFINITIONS[loss].kernel(
                np, t[bad].astype(np.float64), a[bad].astype(np.float64), grad=grad, **opts,
                **{member: x[bad].astype(np.float64)}, **more)
            value[bad] = fixed[0]
            if buf is not None:
                sb = np.ones((int(bad.sum()), 1)) if s is None else s[bad][:, None]
                for i, g_bad in enumerate((fixed[1], *(fixed[2] if wrt else ()))):
                    buf[i][bad] = np.where(sb == 0, 0.0, g_bad * sb)
        value = value.reshape(shape)
        if buf is None:
            return value, None
        g = buf[0].reshape((*shape, k))
        if not wrt:
            return value, g
        return value, g, tuple(buf[1 + i].reshape((*shape, k)) for i in range(len(wrt)))

    kernel.kernel_id, kernel.params, kernel.labels = kernel_id, params, None  # type: ignore[attr-defined]
    kernel.takes_scale = True  # type: ignore[attr-defined]
    kernel.takes_wrt = True  # type: ignore[attr-defined]
    kernel.inputs = (member,)  # type: ignore[attr-defined]
    return kernel


def _triplet_params(k: int, margin: float, p: float, eps: float, swap: bool, eps_placement: str,
                    distance_function: str, **_: Any) -> tuple[float, ...]:
    p_eff = 2.0 if distance_function == "euclidean" else float(p)
    return (float(margin), p_eff, float(eps), float(swap), float(eps_placement == "sum"),
            float(distance_function == "cosine"))


def _triplet_covered(opts: Mapping[str, Any]) -> bool:
    """p = 2 (eps in the difference or in the sum), p = 1 with eps in the difference, and the cosine
    distance (the other powers: the generic kernels)."""
    if opts.get("distance_function", "pnorm") == "cosine":
        return True
    p = 2.0 if opts.get("distance_function") == "euclidean" else float(opts.get("p", 2.0))
    return p == 2.0 or (p == 1.0 and opts.get("eps_placement", "difference") == "difference")


_KERNELS["triplet_margin"] = _embedding(EMBED_TRIPLET, "triplet_margin", "negative",
                                        ("y_true", "negative"), _triplet_params)
_KERNELS["cosine_embedding"] = _embedding(EMBED_COSINE, "cosine_embedding", "x2", ("x2",),
                                          lambda k, margin, **_: (float(margin),))
EMBED_COSINE_D = 6  # _cpu.embed's float64 cosine embedding loss

EMBED_COSSIM, EMBED_COSSIM_D = 2, 3  # _cpu.embed's cosine similarity, float32 and float64 rows


def _embed_rows(kernel_id: int, a: np.ndarray, b: np.ndarray, grad: bool, scale: Any,
                prm: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``_cpu.embed``'s row kernel ``kernel_id`` on the rows of two contiguous arrays of one shape and
    dtype: ``(value, gradient wrt the row's differentiable member, scale as rows)``, the gradient
    in ``a``'s dtype and shape, already times ``scale``; an empty batch gives zeros."""
    shape, k = a.shape[:-1], a.shape[-1]
    s = None if scale is None else _scale_rows(scale, shape)
    g = np.empty(a.shape, dtype=a.dtype) if grad else None
    if a.size == 0:
        if g is not None:
            g.fill(0.0)
        return np.zeros(shape), g, s
    rows = a.size // k
    slots: list[np.ndarray | None] = [None if g is None else g.reshape(rows, k), None, None]
    value = _embed_run(kernel_id, a.reshape(rows, k), b.reshape(rows, k), None, None, slots,
                       None if s is None else s.reshape(rows), prm).reshape(shape)
    return value, g, s


def _cosine_similarity_kernel(dtype: Any) -> Kernel:
    """cosine_similarity over ``_cpu.embed`` (ids 2, 3: compensated dot products from exact products;
    the error argument above ``cossim_row`` in ``_cpu.c``), float32 or float64 rows, the gradient
    already times ``scale``. Rows the C kernel hands back (value NaN: NaN or infinite components,
    squared norms that under- or overflow) are recomputed by the generic kernel."""
    kernel_id = EMBED_COSSIM_D if dtype == np.float64 else EMBED_COSSIM

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, **opts: Any) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(y_pred, dtype=dtype)
        t = np.ascontiguousarray(y_true, dtype=dtype)
        value, g, s = _embed_rows(kernel_id, t, x, grad, scale, (0.0,))
        bad = np.isnan(value)
        if bad.any():
            _redo_rows("cosine_similarity", bad, value, g, s, t, x, grad, opts,
                       float64_input=dtype == np.float64)
        return value, g

    kernel.kernel_id, kernel.params, kernel.labels = kernel_id, None, None  # type: ignore[attr-defined]
    kernel.takes_scale = True  # type: ignore[attr-defined]
    return kernel


_KERNELS["cosine_similarity"] = _cosine_similarity_kernel(np.float32)

EMBED_NTXENT, EMBED_CIRCLE = 4, 5  # _cpu.embed's ntxent ("negatives") and circle, float32 rows


def _similarity_rows(kernel_id: int, loss: str, params: Callable[..., tuple[float, ...]],
                     dtype: Any = np.float32) -> Kernel:
    """ntxent / circle over ``_cpu.embed`` (float32: ids 4, 5, the error arguments above
    ``ntxent_rows`` and ``circle_rows`` in ``_cpu.c``; float64: ids 8, 9, above ``ntxent_rows_d``
    and ``circle_rows_d``): the labels with ``where`` folded in (2 marks an excluded entry), the
    gradient already times ``scale``. Rows the C kernel hands back (value NaN) are recomputed by the
    generic double-length kernel."""

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, where: np.ndarray | None = None, **opts: Any
               ) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(y_pred, dtype=dtype)
        t = np.ascontiguousarray(y_true, dtype=dtype)
        lab = t if where is None else np.where(where, t, dtype(2.0))
        value, g, s = _embed_rows(kernel_id, x, np.ascontiguousarray(lab), grad, scale,
                                  params(x.shape[-1], **opts))
        bad = np.isnan(value)
        if bad.any():
            more = {"where": None if where is None else np.broadcast_to(where, x.shape)[bad]}
            _redo_rows(loss, bad, value, g, s, t, x, grad, {**opts, **more},
                       float64_input=dtype == np.float64)
        return value, g

    kernel.kernel_id, kernel.params, kernel.labels = kernel_id, params, None  # type: ignore[attr-defined]
    kernel.takes_scale = True  # type: ignore[attr-defined]
    kernel.inputs = ("where",)  # type: ignore[attr-defined]
    return kernel


_KERNELS["ntxent"] = _similarity_rows(EMBED_NTXENT, "ntxent",
                                      lambda k, temperature, **_: (1.0 / float(temperature),))
_KERNELS["circle"] = _similarity_rows(EMBED_CIRCLE, "circle",
                                      lambda k, gamma, margin, **_: (float(gamma), float(margin)))

# float64 kernels (_cpu.c's ELEMENTWISE_KERNEL_D): the terms that stay within a few float64 ulps
WIDE: tuple[str, ...] = (
    "bce_logits", "bce_probs", "mse", "mae", "hinge", "huber", "smooth_l1", "mape", "pinball",
    "squared_hinge", "soft_margin", "perceptron", "hinge_embedding", "multilabel_margin")
_KERNELS64 = {name: _kernel(_KERNELS[name].kernel_id, params=_KERNELS[name].params,  # type: ignore[attr-defined]
                            labels=_KERNELS[name].labels, dtype=np.float64)  # type: ignore[attr-defined]
              for name in WIDE}
_KERNELS64["nll"] = _nll_kernel(np.float64)  # the gathered NLL: -w_y x_y is one rounding in float64 too


def _flagged64(kernel_id: int, loss: str, *, sparse: bool = False,
               params: Callable[..., tuple[float, ...]] | None = None) -> Kernel:
    """A kernel over one of ``_cpu.c``'s float64 row kernels (cross-entropies, KL), which give the
    value NaN to the rows whose error they cannot bound within the contract (the comment above
    ``scce_logits_d``). Those rows (and rows that are NaN anyway) are recomputed here by the loss's
    generic kernel in float64, values and gradients (scaled); infinite values are kept."""

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, **opts: Any) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(y_pred, dtype=np.float64)
        t = np.ascontiguousarray(y_true, dtype=np.int64 if sparse else np.float64)
        s = None if scale is None else np.ascontiguousarray(
            np.broadcast_to(scale, x.shape[:-1]), dtype=np.float64)
        value, g = run(kernel_id, t, x, grad, s, params(x.shape[-1], **opts) if params else (0.0,))
        bad = np.isnan(value)
        if bad.any():
            _redo_rows(loss, bad, value, g, s, t, x, grad, opts, float64_input=True)
        return value, g

    kernel.kernel_id, kernel.params, kernel.labels = kernel_id, params, None  # type: ignore[attr-defined]
    kernel.takes_scale = True  # type: ignore[attr-defined]
    return kernel


# float64 row kernels with exact pairs and flagged rows (_cpu.c's scce_logits_d ... scce_probs_d); nll: the
# gathered kernel above
WIDE += ("scce_logits", "scce_probs", "cce_logits", "cce_probs", "kl", "kl_div", "nll")
_KERNELS64.update({
    "scce_logits": _flagged64(SCCE_LOGITS, "sparse_categorical_crossentropy", sparse=True),
    "scce_probs": _flagged64(SCCE_PROBS, "sparse_categorical_crossentropy", sparse=True),
    "cce_logits": _flagged64(CCE_LOGITS, "categorical_crossentropy"),
    "cce_probs": _flagged64(CCE_PROBS, "categorical_crossentropy"),
    "kl": _flagged64(KL, "kl_divergence"),
    "kl_div": _flagged64(KL_DIV, "kl_div", params=_option("log_target")),
})

# float64 kernels with an extra input array (_cpu.run3_d's KERNELS3_D table, ids from 0)
MARGIN_RANKING_D = 0


def _pair64(kernel_id: int, loss: str, params: Callable[..., tuple[float, ...]], extra: str) -> Kernel:
    """:func:`_pair` for float64 input, over ``_cpu.run3_d`` (margin ranking's float64 kernel: the
    per-element bound and the compensated row sums in ``_cpu.c``). Rows whose value is not finite
    (infinite or NaN scores) are recomputed with the generic kernel, values and every gradient
    (scaled), as ``_core`` does for the other float64 kernels."""

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, wrt: tuple[str, ...] = (), **opts: Any) -> Any:
        wrt = tuple(wrt)
        if wrt and wrt != (extra,):
            raise ValueError(f"{loss}: no gradient with respect to {wrt!r}")
        given = opts.pop(extra)
        x = np.ascontiguousarray(y_pred, dtype=np.float64)
        t = np.ascontiguousarray(y_true, dtype=np.float64)
        e = np.ascontiguousarray(np.broadcast_to(given, x.shape), dtype=np.float64)
        k = x.shape[-1]
        rows = x.size // k if k else 0
        s = None if scale is None else np.ascontiguousarray(
            np.broadcast_to(scale, x.shape[:-1]), dtype=np.float64).reshape(rows)
        both = wrt and grad
        buf = (np.empty if x.size else np.zeros)((2 if both else 1, *x.shape)) if grad else None
        value = np.zeros(x.shape[:-1])
        if rows and k:
            prm = np.asarray((*params(k, **opts), float(x.size) if both else 0.0), dtype=np.float64)
            t2, x2, e2, v2 = t.reshape(rows, k), x.reshape(rows, k), e.reshape(rows, k), value.reshape(rows)
            g2 = None if buf is None else buf.reshape(-1)

            def chunk(lo: int, hi: int) -> None:
                _cpu.run3_d(kernel_id, t2[lo:hi], x2[lo:hi], e2[lo:hi], hi - lo, k, v2[lo:hi],
                            None if g2 is None else g2[lo * k:], None if s is None else s[lo:hi], prm)

            _split_rows(chunk, rows, x.size)
        bad = ~np.isfinite(value)
        if bad.any():
            from ..losses import _registry  # here: the registry imports the backends

            fixed = _registry._DEFINITIONS[loss].kernel(
                np, t[bad], x[bad], grad=grad, **opts, **{extra: e[bad]}, widened=False,
                **({"wrt": wrt} if both else {}))
            value[bad] = fixed[0]
            if buf is not None:
                sb = np.ones((int(bad.sum()), 1)) if s is None else s.reshape(x.shape[:-1])[bad][:, None]
                for i, g_bad in enumerate((fixed[1], *(fixed[2] if both else ()))):
                    buf[i][bad] = np.where(sb == 0, 0.0, g_bad * sb)
        if buf is None:
            return value, None
        return (value, buf[0], (buf[1],)) if both else (value, buf[0])

    kernel.kernel_id, kernel.params, kernel.labels = kernel_id, params, None  # type: ignore[attr-defined]
    kernel.takes_scale = True  # type: ignore[attr-defined]
    kernel.inputs = (extra,)  # type: ignore[attr-defined]
    kernel.takes_wrt = True  # type: ignore[attr-defined]
    return kernel


WIDE += ("margin_ranking",)
_KERNELS64["margin_ranking"] = _pair64(MARGIN_RANKING_D, "margin_ranking", _option("margin"), "x2")
WIDE += ("cosine_similarity",)
_KERNELS64["cosine_similarity"] = _cosine_similarity_kernel(np.float64)
EMBED_TRIPLET_D = 7  # _cpu.embed's float64 triplet margin loss (p = 2)
WIDE += ("cosine_embedding", "triplet_margin")
_KERNELS64["triplet_margin"] = _embedding(EMBED_TRIPLET_D, "triplet_margin", "negative",
                                          ("y_true", "negative"), _triplet_params, np.float64)


def _triplet_covered64(opts: Mapping[str, Any]) -> bool:
    """float64: p = 2 (eps in the difference or in the sum), not the cosine distance."""
    kind = opts.get("distance_function", "pnorm")
    return kind == "euclidean" or (kind == "pnorm" and float(opts.get("p", 2.0)) == 2.0)


WIDE += ("cosine_embedding",)
_KERNELS64["cosine_embedding"] = _embedding(EMBED_COSINE_D, "cosine_embedding", "x2", ("x2",),
                                            lambda k, margin, **_: (float(margin),), np.float64)

EMBED_NTXENT_D, EMBED_CIRCLE_D = 8, 9  # _cpu.embed's ntxent ("negatives") and circle, float64 rows


def _inverse_pair(k: int, temperature: float, **_: Any) -> tuple[float, ...]:
    """``1 / temperature`` as a pair ``hi + lo`` (each rounded once), the float64 ntxent kernel's."""
    return dd_constant(Fraction(1) / Fraction(float(temperature)))


WIDE += ("ntxent", "circle")
_KERNELS64["ntxent"] = _similarity_rows(EMBED_NTXENT_D, "ntxent", _inverse_pair, np.float64)
_KERNELS64["circle"] = _similarity_rows(
    EMBED_CIRCLE_D, "circle", lambda k, gamma, margin, **_: (float(gamma), float(margin)), np.float64)

# multi_margin: _cpu.c's multi_margin_d (exact pairs, every row within the contract; rows whose value
# is not finite recomputed by _core)
WIDE += ("multi_margin",)
_KERNELS64["multi_margin"] = _kernel(MULTI_MARGIN, sparse=True, params=_multi_margin, dtype=np.float64)
# multilabel_soft_margin: multilabel_soft_margin_d (bce_logits_d's term, weighted, compensated row sums)
WIDE += ("multilabel_soft_margin",)
_KERNELS64["multilabel_soft_margin"] = _kernel(
    MULTILABEL_SOFT_MARGIN, params=_KERNELS["multilabel_soft_margin"].params,  # type: ignore[attr-defined]
    dtype=np.float64)
# multiclass_hinge and total_variation: their float32 kernels' formulas in double (the bounds at
# multiclass_hinge_d and total_variation_d)
WIDE += ("multiclass_hinge", "total_variation", "categorical_hinge")
_KERNELS64["categorical_hinge"] = _kernel(CATEGORICAL_HINGE, dtype=np.float64)  # the generic formula
_KERNELS64["multiclass_hinge"] = _kernel(MULTICLASS_HINGE, sparse=True, dtype=np.float64)
_KERNELS64["total_variation"] = _kernel(TOTAL_VARIATION, dtype=np.float64)

POISSON_NLL_D, GAUSSIAN_NLL_D = 1, 2  # KERNELS3_D ids


def _run3_d(kernel_id: int, t: np.ndarray, x: np.ndarray, e: np.ndarray, grad: bool,
            s: np.ndarray | None, prm: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows of C-contiguous float64 ``t``, ``x``, ``e`` (shape ``(..., k)``) through ``_cpu.run3_d``,
    split over the thread pool as :func:`run` splits them; ``s``: float64 of ``x.shape[:-1]`` or
    None. Returns the per-row values and the float64 gradient (already times ``s``)."""
    k = x.shape[-1]
    rows = x.size // k if k else 0
    value = np.zeros(x.shape[:-1])
    g = (np.empty if x.size else np.zeros)(x.shape) if grad else None
    if not (rows and k):
        return value, g
    p = np.asarray(prm, dtype=np.float64)
    t2, x2, e2, v2 = t.reshape(rows, k), x.reshape(rows, k), e.reshape(rows, k), value.reshape(rows)
    g2 = None if g is None else g.reshape(rows, k)
    s2 = None if s is None else s.reshape(rows)

    def chunk(lo: int, hi: int) -> None:
        _cpu.run3_d(kernel_id, t2[lo:hi], x2[lo:hi], e2[lo:hi], hi - lo, k, v2[lo:hi],
                    None if g2 is None else g2[lo:hi], None if s2 is None else s2[lo:hi], p)

    _split_rows(chunk, rows, x.size)
    return value, g


WIDE += ("poisson_nll_log", "poisson_nll_rate", "gaussian_nll")
_KERNELS64.update({
    "poisson_nll_log": _checked(POISSON_NLL_D, "poisson_nll", _poisson_params, float64=True),
    "poisson_nll_rate": _checked(POISSON_NLL_D, "poisson_nll", _poisson_params, float64=True),
    "gaussian_nll": _checked(GAUSSIAN_NLL_D, "gaussian_nll", _gaussian_params, extra="var",
                             float64=True),
})

def _distill64_params(k: int, temperature: float, temperature_squared: bool, beta: float = 0.0,
                      **_: Any) -> tuple[float, ...]:
    """distill_d's parameters: :func:`_distill`'s, then T and whether T is a power of two (its
    exponents (z - max)/T are then exact products)."""
    t = float(temperature)
    return (*_distill(k, t, temperature_squared, beta), t, float(math.frexp(t)[0] == 0.5))


def _distill_generic64(t: np.ndarray, x: np.ndarray, grad: bool, s: np.ndarray | None,
                       opts: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """The generic kernel (distillation._distill, exact mode) on float64 rows, in chunks of rows
    spread over the threads (:func:`row_chunks`, :func:`for_each_chunk`), as ``_core`` runs a
    generic kernel on NumPy arrays: on torch tensors the generic kernel would otherwise run on
    whole tensors, some thirty full-size float64 temporaries (measured 9x the NumPy path's time at
    1024x1000). Gradients times ``s`` (0 where it is 0)."""
    from ..losses import distillation  # here: the losses import the backends

    k = x.shape[-1]
    rows = x.size // k if k else 0
    value = np.zeros(x.shape[:-1])
    g = np.zeros(x.shape) if grad else None
    if not rows:
        return value, g
    t2, x2, v2 = t.reshape(rows, k), x.reshape(rows, k), value.reshape(rows)
    g2 = None if g is None else g.reshape(rows, k)
    s2 = None if s is None else s.reshape(rows, 1)
    options = {"beta": 0.0, **opts}

    def piece(lo: int, hi: int) -> None:
        with np.errstate(all="ignore"):  # per thread: the pool's threads too (infinite logits)
            v, gp = distillation._distill(np, t2[lo:hi], x2[lo:hi], grad=grad, widened=False,
                                          **options)
        v2[lo:hi] = v
        if g2 is not None and gp is not None:
            g2[lo:hi] = gp if s2 is None else np.where(s2[lo:hi] == 0, 0.0, gp * s2[lo:hi])

    for_each_chunk(piece, row_chunks(rows, k))
    return value, g


def _distill64_kernel() -> Kernel:
    """logits_distillation and generalized_jsd on float64 input. beta < 1 (the forward KL at 0, the
    mixture's divergence between): over ``_cpu.c``'s ``distill_d`` (KERNELS64 slot 35: double-length
    pairs where its error argument needs them, and a row check); the rows it hands back (value NaN:
    nearly equal distributions, non-finite logits) are recomputed here by the generic kernel
    (distillation._distill, exact mode), values and gradients (scaled). beta = 1: the generic kernel
    in row chunks (:func:`_distill_generic64`), which float64 torch tensors then share with NumPy
    arrays."""

    def kernel(xp: Any, y_true: np.ndarray, y_pred: np.ndarray, *, grad: bool,
               scale: np.ndarray | None = None, **opts: Any) -> tuple[np.ndarray, np.ndarray | None]:
        from ..losses import distillation  # here: the losses import the backends

        x = np.ascontiguousarray(y_pred, dtype=np.float64)
        t = np.ascontiguousarray(y_true, dtype=np.float64)
        s = None if scale is None else np.ascontiguousarray(
            np.broadcast_to(scale, x.shape[:-1]), dtype=np.float64)
        if float(opts.get("beta", 0.0)) == 1.0:
            return _distill_generic64(t, x, grad, s, opts)
        value, g = run(DISTILL, t, x, grad, s, _distill64_params(x.shape[-1], **opts))
        bad = np.isnan(value)
        if bad.any():
            _redo_rows("", bad, value, g, s, t, x, grad, {"beta": 0.0, **opts, "widened": False},
                       generic=distillation._distill)
        return value, g

    kernel.kernel_id, kernel.params, kernel.labels = DISTILL, _distill64_params, None  # type: ignore[attr-defined]
    kernel.takes_scale = True  # type: ignore[attr-defined]
    return kernel


# distillation: distill_d for beta < 1, the generic kernel in row chunks for beta = 1
WIDE += ("distill",)
_KERNELS64["distill"] = _distill64_kernel()


# losses whose every option set has a C kernel (kernel name; numeric options go through params)
_ONE_KERNEL = {
    "mean_squared_error": "mse", "mean_absolute_error": "mae", "kl_divergence": "kl", "hinge": "hinge",
    "huber": "huber", "smooth_l1": "smooth_l1", "log_cosh": "log_cosh",
    "squared_hinge": "squared_hinge", "categorical_hinge": "categorical_hinge",
    "soft_margin": "soft_margin", "mean_absolute_percentage_error": "mape",
    "mean_squared_logarithmic_error": "msle", "pinball": "pinball", "kl_div": "kl_div",
    "jensen_shannon_divergence": "jensen_shannon", "total_variation_distance": "total_variation",
    "multilabel_soft_margin": "multilabel_soft_margin", "perceptron": "perceptron", "nll": "nll",
    "poly_loss_cross_entropy": "poly1", "multiclass_hinge": "multiclass_hinge",
    "multi_margin": "multi_margin", "logits_distillation": "distill", "generalized_jsd": "distill",
    "hinge_embedding": "hinge_embedding", "multilabel_margin": "multilabel_margin",
    "margin_ranking": "margin_ranking", "poisson": "poisson", "mean_gamma_deviance": "gamma_deviance",
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
    if name == "binary_focal_crossentropy":
        return "focal_logits" if opts.get("from_logits") else "focal_probs"
    if name == "categorical_focal_crossentropy":
        return "cfocal_logits" if opts.get("from_logits") else "cfocal_probs"
    if name == "categorical_generalized_cross_entropy":
        return "gce_logits" if opts.get("from_logits") else "gce_probs"
    if name == "generalized_kl_divergence":  # log_predictions needs log t in double length
        return None if opts.get("log_predictions") else "generalized_kl"
    if name == "poisson_nll":
        return "poisson_nll_log" if opts.get("log_input") else "poisson_nll_rate"
    if name == "gaussian_nll":
        return "gaussian_nll"
    if name == "triplet_margin":
        return "triplet_margin" if _triplet_covered(opts) else None
    if name == "cosine_embedding":
        return "cosine_embedding"
    if name == "cosine_similarity":
        return "cosine_similarity"
    if name == "ntxent":
        return "ntxent" if opts.get("denominator", "negatives") == "negatives" else None
    if name == "circle":
        return "circle"
    return _ONE_KERNEL.get(name)


def fast_kernel(name: str, opts: Mapping[str, Any], dtype_name: str, device: Any = None
                ) -> Kernel | None:
    """The fused C kernel for float32 NumPy input (float64 for the ``WIDE`` ones), or None (see the
    module doc)."""
    if _cpu is None or dtype_name not in ("float32", "float64"):
        return None
    which = select(name, opts)
    if which is None:
        return None
    if dtype_name == "float64" and which == "triplet_margin" and not _triplet_covered64(opts):
        return None
    return _KERNELS[which] if dtype_name == "float32" else _KERNELS64.get(which)


# ---------------------------------------------------------------------- row chunks of the generic kernels
# The array-API kernels of losses/*.py evaluate whatever rows they are given at once, with many
# temporaries of that size in float64. On NumPy, losses/_core.py's runner gives them the rows of a
# large batch a chunk at a time (a loss whose rows are independent; see LossDef.batch_coupled), so that
# the temporaries are those of one chunk per thread. Chunks of about this many elements (256 KB per
# float64 temporary, so that a kernel's temporaries stay near the caches): measured at 2048x1000 on 2
# loaded cores (value_and_gradient, one thread, time against the whole batch at once), 2**15 was
# the fastest or within noise of it: float32 poisson 0.47, cosine_similarity 0.38, dice 0.76,
# sparsemax 0.68 (2**17: 0.65, 0.54, 0.82, 0.68); float64 log_cosh 0.74, binary focal 0.57, ntxent
# 0.65; with 2 threads 0.36-0.59.
GENERIC_CHUNK_ELEMENTS = 1 << 15


def row_chunks(rows: int, row_size: int, elements: int | None = None) -> list[tuple[int, int]]:
    """``(lo, hi)`` bounds of consecutive row ranges of about ``elements`` elements each
    (``GENERIC_CHUNK_ELEMENTS`` by default; at least one row per chunk).

    >>> row_chunks(10, 4, elements=12)
    [(0, 3), (3, 6), (6, 9), (9, 10)]
    """
    per = max(1, (GENERIC_CHUNK_ELEMENTS if elements is None else elements) // max(row_size, 1))
    return [(lo, min(lo + per, rows)) for lo in range(0, rows, per)]


def for_each_chunk(run_chunk: Callable[[int, int], None], bounds: list[tuple[int, int]]) -> None:
    """``run_chunk(lo, hi)`` for every bound, on the calling thread and up to ``get_num_threads() - 1``
    threads of the pool, each taking the next chunk when it is free (NumPy's ufuncs release the
    GIL); returns when every chunk is done, raising the first exception a chunk raised (the chunks
    not yet started are then skipped). Within a chunk, the C kernels run on the chunk's thread
    (:func:`calling_thread_only`); inside a caller's :func:`calling_thread_only` every chunk runs on
    the calling thread."""
    helpers = min(_threads, len(bounds)) - 1
    if helpers <= 0 or getattr(_local, "alone", False):
        for lo, hi in bounds:
            run_chunk(lo, hi)
        return
    todo = iter(bounds)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        with calling_thread_only():
            while True:
                with lock:
                    bound = None if errors else next(todo, None)
                if bound is None:
                    return
                try:
                    run_chunk(*bound)
                except BaseException as exc:  # handed to the caller below
                    with lock:
                        errors.append(exc)
                    return

    futures = [_get_pool().submit(work) for _ in range(helpers)]
    work()
    for f in futures:
        f.result()
    if errors:
        raise errors[0]
