"""Every activation and layer's backward against central finite differences (float64) and
torch.autograd (same inputs, same weights)."""

from __future__ import annotations

import numpy as np
import pytest

from losskit import nn
from losskit.nn import activations

torch = pytest.importorskip("torch")

TORCH_ACTIVATIONS = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda t: torch.softmax(t, dim=-1),
    "linear": lambda t: t,
    "gelu": lambda t: torch.nn.functional.gelu(t, approximate="none"),
    "elu": lambda t: torch.nn.functional.elu(t, alpha=1.0),
    "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, negative_slope=0.2),
    "softplus": torch.nn.functional.softplus,
}


def test_every_activation_has_a_torch_twin():
    assert set(TORCH_ACTIVATIONS) == set(activations.ACTIVATIONS)


def _inputs(rng, shape=(4, 5)):
    x = rng.normal(scale=2.0, size=shape)
    x[np.abs(x) < 1e-3] = 0.5  # keep clear of the kinks of relu / leaky_relu / elu
    return x


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_backward_matches_finite_differences(name):
    act = activations.get(name)
    rng = np.random.default_rng(0)
    x, g = _inputs(rng), rng.normal(size=(4, 5))
    y = act.forward(x)
    analytic = act.backward(x, y, g)
    h = 1e-6
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        numeric[idx] = np.sum(g * (act.forward(xp) - act.forward(xm))) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_matches_torch_autograd(name, dtype):
    rng = np.random.default_rng(1)
    x, g = _inputs(rng).astype(dtype), rng.normal(size=(4, 5)).astype(dtype)
    act = activations.get(name)
    y = act.forward(x)
    t = torch.tensor(x, requires_grad=True)
    ty = TORCH_ACTIVATIONS[name](t)
    ty.backward(torch.tensor(g))
    tol = 2e-6 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(act.backward(x, y, g), t.grad.numpy(), rtol=tol, atol=tol)


def _scalar_loss(model, x, g):
    return float(np.sum(g.astype(np.float64) * model(x, training=True).astype(np.float64)))


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_dense_backward_matches_torch_autograd(name):
    rng = np.random.default_rng(2)
    nn.set_random_seed(0)
    model = nn.Sequential([nn.Dense(6, activation="tanh", input_shape=(5,)), nn.Dense(4, activation=name)])
    x = rng.normal(size=(8, 5)).astype(np.float32)
    g = rng.normal(size=(8, 4)).astype(np.float32)
    y = model(x)
    grads = [a.copy() for a in model.backward(g)]
    k1, b1, k2, b2 = (torch.tensor(w, requires_grad=True) for w in model.get_weights())
    ty = TORCH_ACTIVATIONS[name](torch.tanh(torch.tensor(x) @ k1 + b1) @ k2 + b2)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(grads, (k1, b1, k2, b2), strict=True):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-4, atol=1e-5)


def _finite_difference_check(model, x, g, h=1e-3, tol=2e-2):
    """Central differences in float32 on every weight: a loose but independent check."""
    model(x, training=True)
    analytic = [a.astype(np.float64) for a in model.backward(g)]
    for w, a in zip(model.trainable_weights, analytic, strict=True):
        for idx in np.ndindex(w.shape):
            old = w[idx]
            w[idx] = old + h
            up = _scalar_loss(model, x, g)
            w[idx] = old - h
            down = _scalar_loss(model, x, g)
            w[idx] = old
            assert abs((up - down) / (2 * h) - a[idx]) <= tol * max(1.0, abs(a[idx])), idx


def test_dense_stack_matches_finite_differences():
    rng = np.random.default_rng(3)
    nn.set_random_seed(1)
    model = nn.Sequential([nn.Dense(5, activation="softplus", input_shape=(3,)),
                           nn.Dense(4, activation="elu"), nn.Dense(3, activation="softmax")])
    _finite_difference_check(model, rng.normal(size=(6, 3)).astype(np.float32),
                             rng.normal(size=(6, 3)).astype(np.float32))


def test_activation_layer_dropout_and_flatten_backward():
    """Activation, Dropout (with its mask fixed by a seed) and Flatten against torch autograd."""
    rng = np.random.default_rng(4)
    model = nn.Sequential([nn.Flatten(input_shape=(2, 3)), nn.Dense(4, use_bias=False),
                           nn.Activation("sigmoid"), nn.Dropout(0.5, seed=0), nn.Dense(2)])
    x = rng.normal(size=(5, 2, 3)).astype(np.float32)
    g = rng.normal(size=(5, 2)).astype(np.float32)
    y = model(x, training=True)
    mask = model.layers[3]._mask
    grads = [a.copy() for a in model.backward(g)]
    k1, k2, b2 = (torch.tensor(w, requires_grad=True) for w in model.get_weights())
    ty = (torch.sigmoid(torch.tensor(x).reshape(5, 6) @ k1) * torch.tensor(mask)) @ k2 + b2
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(grads, (k1, k2, b2), strict=True):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-4, atol=1e-5)
    assert set(np.unique(mask).tolist()) <= {0.0, 2.0}
    np.testing.assert_array_equal(model(x), model(x))  # inference: no dropout


def test_input_gradient_through_the_first_layer():
    """Layer.backward returns dL/dx: check it for Dense against torch."""
    rng = np.random.default_rng(5)
    layer = nn.Dense(3, activation="leaky_relu", input_shape=(4,))
    x = rng.normal(size=(2, 4)).astype(np.float32)
    g = rng.normal(size=(2, 3)).astype(np.float32)
    layer(x)
    dx = layer.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.leaky_relu(tx @ torch.tensor(layer.kernel) + torch.tensor(layer.bias), 0.2)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: nn.Dense(3, activation="gelu"),
    lambda: nn.Activation("softmax"),
    lambda: nn.Dropout(0.5, seed=0),
    lambda: nn.Flatten(),
    lambda: nn.InputLayer(shape=(2, 3)),
], ids=["Dense", "Activation", "Dropout", "Flatten", "InputLayer"])
def test_every_layer_input_gradient_matches_finite_differences(make):
    """dL/dx from each layer's backward against central differences, L = sum(g * layer(x)), float64."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 2, 3))
    if isinstance(make(), nn.Dense | nn.Activation):
        x = x.reshape(4, 6)
    nn.set_random_seed(0)
    layer = make()
    layer.build(x.shape[1:])
    if isinstance(layer, nn.Dense):  # double precision weights, for a tight check
        layer.kernel, layer.bias = layer.kernel.astype(np.float64), layer.bias.astype(np.float64)
        layer.grad_kernel, layer.grad_bias = np.zeros_like(layer.kernel), np.zeros_like(layer.bias)

    def forward(inp):
        if isinstance(layer, nn.Dropout):
            layer._rng = np.random.default_rng(0)  # the same mask on every call
        return layer.forward(inp, training=True)

    g = rng.normal(size=forward(x).shape)
    forward(x)
    analytic = layer.backward(g)
    numeric = np.zeros_like(x)
    h = 1e-6
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = np.sum(g * (forward(up) - forward(down))) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_dense_weight_gradients_match_finite_differences_in_float64():
    rng = np.random.default_rng(7)
    layer = nn.Dense(3, activation="sigmoid")
    layer.build((4,))
    layer.kernel, layer.bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    layer.grad_kernel, layer.grad_bias = np.zeros((4, 3)), np.zeros(3)
    x, g = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    layer.forward(x)
    layer.backward(g, need_input_grad=False)
    h = 1e-6
    for w, analytic in ((layer.kernel, layer.grad_kernel), (layer.bias, layer.grad_bias)):
        numeric = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            old = w[idx]
            w[idx] = old + h
            up = np.sum(g * layer.forward(x))
            w[idx] = old - h
            down = np.sum(g * layer.forward(x))
            w[idx] = old
            numeric[idx] = (up - down) / (2 * h)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
