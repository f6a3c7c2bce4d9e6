"""Evaluate losses on Parquet or CSV files (pyarrow, record batch by record batch) or on a Dask
DataFrame (partition by partition, states merged in a tree).

Memory: one record batch (``batch_rows`` rows of the selected columns, plus its per-sample values and
temporaries, a few times its size) and the accumulators, whatever the size of the files. On Dask, the
same per worker thread, for one partition.

Imports ``pyarrow`` (and ``dask``, ``distributed``) when called; ``pip install 'losskit[data]'``.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._accumulate import _CODE, LossMean
from ._extras import Histogram, Reliability

INSTALL = "pip install 'losskit[data]'"
NUMBER = r"^\s*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[iI]nf(inity)?|[nN]a[nN])\s*$"


class EvaluationError(Exception):
    """An input the evaluation cannot use (a file, a column, a type); its message is one line."""


def require(module: str) -> Any:
    """Import an optional dependency, or fail with the way to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise EvaluationError(f"{module.split('.')[0]} is needed for this; install it with: "
                              f"{INSTALL}") from None


# --------------------------------------------------------------------------------------- sources


def find_files(sources: Sequence[str]) -> list[str]:
    """Files named, globbed or inside the named folders, sorted within each argument."""
    files: list[str] = []
    for src in sources:
        if os.path.isdir(src):
            found = sorted(os.path.join(root, f) for root, _, names in os.walk(src) for f in names
                           if f.endswith((".parquet", ".pq", ".csv", ".csv.gz")))
            if not found:
                raise EvaluationError(f"{src}: folder holds no .parquet or .csv file")
            files += found
        elif any(ch in src for ch in "*?["):
            found = sorted(glob.glob(src))
            if not found:
                raise EvaluationError(f"{src}: no file matches")
            files += found
        elif os.path.exists(src):
            files.append(src)
        else:
            raise EvaluationError(f"{src}: no such file")
    return files


def file_format(path: str) -> str:
    return "csv" if path.endswith((".csv", ".csv.gz", ".tsv")) else "parquet"


@dataclass
class Columns:
    """Which columns hold what, resolved against a file's schema."""

    y_true: str
    y_pred: list[str]
    weight: str | None = None
    by: list[str] = field(default_factory=list)
    text: bool = False   # numbers arrive as text (CSV): parse them, counting what does not parse

    @property
    def all(self) -> list[str]:
        return list(dict.fromkeys([self.y_true, *self.y_pred, *([self.weight] if self.weight else []),
                                   *self.by]))


def resolve(names: Sequence[str], y_true: str, y_pred: str, weight: str | None,
            by: Sequence[str], where: str) -> Columns:
    """Check the columns exist; expand a glob or a comma-separated list for ``y_pred``."""
    if any(ch in y_pred for ch in "*?["):
        preds = [n for n in names if fnmatch.fnmatchcase(n, y_pred)]
        if not preds:
            raise EvaluationError(f"{where}: no column matches --y-pred {y_pred!r} "
                                  f"(columns: {', '.join(names)})")
    else:
        preds = [p.strip() for p in y_pred.split(",") if p.strip()]
    for col in [y_true, *preds, *([weight] if weight else []), *by]:
        if col not in names:
            raise EvaluationError(f"{where}: no column {col!r} (columns: {', '.join(names)})")
    return Columns(y_true, preds, weight, list(by))


# ----------------------------------------------------------------------------- batches to arrays


@dataclass
class Inputs:
    y_true: np.ndarray
    y_pred: np.ndarray
    weight: np.ndarray | None
    keys: dict[str, Any]
    status: np.ndarray


def _numeric(pa: Any, pc: Any, arr: Any, name: str, status: np.ndarray, where: str,
             allow_list: bool, text: bool = False) -> np.ndarray:
    """A column as float64 (integer columns as they are); nulls and unparsable text marked."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if text and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        missing = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        good = pc.fill_null(pc.match_substring_regex(arr, NUMBER), False)
        bad_text = ~np.asarray(good.to_numpy(zero_copy_only=False), dtype=bool) & ~missing
        status[(status == 0) & missing] = _CODE["missing"]
        status[(status == 0) & bad_text] = _CODE["unparsable"]
        cleaned = pc.if_else(good, arr, pa.scalar(None, arr.type))
        out = pc.cast(cleaned, pa.float64()).to_numpy(zero_copy_only=False)
        return np.asarray(out, dtype=np.float64)
    if allow_list and (pa.types.is_list(t) or pa.types.is_large_list(t)
                       or pa.types.is_fixed_size_list(t)):
        missing = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy()
        present = lengths[~missing]
        if present.size and (present != present[0]).any():
            raise EvaluationError(f"{where}: list column {name!r} has rows of different lengths "
                                  f"({int(present.min())} to {int(present.max())})")
        k = int(present[0]) if present.size else 1
        flat = _numeric(pa, pc, pc.list_flatten(arr), name, np.zeros(0, np.int8), where, False)
        out = np.full((len(arr), k), np.nan)
        out[~missing] = flat.reshape(-1, k)
        status[(status == 0) & missing] = _CODE["missing"]
        return out
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_null(t)):
        raise EvaluationError(f"{where}: column {name!r} has type {t}; expected numbers"
                              + (" or a list of numbers" if allow_list else ""))
    if arr.null_count:
        missing = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        status[(status == 0) & missing] = _CODE["missing"]
    elif pa.types.is_integer(t):   # the file's integer type, without a copy
        return np.asarray(arr.to_numpy(zero_copy_only=False))
    elif pa.types.is_floating(t):
        return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def batch_inputs(batch: Any, cols: Columns, where: str) -> Inputs:
    """Arrays for :meth:`LossMean.update` from a ``pyarrow.RecordBatch`` (or Table)."""
    pa = require("pyarrow")
    pc = require("pyarrow.compute")
    n = batch.num_rows
    status = np.zeros(n, dtype=np.int8)

    def column(name: str) -> Any:
        col = batch.column(name)
        return col.combine_chunks() if hasattr(col, "combine_chunks") else col

    y_true = _numeric(pa, pc, column(cols.y_true), cols.y_true, status, where, True, cols.text)
    preds = [_numeric(pa, pc, column(c), c, status, where, len(cols.y_pred) == 1, cols.text)
             for c in cols.y_pred]
    y_pred = preds[0] if len(preds) == 1 else np.stack(preds, axis=1)
    weight = None
    if cols.weight:
        weight = _numeric(pa, pc, column(cols.weight), cols.weight, status, where, False, cols.text)
        weight = weight.astype(np.float64)
    keys = {}
    for name in cols.by:
        enc = pc.dictionary_encode(column(name))
        codes = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False),
                           dtype=np.int64)
        keys[name] = (codes, enc.dictionary.to_pylist())
    return Inputs(y_true, y_pred, weight, keys, status)


def iter_batches(files: Sequence[str], columns: Callable[[list[str], str], Columns],
                 batch_rows: int) -> Iterator[tuple[str, Any, Columns, int]]:
    """``(file, record batch, columns, bytes read so far in this file)`` for every batch."""
    pa = require("pyarrow")
    for path in files:
        try:
            if file_format(path) == "csv":
                yield from _csv_batches(pa, path, columns, batch_rows)
            else:
                yield from _parquet_batches(pa, path, columns, batch_rows)
        except EvaluationError:
            raise
        except (pa.ArrowException, OSError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EvaluationError(f"{path}: cannot read it as {file_format(path).upper()}: "
                                  f"{msg}") from None


def _parquet_batches(pa: Any, path: str, columns: Callable[[list[str], str], Columns],
                     batch_rows: int) -> Iterator[tuple[str, Any, Columns, int]]:
    import pyarrow.parquet as pq

    if os.path.getsize(path) == 0:
        raise EvaluationError(f"{path}: the file is empty")
    # no pre-buffering: by default pyarrow reads ahead column chunks of many row groups, and its
    # memory then grows with the file (88 MiB at 10**7 rows against 8 MiB without, same speed)
    pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    cols = columns(pf.schema_arrow.names, path)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=cols.all, use_threads=False):
        yield path, batch, cols, 0


def _csv_batches(pa: Any, path: str, columns: Callable[[list[str], str], Columns],
                 batch_rows: int) -> Iterator[tuple[str, Any, Columns, int]]:
    import pyarrow.csv as pcsv

    if os.path.getsize(path) == 0:
        raise EvaluationError(f"{path}: the file is empty")
    with open(path, "rb") as fh:
        header = fh.readline().decode("utf-8", "replace").rstrip("\r\n")
    names = [h.strip().strip('"') for h in header.split(",")]
    cols = columns(names, path)
    cols = Columns(cols.y_true, cols.y_pred, cols.weight, cols.by, text=True)
    numeric = [cols.y_true, *cols.y_pred, *([cols.weight] if cols.weight else [])]
    block = max(1 << 16, min(batch_rows * 64, 1 << 26))
    stream = pa.OSFile(path, "rb")
    reader = pcsv.open_csv(
        stream, read_options=pcsv.ReadOptions(block_size=block),
        convert_options=pcsv.ConvertOptions(
            include_columns=cols.all, column_types={c: pa.string() for c in numeric},
            strings_can_be_null=True, null_values=[""]))
    for batch in reader:
        yield path, batch, cols, stream.tell()


def total_rows(files: Sequence[str]) -> tuple[int | None, int]:
    """Rows in the Parquet files (from their metadata; None if any file is CSV) and total bytes."""
    import pyarrow.parquet as pq

    rows: int | None = 0
    size = 0
    for f in files:
        size += os.path.getsize(f)
        if file_format(f) == "csv" or rows is None:
            rows = None
        else:
            try:
                rows += pq.ParquetFile(f).metadata.num_rows
            except Exception:  # reported properly when the file is read
                rows = None
    return rows, size


# ----------------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """What an evaluation produced: the accumulator (means, slices, intervals, refused rows), the
    per-loss histograms, the reliability table (binary probabilities) and the run's figures."""

    metric: LossMean
    histograms: dict[str, Histogram]
    reliability: Reliability | None
    seconds: float = 0.0
    ci: float | None = 0.95

    def merge(self, other: Evaluation) -> Evaluation:
        self.metric.merge(other.metric)
        for k, h in other.histograms.items():
            self.histograms[k].merge(h)
        if self.reliability is None or other.reliability is None:
            self.reliability = None
        else:
            self.reliability.merge(other.reliability)
        return self


@dataclass
class Spec:
    """Everything a worker needs to score a batch (picklable: sent to Dask workers)."""

    losses: list[Any]
    y_true: str
    y_pred: str
    weight: str | None
    by: list[Any]
    replicates: int
    seed: int
    on_bad_row: str
    summaries: bool = True   # the histograms and the reliability table (for the plots)

    def slice_columns(self) -> list[str]:
        cols: list[str] = []
        for item in self.by:
            cols += [item] if isinstance(item, str) else list(item)
        return list(dict.fromkeys(cols))

    def new(self) -> Evaluation:
        metric = LossMean(self.losses, by=self.by or None, replicates=self.replicates, seed=self.seed,
                          on_bad_row=self.on_bad_row)
        hist = {label: Histogram() for label in metric.labels} if self.summaries else {}
        first = self.slice_columns()[0] if self.by else None
        return Evaluation(metric, hist, Reliability(first) if self.summaries else None)

    def add(self, ev: Evaluation, inputs: Inputs, offset: int) -> None:
        scored = ev.metric.update(inputs.y_true, inputs.y_pred, inputs.weight, keys=inputs.keys,
                                  row_offset=offset, row_status=inputs.status,
                                  keep_values=self.summaries)
        if not self.summaries:
            return
        scored = scored or []
        ok_all = np.ones(inputs.status.shape, dtype=bool)
        for label, (codes, values) in zip(ev.metric.labels, scored, strict=True):
            ok = codes == 0
            ev.histograms[label].update(values[ok])
            ok_all &= ok
        _reliability(ev, inputs, ok_all)


def _reliability(ev: Evaluation, inputs: Inputs, ok: np.ndarray) -> None:
    """The reliability table, while every scored prediction is a probability and the labels 0/1."""
    rel = ev.reliability
    if rel is None:
        return
    p, y = inputs.y_pred, inputs.y_true
    if (p.ndim == 2 and p.shape[1] != 1) or (y.ndim == 2 and y.shape[1] != 1):
        ev.reliability = None
        return
    p, y = p.reshape(-1)[ok], y.reshape(-1)[ok]
    if not (((p >= 0) & (p <= 1)).all() and ((y == 0) | (y == 1)).all()):
        ev.reliability = None   # logits, scores or soft labels: no reliability diagram
        return
    keys = None
    if rel.slicing.names:
        codes, uniques = inputs.keys[rel.slicing.names[0]]
        keys = {rel.slicing.names[0]: (codes[ok], uniques)}
    rel.update(y, p, keys)


def evaluate(source: Any, *, y_true: str, y_pred: str, losses: Sequence[Any],
             weight: str | None = None, by: Sequence[Any] = (), replicates: int = 0, seed: int = 0,
             ci: float | None = 0.95, on_bad_row: str = "error", batch_rows: int = 1 << 17,
             progress: Callable[[int, int, int | None], None] | None = None,
             scheduler: str | None = None, summaries: bool = True,
             threads: int | None = None) -> Evaluation:
    """Evaluate losses on files (paths, globs, folders) or a ``dask.dataframe.DataFrame``.

    ``y_pred``: one column (numbers or a list of numbers per row), several columns separated by
    commas, or a glob over column names (``"logit_*"``, in the file's column order). ``by``: slice
    columns (a name, or a list of names for a crossed slice). ``scheduler``: None (this process),
    ``"local"`` (a ``distributed.LocalCluster``) or a scheduler address (``"tcp://host:8786"``).
    The result is the same, bit for bit, whichever runs it. ``summaries``: also keep the histogram of
    per-sample values and the reliability table that the plots need. ``threads``: record batches
    scored at once in this process (default: the number of CPUs, at most 4), each thread into its
    own accumulator, merged at the end (exact sums: the same bits as one thread); memory is then up
    to twice that many batches.
    """
    started = time.perf_counter()
    spec = Spec(list(losses), y_true, y_pred, weight, list(by), replicates, seed, on_bad_row,
                summaries)
    if _is_dask(source) or scheduler is not None:
        from .cluster import evaluate_dask

        ev = evaluate_dask(source, spec, scheduler=scheduler, batch_rows=batch_rows)
    else:
        files = find_files([os.fspath(source)] if isinstance(source, str | os.PathLike)
                           else [os.fspath(s) for s in source])
        nthreads = threads if threads is not None else min(os.cpu_count() or 1, 4)
        if nthreads < 1:
            raise ValueError(f"threads must be >= 1; found {threads!r}")
        pool = _Pool(spec, nthreads)
        offset = 0
        cols_cache: dict[tuple[str, ...], Columns] = {}

        def columns(names: list[str], where: str) -> Columns:
            key = tuple(names)
            if key not in cols_cache:
                cols_cache[key] = resolve(names, y_true, y_pred, weight, spec.slice_columns(), where)
            return cols_cache[key]

        done_bytes = 0
        current, last_pos = None, 0
        try:
            for path, batch, cols, pos in iter_batches(files, columns, batch_rows):
                if path != current:
                    current, last_pos = path, 0
                if not pool.put(batch, cols, path, offset):
                    break   # a thread failed: stop reading, report the first error in row order
                offset += batch.num_rows
                done_bytes += max(pos - last_pos, 0)
                last_pos = pos
                if progress is not None:
                    progress(offset, done_bytes, batch.num_rows)
        finally:
            ev = pool.finish()
        if offset == 0:
            raise EvaluationError(f"{', '.join(files)}: no rows to evaluate")
    ev.seconds = time.perf_counter() - started
    ev.ci = ci
    return ev


class _Pool:
    """Score record batches on ``n`` threads, each into its own :class:`Evaluation` (NumPy and
    pyarrow release the GIL in their loops); with ``n = 1``, in the calling thread."""

    def __init__(self, spec: Spec, n: int) -> None:
        import queue
        import threading

        self.spec = spec
        self.evs = [spec.new() for _ in range(n)]
        self.errors: list[tuple[int, BaseException]] = []
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=n)
        self.threads = [threading.Thread(target=self._work, args=(ev,), daemon=True)
                        for ev in self.evs] if n > 1 else []
        for t in self.threads:
            t.start()

    def _work(self, ev: Evaluation) -> None:
        from .._backends.numpy import calling_thread_only

        with calling_thread_only():  # batches run in parallel already: no nested hand-offs
            while True:
                item = self.queue.get()
                if item is None:
                    return
                self._score(ev, *item)

    def _score(self, ev: Evaluation, batch: Any, cols: Columns, path: str, offset: int) -> None:
        try:
            self.spec.add(ev, batch_inputs(batch, cols, path), offset)
        except Exception as exc:   # re-raised by finish(), the earliest row first
            self.errors.append((int(getattr(exc, "row", offset)), exc))

    def put(self, batch: Any, cols: Columns, path: str, offset: int) -> bool:
        """Queue a batch (or score it here, with one thread); False once a batch has failed."""
        if self.errors:
            return False
        if self.threads:
            self.queue.put((batch, cols, path, offset))
        else:
            self._score(self.evs[0], batch, cols, path, offset)
        return not self.errors

    def finish(self) -> Evaluation:
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()
        if self.errors:
            raise min(self.errors, key=lambda e: e[0])[1]
        ev = self.evs[0]
        for other in self.evs[1:]:
            ev.merge(other)
        return ev


def _is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask")
