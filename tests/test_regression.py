"""Loss-specific checks of the regression catalog that the generic suites do not make: documented
conventions (MAPE's x100 and zero targets, cosine's zero vectors, PyTorch's masks and clamps), option
identities, and the places where a peer is measurably off.

Expected values come from mpmath, from a peer library, or from a derivation written in the test.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import losskit

mpmath.mp.dps = 50


@pytest.fixture(autouse=True)
def _keep_keras_floatx():
    """The Keras checks below set floatx to float64; restore whatever it was."""
    try:
        import keras
    except ImportError:
        yield
        return
    previous = keras.config.floatx()
    yield
    keras.config.set_floatx(previous)


def ulps(computed: float, exact: mpmath.mpf, dtype=np.float64) -> float:
    return float(abs(mpmath.mpf(float(computed)) - exact) / abs(exact)) / float(np.finfo(dtype).eps)


# ----------------------------------------------------------------------- option identities


def test_smooth_l1_is_huber_over_beta_and_mae_at_zero(rng):
    t, p = rng.normal(size=(4, 6)), rng.normal(scale=2.0, size=(4, 6))
    np.testing.assert_allclose(losskit.smooth_l1(t, p, beta=0.5), losskit.huber(t, p, delta=0.5) / 0.5,
                               rtol=1e-15)
    np.testing.assert_array_equal(losskit.smooth_l1(t, p, beta=0.0), losskit.mean_absolute_error(t, p))


def test_pinball_median_is_half_mae_and_alpha_is_an_alias(rng):
    t, p = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    np.testing.assert_allclose(losskit.pinball(t, p), losskit.mean_absolute_error(t, p) / 2,
                               rtol=1e-15)
    np.testing.assert_array_equal(losskit.pinball(t, p, alpha=0.9),
                                  losskit.pinball(t, p, quantile=0.9))
    assert losskit.Pinball(alpha=0.3).get_config()["quantile"] == 0.3


def test_tweedie_special_powers(rng):
    t, m = rng.uniform(0.1, 3, size=(3, 5)), rng.uniform(0.1, 3, size=(3, 5))
    # the same value up to the last bits of the sum (MSE's float64 kernel sums with compensation)
    np.testing.assert_allclose(losskit.mean_tweedie_deviance(t, m, power=0),
                               losskit.mean_squared_error(t, m), rtol=2.0**-50, atol=0)
    np.testing.assert_array_equal(losskit.mean_tweedie_deviance(t, m, power=2),
                                  losskit.mean_gamma_deviance(t, m))
    # power 1 with zero targets: 2 (0 log 0 - 0 + m) = 2 m
    np.testing.assert_allclose(losskit.mean_tweedie_deviance(np.zeros(3), [1.0, 2.0, 3.0], power=1),
                               4.0, rtol=1e-15)


def test_tweedie_power_between_zero_and_one_is_refused():
    with pytest.raises(ValueError, match=r"power must be <= 0 or >= 1"):
        losskit.MeanTweedieDeviance(power=0.5)


# --------------------------------------------------------------------------------- domains


def test_mape_refuses_zero_targets_and_says_what_keras_does():
    with pytest.raises(ValueError, match=r"y_true must be non-zero.*Keras divides by max"):
        losskit.mean_absolute_percentage_error([[1.0, 0.0]], [[1.0, 0.5]])


@pytest.mark.parametrize("bad", [-1.0, -2.0])
def test_msle_domain_is_above_minus_one(bad):
    with pytest.raises(ValueError, match=r"y_pred must lie in \(-1, inf\)"):
        losskit.mean_squared_logarithmic_error([[0.0]], [[bad]])


def test_gaussian_nll_needs_a_nonnegative_var():
    with pytest.raises(TypeError, match="needs the input array var="):
        losskit.gaussian_nll([[0.0]], [[1.0]])
    with pytest.raises(ValueError, match=r"var must lie in \[0, inf\)"):
        losskit.gaussian_nll([[0.0]], [[1.0]], var=[[-1.0]])


def test_poisson_domain_and_conventions():
    with pytest.raises(ValueError, match="y_pred must lie in"):
        losskit.poisson([[1.0]], [[-0.5]])
    # 0 log 0 = 0: a zero target contributes y_pred, gradient 1/n even at y_pred = 0
    np.testing.assert_array_equal(losskit.poisson([[0.0, 0.0]], [[0.0, 3.0]]), [1.5])
    np.testing.assert_array_equal(losskit.Poisson(reduction="none").gradient([[0.0, 0.0]],
                                                                             [[0.0, 3.0]]), [[0.5, 0.5]])
    assert losskit.poisson([[2.0]], [[0.0]])[0] == np.inf


# ------------------------------------------------------------------------------ cosine similarity


def test_cosine_zero_vectors_give_zero_with_zero_gradient():
    t = np.array([[1.0, 2.0], [0.0, 0.0]])
    p = np.array([[0.0, 0.0], [3.0, -1.0]])
    np.testing.assert_array_equal(losskit.cosine_similarity(t, p), [0.0, 0.0])
    np.testing.assert_array_equal(losskit.CosineSimilarity(reduction="none").gradient(t, p), 0.0)


def test_cosine_huge_and_tiny_vectors_are_rescaled():
    # by hand: any vector against a positive multiple of itself has cosine 1
    for x in (1e200, 1e-200):
        np.testing.assert_allclose(losskit.cosine_similarity([[x, x]], [[3 * x, 3 * x]]), [-1.0],
                                   rtol=4 * np.finfo(float).eps)


def test_cosine_axis(rng):
    t, p = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    np.testing.assert_array_equal(losskit.cosine_similarity(t, p, axis=0),
                                  losskit.cosine_similarity(t.T, p.T))


# ------------------------------------------------------------------------------ peer discrepancies


def test_log_cosh_keeps_tiny_values_where_keras_and_optax_return_zero():
    pytest.importorskip("keras")
    import keras

    d = np.array([[1e-9]])
    exact = mpmath.log(mpmath.cosh(mpmath.mpf(1e-9)))  # 5e-19
    keras.config.set_floatx("float64")
    assert float(np.asarray(keras.losses.log_cosh(np.zeros_like(d), d))[0]) == 0.0
    assert ulps(losskit.log_cosh(np.zeros_like(d), d)[0], exact) <= 1


def test_msle_keeps_tiny_and_negative_arguments_where_keras_clips():
    pytest.importorskip("keras")
    import keras

    keras.config.set_floatx("float64")
    t, p = np.array([[1e-9]]), np.array([[3e-9]])
    assert float(np.asarray(keras.losses.mean_squared_logarithmic_error(t, p))[0]) == 0.0
    exact = (mpmath.log1p(mpmath.mpf(3e-9)) - mpmath.log1p(mpmath.mpf(1e-9))) ** 2
    assert ulps(losskit.mean_squared_logarithmic_error(t, p)[0], exact) <= 4
    t, p = np.array([[0.0]]), np.array([[-0.5]])
    assert float(np.asarray(keras.losses.mean_squared_logarithmic_error(t, p))[0]) == 0.0
    assert ulps(losskit.mean_squared_logarithmic_error(t, p)[0], mpmath.log(0.5) ** 2) <= 4


def test_mape_is_keras_percent_and_sklearn_times_100(rng):
    pytest.importorskip("sklearn")
    from sklearn.metrics import mean_absolute_percentage_error

    t, p = rng.uniform(1, 2, size=(1, 6)), rng.uniform(1, 2, size=(1, 6))
    np.testing.assert_allclose(losskit.mean_absolute_percentage_error(t, p)[0],
                               100 * mean_absolute_percentage_error(t[0], p[0]), rtol=1e-14)


@pytest.mark.parametrize("power", [1.5, 2.0])
def test_deviance_near_equality_where_sklearn_cancels(power):
    pytest.importorskip("sklearn")
    from sklearn.metrics import mean_tweedie_deviance

    t, m = 2.0, 2.0 * (1 + 1e-7)
    a, b = 1 - mpmath.mpf(power), 2 - mpmath.mpf(power)
    tm, mm = mpmath.mpf(t), mpmath.mpf(m)
    exact = (2 * (mpmath.log(mm / tm) + tm / mm - 1) if power == 2 else
             2 * (tm ** b / (a * b) - tm * mm ** a / a + mm ** b / b))
    sk = mean_tweedie_deviance([t], [m], power=power)
    assert ulps(sk, exact) > 1e12  # scikit-learn's three-term formula: ~2% (gamma) to ~6% off
    assert ulps(losskit.mean_tweedie_deviance([[t]], [[m]], power=power)[0], exact) <= 4


def test_poisson_nll_gradient_at_the_optimum_where_torch_cancels():
    torch = pytest.importorskip("torch")
    x = np.log(np.array([[7.0]]))  # the float nearest log 7: the gradient exp(x) - 7 is ~5e-16
    exact = mpmath.exp(mpmath.mpf(float(x[0, 0]))) - 7
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.poisson_nll_loss(xt, torch.tensor([[7.0]], dtype=torch.float64),
                                         reduction="sum").backward()
    assert ulps(xt.grad.numpy()[0, 0], exact) > 1e14  # torch: one rounding of exp(x), ~70% off
    g = losskit.PoissonNLL(reduction="sum").gradient(np.array([[7.0]]), x)
    assert float(abs(mpmath.mpf(float(g[0, 0])) - exact) / abs(exact)) < 0.02  # measured: 0.2%


def test_poisson_nll_full_and_gaussian_clamp_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = np.array([[0.0, 1.0, 1.5, 7.0]])  # the Stirling term is masked for t <= 1
    x = np.array([[0.1, -0.3, 0.4, 2.0]])
    expected = F.poisson_nll_loss(torch.tensor(x), torch.tensor(t), full=True,
                                  reduction="none").mean(-1).numpy()
    np.testing.assert_allclose(losskit.poisson_nll(t, x, full=True), expected, rtol=1e-14)
    rate = np.array([[0.0, 1e-9, 2.0, 5.0]])
    expected = F.poisson_nll_loss(torch.tensor(rate), torch.tensor(t), log_input=False,
                                  reduction="none").mean(-1).numpy()
    np.testing.assert_allclose(losskit.poisson_nll(t, rate, log_input=False), expected, rtol=1e-14)
    var = np.array([[0.0, 1e-8, 2.0, 1.0]])  # the first two are clamped at eps = 1e-6
    p = np.array([[1e-3, -1e-3, 1.0, 0.5]])
    expected = F.gaussian_nll_loss(torch.tensor(p), torch.tensor(t), torch.tensor(var),
                                   reduction="none").mean(-1).numpy()
    np.testing.assert_allclose(losskit.gaussian_nll(t, p, var=var), expected, rtol=1e-14)
    # one variance per sample: (B, 1) broadcasts, as PyTorch's (B,) does after its unsqueeze
    np.testing.assert_allclose(losskit.gaussian_nll(t, p, var=[[2.0]]),
                               F.gaussian_nll_loss(torch.tensor(p), torch.tensor(t),
                                                   torch.tensor([2.0], dtype=torch.float64),
                                                   reduction="none"
                                                   ).mean(-1).numpy(), rtol=1e-14)


def test_keras_poisson_epsilon_shifts_small_rates():
    pytest.importorskip("keras")
    import keras

    keras.config.set_floatx("float64")
    t, p = np.array([[3.0]]), np.array([[1e-6]])
    exact = mpmath.mpf(1e-6) - 3 * mpmath.log(mpmath.mpf(1e-6))
    keras_v = float(np.asarray(keras.losses.poisson(t, p))[0])
    assert abs(keras_v - float(exact)) > 0.28  # 3 log(1.1): Keras's log(y_pred + 1e-7)
    assert ulps(losskit.poisson(t, p)[0], exact) <= 2
    assert math.isclose(float(losskit.poisson(t, p)[0]), float(exact), rel_tol=1e-15)


# ------------------------------------------------------------- the module's double-length helpers


def test_poisson_with_targets_beyond_the_split_range_is_finite():
    # y_true * log(y_pred) with y_true > 2**996: TwoProduct's split overflows; the rounded product
    # alone is kept (it used to give NaN)
    for t, p in ((1e305, 2.0), (1.5e308, 0.5)):
        exact = mpmath.mpf(p) - mpmath.mpf(t) * mpmath.log(mpmath.mpf(p))
        assert ulps(float(losskit.poisson([[t]], [[p]])[0]), exact) <= 2
        exact_nll = mpmath.exp(mpmath.mpf(p)) - mpmath.mpf(t) * mpmath.mpf(p)
        assert ulps(float(losskit.poisson_nll([[t]], [[p]])[0]), exact_nll) <= 2


def test_taylor_helpers_against_mpmath():
    import array_api_compat

    from losskit.losses.regression import _expm1_minus_x, _xexp_minus_expm1

    x = np.concatenate([np.linspace(-3, 3, 121), [1e-8, -1e-8, 0.999999, 1.000001]])
    xp = array_api_compat.array_namespace(x)
    e1, f = _expm1_minus_x(xp, x), _xexp_minus_expm1(xp, x)
    for v, a, b in zip(x, e1, f, strict=True):
        m = mpmath.mpf(float(v))
        if v == 0:
            continue
        assert ulps(a, mpmath.expm1(m) - m) <= 4
        assert ulps(b, m * mpmath.exp(m) - mpmath.expm1(m)) <= 4


# ------------------------------------------------ issue 9: overflowing means, limits, cosine

BIG = np.finfo(np.float64).max


def _mp_mean(terms: list[mpmath.mpf]) -> mpmath.mpf:
    return mpmath.fsum(terms) / len(terms)


@pytest.mark.parametrize("name", ["mean_absolute_error", "huber", "smooth_l1", "log_cosh", "pinball",
                                  "mean_squared_error"])
def test_mean_of_huge_terms_is_finite_where_the_exact_mean_is(name):
    # errors near max/2 (MAE, Huber, smooth L1, log-cosh, pinball: terms ~ |d|) or sqrt(max)/3
    # (MSE: terms ~ d^2): the plain sum of 4 terms overflows, the mean does not
    big = BIG / 4 if name != "mean_squared_error" else math.sqrt(BIG) / 3
    t = np.array([[-big, 0.0, -big / 3, big]])
    p = np.array([[big, big * 1.5, big, -big * 0.9]])
    d = [mpmath.mpf(float(a)) - mpmath.mpf(float(b)) for a, b in zip(p[0], t[0], strict=True)]
    term = {
        "mean_absolute_error": abs, "huber": lambda x: abs(x) - mpmath.mpf(1) / 2,
        "smooth_l1": lambda x: abs(x) - mpmath.mpf(1) / 2, "log_cosh": lambda x: abs(x) - mpmath.log(2),
        "pinball": lambda x: abs(x) / 2, "mean_squared_error": lambda x: x * x}[name]
    exact = _mp_mean([term(x) for x in d])
    value = losskit.get(name).call(t, p)
    assert np.isfinite(value).all()
    assert ulps(value[0], exact) <= 4
    # errors of 1.8 max (the differences themselves overflow): the mean is 1.8 max (inf), and for
    # the pinball loss 0.9 max
    value = losskit.get(name).call(np.full((1, 4), -0.9 * BIG), np.full((1, 4), 0.9 * BIG))[0]
    if name == "pinball":
        assert ulps(value, mpmath.mpf(0.9 * BIG)) <= 2
    else:
        assert value == math.inf


def test_poisson_mean_of_huge_rates_is_finite():
    p = np.full((1, 4), BIG * 0.75)
    t = np.zeros((1, 4))
    assert float(losskit.poisson(t, p)[0]) == BIG * 0.75
    # and y_true = y_pred = max: y_pred - y_true log y_pred = max (1 - log max) overflows to -inf
    # (it was NaN: max + max overflowed to inf before -inf was added)
    value, grad = losskit.Poisson().value_and_gradient([[1.0, BIG]], [[BIG, BIG]])
    assert value == -math.inf
    assert np.isfinite(grad).all()


def test_poisson_nll_with_an_overflowing_rate_and_product_is_signed_inf():
    # log_input: exp(x) - t x with both beyond max: +inf where x > log t + log x, else -inf
    for t, x, sign in ((BIG, BIG, 1.0), (BIG, 800.0, 1.0), (BIG, 710.0, -1.0)):
        exact_sign = 1.0 if mpmath.mpf(x) > mpmath.log(t) + mpmath.log(x) else -1.0
        assert exact_sign == sign
        value, grad = losskit.PoissonNLL().value_and_gradient([[t]], [[x]])
        assert value == sign * math.inf, (t, x)
        assert grad[0, 0] == math.inf


def test_gaussian_nll_with_infinite_var_is_inf_not_nan():
    # log(inf)/2 + d^2/inf = inf; the gradient d/(v n) = 0 (it was NaN: var * 0 + eps)
    value, grad = losskit.GaussianNLL().value_and_gradient([[1.0, 2.0]], [[0.0, 2.0]],
                                                          var=[[math.inf, 1.0]])
    assert value == math.inf
    assert np.array_equal(grad, [[0.0, 0.0]])


def test_gaussian_nll_near_zero_value_keeps_its_digits():
    # log v + d^2/v = 0 up to the rounding of the inputs: the value is tiny, and exact (mpmath)
    v = 0.01
    d = math.sqrt(-v * math.log(v))
    exact = (mpmath.log(mpmath.mpf(v)) + mpmath.mpf(d) ** 2 / mpmath.mpf(v)) / 2
    got = losskit.gaussian_nll([[0.0]], [[d]], var=[[v]])[0]
    assert abs(exact) < 1e-15
    assert ulps(got, exact) <= 4


def test_cosine_identical_rows_near_the_largest_double():
    row = np.array([[BIG, BIG / 2, -BIG / 3]])
    value, grad = losskit.CosineSimilarity(reduction="none").value_and_gradient(row, row)
    assert value[0] == -1.0  # it was 0: floor(log2(max)) rounds to 1024 and 2**1024 overflows
    assert np.all(np.abs(grad) < 1e-300)  # the gradient at the minimum is 0 (up to rounding)


def test_cosine_nan_sample_has_nan_gradient():
    value, grad = losskit.CosineSimilarity(reduction="none").value_and_gradient(
        [[1.0, np.nan], [1.0, 0.0]], [[1.0, 2.0], [1.0, 1.0]])
    assert np.isnan(value[0])
    assert np.isnan(grad[0]).all()  # PyTorch's autograd gives NaN too
    assert np.isfinite(grad[1]).all()
