"""The evaluation on a Dask cluster (2 workers) equals the single-machine run bit for bit, slices and
intervals included, from files and from a dask DataFrame."""

from __future__ import annotations

import numpy as np
import pytest

from losskit.metrics.files import evaluate
from losskit.metrics.output import report

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    rng = np.random.default_rng(3)
    d = tmp_path_factory.mktemp("dask")
    n = 20_000
    df = pd.DataFrame({"label": (rng.random(n) < 0.3).astype(np.int64),
                       "prob": rng.random(n) * 0.98 + 0.01,
                       "country": rng.choice(["fr", "de", "us"], n),
                       "device": rng.choice(["mobile", "desktop"], n)})
    df.loc[17, "prob"] = 1.5   # one row out of the domain: refused and counted
    for i, part in enumerate(np.array_split(np.arange(n), 4)):
        pq.write_table(pa.Table.from_pandas(df.iloc[part], preserve_index=False),
                       d / f"part-{i}.parquet", row_group_size=2000)
    df.to_csv(d / "all.csv", index=False)
    return d, df


SETTINGS = {"y_true": "label", "y_pred": "prob", "losses": ["bce", "mse"],
            "by": ["country", ["country", "device"]], "replicates": 15, "seed": 4,
            "on_bad_row": "skip"}


def same(a, b):
    ra, rb = report(a), report(b)
    for r in (ra, rb):
        r.pop("seconds")
    assert ra == rb


def test_files_on_the_cluster_equal_one_process(client, files):
    d, _ = files
    local = evaluate(str(d / "*.parquet"), batch_rows=3000, **SETTINGS)
    assert local.metric.refused["binary_crossentropy"] == {"domain": 1}
    on_dask = evaluate(str(d / "*.parquet"), scheduler=client.scheduler.address, **SETTINGS)
    same(local, on_dask)
    csv_dask = evaluate(str(d / "all.csv"), scheduler=client.scheduler.address, **SETTINGS)
    same(local, csv_dask)


def test_a_dask_dataframe_equals_one_process(client, files):
    d, df = files
    local = evaluate(str(d / "*.parquet"), **SETTINGS, threads=1)
    assert report(local)["results"] == report(evaluate(str(d / "*.parquet"), **SETTINGS,
                                                       threads=3))["results"]
    ddf = dd.from_pandas(df, npartitions=5)
    same(local, evaluate(ddf, **SETTINGS))


def test_command_line_on_a_scheduler(client, files, capsys, tmp_path):
    import json

    from losskit.cli import main

    d, _ = files
    args = ["evaluate", str(d / "*.parquet"), "--y-true", "label", "--y-pred", "prob", "--loss",
            "bce", "--by", "country", "--ci", "0.9", "--on-bad-row", "skip", "--no-progress",
            "--no-plots"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "dask"), "--scheduler",
                 client.scheduler.address]) == 0
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    on_dask = json.loads((tmp_path / "dask" / "report.json").read_text())
    assert one["results"] == on_dask["results"]
    assert on_dask["refused"] == {"binary_crossentropy": {"domain": 1}}
    capsys.readouterr()
