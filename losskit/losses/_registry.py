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
_ALIAS_OPTIONS: dict[str, dict[str, Any]] = {}


class Alias(str):
    """A peer's name for a loss, with the options that give the peer's defaults.

    ``LossDef(aliases=(..., Alias("CrossEntropyLoss", from_logits=True)))``: ``get("CrossEntropyLoss")``
    then returns ``SparseCategoricalCrossentropy(from_logits=True)``, PyTorch's default, where a plain
    alias would give losskit's (probabilities). ``note`` says what still differs from the peer (shown on
    the catalog page). A peer's function name is declared as an ``Alias`` even without options
    (``Alias("nll_loss")``): it resolves with :func:`get` but is never a module-level function
    (:func:`function_aliases`), because the peer's function takes its arguments in another order
    (``(input, target)``) where losskit's take ``(y_true, y_pred)``. A peer-qualified spelling such as
    ``"optax.kl_divergence"`` resolves a name that two peers use for different losses. An ``Alias`` is
    a ``str``, so an alias tuple mixes both kinds.
    """

    options: dict[str, Any]
    note: str

    def __new__(cls, name: str, note: str = "", **options: Any) -> Alias:
        alias = super().__new__(cls, name)
        alias.options, alias.note = dict(options), note
        return alias


def function_aliases(defn: LossDef) -> list[str]:
    """The aliases that are also module-level names of the loss's function, as Keras has ``mse``,
    ``MSE`` and ``kld``: losskit's own spellings (plain strings, not a peer's :class:`Alias`) written
    as a Keras function name is, all lower-case snake_case or an all upper-case abbreviation."""
    return [a for a in defn.aliases if not isinstance(a, Alias) and a.isidentifier()
            and (a.islower() or a.isupper())]


def alias_options(name: str) -> dict[str, Any]:
    """The options a registered name implies (empty but for a peer :class:`Alias`)."""
    return dict(_ALIAS_OPTIONS.get(name, {}))


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
        if isinstance(name, Alias) and name.options:
            defn.normalise(name.options)  # a wrong option fails at import, not at the user's get()
            _ALIAS_OPTIONS[str(name)] = dict(name.options)
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
    ``"mean_squared_error"``) or a peer's name (``"MSELoss"``, ``"CrossEntropyLoss"``: with the
    peer's defaults, e.g. ``from_logits=True``, see :class:`Alias`), a loss class, a loss instance
    (returned as is), a loss function, or a config dict from :func:`serialize`. Unlike Keras, a
    function name also returns a ``Loss`` instance (with default options), so the result always has
    ``gradient`` and ``value_and_gradient``; its ``call`` gives the per-sample values the Keras
    function would.

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
            return _BY_NAME[identifier](**alias_options(identifier))
        raise ValueError(_unknown(identifier))
    raise TypeError(f"cannot interpret {_short(identifier)} (a {type(identifier).__name__}) as a loss: "
                    "pass a name, a loss class or instance, a loss function, or a config dict")


_SHOWN = 60  # characters of a caller's value quoted in a message


def _short(value: Any) -> str:
    """``repr(value)``, cut to a few dozen characters (a message never echoes a huge input)."""
    if isinstance(value, str) and len(value) > _SHOWN:
        return f"{value[:_SHOWN]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _unknown(name: str) -> str:
    """"unknown loss" with at most three close names (only for names of a plausible length)."""
    hint = ""
    if len(name) <= 2 * max(len(n) for n in _BY_NAME):
        lowered = [n for n in names() if n.lower() == name.lower()]
        close = difflib.get_close_matches(name, names(), n=3, cutoff=0.5)
        if not close:
            close = difflib.get_close_matches(name.lower(), [n.lower() for n in names()], n=3,
                                              cutoff=0.5)
            close = [n for n in names() if n.lower() in close][:3]
        suggestions = list(dict.fromkeys(lowered + close))[:3]
        hint = ("; did you mean " + ", ".join(repr(c) for c in suggestions) + "?") if suggestions else ""
    return f"unknown loss {_short(name)}{hint} (losskit.names() lists every accepted name)"


def serialize(loss: Loss) -> dict[str, Any]:
    """A JSON-ready dict ``{"module", "class_name", "config"}`` that :func:`deserialize` restores."""
    if not isinstance(loss, Loss):
        raise TypeError(f"serialize expects a losskit Loss instance; found {type(loss).__name__}")
    return {"module": "losskit", "class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config: Mapping[str, Any]) -> Loss:
    """The loss a :func:`serialize` dict (or Keras's ``{"class_name", "config"}``) describes.

    A config that is not a mapping, whose ``class_name`` is not a string naming a loss, or whose
    ``config`` is not a mapping with string keys is refused with a ``TypeError``/``ValueError`` that
    says which part is wrong; the options themselves are checked as by the loss's constructor.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"a loss config must be a dict with 'class_name' and 'config' keys; found "
                        f"a {type(config).__name__}: {_short(config)}")
    if "class_name" not in config:
        keys = sorted(map(str, config))
        raise ValueError(f"a loss config needs a 'class_name' key; found keys {_short(keys)}")
    name = config["class_name"]
    if not isinstance(name, str):
        raise TypeError(f"a loss config's 'class_name' must be a string; found a "
                        f"{type(name).__name__}: {_short(name)}")
    options = config.get("config", {})
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError(f"the 'config' of a {_short(name)} config must be a dict of options; found a "
                        f"{type(options).__name__}: {_short(options)}")
    bad = [k for k in options if not isinstance(k, str)]
    if bad:
        raise TypeError(f"the 'config' of a {_short(name)} config must have string keys (option "
                        f"names); found {_short(bad[0])}")
    if name not in _CLASSES:
        # get raises with suggestions when unknown; a peer's alias brings its options
        return type(get(name))(**(alias_options(name) | dict(options)))
    return _CLASSES[name].from_config(options)
