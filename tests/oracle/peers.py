"""Adapters that turn a peer library's loss into a catalog ``PeerFn``: values and autodiff gradients.

``torch_peer(fn)`` and ``jax_peer(fn)`` wrap ``fn(y_pred, arrays, options) -> per-sample values`` written
in the peer's own array type (``y_pred`` is the peer's array that is differentiated; ``arrays`` holds the
other inputs already converted); the result is ``(values, d(sum of values)/d y_pred)`` as NumPy arrays.
``values_only(fn)`` wraps a NumPy function with no gradient (scikit-learn metrics).
Peers are imported lazily so that the catalog can be read without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

Arrays = dict[str, np.ndarray]
Result = tuple[np.ndarray, np.ndarray | None]


def torch_peer(fn: Callable[[Any, dict[str, Any], Mapping[str, Any]], Any]
               ) -> Callable[[Arrays, Mapping[str, Any]], Result]:
    def run(arrays: Arrays, options: Mapping[str, Any]) -> Result:
        import torch

        others = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()
                  if k != "y_pred"}
        p = torch.from_numpy(np.array(arrays["y_pred"])).requires_grad_(True)
        out = fn(p, others, options)
        out.sum().backward()
        grad = None if p.grad is None else p.grad.numpy()
        return out.detach().numpy(), grad

    return run


def jax_peer(fn: Callable[[Any, dict[str, Any], Mapping[str, Any]], Any]
             ) -> Callable[[Arrays, Mapping[str, Any]], Result]:
    """JAX-based peers (Optax, Keras on the JAX backend); x64 is switched on for float64 inputs."""

    def run(arrays: Arrays, options: Mapping[str, Any]) -> Result:
        import jax
        import jax.numpy as jnp

        dtype = np.dtype(arrays["y_pred"].dtype)
        previous = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", dtype == np.float64)
        try:
            if "keras" in fn.__module__ or getattr(fn, "uses_keras", False):
                import keras

                keras.config.set_floatx(dtype.name)
            others = {k: jnp.asarray(v) for k, v in arrays.items() if k != "y_pred"}
            p = jnp.asarray(arrays["y_pred"])
            values = np.asarray(fn(p, others, options))
            grads = np.asarray(jax.grad(lambda q: jnp.sum(fn(q, others, options)))(p))
        finally:
            jax.config.update("jax_enable_x64", previous)
        return values, grads

    return run


def keras_peer(fn: Callable[[Any, dict[str, Any], Mapping[str, Any]], Any]
               ) -> Callable[[Arrays, Mapping[str, Any]], Result]:
    """A Keras 3 loss on the JAX backend, with ``floatx`` set to the input dtype."""
    fn.uses_keras = True  # type: ignore[attr-defined]
    return jax_peer(fn)


def values_only(fn: Callable[[Arrays, Mapping[str, Any]], np.ndarray]
                ) -> Callable[[Arrays, Mapping[str, Any]], Result]:
    def run(arrays: Arrays, options: Mapping[str, Any]) -> Result:
        return np.asarray(fn(arrays, options)), None

    return run
