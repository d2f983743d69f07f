"""Tests of rhemo.data.splits: sizes, disjointness, utterance integrity, seeding, folds, speaker independence."""
import numpy as np
import pytest

from rhemo.data.splits import Split, make_split, random_split, reduce_train, speaker_split


def segment_rows(n_utt, seed=0, prefix="utt"):
    """Per-segment utterance ids: utterance i has 1-3 segments; rows shuffled so segments are not adjacent."""
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}{i:03d}" for i in range(n_utt) for _ in range(rng.integers(1, 4))]
    return np.array(ids)[rng.permutation(len(ids))]


def utterances_of(ids, rows):
    return {ids[r] for r in rows}


def check_partition(split, ids):
    """Every row in exactly one set, sorted int64, and no utterance in two sets."""
    for part in split:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)
    together = np.concatenate(list(split))
    assert sorted(together.tolist()) == list(range(len(ids)))
    sets = [utterances_of(ids, part) for part in split]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    return sets


def test_random_split_sizes_and_integrity():
    ids = segment_rows(100)
    split = random_split(ids, (0.7, 0.2, 0.1), seed=1)
    assert isinstance(split, Split)
    sets = check_partition(split, ids)
    assert [len(s) for s in sets] == [70, 20, 10]


@pytest.mark.parametrize("n, fractions, sizes", [
    (3, (0.7, 0.2, 0.1), [1, 1, 1]),     # round(2.1)=2, round(0.6)=1, test 0 -> 1 taken from train
    (4, (0.7, 0.2, 0.1), [2, 1, 1]),     # 3, 1, 0 -> test takes 1
    (5, (0.7, 0.2, 0.1), [3, 1, 1]),     # round(3.5)=4, 1, 0 -> test takes 1
    (7, (0.7, 0.15, 0.15), [5, 1, 1]),
    (3, (0.8, 0.1, 0.1), [1, 1, 1]),     # 2, 0, 1 -> val takes 1
    (10, (0.9, 0.04, 0.06), [8, 1, 1]),  # 9, 0, 1 -> val takes 1 from train
    (10, (0.7, 0.3, 0.0), [7, 3, 0]),    # no test requested: none made
    (20, (0.7, 0.15, 0.15), [14, 3, 3]),
])
def test_random_split_small_sizes(n, fractions, sizes):
    ids = [f"u{i}" for i in range(n)]
    sets = check_partition(random_split(ids, fractions, seed=3), ids)
    assert [len(s) for s in sets] == sizes


def test_random_split_is_seeded():
    ids = segment_rows(50)
    a, b, c = (random_split(ids, seed=s) for s in (7, 7, 8))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a.test, c.test)


def test_random_split_permutation_is_defined_by_default_rng():
    ids = [f"u{i}" for i in range(10)]
    order = np.random.default_rng(5).permutation(10)
    split = random_split(ids, (0.6, 0.2, 0.2), seed=5)
    assert split.train.tolist() == sorted(order[:6].tolist())
    assert split.val.tolist() == sorted(order[6:8].tolist())
    # fold 1 of 5 starts 2 utterances later in the same permuted list (the authors' rotation)
    rotated = np.concatenate([order[2:], order[:2]])
    fold1 = random_split(ids, (0.6, 0.2, 0.2), seed=5, fold=1, num_folds=5)
    assert fold1.train.tolist() == sorted(rotated[:6].tolist())
    assert fold1.test.tolist() == sorted(rotated[8:].tolist())


def test_random_split_folds_rotate_test_sets_over_all_utterances():
    ids = segment_rows(20, seed=2)
    tests = [utterances_of(ids, random_split(ids, (0.6, 0.2, 0.2), seed=4, fold=f, num_folds=5).test)
             for f in range(5)]
    assert all(len(t) == 4 for t in tests)
    assert set().union(*tests) == set(ids)          # every utterance is tested exactly once
    single = random_split(ids, (0.6, 0.2, 0.2), seed=4)
    assert utterances_of(ids, single.test) == tests[0]


@pytest.mark.parametrize("ids, kwargs, message", [
    (["a", "b"], {}, "too few"),
    (["a"], {}, "too few"),
    ([], {}, "no utterances"),
    (["a", "b", "c"], {"fractions": (0.7, 0.2)}, "three"),
    (["a", "b", "c"], {"fractions": (0.7, 0.4, -0.1)}, "non-negative"),
    (["a", "b", "c"], {"fractions": (0.5, 0.2, 0.2)}, "summing to 1"),
    (["a", "b", "c"], {"fractions": (0.0, 0.5, 0.5)}, "positive training"),
    (["a", "b", "c"], {"fold": 2, "num_folds": 2}, "fold=2, num_folds=2"),
    ("abc", {}, "sequence"),
])
def test_random_split_errors(ids, kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_split(ids, **kwargs)


def corpus(n_sessions=5, speakers_per_session=2, utts_per_speaker=3, seed=0, with_sessions=True):
    """Per-segment columns of a small IEMOCAP-like corpus (1-2 segments per utterance, shuffled rows)."""
    rng = np.random.default_rng(seed)
    ids, speakers, sessions = [], [], []
    for s in range(1, n_sessions + 1):
        for g in "FM"[:speakers_per_session]:
            for u in range(utts_per_speaker):
                for _ in range(rng.integers(1, 3)):
                    ids.append(f"Ses{s:02d}{g}_u{u}")
                    speakers.append(f"Ses{s:02d}{g}")
                    sessions.append(s if with_sessions else -1)
    order = rng.permutation(len(ids))
    return (np.array(ids)[order], np.array(speakers)[order], np.array(sessions)[order])


@pytest.mark.parametrize("fold", range(5))
def test_leave_one_session_out(fold):
    ids, speakers, sessions = corpus()
    split = speaker_split(ids, speakers, sessions, fold=fold, num_folds=5, val_fraction=0.2, seed=1)
    check_partition(split, ids)
    assert split.test.tolist() == np.flatnonzero(sessions == fold + 1).tolist()
    spk = [set(speakers[part]) for part in split]
    assert not (spk[0] & spk[1]) and not (spk[0] & spk[2]) and not (spk[1] & spk[2])
    assert [len(s) for s in spk] == [6, 2, 2]       # 8 remaining speakers: round(0.2*8) = 2 for validation


def test_sessions_are_taken_in_sorted_order_and_validated():
    ids, speakers, sessions = corpus(n_sessions=3)
    sessions = sessions * 10                           # sessions 10, 20, 30
    split = speaker_split(ids, speakers, sessions, fold=2, num_folds=3, seed=1)
    assert set(sessions[split.test]) == {30}
    with pytest.raises(ValueError, match="num_folds=5 for 3 sessions"):
        speaker_split(ids, speakers, sessions, fold=0, num_folds=5)
    mixed = sessions.copy()
    mixed[speakers == "Ses01F"] = -1
    with pytest.raises(ValueError, match="have no session"):
        speaker_split(ids, speakers, mixed, fold=0, num_folds=3)
    moved = sessions.copy()
    moved[np.flatnonzero(speakers == "Ses01F")[0]] = 20
    moved_ids = ids.copy()
    moved_ids[np.flatnonzero(speakers == "Ses01F")[0]] = "lonely"  # its own utterance, so only the speaker clashes
    with pytest.raises(ValueError, match="speaker 'Ses01F' appears in sessions"):
        speaker_split(moved_ids, speakers, moved, fold=0, num_folds=3)


@pytest.mark.parametrize("sessions_arg", ["none", "minus_one"])
def test_leave_speakers_out_without_sessions(sessions_arg):
    ids, speakers, sessions = corpus(with_sessions=False)
    sessions = None if sessions_arg == "none" else sessions
    tests = []
    for fold in range(5):
        split = speaker_split(ids, speakers, sessions, fold=fold, num_folds=5, val_fraction=0.5, seed=3)
        check_partition(split, ids)
        spk = [set(speakers[part]) for part in split]
        assert not (spk[0] & spk[1]) and not (spk[0] & spk[2]) and not (spk[1] & spk[2])
        assert [len(s) for s in spk] == [4, 4, 2]
        tests.append(spk[2])
    assert set().union(*tests) == set(speakers)        # the folds' test groups partition the speakers
    again = speaker_split(ids, speakers, sessions, fold=0, num_folds=5, val_fraction=0.5, seed=3)
    assert set(speakers[again.test]) == tests[0]
    others = [set(speakers[speaker_split(ids, speakers, sessions, 0, 5, 0.5, seed=s).test]) for s in range(6)]
    assert len({frozenset(t) for t in others}) > 1     # the seed changes the grouping


def test_uneven_speaker_groups_and_minimum_sizes():
    ids = [f"u{i}" for i in range(7)]
    speakers = list("ABCDEFG")
    sizes = sorted(len(speaker_split(ids, speakers, None, f, 3, 0.0, seed=0).test) for f in range(3))
    assert sizes == [2, 2, 3]
    three = speaker_split(["a", "b", "c"], ["A", "B", "C"], None, fold=1, num_folds=3, val_fraction=0.9)
    assert [len(p) for p in three] == [1, 1, 1]        # at least one speaker left for training
    with pytest.raises(ValueError, match="at least 2 are needed"):
        speaker_split(["a", "b"], ["A", "B"], None, fold=0, num_folds=2)
    with pytest.raises(ValueError, match="num_folds=1 for 3 speakers"):
        speaker_split(["a", "b", "c"], ["A", "B", "C"], None, fold=0, num_folds=1)
    with pytest.raises(ValueError, match="num_folds=4 for 3 speakers"):
        speaker_split(["a", "b", "c"], ["A", "B", "C"], None, fold=0, num_folds=4)


def test_speaker_split_input_errors():
    with pytest.raises(ValueError, match="different speakers"):
        speaker_split(["a", "a", "b", "c"], ["A", "B", "B", "C"], None, 0, 2)
    with pytest.raises(ValueError, match="one entry per row"):
        speaker_split(["a", "b"], ["A"], None, 0, 2)
    with pytest.raises(ValueError, match="val_fraction"):
        speaker_split(["a", "b", "c"], ["A", "B", "C"], None, 0, 3, val_fraction=1.0)


def test_reduce_train_keeps_whole_training_utterances_only():
    ids = segment_rows(40, seed=5)
    split = random_split(ids, (0.7, 0.2, 0.1), seed=2)
    reduced = reduce_train(split, ids, 0.5, seed=9)
    assert np.array_equal(reduced.val, split.val) and np.array_equal(reduced.test, split.test)
    assert set(reduced.train) <= set(split.train)
    kept = utterances_of(ids, reduced.train)
    assert len(kept) == 14                                 # round(0.5 * 28)
    assert reduced.train.tolist() == [r for r in split.train.tolist() if ids[r] in kept]  # whole utterances
    assert np.array_equal(reduce_train(split, ids, 0.5, seed=9).train, reduced.train)
    assert np.array_equal(reduce_train(split, ids, 1.0, seed=9).train, split.train)
    assert len(utterances_of(ids, reduce_train(split, ids, 0.001, seed=9).train)) == 1
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction must be in"):
            reduce_train(split, ids, bad, seed=9)


def test_make_split_dispatches_on_protocol():
    ids, speakers, sessions = corpus()
    rnd = make_split("random", ids, fractions=(0.7, 0.2, 0.1), seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(rnd, random_split(ids, (0.7, 0.2, 0.1), 4)))
    spk = make_split("speaker", ids, speakers, sessions, fractions=(0.5, 0.5, 0.0), fold=3, num_folds=5, seed=2)
    assert all(np.array_equal(a, b) for a, b in
               zip(spk, speaker_split(ids, speakers, sessions, 3, 5, val_fraction=0.5, seed=2)))
    assert len(set(speakers[spk.val])) == 4               # half of the 8 non-test speakers
    reduced = make_split("random", ids, fractions=(0.7, 0.2, 0.1), seed=4, train_fraction=0.5)
    assert np.array_equal(reduced.val, rnd.val) and len(reduced.train) < len(rnd.train)
    with pytest.raises(ValueError, match="protocol must be one of"):
        make_split("session", ids)
    with pytest.raises(ValueError, match="needs the speakers column"):
        make_split("speaker", ids)
