"""Each stable primitive against mpmath at 50 digits, over its whole float64 range."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from array_api_compat import numpy as xp

from losskit import _numerics as nx

mpmath.mp.dps = 50
EPS = np.finfo(np.float64).eps


TINY = np.finfo(np.float64).smallest_normal


def ulps(computed, exact_fn, *args):
    """Relative error in units of float64 epsilon, measured in mpmath; 0 where the exact value is
    not a normal float64 (subnormal or overflowing results are outside the accuracy claim)."""
    out = []
    for idx in np.ndindex(np.shape(computed)):
        exact = exact_fn(*(mpmath.mpf(float(a[idx])) for a in args))
        got = mpmath.mpf(float(computed[idx]))
        if exact == 0:
            out.append(0.0 if got == 0 else np.inf)
        elif not TINY <= abs(exact) <= np.finfo(np.float64).max:
            out.append(0.0)
        else:
            out.append(float(abs(got - exact) / abs(exact) / EPS))
    return np.array(out)


@pytest.fixture(autouse=True)
def _quiet():
    # the primitives evaluate both branches of where(); the library silences the same warnings
    with np.errstate(all="ignore"):
        yield


def spread(low, high, n=400, seed=0):
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.uniform(low, high, n), [low, high, 0.0, -1e-300, 1e-300]]))


def test_softplus():
    x = np.concatenate([spread(-745, 745), np.geomspace(1e-20, 30, 200), -np.geomspace(1e-20, 700, 200)])
    got = nx.softplus(xp, x)
    assert ulps(got, lambda v: mpmath.log1p(mpmath.exp(v)), x).max() <= 2
    assert nx.softplus(xp, np.array([np.inf, -np.inf])).tolist() == [np.inf, 0.0]


def test_sigmoid():
    x = np.concatenate([spread(-745, 745), np.geomspace(1e-20, 40, 200)])
    x = np.concatenate([x, -x])
    assert ulps(nx.sigmoid(xp, x), lambda v: 1 / (1 + mpmath.exp(-v)), x).max() <= 2


def test_log_both_near_zero_and_one():
    p = np.concatenate([1 - np.geomspace(EPS / 2, 0.5, 200), np.geomspace(2.2250738585072014e-308,
                                                                           0.5, 200)])
    log_p, log_q = nx.log_both(xp, p)
    assert ulps(log_p, mpmath.log, p).max() <= 1
    assert ulps(log_q, lambda v: mpmath.log1p(-v), p).max() <= 1
    assert nx.log_both(xp, np.array([0.0]))[0][0] == -np.inf
    assert nx.log_both(xp, np.array([1.0]))[1][0] == -np.inf


def test_logistic_parts_agree():
    x = np.linspace(-40, 40, 801)
    e = np.exp(-np.abs(x))
    sp_neg = nx.softplus_pair(xp, x, e)[1]
    sig_neg = nx.sigmoid_pair(xp, x, e)[1]
    assert ulps(sp_neg, lambda v: mpmath.log1p(mpmath.exp(-v)), x).max() <= 2
    assert ulps(sig_neg, lambda v: 1 / (1 + mpmath.exp(v)), x).max() <= 2


def test_kl_parts_sum_to_the_term_near_and_far():
    rng = np.random.default_rng(1)
    p = rng.uniform(1e-3, 1.0, 400)
    rel = np.concatenate([np.geomspace(1e-15, 0.9, 200), -np.geomspace(1e-15, 0.9, 200)])
    y = p * (1 + rel)
    far_p = np.geomspace(1e-300, 1.0, 100)
    far_y = np.geomspace(1.0, 1e-300, 100)
    y, p = np.concatenate([y, far_y, [0.3, 0.0]]), np.concatenate([p, far_p, [0.0, 0.7]])
    first, second = nx.kl_parts(xp, y, p)
    assert first[-2] == np.inf  # p = 0 < y
    assert first[-1] == second[-1] == 0.0  # y = 0: the term is 0
    for a, b, yy, pp in zip(first[:-2], second[:-2], y[:-2], p[:-2], strict=True):
        ym, pm = mpmath.mpf(float(yy)), mpmath.mpf(float(pp))
        exact = ym * mpmath.log(ym / pm)
        if b == 0:  # far: the term itself, to a couple of ulp
            assert abs(mpmath.mpf(float(a)) - exact) <= 2 * EPS * abs(exact)
        else:  # near: the excess (>= 0) to a few ulp, and the exact mass difference
            assert a >= 0
            assert mpmath.mpf(float(b)) == ym - pm
            excess = exact - (ym - pm)
            assert abs(mpmath.mpf(float(a)) - excess) <= 4 * EPS * excess


def test_sum_others_keeps_the_small_terms():
    v = np.array([[1 - 1e-12, 1e-12, 0.0], [0.2, 0.3, 0.5]])
    total, others = nx.sum_others(xp, v)
    assert others[0, 0] == 1e-12
    assert others[0, 1] == 1 - 1e-12
    np.testing.assert_allclose(others[1], [0.8, 0.7, 0.5], rtol=2 * EPS)
    np.testing.assert_allclose(total[:, 0], [1.0, 1.0], rtol=EPS)


@pytest.mark.parametrize("fn", [nx.softplus, nx.sigmoid, lambda xp, v: nx.log_both(xp, v)[0]])
def test_nan_propagates(fn):
    assert np.isnan(fn(xp, np.array([np.nan]))[0])


def test_log1p_on_jax_is_accurate_eager_and_jitted():
    # XLA's own float64 log1p is ~120 ulp off on [-0.5, -0.3]; losskit's replacement must not be,
    # and jax.jit must not simplify (1 + x) - 1 back to x.
    jax = pytest.importorskip("jax")
    x = np.concatenate([-np.geomspace(1e-300, 0.999, 300), np.geomspace(1e-300, 1e300, 300)])
    import jax.numpy as jnp

    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        for fn in (lambda v: nx.log1p(jnp, v), jax.jit(lambda v: nx.log1p(jnp, v))):
            got = np.asarray(fn(jnp.asarray(x, dtype=jnp.float64)))
            assert got.dtype == np.float64
            assert ulps(got, mpmath.log1p, x).max() <= 2
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.mark.parametrize("c", [0.5, 0.3, 1 / 3, 0.05])
def test_exp_scaled_difference_is_exact_where_the_naive_product_is_not(c):
    # exp(c (a - b)) for logits up to 2000 apart: the naive c * (a - b) is off by ~|c (a - b)| eps/2
    rng = np.random.default_rng(7)
    a = rng.uniform(-1000.0, 1000.0, 200)
    b = np.full_like(a, 1000.0)
    got = nx.exp_scaled_difference(xp, c, a, b)
    exact = lambda u, v: mpmath.exp(mpmath.mpf(c) * (u - v))  # noqa: E731
    assert ulps(got, exact, a, b).max() <= 2
    assert ulps(np.exp(c * (a - b)), exact, a, b).max() > 20  # the test inputs need it


def test_exp_scaled_difference_in_float32_on_jax_eager_and_jitted():
    # float32 work (JAX without x64): c = 0.3 is not a float32, its remainder is applied separately
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    a = np.linspace(-100.0, 80.0, 61, dtype=np.float32)
    b = np.full_like(a, 80.0)
    for fn in (lambda u, v: nx.exp_scaled_difference(jnp, 0.3, u, v),
               jax.jit(lambda u, v: nx.exp_scaled_difference(jnp, 0.3, u, v))):
        got = np.asarray(fn(jnp.asarray(a), jnp.asarray(b)))
        assert got.dtype == np.float32
        for u, v, g in zip(a, b, got, strict=True):
            e = mpmath.exp(mpmath.mpf(0.3) * (mpmath.mpf(float(u)) - mpmath.mpf(float(v))))
            assert abs(mpmath.mpf(float(g)) - e) / e <= 2 * np.finfo(np.float32).eps


def test_kl_log_parts_keep_a_divergence_within_rounding():
    # x = log(t) rounded, moved by a few ulps: the exact terms t (log t - x) are of order eps * t
    rng = np.random.default_rng(5)
    t = rng.uniform(1e-3, 1.0, 200)
    x = np.log(t) + rng.integers(-3, 4, 200) * np.spacing(np.log(t))
    parts = nx.kl_log_parts(xp, t, x)
    for i in range(len(t)):
        exact = mpmath.mpf(t[i]) * (mpmath.log(mpmath.mpf(t[i])) - mpmath.mpf(x[i]))
        got = mpmath.fsum(mpmath.mpf(float(p[i])) for p in parts)
        if exact != 0:
            assert abs(got - exact) / abs(exact) <= 2**-45, (t[i], x[i])
    naive = t * (np.log(t) - x)
    assert np.nanmax(ulps(naive, lambda a, b: a * (mpmath.log(a) - b), t, x)) > 1e6  # inputs need it
    zero = nx.kl_log_parts(xp, np.array([0.0, 0.5]), np.array([-np.inf, -np.inf]))
    assert [float(p[0]) for p in zero] == [0.0, 0.0, 0.0]
    assert float(zero[0][1]) == np.inf


def test_kl_log_target_parts_keep_a_cancelling_row():
    # sum_j e^y_j (y_j - x_j) with the last x chosen to cancel the others: 1e2..1e4 times below
    # the sum of the magnitudes, where rounding exp(y) alone costs that many ulps
    rng = np.random.default_rng(17)
    t = rng.uniform(0.05, 1.0, (50, 4))
    y = np.log(t / t.sum(-1, keepdims=True))
    x = y + rng.integers(-40, 41, y.shape) * np.spacing(np.abs(y))
    x[:, 3] = y[:, 3] + ((y[:, :3] - x[:, :3]) * np.exp(y[:, :3])).sum(-1) / np.exp(y[:, 3])
    parts = nx.kl_log_target_parts(xp, y, x)
    got = nx.accurate_sum(xp, np.concatenate(parts, axis=-1))
    with mpmath.workdps(60):
        for r in range(len(y)):
            exact = mpmath.fsum(mpmath.exp(mpmath.mpf(a)) * (mpmath.mpf(a) - mpmath.mpf(b))
                                for a, b in zip(y[r], x[r], strict=True))
            if exact != 0:
                assert abs(mpmath.mpf(float(got[r])) - exact) / abs(exact) <= 4 * EPS
    zero = nx.kl_log_target_parts(xp, np.array([-np.inf, 0.0]), np.array([-np.inf, -np.inf]))
    assert [float(p[0]) for p in zero] == [0.0, 0.0, 0.0]
    assert float(zero[0][1]) == np.inf
