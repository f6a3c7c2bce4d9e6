"""``Sequential``: a stack of layers with Keras's ``compile`` / ``fit`` / ``evaluate`` / ``predict``.

One training step is four public calls, and ``fit`` makes exactly these (with ``sw`` the batch's
sample weights or None)::

    y_pred = model(x, training=True)                          # forward, layer by layer
    loss, g = model.loss.value_and_gradient(y, y_pred, sw)    # losskit's analytic dL/dy_pred
    grads = model.backward(g)                                 # backward, layer by layer
    model.optimizer.apply(grads, model.trainable_weights)     # update in place

All weights live in one float32 buffer (each layer's kernel and bias are views of it) and all
gradients in another, so the optimizer updates every weight with a handful of NumPy calls.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

import losskit

from . import _threads, optimizers, progress, utils
from . import callbacks as callbacks_module
from . import layers as layers_module
from . import metrics as metrics_module
from ._data import as_numbers
from .custom import CustomLoss

Array = np.ndarray


def _verbosity(verbose: Any) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2; found {verbose!r}")
    return int(verbose)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise TypeError(f"{name} must be a positive integer; found {value!r}")
    return int(value)


def _count(name: str, value: Any) -> int:
    """An integer >= 0 (``epochs``, ``initial_epoch``): no bool, float or string."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer >= 0; found {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{name} must be an integer >= 0; found {value}")
    return int(value)


def _class_weights(class_weight: Any) -> dict[int, float] | None:
    """``class_weight`` checked: a dict from integer class to a finite weight >= 0."""
    if class_weight is None:
        return None
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{class index: weight}}; found "
                        f"{type(class_weight).__name__}")
    out: dict[int, float] = {}
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise TypeError(f"class_weight keys must be integer class indices; found {k!r}")
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise TypeError(f"class_weight[{k}] must be a number; found {v!r}")
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"class_weight[{k}] must be a finite number >= 0; found {v}")
        out[int(k)] = float(v)
    return out


def _is_batch_source(x: Any) -> bool:
    """Whether ``x`` is a generator, iterator or other iterable of batches (not an array-like)."""
    if x is None or isinstance(x, np.ndarray | list | tuple | str | bytes | dict) or hasattr(x, "__array__"):
        return False
    return isinstance(x, Iterable | Iterator)


class _Batches:
    """The batches of a generator or iterable, epoch by epoch, as Keras's ``fit`` takes them.

    Without ``steps_per_epoch`` an epoch is one full pass (a re-iterable object is iterated afresh each
    epoch; a one-shot generator has nothing left after the first). With it, each epoch takes that many
    batches, continuing where the previous epoch stopped and starting a new pass of a re-iterable when
    one ends."""

    def __init__(self, source: Any, steps: int | None) -> None:
        self.source, self.steps = source, steps
        self.one_shot = iter(source) is source
        self.it: Iterator[Any] | None = None
        self.known_steps: int | None = steps

    def epoch(self) -> Iterator[Any]:
        if self.steps is None:
            it = self.source if self.one_shot else iter(self.source)
            count = 0
            for item in it:
                count += 1
                yield item
            if count:
                self.known_steps = count
            return
        count = fresh = 0
        while count < self.steps:
            if self.it is None:
                self.it = iter(self.source)
                fresh += 1
            try:
                item = next(self.it)
            except StopIteration:
                self.it = None
                if self.one_shot or (fresh > 1 and count == 0):
                    return
                continue
            count += 1
            yield item


def _split_batch(item: Any) -> tuple[Any, Any, Any]:
    if not isinstance(item, tuple | list) or len(item) not in (2, 3):
        raise ValueError("fit: each batch a generator or iterable yields must be a tuple (x, y) or "
                         f"(x, y, sample_weight); found {type(item).__name__}"
                         + (f" of length {len(item)}" if isinstance(item, tuple | list) else ""))
    return item[0], item[1], item[2] if len(item) == 3 else None


class Sequential:
    """A linear stack of layers, trained with losskit's analytic gradients.

    >>> import numpy as np
    >>> from losskit.nn import Sequential, Dense, set_random_seed
    >>> set_random_seed(0)
    >>> model = Sequential([Dense(8, input_shape=(3,), activation="relu"), Dense(1)])
    >>> model.compile(optimizer="adam", loss="mse")
    >>> x = np.random.default_rng(0).random((64, 3)); y = x.sum(axis=1, keepdims=True)
    >>> history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    >>> len(history.history["loss"]), model.predict(x[:2], verbose=0).shape
    (3, (2, 1))
    """

    def __init__(self, layers: Sequence[layers_module.Layer] | None = None, name: str | None = None) -> None:
        self.name = name or layers_module._unique_name("sequential")
        self.layers: list[layers_module.Layer] = []
        self.built = False
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: losskit.Loss | None = None
        self.metrics_names: list[str] = []
        self._metric_ids: list[Any] = []
        self._metrics: list[metrics_module.Mean] | None = None
        self.stop_training = False
        self.history: callbacks_module.History | None = None
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------------------- structure
    def add(self, layer: layers_module.Layer) -> None:
        """Append a layer (builds the model once the input shape is known)."""
        if not isinstance(layer, layers_module.Layer):
            raise TypeError(f"Sequential.add: expected a layer; found {type(layer).__name__}")
        self.layers.append(layer)
        self.built = False
        if self.layers[0].input_shape is not None:
            self.build()

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self.layers[0].input_shape if self.layers else None

    def build(self, input_shape: tuple[int, ...] | None = None) -> None:
        """Build every layer for samples of ``input_shape`` and gather the weights into one buffer."""
        shape = input_shape or self.input_shape
        if shape is None:
            raise ValueError("build: the input shape is unknown; give the first layer input_shape=...")
        if self.layers[0].input_shape is None:
            self.layers[0].input_shape = tuple(shape)
        self._shapes = []
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
            shape = layer.output_shape_for(shape)
            self._shapes.append(shape)
        weights = [w for layer in self.layers for w in layer.weights]
        self._params = np.empty(sum(w.size for w in weights), np.float32)
        self._grad_buffer = np.zeros_like(self._params)
        offset = 0
        for layer in self.layers:           # every weight becomes a view of the flat buffers
            for n in layer.weight_names:
                w = getattr(layer, n, None)
                if w is None:
                    continue
                view = self._params[offset:offset + w.size].reshape(w.shape)
                view[...] = w
                setattr(layer, n, view)
                setattr(layer, "grad_" + n, self._grad_buffer[offset:offset + w.size].reshape(w.shape))
                offset += w.size
        self.trainable_weights = [w for layer in self.layers if layer.trainable for w in layer.weights]
        self._grads = [g for layer in self.layers if layer.trainable for g in layer.grads]
        self._first = next((i for i, layer in enumerate(self.layers) if layer.weights), len(self.layers))
        self.built = True

    @property
    def weights(self) -> list[Array]:
        """Every weight array, layer by layer (kernel then bias), as live views."""
        return [w for layer in self.layers for w in layer.weights]

    def get_weights(self) -> list[Array]:
        """Copies of every weight, in Keras's layout and order (kernel ``(in, out)``, then bias)."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set every weight from a list in :meth:`get_weights` order (Keras's ``get_weights()`` fits)."""
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"set_weights: the model has {len(own)} weight arrays; found {len(weights)}")
        new = [as_numbers(f"set_weights: weight {i}", v) for i, v in enumerate(weights)]
        for i, (w, v) in enumerate(zip(own, new, strict=True)):
            if v.shape != w.shape:
                raise ValueError(f"set_weights: weight {i} must have shape {w.shape}; found {v.shape}")
        for w, v in zip(own, new, strict=True):  # nothing is written unless every weight fits
            w[...] = v

    def count_params(self) -> int:
        return sum(w.size for w in self.weights)

    def summary(self, print_fn: Any = print) -> None:
        """Print the layers, their output shapes and parameter counts, as Keras's ``summary``."""
        rows = [(f"{layer.name} ({type(layer).__name__})",
                 str((None, *self._shapes[i])) if self.built else "?", f"{layer.count_params():,}")
                for i, layer in enumerate(self.layers) if not isinstance(layer, layers_module.InputLayer)]
        widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h)
                  for j, h in enumerate(("Layer (type)", "Output Shape", "Param #"))]
        rule = "─" * (sum(widths) + 6)
        lines = [f'Model: "{self.name}"', rule,
                 f"{'Layer (type)':<{widths[0]}}   {'Output Shape':<{widths[1]}}   {'Param #':>{widths[2]}}",
                 "═" * (sum(widths) + 6)]
        lines += [f"{a:<{widths[0]}}   {b:<{widths[1]}}   {c:>{widths[2]}}" for a, b, c in rows]
        total = self.count_params() if self.built else 0
        trainable = sum(w.size for w in self.trainable_weights) if self.built else 0
        lines += [rule, f" Total params: {total:,} ({total * 4 / 1024:.2f} KB)",
                  f" Trainable params: {trainable:,}", f" Non-trainable params: {total - trainable:,}"]
        for line in lines:
            print_fn(line)

    # ------------------------------------------------------------------------ forward, backward
    def __call__(self, x: Any, training: bool = False) -> Array:
        """The forward pass: ``y_pred = model(x)``, float32, shape ``(batch, *output_shape)``.

        Each layer keeps what its backward needs, so :meth:`backward` may follow.
        """
        x = self._check_x(x)
        with self._blas(len(x)):
            return self._forward(x, training)

    def _blas(self, batch: int) -> contextlib.AbstractContextManager[None]:
        """The BLAS thread limit for steps on ``batch`` samples (see :mod:`losskit.nn._threads`)."""
        macs = 0
        shape = self.input_shape or ()
        for layer, out in zip(self.layers, getattr(self, "_shapes", []), strict=False):
            kernel = getattr(layer, "kernel", None)
            if isinstance(kernel, np.ndarray) and kernel.ndim == 2:
                macs = max(macs, batch * math.prod(shape[:-1]) * kernel.size)
            shape = out
        return _threads.blas_threads(_threads.threads_for(macs))

    def _forward(self, x: Array, training: bool) -> Array:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, g: Any) -> list[Array]:
        """Backpropagate ``g = dL/dy_pred`` of the last forward pass; return ``dL/dw`` for each of
        :attr:`trainable_weights`, in the same order. The arrays are reused by the next call."""
        g = as_numbers("g", g, np.float32)
        with self._blas(len(g) if g.ndim else 1):
            return self._backward(g)

    def _backward(self, g: Array) -> list[Array]:
        grad: Array | None = g
        for i in range(len(self.layers) - 1, self._first - 1, -1):
            grad = self.layers[i].backward(grad, need_input_grad=i > self._first)  # type: ignore[arg-type]
        return self._grads

    def _check_x(self, x: Any) -> Array:
        if x is None:
            raise ValueError("x is required: the input samples, an array of shape (batch, *input_shape)")
        if _is_batch_source(x):
            raise TypeError(f"x is a {type(x).__name__}; only fit takes a generator or iterable of batches, "
                            "evaluate and predict take arrays (e.g. np.concatenate the batches)")
        x = as_numbers("x", x, np.float32)
        if x.ndim == 0:
            raise ValueError(f"x must have a batch axis; found a scalar {x!r}")
        if not self.built:
            self.build(tuple(x.shape[1:]))
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"x has samples of shape {x.shape[1:]} (x.shape = {x.shape}), but the model "
                             f"expects {self.input_shape}"
                             + (f": {x.shape[-1]} features where the first layer takes "
                                f"{self.input_shape[-1]}" if len(x.shape) == 2 and self.input_shape
                                and len(self.input_shape) == 1 else ""))
        return x

    # ------------------------------------------------------------------------------- training
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None,
                metrics: Sequence[Any] | None = None) -> None:
        """Choose the optimizer (name or instance), the loss and the metrics (names such as ``"mae"``,
        ``"mse"``, ``"accuracy"``, or functions; an unknown name fails here, not in ``fit``).

        The loss is anything :func:`losskit.get` accepts (a name, class, instance, config dict or
        losskit function), or your own Python function ``fn(y_true, y_pred)`` returning one value per
        sample: see :mod:`losskit.nn.custom` for how its gradient is taken (finite differences, or
        exactly when ``fn`` returns ``(values, gradient)``).
        """
        if loss is None:
            raise ValueError("compile: loss is required, e.g. loss='mean_squared_error'")
        self.optimizer = optimizers.get(optimizer)
        try:
            self.loss = losskit.get(loss)
        except ValueError as error:
            if not isinstance(loss, str):
                raise
            raise ValueError(f"compile: {error}") from None
        except TypeError:
            if not callable(loss) or isinstance(loss, type):
                raise
            self.loss = CustomLoss(loss)  # type: ignore[assignment]
        if metrics is not None and (isinstance(metrics, str) or not isinstance(metrics, Sequence)):
            raise TypeError(f"compile: metrics must be a list, e.g. ['mae']; found {metrics!r}")
        for m in metrics or []:
            metrics_module.check(m)
        self._metric_ids = list(metrics or [])
        self._metrics = None
        self.metrics_names = ["loss"]

    def _require_compiled(self, what: str) -> tuple[optimizers.Optimizer, losskit.Loss]:
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"{what}: call model.compile(optimizer=..., loss=...) first")
        return self.optimizer, self.loss

    def _resolve_metrics(self, x: Array, y: Array) -> list[metrics_module.Mean]:
        """The compiled metrics, resolved (``"accuracy"`` -> which accuracy) on the first use."""
        if self._metrics is None:
            y_pred = self._forward(x[:1], False)
            self._metrics = [metrics_module.get(m, y[:1], y_pred) for m in self._metric_ids]
            self.metrics_names = ["loss", *(m.name for m in self._metrics)]
        return self._metrics

    def _prepare(self, x: Any, y: Any, sample_weight: Any = None,
                 class_weight: dict[int, float] | None = None) -> tuple[Array, Array, Array | None]:
        _, loss = self._require_compiled("fit")
        x = self._check_x(x)
        if y is None:
            raise ValueError("y is required: the targets, one per sample of x")
        y = as_numbers("y", y)
        if y.ndim == 0 or len(y) != len(x):
            raise ValueError(f"x and y must have the same number of samples; found x with {len(x)} and "
                             f"y with {len(y) if y.ndim else 'no axis (a scalar)'}")
        sparse = getattr(loss, "definition", None) is not None and loss.definition.sparse
        if sparse:
            self._check_labels(y)
        elif y.dtype != np.float32:
            y = y.astype(np.float32)
        if sample_weight is not None:
            sample_weight = as_numbers("sample_weight", sample_weight, np.float32)
            if sample_weight.ndim == 0 or len(sample_weight) != len(x):
                raise ValueError(f"sample_weight must have one weight per sample ({len(x)}); found shape "
                                 f"{sample_weight.shape}")
        class_weight = _class_weights(class_weight)
        if class_weight is not None:
            if sample_weight is not None:
                raise ValueError("fit: pass class_weight or sample_weight, not both (as Keras)")
            labels = y.reshape(len(y), -1)
            labels = labels[:, 0] if labels.shape[1] == 1 else labels.argmax(axis=1)
            labels = np.rint(labels).astype(np.int64)
            missing = sorted(set(np.unique(labels).tolist()) - set(class_weight))
            if missing:
                raise ValueError(f"class_weight has no weight for class(es) {missing}; it has keys "
                                 f"{sorted(class_weight)}")
            table = np.zeros(int(labels.max()) + 1, np.float32)
            for k, v in class_weight.items():
                if 0 <= k < len(table):
                    table[k] = v
            sample_weight = table[labels]
        return x, y, sample_weight

    def _check_labels(self, y: Array) -> None:
        name = self.loss.name if self.loss is not None else "the loss"
        classes = self._shapes[-1][-1]
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
            raise TypeError(f"y must hold integer class labels for {name}; found dtype {y.dtype}")
        if np.issubdtype(y.dtype, np.floating) and not np.all(y == np.floor(y)):
            raise ValueError(f"y must hold integer class labels for {name}; found non-integers")
        ignore = self.loss.options.get("ignore_class") if self.loss is not None else None
        bad = ((y < 0) | (y >= classes)) & (y != ignore)
        if bad.any():
            first = np.argwhere(bad)[0]
            raise ValueError(f"y holds class labels outside [0, {classes - 1}] for {name} on a "
                             f"model with {classes} outputs: {int(bad.sum())} label(s), from "
                             f"{y[bad].min()} to {y[bad].max()} (first: y[{', '.join(map(str, first))}] = "
                             f"{y[tuple(first)]})")

    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None,
                       class_weight: dict[int, float] | None = None, return_dict: bool = False) -> Any:
        """One step on one batch; returns that batch's loss (and metrics, as a list or dict)."""
        x, y, sw = self._prepare(x, y, sample_weight, class_weight)
        metrics = self._resolve_metrics(x, y)
        for m in metrics:
            m.reset()
        with self._blas(len(x)):
            loss = self._train_step(x, y, sw, metrics)
        return self._result({"loss": loss, **{m.name: m.result() for m in metrics}}, return_dict)

    def test_on_batch(self, x: Any, y: Any, sample_weight: Any = None, return_dict: bool = False) -> Any:
        """Loss (and metrics) on one batch, without training: a float, a list or a dict (as Keras)."""
        x, y, sw = self._prepare(x, y, sample_weight)
        with self._blas(len(x)):
            logs = self._evaluate(x, y, sw, batch_size=max(len(x), 1))
        return self._result(logs, return_dict)

    def _train_step(self, x: Array, y: Array, sw: Array | None, metrics: list[metrics_module.Mean]) -> float:
        y_pred = self._forward(x, True)  # = self(x, training=True), x already checked
        loss, g = self.loss.value_and_gradient(y, y_pred, sw)  # type: ignore[union-attr]
        g = np.asarray(g, dtype=np.float32)
        self.optimizer.apply(self._backward(g), self.trainable_weights)  # type: ignore[union-attr]
        for m in metrics:
            m.update(y, y_pred, None)  # Keras weights only its weighted_metrics
        return float(loss)

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: Sequence[callbacks_module.Callback] | None = None,
            validation_split: float = 0.0, validation_data: Any = None, shuffle: bool = True,
            class_weight: dict[int, float] | None = None, sample_weight: Any = None,
            initial_epoch: int = 0, steps_per_epoch: int | None = None) -> callbacks_module.History:
        """Train for ``epochs`` passes over ``(x, y)`` in batches; returns a :class:`History`.

        ``history.history`` has ``loss`` (each epoch's mean of the batch losses, weighted by batch
        size, as Keras), each metric, and ``val_...`` for each when there is validation data
        (``validation_data=(x_val, y_val[, sample_weight_val])`` or the last ``validation_split`` of
        ``x`` and ``y``, taken before shuffling). ``shuffle`` reorders the samples every epoch.

        ``x`` may also be a generator or any iterable yielding ``(x, y)`` or ``(x, y, sample_weight)``
        batches (``y``, ``batch_size``, ``sample_weight`` and ``validation_split`` are then not given,
        as in Keras). ``steps_per_epoch`` makes each epoch that many batches: on arrays the batches
        continue where the previous epoch stopped and wrap around (reshuffled) at the end of the data;
        a generator that runs out stops training with a warning, as Keras does.
        """
        verbose = _verbosity(verbose)
        epochs = _count("epochs", epochs)
        initial_epoch = _count("initial_epoch", initial_epoch)
        if steps_per_epoch is not None:
            steps_per_epoch = _positive_int("steps_per_epoch", steps_per_epoch)
        if isinstance(validation_split, bool) or not isinstance(validation_split, int | float) or \
                not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split must be a number in [0, 1); found {validation_split!r}")
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, callbacks_module.Callback):
                raise TypeError(f"callbacks must be Callback instances; found {type(cb).__name__}")
        class_weight = _class_weights(class_weight)
        self._require_compiled("fit")
        source: _Batches | None = None
        size = 32 if batch_size is None else batch_size
        if _is_batch_source(x):
            given = [n for n, v in (("y", y), ("sample_weight", sample_weight), ("batch_size", batch_size))
                     if v is not None] + (["validation_split"] if validation_split else [])
            if given:
                raise ValueError(f"fit: x is a generator or iterable of batches, so {', '.join(given)} "
                                 "cannot be given (each batch is (x, y) or (x, y, sample_weight))")
            source = _Batches(x, steps_per_epoch)
        else:
            size = _positive_int("batch_size", size)
            x, y, sw = self._prepare(x, y, sample_weight, class_weight)
            if validation_data is None and validation_split > 0:
                split = math.floor(len(x) * (1.0 - validation_split))
                validation_data = (x[split:], y[split:]) + ((sw[split:],) if sw is not None else ())
                x, y, sw = x[:split], y[:split], (sw[:split] if sw is not None else None)
            if len(x) == 0:
                raise ValueError("fit: x has no samples")
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                                 "sample_weight_val)")
            val = self._prepare(*validation_data)
        history = callbacks_module.History()
        cbs: list[callbacks_module.Callback] = [*callbacks, history]
        if source is None:
            stream = self._array_batches(len(x), size, shuffle)
            steps: int | None = steps_per_epoch or math.ceil(len(x) / size)
        else:
            steps = source.known_steps
        for cb in cbs:
            cb.set_model(self)
            cb.set_params({"epochs": epochs, "steps": steps, "verbose": verbose})
        self.stop_training = False
        self.history = history
        batch_hooks = [cb for cb in cbs if _overrides(cb, "on_train_batch_begin", "on_train_batch_end")]
        with contextlib.ExitStack() as limit:
            blas_batch = 0
            for cb in cbs:
                cb.on_train_begin()
            for epoch in range(initial_epoch, epochs):
                for cb in cbs:
                    cb.on_epoch_begin(epoch)
                if verbose and epochs > 1:
                    print(f"Epoch {epoch + 1}/{epochs}", flush=True)
                if source is not None:
                    steps = source.known_steps
                    batches: Iterator[Any] = source.epoch()
                else:
                    batches = (next(stream) for _ in range(steps))  # type: ignore[arg-type]
                bar = progress.Progbar(steps, verbose)
                live = bar.dynamic or bool(batch_hooks)  # whether anyone looks at per-batch logs
                total = seen = 0.0
                logs: dict[str, float] = {}
                step = -1
                for step, batch in enumerate(batches):
                    if source is None:
                        xb, yb, swb = x[batch], y[batch], None if sw is None else sw[batch]
                    else:
                        xb, yb, swb = self._prepare(*_split_batch(batch), class_weight)
                    if step == 0:
                        metrics = self._resolve_metrics(xb, yb)
                        for m in metrics:
                            m.reset()
                    if len(xb) > blas_batch:  # the limit suits the largest batch seen
                        blas_batch = len(xb)
                        limit.close()
                        limit.enter_context(self._blas(blas_batch))
                    for cb in batch_hooks:
                        cb.on_train_batch_begin(step, logs)
                    loss = self._train_step(xb, yb, swb, metrics)
                    total += loss * len(xb)
                    seen += len(xb)
                    last = steps is not None and step == steps - 1
                    if live or step == 0 or last or self.stop_training:
                        logs = {"loss": total / seen, **{m.name: m.result() for m in metrics}}
                        bar.update(step + 1, logs)
                        for cb in batch_hooks:
                            cb.on_train_batch_end(step, logs)
                    if self.stop_training:
                        break
                if step < 0 or (steps_per_epoch is not None and step + 1 < steps_per_epoch
                                and not self.stop_training):
                    if step < 0 and epoch == initial_epoch:
                        raise ValueError("fit: x yielded no batches")
                    warnings.warn("fit: your input ran out of data; interrupting training. Make sure that "
                                  "your generator or iterable can give at least steps_per_epoch * epochs "
                                  "batches", UserWarning, stacklevel=2)
                    self.stop_training = True
                    if step < 0:
                        break
                if seen:
                    logs = {"loss": total / seen, **{m.name: m.result() for m in metrics}}
                if validation_data is not None:
                    val_logs = self._evaluate(*val, batch_size=size)
                    logs.update({"val_" + k: v for k, v in val_logs.items()})
                bar.update(step + 1, logs, finalize=True)
                for cb in cbs:
                    cb.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
            for cb in cbs:
                cb.on_train_end()
        return history

    @staticmethod
    def _array_batches(n: int, batch_size: int, shuffle: bool) -> Iterator[Any]:
        """Endless batch indices over ``n`` samples: pass after pass, each reshuffled when ``shuffle``."""
        rng = utils.rng()
        while True:
            order = rng.permutation(n) if shuffle else None
            for lo in range(0, n, batch_size):
                hi = min(lo + batch_size, n)
                yield slice(lo, hi) if order is None else order[lo:hi]

    # ------------------------------------------------------------------------------ inference
    def _evaluate(self, x: Array, y: Array, sw: Array | None, batch_size: int,
                  bar: progress.Progbar | None = None) -> dict[str, float]:
        loss_fn = self.loss
        metrics = [metrics_module.get(m, y[:1], self._forward(x[:1], False)) for m in self._metric_ids]
        total = seen = 0.0
        for step, lo in enumerate(range(0, len(x), batch_size)):
            hi = min(lo + batch_size, len(x))
            y_pred = self._forward(x[lo:hi], False)
            swb = None if sw is None else sw[lo:hi]
            total += float(loss_fn(y[lo:hi], y_pred, swb)) * (hi - lo)  # type: ignore[misc]
            seen += hi - lo
            for m in metrics:
                m.update(y[lo:hi], y_pred, None)
            if bar is not None:
                bar.update(step + 1, {"loss": total / seen, **{m.name: m.result() for m in metrics}})
        return {"loss": total / max(seen, 1), **{m.name: m.result() for m in metrics}}

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = 32, verbose: Any = "auto",
                 sample_weight: Any = None, return_dict: bool = False) -> Any:
        """Loss (and metrics) on ``(x, y)``: a float, a list ``[loss, *metrics]`` or a dict."""
        verbose = _verbosity(verbose)
        batch_size = _positive_int("batch_size", 32 if batch_size is None else batch_size)
        x, y, sw = self._prepare(x, y, sample_weight)
        bar = progress.Progbar(math.ceil(len(x) / batch_size), verbose)
        with self._blas(min(batch_size, len(x))):
            logs = self._evaluate(x, y, sw, batch_size, bar)
        bar.update(bar.target, logs, finalize=True)  # type: ignore[arg-type]
        return self._result(logs, return_dict)

    @staticmethod
    def _result(logs: dict[str, float], return_dict: bool) -> Any:
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    def predict(self, x: Any, batch_size: int | None = 32, verbose: Any = "auto") -> Array:
        """The model's outputs for ``x``, computed in batches, float32."""
        verbose = _verbosity(verbose)
        batch_size = _positive_int("batch_size", 32 if batch_size is None else batch_size)
        x = self._check_x(x)
        out = np.empty((len(x), *self._shapes[-1]), np.float32)
        steps = math.ceil(len(x) / batch_size)
        bar = progress.Progbar(steps, verbose)
        with self._blas(min(batch_size, len(x))):
            for step, lo in enumerate(range(0, len(x), batch_size)):
                out[lo:lo + batch_size] = self._forward(x[lo:lo + batch_size], False)
                bar.update(step + 1, {})
        bar.update(steps, {}, finalize=True)
        return out

    def predict_on_batch(self, x: Any) -> Array:
        return self(x)

    # ------------------------------------------------------------------------------ saving
    def get_config(self) -> dict[str, Any]:
        return {"name": self.name,
                "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                           for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        from .saving import layer_from_config

        return cls([layer_from_config(c) for c in config["layers"]], name=config.get("name"))

    def save_weights(self, filepath: str) -> None:
        """Write the weights to an ``.npz`` file (see :func:`losskit.nn.saving.save_weights`)."""
        from .saving import save_weights

        save_weights(self, filepath)

    def load_weights(self, filepath: str) -> None:
        """Read weights written by :meth:`save_weights` (never unpickles)."""
        from .saving import load_weights

        load_weights(self, filepath)

    def save(self, filepath: str) -> None:
        """Write config, compile settings and weights to one file for :func:`losskit.nn.load_model`."""
        from .saving import save_model

        save_model(self, filepath)


def _overrides(cb: callbacks_module.Callback, *names: str) -> bool:
    return any(getattr(type(cb), n) is not getattr(callbacks_module.Callback, n) for n in names)


