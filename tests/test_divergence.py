"""Divergences beyond the oracle suite: PyTorch's ``batchmean`` reduction, infinite log-probabilities,
zero predictions under positive targets, and the relations between the KL variants."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import losskit


def _dist(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    w = rng.uniform(0.01, 1.0, size=shape)
    return w / w.sum(-1, keepdims=True)


@pytest.mark.parametrize("log_target", [False, True])
def test_batchmean_matches_torch_kldivloss(log_target: bool, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    t, q = _dist(rng, (6, 5)), _dist(rng, (6, 5))
    x = np.log(q)
    y = np.log(t) if log_target else t
    ref = torch.nn.KLDivLoss(reduction="batchmean", log_target=log_target)
    xt = torch.from_numpy(x).requires_grad_(True)
    expected = ref(xt, torch.from_numpy(y))
    expected.backward()
    loss = losskit.KLDiv(reduction="batchmean", log_target=log_target)
    value, grad = loss.value_and_gradient(y, x)
    np.testing.assert_allclose(value, expected.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-13)
    # and on torch tensors, through autograd
    xt2 = torch.from_numpy(x).requires_grad_(True)
    out = loss(torch.from_numpy(y), xt2)
    out.backward()
    np.testing.assert_allclose(out.item(), expected.item(), rtol=1e-13)
    np.testing.assert_allclose(xt2.grad.numpy(), xt.grad.numpy(), rtol=1e-13)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
def test_torch_mean_is_not_the_kl_divergence(rng: np.random.Generator) -> None:
    """PyTorch's reduction='mean' divides by batch * classes: the divergence divided by n."""
    torch = pytest.importorskip("torch")
    t, q = _dist(rng, (4, 5)), _dist(rng, (4, 5))
    mean = torch.nn.KLDivLoss(reduction="mean")(torch.from_numpy(np.log(q)), torch.from_numpy(t))
    kl = losskit.KLDiv(reduction="batchmean")(t, np.log(q))
    np.testing.assert_allclose(float(mean) * 5, float(kl), rtol=1e-13)
    # the default reduction (sum over batch size) of a 2-D batch is torch's batchmean
    np.testing.assert_allclose(losskit.KLDiv()(t, np.log(q)), kl, rtol=1e-15)


def test_batchmean_divides_by_the_first_axis_only(rng: np.random.Generator) -> None:
    t, q = _dist(rng, (3, 4, 5)), _dist(rng, (3, 4, 5))
    per_sample = losskit.kl_div(t, np.log(q))
    value = losskit.KLDiv(reduction="batchmean")(t, np.log(q))
    np.testing.assert_allclose(value, per_sample.sum() / 3, rtol=1e-14)


def test_kl_div_equals_kl_divergence_of_probabilities(rng: np.random.Generator) -> None:
    t = _dist(rng, (5, 4))
    q = _dist(rng, (5, 4))
    np.testing.assert_allclose(losskit.kl_div(t, np.log(q)), losskit.kl_divergence(t, q), rtol=1e-13)
    np.testing.assert_allclose(losskit.kl_div(np.log(t), np.log(q), log_target=True),
                               losskit.kl_divergence(t, q), rtol=1e-13)
    # generalized KL of two distributions is KL
    np.testing.assert_allclose(losskit.generalized_kl_divergence(t, q), losskit.kl_divergence(t, q),
                               rtol=1e-12)


def test_kl_div_infinite_log_probabilities() -> None:
    """A zero target next to x = -inf contributes 0 (PyTorch: NaN); x = -inf under a positive
    target gives inf."""
    x = np.array([[-math.inf, math.log(0.5), math.log(0.5)]])
    # exactly the value without the zero target: log 0.5 - fl(log 0.5), the rounding of log 0.5
    value = float(losskit.kl_div([[0.0, 0.5, 0.5]], x)[0])
    assert value == float(losskit.kl_div([[0.5, 0.5]], x[:, 1:])[0])
    assert value == pytest.approx(float(mpmath.log(0.5) - mpmath.mpf(math.log(0.5))), rel=1e-15)
    g = losskit.KLDiv(reduction="none").gradient([[0.0, 0.5, 0.5]], x)
    np.testing.assert_array_equal(g, [[0.0, -0.5, -0.5]])
    assert float(losskit.kl_div([[0.5, 0.5, 0.0]], x)[0]) == math.inf
    y = np.array([[-math.inf, math.log(0.5), math.log(0.5)]])
    assert float(losskit.kl_div(y, x, log_target=True)[0]) == 0.0


def test_kl_div_rejects_positive_log_probabilities() -> None:
    with pytest.raises(ValueError, match=r"kl_div: y_pred must lie in \[-inf, 0\]"):
        losskit.kl_div([[0.5, 0.5]], [[0.1, -1.0]])
    with pytest.raises(ValueError, match=r"kl_div: y_true must lie in \[0, 1\]"):
        losskit.kl_div([[1.5, -0.5]], [[-1.0, -1.0]])


def test_jensen_shannon_is_symmetric_and_bounded(rng: np.random.Generator) -> None:
    t, p = _dist(rng, (6, 5)), _dist(rng, (6, 5))
    a = losskit.jensen_shannon_divergence(t, p)
    np.testing.assert_allclose(a, losskit.jensen_shannon_divergence(p, t), rtol=1e-14)
    assert np.all((a >= 0) & (a <= math.log(2)))
    disjoint = losskit.jensen_shannon_divergence([[0.5, 0.5, 0.0, 0.0]], [[0.0, 0.0, 0.25, 0.75]])
    assert float(disjoint[0]) == pytest.approx(math.log(2), rel=1e-15)
    # -inf gradient where the prediction is 0 under a positive target; (log 2)/2 where both are 0
    g = losskit.JensenShannonDivergence(reduction="none").gradient([[1.0, 0.0]], [[0.0, 0.0]])
    assert g[0, 0] == -math.inf
    assert g[0, 1] == pytest.approx(math.log(2) / 2, rel=1e-15)


def test_generalized_kl_on_log_predictions(rng: np.random.Generator) -> None:
    t = rng.uniform(0, 3, size=(5, 4))
    t[0, 0] = 0.0
    p = rng.uniform(0.01, 3, size=(5, 4))
    np.testing.assert_allclose(losskit.generalized_kl_divergence(t, np.log(p), log_predictions=True),
                               losskit.generalized_kl_divergence(t, p), rtol=1e-13)
    g = losskit.GeneralizedKLDivergence(reduction="none", log_predictions=True).gradient(t, np.log(p))
    np.testing.assert_allclose(g, p - t, rtol=1e-13)  # d/dx with x = log p
    assert float(losskit.generalized_kl_divergence([[1.0]], [[-np.inf]], log_predictions=True)[0]) \
        == np.inf


def test_generalized_kl_zero_prediction() -> None:
    assert float(losskit.generalized_kl_divergence([[1.0, 0.0]], [[0.0, 2.0]])[0]) == math.inf
    g = losskit.GeneralizedKLDivergence(reduction="none").gradient([[1.0, 0.0]], [[0.0, 2.0]])
    assert g[0, 0] == -math.inf
    assert g[0, 1] == 1.0
