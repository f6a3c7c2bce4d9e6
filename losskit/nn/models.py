"""Keras's import path for models: ``from losskit.nn.models import Sequential, load_model``.

>>> from losskit.nn.models import Sequential
>>> from losskit.nn.layers import Dense
>>> Sequential([Dense(1, input_shape=(2,))]).count_params()
3
"""

from .model import Sequential
from .saving import load_model

__all__ = ["Sequential", "load_model"]
