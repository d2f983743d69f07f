"""The run folder's checkpoint writes (rhemo.train.resume): CPU snapshots in reused buffers, one background
writer whose failures reach the training thread, and a run killed (SIGKILL) in the middle of a write resuming
exactly."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from rhemo.atomic import atomic_link, write_bytes
from rhemo.train import checkpoint as ckpt, loop, resume
from tests.engine_helpers import FOUR, REPO, make_store, read_metrics, rhemo_config, run_script, ser_config


# ------------------------------------------------------------------------------------------------ BufferPool
def test_snapshots_are_copies_in_reused_buffers_and_shared_storage_is_copied_once():
    pool = resume.BufferPool()
    net = torch.nn.Linear(3, 2)
    first = pool.take({"model": net.state_dict(), "weight_again": net.weight, "step": 7})
    assert first["step"] == 7 and first["weight_again"] is first["model"]["weight"]
    assert first["model"]["weight"].data_ptr() != net.weight.data_ptr()
    expected = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    assert torch.equal(first["model"]["weight"], expected)  # the live tensor moved on, the copy did not
    second = pool.take({"model": net.state_dict()})
    assert second["model"]["weight"] is first["model"]["weight"]  # the same buffer, refilled
    assert torch.equal(second["model"]["weight"], net.weight.detach())
    third = pool.take({"bias": net.bias})
    assert len(pool._buffers) == 1 and torch.equal(third["bias"], net.bias.detach())  # the weight's is dropped


def test_a_channels_last_tensor_is_copied_with_its_strides():
    live = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    copy = resume.BufferPool().take(live)
    assert copy.stride() == live.stride() and torch.equal(copy, live)


# ------------------------------------------------------------------------------------------------ writer
@pytest.mark.parametrize("background", [True, False])
def test_the_writer_writes_in_order_and_hands_a_failure_to_the_caller(tmp_path, monkeypatch, background):
    written, done = [], []
    real = resume.save_checkpoint

    def save(path, payload):
        if payload.get("fail"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(path.name)
        return real(path, payload)

    monkeypatch.setattr(resume, "save_checkpoint", save)
    writer = resume.CheckpointWriter(background)
    writer.submit([(tmp_path / "a.pt", {"x": torch.ones(2)}), (tmp_path / "b.pt", {})], lambda: done.append(1))
    writer.wait()
    assert written == ["a.pt", "b.pt"] and done == [1]
    with pytest.raises(OSError, match="No space left") as raised:
        writer.submit([(tmp_path / "c.pt", {"fail": True}), (tmp_path / "d.pt", {})], lambda: done.append(2))
        writer.wait()
    assert raised.value.filename == str(tmp_path / "c.pt")
    assert written == ["a.pt", "b.pt"] and done == [1]  # nothing after the failed write, no 'done'
    writer.wait()  # the error was handed over once


def test_a_failure_is_dropped_when_asked_quietly(tmp_path):
    (tmp_path / "file").write_text("")
    writer = resume.CheckpointWriter(True)
    writer.submit([(tmp_path / "file" / "x.pt", {})], lambda: None)  # a file where the folder would be
    with pytest.raises(OSError):
        writer.wait()
    writer.submit([(tmp_path / "file" / "x.pt", {})], lambda: None)
    writer.wait(quiet=True)  # the caller is reporting another error
    writer.wait()


@pytest.mark.parametrize("background", [True, False])
def test_the_next_epoch_starts_while_the_files_are_written(tmp_path, monkeypatch, after_epoch, background):
    """In the background, epoch 1's hook runs while its last.pt is still being written (held here until the
    hook has looked); with background_writes off it runs after. Either way the run ends as the reference."""
    store = make_store(tmp_path / "store", FOUR * 3)
    reference = tmp_path / "reference"
    assert run_script("training_SER.py", ser_config(store, reference, num_epochs=3), tmp_path) == 0
    monkeypatch.setattr(loop.SPEEDUPS, "background_writes", background)
    release, seen = threading.Event(), []
    real = ckpt.torch.save

    def save(payload, handle):
        if payload.get("kind") == "resume" and payload["epoch"] == 1 and background:
            assert release.wait(60), "the hook never ran while last.pt was being written"
        real(payload, handle)

    def hook(epoch):
        if epoch == 1:
            seen.append((out / "last.pt").exists())
            release.set()

    monkeypatch.setattr(ckpt.torch, "save", save)
    after_epoch[:] = [hook]
    out = tmp_path / "run"
    assert run_script("training_SER.py", ser_config(store, out, num_epochs=3), tmp_path) == 0
    assert seen == [not background]
    for split in ("train", "val", "test"):
        assert read_metrics(out)[split] == read_metrics(reference)[split]


# ------------------------------------------------------------------------------------------------ SIGKILL
_DRIVER = """
import json, runpy, sys, time
sys.path.insert(0, {repo!r})
from rhemo.train import checkpoint
real = checkpoint.torch.save

def save(payload, handle):
    real(payload, handle)
    if payload.get("kind") == "resume" and payload["epoch"] == 2:  # written, not yet fsync'ed nor renamed
        open({marker!r}, "w").close()
        time.sleep(600)

checkpoint.torch.save = save
sys.argv = ["training_SER.py", "--config", {config!r}]
runpy.run_path({script!r}, run_name="__main__")
"""


def test_a_run_killed_in_the_middle_of_a_write_resumes_exactly(tmp_path):
    store = make_store(tmp_path / "store", FOUR * 3)
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert run_script("training_SER.py", ser_config(store, reference, num_epochs=4), tmp_path) == 0
    config, marker = tmp_path / "killed.json", tmp_path / "writing"
    config.write_text(json.dumps(ser_config(store, out, num_epochs=4)))
    driver = _DRIVER.format(repo=str(REPO), marker=str(marker), config=str(config),
                            script=str(REPO / "training_SER.py"))
    process = subprocess.Popen([sys.executable, "-c", driver], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), process.communicate(timeout=30)[1][-2000:]
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    assert ckpt.load_checkpoint(out / "last.pt")["epoch"] == 1  # epoch 2's last.pt never replaced it
    assert list(out.glob("last.pt.*.tmp"))  # the half-done write, left by the kill
    assert run_script("training_SER.py", ser_config(store, out, num_epochs=4), tmp_path) == 0
    assert not list(out.glob("*.tmp")) and not (out / "last.pt").exists()
    for split in ("train", "val", "test"):
        assert read_metrics(out)[split] == read_metrics(reference)[split]
    rows = (out / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3", "4"]


# ------------------------------------------------------------------------------------------------ one copy
def test_a_link_is_the_same_file_and_keeps_the_old_bytes_when_the_source_is_rewritten(tmp_path):
    source, link = tmp_path / "checkpoint.pt", tmp_path / "best.pt"
    source.write_bytes(b"epoch 1")
    link.write_bytes(b"older")
    atomic_link(source, link)
    assert os.stat(source).st_ino == os.stat(link).st_ino and link.read_bytes() == b"epoch 1"
    write_bytes(source, b"epoch 2")  # as every checkpoint write: a new file replaces the name
    assert link.read_bytes() == b"epoch 1" and source.read_bytes() == b"epoch 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "checkpoint.pt"]


def test_a_link_becomes_a_copy_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    source, link = tmp_path / "checkpoint.pt", tmp_path / "best.pt"
    source.write_bytes(b"weights")

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted", str(src))

    monkeypatch.setattr(os, "link", no_links)
    atomic_link(source, link)
    assert link.read_bytes() == b"weights" and os.stat(source).st_ino != os.stat(link).st_ino
    with pytest.raises(FileNotFoundError):
        atomic_link(tmp_path / "missing.pt", link)
    assert link.read_bytes() == b"weights" and sorted(p.name for p in tmp_path.iterdir()) == ["best.pt",
                                                                                              "checkpoint.pt"]


def _best_epochs(folder) -> list[int]:
    rows = [line.split(",") for line in (folder / "log.csv").read_text().splitlines()]
    column = rows[0].index("val_total")
    losses = [float(row[column]) for row in rows[1:]]
    return [i + 1 for i, loss in enumerate(losses) if loss < min(losses[:i], default=float("inf"))]


def test_rhemo_last_pt_refers_to_checkpoint_pt_instead_of_a_second_copy(tmp_path, after_epoch, monkeypatch):
    """RH-emo's checkpoint.pt stores the model itself: a best epoch's last.pt has no weights of its own, a later
    epoch's best weights are checkpoint.pt's, and best.pt is a hard link to the checkpoint.pt a new best epoch
    replaces (the weights the last.pt on disk referred to)."""
    monkeypatch.setattr(loop.SPEEDUPS, "background_writes", False)  # the hook sees the epoch's files
    store = make_store(tmp_path / "store", FOUR * 3)
    out = tmp_path / "run"
    seen, inodes = [], []

    def look(epoch: int) -> None:
        last = ckpt.load_checkpoint(out / "last.pt")
        best = ckpt.load_checkpoint(out / "best.pt")["epoch"] if (out / "best.pt").exists() else None
        seen.append((last["epoch"], last["model"] is None, last["model_in"], last["best_in"],
                     ckpt.load_checkpoint(out / "checkpoint.pt")["epoch"], best))
        inodes.append({name: os.stat(out / name).st_ino for name in ("checkpoint.pt", "best.pt")
                       if (out / name).exists()})

    after_epoch[:] = [look]
    assert run_script("training_RHemo.py", rhemo_config(store, out, num_epochs=5, learning_rate=0.1), tmp_path) == 0
    bests = _best_epochs(out)
    assert bests[:2] == [1, 2] and bests != [1, 2, 3, 4, 5], bests  # both kinds of epoch, and a link
    expected, linked = [], None
    for epoch in (1, 2, 3, 4, 5):
        best = max(b for b in bests if b <= epoch)
        current = best == epoch
        if current and epoch > 1:
            linked = max(b for b in bests if b < epoch)
        expected.append((epoch, current, "checkpoint.pt" if current else None,
                         "model" if current else "checkpoint.pt", best, linked))
    assert seen == expected
    assert inodes[1]["best.pt"] == inodes[0]["checkpoint.pt"]  # epoch 2 linked epoch 1's file, no copy
    assert not (out / "best.pt").exists() and not (out / "last.pt").exists()  # a finished run keeps neither


def test_rhemo_killed_between_checkpoint_pt_and_last_pt_resumes_from_best_pt(tmp_path, monkeypatch):
    """Epochs 1 and 2 are best; epoch 2's checkpoint.pt has replaced epoch 1's, then its last.pt write fails:
    the last.pt on disk (epoch 1) refers to checkpoint.pt, whose epoch-1 weights best.pt kept. The re-run resumes
    from them and ends as the uninterrupted run."""
    store = make_store(tmp_path / "store", FOUR * 3)
    reference, out = tmp_path / "reference", tmp_path / "run"
    base = dict(num_epochs=3, learning_rate=0.1)
    assert run_script("training_RHemo.py", rhemo_config(store, reference, **base), tmp_path) == 0
    assert _best_epochs(reference)[:2] == [1, 2]
    real = resume.save_checkpoint

    def save(path, payload):
        if payload.get("kind") == "resume" and payload["epoch"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, payload)

    monkeypatch.setattr(resume, "save_checkpoint", save)
    assert run_script("training_RHemo.py", rhemo_config(store, out, **base), tmp_path) != 0
    assert ckpt.load_checkpoint(out / "last.pt")["epoch"] == 1
    assert ckpt.load_checkpoint(out / "checkpoint.pt")["epoch"] == 2 and ckpt.load_checkpoint(
        out / "best.pt")["epoch"] == 1
    monkeypatch.setattr(resume, "save_checkpoint", real)
    assert run_script("training_RHemo.py", rhemo_config(store, out, **base), tmp_path) == 0
    for split in ("train", "val", "test"):
        assert read_metrics(out)[split] == read_metrics(reference)[split]
    weights = [ckpt.load_checkpoint(folder / "checkpoint.pt")["state_dict"] for folder in (reference, out)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_last_pt_whose_weights_no_file_holds_starts_afresh(tmp_path, after_epoch, capsys):
    store = make_store(tmp_path / "store", FOUR * 3)
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert run_script("training_RHemo.py", rhemo_config(store, reference), tmp_path) == 0

    def interrupt(epoch: int) -> None:
        raise KeyboardInterrupt

    after_epoch[:] = [interrupt]
    assert run_script("training_RHemo.py", rhemo_config(store, out), tmp_path) == 130
    assert ckpt.load_checkpoint(out / "last.pt")["model_in"] == "checkpoint.pt"
    (out / "checkpoint.pt").unlink()
    after_epoch[:] = []
    capsys.readouterr()
    assert run_script("training_RHemo.py", rhemo_config(store, out), tmp_path) == 0
    printed = capsys.readouterr().out
    assert f"refers to the weights of epoch 1, which neither {out / 'checkpoint.pt'} nor" in printed
    assert "starting from scratch" in printed
    assert read_metrics(out)["test"] == read_metrics(reference)["test"]


def test_a_checkpoint_pt_deleted_during_the_run_is_written_again(tmp_path, after_epoch, monkeypatch):
    """Nothing to keep for the last.pt on disk: the next best epoch writes checkpoint.pt and the run finishes as
    the reference."""
    monkeypatch.setattr(loop.SPEEDUPS, "background_writes", False)
    store = make_store(tmp_path / "store", FOUR * 3)
    reference, out = tmp_path / "reference", tmp_path / "run"
    base = dict(num_epochs=3, learning_rate=0.1)
    assert run_script("training_RHemo.py", rhemo_config(store, reference, **base), tmp_path) == 0
    assert _best_epochs(reference)[:2] == [1, 2]

    def delete(epoch: int) -> None:
        if epoch == 1:
            (out / "checkpoint.pt").unlink()

    after_epoch[:] = [delete]
    assert run_script("training_RHemo.py", rhemo_config(store, out, **base), tmp_path) == 0
    assert read_metrics(out)["test"] == read_metrics(reference)["test"]
    assert ckpt.load_checkpoint(out / "checkpoint.pt")["epoch"] == ckpt.load_checkpoint(
        reference / "checkpoint.pt")["epoch"]


def test_a_reference_is_found_by_epoch_in_checkpoint_pt_then_best_pt(tmp_path):
    weights = {"w": torch.ones(2)}
    ckpt.save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 3, "state_dict": weights})
    ckpt.save_checkpoint(tmp_path / "best.pt", {"epoch": 2, "state_dict": {"w": torch.zeros(2)}})
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    saved = resume._SavedWeights(tmp_path)
    assert torch.equal(saved.find("checkpoint.pt", 3)["w"], torch.ones(2)) and saved.checkpoint_epoch == 3
    assert torch.equal(saved.find("checkpoint.pt", 2)["w"], torch.zeros(2))  # kept by the link
    assert saved.find("best.pt", 3) is False and saved.find("checkpoint.pt", 4) is False
    assert saved.find(None, 3) is False and saved.find("last.pt", 3) is False and saved.find(["x"], 3) is False
    fresh = resume._SavedWeights(tmp_path)
    assert torch.equal(fresh.find("checkpoint.pt", 2)["w"], torch.zeros(2)) and fresh.checkpoint_epoch == 0
