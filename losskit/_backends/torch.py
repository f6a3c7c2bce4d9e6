"""Fast kernels for PyTorch tensors.

On the CPU, float32 tensors (and float64 ones, for the losses with float64 kernels) run the fused C
kernels of :mod:`losskit._backends.numpy` on zero-copy NumPy views (``Tensor.numpy()`` shares
memory), so a losskit loss costs one read of the inputs and one write of the gradient, as PyTorch's
own fused losses do. A loss without a C kernel runs NumPy's generic path on those views in eager
mode (:func:`host_kernel`: row chunks widened as they run, over losskit's threads), which is many
times faster and leaner than the same kernel as whole-tensor torch operations in float64. Other
devices, and calls traced by ``torch.compile`` or transformed by ``torch.func``, take the generic
kernels in torch operations.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

import torch
import torch.autograd.forward_ad as _forward_ad

from . import Kernel, thread_flag
from . import numpy as np_backend


def _on_numpy(kernel: Kernel) -> Kernel:
    def run(xp: Any, y_true: torch.Tensor, y_pred: torch.Tensor, *, grad: bool,
            scale: Any = None, **opts: Any) -> tuple[torch.Tensor, Any]:
        s = None if scale is None else scale.detach().to(torch.float64).numpy()
        opts = {k: v.detach().numpy() if isinstance(v, torch.Tensor) else v for k, v in opts.items()}
        out = kernel(None, y_true.detach().numpy(), y_pred.detach().numpy(), grad=grad, scale=s,
                     **opts)
        value, g = torch.from_numpy(out[0]), None if out[1] is None else torch.from_numpy(out[1])
        if len(out) > 2:  # asked with wrt: the other members' gradients
            return value, g, tuple(torch.from_numpy(o) for o in out[2])
        return value, g

    run.takes_scale = True  # type: ignore[attr-defined]
    run.takes_wrt = getattr(kernel, "takes_wrt", False)  # type: ignore[attr-defined]
    run.recheck_nonfinite = getattr(kernel, "recheck_nonfinite", False)  # type: ignore[attr-defined]
    run.checks_reads = getattr(kernel, "checks_reads", False)  # type: ignore[attr-defined]
    run.inputs = getattr(kernel, "inputs", ())  # type: ignore[attr-defined]
    return run


_WRAPPED: dict[int, Kernel] = {}
_GENERIC = threading.local()


def generic_kernels() -> contextlib.AbstractContextManager[None]:
    """Within this block (this thread) every call takes the generic kernels: for gradients that
    autograd must record, and tensors whose memory cannot be viewed (``torch.func`` transforms)."""
    return thread_flag(_GENERIC, "on")


def eager_context() -> bool:
    """Outside ``torch.compile``, ``torch.func`` transforms, dispatch modes, forward-mode AD,
    ``torch.jit.trace`` and ``generic_kernels()``: where an eager path may skip torch's operators."""
    return not (torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active()
                or torch._C._len_torch_dispatch_stack() or _forward_ad._current_level >= 0
                or torch._C._get_tracing_state() is not None or getattr(_GENERIC, "on", False))


def plain_pair(y_true: Any, y_pred: Any) -> bool:
    """Two real CPU tensors in eager mode (:func:`eager_context`) with no gradient to record for
    either: a call whose result may be computed on their NumPy views, outside autograd. (``is_cpu``:
    ``device.type`` builds a device object, 2 us.)"""
    return (type(y_pred) is torch.Tensor and type(y_true) is torch.Tensor
            and y_pred.is_cpu and y_true.is_cpu
            and not ((y_pred.requires_grad or y_true.requires_grad) and torch.is_grad_enabled())
            and eager_context() and not torch._C._functorch.is_functorch_wrapped_tensor(y_pred))


from_numpy = torch.from_numpy

_HOSTED: dict[int, Kernel] = {}


def host_kernel(generic: Kernel, dtype_name: str, device: Any = None) -> Kernel | None:
    """``generic`` (a NumPy kernel running a loss's generic path, from ``losses._core``) on NumPy
    views of CPU float32 or float64 tensors, in eager mode only (:func:`eager_context`); None
    elsewhere (other dtypes, such as bfloat16, have no NumPy view)."""
    if (dtype_name not in ("float32", "float64") or getattr(device, "type", None) != "cpu"
            or not eager_context()):
        return None
    key = id(generic)
    if key not in _HOSTED:
        _HOSTED[key] = _on_numpy(generic)
    return _HOSTED[key]


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
# linear cross-entropy (losskit.linear): two torch.library custom ops over linear.fused, each with
# its autograd formula. They are opaque to torch.compile (no graph break, fullgraph=True works) and
# the label check runs inside them on the real values.
# * linear_ce_fused (reductions "mean" and "sum", with a gradient wanted): one pass computes the
#   reduced loss sum_n w_n loss_n (w_n = 1/count or 1, from the labels alone) and its gradients;
#   the backward formula scales the saved gradients by the incoming one, in place in eager mode
#   (so grad_weight exists once; autograd then hands that very tensor to weight.grad), out of
#   place under torch.compile (whose graphs must not mutate their inputs).
# * linear_ce_values (reduction "none", or no gradient wanted): the per-token losses; its backward
#   formula runs linear_ce_fused again with w = the incoming per-token gradient (a fourth matmul:
#   the per-token weights are known only then).
# =============================================================================================

from .. import _array  # noqa: E402
from .. import linear as _linear  # noqa: E402


def _lce_config(vocab: int, ignore_index: int, label_smoothing: float, softcap: float | None,
                token_chunk: int, vocab_chunk: int) -> _linear.Config:
    return _linear.Config(vocab=vocab, ignore_index=ignore_index, label_smoothing=label_smoothing,
                          softcap=softcap, token_chunk=token_chunk, vocab_chunk=vocab_chunk)


@torch.library.custom_op("losskit::linear_ce_fused", mutates_args=())
def _lce_fused(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               labels: torch.Tensor, w: torch.Tensor, ignore_index: int, label_smoothing: float,
               softcap: float | None, token_chunk: int, vocab_chunk: int, need_hidden: bool,
               need_weight: bool, need_bias: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg = _lce_config(weight.shape[0], ignore_index, label_smoothing, softcap, token_chunk,
                      vocab_chunk)
    xp = _array.namespace(hidden)
    _linear.check_labels(xp, labels, cfg)
    values, gh, gw, gb = _linear.fused(xp, hidden, weight, bias, labels, w, cfg,
                                       (need_hidden, need_weight, need_bias))
    total = (values * w.to(torch.float64)).sum()
    return total, *(hidden.new_empty((0,)) if g is None else g for g in (gh, gw, gb))


@_lce_fused.register_fake
def _lce_fused_fake(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    labels: torch.Tensor, w: torch.Tensor, ignore_index: int,
                    label_smoothing: float, softcap: float | None, token_chunk: int,
                    vocab_chunk: int, need_hidden: bool, need_weight: bool, need_bias: bool
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (hidden.new_empty((), dtype=torch.float64),
            torch.empty_like(hidden) if need_hidden else hidden.new_empty((0,)),
            torch.empty_like(weight) if need_weight else hidden.new_empty((0,)),
            torch.empty_like(bias) if need_bias and bias is not None else hidden.new_empty((0,)))


def _lce_fused_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    grads = [g.detach() for g in output[1:]]  # handed to autograd as they are
    ctx.compiled = torch.compiler.is_compiling()
    if ctx.compiled:
        ctx.save_for_backward(*grads)
    else:  # eager: handed over once (and so not kept by the graph after its backward)
        ctx.grads = grads
    ctx.set_materialize_grads(False)  # (else autograd makes zeros of grad_weight's size for them)
    ctx.n_options = len(inputs) - 4


def _lce_fused_autograd(ctx: Any, grad_total: torch.Tensor, *_: Any) -> tuple[Any, ...]:
    if ctx.compiled:
        grads = list(ctx.saved_tensors)
    else:
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            raise RuntimeError(
                "linear_cross_entropy: a second backward through the same loss (retain_graph=True) "
                "is not supported: its gradients were computed with the loss and handed over, in "
                "place, by the first backward; compute the loss again")
    scale = grad_total.to(grads[0].dtype)
    for i, g in enumerate(grads):
        if not g.numel() or not ctx.needs_input_grad[i]:
            grads[i] = None
        elif ctx.compiled:
            grads[i] = g * scale  # compiled graphs do not mutate their inputs
        elif not bool(scale == 1.0):  # the common loss.backward(): nothing to do
            g.mul_(scale)
    return (*grads, None) + (None,) * ctx.n_options


_lce_fused.register_autograd(_lce_fused_autograd, setup_context=_lce_fused_setup)


@torch.library.custom_op("losskit::linear_ce_values", mutates_args=())
def _lce_values(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                labels: torch.Tensor, ignore_index: int, label_smoothing: float,
                softcap: float | None, token_chunk: int, vocab_chunk: int) -> torch.Tensor:
    cfg = _lce_config(weight.shape[0], ignore_index, label_smoothing, softcap, token_chunk,
                      vocab_chunk)
    xp = _array.namespace(hidden)
    _linear.check_labels(xp, labels, cfg)
    return _linear.fused(xp, hidden, weight, bias, labels, None, cfg)[0]


@_lce_values.register_fake
def _lce_values_fake(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     labels: torch.Tensor, ignore_index: int, label_smoothing: float,
                     softcap: float | None, token_chunk: int, vocab_chunk: int) -> torch.Tensor:
    return hidden.new_empty((hidden.shape[0],), dtype=torch.float64)


def _lce_values_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    hidden, weight, bias, labels, *options = inputs
    ctx.save_for_backward(hidden, weight, bias, labels)
    ctx.options = options


def _lce_values_autograd(ctx: Any, grad_values: torch.Tensor) -> tuple[Any, ...]:
    hidden, weight, bias, labels = ctx.saved_tensors
    need = ctx.needs_input_grad
    _, gh, gw, gb = _lce_fused(hidden, weight, bias, labels, grad_values, *ctx.options,
                               need[0], need[1], need[2] and bias is not None)
    return (gh if need[0] else None, gw if need[1] else None,
            gb if need[2] and bias is not None else None, None) + (None,) * len(ctx.options)


_lce_values.register_autograd(_lce_values_autograd, setup_context=_lce_values_setup)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         bias: torch.Tensor | None, reduction: str, cfg: _linear.Config
                         ) -> torch.Tensor:
    """:func:`losskit.linear.linear_cross_entropy` on tensors (checked by the caller)."""
    options = (cfg.ignore_index, cfg.label_smoothing, cfg.softcap, cfg.token_chunk,
               cfg.vocab_chunk)
    need = [torch.is_grad_enabled() and x is not None and x.requires_grad
            for x in (hidden, weight, bias)]
    valid = (labels != cfg.ignore_index).to(torch.float64)
    count = valid.sum().clamp(min=1)
    if reduction != "none" and any(need):
        w = valid / count if reduction == "mean" else valid
        total = _lce_fused(hidden, weight, bias, labels, w, *options, *need)[0]
        return total.to(hidden.dtype)
    values = _lce_values(hidden, weight, bias, labels, *options)
    if reduction == "none":
        return values.to(hidden.dtype)
    total = values.sum()
    return (total if reduction == "sum" else total / count).to(hidden.dtype)
