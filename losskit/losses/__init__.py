"""Every loss, declared once in its family module and registered here.

Each family has its own section below, one ``register`` line per loss. ``register`` files the loss in
the registry and derives the exports from its declaration: the function, the class and every alias in
Keras's function style (see :func:`._registry.function_aliases`) are added to ``__all__``, which
``losskit/__init__.py`` re-exports. A line ``__all__ += [...]`` (the earlier convention) is still
accepted; names already listed are not added twice.
"""

from typing import TYPE_CHECKING, Any

from . import _registry
from ._core import Loss, LossDef
from .crossentropy import (
    BINARY_CROSSENTROPY,
    CATEGORICAL_CROSSENTROPY,
    SPARSE_CATEGORICAL_CROSSENTROPY,
)
from .divergence import (
    GENERALIZED_KL_DIVERGENCE,
    JENSEN_SHANNON_DIVERGENCE,
    KL_DIV,
    KL_DIVERGENCE,
    TOTAL_VARIATION_DISTANCE,
)
from .margin import (
    CATEGORICAL_HINGE,
    HINGE,
    MULTI_MARGIN,
    MULTICLASS_HINGE,
    MULTICLASS_PERCEPTRON,
    MULTILABEL_MARGIN,
    MULTILABEL_SOFT_MARGIN,
    PERCEPTRON,
    SOFT_MARGIN,
    SQUARED_HINGE,
)
from .regression import (
    COSINE_SIMILARITY,
    GAUSSIAN_NLL,
    HUBER,
    LOG_COSH,
    MEAN_ABSOLUTE_ERROR,
    MEAN_ABSOLUTE_PERCENTAGE_ERROR,
    MEAN_GAMMA_DEVIANCE,
    MEAN_SQUARED_ERROR,
    MEAN_SQUARED_LOGARITHMIC_ERROR,
    MEAN_TWEEDIE_DEVIANCE,
    PINBALL,
    POISSON,
    POISSON_NLL,
    SMOOTH_L1,
)


class _Names(list[str]):
    """``__all__``: a list that keeps each name once, also under ``__all__ += [...]``."""

    def __iadd__(self, names: Any) -> "_Names":  # type: ignore[override, misc]
        self.extend(n for n in names if n not in self)
        return self


__all__: list[str] = _Names()

if TYPE_CHECKING:  # the names are derived at import, so a type checker sees every loss name as Any
    def __getattr__(name: str) -> Any: ...


def register(defn: LossDef) -> tuple[Any, type[Loss]]:
    """:func:`._registry.register`, plus the loss's names (and function aliases) as module attributes
    listed in ``__all__``."""
    fn, cls = _registry.register(defn)
    exported = {defn.name: fn, defn.class_name: cls}
    exported |= {alias: fn for alias in _registry.function_aliases(defn)}
    for name, obj in exported.items():
        if globals().get(name, obj) is not obj:
            raise ValueError(f"the loss name {name!r} of {defn.name} is already taken in losskit.losses")
        globals()[name] = obj
    __all__.extend(n for n in sorted(exported, key=str.lower) if n not in __all__)
    return fn, cls


# ----------------------------------------------------------------------------- the tutorial's seven
mean_squared_error, MeanSquaredError = register(MEAN_SQUARED_ERROR)
mean_absolute_error, MeanAbsoluteError = register(MEAN_ABSOLUTE_ERROR)
binary_crossentropy, BinaryCrossentropy = register(BINARY_CROSSENTROPY)
categorical_crossentropy, CategoricalCrossentropy = register(CATEGORICAL_CROSSENTROPY)
sparse_categorical_crossentropy, SparseCategoricalCrossentropy = register(
    SPARSE_CATEGORICAL_CROSSENTROPY)
hinge, Hinge = register(HINGE)
kl_divergence, KLDivergence = register(KL_DIVERGENCE)

# ------------------------------------------------------------------------------ regression (catalog)
huber, Huber = register(HUBER)
smooth_l1, SmoothL1 = register(SMOOTH_L1)
log_cosh, LogCosh = register(LOG_COSH)
mean_absolute_percentage_error, MeanAbsolutePercentageError = register(
    MEAN_ABSOLUTE_PERCENTAGE_ERROR)
mean_squared_logarithmic_error, MeanSquaredLogarithmicError = register(
    MEAN_SQUARED_LOGARITHMIC_ERROR)
pinball, Pinball = register(PINBALL)
cosine_similarity, CosineSimilarity = register(COSINE_SIMILARITY)
poisson, Poisson = register(POISSON)
poisson_nll, PoissonNLL = register(POISSON_NLL)
mean_gamma_deviance, MeanGammaDeviance = register(MEAN_GAMMA_DEVIANCE)
mean_tweedie_deviance, MeanTweedieDeviance = register(MEAN_TWEEDIE_DEVIANCE)
gaussian_nll, GaussianNLL = register(GAUSSIAN_NLL)

# -------------------------------------------------------------------------- classification (catalog)
from .classification import (  # noqa: E402
    BINARY_FOCAL_CROSSENTROPY,
    CATEGORICAL_FOCAL_CROSSENTROPY,
    CATEGORICAL_GENERALIZED_CROSS_ENTROPY,
    NEGATIVE_LOG_LIKELIHOOD,
    POLY_LOSS_CROSS_ENTROPY,
)

binary_focal_crossentropy, BinaryFocalCrossentropy = register(BINARY_FOCAL_CROSSENTROPY)
categorical_focal_crossentropy, CategoricalFocalCrossentropy = register(
    CATEGORICAL_FOCAL_CROSSENTROPY)
categorical_generalized_cross_entropy, CategoricalGeneralizedCrossEntropy = register(
    CATEGORICAL_GENERALIZED_CROSS_ENTROPY)
poly_loss_cross_entropy, PolyLossCrossEntropy = register(POLY_LOSS_CROSS_ENTROPY)
nll, NLL = register(NEGATIVE_LOG_LIKELIHOOD)

# ----------------------------------------------------------------------------- divergences (catalog)
kl_div, KLDiv = register(KL_DIV)
generalized_kl_divergence, GeneralizedKLDivergence = register(GENERALIZED_KL_DIVERGENCE)
jensen_shannon_divergence, JensenShannonDivergence = register(JENSEN_SHANNON_DIVERGENCE)
total_variation_distance, TotalVariationDistance = register(TOTAL_VARIATION_DISTANCE)

# --------------------------------------------------------------------------------- margins (catalog)
squared_hinge, SquaredHinge = register(SQUARED_HINGE)
categorical_hinge, CategoricalHinge = register(CATEGORICAL_HINGE)
multiclass_hinge, MulticlassHinge = register(MULTICLASS_HINGE)
multi_margin, MultiMargin = register(MULTI_MARGIN)
multilabel_margin, MultiLabelMargin = register(MULTILABEL_MARGIN)
soft_margin, SoftMargin = register(SOFT_MARGIN)
multilabel_soft_margin, MultiLabelSoftMargin = register(MULTILABEL_SOFT_MARGIN)
perceptron, Perceptron = register(PERCEPTRON)
multiclass_perceptron, MulticlassPerceptron = register(MULTICLASS_PERCEPTRON)

# ---- issue 12: segmentation, sparsemax and ranking losses
from .segmentation import DICE, GENERALIZED_DICE, LOVASZ_HINGE, TVERSKY  # noqa: E402

dice, Dice = register(DICE)
tversky, Tversky = register(TVERSKY)
generalized_dice, GeneralizedDice = register(GENERALIZED_DICE)
lovasz_hinge, LovaszHinge = register(LOVASZ_HINGE)

from .structured import (  # noqa: E402
    FENCHEL_YOUNG,
    MULTICLASS_SPARSEMAX,
    RANKING_SOFTMAX,
    SPARSEMAX,
)

sparsemax, Sparsemax = register(SPARSEMAX)
multiclass_sparsemax, MulticlassSparsemax = register(MULTICLASS_SPARSEMAX)
fenchel_young, FenchelYoung = register(FENCHEL_YOUNG)
ranking_softmax, RankingSoftmax = register(RANKING_SOFTMAX)

# ------------------------------------------------------------------------------ issue 12: CTC
from .sequence import CTC_LOSS  # noqa: E402

ctc, CTC = register(CTC_LOSS)

# ---- issue 12: embedding and ranking losses
from .embedding import (  # noqa: E402
    CIRCLE,
    COSINE_EMBEDDING,
    HINGE_EMBEDDING,
    MARGIN_RANKING,
    NTXENT,
    TRIPLET_MARGIN,
    pair_masks,
)

ntxent, NTXent = register(NTXENT)
circle, Circle = register(CIRCLE)
triplet_margin, TripletMargin = register(TRIPLET_MARGIN)
cosine_embedding, CosineEmbedding = register(COSINE_EMBEDDING)
margin_ranking, MarginRanking = register(MARGIN_RANKING)
hinge_embedding, HingeEmbedding = register(HINGE_EMBEDDING)
__all__ += ["pair_masks"]  # a helper, not a loss (the losses' names are derived by register)

# ---- issue 12: knowledge distillation
from .distillation import GENERALIZED_JSD, LOGITS_DISTILLATION  # noqa: E402

logits_distillation, LogitsDistillation = register(LOGITS_DISTILLATION)
generalized_jsd, GeneralizedJSD = register(GENERALIZED_JSD)
