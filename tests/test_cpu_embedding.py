"""The compiled embedding kernels (``_cpu.embed``: triplet margin, cosine embedding) against the
generic double-length kernels they stand in for: values and every member's gradient (anchor,
positive, negative; x1, x2), scales and reductions, the swap, margins, p-norms and eps, and the rows
the C kernel hands back to the generic kernel (NaN and inf, zero distances, hinges at 0, ties,
nearly parallel vectors). A few rows are also checked against mpmath directly."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import losskit
from losskit._backends import numpy as cpu
from losskit.losses import _registry

pytestmark = pytest.mark.skipif(not cpu.available(), reason="the compiled CPU kernels are not built")

TRIPLET_OPTS = [
    {},
    {"swap": True},
    {"p": 1.0},
    {"p": 1.0, "swap": True},
    {"eps_placement": "sum"},
    {"eps_placement": "sum", "swap": True},
    {"distance_function": "euclidean", "eps": 0.0},
    {"margin": 0.05, "eps": 0.0},
    {"margin": 7.5, "eps": 1e-3},
    {"distance_function": "cosine"},
    {"distance_function": "cosine", "swap": True, "margin": 0.3},
]
COSINE_MARGINS = [0.0, 0.5, -0.3]


def _ulps(got: np.ndarray, ref: np.ndarray) -> float:
    """The largest distance of float32 ``got`` from the float64 ``ref``, in float32 ulps of ref."""
    ref32 = ref.astype(np.float32)
    spacing = np.spacing(np.abs(ref32)).astype(np.float64)
    err = np.abs(got.astype(np.float64) - ref)
    both_nan = np.isnan(got) & np.isnan(ref)
    return float(np.max(np.where(both_nan, 0.0, err / spacing), initial=0.0))


def _generic(name: str, opts: dict, t: np.ndarray, a: np.ndarray, member: str, x: np.ndarray,
             wrt: tuple[str, ...]) -> tuple:
    defn = _registry._DEFINITIONS[name]
    kw = {k: v for k, v in defn.normalise(opts).items() if k != "axis"}
    t64 = t.astype(np.float64)
    with np.errstate(all="ignore"):
        return defn.kernel(np, t64, a.astype(np.float64), grad=True, wrt=wrt, **kw,
                           **{member: x.astype(np.float64)})


def _fast(name: str, opts: dict, t: np.ndarray, a: np.ndarray, member: str, x: np.ndarray,
          wrt: tuple[str, ...], scale: np.ndarray | None = None) -> tuple:
    defn = _registry._DEFINITIONS[name]
    kw = {k: v for k, v in defn.normalise(opts).items() if k != "axis"}
    kernel = cpu.fast_kernel(name, defn.normalise(opts), "float32")
    assert kernel is not None, (name, opts)
    with np.errstate(all="ignore"):
        return kernel(np, t, a, grad=True, scale=scale, wrt=wrt, **kw, **{member: x})


def _triplet_data(rng: np.random.Generator, rows: int = 300, k: int = 24) -> tuple:
    a, pos, neg = (rng.standard_normal((rows, k)).astype(np.float32) for _ in range(3))
    pos[::7] = a[::7] + np.float32(0.01) * pos[::7]  # some close positives, some hinges at 0 slope
    neg[::5] = pos[::5]                               # swap ties: d(a, n) = d(a, p)
    neg[3::11] = a[3::11] * np.float32(3.0)           # large scales
    return a, pos, neg


def _check(got: tuple, ref: tuple, n_grads: int, scale: np.ndarray | None = None) -> None:
    value, g = got[0], got[1]
    assert np.allclose(value, ref[0], rtol=2.0**-21, atol=0.0, equal_nan=True)
    refs = [ref[1], *(ref[2] if n_grads > 1 else ())]
    gots = [g, *(got[2] if n_grads > 1 else ())]
    assert len(gots) == n_grads
    for mine, theirs in zip(gots, refs, strict=True):
        if scale is not None:
            theirs = theirs * scale[:, None]
        assert mine.dtype == np.float32
        assert _ulps(mine, theirs) <= 4.5


@pytest.mark.parametrize("opts", TRIPLET_OPTS)
@pytest.mark.parametrize("wrt", [(), ("y_true",), ("negative",), ("y_true", "negative"),
                                 ("negative", "y_true")])
def test_triplet_matches_generic(opts: dict, wrt: tuple[str, ...]) -> None:
    rng = np.random.default_rng(len(str(opts)) + 7 * len(wrt))
    a, pos, neg = _triplet_data(rng)
    ref = _generic("triplet_margin", opts, pos, a, "negative", neg, wrt)
    got = _fast("triplet_margin", opts, pos, a, "negative", neg, wrt)
    _check(got, ref, 1 + len(wrt))
    # the scaled gradient (a reduction's per-sample factor, weights 0 included) in the same write
    scale = rng.uniform(0.0, 2.0, a.shape[0])
    scale[::9] = 0.0
    got = _fast("triplet_margin", opts, pos, a, "negative", neg, wrt, scale)
    _check(got, ref, 1 + len(wrt), scale)


@pytest.mark.parametrize("margin", COSINE_MARGINS)
@pytest.mark.parametrize("wrt", [(), ("x2",)])
def test_cosine_matches_generic(margin: float, wrt: tuple[str, ...]) -> None:
    rng = np.random.default_rng(11)
    a, x = (rng.standard_normal((300, 24)).astype(np.float32) for _ in range(2))
    x[::6] = a[::6] * np.float32(2.0)  # parallel: 1 - cos = 0 (flagged, recomputed)
    x[1::8] = a[1::8] + np.float32(1e-3) * x[1::8]  # nearly parallel
    y = np.where(rng.random(300) < 0.5, 1.0, -1.0).astype(np.float32)
    ref = _generic("cosine_embedding", {"margin": margin}, y, a, "x2", x, wrt)
    got = _fast("cosine_embedding", {"margin": margin}, y, a, "x2", x, wrt)
    _check(got, ref, 1 + len(wrt))
    scale = rng.uniform(0.0, 2.0, 300)
    scale[::4] = 0.0
    _check(_fast("cosine_embedding", {"margin": margin}, y, a, "x2", x, wrt, scale), ref,
           1 + len(wrt), scale)


def test_special_rows_go_to_the_generic_kernel() -> None:
    """NaN and inf in the negative (which has no domain check), a zero distance, a hinge exactly at 0
    (half the slope), a zero vector and nearly parallel vectors for the cosine: the generic kernel's
    answers, values and gradients."""
    k = 8
    a = np.zeros((6, k), np.float32)
    a[:, 0] = 1.0
    pos = a.copy()
    pos[:, 1] = 3.0
    neg = a.copy()
    neg[:, 1] = 4.0
    neg[0, 2] = np.nan
    neg[1, 2] = np.inf
    pos[2] = a[2]              # d(a, p) = 0 with eps = 0
    neg[3, 1] = 3.0            # d(a, n) = d(a, p): m = margin
    wrt = ("y_true", "negative")
    for opts in ({"eps": 0.0}, {"eps": 0.0, "margin": 1.0}, {"eps": 0.0, "swap": True},
                 {"eps": 0.0, "p": 1.0}):
        ref = _generic("triplet_margin", opts, pos, a, "negative", neg, wrt)
        got = _fast("triplet_margin", opts, pos, a, "negative", neg, wrt)
        assert np.isnan(got[0][0])
        assert np.isnan(got[0][1])
        _check(got, ref, 3)
    # a hinge exactly at 0: d(a, n) - d(a, p) = 1 = margin, slope 1/2
    opts = {"eps": 0.0, "margin": 1.0}
    got = _fast("triplet_margin", opts, pos, a, "negative", neg, wrt)
    ref = _generic("triplet_margin", opts, pos, a, "negative", neg, wrt)
    assert got[0][4] == 0.0
    assert np.all(got[1][4] == ref[1][4].astype(np.float32))
    assert got[1][4, 1] == np.float32(0.5 * (-1.0 + 1.0))  # 1/2 (dD(a,p)/da - dD(a,n)/da) = 0 on axis 1
    x = a.copy()
    x[0] = 0.0                          # zero vector: cosine 0
    x[1] = a[1] * np.float32(1 + 2**-20)  # parallel up to rounding
    x[2, 1] = np.float32(1e-4)          # nearly parallel: 1 - cos ~ 5e-9
    x[3, 3] = np.nan
    y = np.array([1, 1, 1, 1, -1, -1], np.float32)
    ref = _generic("cosine_embedding", {}, y, a, "x2", x, ("x2",))
    got = _fast("cosine_embedding", {}, y, a, "x2", x, ("x2",))
    _check(got, ref, 2)
    assert got[0][2] > 0
    assert np.isnan(got[0][3])


def _mp_triplet(a: np.ndarray, p: np.ndarray, n: np.ndarray, margin: float, eps: float) -> tuple:
    """Value and anchor gradient of PyTorch's triplet loss (p = 2, eps in the difference), mpmath."""
    mpmath.mp.prec = 200
    u = [mpmath.mpf(float(x)) - mpmath.mpf(float(y)) + mpmath.mpf(eps) for x, y in zip(a, p, strict=True)]
    v = [mpmath.mpf(float(x)) - mpmath.mpf(float(y)) + mpmath.mpf(eps) for x, y in zip(a, n, strict=True)]
    dp, dn = mpmath.sqrt(sum(t * t for t in u)), mpmath.sqrt(sum(t * t for t in v))
    m = dp - dn + margin
    if m <= 0:
        return 0.0, np.zeros(len(a))
    return float(m), np.array([float(s / dp - t / dn) for s, t in zip(u, v, strict=True)])


def _mp_cosine(a: np.ndarray, x: np.ndarray, y: float, margin: float) -> tuple:
    mpmath.mp.prec = 200
    am = [mpmath.mpf(float(t)) for t in a]
    xm = [mpmath.mpf(float(t)) for t in x]
    qa, qx = sum(t * t for t in am), sum(t * t for t in xm)
    dot = sum(s * t for s, t in zip(am, xm, strict=True))
    cos = dot / mpmath.sqrt(qa * qx)
    dcos = [(t * qa - dot * s) / (qa * mpmath.sqrt(qa * qx)) for s, t in zip(am, xm, strict=True)]
    if y == 1:
        return float(1 - cos), np.array([float(-d) for d in dcos])
    if cos - margin <= 0:
        return 0.0, np.zeros(len(a))
    return float(cos - margin), np.array([float(d) for d in dcos])


def test_against_mpmath() -> None:
    rng = np.random.default_rng(3)
    a, p, n = (rng.standard_normal((12, 16)).astype(np.float32) for _ in range(3))
    got = _fast("triplet_margin", {}, p, a, "negative", n, ())
    for r in range(12):
        value, grad = _mp_triplet(a[r], p[r], n[r], 1.0, 1e-6)
        assert got[0][r] == pytest.approx(value, rel=2.0**-22, abs=0.0)
        assert _ulps(got[1][r], grad) <= 4.5
    y = np.where(np.arange(12) % 2 == 0, 1.0, -1.0).astype(np.float32)
    got = _fast("cosine_embedding", {"margin": -0.2}, y, a, "x2", n, ())
    for r in range(12):
        value, grad = _mp_cosine(a[r], n[r], float(y[r]), -0.2)
        assert got[0][r] == pytest.approx(value, rel=2.0**-22, abs=0.0)
        assert _ulps(got[1][r], grad) <= 4.5


def test_selection() -> None:
    """The C kernels cover p = 2 (eps anywhere), p = 1 with eps in the difference and the cosine
    distance; other powers and p = 1 with eps in the sum take the generic kernels."""
    defn = _registry._DEFINITIONS["triplet_margin"]
    covered = [{}, {"p": 1.0}, {"eps_placement": "sum"}, {"distance_function": "euclidean", "p": 3.0},
               {"distance_function": "cosine", "p": 3.0}]
    generic = [{"p": 3.0}, {"p": 1.0, "eps_placement": "sum"}]
    for opts in covered:
        assert cpu.fast_kernel("triplet_margin", defn.normalise(opts), "float32") is not None
    for opts in generic:
        assert cpu.fast_kernel("triplet_margin", defn.normalise(opts), "float32") is None
    assert cpu.fast_kernel("triplet_margin", defn.normalise({"p": 1.0}), "float64") is None


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_value_and_gradients_reductions(reduction: str) -> None:
    """``Loss.value_and_gradients`` on float32 (the C kernel) against float64 input (the generic
    kernel): value and every member's gradient, with sample weights."""
    rng = np.random.default_rng(5)
    a, p, n = _triplet_data(rng, rows=64, k=10)
    w = rng.uniform(0.0, 3.0, 64)
    w[::5] = 0.0
    for loss, t, inputs in ((losskit.TripletMargin(reduction=reduction, swap=True), p, {"negative": n}),
                            (losskit.CosineEmbedding(reduction=reduction, margin=0.1),
                             np.where(rng.random(64) < 0.5, 1.0, -1.0).astype(np.float32),
                             {"x2": n})):
        value, grads = loss.value_and_gradients(t, a, sample_weight=w, **inputs)
        wide = {k: v.astype(np.float64) for k, v in inputs.items()}
        ref_value, ref_grads = loss.value_and_gradients(t.astype(np.float64), a.astype(np.float64),
                                                        sample_weight=w, **wide)
        assert value.dtype == np.float32
        assert np.allclose(value, ref_value, rtol=2.0**-21, atol=0.0)
        assert set(grads) == set(ref_grads)
        for name in grads:
            assert grads[name].dtype == np.float32
            assert _ulps(grads[name], ref_grads[name]) <= 4.5, name
        v1, g1 = loss.value_and_gradient(t, a, sample_weight=w, **inputs)
        assert np.array_equal(v1, value)
        assert np.array_equal(g1, grads["y_pred"])


def test_torch_twins_every_member() -> None:
    """The twins on CPU float32 tensors (the C kernels through the custom op) give the generic
    kernels' gradients for every input, and PyTorch's to its rounding."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    import losskit.torch as lt
    from losskit._backends import torch as torch_backend

    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(40, 12, generator=g) for _ in range(3))
    y = torch.where(torch.rand(40, generator=g) < 0.5, 1.0, -1.0)
    calls = [
        (lambda f, x1, x2, x3: f.triplet_margin_loss(x1, x2, x3, swap=True), lt, F),
        (lambda f, x1, x2, x3: f.triplet_margin_with_distance_loss(x1, x2, x3, margin=0.5), lt, F),
        (lambda f, x1, x2, x3: f.triplet_margin_loss(x1, x2, x3, p=1, reduction="sum"), lt, F),
        (lambda f, x1, x2, x3: f.cosine_embedding_loss(x1, x2, y, margin=0.2), lt, F),
    ]
    for call, ours, theirs in calls:
        results = []
        for fn, generic in ((ours, False), (ours, True), (theirs, False)):
            leaves = [t.clone().requires_grad_(True) for t in (a, p, n)]
            if generic:
                with torch_backend.generic_kernels():
                    value = call(fn, *leaves)
            else:
                value = call(fn, *leaves)
            value.backward()
            results.append((value.detach(), [t.grad for t in leaves]))
        (v_c, g_c), (v_g, g_g), (v_t, g_t) = results
        assert torch.allclose(v_c, v_g, rtol=2e-7, atol=0)
        assert torch.allclose(v_c, v_t, rtol=1e-5, atol=1e-6)
        for mine, generic_g, torch_g in zip(g_c, g_g, g_t, strict=True):
            if torch_g is None:  # the cosine loss does not use the third tensor
                assert mine is None
                assert generic_g is None
                continue
            assert _ulps(mine.numpy(), generic_g.numpy().astype(np.float64)) <= 1.0
            assert torch.allclose(mine, torch_g, rtol=1e-4, atol=1e-6)


def test_missing_member_is_a_clear_error() -> None:
    """The one-call fast path (float32 NumPy, no inputs) leaves these kernels alone: a missing
    negative or x2 is the TypeError that names it, not a KeyError from inside the kernel."""
    a = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="negative="):
        losskit.TripletMargin()(a, a)
    with pytest.raises(TypeError, match="negative="):
        losskit.TripletMargin().value_and_gradient(a, a)
    with pytest.raises(TypeError, match="x2="):
        losskit.CosineEmbedding()(np.ones(3, np.int64), a)


# ------------------------------------------------------------------ cosine similarity (ids 2, 3)


def _cossim_data(rng: np.random.Generator, dtype: type, rows: int = 240, k: int = 29) -> tuple:
    t, p = (rng.standard_normal((rows, k)).astype(dtype) for _ in range(2))
    p[::5] = t[::5] * dtype(2.5) + dtype(1e-5) * p[::5]        # nearly parallel: r_i cancels
    t[1::6] -= (np.sum(t[1::6] * p[1::6], -1, keepdims=True)   # nearly orthogonal: cos ~ 0
                / np.sum(p[1::6] * p[1::6], -1, keepdims=True) * p[1::6]).astype(dtype)
    p[2::9] = 0.0                                              # zero vectors: value 0, gradient 0
    t[3::13] = 0.0
    p[4::17, 1] = np.inf                                       # the generic kernel's rows
    t[5::19, 2] = np.nan
    p[6::23] *= dtype(1e-30) if dtype == np.float32 else 1e-300  # tiny squared norms (float64: out of range)
    t[7::23] *= dtype(1e30) if dtype == np.float32 else 1e290    # huge ones
    return t, p


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cosine_similarity_matches_generic(dtype: type) -> None:
    """_cpu.embed's cosine similarity against the generic double-length kernel (which the oracle
    checks against mpmath): values and gradients, scaled, with the special rows."""
    rng = np.random.default_rng(17)
    t, p = _cossim_data(rng, dtype)
    defn = _registry._DEFINITIONS["cosine_similarity"]
    kernel = cpu.fast_kernel("cosine_similarity", {}, np.dtype(dtype).name)
    assert kernel is not None
    with np.errstate(all="ignore"):
        ref_v, ref_g = defn.kernel(np, t.astype(np.float64), p.astype(np.float64), grad=True)
        scale = rng.uniform(0.0, 2.0, t.shape[0])
        scale[::7] = 0.0
        for s in (None, scale):
            value, g = kernel(np, t, p, grad=True, scale=s)
            assert g.dtype == dtype
            want = ref_g if s is None else np.where(s[:, None] == 0, 0.0, ref_g * s[:, None])
            np.testing.assert_array_equal(np.isnan(value), np.isnan(ref_v))
            eps = np.finfo(dtype).eps
            assert np.allclose(value, ref_v, rtol=4 * eps, atol=0.0, equal_nan=True)
            if dtype == np.float32:
                assert _ulps(g, want) <= 1.0
            else:  # float64: both within a few ulps of the exact gradient
                np.testing.assert_allclose(g, want, rtol=4 * eps, atol=0.0)
        value, g = kernel(np, t, p, grad=False)
        assert g is None
        assert np.allclose(value, ref_v, rtol=4 * np.finfo(dtype).eps, atol=0.0, equal_nan=True)


def test_cosine_similarity_against_mpmath() -> None:
    """float64 rows, nearly orthogonal and nearly parallel, against mpmath at 200 bits."""
    mpmath.mp.prec = 200
    rng = np.random.default_rng(23)
    t, p = rng.standard_normal((2, 6, 40))
    t[:3] -= np.sum(t[:3] * p[:3], -1, keepdims=True) / np.sum(p[:3] * p[:3], -1, keepdims=True) * p[:3]
    p[3:] = 3.0 * t[3:] + 1e-9 * p[3:]
    value, g = losskit.CosineSimilarity(reduction="none").value_and_gradient(t, p)
    for r in range(6):
        tm, pm = [mpmath.mpf(float(v)) for v in t[r]], [mpmath.mpf(float(v)) for v in p[r]]
        tt, pp = sum(v * v for v in tm), sum(v * v for v in pm)
        dot = sum(a * b for a, b in zip(tm, pm, strict=True))
        den = mpmath.sqrt(tt * pp)
        assert value[r] == pytest.approx(float(-dot / den), rel=4 * 2.0**-52, abs=0.0)
        alpha = dot / pp
        grad = [float(-(a - alpha * b) / den) for a, b in zip(tm, pm, strict=True)]
        np.testing.assert_allclose(g[r], grad, rtol=2.0**-48, atol=0.0)


# ---------------------------------------------------------------- ntxent and circle (ids 4, 5)

SIMILARITY_CASES = [
    ("ntxent", {}),
    ("ntxent", {"temperature": 0.01}),
    ("ntxent", {"temperature": 2.0}),
    ("circle", {}),
    ("circle", {"gamma": 1.0, "margin": 0.0}),
    ("circle", {"gamma": 256.0, "margin": 0.25}),
]


def _similarity_data(rng: np.random.Generator, rows: int = 200, k: int = 33) -> tuple:
    s = rng.uniform(-1.0, 1.0, (rows, k)).astype(np.float32)
    y = (rng.random((rows, k)) < 0.15).astype(np.float32)
    y[0] = 0.0                        # no positives: 0
    y[1] = 1.0                        # no negatives: 0
    y[2, :3], s[2, :3] = 1.0, 1.0     # confident positives (a loss far below eps for ntxent)
    s[3, 4] = np.nan                  # the generic kernel's row
    s[4, 5], s[4, 6] = -0.4, 1.0      # circle's kinks (s = -m, s = 1)
    s[5, 7] = 1.5                     # beyond 1
    s[6] *= np.float32(3e4)           # large similarities (ntxent: exponents beyond the bound)
    where = rng.random((rows, k)) > 0.1
    return y, s, where


@pytest.mark.parametrize(("name", "opts"), SIMILARITY_CASES)
def test_similarity_rows_match_generic(name: str, opts: dict) -> None:
    """ntxent (denominator "negatives") and circle on float32 rows against the generic double-length
    kernels: values and scaled gradients, with and without ``where``, empty rows, kinks, NaN."""
    rng = np.random.default_rng(29)
    y, s, where = _similarity_data(rng)
    defn = _registry._DEFINITIONS[name]
    kw = {k: v for k, v in defn.normalise(opts).items() if k != "axis"}
    kernel = cpu.fast_kernel(name, defn.normalise(opts), "float32")
    assert kernel is not None
    scale = rng.uniform(0.0, 2.0, s.shape[0])
    scale[::6] = 0.0
    for w in (None, where):
        with np.errstate(all="ignore"):
            ref_v, ref_g = defn.kernel(np, y.astype(np.float64), s.astype(np.float64), grad=True,
                                       where=w, **kw)
            value, g = kernel(np, y, s, grad=True, scale=scale, where=w, **kw)
        assert g.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(value), np.isnan(ref_v))
        assert np.allclose(value, ref_v, rtol=2.0**-40, atol=0.0, equal_nan=True)
        assert value[0] == 0.0
        assert value[1] == 0.0
        want = np.where(scale[:, None] == 0, 0.0, ref_g * scale[:, None])
        ok = ~np.isnan(ref_v)
        assert _ulps(g[ok], want[ok]) <= 1.0


def test_similarity_selection() -> None:
    """SupCon's denominator="all" takes the generic kernels, in float32 and float64."""
    ntxent = _registry._DEFINITIONS["ntxent"]
    for dtype in ("float32", "float64"):
        assert cpu.fast_kernel("ntxent", ntxent.normalise({"denominator": "all"}), dtype) is None
        assert cpu.fast_kernel("ntxent", ntxent.normalise({}), dtype) is not None
        assert cpu.fast_kernel("circle", _registry._DEFINITIONS["circle"].normalise({}), dtype) is not None


@pytest.mark.parametrize("margin", COSINE_MARGINS)
def test_cosine_embedding_float64_matches_generic(margin: float) -> None:
    """The float64 kernel (id 6: double-length pairs with fma) against the generic double-length
    kernel: values and both gradients, scaled; parallel, nearly parallel, zero and infinite rows."""
    rng = np.random.default_rng(31)
    a, x = rng.standard_normal((2, 300, 40))
    x[::5] = a[::5] * 2.5 + 1e-7 * x[::5]  # nearly parallel: 1 - cos ~ 1e-15
    x[1::9] = a[1::9] * 3.0                # parallel to rounding (handed back)
    x[2::11] = 0.0
    a[3::13, 2] = np.inf
    y = np.where(rng.random(300) < 0.5, 1.0, -1.0)
    defn = _registry._DEFINITIONS["cosine_embedding"]
    kernel = cpu.fast_kernel("cosine_embedding", defn.normalise({"margin": margin}), "float64")
    assert kernel is not None
    scale = rng.uniform(0.0, 2.0, 300)
    scale[::7] = 0.0
    with np.errstate(all="ignore"):
        value, g, (g2,) = kernel(np, y, a, grad=True, x2=x, wrt=("x2",), scale=scale, margin=margin)
        ref_v, ref_g, (ref_g2,) = defn.kernel(np, y, a, grad=True, x2=x, wrt=("x2",), margin=margin)
    assert g.dtype == np.float64
    np.testing.assert_allclose(value, ref_v, rtol=4 * 2.0**-52, atol=0.0)
    for mine, ref in ((g, ref_g), (g2, ref_g2)):
        want = np.where(scale[:, None] == 0, 0.0, ref * scale[:, None])
        np.testing.assert_allclose(mine, want, rtol=8 * 2.0**-52, atol=0.0)


@pytest.mark.parametrize("opts", [o for o in TRIPLET_OPTS if "p" not in o and "distance_function" not in o]
                         + [{"distance_function": "euclidean", "eps": 0.0}])
def test_triplet_float64_matches_generic(opts: dict) -> None:
    """The float64 kernel (id 7, p = 2: double-length pairs with fma) against the generic kernel:
    value and the three gradients, scaled; ties, zero distances and infinite rows handed back."""
    rng = np.random.default_rng(37)
    a, pos, neg = rng.standard_normal((3, 300, 24))
    pos[::7] = a[::7] + 0.01 * pos[::7]
    neg[::5] = pos[::5]
    neg[3::11] = a[3::11] * 3.0
    neg[4::13, 1] = np.inf
    pos[6::17] = a[6::17]
    defn = _registry._DEFINITIONS["triplet_margin"]
    kw = {k: v for k, v in defn.normalise(opts).items() if k != "axis"}
    kernel = cpu.fast_kernel("triplet_margin", defn.normalise(opts), "float64")
    assert kernel is not None
    scale = rng.uniform(0.0, 2.0, 300)
    scale[::9] = 0.0
    wrt = ("y_true", "negative")
    with np.errstate(all="ignore"):
        value, g, others = kernel(np, pos, a, grad=True, negative=neg, wrt=wrt, scale=scale, **kw)
        ref_v, ref_g, ref_others = defn.kernel(np, pos, a, grad=True, negative=neg, wrt=wrt, **kw)
    np.testing.assert_allclose(value, ref_v, rtol=2 * 2.0**-52, atol=0.0)
    for mine, ref in zip((g, *others), (ref_g, *ref_others), strict=True):
        assert mine.dtype == np.float64
        want = np.where(scale[:, None] == 0, 0.0, ref * scale[:, None])
        np.testing.assert_allclose(mine, want, rtol=4 * 2.0**-52, atol=0.0)


def test_triplet_float64_selection() -> None:
    defn = _registry._DEFINITIONS["triplet_margin"]
    for opts in ({"p": 1.0}, {"p": 3.0}, {"distance_function": "cosine"}):
        assert cpu.fast_kernel("triplet_margin", defn.normalise(opts), "float64") is None


# ------------------------------------------------------- ntxent and circle on float64 rows (ids 8, 9)


def _ntxent_mp(s: np.ndarray, y: np.ndarray, valid: np.ndarray, temperature: float) -> tuple:
    """NT-Xent ("negatives") of one row and its gradient in mpmath (the formulas of the docstring)."""
    pos = [j for j in range(len(s)) if valid[j] and y[j] == 1]
    neg = [j for j in range(len(s)) if valid[j] and y[j] != 1]
    grad = [mpmath.mpf(0)] * len(s)
    if not pos or not neg:
        return mpmath.mpf(0), grad
    t = mpmath.mpf(temperature)
    z = [mpmath.mpf(float(v)) / t for v in s]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(z[k]) for k in neg))
    sig = {p: 1 / (1 + mpmath.exp(z[p] - lse)) for p in pos}
    value = mpmath.fsum(mpmath.log1p(mpmath.exp(lse - z[p])) for p in pos) / len(pos)
    for p in pos:
        grad[p] = -sig[p] / (len(pos) * t)
    total = mpmath.fsum(sig.values())
    for k in neg:
        grad[k] = mpmath.exp(z[k] - lse) * total / (len(pos) * t)
    return value, grad


def _circle_mp(s: np.ndarray, y: np.ndarray, valid: np.ndarray, gamma: float, margin: float) -> tuple:
    """Circle loss of one row and its gradient in mpmath (the docstring's formulas and kinks)."""
    pos = [j for j in range(len(s)) if valid[j] and y[j] == 1]
    neg = [j for j in range(len(s)) if valid[j] and y[j] != 1]
    grad = [mpmath.mpf(0)] * len(s)
    if not pos or not neg:
        return mpmath.mpf(0), grad
    g, m = mpmath.mpf(gamma), mpmath.mpf(margin)
    x = [mpmath.mpf(float(v)) for v in s]
    sp = [min(v, 1) for v in x]
    t = {j: g * (1 - sp[j] + m) * (1 - sp[j] - m) for j in pos}
    t.update({j: g * max(sp[j] + m, 0) * (sp[j] - m) for j in neg})
    lp = mpmath.log(mpmath.fsum(mpmath.exp(t[j]) for j in pos))
    ln = mpmath.log(mpmath.fsum(mpmath.exp(t[j]) for j in neg))
    sig = 1 / (1 + mpmath.exp(-(lp + ln)))
    for j in pos:
        grad[j] = sig * mpmath.exp(t[j] - lp) * (-2 * g * (1 - sp[j]))
    for j in neg:
        slope = (2 * g * x[j] if -m < x[j] < 1 else -g * m if x[j] == -m else g if x[j] == 1 else 0)
        grad[j] = sig * mpmath.exp(t[j] - ln) * slope
    return mpmath.log1p(mpmath.exp(lp + ln)), grad


def _ulps64(got: float, ref: mpmath.mpf) -> float:
    """|got - ref| in float64 ulps of ref (subnormal references: in ulps of 2^-1022)."""
    spacing = max(float(np.spacing(abs(float(ref)))), 2.0**-1074 * 2.0**52)
    return float(abs(mpmath.mpf(float(got)) - ref) / spacing)


SIMILARITY64_CASES = [
    ("ntxent", {}),
    ("ntxent", {"temperature": 0.01}),
    ("ntxent", {"temperature": 2.0}),
    ("circle", {}),
    ("circle", {"gamma": 1.0, "margin": 0.0}),
    ("circle", {"gamma": 256.0, "margin": 0.25}),
]


@pytest.mark.parametrize(("name", "opts"), SIMILARITY64_CASES)
def test_similarity_float64_against_mpmath(name: str, opts: dict) -> None:
    """The float64 kernels (ids 8, 9) against mpmath at 200 bits: values within 2 ulp and scaled
    gradients within 4 ulp (the bounds above ntxent_rows_d and circle_rows_d: 3.05 and 5.8 u for
    ntxent, 4.9 and 6.9 u for circle), on rows the kernel keeps, with ``where``, empty rows,
    confident rows (a loss near 1e-30), kinks, tiny similarities and 40 entries (the SIMD lanes and
    their tails); rows with a NaN and rows beyond the kernel's range are handed back."""
    mpmath.mp.prec = 200
    rng = np.random.default_rng(41)
    rows, k = 24, 40
    s = rng.uniform(-1.0, 1.0, (rows, k))
    y = (rng.random((rows, k)) < 0.2).astype(np.float64)
    y[0] = 0.0                                  # no positives: 0
    y[1] = 1.0                                  # no negatives: 0
    y[2, :3], s[2, :3] = 1.0, 1.0               # confident positives
    y[3], s[3] = 0.0, rng.uniform(-1.0, -0.9, k)
    y[3, 0], s[3, 0] = 1.0, 0.999               # one confident positive: ntxent ~1e-30 at T = 0.01
    s[4, 5], s[4, 6] = -opts.get("margin", 0.4), 1.0  # circle's kinks
    s[5] *= 1e-3
    s[6, 7] = 1.5                               # beyond 1
    s[7, 8] = np.nan                            # handed back
    s[8] *= 1e6                                 # far beyond the range (ntxent at T = 0.01: e_k = 0)
    where = rng.random((rows, k)) > 0.1
    defn = _registry._DEFINITIONS[name]
    kw = {key: v for key, v in defn.normalise(opts).items() if key != "axis"}
    kernel = cpu.fast_kernel(name, defn.normalise(opts), "float64")
    assert kernel is not None
    scale = rng.uniform(0.1, 2.0, rows)
    for w in (None, where):
        with np.errstate(all="ignore"):
            value, g = kernel(np, y, s, grad=True, scale=scale, where=w, **kw)
        assert g.dtype == np.float64
        lab = y if w is None else np.where(w, y, 2.0)
        prm = (cpu._inverse_pair(k, **kw) if name == "ntxent" else (kw["gamma"], kw["margin"]))
        direct = np.empty(rows)
        cpu._cpu.embed(cpu.EMBED_NTXENT_D if name == "ntxent" else cpu.EMBED_CIRCLE_D, s, lab, None,
                       None, 0, rows, k, direct, None, None, None, None, np.asarray(prm, dtype=np.float64))
        assert np.isnan(direct[7])
        assert np.isnan(value[7])
        kept = ~np.isnan(direct)
        assert kept[:7].all()
        assert kept[9:].all()
        assert value[0] == 0.0
        assert value[1] == 0.0
        assert not g[:2].any()
        for r in np.flatnonzero(kept):
            valid = np.ones(k, bool) if w is None else w[r]
            ref_v, ref_g = (_ntxent_mp(s[r], y[r], valid, kw["temperature"]) if name == "ntxent"
                            else _circle_mp(s[r], y[r], valid, kw["gamma"], kw["margin"]))
            assert _ulps64(value[r], ref_v) <= 2.0, (r, value[r], ref_v)
            assert max(_ulps64(g[r, j], ref_g[j] * scale[r]) for j in range(k)) <= 4.0, r
        if name == "ntxent" and kw["temperature"] == 0.01:
            assert 0.0 < value[3] < 1e-25  # a loss far below eps, kept by the kernel


@pytest.mark.parametrize(("name", "opts"), SIMILARITY64_CASES)
def test_similarity_float64_matches_generic(name: str, opts: dict) -> None:
    """The float64 kernels against the generic double-length kernels on 1000-entry rows (the
    benchmark's width) with ``where``, scales with zeros, NaN and infinite rows (handed back)."""
    rng = np.random.default_rng(43)
    rows, k = 64, 1000
    s = rng.uniform(-1.0, 1.0, (rows, k))
    y = (rng.random((rows, k)) < 0.01).astype(np.float64)
    y[:, 0] = 1.0
    s[3, 9] = np.nan
    s[4, 9] = -np.inf
    defn = _registry._DEFINITIONS[name]
    kw = {key: v for key, v in defn.normalise(opts).items() if key != "axis"}
    kernel = cpu.fast_kernel(name, defn.normalise(opts), "float64")
    scale = rng.uniform(0.0, 2.0, rows)
    scale[::5] = 0.0
    for w in (None, rng.random((rows, k)) > 0.1):
        with np.errstate(all="ignore"):
            ref_v, ref_g = defn.kernel(np, y, s, grad=True, where=w, **kw)
            value, g = kernel(np, y, s, grad=True, scale=scale, where=w, **kw)
        np.testing.assert_array_equal(np.isnan(value), np.isnan(ref_v))
        np.testing.assert_allclose(value, ref_v, rtol=8 * 2.0**-52, atol=0.0)
        want = np.where(scale[:, None] == 0, 0.0, ref_g * scale[:, None])
        np.testing.assert_allclose(g, want, rtol=8 * 2.0**-52, atol=1e-300)


def test_similarity_float64_torch_tensors() -> None:
    """float64 CPU tensors take the float64 kernels (the value and the gradient autograd receives
    match the generic kernel's)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(47)
    s = rng.uniform(-1.0, 1.0, (16, 50))
    y = (rng.random((16, 50)) < 0.1).astype(np.float64)
    y[:, 0] = 1.0
    ran: list[int] = []
    embed_run = cpu._embed_run

    def spy(kernel_id: int, *args: object) -> np.ndarray:
        ran.append(kernel_id)
        return embed_run(kernel_id, *args)  # type: ignore[arg-type]

    for name, loss in (("ntxent", losskit.NTXent()), ("circle", losskit.Circle())):
        x = torch.tensor(s, requires_grad=True)
        cpu._embed_run, ran[:] = spy, []
        try:
            out = loss(torch.tensor(y), x)
        finally:
            cpu._embed_run = embed_run
        assert ran == [cpu.EMBED_NTXENT_D if name == "ntxent" else cpu.EMBED_CIRCLE_D]
        out.backward()
        defn = _registry._DEFINITIONS[name]
        kw = {key: v for key, v in defn.normalise({}).items() if key != "axis"}
        ref_v, ref_g = defn.kernel(np, y, s, grad=True, where=None, **kw)
        assert out.item() == pytest.approx(float(np.mean(ref_v)), rel=4 * 2.0**-52)
        np.testing.assert_allclose(x.grad.numpy(), ref_g / 16, rtol=8 * 2.0**-52, atol=0.0)
