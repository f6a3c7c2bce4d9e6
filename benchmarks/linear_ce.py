"""Linear cross-entropy at a language model's scale: losskit against PyTorch, side by side.

Value and gradient (``loss.backward()`` for ``hidden`` and ``weight``) of the cross-entropy of
``hidden @ weight.T`` (float32, CPU), by

* ``naive``: ``F.cross_entropy(h @ W.T, y)`` (the full (N, V) logits);
* ``torch-chunk1024``: ``F.linear_cross_entropy(h, W, y, options=LinearCrossEntropyOptions(
  batch_chunk_size=1024))``, PyTorch 2.13's chunked path;
* ``torch-auto``: the same with ``LinearCrossEntropyOptions()`` (its automatic choice; slow on the
  CPU, so only with ``--torch-auto``);
* ``losskit``: ``losskit.linear_cross_entropy(h, W, y)`` (default chunks);

and, with ``--methods`` (each against its own library's naive path, on the same NumPy-generated
data within the pair):

* ``jax-naive``: ``optax.softmax_cross_entropy_with_integer_labels(h @ W.T, y)`` (mean over the
  tokens not ignored) under ``jax.jit(jax.value_and_grad)`` for ``h`` and ``W``;
* ``jax-losskit``: ``losskit.linear_cross_entropy`` under the same ``jax.jit(jax.value_and_grad)``;
* ``numpy-naive``: the full (N, V) logits in NumPy, turned into ``G = (softmax - onehot) / count``
  in place (one (N, V) array), then ``G @ W`` and ``G.T @ h``;
* ``numpy-losskit``: ``losskit.linear_cross_entropy_value_and_gradient(h, W, y)``.

Each (method, repetition) runs in a fresh subprocess, in interleaved order, so that the peak
resident memory (``ru_maxrss``) minus the resident memory after creating the inputs is that
method's peak extra memory (its workspace plus the gradients it returns). Times are wall-clock
for one value+gradient after a small warm-up (JAX: compiled ahead of the timed call). Ratios are
to the naive path of the same library in the same round. For JAX, XLA's own account of the
compiled function is reported too (``memory_analysis()``: ``temp`` is the workspace beyond the
arguments and the outputs, ``out`` the returned value and gradients), since the resident memory
of a JAX process also holds XLA's arenas.

Gradient accuracy (relative L2 error of grad_hidden and grad_weight against a float64 reference,
``F.cross_entropy`` on float64 copies) is measured at a quarter of the tokens and vocabulary (the
float64 reference at full size would take minutes), with the same hidden size.

    python benchmarks/linear_ce.py --quick        # small sizes, a few seconds
    python benchmarks/linear_ce.py                # 4,096 x 1,024 x 128,256: several minutes
    python benchmarks/linear_ce.py --size 2048,1024,32768 --repeat 2
    python benchmarks/linear_ce.py --methods jax-naive,jax-losskit,numpy-naive,numpy-losskit
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
NAIVE = {"naive": "naive", "torch-chunk1024": "naive", "torch-auto": "naive", "losskit": "naive",
         "jax-naive": "jax-naive", "jax-losskit": "jax-naive",
         "numpy-naive": "numpy-naive", "numpy-losskit": "numpy-naive"}


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


def _np_inputs(n: int, h: int, v: int, seed: int = 0):
    """The same kind of data in NumPy (for the NumPy and JAX paths), created in place."""
    import numpy as np

    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((n, h), dtype=np.float32)
    weight = rng.standard_normal((v, h), dtype=np.float32)
    weight *= 1.0 / h ** 0.5
    labels = rng.integers(0, v, n)
    labels[::97] = -100
    return hidden, weight, labels


def _numpy_naive(hidden, weight, labels):
    """Value and (grad_hidden, grad_weight) with the full (N, V) logits, lean: one (N, V) array."""
    import numpy as np

    n = hidden.shape[0]
    valid = labels != -100
    y = np.where(valid, labels, 0)
    rows = np.arange(n)
    z = hidden @ weight.T
    z -= z.max(axis=1, keepdims=True)
    zy = z[rows, y]
    np.exp(z, out=z)
    total = z.sum(axis=1, keepdims=True, dtype=np.float64)
    count = max(int(valid.sum()), 1)
    value = float(((np.log(total[:, 0]) - zy) * valid).sum() / count)
    z *= (valid[:, None] / (count * total)).astype(np.float32)
    z[rows, y] -= valid / np.float32(count)
    return value, z @ weight, z.T @ hidden


def _jax_fn(method: str):
    """jax.jit(jax.value_and_grad) of the method's mean loss, for hidden and weight."""
    import jax
    import jax.numpy as jnp

    if method == "jax-naive":
        import optax

        def loss(h, w, y):
            valid = y != -100
            per = optax.softmax_cross_entropy_with_integer_labels(h @ w.T, jnp.where(valid, y, 0))
            return jnp.sum(jnp.where(valid, per, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
    else:
        import losskit

        def loss(h, w, y):
            return losskit.linear_cross_entropy(h, w, y)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _np_value_and_grads(method: str):
    """For the NumPy and JAX methods: NumPy inputs -> (value, grad_hidden, grad_weight)."""
    import numpy as np

    if method == "numpy-naive":
        return _numpy_naive
    if method == "numpy-losskit":
        import losskit

        def run(h, w, y):
            value, (gh, gw, _) = losskit.linear_cross_entropy_value_and_gradient(h, w, y)
            return float(value), gh, gw
        return run
    fn = _jax_fn(method)

    def run_jax(h, w, y):
        value, (gh, gw) = fn(h, w, y.astype(np.int32))
        return float(value), np.asarray(gh), np.asarray(gw)
    return run_jax


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


def _run_one_np(method: str, n: int, h: int, v: int) -> dict:
    """run_one for the NumPy and JAX methods."""
    small = _np_inputs(64, 32, 512, seed=1)
    out = {"method": method}
    if method.startswith("jax"):
        import jax
        import numpy as np

        fn = _jax_fn(method)
        jax.block_until_ready(fn(*small[:2], small[2].astype(np.int32)))  # loads jax, XLA
        hidden, weight, labels = (jax.device_put(x) for x in _np_inputs(n, h, v))
        labels = labels.astype(np.int32)
        compiled = fn.lower(hidden, weight, labels).compile()
        mem = compiled.memory_analysis()
        out["xla_temp_mb"] = mem.temp_size_in_bytes / 2**20
        out["xla_out_mb"] = mem.output_size_in_bytes / 2**20
        base = _rss_bytes()
        t0 = time.perf_counter()
        value, _grads = jax.block_until_ready(compiled(hidden, weight, labels))
        elapsed = time.perf_counter() - t0
    else:
        fn = _np_value_and_grads(method)
        fn(*small)
        hidden, weight, labels = _np_inputs(n, h, v)
        base = _rss_bytes()
        t0 = time.perf_counter()
        value, *_grads = fn(hidden, weight, labels)
        elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.update(seconds=elapsed, peak_extra_mb=(peak - base) / 2**20, loss=float(value))
    return out


def run_one(method: str, n: int, h: int, v: int) -> dict:
    """In a fresh process: time and peak extra memory of one value+gradient."""
    if method.startswith(("jax", "numpy")):
        return _run_one_np(method, n, h, v)
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
    import numpy as np
    import torch
    import torch.nn.functional as F

    hidden, weight, labels = _inputs(n, h, v, seed=2)
    h64, w64 = (x.double().requires_grad_() for x in (hidden, weight))
    F.cross_entropy(h64 @ w64.T, labels).backward()
    out = {}
    for method in methods:
        if method.startswith(("jax", "numpy")):
            _, gh, gw = _np_value_and_grads(method)(hidden.numpy(), weight.numpy(), labels.numpy())
            grads = torch.from_numpy(np.array(gh)), torch.from_numpy(np.array(gw))
        else:
            hd, wd = (x.clone().requires_grad_() for x in (hidden, weight))
            _loss_fn(method)(hd, wd, labels).backward()
            grads = hd.grad, wd.grad
        out[method] = {name: float((got.double() - ref).norm() / ref.norm())
                       for name, got, ref in (("grad_hidden", grads[0], h64.grad),
                                              ("grad_weight", grads[1], w64.grad))}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (512 x 256 x 8,192)")
    p.add_argument("--size", help="N,H,V (tokens, hidden size, vocabulary)")
    p.add_argument("--repeat", type=int, default=None, help="rounds (default 1, 3 with --quick)")
    p.add_argument("--torch-auto", action="store_true",
                   help="also PyTorch's automatic chunking (minutes at full size on a CPU)")
    p.add_argument("--methods", help="comma-separated methods (default: "
                   f"{','.join(METHODS)}; also {','.join(m for m in NAIVE if m not in METHODS)})")
    p.add_argument("--no-accuracy", action="store_true", help="skip the float64 gradient check")
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
    methods = tuple(args.methods.split(",")) if args.methods else METHODS
    methods += ("torch-auto",) if args.torch_auto else ()
    unknown = [m for m in methods if m not in NAIVE]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; known: {list(NAIVE)}")
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
            xla = (f"  (XLA: temp {row[method]['xla_temp_mb']:,.0f} MB, out "
                   f"{row[method]['xla_out_mb']:,.0f} MB)" if "xla_temp_mb" in row[method] else "")
            print(f"  round {r}: {method:16s} {row[method]['seconds']:8.2f} s "
                  f"{row[method]['peak_extra_mb']:9.0f} MB  loss {row[method]['loss']:.6f}{xla}  "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
        rounds.append(row)
    print("\n| path | time fwd+bwd (s) | time / naive (each round) | peak extra memory (MB) "
          "| memory / naive | XLA temp / naive |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for method in methods:
        naive = NAIVE[method]
        secs = sorted(rd[method]["seconds"] for rd in rounds)
        mem = max(rd[method]["peak_extra_mb"] for rd in rounds)
        t_ratios = [rd[method]["seconds"] / rd[naive]["seconds"] for rd in rounds if naive in rd]
        m_ratio = (mem / max(rd[naive]["peak_extra_mb"] for rd in rounds)
                   if naive in rounds[0] else float("nan"))
        xla = ""
        if "xla_temp_mb" in rounds[0][method] and naive in rounds[0]:
            xla = f"{rounds[0][method]['xla_temp_mb'] / rounds[0][naive]['xla_temp_mb']:.3f}"
        med = len(secs) // 2
        summary[method] = {"seconds": secs[med], "time_ratios": t_ratios,
                           "peak_extra_mb": mem, "memory_ratio": m_ratio}
        shown = ", ".join(f"{t:.2f}" for t in t_ratios) or "-"
        print(f"| {method} | {secs[med]:.2f} | {shown} | {mem:,.0f} | {m_ratio:.3f} | {xla} |")
    if args.no_accuracy:
        acc = {}
        an, av = 0, 0
    else:
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
