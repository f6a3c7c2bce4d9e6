"""The options of the core cross-entropies (issue 4) beyond the oracle entries
(tests/oracle/families/crossentropy_options.py): reductions against PyTorch's weighted means, the
validation messages, the configuration, and the backends. Expected values come from PyTorch, Optax or
derivations written in the tests."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import losskit

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(20261124)
X = RNG.normal(scale=2.0, size=(7, 4))
LABELS = np.array([0, 1, 2, 3, 1, 2, 0])
W = (0.5, 2.0, 0.0, 3.0)


def _torch_ce(reduction: str, **kw):
    x = torch.tensor(X, requires_grad=True)
    out = F.cross_entropy(x, torch.tensor(LABELS), reduction=reduction, **kw)
    (g,) = torch.autograd.grad(out.sum(), x)
    return out.detach().numpy(), g.numpy()


# ----------------------------------------------------------------------- PyTorch's weighted mean


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("ignore", [None, 1])
def test_class_weight_reproduces_torch_weighted_mean(ls, ignore):
    """PyTorch's 'mean' with weight= divides by sum_n w[y_n] over the kept samples: here that is
    reduction='sum' divided by the same number (documented), value and gradient."""
    kw = {"weight": torch.tensor(W, dtype=torch.float64), "label_smoothing": ls}
    if ignore is not None:
        kw["ignore_index"] = ignore
    want, want_g = _torch_ce("mean", **kw)
    kept = np.ones(len(LABELS), bool) if ignore is None else np.not_equal(LABELS, ignore)
    divisor = np.asarray(W)[LABELS][kept].sum()
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True, class_weight=W, label_smoothing=ls,
                                                 ignore_index=ignore, reduction="sum")
    value, grad = loss.value_and_gradient(LABELS, X)
    np.testing.assert_allclose(value / divisor, want, rtol=1e-13)
    np.testing.assert_allclose(grad / divisor, want_g, rtol=1e-12, atol=1e-15)


def test_class_weight_as_sample_weight_with_mean_with_sample_weight():
    """Without smoothing, class weights are sample weights w[y]: the unweighted loss reduced with
    mean_with_sample_weight is PyTorch's weighted mean."""
    want, want_g = _torch_ce("mean", weight=torch.tensor(W, dtype=torch.float64))
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")
    value, grad = loss.value_and_gradient(LABELS, X, np.asarray(W)[LABELS])
    np.testing.assert_allclose(value, want, rtol=1e-13)
    np.testing.assert_allclose(grad, want_g, rtol=1e-12, atol=1e-15)


def test_cce_class_weight_mean_is_torch_probability_target_mean():
    """With probability targets PyTorch's weighted 'mean' divides by N, as "mean" does here."""
    t = RNG.uniform(size=X.shape)
    t /= t.sum(-1, keepdims=True)
    x = torch.tensor(X, requires_grad=True)
    want = F.cross_entropy(x, torch.tensor(t), weight=torch.tensor(W, dtype=torch.float64),
                           label_smoothing=0.2)
    (want_g,) = torch.autograd.grad(want, x)
    loss = losskit.CategoricalCrossentropy(from_logits=True, class_weight=W, label_smoothing=0.2)
    value, grad = loss.value_and_gradient(t, X)
    np.testing.assert_allclose(value, want.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, want_g.numpy(), rtol=1e-12, atol=1e-15)


def test_pos_weight_mean_is_torch_mean():
    """BCEWithLogitsLoss(pos_weight=, reduction='mean') averages every element, as the mean of the
    row means does for rows of one length."""
    y = RNG.integers(0, 2, size=X.shape).astype(float)
    pw = (1.0, 0.25, 4.0, 0.0)
    x = torch.tensor(X, requires_grad=True)
    want = F.binary_cross_entropy_with_logits(x, torch.tensor(y), pos_weight=torch.tensor(pw))
    (want_g,) = torch.autograd.grad(want, x)
    value, grad = losskit.BinaryCrossentropy(from_logits=True, pos_weight=pw).value_and_gradient(y, X)
    np.testing.assert_allclose(value, want.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, want_g.numpy(), rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------- hand derivations


def test_sparse_label_smoothing_by_hand():
    # logits [log 3, 0]: softmax [3/4, 1/4]; label 0, s = 0.2: targets [0.9, 0.1]
    # value 0.9 log(4/3) + 0.1 log 4; gradient softmax - targets = [-0.15, 0.15]
    x = np.array([[math.log(3.0), 0.0]])
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.2,
                                                 reduction="none")
    value, grad = loss.value_and_gradient([0], x)
    np.testing.assert_allclose(value, [0.9 * math.log(4 / 3) + 0.1 * math.log(4.0)], rtol=1e-15)
    np.testing.assert_allclose(grad, [[-0.15, 0.15]], rtol=1e-14)


@pytest.mark.parametrize("weights", [None, (2.0, 5.0, 0.5)])
def test_sparse_label_smoothing_on_probabilities_by_hand(weights):
    # p = [1/2, 1/4, 1/4], class 1 left out by where: P = 3/4 over classes 0 and 2; label 0,
    # s = 0.2 over the 2 kept classes: targets c = w * [0.8 + 0.1, 0, 0.1]
    # value sum_j c_j log(P / p_j), gradient C/P - c_i/p_i (C = sum c), 0 at the excluded class
    w = np.ones(3) if weights is None else np.asarray(weights)
    c = w * np.array([0.9, 0.0, 0.1])
    big_c = c.sum()
    loss = losskit.SparseCategoricalCrossentropy(label_smoothing=0.2, class_weight=weights,
                                                 reduction="none")
    value, grad = loss.value_and_gradient([0], [[0.5, 0.25, 0.25]], where=[[True, False, True]])
    np.testing.assert_allclose(value, [c[0] * math.log(1.5) + c[2] * math.log(3.0)], rtol=1e-15)
    want = [big_c / 0.75 - c[0] / 0.5, 0.0, big_c / 0.75 - c[2] / 0.25]
    np.testing.assert_allclose(grad, [want], rtol=1e-14)


def test_sparse_label_smoothing_on_probabilities_builds_no_dense_target():
    """From probabilities, as from logits, the smoothed targets are never formed (issue 4): on
    (2, 10**6) float32 inputs, value_and_gradient's peak allocation exceeds the logits path's by
    well under one dense float64 target array (16 MB; the dense kernel needed that much more)."""
    import tracemalloc

    p = np.full((2, 10**6), 1e-6, np.float32)
    labels = np.array([3, 7])
    dense_target = p.size * 8

    def peak(from_logits: bool) -> int:
        loss = losskit.SparseCategoricalCrossentropy(from_logits=from_logits, label_smoothing=0.1)
        loss.value_and_gradient(labels, p)  # warm up: imports and caches outside the measurement
        tracemalloc.start()
        try:
            loss.value_and_gradient(labels, p)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak(False) - peak(True) < dense_target / 2


def test_bce_where_averages_the_kept_elements_by_hand():
    # logits 0: every term is log 2 (any label); keeping 2 of 4 elements: value log 2, gradient
    # (sigmoid(0) - y) / 2 = +-1/4 on the kept elements, 0 elsewhere; nothing kept: 0 and 0
    y = np.array([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    where = np.array([[True, True, False, False], [False, False, False, False]])
    loss = losskit.BinaryCrossentropy(from_logits=True, reduction="none")
    value, grad = loss.value_and_gradient(y, np.zeros((2, 4)), where=where)
    np.testing.assert_allclose(value, [math.log(2.0), 0.0], rtol=1e-15)
    np.testing.assert_array_equal(grad, [[-0.25, 0.25, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


def test_where_of_whole_samples_broadcasts_from_a_trailing_axis():
    """Optax's batch-shaped where is where[..., None] here; it drops whole samples."""
    rows = np.array([True, False, True, True, False, True, True])
    value = losskit.sparse_categorical_crossentropy(LABELS, X, from_logits=True,
                                                    where=rows[:, None])
    plain = losskit.sparse_categorical_crossentropy(LABELS, X, from_logits=True)
    np.testing.assert_array_equal(value, np.where(rows, plain, 0.0))


def test_pos_weight_along_axis():
    """A per-element pos_weight follows the reduced axis (the classes moved last)."""
    y = RNG.integers(0, 2, size=(3, 4)).astype(float)
    pw = (0.5, 2.0, 3.0)
    a = losskit.binary_crossentropy(y, X[:3], from_logits=True, pos_weight=pw, axis=0)
    b = losskit.binary_crossentropy(y.T, X[:3].T, from_logits=True, pos_weight=pw)
    np.testing.assert_allclose(a, b, rtol=1e-15)


# ----------------------------------------------------------------------------- errors and config


def test_weight_errors():
    with pytest.raises(ValueError, match=r"pos_weight has 3 entries but y_pred has 4 elements"):
        losskit.binary_crossentropy(np.zeros((2, 4)), np.zeros((2, 4)), from_logits=True,
                                    pos_weight=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match=r"class_weight has 2 entries but y_pred has 4"):
        losskit.sparse_categorical_crossentropy(LABELS, X, from_logits=True, class_weight=(1, 2))
    with pytest.raises(ValueError, match=r"class_weight must hold finite non-negative numbers; "
                                         r"found -1.0 at index 1"):
        losskit.CategoricalCrossentropy(class_weight=[1.0, -1.0])
    with pytest.raises(TypeError, match=r"pos_weight must be None, a number or a 1-D sequence"):
        losskit.BinaryCrossentropy(pos_weight=[[1.0]])
    with pytest.raises(ValueError, match=r"label_smoothing must lie in \[0, 1\]"):
        losskit.SparseCategoricalCrossentropy(label_smoothing=1.5)


def test_ignore_index_alias():
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True, ignore_index=-100)
    assert loss.get_config()["ignore_class"] == -100
    assert "ignore_index" not in loss.get_config()
    with pytest.raises(TypeError, match="got both ignore_class and its alias ignore_index"):
        losskit.SparseCategoricalCrossentropy(ignore_class=1, ignore_index=1)
    np.testing.assert_array_equal(
        losskit.sparse_categorical_crossentropy(LABELS, X, from_logits=True, ignore_index=1),
        losskit.sparse_categorical_crossentropy(LABELS, X, from_logits=True, ignore_class=1))


def test_config_round_trip_is_json():
    loss = losskit.SparseCategoricalCrossentropy(class_weight=np.array(W), label_smoothing=0.1)
    config = json.loads(json.dumps(loss.get_config()))
    assert config["class_weight"] == list(W)
    assert losskit.SparseCategoricalCrossentropy.from_config(config) == loss


def test_where_excluding_the_label_is_refused():
    where = np.ones(X.shape, bool)
    where[2, LABELS[2]] = False
    with pytest.raises(ValueError, match=r"where excludes the label's own class in 1 sample"):
        losskit.sparse_categorical_crossentropy(LABELS, X, from_logits=True, where=where)
    where[2] = False  # the whole sample excluded: fine, 0
    assert losskit.sparse_categorical_crossentropy(LABELS, X, from_logits=True, where=where)[2] == 0
    # an ignored sample is not checked
    where[2, :2] = True
    losskit.sparse_categorical_crossentropy(LABELS, X, from_logits=True, where=where,
                                            ignore_class=int(LABELS[2]))


# ----------------------------------------------------------------------------------- backends


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_options_on_backends_and_autograd(backend):
    """Values and autograd gradients on PyTorch and JAX (also under jit) equal NumPy's."""
    where = RNG.random(X.shape) < 0.7
    where[np.arange(len(LABELS)), LABELS] = True
    opts = {"from_logits": True, "label_smoothing": 0.1, "class_weight": W}
    want = losskit.sparse_categorical_crossentropy(LABELS, X, where=where, **opts)
    want_g = losskit.SparseCategoricalCrossentropy(reduction="sum", **opts).gradient(
        LABELS, X, where=where)
    if backend == "torch":
        x = torch.tensor(X, requires_grad=True)
        out = losskit.sparse_categorical_crossentropy(torch.tensor(LABELS), x,
                                                      where=torch.tensor(where), **opts)
        out.sum().backward()
        got, got_g = out.detach().numpy(), x.grad.numpy()
    else:
        jax = pytest.importorskip("jax")
        jnp = jax.numpy
        previous = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
        try:
            def f(x):
                return losskit.sparse_categorical_crossentropy(jnp.asarray(LABELS), x,
                                                               where=jnp.asarray(where), **opts)
            got = np.asarray(jax.jit(f)(jnp.asarray(X)))
            got_g = np.asarray(jax.jit(jax.grad(lambda x: f(x).sum()))(jnp.asarray(X)))
        finally:
            jax.config.update("jax_enable_x64", previous)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-13, atol=1e-16)
