"""The engine's random generator, seeded by :func:`set_random_seed` (Keras's
``keras.utils.set_random_seed``): initializers, dropout and shuffling all draw from it; and the one
Keras-style lookup (name, class name, config dict or instance) that optimizers and initializers share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

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


def lookup(kind: str, identifier: Any, base: type[T], names: Mapping[str, type[T]], *,
           case_insensitive: bool = False) -> T:
    """The object a Keras-style identifier names: an instance of ``base`` (returned as is), a config
    dict ``{"class_name", "config"}``, or a name (a key of ``names``, or a class name)."""
    by_class = {cls.__name__: cls for cls in names.values()}
    if isinstance(identifier, base):
        return identifier
    if isinstance(identifier, dict):
        cls = by_class.get(identifier.get("class_name", ""))
        if cls is None:
            raise ValueError(f"{kind}: unknown class_name {identifier.get('class_name')!r}; expected "
                             f"one of {', '.join(sorted(by_class))}")
        return cls.from_config(identifier.get("config", {}))  # type: ignore[attr-defined]
    if isinstance(identifier, str):
        found = names.get(identifier.lower() if case_insensitive else identifier)
        found = found or by_class.get(identifier)
        if found is None:
            raise ValueError(f"{kind}: unknown name {identifier!r}; expected one of "
                             f"{', '.join(repr(n) for n in names)} or an instance of {base.__name__}")
        return found()
    raise TypeError(f"{kind} must be a name ({', '.join(names)}), a config dict or an instance of "
                    f"{base.__name__}; found {type(identifier).__name__}")
