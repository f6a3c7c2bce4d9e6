"""Every peer's loss name resolves with ``losskit.get``, to the loss the peer means.

The peers' names are read from the installed libraries (PyTorch's ``torch.nn`` ``*Loss`` classes and
``torch.nn.functional`` losses, Keras's ``keras.losses``, Optax's ``optax.losses``, scikit-learn's
``sklearn.metrics`` losses and errors), not from losskit. Every name must be classified here: it
resolves (:data:`MEANS` says to what, with which options: written from each peer's documentation,
so an alias with losskit's defaults where the peer's differ fails), or it is listed in
:data:`NOT_IN_LOSSKIT` / :data:`BEING_ADDED` with a reason. A peer release with a new loss therefore
fails :func:`test_every_installed_peer_name_is_classified` until someone classifies it, and a listed
name that starts resolving fails until it moves to :data:`MEANS`.

The names the catalog page (``docs/catalog.md``) shows, and every declared alias, resolve too.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

import losskit
from losskit.losses._registry import Alias, definitions

# ------------------------------------------------------------------------ what each peer name means
# name -> (losskit function, options the resolved loss must carry). Where a name means different
# things in two peers, the unqualified name keeps one meaning and a peer-qualified name gives the
# other (AMBIGUOUS below).

MEANS: dict[str, tuple[str, dict[str, Any]]] = {
    # PyTorch, torch.nn classes and torch.nn.functional
    "BCELoss": ("binary_crossentropy", {"from_logits": False}),
    "binary_cross_entropy": ("binary_crossentropy", {"from_logits": False}),
    "BCEWithLogitsLoss": ("binary_crossentropy", {"from_logits": True}),
    "binary_cross_entropy_with_logits": ("binary_crossentropy", {"from_logits": True}),
    # PyTorch picks index or probability targets from the target's shape; the name gives indices
    "CrossEntropyLoss": ("sparse_categorical_crossentropy", {"from_logits": True}),
    "cross_entropy": ("sparse_categorical_crossentropy", {"from_logits": True}),
    "NLLLoss": ("nll", {}), "nll_loss": ("nll", {}),
    "L1Loss": ("mean_absolute_error", {}), "l1_loss": ("mean_absolute_error", {}),
    "MSELoss": ("mean_squared_error", {}), "mse_loss": ("mean_squared_error", {}),
    "HuberLoss": ("huber", {"delta": 1.0}), "huber_loss": ("huber", {"delta": 1.0}),
    "SmoothL1Loss": ("smooth_l1", {"beta": 1.0}), "smooth_l1_loss": ("smooth_l1", {"beta": 1.0}),
    "KLDivLoss": ("kl_div", {"log_target": False}), "kl_div": ("kl_div", {"log_target": False}),
    "PoissonNLLLoss": ("poisson_nll", {"log_input": True, "full": False}),
    "poisson_nll_loss": ("poisson_nll", {"log_input": True, "full": False}),
    "GaussianNLLLoss": ("gaussian_nll", {"full": False}),
    "gaussian_nll_loss": ("gaussian_nll", {"full": False}),
    "MultiMarginLoss": ("multi_margin", {"p": 1, "margin": 1.0}),
    "multi_margin_loss": ("multi_margin", {"p": 1, "margin": 1.0}),
    "MultiLabelMarginLoss": ("multilabel_margin", {}), "multilabel_margin_loss": ("multilabel_margin", {}),
    "SoftMarginLoss": ("soft_margin", {}), "soft_margin_loss": ("soft_margin", {}),
    "MultiLabelSoftMarginLoss": ("multilabel_soft_margin", {}),
    "multilabel_soft_margin_loss": ("multilabel_soft_margin", {}),
    # Keras (classes and functions: losskit's own names)
    "BinaryCrossentropy": ("binary_crossentropy", {"from_logits": False}),
    "CategoricalCrossentropy": ("categorical_crossentropy", {"from_logits": False}),
    "SparseCategoricalCrossentropy": ("sparse_categorical_crossentropy", {"from_logits": False}),
    "BinaryFocalCrossentropy": ("binary_focal_crossentropy", {"from_logits": False, "gamma": 2.0}),
    "CategoricalFocalCrossentropy": ("categorical_focal_crossentropy", {"from_logits": False}),
    "CategoricalGeneralizedCrossEntropy": ("categorical_generalized_cross_entropy", {"q": 0.5}),
    "CategoricalHinge": ("categorical_hinge", {}), "CosineSimilarity": ("cosine_similarity", {}),
    "Hinge": ("hinge", {}), "Huber": ("huber", {"delta": 1.0}), "KLDivergence": ("kl_divergence", {}),
    "LogCosh": ("log_cosh", {}), "MeanAbsoluteError": ("mean_absolute_error", {}),
    "MeanAbsolutePercentageError": ("mean_absolute_percentage_error", {}),
    "MeanSquaredError": ("mean_squared_error", {}),
    "MeanSquaredLogarithmicError": ("mean_squared_logarithmic_error", {}),
    "Poisson": ("poisson", {}), "SquaredHinge": ("squared_hinge", {}),
    "binary_crossentropy": ("binary_crossentropy", {}),
    "binary_focal_crossentropy": ("binary_focal_crossentropy", {}),
    "categorical_crossentropy": ("categorical_crossentropy", {}),
    "categorical_focal_crossentropy": ("categorical_focal_crossentropy", {}),
    "categorical_generalized_cross_entropy": ("categorical_generalized_cross_entropy", {}),
    "categorical_hinge": ("categorical_hinge", {}), "cosine_similarity": ("cosine_similarity", {}),
    "hinge": ("hinge", {}), "huber": ("huber", {}), "kl_divergence": ("kl_divergence", {}),
    "log_cosh": ("log_cosh", {}), "mean_absolute_error": ("mean_absolute_error", {}),
    "mean_absolute_percentage_error": ("mean_absolute_percentage_error", {}),
    "mean_squared_error": ("mean_squared_error", {}),
    "mean_squared_logarithmic_error": ("mean_squared_logarithmic_error", {}),
    "poisson": ("poisson", {}), "sparse_categorical_crossentropy": ("sparse_categorical_crossentropy", {}),
    "squared_hinge": ("squared_hinge", {}),
    # Optax (functions of (predictions or logits, targets))
    "sigmoid_binary_cross_entropy": ("binary_crossentropy", {"from_logits": True}),
    "softmax_cross_entropy": ("categorical_crossentropy", {"from_logits": True}),
    "safe_softmax_cross_entropy": ("categorical_crossentropy", {"from_logits": True}),
    "softmax_cross_entropy_with_integer_labels": ("sparse_categorical_crossentropy", {"from_logits": True}),
    "sigmoid_focal_loss": ("binary_focal_crossentropy", {"from_logits": True, "gamma": 2.0,
                                                         "apply_class_balancing": False}),
    "poly_loss_cross_entropy": ("poly_loss_cross_entropy", {"epsilon": 2.0}),
    "kl_divergence_with_log_targets": ("kl_div", {"log_target": True}),
    "convex_kl_divergence": ("generalized_kl_divergence", {"log_predictions": True}),
    "squared_error": ("mean_squared_error", {}),
    "hinge_loss": ("hinge", {}),
    "multiclass_hinge_loss": ("multiclass_hinge", {}),
    "perceptron_loss": ("perceptron", {}),
    "multiclass_perceptron_loss": ("multiclass_perceptron", {}),
    # scikit-learn (metrics of (y_true, y_pred))
    "log_loss": ("binary_crossentropy", {"from_logits": False}),
    "mean_squared_log_error": ("mean_squared_logarithmic_error", {}),
    "mean_pinball_loss": ("pinball", {"quantile": 0.5}),
    "mean_poisson_deviance": ("mean_tweedie_deviance", {"power": 1.0}),
    "mean_gamma_deviance": ("mean_gamma_deviance", {}),
    "mean_tweedie_deviance": ("mean_tweedie_deviance", {"power": 0.0}),
    # a name two peers use differently: the unqualified name keeps losskit's meaning (AMBIGUOUS)
    "generalized_kl_divergence": ("generalized_kl_divergence", {"log_predictions": False}),
    "ctc_loss": ("ctc", {"from_logits": True, "length_normalize": False}),
    # issue 12: CTC (PyTorch takes log-probabilities and divides by the target lengths; Keras and
    # Optax take logits), Dice and Tversky (Keras's smoothing; Optax's dice_loss and binary_dice_loss
    # their own), sparsemax, ranking
    "CTCLoss": ("ctc", {"from_logits": False, "length_normalize": True}),
    "CTC": ("ctc", {"from_logits": True}), "ctc": ("ctc", {"from_logits": True}),
    "Dice": ("dice", {"smooth": "keras"}), "dice": ("dice", {"smooth": "keras"}),
    "dice_loss": ("dice", {"smooth": "optax", "from_logits": False}),
    "binary_dice_loss": ("dice", {"smooth": "optax", "from_logits": True}),
    "Tversky": ("tversky", {"smooth": "keras", "alpha": 0.5, "beta": 0.5}),
    "tversky": ("tversky", {"smooth": "keras"}),
    "sparsemax_loss": ("sparsemax", {}), "multiclass_sparsemax_loss": ("multiclass_sparsemax", {}),
    "ranking_softmax_loss": ("ranking_softmax", {}),
    # issue 12: embedding losses (PyTorch's pair and triplet losses; Keras's circle and Optax's ntxent
    # on a row of the similarity matrix, which the caller forms from the embeddings)
    "CosineEmbeddingLoss": ("cosine_embedding", {"margin": 0.0}),
    "cosine_embedding_loss": ("cosine_embedding", {"margin": 0.0}),
    "HingeEmbeddingLoss": ("hinge_embedding", {"margin": 1.0}),
    "hinge_embedding_loss": ("hinge_embedding", {"margin": 1.0}),
    "MarginRankingLoss": ("margin_ranking", {"margin": 0.0}),
    "margin_ranking_loss": ("margin_ranking", {"margin": 0.0}),
    "TripletMarginLoss": ("triplet_margin", {"margin": 1.0, "p": 2.0, "eps": 1e-6, "swap": False,
                                             "eps_placement": "difference"}),
    "triplet_margin_loss": ("triplet_margin", {"eps_placement": "difference"}),
    "TripletMarginWithDistanceLoss": ("triplet_margin", {"margin": 1.0, "swap": False}),
    "triplet_margin_with_distance_loss": ("triplet_margin", {"margin": 1.0, "swap": False}),
    "Circle": ("circle", {"gamma": 80.0, "margin": 0.4}), "circle": ("circle", {"gamma": 80.0}),
    "ntxent": ("ntxent", {"temperature": 0.07}),
}

AMBIGUOUS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    # name -> (peer whose meaning the name does NOT take, qualified name, (function, options) it gives)
    "kl_divergence": ("optax", "optax.kl_divergence", {"loss": "kl_div", "log_target": False},
                      "Keras's takes probabilities (losskit's kl_divergence); Optax's takes "
                      "log-predictions (losskit's kl_div)"),
    "generalized_kl_divergence": ("optax", "optax.generalized_kl_divergence",
                                  {"loss": "generalized_kl_divergence", "log_predictions": True},
                                  "Optax's takes log-predictions; losskit's defaults to probabilities"),
    "triplet_margin_loss": ("optax", "optax.triplet_margin_loss", {"loss": "triplet_margin",
                                                                   "eps_placement": "sum"},
                            "PyTorch's adds eps to the difference (losskit's default); Optax's to the "
                            "distances' sum of powers"),
    "ctc_loss": ("torch", "torch.ctc_loss", {"loss": "ctc", "from_logits": False, "length_normalize": True},
                 "Optax's takes logits (losskit's default); PyTorch's log-probabilities"),
}

DIFFERENT_SCALE = {
    # the name resolves to the same loss, whose value differs by a documented convention
    ("optax", "cosine_similarity"): "Optax returns +cos (a similarity); losskit's, as Keras's, is -cos. "
                                    "Optax's cosine_distance (1 - cos) is not in losskit yet",
    ("sklearn", "mean_absolute_percentage_error"): "scikit-learn returns a fraction; losskit, as Keras, "
                                                   "a percentage (100 times it)",
    ("sklearn", "log_loss"): "binary labels with the probability of class 1; (N, K) probabilities with "
                             "labels are sparse_categorical_crossentropy",
}

BEING_ADDED: dict[str, str] = {}  # losses other branches are adding (none now)

NOT_IN_LOSSKIT = {
    "ctc_loss_with_forward_probs": "returns the forward probabilities too; the loss itself is ctc",
    "multiclass_generalized_dice_loss": "Optax's weights come from the whole batch's class volumes: "
                                        "dice(smooth='optax') with those weights as sample_weight",
    "make_fenchel_young_loss": "a factory of losses from a regulariser: fenchel_young(regularizer=...)",
    "LinearCrossEntropyLoss": "losskit.linear_cross_entropy(hidden, weight, labels): a function of the "
                              "hidden states and the output weights, not a (y_true, y_pred) loss",
    "linear_cross_entropy": "losskit.linear_cross_entropy (see LinearCrossEntropyLoss)",
    "AdaptiveLogSoftmaxWithLoss": "a layer with parameters (clusters of the vocabulary), not a loss",
    "cosine_distance": "1 - cos: cosine_embedding with y = 1 once it lands (issue 12)",
    "l2_loss": "half the squared error, 0.5 (p - t)^2: mean_squared_error is twice its mean",
    "brier_score_loss": "the mean squared error of probabilities over the batch: mean_squared_error "
                        "of one-hot targets, not a per-sample loss of its own",
    "hamming_loss": "a count of wrong labels: not differentiable",
    "zero_one_loss": "a count of wrong predictions: not differentiable",
    "label_ranking_loss": "a count of misordered label pairs: not differentiable",
    "coverage_error": "a ranking depth: not differentiable",
    "max_error": "the batch's largest residual: not a per-sample loss",
    "median_absolute_error": "the batch's median residual: not a per-sample loss",
    "root_mean_squared_error": "the square root of the batch's mean: not a per-sample loss",
    "root_mean_squared_log_error": "the square root of the batch's mean: not a per-sample loss",
}

NOT_A_LOSS = {"Loss", "get", "serialize", "deserialize", "smooth_labels"}


# --------------------------------------------------------------------------- the installed names


def installed_names() -> dict[str, set[str]]:
    """Peer -> its loss names, read from the installed packages (a missing peer gives no names)."""
    out: dict[str, set[str]] = {}
    try:
        import torch.nn
        import torch.nn.functional as F

        out["torch"] = {n for n in dir(torch.nn) if n.endswith("Loss") and not n.startswith("_")}
        out["torch"] |= {n for n in dir(F) if not n.startswith("_") and callable(getattr(F, n))
                         and (n.endswith("_loss") or "cross_entropy" in n or n == "kl_div")}
    except ImportError:
        pass
    try:
        import keras

        out["keras"] = {n for n in dir(keras.losses) if not n.startswith("_")} - NOT_A_LOSS
    except ImportError:
        pass
    try:
        import optax

        out["optax"] = {n for n in dir(optax.losses) if not n.startswith("_")} - NOT_A_LOSS
    except ImportError:
        pass
    try:
        from sklearn import metrics

        out["sklearn"] = {n for n in dir(metrics) if re.search(r"_(loss|error|deviance)$", n)}
    except ImportError:
        pass
    return out


INSTALLED = sorted((peer, name) for peer, names in installed_names().items() for name in names)


def resolves(name: str) -> bool:
    try:
        losskit.get(name)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(("peer", "name"), INSTALLED, ids=[f"{p}.{n}" for p, n in INSTALLED])
def test_every_installed_peer_name_is_classified(peer: str, name: str) -> None:
    """A peer's name resolves to the loss the peer means, or is listed with a reason."""
    if name in BEING_ADDED or name in NOT_IN_LOSSKIT:
        reason = BEING_ADDED.get(name) or NOT_IN_LOSSKIT[name]
        assert not resolves(name), (f"{peer}.{name} now resolves to {losskit.get(name)!r}: move it from "
                                    f"the being-added / not-in-losskit tables ({reason}) to MEANS")
        return
    if name in AMBIGUOUS and AMBIGUOUS[name][0] == peer:  # this peer's meaning is the qualified name
        _, qualified, expected, _ = AMBIGUOUS[name]
        expected = dict(expected)
        check_means(qualified, expected.pop("loss"), expected)
        return
    assert name in MEANS, (f"{peer}.{name} is a loss of {peer} that this test does not know: add what "
                           f"it means to MEANS (and an alias to the declaration), or list it in "
                           f"NOT_IN_LOSSKIT / BEING_ADDED with a reason")
    check_means(name, *MEANS[name])


def check_means(name: str, function: str, options: dict[str, Any]) -> None:
    assert resolves(name), f"losskit.get({name!r}) is refused; declare it as an alias of {function}"
    loss = losskit.get(name)
    assert loss.definition.name == function, f"{name!r} resolves to {loss.definition.name}, not {function}"
    got = {k: loss.options.get(k) for k in options}
    assert got == options, f"{name!r} resolves with {got}; the peer's defaults are {options}"
    config = losskit.serialize(loss)
    assert losskit.deserialize(config) == loss  # the peer's options survive a round trip


@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
def test_a_name_two_peers_use_differently_has_a_qualified_spelling(name: str) -> None:
    _, qualified, expected, _ = AMBIGUOUS[name]
    expected = dict(expected)
    check_means(qualified, expected.pop("loss"), expected)
    assert losskit.get(name).definition.name == MEANS[name][0]


def test_the_tables_do_not_overlap() -> None:
    tables = [set(MEANS), set(BEING_ADDED), set(NOT_IN_LOSSKIT)]
    for i, a in enumerate(tables):
        for b in tables[i + 1:]:
            assert not a & b, sorted(a & b)
    assert {n for _, n in DIFFERENT_SCALE} <= set(MEANS)


def test_named_in_the_issue() -> None:
    """The names issue 10 found refused."""
    for name in ("CrossEntropyLoss", "BCEWithLogitsLoss", "L1Loss", "MSELoss", "softmax_cross_entropy",
                 "log_loss", "hinge_loss"):
        check_means(name, *MEANS[name])


# ------------------------------------------------------------- the catalog page's names and aliases


def catalog_page_names() -> list[tuple[str, str]]:
    """(peer key, last component of each dotted peer name) of every oracle entry, as docs/catalog.md
    shows them (``torch.nn.BCELoss / torch.nn.BCEWithLogitsLoss``, ``mean(optax.losses.x, where=)``)."""
    from oracle import catalog

    out = set()
    for entry in catalog.ENTRIES:
        for peer, text in entry.peer_names.items():
            for dotted in re.findall(r"\b(?:keras|torch|optax|sklearn|scipy)(?:\.\w+)+", text):
                out.add((peer, dotted.rsplit(".", 1)[-1]))
    return sorted(out)


CATALOG_UNRESOLVED = {
    "jensenshannon": "scipy's is the square root of the divergence (a distance); losskit's "
                     "jensen_shannon_divergence is its square",
    "make_fenchel_young_loss": "Optax's factory of Fenchel-Young losses (fenchel_young is the loss)",
}


@pytest.mark.parametrize(("peer", "name"), catalog_page_names())
def test_every_name_on_the_catalog_page_resolves(peer: str, name: str) -> None:
    if name in CATALOG_UNRESOLVED:
        assert not resolves(name), f"{name} resolves now: drop it from CATALOG_UNRESOLVED"
        return
    assert resolves(name), f"docs/catalog.md lists {peer}'s {name!r}, which losskit.get refuses"
    if name in MEANS:
        check_means(name, *MEANS[name])


@pytest.mark.parametrize("defn", definitions(), ids=lambda d: d.name)
def test_every_declared_alias_resolves_with_its_options(defn: Any) -> None:
    for alias in (defn.name, defn.class_name, *defn.aliases):
        loss = losskit.get(str(alias))
        assert loss.definition is defn
        if isinstance(alias, Alias):
            given = defn.normalise(alias.options)
            assert {k: loss.options[k] for k in alias.options} == {k: given[k] for k in alias.options}
