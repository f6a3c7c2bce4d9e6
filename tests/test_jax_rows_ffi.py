"""The CPU route of logits_distillation on JAX arrays (``losskit/_backends/jax.py``, bottom): numpy.py's
C kernel (``distill`` / ``distill_d``) as the XLA FFI target ``losskit_rows``, the rows it hands back
(float64: nearly equal distributions) recomputed by numpy.py's kernel. The NumPy path is what the
oracle suite checks against mpmath (``tests/test_catalog.py``, whose ``test_backend`` runs this route on
JAX arrays too); here: under ``jax.jit`` the route gives the NumPy path's values and gradients bit for
bit, the handed-back rows included, and grad, vmap and second derivatives agree with the generic
kernel. Also fenchel_young(regularizer="softmax")'s fused value and its fallback (0 * inf)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import test_backend_jax as tbj  # noqa: E402

import losskit  # noqa: E402
from losskit._backends import jax as jax_backend  # noqa: E402
from losskit._backends import numpy as np_backend  # noqa: E402

pytestmark = pytest.mark.skipif(not np_backend.available() or jax.default_backend() != "cpu"
                                or not jax_backend._target_available(jax_backend._ROWS_TARGET),
                                reason="needs the compiled kernels with the XLA FFI target and a CPU device")


def _teacher_student(dtype: str, rows: int = 16, k: int = 40, equal: int = 0) -> tuple[np.ndarray, ...]:
    """Random logits; the first ``equal`` students equal their teacher up to a shift and the last bit
    of one logit (KL about 1e-16 or less: distill_d hands such rows back)."""
    rng = np.random.default_rng(11)
    z = (rng.normal(size=(rows, k)) * 3).astype(dtype)
    w = (rng.normal(size=(rows, k)) * 3).astype(dtype)
    for r in range(equal):
        w[r] = z[r] + 0.5
        w[r, 3] = np.nextafter(w[r, 3], np.inf)
    return z, w


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_distillation_matches_numpy_under_jit(dtype: str) -> None:
    z, w = _teacher_student(dtype, equal=3 if dtype == "float64" else 0)
    loss = losskit.LogitsDistillation(temperature=2.0, reduction="none")
    with tbj.x64(dtype == "float64"):
        run = jax.jit(lambda a, b: loss(a, b))
        assert "losskit_rows" in run.lower(jnp.asarray(z), jnp.asarray(w)).as_text()
        value = np.asarray(run(jnp.asarray(z), jnp.asarray(w)))
        grad = np.asarray(jax.jit(jax.grad(lambda a, b: jnp.sum(loss(a, b)), argnums=1))(
            jnp.asarray(z), jnp.asarray(w)))
    want_v = loss(z, w)
    want_g = losskit.LogitsDistillation(temperature=2.0, reduction="sum").gradient(z, w)
    assert value.dtype == np.dtype(dtype)
    assert grad.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(value, want_v)
    np.testing.assert_array_equal(grad, want_g)
    if dtype == "float64":  # the handed-back rows: tiny, positive, as the generic kernel gives them
        assert np.all((value[:3] > 0) & (value[:3] < 1e-12))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_distillation_transformations_agree_with_generic(dtype: str, monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    z, w = _teacher_student(dtype, rows=8, k=6)
    loss = losskit.LogitsDistillation(temperature=1.5)
    tol = {"rtol": 2e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-14}

    def results() -> tuple[np.ndarray, ...]:
        with tbj.x64(dtype == "float64"):
            zj, wj = jnp.asarray(z), jnp.asarray(w)
            batched = jax.vmap(lambda a, b: loss(a, b))(zj.reshape(2, 4, 6), wj.reshape(2, 4, 6))
            hess = jax.jit(jax.hessian(lambda b: loss(zj[:2], b)))(wj[:2])
            return np.asarray(batched), np.asarray(hess)

    ffi = results()
    monkeypatch.setattr(jax_backend, "USE_FFI", False)  # the generic kernel in the graph
    generic = results()
    for a, b in zip(ffi, generic, strict=True):
        np.testing.assert_allclose(a, b, **tol)


def test_fenchel_young_softmax_fast_and_fallback() -> None:
    """The fused value against the NumPy path (4 ulp: the same formula, summed in another order), on
    rows with zero and subnormal targets, and with a -inf logit at a zero target (0 * inf: the
    fallback under lax.cond)."""
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(6, 30)) * 3).astype(np.float32)
    t = rng.dirichlet(np.full(30, 0.3), size=6).astype(np.float32)
    t[1, :4] = 0.0
    t[2, 5] = np.float32(1e-40)
    loss = losskit.FenchelYoung(regularizer="softmax", reduction="none")
    for xs in (x, np.where(np.arange(30) == 0, -np.inf, x).astype(np.float32)):
        ts = t.copy()
        if np.isinf(xs).any():
            ts[:, 0] = 0.0
            ts /= ts.sum(axis=-1, keepdims=True)
        got = np.asarray(jax.jit(lambda a, b: loss(a, b))(jnp.asarray(ts), jnp.asarray(xs)))
        want = loss(ts, xs)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=4 * np.finfo(np.float32).eps, atol=0)
