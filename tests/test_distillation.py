"""Distillation losses beyond the oracle suite: ``ignore_index`` with per-sample labels, equal
distributions, the ends of ``beta``, Keras's ``LogitsDistillation`` and the textbook formula's loss
of digits, bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import losskit
from tests.oracle.families.distillation import _distill_terms


def _logits(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 2.0) -> np.ndarray:
    return rng.normal(0, scale, size=shape)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ------------------------------------------------------------------------------------- ignore_index


@pytest.mark.parametrize("loss", ["logits_distillation", "generalized_jsd"])
def test_ignore_index_drops_samples_from_value_gradient_and_count(loss: str,
                                                                  rng: np.random.Generator) -> None:
    z, w = _logits(rng, (6, 5)), _logits(rng, (6, 5))
    labels = np.array([3, -100, 0, -100, 4, 1])
    kept = labels != -100
    cls = losskit.get(loss).__class__
    per_sample = cls(reduction="none")(z, w)
    masked = cls(reduction="none")(z, w, labels=labels)
    # (to an ulp: with labels the generic kernel runs, without them the C kernel; both within the
    # contract; the ignored samples exactly 0)
    np.testing.assert_allclose(masked, np.where(kept, per_sample, 0.0), rtol=1e-15, atol=0)
    assert np.all(masked[~kept] == 0.0)
    value, grad = cls().value_and_gradient(z, w, labels=labels)
    # the mean over the kept samples (Liger's n_non_ignore), and their gradient only
    np.testing.assert_allclose(value, per_sample[kept].mean(), rtol=1e-15)
    full = cls(reduction="sum").gradient(z, w)
    np.testing.assert_allclose(grad, np.where(kept[:, None], full / kept.sum(), 0.0), rtol=1e-15,
                               atol=16 * 2.0**-53 * float(np.abs(full).max()) / kept.sum())
    # every sample ignored: 0, not NaN; ignore_index=None ignores nothing
    assert float(cls()(z, w, labels=np.full(6, -100))) == 0.0
    np.testing.assert_allclose(cls(ignore_index=None)(z, w, labels=labels), per_sample.mean(),
                               rtol=1e-15)
    # another ignore_index, and labels of a (B, L) batch of (B, L, V) logits
    z3, w3 = z.reshape(2, 3, 5), w.reshape(2, 3, 5)
    lab3 = np.where(kept, 7, 5).reshape(2, 3)
    np.testing.assert_allclose(cls(ignore_index=5)(z3, w3, labels=lab3), value, rtol=1e-15)


def test_ignore_index_matches_trl_formula_on_torch(rng: np.random.Generator) -> None:
    """TRL's generalized_jsd_loss with labels: the JSD of the kept tokens summed, divided by their
    number (its 'batchmean' with labels), here the default reduction; autograd through losskit."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z, w = _logits(rng, (8, 7)), _logits(rng, (8, 7))
    labels = np.array([1, -100, 2, 3, -100, -100, 0, 6])
    beta, temperature = 0.3, 2.0
    wt = torch.tensor(w, requires_grad=True)
    lq, lp = F.log_softmax(wt / temperature, -1), F.log_softmax(torch.tensor(z) / temperature, -1)
    lm = torch.logsumexp(torch.stack([lp + math.log(beta), lq + math.log(1 - beta)]), dim=0)
    jsd = (beta * F.kl_div(lm, lp, reduction="none", log_target=True)
           + (1 - beta) * F.kl_div(lm, lq, reduction="none", log_target=True)).sum(-1)
    mask = torch.tensor(labels) != -100
    expected = jsd[mask].sum() / mask.sum()
    expected.backward()
    w2 = torch.tensor(w, requires_grad=True)
    out = losskit.GeneralizedJSD(beta=beta, temperature=temperature)(torch.tensor(z), w2,
                                                                       labels=torch.tensor(labels))
    out.backward()
    np.testing.assert_allclose(out.item(), expected.item(), rtol=1e-12)
    np.testing.assert_allclose(w2.grad.numpy(), wt.grad.numpy(), rtol=1e-10, atol=1e-16)


def test_labels_must_fit_the_samples(rng: np.random.Generator) -> None:
    z, w = _logits(rng, (4, 3)), _logits(rng, (4, 3))
    with pytest.raises(ValueError, match=r"labels has shape \(3,\).*per-sample shape \(4,\)"):
        losskit.logits_distillation(z, w, labels=np.zeros(3))


# ---------------------------------------------------------------------------------- the definitions


def test_equal_distributions_give_exactly_zero(rng: np.random.Generator) -> None:
    z = np.round(_logits(rng, (5, 6)) * 2**20) / 2**20  # + 4 is exact: the same softmax
    for loss in (losskit.LogitsDistillation(temperature=0.01), losskit.GeneralizedJSD(beta=0.1)):
        for w in (z, z + 4.0):
            value, grad = loss.value_and_gradient(z, w)
            assert float(value) == 0.0
            assert not np.any(grad)


def test_beta_ends_and_middle(rng: np.random.Generator) -> None:
    z, w = _logits(rng, (5, 6)), _logits(rng, (5, 6))
    forward = losskit.logits_distillation(z, w, temperature=2.0, temperature_squared=False)
    np.testing.assert_allclose(losskit.generalized_jsd(z, w, beta=0.0, temperature=2.0), forward,
                               rtol=1e-14)
    reverse = losskit.logits_distillation(w, z, temperature=2.0, temperature_squared=False)
    np.testing.assert_allclose(losskit.generalized_jsd(z, w, beta=1.0, temperature=2.0), reverse,
                               rtol=1e-14)
    np.testing.assert_allclose(losskit.generalized_jsd(z, w),
                               losskit.jensen_shannon_divergence(_softmax(z), _softmax(w)), rtol=1e-13)
    # T^2 scaling: value times T^2, gradient times T^2 (the JSD) as for the KL
    scaled = losskit.GeneralizedJSD(temperature=3.0, temperature_squared=True, reduction="sum")
    plain = losskit.GeneralizedJSD(temperature=3.0, reduction="sum")
    v1, g1 = scaled.value_and_gradient(z, w)
    v0, g0 = plain.value_and_gradient(z, w)
    np.testing.assert_allclose(v1, 9.0 * v0, rtol=1e-14)
    np.testing.assert_allclose(g1, 9.0 * g0, rtol=1e-13)


def test_teacher_probabilities_as_log_probabilities(rng: np.random.Generator) -> None:
    """softmax(log(p) / T) is the softened teacher p^(1/T) / sum p^(1/T)."""
    p = _softmax(_logits(rng, (4, 5)))
    w = _logits(rng, (4, 5))
    t = 2.0
    soft = p ** (1 / t) / (p ** (1 / t)).sum(-1, keepdims=True)
    q = _softmax(w / t)
    expected = t * t * (soft * np.log(soft / q)).sum(-1)
    np.testing.assert_allclose(losskit.logits_distillation(np.log(p), w, temperature=t), expected,
                               rtol=1e-12)


# --------------------------------------------------------------------------------------- the peers


def test_keras_logits_distillation(rng: np.random.Generator) -> None:
    """Keras 3's LogitsDistillation(loss=KLDivergence()) is this loss's default mean. With its default
    loss="kl_divergence" (a string) Keras resolves the function keras.losses.kl_divergence, which is
    not a KLDivergence instance: the softmax and the T^2 are skipped and the KL divergence is taken of
    the clipped scaled logits, another number."""
    keras = pytest.importorskip("keras")
    from keras.distillation import LogitsDistillation

    z = _logits(rng, (6, 5)).astype(np.float32)
    w = _logits(rng, (6, 5)).astype(np.float32)
    ours = float(losskit.LogitsDistillation(temperature=4.0)(z, w))
    with_instance = LogitsDistillation(temperature=4.0, loss=keras.losses.KLDivergence())
    np.testing.assert_allclose(float(with_instance.compute_loss(z, w)), ours, rtol=2e-5)
    default = float(LogitsDistillation(temperature=4.0).compute_loss(z, w))
    assert abs(default - ours) > 1e-3 * ours


def test_textbook_formula_loses_nearly_equal_distributions() -> None:
    """PyTorch's recipe in float32 on student logits an ulp or so from the teacher's: no correct
    digit; losskit within 8 ulp of mpmath."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z = np.array([[2.0, 0.5, -1.0, 0.25]], np.float32)
    w = np.nextafter(z, np.float32(10)).astype(np.float32)
    w[0, 1] = z[0, 1]
    exact = float(_distill_terms([float(v) for v in z[0]], [float(v) for v in w[0]],
                                 {"temperature": 1.0, "temperature_squared": True})[0])
    ours = float(losskit.logits_distillation(z, w, temperature=1.0)[0])
    assert abs(ours - exact) <= 8 * np.spacing(np.float32(exact))
    zt, wt = torch.tensor(z), torch.tensor(w)
    recipe = F.kl_div(F.log_softmax(wt, -1), F.log_softmax(zt, -1), reduction="sum",
                      log_target=True).item()
    assert abs(recipe - exact) > 0.5 * exact


def test_jax_arrays_and_grad(rng: np.random.Generator) -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    z, w = _logits(rng, (4, 6)).astype(np.float32), _logits(rng, (4, 6)).astype(np.float32)
    loss = losskit.GeneralizedJSD(beta=0.2, temperature=2.0)
    g = jax.grad(lambda x: loss(jnp.asarray(z), x))(jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(g), loss.gradient(z, w), rtol=2e-6, atol=1e-9)


# ------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs() -> None:
    z, w = np.zeros((2, 3)), np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"generalized_jsd: y_pred must lie in \[-inf, inf\)"):
        losskit.generalized_jsd(z, np.array([[0.0, np.inf, 1.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        losskit.LogitsDistillation(temperature=0.0)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\]"):
        losskit.GeneralizedJSD(beta=1.5)
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        losskit.logits_distillation(z, w, ignore_index=0.5)
