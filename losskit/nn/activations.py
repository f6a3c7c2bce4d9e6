"""Activations, each a forward and its backward side by side (Keras 3 names and defaults).

``forward(x)`` returns ``y = f(x)``; ``backward(x, y, g)`` returns ``g * f'(x)`` (for softmax, the
vector-Jacobian product of the row), given the upstream gradient ``g`` and the saved ``x`` and ``y``.
All work elementwise on arrays of any shape, except softmax, which works over the last axis.

>>> import numpy as np
>>> from losskit.nn import activations
>>> relu = activations.get("relu")
>>> x = np.array([-1.0, 2.0], dtype=np.float32)
>>> y = relu.forward(x); y.tolist(), relu.backward(x, y, np.ones_like(x)).tolist()
([0.0, 2.0], [0.0, 1.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._numerics import sigmoid

Array = np.ndarray


@dataclass(frozen=True)
class Activation:
    """A named activation: ``forward(x) -> y`` and ``backward(x, y, g) -> dL/dx``."""

    name: str
    forward: Callable[[Array], Array]
    backward: Callable[[Array, Array, Array], Array]

    def __call__(self, x: Any) -> Array:
        return self.forward(np.asarray(x))


# relu: y = max(x, 0)        dy/dx = 1 if x > 0 else 0 (0 at x = 0, as JAX and torch)
def _relu(x: Array) -> Array:
    return np.maximum(x, 0)


def _relu_grad(x: Array, y: Array, g: Array) -> Array:
    return g * (y > 0)


# sigmoid: y = 1 / (1 + e^-x), from e^-|x| so that it never overflows (_numerics)   dy/dx = y (1 - y)
def _sigmoid(x: Array) -> Array:
    return sigmoid(np, x).astype(x.dtype, copy=False)


def _sigmoid_grad(x: Array, y: Array, g: Array) -> Array:
    return g * y * (1 - y)


# tanh: y = tanh x                                      dy/dx = 1 - y^2
def _tanh_grad(x: Array, y: Array, g: Array) -> Array:
    return g * (1 - y * y)


# softmax over the last axis: y_i = e^(x_i - m) / sum_j e^(x_j - m), m the row maximum
#   vector-Jacobian product: dL/dx_i = y_i (g_i - sum_j g_j y_j)
def _softmax(x: Array) -> Array:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def _softmax_grad(x: Array, y: Array, g: Array) -> Array:
    return y * (g - (g * y).sum(axis=-1, keepdims=True))


# linear: y = x                                         dy/dx = 1
def _linear(x: Array) -> Array:
    return x


def _linear_grad(x: Array, y: Array, g: Array) -> Array:
    return g


# gelu (exact, Keras's default approximate=False): y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2
#   dy/dx = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi).  NumPy has no erf: math.erf per element.
_erf = np.frompyfunc(math.erf, 1, 1)


def _phi_cdf(x: Array) -> Array:
    erf = np.asarray(_erf(x.astype(np.float64) / math.sqrt(2.0)), dtype=np.float64)
    return (0.5 * (1.0 + erf)).astype(x.dtype)


def _gelu(x: Array) -> Array:
    return x * _phi_cdf(x)


def _gelu_grad(x: Array, y: Array, g: Array) -> Array:
    pdf = np.exp(-0.5 * x * x) / np.asarray(math.sqrt(2 * math.pi), dtype=x.dtype)
    return g * (_phi_cdf(x) + x * pdf)


# elu (alpha = 1): y = x if x > 0 else e^x - 1          dy/dx = 1 if x > 0 else e^x = y + 1
def _elu(x: Array) -> Array:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False)


def _elu_grad(x: Array, y: Array, g: Array) -> Array:
    return g * np.where(x > 0, 1, y + 1).astype(x.dtype, copy=False)


# leaky_relu (Keras's negative_slope = 0.2): y = x if x >= 0 else 0.2 x     dy/dx = 1 if x >= 0 else 0.2
LEAKY_SLOPE = 0.2


def _leaky_relu(x: Array) -> Array:
    return np.where(x >= 0, x, x * np.asarray(LEAKY_SLOPE, dtype=x.dtype))


def _leaky_relu_grad(x: Array, y: Array, g: Array) -> Array:
    return g * np.where(x >= 0, 1, LEAKY_SLOPE).astype(x.dtype, copy=False)


# softplus: y = log(1 + e^x) = max(x, 0) + log1p(e^-|x|)   dy/dx = sigmoid(x)
def _softplus(x: Array) -> Array:
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _softplus_grad(x: Array, y: Array, g: Array) -> Array:
    return g * _sigmoid(x)


ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (
    Activation("relu", _relu, _relu_grad),
    Activation("sigmoid", _sigmoid, _sigmoid_grad),
    Activation("tanh", np.tanh, _tanh_grad),
    Activation("softmax", _softmax, _softmax_grad),
    Activation("linear", _linear, _linear_grad),
    Activation("gelu", _gelu, _gelu_grad),
    Activation("elu", _elu, _elu_grad),
    Activation("leaky_relu", _leaky_relu, _leaky_relu_grad),
    Activation("softplus", _softplus, _softplus_grad),
)}


def get(identifier: str | Activation | None) -> Activation:
    """The activation a name gives (``None`` is ``"linear"``, as in Keras).

    >>> get(None).name, get("relu").name
    ('linear', 'relu')
    """
    if identifier is None:
        return ACTIVATIONS["linear"]
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str) and identifier in ACTIVATIONS:
        return ACTIVATIONS[identifier]
    if isinstance(identifier, str):
        raise ValueError(f"activation: unknown name {identifier!r}; expected one of "
                         f"{', '.join(sorted(ACTIVATIONS))}")
    raise TypeError(f"activation must be a name ({', '.join(sorted(ACTIVATIONS))}), an Activation or "
                    f"None; found {type(identifier).__name__}")
