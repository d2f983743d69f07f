"""Fault cases of the training scripts (issue 11): finished and foreign run folders, stale temporary files,
diverging losses, a full disk, and inputs that type-check but cannot train. Each one ends in one line on stderr
with exit code 2 and loses nothing that was computed."""
from __future__ import annotations

import errno
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from models.registry import create_model

from rhemo.train import checkpoint as ckpt
from rhemo.train import config, loop

from engine_helpers import FOUR, REPO, load_script, make_store, read_metrics, rhemo_config, ser_config  # noqa: E402


def run(name: str, cfg: dict, tmp: Path, *extra: str) -> int:
    path = tmp / f"{Path(cfg['output_dir']).name}.json"
    path.write_text(json.dumps(cfg))
    return load_script(name).main(["--config", str(path), *extra])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "store", FOUR * 3)


# ------------------------------------------------------------------------------------- finished / foreign folders
def test_a_finished_run_is_refused_and_force_retrains_it(tmp_path, store, capsys):
    out = tmp_path / "run"
    cfg = ser_config(store, out, num_epochs=1)
    assert run("training_SER.py", cfg, tmp_path) == 0
    before = {name: (out / name).read_bytes() for name in ("metrics.json", "checkpoint.pt", "log.csv")}
    capsys.readouterr()
    for changed in ({}, {"learning_rate": 1e-3}):  # the same command, or other hyperparameters
        assert run("training_SER.py", {**cfg, **changed}, tmp_path) == 2
        assert "already finished; --force to retrain" in one_error_line(capsys)
        assert {name: (out / name).read_bytes() for name in before} == before
    assert run("training_SER.py", {**cfg, "learning_rate": 1e-3}, tmp_path, "--force") == 0
    assert (out / "metrics.previous.json").read_bytes() == before["metrics.json"]
    assert read_metrics(out)["status"] == "done"
    assert json.loads((out / "config.json").read_text())["learning_rate"] == 1e-3


@pytest.mark.parametrize("record, finished", [({"status": "done", "test": {}}, True), ({"test": {}}, True),
                                              ({"status": "failed"}, False), ("not json", False), (None, False)])
def test_the_launcher_and_a_training_script_agree_on_a_finished_folder(tmp_path, record, finished):
    """One rule: a metrics.json without a status (hand-made or old) counts as finished for both, as the
    report reads it; a failed or unreadable record does not."""
    from rhemo.train import runfolder  # the launcher skips a fold by runfolder.run_finished too

    folder = tmp_path / "fold1"
    folder.mkdir()
    if record is not None:
        (folder / "metrics.json").write_text(record if isinstance(record, str) else json.dumps(record))
    assert runfolder.run_finished(folder) is finished
    if finished:
        with pytest.raises(runfolder.RunFolderError, match="already finished"):
            runfolder.check_run_folder(folder, {}, set(), False, lambda: None)
    else:
        assert runfolder.check_run_folder(folder, {}, set(), False, lambda: None) == []


def test_two_training_commands_on_one_folder_never_train_at_once(tmp_path, store, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(  # another training command that holds the folder (as recipe.start does)
        [sys.executable, "-c", "import sys, time; from rhemo.train import runfolder; "
         f"runfolder.lock_for_training({str(out)!r}); print('locked', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run("training_SER.py", ser_config(store, out, num_epochs=1), tmp_path) == 2
        line = one_error_line(capsys)
        assert f"is being trained by another process (pid {holder.pid}" in line and str(out) in line
        assert not (out / "config.json").exists() and not (out / "log.csv").exists()
    finally:
        holder.kill()
        holder.wait()
    assert run("training_SER.py", ser_config(store, out, num_epochs=1), tmp_path) == 0  # the holder is gone


def test_an_unfinished_run_of_another_config_is_refused(tmp_path, store, monkeypatch, capsys, after_epoch):
    out = tmp_path / "run"
    cfg = ser_config(store, out, num_epochs=3)

    def interrupt(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    after_epoch[:] = [interrupt]
    assert run("training_SER.py", cfg, tmp_path) == 130
    after_epoch[:] = []
    last = (out / "last.pt").read_bytes()
    capsys.readouterr()
    assert run("training_SER.py", {**cfg, "batch_size": 2}, tmp_path) == 2
    line = one_error_line(capsys)
    assert "holds a run with a different config" in line and "batch_size 4 → 2" in line and "--force" in line
    assert (out / "last.pt").read_bytes() == last
    # the launcher rewrites config.json before starting the script: last.pt still tells the two configs apart
    (out / "config.json").write_text(json.dumps({**cfg, "batch_size": 2}))
    assert run("training_SER.py", {**cfg, "batch_size": 2}, tmp_path) == 2
    assert "last.pt: batch_size 4 → 2" in one_error_line(capsys)
    (out / "config.json").write_text(json.dumps(cfg))
    # a resume-free key may change: the run resumes
    assert run("training_SER.py", {**cfg, "num_epochs": 2}, tmp_path) == 0
    assert "resuming from" in capsys.readouterr().out and read_metrics(out)["epochs"] == 2


def test_force_with_another_config_starts_from_scratch(tmp_path, store, monkeypatch, capsys, after_epoch):
    out = tmp_path / "run"
    cfg = ser_config(store, out, num_epochs=2)
    after_epoch[:] = [lambda epoch: (_ for _ in ()).throw(KeyboardInterrupt)]
    assert run("training_SER.py", cfg, tmp_path) == 130
    after_epoch[:] = []
    assert run("training_SER.py", {**cfg, "seed": 9}, tmp_path, "--force") == 0
    out_text = capsys.readouterr().out
    assert "training from scratch" in out_text and "resuming" not in out_text
    fresh = tmp_path / "fresh"
    assert run("training_SER.py", {**cfg, "seed": 9, "output_dir": str(fresh)}, tmp_path) == 0
    assert read_metrics(out)["test"] == read_metrics(fresh)["test"]


def test_stale_temporary_files_are_removed_when_a_run_starts(tmp_path, store):
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / "checkpoint.pt.k2j3h4.tmp", out / "last.pt.abc_12.tmp", out / "metrics.json.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (out / "notes.tmp").write_text("not ours")
    assert run("training_SER.py", ser_config(store, out, num_epochs=1), tmp_path) == 0
    assert not any(path.exists() for path in stale)
    assert (out / "notes.tmp").exists()


# ------------------------------------------------------------------------------------- divergence, disk full
def test_a_loss_that_becomes_nan_stops_with_one_line_and_keeps_last_pt(tmp_path, store, monkeypatch, capsys, after_epoch):
    out = tmp_path / "run"
    poisoned = []
    real_loss = loop.losses.ser_loss
    monkeypatch.setattr(loop.losses, "ser_loss",
                        lambda logits, target: real_loss(logits, target) * (float("nan") if poisoned else 1.0))
    after_epoch[:] = [lambda epoch: poisoned.append(epoch)]
    assert run("training_SER.py", ser_config(store, out, num_epochs=3), tmp_path) == 2
    line = one_error_line(capsys)
    assert "the training loss became nan at epoch 2" in line and "lower learning_rate" in line
    saved = ckpt.load_checkpoint(out / "last.pt")
    assert saved["epoch"] == 1 and not (out / "metrics.json").exists()


def test_a_full_disk_gives_one_line_and_the_run_resumes(tmp_path, store, monkeypatch, capsys):
    out, reference = tmp_path / "run", tmp_path / "reference"
    cfg = ser_config(store, out, num_epochs=3)
    assert run("training_SER.py", {**cfg, "output_dir": str(reference)}, tmp_path) == 0
    real_save = ckpt.torch.save

    def save(payload, handle):  # the disk fills up while epoch 3's files are written (in the background)
        if payload.get("epoch", 0) >= 3:
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(payload, handle)

    monkeypatch.setattr(ckpt.torch, "save", save)
    capsys.readouterr()
    assert run("training_SER.py", cfg, tmp_path) == 2
    line = one_error_line(capsys)
    assert f"no space left on device writing {out}" in line
    assert "run the same command again" in line
    assert not list(out.glob("*.tmp")) and ckpt.load_checkpoint(out / "last.pt")["epoch"] == 2
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert run("training_SER.py", cfg, tmp_path) == 0
    for split in ("train", "val", "test"):
        assert read_metrics(out)[split] == read_metrics(reference)[split]


# ------------------------------------------------------------------------------------- values that cannot train
@pytest.mark.parametrize("script, key, value, expected", [
    ("ser", "learning_rate", float("nan"), "must be a finite number"),
    ("ser", "learning_rate", float("inf"), "must be a finite number"),
    ("rhemo", "learning_rate", float("-inf"), "must be a finite number"),
    ("ser", "model_classifier_dropout", 1.0, "must be in [0, 1)"),
    ("rhemo", "model_classifier_dropout", 1.5, "must be in [0, 1)"),
    ("ser", "save_model_metric", "recon", "expected one of loss, acc, wa, ua, f1"),
    ("ser", "save_model_metric", "total_loss", "expected one of loss, acc, wa, ua, f1"),
    ("rhemo", "save_model_metric", "f1", "expected one of total_loss, recon"),
])
def test_values_that_cannot_train_are_refused_by_validation(script, key, value, expected):
    with pytest.raises(config.ConfigError) as caught:
        config.validate({key: value}, script=script, source="exp.txt, run 3")
    message = str(caught.value)
    assert message.startswith("exp.txt, run 3: key '" + key + "'") and expected in message


def test_nan_learning_rate_on_the_command_line_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        load_script("training_SER.py").main(["--learning_rate", "nan"])
    assert caught.value.code == 2
    assert "key 'learning_rate' expects a number" in capsys.readouterr().err


def test_launcher_dry_run_catches_them(tmp_path, capsys):
    from rhemo.experiments import launcher

    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "1_x.txt").write_text(json.dumps(
        {"global_parameters": {"script": "training_SER.py", "use_r2he": False, "model_quat": False},
         "1": {}, "2": {"save_model_metric": "recon"}}))
    code = launcher.main(["--ids", "1", "--dry_run", "--experiments_folder", str(tmp_path / "experiments"),
                          "--output_folder", str(tmp_path / "results")])
    assert code == 2
    err = capsys.readouterr().err
    assert "1_x.txt, run 2: key 'save_model_metric' is 'recon'" in err and "loss, acc, wa, ua, f1" in err


# ------------------------------------------------------------------------------------- views and folds vs the store
def _ravdess_store(tmp_path):
    return make_store(tmp_path / "ravdess", ["neutral", "angry", "happy", "sad"] * 3, dataset="ravdess")


@pytest.mark.parametrize("script, builder, overrides", [
    ("training_SER.py", ser_config, {"label_view": "iemocap4"}),
    ("training_RHemo.py", rhemo_config, {}),  # RH-emo's default view, complete, is IEMOCAP's
])
def test_a_label_view_that_does_not_fit_the_corpus_is_one_line(tmp_path, capsys, script, builder, overrides):
    out = tmp_path / "run"
    assert run(script, builder(_ravdess_store(tmp_path), out, **overrides), tmp_path) == 2
    line = one_error_line(capsys)
    assert "label_view" in line and "'ravdess'" in line and "native" in line
    assert not (out / "checkpoint.pt").exists()


def _one_speaker_store(tmp_path):
    root = make_store(tmp_path / "one", FOUR * 3)
    rows = (root / "segments.csv").read_text().splitlines()
    header = rows[0].split(",")
    speaker, session = header.index("speaker"), header.index("session")
    fixed = [rows[0]]
    for row in rows[1:]:
        cells = row.split(",")
        cells[speaker], cells[session] = "actor1", ""
        fixed.append(",".join(cells))
    (root / "segments.csv").write_text("\n".join(fixed) + "\n")
    return root


@pytest.mark.parametrize("builder, folds, expected", [
    (_one_speaker_store, 2, "1 speakers"),
    (lambda tmp: make_store(tmp / "four", FOUR * 3), 3, "2 sessions"),  # leave-one-session-out: 2 sessions
])
def test_a_speaker_protocol_the_store_cannot_fill_is_one_line(tmp_path, capsys, builder, folds, expected):
    cfg = ser_config(builder(tmp_path), tmp_path / "run", protocol="speaker", num_folds=folds)
    assert run("training_SER.py", cfg, tmp_path) == 2
    line = one_error_line(capsys)
    assert "protocol 'speaker'" in line and f"num_folds {folds}" in line and expected in line


def _validation_pass(task, net, batch):
    return loop.run_pass(net, task, [batch], torch.device("cpu"), epoch=None)


def test_the_schema_monitors_are_metrics_the_engine_computes():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 512, 128)
    batch = {"x": x, "target": torch.tensor([0, 1]), "vad": torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]),
             "group": torch.tensor([0, 1])}
    rhemo = create_model("simple_autoencoder_2_vad", hidden_size=4).eval()
    ser_out = _validation_pass(loop.SERTask(3), nn.Flatten(), {**batch, "x": torch.rand(2, 3)})
    rhemo_out = _validation_pass(loop.RHemoTask(alpha=1.0, beta=0.1, beta_class=1.0, beta_vad=1.0), rhemo, batch)
    for script, out in (("ser", ser_out), ("rhemo", rhemo_out)):
        for name, (key, mode) in config.MONITORS[script].items():
            assert mode in ("min", "max"), (script, name)
            assert math.isfinite(out[key]), (script, name, key, sorted(out))
            task = loop.SERTask(3, name) if script == "ser" else loop.RHemoTask(
                alpha=1.0, beta=0.1, beta_class=1.0, beta_vad=1.0, monitor=name)
            assert (task.monitor_key, task.mode) == (key, mode)
