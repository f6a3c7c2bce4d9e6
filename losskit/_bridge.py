"""Hand losskit's analytic gradient to PyTorch autograd and to JAX, once, for every loss.

A loss is evaluated by ``run(y_true, y_pred, grad, *inputs) -> (per_sample_value, per_element_gradient)``,
where the gradient has the shape of ``y_pred`` with the reduced axis last and ``inputs`` are the loss's
extra arrays (Gaussian NLL's ``var``, a ``where`` mask; None where not given). The wrappers below
make autograd use that gradient (``torch.autograd.Function``; ``jax.custom_vjp``), so backpropagation
gets the exact derivative and keeps no graph of the loss's internals. Differentiating with respect to
``y_true`` or an extra input is refused with a clear error rather than answered with a silent zero.

Second derivatives (``create_graph=True`` in PyTorch, ``jax.grad`` of ``jax.grad`` or ``jax.hessian``
in JAX) differentiate the analytic gradient itself: JAX traces it inside ``custom_vjp``'s forward rule;
PyTorch's backward recomputes it with autograd recording when (and only when) a graph is requested.
Either way the result is the derivative of the formula the kernel computes (piecewise: at a kink, the
second derivative of the side the kernel takes; a clip or a maximum contributes 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Array = Any
Run = Callable[..., tuple[Array, Any]]

_Y_TRUE_GRAD = ("losskit computes gradients with respect to y_pred only, but y_true is being "
                "differentiated; detach it first (y_true.detach() in PyTorch, "
                "jax.lax.stop_gradient(y_true) in JAX)")
_INPUT_GRAD = ("losskit computes gradients with respect to y_pred only, but the extra input array is "
               "being differentiated; detach it first (.detach() in PyTorch, jax.lax.stop_gradient in "
               "JAX)")


def _scaled(xp: Any, ct: Array, g: Array) -> Array:
    ct = ct[..., None]
    return xp.where(ct == 0, xp.zeros_like(g), ct * g)


def torch_values(run: Run, y_true: Array, y_pred: Array, inputs: tuple[Array | None, ...] = ()
                 ) -> Array:
    """Per-sample values of a torch tensor, differentiable through losskit's gradient."""
    import torch

    if y_true.requires_grad and torch.is_grad_enabled():
        raise ValueError(_Y_TRUE_GRAD)
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in inputs):
        raise ValueError(_INPUT_GRAD)
    if not (torch.is_grad_enabled() and y_pred.requires_grad):
        return run(y_true, y_pred, False, *inputs)[0]
    return _torch_function().apply(y_pred, y_true, run, *inputs)


_TORCH_FN: Any = None


def _torch_function() -> Any:
    global _TORCH_FN
    if _TORCH_FN is None:
        import torch

        class LosskitLoss(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, y_pred: Array, y_true: Array, run: Run, *inputs: Any) -> Array:
                value, grad = run(y_true, y_pred, True, *inputs)
                ctx.save_for_backward(grad, y_pred, y_true, *[x for x in inputs if x is not None])
                ctx.run, ctx.given = run, [x is not None for x in inputs]
                return value

            @staticmethod
            def backward(ctx: Any, ct: Array) -> tuple[Any, ...]:
                grad, y_pred, y_true, *given = ctx.saved_tensors
                if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated
                    grad = _torch_differentiable_gradient(ctx.run, y_pred, y_true, given, ctx.given)
                ct = ct[..., None].to(grad.dtype)  # per sample: small; the gradient stays in its dtype
                g = ct * grad
                if not torch.compiler.is_compiling() and bool((ct == 0).any()):
                    g = torch.where(ct == 0, 0.0, g)  # weight 0 contributes 0, even times inf
                return (g, None, None, *([None] * len(ctx.given)))

        _TORCH_FN = LosskitLoss
    return _TORCH_FN


def _torch_differentiable_gradient(run: Run, y_pred: Array, y_true: Array, given: list[Array],
                                   flags: list[bool]) -> Array:
    """The analytic gradient recomputed with autograd recording, so that differentiating it (a
    gradient penalty, a Hessian-vector product) gives the second derivative, as JAX does through
    ``custom_vjp``. Only under ``create_graph=True``: first-order backward uses the saved gradient."""
    import torch

    extras = iter(given)
    inputs = [next(extras) if flag else None for flag in flags]
    run = getattr(run, "generic", run)  # a compiled kernel records no graph: use the array-API one
    with torch.enable_grad():
        return run(y_true, y_pred, True, *inputs)[1]


def jax_values(run: Run, y_true: Array, y_pred: Array, inputs: tuple[Array | None, ...] = ()
               ) -> Array:
    """Per-sample values of a JAX array, with a ``custom_vjp`` carrying losskit's gradient."""
    import jax
    import jax.numpy as jnp

    given = [i for i, x in enumerate(inputs) if x is not None]

    def full(extras: tuple[Array, ...]) -> list[Array | None]:
        out: list[Array | None] = [None] * len(inputs)
        for i, x in zip(given, extras, strict=True):
            out[i] = x
        return out

    @jax.custom_vjp
    def loss(t: Array, p: Array, extras: tuple[Array, ...]) -> Array:
        return run(t, p, False, *full(extras))[0]

    def fwd(t: Any, p: Any, extras: tuple[Any, ...]) -> tuple[Array, Any]:
        if t.perturbed:
            raise ValueError(_Y_TRUE_GRAD)
        if any(x.perturbed for x in extras):
            raise ValueError(_INPUT_GRAD)
        value, grad = run(t.value, p.value, True, *full(tuple(x.value for x in extras)))
        return value, grad

    def bwd(grad: Array, ct: Array) -> tuple[None, Array, tuple[None, ...]]:
        return None, _scaled(jnp, ct, grad), (None,) * len(given)

    loss.defvjp(fwd, bwd, symbolic_zeros=True)
    return loss(y_true, y_pred, tuple(inputs[i] for i in given))


def torch_reduced(value: Array, grad: Array, y_pred: Array, recompute: Callable[[], Array]) -> Array:
    """A reduced loss ``value`` (0-d) whose gradient w.r.t. ``y_pred`` is ``grad``, computed already.

    For the fused kernels, which produce the reduced value and its gradient in one pass (as PyTorch's
    own fused losses do): backpropagation returns ``grad`` itself when the incoming gradient is 1 (the
    usual ``loss.backward()``), so the backward pass costs nothing. Under ``create_graph=True`` the
    gradient is recomputed by ``recompute()`` with autograd recording, so it can be differentiated.
    """
    import torch

    if not (torch.is_grad_enabled() and y_pred.requires_grad):
        return value
    return _torch_reduced_function().apply(y_pred, value, grad, recompute)


_TORCH_REDUCED: Any = None


def _torch_reduced_function() -> Any:
    global _TORCH_REDUCED
    if _TORCH_REDUCED is None:
        import torch

        class LosskitReducedLoss(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, y_pred: Array, value: Array, grad: Array,
                        recompute: Callable[[], Array]) -> Array:
                ctx.save_for_backward(grad)
                ctx.recompute = recompute
                return value.clone()

            @staticmethod
            def backward(ctx: Any, ct: Array) -> tuple[Any, ...]:
                (grad,) = ctx.saved_tensors
                if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated
                    grad = ctx.recompute()
                elif not torch.compiler.is_compiling() and bool(ct == 1):
                    return grad, None, None, None
                return ct.to(grad.dtype) * grad, None, None, None

        _TORCH_REDUCED = LosskitReducedLoss
    return _TORCH_REDUCED
