"""Fast kernels for PyTorch tensors.

On the CPU, float32 tensors (and float64 ones, for the losses with float64 kernels) run the fused C
kernels of :mod:`losskit._backends.numpy` on zero-copy NumPy views (``Tensor.numpy()`` shares
memory), so a losskit loss costs one read of the inputs and one write of the gradient, as PyTorch's
own fused losses do. Other devices, and calls traced by
``torch.compile``, take the generic kernels.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

import torch

from . import Kernel, thread_flag
from . import numpy as np_backend


def _on_numpy(kernel: Kernel) -> Kernel:
    def run(xp: Any, y_true: torch.Tensor, y_pred: torch.Tensor, *, grad: bool,
            scale: Any = None, **opts: Any) -> tuple[torch.Tensor, Any]:
        s = None if scale is None else scale.detach().to(torch.float64).numpy()
        opts = {k: v.detach().numpy() if isinstance(v, torch.Tensor) else v for k, v in opts.items()}
        value, g = kernel(None, y_true.detach().numpy(), y_pred.detach().numpy(), grad=grad, scale=s,
                          **opts)
        return torch.from_numpy(value), None if g is None else torch.from_numpy(g)

    run.takes_scale = True  # type: ignore[attr-defined]
    run.recheck_nonfinite = getattr(kernel, "recheck_nonfinite", False)  # type: ignore[attr-defined]
    run.inputs = getattr(kernel, "inputs", ())  # type: ignore[attr-defined]
    return run


_WRAPPED: dict[int, Kernel] = {}
_GENERIC = threading.local()


def generic_kernels() -> contextlib.AbstractContextManager[None]:
    """Within this block (this thread) every call takes the generic kernels: for gradients that
    autograd must record, and tensors whose memory cannot be viewed (``torch.func`` transforms)."""
    return thread_flag(_GENERIC, "on")


def fast_kernel(name: str, opts: Mapping[str, Any], dtype_name: str, device: Any = None
                ) -> Kernel | None:
    """The fused C kernel on CPU float32 (or float64) tensors outside ``torch.compile``, or None."""
    if device is None or getattr(device, "type", None) != "cpu" or torch.compiler.is_compiling() \
            or getattr(_GENERIC, "on", False):
        return None
    kernel = np_backend.fast_kernel(name, opts, dtype_name)
    if kernel is None:
        return None
    key = id(kernel)
    if key not in _WRAPPED:
        _WRAPPED[key] = _on_numpy(kernel)
    return _WRAPPED[key]


# =============================================================================================
# linear cross-entropy (losskit.linear): two torch.library custom ops, the forward pass (per-token
# losses and the statistics of the online log-sum-exp) and the recomputing backward pass, joined
# by register_autograd. The ops are opaque to torch.compile (no graph break, fullgraph=True works)
# and the label check runs inside them on the real values. The reduction stays in plain torch ops
# outside, so autograd hands the backward op each token's weight (1/count, 1, or the cotangent).
# =============================================================================================

from .. import _array  # noqa: E402
from .. import linear as _linear  # noqa: E402


def _lce_config(vocab: int, ignore_index: int, label_smoothing: float, softcap: float | None,
                token_chunk: int, vocab_chunk: int) -> _linear.Config:
    return _linear.Config(vocab=vocab, ignore_index=ignore_index, label_smoothing=label_smoothing,
                          softcap=softcap, token_chunk=token_chunk, vocab_chunk=vocab_chunk)


@torch.library.custom_op("losskit::linear_ce_forward", mutates_args=())
def _lce_forward(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 labels: torch.Tensor, ignore_index: int, label_smoothing: float,
                 softcap: float | None, token_chunk: int, vocab_chunk: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg = _lce_config(weight.shape[0], ignore_index, label_smoothing, softcap, token_chunk,
                      vocab_chunk)
    xp = _array.namespace(hidden)
    _linear.check_labels(xp, labels, cfg)
    values, m, s, top = _linear.forward(xp, hidden, weight, bias, labels, cfg)
    return values, m, s, top


@_lce_forward.register_fake
def _lce_forward_fake(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      labels: torch.Tensor, ignore_index: int, label_smoothing: float,
                      softcap: float | None, token_chunk: int, vocab_chunk: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n = hidden.shape[0]
    return (hidden.new_empty((n,), dtype=torch.float64), hidden.new_empty((n, 1)),
            hidden.new_empty((n, 1), dtype=torch.float64), hidden.new_empty((n, 1), dtype=torch.int64))


@torch.library.custom_op("losskit::linear_ce_backward", mutates_args=())
def _lce_backward(grad_values: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None, labels: torch.Tensor, m: torch.Tensor, s: torch.Tensor,
                  top: torch.Tensor, ignore_index: int, label_smoothing: float, softcap: float | None,
                  token_chunk: int, vocab_chunk: int, need_hidden: bool, need_weight: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg = _lce_config(weight.shape[0], ignore_index, label_smoothing, softcap, token_chunk,
                      vocab_chunk)
    xp = _array.namespace(hidden)
    grads = _linear.backward(xp, hidden, weight, bias, labels, (m, s, top), grad_values, cfg,
                             need_hidden, need_weight)
    return tuple(hidden.new_empty((0,)) if g is None else g for g in grads)  # type: ignore[return-value]


@_lce_backward.register_fake
def _lce_backward_fake(grad_values: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor,
                       bias: torch.Tensor | None, labels: torch.Tensor, m: torch.Tensor,
                       s: torch.Tensor, top: torch.Tensor, ignore_index: int,
                       label_smoothing: float, softcap: float | None, token_chunk: int,
                       vocab_chunk: int, need_hidden: bool, need_weight: bool
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    empty = hidden.new_empty((0,))
    return (torch.empty_like(hidden) if need_hidden else empty,
            torch.empty_like(weight) if need_weight else empty,
            empty if bias is None else torch.empty_like(bias))


def _lce_setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    hidden, weight, bias, labels, *options = inputs
    _, m, s, top = output
    ctx.save_for_backward(hidden, weight, bias, labels, m, s, top)
    ctx.options = options
    ctx.has_bias = bias is not None


def _lce_autograd(ctx: Any, grad_values: torch.Tensor, *_: Any) -> tuple[Any, ...]:
    hidden, weight, bias, labels, m, s, top = ctx.saved_tensors
    need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gh, gw, gb = _lce_backward(grad_values, hidden, weight, bias, labels, m, s, top, *ctx.options,
                               need_hidden, need_weight)
    return (gh if need_hidden else None, gw if need_weight else None,
            gb if ctx.has_bias else None, None) + (None,) * len(ctx.options)


_lce_forward.register_autograd(_lce_autograd, setup_context=_lce_setup_context)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         bias: torch.Tensor | None, reduction: str, cfg: _linear.Config
                         ) -> torch.Tensor:
    """:func:`losskit.linear.linear_cross_entropy` on tensors (checked by the caller)."""
    values = _lce_forward(hidden, weight, bias, labels, cfg.ignore_index, cfg.label_smoothing,
                          cfg.softcap, cfg.token_chunk, cfg.vocab_chunk)[0]
    if reduction == "none":
        return values.to(hidden.dtype)
    total = values.sum()
    if reduction == "sum":
        return total.to(hidden.dtype)
    count = (labels != cfg.ignore_index).sum().clamp(min=1)
    return (total / count).to(hidden.dtype)
