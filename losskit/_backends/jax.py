"""Fast kernels for jax arrays (see :mod:`losskit._backends`).

Each kernel evaluates float32 in float32 (and float64 in float64) with a few ``jnp`` operations
that XLA fuses: row reductions whose inputs are computed on the fly, at most one written
temporary (the exponentials of a softmax, as the peers write), and one elementwise gradient that
XLA fuses with the caller's chain rule. The generic kernels reach the same 8-ulp contract by
widening float32 to float64 (with ``jax_enable_x64``) or by double-length arithmetic on every
element behind ``lax.optimization_barrier`` (without it); both cost several times the peer's time
under ``jax.jit``. The formulations below need neither: every value is a sum of non-negative terms
each within an ulp or two, and the one rounding that a plain formula would amplify (``z - m``
before ``exp``) is recovered exactly. Each kernel's comment gives the error argument. Rare inputs
that a select-free formula cannot handle (``0 * inf``, an overflowing sum) are detected on the
per-row results and recomputed under ``lax.cond``, so they cost nothing when absent.

Error-free transformations here are written without ``optimization_barrier`` (which would stop
XLA's fusion and write every intermediate out): XLA does not re-associate floating-point
additions unless fast-math is requested (it is off by default; checked on CPU, where the
compiled HLO keeps ``(a + b) - a`` as written). The oracle suite and ``tests/test_backend_jax.py``
(which runs the kernels under ``jax.jit``) are the guard on any other device.

Semantics follow the generic kernels exactly (``0 * log 0 = 0``, infinities, NaN propagation, the
gradient at kinks and ties); options that a kernel does not cover (label smoothing, class or
positive weights) return None, and the generic kernel runs.

Notation: ``u`` is the unit roundoff (2**-24 in float32, 2**-53 in float64), ``n`` the size of
the reduced axis. A sum of ``n`` non-negative terms each within ``a`` ulp is within
``a + (n - 1) u`` relative (XLA sums in a tree of vector lanes, in practice far below the bound).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as _np

from . import Kernel

Array = Any

# Scaling by a power of two is exact; rows whose plain sum overflows are summed again scaled by
# 2**-64 (an exact scaling of every term of the size that can overflow; terms that it pushes below
# the normal range are negligible beside the ones that overflowed) and scaled back, so a mean that
# lies in range is not returned as inf.
_DOWN = 2.0**-64
_UP = 2.0**64


# ------------------------------------------------------------------------------------- helpers


def _two_sum_err(a: Array, b: Array, s: Array) -> Array:
    """The rounding error of ``s = fl(a + b)``: ``a + b = s + err`` exactly (Knuth's TwoSum), 0
    where ``s`` is not finite (where TwoSum's error is NaN)."""
    bv = s - a
    err = (a - (s - bv)) + (b - bv)
    return jnp.where(jnp.isfinite(err), err, jnp.zeros_like(err))


def _exp_diff(x: Array, m: Array) -> Array:
    """``exp(x - m)`` as if ``x - m`` were exact.

    ``d = fl(x - m)`` is off by up to ``u |d|`` (relative to 1), which ``exp`` would carry into a
    relative error of ``|d| u``: 40 ulp at ``d = -80``. TwoSum recovers the rounding error ``r``
    exactly and ``exp(d + r) = exp(d) (1 + r)`` to within ``r**2`` (far below an ulp): XLA's
    ``exp`` (1 ulp) and two roundings make it 2 ulp. ``x = -inf`` gives 0; ``x == m`` gives 1.
    """
    neg = -m
    d = x + neg
    return jnp.exp(d) * (1.0 + _two_sum_err(x, neg, d))


def _xmul(c: Array, v: Array) -> Array:
    """``c * v`` with ``0 * anything = 0`` (``0 * log 0 = 0``, ``0 * inf = 0``)."""
    return jnp.where(c == 0, jnp.zeros_like(v), c * v)


def _log1p(x: Array) -> Array:
    """``log1p`` to within 2.5 ulp: XLA's own, except that its float64 ``log1p`` is off by up to
    128 ulp on about [-0.43, -0.33] (measured against mpmath; 1.5 ulp elsewhere), where
    ``log(1 + x)`` is used on [-0.5, -0.3]: there ``1 + x`` rounds by at most ``u`` relative and
    ``log`` amplifies that by ``1/|log(1 + x)| <= 2.8`` (2.1 ulp measured). float32 ``log1p`` is
    within 2.2 ulp everywhere (measured)."""
    if x.dtype == jnp.float32:
        return jnp.log1p(x)
    return jnp.where((x <= -0.3) & (x >= -0.5), jnp.log(1.0 + x), jnp.log1p(x))


def _labels(y_true: Array, ignore_class: int | None) -> Array:
    """Integer labels of shape ``(..., 1)``; ignored samples get label 0 (the caller's mask zeroes
    them), as the generic kernel does."""
    k = y_true
    if ignore_class is not None:
        k = jnp.where(k == ignore_class, jnp.zeros_like(k), k)
    if not jnp.issubdtype(k.dtype, jnp.integer):
        k = k.astype(jnp.int32)
    return k[..., None]


# ------------------------------------------------------------------ softmax cross-entropy (logits)
#
# How XLA runs these on CPU shapes the code: a row reduction fuses the arithmetic that produces its
# input (add, multiply, min, max, exp, log) but not a compare or a select, whose result it first
# writes out in full. So the reductions below are written select-free (a class is "below the
# maximum" when min((m - x) 2**126, 2) = 2, and "a maximum" when it is 0), the one array that needs
# a select (exp(x - m) with the maxima left out) is the one the peers write too, and the selects
# live in the elementwise gradient, which XLA fuses with the caller's chain rule. Where a
# select-free form can meet 0 * inf (a zero target at an infinite logit), the rows are summed again
# with the select, under lax.cond, only when that happened.
#
# Measured (jax 0.10.2, XLA CPU, float32, one thread, process CPU time; the machine loaded): at
# 8192x1000 the value of a plain max / sum exp(x - m) / log pass costs 13.3 ms, with the Fast2Sum
# correction of exp(x - m) 19.6, with the tie mask h2 (no correction) 16.3, and _cce_logits' value
# 27 (Optax 10.5-11.5); for the sparse kernel's value, a two-pass form (max; sum of e_j - [j = k])
# costs 22.3 with the correction and 14.7 without. So each exactness device costs a share of an
# exp-bound loop (the correction's 8 operations about as much as the exp), and no
# rearrangement of the same arithmetic recovers it: the cross-entropy sums as siblings measured
# 24.4 (no gain); a one-chain sparse kernel (the label's term e_k - 1 in the sum, no tie count)
# 38 against 23 for _scce_logits; and a hinge whose 0/1 decision and both readings' row sums were
# chained (+ 0 * previous) 86 against 18 (in these two trials XLA's chained multi-reduction
# fusion was slower than separate passes: the chain trick is no rule, measure each use).
#
# Since then (jaxce, same jax, XLA CPU now runs row reductions as YNNPACK fusions; process CPU
# time, interleaved, load 7-13 on 2 cores, ratios to Optax's value at 8192x1000): the product form
# (_PRODUCT below) removes the per-element correction: max + sum exp(x) exp(-m) costs 0.90-0.95
# (Optax's max + sum exp(x - m) 1.0), with the select-free max mask 1.2-1.4, with the Fast2Sum
# correction 2.1-2.3. Inside a YNNPACK fusion each elementwise operation costs about 0.05-0.1 of
# Optax's value (they are not fused into one register loop), a compare or select still makes XLA
# write the array out, a float64 iota is written out (a float32 one is fused), and a tie count
# costs a pass (max + tie count alone 0.7). Two sums in one reduction (tie count and masked sum
# side by side, or a variadic reduce) measured 1.4-4.3: no gain. Hence the sparse kernel leaves
# the label out (an iota mask, no maximum, no ties: one pass) and the dense one keeps max + tie
# count + masked sum, now without the correction. lax.top_k(x, 2) to find ties: 160x Optax.
#
# Then (jaxce2, same jax; process CPU time, interleaved, load 5-8 on 2 cores): Optax's value runs
# as ONE YNNPACK fusion (max, sum exp, the weighted sum, tiled over rows so a row is read from
# cache), ours as three. What splits a fusion: a row statistic used outside it (m, s or an ok flag
# read by lax.cond), a compare or select anywhere in the chain (a row-level jnp.where on the value:
# 2.1x against 1.2x without it), and a sibling reduction fed through a select. What slows one
# down 3-4x: a row sum whose initial value XLA passes in as a run-time parameter, which it does
# when the 0 is shared with another fusion (the caller's mean after lax.cond): _row_sum. So the
# dense value path is now one fusion (_fused_softmax_sums: max; min(exp(x), d) and a tie count as
# siblings; the value sum; the domain flag added as an overflowing square), 8192x1000 value
# 1.8 -> 1.4x Optax, 65536x10 2.3 -> 1.5-1.7x. Measured and dropped: argmax to leave one maximum
# out (a variadic reduce, its own slow fusion: 4x at 8192x1000); exp(x) exp(-m) per element in
# place of min(exp(x), d) (1 op more); the same one fusion at 1024x32000 (1.8x against 1.3x for
# the separate fusions: a row of 128 KB no longer stays in cache); the one-fusion form in the
# value+grad path (m and s feed the gradient, the fusion splits, and the shared -0.0 is passed as
# a parameter: 1.5-1.75x against 1.0-1.3x); the in-graph gradient at 65536x10 instead of the host
# kernel (2.7-2.8x against 2.0-2.3x); folding the sparse kernel's domain checks into its value and
# _row_sum there (no change measured: 65536x10 3.0 vs 3.1 ms, Optax's own time varying 0.9-1.8 ms
# at that shape). Each elementwise operation inside a YNNPACK fusion still costs about 0.05-0.1 of
# Optax's value: the dense value does 12 per element against Optax's 8.


def _big(x: Array) -> float:
    """A power of two that takes every positive normal difference to at least 2."""
    return 2.0**126 if x.dtype == jnp.float32 else 2.0**1022


def _below(v: Array, top: Array) -> Array:
    """2 where ``v < top``, 0 where ``v == top`` (``top`` the row maximum), select-free. A
    difference below the normal range counts as a tie; the caller's results do not notice (the
    entry's exp is 1 to within an ulp either way). NaN stays NaN. Piecewise constant, so its
    derivative is 0 (stop_gradient: the product rule would otherwise meet 2^1022 times a tangent in
    second derivatives, and NaN)."""
    return jax.lax.stop_gradient(jnp.minimum((top - v) * _big(v), 2.0))


def _softmax_parts(x: Array) -> tuple[Array, Array, Array, Array]:
    """``(m, at_max, e, s)`` of a row of logits: the maximum ``m``, where it is attained,
    ``e = exp(x - m)`` below the maximum (0 at it; TwoSum corrected, see :func:`_exp_diff`), and
    ``s``, the sum of exp(x - m) over every entry but one maximum, so that ``softmax = e / (1 + s)``
    below the maximum and ``1 / (1 + s)`` at it.

    ``s`` adds the entries below the maximum directly (non-negative terms, each within 2 ulp, so
    ``s`` is within ``2 + (n - 1) u`` ulp) plus ``c - 1`` for ``c`` tied maxima (an exact count):
    no ``1 + tiny - 1`` is formed, so a confident row keeps a tiny ``s``. The count compares
    ``min(x, max_float)``, so a single ``+inf`` logit is one maximum; several ``+inf`` logits, a row
    of ``-inf`` and NaN give ``s = NaN``, as the generic kernel does.
    """
    n = x.shape[-1]
    fmax = float(jnp.finfo(x.dtype).max)
    m = jnp.max(x, axis=-1, keepdims=True)
    mc = jnp.minimum(m, fmax)
    ties = (n - 1.0) - 0.5 * jnp.sum(_below(jnp.minimum(x, fmax), mc), axis=-1, keepdims=True)
    at_max = x == m
    e = jnp.where(at_max, jnp.zeros_like(x), _exp_diff(x, m))
    s = jnp.sum(e, axis=-1, keepdims=True) + ties
    s = jnp.where((m == jnp.inf) & (ties > 0), jnp.nan, s)
    return m, at_max, e, s


def _exp_below(x: Array, m: Array) -> Array:
    """:func:`_exp_diff` for the elementwise gradients, written with other operations and
    constants than :func:`_fused_softmax_sums` (``- m`` rather than ``+ (-m)``, 1 there 2 and 1/2):
    XLA writes out in full any broadcast, of a row statistic or of a constant, that a row
    reduction shares with another fusion. (``exp(d) (1 + err)``, not ``exp(d) + exp(d) err``:
    XLA flushes a subnormal product to zero outside its fused reductions.)"""
    d = x - m
    bv = d - x
    err = (x - (d - bv)) - (m + bv)
    err = jnp.where(jnp.isfinite(err), err, jnp.zeros_like(err))
    return jnp.exp(d) * (1.0 + err)


# The product form. exp(x_j - c) = exp(x_j) exp(-c): each factor is XLA's exp of an exact
# argument (1 ulp; the error of exp at large |x| comes from a rounded argument, and x_j is the data),
# so no TwoSum correction of x_j - c is needed, and with c a logit of the row no maximum either.
# Valid while no exp overflows and the terms that underflow are negligible; the per-row results
# say when that failed, and the batch is then computed again by the exact kernels (lax.cond).
_PRODUCT = {"float32": (80.0, 2.0**100), "float64": (700.0, 2.0**960)}


def _row_sum(a: Array) -> Array:
    """``jnp.sum(a, axis=-1, keepdims=True)`` as a reduction whose initial value is -0.0 (the
    same sum: -0.0 is the identity of addition). XLA CPU passes a constant that two fusions share
    into them as a run-time parameter, and a row-sum fusion (YNNPACK) with a run-time initial value
    measured 3-4x slower; jnp.sum's 0 is shared with the caller's mean over the rows, -0.0 is not
    (the combiner is written as a lambda, so JAX does not turn it back into reduce_sum with 0).
    (8192x1000 float32, the dense value under jax.jit, ratio to Optax's: 3.5x with jnp.sum, 1.3x
    with this.)"""
    return jax.lax.reduce(a, _np.array(-0.0, a.dtype), lambda p, q: p + q, (a.ndim - 1,))[..., None]


# The dense kernel's bound on the row maximum (below _PRODUCT's): _fused_softmax_sums scales m - x_j
# by F = min(2**126 max(exp(m), 1), max_float) (2**1022 in float64), and needs (m - x_j) F >=
# exp(m) for every x_j below m. For m in [64, 128) a difference is at least 2**-17, so
# (m - x_j) F >= 2**111 >= exp(75) = 2**108.2; smaller m pass with room. In float64 the same
# reasoning on [512, 1024) (differences >= 2**-43, F <= 2**1024) gives 2**981 >= exp(670).
_DENSE_LIM = {"float32": 75.0, "float64": 670.0}


# Rows up to this length take _fused_softmax_sums' one fusion for the value; longer rows (a row no
# longer stays in cache between the fusion's passes) the separate fusions of
# _fused_softmax_sums_grad (1024x32000 float32, value, process CPU time, ratio to Optax's: 1.8x
# with the one fusion, 1.3x with the separate ones).
_ONE_FUSION_ROWS = 4096


def _fused_softmax_sums(x: Array) -> tuple[Array, Array, Array, Array]:
    """``(m, s, bad, d)`` of rows of logits ``x``, from one XLA fusion: two row reductions over
    ``x`` (the maximum; then two sibling sums), arithmetic, min and max only (on CPU a compare or
    a select, or a row statistic used outside the fusion, splits it into several passes).

    ``m`` is the row maximum and ``s`` the sum of exp(x - m) over every entry but one maximum, as
    in :func:`_softmax_parts`, for the rows where ``bad`` is 0; ``bad`` is positive (at least
    2**-24) on the others, which :func:`_softmax_parts` must take. The product form (see
    ``_PRODUCT``): each ``exp(x_j)`` within 1 ulp (exact argument), no rounded ``x_j - m``:

    - ``d_j = (m - x_j) F``, ``F = min(2**126 max(exp(m), 1), max_float)`` (``_DENSE_LIM``): 0 at a
      maximum, at least ``max(exp(m), 1)`` below it (a difference below the normal range counts as
      a tie, as in :func:`_below`). So ``min(exp(x_j), d_j)`` is ``exp(x_j)`` below the maximum and
      0 at it, and ``min(d_j, 1)`` counts the entries below it (exactly).
    - ``s = exp(-m) sum_j min(exp(x_j), d_j) + (c - 1)`` for ``c`` tied maxima: the entries below
      the maximum summed directly (non-negative terms: within ``1 + (n - 2) u`` ulp; ``exp(-m)``
      and the product 1.5 more), plus an exact integer, so no ``1 + tiny - 1`` is formed.
    - in the domain: ``m <= 75`` (670 in float64; so exp(-m) is normal and no exp(x_j)
      overflows), ``s`` finite, and ``exp(m) s >= n 2**-100`` (2**-960), so that the terms below
      the normal range (flushed or not) err by at most ``n 2**-126`` in all, below ``u/2`` of the
      sum. A row of NaN or infinite logits gives a NaN ``bad`` or ``s``.
    """
    n = x.shape[-1]
    lim, up = _DENSE_LIM[str(x.dtype)], _PRODUCT[str(x.dtype)][1]
    fmax = float(jnp.finfo(x.dtype).max)
    m = jnp.max(x, axis=-1, keepdims=True)
    scale = jnp.minimum(_big(x) * jnp.maximum(jnp.exp(m), 1.0), fmax)
    d = jax.lax.stop_gradient((m - x) * scale)
    r = _row_sum(jnp.minimum(jnp.exp(x), d))
    ties = (n - 1.0) - _row_sum(jnp.minimum(d, 1.0))
    s = r * jnp.exp(-m) + ties
    bad = jnp.maximum(m - lim, 0.0) + jnp.maximum(n - s * jnp.exp(m) * up, 0.0)
    return m, s, bad, d


def _fused_softmax_sums_grad(x: Array) -> tuple[Array, Array, Array]:
    """The value+gradient path's ``(m, s, ok)`` (m and s are used outside the sums' fusion there,
    which splits it anyway; measured 1.0-1.1x Optax's value+grad at 8192x1000 with this form, 1.5x
    with :func:`_fused_softmax_sums`'): ``(m, s, ok)`` of rows of logits ``x`` from reductions
    that XLA fuses: arithmetic, min and max only (on CPU a compare or a select makes XLA write
    the array out before reducing it).

    ``m`` is the row maximum and ``s`` the sum of exp(x - m) over every entry but one maximum, as
    in :func:`_softmax_parts`, for the rows where ``ok`` holds; a batch with another row is left
    to :func:`_softmax_parts`. The product form (see ``_PRODUCT``): ``exp(x_j - m) =
    exp(x_j) exp(-m)``, each factor within 1 ulp (exact arguments), so no correction of a rounded
    ``x_j - m`` is needed:

    - ``h = min((x - m) (-2**126), 1)`` is 1 below the maximum and 0 at it (a difference below the
      normal range counts as a tie, as in :func:`_below`), ``c = n - 1 - sum h`` the number of
      extra tied maxima (exact), and ``s = exp(-m) sum (h exp(x) + exp(m) c / n)``: the entries
      below plus the extra tied maxima, no ``1 + tiny - 1``. Without ties the added term is exactly
      0; with ties ``s >= 1`` and its rounding is a few ``u`` of ``s``.
    - ``ok``: ``|m| <= 80`` (700 in float64: exp(-m) and exp(m) normal), ``s`` finite (no exp
      overflowed) and ``sum h exp(x) >= n 2**-100`` (2**-960), so that the terms below the normal
      range (flushed or not) err by at most ``n 2**-126`` in all, below ``u/2`` of the sum.
    """
    n = x.shape[-1]
    lim, up = _PRODUCT[str(x.dtype)]
    m = jnp.max(x, axis=-1, keepdims=True)
    # x + (-m), not m - x: XLA writes out in full a broadcast that two row reductions share, and
    # the value's sum broadcasts m (see _exp_below)
    h = jax.lax.stop_gradient(jnp.minimum((x + -m) * -_big(x), 1.0))
    share = ((n - 1.0) - jnp.sum(h, axis=-1, keepdims=True)) * (jnp.exp(m) / n)
    total = jnp.sum(h * jnp.exp(x) + share, axis=-1, keepdims=True)
    s = total * jnp.exp(-m)
    return m, s, (jnp.abs(m) <= lim) & (total * up >= n) & (s < jnp.inf)


def _scce_logits(k: Array, x: Array, grad: bool) -> tuple[Array, Any]:
    # value: lse(x) - x_k = log(1 + sum_{j != k} exp(x_j - x_k)) = log1p(t), t = R exp(-x_k) with
    #        R = sum_{j != k} exp(x_j) (the label's column left out by the select-free factor
    #        min(|j - k|, 1), exact; the other columns' terms non-negative). Each exp(x_j) is within
    #        1 ulp (exact argument), R within 1 + (n - 2) u ulp (a sum of non-negative terms),
    #        exp(-x_k) 1 ulp and the product one rounding: t within about 3 ulp + (n - 2) u, and
    #        log1p (condition number <= 1 on t >= 0) adds 2.2: about 5 ulp, also for a confident row
    #        (t tiny, loss ~ t) and a row whose label is far below the maximum (loss ~ x_max - x_k).
    #        One pass over x (Optax's value takes two: the maximum, then the sum). Valid where
    #        |x_k| <= 80 (700 in float64: exp(-x_k) normal), t finite (no exp overflowed) and
    #        R >= n 2**-100 (2**-960): the terms below the normal range, flushed or not, then err by
    #        at most n 2**-126 (n 2**-1022) in all, below u/2 of R. Other batches (and NaN, inf,
    #        float32 rows of 2**24 classes or more) take _scce_logits_exact under lax.cond.
    # gradient: softmax_i - [i = k] = exp(x_i) q with q = exp(-x_k) / (1 + t) = 1/S off the label
    #        (about 3.5 ulp), and -t / (1 + t) at it (no cancellation). An exp(x_i) below the normal
    #        range is only harmless when q <= 1 (then softmax_i itself is below it, where the
    #        contract allows a flush): a batch with a row of S < 1 takes the exact kernel.
    #        The gradient comes out of lax.cond, so XLA writes it out and the caller's chain rule reads
    #        it again (measured: v+g 1.2-1.5x Optax; the same formula outside lax.cond, without a
    #        fallback, 1.0-1.4x). Computing it outside with a TwoSum-corrected exp(x - shift) that
    #        serves both branches (shift 0 here, the maximum in the exact kernel) measured slower
    #        (1.4-2.1x): the correction's operations cost more than the write.
    n = x.shape[-1]
    lim, up = _PRODUCT[str(x.dtype)]
    if n < 2 or n >= 2**24:
        return _scce_logits_exact(k, x, grad)
    k = jnp.where(k < 0, k + n, k)  # as take_along_axis reads a negative label (traced, unchecked)
    z_k = jnp.take_along_axis(x, k, axis=-1)
    # in float32 (exact for n < 2**24), also for float64 logits: XLA CPU fuses a float32 iota into
    # the row reduction but writes a float64 one out in full
    off = jnp.minimum(jnp.abs(jnp.arange(n, dtype=jnp.float32) - k.astype(jnp.float32)), 1.0)
    r = jnp.sum(jax.lax.stop_gradient(off).astype(x.dtype) * jnp.exp(x), axis=-1, keepdims=True)
    c = jnp.exp(-z_k)
    t = r * c
    ok = (jnp.abs(z_k) <= lim) & (r * up >= n) & (t < jnp.inf)
    if not grad:
        value = jax.lax.cond(jnp.all(ok), lambda: _log1p(t)[..., 0],
                             lambda: _scce_logits_exact(k, x, False)[0])
        return value, None
    q = c / (1.0 + t)

    def fast() -> tuple[Array, Array]:
        hit = jnp.arange(n) == k
        return _log1p(t)[..., 0], jnp.where(hit, -t / (1.0 + t), jnp.exp(x) * q)

    return jax.lax.cond(jnp.all(ok & (q <= 1.0)), fast, lambda: _scce_logits_exact(k, x, True))


def _scce_logits_exact(k: Array, x: Array, grad: bool) -> tuple[Array, Any]:
    """Sparse cross-entropy from logits for every input (the batches that :func:`_scce_logits`'
    one pass does not cover)."""
    # value: lse(x) - x_k = (m - x_k) + log1p(s), two non-negative terms: m - x_k rounds once
    #        (half an ulp), log1p(s) is within 2.2 ulp of log1p of an s within 2 + (n-1)u ulp (log1p
    #        has condition number <= 1 on s >= 0): the sum is within about 4 ulp, also for a
    #        confident row whose loss is 1e-30 (the whole loss is log1p(s) ~ s).
    # gradient: softmax_i - [i = k] with softmax_i = e_i / (1 + s). At a label that is a maximum:
    #        1/(1+s) - 1 = -s / (1 + s), formed without cancellation. At a label below the maximum
    #        softmax_k < 1/2 (the maximum's share is larger), so e_k/(1+s) - 1 keeps its relative
    #        accuracy (error <= 2 ulp of a result of size >= 1/2).
    # (_fused_softmax_sums, which the dense kernel uses, measured no faster here: with one label
    # per row the select form makes few passes, and its exponentials are reused by the gradient.)
    m, at_max, e, s = _softmax_parts(x)
    value = (m - jnp.take_along_axis(x, k, axis=-1)) + jnp.log1p(s)
    if not grad:
        return value[..., 0], None
    inv = 1.0 / (1.0 + s)
    soft = jnp.where(at_max, inv, e * inv)
    hit = jnp.arange(x.shape[-1]) == k
    g = jnp.where(hit, jnp.where(at_max, -s * inv, soft - 1.0), soft)
    return value[..., 0], g


def _cce_logits_slow(t: Array, x: Array, grad: bool) -> tuple[Array, Array, Array, Array]:
    """``(value, s, m, T)`` of :func:`_cce_logits` with selects (every special value: infinite
    and NaN logits, ``0 * inf``), for the batches that the fused pass does not cover (without
    ``grad`` the value again in place of ``T``)."""
    m, _, _, s = _softmax_parts(x)
    spread = jnp.sum(_xmul(t, m - x), axis=-1, keepdims=True)
    total = jnp.sum(t, axis=-1, keepdims=True)
    value = spread + _xmul(total, jnp.log1p(s))
    return value, s, m, total if grad else value


def _cce_logits(t: Array, x: Array, grad: bool) -> tuple[Array, Any]:
    # value: sum_j t_j (lse(x) - x_j) = sum_j t_j ((m - x_j) + log1p(s)): every term non-negative
    #        (t_j >= 0, m >= x_j), m - x_j and the sum rounded once each, the product once,
    #        log1p(s) within about 4 ulp (see _scce_logits): each term within about 5 ulp, and
    #        the row adds non-negative terms. Value only (rows up to _ONE_FUSION_ROWS): one XLA
    #        fusion (_fused_softmax_sums, then this sum, which consumes s); with the gradient, the
    #        separate fusions of _fused_softmax_sums_grad. A batch where the form does not apply or
    #        that meets 0 * inf (a zero target at an infinite logit) is summed again with selects
    #        under lax.cond.
    # gradient: T softmax_i - t_i, T = sum_j t_j. At a unique maximum with s < 1, T / (1 + s) - t_i
    #        is formed as ((T - t_i) - t_i s) / (1 + s), so a one-hot target at a confident maximum
    #        gives -s/(1+s) to full relative accuracy (T - t_i = 0 exactly). With s >= 1 (which
    #        tied maxima imply) softmax <= 1/2 and the plain form loses nothing for hard targets.
    #        For soft targets the difference is the documented exception (8 ulp of the larger
    #        term).
    # (m and T pass through lax.cond, so the gradient broadcasts values that no row reduction
    # shares: XLA would write such a broadcast out in full.)
    if not grad and x.shape[-1] <= _ONE_FUSION_ROWS:
        m, s, bad, _ = _fused_softmax_sums(x)
        value = _row_sum(t * ((m - x) + jnp.log1p(s)))
        # a row outside the domain made non-finite by arithmetic (bad * 2**126 >= 2**102,
        # squared, overflows), not by a select, so that the value stays in the sums' fusion: XLA
        # then runs the whole value-only path as one fusion over t and x, as Optax's
        big = bad * _big(x)
        value = value + big * big
        value = jax.lax.cond(jnp.all(jnp.isfinite(value)), lambda: value,
                             lambda: _cce_logits_slow(t, x, False)[0])
        return value[..., 0], None
    m, s, ok = _fused_softmax_sums_grad(x)
    value = jnp.sum(t * ((m - x) + jnp.log1p(s)), axis=-1, keepdims=True)
    fast = jnp.all(ok & jnp.isfinite(value))  # one reduction: each costs a few small fusions
    total = jnp.sum(t, axis=-1, keepdims=True) if grad else value
    value, s, m, total = jax.lax.cond(fast, lambda: (value, s, m, total),
                                      lambda: _cce_logits_slow(t, x, grad))
    return value[..., 0], (_softmax_ce_grad(t, x, m, s, total) if grad else None)


def _softmax_ce_grad(t: Array, x: Array, m: Array, s: Array, total: Array) -> Array:
    """The gradient ``total * softmax(x) - t`` of the cross-entropy from logits (``_cce_logits``,
    ``_fy_softmax``) from the row maximum ``m``, the sum ``s`` of exp(x - m) over the entries but one
    maximum and the targets' row sum ``total``; at a unique maximum ``(total - t) - t s`` over
    ``1 + s``, without cancellation."""
    inv = 1.0 / (1.0 + s)
    at_max = x == m
    unique = at_max & (s < 1.0)
    soft = jnp.where(at_max, inv, _exp_below(x, m) * inv)
    return jnp.where(unique, ((total - t) - t * s) * inv, total * soft - t)


def _fy_softmax_slow(t: Array, x: Array, grad: bool) -> tuple[Array, Array, Array, Array]:
    """:func:`_cce_logits_slow` plus the targets' negative entropy (``0 log 0 = 0``), as the generic
    kernel adds it, for the batches that :func:`_fy_softmax`'s fused pass does not cover."""
    value, s, m, total = _cce_logits_slow(t, x, grad)
    safe = jnp.where(t > 0, t, jnp.ones_like(t))
    value = value + jnp.sum(t * jnp.log(safe), axis=-1, keepdims=True)
    return value, s, m, total if grad else value


def _fy_softmax(t: Array, x: Array, grad: bool) -> tuple[Array, Any]:
    # fenchel_young(regularizer="softmax"): the categorical cross-entropy from logits plus the
    # targets' negative entropy sum_j t_j log t_j (the generic kernel's formula,
    # structured._fenchel_young_rows). value: one fused row sum of
    #        t_j (((m - x_j) + log1p(s)) + log t_j), the cross-entropy's terms of _cce_logits (each
    #        within about 5 ulp) with the entropy's term added elementwise rather than as a second
    #        row sum: the same roundings in another order (a term t_j log t_j is within 2 ulp, and
    #        the inner addition rounds once, half an ulp of |cross-entropy term| + |entropy term|,
    #        as the generic kernel's final addition of the two sums). log t_j is taken of
    #        max(t_j, 2**-126) (select-free: XLA on CPU writes a compare-select out in full, a third
    #        of this loss's time): exact for every normal target and 0 * log(2**-126) = 0 at t_j = 0;
    #        a subnormal target's term t_j log t_j then errs by at most 2**-126 * 17 (its log is
    #        above log 2**-149 = -103.3), below 2**-121 absolute, beyond float32's contract for any
    #        value the cancellation between the two sums leaves resolvable (float64 targets: 2**-1022,
    #        the same argument at 2**-1018). A batch where the fused pass does not apply
    #        (_fused_softmax_sums_grad's conditions) or meets 0 * inf is summed again with selects under
    #        lax.cond (_fy_softmax_slow). gradient: _cce_logits' (T softmax - t), the same formula.
    tiny = float(jnp.finfo(x.dtype).tiny)
    m, s, ok = _fused_softmax_sums_grad(x)
    value = jnp.sum(t * (((m - x) + jnp.log1p(s)) + jnp.log(jnp.maximum(t, tiny))), axis=-1,
                    keepdims=True)
    fast = jnp.all(ok & jnp.isfinite(value))
    total = jnp.sum(t, axis=-1, keepdims=True) if grad else value
    value, s, m, total = jax.lax.cond(fast, lambda: (value, s, m, total),
                                      lambda: _fy_softmax_slow(t, x, grad))
    return value[..., 0], (_softmax_ce_grad(t, x, m, s, total) if grad else None)


def _poly1_logits(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, epsilon: float = 2.0,
                  **opts: Any) -> tuple[Array, Any]:
    # value (poly-1, epsilon >= 0): sum_j t_j (n_j + eps v_j), n_j = -log softmax_j =
    #        (m - x_j) + log1p(s) as in _cce_logits, v_j = 1 - softmax_j formed without
    #        cancellation: (1 + s - e_j) / (1 + s) below the maximum (e_j = exp(x_j - m) <= s, so
    #        s - e_j + 1 >= 1 and its roundings are a few u of it), s / (1 + s) at a maximum
    #        (tied maxima included). One expression serves both, select-free, from
    #        _fused_softmax_sums' d: v_j = ((s + min(d_j, 1)) - min(exp(x_j), d_j) exp(-m)) / (1 + s)
    #        (d_j = 0 at a maximum, >= max(exp(m), 1) below it). Every term is non-negative and
    #        within about 6 ulp (exp(x_j) and exp(-m) 1 ulp each, the product, two sums, the
    #        quotient), so the row sum is too: the value-only path is the dense kernel's one
    #        fusion with a few more operations per element. The gradient, epsilon < 0 and rows
    #        longer than _ONE_FUSION_ROWS take the generic kernel.
    x, t = y_pred, y_true
    eps = float(epsilon)
    if grad or eps < 0 or x.shape[-1] > _ONE_FUSION_ROWS:
        return _generic("poly_loss_cross_entropy", t, x, grad, (), {}, {"epsilon": eps, **opts})
    m, s, bad, d = _fused_softmax_sums(x)
    inv = 1.0 / (1.0 + s)
    below = (s + jnp.minimum(d, 1.0)) - jnp.minimum(jnp.exp(x), d) * jnp.exp(-m)
    value = _row_sum(t * (((m - x) + jnp.log1p(s)) + (eps * inv) * below))
    big = bad * _big(x)  # outside the domain: non-finite (see _cce_logits)
    value = value + big * big
    value = jax.lax.cond(jnp.all(jnp.isfinite(value)), lambda: value[..., 0],
                         lambda: _generic("poly_loss_cross_entropy", t, x, False, (), {},
                                          {"epsilon": eps, **opts})[0])
    return value, None


# ---------------------------------------------------------- cross-entropy of renormalised probs


def _log_ratio_plus_one(r: Array, p: Array) -> Array:
    """``log((r + p) / p) = log1p(r / p)``, with ``log(r) - log(p)`` where ``r / p`` overflows
    (the generic kernel's rule)."""
    ratio = r / p
    huge = (ratio == jnp.inf) & (p > 0)
    safe_p = jnp.where(huge, p, jnp.ones_like(p))
    safe_r = jnp.where(huge, r, jnp.ones_like(r))
    return jnp.where(huge, jnp.log(safe_r) - jnp.log(safe_p), jnp.log1p(ratio))


def _scce_probs(k: Array, p: Array, grad: bool) -> tuple[Array, Any]:
    # value: log(P / p_k) = log1p(R_k / p_k), R_k = sum_{j != k} p_j summed directly (non-negative
    #        terms: within (n - 2) u; the label's column is left out by the select-free factor
    #        min(2 |j - k|, 2) / 2, exact), so no P - p_k is formed and a row [1 - 1e-7, 1e-7] keeps
    #        its loss 1e-7. log1p has condition number <= 1 on [0, inf): the ratio's two roundings
    #        and R_k's error carry over, about 3 ulp in all.
    # gradient: 1/P off the label, 1/P - 1/p_k = -(R_k / p_k) / P at the label, with
    #        P = R_k + p_k rounded once.
    cols = jnp.arange(p.shape[-1], dtype=p.dtype)
    off_label = jnp.minimum(2.0 * jnp.abs(cols - k.astype(p.dtype)), 2.0)
    r_k = 0.5 * jnp.sum(p * off_label, axis=-1, keepdims=True)
    p_k = jnp.take_along_axis(p, k, axis=-1)
    value = _log_ratio_plus_one(r_k, p_k)[..., 0]
    if not grad:
        return value, None
    total = r_k + p_k
    hit = jnp.arange(p.shape[-1]) == k
    return value, jnp.where(hit, -(r_k / p_k) / total, 1.0 / total)


def _cce_probs_exact(t: Array, p: Array, total: Array, r_max: Array, big: Array) -> Array:
    """The value of :func:`_cce_probs` with selects (0 * log 0 = 0, log(r) - log(p) where r/p
    overflows), for the rare batches that need it."""
    others = jnp.where(p == big, r_max, total - p)
    return jnp.sum(_xmul(t, _log_ratio_plus_one(others, p)), axis=-1)


def _cce_probs(t: Array, p: Array, grad: bool) -> tuple[Array, Any]:
    # value: sum_j t_j log(P / p_j). Below the maximum p_j < P/2, so P / p_j > 2 and log has
    #        condition number < 1.45 there: the quotient's rounding and P's (a sum of non-negative
    #        terms) give about 3 ulp per term. At a maximum M the term is log1p(R / M), R the other
    #        probabilities summed directly (the entries below M plus c - 1 copies of M for c tied
    #        maxima), so a row [1 - 1e-7, 1e-7] keeps its loss; its coefficient, the targets at
    #        the maxima, is T - (the others' targets), exact for hard targets and within u T for
    #        soft ones (a small part of a value >= (T - t_top) log 2). Every term is non-negative.
    #        A batch with a non-finite value (0 * log 0, p = 0, an overflowing P / p) is summed
    #        again with the selects of the generic kernel.
    # gradient: T/P - t_i/p_i = ((T - t_i) p_i - t_i R_i) / (p_i P) with R_i = P - p_i below the
    #        maximum (>= P/2) and R at it; T - t_i is exact for hard targets and off by u T
    #        otherwise (u T/P in the result: the documented soft-target exception); T/P where
    #        t_i = 0.
    n = p.shape[-1]
    big = jnp.max(p, axis=-1, keepdims=True)
    below = _below(p, big)
    total = jnp.sum(p, axis=-1, keepdims=True)
    ties = (n - 1.0) - 0.5 * jnp.sum(below, axis=-1, keepdims=True)
    r_max = 0.5 * jnp.sum(p * below, axis=-1, keepdims=True) + ties * big
    t_total = jnp.sum(t, axis=-1, keepdims=True)
    t_top = t_total - 0.5 * jnp.sum(t * below, axis=-1, keepdims=True)
    spread = 0.5 * jnp.sum(t * below * jnp.log(total / p), axis=-1)
    value = spread + _xmul(t_top, _log_ratio_plus_one(r_max, big))[..., 0]
    value = jax.lax.cond(jnp.all(jnp.isfinite(value)), lambda: value,
                         lambda: _cce_probs_exact(t, p, total, r_max, big))
    if not grad:
        return value, None
    others = jnp.where(p == big, r_max, total - p)
    g = (((t_total - t) * p - t * others) / p) / total
    return value, jnp.where(t == 0, t_total / total + jnp.zeros_like(p), g)


# ------------------------------------------------------------------------- binary cross-entropy


def _bce_logits(y: Array, x: Array, grad: bool) -> tuple[Array, Any]:
    # value: t softplus(-x) + (1-t) softplus(x) = (1 - t) max(x, 0) + t max(-x, 0) + log1p(e),
    #        e = exp(-|x|) (softplus(x) = max(x, 0) + log1p(e)): non-negative terms of which at
    #        most one product is non-zero, within 1.5 ulp (1 - t rounds once, exact for t >= 1/2),
    #        and log1p(e) within 2.2 ulp of an e within 1 ulp (|x| is exact). The mean adds
    #        non-negative terms. 0 * inf (a hard label at an infinite logit) would be NaN in this
    #        select-free form: such batches are summed again with 0 * inf = 0.
    # gradient: sigmoid(x) - t = (1 - t) sigmoid(x) - t sigmoid(-x): one exact product for a hard
    #        label, with sigmoid(x) = 1/(1+e) or e/(1+e) (within 1.5 ulp in both tails); soft
    #        labels are the documented exception.
    e = jnp.exp(-jnp.abs(x))
    q = 1.0 - y
    zero = jnp.zeros_like(x)
    tail = jnp.log1p(e)
    value = jnp.mean(q * jnp.maximum(x, zero) + y * jnp.maximum(-x, zero) + tail, axis=-1)
    value = jax.lax.cond(
        jnp.any(jnp.isnan(value)),
        lambda: jnp.mean(_xmul(jnp.where(x >= 0, q, y), jnp.abs(x)) + tail, axis=-1),
        lambda: value)
    if not grad:
        return value, None
    nonneg = x >= 0
    big = 1.0 / (1.0 + e)
    small = e * big
    sig_pos = jnp.where(nonneg, big, small)
    sig_neg = jnp.where(nonneg, small, big)
    return value, (_xmul(q, sig_pos) - _xmul(y, sig_neg)) / x.shape[-1]


def _bce_probs(y: Array, p: Array, grad: bool) -> tuple[Array, Any]:
    # value: -t log p - (1-t) log(1-p), both terms non-negative. With q = min(p, 1 - p) (1 - p is
    #        exact for p >= 1/2, Sterbenz), log(q) is the log of the smaller one (1 ulp) and
    #        log1p(-q) (q <= 1/2: condition number <= 1.5, see _log1p) that of the larger, so a
    #        p within an ulp of 1 keeps -log(p) ~ 1 - p to full relative accuracy.
    # gradient: (p - t) / (p (1 - p)); p - t exact for a hard label (Sterbenz or t = 0), and
    #        1/(1-p) or -1/p there (the limits where p = t); soft labels are the exception.
    upper = p > 0.5
    q = jnp.where(upper, 1.0 - p, p)
    of_small, of_large = jnp.log(q), _log1p(-q)
    log_p = jnp.where(upper, of_large, of_small)
    log_q = jnp.where(upper, of_small, of_large)
    value = jnp.mean(_xmul(y, -log_p) + _xmul(1.0 - y, -log_q), axis=-1)
    if not grad:
        return value, None
    g = (p - y) / (p * (1.0 - p))
    g = jnp.where(y == 0, 1.0 / (1.0 - p), jnp.where(y == 1, -1.0 / p, g))
    return value, g / p.shape[-1]


# -------------------------------------------------------------------------------- regression


def _mean_rows(terms: Array, scaled: Any, squared: bool = False) -> Array:
    """Row means of ``terms``; if a row's sum overflows, the rows are summed again from
    ``scaled()`` (the same terms times 2**-64, or 2**-128 for squares of scaled differences:
    exact) and scaled back in exact steps of 2**64, so a mean within range is not returned as inf
    (a genuine inf stays inf)."""
    n = terms.shape[-1]
    plain = jnp.sum(terms, axis=-1) / n

    def again() -> Array:
        mean = (jnp.sum(scaled(), axis=-1) / n) * _UP
        return jnp.where(plain == jnp.inf, mean * _UP if squared else mean, plain)

    return jax.lax.cond(jnp.any(plain == jnp.inf), again, lambda: plain)


def _mse(t: Array, p: Array, grad: bool) -> tuple[Array, Any]:
    # value: mean (p - t)^2: the difference rounds once (half an ulp), its square twice more
    #        (1.5 ulp), and the mean adds non-negative terms. Where a square or the row sum
    #        overflows, the row is summed again from (p 2**-64 - t 2**-64)^2 (exact scalings), so
    #        a mean within range is not inf.
    # gradient: 2 (p - t) / n as (p/2 - t/2) (4/n): the halvings are exact (a subnormal loses
    #        its last bit, below the flush-to-zero line), so this is d (2/n) with the same three
    #        roundings, and p - t cannot overflow where the gradient itself is finite.
    d = p - t

    def scaled() -> Array:
        ds = p * _DOWN - t * _DOWN
        return ds * ds

    value = _mean_rows(d * d, scaled, squared=True)
    if not grad:
        return value, None
    return value, (0.5 * p - 0.5 * t) * (4.0 / p.shape[-1])


def _mae(t: Array, p: Array, grad: bool) -> tuple[Array, Any]:
    # value: mean |p - t|: one rounding per term, non-negative terms; overflow as in _mse.
    # gradient: sign(p - t) / n, 0 at zero error (the sign of a difference that overflows is
    #        still right).
    d = p - t
    value = _mean_rows(jnp.abs(d), lambda: jnp.abs(p * _DOWN - t * _DOWN))
    return value, (jnp.sign(d) / p.shape[-1] if grad else None)


def _huber(t: Array, p: Array, grad: bool, delta: float) -> tuple[Array, Any]:
    # value: mean h(d), d = p - t, written select-free as h = c (a - c/2) with a = |d| and
    #        c = min(a, delta): for a <= delta that is a (a/2) = d^2/2 (the halving is exact, one
    #        rounding), for a > delta it is delta (a - delta/2), the generic kernel's linear branch
    #        (a - delta/2 >= a/2: one rounding, condition number <= 2 on a). With d's own rounding
    #        each term is within 2.5 ulp; the mean adds non-negative terms. Overflow as in _mse:
    #        the same terms from p s and t s with delta s (s = 2**-64) are h s^2 exactly (terms
    #        that then underflow are negligible beside a row sum that overflowed).
    #        Optax computes c^2/2 + delta (a - c) the same way, with no compare or select, which
    #        is what lets XLA fuse the terms into the row sum (a select is written out first).
    # gradient: h'(d)/n = clip(d, -delta, delta)/n (a difference that overflows gives +-delta).
    def terms(t: Array, p: Array, delta: float) -> Array:
        a = jnp.abs(p - t)
        c = jnp.minimum(a, delta)
        return c * (a - 0.5 * c)

    value = _mean_rows(terms(t, p, delta), lambda: terms(t * _DOWN, p * _DOWN, delta * _DOWN),
                       squared=True)
    if not grad:
        return value, None
    return value, jnp.clip(p - t, -delta, delta) / p.shape[-1]


def _smooth_l1(t: Array, p: Array, grad: bool, beta: float) -> tuple[Array, Any]:
    # value: huber(delta = beta) / beta, as c/beta (a - c/2) with c = min(a, beta): below beta
    #        (a/beta)(a/2), two roundings besides d's (within 3 ulp); at and above beta c/beta = 1
    #        exactly and the term is a - beta/2 (one rounding, condition number <= 2). beta = 0 is
    #        the mean absolute error (_mae). Overflow as in _huber (the scaled terms are h s).
    # gradient: clip(d/beta, -1, 1)/n: d/beta below beta, sign(d) from beta on (d/beta >= 1).
    if beta == 0:
        return _mae(t, p, grad)

    def terms(t: Array, p: Array, beta_s: float) -> Array:
        a = jnp.abs(p - t)
        c = jnp.minimum(a, beta_s)
        return (c / beta_s) * (a - 0.5 * c)

    value = _mean_rows(terms(t, p, beta), lambda: terms(t * _DOWN, p * _DOWN, beta * _DOWN))
    if not grad:
        return value, None
    return value, jnp.clip((p - t) / beta, -1.0, 1.0) / p.shape[-1]


# log cosh(sqrt s)/s on 0 <= s <= 1 (lowest degree first): Chebyshev fits to mpmath's values
# (mpmath.chebyfit, degree 6 and 14), off by at most 3.6e-9 (0.12 float32 ulp of the
# ratio, which lies in [0.43, 0.5]) and 5e-18 (0.09 float64 ulp).
_LOG_COSH_32 = (0.4999999963398586, -0.08333297333913557, 0.022216355218102883,
                -0.006709512068926296, 0.002075578429968007, -0.0005546654952256772,
                8.605410201288882e-05)
_LOG_COSH_64 = (0.5, -0.08333333333333108, 0.022222222222053067, -0.0067460317410084555,
                0.0021869487752007918, -0.0007386022204321077, 0.0002565759865330968,
                -9.097002146219214e-05, 3.271939287579791e-05, -1.1823332233363504e-05,
                4.187437739149353e-06, -1.3729456929291544e-06, 3.7585381118136593e-07,
                -7.274045244955428e-08, 7.149426687319922e-09)


def _log_cosh(t: Array, p: Array, grad: bool) -> tuple[Array, Any]:
    # value: mean log cosh(d), d = p - t, a = |d|, s = d^2:
    #   a <= 1: s P(s), P the fit above (Horner from the highest degree: alternating terms of
    #           falling size, P in [0.43, 0.5], within about an ulp), so with s's and the
    #           product's roundings each term is within 2 ulp; no cancellation near 0, where a
    #           form with log 2 subtracted loses every digit (Optax's, Keras's);
    #   a > 1:  ((a - ln2_hi) - ln2_lo) + log1p(exp(-2a)) (_LN2_HI, _LN2_LO below): two
    #           non-negative parts (a - log 2 > 0.3), the first within an ulp, the second
    #           within 3.3 (exp 1, log1p 2.3) and at most 0.3 of the sum: within 2 ulp.
    #   The cost is Optax's (its logaddexp(d, -d) is the same exp and log1p) plus the
    #   polynomial's FMAs. Overflow of d or of a row sum as in _mae (a term's excess over |d| is
    #   below log 2, negligible beside a sum that overflowed).
    # gradient: tanh(d)/n (XLA's tanh: within 3.9 float32 ulp, 6 float64 ulp, measured).
    d = p - t
    a = jnp.abs(d)
    small = a <= 1.0
    s = jnp.where(small, d * d, jnp.zeros_like(d))  # 0 elsewhere: no inf - inf in the unused branch
    coefs = _LOG_COSH_32 if d.dtype == jnp.float32 else _LOG_COSH_64
    poly = jnp.full_like(s, coefs[-1])
    for c in coefs[-2::-1]:
        poly = poly * s + c
    far = ((a - _LN2_HI) - _LN2_LO) + jnp.log1p(jnp.exp(-2.0 * a))
    value = _mean_rows(jnp.where(small, s * poly, far), lambda: jnp.abs(p * _DOWN - t * _DOWN))
    if not grad:
        return value, None
    return value, jnp.tanh(d) / p.shape[-1]


# ---------------------------------------------------------------------------------- divergence


def _kl_exact(t: Array, p: Array) -> Array:
    """The value of the generic kernel in the input precision: every term split by ``kl_parts``
    where it cancels against the others, the row summed in double length (``accurate_sum``)."""
    from .._numerics import accurate_sum, kl_parts  # the generic kernels' helpers

    return accurate_sum(jnp, jnp.concatenate(kl_parts(jnp, t, p), axis=-1))


# Short rows: on the benchmark's 65536x10 inputs (normalised random rows, KL 0.007 to 1.5) 25556
# rows (39%) fail _kl's bound (21247 fail _kl_div's), so the batch always takes the double-length
# pass (about 5x Optax). Tightening the bound does not help: without the quotient's T/2 term
# (recoverable exactly) 13254 rows still fail, and at 6A <= 24 |value| still 616. A fast short-row
# kernel needs a cancellation-free split, sum_j p_j g(t_j / p_j) (g(x) = x log x - x + 1 >= 0,
# each term accurate relative to itself) plus sum_j (t_j - p_j) summed exactly, so that generic
# rows pass and only special ones reach the exact path.
def _kl(t: Array, p: Array, grad: bool) -> tuple[Array, Any]:
    # value: sum_j t_j log(q_j), q_j = t_j / p_j, in one fused pass: the quotient rounds by u/2,
    #        which log turns into an absolute u/2; log itself is within an ulp (2u relative) and
    #        the product rounds once: term j is off by at most u (t_j/2 + 3 |term_j|). The terms
    #        have both signs; the row sum (a tree of vector lanes) adds at most about 2 u A,
    #        A = sum_j |term_j| (observed far below for rows up to 32000). So the value is within
    #        u (T/2 + 5 A), T = sum_j t_j, and it is kept when T + 10 A <= 24 |value| (within
    #        6 ulp). Batches with a row that fails this (two nearly equal distributions, whose
    #        terms cancel) or whose value is not finite (p = 0 = t, an overflowing quotient) are
    #        summed again in double length (kl_parts and accurate_sum, as the generic kernel does
    #        without widening) under lax.cond. t = 0 gives 0 log(tiny) = 0 (q is raised to the
    #        smallest positive float; for t > 0, q >= t >= it already, as p <= 1).
    #        A is summed first and the value consumes it (+ 0 A, exact), so that XLA fuses the
    #        two row sums into one pass over the inputs (it fuses a chain, not siblings).
    # gradient: -t/p, 0 where t = 0.
    #        A is taken as sum_j t_j |log(p_j / t_j)| (the same |log q_j|, from the inverse
    #        quotient, capped at the largest float where t = 0: XLA writes out in full an
    #        expression that two row sums share, so the two are computed apart).
    info = jnp.finfo(p.dtype)
    logq = jnp.log(jnp.maximum(t / p, float(info.smallest_subnormal)))
    size = jnp.sum(t * (jnp.abs(jnp.log(jnp.minimum(p / t, float(info.max)))) * 10.0 + 1.0),
                   axis=-1, keepdims=True)
    value = jnp.sum(t * logq + 0.0 * size, axis=-1, keepdims=True)
    fast = jnp.all(size <= 24.0 * jnp.abs(value)) & jnp.all(jnp.isfinite(value))
    value = jax.lax.cond(fast, lambda: value[..., 0], lambda: _kl_exact(t, p))
    if not grad:
        return value, None
    return value, jnp.where(t != 0, -t / p, jnp.zeros_like(p))


def _log_split(t: Array) -> tuple[Array, Array]:
    """``(k, m)`` with ``t = m 2**k``, ``m`` in ``[sqrt(1/2), sqrt(2))`` and ``k`` an integer held as a
    float, for normal positive ``t``, from the bits and select-free (the reduction of musl's
    ``logf``): subtracting the bits of sqrt(1/2) makes the exponent field's carry pick ``k``.
    Subnormal ``t`` gives a wrong ``(k, m)`` with ``m 2**k`` within a factor 2**24 of ``t`` (the
    caller's bound accounts for it); ``t = 0`` gives a finite ``k`` and ``m``."""
    if t.dtype == jnp.float32:
        itype, shift, frac, root = jnp.int32, 23, 0x007FFFFF, 0x3F3504F3
    else:
        itype, shift, frac, root = jnp.int64, 52, 0x000FFFFFFFFFFFFF, 0x3FE6A09E667F3BCD
    bits = jax.lax.bitcast_convert_type(t, itype) - root
    k = jax.lax.shift_right_arithmetic(bits, jnp.asarray(shift, itype)).astype(t.dtype)
    m = jax.lax.bitcast_convert_type((bits & frac) + root, t.dtype)
    return k, m


def _high_bits(v: Array) -> Array:
    """``v`` with the low half of its significand cleared (12 significant bits in float32, 26 in
    float64), from the bits: the product of two such numbers is exact, and ``v - _high_bits(v)`` is
    exact too. (Veltkamp's split would do the same with arithmetic that LLVM may contract into a
    fused multiply-add, which changes its result.)"""
    if v.dtype == jnp.float32:
        itype, mask = jnp.int32, -(1 << 12)
    else:
        itype, mask = jnp.int64, -(1 << 27)
    return jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(v, itype) & mask, v.dtype)


@jax.custom_jvp
def _pair_sum(hi: Array, lo: Array) -> Array:
    """The row sums of ``hi + lo`` (last axis) in double length, rounded once: one variadic
    reduction whose combiner adds the high parts by TwoSum and the low parts and the error plainly
    (Ogita, Rump and Oishi's Sum2 in XLA's order): within half an ulp plus about n u**2 sum |hi|.
    Not finite where a plain sum is not (TwoSum's error is then NaN and the plain sum is used).
    Its derivative is that of the plain row sum (a custom_jvp: JAX's rule for a variadic reduce
    fails on an operand whose tangent is a symbolic zero, as ``lo``'s is where it depends on the
    targets alone, which broke second derivatives of kl_div)."""
    def add(a: tuple[Array, Array], b: tuple[Array, Array]) -> tuple[Array, Array]:
        s = a[0] + b[0]
        bv = s - a[0]
        err = (a[0] - (s - bv)) + (b[0] - bv)
        return s, (a[1] + b[1]) + err

    zero = jnp.zeros((), hi.dtype)
    s, e = jax.lax.reduce((hi, lo), (zero, zero), add, (hi.ndim - 1,))
    total = s + e
    return jnp.where(jnp.isfinite(total), total, jnp.sum(hi, axis=-1))


@_pair_sum.defjvp
def _pair_sum_jvp(primals: Any, tangents: Any) -> Any:
    return _pair_sum(*primals), jnp.sum(tangents[0] + tangents[1], axis=-1)


def _kl_div_careful(t: Array, x: Array) -> Array:
    """:func:`_kl_div`'s value for the batches its plain pass does not cover: every term in double
    length but ``log m`` (see the error argument there), the row summed in double length
    (:func:`_pair_sum`); rows that this still does not cover, or that are not finite, are
    recomputed by :func:`_rows_again`."""
    k, m = _log_split(t)
    lm = jnp.log(m)
    kc = k * _LN2_HI
    a = kc - x
    a_lo = _two_sum_err(kc, -x, a)
    kl = k * _LN2_LO
    b = kl + lm
    b_lo = _two_sum_err(kl, lm, b)
    hi = a + b
    lo = (_two_sum_err(a, b, hi) + a_lo) + b_lo
    th, hh = _high_bits(t), _high_bits(hi)
    tl, hl = t - th, hi - hh
    first = th * hh
    rest = ((th * hl + tl * hh) + tl * hl) + t * lo
    value = _pair_sum(first, rest)
    tiny = 2.0**-90 if t.dtype == jnp.float32 else 2.0**-900
    bound = jnp.sum(t * 0.6 + (jnp.abs(first) * 2.0**-8 + tiny), axis=-1)
    bad = ~((bound <= 14.0 * jnp.abs(value)) & jnp.isfinite(value))
    return _rows_again(value, bad, t, x)


def _kl_div_host(value: Any, bad: Any, t: Any, x: Any) -> Any:
    """``value`` with the rows where ``bad`` holds replaced by the NumPy kernel's value (float32
    widened to float64, then double length: exact where float-float on the device is not)."""
    import numpy as np

    from ..losses.divergence import _kl_div as generic

    value, bad = np.array(value), np.asarray(bad)  # the callback may receive jax arrays
    t, x = np.asarray(t)[bad], np.asarray(x)[bad]
    widened = t.dtype == np.float32
    if widened:
        t, x = t.astype(np.float64), x.astype(np.float64)
    with np.errstate(all="ignore"):
        value[bad] = generic(np, t, x, grad=False, widened=widened, log_target=False)[0]
    return value


def _rows_again(value: Array, bad: Array, t: Array, x: Array) -> Array:
    """``value`` with the rows where ``bad`` holds recomputed by the NumPy kernel on the host
    (``jax.pure_callback``, under ``lax.cond``: only when there are such rows). The host has
    float64, which a device without x64 lacks, and the callback compiles to nothing (the same
    double-length code compiled by XLA took seconds)."""
    shape = jax.ShapeDtypeStruct(value.shape, value.dtype)
    # the callback sees constants (a callback has no derivative); the result carries value's
    # tangent (the recomputed rows correct its rounding, not its dependence on x)
    v0, t0, x0 = (jax.lax.stop_gradient(a) for a in (value, t, x))
    again = jax.lax.cond(jnp.any(bad), lambda: jax.pure_callback(
        _kl_div_host, shape, v0, bad, t0, x0, vmap_method="sequential"), lambda: v0)
    return _with_tangent_of(value, again)


@jax.custom_jvp
def _with_tangent_of(value: Array, again: Array) -> Array:
    """``again`` (a more accurate ``value``) with the tangent of ``value``."""
    return again


@_with_tangent_of.defjvp
def _with_tangent_of_jvp(primals: Any, tangents: Any) -> Any:
    return primals[1], tangents[0]


# ln 2 = _LN2_HI + _LN2_LO, _LN2_HI with 16 significant bits (k _LN2_HI exact for |k| < 2**8 in
# float32, 2**37 in float64), _LN2_LO rounded (relative 2**-40 of ln 2: negligible times |k| <= 1075).
_LN2_HI = 0.693145751953125
_LN2_LO = 1.4286068203094173e-06


def _kl_div(t: Array, x: Array, grad: bool) -> tuple[Array, Any]:
    # value: sum_j t_j (log t_j - x_j) (PyTorch's kl_div: x = log q). The plain form rounds log t_j
    #        by u |log t_j| before x_j cancels it (16 ulp of a typical row's value at n = 1000), so
    #        log t_j - x_j is formed as L_j = a + b, a = k c1 - x_j, b = k c2 + log m_j, with
    #        t_j = m_j 2**k (_log_split, exact) and c1 + c2 = ln 2 (k c1 exact): |log m_j| <= 0.35,
    #        so XLA's log (1.2 ulp measured over the whole range of m: 0.6 u absolute) and the
    #        rounding of b (|b| <= 0.35 + 2e-4) add at most 0.95 u; a = L_j - b rounds by at most
    #        u (|L_j| + 0.35) and the sum by u |L_j|: |L_j - (log t_j - x_j)| <= u (1.3 + 2 |L_j|),
    #        and the product rounds by u |t_j L_j|: term j is off by at most u (1.3 t_j +
    #        3 |term_j|). The row sum (vector lanes, then a tree) adds about 2 u A,
    #        A = sum_j |term_j| (as for kl_divergence: observed far below). So the value is within
    #        u (1.3 T + 5 A) (T = sum_j t_j), and it is kept when 1.3 T + 5 A <= 14 |value|
    #        (within 7 ulp, ulp = 2u |value|, as _kl counts). Subnormal t_j (below 2**-126) give a
    #        log off by at most 17, a term off by at most 2**-121: every term adds 2**-90 to the
    #        bound's sum (u 2**-90 / 14 > 2**-121). Batches with a row that fails this (two nearly
    #        equal distributions, or a short row whose terms cancel) or whose value is not finite
    #        (x_j = -inf, 0 * inf at t_j = 0, NaN) are summed again under lax.cond by
    #        _kl_div_careful: a and b as exact pairs (TwoSum), L_j = hi + lo, the product split
    #        into halves whose products are exact, the row summed in double length: only log m_j
    #        keeps its rounding (0.6 u), so that value is within u (0.6 T + 2**-8 A) plus half an
    #        ulp (the split's low products, n u**2 A of the sum, n <= 2**16), and a row is kept when
    #        0.6 T + 2**-8 A <= 14 |value|. The rows that fail this too (KL far below T, e.g.
    #        1e-3 for n = 1000) or are not finite are recomputed, 64 at a time, by the NumPy
    #        kernel on the host (_rows_again: float64, then double length; float-float alone
    #        cannot keep a value of 1e-10 from terms of 0.3).
    #        A is summed first and the value consumes it (+ 0 A, exact), as in _kl (XLA fuses a
    #        chain of row sums, not siblings).
    # gradient: -t_j.
    tiny = 2.0**-90 if t.dtype == jnp.float32 else 2.0**-900
    k, m = _log_split(t)
    lt = k * _LN2_LO + jnp.log(m)
    terms = t * ((k * _LN2_HI - x) + lt)
    size = jnp.sum(jnp.abs(terms) * 5.0 + (t * 1.3 + tiny), axis=-1, keepdims=True)
    value = jnp.sum(terms + 0.0 * size, axis=-1, keepdims=True)
    fast = jnp.all(size <= 14.0 * jnp.abs(value)) & jnp.all(jnp.isfinite(value))
    value = jax.lax.cond(fast, lambda: value[..., 0], lambda: _kl_div_careful(t, x))
    if not grad:
        return value, None
    return value, -t


# ------------------------------------------------------------------------------------- margin


def _zero_one_labels(y: Array) -> Array:
    """1.0 if every entry of ``y`` is 0 or 1 (Keras's 0/1 labels), else 0.0, select-free in the
    reduction (the max of min(|y|, |y - 1|) is 0 exactly then). The first 1024 entries are looked
    at first: an entry there that is neither 0 nor 1 (a -1 of +-1 labels, almost surely among the
    first few) settles it without the pass over the whole array, which runs under lax.cond only
    when they are all 0 or 1 (the same decision, a third less traffic for the hinge's value)."""
    def off(v: Array) -> Array:
        return jnp.max(jnp.minimum(jnp.abs(v), jnp.abs(v + -1.0)), initial=0.0)

    flat = jnp.reshape(y, (-1,))
    head = off(flat[:1024])
    return jax.lax.cond(head == 0, lambda: (off(flat) == 0).astype(y.dtype),
                        lambda: jnp.zeros((), y.dtype))


def _perceptron(t: Array, f: Array, grad: bool) -> tuple[Array, Any]:
    # value: mean max(0, z), z = -t f with t = +-1 (checked by the caller on concrete arrays):
    #        z exact, the mean adds non-negative terms (overflow as in _mse; z s is exact).
    # gradient: -t/n where z > 0, -t/(2n) where z = 0 (the average of the one-sided slopes), 0
    #        where z < 0, NaN where z is NaN: the generic kernel's kink_slope (0.5/n is exact
    #        for n a power of two; otherwise one more rounding, half an ulp).
    # (Each use forms its own product: XLA writes out in full an intermediate that a row sum
    # shares with another fusion, which made the value 3x slower.)
    value = _mean_rows(jnp.maximum(-t * f, 0.0), lambda: jnp.maximum(f * (t * -_DOWN), 0.0))
    if not grad:
        return value, None
    # (sign(f) t - 1)/2 is -1, -1/2, 0 for t f < 0, = 0, > 0. sign(f) from the bits, in integer
    # arithmetic: XLA on CPU treats a subnormal input as 0 in float arithmetic and comparisons
    # (a kink at f = 1e-39), and LLVM turns an integer compare of the masked bits with 0 back
    # into a float compare (so does a shift of it). So: the sign bit spread by an arithmetic
    # shift, or 1 (-1 or 1), times min(|f|'s bits as a number, 1) (0 for +-0, 1 otherwise).
    itype = jnp.int32 if f.dtype == jnp.float32 else jnp.int64
    top = jnp.asarray(jnp.iinfo(itype).bits - 1, itype)
    bits = jax.lax.bitcast_convert_type(f, itype)
    mag = (bits & jnp.asarray(jnp.iinfo(itype).max, itype)).astype(f.dtype)
    sign = (jax.lax.shift_right_arithmetic(bits, top) | 1).astype(f.dtype) * jnp.minimum(mag, 1.0)
    g = ((sign * t - 1.0) * t) * (0.5 / f.shape[-1])
    return value, jnp.where(jnp.isnan(f), f, g)


def _hinge(y: Array, f: Array, grad: bool) -> tuple[Array, Any]:
    # value: mean max(0, 1 - t f) with t = +-1 (Keras's rule: an array of 0/1 labels is mapped by
    #        2y - 1, decided over the whole array by the select-free max of min(|y|, |y - 1|)):
    #        t f is exact, 1 - t f rounds once, and the mean adds non-negative terms (overflow as
    #        in _mse).
    # gradient: -t/n inside the margin, -t/(2n) exactly on it (the average of the one-sided
    #        slopes), 0 outside, NaN where the margin is NaN.
    #        The labels are mapped select-free, t = y + b (y - 1) with b = 1 for a 0/1 array and
    #        0 otherwise (exact: -1 and 1, or y itself).
    # The gradient reads t f (f t: XLA then computes it apart from the margin the reduction
    # consumes, instead of writing the margin out): 1 - t f > 0 exactly when t f < 1, = 0 exactly
    # when t f = 1.
    # (The expressions differ on purpose: XLA writes out any intermediate, constants included,
    # that a reduction shares with another fusion; so the 0/1 test adds -1 where the margin
    # subtracts from 1, and the gradient compares (t/2) f with 1/2, exactly t f with 1.)
    b = _zero_one_labels(y)

    def signs() -> Array:
        return (1.0 + b) * y - b

    # The value's row sums run under lax.cond on the decision, each branch with its labels'
    # reading written out (y, or 2y - 1): a broadcast of the decision b inside the reduction made
    # XLA write the mapped labels out in full before summing (one more full-size pass).
    def value_of(t: Array) -> Array:
        return _mean_rows(jnp.maximum(1.0 - t * f, 0.0),
                          lambda: jnp.maximum((1.0 - t * f) * _DOWN, 0.0))

    value = jax.lax.cond(b > 0, lambda: value_of(2.0 * y - 1.0), lambda: value_of(y))
    if not grad:
        return value, None
    t = signs()
    half = (0.5 * t) * f
    slope = jnp.where(half < 0.5, -t, jnp.where(half == 0.5, -0.5 * t, t - t))
    slope = jnp.where(jnp.isnan(half), half, slope)
    return value, slope / f.shape[-1]


# --------------------------------------------------------------------------------- dispatch


def _no_options(opts: Mapping[str, Any], **defaults: Any) -> bool:
    """Whether every option other than ``axis`` has the given default value."""
    return all(opts.get(name, value) == value for name, value in defaults.items())


def _adapt(fn: Any) -> Kernel:
    """A kernel ``(xp, y_true, y_pred, *, grad, **options)`` from ``fn(y_true, y_pred, grad)``."""

    def kernel(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, **_: Any) -> tuple[Array, Any]:
        return fn(y_true, y_pred, grad)

    kernel.__name__ = kernel.__qualname__ = f"jax_{fn.__name__.lstrip('_')}"
    kernel.__doc__ = fn.__doc__
    return kernel


def _with_option(fn: Any, name: str) -> Kernel:
    """As :func:`_adapt` for a kernel ``fn(y_true, y_pred, grad, option)`` of one float option."""

    def kernel(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, **opts: Any
               ) -> tuple[Array, Any]:
        return fn(y_true, y_pred, grad, float(opts[name]))

    kernel.__name__ = kernel.__qualname__ = f"jax_{fn.__name__.lstrip('_')}"
    return kernel


def _sparse(fn: Any) -> Kernel:
    """As :func:`_adapt` for a kernel of integer labels, honouring ``ignore_class``."""

    def kernel(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, ignore_class: int | None = None,
               **_: Any) -> tuple[Array, Any]:
        return fn(_labels(y_true, ignore_class), y_pred, grad)

    kernel.__name__ = kernel.__qualname__ = f"jax_{fn.__name__.lstrip('_')}"
    return kernel


_PLAIN = {
    "mean_squared_error": _adapt(_mse),
    "mean_absolute_error": _adapt(_mae),
    "hinge": _adapt(_hinge),  # the host kernels below replace some of these on CPU
    "huber": _with_option(_huber, "delta"),
    "smooth_l1": _with_option(_smooth_l1, "beta"),
    "log_cosh": _adapt(_log_cosh),
    "perceptron": _adapt(_perceptron),
    "kl_divergence": _adapt(_kl),
}
_KL_DIV = _adapt(_kl_div)
_FY_SOFTMAX = _adapt(_fy_softmax)
_LOGITS = {  # name -> (kernel on logits, kernel on probabilities)
    "sparse_categorical_crossentropy": (_sparse(_scce_logits), _sparse(_scce_probs)),
    "categorical_crossentropy": (_adapt(_cce_logits), _adapt(_cce_probs)),
    "binary_crossentropy": (_adapt(_bce_logits), _adapt(_bce_probs)),
}
_DTYPES = ("float32", "float64")
_POLY1_LOGITS = _poly1_logits


def fast_kernel(name: str, opts: Mapping[str, Any], dtype_name: str, device: Any = None
                ) -> Kernel | None:
    """The fast kernel of ``name`` for these options and dtype, or None (see the module doc).

    Covered: the seven tutorial losses without label smoothing, class weights or positive weights
    (``ignore_class`` is covered: the caller's mask zeroes the ignored samples), huber,
    smooth_l1, log_cosh, perceptron, kl_divergence and kl_div (without ``log_target``), and
    poly_loss_cross_entropy (its value for ``epsilon >= 0``; the generic kernel otherwise), in
    float32 and float64. On a
    CPU device, kl_div and the gradient of categorical cross-entropy from logits on rows of at most
    32 run the C kernels on the host instead (the bottom of this module); triplet_margin,
    cosine_similarity and circle run ``_cpu.embed``'s C kernels on a CPU device (an XLA FFI call)
    and their generic kernels elsewhere; poisson, mean_gamma_deviance (float32), poisson_nll and
    gaussian_nll run their checked C kernels on a CPU device (the XLA FFI target ``losskit_run3``),
    logits_distillation numpy.py's row kernel (the FFI target ``losskit_rows``), and their generic
    kernels elsewhere (the bottom of this module). fenchel_young with ``regularizer="softmax"``: the
    cross-entropy kernel's fused pass (:func:`_fy_softmax`).
    """
    if dtype_name not in _DTYPES:
        return None
    if name in _PLAIN:
        return _PLAIN[name]
    if _HOSTED and (name, dtype_name) in _HOSTED_LOSSES:
        return _HOSTED.get((str(_host_backend.select(name, opts)), dtype_name))
    if name in _EMBED_KERNELS:  # the kernel itself takes the generic path where C does not cover
        return _EMBED_KERNELS[name]
    if (name, dtype_name) in _ROWS_KERNELS:  # the same: the generic path where C does not cover
        return _ROWS_KERNELS[name, dtype_name]
    if name == "kl_div" and not opts.get("log_target", False):
        return _KL_DIV
    if name == "fenchel_young" and opts.get("regularizer") == "softmax":
        return _FY_SOFTMAX
    if name == "poly_loss_cross_entropy" and set(opts) <= {"epsilon", "axis"}:
        return _POLY1_LOGITS
    if name in _LOGITS and _no_options(opts, label_smoothing=0.0, class_weight=None,
                                        pos_weight=None):
        return _LOGITS[name][0 if opts.get("from_logits") else 1]
    return None


__all__ = ["fast_kernel"]


# =============================================================================================
# linear cross-entropy (losskit.linear): jax.custom_vjp over one lax.scan across blocks of
# token_chunk tokens, each block by the whole vocabulary, as the NumPy/torch path. Each block's
# logits Z = h_c @ W.T + b (token_chunk x V) are computed once; every row is whole, so its exact
# statistics, loss and G = w_n (softmax - target) come in one go; then grad_hidden[c] = G @ W
# (the scan's output), grad_weight += G.T @ h_c (carried, updated in place vocab_chunk rows at a
# time so that no weight-sized temporary exists) and grad_bias += sum_rows G. The reduction lives
# inside the custom_vjp: with "mean"/"sum" the per-token weights w_n depend on the labels alone, so
# the forward pass of value_and_grad produces the gradients too (three matmuls) and the backward
# scales them by the incoming scalar; with "none" the backward runs the scan again with the
# incoming per-token gradient as w (four matmuls). The value alone (no gradient) is one matmul.
# =============================================================================================

from functools import partial  # noqa: E402

from jax import lax  # noqa: E402

from .. import linear as _linear  # noqa: E402
from .._numerics import exp_difference, log1p  # noqa: E402


def _lce_acc() -> Any:
    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


def _lce_rows(z: Array, labels: Array, w: Array | None, cfg: _linear.Config
              ) -> tuple[Array, Array | None]:
    """One block of whole rows of logits ``z`` (T, V), pre-cap: each row's loss (``acc``, (T,), 0
    where ignored) and, when ``w`` (T,) is given, ``w_n (softmax - target)`` times the cap's
    derivative (T, V) in the logits' dtype.

    The math of losskit.linear's ``update``/``finish``/``block_gradient`` with the whole row as one
    block, written as three passes over the block (the maximum; the sums; the gradient): ``m``
    the maximum, ``S`` the sum of ``exp(z_j - m)`` (TwoSum-corrected,
    :func:`losskit._numerics.exp_difference`) over the columns below the maximum plus ``k - 1``
    for ``k`` columns at the maximum (the same ``S`` as without the first maximum; no argmax,
    which XLA's CPU backend runs several times slower than a max), loss ``(m - z_y) + log1p(S)``
    (plus ``(s/V) (A + V log1p(S))``, ``A = sum_j (m - z_j)``, with label smoothing ``s``),
    gradient ``exp(z_j - m) / (1 + S) - c_j`` and, at a maximum (softmax ``1 / (1 + S)`` there),
    ``(1 - c_j - c_j S) / (1 + S)`` with ``1 - c_j`` summed from the other classes' targets (no
    ``1 - softmax`` formed)."""
    acc = _lce_acc()
    v, ls = cfg.vocab, cfg.label_smoothing
    zc, t = _linear.cap(jnp, z, cfg)
    valid = labels != cfg.ignore_index
    y = jnp.where(valid, labels, 0)[:, None]
    m = jnp.max(zc, axis=1, keepdims=True)
    at_max = zc == m
    e = exp_difference(jnp, zc, m)
    s = jnp.sum(jnp.where(at_max, jnp.zeros((), e.dtype), e), axis=1, keepdims=True, dtype=acc)
    s = s + (jnp.sum(at_max, axis=1, keepdims=True, dtype=acc) - 1.0)  # + (k - 1): exact
    zy = jnp.take_along_axis(zc, y, axis=1)
    tail = log1p(jnp, s)
    value = (m.astype(acc) - zy.astype(acc)) + tail  # m - z_y >= 0
    if ls:
        a = jnp.sum(m - zc, axis=1, keepdims=True, dtype=acc)  # every term >= 0
        value = (1.0 - ls) * value + (ls / v) * (a + v * tail)
    values = jnp.where(valid, value[:, 0], jnp.zeros((), acc))
    if w is None:
        return values, None
    dtype = z.dtype

    def at_top(c: float, others: float) -> Array:  # (1 - c - c S) / (1 + S), 1 - c = others
        return ((others - c * s) / (1.0 + s)).astype(dtype)

    g_label = at_top(1.0 - ls + ls / v, ls * (v - 1) / v)  # a maximum that is the label
    g_other = at_top(ls / v, 1.0 - ls + ls * (v - 2) / v + ls / v) if ls else at_top(0.0, 1.0)
    inv = (1.0 / (1.0 + s)).astype(dtype)
    g = e * inv
    col = lax.broadcasted_iota(y.dtype, zc.shape, 1)
    if ls:
        g = g - jnp.where(col == y, jnp.asarray(1.0 - ls + ls / v, dtype), jnp.asarray(ls / v, dtype))
    else:
        g = jnp.where(col == y, g - jnp.ones((), dtype), g)
    g = jnp.where(at_max, jnp.where(col == y, g_label, g_other), g) * w[:, None].astype(dtype)
    if t is not None:
        g = g * ((1.0 - t) * (1.0 + t))
    return values, g


def _lce_add_gt_h(gw: Array, g: Array, h: Array, cfg: _linear.Config) -> Array:
    """``gw + g.T @ h``, ``vocab_chunk`` rows at a time (a dynamic_update_slice in a loop, in
    place: the temporary is one (vocab_chunk, H) slice, not a second (V, H) array)."""
    vc = cfg.vocab_chunk
    full, rest = divmod(gw.shape[0], vc)

    def part(gw: Array, r0: Any, width: int) -> Array:
        gs = lax.dynamic_slice_in_dim(g, r0, width, axis=1)
        old = lax.dynamic_slice_in_dim(gw, r0, width, axis=0)
        return lax.dynamic_update_slice_in_dim(gw, old + (gs.T @ h).astype(gw.dtype), r0, axis=0)

    if full == 1 and not rest:
        return gw + (g.T @ h).astype(gw.dtype)
    gw = lax.fori_loop(0, full, lambda i, gw: part(gw, i * vc, vc), gw)
    return part(gw, full * vc, rest) if rest else gw


def _lce_scan(hidden: Array, weight: Array, bias: Array | None, labels: Array, w: Array | None,
              cfg: _linear.Config) -> tuple[Array, Array | None, Array | None, Array | None]:
    """Per-token loss (``acc``, (N,)) and, when ``w`` (N,) is given, the gradients of
    ``sum_n w_n loss_n`` for hidden, weight and bias (None without bias), in one scan over blocks
    of ``token_chunk`` tokens (the last block padded with ignored zero rows)."""
    n, hs = hidden.shape
    tc = cfg.token_chunk
    blocks = -(-n // tc) if n else 0
    pad = blocks * tc - n
    acc = _lce_acc()
    grads = w is not None
    if blocks == 0:
        values = jnp.zeros((0,), acc)
        if not grads:
            return values, None, None, None
        return (values, jnp.zeros_like(hidden), jnp.zeros_like(weight),
                None if bias is None else jnp.zeros_like(bias))
    valid = labels != cfg.ignore_index
    if w is not None:
        w = jnp.where(valid, w.astype(hidden.dtype), jnp.zeros((), hidden.dtype))
    if pad:
        hidden = jnp.pad(hidden, ((0, pad), (0, 0)))
        labels = jnp.pad(labels, (0, pad), constant_values=cfg.ignore_index)
        if w is not None:
            w = jnp.pad(w, (0, pad))
    xs = (hidden.reshape(blocks, tc, hs), labels.reshape(blocks, tc),
          None if w is None else w.reshape(blocks, tc))

    def step(carry: Any, x: Any) -> tuple[Any, Any]:
        h, y, wc = x
        z = h @ weight.T
        if bias is not None:
            z = z + bias
        values, g = _lce_rows(z, y, wc, cfg)
        if g is None:
            return carry, (values, None)
        gw, gb = carry
        gw = _lce_add_gt_h(gw, g, h, cfg)
        if gb is not None:
            gb = gb + jnp.sum(g, axis=0, dtype=acc)
        return (gw, gb), (values, g @ weight)

    carry: Any = None
    if grads:
        carry = (jnp.zeros_like(weight), None if bias is None else jnp.zeros(bias.shape, acc))
    carry, (values, gh) = lax.scan(step, carry, xs)
    values = values.reshape(-1)[:n]
    if not grads:
        return values, None, None, None
    gw, gb = carry
    gh = gh.reshape(-1, hs)[:n]
    return values, gh, gw, None if gb is None else gb.astype(bias.dtype)  # type: ignore[union-attr]


def _lce_weights(labels: Array, reduction: str, cfg: _linear.Config) -> Array:
    """Each token's weight in the reduced loss: 1/n_valid ("mean"; 0 when all are ignored) or 1."""
    valid = (labels != cfg.ignore_index).astype(_lce_acc())
    if reduction != "mean":
        return valid
    return valid / jnp.maximum(jnp.sum(valid), 1.0)


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _lce(hidden: Array, weight: Array, bias: Array | None, labels: Array, reduction: str,
         cfg: _linear.Config) -> Array:
    values = _lce_scan(hidden, weight, bias, labels, None, cfg)[0]
    return _linear.reduce(jnp, values, labels, reduction, cfg)[0]


def _lce_fwd(hidden: Array, weight: Array, bias: Array | None, labels: Array, reduction: str,
             cfg: _linear.Config) -> tuple[Array, Any]:
    if reduction == "none":
        values = _lce_scan(hidden, weight, bias, labels, None, cfg)[0]
        return values, (hidden, weight, bias, labels)
    w = _lce_weights(labels, reduction, cfg)
    values, gh, gw, gb = _lce_scan(hidden, weight, bias, labels, w, cfg)
    return _linear.reduce(jnp, values, labels, reduction, cfg)[0], (gh, gw, gb, labels)


def _lce_bwd(reduction: str, cfg: _linear.Config, res: Any, g: Array) -> tuple[Any, ...]:
    if reduction == "none":
        hidden, weight, bias, labels = res
        _, gh, gw, gb = _lce_scan(hidden, weight, bias, labels, g, cfg)
        return gh, gw, gb, None
    gh, gw, gb, _labels = res
    scale = g.astype(gh.dtype)
    return gh * scale, gw * scale, None if gb is None else gb * scale, None


_lce.defvjp(_lce_fwd, _lce_bwd)


def linear_cross_entropy(hidden: Array, weight: Array, labels: Array, bias: Array | None,
                         reduction: str, cfg: _linear.Config) -> Array:
    """:func:`losskit.linear.linear_cross_entropy` on JAX arrays (checked by the caller; the
    label range is checked when the labels are concrete, i.e. not under ``jax.jit``)."""
    _linear.check_labels(jnp, labels, cfg)
    labels = labels.astype(jnp.int64 if jax.config.read("jax_enable_x64") else jnp.int32)
    return _lce(hidden, weight, bias, labels, reduction, cfg).astype(hidden.dtype)


# =============================================================================================
# CPU: the compiled C kernels of _cpu.c through one jax.pure_callback
#
# Under XLA CPU the in-graph kernels above cost 2-6x Optax (the exactness devices each cost a share
# of an exp-bound loop, and XLA runs several row reductions over the same rows slowly: the notes
# above _big). The C kernels that the NumPy backend runs (losskit/_backends/numpy.py) evaluate the
# same losses within the contract in one pass per row, the gradient written with the value, on
# losskit's own thread pool. So on a CPU device each covered loss is one host call: the callback
# returns the per-sample values (and, when asked, the gradient); the bridge's custom_vjp keeps the
# gradient of the forward pass and scales it by the cotangent, and a value-only call asks the C
# kernel for the value alone. The callback compiles to a custom call (no graph: jit compiles in
# milliseconds). Its outputs are not differentiable by JAX, so a custom_jvp gives the tangents of
# second derivatives (jax.hessian, jvp of grad) from the in-graph kernel, traced only then.
# Other platforms (and a build without the extension) keep the in-graph kernels.
# =============================================================================================


try:
    from . import numpy as _host_backend
except ImportError:  # pragma: no cover - NumPy always imports; the extension may be missing
    _host_backend = None  # type: ignore[assignment]

#: Route the covered losses to the C kernels on CPU (False: the in-graph kernels everywhere; the
#: tests of the in-graph kernels set it).
HOST_KERNELS = True

def _on_cpu(x: Array) -> bool:
    """Whether ``x`` lives (or, traced, will run) on a CPU device."""
    if isinstance(x, jax.core.Tracer):
        return bool(jax.default_backend() == "cpu")
    try:
        return all(d.platform == "cpu" for d in x.devices())
    except AttributeError:  # pragma: no cover - not a jax array
        return bool(jax.default_backend() == "cpu")


def _host_kernel(loss: str, which: str, inner: Kernel, route: Any, sparse: bool = False,
                 sequential: bool = False, constant_gradient: bool = False) -> Kernel:
    """A kernel that runs the C kernel ``which`` (numpy.py's name) on the host when ``y_pred`` is
    on a CPU device and ``route(k, grad)`` holds (``k`` the row length: the cells where the host
    call measured faster than the in-graph kernel), else ``inner`` (the in-graph kernel).
    ``sequential``: under vmap, call the host once per instance (for a loss whose label rule is
    decided over the whole array, as hinge's). ``constant_gradient``: the gradient does not depend
    on ``y_pred`` (kl_div's -t), so its tangent is 0."""

    def host(t: Any, x: Any, grad: bool, opts: dict[str, Any]) -> Any:
        t, x = _np.asarray(t), _np.asarray(x)
        wide = x.dtype == _np.float64
        table = _host_backend._KERNELS64 if wide else _host_backend._KERNELS
        found = table[which]
        if not sparse:
            t, x = _np.broadcast_arrays(t, x)
        with _np.errstate(all="ignore"):
            value, g = found(_np, t, x, grad=grad, **opts)
            if getattr(found, "recheck_nonfinite", False):  # as _core does for NumPy arrays
                from ..losses import _core, _registry

                value, g = _core._recheck_rows(_np, _registry._DEFINITIONS[loss], opts, t, x, grad,
                                               value, g, None)
        value = value.astype(x.dtype)
        return (value, g) if grad else value

    def kernel(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, **opts: Any
               ) -> tuple[Array, Any]:
        if not (HOST_KERNELS and route(y_pred.shape[-1], grad) and _on_cpu(y_pred)):
            return inner(xp, y_true, y_pred, grad=grad, **opts)
        t = _labels(y_true, opts.get("ignore_class"))[..., 0] if sparse else y_true
        given = opts
        if sparse:  # ignored labels are 0 now; the caller's mask zeroes their samples
            opts = {**opts, "ignore_class": None}
        values = jax.ShapeDtypeStruct(y_pred.shape[:-1], y_pred.dtype)
        method = "sequential" if sequential else "broadcast_all"

        @partial(jax.custom_jvp, nondiff_argnums=(2,))
        def call(t: Array, x: Array, grad: bool) -> Any:
            shapes = (values, jax.ShapeDtypeStruct(x.shape, x.dtype)) if grad else values
            return jax.pure_callback(lambda t, x: host(t, x, grad, opts), shapes, t, x,
                                     vmap_method=method)

        @call.defjvp
        def call_jvp(grad: bool, primals: Any, tangents: Any) -> Any:
            # second derivatives: the value's tangent from the gradient (one host call), the
            # gradient's from the in-graph kernel's gradient (or 0 where it does not depend on x)
            t, x = primals
            dx = tangents[1]
            value, g = call(t, x, True)
            dv = jnp.sum(_xmul(dx, g), axis=-1)
            if not grad:
                return value, dv
            if constant_gradient:
                dg = jnp.zeros_like(g)
            else:
                dg = jax.jvp(lambda x: inner(jnp, y_true, x, grad=True, **given)[1], (x,), (dx,))[1]
            return (value, g), (dv, dg)

        out = call(t, y_pred, grad)
        return (out[0], out[1]) if grad else (out, None)

    kernel.__name__ = kernel.__qualname__ = f"jax_host_{which}"
    return kernel


# Where the host call measured faster than the in-graph kernel (jax 0.10.2, XLA CPU, float32,
# interleaved rounds, load average 8-10 on 2 cores; ms, host / in-graph / Optax, default threads
# and then XLA and losskit's pool on one thread):
#   kl_div 65536x10         value 31 / 64 / 7.5, 65 / 90 / 13;  value+grad 38 / 54 / 8.8, 103 / 120 / 22
#   CE logits 65536x10      value+grad 29 / 44 / 17, 69 / 81 / 34 (value alone: 48 / 25 / 8.8)
# Everywhere else the C kernel (double arithmetic per element) was slower than the in-graph
# kernel: at 8192x1000 by 1.3-2.3x (CE logits value 134 / 77 / 32), kl_divergence and hinge at
# 65536x10 even, sparse CE at 65536x10 value 51 / 26 / 6.7. So only those cells are routed.
_SHORT = 32  # rows up to this length: _cpu.c's SHORT_ROW blocks

if _host_backend is not None and _host_backend.available():
    _KL_DIV = _host_kernel("kl_div", "kl_div", _KL_DIV, lambda k, grad: k <= _SHORT,
                           constant_gradient=True)
    _LOGITS["categorical_crossentropy"] = (
        _host_kernel("categorical_crossentropy", "cce_logits", _LOGITS["categorical_crossentropy"][0],
                     lambda k, grad: grad and k <= _SHORT),
        _LOGITS["categorical_crossentropy"][1])

# cosine_similarity, circle and triplet_margin on CPU: _cpu.embed's C kernels (numpy.py's ids 0, 2, 3,
# 5, 7, 9; their error arguments above triplet_rows, cossim_row and circle_rows in _cpu.c), every row
# length. The in-graph kernels carry double-length arithmetic through XLA (8192x1000 float32, load 6-8
# on 2 cores: triplet value 457 ms against Optax's 32 ms, compile 2.3-6.3 s); the C kernels run on
# XLA's own buffers as an FFI custom call (``_embed_kernel`` below), or, where the extension was built
# without XLA's header, through a host callback. The in-graph kernels remain for other platforms and
# for second derivatives.

# ------------------------------------------------------------------ embedding losses through XLA FFI
# A host callback (jax.pure_callback) copies every operand and result between XLA and NumPy: on the
# 2-core machine about 15 ms per 32 MB operand, more than the C kernel itself (profiled under jax.jit,
# 8192x1000 float32, load 8: a callback that only sums the rows of one operand 55 ms against XLA's
# 8 ms; returning one full-size array 18 ms more). _cpu.c exports the embedding kernels as the FFI
# target "losskit_embed" (when built with XLA's header, see setup.py), which reads and writes XLA's
# buffers in place: one pass over the inputs for the value and every gradient asked for. Rows the C
# kernel hands back (value NaN: a hinge within rounding of 0, nearly orthogonal vectors, NaN or
# infinite components, ...) are recomputed by numpy.py's kernel of the same loss (which recomputes
# exactly those rows with the double-length generic kernel) in a host callback under lax.cond, so
# they cost nothing when absent and the results are those of the NumPy path, row for row.
# Second derivatives: the value's tangent from the C kernel's gradients, the gradients' tangents from
# the in-graph kernel's (as _host_kernel). Under vmap: one call per instance ("sequential").

import dataclasses  # noqa: E402
from collections.abc import Callable  # noqa: E402

_FFI_TARGET = "losskit_embed"
_targets_ready: dict[str, bool] = {}


def _target_available(target: str) -> bool:
    """Whether the extension exports the FFI target ``target`` and XLA took it (registered once)."""
    if target not in _targets_ready:
        ok = False
        cpu = getattr(_host_backend, "_cpu", None)
        targets = cpu.xla_targets() if cpu is not None and hasattr(cpu, "xla_targets") else {}
        if target in targets:
            try:
                jax.ffi.register_ffi_target(target, targets[target], platform="cpu")
                ok = True
            except Exception:  # pragma: no cover - an XLA that refuses the handler: the callback
                ok = False
        _targets_ready[target] = ok
    return _targets_ready[target]


#: Run the embedding kernels as the FFI target when it is available (False: the host callback; the
#: tests of the callback path set it).
USE_FFI = True


@dataclasses.dataclass(frozen=True)
class _Embed:
    """How one loss maps onto ``_cpu.embed``: its ids per dtype, the extra input arrays the kernel
    takes (``inputs``), the names ``wrt`` may ask for (``members``: gradient slots 1, 2 in that
    order; the anchor's is slot 0), the C kernel's operands from ``(y_true, y_pred, inputs)``, its
    parameters from the options, and which option sets numpy.py's kernel covers."""

    loss: str
    ids: Mapping[str, int]
    inputs: tuple[str, ...]
    members: tuple[str, ...]
    operands: Callable[..., tuple[Array, ...]]
    params: Callable[..., tuple[float, ...]]


def _triplet_operands(t: Array, x: Array, inputs: Mapping[str, Array]) -> tuple[Array, ...]:
    return x, t, inputs["negative"]


def _circle_operands(t: Array, x: Array, inputs: Mapping[str, Array]) -> tuple[Array, ...]:
    where = inputs.get("where")  # the C kernel's label 2: an excluded entry
    return x, (t if where is None else jnp.where(where, t, jnp.asarray(2.0, t.dtype)))


_EMBEDS = {
    "triplet_margin": _Embed("triplet_margin", {"float32": 0, "float64": 7}, ("negative",),
                             ("y_true", "negative"), _triplet_operands,
                             lambda k, **opts: _host_backend._triplet_params(k, **opts)),
    "cosine_similarity": _Embed("cosine_similarity", {"float32": 2, "float64": 3}, (), (),
                                lambda t, x, inputs: (t, x), lambda k, **opts: (0.0,)),
    "circle": _Embed("circle", {"float32": 5, "float64": 9}, ("where",), (), _circle_operands,
                     lambda k, gamma, margin, **_: (float(gamma), float(margin))),
}


def _generic(loss: str, y_true: Array, y_pred: Array, grad: bool, wrt: tuple[str, ...],
             inputs: Mapping[str, Array | None], opts: Mapping[str, Any]) -> Any:
    """The loss's generic kernel as losskit's core runs it on JAX arrays: float arrays in the compute
    dtype (float64 with ``jax_enable_x64``), the results back in ``y_pred``'s dtype."""
    from .. import _array
    from ..losses import _registry

    defn = _registry._DEFINITIONS[loss]
    dtype, work = y_pred.dtype, _array.compute_dtype(y_pred)

    def widen(a: Array | None) -> Array | None:
        return a if a is None or not jnp.issubdtype(a.dtype, jnp.floating) else a.astype(work)

    more: dict[str, Any] = {"wrt": tuple(wrt)} if wrt else {}
    if defn.precision_aware:
        more["widened"] = jnp.dtype(work) != jnp.dtype(dtype)
    out = defn.kernel(jnp, widen(y_true), widen(y_pred), grad=grad, **opts, **more,
                      **{k: widen(v) for k, v in inputs.items()})
    value = out[0].astype(dtype)
    if not grad:
        return value, None
    g = out[1].astype(dtype)
    return (value, g, tuple(o.astype(dtype) for o in out[2])) if wrt else (value, g)


#: Rows handed back by the C kernel that are recomputed on their own (gathered, sent to the host,
#: scattered back); more than this and the whole batch goes to the host once.
_FEW_ROWS = 64


def _fix_rows(callback: Any, outs: list[Any], res: tuple[Array, ...], t: Array, x: Array,
              extra: tuple[Array, ...]) -> tuple[Array, ...]:
    """``res`` (value, gradients) from the FFI call with the rows it handed back (value NaN)
    replaced by ``callback``'s (numpy.py's kernel on the host): none, the few (at most
    ``_FEW_ROWS``, gathered into a small batch, so the host sees kilobytes, not the batch), or all."""
    shape, k = tuple(x.shape[:-1]), int(x.shape[-1])
    rows = int(_np.prod(shape, dtype=_np.int64))
    bad = jnp.isnan(res[0]).reshape(-1)
    count = jnp.sum(bad, dtype=jnp.int32)
    few = min(rows, _FEW_ROWS)

    def whole() -> tuple[Array, ...]:
        return tuple(jax.pure_callback(callback, outs, t, x, *extra, vmap_method="sequential"))

    def some() -> tuple[Array, ...]:
        # the flagged rows first, then others (recomputed too: the same C kernel, the same values);
        # top_k rather than nonzero(size=...), whose cumulative sum took 1.7 s to compile
        at = lax.top_k(bad.astype(jnp.float32), few)[1]

        def pick(a: Array) -> Array:
            return a.reshape(rows, k)[at] if a.ndim == x.ndim else a.reshape(rows)[at]

        small = [jax.ShapeDtypeStruct((few, *o.shape[len(shape):]), o.dtype) for o in outs]
        fixed = jax.pure_callback(callback, small, pick(t), pick(x), *(pick(e) for e in extra),
                                  vmap_method="sequential")
        flat = [r.reshape(rows, *r.shape[len(shape):]) for r in res]
        return tuple(r.at[at].set(f).reshape(o.shape) for r, f, o in zip(flat, fixed, outs, strict=True))

    if rows == 0:
        return res
    return tuple(lax.switch(jnp.where(count == 0, 0, jnp.where(count <= few, 1, 2)),
                            [lambda: res, some, whole]))


def _embed_kernel(spec: _Embed) -> Kernel:
    """The JAX kernel of ``spec.loss``: the C kernel on a CPU device (FFI target, else a host
    callback), the generic kernel elsewhere, for option sets numpy.py's kernel does not cover, and
    for second derivatives."""

    def kernel(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, wrt: tuple[str, ...] = (),
               **opts: Any) -> Any:
        inputs = {name: opts.pop(name, None) for name in spec.inputs}
        wrt = tuple(wrt)
        for name in wrt:
            if name not in spec.members:
                raise ValueError(f"{spec.loss}: no gradient with respect to {name!r}")
        dtype_name = str(jnp.dtype(y_pred.dtype))
        host = (None if _host_backend is None or not _host_backend.available()
                else _host_backend.fast_kernel(spec.loss, opts, dtype_name))
        if not (HOST_KERNELS and host is not None and dtype_name in spec.ids and _on_cpu(y_pred)):
            return _generic(spec.loss, y_true, y_pred, grad, wrt, inputs, opts)
        names = tuple(name for name in spec.inputs if inputs[name] is not None)
        k = int(y_pred.shape[-1])
        params = tuple(float(v) for v in spec.params(k, **opts))
        ffi = USE_FFI and _target_available(_FFI_TARGET)

        def shapes(x: Array, grad: bool, wrt: tuple[str, ...]) -> list[Any]:
            value = jax.ShapeDtypeStruct(x.shape[:-1], x.dtype)
            full = jax.ShapeDtypeStruct(x.shape, x.dtype)
            return [value] + ([full] * (1 + len(wrt)) if grad else [])

        def on_host(grad: bool, wrt: tuple[str, ...], t: Any, x: Any, *extra: Any) -> tuple[Any, ...]:
            t, x = _np.asarray(t), _np.asarray(x)
            more = {"wrt": wrt} if wrt else {}
            with _np.errstate(all="ignore"):
                out: Any = host(_np, t, x, grad=grad, **opts, **more,
                           **{n: _np.asarray(e) for n, e in zip(names, extra, strict=True)})
            value = _np.asarray(out[0]).astype(x.dtype)
            if not grad:
                return (value,)
            return (value, out[1], *(out[2] if wrt else ()))

        def run(grad: bool, wrt: tuple[str, ...], t: Array, x: Array, extra: tuple[Array, ...]
                ) -> tuple[Array, ...]:
            outs = shapes(x, grad, wrt)
            callback = partial(on_host, grad, wrt)
            if not ffi:
                return tuple(jax.pure_callback(callback, outs, t, x, *extra, vmap_method="sequential"))
            given = dict(zip(names, extra, strict=True))
            slots = ((0, *(1 + spec.members.index(name) for name in wrt)) if grad else ())
            res = jax.ffi.ffi_call(_FFI_TARGET, outs, vmap_method="sequential")(
                *spec.operands(t, x, given), id=_np.int64(spec.ids[str(jnp.dtype(x.dtype))]),
                prm=_np.asarray(params, dtype=_np.float64), slots=_np.asarray(slots, dtype=_np.int64),
                threads=_np.int64(_host_backend.get_num_threads()))
            return _fix_rows(callback, outs, tuple(res), t, x, extra)

        @partial(jax.custom_jvp, nondiff_argnums=(0, 1))
        def call(grad: bool, wrt: tuple[str, ...], t: Array, x: Array, extra: tuple[Array, ...]
                 ) -> tuple[Array, ...]:
            return run(grad, wrt, t, x, extra)

        @call.defjvp
        def call_jvp(grad: bool, wrt: tuple[str, ...], primals: Any, tangents: Any) -> Any:
            t, x, extra = primals
            dt, dx, dextra = tangents
            everything = spec.members
            out = call(True, everything, t, x, extra)
            diffs = {"y_true": dt, **dict(zip(names, dextra, strict=True))}
            dv = jnp.sum(_xmul(dx, out[1]), axis=-1)
            for name, g_other in zip(everything, out[2:], strict=True):
                if name in diffs:
                    dv = dv + jnp.sum(_xmul(diffs[name], g_other), axis=-1)
            primal_out = (out[0],) if not grad else (out[0], out[1], *(
                out[2 + everything.index(name)] for name in wrt))
            if not grad:
                return primal_out, (dv,)

            def exact(t: Array, x: Array, *member_arrays: Array) -> tuple[Array, ...]:
                given: dict[str, Array | None] = {name: None for name in spec.inputs}
                given.update(zip(names, extra, strict=True))
                given.update(zip([n for n in names if n in spec.members], member_arrays, strict=True))
                res = _generic(spec.loss, t, x, True, wrt, given, opts)
                return (res[1], *(res[2] if wrt else ()))

            member_names = [n for n in names if n in spec.members]
            member_arrays = [dict(zip(names, extra, strict=True))[n] for n in member_names]
            member_tangents = [dict(zip(names, dextra, strict=True))[n] for n in member_names]
            dt_used = dt if "y_true" in spec.members else jnp.zeros_like(t)
            dgrads = jax.jvp(exact, (t, x, *member_arrays), (dt_used, dx, *member_tangents))[1]
            return primal_out, (dv, *dgrads)

        t = y_true
        extra = tuple(inputs[name] for name in names)
        out = call(grad, wrt, t, y_pred, extra)
        if not grad:
            return out[0], None
        return (out[0], out[1], tuple(out[2:])) if wrt else (out[0], out[1])

    kernel.__name__ = kernel.__qualname__ = f"jax_embed_{spec.loss}"
    kernel.inputs = spec.inputs  # type: ignore[attr-defined]
    kernel.takes_wrt = True  # type: ignore[attr-defined]
    return kernel


if _host_backend is not None and _host_backend.available():
    _EMBED_KERNELS = {name: _embed_kernel(spec) for name, spec in _EMBEDS.items()}
else:  # pragma: no cover - without the extension: the generic kernels
    _EMBED_KERNELS = {}


# poisson, mean_gamma_deviance, poisson_nll and gaussian_nll on CPU: their checked C kernels (_cpu.c's
# KERNELS3, float32, and KERNELS3_D, float64: Poisson and Gaussian NLL), every row length, as the XLA
# FFI target "losskit_run3" on XLA's own buffers, or, where the extension was built without XLA's
# header, through a host callback. Rows the kernel cannot keep within the contract (value NaN) are
# recomputed on the host by numpy.py's kernel of the same loss (which recomputes exactly those rows
# with the generic kernel), under lax.cond as for the embedding losses (_fix_rows). In the graph their
# generic kernels carry double-length logarithms through XLA (8192x1000 float32: 2.1-2.6 s per call
# for poisson, and 2-3 s to compile; gaussian_nll 2.2 s per call, 2.9 s to compile); the host callback
# copies every operand (~15 ms per 32 MB on the 2-core machine). Second derivatives: the value's
# tangent from the C kernel's gradient, the gradient's tangent from the generic kernel's (traced only
# then). gaussian_nll's var is not differentiable (the loss's definition), so its tangent is unused.

_RUN3_TARGET = "losskit_run3"


def _run3_kernel(loss: str, which: str, extra: str | None = None) -> Kernel:
    """The JAX kernel of ``loss`` over numpy.py's checked kernel ``which`` (``extra``: the name of the
    loss's extra input array, gaussian_nll's ``var``): on a CPU device the C kernel as the FFI target
    ``losskit_run3`` (else a host callback), flagged rows recomputed on the host; elsewhere, for a
    dtype without a C kernel, and for second derivatives, the generic kernel."""
    tables = {"float32": _host_backend._KERNELS, "float64": _host_backend._KERNELS64}
    # (wide, the index in KERNELS3 or KERNELS3_D) per dtype with a checked C kernel
    ids = {}
    if which in tables["float32"]:
        kid32 = tables["float32"][which].kernel_id  # type: ignore[attr-defined]
        ids["float32"] = (0, int(kid32) - int(_host_backend._N))
    wide_ids = {"poisson_nll_log": _host_backend.POISSON_NLL_D,  # KERNELS3_D (numpy.py's run3_d)
                "poisson_nll_rate": _host_backend.POISSON_NLL_D, "gaussian_nll": _host_backend.GAUSSIAN_NLL_D}
    if which in wide_ids and which in tables["float64"]:
        ids["float64"] = (1, int(wide_ids[which]))

    def kernel(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, **opts: Any) -> tuple[Array, Any]:
        given = opts.pop(extra, None) if extra is not None else None
        inputs = {} if extra is None else {extra: given}
        dtype_name = str(jnp.dtype(y_pred.dtype))
        if not (HOST_KERNELS and dtype_name in ids and _on_cpu(y_pred)):
            return _generic(loss, y_true, y_pred, grad, (), inputs, opts)
        host = tables[dtype_name][which]
        wide, kid = ids[dtype_name]
        params = tuple(float(v) for v in host.params(int(y_pred.shape[-1]), **opts))  # type: ignore[attr-defined]
        ffi = USE_FFI and _target_available(_RUN3_TARGET)
        dtype = y_pred.dtype
        t = y_true.astype(dtype)
        ex = () if given is None else (jnp.broadcast_to(given, y_pred.shape).astype(dtype),)

        def on_host(grad: bool, t: Any, x: Any, *ex: Any) -> tuple[Any, ...]:
            t, x = _np.asarray(t), _np.asarray(x)
            more = {} if extra is None else {extra: _np.asarray(ex[0])}
            with _np.errstate(all="ignore"):
                value, g = host(_np, t, x, grad=grad, **opts, **more)
            value = _np.asarray(value).astype(x.dtype)
            return (value, _np.asarray(g).astype(x.dtype)) if grad else (value,)

        def run(grad: bool, t: Array, x: Array, ex: tuple[Array, ...]) -> tuple[Array, ...]:
            outs = [jax.ShapeDtypeStruct(x.shape[:-1], x.dtype)]
            if grad:
                outs.append(jax.ShapeDtypeStruct(x.shape, x.dtype))
            callback = partial(on_host, grad)
            if not ffi:
                return tuple(jax.pure_callback(callback, outs, t, x, *ex, vmap_method="broadcast_all"))
            res = jax.ffi.ffi_call(_RUN3_TARGET, outs, vmap_method="broadcast_all")(
                t, x, ex[0] if ex else x, id=_np.int64(kid), wide=_np.int64(wide),
                prm=_np.asarray(params if params else (0.0,), dtype=_np.float64),
                threads=_np.int64(_host_backend.get_num_threads()))
            return _fix_rows(callback, outs, tuple(res), t, x, ex)

        @partial(jax.custom_jvp, nondiff_argnums=(0,))
        def call(grad: bool, t: Array, x: Array, ex: tuple[Array, ...]) -> tuple[Array, ...]:
            return run(grad, t, x, ex)

        @call.defjvp
        def call_jvp(grad: bool, primals: Any, tangents: Any) -> Any:
            t, x, ex = primals
            dx = tangents[1]
            value, g = call(True, t, x, ex)
            dv = jnp.sum(_xmul(dx, g), axis=-1)
            if not grad:
                return (value,), (dv,)
            more = {} if extra is None else {extra: ex[0]}

            def gradient(x: Array) -> Array:
                return _generic(loss, t, x, True, (), more, opts)[1]

            return (value, g), (dv, jax.jvp(gradient, (x,), (dx,))[1])

        out = call(grad, t, y_pred, ex)
        return (out[0], out[1]) if grad else (out[0], None)

    kernel.__name__ = kernel.__qualname__ = f"jax_run3_{which}"
    kernel.inputs = () if extra is None else (extra,)  # type: ignore[attr-defined]
    return kernel


_HOSTED: dict[tuple[str, str], Kernel] = {}
_HOSTED_LOSSES = {("poisson", "float32"), ("mean_gamma_deviance", "float32"),
                  ("poisson_nll", "float32"), ("poisson_nll", "float64"),
                  ("gaussian_nll", "float32"), ("gaussian_nll", "float64")}
if _host_backend is not None and _host_backend.available():
    for _loss, _which, _extra, _dtypes in (
            ("poisson", "poisson", None, ("float32",)),
            ("mean_gamma_deviance", "gamma_deviance", None, ("float32",)),
            ("poisson_nll", "poisson_nll_log", None, ("float32", "float64")),
            ("poisson_nll", "poisson_nll_rate", None, ("float32", "float64")),
            ("gaussian_nll", "gaussian_nll", "var", ("float32", "float64"))):
        _hosted_kernel = _run3_kernel(_loss, _which, _extra)
        for _dtype in _dtypes:
            _HOSTED[_which, _dtype] = _hosted_kernel


# ------------------------------------------------------- row kernels through XLA FFI ("losskit_rows")
# logits_distillation on CPU: numpy.py's C kernel (``distill`` for float32, ``distill_d`` for float64;
# their error arguments above them in _cpu.c) run on XLA's own buffers as the FFI target
# "losskit_rows" (the end of _cpu.c), the value and, when asked, the gradient in one pass over the
# rows, split over losskit's thread count. In the graph the generic kernel carries double-length
# arithmetic through XLA on every element (8192x1000 float32, value: 124 ms against Optax's 26 ms);
# the C kernel reads each row twice. Rows the C kernel hands back (value NaN: distill_d's nearly equal
# distributions, non-finite logits) are recomputed by numpy.py's kernel in a host callback under
# lax.cond (``_fix_rows``: nothing when there are none). Other devices, a build without XLA's header
# and second derivatives take the generic kernel (as ``_generic`` runs it). Under vmap the batch axes
# are more rows ("broadcast_all").

_ROWS_TARGET = "losskit_rows"


def _rows_kernel(loss: str, dtypes: tuple[str, ...], inputs: tuple[str, ...] = ()) -> Kernel:
    """The JAX kernel of ``loss`` over numpy.py's C kernel for it (``select``) through the FFI target
    "losskit_rows" on a CPU device, for ``dtypes``; the generic kernel elsewhere. ``inputs``: the
    loss's extra arrays that its mask alone reads (the caller's mask zeroes those samples)."""

    def generic(y_true: Array, y_pred: Array, grad: bool, opts: Mapping[str, Any]) -> tuple[Array, Any]:
        out = _generic(loss, y_true, y_pred, grad, (), {}, opts)
        return out[0], (out[1] if grad else None)

    def kernel(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, **opts: Any) -> tuple[Array, Any]:
        for name in inputs:
            opts.pop(name, None)
        dtype_name = str(jnp.dtype(y_pred.dtype))
        which = _host_backend.select(loss, opts)
        table = _host_backend._KERNELS64 if dtype_name == "float64" else _host_backend._KERNELS
        found = table.get(which) if which is not None else None
        if not (HOST_KERNELS and USE_FFI and found is not None and dtype_name in dtypes
                and y_pred.ndim >= 1 and _target_available(_ROWS_TARGET) and _on_cpu(y_pred)):
            return generic(y_true, y_pred, grad, opts)
        k = int(y_pred.shape[-1])
        make = getattr(found, "params", None)
        params = _np.asarray(make(k, **opts) if make else (0.0,), dtype=_np.float64)
        kid = _np.int64(found.kernel_id)  # type: ignore[attr-defined]

        def on_host(grad: bool, t: Any, x: Any) -> tuple[Any, ...]:
            t, x = _np.asarray(t), _np.asarray(x)
            with _np.errstate(all="ignore"):
                value, g = found(_np, t, x, grad=grad, **opts)
            value = _np.asarray(value).astype(x.dtype)
            return (value, g) if grad else (value,)

        def run(grad: bool, t: Array, x: Array) -> tuple[Array, ...]:
            outs = [jax.ShapeDtypeStruct(x.shape[:-1], x.dtype)]
            if grad:
                outs.append(jax.ShapeDtypeStruct(x.shape, x.dtype))
            res = jax.ffi.ffi_call(_ROWS_TARGET, outs, vmap_method="broadcast_all")(
                t, x, id=kid, prm=params, threads=_np.int64(_host_backend.get_num_threads()))
            return _fix_rows(partial(on_host, grad), outs, tuple(res), t, x, ())

        @partial(jax.custom_jvp, nondiff_argnums=(0,))
        def call(grad: bool, t: Array, x: Array) -> tuple[Array, ...]:
            return run(grad, t, x)

        @call.defjvp
        def call_jvp(grad: bool, primals: Any, tangents: Any) -> Any:
            # second derivatives: the value's tangent from the C kernel's gradient (y_true's from the
            # generic kernel's gradient with respect to it), the gradient's from the generic kernel
            t, x = primals
            dt, dx = tangents
            value, g = call(True, t, x)

            def grads(t: Array, x: Array) -> Array:
                return generic(t, x, True, opts)[1]

            def value_of(t: Array) -> Array:
                return generic(t, x, False, opts)[0]

            dv = jnp.sum(_xmul(dx, g), axis=-1) + jax.jvp(value_of, (t,), (dt,))[1]
            if not grad:
                return (value,), (dv,)
            return (value, g), (dv, jax.jvp(grads, (t, x), (dt, dx))[1])

        t = jnp.broadcast_to(y_true, y_pred.shape).astype(y_pred.dtype)
        out = call(grad, t, y_pred)
        return (out[0], out[1]) if grad else (out[0], None)

    kernel.__name__ = kernel.__qualname__ = f"jax_rows_{loss}"
    kernel.inputs = inputs  # type: ignore[attr-defined]
    return kernel


_ROWS_KERNELS: dict[tuple[str, str], Kernel] = {}
if _host_backend is not None and _host_backend.available():
    _distill_rows = _rows_kernel("logits_distillation", ("float32", "float64"), ("labels",))
    _ROWS_KERNELS["logits_distillation", "float32"] = _distill_rows
    _ROWS_KERNELS["logits_distillation", "float64"] = _distill_rows
