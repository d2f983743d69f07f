"""Tests of rhemo.experiments.report: fold status, summary.json, the results CSV and xlsx read back, the console table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from rhemo.experiments import report
from rhemo.experiments.report import RunInfo
from rhemo.train import runfolder


def ser_metrics(wa: float, ua: float, f1: float, params: int = 1234, epochs: int = 10, seconds: float = 60.0,
                quat: bool = True) -> dict:
    split = {"loss": 1.0, "wa": wa, "ua": ua, "f1": f1, "confusion": [[1, 0], [0, 1]],
             "utt_wa": wa + 0.01, "utt_ua": ua + 0.01, "utt_f1": f1 + 0.01, "utt_confusion": [[1, 0], [0, 1]]}
    return {"status": "done", "script": "ser", "model_name": "AlexNet", "quat": quat, "params": params,
            "epochs": epochs, "best_epoch": epochs - 2, "seconds": seconds, "label_names": ["a", "b"],
            "train": split, "val": {**split, "wa": wa - 0.1}, "test": split}


def rhemo_metrics(recon: float, acc: float) -> dict:
    split = {"total": 1.0 + recon, "recon": recon, "emo": 1.0, "cls": 0.5, "vad": 0.5, "valence": 0.1,
             "arousal": 0.2, "dominance": 0.2, "acc": acc, "acc_valence": 0.6, "acc_arousal": 0.7,
             "acc_dominance": float("nan")}
    return {"status": "done", "script": "rhemo", "model_name": "simple_autoencoder_2_vad", "quat": True,
            "params": 134283658, "epochs": 5, "best_epoch": 4, "seconds": 12.0, "label_names": [],
            "train": split, "val": split, "test": split}


def make_run(exp_dir: Path, run: str, script: str, folds: list, **config) -> RunInfo:
    """Create ``exp_dir/run/fold<k>`` folders; each entry of ``folds`` is a metrics dict, 'crash', 'corrupt',
    'running' or None (fold not started)."""
    cfg = {"script": script, "num_folds": len(folds), "model_name": "AlexNet", "model_quat": True,
           "comment_1": "c1", "comment_2": "", **config}
    for k, content in enumerate(folds):
        fold_dir = exp_dir / run / f"fold{k}"
        if content is None:
            continue
        fold_dir.mkdir(parents=True)
        (fold_dir / "config.json").write_text(json.dumps({**cfg, "fold": k}))
        if content == "crash":
            (fold_dir / "error.txt").write_text("x run 1 fold 0: exit code 3\nmore\n")
        elif content == "corrupt":
            (fold_dir / "metrics.json").write_text('{"status": "done", "test": {')
        elif content == "running":
            (fold_dir / "run.log").write_text("epoch 1\n")
        else:
            (fold_dir / "metrics.json").write_text(json.dumps(content))
    return RunInfo.from_config(exp_dir.name, run, exp_dir / run, cfg)


def rows_of(sheet) -> list[list]:
    return [[cell.value for cell in row] for row in sheet.iter_rows()]


@pytest.fixture
def exp_dir(tmp_path: Path) -> Path:
    return tmp_path / "results" / "2_SER_test"


def test_read_metrics_statuses(tmp_path):
    assert runfolder.read_metrics(tmp_path / "none.json")[0] == "missing"
    bad = tmp_path / "bad.json"
    for text in ('{"a": ', "[1, 2]", '{"status": "running"}', "\xff\xfe"):
        bad.write_text(text, encoding="latin-1")
        status, metrics, note = runfolder.read_metrics(bad)
        assert status == "corrupt" and metrics is None and note
    bad.write_text('{"status": "done", "test": {"wa": 0.5}}')
    assert runfolder.read_metrics(bad) == ("done", {"status": "done", "test": {"wa": 0.5}}, "")


def test_fold_records(exp_dir):
    info = make_run(exp_dir, "1", "training_SER.py", [ser_metrics(0.5, 0.4, 0.3), "crash", "corrupt", "running",
                                                       None])
    records = report.fold_records(info)
    assert [r.status for r in records] == ["done", "failed", "corrupt", "missing", "missing"]
    assert records[1].note == "x run 1 fold 0: exit code 3"
    assert records[3].note == "started but not finished" and records[4].note == ""


def test_flat_numbers_and_aggregate(exp_dir):
    info = make_run(exp_dir, "1", "training_SER.py", [ser_metrics(0.5, 0.4, 0.3, epochs=10),
                                                       ser_metrics(0.7, 0.6, 0.5, epochs=20), "crash"])
    stats = report.aggregate(report.fold_records(info))
    assert stats["test.wa"]["mean"] == pytest.approx(0.6) and stats["test.wa"]["std"] == pytest.approx(0.1)
    assert stats["epochs"] == {"mean": 15.0, "std": 5.0}
    assert "test.confusion" not in stats and "label_names" not in stats


def test_summary_json(exp_dir):
    info = make_run(exp_dir, "1", "training_RHemo.py", [rhemo_metrics(0.2, 0.5), rhemo_metrics(0.4, 0.7)],
                    model_name="simple_autoencoder_2_vad", loss_beta=0.01)
    path = report.write_run_summary(info)
    summary = json.loads(path.read_text())
    assert path == exp_dir / "1" / "summary.json" and not (exp_dir / "1" / "summary.json.tmp").exists()
    assert summary["folds_done"] == 2 and summary["script"] == "training_RHemo.py"
    assert summary["mean_std"]["test"]["recon"]["mean"] == pytest.approx(0.3)
    assert summary["mean_std"]["test"]["recon"]["std"] == pytest.approx(0.1)
    assert summary["mean_std"]["test"]["acc_dominance"] == {"mean": None, "std": None}   # nan → null


def read_tables(exp_dir: Path):
    csv_path, xlsx_path = report.table_paths(exp_dir)
    return pd.read_csv(csv_path), pd.read_excel(xlsx_path, sheet_name=None)


def test_results_csv_one_row_per_run_and_fold_equal_to_metrics_json(exp_dir):
    run1 = make_run(exp_dir, "1", "training_SER.py", [ser_metrics(0.5, 0.4, 0.3, seconds=10.0),
                                                       ser_metrics(0.7, 0.6, 0.5, seconds=30.0)],
                    learning_rate=1e-4, batch_size=8, patience=3, normalisation="zscore", protocol="speaker",
                    seed=5, use_r2he=True, r2he_model_path="results/rh/checkpoint.pt")
    run2 = make_run(exp_dir, "2", "training_SER.py", ["crash", "corrupt"], model_name="VGGNet", model_quat=False,
                    use_r2he=False, comment_2="second")
    run10 = make_run(exp_dir, "10", "training_SER.py", [None])
    csv_path, xlsx_path = report.write_tables(exp_dir, [run10, run2, run1])
    assert (csv_path, xlsx_path) == (exp_dir / "2_SER_test_results.csv", exp_dir / "2_SER_test_results.xlsx")
    assert not list(exp_dir.glob("*.tmp"))
    table, sheets = read_tables(exp_dir)
    assert list(zip(table["run"], table["fold"], table["status"])) == [
        (1, 0, "done"), (1, 1, "done"), (2, 0, "failed"), (2, 1, "corrupt"), (10, 0, "missing")]
    for fold in (0, 1):
        row = table.iloc[fold]
        metrics = json.loads((exp_dir / "1" / f"fold{fold}" / "metrics.json").read_text())
        for split in ("test", "val"):
            for key in ("wa", "ua", "f1", "utt_wa", "utt_ua", "utt_f1", "loss"):
                assert row[f"{split}_{key}"] == metrics[split][key]
        assert (row["params"], row["epochs"], row["best_epoch"], row["seconds"]) == (
            metrics["params"], metrics["epochs"], metrics["best_epoch"], metrics["seconds"])
    first = table.iloc[0]
    assert (first["model"], bool(first["quat"]), first["input"]) == (
        "AlexNet", True, "RH-emo embeddings (results/rh/checkpoint.pt)")
    assert (first["lr"], first["batch_size"], first["patience"], first["normalisation"], first["protocol"],
            first["seed"]) == (1e-4, 8, 3, "zscore", "speaker", 5)
    failed, corrupt = table.iloc[2], table.iloc[3]
    assert failed["note"] == "x run 1 fold 0: exit code 3" and corrupt["note"].startswith("unreadable metrics.json")
    assert math.isnan(failed["test_wa"]) and failed["input"] == "spectrogram" and failed["comment_2"] == "second"
    assert "test_total" not in table.columns           # no RH-emo run: no RH-emo columns

    assert list(sheets) == ["folds", "mean ± std"]
    assert sheets["folds"]["test_wa"].tolist()[:2] == [0.5, 0.7] and len(sheets["folds"]) == 5
    summary = sheets["mean ± std"]
    assert summary["run"].tolist() == [1, 2, 10]           # one row per run, even a single-fold run
    assert summary["folds_done"].tolist() == ["2/2", "0/2", "0/1"]
    mean = summary.iloc[0]
    assert mean["test_wa_mean"] == pytest.approx(0.6) and mean["test_wa_std"] == pytest.approx(0.1)
    assert mean["val_ua_mean"] == pytest.approx(0.5) and mean["seconds_std"] == pytest.approx(10.0)
    assert math.isnan(summary.iloc[1]["test_wa_mean"])
    sheet = load_workbook(xlsx_path)["folds"]
    header = [c.value for c in sheet[1]]
    assert sheet["A1"].font.bold
    assert sheet.cell(row=2, column=header.index("test_wa") + 1).number_format == "0.00%"


def test_results_csv_health_seed_and_stage1_accuracies(exp_dir):
    stage1 = rhemo_metrics(0.25, 0.5)
    stage2 = {**rhemo_metrics(0.3, 0.6), "health": {"warning": "decoder channels are identical"}}
    info1 = make_run(exp_dir, "1", "training_RHemo.py", [stage1], model_name="simple_autoencoder_2_vad",
                     loss_beta=0.0)
    info2 = make_run(exp_dir, "2", "training_RHemo.py", [stage2, stage2], model_name="simple_autoencoder_2_vad",
                     loss_beta=0.01, seed=[1, 2])
    report.write_tables(exp_dir, [info1, info2])
    table, sheets = read_tables(exp_dir)
    first, second = table.iloc[0], table.iloc[1]
    assert first["test_recon"] == 0.25 and first["input"] == "spectrogram"
    assert math.isnan(first["test_acc"]) and math.isnan(first["val_acc_valence"])   # heads never trained
    assert second["test_acc"] == 0.6 and second["test_acc_arousal"] == 0.7
    assert math.isnan(second["test_acc_dominance"])                                  # nan in metrics.json
    assert pd.isna(first["health"]) and second["health"] == "decoder channels are identical"
    assert second["seed"] == "[1, 2]"
    assert "test_wa" not in table.columns
    assert "test acc %" in report.console_table([info1]) and " - " in report.console_table([info1])
    table_text = report.console_table([info1, info2])
    header, _, row1, row2, *warned = table_text.splitlines()[1:]
    end = header.index("health") + len("health")   # the column is right-aligned: cells end where it ends
    assert row1[:end].split()[-1] == "ok" and row2[:end].split()[-1] == "WARN"
    assert warned == ["WARNING run 2 fold 0: decoder channels are identical",
                      "WARNING run 2 fold 1: decoder channels are identical"]


def test_xlsx_stores_formula_like_text_as_text(exp_dir):
    formula = '=HYPERLINK("http://example.com","click")'
    info = make_run(exp_dir, "1", "training_SER.py", [{**ser_metrics(0.5, 0.4, 0.3), "model_name": "@x"}],
                    comment_1=formula, comment_2="+1")
    _, xlsx_path = report.write_tables(exp_dir, [info])
    for name in ("folds", "mean ± std"):
        sheet = load_workbook(xlsx_path)[name]
        cells = {c.value: c for row in sheet.iter_rows() for c in row if isinstance(c.value, str)}
        assert cells["@x"].data_type == "s" and cells["@x"].quotePrefix
    folds = {c.value: c for row in load_workbook(xlsx_path)["folds"].iter_rows() for c in row}
    assert folds[formula].data_type == "s" and folds[formula].quotePrefix and folds["+1"].data_type == "s"
    import zipfile
    with zipfile.ZipFile(xlsx_path) as archive:
        assert all("<f>" not in archive.read(n).decode() for n in archive.namelist() if n.endswith(".xml"))
    assert pd.read_csv(report.table_paths(exp_dir)[0])["comment_1"][0] == formula


def test_tables_are_replaced_atomically(exp_dir):
    info = make_run(exp_dir, "1", "training_SER.py", [None])
    csv_path, xlsx_path = report.write_tables(exp_dir, [info])
    xlsx_path.write_bytes(b"old")
    report.write_tables(exp_dir, [info])
    assert load_workbook(xlsx_path).sheetnames == ["folds", "mean ± std"]


def test_runs_on_disk(exp_dir, capsys):
    make_run(exp_dir, "3", "training_SER.py", [ser_metrics(0.5, 0.4, 0.3)], comment_1="three")
    make_run(exp_dir, "1", "training_RHemo.py", [rhemo_metrics(0.2, 0.5)], model_name="simple_autoencoder_2_vad")
    (exp_dir / "7").mkdir()                       # no config: reported, left out
    (exp_dir / "notes").mkdir()                   # not a run number: ignored
    infos = report.runs_on_disk(exp_dir)
    assert [(i.run, i.kind, i.comment_1) for i in infos] == [("1", "rhemo", "c1"), ("3", "ser", "three")]
    assert "7 has no readable" in capsys.readouterr().err


def test_console_table(exp_dir):
    run1 = make_run(exp_dir, "1", "training_SER.py", [ser_metrics(0.5, 0.4, 0.3, params=2_470_000),
                                                       ser_metrics(0.7, 0.6, 0.5, params=2_470_000)])
    run2 = make_run(exp_dir, "2", "training_SER.py", ["crash"], model_quat=False)
    run3 = make_run(exp_dir, "3", "training_RHemo.py", [rhemo_metrics(0.25, 0.5)],
                    model_name="simple_autoencoder_2_vad", loss_beta=0.01)
    text = report.console_table([run3, run2, run1])
    ser_block, rhemo_block = text.split("\n\n")
    lines = ser_block.splitlines()
    assert lines[0] == "SER runs"
    header, rule, row1, row2 = lines[1:]
    assert header.split() == ["run", "model", "quat", "params", "test", "WA", "%", "test", "UA", "%", "test", "F1",
                              "%", "epochs", "time/fold", "(s)", "status"]
    assert set(rule) == {"-", " "}
    assert "60.0 ± 10.0" in row1 and "50.0 ± 10.0" in row1 and "40.0 ± 10.0" in row1
    assert "2.47M" in row1 and row1.endswith("2/2 done")
    assert row2.split()[:4] == ["2", "AlexNet", "no", "-"] and row2.endswith("0/1 done (failed)")
    # aligned: every row's status column starts where the header's does
    start = header.index("status")
    assert row1[start:].startswith("2/2") and row2[start:].startswith("0/1")
    rows = rhemo_block.splitlines()
    assert rows[0] == "RH-emo runs" and "test recon" in rows[1] and "test acc %" in rows[1]
    assert "0.2500" in rows[3] and "50.0" in rows[3] and "±" not in rows[3]     # one fold: no std


def test_console_table_survives_corrupt_metrics(exp_dir):
    info = make_run(exp_dir, "1", "training_SER.py", ["corrupt"])
    assert report.console_table([info]).splitlines()[-1].endswith("0/1 done (corrupt)")


def test_run_info_rejects_unknown_script(tmp_path):
    with pytest.raises(ValueError, match="'script' is 'train.py'"):
        RunInfo.from_config("x", "1", tmp_path, {"script": "train.py"})


def test_report_cli_regenerates_from_disk(exp_dir, capsys):
    make_run(exp_dir, "1", "training_SER.py", [ser_metrics(0.5, 0.4, 0.3)])
    assert report.main([str(exp_dir)]) == 0
    out = capsys.readouterr().out
    assert "SER runs" in out and (exp_dir / "2_SER_test_results.xlsx").exists()
    assert pd.read_csv(exp_dir / "2_SER_test_results.csv")["test_wa"].tolist() == [0.5]
    assert json.loads((exp_dir / "1" / "summary.json").read_text())["folds_done"] == 1
    assert report.main([str(exp_dir / "nope")]) == 2
