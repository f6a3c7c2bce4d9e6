"""Arbitrary-precision (mpmath) reference for every losskit loss.

This module is the *independent oracle* of the test suite: it is written from the mathematical
definitions only, never from the library's source.  Every function works on ONE ROW (a sequence
of Python or NumPy floats), converts each input exactly with ``mpmath.mpf(float(x))`` and returns
an ``mpmath.mpf`` computed at ``DPS`` (>= 60) significant digits.  Values may be ``+inf``.

Numerical conventions (shared with the library's documentation):

* ``0 * log 0 = 0``: a zero coefficient kills its term, even when the logarithm is ``-inf``.
* A probability of exactly 0 (or 1 for ``log(1 - p)``) under a positive coefficient gives ``+inf``.
* Categorical probabilities are renormalised (``P = sum_k p_k``), never clipped.

Gradients (:func:`grad`) are obtained by *numerical* differentiation of the row functions at
raised precision, deliberately not from hand-written derivatives, so that they independently
check the library's analytic gradients.  A symmetric central difference is used; at a kink it
yields the mean of the two one-sided slopes (MAE at zero error -> 0, hinge exactly at the margin
``t*f = 1`` -> ``-t/(2n)``), which is the convention losskit documents.

:func:`ulp_error` and :func:`assert_ulp` compare float results with the exact values.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from mpmath import mp, mpf

DPS = 80
"""Working precision (decimal digits) of the value functions."""

GRAD_PRECISIONS = (400, 1000, 2500, 6000)
"""Binary precisions tried in turn by :func:`grad` until its noise estimate is small enough."""

Row = Sequence[Any]
Terms = Callable[[Any, list[mpf], Mapping[str, Any]], list[mpf]]


class DomainError(ValueError):
    """An input lies outside the domain of a loss (e.g. a negative probability)."""


# --------------------------------------------------------------------------- helpers


def to_mpf(x: Any) -> mpf:
    """Convert a Python/NumPy float (or int) exactly to an mpf."""
    return mpf(float(x))


def _row(xs: Row) -> list[mpf]:
    """Convert a row exactly to a list of mpf."""
    return [to_mpf(x) for x in xs]


def _exact_sub(a: mpf, b: mpf) -> mpf:
    """``a - b`` without rounding."""
    return mpmath.fsub(a, b, exact=True)


def _xlog(c: mpf, p: mpf) -> mpf:
    """``c * log(p)`` with ``0 * log(anything) = 0`` and ``c * log(0) = -inf`` for ``c > 0``."""
    if c == 0:
        return mpf(0)
    if p < 0:
        raise DomainError("negative probability")
    if p == 0:
        return mpf("-inf")
    return c * mpmath.log(p)


def _xlog1m(c: mpf, p: mpf) -> mpf:
    """``c * log(1 - p)`` with the same zero-coefficient convention as :func:`_xlog`."""
    if c == 0:
        return mpf(0)
    if p > 1:
        raise DomainError("probability above one")
    if p == 1:
        return mpf("-inf")
    return c * mpmath.log1p(-p)


def _xlog1pexp(c: mpf, z: mpf) -> mpf:
    """``c * log(1 + exp(z))`` (softplus), exact to working precision for any ``z``."""
    if c == 0:
        return mpf(0)
    return c * mpmath.log1p(mpmath.exp(z))


def _xlogratio(c: mpf, num: mpf, den: mpf) -> mpf:
    """``c * log(num / den)``, accurate for ratios near 1 and for tiny ratios alike.

    Near 1 it is ``log1p((num - den) / den)`` with an exact subtraction (no cancellation);
    elsewhere ``log(num / den)`` (``log1p`` of a value rounded to -1 would give ``-inf``).
    """
    if c == 0:
        return mpf(0)
    if den < 0 or num < 0:
        raise DomainError("negative probability")
    if den == 0:
        return mpf("inf")
    if 2 * num > den and num < 2 * den:
        return c * mpmath.log1p(_exact_sub(num, den) / den)
    return c * mpmath.log(num / den)


def _smooth_binary(t: mpf, ls: mpf) -> mpf:
    """Exact ``t * (1 - ls) + ls / 2``."""
    scaled = mpmath.fmul(t, _exact_sub(mpf(1), ls), exact=True)
    return mpmath.fadd(scaled, mpmath.ldexp(ls, -1), exact=True)


def _smooth_categorical(t: list[mpf], ls: mpf) -> list[mpf]:
    """``t_j * (1 - ls) + ls / K`` (exact except the division by K)."""
    k = len(t)
    return [mpmath.fmul(tj, _exact_sub(mpf(1), ls), exact=True) + ls / k for tj in t]


def _logsumexp_minus(x: list[mpf]) -> list[mpf]:
    """``lse(x) - x_j`` for every j, each accurate to working precision (no cancellation)."""
    jmax = max(range(len(x)), key=lambda j: x[j])
    m = x[jmax]
    rest = mpmath.fsum(mpmath.exp(xk - m) for k, xk in enumerate(x) if k != jmax)
    log_total = mpmath.log1p(rest)
    return [(m - xj) + log_total for xj in x]


def _renormalised_neglog(p: list[mpf], j: int, c: mpf) -> mpf:
    """``c * (log P - log p_j)`` with ``P = sum(p)``, as ``c * log1p(sum_{k!=j} p_k / p_j)``."""
    if c == 0:
        return mpf(0)
    if p[j] < 0:
        raise DomainError("negative probability")
    if p[j] == 0:
        return mpf("inf")
    others = mpmath.fsum(pk for k, pk in enumerate(p) if k != j)
    return c * mpmath.log1p(others / p[j])


# --------------------------------------------------------------------------- per-term forms
# Each ``_*_terms(t, p, opts)`` returns the list of terms whose mean (or sum) is the row value.
# ``t`` is already converted (list of mpf, or an int label for scce); ``p`` is a list of mpf.


def _mse_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Squared errors ``(p_i - t_i)^2``, exact."""
    diffs = [_exact_sub(pi, ti) for ti, pi in zip(t, p, strict=True)]
    return [mpmath.fmul(d, d, exact=True) for d in diffs]


def _mae_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Absolute errors ``|p_i - t_i|``, exact."""
    return [abs(_exact_sub(pi, ti)) for ti, pi in zip(t, p, strict=True)]


def _bce_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Binary cross-entropy terms, on probabilities or logits."""
    ls = to_mpf(opts.get("label_smoothing", 0.0))
    out = []
    for ti, pi in zip(t, p, strict=True):
        a = _smooth_binary(ti, ls)
        b = _exact_sub(mpf(1), a)
        if opts.get("from_logits", False):
            out.append(_xlog1pexp(a, -pi) + _xlog1pexp(b, pi))
        else:
            out.append(-(_xlog(a, pi) + _xlog1m(b, pi)))
    return out


def _cce_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Categorical cross-entropy terms ``t'_j * (lse(x) - x_j)`` or ``t'_j*(log P - log p_j)``."""
    ts = _smooth_categorical(t, to_mpf(opts.get("label_smoothing", 0.0)))
    if opts.get("from_logits", False):
        neglogsoftmax = _logsumexp_minus(p)
        return [mpf(0) if c == 0 else c * v for c, v in zip(ts, neglogsoftmax, strict=True)]
    return [_renormalised_neglog(p, j, c) for j, c in enumerate(ts)]


def _scce_terms(k: int, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Sparse categorical cross-entropy: the single term of class ``k``."""
    if opts.get("from_logits", False):
        return [_logsumexp_minus(p)[k]]
    return [_renormalised_neglog(p, k, mpf(1))]


def _hinge_terms(t: list[mpf], f: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Hinge terms ``max(0, 1 - t_i f_i)`` (labels already in {-1, 1})."""
    out = []
    for ti, fi in zip(t, f, strict=True):
        margin = 1 - ti * fi
        out.append(margin if margin > 0 else mpf(0))
    return out


def _kld_terms(t: list[mpf], p: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Kullback-Leibler terms ``t_j * log(t_j / p_j)``."""
    for tj in t:
        if tj < 0:
            raise DomainError("negative target")
    return [_xlogratio(tj, tj, pj) for tj, pj in zip(t, p, strict=True)]


@dataclass(frozen=True)
class _Spec:
    """How a loss is assembled from its terms."""

    terms: Terms
    mean: bool  # row value = mean of the terms (else their sum)
    separable: bool  # term j depends on p_j only
    integer_target: bool = False


def _evaluate(spec: _Spec, t: Any, p: Row, opts: Mapping[str, Any]) -> mpf:
    """Row value of ``spec`` at ``DPS`` digits."""
    with mp.workdps(DPS):
        target = int(t) if spec.integer_target else _row(t)
        terms = spec.terms(target, _row(p), opts)
        total = mpmath.fsum(terms)
        return total / len(terms) if spec.mean else +total


# --------------------------------------------------------------------------- public losses


def mse(t: Row, p: Row) -> mpf:
    """Mean squared error of one row: ``(1/n) sum (p_i - t_i)^2``."""
    return _evaluate(_SPECS["mse"], t, p, {})


def mae(t: Row, p: Row) -> mpf:
    """Mean absolute error of one row: ``(1/n) sum |p_i - t_i|``."""
    return _evaluate(_SPECS["mae"], t, p, {})


def bce(t: Row, p: Row, from_logits: bool = False, label_smoothing: float = 0.0) -> mpf:
    """Binary cross-entropy of one row (mean of the element terms).

    With ``t' = t (1 - ls) + ls / 2`` (exact), probabilities give
    ``-(t' log p + (1 - t') log(1 - p))`` and logits ``x`` give
    ``t' log(1 + e^-x) + (1 - t') log(1 + e^x)``.
    """
    opts = {"from_logits": from_logits, "label_smoothing": label_smoothing}
    return _evaluate(_SPECS["bce"], t, p, opts)


def cce(t: Row, p: Row, from_logits: bool = False, label_smoothing: float = 0.0) -> mpf:
    """Categorical cross-entropy of one row, ``t' = t (1 - ls) + ls / K``.

    Logits: ``sum_j t'_j (lse(x) - x_j)``.  Probabilities (renormalised, not clipped):
    ``sum_j t'_j (log P - log p_j)`` with ``P = sum_k p_k``.
    """
    opts = {"from_logits": from_logits, "label_smoothing": label_smoothing}
    return _evaluate(_SPECS["cce"], t, p, opts)


def scce(k: int, p: Row, from_logits: bool = False) -> mpf:
    """Sparse categorical cross-entropy of one row with integer label ``k``."""
    return _evaluate(_SPECS["scce"], k, p, {"from_logits": from_logits})


def hinge(t: Row, f: Row) -> mpf:
    """Hinge loss of one row, labels already in {-1, 1}: ``(1/n) sum max(0, 1 - t_i f_i)``."""
    return _evaluate(_SPECS["hinge"], t, f, {})


def kld(t: Row, p: Row) -> mpf:
    """Kullback-Leibler divergence of one row: ``sum_j t_j log(t_j / p_j)``."""
    return _evaluate(_SPECS["kld"], t, p, {})


_SPECS: dict[str, _Spec] = {
    "mse": _Spec(_mse_terms, mean=True, separable=True),
    "mae": _Spec(_mae_terms, mean=True, separable=True),
    "bce": _Spec(_bce_terms, mean=True, separable=True),
    "cce": _Spec(_cce_terms, mean=False, separable=False),
    "scce": _Spec(_scce_terms, mean=False, separable=False, integer_target=True),
    "hinge": _Spec(_hinge_terms, mean=True, separable=True),
    "kld": _Spec(_kld_terms, mean=False, separable=True),
}
_FUNCTIONS: dict[Callable[..., mpf], str] = {
    mse: "mse",
    mae: "mae",
    bce: "bce",
    cce: "cce",
    scce: "scce",
    hinge: "hinge",
    kld: "kld",
}


# --------------------------------------------------------------------------- gradients


def _terms_or_none(spec: _Spec, t: Any, p: list[mpf], opts: Mapping[str, Any]) -> list[mpf] | None:
    """Terms of the row, or None when ``p`` is outside the loss's domain."""
    try:
        return spec.terms(t, p, opts)
    except DomainError:
        return None


def _all_finite(pairs: list[tuple[mpf, mpf]]) -> bool:
    """True when every term of every pair is finite."""
    return all(mpmath.isfinite(x) and mpmath.isfinite(y) for x, y in pairs)


def _one_sided(center: list[mpf] | None, side: list[mpf], step: mpf) -> tuple[mpf, mpf] | None:
    """Slope ``(f(x+step) - f(x)) / step`` when the other side left the domain.

    Returns (slope, noise scale) or None.  An infinite centre with a finite side gives an
    infinite slope of the right sign (e.g. ``-inf`` for ``-log p`` at ``p = 0``).
    """
    if center is None:
        return None
    pairs = list(zip(side, center, strict=True))
    if all(mpmath.isfinite(s) for s, _ in pairs) and any(mpmath.isinf(c) for _, c in pairs):
        sign = -1 if any(c == mpf("inf") for _, c in pairs) else 1
        return sign * mpf("inf") * (1 if step > 0 else -1), mpf(0)
    if not _all_finite(pairs):
        return None
    diff = mpmath.fsum(s - c for s, c in pairs)
    scale = mpmath.fsum(max(abs(s), abs(c)) for s, c in pairs)
    return diff / step, scale / abs(step)


def _partial_at(
    spec: _Spec, t: Any, p: list[mpf], i: int, opts: Mapping[str, Any], prec: int, zero_scale: mpf
) -> tuple[mpf, mpf]:
    """Central-difference partial derivative of the row *sum of terms* w.r.t. ``p[i]``.

    Works at ``prec + 40`` bits with relative step ``h = 2^(-prec/2)`` (absolute step
    ``h * zero_scale`` when ``p[i] == 0``); the perturbed points are exact.  Returns the
    derivative and an estimate of its rounding noise.
    """
    with mp.workprec(prec + 40):
        h = mpmath.ldexp(mpf(1), -(prec // 2))
        step = p[i] * h if p[i] != 0 else h * zero_scale
        plus, minus = list(p), list(p)
        plus[i] = mpmath.fadd(p[i], step, exact=True)
        minus[i] = _exact_sub(p[i], step)
        t_plus = _terms_or_none(spec, t, plus, opts)
        t_minus = _terms_or_none(spec, t, minus, opts)
        if t_plus is None and t_minus is None:
            return mpf("nan"), mpf(0)
        if t_plus is None or t_minus is None:
            center = _terms_or_none(spec, t, list(p), opts)
            side, s = (t_plus, step) if t_plus is not None else (t_minus, -step)
            res = _one_sided(center, side, s)
            if res is None:
                return mpf("nan"), mpf(0)
            slope, scale = res
            return slope, scale * mpmath.ldexp(mpf(1), -prec)
        if not all(mpmath.isfinite(v) for v in t_plus + t_minus):
            return mpf("nan"), mpf(0)  # the row value is infinite: no derivative
        pairs = list(zip(t_plus, t_minus, strict=True))
        diff = mpmath.fsum(a - b for a, b in pairs)
        scale = mpmath.fsum(max(abs(a), abs(b)) for a, b in pairs)
        noise = scale * mpmath.ldexp(mpf(1), -prec) / (2 * abs(step))
        return diff / (2 * step), noise


def _zero_scale(t: Any, p: list[mpf]) -> mpf:
    """Absolute step scale for a zero input: the smallest non-zero magnitude in the row, or 1.

    This keeps the step far inside any kink (e.g. MAE with ``p = 0`` and a tiny target).
    """
    values = list(p) if isinstance(t, int) else list(p) + list(t)
    mags = [abs(v) for v in values if v != 0 and mpmath.isfinite(v)]
    return min([mpf(1), *mags])


def _partial(spec: _Spec, t: Any, p: list[mpf], i: int, opts: Mapping[str, Any]) -> mpf:
    """Partial derivative w.r.t. ``p[i]``, raising the precision until the noise is negligible.

    Accepted when the noise estimate is below ``2^-150`` of the derivative, or below 1e-340
    in absolute value (far under the smallest float64 subnormal).
    """
    zero_scale = _zero_scale(t, p)
    value = mpf("nan")
    for prec in GRAD_PRECISIONS:
        value, noise = _partial_at(spec, t, p, i, opts, prec, zero_scale)
        if not mpmath.isfinite(value):
            return value
        if noise <= max(abs(value) * mpmath.ldexp(mpf(1), -150), mpf("1e-340")):
            return value
    raise ArithmeticError(f"numerical gradient did not converge (index {i}, last {value})")


def grad(fn: Callable[..., mpf], t: Any, p: Row, **opts: Any) -> list[mpf]:
    """Gradient of one of the core row functions above; see :func:`row_grad`."""
    return row_grad(_SPECS[_FUNCTIONS[fn]], t, p, opts)


# Public names for the catalog oracles (tests/oracle/families/*.py): a loss is its terms function
# plus how the terms combine.
Spec = _Spec
SPECS = _SPECS
"""The tutorial's seven as specs, keyed by their short names (``families/core.py``)."""


def row_value(spec: _Spec, t: Any, p: Row, opts: Mapping[str, Any], inputs: Collection[str] = ()) -> mpf:
    """Row value of a loss given as a :class:`Spec`; the rows of its extra input arrays travel in
    ``opts`` under the names ``inputs``."""
    return _evaluate(spec, t, p, _exact_rows(opts, _rowwise(inputs)))


def _rowwise(inputs: Collection[str]) -> frozenset[str]:
    return ROW_ALIGNED_OPTIONS | frozenset(inputs)


def _exact_rows(opts: Mapping[str, Any], rowwise: Collection[str]) -> dict[str, Any]:
    """Options with every row-aligned value (a list/array) converted exactly to mpf."""
    return {k: (_row(v) if isinstance(v, list | tuple | np.ndarray) and k in rowwise else v)
            for k, v in opts.items()}


ROW_ALIGNED_OPTIONS = frozenset({"weight", "class_weight", "pos_weight"})
"""Per-class weight options: aligned with the row of ``p``, so sliced with it for separable losses
(the extra input arrays are named by the caller)."""


def row_grad(spec: _Spec, t: Any, p: Row, opts: Mapping[str, Any], inputs: Collection[str] = ()
             ) -> list[mpf]:
    """Gradient of the row value ``fn(t, p, **opts)`` with respect to every ``p_i``.

    Numerical central differences at raised precision (see :func:`_partial_at`), never an
    analytic formula.  The precision is raised until the rounding noise of all terms is
    negligible; for separable losses only the term of ``p_i`` is evaluated (the others cancel
    exactly).  The result is exact to about 45 digits, or below 1e-340 in absolute value.
    Where ``p_i`` sits on the border of the domain (e.g. a zero probability), a one-sided
    difference is used; a gradient that cannot be differentiated numerically (an infinite row
    value, infinite inputs) is NaN.
    Kinks get the symmetric convention: MAE at zero error -> 0, hinge at ``t f = 1`` ->
    ``-t / (2n)``.
    """
    with mp.workdps(DPS):
        target = int(t) if spec.integer_target else _row(t)
        pm = _row(p)
        rowwise = _rowwise(inputs)
        opts = _exact_rows(opts, rowwise)
        n = len(pm) if spec.mean else 1
        out = []
        for i in range(len(pm)):
            if spec.separable:
                assert not isinstance(target, int)
                sliced = {k: (v[i : i + 1] if k in rowwise and isinstance(v, list) else v)
                          for k, v in opts.items()}
                g = _partial(spec, target[i : i + 1], pm[i : i + 1], 0, sliced)
            else:
                g = _partial(spec, target, pm, i, opts)
            out.append(g / n)
        return out


# --------------------------------------------------------------------------- comparisons


def _mp_array(exact: Any) -> np.ndarray:
    """Object array of mpf from nested lists/arrays of mpf (or floats)."""
    arr = np.empty(np.shape(np.asarray(exact, dtype=object)), dtype=object)
    flat = np.asarray(exact, dtype=object).reshape(-1)
    arr.reshape(-1)[:] = [e if isinstance(e, mpf) else mpf(e) for e in flat]
    return arr


def is_normal(e: mpf, dtype: Any) -> bool:
    """True when ``e`` is a normal number of ``dtype`` (non-zero, finite, not out of range)."""
    fi = np.finfo(dtype)
    if not mpmath.isfinite(e) or e == 0:
        return False
    return mpf(float(fi.smallest_normal)) <= abs(e) <= mpf(float(fi.max))


def ulp_error(computed: Any, exact: Any, dtype: Any) -> np.ndarray:
    """Elementwise ``|computed - exact| / |exact| / eps(dtype)``, evaluated in mpmath.

    NaN where ``exact`` is not a normal number of ``dtype`` (zero, subnormal, beyond ``max``,
    infinite or NaN).  Where ``exact`` is normal but ``computed`` is not finite, ``inf``.
    """
    comp = np.asarray(computed)
    ex = _mp_array(exact)
    if comp.shape != ex.shape and comp.ndim > ex.ndim and comp.shape[:1] == ex.shape[:1] \
            and comp.size == ex.size:  # rows given flat for a sample that is a block (CTC's (T, C))
        ex = ex.reshape(comp.shape)
    if comp.shape != ex.shape:
        raise ValueError(f"shape mismatch: computed {comp.shape} vs exact {ex.shape}")
    eps = mpf(float(np.finfo(dtype).eps))
    out = np.full(comp.shape, np.nan)
    with mp.workdps(40):
        for idx in np.ndindex(comp.shape):
            e = ex[idx]
            if not is_normal(e, dtype):
                continue
            c = float(comp[idx])
            if not np.isfinite(c):
                out[idx] = np.inf
                continue
            out[idx] = float(abs(mpf(c) - e) / abs(e) / eps)
    return out


def _violation(c: float, e: mpf, scale: Any, dtype: Any, max_ulp: float) -> float:
    """How badly one element breaks the rules, in units of ``max_ulp`` (> 1 means failure).

    Rules: ``scale`` given -> ``|c - e| <= max_ulp * eps * |scale|``; ``e`` normal -> ulp rule;
    ``e == 0`` -> ``c == 0``; ``|e| > max`` or infinite -> ``c`` is the same infinity;
    ``0 < |e| < smallest_normal`` -> ``c == 0`` (flush to zero) or ``|c - e| <= max_ulp``
    subnormal spacings (``eps * smallest_normal``).
    """
    fi = np.finfo(dtype)
    eps = mpf(float(fi.eps))
    if mpmath.isnan(e):
        raise ValueError("the oracle has no value here (NaN)")
    if np.isnan(c):
        return float("inf")
    if scale is not None and mpmath.isfinite(e):
        if not np.isfinite(c):
            return float("inf")
        return float(abs(mpf(c) - e) / (max_ulp * eps * abs(mpf(scale))))
    if mpmath.isinf(e) or abs(e) > mpf(float(fi.max)):
        return 0.0 if (np.isinf(c) and (c > 0) == (e > 0)) else float("inf")
    if e == 0:
        return 0.0 if c == 0 else float("inf")
    if not np.isfinite(c):
        return float("inf")
    if abs(e) < mpf(float(fi.smallest_normal)):
        if c == 0:
            return 0.0  # flush-to-zero (XLA on CPU) is accepted for subnormal results
        spacing = eps * mpf(float(fi.smallest_normal))
        return float(abs(mpf(c) - e) / (max_ulp * spacing))
    return float(abs(mpf(c) - e) / abs(e) / eps / max_ulp)


def _fmt_row(values: Any) -> str:
    """Readable, exact representation of one input row."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return repr(arr.tolist())
    return "[" + ", ".join(repr(float(v)) for v in arr.reshape(-1)) + "]"


def _fmt_exact(values: Any) -> str:
    """Exact values with 20 significant digits."""
    flat = np.asarray(values, dtype=object).reshape(-1)
    return "[" + ", ".join(mpmath.nstr(v, 20) for v in flat) + "]"


def assert_ulp(
    computed: Any,
    exact: Any,
    dtype: Any,
    *,
    max_ulp: float = 8.0,
    inputs: Mapping[str, Any] | None = None,
    scale: Any = None,
    what: str = "",
) -> None:
    """Assert the 8-ulp contract elementwise and report the worst offending row on failure.

    * where ``exact`` is a normal number of ``dtype``: error <= ``max_ulp`` ulp;
    * where ``exact`` is 0: ``computed`` is exactly 0;
    * where ``exact`` is +-inf or beyond ``finfo.max``: ``computed`` is the same infinity;
    * where ``exact`` is subnormal (not covered by the 8-ulp contract): ``computed`` is 0
      (flush-to-zero, as XLA does on CPU) or within ``max_ulp`` subnormal spacings;
    * where ``scale`` (object array, same shape, entries None or mpf) is not None: the
      error is measured relative to ``|scale|`` instead (used for the documented soft-target
      exception: ulps of the larger of two cancelling terms);
    * ``computed`` must never be NaN.

    ``inputs`` maps names to arrays whose first axis is the row axis (printed on failure).
    """
    comp = np.asarray(computed)
    ex = _mp_array(exact)
    if comp.shape != ex.shape and comp.ndim > ex.ndim and comp.shape[:1] == ex.shape[:1] \
            and comp.size == ex.size:  # rows given flat for a sample that is a block (CTC's (T, C))
        ex = ex.reshape(comp.shape)
    if comp.shape != ex.shape:
        raise AssertionError(f"{what}: shape {comp.shape} != expected {ex.shape}")
    sc = np.full(comp.shape, None, dtype=object) if scale is None else np.asarray(scale, object)
    viol = np.zeros(comp.shape)
    with mp.workdps(40):
        for idx in np.ndindex(comp.shape):
            viol[idx] = _violation(float(comp[idx]), ex[idx], sc[idx], dtype, max_ulp)
    bad = viol > 1.0
    if not bad.any():
        return
    worst = np.unravel_index(int(np.argmax(viol)), viol.shape)
    row = worst[0] if comp.ndim else ()
    ulp = ulp_error(comp, ex, dtype)
    lines = [
        f"{what}: {int(bad.sum())} of {bad.size} elements break the {max_ulp}-ulp contract "
        f"(dtype {np.dtype(dtype).name}); worst at index {tuple(int(i) for i in worst)} "
        f"({viol[worst] * max_ulp:.4g} ulp-equivalent, ulp_error={ulp[worst]:.4g})",
    ]
    for name, arr in (inputs or {}).items():
        lines.append(f"  {name}[{row}] = {_fmt_row(np.asarray(arr)[row])}")
    lines.append(f"  computed[{row}] = {_fmt_row(comp[row])}")
    lines.append(f"  exact[{row}]    = {_fmt_exact(ex[row])}")
    if sc[worst] is not None:
        lines.append(f"  scale (larger cancelling term) = {mpmath.nstr(sc[worst], 20)}")
    raise AssertionError("\n".join(lines))


def violation_ulp(computed: Any, exact: Any, dtype: Any) -> np.ndarray:
    """Elementwise error in ulp-equivalents under the rules of :func:`assert_ulp` (``inf`` for
    a wrong zero/infinity or a NaN); used by the accuracy benchmark."""
    comp = np.asarray(computed, dtype=np.float64)
    ex = _mp_array(exact)
    out = np.zeros(comp.shape)
    with mp.workdps(40):
        for idx in np.ndindex(comp.shape):
            out[idx] = _violation(float(comp[idx]), ex[idx], None, dtype, 1.0)
    return out


# The oracle row function of each of the tutorial's seven (the edge-choice tests of test_oracle.py).
ORACLE = {"mse": mse, "mae": mae, "bce": bce, "cce": cce, "scce": scce, "hinge": hinge, "kld": kld}
