"""A Python function as the loss: ``model.compile(loss=my_loss)``, as in Keras.

Keras differentiates a custom loss ``fn(y_true, y_pred)`` by autodiff. losskit.nn runs on NumPy and
has no autodiff, so a function is accepted in one of two forms:

* ``fn(y_true, y_pred) -> values`` with one value per sample (shape ``(batch,)`` or ``(batch, ...)``):
  the gradient is taken by **central finite differences**, ``(L(p + h) - L(p - h)) / 2h`` with
  ``h = cbrt(eps) * max(|p|, 1)`` in float64. This is approximate: for a smooth function about 10
  correct digits relative to the sample's largest gradient element (fewer near a kink), costs
  ``2 K + 1`` calls of ``fn`` per step for ``K`` outputs per sample, and needs each sample's value
  to depend only on its own row of ``y_pred`` (true of every per-sample loss; a function mixing
  samples, such as a batch mean, gets a wrong gradient).
* ``fn(y_true, y_pred) -> (values, gradient)``, ``gradient[i, ...] = d values[i] / d y_pred[i, ...]``
  (same shape as ``y_pred``): the gradient is used as given, exactly; one call per step.

For a loss that is exact and fast on every array library, write a losskit ``LossDef``
(``docs/adding-a-loss.md``). Either way the value is reduced as Keras reduces a custom loss:
``sum(sample_weight * values) / values.size`` (``sum_over_batch_size``).

>>> import numpy as np
>>> def squared(y_true, y_pred):
...     return np.mean((y_pred - y_true) ** 2, axis=-1)
>>> loss = CustomLoss(squared)
>>> value, grad = loss.value_and_gradient(np.array([[1.0], [2.0]]), np.array([[2.0], [2.0]]))
>>> round(float(value), 9), np.round(grad, 6).tolist()       # mean of (1, 0); d/dp = 2 (p - y) / 2
(0.5, [[1.0], [0.0]])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._data import as_numbers

Array = np.ndarray
STEP = float(np.finfo(np.float64).eps) ** (1 / 3)


class CustomLoss:
    """Wraps ``fn(y_true, y_pred)``; has the parts of :class:`losskit.Loss` that ``Sequential`` uses
    (``__call__``, ``value_and_gradient``, ``call``, ``name``)."""

    definition = None
    options: dict[str, Any] = {}  # noqa: RUF012 (read only)

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"CustomLoss: fn must be callable; found {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "custom_loss")

    def __repr__(self) -> str:
        return f"CustomLoss({self.name})"

    def _values(self, y_true: Any, y_pred: Array) -> tuple[Array, Array | None]:
        out = self.fn(y_true, y_pred)
        grad = None
        if isinstance(out, tuple):
            if len(out) != 2:
                raise TypeError(f"loss {self.name!r} returned a tuple of {len(out)} items; return the "
                                "per-sample values, or (values, gradient)")
            out, grad = out
            grad = as_numbers(f"the gradient returned by loss {self.name!r}", grad, np.float64)
            if grad.shape != y_pred.shape:
                raise ValueError(f"loss {self.name!r} returned a gradient of shape {grad.shape}; it must "
                                 f"have y_pred's shape {y_pred.shape}")
        values = as_numbers(f"the value returned by loss {self.name!r}", out, np.float64)
        if values.ndim == 0 or values.shape[0] != y_pred.shape[0]:
            n = y_pred.shape[0]
            raise ValueError(f"loss {self.name!r} must return one value per sample, shape ({n},) "
                             f"or ({n}, ...); found shape {values.shape} (a scalar such as a "
                             "batch mean cannot be differentiated per sample: drop the final mean)")
        return values, grad

    @staticmethod
    def _weights(sample_weight: Any, values: Array) -> Array:
        if sample_weight is None:
            return np.ones(values.shape[0])
        return as_numbers("sample_weight", sample_weight, np.float64).reshape(values.shape[0])

    def call(self, y_true: Any, y_pred: Any) -> Array:
        """The function's per-sample values."""
        return self._values(y_true, np.asarray(y_pred, dtype=np.float64))[0]

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
        values, _ = self._values(y_true, np.asarray(y_pred, dtype=np.float64))
        w = self._weights(sample_weight, values)
        return float(np.sum(values * w.reshape((-1,) + (1,) * (values.ndim - 1))) / max(values.size, 1))

    def value_and_gradient(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> tuple[float, Array]:
        """The reduced value and its gradient with respect to ``y_pred`` (``y_pred``'s shape and dtype)."""
        dtype = np.asarray(y_pred).dtype
        p = np.asarray(y_pred, dtype=np.float64)
        values, grad = self._values(y_true, p)
        w = self._weights(sample_weight, values)
        scale = w / max(values.size, 1)   # d(reduced)/d(values[i, ...]) = w_i / size
        expand = (-1,) + (1,) * (values.ndim - 1)
        value = float(np.sum(values * scale.reshape(expand)))
        if grad is not None:
            return value, (grad * scale.reshape((-1,) + (1,) * (p.ndim - 1))).astype(dtype)
        flat = p.reshape(len(p), -1)
        out = np.empty_like(flat)
        for j in range(flat.shape[1]):     # column j of every sample at once: rows are independent
            h = STEP * np.maximum(np.abs(flat[:, j]), 1.0)
            up, down = flat.copy(), flat.copy()
            up[:, j] += h
            down[:, j] -= h
            h = up[:, j] - down[:, j]      # the step actually taken, after rounding
            diff = (self._values(y_true, up.reshape(p.shape))[0]
                    - self._values(y_true, down.reshape(p.shape))[0])
            out[:, j] = diff.reshape(len(p), -1).sum(axis=1) / h * scale
        return value, out.reshape(p.shape).astype(dtype)
