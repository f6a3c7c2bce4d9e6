"""Names and aliases -> losses; ``get``, ``serialize`` and ``deserialize``."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from ._core import Loss, LossDef, make_class, make_function

_DEFINITIONS: dict[str, LossDef] = {}
_CLASSES: dict[str, type[Loss]] = {}
_FUNCTIONS: dict[str, Callable[..., Any]] = {}
_BY_NAME: dict[str, type[Loss]] = {}


def register(defn: LossDef) -> tuple[Callable[..., Any], type[Loss]]:
    """Build a loss's function and class from its definition and file every name it answers to."""
    fn, cls = make_function(defn), make_class(defn)
    _DEFINITIONS[defn.name] = defn
    _CLASSES[defn.class_name] = cls
    _FUNCTIONS[defn.name] = fn
    for name in (defn.name, defn.class_name, *defn.aliases):
        if name in _BY_NAME:
            raise ValueError(f"the loss name {name!r} is registered twice")
        _BY_NAME[name] = cls
    return fn, cls


def names() -> list[str]:
    """Every identifier :func:`get` accepts as a string, sorted."""
    return sorted(_BY_NAME)


def definitions() -> list[LossDef]:
    """The definition of every registered loss."""
    return list(_DEFINITIONS.values())


def get(identifier: Any) -> Loss:
    """The loss an identifier names, as a :class:`Loss` instance.

    Accepts a function name, class name or alias (``"mse"``, ``"MeanSquaredError"``,
    ``"mean_squared_error"``), a loss class, a loss instance (returned as is), a loss function, or a
    config dict from :func:`serialize`. Unlike Keras, a function name also returns a ``Loss``
    instance (with default options), so the result always has ``gradient`` and
    ``value_and_gradient``; its ``call`` gives the per-sample values the Keras function would.

    >>> import losskit
    >>> losskit.get("mse")
    MeanSquaredError(name='mean_squared_error', reduction='sum_over_batch_size', dtype=None)
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if callable(identifier) and getattr(identifier, "__name__", None) in _FUNCTIONS and \
            _FUNCTIONS[identifier.__name__] is identifier:
        return _BY_NAME[identifier.__name__]()
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        close = difflib.get_close_matches(identifier, names(), n=3, cutoff=0.5)
        lowered = [n for n in names() if n.lower() == identifier.lower()]
        hint = ", ".join(repr(c) for c in dict.fromkeys(lowered + close))
        raise ValueError(f"unknown loss {identifier!r}"
                         + (f"; did you mean {hint}?" if hint else "")
                         + " (losskit.names() lists every accepted name)")
    raise TypeError(f"cannot interpret {identifier!r} as a loss: pass a name, a loss class or "
                    "instance, a loss function, or a config dict")


def serialize(loss: Loss) -> dict[str, Any]:
    """A JSON-ready dict ``{"module", "class_name", "config"}`` that :func:`deserialize` restores."""
    if not isinstance(loss, Loss):
        raise TypeError(f"serialize expects a losskit Loss instance; found {type(loss).__name__}")
    return {"module": "losskit", "class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config: Mapping[str, Any]) -> Loss:
    """The loss a :func:`serialize` dict (or Keras's ``{"class_name", "config"}``) describes."""
    if "class_name" not in config:
        raise ValueError(f"a loss config needs a 'class_name' key; found keys {sorted(config)}")
    name = config["class_name"]
    if name not in _CLASSES:
        get(name)  # raises with suggestions when the name is unknown
        return _BY_NAME[name](**dict(config.get("config", {})))
    return _CLASSES[name].from_config(config.get("config", {}))
