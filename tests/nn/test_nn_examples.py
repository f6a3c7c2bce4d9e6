"""The examples on real data shipped with scikit-learn: digits (classification) and diabetes
(regression). Baselines come from scikit-learn, not from losskit."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("sklearn")
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_softmax_classifier_reaches_95_percent():
    model, accuracy = _load("digits").main(verbose=0)
    assert accuracy >= 0.95
    # the accuracy evaluate reports is the fraction of argmax hits, recomputed here by hand
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    _, x_test, _, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    hits = np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test
    assert accuracy == pytest.approx(hits.mean())


def test_diabetes_regression_is_close_to_least_squares():
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import train_test_split

    _, r2, mae = _load("diabetes").main()
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    baseline = LinearRegression().fit(x_train, y_train).score(x_test, y_test)
    assert r2 > 0.25
    assert r2 > baseline - 0.1
    assert mae < np.mean(np.abs(y_test - y_train.mean())) * 0.85  # well below predicting the mean
