"""The engine's random generator, seeded by :func:`set_random_seed` (Keras's
``keras.utils.set_random_seed``): initializers, dropout and shuffling all draw from it."""

from __future__ import annotations

import numpy as np

_state: dict[str, np.random.Generator] = {"rng": np.random.default_rng()}


def set_random_seed(seed: int) -> None:
    """Make weight initialization, dropout and shuffling reproducible.

    >>> import losskit.nn as nn
    >>> nn.set_random_seed(0); a = nn.utils.rng().random()
    >>> nn.set_random_seed(0); a == nn.utils.rng().random()
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an integer; found {seed!r}")
    _state["rng"] = np.random.default_rng(int(seed))


def rng() -> np.random.Generator:
    """The generator in use."""
    return _state["rng"]
