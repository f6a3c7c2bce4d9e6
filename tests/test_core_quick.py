"""The quick path of a small NumPy call (losses/_core.py ``_quick``) against the general path: the same
numbers, bit for bit, and the same errors, for the tutorial's seven losses; and the error state it
runs in is the caller's again afterwards."""

from __future__ import annotations

import numpy as np
import pytest

import losskit
from losskit._backends import numpy as numpy_backend
from losskit.losses import _core

pytestmark = pytest.mark.skipif(not numpy_backend.available(), reason="no compiled kernels")

RNG = np.random.default_rng(8)
N, K = 32, 10


def _unit(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.uniform(0.01, 0.99, shape).astype(np.float32)


def _dist(shape: tuple[int, ...]) -> np.ndarray:
    p = RNG.uniform(0.01, 1.0, shape)
    return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


def _signs() -> np.ndarray:
    return np.where(RNG.uniform(size=(N, 1)) < 0.5, -1.0, 1.0).astype(np.float32)


CASES = {
    "MeanSquaredError": lambda: (RNG.normal(size=(N, 1)).astype(np.float32),
                                 RNG.normal(size=(N, 1)).astype(np.float32)),
    "MeanAbsoluteError": lambda: (RNG.normal(size=(N, 3)).astype(np.float32),
                                  RNG.normal(size=(N, 3)).astype(np.float32)),
    "BinaryCrossentropy": lambda: (RNG.integers(0, 2, (N, 1)).astype(np.float32), _unit((N, 1))),
    "CategoricalCrossentropy": lambda: (np.eye(K, dtype=np.float32)[RNG.integers(0, K, N)],
                                        _dist((N, K))),
    "SparseCategoricalCrossentropy": lambda: (RNG.integers(0, K, N), _dist((N, K))),
    "Hinge": lambda: (_signs(), RNG.normal(size=(N, 1)).astype(np.float32)),
    "KLDivergence": lambda: (_dist((N, K)), _dist((N, K))),
}


def _general(monkeypatch: pytest.MonkeyPatch, call: object) -> object:
    """``call()`` with the quick path off (every call takes prepare and the runner)."""
    with monkeypatch.context() as m:
        m.setattr(_core, "_plan", lambda defn, options: None)
        return call()  # type: ignore[operator]


def _same(a: object, b: object) -> None:
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    assert a_arr.dtype == b_arr.dtype
    assert a_arr.shape == b_arr.shape
    np.testing.assert_array_equal(a_arr, b_arr)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none", "batchmean"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_quick_equals_general(monkeypatch: pytest.MonkeyPatch, name: str, reduction: str) -> None:
    loss = getattr(losskit, name)(reduction=reduction)
    y_true, y_pred = CASES[name]()
    y_pred = y_pred.copy()
    y_pred[3] = np.nan  # NaN propagates to its sample on both paths
    assert _core._quick(loss.definition, _core._plan(loss.definition, loss.options), loss.options,
                        None, reduction, y_true, y_pred, True) is not None  # the quick path is taken
    _same(loss(y_true, y_pred), _general(monkeypatch, lambda: loss(y_true, y_pred)))
    quick_v, quick_g = loss.value_and_gradient(y_true, y_pred)
    slow_v, slow_g = _general(monkeypatch, lambda: loss.value_and_gradient(y_true, y_pred))
    _same(quick_v, slow_v)
    _same(quick_g, slow_g)
    fn = losskit.get(loss.definition.name)
    _same(fn(y_true, y_pred), _general(monkeypatch, lambda: fn(y_true, y_pred)))


def _message(call: object) -> str:
    with pytest.raises(ValueError, match="must") as info:
        call()  # type: ignore[operator]
    return str(info.value)


BAD = {
    "BinaryCrossentropy": ("y_pred", 1.5),
    "KLDivergence": ("y_pred", -0.25),
    "CategoricalCrossentropy": ("y_true", 2.0),
    "SparseCategoricalCrossentropy": ("y_true", K),
    "Hinge": ("y_true", 0.5),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_quick_raises_as_general(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    loss = getattr(losskit, name)()
    y_true, y_pred = CASES[name]()
    which, value = BAD[name]
    arr = y_pred if which == "y_pred" else y_true
    arr[5, ...] = value
    quick = _message(lambda: loss(y_true, y_pred))
    assert quick == _general(monkeypatch, lambda: _message(lambda: loss(y_true, y_pred)))
    assert which in quick


def test_hinge_zero_one_labels_take_the_keras_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    y_true = RNG.integers(0, 2, (N, 1)).astype(np.float32)
    y_pred = RNG.normal(size=(N, 1)).astype(np.float32)
    loss = losskit.Hinge(reduction="none")
    expected = np.maximum(0.0, 1.0 - (2.0 * y_true[:, 0].astype(np.float64) - 1.0) * y_pred[:, 0])
    np.testing.assert_allclose(loss(y_true, y_pred), expected.astype(np.float32), rtol=0, atol=0)
    _same(loss(y_true, y_pred), _general(monkeypatch, lambda: loss(y_true, y_pred)))


def test_error_state_is_the_callers_again() -> None:
    y_true, y_pred = CASES["BinaryCrossentropy"]()
    loss = losskit.BinaryCrossentropy()
    before = np.geterr()
    loss(y_true, y_pred)
    assert np.geterr() == before
    with np.errstate(over="raise", invalid="warn"):  # a caller's own state: kept around the call
        inside = np.geterr()
        loss.value_and_gradient(y_true, y_pred)
        assert np.geterr() == inside
        with pytest.raises(FloatingPointError):
            np.float32(1e300) * np.float32(1e300)
    assert np.geterr() == before
    with pytest.raises(ValueError, match="y_pred must lie in"):  # raised inside the quick path
        loss(y_true, y_pred + 2)
    assert np.geterr() == before
    with _core._quiet_numpy():
        assert set(np.geterr().values()) == {"ignore"}
    assert np.geterr() == before


CASES64 = {
    "CategoricalCrossentropy": lambda: (np.eye(K)[RNG.integers(0, K, N)], _dist((N, K)).astype(np.float64)),
    "SparseCategoricalCrossentropy": lambda: (RNG.integers(0, K, N), RNG.normal(size=(N, K))),
    "KLDivergence": lambda: (_dist((N, K)).astype(np.float64), _dist((N, K)).astype(np.float64)),
    "NLL": lambda: (RNG.integers(0, K, N), np.log(_dist((N, K)).astype(np.float64))),
    "PoissonNLL": lambda: (RNG.poisson(2.0, (N, K)).astype(np.float64), RNG.normal(size=(N, K))),
}


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "none"])
@pytest.mark.parametrize("name", sorted(CASES64))
def test_quick_equals_general_in_float64(monkeypatch: pytest.MonkeyPatch, name: str, reduction: str) -> None:
    """float64 arrays take the quick path where the loss has a float64 kernel that needs no
    recheck: the general path's numbers bit for bit, float64 out."""
    options = {"from_logits": True} if name == "SparseCategoricalCrossentropy" else {}
    loss = getattr(losskit, name)(reduction=reduction, **options)
    y_true, y_pred = CASES64[name]()
    y_pred[3] = np.nan
    assert _core._quick(loss.definition, _core._plan(loss.definition, loss.options), loss.options,
                        None, reduction, y_true, y_pred, True) is not None
    quick = loss(y_true, y_pred)
    assert np.asarray(quick).dtype == np.float64
    _same(quick, _general(monkeypatch, lambda: loss(y_true, y_pred)))
    quick_v, quick_g = loss.value_and_gradient(y_true, y_pred)
    slow_v, slow_g = _general(monkeypatch, lambda: loss.value_and_gradient(y_true, y_pred))
    _same(quick_v, slow_v)
    _same(quick_g, slow_g)
