"""``get``, names, aliases and serialization."""

from __future__ import annotations

import pytest

import losskit
from losskit.losses._registry import _CLASSES, definitions

KERAS_NAMES = {
    "mse": "MeanSquaredError", "MSE": "MeanSquaredError", "mean_squared_error": "MeanSquaredError",
    "mae": "MeanAbsoluteError", "MAE": "MeanAbsoluteError", "bce": "BinaryCrossentropy",
    "BCE": "BinaryCrossentropy", "kld": "KLDivergence", "KLD": "KLDivergence",
    "kullback_leibler_divergence": "KLDivergence", "cce": "CategoricalCrossentropy",
    "scce": "SparseCategoricalCrossentropy", "hinge": "Hinge", "Hinge": "Hinge",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
}


@pytest.mark.parametrize(("name", "class_name"), sorted(KERAS_NAMES.items()))
def test_names_and_aliases(name, class_name):
    loss = losskit.get(name)
    assert type(loss).__name__ == class_name
    assert getattr(losskit, class_name) is type(loss)


# Catalog losses named after a peer other than Keras: the function is the peer's functional name
# without a trailing ``_loss``, the class the peer's class name without a trailing ``Loss``; every full
# peer name (and an earlier spelling of ours) stays an alias.
PEER_NAMES = {
    "nll": "NLL", "NLL": "NLL", "nll_loss": "NLL", "NLLLoss": "NLL", "negative_log_likelihood": "NLL",
    "pinball": "Pinball", "Pinball": "Pinball", "pinball_loss": "Pinball", "PinballLoss": "Pinball",
    "quantile_loss": "Pinball", "mean_pinball_loss": "Pinball", "QuantileLoss": "Pinball",
    "multilabel_margin": "MultiLabelMargin", "MultiLabelMarginLoss": "MultiLabelMargin",
    "MultilabelMargin": "MultiLabelMargin",
    "multilabel_soft_margin": "MultiLabelSoftMargin",
    "MultiLabelSoftMarginLoss": "MultiLabelSoftMargin", "MultilabelSoftMargin": "MultiLabelSoftMargin",
}


@pytest.mark.parametrize(("name", "class_name"), sorted(PEER_NAMES.items()))
def test_peer_names_and_aliases(name, class_name):
    loss = losskit.get(name)
    assert type(loss).__name__ == class_name
    assert getattr(losskit, class_name) is type(loss)
    restored = losskit.deserialize({"class_name": name, "config": {}})
    assert type(restored) is type(loss)


def test_module_level_aliases_are_the_functions():
    assert losskit.mse is losskit.mean_squared_error
    assert losskit.kld is losskit.kullback_leibler_divergence is losskit.kl_divergence
    assert losskit.scce is losskit.sparse_categorical_crossentropy


def test_get_accepts_classes_instances_functions_and_configs():
    instance = losskit.BinaryCrossentropy(from_logits=True)
    assert losskit.get(instance) is instance
    assert isinstance(losskit.get(losskit.Hinge), losskit.Hinge)
    assert isinstance(losskit.get(losskit.kl_divergence), losskit.KLDivergence)
    again = losskit.get(losskit.serialize(instance))
    assert again == instance
    keras_style = {"class_name": "BinaryCrossentropy", "config": {"from_logits": True}}
    assert losskit.get(keras_style).options["from_logits"] is True


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ValueError, match="unknown loss 'mean_squared_eror'; did you mean "
                                         "'mean_squared_error'"):
        losskit.get("mean_squared_eror")
    with pytest.raises(ValueError, match="'BinaryCrossentropy'"):
        losskit.get("BinaryCrossEntropy")
    with pytest.raises(TypeError, match="cannot interpret 3"):
        losskit.get(3)


@pytest.mark.parametrize("defn", definitions(), ids=lambda d: d.name)
def test_every_loss_has_function_class_and_docs(defn):
    fn = getattr(losskit, defn.name)
    cls = getattr(losskit, defn.class_name)
    assert _CLASSES[defn.class_name] is cls
    assert ".. math::" in fn.__doc__
    assert ">>>" in fn.__doc__
    assert "Shapes" in fn.__doc__
    for name in (defn.name, defn.class_name, *defn.aliases):
        assert name in losskit.names()


def test_unknown_names_are_quoted_short_with_at_most_three_suggestions():
    # issue 9 item 19: a 10-million-character name was echoed whole
    with pytest.raises(ValueError, match="unknown loss") as info:
        losskit.get("x" * 10_000_000)
    assert len(str(info.value)) < 200
    assert "(10000000 characters)" in str(info.value)
    with pytest.raises(ValueError, match="unknown loss") as info:
        losskit.get("squared")
    assert str(info.value).count("'") <= 2 + 2 * 3  # the name and at most three suggestions
    assert "mean_absolute_error" not in str(info.value)  # no list of every name
    with pytest.raises(ValueError, match="did you mean 'mean_squared_error'"):
        losskit.get("Mean_Squared_Error")


@pytest.mark.parametrize(("config", "kind", "words"), [
    ("mse", TypeError, "must be a dict"),
    (None, TypeError, "must be a dict"),
    ({"config": {}}, ValueError, "'class_name' key"),
    ({"class_name": ["MeanSquaredError"]}, TypeError, "'class_name' must be a string"),
    ({"class_name": "MeanSquaredError", "config": [1]}, TypeError, "must be a dict of options"),
    ({"class_name": "mse", "config": 3}, TypeError, "must be a dict of options"),
    ({"class_name": "MeanSquaredError", "config": {1: 2}}, TypeError, "string keys"),
    ({"class_name": "MeanSquaredError", "config": {"colour": 1}}, TypeError, "unknown option"),
    ({"class_name": "NoSuchLoss", "config": {}}, ValueError, "unknown loss 'NoSuchLoss'"),
    ({"class_name": "x" * 1_000_000}, ValueError, "(1000000 characters)"),
])
def test_deserialize_refuses_malformed_configs_clearly(config, kind, words):
    with pytest.raises(kind) as info:
        losskit.deserialize(config)
    assert words in str(info.value)
    assert len(str(info.value)) < 300


def test_deserialize_accepts_a_missing_or_null_config_and_aliases():
    assert losskit.deserialize({"class_name": "MeanSquaredError", "config": None}) == \
        losskit.MeanSquaredError()
    assert losskit.deserialize({"class_name": "mse", "config": {"reduction": "sum"}}) == \
        losskit.MeanSquaredError(reduction="sum")


def test_version_matches_the_package_metadata():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert losskit.__version__ == pyproject["project"]["version"]
