"""PyTorch-native twins of PyTorch's losses: ``nn.Module`` classes and ``torch.nn.functional`` functions.

``import losskit.torch as lt`` and replace ``nn.CrossEntropyLoss`` by ``lt.CrossEntropyLoss`` (or
``F.cross_entropy`` by ``lt.cross_entropy``): the same constructor and function signatures, argument order
``(input, target)``, defaults and reductions as PyTorch, with losskit's exact values and analytic
gradients (within 8 ulp of the exact result, where PyTorch clamps, overflows or cancels).

Every twin is one call of one custom operator, ``torch.ops.losskit.loss(twin, config, input, target,
extras)``, declared with :func:`torch.library.custom_op` with a fake (meta) implementation and an
autograd formula, so the twins run under ``torch.compile(fullgraph=True)`` without graph breaks and on
any device: CPU float32 tensors take losskit's compiled kernels (zero-copy NumPy views), others the
generic array-API kernels. The operator returns the loss and its gradient, computed in the same pass;
backpropagation multiplies that gradient by the incoming one. Eager calls on real CPU tensors
(outside ``torch.compile``, ``torch.func`` transforms and dispatch modes) run the operator's body
directly, without its dispatch (``_eager_call``), with the same autograd formula; the common ones
(no extra tensors, a compiled kernel for the options) skip the general machinery too (``_quick``:
a cached plan, the same checks and kernel), and ``nll_loss`` and ``ctc_loss`` call their kernels
directly (``_nll_eager``, ``_ctc_eager``), the gradient computed with the value. Shape, dtype and
option checks happen in the Python wrappers below (static under ``torch.compile``); value checks
(labels in range, probabilities in [0, 1], ...) happen inside the operator, which ``torch.compile``
does not look into.

A twin is declared by one :class:`_Twin` entry in ``_TWINS`` (the losskit loss it runs and how PyTorch
reduces it) plus its functional wrapper and module class; see ``docs/torch.md``.

Example:

>>> import torch, losskit.torch as lt
>>> logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]], requires_grad=True)
>>> loss = lt.CrossEntropyLoss(label_smoothing=0.1)(logits, torch.tensor([0, 2]))
>>> loss.backward()
>>> bool(torch.allclose(loss, torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, torch.tensor([0, 2]))))
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import _array
from ._backends import numpy as np_backend
from ._backends import torch as torch_backend
from ._numerics import sigmoid_pair, softplus_pair, xmul
from .losses import _core, _registry

__all__ = [
    "BCELoss", "BCEWithLogitsLoss", "CTCLoss", "CosineEmbeddingLoss", "CrossEntropyLoss",
    "GaussianNLLLoss", "HingeEmbeddingLoss", "HuberLoss", "KLDivLoss", "L1Loss", "MSELoss",
    "MarginRankingLoss", "MultiLabelMarginLoss", "MultiLabelSoftMarginLoss", "MultiMarginLoss",
    "NLLLoss", "NLLLoss2d", "PoissonNLLLoss", "SmoothL1Loss", "SoftMarginLoss", "TripletMarginLoss",
    "TripletMarginWithDistanceLoss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "cosine_embedding_loss", "cross_entropy", "ctc_loss", "gaussian_nll_loss", "hinge_embedding_loss",
    "huber_loss", "kl_div", "l1_loss", "margin_ranking_loss", "mse_loss", "multi_margin_loss",
    "multilabel_margin_loss", "multilabel_soft_margin_loss", "nll_loss", "poisson_nll_loss",
    "smooth_l1_loss", "soft_margin_loss", "triplet_margin_loss", "triplet_margin_with_distance_loss",
]


# ------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class _Twin:
    """How a PyTorch loss maps onto a losskit loss.

    ``loss``: losskit's registry name. ``elementwise``: PyTorch's ``reduction="none"`` returns one
    value per element of ``input`` (MSE, BCE, ...), else one per sample (the class axis reduced).
    ``row_sum``: losskit's per-sample value sums its row (KL) rather than averaging it.
    ``weighted_mean``: PyTorch's ``"mean"`` with an elementwise ``weight`` divides by ``"numel"`` or by
    ``"weight"`` (the weights' sum; MSE and L1 in PyTorch 2.13). ``class_weight``: the losskit option
    that takes PyTorch's per-class ``weight``. ``words``: PyTorch's names of losskit's arrays, for
    messages (default ``y_pred`` -> ``input``, ``y_true`` -> ``target``).
    """

    loss: str
    elementwise: bool
    row_sum: bool = False
    weighted_mean: str = "numel"
    class_weight: str | None = None
    words: tuple[tuple[str, str], ...] = (("y_pred", "input"), ("y_true", "target"))


_TWINS: dict[str, _Twin] = {
    "mse_loss": _Twin("mean_squared_error", True, weighted_mean="weight"),
    "l1_loss": _Twin("mean_absolute_error", True, weighted_mean="weight"),
    "huber_loss": _Twin("huber", True),
    "smooth_l1_loss": _Twin("smooth_l1", True),
    "binary_cross_entropy": _Twin("binary_crossentropy", True),
    "binary_cross_entropy_with_logits": _Twin("binary_crossentropy", True),
    "kl_div": _Twin("kl_div", True, row_sum=True),
    "poisson_nll_loss": _Twin("poisson_nll", True),
    "gaussian_nll_loss": _Twin("gaussian_nll", True),
    "soft_margin_loss": _Twin("soft_margin", True),
    "cross_entropy": _Twin("sparse_categorical_crossentropy", False, class_weight="class_weight"),
    "cross_entropy_probs": _Twin("categorical_crossentropy", False, class_weight="class_weight"),
    "nll_loss": _Twin("nll", False, class_weight="weight"),
    "multi_margin_loss": _Twin("multi_margin", False, class_weight="weight"),
    "multilabel_margin_loss": _Twin("multilabel_margin", False),
    "multilabel_soft_margin_loss": _Twin("multilabel_soft_margin", False, class_weight="weight"),
    "triplet_margin_loss": _Twin("triplet_margin", False, words=(
        ("y_pred", "anchor"), ("y_true", "positive"))),
    "cosine_embedding_loss": _Twin("cosine_embedding", False, words=(
        ("y_pred", "input1"), ("x2", "input2"), ("y_true", "target"))),
    "margin_ranking_loss": _Twin("margin_ranking", True, words=(
        ("y_pred", "input1"), ("x2", "input2"), ("y_true", "target"))),
    "hinge_embedding_loss": _Twin("hinge_embedding", True),
    "ctc_loss": _Twin("ctc", False, words=(
        ("y_pred", "log_probs"), ("y_true", "targets"), ("label_lengths", "target_lengths"))),
}


# ------------------------------------------------------------------------- the operator's inside


@dataclass
class _Eval:
    batch: _core.Batch
    run: Callable[..., tuple[Any, ...]]
    scale: Any    # float64, each per-sample value's factor in the result (shape of the values)
    fused: bool   # the kernel multiplies its gradient by ``scale`` itself
    xp: Any       # NumPy for CPU tensors (per-sample work without torch's thread hand-offs), else
                  # the array-API namespace of torch


def _pos_weight_kernel(pos_weight: Any) -> Callable[..., tuple[Any, Any]]:
    """BCE from logits with PyTorch's elementwise ``pos_weight`` w (rows of one element):
    w t softplus(-x) + (1-t) softplus(x), gradient (1-t) sigmoid(x) - w t sigmoid(-x) (the terms
    of ``losskit.binary_crossentropy``'s kernel, non-negative, from the same primitives), in the
    compute precision (NumPy arrays or tensors)."""

    def run(t: Any, x: Any, grad: bool, *_: Any) -> tuple[Any, Any]:
        xp = _array.namespace(x)
        wide = _array.compute_dtype(x)
        t, x = xp.astype(t, wide), xp.astype(x, wide)
        pt = t * xp.astype(pos_weight, wide)
        q = 1.0 - t
        e = xp.exp(-xp.abs(x))
        sp_pos, sp_neg = softplus_pair(xp, x, e)
        value = (xmul(xp, pt, sp_neg) + xmul(xp, q, sp_pos))[..., 0]
        if not grad:
            return value, None
        sig_pos, sig_neg = sigmoid_pair(xp, x, e)
        return value, xmul(xp, q, sig_pos) - xmul(xp, pt, sig_neg)

    return run


_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64)


def _host(x: Any) -> Any:
    """A CPU tensor as a NumPy view (inside the operator tensors are plain and need no grad)."""
    return x.numpy() if isinstance(x, Tensor) else x


def _prepare(name: str, cfg: dict[str, Any], x: Any, t: Any, extras: Sequence[Tensor],
             differentiable: bool) -> _Eval:
    """Checks, layout and kernel of one twin call, and each per-sample value's factor."""
    twin = _TWINS[name]
    given: dict[str, Any] = dict(zip(cfg["extras"], extras, strict=True))
    opts = dict(cfg["options"])
    if cfg.get("concatenated"):  # CTC's 1-D concatenated targets, padded here (values are read)
        t = _pad_targets(t, given["label_lengths"], int(opts["blank"]))
    cpu = x.device.type == "cpu" and not differentiable and x.dtype in _NUMPY_DTYPES
    if cpu:  # the NumPy path on zero-copy views: the C kernels, or the NumPy kernels' tiers
        x, t, given = x.numpy(), t.numpy(), {k: v.numpy() for k, v in given.items()}
    if cpu and "ignore_class" in opts and not (t == opts["ignore_class"]).any():
        del opts["ignore_class"]  # nothing to ignore: no mask passes
    class_w = given.get("class_weight")
    per_sample_w = None  # CE with class indices and no smoothing: w[label] as a per-sample factor
    if class_w is not None:
        if name == "cross_entropy" and not opts.get("label_smoothing"):
            per_sample_w = class_w
        else:  # a concrete read: inside the operator, opaque to torch.compile
            opts[str(twin.class_weight)] = tuple(class_w.tolist())
    defn = _registry._DEFINITIONS[twin.loss]
    opts = _normalised(defn, opts)
    declared = {spec.name for spec in defn.inputs}
    inputs = {k: v for k, v in given.items() if k in declared}
    try:
        batch = _core.prepare(defn, t, x, opts, None, inputs)
    except ValueError as error:
        raise ValueError(_pytorch_words(name, str(error))) from None
    if differentiable and batch.fast is not None:  # the array-API kernel records an autograd graph
        batch = dataclasses.replace(batch, fast=None, widened=False)
    xp: Any = np if cpu else _array.namespace(x)
    scale = _scale(name, twin, cfg, batch, given, per_sample_w, xp)
    fused = batch.fast is not None and getattr(batch.fast, "takes_scale", False)
    if "pos_weight" in given:
        run: Callable[..., tuple[Any, Any]] = _pos_weight_kernel(given["pos_weight"])
        fused = False
    else:
        run = _core._runner(defn, batch, opts, scale if fused else None)
    return _Eval(batch, run, scale, fused, xp)


_NORMALISED: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}


def _normalised(defn: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """``defn.normalise(opts)``, cached by the options' ``repr`` (a twin's options are few and
    repeat from call to call; refusals are not cached, so they raise each time)."""
    key = (defn.name, tuple(sorted((k, repr(v)) for k, v in opts.items())))
    hit = _NORMALISED.get(key)
    if hit is None:
        hit = defn.normalise(opts)
        if len(_NORMALISED) < 512:
            _NORMALISED[key] = hit
    return dict(hit)


def _pytorch_words(name: str, message: str) -> str:
    """A losskit message in PyTorch's words: ``input``/``target`` for ``y_pred``/``y_true`` (or the
    twin's own names: ``anchor``, ``log_probs``, ...)."""
    message = message.replace("; pass from_logits=True if y_pred holds logits",
                              "; use binary_cross_entropy_with_logits for logits")
    message = message.replace(" when from_logits=False", "")
    for ours, theirs in _TWINS[name].words:
        message = message.replace(ours, theirs)
    return f"{name.replace('_probs', '')}: {message}"


def _pad_targets(t: Tensor, lengths: Tensor, blank: int) -> Tensor:
    """CTC targets given as one 1-D concatenation (PyTorch's other layout) as rows ``(N, S)``,
    padded with the blank index (``S`` the longest target, at least 1)."""
    n_total = int(t.shape[0])
    lengths = lengths.to(torch.int64)
    if bool((lengths < 0).any()) or int(lengths.sum()) > n_total:
        raise ValueError(f"ctc_loss: target_lengths must be >= 0 and sum to at most the length "
                         f"{n_total} of the concatenated targets; found {lengths.tolist()}")
    width = max(int(lengths.max()) if lengths.numel() else 0, 1)
    k = torch.arange(width, device=t.device)
    start = torch.cumsum(lengths, 0) - lengths
    index = (start[:, None] + k[None, :]).clamp(max=max(n_total - 1, 0))
    rows = t[index] if n_total else torch.zeros_like(index)
    return torch.where(k[None, :] < lengths[:, None], rows, torch.full_like(rows, blank))


def _scale(name: str, twin: _Twin, cfg: dict[str, Any], batch: _core.Batch, given: dict[str, Tensor],
           per_sample_w: Tensor | None, xp: Any) -> Any:
    """Each per-sample value's factor in PyTorch's result: weights, mask and the reduction's divisor
    (float64; NumPy arrays for CPU tensors, else tensors).

    For an elementwise PyTorch loss the losskit sample is a row of the last axis (its mean, or its
    sum for KL), so the factor carries the row length; ``reduction="none"`` and elementwise weights
    use rows of one element. An empty (or fully ignored) mean is 0, not NaN."""
    host = _host if xp is np else (lambda a: a)
    wide = xp.float64 if _array.compute_dtype(batch.y_pred) != torch.float32 else xp.float32
    shape = tuple(batch.y_pred.shape[:-1])
    reduction = cfg["reduction"]
    n_row = int(batch.y_pred.shape[-1])
    factor = float(n_row) if twin.elementwise and not twin.row_sum else 1.0
    mask = None if batch.mask is None else host(batch.mask)
    w: Any = None
    if "weight" in given:
        w = xp.astype(xp.reshape(host(given["weight"]), shape), wide)
    class_w = None if "class_weight" not in given else xp.astype(host(given["class_weight"]), wide)
    w_label = None
    if class_w is not None and name in ("cross_entropy", "nll_loss"):
        labels = xp.astype(host(batch.y_true), xp.int64)
        if mask is not None:
            labels = xp.where(mask, labels, xp.zeros_like(labels))
        w_label = class_w[labels]
        if mask is not None:
            w_label = xp.where(mask, w_label, xp.zeros_like(w_label))
    if per_sample_w is not None:
        w = w_label
    if mask is not None:
        valid = xp.astype(mask, wide)
        w = valid if w is None else xp.where(mask, w, xp.zeros_like(w))
    divisor: Any
    if reduction in ("none", "sum"):
        divisor = 1.0
    elif reduction == "batchmean":
        divisor = float(batch.pred_shape[0])  # input.size(0): the layouts keep the first axis
    elif w_label is not None:  # PyTorch's weighted mean: sum_n w_{y_n} l_n / sum_n w_{y_n}
        divisor = xp.sum(w_label)
    elif mask is not None and name in ("cross_entropy", "nll_loss"):
        divisor = xp.sum(valid)
    elif w is not None and twin.weighted_mean == "weight":
        divisor = xp.sum(w)
    else:
        divisor = float(_numel(shape) * (n_row if twin.elementwise else 1))
    if w is None:
        base = (np.asarray(factor, dtype=wide) if xp is np
                else xp.asarray(factor, dtype=wide, device=_array.device(batch.y_pred)))
    else:
        base = w * factor
    if xp is np:
        divisor = float(divisor)
        return np.asarray(base / divisor if divisor else base * 0.0, dtype=wide)
    if isinstance(divisor, float):
        return base / divisor if divisor else base * 0.0
    nonzero = divisor != 0
    return xp.where(nonzero, base / xp.where(nonzero, divisor, xp.ones_like(divisor)),
                    xp.zeros_like(base))


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _evaluate(name: str, config: str | dict[str, Any], x: Tensor, t: Tensor, extras: Sequence[Tensor]
              ) -> tuple[Tensor, Tensor]:
    """The operator's body: ``config`` its JSON, or (the eager path) the decoded dict."""
    cfg = json.loads(config) if isinstance(config, str) else config
    ev = _prepare(name, cfg, x, t, extras, differentiable=False)
    batch, scale, xp = ev.batch, ev.scale, ev.xp
    host = _host if xp is np else (lambda a: a)
    shape = tuple(batch.y_pred.shape[:-1])
    wrt = tuple(cfg.get("wrt", ()))
    with torch.no_grad() if xp is not np else contextlib.nullcontext():  # NumPy records nothing
        out = ev.run(batch.y_true, batch.y_pred, cfg["grad"], *batch.inputs,
                     **({"wrt": wrt} if wrt else {}))
        values, g = out[0], out[1]
        values = xp.astype(host(values), scale.dtype)
        weighted = xmul(xp, scale, values) if scale.ndim else values * scale
        value = xp.reshape(weighted, shape) if cfg["reduction"] == "none" else xp.sum(weighted)
        value = (torch.from_numpy(np.asarray(value)) if xp is np else value).to(x.dtype)
        if not cfg["grad"]:
            return value, x.new_empty(0)
        grads = [host(g), *[host(o) for o in (out[2] if wrt else ())]]
        if (not ev.fused and xp is np and batch.axis == grads[0].ndim - 1
                and bool(np.all(scale != 0))):
            # no weight 0, so no 0 * inf to guard: scale, cast and place each gradient in one pass
            buf = torch.empty((len(grads), *x.shape) if wrt else tuple(x.shape), dtype=x.dtype)
            view = buf.numpy().reshape(len(grads), *grads[0].shape)
            factor = scale[..., None] if scale.ndim else scale
            for i, gi in enumerate(grads):
                np.multiply(gi, factor, out=view[i], casting="same_kind")
            return value, buf
        if ev.fused and wrt and xp is np:  # every gradient written, scaled, into one buffer?
            stacked = _stacked(grads, x)
            if stacked is not None:
                return value, stacked
        if not ev.fused:
            g = xmul(xp, xp.astype(scale, g.dtype)[..., None], host(g))
        grad = _core.finish_gradient(batch, g)
        grad = torch.from_numpy(np.asarray(grad)) if xp is np else grad
        if wrt:  # the other members' gradients, scaled alike, stacked after input's
            others = [_core.finish_gradient(batch, host(o) if ev.fused else
                                            xmul(xp, xp.astype(scale, o.dtype)[..., None], host(o)))
                      for o in out[2]]
            grad = torch.stack([grad, *[torch.from_numpy(np.asarray(o)) if xp is np else o
                                        for o in others]]).to(x.dtype)
        if grad.data_ptr() == x.data_ptr():  # never alias the input (a custom op's rule)
            grad = grad.clone()
        return value, grad.contiguous() if not grad.is_contiguous() else grad


def _stacked(grads: Sequence[Any], x: Tensor) -> Tensor | None:
    """The gradients (NumPy views) as one ``(len(grads), *x.shape)`` tensor without a copy, when a
    fused kernel wrote them into consecutive slots of one contiguous buffer of ``x``'s dtype (the
    embedding kernels), else None."""
    base = grads[0].base
    if (base is None or any(g.base is not base for g in grads) or not base.flags.c_contiguous
            or base.shape[0] != len(grads) or base.size != len(grads) * x.numel()
            or any(g.ctypes.data != base.ctypes.data + i * g.nbytes for i, g in enumerate(grads))):
        return None
    out = torch.from_numpy(base)
    if out.dtype != x.dtype:
        return None
    return out.reshape((len(grads), *x.shape))


def _graph_gradient(name: str, config: str | dict[str, Any], x: Tensor, t: Tensor,
                    extras: Sequence[Tensor]) -> Tensor:
    """The scaled gradient recomputed by the array-API kernel with autograd recording (only for
    ``create_graph=True``), so that differentiating it gives the second derivative."""
    cfg = json.loads(config) if isinstance(config, str) else config
    wrt = tuple(cfg.get("wrt", ()))
    with torch_backend.generic_kernels():
        ev = _prepare(name, cfg, x, t, extras, differentiable=True)
    with torch.enable_grad():
        out = ev.run(ev.batch.y_true, ev.batch.y_pred, True, *ev.batch.inputs,
                     **({"wrt": wrt} if wrt else {}))
        grads = [out[1], *(out[2] if wrt else ())]
        grads = [_core.finish_gradient(ev.batch, g * ev.scale[..., None].to(g.dtype)) for g in grads]
        return torch.stack(grads) if wrt else grads[0]


# ------------------------------------------------------------------------------------ the operator


@torch.library.custom_op("losskit::loss", mutates_args=())
def _loss_op(twin: str, config: str, input: Tensor, target: Tensor, extras: list[Tensor]
             ) -> tuple[Tensor, Tensor]:
    """losskit's loss ``twin`` (a key of ``_TWINS``) with the JSON ``config``: the PyTorch-reduced
    value and, when ``config["grad"]``, its gradient with respect to ``input`` (else an empty
    tensor); with ``config["wrt"]`` (losskit's names of other differentiable members: ``"y_true"``,
    ``"x2"``, ``"negative"``), the gradients with respect to those too, stacked after input's
    (shape ``(1 + len(wrt), *input.shape)``). ``input`` has the reduced axis last; ``extras`` are the
    tensors named by ``config["extras"]``."""
    return _evaluate(twin, config, input, target, extras)


@_loss_op.register_fake
def _loss_fake(twin: str, config: str, input: Tensor, target: Tensor, extras: list[Tensor]
               ) -> tuple[Tensor, Tensor]:
    cfg = json.loads(config)
    shape = tuple(input.shape[:-1]) if cfg["reduction"] == "none" else ()
    wrt = cfg.get("wrt", ())
    lead = (1 + len(wrt),) if wrt else ()
    grad = input.new_empty((*lead, *input.shape)) if cfg["grad"] else input.new_empty(0)
    return input.new_empty(shape), grad


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    twin, config, x, t, extras = inputs
    cfg = json.loads(config)
    _save(ctx, twin, config, cfg["reduction"], tuple(cfg["extras"]),
          float(cfg["options"].get("eps", 0.0)), tuple(cfg.get("wrt", ())), x, t, extras, output)


def _save(ctx: Any, twin: str, config: str, reduction: str, names: tuple[str, ...], eps: float,
          wrt: tuple[str, ...], x: Tensor, t: Tensor, extras: Sequence[Tensor],
          output: tuple[Tensor, Tensor]) -> None:
    """What backward needs, as plain attributes (no JSON in code that ``torch.compile`` traces)."""
    ctx.twin, ctx.config, ctx.reduction, ctx.extra_names, ctx.eps = twin, config, reduction, names, eps
    ctx.wrt = wrt
    ctx.n_extras = len(extras)
    ctx.save_for_backward(output[1], x, t, *extras)
    ctx.set_materialize_grads(False)  # no zeros of the gradient output's size for its unused slot


def _plain(t: Tensor) -> bool:
    """A real CPU tensor outside any tracing or transform (its values may be read)."""
    if torch.compiler.is_compiling():
        return False
    return (type(t) is torch.Tensor and t.is_cpu
            and not torch._C._functorch.is_functorch_wrapped_tensor(t))


def _backward(ctx: Any, ct: Tensor, _ct_grad: Tensor) -> tuple[Any, ...]:
    return _gradients(ctx, ctx.needs_input_grad, ct)


def _gradients(ctx: Any, needs: Sequence[Any], ct: Tensor) -> tuple[Any, ...]:
    """The operator's input gradients (``needs``: ``needs_input_grad`` in the operator's argument
    positions: twin, config, input, target, extras)."""
    grad, x, t, *extras = ctx.saved_tensors
    grad_x = grad_t = None
    grad_extras: list[Tensor | None] = [None] * ctx.n_extras
    if ct is None:  # the loss did not reach the differentiated result
        return None, None, None, None, grad_extras
    wrt = ctx.wrt
    want = [bool(needs[2]), *[bool(needs[3]) if name == "y_true" else
                              _needs_extra(needs, ctx.extra_names.index(name)) for name in wrt]]
    if any(want):
        if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated
            try:
                grad = _graph_gradient(ctx.twin, ctx.config, x, t, extras)
            except RuntimeError as error:  # torch.vmap over torch.func.grad: the kernels read values
                if "vmap" not in str(error):
                    raise
                grad = _FirstOrderOnly.apply(grad, x)
        elif grad.numel() != x.numel() * (1 + len(wrt)):
            raise RuntimeError("losskit.torch: the gradient was not computed in the forward pass "
                               "(no argument required grad there); recompute the loss")
        grads = list(grad.unbind(0)) if wrt else [grad]

        def times_ct(g: Tensor) -> Tensor:
            if ctx.reduction == "none":  # one value per sample: over its row (or block, CTC)
                return ct.reshape(*ct.shape, *[1] * (g.ndim - ct.ndim)).to(g.dtype) * g
            if (not torch.is_grad_enabled() and ct.ndim == 0 and _plain(ct)
                    and ct.item() == 1):
                return g  # the usual loss.backward(): the saved gradient itself, no extra pass
            return ct.to(g.dtype) * g

        grad_x = times_ct(grads[0]) if want[0] else None
        for name, g, wanted in zip(wrt, grads[1:], want[1:], strict=True):
            if not wanted:
                continue
            if name == "y_true":
                grad_t = times_ct(g)
            else:
                grad_extras[ctx.extra_names.index(name)] = times_ct(g)
    if "var" in ctx.extra_names:
        i = ctx.extra_names.index("var")
        if _needs_extra(needs, i):
            grad_extras[i] = _var_gradient(ctx.reduction, ctx.eps, x, t, extras[i], ct)
    return None, None, grad_x, grad_t, grad_extras


class _FirstOrderOnly(torch.autograd.Function):
    """The saved first-order gradient where the differentiable one cannot be formed (``torch.vmap``
    of ``torch.func.grad``, which always asks for a graph): differentiating it again raises instead
    of returning a silent zero."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad: Tensor, x: Tensor) -> Tensor:
        return grad.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, ct: Tensor) -> tuple[Any, ...]:
        raise RuntimeError("losskit.torch: second derivatives under torch.vmap are not supported "
                           "(torch.vmap of torch.func.grad gives first-order gradients only); take "
                           "them without vmap (create_graph=True, torch.func.hessian)")


def _needs_extra(needs: Sequence[Any], i: int) -> bool:
    """Whether the ``i``-th extra tensor needs a gradient: ``needs_input_grad`` lists the extras
    one by one (``autograd.Function``) or as one entry for the list (the operator's own rule)."""
    rest = needs[4:]
    if len(rest) == 1 and isinstance(rest[0], list | tuple):
        rest = rest[0]
    return bool(rest[i]) if i < len(rest) else bool(rest and rest[0])


def _var_gradient(reduction: str, eps: float, x: Tensor, t: Tensor, var: Tensor, ct: Tensor
                  ) -> Tensor:
    """Gaussian NLL's gradient with respect to ``var``, as PyTorch's autograd gives it (the clamp at
    ``eps`` is not differentiated): (1 - d^2 / v) / (2 v) per element, v = max(var, eps), d = x - t,
    times the element's factor in the reduction. Plain torch ops: differentiable again."""
    v = var + (torch.clamp(var, min=eps) - var).detach()
    d = x - t
    g = 0.5 * (1.0 - d * (d / v)) / v
    if reduction == "mean":
        g = g / float(x.numel()) if x.numel() else g * 0.0
    if reduction == "none":
        return ct[..., None].to(g.dtype) * g
    return ct.to(g.dtype) * g


torch.library.register_autograd("losskit::loss", _backward, setup_context=_setup_context)


def _vmap(info: Any, in_dims: tuple[Any, ...], twin: str, config: str, x: Tensor, t: Tensor,
          extras: list[Tensor]) -> tuple[tuple[Tensor, Tensor], tuple[int, int]]:
    """``torch.vmap``: one call per batch entry (correct for every twin; not fused)."""
    _, _, dx, dt, dextras = in_dims
    dextras = dextras if dextras is not None else [None] * len(extras)

    def pick(a: Tensor, d: int | None, i: int) -> Tensor:
        return a if d is None else a.select(d, i)

    outs = [_loss_op(twin, config, pick(x, dx, i), pick(t, dt, i),
                     [pick(e, d, i) for e, d in zip(extras, dextras, strict=True)])
            for i in range(info.batch_size)]
    return (torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])), (0, 0)


torch.library.register_vmap("losskit::loss", _vmap)


class _LossFunction(torch.autograd.Function):
    """The operator with the same autograd formula as an ``autograd.Function`` in the
    ``setup_context`` style, which ``torch.func.grad``/``vjp``/``jacrev`` accept (PyTorch 2.13 does not
    run ``torch.func`` transforms through a custom op's ``register_autograd``); ``torch.compile``
    traces it and keeps the operator opaque, so nothing breaks the graph."""

    generate_vmap_rule = True

    @staticmethod
    def forward(twin: str, config: str, reduction: str, names: tuple[str, ...], eps: float,
                wrt: tuple[str, ...], x: Tensor, t: Tensor, *extras: Tensor) -> tuple[Tensor, Tensor]:
        out: tuple[Tensor, Tensor] = torch.ops.losskit.loss(twin, config, x, t, list(extras))
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        twin, config, reduction, names, eps, wrt, x, t, *extras = inputs
        _save(ctx, twin, config, reduction, names, eps, wrt, x, t, extras, output)
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, ct: Tensor, ct_grad: Tensor) -> tuple[Any, ...]:
        needs = ctx.needs_input_grad
        ctx_needs = (*needs[:2], needs[6], needs[7], *needs[8:])
        _, _, grad_x, grad_t, grad_extras = _gradients(ctx, ctx_needs, ct)
        return (None, None, None, None, None, None, grad_x, grad_t, *grad_extras)


# ------------------------------------------------------------------------------------ the wrappers


_REDUCTIONS = ("none", "mean", "sum")


def _reduction(reduction: Any, size_average: Any = None, reduce: Any = None,
               allowed: tuple[str, ...] = _REDUCTIONS) -> str:
    if size_average is not None or reduce is not None:  # PyTorch's deprecated pair, mapped as PyTorch does
        reduction = nn._reduction.legacy_get_string(size_average, reduce)
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {', '.join(repr(r) for r in allowed)}; found "
                         f"{reduction!r}")
    return str(reduction)


def _tensor(name: str, value: Any, floating: bool = True) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; found {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype; found {value.dtype}")
    return value


def _no_grad_needed(fn: str, name: str, value: Tensor | None) -> None:
    if value is not None and value.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"{fn}: losskit.torch differentiates with respect to input only (and var "
                         f"for gaussian_nll_loss), but {name} requires grad; detach it "
                         f"({name}.detach()) or use torch.nn.functional for that gradient")


def _same_shape(fn: str, input: Tensor, target: Tensor) -> None:
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"{fn}: target must have input's shape {tuple(input.shape)}; found "
                         f"{tuple(target.shape)} (losskit does not broadcast the target)")


def _class_weight(fn: str, weight: Tensor | None, n_classes: int) -> Tensor | None:
    if weight is None:
        return None
    _tensor("weight", weight)
    _no_grad_needed(fn, "weight", weight)
    if weight.ndim != 1 or weight.shape[0] != n_classes:
        raise ValueError(f"{fn}: weight must be a 1-D tensor with one entry per class ({n_classes}); "
                         f"found shape {tuple(weight.shape)}")
    return weight.detach()


def _call(name: str, x: Tensor, t: Tensor, reduction: str, options: dict[str, Any],
          extras: dict[str, Tensor] | None = None, concatenated: bool = False) -> Tensor:
    recording = torch.is_grad_enabled()
    if not extras and not concatenated:
        quick = _quick(name, x, t, reduction, options, recording)
        if quick is not None:
            return quick
    extras = extras or {}
    var = extras.get("var")
    defn = _registry._DEFINITIONS[_TWINS[name].loss]
    members = {"y_true": t, **extras}  # the other members losskit differentiates, where they need it
    wrt = [k for k in defn.differentiable() if recording and k in members and members[k].requires_grad]
    grad = recording and (x.requires_grad or bool(wrt) or (var is not None and var.requires_grad))
    config: dict[str, Any] = {"options": options, "reduction": reduction, "extras": list(extras),
                              "grad": bool(grad)}
    if wrt:
        config["wrt"] = wrt
    if concatenated:
        config["concatenated"] = True
    eps = float(options.get("eps", 0.0))
    if _eager(x, t, extras):
        return _eager_call(name, config, reduction, tuple(extras), eps, tuple(wrt), x, t, extras)
    value, _ = _LossFunction.apply(name, _json(config), reduction, tuple(extras), eps, tuple(wrt), x, t,
                                   *extras.values())
    return value


_eager_context = torch_backend.eager_context


def _eager(x: Tensor, t: Tensor, extras: dict[str, Tensor]) -> bool:
    """Whether a call may skip the operator: real CPU tensors outside ``torch.compile``,
    ``torch.func`` transforms, dispatch modes (``FakeTensorMode``, ...), forward-mode AD (whose
    tangents the operator refuses rather than drops) and ``generic_kernels()``."""
    if not _eager_context():
        return False
    return (type(x) is Tensor and x.is_cpu and type(t) is Tensor and t.is_cpu
            and all(type(e) is Tensor and e.is_cpu for e in extras.values()))


def _eager_call(name: str, config: dict[str, Any], reduction: str, names: tuple[str, ...], eps: float,
                wrt: tuple[str, ...], x: Tensor, t: Tensor, extras: dict[str, Tensor]) -> Tensor:
    """The operator's work without its dispatch (eager CPU calls): the same ``_evaluate`` on
    detached tensors, and when a gradient is recorded, :class:`_Eager` with the operator's autograd
    formula (``_gradients``: ``create_graph=True`` recomputes a differentiable gradient)."""
    given = list(extras.values())
    value, grad = _evaluate(name, config, x.detach(), t.detach(), [e.detach() for e in given])
    if not config["grad"]:
        return value
    spec = (name, config, reduction, names, eps, wrt, value, grad)
    out: Tensor = _Eager.apply(spec, x, t, *given)
    return out


class _Eager(torch.autograd.Function):
    """The eager path's node: forward hands back the value computed before (``spec``), backward is
    the operator's (:func:`_gradients`, with ``needs_input_grad`` in the operator's positions)."""

    @staticmethod
    def forward(ctx: Any, spec: tuple[Any, ...], x: Tensor, t: Tensor, *extras: Tensor) -> Tensor:
        twin, config, reduction, names, eps, wrt, value, grad = spec
        _save(ctx, twin, config, reduction, names, eps, wrt, x, t, extras, (value, grad))
        return value

    @staticmethod
    def backward(ctx: Any, ct: Tensor) -> tuple[Any, ...]:
        needs = ctx.needs_input_grad
        if (ct is not None and not ctx.wrt and not ctx.n_extras and ct.ndim == 0
                and not torch.is_grad_enabled() and _plain(ct) and ct.item() == 1):
            return None, ctx.saved_tensors[0], None  # the usual loss.backward(): the saved gradient
        _, _, grad_x, grad_t, grad_extras = _gradients(ctx, (False, False, *needs[1:]), ct)
        return (None, grad_x, grad_t, *grad_extras)


@dataclass(frozen=True)
class _QuickPlan:
    """What :func:`_quick` needs for one (twin, reduction, dtype, options): the loss, its normalised
    options (without ``ignore_class``, whose presence in the labels each call checks: ``ignore``),
    its compiled kernel, the twin's layout (``_Twin.elementwise`` and ``row_sum``, which ``_scale``
    reads) and the eager config that backward's ``_gradients`` reads. ``direct``: the kernel is one
    of numpy.py's plain row kernels (``_kernel``: ``kernel_id``, ``params``, ``labels``), which a
    small call runs through ``_cpu.run`` itself, without the wrapper's per-call work; ``prm`` caches
    its parameters per row length."""

    defn: Any
    opts: dict[str, Any]
    ignore: int | None
    kernel: Any
    elementwise: bool
    row_sum: bool
    config: dict[str, Any]
    eps: float
    direct: bool
    prm: dict[int, np.ndarray]
    domain: bool = True  # the loss's domain has an interval for these options (_core._check_domain)
    labels_only: bool = False  # check_values tests only the labels' range (class_index_checker's)


_QUICK: dict[tuple[Any, ...], _QuickPlan | None] = {}
_UNKNOWN: Any = object()
_QUICK_DTYPES = {torch.float32: ("float32", np.float32), torch.float64: ("float64", np.float64)}


def _quick_plan(name: str, reduction: str, dtype: torch.dtype, options: dict[str, Any]
                ) -> _QuickPlan | None:
    twin = _TWINS[name]
    defn = _registry._DEFINITIONS[twin.loss]
    if defn.event_ndim > 1:
        return None
    opts = dict(options)
    ignore = opts.pop("ignore_class", None)
    normalised = _normalised(defn, opts)  # a bad option raises here, as the operator's path does
    kernel = np_backend.fast_kernel(defn.name, normalised, _QUICK_DTYPES[dtype][0])
    if kernel is None or getattr(kernel, "inputs", None) or not getattr(kernel, "takes_scale", False):
        return None
    normalised.pop("axis", None)
    config = {"options": dict(options), "reduction": reduction, "extras": [], "grad": True}
    direct = hasattr(kernel, "recheck_nonfinite") and isinstance(getattr(kernel, "kernel_id", None), int)
    return _QuickPlan(defn, normalised, None if ignore is None else int(ignore), kernel,
                      twin.elementwise, twin.row_sum, config, float(options.get("eps", 0.0)),
                      direct, {}, any(v is not None for v in defn.domain(normalised).values()),
                      defn.sparse and getattr(defn.check_values, "labels_only", False))


def _quick(name: str, x: Tensor, t: Tensor, reduction: str, options: dict[str, Any],
           recording: bool) -> Tensor | None:
    """The common eager call without the operator's general machinery: real CPU float32/float64
    tensors, no extra tensors (weights, lengths, ...), a compiled kernel for the loss and its options,
    no label equal to ``ignore_index``. The same checks as ``_core.prepare`` (on NumPy views, in
    PyTorch's words), the same kernel, scale and autograd formula (:class:`_Eager`) as
    :func:`_evaluate`; the plan (options normalised, kernel chosen) is cached per (twin, reduction,
    dtype, options). None: the call takes the general path."""
    if (type(x) is not Tensor or type(t) is not Tensor or x.dtype not in _QUICK_DTYPES
            or not x.is_cpu or not t.is_cpu or x.ndim == 0
            or (recording and t.requires_grad)):
        return None
    if not _eager_context() or torch._C._functorch.is_functorch_wrapped_tensor(x):
        return None
    key = (name, reduction, x.dtype, *[(k, type(v), v) for k, v in options.items()])
    try:
        plan = _QUICK.get(key, _UNKNOWN)  # (one hash of the key)
    except TypeError:  # an unhashable option value
        return None
    if plan is _UNKNOWN:
        plan = _quick_plan(name, reduction, x.dtype, options)
        if len(_QUICK) < 512:
            _QUICK[key] = plan
    if plan is None:
        return None
    defn = plan.defn
    shape = tuple(x.shape)
    k = shape[-1]
    if defn.sparse:
        if tuple(t.shape) != shape[:-1] or t.dtype != torch.int64:
            return None
    elif tuple(t.shape) != shape or t.dtype != x.dtype:
        return None
    rows = _numel(shape[:-1])
    if not rows or not k:
        return None
    xn = (x.detach() if x.requires_grad else x).numpy()
    tn = (t.detach() if t.requires_grad else t).numpy()
    checked = False  # the labels are known to lie in [0, k) (check_values would pass)
    if plan.labels_only:  # one min and one max for check_values's test and ignore_index's
        lo, hi = np.minimum.reduce(tn, axis=None), np.maximum.reduce(tn, axis=None)
        if plan.ignore is not None and lo <= plan.ignore <= hi and bool(np.any(tn == plan.ignore)):
            return None  # a mask: the general path
        checked = lo >= 0 and hi < k
    elif plan.ignore is not None and bool(np.any(tn == plan.ignore)):
        return None  # a mask: the general path
    opts = plan.opts
    try:
        if plan.domain:
            _core._check_domain(defn, np, tn, xn, opts)
        if defn.check_values is not None and not checked:
            defn.check_values(np, tn, xn, **opts)
        if defn.reads is not None and not getattr(plan.kernel, "checks_reads", False):
            _core._check_read_domain(defn, np, tn, xn, opts)
    except ValueError as error:
        raise ValueError(_pytorch_words(name, str(error))) from None
    # each per-sample value's factor (``_scale`` without weights or mask): a row's mean times its
    # length for PyTorch's elementwise losses, over the divisor of the reduction
    factor = float(k) if plan.elementwise and not plan.row_sum else 1.0
    if reduction == "mean":
        c = factor / (rows * (k if plan.elementwise else 1))
    elif reduction == "batchmean":
        c = factor / shape[0]
    else:
        c = factor
    grad = recording and x.requires_grad
    scale = np.full(shape[:-1], c) if grad and c != 1.0 else None
    dtype = _QUICK_DTYPES[x.dtype][1]
    if plan.direct and rows * k < np_backend.PARALLEL_MIN_ELEMENTS:
        values, g = _quick_direct(plan, tn, xn, rows, k, grad, scale, dtype)
    else:
        with _core._quiet_numpy():
            values, g = plan.kernel(np, tn, xn, grad=grad, scale=scale, **opts)
    if getattr(plan.kernel, "recheck_nonfinite", False):
        with _core._quiet_numpy():
            values, g = _core._recheck_rows(np, defn, opts, tn, xn, grad, values, g, scale)
    if reduction == "none":
        value = torch.from_numpy(values if c == 1.0 else values * c).to(x.dtype)
    else:
        value = torch.from_numpy(np.asarray(float(values.sum()) * c, dtype=dtype))
    if not grad:
        return value
    spec = (name, plan.config, reduction, (), plan.eps, (), value, torch.from_numpy(g))
    out: Tensor = _EAGER_APPLY(spec, x, t)
    return out


# _Eager's node built by autograd's C entry itself: Function.apply's Python layer binds default
# arguments for setup_context (_Eager has none) and unwraps dead functorch wrappers, which _quick's
# tensors are not (no transform is active: _eager_context; x is checked unwrapped)
_EAGER_APPLY = torch._C._FunctionBase.__dict__["apply"].__get__(None, _Eager)


def _quick_direct(plan: _QuickPlan, t: np.ndarray, x: np.ndarray, rows: int, k: int, grad: bool,
                  scale: np.ndarray | None, dtype: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """numpy.py's ``_kernel`` wrapper for a small call, on the calling thread: the same
    conversions (labels mapped by the kernel's ``labels``, e.g. hinge's 0/1 to -1/1), parameters and
    ``_cpu.run`` call."""
    kernel = plan.kernel
    prm = plan.prm.get(k)
    if prm is None:
        prm = np.asarray(kernel.params(k, **plan.opts) if kernel.params else (0.0,), dtype=np.float64)
        if len(plan.prm) < 16:
            plan.prm[k] = prm
    x = np.ascontiguousarray(x, dtype=dtype)
    if plan.defn.sparse:
        t = np.ascontiguousarray(t, dtype=np.int64)
    else:
        t = np.ascontiguousarray(t if kernel.labels is None else kernel.labels(t), dtype=dtype)
    value = np.empty(x.shape[:-1], dtype=np.float64)
    g = np.empty(x.shape, dtype=dtype) if grad else None
    np_backend._cpu.run(kernel.kernel_id, dtype == np.float64, t, x, rows, k, value, g, scale, prm,
                        None)
    return value, g


def _json(value: Any) -> str:
    """JSON of a config made of dicts, lists, strings, numbers, booleans and None, written out here
    because ``torch.compile`` cannot trace ``json.dumps`` (the result is a constant of the graph)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(_json(k) + ":" + _json(value[k]) for k in sorted(value)) + "}"
    return "[" + ",".join(_json(v) for v in value) + "]"


def _elementwise(name: str, fn: str, input: Any, target: Any, reduction: str,
                 options: dict[str, Any], weight: Tensor | None = None,
                 pos_weight: Tensor | None = None, var: Tensor | None = None,
                 weight_same_size: bool = False, x2: Tensor | None = None) -> Tensor:
    """A PyTorch loss with one value per element (MSE, BCE, KL, ...); ``x2``: a second input of
    ``input``'s shape (margin ranking), differentiated like ``input``."""
    input = _tensor("input", input)
    target = _tensor("target", target)
    _same_shape(fn, input, target)
    _no_grad_needed(fn, "target", target)
    target = target.to(input.dtype)
    extras: dict[str, Tensor] = {}
    if x2 is not None:
        extras["x2"] = x2.unsqueeze(-1) if reduction == "none" else (
            x2.reshape(1) if input.ndim == 0 else x2)
    if weight is not None:
        _tensor("weight", weight)
        _no_grad_needed(fn, "weight", weight)
        if weight_same_size and tuple(weight.shape) != tuple(input.shape):
            raise ValueError(f"{fn}: weight must have input's shape {tuple(input.shape)}; found "
                             f"{tuple(weight.shape)}")
        extras["weight"] = _broadcast(fn, "weight", weight.detach(), input).to(input.dtype)
    if pos_weight is not None:
        _tensor("pos_weight", pos_weight)
        _no_grad_needed(fn, "pos_weight", pos_weight)
        extras["pos_weight"] = _broadcast(fn, "pos_weight", pos_weight.detach(), input).unsqueeze(-1)
    ones = reduction == "none" or weight is not None or pos_weight is not None
    if ones:  # rows of one element: losskit's per-sample values are PyTorch's per-element ones
        x, t = input.unsqueeze(-1), target.unsqueeze(-1)
    elif input.ndim == 0:
        x, t = input.reshape(1), target.reshape(1)
    else:
        x, t = input, target
    if var is not None:
        extras["var"] = var.unsqueeze(-1) if ones else (var.reshape(1) if input.ndim == 0 else var)
    return _call(name, x, t, reduction, options, extras)


def _broadcast(fn: str, name: str, value: Tensor, input: Tensor) -> Tensor:
    try:
        return value.expand(input.shape)
    except RuntimeError:
        raise ValueError(f"{fn}: {name} of shape {tuple(value.shape)} does not broadcast to input's "
                         f"shape {tuple(input.shape)}") from None


def _classes_last(input: Tensor) -> Tensor:
    """PyTorch's class axis is 1 for ``(N, C, d1, ...)``; losskit reduces the last axis."""
    return input.movedim(1, -1) if input.ndim >= 3 else input


def _check_index_target(fn: str, input: Tensor, target: Tensor) -> None:
    expected = (tuple(input.shape[:1]) + tuple(input.shape[2:])) if input.ndim >= 2 else ()
    if input.ndim == 0:
        raise ValueError(f"{fn}: input must have a class axis, shape (C,), (N, C) or (N, C, d1, ...); "
                         "found a scalar")
    if tuple(target.shape) != expected:
        raise ValueError(f"{fn}: target of class indices must have shape {expected} for input of "
                         f"shape {tuple(input.shape)}; found {tuple(target.shape)}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"{fn}: target of class indices must have an integer dtype; found "
                        f"{target.dtype}")


# ------------------------------------------------------------------------------- functional twins


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  size_average: bool | None = None, ignore_index: int = -100,
                  reduce: bool | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    r"""Cross-entropy of logits, PyTorch's ``F.cross_entropy``, exact.

    ``input`` ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)`` logits; ``target`` class indices of shape
    ``()``, ``(N,)`` or ``(N, d1, ...)`` (integers), or class probabilities of ``input``'s shape
    (floating). Per sample, with smoothing :math:`s` and class weights :math:`w`:

    .. math:: \ell_n = (1-s)\,w_{y_n}\big(\operatorname{lse}(x_n) - x_{n,y_n}\big)
              + \frac{s}{C}\sum_c w_c\big(\operatorname{lse}(x_n) - x_{n,c}\big)

    (probabilities :math:`t`: :math:`\ell_n = \sum_c w_c \tilde t_c (\operatorname{lse}(x_n) -
    x_{n,c})` with :math:`\tilde t = (1-s) t + s/C`). ``"mean"`` divides by :math:`\sum_n w_{y_n}`
    over the samples whose label is not ``ignore_index`` (by the number of samples for
    probability targets); ``"sum"`` and ``"none"`` as PyTorch. Gradient: the softmax minus the
    (smoothed, weighted) target, analytic. Differences: see ``docs/torch.md``.

    >>> import torch, losskit.torch as lt
    >>> x = torch.tensor([[30.0, 0.0]], dtype=torch.float64)  # exact: log1p(e^-30)
    >>> float(lt.cross_entropy(x, torch.tensor([0])))
    9.357622968839737e-14
    """
    fn = "cross_entropy"
    reduction = _reduction(reduction, size_average, reduce)
    input = _tensor("input", input)
    if not isinstance(label_smoothing, int | float) or isinstance(label_smoothing, bool) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{fn}: label_smoothing must be a number in [0, 1]; found {label_smoothing!r}")
    _tensor("target", target, floating=False)
    _no_grad_needed(fn, "target", target)
    n_classes = int(input.shape[1] if input.ndim >= 2 else input.shape[0]) if input.ndim else 0
    w = _class_weight(fn, weight, n_classes)
    extras = {} if w is None else {"class_weight": w}
    options: dict[str, Any] = {"from_logits": True, "label_smoothing": float(label_smoothing)}
    if target.is_floating_point():
        if tuple(target.shape) != tuple(input.shape):
            raise ValueError(f"{fn}: target of class probabilities must have input's shape "
                             f"{tuple(input.shape)}; found {tuple(target.shape)}")
        if ignore_index != -100:
            raise ValueError(f"{fn}: ignore_index={ignore_index} applies to class-index targets only, "
                             "but target holds class probabilities")
        return _call("cross_entropy_probs", _classes_last(input),
                     _classes_last(target.to(input.dtype)), reduction, options, extras)
    _check_index_target(fn, input, target)
    options["ignore_class"] = int(ignore_index)
    return _call(fn, _classes_last(input), target, reduction, options, extras)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
             size_average: bool | None = None, ignore_index: int = -100,
             reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    r"""Negative log-likelihood of log-probabilities, PyTorch's ``F.nll_loss``:
    :math:`\ell_n = -w_{y_n} x_{n,y_n}`, ``"mean"`` divided by :math:`\sum_n w_{y_n}` over the
    samples not ignored. Shapes as :func:`cross_entropy` with class indices. ``input`` must be
    ``<= 0`` (log-probabilities; ``ValueError`` otherwise).

    >>> import torch, losskit.torch as lt
    >>> float(lt.nll_loss(torch.tensor([[-1.0, -2.0]]), torch.tensor([1])))
    2.0
    """
    fn = "nll_loss"
    reduction = _reduction(reduction, size_average, reduce)
    input = _tensor("input", input)
    _tensor("target", target, floating=False)
    _check_index_target(fn, input, target)
    n_classes = int(input.shape[1] if input.ndim >= 2 else input.shape[0])
    w = _class_weight(fn, weight, n_classes)
    eager = _nll_eager(input, target, w, int(ignore_index), reduction)
    if eager is not None:
        return eager
    extras = {} if w is None else {"class_weight": w}
    return _call(fn, _classes_last(input), target, reduction, {"ignore_class": int(ignore_index)},
                 extras)


@dataclass
class _NLLPlan:
    """What :class:`_NLLEager` needs for ``reduction="none"``: the value, the layout ``(outer, k,
    inner)`` of ``input`` (classes on axis 1), the class weights (float64 NumPy or None) and the
    ignored label."""

    value: Tensor
    layout: tuple[int, int, int]
    weight: np.ndarray | None
    ignore_index: int


def _nll_eager(input: Tensor, target: Tensor, w: Tensor | None, ignore_index: int, reduction: str
               ) -> Tensor | None:
    """``nll_loss`` on plain CPU float32/float64 tensors with int64 targets, outside
    ``torch.compile`` and ``torch.func`` (``_plain``): the gathered C kernel (``_cpu.nll``), which
    reads only ``input[n, target_n, ...]`` in ``input``'s own layout (no copy for ``(N, C, d1,
    ...)``) and checks the labels and those entries (the loss's domain at the entries it reads,
    ``LossDef.reads``), without the operator's per-call machinery. With ``"mean"`` or ``"sum"`` and
    a gradient to record, the same pass also writes the gradient (zeros and ``-w_y / divisor`` at
    each label, PyTorch's) for backward to hand over (:class:`_Ready`); the divisor of a weighted
    or partly ignored mean is known after the pass, so those write it in a second pass that reads
    only the labels. ``"none"`` writes it in backward, scaled by each sample's incoming gradient
    (:class:`_NLLEager`). None: the call takes the operator (other tensors, or a bad label or entry,
    whose message the operator's checks give)."""
    cpu = np_backend._cpu
    if (cpu is None or input.dtype not in (torch.float32, torch.float64) or target.dtype != torch.int64
            or not _plain(input) or not _plain(target) or (w is not None and not _plain(w))
            or not _eager_context()):
        return None
    x = input.detach()
    x = x if x.is_contiguous() else x.contiguous()
    t = target if target.is_contiguous() else target.contiguous()
    k = int(x.shape[1] if x.ndim >= 2 else x.shape[0])
    outer = int(x.shape[0]) if x.ndim >= 2 else 1
    inner = _numel(x.shape[2:])
    weight = None
    if w is not None:
        weight = w.to(torch.float64).contiguous().numpy()
        if not bool(np.isfinite(weight).all()) or bool((weight < 0).any()):
            return None  # the operator refuses it, naming the weight
    wide = x.dtype == torch.float64
    xn, tn = x.numpy(), t.numpy()
    grad = input.requires_grad and torch.is_grad_enabled() and reduction != "none"
    samples = outer * inner
    g = None
    guess = 1.0  # the gradient's factor written by the first pass: 1 / divisor if it is known
    if grad:
        g = np.zeros(x.shape, dtype=xn.dtype)
        if reduction == "mean" and weight is None:
            guess = 1.0 / samples if samples else 0.0
    # a value buffer also when only the sums are wanted: with a gradient and no value the kernel
    # would not read x
    values = np.empty(tuple(t.shape), dtype=np.float64) if reduction == "none" or grad else None
    bad_labels, bad_entries, _, total, wsum = cpu.nll(
        xn, wide, tn, outer, k, inner, ignore_index, True, weight, values, g, None, guess)
    if bad_labels or bad_entries:  # the loss's own checks say which, in PyTorch's words
        defn = _registry._DEFINITIONS["nll"]
        opts = defn.normalise({"ignore_class": ignore_index,
                               "weight": None if weight is None else tuple(weight.tolist())})
        pred = np.moveaxis(xn, 1, -1) if x.ndim >= 3 else xn
        try:
            if defn.check_values is not None:
                defn.check_values(np, tn, pred, **opts)
            _core._check_read_domain(defn, np, tn, pred, opts, 1 if x.ndim >= 3 else -1)
        except ValueError as error:
            raise ValueError(_pytorch_words("nll_loss", str(error))) from None
        return None
    if reduction == "none":
        value = torch.from_numpy(values).to(x.dtype)
        if not (input.requires_grad and torch.is_grad_enabled()):
            return value
        out: Tensor = _NLLEager.apply(input, t, _NLLPlan(value, (outer, k, inner), weight,
                                                          ignore_index))
        return out
    factor = 1.0
    if reduction == "mean":  # PyTorch's: sum_n w_{y_n} l_n / sum_n w_{y_n} (0 for an empty sum)
        factor = 1.0 / wsum if wsum else 0.0
        total = total * factor if wsum else 0.0
    value = torch.from_numpy(np.asarray(total, dtype=xn.dtype))
    if g is None:
        return value
    if factor != guess:  # a weighted or partly ignored mean: the gradient again, now its divisor known
        g.fill(0.0)
        cpu.nll(xn, wide, tn, outer, k, inner, ignore_index, True, weight, None, g, None, factor)
    out = _Ready.apply(input, (value, torch.from_numpy(g), None, None))
    return out


class _Ready(torch.autograd.Function):
    """A value and its gradient computed together by an eager twin (``nll_loss``'s mean and sum,
    ``ctc_loss``): backward hands the gradient over, times the incoming gradient ``ct`` (a scalar, or
    with ``reduction="none"`` one per sample, reshaped to ``ct_shape`` to broadcast over the
    gradient). Where backward records a graph (``create_graph=True``), ``g * ct`` is differentiable in
    ``ct``, and ``second`` (a message, or None when the gradient does not depend on ``input``: NLL)
    refuses the second derivative the gradient lacks."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, ready: tuple[Any, ...]) -> Tensor:
        value, grad, ctx.ct_shape, ctx.second = ready
        ctx.save_for_backward(grad)
        return value

    @staticmethod
    def backward(ctx: Any, ct: Tensor) -> tuple[Any, ...]:
        (g,) = ctx.saved_tensors
        if torch.is_grad_enabled() and ctx.second is not None:
            raise ValueError(ctx.second)
        if ctx.ct_shape is not None:
            return g * ct.to(g.dtype).reshape(ctx.ct_shape), None
        if not torch.is_grad_enabled() and _plain(ct) and ct.item() == 1:
            return g, None  # the usual loss.backward(): the gradient itself, no extra pass
        return g * ct.to(g.dtype), None


class _NLLEager(torch.autograd.Function):
    """:func:`_nll_eager`'s value for ``"none"`` (computed before, handed in by the plan) and its
    gradient: zeros with ``-w_y * ct_n`` at each sample's label (0 for an ignored one), by the C
    kernel, or by differentiable torch ops when backward records a graph (``create_graph=True``)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, t: Tensor, plan: _NLLPlan) -> Tensor:
        ctx.plan = plan
        ctx.save_for_backward(x, t)
        return plan.value

    @staticmethod
    def backward(ctx: Any, ct: Tensor) -> tuple[Any, ...]:
        x, t = ctx.saved_tensors
        plan: _NLLPlan = ctx.plan
        outer, k, inner = plan.layout
        if not torch.is_grad_enabled() and _plain(ct):
            g = torch.zeros(x.shape, dtype=x.dtype)
            scale = ct.detach().to(torch.float64).contiguous().numpy()
            np_backend._cpu.nll(g.numpy(), x.dtype == torch.float64, t.numpy(), outer, k, inner,
                                plan.ignore_index, True, plan.weight, None, g.numpy(), scale, 1.0)
            return g, None, None
        # differentiable in ct (a second derivative: the gradient itself does not depend on x)
        dim = 1 if x.ndim >= 2 else 0
        kept = t != plan.ignore_index
        labels = torch.where(kept, t, torch.zeros_like(t))
        coef = -(torch.ones_like(t, dtype=x.dtype) if plan.weight is None
                 else torch.from_numpy(plan.weight).to(x.dtype)[labels])
        coef = torch.where(kept, coef, torch.zeros_like(coef))
        coef = coef * ct.to(x.dtype)
        g = torch.zeros_like(x).scatter(dim, labels.unsqueeze(dim), coef.unsqueeze(dim))
        return g, None, None


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    r"""Binary cross-entropy of probabilities, PyTorch's ``F.binary_cross_entropy``:
    :math:`\ell = -w\,(t \log p + (1-t)\log(1-p))` per element, not clamped (PyTorch clamps the
    logarithms at -100: here ``p = 0`` for ``t = 1`` costs ``inf``). ``weight`` broadcasts to
    ``input``'s shape; ``"mean"`` divides by the number of elements.

    >>> import torch, losskit.torch as lt
    >>> round(float(lt.binary_cross_entropy(torch.tensor([0.5]), torch.tensor([1.0]))), 6)
    0.693147
    """
    reduction = _reduction(reduction, size_average, reduce)
    return _elementwise("binary_cross_entropy", "binary_cross_entropy", input, target, reduction,
                        {"from_logits": False}, weight=weight)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None
                                     ) -> Tensor:
    r"""Binary cross-entropy of logits, PyTorch's ``F.binary_cross_entropy_with_logits``:
    :math:`\ell = w\,(p_w\,t\,\mathrm{softplus}(-x) + (1-t)\,\mathrm{softplus}(x))` per element,
    ``weight`` :math:`w` and ``pos_weight`` :math:`p_w` broadcast to ``input``'s shape (``pos_weight``
    usually one per class, the last axis). Exact for logits of any size.

    >>> import torch, losskit.torch as lt
    >>> x = torch.tensor([-40.0], dtype=torch.float64)    # exact: log1p(e^-40)
    >>> float(lt.binary_cross_entropy_with_logits(x, torch.zeros_like(x)))
    4.248354255291589e-18
    """
    reduction = _reduction(reduction, size_average, reduce)
    return _elementwise("binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits", input,
                        target, reduction, {"from_logits": True}, weight=weight,
                        pos_weight=pos_weight)


def mse_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
             reduce: bool | None = None, reduction: str = "mean", weight: Tensor | None = None
             ) -> Tensor:
    r"""Mean squared error, PyTorch's ``F.mse_loss``: :math:`w (x - y)^2` per element; with
    ``weight`` (``input``'s shape) ``"mean"`` divides by the weights' sum, as PyTorch 2.13.

    >>> import torch, losskit.torch as lt
    >>> float(lt.mse_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])))
    5.0
    """
    reduction = _reduction(reduction, size_average, reduce)
    return _elementwise("mse_loss", "mse_loss", input, target, reduction, {}, weight=weight,
                        weight_same_size=True)


def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
            reduce: bool | None = None, reduction: str = "mean", weight: Tensor | None = None
            ) -> Tensor:
    r"""Mean absolute error, PyTorch's ``F.l1_loss``: :math:`w |x - y|` per element; with ``weight``
    ``"mean"`` divides by the weights' sum, as PyTorch 2.13. Gradient 0 at zero error.

    >>> import torch, losskit.torch as lt
    >>> float(lt.l1_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])))
    2.0
    """
    reduction = _reduction(reduction, size_average, reduce)
    return _elementwise("l1_loss", "l1_loss", input, target, reduction, {}, weight=weight,
                        weight_same_size=True)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    r"""Huber loss, PyTorch's ``F.huber_loss``: :math:`d^2/2` for :math:`|d| \le \delta`, else
    :math:`\delta(|d| - \delta/2)`, :math:`d = x - y`, per element (times ``weight``; ``"mean"``
    divides by the number of elements, as PyTorch).

    >>> import torch, losskit.torch as lt
    >>> float(lt.huber_loss(torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0])))
    1.3125
    """
    reduction = _reduction(reduction)
    return _elementwise("huber_loss", "huber_loss", input, target, reduction, {"delta": delta},
                        weight=weight, weight_same_size=True)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
                   reduce: bool | None = None, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    r"""Smooth L1 loss, PyTorch's ``F.smooth_l1_loss``: :math:`d^2/(2\beta)` for :math:`|d| < \beta`,
    else :math:`|d| - \beta/2`, per element (``beta = 0``: the absolute error).

    >>> import torch, losskit.torch as lt
    >>> float(lt.smooth_l1_loss(torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0])))
    1.3125
    """
    reduction = _reduction(reduction, size_average, reduce)
    return _elementwise("smooth_l1_loss", "smooth_l1_loss", input, target, reduction,
                        {"beta": beta})


def kl_div(input: Tensor, target: Tensor, size_average: bool | None = None,
           reduce: bool | None = None, reduction: str = "mean", log_target: bool = False) -> Tensor:
    r"""KL divergence, PyTorch's ``F.kl_div``: :math:`t(\log t - x)` per element, ``input``
    :math:`x` log-probabilities (``<= 0``), ``target`` probabilities :math:`t` (or log-probabilities
    with ``log_target=True``). ``"batchmean"`` divides the sum by ``input.size(0)`` (the KL
    divergence per sample), ``"mean"`` by the number of elements, as PyTorch. Exact also for nearly
    equal distributions.

    >>> import math, torch, losskit.torch as lt
    >>> x = torch.tensor([[math.log(0.5), math.log(0.5)]], dtype=torch.float64)
    >>> round(float(lt.kl_div(x, torch.tensor([[1.0, 0.0]], dtype=torch.float64), reduction="batchmean")), 6)
    0.693147
    """
    reduction = _reduction(reduction, size_average, reduce, (*_REDUCTIONS, "batchmean"))
    return _elementwise("kl_div", "kl_div", input, target, reduction,
                        {"log_target": bool(log_target)})


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False,
                     size_average: bool | None = None, eps: float = 1e-8,
                     reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    r"""Poisson negative log-likelihood, PyTorch's ``F.poisson_nll_loss``: :math:`e^x - y x`
    (``log_input``) or :math:`x - y\log(x + \varepsilon)` per element, plus Stirling's term for
    :math:`y > 1` with ``full=True``.

    >>> import torch, losskit.torch as lt
    >>> round(float(lt.poisson_nll_loss(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0]))), 6)
    0.859141
    """
    reduction = _reduction(reduction, size_average, reduce)
    return _elementwise("poisson_nll_loss", "poisson_nll_loss", input, target, reduction,
                        {"log_input": bool(log_input), "full": bool(full), "eps": eps})


def gaussian_nll_loss(input: Tensor, target: Tensor, var: Tensor | float, full: bool = False,
                      eps: float = 1e-6, reduction: str = "mean") -> Tensor:
    r"""Gaussian negative log-likelihood, PyTorch's ``F.gaussian_nll_loss``:
    :math:`\tfrac12(\log v + (x - y)^2 / v)` per element (:math:`+\tfrac12\log 2\pi` with ``full``),
    :math:`v = \max(\mathrm{var}, \varepsilon)`. ``var`` has ``input``'s shape, or that shape with
    the last axis 1 or dropped (one variance per sample), or is a number; its gradient is
    PyTorch's (the clamp not differentiated).

    >>> import torch, losskit.torch as lt
    >>> round(float(lt.gaussian_nll_loss(torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([2.0]))), 6)
    1.346574
    """
    fn = "gaussian_nll_loss"
    reduction = _reduction(reduction)
    input = _tensor("input", input)
    if isinstance(var, int | float) and not isinstance(var, bool):
        var = torch.full_like(input, float(var))
    var = _tensor("var", var)
    if var.ndim == input.ndim - 1 and tuple(var.shape) == tuple(input.shape[:-1]):
        var = var.unsqueeze(-1)  # one variance per sample, as PyTorch accepts
    try:
        var = var.expand(input.shape)
    except RuntimeError:
        raise ValueError(f"{fn}: var must have input's shape {tuple(input.shape)}, that shape with "
                         f"the last axis 1 or dropped, or be a number; found {tuple(var.shape)}"
                         ) from None
    return _elementwise("gaussian_nll_loss", fn, input, target, reduction,
                        {"full": bool(full), "eps": eps}, var=var.to(input.dtype))


def soft_margin_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
                     reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    r"""Soft margin loss, PyTorch's ``F.soft_margin_loss``: :math:`\log(1 + e^{-y x})` per element,
    labels ``y`` -1 or 1 (others: ``ValueError``).

    >>> import torch, losskit.torch as lt
    >>> round(float(lt.soft_margin_loss(torch.tensor([0.0]), torch.tensor([1.0]))), 6)
    0.693147
    """
    reduction = _reduction(reduction, size_average, reduce)
    return _elementwise("soft_margin_loss", "soft_margin_loss", input, target, reduction, {})


def multi_margin_loss(input: Tensor, target: Tensor, p: int = 1, margin: float = 1.0,
                      weight: Tensor | None = None, size_average: bool | None = None,
                      reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    r"""Multi-class margin loss, PyTorch's ``F.multi_margin_loss``:
    :math:`\frac{w_y}{C}\sum_{i \ne y}\max(0, \mathrm{margin} - x_y + x_i)^p` per sample; ``input``
    ``(C,)`` or ``(N, C)``, ``target`` ``()`` or ``(N,)``.

    >>> import torch, losskit.torch as lt
    >>> round(float(lt.multi_margin_loss(torch.tensor([[1.0, 0.5, -1.0]]), torch.tensor([0]))), 6)
    0.166667
    """
    fn = "multi_margin_loss"
    reduction = _reduction(reduction, size_average, reduce)
    input = _tensor("input", input)
    _tensor("target", target, floating=False)
    if input.ndim > 2:
        raise ValueError(f"{fn}: input must have shape (C,) or (N, C); found {tuple(input.shape)}")
    _check_index_target(fn, input, target)
    w = _class_weight(fn, weight, int(input.shape[-1]))
    extras = {} if w is None else {"class_weight": w}
    return _call(fn, input, target, reduction, {"p": p, "margin": margin}, extras)


def multilabel_margin_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
                           reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    r"""Multi-label margin loss, PyTorch's ``F.multilabel_margin_loss``: ``target`` holds each
    sample's class indices followed by -1 padding (``input``'s shape, integers);
    :math:`\frac1C\sum_j\sum_{i \notin Y}\max(0, 1 - (x_{y_j} - x_i))` per sample.

    >>> import torch, losskit.torch as lt
    >>> x, target = torch.tensor([[0.1, 0.2, 0.4]]), torch.tensor([[1, -1, -1]])
    >>> round(float(lt.multilabel_margin_loss(x, target)), 6)
    0.7
    """
    fn = "multilabel_margin_loss"
    reduction = _reduction(reduction, size_average, reduce)
    input = _tensor("input", input)
    _tensor("target", target, floating=False)
    if input.ndim not in (1, 2):
        raise ValueError(f"{fn}: input must have shape (C,) or (N, C); found {tuple(input.shape)}")
    if tuple(target.shape) != tuple(input.shape) or target.is_floating_point():
        raise ValueError(f"{fn}: target must be integer class indices of input's shape "
                         f"{tuple(input.shape)}; found {target.dtype} of shape {tuple(target.shape)}")
    return _call(fn, input, target.to(input.dtype), reduction, {})


def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                size_average: bool | None = None, reduce: bool | None = None,
                                reduction: str = "mean") -> Tensor:
    r"""Multi-label soft margin loss, PyTorch's ``F.multilabel_soft_margin_loss``:
    :math:`\frac1C\sum_i w_i\,(y_i\,\mathrm{softplus}(-x_i) + (1-y_i)\,\mathrm{softplus}(x_i))` per
    sample; ``input`` and ``target`` ``(N, C)``, ``weight`` ``(C,)``.

    >>> import torch, losskit.torch as lt
    >>> x, target = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    >>> round(float(lt.multilabel_soft_margin_loss(x, target)), 6)
    0.693147
    """
    fn = "multilabel_soft_margin_loss"
    reduction = _reduction(reduction, size_average, reduce)
    input = _tensor("input", input)
    target = _tensor("target", target)
    _same_shape(fn, input, target)
    _no_grad_needed(fn, "target", target)
    if input.ndim == 0:
        raise ValueError(f"{fn}: input must have a class axis; found a scalar")
    w = _class_weight(fn, weight, int(input.shape[-1]))
    extras = {} if w is None else {"class_weight": w}
    return _call(fn, input, target.to(input.dtype), reduction, {}, extras)


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0,
                        p: float = 2, eps: float = 1e-6, swap: bool = False,
                        size_average: bool | None = None, reduce: bool | None = None,
                        reduction: str = "mean") -> Tensor:
    r"""Triplet margin loss, PyTorch's ``F.triplet_margin_loss``:
    :math:`\max(0, d(a, p) - d(a, n) + \mathrm{margin})` per triplet, :math:`d(x, y) = \|x - y +
    \varepsilon\|_p`; with ``swap``, :math:`d(a, n)` is replaced by :math:`d(p, n)` where smaller.
    ``anchor``, ``positive``, ``negative`` ``(N, D)`` or ``(D,)``; all three are differentiated
    (analytic gradients, exact for ``p`` 1 and 2: double-length distances).

    >>> import torch, losskit.torch as lt
    >>> a, pos, neg = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]), torch.tensor([[6.0, 8.0]])
    >>> float(lt.triplet_margin_loss(a, pos, neg, margin=6.0, eps=0.0))
    1.0
    """
    fn = "triplet_margin_loss"
    reduction = _reduction(reduction, size_average, reduce)
    if not margin > 0:
        raise ValueError(f"{fn}: margin must be greater than 0, got {margin}")
    return _triplet(fn, anchor, positive, negative, reduction,
                    {"margin": margin, "p": p, "eps": eps, "swap": bool(swap),
                     "eps_placement": "difference", "distance_function": "pnorm"})


def _triplet(fn: str, anchor: Any, positive: Any, negative: Any, reduction: str,
             options: dict[str, Any]) -> Tensor:
    anchor = _tensor("anchor", anchor)
    positive = _tensor("positive", positive)
    negative = _tensor("negative", negative)
    if anchor.ndim not in (1, 2):
        raise ValueError(f"{fn}: anchor must have shape (N, D) or (D,); found {tuple(anchor.shape)}")
    for name, other in (("positive", positive), ("negative", negative)):
        if tuple(other.shape) != tuple(anchor.shape):
            raise ValueError(f"{fn}: {name} must have anchor's shape {tuple(anchor.shape)}; found "
                             f"{tuple(other.shape)}")
    return _call("triplet_margin_loss", anchor, positive.to(anchor.dtype), reduction, options,
                 {"negative": negative.to(anchor.dtype)})


def _known_distance(distance_function: Any) -> dict[str, Any] | None:
    """The losskit options of a distance losskit computes itself (PyTorch's default
    ``pairwise_distance``, or an ``nn.PairwiseDistance`` module), else None."""
    if distance_function is None or distance_function is F.pairwise_distance:
        return {"p": 2.0, "eps": 1e-6, "distance_function": "pnorm"}
    if isinstance(distance_function, nn.PairwiseDistance) and not distance_function.keepdim:
        return {"p": float(distance_function.norm), "eps": float(distance_function.eps),
                "distance_function": "pnorm"}
    return None


def triplet_margin_with_distance_loss(anchor: Tensor, positive: Tensor, negative: Tensor, *,
                                      distance_function: Callable[[Tensor, Tensor], Tensor] | None
                                      = None, margin: float = 1.0, swap: bool = False,
                                      reduction: str = "mean") -> Tensor:
    r"""Triplet margin loss with a distance function, PyTorch's
    ``F.triplet_margin_with_distance_loss``: :math:`\max(0, D(a, p) - D(a, n) + \mathrm{margin})`.

    The distance: ``None`` (PyTorch's default, ``pairwise_distance``), ``F.pairwise_distance`` or
    an ``nn.PairwiseDistance(p, eps)`` module are computed by losskit (the triplet kernel, exact,
    analytic gradients for the three inputs). Any other callable (``1 - F.cosine_similarity(x, y)``,
    a learned metric) is used as it is: its distances are PyTorch's computation, differentiated by
    PyTorch's autograd, and the hinge :math:`\max(0, D_+ - D_- + \mathrm{margin})` is losskit's
    margin ranking (``margin_ranking_loss(D_-, D_+, 1)``, exact also where it cancels). ``margin``
    must be > 0, as PyTorch requires.

    >>> import torch, losskit.torch as lt
    >>> a, pos, neg = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]), torch.tensor([[6.0, 8.0]])
    >>> l1 = lambda x, y: (x - y).abs().sum(-1)
    >>> float(lt.triplet_margin_with_distance_loss(a, pos, neg, distance_function=l1, margin=8.0))
    1.0
    """
    fn = "triplet_margin_with_distance_loss"
    reduction = _reduction(reduction)
    if not margin > 0:
        raise ValueError(f"{fn}: margin must be greater than 0, got {margin}")
    known = _known_distance(distance_function)
    if known is not None:
        return _triplet(fn, anchor, positive, negative, reduction,
                        {"margin": margin, "swap": bool(swap), "eps_placement": "difference", **known})
    if not callable(distance_function):
        raise TypeError(f"{fn}: distance_function must be None or a callable (x, y) -> distances; "
                        f"found {type(distance_function).__name__}")
    d_pos = distance_function(anchor, positive)
    d_neg = distance_function(anchor, negative)
    if swap:
        d_neg = torch.minimum(d_neg, distance_function(positive, negative))
    return margin_ranking_loss(d_neg, d_pos, torch.ones_like(d_pos), margin=margin,
                               reduction=reduction)


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0,
                          size_average: bool | None = None, reduce: bool | None = None,
                          reduction: str = "mean") -> Tensor:
    r"""Cosine embedding loss, PyTorch's ``F.cosine_embedding_loss``: :math:`1 - \cos(x_1, x_2)` for
    ``target`` 1, :math:`\max(0, \cos(x_1, x_2) - \mathrm{margin})` for -1 (other labels:
    ``ValueError``). ``input1``, ``input2`` ``(N, D)`` or ``(D,)``, ``target`` ``(N,)`` or ``()``;
    both inputs are differentiated. Exact for nearly parallel vectors (double-length dot products);
    PyTorch adds 1e-12 to the squared norms.

    >>> import torch, losskit.torch as lt
    >>> x1, x2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    >>> float(lt.cosine_embedding_loss(x1, x2, torch.tensor([1.0])))
    1.0
    """
    fn = "cosine_embedding_loss"
    reduction = _reduction(reduction, size_average, reduce)
    input1 = _tensor("input1", input1)
    input2 = _tensor("input2", input2)
    target = _tensor("target", target, floating=False)
    if input1.ndim not in (1, 2) or tuple(input2.shape) != tuple(input1.shape):
        raise ValueError(f"{fn}: input1 and input2 must have one shape, (N, D) or (D,); found "
                         f"{tuple(input1.shape)} and {tuple(input2.shape)}")
    if tuple(target.shape) != tuple(input1.shape[:-1]):
        raise ValueError(f"{fn}: target must have shape {tuple(input1.shape[:-1])} (one label per "
                         f"pair); found {tuple(target.shape)}")
    _no_grad_needed(fn, "target", target)
    return _call(fn, input1, target.to(input1.dtype), reduction, {"margin": margin},
                 {"x2": input2.to(input1.dtype)})


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0,
                        size_average: bool | None = None, reduce: bool | None = None,
                        reduction: str = "mean") -> Tensor:
    r"""Margin ranking loss, PyTorch's ``F.margin_ranking_loss``:
    :math:`\max(0, -y (x_1 - x_2) + \mathrm{margin})` per element, labels ``y`` -1 or 1 (others:
    ``ValueError``); ``input1``, ``input2`` and ``target`` of one shape (not broadcast). Both inputs
    are differentiated; the difference is exact (TwoSum), so a hinge that cancels keeps its digits.

    >>> import torch, losskit.torch as lt
    >>> float(lt.margin_ranking_loss(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([1.0])))
    1.0
    """
    fn = "margin_ranking_loss"
    reduction = _reduction(reduction, size_average, reduce)
    input1 = _tensor("input1", input1)
    input2 = _tensor("input2", input2)
    if tuple(input2.shape) != tuple(input1.shape):
        raise ValueError(f"{fn}: input2 must have input1's shape {tuple(input1.shape)}; found "
                         f"{tuple(input2.shape)} (losskit does not broadcast)")
    return _elementwise(fn, fn, input1, target, reduction, {"margin": margin},
                        x2=input2.to(input1.dtype))


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    r"""Hinge embedding loss, PyTorch's ``F.hinge_embedding_loss``: :math:`x` for ``target`` 1,
    :math:`\max(0, \mathrm{margin} - x)` for -1 (other labels: ``ValueError``), per element.

    >>> import torch, losskit.torch as lt
    >>> float(lt.hinge_embedding_loss(torch.tensor([0.3, 0.25]), torch.tensor([1.0, -1.0])))
    0.525
    """
    fn = "hinge_embedding_loss"
    reduction = _reduction(reduction, size_average, reduce)
    return _elementwise(fn, fn, input, target, reduction, {"margin": margin})


def _lengths(fn: str, name: str, value: Any, n: int) -> Tensor:
    if isinstance(value, list | tuple | int) and not isinstance(value, bool):
        value = torch.tensor(value, dtype=torch.int64)
    if not isinstance(value, Tensor):
        raise TypeError(f"{fn}: {name} must be a tensor or a sequence of ints; found "
                        f"{type(value).__name__}")
    if value.is_floating_point() or value.is_complex():
        raise TypeError(f"{fn}: {name} must hold integers; found {value.dtype}")
    value = value.reshape(-1) if value.ndim == 0 else value
    if tuple(value.shape) != (n,):
        raise ValueError(f"{fn}: {name} must have shape ({n},), one length per sequence; found "
                         f"{tuple(value.shape)}")
    return value


def ctc_loss(log_probs: Tensor, targets: Tensor, input_lengths: Tensor, target_lengths: Tensor,
             blank: int = 0, reduction: str = "mean", zero_infinity: bool = False) -> Tensor:
    r"""Connectionist temporal classification, PyTorch's ``F.ctc_loss``: minus the log-probability of
    each target over every alignment, exact (double-length forward-backward recursions).

    ``log_probs`` ``(T, N, C)`` (or ``(T, C)`` unbatched) log-probabilities; ``targets`` padded
    ``(N, S)`` or concatenated 1-D (``sum(target_lengths)``); ``input_lengths`` and
    ``target_lengths`` ``(N,)`` tensors or sequences of ints. ``"mean"`` divides each loss by its
    target length (at least 1) and averages over the batch, ``"sum"`` adds, ``"none"`` gives ``(N,)``;
    ``zero_infinity`` gives impossible alignments 0 and a zero gradient. The gradient with respect to
    ``log_probs`` is the exact :math:`-\gamma` (PyTorch's is :math:`e^{x} - \gamma`, which assumes
    log-softmax inputs; after a ``log_softmax`` both give the logits the same gradient).

    >>> import math, torch, losskit.torch as lt
    >>> lp = torch.log(torch.tensor([[[0.25, 0.75]]], dtype=torch.float64))  # T = 1, N = 1, C = 2
    >>> round(float(lt.ctc_loss(lp, torch.tensor([[1]]), [1], [1])), 12) == round(-math.log(0.75), 12)
    True
    """
    fn = "ctc_loss"
    reduction = _reduction(reduction)
    log_probs = _tensor("log_probs", log_probs)
    _tensor("targets", targets, floating=False)
    unbatched = log_probs.ndim == 2
    if unbatched:
        log_probs = log_probs.unsqueeze(1)
        targets = targets.unsqueeze(0)
    if log_probs.ndim != 3:
        raise ValueError(f"{fn}: log_probs must have shape (T, N, C) or (T, C); found "
                         f"{tuple(log_probs.shape)}")
    n = int(log_probs.shape[1])
    input_lengths = _lengths(fn, "input_lengths", input_lengths, n)
    target_lengths = _lengths(fn, "target_lengths", target_lengths, n)
    if targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"{fn}: targets must hold integer class indices; found {targets.dtype}")
    concatenated = targets.ndim == 1
    if not concatenated and (targets.ndim != 2 or int(targets.shape[0]) != n):
        raise ValueError(f"{fn}: targets must be padded (N={n}, S) or concatenated 1-D; found "
                         f"{tuple(targets.shape)}")
    eager = _ctc_eager(log_probs, targets, input_lengths, target_lengths, blank, reduction,
                       bool(zero_infinity), concatenated)
    if eager is not None:
        return eager[0] if unbatched and reduction == "none" else eager
    x = log_probs.transpose(0, 1)  # losskit's (N, T, C)
    options = {"blank": blank, "from_logits": False, "zero_infinity": bool(zero_infinity),
               "length_normalize": reduction == "mean"}
    extras = {"input_lengths": input_lengths.to(x.device), "label_lengths": target_lengths.to(x.device)}
    out = _call(fn, x, targets, reduction, options, extras, concatenated=concatenated)
    return out[0] if unbatched and reduction == "none" else out


_CTC_SECOND = ("ctc_loss: second derivatives (create_graph=True, or differentiating the gradient) are "
               "not supported: the double-length recursion has no derivative of its own; first-order "
               "gradients are exact")


def _ctc_eager(log_probs: Tensor, targets: Tensor, input_lengths: Tensor, target_lengths: Tensor,
               blank: int, reduction: str, zero_infinity: bool, concatenated: bool) -> Tensor | None:
    """``ctc_loss`` on plain CPU float32/float64 tensors (``log_probs`` ``(T, N, C)``) without the
    operator's per-call machinery: the checks of ``_core.prepare_events`` (the loss's domain and
    ``check_values``) on NumPy views, then the loss's own kernel (``sequence._ctc``: for float32 the
    compiled plain float64 recursion with its per-row bound, double length for the rows it flags;
    for float64 the double-length recursion) on the ``(N, T*C)`` float64 rows the general path
    would give it, and the gradient scaled and written back in ``log_probs``' layout in one pass
    (:class:`_Ready` hands it over in backward). None: the general path (other tensors, traced or
    transformed calls, empty shapes)."""
    if (log_probs.dtype not in _QUICK_DTYPES or not _eager_context()
            or not all(_plain(a) for a in (log_probs, targets, input_lengths, target_lengths))):
        return None
    steps, n, classes = (int(s) for s in log_probs.shape)
    if not (steps and n and classes):
        return None
    defn = _registry._DEFINITIONS["ctc"]
    opts = _normalised(defn, {"blank": blank, "from_logits": False, "zero_infinity": zero_infinity,
                              "length_normalize": reduction == "mean"})
    if concatenated:
        targets = _pad_targets(targets, target_lengths, int(opts["blank"]))
    if targets.ndim != 2 or not int(targets.shape[1]):
        return None
    from .losses import sequence

    tn, il, ll = targets.numpy(), input_lengths.numpy(), target_lengths.numpy()
    x = np.ascontiguousarray(log_probs.detach().numpy().transpose(1, 0, 2), dtype=np.float64)
    x = x.reshape(n, steps * classes)
    try:
        _core._check_domain(defn, np, tn, x, opts)
        if defn.check_values is not None:
            defn.check_values(np, tn, x, event_shape=(steps, classes), **opts, input_lengths=il,
                              label_lengths=ll)
    except ValueError as error:
        raise ValueError(_pytorch_words("ctc_loss", str(error))) from None
    grad = log_probs.requires_grad and torch.is_grad_enabled()
    dtype = _QUICK_DTYPES[log_probs.dtype][1]
    with _core._quiet_numpy():
        values, g = sequence._ctc(np, tn, x, grad=grad, event_shape=(steps, classes),
                                  widened=dtype == np.float32, input_lengths=il.astype(np.float64),
                                  label_lengths=ll.astype(np.float64), **opts)
    c = 1.0 / n if reduction == "mean" else 1.0
    if reduction == "none":
        value = torch.from_numpy(np.asarray(values, dtype=dtype))
    else:
        value = torch.from_numpy(np.asarray(float(np.sum(values)) * c, dtype=dtype))
    if not grad:
        return value
    out = np.empty((steps, n, classes), dtype=dtype)  # log_probs' layout: no copy in autograd
    # (the product in float64, rounded once into out, as _core scales a gradient)
    np.multiply(np.asarray(g).reshape(n, steps, classes).transpose(1, 0, 2), np.float64(c), out=out,
                casting="same_kind", dtype=np.float64)
    result: Tensor = _Ready.apply(log_probs, (value, torch.from_numpy(out),
                                              (1, n, 1) if reduction == "none" else None, _CTC_SECOND))
    return result


# ---------------------------------------------------------------------------------- module twins


class _Loss(nn.Module):
    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> None:
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = nn._reduction.legacy_get_string(size_average, reduce)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class _WeightedLoss(_Loss):
    weight: Tensor | None

    def __init__(self, weight: Tensor | None = None, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class CrossEntropyLoss(_WeightedLoss):
    """Twin of ``torch.nn.CrossEntropyLoss``; see :func:`cross_entropy`."""

    def __init__(self, weight: Tensor | None = None, size_average: Any = None, ignore_index: int = -100,
                 reduce: Any = None, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Twin of ``torch.nn.NLLLoss``; see :func:`nll_loss`."""

    def __init__(self, weight: Tensor | None = None, size_average: Any = None, ignore_index: int = -100,
                 reduce: Any = None, reduction: str = "mean") -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                        reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """Twin of ``torch.nn.BCELoss``; see :func:`binary_cross_entropy`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Twin of ``torch.nn.BCEWithLogitsLoss``; see :func:`binary_cross_entropy_with_logits`."""

    weight: Tensor | None
    pos_weight: Tensor | None

    def __init__(self, weight: Tensor | None = None, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean", pos_weight: Tensor | None = None) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                pos_weight=self.pos_weight)


class MSELoss(_Loss):
    """Twin of ``torch.nn.MSELoss``; see :func:`mse_loss`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Twin of ``torch.nn.L1Loss``; see :func:`l1_loss`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return l1_loss(input, target, reduction=self.reduction)


class HuberLoss(_Loss):
    """Twin of ``torch.nn.HuberLoss``; see :func:`huber_loss`."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class SmoothL1Loss(_Loss):
    """Twin of ``torch.nn.SmoothL1Loss``; see :func:`smooth_l1_loss`."""

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                 beta: float = 1.0) -> None:
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class KLDivLoss(_Loss):
    """Twin of ``torch.nn.KLDivLoss``; see :func:`kl_div`."""

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                 log_target: bool = False) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class PoissonNLLLoss(_Loss):
    """Twin of ``torch.nn.PoissonNLLLoss``; see :func:`poisson_nll_loss`."""

    def __init__(self, log_input: bool = True, full: bool = False, size_average: Any = None,
                 eps: float = 1e-8, reduce: Any = None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_input, self.full, self.eps = log_input, full, eps

    def forward(self, log_input: Tensor, target: Tensor) -> Tensor:
        return poisson_nll_loss(log_input, target, log_input=self.log_input, full=self.full,
                                eps=self.eps, reduction=self.reduction)


class GaussianNLLLoss(_Loss):
    """Twin of ``torch.nn.GaussianNLLLoss``; see :func:`gaussian_nll_loss`."""

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.full, self.eps = full, eps

    def forward(self, input: Tensor, target: Tensor, var: Tensor | float) -> Tensor:
        return gaussian_nll_loss(input, target, var, full=self.full, eps=self.eps,
                                 reduction=self.reduction)


class SoftMarginLoss(_Loss):
    """Twin of ``torch.nn.SoftMarginLoss``; see :func:`soft_margin_loss`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return soft_margin_loss(input, target, reduction=self.reduction)


class MultiMarginLoss(_WeightedLoss):
    """Twin of ``torch.nn.MultiMarginLoss``; see :func:`multi_margin_loss`."""

    def __init__(self, p: int = 1, margin: float = 1.0, weight: Tensor | None = None,
                 size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.p, self.margin = p, margin

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return multi_margin_loss(input, target, p=self.p, margin=self.margin, weight=self.weight,
                                 reduction=self.reduction)


class MultiLabelMarginLoss(_Loss):
    """Twin of ``torch.nn.MultiLabelMarginLoss``; see :func:`multilabel_margin_loss`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return multilabel_margin_loss(input, target, reduction=self.reduction)


class MultiLabelSoftMarginLoss(_WeightedLoss):
    """Twin of ``torch.nn.MultiLabelSoftMarginLoss``; see :func:`multilabel_soft_margin_loss`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return multilabel_soft_margin_loss(input, target, weight=self.weight,
                                           reduction=self.reduction)


class NLLLoss2d(NLLLoss):
    """Twin of ``torch.nn.NLLLoss2d`` (deprecated in PyTorch: ``NLLLoss`` on ``(N, C, H, W)``)."""


class TripletMarginLoss(_Loss):
    """Twin of ``torch.nn.TripletMarginLoss``; see :func:`triplet_margin_loss`."""

    def __init__(self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6, swap: bool = False,
                 size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        if margin <= 0:
            raise ValueError(f"TripletMarginLoss: expected margin to be greater than 0, got {margin} "
                             "instead")
        self.margin, self.p, self.eps, self.swap = margin, p, eps, swap

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        return triplet_margin_loss(anchor, positive, negative, margin=self.margin, p=self.p,
                                   eps=self.eps, swap=self.swap, reduction=self.reduction)


class TripletMarginWithDistanceLoss(_Loss):
    """Twin of ``torch.nn.TripletMarginWithDistanceLoss``; see
    :func:`triplet_margin_with_distance_loss` (which distances losskit computes itself)."""

    def __init__(self, *, distance_function: Callable[[Tensor, Tensor], Tensor] | None = None,
                 margin: float = 1.0, swap: bool = False, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if margin <= 0:
            raise ValueError(f"TripletMarginWithDistanceLoss: expected margin to be greater than 0, "
                             f"got {margin} instead")
        self.distance_function = distance_function
        self.margin, self.swap = margin, swap

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        return triplet_margin_with_distance_loss(anchor, positive, negative,
                                                 distance_function=self.distance_function,
                                                 margin=self.margin, swap=self.swap,
                                                 reduction=self.reduction)


class CosineEmbeddingLoss(_Loss):
    """Twin of ``torch.nn.CosineEmbeddingLoss``; see :func:`cosine_embedding_loss`."""

    def __init__(self, margin: float = 0.0, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input1: Tensor, input2: Tensor, target: Tensor) -> Tensor:
        return cosine_embedding_loss(input1, input2, target, margin=self.margin,
                                     reduction=self.reduction)


class MarginRankingLoss(_Loss):
    """Twin of ``torch.nn.MarginRankingLoss``; see :func:`margin_ranking_loss`."""

    def __init__(self, margin: float = 0.0, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input1: Tensor, input2: Tensor, target: Tensor) -> Tensor:
        return margin_ranking_loss(input1, input2, target, margin=self.margin,
                                   reduction=self.reduction)


class HingeEmbeddingLoss(_Loss):
    """Twin of ``torch.nn.HingeEmbeddingLoss``; see :func:`hinge_embedding_loss`."""

    def __init__(self, margin: float = 1.0, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return hinge_embedding_loss(input, target, margin=self.margin, reduction=self.reduction)


class CTCLoss(_Loss):
    """Twin of ``torch.nn.CTCLoss``; see :func:`ctc_loss`."""

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False) -> None:
        super().__init__(reduction=reduction)
        self.blank, self.zero_infinity = blank, zero_infinity

    def forward(self, log_probs: Tensor, targets: Tensor, input_lengths: Tensor,
                target_lengths: Tensor) -> Tensor:
        return ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank,
                        self.reduction, self.zero_infinity)
