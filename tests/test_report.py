"""Tests of rhemo.engine.report: fold status, summary.json, the xlsx spreadsheet read back, the console table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from openpyxl import load_workbook

from rhemo.engine import report
from rhemo.engine.report import RunInfo


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
    assert report.read_metrics(tmp_path / "none.json")[0] == "missing"
    bad = tmp_path / "bad.json"
    for text in ('{"a": ', "[1, 2]", '{"status": "running"}', "\xff\xfe"):
        bad.write_text(text, encoding="latin-1")
        status, metrics, note = report.read_metrics(bad)
        assert status == "corrupt" and metrics is None and note
    bad.write_text('{"status": "done", "test": {"wa": 0.5}}')
    assert report.read_metrics(bad) == ("done", {"status": "done", "test": {"wa": 0.5}}, "")


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
                    model_name="simple_autoencoder_2_vad")
    path = report.write_run_summary(info)
    summary = json.loads(path.read_text())
    assert path == exp_dir / "1" / "summary.json" and not (exp_dir / "1" / "summary.json.tmp").exists()
    assert summary["folds_done"] == 2 and summary["script"] == "training_RHemo.py"
    assert summary["mean_std"]["test"]["recon"]["mean"] == pytest.approx(0.3)
    assert summary["mean_std"]["test"]["recon"]["std"] == pytest.approx(0.1)
    assert summary["mean_std"]["test"]["acc_dominance"] == {"mean": None, "std": None}   # nan → null


def test_spreadsheet_rows_columns_and_mean_std(exp_dir):
    run1 = make_run(exp_dir, "1", "training_SER.py", [ser_metrics(0.5, 0.4, 0.3, seconds=10.0),
                                                       ser_metrics(0.7, 0.6, 0.5, seconds=30.0)])
    run2 = make_run(exp_dir, "2", "training_SER.py", ["crash", "corrupt"], model_name="VGGNet", model_quat=False,
                    comment_2="second")
    run10 = make_run(exp_dir, "10", "training_SER.py", [None])
    path = report.write_spreadsheet(exp_dir, [run10, run2, run1])
    assert path == exp_dir / "2_SER_test_results.xlsx" and not list(exp_dir.glob("*.tmp"))

    book = load_workbook(path)
    assert book.sheetnames == ["SER"]
    sheet = book["SER"]
    rows = rows_of(sheet)
    header = rows[0]
    assert header[:8] == ["experiment", "run", "fold", "status", "script", "model", "quat", "params"]
    assert header[8:15] == ["test WA", "test UA", "test F1", "test utt WA", "test utt UA", "test utt F1", "val WA"]
    # the authors' accuracy (mean of per-batch accuracies) beside ours
    assert header[15:] == ["test WA batch-mean", "epochs", "best epoch", "time (s)", "comment_1", "comment_2", "note"]
    col = {name: i for i, name in enumerate(header)}
    assert [(r[col["run"]], r[col["fold"]], r[col["status"]]) for r in rows[1:]] == [
        (1, 0, "done"), (1, 1, "done"), (1, "mean", "2/2 done"), (1, "± std", "2/2 done"),
        (2, 0, "failed"), (2, 1, "corrupt"), (2, "mean", "0/2 done"), (2, "± std", "0/2 done"),
        (10, 0, "missing"), (10, "mean", "0/1 done"), (10, "± std", "0/1 done")]

    fold0, fold1, mean, std = rows[1:5]
    assert fold0[col["test WA"]] == 0.5 and fold1[col["test WA"]] == 0.7
    assert fold0[col["experiment"]] == "2_SER_test" and fold0[col["script"]] == "training_SER.py"
    assert fold0[col["model"]] == "AlexNet" and fold0[col["quat"]] is True and fold0[col["params"]] == 1234
    assert fold0[col["test utt F1"]] == pytest.approx(0.31) and fold0[col["val WA"]] == pytest.approx(0.4)
    assert mean[col["test WA"]] == pytest.approx(0.6) and std[col["test WA"]] == pytest.approx(0.1)
    assert mean[col["test F1"]] == pytest.approx(0.4) and std[col["test F1"]] == pytest.approx(0.1)
    assert mean[col["time (s)"]] == pytest.approx(20.0) and std[col["time (s)"]] == pytest.approx(10.0)
    assert mean[col["comment_1"]] == "c1"

    failed, corrupt, failed_mean = rows[5], rows[6], rows[7]
    assert failed[col["note"]] == "x run 1 fold 0: exit code 3"
    assert corrupt[col["note"]].startswith("unreadable metrics.json")
    assert failed[col["test WA"]] is None and failed_mean[col["test WA"]] is None
    assert failed[col["model"]] == "VGGNet" and failed[col["quat"]] is False and failed[col["comment_2"]] == "second"

    # formatting: bold frozen header, percentages, widths
    assert sheet["A1"].font.bold and sheet.freeze_panes == "E2"
    assert sheet.cell(row=2, column=col["test WA"] + 1).number_format == "0.00%"
    assert sheet.cell(row=2, column=col["params"] + 1).number_format == "#,##0"
    assert sheet.column_dimensions["A"].width == 26


def test_spreadsheet_rhemo_columns(exp_dir):
    info = make_run(exp_dir, "1", "training_RHemo.py", [rhemo_metrics(0.25, 0.5)],
                    model_name="simple_autoencoder_2_vad")
    sheet = load_workbook(report.write_spreadsheet(exp_dir, [info]))["RH-emo"]
    header, fold0 = rows_of(sheet)[:2]
    assert header[8:16] == ["test total", "test recon", "test emo", "test acc", "test acc valence",
                            "test acc arousal", "test acc dominance", "val total"]
    values = dict(zip(header, fold0))
    assert values["test recon"] == 0.25 and values["test total"] == 1.25 and values["test acc"] == 0.5
    assert values["test acc arousal"] == 0.7 and values["test acc dominance"] is None   # nan left empty
    assert values["params"] == 134283658


def test_spreadsheet_is_replaced_atomically(exp_dir):
    info = make_run(exp_dir, "1", "training_SER.py", [None])
    path = report.write_spreadsheet(exp_dir, [info])
    path.write_bytes(b"old")
    report.write_spreadsheet(exp_dir, [info])
    assert load_workbook(path).sheetnames == ["SER"]


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
                    model_name="simple_autoencoder_2_vad")
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
    assert json.loads((exp_dir / "1" / "summary.json").read_text())["folds_done"] == 1
    assert report.main([str(exp_dir / "nope")]) == 2
