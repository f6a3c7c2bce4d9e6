"""Self-tests of the mpmath oracle against derivations written by hand in this file."""

from __future__ import annotations

import math
from collections.abc import Iterator

import mpmath
import numpy as np
import pytest
from mpmath import mpf

from . import reference as ref

LS = mpf(0.1)  # the float 0.1, exactly


def close(a: mpf, b: mpf, digits: int = 40, atol: mpf | None = None) -> bool:
    """``a`` equals ``b`` to ``digits`` significant digits, or within ``atol``."""
    if atol is not None and abs(a - b) <= atol:
        return True
    if b == 0:
        return a == 0
    return abs(a - b) <= mpf(10) ** (-digits) * abs(b)


def all_close(got: list[mpf], want: list[mpf], digits: int = 40, atol: mpf | None = None) -> bool:
    """Elementwise :func:`close`."""
    if len(got) != len(want):
        return False
    return all(close(g, w, digits, atol) for g, w in zip(got, want, strict=True))


def sigmoid(x: mpf) -> mpf:
    """Logistic function at working precision."""
    return 1 / (1 + mpmath.exp(-x))


def softmax(x: list[float]) -> list[mpf]:
    """Softmax at working precision."""
    xs = [mpf(v) for v in x]
    m = max(xs)
    e = [mpmath.exp(v - m) for v in xs]
    s = mpmath.fsum(e)
    return [v / s for v in e]


@pytest.fixture(autouse=True)
def _precision() -> Iterator[None]:
    """Run the hand derivations at 80 digits."""
    with mpmath.mp.workdps(80):
        yield


# --------------------------------------------------------------------------- values


def test_bce_half_is_log2() -> None:
    for t in (0.0, 1.0, 0.3):
        assert close(ref.bce([t], [0.5]), mpmath.log(2))
    assert close(ref.bce([1.0], [0.5], label_smoothing=0.1), mpmath.log(2))
    assert close(ref.bce([1.0], [0.0], from_logits=True), mpmath.log(2))


def test_bce_label_smoothing_is_exact() -> None:
    p = mpf(0.2)
    tprime = 1 - LS / 2  # exact: 1*(1-ls) + ls/2
    want = -(tprime * mpmath.log(p) + (1 - tprime) * mpmath.log(1 - p))
    assert close(ref.bce([1.0], [0.2], label_smoothing=0.1), want)


def test_bce_extreme_probabilities() -> None:
    assert close(ref.bce([1.0], [1e-300]), -mpmath.log(mpf(1e-300)))
    # log1p accuracy: -log(1 - 1e-300) = 1e-300 (1 + 5e-301) to 40 digits
    assert close(ref.bce([0.0], [1e-300]), mpf(1e-300))
    eps = mpf(2) ** -52
    assert close(ref.bce([1.0], [1 - 2.0**-52]), -mpmath.log1p(-eps))


def test_bce_zero_log_zero_and_inf() -> None:
    assert ref.bce([0.0, 1.0], [0.0, 1.0]) == 0
    assert ref.bce([1.0], [0.0]) == mpmath.inf
    assert ref.bce([0.0], [1.0]) == mpmath.inf
    assert ref.bce([0.0], [0.0], label_smoothing=0.1) == mpmath.inf


def test_bce_logits() -> None:
    x = mpf(69.0)
    assert close(ref.bce([1.0], [69.0], from_logits=True), mpmath.log(1 + mpmath.exp(-x)))
    assert close(ref.bce([0.0], [-1e4], from_logits=True), mpmath.exp(mpf(-1e4)), 30)
    assert ref.bce([1.0], [math.inf], from_logits=True) == 0
    assert ref.bce([0.0], [math.inf], from_logits=True) == mpmath.inf
    assert ref.bce([0.5], [-math.inf], from_logits=True) == mpmath.inf


def test_scce_logits_30_0() -> None:
    v = ref.scce(0, [30.0, 0.0], from_logits=True)
    assert float(v) == pytest.approx(9.357622968840175e-14, rel=1e-15)
    assert close(v, mpmath.log1p(mpmath.exp(-30)))
    assert close(ref.scce(1, [30.0, 0.0], from_logits=True), 30 + mpmath.log1p(mpmath.exp(-30)))


def test_cce_renormalises() -> None:
    assert close(ref.cce([0.0, 1.0], [2.0, 6.0]), mpmath.log(mpf(8) / 6))
    assert close(ref.scce(1, [2.0, 6.0]), mpmath.log(mpf(8) / 6))
    t, p = [0.25, 0.75], [0.5, 0.5]
    assert close(ref.cce(t, p), mpmath.log(2))
    # label smoothing with K = 2: t' = t (1 - ls) + ls / 2
    tp = [mpf(0.25) * (1 - LS) + LS / 2, mpf(0.75) * (1 - LS) + LS / 2]
    want = -(tp[0] * mpmath.log(mpf(0.1)) + tp[1] * mpmath.log(mpf(0.9) / mpf(1.0)))
    assert close(ref.cce([0.25, 0.75], [0.1, 0.9], label_smoothing=0.1), want, 15)


def test_cce_logits_matches_log_softmax() -> None:
    x, t = [1.0, -2.0, 0.5], [0.2, 0.3, 0.5]
    s = softmax(x)
    want = -mpmath.fsum(mpf(tj) * mpmath.log(sj) for tj, sj in zip(t, s, strict=True))
    assert close(ref.cce(t, x, from_logits=True), want)
    assert ref.cce([1.0, 0.0], [0.0, 0.0]) == mpmath.inf
    assert ref.cce([0.0, 1.0], [0.0, 1.0]) == 0


def test_kld() -> None:
    assert ref.kld([0.2, 0.8], [0.2, 0.8]) == 0
    assert ref.kld([0.0, 1.0], [0.5, 0.5]) == mpmath.log(2)
    assert ref.kld([1.0, 0.0], [0.0, 1.0]) == mpmath.inf
    assert ref.kld([0.0, 1.0], [0.0, 1.0]) == 0
    # tiny ratios t/p (a log1p((t - p)/p) form would round to log1p(-1) = -inf)
    assert close(ref.kld([1e-300], [0.5]), mpf(1e-300) * mpmath.log(mpf(1e-300) / mpf(0.5)))
    assert close(ref.kld([2.0**-60], [1.0]), -60 * mpf(2) ** -60 * mpmath.log(2))
    t, p = mpf(0.3), mpf(float(mpf(0.3) * (1 + mpf(2) ** -40)))
    assert close(ref.kld([0.3], [float(p)]), t * mpmath.log(t / p), 30)


def test_mse_mae_hinge() -> None:
    assert ref.mse([1.0, 2.0], [3.0, 5.0]) == mpf(13) / 2
    assert ref.mae([1.0, 2.0], [3.0, 5.0]) == mpf(5) / 2
    assert ref.mse([1e150], [-1e150]) == mpf(1e150) ** 2 * 4
    assert ref.hinge([1.0, -1.0], [0.5, 3.0]) == mpf("0.5") / 2 + 4 / mpf(2)
    assert ref.hinge([1.0], [2.0]) == 0


# --------------------------------------------------------------------------- gradients


def test_grad_mse() -> None:
    t, p = [1.0, -2.0, 1e-150, 3.0], [1.5, 7.0, -2e-150, 3.0]
    want = [2 * (mpf(pi) - mpf(ti)) / 4 for ti, pi in zip(t, p, strict=True)]
    assert all_close(ref.grad(ref.mse, t, p), want)


def test_grad_mae_and_hinge_kinks() -> None:
    assert all_close(
        ref.grad(ref.mae, [1.0, 2.0, 0.0, 1e-300], [1.0, 1.0, 0.0, 0.0]),
        [mpf(0), mpf(-1) / 4, mpf(0), mpf(-1) / 4],
    )
    # exactly at the margin t*f = 1: mean of the one-sided slopes, -t / (2n)
    g = ref.grad(ref.hinge, [1.0, -1.0, 1.0], [1.0, -1.0, 0.25])
    assert all_close(g, [mpf(-1) / 6, mpf(1) / 6, mpf(-1) / 3])


BCE_ROWS = [
    ([1.0, 0.0, 0.3, 1.0], [1e-300, 1e-300, 0.7, 1 - 2.0**-52]),
    ([0.0, 1.0, 0.5, 0.999], [1 - 2.0**-52, 0.5, 0.5, 0.999]),
]
LOGIT_ROWS = [
    ([1.0, 0.0, 0.3, 1.0], [69.0, 69.0, -3.0, 1e4]),
    ([0.0, 1.0, 0.5, 0.95], [-1e4, 2.5, 0.0, 2.944]),
]


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize(("t", "p"), BCE_ROWS)
def test_grad_bce_probabilities(t: list[float], p: list[float], ls: float) -> None:
    n = len(t)
    want = []
    for ti, pi in zip(t, p, strict=True):
        a = mpf(ti) * (1 - mpf(ls)) + mpf(ls) / 2
        want.append((-a / mpf(pi) + (1 - a) / (1 - mpf(pi))) / n)
    assert all_close(ref.grad(ref.bce, t, p, label_smoothing=ls), want)


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize(("t", "x"), LOGIT_ROWS)
def test_grad_bce_logits(t: list[float], x: list[float], ls: float) -> None:
    n = len(t)
    want = []
    for ti, xi in zip(t, x, strict=True):
        a = mpf(ti) * (1 - mpf(ls)) + mpf(ls) / 2
        # sigmoid(x) - a, written without cancellation for a = 1
        g = -1 / (1 + mpmath.exp(mpf(xi))) if a == 1 else sigmoid(mpf(xi)) - a
        want.append(g / n)
    assert all_close(ref.grad(ref.bce, t, x, from_logits=True, label_smoothing=ls), want)


CCE_ROWS = [
    ([0.0, 1.0, 0.0], [0.2, 0.5, 0.3]),
    ([1.0, 0.0, 0.0], [1e-300, 1 - 2.0**-52, 1e-300]),
    ([0.2, 0.3, 0.5], [3.0, 1.0, 1e-5]),
    ([0.0, 0.0, 1.0], [0.0, 0.5, 0.5]),
]


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize(("t", "p"), CCE_ROWS)
def test_grad_cce_probabilities(t: list[float], p: list[float], ls: float) -> None:
    k = len(t)
    tp = [mpf(tj) * (1 - mpf(ls)) + mpf(ls) / k for tj in t]
    big_p = mpmath.fsum(mpf(v) for v in p)
    s = mpmath.fsum(tp)
    got = ref.grad(ref.cce, t, p, label_smoothing=ls)
    if ls and 0.0 in p:  # a zero probability under a positive smoothed label
        assert got[p.index(0.0)] == -mpmath.inf
        return
    want = [s / big_p - (0 if c == 0 else c / mpf(pj)) for c, pj in zip(tp, p, strict=True)]
    assert all_close(got, want)


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize(
    ("t", "x"),
    [
        ([1.0, 0.0, 0.0], [30.0, 0.0, -2.0]),
        ([0.0, 1.0, 0.0], [1e4, 9e3, -1e4]),
        ([0.2, 0.3, 0.5], [69.0, 0.0, 1.0]),
    ],
)
def test_grad_cce_logits(t: list[float], x: list[float], ls: float) -> None:
    k = len(t)
    tp = [mpf(tj) * (1 - mpf(ls)) + mpf(ls) / k for tj in t]
    s = softmax(x)
    total = mpmath.fsum(tp)
    want = [sj * total - c for sj, c in zip(s, tp, strict=True)]
    for j, c in enumerate(tp):
        if c == 1 and total == 1:  # softmax_j - 1 = -(sum of the others), no cancellation
            want[j] = -mpmath.fsum(s[i] for i in range(k) if i != j)
    got = ref.grad(ref.cce, t, x, from_logits=True, label_smoothing=ls)
    # entries far below the float64 range only need absolute accuracy
    assert all_close(got, want, 40, atol=mpf("1e-340"))


def test_grad_scce() -> None:
    x = [30.0, 0.0]
    s = softmax(x)
    assert all_close(ref.grad(ref.scce, 0, x, from_logits=True), [-s[1], s[1]])
    p = [0.25, 0.5, 1.25]
    want = [1 / mpf(2), 1 / mpf(2) - 2, 1 / mpf(2)]
    assert all_close(ref.grad(ref.scce, 1, p), want)


def test_grad_kld() -> None:
    t, p = [0.2, 0.0, 0.8], [1e-300, 0.5, 0.5 - 2.0**-40]
    want = [-mpf(ti) / mpf(pi) for ti, pi in zip(t, p, strict=True)]
    assert all_close(ref.grad(ref.kld, t, p), want)
    assert all_close(ref.grad(ref.kld, [0.0, 1.0], [0.0, 1.0]), [mpf(0), mpf(-1)])


def test_grad_at_domain_border() -> None:
    g = ref.grad(ref.bce, [1.0, 0.0], [0.0, 0.0])
    assert g[0] == -mpmath.inf
    assert close(g[1], mpf(1) / 2)
    assert mpmath.isnan(ref.grad(ref.bce, [0.0], [math.inf], from_logits=True)[0])


# --------------------------------------------------------------------------- comparisons


def test_ulp_error() -> None:
    one_ulp = mpf(1) + mpf(2) ** -52
    err = ref.ulp_error(np.array([1.0, 0.0, 1e-310, 2.0]), [one_ulp, 0, 1e-310, mpmath.inf], "f8")
    assert err[0] == pytest.approx(1.0, rel=1e-12)
    assert np.isnan(err[1:]).all()
    err32 = ref.ulp_error(np.array([1.0], np.float32), [mpf(1) + mpf(2) ** -21], np.float32)
    assert err32[0] == pytest.approx(4.0, rel=1e-5)
    assert np.isnan(ref.ulp_error(np.array([1e39]), [mpf(1e39)], np.float32)[0])
    assert ref.ulp_error(np.array([np.nan]), [mpf(1)], np.float64)[0] == np.inf


def test_assert_ulp_rules() -> None:
    ref.assert_ulp(np.array([1.0, 0.0, np.inf]), [mpf(1) + mpf(2) ** -50, 0, mpf(1e400)], "f8")
    with pytest.raises(AssertionError, match="worst at index"):
        ref.assert_ulp(np.array([1.0]), [mpf(1) + mpf(2) ** -48], "f8", inputs={"x": [[1.0]]})
    with pytest.raises(AssertionError):
        ref.assert_ulp(np.array([1e-300]), [mpf(0)], "f8")
    with pytest.raises(AssertionError):
        ref.assert_ulp(np.array([np.nan]), [mpf(1)], "f8")
    with pytest.raises(AssertionError):
        ref.assert_ulp(np.array([1.7e308]), [mpmath.inf], "f8")
    # subnormal exact values: flushed to zero, or absolute error in subnormal spacings
    ref.assert_ulp(np.array([0.0, 0.0, 1e-310]), [mpf(1e-4000), mpf(1e-310), mpf(1e-310)], "f8")
    with pytest.raises(AssertionError):
        ref.assert_ulp(np.array([1e-310]), [mpf(2e-310)], "f8")
    # soft-target exception: ulps of a larger scale
    ref.assert_ulp(np.array([1e-10]), [mpf(0)], "f8", scale=np.array([mpf(1e6)], dtype=object))
