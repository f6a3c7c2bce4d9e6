"""The oracle contract: one :class:`Entry` per loss and option set, for every loss losskit has.

Every loss (the tutorial's seven in ``families/core.py``, the catalog's in the other family modules)
is described here by data, in one module per family under ``tests/oracle/families/``: its mpmath
terms (the independent oracle), the regimes of inputs it must be exact on, and the peers that have
it. One generic suite (``tests/test_catalog.py``), the accuracy benchmark
(``benchmarks/accuracy.py``) and the generated catalog page (``docs/catalog.md``) read
:data:`ENTRIES` and nothing else, so a loss joins all three by adding an ``Entry``. One input
convention: a regime is ``regime(rng, dtype) -> Arrays`` seeded by the entry, regime and dtype
(:meth:`Entry.inputs`); a Hypothesis search draws rows the same shape (``Entry.random_rows``).

The oracle of a loss is a *terms* function ``terms(t, p, opts) -> list[mpf]`` on one row (``t`` a list
of mpf, or an int for integer targets; ``p`` a list of mpf; ``opts`` the options plus any extra input
row, e.g. ``opts["var"]``, already converted exactly to mpf), combined by :class:`reference.Spec`
(``mean``: the row value is the mean of the terms, else their sum; ``separable``: term ``j`` depends on
``p_j`` only). Non-separable losses may return a single term. Write it from the mathematical
definition at high precision, never from the library's code. Gradients come from numerical
differentiation of the terms at raised precision (``reference.row_grad``).
"""

from __future__ import annotations

import importlib
import pkgutil
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import reference as R

Arrays = dict[str, np.ndarray]
"""``{"y_true": ..., "y_pred": ..., <extra input name>: ...}``; first axis = rows."""
Regime = Callable[[np.random.Generator, Any], Arrays]
"""``regime(rng, dtype) -> Arrays``: a few rows (<= 16) of valid inputs, already cast to ``dtype``
(integer labels stay integers)."""
PeerFn = Callable[[Arrays, Mapping[str, Any]], "tuple[np.ndarray, np.ndarray | None] | None"]
"""``peer(arrays, options) -> (per-sample values, d(sum of values)/d y_pred)`` as NumPy arrays in
the input dtype, or None where the peer lacks this option set."""

Scale = Callable[[Arrays, Mapping[str, Any]], "np.ndarray | None"]
"""``scale(arrays, options) -> object array`` shaped like the per-sample values (``value_scale``) or
like ``y_pred`` (``grad_scale``), or None: for a documented exception where an element is the
difference of two nearly cancelling terms, the magnitude of the larger term there (an mpf, computed
from the definition), else None. Such an element is held to ``max_ulp`` ulps of that magnitude
instead of its own (``reference.assert_ulp(scale=...)``), as the core cross-entropies' soft targets
are in ``families/core.py``; say why in ``note``."""

RandomRows = Callable[[Any, Any], Arrays]
"""``random_rows(data, dtype) -> Arrays``: a few rows drawn with a Hypothesis ``st.data()`` object
(``data.draw(...)``), already in ``dtype``; the rows of ``tests/test_catalog.py::test_random_rows``."""

ROWS = 16


@dataclass(frozen=True)
class Entry:
    """One loss with one option set, as the oracle suite, the benchmark and the docs see it."""

    loss: str  # the losskit function name, e.g. "huber"
    spec: R.Spec  # the oracle: terms function and how they combine
    regimes: Mapping[str, Regime]  # the inputs it must be exact on; "generic" is required
    options: Mapping[str, Any] = field(default_factory=dict)
    peers: Mapping[str, PeerFn] = field(default_factory=dict)  # "keras", "torch", "optax", "sklearn"
    peer_names: Mapping[str, str] = field(default_factory=dict)  # peer -> its name, e.g. "torch.nn.HuberLoss"
    peer_regimes: tuple[str, ...] = ("generic",)  # where every peer is accurate enough for parity
    peer_rtol: float = 1e-6  # parity tolerance against the peers (float64 inputs)
    max_ulp: float = 8.0
    note: str = ""  # a documented exception, shown in docs/catalog.md
    value_scale: Scale | None = None  # a documented weaker bound where terms cancel (see Scale)
    grad_scale: Scale | None = None
    backend_regimes: tuple[str, ...] = ("generic",)  # run on PyTorch tensors and JAX arrays too
    random_rows: RandomRows | None = None  # a Hypothesis search over random rows (see RandomRows)
    max_rows: int = ROWS  # rows a regime may have (the oracle's cost grows with them)
    tag: str = ""  # tells apart two entries of one loss and option set (e.g. "where": an input)

    @property
    def id(self) -> str:
        opts = "-".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        parts = [self.loss] + ([opts] if opts else []) + ([self.tag] if self.tag else [])
        return "-".join(parts)

    def inputs(self, regime: str, dtype: Any) -> Arrays:
        """The regime's arrays, from a generator seeded by the entry, regime and dtype."""
        key = f"{self.id}/{regime}/{np.dtype(dtype).name}"
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        return self.regimes[regime](rng, dtype)

    @staticmethod
    def input_names(arrays: Arrays) -> frozenset[str]:
        """The names of a regime's extra input arrays (``var``, ``where``, ...)."""
        return frozenset(arrays) - {"y_true", "y_pred"}

    def rows(self, arrays: Arrays) -> list[tuple[Any, list[Any], dict[str, Any]]]:
        """``(t, p, opts)`` of every row as the oracle takes them: options plus the extra input rows."""
        out = []
        for row in range(len(arrays["y_pred"])):
            t = arrays["y_true"][row]
            t = int(t) if self.spec.integer_target else list(np.atleast_1d(t))
            p = list(np.reshape(arrays["y_pred"][row], -1))  # a (T, C) sample (CTC) row-major
            opts = dict(self.options)
            opts.update({k: list(np.atleast_1d(v[row])) for k, v in arrays.items()
                         if k not in ("y_true", "y_pred")})
            out.append((t, p, opts))
        return out

    def exact_values(self, arrays: Arrays) -> list[Any]:
        """Exact per-row values (mpf) for the arrays of a regime."""
        names = self.input_names(arrays)
        return [R.row_value(self.spec, t, p, opts, names) for t, p, opts in self.rows(arrays)]

    def exact_gradients(self, arrays: Arrays) -> list[list[Any]]:
        """Exact per-row gradients (mpf) with respect to ``y_pred`` (the expensive part)."""
        names = self.input_names(arrays)
        return [R.row_grad(self.spec, t, p, opts, names) for t, p, opts in self.rows(arrays)]

    def exact(self, arrays: Arrays) -> tuple[list[Any], list[list[Any]]]:
        """Exact per-row values and gradients (mpf) for the arrays of a regime."""
        return self.exact_values(arrays), self.exact_gradients(arrays)


def _collect() -> list[Entry]:
    from . import families

    entries: list[Entry] = []
    for info in sorted(pkgutil.iter_modules(families.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{families.__name__}.{info.name}")
        entries.extend(getattr(module, "ENTRIES", []))
    ids = [e.id for e in entries]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ValueError(f"catalog entries registered twice: {duplicated}")
    return entries


def __getattr__(name: str) -> Any:
    """``ENTRIES``: every family's entries, collected on first use (a family module imports this one,
    so collecting at import would miss a family imported first)."""
    if name == "ENTRIES":
        globals()["ENTRIES"] = entries = _collect()
        return entries
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
