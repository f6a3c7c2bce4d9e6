"""Saving without pickle: weights in ``.npz`` files, models as JSON config plus weights.

``save_weights`` writes arrays ``weight_0000``, ``weight_0001``, ... in :meth:`get_weights` order.
``save_model`` writes the same arrays plus ``config.json``, a string array holding the JSON of the
architecture and the compile settings. Loading reads with ``allow_pickle=False`` and builds objects
only from the fixed tables of known layer, initializer and optimizer classes (and
:func:`losskit.deserialize` for the loss): it never runs code from the file.

>>> import os, tempfile, numpy as np
>>> from losskit.nn import Sequential, Dense, load_model
>>> model = Sequential([Dense(2, input_shape=(3,), activation="tanh")])
>>> model.compile(optimizer="sgd", loss="mse")
>>> path = os.path.join(tempfile.mkdtemp(), "model.npz"); model.save(path)
>>> again = load_model(path)
>>> all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
True
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

import losskit

from . import layers as layers_module
from . import optimizers

FORMAT = "losskit.nn/1"


def layer_from_config(entry: dict[str, Any]) -> layers_module.Layer:
    """A layer from ``{"class_name", "config"}``, looked up in the table of known layers."""
    cls = layers_module.LAYERS.get(entry.get("class_name", ""))
    if cls is None:
        raise ValueError(f"unknown layer class {entry.get('class_name')!r}; expected one of "
                         f"{', '.join(layers_module.LAYERS)}")
    return cls.from_config(entry.get("config", {}))


def _write(filepath: str, arrays: dict[str, np.ndarray]) -> None:
    with open(filepath, "wb") as f:  # a file object, so that NumPy does not append ".npz"
        np.savez(f, **arrays)  # type: ignore[arg-type]


def _weights(model: Any) -> dict[str, np.ndarray]:
    return {f"weight_{i:04d}": w for i, w in enumerate(model.get_weights())}


def save_weights(model: Any, filepath: str) -> None:
    """Write ``model.get_weights()`` to ``filepath`` (an ``.npz`` archive, whatever the name)."""
    _write(str(filepath), _weights(model))


def _read_weights(data: Any, filepath: str) -> list[np.ndarray]:
    names = sorted(k for k in data.files if k.startswith("weight_"))
    return [data[k] for k in names]


def load_weights(model: Any, filepath: str) -> None:
    """Set the model's weights from a file written by :func:`save_weights` or :func:`save_model`."""
    with np.load(str(filepath), allow_pickle=False) as data:
        weights = _read_weights(data, filepath)
    if not model.built:
        raise ValueError("load_weights: build the model first (give the first layer input_shape=...)")
    model.set_weights(weights)


def save_model(model: Any, filepath: str) -> None:
    """Write architecture, compile settings and weights to one ``.npz`` archive."""
    config: dict[str, Any] = {"format": FORMAT, "class_name": "Sequential", "config": model.get_config()}
    if model.optimizer is not None and model.loss is not None:
        config["compile"] = {"optimizer": optimizers.serialize(model.optimizer),
                             "loss": losskit.serialize(model.loss),
                             "metrics": [m for m in model._metric_ids if isinstance(m, str)]}
    _write(str(filepath), {"config.json": np.array(json.dumps(config)), **_weights(model)})


def load_model(filepath: str) -> Any:
    """The model :func:`save_model` wrote, compiled again when it was compiled (optimizer state, like
    the step count and Adam's moments, starts fresh)."""
    from .model import Sequential

    with np.load(str(filepath), allow_pickle=False) as data:
        if "config.json" not in data.files:
            raise ValueError(f"{filepath} holds no model config; was it written by model.save "
                             "(and not save_weights)?")
        config = json.loads(str(data["config.json"]))
        weights = _read_weights(data, filepath)
    if config.get("format") != FORMAT or config.get("class_name") != "Sequential":
        raise ValueError(f"{filepath}: not a losskit.nn model file (format {config.get('format')!r})")
    model = Sequential.from_config(config["config"])
    if not model.built:
        raise ValueError(f"{filepath}: the saved model has no input shape")
    model.set_weights(weights)
    if "compile" in config:
        c = config["compile"]
        model.compile(optimizer=optimizers.get(c["optimizer"]), loss=losskit.deserialize(c["loss"]),
                      metrics=c["metrics"])
    return model
