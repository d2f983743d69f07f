"""Tests of rhemo.train.checkpoint: atomic saves, weights-only loading, clear errors, hashing, state_dict forms."""
import collections
import fractions
import hashlib
import os
import stat

import numpy as np
import pytest
import torch

import rhemo.train.checkpoint as ckpt
from rhemo.train.checkpoint import (CHECKPOINT_FORMAT, CheckpointError, file_sha256, load_checkpoint,
                                     plain_state_dict, save_checkpoint)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(4, 2))


def contract_payload(model):
    """A payload shaped like the contract's, plus resume-state entries (optimizer, RNG states, history)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(2, 1, 3, 3)).sum().backward()
    opt.step()
    return {"format": CHECKPOINT_FORMAT, "code_version": "0.1.0", "model_name": "AlexNet",
            "model_kwargs": {"quat": False, "num_classes": 2}, "state_dict": model.state_dict(),
            "label_names": ["neu", "ang"], "label_view": "iemocap4", "dataset": "iemocap",
            "normalisation": {"kind": "max", "max": 3.5, "mean": 0.0, "std": 1.0},
            "feature_settings": {"sample_rate": 16000, "time_reversed": True}, "rhemo": None,
            "epoch": 3, "best_metric": 0.25, "config": {"split_fractions": [0.7, 0.2, 0.1], "amp": False},
            "optimizer": opt.state_dict(), "history": [{"epoch": 0, "val_loss": 1.0}],
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.default_rng(0).bit_generator.state},
            "shape": (1, 512, 128), "dtype": torch.float32}


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def test_round_trip_is_weights_only_loadable(tmp_path):
    model = tiny_model()
    payload = contract_payload(model)
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", payload)
    assert path == tmp_path / "run" / "checkpoint.pt"
    assert_same(torch.load(path, weights_only=True), payload)   # independent of load_checkpoint
    loaded = load_checkpoint(path)
    assert_same(loaded, payload)
    fresh = tiny_model(seed=1)
    fresh.load_state_dict(plain_state_dict(loaded), strict=True)
    x = torch.rand(2, 1, 3, 3)
    assert torch.equal(fresh.eval()(x), model.eval()(x))
    assert os.listdir(path.parent) == ["checkpoint.pt"]        # no temporary file left behind


@pytest.mark.parametrize("bad, where", [
    ({"normalisation": {"max": np.float64(3.0)}}, "payload['normalisation']['max'] is a numpy.float64"),
    ({"rng": {"numpy": np.random.get_state()}}, "payload['rng']['numpy'][1] is a numpy.ndarray"),
    ({"history": [{"ratio": fractions.Fraction(1, 3)}]}, "payload['history'][0]['ratio'] is a fractions.Fraction"),
    ({"labels": {"neu", "ang"}}, "payload['labels'] is a builtins.set"),
    ({"obj": torch.nn.Linear(1, 1)}, "payload['obj'] is a torch.nn.modules.linear.Linear"),
    ({"keys": {object(): 1}}, "payload['keys'] has a key of type object"),
])
def test_payload_check_names_the_bad_key_and_writes_nothing(tmp_path, bad, where):
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(TypeError) as err:
        save_checkpoint(path, {"format": CHECKPOINT_FORMAT, **bad})
    assert where in str(err.value)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_payload_check_cycles_and_shared_references(tmp_path):
    loop: list = []
    loop.append(loop)
    with pytest.raises(TypeError, match="reference cycle"):
        save_checkpoint(tmp_path / "a.pt", {"loop": loop})
    shared = {"lr": 0.1}
    save_checkpoint(tmp_path / "b.pt", {"one": shared, "two": shared, "list": [shared, shared]})
    assert load_checkpoint(tmp_path / "b.pt")["two"] == {"lr": 0.1}
    with pytest.raises(TypeError, match="payload must be a dict"):
        save_checkpoint(tmp_path / "c.pt", [1, 2])


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch, failure):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise failure

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    with pytest.raises(type(failure)):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})
    save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path) == {"epoch": 2}


def test_missing_corrupt_and_truncated_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint file not found: .*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="it is a directory"):
        load_checkpoint(tmp_path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="garbage.pt is not a readable checkpoint"):
        load_checkpoint(garbage)
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.arange(10000.0)})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pt is not a readable checkpoint"):
        load_checkpoint(truncated)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(empty)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"ratio": fractions.Fraction(1, 3)}, path)  # plain torch.save, bypassing our check
    with pytest.raises(CheckpointError, match=r"is not a weights file: .*\(fractions.Fraction\)") as caught:
        load_checkpoint(path)
    assert "weights_only" not in str(caught.value)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_exploit_refusal_gives_no_unsafe_advice(tmp_path):
    # torch's own message for a blocked global advises re-running with weights_only=False: never pass it on
    path = tmp_path / "exploit.pt"
    torch.save({"x": _RunsCode()}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "is not a weights file" in message and "system" in message
    assert "weights_only" not in message and "\n" not in message


def test_map_location(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", {"w": torch.ones(2)})
    assert load_checkpoint(path, map_location=torch.device("cpu"))["w"].device.type == "cpu"


def test_file_sha256_matches_hashlib(tmp_path):
    data = np.random.default_rng(1).bytes(2 * (1 << 20) + 12345)   # spans several 1 MiB chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    with pytest.raises(CheckpointError, match="missing.bin"):
        file_sha256(tmp_path / "missing.bin")


def test_plain_state_dict_forms():
    sd = tiny_model().state_dict()
    keys = list(sd)
    ours = {"format": CHECKPOINT_FORMAT, "state_dict": sd, "epoch": 1}
    for obj in (ours, sd, dict(sd), {"state_dict": sd, "epoch": 4}, {"model_state_dict": sd, "optimizer": {}}):
        got = plain_state_dict(obj)
        assert list(got) == keys and all(got[k] is sd[k] for k in keys)
    ddp = collections.OrderedDict((f"module.{k}", v) for k, v in sd.items())
    got = plain_state_dict({"state_dict": ddp})
    assert list(got) == keys
    assert list(ddp)[0].startswith("module.")                 # input left untouched


def test_plain_state_dict_errors():
    t = torch.ones(1)
    with pytest.raises(CheckpointError, match="'rhemo-ckpt/9' is not supported"):
        plain_state_dict({"format": "rhemo-ckpt/9", "state_dict": {"a": t}})
    with pytest.raises(CheckpointError, match="must hold a non-empty state_dict"):
        plain_state_dict({"format": CHECKPOINT_FORMAT, "state_dict": {}})
    with pytest.raises(CheckpointError, match=r"found a dict with 2 keys \['weights', 'epoch'\]; key 'weights'"):
        plain_state_dict({"weights": [t], "epoch": 1})
    with pytest.raises(CheckpointError, match="found a list"):
        plain_state_dict([t])
    with pytest.raises(CheckpointError, match="both 'fc.weight' and 'module.fc.weight'"):
        plain_state_dict({"fc.weight": t, "module.fc.weight": t})


def test_atomic_writes_give_files_the_mode_open_would(tmp_path):
    """Results, stores and checkpoints stay readable by the group/others the umask allows (not mkstemp's 0600)."""
    from rhemo.atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.json", "{}\n")
        ckpt.save_checkpoint(tmp_path / "c.pt", {"x": torch.zeros(1)})
    finally:
        os.umask(old)
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    for name in ("a.json", "c.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == stat.S_IMODE(reference.stat().st_mode) == 0o644
