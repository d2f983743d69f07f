"""PNG figures of a run folder: learning curves and confusion matrices (matplotlib, Agg backend, no display).

* ``curves.png``: training and validation loss per epoch, and the monitored validation metric (its best epoch
  marked) — from the per-epoch history that also fills ``log.csv``;
* ``confusion.png`` / ``confusion_utterance.png``: rows are true classes, normalised to sum to 1 (the colour),
  each cell annotated with its count.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["plot_curves", "plot_confusion"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)  # keep the suffix: matplotlib picks the format by it
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def plot_curves(history: Sequence[dict], loss_key: str, metric_key: str, path: str | os.PathLike,
                best_epoch: int | None = None, title: str = "") -> None:
    """Two panels against ``epoch``: train/val ``<loss_key>``, and train/val ``<metric_key>`` (e.g. wa).

    ``history`` rows are the flat per-epoch dicts of :class:`rhemo.engine.loop.FitState`.
    """
    if not history:
        raise ValueError("plot_curves: empty history")
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]

    def column(key: str) -> list[float]:
        return [row.get(key, np.nan) for row in history]

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for split in ("train", "val"):
        axes[0].plot(epochs, column(f"{split}_{loss_key}"), marker=".", label=split)
    axes[0].set_title(f"loss ({loss_key})")
    for split, color in (("train", "C0"), ("val", "C1")):
        if f"{split}_{metric_key}" in history[0]:
            axes[1].plot(epochs, column(f"{split}_{metric_key}"), marker=".", color=color, label=split)
    axes[1].set_title(metric_key)
    if best_epoch:
        for ax in axes:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="best epoch")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    _save(fig, Path(path))
    plt.close(fig)


def plot_confusion(confusion: Sequence[Sequence[int]], label_names: Sequence[str], path: str | os.PathLike,
                   title: str = "") -> None:
    """Row-normalised confusion matrix (true rows × predicted columns) with the counts written in the cells."""
    counts = np.asarray(confusion, dtype=np.int64)
    k = len(label_names)
    if counts.shape != (k, k):
        raise ValueError(f"plot_confusion: confusion must be {k}x{k} for labels {list(label_names)}, got shape "
                         f"{counts.shape}")
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    plt = _pyplot()
    size = max(3.5, 0.7 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{rates[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), labels=list(label_names), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(label_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    _save(fig, Path(path))
    plt.close(fig)
