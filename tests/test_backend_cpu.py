"""The compiled CPU kernels (losskit/_backends/_cpu.c): their math against mpmath, that the fast path is
the one taken, and that it gives the generic kernels' results (which the oracle suite checks against
mpmath for these same float32 inputs) with weights, masks, threads and on torch tensors."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from conftest import make_inputs

import losskit
from losskit._backends import numpy as cpu

pytestmark = pytest.mark.skipif(not cpu.available(), reason="built without the C kernels")


def _map(which: int, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    cpu._cpu.map(which, x, out)
    return out


def _ulps(got: np.ndarray, exact: list[mpmath.mpf]) -> float:
    worst = 0.0
    for g, e in zip(got, exact, strict=True):
        e = float(e)
        if e == 0 or not np.isfinite(e):
            assert g == e
            continue
        worst = max(worst, abs(float(mpmath.mpf(float(g)) - mpmath.mpf(e))) / np.spacing(abs(e)))
    return worst


@pytest.mark.parametrize(("which", "fn", "points"), [
    (0, mpmath.exp, np.concatenate([np.linspace(-745, 709, 700), np.linspace(-1, 1, 301),
                                    [-1e-300, 1e-20, -740.5, -708.3]])),
    (1, mpmath.log, np.concatenate([np.geomspace(1e-300, 1e300, 700), np.linspace(0.5, 2, 301),
                                    [1 + 2.0**-52, 1 - 2.0**-53]])),
    (2, mpmath.log1p, np.concatenate([np.geomspace(1e-300, 1e300, 500), -np.geomspace(1e-300, 0.999, 300),
                                      np.linspace(-0.5, 1, 201)])),
])
def test_double_math_within_two_ulps(which, fn, points):
    """exp, log and log1p in double: within 2 ulp everywhere (the kernels need 2^-40 relative)."""
    mpmath.mp.prec = 200
    got = _map(which, np.asarray(points, dtype=np.float64))
    assert _ulps(got, [fn(mpmath.mpf(float(p))) for p in points]) <= 2.0


@pytest.mark.parametrize(("which", "fn", "points", "bound"), [
    (3, mpmath.expm1, np.concatenate([np.linspace(-40, 700, 500), np.linspace(-0.5, 0.5, 301),
                                      [1e-300, -1e-20, 0.34, -0.34, 0.3400001]]), 16.0),
    (4, mpmath.tanh, np.concatenate([np.linspace(-20, 20, 501), np.geomspace(1e-300, 1, 300),
                                     -np.geomspace(1e-20, 0.2, 100)]), 16.0),
    (5, mpmath.log, np.concatenate([np.geomspace(5e-324, 2.0**-1022, 200), [1e-300, 3.0]]), 2.0),
])
def test_catalog_double_math(which, fn, points, bound):
    """expm1 and tanh (the catalog kernels need 2^-40 relative), and log of subnormal doubles."""
    mpmath.mp.prec = 200
    got = _map(which, np.asarray(points, dtype=np.float64))
    assert _ulps(got, [fn(mpmath.mpf(float(p))) for p in points]) <= bound


def test_float32_exp_of_differences_within_its_bound():
    """kexp_diff_f32 (sparse cross-entropy's e_j = exp(x_j - m)): relative error below 2^-23.4, the
    bound its error argument in _cpu.c uses, on float32 pairs over the whole range it serves (with
    differences that need their TwoSum correction, near multiples of ln2/2, and 0); a difference
    below -110 gives 0 (the kernel recomputes those elements in double); NaN kept."""
    mpmath.mp.prec = 100
    rng = np.random.default_rng(1)
    m = (30 * rng.standard_normal(3000)).astype(np.float32)
    x = (m - np.abs(rng.standard_normal(3000) * rng.choice([1e-3, 1.0, 10.0, 40.0], 3000))).astype(np.float32)
    x[:40] = m[:40] - np.float32(np.log(2) / 2) * np.arange(40, dtype=np.float32)
    x[40] = m[40]
    pairs = np.empty(2 * x.size)
    pairs[0::2], pairs[1::2] = x, m
    got = _map(6, pairs)[: x.size]
    worst = 0.0
    for g, xi, mi in zip(got, x, m, strict=True):
        d = mpmath.mpf(float(xi)) - mpmath.mpf(float(mi))
        if d >= -110:
            e = mpmath.exp(d)
            worst = max(worst, float(abs(mpmath.mpf(float(g)) - e) / e))
        else:
            assert g == 0.0
    assert worst <= 2.0**-23.4
    special = np.array([np.nan, 0.0, -np.inf, 0.0, 1.0, 1.0], np.float64)
    out = _map(6, special)[:3]
    assert np.isnan(out[0])
    assert out[1] == 0.0
    assert out[2] == 1.0


def test_sparse_cross_entropy_keeps_the_far_classes_of_a_confident_row(monkeypatch):
    """A confident row over many classes that all lie 105-300 below the top: the loss, a sum of
    exp(-105)-sized terms, is a float32 subnormal; the classes beyond the float32 exp's range are
    recomputed in double, so the value matches the generic kernel."""
    rng = np.random.default_rng(6)
    x = np.zeros((3, 4000), np.float32)
    x[:, 1:] = -rng.uniform(105, 300, (3, 3999)).astype(np.float32)
    x[1, 1:] = -rng.uniform(111, 300, 3999).astype(np.float32)
    y = np.zeros(3, np.int64)
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    fast = loss.value_and_gradient(y, x)
    slow = _generic(monkeypatch, lambda: loss.value_and_gradient(y, x))
    assert fast[0][0] > 0
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a, b, rtol=4 * 2.0**-23, atol=0)


def test_double_math_special_values():
    inf, nan = np.inf, np.nan
    assert list(_map(0, np.array([-inf, inf, -800.0, 800.0, 0.0]))) == [0.0, inf, 0.0, inf, 1.0]
    assert np.isnan(_map(0, np.array([nan])))[0]
    assert list(_map(1, np.array([0.0, inf, 1.0]))) == [-inf, inf, 0.0]
    assert np.isnan(_map(1, np.array([-1.0, nan]))).all()
    assert list(_map(2, np.array([-1.0, inf, 0.0, 1e-300]))) == [-inf, inf, 0.0, 1e-300]
    assert np.isnan(_map(2, np.array([-2.0, nan]))).all()


COVERED = [
    ("sparse_categorical_crossentropy", {"from_logits": True}),
    ("sparse_categorical_crossentropy", {"from_logits": True, "ignore_class": 2}),
    ("categorical_crossentropy", {"from_logits": True}),
    ("categorical_crossentropy", {}),
    ("sparse_categorical_crossentropy", {}),
    ("binary_crossentropy", {"from_logits": True}),
    ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.1}),
    ("binary_crossentropy", {}),
    ("binary_crossentropy", {"label_smoothing": 0.2}),
    ("mean_squared_error", {}),
    ("mean_absolute_error", {}),
    ("kl_divergence", {}),
    ("hinge", {}),
    # the catalog
    ("huber", {}),
    ("huber", {"delta": 0.25}),
    ("smooth_l1", {}),
    ("smooth_l1", {"beta": 0.0}),
    ("smooth_l1", {"beta": 3.0}),
    ("log_cosh", {}),
    ("squared_hinge", {}),
    ("categorical_hinge", {}),
    ("soft_margin", {}),
    ("mean_absolute_percentage_error", {}),
    ("mean_squared_logarithmic_error", {}),
    ("pinball", {}),
    ("pinball", {"quantile": 0.9}),
    ("binary_focal_crossentropy", {}),
    ("binary_focal_crossentropy", {"from_logits": True}),
    ("binary_focal_crossentropy", {"from_logits": True, "gamma": 0.5, "label_smoothing": 0.1,
                                   "apply_class_balancing": True, "alpha": 0.3}),
    ("binary_focal_crossentropy", {"gamma": 0.0, "label_smoothing": 0.2}),
    ("binary_focal_crossentropy", {"gamma": 3.5, "apply_class_balancing": True}),
    ("categorical_focal_crossentropy", {}),
    ("categorical_focal_crossentropy", {"from_logits": True}),
    ("categorical_focal_crossentropy", {"from_logits": True, "gamma": 0.7, "alpha": 1.0,
                                        "label_smoothing": 0.1}),
    ("categorical_focal_crossentropy", {"gamma": 0.0, "label_smoothing": 0.2}),
    ("kl_div", {}),
    ("kl_div", {"log_target": True}),
    ("jensen_shannon_divergence", {}),
    ("total_variation_distance", {}),
    ("generalized_kl_divergence", {}),
    ("multilabel_soft_margin", {}),
    ("multilabel_soft_margin", {"weight": 0.5}),
    ("multilabel_soft_margin", {"weight": tuple(float(i % 4) for i in range(11))}),
    ("perceptron", {}),
    ("nll", {}),
    ("nll", {"weight": tuple(float(i % 3) for i in range(11)), "ignore_class": 2}),
    ("poly_loss_cross_entropy", {}),
    ("poly_loss_cross_entropy", {"epsilon": -0.6}),
    ("categorical_generalized_cross_entropy", {}),
    ("categorical_generalized_cross_entropy", {"q": 1.0}),
    ("categorical_generalized_cross_entropy", {"from_logits": True}),
    ("categorical_generalized_cross_entropy", {"from_logits": True, "q": 0.2}),
    ("multiclass_hinge", {}),
    ("multi_margin", {}),
    ("multi_margin", {"p": 2, "margin": 0.5, "weight": tuple(float(i % 3) for i in range(11))}),
    ("logits_distillation", {}),
    ("logits_distillation", {"temperature": 0.01, "temperature_squared": False}),
    ("generalized_jsd", {}),
    ("generalized_jsd", {"beta": 1e-9, "temperature": 0.5}),
    ("generalized_jsd", {"beta": 1.0 - 1e-9, "temperature": 2.0}),
    ("generalized_jsd", {"beta": 0.8}),
    ("generalized_jsd", {"beta": 0.0}),
    ("generalized_jsd", {"beta": 1.0}),
]

CORE = {"sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
        "mean_squared_error", "mean_absolute_error", "kl_divergence", "hinge"}

# the catalog losses' edge cases, written into the first rows of make_inputs' random inputs
_F32 = np.float32


def _regression_edges(t, p):
    p[0, :4] = t[0, :4] + np.array([0.0, 1.0, -1.0, 2.0], _F32)  # zero error, kinks, log-cosh's switch
    p[1] = t[1] + _F32(1e-6)  # tiny errors
    p[2] = t[2] + _F32(1e4) * np.sign(p[2] - t[2])  # large ones


def _margin_edges(t, f):
    f[0, :3] = t[0, :3] * np.array([1.0, 0.0, -1.0], _F32)  # on the margin, at 0
    f[1] *= 100


def _categorical_hinge_edges(t, f):
    t[:3] = 0.0
    t[:3, 1] = 1.0
    f[0, :4] = [0.5, 1.5, 0.0, -1.0]  # exactly on the margin
    f[1, :4] = [0.3, 0.1, 0.3, -1.0]  # a tied maximum
    f[2] = 0.0


def _focal_edges(t, x, opts):
    t[0, :4] = [0.0, 1.0, 1.0, 0.0]
    if opts.get("from_logits"):
        x[0, :4] = [40.0, 40.0, -100.0, 0.0]
    else:
        x[0, :4] = [0.0, 1.0, 1e-30, 0.5]


def _softmax_edges(t, x, opts):
    if opts.get("from_logits"):
        x[0] = 0.0
        x[1, 0] = 60.0  # a confident row
    else:
        x[1] = 1e-12
        x[1, 0] = 1 - 2.0**-20
    if t.ndim == 2:
        t[1] = 0.0
        t[1, 0] = 1.0
    else:
        t[1] = 0


def _divergence_edges(t, p):
    t[0, 0], p[0, 1] = 0.0, 0.0  # 0 log 0, an infinite term
    p[1] = t[1] * (1 + np.float32(1e-5) * np.random.default_rng(0).standard_normal(t.shape[1]))
    p[2] = t[2]


def _kl_div_edges(t, x, opts):
    if opts.get("log_target"):
        t[:] = np.log(t)
        x[1] = t[1]
        t[0, 0] = -np.inf
    else:
        x[1] = np.log(np.maximum(t[1], 1e-30))
        t[0, 0] = 0.0
        x[0, 0] = -np.inf


def _distillation_edges(z, w):
    z[0, 0] = -np.inf  # a teacher probability of 0
    w[1] = z[1] * (1 + np.float32(1e-6) * np.random.default_rng(0).standard_normal(z.shape[1]))
    z[2, 3] += 40.0  # a confident teacher, and a confident student
    w[2, 3] += 40.0


def _multiclass_edges(y, x):
    y[:3] = 1
    x[0, :4] = [0.5, 1.5, 0.5, -1.0]  # on the margin (multiclass_hinge), tied others
    x[1, :3] = [0.5, 1.0, 0.0]  # multi_margin's kink at margin 0.5


EDGES = {
    "huber": _regression_edges, "smooth_l1": _regression_edges, "log_cosh": _regression_edges,
    "pinball": _regression_edges, "mean_absolute_percentage_error": _regression_edges,
    "mean_squared_logarithmic_error": lambda t, p: p.__setitem__((0, slice(0, 2)), t[0, :2]),
    "squared_hinge": _margin_edges, "soft_margin": _margin_edges, "perceptron": _margin_edges,
    "categorical_hinge": _categorical_hinge_edges,
    "multilabel_soft_margin": lambda t, x: x.__setitem__((0, slice(0, 2)), [80.0, -80.0]),
    "jensen_shannon_divergence": _divergence_edges, "total_variation_distance": _divergence_edges,
    "generalized_kl_divergence": _divergence_edges,
    "multiclass_hinge": _multiclass_edges, "multi_margin": _multiclass_edges,
    "logits_distillation": _distillation_edges, "generalized_jsd": _distillation_edges,
}
EDGES_WITH_OPTIONS = {
    "binary_focal_crossentropy": _focal_edges, "categorical_focal_crossentropy": _softmax_edges,
    "poly_loss_cross_entropy": _softmax_edges, "categorical_generalized_cross_entropy": _softmax_edges,
    "kl_div": _kl_div_edges,
}


def _catalog_inputs(name: str, opts: dict, shape: tuple[int, int], rng: np.random.Generator):
    defn = losskit.get(name).definition
    y_true, y_pred, _ = make_inputs(defn, opts, rng, shape, dtype=np.float32)
    y_pred = y_pred.astype(np.float32)
    if y_true.dtype.kind == "f":
        y_true = y_true.astype(np.float32)
    if name in EDGES:
        EDGES[name](y_true, y_pred)
    if name in EDGES_WITH_OPTIONS:
        EDGES_WITH_OPTIONS[name](y_true, y_pred, opts)
    if name == "nll" and opts.get("ignore_class") is not None:
        y_true[5:9] = opts["ignore_class"]
    return y_true, y_pred


def _inputs(name: str, opts: dict, shape: tuple[int, int], rng: np.random.Generator):
    n, k = shape
    if name not in CORE:
        return _catalog_inputs(name, opts, shape, rng)
    if name.endswith("categorical_crossentropy") and not opts.get("from_logits"):
        p = rng.random(shape).astype(np.float32) ** 8
        p[1] = 1e-12
        p[1, 0] = 1 - 2.0**-20  # a confident row
        p[2, 3] = 0.0
        y = rng.integers(0, k, n)
        y[1] = 0
        if name.startswith("sparse"):
            return y, p
        t = rng.random(shape).astype(np.float32)
        t[2, 3] = 0.0
        return t, p
    if name == "sparse_categorical_crossentropy":
        x = (20 * rng.standard_normal(shape)).astype(np.float32)
        x[0] = 0.0
        x[1, 0] = 60.0  # a confident row: loss ~1e-26
        y = rng.integers(0, k, n)
        y[1] = 0
        return y, x
    if name == "categorical_crossentropy":
        t = rng.random(shape).astype(np.float32)
        t[0] = 0.0
        t[0, 1] = 1.0
        return t / t.sum(-1, keepdims=True), (15 * rng.standard_normal(shape)).astype(np.float32)
    if name == "binary_crossentropy":
        y = rng.integers(0, 2, shape).astype(np.float32)
        if opts.get("from_logits"):
            return y, (30 * rng.standard_normal(shape)).astype(np.float32)
        p = rng.random(shape).astype(np.float32)
        p[0, :3] = [0.0, 1.0, 1e-30]
        y[0, :3] = [0.0, 1.0, 1.0]
        return y, p
    if name == "kl_divergence":
        t = rng.random(shape).astype(np.float32)
        t[0, 0] = 0.0
        p = t + np.float32(1e-6) * rng.standard_normal(shape).astype(np.float32)  # near-equal rows
        p = np.clip(p, 1e-9, 1).astype(np.float32)
        return t, p
    if name == "hinge":
        t = rng.choice(np.array([-1.0, 1.0], np.float32), shape)
        f = rng.standard_normal(shape).astype(np.float32)
        f[0, 0], t[0, 0] = 1.0, 1.0  # on the margin
        return t, f
    return (rng.standard_normal(shape).astype(np.float32),
            (1e3 * rng.standard_normal(shape)).astype(np.float32))


def _generic(monkeypatch, fn):
    """``fn()`` with every fast kernel off: the float64 reference path."""
    with monkeypatch.context() as m:
        m.setattr(cpu, "fast_kernel", lambda *a, **k: None)
        return fn()


@pytest.mark.parametrize(("name", "opts"), COVERED, ids=lambda v: str(v))
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"])
def test_fast_path_matches_the_generic_kernel(monkeypatch, name, opts, reduction):
    rng = np.random.default_rng(7)
    y_true, y_pred = _inputs(name, opts, (37, 11), rng)
    assert cpu.fast_kernel(name, losskit.get(name).definition.normalise(opts), "float32") is not None
    loss = type(losskit.get(name))(**opts, reduction=reduction)
    weight = rng.random(37)
    weight[3] = 0.0
    fast = loss.value_and_gradient(y_true, y_pred, sample_weight=weight)
    slow = _generic(monkeypatch, lambda: loss.value_and_gradient(y_true, y_pred, sample_weight=weight))
    per_fast = getattr(losskit, name)(y_true, y_pred, **opts)
    per_slow = _generic(monkeypatch, lambda: getattr(losskit, name)(y_true, y_pred, **opts))
    for a, b in [(fast[0], slow[0]), (fast[1], slow[1]), (per_fast, per_slow)]:
        assert a.dtype == b.dtype == np.float32
        # both are the exact value rounded once, up to the generic path's own last-bit error
        np.testing.assert_allclose(a, b, rtol=4 * 2.0**-23, atol=0)


@pytest.mark.parametrize(("name", "opts"), COVERED, ids=lambda v: str(v))
def test_fast_path_keeps_nan_and_inf_as_the_generic_kernel(monkeypatch, name, opts):
    """NaN in y_pred (and +-inf where the domain allows it): per-sample values and gradients."""
    rng = np.random.default_rng(11)
    y_true, y_pred = _inputs(name, opts, (9, 11), rng)
    defn = losskit.get(name).definition
    y_pred[3, 2] = np.nan
    domain = defn.domain(defn.normalise(opts)).get("y_pred")
    if domain is None or (domain.high == np.inf and not domain.high_open):
        y_pred[4, 1], y_pred[5, 0] = np.inf, -np.inf if domain is None or domain.low == -np.inf else 0.0
    if domain is not None and domain.low == -np.inf and domain.high == 0.0:
        y_pred[4, 1] = -np.inf
    loss = type(losskit.get(name))(**opts, reduction="none")
    fast = loss.value_and_gradient(y_true, y_pred)
    slow = _generic(monkeypatch, lambda: loss.value_and_gradient(y_true, y_pred))
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a, b, rtol=4 * 2.0**-23, atol=0)


def test_one_thread_and_many_agree_bit_for_bit():
    rng = np.random.default_rng(3)
    x = (5 * rng.standard_normal((4096, 40))).astype(np.float32)
    y = rng.integers(0, 40, 4096)
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True)
    try:
        cpu.set_num_threads(1)
        one = loss.value_and_gradient(y, x)
        cpu.set_num_threads(3)
        three = loss.value_and_gradient(y, x)
    finally:
        cpu.set_num_threads(None)
    assert one[0] == three[0]
    assert np.array_equal(one[1], three[1])


def test_set_num_threads_checks_its_argument():
    with pytest.raises(ValueError, match="positive integer"):
        cpu.set_num_threads(0)


def test_infinite_top_logit_gives_the_limit():
    """A single +inf logit: loss 0 at its class and inf elsewhere; the softmax is one-hot."""
    x = np.array([[np.inf, 0.0, 1.0], [np.inf, 0.0, 1.0]], np.float32)
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    values, grad = loss.value_and_gradient(np.array([0, 1]), x)
    assert list(values) == [0.0, np.inf]
    assert grad.tolist() == [[0.0, 0.0, 0.0], [1.0, -1.0, 0.0]]


def test_torch_cpu_tensors_take_the_fast_path_and_backpropagate():
    torch = pytest.importorskip("torch")
    from losskit._backends import torch as torch_backend

    rng = np.random.default_rng(5)
    x = (4 * rng.standard_normal((64, 9))).astype(np.float32)
    y = rng.integers(0, 9, 64)
    opts = losskit.get("sparse_categorical_crossentropy").definition.normalise({"from_logits": True})
    assert torch_backend.fast_kernel("sparse_categorical_crossentropy", opts, "float32",
                                     torch.device("cpu")) is not None
    xt = torch.tensor(x, requires_grad=True)
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True)(torch.tensor(y), xt)
    loss.backward()
    reference = torch.nn.functional.cross_entropy(torch.tensor(x, dtype=torch.float64), torch.tensor(y))
    assert abs(float(loss.detach()) - float(reference)) <= 2 * 2.0**-23 * float(reference)
    xd = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.cross_entropy(xd, torch.tensor(y)).backward()
    np.testing.assert_allclose(xt.grad.numpy(), xd.grad.numpy(), rtol=4 * 2.0**-23, atol=1e-12)


@pytest.mark.parametrize("reduced", [True, False])
def test_torch_second_order_through_the_fast_path(reduced):
    """A gradient penalty (create_graph=True) differentiates the gradient even where the first-order
    gradient came from the compiled kernel: PyTorch's own MSE gives the expected numbers."""
    torch = pytest.importorskip("torch")
    t = torch.tensor([[0.1, 0.5, -0.2]], dtype=torch.float32)

    def penalty(loss_fn):
        p = torch.tensor([[0.3, -0.4, 1.0]], dtype=torch.float32, requires_grad=True)
        value = loss_fn(t, p)
        (g,) = torch.autograd.grad(value, p, create_graph=True)
        (g2,) = torch.autograd.grad((g**2).sum(), p)
        return g2

    if reduced:
        ours = penalty(lambda a, b: losskit.MeanSquaredError()(a, b))
    else:
        ours = penalty(lambda a, b: losskit.mean_squared_error(a, b).sum())
    theirs = penalty(lambda a, b: torch.nn.functional.mse_loss(b, a))  # one sample: mean == sum of means
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_quick_path_refuses_a_zero_width_axis_as_the_general_path_does():
    """float32 NumPy calls take the quick path; a (3, 0) batch must still be the documented
    ValueError, not a silent 0."""
    zeros = np.zeros((3, 0), np.float32)
    for call in (lambda: losskit.MeanSquaredError()(zeros, zeros),
                 lambda: losskit.MeanSquaredError().value_and_gradient(zeros, zeros),
                 lambda: losskit.mean_squared_error(zeros, zeros)):
        with pytest.raises(ValueError, match="y_pred"):
            call()


@pytest.mark.parametrize(("name", "opts"), [c for c in COVERED if not any(isinstance(v, tuple) for v in
                                                                            c[1].values())],
                         ids=lambda v: str(v))
def test_fast_path_over_block_boundaries(monkeypatch, name, opts):
    """Short rows are processed in blocks of whole rows and long rows one at a time: a batch that spans
    several blocks, and rows longer than a block, agree with the generic kernel (weights included)."""
    rng = np.random.default_rng(5)
    for shape in [(700, 4), (4, 1100)]:
        y_true, y_pred = _inputs(name, opts, shape, rng)
        loss = type(losskit.get(name))(**opts)
        weight = rng.random(shape[0])
        weight[1] = 0.0
        fast = loss.value_and_gradient(y_true, y_pred, sample_weight=weight)
        slow = _generic(monkeypatch, lambda loss=loss, t=y_true, p=y_pred, w=weight:
                        loss.value_and_gradient(t, p, sample_weight=w))
        for a, b in zip(fast, slow, strict=True):
            np.testing.assert_allclose(a, b, rtol=4 * 2.0**-23, atol=0)


# the elementwise float64 kernels (the row kernels, cross-entropies, KL and nll, are tested with ROWS64)
ROW_KERNELS64 = ("scce_logits", "scce_probs", "cce_logits", "cce_probs", "kl", "kl_div", "nll",
                 "multi_margin", "multiclass_hinge", "distill")  # distill: test_float64_distillation_kernel
WIDE_COVERED = [c for c in COVERED
                if cpu.select(c[0], losskit.get(c[0]).definition.normalise(c[1])) in cpu.WIDE
                and cpu.select(c[0], losskit.get(c[0]).definition.normalise(c[1])) not in ROW_KERNELS64]


def test_float64_kernels_cover_the_tutorial_losses():
    covered = {name for name, _ in WIDE_COVERED}
    assert {"binary_crossentropy", "mean_squared_error", "mean_absolute_error", "hinge"} <= covered


@pytest.mark.parametrize(("name", "opts"), WIDE_COVERED, ids=lambda v: str(v))
@pytest.mark.parametrize("k", [11, 1])
def test_float64_fast_path_matches_the_generic_kernel(monkeypatch, name, opts, k):
    """float64 input: the float64 C kernels against the generic float64 kernels (which the oracle
    checks against mpmath), with weights, NaN and infinite entries, values and gradients; rows of
    11 and of 1 element (these losses are elementwise: the same inputs reshaped)."""
    if k == 1 and isinstance(opts.get("weight"), tuple):
        pytest.skip("one weight per class: the rows of 11")
    rng = np.random.default_rng(3)
    y_true, y_pred = (a.astype(np.float64).reshape(-1, k) for a in _inputs(name, opts, (37, 11), rng))
    shape = y_pred.shape
    defn = losskit.get(name).definition
    assert cpu.fast_kernel(name, defn.normalise(opts), "float64") is not None
    y_pred[3, 0] = np.nan
    domain = defn.domain(defn.normalise(opts)).get("y_pred")
    if domain is None or (domain.high == np.inf and not domain.high_open):
        y_pred[4, 0] = np.inf
    loss = type(losskit.get(name))(**opts)
    per = type(losskit.get(name))(**opts, reduction="none")
    weight = rng.random(shape[0])
    weight[5] = 0.0
    for fn in (lambda: loss.value_and_gradient(y_true, y_pred, sample_weight=weight),
               lambda: per.value_and_gradient(y_true, y_pred)):
        fast, slow = fn(), _generic(monkeypatch, fn)
        for a, b in zip(fast, slow, strict=True):
            assert a.dtype == b.dtype == np.float64
            np.testing.assert_allclose(a, b, rtol=8 * 2.0**-52, atol=0)


@pytest.mark.parametrize("name", ["mean_absolute_error", "huber"])
def test_float64_fast_path_keeps_a_finite_mean_whose_partial_sum_overflows(monkeypatch, name):
    """Rows whose terms are finite but whose plain sum overflows are recomputed by the generic kernel
    (which rescales): the mean stays finite, and matches a derivation in exact arithmetic."""
    big = np.finfo(np.float64).max
    y_true = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    y_pred = np.array([[big / 2, big / 2, big / 2, 0.0], [1.5, 2.0, 3.0, 4.0]])
    values = getattr(losskit, name)(y_true, y_pred)
    assert np.isfinite(values[0])
    generic = _generic(monkeypatch, lambda: getattr(losskit, name)(y_true, y_pred))
    np.testing.assert_array_equal(values, generic)
    if name == "mean_absolute_error":
        assert values[0] == (big / 2) * 0.75  # exact: 3/8 of the largest double, a double


def test_torch_float64_cpu_tensors_take_the_float64_kernels():
    """float64 CPU tensors run the float64 C kernels: values and gradients as PyTorch's own losses,
    and a row whose plain sum overflows still recomputed (finite mean)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    assert cpu.fast_kernel("mean_squared_error", {}, "float64") is not None
    rng = np.random.default_rng(0)
    t = torch.tensor(rng.standard_normal((64, 5)))
    for loss, peer in [(losskit.MeanSquaredError(), F.mse_loss), (losskit.MeanAbsoluteError(), F.l1_loss)]:
        p = torch.tensor(rng.standard_normal((64, 5)), requires_grad=True)
        q = p.detach().clone().requires_grad_(True)
        loss(t, p).backward()
        peer(q, t).backward()
        torch.testing.assert_close(p.grad, q.grad, rtol=4e-16, atol=0)
    big = float(np.finfo(np.float64).max)
    y = torch.zeros(2, 4, dtype=torch.float64)
    x = torch.tensor([[big / 2] * 3 + [0.0], [1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    assert float(losskit.mean_absolute_error(y, x)[0]) == (big / 2) * 0.75


def test_float64_bce_of_subnormal_probabilities_matches_mpmath():
    """log p for a subnormal float64 p: the kernel's log scales it into the normal range first (a
    plain polynomial log of the raw bits was 4.7 off at p = 1e-310)."""
    p = np.array([[1e-310], [5e-324], [2.5e-315], [1e-300]])
    for label in (1.0, 0.3):
        y = np.full_like(p, label)
        got = losskit.binary_crossentropy(y, p)
        for pi, gi in zip(p[:, 0], got, strict=True):
            q = mpmath.mpf(float(pi))
            want = -(label * mpmath.log(q) + (1 - label) * mpmath.log1p(-q))
            assert abs(gi - float(want)) <= 8 * np.spacing(float(want)), (pi, label, gi, want)


# ------------------------------------------------- the checked kernels (Poisson and Gaussian NLL)

CHECKED = [
    ("poisson_nll", {}),
    ("poisson_nll", {"full": True}),
    ("poisson_nll", {"log_input": False}),
    ("poisson_nll", {"log_input": False, "full": True, "eps": 1e-3}),
    ("gaussian_nll", {}),
    ("gaussian_nll", {"full": True, "eps": 0.25}),
    ("poisson", {}),
    ("mean_gamma_deviance", {}),
]


def _checked_inputs(name: str, opts: dict, shape: tuple[int, int], rng: np.random.Generator):
    """Random inputs with the regimes that need the generic kernel's double-length tiers written into
    the first rows: a Poisson row at the optimum x = log t (the gradient e^x - t cancels), a row
    whose value cancels (Gaussian: log v against the square), zero errors, clamped and huge
    variances. Returns (y_true, y_pred, inputs)."""
    k = shape[1]
    f32 = np.float32
    t = rng.poisson(3.0 * rng.random(shape)).astype(f32)
    if name == "poisson":  # p - t log p
        x = (3.0 * rng.random(shape) + 1e-3).astype(f32)
        # a row that cancels to ~2^-48 of its terms: 2 - 4 log 2 < 0 against two t = 0 terms (their
        # value p, exact) that sum to -(2 - 4 log 2) within float32's reach twice over
        t[0], x[0] = 0.0, 0.0
        x[0, 0], t[0, 0] = 2.0, 4.0
        rest = -(2.0 - 4.0 * np.log(2.0))
        for j in (1, 2):
            part = f32(rest)
            part = np.nextafter(part, f32(0)) if part > rest else part
            x[0, j], rest = part, rest - float(part)
        t[1, :3] = 0.0  # 0 log p = 0
        x[1, 3], t[1, 3] = 0.0, 0.0  # 0 log 0 = 0
        x[2, 0] = 1e-30
        return t, x, {}
    if name == "mean_gamma_deviance":  # non-negative terms; near y_pred = y_true they cancel inside
        t = (rng.random(shape) * 4.0 + 1e-3).astype(f32)
        x = (t * (1.0 + 0.5 * rng.standard_normal(shape) ** 2)).astype(f32)
        x[0] = t[0]  # zero deviance
        x[1] = (t[1].astype(np.float64) * (1 + 2.0**-20)).astype(f32)  # u ~ 2^-20: the series
        x[2, :2] = t[2, :2] * f32(1.0625)  # just outside the series
        x[3, 0], t[3, 0] = 1e-30, 1e30
        return t, x, {}
    if name == "poisson_nll":
        if opts.get("log_input", True):
            x = rng.standard_normal(shape).astype(f32)
            t[0] = rng.integers(1, 50, k)
            x[0] = np.log(t[0].astype(np.float64)).astype(f32)  # the optimum: gradients ~1e-8 e^x
            x[0, 0], t[0, 0] = 2.0**-30, 1.0  # e^x - t = 2^-30: beyond a double e^x's accuracy
            x[1, :2], t[1, :2] = 0.0, 1.0  # e^0 - 1 = 0 exactly
            x[2, 0] = 30.0
        else:
            x = (3.0 * rng.random(shape)).astype(f32)
            x[0] = t[0]  # gradient ((x + eps) - t)/(x + eps) ~ eps/x
            x[1, 0], t[1, 0] = 0.0, 2.0  # log(eps)
        return t, x, {}
    t = rng.standard_normal(shape).astype(f32)
    var = (rng.random(shape) * 2.0).astype(f32)
    x = (t + rng.standard_normal(shape).astype(f32)).astype(f32)
    # a row whose value cancels: log 2 against log(1/2) (and log 1), exact errors but one 2^-20
    var[0], x[0], t[0] = 1.0, 0.0, 0.0
    m = k // 2 * 2
    var[0, 0:m:2], var[0, 1:m:2] = 2.0, 0.5
    x[0, 0] = 2.0**-20
    x[1, :3] = t[1, :3]  # zero errors
    var[2, :2] = [0.0, 1e-30]  # clamped at eps
    var[3, 0] = 1e30
    return t, x, {"var": var}


@pytest.mark.parametrize(("name", "opts"), CHECKED, ids=lambda v: str(v))
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "none", "mean_with_sample_weight"])
def test_checked_kernels_match_the_generic_kernel(monkeypatch, name, opts, reduction):
    """Poisson and Gaussian NLL's C kernels (rows they cannot keep within the contract recomputed by
    the generic kernel) against the generic kernels, which the oracle checks against mpmath: values
    and gradients, with weights, over block boundaries (short rows in blocks, rows longer than a
    block), float32 NumPy arrays."""
    rng = np.random.default_rng(13)
    defn = losskit.get(name).definition
    assert cpu.fast_kernel(name, defn.normalise(opts), "float32") is not None
    loss = type(losskit.get(name))(**opts, reduction=reduction)
    for shape in [(37, 11), (700, 4), (4, 1100)]:
        y_true, y_pred, inputs = _checked_inputs(name, opts, shape, rng)
        weight = rng.random(shape[0])
        weight[1] = 0.0

        def fn(t=y_true, p=y_pred, w=weight, i=inputs):
            return loss.value_and_gradient(t, p, sample_weight=w, **i)

        fast, slow = fn(), _generic(monkeypatch, fn)
        for a, b in zip(fast, slow, strict=True):
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=4 * 2.0**-23, atol=0)


@pytest.mark.parametrize(("name", "opts"), CHECKED, ids=lambda v: str(v))
def test_checked_kernels_flag_only_the_rows_that_need_it(name, opts):
    """The C kernel alone: it gives NaN (recompute) to the constructed hard rows (the Poisson optimum's
    gradients, a Gaussian value that cancels, non-finite rows) and keeps the random ones."""
    rng = np.random.default_rng(2)
    y_true, y_pred, inputs = _checked_inputs(name, opts, (64, 16), rng)
    y_pred[5, 3] = np.nan
    defn = losskit.get(name).definition
    kernel = cpu.fast_kernel(name, defn.normalise(opts), "float32")
    params = kernel.params(16, **defn.normalise(opts))
    extra = inputs.get("var")
    value, _ = cpu.run(kernel.kernel_id, y_true, y_pred, True, None, params, extra)
    flagged = set(np.flatnonzero(np.isnan(value)).tolist())
    assert 5 in flagged
    # (with full=True the Gaussian row's constant log(2 pi)/2 per element keeps it from cancelling)
    hard = {0} if opts.get("log_input", True) and not (name == "gaussian_nll" and opts.get("full")) \
        and name != "mean_gamma_deviance" else set()  # (gamma's terms are non-negative: no row cancels)
    assert hard <= flagged
    assert len(flagged - hard - {5}) <= 2  # random rows: (almost) never


def test_checked_kernels_keep_nan_and_inf_as_the_generic_kernel(monkeypatch):
    rng = np.random.default_rng(4)
    for name, opts in CHECKED:
        y_true, y_pred, inputs = _checked_inputs(name, opts, (9, 5), rng)
        y_pred[4, 2] = np.nan
        y_pred[5, 1] = np.inf
        if name == "gaussian_nll":
            inputs["var"][6, 0] = np.inf
            y_pred[7, 0] = -np.inf
        elif name == "poisson_nll" and opts.get("log_input", True):
            y_pred[6, 0] = -np.inf
        loss = type(losskit.get(name))(**opts, reduction="none")
        fast = loss.value_and_gradient(y_true, y_pred, **inputs)
        slow = _generic(monkeypatch, lambda loss=loss, t=y_true, p=y_pred, i=inputs:
                        loss.value_and_gradient(t, p, **i))
        for a, b in zip(fast, slow, strict=True):
            np.testing.assert_allclose(a, b, rtol=4 * 2.0**-23, atol=0)


def test_gaussian_nll_on_torch_tensors_takes_the_kernel_with_var():
    """var reaches the C kernel also from torch tensors (losskit's class and the twin), and the
    result is PyTorch's own float64 loss rounded."""
    torch = pytest.importorskip("torch")
    import losskit.torch as lt
    from losskit._backends import torch as torch_backend

    assert torch_backend.fast_kernel("gaussian_nll", {"full": False, "eps": 1e-6}, "float32",
                                     torch.device("cpu")).inputs == ("var",)
    rng = np.random.default_rng(8)
    t, x = (torch.tensor(rng.standard_normal((64, 7)), dtype=torch.float32) for _ in range(2))
    var = torch.tensor(rng.random((64, 7)) + 0.1, dtype=torch.float32)
    for fn in (lambda p: losskit.GaussianNLL()(t, p, var=var), lambda p: lt.gaussian_nll_loss(p, t, var)):
        p = x.clone().requires_grad_(True)
        value = fn(p)
        value.backward()
        q = x.double().requires_grad_(True)
        ref = torch.nn.functional.gaussian_nll_loss(q, t.double(), var.double())
        ref.backward()
        assert abs(float(value.detach()) - float(ref)) <= 2 * 2.0**-23 * abs(float(ref))
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=4 * 2.0**-23, atol=1e-12)


def test_log1p_unit_within_its_bound():
    """klog1p_unit (the float32 kernels' softplus tail log1p(e) for e = exp(-|x|) in [0, 1], as e P(e)
    with no division): relative error below 2^-30, the bound the kernels' value argument uses,
    against mpmath on a dense grid of [0, 1], its ends and tiny normal e."""
    mpmath.mp.prec = 100
    e = np.concatenate([np.linspace(0, 1, 20001), np.geomspace(1e-300, 1, 400),
                        [2.0**-1022, np.nextafter(1.0, 0.0), 2.0**-24]])
    got = _map(7, e)
    worst = 0.0
    for g, v in zip(got, e, strict=True):
        if v == 0:
            assert g == 0
            continue
        exact = mpmath.log1p(mpmath.mpf(float(v)))
        worst = max(worst, float(abs(mpmath.mpf(float(g)) - exact) / exact))
    assert worst <= 2.0**-30


# logits around the float32-first kernels' selection: |x| <= 100 takes the float32 exp, beyond (and
# inf, NaN) the double term; 110 is where the float32 exp stops
_EDGE_LOGITS = np.array([0.0, 1e-8, 0.5, 17.0, 88.5, 99.0, 99.99, 100.0, np.nextafter(np.float32(100), 0),
                         np.nextafter(np.float32(100), np.float32(200)), 100.5, 103.0, 104.5, 109.9, 110.0,
                         110.1, 120.0, 1e4, 3e38, np.inf], np.float32)


def _softplus_mp(z: mpmath.mpf) -> mpmath.mpf:
    return max(z, 0) + mpmath.log1p(mpmath.exp(-abs(z)))


def _f32_ulps_off(got: float, exact: mpmath.mpf) -> float:
    """|got - exact| in float32 ulps at the exact value (subnormal spacing below the normal range)."""
    if mpmath.isinf(exact):
        return 0.0 if got == float(exact) else np.inf
    spacing = float(np.spacing(np.float32(abs(float(exact)))))
    return float(abs(mpmath.mpf(float(got)) - exact)) / spacing


@pytest.mark.parametrize("name", ["binary_crossentropy", "soft_margin"])
def test_float32_first_softplus_kernels_at_the_selection_boundary(monkeypatch, name):
    """bce_logits and soft_margin (float32) take the value's exp in float32 for |x| <= 100 and
    recompute the elements beyond it, inf and NaN by the double term. Logits just inside and outside
    100, at the float32 exp's end (110) and far beyond, both signs, in one block with ordinary ones:
    per-element values within 2 float32 ulps of mpmath on the value-only and the value+gradient paths,
    NaN kept; gradients equal to the float64 kernel's rounded (the dtype property), and to the
    generic kernel's."""
    mpmath.mp.prec = 120
    x = np.concatenate([_EDGE_LOGITS, -_EDGE_LOGITS, [np.nan]]).astype(np.float32)
    if name == "binary_crossentropy":
        labels = [0.0, 1.0, 0.3]
        opts = {"from_logits": True}
    else:
        labels = [-1.0, 1.0]
        opts = {}
    y = np.repeat(np.asarray(labels, np.float32), x.size)
    x = np.tile(x, len(labels))[:, None]
    y = y[:, None]

    def exact(xi: float, yi: float) -> mpmath.mpf:
        xm, ym = mpmath.mpf(xi), mpmath.mpf(yi)
        if name == "soft_margin":
            return _softplus_mp(-ym * xm)
        neg = ym * _softplus_mp(-xm) if yi != 0 else 0
        pos = (1 - ym) * _softplus_mp(xm) if yi != 1 else 0
        return neg + pos

    want = [mpmath.nan if np.isnan(xi) else exact(float(xi), float(yi))
            for xi, yi in zip(x[:, 0], y[:, 0], strict=True)]
    # the values far below float32's range (e^-105 and less) are scaled into it by a sample weight, which
    # multiplies the double per-sample values before their rounding: a far element evaluated by the float32
    # exp (0 below -110) would show
    weight = np.array([1e35 if w < 1e-30 else 1.0 for w in want])
    per_sample = getattr(losskit, name)(y, x, **opts)  # value only
    per = type(losskit.get(name))(**opts, reduction="none")
    ones = np.ones_like(weight)
    for values, scale in [(per_sample, ones), (per.value_and_gradient(y, x)[0], ones),
                          (per(y, x, sample_weight=weight), weight),
                          (per.value_and_gradient(y, x, sample_weight=weight)[0], weight)]:
        assert values.dtype == np.float32
        for got, w, sc in zip(values, want, scale, strict=True):
            if mpmath.isnan(w):
                assert np.isnan(got)
                continue
            off = _f32_ulps_off(float(got), w * mpmath.mpf(float(sc)))
            assert off <= 2.0, (w, got, off)
    keep = ~np.isnan(x[:, 0])
    loss = type(losskit.get(name))(**opts)
    v32, g32 = loss.value_and_gradient(y[keep], x[keep])
    _, g64 = loss.value_and_gradient(y[keep].astype(np.float64), x[keep].astype(np.float64))
    np.testing.assert_array_equal(g32, g64.astype(np.float32))
    slow = _generic(monkeypatch, lambda: loss.value_and_gradient(y[keep], x[keep]))
    np.testing.assert_array_equal(g32, slow[1])
    np.testing.assert_allclose(v32, slow[0], rtol=4 * 2.0**-23, atol=0)


def test_categorical_cross_entropy_value_keeps_the_far_classes(monkeypatch):
    """The soft-target cross-entropy's value-only path takes its e_j from the float32 exp, as the sparse
    one does: classes 105-300 below the top (beyond the float32 exp's end at 110 in one row) are
    recomputed in double, and the values match the generic kernel; rows of ordinary logits too."""
    rng = np.random.default_rng(8)
    x = np.zeros((4, 3000), np.float32)
    x[:3, 1:] = -rng.uniform(105, 300, (3, 2999)).astype(np.float32)
    x[1, 1:] = -rng.uniform(111, 300, 2999).astype(np.float32)
    x[3] = (3 * rng.standard_normal(3000)).astype(np.float32)
    t = np.zeros((4, 3000), np.float32)
    t[:, 0] = 1.0
    t[2, :] = rng.dirichlet(np.ones(3000)).astype(np.float32)
    t[3, :] = rng.dirichlet(np.ones(3000)).astype(np.float32)
    fast = losskit.categorical_crossentropy(t, x, from_logits=True)
    slow = _generic(monkeypatch, lambda: losskit.categorical_crossentropy(t, x, from_logits=True))
    assert fast[0] > 0
    np.testing.assert_allclose(fast, slow, rtol=4 * 2.0**-23, atol=0)
# ------------------------------------------- float64 row kernels (cross-entropies, KL): _flagged64


def test_float64_log_and_exp_pairs_within_their_bounds():
    """klog_pair (absolute error below 2^-66) and kexp_dd (relative 2^-57), the bounds the float64 KL
    kernels' row checks use, against mpmath; subnormal, tiny and near-1 arguments included."""
    mpmath.mp.prec = 200
    rng = np.random.default_rng(2)

    def pairs(which: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.zeros(2 * x.size)
        a[0::2] = x
        out = _map(which, a)
        return out[0::2], out[1::2]

    t = np.concatenate([10 ** rng.uniform(-310, 0, 300), rng.uniform(0.5, 1, 100),
                        1 - 2.0 ** -np.arange(1, 53), [5e-324, 2.0**-1022, 1.0, 1 + 2.0**-52]])
    hi, lo = pairs(8, t)
    worst = max(abs(mpmath.mpf(h) + mpmath.mpf(v) - mpmath.log(mpmath.mpf(x)))
                for x, h, v in zip(t, hi, lo, strict=True))
    assert worst <= mpmath.mpf(2) ** -66
    y = np.concatenate([-rng.uniform(0, 700, 300), -rng.uniform(0, 1, 100), [0.0, -1e-300, -0.3465735902]])
    hi, lo = pairs(9, y)
    worst = max(abs(mpmath.mpf(h) + mpmath.mpf(v) - mpmath.exp(mpmath.mpf(x))) / mpmath.exp(mpmath.mpf(x))
                for x, h, v in zip(y, hi, lo, strict=True))
    assert worst <= mpmath.mpf(2) ** -57
    hi, lo = pairs(9, np.array([-np.inf, -800.0, np.nan]))
    assert hi[0] == hi[1] == lo[0] == lo[1] == 0.0
    assert np.isnan(hi[2])


def _rows64(name: str, opts: dict, rng: np.random.Generator, n: int = 40, k: int = 13):
    """float64 rows for the row kernels, the first few hard: a confident row (loss ~1e-30), huge
    logits, zero targets, near-equal distributions (KL rows the kernels flag), a NaN."""
    if name.endswith("categorical_crossentropy") and opts.get("from_logits"):
        x = 30 * rng.standard_normal((n, k))
        x[0] = 0.0
        x[1, 0] = 69.0  # loss ~ 12 e^-69 ~ 1e-29 at the top
        x[2] = 1e300 * rng.standard_normal(k)  # huge logits: differences overflow to -inf
        x[3, 5] = -np.inf
        x[4] = 1e15 + rng.standard_normal(k)  # differences rounded: the pair carries them
        x[5, 2] = np.nan
        if name.startswith("sparse"):
            y = rng.integers(0, k, n)
            y[1], y[3] = 0, 5
            return y, x
        t = rng.random((n, k))
        t[:, 0] = 0.0
        t[1] = 0.0
        t[1, 0] = 1.0
        return t / t.sum(-1, keepdims=True), x
    if name.endswith("categorical_crossentropy"):
        p = rng.random((n, k)) ** 8
        p[1] = 1e-30
        p[1, 0] = 1 - 1e-20  # confident: loss ~1e-29 at class 0
        p[2, 3] = 0.0
        p[3] = 1e-300 * rng.random(k)
        p[4, 4] = 1e-310  # subnormal next to 1
        p[5, 2] = np.nan
        if name.startswith("sparse"):
            y = rng.integers(0, k, n)
            y[1], y[4] = 0, 4
            return y, p
        t = rng.random((n, k))
        t[2, 3] = 0.0
        t[1] = 0.0
        t[1, 0] = 1.0
        return t, p
    if name == "nll":
        x = np.log(rng.dirichlet(np.ones(k), n))
        x[1, 0] = -np.inf
        x[2, 4] = np.nan
        x[3, 1] = -1e-300
        y = rng.integers(0, k, n)
        y[1] = 0
        return y, x
    t = rng.random((n, k))
    t[:, 0] = 0.0
    t /= t.sum(-1, keepdims=True)
    q = rng.random((n, k))
    q /= q.sum(-1, keepdims=True)
    q[1:6] = t[1:6] * (1 + 1e-9 * rng.standard_normal((5, k)))  # near-equal: flagged, recomputed
    q[6, 0] = 0.0  # zero target, zero prediction
    q[7] = t[7] * (1 + 1e-3 * rng.standard_normal(k))
    t[8, 3] = 1e-310
    q[9, 2] = np.nan
    if name == "kl_divergence":
        return t, q
    with np.errstate(divide="ignore"):
        lq, lt = np.log(q), np.log(t)
    lq[10, 0] = -np.inf  # under a zero target: term 0
    return (np.where(np.isinf(lt), -745.0, lt) if opts.get("log_target") else t), lq


ROWS64 = [
    ("sparse_categorical_crossentropy", {"from_logits": True}),
    ("sparse_categorical_crossentropy", {"from_logits": True, "ignore_class": 2}),
    ("sparse_categorical_crossentropy", {}),
    ("categorical_crossentropy", {"from_logits": True}),
    ("categorical_crossentropy", {}),
    ("kl_divergence", {}),
    ("kl_div", {}),
    ("kl_div", {"log_target": True}),
    ("nll", {}),
    ("nll", {"weight": (0.5, 2.0, 0.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.25)}),
]


@pytest.mark.parametrize(("name", "opts"), ROWS64, ids=lambda v: str(v))
def test_float64_row_kernels_match_the_generic_kernel(monkeypatch, name, opts):
    """The float64 C row kernels against the generic float64 kernels (which the oracle checks against
    mpmath): values within 8 ulp on random and hard rows, gradients within 8 ulp (soft targets: of the
    larger of the two terms g + t and t, the documented cancellation there), with sample weights."""
    rng = np.random.default_rng(12)
    y_true, y_pred = _rows64(name, opts, rng)
    defn = losskit.get(name).definition
    assert cpu.select(name, defn.normalise(opts)) in cpu.WIDE
    assert cpu.fast_kernel(name, defn.normalise(opts), "float64") is not None
    per = type(losskit.get(name))(**opts, reduction="none")
    fast = per.value_and_gradient(y_true, y_pred)
    slow = _generic(monkeypatch, lambda: per.value_and_gradient(y_true, y_pred))
    assert fast[0].dtype == fast[1].dtype == np.float64
    np.testing.assert_array_equal(np.isnan(fast[0]), np.isnan(slow[0]))
    np.testing.assert_allclose(fast[0], slow[0], rtol=8 * 2.0**-53, atol=0)
    scale = np.abs(slow[1])
    if name == "categorical_crossentropy":  # g = T softmax - t, or T/P - t/p: the larger term
        with np.errstate(all="ignore"):
            scale = (scale + 2 * np.abs(y_true) if opts.get("from_logits") else
                     np.abs(y_true.sum(-1, keepdims=True) / y_pred.sum(-1, keepdims=True))
                     + np.abs(y_true / y_pred))
    tol = 8 * 2.0**-53 * scale
    with np.errstate(invalid="ignore"):
        off = np.abs(fast[1] - slow[1])
    off = np.where(fast[1] == slow[1], 0.0, off)  # equal infinities
    assert np.all(np.isnan(fast[1]) == np.isnan(slow[1]))
    assert not np.any(np.nan_to_num(off) > tol)  # NaN rows: NaN on both sides (checked above)
    weight = rng.random(len(y_pred))
    weight[3] = 0.0
    loss = type(losskit.get(name))(**opts)
    fast = loss.value_and_gradient(y_true, y_pred, sample_weight=weight)
    slow = _generic(monkeypatch, lambda: loss.value_and_gradient(y_true, y_pred, sample_weight=weight))
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12, equal_nan=True)


def test_float64_kl_rows_flagged_only_where_needed():
    """The KL kernels keep rows whose bound is met (distributions apart) and flag near-equal ones (the
    generic kernel then recomputes them): a direct look at the C kernel's values."""
    rng = np.random.default_rng(4)
    t = rng.random((6, 50))
    t /= t.sum(-1, keepdims=True)
    q = rng.random((6, 50))
    q /= q.sum(-1, keepdims=True)
    q[3:] = t[3:] * (1 + 1e-10 * rng.standard_normal((3, 50)))
    for kernel_id, pred in [(cpu.KL, q), (cpu.KL_DIV, np.log(q))]:
        value, _ = cpu.run(kernel_id, t, pred, False, None, (0.0,))
        assert np.isfinite(value[:3]).all()
        assert np.isnan(value[3:]).all()


def test_torch_float64_tensors_take_the_float64_row_kernels():
    """float64 CPU tensors: cross-entropy and kl_div through the float64 C kernels, values and
    gradients as PyTorch's own float64 losses (well-conditioned rows: a few ulps apart)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    from losskit._backends import torch as torch_backend

    defn = losskit.get("kl_div").definition
    assert torch_backend.fast_kernel("kl_div", defn.normalise({}), "float64", torch.device("cpu")) is not None
    rng = np.random.default_rng(8)
    x = torch.tensor(3 * rng.standard_normal((64, 9)), requires_grad=True)
    y = torch.tensor(rng.integers(0, 9, 64))
    losskit.SparseCategoricalCrossentropy(from_logits=True)(y, x).backward()
    xr = x.detach().clone().requires_grad_(True)
    F.cross_entropy(xr, y).backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-14, atol=1e-17)
    t = torch.softmax(torch.tensor(rng.standard_normal((64, 9))), -1)
    lq = torch.log_softmax(torch.tensor(rng.standard_normal((64, 9))), -1).requires_grad_(True)
    ours = losskit.KLDiv(reduction="batchmean")(t, lq)
    ours.backward()
    lr = lq.detach().clone().requires_grad_(True)
    theirs = F.kl_div(lr, t, reduction="batchmean")
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=0)
    torch.testing.assert_close(lq.grad, lr.grad, rtol=1e-15, atol=0)


@pytest.mark.parametrize("k", [2, 3, 10, 17, 32, 33, 64])
@pytest.mark.parametrize("name", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_short_row_cross_entropy_blocks_match_the_generic_kernel(monkeypatch, name, k):
    """Float32 cross-entropies from logits with up to 32 classes take blocks of whole rows (the
    C kernels' short-row path; 33 and 64 the row loops): a row count that is not a multiple of the
    block, confident rows, -inf/inf/NaN logits, ignore_class and sample weights (some 0) agree with
    the generic float64 kernel, per sample and in the weighted mean's gradient."""
    rng = np.random.default_rng(k)
    n = 1037
    x = (3 * rng.standard_normal((n, k))).astype(np.float32)
    x[::7, 0] += 90.0  # confident rows: the other classes are ~e^-90 and below
    x[5, 1] = -np.inf
    x[6, :] = -np.inf
    x[6, k - 1] = 0.0
    x[8, k - 1] = np.inf
    x[9, 0] = np.nan
    x[10, 1] = 150.0  # the others more than 110 below the top
    weight = rng.random(n)
    weight[::5] = 0.0
    if name.startswith("sparse"):
        y = rng.integers(0, k, n)
        y[::11] = k - 1
        opts = {"from_logits": True, "ignore_class": k - 1}
    else:
        y = rng.random((n, k)).astype(np.float32) ** 4
        y[rng.random((n, k)) < 0.3] = 0.0
        y /= np.maximum(y.sum(axis=1, keepdims=True), np.float32(1e-3))
        y[12] = 0.0
        y[13, :] = 0.0
        y[13, 0] = 1.0
        opts = {"from_logits": True}
    assert cpu.fast_kernel(name, losskit.get(name).definition.normalise(opts), "float32") is not None
    finite = np.isfinite(x).all(axis=1)
    for reduction, w, rows in [("none", None, slice(None)), ("mean_with_sample_weight", weight, finite)]:
        loss = type(losskit.get(name))(**opts, reduction=reduction)
        # the weighted mean over the finite rows only: one NaN row makes every gradient NaN
        args = (y[rows], x[rows])
        kw = {} if w is None else {"sample_weight": w[rows]}
        fast = loss.value_and_gradient(*args, **kw)
        slow = _generic(monkeypatch, lambda loss=loss, args=args, kw=kw: loss.value_and_gradient(*args, **kw))
        for a, b in zip(fast, slow, strict=True):
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=4 * 2.0**-23, atol=0)


@pytest.mark.parametrize("kernel", ["SCCE_LOGITS", "CCE_LOGITS"])
@pytest.mark.parametrize("k", [3, 10, 32, 33])
def test_short_rows_gradient_written_over_its_own_logits(kernel, k):
    """losskit/linear.py writes the gradient over the logits it comes from: the kernels (short-row
    blocks included) give the same gradients in place as into a separate buffer, and the same
    values to far below float32's precision."""
    rng = np.random.default_rng(k)
    x = (rng.standard_normal((1037, k)) * 4).astype(np.float32)
    if kernel == "SCCE_LOGITS":
        t = rng.integers(0, k, 1037)
    else:
        t = rng.dirichlet(np.ones(k), 1037).astype(np.float32)
    scale = rng.random(1037)
    kid = getattr(cpu, kernel)
    v1, g1 = np.empty(1037), np.empty_like(x)
    cpu._cpu.run(kid, 0, t, x, 1037, k, v1, g1, scale, np.zeros(1), None)
    z = x.copy()
    v2 = np.empty(1037)
    cpu._cpu.run(kid, 0, t, z, 1037, k, v2, z, scale, np.zeros(1), None)
    # the float64 row values may differ in their last bits (the rows' sums in another order)
    np.testing.assert_allclose(v1, v2, rtol=2.0**-48, atol=0)
    np.testing.assert_array_equal(g1, z)


@pytest.mark.parametrize("k", [3, 10, 40, 1000])
def test_cce_probabilities_value_with_sparse_targets_matches_the_generic_kernel(monkeypatch, k):
    """categorical_crossentropy from probabilities, value only: rows with at most k/4 non-zero targets
    take the sparse kernel (the log only where t != 0), the others the dense one; both against the
    generic float64 path, with zero and NaN probabilities and NaN and tiny targets."""
    rng = np.random.default_rng(5)
    n = 64
    p = rng.random((n, k)).astype(np.float32)
    p /= p.sum(-1, keepdims=True)
    t = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]  # one-hot: the sparse kernel
    t[8:16, 0] += 0.5  # two non-zero targets (sparse from k = 8 on)
    t[8:16] /= t[8:16].sum(-1, keepdims=True)
    t[16:24] = rng.random((8, k)).astype(np.float32)  # dense rows
    t[24:28] *= 1e-30
    p[32:36] = 0.0
    p[32:36, 1] = 1.0  # zero probabilities under a target
    p[36, 2], t[38, 1] = np.nan, np.nan
    fast = losskit.categorical_crossentropy(t, p)
    slow = _generic(monkeypatch, lambda: losskit.categorical_crossentropy(t, p))
    np.testing.assert_array_equal(np.isfinite(fast), np.isfinite(slow))
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    ok = np.isfinite(slow)
    np.testing.assert_allclose(fast[ok], slow[ok], rtol=2e-7, atol=0)


# ------------------------------------- float64 Poisson and Gaussian NLL: _checked64 over run3_d


def _checked_inputs64(name: str, opts: dict, shape: tuple[int, int], rng: np.random.Generator):
    """float64 inputs in the regimes the float64 kernels treat apart: _checked_inputs's rows in double,
    plus (Poisson, log_input) x the double nearest log t (the gradient e^x - t cancels to ~1e-16 e^x:
    kexp_acc), a row whose terms cancel (e^x - t x summed to ~0: the second tier), x past exp's
    overflow and below its underflow; (rate) x = t exactly, an infinite rate; (Gaussian) a row of
    exact zero errors with var 1 (value exactly 0: handed to the generic kernel), infinite
    predictions, variances and targets."""
    t, x, inputs = _checked_inputs(name, opts, shape, rng)
    t, x = t.astype(np.float64), x.astype(np.float64)
    inputs = {key: v.astype(np.float64) for key, v in inputs.items()}
    k = shape[1]
    if name == "poisson_nll" and opts.get("log_input", True):
        x[0] = np.log(t[0])
        x[3, 0], t[3, 0] = 1.0, np.e  # e^1 - e = 1.4e-16 (the float e is below e)
        x[4] = rng.standard_normal(k)  # terms e^x - t x that sum to ~0: t = e^x (1 - x) / x ...
        t[4] = rng.poisson(np.exp(x[4])).astype(np.float64)
        t[4, 0] = 0.0
        x[4, 0] = np.log(max(float(np.sum(t[4, 1:] * x[4, 1:] - np.exp(x[4, 1:]))), 1e-3))
        x[5, 0] = 710.0  # e^x overflows: the generic kernel's rules
        x[6, 0] = -800.0  # underflows to 0
    elif name == "poisson_nll":
        x[2] = t[2]
        x[5, 0] = np.inf
    else:
        x[4], t[4], inputs["var"][4] = 0.5, 0.5, 1.0
        x[5, 0], inputs["var"][6, 0], t[6, 1] = np.inf, np.inf, -np.inf
    return t, x, inputs


@pytest.mark.parametrize(("name", "opts"), [c for c in CHECKED if c[0] in ("poisson_nll", "gaussian_nll")],
                         ids=lambda v: str(v))  # (poisson and gamma deviance: float32 kernels only)
def test_float64_checked_kernels_match_the_generic_kernel(monkeypatch, name, opts):
    """float64 Poisson and Gaussian NLL's C kernels against the generic float64 kernels (which the
    oracle checks against mpmath): values within 8 ulp, gradients within 8 ulp of the generic one or,
    at the Poisson optimum, within the generic kernel's own error there (2^-94 e^x, the docstring's
    limit; test_float64_poisson_gradient_at_the_optimum checks the C kernel against mpmath), with
    sample weights, short rows in threads and rows of over a thousand."""
    rng = np.random.default_rng(17)
    defn = losskit.get(name).definition
    assert cpu.select(name, defn.normalise(opts)) in cpu.WIDE
    assert cpu.fast_kernel(name, defn.normalise(opts), "float64") is not None
    per = type(losskit.get(name))(**opts, reduction="none")
    loss = type(losskit.get(name))(**opts)
    for shape in [(37, 11), (20000, 4), (7, 1100)]:
        y_true, y_pred, inputs = _checked_inputs64(name, opts, shape, rng)
        fast = per.value_and_gradient(y_true, y_pred, **inputs)
        slow = _generic(monkeypatch, lambda t=y_true, x=y_pred, i=inputs: per.value_and_gradient(t, x, **i))
        assert fast[0].dtype == fast[1].dtype == np.float64
        np.testing.assert_allclose(fast[0], slow[0], rtol=8 * 2.0**-53, atol=0)
        np.testing.assert_array_equal(np.isnan(fast[1]), np.isnan(slow[1]))
        tol = 8 * 2.0**-53 * np.abs(slow[1])
        if name == "poisson_nll" and opts.get("log_input", True):
            with np.errstate(over="ignore"):
                tol = tol + 2.0**-90 * np.exp(y_pred) / shape[1]
        with np.errstate(invalid="ignore"):
            off = np.where(fast[1] == slow[1], 0.0, np.abs(fast[1] - slow[1]))
        assert not np.any(off > tol)
        weight = rng.random(shape[0])
        weight[1] = 0.0
        fast = loss.value_and_gradient(y_true, y_pred, sample_weight=weight, **inputs)
        slow = _generic(monkeypatch, lambda t=y_true, x=y_pred, w=weight, i=inputs:
                        loss.value_and_gradient(t, x, sample_weight=w, **i))
        np.testing.assert_allclose(fast[0], slow[0], rtol=1e-13)
        tol = 1e-13 * np.abs(slow[1]) + (2.0**-90 * np.exp(np.minimum(y_pred, 700)) if name == "poisson_nll"
                                         and opts.get("log_input", True) else 0.0)
        with np.errstate(invalid="ignore"):
            off = np.where(fast[1] == slow[1], 0.0, np.abs(fast[1] - slow[1]))
        assert not np.any(off > tol)


def test_float64_poisson_gradient_at_the_optimum_matches_mpmath():
    """x the double nearest log t: e^x - t is 2^-50 to 2^-60 of e^x, so e^x must be good to ~2^-100
    (kexp_acc, on the elements the kernel marks); the gradient (e^x - t)/k against mpmath: within
    8 ulp, plus 2^-100 e^x/k where it is below 2^-43 e^x (the documented limit: beyond it a
    double-length e^x's own error shows)."""
    t = np.arange(1.0, 41.0).reshape(4, 10)
    x = np.log(t)
    x[0, 0], x[1, 0], t[1, 0] = 2.0**-30, -700.0, np.exp(-700.0)  # e^x - 1 = 2^-30; both tiny
    _, g = losskit.PoissonNLL(reduction="none").value_and_gradient(t, x)
    with mpmath.workdps(60):
        for a, b, got in zip(x.ravel(), t.ravel(), g.ravel(), strict=True):
            e = mpmath.exp(mpmath.mpf(float(a)))
            exact = float((e - mpmath.mpf(float(b))) / 10)
            assert abs(got - exact) <= 8 * np.spacing(abs(exact)) + 2.0**-100 * float(e) / 10


def test_float64_checked_kernels_flag_only_the_rows_that_need_it():
    """The C kernels alone: random rows and the Poisson rows whose terms cancel (the second tier) are
    kept; rows past exp's overflow, NaN rows and a Gaussian row of value exactly 0 are flagged."""
    rng = np.random.default_rng(3)
    for name, opts in [("poisson_nll", {}), ("poisson_nll", {"log_input": False}), ("gaussian_nll", {})]:
        y_true, y_pred, inputs = _checked_inputs64(name, opts, (64, 16), rng)
        y_pred[8, 3] = np.nan
        defn = losskit.get(name).definition
        kernel_id = cpu.GAUSSIAN_NLL_D if name == "gaussian_nll" else cpu.POISSON_NLL_D
        params = (cpu._gaussian_params if name == "gaussian_nll" else cpu._poisson_params)(
            16, **defn.normalise(opts))
        value, _ = cpu._run3_d(kernel_id, y_true, y_pred, inputs.get("var", y_pred), True, None, params)
        flagged = set(np.flatnonzero(np.isnan(value)).tolist())
        hard = {5} if name == "poisson_nll" else {4, 5, 6}
        assert hard | {8} <= flagged
        assert len(flagged - hard - {8}) <= 1


@pytest.mark.parametrize(("name", "opts"), [
    ("multi_margin", {}), ("multi_margin", {"p": 2, "margin": 0.5, "weight": (0.0, 1.0, 2.0) * 4 + (0.0,)}),
    ("multi_margin", {"p": 2, "margin": 1e-20}), ("multiclass_hinge", {})], ids=str)
def test_float64_multi_margin_matches_the_generic_kernel(monkeypatch, name, opts):
    """multi_margin_d and multiclass_hinge_d against the generic float64 kernels: margins that cancel
    x_j - x_y (to 1e-17 and exactly: the kink), scores near 1e15 (their differences rounded without
    the pair), infinite and NaN scores; values and gradients within 8 ulp, with sample weights."""
    rng = np.random.default_rng(21)
    n, k = 40, 13
    margin = opts.get("margin", 1.0)
    x = rng.standard_normal((n, k))
    y = rng.integers(0, k, n)
    x[0] = x[0, y[0]] - margin  # every m_j = 0 exactly: the kink
    x[1] = x[1, y[1]] - margin + 1e-17 * rng.standard_normal(k)  # m_j ~ 1e-17 (the pair's remainder)
    x[2] = 1e15 + rng.standard_normal(k)
    x[3, (y[3] + 1) % k] = np.inf
    x[4, y[4]] = np.inf
    x[5, 2] = np.nan
    x[6] = 1e200 * rng.standard_normal(k)  # squares overflow (p = 2): the generic kernel's row
    if name == "multiclass_hinge":  # the best other class tied and untied with the margin
        x[0, (y[0] + 1) % k] = x[0, y[0]] - 1.0 + 1e-17
    defn = losskit.get(name).definition
    assert cpu.fast_kernel(name, defn.normalise(opts), "float64") is not None
    per = type(losskit.get(name))(**opts, reduction="none")
    fast = per.value_and_gradient(y, x)
    slow = _generic(monkeypatch, lambda: per.value_and_gradient(y, x))
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == b.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=8 * 2.0**-53, atol=0)
    loss = type(losskit.get(name))(**opts)
    weight = rng.random(n)
    weight[7] = 0.0
    fast = loss.value_and_gradient(y, x, sample_weight=weight)
    slow = _generic(monkeypatch, lambda: loss.value_and_gradient(y, x, sample_weight=weight))
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a, b, rtol=16 * 2.0**-53, atol=0)


def _hard_probability_rows(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """float32 (y_true, y_pred) rows of k classes for the cross-entropies of probabilities: ordinary
    rows and the regimes _cpu.c's cce_probs argues about (a top near 1 with tiny others, so that
    -log q_top is 1e-30-sized; a top just above and just below P/2; tiny and subnormal
    probabilities; zeros with and without target mass; unnormalised rows, large and small)."""
    p = rng.random((12, k)).astype(np.float32) + np.float32(0.01)
    p[1] = 1e-30
    p[1, 3] = 1.0                                      # q_top = 1 - 1e-29 (k - 1)
    p[2] = 1e-3
    p[2, 0] = 1.0                                      # q_top > 1/2, log1p form
    p[3] = 1.0
    p[3, 1] = np.float32(k - 1) * np.float32(1.0000001)  # q_top just above 1/2
    p[4] = 1.0
    p[4, 1] = np.float32(k - 1) * np.float32(0.9999999)  # just below
    p[5, ::2] = np.float32(1e-40)                      # subnormal probabilities
    p[6, 1] = 0.0                                      # a zero (its target made 0 below)
    p[7] *= np.float32(3e30)                           # unnormalised, large
    p[8] *= np.float32(1e-35)                          # unnormalised, tiny (some subnormal)
    p[9, :] = np.float32(2.0**-20) * np.arange(1, k + 1, dtype=np.float32)
    p[10, 2] = np.float32(1e-38)
    p[11] = 0.0
    p[11, 0] = 1.0                                     # one-hot prediction: loss 0 at the top
    t = rng.random((12, k)).astype(np.float32)
    t[rng.random((12, k)) < 0.3] = 0.0
    t[6, 1] = 0.0
    t[11] = 0.0
    t[11, 0] = 1.0
    t[1] = 0.0
    t[1, 3] = 1.0                                      # all the mass on the near-1 top: loss 1e-29 (k - 1)
    t[2, 0] = 0.5
    return t, p


@pytest.mark.parametrize("k", [5, 11, 32, 40, 700])
def test_cce_probs_float32_kernel_within_one_ulp_of_mpmath_on_hard_rows(k):
    """cce_probs (float32: one float32-mantissa log per element, log1p(R/p_top) where the top holds
    over half the row) on the hard rows of _hard_probability_rows, short rows (blocks, k <= 32) and
    long ones: each row's value within 1 float32 ulp of mpmath's -sum t_j log(p_j / P), on the
    value-only and value+gradient calls; the gradient equal on both paths' rows and within 4 ulp of
    mpmath's ((T - t_j) p_j - t_j R_j) / (p_j P) = T/P - t_j/p_j (of the larger of the two terms)."""
    mpmath.mp.prec = 120
    rng = np.random.default_rng(21)
    t, p = _hard_probability_rows(k, rng)
    rows = len(p)
    for grad in (False, True):
        value, g = cpu.run(cpu.CCE_PROBS, t, p, grad, None, (0.0,))
        for r in range(rows):
            pr = [mpmath.mpf(float(v)) for v in p[r]]
            big = mpmath.fsum(pr)
            exact = mpmath.fsum(-mpmath.mpf(float(tj)) * mpmath.log(pj / big)
                                for tj, pj in zip(t[r], pr, strict=True) if tj != 0)
            assert _f32_ulps_off(float(np.float32(value[r])), exact) <= 1.0, (r, value[r], exact)
            if not grad:
                continue
            tt = mpmath.fsum(mpmath.mpf(float(v)) for v in t[r])
            for j in range(k):
                tj, pj = mpmath.mpf(float(t[r, j])), pr[j]
                if pj == 0:
                    continue
                exact_g = tt / big - tj / pj
                size = max(abs(tt / big), abs(tj / pj))
                if size > np.finfo(np.float32).max:  # a subnormal p_j's -t_j/p_j overflows float32
                    with np.errstate(over="ignore"):
                        assert g[r, j] == np.float32(float(exact_g)), (r, j)
                    continue
                spacing = float(np.spacing(np.float32(float(size))))
                assert abs(mpmath.mpf(float(g[r, j])) - exact_g) <= 4 * spacing, (r, j)
    value_only, _ = cpu.run(cpu.CCE_PROBS_SPARSE, t, p, False, None, (0.0,))
    np.testing.assert_allclose(value_only, value, rtol=2.0**-30)


@pytest.mark.parametrize("k", [5, 32, 700])
def test_scce_probs_float32_kernel_within_one_ulp_of_mpmath_on_hard_rows(k):
    """scce_probs (float32: the others' sum R_y taken directly, log1p(R_y / p_y)) on the hard rows of
    _hard_probability_rows with the label at the top, at a tiny or subnormal class, at a zero and
    at an ordinary one: values within 1 float32 ulp of mpmath's log((R_y + p_y) / p_y), gradients
    within 2 ulp of 1/P and -(R_y / p_y) / P; an ignored label (outside [0, k)) reads a class."""
    mpmath.mp.prec = 120
    rng = np.random.default_rng(22)
    _, p = _hard_probability_rows(k, rng)
    rows = len(p)
    for y in (np.argmax(p, -1), np.zeros(rows, np.int64) + 2, rng.integers(0, k, rows)):
        y = np.ascontiguousarray(y, dtype=np.int64)
        value, g = cpu.run(cpu.SCCE_PROBS, y, p, True, None, (0.0,))
        value_only, _ = cpu.run(cpu.SCCE_PROBS, y, p, False, None, (0.0,))
        np.testing.assert_array_equal(value, value_only)
        for r in range(rows):
            pr = [mpmath.mpf(float(v)) for v in p[r]]
            big, py = mpmath.fsum(pr), pr[y[r]]
            exact = mpmath.log(big / py) if py else mpmath.inf
            assert _f32_ulps_off(float(np.float32(value[r])), exact) <= 1.0, (r, value[r], exact)
            if not py:
                continue
            for j, exact_g in ((0 if y[r] else 1, 1 / big), (y[r], -((big - py) / py) / big)):
                if abs(exact_g) > np.finfo(np.float32).max:  # a subnormal p_y: overflows float32
                    assert g[r, j] == (np.inf if exact_g > 0 else -np.inf), (r, j)
                    continue
                assert _f32_ulps_off(float(g[r, j]), exact_g) <= 2.0, (r, j)
    y = np.full(rows, -100, np.int64)
    value, _ = cpu.run(cpu.SCCE_PROBS, y, p, True, None, (0.0,))
    assert np.isfinite(value[:-1]).all()


def _distill_rows64(rng: np.random.Generator, n: int = 24, k: int = 40):
    """float64 teacher and student logits: random rows apart (rows 7 on), huge logits (row 2), and
    rows the float64 kernel hands to the generic one: a -inf teacher or student logit, a NaN, a
    student a few ulps from the teacher (a divergence ~1e-30), a teacher and student sure to
    1 - 1e-290, nearly equal students."""
    z = 2 * rng.standard_normal((n, k))
    w = 2 * rng.standard_normal((n, k))
    z[0, 3] = -np.inf
    w[1, 5] = np.nan
    z[2], w[2] = 1e300 * rng.standard_normal(k), 1e300 * rng.standard_normal(k)
    w[3] = z[3] + 4 * np.spacing(np.abs(z[3])) * rng.integers(-2, 3, k)
    z[4, 7] += 700.0
    w[4] = z[4] + 1e-3 * rng.standard_normal(k)
    w[5] = z[5] * (1 + 1e-9 * rng.standard_normal(k))
    w[6, 0] = -np.inf
    w[7] = z[7] + 1e-4 * rng.standard_normal(k)  # close, but the bound holds (KL ~1e-9)
    return z, w


def _distill_d_matches_generic(monkeypatch: pytest.MonkeyPatch, cls: type, opts: dict, z: np.ndarray,
                               w: np.ndarray, rng: np.random.Generator, factor: float) -> None:
    """distill_d's values and gradients, per sample and reduced with sample weights (one of them 0),
    against the generic kernel's: 16 units of 2^-53, the gradients' relative to factor times 1 plus
    the term (each at most 1)."""
    per = cls(**opts, reduction="none")
    loss = cls(**opts)
    weight = rng.random(len(z))
    weight[9] = 0.0
    for fn in (lambda: per.value_and_gradient(z, w),
               lambda: loss.value_and_gradient(z, w, sample_weight=weight)):
        fast, slow = fn(), _generic(monkeypatch, fn)
        np.testing.assert_array_equal(np.isnan(fast[0]), np.isnan(slow[0]))
        np.testing.assert_allclose(fast[0], slow[0], rtol=16 * 2.0**-53, atol=0)
        np.testing.assert_array_equal(np.isnan(fast[1]), np.isnan(slow[1]))
        off = np.abs(np.nan_to_num(fast[1]) - np.nan_to_num(slow[1]))
        assert not np.any(off > 16 * 2.0**-53 * factor * (np.abs(slow[1]) / factor + 1.0))

@pytest.mark.parametrize("opts", [{"temperature": 2.0}, {"temperature": 0.3, "temperature_squared": False},
                                  {"temperature": 3.0, "beta": 0.0}])
def test_float64_distillation_kernel(monkeypatch, opts):
    """distill_d (float64 logits_distillation, generalized_jsd at beta = 0): the rows it keeps within
    8 ulp of mpmath (the oracle's terms) in the value and of max(p_j, q_j) (T^2 or 1)/T in the
    gradient (the documented scale where q_j - p_j cancels); the rows it cannot bound (non-finite
    logits, nearly equal distributions) flagged and recomputed, so that the loss matches the generic
    kernel everywhere, with sample weights and on float64 torch tensors."""
    from tests.oracle.families.distillation import _distill_terms, _parts

    name = "generalized_jsd" if "beta" in opts else "logits_distillation"
    defn = losskit.get(name).definition
    full = defn.normalise(opts)
    assert cpu.fast_kernel(name, full, "float64") is cpu._KERNELS64["distill"]
    jsd = losskit.get("generalized_jsd").definition
    assert cpu.fast_kernel("generalized_jsd", jsd.normalise({"beta": 0.5}), "float64") is (
        cpu._KERNELS64["distill"])
    rng = np.random.default_rng(21)
    z, w = _distill_rows64(rng)
    raw, raw_g = cpu.run(cpu.DISTILL, z, w, True, None, cpu._distill64_params(z.shape[1], **full))
    assert np.isnan(raw[[0, 1, 3, 4, 5, 6]]).all()
    assert np.isfinite(raw[7:]).all()
    assert np.isfinite(raw[2])  # huge logits: one-hot distributions, KL = (w_r' - w_r)/T, kept
    mpmath.mp.dps = 40
    t = float(full["temperature"])
    factor = t if full["temperature_squared"] else 1 / t
    for r in range(7, len(z), 3):
        zr, wr = ([mpmath.mpf(float(v)) for v in a[r]] for a in (z, w))
        exact = _distill_terms(zr, wr, {**full, "beta": 0.0})[0]
        assert abs(mpmath.mpf(float(raw[r])) - exact) <= 8 * 2.0**-53 * exact, r
        p, q, _, _, _ = _parts(zr, wr, {**full, "beta": 0.0})
        for j in range(z.shape[1]):
            g = factor * (q[j] - p[j])
            top = int(np.argmax(z[r]))
            big = factor * (max(1 - p[j], 1 - q[j]) if j == top else max(p[j], q[j]))
            assert abs(mpmath.mpf(float(raw_g[r, j])) - g) <= 8 * 2.0**-53 * big, (r, j)
    _distill_d_matches_generic(monkeypatch, type(losskit.get(name)), opts, z, w, rng, factor)
    torch = pytest.importorskip("torch")
    loss = type(losskit.get(name))(**opts)
    wt = torch.tensor(w[7:], requires_grad=True)
    value = loss(torch.tensor(z[7:]), wt)
    value.backward()
    ref = loss.value_and_gradient(z[7:], w[7:])
    assert float(value) == pytest.approx(float(ref[0]), rel=1e-15)
    np.testing.assert_allclose(wt.grad.numpy(), ref[1], rtol=1e-15, atol=1e-18)


@pytest.mark.parametrize(("beta", "temperature"), [(0.5, 1.0), (0.1, 0.7), (0.9, 2.0), (1e-9, 1.0)])
def test_float64_generalized_jsd_mixture_kernel(monkeypatch, beta, temperature):
    """distill_d at 0 < beta < 1 (distill_mix_row): the rows it keeps within 8 ulp of mpmath (the
    oracle's terms) in the value and, in the gradient, of the oracle's scale (its grad_scale where the
    two terms cancel, else the element itself); the rows it cannot bound (non-finite logits, nearly
    equal distributions) flagged, so that the loss matches the generic kernel everywhere, with
    sample weights."""
    from tests.oracle.families.distillation import _distill_terms, _grad_scale, _parts

    opts = {"beta": beta, "temperature": temperature}
    full = losskit.get("generalized_jsd").definition.normalise(opts)
    rng = np.random.default_rng(29)
    z, w = _distill_rows64(rng)
    raw, raw_g = cpu.run(cpu.DISTILL, z, w, True, None, cpu._distill64_params(z.shape[1], **full))
    assert np.isnan(raw[[0, 1, 3, 5, 6]]).all()
    assert np.isfinite(raw[8:]).all()
    mpmath.mp.dps = 40
    factor = 1 / temperature
    for r in range(8, len(z), 4):
        zr, wr = ([mpmath.mpf(float(v)) for v in a[r]] for a in (z, w))
        exact = _distill_terms(zr, wr, full)[0]
        assert abs(mpmath.mpf(float(raw[r])) - exact) <= 8 * 2.0**-53 * exact, r
        p, q, _, b, _ = _parts(zr, wr, full)
        m = [b * a + (1 - b) * c for a, c in zip(p, q, strict=True)]
        lqm = [mpmath.log(c / mm) for c, mm in zip(q, m, strict=True)]
        kl = mpmath.fsum(c * y - c + mm for c, y, mm in zip(q, lqm, m, strict=True))
        scale = _grad_scale({"y_true": z[r:r + 1], "y_pred": w[r:r + 1]}, full)[0]
        for j in range(z.shape[1]):
            g = factor * (1 - b) * q[j] * (lqm[j] - kl)
            big = abs(g) if scale[j] is None else scale[j]
            assert abs(mpmath.mpf(float(raw_g[r, j])) - g) <= 8 * 2.0**-53 * big, (r, j)
    _distill_d_matches_generic(monkeypatch, losskit.GeneralizedJSD, opts, z, w, rng, factor)


@pytest.mark.parametrize("beta", [1.0])
def test_float64_generalized_jsd_runs_the_generic_kernel_in_row_chunks(monkeypatch, beta):
    """generalized_jsd at beta = 1 on float64: the generic kernel in row chunks (the NumPy path's
    numbers exactly, hard rows included), and float64 torch tensors take it too (PyTorch otherwise
    runs the generic kernel on whole tensors)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(23)
    z, w = _distill_rows64(rng, n=300, k=120)  # 36000 elements: more than one chunk
    loss = losskit.GeneralizedJSD(beta=beta, temperature=0.7)
    per = losskit.GeneralizedJSD(beta=beta, temperature=0.7, reduction="none")
    weight = rng.random(len(z))
    weight[9] = 0.0
    for fn in (lambda: per.value_and_gradient(z, w),
               lambda: loss.value_and_gradient(z, w, sample_weight=weight)):
        fast, slow = fn(), _generic(monkeypatch, fn)
        for a, b in zip(fast, slow, strict=True):
            np.testing.assert_array_equal(a, b)
    wt = torch.tensor(w[7:], requires_grad=True)
    value = loss(torch.tensor(z[7:]), wt)
    value.backward()
    ref = loss.value_and_gradient(z[7:], w[7:])
    assert float(value) == pytest.approx(float(ref[0]), rel=1e-15)
    np.testing.assert_allclose(wt.grad.numpy(), ref[1], rtol=1e-15, atol=1e-300)


def test_float32_exp_of_positive_arguments_within_its_bound():
    """kexp_diff_f32(x, 0) for x in [0, 100] (the float32 Poisson NLL value path's e^x, log_input):
    the argument reduction is the same as below 0 (k = rint(x log2 e) <= 145), so the relative error
    stays below 2^-23.4, checked against mpmath, with multiples of ln2/2 and the ends."""
    mpmath.mp.prec = 100
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(0, 100, 1500), rng.uniform(0, 1, 300),
                        np.float32(np.log(2) / 2) * np.arange(280, dtype=np.float32), [0.0, 100.0]])
    x = x.astype(np.float32)
    pairs = np.zeros(2 * x.size)
    pairs[0::2] = x
    got = _map(6, pairs)[: x.size]
    exact = [mpmath.exp(mpmath.mpf(float(xi))) for xi in x]
    worst = max(float(abs(mpmath.mpf(float(g)) - e) / e) for g, e in zip(got, exact, strict=True))
    assert worst <= 2.0**-23.4


def test_poisson_nll_value_path_rows_that_cancel():
    """Poisson NLL (log_input, float32) without the gradient: the value-only kernel's tiers. Rows whose
    terms e^x - t x cancel by a factor ~10 (the float32 e^x's bound fails, the double one holds), by
    ~1e-9 of their size (both fail: the generic kernel), an |x| over 100 (twice), a plain row; every value
    within 8 float32 ulps of mpmath's mean, and equal to value_and_gradient's value to an ulp."""
    mpmath.mp.prec = 120
    rng = np.random.default_rng(5)
    k = 40
    x = rng.standard_normal((5, k)).astype(np.float32)
    t = rng.poisson(np.exp(x.astype(np.float64))).astype(np.float32)
    for r, target in ((0, 0.1), (1, 0.0)):  # t = 0 terms e^x set the row sum to about target E
        t[r, 1:] = 5.0
        x[r, 1:] = rng.uniform(0.5, 1.5, k - 1).astype(np.float32)  # e^x - 5x < 0 there
        x64 = x[r, 3:].astype(np.float64)
        rest = float(np.sum(np.exp(x64) - 5.0 * x64)) - target * float(np.sum(np.exp(x64)))
        for j in range(3):  # three terms e^x_j, each x_j rounded down, carry -rest to ~2^-60 of it
            t[r, j] = 0.0
            xj = np.float32(np.log(-rest))
            xj = np.nextafter(xj, np.float32(-np.inf)) if np.exp(np.float64(xj)) > -rest else xj
            x[r, j] = xj
            rest += float(np.exp(np.float64(xj)))
    x[2, 3] = -101.0
    x[3, 4] = -105.0
    per = losskit.PoissonNLL(reduction="none")
    value = per(t, x)
    both = per.value_and_gradient(t, x)[0]
    assert value.dtype == np.float32
    for r in range(5):
        exact = mpmath.fsum(mpmath.exp(mpmath.mpf(float(a))) - mpmath.mpf(float(b)) * mpmath.mpf(float(a))
                            for a, b in zip(x[r], t[r], strict=True)) / k
        ulp = np.spacing(np.float32(abs(float(exact))))
        assert abs(float(value[r]) - float(exact)) <= 8 * float(ulp), r
        assert abs(float(value[r]) - float(both[r])) <= float(ulp), r
