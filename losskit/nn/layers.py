"""Layers: each keeps its forward and its backward side by side, as micrograd keeps each op's.

A layer's ``forward(x, training)`` saves what its ``backward`` needs; ``backward(g)`` takes
``g = dL/dy`` (same shape as the output), writes ``dL/dw`` into the layer's gradient arrays
(``grad_kernel``, ``grad_bias``) and returns ``dL/dx`` (or None when asked not to, for the first
layer). Arrays are float32; the batch is the first axis.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from . import activations, initializers, utils

Array = np.ndarray
_counts: dict[str, int] = {}


def _unique_name(base: str) -> str:
    n = _counts.get(base, 0)
    _counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def _shape(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = (int(value),)
    if not isinstance(value, tuple | list) or not all(
            isinstance(d, int | np.integer) and not isinstance(d, bool) and d > 0 for d in value):
        raise TypeError(f"{name} must be a tuple of positive integers (the shape of one sample, "
                        f"without the batch axis), e.g. (10,); found {value!r}")
    return tuple(int(d) for d in value)


class Layer:
    """Base class. Subclasses set ``weight_names`` and implement ``build``, ``forward``, ``backward``."""

    weight_names: ClassVar[tuple[str, ...]] = ()
    default_name: ClassVar[str] = "layer"

    def __init__(self, name: str | None = None, input_shape: Any = None, trainable: bool = True) -> None:
        self.name = name if name is not None else _unique_name(self.default_name)
        self.input_shape = None if input_shape is None else _shape("input_shape", input_shape)
        self.trainable = bool(trainable)
        self.built = False

    # -- building
    def build(self, input_shape: tuple[int, ...]) -> None:
        """Create the weights for samples of shape ``input_shape`` (no batch axis)."""
        self.built = True

    def output_shape_for(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    @property
    def weights(self) -> list[Array]:
        return [getattr(self, n) for n in self.weight_names if getattr(self, n, None) is not None]

    @property
    def grads(self) -> list[Array]:
        return [getattr(self, "grad_" + n) for n in self.weight_names if getattr(self, n, None) is not None]

    def count_params(self) -> int:
        return sum(w.size for w in self.weights)

    def weight_shapes(self, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The shapes :meth:`build` would give the weights for samples of ``input_shape``, without
        allocating them (the model loader checks a file against these first)."""
        return []

    def get_weights(self) -> list[Array]:
        """Copies of this layer's weights (Dense: kernel ``(in, units)``, then bias), as Keras."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Any) -> None:
        """Set this layer's weights from a list in :meth:`get_weights` order (written in place, so a
        model holding the layer sees them).

        >>> layer = Dense(2, input_shape=(3,)); layer.build((3,))
        >>> layer.set_weights([np.ones((3, 2)), np.array([0.5, -0.5])]); layer(np.ones((1, 3))).tolist()
        [[3.5, 2.5]]
        """
        from ._data import as_numbers

        own = self.weights
        if not self.built and self.weight_names:
            raise ValueError(f"set_weights: layer {self.name!r} has no weights yet; build it first (give "
                             "input_shape=..., or call it on data)")
        if not isinstance(weights, list | tuple) or len(weights) != len(own):
            found = len(weights) if isinstance(weights, list | tuple) else type(weights).__name__
            raise ValueError(f"set_weights: layer {self.name!r} has {len(own)} weight arrays "
                             f"{[w.shape for w in own]}; found {found}")
        new = [as_numbers(f"set_weights: weight {i} of layer {self.name!r}", v)
               for i, v in enumerate(weights)]
        for i, (w, v) in enumerate(zip(own, new, strict=True)):
            if v.shape != w.shape:
                raise ValueError(f"set_weights: weight {i} of layer {self.name!r} must have shape {w.shape}; "
                                 f"found {v.shape}")
        for w, v in zip(own, new, strict=True):
            w[...] = v

    # -- forward and backward
    def forward(self, x: Array, training: bool = False) -> Array:
        raise NotImplementedError

    def backward(self, g: Array, need_input_grad: bool = True) -> Array | None:
        raise NotImplementedError

    def __call__(self, x: Any, training: bool = False) -> Array:
        x = np.asarray(x, dtype=np.float32)
        if not self.built:
            self.build(tuple(x.shape[1:]))
        return self.forward(x, training)

    # -- configuration
    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "trainable": self.trainable}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        config = dict(config)
        if "input_shape" in config:
            config["input_shape"] = tuple(config["input_shape"])
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class Dense(Layer):
    """Fully connected layer: ``y = activation(x @ kernel + bias)``.

    Shapes: x ``(batch, in)``, kernel ``(in, units)`` (Keras layout), bias ``(units,)``, y
    ``(batch, units)``. Backward, with ``gz = dL/dz`` from the activation's backward:
    ``dL/dkernel = x^T gz``, ``dL/dbias = sum_batch gz``, ``dL/dx = gz kernel^T``.

    >>> import numpy as np
    >>> layer = Dense(2, kernel_initializer="ones", input_shape=(3,))
    >>> layer(np.array([[1.0, 2.0, 3.0]])).tolist()
    [[6.0, 6.0]]
    >>> layer.backward(np.array([[1.0, -1.0]], dtype=np.float32)).tolist(), layer.grad_bias.tolist()
    ([[0.0, 0.0, 0.0]], [1.0, -1.0])
    """

    weight_names = ("kernel", "bias")
    default_name = "dense"

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 input_shape: Any = None, name: str | None = None, trainable: bool = True) -> None:
        super().__init__(name, input_shape, trainable)
        if isinstance(units, bool) or not isinstance(units, int | np.integer) or units < 1:
            raise TypeError(f"Dense: units must be a positive integer; found {units!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel: Array = np.empty((0, self.units), np.float32)  # created by build
        self.bias: Array | None = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.kernel = self.kernel_initializer((input_shape[-1], self.units)).astype(np.float32)
        self.grad_kernel = np.zeros_like(self.kernel)
        if self.use_bias:
            self.bias = self.bias_initializer((self.units,)).astype(np.float32)
            self.grad_bias = np.zeros_like(self.bias)
        self.built = True

    def output_shape_for(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*input_shape[:-1], self.units)

    def weight_shapes(self, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        return [(input_shape[-1], self.units)] + ([(self.units,)] if self.use_bias else [])

    def forward(self, x: Array, training: bool = False) -> Array:
        z = x @ self.kernel                                   # z = x W + b
        if self.bias is not None:
            z += self.bias
        y = self.activation.forward(z)                        # y = f(z)
        self._x, self._z, self._y = x, z, y
        return y

    def backward(self, g: Array, need_input_grad: bool = True) -> Array | None:
        gz = self.activation.backward(self._z, self._y, g)    # dL/dz = f'(z) * g
        x2, gz2 = self._x, gz
        if x2.ndim != 2:  # (batch, ..., in): every leading axis is a batch axis
            x2, gz2 = x2.reshape(-1, x2.shape[-1]), gz.reshape(-1, self.units)
        np.matmul(x2.T, gz2, out=self.grad_kernel)            # dL/dW = x^T dL/dz
        if self.bias is not None:
            np.add.reduce(gz2, axis=0, out=self.grad_bias)    # dL/db = sum over the batch
        return gz @ self.kernel.T if need_input_grad else None  # dL/dx = dL/dz W^T

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "activation": self.activation.name,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}


class Activation(Layer):
    """Applies an activation: ``y = f(x)``, ``dL/dx = f'(x) * dL/dy``.

    >>> Activation("relu")(np.array([[-1.0, 3.0]])).tolist()
    [[0.0, 3.0]]
    """

    default_name = "activation"

    def __init__(self, activation: Any, name: str | None = None, input_shape: Any = None,
                 trainable: bool = True) -> None:
        super().__init__(name, input_shape, trainable)
        self.activation = activations.get(activation)

    def forward(self, x: Array, training: bool = False) -> Array:
        y = self.activation.forward(x)
        self._x, self._y = x, y
        return y

    def backward(self, g: Array, need_input_grad: bool = True) -> Array | None:
        return self.activation.backward(self._x, self._y, g)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation.name}


class Dropout(Layer):
    """Inverted dropout: in training ``y = x * m / (1 - rate)``, ``m ~ Bernoulli(1 - rate)`` per
    element, and ``dL/dx = dL/dy * m / (1 - rate)``; at inference ``y = x``.

    >>> Dropout(0.5)(np.ones((1, 3))).tolist()      # inference: identity
    [[1.0, 1.0, 1.0]]
    """

    default_name = "dropout"

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None,
                 input_shape: Any = None, trainable: bool = True) -> None:
        super().__init__(name, input_shape, trainable)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be a number in [0, 1); found {rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self._mask: Array | None = None

    def forward(self, x: Array, training: bool = False) -> Array:
        if not training or self.rate == 0:
            self._mask = None
            return x
        rng = self._rng if self._rng is not None else utils.rng()
        keep = rng.random(x.shape, dtype=np.float32) >= self.rate
        self._mask = keep * np.float32(1 / (1 - self.rate))
        return x * self._mask

    def backward(self, g: Array, need_input_grad: bool = True) -> Array | None:
        return g if self._mask is None else g * self._mask

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Flatten(Layer):
    """Reshapes each sample to a vector: ``(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)``.

    >>> Flatten()(np.zeros((2, 3, 4))).shape
    (2, 12)
    """

    default_name = "flatten"

    def output_shape_for(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(input_shape)),)

    def forward(self, x: Array, training: bool = False) -> Array:
        self._in_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, g: Array, need_input_grad: bool = True) -> Array | None:
        return g.reshape(self._in_shape)


class InputLayer(Layer):
    """Declares the shape of one sample; passes its input through unchanged."""

    default_name = "input_layer"

    def __init__(self, shape: Any = None, name: str | None = None, input_shape: Any = None,
                 trainable: bool = True) -> None:
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise TypeError("Input: shape is required, e.g. Input(shape=(10,))")
        super().__init__(name, shape, trainable)
        self.built = True

    def forward(self, x: Array, training: bool = False) -> Array:
        return x

    def backward(self, g: Array, need_input_grad: bool = True) -> Array | None:
        return g

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["shape"] = config.pop("input_shape")
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        config = dict(config)
        config["shape"] = tuple(config["shape"])
        return cls(**config)


def Input(shape: Any, name: str | None = None) -> InputLayer:
    """The input of a :class:`~losskit.nn.Sequential` model: ``Sequential([Input((10,)), ...])``.

    >>> Input(shape=(10,)).input_shape
    (10,)
    """
    return InputLayer(shape=shape, name=name)


LAYERS: dict[str, type[Layer]] = {c.__name__: c for c in (Dense, Activation, Dropout, Flatten, InputLayer)}
