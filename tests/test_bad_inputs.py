"""The bad-input suite (issue 9): every registered loss, with bad and extreme input, gets its documented
outcome, never a silent wrong number and never a raw error from deep inside a library.

The documented outcomes (``docs/differences.md``, "Bad input"):

* a clear ``ValueError``/``TypeError`` whose message names the argument: wrong shapes, a zero-width
  reduced axis with samples, complex/object/string dtypes, NumPy masked arrays, values outside the
  loss's domain, bad labels, wrongly typed options, unknown options;
* NaN propagated to the sample (and its gradient row) that holds it; an infinite input gives its limit,
  never NaN;
* an empty batch (``(0, K)`` or ``(0, 0)``) gives 0 under every reduction (the empty array for
  ``"none"``), a gradient shaped like ``y_pred``, and a PyTorch ``backward()`` that works;
* booleans, integers, float16, bfloat16 and ``ndarray`` subclasses are read as the numbers they hold;
  NumPy scalar options (``np.True_``, ``np.float32(0.1)``, ``np.int64(-1)``) as Python ones;
* second derivatives: PyTorch (``create_graph=True``) and JAX differentiate the analytic gradient.

Every loss of the registry joins every NumPy probe automatically; the PyTorch and JAX probes run on a
representative subset (one loss per family and target kind), except the PyTorch second-order probe,
which runs on every loss (each kernel must be differentiable by autograd). Where a probe finds a defect
that another item of issue 9 owns, the case is marked ``xfail`` with that item's number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import make_inputs

import losskit
from losskit.losses._core import LossDef
from losskit.losses._registry import definitions

DEFS: list[LossDef] = sorted(definitions(), key=lambda d: d.name)
BY_NAME = {d.name: d for d in DEFS}
SHAPE = (3, 4)

# One loss per family and target kind, for the PyTorch and JAX probes.
SUBSET = ["mean_squared_error", "binary_crossentropy", "categorical_crossentropy",
          "sparse_categorical_crossentropy", "kl_divergence", "hinge", "gaussian_nll",
          "cosine_similarity", "multilabel_margin", "nll"]

# Defects owned by other items of issue 9: (probe, loss) -> item number.
XFAIL: dict[tuple[str, str], int | str] = {}
# losses that refuse second derivatives with a ValueError (never a silently wrong one)
NO_SECOND_ORDER = {"ctc"}


def cases(probe: str, names: list[str] | None = None) -> list[Any]:
    """``pytest.param`` per loss, xfail where :data:`XFAIL` names another item for this probe."""
    out = []
    for name in names or [d.name for d in DEFS]:
        item = XFAIL.get((probe, name))
        reason = item if isinstance(item, str) else f"issue 9 item {item}"
        marks = [pytest.mark.xfail(reason=reason, strict=False)] if item else []
        out.append(pytest.param(BY_NAME[name], id=name, marks=marks))
    return out


def loss_class(defn: LossDef) -> type[losskit.Loss]:
    return type(losskit.get(defn.name))


def valid(defn: LossDef, shape: tuple[int, ...] = SHAPE, seed: int = 9) -> tuple[Any, Any, dict]:
    """Valid NumPy ``(y_true, y_pred, extras)`` for a loss (its default options)."""
    rng = np.random.default_rng(seed)
    y_true, y_pred, extras = make_inputs(defn, {}, rng, shape=shape)
    if defn.targets == "index_list":  # make_inputs needs K >= 2 for these
        y_true = y_true.astype(np.int64)
    return y_true, y_pred, extras


def zero_width(defn: LossDef, n: int) -> tuple[Any, Any, dict]:
    """``(n, 0)`` inputs: no entry on the reduced axis."""
    y_pred = np.zeros((n, *(0,) * defn.event_ndim))  # CTC: (n, 0, 0)
    y_true = np.zeros((n,), dtype=np.int64) if defn.sparse else np.zeros((n, 0))
    extras = {i.name: np.ones((n, 0)) for i in defn.inputs if i.required}
    return y_true, y_pred, extras


def expect_error(fn: Callable[[], Any], kinds: type | tuple[type, ...], *words: str) -> str:
    """``fn()`` must raise one of ``kinds`` whose message contains every word (case-insensitive);
    returning silently or raising anything else fails the probe."""
    try:
        result = fn()
    except kinds as exc:
        message = str(exc).lower()
        missing = [w for w in words if w.lower() not in message]
        assert not missing, f"the message does not name {missing}: {exc}"  # noqa: PT017
        assert len(str(exc)) < 600, f"message of {len(str(exc))} characters"  # noqa: PT017
        return str(exc)
    raise AssertionError(f"no error: returned {result!r}")


def both(defn: LossDef, y_true: Any, y_pred: Any, extras: dict, **opts: Any) -> list[Callable]:
    """The two class entry points, as thunks: the reduced value and value_and_gradient."""
    loss = loss_class(defn)(**opts)
    return [lambda: loss(y_true, y_pred, **extras),
            lambda: loss.value_and_gradient(y_true, y_pred, **extras)]


def per_sample(defn: LossDef, y_true: Any, y_pred: Any, extras: dict, **opts: Any) -> np.ndarray:
    return np.asarray(loss_class(defn)(reduction="none", **opts)(y_true, y_pred, **extras))


def gradient(defn: LossDef, y_true: Any, y_pred: Any, extras: dict, **opts: Any) -> np.ndarray:
    return np.asarray(loss_class(defn)(**opts).gradient(y_true, y_pred, **extras))


# ================================================================================ shapes (NumPy)


@pytest.mark.parametrize("defn", cases("zero_width"))
def test_zero_width_with_samples_is_a_value_error(defn: LossDef) -> None:
    y_true, y_pred, extras = zero_width(defn, 3)
    for call in both(defn, y_true, y_pred, extras):
        expect_error(call, ValueError, "y_pred", "axis", str(y_pred.shape))  # (3, 0); CTC's (3, 0, 0)


@pytest.mark.parametrize("defn", cases("empty_batch"))
@pytest.mark.parametrize("width", [4, 0])
def test_empty_batch_reduces_to_zero(defn: LossDef, width: int) -> None:
    y_true, y_pred, extras = valid(defn, (0, 4)) if width else zero_width(defn, 0)
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight", "batchmean"):
        loss = loss_class(defn)(reduction=reduction)
        value, grad = loss.value_and_gradient(y_true, y_pred, **extras)
        assert float(value) == 0.0
        assert float(loss(y_true, y_pred, **extras)) == 0.0
        assert grad.shape == y_pred.shape
    assert per_sample(defn, y_true, y_pred, extras).shape == (0,)


@pytest.mark.parametrize("defn", cases("mismatch"))
def test_mismatched_shapes_name_both(defn: LossDef) -> None:
    y_true, y_pred, extras = valid(defn)
    for call in both(defn, y_true[:2], y_pred, extras):
        expect_error(call, ValueError, "y_true", "y_pred", "shape")
    for call in both(defn, y_true, np.float64(0.5), {}):
        expect_error(call, ValueError, "y_pred")


# ================================================================================ dtypes (NumPy)


@pytest.mark.parametrize("defn", cases("complex"))
def test_complex_input_is_refused(defn: LossDef) -> None:
    y_true, y_pred, extras = valid(defn)
    for call in both(defn, y_true, y_pred.astype(np.complex128), extras):
        expect_error(call, TypeError, "y_pred", "complex")
    for call in both(defn, y_true.astype(np.complex128), y_pred, extras):
        expect_error(call, TypeError, "y_true", "complex")


@pytest.mark.parametrize("defn", cases("object_string"))
def test_object_and_string_input_is_refused(defn: LossDef) -> None:
    y_true, y_pred, extras = valid(defn)
    with_none = y_pred.astype(object)
    with_none[0, 0] = None
    for bad in (y_pred.astype(object), with_none, y_pred.astype(str), [["a", "b"], ["c", "d"]]):
        for call in both(defn, y_true, bad, extras):
            expect_error(call, TypeError, "y_pred")
    for call in both(defn, y_true.astype(str), y_pred, extras):
        expect_error(call, TypeError, "y_true")


def _same_or_same_error(defn: LossDef, a: tuple, b: tuple) -> None:
    """The loss of inputs ``a`` equals the loss of ``b`` (the same numbers in another dtype), or both
    are refused with the same kind of error."""
    outcomes = []
    for y_true, y_pred, extras in (a, b):
        try:
            outcomes.append((per_sample(defn, y_true, y_pred, extras),
                             gradient(defn, y_true, y_pred, extras)))
        except (ValueError, TypeError) as exc:
            outcomes.append(type(exc))
    if isinstance(outcomes[0], type) or isinstance(outcomes[1], type):
        assert outcomes[0] == outcomes[1], outcomes
        return
    np.testing.assert_array_equal(outcomes[0][0], outcomes[1][0])
    np.testing.assert_array_equal(outcomes[0][1], outcomes[1][1])


@pytest.mark.parametrize("defn", cases("bool_int"))
def test_boolean_and_integer_inputs_are_their_numbers(defn: LossDef) -> None:
    y_true, y_pred, extras = valid(defn)
    rounded = np.round(np.clip(y_pred, 0, 1))  # 0/1 predictions, as booleans and as integers
    if defn.sparse:
        labels = (np.arange(SHAPE[0]) % 2).astype(bool)
        _same_or_same_error(defn, (labels, y_pred, extras), (labels.astype(np.int64), y_pred, extras))
    elif defn.targets != "index_list":
        binary = (y_true > np.median(y_true)).astype(np.float64)
        _same_or_same_error(defn, (binary.astype(bool), y_pred, extras), (binary, y_pred, extras))
    _same_or_same_error(defn, (y_true, rounded.astype(bool), extras), (y_true, rounded, extras))
    _same_or_same_error(defn, (y_true, rounded.astype(np.int32), extras), (y_true, rounded, extras))


@pytest.mark.parametrize("defn", cases("float16"))
def test_float16_is_evaluated_wide_and_rounded_once(defn: LossDef) -> None:
    y_true, y_pred, extras = valid(defn)
    half = {k: v.astype(np.float16) for k, v in extras.items()}
    t16 = y_true.astype(np.float16) if y_true.dtype.kind == "f" else y_true
    value = loss_class(defn)(reduction="none")(t16, y_pred.astype(np.float16), **half)
    assert value.dtype == np.float16
    wide = per_sample(defn, t16.astype(np.float64) if t16.dtype.kind == "f" else t16,
                      y_pred.astype(np.float16).astype(np.float64),
                      {k: v.astype(np.float64) for k, v in half.items()})
    np.testing.assert_array_equal(value, wide.astype(np.float16))


class _Subclass(np.ndarray):
    pass


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("defn", cases("masked_subclass"))
def test_masked_arrays_are_refused_and_subclasses_read_as_arrays(defn: LossDef) -> None:
    y_true, y_pred, extras = valid(defn)
    masked = np.ma.masked_array(y_pred, mask=np.zeros(y_pred.shape, bool))
    for call in both(defn, y_true, masked, extras):
        expect_error(call, TypeError, "y_pred", "masked")
    for call in both(defn, np.ma.masked_array(y_true), y_pred, extras):
        expect_error(call, TypeError, "y_true", "masked")
    loss = loss_class(defn)()
    expect_error(lambda: loss(y_true, y_pred, sample_weight=np.ma.masked_array(np.ones(3)), **extras),
                 TypeError, "sample_weight", "masked")
    plain = per_sample(defn, y_true, y_pred, extras)
    np.testing.assert_array_equal(per_sample(defn, y_true, y_pred.view(_Subclass), extras), plain)
    if y_pred.ndim == 2:  # a matrix is 2-D (not CTC's (N, T, C))
        np.testing.assert_array_equal(per_sample(defn, y_true, np.asmatrix(y_pred), extras), plain)


# ================================================================================ values (NumPy)


@pytest.mark.parametrize("defn", cases("nan"))
def test_nan_propagates_to_its_sample(defn: LossDef) -> None:
    y_true, y_pred, extras = valid(defn)
    clean = per_sample(defn, y_true, y_pred, extras)
    clean_grad = gradient(defn, y_true, y_pred, extras)
    bad = y_pred.copy()
    bad[0, int(y_true[0]) if defn.sparse else 1] = np.nan  # sparse losses: at the label (read)
    value = per_sample(defn, y_true, bad, extras)
    grad = gradient(defn, y_true, bad, extras)
    assert np.isnan(value[0]), value
    np.testing.assert_array_equal(value[1:], clean[1:])
    assert not np.isnan(grad[1:]).any(), grad
    if not np.isnan(grad[0]).any():  # a loss linear in y_pred (KL on log-probabilities, NLL): its
        np.testing.assert_array_equal(grad[0], clean_grad[0])  # gradient does not read y_pred


@pytest.mark.parametrize("defn", cases("nan_target"))
def test_nan_target_propagates_or_is_refused(defn: LossDef) -> None:
    y_true, y_pred, extras = valid(defn)
    bad = y_true.astype(np.float64)
    bad[(0, 1) if bad.ndim == 2 else 0] = np.nan
    try:
        value = per_sample(defn, bad, y_pred, extras)
    except ValueError as exc:
        assert "y_true" in str(exc)  # noqa: PT017
        return
    assert np.isnan(value[0]), value
    assert not np.isnan(value[1:]).any()


def _infinite_cases() -> list[Any]:
    out = []
    for defn in DEFS:
        domain = defn.domain(defn.normalise({})).get("y_pred")
        for sign in (1.0, -1.0):
            if domain is None or (domain.high if sign > 0 else domain.low) == sign * math.inf:
                out.append((defn, {}, sign))
            if any(o.name == "from_logits" for o in defn.options):
                out.append((defn, {"from_logits": True}, sign))
    params = []
    for defn, opts, sign in out:
        item = XFAIL.get(("infinite", defn.name)) or XFAIL.get(("infinite", f"{defn.name}{opts}{sign}"))
        marks = [pytest.mark.xfail(reason=f"issue 9 item {item}", strict=False)] if item else []
        case = f"{defn.name}-{'logits-' if opts else ''}{'+' if sign > 0 else '-'}inf"
        params.append(pytest.param(defn, opts, sign, marks=marks, id=case))
    return params


@pytest.mark.parametrize(("defn", "opts", "sign"), _infinite_cases())
def test_an_infinite_prediction_gives_a_limit_not_nan(defn: LossDef, opts: dict, sign: float) -> None:
    y_true, y_pred, extras = valid(defn)
    if opts.get("from_logits"):
        y_pred = np.random.default_rng(1).normal(size=y_pred.shape)
    y_pred[(0, 1) + (0,) * (defn.event_ndim - 1)] = sign * np.inf  # one element (CTC: of step 1)
    domain = defn.domain(defn.normalise(opts)).get("y_pred")
    if domain is not None and domain.outside(np.array([sign * np.inf])).any():
        # a domain open at that infinity (the distillation losses' [-inf, inf) logits) refuses it
        with pytest.raises(ValueError, match=r"y_pred must lie in .*inf"):
            per_sample(defn, y_true, y_pred, extras, **opts)
        return
    value = per_sample(defn, y_true, y_pred, extras, **opts)
    grad = gradient(defn, y_true, y_pred, extras, **opts)
    assert not np.isnan(value).any(), value
    assert not np.isnan(grad).any(), grad


BIG = float(np.finfo(np.float64).max)


def _extreme_cases() -> list[Any]:
    params = []
    for defn in DEFS:
        domain = defn.domain(defn.normalise({}))
        for name in ("y_pred", "y_true"):
            interval = domain.get(name)
            if name == "y_true" and (defn.targets != "real" or defn.sparse):
                continue
            for sign in (1.0, -1.0):
                if interval is not None and not interval.low <= sign * BIG <= interval.high:
                    continue
                key = f"{defn.name}-{name}-{'+' if sign > 0 else '-'}max"
                item = XFAIL.get(("extreme", key))
                marks = [pytest.mark.xfail(reason=f"issue 9 item {item}", strict=False)] if item else []
                params.append(pytest.param(defn, name, sign, marks=marks, id=key))
    return params


@pytest.mark.parametrize(("defn", "name", "sign"), _extreme_cases())
def test_the_largest_double_gives_a_number_not_nan(defn: LossDef, name: str, sign: float) -> None:
    y_true, y_pred, extras = valid(defn)
    arrays = {"y_true": y_true.astype(np.float64), "y_pred": y_pred.copy()}
    arrays[name][0, 1] = sign * BIG
    value = per_sample(defn, arrays["y_true"], arrays["y_pred"], extras)
    grad = gradient(defn, arrays["y_true"], arrays["y_pred"], extras)
    assert not np.isnan(value).any(), value
    assert not np.isnan(grad).any(), grad


def _outside_cases() -> list[Any]:
    params = []
    for defn in DEFS:
        for name, interval in defn.domain(defn.normalise({})).items():
            for end, step in ((interval.low, -1.0), (interval.high, 1.0)):
                if math.isfinite(end):
                    params.append(pytest.param(defn, name, end + step * 0.5,
                                               id=f"{defn.name}-{name}-{end + step * 0.5:g}"))
    return params


@pytest.mark.parametrize(("defn", "name", "value"), _outside_cases())
def test_values_outside_the_domain_are_refused(defn: LossDef, name: str, value: float) -> None:
    y_true, y_pred, extras = valid(defn)
    arrays = {"y_true": y_true.astype(np.float64), "y_pred": y_pred.copy()}
    at = (0, 1)
    if name == "y_pred" and defn.reads is not None:  # checked where the loss reads (NLL: the label)
        at = (0, int(defn.reads(np, y_true, y_pred, **defn.normalise({}))[0].reshape(-1)[0]))
    arrays[name][at] = value
    for call in both(defn, arrays["y_true"], arrays["y_pred"], extras):
        expect_error(call, ValueError, name, "must lie in")


@pytest.mark.parametrize("name", ["poly_loss_cross_entropy", "categorical_hinge"])
@pytest.mark.parametrize("target", [[-0.5, 1.5, 0.0], [-1e6, 1.0, 0.0], [0.0, 2.0, 0.0]])
def test_targets_outside_unit_interval_are_refused(name: str, target: list[float]) -> None:
    # issue 9 item 6: these two scored any target; every cross-entropy refuses them
    loss = losskit.get(name)
    expect_error(lambda: loss([target], [[0.1, 0.2, 0.3]]), ValueError, "y_true", "[0, 1]")


# sparse losses whose labels are class indices (cosine_embedding's sparse labels are -1/1 signs)
SPARSE = [d.name for d in DEFS if d.sparse and d.targets == "index"]


@pytest.mark.parametrize("defn", cases("labels", SPARSE))
@pytest.mark.parametrize("label", [4, -1, 1.5, 1e30])
def test_bad_class_labels_are_refused(defn: LossDef, label: float) -> None:
    y_true, y_pred, extras = valid(defn)
    bad = y_true.astype(np.float64)
    bad[0] = label
    for call in both(defn, bad, y_pred, extras):
        expect_error(call, ValueError, "y_true")


# ================================================================================ options (NumPy)


def _numpy_scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, float):
        return np.float32(value) if float(np.float32(value)) == value else np.float64(value)
    return value


@pytest.mark.parametrize("defn", cases("options"))
def test_options_numpy_scalars_and_wrong_types(defn: LossDef) -> None:
    cls = loss_class(defn)
    for option in defn.options:
        if option.default is None:
            continue
        loss = cls(**{option.name: _numpy_scalar(option.default)})
        assert loss.get_config()[option.name] == option.default
        assert type(loss.get_config()[option.name]) is type(option.default), option.name
        expect_error(lambda o=option: cls(**{o.name: "1"}), (TypeError, ValueError), o_name(option))
        expect_error(lambda o=option: cls(**{o.name: [1]}), (TypeError, ValueError), o_name(option))
        expect_error(lambda o=option: cls(**{o.name: 1j}), (TypeError, ValueError), o_name(option))
    expect_error(lambda: cls(no_such_option=1), TypeError, "no_such_option")
    expect_error(lambda: cls(reduction="average"), ValueError, "reduction")
    expect_error(lambda: cls(dtype="int32"), ValueError, "dtype")


def o_name(option: Any) -> str:
    return str(option.name)


def test_numpy_scalar_options_named_in_issue_9() -> None:
    # issue 9 item 15: np.True_, a float32 smoothing and an int64 axis
    loss = losskit.CategoricalCrossentropy(from_logits=np.True_, label_smoothing=np.float32(0.25),
                                           axis=np.int64(-1))
    assert loss.get_config()["from_logits"] is True
    assert loss.get_config()["label_smoothing"] == 0.25
    assert loss.get_config()["axis"] == -1
    assert type(loss.get_config()["axis"]) is int
    t, x = np.array([[0.0, 1.0]]), np.array([[0.0, 0.0]])
    assert float(loss(t, x)) == float(losskit.CategoricalCrossentropy(
        from_logits=True, label_smoothing=0.25)(t, x))
    assert losskit.SparseCategoricalCrossentropy(ignore_class=np.int64(1)).get_config()[
        "ignore_class"] == 1
    for bad in (np.bool_(True), True):
        expect_error(lambda b=bad: losskit.CategoricalCrossentropy(label_smoothing=b), TypeError,
                     "label_smoothing")
        expect_error(lambda b=bad: losskit.CategoricalCrossentropy(axis=b), TypeError, "axis")
        expect_error(lambda b=bad: losskit.MultiMargin(p=b), TypeError, "p must")


def _axis_names() -> list[str]:
    return [d.name for d in DEFS if any(o.name == "axis" for o in d.options)]


@pytest.mark.parametrize("defn", cases("axis", _axis_names()))
def test_axis_out_of_range(defn: LossDef) -> None:
    y_true, y_pred, extras = valid(defn)
    for call in both(defn, y_true, y_pred, extras, axis=2):
        expect_error(call, ValueError, "axis=2")


@pytest.mark.parametrize("defn", cases("sample_weight"))
def test_bad_sample_weights(defn: LossDef) -> None:
    y_true, y_pred, extras = valid(defn)
    loss = loss_class(defn)()
    expect_error(lambda: loss(y_true, y_pred, sample_weight=np.ones(5), **extras), ValueError,
                 "sample_weight", "shape")
    expect_error(lambda: loss(y_true, y_pred, sample_weight=np.ones(3) * 1j, **extras), TypeError,
                 "sample_weight", "complex")
    expect_error(lambda: loss(y_true, y_pred, sample_weight="heavy", **extras), TypeError,
                 "sample_weight")


@pytest.mark.parametrize("defn", cases("zero_weights"))
def test_weights_summing_to_zero(defn: LossDef) -> None:
    # decided (issue 9 item 14), as Keras: mean_with_sample_weight with sum(w) = 0 gives 0 and a zero
    # gradient (no sample counts, so nothing is lost); never NaN
    y_true, y_pred, extras = valid(defn)
    loss = loss_class(defn)(reduction="mean_with_sample_weight")
    value, grad = loss.value_and_gradient(y_true, y_pred, sample_weight=np.zeros(3), **extras)
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, np.zeros_like(y_pred))


# ================================================================================ PyTorch


torch = pytest.importorskip("torch")


def to_torch(x: Any, requires_grad: bool = False) -> Any:
    t = torch.from_numpy(np.array(x))
    return t.requires_grad_() if requires_grad else t


@pytest.mark.parametrize("defn", cases("torch_second_order"))
def test_torch_second_derivative_matches_finite_differences(defn: LossDef) -> None:
    """``create_graph=True`` gives a gradient whose own gradient (a Hessian-vector product) matches a
    central difference of losskit's analytic gradient (issue 9 item 1: it used to carry no graph)."""
    y_true, y_pred, extras = valid(defn)
    loss = loss_class(defn)()
    t, ext = to_torch(y_true), {k: to_torch(v) for k, v in extras.items()}
    p = to_torch(y_pred, requires_grad=True)
    if defn.name in NO_SECOND_ORDER:
        with pytest.raises(ValueError, match="second derivatives"):
            torch.autograd.grad(loss(t, p, **ext), p, create_graph=True)
        return
    (g,) = torch.autograd.grad(loss(t, p, **ext), p, create_graph=True)
    v = np.random.default_rng(3).normal(size=y_pred.shape)
    h = 1e-6
    fd = (loss.gradient(y_true, y_pred + h * v, **extras)
          - loss.gradient(y_true, y_pred - h * v, **extras)) / (2 * h)
    if not g.requires_grad:  # a gradient that does not depend on y_pred (as PyTorch's for a loss
        np.testing.assert_array_equal(fd, 0.0)  # linear in it): its derivative is 0
        return
    (hv,) = torch.autograd.grad((g * to_torch(v)).sum(), p)
    np.testing.assert_allclose(hv.numpy(), fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["MeanSquaredError", "CategoricalCrossentropy"])
def test_torch_gradient_penalty_matches_pytorch(name: str) -> None:
    # the issue's reproduction: loss + |grad|^2, against PyTorch's own losses
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 5))
    t = rng.dirichlet(np.ones(5), size=4) if name.startswith("Cat") else rng.normal(size=(4, 5))
    ours = getattr(losskit, name)(**({"from_logits": True} if name.startswith("Cat") else {}))
    theirs = (torch.nn.functional.cross_entropy if name.startswith("Cat")
              else torch.nn.functional.mse_loss)
    grads = []
    for fn in (lambda p: ours(to_torch(t), p), lambda p: theirs(p, to_torch(t))):
        p = to_torch(x, requires_grad=True)
        value = fn(p)
        (g,) = torch.autograd.grad(value, p, create_graph=True)
        (value + (g * g).sum()).backward()
        grads.append(p.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("defn", cases("jax_second_order",
                                       ["mean_squared_error", "categorical_crossentropy", "gaussian_nll"]))
def test_jax_second_derivative_matches_finite_differences(defn: LossDef) -> None:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    try:
        y_true, y_pred, extras = valid(defn)
        loss = loss_class(defn)()
        ext = {k: jax.numpy.asarray(v) for k, v in extras.items()}
        v = np.random.default_rng(3).normal(size=SHAPE)
        grad = jax.grad(lambda p: loss(jax.numpy.asarray(y_true), p, **ext))
        _, hv = jax.jvp(grad, (jax.numpy.asarray(y_pred),), (jax.numpy.asarray(v),))
        h = 1e-6
        fd = (loss.gradient(y_true, y_pred + h * v, **extras)
              - loss.gradient(y_true, y_pred - h * v, **extras)) / (2 * h)
        np.testing.assert_allclose(np.asarray(hv), fd, rtol=1e-5, atol=1e-7)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("defn", cases("torch_probes", SUBSET))
def test_torch_bad_inputs(defn: LossDef) -> None:
    y_true, y_pred, extras = valid(defn)
    t, p, ext = to_torch(y_true), to_torch(y_pred), {k: to_torch(v) for k, v in extras.items()}
    for call in both(defn, t, p.to(torch.complex128), ext):
        expect_error(call, TypeError, "y_pred", "complex")
    if y_true.dtype.kind == "f":
        for call in both(defn, t.to(torch.complex128), p, ext):
            expect_error(call, TypeError, "y_true", "complex")
    zt, zp, zext = zero_width(defn, 3)
    for call in both(defn, to_torch(zt), to_torch(zp), {k: to_torch(v) for k, v in zext.items()}):
        expect_error(call, ValueError, "y_pred", "axis")
    # bfloat16 predictions: computed in float64, rounded once to bfloat16
    value = loss_class(defn)(reduction="none")(t, p.to(torch.bfloat16), **ext)
    assert value.dtype == torch.bfloat16

    def rounded(x: Any) -> Any:  # float inputs are cast to the result dtype first (the dtype rules)
        return x.to(torch.bfloat16).to(torch.float64) if x.is_floating_point() else x

    wide = loss_class(defn)(reduction="none")(rounded(t), rounded(p),
                                              **{k: rounded(v) for k, v in ext.items()})
    assert torch.equal(value, wide.to(torch.bfloat16))


@pytest.mark.parametrize("defn", cases("torch_empty", SUBSET))
@pytest.mark.parametrize("width", [4, 0])
def test_torch_empty_batch_backward(defn: LossDef, width: int) -> None:
    # issue 9 item 4: backward() of an empty batch failed under the mean reductions
    y_true, y_pred, extras = valid(defn, (0, 4)) if width else zero_width(defn, 0)
    for reduction in ("sum_over_batch_size", "mean_with_sample_weight", "batchmean", "sum"):
        p = to_torch(y_pred, requires_grad=True)
        value = loss_class(defn)(reduction=reduction)(
            to_torch(y_true), p, **{k: to_torch(v) for k, v in extras.items()})
        value.backward()
        assert float(value.detach()) == 0.0
        assert p.grad is not None
        assert p.grad.shape == p.shape


@pytest.mark.parametrize("defn", cases("torch_bool_labels", SPARSE))
def test_torch_boolean_labels_are_class_indices(defn: LossDef) -> None:
    _, y_pred, extras = valid(defn)
    labels = np.array([True, False, True])
    loss = loss_class(defn)()
    p = to_torch(y_pred)
    ext = {k: to_torch(v) for k, v in extras.items()}
    assert float(loss(torch.from_numpy(labels), p, **ext)) == float(
        loss(torch.from_numpy(labels.astype(np.int64)), p, **ext))


# ================================================================================ JAX


@pytest.mark.parametrize("defn", cases("jax_probes", SUBSET))
def test_jax_bad_inputs(defn: LossDef) -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    y_true, y_pred, extras = valid(defn)
    ext = {k: jnp.asarray(v) for k, v in extras.items()}
    for call in both(defn, jnp.asarray(y_true), jnp.asarray(y_pred) * (1 + 0j), ext):
        expect_error(call, TypeError, "y_pred", "complex")
    zt, zp, zext = zero_width(defn, 3)
    for call in both(defn, jnp.asarray(zt), jnp.asarray(zp), {k: jnp.asarray(v) for k, v in zext.items()}):
        expect_error(call, ValueError, "y_pred", "axis")
    et, ep, eext = valid(defn, (0, 4))
    assert float(loss_class(defn)()(jnp.asarray(et), jnp.asarray(ep),
                                    **{k: jnp.asarray(v) for k, v in eext.items()})) == 0.0
    value = loss_class(defn)(reduction="none")(jnp.asarray(y_true), jnp.asarray(y_pred, jnp.bfloat16),
                                               **ext)
    assert value.dtype == jnp.bfloat16
    if defn.sparse:
        labels = np.array([True, False, True])
        assert float(loss_class(defn)()(jnp.asarray(labels), jnp.asarray(y_pred), **ext)) == float(
            loss_class(defn)()(jnp.asarray(labels.astype(np.int32)), jnp.asarray(y_pred), **ext))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_infinite_predictions_give_their_limits(dtype):
    """Limits derived by hand, y = [0.5, 1], y_pred = [0.3, inf] (n = 2, the mean's 1/2 included):
    Poisson p - y log p -> inf, gradient (1 - y/p)/2 -> 1/2; generalized KL y log(y/p) - y + p -> inf,
    gradient 1 - y/p -> 1; gamma deviance -> inf, gradient 2 (p - y)/(p^2 n) -> 0; MSLE -> inf,
    gradient 2 log(1 + p)/((1 + p) n) -> 0; Tweedie power 0 (squared error) gradient (p - y) -> inf;
    cosine: the direction of [0.3, inf] is [0, 1], so -cos = -1/|y| = -1/sqrt(1.25), gradient 0."""
    y = np.array([[0.5, 1.0]], dtype)
    p = np.array([[0.3, np.inf]], dtype)
    first = {"poisson": (1 - 0.5 / 0.3) / 2, "generalized_kl_divergence": 1 - 0.5 / 0.3,
             "mean_gamma_deviance": 2 * (0.3 - 0.5) / (0.3**2 * 2),
             "mean_squared_logarithmic_error": 2 * np.log(1.3 / 1.5) / (1.3 * 2),
             "mean_tweedie_deviance": 2 * (0.3 - 0.5) / 2}
    last = {"poisson": 0.5, "generalized_kl_divergence": 1.0, "mean_gamma_deviance": 0.0,
            "mean_squared_logarithmic_error": 0.0, "mean_tweedie_deviance": np.inf}
    for name, g_last in last.items():
        value, g = type(losskit.get(name))(reduction="none").value_and_gradient(y, p)
        assert value[0] == np.inf, name
        np.testing.assert_allclose(g[0], [first[name], g_last], rtol=1e-6, err_msg=name)
    value, g = losskit.CosineSimilarity(reduction="none").value_and_gradient(y, p)
    np.testing.assert_allclose(value, [-1 / np.sqrt(1.25)], rtol=1e-6)
    np.testing.assert_array_equal(g, [[0.0, 0.0]])
    value = losskit.cosine_similarity(y, -p)
    np.testing.assert_allclose(value, [1 / np.sqrt(1.25)], rtol=1e-6)
    # a NaN with the infinity keeps the NaN
    assert np.isnan(losskit.cosine_similarity(y, np.array([[np.nan, np.inf]], dtype))).all()
