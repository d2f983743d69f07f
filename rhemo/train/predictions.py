"""Per-utterance predictions of a SER run: ``predictions_test.csv`` and ``predictions_val.csv``.

One row per utterance, in the order of its first segment in the split::

    utterance_id, speaker, true_label, predicted_label, prob_<class> (one column per class), n_segments

The probabilities are the softmax of the utterance's mean segment logits, the pooling of the utterance-level
metrics (:func:`rhemo.train.metrics.utterance_logits`), so ``predicted_label`` is their arg-max and the
share of rows with ``predicted_label == true_label`` is the split's ``utt_wa``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from rhemo.atomic import atomic_path
from rhemo.train.metrics import utterance_logits

__all__ = ["predictions_frame", "write_predictions"]


def predictions_frame(logits: np.ndarray, targets: np.ndarray, utterance_ids: Sequence[str],
                      speakers: Sequence[str], label_names: Sequence[str]):
    """The predictions table (pandas DataFrame) of (N, C) segment logits with (N,) class targets and, per
    segment row, its utterance id and speaker."""
    import pandas as pd

    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if not len(logits) == len(targets) == len(utterance_ids) == len(speakers):
        raise ValueError(f"predictions: {len(logits)} logit rows, {len(targets)} targets, {len(utterance_ids)} "
                         f"utterance ids and {len(speakers)} speakers must describe the same segments")
    ids, mean_logits, utt_target, counts = utterance_logits(logits, targets, list(utterance_ids))
    speaker_of = dict(zip(utterance_ids, speakers))
    shifted = np.exp(mean_logits - mean_logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    names = np.asarray(label_names, dtype=object)
    frame = pd.DataFrame({"utterance_id": ids, "speaker": [speaker_of[u] for u in ids],
                          "true_label": names[utt_target], "predicted_label": names[mean_logits.argmax(axis=1)]})
    for k, name in enumerate(label_names):
        frame[f"prob_{name}"] = probabilities[:, k]
    frame["n_segments"] = counts
    return frame


def write_predictions(path: str | os.PathLike, logits: np.ndarray, targets: np.ndarray,
                      utterance_ids: Sequence[str], speakers: Sequence[str], label_names: Sequence[str]) -> Path:
    """Write :func:`predictions_frame` as CSV at ``path`` atomically; returns the path."""
    path = Path(path)
    frame = predictions_frame(logits, targets, utterance_ids, speakers, label_names)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path
