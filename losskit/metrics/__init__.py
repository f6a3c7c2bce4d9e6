"""Exact, mergeable means of losses over streams of batches, per slice, with bootstrap intervals.

``LossMean`` scores batches with any registered loss (through ``Loss.call``, the public per-sample
API) and keeps exact sums, so its means are correctly rounded and bit-identical whatever the batch
sizes, the partitioning and the merge order. ``evaluate`` (in :mod:`losskit.metrics.files`) runs it
over Parquet or CSV files, on one machine or on a Dask cluster; ``losskit evaluate`` is its command
line. This package imports only NumPy; the file readers, Dask and the plots import ``pyarrow``,
``dask``/``distributed`` and ``matplotlib`` when used (``pip install 'losskit[data]'``).

>>> import numpy as np
>>> from losskit.metrics import LossMean
>>> m = LossMean("mse")
>>> for batch in np.array_split(np.arange(10.0), 3):
...     m.update(np.zeros_like(batch), batch)
>>> m.result()          # (0 + 1 + 4 + ... + 81) / 10
28.5
"""

from ._accumulate import REASONS, BadRowError, LossMean, factorize
from ._bootstrap import percentile_interval, poisson_weights
from ._exact import mean_of

exact_mean = mean_of

__all__ = ["REASONS", "BadRowError", "LossMean", "exact_mean", "factorize", "percentile_interval",
           "poisson_weights"]
