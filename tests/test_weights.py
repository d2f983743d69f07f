"""Tests of rhemo.train.weights and download_weights.py: loading the authors' key layout and our checkpoints,
strict key checks, and a download (gdown patched: no network) that is verified before it replaces anything."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

import gdown
from models import simple_autoencoder_2_vad
from rhemo.train import weights
from rhemo.train.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from rhemo.train.weights import WeightsError, load_rhemo

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # download_weights.py is a top-level script
    sys.path.insert(0, str(REPO))


def authors_state_dict(hidden_size: int = 8, num_classes: int = 5, quat: bool = True, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return simple_autoencoder_2_vad(quat=quat, hidden_size=hidden_size, num_classes=num_classes).state_dict()


@pytest.fixture
def authors_file(tmp_path: Path) -> tuple[Path, dict]:
    """A bare state_dict, saved like the authors' ``torch.save(model.state_dict(), path)`` (no extension)."""
    state = authors_state_dict()
    path = tmp_path / "pretrained_RHemo"
    torch.save(state, path)
    return path, state


def assert_same_state(model: torch.nn.Module, state: dict) -> None:
    loaded = model.state_dict()
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_authors_layout_loads_strictly_with_inferred_sizes(authors_file):
    path, state = authors_file
    assert len(state) == 63                          # the authors' entry count
    model = load_rhemo(path)
    assert isinstance(model, simple_autoencoder_2_vad)
    assert (model.hidden_size, model.num_classes, model.quat) == (8, 5, True)
    assert not model.training                        # ready for embeddings
    assert_same_state(model, state)
    emb, *_ = model.get_embeddings(torch.rand(1, 1, 512, 128))
    assert emb.shape == (1, 4, 64, 64)


def test_real_decoder_and_other_class_count_are_inferred(tmp_path):
    state = authors_state_dict(hidden_size=12, num_classes=4, quat=False)
    torch.save(state, tmp_path / "w")
    model = load_rhemo(tmp_path / "w")
    assert (model.hidden_size, model.num_classes, model.quat) == (12, 4, False)
    assert_same_state(model, state)


def test_rhemo_kwargs_from_shapes():
    state = authors_state_dict(hidden_size=6, num_classes=3)
    assert weights.rhemo_kwargs(state) == {"quat": True, "hidden_size": 6, "num_classes": 3}
    with pytest.raises(WeightsError, match="classifier_discrete.0.weight"):
        weights.rhemo_kwargs({"fc.weight": torch.zeros(2, 2)})


def test_our_checkpoint_payload_loads(tmp_path):
    state = authors_state_dict(hidden_size=8, num_classes=4)
    path = save_checkpoint(tmp_path / "checkpoint.pt", {
        "format": CHECKPOINT_FORMAT, "code_version": "0", "model_name": "simple_autoencoder_2_vad",
        "model_kwargs": {"quat": True, "hidden_size": 8, "num_classes": 4, "classifier_dropout": 0.25},
        "state_dict": state, "label_names": ["neu", "ang", "hap", "sad"], "label_view": "iemocap4",
        "dataset": "iemocap", "epoch": 3, "best_metric": 0.5, "config": {}})
    model = load_rhemo(path)
    assert (model.hidden_size, model.num_classes) == (8, 4)
    assert model.classifier_discrete[2].p == 0.25
    assert_same_state(model, state)


def test_ddp_prefix_is_accepted(tmp_path):
    state = authors_state_dict()
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "w")
    assert_same_state(load_rhemo(tmp_path / "w"), state)


def test_wrong_keys_list_missing_and_unexpected(tmp_path):
    state = authors_state_dict()
    state["conv1.weights"] = state.pop("conv1.weight")
    del state["tconv2_bn.gamma"]
    torch.save(state, tmp_path / "w")
    with pytest.raises(WeightsError) as exc:
        load_rhemo(tmp_path / "w")
    message = str(exc.value)
    assert "missing keys: conv1.weight, tconv2_bn.gamma" in message
    assert "unexpected keys: conv1.weights" in message


def test_wrong_shape_is_named(tmp_path):
    state = authors_state_dict()
    state["conv2.weight"] = torch.zeros(4, 2, 5, 5)
    torch.save(state, tmp_path / "w")
    with pytest.raises(WeightsError, match=r"wrong shapes: conv2.weight \(4, 2, 5, 5\) \(expected \(4, 2, 3, 3\)\)"):
        load_rhemo(tmp_path / "w")


def test_missing_file_points_to_download_weights(tmp_path):
    with pytest.raises(WeightsError, match="download_weights.py"):
        load_rhemo(tmp_path / "nope")


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"format": CHECKPOINT_FORMAT, "model_name": "AlexNet",
                                                "state_dict": {"fc.weight": torch.zeros(2, 2)}})
    with pytest.raises(WeightsError, match="holds a 'AlexNet' checkpoint"):
        load_rhemo(path)


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"state_dict": authors_state_dict(), "extra": Path("x")}, tmp_path / "w")
    with pytest.raises(WeightsError, match="cannot read RH-emo weights"):
        load_rhemo(tmp_path / "w")


# ------------------------------------------------------------------------------------------- download
def fake_gdown(monkeypatch, action):
    """Replace gdown.download; ``action(output)`` plays the download. Records the calls."""
    seen = []

    def download(*args, id=None, output=None, quiet=False, **kwargs):
        seen.append({"id": id, "output": output})
        return action(Path(output))

    monkeypatch.setattr(gdown, "download", download)
    return seen


def test_offline_download_gives_a_clear_error(tmp_path, monkeypatch):
    def offline(output):
        raise ConnectionError("Failed to resolve 'drive.google.com'")

    seen = fake_gdown(monkeypatch, offline)
    target = tmp_path / "models" / "pretrained_RHemo"
    with pytest.raises(WeightsError) as exc:
        weights.download_pretrained(target)
    message = str(exc.value)
    assert "could not be downloaded" in message and "drive.google.com" in message
    assert "https://drive.google.com/file/d/1vCX0KHW44Q9plKTdkgyKZRcyjfgVA7jX/view" in message
    assert str(target) in message
    assert seen[0]["id"] == weights.GDRIVE_ID
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_gdown_returning_none_is_a_failure(tmp_path, monkeypatch):
    fake_gdown(monkeypatch, lambda output: None)
    with pytest.raises(WeightsError, match="gdown returned no file"):
        weights.download_pretrained(tmp_path / "w")


def test_download_is_verified_then_moved_into_place(tmp_path, monkeypatch, authors_file):
    source, state = authors_file
    seen = fake_gdown(monkeypatch, lambda output: str(shutil.copyfile(source, output)))
    target = tmp_path / "models" / "pretrained_RHemo"
    assert weights.download_pretrained(target) == target
    assert Path(seen[0]["output"]) == target.with_name("pretrained_RHemo.download")   # temp name first
    assert target.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["pretrained_RHemo"]
    assert_same_state(load_rhemo(target), state)


def test_folder_output_gets_the_authors_file_name(tmp_path, monkeypatch, authors_file):
    source, _ = authors_file
    fake_gdown(monkeypatch, lambda output: str(shutil.copyfile(source, output)))
    folder = tmp_path / "models"
    folder.mkdir()
    assert weights.download_pretrained(folder) == folder / "pretrained_RHemo"


def test_corrupt_download_is_rejected_and_old_file_kept(tmp_path, monkeypatch):
    target = tmp_path / "pretrained_RHemo"
    target.write_bytes(b"the old, good file")

    def corrupt(output):
        output.write_bytes(b"<html>Google Drive quota exceeded</html>")
        return str(output)

    fake_gdown(monkeypatch, corrupt)
    with pytest.raises(WeightsError, match=r"downloaded file was rejected.*the existing .* was kept"):
        weights.download_pretrained(target, force=True)
    assert target.read_bytes() == b"the old, good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pretrained_RHemo"]


def test_wrong_layout_download_is_rejected(tmp_path, monkeypatch):
    state = authors_state_dict()
    del state["conv3.bias"]
    fake_gdown(monkeypatch, lambda output: torch.save(state, output) or str(output))
    with pytest.raises(WeightsError, match="missing keys: conv3.bias"):
        weights.download_pretrained(tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_sha256_is_checked_when_known(tmp_path, monkeypatch, authors_file):
    source, _ = authors_file
    fake_gdown(monkeypatch, lambda output: str(shutil.copyfile(source, output)))
    monkeypatch.setattr(weights, "EXPECTED_SHA256", "0" * 64)
    with pytest.raises(WeightsError, match="has SHA-256"):
        weights.download_pretrained(tmp_path / "w")
    import hashlib
    monkeypatch.setattr(weights, "EXPECTED_SHA256", hashlib.sha256(source.read_bytes()).hexdigest())
    assert weights.download_pretrained(tmp_path / "w").exists()


def test_existing_file_is_not_downloaded_again(tmp_path, monkeypatch):
    target = tmp_path / "w"
    target.write_bytes(b"x")
    seen = fake_gdown(monkeypatch, lambda output: pytest.fail("gdown must not be called"))
    assert weights.download_pretrained(target) == target and seen == []


def test_cli_fails_with_one_line(tmp_path, monkeypatch, capsys):
    import download_weights

    fake_gdown(monkeypatch, lambda output: (_ for _ in ()).throw(OSError("network is unreachable")))
    assert download_weights.main(["--output", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("download_weights.py: error:")
    assert "network is unreachable" in err and "drive.google.com/file/d/" in err


def test_cli_success(tmp_path, monkeypatch, capsys, authors_file):
    import download_weights

    source, _ = authors_file
    fake_gdown(monkeypatch, lambda output: str(shutil.copyfile(source, output)))
    assert download_weights.main(["--output", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "hidden_size=8" in out and "sha256" in out and (tmp_path / "w").exists()
