"""Linear cross-entropy at a language model's scale: losskit against PyTorch, side by side.

Value and gradient (``loss.backward()`` for ``hidden`` and ``weight``) of the cross-entropy of
``hidden @ weight.T`` (float32, CPU), by

* ``naive``: ``F.cross_entropy(h @ W.T, y)`` (the full (N, V) logits);
* ``torch-chunk1024``: ``F.linear_cross_entropy(h, W, y, options=LinearCrossEntropyOptions(
  batch_chunk_size=1024))``, PyTorch 2.13's chunked path;
* ``torch-auto``: the same with ``LinearCrossEntropyOptions()`` (its automatic choice; slow on the
  CPU, so only with ``--torch-auto``);
* ``losskit``: ``losskit.linear_cross_entropy(h, W, y)`` (default chunks).

Each (method, repetition) runs in a fresh subprocess, in interleaved order, so that the peak
resident memory (``ru_maxrss``) minus the resident memory after creating the inputs is that
method's peak extra memory (its workspace plus the gradients it returns). Times are wall-clock
for one value+gradient after a small warm-up. Ratios are to the naive path of the same round.

Gradient accuracy (relative L2 error of grad_hidden and grad_weight against a float64 reference,
``F.cross_entropy`` on float64 copies) is measured at a quarter of the tokens and vocabulary (the
float64 reference at full size would take minutes), with the same hidden size.

    python benchmarks/linear_ce.py --quick        # small sizes, a few seconds
    python benchmarks/linear_ce.py                # 4,096 x 1,024 x 128,256: several minutes
    python benchmarks/linear_ce.py --size 2048,1024,32768 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

METHODS = ("naive", "torch-chunk1024", "losskit")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _inputs(n: int, h: int, v: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g)
    weight = torch.randn(v, h, generator=g).mul_(1.0 / h ** 0.5)  # logits of order 1 (in place:
    # a temporary of weight's size here would set the peak that ru_maxrss reports below)
    labels = torch.randint(0, v, (n,), generator=g)
    labels[::97] = -100  # a few ignored tokens
    return hidden, weight, labels


def _loss_fn(method: str):
    import torch.nn.functional as F
    from torch.nn import LinearCrossEntropyOptions

    import losskit

    if method == "naive":
        return lambda h, w, y: F.cross_entropy(h @ w.T, y)
    if method == "torch-chunk1024":
        opts = LinearCrossEntropyOptions(batch_chunk_size=1024)
        return lambda h, w, y: F.linear_cross_entropy(h, w, y, ignore_index=-100, options=opts)
    if method == "torch-auto":
        opts = LinearCrossEntropyOptions()
        return lambda h, w, y: F.linear_cross_entropy(h, w, y, ignore_index=-100, options=opts)
    if method == "losskit":
        return lambda h, w, y: losskit.linear_cross_entropy(h, w, y)
    raise ValueError(method)


def run_one(method: str, n: int, h: int, v: int) -> dict:
    """In a fresh process: time and peak extra memory of one value+gradient."""
    fn = _loss_fn(method)
    small = [x.requires_grad_(x.is_floating_point()) for x in _inputs(64, 32, 512, seed=1)]
    fn(*small).backward()  # warm-up: loads the kernels, far below the peak measured next
    hidden, weight, labels = _inputs(n, h, v)
    hidden.requires_grad_()
    weight.requires_grad_()
    base = _rss_bytes()
    t0 = time.perf_counter()
    loss = fn(hidden, weight, labels)
    loss.backward()
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"method": method, "seconds": elapsed, "peak_extra_mb": (peak - base) / 2**20,
            "loss": float(loss.detach())}


def accuracy(n: int, h: int, v: int, methods: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Relative L2 error of each method's gradients against float64 (same inputs)."""
    import torch.nn.functional as F

    hidden, weight, labels = _inputs(n, h, v, seed=2)
    h64, w64 = (x.double().requires_grad_() for x in (hidden, weight))
    F.cross_entropy(h64 @ w64.T, labels).backward()
    out = {}
    for method in methods:
        hd, wd = (x.clone().requires_grad_() for x in (hidden, weight))
        _loss_fn(method)(hd, wd, labels).backward()
        out[method] = {name: float((got.double() - ref).norm() / ref.norm())
                       for name, got, ref in (("grad_hidden", hd.grad, h64.grad),
                                              ("grad_weight", wd.grad, w64.grad))}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (512 x 256 x 8,192)")
    p.add_argument("--size", help="N,H,V (tokens, hidden size, vocabulary)")
    p.add_argument("--repeat", type=int, default=None, help="rounds (default 1, 3 with --quick)")
    p.add_argument("--torch-auto", action="store_true",
                   help="also PyTorch's automatic chunking (minutes at full size on a CPU)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--one", nargs=4, metavar=("METHOD", "N", "H", "V"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        method, *dims = args.one
        print(json.dumps(run_one(method, *map(int, dims))))
        return
    n, h, v = (512, 256, 8192) if args.quick else (4096, 1024, 128256)
    if args.size:
        n, h, v = (int(x) for x in args.size.split(","))
    repeat = args.repeat or (3 if args.quick else 1)
    methods = METHODS + (("torch-auto",) if args.torch_auto else ())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *sys.path]))
    rounds = []
    print(f"N={n} H={h} V={v} float32, {repeat} round(s), methods interleaved in fresh processes")
    for r in range(repeat):
        order = methods if r % 2 == 0 else tuple(reversed(methods))
        row = {}
        for method in order:
            cmd = [sys.executable, __file__, "--one", method, str(n), str(h), str(v)]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if res.returncode:
                print(res.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{method} failed")
            row[method] = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"  round {r}: {method:16s} {row[method]['seconds']:8.2f} s "
                  f"{row[method]['peak_extra_mb']:9.0f} MB  loss {row[method]['loss']:.6f}",
                  flush=True)
        rounds.append(row)
    print("\n| path | time fwd+bwd (s) | time / naive | peak extra memory (MB) | memory / naive |")
    print("|---|---|---|---|---|")
    summary = {}
    for method in methods:
        secs = sorted(rd[method]["seconds"] for rd in rounds)
        mem = max(rd[method]["peak_extra_mb"] for rd in rounds)
        t_ratio = sorted(rd[method]["seconds"] / rd["naive"]["seconds"] for rd in rounds)
        m_ratio = mem / max(rd["naive"]["peak_extra_mb"] for rd in rounds)
        med = len(secs) // 2
        summary[method] = {"seconds": secs[med], "time_ratio": t_ratio[med],
                           "peak_extra_mb": mem, "memory_ratio": m_ratio}
        print(f"| {method} | {secs[med]:.2f} | {t_ratio[med]:.2f} | {mem:,.0f} | {m_ratio:.3f} |")
    an, av = max(1, n // 4), max(2, v // 4)
    acc = accuracy(an, h, av, methods)
    print(f"\nGradient accuracy at N={an} H={h} V={av} (relative L2 error against float64):")
    print("| path | grad_hidden | grad_weight |\n|---|---|---|")
    for method, errs in acc.items():
        print(f"| {method} | {errs['grad_hidden']:.2e} | {errs['grad_weight']:.2e} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": [n, h, v], "rounds": rounds, "summary": summary,
                       "accuracy": {"size": [an, h, av], "errors": acc}}, f, indent=1)


if __name__ == "__main__":
    main()
