"""Speed of ``losskit.boosting`` gradient_hessian against scikit-learn's ``sklearn._loss``.

Every boosting loss on the same float64 arrays, 10^5 and 10^6 samples, "near the optimum" (where
boosting spends most rounds and the log-link gradient ``exp(r) - y`` cancels) and "generic" (raw
scores unrelated to the targets). losskit and scikit-learn (``n_threads=1``, its default) are timed
alternately in one run; each cell is the best of several calls, in CPU time of this process
(``time.process_time``: on a machine shared with other work, wall time measures the neighbours),
and the ratio is losskit's time over scikit-learn's (below 1: losskit faster). With ``--load`` the
same run is repeated in wall time while subprocesses keep every core busy (one spinning process
per core).

    python benchmarks/boosting.py                   # full run, ~2 minutes; writes docs/boosting-speed.md
    python benchmarks/boosting.py --quick           # seconds (smoke test); prints only
    python benchmarks/boosting.py --training        # also XGBoost / LightGBM training, losskit objective
                                                    # against the built-in one (its own table)

Training (``--training``): ``xgboost.train`` and ``lightgbm.train`` on one thread, 10^5 rows x 10
features, 20 rounds, depth 6 / 31 leaves, histogram trees, the same data and start for both; the
losskit objective (``loss.as_xgboost_objective()`` / ``as_lightgbm_objective()``) against the
library's built-in objective for the same loss, interleaved, best of a few runs in CPU time. The
ratio includes everything the custom objective costs: the Python call per round, the label and
weight fetch, the validation and the exact gradient.

The data sets:

* ``near`` for the log-link losses: ``y = exp(N(1, 1))`` and ``r = log(y) + N(0, 0.3)`` (a fit
  within ~30 % of each target); ``counts``: Poisson counts ``y ~ Poisson(mu)`` scored at their
  exact mean ``r = log(mu)`` (a converged model on count data);
* ``near`` for binomial/exponential: hard 0/1 labels drawn with probability ``sigmoid(r)`` (a
  calibrated model); ``soft``: labels ``sigmoid(r) (1 + N(0, 0.01))`` (the cancelling case);
* ``near`` for the identity-link losses: ``r = y + N(0, 0.1)``; multinomial: ``n/10`` rows of
  10 classes with labels drawn from ``softmax(r)``;
* ``generic``: ``r ~ N(0, 2)`` whatever the targets.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn._loss import loss as sk

from losskit import boosting as B

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "boosting-speed.md"
START, END = "<!-- table:start -->", "<!-- table:end -->"  # the part of the output file rewritten
SIZES = (100_000, 1_000_000)
QUICK_SIZES = (1000,)
TIME_BUDGET_S = 0.2  # per cell and round
ROUNDS = 4


@dataclass
class Case:
    loss: str
    data: str
    ours: B.BoostingLoss
    theirs: Any
    make: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _identity_near(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.normal(0.0, 3.0, n)
    return y, y + rng.normal(0.0, 0.1, n)


def _identity_generic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(0.0, 3.0, n), rng.normal(0.0, 2.0, n)


def _log_near(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.exp(rng.normal(1.0, 1.0, n))
    return y, np.log(y) + rng.normal(0.0, 0.3, n)


def _log_generic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.exp(rng.normal(1.0, 1.0, n)), rng.normal(0.0, 2.0, n)


def _counts(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    mu = np.exp(rng.normal(1.0, 1.0, n))
    return rng.poisson(mu).astype(np.float64), np.log(mu)


def _counts_generic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    mu = np.exp(rng.normal(1.0, 1.0, n))
    return rng.poisson(mu).astype(np.float64), rng.normal(0.0, 2.0, n)


def _labels(scale: float) -> Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]:
    def make(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        r = rng.normal(0.0, 2.0, n)
        return (rng.uniform(size=n) < _sigmoid(scale * r)).astype(np.float64), r

    return make


def _soft(scale: float) -> Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]:
    def make(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        r = rng.normal(0.0, 2.0, n)
        return np.clip(_sigmoid(scale * r) * (1.0 + rng.normal(0.0, 0.01, n)), 0.0, 1.0), r

    return make


def _unit_generic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 2, n).astype(np.float64), rng.normal(0.0, 2.0, n)


def _multinomial(near: bool) -> Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]:
    def make(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows, k = max(n // 10, 1), 10
        r = rng.normal(0.0, 2.0, (rows, k))
        if near:
            p = np.exp(r - r.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            y = (p.cumsum(axis=1) < rng.uniform(size=(rows, 1))).sum(axis=1).clip(0, k - 1)
        else:
            y = rng.integers(0, k, rows)
        return y.astype(np.float64), r

    return make


def cases() -> list[Case]:
    out = []
    identity = [
        ("squared_error", B.HalfSquaredError(), sk.HalfSquaredError()),
        ("absolute_error", B.AbsoluteError(), sk.AbsoluteError()),
        ("pinball q=0.9", B.PinballLoss(quantile=0.9), sk.PinballLoss(quantile=0.9)),
        ("huber delta=1", B.HuberLoss(delta=1.0), sk.HuberLoss(delta=1.0)),
    ]
    for name, ours, theirs in identity:
        out += [Case(name, "near", ours, theirs, _identity_near),
                Case(name, "generic", ours, theirs, _identity_generic)]
    out += [
        Case("poisson", "near", B.HalfPoissonLoss(), sk.HalfPoissonLoss(), _log_near),
        Case("poisson", "counts", B.HalfPoissonLoss(), sk.HalfPoissonLoss(), _counts),
        Case("poisson", "generic", B.HalfPoissonLoss(), sk.HalfPoissonLoss(), _counts_generic),
    ]
    for name, ours, theirs in [
        ("gamma", B.HalfGammaLoss(), sk.HalfGammaLoss()),
        ("tweedie p=1.5", B.HalfTweedieLoss(power=1.5), sk.HalfTweedieLoss(power=1.5)),
        ("tweedie p=1.2", B.HalfTweedieLoss(power=1.2), sk.HalfTweedieLoss(power=1.2)),
    ]:
        out += [Case(name, "near", ours, theirs, _log_near),
                Case(name, "generic", ours, theirs, _log_generic)]
    for name, ours, theirs, scale in [
        ("binomial", B.HalfBinomialLoss(), sk.HalfBinomialLoss(), 1.0),
        ("exponential", B.ExponentialLoss(), sk.ExponentialLoss(), 2.0),
    ]:
        out += [Case(name, "near", ours, theirs, _labels(scale)),
                Case(name, "soft", ours, theirs, _soft(scale)),
                Case(name, "generic", ours, theirs, _unit_generic)]
    m_ours, m_theirs = B.HalfMultinomialLoss(), sk.HalfMultinomialLoss(n_classes=10)
    out += [Case("multinomial K=10", "near", m_ours, m_theirs, _multinomial(True)),
            Case("multinomial K=10", "generic", m_ours, m_theirs, _multinomial(False))]
    return out


def _best(fn: Callable[[], Any], budget: float, clock: Callable[[], float]) -> float:
    """Best time (by ``clock``) of repeated calls within ``budget`` seconds (at least 3 calls)."""
    best, spent, calls = float("inf"), 0.0, 0
    while calls < 3 or spent < budget:
        t0 = clock()
        fn()
        dt = clock() - t0
        best, spent, calls = min(best, dt), spent + dt, calls + 1
        if calls >= 200:
            break
    return best


def measure(sizes: tuple[int, ...], rounds: int, budget: float, only: str | None = None,
            clock: Callable[[], float] = time.process_time) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        for case in cases():
            if only and only not in case.loss:
                continue
            y, r = case.make(rng, n)
            y, r = np.ascontiguousarray(y), np.ascontiguousarray(r)
            ours = lambda c=case, y=y, r=r: c.ours.gradient_hessian(y, r)  # noqa: E731
            theirs = lambda c=case, y=y, r=r: c.theirs.gradient_hessian(y, r)  # noqa: E731
            ours()
            theirs()
            t_ours, t_theirs = float("inf"), float("inf")
            for i in range(rounds):  # interleaved, and the order alternates
                pair = [(ours, "o"), (theirs, "t")] if i % 2 == 0 else [(theirs, "t"), (ours, "o")]
                for fn, who in pair:
                    t = _best(fn, budget, clock)
                    if who == "o":
                        t_ours = min(t_ours, t)
                    else:
                        t_theirs = min(t_theirs, t)
            rows.append({"loss": case.loss, "data": case.data, "n": r.size, "ours": t_ours * 1e3,
                         "theirs": t_theirs * 1e3, "ratio": t_ours / t_theirs})
            print(f"{case.loss:18s} {case.data:8s} n={r.size:>8d}  losskit {t_ours * 1e3:8.3f} ms  "
                  f"scikit-learn {t_theirs * 1e3:8.3f} ms  ratio {t_ours / t_theirs:5.2f}", flush=True)
    return rows


TRAIN_ROWS, TRAIN_ROUNDS, TRAIN_REPEATS = 100_000, 20, 3
TRAIN_START, TRAIN_END = "<!-- training:start -->", "<!-- training:end -->"


def _training_data(rng: np.random.Generator, n: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(size=(n, 10))
    z = X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 2] * X[:, 3]
    if kind == "poisson":
        return X, rng.poisson(np.exp(0.5 * z + 1.0)).astype(float)
    if kind == "binomial":
        return X, (rng.uniform(size=n) < _sigmoid(z)).astype(float)
    if kind == "multinomial":
        return X, np.digitize(z, [-1.0, 0.0, 1.0]).astype(float)
    return X, z + rng.normal(size=n)


# (losskit name, XGBoost built-in, LightGBM built-in, extra params for the built-in)
TRAIN_CASES = [
    ("squared_error", "reg:squarederror", "regression", {}),
    ("poisson", "count:poisson", "poisson", {}),
    ("binomial", "binary:logistic", "binary", {}),
    ("multinomial", "multi:softprob", "multiclass", {"num_class": 4}),
]


def _training_runs(name: str, xgb_obj: str, lgb_obj: str, extra: dict, X: np.ndarray, y: np.ndarray,
                   rounds: int) -> dict[tuple[str, str], Callable[[], Any]]:
    """The four training runs of one loss: each library with its built-in objective and losskit's."""
    import lightgbm as lgb
    import xgboost as xgb

    n = y.size
    loss = B.get(name)
    init = loss.init_score(y)
    margin = np.tile(init, (n, 1)) if loss.is_multiclass else np.full(n, init)
    xgb_base = {"max_depth": 6, "eta": 0.3, "nthread": 1, "tree_method": "hist", **extra}
    lgb_base = {"num_leaves": 31, "learning_rate": 0.3, "num_threads": 1, "verbose": -1, **extra}
    dtrain = xgb.DMatrix(X, label=y)
    return {
        ("xgboost", "built-in"): lambda: xgb.train({**xgb_base, "objective": xgb_obj}, dtrain, rounds),
        ("xgboost", "losskit"): lambda: xgb.train({**xgb_base, "base_score": loss.base_score(y)}, dtrain,
                                                  rounds, obj=loss.as_xgboost_objective()),
        ("lightgbm", "built-in"): lambda: lgb.train({**lgb_base, "objective": lgb_obj},
                                                    lgb.Dataset(X, y, free_raw_data=False), rounds),
        ("lightgbm", "losskit"): lambda: lgb.train({**lgb_base, "objective": loss.as_lightgbm_objective()},
                                                   lgb.Dataset(X, y, init_score=margin, free_raw_data=False),
                                                   rounds),
    }


def measure_training(n: int, rounds: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for name, xgb_obj, lgb_obj, extra in TRAIN_CASES:
        X, y = _training_data(rng, n, name)
        runs = _training_runs(name, xgb_obj, lgb_obj, extra, X, y, rounds)
        best = dict.fromkeys(runs, float("inf"))
        for i in range(repeats):  # interleaved; the order alternates
            keys = list(runs) if i % 2 == 0 else list(reversed(runs))
            for key in keys:
                t0 = time.process_time()
                runs[key]()
                best[key] = min(best[key], time.process_time() - t0)
        for lib in ("xgboost", "lightgbm"):
            ours, theirs = best[(lib, "losskit")], best[(lib, "built-in")]
            rows.append({"library": lib, "loss": name, "n": n, "ours": ours, "theirs": theirs,
                         "ratio": ours / theirs})
            print(f"training {lib:8s} {name:14s} n={n}  losskit objective {ours:7.3f} s  built-in "
                  f"{theirs:7.3f} s  ratio {ours / theirs:5.2f}", flush=True)
    return rows


def training_table(rows: list[dict]) -> str:
    lines = ["| library | loss | rows | losskit objective s | built-in objective s | ratio |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['library']} | {row['loss']} | {row['n']:,} | {row['ours']:.3f} | "
                     f"{row['theirs']:.3f} | {row['ratio']:.2f} |")
    return "\n".join(lines)


def _replace(old: str, start: str, end: str, block: str) -> str:
    """``old`` with the text between the markers replaced (appended when they are missing)."""
    if start in old and end in old:
        return old[: old.index(start)] + block + old[old.index(end) + len(end):]
    return old + ("\n" if old and not old.endswith("\n") else "") + block + "\n"


def _spin(stop: Any) -> None:
    x = np.random.default_rng(1).normal(size=200_000)
    while not stop.is_set():
        np.exp(x).sum()


class Load:
    """A subprocess per core keeping the machine busy while the benchmark runs."""

    def __init__(self) -> None:
        self.n = os.cpu_count() or 2
        self.ctx = multiprocessing.get_context("spawn")
        self.stop = self.ctx.Event()
        self.procs: list[Any] = []

    def __enter__(self) -> Load:
        self.procs = [self.ctx.Process(target=_spin, args=(self.stop,), daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        time.sleep(1.0)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(timeout=10)


def table(rows: list[dict], loaded: list[dict] | None) -> str:
    head = "| loss | data | n | losskit ms | scikit-learn ms | ratio |"
    sep = "|---|---|---:|---:|---:|---:|"
    if loaded:
        head += " ratio under load |"
        sep += "---:|"
    lines = [head, sep]
    for i, row in enumerate(rows):
        line = (f"| {row['loss']} | {row['data']} | {row['n']:,} | {row['ours']:.3f} | {row['theirs']:.3f} "
                f"| {row['ratio']:.2f} |")
        if loaded:
            line += f" {loaded[i]['ratio']:.2f} |"
        lines.append(line)
    return "\n".join(lines)


def machine() -> str:
    try:
        import numpy._core._multiarray_umath as mu  # type: ignore[import-not-found]

        feats = getattr(mu, "__cpu_features__", {})
        simd = ", ".join(k for k, v in feats.items() if v and k in ("AVX2", "AVX512F"))
    except ImportError:  # pragma: no cover
        simd = ""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, NumPy {np.__version__}{' (' + simd + ')' if simd else ''}, "
            f"scikit-learn {sklearn.__version__}")


def _load_average() -> str:
    """The 1-minute load average (what ``uptime`` shows first), or "n/a" where the OS has none."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return "n/a"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--load", action="store_true", help="also measure with every core kept busy")
    parser.add_argument("--only", default=None, help="only the losses whose name contains this")
    parser.add_argument("--output", type=Path, default=None, help="write the Markdown table here")
    parser.add_argument("--training", action="store_true",
                        help="also time XGBoost / LightGBM training, losskit objective vs built-in")
    parser.add_argument("--training-only", action="store_true", help="only the training comparison")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    budget = 0.01 if args.quick else TIME_BUDGET_S
    rounds = 1 if args.quick else ROUNDS
    out = args.output if args.output is not None else (None if args.quick else DEFAULT_OUTPUT)
    text = old = out.read_text() if out is not None and out.exists() else ""
    if not args.training_only:
        load_before = _load_average()
        rows = measure(sizes, rounds, budget, args.only)  # CPU time: the machine is shared
        load_note = f"; load average (1 min) {load_before} at the start, {_load_average()} at the end"
        loaded = None
        if args.load:
            with Load():  # wall time: what a user waits for while the cores are busy
                loaded = measure(sizes, rounds, budget, args.only, clock=time.perf_counter)
        table_text = table(rows, loaded)
        print(table_text)
        text = _replace(text, START, END, f"{START}\n<!-- generated by benchmarks/boosting.py on {machine()}"
                        f"{load_note} -->\n\n{table_text}\n{END}")
    if args.training or args.training_only:
        n, r, k = (2000, 3, 1) if args.quick else (TRAIN_ROWS, TRAIN_ROUNDS, TRAIN_REPEATS)
        train_text = training_table(measure_training(n, r, k))
        print(train_text)
        text = _replace(text, TRAIN_START, TRAIN_END, f"{TRAIN_START}\n<!-- generated by "
                        f"benchmarks/boosting.py --training on {machine()} -->\n\n{train_text}\n{TRAIN_END}")
    if out is not None and text != old:  # the prose around the tables is kept
        out.write_text(text if text.endswith("\n") else text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
