"""Metrics for ``compile(metrics=[...])``: per-sample values averaged over the epoch, as Keras's
``MeanMetricWrapper`` does. As in Keras, ``compile``'s metrics ignore ``sample_weight`` and
``class_weight`` (Keras weights only ``weighted_metrics``); :class:`Mean` itself takes weights.

``"accuracy"``/``"acc"`` becomes binary, sparse categorical or categorical accuracy by the shapes of
``y_true`` and ``y_pred``, with Keras 3's rule: binary when ``y_pred`` has one column, sparse when
``y_true`` has lower rank than ``y_pred`` or one column against several, categorical otherwise.

>>> import numpy as np
>>> m = get("accuracy", np.array([2, 0]), np.zeros((2, 3)))
>>> m.update(np.array([2, 0]), np.array([[0.1, 0.2, 0.7], [0.1, 0.8, 0.1]]), None); m.name, m.result()
('accuracy', 0.5)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Array = np.ndarray


def _same_rank(y_true: Array, y_pred: Array) -> tuple[Array, Array]:
    """Keras's ``squeeze_or_expand_to_same_rank`` for ranks that differ by a trailing axis of size 1."""
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_pred = y_pred[..., 0]
    return y_true, y_pred


def mean_absolute_error(y_true: Array, y_pred: Array) -> Array:
    """``mean(|y_pred - y_true|)`` over the last axis."""
    y_true, y_pred = _same_rank(y_true, y_pred)
    return np.abs(y_pred - y_true).mean(axis=-1)


def mean_squared_error(y_true: Array, y_pred: Array) -> Array:
    """``mean((y_pred - y_true)^2)`` over the last axis."""
    y_true, y_pred = _same_rank(y_true, y_pred)
    return np.square(y_pred - y_true).mean(axis=-1)


def binary_accuracy(y_true: Array, y_pred: Array, threshold: float = 0.5) -> Array:
    """Fraction of ``(y_pred > threshold) == y_true`` over the last axis."""
    y_true, y_pred = _same_rank(y_true, y_pred)
    return (y_true == (y_pred > threshold)).mean(axis=-1)


def categorical_accuracy(y_true: Array, y_pred: Array) -> Array:
    """1 where ``argmax(y_pred) == argmax(y_true)``, else 0."""
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true: Array, y_pred: Array) -> Array:
    """1 where ``argmax(y_pred) == y_true`` (integer labels), else 0."""
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    return (np.argmax(y_pred, axis=-1) == y_true).astype(np.float64)


FUNCTIONS: dict[str, Callable[[Array, Array], Array]] = {
    "mae": mean_absolute_error, "mean_absolute_error": mean_absolute_error,
    "mse": mean_squared_error, "mean_squared_error": mean_squared_error,
    "binary_accuracy": binary_accuracy, "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
}


class Mean:
    """A running weighted mean of per-sample values: ``result() = sum(w * m) / sum(w)``."""

    def __init__(self, name: str, fn: Callable[[Array, Array], Array] | None = None) -> None:
        self.name, self.fn = name, fn
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0.0

    def update(self, y_true: Array, y_pred: Array, sample_weight: Array | None) -> None:
        values = np.asarray(self.fn(y_true, y_pred), dtype=np.float64) if self.fn else np.asarray(y_pred)
        if sample_weight is None:
            self.total += float(values.sum())
            self.count += values.size
        else:
            w = np.broadcast_to(np.reshape(sample_weight, sample_weight.shape + (1,) * (values.ndim -
                                                                                   sample_weight.ndim)),
                                values.shape)
            self.total += float((values * w).sum())
            self.count += float(w.sum())

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0


def check(identifier: Any) -> None:
    """Raise the error :func:`get` would raise for ``identifier``, without data (``compile`` calls it,
    so that a typo fails there rather than in ``fit``).

    >>> check("acuracy")
    Traceback (most recent call last):
    ...
    ValueError: metrics: unknown metric 'acuracy'; did you mean 'accuracy', 'binary_accuracy', 'acc'?
    Expected 'accuracy', 'acc', 'mae', 'mean_absolute_error', 'mse', 'mean_squared_error',
    'binary_accuracy', 'categorical_accuracy', 'sparse_categorical_accuracy', a loss name or a function
    """
    if isinstance(identifier, Mean) or (callable(identifier) and not isinstance(identifier, str)):
        return
    if not isinstance(identifier, str):
        raise TypeError(f"metrics: each metric must be a name or a function; found {identifier!r}")
    if identifier.lower() in ("accuracy", "acc") or identifier in FUNCTIONS:
        return
    import losskit

    try:
        losskit.get(identifier)
    except ValueError:
        import difflib

        known = ["accuracy", "acc", *FUNCTIONS]
        close = difflib.get_close_matches(identifier[:100], known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ";"
        shown = identifier if len(identifier) <= 60 else identifier[:57] + "..."
        raise ValueError(f"metrics: unknown metric {shown!r}{hint} Expected "
                         f"{', '.join(repr(n) for n in known)}, a loss name or a function") from None


def get(identifier: Any, y_true: Array, y_pred: Array) -> Mean:
    """The metric a name gives, resolved against one batch's ``y_true`` and ``y_pred`` shapes.

    Names: ``accuracy``/``acc`` (resolved as described above), ``mae``, ``mse``, their long names,
    ``binary_accuracy``, ``categorical_accuracy``, ``sparse_categorical_accuracy``, any loss name
    :func:`losskit.get` accepts (its per-sample values), or a function ``fn(y_true, y_pred)``
    returning per-sample values.
    """
    if isinstance(identifier, Mean):
        return identifier
    if callable(identifier) and not isinstance(identifier, str):
        return Mean(getattr(identifier, "__name__", "metric"), identifier)
    if not isinstance(identifier, str):
        raise TypeError(f"metrics: each metric must be a name or a function; found {identifier!r}")
    if identifier.lower() in ("accuracy", "acc"):
        binary = y_pred.shape[-1] == 1
        sparse = y_true.ndim < y_pred.ndim or (y_true.shape[-1] == 1 and y_pred.shape[-1] > 1)
        fn = binary_accuracy if binary else sparse_categorical_accuracy if sparse else categorical_accuracy
        return Mean(identifier, fn)
    if identifier in FUNCTIONS:
        return Mean(identifier, FUNCTIONS[identifier])
    import losskit

    check(identifier)
    return Mean(identifier, losskit.get(identifier).call)
