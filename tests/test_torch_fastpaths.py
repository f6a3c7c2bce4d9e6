"""The twins' eager fast paths (issue 10's speed): ``_quick`` (cached plans, prepare's checks on NumPy
views, small calls straight into ``_cpu.run``), ``nll_loss``'s gradient written in the forward pass,
``ctc_loss``'s direct kernel call, against the general operator path (which the other twin tests check
against PyTorch) and against PyTorch; and the float64 margin ranking kernel (``_cpu.run3_d``) against
the generic kernel, which the oracle checks against mpmath."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import losskit
import losskit.torch as lt
from losskit._backends import numpy as cpu
from losskit._backends import torch as torch_backend

pytestmark = pytest.mark.skipif(not cpu.available(), reason="no compiled kernels")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _unit(g, shape):
    return torch.rand(shape, generator=g) * 0.98 + 0.01


def _signs(g, shape):
    return torch.randint(0, 2, shape, generator=g) * 2.0 - 1


# (twin, inputs (input, target) for a shape, keyword options)
CASES = [
    ("mse_loss", lambda g, s: (torch.randn(s, generator=g), torch.randn(s, generator=g)), {}),
    ("l1_loss", lambda g, s: (torch.randn(s, generator=g), torch.randn(s, generator=g)), {}),
    ("huber_loss", lambda g, s: (torch.randn(s, generator=g), torch.randn(s, generator=g)),
     {"delta": 0.5}),
    ("smooth_l1_loss", lambda g, s: (torch.randn(s, generator=g), torch.randn(s, generator=g)),
     {"beta": 0.5}),
    ("binary_cross_entropy", lambda g, s: (_unit(g, s), _unit(g, s)), {}),
    ("binary_cross_entropy_with_logits", lambda g, s: (torch.randn(s, generator=g) * 3, _unit(g, s)),
     {}),
    ("soft_margin_loss", lambda g, s: (torch.randn(s, generator=g), _signs(g, s)), {}),
    ("hinge_embedding_loss", lambda g, s: (torch.rand(s, generator=g) * 2, _signs(g, s)),
     {"margin": 1.5}),
    ("kl_div", lambda g, s: (torch.log_softmax(torch.randn(s, generator=g), -1),
                             torch.softmax(torch.randn(s, generator=g), -1)), {"reduction": "batchmean"}),
    ("poisson_nll_loss", lambda g, s: (torch.randn(s, generator=g),
                                       torch.poisson(torch.rand(s, generator=g) * 4, generator=g)), {}),
    ("cross_entropy", lambda g, s: (torch.randn(s, generator=g) * 2,
                                    torch.randint(0, s[-1], s[:-1], generator=g)), {}),
    ("cross_entropy", lambda g, s: (torch.randn(s, generator=g) * 2,
                                    torch.softmax(torch.randn(s, generator=g), -1)), {}),
    ("multilabel_soft_margin_loss", lambda g, s: (torch.randn(s, generator=g),
                                                  torch.randint(0, 2, s, generator=g).float()), {}),
]


def _grads(fn, x, t, kw):
    x = x.clone().requires_grad_(True)
    loss = fn(x, t, **kw)
    weights = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    (g,) = torch.autograd.grad((loss * weights).sum(), x)
    return loss.detach(), g


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("shape"), [(32, 1), (9, 10)])
@pytest.mark.parametrize(("name", "make", "kw"), CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_quick_path_matches_the_operator_path_and_skips_it(monkeypatch, name, make, kw, shape, dtype,
                                                           reduction):
    """Values and gradients (an incoming gradient other than 1 included) of the quick path equal the
    general path's, which never runs for float32 (small calls: ``_cpu.run`` directly)."""
    if name == "cross_entropy" and shape[-1] == 1:
        pytest.skip("one class: a constant loss (and a warning)")
    x, t = make(_gen(sum(shape)), shape)
    x, t = x.to(dtype), (t if not t.is_floating_point() else t.to(dtype))
    kw = {**kw, "reduction": reduction if kw.get("reduction") != "batchmean" or reduction != "mean"
          else "batchmean"}
    fn = getattr(lt, name)
    if dtype == torch.float32:  # every one of these has a float32 kernel: the operator never runs
        with monkeypatch.context() as m:
            m.setattr(lt, "_evaluate", lambda *a, **k: pytest.fail("the operator path ran"))
            fast = _grads(fn, x, t, kw)
    else:
        fast = _grads(fn, x, t, kw)
    with monkeypatch.context() as m:
        m.setattr(lt, "_quick", lambda *a, **k: None)
        slow = _grads(fn, x, t, kw)
    eps = torch.finfo(dtype).eps
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == b.dtype == dtype
        torch.testing.assert_close(a, b, rtol=4 * eps, atol=4 * eps * float(b.abs().max()))
    ref = getattr(F, name)(x, t, **kw)
    torch.testing.assert_close(fast[0], ref, rtol=1e-4 if dtype == torch.float32 else 1e-10,
                               atol=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("case", [0, 5, 10])
def test_quick_path_large_calls_take_the_threaded_kernels(monkeypatch, case):
    """Above numpy.py's PARALLEL_MIN_ELEMENTS the quick path calls the kernel's own wrapper."""
    test_quick_path_matches_the_operator_path_and_skips_it(monkeypatch, *CASES[case], (300, 300),
                                                           torch.float32, "mean")


def test_quick_path_leaves_ignored_labels_to_the_operator():
    """A label equal to ignore_index needs the mask: the general path, PyTorch's weighted mean."""
    g = _gen(3)
    x = torch.randn(8, 5, generator=g, requires_grad=True)
    t = torch.randint(0, 5, (8,), generator=g)
    t[2] = -100
    mine, ref = lt.cross_entropy(x, t), F.cross_entropy(x, t)
    torch.testing.assert_close(mine, ref)
    torch.testing.assert_close(torch.autograd.grad(mine, x)[0], torch.autograd.grad(ref, x)[0])


def test_quick_path_refusals_are_the_operators():
    with pytest.raises(ValueError, match=r"^binary_cross_entropy: .*input"):
        lt.binary_cross_entropy(torch.tensor([[0.5, 1.5]]), torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"^soft_margin_loss: .*target"):
        lt.soft_margin_loss(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"^cross_entropy: "):
        lt.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 3]))
    for _ in range(2):  # a bad option: refused at every call (never cached)
        with pytest.raises(ValueError, match="delta must be > 0"):
            lt.huber_loss(torch.zeros(2), torch.zeros(2), delta=-1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw", [{}, {"reduction": "sum"}, {"reduction": "none"}, {"weight": True},
                                {"weight": True, "reduction": "sum"}, {"ignore": True},
                                {"weight": True, "ignore": True}, {"spatial": True}])
def test_nll_gradient_from_the_forward_pass_matches_pytorch(kw, dtype):
    """nll_loss's mean and sum write the gradient in the forward pass (a second pass for a weighted or
    partly ignored mean): values and gradients as PyTorch's, an incoming gradient other than 1, and
    a retained graph differentiated three times (the saved gradient is never modified)."""
    g = _gen(5)
    shape = (6, 4, 3) if kw.get("spatial") else (7, 4)
    x = torch.log_softmax(torch.randn(shape, generator=g, dtype=dtype), 1).requires_grad_(True)
    t = torch.randint(0, 4, (shape[0], *shape[2:]), generator=g)
    opts = {"reduction": kw.get("reduction", "mean")}
    if kw.get("weight"):
        opts["weight"] = torch.rand(4, generator=g, dtype=dtype)
    if kw.get("ignore"):
        t.view(-1)[1] = 2
        opts["ignore_index"] = 2
    mine, ref = lt.nll_loss(x, t, **opts), F.nll_loss(x, t, **opts)
    tol = {"rtol": 1e-6, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-14, "atol": 1e-15}
    torch.testing.assert_close(mine, ref, **tol)
    ct = torch.full_like(ref, 0.75)
    torch.testing.assert_close(torch.autograd.grad(mine, x, ct, retain_graph=True)[0],
                               torch.autograd.grad(ref, x, ct, retain_graph=True)[0], **tol)
    x.grad = None
    for _ in range(3):
        mine.backward(torch.ones_like(mine), retain_graph=True)
    (once,) = torch.autograd.grad(ref, x, torch.ones_like(ref))
    torch.testing.assert_close(x.grad, 3 * once, **tol)


def _ctc_case(dtype):
    g = _gen(7)
    steps, n, c, s = 15, 5, 6, 4
    logits = torch.randn(steps, n, c, generator=g, dtype=dtype)
    targets = torch.randint(1, c, (n, s), generator=g)
    return logits, targets, torch.tensor([15, 12, 15, 9, 3]), torch.tensor([4, 2, 3, 1, 3])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ctc_eager_path_matches_the_operator_and_pytorch(monkeypatch, dtype, reduction):
    logits, targets, il, tl = _ctc_case(dtype)
    targets[4, :3] = torch.tensor([2, 2, 3])  # no alignment in 3 steps: inf, or 0 with zero_infinity

    def run(fn, zero):
        x = logits.clone().requires_grad_(True)
        loss = fn(x.log_softmax(-1), targets, il, tl, reduction=reduction, zero_infinity=zero)
        (gx,) = torch.autograd.grad(loss.sum() * 0.5, x)
        return loss.detach(), gx

    for zero in (True, False):
        with monkeypatch.context() as m:
            m.setattr(lt, "_evaluate", lambda *a, **k: pytest.fail("the operator path ran"))
            fast = run(lt.ctc_loss, zero)
        with monkeypatch.context() as m:
            m.setattr(lt, "_ctc_eager", lambda *a, **k: None)
            slow = run(lt.ctc_loss, zero)
        for a, b in zip(fast, slow, strict=True):  # the same kernel; the mean's sum rounds apart
            torch.testing.assert_close(a, b, rtol=4 * torch.finfo(dtype).eps, atol=0, equal_nan=True)
        if zero:
            ref = run(F.ctc_loss, zero)
            tol = (2e-5, 2e-6) if dtype == torch.float32 else (1e-10, 1e-12)
            for a, b in zip(fast, ref, strict=True):
                torch.testing.assert_close(a, b, rtol=tol[0], atol=tol[1])


def test_ctc_eager_path_refuses_second_derivatives_and_bad_labels():
    logits, targets, il, tl = _ctc_case(torch.float64)
    x = logits.clone().requires_grad_(True)
    loss = lt.ctc_loss(x.log_softmax(-1), targets, il, tl)
    with pytest.raises(ValueError, match="second derivatives"):
        torch.autograd.grad(loss, x, create_graph=True)
    with pytest.raises(ValueError, match=r"^ctc_loss: .*targets"):
        lt.ctc_loss(x.log_softmax(-1), torch.full((5, 4), 9), il, tl)


# -------------------------------------------------------------------- float64 margin ranking kernel


def _generic(monkeypatch, fn):
    with monkeypatch.context() as m:
        m.setattr(cpu, "fast_kernel", lambda *a, **k: None)
        return fn()


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_margin_ranking_float64_kernel_matches_the_generic_kernel(monkeypatch, reduction, margin):
    """Values and both gradients, sample weights (one 0), the kink, far exponents, infinite and NaN
    scores (rows recomputed by the generic kernel), rows longer than the threaded threshold."""
    rng = np.random.default_rng(4)
    assert cpu.fast_kernel("margin_ranking", {"margin": margin}, "float64") is not None
    loss = losskit.MarginRanking(margin=margin, reduction=reduction)
    for shape in [(37, 11), (700, 4), (4, 1100), (80, 1000)]:
        t = rng.choice([-1.0, 1.0], shape)
        x1, x2 = rng.standard_normal(shape), rng.standard_normal(shape)
        x1[0, 0] = x2[0, 0] + t[0, 0] * margin  # m = 0: the kink
        x1[1, 0], x2[2, 1] = np.inf, np.nan
        x1[3, 0], x2[3, 0] = 1e300, -1e-300
        w = rng.random(shape[0])
        w[1] = 0.0

        def both(t=t, x1=x1, x2=x2, w=w):
            return (loss.value_and_gradients(t, x1, x2=x2, sample_weight=w),
                    losskit.margin_ranking(t, x1, x2=x2, margin=margin))

        (v, grads), per = both()
        (sv, sgrads), sper = _generic(monkeypatch, both)
        for a, b in [(v, sv), (grads["y_pred"], sgrads["y_pred"]), (grads["x2"], sgrads["x2"]),
                     (per, sper)]:
            a, b = np.asarray(a), np.asarray(b)
            assert a.dtype == b.dtype == np.float64
            np.testing.assert_allclose(a, b, rtol=8 * 2.0**-52, atol=0, equal_nan=True)
        np.testing.assert_array_equal(grads["x2"], -grads["y_pred"])


def test_margin_ranking_float64_keeps_a_margin_that_cancels():
    """m = margin - (x1 - x2) with x1 - x2 within 2^-45 of the margin: TwoSum keeps every digit.
    Expected: the exact rational value (Fraction), rounded once."""
    x1 = np.array([[1.0 + 2.0**-52, 4.0]])
    x2 = np.array([[2.0**-60, 2.0]])
    t = np.ones((1, 2))
    margin = 1.0 + 2.0**-45
    value, grads = losskit.MarginRanking(margin=margin, reduction="sum").value_and_gradients(
        t, x1, x2=x2)
    m = [Fraction(margin) - (Fraction(float(a)) - Fraction(float(b))) for a, b in zip(x1[0], x2[0],
                                                                                     strict=True)]
    exact = sum(max(mi, Fraction(0)) for mi in m) / 2
    assert m[0] > 0 > m[1]
    assert float(value) == float(exact)
    assert grads["y_pred"].tolist() == [[-0.5, 0.0]]
    assert grads["x2"].tolist() == [[0.5, 0.0]]


def test_margin_ranking_float64_twin_matches_pytorch():
    g = _gen(9)
    a, b = torch.randn(64, 30, generator=g, dtype=torch.float64), torch.randn(64, 30, generator=g,
                                                                             dtype=torch.float64)
    y = (torch.randint(0, 2, (64, 30), generator=g) * 2 - 1).double()
    for reduction in ("mean", "sum", "none"):
        outs = []
        for fn in (lt.margin_ranking_loss, F.margin_ranking_loss):
            u, v = a.clone().requires_grad_(), b.clone().requires_grad_()
            loss = fn(u, v, y, margin=0.3, reduction=reduction)
            outs.append((loss.detach(), *torch.autograd.grad(loss.sum(), (u, v))))
        for mine, ref in zip(*outs, strict=True):
            torch.testing.assert_close(mine, ref, rtol=1e-14, atol=1e-15)


# ------------------------------------ losses without a C kernel on CPU tensors: NumPy's generic path

HOSTED = ["mean_tweedie_deviance", "dice", "lovasz_hinge", "fenchel_young", "tversky"]


def _hosted_inputs(name, rng):
    t = rng.random((33, 7)).astype(np.float32)
    p = (rng.random((33, 7)) * 0.9 + 0.05).astype(np.float32)
    if name == "lovasz_hinge":
        return (t > 0.5).astype(np.float32), rng.standard_normal((33, 7)).astype(np.float32)
    if name == "fenchel_young":
        return t / t.sum(-1, keepdims=True), p / p.sum(-1, keepdims=True)
    return (t + np.float32(0.1), p) if name == "mean_tweedie_deviance" else (t, p)


@pytest.mark.parametrize("name", HOSTED)
def test_generic_losses_on_cpu_tensors_run_numpys_path(name):
    """A loss without a compiled kernel, called on eager CPU tensors, runs NumPy's generic path on
    views of them (``_backends.torch.host_kernel``): the same values and gradients as on NumPy, bit
    for bit, through autograd, with weights; under ``generic_kernels()`` the torch operations give
    the same numbers to rounding, and so does ``create_graph=True`` (the gradient recomputed there)."""
    rng = np.random.default_rng(5)
    t, p = _hosted_inputs(name, rng)
    w = rng.random(33)
    loss = losskit.get(name)
    assert cpu.fast_kernel(loss.definition.name, loss.definition.normalise({}), "float32") is None
    value, grad = loss.value_and_gradient(t, p, sample_weight=w)
    q = torch.from_numpy(p.copy()).requires_grad_(True)
    out = loss(torch.from_numpy(t), q, sample_weight=torch.from_numpy(w))
    out.backward()
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out.detach().numpy(), value)
    np.testing.assert_array_equal(q.grad.numpy(), grad)
    q1 = torch.from_numpy(p.copy()).requires_grad_(True)
    with torch_backend.generic_kernels():
        loss(torch.from_numpy(t), q1, sample_weight=torch.from_numpy(w)).backward()
    np.testing.assert_allclose(q1.grad.numpy(), grad, rtol=1e-5, atol=1e-9)
    q2 = torch.from_numpy(p.copy()).requires_grad_(True)
    (g2,) = torch.autograd.grad(loss(torch.from_numpy(t), q2), q2, create_graph=True)
    np.testing.assert_allclose(g2.detach().numpy(), loss.gradient(t, p), rtol=1e-5, atol=1e-9)


def test_generic_losses_keep_other_dtypes_on_torch_operations():
    """bfloat16 tensors have no NumPy view: the generic kernel in torch operations, as before."""
    t = torch.rand(8, 5, dtype=torch.bfloat16) + 0.1
    p = torch.rand(8, 5, dtype=torch.bfloat16) + 0.1
    value = losskit.mean_tweedie_deviance(t, p, power=1.5)
    assert value.dtype == torch.bfloat16
    want = losskit.mean_tweedie_deviance(t.float().numpy(), p.float().numpy(), power=1.5)
    np.testing.assert_allclose(value.float().numpy(), want, rtol=2e-2)
