"""``losskit`` on the command line: ``losskit evaluate FILES ... --y-true COL --y-pred COL --loss NAME``.

Every input error ends with one line on stderr and a non-zero exit status (1: the data or the files;
2: the command line itself), never a traceback (set ``LOSSKIT_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

EPILOG = """examples:
  losskit evaluate preds.parquet --y-true label --y-pred prob --loss binary_crossentropy \\
      --loss hinge --by country --ci 0.95 --out report/
  losskit evaluate 'data/*.csv' --y-true label --y-pred 'logit_*' \\
      --loss sparse_categorical_crossentropy --option from_logits=true --by country,device
  losskit evaluate data/ --y-true y --y-pred p --loss bce --dask local
"""


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="losskit", description="losskit on the command line")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser(
        "evaluate", help="exact mean losses of predictions in Parquet/CSV files, per slice, with "
        "bootstrap intervals and plots", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("files", nargs="+", help="Parquet or CSV files, globs or folders")
    ev.add_argument("--y-true", required=True, metavar="COL", help="the column of targets")
    ev.add_argument("--y-pred", required=True, metavar="COL",
                    help="the prediction column (numbers or lists of numbers), several columns "
                         "separated by commas, or a glob over column names ('logit_*')")
    ev.add_argument("--loss", action="append", required=True, metavar="NAME",
                    help="a loss name as losskit.get takes it (repeat for several)")
    ev.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a loss option (JSON value: true, 0.1, [1, 2]); applies to every "
                         "--loss that has it")
    ev.add_argument("--weight", metavar="COL", help="a column of sample weights")
    ev.add_argument("--by", action="append", default=[], metavar="COL[,COL]",
                    help="slice by a column; 'a,b' slices by both crossed (repeat for several)")
    ev.add_argument("--ci", type=float, metavar="LEVEL",
                    help="confidence level of the bootstrap intervals, e.g. 0.95")
    ev.add_argument("--replicates", type=int, metavar="N",
                    help="Poisson-bootstrap replicates (default 20 with --ci, else 0)")
    ev.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ev.add_argument("--out", metavar="DIR", help="write report.json, report.csv and PNG plots here")
    ev.add_argument("--on-bad-row", choices=("error", "skip"), default="error",
                    help="stop at the first row that cannot be scored (default) or count and skip")
    ev.add_argument("--batch-rows", type=int, default=1 << 17, metavar="N",
                    help="rows per record batch (default 131072): the memory bound")
    ev.add_argument("--threads", type=int, metavar="N",
                    help="record batches scored at once (default: the CPUs, at most 4)")
    ev.add_argument("--dask", choices=("local",), help="run on a local Dask cluster")
    ev.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.add_argument("--no-plots", action="store_true", help="no PNG files in --out")
    return parser


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        return text


def build_losses(names: Sequence[str], options: Sequence[str]) -> list[Any]:
    """Loss instances for ``--loss`` names, each with the ``--option`` values it accepts."""
    import losskit

    parsed = {}
    for item in options:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option expects KEY=VALUE; found {item!r}")
        parsed[key.strip()] = _value(text.strip())
    losses = []
    used: set[str] = set()
    for name in names:
        try:
            cls = type(losskit.get(name))
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
        accepted = {o.name for o in cls.definition.options} | set(cls.definition.option_aliases)
        mine = {k: v for k, v in parsed.items() if k in accepted}
        used |= set(mine)
        try:
            losses.append(cls(**mine))
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--loss {name}: {exc}") from None
    unused = sorted(set(parsed) - used)
    if unused:
        raise UsageError(f"no --loss takes the option(s) {', '.join(unused)}")
    return losses


class _Progress:
    """A progress line on stderr: rows, rows per second, and time left when the total is known."""

    def __init__(self, total_rows: int | None, total_bytes: int, enabled: bool) -> None:
        self.total_rows, self.total_bytes = total_rows, total_bytes
        self.enabled = enabled
        self.bar: Any = None
        self.start = time.perf_counter()
        self.rows = 0
        if not enabled or not sys.stderr.isatty():   # a file or a pipe: one summary line at the end
            return
        try:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
        except ImportError:
            return
        from rich.console import Console

        self.bar = Progress(TextColumn("evaluating"), BarColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[rows]:,} rows"),
                            TextColumn("{task.fields[rate]:,.0f} rows/s"), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=False)
        self.task = self.bar.add_task("eval", total=total_rows or total_bytes or None, rows=0,
                                      rate=0.0)
        self.bar.start()

    def __call__(self, rows: int, done_bytes: int, _batch: int | None) -> None:
        if not self.enabled:
            return
        self.rows = rows
        rate = rows / max(time.perf_counter() - self.start, 1e-9)
        completed = rows if self.total_rows else done_bytes
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, rows=rows, rate=rate)

    def close(self, ok: bool = True) -> None:
        if self.bar is not None:
            if not ok:   # leave the error message alone on its line
                self.bar.live.transient = True
            self.bar.stop()
        elif self.enabled and ok:
            seconds = time.perf_counter() - self.start
            print(f"evaluated {self.rows:,} rows in {seconds:.1f} s "
                  f"({self.rows / max(seconds, 1e-9):,.0f} rows/s)", file=sys.stderr)


def evaluate_command(args: argparse.Namespace) -> int:
    from .metrics import files as mfiles
    from .metrics import output

    if args.ci is not None and not 0 < args.ci < 1:
        raise UsageError(f"--ci must lie in (0, 1); found {args.ci}")
    replicates = args.replicates if args.replicates is not None else (20 if args.ci else 0)
    if replicates < 0:
        raise UsageError(f"--replicates must be >= 0; found {replicates}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1; found {args.threads}")
    if args.batch_rows < 1:
        raise UsageError(f"--batch-rows must be >= 1; found {args.batch_rows}")
    if args.dask and args.scheduler:
        raise UsageError("give --dask local or --scheduler ADDRESS, not both")
    by: list[Any] = []
    for item in args.by:
        cols = [c.strip() for c in item.split(",") if c.strip()]
        by.append(cols[0] if len(cols) == 1 else cols)
    losses = build_losses(args.loss, args.option)
    scheduler = args.scheduler or args.dask
    progress = None
    if scheduler is None:
        files = mfiles.find_files(args.files)
        mfiles.require("pyarrow")
        rows, size = mfiles.total_rows(files)
        progress = _Progress(rows, size, enabled=not args.no_progress)
    else:
        files = args.files
        if not args.no_progress:
            print(f"evaluating on Dask ({scheduler}) ...", file=sys.stderr)
    ok = False
    try:
        ev = mfiles.evaluate(files, y_true=args.y_true, y_pred=args.y_pred, losses=losses,
                             weight=args.weight, by=by, replicates=replicates, seed=args.seed,
                             ci=args.ci if args.ci is not None else 0.95,
                             on_bad_row=args.on_bad_row, batch_rows=args.batch_rows,
                             progress=progress, scheduler=scheduler,
                             summaries=bool(args.out) and not args.no_plots,
                             threads=args.threads)
        ok = True
    finally:
        if progress is not None:
            progress.close(ok)
    if args.ci is None:
        ev.ci = None if replicates == 0 else 0.95
    if args.out:
        if args.no_plots:
            os.makedirs(args.out, exist_ok=True)
            rep = output.report(ev)
            with open(os.path.join(args.out, "report.json"), "w") as fh:
                json.dump(rep, fh, indent=1, default=str)
        else:
            rep = output.write(ev, args.out)
    else:
        rep = output.report(ev)
    print(output.table(rep))
    if args.out:
        print(f"report written to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``losskit`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    from .metrics import BadRowError
    from .metrics.files import EvaluationError

    try:
        return evaluate_command(args)
    except UsageError as exc:
        print(f"losskit evaluate: error: {exc}", file=sys.stderr)
        return 2
    except (EvaluationError, BadRowError, ValueError, TypeError, OSError) as exc:
        if os.environ.get("LOSSKIT_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"losskit evaluate: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("losskit evaluate: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else: still one line, with its kind
        if os.environ.get("LOSSKIT_DEBUG"):
            raise
        message = " ".join(str(exc).split())
        print(f"losskit evaluate: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
