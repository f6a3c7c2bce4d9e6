"""Bad input gets a clear error that names the argument and what was found."""

from __future__ import annotations

import numpy as np
import pytest

import losskit

P = np.array([[0.2, 0.8], [0.6, 0.4]])
Y = np.array([[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize("fn", [losskit.binary_crossentropy, losskit.categorical_crossentropy])
def test_probabilities_outside_unit_interval(fn):
    with pytest.raises(ValueError, match=r"y_pred must lie in \[0, 1\] when from_logits=False; "
                                         r"found 1 value\(s\) outside, from 1.5 to 1.5 "
                                         r"\(first: y_pred\[1, 0\] = 1.5\); pass from_logits=True"):
        fn(Y, np.array([[0.2, 0.8], [1.5, 0.4]]))
    with pytest.raises(ValueError, match=r"y_true must lie in \[0, 1\].*-1"):
        fn(np.array([[0.0, 1.0], [-1.0, 0.0]]), P)
    fn(Y, np.array([[3.0, -2.0], [0.5, 0.1]]), from_logits=True)  # logits: any real


def test_kl_probabilities():
    with pytest.raises(ValueError, match=r"kl_divergence: y_pred must lie in \[0, 1\]"):
        losskit.kl_divergence(Y, -P)


def test_sparse_labels_out_of_range_or_fractional():
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 1\] for y_pred with 2 "
                                         r"classes.*y_true\[1\] = 2"):
        losskit.sparse_categorical_crossentropy(np.array([0, 2]), P)
    with pytest.raises(ValueError, match=r"y_true\[0\] = -1"):
        losskit.sparse_categorical_crossentropy(np.array([-1, 0]), P)
    with pytest.raises(ValueError, match=r"integer class indices.*not whole numbers.*0.5"):
        losskit.sparse_categorical_crossentropy(np.array([0.5, 1.0]), P)
    # the ignored label may lie outside the range
    losskit.sparse_categorical_crossentropy(np.array([-100, 1]), P, ignore_class=-100)
    with pytest.raises(ValueError, match="other than ignore_class=-100"):
        losskit.sparse_categorical_crossentropy(np.array([-100, 5]), P, ignore_class=-100)


def test_hinge_labels():
    with pytest.raises(ValueError, match=r"hinge: y_true must hold labels -1 and 1.*2"):
        losskit.hinge(np.array([[1.0, 2.0]]), np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="hinge: y_true must hold labels"):
        losskit.hinge(np.array([[1.0, 0.0, -1.0]]), np.array([[0.0, 1.0, 2.0]]))


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_label_smoothing_range(value):
    with pytest.raises(ValueError, match=rf"label_smoothing must lie in \[0, 1\]; found {value}"):
        losskit.BinaryCrossentropy(label_smoothing=value)
    with pytest.raises(ValueError, match="label_smoothing must lie in"):
        losskit.categorical_crossentropy(Y, P, label_smoothing=value)


def test_option_types_and_names():
    with pytest.raises(TypeError, match="from_logits must be True or False; found 'yes'"):
        losskit.BinaryCrossentropy(from_logits="yes")
    with pytest.raises(TypeError, match=r"unknown option.*from_logit; its options are: from_logits"):
        losskit.binary_crossentropy(Y, P, from_logit=True)
    with pytest.raises(TypeError, match="axis must be an integer"):
        losskit.categorical_crossentropy(Y, P, axis=1.0)
    with pytest.raises(ValueError, match=r"axis=2 is out of range for y_pred of shape \(2, 2\)"):
        losskit.categorical_crossentropy(Y, P, axis=2)


def test_unknown_reduction_lists_the_choices():
    with pytest.raises(ValueError, match="reduction must be one of 'sum_over_batch_size', 'mean', "
                                         "'sum', 'mean_with_sample_weight', 'batchmean', 'none', None; "
                                         "found 'avg'"):
        losskit.MeanSquaredError(reduction="avg")


def test_non_numeric_input():
    with pytest.raises(TypeError, match="y_pred must hold real numbers; found dtype <U1"):
        losskit.mean_squared_error([["a"]], [["b"]])
    with pytest.raises(TypeError, match="y_true must hold real numbers"):
        losskit.mean_squared_error([["a"]], [[1.0]])


def test_nan_is_not_an_error():
    out = losskit.binary_crossentropy(np.array([[1.0, np.nan]]), np.array([[np.nan, 0.5]]))
    assert np.isnan(out[0])


def test_mixed_array_libraries():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="y_true is a torch array but y_pred is a numpy array"):
        losskit.mean_squared_error(torch.zeros(2, 2), np.zeros((2, 2)))


def test_single_class_categorical_crossentropy_warns_like_keras():
    with pytest.warns(UserWarning, match="single class.*use binary_crossentropy"):
        losskit.categorical_crossentropy(np.ones((3, 1)), np.zeros((3, 1)), from_logits=True)
