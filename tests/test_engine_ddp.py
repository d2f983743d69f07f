"""Multi-process training for real: ``torchrun --nproc_per_node=2`` with the gloo backend on CPU.

Equivalence (see rhemo/train/loaders.py): with W processes and global batch B, the ranks' k-th batches are the W
parts of the single process's k-th batch P[kB:(k+1)B], the last partial batch included (no row repeated; a
rank with no row in it steps on a weight-0 padding row), and each rank's mean loss is scaled by its share of
the global batch, so DistributedDataParallel's average is the gradient of the mean loss over the global
batch. With no dropout and BatchNorm only in eval mode (the frozen RH-emo encoder run in every step), the two
runs follow the same trajectory up to float rounding.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rhemo.train import checkpoint as ckpt
from rhemo.train import loaders as data

from engine_helpers import (FOUR, REPO, make_rhemo_weights, make_store, read_metrics,  # noqa: E402
                                  rhemo_config, run_script, ser_config)


def torchrun(script: str, cfg: dict, tmp: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    path = tmp / f"{Path(cfg['output_dir']).name}.json"
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(REPO / script), "--config", str(path)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_two_process_ser_run_matches_one_process_run(tmp_path):
    # 18 utterances → 9 train: global batches of 4, 4 and 1 (rank 1 has no row of the last one), 4 val, 5 test
    store = make_store(tmp_path / "store", FOUR * 4 + FOUR[:2])
    weights = make_rhemo_weights(tmp_path / "rhemo.pt", store)
    common = dict(model_quat=True, use_r2he=True, r2he_model_path=str(weights), num_epochs=3, batch_size=4,
                  learning_rate=3e-4, model_classifier_dropout=0.0, model_hidden_size=32,
                  cache_embeddings=False)  # the frozen encoder's eval-mode BatchNorm runs inside the DDP model
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    result = torchrun("training_SER.py", ser_config(store, ddp, **common), tmp_path)
    assert "2 process(es)" in result.stdout
    assert run_script("training_SER.py", ser_config(store, single, **common), tmp_path) == 0

    w_ddp = ckpt.load_checkpoint(ddp / "checkpoint.pt")["state_dict"]
    w_one = ckpt.load_checkpoint(single / "checkpoint.pt")["state_dict"]
    assert w_ddp.keys() == w_one.keys()
    # Float rounding differs (another reduction order, 1 vs 2 threads) and Adam divides each gradient by its
    # running RMS, which turns rounding noise on near-zero gradients into full lr-sized steps for a few
    # elements. So: every tensor equal to 1e-4 in relative norm, and under 0.1 % of elements off by > 1e-6.
    for key in w_one:
        diff = (w_ddp[key].double() - w_one[key].double())
        assert diff.norm() <= 1e-4 * w_one[key].double().norm() + 1e-7, key
        assert (diff.abs() > 1e-6).double().mean() < 1e-3, key
    m_ddp, m_one = read_metrics(ddp), read_metrics(single)
    assert m_ddp["best_epoch"] == m_one["best_epoch"] and m_ddp["epochs"] == m_one["epochs"] == 3
    for split in ("train", "val", "test"):  # metrics gathered over the ranks' shards = the whole split
        assert m_ddp[split]["confusion"] == m_one[split]["confusion"]
        assert m_ddp[split]["utt_confusion"] == m_one[split]["utt_confusion"]
        assert m_ddp[split]["loss"] == pytest.approx(m_one[split]["loss"], rel=1e-4, abs=1e-6)
    # the same trajectory epoch by epoch (training metrics reduced over ranks); only rank 0 wrote the log
    logs = []
    for folder in (ddp, single):
        with open(folder / "log.csv") as handle:
            logs.append(list(csv.DictReader(handle)))
    assert [int(r["epoch"]) for r in logs[0]] == [1, 2, 3]
    losses = [[float(r["train_loss"]) for r in log] for log in logs]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4) and len(set(losses[1])) == 3
    assert not list(ddp.glob("*.tmp")) and not (ddp / "last.pt").exists()


def test_two_process_rhemo_run_finishes(tmp_path):
    store = make_store(tmp_path / "store", (FOUR + ["fru"]) * 2)
    out = tmp_path / "rhemo_ddp"
    torchrun("training_RHemo.py", rhemo_config(store, out, label_view="complete", num_epochs=1, batch_size=2),
             tmp_path)
    metrics = read_metrics(out)
    assert metrics["status"] == "done" and metrics["epochs"] == 1
    assert all(metrics[s]["total"] > 0 for s in ("train", "val", "test"))


def test_batch_must_split_evenly_over_processes(tmp_path):
    store = make_store(tmp_path / "store", FOUR * 3)
    cfg = ser_config(store, tmp_path / "odd", batch_size=3)
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(REPO / "training_SER.py"), "--config", str(path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "batch_size 3 (the global batch) must be divisible by the number of processes 2" in result.stderr


@pytest.mark.parametrize("n, batch, world", [(9, 4, 2), (10, 4, 2), (7, 6, 3), (1, 4, 2), (5, 2, 2), (13, 8, 4)])
def test_global_batches_split_over_ranks_without_repeats(n, batch, world):
    single = data.GlobalBatchSampler(n, batch, seed=4)
    single.set_epoch(2)
    order = [row for row, _ in single]
    samplers = [data.GlobalBatchSampler(n, batch, rank=r, world_size=world, seed=4) for r in range(world)]
    for sampler in samplers:
        sampler.set_epoch(2)
    per_rank = [list(s) for s in samplers]
    local = batch // world  # what the DataLoader reads at a time
    chunks = [[items[i:i + local] for i in range(0, len(items), local)] for items in per_rank]
    assert len({len(c) for c in chunks}) == 1  # every rank takes part in every step
    for k, start in enumerate(range(0, n, batch)):
        real = [row for rank in chunks for row, weight in rank[k] if weight == 1.0]
        assert real == order[start:start + batch]  # the single process's k-th batch, in order, once
        for rank in chunks:
            weights = [w for _, w in rank[k]]
            assert weights == [0.0] or all(w == 1.0 for w in weights)  # padding only as a whole, one-row part
    assert sorted(order) == list(range(n))


def test_sync_batchnorm_converts_torch_batchnorm_only_and_needs_cuda():
    import torch
    from torch import nn

    from quaternion_layers import QuaternionBatchNorm2d
    from rhemo.train import runtime as device, loop

    net = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), QuaternionBatchNorm2d(4))
    assert loop.place_model(net, device.Runtime(torch.device("cpu")), sync_batchnorm=True) is net  # 1 process
    assert isinstance(net[1], nn.BatchNorm2d) and not isinstance(net[1], nn.SyncBatchNorm)
    with pytest.raises(device.DeviceError, match="sync_batchnorm true needs CUDA"):
        loop.place_model(net, device.Runtime(torch.device("cpu"), 0, 2), sync_batchnorm=True)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(net)  # what place_model does on GPUs
    assert isinstance(converted[1], nn.SyncBatchNorm) and isinstance(converted[2], QuaternionBatchNorm2d)
