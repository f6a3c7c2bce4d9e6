"""losskit.torch: the PyTorch twins against torch.nn.functional and torch.nn (values and gradients,
every option and reduction), torch.compile(fullgraph=True), torch.func, double backward, gradcheck,
and the messages for bad input. Expected values come from PyTorch itself (or, where PyTorch loses
accuracy, from a formula written here)."""

from __future__ import annotations

import inspect
import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import losskit.torch as lt  # noqa: E402

SHAPE = (6, 5)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _labels(g, n=SHAPE[0], c=SHAPE[1], shape=None):
    return torch.randint(0, c, shape or (n,), generator=g)


def _weight(g, c=SHAPE[1]):
    return torch.rand(c, generator=g, dtype=torch.float64) + 0.2


def _inputs(name, g, dtype):
    """(input, target, extra keyword arguments) for twin ``name`` on SHAPE (or the given layout)."""
    x = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    if name in ("cross_entropy", "multi_margin_loss"):
        return x * 2, _labels(g)
    if name == "cross_entropy_probs":
        return x * 2, torch.softmax(torch.randn(SHAPE, generator=g, dtype=torch.float64), 1)
    if name == "cross_entropy_kdim":
        return torch.randn(3, 4, 2, 2, generator=g, dtype=torch.float64), _labels(g, shape=(3, 2, 2), c=4)
    if name == "nll_loss":
        return torch.log_softmax(x, 1), _labels(g)
    if name == "nll_loss_kdim":
        return (torch.log_softmax(torch.randn(3, 4, 2, 2, generator=g, dtype=torch.float64), 1),
                _labels(g, shape=(3, 2, 2), c=4))
    if name == "binary_cross_entropy":
        return torch.rand(SHAPE, generator=g, dtype=torch.float64) * 0.9 + 0.05, \
            torch.rand(SHAPE, generator=g, dtype=torch.float64)
    if name in ("binary_cross_entropy_with_logits", "multilabel_soft_margin_loss"):
        return x * 3, torch.rand(SHAPE, generator=g, dtype=torch.float64)
    if name == "kl_div":
        return torch.log_softmax(x, 1), torch.softmax(torch.randn(SHAPE, generator=g, dtype=torch.float64), 1)
    if name == "poisson_nll_loss":
        return x, torch.poisson(torch.rand(SHAPE, generator=g, dtype=torch.float64) * 4, generator=g)
    if name == "soft_margin_loss":
        return x * 2, torch.randint(0, 2, SHAPE, generator=g).double() * 2 - 1
    if name == "multilabel_margin_loss":
        target = torch.full(SHAPE, -1, dtype=torch.int64)
        for i in range(SHAPE[0]):
            k = i % 3 + 1
            target[i, :k] = torch.randperm(SHAPE[1], generator=g)[:k]
        return x * 2, target
    return x, torch.randn(SHAPE, generator=g, dtype=torch.float64)  # regression


def _cast(a, dtype):
    return a.to(dtype) if a.is_floating_point() else a


# (twin, input kind, options): every option of every twin, each under every reduction below
CASES = [
    ("cross_entropy", "cross_entropy", {}),
    ("cross_entropy", "cross_entropy", {"label_smoothing": 0.2}),
    ("cross_entropy", "cross_entropy", {"weight": "w"}),
    ("cross_entropy", "cross_entropy", {"weight": "w", "label_smoothing": 0.1}),
    ("cross_entropy", "cross_entropy", {"ignore_index": 2}),
    ("cross_entropy", "cross_entropy", {"ignore_index": -100, "ignore_some": True, "weight": "w"}),
    ("cross_entropy", "cross_entropy", {"ignore_index": 1, "label_smoothing": 0.3}),
    ("cross_entropy", "cross_entropy_kdim", {"weight": "w4"}),
    ("cross_entropy", "cross_entropy_probs", {}),
    ("cross_entropy", "cross_entropy_probs", {"weight": "w", "label_smoothing": 0.1}),
    ("nll_loss", "nll_loss", {}),
    ("nll_loss", "nll_loss", {"weight": "w", "ignore_index": 3}),
    ("nll_loss", "nll_loss_kdim", {"weight": "w4"}),
    ("binary_cross_entropy", "binary_cross_entropy", {}),
    ("binary_cross_entropy", "binary_cross_entropy", {"weight": "w"}),
    ("binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits", {}),
    ("binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits", {"weight": "full"}),
    ("binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits", {"pos_weight": "w"}),
    ("binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits",
     {"pos_weight": "w", "weight": "w"}),
    ("mse_loss", "mse_loss", {}),
    ("mse_loss", "mse_loss", {"weight": "full"}),
    ("l1_loss", "l1_loss", {}),
    ("l1_loss", "l1_loss", {"weight": "full"}),
    ("huber_loss", "huber_loss", {"delta": 0.5}),
    ("huber_loss", "huber_loss", {"weight": "full"}),
    ("smooth_l1_loss", "smooth_l1_loss", {"beta": 0.5}),
    ("smooth_l1_loss", "smooth_l1_loss", {"beta": 0.0}),
    ("kl_div", "kl_div", {}),
    ("kl_div", "kl_div", {"log_target": True}),
    ("poisson_nll_loss", "poisson_nll_loss", {}),
    ("poisson_nll_loss", "poisson_nll_loss", {"log_input": False, "full": True, "eps": 1e-3}),
    ("soft_margin_loss", "soft_margin_loss", {}),
    ("multi_margin_loss", "multi_margin_loss", {}),
    ("multi_margin_loss", "multi_margin_loss", {"p": 2, "margin": 0.7, "weight": "w"}),
    ("multilabel_margin_loss", "multilabel_margin_loss", {}),
    ("multilabel_soft_margin_loss", "multilabel_soft_margin_loss", {}),
    ("multilabel_soft_margin_loss", "multilabel_soft_margin_loss", {"weight": "w"}),
]


def _resolve(kind, options, g, x, t):
    opts = dict(options)
    if opts.pop("ignore_some", False):
        t = t.clone()
        t[::2] = opts["ignore_index"]
    elif "ignore_index" in opts and kind in ("cross_entropy", "nll_loss"):
        t = t.clone()
        t[1] = opts["ignore_index"]
    for key in ("weight", "pos_weight"):
        if opts.get(key) == "w":
            opts[key] = _weight(g)
        elif opts.get(key) == "w4":
            opts[key] = _weight(g, 4)
        elif opts.get(key) == "full":
            opts[key] = torch.rand(SHAPE, generator=g, dtype=torch.float64)
    if kind == "kl_div" and opts.get("log_target"):
        t = torch.log(t)
    return opts, t


def _compare(ours, theirs, x, t, opts, dtype, rtol, atol):
    xa = x.to(dtype).detach().requires_grad_(True)
    xb = x.to(dtype).detach().requires_grad_(True)
    tt = _cast(t, dtype)
    o = {k: (_cast(v, dtype) if isinstance(v, torch.Tensor) else v) for k, v in opts.items()}
    a, b = ours(xa, tt, **o), theirs(xb, tt, **o)
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    r = torch.rand(a.shape, generator=_gen(5), dtype=torch.float64).to(dtype) + 0.5  # a chain rule
    (a * r).sum().backward()
    (b * r).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{'-'.join(c[2])}")
def test_twin_matches_pytorch(case, dtype, reduction):
    name, kind, options = case
    g = _gen(1)
    x, t = _inputs(kind, g, dtype)
    opts, t = _resolve(kind, options, g, x, t)
    if kind == "poisson_nll_loss" and not opts.get("log_input", True):
        x = x.abs()  # rates
    tol = (1e-10, 1e-12) if dtype == torch.float64 else (2e-5, 1e-6)
    _compare(getattr(lt, name), getattr(F, name), x, t, {**opts, "reduction": reduction}, dtype, *tol)


@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_batchmean(log_target):
    x, t = _inputs("kl_div", _gen(2), torch.float64)
    t = torch.log(t) if log_target else t
    _compare(lt.kl_div, F.kl_div, x, t, {"reduction": "batchmean", "log_target": log_target},
             torch.float32, 2e-5, 1e-6)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("var_shape", ["full", "last1", "dropped", "number"])
def test_gaussian_nll_values_and_both_gradients(var_shape, reduction):
    g = _gen(3)
    x, t = _inputs("gaussian_nll_loss", g, torch.float64)
    var = torch.rand(SHAPE, generator=g, dtype=torch.float64) + 0.05
    var[0, 0] = 1e-9  # below eps: clamped in the value, the gradient passes through as in PyTorch
    var = {"full": var, "last1": var[:, :1], "dropped": var[:, 0], "number": None}[var_shape]
    for full in (False, True):
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        args = []
        if var is not None:
            va, vb = var.clone().requires_grad_(True), var.clone().requires_grad_(True)
            args = [va, vb]
        a = lt.gaussian_nll_loss(xa, t, args[0] if args else 0.5, full=full, reduction=reduction)
        b = F.gaussian_nll_loss(xb, t, args[1] if args else 0.5, full=full, reduction=reduction)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        a.sum().backward()
        b.sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
        if args:
            torch.testing.assert_close(args[0].grad, args[1].grad, rtol=1e-10, atol=1e-12)


MODULES = [
    ("CrossEntropyLoss", {"weight": "w", "ignore_index": 1, "label_smoothing": 0.1}, "cross_entropy"),
    ("NLLLoss", {"weight": "w"}, "nll_loss"),
    ("BCELoss", {"weight": "w"}, "binary_cross_entropy"),
    ("BCEWithLogitsLoss", {"pos_weight": "w", "reduction": "sum"}, "binary_cross_entropy_with_logits"),
    ("MSELoss", {"reduction": "sum"}, "mse_loss"),
    ("L1Loss", {}, "l1_loss"),
    ("HuberLoss", {"delta": 0.3}, "huber_loss"),
    ("SmoothL1Loss", {"beta": 0.3}, "smooth_l1_loss"),
    ("KLDivLoss", {"reduction": "batchmean"}, "kl_div"),
    ("PoissonNLLLoss", {"log_input": False}, "poisson_nll_loss"),
    ("SoftMarginLoss", {}, "soft_margin_loss"),
    ("MultiMarginLoss", {"p": 2, "weight": "w"}, "multi_margin_loss"),
    ("MultiLabelMarginLoss", {}, "multilabel_margin_loss"),
    ("MultiLabelSoftMarginLoss", {"weight": "w"}, "multilabel_soft_margin_loss"),
]


@pytest.mark.parametrize("case", MODULES, ids=lambda c: c[0])
def test_module_twin_matches_torch_nn(case):
    cls, options, kind = case
    g = _gen(4)
    x, t = _inputs(kind, g, torch.float32)
    if kind == "poisson_nll_loss":
        x = x.abs()
    opts, t = _resolve(kind, options, g, x, t)
    opts = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in opts.items()}
    ours, theirs = getattr(lt, cls)(**opts), getattr(nn, cls)(**opts)
    assert isinstance(ours, nn.Module)
    _compare(ours, theirs, x, t, {}, torch.float32, 2e-5, 1e-6)
    if "weight" in opts:  # buffers, as PyTorch's: they follow .to(...)
        assert ours.weight.dtype == torch.float32
        assert ours.to(torch.float64).weight.dtype == torch.float64


def test_gaussian_module():
    g = _gen(6)
    x, t = _inputs("gaussian_nll_loss", g, torch.float32)
    var = torch.rand(SHAPE, generator=g) + 0.1
    torch.testing.assert_close(lt.GaussianNLLLoss(full=True)(x.float(), t.float(), var),
                               nn.GaussianNLLLoss(full=True)(x.float(), t.float(), var))


def test_signatures_are_pytorchs():
    for name in lt.__all__:
        ours = getattr(lt, name)
        if inspect.isclass(ours):
            theirs = getattr(nn, name)
            pairs = [(ours.__init__, theirs.__init__), (ours.forward, theirs.forward)]
        else:
            pairs = [(ours, getattr(F, name))]
        for a, b in pairs:
            pa, pb = inspect.signature(a).parameters, inspect.signature(b).parameters
            assert [(p.name, p.default, p.kind) for p in pa.values()] == \
                [(p.name, p.default, p.kind) for p in pb.values()], name


def test_legacy_size_average_and_reduce_map_as_in_pytorch():
    x, t = _inputs("mse_loss", _gen(7), torch.float32)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        ours = lt.MSELoss(size_average=False)
    assert ours.reduction == "sum"
    torch.testing.assert_close(lt.mse_loss(x, t, reduce=False), F.mse_loss(x, t, reduction="none"))


# ---------------------------------------------------------------------- where PyTorch is not exact


def test_exact_where_pytorch_rounds():
    x = torch.tensor([[40.0, 0.0]], dtype=torch.float64)
    exact = math.log1p(math.exp(-40.0))  # lse([40, 0]) - 40
    assert F.cross_entropy(x, torch.tensor([0])).item() == 0.0  # PyTorch: 40 + log1p(e^-40) - 40
    assert lt.cross_entropy(x, torch.tensor([0])).item() == pytest.approx(exact, rel=1e-15)
    # BCE of a probability: PyTorch clamps log at -100, the exact value is inf
    p, y = torch.tensor([0.0]), torch.tensor([1.0])
    assert F.binary_cross_entropy(p, y).item() == 100.0
    assert lt.binary_cross_entropy(p, y).item() == math.inf


def test_all_ignored_mean_is_zero():
    x = torch.randn(3, 4, requires_grad=True)
    loss = lt.cross_entropy(x, torch.full((3,), -100))
    loss.backward()
    assert loss.item() == 0.0
    assert bool((x.grad == 0).all())


# ------------------------------------------------------------------------------ autograd features


def test_gradcheck_float64():
    g = _gen(8)
    x, t = _inputs("cross_entropy", g, torch.float64)
    w = _weight(g)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a: lt.cross_entropy(a, t, weight=w, label_smoothing=0.2, reduction="none"), (x,))
    xb, tb = _inputs("binary_cross_entropy_with_logits", g, torch.float64)
    assert torch.autograd.gradcheck(
        lambda a: lt.binary_cross_entropy_with_logits(a, tb, pos_weight=w), (xb.requires_grad_(),))
    xg, tg = _inputs("gaussian_nll_loss", g, torch.float64)
    var = (torch.rand(SHAPE, generator=g, dtype=torch.float64) + 0.2).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, v: lt.gaussian_nll_loss(a, tg, v, reduction="sum"),
                                    (xg.requires_grad_(), var))


@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy_with_logits", "mse_loss",
                                  "cross_entropy_weighted"])
def test_double_backward_matches_pytorch(name):
    g0 = _gen(9)
    x, t = _inputs(name.replace("_weighted", ""), g0, torch.float32)
    x, t = x.float(), _cast(t, torch.float32)
    kw = {}
    if name.endswith("weighted"):  # PyTorch's weighted mean with an ignored label, float32 input
        kw = {"weight": _weight(g0).float(), "ignore_index": 0}
    hv = []
    for fn in (getattr(lt, name.replace("_weighted", "")), getattr(F, name.replace("_weighted", ""))):
        xa = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(xa, t, **kw), xa, create_graph=True)
        (g * torch.linspace(-1, 1, g.numel(), dtype=g.dtype).reshape(g.shape)).sum().backward()
        hv.append(xa.grad)
    torch.testing.assert_close(hv[0], hv[1], rtol=1e-5, atol=1e-6)


def test_torch_func_grad_and_vmap():
    x, t = _inputs("cross_entropy", _gen(10), torch.float32)
    xs, ts = x.reshape(2, 3, 5), t.reshape(2, 3)
    torch.testing.assert_close(torch.func.grad(lambda a: lt.cross_entropy(a, t))(x),
                               torch.func.grad(lambda a: F.cross_entropy(a, t))(x))
    torch.testing.assert_close(torch.vmap(lt.cross_entropy)(xs, ts), torch.vmap(F.cross_entropy)(xs, ts))
    per_example = torch.vmap(torch.func.grad(lambda a, b: lt.mse_loss(a, b)))
    torch.testing.assert_close(per_example(xs, xs * 0.5),
                               torch.vmap(torch.func.grad(lambda a, b: F.mse_loss(a, b)))(xs, xs * 0.5))
    hessian = torch.func.jacrev(torch.func.jacrev(lambda a: lt.cross_entropy(a, t[:2])))(x[:2])
    torch.testing.assert_close(hessian, torch.func.jacrev(torch.func.jacrev(
        lambda a: F.cross_entropy(a, t[:2])))(x[:2]))


# --------------------------------------------------------------------------------- torch.compile


def _compiled_matches(fn, ref, args, backend="aot_eager"):
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend=backend)  # fails on any graph break
    xa = args[0].clone().requires_grad_(True)
    xb = args[0].clone().requires_grad_(True)
    a, b = compiled(xa, *args[1:]), ref(xb, *args[1:])
    torch.testing.assert_close(a, b)
    a.backward()
    b.backward()
    torch.testing.assert_close(xa.grad, xb.grad)


def test_compile_fullgraph_inductor_cross_entropy():
    x, t = _inputs("cross_entropy", _gen(11), torch.float32)
    x, t = x.float(), t
    loss = lt.CrossEntropyLoss(label_smoothing=0.1, ignore_index=2)
    _compiled_matches(lambda a, b: loss(a, b) * 2.0,
                      lambda a, b: nn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=2)(a, b) * 2.0,
                      (x, t), backend="inductor")


def test_compile_fullgraph_bce_pos_weight_and_mse():
    g = _gen(12)
    x, t = _inputs("binary_cross_entropy_with_logits", g, torch.float32)
    w = _weight(g).float()
    _compiled_matches(lambda a, b: lt.binary_cross_entropy_with_logits(a, b, pos_weight=w),
                      lambda a, b: F.binary_cross_entropy_with_logits(a, b, pos_weight=w),
                      (x.float(), t.float()))
    _compiled_matches(lambda a, b: lt.mse_loss(a, b, reduction="none").sum(),
                      lambda a, b: F.mse_loss(a, b, reduction="none").sum(), (x.float(), t.float()))


def test_compile_fullgraph_gaussian_var_gradient():
    g = _gen(13)
    x, t = _inputs("gaussian_nll_loss", g, torch.float32)
    var = (torch.rand(SHAPE, generator=g) + 0.1).requires_grad_(True)
    compiled = torch.compile(lambda a, b, v: lt.gaussian_nll_loss(a, b, v), fullgraph=True,
                             backend="aot_eager")
    x = x.float().requires_grad_(True)
    compiled(x, t.float(), var).backward()
    xb, vb = x.detach().clone().requires_grad_(True), var.detach().clone().requires_grad_(True)
    F.gaussian_nll_loss(xb, t.float(), vb).backward()
    torch.testing.assert_close(var.grad, vb.grad)
    torch.testing.assert_close(x.grad, xb.grad)


# ------------------------------------------------------------------------------------ bad inputs


def test_bad_inputs_name_the_argument():
    x = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"target of class indices must have shape \(4,\).*\(3,\)"):
        lt.cross_entropy(x, y[:3])
    with pytest.raises(TypeError, match=r"input must have a floating dtype; found torch\.int64"):
        lt.cross_entropy(y.reshape(2, 2), y[:2])
    with pytest.raises(ValueError, match="reduction must be one of 'none', 'mean', 'sum'; found 'avg'"):
        lt.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"^cross_entropy: .*class indices.*must lie in \[0, 2\].*target"):
        lt.cross_entropy(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"weight must be a 1-D tensor with one entry per class \(3\)"):
        lt.cross_entropy(x, y, weight=torch.ones(4))
    with pytest.raises(ValueError, match="target requires grad"):
        lt.mse_loss(x, torch.randn(4, 3, requires_grad=True))
    with pytest.raises(ValueError, match="target must have input's shape"):
        lt.mse_loss(x, torch.randn(4, 1))
    with pytest.raises(ValueError, match="ignore_index=3 applies to class-index targets only"):
        lt.cross_entropy(x, torch.softmax(x, 1), ignore_index=3)
    with pytest.raises(ValueError, match="var must have input's shape"):
        lt.gaussian_nll_loss(x, x, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"var must lie in \[0, inf\)"):
        lt.gaussian_nll_loss(x, x, -torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"soft_margin_loss: .*target must hold labels -1 and 1"):
        lt.soft_margin_loss(x, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"input must lie in \[0, 1\].*binary_cross_entropy_with_logits"):
        lt.binary_cross_entropy(x.abs() + 1.0, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="label_smoothing must be a number in"):
        lt.cross_entropy(x, y, label_smoothing=1.5)


def test_readme_example():
    import losskit.torch as lt  # the README's "use it from PyTorch" lines, as written there

    logits = torch.randn(8, 10, requires_grad=True)
    labels = torch.randint(0, 10, (8,))
    loss = lt.CrossEntropyLoss(label_smoothing=0.1)(logits, labels)  # torch.nn.CrossEntropyLoss's signature
    loss.backward()  # the exact analytic gradient lands in logits.grad
    torch.testing.assert_close(
        loss, nn.CrossEntropyLoss(label_smoothing=0.1)(logits, labels))


def test_benchmark_quick_runs():
    """benchmarks/torch_twins.py runs (tiny shapes; a smoke test, not a timing)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "torch_twins.py"), "--quick",
                          "--markdown"], capture_output=True, text=True, timeout=300, check=True,
                         env={**os.environ, "PYTHONPATH": root})
    assert "| `cross_entropy` | 64x10 |" in out.stdout
    assert "| `multilabel_margin_loss` | 64x10 |" in out.stdout


# ------------------------------------------------------- twins of several inputs (issue 12 losses)


def _cosine_distance(x, y):
    return 1.0 - F.cosine_similarity(x, y)


_DISTANCES = {"pairwise": F.pairwise_distance, "module_p1": nn.PairwiseDistance(p=1.0, eps=1e-4),
              "cosine": _cosine_distance}


def _members(kind, g):
    """(arguments in PyTorch's order, positions of the differentiable ones), float64."""
    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def signs(*shape):
        return torch.randint(0, 2, shape, generator=g).double() * 2 - 1

    if kind == "triplet":
        return (randn(*SHAPE), randn(*SHAPE), randn(*SHAPE)), (0, 1, 2)
    if kind == "triplet_1d":
        return (randn(5), randn(5), randn(5)), (0, 1, 2)
    if kind == "cosine":
        return (randn(*SHAPE), randn(*SHAPE), signs(SHAPE[0])), (0, 1)
    if kind == "cosine_1d":
        return (randn(5), randn(5), signs(1)[0]), (0, 1)
    if kind == "ranking":
        return (randn(*SHAPE), randn(*SHAPE), signs(*SHAPE)), (0, 1)
    if kind == "hinge":
        return (randn(*SHAPE).abs() * 1.5, signs(*SHAPE)), (0,)
    raise KeyError(kind)


MULTI_CASES = [
    ("triplet_margin_loss", "triplet", {}),
    ("triplet_margin_loss", "triplet", {"margin": 0.5, "p": 1.0}),
    ("triplet_margin_loss", "triplet", {"swap": True, "eps": 1e-3}),
    ("triplet_margin_loss", "triplet", {"p": 3.0, "margin": 2.0}),
    ("triplet_margin_loss", "triplet_1d", {"swap": True, "margin": 3.0}),
    ("triplet_margin_with_distance_loss", "triplet", {}),
    ("triplet_margin_with_distance_loss", "triplet", {"distance_function": "pairwise", "swap": True}),
    ("triplet_margin_with_distance_loss", "triplet", {"distance_function": "module_p1", "margin": 2.0}),
    ("triplet_margin_with_distance_loss", "triplet",
     {"distance_function": "cosine", "margin": 0.5, "swap": True}),
    ("cosine_embedding_loss", "cosine", {}),
    ("cosine_embedding_loss", "cosine", {"margin": 0.3}),
    ("cosine_embedding_loss", "cosine_1d", {"margin": -0.3}),
    ("margin_ranking_loss", "ranking", {}),
    ("margin_ranking_loss", "ranking", {"margin": 0.4}),
    ("hinge_embedding_loss", "hinge", {}),
    ("hinge_embedding_loss", "hinge", {"margin": 0.6}),
]


def _compare_members(ours, theirs, args, diff, kw, dtype, rtol, atol):
    """Values and the gradients of every differentiable argument, through a random chain rule."""
    grads = []
    for fn in (ours, theirs):
        xs = [_cast(a, dtype).detach().clone().requires_grad_(i in diff) for i, a in enumerate(args)]
        value = fn(*xs, **kw)
        r = torch.rand(value.shape, generator=_gen(5), dtype=torch.float64).to(dtype) + 0.5
        (value * r).sum().backward()
        grads.append((value, [xs[i].grad for i in diff]))
    (a, ga), (b, gb) = grads
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    for i, (x, y) in zip(diff, zip(ga, gb, strict=True), strict=True):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=lambda m, i=i: f"argument {i}: {m}")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", MULTI_CASES,
                         ids=lambda c: f"{c[0]}-{c[1]}-{'-'.join(map(str, c[2].values()))}")
def test_multi_input_twin_matches_pytorch(case, dtype, reduction):
    name, kind, options = case
    args, diff = _members(kind, _gen(21))
    kw = {**options, "reduction": reduction}
    if "distance_function" in kw:
        kw["distance_function"] = _DISTANCES[kw["distance_function"]]
    tol = (1e-10, 1e-12) if dtype == torch.float64 else (2e-5, 2e-6)
    _compare_members(getattr(lt, name), getattr(F, name), args, diff, kw, dtype, *tol)


def _ctc_case(g, concatenated=False, impossible=False):
    T, N, C, S = 12, 4, 5, 4
    logits = torch.randn(T, N, C, generator=g, dtype=torch.float64)
    targets = torch.randint(1, C, (N, S), generator=g)
    input_lengths = torch.tensor([12, 10, 12, 8])
    target_lengths = torch.tensor([4, 2, 3, 1])
    if impossible:  # 3 labels, 2 of them equal and adjacent, in 3 steps: no alignment
        targets[3, :3] = torch.tensor([2, 2, 3])
        target_lengths[3], input_lengths[3] = 3, 3
    if concatenated:
        targets = torch.cat([targets[i, :target_lengths[i]] for i in range(N)])
    return logits, targets, input_lengths, target_lengths


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["padded", "concatenated", "zero_infinity", "lists", "blank4"])
def test_ctc_twin_matches_pytorch(layout, dtype, reduction):
    logits, targets, il, tl = _ctc_case(_gen(22), concatenated=layout == "concatenated",
                                        impossible=layout == "zero_infinity")
    kw = {"reduction": reduction, "zero_infinity": layout == "zero_infinity"}
    if layout == "lists":
        il, tl = il.tolist(), tl.tolist()
    if layout == "blank4":  # the blank is the last class; labels 0..3
        targets, kw["blank"] = targets - 1, 4

    def run(fn):
        def f(x, t):
            return fn(x.log_softmax(-1), t, il, tl, **kw)
        return f

    tol = (1e-10, 1e-12) if dtype == torch.float64 else (2e-5, 2e-6)
    _compare_members(run(lt.ctc_loss), run(F.ctc_loss), (logits, targets), (0,), {}, dtype, *tol)


def test_ctc_unbatched_and_module():
    logits, targets, il, tl = _ctc_case(_gen(23))
    lp = logits.log_softmax(-1)
    torch.testing.assert_close(lt.ctc_loss(lp[:, 0], targets[0], il[0], tl[0], reduction="none"),
                               F.ctc_loss(lp[:, 0], targets[0], il[0], tl[0], reduction="none"))
    torch.testing.assert_close(lt.CTCLoss(reduction="sum")(lp, targets, il, tl),
                               nn.CTCLoss(reduction="sum")(lp, targets, il, tl))


def test_ctc_gradient_is_exact_for_log_probs():
    """With respect to ``log_probs`` itself the exact derivative of -log P is -gamma; PyTorch returns
    exp(log_probs) - gamma (correct only after a log-softmax): the difference is exp(log_probs) on
    the steps each sequence uses (derived from the two formulas, checked by gradcheck below)."""
    logits, targets, il, tl = _ctc_case(_gen(24))
    lp = logits.log_softmax(-1).detach()
    a, b = lp.clone().requires_grad_(), lp.clone().requires_grad_()
    lt.ctc_loss(a, targets, il, tl, reduction="sum").backward()
    F.ctc_loss(b, targets, il, tl, reduction="sum").backward()
    used = (torch.arange(lp.shape[0])[:, None] < il[None, :])[..., None]
    torch.testing.assert_close(a.grad, b.grad - torch.where(used, lp.exp(), 0.0), rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x: lt.ctc_loss(x, targets[:2], torch.tensor([6, 5]), tl[:2].clamp(max=2), reduction="mean"),
        (lp[:6, :2].clone().requires_grad_(),))


MULTI_MODULES = [
    ("TripletMarginLoss", {"margin": 0.5, "swap": True}, "triplet"),
    ("TripletMarginLoss", {"p": 1.0, "reduction": "sum"}, "triplet"),
    ("TripletMarginWithDistanceLoss", {"distance_function": nn.PairwiseDistance(), "swap": True},
     "triplet"),
    ("TripletMarginWithDistanceLoss", {"distance_function": _cosine_distance, "margin": 0.3}, "triplet"),
    ("CosineEmbeddingLoss", {"margin": 0.2}, "cosine"),
    ("MarginRankingLoss", {"margin": 0.1, "reduction": "sum"}, "ranking"),
    ("HingeEmbeddingLoss", {"margin": 2.0}, "hinge"),
]


def _case_id(case):  # stable across processes (pytest-xdist): a callable by its name, not its address
    return "-".join([case[0], *(getattr(v, "__name__", type(v).__name__) if callable(v) else str(v)
                                for v in case[1].values())])


@pytest.mark.parametrize("case", MULTI_MODULES, ids=_case_id)
def test_multi_input_module_twin_matches_torch_nn(case):
    cls, options, kind = case
    args, diff = _members(kind, _gen(25))
    ours, theirs = getattr(lt, cls)(**options), getattr(nn, cls)(**options)
    assert isinstance(ours, nn.Module)
    _compare_members(ours, theirs, args, diff, {}, torch.float32, 2e-5, 2e-6)


def test_nll_loss_2d_module():
    x = torch.log_softmax(torch.randn(2, 3, 4, 4, generator=_gen(26)), 1)
    t = torch.randint(0, 3, (2, 4, 4), generator=_gen(26))
    with pytest.warns(FutureWarning):
        theirs = nn.NLLLoss2d(ignore_index=1)
    torch.testing.assert_close(lt.NLLLoss2d(ignore_index=1)(x, t), theirs(x, t))


def test_every_pytorch_loss_losskit_has_is_twinned():
    """``torch.nn.modules.loss.__all__`` against ``losskit.torch``: every PyTorch loss class has its
    twin except those losskit has no loss for (listed here, with the reason)."""
    import torch.nn.modules.loss as torch_losses

    elsewhere = {"LinearCrossEntropyLoss": "losskit.linear_cross_entropy (issue 10 item 5)"}
    missing = [n for n in torch_losses.__all__ if n not in lt.__all__ and n not in elsewhere]
    assert missing == []


def test_gradcheck_multi_input_twins_float64():
    args, _ = _members("triplet", _gen(27))
    a, p, n = (x[:3].clone().requires_grad_() for x in args)
    assert torch.autograd.gradcheck(lambda x, y, z: lt.triplet_margin_loss(x, y, z, swap=True,
                                                                            reduction="none"), (a, p, n))
    assert torch.autograd.gradcheck(lambda x, y, z: lt.triplet_margin_loss(x, y, z, p=1.0), (a, p, n))
    assert torch.autograd.gradgradcheck(lambda x, y, z: lt.triplet_margin_loss(x, y, z), (a, p, n))
    (x1, x2, y), _ = _members("cosine", _gen(28))
    x1, x2 = x1.requires_grad_(), x2.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda u, v: lt.cosine_embedding_loss(u, v, y, margin=0.1, reduction="none"), (x1, x2))
    (r1, r2, yr), _ = _members("ranking", _gen(29))
    assert torch.autograd.gradcheck(lambda u, v: lt.margin_ranking_loss(u, v, yr, margin=0.2),
                                    (r1.requires_grad_(), r2.requires_grad_()))
    (h, yh), _ = _members("hinge", _gen(30))
    assert torch.autograd.gradcheck(lambda u: lt.hinge_embedding_loss(u, yh, reduction="sum"),
                                    (h.requires_grad_(),))


def test_torch_func_on_multi_input_twins():
    (a, p, n), _ = _members("triplet", _gen(31))
    ours = torch.func.grad(lambda x, y, z: lt.triplet_margin_loss(x, y, z, swap=True), argnums=(0, 1, 2))
    theirs = torch.func.grad(lambda x, y, z: F.triplet_margin_loss(x, y, z, swap=True), argnums=(0, 1, 2))
    for u, v in zip(ours(a, p, n), theirs(a, p, n), strict=True):
        torch.testing.assert_close(u, v)
    (x1, x2, y), _ = _members("cosine", _gen(32))
    torch.testing.assert_close(
        torch.func.grad(lambda v: lt.cosine_embedding_loss(x1, v, y))(x2),
        torch.func.grad(lambda v: F.cosine_embedding_loss(x1, v, y))(x2), rtol=1e-10, atol=1e-12)
    batched = [t.reshape(2, 3, 5) for t in (a, p, n)]
    torch.testing.assert_close(torch.vmap(lt.triplet_margin_loss)(*batched),
                               torch.stack([F.triplet_margin_loss(*[t[i] for t in batched])
                                            for i in range(2)]))


def test_compile_fullgraph_multi_input_twins():
    (a, p, n), _ = _members("triplet", _gen(33))
    a, p, n = a.float(), p.float(), n.float()
    for backend in ("aot_eager",):  # inductor: test_compile_fullgraph_inductor_cross_entropy (same op)
        torch._dynamo.reset()
        compiled = torch.compile(lambda x, y, z: lt.triplet_margin_loss(x, y, z, swap=True) * 2.0,
                                 fullgraph=True, backend=backend)
        _compare_members(compiled, lambda x, y, z: F.triplet_margin_loss(x, y, z, swap=True) * 2.0,
                         (a, p, n), (0, 1, 2), {}, torch.float32, 2e-5, 2e-6)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, y, z: lt.triplet_margin_with_distance_loss(
        x, y, z, distance_function=_cosine_distance, margin=0.5), fullgraph=True, backend="aot_eager")
    _compare_members(compiled, lambda x, y, z: F.triplet_margin_with_distance_loss(
        x, y, z, distance_function=_cosine_distance, margin=0.5), (a, p, n), (0, 1, 2), {},
        torch.float32, 2e-5, 2e-6)
    (x1, x2, y), _ = _members("cosine", _gen(34))
    torch._dynamo.reset()
    compiled = torch.compile(lambda u, v, w: lt.cosine_embedding_loss(u, v, w, margin=0.1),
                             fullgraph=True, backend="aot_eager")
    _compare_members(compiled, lambda u, v, w: F.cosine_embedding_loss(u, v, w, margin=0.1),
                     (x1, x2, y), (0, 1), {}, torch.float32, 2e-5, 2e-6)
    (r1, r2, yr), _ = _members("ranking", _gen(35))
    torch._dynamo.reset()
    compiled = torch.compile(lambda u, v, w: lt.margin_ranking_loss(u, v, w, reduction="sum"),
                             fullgraph=True, backend="aot_eager")
    _compare_members(compiled, lambda u, v, w: F.margin_ranking_loss(u, v, w, reduction="sum"),
                     (r1, r2, yr), (0, 1), {}, torch.float32, 2e-5, 2e-6)
    logits, targets, il, tl = _ctc_case(_gen(36))
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, t: lt.ctc_loss(x.log_softmax(-1), t, il, tl), fullgraph=True,
                             backend="aot_eager")
    _compare_members(compiled, lambda x, t: F.ctc_loss(x.log_softmax(-1), t, il, tl), (logits, targets),
                     (0,), {}, torch.float32, 2e-5, 2e-6)


def test_multi_input_bad_inputs_name_the_argument():
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"triplet_margin_loss: negative must have anchor's shape \(4, 3\)"):
        lt.triplet_margin_loss(a, a, a[:2])
    with pytest.raises(ValueError, match="margin must be greater than 0"):
        lt.triplet_margin_with_distance_loss(a, a, a, margin=0.0)
    with pytest.raises(ValueError, match="margin must be greater than 0"):
        lt.triplet_margin_loss(a, a, a, margin=-1.0)
    with pytest.raises(ValueError, match="expected margin to be greater than 0"):
        lt.TripletMarginLoss(margin=0.0)
    with pytest.raises(TypeError, match="distance_function must be None or a callable"):
        lt.triplet_margin_with_distance_loss(a, a, a, distance_function="cosine")
    with pytest.raises(ValueError, match=r"cosine_embedding_loss: target must have shape \(4,\)"):
        lt.cosine_embedding_loss(a, a, torch.ones(3))
    with pytest.raises(ValueError, match="target requires grad"):
        lt.cosine_embedding_loss(a, a, torch.ones(4, requires_grad=True))
    with pytest.raises(ValueError, match=r"margin_ranking_loss: .*target must hold labels -1 and 1"):
        lt.margin_ranking_loss(a, a, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"input2 must have input1's shape"):
        lt.margin_ranking_loss(a, a[:1], torch.ones(4, 3))
    lp = torch.randn(5, 2, 3).log_softmax(-1)
    with pytest.raises(ValueError, match=r"ctc_loss: input_lengths must have shape \(2,\)"):
        lt.ctc_loss(lp, torch.ones(2, 2, dtype=torch.int64), torch.tensor([5]), torch.tensor([2, 2]))
    with pytest.raises(ValueError, match="ctc_loss: target_lengths must be >= 0 and sum to at most"):
        lt.ctc_loss(lp, torch.ones(3, dtype=torch.int64), torch.tensor([5, 5]), torch.tensor([2, 2]))
    with pytest.raises(ValueError, match=r"^ctc_loss: .*targets"):
        lt.ctc_loss(lp, torch.full((2, 2), 7), torch.tensor([5, 5]), torch.tensor([2, 2]))


# ------------------------------------------------------------------------------ the eager path


def test_eager_cpu_calls_skip_the_operator_and_transforms_take_it(monkeypatch):
    """Plain CPU calls (value, gradient, gradients of other members, create_graph) never enter the
    custom operator; torch.func transforms and dispatch modes still do (its rules are needed)."""
    entered = []
    real = lt._LossFunction.apply

    def spy(*args):
        entered.append(args[0])
        return real(*args)

    monkeypatch.setattr(lt._LossFunction, "apply", spy)
    g = _gen(11)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (6,), generator=g)
    (gx,) = torch.autograd.grad(lt.cross_entropy(x, t, label_smoothing=0.1), x)
    (rx,) = torch.autograd.grad(F.cross_entropy(x, t, label_smoothing=0.1), x)
    torch.testing.assert_close(gx, rx)
    a, b = x[:, 0].detach().clone().requires_grad_(), x[:, 1].detach().clone().requires_grad_()
    y = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    mine = torch.autograd.grad(lt.margin_ranking_loss(a, b, y, margin=0.1, reduction="sum"), (a, b))
    ref = torch.autograd.grad(F.margin_ranking_loss(a, b, y, margin=0.1, reduction="sum"), (a, b))
    torch.testing.assert_close(mine, ref)
    (g1,) = torch.autograd.grad(lt.mse_loss(x, x.detach() * 0.5), x, create_graph=True)
    (h,) = torch.autograd.grad(g1.sum(), x)  # d/dx of sum(2 (x - t) / n) = 2 / n
    torch.testing.assert_close(h, torch.full_like(x, 2.0 / x.numel()))
    with torch.no_grad():
        assert not lt.l1_loss(x, x * 0.5).requires_grad
    assert entered == []
    torch.func.grad(lambda v: lt.cross_entropy(v, t))(x.detach())
    assert entered
    assert set(entered) == {"cross_entropy"}
    entered.clear()
    from torch._subclasses.fake_tensor import FakeTensorMode
    plain = x.detach().clone()
    with FakeTensorMode() as mode:
        fake = mode.from_tensor(plain)
        assert lt.mse_loss(fake, fake).shape == ()
    assert entered == ["mse_loss"]


def test_eager_refusals_match_the_operator():
    """The eager path raises the operator's messages (bad labels, values out of the domain)."""
    x = torch.tensor([[0.2, 0.8]], requires_grad=True)
    with pytest.raises(ValueError, match=r"binary_cross_entropy: .*input"):
        lt.binary_cross_entropy(torch.tensor([1.5]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="cross_entropy"):
        lt.cross_entropy(x, torch.tensor([5]))
    with pytest.raises(ValueError, match="ctc_loss"):
        lt.ctc_loss(torch.zeros(2, 1, 3), torch.tensor([[1, 2]]), [2], [3])


def test_forward_mode_ad_is_refused_not_dropped():
    """A dual tensor's tangent is never silently dropped by the eager path (the operator has no
    forward-mode formula and says so)."""
    import torch.autograd.forward_ad as fwad
    x, t = torch.randn(4, 3, generator=_gen(12)), torch.zeros(4, 3)
    with fwad.dual_level(), pytest.raises(NotImplementedError, match="jvp"):
        lt.mse_loss(fwad.make_dual(x, torch.ones_like(x)), t)


def test_jit_trace_records_the_operator_not_a_constant():
    """Under torch.jit.trace the twin stays the operator: the traced function follows new inputs
    (the eager path's value would be baked in as a constant)."""
    g = _gen(13)
    x, t = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    traced = torch.jit.trace(lambda a, b: lt.mse_loss(a, b), (x, t))
    torch.testing.assert_close(traced(2 * x, t), F.mse_loss(2 * x, t))
