"""Divergences: Kullback-Leibler."""

from __future__ import annotations

from typing import Any

from .._numerics import accurate_sum, kl_parts, log1p
from ._core import UNIT, LossDef

Array = Any


def _kl(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool) -> tuple[Array, Any]:
    # value: sum_j t_j log(t_j / p_j), each term split by kl_parts where it cancels against the
    #        others and the whole row summed with compensation, so two near-equal distributions
    #        keep every digit of their tiny divergence; terms with t_j = 0 are exactly 0. Inputs
    #        promoted from float32 or narrower have 29 spare bits: see _kl_terms_widened.
    # gradient: -t_j / p_j (0 where t_j = 0)
    t, p = y_true, y_pred
    if widened:
        value = xp.sum(_kl_terms_widened(xp, t, p), axis=-1)
    else:
        first, second = kl_parts(xp, t, p)
        value = accurate_sum(xp, xp.concat([first, second], axis=-1))
    if not grad:
        return value, None
    return value, xp.where(t != 0, -t / p, xp.zeros_like(t))


def _kl_terms_widened(xp: Any, t: Array, p: Array) -> Array:
    """``t log(t/p)`` per element for float32-or-narrower inputs computed in float64.

    Near equality ``log(t/p) = log1p((t - p)/p)`` with ``t - p`` exact, so each term is right to a
    float64 rounding; summing them then cancels by at most ``1/|t/p - 1| <= 2**24`` (two distinct
    float32 numbers), which leaves the float32 result within a fraction of an ulp. Farther apart,
    ``log(t/p)`` is exact enough and keeps tiny ratios that ``log1p(-1 + tiny)`` would lose.
    """
    zero = xp.zeros_like(t)
    safe_p = xp.where(p > 0, p, xp.ones_like(p))
    ratio = t / safe_p
    near = xp.abs(ratio - 1.0) <= 0.5
    log_ratio = xp.where(near, log1p(xp, (t - p) / safe_p), xp.log(xp.where(near, 1.0, ratio)))
    terms = xp.where(t == 0, zero, t * log_ratio)
    return xp.where((p == 0) & (t > 0), float("inf") + zero, terms)


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
