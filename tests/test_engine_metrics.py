"""Tests of rhemo.train.metrics against confusion matrices and scores worked out by hand."""
import math

import numpy as np
import pytest
import torch

from rhemo.train.metrics import binary_accuracy, classification_report, mean_std, rhemo_metrics, utterance_logits

NAN = float("nan")


def logits_for(pred, num_classes, seed=0):
    """Random logits whose arg-max is ``pred`` (margin 1 above every other class)."""
    rng = np.random.default_rng(seed)
    out = rng.normal(size=(len(pred), num_classes))
    for i, p in enumerate(pred):
        out[i, p] = out[i].max() + 1.0
    return out


# 8 rows, 4 classes. Class 3 is never true but predicted once.
TARGETS = [0, 0, 0, 1, 1, 2, 2, 2]
PREDS = [0, 0, 1, 1, 3, 2, 2, 0]
# By hand: rows = true, cols = predicted
CONFUSION = [[2, 1, 0, 0],
             [0, 1, 0, 1],
             [1, 0, 2, 0],
             [0, 0, 0, 0]]
WA = 5 / 8
UA = (2 / 3 + 1 / 2 + 2 / 3) / 3                  # classes 0, 1, 2 occur in the targets
# F1 = 2TP / (2TP + FP + FN): class 0: 4/6, class 1: 2/4, class 2: 4/5, class 3 (predicted, never true): 0
F1 = (4 / 6 + 2 / 4 + 4 / 5 + 0.0) / 4


@pytest.mark.parametrize("as_torch", [False, True])
def test_segment_report_matches_hand_computation(as_torch):
    logits = logits_for(PREDS, 4)
    targets = np.array(TARGETS)
    if as_torch:
        logits, targets = torch.tensor(logits, dtype=torch.float32), torch.tensor(targets)
    report = classification_report(logits, targets, 4)
    assert report["confusion"] == CONFUSION
    assert all(type(v) is int for row in report["confusion"] for v in row)
    assert report["wa"] == pytest.approx(WA)
    assert report["ua"] == pytest.approx(UA)
    assert report["f1"] == pytest.approx(F1)
    assert "utt_wa" not in report


def test_classes_absent_from_targets_and_predictions_do_not_count():
    logits = np.concatenate([logits_for(PREDS, 4), np.full((8, 1), -50.0)], axis=1)
    report = classification_report(logits, TARGETS, 5)
    assert report["ua"] == pytest.approx(UA) and report["f1"] == pytest.approx(F1)
    assert report["confusion"] == [row + [0] for row in CONFUSION] + [[0] * 5]


def test_perfect_and_all_wrong_predictions():
    perfect = classification_report(logits_for([0, 1, 2], 3), [0, 1, 2], 3)
    assert (perfect["wa"], perfect["ua"], perfect["f1"]) == (1.0, 1.0, 1.0)
    wrong = classification_report(logits_for([1, 1, 1], 3), [0, 0, 0], 3)
    assert (wrong["wa"], wrong["ua"], wrong["f1"]) == (0.0, 0.0, 0.0)


def test_utterance_level_averages_logits_not_probabilities():
    # u1: one confident segment for class 0 and two mild ones for class 1. Mean logits = [20/3, 2] -> class 0.
    # Mean softmax probabilities = [(1 + 2*0.047)/3, ...] ~ [0.365, 0.635] -> class 1. The target is 0.
    # u2: two segments, mean logits [0.5, 1.5] -> class 1 (target 1). u3: one segment [2, 0] -> 0, target 1.
    logits = np.array([[20.0, 0.0], [0.0, 3.0], [0.0, 3.0], [1.0, 0.0], [0.0, 3.0], [2.0, 0.0]])
    targets = np.array([0, 0, 0, 1, 1, 1])
    groups = np.array(["u1", "u1", "u1", "u2", "u2", "u3"])
    report = classification_report(logits, targets, 2, groups=groups)
    # segments: predictions 0,1,1,0,1,0 against 0,0,0,1,1,1 -> [[1, 2], [2, 1]]
    assert report["confusion"] == [[1, 2], [2, 1]]
    assert report["wa"] == pytest.approx(2 / 6)
    # utterances: u1 -> 0 (true 0), u2 -> 1 (true 1), u3 -> 0 (true 1)
    assert report["utt_confusion"] == [[1, 0], [1, 1]]
    assert report["utt_count"] == 3
    assert report["utt_wa"] == pytest.approx(2 / 3)
    assert report["utt_ua"] == pytest.approx((1.0 + 0.5) / 2)
    # class 0: 2*1/(2+1) = 2/3, class 1: 2*1/(2+0+1) = 2/3
    assert report["utt_f1"] == pytest.approx(2 / 3)


def test_groups_may_be_lists_of_any_hashable_and_interleaved():
    logits = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 5.0], [3.0, 0.0]])
    by_list = classification_report(logits, [0, 1, 0, 1], 2, groups=[7, 8, 7, 8])
    # utterance 7: mean [0.5, 2.5] -> 1 (true 0); utterance 8: mean [1.5, 0.5] -> 0 (true 1)
    assert by_list["utt_confusion"] == [[0, 1], [1, 0]]
    by_tensor = classification_report(torch.tensor(logits), torch.tensor([0, 1, 0, 1]), 2,
                                       groups=torch.tensor([7, 8, 7, 8]))
    assert by_tensor["utt_confusion"] == by_list["utt_confusion"]


def test_utterance_with_mixed_targets_is_an_error():
    with pytest.raises(ValueError, match="'u2' has segments with different targets"):
        classification_report(np.zeros((3, 2)), [0, 1, 0], 2, groups=["u1", "u2", "u2"])


@pytest.mark.parametrize("logits, targets, num_classes, groups, message", [
    (np.zeros((3, 2)), [0, 1, 0], 3, None, "num_classes=3"),
    (np.zeros((3, 2)), [0, 1], 2, None, r"targets must be \(N,\)"),
    (np.zeros((3, 2)), [0, 2, 0], 2, None, "0..1"),
    (np.zeros((3, 2)), [0, -1, 0], 2, None, "0..1"),
    (np.zeros((3, 2)), [0.0, 1.0, 0.0], 2, None, "integer"),
    (np.zeros((0, 2)), np.zeros(0, dtype=int), 2, None, "no rows"),
    (np.full((1, 2), np.nan), [0], 2, None, "nan"),
    (np.zeros((3, 2)), [0, 1, 0], 2, ["a", "b"], "groups has 2 entries"),
])
def test_classification_report_rejects_bad_input(logits, targets, num_classes, groups, message):
    with pytest.raises(ValueError, match=message):
        classification_report(logits, targets, num_classes, groups=groups)


def test_binary_accuracy_threshold_nan_rows_and_shapes():
    prob = [0.2, 0.5, 0.51, 0.9, 0.7, 0.4]
    target = [0.0, 1.0, 1.0, 0.0, NAN, NAN]
    # kept rows: 0.2->0 ok, 0.5->0 wrong, 0.51->1 ok, 0.9->1 wrong => 2/4
    assert binary_accuracy(prob, target) == 0.5
    assert binary_accuracy(torch.tensor(prob).view(-1, 1), torch.tensor(target)) == 0.5
    assert math.isnan(binary_accuracy([0.3, 0.8], [NAN, NAN]))
    with pytest.raises(ValueError, match="3 values but target has 2"):
        binary_accuracy([0.1, 0.2, 0.3], [0.0, 1.0])


def test_binary_accuracy_rounds_like_torch_round():
    prob = torch.linspace(0, 1, 201)
    target = torch.ones(201)
    assert binary_accuracy(prob, target) == pytest.approx(torch.round(prob).mean().item())


def test_rhemo_metrics_by_hand():
    logits = [[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [5.0, 0.0, 0.0]]
    class_target = [0, 2, 2, -1]          # argmax 0, 1, 2, 0 -> correct, wrong, correct, ignored
    vad_pred = [[0.9, 0.2, 0.5], [0.1, 0.6, 0.7], [0.8, 0.8, 0.3], [0.4, 0.4, 0.9]]
    vad_target = [[1, 0, NAN], [1, 1, NAN], [1, 0, NAN], [0, 0, NAN]]
    got = rhemo_metrics(np.array(logits), torch.tensor(vad_pred), torch.tensor(class_target),
                        np.array(vad_target, dtype=float))
    assert set(got) == {"acc", "acc_valence", "acc_arousal", "acc_dominance"}
    assert got["acc"] == pytest.approx(2 / 3)
    assert got["acc_valence"] == pytest.approx(3 / 4)   # 1,0,1,0 vs 1,1,1,0
    assert got["acc_arousal"] == pytest.approx(3 / 4)   # 0,1,1,0 vs 0,1,0,0
    assert math.isnan(got["acc_dominance"])
    unlabelled = rhemo_metrics(np.zeros((2, 3)), np.zeros((2, 3)), [-1, -1], np.zeros((2, 3)))
    assert math.isnan(unlabelled["acc"]) and unlabelled["acc_valence"] == 1.0
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        rhemo_metrics(np.zeros((2, 3)), np.zeros((2, 2)), [0, 1], np.zeros((2, 3)))


def test_mean_std_population_std_nested_and_non_numeric_skipped():
    folds = [{"wa": 0.5, "epochs": 10, "script": "ser", "confusion": [[1]], "done": True,
              "test": {"f1": 0.2, "label_names": ["a"]}},
             {"wa": 0.7, "epochs": 20, "script": "ser", "confusion": [[2]], "done": True,
              "test": {"f1": 0.4, "label_names": ["a"]}},
             {"wa": 0.9, "epochs": 30, "script": "ser", "confusion": [[3]], "done": True,
              "test": {"f1": 0.9, "label_names": ["a"]}}]
    got = mean_std(folds)
    assert set(got) == {"wa", "epochs", "test"}
    assert got["wa"]["mean"] == pytest.approx(0.7)
    assert got["wa"]["std"] == pytest.approx(math.sqrt((0.2 ** 2 + 0 + 0.2 ** 2) / 3))
    assert got["epochs"] == {"mean": 20.0, "std": pytest.approx(math.sqrt(200 / 3))}
    f1_std = math.sqrt((0.09 + 0.01 + 0.16) / 3)
    assert got["test"] == {"f1": {"mean": pytest.approx(0.5), "std": pytest.approx(f1_std)}}
    single = mean_std([{"wa": np.float32(0.25)}])
    assert single == {"wa": {"mean": 0.25, "std": 0.0}}


def test_mean_std_rejects_inconsistent_folds():
    with pytest.raises(ValueError, match="'wa' is numeric in some items but is None in item 1"):
        mean_std([{"wa": 0.5}, {}])
    with pytest.raises(ValueError, match="'test' is a dict in some items but not in item 0"):
        mean_std([{"test": 1.0}, {"test": {"wa": 1.0}}])
    with pytest.raises(ValueError, match="no dicts"):
        mean_std([])


def test_per_class_report_by_hand_with_label_names():
    report = classification_report(logits_for(PREDS, 4), TARGETS, 4, label_names=["neu", "ang", "hap", "sad"])
    per_class = report["per_class"]
    assert list(per_class) == ["neu", "ang", "hap", "sad"]
    # precision = TP / predicted, recall = TP / true, from CONFUSION's columns and rows
    assert [per_class[c]["precision"] for c in per_class] == pytest.approx([2 / 3, 1 / 2, 1.0, 0.0])
    assert [per_class[c]["recall"] for c in per_class] == pytest.approx([2 / 3, 1 / 2, 2 / 3, 0.0])
    assert [per_class[c]["f1"] for c in per_class] == pytest.approx([4 / 6, 2 / 4, 4 / 5, 0.0])
    assert [per_class[c]["support"] for c in per_class] == [3, 2, 3, 0]
    unnamed = classification_report(logits_for(PREDS, 4), TARGETS, 4, groups=list(range(8)))
    assert list(unnamed["utt_per_class"]) == ["0", "1", "2", "3"]
    assert unnamed["utt_per_class"]["0"] == unnamed["per_class"]["0"]  # one segment per utterance


def test_utterance_logits_pools_means_counts_and_first_appearance_order():
    logits = np.array([[1.0, 0.0], [4.0, 2.0], [0.0, 6.0]])
    ids, means, targets, counts = utterance_logits(logits, np.array([1, 0, 1]), ["b", "a", "b"])
    assert ids == ["b", "a"]
    assert means.tolist() == [[0.5, 3.0], [4.0, 2.0]]
    assert targets.tolist() == [1, 0] and counts.tolist() == [2, 1]
