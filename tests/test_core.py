"""Reductions, weights, masks, shapes and dtypes: the behaviour every loss shares (``_core``).

Expected values are derived by hand in each test from the per-sample values, which the oracle suite
checks separately.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit

Y_TRUE = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
Y_PRED = np.array([[1.0, 1.0], [1.0, 3.0], [2.0, 0.0]])
PER_SAMPLE = np.array([0.5, 2.0, 0.0])  # ((1-0)^2 + 0) / 2, (0 + (3-1)^2) / 2, 0


@pytest.mark.parametrize(("reduction", "expected"), [
    ("sum_over_batch_size", 2.5 / 3), ("mean", 2.5 / 3), ("sum", 2.5),
    ("mean_with_sample_weight", 2.5 / 3), ("none", PER_SAMPLE), (None, PER_SAMPLE)])
def test_reductions_follow_keras(reduction, expected):
    loss = losskit.MeanSquaredError(reduction=reduction)
    np.testing.assert_allclose(loss(Y_TRUE, Y_PRED), expected, rtol=1e-15)


def test_sample_weight_and_mean_with_sample_weight():
    w = np.array([2.0, 0.5, 3.0])
    weighted = PER_SAMPLE * w  # [1, 1, 0]
    mean = losskit.MeanSquaredError()
    by_weight = losskit.MeanSquaredError(reduction="mean_with_sample_weight")
    assert float(mean(Y_TRUE, Y_PRED, sample_weight=w)) == pytest.approx(weighted.sum() / 3)
    assert float(by_weight(Y_TRUE, Y_PRED, sample_weight=w)) == pytest.approx(2.0 / 5.5)


def test_gradient_chains_through_the_reduction():
    # d/dp of sum_s w_s mse_s / D = w_s * 2 (p - t) / n / D, with n = 2 columns and D = 3 samples
    w = np.array([2.0, 0.5, 3.0])
    grad = losskit.MeanSquaredError().gradient(Y_TRUE, Y_PRED, sample_weight=w)
    np.testing.assert_allclose(grad, w[:, None] * (Y_PRED - Y_TRUE) / 3, rtol=1e-15)
    grad = losskit.MeanSquaredError(reduction="none").gradient(Y_TRUE, Y_PRED)
    np.testing.assert_allclose(grad, Y_PRED - Y_TRUE, rtol=1e-15)


def test_sample_weight_shapes():
    y = np.zeros((4, 3, 2))
    p = np.ones((4, 3, 2))  # per-sample loss shape (4, 3), every value 1
    loss = losskit.MeanSquaredError(reduction="sum")
    assert float(loss(y, p, sample_weight=2.0)) == 24.0
    assert float(loss(y, p, sample_weight=np.full((4, 3), 2.0))) == 24.0
    assert float(loss(y, p, sample_weight=np.full((4, 3, 1), 2.0))) == 24.0
    assert float(loss(y, p, sample_weight=np.array([1.0, 0.0, 0.0, 0.0]))) == 3.0  # per row
    with pytest.raises(ValueError, match=r"sample_weight has shape \(3,\).*\(4, 3\)"):
        loss(y, p, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match=r"sample_weight has shape \(4, 2\)"):
        loss(y, p, sample_weight=np.ones((4, 2)))


def test_zero_weight_hides_an_infinite_loss():
    loss = losskit.BinaryCrossentropy()
    y, p = np.array([[1.0], [1.0]]), np.array([[0.0], [0.5]])  # first sample: -log 0 = inf
    value, grad = loss.value_and_gradient(y, p, sample_weight=np.array([0.0, 1.0]))
    assert float(value) == pytest.approx(np.log(2) / 2)
    assert grad[0, 0] == 0.0
    assert np.isinf(losskit.binary_crossentropy(y, p)[0])


@pytest.mark.parametrize(("y_shape", "p_shape", "out_shape"), [
    ((5,), (5, 1), (5,)),     # Keras expands a rank-1 y_true
    ((5, 1), (5,), (5,)),     # and a rank-1 y_pred
    ((5, 3), (5, 3, 1), (5,)),  # squeezes the trailing 1 otherwise
    ((5, 3, 1), (5, 3), (5,)),
    ((5, 3), (5, 3), (5,)),
    ((4,), (4,), ()),         # rank 1 both: one sample
])
def test_rank_repair_like_keras(y_shape, p_shape, out_shape, rng):
    y, p = rng.normal(size=y_shape), rng.normal(size=p_shape)
    loss = losskit.MeanSquaredError(reduction="none")
    value, grad = loss.value_and_gradient(y, p)
    assert value.shape == out_shape
    assert grad.shape == p_shape
    flat_y, flat_p = y.reshape((*out_shape, -1)), p.reshape((*out_shape, -1))
    np.testing.assert_allclose(value, np.mean((flat_p - flat_y) ** 2, axis=-1), rtol=1e-14)


def test_other_shape_mismatches_are_errors():
    with pytest.raises(ValueError, match=r"y_true has shape \(4, 1\) and y_pred has shape \(4, 3\)"):
        losskit.mean_squared_error(np.zeros((4, 1)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"y_true has shape \(4, 3\).*without its class axis"):
        losskit.sparse_categorical_crossentropy(np.zeros((4, 3), int), np.ones((4, 3)) / 3)
    with pytest.raises(ValueError, match="at least one axis"):
        losskit.mean_squared_error(1.0, 2.0)


def test_axis_moves_the_class_axis(rng):
    logits = rng.normal(size=(3, 4, 5))
    labels = rng.integers(0, 4, size=(3, 5))
    onehot = np.moveaxis(np.eye(4)[labels], -1, 1)
    moved = losskit.categorical_crossentropy(onehot, logits, from_logits=True, axis=1)
    last = losskit.categorical_crossentropy(np.moveaxis(onehot, 1, -1), np.moveaxis(logits, 1, -1),
                                            from_logits=True)
    np.testing.assert_array_equal(moved, last)
    sparse = losskit.sparse_categorical_crossentropy(labels, logits, from_logits=True, axis=1)
    np.testing.assert_array_equal(sparse, last)
    g = losskit.CategoricalCrossentropy(from_logits=True, axis=1).gradient(onehot, logits)
    g_last = losskit.CategoricalCrossentropy(from_logits=True).gradient(
        np.moveaxis(onehot, 1, -1), np.moveaxis(logits, 1, -1))
    np.testing.assert_array_equal(g, np.moveaxis(g_last, -1, 1))
    bce = losskit.binary_crossentropy(onehot, logits, from_logits=True, axis=0)
    assert bce.shape == (4, 5)


def test_ignore_class_is_a_mask():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [1.0, 1.0, 1.0]])
    labels = np.array([0, -100, 2])
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-100)
    per = losskit.sparse_categorical_crossentropy(labels, logits, from_logits=True,
                                                  ignore_class=-100)
    assert per[1] == 0.0
    kept = losskit.sparse_categorical_crossentropy(labels[[0, 2]], logits[[0, 2]],
                                                   from_logits=True)
    np.testing.assert_array_equal(per[[0, 2]], kept)
    value, grad = loss.value_and_gradient(labels, logits)
    assert float(value) == pytest.approx(kept.sum() / 2)  # mean over the two counted samples
    np.testing.assert_array_equal(grad[1], 0.0)
    everything_ignored = loss.value_and_gradient(np.full(3, -100), logits)
    assert float(everything_ignored[0]) == 0.0
    np.testing.assert_array_equal(everything_ignored[1], 0.0)
    weighted = losskit.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-100, reduction="mean_with_sample_weight")
    w = np.array([1.0, 5.0, 3.0])
    assert float(weighted(labels, logits, sample_weight=w)) == pytest.approx(
        (kept[0] + 3 * kept[1]) / 4)


def test_label_smoothing_matches_smoothed_targets(rng):
    logits = rng.normal(size=(4, 3))
    y = np.eye(3)[[0, 1, 2, 1]]
    np.testing.assert_allclose(
        losskit.categorical_crossentropy(y, logits, from_logits=True, label_smoothing=0.3),
        losskit.categorical_crossentropy(0.7 * y + 0.1, logits, from_logits=True), rtol=1e-14)
    np.testing.assert_allclose(
        losskit.binary_crossentropy(y, logits, from_logits=True, label_smoothing=0.3),
        losskit.binary_crossentropy(0.7 * y + 0.15, logits, from_logits=True), rtol=1e-14)


def test_hinge_converts_zero_one_labels_like_keras():
    f = np.array([[0.3, -2.0, 0.9]])
    np.testing.assert_array_equal(losskit.hinge([[1.0, 0.0, 1.0]], f),
                                  losskit.hinge([[1.0, -1.0, 1.0]], f))
    # all ones stay +1 (2y - 1 = y); all zeros become -1
    np.testing.assert_array_equal(losskit.hinge([[0.0, 0.0, 0.0]], f),
                                  losskit.hinge([[-1.0, -1.0, -1.0]], f))


def test_integer_labels_are_never_cast_to_a_float_dtype():
    # 3000 classes: labels above 2048 are not representable in float16. Computing in float16 must
    # still select the right class, so the float16 result equals the float32 one rounded.
    k = 3000
    labels = np.array([2049, 2999, 7])
    logits = np.zeros((3, k))
    logits[np.arange(3), labels] = 5.0
    half = losskit.SparseCategoricalCrossentropy(from_logits=True, reduction="none",
                                                 dtype="float16")(labels, logits)
    full = losskit.sparse_categorical_crossentropy(labels, logits.astype(np.float16),
                                                   from_logits=True)
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, full)
    expected = np.log1p((k - 1) * np.exp(-5.0))  # by hand: lse - x_k
    np.testing.assert_allclose(half.astype(float), expected, rtol=1e-3)


def test_lists_and_integer_predictions_become_float64():
    value = losskit.mean_absolute_error([[1, 2]], [[1, 4]])
    assert value.dtype == np.float64
    assert float(value[0]) == 1.0


def test_dtype_option_casts_inputs():
    loss = losskit.MeanSquaredError(dtype="float32")
    value, grad = loss.value_and_gradient(np.zeros((2, 2)), np.ones((2, 2)))
    assert value.dtype == np.float32
    assert grad.dtype == np.float32
    with pytest.raises(ValueError, match="dtype must be a floating dtype"):
        losskit.MeanSquaredError(dtype="int32")


def test_minus_inf_logits_with_zero_targets_are_finite():
    # Optax's softmax_cross_entropy gives NaN here (optax #896): 0 * log(0) must be 0.
    # By hand: log(e + e^2) - 2 = log1p(e^-1) = 0.3132616875182228, gradient softmax - onehot.
    logits = np.array([[-np.inf, 1.0, 2.0]])
    value, grad = losskit.CategoricalCrossentropy(from_logits=True).value_and_gradient(
        np.array([[0.0, 0.0, 1.0]]), logits)
    assert float(value) == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-15)
    p1 = 1 / (1 + np.e)
    np.testing.assert_allclose(grad, [[0.0, p1, -p1]], rtol=1e-15)
    scce = losskit.SparseCategoricalCrossentropy(from_logits=True)
    assert float(scce([2], logits)) == float(value)
