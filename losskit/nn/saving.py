"""Saving without pickle: weights in ``.npz`` files, models as JSON config plus weights.

``save_weights`` writes arrays ``weight_0000``, ``weight_0001``, ... in :meth:`get_weights` order.
``save_model`` writes the same arrays plus ``config.json``, a string array holding the JSON of the
architecture and the compile settings. Loading reads with ``allow_pickle=False`` and builds objects
only from the fixed tables of known layer, initializer and optimizer classes (and
:func:`losskit.deserialize` for the loss): it never runs code from the file.

The file is an ``.npz`` archive whatever its name, except that names ending in Keras's suffixes
(``.keras``, ``.h5``, ``.hdf5``) are refused: such a file would not open in Keras. Use ``.npz``.

Before anything is allocated, loading checks the file against itself: it must be a zip archive of
uncompressed ``.npy`` members (as NumPy writes them), each member's declared size must match its
header's shape and dtype, the weights must be real floating-point numbers, and their shapes must be
the ones the saved architecture gives. So memory use is bounded by the file's size, and a malformed
file gets a ``ValueError`` naming the file and what is wrong (never ``BadZipFile``, ``KeyError``,
``EOFError`` or ``MemoryError`` from inside NumPy).

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
import os
import zipfile
from typing import Any

import numpy as np

import losskit

from . import layers as layers_module
from . import optimizers

FORMAT = "losskit.nn/1"
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
MAX_CONFIG_BYTES = 1 << 22
"""The largest ``config.json`` read (4 MiB; a model's config is a few kilobytes)."""


def layer_from_config(entry: Any) -> layers_module.Layer:
    """A layer from ``{"class_name", "config"}``, looked up in the table of known layers."""
    if not isinstance(entry, dict):
        raise ValueError("a layer entry must be a dict {'class_name', 'config'}; found "
                         f"{type(entry).__name__}")
    cls = layers_module.LAYERS.get(entry.get("class_name", ""))
    if cls is None:
        raise ValueError(f"unknown layer class {str(entry.get('class_name'))[:60]!r}; expected one of "
                         f"{', '.join(layers_module.LAYERS)}")
    config = entry.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"the config of a {cls.__name__} layer must be a dict; found "
                         f"{type(config).__name__}")
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"invalid {cls.__name__} layer config {_short(config)}: {error}") from None


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_suffix(what: str, filepath: str) -> str:
    path = os.fspath(filepath)
    if not isinstance(path, str):
        raise TypeError(f"{what}: filepath must be a str or path; found {type(filepath).__name__}")
    if path.lower().endswith(KERAS_SUFFIXES):
        raise ValueError(f"{what}: {path!r} has a Keras suffix, but losskit.nn writes its own format (an "
                         ".npz archive of arrays plus a JSON config), which Keras cannot open; name the file "
                         "'....npz'. To move the weights to a Keras model of the same layers: "
                         "keras_model.set_weights(model.get_weights())")
    return path


def _write(what: str, filepath: str, arrays: dict[str, np.ndarray]) -> None:
    try:
        with open(filepath, "wb") as f:  # a file object, so that NumPy does not append ".npz"
            np.savez(f, **arrays)  # type: ignore[arg-type]
    except OSError as error:
        raise ValueError(f"{what}: cannot write filepath={filepath!r}: {error.strerror or error}") from None


def _weights(model: Any) -> dict[str, np.ndarray]:
    return {f"weight_{i:04d}": w for i, w in enumerate(model.get_weights())}


def save_weights(model: Any, filepath: str) -> None:
    """Write ``model.get_weights()`` to ``filepath`` (an ``.npz`` archive; Keras suffixes refused)."""
    path = _check_suffix("save_weights", filepath)
    _write("save_weights", path, _weights(model))


class _Archive:
    """An ``.npz`` file opened for checked reading: member headers first, data only on request."""

    def __init__(self, filepath: Any) -> None:
        self.path = os.fspath(filepath)
        try:
            with open(self.path, "rb") as f:
                start = f.read(4)
        except OSError as error:
            raise ValueError(f"cannot read {self.path!r}: {error.strerror or error}") from None
        if start != b"PK\x03\x04":
            raise ValueError(f"{self.path!r} is not a losskit.nn file (an .npz zip archive): it starts with "
                             f"{start!r}")
        try:
            self.zip = zipfile.ZipFile(self.path)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise ValueError(f"{self.path!r} is not a readable .npz archive: {error}") from None
        self.members = {i.filename[:-4]: i for i in infos if i.filename.endswith(".npy")}
        size = os.path.getsize(self.path)
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size or \
                    info.file_size > size:
                raise ValueError(f"{self.path!r}: member {info.filename[:60]!r} is compressed or declares "
                                 f"{info.file_size} bytes in a file of {size}; losskit.nn writes "
                                 "uncompressed members and reads only those")

    def close(self) -> None:
        self.zip.close()

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
        """(shape, dtype, header length) of member ``name``, checked against its declared size."""
        info = self.members[name]
        with self.zip.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except (ValueError, OSError, EOFError, SyntaxError) as error:
                raise ValueError(f"{self.path!r}: member {name!r} is not a valid .npy array: "
                                 f"{error}") from None
            offset = f.tell()
        if dtype.hasobject:
            raise ValueError(f"{self.path!r}: member {name!r} holds Python objects (dtype {dtype}); "
                             "losskit.nn files hold numbers only and are never unpickled")
        if offset + dtype.itemsize * int(np.prod(shape, dtype=np.int64)) != info.file_size:
            raise ValueError(f"{self.path!r}: member {name!r} declares shape {shape} of {dtype} but holds "
                             f"{info.file_size - offset} bytes of data (truncated or altered file)")
        return tuple(shape), dtype, offset

    def read(self, name: str) -> np.ndarray:
        shape, dtype, offset = self.header(name)
        with self.zip.open(self.members[name]) as f:
            f.read(offset)
            data = f.read()
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()

    def weight_names(self) -> list[str]:
        names = sorted(k for k in self.members if k.startswith("weight_"))
        expected = [f"weight_{i:04d}" for i in range(len(names))]
        if names != expected:
            raise ValueError(f"{self.path!r}: weight arrays must be named weight_0000, weight_0001, "
                             f"...; found {_short(names)}")
        return names

    def weights(self, shapes: list[tuple[int, ...]] | None) -> list[np.ndarray]:
        """The weight arrays, each checked (real floating point; shape as ``shapes`` when given) before
        any is read."""
        names = self.weight_names()
        headers = [self.header(name) for name in names]
        for i, (_, dtype, _) in enumerate(headers):
            if dtype.kind != "f":
                raise ValueError(f"{self.path!r}: weight {i} has dtype {dtype}; weights must be real "
                                 "floating-point numbers" + (" (a complex weight is not cut to its real part)"
                                                             if dtype.kind == "c" else ""))
        if shapes is not None and len(names) != len(shapes):
            raise ValueError(f"{self.path!r}: the architecture has {len(shapes)} weight arrays; the "
                             f"file holds {len(names)}")
        for i, (shape, _, _) in enumerate(headers):
            if shapes is not None and shape != shapes[i]:
                raise ValueError(f"{self.path!r}: weight {i} has shape {shape}; the saved architecture "
                                 f"gives {shapes[i]}")
        return [self.read(name) for name in names]


def load_weights(model: Any, filepath: str) -> None:
    """Set the model's weights from a file written by :func:`save_weights` or :func:`save_model`."""
    if not model.built:
        raise ValueError("load_weights: build the model first (give the first layer input_shape=...)")
    archive = _Archive(filepath)
    try:
        weights = archive.weights([w.shape for w in model.weights])
    finally:
        archive.close()
    model.set_weights(weights)


def save_model(model: Any, filepath: str) -> None:
    """Write architecture, compile settings and weights to one ``.npz`` archive.

    A loss that is your own Python function cannot be stored: the file then holds no compile settings
    and :func:`load_model` returns the model uncompiled, with a warning (compile it again)."""
    path = _check_suffix("save", filepath)
    config: dict[str, Any] = {"format": FORMAT, "class_name": "Sequential", "config": model.get_config()}
    if model.optimizer is not None and isinstance(model.loss, losskit.Loss):
        config["compile"] = {"optimizer": optimizers.serialize(model.optimizer),
                             "loss": losskit.serialize(model.loss),
                             "metrics": [m for m in model._metric_ids if isinstance(m, str)]}
    elif model.loss is not None:
        config["custom_loss"] = str(getattr(model.loss, "name", "custom"))
    _write("save", path, {"config.json": np.array(json.dumps(config)), **_weights(model)})


def _architecture(config: Any,
                  path: str) -> tuple[list[layers_module.Layer], list[tuple[int, ...]], str | None]:
    """The layers a config describes (no weights allocated) and the weight shapes they will have."""
    if not isinstance(config, dict) or config.get("format") != FORMAT or \
            config.get("class_name") != "Sequential":
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{path!r}: not a losskit.nn model file (format {_short(found, 60)})")
    inner = config.get("config")
    if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list) or not inner["layers"]:
        raise ValueError(f"{path!r}: the model config must be a dict with a non-empty list 'layers'")
    name = inner.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"{path!r}: the model name must be a string; found {_short(name, 60)}")
    try:
        layers = [layer_from_config(c) for c in inner["layers"]]
    except ValueError as error:
        raise ValueError(f"{path!r}: {error}") from None
    shape = layers[0].input_shape
    if shape is None:
        raise ValueError(f"{path!r}: the saved model has no input shape")
    shapes: list[tuple[int, ...]] = []
    for layer in layers:
        if layer.input_shape is not None and layer is not layers[0]:
            shape = layer.input_shape
        shapes += layer.weight_shapes(shape)
        shape = layer.output_shape_for(shape)
    return layers, shapes, name


def load_model(filepath: str) -> Any:
    """The model :func:`save_model` wrote, compiled again when it was compiled (optimizer state, like
    the step count and Adam's moments, starts fresh). The file is checked before anything is built
    (see the module's docstring)."""
    import warnings

    from .model import Sequential

    archive = _Archive(filepath)
    path = archive.path
    try:
        if "config.json" not in archive.members:
            raise ValueError(f"{path!r} holds no model config; was it written by model.save "
                             "(and not save_weights)?")
        shape, dtype, _ = archive.header("config.json")
        if dtype.kind != "U" or shape != () or archive.members["config.json"].file_size > MAX_CONFIG_BYTES:
            raise ValueError(f"{path!r}: config.json must be one string of at most {MAX_CONFIG_BYTES} bytes; "
                             f"found shape {shape}, dtype {dtype}")
        try:
            config = json.loads(str(archive.read("config.json")))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path!r}: config.json is not valid JSON ({error})") from None
        layers, shapes, name = _architecture(config, path)
        weights = archive.weights(shapes)
    finally:
        archive.close()
    model = Sequential(layers, name=name)
    model.set_weights(weights)
    if "compile" in config:
        c = config["compile"]
        try:
            if not isinstance(c, dict) or not isinstance(c.get("metrics", []), list):
                raise ValueError(f"compile settings must be a dict with a list 'metrics'; found {_short(c)}")
            model.compile(optimizer=optimizers.get(c.get("optimizer")), loss=losskit.deserialize(c["loss"]),
                          metrics=c.get("metrics", []))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path!r}: invalid compile settings: {_short(error)}") from None
    elif "custom_loss" in config:
        warnings.warn(f"load_model: {path!r} was compiled with your own loss function "
                      f"{_short(config['custom_loss'], 60)}, which a file cannot hold; the model is returned "
                      "uncompiled: call model.compile(...) again", UserWarning, stacklevel=2)
    return model
