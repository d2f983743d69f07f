"""predict.py under hostile conditions (issue 11, items 6, 7, 11): special files, long files, read-only folders."""

from __future__ import annotations

import csv
import errno
import os
import sys
import tracemalloc
from pathlib import Path

import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # predict.py is a top-level script
    sys.path.insert(0, str(ROOT))

from models import create_model  # noqa: E402
from predict import main as predict_main  # noqa: E402
from rhemo import inference  # noqa: E402
from rhemo.train.checkpoint import save_checkpoint  # noqa: E402
from rhemo.inference import Predictor, load_predictor  # noqa: E402
from test_data_faults import no_hang  # noqa: E402
from test_predict import REAL_LABELS, SR, payload, speech_like  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    kwargs = {"quat": False, "num_classes": 3, "hidden_size": 8}
    net = create_model("AlexNet", **kwargs).eval()
    norm = {"kind": "max", "max": 0.37, "mean": 0.0, "std": 1.0}
    return save_checkpoint(tmp_path_factory.mktemp("model") / "checkpoint.pt",
                           payload("AlexNet", kwargs, net, REAL_LABELS, norm))


@pytest.fixture()
def folder(tmp_path) -> Path:
    """Two good files and, named like audio, a FIFO, a directory and a broken symlink."""
    sf.write(tmp_path / "a.wav", speech_like(2.0, SR, 1), SR)
    sf.write(tmp_path / "b.wav", speech_like(5.0, SR, 2), SR)
    os.mkfifo(tmp_path / "x.wav")
    (tmp_path / "d.wav").mkdir()
    os.symlink(tmp_path / "nowhere", tmp_path / "l.wav")
    return tmp_path


# --------------------------------------------------------------------------------------------- 6: FIFOs
def test_fifo_on_the_command_line_is_an_error_line_and_the_batch_goes_on(model, folder, capsys):
    with no_hang():
        code = predict_main([str(folder / "x.wav"), str(folder / "a.wav"), str(folder / "l.wav"),
                             "--model", str(model)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[0].startswith(f"{folder / 'x.wav'}  ERROR  not a regular file") and "FIFO" in lines[0]
    assert lines[1].startswith(f"{folder / 'a.wav'}  ") and "ERROR" not in lines[1]
    assert lines[2].startswith(f"{folder / 'l.wav'}  ERROR  broken symlink")


def test_directory_walk_reports_special_files_in_its_csv(model, folder, capsys):
    with no_hang():
        assert predict_main([str(folder), "--model", str(model)]) == 0
    with open(folder / "predictions.csv", newline="") as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    assert sorted(rows) == ["a.wav", "b.wav", "l.wav", "x.wav"]   # d.wav is a folder and is walked into
    assert rows["x.wav"]["status"] == "error" and rows["x.wav"]["reason"].startswith("not a regular file")
    assert rows["l.wav"]["reason"].startswith("broken symlink")
    assert rows["b.wav"]["status"] == "ok" and rows["b.wav"]["num_windows"] == "2"


# ------------------------------------------------------------------------------ 7: bounded memory
def test_windows_are_streamed_in_batches_with_the_same_result(model):
    """The summary of a 20-s file at a 0.5-s hop (33 windows) never featurises more than one batch at once,
    and equals the all-windows-at-once computation."""
    predictor = load_predictor(model, batch_size=4)
    signal = speech_like(20.0, SR, 3)
    bounds = predictor.windows(len(signal), 0.5)
    probs, _ = predictor.predict_segments(predictor.segments(signal, bounds))
    sizes = []
    real_segments = Predictor.segments

    def counting(self, sig, batch):
        out = real_segments(self, sig, batch)
        sizes.append(len(out))
        return out

    Predictor.segments = counting
    try:
        summary = predictor.predict_signal(signal, hop_seconds=0.5, per_window=False)
        timeline = predictor.predict_signal(signal, hop_seconds=0.5, per_window=True)
    finally:
        Predictor.segments = real_segments
    assert len(bounds) == 33 and max(sizes) == 4 and sum(sizes) == 2 * 33
    assert summary.num_windows == timeline.num_windows == 33 and summary.windows == []
    assert list(summary.probabilities.values()) == pytest.approx(probs.mean(axis=0), abs=1e-12)
    assert [w.probabilities["ang"] for w in timeline.windows] == pytest.approx(probs[:, 1], abs=1e-12)
    assert summary.probabilities == timeline.probabilities


def test_peak_memory_does_not_grow_with_the_file_length(model):
    """tracemalloc sees numpy's buffers: the peak beyond the signal stays near one batch of features
    (4 × 256 KiB) for a 10-s and a 40-s file, where holding every window would need 13 or 73 × 256 KiB."""
    predictor = load_predictor(model, batch_size=4)
    peaks = []
    for seconds in (10.0, 40.0):
        signal = speech_like(seconds, SR, 4)
        tracemalloc.start()
        result = predictor.predict_signal(signal, hop_seconds=0.5, per_window=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert result.ok and result.num_windows == int((seconds - 4) / 0.5) + 1
    assert max(peaks) < 3 * 2**20
    assert peaks[1] - peaks[0] < 2**20


# ------------------------------------------------------------------------------- 11: read-only folder
def test_read_only_folder_prints_every_result_then_one_line(model, folder, monkeypatch, capsys):
    # Tests run as root, which chmod cannot stop: the read-only filesystem is simulated where the CSV is
    # opened for writing (the rest of write_predictions_csv is the real code).
    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(inference, "open", read_only, raising=False)
    with no_hang():
        code = predict_main([str(folder), "--model", str(model)])
    captured = capsys.readouterr()
    assert code == 3
    assert len(captured.out.splitlines()) == 4 and sum("ERROR" in x for x in captured.out.splitlines()) == 2
    csv_lines = [x for x in captured.err.splitlines() if "CSV" in x]
    assert csv_lines == [f"predict.py: could not write the CSV {folder / 'predictions.csv'} (Read-only file "
                         f"system); every result is printed (pass --output to write the CSV elsewhere)"]
    assert not (folder / "predictions.csv").exists() and "Traceback" not in captured.err
