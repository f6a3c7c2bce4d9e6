"""The fused evaluation path for binary cross-entropy (``_cpu.bce_exact``: screening, per-sample value
and exact sum in one compiled pass) against the general path (the loss API, then the exact grid), and
the general path alone when the extension is absent: the same bits either way."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

import losskit
from losskit.metrics import LossMean, _accumulate, _exact
from losskit.metrics._exact import BUCKETS, OFFSET

fused = pytest.mark.skipif(getattr(_exact._cpu, "bce_exact", None) is None,
                           reason="built without the C kernels")


def probabilities(rng: np.random.Generator, n: int) -> np.ndarray:
    """Probabilities over the whole of (0, 1): uniform, near 0 and near 1 (down to 2**-1000), near
    1/2 (where log_both switches), and the ends."""
    k = n // 4
    p = np.concatenate([rng.random(k), 2.0 ** -rng.uniform(1, 1000, k),
                        1 - 2.0 ** -rng.uniform(1, 53, k), 0.5 + (rng.random(n - 3 * k) - 0.5) * 1e-9])
    p[:6] = [0.5, np.nextafter(0.5, 1), np.nextafter(0.5, 0), 1 - 2**-53, 2**-53, 2.0**-1022]
    return rng.permutation(p)


def api_values(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.asarray(losskit.binary_crossentropy(y.astype(np.float64)[:, None], p[:, None]))


def exact_sum(values: np.ndarray) -> Fraction:
    return sum((Fraction(float(v)) for v in values), Fraction(0))


def bucket_sum(acc_row: np.ndarray) -> Fraction:
    return sum((Fraction(int(c) * 2 ** (8 * j), 2**OFFSET) for j, c in enumerate(acc_row) if c),
               Fraction(0))


@fused
@pytest.mark.parametrize("dtype", ["int8", "uint8", "bool", "int64", "float32", "float64", "soft"])
def test_values_are_the_loss_api_values_and_sums_exact(rng, dtype):
    n = 20_000
    p = probabilities(rng, n)
    y = rng.random(n) if dtype == "soft" else (rng.random(n) < 0.5).astype(dtype)
    p[(y == 1) & (p == 0)] = 0.25   # no infinite values here (they send the batch elsewhere)
    values, acc = np.empty(n), np.zeros((1, BUCKETS), dtype=np.int64)
    counts = _exact._cpu.bce_exact(y, y.dtype.kind, y.itemsize, p, "f", 8, n, None, acc, BUCKETS,
                                   values)
    assert counts == (0, 0, 0, 0)
    ref = api_values(y, p)
    assert np.array_equal(values.view(np.int64), ref.view(np.int64))   # bit for bit, zeros too
    assert bucket_sum(acc[0]) == exact_sum(ref)


@fused
def test_values_against_mpmath(rng):
    n = 300
    p = probabilities(rng, n)
    y = (rng.random(n) < 0.5).astype(np.int8)
    p[(y == 1) & (p == 0)] = 0.25
    values = np.empty(n)
    _exact._cpu.bce_exact(y, "i", 1, p, "f", 8, n, None, None, BUCKETS, values)
    mpmath.mp.prec = 120
    for yi, pi, v in zip(y.tolist(), p.tolist(), values.tolist(), strict=True):
        exact = -mpmath.log(mpmath.mpf(pi)) if yi else -mpmath.log1p(-mpmath.mpf(pi))
        if exact == 0:
            assert v == 0
            continue
        assert abs(mpmath.mpf(v) - exact) <= 8 * math.ulp(float(exact)), (yi, pi, v)


@fused
def test_groups_and_bad_rows_are_counted(rng):
    n = 3000
    p, y = rng.random(n), (rng.random(n) < 0.5).astype(np.int8)
    gid = rng.integers(0, 5, n)
    acc = np.zeros((5, BUCKETS), dtype=np.int64)
    assert _exact._cpu.bce_exact(y, "i", 1, p, "f", 8, n, gid, acc, BUCKETS, None) == (0, 0, 0, 0)
    ref = api_values(y, p)
    for g in range(5):
        assert bucket_sum(acc[g]) == exact_sum(ref[gid == g])
    p[[3, 10]] = np.nan
    p[20], p[21] = 1.5, -0.5
    y[30] = 2
    p[40], y[40] = 0.0, 1          # -log 0: infinite
    p[50] = 1e-310                  # subnormal
    counts = _exact._cpu.bce_exact(y, "i", 1, p, "f", 8, n, None, acc[:1].copy(), BUCKETS, None)
    assert counts == (2, 3, 1, 1)
    with pytest.raises(ValueError, match="group id"):
        _exact._cpu.bce_exact(y[:5], "i", 1, p[:5], "f", 8, 5, np.full(5, 7), acc, BUCKETS, None)
    with pytest.raises(ValueError, match="unsupported dtype"):
        _exact._cpu.bce_exact(y, "c", 8, p, "f", 8, n, None, acc, BUCKETS, None)


def generic(monkeypatch: pytest.MonkeyPatch, extension: bool) -> None:
    """The general path (loss API then exact grid); without ``extension``, no compiled code at all."""
    monkeypatch.setattr(_accumulate, "_cpu", None)
    if not extension:
        from losskit._backends import numpy as cpu_backend

        monkeypatch.setattr(_exact, "_cpu", None)
        monkeypatch.setattr(cpu_backend, "_cpu", None)


def run(y: np.ndarray, p: np.ndarray, batches: int, **kw) -> LossMean:
    m = LossMean("binary_crossentropy", on_bad_row="skip", **kw)
    keys = kw.get("by")
    for idx in np.array_split(np.arange(p.size), batches):
        m.update(y[idx], p[idx], keys=None if keys is None else {"c": y[idx] * 0 + idx % 3},
                 row_offset=int(idx[0]))
    return m


@pytest.mark.parametrize("extension", [True, False])
def test_fused_and_general_paths_give_the_same_bits(monkeypatch, rng, extension):
    """Clean batches take the fused path and a batch with a NaN or -log 0 the general one: whatever
    the batching, the result is the correctly rounded mean of the loss API's values over the scored
    rows. Without the extension (``extension=False``), the general path alone gives the correctly
    rounded mean of the generic kernels' values."""
    n = 50_000
    p = probabilities(rng, n)
    y = (rng.random(n) < 0.5).astype(np.int8)
    p[(y == 1) & (p == 0)] = 0.25
    p[777] = np.nan
    p[40_000], y[40_000] = 1.0, 0
    if not extension:
        generic(monkeypatch, extension)
    ok = ~np.isnan(p)
    values = api_values(y[ok], p[ok])
    assert np.isinf(values).sum() == 1
    finite = values[np.isfinite(values)]
    expected_sum = exact_sum(finite)
    for batches in (1, 7, 64):
        m = run(y, p, batches)
        assert m.refused["binary_crossentropy"] == {"nan": 1}
        assert m.result() == math.inf
        st = m.stats[0][0]
        assert Fraction(int(st.value.integers()[0, 0]), 2**OFFSET) == expected_sum
        assert int(st.count[0, 0]) == ok.sum()
    clean = run(y[:30_000], p[:30_000], 5)
    expected = float(exact_sum(api_values(y[:30_000][ok[:30_000]], p[:30_000][ok[:30_000]]))
                     / int(ok[:30_000].sum()))
    assert clean.result() == expected


@fused
def test_slices_and_kept_values_match_the_general_path(monkeypatch, rng):
    n = 20_000
    p, y = rng.random(n), (rng.random(n) < 0.3).astype(np.int8)
    by = [["c"], ["c", "c"]]
    a = [run(y, p, 3, by=b).report(ci=None) for b in by]
    kept = LossMean("bce").update(y, p, keep_values=True)
    generic(monkeypatch, extension=True)
    b = [run(y, p, 3, by=b_).report(ci=None) for b_ in by]
    assert a == b
    ref = LossMean("bce").update(y, p, keep_values=True)
    assert np.array_equal(kept[0][1], ref[0][1])
    assert not kept[0][0].any()


@fused
def test_bad_row_error_is_the_general_one():
    p = np.array([0.2, 0.7, 1.5, 0.1])
    y = np.array([0, 1, 1, 0], dtype=np.int8)
    with pytest.raises(losskit.metrics.BadRowError, match=r"row 12: y_true=1, y_pred=1\.5 \(domain"):
        LossMean("bce").update(y, p, row_offset=10)


def test_pending_compiled_sums_fold_before_their_bound(rng):
    """Grid.add_buckets keeps int64 buckets pending and folds them into the digits when read, or
    before the bound of their buckets (2**24 per value) could pass 2**52: the sums stay exact."""
    from losskit.metrics._exact import Grid

    acc = rng.integers(0, 1 << 40, size=(2, BUCKETS), dtype=np.int64)
    grid = Grid(1)
    for _ in range(5):   # rows=2**27 each: the third call folds the first two
        grid.add_buckets(acc.copy(), 1 << 27)
        assert grid._pending_bound <= 1 << 28
    expected = [5 * sum(int(c) << (8 * j) for j, c in enumerate(row)) for row in acc]
    assert [int(v) for v in grid.integers()[:, 0]] == expected
    assert grid._pending is None
