"""The documented edge choices of the tutorial's seven losses, against the mpmath reference.

The oracle suite proper (every loss, regime, dtype and option set, values and gradients within
8 ulp, reductions, PyTorch and JAX inputs, a Hypothesis search over random rows) is the one harness
of ``tests/test_catalog.py`` over ``tests/oracle/families/*.py`` (the seven are in
``families/core.py``). Here: zero probabilities under a positive label, ``0 log 0``, infinite logits
and the kinks of MAE and hinge, rows that the oracle's numerical gradient cannot take, each checked
against ``oracle/reference.py``'s row functions.
"""

from __future__ import annotations

import math
from typing import Any

import mpmath
import numpy as np
import pytest
from mpmath import mpf
from oracle import reference as R

import losskit

ORACLE = R.ORACLE
DTYPES = [np.float32, np.float64]
LIBRARY = {  # the oracle's short names -> losskit's function and class
    "mse": ("mean_squared_error", "MeanSquaredError"),
    "mae": ("mean_absolute_error", "MeanAbsoluteError"),
    "bce": ("binary_crossentropy", "BinaryCrossentropy"),
    "cce": ("categorical_crossentropy", "CategoricalCrossentropy"),
    "scce": ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy"),
    "hinge": ("hinge", "Hinge"),
    "kld": ("kl_divergence", "KLDivergence"),
}


def lib_function(loss: str) -> Any:
    """The per-sample function of losskit for a loss key."""
    return getattr(losskit, LIBRARY[loss][0])


def lib_class(loss: str, **kwargs: Any) -> Any:
    """An instance of the losskit class for a loss key."""
    return getattr(losskit, LIBRARY[loss][1])(**kwargs)


def check_dtype(arr: Any, case_dtype: Any, what: str) -> np.ndarray:
    """Convert to NumPy and check the dtype is the input dtype."""
    out = np.asarray(arr)
    assert out.dtype == np.dtype(case_dtype), f"{what}: dtype {out.dtype} != {case_dtype}"
    return out


# --------------------------------------------------------------------------- edge choices


def _zero_prob_inputs(loss: str, dtype: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Row 0 has a probability of exactly 0 under a positive label; row 1 is ordinary."""
    if loss == "bce":
        return (
            np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]], dtype),
            np.array([[0.0, 0.3, 0.6], [0.2, 0.3, 0.6]], dtype),
            {},
        )
    if loss == "cce":
        return (
            np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype),
            np.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]], dtype),
            {},
        )
    if loss == "scce":
        return np.array([1, 1]), np.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]], dtype), {}
    return (
        np.array([[0.25, 0.75, 0.0], [0.25, 0.75, 0.0]], dtype),
        np.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]], dtype),
        {},
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["bce", "cce", "scce", "kld"])
def test_zero_probability_for_positive_label(loss: str, dtype: Any) -> None:
    """Value +inf; gradient finite or -inf, never NaN; the ordinary row is unaffected."""
    y_true, y_pred, opts = _zero_prob_inputs(loss, dtype)
    value = check_dtype(lib_function(loss)(y_true, y_pred, **opts), dtype, "value")
    assert value[0] == np.inf
    exact = ORACLE[loss](y_true[1], y_pred[1], **opts)
    R.assert_ulp(value[1:], [exact], dtype, what=f"{loss} ordinary row")
    g = check_dtype(lib_class(loss, reduction="none").gradient(y_true, y_pred), dtype, "grad")
    assert not np.isnan(g).any(), g
    assert not (g == np.inf).any(), g
    R.assert_ulp(g[1:], [R.grad(ORACLE[loss], y_true[1], y_pred[1])], dtype, what="grad row 1")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("loss", ["bce", "cce"])
def test_zero_probability_smoothed_label(loss: str, ls: float, dtype: Any) -> None:
    """With label smoothing every target is positive, so any zero probability gives +inf."""
    y_true = np.array([[0.0, 1.0, 0.0]], dtype)
    y_pred = np.array([[0.0, 1.0, 0.0]], dtype)
    value = check_dtype(lib_function(loss)(y_true, y_pred, label_smoothing=ls), dtype, "value")
    assert value[0] == (np.inf if ls else 0.0)
    g = lib_class(loss, reduction="none", label_smoothing=ls).gradient(y_true, y_pred)
    assert not np.isnan(g).any(), g


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("loss", "y_true", "y_pred"),
    [
        ("bce", [[0.0, 1.0, 0.0, 1.0]], [[0.0, 1.0, 0.25, 0.5]]),
        ("cce", [[0.0, 1.0, 0.0]], [[0.0, 1.0, 0.0]]),
        ("cce", [[0.0, 0.5, 0.5]], [[0.0, 0.25, 0.75]]),
        ("kld", [[0.0, 1.0, 0.0]], [[0.0, 1.0, 0.0]]),
        ("kld", [[0.0, 0.25, 0.75]], [[0.5, 0.25, 0.25]]),
    ],
)
def test_zero_log_zero(loss: str, y_true: Any, y_pred: Any, dtype: Any) -> None:
    """0 * log 0 = 0 in the value, and the killed term adds nothing to the gradient."""
    t, p = np.array(y_true, dtype), np.array(y_pred, dtype)
    value = check_dtype(lib_function(loss)(t, p), dtype, "value")
    R.assert_ulp(value, [ORACLE[loss](t[0], p[0])], dtype, what=f"{loss} value")
    g = check_dtype(lib_class(loss, reduction="none").gradient(t, p), dtype, "gradient")
    R.assert_ulp(g, [R.grad(ORACLE[loss], t[0], p[0])], dtype, what=f"{loss} gradient")


def test_zero_log_zero_scce() -> None:
    """scce: the only term is the label's, with p_label = 1 and zeros elsewhere: value 0."""
    p = np.array([[0.0, 1.0, 0.0]])
    value = lib_function("scce")(np.array([1]), p)
    assert value[0] == 0.0
    g = lib_class("scce", reduction="none").gradient(np.array([1]), p)
    R.assert_ulp(g, [R.grad(R.scce, 1, p[0])], np.float64, what="scce gradient")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_bce_infinite_logits(ls: float, dtype: Any) -> None:
    """Logits of +-inf: values are 0 or +inf, gradients (sigmoid(x) - t')/n exactly; no NaN."""
    t = np.array([[1.0, 0.0, 1.0, 0.0, 0.5, 0.5]], dtype)
    x = np.array([[math.inf, -math.inf, -math.inf, math.inf, math.inf, -math.inf]], dtype)
    value = check_dtype(lib_function("bce")(t, x, from_logits=True, label_smoothing=ls), dtype, "v")
    assert not np.isnan(value).any()
    R.assert_ulp(value, [R.bce(t[0], x[0], True, ls)], dtype, what="bce inf logits value")
    with mpmath.mp.workdps(40):
        lsm, n = mpf(ls), t.shape[1]
        tp = [mpf(float(v)) * (1 - lsm) + lsm / 2 for v in t[0]]
        want = [((1 if xi > 0 else 0) - tj) / n for tj, xi in zip(tp, x[0], strict=True)]
    obj = lib_class("bce", reduction="none", from_logits=True, label_smoothing=ls)
    g = check_dtype(obj.gradient(t, x), dtype, "gradient")
    assert np.isfinite(g).all(), g
    R.assert_ulp(g, [want], dtype, what="bce inf logits gradient")


@pytest.mark.parametrize("dtype", DTYPES)
def test_kinks(dtype: Any) -> None:
    """MAE at zero error has gradient 0; hinge exactly at the margin has gradient -t/(2n)."""
    t = np.array([[1.0, -2.0, 0.5, 3.0]], dtype)
    p = np.array([[1.0, 0.0, 0.5, 3.0]], dtype)
    g = check_dtype(lib_class("mae", reduction="none").gradient(t, p), dtype, "mae gradient")
    np.testing.assert_array_equal(g, np.array([[0.0, 0.25, 0.0, 0.0]], dtype))
    R.assert_ulp(g, [R.grad(R.mae, t[0], p[0])], dtype, what="mae kink")
    th = np.array([[1.0, -1.0, 1.0, -1.0]], dtype)
    f = np.array([[1.0, -1.0, 3.0, 0.5]], dtype)
    g = check_dtype(lib_class("hinge", reduction="none").gradient(th, f), dtype, "hinge gradient")
    np.testing.assert_array_equal(g, np.array([[-0.125, 0.125, 0.0, 0.25]], dtype))
    R.assert_ulp(g, [R.grad(R.hinge, th[0], f[0])], dtype, what="hinge kink")
