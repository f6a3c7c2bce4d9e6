"""Every loss, declared once in its family module and registered here.

Each family has its own section below (one ``register`` line per loss and its names in ``__all__``);
``losskit/__init__.py`` re-exports everything listed in ``__all__``.
"""

from ._registry import register
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

# ----------------------------------------------------------------------------- the tutorial's seven
mean_squared_error, MeanSquaredError = register(MEAN_SQUARED_ERROR)
mean_absolute_error, MeanAbsoluteError = register(MEAN_ABSOLUTE_ERROR)
binary_crossentropy, BinaryCrossentropy = register(BINARY_CROSSENTROPY)
categorical_crossentropy, CategoricalCrossentropy = register(CATEGORICAL_CROSSENTROPY)
sparse_categorical_crossentropy, SparseCategoricalCrossentropy = register(
    SPARSE_CATEGORICAL_CROSSENTROPY)
hinge, Hinge = register(HINGE)
kl_divergence, KLDivergence = register(KL_DIVERGENCE)

__all__ = [
    "BinaryCrossentropy", "CategoricalCrossentropy", "Hinge", "KLDivergence", "MeanAbsoluteError",
    "MeanSquaredError", "SparseCategoricalCrossentropy", "binary_crossentropy",
    "categorical_crossentropy", "hinge", "kl_divergence", "mean_absolute_error", "mean_squared_error",
    "sparse_categorical_crossentropy",
]

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
__all__ += [
    "CosineSimilarity", "GaussianNLL", "Huber", "LogCosh", "MeanAbsolutePercentageError",
    "MeanGammaDeviance", "MeanSquaredLogarithmicError", "MeanTweedieDeviance", "Pinball",
    "Poisson", "PoissonNLL", "SmoothL1", "cosine_similarity", "gaussian_nll", "huber", "log_cosh",
    "mean_absolute_percentage_error", "mean_gamma_deviance", "mean_squared_logarithmic_error",
    "mean_tweedie_deviance", "pinball", "poisson", "poisson_nll", "smooth_l1",
]

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
__all__ += [
    "NLL", "BinaryFocalCrossentropy", "CategoricalFocalCrossentropy", "CategoricalGeneralizedCrossEntropy",
    "PolyLossCrossEntropy", "binary_focal_crossentropy", "categorical_focal_crossentropy",
    "categorical_generalized_cross_entropy", "nll", "poly_loss_cross_entropy",
]

# ----------------------------------------------------------------------------- divergences (catalog)
kl_div, KLDiv = register(KL_DIV)
generalized_kl_divergence, GeneralizedKLDivergence = register(GENERALIZED_KL_DIVERGENCE)
jensen_shannon_divergence, JensenShannonDivergence = register(JENSEN_SHANNON_DIVERGENCE)
total_variation_distance, TotalVariationDistance = register(TOTAL_VARIATION_DISTANCE)
__all__ += [
    "GeneralizedKLDivergence", "JensenShannonDivergence", "KLDiv", "TotalVariationDistance",
    "generalized_kl_divergence", "jensen_shannon_divergence", "kl_div", "total_variation_distance",
]

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
__all__ += [
    "CategoricalHinge", "MultiLabelMargin", "MultiLabelSoftMargin", "MultiMargin", "MulticlassHinge",
    "MulticlassPerceptron", "Perceptron", "SoftMargin", "SquaredHinge", "categorical_hinge",
    "multi_margin", "multiclass_hinge", "multiclass_perceptron", "multilabel_margin",
    "multilabel_soft_margin", "perceptron", "soft_margin", "squared_hinge",
]

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
__all__ += [
    "Circle", "CosineEmbedding", "HingeEmbedding", "MarginRanking", "NTXent", "TripletMargin",
    "circle", "cosine_embedding", "hinge_embedding", "margin_ranking", "ntxent", "pair_masks",
    "triplet_margin",
]
