"""Speed of losskit's PyTorch twins (``losskit.torch``) against PyTorch's own losses.

For every twin: the loss and its gradient through autograd (``loss = f(x, t); loss.backward()``,
float32, CPU, reduction ``"mean"``), losskit's twin and ``torch.nn.functional``'s loss on the same
tensors, one after the other in each round (interleaved), the median over the rounds after a warm-up
round. Reported as the ratio **losskit / PyTorch** (below 1: the twin is faster); issue 10 asks for
at most 1.3. Shapes: 8192x1000 for every twin and 65536x10 for the cross-entropies (issue 8's),
except ``multilabel_margin_loss`` at 8192x32 (losskit's kernel forms rows x targets x classes
margins), the triplet losses (``triplet_margin_with_distance_loss`` with its default distance,
``pairwise_distance``) and cosine embedding loss at 8192 rows of 256 (every input requires grad, as
in training) and CTC at N=16 sequences of T=50 steps over 20 classes (logits through a log-softmax).
Also small calls (MSE and BCE from logits on (32, 1), cross-entropy on (32, 10): the per-call cost,
timed over 200 calls a round) and margin ranking in float64 (PyTorch's float64 as the peer).
``--threads N`` runs both libraries on N threads (``torch.set_num_threads`` and losskit's
``set_num_threads``): on a machine shared with other work, 1 keeps the comparison from measuring the
other processes (a parallel region waits for its slowest thread).

    python benchmarks/torch_twins.py            # the full table (a few minutes on 2 busy cores)
    python benchmarks/torch_twins.py --quick    # tiny shapes, a smoke test (seconds)
    python benchmarks/torch_twins.py --markdown # the table as Markdown (for docs/torch.md)
    python benchmarks/torch_twins.py --only nll_loss,ctc_loss --threads 1
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import losskit
import losskit.torch as lt

Make = Callable[[torch.Generator, tuple[int, int]], tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]


def _logits(g: torch.Generator, shape: tuple[int, int]) -> torch.Tensor:
    return torch.randn(shape, generator=g) * 2.0


def _labels(g: torch.Generator, shape: tuple[int, int]) -> torch.Tensor:
    return torch.randint(0, shape[1], (shape[0],), generator=g)


def _probs(g: torch.Generator, shape: tuple[int, int]) -> torch.Tensor:
    return torch.softmax(torch.randn(shape, generator=g), dim=1)


def _unit(g: torch.Generator, shape: tuple[int, int]) -> torch.Tensor:
    return torch.rand(shape, generator=g) * 0.98 + 0.01


CASES: list[tuple[str, Make, tuple[tuple[int, int], ...]]] = [
    ("cross_entropy", lambda g, s: (_logits(g, s), _labels(g, s), {}),
     ((65536, 10), (8192, 1000), (32, 10))),
    ("cross_entropy (probabilities)", lambda g, s: (_logits(g, s), _probs(g, s), {}),
     ((65536, 10), (8192, 1000))),
    ("nll_loss", lambda g, s: (torch.log_softmax(_logits(g, s), 1), _labels(g, s), {}),
     ((65536, 10), (8192, 1000))),
    ("binary_cross_entropy", lambda g, s: (_unit(g, s), _unit(g, s), {}), ((8192, 1000),)),
    ("binary_cross_entropy_with_logits", lambda g, s: (_logits(g, s), _unit(g, s), {}),
     ((8192, 1000), (32, 1))),
    ("mse_loss", lambda g, s: (torch.randn(s, generator=g), torch.randn(s, generator=g), {}),
     ((8192, 1000), (32, 1))),
    ("l1_loss", lambda g, s: (torch.randn(s, generator=g), torch.randn(s, generator=g), {}),
     ((8192, 1000),)),
    ("huber_loss", lambda g, s: (torch.randn(s, generator=g), torch.randn(s, generator=g), {}),
     ((8192, 1000),)),
    ("smooth_l1_loss", lambda g, s: (torch.randn(s, generator=g), torch.randn(s, generator=g), {}),
     ((8192, 1000),)),
    ("kl_div", lambda g, s: (torch.log_softmax(_logits(g, s), 1), _probs(g, s),
                             {"reduction": "batchmean"}), ((8192, 1000),)),
    ("poisson_nll_loss", lambda g, s: (torch.randn(s, generator=g),
                                       torch.poisson(torch.rand(s, generator=g) * 4, generator=g), {}),
     ((8192, 1000),)),
    ("gaussian_nll_loss", lambda g, s: (torch.randn(s, generator=g), torch.randn(s, generator=g),
                                        {"var": _unit(g, s) + 0.5}), ((8192, 1000),)),
    ("soft_margin_loss", lambda g, s: (_logits(g, s), torch.randint(0, 2, s, generator=g) * 2.0 - 1, {}),
     ((8192, 1000),)),
    ("multi_margin_loss", lambda g, s: (_logits(g, s), _labels(g, s), {}), ((8192, 1000),)),
    ("multilabel_soft_margin_loss", lambda g, s: (_logits(g, s), torch.randint(0, 2, s, generator=g)
                                                  .float(), {}), ((8192, 1000),)),
    ("multilabel_margin_loss", lambda g, s: (_logits(g, s), _target_lists(g, s), {}), ((8192, 32),)),
    ("triplet_margin_loss", lambda g, s: _members(g, s, "triplet"), ((8192, 256),)),
    ("triplet_margin_with_distance_loss", lambda g, s: _members(g, s, "triplet"), ((8192, 256),)),
    ("cosine_embedding_loss", lambda g, s: _members(g, s, "pair"), ((8192, 256),)),
    ("margin_ranking_loss", lambda g, s: _members(g, s, "ranking"), ((8192, 1000),)),
    ("margin_ranking_loss (float64)", lambda g, s: _members(g, s, "ranking", torch.float64),
     ((8192, 1000),)),
    ("hinge_embedding_loss", lambda g, s: (torch.rand(s, generator=g) * 2,
                                           torch.randint(0, 2, s, generator=g) * 2.0 - 1, {}),
     ((8192, 1000),)),
    ("ctc_loss", lambda g, s: _ctc(g, s), ((16, 50),)),
]


def _members(g: torch.Generator, shape: tuple[int, int], kind: str, dtype: torch.dtype = torch.float32
             ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Several differentiable inputs (all require grad, as in training): ``input`` is the first,
    ``call`` places the others in PyTorch's argument order."""
    x = torch.randn(shape, generator=g, dtype=dtype)
    other = torch.randn(shape, generator=g, dtype=dtype).requires_grad_(True)
    if kind == "triplet":
        negative = torch.randn(shape, generator=g).requires_grad_(True)
        return x, other, {"call": lambda fn, a, p: fn(a, p, negative)}
    labels = (torch.randint(0, 2, shape[:1] if kind == "pair" else shape, generator=g) * 2 - 1).to(dtype)
    return x, labels, {"call": lambda fn, a, y: fn(a, other, y)}


def _ctc(g: torch.Generator, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Logits (T, N, C) through a log-softmax, C = 20 classes, targets of up to T/3 labels (padded):
    ``shape`` is (N, T)."""
    n, steps = shape
    s = max(steps // 3, 1)
    targets = torch.randint(1, 20, (n, s), generator=g)
    lengths = torch.randint(1, s + 1, (n,), generator=g)
    il = torch.full((n,), steps)
    return torch.randn(steps, n, 20, generator=g), targets, {
        "call": lambda fn, x, t: fn(x.log_softmax(-1), t, il, lengths)}


def _target_lists(g: torch.Generator, shape: tuple[int, int]) -> torch.Tensor:
    """Up to 4 distinct target classes per row, then -1 padding (PyTorch's layout)."""
    n = shape[0]
    out = torch.full(shape, -1, dtype=torch.int64)
    picks = torch.argsort(torch.rand(shape, generator=g), dim=1)[:, :4]
    counts = torch.randint(1, 5, (n,), generator=g)
    keep = torch.arange(4)[None, :] < counts[:, None]
    out[:, :4] = torch.where(keep, picks, -1)
    return out


def _fns(name: str) -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
    base = name.split(" ")[0]
    return getattr(lt, base), getattr(F, base)


def _step(fn: Callable[..., torch.Tensor], x: torch.Tensor, t: torch.Tensor, kw: dict[str, Any],
          calls: int = 1) -> float:
    """Seconds per call of value and gradient, over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        x.grad = None
        loss = _loss(fn, x, t, kw)
        loss.backward()
    return (time.perf_counter() - start) / calls


def _loss(fn: Callable[..., torch.Tensor], x: torch.Tensor, t: torch.Tensor, kw: dict[str, Any]
          ) -> torch.Tensor:
    if "call" in kw:
        return kw["call"](fn, x, t)
    return fn(x, t, kw["var"]) if "var" in kw else fn(x, t, **kw)


def run(quick: bool, rounds: int) -> list[dict[str, Any]]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for name, make, shapes in CASES:
        for shape in ((64, 10),) if quick else shapes:
            x0, t, kw = make(g, shape)
            x = x0.clone().requires_grad_(True)
            ours, theirs = _fns(name)
            _step(ours, x, t, kw)  # warm-up, and the same value/gradient as PyTorch's
            mine = float(_loss(ours, x, t, kw).detach())
            ref = float(_loss(theirs, x, t, kw).detach())
            _step(theirs, x, t, kw)
            if not math.isclose(mine, ref, rel_tol=1e-4, abs_tol=1e-6):
                raise AssertionError(f"{name}: losskit {mine} vs PyTorch {ref}")
            a, b = [], []
            calls = 200 if x.numel() <= 4096 and not quick else 1  # small calls: a loop of them
            for _ in range(2 if quick else rounds):
                a.append(_step(ours, x, t, kw, calls))
                b.append(_step(theirs, x, t, kw, calls))
            ta, tb = statistics.median(a), statistics.median(b)
            rows.append({"loss": name, "shape": f"{shape[0]}x{shape[1]}", "losskit_ms": ta * 1e3,
                         "torch_ms": tb * 1e3, "ratio": ta / tb})
            print(f"{name:34s} {shape[0]:>6}x{shape[1]:<5} losskit {ta * 1e3:8.2f} ms  "
                  f"PyTorch {tb * 1e3:8.2f} ms  ratio {ta / tb:5.2f}", flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], rounds: int) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    lines = [f"Measured by `python benchmarks/torch_twins.py` ({rounds} interleaved rounds, median; "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads (losskit "
             f"{losskit.get_num_threads()}), Python "
             f"{platform.python_version()}, load average at the end "
             f"{', '.join(f'{v:.1f}' for v in load)} on {os.cpu_count()} cores).", "",
             "| twin | shape | losskit ms | PyTorch ms | losskit / PyTorch |", "|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}"
        lines.append(f"| `{r['loss']}` | {r['shape']} | {r['losskit_ms']:.3g} | {r['torch_ms']:.3g} | "
                     f"{'**' + ratio + '**' if r['ratio'] > 1.3 else ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, two rounds (smoke test)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--only", default="", help="comma-separated twin names")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for both libraries (default: each library's own default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        losskit.set_num_threads(args.threads)
    if args.only:
        keep = set(args.only.split(","))
        CASES[:] = [c for c in CASES if c[0].split(" ")[0] in keep or c[0] in keep]
    rows = run(args.quick, args.rounds)
    if args.markdown:
        print(markdown(rows, 2 if args.quick else args.rounds))


if __name__ == "__main__":
    main()
