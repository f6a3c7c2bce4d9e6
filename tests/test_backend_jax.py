"""The fast JAX kernels (``losskit/_backends/jax.py``): taken for the common options, exact under
``jax.jit`` on every oracle regime, and equal to the generic kernels on special values.

The oracle suite runs JAX arrays eagerly on its hard regimes; here the same mpmath reference checks
the fast kernels compiled by ``jax.jit`` (where XLA fuses and could re-associate the error-free
transformations) on every regime of the seven tutorial losses' oracle cases that the kernels
cover. Special values (infinite logits, zero probabilities, ties, NaN, overflowing sums) are
compared with the generic kernel, which the oracle suite checks and which defines the documented
edge choices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import mpmath
import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from oracle import reference as R  # noqa: E402
from oracle.families import core  # noqa: E402
from test_catalog import (  # noqa: E402
    ENTRIES,
    arrays_of,
    check_dtype,
    exact_gradients,
    exact_values,
    instance,
    printed,
    scales,
)

import losskit  # noqa: E402
from losskit import _backends  # noqa: E402
from losskit._backends import jax as jax_backend  # noqa: E402
from losskit.losses import _core  # noqa: E402

COVERED = {  # canonical name -> option sets the fast kernels take
    "sparse_categorical_crossentropy": [{"from_logits": True}, {"from_logits": False},
                                        {"from_logits": True, "ignore_class": 0}],
    "categorical_crossentropy": [{"from_logits": True}, {"from_logits": False}],
    "binary_crossentropy": [{"from_logits": True}, {"from_logits": False}],
    "mean_squared_error": [{}],
    "mean_absolute_error": [{}],
    "hinge": [{}],
    "huber": [{}, {"delta": 0.25}],
    "smooth_l1": [{}, {"beta": 0.0}],
    "log_cosh": [{}],
    "perceptron": [{}],
    "kl_divergence": [{}],
    "kl_div": [{}],
}
NOT_COVERED = [
    ("categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.1}),
    ("sparse_categorical_crossentropy", {"from_logits": True, "class_weight": (1.0, 2.0)}),
    ("binary_crossentropy", {"from_logits": True, "pos_weight": 2.0}),
]


@contextlib.contextmanager
def x64(enabled: bool) -> Iterator[None]:
    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", enabled)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


def _defn(name: str) -> _core.LossDef:
    return type(losskit.get(name)).definition


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "given"), [(n, o) for n, sets in COVERED.items() for o in sets])
def test_fast_kernel_is_taken(name: str, given: dict[str, Any], dtype: str) -> None:
    defn = _defn(name)
    opts = defn.normalise(given)
    assert jax_backend.fast_kernel(name, opts, dtype) is not None
    with x64(dtype == "float64"):
        p = jnp.zeros((2, 3), dtype=dtype) + (-0.25 if name == "kl_div" else 0.25)
        t = jnp.asarray([0, 2]) if defn.sparse else jnp.zeros((2, 3), dtype=dtype)
        t = t + 1 if name == "perceptron" else t  # labels -1 and 1
        batch = _core.prepare(defn, t, p, opts)
        assert batch.fast is not None
        assert batch.y_pred.dtype == jnp.dtype(dtype)  # no widening to float64


@pytest.mark.parametrize(("name", "given"), NOT_COVERED)
def test_other_options_take_the_generic_kernel(name: str, given: dict[str, Any]) -> None:
    opts = _defn(name).normalise(given)
    assert jax_backend.fast_kernel(name, opts, "float32") is None
    assert jax_backend.fast_kernel(name, _defn(name).normalise({}), "float16") is None


# ---------------------------------------------------------------------- oracle, under jax.jit

HARD = {"confident", "large", "thirty", "extreme", "unnormalised", "spread", "scales"}
JIT_CASES = [(e.id, regime, dtype) for e in core.ENTRIES  # the tutorial's seven
             if e.loss in COVERED and not e.options.get("label_smoothing") for regime in e.regimes
             for dtype in ("float32", "float64") if dtype == "float32" or regime in HARD]
JIT_CASES += [(e.id, regime, dtype) for e in ENTRIES.values()  # the other losses with a fast kernel
              if e.loss in COVERED and e.loss not in {c.loss for c in core.ENTRIES}
              and e.options in COVERED[e.loss] + [_defn(e.loss).defaults()]
              for regime in e.regimes for dtype in ("float32", "float64")
              if dtype == "float32" or regime in HARD | {"near_equal"}]


@pytest.mark.parametrize(("entry_id", "regime", "dtype"), JIT_CASES,
                         ids=["/".join(c) for c in JIT_CASES])
def test_oracle_under_jit(entry_id: str, regime: str, dtype: str) -> None:
    """Per-sample values and gradients of the fast kernels compiled by jax.jit, within 8 ulp."""
    arrays = arrays_of(entry_id, regime, dtype)
    exact_v, exact_g = exact_values(entry_id, regime, dtype), exact_gradients(entry_id, regime, dtype)
    obj = instance(ENTRIES[entry_id])
    what = f"jit {entry_id}/{regime}/{dtype}"
    with x64(dtype == "float64"):
        t, p = jnp.asarray(arrays["y_true"]), jnp.asarray(arrays["y_pred"])
        if obj.definition.sparse:
            t = t.astype(jnp.int32)
        assert _core.prepare(obj.definition, t, p, obj.options).fast is not None
        value, grad = jax.jit(obj.value_and_gradient)(t, p)
        value, grad = np.asarray(value), np.asarray(grad)
    value = check_dtype(value, dtype, f"{what} value")
    grad = check_dtype(grad, dtype, f"{what} gradient")
    R.assert_ulp(value, exact_v, dtype, what=f"{what} value", inputs=printed(arrays))
    R.assert_ulp(grad, exact_g, dtype, scale=scales(entry_id, regime, dtype)[1],
                 what=f"{what} gradient", inputs=printed(arrays))


# ------------------------------------------------------------ special values: as the generic kernel


def _logits(dtype: Any) -> np.ndarray:
    x = np.random.default_rng(1).standard_normal((9, 6)).astype(dtype) * 30
    x[0] = 0.0  # every logit tied
    x[1, 0] = np.inf  # one +inf logit
    x[2, 1] = -np.inf
    x[3] = -np.inf  # a row of -inf: NaN
    x[4, 2] = np.nan
    x[5, :2] = 5.0  # a tie at the maximum
    x[6] = 0.0
    x[6, 3] = 120.0  # confident: loss ~ exp(-120)
    x[7, 1:] = -np.inf  # confident to the end: loss 0
    return x


def _probabilities(dtype: Any) -> np.ndarray:
    p = np.random.default_rng(2).random((9, 6)).astype(dtype) ** 4
    p[0] = 0.0
    p[1, 1] = 0.0
    p[2] = 0.25  # ties
    p[3, 0] = 1 - 1e-6
    p[3, 1:] = 1e-7
    p[4, :2] = 0.9
    p[5, 3] = 1.0
    p[5, [0, 1, 2, 4, 5]] = 0.0
    return p


def _targets(kind: str, dtype: Any) -> np.ndarray:
    rng = np.random.default_rng(3)
    if kind == "index":
        return np.array([0, 1, 0, 3, 2, 0, 3, 0, 5], dtype=np.int32)
    if kind == "distribution":
        t = rng.random((9, 6)).astype(dtype)
        t /= t.sum(axis=-1, keepdims=True)
        t[::2] = np.eye(6, dtype=dtype)[[0, 1, 3, 0, 4]]
        t[1, 0] = 0.0  # a zero target at the +inf logit / the zero probability
        t[2, 1] = 0.0
        return t
    if kind == "binary01":  # hard 0/1 labels (the hinge maps them to -1/+1)
        return np.round(rng.random((9, 6))).astype(dtype)
    if kind == "binary":
        t = rng.random((9, 6)).astype(dtype)
        t[::2] = np.round(t[::2])
        return t
    return np.where(rng.random((9, 6)) < 0.5, -1.0, 1.0).astype(dtype)


def _log_probabilities(dtype: Any) -> np.ndarray:
    with np.errstate(divide="ignore"):
        x = np.log(_probabilities(dtype))  # -inf where the probability is 0
    x[6, 0] = np.nan
    return x


def _real(dtype: Any) -> np.ndarray:
    big = float(np.finfo(dtype).max) / 2
    x = (np.random.default_rng(4).standard_normal((9, 6)) * 10).astype(dtype)
    x[0, 0], x[1, 1] = np.inf, np.nan
    x[2, 0], x[2, 1] = big, -big  # huge, finite (overflowing sums: test_overflowing_sums_...)
    return x


SPECIAL = [
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "index", _logits),
    ("SparseCategoricalCrossentropy", {"from_logits": True, "ignore_class": 3}, "index", _logits),
    ("SparseCategoricalCrossentropy", {}, "index", _probabilities),
    ("CategoricalCrossentropy", {"from_logits": True}, "distribution", _logits),
    ("CategoricalCrossentropy", {}, "distribution", _probabilities),
    ("BinaryCrossentropy", {"from_logits": True}, "binary", _logits),
    ("BinaryCrossentropy", {}, "binary", _probabilities),
    ("MeanSquaredError", {}, "real", _real),
    ("MeanAbsoluteError", {}, "real", _real),
    ("Hinge", {}, "sign", _logits),
    ("KLDivergence", {}, "distribution", _probabilities),
    ("KLDiv", {}, "distribution", _log_probabilities),
    ("Huber", {"delta": 0.5}, "real", _real),
    ("SmoothL1", {"beta": 0.5}, "real", _real),
    ("LogCosh", {}, "real", _real),
    ("Perceptron", {}, "sign", _logits),
    ("Hinge", {}, "binary01", _logits),
]


def _run(cls: str, opts: dict[str, Any], t: np.ndarray, p: np.ndarray, fast: bool,
         monkeypatch: pytest.MonkeyPatch) -> tuple[np.ndarray, np.ndarray]:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(_backends, "fast_kernel", lambda *args: None)
        loss = getattr(losskit, cls)(reduction="none", **opts)
        v, g = jax.jit(loss.value_and_gradient)(jnp.asarray(t), jnp.asarray(p))
        return np.asarray(v), np.asarray(g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("cls", "opts", "targets", "inputs"), SPECIAL,
                         ids=[f"{c}-{'-'.join(map(str, o.values())) or 'default'}"
                              for c, o, _, _ in SPECIAL])
def test_special_values_as_generic(cls: str, opts: dict[str, Any], targets: str, inputs: Any,
                                   dtype: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same NaN pattern, same infinities, values within 8 ulp of the generic kernel's."""
    p = inputs(dtype)
    if cls == "Hinge":
        p = np.nan_to_num(p, nan=0.5, posinf=3.0, neginf=-3.0)
    t = _targets(targets, dtype)
    with x64(dtype == np.float64):
        fast = _run(cls, opts, t, p, True, monkeypatch)
        generic = _run(cls, opts, t, p, False, monkeypatch)
    for got, ref, what in zip(fast, generic, ("value", "gradient"), strict=True):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{cls} {what} NaN")
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref), err_msg=f"{cls} {what} inf")
        finite = np.isfinite(ref)
        np.testing.assert_array_equal(np.sign(got[~finite & ~np.isnan(ref)]),
                                      np.sign(ref[~finite & ~np.isnan(ref)]))
        spacing = np.spacing(np.abs(ref[finite]).astype(dtype)).astype(np.float64)
        ulps = np.abs(got[finite].astype(np.float64) - ref[finite]) / spacing
        assert ulps.max(initial=0.0) <= 8, f"{cls} {what}: {ulps.max()} ulp from the generic kernel"


def test_kl_div_every_tier_within_8_ulp() -> None:
    """kl_div's float32 kernel has three tiers (a plain pass, a double-length pass for the batch,
    the generic kernel for the rows neither covers); a batch with rows of each kind, against
    mpmath: random distributions (plain), short rows whose terms cancel (second pass), and a
    prediction within a few ulp of the target (generic), with a subnormal target too."""
    rng = np.random.default_rng(11)
    t = rng.random((70, 8)) ** 3
    t /= t.sum(axis=-1, keepdims=True)
    q = rng.random((70, 8)) ** 3
    q /= q.sum(axis=-1, keepdims=True)
    q[:20] = t[:20] * (1 + rng.standard_normal((20, 8)) * 0.05)  # cancelling terms
    q[20:30] = t[20:30] * (1 + rng.standard_normal((10, 8)) * 1e-6)  # nearly equal
    t, x = t.astype(np.float32), np.log(q).astype(np.float32)
    t[69, 0] = np.float32(1e-40)
    v = np.asarray(jax.jit(losskit.KLDiv(reduction="none"))(jnp.asarray(t), jnp.asarray(x)))
    with mpmath.workdps(60):
        exact = [float(mpmath.fsum(mpmath.mpf(float(a)) * (mpmath.log(float(a)) - float(b))
                                   for a, b in zip(rt, rx, strict=True) if a > 0))
                 for rt, rx in zip(t, x, strict=True)]
    ulps = np.abs(v.astype(np.float64) - exact) / np.spacing(np.abs(np.float32(exact)))
    assert ulps.max() <= 8, f"kl_div: {ulps.max()} ulp (row {ulps.argmax()})"
    per_row = jax.vmap(lambda a, b: losskit.kl_div(a[None], b[None])[0])  # the host rows, batched
    got = np.asarray(per_row(jnp.asarray(t), jnp.asarray(x))).astype(np.float64)
    ulps = np.abs(got - exact) / np.spacing(np.abs(np.float32(exact)))
    assert ulps.max() <= 8, f"kl_div under vmap: {ulps.max()} ulp (row {ulps.argmax()})"


def test_overflowing_sums_stay_finite() -> None:
    """A mean within float32's range is returned even when a term or the row sum overflows (by
    hand: the mean of (2e19)^2 and 0 is 2e38, of |3e38 + 3e38| and 0 is 3e38; the hinge margins
    1 + 3e38 (twice, rounding to 3e38) and 0 (twice) average to 1.5e38; log cosh(6e38) = 6e38 - log 2
    and log cosh(0) = 0 average to 3e38 within rounding)."""
    f32 = np.float32
    mse = losskit.mean_squared_error(jnp.zeros((1, 2), f32), jnp.asarray([[2e19, 0.0]], f32))
    mae = losskit.mean_absolute_error(jnp.asarray([[-3e38, 0.0]], f32),
                                      jnp.asarray([[3e38, 0.0]], f32))
    hinge = losskit.hinge(jnp.asarray([[1.0, 1.0, -1.0, -1.0]], f32),
                          jnp.asarray([[-3e38, -3e38, -1.0, -1.0]], f32))
    log_cosh = losskit.log_cosh(jnp.asarray([[-3e38, 0.0]], f32), jnp.asarray([[3e38, 0.0]], f32))
    for got, exact in ((mse, 2e38), (mae, 3e38), (hinge, 1.5e38), (log_cosh, 3e38)):
        assert abs(float(np.asarray(got)[0]) - exact) <= 8 * float(np.spacing(f32(exact)))


def test_vmap_and_grad() -> None:
    """vmap over a leading axis and jax.grad of the reduced loss run through the fast kernels."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((3, 4, 5)).astype(np.float32))
    k = jnp.asarray(rng.integers(0, 5, (3, 4)).astype(np.int32))
    per_sample = jax.vmap(lambda a, b: losskit.sparse_categorical_crossentropy(a, b, from_logits=True))
    np.testing.assert_allclose(per_sample(k, x), losskit.sparse_categorical_crossentropy(
        k, x, from_logits=True), rtol=1e-6)
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True)
    g = jax.jit(jax.grad(lambda b: loss(k, b)))(x)
    softmax = np.exp(np.asarray(x, np.float64))
    softmax /= softmax.sum(axis=-1, keepdims=True)
    expected = (softmax - np.eye(5)[np.asarray(k)]) / 12  # d mean(lse - x_k) / dx, derived by hand
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("host", [True, False])
@pytest.mark.parametrize("n", [8, 64])
def test_kl_div_second_derivatives(n: int, host: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """jax.hessian and jax.grad of a function of the gradient run through kl_div's kernels, the
    in-graph one too, with rows that take its double-length pass and its host recompute (nearly
    equal distributions). By hand: the sum over the rows of sum_j t_j (log t_j - x_j) has
    gradient -t, which does not depend on x, so the Hessian is 0 and d/dx (g(x) . x) = g(x) = -t."""
    monkeypatch.setattr(jax_backend, "HOST_KERNELS", host)
    rng = np.random.default_rng(12)
    t = rng.random((3, n)) + 0.1
    t /= t.sum(axis=-1, keepdims=True)
    q = t * (1 + rng.standard_normal((3, n)) * np.array([[0.3], [1e-3], [1e-6]]))
    t32, x = jnp.asarray(t, jnp.float32), jnp.asarray(np.log(np.abs(q)), jnp.float32)
    f = lambda x: jnp.sum(losskit.kl_div(t32, x))  # noqa: E731
    hess = np.asarray(jax.jit(jax.hessian(f))(x))
    assert hess.shape == (3, n, 3, n)
    np.testing.assert_array_equal(hess, 0.0)
    g = jax.grad(f)
    again = np.asarray(jax.jit(jax.grad(lambda x: jnp.vdot(g(x), x)))(x))
    np.testing.assert_array_equal(again, -np.asarray(t32))
