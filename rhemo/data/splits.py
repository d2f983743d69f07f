"""Train/validation/test splits of a segment table, always keeping every segment of an utterance in one set.

Two protocols:

* ``random_split``: the paper's utterance-level random split (70/20/10 on IEMOCAP), seeded; folds rotate the
  permuted utterance list as the authors' fold generator does. Speakers are shared between sets.
* ``speaker_split``: speaker-independent folds. With sessions (IEMOCAP) fold f tests on session f
  (leave-one-session-out); without, speakers are shuffled into ``num_folds`` groups and fold f tests on group
  f. Validation speakers are a seeded subset of the others.

``make_split`` picks the protocol from the config keys; ``reduce_train`` subsamples training utterances only
(the authors' version also replaced the validation set by the reduced training set, a bug not reproduced).

Inputs are per-row columns (one entry per segment row, e.g. ``SegmentTable.utterance_id``); outputs are sorted
int64 row positions.
"""
from __future__ import annotations

import math
from typing import Any, Hashable, Iterable, NamedTuple, Sequence

import numpy as np

from rhemo.errors import DataError

__all__ = ["Split", "random_split", "speaker_split", "reduce_train", "make_split", "group_codes", "PROTOCOLS"]

PROTOCOLS = ("random", "speaker")


class Split(NamedTuple):
    """Row positions (sorted int64 arrays) of the training, validation and test segments."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def group_codes(values: Iterable[Hashable]) -> tuple[list, np.ndarray]:
    """Unique values in first-appearance order and, per row, the index of its value in that list.

    >>> group_codes(['b', 'a', 'b'])
    (['b', 'a'], array([0, 1, 0]))
    """
    if isinstance(values, np.ndarray):
        values = values.tolist()
    index: dict = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64)
    return list(index), codes


def _as_list(column: Any, what: str) -> list:
    if isinstance(column, np.ndarray):
        if column.ndim != 1:
            raise DataError(f"{what} must be one entry per row (1-D), got shape {column.shape}")
        return column.tolist()
    if isinstance(column, (str, bytes)) or not isinstance(column, Iterable):
        raise DataError(f"{what} must be a sequence with one entry per row, got {type(column).__name__}")
    return list(column)


def _rows_of(codes: np.ndarray, chosen: Iterable[int]) -> np.ndarray:
    mask = np.zeros(int(codes.max()) + 1 if codes.size else 0, dtype=bool)
    mask[list(chosen)] = True
    return np.flatnonzero(mask[codes]).astype(np.int64)


def _check_fold(fold: int, num_folds: int, where: str) -> None:
    for name, value in (("fold", fold), ("num_folds", num_folds)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DataError(f"{where}: {name} must be an int, got {value!r}")
    if num_folds < 1 or not 0 <= fold < num_folds:
        raise DataError(f"{where}: need 0 <= fold < num_folds, got fold={fold}, num_folds={num_folds}")


def _split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    f_train, f_val, f_test = fractions
    n_train = round(n * f_train)
    n_val = min(round(n * f_val), n - n_train)
    if f_test == 0:  # rounding left-overs go to training, never to an unrequested test set
        n_train = n - n_val
    if n >= 3:
        n_val = max(n_val, 1 if f_val > 0 else 0)
        n_test = max(n - n_train - n_val, 1 if f_test > 0 else 0)
        n_train = n - n_val - n_test
    n_test = n - n_train - n_val
    wanted = {"train": (n_train, f_train), "val": (n_val, f_val), "test": (n_test, f_test)}
    empty = [name for name, (count, frac) in wanted.items() if frac > 0 and count < 1]
    if empty:
        raise DataError(f"random_split: {n} utterance(s) are too few for fractions {fractions}: the "
                        f"{'/'.join(empty)} set would be empty")
    return n_train, n_val, n_test


def random_split(utterance_ids: Sequence[Hashable], fractions: Sequence[float] = (0.7, 0.2, 0.1), seed: int = 1,
                 fold: int = 0, num_folds: int = 1) -> Split:
    """Random utterance-level split (the paper's protocol).

    The unique utterances (first-appearance order) are permuted with ``numpy.random.default_rng(seed)``; fold
    f rotates that list left by ``int(f·N/num_folds)``; the first ``round(N·f0)`` utterances are training, the
    next ``round(N·f1)`` validation, the rest test. With N >= 3, a set whose fraction is positive gets at least
    one utterance (taken from training).

    Args:
        utterance_ids: (n_rows,) utterance id of each segment row.
        fractions: (train, val, test), non-negative, summing to 1, train > 0.
    Returns:
        Split of row positions; all segments of an utterance land in the same set.

    >>> random_split(['a', 'a', 'b', 'c', 'd'], (0.5, 0.25, 0.25), seed=0)
    Split(train=array([0, 1, 3]), val=array([2]), test=array([4]))
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions) \
            or abs(sum(fractions) - 1.0) > 1e-6 or fractions[0] <= 0:
        raise DataError(f"random_split: fractions must be three non-negative numbers summing to 1 with a "
                        f"positive training share, got {fractions}")
    _check_fold(fold, num_folds, "random_split")
    utterances, codes = group_codes(_as_list(utterance_ids, "random_split: utterance_ids"))
    n = len(utterances)
    if n == 0:
        raise DataError("random_split: no utterances given")
    n_train, n_val, _ = _split_sizes(n, fractions)
    order = np.random.default_rng(seed).permutation(n)
    order = np.roll(order, -int(fold * n / num_folds))
    return Split(_rows_of(codes, order[:n_train]), _rows_of(codes, order[n_train:n_train + n_val]),
                 _rows_of(codes, order[n_train + n_val:]))


def _per_utterance(codes: np.ndarray, column: list, n_utt: int, what: str, utterances: list) -> list:
    """The single value of ``column`` for each utterance; DataError if an utterance's segments disagree."""
    values: list = [None] * n_utt
    seen = np.zeros(n_utt, dtype=bool)
    for code, value in zip(codes.tolist(), column):
        if not seen[code]:
            values[code], seen[code] = value, True
        elif value != values[code]:
            raise DataError(f"speaker_split: utterance {utterances[code]!r} has segments with different "
                            f"{what} ({values[code]!r} and {value!r})")
    return values


def _has_no_session(value: Any) -> bool:
    return value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value == -1)


def speaker_split(utterance_ids: Sequence[Hashable], speakers: Sequence[Hashable], sessions: Sequence[Any] | None,
                  fold: int, num_folds: int, val_fraction: float = 0.2, seed: int = 1) -> Split:
    """Speaker-independent split: no speaker appears in two of train/val/test.

    * Sessions given (not all −1/None): leave-one-session-out. The sorted unique sessions are the folds
      (``num_folds`` must equal their count) and fold f tests on every speaker of session f.
    * Otherwise: the sorted unique speakers are shuffled with ``default_rng(seed)`` and cut into ``num_folds``
      near-equal groups; fold f tests on group f.

    Validation: ``round(val_fraction·R)`` of the R remaining speakers (at least 1, leaving at least 1 for
    training), drawn with the same seeded generator; training: the rest.

    Args:
        utterance_ids, speakers, sessions: (n_rows,) per-segment columns; sessions may be None.
    Returns:
        Split of row positions.

    >>> s = speaker_split(['u1', 'u2', 'u3', 'u4'], ['A', 'B', 'C', 'D'], [1, 1, 2, 2], fold=1, num_folds=2,
    ...                   val_fraction=0.5)
    >>> s.test.tolist(), sorted(s.train.tolist() + s.val.tolist())
    ([2, 3], [0, 1])
    """
    _check_fold(fold, num_folds, "speaker_split")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise DataError(f"speaker_split: val_fraction must be in [0, 1), got {val_fraction}")
    utterances, codes, utt_speaker, utt_session = _speaker_columns(utterance_ids, speakers, sessions)
    rng = np.random.default_rng(seed)
    all_speakers = sorted(set(utt_speaker), key=str)
    if all(_has_no_session(s) for s in utt_session):
        test_speakers = _speaker_group(all_speakers, fold, num_folds, rng)
    else:
        test_speakers = _session_speakers(utt_speaker, utt_session, fold, num_folds)

    remaining = [s for s in all_speakers if s not in test_speakers]
    if len(remaining) < 2:
        raise DataError(f"speaker_split: fold {fold} leaves {len(remaining)} speaker(s) outside the test set; at "
                        f"least 2 are needed (one for validation, one for training); speakers: {all_speakers}")
    n_val = min(max(round(float(val_fraction) * len(remaining)), 1), len(remaining) - 1)
    val_speakers = {remaining[i] for i in rng.permutation(len(remaining))[:n_val]}
    utt_set = np.array([2 if s in test_speakers else 1 if s in val_speakers else 0 for s in utt_speaker])
    return Split(*(_rows_of(codes, np.flatnonzero(utt_set == k)) for k in range(3)))


def _speaker_columns(utterance_ids: Sequence[Hashable], speakers: Sequence[Hashable],
                     sessions: Sequence[Any] | None) -> tuple[list, np.ndarray, list, list]:
    """(utterances, per-row utterance codes, speaker per utterance, session per utterance) of the per-row
    columns; DataError when they differ in length, are empty or disagree within an utterance."""
    ids = _as_list(utterance_ids, "speaker_split: utterance_ids")
    spk = _as_list(speakers, "speaker_split: speakers")
    ses = [None] * len(ids) if sessions is None else _as_list(sessions, "speaker_split: sessions")
    if not len(ids) == len(spk) == len(ses):
        raise DataError(f"speaker_split: utterance_ids, speakers and sessions must have one entry per row, got "
                        f"{len(ids)}, {len(spk)} and {len(ses)}")
    if not ids:
        raise DataError("speaker_split: no utterances given")
    utterances, codes = group_codes(ids)
    utt_speaker = _per_utterance(codes, spk, len(utterances), "speakers", utterances)
    utt_session = _per_utterance(codes, ses, len(utterances), "sessions", utterances)
    return utterances, codes, utt_speaker, utt_session


def _session_speakers(utt_speaker: list, utt_session: list, fold: int, num_folds: int) -> set:
    """Leave-one-session-out: the speakers of the ``fold``-th sorted session."""
    missing = [_has_no_session(s) for s in utt_session]
    if any(missing):
        raise DataError(f"speaker_split: {sum(missing)} of {len(missing)} utterances have no session (-1/None) "
                        f"while the others have one; give sessions for all or for none")
    speaker_session: dict = {}
    for speaker, session in zip(utt_speaker, utt_session):
        if speaker_session.setdefault(speaker, session) != session:
            raise DataError(f"speaker_split: speaker {speaker!r} appears in sessions "
                            f"{speaker_session[speaker]!r} and {session!r}; leave-one-session-out would not "
                            f"be speaker-independent")
    session_list = sorted(set(utt_session))
    if num_folds != len(session_list):
        raise DataError(f"speaker_split: leave-one-session-out needs num_folds equal to the number of sessions; "
                        f"got num_folds={num_folds} for {len(session_list)} sessions {session_list}")
    return {s for s, session in speaker_session.items() if session == session_list[fold]}


def _speaker_group(all_speakers: list, fold: int, num_folds: int, rng: np.random.Generator) -> set:
    """Leave-speakers-out: the ``fold``-th of ``num_folds`` near-equal groups of the shuffled speakers."""
    if num_folds < 2 or num_folds > len(all_speakers):
        raise DataError(f"speaker_split: leave-speakers-out needs 2 <= num_folds <= number of speakers; got "
                        f"num_folds={num_folds} for {len(all_speakers)} speakers")
    shuffled = [all_speakers[i] for i in rng.permutation(len(all_speakers))]
    groups = np.array_split(np.arange(len(shuffled)), num_folds)
    return {shuffled[i] for i in groups[fold]}


def reduce_train(split: Split, utterance_ids: Sequence[Hashable], fraction: float, seed: int = 1) -> Split:
    """Keep a seeded ``fraction`` of the training utterances (at least one); validation and test unchanged.

    >>> reduce_train(Split(np.array([0, 1, 2]), np.array([3]), np.array([4])), list('aabcd'), 0.5, seed=0).train
    array([0, 1])
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise DataError(f"reduce_train: fraction must be in (0, 1], got {fraction}")
    ids = _as_list(utterance_ids, "reduce_train: utterance_ids")
    train = np.asarray(split.train, dtype=np.int64)
    if train.size and (train.min() < 0 or train.max() >= len(ids)):
        raise DataError(f"reduce_train: split.train refers to rows outside the {len(ids)} utterance_ids")
    utterances, codes = group_codes(ids[i] for i in train.tolist())
    if not utterances:
        raise DataError("reduce_train: the training set is empty")
    n_keep = max(1, round(float(fraction) * len(utterances)))
    chosen = np.random.default_rng(seed).permutation(len(utterances))[:n_keep]
    kept = train[_rows_of(codes, chosen)]
    return Split(np.sort(kept), split.val, split.test)


def make_split(protocol: str, utterance_ids: Sequence[Hashable], speakers: Sequence[Hashable] | None = None,
               sessions: Sequence[Any] | None = None, *, fractions: Sequence[float] = (0.7, 0.2, 0.1),
               fold: int = 0, num_folds: int = 1, seed: int = 1, train_fraction: float = 1.0) -> Split:
    """The split the config asks for (keys protocol, split_fractions, fold, num_folds, seed, train_fraction).

    'random' → ``random_split(utterance_ids, fractions, seed, fold, num_folds)``. 'speaker' →
    ``speaker_split`` with ``val_fraction = f_val / (f_train + f_val)``, i.e. the train:val ratio of the
    fractions applied to the non-test speakers (the test share is set by the folds). Then, if
    ``train_fraction < 1``, ``reduce_train``.
    """
    if protocol == "random":
        split = random_split(utterance_ids, fractions, seed, fold, num_folds)
    elif protocol == "speaker":
        if speakers is None:
            raise DataError("make_split: protocol 'speaker' needs the speakers column")
        f_train, f_val = float(fractions[0]), float(fractions[1])
        if f_train <= 0 or f_val < 0:
            raise DataError(f"make_split: fractions {tuple(fractions)} need a positive training share")
        split = speaker_split(utterance_ids, speakers, sessions, fold, num_folds, f_val / (f_train + f_val), seed)
    else:
        raise DataError(f"make_split: protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if train_fraction != 1.0:
        split = reduce_train(split, utterance_ids, train_fraction, seed)
    return split
