"""Keras-style progress output for ``fit``, ``evaluate`` and ``predict``.

verbose=1: a bar redrawn in place while a terminal shows it (``32/32 ━━━━━━━━━━━━━━━━━━━━ 0s 1ms/step -
loss: 0.0833``), the final line only when output goes to a file or pipe; verbose=2: one line per
epoch (``32/32 - 0s - 1ms/step - loss: 0.0833``); verbose=0: nothing.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping

WIDTH = 20
INTERVAL = 0.05  # seconds between redraws, as Keras
_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


def format_value(v: float) -> str:
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


def format_time(seconds: float) -> str:
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


class Progbar:
    """The bar for one pass over ``target`` steps (None: not known, as for a generator's first epoch;
    shown as ``12/Unknown``, as Keras does)."""

    def __init__(self, target: int | None, verbose: int) -> None:
        self.target, self.verbose = target, verbose
        self.start = self.last = time.perf_counter()
        self.dynamic = verbose == 1 and sys.stdout.isatty()
        self.width = 0
        self.after_first: float | None = None

    def update(self, current: int, logs: Mapping[str, float], finalize: bool = False) -> None:
        if self.verbose == 0:
            return
        now = time.perf_counter()
        if current == 1 and self.after_first is None:
            self.after_first = now  # the first step is left out of the time per step, as Keras does
        if not finalize and (not self.dynamic or now - self.last < INTERVAL):
            return
        self.last = now
        elapsed = now - self.start
        if current > 1 and self.after_first is not None:
            per_step = format_time((now - self.after_first) / (current - 1)) + "/step"
        else:
            per_step = format_time(elapsed / max(current, 1)) + "/step"
        if self.target is None:
            count = f"{current}/Unknown"
        else:
            count = f"{current:>{len(str(self.target))}}/{self.target}"
        values = "".join(f" - {k}: {format_value(v)}" for k, v in logs.items())
        if self.verbose == 2:
            print(f"{count} - {elapsed:.0f}s - {per_step}{values}", flush=True)
            return
        done = int(WIDTH * current / self.target) if self.target else 0 if self.target is None else WIDTH
        if self.dynamic:
            bar = f"\x1b[32m{'━' * done}\x1b[0m\x1b[37m{'━' * (WIDTH - done)}\x1b[0m"
        else:
            bar = "━" * done + " " * (WIDTH - done)
        if finalize or self.target is None:
            info = f"{elapsed:.0f}s"
        else:
            info = f"{(elapsed / max(current, 1)) * (self.target - current):.0f}s"  # ETA, as Keras
        line = f"{count} {bar} {info} {per_step}{values}" if self.target is not None else \
            f"{count} {info} {per_step}{values}"
        visible = len(_ESCAPES.sub("", line))
        pad = " " * max(0, self.width - visible)  # blank out what a longer previous line left
        self.width = visible
        end = "\n" if finalize else ""
        print(("\r" if self.dynamic else "") + line + pad, end=end, flush=True)
