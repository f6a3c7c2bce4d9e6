"""losskit.optax: Optax-named per-example functions, against optax.losses on the same inputs.

Expected values come from Optax, from mpmath, or from derivations written here (the Hessian of the
softmax cross-entropy). One jitted function evaluates every case (eager JAX compiles every small
operation separately, far slower).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402
import mpmath  # noqa: E402

from losskit import optax as lo  # noqa: E402

RTOL = 4 * np.finfo(np.float32).eps  # float32: Optax's own rounding on ordinary inputs


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(4, 5)).astype("float32"))
    y = jnp.asarray(rng.dirichlet(np.ones(5), size=4).astype("float32"))
    labels = jnp.asarray(rng.integers(0, 5, size=4))
    binary = (y > 0.2).astype("float32")
    signs = jnp.where(y > 0.2, 1.0, -1.0)
    logq = jnp.log(y[::-1])
    return {
        "softmax_cross_entropy": (x, y),
        "safe_softmax_cross_entropy": (x, y),
        "softmax_cross_entropy_with_integer_labels": (x, labels),
        "poly_loss_cross_entropy": (x, y),
        "sigmoid_binary_cross_entropy": (x, binary),
        "sigmoid_focal_loss": (x, binary),
        "squared_error": (x, y),
        "l2_loss": (x, y),
        "huber_loss": (x, y),
        "log_cosh": (x, y),
        "kl_divergence": (logq, y),
        "kl_divergence_with_log_targets": (logq, jnp.log(y)),
        "generalized_kl_divergence": (logq, 2 * y),
        "convex_kl_divergence": (logq, 2 * y),
        "cosine_similarity": (x, y),
        "cosine_distance": (x, y),
        "hinge_loss": (x, signs),
        "perceptron_loss": (x, signs),
        "multiclass_hinge_loss": (x, labels),
        "multiclass_perceptron_loss": (x, labels),
    }


CASES = list(_inputs())
# keywords, per case, that both libraries get in the option test
OPTIONS = {
    "huber_loss": {"delta": 0.3},
    "sigmoid_focal_loss": {"alpha": 0.3, "gamma": 1.5},
    "poly_loss_cross_entropy": {"epsilon": 0.5},
    "softmax_cross_entropy": {"where": np.random.default_rng(5).random((4, 5)) > 0.3},
    "kl_divergence": {"where": np.random.default_rng(6).random((4, 5)) > 0.3},
    "cosine_similarity": {"epsilon": 0.5},
}


def _evaluate(module, with_options):
    cases = _inputs()
    names = list(OPTIONS) if with_options else CASES

    def all_cases(firsts):
        out = {}
        for name, first in zip(names, firsts, strict=True):
            kwargs = OPTIONS.get(name, {}) if with_options else {}
            fn = getattr(module, name)
            value, grad = jax.value_and_grad(lambda p, fn=fn, name=name, kwargs=kwargs: jnp.sum(
                fn(p, cases[name][1], **kwargs)))(first)
            out[name] = (fn(first, cases[name][1], **kwargs), grad, value)
        return out

    return jax.jit(all_cases)([cases[name][0] for name in names])


@pytest.fixture(scope="module")
def results():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # optax's convex_kl_divergence
        return {opts: (_evaluate(lo, opts), _evaluate(optax.losses, opts)) for opts in (False, True)}


def test_every_optax_loss_that_losskit_has_is_here():
    assert set(lo.__all__) == set(CASES)
    assert set(lo.__all__) <= set(dir(optax.losses))


@pytest.mark.parametrize(("name", "with_options"), [(n, False) for n in CASES]
                         + [(n, True) for n in OPTIONS])
def test_values_and_gradients_match_optax(results, name, with_options):
    ours, theirs = results[with_options]
    (v, g, _), (v_ref, g_ref, _) = ours[name], theirs[name]
    assert v.shape == v_ref.shape
    assert v.dtype == v_ref.dtype
    rtol = 2e-5 if name == "log_cosh" else RTOL  # Optax's log_cosh cancels for small errors
    np.testing.assert_allclose(v, v_ref, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=2 * RTOL * float(jnp.abs(g_ref).max()))


def test_signatures_follow_optax():
    import inspect

    for name in CASES:
        ours = list(inspect.signature(getattr(lo, name)).parameters.values())
        theirs = list(inspect.signature(getattr(optax.losses, name)).parameters.values())
        assert [(p.name, p.kind) for p in ours] == [(p.name, p.kind) for p in theirs], name
        assert [p.default for p in ours] == [p.default for p in theirs], name


# ----------------------------------------------------------------------- axis and where


def test_tuple_axis_and_where_as_optax():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 3, 4)).astype("float32"))
    t = jnp.asarray(rng.dirichlet(np.ones(12), size=2).reshape(2, 3, 4).astype("float32"))
    keep = jnp.asarray(rng.random((2, 3, 4)) > 0.3)
    rows = jnp.array([True, False])
    labels = jnp.array([5, 11])

    @jax.jit
    def pairs(x, t, keep, rows, labels):
        return [
            (lo.softmax_cross_entropy(x, t, axis=(1, 2)),
             optax.losses.softmax_cross_entropy(x, t, axis=(1, 2))),
            (lo.softmax_cross_entropy(x, t, axis=1, where=keep[:, 0, :]),
             optax.losses.softmax_cross_entropy(x, t, axis=1, where=keep[:, 0, :])),
            (lo.softmax_cross_entropy_with_integer_labels(x, labels, axis=(1, 2), where=rows),
             optax.losses.softmax_cross_entropy_with_integer_labels(x, labels, axis=(1, 2), where=rows)),
            (lo.kl_divergence(jnp.log(t[::-1]), t, axis=(1, 2), where=keep),
             optax.losses.kl_divergence(jnp.log(t[::-1]), t, axis=(1, 2), where=keep)),
            (lo.cosine_similarity(x, t, axis=(1, 2), where=keep),
             optax.losses.cosine_similarity(x, t, axis=(1, 2), where=keep)),
        ]

    for ours, theirs in pairs(x, t, keep, rows, labels):
        np.testing.assert_allclose(ours, theirs, rtol=8 * RTOL, atol=1e-7)


# ------------------------------------------------------------------ transformations


def test_jit_vmap_grad_and_forward_mode():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(3, 4)).astype("float32"))
    tangent = jnp.asarray(rng.normal(size=(3, 4)).astype("float32"))
    labels = jnp.array([0, 3, 1])
    fn = lo.softmax_cross_entropy_with_integer_labels

    def total(z):
        return jnp.sum(fn(z, labels))

    def row(z):
        return fn(z[None], labels[:1])[0]

    @jax.jit
    def everything(x, tangent):
        return {"plain": fn(x, labels),
                "vmap": jax.vmap(lambda r, k: fn(r[None], k[None])[0])(x, labels),
                "jvp": jax.jvp(total, (x,), (tangent,))[1],
                "vjp": jnp.sum(jax.grad(total)(x) * tangent),
                "jacfwd": jax.jacfwd(total)(x), "jacrev": jax.jacrev(total)(x),
                "hessian": jax.hessian(row)(x[0]), "fwd_over_rev": jax.jacfwd(jax.grad(row))(x[0])}

    out = everything(x, tangent)
    np.testing.assert_allclose(out["plain"], fn(x, labels), rtol=RTOL)  # eager equals jit
    np.testing.assert_allclose(out["vmap"], out["plain"], rtol=RTOL)
    np.testing.assert_allclose(out["jvp"], out["vjp"], rtol=1e-6)
    np.testing.assert_allclose(out["jacfwd"], out["jacrev"], rtol=1e-6)
    # the Hessian of logsumexp(z) - z_k in one row: diag(s) - s s^T (s = softmax(z))
    z = np.asarray(x[0], dtype=np.float64)
    s = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(out["hessian"], np.diag(s) - np.outer(s, s), atol=1e-6)
    np.testing.assert_allclose(out["fwd_over_rev"], np.diag(s) - np.outer(s, s), atol=1e-6)


def test_differentiating_the_labels_is_refused():
    x, t = jnp.zeros((1, 3)), jnp.array([[0.2, 0.3, 0.5]])
    with pytest.raises(ValueError, match="y_pred only"):
        jax.grad(lambda t: jnp.sum(lo.softmax_cross_entropy(x, t)))(t)


# ------------------------------------------------------------------- invalid inputs


INVALID = [  # (function, first argument, second argument with one bad example (the 2nd), message)
    (lo.softmax_cross_entropy, jnp.zeros((3, 2)), jnp.array([[1.0, 0.0], [1.5, -0.5], [0.0, 1.0]]),
     r"labels must lie in \[0, 1\]"),
    (lo.softmax_cross_entropy_with_integer_labels, jnp.zeros((3, 2)), jnp.array([0, 2, 1]),
     r"labels must be class indices in \[0, 1\]"),
    (lo.hinge_loss, jnp.zeros(3), jnp.array([1.0, 0.0, -1.0]), r"targets must be -1 or 1"),
]


@pytest.mark.parametrize(("fn", "first", "second", "message"), INVALID,
                         ids=[case[0].__name__ for case in INVALID])
def test_invalid_inputs_raise_eagerly_and_are_nan_under_jit(fn, first, second, message):
    with pytest.raises(ValueError, match=message):
        fn(first, second)
    values = jax.jit(fn)(first, second)
    assert np.isnan(values[1]).all()
    assert np.isfinite(values[0]).all()
    assert np.isfinite(values[2]).all()
    grad = jax.jit(jax.grad(lambda p: jnp.sum(fn(p, second))))(first)
    assert np.isnan(grad[1]).all()
    assert np.isfinite(grad[0]).all()


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="labels must be an integer array"):
        lo.softmax_cross_entropy_with_integer_labels(jnp.zeros((2, 3)), jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="labels has shape"):
        lo.softmax_cross_entropy_with_integer_labels(jnp.zeros((2, 3)), jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="does not broadcast"):
        lo.squared_error(jnp.zeros((2, 3)), jnp.zeros(4))
    with pytest.raises(ValueError, match="out of range"):
        lo.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2, 3)), axis=2)
    with pytest.raises(TypeError, match="where must be a boolean"):
        lo.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2, 3)), where=jnp.ones((2, 3)))


# ---------------------------------------------------------- exact where Optax loses digits


def test_exact_where_optax_rounds_away():
    # a confident row: logsumexp([40, 0]) - 40 = log1p(e**-40)
    exact = float(mpmath.log1p(mpmath.exp(-40)))
    confident = jnp.array([[40.0, 0.0]]), jnp.array([0])
    ours = jax.jit(lo.softmax_cross_entropy_with_integer_labels)(*confident)
    assert abs(float(ours[0]) - exact) <= 4 * np.finfo(np.float32).eps * exact
    assert float(jax.jit(optax.losses.softmax_cross_entropy_with_integer_labels)(*confident)[0]) == 0.0
    # log cosh of a small error, d**2/2 to first order
    d = np.float32(1e-3)
    exact = float(mpmath.log(mpmath.cosh(mpmath.mpf(float(d)))))
    ours = float(jax.jit(lo.log_cosh)(jnp.array([d]))[0])
    assert abs(ours - exact) <= 4 * np.finfo(np.float32).eps * exact
    theirs = float(jax.jit(optax.losses.log_cosh)(jnp.array([d]))[0])
    assert abs(theirs - exact) > 100 * np.finfo(np.float32).eps * exact
    assert math.isfinite(ours)


def test_docs_example():
    """docs/jax.md's example (the README's JAX lines) runs and gives what it says."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "jax.md").read_text()
    namespace: dict = {}
    exec(text.split("```python\n", 1)[1].split("```", 1)[0], namespace)
    value, grad = namespace["value"], namespace["grad"]
    assert grad.shape == (2, 3)
    assert np.isfinite(float(value))
    row = lo.softmax_cross_entropy_with_integer_labels(jnp.array([[40.0, 0.0, 0.0]]), jnp.array([0]))
    assert abs(float(row[0]) - float(mpmath.log1p(2 * mpmath.exp(-40)))) <= 1e-24
