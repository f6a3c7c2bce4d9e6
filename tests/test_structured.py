"""Sparsemax, Fenchel-Young and ranking softmax (issue 12): invariants, limits, option semantics and
bad inputs. Exactness against mpmath and parity with Optax are in the catalog suite
(``tests/oracle/families/structured.py``)."""

from __future__ import annotations

import numpy as np
import pytest

import losskit
from losskit.losses.structured import sparsemax_parts


def _projection(z: np.ndarray) -> np.ndarray:
    support, u, v, _ = sparsemax_parts(np, z, False)
    return np.where(support, u + v, 0.0)


def test_projection_is_the_closest_point_of_the_simplex(rng: np.random.Generator) -> None:
    z = rng.normal(0, 2, (20, 7))
    p = _projection(z)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=0, atol=4e-16)
    assert (p >= 0).all()
    # KKT: z - p = tau on the support and z <= tau off it (tau from the first support entry)
    for zr, pr in zip(z, p, strict=True):
        tau = (zr - pr)[pr > 0]
        np.testing.assert_allclose(tau, tau[0], atol=1e-14)
        assert (zr[pr == 0] <= tau[0] + 1e-14).all()


def test_a_point_of_the_simplex_projects_to_itself(rng: np.random.Generator) -> None:
    y = rng.dirichlet(np.ones(5), 10)
    y[:, 0] = 0.0
    y /= y.sum(-1, keepdims=True)
    np.testing.assert_allclose(_projection(y), y, atol=1e-16)
    np.testing.assert_allclose(losskit.fenchel_young(y, y), 0.0, atol=1e-30)


def test_fenchel_young_is_shift_invariant(rng: np.random.Generator) -> None:
    y = rng.dirichlet(np.ones(6), 8)
    z = rng.normal(0, 1, (8, 6))
    for reg in ("sparsemax", "softmax"):
        loss = losskit.FenchelYoung(regularizer=reg, reduction="none")
        v, g = loss.value_and_gradient(y, z)
        v2, g2 = loss.value_and_gradient(y, z + 37.0)
        np.testing.assert_allclose(v2, v, rtol=1e-12)
        np.testing.assert_allclose(g2, g, atol=1e-13)


def test_one_hot_targets_give_the_classification_losses(rng: np.random.Generator) -> None:
    labels = rng.integers(0, 5, 9)
    onehot = np.eye(5)[labels]
    z = rng.normal(0, 2, (9, 5))
    np.testing.assert_allclose(losskit.fenchel_young(onehot, z),
                               losskit.multiclass_sparsemax(labels, z), rtol=1e-14)
    np.testing.assert_allclose(losskit.fenchel_young(onehot, z, regularizer="softmax"),
                               losskit.categorical_crossentropy(onehot, z, from_logits=True),
                               rtol=1e-14)


def test_nearly_right_row_keeps_its_tiny_loss() -> None:
    # z = [1.5 - d, 0.5]: tau = (2 - d - 1)/2, p = (1 - d/2, d/2), loss = 1/2 ||p - e_0||^2 = d^2/4,
    # by hand; the textbook form sum p_j (z_j - z_0) + (1 - ||p||^2)/2 loses it to cancellation
    d = 2.0**-30
    z = np.array([[1.5 - d, 0.5]])
    got = losskit.multiclass_sparsemax([0], z)
    np.testing.assert_allclose(got[0], d * d / 4, rtol=1e-15)
    p = np.array([1 - d / 2, d / 2])
    textbook = (p * (z[0] - z[0, 0])).sum() + 0.5 * (1 - (p * p).sum())
    assert abs(textbook - d * d / 4) > 0.01 * d * d / 4
    grad = losskit.MulticlassSparsemax(reduction="none").gradient([0], z)
    np.testing.assert_allclose(grad, [[-d / 2, d / 2]], rtol=1e-15)


def test_an_infinite_score_takes_the_mass() -> None:
    z = np.array([[np.inf, 0.0, 1.0], [np.inf, 0.0, 1.0]])
    loss = losskit.MulticlassSparsemax(reduction="none")
    value, grad = loss.value_and_gradient([0, 2], z)
    assert value[0] == 0.0
    assert value[1] == np.inf
    np.testing.assert_array_equal(grad, [[0.0, 0.0, 0.0], [1.0, 0.0, -1.0]])


def test_binary_sparsemax_needs_binary_labels() -> None:
    with pytest.raises(ValueError, match="sparsemax: y_true must hold binary labels 0 or 1"):
        losskit.sparsemax([[0.5, 1.0]], [[0.0, 1.0]])
    # zero once past +-1 on the right side; (x + 1)^2 / 4 inside
    np.testing.assert_array_equal(losskit.sparsemax([[1.0, 0.0]], [[1.0, -1.0]]), [0.0])
    np.testing.assert_allclose(losskit.sparsemax([[0.0]], [[0.5]]), [1.5**2 / 4])


def test_bad_options_and_labels() -> None:
    with pytest.raises(ValueError, match="regularizer must be 'sparsemax' or 'softmax'; found 'entmax'"):
        losskit.FenchelYoung(regularizer="entmax")
    with pytest.raises(ValueError, match=r"multiclass_sparsemax: class indices must lie in \[0, 2\]"):
        losskit.multiclass_sparsemax([3], [[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=r"ranking_softmax: y_true must lie in \[0, inf\)"):
        losskit.ranking_softmax([[-1.0, 2.0]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"ranking_softmax: weights must lie in \[0, inf\)"):
        losskit.ranking_softmax([[1.0, 2.0]], [[0.0, 1.0]], weights=[[1.0, -1.0]])
    with pytest.raises(TypeError, match="where must be a boolean mask"):
        losskit.ranking_softmax([[1.0, 2.0]], [[0.0, 1.0]], where=[[0.5, 1.0]])


def test_ranking_where_and_optax_mean(rng: np.random.Generator) -> None:
    labels = rng.integers(0, 4, (5, 6)).astype(float)
    x = rng.normal(0, 1, (5, 6))
    where = rng.random((5, 6)) < 0.6
    where[0] = False
    loss = losskit.RankingSoftmax(reduction="none")
    value, grad = loss.value_and_gradient(labels, x, where=where)
    assert value[0] == 0.0
    np.testing.assert_array_equal(grad[~where], 0.0)
    # by hand for the kept items: -sum t log softmax_W(x)
    for r in range(1, 5):
        k = where[r]
        if not k.any():
            continue
        log_q = x[r, k] - np.log(np.exp(x[r, k]).sum())
        np.testing.assert_allclose(value[r], -(labels[r, k] * log_q).sum(), rtol=1e-13)
    # Optax's default mean over the lists that keep an item, through sample weights
    keeps = where.any(-1).astype(float)
    mean = losskit.RankingSoftmax(reduction="mean_with_sample_weight")(labels, x, sample_weight=keeps,
                                                                       where=where)
    np.testing.assert_allclose(mean, value[keeps > 0].mean(), rtol=1e-13)


def test_float32_sparsemax_rows_with_a_score_at_the_threshold_take_the_double_length_path() -> None:
    """float32 input runs the projection in plain float64 and flags the rows it cannot vouch for:
    here z_2 = tau exactly (z = [2, 1, -1]: support {0}, tau = 1), where the support is ambiguous
    to rounding. By hand: p = [1, 0, 0]; with y = [1/4, 1/2, 1/4] the loss is
    1/2 (3/4)^2 + 1/2 (1/2)^2 + 1/2 (1/4)^2 + 1/2 (tau - 1) + 1/4 (tau + 1) = 0.9375 and the
    gradient p - y = [3/4, -1/2, -1/4]."""
    from losskit.losses import structured

    z = np.array([[2.0, 1.0, -1.0], [0.3, -0.2, 0.1]], dtype=np.float32)
    y = np.array([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]], dtype=np.float32)
    _, _, redo = structured._sparsemax_fy_plain(y.astype(np.float64), z.astype(np.float64), True,
                                                True)
    assert redo.tolist() == [True, False]
    value, grad = losskit.FenchelYoung(reduction="none").value_and_gradient(y, z)
    assert float(value[0]) == 0.9375
    assert grad[0].tolist() == [0.75, -0.5, -0.25]
