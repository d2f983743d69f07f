"""preprocessing.py: config defaults, flag overrides, summary, and one-line errors."""

import json
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


def _ini(tmp_path, body: str):
    path = tmp_path / "p.ini"
    path.write_text("[preprocessing]\n" + body)
    return path


def test_no_arguments_means_iemocap_from_input_iemocap_folder(tmp_path, capsys):
    parser_defaults = preprocessing.build_parser().parse_args([])
    assert parser_defaults.dataset == "iemocap"
    ini = _ini(tmp_path, "input_iemocap_folder = nowhere/IEMOCAP\noutput_folder = out\n")
    code = preprocessing.main(["--config", str(ini)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"input_iemocap_folder = {tmp_path / 'nowhere' / 'IEMOCAP'} in {ini}" in err


def test_old_key_names_are_aliases_and_a_missing_path_names_the_key_as_written(tmp_path, capsys):
    root = emodb(tmp_path / "emodb")
    ini = _ini(tmp_path, f"input_emodb = {root}\noutput = out\ninput_iemocap = gone\n")
    config = preprocessing.read_config(ini)
    assert config["input_emodb_folder"] == str(root) and config["output_folder"] == str(tmp_path / "out")
    assert preprocessing.main(["--config", str(ini), "--dataset", "emodb", "--workers", "1", "--no-progress"]) == 0
    assert len(SegmentStore(tmp_path / "out" / "emodb")) == 3
    assert preprocessing.main(["--config", str(ini)]) == 2
    assert "input_iemocap = " in capsys.readouterr().err
    both = _ini(tmp_path, "input_tess = a\ninput_tess_folder = b\n")
    assert preprocessing.main(["--config", str(both), "--dataset", "tess"]) == 2
    assert "both input_tess and input_tess_folder" in capsys.readouterr().err


def test_shipped_ini_uses_the_seed_names_and_the_experiments_store():
    text = (REPO / "preprocessing_config.ini").read_text()
    assert "\ninput_iemocap_folder = " in text and "\ninput_iemocap = " not in text
    config = preprocessing.read_config(preprocessing.DEFAULT_CONFIG)
    assert Path(config["output_folder"]) / "iemocap" == REPO / "data" / "stores" / "iemocap"
    for number in (1, 2, 3):
        experiment = json.loads(next((REPO / "experiments").glob(f"{number}_*.txt")).read_text())
        assert experiment["global_parameters"]["store_path"] == "data/stores/iemocap"
