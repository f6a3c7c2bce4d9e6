"""The oracle suite: every :class:`oracle.catalog.Entry` against the mpmath oracle and its peers.

One generic suite over ``catalog.ENTRIES`` (collected from ``tests/oracle/families/*.py``: the
tutorial's seven in ``core.py``, the catalog in the others); a loss joins it by adding an ``Entry``.
For every entry x regime x dtype (float32, float64):

* ``test_value``: the function ``losskit.<loss>(y_true, y_pred, **inputs, **options)`` and the class
  (``reduction="none"``) give the oracle's per-sample values within ``entry.max_ulp`` (the rules of
  :func:`oracle.reference.assert_ulp`: exact zeros and infinities, subnormals may flush), in the
  input dtype;
* ``test_gradient``: the class's ``gradient`` and ``value_and_gradient`` (``reduction="none"``) give
  the oracle's per-sample gradients (numerical differentiation at raised precision);
* ``test_reduced``: ``"sum"``, ``"sum_over_batch_size"`` and ``"batchmean"`` values and gradients
  on the ``"generic"`` regime;
* ``test_backend``: the same on PyTorch tensors and JAX arrays, on ``entry.backend_regimes``
  (``"generic"`` unless the entry names its hard regimes);
* ``test_random_rows``: for entries with ``random_rows``, a deterministic Hypothesis search over
  random rows (``LOSSKIT_ORACLE_EXAMPLES`` examples per loss and dtype, 25 by default, shared
  among the loss's entries), values and gradients;
* ``test_peer``: each peer of the entry, float64 inputs on ``entry.peer_regimes``, agrees with
  losskit's values and gradients within ``entry.peer_rtol`` (skipped when the peer is not installed
  or lacks the option set).

An entry may document a weaker bound where an element is the difference of two nearly cancelling
terms (``Entry.value_scale``/``grad_scale``: ``max_ulp`` ulps of the larger term there, as
``families/core.py`` does for the core cross-entropies' soft targets).
Extra inputs are the regime's arrays other than ``y_true``/``y_pred``; they are passed by keyword.
The oracle is computed once per (entry, regime, dtype) and shared by the tests (``functools.cache``).
Test ids read ``<entry id>/<regime>/<dtype>``, e.g. ``huber-delta=1.0/generic/float32``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import pytest
from conftest import backend_arrays
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import catalog
from oracle import reference as R

import losskit
from losskit.losses._registry import definitions

ENTRIES: dict[str, catalog.Entry] = {e.id: e for e in catalog.ENTRIES}
DTYPES = {"float32": np.float32, "float64": np.float64}
BACKEND_REGIME = "generic"
PEER_MODULES = {"keras": "keras", "torch": "torch", "optax": "optax", "sklearn": "sklearn",
                "jax": "jax", "scipy": "scipy"}

CASES = [(e.id, regime, dt) for e in ENTRIES.values() for regime in e.regimes for dt in DTYPES]
BACKEND_CASES = [(e.id, regime, dt) for e in ENTRIES.values() for regime in e.backend_regimes
                 for dt in DTYPES]
RANDOM_CASES = [(e.id, dt) for e in ENTRIES.values() if e.random_rows is not None for dt in DTYPES]
PEER_CASES = [(e.id, peer, regime) for e in ENTRIES.values() for peer in e.peers
              for regime in e.peer_regimes]


def case_ids(cases: list[tuple[str, str, str]]) -> list[str]:
    return ["/".join(c) for c in cases]


# --------------------------------------------------------------------------- helpers


@functools.cache
def arrays_of(entry_id: str, regime: str, dtype: str) -> dict[str, np.ndarray]:
    """The regime's arrays (read-only, so a loss that wrote into its inputs would fail loudly)."""
    arrays = ENTRIES[entry_id].inputs(regime, DTYPES[dtype])
    for a in arrays.values():
        a.flags.writeable = False
    return arrays


def arrays_copy(entry_id: str, regime: str, dtype: str) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in arrays_of(entry_id, regime, dtype).items()}


@functools.cache
def exact_values(entry_id: str, regime: str, dtype: str) -> list[Any]:
    """Exact per-row values (cached per process)."""
    return ENTRIES[entry_id].exact_values(arrays_of(entry_id, regime, dtype))


@functools.cache
def exact_gradients(entry_id: str, regime: str, dtype: str) -> list[list[Any]]:
    """Exact per-row gradients (cached per process; the expensive part of the suite)."""
    grads = ENTRIES[entry_id].exact_gradients(arrays_of(entry_id, regime, dtype))
    for row, g in enumerate(grads):
        if any(mpmath.isnan(x) for x in g):
            raise AssertionError(
                f"{entry_id}/{regime}/{dtype}: the oracle cannot differentiate row {row} (infinite "
                "value or an input on a discontinuity); keep regime rows differentiable and test "
                "such rows in a dedicated test")
    return grads


@functools.cache
def scales(entry_id: str, regime: str, dtype: str) -> tuple[Any, Any]:
    """The entry's documented weaker bounds (``value_scale``, ``grad_scale``) on a regime, or None."""
    entry = ENTRIES[entry_id]
    arrays = arrays_of(entry_id, regime, dtype)
    return tuple(None if fn is None else fn(arrays, dict(entry.options))
                 for fn in (entry.value_scale, entry.grad_scale))


def extras(arrays: dict[str, Any]) -> dict[str, Any]:
    """The extra call-time inputs of a regime (``var=...``, ``where=...``)."""
    return {k: v for k, v in arrays.items() if k not in ("y_true", "y_pred")}


def function(entry: catalog.Entry) -> Callable[..., Any]:
    return getattr(losskit, entry.loss)


def instance(entry: catalog.Entry) -> Any:
    """The loss's class with ``reduction="none"`` and the entry's options."""
    return type(losskit.get(entry.loss))(reduction="none", **entry.options)


def check_dtype(arr: Any, dtype: Any, what: str) -> np.ndarray:
    out = np.asarray(arr)
    assert out.dtype == np.dtype(dtype), f"{what}: dtype {out.dtype} != {np.dtype(dtype).name}"
    return out


def printed(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs shown on failure, y_true and y_pred first."""
    return {"y_true": arrays["y_true"], "y_pred": arrays["y_pred"], **extras(arrays)}


# --------------------------------------------------------------------------- structure


def test_every_loss_has_an_entry() -> None:
    """Every registered loss has an oracle entry (docs/adding-a-loss.md)."""
    covered = {e.loss for e in ENTRIES.values()}
    missing = sorted(d.name for d in definitions() if d.name not in covered)
    assert not missing, f"registered losses without a catalog Entry in tests/oracle/families/: {missing}"


@pytest.mark.parametrize("entry_id", list(ENTRIES))
def test_entry_is_well_formed(entry_id: str) -> None:
    """The entry names a losskit loss, valid options, a generic regime and small, typed arrays."""
    entry = ENTRIES[entry_id]
    assert hasattr(losskit, entry.loss), f"losskit has no function {entry.loss!r}"
    type(losskit.get(entry.loss))(**entry.options)  # the options are accepted
    assert BACKEND_REGIME in entry.regimes, f"{entry_id}: the 'generic' regime is required"
    assert set(entry.peer_regimes) <= set(entry.regimes), f"{entry_id}: unknown peer_regimes"
    assert set(entry.backend_regimes) <= set(entry.regimes), f"{entry_id}: unknown backend_regimes"
    assert set(entry.peers) <= set(entry.peer_names), f"{entry_id}: a peer without its peer_names"
    for regime in entry.regimes:
        for dtype in DTYPES:
            arrays = arrays_of(entry_id, regime, dtype)
            assert {"y_true", "y_pred"} <= set(arrays), f"{entry_id}/{regime}: y_true and y_pred"
            rows = len(arrays["y_pred"])
            assert 0 < rows <= entry.max_rows, f"{entry_id}/{regime}: {rows} rows (1..{entry.max_rows})"
            for name, arr in arrays.items():
                assert len(arr) == rows, f"{entry_id}/{regime}: {name} has {len(arr)} rows"
                if arr.dtype.kind == "f":
                    assert arr.dtype == np.dtype(dtype), f"{entry_id}/{regime}: {name} is {arr.dtype}"


# --------------------------------------------------------------------------- the oracle


@pytest.mark.parametrize(("entry_id", "regime", "dtype"), CASES, ids=case_ids(CASES))
def test_value(entry_id: str, regime: str, dtype: str) -> None:
    """Per-sample values of the function and of the class (reduction='none')."""
    entry = ENTRIES[entry_id]
    arrays = arrays_of(entry_id, regime, dtype)
    exact = exact_values(entry_id, regime, dtype)
    what = f"{entry_id}/{regime}/{dtype}"
    kw = {"max_ulp": entry.max_ulp, "inputs": printed(arrays), "scale": scales(entry_id, regime, dtype)[0]}
    value = function(entry)(arrays["y_true"], arrays["y_pred"], **extras(arrays), **entry.options)
    value = check_dtype(value, dtype, f"{what} value")
    R.assert_ulp(value, exact, dtype, what=f"{what} value", **kw)
    value2 = instance(entry)(arrays["y_true"], arrays["y_pred"], **extras(arrays))
    value2 = check_dtype(value2, dtype, f"{what} class value")
    R.assert_ulp(value2, exact, dtype, what=f"{what} class value", **kw)


@pytest.mark.parametrize(("entry_id", "regime", "dtype"), CASES, ids=case_ids(CASES))
def test_gradient(entry_id: str, regime: str, dtype: str) -> None:
    """Per-sample gradients (reduction='none') via gradient() and value_and_gradient()."""
    entry = ENTRIES[entry_id]
    arrays = arrays_of(entry_id, regime, dtype)
    exact_v = exact_values(entry_id, regime, dtype)
    exact_g = exact_gradients(entry_id, regime, dtype)
    what = f"{entry_id}/{regime}/{dtype}"
    kw = {"max_ulp": entry.max_ulp, "inputs": printed(arrays)}
    value_scale, grad_scale = scales(entry_id, regime, dtype)
    obj = instance(entry)
    g = check_dtype(obj.gradient(arrays["y_true"], arrays["y_pred"], **extras(arrays)), dtype,
                    f"{what} gradient")
    assert g.shape == arrays["y_pred"].shape, f"{what}: gradient shape {g.shape}"
    R.assert_ulp(g, exact_g, dtype, what=f"{what} gradient", scale=grad_scale, **kw)
    v2, g2 = obj.value_and_gradient(arrays["y_true"], arrays["y_pred"], **extras(arrays))
    v2 = check_dtype(v2, dtype, f"{what} value_and_gradient value")
    g2 = check_dtype(g2, dtype, f"{what} value_and_gradient gradient")
    R.assert_ulp(v2, exact_v, dtype, what=f"{what} v&g value", scale=value_scale, **kw)
    R.assert_ulp(g2, exact_g, dtype, what=f"{what} v&g gradient", scale=grad_scale, **kw)


REDUCTIONS = ["sum", "sum_over_batch_size", "batchmean"]
REDUCED_CASES = [(e.id, BACKEND_REGIME, dt) for e in ENTRIES.values() for dt in DTYPES]


@pytest.mark.parametrize(("entry_id", "regime", "dtype"), REDUCED_CASES, ids=case_ids(REDUCED_CASES))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_reduced(reduction: str, entry_id: str, regime: str, dtype: str) -> None:
    """Reduced value and gradient against the sum (or mean) of the exact rows ('generic' regime).

    The value is held to ``max_ulp`` ulps of the sum of the magnitudes of the rows (the sum's
    condition: per-sample values of both signs may cancel), the gradient elementwise.
    """
    entry = ENTRIES[entry_id]
    arrays = arrays_of(entry_id, regime, dtype)
    exact_v = exact_values(entry_id, regime, dtype)
    exact_g = exact_gradients(entry_id, regime, dtype)
    obj = type(losskit.get(entry.loss))(reduction=reduction, **entry.options)
    masked = obj.definition.mask is not None and any(
        obj.options.get(name) is not None for name in ("ignore_class", "ignore_index"))
    if reduction == "sum_over_batch_size" and masked:
        pytest.skip("the mean over the samples that count: checked by the family's own tests")
    rows = len(exact_v)
    div = 1 if reduction == "sum" else rows
    with mpmath.mp.workdps(40):
        value = mpmath.fsum(exact_v) / div
        magnitude = mpmath.fsum(abs(v) for v in exact_v) / div
        grads = [[g / div for g in row] for row in exact_g]
    _, grad_scale = scales(entry_id, regime, dtype)
    if grad_scale is not None:
        grad_scale = np.vectorize(lambda s: None if s is None else s / div, otypes=[object])(grad_scale)
    mixed = mpmath.isfinite(value) and magnitude != abs(value)
    what = f"{entry_id}/{regime}/{dtype} {reduction}"
    v, g = obj.value_and_gradient(arrays["y_true"], arrays["y_pred"], **extras(arrays))
    v = check_dtype(v, dtype, f"{what} value")
    R.assert_ulp(np.reshape(v, (1,)), [value], dtype, max_ulp=entry.max_ulp, what=f"{what} value",
                 scale=np.array([magnitude], dtype=object) if mixed else None)
    g = check_dtype(g, dtype, f"{what} gradient")
    R.assert_ulp(g, grads, dtype, max_ulp=entry.max_ulp, inputs=printed(arrays), scale=grad_scale,
                 what=f"{what} gradient")


@pytest.mark.parametrize(("entry_id", "regime", "dtype"), BACKEND_CASES, ids=case_ids(BACKEND_CASES))
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_backend(backend: str, entry_id: str, regime: str, dtype: str) -> None:
    """The same contract on PyTorch tensors and JAX arrays (the entry's ``backend_regimes``)."""
    entry = ENTRIES[entry_id]
    arrays = arrays_of(entry_id, regime, dtype)
    exact_v = exact_values(entry_id, regime, dtype)
    exact_g = exact_gradients(entry_id, regime, dtype)
    what = f"{backend} {entry_id}/{regime}/{dtype}"
    kw = {"max_ulp": entry.max_ulp, "inputs": printed(arrays)}
    with backend_arrays(backend, dtype) as (to_b, to_np):
        conv = {k: to_b(v) for k, v in arrays.items()}
        t, p, more = conv["y_true"], conv["y_pred"], extras(conv)
        value = to_np(function(entry)(t, p, **more, **entry.options))
        g = to_np(instance(entry).gradient(t, p, **more))
    value_scale, grad_scale = scales(entry_id, regime, dtype)
    value = check_dtype(value, dtype, f"{what} value")
    R.assert_ulp(value, exact_v, dtype, what=f"{what} value", scale=value_scale, **kw)
    g = check_dtype(g, dtype, f"{what} gradient")
    R.assert_ulp(g, exact_g, dtype, what=f"{what} gradient", scale=grad_scale, **kw)


EXAMPLES = int(os.environ.get("LOSSKIT_ORACLE_EXAMPLES", "25"))
"""Hypothesis examples per loss and dtype, shared among the loss's entries with ``random_rows``."""
SHARE = {e.id: max(1, EXAMPLES // sum(f.loss == e.loss and f.random_rows is not None
                                       for f in ENTRIES.values()))
         for e in ENTRIES.values() if e.random_rows is not None}


@pytest.mark.parametrize(("entry_id", "dtype"), RANDOM_CASES, ids=["/".join(c) for c in RANDOM_CASES])
def test_random_rows(entry_id: str, dtype: str) -> None:
    """Hypothesis-drawn rows (deterministic): values of the function, gradients of the class."""
    entry = ENTRIES[entry_id]
    assert entry.random_rows is not None
    draw = entry.random_rows

    @settings(max_examples=SHARE[entry_id], deadline=None, derandomize=True, database=None)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        arrays = draw(data, DTYPES[dtype])
        exact_v, exact_g = entry.exact(arrays)
        value_scale, grad_scale = (None if fn is None else fn(arrays, dict(entry.options))
                                   for fn in (entry.value_scale, entry.grad_scale))
        what = f"{entry_id}/random/{dtype}"
        kw = {"max_ulp": entry.max_ulp, "inputs": printed(arrays)}
        value = function(entry)(arrays["y_true"], arrays["y_pred"], **extras(arrays), **entry.options)
        value = check_dtype(value, dtype, f"{what} value")
        R.assert_ulp(value, exact_v, dtype, what=f"{what} value", scale=value_scale, **kw)
        g = instance(entry).gradient(arrays["y_true"], arrays["y_pred"], **extras(arrays))
        g = check_dtype(g, dtype, f"{what} gradient")
        R.assert_ulp(g, exact_g, dtype, what=f"{what} gradient", scale=grad_scale, **kw)

    check()


# --------------------------------------------------------------------------- the peers


@pytest.mark.parametrize(("entry_id", "peer", "regime"), PEER_CASES, ids=case_ids(PEER_CASES))
def test_peer(entry_id: str, peer: str, regime: str) -> None:
    """Peer parity on float64 inputs: values, and gradients where the peer has autograd."""
    entry = ENTRIES[entry_id]
    module = PEER_MODULES.get(peer, peer)
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"peer {peer} is not installed (no module {module!r})")
    arrays = arrays_copy(entry_id, regime, "float64")
    try:
        result = entry.peers[peer](arrays_copy(entry_id, regime, "float64"), dict(entry.options))
    except ModuleNotFoundError as exc:
        pytest.skip(f"peer {peer} needs a missing module: {exc}")
    if result is None:
        pytest.skip(f"{peer} lacks {entry_id}")
    peer_v, peer_g = result
    obj = instance(entry)
    value, grad = obj.value_and_gradient(arrays["y_true"], arrays["y_pred"], **extras(arrays))
    what = f"{entry_id}/{regime}: {peer} ({entry.peer_names.get(peer, '?')})"
    np.testing.assert_allclose(np.asarray(peer_v), np.asarray(value), rtol=entry.peer_rtol,
                               err_msg=f"{what} values")
    if peer_g is not None:
        np.testing.assert_allclose(np.asarray(peer_g), np.asarray(grad), rtol=entry.peer_rtol,
                                   err_msg=f"{what} gradients")
