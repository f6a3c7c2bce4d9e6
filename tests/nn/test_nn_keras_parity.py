"""losskit.nn against Keras 3 (JAX backend): same initial weights, same batches, same optimizer
settings -> the same per-epoch losses and final weights, to float32 rounding."""

from __future__ import annotations

import os

import numpy as np
import pytest

from losskit import nn

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

RTOL = 1e-4


def _keras_model(units: list[int], activations: list[str | None], n_in: int):
    keras.utils.set_random_seed(0)
    layers = [keras.Input(shape=(n_in,))]
    layers += [keras.layers.Dense(u, activation=a) for u, a in zip(units, activations, strict=True)]
    return keras.Sequential(layers)


def _twins(units, activations, n_in, optimizer_name, **opt_kwargs):
    k = _keras_model(units, activations, n_in)
    rest = zip(units[1:], activations[1:], strict=True)
    ours = nn.Sequential([nn.Dense(units[0], activation=activations[0], input_shape=(n_in,))]
                         + [nn.Dense(u, activation=a) for u, a in rest])
    ours.set_weights(k.get_weights())
    k_opt = getattr(keras.optimizers, optimizer_name)(**opt_kwargs)
    o_opt = getattr(nn, optimizer_name)(**opt_kwargs)
    return k, ours, k_opt, o_opt


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
                        / np.maximum(np.abs(np.asarray(b, np.float64)), 1e-3)))


def test_tutorial_model_matches_keras():
    """The tutorial program: 10-64-32-1 relu MLP, Adam, MSE, batch 32, shuffle off."""
    rng = np.random.default_rng(1)
    x = rng.random((1000, 10)).astype(np.float32)
    y = rng.random((1000, 1)).astype(np.float32)
    k, ours, k_opt, o_opt = _twins([64, 32, 1], ["relu", "relu", None], 10, "Adam")
    k.compile(optimizer=k_opt, loss="mean_squared_error", metrics=["mae"])
    ours.compile(optimizer=o_opt, loss="mean_squared_error", metrics=["mae"])
    hk = k.fit(x, y, epochs=4, batch_size=32, shuffle=False, verbose=0, validation_split=0.2)
    ho = ours.fit(x, y, epochs=4, batch_size=32, shuffle=False, verbose=0, validation_split=0.2)
    assert sorted(ho.history) == sorted(hk.history)
    for key in hk.history:
        assert _rel(ho.history[key], hk.history[key]) < RTOL, key
    for wo, wk in zip(ours.get_weights(), k.get_weights(), strict=True):
        assert wo.shape == wk.shape
        assert _rel(wo, wk) < RTOL
    assert _rel(ours.predict(x[:50], verbose=0), k.predict(x[:50], verbose=0)) < RTOL
    ev_k = k.evaluate(x, y, verbose=0)
    ev_o = ours.evaluate(x, y, verbose=0)
    assert _rel(ev_o, ev_k) < RTOL


@pytest.mark.parametrize(("name", "kwargs"), [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.5, "centered": True}),
    ("Adagrad", {"learning_rate": 0.05}),
    ("AdamW", {"learning_rate": 0.01}),
    ("Adam", {"learning_rate": 0.01, "weight_decay": 0.1}),
])
def test_optimizers_match_keras(name, kwargs):
    """Each optimizer, a few steps of train_on_batch on a tanh/sigmoid classifier with BCE."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, :1] + x[:, 1:2] > 0).astype(np.float32)
    k, ours, k_opt, o_opt = _twins([8, 1], ["tanh", "sigmoid"], 5, name, **kwargs)
    k.compile(optimizer=k_opt, loss="binary_crossentropy")
    ours.compile(optimizer=o_opt, loss="binary_crossentropy")
    for step in range(5):
        xb, yb = x[step * 8:(step + 1) * 8], y[step * 8:(step + 1) * 8]
        lk = k.train_on_batch(xb, yb)
        lo = ours.train_on_batch(xb, yb)
        assert _rel(lo, lk) < RTOL
    for wo, wk in zip(ours.get_weights(), k.get_weights(), strict=True):
        assert _rel(wo, wk) < RTOL


def test_softmax_accuracy_and_sample_weight_match_keras():
    """Softmax + sparse categorical cross-entropy, metrics 'accuracy', sample weights, 2 epochs."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(96, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=96)
    sw = rng.random(96).astype(np.float32)
    k, ours, k_opt, o_opt = _twins([16, 3], ["gelu", "softmax"], 6, "Adam", learning_rate=0.01)
    k.compile(optimizer=k_opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ours.compile(optimizer=o_opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hk = k.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, sample_weight=sw)
    ho = ours.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, sample_weight=sw)
    assert sorted(ho.history) == sorted(hk.history) == ["accuracy", "loss"]
    assert _rel(ho.history["loss"], hk.history["loss"]) < RTOL
    assert np.allclose(ho.history["accuracy"], hk.history["accuracy"], atol=1e-6)
    for wo, wk in zip(ours.get_weights(), k.get_weights(), strict=True):
        assert _rel(wo, wk) < RTOL
