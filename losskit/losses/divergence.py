"""Divergences: Kullback-Leibler."""

from __future__ import annotations

from typing import Any

from .._numerics import accurate_sum, kl_parts
from ._core import UNIT, LossDef

Array = Any


def _kl(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool) -> tuple[Array, Any]:
    # value: sum_j t_j log(t_j / p_j), each term split by kl_parts where it cancels against the
    #        others and the whole row summed with compensation, so two near-equal distributions
    #        keep every digit of their tiny divergence; terms with t_j = 0 are exactly 0. Inputs
    #        promoted from float32 or narrower have 29+ spare bits, so a plain float64 sum does.
    # gradient: -t_j / p_j (0 where t_j = 0)
    t, p = y_true, y_pred
    first, second = kl_parts(xp, t, p)
    if widened:
        value = xp.sum(first, axis=-1) + xp.sum(second, axis=-1)
    else:
        value = accurate_sum(xp, xp.concat([first, second], axis=-1))
    if not grad:
        return value, None
    return value, xp.where(t != 0, -t / p, xp.zeros_like(t))


KL_DIVERGENCE = LossDef(
    name="kl_divergence", class_name="KLDivergence", kernel=_kl, precision_aware=True,
    targets="distribution",
    aliases=("kld", "KLD", "kullback_leibler_divergence"),
    domain=lambda opts: {"y_true": UNIT, "y_pred": UNIT},
    doc=r"""Kullback-Leibler divergence of ``y_pred`` from ``y_true``, summed over the last axis.

    .. math:: \ell = \sum_j t_j \log\frac{t_j}{p_j},
              \qquad \frac{\partial \ell}{\partial p_j} = -\frac{t_j}{p_j}

    with :math:`0 \log 0 = 0` in the value and a zero gradient where :math:`t_j = 0`; :math:`p_j = 0 <
    t_j` gives ``inf`` (gradient ``-inf``). Both arguments are probabilities in [0, 1].

    Differences from Keras: no clipping of either argument to [1e-7, 1] (Keras's clip adds
    ``1e-7 log(1e-7 / p)`` for every zero target), and near-equal distributions keep their tiny
    divergence to the last bits instead of cancelling. PyTorch's ``kl_div`` takes log-probabilities
    and averages over all elements by default; this takes probabilities, like Keras.

    Shapes as for :func:`mean_squared_error`.

    Example (by hand: 1 * log(1 / 0.5) = log 2 = 0.693147...):

    >>> import losskit
    >>> round(float(losskit.kl_divergence([[1.0, 0.0]], [[0.5, 0.5]])[0]), 6)
    0.693147
    """)
