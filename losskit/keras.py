"""Keras 3 losses computed by losskit: ``keras.losses.Loss`` subclasses, one per registered loss.

Each class has the name of the losskit class (which is Keras's name where Keras has the loss:
``CategoricalCrossentropy``, ``Huber``, ...), Keras's constructor conventions (the loss's options,
keyword-only, then ``reduction="sum_over_batch_size"``, ``name`` and ``dtype``) and a ``call(y_true,
y_pred)`` that returns the **per-sample** values of the losskit function, so that Keras's own
``Loss.__call__`` applies ``sample_weight``, ``class_weight``, masks and the reduction exactly as for
its own losses. Gradients reach Keras's training step through losskit's analytic gradient: a
``jax.custom_vjp`` on the JAX backend, a ``torch.autograd.Function`` on the torch backend.

Every class is registered with ``keras.saving.register_keras_serializable(package="losskit")``, so a
model compiled with one is saved to ``.keras`` and loaded with ``keras.models.load_model`` without
``custom_objects`` (``import losskit.keras`` first), and ``{"class_name": "losskit>Huber", "config":
{...}}`` is accepted wherever Keras takes a loss, as is the string ``"losskit>Huber"`` (or the
function name, ``"losskit>huber"``) in ``model.compile(loss=...)``, with the loss's defaults.
The classes are generated from the registry: a loss registered before this module is imported gets
its Keras class automatically (losses that need an extra input array at call time, such as Gaussian
NLL's ``var``, are left out: Keras calls a loss with ``y_true`` and ``y_pred`` only).

Differences from ``keras.losses``: the options are keyword-only (``CategoricalCrossentropy(
from_logits=True)``, not ``CategoricalCrossentropy(True)``); the values are losskit's (exact, no
clipping of probabilities to [1e-7, 1 - 1e-7]); invalid values (a probability outside [0, 1], a
class index out of range) raise a ``ValueError`` when Keras runs eagerly (``run_eagerly=True``, or
the torch backend) and are not checked inside a compiled JAX step.

A plain losskit class given to Keras (``model.compile(loss=losskit.MeanSquaredError())``) is
wrapped by Keras in its ``LossFunctionWrapper``; losskit recognises that caller and returns the
per-sample values too, through :func:`plain_loss_call`, so weights are honoured there as well.
Use the classes here to save and load models without ``custom_objects``.

>>> import numpy as np, keras, losskit.keras
>>> loss = losskit.keras.CategoricalCrossentropy(from_logits=True)
>>> y_true, y_pred = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.0, 0.0], [0.0, 0.0]])
>>> round(float(loss(y_true, y_pred, sample_weight=np.array([1.0, 3.0]))), 6)  # (1 + 3) log 2 / 2
1.386294
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

try:
    import keras
except ImportError as exc:  # no Keras, or Keras 3 without its default backend (TensorFlow)
    raise ImportError("losskit.keras needs Keras 3 and one of its backends: pip install keras and set "
                      "KERAS_BACKEND=jax or KERAS_BACKEND=torch (TensorFlow is Keras's default) "
                      f"before importing it; the import failed with: {exc}") from exc

from .losses import _core, _registry
from .losses._core import LossDef

__all__ = ["Loss", "plain_loss_call"]

_PACKAGE = "losskit"
_KERAS_MEANS = ("sum_over_batch_size", "mean")


def _set_keras_mask(values: Any, mask: Any) -> None:
    """Attach the mask of the samples that count, as Keras's own sparse cross-entropy does for its
    ``ignore_class``: Keras's ``Loss.__call__`` then divides by the number of valid samples."""
    from keras.src import backend  # set_keras_mask is not exported in keras.backend

    backend.set_keras_mask(values, mask=mask)


def per_sample_values(defn: LossDef, options: Mapping[str, Any], y_true: Any, y_pred: Any,
                      dtype: Any = None) -> Any:
    """The per-sample values of a loss, as ``keras.losses.Loss.call`` must return them: in
    ``y_pred``'s dtype, differentiable (losskit's gradient), with the Keras mask of ignored samples."""
    batch = _core.prepare(defn, y_true, y_pred, options, dtype)
    values = batch.xp.astype(_core.per_sample(defn, batch, options), batch.out_dtype)
    if batch.mask is not None:
        _set_keras_mask(values, batch.mask)
    return values


def plain_loss_call(loss: _core.Loss, y_true: Any, y_pred: Any) -> Any:
    """What a plain ``losskit.Loss`` returns when Keras calls it from ``LossFunctionWrapper`` (a
    loss given to ``compile``) or ``MeanMetricWrapper`` (a metric): its per-sample values, which
    Keras then weights and reduces with ``"sum_over_batch_size"``. A loss configured with another
    reduction is refused, since Keras would not apply it."""
    if loss.reduction not in _KERAS_MEANS:
        name = type(loss).__name__
        raise ValueError(
            f"losskit.{name}(reduction={loss.reduction!r}) was given to Keras, which calls it through "
            f"its own wrapper and always reduces with 'sum_over_batch_size' (after applying "
            f"sample_weight and class_weight); use losskit.keras.{name}(reduction={loss.reduction!r}"
            f", ...) instead, a keras.losses.Loss that applies its reduction the Keras way")
    return per_sample_values(loss.definition, loss.options, y_true, y_pred, loss.dtype)


class Loss(keras.losses.Loss):
    """Base class of the generated losses: a ``keras.losses.Loss`` whose ``call`` is a losskit loss.

    ``definition`` is the losskit declaration; ``options`` the loss's options after losskit's checks
    (defaults filled in).
    """

    definition: ClassVar[LossDef]

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None,
                 dtype: Any = None, **options: Any) -> None:
        if type(self) is Loss:
            raise TypeError("losskit.keras.Loss is the base class; use one of its subclasses, such as "
                            "losskit.keras.MeanSquaredError")
        super().__init__(name=name or _default_name(self.definition), reduction=reduction,
                         dtype=dtype)
        self._dtype_arg = dtype
        self.options = self.definition.normalise(options)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return per_sample_values(self.definition, self.options, y_true, y_pred)

    def get_config(self) -> dict[str, Any]:
        dtype = self._dtype_arg
        if dtype is not None and not isinstance(dtype, str):
            dtype = keras.dtype_policies.serialize(dtype)
        return {**super().get_config(), "dtype": dtype, **self.options}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"losskit.keras.{type(self).__name__}({args})"


def _default_name(defn: LossDef) -> str:
    """Keras's default ``name`` where Keras has the class (``Huber`` -> ``"huber_loss"``), else the
    losskit function name."""
    twin = getattr(keras.losses, defn.class_name, None)
    if isinstance(twin, type) and issubclass(twin, keras.losses.Loss):
        default = inspect.signature(twin).parameters.get("name")
        if default is not None and isinstance(default.default, str):
            return default.default
    return defn.name


def _make(defn: LossDef) -> type[Loss]:
    cls = type(defn.class_name, (Loss,), {
        "definition": defn, "__module__": __name__, "__qualname__": defn.class_name,
        "__doc__": (f"{defn.doc.strip().splitlines()[0]}\n\n    The Keras loss of "
                    f":func:`losskit.{defn.name}`: ``call`` returns its per-sample values; Keras "
                    f"applies ``sample_weight``, masks and ``reduction``.\n"
                    + _core._options_doc(defn)),
    })

    cls.__init__ = _core.signature_init(defn, Loss)  # type: ignore[misc]
    cls = keras.saving.register_keras_serializable(package=_PACKAGE, name=defn.class_name)(cls)
    _name_for_compile(cls, defn)
    return cls


def _name_for_compile(cls: type[Loss], defn: LossDef) -> None:
    """Let ``model.compile(loss="losskit>Huber")`` (or ``"losskit>huber"``) find the class.

    Keras resolves a string loss in the table of its own losses only (``keras.losses.get``), not
    among registered classes; the table is ``keras.src.losses.ALL_OBJECTS_DICT``. The added keys
    carry the package prefix, so they cannot shadow a Keras name. Keras instantiates the class
    with its defaults, as for its own names.
    """
    table = getattr(getattr(getattr(keras, "src", None), "losses", None), "ALL_OBJECTS_DICT", None)
    if isinstance(table, dict):
        for key in {defn.class_name, defn.name}:
            table[f"{_PACKAGE}>{key}"] = cls


def _usable(defn: LossDef) -> bool:
    """Keras calls a loss with ``y_true`` and ``y_pred`` only: a loss that needs another array
    cannot be one."""
    return not any(spec.required for spec in defn.inputs)


CLASSES: dict[str, type[Loss]] = {}
for _defn in _registry.definitions():
    if _usable(_defn):
        CLASSES[_defn.class_name] = globals()[_defn.class_name] = _make(_defn)
__all__ += sorted(CLASSES)
del _defn


def __getattr__(name: str) -> type[Loss]:
    """A loss registered after this module was imported (its class is made on first use)."""
    defn = next((d for d in _registry.definitions() if d.class_name == name), None)
    if defn is None or not _usable(defn):
        raise AttributeError(f"module 'losskit.keras' has no attribute {name!r}")
    CLASSES[name] = globals()[name] = _make(defn)
    return CLASSES[name]
