"""The boosting declarations against the losses' registry, and the recipe's starting point.

A name that both ``losskit.get`` and ``losskit.boosting.get`` accept must mean the same loss: the
boosting objective at raw score ``r`` is the loss at the prediction ``inverse_link(r)`` up to terms
that do not depend on ``r`` (checked on differences between two raw scores, so those terms cancel),
with the same option names and the same option domains. ``init_score`` must be the minimiser of the
weighted loss over a constant, found here by scipy from the formulas written in this file.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

import losskit
from losskit import boosting as B


def _shared() -> list[tuple[str, str]]:
    """(losskit name, boosting definition name) for every name both registries accept."""
    boosting = set(B.names())
    return [(n, B.get(n).name) for n in losskit.names() if n.lower() in boosting]


def test_some_names_are_shared():
    names = dict(_shared())
    for n in ("mse", "mean_squared_error", "mae", "pinball", "huber", "poisson", "categorical_crossentropy"):
        assert n in names


# names the two registries use for losses that differ by a constant factor, each after its peer
HALVED = {"squared_error": "boosting follows scikit-learn's gradient boosting (loss='squared_error' is "
                           "half the square: the same trees); losskit.get follows Optax's squared_error "
                           "(the full square)"}


@pytest.mark.parametrize(("name", "bname"), _shared(), ids=[n for n, _ in _shared()])
def test_shared_name_means_the_same_loss(name, bname, rng):
    b = B.get(name)
    ref = losskit.get(name)
    if name in HALVED:  # the same loss up to the factor 1/2
        y, r1, r2 = rng.normal(size=40), rng.normal(size=40), rng.normal(size=40)
        expected = (np.asarray(ref.call(y[:, None], r1[:, None]))
                    - np.asarray(ref.call(y[:, None], r2[:, None])))
        np.testing.assert_allclose(b.loss(y, r1) - b.loss(y, r2), expected.reshape(-1) / 2, rtol=1e-9)
        return
    assert b.definition.same_as == ref.definition.name, (
        f"{name!r}: boosting {bname} declares same_as={b.definition.same_as!r}, losskit.get gives "
        f"{ref.definition.name!r}")
    n = 40
    if b.is_multiclass:
        k = 4
        y = rng.integers(0, k, n)
        r1, r2 = rng.normal(size=(n, k)), rng.normal(size=(n, k))
        yt = np.eye(k)[y]  # the losses' categorical cross-entropy takes one-hot targets
    else:
        r1, r2 = rng.normal(size=n), rng.normal(size=n)
        if b.definition.targets == "binary":
            y = rng.uniform(0, 1, n)
        elif b.link_name == "log":
            y = rng.poisson(3.0, n).astype(float)
        else:
            y = rng.normal(size=n) * 2
        yt = y[:, None]

    def per_sample(r):
        p = b.inverse_link(r)
        return np.asarray(ref.call(yt, p if b.is_multiclass else p[:, None]), dtype=np.float64).reshape(n)

    expected = per_sample(r1) - per_sample(r2)
    got = b.loss(y, r1) - b.loss(y, r2)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("name", "bname"), _shared(), ids=[n for n, _ in _shared()])
def test_shared_name_has_the_same_options_and_domains(name, bname):
    bdef, ldef = B.get(name).definition, losskit.get(name).definition
    bopts = {o.name for o in bdef.options}
    assert bopts <= {o.name for o in ldef.options}
    for alias, canonical in ldef.option_aliases.items():
        if canonical in bopts:
            assert bdef.option_aliases.get(alias) == canonical
    trial = {"quantile": [-0.1, 0.0, 0.3, 1.0, 1.5, "0.5", True], "delta": [-1.0, 0.0, 2.0, np.inf, None]}
    for opt in bopts:
        for value in trial[opt]:
            outcomes = []
            makers = (lambda v, o=opt: B.get(name, **{o: v}),
                      lambda v, o=opt: type(losskit.get(name))(**{o: v}))
            for make in makers:
                try:
                    make(value)
                    outcomes.append("ok")
                except (TypeError, ValueError) as err:
                    outcomes.append(type(err).__name__)
            assert outcomes[0] == outcomes[1], (
                f"{name} {opt}={value!r}: boosting {outcomes[0]}, losses {outcomes[1]}")


def test_every_same_as_names_a_registered_loss():
    for d in B.definitions():
        if d.same_as is not None:
            assert losskit.get(d.same_as).definition.name == d.same_as


# ------------------------------------------------------------------------------------ init_score
# The losses as functions of a constant raw score c, from their definitions (constants kept or not:
# they do not move the minimiser).

def _formula(name, opts, y, c):
    if name in ("squared_error", "mean_squared_error"):
        return (c - y) ** 2
    if name == "absolute_error":
        return np.abs(c - y)
    if name == "pinball_loss":
        q = opts["quantile"]
        return np.where(y >= c, q * (y - c), (1 - q) * (c - y))
    if name == "huber_loss":
        d, a = opts["delta"], np.abs(c - y)
        return np.where(a <= d, a * a / 2, d * (a - d / 2))
    if name == "tweedie_loss":
        p = opts["power"]
        return np.exp((2 - p) * c) / (2 - p) - y * np.exp((1 - p) * c) / (1 - p)
    if name == "poisson_loss":
        return np.exp(c) - y * c
    if name == "gamma_loss":
        return c + y * np.exp(-c)
    if name == "binomial_loss":
        return np.logaddexp(0, c) - y * c
    if name == "exponential_loss":
        return y * np.exp(-c) + (1 - y) * np.exp(c)
    raise AssertionError(name)


@pytest.mark.parametrize(("name", "opts"), [
    ("squared_error", {}), ("mean_squared_error", {}), ("absolute_error", {}),
    ("pinball_loss", {"quantile": 0.8}), ("huber_loss", {"delta": 0.7}), ("poisson_loss", {}),
    ("gamma_loss", {}), ("tweedie_loss", {"power": 1.4}),
    ("binomial_loss", {}), ("exponential_loss", {}),
])
def test_init_score_minimises_the_weighted_loss(name, opts, rng):
    loss = B.get(name, **opts)
    n = 201
    if loss.definition.targets == "binary":
        y = rng.uniform(0, 1, n)
    elif loss.link_name == "log":
        y = rng.gamma(2.0, 3.0, n)
    else:
        y = rng.normal(1.0, 2.0, n)
    w = rng.uniform(0.1, 2.0, n)
    c = loss.init_score(y, w)

    def total(v):
        return float(np.sum(w * _formula(name, opts, y, v)))

    best = minimize_scalar(total, bracket=(c - 1.0, c + 1.0), tol=1e-12).x
    assert total(c) <= total(best) + 1e-12 * abs(total(best)) + 1e-12
    assert abs(c - best) < 1e-4 * max(1.0, abs(best)) or name in ("absolute_error", "pinball_loss")


def test_init_score_multiclass_is_the_log_frequency():
    loss = B.get("multinomial")
    y = np.array([0, 1, 1, 2, 2, 2])
    c = loss.init_score(y)
    np.testing.assert_allclose(loss.inverse_link(c), [1 / 6, 2 / 6, 3 / 6])
    assert abs(c.sum()) < 1e-15
    with pytest.raises(ValueError, match="class 3 has no weight"):
        loss.init_score(y, n_classes=4)
