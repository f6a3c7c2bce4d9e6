"""Weight initializers with Keras 3's names, defaults and formulas, drawn in float32.

Variance scaling (Glorot, He, LeCun) for a kernel of shape ``(fan_in, fan_out)``: with
``n = fan_in``, ``fan_out`` or ``(fan_in + fan_out) / 2``, the uniform variants draw from
``U(-sqrt(3 s / n), sqrt(3 s / n))`` and the normal variants from a normal of standard deviation
``sqrt(s / n) / 0.8796...`` truncated at two standard deviations (so the variance is ``s / n``).

Randomness comes from the generator set by :func:`losskit.nn.set_random_seed`, or from the
initializer's own ``seed`` (then every call gives the same values, as in Keras).

>>> import numpy as np
>>> from losskit.nn import initializers
>>> w = initializers.get("glorot_uniform")((10, 64))
>>> w.dtype, bool(np.abs(w).max() <= np.sqrt(6 / 74))
(dtype('float32'), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import utils

_TRUNCATION_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2] (Keras, TF)


class Initializer:
    """Base class: ``init(shape, dtype="float32") -> array``."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed) if self.seed is not None else utils.rng()

    def __call__(self, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Initializer:
        return cls(**config)


class Zeros(Initializer):
    """All zeros."""

    def __init__(self) -> None:
        super().__init__(None)

    def __call__(self, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        return np.zeros(shape, dtype)

    def get_config(self) -> dict[str, Any]:
        return {}


class Ones(Zeros):
    """All ones."""

    def __call__(self, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        return np.ones(shape, dtype)


class Constant(Initializer):
    """Every element ``value`` (Keras default 0.0)."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__(None)
        self.value = float(value)

    def __call__(self, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        return np.full(shape, self.value, dtype)

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class RandomUniform(Initializer):
    """``U(minval, maxval)``, Keras defaults -0.05, 0.05."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        return self._rng().uniform(self.minval, self.maxval, shape).astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class RandomNormal(Initializer):
    """``N(mean, stddev^2)``, Keras defaults 0, 0.05."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        return self._rng().normal(self.mean, self.stddev, shape).astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


def _truncated_normal(rng: np.random.Generator, stddev: float, shape: tuple[int, ...]) -> np.ndarray:
    """Normal draws, with those beyond two standard deviations redrawn."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2
    return z * stddev


class TruncatedNormal(RandomNormal):
    """``N(mean, stddev^2)`` with draws beyond two standard deviations redrawn (Keras: 0, 0.05)."""

    def __call__(self, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        return (self.mean + _truncated_normal(self._rng(), self.stddev, shape)).astype(dtype)


def _fans(shape: tuple[int, ...]) -> tuple[float, float]:
    if len(shape) < 1:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = float(np.prod(shape[:-2])) if len(shape) > 2 else 1.0
    return shape[-2] * receptive, shape[-1] * receptive


class VarianceScaling(Initializer):
    """Draws of variance ``scale / n``; ``mode`` picks n, ``distribution`` the law (see module)."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed: int | None = None) -> None:
        super().__init__(seed)
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'fan_avg'; found {mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError("distribution must be 'truncated_normal', 'untruncated_normal' or "
                             f"'uniform'; found {distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def __call__(self, shape: tuple[int, ...], dtype: Any = "float32") -> np.ndarray:
        fan_in, fan_out = _fans(tuple(shape))
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "uniform":
            limit = np.sqrt(3.0 * variance)
            w = rng.uniform(-limit, limit, shape)
        elif self.distribution == "truncated_normal":
            w = _truncated_normal(rng, np.sqrt(variance) / _TRUNCATION_STD, shape)
        else:
            w = rng.normal(0.0, np.sqrt(variance), shape)
        return w.astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


def _scaling(name: str, scale: float, mode: str, distribution: str) -> type[VarianceScaling]:
    def __init__(self: VarianceScaling, seed: int | None = None) -> None:
        VarianceScaling.__init__(self, scale, mode, distribution, seed)

    def get_config(self: VarianceScaling) -> dict[str, Any]:
        return {"seed": self.seed}

    doc = f"Variance scaling with scale={scale}, mode={mode!r}, distribution={distribution!r}."
    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config,
                                           "__doc__": doc, "__module__": __name__})


GlorotUniform = _scaling("GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _scaling("GlorotNormal", 1.0, "fan_avg", "truncated_normal")
HeUniform = _scaling("HeUniform", 2.0, "fan_in", "uniform")
HeNormal = _scaling("HeNormal", 2.0, "fan_in", "truncated_normal")
LecunUniform = _scaling("LecunUniform", 1.0, "fan_in", "uniform")
LecunNormal = _scaling("LecunNormal", 1.0, "fan_in", "truncated_normal")

INITIALIZERS: dict[str, type[Initializer]] = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_uniform": RandomUniform,
    "random_normal": RandomNormal, "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling, "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal, "lecun_uniform": LecunUniform,
    "lecun_normal": LecunNormal,
}


def get(identifier: Any) -> Initializer:
    """An initializer from a Keras name (``"he_normal"``), a class name, a config dict or an instance.

    >>> get("zeros")((2,)).tolist()
    [0.0, 0.0]
    """
    return utils.lookup("initializer", identifier, Initializer, INITIALIZERS)


def serialize(init: Initializer) -> dict[str, Any]:
    """``{"class_name", "config"}`` that :func:`get` turns back into the initializer."""
    return {"class_name": type(init).__name__, "config": init.get_config()}
