"""RH-emo diagnostics: what the autoencoder does with a few fixed validation segments (for ``diagnostics.png``).

The segments are chosen by position (evenly spaced over the validation split), so every run of the same
config shows the same ones. Whether the four quaternion components learned different things shows in the
embedding images and in the per-channel PCA projections.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["pca_2d", "rhemo_diagnostics"]


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, float]:
    """Project (M, D) rows on their first two principal components: ((M, 2) points, explained variance share).

    Fewer than two components (M < 2 or constant rows) give zero columns.
    """
    centred = np.asarray(features, dtype=np.float64)
    centred = centred - centred.mean(axis=0, keepdims=True)
    points = np.zeros((len(centred), 2))
    if len(centred) < 2:
        return points, 0.0
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    k = min(2, len(s))
    points[:, :k] = u[:, :k] * s[:k]
    total = float((s ** 2).sum())
    return points, float((s[:k] ** 2).sum() / total) if total > 0 else 0.0


def _evenly_spaced(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


@torch.no_grad()
def _encode(net: nn.Module, dataset, indices: np.ndarray, device: torch.device, batch_size: int = 32
            ) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (n, 1, T, F), embeddings (n, 4, 64, 64)) of dataset rows ``indices``."""
    inputs, embeddings = [], []
    for start in range(0, len(indices), batch_size):
        x = torch.stack([dataset[int(i)]["x"] for i in indices[start:start + batch_size]]).to(device)
        inputs.append(x.cpu().numpy())
        embeddings.append(net.encode(x).float().cpu().numpy())
    return np.concatenate(inputs), np.concatenate(embeddings)


def rhemo_diagnostics(net: nn.Module, dataset, label_names: Sequence[str], device: torch.device,
                      n_examples: int = 3, n_points: int = 256) -> dict[str, Any]:
    """Forward ``n_examples`` fixed segments of ``dataset`` (a :class:`rhemo.train.loaders.SegmentDataset`)
    through RH-emo (``net``, unwrapped, its ``encode``/``decode``) and embed up to ``n_points`` for the PCA.

    Returns numpy arrays: ``inputs`` (E, T, F), ``recon`` (E, K, T, F), ``embeddings`` (E, 4, 64, 64),
    ``names`` (E,), ``labels`` (M,) emotion names ('unlabelled' for class −1), ``pca`` ((M, 2), explained
    share) of the whole flattened embedding and ``pca_channels``: the same per channel (real, i, j, k).
    """
    if len(dataset) == 0:
        raise ValueError("rhemo_diagnostics: the dataset is empty")
    was_training = net.training
    net.eval()
    try:
        examples = _evenly_spaced(len(dataset), n_examples)
        inputs, example_emb = _encode(net, dataset, examples, device)
        with torch.no_grad():
            recon = net.decode(torch.from_numpy(example_emb).to(device)).float().cpu().numpy()
        points = _evenly_spaced(len(dataset), n_points)
        _, emb = _encode(net, dataset, points, device)
    finally:
        net.train(was_training)

    def name(index: int) -> str:
        target = int(dataset.targets[index])
        return label_names[target] if 0 <= target < len(label_names) else "unlabelled"

    return {"inputs": inputs[:, 0], "recon": recon, "embeddings": example_emb,
            "names": [f"val segment {i} ({name(i)})" for i in examples],
            "labels": [name(i) for i in points],
            "pca": pca_2d(emb.reshape(len(emb), -1)),
            "pca_channels": [pca_2d(emb[:, c].reshape(len(emb), -1)) for c in range(emb.shape[1])]}
