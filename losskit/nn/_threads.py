"""How many BLAS threads the engine's own matrix products use.

NumPy's BLAS (OpenBLAS, MKL, ...) starts one thread per core for every product, however small. A
step of a small network is a few products of some thousands to some millions of multiply-adds, where
waking and joining the threads costs more than the product; and on a machine whose cores are busy
with other work each product waits for a thread to be scheduled on every core. Measured here (two
cores, other work running, OpenBLAS): a (128, 784) x (784, 256) float32 product takes 0.5 ms on one
thread and 7 to 24 ms on two (even a 1024 x 1024 x 1024 product took 23 ms on one thread and 32 to
36 ms on two). Issue 8 measured a 784-256-10 MLP epoch 7x to 180x slower than with BLAS pinned to one
thread; ``benchmarks/train.py`` reports the epoch with and without load.

So ``fit``, ``evaluate``, ``predict``, the ``*_on_batch`` calls, ``model(x)`` and ``model.backward``
run with the BLAS pool limited to :func:`threads_for` of the largest product of a step: one thread
per :data:`MACS_PER_THREAD` multiply-adds, at least one, and never more than the pool had (so a
user's own limit is kept). The previous size is restored when the call returns; callbacks called
from ``fit`` run under the limit.

>>> threads_for(128 * 784 * 256)           # the 784-256-10 MLP at batch 128: one thread
1
>>> with blas_threads(1):
...     pass                               # NumPy products in here use one BLAS thread
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MACS_PER_THREAD = 1 << 27
"""Multiply-adds of one product below which a further BLAS thread is not worth starting (134
million: about 3 ms of one core's float32 work, far above a thread's wake-up and join cost)."""

_state: dict[str, Any] = {}


def _libraries() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded (NumPy's among them), found once."""
    libs = _state.get("libs")
    if libs is None:
        from threadpoolctl import ThreadpoolController

        libs = _state["libs"] = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return libs


def threads_for(macs: int) -> int:
    """BLAS threads for products of at most ``macs`` multiply-adds: ``max(1, macs // MACS_PER_THREAD)``
    (the caller caps it at the pool's size)."""
    return max(1, int(macs) // MACS_PER_THREAD)


@contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """Limit every loaded BLAS library to ``min(threads, its current size)`` threads inside the block."""
    saved = []
    for lib in _libraries():
        current = lib.num_threads
        if threads < current:
            lib.set_num_threads(threads)
            saved.append((lib, current))
    try:
        yield
    finally:
        for lib, current in saved:
            lib.set_num_threads(current)
