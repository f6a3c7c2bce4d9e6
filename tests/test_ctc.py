"""CTC beyond the catalog's oracle entries (tests/oracle/families/sequence.py): the oracle itself
against a brute-force sum over alignments, bad inputs, lengths, impossible alignments and
``zero_infinity``, the blank index, reductions against PyTorch, long sequences, and autograd."""

from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np
import pytest
from oracle.families.sequence import ctc_forward

import losskit

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _collapse(path: tuple[int, ...], blank: int) -> list[int]:
    out, prev = [], None
    for c in path:
        if c != prev and c != blank:
            out.append(c)
        prev = c
    return out


def test_oracle_forward_equals_the_sum_over_every_alignment() -> None:
    """The oracle's recursion against the definition: every path of length T, collapsed."""
    rng = np.random.default_rng(1)
    with mpmath.mp.workdps(40):
        for labels, T, C, blank in (([1, 1], 4, 3, 0), ([2, 1, 2], 5, 3, 0), ([0, 1], 4, 3, 2),
                                    ([], 3, 2, 0), ([1], 1, 2, 0)):
            q = [[mpmath.mpf(v) for v in row] for row in rng.dirichlet(np.ones(C), size=T)]
            brute = mpmath.fsum(mpmath.fprod(q[t][c] for t, c in enumerate(path))
                                for path in itertools.product(range(C), repeat=T)
                                if _collapse(path, blank) == labels)
            assert abs(ctc_forward(labels, q, blank) - brute) <= mpmath.mpf(10) ** -35


def _inputs(rng: np.random.Generator, n: int = 4, t: int = 6, c: int = 4, s: int = 3):
    z = rng.normal(size=(n, t, c))
    labels = rng.integers(1, c, size=(n, s))
    return labels, z


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"y_true": np.array([1, 2]), "y_pred": np.zeros((2, 3, 4))}, "y_true must have shape"),
    ({"y_true": np.array([[1, 2]]), "y_pred": np.zeros((3, 4))}, "at least 3 axes"),
    ({"y_true": np.array([[1, 0, 2]]), "y_pred": np.zeros((1, 5, 4))}, "a label follows a blank"),
    ({"y_true": np.array([[1, 4]]), "y_pred": np.zeros((1, 5, 4))}, r"in \[0, 3\] other than"),
    ({"y_true": np.array([[1.5, 2]]), "y_pred": np.zeros((1, 5, 4))}, "integer labels"),
    ({"y_true": np.array([[1, 2]]), "y_pred": np.zeros((1, 5, 4)), "input_lengths": np.array([6])},
     r"input_lengths must hold whole numbers in \[0, 5\]"),
    ({"y_true": np.array([[1, 2]]), "y_pred": np.zeros((1, 5, 4)), "label_lengths": np.array([-1])},
     r"label_lengths must hold whole numbers in \[0, 2\]"),
    ({"y_true": np.array([[1, 2]]), "y_pred": np.zeros((1, 5, 4)), "blank": 4}, "blank=4 is not a class"),
    ({"y_true": np.array([[1, 2]]), "y_pred": np.zeros((1, 5, 4)), "label_lengths": np.array([1, 2])},
     "does not broadcast"),
])
def test_bad_inputs_are_refused_with_a_clear_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        losskit.ctc(**kwargs)


def test_bad_options_are_refused() -> None:
    with pytest.raises(TypeError, match="blank must be a non-negative integer"):
        losskit.CTC(blank=1.0)
    with pytest.raises(ValueError, match="blank must be a non-negative"):
        losskit.CTC(blank=-1)
    with pytest.raises(TypeError, match="zero_infinity must be True or False"):
        losskit.CTC(zero_infinity=1)


def test_padding_beyond_the_label_length_is_ignored(rng: np.random.Generator) -> None:
    labels, z = _inputs(rng)
    ll = np.array([3, 2, 1, 0])
    padded = np.where(np.arange(3) < ll[:, None], labels, -7)  # any padding value with label_lengths
    blank_padded = np.where(np.arange(3) < ll[:, None], labels, 0)  # the blank: lengths implied
    a = losskit.ctc(padded, z, label_lengths=ll)
    b = losskit.ctc(blank_padded, z)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------- against PyTorch's ctc_loss


def _torch(labels, z, il=None, ll=None, blank=0, reduction="none", zero_infinity=False):
    n, t = z.shape[:2]
    zt = torch.tensor(z, requires_grad=True)
    lp = F.log_softmax(zt, -1)
    il = torch.full((n,), t) if il is None else torch.tensor(il)
    ll = torch.full((n,), labels.shape[1]) if ll is None else torch.tensor(ll)
    out = F.ctc_loss(lp.transpose(0, 1), torch.tensor(labels), il, ll, blank=blank,
                     reduction=reduction, zero_infinity=zero_infinity)
    out.sum().backward()
    return out.detach().numpy(), zt.grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions_match_pytorch(reduction: str, rng: np.random.Generator) -> None:
    """PyTorch's 'mean' is length_normalize=True with the default reduction (the twin mapping)."""
    labels, z = _inputs(rng, n=5, t=8, s=3)
    il, ll = np.array([8, 7, 6, 8, 5]), np.array([3, 2, 0, 1, 3])
    ours = losskit.CTC(reduction="sum_over_batch_size" if reduction == "mean" else reduction,
                       length_normalize=reduction == "mean")
    value, grad = ours.value_and_gradient(labels, z, input_lengths=il, label_lengths=ll)
    tv, tg = _torch(labels, z, il, ll, reduction=reduction)
    np.testing.assert_allclose(value, tv, rtol=1e-12)
    np.testing.assert_allclose(grad, tg, rtol=1e-9, atol=1e-15)


def test_blank_index_matches_pytorch(rng: np.random.Generator) -> None:
    z = rng.normal(size=(3, 7, 5))
    labels = rng.integers(0, 4, size=(3, 3))  # classes 0..3; the blank is 4
    value, grad = losskit.CTC(blank=4, reduction="sum").value_and_gradient(labels, z)
    tv, tg = _torch(labels, z, blank=4, reduction="sum")
    np.testing.assert_allclose(value, tv, rtol=1e-12)
    np.testing.assert_allclose(grad, tg, rtol=1e-9, atol=1e-15)


def test_impossible_alignment_and_zero_infinity() -> None:
    """[1, 1] needs 3 steps (a blank between the repeats): with 2 the value is +inf exactly."""
    z = np.zeros((2, 3, 3))
    labels = np.array([[1, 1], [1, 2]])
    il = np.array([2, 2])
    value, grad = losskit.CTC(reduction="none").value_and_gradient(labels, z, input_lengths=il)
    assert value[0] == math.inf
    assert np.isfinite(value[1])
    assert np.isnan(grad[0]).all()
    assert np.isfinite(grad[1]).all()
    ours = losskit.CTC(reduction="sum", zero_infinity=True)
    v, g = ours.value_and_gradient(labels, z, input_lengths=il)
    tv, tg = _torch(labels, z, il, reduction="sum", zero_infinity=True)
    np.testing.assert_allclose(v, tv, rtol=1e-12)
    np.testing.assert_allclose(g, tg, rtol=1e-12, atol=1e-15)
    assert (g[0] == 0).all()


def test_empty_labels_and_empty_inputs() -> None:
    """L = 0: -sum_t log q_t(blank); T_n = 0 and L = 0: log 1 = 0; T_n = 0 and L > 0: impossible."""
    z = np.log(np.array([[[0.5, 0.25, 0.25]] * 3] * 3))
    labels = np.array([[0], [0], [1]])
    value = losskit.ctc(labels, z, input_lengths=np.array([3, 0, 0]), label_lengths=np.array([0, 0, 1]),
                        from_logits=False)
    np.testing.assert_allclose(value, [3 * math.log(2), 0.0, math.inf])


def test_long_sequences_keep_their_digits_in_float32() -> None:
    """T = 400: float32 input against PyTorch in float64 on the same float32 values (its error,
    ~T eps64, is far below float32's ulp). PyTorch's own float32 result drifts with T (measured: 2 ulp
    at T = 400, 7 at T = 2000)."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 400, 6)).astype(np.float32)
    labels = rng.integers(1, 6, size=(4, 60))
    ours = losskit.ctc(labels, z)
    ref, _ = _torch(labels, z.astype(np.float64))
    ulp = np.abs(ours.astype(np.float64) - ref) / (np.abs(ref) * np.finfo(np.float32).eps)
    assert ours.dtype == np.float32
    assert ulp.max() <= 1.0, ulp


# ---------------------------------------------------------------------------- other peers, backends


def test_keras_gradient_at_float32_tolerance(rng: np.random.Generator) -> None:
    """Keras computes CTC in float32 whatever the input dtype: values and gradients to 1e-4."""
    keras = pytest.importorskip("keras")
    import jax
    import jax.numpy as jnp

    labels, z = _inputs(rng, n=3, t=6, s=2)
    z = z.astype(np.float32)
    kv = keras.losses.ctc(jnp.asarray(labels), jnp.asarray(z))
    kg = jax.grad(lambda q: keras.losses.ctc(jnp.asarray(labels), q).sum())(jnp.asarray(z))
    value, grad = losskit.CTC(reduction="sum").value_and_gradient(labels, z)
    np.testing.assert_allclose(float(value), float(np.sum(kv)), rtol=1e-5)
    np.testing.assert_allclose(grad, np.asarray(kg), atol=1e-5)


def test_torch_autograd_and_jax_grad(rng: np.random.Generator) -> None:
    jax = pytest.importorskip("jax")
    labels, z = _inputs(rng)
    expected = losskit.CTC(reduction="sum").gradient(labels, z)
    zt = torch.tensor(z, requires_grad=True)
    losskit.CTC(reduction="sum")(torch.tensor(labels), zt).backward()
    np.testing.assert_allclose(zt.grad.numpy(), expected, rtol=1e-15, atol=1e-17)
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        g = jax.grad(lambda q: losskit.CTC(reduction="sum")(jax.numpy.asarray(labels), q))(
            jax.numpy.asarray(z))
    finally:
        jax.config.update("jax_enable_x64", previous)
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-15, atol=1e-17)


def test_float32_rows_the_plain_path_cannot_vouch_for_take_the_double_length_one() -> None:
    """float32 input runs plain float64 with a per-row error bound; a near-certain row (loss ~1e-9,
    T = 30, where the plain bound ~T u / loss exceeds the budget) is flagged and recomputed in
    double length. Both rows against the mpmath forward recursion, within 8 float32 ulps."""
    from losskit.losses import sequence

    rng = np.random.default_rng(7)
    t, c = 30, 4
    z = rng.normal(size=(2, t, c))
    labels = np.array([[1, 2], [3, 1]])
    z[1, :, 0] += 30.0  # row 1: blank everywhere but two steps, each far above the rest
    z[1, 10, 3] += 60.0
    z[1, 20, 1] += 60.0
    z = z.astype(np.float32)
    _, _, redo = sequence._ctc_plain(labels, z.reshape(2, -1).astype(np.float64), False,
                                     event_shape=(t, c), blank=0, from_logits=True,
                                     length_normalize=False, input_lengths=None, label_lengths=None)
    assert redo.tolist() == [False, True]
    values = losskit.ctc(labels, z)
    with mpmath.mp.workdps(60):
        for row in range(2):
            q = []
            for step in z[row].astype(np.float64):
                ex = [mpmath.exp(mpmath.mpf(float(v))) for v in step]
                total = mpmath.fsum(ex)
                q.append([v / total for v in ex])
            exact = -mpmath.log(ctc_forward(labels[row].tolist(), q, 0))
            ulp = abs(mpmath.mpf(float(values[row])) - exact) / (exact * np.finfo(np.float32).eps)
            assert ulp <= 8, (row, float(exact), float(values[row]))


# ------------------------------------------------------------- the compiled path, the JAX callback


def _random_case(rng: np.random.Generator):
    n, t, c, s = (int(v) for v in (rng.integers(1, 6), rng.integers(1, 25), rng.integers(2, 8),
                                   rng.integers(1, 6)))
    blank = int(rng.integers(0, c))
    z = (rng.normal(size=(n, t, c)) * rng.choice([0.5, 3.0, 30.0])).astype(np.float32)
    labels = rng.integers(0, c - 1, size=(n, s))
    labels = np.where(labels >= blank, labels + 1, labels)
    return z.astype(np.float64), labels, blank, rng.integers(0, s + 1, size=n), rng.integers(0, t + 1, size=n)


def test_compiled_plain_recursion_matches_the_numpy_one() -> None:
    """_cpu.c's ctc against _ctc_plain (the same float64 recursion and bounds in NumPy): the same
    rows flagged for the double-length kernel, the same values and gradients on the others (to
    rounding: the row sums are in another order), logits and log-probabilities, with and without
    length normalisation, random lengths (empty and impossible alignments among them)."""
    from losskit.losses import sequence

    if sequence._cpu_ctc() is None:
        pytest.skip("built without the C kernels")
    rng = np.random.default_rng(11)
    kept = 0
    for _ in range(60):
        z, labels, blank, ll, tl = _random_case(rng)
        n, t, c = z.shape
        for from_logits in (True, False):
            x = z if from_logits else z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
            for normalize in (False, True):
                kw = dict(event_shape=(t, c), blank=blank, from_logits=from_logits,
                          length_normalize=normalize, input_lengths=tl, label_lengths=ll)
                v1, g1, r1 = sequence._ctc_plain(labels, x.reshape(n, -1), True, **kw)
                v2, g2, r2 = sequence._ctc_plain_c(labels, x.reshape(n, -1), True, **kw)
                np.testing.assert_array_equal(r1, r2)
                ok = ~r1
                kept += int(ok.sum())
                np.testing.assert_allclose(v2[ok], v1[ok], rtol=1e-13)
                np.testing.assert_allclose(g2[ok], g1[ok], rtol=1e-12, atol=1e-15)
    assert kept > 100  # most rows pass their bound


def test_compiled_double_length_recursion_matches_the_numpy_one() -> None:
    """_cpu.c's ctc_dd (float64 inputs, and the float32 rows the plain tier flags) against
    _ctc_double, both within 8 float64 ulps of the exact value on the rows ctc_dd keeps, so within
    16 of each other: logits and log-probabilities, with and without length normalisation, random
    lengths. Rows it must not vouch for are flagged: no input steps, an impossible alignment, a
    NaN or infinite score, scores spread over more than 650 (an exponential near underflow)."""
    from losskit.losses import sequence

    if sequence._cpu_ctc("ctc_dd") is None:
        pytest.skip("built without the C kernels")
    rng = np.random.default_rng(12)
    kept = 0
    for _ in range(40):
        z, labels, blank, ll, tl = _random_case(rng)
        n, t, c = z.shape
        z = z + rng.normal(size=z.shape) * 1e-3  # float64 scores, not widened float32 ones
        for from_logits in (True, False):
            x = z if from_logits else z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
            for normalize in (False, True):
                kw = dict(event_shape=(t, c), blank=blank, from_logits=from_logits,
                          length_normalize=normalize, input_lengths=tl, label_lengths=ll)
                v1, g1 = sequence._ctc_double(np, labels, x.reshape(n, -1), grad=True,
                                              zero_infinity=False, **kw)
                v2, g2, r2 = sequence._ctc_dd_c(labels, x.reshape(n, -1), True, **kw)
                _, _, r3 = sequence._ctc_dd_c(labels, x.reshape(n, -1), False, **kw)
                assert not np.any(r3 & ~r2)  # the value alone is flagged no more often
                assert np.all(r2[(tl == 0) | ~np.isfinite(v1)])
                ok = ~r2
                kept += int(ok.sum())
                eps = np.finfo(np.float64).eps
                np.testing.assert_allclose(v2[ok], v1[ok], rtol=16 * eps, atol=0)
                np.testing.assert_allclose(g2[ok], g1[ok], rtol=16 * eps, atol=1e-300)
    assert kept > 100
    z = rng.normal(size=(3, 6, 4))
    z[1, 2, 3] = -700.0
    z[2, 4, 1] = np.nan
    labels = np.array([[1, 2], [1, 2], [1, 2]])
    _, _, redo = sequence._ctc_dd_c(labels, z.reshape(3, -1), True, event_shape=(6, 4), blank=0,
                                    from_logits=True, length_normalize=False, input_lengths=None,
                                    label_lengths=None)
    assert redo.tolist() == [False, True, True]
    value = losskit.ctc(labels, z)  # the flagged rows by _ctc_double: row 2 is NaN
    assert np.isfinite(value[:2]).all()
    assert np.isnan(value[2])


def test_jax_jit_matches_numpy_under_grad_and_vmap(rng: np.random.Generator) -> None:
    """JAX arrays on the CPU take the NumPy kernels through a callback: jax.jit of value_and_grad
    gives NumPy's float32 values and gradients exactly, also under vmap (an extra batch axis)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    z = rng.normal(size=(2, 3, 7, 5)).astype(np.float32)
    labels = rng.integers(1, 5, size=(2, 3, 3))
    il = np.array([[7, 6, 5], [7, 7, 4]])
    loss = losskit.CTC(reduction="sum")
    f = jax.jit(jax.value_and_grad(lambda p, y, n: loss(y, p, input_lengths=n)))
    for k in range(2):
        value, grad = f(jnp.asarray(z[k]), jnp.asarray(labels[k]), jnp.asarray(il[k]))
        ev, eg = loss.value_and_gradient(labels[k], z[k], input_lengths=il[k])
        assert value.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(value), ev)
        np.testing.assert_array_equal(np.asarray(grad), eg)
    per_seq = losskit.CTC(reduction="none")
    batched = jax.jit(jax.vmap(lambda p, y, n: per_seq(y, p, input_lengths=n)))(
        jnp.asarray(z), jnp.asarray(labels), jnp.asarray(il))
    expected = [per_seq(labels[k], z[k], input_lengths=il[k]) for k in range(2)]
    np.testing.assert_array_equal(np.asarray(batched), np.stack(expected))


def test_traced_double_length_recursion_matches_numpy(monkeypatch: pytest.MonkeyPatch,
                                                      rng: np.random.Generator) -> None:
    """The traced recursion (JAX off the CPU; here forced) under jax.jit, in float32 pairs, against
    NumPy's float64 result: values and gradients within a few float32 ulps."""
    jax = pytest.importorskip("jax")
    from losskit.losses import sequence

    monkeypatch.setattr(sequence, "_jax_on_cpu", lambda: False)
    z = rng.normal(size=(2, 5, 3)).astype(np.float32)  # one small case: the graph takes seconds
    labels = np.array([[1, 2], [2, 2]])
    loss = losskit.CTC(reduction="sum")
    value, grad = jax.jit(jax.value_and_grad(lambda p, y: loss(y, p)))(
        jax.numpy.asarray(z), jax.numpy.asarray(labels))
    ev, eg = loss.value_and_gradient(labels, z.astype(np.float64))
    eps = np.finfo(np.float32).eps
    assert abs(float(value) - ev) <= 4 * eps * abs(ev)
    np.testing.assert_allclose(np.asarray(grad), eg, rtol=16 * eps, atol=4 * eps * np.abs(eg).max())
