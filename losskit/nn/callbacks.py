"""Callbacks with Keras's names, arguments and hook order.

``fit`` calls ``on_train_begin``, then per epoch ``on_epoch_begin``, ``on_train_batch_begin`` /
``on_train_batch_end`` around each step, ``on_epoch_end`` (logs include validation values), and
finally ``on_train_end``. A callback stops training by setting ``self.model.stop_training = True``.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

Logs = dict[str, float]


class Callback:
    """Base class; every hook does nothing."""

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None: ...
    def on_train_end(self, logs: Logs | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...


class History(Callback):
    """Records each epoch's logs: ``history.history["loss"][i]`` is epoch i's mean training loss.

    >>> h = History(); h.on_train_begin(); h.on_epoch_end(0, {"loss": 0.5}); h.history, h.epoch
    ({'loss': [0.5]}, [0])
    """

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _monitored(owner: str, monitor: str, logs: Logs | None) -> float | None:
    """``logs[monitor]``, or None with a warning naming the available keys (as Keras warns: a typo
    such as ``"val_los"`` would otherwise silently never stop or save)."""
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{owner} is conditioned on metric {monitor!r}, which is not available. Available "
                      f"metrics are: {', '.join(logs or {})}", UserWarning, stacklevel=3)
    return value


def _monitor_op(monitor: str, mode: str) -> Callable[[float, float], bool]:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; found {mode!r}")
    if mode == "auto":
        mode = "max" if monitor.endswith(("acc", "accuracy", "auc")) else "min"
    return (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` the model gets the weights of its best epoch back when it stops.

    >>> import numpy as np
    >>> from losskit.nn import Sequential, Dense
    >>> model = Sequential([Dense(1, input_shape=(2,))]); model.compile("sgd", "mse")
    >>> stop = EarlyStopping(monitor="loss", min_delta=10.0)   # no epoch improves by 10
    >>> history = model.fit(np.ones((4, 2)), np.ones(4), epochs=5, verbose=0, callbacks=[stop])
    >>> len(history.history["loss"]), stop.stopped_epoch
    (2, 1)
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.min_delta, self.baseline = abs(float(min_delta)), baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, int(start_from_epoch)
        self.better = _monitor_op(monitor, mode)
        self.sign = 1.0 if self.better(1.0, 0.0) else -1.0  # +1 when larger is better

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best: float | None = None
        self.best_weights: list[np.ndarray] | None = None

    def _improved(self, current: float, reference: float | None) -> bool:
        return reference is None or self.better(current - self.sign * self.min_delta, reference)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if epoch < self.start_from_epoch:
            return
        current = _monitored("EarlyStopping", self.monitor, logs)
        if current is None:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
            if self.restore_best_weights:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")


class ModelCheckpoint(Callback):
    """Save the model (``model.save``) or its weights (``save_weights``) after each epoch, or only
    when ``monitor`` improves (``save_best_only``). ``filepath`` may hold ``{epoch:02d}`` and log
    keys such as ``{val_loss:.2f}``."""

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False, mode: str = "auto",
                 save_freq: str = "epoch", initial_value_threshold: float | None = None) -> None:
        super().__init__()
        if save_freq != "epoch":
            raise ValueError(f"ModelCheckpoint: save_freq must be 'epoch'; found {save_freq!r}")
        from .saving import _check_suffix

        self.filepath = _check_suffix("ModelCheckpoint", filepath)
        self.monitor, self.verbose = monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.better = _monitor_op(monitor, mode)
        self.best = initial_value_threshold

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Create the directory of ``filepath`` if missing (as Keras does), or say why it cannot be."""
        folder = os.path.dirname(self.filepath)
        if folder and "{" not in folder:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as error:
                raise ValueError(f"ModelCheckpoint: cannot create the directory {folder!r} of "
                                 f"filepath={self.filepath!r}: {error.strerror or error}") from None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"ModelCheckpoint: cannot fill in filepath={self.filepath!r} ({error!r}); "
                             f"it may use {{epoch}} and the log keys {', '.join(logs)}") from None
        if self.save_best_only:
            current = _monitored("ModelCheckpoint", self.monitor, logs)
            if current is None or (self.best is not None and not self.better(current, self.best)):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best} to {current}, "
                      f"saving model to {path}")
            self.best = current
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite, naming the epoch and the batch.

    >>> import numpy as np
    >>> from losskit.nn import Sequential, Dense
    >>> model = Sequential([Dense(1, input_shape=(1,))]); model.compile("sgd", "mse")
    >>> x = np.array([[1.0], [np.nan], [2.0]])
    >>> h = model.fit(x, np.ones(3), batch_size=1, epochs=3, shuffle=False, verbose=0,
    ...               callbacks=[TerminateOnNaN()])
    Epoch 1, batch 2: invalid loss nan, terminating training
    >>> h.epoch
    [0]
    """

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Epoch {getattr(self, 'epoch', 0) + 1}, batch {batch + 1}: invalid loss {loss}, "
                  "terminating training")
            self.model.stop_training = True


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)`` (epoch from 0);
    the rate in use is logged as ``learning_rate``.

    >>> import numpy as np
    >>> from losskit.nn import Sequential, Dense
    >>> model = Sequential([Dense(1, input_shape=(1,))]); model.compile("sgd", "mse")
    >>> halve = LearningRateScheduler(lambda epoch, lr: lr / 2)
    >>> history = model.fit(np.ones((2, 1)), np.ones(2), epochs=2, verbose=0, callbacks=[halve])
    >>> history.history["learning_rate"]       # SGD starts at 0.01
    [0.005, 0.0025]
    """

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0) -> None:
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        lr = self.schedule(epoch, float(self.model.optimizer.learning_rate))
        if isinstance(lr, bool) or not isinstance(lr, int | float | np.integer | np.floating):
            raise TypeError(f"LearningRateScheduler: the schedule must return a number; it returned {lr!r} "
                            f"at epoch {epoch}")
        lr = float(lr)
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"LearningRateScheduler: the schedule returned {lr} at epoch {epoch}; a "
                             "learning rate must be a finite number >= 0")
        self.model.optimizer.learning_rate = lr
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` then the log keys in sorted order."""

    def __init__(self, filename: str, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        self.filename, self.separator, self.append = str(filename), separator, append

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.header_done = self.append and os.path.isfile(self.filename) and \
            os.path.getsize(self.filename) > 0
        try:
            self.file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115
        except OSError as error:
            raise ValueError(f"CSVLogger: cannot write filename={self.filename!r}: "
                             f"{error.strerror or error}") from None
        self.writer = csv.writer(self.file, delimiter=self.separator)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        keys = sorted(logs or {})
        if not self.header_done:
            self.writer.writerow(["epoch", *keys])
            self.header_done = True
        self.writer.writerow([epoch, *((logs or {})[k] for k in keys)])
        self.file.flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        self.file.close()
