"""The CPU route of the embedding losses on JAX arrays (``losskit/_backends/jax.py``, bottom):
triplet_margin, cosine_similarity and circle run ``_cpu.embed``'s C kernels on a CPU device, as the
XLA FFI target ``losskit_embed`` (or a host callback where the extension lacks it), with the rows the
C kernel hands back recomputed by numpy.py's kernel. The NumPy path is what the oracle suite checks
against mpmath (``tests/test_catalog.py``; its ``test_backend`` also runs this route on JAX arrays);
here: under ``jax.jit`` the route gives the NumPy path's values and every member's gradient bit for
bit (the flagged rows included, few or many), every transformation (grad, vmap, second derivatives)
agrees with the in-graph kernels, and other option sets keep the generic kernel.
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

ROUTES = ["ffi", "callback"] if jax_backend._target_available(jax_backend._FFI_TARGET) else ["callback"]


def _route(monkeypatch: pytest.MonkeyPatch, route: str) -> None:
    monkeypatch.setattr(jax_backend, "USE_FFI", route == "ffi")


def _triplets(dtype: str, rows: int = 12, flagged: int = 0) -> tuple[np.ndarray, ...]:
    """Anchors, positives, negatives; the first ``flagged`` rows on the hinge (margin 1: D(a, n) =
    D(a, p) + 1 exactly, integer coordinates), which the C kernel hands back."""
    rng = np.random.default_rng(5)
    a, p, n = (rng.standard_normal((rows, 6)).astype(dtype) for _ in range(3))
    a[:flagged], p[:flagged], n[:flagged] = 0.0, 0.0, 0.0
    p[:flagged, 0], n[:flagged, 0] = 3.0, 4.0  # eps = 0 below: d(a, p) = 3, d(a, n) = 4
    return a, p, n


TRIPLET_OPTIONS = [{}, {"eps_placement": "sum"}, {"swap": True}, {"p": 1.0},
                   {"distance_function": "cosine"}]


# (options, dtype, route): every option set the C kernels cover in float32, float64's p = 2 kernel, the
# callback route once (the in-graph compiles are what costs test time)
TRIPLET_CASES = ([(o, "float32", ROUTES[0]) for o in TRIPLET_OPTIONS]
                 + [(o, "float64", ROUTES[0]) for o in TRIPLET_OPTIONS[:2]]
                 + [({}, "float32", "callback"), ({"p": 3.0}, "float32", ROUTES[0])])


@pytest.mark.parametrize(("options", "dtype", "route"), TRIPLET_CASES,
                         ids=["-".join([",".join(o) or "default", d, r]) for o, d, r in TRIPLET_CASES])
def test_triplet_as_numpy_under_jit(options: dict[str, Any], dtype: str, route: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _route(monkeypatch, route)
    with tbj.x64(dtype == "float64"):
        a, p, n = _triplets(dtype, flagged=3)
        loss = losskit.TripletMargin(**options, eps=0.0, reduction="none")
        covered = np_backend.fast_kernel("triplet_margin", loss.options, dtype) is not None
        fn = jax.jit(lambda p, a, n: loss.call(p, a, negative=n))
        jaxpr = str(jax.make_jaxpr(lambda p, a, n: loss.call(p, a, negative=n))(p, a, n))
        assert (("losskit_embed" in jaxpr) == (covered and route == "ffi"))
        assert (("pure_callback" in jaxpr) == covered)
        value = np.asarray(fn(*map(jnp.asarray, (p, a, n))))

        def total(p: Any, a: Any, n: Any) -> Any:
            return jnp.sum(loss.call(p, a, negative=n) * jnp.arange(1.0, 13.0, dtype=dtype))

        grads = jax.jit(jax.grad(total, argnums=(0, 1, 2)))(*map(jnp.asarray, (p, a, n)))
    expected = loss.call(p, a, negative=n)
    weights = np.arange(1.0, 13.0)[:, None]
    _, g_a, (g_p, g_n) = loss.definition.kernel(
        np, p.astype(np.float64), a.astype(np.float64), grad=True, wrt=("y_true", "negative"),
        negative=n.astype(np.float64), **{k: v for k, v in loss.options.items() if k != "axis"})
    if covered:  # the same C kernel, and numpy.py's recomputation of the flagged rows
        np.testing.assert_array_equal(value, expected)
    np.testing.assert_allclose(value, expected, rtol=1e-6 if dtype == "float32" else 1e-14)
    for got, want in zip(grads, (g_p, g_a, g_n), strict=True):
        assert np.asarray(got).dtype == np.dtype(dtype)
        np.testing.assert_allclose(np.asarray(got), weights * want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("flagged", [0, 5, 100])  # none, a few (gathered), many (the whole batch)
def test_flagged_rows_are_recomputed(flagged: int, route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _route(monkeypatch, route)
    a, p, n = _triplets("float32", rows=150, flagged=flagged)
    loss = losskit.TripletMargin(eps=0.0, reduction="none")
    kernel = np_backend._KERNELS["triplet_margin"]
    expected, g, (g_p, g_n) = kernel(np, p, a, grad=True, wrt=("y_true", "negative"), negative=n,
                                     **{k: v for k, v in loss.options.items() if k != "axis"})
    value, grads = jax.jit(jax.value_and_grad(lambda p, a, n: jnp.sum(loss.call(p, a, negative=n)),
                                              argnums=(0, 1, 2)))(p, a, n)
    assert float(value) == pytest.approx(float(np.sum(expected.astype(np.float32))), rel=1e-6)
    for got, want in zip(grads, (g_p, g, g_n), strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
    # the C kernel does hand those rows back (a hinge within rounding of 0)
    raw = np.empty(150)
    np_backend._cpu.embed(0, a, p, n, None, 0, 150, 6, raw, None, None, None, None,
                          np.asarray(np_backend._triplet_params(6, **loss.options)))
    assert np.isnan(raw).sum() == flagged


def _similarities(dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(9)
    s = np.clip(rng.standard_normal((10, 7)), -1, 1).astype(dtype)
    y = (rng.random((10, 7)) < 0.3).astype(dtype)
    y[:, 0] = 1.0
    return y, s, rng.random((10, 7)) < 0.8


def _cases(dtype: str) -> dict[str, tuple[Any, Any, Any, dict[str, Any]]]:
    rng = np.random.default_rng(11)
    t, x = (rng.standard_normal((10, 7)).astype(dtype) for _ in range(2))
    x[0] = 0.0  # a zero vector: cosine 0, gradient 0
    t[1] = 2.0 * x[1]  # parallel: handed back (1 - cos within rounding)
    y, s, where = _similarities(dtype)
    return {"cosine_similarity": (losskit.CosineSimilarity(), t, x, {}),
            "circle": (losskit.Circle(), y, s, {}),
            "circle_where": (losskit.Circle(), y, s, {"where": where})}


def _everything(loss: Any, t: Any, p: Any, more: dict[str, Any]) -> dict[str, Any]:
    def total(p: Any) -> Any:
        return loss(t, p, **more)

    return {"value": jax.jit(total)(p), "grad": jax.jit(jax.grad(total))(p),
            "vmap": jax.jit(jax.vmap(total))(jnp.stack([p, p * 0.5])),
            "vmap_grad": jax.jit(jax.vmap(jax.grad(total)))(jnp.stack([p, p * 0.5])),
            "per_sample": jax.jit(lambda p: loss.call(t, p, **more))(p)}


def _numpy(loss: Any, t: Any, p: Any, more: dict[str, Any]) -> dict[str, Any]:
    half = np.asarray(p * 0.5, dtype=p.dtype)
    return {"value": loss(t, p, **more), "grad": loss.gradient(t, p, **more),
            "vmap": np.stack([loss(t, p, **more), loss(t, half, **more)]),
            "vmap_grad": np.stack([loss.gradient(t, p, **more), loss.gradient(t, half, **more)]),
            "per_sample": loss.call(t, p, **more)}


TRANSFORM_CASES = [("cosine_similarity", "float32", ROUTES[0]), ("cosine_similarity", "float64", ROUTES[0]),
                   ("circle_where", "float32", ROUTES[0]), ("circle", "float32", "callback")]


@pytest.mark.parametrize(("name", "dtype", "route"), TRANSFORM_CASES,
                         ids=["-".join(c) for c in TRANSFORM_CASES])
def test_every_transformation_as_numpy(name: str, dtype: str, route: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """jit, grad, vmap and per-sample values on JAX arrays: the NumPy path's numbers (the same C
    kernel, the same recomputed rows: a zero vector, parallel vectors)."""
    _route(monkeypatch, route)
    loss, t, p, more = _cases(dtype)[name]
    expected = _numpy(loss, t, p, more)
    with tbj.x64(dtype == "float64"):
        jt, jp = jnp.asarray(t), jnp.asarray(p)
        jmore = {k: jnp.asarray(v) for k, v in more.items()}
        jaxpr = str(jax.make_jaxpr(jax.value_and_grad(lambda p: loss(jt, p, **jmore)))(jp))
        assert "pure_callback" in jaxpr
        assert ("losskit_embed" in jaxpr) == (route == "ffi")
        got = _everything(loss, jt, jp, jmore)
    for key, want in expected.items():
        assert np.asarray(got[key]).dtype == np.dtype(dtype), key
        # atol: XLA on CPU flushes subnormal results (the mean's 1/n times a tiny gradient) to 0
        np.testing.assert_allclose(np.asarray(got[key]), want, rtol=1e-6 if dtype == "float32" else 1e-14,
                                   atol=float(np.finfo(dtype).tiny), err_msg=key)


def test_second_derivatives_of_the_triplet_members(monkeypatch: pytest.MonkeyPatch) -> None:
    a, p, n = (jnp.asarray(v) for v in _triplets("float32"))
    loss = losskit.TripletMargin()

    def hvp() -> Any:
        def total(a: Any, p: Any, n: Any) -> Any:
            return loss(p, a, negative=n)

        g = jax.grad(total, argnums=(0, 1, 2))
        return jax.jit(lambda a: jax.jvp(lambda a: g(a, p, n), (a,), (n - p,))[1])(a)

    host = hvp()
    monkeypatch.setattr(jax_backend, "HOST_KERNELS", False)
    for got, want in zip(host, hvp(), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_other_options_stay_in_graph_and_float64_circle_is_routed() -> None:
    a, p, n = (jnp.asarray(v) for v in _triplets("float32"))
    cubic = losskit.TripletMargin(p=3.0)  # not covered by the C kernel: the generic kernel
    assert "pure_callback" not in str(jax.make_jaxpr(lambda a: cubic(p, a, negative=n))(a))
    with tbj.x64(True):  # float64 circle: the float64 C kernel (_cpu.embed id 9), NumPy's results
        y, s, _ = _similarities("float64")
        value, g = jax.jit(jax.value_and_grad(lambda s: losskit.Circle()(jnp.asarray(y), s)))(
            jnp.asarray(s))
        want, want_g = losskit.Circle().value_and_gradient(y, s)
        np.testing.assert_allclose(float(value), float(want), rtol=4e-16)
        np.testing.assert_allclose(np.asarray(g), want_g, rtol=4e-16, atol=np.finfo(np.float64).tiny)


def test_empty_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    empty = jnp.zeros((0, 4), jnp.float32)
    loss = losskit.TripletMargin(reduction="none")
    value, g = jax.jit(jax.value_and_grad(lambda a: jnp.sum(loss.call(empty, a, negative=empty))))(empty)
    assert float(value) == 0.0
    assert g.shape == (0, 4)
