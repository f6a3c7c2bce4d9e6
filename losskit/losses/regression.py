"""Regression losses: mean squared error and mean absolute error."""

from __future__ import annotations

from typing import Any

from ._core import LossDef

Array = Any


def _mse(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i (p_i - t_i)^2        gradient: 2 (p_i - t_i) / n
    diff = y_pred - y_true
    value = xp.mean(diff * diff, axis=-1)
    return value, (2.0 / y_pred.shape[-1]) * diff if grad else None


def _mae(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i |p_i - t_i|          gradient: sign(p_i - t_i) / n, and 0 at zero error
    diff = y_pred - y_true
    value = xp.mean(xp.abs(diff), axis=-1)
    return value, xp.sign(diff) / y_pred.shape[-1] if grad else None


MEAN_SQUARED_ERROR = LossDef(
    name="mean_squared_error", class_name="MeanSquaredError", kernel=_mse,
    aliases=("mse", "MSE"),
    doc=r"""Mean squared error over the last axis.

    .. math:: \ell = \frac{1}{n}\sum_{i=1}^{n} (\hat y_i - y_i)^2,
              \qquad \frac{\partial \ell}{\partial \hat y_i} = \frac{2(\hat y_i - y_i)}{n}

    Shapes: ``y_true`` and ``y_pred`` ``(..., n)`` (ranks may differ by one trailing axis of size 1,
    as in Keras); returns ``(...)``.

    Unlike Keras, float64 input is computed in float64 (Keras computes in float32, so
    ``mse(1e30, -1e30)`` overflows there); float32 input is accumulated in float64 and rounded once.

    Example (by hand: ((1-0)^2 + (1-1)^2) / 2 = 0.5):

    >>> import losskit
    >>> float(losskit.mean_squared_error([[0.0, 1.0]], [[1.0, 1.0]])[0])
    0.5
    """)

MEAN_ABSOLUTE_ERROR = LossDef(
    name="mean_absolute_error", class_name="MeanAbsoluteError", kernel=_mae,
    aliases=("mae", "MAE"),
    doc=r"""Mean absolute error over the last axis.

    .. math:: \ell = \frac{1}{n}\sum_{i=1}^{n} |\hat y_i - y_i|,
              \qquad \frac{\partial \ell}{\partial \hat y_i} = \frac{\operatorname{sign}(\hat y_i - y_i)}{n}

    At zero error the subgradient is 0, as PyTorch autograd gives for ``torch.abs`` (and JAX for
    ``jnp.abs``). Shapes as for :func:`mean_squared_error`.

    Example (by hand: (|2-0| + |1-1|) / 2 = 1):

    >>> import losskit
    >>> float(losskit.mean_absolute_error([[0.0, 1.0]], [[2.0, 1.0]])[0])
    1.0
    """)
