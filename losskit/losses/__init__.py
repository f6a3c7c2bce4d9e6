"""Every loss, declared once in its family module and registered here."""

from ._registry import register
from .crossentropy import (
    BINARY_CROSSENTROPY,
    CATEGORICAL_CROSSENTROPY,
    SPARSE_CATEGORICAL_CROSSENTROPY,
)
from .divergence import KL_DIVERGENCE
from .margin import HINGE
from .regression import MEAN_ABSOLUTE_ERROR, MEAN_SQUARED_ERROR

mean_squared_error, MeanSquaredError = register(MEAN_SQUARED_ERROR)
mean_absolute_error, MeanAbsoluteError = register(MEAN_ABSOLUTE_ERROR)
binary_crossentropy, BinaryCrossentropy = register(BINARY_CROSSENTROPY)
categorical_crossentropy, CategoricalCrossentropy = register(CATEGORICAL_CROSSENTROPY)
sparse_categorical_crossentropy, SparseCategoricalCrossentropy = register(
    SPARSE_CATEGORICAL_CROSSENTROPY)
hinge, Hinge = register(HINGE)
kl_divergence, KLDivergence = register(KL_DIVERGENCE)
