"""The gathered negative log-likelihood (issues 8 and 10): only ``y_pred[n, label_n]`` is read.

* ``LossDef.reads``: the domain is checked at the entries the loss reads (PyTorch's semantics): a
  positive or NaN entry elsewhere is neither refused nor propagated; a bad read entry still is, on
  every path (generic, NumPy C kernel, torch twin), with the caller's index in the message.
* ``_cpu.nll``'s NumPy kernel in float32 and float64 against the generic kernel (every option).
* ``losskit.torch.nll_loss``'s eager path against ``torch.nn.functional.nll_loss`` (weight,
  ignore_index, the three reductions with PyTorch's weighted mean, K-dim input, 1-D input, values
  and gradients for a random incoming gradient, create_graph), and that it is the path taken.
Expected values come from PyTorch (a reference library) or from the definition ``-w_y x_y``.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit
from losskit._backends import numpy as cpu

torch = pytest.importorskip("torch")
F = torch.nn.functional
lt = pytest.importorskip("losskit.torch")

needs_cpu = pytest.mark.skipif(not cpu.available(), reason="no compiled kernels")


def _log_probs(rng, n, k, dtype=np.float32):
    return np.log(rng.dirichlet(np.ones(k), n)).astype(dtype)


# ------------------------------------------------------------------ the domain where it is read


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unread_entries_are_not_checked_nor_read(dtype):
    rng = np.random.default_rng(0)
    x = _log_probs(rng, 6, 5, dtype)
    y = np.array([0, 1, 2, 3, 4, 0])
    expected = -x[np.arange(6), y]  # the definition, w = 1
    junk = x.copy()
    junk[0, 1], junk[1, 0], junk[2, 4] = np.nan, 3.0, np.inf  # none of them at a label
    np.testing.assert_array_equal(losskit.nll(y, junk), expected)
    value, grad = losskit.NLL(reduction="sum").value_and_gradient(y, junk)
    assert value == expected.astype(np.float64).sum().astype(dtype)
    np.testing.assert_array_equal(grad, -np.eye(5, dtype=dtype)[y])
    # as PyTorch: it reads only the label's entry too
    torch.testing.assert_close(torch.from_numpy(losskit.nll(y, junk)),
                               F.nll_loss(torch.from_numpy(junk), torch.from_numpy(y), reduction="none"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_bad_read_entry_is_refused_or_propagated(dtype):
    rng = np.random.default_rng(1)
    x = _log_probs(rng, 6, 5, dtype)
    y = np.array([0, 1, 2, 3, 4, 0])
    bad = x.copy()
    bad[3, 3] = 0.25  # at sample 3's label
    for call in (lambda: losskit.nll(y, bad), lambda: losskit.NLL(weight=[1, 2, 3, 4, 5])(y, bad),
                 lambda: losskit.NLL(ignore_class=0).value_and_gradient(y, bad)):
        with pytest.raises(ValueError, match=r"y_pred must lie in \[-inf, 0\].*y_pred\[3, 3\] = 0.25"):
            call()
    # an ignored sample reads nothing: its positive entry is not refused
    bad_ignored = x.copy()
    bad_ignored[0, 0] = 0.25
    values = losskit.nll(y, bad_ignored, ignore_class=0)
    assert values[0] == 0
    assert values[5] == 0
    nan = x.copy()
    nan[2, 2] = np.nan
    values = losskit.nll(y, nan)
    assert np.isnan(values[2])
    assert not np.isnan(np.delete(values, 2)).any()


def test_the_message_gives_the_callers_index_on_another_axis():
    rng = np.random.default_rng(2)
    x = np.moveaxis(_log_probs(rng, 8, 4).reshape(2, 4, 4), 2, 1).copy()  # (2, classes 4, 4)
    y = rng.integers(0, 4, (2, 4))
    x[1, y[1, 2], 2] = 0.5
    with pytest.raises(ValueError, match=rf"y_pred\[1, {y[1, 2]}, 2\] = 0.5"):
        losskit.nll(y, x, axis=1)
    x[1, (y[1, 2] + 1) % 4, 2], x[1, y[1, 2], 2] = 0.5, -1.0  # not read: accepted
    assert np.isfinite(losskit.nll(y, x, axis=1)).all()


# ------------------------------------------------------------------ the NumPy C kernel


@needs_cpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", [{}, {"weight": (0.5, 1.0, 2.0, 0.0, 3.0, 1.5, 0.25)},
                                  {"weight": (0.5, 1.0, 2.0, 0.0, 3.0, 1.5, 0.25), "ignore_class": 2},
                                  {"ignore_class": -100}])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"])
def test_the_c_kernel_matches_the_generic_one(monkeypatch, dtype, opts, reduction):
    rng = np.random.default_rng(3)
    x = _log_probs(rng, 41, 7, dtype)
    y = rng.integers(0, 7, 41)
    if "ignore_class" in opts:
        y[::5] = opts["ignore_class"]
    x[4, (y[4] + 1) % 7] = np.nan  # unread
    x[6, y[6]] = -np.inf  # read: an infinite loss (0 where its weight is 0)
    sw = rng.random(41)
    sw[3] = 0.0
    defn = losskit.NLL.definition
    assert cpu.fast_kernel("nll", defn.normalise(opts), np.dtype(dtype).name) is not None
    loss = losskit.NLL(**opts, reduction=reduction)
    fast = loss.value_and_gradient(y, x, sample_weight=sw), losskit.nll(y, x, **opts)
    with monkeypatch.context() as m:
        m.setattr(cpu, "fast_kernel", lambda *a, **k: None)
        slow = loss.value_and_gradient(y, x, sample_weight=sw), losskit.nll(y, x, **opts)
    for a, b in ((fast[0][0], slow[0][0]), (fast[0][1], slow[0][1]), (fast[1], slow[1])):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=2 * np.finfo(dtype).eps, atol=0)


@needs_cpu
def test_the_c_entry_refuses_short_buffers():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="shorter than its shape"):
        cpu._cpu.nll(x, False, np.zeros(4, np.int64), 5, 3, 1, 0, False, None, None, None, None, 1.0)
    with pytest.raises(ValueError, match="shorter than its shape"):
        cpu._cpu.nll(x, False, np.zeros(4, np.int64), 4, 3, 1, 0, False, np.ones(2), None, None, None,
                     1.0)


# ------------------------------------------------------------------ the PyTorch twin


def _twin_cases():
    out = []
    for layout in ("2d", "kdim", "1d"):
        for dtype in (torch.float32, torch.float64):
            for opts in ({}, {"weight": True}, {"ignore_index": 3}, {"weight": True, "ignore_index": 3}):
                for reduction in ("mean", "sum", "none"):
                    if layout == "1d" and "ignore_index" in opts:
                        continue
                    out.append((layout, dtype, opts, reduction))
    return out


def _twin_inputs(layout, dtype, g):
    if layout == "2d":
        x, t = torch.randn(29, 6, generator=g, dtype=dtype), torch.randint(0, 6, (29,), generator=g)
    elif layout == "kdim":
        x, t = torch.randn(3, 6, 4, 5, generator=g, dtype=dtype), torch.randint(0, 6, (3, 4, 5), generator=g)
    else:
        x, t = torch.randn(6, generator=g, dtype=dtype), torch.tensor(4)
    if t.ndim:
        t.view(-1)[::4] = 3
    return torch.log_softmax(x, dim=1 if x.ndim > 1 else 0), t


@needs_cpu
@pytest.mark.parametrize(("layout", "dtype", "opts", "reduction"), _twin_cases(), ids=str)
def test_the_eager_twin_matches_pytorch(monkeypatch, layout, dtype, opts, reduction):
    g = torch.Generator().manual_seed(4)
    x0, t = _twin_inputs(layout, dtype, g)
    kw = dict(opts)
    if kw.get("weight"):
        kw["weight"] = torch.rand(6, generator=g, dtype=dtype) + 0.1
    monkeypatch.setattr(lt, "_call", lambda *a, **k: pytest.fail("took the operator"))
    xa, xb = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    ours, theirs = lt.nll_loss(xa, t, reduction=reduction, **kw), F.nll_loss(xb, t, reduction=reduction, **kw)
    assert ours.dtype == dtype
    assert ours.shape == theirs.shape
    ct = torch.rand(theirs.shape, generator=g, dtype=dtype) + 0.5
    (ours * ct).sum().backward()
    (theirs * ct).sum().backward()
    tol = {"rtol": 4 * torch.finfo(dtype).eps, "atol": 0.0}
    torch.testing.assert_close(ours, theirs, **tol)
    torch.testing.assert_close(xa.grad, xb.grad, **tol)
    # the module twins take the same path
    module = (lt.NLLLoss2d if layout == "kdim" else lt.NLLLoss)(reduction=reduction, **kw)
    torch.testing.assert_close(module(x0, t), theirs.detach(), **tol)
    # create_graph: the same first-order gradient as PyTorch's, recorded as PyTorch records it (the
    # gradient depends on the incoming one only: differentiable in ct)
    xc, xd = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    cc = ct.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((lt.nll_loss(xc, t, reduction=reduction, **kw) * cc).sum(), xc,
                                  create_graph=True)
    (ref,) = torch.autograd.grad((F.nll_loss(xd, t, reduction=reduction, **kw) * cc).sum(), xd,
                                 create_graph=True)
    torch.testing.assert_close(grad, ref, **tol)
    (d_ours,) = torch.autograd.grad((grad * grad).sum(), cc)
    (d_ref,) = torch.autograd.grad((ref * ref).sum(), cc)
    torch.testing.assert_close(d_ours, d_ref, rtol=64 * torch.finfo(dtype).eps, atol=0.0)  # a sum


@needs_cpu
def test_the_eager_twin_refuses_as_the_operator_does():
    g = torch.Generator().manual_seed(5)
    x, t = _twin_inputs("2d", torch.float32, g)
    with pytest.raises(ValueError, match="class indices"):
        lt.nll_loss(x, torch.full_like(t, 6))
    bad = x.clone()
    bad[2, t[2]] = 0.5
    with pytest.raises(ValueError, match=r"nll_loss: nll: input must lie in \[-inf, 0\].*input\[2, "):
        lt.nll_loss(bad, t)
    with pytest.raises(ValueError, match="weight"):
        lt.nll_loss(x, t, weight=-torch.ones(6))
    # an unread positive entry and an unread NaN are accepted, as by PyTorch
    junk = x.clone()
    junk[2, (t[2] + 1) % 6], junk[5, (t[5] + 1) % 6] = 0.5, float("nan")
    torch.testing.assert_close(lt.nll_loss(junk, t), F.nll_loss(junk, t))
    nan = x.clone()
    nan[1, t[1]] = float("nan")
    assert torch.isnan(lt.nll_loss(nan, t))
    # all ignored: 0 (losskit's mean of nothing; PyTorch gives NaN), with a zero gradient
    xr = x.clone().requires_grad_(True)
    value = lt.nll_loss(xr, torch.full_like(t, -100))
    value.backward()
    assert float(value) == 0.0
    assert not xr.grad.any()


@needs_cpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "mean", "sum"])
def test_the_whole_call_path(dtype, reduction):
    """``Loss.__call__``'s one-call path (``_Plan.whole``) on NumPy arrays and plain CPU tensors:
    the value from the definition (``-x[n, y_n]`` summed exactly with ``math.fsum``, then divided,
    rounded once to the input's type), the input's dtype, the path taken; bad labels and entries
    still refused with the core's messages; a tensor that records a gradient is not taken."""
    import math

    from losskit.losses import _core

    rng = np.random.default_rng(7)
    x = _log_probs(rng, 50, 9, dtype)
    t = rng.integers(0, 9, 50)
    loss = losskit.NLL(reduction=reduction)
    plan = _core._plan(loss.definition, loss.options)
    total = math.fsum(-float(x[i, t[i]]) for i in range(50))
    expected = dtype(total if reduction == "sum" else total / 50)
    for yt, yp in ((t, x), (torch.from_numpy(t), torch.from_numpy(x))):
        assert plan.whole(yt, yp, loss.reduction, loss.options) is not None  # the path is taken
        got = loss(yt, yp)
        assert np.asarray(got).dtype == dtype
        assert abs(float(got) - float(expected)) <= 2 * np.finfo(dtype).eps * abs(float(expected))
    leaf = torch.from_numpy(x).requires_grad_(True)
    assert plan.whole(torch.from_numpy(t), leaf, loss.reduction, loss.options) is None
    assert loss(torch.from_numpy(t), leaf).requires_grad
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 8\]"):
        loss(np.where(t == t[0], 9, t), x)
    bad = x.copy()
    bad[3, t[3]] = 0.5
    with pytest.raises(ValueError, match="entries the loss reads"):
        loss(t, bad)
