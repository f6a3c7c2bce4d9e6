"""losskit.keras: Keras 3 losses computed by losskit, against Keras's own losses.

Expected values come from Keras (``keras.losses``) on the same inputs, from the losskit core classes
(whose reductions follow Keras's, tested in test_core.py), or from models trained with Keras's own loss.
The JAX backend runs in this process; the torch backend in one subprocess (``test_torch_backend``).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":  # keras was imported earlier with another backend
    pytest.skip("tests/test_keras_dropin.py runs on Keras's JAX backend", allow_module_level=True)
jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from conftest import make_inputs  # noqa: E402

import losskit  # noqa: E402
import losskit.keras as lk  # noqa: E402
from losskit.losses import _registry  # noqa: E402

RTOL = 2e-5  # float32: Keras's own rounding (and its 1e-7 clips, far below on these inputs)

# ----------------------------------------------------------------------------------- Keras twins

# The Keras classes compared value for value (same inputs, same options). A loss that another
# part of losskit adds later under a Keras name (Dice, CTC, ...) gets its losskit.keras class
# automatically; it joins this list once its inputs and Keras's conventions are checked to match.
TWINS = [
    "BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy", "CategoricalGeneralizedCrossEntropy", "CategoricalHinge",
    "CosineSimilarity", "Hinge", "Huber", "KLDivergence", "LogCosh", "MeanAbsoluteError",
    "MeanAbsolutePercentageError", "MeanSquaredError", "MeanSquaredLogarithmicError", "Poisson",
    "SparseCategoricalCrossentropy", "SquaredHinge",
]


def twin_option_sets(name: str) -> list[dict]:
    """Option sets that Keras's class also has (losskit-only options such as class_weight left out)."""
    keras_params = set(inspect.signature(getattr(keras.losses, name)).parameters)
    names = {o.name for o in lk.CLASSES[name].definition.options}
    sets: list[dict] = [{}]
    if "from_logits" in names:
        sets.append({"from_logits": True})
    if name == "CategoricalCrossentropy":
        sets.append({"label_smoothing": 0.1, "from_logits": True})
    if "ignore_class" in keras_params:
        sets.append({"ignore_class": 1, "from_logits": True})
    if "apply_class_balancing" in keras_params:
        sets.append({"apply_class_balancing": True, "alpha": 0.3, "gamma": 1.5})
    if "delta" in keras_params:
        sets.append({"delta": 0.5})
    return [s for s in sets if set(s) <= keras_params]


TWIN_CASES = [(name, opts) for name in TWINS for opts in twin_option_sets(name)]


def case_id(case) -> str:
    name, opts = case
    return name + "".join(f"-{k}={v}" for k, v in opts.items())


def inputs_for(name: str, opts: dict, seed: int = 0):
    defn = lk.CLASSES[name].definition
    rng = np.random.default_rng(seed)
    y_true, y_pred, _ = make_inputs(defn, opts, rng, shape=(8, 5), dtype=np.float32)
    if defn.name == "categorical_generalized_cross_entropy":  # Keras's takes probabilities only
        y_pred = y_pred / y_pred.sum(-1, keepdims=True)
    if defn.name == "mean_squared_logarithmic_error":  # Keras's clips negative values at 1e-7
        y_true, y_pred = np.abs(y_true), np.abs(y_pred)
    weight = rng.uniform(0.25, 2.0, size=8).astype(np.float32)
    return jnp.asarray(y_true), jnp.asarray(y_pred.astype(np.float32)), jnp.asarray(weight)


def test_every_keras_loss_that_losskit_has_is_here():
    keras_classes = {n for n in dir(keras.losses) if isinstance(getattr(keras.losses, n), type)
                     and issubclass(getattr(keras.losses, n), keras.losses.Loss)}
    ours = {d.class_name for d in _registry.definitions() if lk._usable(d)}
    assert keras_classes & ours <= set(lk.CLASSES)
    assert set(TWINS) <= keras_classes & set(lk.CLASSES)


def _all_values_and_gradients(make_loss, reduction):
    """Every twin case's loss value and gradient (d value / d y_pred), from one jitted function
    (eager JAX compiles every small operation separately: far slower than one compilation)."""
    cases = [inputs_for(name, opts) for name, opts in TWIN_CASES]
    losses = [make_loss(name, opts) for name, opts in TWIN_CASES]
    for loss in losses:
        loss.reduction = reduction

    def total(preds):
        values = [loss(t, p, sample_weight=w)
                  for loss, (t, _, w), p in zip(losses, cases, preds, strict=True)]
        return sum(jnp.sum(v) for v in values), values

    (_, values), grads = jax.jit(jax.value_and_grad(total, has_aux=True))([p for _, p, _ in cases])
    return values, grads


def test_values_and_gradients_match_keras():
    """Every Keras class that losskit has, with sample_weight, on ordinary inputs: the same values
    and gradients as Keras's own class (to float32 rounding). The default reduction: ``call``
    returns per-sample values and Keras's own ``__call__`` reduces them, for both."""
    reduction = "sum_over_batch_size"
    ours = _all_values_and_gradients(lambda name, opts: lk.CLASSES[name](**opts), reduction)
    theirs = _all_values_and_gradients(lambda name, opts: getattr(keras.losses, name)(**opts),
                                       reduction)
    for case, v, g, v_ref, g_ref in zip(TWIN_CASES, *ours, *theirs, strict=True):
        np.testing.assert_allclose(v, v_ref, rtol=RTOL, atol=1e-7, err_msg=case_id(case))
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5 * float(jnp.abs(g_ref).max()),
                                   err_msg=case_id(case))


def test_default_names_are_keras_names():
    for name in TWINS:
        assert lk.CLASSES[name]().name == getattr(keras.losses, name)().name


# ------------------------------------------------------------------------ every generated class

ALL = sorted(lk.CLASSES)


@pytest.mark.parametrize("name", ALL)
def test_generated_class_is_the_losskit_function_per_sample(name):
    """``call`` returns the losskit function's per-sample values (Keras reduces them: checked on
    the twins above and in the training tests)."""
    cls = lk.CLASSES[name]
    defn = cls.definition
    y_true, y_pred, _ = make_inputs(defn, {}, np.random.default_rng(1), shape=(6, 5))
    expected = getattr(losskit, defn.name)(y_true, y_pred)
    np.testing.assert_array_equal(cls().call(y_true, y_pred), expected)


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip(name):
    cls = lk.CLASSES[name]
    defn = cls.definition
    opts = {"from_logits": True} if any(o.name == "from_logits" for o in defn.options) else {}
    loss = cls(reduction="sum", name="mine", **opts)
    config = loss.get_config()
    assert config["reduction"] == "sum"
    assert config["name"] == "mine"
    again = cls.from_config(config)
    assert type(again) is cls
    assert again.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is cls
    assert restored.get_config() == config
    assert keras.saving.get_registered_object(f"losskit>{name}") is cls


def test_constructor_follows_keras_conventions():
    sig = inspect.signature(lk.CategoricalCrossentropy)
    assert list(sig.parameters)[-3:] == ["reduction", "name", "dtype"]
    assert sig.parameters["reduction"].default == "sum_over_batch_size"
    loss = lk.Huber(delta=2.0, dtype="float64")
    assert loss.dtype == "float64"
    assert loss.name == "huber_loss"
    assert loss.options == {"delta": 2.0}
    assert float(loss(np.zeros((1, 1)), np.full((1, 1), 3.0))) == 2.0 * (3.0 - 1.0)  # delta (|d| - delta/2)
    with pytest.raises(ValueError, match="label_smoothing must lie in"):
        lk.CategoricalCrossentropy(label_smoothing=2.0)
    with pytest.raises(TypeError, match="unknown option"):
        lk.MeanSquaredError(delta=1.0)
    with pytest.raises(ValueError, match="reduction"):
        lk.MeanSquaredError(reduction="average")


def test_found_by_name_in_a_keras_config():
    loss = keras.losses.get({"class_name": "losskit>Huber", "config": {"delta": 0.5}})
    assert isinstance(loss, lk.Huber)
    assert loss.options == {"delta": 0.5}


def test_found_by_string_in_compile():
    for name in ("losskit>Huber", "losskit>huber"):
        assert isinstance(keras.losses.get(name), lk.Huber)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer="sgd", loss="losskit>MeanSquaredError")
    x, y = np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([[1.0], [0.5]])
    model.layers[0].set_weights([np.zeros((2, 1))])
    # zero weights predict 0: the mean of y^2 = (1 + 0.25) / 2
    assert model.evaluate(x, y, verbose=0) == pytest.approx(0.625, rel=1e-6)
    with pytest.raises(ValueError, match="Could not interpret"):
        keras.losses.get("losskit>NoSuchLoss")


def test_eager_call_rejects_invalid_values():
    with pytest.raises(ValueError, match="from_logits=True"):
        lk.BinaryCrossentropy()(jnp.array([[1.0]]), jnp.array([[3.0]]))


def test_ignore_class_mean_is_over_valid_samples_as_keras():
    y_true = jnp.array([0, 1, 2, 1])
    y_pred = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]]))
    ours = lk.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1)(y_true, y_pred)
    # by hand: valid samples 0 and 2, -(log 0.5 + log 0.6) / 2
    np.testing.assert_allclose(ours, -(np.log(0.5) + np.log(0.6)) / 2, rtol=1e-6)


# ------------------------------------------------------------------------------ in a Keras model

def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(48, 4)).astype("float32")
    labels = rng.integers(0, 3, size=48)
    return x, labels, rng.uniform(0.2, 2.0, size=48).astype("float32")


def _fit(loss, y, outputs, *, metrics=None, **fit_kwargs):
    x = _data()[0]
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(outputs)])
    model.compile(optimizer=keras.optimizers.SGD(0.2), loss=loss, weighted_metrics=metrics)
    model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, **fit_kwargs)
    return model


def _assert_same_weights(a, b):
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


TRAINING = [  # (ours, Keras's, targets, outputs, fit keyword)
    ("scce_class_weight", lambda: lk.SparseCategoricalCrossentropy(from_logits=True),
     lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True), "labels", 3,
     {"class_weight": {0: 1.0, 1: 3.0, 2: 0.5}}),
    ("cce_sample_weight", lambda: lk.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
     lambda: keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), "onehot",
     3, {"sample_weight": "w"}),
    ("mse_plain_class_sample_weight", lambda: losskit.MeanSquaredError(),
     lambda: keras.losses.MeanSquaredError(), "onehot", 3, {"sample_weight": "w"}),
    ("mse_function_sample_weight", lambda: losskit.mean_squared_error,
     lambda: keras.losses.MeanSquaredError(), "onehot", 3, {"sample_weight": "w"}),
]


@pytest.mark.parametrize(("ours", "theirs", "targets", "outputs", "fit"), [c[1:] for c in TRAINING],
                         ids=[c[0] for c in TRAINING])
def test_training_matches_keras(ours, theirs, targets, outputs, fit):
    _, labels, weight = _data()
    y = labels if targets == "labels" else np.eye(3, dtype="float32")[labels]
    fit = {k: (weight if v == "w" else v) for k, v in fit.items()}
    a, b = _fit(ours(), y, outputs, **fit), _fit(theirs(), y, outputs, **fit)
    _assert_same_weights(a, b)


def test_plain_class_as_weighted_metric_honours_weights():
    x, labels, weight = _data()
    y = np.eye(3, dtype="float32")[labels]
    model = _fit("mse", y, 3, metrics=[losskit.MeanSquaredError(name="ours"),
                                       keras.metrics.MeanSquaredError(name="keras")])
    result = model.evaluate(x, y, sample_weight=weight, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["ours"], result["keras"], rtol=1e-6)


def test_plain_class_with_another_reduction_is_refused_naming_losskit_keras():
    _, labels, _ = _data()
    with pytest.raises(ValueError, match=r"losskit\.keras\.MeanSquaredError\(reduction='sum'"):
        _fit(losskit.MeanSquaredError(reduction="sum"), np.eye(3, dtype="float32")[labels], 3)


def test_saved_model_loads_without_custom_objects(tmp_path):
    x, labels, weight = _data()
    y = np.eye(3, dtype="float32")[labels]
    loss = lk.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, name="ce")
    model = _fit(loss, y, 3, sample_weight=weight)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.loss) is lk.CategoricalCrossentropy
    assert loaded.loss.get_config() == loss.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_allclose(loaded.evaluate(x, y, sample_weight=weight, verbose=0),
                               model.evaluate(x, y, sample_weight=weight, verbose=0), rtol=1e-6)


# ------------------------------------------------------------------------------ torch backend

TORCH_SCRIPT = textwrap.dedent("""
    import numpy as np, keras, torch, losskit, losskit.keras as lk
    assert keras.backend.backend() == "torch"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype("float32")
    labels = rng.integers(0, 3, size=48)
    w = rng.uniform(0.2, 2.0, size=48).astype("float32")

    def fit(loss):
        keras.utils.set_random_seed(7)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        m.compile(optimizer=keras.optimizers.SGD(0.2), loss=loss)
        m.fit(x, labels, epochs=2, batch_size=16, shuffle=False, verbose=0, sample_weight=w)
        return m

    ref = fit(keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain = fit(losskit.SparseCategoricalCrossentropy(from_logits=True))
    m = fit(lk.SparseCategoricalCrossentropy(from_logits=True))
    for model in (m, plain):
        for u, v in zip(ref.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    # the gradient of the weighted mean through losskit's torch path: (softmax - onehot) / 2
    p = torch.zeros(2, 3, requires_grad=True)
    value = lk.SparseCategoricalCrossentropy(from_logits=True)(torch.tensor([0, 2]), p)
    value.backward()
    np.testing.assert_allclose(p.grad.numpy(), (np.full((2, 3), 1 / 3) - np.eye(3)[[0, 2]]) / 2,
                               rtol=1e-6)
    path = {path!r}
    m.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.loss) is lk.SparseCategoricalCrossentropy
    np.testing.assert_allclose(loaded.evaluate(x, labels, verbose=0), m.evaluate(x, labels, verbose=0),
                               rtol=1e-6)
    print("torch backend OK")
""")


def test_torch_backend(tmp_path):
    pytest.importorskip("torch")
    env = {**os.environ, "KERAS_BACKEND": "torch",
           "PYTHONPATH": os.pathsep.join([str(Path(losskit.__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    script = TORCH_SCRIPT.format(path=str(tmp_path / "torch_model.keras"))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch backend OK" in result.stdout


def _first_python_block(path: Path) -> str:
    text = path.read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_docs_example(tmp_path, monkeypatch):
    """docs/keras.md's example (the README's Keras lines) runs and reloads its model."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(_first_python_block(Path(__file__).parents[1] / "docs" / "keras.md"), namespace)
    assert isinstance(namespace["model"].loss, lk.SparseCategoricalCrossentropy)
    assert (tmp_path / "model.keras").exists()
