"""What a run folder may be used for: finished-run and config protection, stale temporary files, fold locks.

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
from pathlib import Path
from typing import Any, Callable, Collection

from rhemo.engine.config import ConfigError, options_for

__all__ = ["RunFolderError", "DISK_FULL_ERRNOS", "METRICS_FILE", "PREVIOUS_METRICS_FILE", "LOCK_FILE",
           "config_differences", "run_finished", "holds_results", "check_run_folder", "stale_temp_files", "remove_stale_temps",
           "FoldLock"]

METRICS_FILE = "metrics.json"
PREVIOUS_METRICS_FILE = "metrics.previous.json"
CONFIG_FILE = "config.json"
LOCK_FILE = "fold.lock"
#: errno values meaning "the disk (or the user's quota) is full"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
#: temporary files of interrupted atomic writes (checkpoint.py: "<name>.<random>.tmp"; text files "<name>.tmp")
_TEMP_PATTERNS = ("checkpoint.pt.*.tmp", "last.pt.*.tmp", "config.json.tmp", "metrics.json.tmp", "log.csv.tmp")


class RunFolderError(ConfigError):
    """The run folder holds a finished run or a run of another configuration; the message says what to do."""


def config_differences(saved: dict, cfg: dict, free_keys: Collection[str]) -> list[str]:
    """Keys of ``saved`` whose values differ in ``cfg``, ignoring ``free_keys`` and the launcher's own keys (a key
    ``saved`` lacks, e.g. in a config.json the launcher has only begun, is not a difference)."""
    launcher_only = set(options_for("launcher")) - set(options_for("rhemo")) - set(options_for("ser"))
    keys = set(saved) - set(free_keys) - launcher_only
    return sorted(k for k in keys if saved[k] != cfg.get(k))


def run_finished(folder: Path) -> bool:
    """True when ``folder/metrics.json`` is a readable record with status ``done``."""
    try:
        record = json.loads((Path(folder) / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("status") == "done"


def holds_results(folder: Path) -> bool:
    """True when ``folder`` holds something a training computed (checkpoint.pt, last.pt or metrics.json); a
    folder with only a config.json (a run that failed before its first epoch) has nothing to lose."""
    return any((Path(folder) / name).exists() for name in ("checkpoint.pt", "last.pt", METRICS_FILE))


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
                         (folder / "last.pt", last_config)):
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
