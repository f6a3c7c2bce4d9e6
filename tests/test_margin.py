"""Margin losses beyond the oracle suite: label validation, weights, and the documented kink and tie
conventions compared with PyTorch's and JAX's autograd."""

from __future__ import annotations

import numpy as np
import pytest

import losskit


@pytest.mark.parametrize("name", ["soft_margin", "perceptron"])
def test_sign_labels_are_checked(name: str) -> None:
    fn = getattr(losskit, name)
    with pytest.raises(ValueError, match=rf"{name}: y_true must hold labels -1 and 1;"):
        fn([[0.0, 1.0]], [[0.5, 0.5]])  # 0/1 labels are Keras's convention, not PyTorch's/Optax's


def test_squared_hinge_maps_binary_labels_and_rejects_others() -> None:
    np.testing.assert_array_equal(losskit.squared_hinge([[0.0, 1.0]], [[0.5, 0.5]]),
                                  losskit.squared_hinge([[-1.0, 1.0]], [[0.5, 0.5]]))
    with pytest.raises(ValueError, match="squared_hinge: y_true must hold labels -1 and 1"):
        losskit.squared_hinge([[2.0, 1.0]], [[0.5, 0.5]])


@pytest.mark.parametrize("name", ["multiclass_hinge", "multi_margin", "multiclass_perceptron"])
def test_class_labels_are_checked(name: str) -> None:
    fn = getattr(losskit, name)
    with pytest.raises(ValueError, match=rf"{name}: class indices must lie in \[0, 2\]"):
        fn([3], [[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match=rf"{name}: y_true must hold integer class indices"):
        fn([0.5], [[0.1, 0.2, 0.3]])


def test_multilabel_margin_targets_are_checked() -> None:
    with pytest.raises(ValueError, match=r"multilabel_margin: y_true must hold class indices in \[0, 2\]"):
        losskit.multilabel_margin([[3, -1, -1]], [[0.1, 0.2, 0.3]])


@pytest.mark.parametrize("name", ["multi_margin", "multilabel_soft_margin"])
def test_weight_needs_one_entry_per_class(name: str) -> None:
    y = [0] if name == "multi_margin" else [[1.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match=rf"{name}: weight has 2 entries; y_pred has 3 classes"):
        getattr(losskit, name)(y, [[0.1, 0.2, 0.3]], weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="weight must hold finite non-negative numbers"):
        getattr(losskit, name)(y, [[0.1, 0.2, 0.3]], weight=[1.0, -2.0, 1.0])


def test_multi_margin_p_must_be_1_or_2() -> None:
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        losskit.MultiMargin(p=3)


def test_multi_margin_matches_torch_weighted_mean(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, size=6)
    w = (0.5, 2.0, 1.0, 3.0)
    ref = torch.nn.MultiMarginLoss(p=2, margin=0.7, weight=torch.tensor(w, dtype=torch.float64))
    xt = torch.from_numpy(x).requires_grad_(True)
    expected = ref(xt, torch.from_numpy(y))
    expected.backward()
    value, grad = losskit.MultiMargin(p=2, margin=0.7, weight=w).value_and_gradient(y, x)
    np.testing.assert_allclose(value, expected.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-13)


def test_multi_margin_kink_takes_half_the_slope_where_torch_takes_none() -> None:
    """x_j - x_y = -margin exactly: the one-sided slopes are 0 and 1/n; losskit gives their
    average, PyTorch's hand-written backward (``z > 0``) gives 0."""
    torch = pytest.importorskip("torch")
    x = np.array([[1.0, 0.0, -5.0]])  # label 0: margin 1 - 1 + 0 = 0 for class 1
    g = losskit.MultiMargin(reduction="sum").gradient([0], x)
    np.testing.assert_array_equal(g, [[-1 / 6, 1 / 6, 0.0]])
    xt = torch.from_numpy(x).requires_grad_(True)
    torch.nn.functional.multi_margin_loss(xt, torch.tensor([0]), reduction="sum").backward()
    np.testing.assert_array_equal(xt.grad.numpy(), [[0.0, 0.0, 0.0]])


def test_hinge_kinks_match_autograd_of_maximum() -> None:
    """At t f = 1 (hinge), f = 0 (perceptron) autograd of torch.maximum / jnp.maximum gives the
    average of the one-sided slopes, which is losskit's convention."""
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    t = np.array([[1.0, -1.0, 1.0]])
    f = np.array([[1.0, -1.0, 0.0]])
    ft = torch.from_numpy(f).requires_grad_(True)
    torch.maximum(1 - torch.from_numpy(t) * ft, torch.zeros(1, dtype=torch.float64)).mean().backward()
    np.testing.assert_array_equal(losskit.Hinge(reduction="sum").gradient(t, f), ft.grad.numpy())
    jg = jax.grad(lambda v: jnp.maximum(0.0, -jnp.asarray(t) * v).mean())(jnp.asarray(f))
    np.testing.assert_allclose(losskit.Perceptron(reduction="sum").gradient(t, f), np.asarray(jg),
                               rtol=1e-7)  # JAX computes in float32 here
    np.testing.assert_array_equal(losskit.Perceptron(reduction="sum").gradient(t, f),
                                  [[0.0, 0.0, -1 / 6]])


def test_two_way_ties_match_jax_max_and_three_way_ties_differ() -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    def optax_like(s, y):  # Optax's multiclass_perceptron_loss
        return jnp.max(s, axis=-1) - s[jnp.arange(s.shape[0]), y]

    two = np.array([[2.0, 2.0, 0.0]])
    jg = np.asarray(jax.grad(lambda s: optax_like(s, jnp.array([2])).sum())(jnp.asarray(two)))
    g = losskit.MulticlassPerceptron(reduction="sum").gradient([2], two)
    np.testing.assert_allclose(g, jg, rtol=0, atol=0)  # [1/2, 1/2, -1]
    three = np.array([[2.0, 2.0, 2.0, 0.0]])
    g = losskit.MulticlassPerceptron(reduction="sum").gradient([3], three)
    np.testing.assert_array_equal(g, [[0.5, 0.5, 0.5, -1.0]])  # each entry's one-sided average
    jg = np.asarray(jax.grad(lambda s: optax_like(s, jnp.array([3])).sum())(jnp.asarray(three)))
    np.testing.assert_allclose(jg, [[1 / 3, 1 / 3, 1 / 3, -1.0]])  # JAX splits evenly


def test_multilabel_margin_duplicates_count_twice_like_torch() -> None:
    torch = pytest.importorskip("torch")
    x = np.array([[0.3, -0.2, 0.9, 0.1]])
    y = np.array([[2, 2, 0, -1]])
    expected = torch.nn.functional.multilabel_margin_loss(torch.from_numpy(x), torch.from_numpy(y),
                                                          reduction="none")
    np.testing.assert_allclose(losskit.multilabel_margin(y, x), expected.numpy(), rtol=1e-14)


def test_categorical_hinge_keeps_a_cancelling_margin() -> None:
    """1 + max_other - f_y within an ulp of the margin keeps its digits."""
    f_y = np.nextafter(np.float32(1.25), np.float32(2))  # 1 + 0.25 + 1 ulp
    x = np.array([[0.25, f_y, -1.0]], dtype=np.float32)
    t = np.array([[0.0, 1.0, 0.0]], dtype=np.float32)
    assert float(losskit.categorical_hinge(t, x)[0]) == 0.0  # inside: exactly 0 (beyond the margin)
    x[0, 1] = np.nextafter(np.float32(1.25), np.float32(0))  # 1 ulp short of the margin
    expected = 1.25 - float(x[0, 1])
    assert float(losskit.categorical_hinge(t, x)[0]) == pytest.approx(expected, rel=1e-7)


def test_multilabel_margin_cost_follows_the_target_lists_not_k_squared() -> None:
    # issue 9 item 9: K = 4000 needed 935 MB (a (K, K) margin table per row); now O(t K) per row,
    # t the longest target list. K = 200,000 with 3 targets would have needed 2 * 200,000^2 doubles.
    k = 200_000
    x = np.zeros((2, k))
    x[:, 1], x[:, 5] = 2.0, 0.5
    y = -np.ones((2, k), dtype=np.int64)
    y[:, :2] = [1, 5]
    value, grad = losskit.MultiLabelMargin(reduction="none").value_and_gradient(y, x)
    # by hand: target 1 (score 2) is past the margin of every 0 score; target 5 (score 0.5) gives
    # max(0, 1 - 0.5 + 0) = 0.5 against each of the K - 2 non-targets
    np.testing.assert_allclose(value, [(k - 2) * 0.5 / k] * 2, rtol=1e-15)
    assert grad[0, 5] == -(k - 2) / k
    assert grad[0, 1] == 0.0
    assert grad[0, 0] == 1 / k


def test_multilabel_margin_matches_torch_on_ragged_lists(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(5, 7))
    y = -np.ones((5, 7), dtype=np.int64)
    for row, m in enumerate([0, 1, 3, 7, 2]):
        y[row, :m] = rng.choice(7, size=m, replace=True)
    xt = torch.from_numpy(x).requires_grad_(True)
    expected = torch.nn.functional.multilabel_margin_loss(xt, torch.from_numpy(y), reduction="sum")
    expected.backward()
    value, grad = losskit.MultiLabelMargin(reduction="sum").value_and_gradient(y, x)
    np.testing.assert_allclose(value, expected.item(), rtol=1e-14)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-14, atol=1e-16)
