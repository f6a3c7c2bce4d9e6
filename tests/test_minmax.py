"""The compiled one-pass (min, max) of the core's small range checks, against NumPy's reductions."""

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
