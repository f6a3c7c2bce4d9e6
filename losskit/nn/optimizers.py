"""Optimizers with Keras 3's update rules, defaults and names, in float32.

``optimizer.apply(grads, weights)`` updates each weight array in place from its gradient (the lists
line up, as ``model.backward`` and ``model.trainable_weights`` do). Every rule is elementwise, so when
the weights are consecutive views of one buffer (as in a :class:`~losskit.nn.Sequential` model) the
update runs once over the whole buffer instead of once per array; the result is the same.

If ``weight_decay`` is set, ``w <- w - w * weight_decay * lr`` runs before the rule (decoupled,
as Keras does for every optimizer; AdamW's default is 0.004).

>>> import numpy as np
>>> w = np.array([1.0, -2.0], dtype=np.float32)
>>> SGD(learning_rate=0.1).apply([np.array([1.0, 1.0], dtype=np.float32)], [w])
>>> [round(v, 6) for v in w.tolist()]     # w - 0.1 g
[0.9, -2.1]
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .utils import lookup

Array = np.ndarray
F32 = np.float32
CHUNK = 16384  # elements per pass of the flat update: its 6 float32 chunks stay in L2 cache


def _flat_base(arrays: list[Array]) -> Array | None:
    """The 1-D buffer that ``arrays`` tile in order, or None."""
    base = arrays[0].base if arrays else None
    if base is None or base.ndim != 1 or not base.flags.c_contiguous or base.dtype != np.float32:
        return None
    pos = base.__array_interface__["data"][0]
    end = pos + base.nbytes
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous or a.__array_interface__["data"][0] != pos:
            return None
        pos += a.nbytes
    return base if pos == end else None


class Optimizer:
    """Base class: slot buffers, weight decay and the flat-buffer fast path.

    A subclass names its slots (``slots``) and writes ``update(g, w, lr, *slot_arrays, tmp1, tmp2)``,
    which changes ``w`` and the slots in place (``tmp1``, ``tmp2``: scratch arrays shaped like ``w``,
    so that a step allocates nothing).
    """

    slots: ClassVar[tuple[str, ...]] = ()
    slot_init: ClassVar[float] = 0.0

    def __init__(self, learning_rate: float = 0.001, weight_decay: float | None = None,
                 name: str | None = None) -> None:
        self.learning_rate = _positive("learning_rate", learning_rate)
        self.weight_decay = None if weight_decay is None else float(weight_decay)
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._key: tuple[Any, ...] | None = None
        self._refs: tuple[Any, Any] = (None, None)
        self._state: list[Array] = []

    # -- the step
    def apply(self, grads: list[Array], weights: list[Array]) -> None:
        """One update of every weight from its gradient (Keras's ``optimizer.apply``)."""
        if len(grads) != len(weights):
            raise ValueError(f"apply: got {len(grads)} gradients for {len(weights)} weights; "
                             "the two lists must line up")
        if not (grads is self._refs[0] and weights is self._refs[1]):  # a model passes the same lists
            key = (*map(id, grads), *map(id, weights))
            if key != self._key:
                self._prepare(grads, weights, key)
            self._refs = (grads, weights)
        lr = F32(self.learning_rate)
        self.iterations += 1
        for g, w, slots in self._groups:
            if self.weight_decay is not None:
                w -= w * (F32(self.weight_decay) * lr)
            self.update(g, w, lr, *slots)

    def apply_gradients(self, grads_and_vars: Any) -> None:
        """Keras's older form: ``apply_gradients(zip(grads, weights))``."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [w for _, w in pairs])

    def update(self, g: Array, w: Array, lr: Any, *slots: Array) -> None:
        raise NotImplementedError

    def _prepare(self, grads: list[Array], weights: list[Array], key: tuple[Any, ...]) -> None:
        for g, w in zip(grads, weights, strict=True):
            if g.shape != w.shape:
                raise ValueError(f"apply: a gradient of shape {g.shape} does not match its weight of "
                                 f"shape {w.shape}")
        sizes = [w.size for w in weights]
        total = sum(sizes)
        if len(self._state) != len(self.slots) or any(s.size != total for s in self._state):
            self._state = [np.full(total, self.slot_init, np.float32) for _ in self.slots]
        flat_g, flat_w = _flat_base(grads), _flat_base(weights)
        if flat_g is not None and flat_w is not None:
            # one pass per CHUNK elements: every array of a chunk stays in cache through the whole rule
            scratch = [np.empty(min(total, CHUNK), np.float32) for _ in range(2)]
            self._groups = [(flat_g[lo:lo + CHUNK], flat_w[lo:lo + CHUNK],
                             [s[lo:lo + CHUNK] for s in self._state]
                             + [t[:min(CHUNK, total - lo)] for t in scratch])
                            for lo in range(0, total, CHUNK)]
        else:
            offsets = np.cumsum([0, *sizes])
            self._groups = [(g, w, [s[offsets[i]:offsets[i + 1]].reshape(w.shape) for s in self._state]
                             + [np.empty_like(w), np.empty_like(w)])
                            for i, (g, w) in enumerate(zip(grads, weights, strict=True))]
        self._key = key
        self._arrays = (list(grads), list(weights))  # keep the arrays alive so that their ids stay theirs

    # -- configuration
    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number; found {value!r}")
    return float(value)


class SGD(Optimizer):
    """Stochastic gradient descent (Keras 3 defaults: learning_rate=0.01, momentum=0, nesterov=False).

    ``m <- momentum m - lr g``; then ``w <- w + m`` (or ``w <- w + momentum m - lr g`` with Nesterov);
    without momentum ``w <- w - lr g``.
    """

    slots = ("momentum",)

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float | None = None, name: str | None = None) -> None:
        super().__init__(learning_rate, weight_decay, name)
        self.momentum, self.nesterov = _positive("momentum", momentum), bool(nesterov)

    def update(self, g: Array, w: Array, lr: Any, *slots: Array) -> None:
        m, t1, t2 = slots
        np.multiply(g, lr, out=t1)                       # t1 = lr g
        if self.momentum == 0:
            w -= t1
            return
        mom = F32(self.momentum)
        m *= mom
        m -= t1                                          # m = momentum m - lr g
        if self.nesterov:
            np.multiply(m, mom, out=t2)
            t2 -= t1
            w += t2                                      # w += momentum m - lr g
        else:
            w += m

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Keras 3 defaults: learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7).

    At step ``t``: ``m <- m + (g - m)(1 - beta_1)``, ``v <- v + (g^2 - v)(1 - beta_2)``,
    ``w <- w - alpha m / (sqrt(v) + epsilon)`` with ``alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)``.
    """

    slots = ("momentum", "velocity")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float | None = None, name: str | None = None) -> None:
        super().__init__(learning_rate, weight_decay, name)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def update(self, g: Array, w: Array, lr: Any, *slots: Array) -> None:
        m, v, t1, t2 = slots
        t = F32(self.iterations)  # in float32 like Keras: alpha's rounding shows in the weights
        alpha = lr * np.sqrt(1 - F32(self.beta_2) ** t) / (1 - F32(self.beta_1) ** t)
        np.subtract(g, m, out=t1)
        t1 *= F32(1 - self.beta_1)
        m += t1                                          # m += (g - m)(1 - beta_1)
        np.multiply(g, g, out=t1)
        t1 -= v
        t1 *= F32(1 - self.beta_2)
        v += t1                                          # v += (g^2 - v)(1 - beta_2)
        np.sqrt(v, out=t1)
        t1 += F32(self.epsilon)
        np.multiply(m, alpha, out=t2)
        t2 /= t1
        w -= t2                                          # w -= alpha m / (sqrt(v) + epsilon)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras 3 default weight_decay=0.004): before each Adam step,
    ``w <- w - w * weight_decay * lr``."""

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, name: str | None = None) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, name)


class RMSprop(Optimizer):
    """RMSprop (Keras 3 defaults: learning_rate=0.001, rho=0.9, momentum=0, epsilon=1e-7, centered=False).

    ``v <- rho v + (1 - rho) g^2``; ``d = v + epsilon`` (centered: ``a <- rho a + (1 - rho) g``,
    ``d = v - a^2 + epsilon``); ``inc = lr g / sqrt(d)``; ``w <- w - inc``, or with momentum
    ``m <- momentum m + inc``, ``w <- w - m``.
    """

    slots = ("velocity", "momentum", "average_gradient")

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, weight_decay: float | None = None,
                 name: str | None = None) -> None:
        super().__init__(learning_rate, weight_decay, name)
        self.rho, self.momentum, self.epsilon = float(rho), _positive("momentum", momentum), float(epsilon)
        self.centered = bool(centered)

    def update(self, g: Array, w: Array, lr: Any, *slots: Array) -> None:
        v, m, a = slots[:3]
        rho = F32(self.rho)
        v *= rho
        v += F32(1 - self.rho) * (g * g)
        if self.centered:
            a *= rho
            a += F32(1 - self.rho) * g
            denominator = v - a * a + F32(self.epsilon)
        else:
            denominator = v + F32(self.epsilon)
        increment = lr * g / np.sqrt(denominator)
        if self.momentum > 0:
            m *= F32(self.momentum)
            m += increment
            w -= m
        else:
            w -= increment

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad (Keras 3 defaults: learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7).

    ``acc <- acc + g^2``; ``w <- w - lr g / sqrt(acc + epsilon)``.
    """

    slots = ("accumulator",)

    def __init__(self, learning_rate: float = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, weight_decay: float | None = None, name: str | None = None) -> None:
        super().__init__(learning_rate, weight_decay, name)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.slot_init = self.initial_accumulator_value  # type: ignore[misc]
        self.epsilon = float(epsilon)

    def update(self, g: Array, w: Array, lr: Any, *slots: Array) -> None:
        acc = slots[0]
        acc += g * g
        w -= lr * g / np.sqrt(acc + F32(self.epsilon))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop,
                                          "adagrad": Adagrad}


def get(identifier: Any) -> Optimizer:
    """An optimizer from a name (``"adam"``, case-insensitive, as Keras), a config dict or an instance.

    >>> get("adam")
    Adam(name='adam', learning_rate=0.001, weight_decay=None, beta_1=0.9, beta_2=0.999, epsilon=1e-07)
    """
    return lookup("optimizer", identifier, Optimizer, OPTIMIZERS, case_insensitive=True)


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """``{"class_name", "config"}`` for :func:`get`."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "get", "serialize"]
