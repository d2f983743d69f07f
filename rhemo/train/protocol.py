"""The authors' training-protocol rules that differ from ours, each behind a config key (README "Differences").

* :func:`authors_should_stop`: their early-stopping window rule (``early_stopping_rule: authors``);
* :func:`chunk_bounds` and :func:`batch_mean_accuracy`: their per-batch averaging over batches of
  ``batch_size`` in store order (``loss_averaging: batch`` and the ``wa_batchmean`` metric);
* :func:`describe_rules`: one line per run saying which rules it uses (the launcher's dry run).

Example (patience 3: checked from 0-based epoch 4 on, window = the last 2 values):
    >>> authors_should_stop([5.0, 4.0, 3.0, 2.0, 2.5], patience=3, mode="min")
    True
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

__all__ = ["authors_should_stop", "chunk_bounds", "batch_mean_accuracy", "describe_rules"]


def authors_should_stop(values: Sequence[float], patience: int, mode: str = "min") -> bool:
    """The authors' rule after the epoch whose validation value is ``values[-1]`` (one value per epoch so far).

    From 0-based epoch index ``patience + 1`` on, take ``values[-(patience - 1):]`` (Python slicing, so
    patience 1 takes the whole history) and stop when its first element is the best: ``argmin == 0`` for a
    loss (``mode='min'``), ``argmax == 0`` for ``mode='max'``; the first of equal values counts, so a tie with
    the oldest value stops. A non-finite value counts as the worst.
    """
    epoch = len(values) - 1
    if patience < 1 or epoch < patience + 1:
        return False
    window = list(values[-(patience - 1):])
    sign = 1.0 if mode == "min" else -1.0
    scores = [sign * v if math.isfinite(v) else math.inf for v in window]
    return scores.index(min(scores)) == 0


def chunk_bounds(start: int, count: int, chunk: int) -> list[tuple[int, int]]:
    """Cut the rows ``start .. start+count-1`` of a pass at multiples of ``chunk``; (begin, end) offsets
    relative to ``start``.

    >>> chunk_bounds(3, 6, 4)  # rows 3 | 4 5 6 7 | 8
    [(0, 1), (1, 5), (5, 6)]
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    cuts = [0] + [k * chunk - start for k in range(start // chunk + 1, (start + count - 1) // chunk + 1)] + [count]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def batch_mean_accuracy(logits: torch.Tensor, target: torch.Tensor, batch_size: int) -> float:
    """Mean over consecutive batches of ``batch_size`` rows (the last may be partial) of each batch's accuracy.

    ``logits`` (N, C), ``target`` (N,) in store order; rows with target < 0 (no label) are left out, and a
    batch without labelled rows is not counted. Equals plain accuracy when every batch is full.
    """
    hits = (logits.argmax(dim=1) == target).double()
    labelled = (target >= 0).double()
    means = []
    for begin in range(0, int(target.shape[0]), batch_size):
        n = float(labelled[begin:begin + batch_size].sum())
        if n:
            means.append(float((hits[begin:begin + batch_size] * labelled[begin:begin + batch_size]).sum()) / n)
    return sum(means) / len(means) if means else math.nan


def describe_rules(cfg: dict[str, Any], kind: str) -> str:
    """Which protocol rules a validated run config uses, in one line (kind: 'rhemo' or 'ser')."""
    stopping = (f"{cfg['early_stopping_rule']} (patience {cfg['patience']})" if cfg["early_stopping"]
                else "off")
    parts = [f"early stopping {stopping}", f"loss averaging {cfg['loss_averaging']}",
             f"normalisation {cfg['normalisation']}"]
    if kind == "rhemo":
        parts.append("reconstruction " + ("channel sum / 4" if cfg["loss_recon_div4"] else "channel mean"))
    elif cfg["use_r2he"]:
        cache = cfg["cache_embeddings"] and not cfg["finetune_r2he"]
        if cfg["r2he_bn_mode"] == "batch":
            cache_text = "embeddings per batch, cache not used"
        else:
            cache_text = "embeddings cached" if cache else "embeddings per batch"
        parts.append(f"RH-emo BN {cfg['r2he_bn_mode']} ({cache_text})")
    return ", ".join(parts)
