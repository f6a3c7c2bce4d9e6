"""Peer parity: losskit against Keras 3 (on JAX), PyTorch and Optax, values and gradients.

Every comparison runs in float32 and float64 on random inputs where the peer is exact, that is
where Keras does not clip: probabilities stay well inside (1e-6, 1 - 1e-6) and KL targets and
predictions above 1e-6 (losskit deliberately does not clip, and Keras clips to [1e-7, 1 - 1e-7]).

Tolerances are counted in units of the dtype's machine epsilon ("ulps" below).  The default of
4 ulps is for a peer computing the same formula in the same dtype: it leaves room for the peer's
own rounding (measured against float64 at about 2 ulps or less for these inputs in float32) plus
ours.  Gradients are compared normwise (error relative to the largest component) because peers
get them through the chain rule, whose terms cancel (e.g. sigmoid(x) - y), so small components
carry the large terms' absolute error.  Looser budgets are set per case below, each with the
peer's measured error that needs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from jax.test_util import check_grads

import losskit

os.environ["KERAS_BACKEND"] = "jax"
import keras

if keras.backend.backend() != "jax":  # keras was imported earlier with another backend
    raise RuntimeError(f"tests/test_peers.py needs Keras on JAX, got {keras.backend.backend()}")

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"]
REDUCTION_ALIASES = {"mean": "sum_over_batch_size", None: "none"}
IGNORED = -1  # label value used for ``ignore_class``
DEFAULT_ULPS = 4
SHAPE = (16, 7)


@pytest.fixture(autouse=True)
def _jax_x64(request):
    """Enable float64 on the JAX side for float64 tests only (tests without a dtype parameter
    run in float64), and restore the previous setting after.  Float32 tests run with x64 off, as
    most users run them: with it on, Keras' one-hot labels promote a float32 loss to float64."""
    callspec = getattr(request.node, "callspec", None)
    dtype = callspec.params.get("dtype", np.float64) if callspec else np.float64
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", dtype == np.float64)
    yield
    jax.config.update("jax_enable_x64", previous)


# ---------------------------------------------------------------------------------------------
# Inputs.  Each maker returns float64 ``(y_true, y_pred)``; ``axis`` is the class axis.
# ---------------------------------------------------------------------------------------------


def _softmax(a: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _probabilities(rng: np.random.Generator, shape: tuple, axis: int) -> np.ndarray:
    """Softmax of unit-scale logits: every entry stays in [3e-4, 0.95], far from Keras' clip."""
    probs = _softmax(rng.normal(size=shape).clip(-3, 3), axis)
    assert probs.min() > 1e-6
    assert probs.max() < 1 - 1e-6
    return probs


def regression(rng, shape, axis):
    return rng.normal(size=shape), rng.normal(size=shape)


def binary_probs(rng, shape, axis):
    """Soft labels in [0, 1] and probabilities in [0.02, 0.98] (no clipping by Keras)."""
    return rng.uniform(0, 1, shape), rng.uniform(0.02, 0.98, shape)


def binary_logits(rng, shape, axis):
    return rng.uniform(0, 1, shape), 3 * rng.normal(size=shape)


def soft_targets_probs(rng, shape, axis):
    return _probabilities(rng, shape, axis), _probabilities(rng, shape, axis)


def soft_targets_logits(rng, shape, axis):
    return _probabilities(rng, shape, axis), 2 * rng.normal(size=shape)


def one_hot_targets_probs(rng, shape, axis):
    labels = rng.integers(0, shape[axis], size=shape[:-1])
    return np.eye(shape[axis])[labels], _probabilities(rng, shape, axis)


def index_targets_probs(rng, shape, axis):
    return rng.integers(0, shape[-1], size=shape[:-1]), _probabilities(rng, shape, axis)


def index_targets_logits(rng, shape, axis):
    return rng.integers(0, shape[-1], size=shape[:-1]), 2 * rng.normal(size=shape)


def _with_ignored(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ignored = rng.permutation(labels.size)[: labels.size // 4]
    labels = labels.copy()
    labels.flat[ignored] = IGNORED
    return labels


def ignored_targets_probs(rng, shape, axis):
    labels, probs = index_targets_probs(rng, shape, axis)
    return _with_ignored(labels, rng), probs


def ignored_targets_logits(rng, shape, axis):
    labels, logits = index_targets_logits(rng, shape, axis)
    return _with_ignored(labels, rng), logits


def signed_labels(rng, shape, axis):
    return rng.choice([-1.0, 1.0], size=shape), 2 * rng.normal(size=shape)


def zero_one_labels(rng, shape, axis):
    """{0, 1} labels, which hinge converts to -1/+1 as Keras does."""
    return rng.choice([0.0, 1.0], size=shape), 2 * rng.normal(size=shape)


# ---------------------------------------------------------------------------------------------
# Cases: one losskit function/class (same names in keras.losses) with options and inputs.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    function: str
    cls: str
    make: Callable[..., tuple[np.ndarray, np.ndarray]]
    options: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] = SHAPE
    value_ulps: int = DEFAULT_ULPS

    @property
    def axis(self) -> int:
        return self.options.get("axis", -1)


BCE, CCE, SCCE = (
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
)
LOGITS = {"from_logits": True}
# Softmax cross-entropy with integer labels is logsumexp(x) - x[label], which cancels when the
# loss is small: peers' own float32 error measured up to 3.2 ulps (Keras), 2.3 (torch, optax).
SCCE_LOGITS_ULPS = 8

CASES = [
    Case("mse", "mean_squared_error", "MeanSquaredError", regression),
    Case("mse_3d", "mean_squared_error", "MeanSquaredError", regression, shape=(4, 3, 5)),
    Case("mae", "mean_absolute_error", "MeanAbsoluteError", regression),
    Case("bce_probs", BCE, "BinaryCrossentropy", binary_probs),
    Case("bce_logits", BCE, "BinaryCrossentropy", binary_logits, LOGITS),
    Case("bce_probs_smoothed", BCE, "BinaryCrossentropy", binary_probs, {"label_smoothing": 0.1}),
    Case(
        "bce_logits_smoothed",
        BCE,
        "BinaryCrossentropy",
        binary_logits,
        {"from_logits": True, "label_smoothing": 0.2},
    ),
    Case("bce_axis1", BCE, "BinaryCrossentropy", binary_probs, {"axis": 1}, shape=(4, 5, 3)),
    Case("cce_probs", CCE, "CategoricalCrossentropy", soft_targets_probs),
    Case("cce_one_hot_probs", CCE, "CategoricalCrossentropy", one_hot_targets_probs),
    Case("cce_logits", CCE, "CategoricalCrossentropy", soft_targets_logits, LOGITS),
    Case(
        "cce_probs_smoothed",
        CCE,
        "CategoricalCrossentropy",
        soft_targets_probs,
        {"label_smoothing": 0.1},
    ),
    Case(
        "cce_logits_smoothed",
        CCE,
        "CategoricalCrossentropy",
        soft_targets_logits,
        {"from_logits": True, "label_smoothing": 0.1},
    ),
    Case(
        "cce_logits_axis1",
        CCE,
        "CategoricalCrossentropy",
        soft_targets_logits,
        {"from_logits": True, "axis": 1},
        shape=(4, 6, 3),
    ),
    Case("scce_probs", SCCE, "SparseCategoricalCrossentropy", index_targets_probs),
    Case(
        "scce_logits",
        SCCE,
        "SparseCategoricalCrossentropy",
        index_targets_logits,
        LOGITS,
        value_ulps=SCCE_LOGITS_ULPS,
    ),
    Case(
        "scce_probs_ignore",
        SCCE,
        "SparseCategoricalCrossentropy",
        ignored_targets_probs,
        {"ignore_class": IGNORED},
    ),
    Case(
        "scce_logits_ignore",
        SCCE,
        "SparseCategoricalCrossentropy",
        ignored_targets_logits,
        {"from_logits": True, "ignore_class": IGNORED},
        value_ulps=SCCE_LOGITS_ULPS,
    ),
    Case("hinge_signed", "hinge", "Hinge", signed_labels),
    Case("hinge_zero_one", "hinge", "Hinge", zero_one_labels),
    Case("kld", "kl_divergence", "KLDivergence", soft_targets_probs),
]
CASE_BY_ID = {case.id: case for case in CASES}


def make_inputs(case: Case, dtype, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` in ``dtype``; integer labels stay int64."""
    rng = np.random.default_rng(seed)
    y_true, y_pred = case.make(rng, case.shape, case.axis)
    if y_true.dtype.kind == "f":
        y_true = y_true.astype(dtype)
    return y_true, y_pred.astype(dtype)


def make_sample_weight(case: Case, y_pred: np.ndarray, seed: int = 1) -> np.ndarray:
    """One weight per per-sample loss value (the loss's output shape)."""
    per_sample_shape = np.delete(np.array(case.shape), case.axis)
    rng = np.random.default_rng(seed)
    return rng.uniform(0.25, 2.0, size=tuple(per_sample_shape)).astype(y_pred.dtype)


def losskit_class(case: Case, **kwargs):
    return getattr(losskit, case.cls)(**case.options, **kwargs)


# ---------------------------------------------------------------------------------------------
# Comparison helpers.
# ---------------------------------------------------------------------------------------------


def to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def assert_close(actual, expected, ulps: float = DEFAULT_ULPS, *, normwise: bool = False):
    """|actual - expected| <= ulps * eps * |expected| (or * max|expected| when normwise)."""
    actual, expected = to_numpy(actual), to_numpy(expected)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    tol = ulps * np.finfo(expected.dtype).eps
    atol = tol * np.max(np.abs(expected), initial=0.0) if normwise else 0.0
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=atol)


def assert_grad_close(actual, expected, ulps: float = DEFAULT_ULPS):
    assert_close(actual, expected, ulps, normwise=True)


def dtype_ids(dtype) -> str:
    return np.dtype(dtype).name


parametrize_dtype = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)


def parametrize_cases(cases):
    return pytest.mark.parametrize("case", cases, ids=lambda case: case.id)


# ---------------------------------------------------------------------------------------------
# Keras 3.
# ---------------------------------------------------------------------------------------------


# On JAX, Keras' ops.mean and ops.maximum compute float64 input in float32 (its
# dtypes.result_type demotes 64-bit types, keras-team/keras#23223), so its float64 MSE, MAE, BCE
# and hinge carry float32 rounding: measured up to 1.4 float32 ulps (1.7e-7 relative) on these
# inputs.  For them the Keras comparison gets float32's budget; their float64 accuracy is checked
# at float64's budget against PyTorch (and Optax) below.
KERAS_FLOAT32_INTERNALLY = {
    "mean_squared_error",
    "mean_absolute_error",
    "binary_crossentropy",
    "hinge",
}


def keras_ulps(case: Case, dtype, ulps: float) -> float:
    if np.dtype(dtype) == np.float64 and case.function in KERAS_FLOAT32_INTERNALLY:
        return ulps * np.finfo(np.float32).eps / np.finfo(np.float64).eps
    return ulps


def keras_sum_gradient(loss_fn, y_true, y_pred, **kwargs):
    """Gradient of sum(loss_fn(y_true, y_pred)) w.r.t. y_pred, by jax.grad."""
    return jax.grad(lambda p: jnp.sum(loss_fn(y_true, p, **kwargs)))(y_pred)


@parametrize_dtype
@parametrize_cases(CASES)
def test_function_matches_keras(case, dtype):
    y_true, y_pred = make_inputs(case, dtype)
    keras_fn = getattr(keras.losses, case.function)
    jt, jp = jnp.asarray(y_true), jnp.asarray(y_pred)

    ours = getattr(losskit, case.function)(y_true, y_pred, **case.options)
    value_ulps = keras_ulps(case, dtype, case.value_ulps)
    assert_close(ours, keras_fn(jt, jp, **case.options), value_ulps)

    our_grad = losskit_class(case, reduction="sum").gradient(y_true, y_pred)
    expected_grad = keras_sum_gradient(keras_fn, jt, jp, **case.options)
    assert_grad_close(our_grad, expected_grad, keras_ulps(case, dtype, DEFAULT_ULPS))


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS, ids=str)
@parametrize_dtype
@parametrize_cases(CASES)
def test_class_matches_keras(case, dtype, reduction, weighted):
    y_true, y_pred = make_inputs(case, dtype)
    weight = make_sample_weight(case, y_pred) if weighted else None
    ours = losskit_class(case, reduction=reduction)
    theirs = getattr(keras.losses, case.cls)(
        reduction=reduction,
        dtype=np.dtype(dtype).name,
        **case.options,
    )
    jweight = None if weight is None else jnp.asarray(weight)
    jt, jp = jnp.asarray(y_true), jnp.asarray(y_pred)

    value, grad = ours.value_and_gradient(y_true, y_pred, sample_weight=weight)
    value_ulps = keras_ulps(case, dtype, case.value_ulps)
    assert_close(value, theirs(jt, jp, sample_weight=jweight), value_ulps)
    # For reduction "none" each output depends on its own sample only, so the gradient shaped
    # like y_pred is the gradient of the sum of the outputs.
    expected_grad = keras_sum_gradient(theirs, jt, jp, sample_weight=jweight)
    assert_grad_close(grad, expected_grad, keras_ulps(case, dtype, DEFAULT_ULPS))

    assert_close(ours(y_true, y_pred, sample_weight=weight), value)
    assert_grad_close(ours.gradient(y_true, y_pred, sample_weight=weight), grad)


FIRST_CASE_PER_CLASS = list({case.cls: case for case in reversed(CASES)}.values())


@pytest.mark.parametrize("alias", list(REDUCTION_ALIASES), ids=str)
@parametrize_dtype
@parametrize_cases(FIRST_CASE_PER_CLASS)
def test_reduction_alias_matches_keras(case, dtype, alias):
    y_true, y_pred = make_inputs(case, dtype)
    weight = make_sample_weight(case, y_pred)
    theirs = getattr(keras.losses, case.cls)(
        reduction=alias,
        dtype=np.dtype(dtype).name,
        **case.options,
    )
    expected = theirs(jnp.asarray(y_true), jnp.asarray(y_pred), sample_weight=jnp.asarray(weight))
    ours = losskit_class(case, reduction=alias)
    assert_close(ours(y_true, y_pred, sample_weight=weight), expected, keras_ulps(case, dtype, 4))

    canonical = losskit_class(case, reduction=REDUCTION_ALIASES[alias])
    value, grad = ours.value_and_gradient(y_true, y_pred, sample_weight=weight)
    canonical_value, canonical_grad = canonical.value_and_gradient(
        y_true,
        y_pred,
        sample_weight=weight,
    )
    np.testing.assert_array_equal(value, canonical_value)
    np.testing.assert_array_equal(grad, canonical_grad)


# ---------------------------------------------------------------------------------------------
# PyTorch: per-sample reference (Keras' per-sample semantics) and torch's own batch mean, which
# equals losskit's default reduction "sum_over_batch_size".
# ---------------------------------------------------------------------------------------------


def _torch_hinge(y, f):
    return torch.maximum(1 - y * f, torch.zeros_like(f))


def _smoothed(binary_targets, label_smoothing):
    """Keras' binary label smoothing (torch's binary losses have none)."""
    return binary_targets * (1 - label_smoothing) + 0.5 * label_smoothing


def _torch_bce_logits(t, logits):
    return F.binary_cross_entropy_with_logits(logits, t, reduction="none")


def _torch_kl(t, p, reduction):
    return F.kl_div(torch.log(p), t, reduction=reduction)


TORCH_REFERENCES = {
    "mse": (
        lambda t, p: F.mse_loss(p, t, reduction="none").mean(-1),
        lambda t, p: F.mse_loss(p, t),
    ),
    "mse_3d": (
        lambda t, p: F.mse_loss(p, t, reduction="none").mean(-1),
        lambda t, p: F.mse_loss(p, t),
    ),
    "mae": (
        lambda t, p: F.l1_loss(p, t, reduction="none").mean(-1),
        lambda t, p: F.l1_loss(p, t),
    ),
    "bce_probs": (
        lambda t, p: F.binary_cross_entropy(p, t, reduction="none").mean(-1),
        lambda t, p: F.binary_cross_entropy(p, t),
    ),
    "bce_probs_smoothed": (
        lambda t, p: F.binary_cross_entropy(p, _smoothed(t, 0.1), reduction="none").mean(-1),
        lambda t, p: F.binary_cross_entropy(p, _smoothed(t, 0.1)),
    ),
    "bce_axis1": (
        lambda t, p: F.binary_cross_entropy(p, t, reduction="none").mean(1),
        lambda t, p: F.binary_cross_entropy(p, t),
    ),
    "bce_logits_smoothed": (
        lambda t, p: _torch_bce_logits(_smoothed(t, 0.2), p).mean(-1),
        lambda t, p: _torch_bce_logits(_smoothed(t, 0.2), p).mean(),
    ),
    "bce_logits": (
        lambda t, p: F.binary_cross_entropy_with_logits(p, t, reduction="none").mean(-1),
        lambda t, p: F.binary_cross_entropy_with_logits(p, t),
    ),
    "cce_logits": (
        lambda t, p: F.cross_entropy(p, t, reduction="none"),
        lambda t, p: F.cross_entropy(p, t),
    ),
    "cce_logits_smoothed": (
        lambda t, p: F.cross_entropy(p, t, reduction="none", label_smoothing=0.1),
        lambda t, p: F.cross_entropy(p, t, label_smoothing=0.1),
    ),
    # torch's class axis is 1, which is this case's Keras ``axis``.
    "cce_logits_axis1": (
        lambda t, p: F.cross_entropy(p, t, reduction="none"),
        lambda t, p: F.cross_entropy(p, t),
    ),
    "scce_logits": (
        lambda t, p: F.cross_entropy(p, t, reduction="none"),
        lambda t, p: F.cross_entropy(p, t),
    ),
    # torch's ignore_index mean divides by the number of kept labels, as Keras' masked mean does.
    "scce_logits_ignore": (
        lambda t, p: F.cross_entropy(p, t, reduction="none", ignore_index=IGNORED),
        lambda t, p: F.cross_entropy(p, t, ignore_index=IGNORED),
    ),
    "hinge_signed": (
        lambda y, f: _torch_hinge(y, f).mean(-1),
        lambda y, f: _torch_hinge(y, f).mean(),
    ),
    "hinge_zero_one": (
        lambda y, f: _torch_hinge(2 * y - 1, f).mean(-1),
        lambda y, f: _torch_hinge(2 * y - 1, f).mean(),
    ),
    "kld": (
        lambda t, p: _torch_kl(t, p, "none").sum(-1),
        lambda t, p: _torch_kl(t, p, "batchmean"),
    ),
}
TORCH_CASES = [CASE_BY_ID[case_id] for case_id in TORCH_REFERENCES]


def torch_inputs(y_true: np.ndarray, y_pred: np.ndarray):
    return torch.from_numpy(y_true), torch.from_numpy(y_pred).requires_grad_(True)


def torch_value_and_grad(reference, y_true, y_pred):
    value = reference(y_true, y_pred)
    (grad,) = torch.autograd.grad(value.sum(), y_pred)
    return value, grad


@parametrize_dtype
@parametrize_cases(TORCH_CASES)
def test_function_matches_torch(case, dtype):
    y_true, y_pred = make_inputs(case, dtype)
    value, grad = torch_value_and_grad(TORCH_REFERENCES[case.id][0], *torch_inputs(y_true, y_pred))

    ours = getattr(losskit, case.function)(y_true, y_pred, **case.options)
    assert_close(ours, value, case.value_ulps)
    assert_grad_close(losskit_class(case, reduction="sum").gradient(y_true, y_pred), grad)


@parametrize_dtype
@parametrize_cases(TORCH_CASES)
def test_batch_mean_matches_torch(case, dtype):
    y_true, y_pred = make_inputs(case, dtype)
    value, grad = torch_value_and_grad(TORCH_REFERENCES[case.id][1], *torch_inputs(y_true, y_pred))

    ours, our_grad = losskit_class(case).value_and_gradient(y_true, y_pred)
    assert_close(ours, value, case.value_ulps)
    assert_grad_close(our_grad, grad)


KL_REDUCTIONS = {"sum_over_batch_size": "batchmean", "sum": "sum"}


@pytest.mark.parametrize(("reduction", "torch_reduction"), KL_REDUCTIONS.items())
@parametrize_dtype
def test_kl_reductions_match_torch_kl_div(dtype, reduction, torch_reduction):
    y_true, y_pred = make_inputs(CASE_BY_ID["kld"], dtype)
    t, p = torch_inputs(y_true, y_pred)
    value, grad = torch_value_and_grad(lambda a, b: _torch_kl(a, b, torch_reduction), t, p)

    ours, our_grad = losskit.KLDivergence(reduction=reduction).value_and_gradient(y_true, y_pred)
    assert_close(ours, value)
    assert_grad_close(our_grad, grad)


# ---------------------------------------------------------------------------------------------
# Optax: elementwise or per-sample losses, reduced over the class axis as Keras does.
# ---------------------------------------------------------------------------------------------

OPTAX_REFERENCES = {
    "mse": lambda t, p: optax.losses.squared_error(p, t).mean(-1),
    "bce_logits": lambda t, p: optax.losses.sigmoid_binary_cross_entropy(p, t).mean(-1),
    "cce_logits": lambda t, p: optax.losses.softmax_cross_entropy(p, t),
    "cce_logits_axis1": lambda t, p: optax.losses.softmax_cross_entropy(p, t, axis=1),
    "scce_logits": lambda t, p: optax.losses.softmax_cross_entropy_with_integer_labels(p, t),
    "kld": lambda t, p: optax.losses.kl_divergence(jnp.log(p), t),
    "hinge_signed": lambda y, f: optax.losses.hinge_loss(f, y).mean(-1),
}
OPTAX_CASES = [CASE_BY_ID[case_id] for case_id in OPTAX_REFERENCES]


@parametrize_dtype
@parametrize_cases(OPTAX_CASES)
def test_function_matches_optax(case, dtype):
    y_true, y_pred = make_inputs(case, dtype)
    reference = OPTAX_REFERENCES[case.id]
    jt, jp = jnp.asarray(y_true), jnp.asarray(y_pred)

    ours = getattr(losskit, case.function)(y_true, y_pred, **case.options)
    assert_close(ours, reference(jt, jp), case.value_ulps)
    our_grad = losskit_class(case, reduction="sum").gradient(y_true, y_pred)
    assert_grad_close(our_grad, keras_sum_gradient(reference, jt, jp))


# ---------------------------------------------------------------------------------------------
# losskit on torch tensors and on jax arrays: same kind out, autodiff agrees with .gradient().
# ---------------------------------------------------------------------------------------------


def assert_same_torch_kind(result: torch.Tensor, like: torch.Tensor):
    assert isinstance(result, torch.Tensor)
    assert result.dtype == like.dtype
    assert result.device == like.device


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@parametrize_dtype
@parametrize_cases(CASES)
def test_torch_tensors(case, dtype, weighted):
    y_true, y_pred = make_inputs(case, dtype)
    weight = make_sample_weight(case, y_pred) if weighted else None
    t, p = torch_inputs(y_true, y_pred)
    tw = None if weight is None else torch.from_numpy(weight)
    loss = losskit_class(case)

    value = loss(t, p, sample_weight=tw)
    assert_same_torch_kind(value, p)
    (autograd,) = torch.autograd.grad(value, p)
    grad = loss.gradient(t, p, sample_weight=tw)
    assert_same_torch_kind(grad, p)
    assert_grad_close(grad, autograd)

    numpy_value, numpy_grad = loss.value_and_gradient(y_true, y_pred, sample_weight=weight)
    assert_close(value, numpy_value)
    assert_grad_close(grad, numpy_grad)


@parametrize_dtype
@parametrize_cases(CASES)
def test_torch_per_sample_matches_numpy(case, dtype):
    y_true, y_pred = make_inputs(case, dtype)
    t, p = torch_inputs(y_true, y_pred)
    per_sample = getattr(losskit, case.function)(t, p, **case.options)
    assert_same_torch_kind(per_sample, p)
    assert_close(per_sample, getattr(losskit, case.function)(y_true, y_pred, **case.options))


@parametrize_cases(CASES)
def test_torch_gradcheck(case):
    y_true, y_pred = make_inputs(case, np.float64)
    t, p = torch_inputs(y_true, y_pred)
    weight = torch.from_numpy(make_sample_weight(case, y_pred))
    loss = losskit_class(case)
    assert torch.autograd.gradcheck(lambda q: loss(t, q, sample_weight=weight), (p,))


def assert_same_jax_kind(result, like):
    assert isinstance(result, jax.Array)
    assert result.dtype == like.dtype


@parametrize_dtype
@parametrize_cases(CASES)
def test_jax_arrays(case, dtype):
    y_true, y_pred = make_inputs(case, dtype)
    t, p = jnp.asarray(y_true), jnp.asarray(y_pred)
    weight = jnp.asarray(make_sample_weight(case, y_pred))
    loss = losskit_class(case)

    def reduced(labels, preds, sample_weight):
        return loss(labels, preds, sample_weight=sample_weight)

    value = reduced(t, p, weight)
    assert_same_jax_kind(value, p)
    grad = loss.gradient(t, p, sample_weight=weight)
    assert_same_jax_kind(grad, p)
    assert_grad_close(jax.grad(reduced, argnums=1)(t, p, weight), grad)

    # Labels and weights are traced too, so nothing may branch on their values in Python.
    jitted = jax.jit(jax.value_and_grad(reduced, argnums=1))
    jit_value, jit_grad = jitted(t, p, weight)
    assert_close(jit_value, value)
    assert_grad_close(jit_grad, grad)


@parametrize_dtype
@parametrize_cases(CASES)
def test_jax_per_sample_matches_numpy(case, dtype):
    y_true, y_pred = make_inputs(case, dtype)
    t, p = jnp.asarray(y_true), jnp.asarray(y_pred)
    per_sample = getattr(losskit, case.function)(t, p, **case.options)
    assert_same_jax_kind(per_sample, p)
    assert_close(per_sample, getattr(losskit, case.function)(y_true, y_pred, **case.options))


@parametrize_cases(CASES)
def test_jax_check_grads(case):
    y_true, y_pred = make_inputs(case, np.float64)
    t, weight = jnp.asarray(y_true), jnp.asarray(make_sample_weight(case, y_pred))
    loss = losskit_class(case)

    def reduced(preds):
        # check_grads evaluates at NumPy points; losskit wants both inputs from one library.
        return loss(t, jnp.asarray(preds), sample_weight=weight)

    # Probabilities go down to 3e-4, where a cross-entropy's third derivative reaches ~1e10: the
    # default step 1e-4 then gives central differences off by ~1e-4, so take a smaller step.
    check_grads(reduced, (jnp.asarray(y_pred),), order=1, modes=["rev"], eps=1e-6)


# ---------------------------------------------------------------------------------------------
# Kinks: the subgradient chosen must be torch autograd's (sign(0) = 0; a tie in torch.maximum
# sends half the gradient to each side).  Shapes are powers of two so 1/size is exact.
# ---------------------------------------------------------------------------------------------

KINK_SHAPE = (4, 8)


def _torch_grad_of_mean(per_sample: Callable, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    pt = torch.from_numpy(p).requires_grad_(True)
    (grad,) = torch.autograd.grad(per_sample(torch.from_numpy(t), pt).mean(), pt)
    return grad.numpy()


@parametrize_dtype
def test_mae_gradient_at_zero_error_matches_torch(dtype):
    rng = np.random.default_rng(3)
    y_true = rng.normal(size=KINK_SHAPE).astype(dtype)
    y_pred = np.where(rng.uniform(size=KINK_SHAPE) < 0.5, y_true, -y_true).astype(dtype)
    assert (y_pred == y_true).any()

    expected = _torch_grad_of_mean(lambda t, p: torch.abs(p - t).mean(-1), y_true, y_pred)
    ours = losskit.MeanAbsoluteError().gradient(y_true, y_pred)
    np.testing.assert_array_equal(ours, expected)


@parametrize_dtype
def test_hinge_gradient_at_margin_matches_torch(dtype):
    rng = np.random.default_rng(4)
    y_true = rng.choice([-1.0, 1.0], size=KINK_SHAPE).astype(dtype)
    at_margin = rng.uniform(size=KINK_SHAPE) < 0.5
    y_pred = np.where(at_margin, y_true, 2 * rng.normal(size=KINK_SHAPE)).astype(dtype)
    assert (1 - y_true * y_pred == 0).any()

    def torch_hinge(y, f):
        return torch.maximum(1 - y * f, torch.zeros_like(f)).mean(-1)

    expected = _torch_grad_of_mean(torch_hinge, y_true, y_pred)
    ours = losskit.Hinge().gradient(y_true, y_pred)
    np.testing.assert_array_equal(ours, expected)
