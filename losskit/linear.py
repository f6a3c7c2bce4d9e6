r"""Cross-entropy of a linear layer's logits over a large vocabulary, never holding the logits.

A language model's last step is ``logits = hidden @ weight.T`` over a vocabulary of 100k+ tokens
followed by the cross-entropy: at 4,096 tokens and 128,256 classes the float32 logits alone take
2.1 GB, and their softmax and gradient as much again. :func:`linear_cross_entropy` computes the same
loss and its gradients for ``hidden``, ``weight`` and ``bias`` block by block, so the extra memory is
the gradients plus one block.

NumPy and PyTorch (:func:`fused`; the torch custom ops live at the end of
``losskit/_backends/torch.py``) and JAX (a ``jax.custom_vjp`` over one ``lax.scan``, in the
linear cross-entropy section of ``losskit/_backends/jax.py``): one pass over blocks of
``token_chunk`` tokens (default ``TOKEN_CHUNK``; on NumPy sized from the vocabulary, see
``NUMPY_BLOCK_ELEMENTS``). For each block, ``Z = h_c @ W.T + b``
(token_chunk x V, into one reused buffer), each row's exact loss and ``G = w_n (softmax -
target)`` written over ``Z`` in place, then
``grad_hidden[c] = G @ W``, ``grad_weight += G.T @ h_c`` (BLAS accumulating in place) and
``grad_bias += sum_rows G``: three matmuls of the naive path's size and no recomputation. The
per-token weights ``w_n`` of the reduction (1/count for "mean", 1 for "sum") depend on the labels
alone, so the gradient is complete after the one pass; with ``reduction="none"`` the backward (PyTorch's,
JAX's) runs the pass again with the incoming per-token gradient as ``w``.

The rows of a block are whole, so each row's statistics are exact in one go: on the CPU in float32
(no smoothing, no cap) by ``_cpu.c``'s sparse categorical cross-entropy kernel (the one
``sparse_categorical_crossentropy`` uses: ``z_j - m`` exact in double, the sum of the exponentials
and the loss ``(m - z_y) + log1p(S)`` in double, the gradient rounded once to float32); otherwise
by the array-library path below over column slices of ``vocab_chunk``.

The array-library path (JAX writes the same math for whole rows in three fused passes): an online
(streaming) log-sum-exp per token over the column slices. Each token keeps its
running maximum ``m`` (a logit, as the matmul produced it), the index of that first maximum, and
``S``, the sum of ``exp(z_j - m)`` over the other logits seen so far, in float64. A block whose
maximum exceeds ``m`` rescales: ``S <- (S + 1) exp(m - m') + sum_block``. The loss is then
``(m - z_y) + log1p(S)``: two non-negative terms, so a confident token keeps its tiny loss
(``log1p(S)``, never ``log(1 + S)`` rounded to 0) and nothing cancels. The gradient block is
``exp(z_j - m) / (1 + S)``, and ``(1 - c_top - c_top S) / (1 + S)`` at the maximum, so that no
``1 - softmax`` is formed, scaled by each token's weight. ``exp(z_j - m)`` is evaluated as if
``z_j - m`` were exact (float64 on the CPU; :func:`losskit._numerics.exp_difference`'s TwoSum
elsewhere), each term within ~2 ulp; the row sums are accumulated in float64 (float32 in JAX
without ``jax_enable_x64``).
"""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _array
from ._numerics import exp_difference, log1p

Array = Any

REDUCTIONS = ("mean", "sum", "none")

# The column slices of the eager paths (and JAX's slices of grad_weight): about this many elements. Timed
# with the first (vocabulary-streaming) version at 2,048 x 1,024 x 32,768 (torch, 2 busy cores):
# blocks of 2-8 M logits differed by less than the machine's noise (+-50%); each logit of a
# block costs ~20 bytes at once in the array-library path (float32 logits, float64
# exponentials, the float32 gradient), so 2 M keeps that workspace near 40 MB.
BLOCK_ELEMENTS = 2 * 1024 * 1024
# Tokens per block on NumPy and torch. At 4,096 x 1,024 x 128,256 (float32, torch, 2 loaded
# cores) 64, 96 and 128 took the same time within the noise; the block (128 x V float32: 63 MB
# at V = 128,256) is most of the memory beside the gradients: 256 would break the 1/10 target.
TOKEN_CHUNK = 128
# NumPy's default block instead: as many multiples of 128 tokens as keep the block's logits within
# this many elements (128 MB of float32), at least 128 tokens: 256 at V = 128,256, 1,024 at V = 32,000.
# OpenBLAS (NumPy's, SciPy's) runs the three products of a 128-row block far below its speed on
# bigger ones: measured at 1,024 x 1,024 x 128,256 (2 loaded cores, interleaved with the naive path),
# 128-token blocks took 19.2-24.6 s, 256-token blocks 14.2-16.2 s, 512-token blocks 13.1-16.5 s,
# the naive path 16.4-23.4 s. PyTorch and JAX keep TOKEN_CHUNK (their 1/10 memory targets).
NUMPY_BLOCK_ELEMENTS = 32 * 1024 * 1024
MIN_VOCAB_CHUNK = 256  # narrower blocks make the matmuls inefficient (BLAS panel widths)


@dataclass(frozen=True)
class Config:
    """The options, checked (see :func:`linear_cross_entropy`)."""

    vocab: int
    ignore_index: int
    label_smoothing: float
    softcap: float | None
    token_chunk: int
    vocab_chunk: int


# --------------------------------------------------------------------------------- validation


def _is_torch(x: Array) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _floating(x: Array) -> bool:
    if _is_torch(x):
        return bool(x.dtype.is_floating_point)
    return _array.is_floating(x)


def _integral(x: Array) -> bool:
    if _is_torch(x):
        return not (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == sys.modules[
            "torch"].bool)
    return _array.is_integral_dtype(x) and not str(x.dtype).endswith("bool")


def _backend(hidden: Array, weight: Array, labels: Array, bias: Array | None) -> str:
    names = {"hidden": hidden, "weight": weight, "labels": labels}
    if bias is not None:
        names["bias"] = bias
    found = {name: _array.backend_name(_array.as_array(x, name)) for name, x in names.items()}
    backends = set(found.values())
    if len(backends) > 1:
        listed = ", ".join(f"{name}: {b}" for name, b in found.items())
        raise TypeError(f"linear_cross_entropy: hidden, weight, labels and bias must come from one "
                        f"array library; found {listed}")
    return backends.pop()


def check(hidden: Array, weight: Array, labels: Array, bias: Array | None, *, ignore_index: int,
          label_smoothing: float, reduction: str, softcap: float | None,
          token_chunk: int | None, vocab_chunk: int | None, backend: str = "numpy") -> Config:
    """Shapes, dtypes and options (no look at the values: works under ``jax.jit`` and
    ``torch.compile``); raises ``ValueError``/``TypeError`` naming the argument. Default blocks:
    ``TOKEN_CHUNK`` tokens (NumPy: multiples of it within ``NUMPY_BLOCK_ELEMENTS`` logits) and
    ``BLOCK_ELEMENTS`` elements per slice: ``BLOCK_ELEMENTS /
    token_chunk`` columns of a block (NumPy, torch), ``BLOCK_ELEMENTS / H`` rows of
    ``grad_weight`` (JAX)."""
    if getattr(hidden, "ndim", None) != 2:
        raise ValueError(f"linear_cross_entropy: hidden must be 2-D (tokens, hidden size); found "
                         f"shape {tuple(getattr(hidden, 'shape', ()))} (flatten leading axes: "
                         "hidden.reshape(-1, hidden.shape[-1]))")
    if getattr(weight, "ndim", None) != 2:
        raise ValueError(f"linear_cross_entropy: weight must be 2-D (vocabulary, hidden size); found "
                         f"shape {tuple(getattr(weight, 'shape', ()))}")
    n, h = (int(d) for d in hidden.shape)
    v, hw = (int(d) for d in weight.shape)
    if hw != h:
        raise ValueError(f"linear_cross_entropy: weight must have shape (vocabulary, {h}) to match "
                         f"hidden {tuple(hidden.shape)}; found {tuple(weight.shape)} (pass the "
                         "weight as nn.Linear stores it, (out_features, in_features))")
    if getattr(labels, "ndim", None) != 1 or int(labels.shape[0]) != n:
        raise ValueError(f"linear_cross_entropy: labels must have shape ({n},), one class index per "
                         f"row of hidden; found {tuple(getattr(labels, 'shape', ()))}")
    if v == 0:
        raise ValueError("linear_cross_entropy: weight has 0 rows (an empty vocabulary)")
    if not _floating(hidden):
        raise TypeError(f"linear_cross_entropy: hidden must be a floating-point array; found dtype "
                        f"{hidden.dtype}")
    if weight.dtype != hidden.dtype:
        raise TypeError(f"linear_cross_entropy: weight must have hidden's dtype {hidden.dtype}; "
                        f"found {weight.dtype} (cast one of them)")
    if not _integral(labels):
        raise TypeError(f"linear_cross_entropy: labels must be integer class indices; found dtype "
                        f"{labels.dtype}")
    if bias is not None:
        if getattr(bias, "ndim", None) != 1 or int(bias.shape[0]) != v:
            raise ValueError(f"linear_cross_entropy: bias must have shape ({v},), one per row of "
                             f"weight; found {tuple(getattr(bias, 'shape', ()))}")
        if bias.dtype != hidden.dtype:
            raise TypeError(f"linear_cross_entropy: bias must have hidden's dtype {hidden.dtype}; "
                            f"found {bias.dtype}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"linear_cross_entropy: ignore_index must be an int; found {ignore_index!r}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"linear_cross_entropy: label_smoothing must be a number in [0, 1]; found "
                         f"{label_smoothing!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"linear_cross_entropy: reduction must be one of {REDUCTIONS}; found "
                         f"{reduction!r}")
    if softcap is not None and (isinstance(softcap, bool) or not isinstance(softcap, (int, float))
                                or not 0.0 < softcap < math.inf):
        raise ValueError(f"linear_cross_entropy: softcap must be None or a finite number > 0; "
                         f"found {softcap!r}")
    for name, chunk in (("token_chunk", token_chunk), ("vocab_chunk", vocab_chunk)):
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer))
                                  or chunk < 1):
            raise ValueError(f"linear_cross_entropy: {name} must be None or an int >= 1; found "
                             f"{chunk!r}")
    default = TOKEN_CHUNK
    if backend == "numpy":
        default = TOKEN_CHUNK * max(1, NUMPY_BLOCK_ELEMENTS // (TOKEN_CHUNK * v))
    tc = min(max(n, 1), int(token_chunk) if token_chunk else default)
    rows = max(h, 1) if backend == "jax" else tc  # JAX: the (vocab_chunk, H) slices of grad_weight
    vc = min(v, int(vocab_chunk)) if vocab_chunk else min(v, max(MIN_VOCAB_CHUNK, BLOCK_ELEMENTS // rows))
    return Config(vocab=v, ignore_index=int(ignore_index), label_smoothing=float(label_smoothing),
                  softcap=None if softcap is None else float(softcap), token_chunk=tc,
                  vocab_chunk=vc)


def check_labels(xp: Any, labels: Array, cfg: Config) -> None:
    """On concrete labels: each in ``[0, V)`` or equal to ``ignore_index``."""
    if not _array.is_concrete(labels) or labels.shape[0] == 0:
        return
    if _array.backend_name(labels) == "jax":  # a concrete array inside jax.jit: check in NumPy
        xp, labels = np, np.asarray(labels)
    bad = ((labels < 0) | (labels >= cfg.vocab)) & (labels != cfg.ignore_index)
    if _array.to_bool(xp.any(bad)):
        raise ValueError(f"linear_cross_entropy: labels must be class indices in [0, {cfg.vocab}) "
                         f"(the rows of weight) or ignore_index={cfg.ignore_index}; "
                         + _array.describe_range(xp, labels, bad, "labels"))


# ------------------------------------------------------------------------ the per-block math


def cap(xp: Any, z: Array, cfg: Config) -> tuple[Array, Array | None]:
    """Gemma's softcapping ``c tanh(z / c)``, and ``tanh(z / c)`` for the chain rule (None: off)."""
    if cfg.softcap is None:
        return z, None
    t = xp.tanh(z / cfg.softcap)
    return cfg.softcap * t, t


def _column(xp: Any, labels: Array, col0: Any, width: int) -> tuple[Array, Array]:
    """``(label in this block, the label's column in the block clipped to it)``, shapes (T, 1)."""
    rel = labels - col0
    inside = (rel >= 0) & (rel < width)
    rel = xp.where(inside, rel, xp.zeros_like(rel))
    return inside[:, None], rel[:, None]


def init_state(xp: Any, rows: int, like: Array, acc: Any, index: Any) -> tuple[Array, ...]:
    """The running statistics of ``rows`` tokens before any block: (m, S, top, z_y, A)."""
    dev = _array.device(like)
    m = xp.full((rows, 1), -math.inf, dtype=like.dtype, device=dev)
    s = xp.zeros((rows, 1), dtype=acc, device=dev)
    top = xp.zeros((rows, 1), dtype=index, device=dev)
    zy = xp.zeros((rows, 1), dtype=like.dtype, device=dev)
    a = xp.zeros((rows, 1), dtype=acc, device=dev)
    return m, s, top, zy, a


def _wide(xp: Any, z: Array) -> bool:
    """Whether to take the differences and exponentials in float64: on the CPU for float32 (or
    narrower) logits, where ``z_j - m`` is then exact and float64 ``exp`` costs fewer passes over
    the block than float32 TwoSum; elsewhere (GPUs, JAX, float64 input) :func:`exp_difference`."""
    if _is_torch(z):
        return z.device.type == "cpu" and z.dtype.itemsize < 8
    return isinstance(z, np.ndarray) and z.dtype.itemsize < 8


def _exp_(xp: Any, x: Array) -> Array:
    """``exp(x)`` in place (x is a temporary of the caller's)."""
    if _is_torch(x):
        return x.exp_()
    return np.exp(x, out=x)


def _minus_wide(xp: Any, z: Array, shift: Array) -> Array:
    """``z - shift`` in float64, a new array (a cast then an in-place subtraction: about half the
    time of torch's mixed-dtype subtraction)."""
    if _is_torch(z):
        import torch

        return z.to(torch.float64).sub_(shift)
    d = z.astype(np.float64)
    d -= shift
    return d


def _max_argmax(xp: Any, z: Array) -> tuple[Array, Array]:
    """Row maxima and the column of the first maximum, shapes (T, 1)."""
    if _is_torch(z):
        import torch

        mb, ib = torch.max(z, dim=1, keepdim=True)  # the first maximal value's index
        return mb, ib
    ib = xp.argmax(z, axis=1, keepdims=True)
    return _array.take_last(xp, z, ib), ib


def update(xp: Any, z: Array, col0: Any, seen: Any, labels: Array, state: tuple[Array, ...],
           cfg: Config, acc: Any) -> tuple[Array, ...]:
    """Fold one block of (capped) logits ``z`` (T, width), columns ``col0 ...``, into the state.

    m: the running maximum; top: its (first) column; S: sum of exp(z_j - m) over the other columns
    seen, in ``acc`` (float64); z_y: the label's logit; A: sum of (m - z_j) over the columns seen
    (for label smoothing; every term >= 0). ``seen``: the number of columns before this block.
    """
    m, s, top, zy, a = state
    width = z.shape[1]
    mb, ib = _max_argmax(xp, z)
    new = mb > m  # ties keep the earlier column as the top (the first maximum, as argmax)
    big = xp.where(new, mb, m)
    m64, big64 = xp.astype(m, acc), xp.astype(big, acc)
    if _wide(xp, z):
        d = _minus_wide(xp, z, big64)  # float64: exact
        if cfg.label_smoothing:
            a = a - xp.sum(d, axis=1, keepdims=True)  # adds sum (m - z_j), every term >= 0
        e = _exp_(xp, d)
    else:
        e = exp_difference(xp, z, big)
        if cfg.label_smoothing:
            a = a + xp.sum(big - z, axis=1, keepdims=True, dtype=acc)  # each term rounded once
    e = _array.put_last(xp, e, ib, xp.where(new, xp.zeros_like(m64), xp.astype(
        _array.take_last(xp, e, ib), acc)))
    zero = xp.zeros_like(m64)  # m - big where a new maximum came (-inf at the start: exp gives 0)
    rescale = xp.exp(xp.where(new, m64, zero) - xp.where(new, big64, zero))
    s = xp.where(new, (s + 1.0) * rescale, s) + xp.sum(e, axis=1, keepdims=True, dtype=acc)
    top = xp.where(new, xp.astype(ib, top.dtype) + col0, top)
    inside, rel = _column(xp, labels, col0, width)
    zy = xp.where(inside, _array.take_last(xp, z, xp.astype(rel, ib.dtype)), zy)
    if cfg.label_smoothing:
        moved = new & (m64 > -math.inf)
        shift = xp.where(moved, big64, zero) - xp.where(moved, m64, zero)
        a = a + seen * shift
    return big, s, top, zy, a


def finish(xp: Any, state: tuple[Array, ...], labels: Array, cfg: Config) -> Array:
    """Per-token loss (``acc`` dtype, shape (T,)) from the final statistics; 0 where ignored:
    ``(1 - s) ((m - z_y) + L) + (s / V) (A + V L)`` with ``L = log1p(S)``."""
    m, s, _top, zy, a = state
    tail = log1p(xp, s)
    acc = s.dtype
    label_term = (xp.astype(m, acc) - xp.astype(zy, acc)) + tail  # m - z_y >= 0, exact in float64
    ls = cfg.label_smoothing
    value = label_term if not ls else (1.0 - ls) * label_term + (ls / cfg.vocab) * (a + cfg.vocab * tail)
    valid = (labels != cfg.ignore_index)[:, None]
    return xp.where(valid, value, xp.zeros_like(value))[:, 0]


def block_gradient(xp: Any, z: Array, t: Array | None, col0: Any, labels: Array,
                   stats: tuple[Array, Array, Array], w: Array, cfg: Config) -> Array:
    """d loss / d (pre-cap) logits for one block, each token's row times its weight ``w`` (T, 1).

    softmax_j - c_j with c the (smoothed) target: ``exp(z_j - m) / (1 + S) - (1 - s)[j = y] - s/V``,
    and at the maximum ``(1 - c_top - c_top S) / (1 + S)`` with ``1 - c_top`` summed from the other
    classes' targets. With softcapping, times ``(1 - t)(1 + t)`` (``t = tanh(z / c)``).
    On the CPU (float32) the softmax is ``exp(z_j - (m + log1p(S)))`` in float64: ``z_j - m`` is
    exact there and the rounding of ``m + log1p(S)`` costs ``|m + L| 2**-53`` relative, far below
    a float32 ulp; elsewhere ``exp_difference(z, m) / (1 + S)`` in the logits' dtype (~3 ulp).
    """
    m, s, top = stats
    width = z.shape[1]
    dtype = z.dtype
    ls = cfg.label_smoothing
    wide = _wide(xp, z)
    if wide:
        g = _exp_(xp, _minus_wide(xp, z, xp.astype(m, s.dtype) + log1p(xp, s)))
    else:
        g = exp_difference(xp, z, m) * xp.astype(1.0 / (1.0 + s), dtype)
    inside, rel = _column(xp, labels, col0, width)
    g_label = _array.take_last(xp, g, rel)
    g = _array.put_last(xp, g, rel, xp.where(inside, g_label - (1.0 - ls), g_label))
    top_inside, top_rel = _column(xp, top[:, 0], col0, width)
    on_top = xp.astype(labels[:, None] == top, s.dtype)
    c_top = on_top * (1.0 - ls) + ls / cfg.vocab
    others = (1.0 - on_top) * (1.0 - ls) + ls * (cfg.vocab - 1) / cfg.vocab
    g_top = xp.astype((others - c_top * s) / (1.0 + s), g.dtype)
    g = _array.put_last(xp, g, top_rel, xp.where(top_inside, g_top, _array.take_last(xp, g, top_rel)))
    if ls:  # the top entry is already whole: add s/V back there
        g -= ls / cfg.vocab
        g = _array.put_last(xp, g, top_rel, xp.where(top_inside, g_top,
                                                     _array.take_last(xp, g, top_rel)))
    if wide:
        g = xp.astype(g, dtype)
    g *= w  # in place where the library allows it (g is a temporary); JAX rebinds
    if t is not None:
        g *= (1.0 - t) * (1.0 + t)
    return g


# ------------------------------------------------- the loop for eager libraries (NumPy, torch)


def _scce_kernel() -> Any:
    """losskit's NumPy backend module when its compiled CPU kernels are installed, else None."""
    from ._backends import numpy as numpy_backend

    return numpy_backend if numpy_backend.available() else None


def _fast_rows(z: Array, cfg: Config) -> bool:
    """Whether a block of logits goes to the C row kernel (``_cpu.c``'s sparse categorical
    cross-entropy from logits, the kernel of ``sparse_categorical_crossentropy``): float32 on the
    CPU, no label smoothing, no softcapping. Everything else takes the array-library path."""
    if cfg.label_smoothing or cfg.softcap is not None or _scce_kernel() is None:
        return False
    if _is_torch(z):
        import torch

        return z.device.type == "cpu" and z.dtype == torch.float32
    return isinstance(z, np.ndarray) and z.dtype == np.float32


def _scce_rows(z: np.ndarray, labels: np.ndarray, values: np.ndarray, scale: np.ndarray | None) -> None:
    """The C kernel on the rows of ``z`` (float32, C-contiguous, (T, V)): each row's loss into
    ``values`` (float64) and, when ``scale`` (float64, (T,)) is given, ``scale_n (softmax - onehot)``
    written over the row in place (the kernel reads a whole row before writing it). Rows split over
    the kernels' thread pool. Labels outside [0, V) (ignored tokens) give any class's value."""
    nb = _scce_kernel()
    rows, k = z.shape
    prm = np.zeros(1)

    def run(lo: int, hi: int) -> None:
        nb._cpu.run(nb.SCCE_LOGITS, 0, labels[lo:hi], z[lo:hi], hi - lo, k, values[lo:hi],
                    None if scale is None else z[lo:hi], None if scale is None else scale[lo:hi], prm)

    parts = 1 if getattr(nb._local, "alone", False) else min(nb.get_num_threads(), rows)
    if parts <= 1:
        run(0, rows)
        return
    bounds = np.linspace(0, rows, parts + 1).astype(int)
    futures = [nb._get_pool().submit(run, int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    for f in futures:
        f.result()


def _gemm(dtype: Any) -> Any:
    """SciPy's BLAS ``gemm`` for NumPy's ``dtype`` (None: no SciPy, or another dtype). BLAS
    accumulates ``C <- A B + C`` in place (beta = 1), which NumPy's ``matmul`` cannot."""
    if dtype not in (np.float32, np.float64):
        return None
    try:
        from scipy.linalg import blas
    except ImportError:
        return None
    return blas.sgemm if dtype == np.float32 else blas.dgemm


class _Ops:
    """The matmuls of one library, written into preallocated arrays."""

    def __init__(self, backend: str, dtype: Any) -> None:
        self.torch = backend == "torch"
        self.gemm = None if self.torch else _gemm(dtype)

    def logits(self, out: Array, h: Array, weight: Array, bias: Array | None, columns: int) -> None:
        """out = h @ weight.T + bias (torch: ``columns`` at a time: on the CPU, torch's ``mm``
        takes a temporary of its output's size, measured; a slice's is small)"""
        if self.torch:
            import torch

            for c0 in range(0, out.shape[1], columns):
                c1 = c0 + columns
                if bias is None:
                    torch.mm(h, weight[c0:c1].t(), out=out[:, c0:c1])
                else:
                    torch.addmm(bias[c0:c1], h, weight[c0:c1].t(), out=out[:, c0:c1])
            return
        np.matmul(h, weight.T, out=out)
        if bias is not None:
            out += bias

    def matmul(self, out: Array, g: Array, weight: Array) -> None:
        """out = g @ weight"""
        if self.torch:
            import torch

            torch.mm(g, weight, out=out)
        else:
            # as (weight.T @ g.T).T: the same product, but OpenBLAS (NumPy's) runs this operand
            # order 3-4x faster than g @ weight ((T x V) @ (V x H): few rows, a long inner
            # dimension), measured at 128 x 32,064 x 1,024; the (H, T) result is small
            out[...] = np.matmul(weight.T, g.T).T

    def add_gt_h(self, out: Array, g: Array, h: Array, columns: int) -> None:
        """out += g.T @ h, in place (out (V, H) C-contiguous, g (T, V), h (T, H))."""
        if self.torch:
            out.addmm_(g.t(), h)
        elif self.gemm is not None and g.flags.c_contiguous and h.flags.c_contiguous:
            # out.T (H, V, Fortran order) += h.T @ g, every operand passed without a copy
            res = self.gemm(1.0, h.T, g.T, beta=1.0, c=out.T, trans_b=1, overwrite_c=True)
            if not np.shares_memory(res, out):  # (not expected: scipy copied c)
                out[...] = res.T
        else:  # NumPy alone: a (columns, H) temporary at a time
            for c0 in range(0, out.shape[0], columns):
                out[c0:c0 + columns] += g[:, c0:c0 + columns].T @ h


def _block_general(xp: Any, z: Array, labels: Array, w: Array | None, cfg: Config) -> Array:
    """Loss of each row of a (T, V) block of logits (float64, (T,), 0 for ignored tokens) and, when
    ``w`` (T, 1) is given, ``w (softmax - target)`` (times the cap's derivative) written over ``z``:
    the online statistics of :func:`update` over column slices of ``vocab_chunk`` (the float64
    temporaries are (T, vocab_chunk)), then :func:`block_gradient` slice by slice."""
    acc, v, vc = xp.float64, cfg.vocab, cfg.vocab_chunk
    state = init_state(xp, z.shape[0], z, acc, xp.int64)
    for c0 in range(0, v, vc):
        zs, _ = cap(xp, z[:, c0:c0 + vc], cfg)
        state = update(xp, zs, c0, c0, labels, state, cfg, acc)
    values = finish(xp, state, labels, cfg)
    if w is not None:
        for c0 in range(0, v, vc):
            zs, t = cap(xp, z[:, c0:c0 + vc], cfg)
            z[:, c0:c0 + vc] = block_gradient(xp, zs, t, c0, labels, state[:3], w, cfg)
    return values


def fused(xp: Any, hidden: Array, weight: Array, bias: Array | None, labels: Array,
          w: Array | None, cfg: Config, need: tuple[bool, bool, bool] = (True, True, True)
          ) -> tuple[Array, Array | None, Array | None, Array | None]:
    """Per-token loss (float64, (N,); 0 for ignored tokens) and, when ``w`` (N,) is given, the
    gradients of ``sum_n w_n loss_n`` for hidden, weight and bias (those that ``need`` asks for and
    that exist; else None), in one pass over blocks of ``token_chunk`` tokens.

    Each block: ``Z = h_c @ W.T + b`` (token_chunk x V, one matmul into a reused buffer), each row's
    exact loss and ``G = w_n (softmax - target)`` written over ``Z`` in place, then
    ``grad_hidden[c] = G @ W``, ``grad_weight += G.T @ h_c`` (accumulated in place by BLAS) and
    ``grad_bias += sum_rows G`` (float64): three matmuls of the naive path's size, no recomputation.
    """
    ops = _Ops(_array.backend_name(hidden), getattr(hidden, "dtype", None))
    n, v = hidden.shape[0], cfg.vocab
    tc = max(1, min(cfg.token_chunk, n))
    dev = _array.device(hidden)
    labels = xp.astype(labels, xp.int64)
    valid = labels != cfg.ignore_index
    values = xp.zeros((n,), dtype=xp.float64, device=dev)
    grads = w is not None
    gh = xp.zeros(hidden.shape, dtype=hidden.dtype, device=dev) if grads and need[0] else None
    gw = xp.zeros(weight.shape, dtype=weight.dtype, device=dev) if grads and need[1] else None
    gb = xp.zeros((v,), dtype=xp.float64, device=dev) if grads and need[2] and bias is not None \
        else None
    if grads:
        w = xp.where(valid, xp.astype(w, xp.float64), xp.zeros_like(values))
    block = xp.empty((tc, v), dtype=hidden.dtype, device=dev)
    fast = _fast_rows(block, cfg)
    if fast:  # NumPy views of the labels, the values and the weights for the C kernel
        as_np = (lambda x: x.detach().numpy()) if _is_torch(hidden) else np.asarray
        np_labels, np_values = as_np(labels), as_np(values)
        np_valid, np_w = as_np(valid), None if w is None else as_np(w)
    for t0 in range(0, n, tc):
        t1 = min(n, t0 + tc)
        h, z = hidden[t0:t1], block[:t1 - t0]
        ops.logits(z, h, weight, bias, cfg.vocab_chunk)
        if fast:
            out = np_values[t0:t1]
            _scce_rows(as_np(z), np_labels[t0:t1], out, None if np_w is None else np_w[t0:t1])
            out[~np_valid[t0:t1]] = 0.0
        else:
            wt = None if w is None else xp.astype(w[t0:t1], hidden.dtype)[:, None]
            values[t0:t1] = _block_general(xp, z, labels[t0:t1], wt, cfg)
        if gh is not None:
            ops.matmul(gh[t0:t1], z, weight)
        if gw is not None:
            ops.add_gt_h(gw, z, h, cfg.vocab_chunk)
        if gb is not None:
            gb += xp.sum(z, axis=0, dtype=xp.float64)
    return values, gh, gw, None if gb is None else xp.astype(gb, hidden.dtype)


def token_weights(xp: Any, labels: Array, reduction: str, cfg: Config) -> Array:
    """Each token's weight in the reduced loss (float64, (N,)): 1/n_valid for "mean" (over the
    tokens not ignored; 0 when all are), 1 for "sum" and "none" (the gradient of the sum), 0 for
    ignored tokens."""
    valid = xp.astype(labels != cfg.ignore_index, xp.float64)
    if reduction != "mean":
        return valid
    count = xp.sum(valid)
    return valid / xp.maximum(count, xp.ones_like(count))


def reduce(xp: Any, values: Array, labels: Array, reduction: str, cfg: Config) -> tuple[Array, Array]:
    """The reduced loss (float64) and each token's weight in it: 1/n_valid ("mean" over the tokens
    not ignored, 0 when all are ignored), 1 ("sum"), 1 ("none", the values themselves)."""
    valid = xp.astype(labels != cfg.ignore_index, values.dtype)
    if reduction == "none":
        return values, valid
    if reduction == "sum":
        return xp.sum(values), valid
    count = xp.sum(valid)
    scale = 1.0 / xp.maximum(count, xp.ones_like(count))
    return xp.sum(values) * scale, valid * scale


# --------------------------------------------------------------------------------- public API


def linear_cross_entropy(hidden: Array, weight: Array, labels: Array, bias: Array | None = None, *,
                         ignore_index: int = -100, label_smoothing: float = 0.0,
                         reduction: str = "mean", softcap: float | None = None,
                         token_chunk: int | None = None, vocab_chunk: int | None = None) -> Array:
    r"""Cross-entropy of the logits ``hidden @ weight.T + bias`` without ever forming them in full.

    For token :math:`n` with logits :math:`z_n = W h_n + b` (optionally softcapped,
    :math:`z \leftarrow c \tanh(z / c)`, as Gemma 2 does), label :math:`y_n` and label smoothing
    :math:`s` over :math:`V` classes:

    .. math:: \ell_n = (1 - s)\,\big(\operatorname{lse}(z_n) - z_{n,y_n}\big)
              + \frac{s}{V}\sum_{j=1}^{V} \big(\operatorname{lse}(z_n) - z_{n,j}\big),

    computed as :math:`(m - z_y) + \operatorname{log1p}(S)` with :math:`m` the maximum logit and
    :math:`S = \sum_{j \ne \text{top}} e^{z_j - m}` accumulated block by block (an online
    log-sum-exp). Gradients, with :math:`G_n = w_n(\operatorname{softmax}(z_n) - c_n)` (:math:`c_n` the
    smoothed one-hot target, :math:`w_n` the token's weight in the reduction, times
    :math:`1 - \tanh^2(z/c)` with softcapping): :math:`\partial/\partial h = G W`,
    :math:`\partial/\partial W = G^\top H`, :math:`\partial/\partial b = \sum_n G_n`. On NumPy
    and PyTorch, and in JAX with ``reduction`` "mean" or "sum", they are computed in the same pass
    over blocks of ``token_chunk`` tokens (each block's logits once, three matmuls in all), so the
    extra memory is the gradients plus one ``token_chunk x V`` block (a few in JAX), never (N, V).

    Shapes: ``hidden`` (N, H), ``weight`` (V, H) as ``nn.Linear`` stores it, ``labels`` (N,)
    integers in ``[0, V)`` or ``ignore_index``, ``bias`` None or (V,); ``hidden``, ``weight`` and
    ``bias`` of one floating dtype. Returns a scalar (``"mean"``, ``"sum"``) or (N,) (``"none"``) in
    that dtype. NumPy, PyTorch (a ``torch.library`` custom op with its autograd formula: works under
    ``torch.compile(fullgraph=True)``) and JAX (``jax.custom_vjp``: works under ``jax.jit`` and
    ``jax.grad``) arrays; for NumPy see :func:`linear_cross_entropy_value_and_gradient`.

    Options (keyword-only):

    * ``ignore_index``: tokens with this label contribute 0 and get no gradient (PyTorch's default
      -100).
    * ``label_smoothing`` in [0, 1]: the target :math:`(1 - s)[j = y] + s/V`, as PyTorch's.
    * ``reduction``: ``"mean"`` over the tokens not ignored (PyTorch's; 0 when every token is
      ignored, where PyTorch gives NaN), ``"sum"``, or ``"none"`` (one value per token, 0 for an
      ignored one).
    * ``softcap``: None, or :math:`c > 0` for :math:`c \tanh(z / c)` on every logit.
    * ``token_chunk``, ``vocab_chunk``: the block shape: blocks of ``token_chunk`` tokens
      (default 128 on PyTorch and JAX; on NumPy the most multiples of 128 whose block holds at
      most 2**25 logits, at least 128: 256 at V = 128,256) by the whole vocabulary. NumPy and
      PyTorch: the per-row work (and torch's logit matmul) goes ``vocab_chunk`` columns at a
      time (default: 2 M elements per slice). JAX:
      ``grad_weight`` is updated ``vocab_chunk`` rows at a time (default: 2 M elements per slice).

    Contract (what "exact" means here): the loss and the gradient with respect to the logits are
    within 8 ulp of the exact values *for the logits as the matmul computed them* (after the
    bias and the cap, each rounded in the input dtype): every term is non-negative, ``exp(z_j - m)``
    is computed as if ``z_j - m`` were exact (in float64 on the CPU, TwoSum elsewhere), each within
    ~2 ulp, and each row's statistics (maximum, sum of exponentials, loss) are float64 (with JAX's
    default float32 mode, float32 sums over the vocabulary in XLA's order: measured within 2 ulp
    at 128,256 classes, tested at 8); the
    gradient block is stored in the input dtype, each entry rounded once. The matmuls themselves
    (the logits, and ``G @ W``, ``G.T @ H``) round as the library's BLAS does, as in the naive
    ``F.cross_entropy(h @ W.T, y)``; no claim is made beyond them. The mean and sum are taken in
    float64 and rounded once.

    Bad input: ``ValueError`` for a shape mismatch, a label outside ``[0, V)`` (checked on concrete
    arrays, not under ``jax.jit``), an option out of range; ``TypeError`` for a non-float ``hidden``,
    mismatched dtypes, non-integer labels, or arrays from different libraries.

    Example (by hand: with hidden ``[[0, 0]]`` every logit is 0, so the loss is log 3 = 1.098612...):

    >>> import numpy as np, losskit
    >>> h = np.zeros((1, 2), np.float32)
    >>> w = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> round(float(losskit.linear_cross_entropy(h, w, np.array([2]))), 6)
    1.098612
    """
    if _is_torch(hidden) and all(_is_torch(x) for x in (weight, labels, bias) if x is not None):
        backend = "torch"  # (without _array.as_array, which torch.compile cannot trace)
    else:
        backend = _backend(hidden, weight, labels, bias)
        hidden, weight, labels = (_array.as_array(x, n) for x, n in
                                  ((hidden, "hidden"), (weight, "weight"), (labels, "labels")))
        bias = None if bias is None else _array.as_array(bias, "bias")
    cfg = check(hidden, weight, labels, bias, ignore_index=ignore_index,
                label_smoothing=label_smoothing, reduction=reduction, softcap=softcap,
                token_chunk=token_chunk, vocab_chunk=vocab_chunk, backend=backend)
    if backend == "torch":
        from ._backends import torch as torch_backend

        return torch_backend.linear_cross_entropy(hidden, weight, labels, bias, reduction, cfg)
    if backend == "jax":
        from ._backends import jax as jax_backend

        return jax_backend.linear_cross_entropy(hidden, weight, labels, bias, reduction, cfg)
    xp = _array.namespace(hidden)
    check_labels(xp, labels, cfg)
    values = fused(xp, hidden, weight, bias, labels, None, cfg)[0]
    return xp.asarray(reduce(xp, values, labels, reduction, cfg)[0]).astype(hidden.dtype)


def linear_cross_entropy_value_and_gradient(
        hidden: Array, weight: Array, labels: Array, bias: Array | None = None, *,
        ignore_index: int = -100, label_smoothing: float = 0.0, reduction: str = "mean",
        softcap: float | None = None, token_chunk: int | None = None,
        vocab_chunk: int | None = None) -> tuple[Array, tuple[Array, Array, Array | None]]:
    r""":func:`linear_cross_entropy` on NumPy arrays, with its gradients:
    ``value, (grad_hidden, grad_weight, grad_bias)`` (``grad_bias`` None without ``bias``).

    With ``reduction="none"`` the gradients are those of the sum of the per-token values. Same
    options, shapes and contract as :func:`linear_cross_entropy`; PyTorch and JAX users get the
    gradients from autograd (``loss.backward()``, ``jax.grad``).

    Example (by hand: all logits 0, so the gradient of the logits is softmax - onehot =
    [1/3, 1/3, -2/3], and grad_bias is that row):

    >>> import numpy as np, losskit
    >>> h, w, b = np.zeros((1, 2), np.float32), np.ones((3, 2), np.float32), np.zeros(3, np.float32)
    >>> value, (gh, gw, gb) = losskit.linear_cross_entropy_value_and_gradient(h, w, np.array([2]), b)
    >>> np.round(gb, 6).tolist()
    [0.333333, 0.333333, -0.666667]
    """
    backend = _backend(hidden, weight, labels, bias)
    if backend != "numpy":
        raise TypeError(f"linear_cross_entropy_value_and_gradient takes NumPy arrays; found {backend} "
                        "arrays (use linear_cross_entropy and the library's autograd)")
    hidden, weight, labels = np.asarray(hidden), np.asarray(weight), np.asarray(labels)
    bias = None if bias is None else np.asarray(bias)
    cfg = check(hidden, weight, labels, bias, ignore_index=ignore_index,
                label_smoothing=label_smoothing, reduction=reduction, softcap=softcap,
                token_chunk=token_chunk, vocab_chunk=vocab_chunk)
    xp = _array.namespace(hidden)
    check_labels(xp, labels, cfg)
    w = token_weights(xp, labels, reduction, cfg)
    values, gh, gw, gb = fused(xp, hidden, weight, bias, labels, w, cfg)
    value = reduce(xp, values, labels, reduction, cfg)[0]
    return np.asarray(value).astype(hidden.dtype), (gh, gw, gb)


__all__ = ["linear_cross_entropy", "linear_cross_entropy_value_and_gradient"]
