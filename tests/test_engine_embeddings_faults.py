"""Quaternion SER on a read-only store (issue 11, item 11): the embedding cache goes to embeddings_cache, or
the embeddings are computed in memory, and one line says so.

Tests run as root, which chmod cannot stop, so a read-only filesystem is simulated: every attempt to create
a folder or file under the store raises OSError(EROFS); paths elsewhere behave normally."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from rhemo.data.store import SegmentStore
from rhemo.train import embeddings

from engine_helpers import FOUR, make_rhemo_weights, make_store, read_metrics, run_script, ser_config
from rhemo.data.normalisation import compute_normalisation

CPU = torch.device("cpu")


@pytest.fixture()
def read_only_store(tmp_path, monkeypatch):
    store = make_store(tmp_path / "store", FOUR * 3)
    weights = make_rhemo_weights(tmp_path / "rhemo.pt", store, seed=4)
    real_mkdir, real_open_memmap = Path.mkdir, np.lib.format.open_memmap

    def inside(path) -> bool:
        return Path(os.path.abspath(path)).is_relative_to(store)

    def mkdir(self, *args, **kwargs):
        if inside(self):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    def open_memmap(filename, mode="r+", *args, **kwargs):
        if inside(filename) and mode != "r":
            raise OSError(errno.EROFS, "Read-only file system", str(filename))
        return real_open_memmap(filename, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(np.lib.format, "open_memmap", open_memmap)
    return store, weights


def reference(store: SegmentStore, rhemo, norm) -> np.ndarray:
    out = np.zeros((len(store),) + embeddings.EMBEDDING_SHAPE, np.float32)
    embeddings.compute_embeddings(store.predictors, rhemo, norm, CPU, out)
    return out


def test_read_only_store_computes_in_memory_and_says_so(read_only_store, capsys):
    store_path, weights = read_only_store
    store = SegmentStore(store_path)
    rhemo, _ = embeddings.load_frontend(weights, CPU)
    norm = compute_normalisation(store.predictors, np.arange(6), "max")
    got = embeddings.cached_embeddings(store, rhemo, norm, CPU, progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and f"cannot write {store_path / 'embeddings'} (Read-only file system)" in lines[0]
    assert "in memory" in lines[0] and "embeddings_cache" in lines[0]
    assert not isinstance(got, np.memmap) and not (store_path / "embeddings").exists()
    np.testing.assert_array_equal(got, reference(store, rhemo, norm))


def test_read_only_store_with_an_embeddings_cache_folder(read_only_store, tmp_path, capsys):
    store_path, weights = read_only_store
    store = SegmentStore(store_path)
    rhemo, _ = embeddings.load_frontend(weights, CPU)
    norm = compute_normalisation(store.predictors, np.arange(6), "max")
    got = embeddings.cached_embeddings(store, rhemo, norm, CPU, progress=False, cache_dir=tmp_path / "cache")
    assert capsys.readouterr().out == ""
    assert isinstance(got, np.memmap) and [p.name for p in (tmp_path / "cache").iterdir()] == \
        [f"{embeddings.encoder_key(rhemo, norm, store)}.npy"]
    np.testing.assert_array_equal(np.asarray(got), reference(store, rhemo, norm))


def test_quaternion_ser_trains_on_a_read_only_store(read_only_store, tmp_path, capsys):
    store, weights = read_only_store
    common = dict(model_quat=True, use_r2he=True, r2he_model_path=str(weights), num_epochs=1, batch_size=4,
                  model_hidden_size=8)
    in_memory, elsewhere = tmp_path / "in_memory", tmp_path / "elsewhere"
    assert run_script("training_SER.py", ser_config(store, in_memory, **common), tmp_path) == 0
    assert "computing the RH-emo embeddings in memory" in capsys.readouterr().out
    assert run_script("training_SER.py", ser_config(store, elsewhere, embeddings_cache=str(tmp_path / "c"),
                                                    **common), tmp_path) == 0
    assert len(list((tmp_path / "c").glob("*.npy"))) == 1
    assert read_metrics(in_memory)["test"]["confusion"] == read_metrics(elsewhere)["test"]["confusion"]
