"""Atomic file writes: a reader sees the old file or the whole new one, never a truncated one.

Every file the project writes (run folders, stores, reports, plots, checkpoints) goes through
:func:`atomic_path`: the content is written to a temporary file ``<name>.<random>.tmp`` in the same folder,
flushed to disk, then moved over the target with ``os.replace``. A crash or Ctrl-C mid-write leaves the old
file intact and, at worst, a stale ``*.tmp`` that :func:`rhemo.train.runfolder.remove_stale_temps` clears.

Example:
    >>> import json, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_json(folder / "m.json", {"wa": float("nan"), "n": 3})
    >>> json.loads((folder / "m.json").read_text())
    {'wa': None, 'n': 3}
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = ["atomic_path", "atomic_link", "write_text", "write_bytes", "write_json", "json_safe"]


def _umask() -> int:
    """The process umask, read without changing it where the OS tells (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0)
        os.umask(mask)
        return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``, on an error it is removed.

    For writers that need a file name (``torch.save``, ``DataFrame.to_excel``, ``savefig``).
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.fchmod(handle, 0o666 & ~_umask())  # mkstemp's file is owner-only; give it the mode open() would
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_link(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make ``path`` (atomically) a second name of the file ``source``: a hard link, so no byte is copied; a
    copy where the file system has no hard links. Writing ``source`` again through :func:`atomic_path` gives
    it a new file and leaves ``path`` as it was."""
    with atomic_path(path) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (or no source: the copy names it)
            shutil.copyfile(source, tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically, UTF-8, with the newlines exactly as given."""
    write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps`` writes as standard JSON: nan/inf → None (JSON has no nan),
    numpy scalars → Python numbers, tuples → lists."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Write :func:`json_safe` ``value`` to ``path`` atomically, indented, with a final newline."""
    write_text(path, json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n")
