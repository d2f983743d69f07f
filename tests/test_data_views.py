"""Label views: rows kept, class numbers and binarised V/A/D, on hand-built segment tables."""

import numpy as np
import pytest

from rhemo.data.store import SEGMENT_COLUMNS, SegmentTable
from rhemo.data.views import VIEWS, binarise_vad, label_view


def table(labels, vad=None):
    n = len(labels)
    vad = np.full((n, 3), np.nan) if vad is None else np.asarray(vad, dtype=float)
    return SegmentTable(utterance_id=np.array([f"u{i}" for i in range(n)]), path=np.array(["p"] * n),
                        speaker=np.array(["s"] * n), session=np.full(n, -1), segment_index=np.zeros(n, int),
                        label=np.array(labels), valence=vad[:, 0], arousal=vad[:, 1], dominance=vad[:, 2])


IEMOCAP = ["neu", "ang", "hap", "sad", "exc", "fru", "xxx", "hap", "oth", "exc"]


def test_iemocap4_drops_everything_else():
    v = label_view(table(IEMOCAP), "iemocap4", "iemocap")
    assert v.label_names == ["neu", "ang", "hap", "sad"]
    np.testing.assert_array_equal(v.indices, [0, 1, 2, 3, 7])
    np.testing.assert_array_equal(v.targets, [0, 1, 2, 3, 2])
    assert v.indices.dtype == v.targets.dtype == np.int64 and len(v) == 5 and v.num_classes == 4


def test_iemocap4_exc_merges_excited_into_happy():
    v = label_view(table(IEMOCAP), "iemocap4_exc", "iemocap")
    np.testing.assert_array_equal(v.indices, [0, 1, 2, 3, 4, 7, 9])
    np.testing.assert_array_equal(v.targets, [0, 1, 2, 3, 2, 2, 2])


def test_complete_keeps_every_row_with_other_class():
    v = label_view(table(IEMOCAP), "complete", "iemocap")
    assert v.label_names == ["neu", "ang", "hap", "sad", "other"]
    np.testing.assert_array_equal(v.indices, np.arange(10))
    np.testing.assert_array_equal(v.targets, [0, 1, 2, 3, 4, 4, 4, 2, 4, 4])


def test_native_views():
    v = label_view(table(["angry", "calm", "surprised", "neutral"]), "native", "ravdess")
    assert v.label_names == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    np.testing.assert_array_equal(v.targets, [4, 1, 7, 0])
    v = label_view(table(["anger", "boredom", "neutral"]), "native", "emodb")
    assert len(v.label_names) == 7 and v.label_names[v.targets[1]] == "boredom"
    v = label_view(table(["happy", "pleasant_surprise", "fear"]), "native", "tess")
    assert v.label_names[0] == "happy" and list(v.targets) == [0, 5, 6]
    v = label_view(table(["b", "a", "c", "a"]), "native", "folder")
    assert v.label_names == ["a", "b", "c"] and list(v.targets) == [1, 0, 2, 0]
    v = label_view(table(IEMOCAP), "native", "iemocap")
    assert 6 not in v.indices and len(v) == 9           # xxx (no majority) is not a class


def test_vad_binarised_at_2_5():
    vad = [[2.5, 2.51, 1.0], [5.0, np.nan, 2.4999], [3.0, 3.0, 3.0]]
    v = label_view(table(["neu", "fru", "ang"], vad), "iemocap4", "iemocap")
    assert v.vad.dtype == np.float32 and v.vad.shape == (2, 3)
    np.testing.assert_array_equal(v.vad, [[0, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(binarise_vad([[5.0, np.nan, 2.5]]), [[1, np.nan, 0]])
    assert np.isnan(label_view(table(["x"]), "native", "folder").vad).all()


def test_bad_view_requests():
    with pytest.raises(ValueError, match="needs an IEMOCAP store"):
        label_view(table(["angry"]), "iemocap4", "ravdess")
    with pytest.raises(ValueError, match="unknown label view 'seven'"):
        label_view(table(["neu"]), "seven", "iemocap")
    assert set(VIEWS) == {"iemocap4", "iemocap4_exc", "complete", "native"}
    assert len(SEGMENT_COLUMNS) == 9


def test_views_on_a_generated_store(tmp_path):
    synthetic = pytest.importorskip("rhemo.data.synthetic")
    from rhemo.data.readers import read_corpus
    from rhemo.data.store import SegmentStore, write_store
    from rhemo.data.features import FeatureSettings

    root = synthetic.make_corpus(tmp_path / "iemocap", "iemocap", n_utterances=16, seed=5, sessions=1,
                                 min_seconds=0.5, max_seconds=1.0)
    utts, _ = read_corpus("iemocap", root)
    write_store(utts, tmp_path / "store", FeatureSettings(), workers=1, progress=False, dataset="iemocap")
    store = SegmentStore(tmp_path / "store")
    labels = [u.label for u in utts]
    four = label_view(store.table, "iemocap4", store.dataset)
    assert len(four) == sum(lab in ("neu", "ang", "hap", "sad") for lab in labels)   # short files: 1 segment each
    assert len(label_view(store.table, "iemocap4_exc", store.dataset)) == len(four) + labels.count("exc")
    assert len(label_view(store.table, "complete", store.dataset)) == len(utts)
