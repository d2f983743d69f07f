"""Checkpoint files: atomic saving of plain-data payloads, safe loading, hashing, and state_dict extraction.

Every checkpoint we write must load with ``torch.load(weights_only=True)``, which refuses arbitrary pickled
objects (the safe way to open files from elsewhere). ``save_checkpoint`` therefore checks the payload before
writing and names the first offending key. Saving is atomic (temporary file in the same folder, then
``os.replace``), so a crash or Ctrl-C mid-save never leaves a truncated checkpoint behind, and an existing file
stays intact.

``plain_state_dict`` accepts our payloads, the authors' bare ``state_dict`` files (``pretrained_RHemo``) and
the common ``{'state_dict': ...}`` / ``{'model_state_dict': ...}`` wrappers, with or without the ``module.``
prefix that DistributedDataParallel adds.
"""
from __future__ import annotations

import collections
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint", "file_sha256",
           "plain_state_dict", "check_payload"]

CHECKPOINT_FORMAT = "rhemo-ckpt/1"

_SCALARS = (int, float, str, bool, type(None))
_CONTAINERS = (list, tuple, dict, collections.OrderedDict)


class CheckpointError(ValueError):
    """A checkpoint file is missing or unreadable, or holds something other than what was expected."""


def _key_path(parts: list) -> str:
    return "payload" + "".join(f"[{p!r}]" for p in parts)


def check_payload(payload: Any) -> None:
    """Raise TypeError naming the first value ``torch.load(weights_only=True)`` could not read back.

    Allowed: tensors (and Parameters), int, float, str, bool, None, torch.dtype, torch.device, and lists,
    tuples and dicts (plain or OrderedDict) of these. Exact types only: numpy scalars/arrays, enums and other
    subclasses pickle as their class and are refused by the weights-only loader.
    """
    _check_value(payload, [], set())


def _check_value(value: Any, parts: list, ancestors: set[int]) -> None:
    kind = type(value)
    if kind in (torch.Tensor, torch.nn.Parameter) or kind in _SCALARS or kind in (torch.dtype, torch.device):
        return
    if kind not in _CONTAINERS:
        raise TypeError(f"{_key_path(parts)} is a {kind.__module__}.{kind.__qualname__}, which "
                        f"torch.load(weights_only=True) cannot read; convert it to tensors, numbers, str, "
                        f"bool, None or lists/tuples/dicts of them")
    if id(value) in ancestors:
        raise TypeError(f"{_key_path(parts)} contains itself (a reference cycle)")
    ancestors.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) not in (int, str, float, bool, tuple):
                raise TypeError(f"{_key_path(parts)} has a key of type {type(key).__qualname__} ({key!r}); "
                                f"use str or int keys")
            _check_value(item, parts + [key], ancestors)
    else:
        for i, item in enumerate(value):
            _check_value(item, parts + [i], ancestors)
    ancestors.discard(id(value))


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically (parent folders created). Returns the path.

    The payload is checked with ``check_payload`` first (TypeError naming the bad key; nothing is written).
    The bytes go to a temporary file next to ``path``, are flushed to disk, and then replace ``path`` in one
    step; on any failure the temporary file is removed and an existing ``path`` is left untouched.
    """
    if not isinstance(payload, dict):
        raise TypeError(f"save_checkpoint: payload must be a dict, got {type(payload).__name__}")
    check_payload(payload)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:  # name the file (e.g. "no space left on device")
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    Raises CheckpointError when the file is missing, is not a readable checkpoint (corrupt, truncated, not a
    torch file), or holds objects the weights-only loader refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}"
                              + (" (it is a directory)" if path.is_dir() else ""))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(_load_failure(path, err)) from None


def _load_failure(path: Path, err: Exception) -> str:
    """One line on why ``path`` did not load. torch's own text advises weights_only=False, which would run
    whatever code a hostile file carries: that advice is never passed on."""
    text = str(err)
    refused = (re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
               or re.search(r"unsupported GLOBAL ([\w.]+)", text))
    if refused:
        return (f"{path} is not a weights file: it holds pickled Python objects ({refused.group(1)}), which are "
                f"refused; only plain tensors and values are accepted")
    # keep the informative part of torch's long messages (e.g. "Unsupported operand 95" for random bytes)
    inner = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", text)
    lines = [line for line in text.strip().splitlines() if line.strip() and "weights_only" not in line]
    detail = inner.group(1) if inner else (lines or [type(err).__name__])[0]
    if "weights_only" in detail:
        detail = "its contents are not plain tensors and values"
    return (f"{path} is not a readable checkpoint (corrupt, truncated or not a torch file): "
            f"{type(err).__name__}: {detail}")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks. CheckpointError if the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"cannot hash {path}: no such file")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = list(obj)
        shown = ", ".join(repr(k) for k in keys[:8]) + (", ..." if len(keys) > 8 else "")
        bad = next(((k, v) for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
        where = f"; key {bad[0]!r} holds a {type(bad[1]).__name__}" if bad else ""
        return f"a dict with {len(keys)} keys [{shown}]{where}"
    return f"a {type(obj).__name__}"


def plain_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The network's ``{name: tensor}`` state_dict from a loaded checkpoint, with any ``module.`` prefix removed.

    Accepts our payload (``format`` = CHECKPOINT_FORMAT → ``payload['state_dict']``), a bare state_dict (the
    authors' format), or a dict holding a state_dict under ``'state_dict'`` or ``'model_state_dict'``. Returns a
    new OrderedDict; the input is not modified.

    >>> list(plain_state_dict({'module.fc.weight': torch.ones(1), 'module.fc.bias': torch.zeros(1)}))
    ['fc.weight', 'fc.bias']
    """
    if isinstance(obj, dict) and "format" in obj:
        if obj["format"] != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint format {obj['format']!r} is not supported (expected "
                                  f"{CHECKPOINT_FORMAT!r})")
        found = obj.get("state_dict")
        if not _is_state_dict(found):
            raise CheckpointError(f"a {CHECKPOINT_FORMAT} checkpoint must hold a non-empty state_dict of tensors "
                                  f"under 'state_dict'; found {_describe(found)}")
        state = found
    elif _is_state_dict(obj):
        state = obj
    elif isinstance(obj, dict) and any(_is_state_dict(obj.get(k)) for k in ("state_dict", "model_state_dict")):
        state = next(obj[k] for k in ("state_dict", "model_state_dict") if _is_state_dict(obj.get(k)))
    else:
        raise CheckpointError(f"expected a state_dict (str → tensor) or a checkpoint dict holding one under "
                              f"'state_dict' or 'model_state_dict'; found {_describe(obj)}")
    out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name in out:
            raise CheckpointError(f"state_dict has both {name!r} and 'module.{name}'; cannot strip the "
                                  f"DistributedDataParallel prefix unambiguously")
        out[name] = value
    return out
