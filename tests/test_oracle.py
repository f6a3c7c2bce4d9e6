"""Oracle suite: every losskit loss against the mpmath reference, to 8 ulp.

Parametrised over loss x regime x dtype x options (see ``oracle/cases.py``).  Every per-sample
value and every per-sample gradient element (``reduction="none"``) must be within 8 ulp of the
exact value wherever that is a normal number of the dtype; exact zeros must come out as 0 and
overflows as inf; subnormal results may be flushed to zero (see
:func:`oracle.reference.assert_ulp`).  The output dtype must be the input dtype.  Besides the
NumPy regimes: reduced values/gradients, PyTorch and JAX inputs on the hard regimes, a
deterministic Hypothesis search over random rows, and the documented edge choices (zero
probabilities, 0 log 0, infinite logits, kinks).

Documented exception (encoded as its own, weaker assertion): for SOFT targets (effective target
``t'`` not exactly 0 or 1) the gradient of bce/cce near its zero is the difference of two
terms, e.g. ``sigmoid(x) - t'`` for bce from logits.  Where the two terms are within a factor 2
of each other (the exact gradient is at most half the larger term), the error is bounded by
8 ulp of the larger term instead of 8 ulp of the difference.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import mpmath
import numpy as np
import pytest
from conftest import backend_arrays
from hypothesis import given, settings
from hypothesis import strategies as st
from mpmath import mpf
from oracle import cases as C
from oracle import reference as R

import losskit

MAX_ULP = 8.0

LIBRARY = R.LOSSKIT_NAMES
ORACLE = R.ORACLE
CASES: dict[str, C.Case] = {c.id: c for c in C.all_cases()}
DTYPES = [np.float32, np.float64]


# --------------------------------------------------------------------------- helpers


def lib_function(loss: str) -> Any:
    """The per-sample function of losskit for a loss key."""
    return getattr(losskit, LIBRARY[loss][0])


def lib_class(loss: str, **kwargs: Any) -> Any:
    """An instance of the losskit class for a loss key."""
    return getattr(losskit, LIBRARY[loss][1])(**kwargs)


@functools.cache
def oracle(case_id: str) -> tuple[list[mpf], list[list[mpf]]]:
    """Exact per-row values and gradients of a case (cached per process)."""
    case = CASES[case_id]
    fn = ORACLE[case.loss]
    targets = case.oracle_targets
    values, grads = [], []
    for t, p in zip(targets, case.y_pred, strict=True):
        values.append(fn(t, p, **case.options))
        grads.append(R.grad(fn, t, p, **case.options))
    return values, grads


def inputs_of(case: C.Case) -> dict[str, np.ndarray]:
    """Inputs printed on failure."""
    return {"y_true": case.y_true, "y_pred": case.y_pred}


def _effective_targets(case: C.Case, row: int) -> list[mpf]:
    """Smoothed targets t' of a bce/cce row, in mpmath."""
    ls = mpf(float(case.label_smoothing))
    t = [mpf(float(v)) for v in case.y_true[row]]
    denom = 2 if case.loss == "bce" else len(t)
    return [tj * (1 - ls) + ls / denom for tj in t]


def _cancelling_terms(case: C.Case, row: int) -> list[tuple[mpf, mpf]]:
    """The two terms whose difference is each gradient element of a bce/cce row (by hand).

    bce logits: sigmoid(x)/n vs t'/n; bce probabilities: t'/(p n) vs (1-t')/((1-p) n);
    cce logits: softmax_j * sum(t') vs t'_j; cce probabilities: sum(t')/P vs t'_j/p_j.
    """
    tp = _effective_targets(case, row)
    p = [mpf(float(v)) for v in case.y_pred[row]]
    n = len(p)
    if case.loss == "bce" and case.from_logits:
        return [(1 / (1 + mpmath.exp(-x)) / n, t / n) for t, x in zip(tp, p, strict=True)]
    if case.loss == "bce":
        return [
            (t / pj / n if t else mpf(0), (1 - t) / (1 - pj) / n if t != 1 else mpf(0))
            for t, pj in zip(tp, p, strict=True)
        ]
    total = mpmath.fsum(tp)
    if case.from_logits:
        m = max(p)
        e = [mpmath.exp(x - m) for x in p]
        s = mpmath.fsum(e)
        return [(ej / s * total, t) for ej, t in zip(e, tp, strict=True)]
    big_p = mpmath.fsum(p)
    return [(total / big_p, t / pj if t else mpf(0)) for t, pj in zip(tp, p, strict=True)]


def soft_target_scale(case: C.Case, exact: list[list[mpf]]) -> np.ndarray | None:
    """Scale of the documented soft-target exception, or None where the strict rule applies.

    Applies to bce/cce gradient elements whose effective target is not 0 or 1 and whose exact
    value is at most half the larger of its two cancelling terms.
    """
    if case.loss not in ("bce", "cce"):
        return None
    out = np.full(case.y_pred.shape, None, dtype=object)
    with mpmath.mp.workdps(40):
        for r in range(case.y_pred.shape[0]):
            tp = _effective_targets(case, r)
            for j, (a, b) in enumerate(_cancelling_terms(case, r)):
                big = max(abs(a), abs(b))
                if tp[j] not in (0, 1) and abs(exact[r][j]) <= big / 2:
                    out[r, j] = big
    return out


def check_dtype(arr: Any, case_dtype: Any, what: str) -> np.ndarray:
    """Convert to NumPy and check the dtype is the input dtype."""
    out = np.asarray(arr)
    assert out.dtype == np.dtype(case_dtype), f"{what}: dtype {out.dtype} != {case_dtype}"
    return out


# --------------------------------------------------------------------------- the suite


@pytest.mark.parametrize("case_id", list(CASES))
def test_value(case_id: str) -> None:
    """Per-sample values of the function and of the class (reduction='none')."""
    case = CASES[case_id]
    exact, _ = oracle(case_id)
    value = lib_function(case.loss)(case.y_true, case.y_pred, **case.options)
    value = check_dtype(value, case.dtype, f"{case_id} value")
    R.assert_ulp(value, exact, case.dtype, inputs=inputs_of(case), what=f"{case_id} value")
    obj = lib_class(case.loss, reduction="none", **case.options)
    value2 = check_dtype(obj(case.y_true, case.y_pred), case.dtype, f"{case_id} class value")
    R.assert_ulp(value2, exact, case.dtype, inputs=inputs_of(case), what=f"{case_id} class")


@pytest.mark.parametrize("case_id", list(CASES))
def test_gradient(case_id: str) -> None:
    """Per-sample gradients (reduction='none') via gradient() and value_and_gradient()."""
    case = CASES[case_id]
    exact_v, exact_g = oracle(case_id)
    obj = lib_class(case.loss, reduction="none", **case.options)
    scale = soft_target_scale(case, exact_g)
    g = check_dtype(obj.gradient(case.y_true, case.y_pred), case.dtype, f"{case_id} gradient")
    assert g.shape == case.y_pred.shape
    kw = {"inputs": inputs_of(case), "scale": scale}
    R.assert_ulp(g, exact_g, case.dtype, what=f"{case_id} gradient", **kw)
    v2, g2 = obj.value_and_gradient(case.y_true, case.y_pred)
    v2 = check_dtype(v2, case.dtype, f"{case_id} value_and_gradient value")
    g2 = check_dtype(g2, case.dtype, f"{case_id} value_and_gradient gradient")
    R.assert_ulp(v2, exact_v, case.dtype, inputs=inputs_of(case), what=f"{case_id} v&g value")
    R.assert_ulp(g2, exact_g, case.dtype, what=f"{case_id} v&g gradient", **kw)


REDUCED = [cid for cid, c in CASES.items() if c.regime in ("generic", "pm1", "random")]


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum"])
@pytest.mark.parametrize("case_id", REDUCED)
def test_reduced(case_id: str, reduction: str) -> None:
    """Reduced value and its gradient: sum (or mean) over the batch of the exact rows."""
    case = CASES[case_id]
    exact_v, exact_g = oracle(case_id)
    rows = len(exact_v)
    with mpmath.mp.workdps(40):
        div = rows if reduction == "sum_over_batch_size" else 1
        value = mpmath.fsum(exact_v) / div
        grads = [[g / div for g in row] for row in exact_g]
    obj = lib_class(case.loss, reduction=reduction, **case.options)
    v = check_dtype(obj(case.y_true, case.y_pred), case.dtype, f"{case_id} reduced value")
    R.assert_ulp(np.reshape(v, (1,)), [value], case.dtype, what=f"{case_id} {reduction} value")
    g = check_dtype(obj.gradient(case.y_true, case.y_pred), case.dtype, f"{case_id} grad")
    scale = soft_target_scale(case, exact_g)
    if scale is not None:
        scale = np.vectorize(lambda s: None if s is None else s / div, otypes=[object])(scale)
    R.assert_ulp(g, grads, case.dtype, inputs=inputs_of(case), scale=scale, what=f"{case_id} {reduction}")


BACKEND_REGIMES = {"spread", "extreme", "large", "confident", "near_equal"}
BACKEND_CASES = [cid for cid, c in CASES.items() if c.regime in BACKEND_REGIMES]


@pytest.mark.parametrize("case_id", BACKEND_CASES)
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_backend(backend: str, case_id: str) -> None:
    """The same contract on PyTorch tensors and JAX arrays, on the numerically hard regimes."""
    case = CASES[case_id]
    exact_v, exact_g = oracle(case_id)
    with backend_arrays(backend, case.dtype) as (to_b, to_np):
        t, p = to_b(case.y_true), to_b(case.y_pred)
        value = to_np(lib_function(case.loss)(t, p, **case.options))
        obj = lib_class(case.loss, reduction="none", **case.options)
        g = to_np(obj.gradient(t, p))
    what = f"{backend} {case_id}"
    value = check_dtype(value, case.dtype, f"{what} value")
    R.assert_ulp(value, exact_v, case.dtype, inputs=inputs_of(case), what=f"{what} value")
    g = check_dtype(g, case.dtype, f"{what} gradient")
    scale = soft_target_scale(case, exact_g)
    R.assert_ulp(g, exact_g, case.dtype, inputs=inputs_of(case), scale=scale, what=f"{what} gradient")


def check_against_oracle(case: C.Case, exact_v: list[mpf], exact_g: list[list[mpf]]) -> None:
    """Value (function) and gradient (class, reduction='none') of a case against the oracle."""
    value = lib_function(case.loss)(case.y_true, case.y_pred, **case.options)
    value = check_dtype(value, case.dtype, "value")
    R.assert_ulp(value, exact_v, case.dtype, inputs=inputs_of(case), what=f"{case.id} value")
    obj = lib_class(case.loss, reduction="none", **case.options)
    g = check_dtype(obj.gradient(case.y_true, case.y_pred), case.dtype, "gradient")
    scale = soft_target_scale(case, exact_g)
    R.assert_ulp(g, exact_g, case.dtype, inputs=inputs_of(case), scale=scale, what=f"{case.id} gradient")


def _floats(dtype: Any, lo: float, hi: float) -> st.SearchStrategy[float]:
    """Finite floats of ``dtype`` in [lo, hi] (subnormals excluded)."""
    width = 32 if np.dtype(dtype) == np.float32 else 64
    return st.floats(lo, hi, width=width, allow_subnormal=False)


def _random_case(loss: str, dtype: Any, data: st.DataObject) -> C.Case:
    """A small random case drawn by Hypothesis (one to three rows of one to five columns)."""
    rows = data.draw(st.integers(1, 3), label="rows")
    cols = data.draw(st.integers(1 if loss != "cce" else 2, 5), label="cols")
    big = float(np.dtype(dtype).type(1e150 if np.dtype(dtype) == np.float64 else 1e15))
    tiny = float(np.finfo(dtype).smallest_normal)

    def matrix(elements: st.SearchStrategy[float]) -> np.ndarray:
        flat = data.draw(st.lists(elements, min_size=rows * cols, max_size=rows * cols))
        return np.array(flat, dtype).reshape(rows, cols)

    fl, ls = False, 0.0
    if loss in ("mse", "mae"):
        t, p = matrix(_floats(dtype, -big, big)), matrix(_floats(dtype, -big, big))
    elif loss == "hinge":
        t, p = matrix(st.sampled_from([-1.0, 1.0])), matrix(_floats(dtype, -1e6, 1e6))
    elif loss == "kld":
        t, p = matrix(_floats(dtype, 0.0, 1.0)), matrix(_floats(dtype, tiny, 1.0))
    else:  # bce / cce from logits, hard or soft targets, with or without smoothing
        fl, ls = True, data.draw(st.sampled_from([0.0, 0.1]), label="label_smoothing")
        t = matrix(st.sampled_from([0.0, 1.0]) | _floats(dtype, 0.0, 1.0))
        if loss == "cce":  # categorical targets are distributions: one-hot or normalised rows
            hot = np.eye(cols, dtype=dtype)[data.draw(st.integers(0, cols - 1), label="label")]
            sums = t.sum(axis=1, keepdims=True)
            t = np.where(sums > 0, t / np.where(sums > 0, sums, 1), hot).astype(dtype)
            if data.draw(st.booleans(), label="one_hot"):
                t = np.broadcast_to(hot, t.shape).copy()
        p = matrix(_floats(dtype, -1e4, 1e4))
    return C.Case(loss, "hypothesis", np.dtype(dtype).type, t, p, fl, ls)


EXAMPLES = int(os.environ.get("LOSSKIT_ORACLE_EXAMPLES", "25"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(data=st.data())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["mse", "mae", "hinge", "kld", "bce", "cce"])
def test_random_rows(loss: str, dtype: Any, data: st.DataObject) -> None:
    """Hypothesis-drawn rows (deterministic; LOSSKIT_ORACLE_EXAMPLES sets the count)."""
    case = _random_case(loss, dtype, data)
    fn = ORACLE[case.loss]
    exact_v = [fn(t, p, **case.options) for t, p in zip(case.y_true, case.y_pred, strict=True)]
    exact_g = [R.grad(fn, t, p, **case.options) for t, p in zip(case.y_true, case.y_pred, strict=True)]
    check_against_oracle(case, exact_v, exact_g)


# --------------------------------------------------------------------------- edge choices


def _zero_prob_inputs(loss: str, dtype: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Row 0 has a probability of exactly 0 under a positive label; row 1 is ordinary."""
    if loss == "bce":
        return (
            np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]], dtype),
            np.array([[0.0, 0.3, 0.6], [0.2, 0.3, 0.6]], dtype),
            {},
        )
    if loss == "cce":
        return (
            np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype),
            np.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]], dtype),
            {},
        )
    if loss == "scce":
        return np.array([1, 1]), np.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]], dtype), {}
    return (
        np.array([[0.25, 0.75, 0.0], [0.25, 0.75, 0.0]], dtype),
        np.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]], dtype),
        {},
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["bce", "cce", "scce", "kld"])
def test_zero_probability_for_positive_label(loss: str, dtype: Any) -> None:
    """Value +inf; gradient finite or -inf, never NaN; the ordinary row is unaffected."""
    y_true, y_pred, opts = _zero_prob_inputs(loss, dtype)
    value = check_dtype(lib_function(loss)(y_true, y_pred, **opts), dtype, "value")
    assert value[0] == np.inf
    exact = ORACLE[loss](y_true[1], y_pred[1], **opts)
    R.assert_ulp(value[1:], [exact], dtype, what=f"{loss} ordinary row")
    g = check_dtype(lib_class(loss, reduction="none").gradient(y_true, y_pred), dtype, "grad")
    assert not np.isnan(g).any(), g
    assert not (g == np.inf).any(), g
    R.assert_ulp(g[1:], [R.grad(ORACLE[loss], y_true[1], y_pred[1])], dtype, what="grad row 1")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("loss", ["bce", "cce"])
def test_zero_probability_smoothed_label(loss: str, ls: float, dtype: Any) -> None:
    """With label smoothing every target is positive, so any zero probability gives +inf."""
    y_true = np.array([[0.0, 1.0, 0.0]], dtype)
    y_pred = np.array([[0.0, 1.0, 0.0]], dtype)
    value = check_dtype(lib_function(loss)(y_true, y_pred, label_smoothing=ls), dtype, "value")
    assert value[0] == (np.inf if ls else 0.0)
    g = lib_class(loss, reduction="none", label_smoothing=ls).gradient(y_true, y_pred)
    assert not np.isnan(g).any(), g


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("loss", "y_true", "y_pred"),
    [
        ("bce", [[0.0, 1.0, 0.0, 1.0]], [[0.0, 1.0, 0.25, 0.5]]),
        ("cce", [[0.0, 1.0, 0.0]], [[0.0, 1.0, 0.0]]),
        ("cce", [[0.0, 0.5, 0.5]], [[0.0, 0.25, 0.75]]),
        ("kld", [[0.0, 1.0, 0.0]], [[0.0, 1.0, 0.0]]),
        ("kld", [[0.0, 0.25, 0.75]], [[0.5, 0.25, 0.25]]),
    ],
)
def test_zero_log_zero(loss: str, y_true: Any, y_pred: Any, dtype: Any) -> None:
    """0 * log 0 = 0 in the value, and the killed term adds nothing to the gradient."""
    t, p = np.array(y_true, dtype), np.array(y_pred, dtype)
    value = check_dtype(lib_function(loss)(t, p), dtype, "value")
    R.assert_ulp(value, [ORACLE[loss](t[0], p[0])], dtype, what=f"{loss} value")
    g = check_dtype(lib_class(loss, reduction="none").gradient(t, p), dtype, "gradient")
    R.assert_ulp(g, [R.grad(ORACLE[loss], t[0], p[0])], dtype, what=f"{loss} gradient")


def test_zero_log_zero_scce() -> None:
    """scce: the only term is the label's, with p_label = 1 and zeros elsewhere: value 0."""
    p = np.array([[0.0, 1.0, 0.0]])
    value = lib_function("scce")(np.array([1]), p)
    assert value[0] == 0.0
    g = lib_class("scce", reduction="none").gradient(np.array([1]), p)
    R.assert_ulp(g, [R.grad(R.scce, 1, p[0])], np.float64, what="scce gradient")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_bce_infinite_logits(ls: float, dtype: Any) -> None:
    """Logits of +-inf: values are 0 or +inf, gradients (sigmoid(x) - t')/n exactly; no NaN."""
    t = np.array([[1.0, 0.0, 1.0, 0.0, 0.5, 0.5]], dtype)
    x = np.array([[math.inf, -math.inf, -math.inf, math.inf, math.inf, -math.inf]], dtype)
    value = check_dtype(lib_function("bce")(t, x, from_logits=True, label_smoothing=ls), dtype, "v")
    assert not np.isnan(value).any()
    R.assert_ulp(value, [R.bce(t[0], x[0], True, ls)], dtype, what="bce inf logits value")
    with mpmath.mp.workdps(40):
        lsm, n = mpf(ls), t.shape[1]
        tp = [mpf(float(v)) * (1 - lsm) + lsm / 2 for v in t[0]]
        want = [((1 if xi > 0 else 0) - tj) / n for tj, xi in zip(tp, x[0], strict=True)]
    obj = lib_class("bce", reduction="none", from_logits=True, label_smoothing=ls)
    g = check_dtype(obj.gradient(t, x), dtype, "gradient")
    assert np.isfinite(g).all(), g
    R.assert_ulp(g, [want], dtype, what="bce inf logits gradient")


@pytest.mark.parametrize("dtype", DTYPES)
def test_kinks(dtype: Any) -> None:
    """MAE at zero error has gradient 0; hinge exactly at the margin has gradient -t/(2n)."""
    t = np.array([[1.0, -2.0, 0.5, 3.0]], dtype)
    p = np.array([[1.0, 0.0, 0.5, 3.0]], dtype)
    g = check_dtype(lib_class("mae", reduction="none").gradient(t, p), dtype, "mae gradient")
    np.testing.assert_array_equal(g, np.array([[0.0, 0.25, 0.0, 0.0]], dtype))
    R.assert_ulp(g, [R.grad(R.mae, t[0], p[0])], dtype, what="mae kink")
    th = np.array([[1.0, -1.0, 1.0, -1.0]], dtype)
    f = np.array([[1.0, -1.0, 3.0, 0.5]], dtype)
    g = check_dtype(lib_class("hinge", reduction="none").gradient(th, f), dtype, "hinge gradient")
    np.testing.assert_array_equal(g, np.array([[-0.125, 0.125, 0.0, 0.25]], dtype))
    R.assert_ulp(g, [R.grad(R.hinge, th[0], f[0])], dtype, what="hinge kink")
