"""End-to-end tests of the training engine on tiny hand-written segment stores (built in engine_helpers)."""
from __future__ import annotations

import csv
import json
import math
import sys

import numpy as np
import pytest
import torch

from rhemo.data.store import SegmentStore
from rhemo.train import checkpoint as ckpt
from rhemo.train import loaders as data, runtime as device, loop

from engine_helpers import (FOUR, REPO, F, T, make_rhemo_weights, make_store, read_metrics, rhemo_config,
                            run_script, ser_config)
from rhemo.errors import DataError
from rhemo.data.normalisation import compute_normalisation
from rhemo.data.selection import select_rows


def test_normalisation_matches_numpy_on_the_training_rows(tmp_path):
    store = SegmentStore(make_store(tmp_path / "s", FOUR * 3))
    rows = np.array([0, 3, 4, 9])
    chosen = np.asarray(store.predictors[rows], dtype=np.float64)
    for kind in ("max", "zscore"):
        norm = compute_normalisation(store.predictors, rows, kind, chunk_rows=3)  # uneven chunks
        assert norm.max == pytest.approx(chosen.max(), rel=1e-12)
        assert norm.mean == pytest.approx(chosen.mean(), rel=1e-9)
        assert norm.std == pytest.approx(chosen.std(), rel=1e-9)
    norm = compute_normalisation(store.predictors, rows, "zscore")
    ds = data.SegmentDataset(store.predictors, rows, np.zeros(4, dtype=np.int64), normalisation=norm)
    expected = (np.asarray(store.predictors[rows[2]]) - chosen.mean()) / chosen.std()
    np.testing.assert_allclose(ds[2]["x"][0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_bad_normalisation_input_is_reported(tmp_path):
    with pytest.raises(DataError, match="empty"):
        compute_normalisation(np.zeros((2, 3, 3), np.float32), np.array([], dtype=np.int64), "max")
    with pytest.raises(DataError, match="maximum"):
        compute_normalisation(np.zeros((2, 3, 3), np.float32), np.array([0]), "max")
    with pytest.raises(DataError, match="std 0"):
        compute_normalisation(np.ones((2, 3, 3), np.float32), np.array([0, 1]), "zscore")


def test_selection_keeps_utterances_whole_and_uses_the_view(tmp_path):
    store = SegmentStore(make_store(tmp_path / "s", FOUR * 4 + ["fru", "exc"], segments_per_utterance=2))
    cfg = ser_config(tmp_path / "s", tmp_path / "o", split_fractions=[0.5, 0.25, 0.25], protocol="random",
                     fold=0, num_folds=1, train_fraction=1.0)
    selection = select_rows(store, cfg)
    assert selection.label_names == FOUR
    all_rows = np.concatenate([selection.rows[s] for s in ("train", "val", "test")])
    assert sorted(all_rows.tolist()) == list(range(32))  # the fru/exc utterances (rows 32-35) are left out
    utt = np.asarray(store.table.utterance_id)
    sets = [set(utt[selection.rows[s]]) for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    for s in ("train", "val", "test"):
        expected = [FOUR.index(lab) for lab in np.asarray(store.table.label)[selection.rows[s]]]
        assert selection.targets[s].tolist() == expected


def test_dataset_reads_rows_from_the_memmap_without_loading_it(tmp_path):
    store = SegmentStore(make_store(tmp_path / "s", FOUR))
    assert isinstance(store.predictors, np.memmap)
    ds = data.SegmentDataset(store.predictors, np.array([2, 0]), np.array([2, 0]), groups=np.array([7, 5]))
    assert isinstance(ds.array, np.memmap)  # no copy of the whole array was made
    item = ds[0]
    assert item["x"].shape == (1, T, F) and item["x"].dtype == torch.float32
    np.testing.assert_array_equal(item["x"][0].numpy(), store.predictors[2])
    assert int(item["target"]) == 2 and int(item["group"]) == 7 and torch.isnan(item["vad"]).all()
    # pickling (spawned DataLoader workers) ships the file coordinates, not the data
    import pickle
    blob = pickle.dumps(ds)
    assert len(blob) < 10_000
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone[1]["x"].numpy(), ds[1]["x"].numpy())


def test_train_loader_batches_partition_a_seeded_permutation(tmp_path):
    arr = np.arange(10, dtype=np.float32).reshape(10, 1, 1)
    ds = data.SegmentDataset(arr, np.arange(10), np.arange(10))
    runtime = device.Runtime(torch.device("cpu"))
    loader = data.make_train_loader(ds, 4, seed=5, runtime=runtime)
    orders = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        batches = [b["target"].tolist() for b in loader]
        assert [len(b) for b in batches] == [4, 4, 2]
        orders.append(sum(batches, []))
        assert sorted(orders[-1]) == list(range(10))
    assert orders[0] != orders[1]  # reshuffled each epoch
    loader.sampler.set_epoch(0)
    assert sum((b["target"].tolist() for b in loader), []) == orders[0]  # and reproducibly
    # two ranks with half the batch: their k-th batches together are the single process's k-th batch
    ranks = [data.make_train_loader(ds, 4, seed=5, runtime=device.Runtime(torch.device("cpu"), r, 2))
             for r in (0, 1)]
    for r in ranks:
        r.sampler.set_epoch(0)
    single = [b["target"].tolist() for b in loader]
    split = [[b["target"].tolist() for b in r] for r in ranks]
    for k, batch in enumerate(single):
        assert sorted(split[0][k] + split[1][k]) == sorted(batch)
    with pytest.raises(DataError, match="divisible"):
        data.make_train_loader(ds, 5, seed=5, runtime=device.Runtime(torch.device("cpu"), 0, 2))


def test_eval_loader_needs_a_row_per_process():
    ds = data.SegmentDataset(np.zeros((1, 2, 2), np.float32), np.array([0]), np.array([0]))
    with pytest.raises(DataError, match="fewer than the 2 processes"):
        data.make_eval_loader(ds, 4, device.Runtime(torch.device("cpu"), 0, 2))


def test_shard_sampler_covers_everything_once():
    for n in (0, 1, 7, 10):
        for world in (1, 2, 3):
            got = sum((list(data.ShardSampler(n, r, world)) for r in range(world)), [])
            assert got == list(range(n))


def test_device_falls_back_to_cpu_and_rejects_bad_ids(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.select_device(True, 0) == torch.device("cpu")
    assert capsys.readouterr().out.strip() == "CUDA not available: running on CPU"
    with pytest.raises(device.DeviceError, match="gpu_id"):
        device.select_device(True, -1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(device.DeviceError, match="gpu_id 3 does not exist"):
        device.select_device(True, 3)


# ------------------------------------------------------------------------------------------ RH-emo runs
def test_two_stage_rhemo_run_writes_the_contract_files(tmp_path):
    store = make_store(tmp_path / "store", (FOUR + ["fru"]) * 4)
    stage1 = tmp_path / "stage1"
    stage1.mkdir()
    (stage1 / "config.json").write_text(json.dumps({"script": "training_RHemo.py", "nproc": 1}))  # as the launcher
    assert run_script("training_RHemo.py", rhemo_config(store, stage1, label_view="complete", loss_beta=0.0),
                      tmp_path) == 0
    for name in ("config.json", "log.csv", "checkpoint.pt", "metrics.json", "curves.png"):
        assert (stage1 / name).is_file(), name
    assert not (stage1 / "last.pt").exists()
    m1 = read_metrics(stage1)
    assert m1["status"] == "done" and m1["script"] == "rhemo" and m1["epochs"] == 2
    assert m1["label_names"] == FOUR + ["other"]
    for split in ("train", "val", "test"):
        for key in ("total", "recon", "emo", "cls", "vad", "valence", "arousal", "dominance", "acc",
                    "acc_valence", "acc_arousal", "acc_dominance"):
            assert key in m1[split], (split, key)
        assert m1[split]["emo"] == 0.0 and math.isfinite(m1[split]["total"])
        assert m1[split]["total"] == pytest.approx(m1[split]["recon"])
    with open(stage1 / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and "val_total" in rows[0]
    payload = ckpt.load_checkpoint(stage1 / "checkpoint.pt")
    assert payload["format"] == ckpt.CHECKPOINT_FORMAT and payload["model_name"] == "simple_autoencoder_2_vad"
    assert payload["model_kwargs"]["num_classes"] == 5 and payload["rhemo"] is None
    assert payload["normalisation"]["kind"] == "max" and payload["normalisation"]["max"] > 1.0
    written = json.loads((stage1 / "config.json").read_text())
    assert written["script"] == "training_RHemo.py" and written["nproc"] == 1  # launcher keys kept
    assert written["loss_beta"] == 0.0 and written["batch_size"] == 4 and written["patience"] == 100  # resolved

    # stage 2: the 4-class view, emotion terms on, starting from stage 1 (strict load, 5 logits kept)
    stage2 = tmp_path / "stage2"
    cfg2 = rhemo_config(store, stage2, label_view="iemocap4", loss_beta=0.01, loss_beta_vad=100.0, num_epochs=1,
                        learning_rate=0.0, load_pretrained=str(stage1 / "checkpoint.pt"))
    assert run_script("training_RHemo.py", cfg2, tmp_path) == 0
    m2 = read_metrics(stage2)
    assert m2["label_names"] == FOUR
    # learning rate 0: stage 2's weights are stage 1's, so the reconstruction term is the same function
    state1 = payload["state_dict"]
    state2 = ckpt.load_checkpoint(stage2 / "checkpoint.pt")["state_dict"]
    statistics = ("num_batches", "running", "moving")  # BatchNorm buffers still move in train mode
    assert all(torch.equal(state1[k], state2[k]) for k in state1 if not any(s in k for s in statistics))
    for split in ("train", "val", "test"):
        assert m2[split]["emo"] > 0 and math.isfinite(m2[split]["total"])
        # the final figures use the training weights (beta 0.01, beta_vad 100), not the authors' beta = 1
        expected = m2[split]["recon"] + 0.01 * (m2[split]["cls"] + m2[split]["vad"])
        assert m2[split]["total"] == pytest.approx(expected, rel=1e-4)
        assert m2[split]["vad"] == pytest.approx(
            100 * (m2[split]["valence"] + m2[split]["arousal"] + m2[split]["dominance"]), rel=1e-4)


def test_rhemo_stage2_rejects_a_mismatching_stage1(tmp_path, capsys):
    store = make_store(tmp_path / "store", FOUR * 3)
    stage1 = tmp_path / "stage1"
    assert run_script("training_RHemo.py", rhemo_config(store, stage1, num_epochs=1, label_view="iemocap4"),
                      tmp_path) == 0
    cfg = rhemo_config(store, tmp_path / "bad", model_hidden_size=12, label_view="iemocap4",
                       load_pretrained=str(stage1 / "checkpoint.pt"))
    capsys.readouterr()
    assert run_script("training_RHemo.py", cfg, tmp_path) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "error: load_pretrained" in error and "hidden_size" in error


def test_missing_store_is_a_one_line_error(tmp_path, capsys):
    cfg = ser_config(tmp_path / "no_store", tmp_path / "run", use_r2he=False, model_quat=False)
    assert run_script("training_SER.py", cfg, tmp_path) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "segment store" in error and "preprocessing.py" in error


# --------------------------------------------------------------------------------------------- SER runs
@pytest.mark.parametrize("quat", [False, True], ids=["real", "quaternion"])
def test_ser_alexnet_overfits_a_handful_of_segments(tmp_path, quat):
    store = make_store(tmp_path / "store", ["neu", "ang"] * 8)  # 16 utterances → 8 train / 4 val / 4 test
    out = tmp_path / "run"
    weights = make_rhemo_weights(tmp_path / "rhemo.pt", store) if quat else None
    # full-batch Adam. The real net reads z-scored spectrograms (as the authors' real baselines did: with
    # max-normalised input it trains erratically); the quaternion net is cheap per step but needs more steps.
    cfg = ser_config(store, out, model_quat=quat, use_r2he=quat, r2he_model_path=str(weights) if quat else None,
                     split_fractions=[0.5, 0.25, 0.25], batch_size=8, model_hidden_size=64,
                     learning_rate=1e-3 if quat else 3e-4, num_epochs=30 if quat else 20,
                     normalisation="max" if quat else "zscore")
    assert run_script("training_SER.py", cfg, tmp_path) == 0
    metrics = read_metrics(out)
    assert metrics["quat"] is quat and metrics["model_name"] == "AlexNet"
    assert sum(map(sum, metrics["train"]["confusion"])) == 8
    assert metrics["train"]["wa"] == 1.0, metrics["train"]
    for key in ("loss", "wa", "ua", "f1", "confusion", "utt_wa", "utt_ua", "utt_f1", "utt_confusion"):
        assert key in metrics["test"], key
    for name in ("curves.png", "confusion.png", "confusion_utterance.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    payload = ckpt.load_checkpoint(out / "checkpoint.pt")
    assert payload["label_names"] == FOUR and payload["model_kwargs"]["quat"] is quat
    if quat:  # the checkpoint carries the encoder, so predict.py can run alone
        assert set(payload["rhemo"]["encoder_state_dict"]) >= {"conv1.weight", "conv2_bn.running_var"}
        assert payload["rhemo"]["source"] == str(weights) and len(payload["rhemo"]["sha256"]) == 64
    else:
        assert payload["rhemo"] is None


def test_same_seed_same_metrics_and_resume_after_interruption(tmp_path, monkeypatch, after_epoch):
    store = make_store(tmp_path / "store", FOUR * 3)
    base = dict(num_epochs=4, model_classifier_dropout=0.5, batch_size=2)  # dropout: exercises the RNG replay
    first, second = tmp_path / "a", tmp_path / "b"
    assert run_script("training_SER.py", ser_config(store, first, **base), tmp_path) == 0
    assert run_script("training_SER.py", ser_config(store, second, **base), tmp_path) == 0
    m_a, m_b = read_metrics(first), read_metrics(second)
    for split in ("train", "val", "test"):
        assert m_a[split] == m_b[split]

    # interrupted after epoch 2 (Ctrl-C), then re-run with the same command: continues from epoch 3
    resumed = tmp_path / "c"
    cfg = ser_config(store, resumed, **base)

    def interrupt(epoch: int) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    after_epoch[:] = [interrupt]
    assert run_script("training_SER.py", cfg, tmp_path) == 130
    assert (resumed / "last.pt").is_file() and not (resumed / "metrics.json").exists()
    saved = ckpt.load_checkpoint(resumed / "last.pt")
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    after_epoch[:] = []
    assert run_script("training_SER.py", cfg, tmp_path) == 0
    m_c = read_metrics(resumed)
    assert not (resumed / "last.pt").exists()
    assert m_c["epochs"] == 4
    for split in ("train", "val", "test"):
        assert m_c[split] == m_a[split]
    with open(resumed / "log.csv") as handle:
        log_c = list(csv.DictReader(handle))
    with open(first / "log.csv") as handle:
        log_a = list(csv.DictReader(handle))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(log_c) == drop(log_a)


@pytest.mark.parametrize("rule, epochs", [("patience", 3), ("authors", 4)])
def test_early_stopping_counts_strict_improvements(tmp_path, rule, epochs):
    store = make_store(tmp_path / "store", FOUR * 3)
    out = tmp_path / "run"
    # learning rate 0: the validation loss never strictly improves after epoch 1 → the patience rule stops after
    # 1 + patience epochs; the authors' rule with patience 2 always stops at 0-based epoch 3, i.e. after 4
    cfg = ser_config(store, out, num_epochs=10, learning_rate=0.0, early_stopping=True, patience=2,
                     early_stopping_rule=rule, num_workers=2)  # also runs DataLoader workers over the memmap
    assert run_script("training_SER.py", cfg, tmp_path) == 0
    metrics = read_metrics(out)
    assert metrics["epochs"] == epochs and metrics["best_epoch"] == 1


def test_monitor_must_suit_the_script():
    with pytest.raises(ValueError, match="not available"):
        loop.SERTask(4, "total_loss")
    with pytest.raises(ValueError, match="not available"):
        loop.RHemoTask(alpha=1, beta=0, beta_class=1, beta_vad=1, monitor="f1")


def test_ctrl_c_in_a_real_process_exits_cleanly_and_the_rerun_resumes(tmp_path):
    import os
    import signal
    import subprocess
    import time

    store = make_store(tmp_path / "store", FOUR * 3)
    weights = make_rhemo_weights(tmp_path / "rhemo.pt", store)
    out = tmp_path / "run"
    cfg = ser_config(store, out, model_quat=True, use_r2he=True, r2he_model_path=str(weights), num_epochs=10,
                     model_hidden_size=8)
    path = tmp_path / "ctrl_c.json"
    path.write_text(json.dumps(cfg))
    command = [sys.executable, str(REPO / "training_SER.py"), "--config", str(path)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert "run the same command again to resume" in stdout
    done = ckpt.load_checkpoint(out / "last.pt")["epoch"]
    assert 1 <= done < 10 and not (out / "metrics.json").exists()
    assert not list(out.glob("*.tmp"))
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {out / 'last.pt'}: {done} epoch(s) done" in resumed.stdout
    assert read_metrics(out)["epochs"] == 10
