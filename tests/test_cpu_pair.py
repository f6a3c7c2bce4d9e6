"""The C kernels of margin_ranking, hinge_embedding and multilabel_margin (issue 10) against the
generic kernels, which the oracle (tests/test_catalog.py) checks against mpmath: values and every
gradient, weights and reductions, rows across block boundaries, NaN and infinities; margin
ranking's second input (``x2``) through NumPy, the Loss classes on tensors and the PyTorch twin."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import losskit
from losskit._backends import numpy as cpu

pytestmark = pytest.mark.skipif(not cpu.available(), reason="no compiled kernels")

F32 = np.float32
RTOL = 4 * 2.0**-23  # both are the exact value rounded once, up to the generic path's last bit
SHAPES = [(37, 11), (700, 4), (4, 1100)]  # short rows in blocks, rows longer than a block
REDUCTIONS = ["sum_over_batch_size", "sum", "none"]


def _generic(monkeypatch, fn):
    """``fn()`` with every fast kernel off: the reference path."""
    with monkeypatch.context() as m:
        m.setattr(cpu, "fast_kernel", lambda *a, **k: None)
        return fn()


def _close(fast, slow, dtype=F32, rtol=RTOL):
    fast = np.asarray(fast)
    slow = np.asarray(slow)
    assert fast.dtype == slow.dtype == dtype
    np.testing.assert_allclose(fast, slow, rtol=rtol, atol=0)


def _signs(rng, shape):
    return rng.choice(np.array([-1.0, 1.0], F32), shape)


def _ranking(rng, shape, margin):
    t = _signs(rng, shape)
    x1 = rng.standard_normal(shape).astype(F32)
    x2 = rng.standard_normal(shape).astype(F32)
    x2[0, 0] = x1[0, 0] - F32(t[0, 0] * 0.5)  # m = margin - 0.5: the kink for margin 0.5
    x1[1, :2] = x2[1, :2] = 3.0  # m = margin
    x1[2, 0], x2[2, 0] = F32(1e30), F32(-1e-30)  # far exponents: x2 - x1 rounds, TwoSum keeps the rest
    return t, x1, x2


def _multilabel(rng, shape):
    n, k = shape
    y = np.full(shape, -1.0, F32)
    for r in range(n):
        c = int(rng.integers(0, min(k, 5) + 1))
        y[r, :c] = rng.choice(k, c, replace=False)
    x = rng.standard_normal(shape).astype(F32)
    y[0, :3] = [1, 1, -1]  # a class listed twice counts twice
    y[1] = -1  # no targets: 0
    y[2, :3] = [0, -1, 1]  # entries after the first -1 are ignored
    x[2, 1] = x[2, 0] - 1.0  # and a pair exactly on the kink (m = 0)
    return y, x


def _hinge(rng, shape, margin):
    t = _signs(rng, shape)
    x = (2 * rng.random(shape)).astype(F32)
    x[0, 0], t[0, 0] = F32(margin), -1.0  # on the kink
    return t, x


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_margin_ranking_matches_the_generic_kernel(monkeypatch, reduction, margin):
    rng = np.random.default_rng(1)
    assert cpu.fast_kernel("margin_ranking", {"margin": margin}, "float32") is not None
    loss = losskit.MarginRanking(margin=margin, reduction=reduction)
    for shape in SHAPES:
        t, x1, x2 = _ranking(rng, shape, margin)
        w = rng.random(shape[0])
        w[1] = 0.0

        def both(t=t, x1=x1, x2=x2, w=w):
            return (loss.value_and_gradient(t, x1, x2=x2, sample_weight=w),
                    loss.value_and_gradients(t, x1, x2=x2, sample_weight=w),
                    losskit.margin_ranking(t, x1, x2=x2, margin=margin))

        (v, g), (v2, grads), per = both()
        (sv, sg), (sv2, sgrads), sper = _generic(monkeypatch, both)
        for a, b in [(v, sv), (g, sg), (v2, sv2), (grads["y_pred"], sgrads["y_pred"]),
                     (grads["x2"], sgrads["x2"]), (per, sper)]:
            _close(a, b)
        np.testing.assert_array_equal(grads["x2"], -grads["y_pred"])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [1.0, 0.25])
def test_hinge_embedding_matches_the_generic_kernel(monkeypatch, reduction, margin):
    rng = np.random.default_rng(2)
    assert cpu.fast_kernel("hinge_embedding", {"margin": margin}, "float32") is not None
    loss = losskit.HingeEmbedding(margin=margin, reduction=reduction)
    for shape in SHAPES:
        t, x = _hinge(rng, shape, margin)
        w = rng.random(shape[0])
        w[2] = 0.0
        for dtype in (F32, np.float64):
            tt, xx = t.astype(dtype), x.astype(dtype)

            def fn(tt=tt, xx=xx, w=w):
                return (*loss.value_and_gradient(tt, xx, sample_weight=w),
                        losskit.hinge_embedding(tt, xx, margin=margin))

            for a, b in zip(fn(), _generic(monkeypatch, fn), strict=True):
                _close(a, b, dtype, RTOL if dtype == F32 else 8 * 2.0**-52)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_margin_matches_the_generic_kernel(monkeypatch, reduction):
    """float32 and float64 (its own C kernel, with compensated row sums)."""
    rng = np.random.default_rng(3)
    assert cpu.fast_kernel("multilabel_margin", {}, "float32") is not None
    loss = losskit.MultiLabelMargin(reduction=reduction)
    assert cpu.fast_kernel("multilabel_margin", {}, "float64") is not None
    for shape in [(37, 11), (300, 3), (5, 200)]:
        y, x = _multilabel(rng, shape)
        w = rng.random(shape[0])
        w[3] = 0.0
        for dtype in (F32, np.float64):
            yy, xx = y.astype(dtype), x.astype(dtype)
            if dtype == np.float64:
                xx = xx * 1e3 + rng.standard_normal(shape)  # digits beyond float32's

            def fn(yy=yy, xx=xx, w=w):
                return (*loss.value_and_gradient(yy, xx, sample_weight=w),
                        losskit.multilabel_margin(yy, xx))

            for a, b in zip(fn(), _generic(monkeypatch, fn), strict=True):
                _close(a, b, dtype, RTOL if dtype == F32 else 8 * 2.0**-52)


def test_nan_and_inf_rows_as_the_generic_kernel(monkeypatch):
    rng = np.random.default_rng(4)
    t, x1, x2 = _ranking(rng, (9, 7), 0.5)
    x1[3, 2], x2[4, 1], x1[5, 0], x2[6, 6] = np.nan, np.inf, -np.inf, np.inf
    x1[6, 6] = np.inf  # inf - inf: NaN
    t[7, 3] = np.nan  # a NaN label: its row NaN
    th, xh = _hinge(rng, (9, 7), 1.0)
    xh[3, 2], xh[4, 1], xh[5, 0] = np.nan, np.inf, -np.inf
    th[4, 1], th[5, 0] = -1.0, -1.0
    xh[6, 0], th[6, 0] = np.inf, 1.0
    th[7, 3] = np.nan
    y, xm = _multilabel(rng, (9, 7))
    y[3, :2], y[4, :2], y[5, :2] = [0, -1], [1, -1], [2, 3]
    xm[3, 4], xm[4, 1], xm[5, 0], xm[6, 0] = np.nan, np.nan, np.inf, -np.inf  # non-target, target
    xm[1, 0] = np.nan  # a row without targets stays 0

    def fn():
        mr = losskit.MarginRanking(margin=0.5, reduction="none")
        v, grads = mr.value_and_gradients(t, x1, x2=x2)
        return [v, grads["y_pred"], grads["x2"],
                *losskit.HingeEmbedding(reduction="none").value_and_gradient(th, xh),
                *losskit.MultiLabelMargin(reduction="none").value_and_gradient(y, xm)]

    fast, slow = fn(), _generic(monkeypatch, fn)
    for a, b in zip(fast, slow, strict=True):
        _close(a, b)
    assert np.isnan(fast[0][[3, 6, 7]]).all()
    assert np.isfinite(fast[0][[0, 1, 2, 8]]).all()
    assert fast[5][1] == 0.0
    assert np.isnan(fast[5][[3, 4]]).all()


def test_margin_ranking_keeps_a_margin_that_cancels():
    """m = margin - (x1 - x2) with x1 - x2 within 2^-20 of the margin: the C kernel's TwoSum keeps
    every digit. Expected: the exact rational value (Fraction), rounded to float32 once."""
    x1 = np.array([[1.0 + 2.0**-23, 4.0]], F32)
    x2 = np.array([[2.0**-30, 2.0]], F32)
    t = np.ones((1, 2), F32)
    margin = 1.0 + 2.0**-20
    assert cpu.fast_kernel("margin_ranking", {"margin": margin}, "float32") is not None
    value, grads = losskit.MarginRanking(margin=margin, reduction="sum").value_and_gradients(
        t, x1, x2=x2)
    m = [Fraction(margin) - (Fraction(float(a)) - Fraction(float(b))) for a, b in zip(x1[0], x2[0],
                                                                                     strict=True)]
    exact = sum(max(mi, Fraction(0)) for mi in m) / 2
    assert m[0] > 0
    assert m[1] < 0
    assert float(value) == float(np.float32(float(exact)))
    assert grads["y_pred"].tolist() == [[-0.5, 0.0]]
    assert grads["x2"].tolist() == [[0.5, 0.0]]


def test_labels_are_still_checked():
    x = np.zeros((2, 3), F32)
    with pytest.raises(ValueError, match="hinge_embedding: y_true must hold labels -1 and 1"):
        losskit.hinge_embedding(np.array([[1, -1, 0], [1, 1, 1]], F32), x)
    with pytest.raises(ValueError, match="margin_ranking"):
        losskit.margin_ranking(np.full((2, 3), 2.0, F32), x, x2=x)
    assert np.isnan(losskit.hinge_embedding(np.array([[1, -1, np.nan], [1, 1, 1]], F32), x)[0])


def test_tensors_give_every_member_its_gradient():
    """losskit's class on CPU float32 tensors (the C kernel through the autograd bridge) and the
    PyTorch twin: both inputs of margin ranking differentiated, as PyTorch's own loss in float64."""
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(64, 30, generator=g)
    x2 = torch.randn(64, 30, generator=g)
    y = torch.randint(0, 2, (64, 30), generator=g) * 2.0 - 1
    a64, b64 = x1.double().requires_grad_(), x2.double().requires_grad_()
    ref = torch.nn.functional.margin_ranking_loss(a64, b64, y.double(), margin=0.3)
    ref.backward()
    for i, call in enumerate((lambda a, b: losskit.MarginRanking(margin=0.3)(y, a, x2=b),
                 lambda a, b: lt.margin_ranking_loss(a, b, y, margin=0.3),
                 lambda a, b: lt.MarginRankingLoss(margin=0.3, reduction="sum")(a, b, y) / y.numel())):
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        loss = call(a, b)
        loss.backward()
        assert abs(float(loss.detach()) - float(ref.detach())) <= 2.0**-22 * float(ref.detach())
        torch.testing.assert_close(a.grad, a64.grad.float(), rtol=2.0**-22, atol=0)
        torch.testing.assert_close(b.grad, b64.grad.float(), rtol=2.0**-22, atol=0)
        if i == 1:  # the twin: both gradients from the kernel's one buffer, handed over uncopied
            assert b.grad.data_ptr() == a.grad.data_ptr() + 4 * a.numel()
