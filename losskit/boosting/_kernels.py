"""The numerical kernels of :mod:`losskit.boosting`: gradient and hessian in raw-score space.

Everything here works on float64 NumPy arrays that :mod:`losskit.boosting._core` has already checked
(shapes, finiteness, domains); the declarations in :mod:`losskit.boosting.objectives` name a kernel
class of this module, built once per option set. Each sample takes the cheapest of four tiers that
keeps the 8-ulp bound (the error budgets are in the comments): plain float64 where the terms of the
gradient are far apart, an exponential from a 2048-entry table to 2**-62 (:func:`_exp_mid`) near the
optimum, the same to 2**-76 (:func:`_exp_precise`) where the terms agree to 2**-10, and double-double
numbers scaled by a power of two (:func:`_exp_parts`) where they agree to 2**-22 or the raw score is
beyond about +-650.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable
from fractions import Fraction
from math import factorial
from typing import Any

import numpy as np

from losskit._double import dd_add, dd_constant, dd_mul, fast_two_sum, two_product, two_sum
from losskit._numerics import accurate_sum, exp_difference, log_both, softplus_pair

try:  # the compiled kernels (losskit/_backends/_cpu.c); without them the NumPy tiers run
    from losskit._backends import _cpu  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - built without a C compiler
    _cpu = None
_BOOST_TWEEDIE, _BOOST_BINOMIAL = 1000, 1001  # kernel ids in _cpu.c's boosting range
_SOFT_BINOMIAL, _SOFT_EXPONENTIAL = 0, 1  # ids of _cpu.boost_soft (the 62-bit formula for every element)
_ID_ABSOLUTE, _ID_HUBER, _ID_PINBALL = 0, 1, 2  # ids of _cpu.boost_identity

Array = Any

_F64 = np.float64

# --------------------------------------------------------------------------- double-double kernel
# A double-double (hi, lo) represents hi + lo with |lo| <= ulp(hi)/2, about 106 bits. The error-free
# transformations and pair arithmetic are losskit._double's (here on NumPy arrays, where its barrier
# is the identity); what follows is the table-driven exponential and the scaled terms built on them.

# Constants at 60 significant digits from the decimal module (correctly rounded ln and power),
# split into double-doubles.
_D = decimal.Context(prec=60)
_LN2_EXACT = Fraction(_D.ln(decimal.Decimal(2)))
# ln(2)/64 in three parts (Cody and Waite's additive reduction): _C1 has 28 significant bits, so
# n*_C1 is exact for |n| < 2**25 (|x| <= 1e5 gives |n| <= 9.3e6); n*_C2 is made exact by
# TwoProduct; n*_C3 is below 2**-110 of the reduced argument.
_C1 = float(Fraction(int(_LN2_EXACT * 2**28), 2**28) / 64)
_C2 = float(_LN2_EXACT / 64 - Fraction(_C1))
_C3 = float(_LN2_EXACT / 64 - Fraction(_C1) - Fraction(_C2))
_INV_C = float(64 / _LN2_EXACT)
# 2**(j/64), j = 0..63, as double-doubles (Tang's table-driven exp, ACM TOMS 15, 1989).
_TABLE = [dd_constant(Fraction(_D.power(decimal.Decimal(2), decimal.Decimal(j) / 64))) for j in range(64)]
_TABLE_HI = np.array([t[0] for t in _TABLE])
_TABLE_LO = np.array([t[1] for t in _TABLE])
# 1/n! as double-doubles. With |s| <= ln(2)/128 = 0.0054 the terms from s**11/11! on are below 2**-110
# relative, and from s**7/7! on they are below 2**-64, so those are summed in plain float64 and only
# the first seven in double-double.
_EXP_COEFS = tuple(dd_constant(Fraction(1, factorial(n))) for n in range(11))
# Beyond |x| = 1e5, exp(x) over- or underflows in every format (the largest float64 exponent is
# 1024 ln 2 = 710, and even a product with a 2**-1074 coefficient stays out of range).
_EXP_ARG_CLIP = 1.0e5


def _exp_parts(xh: Array, xl: Array) -> tuple[Array, Array, Array]:
    """``exp(xh + xl) = (mh + ml) * 2**k`` with ``mh + ml`` in ``[0.99, 2.01]`` to about 2**-104.

    Reduction ``x = (64 k + j) ln(2)/64 + s`` with ``|s| <= ln(2)/128`` computed exactly (the first
    subtraction is exact by Sterbenz's lemma, the rest as double-doubles), then
    ``exp(x) = 2**k * 2**(j/64) * exp(s)`` with the table value and the Taylor series of ``exp(s)`` in
    double-double arithmetic. ``k`` is returned as int64 so that the caller can combine terms whose
    exponentials alone would over- or underflow.
    """
    xh = np.clip(xh, -_EXP_ARG_CLIP, _EXP_ARG_CLIP)
    xl = np.where(np.abs(xh) >= _EXP_ARG_CLIP, 0.0, xl)
    n = np.rint(xh * _INV_C)
    d1 = xh - n * _C1  # exact: n*_C1 is exact and within a factor 2 of xh when n != 0
    p2, e2 = two_product(np, n, np.full_like(n, _C2))
    sh, sl = two_sum(np, d1, -p2)
    sh, sx = two_sum(np, sh, xl)  # xl can be half an ulp of |x| <= 1e5: added exactly, not rounded
    sl = sx + (sl - e2 - n * _C3)
    sh, sl = fast_two_sum(np, sh, sl)
    tail = _EXP_COEFS[10][0]
    for c in reversed(_EXP_COEFS[7:10]):
        tail = tail * sh + c[0]
    acc_h, acc_l = np.asarray(tail + 0.0 * sh), np.zeros_like(sh)
    for ch, cl in reversed(_EXP_COEFS[:7]):
        acc_h, acc_l = dd_mul(np, (acc_h, acc_l), (sh, sl))
        acc_h, acc_l = dd_add(np, (acc_h, acc_l), (np.full_like(sh, ch), np.full_like(sh, cl)))
    ni = n.astype(np.int64)
    j = ni & 63
    mh, ml = dd_mul(np, (acc_h, acc_l), (_TABLE_HI[j], _TABLE_LO[j]))
    return mh, ml, (ni - j) >> 6


def _term(c: tuple[float, float], vh: Array, vl: Array, xh: Array, xl: Array) -> tuple[Array, Array, Array]:
    """``c * (vh + vl) * exp(xh + xl)`` as ``(mh + ml) * 2**K``: c a double-double scalar, v a
    double-double array (any finite magnitude, subnormals included), x a double-double argument."""
    return _scale_exp(c, vh, vl, _exp_parts(xh, xl))


def _scale_exp(
    c: tuple[float, float], vh: Array, vl: Array, e: tuple[Array, Array, Array]
) -> tuple[Array, Array, Array]:
    """``c * (vh + vl) * E`` for ``E = (mh + ml) * 2**k`` from :func:`_exp_parts`."""
    fv, ev = np.frexp(vh)
    fvl = np.ldexp(vl, -ev)
    ch, cl = c
    fc, ec = np.frexp(ch)
    fcl = np.ldexp(cl, -ec)
    coef_h, coef_l = dd_mul(np, (fv, fvl), (np.full_like(fv, fc), np.full_like(fv, fcl)))
    mh, ml, k = e
    th, tl = dd_mul(np, (coef_h, coef_l), (mh, ml))
    return th, tl, k + ev.astype(np.int64) + int(ec)


def _combine(t1: tuple[Array, Array, Array], t2: tuple[Array, Array, Array]) -> Array:
    """``t1 + t2`` for two scaled double-double terms, rounded once to float64.

    The terms are aligned on the larger exponent (the smaller one may underflow there, where it is
    negligible) and added as double-doubles, so a cancellation keeps about 100 bits."""
    h1, l1, k1 = t1
    h2, l2, k2 = t2
    k1 = np.where(h1 == 0, k2, k1)
    k2 = np.where(h2 == 0, k1, k2)
    k = np.maximum(k1, k2)
    # exponents stay within +-2**18 (arguments are clipped to 1e5), so int32 is exact and portable
    d1, d2 = (k1 - k).astype(np.int32), (k2 - k).astype(np.int32)
    a_h, a_l = np.ldexp(h1, d1), np.ldexp(l1, d1)
    b_h, b_l = np.ldexp(h2, d2), np.ldexp(l2, d2)
    s, e = two_sum(np, a_h, b_h)
    return np.ldexp(s + (e + (a_l + b_l)), k.astype(np.int32))


def _neg(t: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
    return -t[0], -t[1], t[2]


def _times(c: tuple[float, float], r: Array) -> tuple[Array, Array]:
    """The exact product ``c * r`` (c a double-double scalar) as a double-double array; ``|r|`` is
    first clipped to 1e100, far beyond where any exponential of it is representable."""
    if c[1] == 0.0 and c[0] in (0.0, 1.0, -1.0):  # Poisson, Gamma: nothing to round
        return c[0] * r, np.zeros_like(r)
    r = np.clip(r, -1e100, 1e100)
    ph, pl = two_product(np, np.full_like(r, c[0]), r)
    return fast_two_sum(np, ph, pl + c[1] * r)


def _one_minus(y: Array) -> tuple[Array, Array]:
    """``1 - y`` as an exact double-double (for 0 <= y <= 1)."""
    return two_sum(np, np.ones_like(y), -y)


_ONE = (1.0, 0.0)


def _dd_scalar(a: float, b: float) -> tuple[float, float]:
    """``a - b`` for Python floats as an exact double-double scalar."""
    q = Fraction(a) - Fraction(b)
    return dd_constant(q)


# Range helpers of the float64 kernels: where all intermediate values are normal floats with a
# margin, nothing over- or underflows; the elements outside take the double-double path.
_SAFE_BIG = 2.0**1000
_SAFE_SMALL = 2.0**-1000
_BIN_ARG = 690.0  # binomial and exponential kernels: exp(+-r) normal with a margin


def _in_range(*terms: Array) -> Array:
    """Each term is 0 or a normal float with a margin of 2**24 on both sides."""
    ok = np.ones(np.shape(terms[0]), dtype=bool)
    for t in terms:
        a = np.abs(t)
        ok &= (a == 0) | ((a >= _SAFE_SMALL) & (a <= _SAFE_BIG))
    return ok


def _apart(diff: Array, t1: Array, t2: Array) -> Array:
    """``|t1 - t2| >= 3/4 max(|t1|, |t2|)``: the difference cancels at most 2 bits."""
    return np.abs(diff) >= 0.75 * np.maximum(np.abs(t1), np.abs(t2))


# --------------------------------------------------------------------------- medium-precision exp
# Near the optimum of a log-link loss, ``exp(r) - y`` cancels: ``e = fl(exp(r))`` is within one ulp
# of ``exp(r)`` (NumPy's float64 exp: Tang's algorithm, < 0.77 ulp; glibc < 1 ulp), so the plain
# difference is within 8 ulp only while ``exp(r) <= 3.5 |exp(r) - y|``. Boosting spends most rounds
# closer than that. :func:`_exp_mid` gives ``exp(x)`` to ~62 bits in ~25 cheap array operations
# (no double-double product), enough for the gradient to be within 8 ulp while the two terms cancel
# to 2**-11 of their size; only the few elements closer still (a perfect prediction) take the
# double-double path, which costs ~100 operations more per element.
#
# Method (Tang's table-driven exp, ACM TOMS 15, 1989, with a 2048-entry table): with
# ``L = ln(2)/2048``, ``n = round(x/L)``, ``s = x - n L``, ``exp(x) = 2**(n >> 11) * T[n & 2047] *
# exp(s)``, ``T[j] = 2**(j/2048)`` as a double-double ``T_hi + T_lo`` and ``|s| <= L/2 = 2**-12.5``.
# Error budget, relative to the result (2**-53 = u):
# * ``n C1`` is exact (C1 has 32 significant bits, |n| < 2**21 for |x| <= 650) and ``x - n C1`` is
#   exact (Sterbenz); ``- n C2`` rounds by <= ulp(s)/2 <= 2**-66 (and n C2 itself by 2**-75); the
#   neglected ``n (L - C1 - C2)`` is below 2**-74;
# * ``p = s + s**2 (1/2 + s/6 + s**2/24)`` is ``expm1(s)`` to 2**-69.6 (the first omitted term,
#   s**5/120), and ``s + q`` rounds by 2**-66;
# * ``c = T_hi p + T_lo`` rounds twice by <= 2**-64.5 each and drops ``T_lo p`` (2**-64.5);
# * the power of two is applied by multiplication (exact while the result is normal: |x| <= 650).
# Total: below 2**-62 of ``exp(x)``, returned unevaluated as ``A + C``, ``A = 2**k T_hi``.
_MID_BITS = 11
_MID_N = 1 << _MID_BITS
_MID_ARG = 650.0  # |x| <= 650: 2**k, A and every bit of C are normal floats
_MID_L = _LN2_EXACT / _MID_N
_MID_L_EXP = math.floor(math.log2(_MID_L))
_MID_C1_EXACT = Fraction(math.floor(_MID_L * 2 ** (31 - _MID_L_EXP)), 2 ** (31 - _MID_L_EXP))  # 32 bits
_MID_C1 = float(_MID_C1_EXACT)
_MID_C2 = float(_MID_L - _MID_C1_EXACT)
_MID_INV = float(1 / _MID_L)
_SHIFTER = 1.5 * 2.0**52  # x + 1.5*2**52 rounds x to an integer held in the low mantissa bits
_SHIFTER_BITS = int(np.array(_SHIFTER).view(np.int64))
_EXP_BITS = 0x7FF0000000000000  # the exponent field: x & _EXP_BITS = 2**floor(log2 |x|) for normal x


def _mid_table() -> tuple[np.ndarray, np.ndarray]:
    """``2**(j/2048)``, j = 0..2047, as double-doubles, from the double-double :func:`_exp_parts`
    (about 2**-104) of ``j * ln(2)/2048`` (itself exact to 2**-106)."""
    j = np.arange(_MID_N, dtype=_F64)
    lh, ll = dd_constant(_MID_L)
    xh, xl = two_product(np, j, np.full_like(j, lh))
    mh, ml, k = _exp_parts(xh, xl + j * ll)
    th, tl = fast_two_sum(np, np.ldexp(mh, k.astype(np.int32)), np.ldexp(ml, k.astype(np.int32)))
    return th, tl


_MID_HI, _MID_LO = _mid_table()


def _exp_mid(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``exp(x) = A + C`` to within 2**-62 of ``exp(x)`` for float64 ``|x| <= 650`` (see above);
    ``A`` carries the leading 53 bits, ``|C| <= 2**-11.5 A``."""
    m = x * _MID_INV
    m += _SHIFTER
    n = m.view(np.int64) - _SHIFTER_BITS  # round(x / L) as an integer
    m -= _SHIFTER  # ... and as a float
    s = m * _MID_C1
    np.subtract(x, s, out=s)
    m *= _MID_C2
    s -= m
    j = n & (_MID_N - 1)
    n >>= _MID_BITS  # the power of two (arithmetic shift: floor for negative n)
    th = _MID_HI.take(j)
    c = _MID_LO.take(j)
    u = s * (1.0 / 24.0)
    u += 1.0 / 6.0
    u *= s
    u += 0.5
    u *= s
    u *= s
    u += s  # expm1(s)
    u *= th
    c += u
    n += 1023
    n <<= 52
    scale = n.view(_F64)
    th *= scale
    c *= scale
    return th, c


# A second tier for the few elements that cancel to less than 2**-11 (about 0.03 % of samples within a
# factor 1.5 of the optimum): the same reduction with ``s = s_hi + s_lo`` kept exact (three-part
# ln(2)/2048, the second part also of 32 bits so that ``n C2`` is exact, then TwoSum), the product
# ``T_hi s_hi`` exact (TwoProduct with the table pre-split), and ``expm1(s)`` to the s**6 term
# (s**7/5040 < 2**-100). The result ``exp(x) = A + P + R`` (``|P| <= 2**-11.5 A``,
# ``|R| <= 2**-25 A``) is within 2**-76 of exp(x): ``q = s_hi**2 (1/2 + ...)`` (|q| <= 2**-26) and
# ``R`` round by about 2**-78 each. Run once per call on the compacted elements.
_MID_C2_EXACT = Fraction(
    math.floor((_MID_L - _MID_C1_EXACT) * 2 ** (31 - math.floor(math.log2(_MID_L - _MID_C1_EXACT)))),
    2 ** (31 - math.floor(math.log2(_MID_L - _MID_C1_EXACT))),
)
_MID_C2P = float(_MID_C2_EXACT)  # 32 bits
_MID_C3P = float(_MID_L - _MID_C1_EXACT - _MID_C2_EXACT)
_SPLIT = 2.0**27 + 1.0
_MID_HI_H = _MID_HI * _SPLIT - (_MID_HI * _SPLIT - _MID_HI)  # Veltkamp split of the table
_MID_HI_L = _MID_HI - _MID_HI_H


def _exp_precise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``exp(x) = A + P + R`` to within 2**-76 of ``exp(x)`` for float64 ``|x| <= 650``."""
    m = x * _MID_INV
    m += _SHIFTER
    n = m.view(np.int64) - _SHIFTER_BITS
    m -= _SHIFTER
    s1 = x - m * _MID_C1  # exact
    sh, sl = two_sum(np, s1, -(m * _MID_C2P))  # n C2 exact: s_hi + s_lo exact
    sl -= m * _MID_C3P
    j = n & (_MID_N - 1)
    n >>= _MID_BITS
    th, tl = _MID_HI.take(j), _MID_LO.take(j)
    thh, thl = _MID_HI_H.take(j), _MID_HI_L.take(j)
    u = sh * (1.0 / 720.0) + 1.0 / 120.0
    for c in (1.0 / 24.0, 1.0 / 6.0, 0.5):
        u *= sh
        u += c
    u *= sh * sh  # q: expm1(s_hi) - s_hi
    plo = u + sl * (1.0 + sh)  # expm1(s) - s_hi
    c = _SPLIT * sh
    shh = c - (c - sh)
    shl = sh - shh
    p = th * sh
    pe = ((thh * shh - p) + thh * shl + thl * shh) + thl * shl  # th sh = p + pe exactly
    rest = pe + (th * plo + tl * (1.0 + sh + plo))
    n += 1023
    n <<= 52
    scale = n.view(_F64)
    return th * scale, p * scale, rest * scale


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p, e)``, ``p = fl(a b)`` and ``a b = p + e`` exactly: :func:`losskit._double.two_product`
    (Dekker, Veltkamp's split) on float64 NumPy arrays without its per-operation framework hooks,
    for ``|a|, |b| <= 2**995`` (here: at most 2**53)."""
    p = a * b
    t = a * _SPLIT
    ah = t - a
    np.subtract(t, ah, out=ah)
    al = np.subtract(a, ah, out=t)
    t = b * _SPLIT
    bh = t - b
    np.subtract(t, bh, out=bh)
    bl = np.subtract(b, bh, out=t)
    e = ah * bh
    e -= p
    ah *= bl
    e += ah
    bh *= al
    e += bh
    al *= bl
    e += al
    return p, e


def _mid_difference(
    ch: np.ndarray, cl: np.ndarray | float, x: np.ndarray, oh: np.ndarray, ol: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """``D = (ch + cl) exp(x) - (oh + ol)`` for ``|x| <= 650`` (the pairs exact), and the larger term
    ``T``: ``exp(x) = A + C`` by :func:`_exp_mid`, ``ch A`` exact (TwoProduct), so D is within
    ``2**-62 T`` plus two roundings of about ``u |D|`` (``P - oh`` is exact by Sterbenz where the
    terms are within a factor 2, and rounds by half an ulp of itself elsewhere)."""
    a, c = _exp_mid(x)
    p, pe = _two_product(ch, a)
    c *= ch
    pe += c
    pe += cl * a
    pe -= ol  # the low parts
    t = np.maximum(np.abs(p), np.abs(oh))
    p -= oh
    p += pe
    return p, t


def _precise_difference(
    ch: np.ndarray, cl: np.ndarray | float, x: np.ndarray, oh: np.ndarray, ol: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_mid_difference` from :func:`_exp_precise`: ``exp(x) = A + P + R``, ``ch A`` and
    ``ch P`` exact (TwoProduct); D within ``2**-75 T`` plus two roundings of about ``u |D|``."""
    a, p, rest = _exp_precise(x)
    h1, e1 = _two_product(ch, a)
    h2, e2 = _two_product(ch, p)
    low = e1 + e2
    low += ch * rest
    low += cl * (a + p)
    low -= ol
    t = np.maximum(np.abs(h1), np.abs(oh))
    h1 -= oh  # exact where it matters: the terms agree to 2**-11 (Sterbenz)
    h1 += h2
    h1 += low
    return h1, t


_BIN_PARAMS = np.array([0.0, 0.0, 0.0, 0.0, 0.0, _MID_INV, _MID_C1, _MID_C2])  # the exp constants only
# boost_soft's: also the 2**-76 tier's two further parts of ln(2)/2048 (its flagged elements are redone
# in C at once, so only the double-double path is left to Python)
_SOFT_PARAMS = np.concatenate([_BIN_PARAMS, [_MID_C2P, _MID_C3P]])


def _run_c(kernel_id: int, y: np.ndarray, r: np.ndarray, params: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One compiled boosting kernel over the flattened float64 arrays: ``(g, h, marked, kind, y, r)``
    with the indices of the flagged elements and their flags (1 or 2, see ``_cpu.c``). Ids 1000 and
    up are ``_cpu.boost``'s, the others ``_cpu.boost_soft``'s (:data:`_SOFT_BINOMIAL`,
    :data:`_SOFT_EXPONENTIAL`)."""
    yf = np.ascontiguousarray(y, dtype=_F64).reshape(-1)
    rf = np.ascontiguousarray(r, dtype=_F64).reshape(-1)
    n = rf.size
    g, h = np.empty(n), np.empty(n)
    flag = np.zeros(-(-n // 8) * 8, dtype=np.uint8)  # whole 8-byte words (the scan below)
    marked = np.zeros(0, dtype=np.intp)
    run = _cpu.boost if kernel_id >= 1000 else _cpu.boost_soft
    if n and run(kernel_id, yf, rf, n, _MID_HI, _MID_LO, g, h, flag, params):
        # the few flagged elements: nonzero 8-byte words first (an eighth of the scan), then bytes
        words = np.flatnonzero(flag.view(np.uint64))
        marked = (words[:, None] * 8 + np.arange(8)).ravel()
        marked = marked[flag[marked] != 0]
    return g, h, marked, flag[marked], yf, rf


def _soft_c(kernel_id: int, y: np.ndarray, r: np.ndarray,
            precise: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
            exact: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
            ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and hessian from ``_cpu.boost_soft`` (the 62-bit formula on every element with its
    per-element bound, then the 2**-76 tier on the elements whose terms agree to 2**-10): the
    elements it leaves flagged 2 (|r| out of range, terms agreeing to 2**-22) get both results from
    ``exact(y, r)`` (double-double). Flag 1 (not left by ``_cpu.c`` today) would take
    ``precise(y, r) -> (gradient, still_left)``."""
    g, h, marked, kind, yf, rf = _run_c(kernel_id, y, r, _SOFT_PARAMS)
    if marked.size:
        left = [marked[kind == 2]]
        deep = marked[kind == 1]
        if deep.size:
            gp, still = precise(yf[deep], rf[deep])
            g[deep] = gp
            left.append(deep[still])
        idx = np.concatenate(left)
        if idx.size:
            g[idx], h[idx] = exact(yf[idx], rf[idx])
    return g.reshape(r.shape), h.reshape(r.shape)


# --------------------------------------------------------------------------- chunked driver
# Elementwise kernels run over cache-sized chunks (a few 64 KB temporaries stay in L1/L2 instead of
# streaming full-size arrays through memory ~15 times).
_CHUNK = 8192


Mask = np.ndarray | None


def _chunked(
    kernel: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[Mask, Mask]],
    exact: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    y: np.ndarray, r: np.ndarray,
    precise: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and hessian from ``kernel(y, r, g_out, h_out) -> (left, deep)`` chunk by chunk.
    The ``deep`` elements get their gradient from ``precise(y, r) -> (gradient, still_left)``, once
    for the whole array; the ``left`` (and still left) ones are recomputed by ``exact(y, r)``."""
    shape = r.shape
    yf, rf = y.reshape(-1), r.reshape(-1)
    n = rf.size
    g, h = np.empty(n), np.empty(n)
    left: list[np.ndarray] = []
    deep: list[np.ndarray] = []
    for i in range(0, n, _CHUNK):
        j = min(n, i + _CHUNK)
        lm, dm = kernel(yf[i:j], rf[i:j], g[i:j], h[i:j])
        for mask, into in ((lm, left), (dm, deep)):
            if mask is not None:
                idx = np.flatnonzero(mask)
                if idx.size:
                    into.append(idx + i)
    if deep and precise is not None:
        idx = np.concatenate(deep)
        gp, still = precise(yf.take(idx), rf.take(idx))
        g[idx] = gp
        if still.any():
            left.append(idx[still])
    elif deep:
        left.extend(deep)
    if left:
        idx = np.concatenate(left)
        gd, hd = exact(yf[idx], rf[idx])
        g[idx], h[idx] = gd, hd
    return g.reshape(shape), h.reshape(shape)


def _or(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


# --------------------------------------------------------------------------- validation


def _as_float(name: str, x: Any, allow_bool: bool = True) -> np.ndarray:
    """``x`` as a real numeric array (integer, floating or, where it makes sense, boolean), or a
    TypeError naming the argument. Masked arrays are refused: their mask would be lost."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array; losskit.boosting does not honour masks: pass the kept samples "
            "(x.compressed()) or give the masked ones sample_weight=0"
        )
    try:
        arr = np.asarray(x)
    except ValueError as err:  # a ragged nested sequence
        raise TypeError(f"{name} must be a real numeric array, found a ragged sequence ({err})") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, found dtype {arr.dtype}")
    if kind not in "iuf" and not (kind == "b" and allow_bool):
        raise TypeError(f"{name} must be a real numeric array, found dtype {arr.dtype}")
    return arr


def _link_input(y_pred: Any, low: float = -np.inf, high: float = np.inf, what: str = "") -> np.ndarray:
    """``y_pred`` for a link function as float64, refused (ValueError) outside ``[low, high]``;
    NaN passes (and gives NaN)."""
    p = _as_float("y_pred", y_pred).astype(_F64)
    bad = (p < low) | (p > high)
    if np.any(bad):
        raise ValueError(
            f"y_pred for the {what} link must be in [{low:g}, {high:g}], found {p[bad].ravel()[0]}"
        )
    return p


def _inverse_link_input(raw_prediction: Any) -> np.ndarray:
    return _as_float("raw_prediction", raw_prediction, allow_bool=False).astype(_F64)


def _out_dtype(raw: np.ndarray) -> np.dtype:
    """float16/32/64 keep their dtype; integers and extended precision (computed in float64, whose
    accuracy it has) give float64."""
    return raw.dtype if raw.dtype in (np.float16, np.float32, np.float64) else np.dtype(np.float64)


def _check_finite(name: str, x: np.ndarray) -> tuple[float, float]:
    """Raise unless every element is finite; return ``(min, max)`` (two reductions, no mask:
    a NaN propagates through both, an infinity shows in one)."""
    if not x.size:
        return 0.0, 0.0
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = x[~np.isfinite(x)].ravel()[0]
        raise ValueError(f"{name} must be finite, found {bad}")
    return lo, hi


def _difference(y: np.ndarray, r: np.ndarray, bounds: Any) -> np.ndarray:
    """``r - y`` (a new array), with the finiteness check of both inputs done on it when ``bounds``
    is None: a NaN or infinite input makes the difference non-finite (min/max show it); a
    non-finite difference of finite inputs is an overflow, whose rounding to +-inf is correct."""
    d = r - y
    if bounds is None and d.size and not (math.isfinite(d.min()) and math.isfinite(d.max())):
        _check_finite("raw_prediction", r)
        _check_finite("y_true", y)
    return d


def _identity_c(kernel_id: int, param: float, y: np.ndarray, r: np.ndarray, bounds: Any
                ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and hessian (the constant 1) of an identity-link loss in one compiled pass
    (``_cpu.boost_identity``: the derivative of the same per-element term as ``losskit.get``'s
    ``mean_absolute_error``, ``huber`` and ``pinball`` in ``_cpu.c``, ``d = r - y`` rounded once, so
    within half an ulp; the sign, the clip and the slopes ``-q``, ``1 - q``, ``1/2 - q`` are exact).
    Two reads and two full-size writes, as scikit-learn. The pass also reports whether some ``r - y``
    is not finite: only then are the inputs checked one by one (a non-finite difference of finite
    inputs is an overflow, whose derivative, the limit, is still right)."""
    yf = np.ascontiguousarray(y, dtype=_F64).reshape(-1)
    rf = np.ascontiguousarray(r, dtype=_F64).reshape(-1)
    n = rf.size
    g, h = np.empty(n), np.empty(n)
    if _cpu.boost_identity(kernel_id, yf, rf, n, g, h, param) and bounds is None:
        _check_finite("raw_prediction", r)
        _check_finite("y_true", y)
    return g.reshape(r.shape), h.reshape(r.shape)


def _check_weight(sample_weight: Any, n_shape: tuple[int, ...]) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = _as_float("sample_weight", sample_weight)
    if w.shape != n_shape:
        raise ValueError(f"sample_weight must have shape {n_shape}, found shape {w.shape}")
    w = w.astype(_F64, copy=False)
    lo, _hi = _check_finite("sample_weight", w)
    if lo < 0:
        raise ValueError(f"sample_weight must be >= 0, found {lo}")
    return w


def _apply_weight(v: Array, w: np.ndarray | None) -> Array:
    """``w * v`` (one rounding) with ``0 * anything = 0``, so a zero weight also silences an
    infinite gradient. ``v`` is float64 here, so a float32 result is rounded once more at the end.
    ``v`` is a fresh array of this call: it is overwritten."""
    if w is None:
        return v
    if v.ndim == w.ndim + 1:
        w = w[:, None]
    v = np.multiply(v, w, out=v if isinstance(v, np.ndarray) and v.dtype == _F64 and v.ndim else None)
    if w.size and np.min(w) == 0:
        v = np.where(w == 0, 0.0, v)
    return v


# --------------------------------------------------------------------------- the loss classes


class Kernel:
    """A loss's value, gradient and hessian on checked float64 arrays (``y``, ``r``)."""

    # gradient_hessian may check finiteness on r - y instead of on both inputs (identity links)
    finite_late: bool = False

    def _value(self, y: np.ndarray, r: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def _grad_hess(
        self, y: np.ndarray, r: np.ndarray, bounds: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - overridden
        """``(gradient, hessian)``; ``bounds`` = min and max of ``r``, then of ``y`` (or None)."""
        raise NotImplementedError


class SquaredKernel(Kernel):
    """Half squared error, identity link (scikit-learn ``HalfSquaredError``).

    ``loss = (r - y)**2 / 2``, ``gradient = r - y``, ``hessian = 1``; ``y`` real.
    """

    finite_late = True

    def _value(self, y: np.ndarray, r: np.ndarray) -> np.ndarray:
        d = r - y
        # (d/2)*d keeps d**2/2 finite up to the largest float; 0.5*(d*d) avoids halving a subnormal d
        return np.where(np.abs(d) > 1.0, (0.5 * d) * d, 0.5 * (d * d))

    def _grad_hess(self, y: np.ndarray, r: np.ndarray, bounds: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return _difference(y, r, bounds), np.ones(r.shape)


class AbsoluteKernel(Kernel):
    """Absolute error, identity link (scikit-learn ``AbsoluteError``).

    ``loss = |r - y|``, ``gradient = sign(r - y)`` (``0`` at ``r == y``), ``hessian = 1``: the
    exact hessian is 0 (undefined at the kink); 1 is scikit-learn's ``approx_hessian`` value.
    """

    finite_late = True

    def _value(self, y: np.ndarray, r: np.ndarray) -> np.ndarray:
        return np.abs(r - y)

    def _grad_hess(self, y: np.ndarray, r: np.ndarray, bounds: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if _cpu is not None:
            return _identity_c(_ID_ABSOLUTE, 0.0, y, r, bounds)
        d = _difference(y, r, bounds)
        tie = d == 0
        g = np.copysign(1.0, d, out=d)  # faster than np.sign; the ties are set apart
        if tie.any():
            g[tie] = 0.0
        return g, np.ones(r.shape)


class PinballKernel(Kernel):
    """Pinball (quantile) loss, identity link (scikit-learn ``PinballLoss(quantile)``).

    With ``q = quantile`` in ``(0, 1)`` and ``u = y - r``: ``loss = q*u`` if ``u >= 0`` else
    ``(q - 1)*u``; ``gradient = -q`` if ``r < y``, ``1 - q`` if ``r > y``, ``1/2 - q`` at
    ``r == y``; ``hessian = 1`` (``approx_hessian``, the exact value being 0).
    ``2 * PinballLoss(quantile=0.5)`` is :class:`AbsoluteError`.
    """

    finite_late = True

    def __init__(self, quantile: float = 0.5) -> None:
        self.quantile = float(quantile)

    def _value(self, y: np.ndarray, r: np.ndarray) -> np.ndarray:
        q = self.quantile
        u = y - r
        return np.where(u >= 0, q * u, (1.0 - q) * (-u))

    def _grad_hess(self, y: np.ndarray, r: np.ndarray, bounds: Any = None) -> tuple[np.ndarray, np.ndarray]:
        q = self.quantile
        if _cpu is not None:
            return _identity_c(_ID_PINBALL, q, y, r, bounds)
        d = _difference(y, r, bounds)
        g = np.greater(d, 0).astype(_F64)
        g -= q  # 1 - q above (rounded once, as the constant would be), -q below (exact)
        tie = d == 0
        if tie.any():
            g[tie] = 0.5 - q
        return g, np.ones(r.shape)


class HuberKernel(Kernel):
    """Huber loss with a fixed ``delta``, identity link (scikit-learn ``HuberLoss``).

    With ``d = r - y``: ``loss = d**2/2`` if ``|d| <= delta`` else ``delta*(|d| - delta/2)``;
    ``gradient = d`` if ``|d| <= delta`` else ``delta*sign(d)``; ``hessian = 1`` everywhere (the
    exact hessian is 0 outside ``delta``, where scikit-learn returns 0; see the module notes).
    scikit-learn re-estimates ``delta`` from the data (:func:`huber_delta`); here it is an option.
    """

    finite_late = True

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = float(delta)

    def _value(self, y: np.ndarray, r: np.ndarray) -> np.ndarray:
        d = r - y
        a = np.abs(d)
        dl = self.delta
        inner = np.where(a > 1.0, (0.5 * a) * a, 0.5 * (a * a))
        return np.where(a <= dl, inner, dl * (a - 0.5 * dl))

    def _grad_hess(self, y: np.ndarray, r: np.ndarray, bounds: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if _cpu is not None:
            return _identity_c(_ID_HUBER, self.delta, y, r, bounds)
        d = _difference(y, r, bounds)
        return np.clip(d, -self.delta, self.delta, out=d), np.ones(r.shape)


class TweedieKernel(Kernel):
    """Half Tweedie deviance with log link (scikit-learn ``HalfTweedieLoss(power)``).

    With ``p = power`` and constant terms dropped as scikit-learn does:
    ``loss = exp((2-p) r)/(2-p) - y exp((1-p) r)/(1-p)`` (``p`` not 0, 1, 2);
    ``p = 0``: ``(exp(r) - y)**2 / 2``; ``p = 1``: ``exp(r) - y r``; ``p = 2``: ``r + y exp(-r)``.
    For every ``p``:
    ``gradient = exp((2-p) r) - y exp((1-p) r)`` and
    ``hessian = (2-p) exp((2-p) r) - (1-p) y exp((1-p) r)``.
    ``y`` real for ``p <= 0``, ``y >= 0`` for ``0 < p < 2``, ``y > 0`` for ``p >= 2``. The hessian
    is positive for ``1 <= p <= 2``; outside that range the loss is not convex in ``r`` and the
    exact hessian can be negative.
    """

    def __init__(self, power: float = 1.5) -> None:
        p = self.power = float(power)
        self._a = _dd_scalar(2.0, p)  # 2 - p, exactly
        self._b = _dd_scalar(1.0, p)  # 1 - p, exactly
        self._setup_kernel()

    def _terms(self, y: np.ndarray, r: np.ndarray, ca: tuple[float, float], cb: tuple[float, float]) -> Array:
        """``ca * exp((2-p) r) - cb * y * exp((1-p) r)`` to about 100 bits, then rounded."""
        zero = np.zeros_like(r)
        ah, al = _times(self._a, r)
        bh, bl = _times(self._b, r)
        t1 = _term(ca, np.ones_like(r), zero, ah, al)
        t2 = _term(cb, y, zero, bh, bl)
        return _combine(t1, _neg(t2))

    @staticmethod
    def _exp_of_multiple(c: tuple[float, float], r: np.ndarray) -> tuple[Array, Array, Array]:
        """``exp(c r)`` as :func:`_exp_parts` parts; ``exp(0 r) = 1`` (Gamma, Poisson) costs nothing."""
        if c == (0.0, 0.0):
            return np.ones_like(r), np.zeros_like(r), np.zeros(r.shape, dtype=np.int64)
        return _exp_parts(*_times(c, r))

    def _grad_hess_dd(self, y: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zero, one = np.zeros_like(r), np.ones_like(r)
        ea = self._exp_of_multiple(self._a, r)  # exp((2-p) r)
        eb = self._exp_of_multiple(self._b, r)  # exp((1-p) r)
        g = _combine(_scale_exp(_ONE, one, zero, ea), _neg(_scale_exp(_ONE, y, zero, eb)))
        h = _combine(_scale_exp(self._a, one, zero, ea), _neg(_scale_exp(self._b, y, zero, eb)))
        return g, h

    # Plain float64 where it is within the bound, per chunk. With ``e = exp(r)`` and the positive
    # factor ``F = exp((1-p) r)``: gradient = F (e - y), hessian = F ((2-p) e - (1-p) y).
    # Only ``e - y`` cancels (near the optimum ``e = y``), and the hessian for p outside [1, 2]
    # (then tested as before: its terms a factor 4 apart, else double-double). ``e`` is within
    # 1 ulp (u = 2**-53: a relative 2u); F is computed from the exact product ``(1-p) r``
    # (:meth:`_exp_b`): 2u, or 3u when ``1-p`` is not a power of two. The subtraction adds
    # half an ulp of the result, the final product u. So ``fl(e - y)`` is within
    # ``ulp(e) + ulp(e - y)/2``: 8 ulp of the Poisson gradient while e's binade is at most 2 above
    # that of ``e - y`` (ulp(e) <= 4 ulp(e - y)), i.e. ``|e - y| >= 2**floor(log2 e) / 4``
    # (``_c_fast = 2``); with F, relative bounds: ``2u + (2**(c+1) + 1)u + u = 8u`` (exact F,
    # c = 1) and ``3u + 3u + u`` (c = 0). The convex hessian ``F (a e + |b| y)``: F, then 3u and u
    # for the terms, u for their sum and u for the product: at most 8u. Elsewhere :func:`_exp_mid`
    # (2**-62) gives ``ulp(e - y)/2 + 2**-62 e`` (Sterbenz: ``e - y`` is exact there), within
    # 8 ulp in total while ``e <= K2 |e - y|`` (K2 = 2048, 1024, 512: 5, 7 and 8 ulp with F), then the
    # second tier :func:`_exp_precise` (2**-76, K3 = 2**13 K2), and the double-double path for the
    # rest (a perfect prediction ``r = fl(log y)``).
    def _setup_kernel(self) -> None:
        p = self.power
        self._b_exact = self._b[1] == 0.0 and (self._b[0] == 0.0 or abs(np.frexp(self._b[0])[0]) == 0.5)
        self._c_fast, self._k_mid = (2, 2048.0) if p == 1 else ((1, 1024.0) if self._b_exact else (0, 512.0))
        self._reach = max(1.0, abs(self._b[0]))  # largest |c r| for c in 1, 1-p
        b = self._b[0]
        self._b_split = (b * _SPLIT - (b * _SPLIT - b), b - (b * _SPLIT - (b * _SPLIT - b)))
        self._convex = 1.0 <= p <= 2.0
        # the compiled kernel takes 1 - p as one double (exact) and the same K2 as _kernel
        self._c_params: np.ndarray | None = None
        if self._b[1] == 0.0 and abs(self._b[0]) <= 1.0:
            self._c_params = np.array([self._a[0], self._b[0], self._k_mid, float(self._convex),
                                       float(p == 1), _MID_INV, _MID_C1, _MID_C2])

    def _tame(self, bounds: Any) -> bool:
        """Whether no element can over- or underflow in the float64 paths (then no range masks):
        exponents within +-300, targets within 2**+-400 where their products matter."""
        rlo, rhi, ylo, yhi = bounds
        if max(-rlo, rhi) * self._reach > 300.0 or max(-ylo, yhi) > 2.0**400:
            return False
        return self.power < 2 or ylo >= 2.0**-400

    def _exp_b(self, r: np.ndarray) -> np.ndarray:
        """``F = exp((1-p) r)`` for ``|r| <= 650 / max(1, |1-p|)`` (not called for p = 1): from the
        exact product ``(1-p) r = bh + bl`` (Dekker's TwoProduct, the constant pre-split),
        ``exp(bh) + exp(bh) bl``: within 2u (one exp) when ``1-p`` is a power of two, else 3u."""
        b0, b_lo = self._b
        if self._b_exact:
            return np.exp(b0 * r)
        bh = b0 * r
        b1, b2 = self._b_split
        c = r * _SPLIT
        r1 = c - r
        np.subtract(c, r1, out=r1)  # r1: the high half of r
        r2 = np.subtract(r, r1, out=c)
        bl = b1 * r1
        bl -= bh
        r1 *= b2
        bl += r1
        r1 = b1 * r2
        bl += r1
        r2 *= b2
        bl += r2  # b0 r = bh + bl exactly
        if b_lo:
            r1 = np.multiply(r, b_lo, out=r1)
            bl += r1
        f = np.exp(bh, out=bh)
        bl *= f
        f += bl
        return f

    def _kernel(self, tame: bool, y: np.ndarray, r: np.ndarray, g: np.ndarray, h: np.ndarray
                ) -> tuple[Mask, Mask]:
        p = self.power
        wild = None
        if not tame:
            wild = np.abs(r) > _MID_ARG / self._reach
            r = np.where(wild, 0.0, r)
        if p == 2:
            return self._gamma_kernel(wild, y, r, g, h)
        e = np.exp(r, out=h) if p == 1 else np.exp(r)
        gp = np.subtract(e, y, out=g)
        thr = e.view(np.int64) & _EXP_BITS
        thr -= self._c_fast << 52
        hard = np.abs(gp) < thr.view(_F64)  # |e - y| < 2**(floor(log2 e) - c): outside the bound
        if wild is not None:
            hard &= ~wild
        left = deep = None
        if hard.any():  # middle path on the compacted hard elements
            idx = np.flatnonzero(hard)
            big, small = _exp_mid(r.take(idx))
            d = big - y.take(idx)
            d += small
            gp[idx] = d
            np.abs(d, out=small)
            small *= self._k_mid
            dm = small < big
            if dm.any():
                deep = np.zeros(r.shape, dtype=bool)
                deep[idx[dm]] = True
        if p != 1:
            f = self._exp_b(r)
            g *= f
            if p == 2:
                np.multiply(y, f, out=h)
            else:  # hessian F (a e - b y) with a = 2-p, b = 1-p: both terms > 0 for 1 < p < 2
                ea = np.multiply(e, self._a[0], out=e)
                by = y * self._b[0]
                np.subtract(ea, by, out=h)
                if not self._convex:  # the two hessian terms have the same sign: they may cancel
                    left = _or(left, ~_apart(h, ea, by))
                h *= f
        if wild is not None:
            wild |= ~_in_range(g, h)
            left = _or(left, wild)
        return left, deep

    def _gamma_kernel(self, wild: Mask, y: np.ndarray, r: np.ndarray, g: np.ndarray, h: np.ndarray
                      ) -> tuple[Mask, Mask]:
        """Gamma (p = 2): ``t = y exp(-r)`` is the hessian (within 3u: the exp and the product) and
        ``1 - t`` the gradient, within ``3 ulp(t) + ulp(1 - t)/2``: 8 ulp while t's binade is at
        most one above the gradient's (one exponential instead of two); the others as
        ``exp(-r) (exp(r) - y)`` with the 62-bit :func:`_exp_mid`, as the other powers."""
        f = np.negative(r)
        np.exp(f, out=f)
        np.multiply(y, f, out=h)
        np.subtract(1.0, h, out=g)
        thr = h.view(np.int64) & _EXP_BITS
        thr -= 1 << 52
        hard = np.abs(g) < thr.view(_F64)
        if wild is not None:
            hard &= ~wild
        deep = left = None
        if hard.any():
            idx = np.flatnonzero(hard)
            big, small = _exp_mid(r.take(idx))
            d = big - y.take(idx)
            d += small
            dm = np.abs(d) * self._k_mid < big
            d *= f.take(idx)
            g[idx] = d
            if dm.any():
                deep = np.zeros(r.shape, dtype=bool)
                deep[idx[dm]] = True
        if wild is not None:
            wild |= ~_in_range(g, h)
            left = wild
        return left, deep

    def _precise(self, y: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The gradient of the elements that cancel below 2**-11, from :func:`_exp_precise`:
        ``1.5 + 2**-23 e/|e - y|`` ulp before the factor F; beyond ``K3 = 2**13 K2``, still left."""
        big, p, rest = _exp_precise(r)
        d = big - y
        d += p
        d += rest
        still = np.abs(d) * (self._k_mid * 2.0**13) < big
        if self.power != 1:
            d *= self._exp_b(r)
        return d, still

    def _grad_hess(self, y: np.ndarray, r: np.ndarray, bounds: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if bounds is None:
            bounds = (*_check_finite("raw_prediction", r), *_check_finite("y_true", y))
        if self._c_params is not None and _cpu is not None:
            return self._grad_hess_c(y, r, self._c_params)
        tame = self._tame(bounds)
        return _chunked(lambda *a: self._kernel(tame, *a), self._grad_hess_dd, y, r, self._precise)

    def _grad_hess_c(self, y: np.ndarray, r: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The compiled middle tier (``boost_tweedie`` in ``_backends/_cpu.c``: :func:`_exp_mid` for
        every element, the same error analysis in one loop), then the flagged elements through the
        2**-76 tier (flag 1) and the double-double path (flag 2, and what the 2**-76 tier leaves)."""
        g, h, marked, kind, yf, rf = _run_c(_BOOST_TWEEDIE, y, r, params)
        if marked.size:
            deep = marked[kind == 1]
            left = [marked[kind == 2]]
            if deep.size:
                gp, still = self._precise(yf[deep], rf[deep])
                g[deep] = gp
                left.append(deep[still])
            idx = np.concatenate(left)
            if idx.size:
                g[idx], h[idx] = self._grad_hess_dd(yf[idx], rf[idx])
        return g.reshape(r.shape), h.reshape(r.shape)

    def _value(self, y: np.ndarray, r: np.ndarray) -> np.ndarray:
        p = self.power
        zero = np.zeros_like(r)
        if p == 0:
            d = _combine(_term(_ONE, np.ones_like(r), zero, r, zero), _neg(_term(_ONE, y, zero, zero, zero)))
            return np.where(np.abs(d) > 1.0, (0.5 * d) * d, 0.5 * (d * d))
        if p == 1:  # exp(r) - y r, the product kept exact and scaled (it may exceed the largest float)
            exp_r = _term(_ONE, np.ones_like(r), zero, r, zero)
            fr, er = np.frexp(r)
            return _combine(exp_r, _neg(_scale_exp(_ONE, y, zero, (fr, zero, er.astype(np.int64)))))
        if p == 2:
            return _combine(_term(_ONE, r, zero, zero, zero), _term(_ONE, y, zero, -r, zero))
        inv_a = dd_constant(1 / (Fraction(2) - Fraction(p)))
        inv_b = dd_constant(1 / (Fraction(1) - Fraction(p)))
        return self._terms(y, r, inv_a, inv_b)


class BinomialKernel(Kernel):
    """Binary log loss with logit link (scikit-learn ``HalfBinomialLoss``).

    ``loss = log(1 + exp(r)) - y r = y softplus(-r) + (1 - y) softplus(r)``,
    ``gradient = sigmoid(r) - y``, ``hessian = sigmoid(r) sigmoid(-r) = e/(1 + e)**2`` with
    ``e = exp(-|r|)``; ``y`` in ``[0, 1]``. Unlike scikit-learn's (NaN below ``r = -709``) the
    hessian is finite everywhere: it is ``e**r`` to full accuracy down to the underflow threshold.
    """


    def _value(self, y: np.ndarray, r: np.ndarray) -> np.ndarray:
        sp_pos, sp_neg = softplus_pair(np, r, np.exp(-np.abs(r)))
        oh, ol = _one_minus(y)
        a = np.where(y == 0, 0.0, y * sp_neg)
        b = np.where(oh == 0, 0.0, (oh + ol) * sp_pos)
        return a + b

    # float64 kernel: with e = exp(-|r|) (one exponential), the numerator
    # ``(1 - y) exp(min(r, 0)) - y exp(-max(r, 0))`` is ``(1 - y) - y e`` (r >= 0) or ``(1 - y) e - y``
    # (r < 0). Each term is within ~3u (u = 2**-53: e 2u, the rounded 1 - y and product u each), the
    # denominator ``1 + e`` within 2u; so the gradient keeps 8 ulp while the terms are a factor 7
    # apart (``|t1 - t2| >= 3/4 (t1 + t2)``), which every hard label (one term 0) is; soft labels
    # that cancel take the double-double path. The hessian ``e / (1 + e)**2`` has no cancellation.
    # For |r| <= 690 every intermediate is a normal float or 0.
    def _kernel(self, tame: bool, y: np.ndarray, r: np.ndarray, g: np.ndarray, h: np.ndarray,
                state: dict[str, bool] | None = None) -> tuple[Mask, Mask]:
        if state is not None and state["soft"]:
            return self._kernel_soft(tame, y, r, g, h, state)
        wild = None
        if not tame:
            wild = np.abs(r) > _BIN_ARG
            r = np.where(wild, 0.0, r)
        t1 = np.minimum(r, 0.0)
        np.exp(t1, out=t1)  # exp(min(r, 0))
        t2 = np.maximum(r, 0.0)
        np.negative(t2, out=t2)
        np.exp(t2, out=t2)  # exp(-max(r, 0))
        e = t1 * t2  # exp(-|r|), exactly: one factor is 1 (min/max and exp rather than np.where)
        t1 *= 1.0 - y
        t2 *= y
        np.subtract(t1, t2, out=g)
        t1 += t2
        t1 *= 0.75
        hard = np.abs(g, out=t2) < t1
        if wild is not None:
            hard &= ~wild
        t1 = e + 1.0
        g /= t1
        np.divide(e, t1, out=h)
        h /= t1
        left = None
        if state is not None:  # most of this chunk cancels: the next one skips the plain tier
            state["soft"] = bool(np.count_nonzero(hard) * 2 > hard.size)
        if hard.any():  # soft labels near sigmoid(r): the numerator from the 62-bit exp
            idx = np.flatnonzero(hard)
            d, far, dm = self._soft(y.take(idx), r.take(idx), t1.take(idx))
            g[idx] = d
            if far.any():
                left = np.zeros(r.shape, dtype=bool)
                left[idx[far]] = True
            if dm.any():
                deep = np.zeros(r.shape, dtype=bool)
                deep[idx[dm]] = True
                return _or(left, wild), deep
        return _or(left, wild), None

    def _kernel_soft(self, tame: bool, y: np.ndarray, r: np.ndarray, g: np.ndarray, h: np.ndarray,
                     state: dict[str, bool]) -> tuple[Mask, Mask]:
        """A chunk whose labels mostly cancel (soft labels near ``sigmoid(r)``): every element
        through the 62-bit formula at once, without the plain tier and the compaction (which would
        redo nearly the whole chunk), and without a per-element selection of the two forms.

        With ``e = exp(-|r|)`` and ``n = 1`` for ``r < 0`` (``-0.0`` too), else 0, the numerator of
        ``sigmoid(r) - y`` is ``c0 + c1 e``: ``c0 = (1 - y) - n`` and ``c1 = n - y`` (``r >= 0``:
        ``(1 - y) - y e``; ``r < 0``: ``(1 - y) e - y``). With ``1 - y = oh + ol`` exactly
        (Fast2Sum), ``c0 = ((1 - n) oh - n y) + (1 - n) ol`` and ``c1 = fl(n - y) + n ol``, all
        exact (selections by products with 0 and 1 and sums with a zero term: no per-element
        branch and no ``np.where``, which costs several plain operations each). ``e = A + C`` to 2**-62
        (:func:`_exp_mid`) and ``fl(c1) A`` exact (TwoProduct), so the numerator is within
        ``2**-62`` of its larger term plus two roundings of itself, as :meth:`_soft`'s (and for every
        element, the non-cancelling ones too); ``g = numerator / (1 + e)``, the hessian
        ``e / (1 + e)**2`` from ``e = fl(A + C)`` as the plain tier. The share of elements the plain
        tier could have taken decides the mode of the next chunk."""
        wild = None
        if not tame:
            wild = np.abs(r) > _BIN_ARG
            r = np.where(wild, 0.0, r)
        nf = np.copysign(0.5, r)
        np.subtract(0.5, nf, out=nf)  # 1 where r < 0 (or -0.0), else 0
        oh = 1.0 - y
        ol = 1.0 - oh
        ol -= y  # 1 - y = oh + ol exactly (Fast2Sum: 1 >= y)
        c1 = np.subtract(nf, y)  # -y for r >= 0; fl(1 - y) = oh for r < 0
        pf = 1.0 - nf
        c0 = np.multiply(pf, oh, out=oh)  # (1 - y) or -y: products by 0 and 1 and one zero term, exact
        c0 -= nf * y
        nf *= ol  # the low part of c1 (0 for r >= 0)
        ol *= pf  # the low part of c0 (0 for r < 0)
        x = np.abs(r)
        far = x > _MID_ARG
        np.negative(x, out=x)
        a, c = _exp_mid(x)
        e = np.add(a, c, out=x)  # exp(-|r|)
        p, pe = _two_product(c1, a)
        c *= c1
        pe += c
        nf *= a
        pe += nf
        pe += ol
        t = np.abs(p, out=c)
        np.maximum(t, np.abs(c0, out=nf), out=t)  # the larger term
        p += c0  # exact where the terms cancel (Sterbenz)
        p += pe  # the numerator
        dabs = np.abs(p, out=pe)
        dabs *= 4.0
        state["soft"] = bool(np.count_nonzero(dabs < t * 3.0) * 2 > p.size)
        dabs *= 256.0
        dm = dabs < t
        dm &= ~far
        onep = np.add(e, 1.0, out=c1)
        np.divide(p, onep, out=g)
        np.divide(e, onep, out=h)
        h /= onep
        left = _or(far if far.any() else None, wild)
        return left, (dm if dm.any() else None)

    @staticmethod
    def _soft(ys: np.ndarray, rs: np.ndarray, onep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The gradient of soft labels whose numerator terms are within a factor 7, from the 62-bit
        exponential (``onep = 1 + exp(-|r|)``); also where it is out of range (``far``: the
        double-double path) and where the terms agree to 2**-10 (the 2**-76 tier)."""
        pos = rs >= 0
        oh, ol = two_sum(np, np.ones_like(ys), -ys)  # 1 - y exactly
        # r >= 0: num = (1 - y) - y e; r < 0: num = (1 - y) e - y; D = c e - other
        ch, cl = np.where(pos, ys, oh), np.where(pos, 0.0, ol)
        d, t = _mid_difference(ch, cl, -np.abs(rs), np.where(pos, oh, ys), np.where(pos, ol, 0.0))
        far = np.abs(rs) > _MID_ARG
        dm = (np.abs(d) * 1024.0 < t) & ~far
        np.negative(d, out=d, where=pos)
        d /= onep
        return d, far, dm

    def _grad_hess_c(self, y: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The compiled plain tier (``boost_binomial`` in ``_backends/_cpu.c``), then the soft labels
        that cancel through :meth:`_soft` and the 2**-76 tier, |r| > 650 through double-double.
        None when more than an eighth of the samples need the soft path: the chunked NumPy kernel
        does them faster (in cache-sized pieces)."""
        g, h, marked, kind, yf, rf = _run_c(_BOOST_BINOMIAL, y, r, _BIN_PARAMS)
        if marked.size * 8 > rf.size:
            return None
        if marked.size:
            left = [marked[kind == 2]]
            soft = marked[kind == 1]
            if soft.size:
                ys, rs = yf[soft], rf[soft]
                d, far, dm = self._soft(ys, rs, 1.0 + np.exp(-np.abs(rs)))
                g[soft] = d
                left.append(soft[far])
                deep = soft[dm]
                if deep.size:
                    gp, still = self._precise(yf[deep], rf[deep])
                    g[deep] = gp
                    left.append(deep[still])
            idx = np.concatenate(left)
            if idx.size:
                g[idx], h[idx] = self._grad_hess_dd(yf[idx], rf[idx])
        return g.reshape(r.shape), h.reshape(r.shape)

    def _precise(self, y: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The gradient where the soft label cancels below 2**-10 of the larger term, from
        :func:`_exp_precise` (within 8 ulp down to 2**-22 of it; the rest: still left)."""
        pos = r >= 0
        oh, ol = two_sum(np, np.ones_like(y), -y)
        ch, cl = np.where(pos, y, oh), np.where(pos, 0.0, ol)
        d, t = _precise_difference(ch, cl, -np.abs(r), np.where(pos, oh, y), np.where(pos, ol, 0.0))
        still = np.abs(d) * 2.0**22 < t
        np.negative(d, out=d, where=pos)
        d /= 1.0 + np.exp(-np.abs(r))
        return d, still

    def _grad_hess(self, y: np.ndarray, r: np.ndarray, bounds: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if bounds is None:
            bounds = _check_finite("raw_prediction", r)
        if _cpu is not None:
            if not self._mostly_soft(y, r):
                done = self._grad_hess_c(y, r)
                if done is not None:
                    return done
            # soft labels that cancel: the compiled 62-bit formula on every element
            return _soft_c(_SOFT_BINOMIAL, y, r, self._precise, self._grad_hess_dd)
        tame = max(-bounds[0], bounds[1]) <= _BIN_ARG
        state = {"soft": False}
        return _chunked(lambda yc, rc, gc, hc: self._kernel(tame, yc, rc, gc, hc, state), self._grad_hess_dd,
                        y, r, self._precise)

    _PROBE = 2048

    def _mostly_soft(self, y: np.ndarray, r: np.ndarray) -> bool:
        """Whether the compiled loop would hand more than an eighth of the samples back (soft
        labels that cancel), judged on the first 2048 samples (a wrong guess costs time only)."""
        if r.size < 4 * self._PROBE:
            return False
        yp = y.reshape(-1)[:self._PROBE]
        rp = r.reshape(-1)[:self._PROBE]
        _g, _h, marked, _kind, _y, _r = _run_c(_BOOST_BINOMIAL, yp, rp, _BIN_PARAMS)
        return marked.size * 8 > self._PROBE

    def _grad_hess_dd(self, y: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # sigmoid(r) - y = ((1 - y) exp(min(r, 0)) - y exp(-max(r, 0))) / (1 + exp(-|r|)):
        # the numerator is a difference of two scaled terms, exact to ~100 bits.
        zero = np.zeros_like(r)
        oh, ol = _one_minus(y)
        t1 = _term(_ONE, oh, ol, np.minimum(r, 0.0), zero)
        t2 = _term(_ONE, y, zero, -np.maximum(r, 0.0), zero)
        e = np.exp(-np.abs(r))
        onep = 1.0 + e
        g = _combine(t1, _neg(t2)) / onep
        h = (e / onep) / onep
        return g, h

class ExponentialKernel(Kernel):
    """Exponential (AdaBoost) loss with half-logit link (scikit-learn ``ExponentialLoss``).

    ``loss = y exp(-r) + (1 - y) exp(r)``, ``gradient = (1 - y) exp(r) - y exp(-r)``,
    ``hessian = loss``; ``y`` in ``[0, 1]``; ``y_pred = expit(2 r)``.
    """


    def _pair(self, y: np.ndarray, r: np.ndarray) -> tuple[Any, Any]:
        zero = np.zeros_like(r)
        oh, ol = _one_minus(y)
        return _term(_ONE, oh, ol, r, zero), _term(_ONE, y, zero, -r, zero)

    def _value(self, y: np.ndarray, r: np.ndarray) -> np.ndarray:
        t1, t2 = self._pair(y, r)
        return _combine(t1, t2)

    def _grad_hess_dd(self, y: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t1, t2 = self._pair(y, r)  # two exponentials, shared by the gradient and the hessian
        return _combine(t1, _neg(t2)), _combine(t1, t2)

    # float64 kernel: ``t1 = (1 - y) exp(r)`` (1 - y rounds by half an ulp at most, exact for
    # y >= 1/2; within ~3u in all) and ``t2 = y / exp(r)`` (~4u); the hessian t1 + t2 has no
    # cancellation, the gradient t1 - t2 keeps 8 ulp while the terms are a factor 7 apart (every hard
    # label: one term is 0); the rest takes the double-double path. |r| <= 690: all normal.
    def _kernel(self, tame: bool, y: np.ndarray, r: np.ndarray, g: np.ndarray, h: np.ndarray,
                state: dict[str, bool] | None = None) -> tuple[Mask, Mask]:
        if state is not None and state["soft"]:
            return self._kernel_soft(tame, y, r, g, h, state)
        one_minus = 1.0 - y
        both = one_minus * y
        if not both.any():  # hard labels: one term is 0, g = s exp(s r) and h = exp(s r), s = 1 - 2y
            s = np.subtract(one_minus, y, out=both)  # +-1 exactly
            x = np.multiply(s, r, out=one_minus)  # exact
            np.exp(x, out=h)  # within 0.77 ulp; inf / 0 exactly where the exact value is out of range
            np.multiply(s, h, out=g)
            return None, None
        wild = None
        if not tame:
            wild = np.abs(r) > _BIN_ARG
            r = np.where(wild, 0.0, r)
        t1 = np.exp(r)
        t2 = np.divide(y, t1)
        t1 *= one_minus
        np.subtract(t1, t2, out=g)
        np.add(t1, t2, out=h)
        t1 = h * 0.75
        hard = np.abs(g, out=t2) < t1
        if wild is not None:
            hard &= ~wild
        left = None
        if state is not None:  # most of this chunk cancels: the next one skips the plain tier
            state["soft"] = bool(np.count_nonzero(hard) * 2 > hard.size)
        if hard.any():  # soft labels: g = exp(-r) ((1 - y) exp(2 r) - y) from the 62-bit exp
            idx = np.flatnonzero(hard)
            ys, rs = y.take(idx), r.take(idx)
            oh, ol = two_sum(np, np.ones_like(ys), -ys)
            d, t = _mid_difference(oh, ol, 2.0 * rs, ys, 0.0)
            far = np.abs(rs) > _MID_ARG / 2
            dm = (np.abs(d) * 1024.0 < t) & ~far
            d *= np.exp(-rs)
            g[idx] = d
            if far.any():
                left = np.zeros(r.shape, dtype=bool)
                left[idx[far]] = True
            if dm.any():
                deep = np.zeros(r.shape, dtype=bool)
                deep[idx[dm]] = True
                return _or(left, wild), deep
        return _or(left, wild), None

    def _kernel_soft(self, tame: bool, y: np.ndarray, r: np.ndarray, g: np.ndarray, h: np.ndarray,
                     state: dict[str, bool]) -> tuple[Mask, Mask]:
        """A chunk whose labels mostly cancel: every element at once through the 62-bit formula
        ``g = ((1 - y) exp(2 r) - y) / exp(r)`` (the difference as in :meth:`_kernel`'s soft branch,
        within 2**-62 of the larger term plus two roundings; the division by ``e = fl(exp(r))``
        adds 2.54u), the hessian as the plain tier; no plain gradient, no compaction. The share
        of elements the plain tier could have taken decides the mode of the next chunk."""
        wild = None
        if not tame:
            wild = np.abs(r) > _BIN_ARG
            r = np.where(wild, 0.0, r)
        e = np.exp(r)
        oh = 1.0 - y
        ol = 1.0 - oh
        ol -= y  # 1 - y = oh + ol exactly (Fast2Sum: 1 >= y)
        t2 = np.divide(y, e)
        t1 = np.multiply(e, oh)
        np.add(t1, t2, out=h)
        d, t = _mid_difference(oh, ol, 2.0 * r, y, 0.0)
        far = np.abs(r, out=t1) > _MID_ARG / 2
        dabs = np.abs(d, out=t2)
        state["soft"] = bool(np.count_nonzero(dabs * 4.0 < h * 3.0) * 2 > d.size)
        dabs *= 1024.0
        dm = dabs < t
        dm &= ~far
        np.divide(d, e, out=g)
        left = _or(far if far.any() else None, wild)
        return left, (dm if dm.any() else None)

    @staticmethod
    def _soft_labels(y: np.ndarray) -> bool:
        """Whether the first 2048 labels include a soft one (then the compiled soft kernel runs; hard
        0/1 labels are faster through the chunked one-exponential path; a wrong guess costs time
        only)."""
        yp = y.reshape(-1)[:2048]
        return bool(np.any((1.0 - yp) * yp))

    def _precise(self, y: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The gradient where the soft label cancels below 2**-10, from :func:`_exp_precise`."""
        oh, ol = two_sum(np, np.ones_like(y), -y)
        d, t = _precise_difference(oh, ol, 2.0 * r, y, 0.0)
        still = np.abs(d) * 2.0**22 < t
        d *= np.exp(-r)
        return d, still

    def _grad_hess(self, y: np.ndarray, r: np.ndarray, bounds: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if bounds is None:
            bounds = _check_finite("raw_prediction", r)
        if _cpu is not None and self._soft_labels(y):  # the compiled 62-bit formula on every element
            return _soft_c(_SOFT_EXPONENTIAL, y, r, self._precise, self._grad_hess_dd)
        tame = max(-bounds[0], bounds[1]) <= _BIN_ARG
        state = {"soft": False}
        return _chunked(lambda yc, rc, gc, hc: self._kernel(tame, yc, rc, gc, hc, state), self._grad_hess_dd,
                        y, r, self._precise)


def _row_sum(x: np.ndarray) -> np.ndarray:
    """Row sums of ``x`` (n, k), as accurate as summing in twice the precision and rounding once
    (Ogita, Rump and Oishi's Sum2: a TwoSum cascade with the errors summed alongside; for
    non-negative terms within about u of the sum). Column by column for k <= 64 (a few passes
    over contiguous columns), :func:`accurate_sum`'s pairwise cascade beyond."""
    n, k = x.shape
    if k > 64 or k < 2:
        return np.asarray(accurate_sum(np, x))
    cols = np.ascontiguousarray(x.T)
    s = cols[0].copy()
    c = np.zeros(n)
    t, bv, u = np.empty(n), np.empty(n), np.empty(n)
    for j in range(1, k):
        xj = cols[j]
        np.add(s, xj, out=t)
        np.subtract(t, s, out=bv)
        np.subtract(t, bv, out=u)
        np.subtract(s, u, out=u)  # s - (t - bv)
        c += u
        np.subtract(xj, bv, out=u)
        c += u
        s, t = t, s
    s += c
    return s


class MultinomialKernel(Kernel):
    """Categorical cross-entropy with softmax link (scikit-learn ``HalfMultinomialLoss``).

    ``raw_prediction`` has shape ``(n, K)``, ``y_true`` shape ``(n,)`` with integer labels
    ``0 <= y < K`` (integer-valued floats accepted), ``sample_weight`` shape ``(n,)``. With
    ``p = softmax(r)`` over the classes: ``loss = logsumexp(r) - r[y]``,
    ``gradient[k] = p[k] - [k == y]``, ``hessian[k] = p[k] (1 - p[k])`` (the diagonal of the
    class hessian, as scikit-learn). ``1 - p[k]`` is computed as the sum of the other
    probabilities, so a confident row keeps its tiny gradient and hessian.
    """


    def _parts(self, y: np.ndarray, r: np.ndarray) -> tuple[Any, ...]:
        n, k = r.shape
        top = np.argmax(r, axis=1)
        rows = np.arange(n)
        m = r[rows, top][:, None]
        e = exp_difference(np, r, m)  # exp(r - m) with the subtraction error put back
        s = accurate_sum(np, e)[:, None]
        is_top = np.arange(k)[None, :] == top[:, None]
        others_top = accurate_sum(np, np.where(is_top, 0.0, e))[:, None]  # s - 1 without cancellation
        others = np.where(is_top, others_top, s - e)  # s - e_k >= s/2 for every non-top k
        label = y.astype(np.int64)
        return rows, top, m, e, s, is_top, others, others_top, label

    def _value(self, y: np.ndarray, r: np.ndarray) -> np.ndarray:
        if r.shape[0] == 0:
            return np.zeros(0)
        rows, _top, m, _e, s, _t, _o, others_top, label = self._parts(y, r)
        gap = m[:, 0] - r[rows, label]
        return np.where(gap == 0, np.log1p(others_top[:, 0]), np.log(s[:, 0]) + gap)

    # Chunks of rows, each transposed to (classes, rows) so that every step is one NumPy call on
    # contiguous memory that stays in cache (the row reductions become reductions over the short
    # first axis, which NumPy does as a few vector passes); about 13 passes per element in all.
    _CHUNK_ELEMENTS = 1 << 15
    _FAST_ARG = 300.0  # |r| <= 300: exp(r), max exp(r) and their ratio (>= e**-600) are normal floats
    # beyond 128 classes the running sum's one call per class and chunk costs more than the shifted
    # path's pairwise sums (measured: 1.6x faster at 100 classes, 1.6x slower at 1000)
    _FAST_CLASSES = 128

    def _grad_hess(self, y: np.ndarray, r: np.ndarray, bounds: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if r.shape[0] == 0:
            return np.zeros_like(r), np.zeros_like(r)
        if bounds is None:
            bounds = _check_finite("raw_prediction", r)
        if max(-bounds[0], bounds[1]) > self._FAST_ARG or r.shape[1] > self._FAST_CLASSES:
            return self._grad_hess_shifted(y, r, bounds)
        return self._grad_hess_fast(y, r)

    def _grad_hess_fast(self, y: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient and hessian for raw scores within +-300, chunk by chunk.

        With ``M = max_j fl(exp r_j)`` (the exponential of the row maximum ``m``; exp is monotone),
        ``e_j = fl(fl(exp r_j) / M)``: two exponentials within 0.77 ulp (1.54u relative, u = 2**-53)
        and one division, ``e_j = exp(r_j - m) (1 + a_j)(1 + c_j) / (1 + b)``, ``|a_j|, |b| <=
        1.54u``, ``|c_j| <= u``, ``b`` common to the row; and exactly 1 at the maximum (``M / M``,
        every tie included). No subtraction ``r_j - m``, so no error proportional to ``|r_j - m|``
        (which the shifted formulation must put back with a TwoSum).

        The row sum ``s = sum_j e_j`` is compensated: a leading row of ones keeps every partial sum
        ``P_j`` of the (non-negative, <= 1) terms at least as large as the next term, so each step's
        rounding error is exactly ``e_j - (P_j - P_{j-1})`` (Fast2Sum: the steps, then two
        subtractions and a sum for the whole chunk); with ``c`` their sum, ``A = P_k - 1`` (exact
        for ``P_k >= 2``), ``s = fl(A + c)`` is within ``u + k**2 u**2`` of the sum of the computed
        terms. ``1 - p_j = fl(fl(fl(A - e_j) + c) / s)``: at the maximum ``A - 1`` is exact, so
        ``s - 1`` keeps its digits in a confident row (where it is tiny); elsewhere ``A - e_j >= A/2``
        (no cancellation). With ``S`` the exact sum, ``E_j = exp(r_j - m)``, to first order:

        * ``p_j = e_j / s``: ``|a_j + c_j| (1 - E_j/S)`` + the other terms' errors weighted by
          ``E_i/S`` + ``|b|/S`` + ``u`` (s) + ``u`` (the division): at most
          ``2.54u (2 - (1 + 2 E_j)/S) + 1.54u/S + 2u``, below 7.1u;
        * ``1 - p_j`` and the gradient at the label ``-(1 - p_y)``: the errors of ``e_j`` and ``s``
          enter as ``E_j/(S - E_j) < 1`` times their difference, plus three roundings;
        * the hessian ``p_j (1 - p_j)``: ``(1 - 2t)/(1 - t) |d_e - d_s| + 4u`` (``t = p_j``): the
          shared errors of ``e_j`` and ``s`` cancel in part.

        These are reached only if every rounding of a row is at its maximum in the same direction;
        ``tests/test_boosting.py`` measures the result against mpmath under the 8-ulp contract.
        """
        n, k = r.shape
        # the results are computed class by class, into (classes, rows) arrays: returned transposed
        # (column-major (n, k) arrays; a transposing copy into row-major order would cost ~15 %)
        gt, ht = np.empty((k, n)), np.empty((k, n))
        labels = y.astype(np.intp)
        width = min(n, max(16, self._CHUNK_ELEMENTS // (k + 1)))
        ebuf, pbuf, qbuf = np.empty((k + 1) * width), np.empty((k + 1) * width), np.empty(k * width)
        cols = np.arange(width)
        for i in range(0, n, width):
            j = min(n, i + width)
            w = j - i
            big = ebuf[:(k + 1) * w].reshape(k + 1, w)
            big[0] = 1.0  # the leading row of ones (see above)
            e = big[1:]
            cum = pbuf[:(k + 1) * w].reshape(k + 1, w)
            q = qbuf[:k * w].reshape(k, w)
            np.exp(r[i:j].T, out=e)  # (classes, rows): contiguous rows of the chunk
            top = np.max(e, axis=0)
            e /= top
            cum[0] = 1.0
            for c_ in range(1, k + 1):
                np.add(cum[c_ - 1], big[c_], out=cum[c_])
            np.subtract(cum[1:], cum[:-1], out=q)  # exact: the rounded steps
            np.subtract(e, q, out=q)  # exact: their rounding errors
            c = np.sum(q, axis=0)
            a = np.subtract(cum[k], 1.0, out=top)  # exact
            s = a + c
            np.subtract(a, e, out=q)
            q += c
            q /= s  # 1 - p
            p = np.divide(e, s, out=gt[:, i:j])
            np.multiply(p, q, out=ht[:, i:j])
            lab, at = labels[i:j], cols[:w]
            p[lab, at] = -q[lab, at]
        return gt.T, ht.T

    def _grad_hess_shifted(self, y: np.ndarray, r: np.ndarray, bounds: Any) -> tuple[np.ndarray, np.ndarray]:
        """Any finite raw scores (beyond +-300 too): the exponentials of the shifted scores."""
        # e = exp(r - m) with the row maximum m (the subtraction's rounding error put back: within
        # ~4u); o = the compensated sum of the other terms, s = 1 + o; p = e/s; 1 - p = (s - e)/s
        # (>= 1/2 for every non-top class) or o/s at the top, so a confident row keeps its tiny
        # gradient and hessian.
        n = r.shape[0]
        rows = np.arange(n)
        top = np.argmax(r, axis=1)
        d, err = two_sum(np, r, -r[rows, top][:, None])
        if bounds is None or not math.isfinite(bounds[1] - bounds[0]):  # r - m may overflow to -inf
            err[~np.isfinite(err)] = 0.0
        e = np.exp(d, out=d)
        err += 1.0
        e *= err
        e[rows, top] = 0.0
        o = _row_sum(e)
        e[rows, top] = 1.0
        s = (o + 1.0)[:, None]
        q = np.subtract(s, e, out=err)
        q[rows, top] = o
        q /= s
        p = np.divide(e, s, out=e)
        h = p * q
        label = y.astype(np.intp)
        p[rows, label] = -q[rows, label]
        return p, h


# --------------------------------------------------------------------------- links
# ``link`` maps a prediction (mean, probability) to a raw score, ``inverse`` a raw score back.


def identity_link(y_pred: Any) -> np.ndarray:
    """The prediction itself, as float64 (NaN gives NaN)."""
    return _link_input(y_pred) + 0.0


def identity_inverse(raw_prediction: Any) -> np.ndarray:
    """The raw score itself, as float64."""
    return _inverse_link_input(raw_prediction) + 0.0


def log_link(y_pred: Any) -> np.ndarray:
    """``log(y_pred)`` for ``y_pred >= 0`` (``-inf`` at 0)."""
    p = _link_input(y_pred, 0.0, np.inf, "log")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.log(p))


def log_inverse(raw_prediction: Any) -> np.ndarray:
    """``exp(raw_prediction)``."""
    with np.errstate(over="ignore"):
        return np.asarray(np.exp(_inverse_link_input(raw_prediction)))


def logit_link(y_pred: Any) -> np.ndarray:
    """``logit(y_pred) = log(p) - log(1 - p)`` for ``p`` in ``[0, 1]`` (``-inf`` and ``inf`` at
    the ends)."""
    p = _link_input(y_pred, 0.0, 1.0, "logit")
    with np.errstate(divide="ignore", invalid="ignore"):
        lp, l1p = log_both(np, p)
    return np.asarray(lp - l1p)


def logit_inverse(raw_prediction: Any) -> np.ndarray:
    """``expit(raw_prediction)``."""
    r = _inverse_link_input(raw_prediction)
    e = np.exp(-np.abs(r))
    return np.asarray(np.where(r >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))


def half_logit_link(y_pred: Any) -> np.ndarray:
    """``logit(y_pred) / 2``."""
    return np.asarray(0.5 * logit_link(y_pred))


def half_logit_inverse(raw_prediction: Any) -> np.ndarray:
    """``expit(2 raw_prediction)``."""
    return logit_inverse(2.0 * _inverse_link_input(raw_prediction))


def multinomial_link(y_pred: Any) -> np.ndarray:
    """Symmetric multinomial logit: ``log(p) - mean(log(p))`` over the classes (scikit-learn's
    ``MultinomialLogit.link``, whose raw scores sum to 0 per row)."""
    p = _link_input(y_pred, 0.0, np.inf, "multinomial logit")
    if p.ndim < 1 or p.shape[-1] < 1:
        raise ValueError(f"y_pred must have shape (n_samples, n_classes), found shape {p.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero probability has no raw score: NaN
        lp = np.log(p)
        return np.asarray(lp - np.mean(lp, axis=-1, keepdims=True))


def multinomial_inverse(raw_prediction: Any) -> np.ndarray:
    """``softmax(raw_prediction)`` over the last axis; the raw scores must be finite (with
    several infinite scores in a row the limit is not defined)."""
    r = _inverse_link_input(raw_prediction)
    if r.ndim < 1 or r.shape[-1] < 1:
        raise ValueError(f"raw_prediction must have shape (n_samples, n_classes), found shape {r.shape}")
    _check_finite("raw_prediction", r)
    with np.errstate(over="ignore", invalid="ignore"):  # r - max overflows only where exp(.) = 0
        e = exp_difference(np, r, np.max(r, axis=-1, keepdims=True))
    return np.asarray(e / accurate_sum(np, e)[..., None])
