"""Oracle entries for the sequence losses (issue 12): CTC.

The oracle is the forward algorithm written from the definition in mpmath (linear space: mpf has no
underflow), on the exact float inputs: the alignments of length T_n that collapse to the label
(Graves et al. 2006, eq. 5-8), each weighted by the product of its per-step probabilities
(softmax of the logits, or exp of the log-probabilities). ``tests/test_ctc.py`` checks it against a
brute-force sum over every alignment. Rows are ``(T, C)`` blocks, passed to the terms flat.
Impossible alignments (value +inf) are checked in ``tests/test_ctc.py``, not here (the oracle
cannot differentiate them).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from .. import reference as R
from ..catalog import Entry
from ..peers import jax_peer, torch_peer

C = 4  # classes in every regime (the terms function needs the block's width)


def ctc_forward(labels: list[int], q: list[list[Any]], blank: int) -> Any:
    """P(labels | q) by the forward recursion over the extended label, q[t][c] exact probabilities."""
    ext = [blank]
    for c in labels:
        ext += [c, blank]
    alpha = [mpf(0)] * len(ext)
    for t, qt in enumerate(q):
        new = []
        for s, c in enumerate(ext):
            if t == 0:
                total = mpf(1) if s <= 1 else mpf(0)
            else:
                total = alpha[s] + (alpha[s - 1] if s >= 1 else 0)
                if s >= 2 and c != blank and c != ext[s - 2]:
                    total += alpha[s - 2]
            new.append(total * qt[c])
        alpha = new
    if not q:
        return mpf(1) if not labels else mpf(0)
    return alpha[-1] + (alpha[-2] if len(ext) > 1 else 0)


def _ctc_terms(t: Any, p: list[mpf], opts: Mapping[str, Any], classes: int) -> list[mpf]:
    T = len(p) // classes
    rows = [p[i * classes:(i + 1) * classes] for i in range(T)]
    blank = opts.get("blank", 0)
    tl = int(opts["input_lengths"][0]) if "input_lengths" in opts else T
    labels = [int(v) for v in t]
    if "label_lengths" in opts:
        labels = labels[:int(opts["label_lengths"][0])]
    else:
        labels = labels[:labels.index(blank)] if blank in labels else labels
    if opts.get("from_logits", True):
        q = []
        for row in rows[:tl]:
            z = mpmath.fsum(mpmath.exp(v) for v in row)
            q.append([mpmath.exp(v) / z for v in row])
    else:
        q = [[mpmath.exp(v) for v in row] for row in rows[:tl]]
    prob = ctc_forward(labels, q, blank)
    if prob == 0:
        raise R.DomainError("impossible alignment")
    loss = -mpmath.log(prob)
    if opts.get("length_normalize", False):
        loss /= max(len(labels), 1)
    return [loss]


def _spec() -> R.Spec:
    return R.Spec(partial(_ctc_terms, classes=C), mean=False, separable=False)


# ----------------------------------------------------------------------------------------- regimes


def _labels(rng: np.random.Generator, n: int, s: int, t: int, full: bool, blank: int = 0
            ) -> tuple[np.ndarray, ...]:
    """Labels (classes other than the blank) padded with the blank, their lengths, and input lengths
    long enough (repeats need a blank between them)."""
    labels = np.array([c for c in range(C) if c != blank])[rng.integers(0, C - 1, size=(n, s))]
    ll = np.full(n, s) if full else rng.integers(0, s + 1, size=n)
    il = np.empty(n, dtype=np.int64)
    for i in range(n):
        row = labels[i, :ll[i]]
        need = len(row) + int(np.sum(row[1:] == row[:-1]))
        il[i] = t if full else rng.integers(max(need, 1), t + 1)
        labels[i, ll[i]:] = blank
    return labels, ll, il


def _regime(scale: float, n: int, t: int, s: int, full: bool = False, log_probs: bool = False,
            confident: float = 0.0, blank: int = 0):
    def make(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
        labels, ll, il = _labels(rng, n, s, t, full, blank)
        z = rng.normal(scale=scale, size=(n, t, C))
        if confident:  # one alignment: each label held for a stretch, blanks between
            for i in range(n):
                row = labels[i, :ll[i]]
                path = np.full(t, blank, dtype=np.int64)
                if len(row):
                    cut = np.linspace(0, il[i], 2 * len(row) + 1).astype(int)
                    for j, c in enumerate(row):
                        path[cut[2 * j + 1]:cut[2 * j + 2]] = c
                z[i, np.arange(t), path] += confident
        if log_probs:
            z = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
                - z.max(-1, keepdims=True)
        out = {"y_true": labels, "y_pred": z.astype(dtype)}
        if not full:
            out["input_lengths"], out["label_lengths"] = il, ll
        return out

    return make


REGIMES = {
    "generic": _regime(2.0, 5, 6, 3),
    "padded": _regime(2.0, 4, 5, 2, full=True),  # Keras's form: full lengths, labels only
    "long": _regime(1.0, 1, 20, 5, full=True),
    "confident": _regime(1.0, 3, 7, 3, confident=14.0),  # loss ~1e-5: one alignment dominates
    "wide": _regime(6.0, 4, 5, 2),  # logit gaps up to ~35: probabilities near 1e-15
}
REGIMES_LOGP = {
    "generic": _regime(2.0, 5, 6, 3, log_probs=True),
    "long": _regime(1.0, 1, 20, 5, full=True, log_probs=True),
    "confident": _regime(1.0, 3, 7, 3, confident=14.0, log_probs=True),
    "huge": _regime(150.0, 4, 5, 2, log_probs=True),  # log-probabilities down to -700
}


# ------------------------------------------------------------------------------------------- peers


def _torch_ctc(p: Any, a: dict[str, Any], o: Mapping[str, Any], logits: bool) -> Any:
    import torch
    import torch.nn.functional as F

    n, t = p.shape[:2]
    lp = F.log_softmax(p, -1) if logits else p
    il = a.get("input_lengths", torch.full((n,), t, dtype=torch.int64))
    ll = a.get("label_lengths", (a["y_true"] != o.get("blank", 0)).sum(-1))
    return F.ctc_loss(lp.transpose(0, 1), a["y_true"], il, ll, blank=o.get("blank", 0),
                      reduction="none", zero_infinity=o.get("zero_infinity", False))


def _keras_ctc(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import keras

    if "input_lengths" in a or o.get("blank", 0) != 0:
        return None
    return keras.losses.ctc(a["y_true"], p)


_keras_ctc.uses_keras = True  # type: ignore[attr-defined]  # jax_peer sets Keras's floatx


def _optax_ctc(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import jax.numpy as jnp
    import optax

    n, t = p.shape[:2]
    s = a["y_true"].shape[1]
    il = a.get("input_lengths", jnp.full((n,), t))
    ll = a.get("label_lengths", jnp.sum(a["y_true"] != o.get("blank", 0), axis=-1))
    logit_pad = (jnp.arange(t)[None, :] >= il[:, None]).astype(p.dtype)
    label_pad = (jnp.arange(s)[None, :] >= ll[:, None]).astype(p.dtype)
    return optax.losses.ctc_loss(p, logit_pad, a["y_true"], label_pad, blank_id=o.get("blank", 0))


def _torch_log_probs_peer(arrays: dict[str, np.ndarray], options: Mapping[str, Any]) -> Any:
    """PyTorch's gradient with respect to log_probs is ``exp(log_probs) - gamma`` (the logits'
    gradient, for log-softmax inputs); the derivative of the value it returns is ``-gamma``."""
    values, grad = torch_peer(lambda p, a, o: _torch_ctc(p, a, o, False))(arrays, options)
    n, t = arrays["y_pred"].shape[:2]
    steps = np.arange(t)[None, :, None] < arrays.get("input_lengths", np.full(n, t))[:, None, None]
    q = np.where(steps, np.exp(arrays["y_pred"]), 0.0)  # torch's gradient is 0 after the input length
    grad = grad - q
    # where gamma = 0 torch's exp(lp) - 0 minus q leaves a rounding of q: an exact 0
    return values, np.where(np.abs(grad) <= 4 * np.finfo(grad.dtype).eps * q, 0.0, grad)


def _keras_peer(arrays: dict[str, np.ndarray], options: Mapping[str, Any]) -> Any:
    if "input_lengths" in arrays:
        return None
    values, _ = jax_peer(_keras_ctc)(arrays, options)
    return values, None  # Keras computes CTC in float32: its gradient is checked in tests/test_ctc.py


ENTRIES = [
    Entry("ctc", _spec(), regimes=REGIMES, options={},
          peers={"torch": torch_peer(lambda p, a, o: _torch_ctc(p, a, o, True)),
                 "keras": _keras_peer,
                 "optax": jax_peer(_optax_ctc)},
          peer_names={"torch": "torch.nn.functional.ctc_loss (of log_softmax)",
                      "keras": "keras.losses.ctc (values; float32 inside)", "optax": "optax.losses.ctc_loss"},
          peer_regimes=("generic", "padded"), peer_rtol=1e-6),  # Keras computes CTC in float32
    Entry("ctc", _spec(), regimes=REGIMES_LOGP, options={"from_logits": False},
          peers={"torch": _torch_log_probs_peer},
          peer_names={"torch": "torch.nn.functional.ctc_loss"}, peer_rtol=1e-9),
    Entry("ctc", _spec(), regimes={"generic": _regime(2.0, 4, 5, 2, blank=3)},
          options={"blank": 3, "length_normalize": True},
          peers={"torch": torch_peer(lambda p, a, o: _torch_ctc(p, a, o, True)
                                     / a["label_lengths"].clamp(min=1))},
          peer_names={"torch": "torch.nn.functional.ctc_loss (of log_softmax) / target_lengths"},
          peer_rtol=1e-9),
]
