"""RH-emo as the front end of the SER networks: loading, frozen or fine-tuned encoding, and the embedding cache.

The quaternion SER networks read RH-emo's (4, 64, 64) latent instead of the spectrogram. Only RH-emo's encoder
(conv1-3 and two BatchNorms, 256 parameters) makes that latent, so the front end is rebuilt as an RH-emo with
tiny heads that carries the loaded encoder weights: the 134 M head parameters of the full model never reach
the device.

Two deliberate changes from the authors' SER script, where RH-emo stayed in train mode (its BatchNorms used
batch statistics and kept updating their running averages during SER training) and ``backprop_r2he`` was a
no-op:

* a frozen front end is in ``eval()`` mode and runs under ``torch.no_grad()``; ``r2he_bn_mode: batch``
  (:class:`RHemoEncoder` ``bn_mode='batch'``) restores the authors' behaviour: the encoder stays in train mode,
  so its BatchNorms normalise each batch with that batch's statistics, in training, validation and test;
* ``finetune_r2he`` really trains the encoder: its parameters join the optimiser and gradients flow into them.

Embedding cache. A frozen encoder maps each normalised segment to a fixed embedding, so the embeddings of
every store row are computed once and kept as a float32 ``.npy`` next to the store::

    <store>/embeddings/<key>.npy        (N, 4, 64, 64), memory-mapped by the datasets

``key`` is a SHA-256 over the encoder's state (names, dtypes, shapes, bytes), the normalisation constants and
the store's identity (its info.json bytes and row count): new weights, another training split's maximum or a
rebuilt store all get a new file, and an identical setting reuses the old one. A read-only store can
keep its cache elsewhere (``embeddings_cache``); when no cache can be written, the embeddings are computed in
memory, with one line saying so.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.autoencoder import LATENT_SHAPE
from models.registry import RHEMO_MODEL
from rhemo.atomic import atomic_path
from rhemo.data.normalisation import Normalisation
from rhemo.train.runtime import barrier, is_main_process
from rhemo.data.store import INFO_FILE

__all__ = ["FRONTEND_HIDDEN", "EMBEDDING_SHAPE", "FrontEndSource", "encoder_model", "load_frontend",
           "RHemoEncoder", "SERModel", "checkpoint_weights", "encoder_key", "compute_embeddings", "cached_embeddings", "rhemo_record"]

#: Head width of the rebuilt front end: the heads are never used, only the encoder.
FRONTEND_HIDDEN = 4
#: an embedding is RH-emo's latent
EMBEDDING_SHAPE = LATENT_SHAPE
_CACHE_VERSION = "rhemo-embeddings/1"


@dataclass(frozen=True)
class FrontEndSource:
    """Where the front end's encoder weights came from: a file path and its SHA-256, or random init."""
    source: str
    sha256: str


def _state_sha256(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def encoder_model(encoder_state_dict: dict[str, torch.Tensor], quat: bool = True) -> nn.Module:
    """A ``simple_autoencoder_2_vad`` with tiny heads carrying ``encoder_state_dict``.

    Only the encoder shapes the embedding, so the heads are built ``FRONTEND_HIDDEN`` wide: the stored width
    (4096) would allocate ~537 MB that is never used. Raises ValueError when the state does not fit.
    """
    from models.registry import create_model

    model = create_model(RHEMO_MODEL, quat=bool(quat), hidden_size=FRONTEND_HIDDEN)
    model.load_encoder_state_dict(encoder_state_dict)
    return model


def load_frontend(path: str | os.PathLike | None, device: torch.device) -> tuple[nn.Module, FrontEndSource]:
    """The RH-emo model whose encoder makes the SER embeddings, on ``device``, in eval mode.

    ``path``: the authors' ``pretrained_RHemo`` (bare state_dict) or a ``checkpoint.pt`` of training_RHemo.py,
    loaded with strict key matching by ``rhemo.train.weights.load_rhemo``; ``None`` gives a randomly
    initialised RH-emo (seeded by the global torch RNG) and a warning, for the ablation.

    Returns (model, source). The model is a ``simple_autoencoder_2_vad`` with tiny heads holding the encoder
    of the file; use ``model.encode(x)``: (N, 1, 512, 128) → (N, 4, 64, 64).
    """
    from models.registry import create_model

    if path is None:
        warnings.warn("r2he_model_path is null: the SER network reads embeddings of a randomly initialised "
                      "RH-emo (an ablation, not the paper's setting)", stacklevel=2)
        model = create_model(RHEMO_MODEL, hidden_size=FRONTEND_HIDDEN)
        source = FrontEndSource("random-init", _state_sha256(model.encoder_state_dict()))
    else:
        from rhemo.train.checkpoint import file_sha256
        from rhemo.train.weights import load_rhemo

        full = load_rhemo(path, map_location="cpu")
        model = encoder_model(full.encoder_state_dict(), quat=full.quat)
        del full
        source = FrontEndSource(str(path), file_sha256(path))
    return model.to(device).eval(), source


class RHemoEncoder(nn.Module):
    """RH-emo's encoder as a module: (N, 1, 512, 128) normalised spectrograms → (N, 4, 64, 64) embeddings.

    ``trainable=False``: parameters frozen, forward under ``no_grad``. ``trainable=True``: the encoder's
    parameters (and only them: decoder and heads are unused) require grad. ``bn_mode='eval'``: a frozen encoder
    is always in eval mode (``.train()`` does not change that), a trainable one follows the usual train/eval
    switch. ``bn_mode='batch'``: always in train mode, so the BatchNorms use each batch's statistics (and update
    their running averages), as the authors' SER script left RH-emo. ``source`` says where the encoder's weights
    came from (recorded in the checkpoint, see :func:`rhemo_record`); None: a model built in memory, named
    ``in-memory`` with the SHA-256 of its encoder weights.
    """

    def __init__(self, rhemo: nn.Module, trainable: bool = False, bn_mode: str = "eval",
                 source: FrontEndSource | None = None) -> None:
        super().__init__()
        if bn_mode not in ("eval", "batch"):
            raise ValueError(f"bn_mode must be 'eval' or 'batch', got {bn_mode!r}")
        self.rhemo = rhemo
        self.source = source or FrontEndSource("in-memory", _state_sha256(rhemo.encoder_state_dict()))
        self.trainable = bool(trainable)
        self.bn_mode = bn_mode
        encoder_keys = set(rhemo.encoder_state_dict())
        for name, param in rhemo.named_parameters():
            param.requires_grad_(self.trainable and name in encoder_keys)
        self.train(False)

    def train(self, mode: bool = True) -> "RHemoEncoder":
        return super().train(self.bn_mode == "batch" or (mode and self.trainable))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trainable:
            return self.rhemo.encode(x)
        with torch.no_grad():
            return self.rhemo.encode(x)


class SERModel(nn.Module):
    """An SER network with an optional RH-emo front end: ``net(frontend(x))`` or ``net(x)``.

    Shapes: x (N, 1, 512, 128) with a front end, else what ``net`` reads ((N, 4, 64, 64) cached embeddings or
    (N, 1, 512, 128) spectrograms) → logits (N, num_classes).
    """

    def __init__(self, net: nn.Module, frontend: RHemoEncoder | None = None) -> None:
        super().__init__()
        self.net = net
        self.frontend = frontend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frontend is not None:
            x = self.frontend(x)
        return self.net(x)


def checkpoint_weights(net: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """What a trained network's ``checkpoint.pt`` stores of it: (state_dict, 'rhemo' entry or None).

    A :class:`SERModel` stores its SER network's weights and, when it runs a front end, that front end's current
    encoder (fine-tuned or with batch-statistics BatchNorms, it changes during training); None means the
    checkpoint keeps the 'rhemo' entry it was built with. Any other network (RH-emo) stores its own weights.
    """
    if isinstance(net, SERModel):
        frontend = net.frontend
        record = None if frontend is None else rhemo_record(frontend.rhemo, frontend.source)
        return net.net.state_dict(), record
    return net.state_dict(), None


def rhemo_record(rhemo: nn.Module, source: FrontEndSource) -> dict[str, Any]:
    """The checkpoint's ``'rhemo'`` entry: enough to rebuild the encoder without the original file.

    ``model_kwargs`` rebuild a (tiny-headed) RH-emo whose ``load_encoder_state_dict`` accepts
    ``encoder_state_dict``; ``source``/``sha256`` identify the weights it started from.
    """
    return {"model_kwargs": {"quat": bool(rhemo.quat), "hidden_size": int(rhemo.hidden_size),
                             "num_classes": int(rhemo.num_classes)},
            "encoder_state_dict": {k: v.detach().cpu().clone() for k, v in rhemo.encoder_state_dict().items()},
            "source": source.source, "sha256": source.sha256}


def encoder_key(rhemo: nn.Module, normalisation: Normalisation, store: Any) -> str:
    """Cache key (hex SHA-256) of the embeddings of ``store`` made by ``rhemo``'s encoder after
    ``normalisation``."""
    digest = hashlib.sha256(_CACHE_VERSION.encode())
    digest.update(_state_sha256(rhemo.encoder_state_dict()).encode())
    digest.update(json.dumps(normalisation.to_dict(), sort_keys=True).encode())
    digest.update((Path(store.path) / INFO_FILE).read_bytes())
    digest.update(repr(tuple(store.predictors.shape)).encode())
    return digest.hexdigest()


def compute_embeddings(predictors: np.ndarray, rhemo: nn.Module, normalisation: Normalisation,
                       device: torch.device, out: np.ndarray, batch_size: int = 64, progress: bool = False) -> None:
    """Fill ``out`` (N, 4, 64, 64) with the eval-mode embeddings of every row of ``predictors`` (N, T, F).

    Rows are read ``batch_size`` at a time, normalised exactly as :class:`rhemo.train.loaders.SegmentDataset`
    does, and encoded under ``no_grad``.
    """
    from tqdm import tqdm

    was_training = rhemo.training
    rhemo.eval()
    n = len(predictors)
    with torch.no_grad():
        for start in tqdm(range(0, n, batch_size), desc="RH-emo embeddings", unit="batch", disable=not progress,
                          dynamic_ncols=True, leave=False):
            x = np.asarray(predictors[start:start + batch_size], dtype=np.float32)
            x = normalisation.apply(x).astype(np.float32, copy=False)
            batch = torch.from_numpy(x).unsqueeze(1).to(device)
            out[start:start + len(x)] = rhemo.encode(batch).float().cpu().numpy()
    rhemo.train(was_training)


def cached_embeddings(store: Any, rhemo: nn.Module, normalisation: Normalisation, device: torch.device,
                      batch_size: int = 64, progress: bool = True,
                      cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The (N, 4, 64, 64) embeddings of every row of ``store``: read from the cache, or computed and cached.

    ``cache_dir`` (config ``embeddings_cache``), when given, holds the cache files instead of
    ``<store>/embeddings`` (for read-only stores; keys name the store, so one folder serves many). When the
    cache cannot be written (read-only folder, full disk) one line says so and the embeddings are computed in
    memory instead (an array, not a memmap). Under torchrun only rank 0 computes; the others wait at a
    barrier and then open the same file (the run folder and the store must be on a filesystem all processes
    see), or compute in memory too when rank 0 could not write it. The file is written as
    ``<key>.npy.<random>.tmp`` and renamed (:func:`rhemo.atomic.atomic_path`), so readers never see a partial cache.
    """
    folder = Path(cache_dir) if cache_dir is not None else Path(store.path) / "embeddings"
    path = folder / f"{encoder_key(rhemo, normalisation, store)}.npy"
    expected = (len(store.predictors),) + EMBEDDING_SHAPE
    if is_main_process():
        try:
            if path.exists() and not _valid_cache(path, expected):
                print(f"embedding cache {path} is unreadable or has the wrong shape; recomputing it", flush=True)
                path.unlink()
            if not path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp:
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=expected)
                    compute_embeddings(store.predictors, rhemo, normalisation, device, out, batch_size, progress)
                    out.flush()
                    del out
        except OSError as exc:
            size_mb = math.prod(expected) * 4 / 2**20
            print(f"embedding cache: cannot write {exc.filename or folder} ({exc.strerror or exc}); computing the "
                  f"RH-emo embeddings in memory instead ({size_mb:.0f} MB; set embeddings_cache to a writable "
                  f"folder to keep them)", flush=True)
    barrier()
    if not _valid_cache(path, expected):
        out = np.empty(expected, dtype=np.float32)
        compute_embeddings(store.predictors, rhemo, normalisation, device, out, batch_size, progress)
        return out
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _valid_cache(path: Path, expected: tuple[int, ...]) -> bool:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return False
    return array.dtype == np.float32 and tuple(array.shape) == expected
