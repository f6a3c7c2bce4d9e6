"""fit, the hand-written loop, errors, callbacks, saving, progress output, reproducibility."""

from __future__ import annotations

import csv
import json
import math
import zipfile

import numpy as np
import pytest

import losskit
from losskit import nn


def _tutorial(seed=0):
    nn.set_random_seed(seed)
    model = nn.Sequential([nn.Dense(64, input_shape=(10,), activation="relu"),
                           nn.Dense(32, activation="relu"), nn.Dense(1)])
    model.compile(optimizer="adam", loss="mean_squared_error")
    return model


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 10)), rng.random((n, 1))


def test_hand_written_loop_equals_fit():
    x, y = _data()
    a, b = _tutorial(), _tutorial()
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    history = a.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    loss_fn, optimizer = losskit.get("mean_squared_error"), nn.Adam()
    losses = []
    for _ in range(2):
        total = 0.0
        for lo in range(0, len(x), 32):
            xb, yb = x[lo:lo + 32], y[lo:lo + 32].astype(np.float32)
            y_pred = b(xb)
            loss, g = loss_fn.value_and_gradient(yb, y_pred)
            grads = b.backward(g)
            optimizer.apply(grads, b.trainable_weights)
            total += float(loss) * len(xb)
        losses.append(total / len(x))
    assert history.history["loss"] == losses
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_seed_makes_init_and_shuffling_reproducible():
    x, y = _data()
    runs = []
    for _ in range(2):
        model = _tutorial(seed=7)
        runs.append((model.fit(x, y, epochs=2, verbose=0).history["loss"], model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for wa, wb in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(_tutorial(seed=8).get_weights()[0], runs[0][1][0])


def test_initializer_statistics_follow_keras_formulas():
    """Glorot uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out)); He normal: variance 2 / fan_in."""
    nn.set_random_seed(0)
    w = nn.initializers.get("glorot_uniform")((300, 500))
    limit = math.sqrt(6 / 800)
    assert w.dtype == np.float32
    assert np.abs(w).max() <= limit
    assert abs(w.var() - limit ** 2 / 3) < 0.02 * limit ** 2
    h = nn.initializers.get("he_normal")((400, 400))
    assert abs(h.var() - 2 / 400) < 0.03 * 2 / 400
    assert np.abs(h).max() <= 2 * math.sqrt(2 / 400) / 0.8796
    z = nn.initializers.get("lecun_uniform")((1000, 10))
    assert abs(z.var() - 1 / 1000) < 0.05 / 1000
    a = nn.initializers.GlorotNormal(seed=3)((4, 4))
    np.testing.assert_array_equal(a, nn.initializers.GlorotNormal(seed=3)((4, 4)))


def test_history_keys_validation_and_evaluate():
    x, y = _data()
    model = _tutorial()
    model.compile(optimizer="adam", loss="mse", metrics=["mae", "mse"])
    h = model.fit(x, y, epochs=3, batch_size=50, validation_split=0.25, verbose=0)
    assert list(h.history) == ["loss", "mae", "mse", "val_loss", "val_mae", "val_mse"]
    assert h.epoch == [0, 1, 2]
    assert all(len(v) == 3 for v in h.history.values())
    # MSE loss and the mse metric are the same quantity (unweighted)
    np.testing.assert_allclose(h.history["loss"], h.history["mse"], rtol=1e-5)
    loss, mae, mse = model.evaluate(x[150:], y[150:], verbose=0)
    pred = model.predict(x[150:], verbose=0).astype(np.float64)
    np.testing.assert_allclose(mae, np.mean(np.abs(pred - y[150:])), rtol=1e-5)
    np.testing.assert_allclose([loss, mse], np.mean((pred - y[150:]) ** 2), rtol=1e-5)
    assert model.evaluate(x, y, verbose=0, return_dict=True).keys() == {"loss", "mae", "mse"}


def test_accuracy_resolution_follows_keras():
    probs = np.array([[0.2, 0.8], [0.9, 0.1]])
    assert nn.metrics.get("accuracy", np.array([1, 1]), probs).fn is nn.metrics.sparse_categorical_accuracy
    assert nn.metrics.get("acc", np.array([[0.0, 1.0]]), probs).fn is nn.metrics.categorical_accuracy
    assert nn.metrics.get("accuracy", np.array([[1.0]]), np.array([[0.3]])).fn is nn.metrics.binary_accuracy


def test_train_on_batch_and_class_weight():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    y = (x[:, 0] > 0).astype(np.int64)
    nn.set_random_seed(0)
    model = nn.Sequential([nn.Dense(2, activation="softmax", input_shape=(4,))])
    model.compile(optimizer=nn.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    loss, acc = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert 0 <= acc <= 1
    # class_weight {0: 0, 1: 1} is sample_weight = y
    a = nn.Sequential([nn.Dense(2, activation="softmax", input_shape=(4,))])
    a.set_weights(model.get_weights())
    b = nn.Sequential([nn.Dense(2, activation="softmax", input_shape=(4,))])
    b.set_weights(model.get_weights())
    for m in (a, b):
        m.compile(optimizer=nn.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy")
    ha = a.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, class_weight={0: 0.0, 1: 1.0})
    hb = b.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, sample_weight=y.astype(float))
    assert ha.history == hb.history


# ----------------------------------------------------------------------------------------- errors


def test_clear_errors():
    model = _tutorial()
    x, y = _data(50)
    with pytest.raises(ValueError, match=r"same number of samples; found x with 50 and y with 49"):
        model.fit(x, y[:49], verbose=0)
    with pytest.raises(ValueError, match=r"7 features where the first layer takes 10"):
        model.fit(x[:, :7], y, verbose=0)
    with pytest.raises(ValueError, match=r"unknown name 'adamm'; expected one of 'sgd', 'adam'"):
        model.compile(optimizer="adamm", loss="mse")
    with pytest.raises(ValueError, match=r"unknown loss 'mean_square_error'; did you mean"):
        model.compile(optimizer="adam", loss="mean_square_error")
    with pytest.raises(ValueError, match=r"activation: unknown name 'rellu'; expected one of elu, gelu"):
        nn.Dense(3, activation="rellu")
    with pytest.raises(TypeError, match="batch_size must be a positive integer"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        nn.Sequential([nn.Dense(1, input_shape=(2,))]).fit(np.zeros((2, 2)), np.zeros(2), verbose=0)
    clf = nn.Sequential([nn.Dense(3, activation="softmax", input_shape=(10,))])
    clf.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\].*3 outputs.*first: y\[4\] = 3"):
        clf.fit(x, np.array([0, 1, 2, 0, 3] * 10), verbose=0)


def test_nan_loss_shows_in_history_or_stops_with_terminate_on_nan(capsys):
    x, y = _data(128)
    x[70, 3] = np.nan  # batch 3 of 4 (batch size 32)
    h = _tutorial().fit(x, y, epochs=2, shuffle=False, verbose=0)
    assert all(math.isnan(v) for v in h.history["loss"])
    model = _tutorial()
    h = model.fit(x, y, epochs=2, shuffle=False, verbose=0, callbacks=[nn.TerminateOnNaN()])
    assert len(h.history["loss"]) == 1
    assert math.isnan(h.history["loss"][0])
    assert "Epoch 1, batch 3: invalid loss nan, terminating training" in capsys.readouterr().out


# -------------------------------------------------------------------------------------- callbacks


def test_early_stopping_restores_best_weights():
    x, y = _data()
    model = _tutorial()
    seen = []

    class Spy(nn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((logs["val_loss"], model.get_weights()))

    stop = nn.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True, min_delta=1.0)
    h = model.fit(x, y, epochs=10, validation_split=0.2, verbose=0, callbacks=[Spy(), stop])
    # min_delta=1 means no epoch after the first improves: stop after epoch 2, weights of epoch 1
    assert len(h.history["loss"]) == 2
    assert stop.stopped_epoch == 1
    for w, best in zip(model.get_weights(), seen[0][1], strict=True):
        np.testing.assert_array_equal(w, best)


def test_learning_rate_scheduler_csv_logger_and_checkpoint(tmp_path):
    x, y = _data()
    model = _tutorial()
    csv_path, ckpt = tmp_path / "log.csv", tmp_path / "w-{epoch:02d}.weights.npz"
    h = model.fit(x, y, epochs=3, verbose=0, callbacks=[
        nn.LearningRateScheduler(lambda epoch, lr: 0.01 / (epoch + 1)),
        nn.CSVLogger(str(csv_path)),
        nn.ModelCheckpoint(str(ckpt), save_weights_only=True, monitor="loss"),
    ])
    assert h.history["learning_rate"] == [0.01, 0.005, 0.01 / 3]
    with open(csv_path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "learning_rate", "loss"]
    assert len(rows) == 4
    assert float(rows[3][2]) == pytest.approx(h.history["loss"][2])
    other = _tutorial(seed=5)
    other.load_weights(str(tmp_path / "w-03.weights.npz"))
    for a, b in zip(other.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------- saving


def test_save_and_load_model_without_pickle(tmp_path):
    x, y = _data()
    nn.set_random_seed(0)
    model = nn.Sequential([nn.Input(shape=(10,)),
                           nn.Dense(8, activation="gelu", kernel_initializer="he_normal"),
                           nn.Dropout(0.1), nn.Dense(1, activation="sigmoid")])
    model.compile(optimizer=nn.RMSprop(learning_rate=0.01, momentum=0.5), loss="binary_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, (y > 0.5).astype(float), epochs=1, verbose=0)
    path = tmp_path / "model.npz"
    model.save(str(path))
    with zipfile.ZipFile(path) as z:  # an npz: arrays and a JSON string, no pickles
        assert not any(n.endswith(".pkl") for n in z.namelist())
    with np.load(path, allow_pickle=False) as data:
        config = json.loads(str(data["config.json"]))
    assert [layer["class_name"] for layer in config["config"]["layers"]] == \
        ["InputLayer", "Dense", "Dropout", "Dense"]
    again = nn.load_model(str(path))
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert isinstance(again.optimizer, nn.RMSprop)
    assert again.optimizer.momentum == 0.5
    assert again.loss == losskit.get("binary_crossentropy")
    assert again.evaluate(x, (y > 0.5).astype(float), verbose=0) == \
        model.evaluate(x, (y > 0.5).astype(float), verbose=0)


def test_load_model_rejects_foreign_files(tmp_path):
    path = tmp_path / "w.npz"
    _tutorial().save_weights(str(path))
    with pytest.raises(ValueError, match="no model config"):
        nn.load_model(str(path))
    bad = tmp_path / "bad.npz"
    with open(bad, "wb") as f:
        config = {"format": "losskit.nn/1", "class_name": "Sequential",
                  "config": {"layers": [{"class_name": "os.system"}]}}
        np.savez(f, **{"config.json": np.array(json.dumps(config))})
    with pytest.raises(ValueError, match=r"unknown layer class 'os\.system'"):
        nn.load_model(str(bad))
    obj = tmp_path / "obj.npz"
    with open(obj, "wb") as f:
        np.savez(f, weight_0000=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="holds Python objects"):
        _tutorial().load_weights(str(obj))


# ----------------------------------------------------------------------------------- progress, summary


def test_progress_output_verbose_1_and_2(capsys):
    x, y = _data(100)
    model = _tutorial()
    model.fit(x, y, epochs=2, batch_size=32, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2"
    assert out[2] == "Epoch 2/2"
    assert out[1].startswith("4/4 ━━━━━━━━━━━━━━━━━━━━ 0s ")
    assert "/step - loss: " in out[1]
    model.fit(x, y, epochs=2, batch_size=32, verbose=2, validation_split=0.2)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4
    assert out[1].startswith("3/3 - 0s - ")
    assert " - val_loss: " in out[1]
    model.fit(x, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_summary_counts_parameters(capsys):
    _tutorial().summary()
    out = capsys.readouterr().out
    assert "(None, 64)" in out
    assert "704" in out
    assert "2,080" in out
    assert "Total params: 2,817" in out
