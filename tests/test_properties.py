"""One property suite that every registered loss runs through, by being registered.

Expected values here come from the definitions of the properties themselves (finite differences of
the value, linearity of weights, the minimum of a loss) and never from numbers printed by losskit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import distance_to_ends, make_inputs, minimum_value, option_sets, perfect_prediction
from hypothesis import given, settings
from hypothesis import strategies as st

import losskit
from losskit.losses._registry import _CLASSES, definitions

CASES = [(d, o) for d in definitions() for o in option_sets(d)]
IDS = [f"{d.name}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for d, o in CASES]


def loss_for(defn, opts, **kwargs):
    return _CLASSES[defn.class_name](**opts, **kwargs)


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
def test_gradient_matches_central_differences(defn, opts, rng):
    y_true, y_pred, extras = make_inputs(defn, opts, rng, shape=(4, 3))
    loss = loss_for(defn, opts, reduction="sum")
    grad = loss.gradient(y_true, y_pred, **extras)
    # 4th-order central difference of the float64 value; h chosen for ~1e-10 relative accuracy.
    h = 1e-4 * np.maximum(np.abs(y_pred), 1e-2)
    interval = defn.domain(defn.normalise(opts)).get("y_pred")
    if not opts.get("from_logits") and interval is not None:  # stay inside the domain
        h = np.minimum(h, 0.2 * distance_to_ends(interval, y_pred))
    numeric = np.zeros_like(y_pred)
    for idx in np.ndindex(y_pred.shape):
        def f(step, idx=idx):
            shifted = y_pred.copy()
            shifted[idx] += step
            return float(loss(y_true, shifted, **extras))
        hi = h[idx]
        numeric[idx] = (8 * (f(hi) - f(-hi)) - (f(2 * hi) - f(-2 * hi))) / (12 * hi)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)
    if not defn.differentiable():
        return
    # the other members a loss differentiates (Input(differentiable=True), differentiable_target)
    _, grads = loss.value_and_gradients(y_true, y_pred, **extras)
    np.testing.assert_array_equal(grads["y_pred"], grad)
    for name in defn.differentiable():
        member = np.asarray(y_true if name == "y_true" else extras[name], dtype=float)
        h = 1e-4 * np.maximum(np.abs(member), 1e-2)
        numeric = np.zeros_like(member)
        for idx in np.ndindex(member.shape):
            def g(step, idx=idx, name=name, member=member):
                shifted = member.copy()
                shifted[idx] += step
                if name == "y_true":
                    return float(loss(shifted, y_pred, **extras))
                return float(loss(y_true, y_pred, **{**extras, name: shifted}))
            hi = h[idx]
            numeric[idx] = (8 * (g(hi) - g(-hi)) - (g(2 * hi) - g(-2 * hi))) / (12 * hi)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-7, atol=1e-9, err_msg=name)


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight",
                                       "batchmean", "none"])
def test_value_and_gradient_equals_the_two_calls(defn, opts, reduction, rng):
    y_true, y_pred, extras = make_inputs(defn, opts, rng)
    sw = rng.uniform(0, 2, size=y_pred.shape[:y_pred.ndim - defn.event_ndim])
    loss = loss_for(defn, opts, reduction=reduction)
    value, grad = loss.value_and_gradient(y_true, y_pred, sample_weight=sw, **extras)
    np.testing.assert_array_equal(value, loss(y_true, y_pred, sample_weight=sw, **extras))
    np.testing.assert_array_equal(grad, loss.gradient(y_true, y_pred, sample_weight=sw, **extras))
    assert grad.shape == y_pred.shape


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
@settings(max_examples=25, deadline=None)
@given(scale=st.just(0.0) | st.floats(1e-3, 1e3), seed=st.integers(0, 2**32 - 1))
def test_weights_scale_the_loss_and_its_gradient(defn, opts, scale, seed):
    rng = np.random.default_rng(seed)
    y_true, y_pred, extras = make_inputs(defn, opts, rng)
    loss = loss_for(defn, opts, reduction="sum")
    base_v, base_g = loss.value_and_gradient(y_true, y_pred, **extras)
    v, g = loss.value_and_gradient(y_true, y_pred, sample_weight=scale, **extras)
    np.testing.assert_allclose(v, scale * base_v, rtol=1e-14, atol=0)
    np.testing.assert_allclose(g, scale * base_g, rtol=1e-14, atol=0)


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
def test_zero_weight_removes_a_sample(defn, opts, rng):
    y_true, y_pred, extras = make_inputs(defn, opts, rng)
    sw = np.ones(y_pred.shape[0])
    sw[0] = 0.0
    loss = loss_for(defn, opts, reduction="sum")
    v, g = loss.value_and_gradient(y_true, y_pred, sample_weight=sw, **extras)
    v_rest, g_rest = loss.value_and_gradient(y_true[1:], y_pred[1:],
                                             **{k: a[1:] for k, a in extras.items()})
    np.testing.assert_allclose(v, v_rest, rtol=1e-14)
    np.testing.assert_array_equal(g[0], 0.0)
    np.testing.assert_allclose(g[1:], g_rest, rtol=1e-14)


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_perfect_prediction_is_the_minimum(defn, opts, seed):
    rng = np.random.default_rng(seed)
    y_true, y_pred, extras = make_inputs(defn, opts, rng)
    best = perfect_prediction(defn, opts, y_true, y_pred.shape[-1])
    if best is None:
        pytest.skip("no finite prediction minimises this loss (e.g. on logits)")
    fn = getattr(losskit, defn.name)
    at_best = fn(y_true, best, **extras, **opts)
    assert np.all(at_best <= fn(y_true, y_pred, **extras, **opts))
    minimum = minimum_value(defn)  # where the minimum is a known constant (conftest.SPECIAL)
    if minimum is not None:
        np.testing.assert_allclose(at_best, minimum, rtol=4 * np.finfo(at_best.dtype).eps, atol=0)


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dtype_is_preserved(defn, opts, dtype, rng):
    y_true, y_pred, extras = make_inputs(defn, opts, rng, dtype=dtype)
    loss = loss_for(defn, opts)
    value, grad = loss.value_and_gradient(y_true, y_pred, **extras)
    assert value.dtype == dtype
    assert grad.dtype == dtype
    assert getattr(losskit, defn.name)(y_true, y_pred, **extras, **opts).dtype == dtype
    # computed in float64 and rounded once: equal to the float64 result rounded to dtype
    def widen(a):
        return a.astype(np.float64) if a.dtype.kind == "f" else a
    v64, g64 = loss.value_and_gradient(widen(y_true), widen(y_pred),
                                       **{k: widen(a) for k, a in extras.items()})
    np.testing.assert_array_equal(grad, g64.astype(dtype))
    np.testing.assert_allclose(value, v64, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
def test_config_round_trip(defn, opts):
    loss = loss_for(defn, opts, reduction="sum", name="custom", dtype="float32")
    config = json.loads(json.dumps(losskit.serialize(loss)))
    again = losskit.deserialize(config)
    assert type(again) is type(loss)
    assert again.get_config() == loss.get_config()
    assert again.dtype == "float32"
    assert type(loss).from_config(loss.get_config()) == loss


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
def test_function_equals_class_with_reduction_none(defn, opts, rng):
    y_true, y_pred, extras = make_inputs(defn, opts, rng)
    fn = getattr(losskit, defn.name)
    np.testing.assert_array_equal(fn(y_true, y_pred, **extras, **opts),
                                  loss_for(defn, opts, reduction="none")(y_true, y_pred, **extras))


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
def test_empty_batch_reduces_to_zero(defn, opts, rng):
    y_true, y_pred, extras = make_inputs(defn, opts, rng, shape=(0, 4))
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight", "batchmean"):
        loss = loss_for(defn, opts, reduction=reduction)
        value, grad = loss.value_and_gradient(y_true, y_pred, **extras)
        assert float(value) == 0.0
        assert grad.shape == y_pred.shape


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
def test_all_zero_weights_reduce_to_zero(defn, opts, rng):
    y_true, y_pred, extras = make_inputs(defn, opts, rng)
    for reduction in ("sum_over_batch_size", "mean_with_sample_weight", "batchmean"):
        loss = loss_for(defn, opts, reduction=reduction)
        value, grad = loss.value_and_gradient(y_true, y_pred, np.zeros(y_pred.shape[0]), **extras)
        assert float(value) == 0.0
        np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
def test_nan_propagates(defn, opts, rng):
    y_true, y_pred, extras = make_inputs(defn, opts, rng)
    if "ignore_class" in opts:
        y_true[0] = 0  # an ignored sample returns 0 whatever its prediction
    column = 0
    if defn.reads is not None:  # a loss that reads some entries (NLL: the label's): one of those
        column = int(defn.reads(np, y_true, y_pred, **defn.normalise(opts))[0].reshape(-1)[0])
    y_pred[0, column] = np.nan
    values = getattr(losskit, defn.name)(y_true, y_pred, **extras, **opts)
    assert np.isnan(values[0])
    assert not np.isnan(values[1:]).any()
