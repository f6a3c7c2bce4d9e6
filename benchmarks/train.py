"""Training speed: losskit.nn against Keras 3 (JAX backend) and a hand-written PyTorch loop.

Three measurements, every run in its own fresh Python process, one thread each (OMP, OpenBLAS, MKL
and ``torch.set_num_threads(1)``):

1. the Keras tutorial program end to end (interpreter start, imports, data, model, 10 epochs of
   ``fit`` with batch 32 and Adam), wall time of the whole process;
2. ``fit`` alone inside that process: the first call (Keras compiles here) and a second, warm one;
3. one epoch of a 784-256-10 MLP (relu, logits, sparse categorical cross-entropy from logits, Adam)
   on 60,000 random samples, batch 128, after a one-batch warm-up.

Then the tutorial's ``fit`` and the MLP epoch again with every framework's default threads (no
thread variable set, PyTorch's default pool, XLA multi-threaded) while one spinning process per core
keeps the machine busy, plus losskit with its BLAS limit switched off (the behaviour before issue 8:
NumPy's BLAS pool at its default size for every product).

Ratios are from this one run. Writes docs/train-speed.md.

Run: python benchmarks/train.py [--repeats N] [--quick]
(--quick: one run, 1,280 MLP samples, under load 256 samples and one-epoch fits; a smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parents[1]
THREADS = 1

# ---------------------------------------------------------------------------------- the workers
TUTORIAL = {
    "losskit": """
import time, numpy as np
from losskit.nn import Sequential, Dense
model = Sequential([Dense(64, input_shape=(10,), activation='relu'), Dense(32, activation='relu'), Dense(1)])
model.compile(optimizer='adam', loss='mean_squared_error')
x_train = np.random.rand(1000, 10); y_train = np.random.rand(1000, 1)
t0 = time.perf_counter(); model.fit(x_train, y_train, epochs=10, batch_size=32); t1 = time.perf_counter()
model.fit(x_train, y_train, epochs=10, batch_size=32); t2 = time.perf_counter()
""",
    "keras": """
import os, time; os.environ["KERAS_BACKEND"] = "jax"
import numpy as np
from keras.models import Sequential
from keras.layers import Dense
model = Sequential([Dense(64, input_shape=(10,), activation='relu'), Dense(32, activation='relu'), Dense(1)])
model.compile(optimizer='adam', loss='mean_squared_error')
x_train = np.random.rand(1000, 10); y_train = np.random.rand(1000, 1)
t0 = time.perf_counter(); model.fit(x_train, y_train, epochs=10, batch_size=32); t1 = time.perf_counter()
model.fit(x_train, y_train, epochs=10, batch_size=32); t2 = time.perf_counter()
""",
    "torch": """
import time, numpy as np, torch
torch.set_num_threads(@THREADS@)
nn = torch.nn
model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
loss_fn = torch.nn.MSELoss()
x_train = np.random.rand(1000, 10); y_train = np.random.rand(1000, 1)
def fit(x, y, epochs, batch_size):
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    for epoch in range(epochs):
        order = torch.randperm(len(x)); total = 0.0
        for lo in range(0, len(x), batch_size):
            idx = order[lo:lo + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{epochs} - loss: {total / len(x):.4f}")
t0 = time.perf_counter(); fit(x_train, y_train, 10, 32); t1 = time.perf_counter()
fit(x_train, y_train, 10, 32); t2 = time.perf_counter()
""".replace("@THREADS@", str(THREADS)),
}

MLP = {
    "losskit": """
import time, numpy as np, losskit
from losskit.nn import Sequential, Dense
rng = np.random.default_rng(0)
x = rng.random((@SAMPLES@, 784), dtype=np.float32); y = rng.integers(0, 10, @SAMPLES@)
model = Sequential([Dense(256, activation='relu', input_shape=(784,)), Dense(10)])
model.compile(optimizer='adam', loss=losskit.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x[:128], y[:128], epochs=1, batch_size=128, verbose=0)
t0 = time.perf_counter(); model.fit(x, y, epochs=1, batch_size=128, verbose=0); t1 = time.perf_counter()
t2 = t1
""",
    "keras": """
import os, time; os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
rng = np.random.default_rng(0)
x = rng.random((@SAMPLES@, 784), dtype=np.float32); y = rng.integers(0, 10, @SAMPLES@)
Dense = keras.layers.Dense
model = keras.Sequential([keras.Input((784,)), Dense(256, activation='relu'), Dense(10)])
model.compile(optimizer='adam', loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x[:128], y[:128], epochs=1, batch_size=128, verbose=0)
t0 = time.perf_counter(); model.fit(x, y, epochs=1, batch_size=128, verbose=0); t1 = time.perf_counter()
t2 = t1
""",
    "torch": """
import time, numpy as np, torch
torch.set_num_threads(@THREADS@)
rng = np.random.default_rng(0)
x = torch.tensor(rng.random((@SAMPLES@, 784), dtype=np.float32))
y = torch.tensor(rng.integers(0, 10, @SAMPLES@))
model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
loss_fn = torch.nn.CrossEntropyLoss()
def epoch(x, y, batch_size=128):
    order = torch.randperm(len(x)); total = 0.0
    for lo in range(0, len(x), batch_size):
        idx = order[lo:lo + batch_size]
        optimizer.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return total / len(x)
epoch(x[:128], y[:128])
t0 = time.perf_counter(); epoch(x, y); t1 = time.perf_counter()
t2 = t1
""".replace("@THREADS@", str(THREADS)),
}

UNLIMITED = "import losskit.nn._threads as _t; _t.threads_for = lambda macs: 1 << 20\n"  # the limit off
DEFAULT_TORCH = "torch.set_num_threads(1)"

REPORT = "\nimport json, sys; sys.__stdout__.write('\\nRESULT ' + json.dumps([t1 - t0, t2 - t1]) + '\\n')\n"


def _env(pinned: bool = True) -> dict[str, str]:
    """The workers' environment: one thread per framework when ``pinned``, else every default."""
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS"):
        env.pop(k, None)
    if pinned:
        env.update(OMP_NUM_THREADS=str(THREADS), OPENBLAS_NUM_THREADS=str(THREADS),
                   MKL_NUM_THREADS=str(THREADS),
                   XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    env.update(KERAS_BACKEND="jax", PYTHONPATH=str(ROOT))
    return env


def default_threads(program: str) -> str:
    """``program`` with its own thread pinning removed (PyTorch keeps its default pool)."""
    return program.replace(f"torch.set_num_threads({THREADS})", "pass")


@contextlib.contextmanager
def busy() -> Iterator[None]:
    """One process spinning on each core for the duration of the block (other work on the machine)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for p in spinners:
            p.terminate()
        for p in spinners:
            p.wait()


def run(program: str, pinned: bool = True) -> tuple[float, float, float]:
    """(whole-process wall time, first timed section, second timed section), in seconds."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", program + REPORT], capture_output=True, text=True,
                         env=_env(pinned), cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"worker failed:\n{out.stderr[-3000:]}")
    first, second = json.loads(out.stdout.rsplit("RESULT ", 1)[1])
    return wall, first, second


def best_of(programs: dict[str, str], repeats: int,
            pinned: bool = True) -> dict[str, tuple[float, float, float]]:
    """Each program ``repeats`` times, interleaved (so that load on the machine hits all alike);
    the best of each column."""
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in programs}
    for _ in range(repeats):
        for name, program in programs.items():
            runs[name].append(run(program, pinned))
    return {name: (min(r[0] for r in rs), min(r[1] for r in rs), min(r[2] for r in rs))
            for name, rs in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per program (best is kept)")
    parser.add_argument("--quick", action="store_true", help="one run each, 1,280 MLP samples (smoke test)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "train-speed.md"))
    args = parser.parse_args()
    samples = 1280 if args.quick else 60000
    if args.quick:
        args.repeats = 1
    tut = best_of(TUTORIAL, args.repeats)
    mlp_programs = {k: v.replace("@SAMPLES@", str(samples)) for k, v in MLP.items()}
    mlp = best_of(mlp_programs, args.repeats)
    lk_tut, lk_mlp = tut["losskit"], mlp["losskit"]
    loaded_samples = 256 if args.quick else 12800
    loaded_repeats = 1 if args.quick else 2

    def loaded_set(programs: dict[str, str]) -> dict[str, str]:
        out = {k: default_threads(v) for k, v in programs.items() if not args.quick or k == "losskit"}
        out["unlimited"] = UNLIMITED + out["losskit"]
        return out  # --quick: losskit only (the peers' programs are the pinned ones, unpinned)

    with busy():
        tutorial = {k: v.replace("epochs=10", "epochs=1") for k, v in TUTORIAL.items()} if args.quick \
            else TUTORIAL  # --quick: one epoch per fit under load (a smoke test, not a measurement)
        tut_busy = best_of(loaded_set(tutorial), loaded_repeats, pinned=False)
        small = {k: v.replace("@SAMPLES@", str(loaded_samples)) for k, v in MLP.items()}
        mlp_busy = best_of(loaded_set(small), loaded_repeats, pinned=False)

    def ms(s: float) -> str:
        return f"{s * 1e3:,.0f} ms" if s >= 0.1 else f"{s * 1e3:.1f} ms"

    lines = [
        "# Training speed: losskit.nn, Keras 3 (JAX) and a hand-written PyTorch loop",
        "",
        f"Measured by `python benchmarks/train.py` on {platform.machine()}, Python "
        f"{platform.python_version()}, {os.cpu_count()} cores shared with other work, one thread per "
        f"framework (OMP/OpenBLAS/MKL = 1, `torch.set_num_threads(1)`, XLA single-threaded); each "
        f"program in a fresh process, runs interleaved, best of {args.repeats}. Ratios are other / losskit "
        "(above 1: losskit is faster).",
        "",
        "## The Keras tutorial program (10-64-32-1, Adam, MSE, 1000 samples, batch 32, 10 epochs)",
        "",
        "| | end to end (process) | `fit`, first call | `fit`, second call |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (("losskit", "losskit.nn"), ("keras", "Keras 3 (JAX)"), ("torch", "PyTorch loop")):
        w, f1, f2 = tut[name]
        lines.append(f"| {label} | {ms(w)} | {ms(f1)} | {ms(f2)} |")
    for name, label in (("keras", "Keras / losskit"), ("torch", "PyTorch / losskit")):
        w, f1, f2 = tut[name]
        lines.append(f"| {label} | **{w / lk_tut[0]:.1f}x** | **{f1 / lk_tut[1]:.1f}x** | "
                     f"**{f2 / lk_tut[2]:.1f}x** |")
    lines += [
        "",
        "## One epoch of a 784-256-10 MLP "
        f"(relu, logits + sparse CE, Adam; {samples:,} random samples, batch 128)",
        "",
        "| | one epoch | other / losskit |",
        "|---|---:|---:|",
    ]
    for name, label in (("losskit", "losskit.nn"), ("keras", "Keras 3 (JAX)"), ("torch", "PyTorch loop")):
        t = mlp[name][1]
        lines.append(f"| {label} | {ms(t)} | {t / lk_mlp[1]:.2f}x |")
    lines += [
        "",
        "## Default threads on a busy machine",
        "",
        f"The same programs with every framework's default threads (no thread variable set, PyTorch's "
        f"default pool, XLA multi-threaded) while {os.cpu_count()} processes spin, one per core, for the "
        f"whole measurement; best of {loaded_repeats}. The MLP epoch here has {loaded_samples:,} samples "
        f"({loaded_samples // 128} steps) to keep the run short. \"losskit.nn, BLAS not limited\" switches "
        "off the engine's BLAS thread limit (`losskit/nn/_threads.py`): NumPy's BLAS pool at its default "
        "size for every product, which is what losskit.nn did before.",
        "",
        "| | tutorial `fit`, second call | other / losskit | MLP epoch | other / losskit |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in (("losskit", "losskit.nn"), ("unlimited", "losskit.nn, BLAS not limited"),
                        ("keras", "Keras 3 (JAX)"), ("torch", "PyTorch loop")):
        if name not in tut_busy:
            continue
        t2, m1 = tut_busy[name][2], mlp_busy[name][1]
        lines.append(f"| {label} | {ms(t2)} | {t2 / tut_busy['losskit'][2]:.2f}x | {ms(m1)} | "
                     f"{m1 / mlp_busy['losskit'][1]:.2f}x |")
    lines += [
        "",
        "Notes:",
        "",
        f"- Per step, the tutorial's losskit `fit` (second call) spends about {lk_tut[2] / 320 * 1e6:.0f} us "
        "(320 steps), about half of it in the loss: one `losskit.get('mse').value_and_gradient` call on "
        "a (32, 1) batch, input checks included; forward, backward and the Adam update take the rest.",
        "- losskit's first `fit` call costs about what its second does: NumPy inputs use NumPy itself as "
        "the array namespace, so nothing is imported or compiled on first use.",
        "- Keras's first `fit` includes XLA compilation; its second call is compiled code. The PyTorch "
        "loop indexes a shuffled batch per step, as `fit` does.",
        "- The machine is shared, so single figures move by tens of percent between runs; the ratios come "
        "from one interleaved run.",
        "- losskit.nn limits NumPy's BLAS pool (threadpoolctl) during `fit`, `evaluate`, `predict` and the "
        "`*_on_batch` calls to one thread per 2^27 multiply-adds of the step's largest product, at least one "
        "and never more than the pool had, so its figures do not depend on how the user sets thread "
        "variables. Every product above fits one thread.",
        "- In the busy table the spinning processes come on top of whatever else runs on the machine. Linux "
        "shares a busy core among runnable threads, so a framework running a step on several threads (XLA, "
        "PyTorch) gets more CPU time than losskit.nn's one thread per small product, but each multi-threaded "
        "product also waits for all its threads to be scheduled.",
        "",
    ]
    text = "\n".join(lines)
    pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
