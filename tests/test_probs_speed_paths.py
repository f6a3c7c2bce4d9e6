"""The fast paths of sparse cross-entropy from probabilities and NLL (issue 8):

- ``scce_probs_checked`` (``_cpu.c`` KERNELS id 39) checks y_pred's domain in its own pass: the same
  values and gradients as ``scce_probs`` bit for bit on valid input, the core's message for an element
  outside [0, 1] (also from a row chunk on a pool thread), NaN and -0.0 let through as before;
- ``_cpu.nll`` checks the labels for the quick path: the same messages as the general path;
- ``_core._quick_torch``: CPU torch tensors through a Loss object take the NumPy quick path on views,
  with the general path's values, gradients (also ``create_graph=True``) and messages; calls the
  path must not take (``torch.func`` transforms, a non-CPU-viewable tensor) still work.

The reference is always the general path (``_core._plan`` patched to None: ``prepare``'s checks and
the runner) or the generic array-API kernel (fast kernels off), never the code under test alone."""

from __future__ import annotations

import numpy as np
import pytest

import losskit
from losskit._backends import numpy as numpy_backend
from losskit.losses import _core

pytestmark = pytest.mark.skipif(not numpy_backend.available(), reason="no compiled kernels")
torch = pytest.importorskip("torch")

RNG = np.random.default_rng(20261207)


def _probs(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    p = RNG.uniform(0.01, 1.0, (n, k))
    return RNG.integers(0, k, n), (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


def _outcome(call: object) -> object:
    try:
        out = call()  # type: ignore[operator]
    except ValueError as error:
        return ("raises", str(error))
    if isinstance(out, tuple):
        return tuple(_as_numpy(o) for o in out)
    return _as_numpy(out)


def _as_numpy(a: object) -> np.ndarray:
    return np.asarray(a.detach().numpy() if hasattr(a, "detach") else a)  # type: ignore[attr-defined]


def _same(a: object, b: object) -> None:
    if isinstance(a, tuple) and a and isinstance(a[0], str):
        assert a == b
        return
    assert not (isinstance(b, tuple) and b and isinstance(b[0], str)), b
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,),
                    strict=True):
        assert isinstance(y, np.ndarray)
        assert x.dtype == y.dtype
        assert x.shape == y.shape
        if x.ndim == 0 and np.isfinite(y):  # a reduced value: NumPy's and torch's sums add in
            np.testing.assert_array_max_ulp(x, y, maxulp=2)  # different orders
        else:
            np.testing.assert_array_equal(x, y)


def _general(monkeypatch: pytest.MonkeyPatch, call: object) -> object:
    with monkeypatch.context() as m:
        m.setattr(_core, "_plan", lambda defn, options: None)
        return _outcome(call)


@pytest.mark.parametrize("shape", [(300, 7), (7000, 10), (40, 2500)])  # short rows, threaded, long rows
def test_checked_kernel_equals_scce_probs(shape: tuple[int, int]) -> None:
    n, k = shape
    t, p = _probs(n, k)
    t[::17] = -1  # ignored labels: the row kernel's special values
    scale = RNG.uniform(0.0, 2.0, n)
    scale[::5] = 0.0
    out = {}
    for kid in (numpy_backend.SCCE_PROBS, numpy_backend.SCCE_PROBS_CHECKED):
        value, g = np.empty(n), np.empty_like(p)
        numpy_backend._cpu.run(kid, 0, t, p, n, k, value, g, scale, numpy_backend._NO_PARAMS, None)
        out[kid] = value, g
    np.testing.assert_array_equal(out[numpy_backend.SCCE_PROBS][0], out[numpy_backend.SCCE_PROBS_CHECKED][0])
    np.testing.assert_array_equal(out[numpy_backend.SCCE_PROBS][1], out[numpy_backend.SCCE_PROBS_CHECKED][1])


@pytest.mark.parametrize("bad", [-0.25, 1.5, np.inf, -np.inf, np.nan, -0.0])
@pytest.mark.parametrize("shape", [(6, 3), (9000, 10), (30, 3000)])
def test_scce_probs_domain_in_the_kernel(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int],
                                         bad: float) -> None:
    """Outside [0, 1]: the general path's message (prepare's check); NaN and -0.0: the general
    path's values and gradients (NaN propagates, -0.0 is in the domain)."""
    n, k = shape
    t, p = _probs(n, k)
    p[n - 2, 1] = bad  # in the last row chunk of a threaded call
    for reduction in ("sum_over_batch_size", "none"):
        loss = losskit.SparseCategoricalCrossentropy(reduction=reduction)
        for call in (lambda f=loss: f(t, p), lambda f=loss: f.value_and_gradient(t, p)):
            _same(_outcome(call), _general(monkeypatch, call))
    if np.isnan(bad) or bad == 0.0:
        loss = losskit.SparseCategoricalCrossentropy(reduction="none")
        with monkeypatch.context() as m:  # the generic kernel on float64 rows: the reference values
            m.setattr(numpy_backend, "fast_kernel", lambda *a, **kw: None)
            m.setattr(_core, "_plan", lambda defn, options: None)
            reference = np.asarray(loss(t, p))
        np.testing.assert_allclose(np.asarray(loss(t, p)), reference, rtol=2e-6)


@pytest.mark.parametrize("case", [
    ({}, np.array([0, 1, 3, 2])), ({}, np.array([0, 1, -1, 2])), ({"axis": 1}, np.array([0, 5, 1, 2])),
    ({"weight": (1.0, 2.0)}, np.array([0, 1, 2, 2])), ({}, "positive"), ({}, "nan")])
def test_nll_quick_refuses_as_the_general_path(monkeypatch: pytest.MonkeyPatch, case: tuple) -> None:
    options, labels = case
    x = np.log(np.full((4, 3), 1 / 3, dtype=np.float32))
    if isinstance(labels, str):  # an entry the loss reads: above 0, or NaN (let through)
        x[2, 1] = 0.5 if labels == "positive" else np.nan
        labels = np.array([0, 1, 1, 2])
    loss = losskit.NLL(**options)
    for call in (lambda: loss(labels, x), lambda: loss.value_and_gradient(labels, x),
                 lambda: loss(torch.from_numpy(labels), torch.from_numpy(x))):
        _same(_outcome(call), _general(monkeypatch, call))


@pytest.mark.parametrize("name", ["sparse_categorical_crossentropy", "nll"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_torch_tensors_through_a_loss_object(monkeypatch: pytest.MonkeyPatch, name: str,
                                             dtype: torch.dtype, reduction: str) -> None:
    t, p = _probs(200, 6)
    x = torch.from_numpy(p if name != "nll" else np.log(p)).to(dtype)
    labels = torch.from_numpy(t)
    loss = losskit.get(name).__class__(reduction=reduction)

    def value_and_grad() -> tuple[object, ...]:
        leaf = x.clone().requires_grad_(True)
        value = loss(labels, leaf)
        (value.sum() if reduction == "none" else value).backward()
        return value.detach(), leaf.grad

    for call in (lambda: loss(labels, x), value_and_grad):
        quick = _outcome(call)
        _same(quick, _general(monkeypatch, call))
    assert isinstance(loss(labels, x), torch.Tensor)
    assert loss(labels, x).dtype == dtype
    # create_graph=True: the gradient is recomputed with autograd recording, as the general path does
    leaf = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(losskit.get(name)(labels, leaf), leaf, create_graph=True)
    with monkeypatch.context() as m:
        m.setattr(_core, "_plan", lambda defn, options: None)
        leaf2 = x.clone().requires_grad_(True)
        (g2,) = torch.autograd.grad(losskit.get(name)(labels, leaf2), leaf2, create_graph=True)
    assert g.requires_grad == g2.requires_grad
    np.testing.assert_allclose(g.detach().numpy(), g2.detach().numpy(), rtol=1e-6, atol=0)


def test_torch_quick_path_only_where_eager() -> None:
    """Inside ``generic_kernels()`` (and so under the transforms and tracing ``_eager_context``
    names) the quick path declines; a transposed (non-contiguous) y_pred agrees with the plain call."""
    from losskit._backends import torch as torch_backend

    t, p = _probs(64, 5)
    labels, x = torch.from_numpy(t), torch.from_numpy(p).double()
    loss = losskit.SparseCategoricalCrossentropy()
    plan = _core._plan(loss.definition, loss.options)
    assert _core._quick_torch(loss.definition, plan, loss.options, "sum", labels, x) is not None
    with torch_backend.generic_kernels():
        assert _core._quick_torch(loss.definition, plan, loss.options, "sum", labels, x) is None
        generic = float(loss(labels, x))
    assert generic == pytest.approx(float(loss(labels, x)), rel=1e-14)
    xt = x.t().contiguous().t()  # the same values, column-major
    assert not xt.is_contiguous()
    assert float(loss(labels, xt)) == float(loss(labels, x))


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum"])
@pytest.mark.parametrize("weight", [None, "per class"])
def test_nll_reduced_straight_from_the_gather(reduction: str, weight: str | None) -> None:
    """float32 value-only reduced NLL sums in the kernel (no array of values): the exact mean or
    sum of -w_y x_y (math.fsum of the exact double products) rounded once to float32, within 1 ulp
    (the kernel's double sum is within n 2^-53 relative)."""
    import math

    n, k = 5000, 40
    t, p = _probs(n, k)
    x = np.log(p)
    w = tuple(RNG.uniform(0.5, 2.0, k).tolist()) if weight else None
    loss = losskit.NLL(reduction=reduction, weight=w)
    wy = np.ones(n) if w is None else np.asarray(w)[t]
    terms = -x[np.arange(n), t].astype(np.float64) * wy  # w_y x_y: one rounding of a 24 x 53-bit product
    exact = math.fsum(terms.tolist()) / (n if reduction == "sum_over_batch_size" else 1)
    got = loss(t, x)
    assert np.asarray(got).dtype == np.float32
    np.testing.assert_array_max_ulp(np.float32(got), np.float32(exact), maxulp=1)
