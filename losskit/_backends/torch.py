"""Fast kernels for PyTorch tensors.

On the CPU, float32 tensors (and float64 ones, for the losses with float64 kernels) run the fused C
kernels of :mod:`losskit._backends.numpy` on zero-copy NumPy views (``Tensor.numpy()`` shares
memory), so a losskit loss costs one read of the inputs and one write of the gradient, as PyTorch's
own fused losses do. Other devices, and calls traced by
``torch.compile``, take the generic kernels.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from . import Kernel
from . import numpy as np_backend


def _on_numpy(kernel: Kernel) -> Kernel:
    def run(xp: Any, y_true: torch.Tensor, y_pred: torch.Tensor, *, grad: bool,
            scale: Any = None, **opts: Any) -> tuple[torch.Tensor, Any]:
        s = None if scale is None else scale.detach().to(torch.float64).numpy()
        value, g = kernel(None, y_true.detach().numpy(), y_pred.detach().numpy(), grad=grad, scale=s,
                          **opts)
        return torch.from_numpy(value), None if g is None else torch.from_numpy(g)

    run.takes_scale = True  # type: ignore[attr-defined]
    run.recheck_nonfinite = getattr(kernel, "recheck_nonfinite", False)  # type: ignore[attr-defined]
    return run


_WRAPPED: dict[int, Kernel] = {}
_GENERIC = threading.local()


@contextlib.contextmanager
def generic_kernels() -> Iterator[None]:
    """Within this block (this thread) every call takes the generic kernels: for gradients that
    autograd must record, and tensors whose memory cannot be viewed (``torch.func`` transforms)."""
    before = getattr(_GENERIC, "on", False)
    _GENERIC.on = True
    try:
        yield
    finally:
        _GENERIC.on = before


def fast_kernel(name: str, opts: Mapping[str, Any], dtype_name: str, device: Any = None
                ) -> Kernel | None:
    """The fused C kernel on CPU float32 (or float64) tensors outside ``torch.compile``, or None."""
    if device is None or getattr(device, "type", None) != "cpu" or torch.compiler.is_compiling() \
            or getattr(_GENERIC, "on", False):
        return None
    kernel = np_backend.fast_kernel(name, opts, dtype_name)
    if kernel is None:
        return None
    key = id(kernel)
    if key not in _WRAPPED:
        _WRAPPED[key] = _on_numpy(kernel)
    return _WRAPPED[key]
