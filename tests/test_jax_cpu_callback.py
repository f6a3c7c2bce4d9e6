"""The CPU route of the JAX backend (``losskit/_backends/jax.py``, bottom): on a CPU device, kl_div
and the gradient of categorical cross-entropy from logits on short rows run the C kernels through one
``jax.pure_callback``; poisson, mean_gamma_deviance, poisson_nll and gaussian_nll run their checked C
kernels as the XLA FFI target ``losskit_run3`` (or that callback where the extension lacks it).
``tests/test_backend_jax.py`` checks that route against mpmath under ``jax.jit`` (its arrays are short
rows on CPU); here: every transformation (jit, grad, value_and_grad, vmap, second derivatives) gives
what the in-graph kernels give, the checked kernels give NumPy's results, float64 runs the float64
C kernel, and the in-graph kernels that the route replaces on CPU stay checked by the oracle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import test_backend_jax as tbj  # noqa: E402

import losskit  # noqa: E402
from losskit._backends import jax as jax_backend  # noqa: E402
from losskit._backends import numpy as np_backend  # noqa: E402

pytestmark = pytest.mark.skipif(not np_backend.available() or jax.default_backend() != "cpu",
                                reason="needs the compiled kernels and a CPU device")


def _cases(dtype: str) -> dict[str, tuple[Any, Any, Any]]:
    rng = np.random.default_rng(7)
    z = rng.normal(size=(6, 5)) * 3
    t = np.exp(rng.normal(size=(6, 5)))
    t /= t.sum(-1, keepdims=True)
    return {"kl_div": (losskit.KLDiv() if hasattr(losskit, "KLDiv") else losskit.get("kl_div"),
                       jnp.asarray(t, dtype), jnp.asarray(z - np.log(np.exp(z).sum(-1, keepdims=True)),
                                                          dtype)),
            "categorical_crossentropy": (type(losskit.get("categorical_crossentropy"))(from_logits=True),
                                         jnp.asarray(t, dtype), jnp.asarray(z, dtype)),
            "poisson": (losskit.get("poisson"), jnp.asarray(t * 5, dtype), jnp.asarray(np.exp(z / 3), dtype)),
            "mean_gamma_deviance": (losskit.get("mean_gamma_deviance"), jnp.asarray(t * 5, dtype),
                                    jnp.asarray(np.exp(z / 3), dtype)),
            "poisson_nll": (losskit.get("poisson_nll"), jnp.asarray(np.round(t * 9), dtype),
                            jnp.asarray(z / 3, dtype))}


def _everything(loss: Any, t: Any, p: Any, hvp: bool = True) -> dict[str, Any]:
    def total(p: Any) -> Any:
        return loss(t, p)

    v = jax.random.normal(jax.random.PRNGKey(0), p.shape, p.dtype)
    return {"value": jax.jit(total)(p), "grad": jax.jit(jax.grad(total))(p),
            "value_and_grad": jax.jit(jax.value_and_grad(total))(p),
            "vmap": jax.jit(jax.vmap(total))(jnp.stack([p, p * 0.5])),
            "vmap_grad": jax.vmap(jax.grad(total))(jnp.stack([p, p * 0.5])),
            "per_sample": jax.jit(lambda p: loss.call(t, p))(p),
            **({"hvp": jax.jvp(jax.grad(total), (p,), (v,))[1]} if hvp else {})}


@pytest.mark.parametrize(("name", "dtype"), [("kl_div", "float64"), ("categorical_crossentropy", "float32")])
def test_every_transformation_as_in_graph(name: str, dtype: str, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    with tbj.x64(dtype == "float64"):
        loss, t, p = _cases(dtype)[name]
        jaxpr = str(jax.make_jaxpr(jax.value_and_grad(lambda p: loss(t, p)))(p))
        assert "_host_kernel" in jaxpr  # the route is taken on CPU
        host = _everything(loss, t, p)
        monkeypatch.setattr(jax_backend, "HOST_KERNELS", False)
        assert "_host_kernel" not in str(jax.make_jaxpr(jax.value_and_grad(lambda p: loss(t, p)))(p))
        # the in-graph kl_div cannot be differentiated twice (a lax.cond branch meets a symbolic
        # zero tangent; a known defect of that kernel): its Hessian is 0 (gradient -t / n)
        graph = _everything(loss, t, p, hvp=name != "kl_div")
    if name == "kl_div":
        assert not np.any(np.asarray(host.pop("hvp")))
    tol = 1e-5 if dtype == "float32" else 1e-13  # both within 8 ulp of the truth (the oracle suites)
    for key, expected in graph.items():
        for a, b in zip(jax.tree.leaves(host[key]), jax.tree.leaves(expected), strict=True):
            assert np.asarray(a).dtype == np.dtype(dtype), key
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol, err_msg=key)


RUN3_ROUTES = ["ffi", "callback"] if jax_backend._target_available(jax_backend._RUN3_TARGET) else ["callback"]
RUN3_CASES = [(n, d, RUN3_ROUTES[0]) for n, d in (("poisson", "float32"), ("mean_gamma_deviance", "float32"),
                                                  ("poisson_nll", "float32"), ("poisson_nll", "float64"))]
RUN3_CASES += [("poisson_nll", "float32", "callback")]


@pytest.mark.parametrize(("name", "dtype", "route"), RUN3_CASES)
def test_checked_kernels_on_the_host(name: str, dtype: str, route: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """poisson, mean_gamma_deviance and poisson_nll take the route (the FFI target losskit_run3, or the
    host callback) under jit, grad and vmap, and give NumPy's C kernel results (the rows the kernel
    cannot keep are recomputed; tests/test_backend_cpu.py checks them against the generic kernels, the
    oracle those against mpmath)."""
    monkeypatch.setattr(jax_backend, "USE_FFI", route == "ffi")
    with tbj.x64(dtype == "float64"):
        loss, t, p = _cases(dtype)[name]
        step = jax.jit(jax.value_and_grad(lambda p: loss(t, p)))
        jaxpr = str(jax.make_jaxpr(step)(p))
        assert "_run3_kernel" in jaxpr
        assert ("losskit_run3" in jaxpr) == (route == "ffi")
        value, grad = step(p)
        assert np.asarray(grad).dtype == np.dtype(dtype)
        want_value, want_grad = loss.value_and_gradient(np.asarray(t), np.asarray(p))
        np.testing.assert_allclose(float(value), float(want_value), rtol=4 * float(np.finfo(dtype).eps))
        tol = 2 * float(np.finfo(dtype).eps)  # (the reduction's 1/n applied after the kernel here)
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=tol, atol=0)
        both = jax.vmap(jax.grad(lambda p: loss(t, p)))(jnp.stack([p, p * 0.5]))
        np.testing.assert_allclose(np.asarray(both[0]), want_grad, rtol=tol, atol=0)


def _gaussian(dtype: str, rows: int, flagged: int) -> tuple[Any, ...]:
    """y_true, y_pred, var; the first ``flagged`` rows cancel exactly (value 0: p = t, and the
    variances 4 and 1/4 alternate, with 1 in the last column, so the halves of log v cancel in pairs),
    which the C kernel hands back."""
    rng = np.random.default_rng(11)
    t = rng.normal(size=(rows, 7))
    p = t + rng.normal(size=(rows, 7))
    var = np.exp(rng.normal(size=(rows, 7)))
    p[:flagged] = t[:flagged]
    var[:flagged] = [4.0, 0.25, 4.0, 0.25, 0.25, 4.0, 1.0]
    return tuple(np.asarray(a, dtype) for a in (t, p, var))


GAUSSIAN_CASES = [(d, RUN3_ROUTES[0], f) for d in ("float32", "float64") for f in (0, 3)]
GAUSSIAN_CASES += [("float32", "callback", 3),
                   ("float32", RUN3_ROUTES[0], 80)]  # more than _FEW_ROWS: the whole batch again


@pytest.mark.parametrize(("dtype", "route", "flagged"), GAUSSIAN_CASES)
def test_gaussian_nll_as_numpy_under_jit(dtype: str, route: str, flagged: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """gaussian_nll (its extra array var) through the route gives the NumPy path's per-sample values
    and gradient, the rows the C kernel hands back included."""
    monkeypatch.setattr(jax_backend, "USE_FFI", route == "ffi")
    loss = losskit.get("gaussian_nll")
    with tbj.x64(dtype == "float64"):
        t, p, var = _gaussian(dtype, 90 if flagged > 3 else 12, flagged)
        if flagged:  # the regime is the one the kernel hands back
            kid = np_backend._KERNELS64["gaussian_nll"].kernel_id if dtype == "float64" else None
            if kid is None:
                raw, _ = np_backend.run(np_backend.GAUSSIAN_NLL, t, p, False, None, (0.0, 1e-6), var)
            else:
                raw, _ = np_backend._run3_d(kid, t, p, var, False, None, (0.0, 1e-6))
            assert np.isnan(raw[:flagged]).all()
            assert np.isfinite(raw[flagged:]).all()
        jt, jp, jv = jnp.asarray(t), jnp.asarray(p), jnp.asarray(var)
        per_sample = jax.jit(lambda p, v: loss.call(jt, p, var=v))
        jaxpr = str(jax.make_jaxpr(per_sample)(jp, jv))
        assert "_run3_kernel" in jaxpr
        assert ("losskit_run3" in jaxpr) == (route == "ffi")
        want = loss.call(t, p, var=var)
        got = per_sample(jp, jv)
        assert np.asarray(got).dtype == np.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(got), want)
        value, grad = jax.jit(jax.value_and_grad(lambda p: loss(jt, p, var=jv)))(jp)
        want_value, want_grad = loss.value_and_gradient(t, p, var=var)
        np.testing.assert_allclose(float(value), float(want_value), rtol=4 * float(np.finfo(dtype).eps))
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=2 * float(np.finfo(dtype).eps), atol=0)


def test_gaussian_nll_transformations() -> None:
    """vmap, a broadcast var and second derivatives through the route. The mean over rows of the
    per-row mean of (log v + (p - t)^2 / v) / 2 has gradient (p - t) / (v N) (N elements in all) and
    Hessian diag(1 / (v N)), so a Hessian-vector product is u / (v N); the vmapped value is each
    instance's value."""
    loss = losskit.get("gaussian_nll")
    t, p, var = (jnp.asarray(a) for a in _gaussian("float32", 6, 0))
    v1 = var[:, :1]  # one variance per sample, broadcast by the caller

    def total(p: Any) -> Any:
        return loss(t, p, var=var)

    u = jax.random.normal(jax.random.PRNGKey(0), p.shape, p.dtype)
    size = float(p.size)
    hvp = jax.jit(lambda p, u: jax.jvp(jax.grad(total), (p,), (u,))[1])(p, u)
    np.testing.assert_allclose(np.asarray(hvp), np.asarray(u / (var * size)), rtol=1e-6)
    both = jax.jit(jax.vmap(total))(jnp.stack([p, p * 0.5]))
    np.testing.assert_allclose(np.asarray(both), [float(total(p)), float(total(p * 0.5))],
                               rtol=2.5e-7)  # the final mean's order of summation
    value, grad = jax.jit(jax.value_and_grad(lambda p: loss(t, p, var=v1)))(p)
    want_value, want_grad = loss.value_and_gradient(np.asarray(t), np.asarray(p), var=np.asarray(v1))
    np.testing.assert_allclose(float(value), float(want_value), rtol=4e-7)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=3e-7, atol=0)


def test_float64_runs_the_float64_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    original = np_backend._KERNELS64["kl_div"]

    def spy(xp: Any, t: Any, x: Any, **kw: Any) -> Any:
        seen.append(x.dtype)
        return original(xp, t, x, **kw)

    monkeypatch.setitem(np_backend._KERNELS64, "kl_div", spy)
    with tbj.x64(True):
        loss, t, p = _cases("float64")["kl_div"]
        jax.jit(jax.value_and_grad(lambda p: loss(t, p)))(p)
    assert seen == [np.dtype("float64")]


def test_long_rows_and_other_platforms_stay_in_graph() -> None:
    loss = type(losskit.get("categorical_crossentropy"))(from_logits=True)
    t = jnp.full((2, 64), 1 / 64)
    grad = jax.value_and_grad(lambda p: loss(t, p))
    assert "_host_kernel" not in str(jax.make_jaxpr(grad)(jnp.zeros((2, 64))))  # k > 32
    short = jnp.zeros((2, 5))
    assert "_host_kernel" not in str(jax.make_jaxpr(lambda p: loss(t[:, :5] * 12.8, p))(short))


# the in-graph kernels that the route replaces on CPU, still against mpmath under jax.jit
ROUTED = [c for c in tbj.JIT_CASES if c[0].split("/")[0].startswith(("kl_div", "categorical_crossentropy"))
          or tbj.ENTRIES[c[0]].loss in ("kl_div", "categorical_crossentropy")]


@pytest.mark.parametrize(("entry_id", "regime", "dtype"), ROUTED, ids=["/".join(c) for c in ROUTED])
def test_in_graph_kernels_under_jit(entry_id: str, regime: str, dtype: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jax_backend, "HOST_KERNELS", False)
    tbj.test_oracle_under_jit(entry_id, regime, dtype)
