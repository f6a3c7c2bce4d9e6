"""What differs per array library: one module per library (``numpy.py``, ``torch.py``, ``jax.py``).

A backend module offers *fast kernels*: a loss's kernel (the same signature and meaning as
:attr:`losskit.losses._core.LossDef.kernel`) that evaluates in the input's own precision, for the
option sets and dtypes it supports. The generic kernels evaluate float32 in float64 and are the
reference; a fast kernel must keep the same 8-ulp contract (the oracle suite checks both) and says
why in its comment.

Each backend module defines ``fast_kernel(name, opts, dtype_name, device) -> Kernel | None``: the
kernel of the loss called ``name`` with the normalised options ``opts`` for inputs of dtype
``dtype_name`` (``"float32"``, ...) on ``device`` (the array's device), or None when it does not
cover that case (the generic kernel then runs). A fast kernel is called with arrays in the input
dtype, the reduced axis last, and never gets the ``widened`` argument. A kernel with the attribute
``takes_scale = True`` also accepts ``scale=``, the per-sample weight of the reduction (shape of the
values), and returns the gradient already multiplied by it (one write of the gradient instead of
two), 0 where the scale is 0. Calls that pass extra input arrays (``where``, ``var``) take the
generic kernel unless the fast kernel lists their names in its attribute ``inputs`` (it then gets
them as keyword arguments, in the input dtype and ``y_pred``'s layout). The fast kernel of a loss
with differentiable members (``LossDef.differentiable()``) is called with ``wrt=`` by the PyTorch
twins and autograd bridges and answers as the generic kernels do (the other members' gradients,
scaled like ``y_pred``'s when it takes ``scale``); ``takes_wrt = True`` says so, and only then does
``Loss.value_and_gradients`` use it (else the generic kernel). A backend whose arrays can be viewed
as NumPy arrays may also define ``host_kernel(generic, dtype_name, device) -> Kernel | None``: NumPy's generic
path (``generic``) wrapped for its arrays, used where it has no fast kernel (eager CPU tensors).

Adding an array library is adding one module here and its name to :data:`MODULES`.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

Kernel = Callable[..., tuple[Any, Any]]


@contextlib.contextmanager
def thread_flag(local: threading.local, name: str) -> Iterator[None]:
    """``local.<name>`` is True for this thread within the block (its previous value after)."""
    before = getattr(local, name, False)
    setattr(local, name, True)
    try:
        yield
    finally:
        setattr(local, name, before)

MODULES = {"numpy": "numpy", "torch": "torch", "jax": "jax"}
_loaded: dict[str, Any] = {}


def fast_kernel(backend: str, name: str, opts: Mapping[str, Any], dtype_name: str,
                device: Any = None, generic: Kernel | None = None) -> Kernel | None:
    """The fast kernel of a loss for this backend, options and dtype, or None (see the module doc).
    ``generic``: a NumPy kernel of the loss's generic path, which a backend whose arrays can be
    viewed as NumPy arrays (its ``host_kernel``) runs when it has no fast kernel."""
    module: Any = _loaded.get(backend)
    if module is None:
        if backend not in MODULES:
            return None
        try:
            module = importlib.import_module(f"{__name__}.{MODULES[backend]}")
        except ImportError:  # pragma: no cover - a backend module whose library is missing
            module = False
        _loaded[backend] = module
    if module is False:
        return None
    found: Kernel | None = module.fast_kernel(name, opts, dtype_name, device)
    if found is None and generic is not None and hasattr(module, "host_kernel"):
        found = module.host_kernel(generic, dtype_name, device)
    return found
