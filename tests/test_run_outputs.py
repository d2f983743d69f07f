"""The research outputs of a training run: predictions CSVs, per-class reports, environment.json, log.csv
columns and the figures (one tiny SER run and one tiny RH-emo run, shared by the tests of this module)."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from rhemo.train import diagnostics, environment, plots, predictions

from engine_helpers import FOUR, REPO, make_rhemo_weights, make_store, read_metrics, rhemo_config, run_script, ser_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    store = make_store(tmp / "store", FOUR * 4, segments_per_utterance=3)
    weights = make_rhemo_weights(tmp / "rhemo.pt", store)
    ser = tmp / "ser"
    assert run_script("training_SER.py", ser_config(store, ser, model_quat=True, use_r2he=True,
                                                    r2he_model_path=str(weights), num_epochs=2), tmp) == 0
    rhemo = tmp / "rhemo"
    assert run_script("training_RHemo.py", rhemo_config(store, rhemo, label_view="iemocap4", loss_beta=0.01), tmp) == 0
    return {"store": store, "ser": ser, "rhemo": rhemo}


def test_predictions_csv_reproduces_the_utterance_level_metrics(runs):
    metrics = read_metrics(runs["ser"])
    for split in ("val", "test"):
        table = pd.read_csv(runs["ser"] / f"predictions_{split}.csv")
        assert list(table.columns) == ["utterance_id", "speaker", "true_label", "predicted_label",
                                       *[f"prob_{c}" for c in FOUR], "n_segments"]
        assert table["utterance_id"].is_unique and (table["n_segments"] == 3).all()
        assert len(table) == sum(row["support"] for row in metrics[split]["utt_per_class"].values())
        assert (table["predicted_label"] == table["true_label"]).mean() == pytest.approx(metrics[split]["utt_wa"])
        probs = table[[f"prob_{c}" for c in FOUR]].to_numpy()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9)
        assert (np.asarray(FOUR)[probs.argmax(axis=1)] == table["predicted_label"]).all()
        assert set(table["speaker"]) <= {"spk10", "spk11", "spk20", "spk21"}
        recall = table.groupby("true_label").apply(lambda g: (g["predicted_label"] == g.name).mean(),
                                                   include_groups=False)
        assert recall.mean() == pytest.approx(metrics[split]["utt_ua"])


def test_metrics_json_has_per_class_reports_at_both_levels(runs):
    metrics = read_metrics(runs["ser"])
    for split in ("train", "val", "test"):
        for key in ("per_class", "utt_per_class"):
            report = metrics[split][key]
            assert list(report) == FOUR
            assert set(report["neu"]) == {"precision", "recall", "f1", "support"}
        segments = sum(c["support"] for c in metrics[split]["per_class"].values())
        assert segments == 3 * sum(c["support"] for c in metrics[split]["utt_per_class"].values())
        recalls = [c["recall"] for c in metrics[split]["per_class"].values() if c["support"]]
        assert np.mean(recalls) == pytest.approx(metrics[split]["ua"])


def test_environment_json_fields(runs):
    env = json.loads((runs["ser"] / "environment.json").read_text())
    assert env["python"].count(".") == 2 and env["versions"]["torch"] == torch.__version__
    assert env["versions"]["numpy"] == np.__version__
    assert all(env["versions"][name] for name in ("scipy", "librosa", "scikit-learn", "pandas"))
    assert env["device"] == "cpu" and env["device_name"] and env["world_size"] == 1
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert env["git"]["commit"] == head.strip() and isinstance(env["git"]["dirty"], bool)
    assert env["host"] and env["start_time"].endswith("+00:00") and isinstance(env["command"], list)


def test_environment_json_keeps_earlier_starts(tmp_path):
    environment.write_environment(tmp_path, torch.device("cpu"), argv=["first"])
    environment.write_environment(tmp_path, torch.device("cpu"), argv=["second"])
    path = environment.write_environment(tmp_path, torch.device("cpu"), argv=["third"])
    env = json.loads(path.read_text())
    assert env["command"][1:] == ["third"]
    assert [e["command"][1:] for e in env["earlier_starts"]] == [["first"], ["second"]]


def test_git_state_outside_a_repository(tmp_path):
    assert environment.git_state(tmp_path) == {"commit": None, "dirty": None}


def test_log_csv_has_learning_rate_and_epoch_time(runs):
    for run, lr in ((runs["ser"], 1e-4), (runs["rhemo"], 1e-3)):
        log = pd.read_csv(run / "log.csv")
        assert log["epoch"].tolist() == [1, 2]
        assert (log["lr"] == lr).all() and (log["seconds"] > 0).all()


def test_run_figures_are_written(runs):
    for name in ("curves.png", "confusion.png", "confusion_utterance.png"):
        assert (runs["ser"] / name).read_bytes()[:8] == PNG_MAGIC
    for name in ("curves.png", "diagnostics.png", "environment.json"):
        assert (runs["rhemo"] / name).exists()


def test_predictions_frame_by_hand():
    logits = np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
    table = predictions.predictions_frame(logits, np.array([0, 0, 1]), ["a", "a", "b"], ["s1", "s1", "s2"],
                                          ["neu", "ang"])
    assert table["utterance_id"].tolist() == ["a", "b"] and table["n_segments"].tolist() == [2, 1]
    # utterance a: mean logits [1, 0] → softmax [e/(e+1), 1/(e+1)]
    assert table.loc[0, "prob_neu"] == pytest.approx(np.e / (np.e + 1))
    assert table["predicted_label"].tolist() == ["neu", "ang"] and table["true_label"].tolist() == ["neu", "ang"]
    with pytest.raises(ValueError, match="same segments"):
        predictions.predictions_frame(logits, np.array([0, 0, 1]), ["a", "a"], ["s1", "s1"], ["neu", "ang"])


def test_pca_2d_recovers_the_dominant_directions():
    rng = np.random.default_rng(0)
    directions, _ = np.linalg.qr(rng.normal(size=(50, 2)) - rng.normal(size=(50, 2)).mean(axis=0))
    directions -= directions.mean(axis=0)
    directions, _ = np.linalg.qr(directions)       # orthonormal, zero-mean columns
    signal = directions * [10.0, 3.0]
    features = np.concatenate([signal, rng.normal(size=(50, 6)) * 0.001], axis=1)
    points, explained = diagnostics.pca_2d(features)
    assert explained > 0.99
    # the projection is the signal up to sign (and centring)
    for k in range(2):
        centred = signal[:, k] - signal[:, k].mean()
        assert abs(np.corrcoef(points[:, k], centred)[0, 1]) > 0.999
    assert diagnostics.pca_2d(np.ones((1, 4))) == (pytest.approx(np.zeros((1, 2))), 0.0)


def test_curves_cope_with_missing_keys_and_stage1(tmp_path):
    history = [{"epoch": e, "train_recon": 1.0 / e, "val_recon": 1.1 / e, "train_total": 1.0 / e, "lr": 1e-3}
               for e in (1, 2)]
    plots.plot_rhemo_curves(history, tmp_path / "stage1.png", "stage 1", alpha=1.0, beta=0.0, beta_class=1.0,
                            beta_vad=1.0, best_epoch=2)
    ser = [{"epoch": e, "train_loss": 1.0, "val_loss": 1.0, "val_wa": 0.5, "lr": 10.0 ** -e} for e in (1, 2, 3)]
    plots.plot_ser_curves(ser, tmp_path / "ser.png", "ser")      # lr changes: a third panel
    for name in ("stage1.png", "ser.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="empty history"):
        plots.plot_ser_curves([], tmp_path / "x.png", "x")


def test_tensorboard_log_holds_the_scalars_and_figures(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = make_store(tmp_path / "store", FOUR * 2)
    out = tmp_path / "run"
    assert run_script("training_RHemo.py", rhemo_config(store, out, tensorboard=True), tmp_path) == 0
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    log = pd.read_csv(out / "log.csv")
    assert {"train/total", "val/recon", "lr", "seconds"} <= set(tags["scalars"])
    assert [e.value for e in events.Scalars("val/recon")] == pytest.approx(log["val_recon"].tolist())
    assert [e.step for e in events.Scalars("lr")] == [1, 2]
    assert {"curves", "diagnostics"} <= set(tags["images"])


def test_tensorboard_without_the_package_is_one_input_error(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)       # import fails
    store = make_store(tmp_path / "store", FOUR * 2)
    assert run_script("training_RHemo.py", rhemo_config(store, tmp_path / "run", tensorboard=True), tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensorboard package is not installed" in err[0]


def test_output_to_a_file_has_no_progress_bar_frames(tmp_path):
    import sys

    store = make_store(tmp_path / "store", FOUR * 2)
    weights = make_rhemo_weights(tmp_path / "rhemo.pt", store)
    cfg = ser_config(store, tmp_path / "run", model_quat=True, use_r2he=True, r2he_model_path=str(weights),
                     num_epochs=1)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    done = subprocess.run([sys.executable, str(REPO / "training_SER.py"), "--config", str(path)], cwd=REPO,
                          capture_output=True, timeout=300)                # bytes: text mode would turn \r into \n
    assert done.returncode == 0, done.stderr.decode()
    assert b"\r" not in done.stdout + done.stderr                    # the embedding cache ran, without tqdm
    assert (store / "embeddings").is_dir() and b"epoch 1/1" in done.stdout
