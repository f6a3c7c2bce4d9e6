"""Oracle entries of the boosting objectives (``losskit.boosting``) in the catalog's ``Entry`` form.

Each objective with each option set is an :class:`oracle.catalog.Entry`: its mpmath *terms* (the
per-sample loss of a raw score, written from the definition; a row is a few samples, the terms are
summed and separable, so the harness's numerical gradient of the row is the per-sample gradient
with respect to each raw score) and the regimes it must be exact on: ``generic`` (targets across
the domain, raw scores ~ N(0, 4)), ``near`` (targets within a relative 1e-2 to 1e-11 of the inverse
link of the raw score, where ``exp(r) - y`` and ``sigmoid(r) - y`` cancel) and ``tails`` (raw scores
of +-40, +-700, +-745 with small, unit and large targets).

They are exported as :data:`BOOSTING_ENTRIES`, not ``ENTRIES``: the generic catalog suite
(``tests/test_catalog.py``) calls ``losskit.<loss>`` on predictions, while these are raw-score
objectives that ``losskit.boosting.get(entry.loss, **entry.options)`` builds;
``tests/test_boosting.py::test_catalog_entries_gradient`` runs them. The hessians (which the
harness does not differentiate) stay analytic in ``tests/test_boosting.py``, checked there against
``mpmath.diff``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from ..catalog import Entry
from ..reference import Spec

ROWS, N = 8, 4
Arrays = dict[str, np.ndarray]


# ------------------------------------------------------------------------------- the mpmath losses


def _tweedie(y: mpf, r: mpf, p: mpf) -> mpf:
    if p == 0:
        return (mpmath.exp(r) - y) ** 2 / 2
    if p == 1:
        return mpmath.exp(r) - y * r
    if p == 2:
        return r + y * mpmath.exp(-r)
    return mpmath.exp((2 - p) * r) / (2 - p) - y * mpmath.exp((1 - p) * r) / (1 - p)


def _loss(name: str, opts: Mapping[str, Any]) -> Callable[[mpf, mpf], mpf]:
    """The per-sample loss of raw score ``r`` and target ``y`` (scikit-learn's constants dropped)."""
    if name == "squared_error":
        return lambda y, r: (r - y) ** 2 / 2
    if name == "mean_squared_error":
        return lambda y, r: (r - y) ** 2
    if name == "huber_loss":
        d = mpf(opts["delta"])
        return lambda y, r: (r - y) ** 2 / 2 if abs(r - y) <= d else d * (abs(r - y) - d / 2)
    if name == "poisson_loss":
        return lambda y, r: _tweedie(y, r, mpf(1))
    if name == "gamma_loss":
        return lambda y, r: _tweedie(y, r, mpf(2))
    if name == "tweedie_loss":
        p = mpf(opts["power"])
        return lambda y, r: _tweedie(y, r, p)
    if name == "binomial_loss":  # log(1 + e^r) - y r, as y softplus(-r) + (1 - y) softplus(r)
        return lambda y, r: y * mpmath.log1p(mpmath.exp(-r)) + (1 - y) * mpmath.log1p(mpmath.exp(r))
    if name == "exponential_loss":
        return lambda y, r: y * mpmath.exp(-r) + (1 - y) * mpmath.exp(r)
    raise KeyError(name)


def _spec(name: str, opts: Mapping[str, Any]) -> Spec:
    loss = _loss(name, opts)

    def terms(t: list[mpf], p: list[mpf], _opts: Mapping[str, Any]) -> list[mpf]:
        return [loss(a, b) for a, b in zip(t, p, strict=True)]

    return Spec(terms, mean=False, separable=True)


# -------------------------------------------------------------------------------------- the regimes


def _domain(name: str, opts: Mapping[str, Any]) -> str:
    if name in ("binomial_loss", "exponential_loss"):
        return "unit"
    power = {"poisson_loss": 1.0, "gamma_loss": 2.0}.get(name, opts.get("power"))
    if power is None or power <= 0:
        return "real"
    return "positive" if power >= 2 else "nonnegative"


def _inverse(name: str, r: np.ndarray) -> np.ndarray:
    if name == "binomial_loss":
        return 1 / (1 + np.exp(-r))
    if name == "exponential_loss":
        return 1 / (1 + np.exp(-2 * r))
    if name in ("poisson_loss", "gamma_loss", "tweedie_loss"):
        return np.exp(r)
    return r


def _regimes(name: str, opts: Mapping[str, Any]) -> dict[str, Callable[[np.random.Generator, Any], Arrays]]:
    dom = _domain(name, opts)

    def cast(dtype: Any, y: np.ndarray, r: np.ndarray) -> Arrays:
        return {"y_true": np.asarray(y, dtype=np.float64).astype(dtype),
                "y_pred": np.asarray(r, dtype=np.float64).astype(dtype)}

    def generic(rng: np.random.Generator, dtype: Any) -> Arrays:
        r = rng.normal(0.0, 4.0, (ROWS, N))
        if dom == "unit":
            hard = rng.integers(0, 2, r.shape)
            y = np.where(rng.uniform(size=r.shape) < 0.5, hard, rng.uniform(0, 1, r.shape))
        elif dom == "real":
            y = rng.normal(0.0, 4.0, r.shape)
        else:
            y = np.exp(rng.normal(0.0, 3.0, r.shape))
            if dom == "nonnegative":
                y[0] = 0.0
        return cast(dtype, y, r)

    def near(rng: np.random.Generator, dtype: Any) -> Arrays:
        r = rng.normal(0.0, 3.0, (ROWS, N))
        rel = rng.choice([1e-2, -1e-2, 1e-6, -1e-6, 1e-11, -1e-11], r.shape)
        y = _inverse(name, r) * (1 + rel)
        if dom == "unit":
            y = np.clip(y, 0.0, 1.0)
        return cast(dtype, y, r)

    def tails(rng: np.random.Generator, dtype: Any) -> Arrays:
        big = 40.0 if np.dtype(dtype) == np.float32 else 700.0
        raw = np.array([big, -big, 40.0, -40.0, 745.0, -745.0, 1e-8, -1e-8])
        if np.dtype(dtype) == np.float32:
            raw = np.array([40.0, -40.0, 80.0, -80.0, 20.0, -20.0, 1e-8, -1e-8])
        specials = {"unit": [0.0, 1.0, 0.3, 0.999999], "real": [0.0, 1.0, -3.0, 1e30],
                    "nonnegative": [0.0, 1.0, 1e-30, 1e30], "positive": [1.0, 3.0, 1e-30, 1e30]}[dom]
        r = np.tile(raw[:, None], (1, N))
        y = np.tile(np.array(specials)[None, :], (ROWS, 1))
        return cast(dtype, y, r)

    return {"generic": generic, "near": near, "tails": tails}


# --------------------------------------------------------------------------------------- the entries

_CASES: list[tuple[str, dict[str, Any]]] = [
    ("squared_error", {}),
    ("mean_squared_error", {}),
    ("huber_loss", {"delta": 1.0}),
    ("poisson_loss", {}),
    ("gamma_loss", {}),
    ("tweedie_loss", {"power": 1.5}),
    ("tweedie_loss", {"power": 1.2}),
    ("tweedie_loss", {"power": 3.0}),
    ("binomial_loss", {}),
    ("exponential_loss", {}),
]

BOOSTING_ENTRIES: list[Entry] = [
    Entry(loss=name, spec=_spec(name, opts), regimes=_regimes(name, opts), options=opts,
          note="raw-score objective of losskit.boosting (gradient with respect to the raw score)")
    for name, opts in _CASES
]
"""The boosting objectives as catalog entries (run by ``tests/test_boosting.py``)."""
