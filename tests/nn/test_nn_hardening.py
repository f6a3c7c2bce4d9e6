"""Issue 8 (BLAS threads) and issue 9 (bad data, arguments, callbacks, model files, new-user API) for
losskit.nn. Expected values come from formulas written here, never from the code under test."""

from __future__ import annotations

import json
import math
import os
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

import losskit
from losskit import nn


def _model(seed=0, outputs=2, loss="mse", metrics=None):
    nn.set_random_seed(seed)
    model = nn.Sequential([nn.Dense(4, input_shape=(3,), activation="tanh"), nn.Dense(outputs)])
    model.compile(optimizer="sgd", loss=loss, metrics=metrics)
    return model


def _data(n=20, outputs=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)), rng.random((n, outputs))


# ------------------------------------------------------------------------------------ issue 8: BLAS


def _pool():
    return [lib.num_threads for lib in ThreadpoolController().select(user_api="blas").lib_controllers]


class _PoolSize(nn.Callback):
    def on_train_batch_end(self, batch, logs=None):
        self.sizes = _pool()


def test_fit_runs_small_products_on_one_blas_thread_and_restores_the_pool():
    controller = ThreadpoolController()
    if not controller.select(user_api="blas").lib_controllers:
        pytest.skip("no BLAS library visible to threadpoolctl")
    model, (x, y), seen = _model(), _data(), _PoolSize()
    with controller.limit(limits=2, user_api="blas"):  # a pool of 2, as NumPy's default on 2 cores
        before = _pool()
        model.fit(x, y, epochs=1, verbose=0, callbacks=[seen])
        assert seen.sizes == [1] * len(before)          # 32 x 3 x 4 multiply-adds: one thread
        assert _pool() == before                        # restored


def test_hand_written_step_runs_small_products_on_one_blas_thread(monkeypatch):
    if not ThreadpoolController().select(user_api="blas").lib_controllers:
        pytest.skip("no BLAS library visible to threadpoolctl")
    model, (x, y) = _model(), _data()
    seen = []
    for layer in model.layers:
        for method in ("forward", "backward"):
            inner = getattr(layer, method)
            def spy(*args, _inner=inner, **kwargs):
                seen.append(_pool())
                return _inner(*args, **kwargs)

            monkeypatch.setattr(layer, method, spy)
    with ThreadpoolController().limit(limits=2, user_api="blas"):
        y_pred = model(x, training=True)
        model.backward(2 * (y_pred - y) / y.size)
    assert len(seen) == 4
    assert all(sizes == [1] * len(sizes) for sizes in seen)


def test_set_weights_writes_nothing_unless_every_weight_fits():
    model = _model()
    before = model.get_weights()
    bad = [np.zeros_like(w) for w in before]
    bad[-1] = np.zeros(5)
    with pytest.raises(ValueError, match=r"weight 3 must have shape \(2,\)"):
        model.set_weights(bad)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_thread_count_grows_with_the_product_and_never_exceeds_the_pool():
    from losskit.nn import _threads

    assert _threads.threads_for(128 * 784 * 256) == 1
    assert _threads.threads_for(3 * _threads.MACS_PER_THREAD) == 3
    with ThreadpoolController().limit(limits=1, user_api="blas"), _threads.blas_threads(8):
        assert _pool() == [1] * len(_pool())


# ------------------------------------------------------------------------------- issue 9 item 13: data


@pytest.mark.parametrize(("field", "value", "match"), [
    ("x", np.ones((4, 3)) * (1 + 1j), "complex"),
    ("y", np.ones((4, 2)) * 1j, "complex"),
    ("x", np.array([[1.0, None, 2.0]] * 4, dtype=object), "Python objects.*None"),
    ("x", np.array([["1", "2", "3"]] * 4), "strings"),
    ("y", [["0.5", "1"]] * 4, "strings"),
    ("sample_weight", np.ones(4) * 1j, "complex"),
    ("x", np.ma.masked_array(np.ones((4, 3)), mask=np.eye(4, 3)), "masked"),
])
def test_fit_refuses_data_it_would_coerce(field, value, match):
    args = {"x": np.ones((4, 3)), "y": np.ones((4, 2)), "sample_weight": None, field: value}
    with pytest.raises(TypeError, match=f"{field}.*{match}|{match}.*{field}"):
        _model().fit(verbose=0, **args)


def test_set_weights_refuses_complex_weights():
    model = _model()
    weights = [w.astype(complex) for w in model.get_weights()]
    with pytest.raises(TypeError, match="complex"):
        model.set_weights(weights)


# ------------------------------------------------------------------------ issue 9 item 17: arguments


@pytest.mark.parametrize(("epochs", "error"), [(-3, ValueError), (2.7, TypeError), ("3", TypeError),
                                               (True, TypeError)])
def test_fit_refuses_bad_epochs(epochs, error):
    with pytest.raises(error, match="epochs"):
        _model().fit(*_data(), epochs=epochs, verbose=0)


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_fit_refuses_bad_class_weights(weight):
    x = np.ones((4, 3))
    model = _model(loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"class_weight\[1\]"):
        model.fit(x, np.array([0, 1, 0, 1]), class_weight={0: 1.0, 1: weight}, verbose=0)


def test_monitor_typo_warns_as_keras_does(tmp_path):
    x, y = _data()
    with pytest.warns(UserWarning, match=r"'val_los'.*not available.*loss"):
        _model().fit(x, y, epochs=2, verbose=0, callbacks=[nn.EarlyStopping(monitor="val_los")])
    with pytest.warns(UserWarning, match=r"'val_los'.*not available"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[
            nn.ModelCheckpoint(str(tmp_path / "m.npz"), monitor="val_los", save_best_only=True)])


@pytest.mark.parametrize(("rate", "error"), [(-0.1, ValueError), (float("nan"), ValueError),
                                             ("0.1", TypeError)])
def test_learning_rate_schedule_must_give_a_rate(rate, error):
    with pytest.raises(error, match="LearningRateScheduler"):
        _model().fit(*_data(), epochs=1, verbose=0,
                     callbacks=[nn.LearningRateScheduler(lambda epoch, lr: rate)])


# ---------------------------------------------------------------------- issue 9 item 21: file names


def test_callback_and_save_paths_that_cannot_be_written_get_clear_errors(tmp_path):
    x, y = _data()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"CSVLogger: cannot write filename=.*a_file/log\.csv"):
        _model().fit(x, y, verbose=0, callbacks=[nn.CSVLogger(str(blocker / "log.csv"))])
    with pytest.raises(ValueError, match=r"ModelCheckpoint: cannot create the directory"):
        _model().fit(x, y, verbose=0, callbacks=[nn.ModelCheckpoint(str(blocker / "sub" / "m.npz"))])
    with pytest.raises(ValueError, match=r"ModelCheckpoint: cannot fill in filepath.*val_loss"):
        _model().fit(x, y, verbose=0, callbacks=[nn.ModelCheckpoint(str(tmp_path / "m-{val_loss}.npz"))])
    with pytest.raises(ValueError, match="save: cannot write filepath"):
        _model().save(str(tmp_path))  # a directory
    # a missing directory is created, as Keras does
    _model().fit(x, y, verbose=0, callbacks=[nn.ModelCheckpoint(str(tmp_path / "new" / "m.npz"))])
    assert (tmp_path / "new" / "m.npz").exists()


# ----------------------------------------------------------------------- issue 9 item 16: model files


def _saved(tmp_path, name="m.npz"):
    path = tmp_path / name
    _model().save(str(path))
    return path


def _rewrite(path, config=None, arrays=None):
    with np.load(path, allow_pickle=False) as data:
        items = {k: data[k] for k in data.files}
    if config is not None:
        items["config.json"] = np.array(json.dumps(config))
    items.update(arrays or {})
    with open(path, "wb") as f:
        np.savez(f, **items)


def _config(path):
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["config.json"]))


def test_load_model_names_what_is_wrong_with_a_malformed_file(tmp_path):
    text = tmp_path / "text.npz"
    text.write_text("hello, not a model")
    with pytest.raises(ValueError, match=r"not a losskit.nn file.*starts with b'hell'"):
        nn.load_model(str(text))
    good = _saved(tmp_path)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(ValueError, match=r"not a readable \.npz archive"):
        nn.load_model(str(cut))
    cases = [
        ({"format": "losskit.nn/1", "class_name": "Sequential"}, "non-empty list 'layers'"),
        ({"format": "losskit.nn/1", "class_name": "Sequential", "config": {"layers": ["Dense"]}},
         "must be a dict"),
        ({"format": "losskit.nn/1", "class_name": "Sequential",
          "config": {"layers": [{"class_name": "Dense", "config": {"units": 2, "colour": "red"}}]}},
         "invalid Dense layer config"),
    ]
    for i, (config, match) in enumerate(cases):
        path = _saved(tmp_path, f"c{i}.npz")
        _rewrite(path, config)
        with pytest.raises(ValueError, match=match):
            nn.load_model(str(path))
    broken = _saved(tmp_path, "compile.npz")
    config = _config(broken)
    config["compile"] = {"optimizer": "sgd"}  # no loss
    _rewrite(broken, config)
    with pytest.raises(ValueError, match="invalid compile settings"):
        nn.load_model(str(broken))


def test_load_model_checks_declared_sizes_before_allocating(tmp_path):
    path = _saved(tmp_path)
    config = _config(path)
    config["config"]["layers"][0]["config"]["input_shape"] = [10_000]
    config["config"]["layers"][0]["config"]["units"] = 10_000    # 400 MB of float32 if it were built
    _rewrite(path, config)
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"weight 0 has shape \(3, 4\); the saved architecture gives "
                                         r"\(10000, 10000\)"):
        nn.load_model(str(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6
    config["config"]["layers"][0]["config"]["units"] = 10**7   # Dense(10**7): no MemoryError either
    _rewrite(path, config)
    with pytest.raises(ValueError, match="saved architecture gives"):
        nn.load_model(str(path))


def test_load_model_refuses_compressed_members_and_lying_headers(tmp_path):
    path = _saved(tmp_path)
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        header = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (5000000,), }"
        dst.writestr("weight_9999.npy", header.ljust(128 - 1, b" ") + b"\n" + bytes(2 * 10**7))
    assert os.path.getsize(bomb) < 10**6  # 20 MB declared in well under 1 MB
    with pytest.raises(ValueError, match="compressed"):
        nn.load_model(str(bomb))
    liar = tmp_path / "liar.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(liar, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, data[:-8] if info.filename == "weight_0000.npy" else data)
    with pytest.raises(ValueError, match=r"weight_0000.*declares shape \(3, 4\).*truncated"):
        nn.load_model(str(liar))


def test_load_model_refuses_a_complex_weight(tmp_path):
    path = _saved(tmp_path)
    with np.load(path, allow_pickle=False) as data:
        kernel = data["weight_0000"]
    _rewrite(path, arrays={"weight_0000": kernel + 1j})
    with pytest.raises(ValueError, match=r"weight 0 has dtype complex.*real part"):
        nn.load_model(str(path))


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "M.HDF5"])
def test_keras_file_names_are_refused_not_silently_written(tmp_path, name):
    with pytest.raises(ValueError, match=r"Keras suffix.*npz"):
        _model().save(str(tmp_path / name))
    with pytest.raises(ValueError, match="Keras suffix"):
        _model().save_weights(str(tmp_path / name))
    with pytest.raises(ValueError, match="Keras suffix"):
        nn.ModelCheckpoint(str(tmp_path / name))
    assert not (tmp_path / name).exists()


# ----------------------------------------------------------------------- issue 9: new-user API


def test_metric_typo_fails_at_compile():
    with pytest.raises(ValueError, match="unknown metric 'acuracy'; did you mean 'accuracy'"):
        _model(metrics=["acuracy"])


def test_keras_import_paths():
    from losskit.nn.layers import Dense, Dropout, Input
    from losskit.nn.models import Sequential, load_model

    assert Sequential is nn.Sequential
    assert load_model is nn.load_model
    assert (Dense, Dropout, Input) == (nn.Dense, nn.Dropout, nn.Input)


def test_layer_get_and_set_weights():
    model = _model()
    dense = model.layers[0]
    kernel, bias = np.arange(12.0).reshape(3, 4), np.array([1.0, -1.0, 0.5, 0.0])
    dense.set_weights([kernel, bias])
    x = np.array([[1.0, 0.0, 2.0]])
    np.testing.assert_allclose(model.layers[0](x), np.tanh(x @ kernel + bias), rtol=1e-6)
    assert model.get_weights()[0].tolist() == kernel.tolist()      # the model sees the layer's weights
    got = dense.get_weights()
    got[0][...] = 0                                                 # copies, as Keras
    assert dense.kernel.tolist() == kernel.tolist()
    with pytest.raises(ValueError, match=r"weight 0 of layer .* must have shape \(3, 4\); found \(4, 3\)"):
        dense.set_weights([kernel.T, bias])
    with pytest.raises(ValueError, match="has 2 weight arrays"):
        dense.set_weights([kernel])


def test_test_on_batch_is_the_loss_of_the_batch():
    model, (x, y) = _model(metrics=["mae"]), _data(8)
    y_pred = model.predict(x, verbose=0).astype(np.float64)
    mse, mae = np.mean((y_pred - y) ** 2), np.mean(np.abs(y_pred - y))
    loss, metric = model.test_on_batch(x, y)
    assert loss == pytest.approx(mse, rel=1e-6)
    assert metric == pytest.approx(mae, rel=1e-6)
    before = model.get_weights()
    model.test_on_batch(x, y, return_dict=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


class _Recorder:
    """A custom loss in the (values, gradient) form that records each training batch's y_true."""

    def __init__(self):
        self.batches = []

    def __call__(self, y_true, y_pred):
        self.batches.append(np.asarray(y_true)[:, 0].astype(int).tolist())
        return np.sum((y_pred - y_true) ** 2, axis=-1), 2 * (y_pred - y_true)


def test_steps_per_epoch_on_arrays_continues_and_wraps_as_keras():
    record = _Recorder()
    model = _model(outputs=1, loss=record)
    x, y = np.zeros((30, 3)), np.arange(30.0)[:, None]
    history = model.fit(x, y, batch_size=10, epochs=3, steps_per_epoch=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 3
    starts = [b[0] for b in record.batches]
    assert starts == [0, 10, 20, 0, 10, 20]


def test_generator_and_iterable_input_give_the_same_training_as_arrays():
    x, y = _data(40)

    def batches():
        for lo in range(0, 40, 10):
            yield x[lo:lo + 10], y[lo:lo + 10]

    class Batches:
        def __iter__(self):
            return batches()

    reference = _model().fit(x, y, batch_size=10, epochs=2, shuffle=False, verbose=0).history["loss"]
    assert _model().fit(Batches(), epochs=2, verbose=0).history["loss"] == reference
    with pytest.warns(UserWarning, match="ran out of data"):
        history = _model().fit(batches(), epochs=2, verbose=0)   # a one-shot generator
    assert history.history["loss"] == reference[:1]
    with pytest.raises(ValueError, match="y cannot be given"):
        _model().fit(batches(), y, verbose=0)
    with pytest.raises(TypeError, match="only fit takes a generator"):
        _model().evaluate(batches(), verbose=0)


def test_custom_loss_function_by_finite_differences():
    # mean squared error per sample: L_i = mean_k (p_ik - y_ik)^2, reduced as the mean over samples,
    # so dL/dp_ik = 2 (p_ik - y_ik) / (K * N)
    def squared(y_true, y_pred):
        return np.mean((y_pred - y_true) ** 2, axis=-1)

    rng = np.random.default_rng(1)
    y, p = rng.random((5, 3)), rng.normal(size=(5, 3)) * 100
    value, grad = nn.custom.CustomLoss(squared).value_and_gradient(y, p)
    assert value == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    exact = 2 * (p - y) / p.size
    np.testing.assert_allclose(grad, exact, rtol=0, atol=1e-8 * np.abs(exact).max())
    model = _model(loss=squared)
    assert isinstance(model.loss, nn.custom.CustomLoss)
    history = model.fit(*_data(), epochs=2, verbose=0)
    reference = _model(loss="mse").fit(*_data(), epochs=2, verbose=0)
    np.testing.assert_allclose(history.history["loss"], reference.history["loss"], rtol=1e-5)


def test_custom_loss_must_be_per_sample(tmp_path):
    model = _model(loss=lambda y_true, y_pred: np.mean((y_pred - y_true) ** 2))
    with pytest.raises(ValueError, match="one value per sample"):
        model.fit(*_data(), verbose=0)
    model = _model(loss=lambda y_true, y_pred: np.mean((y_pred - y_true) ** 2, axis=-1))
    model.save(str(tmp_path / "m.npz"))
    with pytest.warns(UserWarning, match="own loss function"):
        again = nn.load_model(str(tmp_path / "m.npz"))
    assert again.loss is None


def test_fit_accepts_exactly_the_steps_it_was_told():
    with pytest.raises(TypeError, match="steps_per_epoch"):
        _model().fit(*_data(), steps_per_epoch=0, verbose=0)
    assert math.isfinite(_model().fit(*_data(), epochs=0, verbose=0).history.get("loss", [0.0])[-1])


def test_no_warning_from_a_plain_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model().fit(*_data(), epochs=2, verbose=0, validation_split=0.25,
                     callbacks=[nn.EarlyStopping(patience=3)])


def test_loss_names_still_resolve():
    assert _model(loss="mean_squared_error").loss == losskit.get("mse")
