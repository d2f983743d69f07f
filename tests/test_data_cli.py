"""preprocessing.py: config defaults, flag overrides, summary, and one-line errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

import preprocessing
from rhemo.data.store import SegmentStore

REPO = Path(preprocessing.__file__).resolve().parent


def emodb(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, seconds in [("03a01Fa", 1.0), ("08a02Wb", 5.0), ("09b03Nc", 0.5)]:
        path = root / "wav" / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    sf.write(root / "wav" / "10a01Ta.wav", np.zeros(8000, np.float32), 16000)   # silent
    return root


def test_cli_writes_store_and_summary(tmp_path, capsys):
    root = emodb(tmp_path / "emodb")
    code = preprocessing.main(["--dataset", "emodb", "--input", str(root), "--output", str(tmp_path / "out"),
                               "--workers", "1", "--no-progress", "--segment_seconds", "2.0",
                               "--segment_hop_seconds", "2.0", "--time_frames", "256"])
    out = capsys.readouterr().out
    assert code == 0
    store = SegmentStore(tmp_path / "out" / "emodb")
    # 2 s segments: 1 s → 1, 5 s → 2 full + tail = 3, 0.5 s → 1; the silent file is skipped
    assert store.predictors.shape == (5, 256, 128)
    assert store.feature_settings.segment_seconds == 2.0 and store.feature_settings.n_fft == 256
    assert "utterances: 3" in out and "segments:   5" in out and "silent" in out
    assert f"store: {tmp_path / 'out' / 'emodb'}" in out


def test_cli_wrong_root_is_one_line_error(tmp_path, capsys):
    code = preprocessing.main(["--dataset", "ravdess", "--input", str(tmp_path), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Actor_NN" in err and "Traceback" not in err


def test_cli_bad_values(tmp_path, capsys):
    root = emodb(tmp_path / "emodb")
    code = preprocessing.main(["--dataset", "emodb", "--input", str(root), "--output", str(tmp_path / "o"),
                               "--n_fft", "abc"])
    assert code == 2 and "n_fft" in capsys.readouterr().err
    code = preprocessing.main(["--dataset", "emodb", "--input", str(root), "--output", str(tmp_path / "o"),
                               "--stft_overlap", "300"])
    assert code == 2 and "stft_overlap" in capsys.readouterr().err
    bad_ini = tmp_path / "bad.ini"
    bad_ini.write_text("[preprocessing]\nsample_rate = 16000\nwindw = hann\n")
    code = preprocessing.main(["--dataset", "emodb", "--input", str(root), "--config", str(bad_ini)])
    assert code == 2 and "windw" in capsys.readouterr().err


def test_config_is_read_next_to_the_script(tmp_path):
    config = preprocessing.read_config(preprocessing.DEFAULT_CONFIG)
    assert config["output_folder"] == str(REPO / "data" / "stores") and config["n_fft"] == 256
    assert config["time_reversed"] is True
    root = emodb(tmp_path / "emodb")
    result = subprocess.run([sys.executable, str(REPO / "preprocessing.py"), "--dataset", "emodb", "--input",
                             str(root), "--output", "out", "--workers", "2", "--no-progress"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(SegmentStore(tmp_path / "out" / "emodb")) == 3
