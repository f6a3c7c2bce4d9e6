"""losskit.boosting's fast kernels: the table exponentials against mpmath, every precision tier of the
log-link gradient (plain float64, the 62-bit table exp, the 76-bit second tier, double-double) against
the mpmath oracle, chunking, and inputs left untouched.

The expected values are mpmath's (60 digits, on the exact float inputs); the tiers are reached by
construction: ``y = exp(r) (1 + delta)`` with ``|delta|`` from 0.5 down to 1e-12 puts samples in each
regime (the kernel's thresholds: a binade gap of 2 for plain float64, then 2**-11 and 2**-24).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from mpmath import mpf
from oracle import reference as R

from losskit import boosting
from losskit.boosting import _kernels as B


def _mp(x: float) -> mpf:
    return mpf(float(x))


def test_table_is_two_to_the_j_over_2048():
    with mpmath.workdps(40):
        exact = {j: mpmath.power(2, mpf(j) / 2048) for j in range(0, 2048, 3)}
        worst = max(abs(_mp(B._MID_HI[j]) + _mp(B._MID_LO[j]) - t) / t for j, t in exact.items())
    assert worst < mpf(2) ** -104
    assert np.all(np.abs(B._MID_LO) <= np.spacing(B._MID_HI) / 2)


@pytest.mark.parametrize(("fn", "bound"), [(B._exp_mid, -62), (B._exp_precise, -76)])
def test_table_exponentials_vs_mpmath(fn, bound):
    rng = np.random.default_rng(5)
    x = np.concatenate([
        rng.uniform(-650, 650, 400), rng.uniform(-1, 1, 200), rng.uniform(-1e-3, 1e-3, 100),
        [650.0, -650.0, 0.0, 1e-300, -5e-324, 1e-5, -1e-5, 709.0 - 59.0, np.log(2.0), -np.log(2.0)],
        # halfway points of the reduction and the table ends
        np.arange(-5, 6) * float(B._MID_L) / 2,
    ])
    parts = fn(x)
    with mpmath.workdps(50):
        worst = max(
            abs(sum(_mp(p[i]) for p in parts) - mpmath.exp(_mp(x[i]))) / mpmath.exp(_mp(x[i]))
            for i in range(x.size)
        )
    assert worst < mpf(2) ** bound


def _tweedie_grad_hess(y: float, r: float, p: float) -> tuple[mpf, mpf, mpf]:
    y, r, p = _mp(y), _mp(r), _mp(p)
    e1, e2 = mpmath.exp((2 - p) * r), y * mpmath.exp((1 - p) * r)
    return e1 - e2, (2 - p) * e1 - (1 - p) * e2, max(abs(e1), abs(e2))


def _near_optimum(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    r = rng.normal(0.0, 3.0, n)
    # dense in [0.02, 0.3], where a plain float64 exp(r) - y would already lose 8 ulp
    mags = np.array([0.5, 0.3, 0.2, 0.1, 0.07, 0.05, 0.03, 0.02, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6,
                     1e-7, 1e-8, 1e-10, 1e-12])
    delta = rng.choice(mags, n) * rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 1.0, n)
    return np.exp(r) * (1.0 + delta), r


@pytest.fixture(params=["compiled", "numpy"])
def path(request, monkeypatch):
    """The log-link losses run the compiled middle tier (``_cpu.c``, ``boost_*``) when the extension
    is built, else the NumPy tiers; both are checked."""
    if request.param == "compiled" and B._cpu is None:
        pytest.skip("the C extension is not built")
    if request.param == "numpy":
        monkeypatch.setattr(B, "_cpu", None)
    return request.param


@pytest.mark.parametrize("power", [1.0, 2.0, 1.5, 1.2, 0.0, 3.0, 0.5])
def test_every_tier_vs_mpmath(power, path):
    """Targets within 50 % of exp(r) down to 1e-12 of it: plain, 62-bit, 76-bit and double-double
    samples in one array, spread over several chunks."""
    rng = np.random.default_rng(int(power * 10) + 1)
    y, r = _near_optimum(rng, 1200)
    # spread the samples over three chunks, the rest filled with generic points
    big_y = np.exp(rng.normal(0.0, 3.0, 2 * B._CHUNK + 500))
    big_r = rng.normal(0.0, 3.0, big_y.size)
    pos = rng.choice(big_y.size, y.size, replace=False)
    big_y[pos], big_r[pos] = y, r
    loss = boosting.HalfTweedieLoss(power=power)
    g, h = loss.gradient_hessian(big_y, big_r)
    check = np.concatenate([pos, rng.choice(big_y.size, 100, replace=False)])
    with mpmath.workdps(60):
        rows = [_tweedie_grad_hess(big_y[i], big_r[i], power) for i in check]
    ge = [row[0] for row in rows]
    he = [row[1] for row in rows]
    cancel = mpf(2) ** -40
    scale = np.array([row[2] * cancel if abs(row[0]) < cancel * row[2] else None for row in rows],
                     dtype=object)
    inputs = {"y_true": big_y[check], "raw_prediction": big_r[check]}
    R.assert_ulp(g[check], ge, np.float64, inputs=inputs, scale=scale, what=f"tweedie {power} gradient")
    hscale = None
    if not 1.0 <= power <= 2.0:  # the hessian's terms may cancel too (documented exception)
        hscale = np.array([None] * len(rows), dtype=object)
        for k, i in enumerate(check):
            t1 = abs((2 - _mp(power)) * mpmath.exp((2 - _mp(power)) * _mp(big_r[i])))
            t2 = abs((1 - _mp(power)) * _mp(big_y[i]) * mpmath.exp((1 - _mp(power)) * _mp(big_r[i])))
            if abs(he[k]) < cancel * max(t1, t2):
                hscale[k] = max(t1, t2) * cancel
    R.assert_ulp(h[check], he, np.float64, inputs=inputs, scale=hscale, what=f"tweedie {power} hessian")
    # chunking changes nothing: the same samples alone give the same bits
    g1, h1 = loss.gradient_hessian(big_y[check], big_r[check])
    np.testing.assert_array_equal(g1, g[check])
    np.testing.assert_array_equal(h1, h[check])


@pytest.mark.parametrize("name", ["poisson", "gamma", "binomial", "exponential"])
def test_wild_elements_mixed_with_tame_ones(name, path):
    """Raw scores beyond the kernels' ranges (+-700, +-1000) inside a large array: the same bits as
    when each is computed on its own, and never NaN."""
    rng = np.random.default_rng(3)
    n = B._CHUNK + 100
    r = rng.normal(0.0, 2.0, n)
    unit = name in ("binomial", "exponential")
    y = rng.uniform(0.0, 1.0, n) if unit else np.exp(rng.normal(0.0, 2.0, n))
    idx = rng.choice(n, 40, replace=False)
    r[idx] = rng.choice([700.0, -700.0, 1000.0, -1000.0, 745.0, -745.0, 660.0, -660.0], 40)
    y[idx[:10]] = rng.choice([1e-300, 1e300, 5e-324], 10) if name in ("poisson", "gamma") else y[idx[:10]]
    loss = boosting.get(name)
    g, h = loss.gradient_hessian(y, r)
    assert not np.isnan(g).any()
    assert not np.isnan(h).any()
    for i in idx:
        gi, hi = loss.gradient_hessian(y[i : i + 1], r[i : i + 1])
        assert gi[0] == g[i] or (np.isinf(gi[0]) and gi[0] == g[i])
        assert hi[0] == h[i]


def test_inputs_are_not_modified():
    rng = np.random.default_rng(4)
    for name in ["poisson", "gamma", "tweedie", "binomial", "exponential", "squared_error", "huber"]:
        loss = boosting.get(name)
        log_link = name in ("poisson", "gamma", "tweedie")
        y = np.exp(rng.normal(size=1000)) if log_link else rng.uniform(size=1000)
        r = np.log(y) + rng.normal(0.0, 0.1, 1000) if log_link else rng.normal(size=1000)
        r[:3] = [800.0, -800.0, 0.0]
        w = rng.uniform(0.0, 2.0, 1000)
        w[5] = 0.0
        y0, r0, w0 = y.copy(), r.copy(), w.copy()
        g, h = loss.gradient_hessian(y, r, w)
        loss.loss(y, r, w)
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(r, r0)
        np.testing.assert_array_equal(w, w0)
        assert g[5] == 0.0
        assert h[5] == 0.0


@pytest.mark.parametrize(("name", "embedded"), [
    ("binomial", False), ("binomial", True), ("binomial", "tiled"), ("exponential", False),
    ("exponential", True), ("exponential", "tiled")],
    ids=["binomial-alone", "binomial-among-hard-labels", "binomial-tiled", "exponential-alone",
         "exponential-among-hard-labels", "exponential-tiled"])
def test_soft_labels_near_the_optimum_vs_mpmath(name, embedded, path, monkeypatch):
    """Soft labels within 50 % down to 1e-12 of sigmoid(r) (sigmoid(2r) for the exponential loss):
    plain, 62-bit and double-double samples in one array; alone, among ten times as many hard labels
    (the compiled binomial kernel, which hands them to the same tiers) and repeated over three chunks
    (``tiled``; the last copy is checked). On the NumPy path the chunks after the first one that
    cancels mostly take ``_kernel_soft``, every element at once; on the compiled path the soft labels
    run ``_cpu.boost_soft`` (every element, the flagged ones through the 2**-76 and double-double
    tiers)."""
    soft_c = []
    if path == "compiled":
        run = B._cpu.boost_soft
        monkeypatch.setattr(B._cpu, "boost_soft", lambda *a: soft_c.append(1) or run(*a))
    rng = np.random.default_rng(7)
    n = 800
    r = rng.normal(0.0, 4.0, n)
    r[:20] = rng.choice([300.0, -300.0, 600.0, -600.0, 40.0, -40.0], 20)
    mags = np.array([0.5, 0.2, 0.1, 0.05, 0.02, 1e-2, 1e-3, 1e-4, 1e-6, 1e-9, 1e-12])
    delta = rng.choice(mags, n) * rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 1.0, n)
    k = 1.0 if name == "binomial" else 2.0
    # r >= 0 with labels just below 1/2 (up to 5 % below sigmoid(r)): 1 - y is not a double there
    r[-40:] = rng.uniform(0.0, 0.05, 40)
    delta[-40:] = -rng.uniform(0.002, 0.05, 40)
    with np.errstate(over="ignore"):
        y = np.clip(1.0 / (1.0 + np.exp(-k * r)) * (1.0 + delta), 0.0, 1.0)
    if embedded == "tiled":
        calls = []
        cls = B.BinomialKernel if name == "binomial" else B.ExponentialKernel
        soft = cls._kernel_soft
        monkeypatch.setattr(cls, "_kernel_soft", lambda *a: calls.append(1) or soft(*a))
        reps = 3 * B._CHUNK // n + 1
        g, h = boosting.get(name).gradient_hessian(np.tile(y, reps), np.tile(r, reps))
        g, h = g[-n:], h[-n:]
        assert calls if path == "numpy" else soft_c
    elif embedded:
        r_hard = rng.normal(0.0, 4.0, 10 * n)
        y_hard = (rng.uniform(size=r_hard.size) < 0.5).astype(float)
        g, h = boosting.get(name).gradient_hessian(np.concatenate([y, y_hard]), np.concatenate([r, r_hard]))
        g, h = g[:n], h[:n]
    else:
        g, h = boosting.get(name).gradient_hessian(y, r)
    ge, he, scale_arr = _soft_expected(name, y, r)
    inputs = {"y_true": y, "raw_prediction": r}
    R.assert_ulp(g, ge, np.float64, inputs=inputs, scale=scale_arr, what=f"{name} gradient")
    R.assert_ulp(h, he, np.float64, inputs=inputs, what=f"{name} hessian")


@pytest.mark.parametrize("name", ["absolute_error", "huber_loss", "pinball_loss"])
def test_identity_link_blocks(name, monkeypatch):
    """The compiled identity-link pass (``_cpu.boost_identity``): the derivative of exact
    differences, and a NaN or infinity anywhere (here past the vector loop's first lanes) is refused."""
    if B._cpu is None:
        pytest.skip("the C extension is not built")
    y = np.arange(30.0)
    d = np.tile([0.0, 0.25, -0.25, 3.0, -3.0, 1.0], 5)  # exact differences: r - y == d
    loss = boosting.get(name)
    g, h = loss.gradient_hessian(y, y + d)
    if name == "absolute_error":
        expected = np.sign(d)
    elif name == "huber_loss":  # delta = 1: the difference, clipped
        expected = np.clip(d, -1.0, 1.0)
    else:  # quantile 0.5: -q below, 1 - q above, 1/2 - q at the kink
        expected = np.where(d > 0, 0.5, np.where(d < 0, -0.5, 0.0))
    np.testing.assert_array_equal(g, expected)
    np.testing.assert_array_equal(h, np.ones(30))
    for bad in (np.nan, np.inf):
        r = y + d
        r[23] = bad
        with pytest.raises(ValueError, match="raw_prediction must be finite"):
            loss.gradient_hessian(y, r)
    # finite inputs whose difference overflows are not refused: the derivative is the limit
    g, _h = loss.gradient_hessian(np.array([-1e308, 1.0]), np.array([1e308, 1.0]))
    assert g[0] == {"absolute_error": 1.0, "huber_loss": 1.0, "pinball_loss": 0.5}[name]


def _soft_expected(name: str, y: np.ndarray, r: np.ndarray) -> tuple[list, list, np.ndarray]:
    """mpmath's gradient and hessian of the binomial or exponential loss, and the absolute error
    scale where the gradient cancels below 2**-40 of its larger term (the oracle's convention)."""
    ge, he, scale = [], [], []
    cancel = mpf(2) ** -40
    with mpmath.workdps(60):
        for a, b in zip(y, r, strict=True):
            ym, rm = _mp(a), _mp(b)
            if name == "binomial":  # e = exp(-|r|): 1 - s is e/(1 + e) for r >= 0, no rounding to 1
                e = mpmath.exp(-abs(rm))
                s, one_minus_s = (1 / (1 + e), e / (1 + e)) if rm >= 0 else (e / (1 + e), 1 / (1 + e))
                grad = (1 - ym) - one_minus_s if rm >= 0 else s - ym
                hess, big = e / (1 + e) ** 2, max(s, ym) if rm < 0 else max(1 - ym, one_minus_s)
            else:
                t1, t2 = (1 - ym) * mpmath.exp(rm), ym * mpmath.exp(-rm)
                grad, hess, big = t1 - t2, t1 + t2, max(t1, t2)
            ge.append(+grad)
            he.append(+hess)
            scale.append(big * cancel if abs(grad) < cancel * big else None)
    return ge, he, np.array(scale, dtype=object)


@pytest.mark.parametrize("name", ["binomial", "exponential"])
def test_soft_kernel_tiers_and_blocks_vs_mpmath(name, path):
    """Mostly cancelling soft labels (relative gaps from 1e-2 down to 1e-13, so most elements take
    the 2**-76 tier, which ``_cpu.boost_soft`` runs on gathered blocks of 256: several blocks and a
    partial one), perfect predictions (the C double-double third tier), a few out-of-range raw scores
    (Python's double-double path), an odd length (the vector loop's remainder); compiled and NumPy
    (no extension) paths against mpmath."""
    rng = np.random.default_rng(11)
    n = 2003
    k = 1.0 if name == "binomial" else 2.0
    r = rng.normal(0.0, 3.0, n)
    gap = 10.0 ** rng.uniform(-13, -2, n) * rng.choice([-1.0, 1.0], n)
    with np.errstate(over="ignore"):
        y = np.clip(1.0 / (1.0 + np.exp(-k * r)) * (1.0 + gap), 0.0, 1.0)
    y[:5] = [0.0, 1.0, 0.5, 1e-300, 1.0 - 2.0**-53]
    r[5:11] = [700.0, -700.0, 400.0, -400.0, 651.0, -651.0]
    # perfect predictions (the label is sigmoid rounded: terms agreeing to ~2**-53, the third tier)
    y[11:80] = 1.0 / (1.0 + np.exp(-k * r[11:80]))
    if path == "compiled":  # the flags the kernel leaves: only the double-double ones
        g, h = np.empty(n), np.empty(n)
        flag = np.zeros(n, dtype=np.uint8)
        kid = B._SOFT_BINOMIAL if name == "binomial" else B._SOFT_EXPONENTIAL
        left = B._cpu.boost_soft(kid, y, r, n, B._MID_HI, B._MID_LO, g, h, flag, B._SOFT_PARAMS)
        assert left == np.count_nonzero(flag)
        assert set(np.unique(flag)) <= {0, 2}
        limit = 650.0 if name == "binomial" else 325.0
        assert np.all(flag[np.abs(r) > limit] == 2)  # out of the table exponential's range
        # the 2**-76 tier resolved the gaps well above 2**-22 (~360 of them below 2**-10: two blocks)
        tier2 = (np.abs(gap) > 1e-5) & (np.abs(r) <= limit)
        tier2[:11] = False
        assert np.all(flag[tier2] == 0)
        assert np.count_nonzero(tier2 & (np.abs(gap) < 1e-3)) > 256
        # the third tier (double-double in C) took the perfect predictions: nothing in range is left
        assert np.count_nonzero(flag[np.abs(r) <= limit]) == 0
    g, h = boosting.get(name).gradient_hessian(y, r)
    ge, he, scale = _soft_expected(name, y, r)
    inputs = {"y_true": y, "raw_prediction": r}
    R.assert_ulp(g, ge, np.float64, inputs=inputs, scale=scale, what=f"{name} gradient")
    R.assert_ulp(h, he, np.float64, inputs=inputs, what=f"{name} hessian")


@pytest.mark.parametrize("name", ["absolute_error", "huber_loss", "pinball_loss"])
def test_identity_link_compiled_equals_numpy(name, monkeypatch):
    """``_cpu.boost_identity`` against the NumPy fallback and the derivation (sign, clip, slopes of
    ``d = r - y``) on random data with ties, at an odd length."""
    if B._cpu is None:
        pytest.skip("the C extension is not built")
    rng = np.random.default_rng(12)
    y = rng.normal(0.0, 1.0, 1001)
    r = y + rng.normal(0.0, 1.5, y.size)
    r[::7] = y[::7]  # ties
    loss = boosting.get(name)
    g, h = loss.gradient_hessian(y, r)
    monkeypatch.setattr(B, "_cpu", None)
    g0, h0 = loss.gradient_hessian(y, r)
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(h, h0)
    d = r - y
    expected = {"absolute_error": np.sign(d), "huber_loss": np.clip(d, -1.0, 1.0),
                "pinball_loss": np.where(d > 0, 0.5, np.where(d < 0, -0.5, 0.0))}[name]
    np.testing.assert_array_equal(g, expected)
