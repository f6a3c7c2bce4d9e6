"""Categorical cross-entropy from float32 probabilities with dense targets (issue 8):
``cce_probs_checked`` (``_cpu.c`` KERNELS id 40) evaluates the loss with float32-mantissa logs and the
row sums in one pass, and checks the domain [0, 1] of y_true and y_pred in that pass.

- on valid rows, values within 1 float32 ulp of mpmath's ``-sum t_j log(p_j / P)``, also in the
  regimes the kernel's error argument treats apart (a top over half the row, tiny and subnormal
  probabilities, zeros), and gradients equal to ``cce_probs``'s up to the order of its row sums;
- outside [0, 1] (in either input): the general path's message; NaN and -0.0: the general path's
  values and gradients;
- CPU torch tensors through a Loss object: the general path's values and gradients.

The reference is mpmath, the general path (``_core._plan`` patched to None: ``prepare``'s checks and
the runner) or the generic array-API kernel (fast kernels off), never the code under test alone."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from test_probs_speed_paths import _general, _outcome, _same  # the sparse kernel's comparison

import losskit
from losskit._backends import numpy as numpy_backend
from losskit.losses import _core

pytestmark = pytest.mark.skipif(not numpy_backend.available(), reason="no compiled kernels")
torch = pytest.importorskip("torch")

RNG = np.random.default_rng(20261208)


def _run(kid: int, t: np.ndarray, p: np.ndarray, grad: bool, scale: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray | None]:
    n, k = p.shape
    value, g = np.empty(n), (np.empty_like(p) if grad else None)
    numpy_backend._cpu.run(kid, 0, t, p, n, k, value, g, scale, numpy_backend._NO_PARAMS, None)
    return value, g


def _soft(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    t = RNG.dirichlet(np.ones(k), n).astype(np.float32)
    t[RNG.random((n, k)) < 0.2] = 0.0
    p = RNG.dirichlet(np.full(k, 0.5), n).astype(np.float32)
    return t, p


def _hard_rows(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Valid float32 rows (every element in [0, 1]) of the regimes the kernel's error argument
    names: a top near 1 with tiny others (loss 1e-29-sized), a top just above and just below half
    of P, tiny, subnormal and zero probabilities, rows summing far below 1, a one-hot prediction."""
    p = RNG.random((12, k)).astype(np.float32) + np.float32(0.01)
    p /= p.max(axis=-1, keepdims=True) * np.float32(1.5)
    j = min(3, k - 1)
    p[1] = 1e-30
    p[1, j] = 1.0                                      # q_top = 1 - 1e-30 (k - 1)
    p[2] = 1e-3
    p[2, 0] = 1.0                                      # q_top > 1/2: the log1p form
    half = 1.0 / (k - 1)
    p[3] = np.float32(half * (1 - 2.0**-22))
    p[3, 1] = 1.0                                      # the top holds just over half of P...
    p[4] = np.float32(half * (1 + 2.0**-22))
    p[4, 1] = 1.0                                      # ... just under half
    p[5, ::2] = np.float32(1e-40)                      # subnormal probabilities
    p[6, 1] = 0.0                                      # a zero without target mass
    p[7] *= np.float32(1e-35)                          # a row summing to about 1e-35 (subnormals)
    p[8] = np.float32(2.0**-20) * np.arange(1, k + 1, dtype=np.float32) / np.float32(k)
    p[9, 2] = np.float32(1e-38)
    p[10, 0] = 0.0                                     # a zero with target mass: loss inf
    p[11] = 0.0
    p[11, 0] = 1.0                                     # one-hot prediction: loss 0 at the top
    t = RNG.random((12, k)).astype(np.float32)
    t[RNG.random((12, k)) < 0.3] = 0.0
    t[6, 1] = 0.0
    t[10, 0] = 0.5
    t[11] = 0.0
    t[11, 0] = 1.0
    t[1] = 0.0
    t[1, j] = 1.0
    t[2, 0] = 0.5
    assert ((p >= 0) & (p <= 1)).all()
    assert ((t >= 0) & (t <= 1)).all()
    return t, p


def _f32_ulps_off(got: float, exact: mpmath.mpf) -> float:
    if mpmath.isinf(exact):
        return 0.0 if got == float(exact) else np.inf
    spacing = float(np.spacing(np.float32(abs(float(exact))))) if exact != 0 else 2.0**-149
    return float(abs(mpmath.mpf(got) - exact) / spacing)


@pytest.mark.parametrize("k", [3, 10, 32, 33, 700])
def test_values_within_one_ulp_of_mpmath_on_hard_rows(k: int) -> None:
    mpmath.mp.prec = 120
    t, p = _hard_rows(k)
    for grad in (False, True):
        value, _ = _run(numpy_backend.CCE_PROBS_CHECKED, t, p, grad)
        for r in range(len(p)):
            pr = [mpmath.mpf(float(v)) for v in p[r]]
            big = mpmath.fsum(pr)
            exact = mpmath.fsum(-mpmath.mpf(float(tj)) * mpmath.log(pj / big) if pj else mpmath.inf
                                for tj, pj in zip(t[r], pr, strict=True) if tj != 0)
            assert _f32_ulps_off(float(np.float32(value[r])), exact) <= 1.0, (r, value[r], exact)


@pytest.mark.parametrize("shape", [(300, 7), (7000, 10), (40, 2500)])  # short rows, threaded, long rows
def test_gradient_as_cce_probs(shape: tuple[int, int]) -> None:
    """The gradient is cce_probs's expression from the same sums (short rows: summed in the same
    order, so equal; long rows: possibly another order, so within a float32 ulp); the values agree
    within both kernels' error bounds."""
    n, k = shape
    t, p = _soft(n, k)
    scale = RNG.uniform(0.0, 2.0, n)
    scale[::5] = 0.0
    v0, g0 = _run(numpy_backend.CCE_PROBS, t, p, True, scale)
    v1, g1 = _run(numpy_backend.CCE_PROBS_CHECKED, t, p, True, scale)
    v2, _ = _run(numpy_backend.CCE_PROBS_CHECKED, t, p, False)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_allclose(v1, v0, rtol=2.0**-23.5, atol=0)
    if k <= 32:
        np.testing.assert_array_equal(g1, g0)
    else:
        np.testing.assert_array_max_ulp(g1, g0, maxulp=1)


@pytest.mark.parametrize("where", ["y_pred", "y_true"])
@pytest.mark.parametrize("bad", [-0.25, 1.5, np.inf, np.nan, -0.0])
@pytest.mark.parametrize("shape", [(6, 3), (9000, 10), (30, 3000)])
def test_domain_in_the_kernel(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int], bad: float,
                              where: str) -> None:
    """Outside [0, 1]: the general path's message (prepare's check); NaN and -0.0: the general
    path's values and gradients (NaN propagates, -0.0 is in the domain; the generic kernel's value
    where t_j > 0 at p_j = -0.0 is NaN, the row kernels' inf, so NaN alone is compared with it)."""
    n, k = shape
    t, p = _soft(n, k)
    (p if where == "y_pred" else t)[n - 2, 1] = bad  # in the last row chunk of a threaded call
    for reduction in ("sum_over_batch_size", "none"):
        loss = losskit.CategoricalCrossentropy(reduction=reduction)
        for call in (lambda f=loss: f(t, p), lambda f=loss: f.value_and_gradient(t, p)):
            _same(_outcome(call), _general(monkeypatch, call))
    if np.isnan(bad):
        loss = losskit.CategoricalCrossentropy(reduction="none")
        with monkeypatch.context() as m:  # the generic kernel on float64 rows: the reference values
            m.setattr(numpy_backend, "fast_kernel", lambda *a, **kw: None)
            m.setattr(_core, "_plan", lambda defn, options: None)
            reference = np.asarray(loss(t, p))
        np.testing.assert_allclose(np.asarray(loss(t, p)), reference, rtol=2e-6)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_torch_tensors_through_a_loss_object(monkeypatch: pytest.MonkeyPatch, reduction: str) -> None:
    t, p = _soft(200, 6)
    x, target = torch.from_numpy(p), torch.from_numpy(t)
    loss = losskit.CategoricalCrossentropy(reduction=reduction)

    def value_and_grad() -> tuple[object, ...]:
        leaf = x.clone().requires_grad_(True)
        value = loss(target, leaf)
        (value.sum() if reduction == "none" else value).backward()
        return value.detach(), leaf.grad

    for call in (lambda: loss(target, x), value_and_grad):
        _same(_outcome(call), _general(monkeypatch, call))
    bad = x.clone()
    bad[3, 2] = 1.5
    _same(_outcome(lambda: loss(target, bad)), _general(monkeypatch, lambda: loss(target, bad)))
