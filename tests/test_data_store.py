"""Segment store: round trip, skip report, resume after interruption, reuse/overwrite, reader errors."""

import csv
import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import rhemo
from rhemo.data import store as store_mod
from rhemo.data.features import FeatureSettings, audio_to_segments
from rhemo.data.readers import Skipped, Utterance
from rhemo.data.store import SEGMENT_COLUMNS, SegmentStore, StoreError, write_store

SR = 16000
SETTINGS = FeatureSettings()


def signal(samples, seed):
    return (0.2 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


@pytest.fixture()
def corpus(tmp_path):
    """Seven files: five usable giving 1, 1, 3 (tail rule), 2 (exactly 1002 frames) and 1 segments, one corrupt,
    one silent."""
    folder = tmp_path / "audio"
    folder.mkdir()
    specs = [("u0", 16000), ("u1", 64000), ("u2", 144000), ("u3", 128128), ("u4", 32000)]
    utts = []
    for i, (name, samples) in enumerate(specs):
        path = folder / f"{name}.wav"
        sf.write(path, signal(samples, i), SR, subtype="FLOAT")
        utts.append(Utterance(name, str(path), f"spk{i % 2}", i % 2 + 1 if i < 4 else None, ["neu", "ang"][i % 2],
                              2.5 + i * 0.25 if i < 4 else None, 3.0, 1.0))
    (folder / "bad.wav").write_bytes(b"RIFF....WAVEfmt broken")
    sf.write(folder / "quiet.wav", np.zeros(SR, np.float32), SR)
    utts.insert(2, Utterance("bad", str(folder / "bad.wav"), "spk9", None, "sad"))
    utts.append(Utterance("quiet", str(folder / "quiet.wav"), "spk9", None, "sad"))
    return utts


def expected_segments(utts):
    out = []
    for u in utts:
        if u.utterance_id not in ("bad", "quiet"):
            data, _ = sf.read(u.path, dtype="float32")
            out.append(audio_to_segments(data, SETTINGS))
    return np.concatenate(out)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_round_trip(tmp_path, corpus):
    reader_skips = [Skipped("/x/nolabel.wav", "no label: no line for nolabel in /x/d.txt")]
    out = tmp_path / "stores" / "iemocap"
    summary = write_store(corpus, out, SETTINGS, workers=2, skipped=reader_skips, dataset="iemocap", progress=False)
    assert (summary.utterances, summary.segments) == (5, 1 + 1 + 3 + 2 + 1)
    assert sorted(p.name for p in out.iterdir()) == ["info.json", "predictors.npy", "segments.csv", "skipped.csv"]
    assert not (tmp_path / "stores" / "iemocap.partial").exists()

    raw = np.load(out / "predictors.npy", mmap_mode="r", allow_pickle=False)
    assert isinstance(raw, np.memmap) and raw.dtype == np.float32 and raw.shape == (8, 512, 128)
    np.testing.assert_array_equal(raw, expected_segments(corpus))

    rows = read_csv(out / "segments.csv")
    assert tuple(rows[0]) == SEGMENT_COLUMNS
    assert [(r[0], r[4]) for r in rows[1:]] == [("u0", "0"), ("u1", "0"), ("u2", "0"), ("u2", "1"), ("u2", "2"),
                                               ("u3", "0"), ("u3", "1"), ("u4", "0")]
    assert rows[1] == ["u0", corpus[0].path, "spk0", "1", "0", "neu", "2.5", "3.0", "1.0"]
    assert rows[-1][3] == "" and rows[-1][6] == ""        # session and valence unknown → empty

    skipped = read_csv(out / "skipped.csv")
    assert skipped[0] == ["path", "reason"]
    reasons = {Path(p).name: r.split(":")[0] for p, r in skipped[1:]}
    assert reasons == {"nolabel.wav": "no label", "bad.wav": "unreadable", "quiet.wav": "silent"}

    info = json.loads((out / "info.json").read_text())
    assert info["dataset"] == "iemocap" and info["feature_settings"] == SETTINGS.to_dict()
    assert info["counts"] == {"input_files": 8, "utterances": 5, "segments": 8, "skipped": 3}
    assert info["rhemo_version"] == rhemo.__version__ and info["created"]

    store = SegmentStore(out)
    assert len(store) == 8 and store.dataset == "iemocap" and store.feature_settings == SETTINGS
    assert not store.predictors.flags.writeable
    t = store.table
    assert len(t) == 8 and t.utterance_id.dtype.kind == "U"
    np.testing.assert_array_equal(t.session, [1, 2, 1, 1, 1, 2, 2, -1])
    np.testing.assert_array_equal(t.segment_index, [0, 0, 0, 1, 2, 0, 1, 0])
    assert np.isnan(t.valence[-1]) and t.valence[0] == 2.5 and t.dominance.dtype == np.float64
    assert [s.reason.split(":")[0] for s in store.skipped()] == ["no label", "unreadable", "silent"]
    assert len(t.subset(t.label == "neu")) == 5


def test_serial_and_parallel_stores_are_identical(tmp_path, corpus):
    a = write_store(corpus, tmp_path / "a", SETTINGS, workers=1, progress=False)
    b = write_store(corpus, tmp_path / "b", SETTINGS, workers=2, progress=False)
    assert (tmp_path / "a/predictors.npy").read_bytes() == (tmp_path / "b/predictors.npy").read_bytes()
    assert (tmp_path / "a/segments.csv").read_text() == (tmp_path / "b/segments.csv").read_text()
    assert a.segments == b.segments == 8


class Interrupt(Exception):
    pass


def interrupted_write(monkeypatch, corpus, out, crash_index, workers):
    """Run write_store until it reaches ``corpus[crash_index]``, where the run 'dies'; the real reader is back
    in place afterwards."""
    real = store_mod._segments_or_reason

    def dying(path, settings):
        if path == corpus[crash_index].path:
            raise Interrupt()
        return real(path, settings)

    monkeypatch.setattr(store_mod, "_segments_or_reason", dying)
    with pytest.raises(Interrupt):
        write_store(corpus, out, SETTINGS, workers=workers, progress=False)
    monkeypatch.setattr(store_mod, "_segments_or_reason", real)


def test_resume_after_interruption(tmp_path, corpus, monkeypatch):
    out = tmp_path / "s"
    real = store_mod._segments_or_reason
    calls = []

    def dying(path, settings):
        if len(calls) == 4:
            raise Interrupt()
        calls.append(path)
        return real(path, settings)

    monkeypatch.setattr(store_mod, "_segments_or_reason", dying)
    with pytest.raises(Interrupt):
        write_store(corpus, out, SETTINGS, workers=1, progress=False)
    assert not out.exists()                                   # never a half store under the final name
    partial = tmp_path / "s.partial"
    assert len((partial / "journal.jsonl").read_text().splitlines()) == 4
    # A crash can also leave a torn journal line and data that no journal line confirms: both are dropped.
    data = partial / "predictors.npy.part"
    assert data.stat().st_size == 128 + 5 * 512 * 128 * 4   # reserved .npy header + u0, u1, u2 (3 segments)
    with open(partial / "journal.jsonl", "a") as f:
        f.write('[4, 3, nu')
    with open(data, "ab") as f:
        f.write(b"\1" * 1000)

    calls.clear()

    def counting(path, settings):
        calls.append(path)
        return real(path, settings)

    monkeypatch.setattr(store_mod, "_segments_or_reason", counting)
    summary = write_store(corpus, out, SETTINGS, workers=1, progress=False)
    assert summary.resumed_files == 4 and calls == [u.path for u in corpus[4:]]
    assert not partial.exists()
    fresh = write_store(corpus, tmp_path / "fresh", SETTINGS, workers=1, progress=False)
    assert (out / "predictors.npy").read_bytes() == (tmp_path / "fresh/predictors.npy").read_bytes()
    assert (out / "segments.csv").read_text() == (tmp_path / "fresh/segments.csv").read_text()
    assert summary.segments == fresh.segments and len(summary.skipped) == len(fresh.skipped) == 2


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="workers must inherit the patch")
def test_parallel_resume_and_copy_fallback(tmp_path, corpus, monkeypatch):
    interrupted_write(monkeypatch, corpus, tmp_path / "s", 5, workers=2)

    def no_kernel_copy(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(store_mod.os, "copy_file_range", no_kernel_copy, raising=False)
    assert list((tmp_path / "s.partial").glob("shard-*.f32"))   # the killed run's shards are left behind...
    summary = write_store(corpus, tmp_path / "s", SETTINGS, workers=2, progress=False)
    assert summary.resumed_files == 5 and not (tmp_path / "s.partial").exists()   # ...and cleaned up
    np.testing.assert_array_equal(SegmentStore(tmp_path / "s").predictors, expected_segments(corpus))


def test_lost_data_restarts_from_scratch(tmp_path, corpus, monkeypatch):
    interrupted_write(monkeypatch, corpus, tmp_path / "s", 4, workers=1)
    data = tmp_path / "s.partial" / "predictors.npy.part"
    with open(data, "r+b") as f:                               # the journal claims more than is there
        f.truncate(data.stat().st_size - 4)
    summary = write_store(corpus, tmp_path / "s", SETTINGS, workers=1, progress=False)
    assert summary.resumed_files == 0
    np.testing.assert_array_equal(SegmentStore(tmp_path / "s").predictors, expected_segments(corpus))


def test_partial_from_other_settings_is_discarded(tmp_path, corpus, monkeypatch):
    interrupted_write(monkeypatch, corpus, tmp_path / "s", 3, workers=1)
    other = SETTINGS.replace(segment_seconds=2.0, segment_hop_seconds=2.0)
    summary = write_store(corpus, tmp_path / "s", other, workers=1, progress=False)
    assert summary.resumed_files == 0 and SegmentStore(tmp_path / "s").feature_settings == other


def test_existing_store_reused_or_protected(tmp_path, corpus):
    out = tmp_path / "s"
    first = write_store(corpus, out, SETTINGS, workers=1, progress=False)
    again = write_store(corpus, out, SETTINGS, workers=1, progress=False)
    assert again.reused and again.segments == first.segments and len(again.skipped) == 2
    with pytest.raises(StoreError, match="overwrite"):
        write_store(corpus[:3], out, SETTINGS, workers=1, progress=False)
    rebuilt = write_store(corpus[:3], out, SETTINGS, workers=1, progress=False, overwrite=True)
    assert rebuilt.segments == 2 and len(SegmentStore(out)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "s"]


def test_all_files_skipped_gives_an_empty_but_valid_store(tmp_path, corpus):
    summary = write_store([corpus[2], corpus[-1]], tmp_path / "s", SETTINGS, workers=1, progress=False)
    store = SegmentStore(tmp_path / "s")
    assert summary.segments == 0 and store.predictors.shape == (0, 512, 128) and len(store.table) == 0


def test_segment_store_errors(tmp_path, corpus):
    with pytest.raises(StoreError, match="not found"):
        SegmentStore(tmp_path / "missing")
    write_store(corpus[:2], tmp_path / "s", SETTINGS, workers=1, progress=False)
    rows = (tmp_path / "s/segments.csv").read_text().splitlines()
    (tmp_path / "s/segments.csv").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(StoreError, match="1 rows but predictors.npy has 2"):
        SegmentStore(tmp_path / "s")
    (tmp_path / "s/info.json").write_text("{not json")
    with pytest.raises(StoreError, match="info.json"):
        SegmentStore(tmp_path / "s")
    (tmp_path / "s/predictors.npy").unlink()
    with pytest.raises(StoreError, match="predictors.npy is missing"):
        SegmentStore(tmp_path / "s")
    with pytest.raises(StoreError, match="workers"):
        write_store(corpus, tmp_path / "t", SETTINGS, workers=0)
