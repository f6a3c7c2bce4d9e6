"""Exactness of the accumulation: against math.fsum, and the same bits whatever the batching."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

import losskit
from losskit.metrics import LossMean, exact_mean
from losskit.metrics._exact import OFFSET, Grid


def exact_sum_fsum(values: np.ndarray) -> Fraction:
    """The exact sum of floats from math.fsum alone: fsum gives the correctly rounded sum s1; fsum of
    the values and -s1 the correctly rounded remainder s2, and so on until a remainder is 0. Each
    remainder is exact, so the sum is s1 + s2 + ... exactly."""
    parts: list[float] = []
    data = values.tolist()
    while True:
        s = math.fsum(data + [-p for p in parts])
        if s == 0:
            return sum((Fraction(p) for p in parts), Fraction(0))
        parts.append(s)


def correctly_rounded_mean(values: np.ndarray) -> float:
    return float(exact_sum_fsum(values) / len(values))  # Fraction -> float rounds once, to nearest


def mixed(rng: np.random.Generator, n: int) -> np.ndarray:
    """Signed values of mixed magnitude (1e-30 .. 1e30), with cancellation."""
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-30, 31, n)
    x[: n // 4] *= -1
    return x


def test_mean_of_mixed_magnitudes_equals_fsum_reference(rng):
    # 10**6 values keep the test near 3 s on a loaded machine; 10**7 runs in benchmarks/evaluate.py
    x = mixed(rng, 1_000_000)
    expected = correctly_rounded_mean(x)
    assert exact_mean(x) == expected
    assert exact_mean(x) != float(np.mean(x))  # the naive mean differs here: the test can fail


@pytest.mark.parametrize("batches", [1, 7, 64])
def test_batching_and_merge_order_give_the_same_bits(rng, batches):
    x = mixed(rng, 200_000)
    y0 = np.zeros_like(x)
    expected = correctly_rounded_mean(x)
    # through a loss (per-sample |x|), and the signed values through the grid itself
    values = np.asarray(losskit.mean_absolute_error(y0[:, None], x[:, None]))
    exact_abs = correctly_rounded_mean(values)
    parts = []
    for idx in np.array_split(np.arange(x.size), batches):
        m = LossMean("mae")
        m.update(y0[idx], x[idx], row_offset=int(idx[0]))
        parts.append(m)
    order = rng.permutation(batches)
    total = LossMean("mae")
    for k in order:
        total.merge(parts[k])
    assert total.result() == exact_abs
    streamed = LossMean("mae")
    for idx in np.array_split(np.arange(x.size), batches):
        streamed.update(y0[idx], x[idx])
    assert streamed.result() == exact_abs
    grid = Grid()
    for idx in np.array_split(np.arange(x.size), batches):
        grid.add(np.zeros(idx.size, dtype=np.int64), x[idx], 1)
    assert Fraction(int(grid.integers()[0, 0]), 1 << OFFSET) == exact_sum_fsum(x)
    assert float(Fraction(int(grid.integers()[0, 0]), 1 << OFFSET) / x.size) == expected


def test_extreme_values_and_subnormals_are_exact():
    x = np.array([1e300, -1e300, 5e-324, 2.5e-320, -1e-310, 1.0, 2.0**-1074 * 3, 1.7e308, -1.7e308])
    grid = Grid()
    grid.add(np.zeros(x.size, dtype=np.int64), x, 1)
    assert Fraction(int(grid.integers()[0, 0]), 1 << OFFSET) == sum(map(Fraction, x.tolist()))


def test_weighted_mean_is_the_correctly_rounded_ratio(rng):
    y = rng.random(5000)
    p = rng.random(5000)
    w = rng.random(5000) * 10.0 ** rng.integers(-5, 5, 5000)
    values = np.asarray(losskit.mean_squared_error(y[:, None], p[:, None]))
    products = (Fraction(a) * Fraction(b) for a, b in zip(w.tolist(), values.tolist(), strict=True))
    expected = float(sum(products) / sum(map(Fraction, w.tolist())))
    m = LossMean("mse")
    for idx in np.array_split(np.arange(5000), 3):
        m.update(y[idx], p[idx], sample_weight=w[idx])
    assert m.result() == expected
    # merged in any order with an empty accumulator and with an unweighted one
    empty = LossMean("mse")
    assert empty.merge(m).result() == expected
    plain = LossMean("mse")
    plain.update(y[:10], p[:10])
    both = LossMean("mse")
    both.update(y[:10], p[:10], sample_weight=np.ones(10))
    both.update(y, p, sample_weight=w)
    assert plain.merge(m).result() == both.result()


def test_state_is_json_and_restores_the_same_result(rng):
    y = (rng.random(1000) < 0.3).astype(float)
    p = rng.random(1000)
    keys = {"c": rng.choice(["a", "b", "c"], 1000)}
    m = LossMean(["bce", "mse"], by=["c"], replicates=5, seed=3)
    m.update(y, p, keys=keys)
    back = LossMean.from_state(json.loads(json.dumps(m.state)))
    assert back.report() == m.report()
    half = LossMean(["bce", "mse"], by=["c"], replicates=5, seed=3)
    half.update(y[:400], p[:400], keys={"c": keys["c"][:400]})
    rest = LossMean(["bce", "mse"], by=["c"], replicates=5, seed=3)
    rest.update(y[400:], p[400:], keys={"c": keys["c"][400:]}, row_offset=400)
    merged = LossMean.from_state(json.loads(json.dumps(rest.state))).merge(
        LossMean.from_state(json.loads(json.dumps(half.state))))
    assert merged.report() == m.report()


def test_torch_and_jax_batches_give_the_numpy_result(rng):
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    y = (rng.random(300) < 0.5).astype(np.float32)
    p = rng.random(300).astype(np.float32)
    ref = LossMean("bce")
    ref.update(y, p)
    t = LossMean("bce")
    t.update(torch.tensor(y), torch.tensor(p))
    j = LossMean("bce")
    j.update(jnp.asarray(y), jnp.asarray(p))
    assert t.result() == ref.result()
    assert j.result() == ref.result()


def test_infinite_values_and_refused_rows():
    m = LossMean("bce", on_bad_row="skip")
    m.update([1.0, 0.0, 1.0, 0.5, 1.0], [0.0, 0.5, np.nan, 0.5, 1.5])
    assert m.result() == math.inf                     # -log(0) for the first row
    assert m.refused["binary_crossentropy"] == {"nan": 1, "domain": 1}
    strict = LossMean("bce")
    with pytest.raises(losskit.metrics.BadRowError, match=r"row 2: .*y_pred=nan"):
        strict.update([1.0, 0.0, 1.0], [0.5, 0.5, np.nan])
    labels = LossMean("sparse_categorical_crossentropy", on_bad_row="skip")
    labels.update(np.array([0, 3, 1]), np.full((3, 3), 1 / 3))
    assert labels.refused["sparse_categorical_crossentropy"] == {"label": 1}
    exact = -mpmath.log(mpmath.mpf(1 / 3))  # the two kept rows' loss, -log of the float64 1/3
    assert abs(mpmath.mpf(labels.result()) - exact) <= 8 * np.spacing(1.0986)  # the 8-ulp contract
    weights = LossMean("mse", on_bad_row="skip")
    weights.update([0.0, 0.0], [1.0, 2.0], sample_weight=[-1.0, 2.0])
    assert weights.refused["mean_squared_error"] == {"weight": 1}
    assert weights.result() == 4.0


def test_compiled_sums_equal_the_numpy_grid_and_exact_fractions(monkeypatch, rng):
    """The compiled one-pass sum (``_cpu.exact_sum``) and the NumPy bincount path hold the same
    integers, equal to the exact sum of the values as fractions: mixed signs and magnitudes,
    subnormals, the largest doubles (several of them, so the sum leaves the float64 range), groups."""
    from losskit.metrics import _exact

    if _exact._cpu is None:
        pytest.skip("built without the C kernels")
    big = np.finfo(np.float64).max
    x = np.concatenate([rng.standard_normal(5000) * 10.0 ** rng.integers(-300, 300, 5000),
                        [5e-324, -5e-324, 2.2e-308, big, big, big, -big / 3, 0.0, -0.0]])
    gid = rng.integers(0, 3, x.size)
    compiled = Grid(1)
    compiled.add(gid, x, 3)
    monkeypatch.setattr(_exact, "_cpu", None)
    numpy_path = Grid(1)
    numpy_path.add(gid, x, 3)
    got, ref = compiled.integers()[:, 0], numpy_path.integers()[:, 0]
    for g in range(3):
        exact = sum((Fraction(float(v)) for v in x[gid == g]), Fraction(0))
        assert Fraction(int(got[g]), 2**OFFSET) == exact
        assert got[g] == ref[g]
