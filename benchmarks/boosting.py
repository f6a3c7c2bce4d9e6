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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--load", action="store_true", help="also measure with every core kept busy")
    parser.add_argument("--only", default=None, help="only the losses whose name contains this")
    parser.add_argument("--output", type=Path, default=None, help="write the Markdown table here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    budget = 0.01 if args.quick else TIME_BUDGET_S
    rounds = 1 if args.quick else ROUNDS
    rows = measure(sizes, rounds, budget, args.only)  # CPU time: the machine is shared
    loaded = None
    if args.load:
        with Load():  # wall time: what a user waits for while the cores are busy
            loaded = measure(sizes, rounds, budget, args.only, clock=time.perf_counter)
    text = table(rows, loaded)
    print(text)
    out = args.output if args.output is not None else (None if args.quick else DEFAULT_OUTPUT)
    if out is not None:
        block = f"{START}\n<!-- generated by benchmarks/boosting.py on {machine()} -->\n\n{text}\n{END}"
        old = out.read_text() if out.exists() else ""
        if START in old and END in old:  # keep the prose around the table
            block = old[: old.index(START)] + block + old[old.index(END) + len(END):]
        out.write_text(block if block.endswith("\n") else block + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
