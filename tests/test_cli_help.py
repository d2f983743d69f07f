"""The --help of the user-facing scripts: examples keep their line breaks, and each script speaks only of its
own keys, choices and metrics."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from engine_helpers import REPO


def help_text(script: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def option_help(text: str, name: str) -> str:
    """The help paragraph of ``--name`` (up to the next option)."""
    match = re.search(rf"^  --{name} .*?(?=^  --|\Z)", text, flags=re.S | re.M)
    assert match, name
    return " ".join(match.group(0).split())


@pytest.fixture(scope="module")
def rhemo_help() -> str:
    return help_text("training_RHemo.py")


@pytest.fixture(scope="module")
def ser_help() -> str:
    return help_text("training_SER.py")


def test_examples_keep_their_line_breaks(rhemo_help, ser_help):
    assert ("\n    python training_RHemo.py --store_path data/stores/iemocap --output_dir results/manual/rhemo_stage1 \\\n"
            "        --loss_beta 0\n") in rhemo_help
    assert "\n    python training_SER.py --config cfg.json --model_quat false --use_r2he false" in ser_help
    assert "\nExamples:\n" in rhemo_help and "\nExamples:\n" in ser_help


def test_rhemo_help_speaks_only_of_rhemo(rhemo_help):
    options = rhemo_help[rhemo_help.index("\noptions:"):]
    for word in ("AlexNet", "VGG", "resnet", "SER", "wa", "ua", "f1", "use_r2he"):
        assert not re.search(rf"\b{word}\b", options), word
    assert "--save_model_metric {total_loss,recon}" in options
    assert "--model_name {simple_autoencoder_2_vad}" in options
    assert "decoder" in option_help(options, "model_quat")


def test_ser_help_speaks_only_of_ser(ser_help):
    options = ser_help[ser_help.index("\noptions:"):]
    assert "simple_autoencoder_2_vad" not in options and "total_loss" not in options
    assert "--model_name {AlexNet,VGGNet,resnet50}" in options
    assert "--save_model_metric {loss,acc,wa,ua,f1}" in options
    assert "RH-emo:" not in options and "stage-1" not in options
    quat = option_help(options, "model_quat")
    assert "needs use_r2he true" in quat and "on the spectrogram when use_r2he is false" in quat


def test_download_weights_help_explains_itself():
    text = help_text("download_weights.py")
    assert "``" not in text and ":mod:" not in text and ":func:" not in text
    assert "sha256" in text and "--force" in text and "\nExamples:\n    python3 download_weights.py\n" in text


@pytest.mark.parametrize("script", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "bench").glob("bench_*.py")))
def test_every_bench_script_starts(script):
    """`make bench` runs these from a plain shell: their imports must resolve from the script's own path."""
    text = help_text(script)
    assert "--quick" in text
