"""Double-length arithmetic (``losskit/_double.py``) against exact rationals and mpmath.

Error-free transformations are checked for exactness (``Fraction`` arithmetic) on NumPy, PyTorch and
jitted JAX; the pairs (sums, products, log, exp) against mpmath at 50-60 digits. The table-driven
exp of ``losskit.boosting`` (its NumPy fast path, built on the same primitives) is checked here too.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import pytest
from array_api_compat import numpy as xp
from mpmath import mpf

from losskit import _double as dd
from losskit import _numerics as nx
from losskit import boosting as B

mpmath.mp.dps = 50
EPS = np.finfo(np.float64).eps


@pytest.fixture(autouse=True)
def _quiet():
    # the primitives evaluate both branches of where(); the library silences the same warnings
    with np.errstate(all="ignore"):
        yield


def _m(x: Any) -> mpf:
    """Exact conversion of a float input; an mpf passes unchanged."""
    return x if isinstance(x, mpf) else mpf(float(x))


# ------------------------------------------------------------------ error-free transformations


def _operands(seed: int, n: int = 400, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Pairs over many binades, with near-cancelling and equal-magnitude pairs, and zeros."""
    rng = np.random.default_rng(seed)
    big = 200 if dtype == np.float64 else 16  # products stay clear of underflow (the precondition)
    a = rng.normal(size=n) * 10.0 ** rng.uniform(-big / 2, big / 2, n)
    b = rng.normal(size=n) * 10.0 ** rng.uniform(-big / 2, big / 2, n)
    b[: n // 4] = -a[: n // 4] * (1 + rng.uniform(-1e-6, 1e-6, n // 4))  # cancellation
    b[n // 4: n // 2] = a[n // 4: n // 2] * rng.uniform(0.5, 2.0, n // 4)  # same binade
    a[-2:], b[-3] = 0.0, 0.0
    return a.astype(dtype), b.astype(dtype)


def _backends() -> list[tuple[str, Any, Any, Any]]:
    """(name, namespace, to-array, from-array) for NumPy, PyTorch and (jitted) JAX when installed."""
    out: list[tuple[str, Any, Any, Any]] = [("numpy", xp, lambda v: v, np.asarray)]
    try:
        import array_api_compat.torch as xt
        import torch

        out.append(("torch", xt, torch.from_numpy, lambda v: v.numpy()))
    except ImportError:  # pragma: no cover
        pass
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_sum_and_two_product_are_exact(dtype):
    a, b = _operands(1, dtype=dtype)
    for _name, ns, to, back in _backends():
        s, e = (back(v) for v in dd.two_sum(ns, to(a), to(b)))
        p, f = (back(v) for v in dd.two_product(ns, to(a), to(b)))
        assert s.dtype == p.dtype == dtype
        for i in range(a.size):
            fa, fb = Fraction(float(a[i])), Fraction(float(b[i]))
            assert Fraction(float(s[i])) + Fraction(float(e[i])) == fa + fb, (a[i], b[i])
            assert s[i] == dtype(a[i] + b[i])
            assert Fraction(float(p[i])) + Fraction(float(f[i])) == fa * fb, (a[i], b[i])
            assert p[i] == dtype(a[i] * b[i])
        big = np.abs(a) >= np.abs(b)
        hi, lo = np.where(big, a, b), np.where(big, b, a)
        s2, e2 = (back(v) for v in dd.fast_two_sum(ns, to(hi), to(lo)))
        np.testing.assert_array_equal(s2, s)
        np.testing.assert_array_equal(e2, e)


def test_error_free_transformations_survive_jax_jit():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    a, b = _operands(3)
    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        s, e = (np.asarray(v) for v in jax.jit(lambda u, v: dd.two_sum(jnp, u, v))(a, b))
        p, f = (np.asarray(v) for v in jax.jit(lambda u, v: dd.two_product(jnp, u, v))(a, b))
    finally:
        jax.config.update("jax_enable_x64", previous)
    ok = (np.abs(a * b) > 1e-290) | (a * b == 0)  # XLA flushes subnormal partial products
    for i in range(a.size):
        fa, fb = Fraction(float(a[i])), Fraction(float(b[i]))
        assert Fraction(float(s[i])) + Fraction(float(e[i])) == fa + fb
        if ok[i]:
            assert Fraction(float(p[i])) + Fraction(float(f[i])) == fa * fb
    assert np.count_nonzero(e) > 100  # the errors are there (XLA did not fold them to 0)


def test_dd_add_and_dd_mul_keep_twice_the_precision():
    rng = np.random.default_rng(7)
    n = 300
    ah = rng.normal(size=n) * 10.0 ** rng.uniform(-20, 20, n)
    bh = rng.normal(size=n) * 10.0 ** rng.uniform(-20, 20, n)
    bh[: n // 3] = -ah[: n // 3] * (1 + rng.uniform(-1e-9, 1e-9, n // 3))  # heavy cancellation
    al = ah * EPS * rng.uniform(-0.5, 0.5, n)
    bl = bh * EPS * rng.uniform(-0.5, 0.5, n)
    sh, sl = dd.dd_add(xp, (ah, al), (bh, bl))
    ph, pl = dd.dd_mul(xp, (ah, al), (bh, bl))
    u = mpf(2) ** -53
    with mpmath.workdps(60):
        for i in range(n):
            a, b = _m(ah[i]) + _m(al[i]), _m(bh[i]) + _m(bl[i])
            assert abs(_m(sh[i]) + _m(sl[i]) - (a + b)) <= 3 * u**2 * abs(a + b)
            assert abs(_m(sl[i])) <= abs(_m(sh[i])) * u  # normalised
            assert abs(_m(ph[i]) + _m(pl[i]) - a * b) <= 4 * u**2 * abs(a * b)


def test_dd_constant_rounds_each_half_once():
    third = Fraction(1, 3)
    hi, lo = dd.dd_constant(third)
    assert hi == 1 / 3
    assert Fraction(lo) == Fraction(float(third - Fraction(hi)))
    hi32, lo32 = dd.dd_constant(third, np.zeros(1, np.float32))
    assert hi32 == float(np.float32(1 / 3))
    assert lo32 == float(np.float32(float(third - Fraction(hi32))))


def test_product_parts_sum_to_the_product():
    rng = np.random.default_rng(19)
    t = np.concatenate([rng.normal(size=200) * 10.0 ** rng.uniform(-50, 50, 200), [0.0, 0.0, 3.0, 1e305]])
    hi = np.concatenate([rng.normal(size=200) * 10.0 ** rng.uniform(-50, 50, 200), [np.inf, 1.0, 0.5, -2.0]])
    lo = hi * EPS * rng.uniform(-0.5, 0.5, hi.size)
    lo[-4:] = 0.0
    parts = dd.product_parts(xp, t, hi, lo)
    with mpmath.workdps(60):
        for i in range(t.size - 4):
            exact = _m(t[i]) * (_m(hi[i]) + _m(lo[i]))
            got = mpmath.fsum(_m(p[i]) for p in parts)
            assert abs(got - exact) <= mpf(2) ** -105 * abs(exact)  # only t * lo is rounded
    assert [float(p[-4]) for p in parts] == [0.0, 0.0, 0.0]  # 0 * inf = 0
    assert [float(p[-3]) for p in parts] == [0.0, 0.0, 0.0]
    assert [float(p[-2]) for p in parts] == [1.5, 0.0, 0.0]
    # the split of 1e305 overflows: the rounded product alone, finite
    assert [float(p[-1]) for p in parts] == [-2e305, 0.0, 0.0]


# ------------------------------------------------------------------------------ compensated sums


def test_accurate_sum_and_dd_sum_are_as_if_in_twice_the_precision():
    # Ogita-Rump-Oishi Sum2 bound: |error| <= eps |S| + (n eps)^2 sum |x|; a naive sum has
    # n eps sum |x|, which is far larger than |S| for these rows.
    rng = np.random.default_rng(2)
    terms = rng.normal(size=(50, 33)) * 10.0 ** rng.integers(-8, 8, size=(50, 33))
    terms = np.concatenate([terms, -terms[:, :-1] * (1 + 1e-9)], axis=1)  # most of it cancels
    got = nx.accurate_sum(xp, terms)
    hi, lo = dd.dd_sum(xp, terms)
    np.testing.assert_array_equal(hi, got)  # accurate_sum is dd_sum's high part
    naive_failures = 0
    for g, h, lw, row, naive in zip(got, hi, lo, terms, terms.sum(axis=1), strict=True):
        exact = mpmath.fsum(mpmath.mpf(float(v)) for v in row)
        bound = 2 * EPS * abs(exact) + (row.size * EPS) ** 2 * float(np.abs(row).sum())
        assert abs(mpmath.mpf(float(g)) - exact) <= bound
        # the pair is s + err exactly: only the second-order term of the bound is left
        assert abs(mpmath.mpf(float(h)) + mpmath.mpf(float(lw)) - exact) <= bound - 2 * EPS * abs(exact)
        naive_failures += abs(mpmath.mpf(float(naive)) - exact) > bound
    assert naive_failures > 10  # the test inputs do need the compensation


# -------------------------------------------------------------- logarithm and exponential


def _log_double_inputs() -> np.ndarray:
    rng = np.random.default_rng(11)
    return np.concatenate([
        10.0 ** rng.uniform(-308, 0, 300), 1 + rng.integers(-50, 51, 60) * 2.0**-52,
        2.0 ** rng.integers(-1074, 1, 30).astype(float),
        np.nextafter(2.0 ** rng.integers(-1000, 1, 30).astype(float), 0.0),
        np.sqrt(0.5) * (1 + rng.uniform(-1e-12, 1e-12, 30)), [5e-324, 0.5, 2.0, 1e300]])


def _double_error(hi, lo, x) -> float:
    """Worst relative error of hi + lo against log(x), as a power of 2."""
    worst = mpmath.mpf(0)
    for h, lw, v in zip(hi, lo, x, strict=True):
        exact = mpmath.log(mpmath.mpf(float(v)))
        got = mpmath.mpf(float(h)) + mpmath.mpf(float(lw))
        if exact == 0:
            assert got == 0
            continue
        worst = max(worst, abs(got - exact) / abs(exact))
    return float(mpmath.log(worst, 2)) if worst else -np.inf


def test_log_double_has_twice_the_precision():
    with mpmath.workdps(60):
        x = _log_double_inputs()
        hi, lo = dd.log_double(xp, x)
        assert _double_error(hi, lo, x) <= -100  # float64: ~2**-104.5 measured
        x32 = x[x > 1e-37].astype(np.float32)
        hi, lo = dd.log_double(xp, x32)
        assert hi.dtype == np.float32
        assert _double_error(hi, lo, x32) <= -45  # float32: ~2**-48 measured
    hi, lo = dd.log_double(xp, np.array([0.0, np.inf, np.nan]))
    np.testing.assert_array_equal(hi, [-np.inf, np.inf, np.nan])
    np.testing.assert_array_equal(lo, 0.0)


def test_log_double_on_jax_jitted_and_torch():
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xt
    import jax.numpy as jnp

    x = _log_double_inputs()
    x = x[x > 1e-300]  # XLA flushes subnormals
    with mpmath.workdps(60):
        hi, lo = dd.log_double(xt, torch.from_numpy(x))
        assert _double_error(hi.numpy(), lo.numpy(), x) <= -100
        previous = jax.config.read("jax_enable_x64")
        jax.config.update("jax_enable_x64", True)
        try:
            hi, lo = jax.jit(lambda v: dd.log_double(jnp, v))(jnp.asarray(x))
            assert _double_error(np.asarray(hi), np.asarray(lo), x) <= -100
        finally:
            jax.config.update("jax_enable_x64", previous)


def test_exp_double_has_twice_the_precision():
    rng = np.random.default_rng(13)
    y = np.concatenate([-(10.0 ** rng.uniform(-17, np.log10(700), 300)), rng.uniform(-1, 1, 50),
                        [0.0, -np.log(2.0), -700.0]])
    hi, lo = dd.exp_double(xp, y)
    with mpmath.workdps(60):
        for v, h, lw in zip(y, hi, lo, strict=True):
            exact = mpmath.exp(mpmath.mpf(float(v)))
            got = mpmath.mpf(float(h)) + mpmath.mpf(float(lw))
            # the logarithm's 2**-104 relative error is |y| 2**-104 in the exponent; below exp(-600)
            # the low part is subnormal (about 2**-64 relative at exp(-700))
            bound = 2**-103 * max(1.0, abs(float(v))) if v > -600 else 2**-60
            assert abs(got - exact) / exact <= bound, v
    hi, lo = dd.exp_double(xp, np.array([-np.inf, -800.0, np.inf]))
    np.testing.assert_array_equal(hi, [0.0, 0.0, np.inf])
    np.testing.assert_array_equal(lo, 0.0)


def _backend_arrays(backend: str, x: np.ndarray):
    if backend == "torch":
        torch = pytest.importorskip("torch")
        return torch.from_numpy(x), lambda r: r.numpy()
    return x, np.asarray


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_double_length_log_and_exp_against_mpmath(backend, rng):
    import array_api_compat

    x = np.concatenate([10.0 ** rng.uniform(-300, 300, 300), rng.uniform(0.5, 2.0, 300),
                        [0.5, 2.0, 1 + 2.0 ** -52, 1 - 2.0 ** -53, 1.7976931348623157e308, 5e-324]])
    arr, back = _backend_arrays(backend, x)
    xp = array_api_compat.array_namespace(arr)
    hi, lo = (back(v) for v in dd.log_double(xp, arr))
    for h, lo_, v in zip(hi, lo, x, strict=True):
        exact = mpmath.log(mpmath.mpf(float(v)))
        assert abs(mpmath.mpf(float(h)) + mpmath.mpf(float(lo_)) - exact) <= 2.0 ** -56 * abs(exact)
    y = np.concatenate([rng.uniform(-700, 700, 300), rng.uniform(-1, 1, 300), [0.0, 1e-300]])
    arr, back = _backend_arrays(backend, y)
    hi, lo = (back(v) for v in dd.exp_double(xp, arr))
    for h, lo_, v in zip(hi, lo, y, strict=True):
        exact = mpmath.exp(mpmath.mpf(float(v)))
        assert abs(mpmath.mpf(float(h)) + mpmath.mpf(float(lo_)) - exact) <= 2.0 ** -56 * exact


# ------------------------------------------------- losskit.boosting's table-driven exp (NumPy)


def test_exp_parts_is_double_double_accurate(rng):
    """The scaled double-double exp under the cancelling paths: within 2**-102 of exp(x) over the
    whole float64 exponent range and beyond (the power of two carries what a float cannot)."""
    x = np.concatenate([rng.uniform(-800.0, 800.0, 300), rng.normal(0.0, 1.0, 100),
                        [0.0, 5e-324, -1e-300, 1e-8, 709.78, -745.13, 1500.0, -1500.0]])
    xl = np.concatenate([rng.uniform(-1, 1, x.size - 8) * np.spacing(x[:-8]) / 2, np.zeros(8)])
    mh, ml, k = B._exp_parts(x, xl)
    with mpmath.workdps(60):
        for xi, li, a, b, kk in zip(x, xl, mh, ml, k, strict=True):
            exact = mpmath.exp(_m(xi) + _m(li))
            got = (_m(a) + _m(b)) * mpf(2) ** int(kk)
            assert abs(got - exact) <= mpf(2) ** -102 * exact, (xi, li)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_table_absolute_error_is_below_eps_over_128(dtype):
    # the bound the Poisson kernels' tier selection relies on: |hi + lo - log x| <= eps/128
    # (+ 2**-100 |log x|), on NumPy and PyTorch, over the whole range and near 1
    rng = np.random.default_rng(17)
    big = 300 if dtype == np.float64 else 37
    x = np.concatenate([10.0 ** rng.uniform(-big, big, 400), 1 + rng.uniform(-1e-3, 1e-3, 100),
                        [1.0, 0.5, 2.0, 0.75, 1.5]]).astype(dtype)
    eps = float(np.finfo(dtype).eps)
    for _name, ns, to, back in _backends():
        hi, lo = (back(v) for v in dd.log_table(ns, to(x)))
        assert hi.dtype == dtype
        with mpmath.workdps(60):
            for v, h, lw in zip(x, hi, lo, strict=True):
                exact = mpmath.log(_m(v))
                err = abs(_m(h) + _m(lw) - exact)
                assert err <= eps / 128 + abs(exact) * 2.0**-100 * (2**29 if dtype == np.float32
                                                                    else 1), v
    zero_inf_nan = np.array([0.0, np.inf, np.nan, -1.0], dtype=dtype)
    hi, lo = dd.log_table(xp, zero_inf_nan)
    assert hi[0] == -np.inf
    assert hi[1] == np.inf
    assert np.isnan(hi[2:]).all()
    assert np.all(lo == 0)
