"""The core's declaration features used by the catalog: extra input arrays, open intervals, weight
options, option aliases and the batchmean reduction. Expected values are derived by hand in each test
on a toy loss declared here, so these tests do not depend on any catalog loss."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from losskit.losses._core import (
    POSITIVE,
    Input,
    Interval,
    LossDef,
    Option,
    check_optional_int,
    check_positive,
    check_weights,
    make_class,
    make_function,
)


def _weighted_sq(xp, y_true, y_pred, *, grad, var, where, scale, ignore_class):
    # value: sum_i w_i (p_i - t_i)^2 / (scale var_i);  gradient: 2 w_i (p_i - t_i) / (scale var_i)
    d = y_pred - y_true
    w = xp.ones_like(d) if where is None else xp.astype(where, d.dtype)
    value = xp.sum(w * d * d / (scale * var), axis=-1)
    return value, (2.0 * w * d / (scale * var) if grad else None)


TOY = LossDef(
    "toy", "Toy", _weighted_sq, doc="A toy loss for the core's tests.",
    options=(Option("scale", 1.0, check_positive, "a positive divisor"),
             Option("ignore_class", None, check_optional_int, "unused")),
    option_aliases={"ignore_index": "ignore_class"},
    inputs=(Input("var", "a positive variance", domain=POSITIVE),
            Input("where", "elements that count", required=False, kind="bool")))
toy, Toy = make_function(TOY), make_class(TOY)

T = np.zeros((2, 3))
P = np.arange(6.0).reshape(2, 3)  # rows [0, 1, 2] and [3, 4, 5]
VAR = np.array([[1.0], [2.0]])  # one variance per row, broadcast over the last axis


def test_inputs_are_keyword_only_and_documented():
    params = inspect.signature(toy).parameters
    assert params["var"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["var"].default is inspect.Parameter.empty
    assert params["where"].default is None
    assert "var (required, in (0, inf)): a positive variance" in toy.__doc__
    assert "also accepted: ignore_index for ignore_class" in toy.__doc__


def test_input_is_broadcast_to_y_pred():
    # row 0: (0 + 1 + 4) / 1 = 5; row 1: (9 + 16 + 25) / 2 = 25
    np.testing.assert_array_equal(toy(T, P, var=VAR), [5.0, 25.0])
    # where drops the middle column: row 0: 4, row 1: (9 + 25) / 2 = 17
    np.testing.assert_array_equal(toy(T, P, var=VAR, where=np.array([True, False, True])), [4.0, 17.0])


def test_batchmean_divides_by_the_batch_size():
    # sum of the rows (5 + 25) over B = 2; gradient 2 (p - t) / var / B
    value, grad = Toy(reduction="batchmean").value_and_gradient(T, P, var=VAR)
    assert value == 15.0
    np.testing.assert_array_equal(grad, [[0.0, 1.0, 2.0], [1.5, 2.0, 2.5]])
    # mean over the same two samples is the same here; it differs for a (B, T) per-sample shape:
    t3, p3 = np.zeros((2, 2, 1)), np.ones((2, 2, 1))  # four per-sample values of 1
    assert Toy(reduction="batchmean")(t3, p3, var=1.0) == 2.0  # 4 / B
    assert Toy()(t3, p3, var=1.0) == 1.0  # 4 / (B * T)


def test_missing_unknown_and_out_of_domain_inputs():
    with pytest.raises(TypeError, match=r"toy needs the input array var= \(a positive variance\)"):
        toy(T, P)
    with pytest.raises(ValueError, match=r"var must lie in \(0, inf\); found 2 value\(s\) outside"):
        toy(T, P, var=-VAR)
    with pytest.raises(ValueError, match=r"var has shape \(4,\), which does not broadcast to "
                                         r"y_pred's shape \(2, 3\)"):
        toy(T, P, var=np.ones(4))
    with pytest.raises(TypeError, match="unknown input"):
        Toy()(T, P, var=VAR, foo=1)
    with pytest.raises(TypeError, match="where must be a boolean mask; found dtype float64"):
        toy(T, P, var=VAR, where=np.ones(3))


def test_inputs_through_torch_and_jax_autograd():
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    expected = Toy().gradient(T, P, var=VAR)
    q = torch.tensor(P, requires_grad=True)
    Toy()(torch.zeros(2, 3, dtype=torch.float64), q, var=torch.tensor(VAR)).backward()
    np.testing.assert_allclose(q.grad.numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="extra input array is being differentiated"):
        Toy()(torch.zeros(2, 3, dtype=torch.float64), q, var=torch.tensor(VAR, requires_grad=True))
    jnp = jax.numpy
    where = jnp.array([True, False, True])
    g = jax.jit(jax.grad(lambda p, v: Toy()(jnp.zeros((2, 3)), p, var=v, where=where)))(
        jnp.asarray(P, dtype=jnp.float32), jnp.asarray(VAR, dtype=jnp.float32))
    np.testing.assert_allclose(np.asarray(g), Toy().gradient(T, P, var=VAR, where=np.asarray(where)),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="extra input array is being differentiated"):
        jax.grad(lambda v: Toy()(jnp.zeros((2, 3)), jnp.asarray(P, dtype=jnp.float32), var=v))(
            jnp.asarray(VAR, dtype=jnp.float32))


def test_option_aliases():
    assert Toy(ignore_index=3).options["ignore_class"] == 3
    assert "ignore_index" not in Toy(ignore_index=3).get_config()
    with pytest.raises(TypeError, match="got both ignore_class and its alias ignore_index"):
        Toy(ignore_index=3, ignore_class=2)


def test_check_weights():
    assert check_weights("w", None) is None
    assert check_weights("w", 2) == 2.0
    assert check_weights("w", np.array([1, 2.5])) == (1.0, 2.5)
    with pytest.raises(ValueError, match=r"w must hold finite non-negative numbers; found -1.0 at index 1"):
        check_weights("w", [1, -1])
    with pytest.raises(TypeError, match="w must be None, a number or a 1-D sequence"):
        check_weights("w", [[1.0]])


def test_open_intervals():
    assert str(POSITIVE) == "(0, inf)"
    assert str(Interval(0.0, 1.0)) == "[0, 1]"
    np.testing.assert_array_equal(POSITIVE.outside(np.array([-1.0, 0.0, 1.0, np.nan])),
                                  [True, True, False, False])
    np.testing.assert_array_equal(Interval(0.0, 1.0, high_open=True).outside(np.array([0.0, 1.0])),
                                  [False, True])


def test_float32_overflow_on_the_final_cast_is_silent_and_inf():
    # squared hinge of t = 1, f = -3e19: (1 + 3e19)^2 ~ 9e38 > float32 max 3.4e38, so the correctly
    # rounded float32 result is inf; the cast from the float64 compute dtype must not warn.
    import warnings

    import losskit

    t, f = np.array([[1.0, -1.0]], np.float32), np.array([[-3e19, 3e19]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isposinf(losskit.squared_hinge(t, f)).all()
        assert np.isposinf(losskit.SquaredHinge(reduction="none").call(t, f)).all()
