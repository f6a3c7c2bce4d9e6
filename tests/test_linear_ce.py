"""losskit.linear_cross_entropy (issue 10, item 5): the chunked cross-entropy of hidden @ weight.T.

Expected values come from mpmath (the 8-ulp contract on the logits, with one-hot hidden rows so the
matmul is exact and the logits are known exactly), from float64 naive log-softmax in PyTorch on
moderate sizes, and from PyTorch's own F.cross_entropy / F.linear_cross_entropy on ordinary inputs.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import losskit

torch = pytest.importorskip("torch")
F = torch.nn.functional
EPS32 = float(np.finfo(np.float32).eps)
TINY32 = float(np.finfo(np.float32).tiny)
mpmath.mp.dps = 50


# ------------------------------------------------------------------ mpmath: the logit contract


def _np_tanh_of(z: np.ndarray, cap: float) -> np.ndarray:
    return np.tanh(z / np.float32(cap))


def _mp_reference(z: np.ndarray, label: int, ls: float, cap: float | None, tanh_of=_np_tanh_of):
    """Loss and d loss / d (pre-cap) logits of one token, in mpmath on the float32 logits (and the
    float32 capped logits as the library computes them, ``tanh_of(z, cap)`` = tanh(z / cap), the
    contract's "logits as computed")."""
    if cap is not None:
        t = np.asarray(tanh_of(z, cap), np.float32)
        zc = np.float32(cap) * t
    else:
        t, zc = None, z
    v = len(z)
    zs = [mpmath.mpf(float(x)) for x in zc]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(x) for x in zs))
    loss = (1 - mpmath.mpf(ls)) * (lse - zs[label]) + mpmath.mpf(ls) / v * mpmath.fsum(lse - x for x in zs)
    target = [mpmath.mpf(ls) / v + (1 - mpmath.mpf(ls) if j == label else 0) for j in range(v)]
    soft = [mpmath.exp(x - lse) for x in zs]
    grad = [p - c for p, c in zip(soft, target, strict=True)]
    scale = [1 - mpmath.mpf(float(x)) ** 2 for x in t] if t is not None else [1] * v
    size = [(p + c) * s for p, c, s in zip(soft, target, scale, strict=True)]
    return loss, [g * s for g, s in zip(grad, scale, strict=True)], size


def _logit_cases():
    rng = np.random.default_rng(20261207)
    yield rng.normal(size=7).astype(np.float32) * 3, 2, 0.0, None
    yield np.array([30.0, 0.0, -5.0, 1.0, -20.0], np.float32), 0, 0.0, None  # tiny loss ~1e-13
    yield np.array([80.0, 79.5, -60.0, 3.0], np.float32), 1, 0.0, None
    yield np.array([-1e4, 2.5, 2.5, 1e3, 999.0], np.float32), 3, 0.0, None  # ties, wide range
    yield rng.normal(size=9).astype(np.float32) * 4, 5, 0.1, None
    yield np.array([12.0, -3.0, 0.5, 40.0], np.float32), 3, 0.2, None
    yield rng.normal(size=6).astype(np.float32) * 20, 1, 0.0, 15.0
    yield rng.normal(size=6).astype(np.float32) * 20, 4, 0.1, 30.0
    yield np.array([5.0, 5.0, 1.0, -2.0], np.float32), 1, 0.0, None  # label at the second maximum
    yield np.array([5.0, 5.0, 1.0, -2.0], np.float32), 2, 0.1, None  # a tie, the label below it


@pytest.mark.parametrize("case", list(_logit_cases()))
@pytest.mark.parametrize("vocab_chunk", [2, None])
def test_value_and_logit_gradient_within_8_ulp_of_mpmath(case, vocab_chunk):
    """One token with hidden = e_0 and weight[:, 0] = z: the logits are z exactly. The value is
    within 8 ulp of mpmath, and grad_bias (the gradient with respect to the logits, one token)
    within 8 ulp of each entry's |softmax| + |target| (the entry itself without smoothing)."""
    z, label, ls, cap = case
    v = len(z)
    hidden = np.array([[1.0, 0.0]], np.float32)
    weight = np.stack([z, np.zeros(v, np.float32)], axis=1)
    bias = np.zeros(v, np.float32)
    value, (_, gw, gb) = losskit.linear_cross_entropy_value_and_gradient(
        hidden, weight, np.array([label]), bias, label_smoothing=ls, softcap=cap,
        vocab_chunk=vocab_chunk)
    loss, grad, size = _mp_reference(z, label, ls, cap)
    assert abs(float(value) - loss) <= 8 * EPS32 * abs(loss)
    for j in range(v):
        bound = 8 * EPS32 * (abs(grad[j]) if not ls else size[j]) + TINY32  # below: underflow
        assert abs(float(gb[j]) - grad[j]) <= bound, (j, float(gb[j]), float(grad[j]))
    np.testing.assert_array_equal(gw[:, 0], gb)  # grad_weight = G.T @ hidden, hidden = e_0


# --------------------------------------------------------- float64 naive reference, moderate size


N, H, V = 61, 24, 517


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(N, H)).astype(np.float32)
    weight = (rng.normal(size=(V, H)) * 0.6).astype(np.float32)
    bias = rng.normal(size=V).astype(np.float32)
    labels = rng.integers(0, V, size=N)
    labels[[3, 17, 40]] = -100
    return hidden, weight, bias, labels


def _reference(hidden, weight, bias, labels, *, ls=0.0, cap=None, reduction="mean", cot=None):
    """Value and gradients from float64 torch: log_softmax of the full logits (written here, not
    F.cross_entropy, for the all-ignored mean and the softcap)."""
    h, w = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (hidden, weight))
    b = None if bias is None else torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    z = h @ w.T + (0 if b is None else b)
    if cap is not None:
        z = cap * torch.tanh(z / cap)
    y = torch.tensor(labels)
    valid = y != -100
    logp = torch.log_softmax(z, dim=1)
    nll = -logp.gather(1, torch.where(valid, y, 0)[:, None])[:, 0]
    per = ((1 - ls) * nll - ls * logp.mean(dim=1)) * valid
    if reduction == "mean":
        out = per.sum() / valid.sum().clamp(min=1)
    elif reduction == "sum":
        out = per.sum()
    else:
        out = per
    weights = torch.ones_like(out) if cot is None else torch.tensor(cot, dtype=torch.float64)
    grads = torch.autograd.grad((out * weights).sum(), [t for t in (h, w, b) if t is not None])
    return out.detach().numpy(), [g.numpy() for g in grads]


def _close(got, want, rtol=2e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(float(np.abs(want).max()), 1e-30)
    assert float(np.abs(got - want).max()) <= rtol * scale


OPTIONS = [
    {},
    {"label_smoothing": 0.15},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"softcap": 4.0},
    {"softcap": 2.5, "label_smoothing": 0.1, "reduction": "sum"},
]


@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_numpy_value_and_gradients(opts, with_bias):
    hidden, weight, bias, labels = _data()
    bias = bias if with_bias else None
    value, grads = losskit.linear_cross_entropy_value_and_gradient(
        hidden, weight, labels, bias, token_chunk=13, vocab_chunk=100, **opts)
    ref_value, ref_grads = _reference(hidden, weight, bias, labels, ls=opts.get("label_smoothing", 0.0),
                                      cap=opts.get("softcap"), reduction=opts.get("reduction", "mean"))
    _close(value, ref_value)
    assert value.dtype == np.float32
    assert (grads[2] is None) == (not with_bias)
    for got, want in zip([g for g in grads if g is not None], ref_grads, strict=True):
        assert got.dtype == np.float32
        _close(got, want)
    # the value alone agrees with value_and_gradient
    alone = losskit.linear_cross_entropy(hidden, weight, labels, bias, **opts)
    np.testing.assert_allclose(alone, value, rtol=1e-6)


@pytest.mark.parametrize("opts", OPTIONS)
def test_torch_autograd(opts):
    hidden, weight, bias, labels = _data(1)
    h, w, b = (torch.tensor(x, requires_grad=True) for x in (hidden, weight, bias))
    out = losskit.linear_cross_entropy(h, w, torch.tensor(labels), b, vocab_chunk=64, **opts)
    cot = np.random.default_rng(5).normal(size=N) if opts.get("reduction") == "none" else None
    weights = torch.ones_like(out) if cot is None else torch.tensor(cot, dtype=torch.float32)
    grads = torch.autograd.grad((out * weights).sum(), (h, w, b))
    ref_value, ref_grads = _reference(hidden, weight, bias, labels, ls=opts.get("label_smoothing", 0.0),
                                      cap=opts.get("softcap"), reduction=opts.get("reduction", "mean"),
                                      cot=cot)
    _close(out.detach().numpy(), ref_value)
    for got, want in zip(grads, ref_grads, strict=True):
        _close(got.numpy(), want)


# ------------------------------------------------------------------------------------- JAX


@pytest.mark.parametrize("case", list(_logit_cases()))
def test_jax_value_and_logit_gradient_within_8_ulp_of_mpmath(case):
    """The 8-ulp contract on JAX (float32, jax.jit of jax.value_and_grad): one token, hidden = e_0,
    so the logits are weight[:, 0] exactly and d loss / d bias is the gradient of the logits."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    z, label, ls, cap = case
    v = len(z)
    hidden = jnp.asarray([[1.0, 0.0]], jnp.float32)
    weight = jnp.asarray(np.stack([z, np.zeros(v, np.float32)], axis=1))

    def loss(w, b):
        return losskit.linear_cross_entropy(hidden, w, jnp.asarray([label]), b, label_smoothing=ls,
                                            softcap=cap)

    value, (gw, gb) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(
        weight, jnp.zeros(v, jnp.float32))
    # XLA divides by the cap as a product with its reciprocal: the logits as JAX computes them
    ref, grad, size = _mp_reference(z, label, ls, cap,
                                    tanh_of=lambda z, c: jax.jit(lambda x: jnp.tanh(x / c))(z))
    assert abs(float(value) - ref) <= 8 * EPS32 * abs(ref)
    gb = np.asarray(gb)
    for j in range(v):
        bound = 8 * EPS32 * (abs(grad[j]) if not ls else size[j]) + TINY32
        assert abs(float(gb[j]) - grad[j]) <= bound, (j, float(gb[j]), float(grad[j]))
    np.testing.assert_array_equal(np.asarray(gw)[:, 0], gb)


def test_jax_float32_row_sums_over_a_large_vocabulary():
    """JAX's default float32 mode sums each row's exponentials in float32 over the whole
    vocabulary (XLA's reduction): at 128,256 classes the value and every gradient entry stay within
    8 ulp of a float64 evaluation of the same logits (one token, hidden = e_0)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    v, label = 128256, 5
    z = (np.random.default_rng(11).normal(size=v) * 3).astype(np.float32)
    weight = jnp.asarray(np.stack([z, np.zeros(v, np.float32)], axis=1))
    value, gb = jax.value_and_grad(lambda b: losskit.linear_cross_entropy(
        jnp.asarray([[1.0, 0.0]], jnp.float32), weight, jnp.asarray([label]), b))(
        jnp.zeros(v, jnp.float32))
    z64 = z.astype(np.float64)
    lse = z64.max() + np.log(np.sum(np.exp(z64 - z64.max())))
    grad = np.exp(z64 - lse)
    grad[label] -= 1.0
    assert abs(float(value) - (lse - z64[label])) <= 8 * EPS32 * (lse - z64[label])
    assert np.all(np.abs(np.asarray(gb, np.float64) - grad) <= 8 * EPS32 * np.abs(grad))


JAX_OPTIONS = [
    ({}, True),
    ({"label_smoothing": 0.15}, False),
    ({"reduction": "sum", "ignore_index": 7}, True),
    ({"reduction": "none"}, True),
    ({"reduction": "none", "softcap": 3.0, "label_smoothing": 0.05}, False),
    ({"softcap": 4.0}, False),
    ({"softcap": 2.5, "label_smoothing": 0.1, "reduction": "sum"}, True),
]


@pytest.mark.parametrize(("opts", "with_bias"), JAX_OPTIONS)
def test_jax_jit_grad_every_option(opts, with_bias):
    """jax.jit(jax.value_and_grad) of the one-pass custom_vjp (mean/sum: the gradients from the
    forward pass; none: recomputed in the backward with an incoming per-token gradient) against
    float64 torch, with and without bias; blocks of 13 tokens (61 = 4 x 13 + 9: a padded last
    block) and grad_weight in slices of 100 rows (517 = 5 x 100 + 17). The value alone (no vjp:
    the primal path) agrees too."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    hidden, weight, bias, labels = _data(2)
    labels = labels.copy()
    ignore = opts.get("ignore_index", -100)
    if ignore != -100:
        labels[labels == -100] = ignore
        labels[[0, 60]] = ignore  # at the first and the padded last block
    bias = bias if with_bias else None
    y = jnp.asarray(labels)
    reduction = opts.get("reduction", "mean")
    cot = np.random.default_rng(3).normal(size=N) if reduction == "none" else np.ones(())

    def total(h, w, b):
        out = losskit.linear_cross_entropy(h, w, y, b, token_chunk=13, vocab_chunk=100, **opts)
        return (out * jnp.asarray(cot, jnp.float32)).sum(), out

    argnums = (0, 1, 2) if with_bias else (0, 1)
    args = [jnp.asarray(hidden), jnp.asarray(weight), None if bias is None else jnp.asarray(bias)]
    (_, value), grads = jax.jit(jax.value_and_grad(total, argnums=argnums, has_aux=True))(*args)
    # the reference with ignore_index as -100
    ref_labels = np.where(labels == ignore, -100, labels)
    ref_value, ref_grads = _reference(hidden, weight, bias, ref_labels,
                                      ls=opts.get("label_smoothing", 0.0), cap=opts.get("softcap"),
                                      reduction=reduction, cot=None if reduction != "none" else cot)
    assert value.dtype == jnp.float32
    _close(np.asarray(value), ref_value)
    assert len(grads) == len(ref_grads)
    for got, want in zip(grads, ref_grads, strict=True):
        assert got.dtype == jnp.float32
        _close(np.asarray(got), want)
    alone = jax.jit(lambda h, w, b: total(h, w, b)[1])(*args)
    np.testing.assert_allclose(np.asarray(alone), np.asarray(value), rtol=1e-6, atol=1e-7)


def test_jax_grad_eager_and_all_ignored():
    """jax.grad outside jit, default blocks (one block: N < 128), a scaled loss; and a batch whose
    tokens are all ignored: value 0 and zero gradients ("mean" over no token)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    hidden, weight, bias, labels = _data(8)
    h, w, b, y = (jnp.asarray(x) for x in (hidden, weight, bias, labels))
    grads = jax.grad(lambda h, w, b: 3.0 * losskit.linear_cross_entropy(h, w, y, b),
                     argnums=(0, 1, 2))(h, w, b)
    _, ref_grads = _reference(hidden, weight, bias, labels)
    for got, want in zip(grads, ref_grads, strict=True):
        _close(np.asarray(got), 3.0 * want)
    none = jnp.full(N, -100)
    value, grads = jax.value_and_grad(lambda h, w: losskit.linear_cross_entropy(h, w, none),
                                      argnums=(0, 1))(h, w)
    assert float(value) == 0.0
    assert not np.asarray(grads[0]).any()
    assert not np.asarray(grads[1]).any()


def test_jax_holds_no_logits_array():
    """The compiled value-and-gradient's workspace (XLA's memory_analysis: temporaries beyond the
    arguments and the returned gradients) stays far below one (N, V) float32 array, which the naive
    path needs several of (a deterministic, compile-time check; the benchmark measures the ratio)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    n, hs, v = 4096, 16, 16384
    shapes = (jax.ShapeDtypeStruct((n, hs), jnp.float32), jax.ShapeDtypeStruct((v, hs), jnp.float32),
              jax.ShapeDtypeStruct((n,), jnp.int32))
    fn = jax.value_and_grad(lambda h, w, y: losskit.linear_cross_entropy(h, w, y, token_chunk=32),
                            argnums=(0, 1))
    temp = jax.jit(fn).lower(*shapes).compile().memory_analysis().temp_size_in_bytes
    assert temp < n * v * 4 / 16, temp


def test_chunk_sizes_do_not_change_the_result():
    hidden, weight, bias, labels = _data(3)
    results = [losskit.linear_cross_entropy_value_and_gradient(
        hidden, weight, labels, bias, label_smoothing=0.05, token_chunk=tc, vocab_chunk=vc)
        for tc, vc in ((None, None), (1, 517), (7, 1), (61, 33))]
    for value, grads in results[1:]:
        np.testing.assert_allclose(value, results[0][0], rtol=2e-7)
        for got, want in zip(grads, results[0][1], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("ls", [0.0, 0.1])  # 0: the C row kernel (float32 CPU); 0.1: the array path
@pytest.mark.parametrize("token_chunk", [None, 1, 64])
def test_token_blocks_at_their_boundaries(ls, token_chunk, monkeypatch):
    """The blocks of tokens: one more token than a block holds (the default block too), ignored
    tokens at both ends of a block, against the float64 reference; NumPy with and without SciPy's
    in-place gemm, and torch's one-pass autograd scaled by an incoming gradient of 3."""
    from losskit import linear

    # NumPy's default block is sized from the vocabulary (see test_numpy_default_block): set its
    # budget to 128 tokens of this vocabulary so that NumPy's default block is TOKEN_CHUNK too
    monkeypatch.setattr(linear, "NUMPY_BLOCK_ELEMENTS", linear.TOKEN_CHUNK * 300)
    n = linear.TOKEN_CHUNK + 1 if token_chunk is None else 2 * token_chunk + 1
    block = token_chunk or linear.TOKEN_CHUNK
    rng = np.random.default_rng(9)
    hidden = rng.normal(size=(n, 8)).astype(np.float32)
    weight = rng.normal(size=(300, 8)).astype(np.float32)
    bias = rng.normal(size=300).astype(np.float32)
    labels = rng.integers(0, 300, size=n)
    labels[[block - 1, block]] = -100  # the last token of the first block, the first of the second
    ref_value, ref_grads = _reference(hidden, weight, bias, labels, ls=ls)
    for gemm in (True, False):
        if not gemm:
            monkeypatch.setattr(linear, "_gemm", lambda dtype: None)
        value, grads = losskit.linear_cross_entropy_value_and_gradient(
            hidden, weight, labels, bias, label_smoothing=ls, token_chunk=token_chunk)
        _close(value, ref_value)
        for got, want in zip(grads, ref_grads, strict=True):
            _close(got, want)
    h, w, b = (torch.tensor(x, requires_grad=True) for x in (hidden, weight, bias))
    out = losskit.linear_cross_entropy(h, w, torch.tensor(labels), b, label_smoothing=ls,
                                       token_chunk=token_chunk)
    (3.0 * out).backward()
    _close(out.detach().numpy(), ref_value)
    for got, want in zip((h.grad, w.grad, b.grad), ref_grads, strict=True):
        _close(got.numpy(), 3.0 * want)


@pytest.mark.parametrize(("vocab", "numpy_block"), [
    (128_256, 256),  # 2**25 / (128 * 128,256) = 2.04 multiples of 128 tokens
    (32_000, 1024),  # 8.39 multiples
    (256_000, 128),  # 1.02
    (1_000_000, 128),  # 0.27: never below 128 tokens
])
def test_numpy_default_block(vocab, numpy_block):
    """NumPy's default block: whole multiples of 128 tokens within 2**25 logits (at least 128,
    at most the tokens there are); torch and JAX keep 128 tokens."""
    from losskit import linear

    def block(n, backend):
        hidden, weight = np.empty((n, 1), np.float32), np.empty((vocab, 1), np.float32)
        return linear.check(hidden, weight, np.zeros(n, np.int64), None, ignore_index=-100,
                            label_smoothing=0.0, reduction="mean", softcap=None, token_chunk=None,
                            vocab_chunk=None, backend=backend).token_chunk

    assert block(4096, "numpy") == numpy_block
    assert block(200, "numpy") == min(200, numpy_block)
    assert block(4096, "torch") == block(4096, "jax") == 128
    assert block(4096, "numpy") * vocab <= max(2**25, 128 * vocab)


def test_all_ignored_gives_zero():
    hidden, weight, bias, _ = _data()
    labels = np.full(N, -100)
    value, (gh, gw, gb) = losskit.linear_cross_entropy_value_and_gradient(hidden, weight, labels, bias)
    assert float(value) == 0.0
    assert not gh.any()
    assert not gw.any()
    assert not gb.any()
    other = losskit.linear_cross_entropy(hidden, weight, np.full(N, 7), ignore_index=7,
                                        reduction="none")
    assert not other.any()


# ------------------------------------------------------------------------------- the peers


def test_agrees_with_torch_peers():
    """Ordinary float32 inputs: the same value and gradients as the naive F.cross_entropy(x @ W.T)
    and PyTorch's chunked F.linear_cross_entropy, to float32 rounding."""
    hidden, weight, bias, labels = _data(4)
    y = torch.tensor(labels)
    results = []
    for which in ("losskit", "naive", "torch"):
        h, w, b = (torch.tensor(x, requires_grad=True) for x in (hidden, weight, bias))
        if which == "losskit":
            out = losskit.linear_cross_entropy(h, w, y, b, label_smoothing=0.1, vocab_chunk=128)
        elif which == "naive":
            out = F.cross_entropy(h @ w.T + b, y, label_smoothing=0.1)
        else:
            out = F.linear_cross_entropy(h, w, y, linear_bias=b, label_smoothing=0.1,
                                         ignore_index=-100)
        out.backward()
        results.append([out.detach().numpy()] + [t.grad.numpy() for t in (h, w, b)])
    for other in results[1:]:
        for got, want in zip(results[0], other, strict=True):
            _close(got, want, rtol=1e-5)


@pytest.mark.parametrize("softcap", [5.0, None])  # None: the C row kernel
def test_torch_compile_fullgraph(softcap):
    hidden, weight, bias, labels = _data(5)
    y = torch.tensor(labels)

    def step(h, w, b):
        return losskit.linear_cross_entropy(h, w, y, b, softcap=softcap, vocab_chunk=200) * 2.0

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    grads = []
    for fn in (step, compiled):
        h, w, b = (torch.tensor(x, requires_grad=True) for x in (hidden, weight, bias))
        out = fn(h, w, b)
        out.backward()
        grads.append([out.detach()] + [t.grad for t in (h, w, b)])
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(("change", "error", "words"), [
    ({"hidden": np.zeros((4, 3, 2), np.float32)}, ValueError, "hidden must be 2-D"),
    ({"weight": np.zeros((5, 4), np.float32)}, ValueError, "weight must have shape (vocabulary, 3)"),
    ({"labels": np.zeros(3, np.int64)}, ValueError, "labels must have shape (4,)"),
    ({"labels": np.array([0, 1, 5, 2])}, ValueError, "in [0, 5)"),
    ({"labels": np.array([0, 1, -1, 2])}, ValueError, "labels[2] = -1"),
    ({"labels": np.zeros(4, np.float32)}, TypeError, "labels must be integer"),
    ({"hidden": np.zeros((4, 3), np.int64)}, TypeError, "hidden must be a floating-point"),
    ({"weight": np.zeros((5, 3), np.float64)}, TypeError, "weight must have hidden's dtype"),
    ({"bias": np.zeros(4, np.float32)}, ValueError, "bias must have shape (5,)"),
    ({"reduction": "batchmean"}, ValueError, "reduction must be one of"),
    ({"label_smoothing": 1.5}, ValueError, "label_smoothing must be a number in [0, 1]"),
    ({"softcap": 0.0}, ValueError, "softcap must be None or a finite number > 0"),
    ({"vocab_chunk": 0}, ValueError, "vocab_chunk must be None or an int >= 1"),
])
def test_bad_inputs(change, error, words):
    args = {"hidden": np.zeros((4, 3), np.float32), "weight": np.zeros((5, 3), np.float32),
            "labels": np.array([0, 1, 4, -100]), "bias": None}
    args.update(change)
    with pytest.raises(error) as info:
        losskit.linear_cross_entropy(**args)
    assert words in str(info.value)


def test_bad_inputs_torch_and_mixed():
    h, w = torch.zeros(4, 3), torch.zeros(5, 3)
    with pytest.raises(ValueError, match=r"in \[0, 5\)"):
        losskit.linear_cross_entropy(h, w, torch.tensor([0, 1, 9, 2]))
    with pytest.raises(TypeError, match="one array library"):
        losskit.linear_cross_entropy(h, np.zeros((5, 3), np.float32), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(TypeError, match="takes NumPy arrays"):
        losskit.linear_cross_entropy_value_and_gradient(h, w, torch.tensor([0, 1, 2, 3]))


def test_torch_frozen_weight_gets_no_gradient():
    """Only the inputs that require a gradient get one (the skipped product is not computed)."""
    hidden, weight, bias, labels = _data(6)
    h = torch.tensor(hidden, requires_grad=True)
    w, b = torch.tensor(weight), torch.tensor(bias)
    losskit.linear_cross_entropy(h, w, torch.tensor(labels), b).backward()
    _, ref_grads = _reference(hidden, weight, bias, labels)
    _close(h.grad.numpy(), ref_grads[0])
    assert w.grad is None
    assert b.grad is None


def test_torch_second_backward_is_refused_not_wrong():
    """The one-pass gradients are handed to autograd (in place) by the first backward; a second
    backward through the same graph must raise, not return stale or doubled gradients."""
    hidden, weight, _, labels = _data(7)
    h, w = torch.tensor(hidden, requires_grad=True), torch.tensor(weight, requires_grad=True)
    out = losskit.linear_cross_entropy(h, w, torch.tensor(labels))
    out.backward(retain_graph=True)
    _, ref_grads = _reference(hidden, weight, None, labels)
    _close(w.grad.numpy(), ref_grads[1])
    with pytest.raises(RuntimeError, match="second backward"):
        out.backward()
