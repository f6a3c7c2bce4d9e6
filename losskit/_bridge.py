"""Hand losskit's analytic gradient to PyTorch autograd and to JAX, once, for every loss.

A loss is evaluated by ``run(y_true, y_pred, grad, *inputs) -> (per_sample_value, per_element_gradient)``,
where the gradient has the shape of ``y_pred`` with the reduced axis last and ``inputs`` are the loss's
extra arrays (Gaussian NLL's ``var``, a ``where`` mask; None where not given). The wrappers below
make autograd use that gradient (``torch.autograd.Function``; ``jax.custom_vjp``), so backpropagation
gets the exact derivative and keeps no graph of the loss's internals.

``flags`` (one for ``y_true``, then one per extra input) mark the arrays the loss can differentiate
too (``LossDef.differentiable_target``, ``Input(differentiable=True)``: a triplet's positive and
negative, the second member of a pair). When autograd needs their gradient, the forward pass asks
the kernel for it (``run(..., wrt=names)``, in the same evaluation) and backpropagation scales it
like ``y_pred``'s. Differentiating ``y_true`` or an input that is not marked is refused with a clear
error rather than answered with a silent zero.

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
Run = Callable[..., tuple[Any, ...]]

_Y_TRUE_GRAD = ("this losskit loss computes gradients with respect to y_pred only, but y_true is being "
                "differentiated; detach it first (y_true.detach() in PyTorch, "
                "jax.lax.stop_gradient(y_true) in JAX)")
_INPUT_GRAD = ("losskit computes gradients with respect to y_pred (and the input arrays a loss declares "
               "differentiable, such as x2 or negative) only, but an extra input array is being "
               "differentiated; detach it first (.detach() in PyTorch, jax.lax.stop_gradient in JAX)")


def _scaled(xp: Any, ct: Array, g: Array) -> Array:
    ct = ct[..., None]
    return xp.where(ct == 0, xp.zeros_like(g), ct * g)


def torch_values(run: Run, y_true: Array, y_pred: Array, inputs: tuple[Array | None, ...] = (),
                 flags: tuple[bool, ...] = ()) -> Array:
    """Per-sample values of a torch tensor, differentiable through losskit's gradient (and, for the
    arrays ``flags`` mark, through the kernel's gradients with respect to them)."""
    import torch

    flags = tuple(flags) + (False,) * (1 + len(inputs) - len(flags))
    recording = torch.is_grad_enabled()
    if recording and y_true.requires_grad and not flags[0]:
        raise ValueError(_Y_TRUE_GRAD)
    if recording and any(x is not None and x.requires_grad and not f
                         for x, f in zip(inputs, flags[1:], strict=True)):
        raise ValueError(_INPUT_GRAD)
    wanted = recording and (y_pred.requires_grad or (flags[0] and y_true.requires_grad) or any(
        x is not None and x.requires_grad for x in inputs))
    if not wanted:
        return run(y_true, y_pred, False, *inputs)[0]
    return _torch_function().apply(y_pred, y_true, run, flags, *inputs)


_TORCH_FN: Any = None


def _input_names(run: Run) -> tuple[str, ...]:
    return tuple(getattr(run, "input_names", ()))


def _torch_function() -> Any:
    global _TORCH_FN
    if _TORCH_FN is None:
        import torch

        class LosskitLoss(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, y_pred: Array, y_true: Array, run: Run, flags: tuple[bool, ...],
                        *inputs: Any) -> Array:
                needs = ctx.needs_input_grad
                wrt_pos = [i for i, f in enumerate(flags)
                           if f and (needs[1] if i == 0 else needs[3 + i])]
                wrt = _wrt_names(run, wrt_pos)
                out = run(y_true, y_pred, True, *inputs, **({"wrt": wrt} if wrt else {}))
                value, grad = out[0], out[1]
                others = out[2] if wrt else ()
                ctx.save_for_backward(grad, y_pred, y_true, *others,
                                      *[x for x in inputs if x is not None])
                ctx.run, ctx.given, ctx.wrt_pos = run, [x is not None for x in inputs], wrt_pos
                return value

            @staticmethod
            def backward(ctx: Any, ct: Array) -> tuple[Any, ...]:
                grad, y_pred, y_true, *rest = ctx.saved_tensors
                others, given = rest[:len(ctx.wrt_pos)], rest[len(ctx.wrt_pos):]
                if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated
                    grad, others = _torch_differentiable_gradient(ctx.run, y_pred, y_true, given,
                                                                  ctx.given, ctx.wrt_pos)
                ct = ct[..., None].to(grad.dtype)  # per sample: small; the gradient stays in its dtype
                zero = not torch.compiler.is_compiling() and bool((ct == 0).any())

                def scaled(g: Array) -> Array:
                    g = ct * g
                    return torch.where(ct == 0, 0.0, g) if zero else g  # weight 0: 0, even times inf

                out: list[Any] = [scaled(grad), None, None, None, *([None] * len(ctx.given))]
                for pos, g in zip(ctx.wrt_pos, others, strict=True):
                    out[1 if pos == 0 else 3 + pos] = scaled(g)
                return tuple(out)

        _TORCH_FN = LosskitLoss
    return _TORCH_FN


def _wrt_names(run: Run, positions: list[int]) -> tuple[str, ...]:
    """Flag positions (0: y_true, i: the i-th extra input) as the names the kernel's ``wrt`` takes."""
    names = _input_names(run)
    return tuple("y_true" if i == 0 else names[i - 1] for i in positions)


def _torch_differentiable_gradient(run: Run, y_pred: Array, y_true: Array, given: list[Array],
                                   flags: list[bool], wrt_pos: list[int] | None = None
                                   ) -> tuple[Array, tuple[Array, ...]]:
    """The analytic gradients recomputed with autograd recording, so that differentiating them (a
    gradient penalty, a Hessian-vector product) gives the second derivative, as JAX does through
    ``custom_vjp``. Only under ``create_graph=True``: first-order backward uses the saved gradient."""
    import torch

    extras = iter(given)
    inputs = [next(extras) if flag else None for flag in flags]
    run = getattr(run, "generic", run)  # a compiled kernel records no graph: use the array-API one
    wrt = _wrt_names(run, wrt_pos or [])
    with torch.enable_grad():
        out = run(y_true, y_pred, True, *inputs, **({"wrt": wrt} if wrt else {}))
        return out[1], (tuple(out[2]) if wrt else ())


def jax_values(run: Run, y_true: Array, y_pred: Array, inputs: tuple[Array | None, ...] = (),
               flags: tuple[bool, ...] = ()) -> Array:
    """Per-sample values of a JAX array, with a ``custom_vjp`` carrying losskit's gradient (and the
    kernel's gradients with respect to the arrays ``flags`` mark, when they are differentiated)."""
    import jax
    import jax.numpy as jnp

    flags = tuple(flags) + (False,) * (1 + len(inputs) - len(flags))
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
        if t.perturbed and not flags[0]:
            raise ValueError(_Y_TRUE_GRAD)
        if any(x.perturbed and not flags[1 + i] for i, x in zip(given, extras, strict=True)):
            raise ValueError(_INPUT_GRAD)
        wrt_pos = ([0] if t.perturbed else []) + [1 + i for i, x in zip(given, extras, strict=True)
                                                  if x.perturbed]
        wrt = _wrt_names(run, wrt_pos)
        out = run(t.value, p.value, True, *full(tuple(x.value for x in extras)),
                  **({"wrt": wrt} if wrt else {}))
        others = dict(zip(wrt_pos, out[2] if wrt else (), strict=True))
        return out[0], (out[1], others)

    def bwd(res: Any, ct: Array) -> tuple[Any, Array, tuple[Any, ...]]:
        grad, others = res
        ct_t = _scaled(jnp, ct, others[0]) if 0 in others else None
        ct_extras = tuple(_scaled(jnp, ct, others[1 + i]) if 1 + i in others else None for i in given)
        return ct_t, _scaled(jnp, ct, grad), ct_extras

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
