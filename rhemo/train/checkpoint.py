"""Checkpoint files: atomic saving of plain-data payloads, safe loading, hashing, and state_dict extraction.

:class:`TrainedCheckpoint` is the one type of a trained SER or RH-emo ``checkpoint.pt``: the training scripts
build it, :func:`rhemo.train.loop.fit` completes it at each best epoch, :mod:`rhemo.inference` reads it back.

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
import functools
import hashlib
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from rhemo.atomic import atomic_path
from rhemo.data.features import FeatureSettings
from rhemo.data.normalisation import Normalisation
from rhemo.errors import DataError

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "TrainedCheckpoint", "save_checkpoint", "load_checkpoint",
           "file_sha256", "plain_state_dict", "check_payload", "state_dict_mismatch", "read_normalisation"]

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
    """Write ``payload`` to ``path`` atomically (parent folders created, :func:`rhemo.atomic.atomic_path`).

    The payload is checked with ``check_payload`` first (TypeError naming the bad key; nothing is written).
    On any failure the temporary file is removed and an existing ``path`` is left untouched. Returns the path.
    """
    if not isinstance(payload, dict):
        raise TypeError(f"save_checkpoint: payload must be a dict, got {type(payload).__name__}")
    check_payload(payload)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            torch.save(payload, handle)
    except OSError as exc:
        if exc.filename is None:  # name the file (e.g. "no space left on device")
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


def state_dict_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor],
                        ignored_prefix: str | None = None) -> str:
    """Why ``given`` does not load strictly into a model whose state_dict is ``expected``; "" when it does.

    Keys starting with ``ignored_prefix`` are left out on both sides (e.g. a final layer that is retrained).
    The text lists the missing keys, the unexpected keys and the wrong shapes, separated by " | ".
    """
    def kept(keys):
        return [k for k in keys if not (ignored_prefix and k.startswith(ignored_prefix))]

    missing = [k for k in kept(expected) if k not in given]
    unexpected = [k for k in kept(given) if k not in expected]
    shapes = [f"{k} {tuple(given[k].shape)} (expected {tuple(expected[k].shape)})" for k in kept(expected)
              if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {', '.join(unexpected)}")
    if shapes:
        parts.append(f"wrong shapes: {'; '.join(shapes)}")
    return " | ".join(parts)


_WRITTEN_BY = "training_RHemo.py / training_SER.py"
#: payload keys every trained checkpoint has (besides format, code_version, epoch, best_metric, config)
_REQUIRED_KEYS = ("model_name", "model_kwargs", "state_dict", "label_names", "normalisation",
                  "feature_settings", "rhemo")


@dataclass
class TrainedCheckpoint:
    """A trained SER or RH-emo network with everything needed to use it: the ``checkpoint.pt`` payload.

    ``model_name``/``model_kwargs`` rebuild the network from :mod:`models.registry`; ``state_dict`` holds its
    weights (CPU tensors); ``label_names`` name its first outputs; ``normalisation`` and ``feature_settings``
    are the dicts of :class:`rhemo.data.normalisation.Normalisation` and
    :class:`rhemo.data.features.FeatureSettings`; ``rhemo`` is the RH-emo front end of a SER network (see
    :func:`rhemo.train.embeddings.rhemo_record`) or None; ``provenance`` (RH-emo only) is what the SER leakage
    check reads. ``epoch``, ``best_metric``, ``config`` and ``code_version`` are filled in by training.
    """

    model_name: str
    model_kwargs: dict[str, Any]
    label_names: list[str]
    label_view: str | None
    dataset: str | None
    normalisation: dict[str, Any]
    feature_settings: dict[str, Any]
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    rhemo: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    epoch: int | None = None
    best_metric: float | None = None
    config: dict[str, Any] | None = None
    code_version: str | None = None

    def completed(self, state_dict: dict[str, torch.Tensor], epoch: int, best_metric: float, config: dict,
                  rhemo: dict[str, Any] | None = None) -> "TrainedCheckpoint":
        """A copy holding the weights of a best epoch (``rhemo``: the front end's current record, if any)."""
        from rhemo import __version__

        cpu = {k: v.detach().cpu() for k, v in state_dict.items()}
        return replace(self, state_dict=cpu, epoch=epoch, best_metric=best_metric, config=config,
                       code_version=__version__, rhemo=self.rhemo if rhemo is None else rhemo)

    def to_payload(self) -> dict[str, Any]:
        """The plain dict saved as ``checkpoint.pt`` (``provenance`` only for RH-emo, as always)."""
        fields = dict(self.__dict__)
        tail = {"format": CHECKPOINT_FORMAT, "code_version": fields.pop("code_version"),
                "epoch": fields.pop("epoch"), "best_metric": fields.pop("best_metric"), "config": fields.pop("config")}
        order = ("model_name", "model_kwargs", "state_dict", "label_names", "label_view", "dataset",
                 "normalisation", "feature_settings", "rhemo")
        payload = {key: fields[key] for key in order}
        if self.provenance is not None:
            payload["provenance"] = self.provenance
        return {**payload, **tail}

    @classmethod
    def from_payload(cls, payload: Any, source: str | os.PathLike) -> "TrainedCheckpoint":
        """Check a loaded ``checkpoint.pt`` field by field; CheckpointError ``checkpoint <source>: ...``."""
        fail = functools.partial(_invalid, source)
        _check_format(payload, source)
        missing = [key for key in _REQUIRED_KEYS if key not in payload]
        if missing:
            raise fail(f"missing key(s) {', '.join(missing)}")
        labels = payload["label_names"]
        if not isinstance(labels, (list, tuple)) or not labels or not all(isinstance(x, str) for x in labels):
            raise fail(f"'label_names' must be a non-empty list of strings, got {labels!r}")
        try:
            FeatureSettings.from_dict(payload["feature_settings"])
        except (TypeError, ValueError, KeyError) as exc:
            raise fail(f"bad 'feature_settings': {exc}") from None
        read_normalisation(payload["normalisation"], source)
        if not isinstance(payload["model_kwargs"], dict):
            raise fail(f"'model_kwargs' must be a dict, got {payload['model_kwargs']!r}")
        try:
            state = plain_state_dict(payload)
        except CheckpointError as exc:
            raise fail(str(exc)) from None
        return cls(model_name=payload["model_name"], model_kwargs=payload["model_kwargs"], state_dict=state,
                   label_names=list(labels), label_view=payload.get("label_view"), dataset=payload.get("dataset"),
                   normalisation=payload["normalisation"], feature_settings=payload["feature_settings"],
                   rhemo=payload["rhemo"], provenance=payload.get("provenance"), epoch=payload.get("epoch"),
                   best_metric=payload.get("best_metric"), config=payload.get("config"),
                   code_version=payload.get("code_version"))

    def settings(self) -> FeatureSettings:
        return FeatureSettings.from_dict(self.feature_settings)


def _invalid(source: str | os.PathLike, message: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {source}: {message}")


def _check_format(payload: Any, source: str | os.PathLike) -> None:
    fail = functools.partial(_invalid, source)
    if not isinstance(payload, dict):
        raise fail(f"not a checkpoint written by {_WRITTEN_BY} (it holds a {type(payload).__name__})")
    if payload.get("format") == CHECKPOINT_FORMAT:
        return
    if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise fail(f"this is a bare state_dict (like the authors' pretrained_RHemo), not a checkpoint from "
                   f"{_WRITTEN_BY}: it carries no label names, normalisation or feature settings, so it cannot "
                   f"predict emotions")
    raise fail(f"not a checkpoint written by {_WRITTEN_BY} (format {payload.get('format')!r}, expected "
               f"{CHECKPOINT_FORMAT!r})")


def read_normalisation(norm: Any, source: str | os.PathLike) -> Normalisation:
    """The :class:`Normalisation` of a checkpoint's 'normalisation' record; CheckpointError
    ``checkpoint <source>: ...`` when it is not usable (kind, finite numbers, a positive scale, its transform)."""
    fail = functools.partial(_invalid, source)
    if not isinstance(norm, dict) or norm.get("kind") not in ("max", "zscore"):
        raise fail(f"'normalisation' must be a dict with kind 'max' or 'zscore', got {norm!r}")
    for key in ("max",) if norm["kind"] == "max" else ("mean", "std"):
        value = norm.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail(f"normalisation '{key}' must be a finite number, got {value!r}")
    positive = "max" if norm["kind"] == "max" else "std"
    if norm[positive] <= 0:
        raise fail(f"normalisation '{positive}' must be > 0, got {norm[positive]!r}")
    try:
        return Normalisation.from_dict(norm)
    except DataError as exc:
        raise fail(str(exc)) from None
