"""Sequence losses: connectionist temporal classification (CTC).

A CTC sample is a block of ``y_pred`` (``(T, C)``: T time steps of C class scores) and a row of
``y_true`` (``S`` labels, padded), so the declaration sets ``event_ndim=2``: the core flattens the
block for the kernel (``(N, T*C)``) and hands it ``event_shape=(T, C)`` (see
:func:`losskit.losses._core.prepare_events`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from .. import _array
from .._double import (
    _LN2,
    dd_add,
    dd_constant,
    dd_mul,
    dd_sum,
    exp_double,
    is_jax,
    log_double,
    two_product,
    two_sum,
)
from ._core import Input, LossDef, Option, check_bool
from ._registry import Alias

Array = Any
Pair = tuple[Any, Any]


def check_label_index(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | _array.np.integer):
        raise TypeError(f"{name} must be a non-negative integer class index; found {value!r}")
    if int(value) < 0:
        raise ValueError(f"{name} must be a non-negative class index; found {value!r}")
    return int(value)


# ------------------------------------------------------------------------------------- the kernel


def _rescale(xp: Any, a: Pair) -> tuple[Pair, Array]:
    """Divide each row of a non-negative pair by the power of two of its largest element (exact),
    returning the pair and the exponent taken out (0 for an all-zero row)."""
    top = xp.max(a[0], axis=-1, keepdims=True)
    _, e = xp.frexp(top)
    e = xp.where(top > 0, e, xp.zeros_like(e))
    return (xp.ldexp(a[0], -e), xp.ldexp(a[1], -e)), e


def _exp_pair(xp: Any, x: Array, top: Array) -> Pair:
    """``exp(x - top)`` as a pair: the difference in double length (TwoSum), its exponential by
    :func:`exp_double` and the first-order correction ``exp(d_hi) d_lo`` (``d_lo**2`` is below
    ``2**-100`` relative for ``|d| < 2**20``)."""
    d_hi, d_lo = two_sum(xp, x, -top)
    d_lo = xp.where(xp.isfinite(d_lo), d_lo, xp.zeros_like(d_lo))
    hi, lo = exp_double(xp, d_hi)
    return hi, lo + hi * d_lo


def _div(xp: Any, a: Pair, b: Pair) -> Pair:
    """``a / b`` for pairs (``b > 0``), to about ``2 u**2``: quotient, exact remainder, correction."""
    q = a[0] / b[0]
    p, pe = two_product(xp, q, b[0])
    rem = (((a[0] - p) - pe) + a[1]) - q * b[1]
    return q, rem / b[0]


def _ctc(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, event_shape: tuple[int, int],
         blank: int, from_logits: bool, zero_infinity: bool, length_normalize: bool,
         input_lengths: Array | None, label_lengths: Array | None, widened: bool = False
         ) -> tuple[Array, Any]:
    # Tiers (_ctc_tiered): NumPy inputs promoted from float32 run the plain float64 recursion
    # (_ctc_plain, or its C twin in _cpu.c), which checks its own error bound per row; the rows it
    # cannot vouch for (and float64 inputs) run the compiled double-length recursion (_ctc_dd_c),
    # which bounds its error per row too, and the rows left after it _ctc_double. Torch CPU tensors and JAX
    # arrays on the CPU (by a callback, also under jax.jit) take that NumPy route; JAX on other
    # devices and other torch devices run _ctc_double traced (one scan forward, one backward).
    kw: dict[str, Any] = dict(event_shape=event_shape, blank=blank, from_logits=from_logits,
                              zero_infinity=zero_infinity, length_normalize=length_normalize,
                              input_lengths=input_lengths, label_lengths=label_lengths)
    if _recording(y_pred):
        raise ValueError(
            "ctc: second derivatives (create_graph=True, or differentiating the gradient) are not "
            "supported: the double-length recursion has no derivative of its own; first-order "
            "gradients are exact")
    if _on_torch_cpu(y_pred):  # the recursions are many small ops per step: NumPy's per-op cost is lower
        return _via_numpy(y_true, y_pred, grad, widened=widened, **kw)
    if is_jax(xp) and _jax_on_cpu():  # the NumPy/C kernels through a callback: nothing to compile
        return _via_callback(y_true, y_pred, grad, **kw)
    if xp is np and y_pred.shape[0] and y_pred.ndim == 2 and (widened or _cpu_ctc("ctc_dd") is not None):
        return _ctc_tiered(y_true, y_pred, grad, widened=widened, **kw)
    return _ctc_double(xp, y_true, y_pred, grad=grad, **kw)


def _ctc_tiered(y_true: Array, y_pred: Array, grad: bool, *, zero_infinity: bool, widened: bool,
                **kw: Any) -> tuple[Array, Any]:
    """The tiers, each on the rows the one before flagged: for float32 inputs (``widened``) the plain
    float64 recursion (:func:`_ctc_plain`, or its C twin :func:`_ctc_plain_c`); the compiled
    double-length recursion (:func:`_ctc_dd_c`, ``_cpu.c``'s ``ctc_dd``) when the kernels are built;
    :func:`_ctc_double` on the rest. Each tier but the last checks its own error bound per row."""
    opts = dict(event_shape=kw["event_shape"], blank=kw["blank"], from_logits=kw["from_logits"],
                length_normalize=kw["length_normalize"])
    tiers: list[Any] = []
    if widened:
        tiers.append(_ctc_plain_c if _cpu_ctc() is not None else _ctc_plain)
    if _cpu_ctc("ctc_dd") is not None:
        tiers.append(_ctc_dd_c)
    value: Any = None
    g: Any = None
    idx = None  # the rows still to compute (None: all)
    for tier in tiers:
        sub = _rows(y_true, y_pred, kw, idx)
        v_t, g_t, redo = tier(sub[0], sub[1], grad, **opts, input_lengths=sub[2], label_lengths=sub[3])
        if value is None:
            value, g = v_t, g_t
        else:
            value[idx] = v_t
            if g is not None:
                g[idx] = g_t
        if not np.any(redo):
            return value, g
        idx = np.nonzero(redo)[0] if idx is None else idx[redo]
    sub = _rows(y_true, y_pred, kw, idx)
    v_bad, g_bad = _ctc_double(np, sub[0], sub[1], grad=grad, zero_infinity=zero_infinity,
                               **{**kw, "input_lengths": sub[2], "label_lengths": sub[3]})
    if value is None:
        return v_bad, g_bad
    value[idx] = v_bad
    if g is not None:
        g[idx] = g_bad
    return value, g


def _rows(y_true: Array, y_pred: Array, kw: dict[str, Any], idx: Any) -> tuple[Any, Any, Any, Any]:
    """``(y_true, y_pred, input_lengths, label_lengths)`` at the rows ``idx`` (None: all of them)."""
    lengths = [kw[k] for k in ("input_lengths", "label_lengths")]
    if idx is None:
        return (y_true, y_pred, *lengths)
    sub = [None if a is None else np.asarray(a)[idx] for a in lengths]
    return (np.asarray(y_true)[idx], np.asarray(y_pred)[idx], *sub)


def _ctc_double(xp: Any, y_true: Array, y_pred: Array, *, grad: bool, event_shape: tuple[int, int],
                blank: int, from_logits: bool, zero_infinity: bool, length_normalize: bool,
                input_lengths: Array | None, label_lengths: Array | None) -> tuple[Array, Any]:
    # value: -log P, P = sum over the alignments pi (length T_n, collapsing to the label) of
    #        prod_t q_t(pi_t), q = softmax(y_pred) (from_logits) or exp(y_pred) (log-probabilities).
    # gradient: d/dx_t(c) = softmax_t(c) - gamma_t(c) (logits) or -gamma_t(c) (log-probabilities),
    #        gamma_t(c) = sum_{s: l'_s = c} alpha_t(s) beta_t(s) / P, the posterior occupancy of c at t;
    #        0 for t >= T_n.
    #
    # Error analysis. Write q_t(c) = r_t(c) exp(-A_t) with r_t(c) = exp(x_t(c) - max_c x_t) in (0, 1]
    # and A_t = log sum_c r_t(c) (logits) or -max_c x_t (log-probabilities). Then
    # loss = sum_t A_t - log alpha', alpha' the forward sum run on r: P = alpha' exp(-sum A_t).
    # Every quantity of the alpha/beta recursions is a sum or a product of non-negative numbers,
    # kept as double-length pairs (losskit._double), and each row is rescaled by an exact power of
    # two per step (no underflow, no rounding). A pair sum or product of non-negative pairs has a
    # relative error below ~4u^2 (u = 2^-53), so alpha' and every alpha_t(s) beta_t(s) carry a
    # relative error below ~(4 + 2) T u^2 (the recursion adds three terms, then multiplies once),
    # r_t(c) below ~|x| 2^-104 (exp_double) and log alpha' an absolute error below ~6 T u^2.
    # The final subtraction sum_t A_t - log alpha' is done in double length and rounded once: the
    # loss's relative error is ~6 T u^2 (1 + sum_t A_t / loss) + u/2, within 8 ulp unless the loss
    # is below ~2^-45 sum_t A_t (a nearly certain alignment whose loss is the difference of two
    # nearly equal logs: e.g. loss 1e-25 at T = 100 in float64). gamma is normalised per step by
    # sum_s alpha_t(s) beta_t(s) (= P at every t), so its relative error is ~12 T u^2; the logits'
    # gradient softmax - gamma is subtracted in double length and rounded once (exact up to
    # ~12 T u^2 / |softmax - gamma|). A class at several label positions sums them in double length.
    # float32 inputs are computed in float64 (two double-length words of 53 bits).
    T, C = event_shape
    shape = tuple(y_pred.shape[:-1])
    N = math.prod(shape)
    S = int(y_true.shape[-1])
    if N == 0:  # an empty batch (its event axes may be empty too)
        return xp.zeros(shape, dtype=y_pred.dtype), (xp.zeros_like(y_pred) if grad else None)
    x = xp.reshape(y_pred, (N, T, C))
    dt, dev = x.dtype, _array.device(x)
    if from_logits:  # +inf logits: the limit gives the step's mass to them equally (the rest: -inf)
        pos = x == math.inf
        limit = xp.any(pos, axis=-1, keepdims=True)
        x = xp.where(limit, xp.where(pos, xp.zeros_like(x), xp.zeros_like(x) - math.inf), x)
    zero_n = xp.zeros((N,), dtype=dt, device=dev)
    labels = xp.astype(xp.reshape(y_true, (N, S)), xp.int64)
    k = xp.arange(S, device=dev)
    if label_lengths is None:
        ll = xp.astype(xp.sum(xp.astype(labels != blank, dt), axis=-1), dt)
    else:
        ll = xp.reshape(label_lengths, (N,))
    tl = zero_n + T if input_lengths is None else xp.reshape(input_lengths, (N,))
    labels = xp.where(xp.astype(k, dt)[None, :] < ll[:, None], labels, xp.zeros_like(labels) + blank)

    # the extended label l' = (blank, l_1, blank, ..., l_L, blank), S' = 2S + 1 states
    blanks = xp.zeros_like(labels) + blank
    ext = xp.concat([xp.reshape(xp.stack([blanks, labels], axis=-1), (N, 2 * S)), blanks[:, :1]], axis=-1)
    ext_prev2 = xp.concat([blanks[:, :1], blanks[:, :1], ext[:, :-2]], axis=-1)  # l'_{s-2} (blank before 0)
    skip = xp.astype((ext != blank) & (ext != ext_prev2), dt)  # s-2 -> s allowed
    classes = xp.arange(C, device=dev)
    onehot = xp.astype(ext[:, :, None] == classes[None, None, :], dt)  # (N, S', C)

    # r_t(c) = exp(x - top) as pairs over the classes of the row's extended label (top: their
    # maximum, so a class far above them elsewhere cannot underflow r), and with logits also
    # e_t(c) = exp(x - m) (m the step's maximum): one double-length exponential for both (under
    # jax.jit each call of exp_double and log_double adds its whole graph, so they are called once)
    used = xp.any(onehot > 0, axis=1)[:, None, :]  # (N, 1, C)
    top = xp.max(xp.where(used, x, xp.zeros_like(x) - math.inf), axis=-1, keepdims=True)
    top = xp.where((top > -math.inf) & (top < math.inf), top, xp.zeros_like(top))
    if from_logits:
        m = xp.max(x, axis=-1, keepdims=True)
        m = xp.where((m > -math.inf) & (m < math.inf), m, xp.zeros_like(m))
        both_hi, both_lo = _exp_pair(xp, xp.stack([x, x]), xp.stack([top, m]))
        r_hi, r_lo, e_hi, e_lo = both_hi[0], both_lo[0], both_hi[1], both_lo[1]
    else:
        r_hi, r_lo = _exp_pair(xp, x, top)
    r_hi = xp.where(used, r_hi, xp.zeros_like(r_hi))
    r_lo = xp.where(used, r_lo, xp.zeros_like(r_lo))
    steps = xp.astype(xp.arange(T, device=dev), dt)
    active = steps[None, :] < tl[:, None]  # (N, T)

    # r at the states: Y_t(s) = r_t(l'_s) (an exact gather by a one-hot product)
    onehot_t = xp.permute_dims(onehot, (0, 2, 1))  # (N, C, S')
    y_hi, y_lo = xp.matmul(r_hi, onehot_t), xp.matmul(r_lo, onehot_t)  # (N, T, S')

    # forward: alpha over the states with two leading virtual ones (index 1: "before the start")
    width = 2 * S + 1
    pad2 = xp.zeros((N, 2), dtype=dt, device=dev)
    a_h = xp.concat([pad2[:, :1], pad2[:, :1] + 1.0, xp.zeros((N, width), dtype=dt, device=dev)], axis=-1)
    a_l = xp.zeros_like(a_h)
    y_hi_t, y_lo_t = xp.permute_dims(y_hi, (1, 0, 2)), xp.permute_dims(y_lo, (1, 0, 2))  # (T, N, S')

    def forward(carry: tuple[Array, Array, Array], step: tuple[Array, ...]) -> tuple[Any, Any]:
        a_h, a_l, expo = carry
        yh, yl, on = step
        s0 = (a_h[:, 2:], a_l[:, 2:])
        s1 = (a_h[:, 1:-1], a_l[:, 1:-1])
        s2 = (a_h[:, :-2] * skip, a_l[:, :-2] * skip)
        new = dd_mul(xp, dd_add(xp, dd_add(xp, s0, s1), s2), (yh, yl))
        new, e = _rescale(xp, new)
        a_h = xp.where(on[:, None], xp.concat([pad2, new[0]], axis=-1), a_h)
        a_l = xp.where(on[:, None], xp.concat([pad2, new[1]], axis=-1), a_l)
        expo = expo + xp.where(on, xp.astype(e[:, 0], dt), zero_n)
        return (a_h, a_l, expo), (a_h[:, 2:], a_l[:, 2:])

    (a_h, a_l, expo), alphas = _scan(xp, forward, (a_h, a_l, zero_n),
                                     (y_hi_t, y_lo_t, xp.permute_dims(active, (1, 0))))
    # the final states 2L (blank) and 2L - 1 (last label; the virtual start when L = 0)
    pos = xp.astype(xp.arange(width + 2, device=dev), dt)[None, :] - 2.0
    end1 = xp.astype(pos == 2.0 * ll[:, None], dt)
    end2 = xp.astype(pos == 2.0 * ll[:, None] - 1.0, dt)
    fin = dd_add(xp, (xp.sum(a_h * end1, axis=-1), xp.sum(a_l * end1, axis=-1)),
                 (xp.sum(a_h * end2, axis=-1), xp.sum(a_l * end2, axis=-1)))
    possible = fin[0] > 0
    f_hi = xp.where(possible, fin[0], zero_n + 1.0)

    # the logarithms, in one call: log Z_t (logits) and log alpha'
    if from_logits:  # A_t = log sum_c exp(x_t(c) - top_t) = log Z_t + (m_t - top_t)
        z = dd_sum(xp, e_hi)
        z = (z[0], z[1] + xp.sum(e_lo, axis=-1))
        logs_hi, logs_lo = log_double(xp, xp.concat([xp.reshape(z[0], (N * T,)), f_hi]))
        lz_hi, lz_lo = xp.reshape(logs_hi[:N * T], (N, T)), xp.reshape(logs_lo[:N * T], (N, T))
        lf_hi, lf_lo = logs_hi[N * T:], logs_lo[N * T:]
        gap = two_sum(xp, m[..., 0], -top[..., 0])
        a_hi, a_lo = dd_add(xp, (lz_hi, lz_lo + z[1] / z[0]), gap)
    else:
        lf_hi, lf_lo = log_double(xp, f_hi)
        a_hi, a_lo = -top[..., 0], xp.zeros_like(top[..., 0])
    a_hi = xp.where(active, a_hi, xp.zeros_like(a_hi))
    a_lo = xp.where(active, a_lo, xp.zeros_like(a_lo))
    a_sum = dd_sum(xp, a_hi)
    a_sum = (a_sum[0], a_sum[1] + xp.sum(a_lo, axis=-1))
    ln2_hi, ln2_lo = dd_constant(_LN2, x)
    k_hi, k_lo = two_product(xp, expo, zero_n + ln2_hi)
    log_alpha = dd_add(xp, (lf_hi, lf_lo + fin[1] / f_hi), (k_hi, k_lo + expo * ln2_lo))
    loss = dd_add(xp, a_sum, (-log_alpha[0], -log_alpha[1]))
    impossible = ~possible | (a_sum[0] == math.inf)
    length = xp.where(ll > 0, ll, zero_n + 1.0)
    if length_normalize:
        loss = _div(xp, loss, (length, zero_n))
    value = xp.where(impossible, zero_n + (0.0 if zero_infinity else math.inf), loss[0] + loss[1])
    nan_in = xp.isnan(xp.sum(xp.reshape(y_pred, (N, T * C)), axis=-1))
    value = xp.where(nan_in, zero_n + math.nan, value)
    value = xp.reshape(value, shape)
    if not grad:
        return value, None

    # backward: beta_t(s), the probability (on r) of the rest of the alignment after t from s; each
    # step also turns its occupancy alpha_t beta_t into the gradient at t (one traced step under JAX)
    fresh_states = (end1 + end2)[:, 2:]
    skip_next = xp.concat([skip[:, 2:], pad2], axis=-1)  # skip allowed into s + 2
    length_c = length[:, None] + xp.zeros((N, C), dtype=dt, device=dev)
    zero_c = xp.zeros((N, C), dtype=dt, device=dev)
    if from_logits:
        soft_steps: tuple[Array, ...] = (xp.permute_dims(e_hi, (1, 0, 2)), xp.permute_dims(e_lo, (1, 0, 2)),
                                         xp.permute_dims(z[0], (1, 0)), xp.permute_dims(z[1], (1, 0)))
    else:
        soft_steps = ()

    def backward(carry: tuple[Array, Array], step: tuple[Array, ...]) -> tuple[Any, Any]:
        b_h, b_l = carry
        al_h, al_l, yh, yl, t, *soft = step
        fresh = (tl == t + 1.0)[:, None]
        b_h = xp.where(fresh, fresh_states, b_h)
        b_l = xp.where(fresh, xp.zeros_like(b_l), b_l)
        o_h, o_l = dd_mul(xp, (al_h, al_l), (b_h, b_l))  # (N, S')
        # gamma_t(c): the occupancy of the states of class c over all of them, each sum in double
        # length (a class at several label positions too)
        tot = dd_sum(xp, o_h)
        tot = (tot[0], tot[1] + xp.sum(o_l, axis=-1))
        occ = dd_sum(xp, o_h[:, None, :] * onehot_t)  # (N, C)
        occ = (occ[0], occ[1] + xp.sum(o_l[:, None, :] * onehot_t, axis=-1))
        has = tot[0] > 0
        tot1 = (xp.where(has, tot[0], xp.ones_like(tot[0])), xp.where(has, tot[1], xp.zeros_like(tot[1])))
        gam = _div(xp, occ, (tot1[0][:, None] + zero_c, tot1[1][:, None] + zero_c))
        gam = (xp.where(has[:, None], gam[0], zero_c), xp.where(has[:, None], gam[1], zero_c))
        if soft:
            sh, sl, zh, zl = soft
            q = _div(xp, (sh, sl), (zh[:, None] + zero_c, zl[:, None] + zero_c))
            diff = dd_add(xp, q, (-gam[0], -gam[1]))
        else:
            diff = (-gam[0], -gam[1])
        if length_normalize:
            diff = _div(xp, diff, (length_c, zero_c))
        g_t = xp.where((tl > t)[:, None], diff[0] + diff[1], zero_c)
        bp = dd_mul(xp, (b_h, b_l), (yh, yl))
        bp_h, bp_l = xp.concat([bp[0], pad2], axis=-1), xp.concat([bp[1], pad2], axis=-1)
        prev = dd_add(xp, dd_add(xp, (bp_h[:, :-2], bp_l[:, :-2]), (bp_h[:, 1:-1], bp_l[:, 1:-1])),
                      (bp_h[:, 2:] * skip_next, bp_l[:, 2:] * skip_next))
        (b_h, b_l), _ = _rescale(xp, prev)
        return (b_h, b_l), (g_t,)

    b0 = xp.zeros((N, width), dtype=dt, device=dev)
    _, (g,) = _scan(xp, backward, (b0, xp.zeros_like(b0)),
                    (alphas[0], alphas[1], y_hi_t, y_lo_t, steps, *soft_steps), reverse=True)
    g = xp.permute_dims(g, (1, 0, 2))  # (N, T, C)
    bad = impossible[:, None, None] & (g == g)
    g = xp.where(bad, xp.zeros_like(g) + (0.0 if zero_infinity else math.nan), g)
    return value, xp.reshape(g, (*shape, T * C))


# ------------------------------------------------------------- the fast path (NumPy, float32 input)

_U = 2.0 ** -53  # float64's unit roundoff
_BUDGET = 6.0 * 2.0 ** -24  # 6 float32 ulps (an ulp of v is at least 2**-24 |v|), before the final rounding
_SAFE = 2.0 ** -900  # a step whose largest state (or total occupancy) is below this goes to the slow path


def _ctc_plain(y_true: Any, y_pred: Any, grad: bool, *, event_shape: tuple[int, int], blank: int,
               from_logits: bool, length_normalize: bool, input_lengths: Any, label_lengths: Any
               ) -> tuple[Any, Any, Any]:
    """CTC of float32 inputs (given widened to float64, NumPy) in plain float64, with the rows whose
    computed error bound exceeds the budget flagged for the double-length kernel.

    Returns ``(value, gradient, redo)``; ``redo`` marks the rows to recompute: non-finite scores,
    no input steps, an impossible or underflowed alignment, or an error bound above the budget.

    Error analysis (u = 2**-53; the bounds are evaluated per row and checked, not assumed).
    e = exp(x - m_t) (m_t the step's largest score) has a relative error below u (NumPy's float64
    exp: 0.51 ulp) plus that of its argument: x - m_t of two float32 numbers is exact in float64
    unless their exponents differ by more than 27; then (flagged per row) it is rounded once, an
    absolute error below 2 X u (X = max |x| of the row): y's relative error is (1 + E_x) u, E_x = 0
    or 2X. The recursions run on y_t(s) = e_t(l'_s) and divide each step by its largest state s_t,
    so a state's relative error grows by at most (5 + E_x) u per step (two additions, a product, the
    division and y's error): alpha_t and beta_t carry at most (5 + E_x) T u together, their product
    (the occupancy) one rounding more. gamma_t(c) = sum_{l'_s = c} occ_t(s) / sum_s occ_t(s) adds
    the two sums' (S' - 1) u each (S' = 2S + 1 states) and the division: G u relative, G = 2 (5 +
    E_x) T + 4 S' + 8. Underflow: each step's s_t and total occupancy are checked to be at least
    2**-900, so a part that underflowed is below 2**-120 of its step and changes nothing here.
    value: sum_t (A_t - log s_t) - log f, f the final states' sum and A_t = log Z_t (Z_t = sum_c e;
    logits) or -m_t (log-probabilities): A_t carries (C + 1 + E_x) u + u |A_t|, log f + sum log s_t
    (the recursion, (5 + E_x) T u + 2u relative), each log one rounding, the sums (T + 2) u of the
    magnitudes summed. gradient: q - gamma (q = e / Z: (C + 2 + E_x) u relative) or -gamma: bound
    u (G gamma + (C + 2 + E_x) q + |g|). A row passes when its value's and every gradient element's
    bound is within 6 float32 ulps of the result (rounding to float32 adds half an ulp: 8 in all).
    """
    T, C = event_shape
    N, S = y_pred.shape[0], y_true.shape[-1]
    width = 2 * S + 1
    x = y_pred.reshape(N, T, C)
    rows = np.arange(N)
    labels = np.asarray(y_true).reshape(N, S).astype(np.int64)
    ll = (np.sum(labels != blank, axis=-1) if label_lengths is None
          else np.asarray(label_lengths).reshape(N).astype(np.int64))
    tl = (np.full(N, T, dtype=np.int64) if input_lengths is None
          else np.asarray(input_lengths).reshape(N).astype(np.int64))
    labels = np.where(np.arange(S)[None, :] < ll[:, None], labels, blank)
    ext = np.full((N, width), blank, dtype=np.int64)  # l' = (blank, l_1, blank, ..., l_L, blank)
    ext[:, 1::2] = labels
    skip = np.zeros((N, width))  # s - 2 -> s allowed: a label other than the one two states back
    skip[:, 1] = 1.0  # the first label, from the virtual start
    skip[:, 3::2] = labels[:, 1:] != labels[:, :-1]
    skip[ext == blank] = 0.0
    active = np.arange(T)[None, :] < tl[:, None]  # (N, T)

    m = x.max(axis=-1, keepdims=True)  # (N, T, 1)
    e = np.subtract(x, m)
    np.exp(e, out=e)
    z = e.sum(axis=-1)  # (N, T)
    redo = ~np.all(np.isfinite(m[..., 0]), axis=-1) | (tl == 0)
    ax = np.abs(x)
    big = ax.max(axis=(1, 2))
    small = np.min(ax, axis=(1, 2), where=ax > 0, initial=np.inf)
    del ax
    e_x = np.where(small < big * 2.0 ** -27, 2.0 * big, 0.0)

    y = np.take_along_axis(e.transpose(1, 0, 2), ext[None, :, :], axis=2)  # (T, N, S')
    # forward: alphas[t + 1] is step t over (N, 2 + S'): two virtual states first (index 1 is "before
    # the start", 1 at t = -1), so new(s) = a(s) + a(s - 1) + skip(s) a(s - 2) for every s
    alphas = np.zeros((T + 1, N, width + 2))
    alphas[0, :, 1] = 1.0
    scales = np.empty((T, N))
    tmp = np.empty((N, width))
    for t in range(T):
        prev, cur = alphas[t], alphas[t + 1, :, 2:]
        np.add(prev[:, 2:], prev[:, 1:-1], out=cur)
        np.multiply(prev[:, :-2], skip, out=tmp)
        cur += tmp
        cur *= y[t]
        np.max(cur, axis=1, out=scales[t])
        np.maximum(scales[t], _SAFE, out=tmp[:, 0])
        cur /= tmp[:, :1]
    last = alphas[np.maximum(tl, 1), rows]  # (N, 2 + S'): step T_n - 1
    fin = last[rows, 2 + 2 * ll] + last[rows, 1 + 2 * ll]  # states 2L and 2L - 1
    scales_t = scales.T  # (N, T)
    redo |= ~(fin > 0) | np.any(active & (scales_t < _SAFE), axis=-1)
    log_s = np.log(np.where(active, scales_t, 1.0))
    a_t = np.log(z) if from_logits else -m[..., 0]
    a_t = np.where(active, a_t, 0.0)
    with np.errstate(divide="ignore"):
        log_f = np.log(fin)
    value = np.sum(a_t - log_s, axis=-1) - log_f
    magnitude = np.sum(np.abs(a_t) + np.abs(log_s), axis=-1) + np.abs(log_f)
    steps = tl.astype(np.float64)
    bound = _U * (steps * (C + 7 + 2 * e_x) + 4 + (steps + 4) * magnitude)
    length = np.maximum(ll, 1).astype(np.float64)
    if length_normalize:
        value /= length
        bound /= length
    redo |= ~(bound <= _BUDGET * value)
    if not grad:
        return value, None, redo

    # backward: b holds beta_t (N, S' + 2; two trailing zeros), the rest of the alignment after step
    # t from state s; the occupancy alpha_t beta_t replaces alpha_t in place
    fresh = np.zeros((N, width + 2))
    fresh[rows, 2 * ll] = 1.0
    fresh[rows, np.maximum(2 * ll - 1, 0)] += (ll > 0)
    starts = {int(v): np.nonzero(tl == v)[0] for v in np.unique(tl) if v > 0}
    b = np.zeros((N, width + 2))
    w = np.zeros((N, width + 2))
    skip_next = np.zeros((N, width))
    skip_next[:, :-2] = skip[:, 2:]
    bscales = np.ones((T, N))
    for t in range(T - 1, -1, -1):
        if t + 1 in starts:
            b[starts[t + 1]] = fresh[starts[t + 1]]
        alphas[t + 1, :, 2:] *= b[:, :width]
        if t == 0:
            break
        np.multiply(b[:, :width], y[t], out=w[:, :width])
        np.add(w[:, :width], w[:, 1:width + 1], out=b[:, :width])
        np.multiply(w[:, 2:], skip_next, out=tmp)
        b[:, :width] += tmp
        np.max(b, axis=1, out=bscales[t - 1])
        np.maximum(bscales[t - 1], _SAFE, out=tmp[:, 0])
        b /= tmp[:, :1]
    del y
    occ = alphas[1:, :, 2:]  # (T, N, S')
    tot = occ.sum(axis=-1).T  # (N, T)
    inner = np.arange(T)[None, :] < (tl - 1)[:, None]  # the beta steps computed from a later one
    redo |= np.any(active & (tot < _SAFE), axis=-1) | np.any(inner & (bscales.T < _SAFE), axis=-1)
    onehot = np.zeros((N, width, C))
    onehot[rows[:, None], np.arange(width)[None, :], ext] = 1.0
    gam = np.matmul(occ.transpose(1, 0, 2), onehot)  # (N, T, C): occupancy by class
    del alphas, occ
    gam /= np.where(tot > 0, tot, 1.0)[..., None]
    if from_logits:
        e /= z[..., None]  # q = softmax
        g = np.subtract(e, gam, out=e)
        tol = np.add(g, gam)  # q again (one rounding)
        tol *= (C + 2) + e_x[:, None, None]
    else:
        g = np.negative(gam)
        tol = np.zeros_like(g)
    g_factor = 2 * (5 + e_x) * steps + 4 * width + 8
    tol += gam * g_factor[:, None, None]
    tol += np.abs(g)
    tol *= _U
    bad = tol > _BUDGET * np.abs(g)
    bad &= active[..., None]
    redo |= np.any(bad.reshape(N, -1), axis=-1)
    g *= active[..., None]
    if length_normalize:
        g /= length[:, None, None]
    return value, g.reshape(N, T * C), redo


def _cpu_ctc(name: str = "ctc") -> Any:
    """``_cpu.ctc`` (the compiled :func:`_ctc_plain`) or ``_cpu.ctc_dd`` (the compiled double-length
    recursion), or None without the compiled kernels."""
    from .._backends import numpy as numpy_backend

    return getattr(numpy_backend._cpu, name, None)


def _lengths(y_true: Any, blank: int, N: int, T: int, S: int, input_lengths: Any, label_lengths: Any
             ) -> tuple[Any, Any, Any]:
    """The labels (int64 (N, S)), input and label lengths (int64 (N,)) as the C kernels take them."""
    labels = np.ascontiguousarray(np.asarray(y_true).reshape(N, S), dtype=np.int64)
    ll = (np.sum(labels != blank, axis=-1) if label_lengths is None
          else np.asarray(label_lengths).reshape(N)).astype(np.int64)
    tl = (np.full(N, T, dtype=np.int64) if input_lengths is None
          else np.asarray(input_lengths).reshape(N).astype(np.int64))
    return labels, tl, ll


def _over_rows(chunk: Any, N: int, cost: int) -> None:
    """``chunk(lo, hi)`` over the rows [0, N), split over losskit's threads when the work is large."""
    from .._backends import numpy as numpy_backend

    n_chunks = min(numpy_backend.get_num_threads(), N)
    if (cost < numpy_backend.PARALLEL_MIN_ELEMENTS or n_chunks < 2
            or getattr(numpy_backend._local, "alone", False)):
        chunk(0, N)
        return
    bounds = np.linspace(0, N, n_chunks + 1).astype(int)
    pool = numpy_backend._get_pool()
    for f in [pool.submit(chunk, int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]:
        f.result()


def _ctc_plain_c(y_true: Any, y_pred: Any, grad: bool, *, event_shape: tuple[int, int], blank: int,
                 from_logits: bool, length_normalize: bool, input_lengths: Any, label_lengths: Any
                 ) -> tuple[Any, Any, Any]:
    """:func:`_ctc_plain` in C (``_cpu.c``'s ``ctc``: the same float64 recursion and per-row error
    bound, one sequence at a time), the rows split over losskit's threads when the batch is large."""
    T, C = event_shape
    N, S = y_pred.shape[0], y_true.shape[-1]
    x = np.ascontiguousarray(y_pred, dtype=np.float64)
    labels, tl, ll = _lengths(y_true, blank, N, T, S, input_lengths, label_lengths)
    value = np.empty(N)
    g = np.empty((N, T * C)) if grad else None
    redo = np.empty(N, dtype=np.uint8)
    run = _cpu_ctc()
    x3 = x.reshape(N, T, C)
    block = max(1, 8192 // (T * C))  # rows whose exponentials are held at a time (memory: 64 KB)

    def chunk(lo: int, hi: int) -> None:
        for a in range(lo, hi, block):
            b = min(a + block, hi)
            m = x3[a:b].max(axis=-1)  # (rows, T); the exponentials by NumPy (SIMD), the rest in C
            e = np.subtract(x3[a:b], m[..., None])
            np.exp(e, out=e)
            run(x[a:b], e, m, labels[a:b], tl[a:b], ll[a:b], b - a, T, C, S, blank, from_logits,
                length_normalize, value[a:b], None if g is None else g[a:b], redo[a:b])

    _over_rows(chunk, N, N * T * (2 * S + 1 + C))
    return value, g, redo.astype(bool)


def _ctc_dd_c(y_true: Any, y_pred: Any, grad: bool, *, event_shape: tuple[int, int], blank: int,
              from_logits: bool, length_normalize: bool, input_lengths: Any, label_lengths: Any
              ) -> tuple[Any, Any, Any]:
    """The double-length recursion in C (``_cpu.c``'s ``ctc_dd``: :func:`_ctc_double`'s quantities in
    pairs, one sequence at a time, with a per-row error bound; its comment has the analysis): returns
    ``(value, gradient, redo)``, ``redo`` marking the rows it leaves to :func:`_ctc_double`."""
    T, C = event_shape
    N, S = y_pred.shape[0], y_true.shape[-1]
    x = np.ascontiguousarray(y_pred, dtype=np.float64)
    labels, tl, ll = _lengths(y_true, blank, N, T, S, input_lengths, label_lengths)
    value = np.empty(N)
    g = np.empty((N, T * C)) if grad else None
    redo = np.empty(N, dtype=np.uint8)
    run = _cpu_ctc("ctc_dd")

    def chunk(lo: int, hi: int) -> None:
        run(x[lo:hi], labels[lo:hi], tl[lo:hi], ll[lo:hi], hi - lo, T, C, S, blank, from_logits,
            length_normalize, value[lo:hi], None if g is None else g[lo:hi], redo[lo:hi])

    # a double-length row costs about ten plain ones: threads from a tenth of the plain threshold
    _over_rows(chunk, N, 10 * N * T * (2 * S + 1 + C))
    return value, g, redo.astype(bool)


def _scan(xp: Any, step: Any, carry: Any, xs: tuple[Array, ...], reverse: bool = False
          ) -> tuple[Any, tuple[Array, ...]]:
    """``carry, y_t = step(carry, (x[t] for x in xs))`` over the leading axis of ``xs``, the outputs
    stacked on a new leading axis (in index order, also when ``reverse``): ``lax.scan`` under JAX (one
    traced step, so ``jax.jit`` compiles the loop once, not T times), a Python loop elsewhere."""
    if is_jax(xp):
        import jax

        return jax.lax.scan(step, carry, xs, reverse=reverse)
    n = xs[0].shape[0]
    outs: list[Any] = [None] * n
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        carry, outs[t] = step(carry, tuple(x[t] for x in xs))
    return carry, tuple(xp.stack([o[i] for o in outs], axis=0) for i in range(len(outs[0])))


def _recording(x: Array) -> bool:
    """A torch tensor that autograd records through the kernel (only under create_graph=True: a
    first-order backward runs the kernel without recording)."""
    if _array.backend_name(x) != "torch":
        return False
    import torch

    return bool(x.requires_grad and torch.is_grad_enabled())


def _on_torch_cpu(x: Array) -> bool:
    """A PyTorch CPU tensor that autograd is not recording (create_graph=True keeps the torch path)."""
    if _array.backend_name(x) != "torch" or x.device.type != "cpu":
        return False
    import torch

    return not (x.requires_grad and torch.is_grad_enabled())


def _via_numpy(y_true: Array, y_pred: Array, grad: bool, **kw: Any) -> tuple[Array, Any]:
    """:func:`_ctc` on the NumPy views of CPU tensors, the results back as tensors."""
    import torch

    def view(a: Any) -> Any:
        return None if a is None else a.detach().numpy()

    kw = {k: (view(v) if k.endswith("_lengths") else v) for k, v in kw.items()}
    value, g = _ctc(np, view(y_true), view(y_pred), grad=grad, **kw)
    value = torch.from_numpy(np.asarray(value))
    return value, (None if g is None else torch.from_numpy(np.asarray(g)))


def _jax_on_cpu() -> bool:
    """Whether JAX computes on the CPU (its default backend), where the host kernels are at hand."""
    import jax

    return bool(jax.default_backend() == "cpu")


def _via_callback(y_true: Array, y_pred: Array, grad: bool, **kw: Any) -> tuple[Array, Any]:
    """:func:`_ctc` of JAX arrays on the CPU by ``jax.pure_callback`` into the NumPy kernels (the
    compiled plain float64 recursion with its per-row bound, double length for the rows it flags,
    exactly as for NumPy input): under ``jax.jit`` the graph is one call, which compiles in a
    fraction of a second, where the traced double-length recursion (:func:`_ctc_double`) took tens
    of seconds. ``vmap`` broadcasts the arguments and the callback flattens the extra axes."""
    import jax

    T, C = kw["event_shape"]
    names = ("input_lengths", "label_lengths")
    given = [name for name in names if kw[name] is not None]
    opts = {k: v for k, v in kw.items() if k not in names}
    out = [jax.ShapeDtypeStruct(tuple(y_pred.shape[:-1]), y_pred.dtype)]
    if grad:
        out.append(jax.ShapeDtypeStruct(tuple(y_pred.shape), y_pred.dtype))

    def host(t: Any, p: Any, *lengths: Any) -> tuple[Any, ...]:
        t, p = np.asarray(t), np.asarray(p)
        lead = p.shape[:-1]
        n = math.prod(lead)
        lens: dict[str, Any] = {name: None for name in names}
        lens.update({name: np.asarray(v).reshape(n) for name, v in zip(given, lengths, strict=True)})
        args: dict[str, Any] = {**opts, **lens, "widened": p.dtype != np.float64}
        value, g = _ctc(np, t.reshape(n, t.shape[-1]), p.reshape(n, T * C).astype(np.float64),
                        grad=grad, **args)
        res = [np.asarray(value).reshape(lead).astype(p.dtype)]
        if grad:
            res.append(np.asarray(g).reshape(p.shape).astype(p.dtype))
        return tuple(res)

    res = jax.pure_callback(host, tuple(out), y_true, y_pred, *[kw[name] for name in given],
                            vmap_method="broadcast_all")
    return res[0], (res[1] if grad else None)


def _check_ctc(xp: Any, y_true: Array, y_pred: Array, *, event_shape: tuple[int, int], blank: int,
               input_lengths: Array | None = None, label_lengths: Array | None = None,
               **_: Any) -> None:
    T, C = event_shape
    S = int(y_true.shape[-1])
    if blank >= C:
        raise ValueError(f"ctc: blank={blank} is not a class of y_pred, which has {C} classes on its "
                         "last axis")
    if _array.is_floating(y_true) and _array.to_bool(xp.any(y_true != xp.round(y_true))):
        raise ValueError("ctc: y_true must hold integer labels; "
                         + _array.describe_range(xp, y_true, y_true != xp.round(y_true), "y_true")
                         .replace("outside", "that are not whole numbers"))
    for name, arr, top in (("input_lengths", input_lengths, T), ("label_lengths", label_lengths, S)):
        if arr is None:
            continue
        bad = (arr != xp.round(arr)) | (arr < 0) | (arr > top)
        if _array.to_bool(xp.any(bad)):
            raise ValueError(f"ctc: {name} must hold whole numbers in [0, {top}] (y_pred has shape "
                             f"(..., T={T}, C={C}), y_true (..., S={S})); "
                             + _array.describe_range(xp, arr, bad, name))
    k = xp.arange(S, device=_array.device(y_true))
    if label_lengths is None:
        pad = y_true == blank
        later = xp.cumsum(xp.astype(pad, xp.int64), axis=-1) > 0  # at or after the first blank
        bad = later & ~pad
        if _array.to_bool(xp.any(bad)):
            raise ValueError(f"ctc: without label_lengths, each row of y_true is its labels followed by "
                             f"padding with the blank index {blank}, but a label follows a blank "
                             "padding; pass label_lengths= (then any padding value is ignored); "
                             + _array.describe_range(xp, y_true, bad, "y_true")
                             .replace("outside", "after the padding"))
        counted = ~pad
    else:
        counted = xp.astype(k, label_lengths.dtype) < label_lengths[..., None]
    bad = counted & ((y_true < 0) | (y_true >= C) | (y_true == blank))
    if _array.to_bool(xp.any(bad)):
        raise ValueError(f"ctc: labels (within each row's label length) must be class indices in "
                         f"[0, {C - 1}] other than the blank index {blank}; "
                         + _array.describe_range(xp, y_true, bad, "y_true"))


CTC_LOSS = LossDef(
    name="ctc", class_name="CTC", kernel=_ctc, targets="sequence", event_ndim=2, precision_aware=True,
    aliases=(Alias("CTCLoss", from_logits=False, length_normalize=True,
                   note="PyTorch's log-probabilities (T, N, C): transpose to (N, T, C); its "
                        "reduction='mean' divides by the target lengths (length_normalize)"),
             Alias("ctc_loss", note="Optax's ctc_loss(logits, logit_paddings, labels, label_paddings): "
                                    "input_lengths = T - logit_paddings.sum(-1), likewise the labels"),
             Alias("torch.ctc_loss", from_logits=False, length_normalize=True)),
    options=(
        Option("blank", 0, check_label_index, "the class index of the blank symbol"),
        Option("from_logits", True, check_bool,
               "whether ``y_pred`` holds logits (True: Keras, Optax) or log-probabilities (False: "
               "PyTorch's ``log_probs``)"),
        Option("zero_infinity", False, check_bool,
               "give impossible alignments (loss +inf) the value 0 and a zero gradient (PyTorch's)"),
        Option("length_normalize", False, check_bool,
               "divide each sequence's loss by its label length (at least 1); with "
               "``reduction='mean'`` this is PyTorch's ``reduction='mean'``"),
    ),
    inputs=(
        Input("input_lengths", "the number of valid time steps of each sequence, shape (N,), in "
              "[0, T] (default: all T)", required=False, per_sample=True),
        Input("label_lengths", "the number of valid labels of each row of y_true, shape (N,), in "
              "[0, S] (default: the labels before the first blank-index padding)", required=False,
              per_sample=True),
    ),
    check_values=_check_ctc,
    doc=r"""Connectionist temporal classification loss (Graves et al., 2006): minus the log-probability of
    the label sequence summed over every alignment.

    .. math:: \ell = -\log \sum_{\pi \in \mathcal{B}^{-1}(l)} \prod_{t < T_n} q_t(\pi_t),
              \qquad \frac{\partial \ell}{\partial x_t(c)} = \mathrm{softmax}(x_t)(c) - \gamma_t(c)

    where :math:`\mathcal{B}` removes repeats then blanks, :math:`q_t = \mathrm{softmax}(x_t)`
    (``from_logits=True``) or :math:`\exp(x_t)` (``from_logits=False``: log-probabilities, whose
    gradient is :math:`-\gamma_t(c)`), and :math:`\gamma_t(c)` is the posterior probability that
    the alignment emits ``c`` at step ``t``, from the forward-backward (alpha/beta) recursions.
    Steps at or after ``T_n`` get a zero gradient. An impossible alignment (a label longer than
    ``T_n`` counting a blank between repeats) has the exact value ``+inf`` and a NaN gradient, or 0
    and a zero gradient with ``zero_infinity=True``.

    The recursions run on double-length pairs, rescaled by powers of two, so long sequences keep
    their digits (within 8 ulp of the exact value, see the kernel's error analysis). float32 inputs
    on the CPU (NumPy, torch tensors, JAX arrays) run a compiled plain float64 recursion that bounds
    its own error per sequence; the sequences it cannot vouch for, and float64 inputs, run a compiled
    double-length recursion that bounds its error likewise, and the rare sequences left after it the
    double-length recursion in NumPy.

    Shapes: ``y_pred`` ``(N, T, C)`` (batch first, as Keras and Optax; PyTorch's ``(T, N, C)`` is
    ``log_probs.transpose(0, 1)``); ``y_true`` ``(N, S)`` integer labels, padded; optional
    ``input_lengths`` and ``label_lengths`` ``(N,)``. Returns one value per sequence ``(N,)``; the
    gradient has ``y_pred``'s shape.

    Peers:

    - PyTorch ``F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, reduction,
      zero_infinity)``: ``from_logits=False`` with ``y_pred = log_probs.transpose(0, 1)``; its
      ``reduction='mean'`` is ``length_normalize=True`` with the default reduction, ``'sum'`` and
      ``'none'`` are the same names. PyTorch's gradient with respect to ``log_probs`` is
      ``exp(log_probs) - gamma`` (the logits' gradient, assuming log-softmax inputs) where this
      loss gives the exact ``-gamma``; after a log-softmax both are ``softmax - gamma``.
      Concatenated 1-D targets are not accepted: pad them to ``(N, S)``.
    - Keras ``keras.losses.ctc`` / ``CTC``: logits, labels padded with 0 (the blank), every
      sequence of full length: ``ctc(y_true, y_pred)`` with the defaults.
    - Optax ``ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id)``:
      ``input_lengths = T - logit_paddings.sum(-1)``, ``label_lengths = S - label_paddings.sum(-1)``.
      Optax returns a large finite number (about ``-log_epsilon = 1e5``) for an impossible
      alignment; this loss returns ``inf``.

    Example (T = 1, one label 1: the probability of emitting it, softmax([0, log 3])(1) = 3/4):

    >>> import numpy as np, losskit
    >>> logits = np.array([[[0.0, np.log(3.0)]]])
    >>> float(losskit.ctc(np.array([[1]]), logits)[0])  # -log(3/4)
    0.2876820724517809
    """)
