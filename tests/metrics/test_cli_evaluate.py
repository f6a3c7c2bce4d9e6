"""``losskit evaluate``, run as a user runs it: happy paths on Parquet and CSV, every bad-input class
with its message and exit status, refused-row counts, the files written and the PNGs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import losskit
from losskit.cli import main

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("matplotlib")

N = 3000


def exact_mean(values) -> float:
    return float(sum(map(Fraction, values), Fraction(0)) / len(values))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(7)
    d = tmp_path_factory.mktemp("evaluate")
    country = rng.choice(["fr", "de", "jp"], N)
    label = (rng.random(N) < 0.4).astype(np.int64)
    prob = rng.random(N) * 0.98 + 0.01
    logits = rng.normal(size=(N, 3))
    cls = rng.integers(0, 3, N)
    table = pa.table({"label": label, "prob": prob, "country": country, "cls": cls,
                      "logits": pa.array(logits.tolist(), type=pa.list_(pa.float64())),
                      "logit_0": logits[:, 0], "logit_1": logits[:, 1], "logit_2": logits[:, 2],
                      "name": pa.array(["x"] * N)})
    pq.write_table(table, d / "preds.parquet", row_group_size=1000)
    (d / "parts").mkdir()
    pq.write_table(table.slice(0, 1200), d / "parts" / "a.parquet")
    pq.write_table(table.slice(1200), d / "parts" / "b.parquet")
    with open(d / "preds.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", "prob", "country"])
        for i in range(N):
            w.writerow([label[i], repr(float(prob[i])), country[i]])
    with open(d / "bad.csv", "w", newline="") as fh:
        fh.write("label,prob,country\n1,0.5,fr\n0,abc,fr\n1,,de\n1,1.5,de\n0,0.25,jp\n")
    (d / "empty.parquet").write_bytes(b"")
    (d / "corrupt.parquet").write_bytes(b"PAR1 this is not a parquet file at all PAR1")
    return {"dir": d, "label": label, "prob": prob, "country": country, "logits": logits, "cls": cls}


def run(capsys, *args):
    code = main(["evaluate", *map(str, args), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_parquet_with_slices_intervals_and_files(data, capsys, tmp_path):
    out = tmp_path / "report"
    code, text, err = run(capsys, data["dir"] / "preds.parquet", "--y-true", "label", "--y-pred",
                          "prob", "--loss", "binary_crossentropy", "--loss", "mse", "--by",
                          "country", "--ci", "0.9", "--replicates", "30", "--out", out)
    assert code == 0, err
    assert err == ""
    assert "binary_crossentropy" in text
    assert "90% interval" in text
    rep = json.loads((out / "report.json").read_text())
    bce = np.asarray(losskit.binary_crossentropy(data["label"][:, None].astype(float),
                                                 data["prob"][:, None]))
    overall = rep["results"][0]
    assert overall["loss"] == "binary_crossentropy"
    assert overall["slice"] == {}
    assert overall["rows"] == N
    assert overall["mean"] == exact_mean(bce.tolist())
    assert overall["lo"] < overall["mean"] < overall["hi"]
    fr = next(r for r in rep["results"] if r["slice"] == {"country": "fr"}
              and r["loss"] == "binary_crossentropy")
    assert fr["mean"] == exact_mean(bce[data["country"] == "fr"].tolist())
    assert rep["rows_read"] == N
    assert rep["refused"] == {"binary_crossentropy": {}, "mean_squared_error": {}}
    with open(out / "report.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 4
    assert float(rows[0]["mean"]) == overall["mean"]
    for name in ("binary_crossentropy_by_slice.png", "binary_crossentropy_histogram.png",
                 "mean_squared_error_by_slice.png", "reliability.png"):
        blob = (out / name).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(blob) > 10_000   # a drawn plot, not an empty canvas
    rel = rep["reliability"]
    assert {r["slice"]["country"] for r in rel} == {"fr", "de", "jp"}
    assert sum(r["rows"] for r in rel) == N


def test_csv_gives_the_parquet_numbers(data, capsys, tmp_path):
    args = ["--y-true", "label", "--y-pred", "prob", "--loss", "bce", "--by", "country"]
    run(capsys, data["dir"] / "preds.parquet", *args, "--out", tmp_path / "p", "--no-plots")
    run(capsys, data["dir"] / "preds.csv", *args, "--out", tmp_path / "c", "--no-plots")
    p = json.loads((tmp_path / "p" / "report.json").read_text())["results"]
    c = json.loads((tmp_path / "c" / "report.json").read_text())["results"]
    assert p == c


def test_folder_and_glob_give_the_single_file_numbers(data, capsys, tmp_path):
    args = ["--y-true", "label", "--y-pred", "prob", "--loss", "bce", "--by", "country", "--ci",
            "0.95", "--no-plots"]
    run(capsys, data["dir"] / "preds.parquet", *args, "--out", tmp_path / "one")
    run(capsys, data["dir"] / "parts", *args, "--out", tmp_path / "folder")
    run(capsys, data["dir"] / "parts" / "*.parquet", *args, "--out", tmp_path / "glob")
    one = json.loads((tmp_path / "one" / "report.json").read_text())["results"]
    assert json.loads((tmp_path / "folder" / "report.json").read_text())["results"] == one
    assert json.loads((tmp_path / "glob" / "report.json").read_text())["results"] == one


def test_list_column_and_column_glob_with_options(data, capsys, tmp_path):
    expected = exact_mean(np.asarray(losskit.sparse_categorical_crossentropy(
        data["cls"], data["logits"], from_logits=True)).tolist())
    for pred in ("logits", "logit_*", "logit_0,logit_1,logit_2"):
        code, _, err = run(capsys, data["dir"] / "preds.parquet", "--y-true", "cls", "--y-pred",
                           pred, "--loss", "sparse_categorical_crossentropy", "--option",
                           "from_logits=true", "--out", tmp_path / pred.replace("*", "s"))
        assert code == 0, err
        rep = json.loads((tmp_path / pred.replace("*", "s") / "report.json").read_text())
        assert rep["results"][0]["mean"] == expected
        assert rep["reliability"] is None   # logits of three classes: no reliability diagram


def test_bad_rows_counted_by_reason_or_reported(data, capsys):
    code, text, err = run(capsys, data["dir"] / "bad.csv", "--y-true", "label", "--y-pred", "prob",
                          "--loss", "bce", "--on-bad-row", "skip")
    assert code == 0, err
    assert "refused by binary_crossentropy: domain 1, missing 1, unparsable 1" in text
    assert "5 rows read" in text
    code, _, err = run(capsys, data["dir"] / "bad.csv", "--y-true", "label", "--y-pred", "prob",
                       "--loss", "bce")
    assert code == 1
    assert err.count("\n") == 1
    assert "row 1:" in err
    assert "unparsable" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "status", "message"), [
    (["preds.parquet", "--y-true", "nolabel", "--y-pred", "prob"], 1, "no column 'nolabel'"),
    (["preds.parquet", "--y-true", "label", "--y-pred", "name"], 1,
     "column 'name' has type string; expected numbers"),
    (["preds.parquet", "--y-true", "label", "--y-pred", "zz_*"], 1, "no column matches"),
    (["empty.parquet", "--y-true", "label", "--y-pred", "prob"], 1, "the file is empty"),
    (["corrupt.parquet", "--y-true", "label", "--y-pred", "prob"], 1,
     "cannot read it as PARQUET"),
    (["missing.parquet", "--y-true", "label", "--y-pred", "prob"], 1, "no such file"),
    (["preds.parquet", "--y-true", "label", "--y-pred", "prob", "--loss", "bce", "--option",
      "bogus=1"], 2, "no --loss takes the option(s) bogus"),
    (["preds.parquet", "--y-true", "label", "--y-pred", "prob", "--ci", "1.5"], 2,
     "--ci must lie in (0, 1)"),
])
def test_bad_input_gives_one_line_and_a_status(data, capsys, args, status, message):
    args = [str(data["dir"] / args[0]), *args[1:]]
    if "--loss" not in args:
        args += ["--loss", "bce"]
    code, _, err = run(capsys, *args)
    assert code == status
    assert message in err
    assert err.count("\n") == 1
    assert err.startswith("losskit evaluate: error:")


def test_unknown_loss_is_a_usage_error(data, capsys):
    code, _, err = run(capsys, data["dir"] / "preds.parquet", "--y-true", "label", "--y-pred",
                       "prob", "--loss", "binary_crossentropi")
    assert code == 2
    assert "unknown loss 'binary_crossentropi'" in err


def test_console_script_module_entry(data, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(losskit.__file__).parents[1]))
    proc = subprocess.run([sys.executable, "-m", "losskit", "evaluate",
                           str(data["dir"] / "preds.parquet"), "--y-true", "label", "--y-pred",
                           "prob", "--loss", "bce"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "3000 rows read" in proc.stdout
    assert "rows/s" in proc.stderr   # the progress line
    bad = subprocess.run([sys.executable, "-m", "losskit", "evaluate",
                          str(data["dir"] / "corrupt.parquet"), "--y-true", "label", "--y-pred",
                          "prob", "--loss", "bce"], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1


def test_weight_column_and_header_only_csv(data, capsys, tmp_path):
    rng = np.random.default_rng(2)
    w = rng.random(N) * 3
    table = pa.table({"label": data["label"], "prob": data["prob"], "w": w})
    pq.write_table(table, tmp_path / "weighted.parquet")
    code, _, err = run(capsys, tmp_path / "weighted.parquet", "--y-true", "label", "--y-pred", "prob",
                       "--loss", "mse", "--weight", "w", "--out", tmp_path / "r", "--no-plots")
    assert code == 0, err
    values = (data["prob"] - data["label"]) ** 2   # exact per-sample squares are what mse returns
    np.testing.assert_array_equal(values, np.asarray(losskit.mean_squared_error(
        data["label"][:, None].astype(float), data["prob"][:, None])))
    expected = float(sum(Fraction(a) * Fraction(b) for a, b in zip(w.tolist(), values.tolist(),
                                                                       strict=True))
                     / sum(map(Fraction, w.tolist())))
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["results"][0]["mean"] == expected
    (tmp_path / "header.csv").write_text("label,prob\n")
    code, _, err = run(capsys, tmp_path / "header.csv", "--y-true", "label", "--y-pred", "prob",
                       "--loss", "bce")
    assert code == 1
    assert "no rows to evaluate" in err
