"""The compiled one-pass checks of the core: (min, max) of the small range checks, and the sign labels' kind
(label_kind), against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from losskit._backends import numpy as backend

pytestmark = pytest.mark.skipif(not backend.available(), reason="built without the C kernels")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 31, 33, 1000, backend.MINMAX_MAX_ELEMENTS])
def test_equals_numpy(dtype: type, n: int) -> None:
    a = np.random.default_rng(n).standard_normal(n).astype(dtype) * 1e30
    assert backend.minmax(a) == (float(a.min()), float(a.max()))
    for special in (np.inf, -np.inf, np.finfo(dtype).tiny, -0.0):
        b = a.copy()
        b[n // 2] = special
        assert backend.minmax(b) == (float(b.min()), float(b.max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 8, 17, 1000])
def test_nan_anywhere_gives_nan(dtype: type, n: int) -> None:
    a = np.ones(n, dtype)
    for at in {0, n // 2, n - 1}:
        b = a.copy()
        b[at] = np.nan
        low, high = backend.minmax(b)
        assert np.isnan(low)
        assert np.isnan(high)


def test_other_arrays_are_left_to_numpy() -> None:
    assert backend.minmax(np.zeros(0, np.float32)) is None
    assert backend.minmax(np.zeros(backend.MINMAX_MAX_ELEMENTS + 1, np.float32)) is None
    assert backend.minmax(np.zeros((4, 4))[:, :2]) is None  # not contiguous
    assert backend.minmax(np.zeros(4, np.int64)) is None
    assert backend.minmax(np.zeros(4, np.float16)) is None


def _kind_by_numpy(a: np.ndarray) -> int:
    if np.all(np.abs(a) == 1):
        return 1
    return 2 if np.all((a == 0) | (a == 1)) else 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 31, 4095, 4096, 4097, 70_000])  # blocks of 4096; the GIL above 65536
def test_label_kind_equals_numpy(dtype: type, n: int) -> None:
    """label_kind, the sign labels' one-pass check (hinge's), against its definition in NumPy, with
    one element anywhere changed to a value of every kind (NaN, -0.0, 2, 0.5, inf, -1, 0, 1)."""
    rng = np.random.default_rng(n)
    for base in (np.where(rng.random(n) < 0.5, -1.0, 1.0), (rng.random(n) < 0.5) * 1.0, np.ones(n)):
        a = base.astype(dtype)
        assert backend.label_kind(a) == _kind_by_numpy(a)
        for at in {0, n // 2, n - 1} if n else set():
            for special in (np.nan, -0.0, 2.0, 0.5, np.inf, -1.0, 0.0, 1.0):
                b = a.copy()
                b[at] = special
                assert backend.label_kind(b) == _kind_by_numpy(b), (at, special)
    assert backend.label_kind(np.ones((4, 4))[:, :2]) is None  # not contiguous: NumPy's check
    assert backend.label_kind(np.ones(4, np.int64)) is None
