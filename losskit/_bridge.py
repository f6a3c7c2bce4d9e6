"""Hand losskit's analytic gradient to PyTorch autograd and to JAX, once, for every loss.

A loss is evaluated by ``run(y_true, y_pred, grad) -> (per_sample_value, per_element_gradient)``, where
the gradient has the shape of ``y_pred`` with the reduced axis last. The wrappers below make autograd
use that gradient (``torch.autograd.Function``; ``jax.custom_vjp``), so backpropagation gets the exact
derivative and keeps no graph of the loss's internals. Differentiating with respect to ``y_true`` is
refused with a clear error rather than answered with a silent zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Array = Any
Run = Callable[[Array, Array, bool], tuple[Array, Any]]

_Y_TRUE_GRAD = ("losskit computes gradients with respect to y_pred only, but y_true is being "
                "differentiated; detach it first (y_true.detach() in PyTorch, "
                "jax.lax.stop_gradient(y_true) in JAX)")


def _scaled(xp: Any, ct: Array, g: Array) -> Array:
    ct = ct[..., None]
    return xp.where(ct == 0, xp.zeros_like(g), ct * g)


def torch_values(run: Run, y_true: Array, y_pred: Array) -> Array:
    """Per-sample values of a torch tensor, differentiable through losskit's gradient."""
    import torch

    if y_true.requires_grad and torch.is_grad_enabled():
        raise ValueError(_Y_TRUE_GRAD)
    if not (torch.is_grad_enabled() and y_pred.requires_grad):
        return run(y_true, y_pred, False)[0]
    return _torch_function().apply(y_pred, y_true, run)


_TORCH_FN: Any = None


def _torch_function() -> Any:
    global _TORCH_FN
    if _TORCH_FN is None:
        import torch
        from torch.autograd.function import once_differentiable

        class LosskitLoss(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, y_pred: Array, y_true: Array, run: Run) -> Array:
                value, grad = run(y_true, y_pred, True)
                ctx.save_for_backward(grad)
                return value

            @staticmethod
            @once_differentiable
            def backward(ctx: Any, ct: Array) -> tuple[Array, None, None]:
                (grad,) = ctx.saved_tensors
                return torch.where(ct[..., None] == 0, 0.0, ct[..., None] * grad), None, None

        _TORCH_FN = LosskitLoss
    return _TORCH_FN


def jax_values(run: Run, y_true: Array, y_pred: Array) -> Array:
    """Per-sample values of a JAX array, with a ``custom_vjp`` carrying losskit's gradient."""
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def loss(t: Array, p: Array) -> Array:
        return run(t, p, False)[0]

    def fwd(t: Any, p: Any) -> tuple[Array, Array]:
        if t.perturbed:
            raise ValueError(_Y_TRUE_GRAD)
        value, grad = run(t.value, p.value, True)
        return value, grad

    def bwd(grad: Array, ct: Array) -> tuple[None, Array]:
        return None, _scaled(jnp, ct, grad)

    loss.defvjp(fwd, bwd, symbolic_zeros=True)
    return loss(y_true, y_pred)
