"""Shared fixtures: a seeded generator and valid inputs for any registered loss.

``make_inputs`` and ``perfect_prediction`` are driven by tables, so that a new loss (or a new kind of
target) joins the property suite by adding a line rather than by rewriting a function:

* :data:`TARGET_KINDS`: one :class:`TargetKind` per ``LossDef.targets`` value: how ``y_true`` is
  drawn, the prediction that minimises the loss, and whether the loss is 0 there;
* :data:`SPECIAL`: per-loss exceptions (:class:`Special`, keyed by ``LossDef.name``): a custom
  ``y_pred`` generator, a custom minimising prediction, the known value at the minimum.

Everything else is derived from the declaration: ``y_true``/``y_pred`` ranges from ``defn.domain``
(open ends excluded, infinite ends capped), required extra inputs (``LossDef.inputs``) from their
``Input.domain`` and ``kind``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
import pytest

from losskit.losses._core import Interval, LossDef

Shape = tuple[int, ...]


@pytest.fixture(autouse=True)
def _mpmath_precision() -> Iterator[None]:
    """Every test starts with mpmath at 50 digits (what the modules that set it at import expect,
    whatever the order tests run in) and leaves the precision as it found it: a test that sets
    ``mpmath.mp.prec`` itself cannot lower another's reference (it did: a 100-bit setting made a
    cancelling reference in test_regression 21 ulp off)."""
    import mpmath

    saved = mpmath.mp.prec
    mpmath.mp.dps = 50
    yield
    mpmath.mp.prec = saved


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)


def option_sets(defn: LossDef) -> list[dict]:
    """The option combinations the property suite runs each loss with."""
    names = {o.name for o in defn.options}
    sets: list[dict] = [{}]
    if "from_logits" in names:
        sets.append({"from_logits": True})
    if "label_smoothing" in names:
        sets.append({"label_smoothing": 0.1, "from_logits": True})
    if "ignore_class" in names:
        sets.append({"ignore_class": 1, **({"from_logits": True} if "from_logits" in names else {})})
    # weight options, as numbers (the property shapes vary in K), from the declared option names
    if "pos_weight" in names:
        sets += [{"pos_weight": 2.0, **({"from_logits": True} if "from_logits" in names else {})},
                 {"pos_weight": 0.5}]
    if "class_weight" in names:
        sets.append({"class_weight": 2.0, **({"from_logits": True} if "from_logits" in names else {})})
    # issue 12: the peers' smoothing conventions and forms, the second regulariser
    if defn.name == "dice":
        sets += [{"smooth": "monai", "squared_pred": True}, {"smooth": "optax", "jaccard": True}]
    if defn.name == "tversky":
        sets.append({"alpha": 0.3, "beta": 0.7, "smooth": "optax"})
    if defn.name == "fenchel_young":
        sets.append({"regularizer": "softmax"})
    return sets


# ----------------------------------------------------------------------------- drawing from domains

INFINITE_SPAN = 4.0
"""Where an interval is unbounded on one side, values are drawn within this distance of its finite end."""
MARGIN = 0.05
"""Fraction of a bounded interval (or absolute distance from a finite end) kept clear of the ends."""


def sample_interval(rng: np.random.Generator, interval: Interval, shape: Shape) -> np.ndarray:
    """Uniform values strictly inside ``interval`` (well clear of its ends; infinite ends capped).

    For a bounded ``[low, high]`` the draw is uniform on ``[low + 5% width, high]`` (``high - 5% width``
    when ``high`` is open), so ``UNIT`` gives ``uniform(0.05, 1.0)``; a half-line gets values within
    ``INFINITE_SPAN`` of its finite end; the whole line gets standard normals.
    """
    low, high = float(interval.low), float(interval.high)
    if math.isfinite(low) and math.isfinite(high):
        width = high - low
        return rng.uniform(low + MARGIN * width, high - (MARGIN * width if interval.high_open else 0.0),
                           size=shape)
    if math.isfinite(low):
        return low + rng.uniform(MARGIN, INFINITE_SPAN, size=shape)
    if math.isfinite(high):
        return high - rng.uniform(MARGIN, INFINITE_SPAN, size=shape)
    return rng.normal(size=shape)


def distance_to_ends(interval: Interval, x: np.ndarray) -> np.ndarray:
    """Distance from each element to the nearest finite end of ``interval`` (inf when unbounded)."""
    out = np.full(np.shape(x), np.inf)
    if math.isfinite(interval.low):
        out = np.minimum(out, x - interval.low)
    if math.isfinite(interval.high):
        out = np.minimum(out, interval.high - x)
    return out


# ------------------------------------------------------------------------------------- target kinds


def _same(y_true: np.ndarray, k: int) -> np.ndarray:
    return y_true.copy()


def _draw_real(rng: np.random.Generator, shape: Shape, interval: Interval | None) -> np.ndarray:
    return rng.normal(size=shape) if interval is None else sample_interval(rng, interval, shape)


def _draw_binary(rng: np.random.Generator, shape: Shape, interval: Interval | None) -> np.ndarray:
    return rng.integers(0, 2, size=shape).astype(float)


def _draw_distribution(rng: np.random.Generator, shape: Shape, interval: Interval | None) -> np.ndarray:
    y = rng.uniform(0.0, 1.0, size=shape)
    return y / y.sum(-1, keepdims=True)


def _draw_index(rng: np.random.Generator, shape: Shape, interval: Interval | None) -> np.ndarray:
    return rng.integers(0, shape[-1], size=shape[:-1])


def _draw_sign(rng: np.random.Generator, shape: Shape, interval: Interval | None) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=shape)


@dataclass(frozen=True)
class TargetKind:
    """One value of ``LossDef.targets`` as the property suite sees it."""

    draw: Callable[[np.random.Generator, Shape, Interval | None], np.ndarray]
    """``draw(rng, y_pred_shape, y_true_interval) -> y_true`` (float64, or integer labels)."""
    perfect: Callable[[np.ndarray, int], np.ndarray]
    """``perfect(y_true, k) -> y_pred`` at which the loss is minimal (k: size of the reduced axis)."""
    zero_minimum: bool
    """Whether the loss is exactly 0 at that prediction (unless :data:`SPECIAL` says otherwise)."""
    normalised: bool = False
    """Whether probability predictions (``y_pred`` in a sub-interval of [0, 1]) sum to 1 over a row."""


TARGET_KINDS: dict[str, TargetKind] = {
    "real": TargetKind(_draw_real, _same, zero_minimum=True),
    "binary": TargetKind(_draw_binary, _same, zero_minimum=False),
    "distribution": TargetKind(_draw_distribution, _same, zero_minimum=False, normalised=True),
    "index": TargetKind(_draw_index, lambda y_true, k: np.eye(k)[y_true], zero_minimum=True,
                        normalised=True),
    "sign": TargetKind(_draw_sign, lambda y_true, k: 2.0 * y_true, zero_minimum=True),  # past the margin
    "onehot": TargetKind(lambda rng, shape, iv: np.eye(shape[-1])[_draw_index(rng, shape, iv)], _same,
                         zero_minimum=True),
    # PyTorch's multilabel targets: 1..k-1 distinct class indices per row, then -1 padding
    "index_list": TargetKind(
        lambda rng, shape, iv: np.array([np.r_[rng.permutation(shape[-1])[:m], -np.ones(shape[-1] - m)]
                                         for m in rng.integers(1, shape[-1], size=shape[:-1]).ravel()]
                                        ).reshape(shape),
        lambda y_true, k: (np.arange(k) == y_true[..., :, None]).any(-2).astype(float),
        zero_minimum=True),
    # label sequences (CTC): y_true (N, S) for y_pred (N, T, C); drawn per loss (SPECIAL), no finite
    # minimiser on logits
    "sequence": TargetKind(lambda rng, shape, iv: rng.integers(1, 4, size=(shape[0], 2)),
                           lambda y_true, k: None, zero_minimum=False),
    # one -1/1 label per row of y_pred (a sparse target: cosine_embedding's similar/dissimilar pairs)
    "row_sign": TargetKind(lambda rng, shape, iv: rng.choice([-1.0, 1.0], size=shape[:-1]), _same,
                           zero_minimum=False),
}




def target_kind(defn: LossDef) -> TargetKind:
    """The :class:`TargetKind` of a loss's declared ``targets``; a kind no line of
    :data:`TARGET_KINDS` describes yet is refused with what to add."""
    if defn.targets not in TARGET_KINDS:
        raise KeyError(f"{defn.name} declares targets={defn.targets!r}, which tests/conftest.py's "
                       f"TARGET_KINDS does not describe (known: {sorted(TARGET_KINDS)}); add a line: how "
                       "to draw y_true, the prediction that minimises the loss, and whether it is 0 there")
    return TARGET_KINDS[defn.targets]


# ------------------------------------------------------------------------------ per-loss exceptions


def _ctc_pred(z: np.ndarray, opts: dict) -> np.ndarray:
    """Logits, or log-probabilities (log-softmax) with ``from_logits=False``."""
    if opts.get("from_logits", True):
        return z
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))

KIND = "kind"


@dataclass(frozen=True)
class Special:
    """Exceptions to the generic rules for one loss (keyed by ``LossDef.name`` in :data:`SPECIAL`)."""

    y_pred: Callable[[np.random.Generator, Shape, dict], np.ndarray] | None = None
    """``y_pred(rng, shape, opts)``: valid predictions, when the domain does not say enough."""
    y_true: Callable[[np.random.Generator, Shape, dict], np.ndarray] | None = None
    """``y_true(rng, shape, opts)``: targets, instead of the target kind's draw."""
    perfect: Callable[[dict, np.ndarray, int], np.ndarray | None] | None = None
    """``perfect(opts, y_true, k)``: the minimising prediction (None: no finite one), instead of the
    target kind's."""
    minimum: float | str | None = KIND
    """The loss's value at that prediction: a number (asserted to 4 eps), None (only minimality is
    checked), or ``"kind"``: 0 if the target kind has ``zero_minimum``, else None."""


SPECIAL: dict[str, Special] = {
    # positive vectors: cosines of one sign, so that reductions do not cancel; -1 at y_pred = y_true
    "cosine_similarity": Special(y_pred=lambda rng, shape, opts: rng.uniform(0.5, 1.5, size=shape),
                                 y_true=lambda rng, shape, opts: rng.uniform(0.5, 1.5, size=shape),
                                 minimum=-1.0),
    # focal losses are not proper scoring rules: for soft targets the minimiser is not y_pred = y_true
    # (the (1 - q)^gamma factor favours sharper predictions); for one-hot targets it is, with loss 0
    "categorical_focal_crossentropy": Special(
        y_true=lambda rng, shape, opts: np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]),
    # minimal at y_pred = y_true (the rate), where the value is not a constant
    "poisson": Special(minimum=None),
    "gaussian_nll": Special(minimum=None),
    # minimal at the log-rate log(y_true) (or the rate y_true - eps): not at y_true
    "poisson_nll": Special(perfect=lambda opts, y_true, k: (
        np.log(y_true) if opts.get("log_input", True) else y_true - opts.get("eps", 1e-8)),
        minimum=None),
    "kl_divergence": Special(minimum=0.0),
    # logits only: no finite minimiser
    "poly_loss_cross_entropy": Special(perfect=lambda opts, y_true, k: None),
    # log-probabilities: 0 at the label (any non-positive value elsewhere) gives the minimum 0
    "nll": Special(perfect=lambda opts, y_true, k: np.eye(k)[y_true] - 1.0, minimum=0.0),
    # log-probability predictions; the minimum is at log(y_true) (rounded: not exactly 0)
    "kl_div": Special(y_pred=lambda rng, shape, opts: np.log(_draw_distribution(rng, shape, None)),
                      perfect=lambda opts, y_true, k: np.log(y_true), minimum=None),
    # logistic losses of a score: no finite minimiser
    "soft_margin": Special(perfect=lambda opts, y_true, k: None),
    "multilabel_soft_margin": Special(perfect=lambda opts, y_true, k: None),
    # issue 12: logits past +-1 on the right side give 0
    "sparsemax": Special(perfect=lambda opts, y_true, k: 2.0 * y_true - 1.0, minimum=0.0),
    "lovasz_hinge": Special(perfect=lambda opts, y_true, k: 2.0 * y_true - 1.0, minimum=0.0),
    # scores whose prediction map is the target: the target itself (sparsemax), its log (softmax;
    # rounded, so only minimality is checked)
    "fenchel_young": Special(perfect=lambda opts, y_true, k: (
        np.log(y_true) if opts.get("regularizer") == "softmax" else y_true), minimum=None),
    # softmax over graded labels: no finite minimiser
    "ranking_softmax": Special(perfect=lambda opts, y_true, k: None),
    # CTC: the property shape (N, T) gains a class axis of C = max(4, T // 8); labels of length
    # max(2, T // 8) in 1..C-1 (T >= 3: room for a blank between repeats)
    "ctc": Special(y_pred=lambda rng, shape, opts: _ctc_pred(
                       rng.normal(size=(*shape, max(4, shape[1] // 8))), opts),
                   y_true=lambda rng, shape, opts: rng.integers(
                       1, max(4, shape[1] // 8), size=(shape[0], max(2, shape[1] // 8))),
                   perfect=lambda opts, y_true, k: None, minimum=None),
    # issue 12, embedding and ranking losses. Rows of cosine similarities in (-1, 1); no finite
    # minimiser for the contrastive losses (positives to +inf relative to negatives), and the minimum
    # of the pair and triplet losses depends on the other member (an extra input), which perfect()
    # does not see; hinge_embedding's similar term x is unbounded below
    "ntxent": Special(y_pred=lambda rng, shape, opts: rng.uniform(-1, 1, size=shape),
                      perfect=lambda opts, y_true, k: None),
    "circle": Special(y_pred=lambda rng, shape, opts: rng.uniform(-1, 1, size=shape),
                      perfect=lambda opts, y_true, k: None),
    "triplet_margin": Special(y_pred=lambda rng, shape, opts: rng.normal(size=shape),
                              y_true=lambda rng, shape, opts: rng.normal(size=shape),
                              perfect=lambda opts, y_true, k: None),
    "cosine_embedding": Special(perfect=lambda opts, y_true, k: None),
    "margin_ranking": Special(perfect=lambda opts, y_true, k: None),
    "hinge_embedding": Special(perfect=lambda opts, y_true, k: None),
}


# ------------------------------------------------------------------------------------------ inputs


class Inputs(NamedTuple):
    """Valid arguments of a loss: ``fn(y_true, y_pred, **extras, **opts)``."""

    y_true: np.ndarray
    y_pred: np.ndarray
    extras: dict[str, np.ndarray]


def make_inputs(defn: LossDef, opts: dict, rng: np.random.Generator, shape=(6, 5),
                dtype=np.float64) -> Inputs:
    """Random valid ``(y_true, y_pred, extras)`` for a loss, derived from its declaration.

    ``y_pred``: normal logits with ``from_logits``, else drawn from the ``y_pred`` domain (normalised
    over the row for distribution/index targets when it is a probability), else standard normal.
    ``y_true``: by the target kind (:data:`TARGET_KINDS`; real targets from the ``y_true`` domain).
    ``extras``: every required ``LossDef.inputs`` array, shaped like ``y_pred``, from its domain
    (booleans: about 80% True).
    """
    kind = target_kind(defn)
    special = SPECIAL.get(defn.name, Special())
    domain = defn.domain(defn.normalise(opts))
    pred_iv = domain.get("y_pred")
    if special.y_pred is not None:
        y_pred = special.y_pred(rng, shape, opts)
    elif opts.get("from_logits"):
        y_pred = rng.normal(scale=2.0, size=shape)
    elif pred_iv is not None:
        y_pred = sample_interval(rng, pred_iv, shape)
        if kind.normalised and pred_iv.low >= 0 and pred_iv.high <= 1:
            y_pred /= y_pred.sum(-1, keepdims=True)
    else:
        y_pred = rng.normal(size=shape)
    y_true = (special.y_true(rng, shape, opts) if special.y_true is not None
              else kind.draw(rng, shape, domain.get("y_true")))
    if y_true.dtype.kind == "f":
        y_true = y_true.astype(dtype)
    extras = {}
    for spec in defn.inputs:
        if not spec.required:
            continue
        if spec.kind == "bool":
            extras[spec.name] = rng.random(size=shape) < 0.8
        else:
            values = _draw_real(rng, shape, spec.domain)
            extras[spec.name] = values.astype(dtype)
    return Inputs(y_true, y_pred.astype(dtype), extras)


def perfect_prediction(defn: LossDef, opts: dict, y_true: np.ndarray, k: int) -> np.ndarray | None:
    """A prediction at which the loss is minimal, or None where no finite one exists (logits)."""
    special = SPECIAL.get(defn.name, Special())
    if special.perfect is not None:
        return special.perfect(opts, y_true, k)
    if opts.get("from_logits"):
        return None
    return target_kind(defn).perfect(y_true, k)


def minimum_value(defn: LossDef) -> float | None:
    """The loss's value at :func:`perfect_prediction`, or None where it is not a known constant."""
    minimum = SPECIAL.get(defn.name, Special()).minimum
    if minimum == KIND:
        return 0.0 if target_kind(defn).zero_minimum else None
    assert not isinstance(minimum, str), f"{defn.name}: Special.minimum {minimum!r}"
    return minimum


@contextlib.contextmanager
def backend_arrays(backend: str, dtype: Any) -> Iterator[tuple[Callable, Callable]]:
    """(to_backend, to_numpy) converters; JAX runs with x64 on for float64 cases only."""
    if backend == "torch":
        torch = pytest.importorskip("torch")
        yield (lambda a: torch.from_numpy(np.array(a)), lambda r: r.detach().cpu().numpy())
        return
    jax = pytest.importorskip("jax")
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", np.dtype(dtype) == np.float64)
    try:
        yield jax.numpy.asarray, np.asarray
    finally:
        jax.config.update("jax_enable_x64", previous)
