"""The product form of the JAX cross-entropy kernels (``_PRODUCT`` in ``losskit/_backends/jax.py``):
``exp(x_j - c) = exp(x_j) exp(-c)`` with no correction of a rounded difference, under ``jax.jit``,
against mpmath on rows built to lie inside the form's domain (so the fast branch is the one
checked, not the exact kernel behind ``lax.cond``) and hard for it: confident rows whose loss is
~1e-25, labels 60 below the maximum, logits up to +-75, terms spread over 70 orders of magnitude,
tied maxima."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from oracle import reference as R  # noqa: E402
from test_backend_jax import x64  # noqa: E402

from losskit._backends import jax as jax_backend  # noqa: E402


def _rows(n: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    rows, labels = [], []
    for i in range(24):
        kind = i % 6
        x = rng.standard_normal(n) * 3.0
        k = int(rng.integers(n))
        if kind == 1:  # confident, label at the maximum: loss ~ sum exp(-55..-62)
            x = rng.uniform(-62.0, -55.0, n)
            x[k] = 0.5
        elif kind == 2:  # label far below the maximum
            x[k] = x.max() - 60.0
        elif kind == 3:  # large logits of both signs
            x = rng.uniform(-75.0, 75.0, n)
            x[k] = rng.uniform(-75.0, 75.0)
        elif kind == 4:  # tied maxima (dense kernel's share term), label elsewhere
            top = x.max() + 1.0
            x[: max(2, n // 4)] = top
        elif kind == 5:  # confident, label at the maximum, a large maximum
            x = 70.0 + rng.uniform(-60.0, -50.0, n)
            x[k] = 70.0
        rows.append(x)
        labels.append(k)
    return np.array(rows, dtype=dtype), np.array(labels, dtype=np.int32)


def _exact(x: np.ndarray, k: np.ndarray) -> tuple[list[mp.mpf], list[list[mp.mpf]]]:
    values, grads = [], []
    with mp.workdps(60):
        for row, label in zip(x, k, strict=True):
            z = [mp.mpf(float(v)) for v in row]
            top = max(z)
            total = mp.fsum(mp.exp(v - top) for v in z)
            lse = top + mp.log(total)
            values.append(lse - z[label])
            grads.append([mp.exp(v - lse) - (1 if j == label else 0) for j, v in enumerate(z)])
    return values, grads


def _in_domain(x: np.ndarray, k: np.ndarray) -> None:
    """The conditions of the fast branch (the kernels' comments), checked here in float64 so the
    test knows it exercises that branch."""
    lim = 75.0 if x.dtype == np.float32 else 670.0  # the dense kernel's _DENSE_LIM (below the sparse one's)
    floor = 2.0**-100 if x.dtype == np.float32 else 2.0**-960
    xd = x.astype(np.float64)
    z = xd[np.arange(len(k)), k]
    others = np.where(np.arange(x.shape[-1]) == k[:, None], 0.0, np.exp(xd)).sum(-1)
    assert np.all(np.abs(z) <= lim)
    assert np.all(np.abs(xd.max(-1)) <= lim)
    assert np.all(others >= x.shape[-1] * floor)
    assert np.all(np.exp(xd).sum(-1) >= 1.0)


@pytest.mark.parametrize("n", [7, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_and_dense_within_8_ulp(n: int, dtype: type) -> None:
    x, k = _rows(n, dtype)
    _in_domain(x, k)
    values, grads = _exact(x, k)
    onehot = np.eye(n, dtype=dtype)[k]
    with x64(dtype == np.float64):
        jx = jnp.asarray(x)
        sparse = jax.jit(lambda k, x, g: jax_backend._scce_logits(k[:, None], x, g), static_argnums=2)
        dense = jax.jit(lambda t, x, g: jax_backend._cce_logits(t, x, g), static_argnums=2)
        for name, fn, y in (("sparse", sparse, jnp.asarray(k)), ("dense", dense, jnp.asarray(onehot))):
            v = np.asarray(fn(y, jx, False)[0])
            v2, g = (np.asarray(a) for a in fn(y, jx, True))
            assert v.dtype == dtype
            assert g.dtype == dtype
            R.assert_ulp(v, values, dtype, what=f"{name} value")
            R.assert_ulp(v2, values, dtype, what=f"{name} v&g value")
            R.assert_ulp(g, grads, dtype, what=f"{name} gradient")


def test_outside_the_domain_takes_the_exact_kernel() -> None:
    """A row beyond the form's reach (|label logit| > 80, an exp that overflows, a row of S < 1
    whose terms fall below the normal range) still gives the exact kernel's numbers."""
    x = np.array([[100.0, 1.0, 2.0], [0.0, 95.0, -3.0], [-90.0, -200.0, -95.0], [3.0, -1.0, 0.5]],
                 dtype=np.float32)
    k = np.array([1, 0, 0, 2], dtype=np.int32)
    values, grads = _exact(x, k)
    fn = jax.jit(lambda k, x, g: jax_backend._scce_logits(k[:, None], x, g), static_argnums=2)
    v, g = (np.asarray(a) for a in fn(jnp.asarray(k), jnp.asarray(x), True))
    R.assert_ulp(v, values, np.float32, what="value")
    R.assert_ulp(g, grads, np.float32, what="gradient")
    np.testing.assert_array_equal(np.asarray(fn(jnp.asarray(k), jnp.asarray(x), False)[0]), v)


def test_dense_value_outside_the_domain_takes_the_exact_kernel() -> None:
    """The dense kernel's value-only path (one fusion, the domain flag folded into the value by
    arithmetic): rows beyond its reach (a maximum of 78, above its bound of 75 but below the
    sparse kernel's 80; 95; terms below the normal range; a row of tied maxima only; an infinite
    logit) give the exact kernel's numbers, alone and beside an ordinary row."""
    x = np.array([[78.0, 1.0, 2.0], [0.0, 95.0, -3.0], [-90.0, -200.0, -95.0], [0.0, 0.0, 0.0],
                  [3.0, -1.0, 0.5]], dtype=np.float32)
    k = np.array([1, 0, 0, 2, 2], dtype=np.int32)
    values, _ = _exact(x, k)
    onehot = np.eye(3, dtype=np.float32)[k]
    fn = jax.jit(lambda t, x: jax_backend._cce_logits(t, x, False)[0])
    R.assert_ulp(np.asarray(fn(jnp.asarray(onehot), jnp.asarray(x))), values, np.float32, what="value")
    for i in range(len(k)):  # each row alone: the fast branch where the row is in its domain
        v = np.asarray(fn(jnp.asarray(onehot[i:i + 1]), jnp.asarray(x[i:i + 1])))
        R.assert_ulp(v, values[i:i + 1], np.float32, what=f"row {i}")
    odd = jnp.asarray(np.array([[np.inf, 0.0, 1.0], [np.nan, 0.0, 1.0], [1.0, 2.0, 0.5]], np.float32))
    hard = jnp.asarray(np.array([[0.0, 1.0, 0.0]] * 3, np.float32))
    np.testing.assert_array_equal(np.asarray(fn(hard, odd)),  # the exact kernel's, bit for bit
                                  np.asarray(jax_backend._cce_logits_slow(hard, odd, False)[0][:, 0]))


@pytest.mark.parametrize("n", [7, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_poly1_value_within_8_ulp(n: int, dtype: type) -> None:
    """poly_loss_cross_entropy's value-only kernel (the dense kernel's fusion with 1 - softmax
    formed without cancellation) against mpmath, one-hot and soft targets, epsilon 2 and 0.5,
    on the same hard rows (confident rows whose loss is ~1e-25, tied maxima, large logits)."""
    x, k = _rows(n, dtype)
    _in_domain(x, k)
    soft = np.random.default_rng(1).dirichlet(np.ones(n), size=len(k)).astype(dtype)
    for t in (np.eye(n, dtype=dtype)[k], soft):
        for eps in (2.0, 0.5):
            exact = []
            with mp.workdps(60):
                for row, target in zip(x, t, strict=True):
                    z = [mp.mpf(float(v)) for v in row]
                    top = max(z)
                    lse = top + mp.log(mp.fsum(mp.exp(v - top) for v in z))
                    exact.append(mp.fsum(mp.mpf(float(c)) * ((lse - v) + eps * (1 - mp.exp(v - lse)))
                                         for c, v in zip(target, z, strict=True) if c != 0))
            with x64(dtype == np.float64):
                fn = jax.jit(lambda t, x, e=eps: jax_backend._poly1_logits(jnp, t, x, grad=False,
                                                                          epsilon=e)[0])
                v = np.asarray(fn(jnp.asarray(t), jnp.asarray(x)))
            assert v.dtype == dtype
            R.assert_ulp(v, exact, dtype, what=f"poly1 eps={eps}")
