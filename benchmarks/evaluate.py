"""Evaluation speed and memory: ``losskit evaluate`` against pyarrow reading alone and scikit-learn.

On a Parquet file of ``--rows`` rows (default 10**7: an int8 label, a float64 probability, a country
string), each measured in its own fresh Python process, the methods interleaved over ``--repeats``
rounds (the best time of each is kept):

* ``pyarrow read``: the same two columns read batch by batch to NumPy, nothing else (the I/O limit;
  with the reader settings losskit uses, which read as fast as the defaults and keep memory flat);
* ``losskit``: ``losskit.metrics.files.evaluate`` with binary cross-entropy, exact mean (batches
  scored on as many threads as CPUs, at most 4);
* ``losskit, 1 thread``: the same on one thread;
* ``losskit, with plot summaries``: the same plus the histogram and reliability table the plots need;
* ``losskit by country``: the same with a slice per country;
* ``losskit by country, 20 replicates``: the same with Poisson-bootstrap intervals;
* ``sklearn log_loss``: ``pandas.read_parquet`` of the two columns, then ``sklearn.metrics.log_loss``.

Peak memory is the process's maximum resident set size minus its size after the imports. A second
table runs ``losskit`` on files of 10**6 and ``--rows`` rows: with batches of 131,072 rows its peak
stays flat while the file grows. A third compares the exact mean with a float32 running mean (what
Keras's and torchmetrics' ``Mean`` keep) on the per-sample losses of the file, by batch size and with
the batches shuffled. Writes ``docs/evaluate-bench.json``; the figures in ``docs/evaluate.md`` come
from it.

Run: python benchmarks/evaluate.py [--rows N] [--repeats N] [--quick] [--only METHOD ...]
(``--only``: those methods and the read, figures on the terminal only, no JSON written)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORKERS = {
    "pyarrow read": """
import pyarrow.parquet as pq, numpy as np
start()
n = 0
for b in pq.ParquetFile(PATH, pre_buffer=False, buffer_size=1 << 20).iter_batches(
        batch_size=131072, columns=["label", "prob"], use_threads=False):
    y = b.column(0).to_numpy(); p = b.column(1).to_numpy(); n += len(p)
stop(n)
""",
    "losskit": """
from losskit.metrics.files import evaluate
start()
ev = evaluate(PATH, y_true="label", y_pred="prob", losses=["binary_crossentropy"], summaries=False)
stop(ev.metric.rows, ev.metric.result()["binary_crossentropy"])
""",
    "losskit, 1 thread": """
from losskit.metrics.files import evaluate
start()
ev = evaluate(PATH, y_true="label", y_pred="prob", losses=["binary_crossentropy"], summaries=False,
              threads=1)
stop(ev.metric.rows, ev.metric.result()["binary_crossentropy"])
""",
    "losskit by country": """
from losskit.metrics.files import evaluate
start()
ev = evaluate(PATH, y_true="label", y_pred="prob", losses=["binary_crossentropy"], by=["country"],
              summaries=False)
stop(ev.metric.rows, ev.metric.result()["binary_crossentropy"])
""",
    "losskit by country, 20 replicates": """
from losskit.metrics.files import evaluate
start()
ev = evaluate(PATH, y_true="label", y_pred="prob", losses=["binary_crossentropy"], by=["country"],
              replicates=20, summaries=False)
stop(ev.metric.rows, ev.metric.result()["binary_crossentropy"])
""",
    "losskit, with plot summaries": """
from losskit.metrics.files import evaluate
start()
ev = evaluate(PATH, y_true="label", y_pred="prob", losses=["binary_crossentropy"])
stop(ev.metric.rows, ev.metric.result()["binary_crossentropy"])
""",
    "sklearn log_loss": """
import pandas as pd
from sklearn.metrics import log_loss
start()
df = pd.read_parquet(PATH, columns=["label", "prob"])
value = log_loss(df["label"].to_numpy(), df["prob"].to_numpy())
stop(len(df), float(value))
""",
}

PRELUDE = """
import resource, time, json, sys
import numpy, pyarrow, pyarrow.parquet, pandas, sklearn.metrics, losskit, losskit.metrics.files
PATH = sys.argv[1]
def _rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
def _cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
_base = [0, 0.0, 0.0]
def start():
    _base[0] = _rss(); _base[2] = _cpu(); _base[1] = time.perf_counter()
def stop(rows, value=None):
    t = time.perf_counter() - _base[1]
    print(json.dumps({"seconds": t, "cpu_seconds": _cpu() - _base[2], "rows": rows,
                      "peak_bytes": _rss() - _base[0], "value": value}))
"""


def make_file(path: str, rows: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    countries = np.array(["US", "DE", "FR", "GB", "JP", "BR", "IN", "ES", "IT", "CA"])
    writer = None
    for start in range(0, rows, 1_000_000):
        n = min(1_000_000, rows - start)
        logit = rng.normal(-2.0, 1.5, n)
        p = 1 / (1 + np.exp(-logit))
        y = (rng.random(n) < p).astype(np.int8)
        table = pa.table({"label": y, "prob": p,
                          "country": pa.array(countries[rng.integers(0, 10, n)]).dictionary_encode()})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=1_000_000)
    if writer is not None:
        writer.close()


def run_worker(name: str, path: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", PRELUDE + WORKERS[name], path], capture_output=True,
                          text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(f"{name} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def drift(path: str, batch_sizes: list[int]) -> dict:
    """Exact mean vs float32 running means of the per-sample log losses of the file."""
    import numpy as np
    import pyarrow.parquet as pq

    import losskit
    from losskit.metrics import exact_mean

    t = pq.read_table(path, columns=["label", "prob"])
    y = t.column("label").to_numpy().astype(np.float64)
    p = t.column("prob").to_numpy()
    values = np.asarray(losskit.binary_crossentropy(y[:, None], p[:, None]))
    exact = exact_mean(values)
    try:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras

        peer = "keras.metrics.Mean (float32)"

        def running_mean(order: list[np.ndarray]) -> float:
            m = keras.metrics.Mean(dtype="float32")
            for chunk in order:
                m.update_state(chunk)
            return float(m.result())
    except ImportError:
        peer = "a float32 running mean (total += sum(batch) in float32), as Keras/torchmetrics Mean"

        def running_mean(order: list[np.ndarray]) -> float:
            total, count = np.float32(0), 0
            for chunk in order:
                total = np.float32(total + chunk.astype(np.float32).sum(dtype=np.float32))
                count += chunk.size
            return float(total / np.float32(count))

    rng = np.random.default_rng(1)
    rows = []
    for bs in batch_sizes:
        chunks = np.array_split(values, max(1, values.size // bs))
        shuffled = [chunks[i] for i in rng.permutation(len(chunks))]
        in_order, other_order = running_mean(chunks), running_mean(shuffled)
        rows.append({"batch": bs, "float32": in_order, "float32_shuffled": other_order,
                     "rel_error": abs(in_order - exact) / exact,
                     "rel_error_shuffled": abs(other_order - exact) / exact})
    return {"peer": peer, "exact": exact, "numpy_float64_mean": float(values.mean()),
            "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="10**5 rows, one round (a smoke test)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only these methods (the pyarrow read always runs)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "evaluate-bench.json"))
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 100_000, 1
    with tempfile.TemporaryDirectory() as tmp:
        big = os.path.join(tmp, "big.parquet")
        small = os.path.join(tmp, "small.parquet")
        t0 = time.perf_counter()
        make_file(big, args.rows)
        make_file(small, max(args.rows // 10, 1))   # the same row groups, a tenth of the rows
        print(f"files written in {time.perf_counter() - t0:.1f} s "
              f"({os.path.getsize(big) / 2**20:.0f} MiB, {args.rows:,} rows)", file=sys.stderr)
        names = [n for n in WORKERS if args.only is None or n in args.only or n == "pyarrow read"]
        results: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(args.repeats):
            for name in names:
                results[name].append(run_worker(name, big))
                print(f"{name}: {results[name][-1]['seconds']:.2f} s", file=sys.stderr)
        best = {name: min(rs, key=lambda r: r["seconds"]) for name, rs in results.items()}
        small_run = run_worker("losskit", small) if args.only is None else {}
        drift_rows = drift(big, [1_000, 100_000]) if args.only is None else {}
    base = best["pyarrow read"]["seconds"]
    reads = results["pyarrow read"]
    # the same round's read beside each run (the load of a shared machine changes between rounds)
    per_round = {name: sorted(r["seconds"] / q["seconds"] for r, q in zip(rs, reads, strict=True))
                 for name, rs in results.items()}
    cpu_base = min(r["cpu_seconds"] for r in reads)
    ratios = {name: {"best": best[name]["seconds"] / base,
                     "median_of_rounds": v[len(v) // 2],
                     "cpu": min(r["cpu_seconds"] for r in results[name]) / cpu_base}
              for name, v in per_round.items()}
    print(f"\n{args.rows:,} rows, best of {args.repeats}; ratio = time / pyarrow read time (best "
          f"against best; median over rounds of the ratio to the same round's read; best CPU time "
          f"against best CPU time); load average {os.getloadavg()[0]:.1f}\n")
    print("| method | seconds | rows/s | ratio | ratio, median of rounds | CPU ratio | "
          "peak memory MiB | mean |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in best.items():
        value = "" if r["value"] is None else repr(r["value"])
        q = ratios[name]
        print(f"| {name} | {r['seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} | "
              f"{q['best']:.2f} | {q['median_of_rounds']:.2f} | {q['cpu']:.2f} | "
              f"{r['peak_bytes'] / 2**20:.0f} | {value} |")
    if args.only is not None:   # a partial run: figures on the terminal only
        return 0
    print(f"\npeak memory of losskit: {small_run['peak_bytes'] / 2**20:.0f} MiB on "
          f"{small_run['rows']:,} rows, {best['losskit']['peak_bytes'] / 2**20:.0f} MiB on "
          f"{best['losskit']['rows']:,} rows")
    print(f"\ndrift of {drift_rows['peer']} from the exact mean {drift_rows['exact']!r}:")
    for r in drift_rows["rows"]:
        print(f"  batch {r['batch']:>7,}: {r['float32']!r} (relative error {r['rel_error']:.2e}); "
              f"batches shuffled: {r['float32_shuffled']!r} ({r['rel_error_shuffled']:.2e})")
    with open(args.output, "w") as fh:
        json.dump({"rows": args.rows, "repeats": args.repeats, "load_average": os.getloadavg(),
                   "best": best, "ratios": ratios, "all": results, "small": small_run,
                   "drift": drift_rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
