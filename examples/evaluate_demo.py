"""Evaluate a click-through model on a Parquet file, per country and device, with intervals and plots.

Writes a synthetic data set (no download): ``--rows`` impressions (default 2,000,000) with a country,
a device and an hour, the true click probability from a logistic model, the label drawn from it, and
the model's predicted probability. The model is well calibrated everywhere except in one country
(``BR``), where it is overconfident: its logits are doubled. Then it runs

    losskit evaluate build/evaluate-demo/clicks.parquet --y-true clicked --y-pred p_click \\
        --loss binary_crossentropy --loss mse --by country --by country,device --ci 0.95 \\
        --out build/evaluate-demo/report

and names the slices whose interval lies entirely outside the overall one. Run with ``make
evaluate-demo`` (installs ``losskit[data]``) or ``python examples/evaluate_demo.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

COUNTRIES = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "ES", "IT", "CA", "MX", "KR"]
DEVICES = ["mobile", "desktop", "tablet"]
MISCALIBRATED = "BR"


def write_clicks(path: str, rows: int, seed: int = 0) -> None:
    """A synthetic click-through data set, written in row groups of 500,000."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    country_bias = dict(zip(COUNTRIES, rng.normal(0, 0.4, len(COUNTRIES)), strict=True))
    device_bias = {"mobile": 0.3, "desktop": -0.2, "tablet": 0.0}
    writer = None
    chunk = 500_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        country = rng.choice(COUNTRIES, n, p=np.linspace(2, 1, len(COUNTRIES)) / np.linspace(
            2, 1, len(COUNTRIES)).sum())
        device = rng.choice(DEVICES, n, p=[0.6, 0.3, 0.1])
        hour = rng.integers(0, 24, n)
        features = rng.normal(-2.5, 1.0, n)
        logit = (features + np.vectorize(country_bias.get)(country)
                 + np.vectorize(device_bias.get)(device) + 0.3 * np.sin(hour / 24 * 2 * np.pi))
        clicked = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        model_logit = np.where(country == MISCALIBRATED, 2.0 * logit + 1.5, logit)  # overconfident
        p_click = 1 / (1 + np.exp(-model_logit))
        table = pa.table({"country": country, "device": device, "hour": hour.astype(np.int8),
                          "clicked": clicked, "p_click": p_click})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--out", default=os.path.join("build", "evaluate-demo"))
    parser.add_argument("--replicates", type=int, default=20)
    args = parser.parse_args(argv)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        print("this demo needs pyarrow: pip install 'losskit[data]' (or run make evaluate-demo)")
        return 1
    from losskit.cli import main as losskit_main

    os.makedirs(args.out, exist_ok=True)
    data = os.path.join(args.out, "clicks.parquet")
    print(f"writing {args.rows:,} synthetic impressions to {data} ...")
    write_clicks(data, args.rows)
    report_dir = os.path.join(args.out, "report")
    cmd = ["evaluate", data, "--y-true", "clicked", "--y-pred", "p_click",
           "--loss", "binary_crossentropy", "--loss", "mse", "--by", "country",
           "--by", "country,device", "--ci", "0.95", "--replicates", str(args.replicates),
           "--out", report_dir]
    print("losskit " + " ".join(cmd))
    status = losskit_main(cmd)
    if status:
        return status
    with open(os.path.join(report_dir, "report.json")) as fh:
        rep = json.load(fh)
    overall = rep["results"][0]
    print(f"\noverall log loss {overall['mean']:.5f} [{overall['lo']:.5f}, {overall['hi']:.5f}]")
    countries = sorted((r for r in rep["results"] if r["loss"] == "binary_crossentropy"
                        and list(r["slice"]) == ["country"]), key=lambda r: -r["mean"])
    for r in countries[:3]:
        print(f"  country {r['slice']['country']}: log loss {r['mean']:.5f} "
              f"[{r['lo']:.5f}, {r['hi']:.5f}] on {r['rows']:,} rows")
    # expected calibration error per country, from the reliability table (20 probability bins)
    gap: dict[str, list[float]] = {}
    for b in rep["reliability"]:
        g = gap.setdefault(b["slice"]["country"], [0.0, 0.0])
        g[0] += b["rows"] * abs(b["mean_p"] - b["frequency"])
        g[1] += b["rows"]
    ece = sorted(((v[0] / v[1], k) for k, v in gap.items()), reverse=True)
    print("calibration error (mean |predicted - observed| over probability bins), worst first:")
    for value, country in ece[:3]:
        flag = "   <- the miscalibrated slice" if country == MISCALIBRATED else ""
        print(f"  {country}: {value:.4f}{flag}")
    print(f"plots: {', '.join(sorted(f for f in os.listdir(report_dir) if f.endswith('.png')))} "
          f"in {report_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
