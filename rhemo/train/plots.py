"""PNG figures of a run folder (matplotlib, Agg backend, no display).

* ``curves.png``: the per-epoch history that also fills ``log.csv``, against integer epochs, the best epoch
  marked. SER (:func:`plot_ser_curves`): loss in one panel; WA, UA and macro F1 in another (validation solid,
  training dashed). RH-emo (:func:`plot_rhemo_curves`): one panel per loss term, its weight in the title, and
  the emotion accuracies when the heads were trained (beta > 0). A learning-rate panel is added when the
  rate changes.
* ``confusion.png`` / ``confusion_utterance.png`` (:func:`plot_confusion`): rows are true classes, normalised
  to sum to 1 (the colour), each cell annotated with its count.
* ``diagnostics.png`` (:func:`plot_rhemo_diagnostics`, RH-emo): for a few fixed validation segments the
  input, the reconstruction (mean of the decoder channels) and each decoder channel, the 4 embedding channels
  (real, i, j, k), and 2-D PCA projections of the embeddings (whole and per channel) coloured by emotion.

Spectrograms are drawn with time left to right and frequency bottom to top (the store keeps time reversed in
its rows, see :mod:`rhemo.data.features`), each on its own power-law colour scale (its range in the title) so
that quiet bins stay visible.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rhemo.atomic import atomic_path

__all__ = ["plot_ser_curves", "plot_rhemo_curves", "plot_confusion", "plot_rhemo_diagnostics"]

COMPONENTS = ("real", "i", "j", "k")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 110) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:  # the temp name ends in .tmp: the format comes from the target's suffix
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip("."))


def _column(history: Sequence[dict], key: str) -> np.ndarray:
    return np.array([row.get(key, np.nan) for row in history], dtype=np.float64)


def _has(history: Sequence[dict], key: str) -> bool:
    return bool(np.isfinite(_column(history, key)).any())


def _epoch_axis(ax, epochs: Sequence[int], best_epoch: int | None) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle=":", linewidth=1, label=f"best epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _panel(ax, history: Sequence[dict], key: str, title: str, splits=("train", "val")) -> None:
    epochs = [row["epoch"] for row in history]
    for split, style in zip(splits, ("--", "-")):
        if _has(history, f"{split}_{key}"):
            ax.plot(epochs, _column(history, f"{split}_{key}"), style, marker=".", label=split)
    ax.set_title(title, fontsize=9)


def _figure(history: Sequence[dict], panels: list[tuple[str, Any]], path, title: str, best_epoch: int | None,
            ncols: int) -> None:
    """Lay out ``panels`` ((title, draw(ax)) pairs) plus a learning-rate panel when the rate changes."""
    if not history:
        raise ValueError("plot_curves: empty history")
    lr = _column(history, "lr")
    if np.isfinite(lr).sum() > 1 and np.nanmax(lr) != np.nanmin(lr):
        panels = panels + [("learning rate", lambda ax: (ax.plot([r["epoch"] for r in history], lr, marker="."),
                                                         ax.set_yscale("log"), ax.set_title("learning rate")))]
    plt = _pyplot()
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, (_, draw) in zip(axes.flat, panels):
        draw(ax)
        _epoch_axis(ax, epochs, best_epoch)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _save(fig, Path(path))
    plt.close(fig)


def plot_ser_curves(history: Sequence[dict], path: str | os.PathLike, title: str,
                    best_epoch: int | None = None) -> None:
    """SER learning curves: cross-entropy loss (train, val); WA, UA and macro F1 (val solid, train dashed).

    ``history`` rows are the flat per-epoch dicts of :class:`rhemo.train.loop.FitState` (``train_wa``, ...).
    """
    def scores(ax) -> None:
        epochs = [row["epoch"] for row in history]
        for key, color in (("wa", "C0"), ("ua", "C1"), ("f1", "C2")):
            for split, style in (("train", "--"), ("val", "-")):
                if _has(history, f"{split}_{key}"):
                    ax.plot(epochs, _column(history, f"{split}_{key}"), style, color=color, marker=".",
                            label=f"{split} {key.upper()}", alpha=0.6 if split == "train" else 1.0)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("WA, UA, macro F1", fontsize=9)

    _figure(history, [("loss", lambda ax: _panel(ax, history, "loss", "cross-entropy loss")), ("scores", scores)],
            path, title, best_epoch, ncols=2)


def plot_rhemo_curves(history: Sequence[dict], path: str | os.PathLike, title: str, *, alpha: float, beta: float,
                      beta_class: float, beta_vad: float, best_epoch: int | None = None) -> None:
    """RH-emo learning curves, one panel per loss term with its weight in the total.

    With beta = 0 (stage 1) the total equals the reconstruction term and the heads are untrained: one
    reconstruction panel only. Otherwise: total, reconstruction, discrete CE, valence, arousal, dominance BCEs
    (raw values; weights beta·beta_class and beta·beta_vad) and the emotion accuracies.
    """
    recon_title = f"reconstruction BCE × α={alpha:g}" + (" (= total, β = 0)" if beta == 0 else "")
    panels = [("recon", lambda ax: _panel(ax, history, "recon", recon_title))]
    if beta > 0:
        panels.insert(0, ("total", lambda ax: _panel(ax, history, "total", "total loss")))
        panels.append(("cls", lambda ax: _panel(ax, history, "cls",
                                                 f"discrete CE (weight β·β_class = {beta * beta_class:g})")))
        for term in ("valence", "arousal", "dominance"):
            panels.append((term, lambda ax, t=term: _panel(ax, history, t,
                                                            f"{t} BCE (weight β·β_vad = {beta * beta_vad:g})")))
        accuracies = [k for k in ("acc", "acc_valence", "acc_arousal", "acc_dominance") if _has(history, f"val_{k}")]
        if accuracies:
            def draw(ax) -> None:
                epochs = [row["epoch"] for row in history]
                for key in accuracies:
                    ax.plot(epochs, _column(history, f"val_{key}"), marker=".", label=f"val {key}")
                ax.set_ylim(-0.02, 1.02)
                ax.set_title("emotion accuracies (validation)", fontsize=9)
            panels.append(("accuracy", draw))
    _figure(history, panels, path, title, best_epoch, ncols=4)


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
    size = max(4.0, 0.7 * k + 2.5)
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
        ax.set_title(title, fontsize=9)
    _save(fig, Path(path))
    plt.close(fig)


def _image(ax, array: np.ndarray, title: str, gamma: float = 0.4) -> None:
    """Draw a (time rows reversed, frequency columns) array with time → right and frequency ↑, on its own
    power-law colour scale from its minimum to its maximum (given in the title)."""
    from matplotlib.colors import PowerNorm

    shown = np.asarray(array, dtype=np.float64)[::-1].T
    low, high = float(shown.min()), float(shown.max())
    norm = PowerNorm(gamma=gamma, vmin=low, vmax=high if high > low else low + 1e-12)
    ax.imshow(shown, origin="lower", aspect="auto", cmap="magma", norm=norm)
    ax.set_title(f"{title}\n[{low:.3g}, {high:.3g}]", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def _scatter(ax, points: np.ndarray, labels: Sequence[str], title: str) -> None:
    for index, name in enumerate(dict.fromkeys(labels)):
        mask = np.array([label == name for label in labels])
        colour = "lightgrey" if name == "unlabelled" else f"C{index}"
        ax.scatter(points[mask, 0], points[mask, 1], s=8, color=colour, label=name, alpha=0.8)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_rhemo_diagnostics(diagnostics: dict[str, Any], path: str | os.PathLike, title: str,
                           dpi: int = 110) -> None:
    """The RH-emo diagnostics figure from :func:`rhemo.train.diagnostics.rhemo_diagnostics` output.

    Per example segment, one row: input, reconstruction (mean of the K decoder channels), decoder channels;
    and one row: the 4 embedding channels (real, i, j, k). Each image has its own colour scale, its range in
    its title. Last row: PCA of the
    whole embedding and of each channel, points coloured by emotion (grey: no discrete label).
    """
    inputs, recon, emb = diagnostics["inputs"], diagnostics["recon"], diagnostics["embeddings"]
    n_examples, n_decoder = len(inputs), recon.shape[1]
    ncols = max(2 + n_decoder, 1 + emb.shape[1])
    plt = _pyplot()
    fig = plt.figure(figsize=(2.0 * ncols, 1.5 * (2 * n_examples) + 2.4))
    grid = fig.add_gridspec(2 * n_examples + 1, ncols, height_ratios=[1] * (2 * n_examples) + [1.9], hspace=0.7,
                            top=1 - 0.9 / fig.get_figheight(), bottom=0.02)
    for e in range(n_examples):
        panels = [(inputs[e], f"{diagnostics['names'][e]}: input"),
                  (recon[e].mean(axis=0), f"reconstruction (mean of {n_decoder})")]
        panels += [(recon[e, c], f"decoder channel {c}") for c in range(n_decoder)]
        for col, (array, name) in enumerate(panels):
            _image(fig.add_subplot(grid[2 * e, col]), array, name)
        for c in range(emb.shape[1]):
            _image(fig.add_subplot(grid[2 * e + 1, c]), emb[e, c], f"embedding {COMPONENTS[c]}", gamma=1.0)
    labels = diagnostics["labels"]
    projections = [("all 4 channels", diagnostics["pca"])] + [
        (COMPONENTS[c], diagnostics["pca_channels"][c]) for c in range(len(diagnostics["pca_channels"]))]
    for col, (name, (points, explained)) in enumerate(projections[:ncols]):
        ax = fig.add_subplot(grid[2 * n_examples, col])
        _scatter(ax, points, labels, f"PCA, {name} ({100 * explained:.0f}% var.)")
        if col == 0:
            ax.legend(fontsize=6, loc="best", markerscale=1.5)
    fig.suptitle(title, fontsize=10)
    _save(fig, Path(path), dpi=dpi)
    plt.close(fig)
