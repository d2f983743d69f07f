"""Evaluation metrics: SER classification reports (segment and utterance level), RH-emo accuracies, fold summaries.

Definitions (all fixed here, in one place):

* ``wa`` (weighted accuracy): plain accuracy, correct rows / rows.
* ``ua`` (unweighted accuracy): mean per-class recall over the classes that occur in the targets (a class
  with no true row has no recall and is left out, rather than counted as 0 or 1).
* ``f1``: macro F1 over the classes that occur in the targets **or** the predictions (the default of
  scikit-learn's ``f1_score(average='macro')``). Per class, F1 = 2·TP / (2·TP + FP + FN); a class that is
  predicted but never true therefore counts as 0, which penalises spurious predictions.
* All of these are computed by ``sklearn.metrics`` (accuracy_score, recall_score, f1_score, confusion_matrix,
  precision_recall_fscore_support); this module fixes which classes each one averages over.
* ``confusion``: rows are true classes, columns predicted classes, ``num_classes × num_classes`` ints.
* Utterance level (``utt_*``): the **logits** of an utterance's segments are averaged, then arg-maxed. Logits,
  not softmax probabilities, because averaging logits is the geometric mean of the class probabilities up to
  normalisation (a product-of-experts vote) and needs no extra softmax; the two can differ only on close calls.
* ``mean_std`` uses the **population** standard deviation (ddof = 0): folds are the whole set of folds
  reported, not a sample, and one fold gives std 0 instead of nan.
"""
from __future__ import annotations

import numbers
from typing import Any, Hashable, Sequence

import numpy as np
import torch

from rhemo.data.splits import group_codes

__all__ = ["classification_report", "utterance_logits", "binary_accuracy", "rhemo_metrics", "mean_std"]


def _to_numpy(x: Any, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as err:  # ragged lists and the like
        raise ValueError(f"{what}: cannot be read as an array ({err})") from err


def _report_from_predictions(pred: np.ndarray, targets: np.ndarray, num_classes: int,
                             label_names: Sequence[str] | None = None) -> dict:
    """WA, UA, macro F1, confusion and the per-class report of (N,) predictions against (N,) targets."""
    from sklearn import metrics as skm

    every_class = np.arange(num_classes)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        targets, pred, labels=every_class, zero_division=0)
    names = list(label_names) if label_names is not None else [str(k) for k in every_class]
    per_class = {name: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                        "support": int(support[k])} for k, name in enumerate(names)}
    return {"wa": float(skm.accuracy_score(targets, pred)),
            "ua": float(skm.recall_score(targets, pred, labels=np.unique(targets), average="macro",
                                         zero_division=0)),
            "f1": float(skm.f1_score(targets, pred, average="macro", zero_division=0)),
            "confusion": skm.confusion_matrix(targets, pred, labels=every_class).astype(int).tolist(),
            "per_class": per_class}


def utterance_logits(logits: np.ndarray, targets: np.ndarray, groups: Sequence[Hashable]
                     ) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """Pool (N, C) segment logits into utterances by ``groups`` (one utterance id per row).

    Returns (utterance ids in first-appearance order, (U, C) mean logits, (U,) targets, (U,) segment counts).
    All segments of an utterance must share one target (ValueError otherwise).
    """
    groups = groups.tolist() if isinstance(groups, (np.ndarray, torch.Tensor)) else list(groups)
    if len(groups) != len(targets):
        raise ValueError(f"classification_report: groups has {len(groups)} entries for {len(targets)} rows")
    utterances, codes = group_codes(groups)
    n_utt = len(utterances)
    _, first_row = np.unique(codes, return_index=True)
    utt_target = targets[first_row]
    mismatch = np.flatnonzero(utt_target[codes] != targets)
    if mismatch.size:
        row = mismatch[0]
        raise ValueError(f"classification_report: utterance {groups[row]!r} has segments with different targets "
                         f"({utt_target[codes[row]]} and {targets[row]} at row {row})")
    sums = np.zeros((n_utt, logits.shape[1]), dtype=np.float64)
    np.add.at(sums, codes, logits)
    counts = np.bincount(codes, minlength=n_utt)
    return utterances, sums / counts[:, None], utt_target, counts


def classification_report(logits: Any, targets: Any, num_classes: int, groups: Sequence[Hashable] | None = None,
                          label_names: Sequence[str] | None = None) -> dict:
    """WA, UA, macro F1, the confusion matrix and a per-class report of (N, C) logits against (N,) class indices.

    ``per_class`` maps each class (its ``label_names`` entry, else its index as a string) to precision, recall,
    F1 and support (true rows). ``groups`` (optional, one utterance id per row, any hashable) adds ``utt_wa``,
    ``utt_ua``, ``utt_f1``, ``utt_confusion``, ``utt_per_class`` computed on the per-utterance mean of the
    segment logits (:func:`utterance_logits`), and ``utt_count``. Accepts torch tensors or numpy arrays.

    >>> r = classification_report([[2., 0.], [0., 1.], [3., 0.]], [0, 1, 1], 2, groups=['u1', 'u2', 'u2'])
    >>> r['wa'], r['confusion'], r['utt_wa']
    (0.6666666666666666, [[1, 0], [1, 1]], 0.5)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"classification_report: num_classes must be a positive int, got {num_classes!r}")
    logits = _to_numpy(logits, "logits").astype(np.float64, copy=False)
    targets = _to_numpy(targets, "targets")
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"classification_report: logits must be (N, num_classes={num_classes}), got shape "
                         f"{logits.shape}")
    if targets.shape != (logits.shape[0],):
        raise ValueError(f"classification_report: targets must be (N,) = ({logits.shape[0]},), got shape "
                         f"{targets.shape}")
    if len(targets) == 0:
        raise ValueError("classification_report: no rows to evaluate (empty logits/targets)")
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"classification_report: targets must be integer class indices, got dtype {targets.dtype}")
    if targets.min() < 0 or targets.max() >= num_classes:
        raise ValueError(f"classification_report: targets must be in 0..{num_classes - 1}, found values in "
                         f"[{targets.min()}, {targets.max()}]")
    if not np.isfinite(logits).all():
        raise ValueError("classification_report: logits contain nan or inf")
    targets = targets.astype(np.int64)
    report = _report_from_predictions(logits.argmax(axis=1), targets, num_classes, label_names)
    if groups is None:
        return report

    utterances, mean_logits, utt_target, _ = utterance_logits(logits, targets, groups)
    utt = _report_from_predictions(mean_logits.argmax(axis=1), utt_target, num_classes, label_names)
    report.update({f"utt_{key}": value for key, value in utt.items()})
    report["utt_count"] = len(utterances)
    return report


def binary_accuracy(prob: Any, target: Any) -> float:
    """Accuracy of probabilities thresholded at 0.5 against 0/1 targets; rows whose target is nan are ignored.

    A probability of exactly 0.5 counts as 0 (as ``torch.round`` does). Returns nan when no row has a target.
    Shapes: any with the same number of elements, e.g. (N,) or (N, 1).

    >>> binary_accuracy([0.2, 0.5, 0.9, 0.7], [0., 0., 1., float('nan')])
    1.0
    """
    prob = _to_numpy(prob, "prob").astype(np.float64).reshape(-1)
    target = _to_numpy(target, "target").astype(np.float64).reshape(-1)
    if prob.shape != target.shape:
        raise ValueError(f"binary_accuracy: prob has {prob.size} values but target has {target.size}")
    known = ~np.isnan(target)
    if not known.any():
        return float("nan")
    return float(np.mean((prob[known] > 0.5) == (target[known] > 0.5)))


def rhemo_metrics(logits: Any, vad_pred: Any, class_target: Any, vad_target: Any) -> dict[str, float]:
    """RH-emo accuracies: ``acc`` of the discrete head (rows with class −1 ignored) and ``acc_valence``,
    ``acc_arousal``, ``acc_dominance`` of the (N, 3) sigmoid outputs (nan targets ignored). A metric with no
    labelled row is nan.

    >>> rhemo_metrics([[1., 0.], [0., 1.]], [[.9, .1, .6]] * 2, [1, -1], [[1., 0., float('nan')]] * 2)
    {'acc': 0.0, 'acc_valence': 1.0, 'acc_arousal': 1.0, 'acc_dominance': nan}
    """
    logits = _to_numpy(logits, "logits")
    class_target = _to_numpy(class_target, "class_target").reshape(-1)
    vad_pred = _to_numpy(vad_pred, "vad_pred")
    vad_target = _to_numpy(vad_target, "vad_target")
    n = class_target.shape[0]
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(f"rhemo_metrics: logits must be (N, C) with N = {n}, got {logits.shape}")
    if vad_pred.shape != (n, 3) or vad_target.shape != (n, 3):
        raise ValueError(f"rhemo_metrics: vad_pred and vad_target must be (N, 3) = ({n}, 3), got {vad_pred.shape} "
                         f"and {vad_target.shape}")
    labelled = class_target >= 0
    acc = float(np.mean(logits[labelled].argmax(axis=1) == class_target[labelled])) if labelled.any() \
        else float("nan")
    out = {"acc": acc}
    for k, name in enumerate(("valence", "arousal", "dominance")):
        out[f"acc_{name}"] = binary_accuracy(vad_pred[:, k], vad_target[:, k])
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def mean_std(dicts: Sequence[dict]) -> dict:
    """Mean and population std (ddof = 0) of every numeric scalar key over a list of per-fold dicts.

    Nested dicts are recursed (the result nests the same way); non-numeric values (strings, lists such as
    confusion matrices) are left out. A key that is numeric in one dict must be numeric in all of them.

    >>> mean_std([{'wa': 0.5, 'name': 'a', 'test': {'f1': 1}}, {'wa': 0.7, 'name': 'b', 'test': {'f1': 3}}])
    {'wa': {'mean': 0.6, 'std': 0.09999999999999998}, 'test': {'f1': {'mean': 2.0, 'std': 1.0}}}
    """
    dicts = list(dicts)
    if not dicts:
        raise ValueError("mean_std: no dicts given")
    for i, d in enumerate(dicts):
        if not isinstance(d, dict):
            raise ValueError(f"mean_std: item {i} is a {type(d).__name__}, expected a dict")
    return _mean_std(dicts, "")


def _mean_std(dicts: list[dict], prefix: str) -> dict:
    out: dict = {}
    keys = list(dict.fromkeys(key for d in dicts for key in d))
    for key in keys:
        values = [d.get(key) for d in dicts]
        name = f"{prefix}{key}"
        if any(isinstance(v, dict) for v in values):
            bad = [i for i, v in enumerate(values) if not isinstance(v, dict)]
            if bad:
                raise ValueError(f"mean_std: key {name!r} is a dict in some items but not in item {bad[0]}")
            nested = _mean_std(values, f"{name}.")
            if nested:
                out[key] = nested
        elif any(_is_number(v) for v in values):
            bad = [i for i, v in enumerate(values) if not _is_number(v)]
            if bad:
                raise ValueError(f"mean_std: key {name!r} is numeric in some items but is "
                                 f"{values[bad[0]]!r} in item {bad[0]}")
            arr = np.asarray(values, dtype=np.float64)
            out[key] = {"mean": float(arr.mean()), "std": float(arr.std(ddof=0))}
    return out
