"""Dice and Tversky (issue 12): the peers' conventions, option semantics and bad inputs.

The exactness of values and gradients is checked by the catalog suite (``tests/oracle/families/
segmentation.py``). Here MONAI's and segmentation-models' formulas, which are not installed, are
written from their documentation in NumPy and compared with the options that select them; Keras's
reduction over all axes and its swapped ``alpha``/``beta`` are checked against Keras itself.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit


def _masks(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    return (rng.random(shape) < 0.4).astype(np.float64), rng.uniform(0, 1, shape)


# ---------------------------------------------------------------------------- MONAI, from its docs


def _monai_dice(t: np.ndarray, p: np.ndarray, smooth_nr: float = 1e-5, smooth_dr: float = 1e-5,
                squared_pred: bool = False, jaccard: bool = False) -> np.ndarray:
    """monai.losses.DiceLoss(reduction="none") on (B, C, N): the documented
    ``1 - (2 I + smooth_nr) / (denominator + smooth_dr)``, ``denominator = sum g + sum p`` (squares
    with ``squared_pred``), ``2 (denominator - I)`` with ``jaccard``."""
    inter = (t * p).sum(-1)
    power = 2 if squared_pred else 1
    den = (t**power).sum(-1) + (p**power).sum(-1)
    if jaccard:
        den = 2.0 * (den - inter)
    return 1.0 - (2.0 * inter + smooth_nr) / (den + smooth_dr)


def _monai_tversky(t: np.ndarray, p: np.ndarray, alpha: float, beta: float,
                   smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> np.ndarray:
    """monai.losses.TverskyLoss: ``1 - (tp + smooth_nr) / (tp + alpha fp + beta fn + smooth_dr)``,
    ``fp = sum p (1 - g)``, ``fn = sum (1 - p) g``."""
    tp, fp, fn = (p * t).sum(-1), (p * (1 - t)).sum(-1), ((1 - p) * t).sum(-1)
    return 1.0 - (tp + smooth_nr) / (tp + alpha * fp + beta * fn + smooth_dr)


def _smp_dice(t: np.ndarray, p: np.ndarray, smooth: float, eps: float = 1e-7) -> np.ndarray:
    """segmentation_models_pytorch DiceLoss: ``1 - (2 I + smooth) / (card + smooth).clamp_min(eps)``."""
    return 1.0 - (2.0 * (t * p).sum(-1) + smooth) / np.maximum(t.sum(-1) + p.sum(-1) + smooth, eps)


@pytest.mark.parametrize("squared_pred", [False, True])
@pytest.mark.parametrize("jaccard", [False, True])
def test_monai_dice_options(squared_pred: bool, jaccard: bool, rng: np.random.Generator) -> None:
    t, p = _masks(rng, (2, 3, 50))  # (B, C, N): one value per image and class
    got = losskit.dice(t, p, smooth="monai", squared_pred=squared_pred, jaccard=jaccard)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, _monai_dice(t, p, squared_pred=squared_pred, jaccard=jaccard),
                               rtol=1e-13)
    # a pair gives MONAI's distinct smooth_nr and smooth_dr; logits through the sigmoid
    x = rng.normal(0, 2, t.shape)
    got = losskit.dice(t, x, smooth=(0.5, 2.0), from_logits=True, squared_pred=squared_pred,
                       jaccard=jaccard)
    want = _monai_dice(t, 1 / (1 + np.exp(-x)), 0.5, 2.0, squared_pred, jaccard)
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_monai_tversky_and_smp_dice(rng: np.random.Generator) -> None:
    t, p = _masks(rng, (4, 40))
    np.testing.assert_allclose(losskit.tversky(t, p, alpha=0.3, beta=0.7, smooth="monai"),
                               _monai_tversky(t, p, 0.3, 0.7), rtol=1e-13)
    np.testing.assert_allclose(losskit.dice(t, p, smooth=1.0), _smp_dice(t, p, 1.0), rtol=1e-13)


def test_mean_over_images_and_classes_is_monai_default(rng: np.random.Generator) -> None:
    t, p = _masks(rng, (2, 3, 20))
    np.testing.assert_allclose(losskit.Dice(smooth="monai")(t, p), _monai_dice(t, p).mean(),
                               rtol=1e-13)


# ---------------------------------------------------------------------------- Keras and Optax


def test_keras_axis_none_is_a_flattened_batch(rng: np.random.Generator) -> None:
    keras = pytest.importorskip("keras")
    t, p = _masks(rng, (2, 4, 4, 1))
    want = float(keras.losses.dice(t.astype(np.float32), p.astype(np.float32)))  # one scalar
    got = losskit.dice(t.reshape(1, -1).astype(np.float32), p.reshape(1, -1).astype(np.float32))
    np.testing.assert_allclose(got[0], want, rtol=1e-6)


def test_keras_swaps_alpha_and_beta(rng: np.random.Generator) -> None:
    keras = pytest.importorskip("keras")
    t, p = _masks(rng, (3, 30))
    want = np.asarray(keras.losses.tversky(t.astype(np.float32), p.astype(np.float32), alpha=0.2,
                                           beta=0.8, axis=-1))
    np.testing.assert_allclose(losskit.tversky(t.astype(np.float32), p.astype(np.float32),
                                               alpha=0.8, beta=0.2), want, rtol=1e-5)


def test_optax_smooth_is_one_in_the_tversky_form(rng: np.random.Generator) -> None:
    # Optax: 1 - (I + 1)/(I + a (P - I) + b (T - I) + 1), written here from its docstring
    t, p = _masks(rng, (3, 30))
    inter, big_p, big_t = (t * p).sum(-1), p.sum(-1), t.sum(-1)
    want = 1 - (inter + 1) / (inter + 0.7 * (big_p - inter) + 0.3 * (big_t - inter) + 1)
    np.testing.assert_allclose(losskit.tversky(t, p, alpha=0.7, beta=0.3, smooth="optax"), want,
                               rtol=1e-13)
    want = 1 - (inter + 1) / (inter + 0.5 * (big_p - inter) + 0.5 * (big_t - inter) + 1)
    np.testing.assert_allclose(losskit.dice(t, p, smooth="optax"), want, rtol=1e-13)


# ---------------------------------------------------------------------------- conventions


def test_dice_is_tversky_with_one_half(rng: np.random.Generator) -> None:
    t, p = _masks(rng, (3, 25))
    # Dice's (2I + s)/(P + T + s) is Tversky's (I + s/2)/(I + FP/2 + FN/2 + s/2)
    np.testing.assert_allclose(losskit.dice(t, p, smooth=(0.2, 0.6)),
                               losskit.tversky(t, p, smooth=(0.1, 0.3)), rtol=1e-14)
    np.testing.assert_allclose(losskit.dice(t, p, smooth=(0.2, 0.6), jaccard=True),
                               losskit.tversky(t, p, alpha=1.0, beta=1.0, smooth=(0.1, 0.3)),
                               rtol=1e-14)


def test_empty_masks_under_each_convention() -> None:
    t = np.zeros((1, 5))
    p = np.zeros((1, 5))
    assert float(losskit.dice(t, p)[0]) == 1.0  # Keras: 1 - 0 / 1e-7
    assert float(losskit.dice(t, p, smooth="monai")[0]) == 0.0
    assert float(losskit.dice(t, p, smooth="optax")[0]) == 0.0
    value, grad = losskit.Dice(smooth=0.0, reduction="none").value_and_gradient(t, p)
    assert float(value[0]) == 0.0  # 0/0: the limit of a perfect prediction, not NaN
    np.testing.assert_array_equal(grad, 0.0)


def test_near_perfect_keeps_its_small_loss() -> None:
    # p = 1 - e (e = 2**-24) on a 4-pixel mask, no smoothing: by hand the loss is
    # (P + T - 2I) / (P + T) = 4e / (8 - 4e), which 1 - ratio in float32 gets wrong by 100%
    t = np.ones((1, 4), np.float32)
    p = np.full((1, 4), 1 - 2.0**-24, np.float32)
    e = 2.0**-24
    want = (4 * e) / (8 - 4 * e)
    got = losskit.dice(t, p, smooth=0.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[0], want, rtol=2e-7)
    textbook = 1 - (2 * (t * p).sum()) / (t.sum() + p.sum())
    assert abs(float(textbook) - want) > 0.5 * want  # the textbook formula in float32 loses it


def test_squared_pred_needs_no_extra_option(rng: np.random.Generator) -> None:
    t, p = _masks(rng, (2, 10))
    one = losskit.Dice(squared_pred=True, reduction="none")
    np.testing.assert_allclose(one(t, p), _monai_dice(t, p, 0.0, 1e-7, squared_pred=True),
                               rtol=1e-13)


# ---------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(("smooth", "error", "match"), [
    ("bogus", ValueError, "smooth must be one of 'keras', 'optax', 'monai'"),
    ((1.0,), ValueError, r"pair \(smooth_nr, smooth_dr\); found 1 entries"),
    (-1.0, ValueError, "smooth must be >= 0"),
    ((1.0, -2.0), ValueError, r"smooth\[1\] \(smooth_dr\) must be >= 0"),
    (None, TypeError, "smooth must be 'keras'"),
])
def test_bad_smooth(smooth: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        losskit.Dice(smooth=smooth)


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match=r"dice: y_pred must lie in \[0, 1\].*from_logits=True"):
        losskit.dice([[1.0, 0.0]], [[1.5, 0.0]])
    with pytest.raises(ValueError, match=r"tversky: y_true must lie in \[0, 1\]"):
        losskit.tversky([[2.0, 0.0]], [[0.5, 0.0]])
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        losskit.Tversky(alpha=-0.1)
    with pytest.raises(ValueError, match="y_true has shape"):
        losskit.dice(np.zeros((2, 3)), np.zeros((2, 4)))


def test_config_round_trip_keeps_a_pair() -> None:
    loss = losskit.Dice(smooth=[1e-5, 2e-5], jaccard=True)
    again = losskit.deserialize(losskit.serialize(loss))
    assert again.get_config()["smooth"] == (1e-5, 2e-5)
    assert losskit.get("DiceLoss").definition.name == "dice"
    assert losskit.get("TverskyLoss").definition.name == "tversky"


# ---------------------------------------------------------------------------- generalized Dice


def _monai_generalized_dice(t: np.ndarray, p: np.ndarray, w_type: str = "square",
                            smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> np.ndarray:
    """monai.losses.GeneralizedDiceLoss(reduction="none") on (B, C, N), from its documentation:
    ``w = 1/T^2`` (square), ``1/T`` (simple) or 1; infinite weights become the sample's largest
    finite one; ``1 - (2 sum w I + smooth_nr) / (sum w (T + P) + smooth_dr)``."""
    volume = t.sum(-1)
    with np.errstate(divide="ignore"):
        w = {"square": 1 / volume**2, "simple": 1 / volume, "uniform": np.ones_like(volume)}[w_type]
    infs = np.isinf(w)
    w[infs] = 0.0
    w = w + infs * w.max(-1, keepdims=True)
    inter = (t * p).sum(-1)
    return 1 - (2 * (w * inter).sum(-1) + smooth_nr) / ((w * (t.sum(-1) + p.sum(-1))).sum(-1)
                                                       + smooth_dr)


@pytest.mark.parametrize("w_type", ["square", "simple", "uniform"])
def test_monai_generalized_dice(w_type: str, rng: np.random.Generator) -> None:
    t, p = _masks(rng, (3, 4, 12))
    t[0, 2] = 0.0  # an empty class
    got = losskit.generalized_dice(t.reshape(3, -1), p.reshape(3, -1), classes=4, w_type=w_type)
    np.testing.assert_allclose(got, _monai_generalized_dice(t, p, w_type), rtol=1e-13)


def test_generalized_dice_layout_and_options() -> None:
    with pytest.raises(ValueError, match="not a multiple of classes=2"):
        losskit.generalized_dice([[1.0, 0.0, 1.0]], [[0.5, 0.5, 0.5]], classes=2)
    with pytest.raises(ValueError, match="classes must be a positive integer"):
        losskit.GeneralizedDice(classes=0)
    with pytest.raises(ValueError, match="w_type must be 'square', 'simple' or 'uniform'"):
        losskit.GeneralizedDice(w_type="cube")
    # uniform weights over two classes: Dice of the concatenated masks
    t = np.array([[1.0, 0.0, 0.0, 1.0]])
    p = np.array([[0.9, 0.2, 0.1, 0.7]])
    np.testing.assert_allclose(losskit.generalized_dice(t, p, classes=2, w_type="uniform"),
                               losskit.dice(t, p, smooth="monai"), rtol=1e-14)


# ---------------------------------------------------------------------------- Lovasz hinge


def _berman_lovasz_hinge(t: np.ndarray, x: np.ndarray) -> float:
    """The reference algorithm as published (Berman et al., 2018): sort the hinge errors, take
    the Jaccard increments of the sorted labels, dot with relu(errors)."""
    errors = 1.0 - x * (2 * t - 1)
    order = np.argsort(-errors, kind="stable")
    gt = t[order]
    intersection = gt.sum() - np.cumsum(gt)
    union = gt.sum() + np.cumsum(1 - gt)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return float(np.dot(np.maximum(errors[order], 0), jaccard))


def test_lovasz_hinge_matches_the_reference_algorithm(rng: np.random.Generator) -> None:
    t = (rng.random((4, 25)) < 0.4).astype(float)
    t[0] = 0.0  # no positives
    x = rng.normal(0, 2, (4, 25))
    got = losskit.lovasz_hinge(t, x)
    np.testing.assert_allclose(got, [_berman_lovasz_hinge(a, b) for a, b in zip(t, x, strict=True)],
                               rtol=1e-13)
    # per_image=False of the reference: the whole batch as one row
    np.testing.assert_allclose(losskit.lovasz_hinge(t.reshape(1, -1), x.reshape(1, -1))[0],
                               _berman_lovasz_hinge(t.ravel(), x.ravel()), rtol=1e-13)
    with pytest.raises(ValueError, match="lovasz_hinge: y_true must hold binary masks"):
        losskit.lovasz_hinge([[0.5, 1.0]], [[0.0, 1.0]])


def test_axis_selects_the_pixel_axis(rng: np.random.Generator) -> None:
    # channels-last (B, N, C): axis=1 gives one value per image and class, like (B, C, N) with -1
    t, p = _masks(rng, (2, 30, 3))
    want = losskit.dice(np.moveaxis(t, 1, -1), np.moveaxis(p, 1, -1), smooth="monai")
    np.testing.assert_allclose(losskit.dice(t, p, smooth="monai", axis=1), want, rtol=1e-15)
    g = losskit.Dice(axis=1, reduction="sum").gradient(t, p)
    g_last = losskit.Dice(reduction="sum").gradient(np.moveaxis(t, 1, -1), np.moveaxis(p, 1, -1))
    np.testing.assert_allclose(g, np.moveaxis(g_last, -1, 1), rtol=1e-15)
