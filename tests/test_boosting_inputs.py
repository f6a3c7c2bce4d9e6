"""losskit.boosting under bad and extreme input (issue 9): options, arrays, links and limits.

Each case asserts the documented outcome: a TypeError/ValueError naming the argument, or the limit
value (checked against mpmath where it is a number).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from losskit import boosting as B

FMAX = float(np.finfo(np.float64).max)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: B.PinballLoss(quantile=v), "quantile"),
        (lambda v: B.HuberLoss(delta=v), "delta"),
        (lambda v: B.HalfTweedieLoss(power=v), "power"),
        (lambda v: B.get("tweedie", power=v), "power"),
        (lambda v: B.huber_delta([1.0, 2.0], [0.0, 0.0], quantile=v), "quantile"),
    ],
)
@pytest.mark.parametrize("value", ["0.5", None, True, np.True_, 0.5 + 0j, [0.5], np.array([0.5]), "abc"])
def test_options_must_be_real_numbers(make, name, value):
    with pytest.raises(TypeError, match=rf"{name} must be a (real )?number.*; found"):
        make(value)


def test_numpy_scalar_options_are_accepted():
    assert B.PinballLoss(quantile=np.float32(0.25)).quantile == 0.25
    assert B.HuberLoss(delta=np.int64(2)).delta == 2.0
    assert B.HalfTweedieLoss(power=np.array(1.5)).power == 1.5
    assert isinstance(B.HalfTweedieLoss(power=np.float64(1.5)).power, float)


@pytest.mark.parametrize(
    ("y", "r", "w", "match"),
    [
        (np.ma.array([1.0, 2.0], mask=[False, True]), [0.0, 0.0], None, "y_true is a masked array"),
        ([1.0, 2.0], np.ma.array([0.0, 0.0]), None, "raw_prediction is a masked array"),
        ([1.0, 2.0], [0.0, 0.0], np.ma.array([1.0, 1.0]), "sample_weight is a masked array"),
        ([[1.0], [1.0, 2.0]], [0.0, 0.0], None, "y_true must be a real numeric array, found a ragged"),
        ([1.0], np.array([True]), None, "raw_prediction must be a real numeric array, found dtype bool"),
        (np.array([1], dtype="timedelta64[s]"), [0.0], None, "y_true must be a real numeric array"),
        ([1.0], np.array(["2020-01-01"], dtype="datetime64[D]"), None, "raw_prediction must be a real"),
    ],
)
def test_bad_arrays_are_refused(y, r, w, match):
    with pytest.raises(TypeError, match=match):
        B.HalfPoissonLoss().gradient_hessian(y, r, w)
    with pytest.raises(TypeError, match=match):
        B.HalfPoissonLoss().loss(y, r, w)


def test_extended_precision_gives_float64():
    """Computed in float64, so reported as float64 rather than claiming long-double accuracy."""
    ld = np.array([0.0, 1.0], dtype=np.longdouble)
    g, h = B.HalfPoissonLoss().gradient_hessian(np.array([1.0, 1.0], dtype=np.longdouble), ld)
    assert g.dtype == np.float64
    assert h.dtype == np.float64
    assert g[0] == 0.0


@pytest.mark.parametrize(
    ("loss", "bad", "match"),
    [
        (B.HalfPoissonLoss(), [1.0, -0.5], r"y_pred for the log link must be in \[0, inf\], found -0.5"),
        (B.HalfBinomialLoss(), [0.5, 1.5], r"y_pred for the logit link must be in \[0, 1\], found 1.5"),
        (B.ExponentialLoss(), [-0.1], r"logit link must be in \[0, 1\]"),
        (B.HalfMultinomialLoss(), [[0.5, -0.5]], r"multinomial logit link must be in \[0, inf\]"),
    ],
)
def test_link_domain(loss, bad, match):
    with pytest.raises(ValueError, match=match):
        loss.link(bad)


@pytest.mark.parametrize("loss", [B.HalfSquaredError(), B.HalfPoissonLoss(), B.HalfBinomialLoss(),
                                  B.HalfMultinomialLoss()])
def test_links_refuse_non_numbers(loss):
    for bad in (None, [None], {"a": 1}, ["1.0"], [[1.0], [1.0, 2.0]]):
        with pytest.raises(TypeError, match="y_pred must be a real numeric array"):
            loss.link(bad)
        with pytest.raises(TypeError, match="raw_prediction must be a real numeric array"):
            loss.inverse_link(bad)


def test_links_limits_and_nan():
    assert B.HalfPoissonLoss().link([0.0])[0] == -np.inf
    assert np.isnan(B.HalfPoissonLoss().link([np.nan])[0])  # NaN propagates
    np.testing.assert_array_equal(B.HalfBinomialLoss().link([0.0, 1.0]), [-np.inf, np.inf])
    np.testing.assert_array_equal(B.HalfPoissonLoss().inverse_link([-np.inf, np.inf]), [0.0, np.inf])
    m = B.HalfMultinomialLoss()
    with pytest.raises(ValueError, match="raw_prediction must be finite"):
        m.inverse_link([[np.inf, 0.0]])
    with pytest.raises(ValueError, match=r"shape \(n_samples, n_classes\)"):
        m.inverse_link(np.zeros((2, 0)))
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no warning: finite scores
        p = m.inverse_link([[FMAX, -FMAX], [FMAX, FMAX / 2]])
    np.testing.assert_array_equal(p, [[1.0, 0.0], [1.0, 0.0]])


@pytest.mark.parametrize(
    ("y", "r"),
    [(FMAX, FMAX), (FMAX, -FMAX), (FMAX, 1e300), (FMAX, -1e300), (FMAX, 710.0), (FMAX, 716.0),
     (FMAX, 716.5), (FMAX, -746.0), (3.0, 1e300), (1e300, 700.0)],
)
def test_poisson_value_at_the_largest_floats_is_the_limit(y, r):
    """``exp(r) - y r`` where the product or the exponential exceed the largest float (issue 9,
    item 11): the correctly signed infinity or the finite value, never NaN."""
    v = B.HalfPoissonLoss().loss([y], [r])[0]
    with mpmath.workdps(60):
        exact = mpmath.exp(mpmath.mpf(r)) - mpmath.mpf(y) * mpmath.mpf(r)
    if abs(exact) > FMAX:
        assert v == (np.inf if exact > 0 else -np.inf)
    else:
        assert abs(v - float(exact)) <= 8 * np.spacing(abs(float(exact)))
    g, h = B.HalfPoissonLoss().gradient_hessian([y], [r])
    assert not np.isnan(g[0])
    assert not np.isnan(h[0])


def test_huber_delta_refuses_non_finite():
    with pytest.raises(ValueError, match="raw_prediction must be finite"):
        B.huber_delta([1.0, 2.0], [0.0, np.nan])
    with pytest.raises(ValueError, match="y_true must be finite"):
        B.huber_delta([np.inf, 2.0], [0.0, 0.0])
