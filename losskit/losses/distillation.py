"""Knowledge distillation: the KL divergence between temperature-softened teacher and student
distributions (Hinton et al.'s loss, Keras's ``LogitsDistillation``) and the generalized
Jensen-Shannon divergence with a weight ``beta`` (Liger's ``LigerJSD``, TRL's
``generalized_jsd_loss``), on logits, with ``ignore_index`` for token-level distillation.

Both take the teacher's logits as ``y_true`` and the student's as ``y_pred`` (the gradient is the
student's). One front end computes, per row, the two softened distributions ``p`` (teacher) and ``q``
(student) to a few ulps each, also in their tails, and the log-ratios ``d_j = log p_j - log q_j``
with an error of a few ulps of ``d_j`` itself plus one error common to the row (which moves neither
divergence at first order): ``d_j - d_r = (z_j - w_j - z_r + w_r) / T`` (``z`` the teacher's logits,
``w`` the student's, ``r`` the teacher's top class) in double length, so two nearly equal
distributions keep their tiny divergence. The divergences are then sums of non-negative terms
``t phi(log(t/u))``, ``phi(y) = e^{-y} - 1 + y`` (:func:`phi_terms`), with no cancellation at all.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from .. import _array
from .._double import barrier, is_jax, split, split_factor, two_sum
from .._numerics import log1p
from ._core import (
    Input,
    Interval,
    LossDef,
    Option,
    check_bool,
    check_fraction,
    check_optional_int,
    check_positive,
)
from ._registry import Alias

Array = Any

LOGITS = Interval(-math.inf, math.inf, high_open=True)
"""Logits: any real number or -inf (probability 0); +inf is refused (its softmax is undefined
next to another +inf, and the divergences are then not functions of finite logits)."""

# phi(y) = exp(-y) - 1 + y = y^2 sum_k (-y)^k / (k + 2)!, k = 0..29: for |y| <= 2 the first omitted
# term is below 2**31 / 31! < 2**-80 of y^2/2; the alternating sum cancels by at most a factor ~2.
_PHI_SERIES = tuple(1.0 / math.factorial(k + 2) for k in range(30))
_PHI_NEAR = 2.0
# float32 (JAX without x64 works in float32): the first omitted term of k = 0..14 is below
# 2**15 / 17! < 1e-10, 2**-33, of y^2/2 (the sum is at least 0.28 y^2 on |y| <= 2): half the cost
_PHI_SERIES_32 = _PHI_SERIES[:15]


def phi_terms(xp: Any, t: Array, u: Array, y: Array) -> Array:
    """``t phi(y)`` elementwise, ``phi(y) = e^{-y} - 1 + y >= 0``, given ``u = t e^{-y}`` computed
    separately; for ``t = 0`` the term is ``u``.

    With ``y = log(t/u)`` this is ``t log(t/u) - t + u``, the non-negative excess of one term of a
    KL divergence over its share of the mass difference; a KL divergence between two measures of
    equal mass is the sum of these terms, with no cancellation. ``|y| <= 2``: the series (relative
    accuracy of ``y`` carries over); ``y > 2``: ``t (expm1(-y) + y)`` (cancels by at most 1.2);
    ``y < -2`` (``u > 7 t``): ``(u - t) + t y`` (``u`` dominates; no overflow of ``e^{-y}``).
    """
    zero = xp.zeros_like(y)
    near = xp.abs(y) <= _PHI_NEAR
    yn = xp.where(near, y, zero)
    coefs = _PHI_SERIES_32 if _array.dtype_name(y.dtype) == "float32" else _PHI_SERIES
    series = zero + coefs[-1]
    for c in reversed(coefs[:-1]):
        series = series * (-yn) + c
    big = y > _PHI_NEAR
    phi = xp.where(near, yn * yn * series, xp.expm1(-xp.where(big, y, zero)) + y)
    low = y < -_PHI_NEAR
    terms = xp.where(low, (u - t) + t * xp.where(low, y, zero), t * phi)
    return xp.where(t == 0, u, terms)


# ------------------------------------------------------------------------------------ front end


class _Scale:
    """Multiplication by a constant ``c`` (here ``1/T``) of a pair ``hi + lo``, to about twice the
    working precision: Dekker's TwoProduct with the constant split once in Python, plus the part of
    ``c`` the working precision cannot hold (as :func:`losskit._numerics.exp_scaled_difference`)."""

    def __init__(self, xp: Any, like: Array, c: Fraction) -> None:
        self.factor = split_factor(xp, like)
        scalar = np.float32 if self.factor < 2.0**20 else np.float64
        cw = scalar(float(c))
        self.c = float(cw)
        self.rest = float(c - Fraction(self.c))
        big = scalar(cw * scalar(self.factor))
        self.c_hi = float(big - (big - cw))
        self.c_lo = self.c - self.c_hi
        self.one = c == 1
        # a power of two (T = 2, 1/2, ...): c hi and c lo are exact (no TwoProduct needed)
        self.pow2 = (c.numerator == 1 and (c.denominator & (c.denominator - 1)) == 0) or (
            c.denominator == 1 and (c.numerator & (c.numerator - 1)) == 0)

    def __call__(self, xp: Any, hi: Array, lo: Array) -> tuple[Array, Array]:
        if self.one:
            return hi, lo
        if self.pow2:
            return self.c * hi, self.c * lo
        h = barrier(xp, self.c * hi)
        x_hi, x_lo = split(xp, hi, self.factor)
        err = (((self.c_hi * x_hi - h) + self.c_hi * x_lo) + self.c_lo * x_hi) + self.c_lo * x_lo
        low = err + (self.c * lo + self.rest * hi)
        return h, xp.where(xp.isfinite(low), low, xp.zeros_like(low))


def _two_sum(xp: Any, a: Array, b: Array) -> tuple[Array, Array]:
    """:func:`losskit._double.two_sum`; under JAX without its ``optimization_barrier`` (which makes
    XLA write every intermediate out: a quarter of this loss's time), as the fast kernels of
    :mod:`losskit._backends.jax` do: XLA does not re-associate additions (no fast-math), and a
    TwoSum has no product that LLVM could contract into a fused multiply-add."""
    if not is_jax(xp):
        return two_sum(xp, a, b)
    s = a + b
    bv = s - a
    return s, (a - (s - bv)) + (b - bv)


def _finite(xp: Any, x: Array) -> Array:
    return xp.where(xp.isfinite(x), x, xp.zeros_like(x))


def _softmax(xp: Any, z: Array, top: Array, scale: _Scale, exact: bool
             ) -> tuple[Array, Array, Array, Array]:
    """``softmax(z / T)`` row by row (``top``: the index of each row's maximum), to a few ulps in
    every element: the exponent ``(z_j - max) / T`` is taken in double length (``exact``), so a
    probability of 1e-300 keeps its digits. Returns ``(probabilities, S, weights, gap)``: the
    unnormalised weights ``exp(gap)`` of the other elements (0 at the top), their sum ``S`` and the
    exponent ``gap`` (high part)."""
    m = _array.take_last(xp, z, top)
    if exact:
        g_hi, g_lo = _two_sum(xp, z, -m)
        g_hi, g_lo = scale(xp, g_hi, _finite(xp, g_lo))
        e = xp.exp(g_hi) * (1.0 + g_lo)
    else:
        g_hi = (z - m) * scale.c
        e = xp.exp(g_hi)
    e = _array.put_last(xp, e, top, xp.zeros_like(m))
    s = xp.sum(e, axis=-1, keepdims=True)
    norm = 1.0 + s
    p = _array.put_last(xp, e / norm, top, 1.0 / norm)
    return p, s, e, g_hi


def _argmax(xp: Any, x: Array) -> Array:
    """The index of each row's (first) maximum, shape ``(..., 1)``. Under JAX, select-free: the
    first index ``j`` with ``x_j = max`` is ``min_j (j + V h_j)``, ``h_j = min((max - x_j) 2**126,
    1)`` (1 below the maximum, 0 at it; a difference below the normal range counts as a tie, which
    moves nothing here: that entry's weight is 1 to within an ulp either way), which XLA fuses into
    one pass (``jnp.argmax``'s variadic reduction measured 5x slower on CPU, two of them a quarter
    of this loss's time). A NaN or all ``-inf`` row gets some valid index (its results are NaN or
    those of any index)."""
    n = x.shape[-1]
    big = 2.0**126 if _array.dtype_name(x.dtype) == "float32" else 2.0**1022
    if not is_jax(xp) or n > 2**24:
        return xp.argmax(x, axis=-1, keepdims=True)
    import jax

    m = xp.max(x, axis=-1, keepdims=True)
    h = jax.lax.stop_gradient(xp.minimum((m - x) * big, 1.0))
    first = xp.min(xp.arange(n, dtype=x.dtype) + h * float(n), axis=-1, keepdims=True)
    first = xp.where(xp.isnan(first), xp.zeros_like(first), first)
    return xp.clip(first.astype(xp.int32), 0, n - 1)


def _front(xp: Any, z: Array, w: Array, temperature: float, exact: bool
           ) -> tuple[Array, Array, Array, Array, Array | None]:
    """``(p, q, d, r, q_r - p_r)``: the teacher's and the student's softened distributions, ``d =
    log(p/q)``, the teacher's top class ``r`` and (``exact`` only, else None) ``q_r - p_r`` exactly.

    ``d_j = (D_j - D_r) / T + d_r`` with ``D = z - w`` and ``r`` the teacher's top class: ``D_j - D_r``
    as a double-length difference of exact differences (TwoSum), scaled by ``1/T`` in double length and
    rounded once with ``d_r = log p_r - log q_r`` added (``d_r``'s own error is common to the row).
    Inputs promoted from float32 need none of this (29 spare bits): plain float64 arithmetic."""
    scale = _Scale(xp, w, Fraction(1) / Fraction(temperature))
    top = _argmax(xp, z)
    top_w = _argmax(xp, w)
    p, s_p, e_p, gap_z = _softmax(xp, z, top, scale, exact)
    q, s_q, _, gap_w = _softmax(xp, w, top_w, scale, exact)
    log_norm_p, log_norm_q = log1p(xp, s_p), log1p(xp, s_q)
    if exact:
        d_hi, d_lo = _two_sum(xp, z, -w)
        d_lo = _finite(xp, d_lo)
        r_hi, r_lo = _array.take_last(xp, d_hi, top), _array.take_last(xp, d_lo, top)
        e_hi, e_lo = _two_sum(xp, d_hi, -r_hi)
        e_hi, e_lo = scale(xp, e_hi, _finite(xp, e_lo) + (d_lo - r_lo))
    else:
        d_hi = z - w
        r_hi = _array.take_last(xp, d_hi, top)
        e_hi, e_lo = (d_hi - r_hi) * scale.c, 0.0
    # d_r = log p_r - log q_r, with log q_r = (w_r - max w) / T - log(1 + S_q)
    d_r = -log_norm_p - (_array.take_last(xp, gap_w, top) - log_norm_q)
    if exact:
        # near equality d_r is itself tiny and needs its own relative accuracy (an error common to
        # the row moves the KL value at second order only, which is as small as the value there):
        # with e_k = exp((z_k - z_r)/T) and u_k = d_k - d_r, exp((w_k - w_r)/T) = e_k exp(-u_k), so
        # d_r = log1p(sum_k e_k expm1(-u_k) / (1 + S_p)), a sum of terms exact to ulps
        # (where e_k = 0, a teacher logit of -inf, the term is the student's exp((w_k - w_r)/T))
        own = xp.exp(gap_w - _array.take_last(xp, gap_w, top))
        shifts = xp.where(e_p == 0, own, e_p * xp.expm1(-e_hi))
        shifts = _array.put_last(xp, shifts, top, xp.zeros_like(s_p))
        ratio = xp.sum(shifts, axis=-1, keepdims=True) / (1.0 + s_p)
        small = xp.abs(ratio) <= 0.5
        d_r = xp.where(small, log1p(xp, xp.where(small, ratio, xp.zeros_like(ratio))), d_r)
    else:
        ratio = None
    d = e_hi + (e_lo + d_r)
    d = xp.where(xp.isnan(e_hi), e_hi, d)
    # the student gives the teacher's top class probability 0 (w_r = -inf): the distributions are far
    # apart, and log p - log q directly is accurate enough
    direct = (gap_z - log_norm_p) - (gap_w - log_norm_q)
    d = xp.where(xp.isfinite(r_hi), d, direct)
    gap_r = None
    if ratio is not None:
        # q_r - p_r = 1/(1 + S_q') - 1/(1 + S_p) = -p_r ratio / (1 + ratio), with S_q' the student's sum
        # relative to w_r: the gradient at the teacher's top class without forming (1 - a) - (1 - b)
        gap_r = xp.where(small, -(_array.take_last(xp, p, top) * ratio) / (1.0 + ratio),
                         _array.take_last(xp, q - p, top))
    return p, q, d, top, gap_r


# ---------------------------------------------------------------------------------------- kernel


def _distill(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, widened: bool, temperature: float,
             temperature_squared: bool, beta: float, ignore_index: int | None = None,
             labels: Array | None = None) -> tuple[Array, Any]:
    # p = softmax(z/T) (teacher, y_true), q = softmax(w/T) (student, y_pred), d = log(p/q),
    # c = T^2 or 1.
    # beta = 0 (KL(p||q)): value c sum_j p_j phi(d_j); gradient (c/T)(q - p).
    # beta = 1 (KL(q||p)): value c sum_j q_j phi(-d_j); gradient (c/T) q (-d - KL(q||p)).
    # otherwise, with m = beta p + (1 - beta) q, A = log(m/q), B = log(m/p):
    #   value c sum_j beta p_j phi(-B_j) + (1 - beta) q_j phi(-A_j)  (the mass differences
    #         beta (p - m) + (1 - beta)(q - m) sum to 0: every term is a non-negative excess);
    #   A = log1p(beta expm1(d)), B = log1p((1 - beta) expm1(-d)), each without cancellation
    #   (B = A - d past d < -700, A = B + d past d > 700, where expm1 overflows);
    #   gradient -(c/T)(1 - beta) q (A + KL(q||m)), KL(q||m) = sum_j q_j phi(-A_j).
    del ignore_index, labels  # the mask (LossDef.mask) zeroes the ignored samples
    t = float(temperature)
    c = t * t if temperature_squared else 1.0
    g_factor = t if temperature_squared else 1.0 / t
    p, q, d, top, gap_r = _front(xp, y_true, y_pred, t, exact=not widened)
    zero = xp.zeros_like(d)
    both_zero = (p == 0) & (q == 0)  # both logits -inf (d NaN): the term is 0
    if beta == 0.0:
        terms = phi_terms(xp, p, q, d)
        if grad:
            g = q - p
            g = g if gap_r is None else _array.put_last(xp, g, top, gap_r)
    elif beta == 1.0:
        terms = phi_terms(xp, q, p, -d)
        if grad:
            kl = xp.sum(xp.where(both_zero, zero, terms), axis=-1, keepdims=True)
            g = xp.where(q == 0, zero, (q * g_factor) * (-d - kl))
    else:
        b1 = 1.0 - beta
        a_part = _log_mixture(xp, d, beta, b1)
        b_part = _log_mixture(xp, -d, b1, beta)
        a_part, b_part = (xp.where(d > 700.0, b_part + d, a_part),
                          xp.where(d < -700.0, a_part - d, b_part))
        m = beta * p + b1 * q
        kl_q = phi_terms(xp, q, m, -a_part)
        terms = beta * phi_terms(xp, p, m, -b_part) + b1 * kl_q
        if grad:
            kl = xp.sum(xp.where(both_zero, zero, kl_q), axis=-1, keepdims=True)
            g = xp.where(q == 0, zero, (q * (-b1 * g_factor)) * (a_part + kl))
    terms = xp.where(both_zero, zero, terms)
    value = c * xp.sum(terms, axis=-1)
    if not grad:
        return value, None
    return value, (g_factor * g if beta == 0.0 else g)  # (the others have the factor in already)


def _log_mixture(xp: Any, d: Array, beta: float, b1: float) -> Array:
    """``log(beta e^d + b1)`` (``b1 = 1 - beta``): ``log1p(beta expm1(d))`` while the argument keeps
    ``1 + x >= 1/2`` (no cancellation), else the log of the sum of the two positive parts; ``d`` above
    700 is clamped (the caller takes the other form there)."""
    dc = xp.minimum(d, 700.0)
    x = beta * xp.expm1(dc)
    near = x >= -0.5
    return xp.where(near, log1p(xp, xp.where(near, x, xp.zeros_like(x))),
                    xp.log(beta * xp.exp(dc) + b1))


def _forward_kl(xp: Any, y_true: Array, y_pred: Array, **options: Any) -> tuple[Array, Any]:
    """:func:`_distill` with ``beta = 0``: the forward KL(p||q) of :data:`LOGITS_DISTILLATION`."""
    return _distill(xp, y_true, y_pred, beta=0.0, **options)


# ------------------------------------------------------------------------------- declarations


def _ignored(xp: Any, y_true: Array, *, ignore_index: int | None, labels: Array | None = None,
             **_: Any) -> Array | None:
    return None if labels is None or ignore_index is None else labels != ignore_index


def _check_beta(name: str, value: Any) -> float:
    return check_fraction(name, value)


LABELS = Input("labels", "one label per sample (``y_pred``'s shape without the class axis, e.g. "
               "``(N,)`` for ``(N, V)`` logits, as Liger's ``shift_labels``): samples whose label is "
               "``ignore_index`` return 0, get a zero gradient and leave the mean's count",
               required=False, per_sample=True)
IGNORE_INDEX = Option("ignore_index", -100, check_optional_int,
                      "the label (in ``labels``) of samples to ignore, PyTorch's and Liger's -100 by "
                      "default; None: ignore nothing")
TEMPERATURE_DOC = "the softmax temperature T > 0 applied to both logits (``softmax(z / T)``)"

SHARED_DOC = r"""
    Shapes: ``y_true`` (the teacher's logits, or its log-probabilities) and ``y_pred`` (the student's
    logits) ``(..., V)`` with the classes on the last axis; the result ``(...)``, one value per sample
    (per token for ``(B, L, V)`` logits). Logits may be ``-inf`` (probability 0), never ``+inf``.
    Teacher *probabilities* are given as their logarithm (a log-probability is a logit): with a
    temperature that is ``softmax(log(p) / T) = p^{1/T} / sum_k p_k^{1/T}``, the softened teacher.

    ``labels`` (optional, ``y_pred``'s shape without the class axis) with ``ignore_index`` (default
    -100) leave out the samples whose label is ``ignore_index``, as PyTorch's cross-entropy and Liger's
    ``shift_labels`` do: their value is 0, their gradient 0, and the default reduction divides by the
    number of samples kept (Liger's ``n_non_ignore``; TRL's ``batchmean`` with labels). A batch with
    every sample ignored reduces to 0.

    Exact over the whole domain (8 ulp against mpmath, in float32 and float64): temperatures down to
    0.01 and beyond (exponents of -1e4), teachers sure to 1 - 1e-300, student and teacher equal up to
    the last bits. The softened distributions are computed with their exponents in double length,
    the log-ratios ``log(p_j/q_j)`` as scaled differences of exact logit differences, and each
    divergence as a sum of non-negative terms; the textbook ``kl_div(log_softmax(w/T),
    log_softmax(z/T))`` keeps no correct digit for nearly equal distributions (PyTorch, float32:
    the relative error reaches 1 once the divergence is below about 1e-7). The gradient element
    :math:`q_j - p_j` is a difference: it is exact to 8 ulp of the larger of the two (it vanishes
    where they agree).
"""

LOGITS_DISTILLATION = LossDef(
    name="logits_distillation", class_name="LogitsDistillation", kernel=_forward_kl, precision_aware=True,
    targets="real", mask=_ignored, inputs=(LABELS,),
    aliases=("distillation_kl", "kd_kl_divergence", "knowledge_distillation",
             Alias("keras.distillation.LogitsDistillation",
                   note="as Keras's with loss=keras.losses.KLDivergence(), which clips both softmax "
                        "outputs to [1e-7, 1]; Keras 3.15's default loss='kl_divergence' (a string) "
                        "skips the softmax and the T^2")),
    options=(Option("temperature", 3.0, check_positive, TEMPERATURE_DOC + " (Keras's default 3.0)"),
             Option("temperature_squared", True, check_bool,
                    "whether the divergence is multiplied by T^2 (Hinton et al., Keras's "
                    "``LogitsDistillation``), so that its gradient does not shrink as 1/T^2"),
             IGNORE_INDEX),
    domain=lambda opts: {"y_true": LOGITS, "y_pred": LOGITS},
    doc=r"""Knowledge-distillation loss: the KL divergence from the softened teacher to the softened
    student, times :math:`T^2`, over the last axis.

    With teacher logits :math:`z` (``y_true``), student logits :math:`w` (``y_pred``), temperature
    :math:`T`, :math:`p = \mathrm{softmax}(z/T)` and :math:`q = \mathrm{softmax}(w/T)`:

    .. math:: \ell = T^2 \sum_j p_j \log\frac{p_j}{q_j},
              \qquad \frac{\partial \ell}{\partial w_j} = T\,(q_j - p_j)

    Hinton, Vinyals and Dean ("Distilling the knowledge in a neural network", 2015) multiply by
    :math:`T^2` so that the gradient, which carries a factor :math:`1/T` of the softmax and one of
    the difference :math:`q - p \approx (w - z)/(T\,n)`, keeps its size when T changes; Keras 3's
    ``keras.distillation.LogitsDistillation`` (``temperature=3.0``, its default here) and the common
    PyTorch recipe ``F.kl_div(F.log_softmax(w / T), F.softmax(z / T), reduction="batchmean") * T * T``
    do so. ``temperature_squared=False`` gives the plain :math:`\mathrm{KL}(p \,\|\, q)` (gradient
    :math:`(q_j - p_j)/T`), as Liger's and TRL's losses (:func:`generalized_jsd` with ``beta=0``,
    which this then equals).
""" + SHARED_DOC + r"""
    Peers: Keras ``LogitsDistillation(temperature, loss=keras.losses.KLDivergence())
    .compute_loss(teacher_logits, student_logits)`` is the mean over the batch (this loss's default
    reduction), except that Keras clips both probabilities to [1e-7, 1] (a class the teacher gives
    1e-9 then costs ``1e-7 log(1e-7/q)``). With its default ``loss="kl_divergence"`` Keras 3.15
    resolves the string to the function ``keras.losses.kl_divergence``, not a ``KLDivergence``
    instance, so its softmax-and-:math:`T^2` branch is skipped and the KL divergence is taken of the
    clipped scaled logits (another number: ``tests/test_distillation.py``);
    PyTorch has no distillation loss (the recipe above, with ``reduction="batchmean"``, is the
    ``"batchmean"`` reduction here, equal to the default for ``(N, V)`` logits).

    Example (by hand: T = 1, p = (1/2, 1/2), q = softmax(0, 1), log q = (-1.313262, -0.313262):
    KL = log(1/2) - (log q_1 + log q_2)/2 = -0.693147 + 0.813262 = 0.120115):

    >>> import losskit
    >>> round(float(losskit.logits_distillation([[0.0, 0.0]], [[0.0, 1.0]], temperature=1.0)[0]), 6)
    0.120115
    """)

GENERALIZED_JSD = LossDef(
    name="generalized_jsd", class_name="GeneralizedJSD", kernel=_distill, precision_aware=True,
    targets="real", mask=_ignored, inputs=(LABELS,),
    aliases=("jsd_distillation", Alias("generalized_jsd_loss"),
             Alias("LigerJSD", note="Liger takes log-probabilities (logits here) with no temperature "
                                    "(1, the default)")),
    options=(Option("beta", 0.5, _check_beta,
                     "the weight in [0, 1] of the teacher in the mixture (0: forward KL(p||q), 1: "
                     "reverse KL(q||p), as Liger and TRL)"),
             Option("temperature", 1.0, check_positive, TEMPERATURE_DOC),
             Option("temperature_squared", False, check_bool,
                    "whether the divergence is multiplied by T^2 (as :func:`logits_distillation`; "
                    "Liger and TRL do not)"),
             IGNORE_INDEX),
    domain=lambda opts: {"y_true": LOGITS, "y_pred": LOGITS},
    doc=r"""Generalized Jensen-Shannon divergence between the softened teacher and student, over the
    last axis (Liger's ``LigerJSD``, TRL's ``generalized_jsd_loss``; Agarwal et al., "On-policy
    distillation of language models", 2024).

    With :math:`p = \mathrm{softmax}(z/T)` (teacher, ``y_true``), :math:`q = \mathrm{softmax}(w/T)`
    (student, ``y_pred``) and the mixture :math:`m = \beta p + (1-\beta) q`:

    .. math:: \ell = \beta\,\mathrm{KL}(p \,\|\, m) + (1-\beta)\,\mathrm{KL}(q \,\|\, m),
              \qquad \frac{\partial \ell}{\partial w_j}
              = -\frac{1-\beta}{T}\,q_j\Bigl(\log\frac{m_j}{q_j} + \mathrm{KL}(q \,\|\, m)\Bigr)

    for :math:`0 < \beta < 1`; ``beta=0`` is the forward :math:`\mathrm{KL}(p \,\|\, q)` (gradient
    :math:`(q - p)/T`) and ``beta=1`` the reverse :math:`\mathrm{KL}(q \,\|\, p)` (gradient
    :math:`q_j(\log(q_j/p_j) - \mathrm{KL}(q \,\|\, p))/T`), as Liger and TRL define them: the formula
    itself tends to 0 at both ends (it is about :math:`\beta\,\mathrm{KL}(p \,\|\, q)` for small
    :math:`\beta`), so the ends are a choice of those libraries, kept here for their users. With
    ``beta=0.5`` this is the Jensen-Shannon divergence (:func:`jensen_shannon_divergence` of the two
    softmax outputs). ``temperature_squared=True`` multiplies by :math:`T^2` (and the gradient by
    :math:`T^2`), as :func:`logits_distillation` does by default.

    The mixture is never formed where it would cancel: with :math:`d = \log(p/q)`,
    :math:`\log(m/q) = \mathrm{log1p}(\beta\,\mathrm{expm1}(d))` and
    :math:`\log(m/p) = \mathrm{log1p}((1-\beta)\,\mathrm{expm1}(-d))`, and the divergence is the sum
    of the non-negative excesses :math:`\beta(p \log(p/m) - p + m) + (1-\beta)(q \log(q/m) - q + m)`
    (the mass terms cancel exactly), so ``beta`` near 0 or 1 and nearly equal distributions keep
    every digit. Liger's kernel forms :math:`\beta p y + (1-\beta) q x - m \log m`, which cancels.
""" + SHARED_DOC + r"""
    Peers: Liger ``LigerJSD(beta, ignore_index)(log_q, log_p, shift_labels)`` (student first, both
    log-probabilities, mean over the samples kept) is ``GeneralizedJSD(beta=beta)(log_p, log_q,
    labels=shift_labels)``; TRL's ``generalized_jsd_loss(student_logits, teacher_logits, labels,
    beta, temperature)`` likewise (its ``"batchmean"`` with labels is the default reduction here).

    Example (by hand: disjoint supports, beta = 1/2: each KL to the mixture is log 2, so log 2 =
    0.693147...):

    >>> import math, losskit
    >>> z, w = [[0.0, -math.inf]], [[-math.inf, 0.0]]
    >>> round(float(losskit.generalized_jsd(z, w)[0]), 6)
    0.693147
    """)
