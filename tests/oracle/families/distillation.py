"""Oracle entries for the distillation losses (issue 12): ``logits_distillation`` (KL between the
temperature-softened teacher and student, times T^2) and ``generalized_jsd`` (beta).

Terms are written from the definitions in mpmath (80 digits): ``p = softmax(z / T)`` and
``q = softmax(w / T)`` from the exact logits (the log-sum-exp with ``log1p``), then each KL
divergence between two distributions as ``sum_j p_j log(p_j/q_j) - p_j + q_j`` (the added terms sum
to 0), whose terms are non-negative, so that a divergence of 1e-600 needs no thousand digits.
Regimes where the textbook ``kl_div(log_softmax(w / T), log_softmax(z / T))`` fails: temperature
0.01 (exponents of -1e3), teachers sure to 1 - 1e-300, student logits within ulps of the teacher's
(a divergence of 1e-30), beta within 1e-9 of 0 and 1.

Documented exception (``grad_scale``): a gradient element is a difference of two terms that vanishes
where student and teacher agree (``T (q_j - p_j)`` for the KL); it is held to 8 ulp of the larger
term.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from .. import reference as R
from ..catalog import Entry
from ..peers import keras_peer, torch_peer

ROWS = 8
NOTE = ("a gradient element is a difference that vanishes where student and teacher agree "
        "(T (q_j - p_j) for the KL); it is held to 8 ulp of the larger of the two terms")


# ------------------------------------------------------------------------------------------- terms


def _log_softmax(x: list[mpf], temperature: mpf) -> list[mpf]:
    """``x/T - logsumexp(x/T)`` with the log-sum-exp as ``max + log1p(sum of the others)``, so that
    a probability within 1e-300 of 1 keeps a log-probability of -1e-300 (not 0)."""
    a = [xi / temperature for xi in x]
    top = max(range(len(a)), key=lambda i: a[i])
    rest = mpmath.fsum(mpmath.exp(ai - a[top]) for i, ai in enumerate(a) if i != top)
    tail = mpmath.log1p(rest)
    return [(ai - a[top]) - tail for ai in a]


def _phi(y: mpf) -> mpf:
    """``e^{-y} - 1 + y``, by its Taylor series where it would cancel."""
    if abs(y) < mpf("1e-6"):
        return mpmath.fsum((-y) ** k / mpmath.factorial(k) for k in range(2, 40))
    return mpmath.expm1(-y) + y


def _excess(t: mpf, u: mpf, y: mpf) -> mpf:
    """``t log(t/u) - t + u = t phi(y)`` with ``y = log(t/u)`` (``u`` where ``t = 0``)."""
    return u if t == 0 else t * _phi(y)


def _parts(t: Any, w: list[mpf], opts: Mapping[str, Any]
           ) -> tuple[list[mpf], list[mpf], list[mpf], mpf, mpf]:
    """``(p, q, log(p/q), beta, c)`` of one row: the softened teacher and student and the factor."""
    temperature = mpf(opts["temperature"])
    c = temperature**2 if opts["temperature_squared"] else mpf(1)
    lp, lq = _log_softmax(t, temperature), _log_softmax(w, temperature)
    d = [a - b if (a, b) != (mpf("-inf"),) * 2 else mpf(0) for a, b in zip(lp, lq, strict=True)]
    return ([mpmath.exp(a) for a in lp], [mpmath.exp(b) for b in lq], d, mpf(opts.get("beta", 0.0)),
            c)


def _kl(p: list[mpf], q: list[mpf], d: list[mpf]) -> mpf:
    """``KL(p||q) = sum_j p_j log(p_j/q_j)``, written as ``sum_j p_j log(p_j/q_j) - p_j + q_j``
    (both sum to 1), whose terms are non-negative (``d = log(p/q)``)."""
    return mpmath.fsum(_excess(a, b, y) for a, b, y in zip(p, q, d, strict=True))


def _mixture_logs(d: list[mpf], beta: mpf) -> tuple[list[mpf], list[mpf]]:
    """``log(p/m)`` and ``log(q/m)``, ``m = beta p + (1 - beta) q``, from ``d = log(p/q)``."""
    lpm = [-mpmath.log1p((1 - beta) * mpmath.expm1(-y)) for y in d]
    lqm = [-mpmath.log1p(beta * mpmath.expm1(y)) for y in d]
    return lpm, lqm


def _distill_terms(t: Any, w: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``c KL(p||q)`` (beta = 0), ``c KL(q||p)`` (beta = 1), else ``c (beta KL(p||m) + (1 - beta)
    KL(q||m))``; the KL divergences in their non-negative form (see :func:`_kl`)."""
    with mpmath.mp.workdps(mpmath.mp.dps + 20):
        p, q, d, beta, c = _parts(t, w, opts)
        if beta == 0:
            return [c * _kl(p, q, d)]
        if beta == 1:
            return [c * _kl(q, p, [-y for y in d])]
        m = [beta * a + (1 - beta) * b for a, b in zip(p, q, strict=True)]
        lpm, lqm = _mixture_logs(d, beta)
        return [c * (beta * _kl(p, m, lpm) + (1 - beta) * _kl(q, m, lqm))]


def _grad_scale(arrays: dict, options: Mapping[str, Any]) -> np.ndarray:
    """Where a gradient element is a difference of two terms that cancel (the difference at most
    half the larger), the larger term; else None (the strict bound). The terms, from the derivative
    of the definitions: ``(c/T) q_j`` and ``(c/T) p_j`` (beta = 0); ``(c/T) q_j log(q_j/p_j)`` and
    ``(c/T) q_j KL(q||p)`` (beta = 1); ``(c/T)(1 - beta) q_j log(q_j/m_j)`` and ``(c/T)(1 - beta)
    q_j KL(q||m)`` otherwise. The log-ratio is itself a difference, ``log(q_j/p_j) ~ (q_j - p_j)/q_j``
    (``log(q_j/m_j) ~ beta (q_j - p_j)/q_j``), so ``(c/T) max(p_j, q_j)`` (times ``(1 - beta) beta``)
    joins the terms, and at the teacher's top class ``r``, where ``p_r - q_r = (1 - q_r) - (1 - p_r)``,
    the larger of the two remaining masses. Elements below the dtype's normal range keep a scale only where
    8 ulp of it exceed that range (else the subnormal rule applies: a backend may flush them to 0)."""
    t_all, w_all = arrays["y_true"], arrays["y_pred"]
    out = np.full(w_all.shape, None, dtype=object)
    tiny = mpf(float(np.finfo(w_all.dtype).tiny))
    eps = mpf(float(np.finfo(w_all.dtype).eps))
    opts = {"beta": 0.0, **options}
    with mpmath.mp.workdps(60):
        for r in range(w_all.shape[0]):
            t = [mpf(float(v)) for v in t_all[r]]
            w = [mpf(float(v)) for v in w_all[r]]
            p, q, d, beta, c = _parts(t, w, opts)
            f = c / mpf(opts["temperature"])
            top = max(range(len(t)), key=lambda i: t[i])
            rest = max(mpmath.fsum(x for i, x in enumerate(p) if i != top),
                       mpmath.fsum(x for i, x in enumerate(q) if i != top))
            if beta == 0:
                pairs = [(f * b, f * a) for a, b in zip(p, q, strict=True)]
            elif beta == 1:
                kl = _kl(q, p, [-y for y in d])
                pairs = [(f * b * -y, f * b * kl) for y, b in zip(d, q, strict=True)]
            else:
                m = [beta * a + (1 - beta) * b for a, b in zip(p, q, strict=True)]
                _, lqm = _mixture_logs(d, beta)
                kl = _kl(q, m, lqm)
                pairs = [(f * (1 - beta) * b * y, f * (1 - beta) * b * kl)
                         for y, b in zip(lqm, q, strict=True)]
                f = f * (1 - beta) * beta
            for j, (a, b) in enumerate(pairs):
                # log(m_j/q_j) ~ beta (p_j - q_j)/q_j: p_j and q_j themselves cancel there
                extra = f * (rest if j == top else max(p[j], q[j]))
                big = max(abs(a), abs(b), extra)
                # a difference below the normal range keeps the scale only where 8 ulp of it
                # exceed that range (else the subnormal rule: 0, as a flushing backend gives)
                if abs(a - b) <= big / 2 and (abs(a - b) >= tiny or 8 * eps * big >= tiny):
                    out[r, j] = big
    return out


# ----------------------------------------------------------------------------------------- regimes


def _cast(dtype: Any, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v).astype(dtype) for k, v in arrays.items()}


def _generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    return _cast(dtype, y_true=rng.normal(0, 2, (ROWS, 5)), y_pred=rng.normal(0, 2, (ROWS, 5)))


def _near_equal(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Student logits a few ulps from the teacher's (rows 0-3 and 7), relatively 1e-12 .. 1e-3 away
    (rows 4-6). (Equal distributions, where the divergence and its gradient are exactly 0, are in
    ``tests/test_distillation.py``: a numerical derivative at the minimum is not exactly 0.)"""
    z = rng.normal(0, 2, (ROWS, 5)).astype(dtype)
    near = [0, 1, 2, 3, 7]
    k = rng.integers(-4, 5, size=(5, 5))
    k[:, 0] = rng.choice([-1, 1], size=5)  # never all equal
    w = np.empty_like(z)
    w[near] = z[near] + (k * np.spacing(np.abs(z[near]))).astype(dtype)
    rel = rng.choice([-1.0, 1.0], size=(3, 5)) * 10.0 ** rng.uniform(-12, -3, size=(3, 5))
    w[4:7] = (z[4:7] * (1 + rel)).astype(dtype)
    return {"y_true": z, "y_pred": w}


def _confident(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """A teacher sure of one class to 1 - 1e-300 (float32: 1 - 1e-40), students sure or not."""
    gap = 690.0 if np.dtype(dtype) == np.float64 else 92.0
    z = rng.normal(0, 1, (ROWS, 5))
    top = rng.integers(0, 5, ROWS)
    z[np.arange(ROWS), top] += gap * rng.uniform(0.3, 1.0, ROWS)
    w = z + rng.normal(0, 1, (ROWS, 5)) * np.array([1e-6, 1e-3, 1, 5, 1e-6, 1e-3, 1, 5])[:, None]
    return _cast(dtype, y_true=z, y_pred=w)


def _wide(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Logits spread over +-700 (float64; +-80 in float32), and a zero-probability teacher class."""
    top = 700.0 if np.dtype(dtype) == np.float64 else 80.0
    z = rng.uniform(-top, top, (ROWS, 4))
    w = rng.uniform(-top, top, (ROWS, 4))
    w[::2] = z[::2] + rng.normal(0, 3, (ROWS // 2, 4))
    z[:2, 1] = -np.inf
    return _cast(dtype, y_true=z, y_pred=w)


def _cold(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Logits of order 1 at T = 0.01: exponents of order -100 (the softmax of z / T), near and far."""
    z = rng.normal(0, 1, (ROWS, 5))
    w = z + rng.normal(0, 1, (ROWS, 5)) * np.array([1e-9, 1e-5, 1e-3, 1e-2, 0.1, 1, 1e-6, 3])[:, None]
    return _cast(dtype, y_true=z, y_pred=w)


REGIMES = {"generic": _generic, "near_equal": _near_equal, "confident": _confident, "wide": _wide}
COLD = {"generic": _generic, "near_equal": _near_equal, "cold": _cold}


# ------------------------------------------------------------------------------------------- peers


def _torch_kl(w: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    """The PyTorch recipe: ``kl_div(log_softmax(w/T), log_softmax(z/T), log_target=True) * T^2``."""
    import torch.nn.functional as F

    temperature = o["temperature"]
    c = temperature**2 if o["temperature_squared"] else 1.0
    lq = F.log_softmax(w / temperature, dim=-1)
    lp = F.log_softmax(a["y_true"] / temperature, dim=-1)
    return F.kl_div(lq, lp, reduction="none", log_target=True).sum(-1) * c


def _torch_jsd(w: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    """TRL's ``generalized_jsd_loss`` formula (the mixture by logsumexp of the log-probabilities)."""
    import math

    import torch
    import torch.nn.functional as F

    temperature, beta = o["temperature"], o["beta"]
    lq = F.log_softmax(w / temperature, dim=-1)
    lp = F.log_softmax(a["y_true"] / temperature, dim=-1)
    if beta == 0:
        out = F.kl_div(lq, lp, reduction="none", log_target=True)
    elif beta == 1:
        out = F.kl_div(lp, lq, reduction="none", log_target=True)
    else:
        lm = torch.logsumexp(torch.stack([lp + math.log(beta), lq + math.log(1 - beta)]), dim=0)
        out = (beta * F.kl_div(lm, lp, reduction="none", log_target=True)
               + (1 - beta) * F.kl_div(lm, lq, reduction="none", log_target=True))
    c = temperature**2 if o["temperature_squared"] else 1.0
    return out.sum(-1) * c


def _keras_logits_distillation(w: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    """Keras's ``LogitsDistillation(temperature, loss=KLDivergence()).compute_loss(teacher, student)``
    (a batch mean), row by row. With its default ``loss="kl_divergence"`` Keras 3.15 resolves the
    string to the function ``keras.losses.kl_divergence``, not a ``KLDivergence`` instance, so its
    softmax-and-T^2 branch is skipped and the KL divergence is taken of the clipped scaled logits
    (``tests/test_distillation.py`` shows it); the instance gives the documented loss."""
    import jax.numpy as jnp
    import keras
    from keras.distillation import LogitsDistillation

    loss = LogitsDistillation(temperature=o["temperature"], loss=keras.losses.KLDivergence())
    z = a["y_true"]
    return jnp.stack([loss.compute_loss(z[i:i + 1], w[i:i + 1]) for i in range(z.shape[0])])


# ----------------------------------------------------------------------------------------- entries


def _peer_regimes(temperature: float) -> tuple[str, ...]:
    """At T = 0.01 the peers' float64 formulas lose the relative accuracy of the tiny elements
    (probabilities of e^-500): no parity claim there (the accuracy table shows their errors)."""
    return ("generic",) if temperature >= 0.5 else ()


def _kl_entry(temperature: float, squared: bool, regimes: Mapping[str, Any], keras: bool = False
              ) -> Entry:
    peers = {"torch": torch_peer(_torch_kl)}
    names = {"torch": "F.kl_div(log_softmax(w/T), log_softmax(z/T)) * T^2 (formula)"}
    if keras:
        peers["keras"] = keras_peer(_keras_logits_distillation)
        names["keras"] = "keras.distillation.LogitsDistillation(loss=KLDivergence())"
    return Entry("logits_distillation", R.Spec(_distill_terms, mean=False, separable=False),
                 regimes=regimes, options={"temperature": temperature, "temperature_squared": squared},
                 peers=peers, peer_names=names, peer_rtol=1e-5, grad_scale=_grad_scale, note=NOTE,
                 peer_regimes=_peer_regimes(temperature),
                 backend_regimes=("generic", "near_equal"))


def _jsd_entry(beta: float, temperature: float, regimes: Mapping[str, Any]) -> Entry:
    return Entry("generalized_jsd", R.Spec(_distill_terms, mean=False, separable=False),
                 regimes=regimes,
                 options={"beta": beta, "temperature": temperature, "temperature_squared": False},
                 peers={"torch": torch_peer(_torch_jsd)},
                 peer_names={"torch": "TRL's generalized_jsd_loss (formula)"},
                 peer_rtol=1e-5, grad_scale=_grad_scale, note=NOTE,
                 peer_regimes=_peer_regimes(temperature), backend_regimes=("generic", "near_equal"))


# (beta = 0 runs the code of logits_distillation with temperature_squared=False, the second entry;
# tests/test_distillation.py checks that the two agree)
ENTRIES = [
    _kl_entry(3.0, True, REGIMES, keras=True),
    _kl_entry(1.0, False, REGIMES),
    _kl_entry(0.01, True, COLD),
    _kl_entry(0.5, True, REGIMES),  # 1/T = 2: the power-of-two scale (distillation._Scale.pow2)
    _jsd_entry(0.5, 1.0, REGIMES),
    _jsd_entry(0.1, 0.01, COLD),
    _jsd_entry(1e-9, 1.0, {"generic": _generic, "near_equal": _near_equal, "confident": _confident}),
    _jsd_entry(1 - 1e-9, 2.0, {"generic": _generic, "near_equal": _near_equal, "wide": _wide}),
    _jsd_entry(1.0, 1.0, {"generic": _generic, "near_equal": _near_equal, "confident": _confident}),
]
