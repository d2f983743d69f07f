"""RH-emo as the SER front end: frozen eval-mode encoding, the embedding cache, and real fine-tuning."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.registry import RHEMO_MODEL, create_model
from rhemo.data.store import SegmentStore
from rhemo.train import checkpoint as ckpt
from rhemo.train import loaders as data, embeddings

from engine_helpers import (FOUR, make_rhemo_weights, make_store, read_metrics, run_script,  # noqa: E402
                                  ser_config)
from rhemo.data.normalisation import Normalisation, compute_normalisation

CPU = torch.device("cpu")


@pytest.fixture()
def store_and_weights(tmp_path):
    store = make_store(tmp_path / "store", FOUR * 3)
    weights = make_rhemo_weights(tmp_path / "rhemo.pt", store, seed=4)
    return store, weights


def test_frontend_loads_only_the_encoder_and_stays_frozen(store_and_weights):
    store, weights = store_and_weights
    rhemo, source = embeddings.load_frontend(weights, CPU)
    original = torch.load(weights, weights_only=True)
    for key, value in rhemo.encoder_state_dict().items():
        assert torch.equal(value, original[key]), key
    assert rhemo.hidden_size == embeddings.FRONTEND_HIDDEN  # the big heads never reach the device
    assert source.source == str(weights) and source.sha256 == ckpt.file_sha256(weights)

    frozen = embeddings.RHemoEncoder(rhemo, trainable=False)
    frozen.train()  # must not switch the BatchNorms to batch statistics (the authors' bug)
    assert not frozen.training and not rhemo.training
    assert not any(p.requires_grad for p in frozen.parameters())
    x = torch.rand(3, 1, 512, 128)
    before = {k: v.clone() for k, v in rhemo.state_dict().items()}
    out = frozen(x)
    assert out.shape == (3, 4, 64, 64) and not out.requires_grad
    assert all(torch.equal(before[k], v) for k, v in rhemo.state_dict().items())  # running stats untouched
    # eval mode: a segment's embedding does not depend on the rest of its batch
    torch.testing.assert_close(frozen(x[:1]), out[:1], rtol=1e-5, atol=1e-6)


def test_embedding_cache_is_created_once_reused_and_matches_on_the_fly(store_and_weights, monkeypatch):
    store_path, weights = store_and_weights
    store = SegmentStore(store_path)
    rhemo, _ = embeddings.load_frontend(weights, CPU)
    norm = compute_normalisation(store.predictors, np.arange(6), "max")
    calls = []
    real_compute = embeddings.compute_embeddings
    monkeypatch.setattr(embeddings, "compute_embeddings", lambda *a, **k: (calls.append(1), real_compute(*a, **k)))

    cached = embeddings.cached_embeddings(store, rhemo, norm, CPU, batch_size=5, progress=False)
    files = list((store_path / "embeddings").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy" and len(calls) == 1
    assert isinstance(cached, np.memmap) and cached.shape == (len(store), 4, 64, 64) and cached.dtype == np.float32
    stamp = files[0].stat().st_mtime_ns
    again = embeddings.cached_embeddings(store, rhemo, norm, CPU, progress=False)
    assert len(calls) == 1 and files[0].stat().st_mtime_ns == stamp  # reused, not recomputed
    np.testing.assert_array_equal(np.asarray(again), np.asarray(cached))

    # equal to encoding the dataset's normalised items one by one
    ds = data.SegmentDataset(store.predictors, np.arange(len(store)), np.zeros(len(store), np.int64),
                             normalisation=norm)
    encoder = embeddings.RHemoEncoder(rhemo)
    for i in (0, 7, len(store) - 1):
        expected = encoder(ds[i]["x"].unsqueeze(0))[0].numpy()
        np.testing.assert_allclose(cached[i], expected, rtol=1e-5, atol=1e-6)

    # the key follows the weights and the normalisation
    key = embeddings.encoder_key(rhemo, norm, store)
    other_norm = Normalisation("max", norm.max * 2, norm.mean, norm.std)
    assert embeddings.encoder_key(rhemo, other_norm, store) != key
    with torch.no_grad():
        rhemo.conv1.weight[0, 0, 0, 0] += 1e-3
    assert embeddings.encoder_key(rhemo, norm, store) != key
    embeddings.cached_embeddings(store, rhemo, norm, CPU, progress=False)
    assert len(calls) == 2 and len(list((store_path / "embeddings").glob("*.npy"))) == 2
    assert not list((store_path / "embeddings").glob("*.tmp"))


def test_a_corrupt_cache_file_is_recomputed(store_and_weights):
    store_path, weights = store_and_weights
    store = SegmentStore(store_path)
    rhemo, _ = embeddings.load_frontend(weights, CPU)
    norm = compute_normalisation(store.predictors, np.arange(6), "max")
    path = store_path / "embeddings" / f"{embeddings.encoder_key(rhemo, norm, store)}.npy"
    path.parent.mkdir()
    np.save(path, np.zeros((2, 4, 64, 64), np.float32))  # wrong row count
    cached = embeddings.cached_embeddings(store, rhemo, norm, CPU, progress=False)
    assert cached.shape[0] == len(store) and np.abs(np.asarray(cached)).sum() > 0


def test_ser_run_with_cache_equals_run_recomputing_per_batch(store_and_weights, tmp_path):
    store, weights = store_and_weights
    common = dict(model_quat=True, use_r2he=True, r2he_model_path=str(weights), num_epochs=2, batch_size=4,
                  learning_rate=1e-3)
    cached, direct = tmp_path / "cached", tmp_path / "direct"
    assert run_script("training_SER.py", ser_config(store, cached, cache_embeddings=True, **common), tmp_path) == 0
    assert run_script("training_SER.py", ser_config(store, direct, cache_embeddings=False, **common), tmp_path) == 0
    assert list((store / "embeddings").glob("*.npy"))  # the cached run wrote its cache next to the store
    m_c, m_d = read_metrics(cached), read_metrics(direct)
    for split in ("train", "val", "test"):
        assert m_c[split]["confusion"] == m_d[split]["confusion"]
        assert m_c[split]["loss"] == pytest.approx(m_d[split]["loss"], rel=1e-4, abs=1e-6)
    # both checkpoints carry the same, untouched encoder
    original = torch.load(weights, weights_only=True)
    for folder in (cached, direct):
        record = ckpt.load_checkpoint(folder / "checkpoint.pt")["rhemo"]
        for key, value in record["encoder_state_dict"].items():
            assert torch.equal(value, original[key]), (folder.name, key)


def test_finetune_r2he_really_trains_the_encoder(store_and_weights, tmp_path):
    store, weights = store_and_weights
    out = tmp_path / "finetune"
    cfg = ser_config(store, out, model_quat=True, use_r2he=True, r2he_model_path=str(weights), num_epochs=2,
                     batch_size=4, learning_rate=1e-3, finetune_r2he=True, save_model_metric="loss")
    assert run_script("training_SER.py", cfg, tmp_path) == 0
    assert not (store / "embeddings").exists()  # no cache when the encoder changes
    original = torch.load(weights, weights_only=True)
    payload = ckpt.load_checkpoint(out / "checkpoint.pt")
    encoder = payload["rhemo"]["encoder_state_dict"]
    changed = [k for k in ("conv1.weight", "conv2.weight", "conv3.weight", "conv1_bn.weight", "conv3.bias")
               if not torch.equal(encoder[k], original[k])]
    assert len(changed) == 5, changed
    # the fine-tuned encoder in the checkpoint rebuilds exactly as predict.py does it
    from models.registry import create_model
    rebuilt = create_model("simple_autoencoder_2_vad", **payload["rhemo"]["model_kwargs"])
    rebuilt.load_encoder_state_dict(encoder)
    assert json.loads((out / "metrics.json").read_text())["status"] == "done"


def test_a_front_end_built_in_memory_can_be_checkpointed():
    """An RHemoEncoder made without a source (a notebook's, the bench's) still gives the checkpoint's entry."""
    rhemo = embeddings.encoder_model(create_model(RHEMO_MODEL, hidden_size=8).encoder_state_dict())
    model = embeddings.SERModel(torch.nn.Identity(), embeddings.RHemoEncoder(rhemo))
    _, record = embeddings.checkpoint_weights(model)
    assert record["source"] == "in-memory" and len(record["sha256"]) == 64
    assert record["encoder_state_dict"].keys() == rhemo.encoder_state_dict().keys()
