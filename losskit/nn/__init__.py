"""losskit.nn: a small Keras-compatible training engine on NumPy, with losskit's analytic gradients.

The Keras tutorial runs unchanged apart from its imports::

    from losskit.nn import Sequential, Dense
    model = Sequential([Dense(64, input_shape=(10,), activation="relu"),
                        Dense(32, activation="relu"), Dense(1)])
    model.compile(optimizer="adam", loss="mean_squared_error")
    model.fit(x_train, y_train, epochs=10, batch_size=32)

Every layer keeps its forward and backward side by side (``layers.py``), the loss gradient comes from
``losskit.get(loss).value_and_gradient``, and the update rules are Keras 3's (``optimizers.py``).
Only NumPy is needed.
"""

from . import activations, callbacks, initializers, layers, metrics, optimizers, utils
from .callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ModelCheckpoint,
    TerminateOnNaN,
)
from .layers import Activation, Dense, Dropout, Flatten, Input, InputLayer, Layer
from .model import Sequential
from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from .saving import load_model
from .utils import set_random_seed

__all__ = [
    "SGD",
    "Activation",
    "Adagrad",
    "Adam",
    "AdamW",
    "CSVLogger",
    "Callback",
    "Dense",
    "Dropout",
    "EarlyStopping",
    "Flatten",
    "History",
    "Input",
    "InputLayer",
    "Layer",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "Optimizer",
    "RMSprop",
    "Sequential",
    "TerminateOnNaN",
    "activations",
    "callbacks",
    "initializers",
    "layers",
    "load_model",
    "metrics",
    "optimizers",
    "set_random_seed",
    "utils",
]
