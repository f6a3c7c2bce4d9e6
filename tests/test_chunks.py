"""The generic kernels in row chunks on NumPy (``_core._chunked``): the same numbers as one evaluation
of the whole batch, for every registered loss, and the memory it is there to save.

The reference here is the same kernel run on the whole batch at once (a chunk size larger than the
batch): chunking must not change any sample's arithmetic, so values and gradients are compared
bit for bit. A loss that reads other samples' rows would fail here unless it is declared
``batch_coupled``.
"""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
from conftest import make_inputs, option_sets

import losskit
from losskit._backends import numpy as numpy_backend
from losskit.losses._registry import _CLASSES, definitions

CASES = [(d, o) for d in definitions() for o in option_sets(d)]
IDS = [f"{d.name}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for d, o in CASES]


@pytest.fixture
def chunk_size(monkeypatch):
    """Set the chunk size (elements) of the generic NumPy path for the test."""

    def set_size(n: int) -> None:
        monkeypatch.setattr(numpy_backend, "GENERIC_CHUNK_ELEMENTS", n)

    return set_size


def _with_optional_inputs(defn, y_true, extras, rng, shape, dtype):
    """The call's extra arrays, the optional ones too (masks about 80% True, reals 0.5-1.5), so that
    their slicing is checked as well. A mask keeps every entry the target marks (the label's class)."""
    extras = dict(extras)
    for spec in defn.inputs:
        if spec.name in extras or spec.per_sample:
            continue
        if spec.kind == "bool":
            where = rng.random(size=shape) < 0.8
            if defn.sparse:
                np.put_along_axis(where, y_true[..., None].astype(np.int64), True, axis=-1)
            elif y_true.shape == shape:
                where |= y_true != 0
            extras[spec.name] = where
        else:
            extras[spec.name] = rng.uniform(0.5, 1.5, size=shape).astype(dtype)
    return extras


def _all_results(loss, y_true, y_pred, extras, weight):
    """Every result the NumPy path gives: per-sample values, the reduced value and gradient with and
    without sample weights, and every member's gradient."""
    out = {"call": loss.call(y_true, y_pred, **extras)}
    out["value"], out["gradient"] = loss.value_and_gradient(y_true, y_pred, **extras)
    out["w_value"], out["w_gradient"] = loss.value_and_gradient(y_true, y_pred, weight, **extras)
    if loss.definition.differentiable():
        value, grads = loss.value_and_gradients(y_true, y_pred, weight, **extras)
        out["m_value"] = value
        out.update({f"m_{k}": v for k, v in grads.items()})
    return out


def _assert_identical(chunked, whole):
    assert chunked.keys() == whole.keys()
    for key in whole:
        a, b = np.asarray(chunked[key]), np.asarray(whole[key])
        assert a.dtype == b.dtype, key
        assert a.shape == b.shape, key
        np.testing.assert_array_equal(a, b, err_msg=key, strict=True)


@pytest.mark.parametrize(("defn", "opts"), CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_chunks_give_the_whole_batch_numbers(defn, opts, dtype, chunk_size):
    rng = np.random.default_rng(7)
    y_true, y_pred, extras = make_inputs(defn, opts, rng, shape=(7, 5), dtype=dtype)
    extras = _with_optional_inputs(defn, y_true, extras, rng, y_pred.shape, dtype)
    weight = rng.uniform(0.0, 2.0, size=7).astype(dtype)
    weight[2] = 0.0
    loss = _CLASSES[defn.class_name](**opts, reduction="sum_over_batch_size")
    chunk_size(1 << 30)
    whole = _all_results(loss, y_true, y_pred, extras, weight)
    chunk_size(1)  # one row per chunk
    _assert_identical(_all_results(loss, y_true, y_pred, extras, weight), whole)
    chunk_size(2 * y_pred.shape[-1] + 1)  # two rows a chunk, the last chunk shorter
    _assert_identical(_all_results(loss, y_true, y_pred, extras, weight), whole)


@pytest.mark.parametrize(("name", "opts", "layout"), [
    ("poisson", {}, "3d"),
    ("dice", {}, "3d"),
    ("sparse_categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.1,
                                         "ignore_class": 1}, "3d"),
    ("gaussian_nll", {}, "3d"),
    ("gaussian_nll", {}, "broadcast_input"),
    ("cosine_similarity", {"axis": 0}, "moved_axis"),
    ("sparse_categorical_crossentropy", {"label_smoothing": 0.1, "axis": 1}, "moved_axis"),
])
def test_chunks_of_several_batch_axes_and_strided_layouts(name, opts, layout, chunk_size):
    """Batch axes flattened into one (a view), or chunks of the first axis where that takes a copy
    (a moved axis); inputs broadcast along the batch; ignored samples (a mask)."""
    defn = losskit.get(name).definition
    rng = np.random.default_rng(3)
    shape = (3, 4, 6)
    y_true, y_pred, extras = make_inputs(defn, opts, rng, shape=shape, dtype=np.float32)
    if layout == "moved_axis":  # the class axis not last: the kernel sees a transposed view
        axis = opts["axis"]
        y_pred = np.ascontiguousarray(np.moveaxis(y_pred, -1, axis))
        y_true = y_true if defn.sparse else np.ascontiguousarray(np.moveaxis(y_true, -1, axis))
    if layout == "broadcast_input":
        extras["var"] = np.ascontiguousarray(extras["var"][:1, :1])  # broadcast over the batch axes
    loss = losskit.get(name).__class__(**opts)
    values = loss.call(y_true, y_pred, **extras)
    weight = rng.uniform(0.5, 1.5, size=values.shape).astype(np.float32)
    chunk_size(1 << 30)
    whole = _all_results(loss, y_true, y_pred, extras, weight)
    for size in (1, 7, 13):
        chunk_size(size)
        _assert_identical(_all_results(loss, y_true, y_pred, extras, weight), whole)


def test_chunks_spread_over_threads_give_the_same_numbers(chunk_size):
    defn = losskit.get("mean_tweedie_deviance").definition
    rng = np.random.default_rng(5)
    y_true, y_pred, _ = make_inputs(defn, {"power": 1.5}, rng, shape=(64, 33), dtype=np.float32)
    loss = losskit.MeanTweedieDeviance(power=1.5)
    before = losskit.get_num_threads()
    try:
        chunk_size(1 << 30)
        value, grad = loss.value_and_gradient(y_true, y_pred)
        chunk_size(40)
        losskit.set_num_threads(3)
        v3, g3 = loss.value_and_gradient(y_true, y_pred)
        losskit.set_num_threads(1)
        v1, g1 = loss.value_and_gradient(y_true, y_pred)
    finally:
        losskit.set_num_threads(before)
    for v, g in ((v3, g3), (v1, g1)):
        assert v == value
        np.testing.assert_array_equal(g, grad, strict=True)


def test_an_error_in_one_chunk_is_reported_for_the_whole_batch(chunk_size):
    """A kernel that checks its rows (the label's class must be kept by ``where``) raises with the
    count over the whole batch, not over the chunk that found it."""
    y_true = np.zeros(6, dtype=np.int64)
    y_pred = np.zeros((6, 3), dtype=np.float32)
    where = np.ones((6, 3), dtype=bool)
    where[[1, 4], 0] = False  # two samples in two different chunks
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True)
    chunk_size(1)
    with pytest.raises(ValueError, match=r"in 2 sample\(s\)"):
        loss.value_and_gradient(y_true, y_pred, where=where)


def test_peak_memory_of_a_generic_loss_is_a_few_times_its_input():
    """poisson has no compiled kernel: its array-API kernel keeps about 20 batch-sized float64
    temporaries. In chunks, value_and_gradient's peak is the gradient and a chunk's temporaries per
    thread (a generous bound: 4x the float32 input at 8 MB)."""
    rng = np.random.default_rng(0)
    y_pred = rng.uniform(0.1, 2.0, size=(2048, 1024)).astype(np.float32)
    y_true = rng.poisson(1.0, size=y_pred.shape).astype(np.float32)
    loss = losskit.Poisson()
    loss.value_and_gradient(y_true[:4], y_pred[:4])  # first-call allocations (caches) not counted
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        value, grad = loss.value_and_gradient(y_true, y_pred)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert grad.dtype == np.float32
    assert np.isfinite(value)
    assert peak < 4 * y_pred.nbytes, f"peak {peak / y_pred.nbytes:.2f}x the input"


def test_a_batch_coupled_loss_sees_the_whole_batch(chunk_size):
    """A loss whose sample values read other samples (here the Tweedie deviance's values centred on
    the batch mean, a made-up coupling; a loss without a C kernel, whose name would pick that
    kernel) is evaluated whole when declared ``batch_coupled``; undeclared, row chunks would change
    its values, which the registry-wide test above detects."""
    from losskit.losses._core import make_class

    defn = losskit.get("mean_tweedie_deviance").definition

    def centred(xp, y_true, y_pred, **kw):
        value, g = defn.kernel(xp, y_true, y_pred, **kw)
        return value - xp.mean(value), g

    rng = np.random.default_rng(1)
    y_true = rng.poisson(2.0, size=(6, 4)).astype(np.float32)
    y_pred = rng.uniform(0.5, 3.0, size=(6, 4)).astype(np.float32)
    # the reference: the mean over the whole batch of the uncoupled loss's per-sample values
    plain = losskit.mean_tweedie_deviance(y_true, y_pred, power=1.5).astype(np.float64)
    expected = (plain - plain.mean()).astype(np.float32)
    coupled = make_class(dataclasses.replace(defn, kernel=centred, batch_coupled=True))
    undeclared = make_class(dataclasses.replace(defn, kernel=centred))
    chunk_size(1)
    np.testing.assert_allclose(coupled(reduction="none", power=1.5)(y_true, y_pred), expected,
                               rtol=1e-6, atol=1e-6)
    assert not np.allclose(undeclared(reduction="none", power=1.5)(y_true, y_pred), expected, atol=1e-3)
