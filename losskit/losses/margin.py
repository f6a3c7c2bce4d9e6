"""Margin losses: hinge."""

from __future__ import annotations

from typing import Any

from .. import _array
from ._core import LossDef

Array = Any


def _to_signs(xp: Any, y_true: Array) -> Array:
    """Keras's rule: if every label of the array is 0 or 1, map it to -1/+1 with 2y - 1."""
    binary = xp.all((y_true == 0) | (y_true == 1))
    return xp.where(binary, 2.0 * y_true - 1.0, y_true)


def _hinge(xp: Any, y_true: Array, y_pred: Array, *, grad: bool) -> tuple[Array, Any]:
    # value: mean_i max(0, 1 - t_i f_i)
    # gradient: -t_i / n inside the margin, 0 outside, -t_i / (2n) exactly on it (the average of the
    # one-sided slopes, which is what autograd of torch.maximum / jnp.maximum gives there)
    t = _to_signs(xp, y_true)
    margin = 1.0 - t * y_pred
    value = xp.mean(xp.maximum(margin, xp.zeros_like(margin)), axis=-1)
    if not grad:
        return value, None
    slope = xp.where(margin > 0, -t, xp.where(margin == 0, -0.5 * t, xp.zeros_like(t)))
    slope = xp.where(xp.isnan(margin), margin, slope)
    return value, slope / y_pred.shape[-1]


def _check_signs(xp: Any, y_true: Array, y_pred: Array) -> None:
    t = _to_signs(xp, y_true)
    bad = (t != 1) & (t != -1) & ~xp.isnan(t)
    if _array.to_bool(xp.any(bad)):
        raise ValueError("hinge: y_true must hold labels -1 and 1 (or only 0 and 1, which are mapped "
                         "to -1 and 1); " + _array.describe_range(xp, y_true, bad, "y_true")
                         .replace("outside", "that are not labels"))


HINGE = LossDef(
    name="hinge", class_name="Hinge", kernel=_hinge, targets="sign", check_values=_check_signs,
    doc=r"""Hinge loss over the last axis, for labels -1 and 1.

    .. math:: \ell = \frac{1}{n}\sum_i \max(0,\ 1 - t_i f_i),
              \qquad \frac{\partial \ell}{\partial f_i} = -\frac{t_i}{n}\,[t_i f_i < 1]

    Exactly on the margin (:math:`t_i f_i = 1`) the subgradient is :math:`-t_i/(2n)`, the average of
    the two one-sided slopes, as autograd gives for Keras's formula ``maximum(1 - t f, 0)`` on both
    PyTorch (``torch.maximum``) and JAX (``jnp.maximum``); ``torch.clamp``/``relu`` would give
    :math:`-t_i/n` or 0 instead.

    Labels: when every label of ``y_true`` is 0 or 1 they are mapped to -1 and 1 (Keras's rule, applied
    to the whole array). Any other label raises a ``ValueError`` (Keras silently accepts it).
    Shapes as for :func:`mean_squared_error`.

    Example (by hand: (max(0, 1 - 0.5) + max(0, 1 + 2)) / 2 = 1.75):

    >>> import losskit
    >>> float(losskit.hinge([[1.0, -1.0]], [[0.5, 2.0]])[0])
    1.75
    """)
