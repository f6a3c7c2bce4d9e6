"""The file evaluation on Dask: one accumulator per partition, the states merged in a tree.

Each partition is scored with the global index of its first row (the partition offsets, from the
partition lengths), so its bootstrap weights are those of a single pass; the exact sums make the merge
order irrelevant. The result is bit-identical to :func:`losskit.metrics.files.evaluate` run in one
process.
"""

from __future__ import annotations

import os
from typing import Any

from .files import (
    Columns,
    Evaluation,
    EvaluationError,
    Spec,
    batch_inputs,
    file_format,
    find_files,
    require,
    resolve,
)


def _score_partition(df: Any, offset: int, index: int, spec: Spec, cols: Columns,
                     batch_rows: int) -> Evaluation:
    pa = require("pyarrow")
    ev = spec.new()
    table = pa.Table.from_pandas(df, preserve_index=False)
    done = 0
    for batch in table.to_batches(max_chunksize=batch_rows):
        spec.add(ev, batch_inputs(batch, cols, f"partition {index}"), offset + done)
        done += batch.num_rows
    return ev


def _merge(a: Evaluation, b: Evaluation) -> Evaluation:
    return a.merge(b)


def _frame(source: Any, spec: Spec) -> tuple[Any, Columns]:
    dd = require("dask.dataframe")
    if type(source).__module__.startswith("dask"):
        names = [str(c) for c in source.columns]
        cols = resolve(names, spec.y_true, spec.y_pred, spec.weight, spec.slice_columns(),
                       "the DataFrame")
        return source[cols.all], cols
    files = find_files([os.fspath(source)] if isinstance(source, str | os.PathLike)
                       else [os.fspath(s) for s in source])
    formats = {file_format(f) for f in files}
    if len(formats) > 1:
        raise EvaluationError("with Dask, give either Parquet or CSV files, not both")
    first = files[0]
    if os.path.getsize(first) == 0:
        raise EvaluationError(f"{first}: the file is empty")
    if formats == {"csv"}:
        with open(first, "rb") as fh:
            header = fh.readline().decode("utf-8", "replace").rstrip("\r\n")
        names = [h.strip().strip('"') for h in header.split(",")]
        cols = resolve(names, spec.y_true, spec.y_pred, spec.weight, spec.slice_columns(), first)
        cols.text = True
        ddf = dd.read_csv(files, usecols=cols.all, dtype={c: "string" for c in cols.all},
                          keep_default_na=False, na_values=[""], blocksize="64MB")
        return ddf[cols.all], cols
    pq = require("pyarrow.parquet")
    try:
        names = pq.ParquetFile(first).schema_arrow.names
    except Exception as exc:
        raise EvaluationError(f"{first}: cannot read it as PARQUET: {str(exc).splitlines()[0]}") \
            from None
    cols = resolve(names, spec.y_true, spec.y_pred, spec.weight, spec.slice_columns(), first)
    return dd.read_parquet(files, columns=cols.all), cols


def evaluate_dask(source: Any, spec: Spec, *, scheduler: str | None = None,
                  batch_rows: int = 1 << 17) -> Evaluation:
    """Score every partition of ``source`` (files or a ``dask.dataframe.DataFrame``) on the
    scheduler (``"local"``: a ``LocalCluster`` started here; an address; None: the current one)."""
    dask = require("dask")
    require("dask.dataframe")
    client = cluster = None
    if scheduler is not None:
        distributed = require("distributed")
        if scheduler == "local":
            cluster = distributed.LocalCluster(n_workers=min(os.cpu_count() or 1, 4),
                                               threads_per_worker=1, processes=False,
                                               dashboard_address=None)
            client = distributed.Client(cluster)
        else:
            try:
                client = distributed.Client(scheduler, timeout="10s")
            except OSError as exc:
                raise EvaluationError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    try:
        ddf, cols = _frame(source, spec)
        lengths = ddf.map_partitions(len).compute()
        offsets = [0]
        for n in list(lengths)[:-1]:
            offsets.append(offsets[-1] + int(n))
        score = dask.delayed(_score_partition, pure=True)
        merge = dask.delayed(_merge, pure=True)
        parts = [score(part, off, i, spec, cols, batch_rows)
                 for i, (part, off) in enumerate(zip(ddf.to_delayed(), offsets, strict=True))]
        if sum(int(n) for n in lengths) == 0:
            raise EvaluationError("no rows to evaluate")
        while len(parts) > 1:
            parts = [merge(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                     for i in range(0, len(parts), 2)]
        (result,) = dask.compute(parts[0])
        return result
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
