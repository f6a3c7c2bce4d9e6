"""losskit.boosting: gradients and hessians in raw-score space against mpmath and scikit-learn.

The mpmath oracle below is written from the formulas (derivatives by hand, checked once more by
``mpmath.diff`` of the mpmath loss in :func:`test_oracle_derivatives_match_mpmath_diff`), evaluated at
130 digits on the exact float inputs; :func:`oracle.reference.assert_ulp` applies the 8-ulp contract.

Documented exception (module docstring of ``losskit.boosting``): where the two terms of a gradient
(or of a non-convex Tweedie hessian) cancel to less than 2**-40 of their size, e.g. at a perfect
prediction ``r = fl(log y)``, the error is measured against the larger term: it must be below
8 ulp of ``2**-40`` times that term (losskit keeps ~100 bits of each term; scikit-learn's float64
difference has none of them left there).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpmath import mpf
from oracle import reference as R

from losskit import boosting as B

DPS = 130
CANCEL = mpf(2) ** -40
FMAX = mpf(float(np.finfo(np.float64).max))
DTYPES = (np.float64, np.float32)


def _m(x: Any) -> mpf:
    """Exact conversion of a float input; an mpf (from ``mpmath.diff``) passes unchanged."""
    return x if isinstance(x, mpf) else mpf(float(x))


# --------------------------------------------------------------------------- mpmath oracle
# Each returns (loss, gradient, hessian, gradient_scale, hessian_scale); a scale is the larger of two
# cancelling terms (None when the formula has no cancellation).


def o_squared(y, r, **_):
    d = _m(r) - _m(y)
    return d * d / 2, d, mpf(1), None, None


def o_absolute(y, r, **_):
    d = _m(r) - _m(y)
    return abs(d), mpmath.sign(d), mpf(1), None, None


def o_pinball(y, r, quantile, **_):
    q = _m(quantile)
    u = _m(y) - _m(r)
    loss = q * u if u >= 0 else (q - 1) * u
    g = -q if u > 0 else (1 - q if u < 0 else mpf(1) / 2 - q)
    return loss, g, mpf(1), None, None


def o_huber(y, r, delta, **_):
    d = _m(r) - _m(y)
    dl = _m(delta)
    if abs(d) <= dl:
        return d * d / 2, d, mpf(1), None, None
    return dl * (abs(d) - dl / 2), dl * mpmath.sign(d), mpf(1), None, None


def o_tweedie(y, r, power, **_):
    y, r, p = _m(y), _m(r), _m(power)
    a, b = 2 - p, 1 - p
    e1, e2 = mpmath.exp(a * r), y * mpmath.exp(b * r)
    if p == 0:
        loss = (mpmath.exp(r) - y) ** 2 / 2
    elif p == 1:
        loss = mpmath.exp(r) - y * r
    elif p == 2:
        loss = r + y * mpmath.exp(-r)
    else:
        loss = e1 / a - e2 / b
    g = e1 - e2
    h = a * e1 - b * e2
    return loss, g, h, max(abs(e1), abs(e2)), max(abs(a * e1), abs(b * e2))


def o_binomial(y, r, **_):
    y, r = _m(y), _m(r)
    # 1 - s and log1p(exp(r)) - r cancel to about exp(-|r|): |r|/2.3 more digits keep DPS of them
    with mpmath.workdps(mpmath.mp.dps + int(min(abs(r), 1500))):
        s = 1 / (1 + mpmath.exp(-r))
        loss = mpmath.log1p(mpmath.exp(r)) - y * r
        g, h = s - y, s * (1 - s)
    return +loss, +g, +h, max(s, y), None


def o_exponential(y, r, **_):
    y, r = _m(y), _m(r)
    t1, t2 = (1 - y) * mpmath.exp(r), y * mpmath.exp(-r)
    return t1 + t2, t1 - t2, t1 + t2, max(t1, t2), None


def o_multinomial_row(label, row):
    x = [_m(v) for v in row]
    mx = max(x)
    ex = [mpmath.exp(v - mx) for v in x]
    s = mpmath.fsum(ex)
    p = [e / s for e in ex]
    k = int(label)
    top = x.index(mx)
    loss = mpmath.log1p(mpmath.fsum(ex[:top] + ex[top + 1:])) + (mx - x[k])  # log(s), kept when s ~ 1
    grad = [p[j] if j != k else -mpmath.fsum(ex[:j] + ex[j + 1:]) / s for j in range(len(x))]
    # 1 - p_j as the sum of the other probabilities: no cancellation at this precision either way
    hess = [p[j] * (mpmath.fsum(ex[:j] + ex[j + 1:]) / s) for j in range(len(x))]
    return loss, grad, hess


ORACLE: dict[str, Callable[..., tuple]] = {
    "squared_error": o_squared,
    "absolute_error": o_absolute,
    "pinball_loss": o_pinball,
    "huber_loss": o_huber,
    "poisson_loss": lambda y, r, **k: o_tweedie(y, r, power=1.0),
    "gamma_loss": lambda y, r, **k: o_tweedie(y, r, power=2.0),
    "tweedie_loss": o_tweedie,
    "binomial_loss": o_binomial,
    "exponential_loss": o_exponential,
}

# (name, options) for every elementwise case tested
CASES = [
    ("squared_error", {}),
    ("absolute_error", {}),
    ("pinball_loss", {"quantile": 0.1}),
    ("pinball_loss", {"quantile": 0.9}),
    ("huber_loss", {"delta": 1.0}),
    ("huber_loss", {"delta": 0.3}),
    ("poisson_loss", {}),
    ("gamma_loss", {}),
    ("tweedie_loss", {"power": 1.5}),
    ("tweedie_loss", {"power": 1.2}),
    ("tweedie_loss", {"power": 0.0}),
    ("tweedie_loss", {"power": 0.5}),
    ("tweedie_loss", {"power": 3.0}),
    ("binomial_loss", {}),
    ("exponential_loss", {}),
]

EXTREME_RAW = np.array([700.0, -700.0, 1000.0, -1000.0, 745.0, -745.0, 709.7, -709.7, 1e-300, -1e-300,
                        5e-324, 0.0, 1e-8, -1e-8, 40.0, -40.0])


def _domain(name: str, power: float | None) -> str:
    if name in ("binomial_loss", "exponential_loss"):
        return "unit"
    if name == "gamma_loss" or (name == "tweedie_loss" and power is not None and power >= 2):
        return "positive"
    if name in ("poisson_loss", "tweedie_loss") and (power is None or power > 0):
        return "nonnegative"
    return "real"


def make_inputs(name: str, opts: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Generic, extreme and near-optimal (y, r) pairs for one loss, in float64."""
    dom = _domain(name, opts.get("power"))
    n = 60
    r_gen = rng.normal(0.0, 4.0, n)
    if dom == "real":
        y_gen = rng.normal(0.0, 4.0, n)
        ys = np.array([0.0, 1.0, -3.0, 1e-300, 1e300, -1e300])
    elif dom == "unit":
        y_gen = np.concatenate([rng.integers(0, 2, n // 2).astype(float), rng.uniform(0, 1, n - n // 2)])
        ys = np.array([0.0, 1.0, 0.3, 1e-300, 0.999999])
    else:
        y_gen = np.exp(rng.normal(0.0, 3.0, n))
        ys = np.array([1.0, 3.0, 1e-300, 1e300, 5e-324, 0.7])
        if dom == "nonnegative":
            y_gen[:5] = 0.0
            ys = np.concatenate([ys, [0.0]])
    # extremes: every extreme raw score with every special target
    r_ext = np.repeat(EXTREME_RAW, ys.size)
    y_ext = np.tile(ys, EXTREME_RAW.size)
    # near the optimum, where exp(r) - y or sigmoid(r) - y cancels
    r_opt = rng.normal(0.0, 3.0, 40)
    rel = rng.choice([1e-2, -1e-2, 1e-6, -1e-6, 1e-11, -1e-11], 40)
    if name in ("poisson_loss", "gamma_loss", "tweedie_loss"):  # log link, any power
        y_opt = np.exp(r_opt) * (1 + rel)
        y_perfect = np.exp(rng.normal(0.0, 3.0, 20))
        r_perfect = np.log(y_perfect)  # r = fl(log y): the documented cancellation exception
    elif dom == "unit":
        s = 1 / (1 + np.exp(-r_opt)) if name == "binomial_loss" else 1 / (1 + np.exp(-2 * r_opt))
        y_opt = np.clip(s * (1 + rel), 0, 1)
        y_perfect = rng.uniform(0.05, 0.95, 20)
        r_perfect = np.log(y_perfect / (1 - y_perfect)) * (1.0 if name == "binomial_loss" else 0.5)
    else:
        y_opt = r_opt * (1 + rel)
        r_perfect = y_gen[:20].copy()  # exact ties: the kink conventions
        y_perfect = y_gen[:20]
    y = np.concatenate([y_gen, y_ext, y_opt, y_perfect])
    r = np.concatenate([r_gen, r_ext, r_opt, r_perfect])
    return y, r


def _scaled(exact: list, scale: list) -> np.ndarray | None:
    """``scale * 2**-40`` where the exact value cancels below 2**-40 of the scale, else None."""
    out = np.full(len(exact), None, dtype=object)
    for i, (e, s) in enumerate(zip(exact, scale, strict=True)):
        if s is not None and mpmath.isfinite(s) and s != 0 and abs(e) < CANCEL * s and abs(e) <= FMAX:
            out[i] = s * CANCEL
    return out


def _oracle(name: str, opts: dict, y: np.ndarray, r: np.ndarray) -> tuple[list, ...]:
    fn = ORACLE[name]
    with mpmath.workdps(DPS):
        rows = [fn(a, b, **opts) for a, b in zip(y, r, strict=True)]
    return tuple([row[i] for row in rows] for i in range(5))


def _ulp_worst(computed: np.ndarray, exact: list, dtype: Any) -> float:
    u = R.ulp_error(computed, np.array(exact, dtype=object), dtype)
    return float(np.nanmax(u)) if np.any(~np.isnan(u)) else 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("name", "opts"), CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_gradient_hessian_vs_mpmath(name, opts, dtype, rng):
    y64, r64 = make_inputs(name, opts, rng)
    with np.errstate(all="ignore"):
        y, r = y64.astype(dtype), r64.astype(dtype)
    keep = np.isfinite(y) & np.isfinite(r)
    if _domain(name, opts.get("power")) == "positive":
        keep &= y > 0  # float32 flushes 1e-300 and 5e-324 to 0
    y, r = y[keep], r[keep]
    loss = B.get(name, **opts)
    g, h = loss.gradient_hessian(y, r)
    assert g.dtype == dtype
    assert h.dtype == dtype
    assert g.shape == r.shape == h.shape
    _lv, ge, he, gs, hs = _oracle(name, opts, y, r)
    inputs = {"y_true": y, "raw_prediction": r}
    R.assert_ulp(g, ge, dtype, inputs=inputs, scale=_scaled(ge, gs), what=f"{name}{opts} gradient")
    R.assert_ulp(h, he, dtype, inputs=inputs, scale=_scaled(he, hs), what=f"{name}{opts} hessian")
    # gradient() is the first half of gradient_hessian()
    np.testing.assert_array_equal(loss.gradient(y, r), g)


@pytest.mark.parametrize(("name", "opts"), CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_loss_value_vs_mpmath(name, opts, rng):
    """Loss values to a few ulp of the largest term (constants are dropped as scikit-learn does, so the
    value itself may cross zero); 8 ulp relative where it does not cancel."""
    y, r = make_inputs(name, opts, rng)
    loss = B.get(name, **opts)
    v = loss.loss(y, r)
    le, _g, _h, _gs, _hs = _oracle(name, opts, y, r)
    with mpmath.workdps(DPS):
        scale = np.full(len(le), None, dtype=object)
        for i, (a, b) in enumerate(zip(y, r, strict=True)):
            terms = _loss_terms(name, opts, _m(a), _m(b))
            big = max(abs(t) for t in terms)
            if mpmath.isfinite(big) and big != 0 and abs(le[i]) < big / 4 and abs(le[i]) <= FMAX:
                scale[i] = big
    R.assert_ulp(v, le, np.float64, inputs={"y_true": y, "raw_prediction": r}, scale=scale,
                 what=f"{name}{opts} loss")


def _loss_terms(name: str, opts: dict, y: mpf, r: mpf) -> list:
    p = {"poisson_loss": 1.0, "gamma_loss": 2.0}.get(name, opts.get("power"))
    if name in ("poisson_loss", "gamma_loss", "tweedie_loss"):
        pm = _m(p)
        if pm == 1:
            return [mpmath.exp(r), y * r]
        if pm == 2:
            return [r, y * mpmath.exp(-r)]
        if pm == 0:
            return [mpmath.exp(2 * r), y * y]  # (exp(r) - y)**2 / 2 cancels inside the square
        return [mpmath.exp((2 - pm) * r) / (2 - pm), y * mpmath.exp((1 - pm) * r) / (1 - pm)]
    return [mpf(0)]


def test_oracle_derivatives_match_mpmath_diff():
    """The hand-written oracle derivatives equal mpmath's numerical derivatives of the oracle loss."""
    points = [(3.0, 0.7), (0.5, -2.0), (2.0, 5.0), (0.0, 1.5)]
    cases = [("poisson_loss", {}), ("gamma_loss", {}), ("tweedie_loss", {"power": 1.5}),
             ("tweedie_loss", {"power": 3.0}), ("tweedie_loss", {"power": 0.0}),
             ("binomial_loss", {}), ("exponential_loss", {}), ("squared_error", {}),
             ("huber_loss", {"delta": 10.0})]
    with mpmath.workdps(60):
        for name, opts in cases:
            for y, r in points:
                if name in ("binomial_loss", "exponential_loss"):
                    y = min(y, 1.0) / 2
                if name == "gamma_loss" or opts.get("power", 0) >= 2:
                    y = y or 1.0
                fn = ORACLE[name]
                def value(x, fn=fn, y=y, opts=opts):
                    return fn(y, x, **opts)[0]
                _v, g, h, _gs, _hs = fn(y, r, **opts)
                assert abs(mpmath.diff(value, _m(r), 1) - g) <= mpf(10) ** -40 * max(1, abs(g)), (name, y, r)
                assert abs(mpmath.diff(value, _m(r), 2) - h) <= mpf(10) ** -40 * max(1, abs(h)), (name, y, r)
        # multinomial: gradient and hessian diagonal of the row loss
        row, label = [0.3, -1.2, 2.0], 1
        _l, g3, h3 = o_multinomial_row(label, row)
        for j in range(3):
            def value_j(x, j=j):
                rr = list(row)
                rr[j] = x
                return o_multinomial_row(label, rr)[0]
            assert abs(mpmath.diff(value_j, _m(row[j]), 1) - g3[j]) < mpf(10) ** -40
            assert abs(mpmath.diff(value_j, _m(row[j]), 2) - h3[j]) < mpf(10) ** -40


# --------------------------------------------------------------------------- multinomial


def _multinomial_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = 4
    raw = rng.normal(0.0, 3.0, (40, k))
    extreme = np.array([
        [1000.0, -1000.0, 0.0, 0.0],
        [-1000.0, -1000.0, -1000.0, 1000.0],
        [700.0, 700.0, -700.0, 0.0],
        [40.0, 0.0, 0.0, 0.0],
        [1e-300, 0.0, -1e-300, 5e-324],
        [-745.0, 0.0, 745.0, 30.0],
    ])
    raw = np.concatenate([raw, extreme, extreme])
    y = np.concatenate([rng.integers(0, k, 40), [0, 0, 2, 0, 3, 1], [1, 3, 0, 1, 0, 2]]).astype(np.int64)
    return y, raw


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_multinomial_vs_mpmath(dtype, rng):
    y, raw64 = _multinomial_inputs(rng)
    raw = raw64.astype(dtype)
    loss = B.HalfMultinomialLoss()
    g, h = loss.gradient_hessian(y, raw)
    v = loss.loss(y, raw)
    assert g.shape == raw.shape
    assert g.dtype == dtype
    assert v.shape == y.shape
    with mpmath.workdps(DPS):
        rows = [o_multinomial_row(a, b) for a, b in zip(y, raw, strict=True)]
    inputs = {"y_true": y, "raw_prediction": raw}
    for i, (got, what) in enumerate([(v, "loss"), (g, "gradient"), (h, "hessian")]):
        exact = np.array([row[i] for row in rows], dtype=object)
        R.assert_ulp(got, exact, dtype, inputs=inputs, what=f"multinomial {what}")


@pytest.mark.parametrize("k", [2, 4, 12])
def test_multinomial_within_300_vs_mpmath(k, rng, monkeypatch):
    """Raw scores within +-300 take the chunked kernel (exp(r) / max exp(r), a compensated row
    sum); confident rows (1 - p ~ 1e-100), ties, near-ties, many classes and rows spanning several
    chunks, against mpmath, gradient and hessian (the test above, with +-1000, takes the shifted
    path)."""
    n = 40
    raw = rng.normal(0.0, 3.0, (n, k))
    raw[0] = 0.0  # every class tied
    raw[1, :2] = 5.0  # two tied maxima
    raw[2, 0] = raw[2, 1] + 2.0**-40  # a near-tie
    raw[3] = -300.0
    raw[3, 0] = 230.0  # 1 - p = k e**-530
    raw[4] = np.linspace(-300.0, 300.0, k)
    raw[5] = rng.normal(0.0, 1e-9, k)  # nearly uniform
    y = rng.integers(0, k, n)
    y[3] = 0
    loss = B.HalfMultinomialLoss()
    g_one, h_one = loss.gradient_hessian(y, raw)
    monkeypatch.setattr(B._kernels.MultinomialKernel, "_CHUNK_ELEMENTS", 64)  # several chunks
    g, h = loss.gradient_hessian(y, raw)
    np.testing.assert_array_equal(g, g_one)
    np.testing.assert_array_equal(h, h_one)
    with mpmath.workdps(DPS):
        rows = [o_multinomial_row(a, b) for a, b in zip(y, raw, strict=True)]
    inputs = {"y_true": y, "raw_prediction": raw}
    for i, (got, what) in enumerate([(g, "gradient"), (h, "hessian")], start=1):
        exact = np.array([row[i] for row in rows], dtype=object)
        R.assert_ulp(got, exact, np.float64, inputs=inputs, what=f"multinomial (k={k}) {what}")


def test_multinomial_vs_sklearn(rng):
    from sklearn._loss.loss import HalfMultinomialLoss as SkMultinomial

    k = 5
    raw = rng.normal(0.0, 2.0, (50, k))
    y = rng.integers(0, k, 50).astype(np.float64)
    w = rng.uniform(0.1, 2.0, 50)
    sk = SkMultinomial(n_classes=k)
    mine = B.HalfMultinomialLoss()
    for sw in (None, w):
        gs, hs = sk.gradient_hessian(y_true=y, raw_prediction=raw, sample_weight=sw)
        g, h = mine.gradient_hessian(y, raw, sample_weight=sw)
        np.testing.assert_allclose(g, gs, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(h, hs, rtol=1e-12, atol=1e-15)
        ls = sk.loss(y_true=y, raw_prediction=raw, sample_weight=sw)
        np.testing.assert_allclose(mine.loss(y, raw, sw), ls, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mine.inverse_link(raw), sk.link.inverse(raw), rtol=1e-14)
    p = sk.link.inverse(raw)
    np.testing.assert_allclose(mine.link(p), sk.link.link(p), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- scikit-learn


def _sklearn(name: str, opts: dict):
    from sklearn._loss import loss as L

    if name == "huber_loss":
        return L.HuberLoss(delta=opts["delta"])
    if name == "pinball_loss":
        return L.PinballLoss(quantile=opts["quantile"])
    if name == "tweedie_loss":
        return L.HalfTweedieLoss(power=opts["power"])
    return L._LOSSES[name]()


@pytest.mark.parametrize(("name", "opts"), CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_vs_sklearn(name, opts, rng):
    """Same values as scikit-learn's ``_loss`` at moderate raw scores away from cancellation (where
    its float64 formulas are accurate), with and without sample weights; the documented differences
    (Huber hessian outside delta, kink conventions) are checked explicitly."""
    dom = _domain(name, opts.get("power"))
    n = 200
    r = rng.uniform(-5, 5, n)
    if dom == "real":
        y = rng.normal(0, 3, n)
    elif dom == "unit":
        y = rng.integers(0, 2, n).astype(float)
    else:
        y = np.exp(r + rng.choice([-1, 1], n) * rng.uniform(0.5, 2, n))
    w = rng.uniform(0.1, 3.0, n)
    sk = _sklearn(name, opts)
    mine = B.get(name, **opts)
    # scikit-learn subtracts two float64 terms; compare relative to the larger of them
    p = {"poisson_loss": 1.0, "gamma_loss": 2.0}.get(name, opts.get("power"))
    h_scale: Any = None
    if p is not None:
        h_scale = abs(2 - p) * np.exp((2 - p) * r) + abs(1 - p) * np.abs(y) * np.exp((1 - p) * r)
    for sw in (None, w):
        gs, hs = sk.gradient_hessian(y_true=y, raw_prediction=r, sample_weight=sw)
        g, h = mine.gradient_hessian(y, r, sample_weight=sw)
        np.testing.assert_allclose(g, gs, rtol=1e-13, atol=0)
        if h_scale is not None:
            hsc = h_scale if sw is None else h_scale * sw
            assert np.all(np.abs(h - hs) <= 1e-14 * hsc)
            continue
        if name == "huber_loss":
            inside = np.abs(r - y) <= opts["delta"]
            np.testing.assert_allclose(h[inside], hs[inside], rtol=1e-13)
            np.testing.assert_array_equal(hs[~inside], 0.0)  # scikit-learn's zero; ours is the weight
            np.testing.assert_array_equal(h[~inside], 1.0 if sw is None else sw[~inside])
        else:
            np.testing.assert_allclose(h, hs, rtol=1e-13, atol=0)
        np.testing.assert_allclose(mine.loss(y, r, sw), sk.loss(y_true=y, raw_prediction=r, sample_weight=sw),
                                   rtol=1e-12, atol=1e-12)
    if dom != "real" or name == "squared_error":
        pred = sk.link.inverse(r)
        np.testing.assert_allclose(mine.inverse_link(r), pred, rtol=1e-14)
        np.testing.assert_allclose(mine.link(pred), sk.link.link(pred), rtol=1e-12, atol=1e-13)


def test_kink_conventions_differ_from_sklearn():
    """At r == y: absolute error gradient 0 (scikit-learn -1), pinball 1/2 - q (scikit-learn -q)."""
    from sklearn._loss.loss import AbsoluteError, PinballLoss

    y = np.array([1.0, -2.0])
    g, _ = B.AbsoluteError().gradient_hessian(y, y)
    np.testing.assert_array_equal(g, [0.0, 0.0])
    np.testing.assert_array_equal(AbsoluteError().gradient(y_true=y, raw_prediction=y), [-1.0, -1.0])
    g, _ = B.PinballLoss(quantile=0.2).gradient_hessian(y, y)
    np.testing.assert_allclose(g, [0.3, 0.3], rtol=1e-15)
    np.testing.assert_allclose(PinballLoss(quantile=0.2).gradient(y_true=y, raw_prediction=y), [-0.2, -0.2])


# --------------------------------------------------------------------------- tails


CONVEX = [c for c in CASES if not (c[0] == "tweedie_loss" and not 1 <= c[1]["power"] <= 2)]


@pytest.mark.parametrize(("name", "opts"), CONVEX, ids=[f"{n}-{o}" for n, o in CONVEX])
def test_tails_finite_positive_hessian(name, opts):
    """Finite inputs give no NaN anywhere, a finite gradient wherever its exact value is finite, and a
    hessian that is >= 0 everywhere and > 0 wherever its exact value is at least the smallest
    subnormal (below that it rounds to 0). scikit-learn's binomial hessian is NaN below -709."""
    raw = np.concatenate([np.linspace(-1000, 1000, 81), EXTREME_RAW, -np.geomspace(1e-300, 1e300, 13),
                          np.geomspace(1e-300, 1e300, 13)])
    dom = _domain(name, opts.get("power"))
    targets = {"real": [0.0, 5.0, -1e300], "unit": [0.0, 1.0, 0.5],
               "positive": [1e-300, 1.0, 1e300], "nonnegative": [0.0, 1.0, 1e300]}[dom]
    loss = B.get(name, **opts)
    for t in targets:
        y = np.full(raw.shape, t)
        g, h = loss.gradient_hessian(y, raw)
        assert not np.isnan(g).any()
        assert not np.isnan(h).any()
        assert np.all(h >= 0)
        _l, ge, he, _gs, _hs = _oracle(name, opts, y, raw)
        tiny = mpf(float(np.finfo(np.float64).smallest_subnormal))
        for i in range(raw.size):
            if mpmath.isfinite(ge[i]) and abs(ge[i]) <= mpf(float(np.finfo(np.float64).max)):
                assert np.isfinite(g[i]), (name, t, raw[i], g[i])
            if he[i] >= tiny and he[i] <= mpf(float(np.finfo(np.float64).max)):
                assert 0 < h[i] < np.inf, (name, t, raw[i], h[i])


def test_binomial_tails_vs_sklearn():
    """Older scikit-learn returned NaN for the binomial hessian below -709 (e/(1+e)**2 with e = inf);
    1.9 switches to exp(r) below -37 and agrees with losskit in both tails."""
    from sklearn._loss.loss import HalfBinomialLoss

    r = np.array([-1000.0, -745.0, -710.0, -708.0, -40.0, 40.0, 708.0, 710.0, 745.0, 1000.0])
    for y in (0.0, 1.0):
        yy = np.full(r.shape, y)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            _gs, hs = HalfBinomialLoss().gradient_hessian(y_true=yy, raw_prediction=r)
        g, h = B.HalfBinomialLoss().gradient_hessian(yy, r)
        assert not np.isnan(h).any()
        assert not np.isnan(g).any()
        assert h[0] == 0.0
        assert h[-1] == 0.0
        normal = np.abs(hs) >= np.finfo(np.float64).smallest_normal
        np.testing.assert_allclose(h[normal], hs[normal], rtol=1e-15)


# --------------------------------------------------------------------------- weights, shapes, dtypes


@pytest.mark.parametrize(("name", "opts"), CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_sample_weight_multiplies(name, opts, rng):
    y, r = make_inputs(name, opts, rng)
    w = rng.uniform(0, 3, y.size)
    w[::7] = 0.0
    loss = B.get(name, **opts)
    g, h = loss.gradient_hessian(y, r)
    gw, hw = loss.gradient_hessian(y, r, sample_weight=w)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(gw, np.where(w == 0, 0.0, w * g))
        np.testing.assert_array_equal(hw, np.where(w == 0, 0.0, w * h))
        np.testing.assert_array_equal(loss.loss(y, r, w), np.where(w == 0, 0.0, w * loss.loss(y, r)))


def test_shapes_and_dtypes():
    loss = B.HalfPoissonLoss()
    y = np.ones((3, 2))
    g, h = loss.gradient_hessian(y, np.zeros((3, 2), dtype=np.float32))
    assert g.shape == (3, 2)
    assert g.dtype == np.float32
    assert h.dtype == np.float32
    g, _ = loss.gradient_hessian([1, 2], [0, 1])  # integers: float64
    assert g.dtype == np.float64
    g, h = loss.gradient_hessian(np.float64(2.0), np.float64(0.0))
    assert g.shape == ()
    assert float(g) == -1.0
    assert float(h) == 1.0
    g, _ = B.HalfMultinomialLoss().gradient_hessian(np.zeros(0, int), np.zeros((0, 3)))
    assert g.shape == (0, 3)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("loss", "y", "r", "w", "exc", "match"),
    [
        (B.HalfPoissonLoss(), [1.0, -1.0], [0.0, 0.0], None, ValueError,
         r"y_true for poisson_loss must be non-negative.*-1"),
        (B.HalfGammaLoss(), [1.0, 0.0], [0.0, 0.0], None, ValueError,
         r"y_true for gamma_loss must be positive.*0"),
        (B.HalfTweedieLoss(power=3.0), [0.0], [0.0], None, ValueError, r"positive \(power=3.0\)"),
        (B.HalfBinomialLoss(), [0.0, 2.0], [0.0, 0.0], None, ValueError,
         r"binomial_loss must be in \[0, 1\].*2"),
        (B.ExponentialLoss(), [-0.5], [0.0], None, ValueError, r"exponential_loss must be in \[0, 1\]"),
        (B.HalfSquaredError(), [1.0, 2.0], [1.0], None, ValueError, r"same shape.*\(2,\).*\(1,\)"),
        (B.HalfSquaredError(), [1.0], [np.nan], None, ValueError, r"raw_prediction must be finite"),
        (B.HalfSquaredError(), [np.inf], [0.0], None, ValueError, r"y_true must be finite"),
        (B.HalfSquaredError(), [1.0], ["a"], None, TypeError, r"raw_prediction must be a real numeric array"),
        (B.HalfSquaredError(), [1.0], [1j], None, TypeError, r"raw_prediction must be real"),
        (B.HalfSquaredError(), [1.0, 2.0], [0.0, 0.0], [1.0], ValueError,
         r"sample_weight must have shape \(2,\)"),
        (B.HalfSquaredError(), [1.0], [0.0], [-1.0], ValueError, r"sample_weight must be >= 0"),
        (B.HalfMultinomialLoss(), [0, 3], [[0.0, 0.0, 0.0]] * 2, None, ValueError, r"labels in \[0, 2\].*3"),
        (B.HalfMultinomialLoss(), [0.5], [[0.0, 0.0]], None, ValueError, r"integer labels.*0.5"),
        (B.HalfMultinomialLoss(), [-1], [[0.0, 0.0]], None, ValueError, r"integer labels.*-1"),
        (B.HalfMultinomialLoss(), [0], [0.0, 0.0], None, ValueError, r"shape \(n_samples, n_classes\)"),
        (B.HalfMultinomialLoss(), [0, 1], [[0.0, 0.0]], None, ValueError, r"y_true must have shape \(1,\)"),
    ],
)
def test_invalid_inputs(loss, y, r, w, exc, match):
    with pytest.raises(exc, match=match):
        loss.gradient_hessian(y, r, sample_weight=w)


def test_invalid_options():
    # the losses' checks (losskit.losses._core), so the same words as losskit.get("pinball") etc.
    with pytest.raises(ValueError, match=r"quantile must lie in \[0, 1\]; found 1.5"):
        B.PinballLoss(quantile=1.5)
    with pytest.raises(ValueError, match="delta must be > 0"):
        B.HuberLoss(delta=0.0)
    with pytest.raises(ValueError, match="delta must be finite"):
        B.HuberLoss(delta=math.inf)
    with pytest.raises(ValueError, match="power must be finite"):
        B.HalfTweedieLoss(power=math.inf)
    with pytest.raises(ValueError, match="unknown boosting loss 'nope'"):
        B.get("nope")
    with pytest.raises(TypeError, match="unknown option"):
        B.get("poisson", power=2.0)
    with pytest.raises(TypeError, match="identifier must be"):
        B.get(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- registry


def test_get_names_and_aliases():
    from sklearn._loss.loss import _LOSSES

    for name in _LOSSES:  # every scikit-learn name resolves
        assert B.get(name).name == name
    assert isinstance(B.get("poisson"), B.HalfPoissonLoss)
    assert isinstance(B.get("HalfPoissonLoss"), B.HalfPoissonLoss)
    assert B.get("tweedie", power=1.2) == B.HalfTweedieLoss(power=1.2)
    assert B.get("quantile", quantile=0.3).quantile == 0.3
    assert isinstance(B.get("adaboost"), B.ExponentialLoss)
    inst = B.HuberLoss(delta=2.0)
    assert B.get(inst) is inst
    assert repr(inst) == "HuberLoss(delta=2.0)"
    assert B.get("huber", **inst.get_config()) == inst
    assert B.AbsoluteError.approx_hessian
    assert B.PinballLoss.approx_hessian
    assert B.HuberLoss.approx_hessian
    assert not B.HalfPoissonLoss.approx_hessian


def test_huber_delta_is_the_quantile_of_abs_errors(rng):
    y = rng.normal(size=101)
    r = rng.normal(size=101)
    assert B.huber_delta(y, r, quantile=0.9) == np.percentile(np.abs(y - r), 90)
    w = np.ones(101)
    d = B.huber_delta(y, r, quantile=0.5, sample_weight=w)
    assert d == np.sort(np.abs(y - r))[50]  # weighted median of equal weights: the middle order statistic
    w = rng.uniform(0.0, 2.0, 101)
    for q in (0.1, 0.5, 0.9):
        expected = np.percentile(np.abs(y - r), 100 * q, weights=w, method="inverted_cdf")
        assert B.huber_delta(y, r, quantile=q, sample_weight=w) == expected
    with pytest.raises(ValueError, match="must not be all zero"):
        B.huber_delta(y, r, sample_weight=np.zeros(101))


# --------------------------------------------------------------------------- adapters


class FakeDMatrix:
    """What a custom objective sees of xgboost.DMatrix / lightgbm.Dataset."""

    def __init__(self, label, weight=None):
        self._label = np.asarray(label, dtype=np.float32)
        self._weight = np.asarray([] if weight is None else weight, dtype=np.float32)

    def get_label(self):
        return self._label

    def get_weight(self):
        return self._weight


def test_xgboost_objective(rng):
    loss = B.HalfBinomialLoss()
    obj = loss.as_xgboost_objective()
    y = rng.integers(0, 2, 20).astype(np.float32)
    preds = rng.normal(size=20).astype(np.float32)
    g, h = obj(preds, FakeDMatrix(y))
    g0, h0 = loss.gradient_hessian(y, preds)
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(h, h0)
    w = rng.uniform(0, 2, 20).astype(np.float32)
    g, h = obj(preds, FakeDMatrix(y, w))
    np.testing.assert_array_equal(g, loss.gradient_hessian(y, preds, w)[0])
    # multiclass: (n, K) and the flat row-major layout of older XGBoost
    m = B.HalfMultinomialLoss()
    yk = rng.integers(0, 3, 20).astype(np.float32)
    pk = rng.normal(size=(20, 3))
    gk, hk = m.as_xgboost_objective()(pk, FakeDMatrix(yk))
    np.testing.assert_array_equal(gk, m.gradient_hessian(yk, pk)[0])
    gf, hf = m.as_xgboost_objective()(pk.ravel(), FakeDMatrix(yk))
    np.testing.assert_array_equal(gf, gk.ravel())
    np.testing.assert_array_equal(hf, hk.ravel())


def test_lightgbm_objective(rng):
    import inspect

    loss = B.HalfGammaLoss()
    fobj = loss.as_lightgbm_objective()
    assert len(inspect.signature(fobj).parameters) == 3  # LightGBM then passes the weights
    y = np.exp(rng.normal(size=20))
    p = rng.normal(size=20)
    g, h = fobj(y, p)
    np.testing.assert_array_equal(g, loss.gradient(y, p))
    w = rng.uniform(0, 2, 20)
    g, h = fobj(y, p, w)
    np.testing.assert_array_equal(h, loss.gradient_hessian(y, p, w)[1])
    m = B.HalfMultinomialLoss()
    yk = rng.integers(0, 3, 20)
    pk = rng.normal(size=(20, 3))
    gk, hk = m.as_lightgbm_objective()(yk, pk)
    np.testing.assert_array_equal(gk, m.gradient_hessian(yk, pk)[0])
    # older LightGBM native API: flat, class-major (preds[k * n + i]), read from a Dataset
    lgb = pytest.importorskip("lightgbm")
    ds = lgb.Dataset(np.zeros((20, 1)), label=yk).construct()
    gf, hf = m.as_lightgbm_objective()(pk.T.ravel(), ds)
    np.testing.assert_array_equal(gf, gk.T.ravel())
    np.testing.assert_array_equal(hf, hk.T.ravel())


# --------------------------------------------------------------------------- generated inputs

_FIN = {"allow_nan": False, "allow_infinity": False}


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    case=st.sampled_from([c for c in CASES if c[0] not in ("absolute_error", "pinball_loss")]),
    r=st.lists(st.floats(-800.0, 800.0, **_FIN), min_size=1, max_size=4),
    u=st.lists(st.floats(0.0, 1.0, **_FIN), min_size=4, max_size=4),
    scale=st.floats(-700.0, 700.0, **_FIN),
    near=st.booleans(),
)
def test_generated_inputs_vs_mpmath(case, r, u, scale, near):
    """Raw scores anywhere in [-800, 800], targets across the domain or right at the optimum."""
    name, opts = case
    r = np.array(r)
    dom = _domain(name, opts.get("power"))
    u = np.array(u[: r.size])
    if dom == "unit":
        y = 1 / (1 + np.exp(-np.clip(r, -700, 700))) if near else u
    elif dom == "real":
        y = r + (u - 0.5) if near else (u - 0.5) * 10.0 ** (scale / 100)
    else:
        y = np.exp(np.clip(r, -700, 700) + (u - 0.5) * 1e-6) if near else u * np.exp(scale)
        if dom == "positive":
            y = np.where(y > 0, y, 1.0)
    loss = B.get(name, **opts)
    g, h = loss.gradient_hessian(y, r)
    _l, ge, he, gs, hs = _oracle(name, opts, y, r)
    inputs = {"y_true": y, "raw_prediction": r}
    R.assert_ulp(g, ge, np.float64, inputs=inputs, scale=_scaled(ge, gs), what=f"{name}{opts} gradient")
    R.assert_ulp(h, he, np.float64, inputs=inputs, scale=_scaled(he, hs), what=f"{name}{opts} hessian")


# --------------------------------------------------------------------------- the catalog harness
# The same objectives as catalog Entries (tests/oracle/families/boosting.py): the gradient from the
# harness's numerical differentiation of the mpmath loss, independent of the hand derivatives above.

from oracle.families.boosting import BOOSTING_ENTRIES  # noqa: E402

_ENTRY_CASES = [(e, regime) for e in BOOSTING_ENTRIES for regime in e.regimes]


@pytest.mark.parametrize(("entry", "regime"), _ENTRY_CASES, ids=[f"{e.id}/{g}" for e, g in _ENTRY_CASES])
def test_catalog_entries_gradient(entry, regime):
    arrays = entry.inputs(regime, np.float64)
    y, r = arrays["y_true"], arrays["y_pred"]
    g, _h = B.get(entry.loss, **entry.options).gradient_hessian(y, r)
    R.assert_ulp(g, entry.exact_gradients(arrays), np.float64, max_ulp=entry.max_ulp,
                 inputs={"y_true": y, "raw_prediction": r}, what=f"{entry.id}/{regime} gradient")
