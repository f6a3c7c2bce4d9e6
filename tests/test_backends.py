"""PyTorch and JAX arrays: the same kind comes out, dtypes follow the rules, autograd is guarded."""

from __future__ import annotations

import numpy as np
import pytest

import losskit

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = jax.numpy

LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
LABELS = np.array([0, 2])
ONEHOT = np.eye(3)[LABELS]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_dtypes_are_preserved(dtype):
    logits = torch.tensor(LOGITS, dtype=dtype, requires_grad=True)
    loss = losskit.CategoricalCrossentropy(from_logits=True)
    value = loss(torch.tensor(ONEHOT), logits)
    assert isinstance(value, torch.Tensor)
    assert value.dtype == dtype
    value.backward()
    assert logits.grad.dtype == dtype
    expected = loss.gradient(ONEHOT, logits.detach().double().numpy().astype(np.float64))
    np.testing.assert_allclose(logits.grad.double().numpy(), expected,
                               rtol=float(torch.finfo(dtype).eps), atol=0)


def test_torch_integer_labels_stay_integer_and_device_is_kept():
    logits = torch.tensor(LOGITS, requires_grad=True)
    labels = torch.tensor(LABELS)
    value = losskit.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    assert value.device == logits.device
    assert labels.dtype == torch.int64
    value.sum().backward()
    np.testing.assert_allclose(logits.grad.numpy(),
                               losskit.SparseCategoricalCrossentropy(
                                   from_logits=True, reduction="sum").gradient(LABELS, LOGITS))


def test_torch_refuses_to_differentiate_y_true():
    y_true = torch.tensor(ONEHOT, requires_grad=True)
    with pytest.raises(ValueError, match="gradients with respect to y_pred only"):
        losskit.mean_squared_error(y_true, torch.tensor(LOGITS, requires_grad=True))
    losskit.mean_squared_error(y_true.detach(), torch.tensor(LOGITS))  # detached: fine


def test_torch_second_derivative_is_the_derivative_of_the_gradient():
    # create_graph=True differentiates the analytic gradient (issue 9 item 1): as PyTorch's own CE
    results = []
    for fn in (lambda x: losskit.CategoricalCrossentropy(from_logits=True)(torch.tensor(ONEHOT), x),
               lambda x: torch.nn.functional.cross_entropy(x, torch.tensor(ONEHOT))):
        logits = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(fn(logits), logits, create_graph=True)
        results.append(torch.autograd.grad((grad * grad).sum(), logits)[0].numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-15)


def test_torch_validation_on_eager_values():
    with pytest.raises(ValueError, match="y_pred must lie in"):
        losskit.binary_crossentropy(torch.zeros(2, 2), torch.full((2, 2), 2.0))


def test_jax_arrays_jit_and_grad():
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True)
    logits, labels = jnp.asarray(LOGITS, dtype=jnp.float32), jnp.asarray(LABELS)
    value, grad = jax.jit(jax.value_and_grad(lambda x: loss(labels, x)))(logits)
    assert isinstance(value, jax.Array)
    assert value.dtype == jnp.float32
    assert grad.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(grad), loss.gradient(LABELS, LOGITS), rtol=1e-6)
    jitted = jax.jit(loss.gradient)(labels, logits)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(grad), rtol=1e-6)


def test_jax_refuses_to_differentiate_y_true():
    probs = jnp.asarray([[0.3, 0.7]])
    with pytest.raises(ValueError, match="gradients with respect to y_pred only"):
        jax.grad(lambda t: losskit.kl_divergence(t, probs).sum())(jnp.asarray([[0.5, 0.5]]))


def test_jax_under_jit_skips_value_checks_and_computes():
    # values are not known while tracing, so the check runs only on concrete arrays
    f = jax.jit(lambda t, p: losskit.binary_crossentropy(t, p))
    out = f(jnp.asarray([[1.0]]), jnp.asarray([[0.5]]))
    np.testing.assert_allclose(np.asarray(out), [np.log(2)], rtol=1e-6)
    with pytest.raises(ValueError, match="y_pred must lie in"):
        losskit.binary_crossentropy(jnp.asarray([[1.0]]), jnp.asarray([[1.5]]))


def test_jax_vmap():
    fn = jax.vmap(lambda t, p: losskit.mean_squared_error(t, p))
    out = fn(jnp.asarray(ONEHOT), jnp.asarray(LOGITS))
    np.testing.assert_allclose(np.asarray(out), losskit.mean_squared_error(ONEHOT, LOGITS),
                               rtol=1e-6)
