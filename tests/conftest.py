"""Shared fixtures: a seeded generator and valid inputs for any registered loss."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
import pytest

from losskit.losses._core import LossDef


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
        sets.append({"ignore_class": 1, "from_logits": True})
    return sets


def make_inputs(defn: LossDef, opts: dict, rng: np.random.Generator, shape=(6, 5),
                dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Random valid (y_true, y_pred) for a loss, derived from its declared targets and domain."""
    k = shape[-1]
    if opts.get("from_logits"):
        y_pred = rng.normal(scale=2.0, size=shape)
    elif "y_pred" in defn.domain(defn.normalise(opts)):
        y_pred = rng.uniform(0.05, 1.0, size=shape)
        if defn.targets in ("distribution", "index"):
            y_pred /= y_pred.sum(-1, keepdims=True)
    else:
        y_pred = rng.normal(size=shape)
    if defn.targets == "index":
        y_true = rng.integers(0, k, size=shape[:-1])
        return y_true, y_pred.astype(dtype)
    if defn.targets == "binary":
        y_true = rng.integers(0, 2, size=shape).astype(float)
    elif defn.targets == "distribution":
        y_true = rng.uniform(0.0, 1.0, size=shape)
        y_true /= y_true.sum(-1, keepdims=True)
    elif defn.targets == "sign":
        y_true = rng.choice([-1.0, 1.0], size=shape)
    else:
        y_true = rng.normal(size=shape)
    return y_true.astype(dtype), y_pred.astype(dtype)


def perfect_prediction(defn: LossDef, opts: dict, y_true: np.ndarray, k: int) -> np.ndarray | None:
    """A prediction at which the loss is minimal, or None where no finite one exists (logits)."""
    if opts.get("from_logits"):
        return None
    if defn.targets == "index":
        return np.eye(k)[y_true]
    if defn.targets == "sign":
        return 2.0 * y_true  # beyond the margin: loss 0
    return y_true.copy()
