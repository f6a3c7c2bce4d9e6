"""losskit: loss functions exact to the last bits, with analytic gradients.

The per-sample functions carry Keras's names and semantics; each has a class that reduces, weights
and differentiates (``loss.gradient``, ``loss.value_and_gradient``). NumPy, PyTorch and JAX arrays go in
and the same kind comes out.

>>> import numpy as np, losskit
>>> loss = losskit.BinaryCrossentropy(from_logits=True)
>>> value, grad = loss.value_and_gradient(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]]))
>>> round(float(value), 6), grad.tolist()   # log 2; (sigmoid(0) - t) / 2 per element
(0.693147, [[-0.25, 0.25]])
"""

from typing import TYPE_CHECKING, Any

from . import losses
from ._backends.numpy import available as cpu_kernels
from ._backends.numpy import get_num_threads, set_num_threads
from .linear import linear_cross_entropy, linear_cross_entropy_value_and_gradient
from .losses import *  # noqa: F403  (every loss, class and function alias: see losses/__init__.py)
from .losses._core import REDUCTIONS, Loss
from .losses._registry import deserialize, get, names, serialize

if TYPE_CHECKING:  # the loss names come from losses.__all__, derived at import from the declarations
    def __getattr__(name: str) -> Any: ...

__version__ = "0.2.0"  # kept equal to pyproject.toml by tests/test_registry.py

__all__ = [
    "REDUCTIONS", "Loss", "cpu_kernels", "deserialize", "get", "get_num_threads", "names", "serialize",
    "set_num_threads",
]
__all__ += ["linear_cross_entropy", "linear_cross_entropy_value_and_gradient"]
__all__ += losses.__all__
