"""Preprocessing under hostile conditions: concurrent runs, damaged stores, special files, full or read-only
disks, escaping names, and the exact wording of skip reasons (issue 11, items 1, 4, 10, 11, 13)."""

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import preprocessing
from rhemo.data import store as store_mod
from rhemo.data.features import AudioError, FeatureSettings, audio_to_segments, file_to_segments
from rhemo.data.readers import read_corpus
from rhemo.data.store import SegmentStore, StoreError, store_path, write_store

REPO = Path(preprocessing.__file__).resolve().parent
SR = 16000


@contextmanager
def no_hang(seconds: float = 30.0):
    """Turn a hang (e.g. a FIFO opened for reading) into a test failure instead of a stuck suite."""
    def fail(*_):
        raise TimeoutError(f"hung for more than {seconds} s")
    previous = signal.signal(signal.SIGALRM, fail)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def tone(path: Path, seconds: float, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
    return path


def emodb(root: Path, n: int = 6) -> Path:
    for k in range(n):
        tone(root / "wav" / f"{k + 3:02d}a0{k % 9 + 1}Fa.wav", 1.0 + 0.5 * k, k)
    return root


def cli(*args: str) -> list[str]:
    return [*args, "--workers", "1", "--no-progress"]


# ------------------------------------------------------------------------------------ 1: store lock
SLOW_RUN = ("import sys, time; import rhemo.data.store as s; f = s.file_to_segments; "
            "s.file_to_segments = lambda p, st: (time.sleep(0.4), f(p, st))[1]; "
            "import preprocessing; sys.exit(preprocessing.main(sys.argv[1:]))")


def test_second_concurrent_run_is_refused_and_first_store_is_intact(tmp_path):
    root, out = emodb(tmp_path / "emodb"), tmp_path / "out"
    args = cli("--dataset", "emodb", "--input", str(root), "--output", str(out))
    first = subprocess.Popen([sys.executable, "-c", SLOW_RUN, *args], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        journal = out / "emodb.partial" / "journal.jsonl"
        deadline = time.monotonic() + 60
        while not (journal.exists() and journal.read_text().count("\n") >= 1):
            assert first.poll() is None and time.monotonic() < deadline, "the first run ended too early"
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "preprocessing.py", *args], cwd=REPO, capture_output=True,
                                text=True, timeout=120)
        assert first.poll() is None, "the first run must still be writing when the second one starts"
    finally:
        first_out, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode == 2
    err = second.stderr.strip().splitlines()
    assert len(err) == 1 and "another preprocessing run" in err[0] and str(out / "emodb.lock") in err[0]
    assert f"pid {first.pid}" in err[0]
    assert_rows_match_files(SegmentStore(out / "emodb"), expected_rows=6)
    again = subprocess.run([sys.executable, "preprocessing.py", *args], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0 and "nothing to do" in again.stdout  # the lock was released


def assert_rows_match_files(store: SegmentStore, expected_rows: int) -> None:
    """Every row's spectrogram is the one its segments.csv line names (files of at most 4 s: one row each)."""
    assert len(store) == expected_rows
    for k, path in enumerate(store.table.path):
        signal_ = sf.read(path, dtype="float32")[0]
        np.testing.assert_array_equal(store.predictors[k], audio_to_segments(signal_, FeatureSettings())[0])


def test_store_with_wrong_data_size_is_refused(tmp_path):
    root = emodb(tmp_path / "emodb", n=2)
    utts, skipped = read_corpus("emodb", root)
    write_store(utts, tmp_path / "s", FeatureSettings(), workers=1, skipped=skipped, progress=False)
    data = tmp_path / "s" / "predictors.npy"
    good = data.read_bytes()
    assert len(good) == 128 + 2 * 512 * 128 * 4
    # a row too many or a few bytes more: np.load alone accepts both; a few bytes less
    for damaged in (good + b"\0" * 512 * 128 * 4, good + b"\0" * 4, good[:-4]):
        data.write_bytes(damaged)
        with pytest.raises(StoreError) as info:
            SegmentStore(tmp_path / "s")
        message = str(info.value)
        assert str(data) in message and f"expected {len(good)}" in message and str(len(damaged)) in message


# ------------------------------------------------------------------------ 4: files that are not files
def special_entries(folder: Path, names: tuple[str, str, str]) -> dict[str, str]:
    """A FIFO, a broken symlink and a directory, each named like an utterance; name → expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    fifo, link, directory = names
    os.mkfifo(folder / fifo)
    os.symlink(folder / "gone.wav.target", folder / link)
    (folder / directory).mkdir()
    return {fifo: "not a regular file", link: "broken symlink", directory: "not a regular file"}


def iemocap_tree(root: Path) -> dict[str, str]:
    dialog = root / "Session1" / "sentences" / "wav" / "Ses01F_impro01"
    tone(dialog / "Ses01F_impro01_F000.wav", 1.0, 0)
    ids = [f"Ses01F_impro01_F00{k}" for k in range(4)]
    labels = root / "Session1" / "dialog" / "EmoEvaluation"
    labels.mkdir(parents=True)
    (labels / "Ses01F_impro01.txt").write_text("".join(f"[1.0 - 2.0]\t{i}\tneu\t[2.0, 3.0, 4.0]\n" for i in ids))
    return special_entries(dialog, tuple(f"{i}.wav" for i in ids[1:]))


def ravdess_tree(root: Path) -> dict[str, str]:
    tone(root / "Actor_01" / "03-01-01-01-01-01-01.wav", 1.0, 0)
    return special_entries(root / "Actor_01", tuple(f"03-01-0{k}-01-01-01-01.wav" for k in (2, 3, 4)))


def emodb_tree(root: Path) -> dict[str, str]:
    tone(root / "wav" / "03a01Fa.wav", 1.0, 0)
    return special_entries(root / "wav", ("03a01Wa.wav", "03a02Fa.wav", "03a02Wa.wav"))


def tess_tree(root: Path) -> dict[str, str]:
    tone(root / "OAF_angry" / "OAF_back_angry.wav", 1.0, 0)
    return special_entries(root / "OAF_angry", ("OAF_bar_angry.wav", "OAF_base_angry.wav", "OAF_bath_angry.wav"))


def folder_tree(root: Path) -> dict[str, str]:
    tone(root / "ang" / "a.wav", 1.0, 0)
    return special_entries(root / "ang", ("b.wav", "c.wav", "d.wav"))


TREES = {"iemocap": iemocap_tree, "ravdess": ravdess_tree, "emodb": emodb_tree, "tess": tess_tree,
         "folder": folder_tree}


@pytest.mark.parametrize("dataset", sorted(TREES))
def test_fifo_broken_link_and_directory_are_skip_lines(tmp_path, dataset):
    expected = TREES[dataset](tmp_path / "corpus")
    with no_hang():
        utts, skipped = read_corpus(dataset, tmp_path / "corpus")
        summary = write_store(utts, tmp_path / "store", FeatureSettings(), workers=1, skipped=skipped,
                              progress=False)
    assert len(utts) == 1
    with open(tmp_path / "store" / "skipped.csv", newline="") as f:
        rows = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    assert sorted(rows) == sorted(expected)
    for name, reason in expected.items():
        assert rows[name].startswith(reason + ":"), rows[name]
    assert "FIFO" in rows[sorted(expected)[0]] and "gone.wav.target" in rows[sorted(expected)[1]]
    assert "directory" in rows[sorted(expected)[2]]
    counts = json.loads((tmp_path / "store" / "info.json").read_text())["counts"]
    assert counts["input_files"] == 4 and counts["skipped"] == 3 and counts["utterances"] == 1
    assert summary.skipped_by_reason() == {"not a regular file": 2, "broken symlink": 1}


def test_manifest_row_naming_a_fifo_is_not_called_missing(tmp_path):
    expected = special_entries(tmp_path / "audio", ("p.wav", "q.wav", "r.wav"))
    tone(tmp_path / "audio" / "ok.wav", 1.0, 0)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"audio/{n},ang\n" for n in ["ok.wav", *expected])
                        + "audio/absent.wav,ang\n")
    with no_hang():
        utts, skipped = read_corpus("folder", manifest)
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert [Path(u.path).name for u in utts] == ["ok.wav"]
    for name, reason in expected.items():
        assert reasons[name].startswith(reason + ":")
    assert reasons["absent.wav"].startswith("missing file:")


def test_audio_loader_never_opens_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "x.wav")
    with no_hang(), pytest.raises(AudioError) as info:
        file_to_segments(tmp_path / "x.wav", FeatureSettings())
    assert info.value.reason.startswith("not a regular file:") and "FIFO" in info.value.reason


# ------------------------------------------------------------------------------- 13b: specific reasons
def test_zero_byte_wav_is_an_empty_file(tmp_path):
    (tmp_path / "e.wav").write_bytes(b"")
    with pytest.raises(AudioError) as info:
        file_to_segments(tmp_path / "e.wav", FeatureSettings())
    assert info.value.reason == "empty file: 0 bytes"


def test_label_line_without_tabs_is_malformed_line_n(tmp_path):
    dialog = tmp_path / "Session1" / "sentences" / "wav" / "Ses01F_impro01"
    for k in range(2):
        tone(dialog / f"Ses01F_impro01_F00{k}.wav", 1.0, k)
    labels = tmp_path / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    labels.parent.mkdir(parents=True)
    labels.write_text("% header\n\n[1.0 - 2.0]\tSes01F_impro01_F000\tneu\t[2.0, 3.0, 4.0]\n"
                      "[3.0 - 4.0] Ses01F_impro01_F001 ang [2.0, 3.0, 4.0]\n")
    utts, skipped = read_corpus("iemocap", tmp_path)
    assert [u.utterance_id for u in utts] == ["Ses01F_impro01_F000"]
    (only,) = skipped
    assert Path(only.path).name == "Ses01F_impro01_F001.wav"
    assert only.reason.startswith("malformed line: line 4 of ") and str(labels) in only.reason
    assert "tab" in only.reason


# ------------------------------------------------------------------------------------- 10: disk full
def test_disk_full_is_one_line_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    root, out = emodb(tmp_path / "emodb", n=4), tmp_path / "out"
    args = cli("--dataset", "emodb", "--input", str(root), "--output", str(out))
    real_write, calls = store_mod._write_all, []

    def full_disk(fd, data):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, data)

    monkeypatch.setattr(store_mod, "_write_all", full_disk)
    assert preprocessing.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on device" in err[0].lower()
    assert str(out / "emodb.partial" / "predictors.npy.part") in err[0] and "resume" in err[0]
    monkeypatch.setattr(store_mod, "_write_all", real_write)
    assert preprocessing.main(args) == 0
    assert "resumed an interrupted run: 2 files were already done" in capsys.readouterr().out
    assert_rows_match_files(SegmentStore(out / "emodb"), expected_rows=4)


# --------------------------------------------------------------------- 11, 13a: where the store goes
def test_output_that_is_a_file_is_one_line(tmp_path, capsys):
    root = emodb(tmp_path / "emodb", n=1)
    (tmp_path / "taken").write_text("a file, not a folder")
    assert preprocessing.main(cli("--dataset", "emodb", "--input", str(root), "--output",
                                  str(tmp_path / "taken"))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "taken") in err[0] and "not a folder" in err[0]


def test_read_only_output_is_one_line(tmp_path, monkeypatch, capsys):
    # Tests run as root, which chmod cannot stop: the read-only filesystem is simulated at the first write.
    root = emodb(tmp_path / "emodb", n=1)

    def read_only(work, fingerprint):
        raise OSError(errno.EROFS, "Read-only file system", str(work))

    monkeypatch.setattr(store_mod, "_open_work", read_only)
    assert preprocessing.main(cli("--dataset", "emodb", "--input", str(root), "--output",
                                  str(tmp_path / "out"))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Read-only file system" in err[0] and str(tmp_path / "out" / "emodb.partial") in err[0]


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "", "x\\y"])
def test_store_names_cannot_leave_the_output_folder(tmp_path, name, capsys):
    with pytest.raises(StoreError, match="store name"):
        store_path(tmp_path / "out", name)
    root = emodb(tmp_path / "emodb", n=1)
    code = preprocessing.main(cli("--dataset", "emodb", "--input", str(root), "--output",
                                  str(tmp_path / "a" / "b" / "out"), "--name", name))
    assert code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emodb"]


def test_plain_store_names_are_accepted(tmp_path):
    assert store_path(tmp_path, "iemocap_4s") == tmp_path / "iemocap_4s"
    assert store_path(tmp_path, None, default="emodb") == tmp_path / "emodb"


def test_empty_wav_in_a_corpus_is_an_empty_file_skip_line(tmp_path):
    tone(tmp_path / "wav" / "03a01Fa.wav", 1.0, 0)
    (tmp_path / "wav" / "03a01Wa.wav").write_bytes(b"")
    utts, skipped = read_corpus("emodb", tmp_path)
    assert [u.utterance_id for u in utts] == ["03a01Fa"]
    assert [(Path(s.path).name, s.reason) for s in skipped] == [("03a01Wa.wav", "empty file: 0 bytes")]


def test_disk_full_in_a_worker_names_its_shard(tmp_path, monkeypatch):
    root = emodb(tmp_path / "emodb", n=4)
    utts, skipped = read_corpus("emodb", root)
    real_open = open

    class FullDisk:
        def __init__(self, path):
            self.file = real_open(path, "wb")

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

    def opening(path, mode="r", *args, **kwargs):   # the workers are forked and inherit this
        return FullDisk(path) if str(path).endswith(".f32") else real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(store_mod, "open", opening, raising=False)
    with pytest.raises(StoreError) as info:
        write_store(utts, tmp_path / "s", FeatureSettings(), workers=2, skipped=skipped, progress=False)
    message = str(info.value)
    assert "no space left on device" in message and ".f32" in message and str(tmp_path / "s.partial") in message
    monkeypatch.undo()
    write_store(utts, tmp_path / "s", FeatureSettings(), workers=2, skipped=skipped, progress=False)
    assert_rows_match_files(SegmentStore(tmp_path / "s"), expected_rows=4)
