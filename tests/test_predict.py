"""Tests of predict.py and rhemo.inference on audio files the models never saw.

Tiny checkpoints are built here following the checkpoint contract (a real AlexNet on spectrograms, a
quaternion AlexNet on RH-emo embeddings, an RH-emo model with V/A/D heads, a two-fold run folder). The truth
for the predictions is an independent manual computation: windows cut at hand-computed sample positions,
``audio_to_segments``, the stored normalisation written out, the networks called directly.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # predict.py is a top-level script
    sys.path.insert(0, str(ROOT))

import rhemo  # noqa: E402
from models import create_model  # noqa: E402
from predict import main as predict_main  # noqa: E402
from rhemo.data.features import FeatureSettings, audio_to_segments  # noqa: E402
from rhemo.train.checkpoint import CHECKPOINT_FORMAT, save_checkpoint  # noqa: E402
from rhemo.inference import (FilePrediction, PredictorError, find_audio_files, load_predictor,  # noqa: E402
                                    resolve_checkpoints, window_starts)

SR = 16000
REAL_LABELS = ["neu", "ang", "sad"]
QUAT_LABELS = ["neu", "ang", "hap", "sad"]
RHEMO_LABELS = ["neu", "ang", "hap", "sad", "other"]


# ------------------------------------------------------------------------------------------------ helpers
def speech_like(seconds: float, rate: int, seed: int, channels: int = 1) -> np.ndarray:
    """Deterministic voiced-speech-like signal whose pitch, brightness and loudness drift over time."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    f0 = 110 + 25 * t + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) * np.exp(-k * (0.2 + 0.05 * t)) for k in range(1, 8))
    ramp = t / max(seconds, 1e-9)
    envelope = (0.3 + 0.7 * ramp) * (0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2)
    x = (0.3 * envelope * voiced + 0.02 * (1 - ramp) * rng.standard_normal(t.size)).astype(np.float32)
    if channels > 1:
        x = np.stack([x * (1.0 - 0.3 * c) for c in range(channels)], axis=1)
    return x


def payload(name: str, kwargs: dict, net: torch.nn.Module, labels: list[str], norm: dict,
            rhemo_info: dict | None = None) -> dict:
    return {"format": CHECKPOINT_FORMAT, "code_version": rhemo.__version__, "model_name": name,
            "model_kwargs": kwargs, "state_dict": net.state_dict(), "label_names": labels,
            "label_view": "test", "dataset": "synthetic", "normalisation": norm,
            "feature_settings": FeatureSettings().to_dict(), "rhemo": rhemo_info, "epoch": 3,
            "best_metric": 0.5, "config": {"model_name": name}}


def calibrate_(net: torch.nn.Module, x: torch.Tensor, seed: int, forward=None) -> None:
    """Make an untrained net react to its input: in one forward pass on ``x``, rescale each weighted layer
    so that its output has unit std (biases zeroed meanwhile), then spread the biases and BN running
    statistics (so that eval vs train mode matters). Fresh nets otherwise give nearly constant outputs."""
    forward = forward or net
    gen = torch.Generator().manual_seed(seed)

    def rescale(layer, inputs, output):
        std = float(output.std())
        for name, param in layer.named_parameters(recurse=False):
            if name.endswith("weight"):
                param.div_(std)
        return output / std

    with torch.no_grad():
        hooks = []
        for layer in net.modules():
            own = dict(layer.named_parameters(recurse=False))
            if any(n.endswith("weight") for n in own) and "BatchNorm" not in type(layer).__name__:
                if "bias" in own:
                    own["bias"].zero_()
                hooks.append(layer.register_forward_hook(rescale))
        forward(x)
        for hook in hooks:
            hook.remove()
        for name, tensor in net.state_dict().items():
            if name.endswith("running_mean"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=gen))
            elif name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith("bias"):
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=gen))


def manual_windows(signal: np.ndarray, bounds: list[tuple[int, int]]) -> torch.Tensor:
    """(W, 1, 512, 128) un-normalised features of hand-specified windows."""
    segs = [audio_to_segments(signal[a:b], FeatureSettings()) for a, b in bounds]
    assert all(s.shape == (1, 512, 128) for s in segs)
    return torch.from_numpy(np.concatenate(segs)).unsqueeze(1)


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("models")
    out: dict = {"base": base}
    # calibration windows (other signals than the test files)
    segs = torch.from_numpy(np.concatenate([audio_to_segments(speech_like(4.0, SR, 100 + s), FeatureSettings())
                                            for s in range(4)])).unsqueeze(1)

    torch.manual_seed(0)
    real_kwargs = {"quat": False, "num_classes": 3, "hidden_size": 16}
    real_norm = {"kind": "max", "max": 0.37, "mean": 0.0, "std": 1.0}
    real = create_model("AlexNet", **real_kwargs).eval()
    calibrate_(real, segs / real_norm["max"], 1)
    out["real"] = save_checkpoint(base / "real" / "1" / "fold0" / "checkpoint.pt",
                                  payload("AlexNet", real_kwargs, real, REAL_LABELS, real_norm))
    out["real_net"], out["real_norm"] = real, real_norm

    # second fold of an ensemble: other weights, other normalisation
    real2_norm = {"kind": "max", "max": 0.21, "mean": 0.0, "std": 1.0}
    real2 = create_model("AlexNet", **real_kwargs).eval()
    calibrate_(real2, segs / real2_norm["max"], 2)
    save_checkpoint(base / "ensemble" / "1" / "fold0" / "checkpoint.pt",
                    payload("AlexNet", real_kwargs, real, REAL_LABELS, real_norm))
    save_checkpoint(base / "ensemble" / "1" / "fold1" / "checkpoint.pt",
                    payload("AlexNet", real_kwargs, real2, REAL_LABELS, real2_norm))
    out["ensemble"] = base / "ensemble" / "1"

    rh_kwargs = {"quat": True, "hidden_size": 8, "num_classes": 5}
    encoder = create_model("simple_autoencoder_2_vad", **rh_kwargs).eval()
    calibrate_(encoder, segs, 3, encoder.encode)
    quat_kwargs = {"quat": True, "num_classes": 4, "hidden_size": 16}
    quat_norm = {"kind": "zscore", "max": 1.0, "mean": float(segs.mean()), "std": float(segs.std())}
    quat = create_model("AlexNet", **quat_kwargs).eval()
    with torch.no_grad():
        calibrate_(quat, encoder.encode((segs - quat_norm["mean"]) / quat_norm["std"]), 4)
    info = {"model_kwargs": rh_kwargs, "encoder_state_dict": encoder.encoder_state_dict(),
            "source": "test", "sha256": "0" * 64}
    out["quat"] = save_checkpoint(base / "quat" / "1" / "fold0" / "checkpoint.pt",
                                  payload("AlexNet", quat_kwargs, quat, QUAT_LABELS, quat_norm, info))
    out["quat_net"], out["quat_encoder"], out["quat_norm"] = quat, encoder, quat_norm

    rh_norm = {"kind": "max", "max": 0.5, "mean": 0.0, "std": 1.0}
    rh = create_model("simple_autoencoder_2_vad", **rh_kwargs).eval()
    calibrate_(rh, segs / rh_norm["max"], 5, lambda x: rh.classify(rh.encode(x)))
    out["rhemo"] = save_checkpoint(base / "rhemo" / "2" / "fold0" / "checkpoint.pt",
                                   payload("simple_autoencoder_2_vad", rh_kwargs, rh, RHEMO_LABELS, rh_norm))
    out["rhemo_net"], out["rhemo_norm"] = rh, rh_norm
    return out


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """Files of every kind the predictor must survive, in nested folders."""
    base = tmp_path_factory.mktemp("audio")
    (base / "sub" / "deeper").mkdir(parents=True)
    sf.write(base / "rate8k_float.wav", speech_like(3.0, 8000, 1), 8000, subtype="FLOAT")
    sf.write(base / "sub" / "stereo44k_int16.wav", speech_like(5.0, 44100, 2, channels=2), 44100,
             subtype="PCM_16")
    sf.write(base / "long11.wav", speech_like(11.0, SR, 3), SR, subtype="FLOAT")
    sf.write(base / "sub" / "deeper" / "clip.flac", speech_like(2.5, 22050, 4), 22050, subtype="PCM_24")
    sf.write(base / "sub" / "clip.ogg", speech_like(4.5, 48000, 5), 48000, format="OGG", subtype="VORBIS")
    sf.write(base / "short.wav", speech_like(0.05, SR, 6), SR)
    sf.write(base / "silent.wav", np.zeros(2 * SR, np.float32), SR)
    nan_signal = speech_like(2.0, SR, 7)
    nan_signal[1000:1010] = np.nan
    sf.write(base / "with_nan.wav", nan_signal, SR, subtype="FLOAT")
    (base / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" + bytes(range(256)) * 4)
    (base / "notes.txt").write_text("not audio, must be ignored by the directory walk")
    (base / "._long11.wav").write_bytes(b"\x00\x05\x16\x07 macOS resource fork, skipped as hidden")
    return base


GOOD = ["rate8k_float.wav", "sub/stereo44k_int16.wav", "long11.wav", "sub/deeper/clip.flac", "sub/clip.ogg"]
BAD = {"short.wav": "too short", "silent.wav": "silent", "with_nan.wav": "non-finite",
       "corrupt.wav": "unreadable"}
DURATIONS = {"rate8k_float.wav": 3.0, "sub/stereo44k_int16.wav": 5.0, "long11.wav": 11.0,
             "sub/deeper/clip.flac": 2.5, "sub/clip.ogg": 4.5}


@pytest.fixture(scope="module")
def real_predictor(models_dir):
    return load_predictor(models_dir["real"].parent.parent)


# -------------------------------------------------------------------------------------------------- units
def test_window_starts_hand_values():
    assert window_starts(176000, 64000, 64000) == [0, 64000, 112000]
    assert window_starts(176000, 64000, 32000) == [0, 32000, 64000, 96000, 112000]
    assert window_starts(176000, 64000, 56000) == [0, 56000, 112000]   # lands exactly on the end
    assert window_starts(64000, 64000, 64000) == [0]
    assert window_starts(100, 64000, 64000) == [0]
    with pytest.raises(ValueError):
        window_starts(10, 4, 0)


def test_find_audio_files_walks_recursively(audio_dir):
    found = [p.relative_to(audio_dir).as_posix() for p in find_audio_files(audio_dir)]
    assert found == sorted(GOOD + list(BAD))


# -------------------------------------------------------------------------------------------- file kinds
@pytest.mark.parametrize("name", GOOD)
def test_good_files_predict(real_predictor, audio_dir, name):
    result = real_predictor.predict_file(audio_dir / name)
    assert result.ok, result.reason
    assert list(result.probabilities) == REAL_LABELS
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert result.label == max(result.probabilities, key=result.probabilities.get)
    assert result.duration == pytest.approx(DURATIONS[name], abs=1e-3)
    assert result.vad is None
    for window in result.windows:
        assert sum(window.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert 0.0 <= window.start < window.end <= result.duration + 1e-9


@pytest.mark.parametrize("name,reason", sorted(BAD.items()))
def test_bad_files_give_error_results(real_predictor, audio_dir, name, reason):
    result = real_predictor.predict_file(audio_dir / name)
    assert isinstance(result, FilePrediction)
    assert result.status == "error" and reason in result.reason
    assert result.label is None and result.probabilities == {}


def test_missing_file_is_an_error_result(real_predictor, tmp_path):
    result = real_predictor.predict_file(tmp_path / "nope.wav")
    assert result.status == "error" and "does not exist" in result.reason


def test_mp3_if_writable(real_predictor, tmp_path):
    path = tmp_path / "clip.mp3"
    try:
        sf.write(path, speech_like(3.0, 22050, 8), 22050, format="MP3", subtype="MPEG_LAYER_III")
    except Exception as exc:  # libsndfile built without an MP3 encoder
        pytest.skip(f"cannot write mp3 here: {exc}")
    result = real_predictor.predict_file(path)
    assert result.ok, result.reason
    assert result.duration == pytest.approx(3.0, abs=0.1)  # mp3 frames pad a little


# ------------------------------------------------------------------------------------- windows and truth
@pytest.mark.parametrize("hop,expected", [
    (None, [(0, 4), (4, 8), (7, 11)]),
    (2.0, [(0, 4), (2, 6), (4, 8), (6, 10), (7, 11)]),
    (3.5, [(0, 4), (3.5, 7.5), (7, 11)]),
])
def test_long_file_windows_and_manual_truth(real_predictor, models_dir, audio_dir, hop, expected):
    result = real_predictor.predict_file(audio_dir / "long11.wav", hop_seconds=hop)
    assert [(w.start, w.end) for w in result.windows] == expected   # sample/rate: exact here

    signal, rate = sf.read(audio_dir / "long11.wav", dtype="float32")
    assert rate == SR
    x = manual_windows(signal, [(int(a * SR), int(b * SR)) for a, b in expected])
    with torch.no_grad():
        probs = torch.softmax(models_dir["real_net"](x / models_dir["real_norm"]["max"]).double(), 1).numpy()
    assert np.ptp(probs, axis=0).max() > 0.02   # windows really differ, so a mix-up would show
    for window, p in zip(result.windows, probs):
        assert list(window.probabilities.values()) == pytest.approx(p, abs=1e-5)
        assert window.label == REAL_LABELS[int(np.argmax(p))]
    mean = probs.mean(0)
    assert list(result.probabilities.values()) == pytest.approx(mean, abs=1e-5)
    assert result.label == REAL_LABELS[int(np.argmax(mean))]


def test_short_file_equals_whole_file_audio_to_segments(models_dir, audio_dir, tmp_path):
    """A file shorter than a window is exactly the training pipeline on the whole file (zero-padded)."""
    path = tmp_path / "three_seconds.wav"
    sf.write(path, speech_like(3.0, SR, 9), SR, subtype="FLOAT")
    signal, _ = sf.read(path, dtype="float32")
    x = torch.from_numpy(audio_to_segments(signal, FeatureSettings())).unsqueeze(1)
    assert x.shape == (1, 1, 512, 128)
    result = load_predictor(models_dir["real"]).predict_file(path)
    with torch.no_grad():
        p = torch.softmax(models_dir["real_net"](x / 0.37).double(), 1).numpy()[0]
    assert [(w.start, w.end) for w in result.windows] == [(0.0, 3.0)]
    assert list(result.probabilities.values()) == pytest.approx(p, abs=1e-5)


def test_quaternion_model_runs_rhemo_encoder_in_eval_mode(models_dir, audio_dir):
    predictor = load_predictor(models_dir["quat"].parent)        # a fold folder
    result = predictor.predict_file(audio_dir / "long11.wav", hop_seconds=2.0)
    signal, _ = sf.read(audio_dir / "long11.wav", dtype="float32")
    starts = [0, 32000, 64000, 96000, 112000]
    x = manual_windows(signal, [(s, s + 64000) for s in starts])
    norm = models_dir["quat_norm"]
    with torch.no_grad():
        emb = models_dir["quat_encoder"].encode((x - norm["mean"]) / norm["std"])
        probs = torch.softmax(models_dir["quat_net"](emb).double(), 1).numpy()
    assert list(result.probabilities) == QUAT_LABELS
    assert list(result.probabilities.values()) == pytest.approx(probs.mean(0), abs=1e-5)
    assert result.label == QUAT_LABELS[int(np.argmax(probs.mean(0)))]
    assert result.vad is None


def test_rhemo_checkpoint_reports_vad(models_dir, audio_dir):
    predictor = load_predictor(models_dir["rhemo"])              # a checkpoint file
    assert predictor.has_vad and predictor.label_names == RHEMO_LABELS
    result = predictor.predict_file(audio_dir / "long11.wav")
    signal, _ = sf.read(audio_dir / "long11.wav", dtype="float32")
    x = manual_windows(signal, [(0, 64000), (64000, 128000), (112000, 176000)])
    with torch.no_grad():
        _, logits, v, a, d = models_dir["rhemo_net"](x / models_dir["rhemo_norm"]["max"])
    probs = torch.softmax(logits.double(), 1).numpy()
    vad = torch.cat([v, a, d], 1).double().numpy()
    assert list(result.probabilities.values()) == pytest.approx(probs.mean(0), abs=1e-5)
    assert [result.vad[k] for k in ("valence", "arousal", "dominance")] == pytest.approx(vad.mean(0), abs=1e-5)
    assert [w.vad["arousal"] for w in result.windows] == pytest.approx(vad[:, 1], abs=1e-5)
    assert "P(high)" in result.summary_line()


# ---------------------------------------------------------------------------------- model paths, folds
def test_run_fold_and_file_paths_agree(models_dir, audio_dir):
    ckpt = models_dir["real"]
    results = [load_predictor(p).predict_file(audio_dir / "rate8k_float.wav").probabilities
               for p in (ckpt, ckpt.parent, ckpt.parent.parent)]
    assert results[0] == results[1] == results[2]


def test_ensemble_averages_fold_window_probabilities(models_dir, audio_dir):
    run = models_dir["ensemble"]
    assert [p.parent.name for p in resolve_checkpoints(run)] == ["fold0", "fold1"]
    ensemble = load_predictor(run).predict_file(audio_dir / "long11.wav")
    folds = [load_predictor(run, fold=k).predict_file(audio_dir / "long11.wav") for k in (0, 1)]
    assert folds[0].probabilities != folds[1].probabilities
    for i, window in enumerate(ensemble.windows):
        expected = [(folds[0].windows[i].probabilities[n] + folds[1].windows[i].probabilities[n]) / 2
                    for n in REAL_LABELS]
        assert list(window.probabilities.values()) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(PredictorError, match="no fold7"):
        load_predictor(run, fold=7)


def test_bad_model_paths_are_named(models_dir, tmp_path):
    with pytest.raises(PredictorError, match="does not exist.*expected"):
        load_predictor(tmp_path / "missing_run")
    with pytest.raises(PredictorError, match="choose one of its runs"):
        load_predictor(models_dir["base"] / "ensemble")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictorError, match="no checkpoint found"):
        load_predictor(tmp_path / "empty")
    unfinished = tmp_path / "run" / "fold0"
    unfinished.mkdir(parents=True)
    (unfinished / "last.pt").write_bytes(b"x")
    with pytest.raises(PredictorError, match="fold0 has no checkpoint.pt"):
        load_predictor(tmp_path / "run")
    text = tmp_path / "model.pt"
    text.write_text("hello")
    with pytest.raises(PredictorError, match="model.pt"):
        load_predictor(text)
    bare = tmp_path / "pretrained_RHemo"
    torch.save(models_dir["rhemo_net"].state_dict(), bare)
    with pytest.raises(PredictorError, match="bare state_dict"):
        load_predictor(bare)


def test_bad_checkpoint_contents(models_dir, tmp_path):
    good = torch.load(models_dir["quat"], weights_only=True)
    cases = {
        "no_labels": ({k: v for k, v in good.items() if k != "label_names"}, "missing key.*label_names"),
        "no_rhemo": ({**good, "rhemo": None}, "needs RH-emo embeddings"),
        "bad_norm": ({**good, "normalisation": {"kind": "zscore", "mean": 0.0, "std": 0.0}}, "'std' must be > 0"),
        "bad_shape": ({**good, "model_kwargs": {**good["model_kwargs"], "hidden_size": 32}}, "does not fit"),
        "old_format": ({**good, "format": "other/0"}, "expected 'rhemo-ckpt/1'"),
    }
    for name, (content, message) in cases.items():
        path = save_checkpoint(tmp_path / name / "checkpoint.pt", content)
        with pytest.raises(PredictorError, match=message) as info:
            load_predictor(path.parent)
        assert str(path) in str(info.value)


def test_bad_hop_is_a_caller_error(real_predictor, audio_dir):
    for hop in (0.0, -1.0, 5.0, float("nan")):
        with pytest.raises(ValueError, match="hop"):
            real_predictor.predict_file(audio_dir / "long11.wav", hop_seconds=hop)


# ------------------------------------------------------------------------------------------------------ CLI
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "predict.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_directory_writes_csv_and_prints_lines(models_dir, audio_dir):
    done = run_cli(str(audio_dir), "--model", str(models_dir["rhemo"].parent.parent))
    assert done.returncode == 0, done.stderr
    with open(audio_dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_path = {Path(r["path"]).relative_to(audio_dir).as_posix(): r for r in rows}
    assert sorted(by_path) == sorted(GOOD + list(BAD))
    for name in GOOD:
        row = by_path[name]
        assert row["status"] == "ok"
        probs = [float(row[f"p_{n}"]) for n in RHEMO_LABELS]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == RHEMO_LABELS[int(np.argmax(probs))]
        assert 0.0 <= float(row["p_high_valence"]) <= 1.0
    for name, reason in BAD.items():
        assert by_path[name]["status"] == "error" and reason in by_path[name]["reason"]
    assert by_path["long11.wav"]["num_windows"] == "3"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == len(rows)
    assert any("long11.wav" in line and "P(high)" in line for line in lines)


def test_cli_unknown_model_is_one_line_error(audio_dir, tmp_path):
    done = run_cli(str(audio_dir / "long11.wav"), "--model", str(tmp_path / "results" / "nope" / "1"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "nope" in done.stderr and "does not exist" in done.stderr


def test_cli_json_per_window_in_process(models_dir, audio_dir, capsys, tmp_path):
    out_csv = tmp_path / "all.csv"
    code = predict_main([str(audio_dir / "long11.wav"), str(audio_dir / "corrupt.wav"), "--model",
                         str(models_dir["quat"]), "--json", "--per-window", "--hop", "2", "--output",
                         str(out_csv)])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["status"] for d in data] == ["ok", "error"]
    assert [(w["start"], w["end"]) for w in data[0]["windows"]] == [(0, 4), (2, 6), (4, 8), (6, 10), (7, 11)]
    assert sum(data[0]["probabilities"].values()) == pytest.approx(1.0)
    with open(out_csv, newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2


def test_cli_exit_codes_in_process(models_dir, audio_dir, capsys):
    model = str(models_dir["real"])
    assert predict_main([str(audio_dir / "silent.wav"), str(audio_dir / "short.wav"), "--model", model]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and "silent" in out
    assert predict_main([str(audio_dir / "long11.wav"), "--model", model, "--hop", "9"]) == 2
    err = capsys.readouterr().err
    assert "hop" in err and len(err.strip().splitlines()) == 1
    assert predict_main([str(audio_dir / "long11.wav"), "--model", model, "--per-window"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(str(audio_dir / "long11.wav")) and len(out) == 1 + 3
    assert "   7.00 -   11.00 s" in out[3]
