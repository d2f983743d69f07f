"""The run folder: its file names, the fold/seed directory rule, metrics records, protection and fold locks.

Layout written by the launcher and the training scripts (every name below is defined here and only here)::

    results/<exp>_<name>/<run>[/seed<s>]/fold<k>/
        config.json  log.csv  metrics.json  checkpoint.pt  last.pt  best.pt  error.txt  fold.lock
        environment.json  predictions_test.csv  predictions_val.csv  curves.png  confusion.png
        confusion_utterance.png  diagnostics.png  tensorboard/
    results/<exp>_<name>/<run>[/seed<s>]/summary.json


A run folder belongs to one configuration. A training command refuses a folder that holds a finished run
(``metrics.json`` with status ``done``) or the results (checkpoint.pt, last.pt) of another configuration
(``config.json`` or ``last.pt`` written with different values outside the resume-free keys); ``--force``
retrains it, keeping the old record as ``metrics.previous.json``. A fold folder is trained by one launcher at a time: :class:`FoldLock` holds an
exclusive ``fcntl.flock`` on ``fold.lock`` for the fold's lifetime, and the kernel releases it when the holder
dies, even by kill -9.

Example:
    >>> config_differences({"seed": 1, "gpu_id": 0}, {"seed": 2, "gpu_id": 1}, free_keys={"gpu_id"})
    ['seed']
"""
from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Collection

from rhemo.atomic import write_json
from rhemo.train.config import ConfigError, options_for

__all__ = ["RunFolderError", "DISK_FULL_ERRNOS", "METRICS_FILE", "PREVIOUS_METRICS_FILE", "LOCK_FILE",
           "CONFIG_FILE", "CHECKPOINT_FILE", "LAST_FILE", "BEST_FILE", "LOG_FILE", "ERROR_FILE", "SUMMARY_FILE",
           "ENVIRONMENT_FILE", "RUN_LOG_FILE", "CURVES_FILE", "CONFUSION_FILE", "CONFUSION_UTTERANCE_FILE",
           "DIAGNOSTICS_FILE", "TENSORBOARD_DIR", "predictions_file", "FOLD_DIR_PATTERN", "SEED_DIR_PATTERN",
           "seed_dir", "fold_dir", "fold_dirs", "seed_dirs", "read_metrics", "write_metrics", "config_differences",
           "run_finished", "holds_results", "check_run_folder", "stale_temp_files", "remove_stale_temps", "FoldLock",
           "lock_for_training"]

METRICS_FILE = "metrics.json"
PREVIOUS_METRICS_FILE = "metrics.previous.json"
CONFIG_FILE = "config.json"
LOCK_FILE = "fold.lock"
CHECKPOINT_FILE = "checkpoint.pt"
LAST_FILE = "last.pt"
BEST_FILE = "best.pt"
LOG_FILE = "log.csv"
ERROR_FILE = "error.txt"
SUMMARY_FILE = "summary.json"
ENVIRONMENT_FILE = "environment.json"
#: the launcher's copy of a training's console output
RUN_LOG_FILE = "run.log"
CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion.png"
CONFUSION_UTTERANCE_FILE = "confusion_utterance.png"
DIAGNOSTICS_FILE = "diagnostics.png"
TENSORBOARD_DIR = "tensorboard"
#: a fold folder's name; group 1 is the fold number
FOLD_DIR_PATTERN = re.compile(r"^fold(\d+)$")
#: a seed folder's name (a run repeated over seeds); group 1 is the seed
SEED_DIR_PATTERN = re.compile(r"^seed(\d+)$")
#: errno values meaning "the disk (or the user's quota) is full"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
#: temporary files of interrupted atomic writes (rhemo.atomic: "<name>.<random>.tmp"; older ones "<name>.tmp")
_TEMP_PATTERNS = tuple(f"{name}.*tmp" for name in (CHECKPOINT_FILE, LAST_FILE, BEST_FILE, CONFIG_FILE, METRICS_FILE,
                                                      LOG_FILE))


def predictions_file(split: str) -> str:
    """``predictions_<split>.csv``: a SER run's per-utterance predictions on ``split`` ('val' or 'test')."""
    return f"predictions_{split}.csv"


def seed_dir(run_dir: str | os.PathLike, seed: int | None) -> Path:
    """``<run_dir>/seed<seed>`` for a run repeated over seeds; ``run_dir`` itself when ``seed`` is None."""
    return Path(run_dir) if seed is None else Path(run_dir) / f"seed{seed}"


def fold_dir(run_dir: str | os.PathLike, fold: int, seed: int | None = None) -> Path:
    """``<run_dir>/fold<fold>``, or ``<run_dir>/seed<seed>/fold<fold>`` for a run repeated over seeds."""
    return seed_dir(run_dir, seed) / f"fold{fold}"


def _numbered_dirs(folder: str | os.PathLike, pattern: re.Pattern) -> list[tuple[int, Path]]:
    matches = ((pattern.match(child.name), child) for child in Path(folder).iterdir() if child.is_dir())
    return sorted((int(match.group(1)), child) for match, child in matches if match)


def fold_dirs(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """The ``fold<k>`` sub-folders of ``folder`` as (k, path), sorted by k."""
    return _numbered_dirs(folder, FOLD_DIR_PATTERN)


def seed_dirs(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """The ``seed<s>`` sub-folders of a run folder as (s, path), sorted by s."""
    return _numbered_dirs(run_dir, SEED_DIR_PATTERN)


def read_metrics(path: str | os.PathLike) -> tuple[str, dict[str, Any] | None, str]:
    """Read a ``metrics.json``: (status, metrics or None, note). Never raises on a bad file.

    status is 'done', 'missing' (no file) or 'corrupt' (unreadable, not an object, or status not 'done').
    """
    path = Path(path)
    if not path.exists():
        return "missing", None, ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return "corrupt", None, f"unreadable {path.name}: {exc}"
    if not isinstance(data, dict):
        return "corrupt", None, f"{path.name} is not a JSON object"
    if data.get("status", "done") != "done":
        return "corrupt", None, f"{path.name} has status {data.get('status')!r}"
    return "done", data, str(data.get("note") or "")


def write_metrics(folder: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write ``folder/metrics.json`` atomically (nan → null); returns its path."""
    path = Path(folder) / METRICS_FILE
    write_json(path, metrics)
    return path


class RunFolderError(ConfigError):
    """The run folder holds a finished run or a run of another configuration; the message says what to do."""


def config_differences(saved: dict, cfg: dict, free_keys: Collection[str]) -> list[str]:
    """Keys of ``saved`` whose values differ in ``cfg``, ignoring ``free_keys`` and the launcher's own keys (a key
    ``saved`` lacks, e.g. in a config.json the launcher has only begun, is not a difference)."""
    launcher_only = set(options_for("launcher")) - set(options_for("rhemo")) - set(options_for("ser"))
    keys = set(saved) - set(free_keys) - launcher_only
    return sorted(k for k in keys if saved[k] != cfg.get(k))


def run_finished(folder: Path) -> bool:
    """True when ``folder/metrics.json`` is a finished record (:func:`read_metrics` says 'done'): the one rule
    by which the launcher skips a fold and a training script refuses to retrain a folder."""
    return read_metrics(Path(folder) / METRICS_FILE)[0] == "done"


def holds_results(folder: Path) -> bool:
    """True when ``folder`` holds something a training computed (checkpoint.pt, last.pt or metrics.json); a
    folder with only a config.json (a run that failed before its first epoch) has nothing to lose."""
    return any((Path(folder) / name).exists() for name in (CHECKPOINT_FILE, LAST_FILE, METRICS_FILE))


def _read_config(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(keys: list[str], saved: dict, cfg: dict) -> str:
    shown = ", ".join(f"{k} {saved.get(k)!r} → {cfg.get(k)!r}" for k in keys[:5])
    return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def check_run_folder(folder: Path, cfg: dict, free_keys: Collection[str], force: bool,
                     last_config: Callable[[], dict | None]) -> list[str]:
    """Refuse (RunFolderError) a folder that holds a finished run or another configuration, unless ``force``.

    ``last_config`` returns the config stored in the folder's resume file (None if there is none); it is only
    called when the cheaper checks pass. Returns the keys in which the resume file differs (non-empty only
    with ``force``: the caller then discards it).
    """
    folder = Path(folder)
    if force:
        saved = last_config()
        return [] if saved is None else config_differences(saved, cfg, free_keys)
    if run_finished(folder):
        raise RunFolderError(f"{folder}: the run is already finished; --force to retrain (it is recorded in "
                             f"{METRICS_FILE}, which would then be kept as {PREVIOUS_METRICS_FILE}), or choose "
                             f"another output_dir")
    if not holds_results(folder):
        return []
    for source, read in ((folder / CONFIG_FILE, lambda: _read_config(folder / CONFIG_FILE)),
                         (folder / LAST_FILE, last_config)):
        saved = read()
        differences = [] if saved is None else config_differences(saved, cfg, free_keys)
        if differences:
            raise RunFolderError(f"{folder} holds a run with a different config ({source}: "
                                 f"{_describe(differences, saved, cfg)}); only {', '.join(sorted(free_keys))} "
                                 f"may change between runs of one folder. Choose another output_dir, or --force "
                                 f"to retrain this one")
    return []


def stale_temp_files(folder: Path) -> list[Path]:
    """Temporary files that interrupted atomic writes left in ``folder`` (sorted)."""
    folder = Path(folder)
    return sorted({path for pattern in _TEMP_PATTERNS for path in folder.glob(pattern) if path.is_file()})


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete :func:`stale_temp_files` (call it when a run starts, before anything writes); returns them."""
    removed = []
    for path in stale_temp_files(folder):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


class FoldLock:
    """An exclusive, non-blocking ``flock`` on ``<folder>/fold.lock``, held until :meth:`release`.

    ``acquire()`` returns False when another process holds it (its pid is in ``holder``). On systems without
    ``fcntl`` (Windows) the lock always succeeds: there is nothing to lock with.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.handle: Any = None
        self.holder = ""

    def acquire(self) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                handle.close()
                raise
            handle.seek(0)
            self.holder = handle.read().strip()
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return True

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the descriptor releases the flock
            self.handle = None


#: run-folder locks this process holds for its trainings (released by the kernel when it exits)
_held_locks: dict[Path, FoldLock] = {}


def lock_for_training(folder: Path, launcher_pid: str = "") -> None:
    """Make this process the only one training in ``folder``, or raise RunFolderError naming the holder.

    The launcher already holds the fold's lock for the training it starts (``launcher_pid``, the pid it passes
    in the environment), and a process may lock the same folder again (a second run in one Python session).
    A training started by hand takes the lock itself and keeps it until it exits, so two commands on one
    output_dir never train at once.
    """
    folder = Path(folder).resolve()
    if folder in _held_locks:
        return
    lock = FoldLock(folder)
    if lock.acquire():
        _held_locks[folder] = lock
        return
    if lock.holder and lock.holder in (launcher_pid, str(os.getpid())):
        return
    raise RunFolderError(f"{folder} is being trained by another process (pid {lock.holder or '?'}, lock "
                         f"{lock.path}); wait for it to finish, or choose another output_dir")
