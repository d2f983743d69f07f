"""The segment store: writer (parallel, incremental, resumable) and memory-mapped reader.

A store is a folder ``OUT/<dataset>/`` holding

* ``predictors.npy``: float32 (N, time_frames, freq_bins) = (N, 512, 128), a plain .npy (no pickle), read
  with ``np.load(path, mmap_mode='r')``;
* ``segments.csv``: one row per segment, same order, columns :data:`SEGMENT_COLUMNS`
  (``session`` and V/A/D are empty where the corpus has none; labels are the corpus's own strings);
* ``skipped.csv``: ``path, reason`` of every file left out (reader and audio problems);
* ``info.json``: format, dataset, feature settings, counts, package version, creation time, and the
  fingerprint of the inputs.

How :func:`write_store` keeps memory flat, stays fast and survives interruptions: the segments of finished
files are appended, in input order, to ``OUT/<dataset>.partial/predictors.npy.part`` (a reserved .npy
header, then raw float32), and each file is then recorded in ``journal.jsonl``. With several workers, each
worker process writes its segments to its own shard file and returns only (shard, offset, count); the parent
moves them into the data file with an in-kernel copy (``os.copy_file_range``), so no spectrogram is pickled
through a pipe (that doubled the CPU time). A re-run with the same inputs and settings cuts the data back to
what the journal confirms and continues after the last journaled file. At the end the header is filled in,
the csv/json files are written (with :mod:`rhemo.atomic`), and the finished folder is moved to the final name
with ``os.replace``: the final name never holds a half-written store. This protects against interrupted or
killed runs; the data file and the shards are not fsync'ed (the store is a rebuildable cache, and syncing
hundreds of MB cost more than the rest of a 1,500-file run). Shards grow during a run, so the partial folder
may need up to twice the store's size on disk.

Faults. A run holds an exclusive lock (``fcntl.flock``) on ``OUT/<dataset>.lock`` from start to end: a second
run on the same store is refused at once with a StoreError naming the lock and the holder's pid (refused
rather than queued, so that nobody waits on a silent terminal; re-running after the first one finishes reuses
its store). Any failure to write (full disk, read-only or missing folder) is a StoreError naming the path; a
full disk keeps the partial folder, so the same command resumes once there is space. :class:`SegmentStore`
refuses a predictors.npy whose size is not exactly header + rows × row bytes.

Example:
    >>> summary = write_store(utterances, 'data/stores/iemocap', FeatureSettings(), workers=2)  # doctest: +SKIP
    >>> store = SegmentStore('data/stores/iemocap')                                            # doctest: +SKIP
    >>> store.predictors.shape, len(store.table)                                               # doctest: +SKIP
    ((12345, 512, 128), 12345)
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import functools
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import struct
from collections import Counter
from dataclasses import astuple, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rhemo.atomic import atomic_path, write_json, write_text
from rhemo.errors import DataError

from .features import AudioError, FeatureSettings, file_to_segments
from .readers import Skipped, Utterance

__all__ = [
    "PREDICTORS_FILE", "SEGMENTS_FILE", "SKIPPED_FILE", "INFO_FILE",
    "STORE_FORMAT",
    "SEGMENT_COLUMNS",
    "StoreError",
    "StoreSummary",
    "SegmentTable",
    "SegmentStore",
    "write_store",
    "store_fingerprint",
    "store_path",
]

STORE_FORMAT = "rhemo-store/1"
#: the files of a store folder
PREDICTORS_FILE = "predictors.npy"
SEGMENTS_FILE = "segments.csv"
SKIPPED_FILE = "skipped.csv"
INFO_FILE = "info.json"
SEGMENT_COLUMNS = ("utterance_id", "path", "speaker", "session", "segment_index", "label", "valence", "arousal",
                   "dominance")
SKIPPED_COLUMNS = ("path", "reason")
_HEADER_BYTES = 128  # .npy v1.0 header length we write (a multiple of 64, as numpy aligns it)
_BATCH_PER_WORKER = 64  # files in flight per worker: bounds the results waiting in memory


class StoreError(DataError):
    """A store is missing, incomplete or inconsistent, or cannot be written; the message names the file."""


@dataclass
class StoreSummary:
    """What :func:`write_store` did. ``reused`` is True when an identical finished store was already there."""

    path: Path
    dataset: str
    utterances: int
    segments: int
    skipped: list[Skipped] = field(default_factory=list)
    resumed_files: int = 0
    reused: bool = False

    def skipped_by_reason(self) -> dict[str, int]:
        """Counts per reason category (the text before the first colon)."""
        return dict(Counter(_category(s.reason) for s in self.skipped).most_common())


def _category(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def store_path(output: str | os.PathLike, name: str | None, default: str | None = None) -> Path:
    """``output/name`` (``name`` None: ``default``); raises StoreError for a name that is not one plain folder
    name (a path separator, '.', '..' or empty would put the store outside ``output``)."""
    name = default if name is None else name
    separators = {os.sep, "/", "\\"} | ({os.altsep} if os.altsep else set())
    if not name or name in (".", "..") or any(sep in name for sep in separators):
        raise StoreError(f"store name {name!r} is not a plain folder name: no path separators, '.' or '..' "
                         f"(the store goes to {Path(output) / '<name>'})")
    return Path(output) / name


# ---------------------------------------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------------------------------------
def store_fingerprint(utterances: Sequence[Utterance], settings: FeatureSettings,
                      skipped: Sequence[Skipped] = ()) -> str:
    """sha256 of everything that determines a store's content (inputs, annotations, feature settings)."""
    payload = json.dumps({"format": STORE_FORMAT, "settings": settings.to_dict(),
                          "utterances": [astuple(u) for u in utterances],
                          "skipped": [astuple(s) for s in skipped]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _segments_or_reason(path: str, settings: FeatureSettings) -> tuple[np.ndarray | None, str | None]:
    """(segments, None) or (None, reason) for an unusable file."""
    try:
        return file_to_segments(path, settings), None
    except AudioError as exc:
        return None, exc.reason


def _shard_task(path: str, settings: FeatureSettings, prefix: str) -> tuple[int, str | None, str | None, int]:
    """Worker task: segment one file into this process's shard; returns (n_segments, reason, shard, offset).

    Each worker process appends to its own shard ``<prefix>-<pid>.f32``, so the end of the file is where this
    file's segments start. The shard is closed after each file: its data is in the OS before the parent copies
    it, even if this process dies right after, and no worker keeps a file open between tasks.
    """
    segments, reason = _segments_or_reason(path, settings)
    if segments is None:
        return 0, reason, None, 0
    shard_path = f"{prefix}-{os.getpid()}.f32"
    with _naming(shard_path):  # closing flushes too, so it may also meet a full disk
        shard = open(shard_path, "ab")
        try:
            offset = shard.tell()
            shard.write(np.ascontiguousarray(segments, dtype=np.float32).data)
        finally:
            shard.close()
    return int(segments.shape[0]), None, shard_path, offset


def _results(paths: list[str], settings: FeatureSettings, workers: int, prefix: str):
    """Yield ``(n_segments, reason, source)`` per path, in input order.

    ``source`` is the segment array (one worker: computed in this process) or ``(shard path, byte offset)``
    (worker processes write their segments to shard files, so no spectrogram is pickled through a pipe).
    Files in flight are bounded by ``workers * _BATCH_PER_WORKER``.
    """
    if workers <= 1 or len(paths) <= 1:
        for path in paths:
            segments, reason = _segments_or_reason(path, settings)
            yield (0 if segments is None else segments.shape[0]), reason, segments
        return
    task = functools.partial(_shard_task, settings=settings, prefix=prefix)
    batch = workers * _BATCH_PER_WORKER
    chunksize = max(1, min(8, len(paths) // (workers * 16)))  # small corpora: one file per task
    with multiprocessing.get_context().Pool(workers) as pool:
        for start in range(0, len(paths), batch):
            for n_seg, reason, shard, offset in pool.imap(task, paths[start:start + batch], chunksize=chunksize):
                yield n_seg, reason, (shard, offset)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A .npy format 1.0 header for a C-order little-endian float32 array, exactly _HEADER_BYTES long."""
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': %r, }" % (tuple(int(n) for n in shape),)
    prefix = b"\x93NUMPY\x01\x00"
    body_len = _HEADER_BYTES - len(prefix) - 2
    if len(text) + 1 > body_len:
        raise StoreError(f"shape {shape} does not fit in the reserved .npy header")
    body = text.ljust(body_len - 1).encode("latin1") + b"\n"
    return prefix + struct.pack("<H", body_len) + body


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _copy_range(src: int, dst: int, offset: int, count: int) -> None:
    """Append ``count`` bytes of file ``src`` from ``offset`` to ``dst``: in-kernel when the OS allows it."""
    while count > 0:
        try:
            done = os.copy_file_range(src, dst, count, offset)
        except (AttributeError, OSError):  # not Linux, or a filesystem pair without copy_file_range
            done = os.write(dst, os.pread(src, min(count, 1 << 23), offset))
        if done <= 0:
            raise StoreError(f"shard data ends early while writing predictors (offset {offset})")
        offset += done
        count -= done


class _Journal:
    """State of an unfinished run in the partial folder.

    ``predictors.npy.part`` holds a reserved .npy header and then the segments of the finished files, in
    input order; ``journal.jsonl`` has one line ``[index, n_segments, reason|null]`` per finished file,
    written after its data.
    """

    def __init__(self, work: Path, segment_bytes: int):
        self.journal_path = work / "journal.jsonl"
        self.data_path = work / "predictors.npy.part"
        self.segment_bytes = segment_bytes
        self.entries: list[tuple[int, str | None]] = []  # (n_segments, reason) by file index

    @property
    def segments(self) -> int:
        return sum(n for n, _ in self.entries)

    def record(self, log, n_segments: int, reason: str | None) -> None:
        """Journal the next file (``log``: journal.jsonl opened for appending); call once its data is written."""
        log.write(json.dumps([len(self.entries), n_segments, reason]) + "\n")
        log.flush()
        self.entries.append((n_segments, reason))

    def load(self) -> None:
        """Keep the journal prefix made of whole lines whose data is all there; cut both files back to it."""
        valid_bytes = 0
        if self.journal_path.exists():
            with open(self.journal_path, "rb") as f:
                for raw in f:
                    try:
                        index, n_seg, reason = json.loads(raw) if raw.endswith(b"\n") else (None, None, None)
                    except (ValueError, TypeError):
                        break
                    if index != len(self.entries) or not isinstance(n_seg, int) or n_seg < 0:
                        break
                    self.entries.append((n_seg, reason))
                    valid_bytes += len(raw)
        needed = _HEADER_BYTES + self.segments * self.segment_bytes
        if not self.data_path.exists() or self.data_path.stat().st_size < needed:
            self.entries, valid_bytes, needed = [], 0, _HEADER_BYTES  # data lost: start again
            with open(self.data_path, "wb") as f:
                f.write(b"\0" * _HEADER_BYTES)
        with open(self.data_path, "r+b") as f:
            f.truncate(needed)
        with open(self.journal_path, "ab") as f:
            f.truncate(valid_bytes)


def _open_work(work: Path, fingerprint: str) -> None:
    """Make the partial folder, discarding one left by a run with other inputs or settings."""
    marker = work / "fingerprint"
    if work.exists():
        same = marker.exists() and marker.read_text().strip() == fingerprint
        if not same:
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        write_text(marker, fingerprint + "\n")
    for stale in work.glob("shard-*.f32"):  # a killed run's shards: their journaled data is already copied
        stale.unlink()


@contextlib.contextmanager
def _naming(path: str | os.PathLike):
    """Let an OSError raised without a file name (os.write, file.write) name ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


@contextlib.contextmanager
def _exclusive_lock(out: Path):
    """Hold ``OUT/<name>.lock`` (flock) for the whole write; a second writer is refused, it never waits.

    The lock file is removed at the end while still locked; a run that locked a file removed meanwhile (its
    inode is no longer the path's) tries again, so two runs never hold locks on different files.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.with_name(out.name + ".lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise StoreError(f"another preprocessing run (pid {holder}) is writing {out}: {lock_path} is locked; "
                             f"wait for it to finish (the same command then reuses its store) or stop it") from None
        if _same_file(fd, lock_path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _write_failure(exc: OSError, out: Path) -> str:
    """One line for a failed write: the path, and for a full disk how to resume."""
    where = exc.filename or out
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{where}: no space left on device; the finished files are kept in "
                f"{out.with_name(out.name + '.partial')}: free some space and run the same command again to resume")
    return f"cannot write {where}: {exc.strerror or exc}"


def write_store(utterances: Sequence[Utterance], out_dir: str | os.PathLike, settings: FeatureSettings,
                workers: int | None = None, skipped: Iterable[Skipped] = (), *, dataset: str | None = None,
                overwrite: bool = False, progress: bool = True) -> StoreSummary:
    """Turn utterances into a segment store at ``out_dir`` (see the module docstring).

    ``workers`` processes (default ``os.cpu_count()``; 1 = in this process). ``skipped`` are the reader's
    skip records, copied into skipped.csv. ``dataset`` goes into info.json (default: the folder name).
    An existing store built from the same inputs and settings is kept as it is (``reused=True``); a different
    one raises StoreError unless ``overwrite``. Unusable audio never stops the run: it is listed in
    skipped.csv. Another run writing the same store, or a failed write (full disk, read-only folder), raises
    StoreError naming the path. Returns a :class:`StoreSummary`.
    """
    out = Path(os.path.abspath(out_dir))
    if out.parent.exists() and not out.parent.is_dir():
        raise StoreError(f"output {out.parent} is not a folder (it is a file); expected the folder that receives "
                         f"the store {out.name}/")
    try:
        with _exclusive_lock(out):
            return _write_store_locked(list(utterances), out, settings, workers, list(skipped), dataset,
                                       overwrite, progress)
    except OSError as exc:
        raise StoreError(_write_failure(exc, out)) from None


def _write_store_locked(utterances: list[Utterance], out: Path, settings: FeatureSettings, workers: int | None,
                        skipped: list[Skipped], dataset: str | None, overwrite: bool,
                        progress: bool) -> StoreSummary:
    """:func:`write_store` once the lock is held: reuse, or resume/start the partial folder, then finish."""
    dataset = dataset or out.name
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise StoreError(f"workers must be >= 1, got {workers}")
    fingerprint = store_fingerprint(utterances, settings, skipped)
    existing = _existing_store(out, dataset, fingerprint, overwrite)
    if existing is not None:
        return existing

    work = out.with_name(out.name + ".partial")
    _open_work(work, fingerprint)
    journal = _Journal(work, settings.time_frames * settings.freq_bins * 4)
    journal.load()
    resumed = len(journal.entries)
    from tqdm import tqdm

    with tqdm(total=len(utterances), initial=resumed, unit="file", desc=f"preprocessing {dataset}",
              disable=not progress, dynamic_ncols=True) as bar:
        shape = _append_segments(journal, [u.path for u in utterances[resumed:]], settings, workers, bar)

    all_skipped = skipped + [Skipped(u.path, reason) for u, (_, reason) in zip(utterances, journal.entries)
                             if reason is not None]
    n_ok = sum(1 for n, _ in journal.entries if n > 0)
    summary = StoreSummary(out, dataset, n_ok, journal.segments, all_skipped, resumed_files=resumed)
    info = _store_info(summary, settings, shape, len(utterances) + len(skipped), fingerprint)
    stage = _stage_store(work, journal, _segment_rows(utterances, journal.entries), all_skipped, info)
    _move_into_place(stage, out)
    shutil.rmtree(work)
    return summary


def _existing_store(out: Path, dataset: str, fingerprint: str, overwrite: bool) -> StoreSummary | None:
    """The summary of the store at ``out`` when it was built from these inputs (``reused=True``); None when
    there is none or ``overwrite`` rebuilds it; StoreError when it was built from other inputs."""
    if overwrite or not out.exists():
        return None
    try:
        old = json.loads((out / INFO_FILE).read_text())
    except (OSError, ValueError):
        old = {}
    if old.get("fingerprint") != fingerprint:
        raise StoreError(f"{out} already exists and was built from other inputs or settings; remove it or "
                         f"pass overwrite=True (preprocessing.py --overwrite) to rebuild it")
    store = SegmentStore(out)
    return StoreSummary(out, dataset, int(old["counts"]["utterances"]), len(store), store.skipped(), reused=True)


def _append_segments(journal: _Journal, paths: list[str], settings: FeatureSettings, workers: int,
                     bar) -> tuple[int, int, int]:
    """Segment ``paths`` and append them to predictors.npy.part in input order, journaling each file after its
    data; then fill in the .npy header. Returns the data's shape (N, time_frames, freq_bins)."""
    prefix = str(journal.data_path.parent / f"shard-{os.urandom(4).hex()}")
    data = os.open(journal.data_path, os.O_WRONLY)  # no O_APPEND: copy_file_range refuses it
    shards: dict[str, int] = {}  # shard path → descriptor open for reading
    try:
        os.lseek(data, 0, os.SEEK_END)
        with open(journal.journal_path, "a", encoding="utf-8") as log:
            for n_seg, reason, source in _results(paths, settings, workers, prefix):
                with _naming(journal.data_path):
                    _append_one(data, source, n_seg * journal.segment_bytes, shards)
                journal.record(log, n_seg, reason)
                bar.update(1)
        shape = (journal.segments, settings.time_frames, settings.freq_bins)
        os.pwrite(data, _npy_header(shape), 0)
    finally:
        os.close(data)
        for fd in shards.values():
            os.close(fd)
    return shape


def _append_one(data: int, source, n_bytes: int, shards: dict[str, int]) -> None:
    """Append one file's segments to ``data``: ``source`` is the array itself (no workers), ``(shard path,
    offset)`` (workers) or None (no segments)."""
    if isinstance(source, np.ndarray):
        _write_all(data, np.ascontiguousarray(source, dtype=np.float32))
    elif n_bytes:
        shard_path, offset = source
        if shard_path not in shards:
            shards[shard_path] = os.open(shard_path, os.O_RDONLY)
        _copy_range(shards[shard_path], data, offset, n_bytes)


def _store_info(summary: StoreSummary, settings: FeatureSettings, shape: tuple[int, int, int], input_files: int,
                fingerprint: str) -> dict:
    """The content of info.json."""
    from rhemo import __version__

    return {
        "format": STORE_FORMAT,
        "dataset": summary.dataset,
        "feature_settings": settings.to_dict(),
        "shape": list(shape),
        "dtype": "float32",
        "counts": {"input_files": input_files, "utterances": summary.utterances,
                   "segments": summary.segments, "skipped": len(summary.skipped)},
        "skipped_by_reason": summary.skipped_by_reason(),
        "rhemo_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint,
    }


def _stage_store(work: Path, journal: _Journal, segment_rows: Iterable[Sequence], skipped: Sequence[Skipped],
                 info: dict) -> Path:
    """Assemble the finished store in ``work/store`` (tables, info.json, the journal's data); returns it."""
    stage = work / "store"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    _write_csv(stage / SEGMENTS_FILE, SEGMENT_COLUMNS, segment_rows)
    _write_csv(stage / SKIPPED_FILE, SKIPPED_COLUMNS, ((s.path, s.reason) for s in skipped))
    write_json(stage / INFO_FILE, info)
    os.replace(journal.data_path, stage / PREDICTORS_FILE)
    return stage


def _move_into_place(stage: Path, out: Path) -> None:
    """Rename the staged folder to ``out``; a previous store there is moved aside first, then removed."""
    old = None
    if out.exists():
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old)


def _segment_rows(utterances: Sequence[Utterance], entries: Sequence[tuple[int, str | None]]):
    for utt, (n_seg, _) in zip(utterances, entries):
        for k in range(n_seg):
            yield (utt.utterance_id, utt.path, utt.speaker, _fmt(utt.session), k, utt.label, _fmt(utt.valence),
                   _fmt(utt.arousal), _fmt(utt.dominance))


# ---------------------------------------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------------------------------------
@dataclass
class SegmentTable:
    """segments.csv as numpy columns, one entry per segment (row i describes predictors[i]).

    String columns are numpy str arrays; ``session`` and ``segment_index`` are int64 (session -1 = none);
    V/A/D are float64 (nan = none).
    """

    utterance_id: np.ndarray
    path: np.ndarray
    speaker: np.ndarray
    session: np.ndarray
    segment_index: np.ndarray
    label: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    dominance: np.ndarray

    def __post_init__(self):
        lengths = {name: len(getattr(self, name)) for name in SEGMENT_COLUMNS}
        if len(set(lengths.values())) > 1:
            raise StoreError(f"segment table columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.utterance_id)

    def subset(self, indices: np.ndarray) -> "SegmentTable":
        """The rows at ``indices`` (int array or boolean mask)."""
        return SegmentTable(**{name: getattr(self, name)[indices] for name in SEGMENT_COLUMNS})

    @classmethod
    def read_csv(cls, path: str | os.PathLike) -> "SegmentTable":
        """Parse a segments.csv; raises StoreError naming the file and the bad line."""
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                rows = list(reader)
        except OSError as exc:
            raise StoreError(f"{path}: cannot read segment table ({exc.strerror or exc})") from None
        if header is None or tuple(header[:len(SEGMENT_COLUMNS)]) != SEGMENT_COLUMNS:
            raise StoreError(f"{path}: header {header} does not start with {list(SEGMENT_COLUMNS)}")
        cols: dict[str, list] = {name: [] for name in SEGMENT_COLUMNS}
        for line_no, row in enumerate(rows, start=2):
            if len(row) < len(SEGMENT_COLUMNS):
                raise StoreError(f"{path} line {line_no}: {len(row)} fields, expected {len(SEGMENT_COLUMNS)}")
            for name, value in zip(SEGMENT_COLUMNS, row):
                cols[name].append(value)
        try:
            ints = {name: np.array([int(v) if v != "" else -1 for v in cols[name]], dtype=np.int64)
                    for name in ("session", "segment_index")}
            floats = {name: np.array([float(v) if v != "" else np.nan for v in cols[name]], dtype=np.float64)
                      for name in ("valence", "arousal", "dominance")}
        except ValueError as exc:
            raise StoreError(f"{path}: bad number in a session/segment_index/V/A/D column ({exc})") from None
        strs = {name: np.array(cols[name], dtype=str) for name in ("utterance_id", "path", "speaker", "label")}
        return cls(**strs, **ints, **floats)


def _check_data_size(path: Path) -> None:
    """Raise StoreError unless the .npy at ``path`` is exactly its header plus its array's bytes (a short file
    cannot be mapped, and a long one means rows of another run were appended)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        header = f.tell()
        size = os.fstat(f.fileno()).st_size
    expected = header + math.prod(shape) * dtype.itemsize
    if size != expected:
        dims = " × ".join(str(n) for n in shape)
        raise StoreError(f"{path} has {size} bytes, expected {expected} ({header}-byte header + {dims} × "
                         f"{dtype.itemsize} bytes): it is truncated or was written by two runs at once; rebuild "
                         f"the store with preprocessing.py --overwrite")


class SegmentStore:
    """Read-only view of a store folder written by :func:`write_store`.

    Attributes: ``path``; ``predictors`` (read-only float32 memmap (N, time_frames, freq_bins));
    ``table`` (:class:`SegmentTable`, N rows); ``info`` (dict from info.json); ``feature_settings``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise StoreError(f"segment store {self.path} not found: expected a folder with predictors.npy, "
                             f"segments.csv and info.json (write one with preprocessing.py)")
        for name in (PREDICTORS_FILE, SEGMENTS_FILE, INFO_FILE):
            if not (self.path / name).is_file():
                raise StoreError(f"segment store {self.path} is incomplete: {name} is missing")
        info_path = self.path / INFO_FILE
        try:
            self.info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{info_path}: not valid JSON ({exc})") from None
        if not isinstance(self.info, dict) or "feature_settings" not in self.info or "dataset" not in self.info:
            raise StoreError(f"{info_path}: expected keys 'dataset' and 'feature_settings'")
        try:
            self.feature_settings = FeatureSettings.from_dict(self.info["feature_settings"], source=str(info_path))
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        pred_path = self.path / PREDICTORS_FILE
        try:
            _check_data_size(pred_path)
            self.predictors = np.load(pred_path, mmap_mode="r", allow_pickle=False)
        except StoreError:
            raise
        except (OSError, ValueError) as exc:
            raise StoreError(f"{pred_path}: not a readable .npy array ({exc})") from None
        expected_tail = (self.feature_settings.time_frames, self.feature_settings.freq_bins)
        if self.predictors.dtype != np.float32 or self.predictors.ndim != 3 \
                or self.predictors.shape[1:] != expected_tail:
            raise StoreError(f"{pred_path}: expected float32 (N, {expected_tail[0]}, {expected_tail[1]}), got "
                             f"{self.predictors.dtype} {self.predictors.shape}")
        self.table = SegmentTable.read_csv(self.path / SEGMENTS_FILE)
        if len(self.table) != self.predictors.shape[0]:
            raise StoreError(f"{self.path}: segments.csv has {len(self.table)} rows but predictors.npy has "
                             f"{self.predictors.shape[0]} segments")

    @property
    def dataset(self) -> str:
        return str(self.info["dataset"])

    def __len__(self) -> int:
        return int(self.predictors.shape[0])

    def skipped(self) -> list[Skipped]:
        """Rows of skipped.csv (empty list if the file is absent)."""
        path = self.path / SKIPPED_FILE
        if not path.exists():
            return []
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        return [Skipped(r[0], r[1]) for r in rows[1:] if len(r) >= 2]

    def __repr__(self) -> str:
        return f"SegmentStore({str(self.path)!r}, dataset={self.dataset!r}, segments={len(self)})"
