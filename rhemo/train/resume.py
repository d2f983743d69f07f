"""What a run folder needs to resume: ``last.pt`` and ``best.pt``, and the writing of every checkpoint of a run.

After each epoch :class:`RunSaver` copies the model (and the optimiser) into CPU buffers that are reused from
epoch to epoch, then writes ``checkpoint.pt`` (a best epoch), ``best.pt`` (when needed, see below) and
``last.pt``, in that order, on a background thread: the next epoch trains while they are written. Every write
is atomic, so a kill at any moment leaves the ``last.pt`` of an earlier finished epoch, and re-running the
command repeats at most the epochs whose files were not yet on disk. Before anything reads the files (the end
of the run, Ctrl-C, a diverging loss) :meth:`RunSaver.wait` lets the writes finish and re-raises a failed
write's error (a full disk) in the training thread.

``last.pt`` holds the optimiser, the history and the best epoch, and never a second copy of weights that
another file of the folder holds (~0.5 GB for RH-emo at paper size):

* when ``checkpoint.pt`` stores the model's own weights (RH-emo), a best epoch's ``last.pt`` takes its model
  from ``checkpoint.pt`` (``model_in``) and a later epoch's takes its best weights from there (``best_in``).
  Before ``checkpoint.pt`` is replaced, ``best.pt`` becomes a hard link to it (no byte copied), so the weights
  the ``last.pt`` on disk refers to stay in the folder while the new files are written; on resume a reference
  is found in ``checkpoint.pt`` or ``best.pt`` by its epoch;
* otherwise (an SER network, whose checkpoint holds the SER network alone), the best weights are the current
  ones (``best_in`` 'model') or those of ``best.pt``, written once per best epoch when they stop being current.

Every reference is checked by epoch on resume; a ``last.pt`` whose weights cannot be found starts the run afresh.
"""
from __future__ import annotations

import copy
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from rhemo.atomic import atomic_link
from rhemo.train.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, \
    save_checkpoint
from rhemo.train.runfolder import BEST_FILE, CHECKPOINT_FILE, LAST_FILE
from rhemo.train.runtime import is_main_process

__all__ = ["FitState", "RunSaver", "BufferPool", "CheckpointWriter", "load_resume", "config_differences"]


@dataclass
class FitState:
    """Progress of a training run (what ``last.pt`` stores besides the model and optimiser).

    ``epochs``: epochs finished; ``history``: one flat dict of numbers per epoch (the rows of log.csv);
    ``best_*``: the best validation epoch (1-based) and its metric and weights (CPU copies); ``stopped``:
    early stopping fired; ``seconds``: training time, summed over resumptions; ``checkpoint_epoch``: the epoch
    whose weights ``checkpoint.pt`` holds when the resumed ``last.pt`` refers to it (0: none; not stored).
    """
    epochs: int = 0
    history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    stopped: bool = False
    seconds: float = 0.0
    checkpoint_epoch: int = 0


# ------------------------------------------------------------------------------------------------ snapshots
class BufferPool:
    """CPU copies of live tensors in buffers kept from one :meth:`take` to the next (no allocation, no page
    faults after the first epoch). A buffer belongs to the storage, shape and strides of the tensor it copies;
    tensors sharing one (a state dict and a sub-network's state dict) are copied once per take.

    Example:
        >>> pool = BufferPool()
        >>> weight = torch.ones(2, 3)
        >>> copies = pool.take({"w": weight, "again": weight})
        >>> weight.add_(1)
        tensor([[2., 2., 2.],
                [2., 2., 2.]])
        >>> copies["w"].sum().item(), copies["again"] is copies["w"]
        (6.0, True)
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def take(self, tree: Any) -> Any:
        """``tree`` (nested dicts/lists/tuples) with each tensor replaced by its CPU copy in this pool."""
        used: dict[tuple, torch.Tensor] = {}
        with torch.no_grad():
            copied = self._copy(tree, used)
        self._buffers = used  # a buffer whose tensor is gone is dropped
        return copied

    def _copy(self, value: Any, used: dict) -> Any:
        if isinstance(value, torch.Tensor):
            key = (value.device, value.dtype, value.data_ptr(), tuple(value.shape), value.stride())
            if key not in used:
                buffer = self._buffers.get(key)
                if buffer is None:
                    buffer = torch.empty_like(value, device="cpu")  # same strides (channels_last moments)
                used[key] = buffer.copy_(value.detach())
            return used[key]
        if isinstance(value, dict):
            return type(value)((k, self._copy(v, used)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return type(value)(self._copy(v, used) for v in value)
        return value


class CheckpointWriter:
    """Writes lists of (path, payload) in order, one list at a time: on a background thread (``background``) or
    at once. A payload dict is written with :func:`save_checkpoint`; a payload that is a path makes ``path`` a
    hard link to that file (:func:`rhemo.atomic.atomic_link`). Payload tensors must not change until
    :meth:`wait` returns."""

    def __init__(self, background: bool) -> None:
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, writes: list[tuple[Path, dict | Path]], done: Callable[[], None]) -> None:
        """Write ``writes`` then call ``done`` (after the previous list is written: one list in flight)."""
        self.wait()
        if not self.background:
            self._write(writes, done)
            self.wait()
            return
        self._thread = threading.Thread(target=self._write, args=(writes, done), name="checkpoint-writer")
        self._thread.start()  # not a daemon: an exiting interpreter lets the write finish

    def _write(self, writes: list[tuple[Path, dict | Path]], done: Callable[[], None]) -> None:
        try:
            for path, payload in writes:
                if isinstance(payload, Path):
                    atomic_link(payload, path)
                else:
                    save_checkpoint(path, payload)
            done()
        except BaseException as exc:  # handed to the training thread by wait()
            self._error = exc

    def wait(self, quiet: bool = False) -> None:
        """Block until the writes are on disk; re-raise a failed write's error (dropped if ``quiet``: the caller
        is already reporting another one)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and not quiet:
            raise error


# ------------------------------------------------------------------------------------------------ saving
def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


class RunSaver:
    """The checkpoint writes of one :func:`rhemo.train.loop.fit` (see the module docstring).

    ``checkpoint_is_model``: ``checkpoint.pt`` stores the model's own state dict (RH-emo), so ``last.pt``
    refers to it instead of storing the weights again. ``saved_epochs`` is the number of finished epochs the
    ``last.pt`` on disk vouches for. Only rank 0 writes; every rank keeps the best epoch's weights
    (``FitState.best_state``), which the final evaluation loads.
    """

    def __init__(self, out: Path, state: FitState, background: bool, checkpoint_is_model: bool) -> None:
        self.out = out
        self.writer = CheckpointWriter(background)
        self.checkpoint_is_model = checkpoint_is_model
        self.saved_epochs = state.epochs
        self.checkpoint_on_disk = state.checkpoint_epoch  # the checkpoint.pt the last.pt on disk may refer to
        self.best_on_disk = state.best_epoch if state.best_epoch != state.epochs else 0  # what best.pt holds
        self._best, self._spare, self._optimizer = BufferPool(), BufferPool(), BufferPool()

    def save_epoch(self, net: nn.Module, optimizer: torch.optim.Optimizer, state: FitState, cfg: dict,
                   checkpoint: tuple[dict[str, torch.Tensor], Callable[[dict], dict]] | None) -> None:
        """After ``state.epochs`` epochs: snapshot, then write in the background.

        ``checkpoint``, on a best epoch: (the live tensors checkpoint.pt stores, a function of their copies
        returning the checkpoint.pt payload). The best epoch's weights become ``state.best_state``.
        """
        self.writer.wait()  # the previous epoch's writes are done: every buffer is free again
        live = {"model": net.state_dict(), "checkpoint": checkpoint[0] if checkpoint else None}
        copies = self._spare.take(live)
        if checkpoint:
            state.best_state = copies["model"]
            self._best, self._spare = self._spare, self._best
        if not is_main_process():
            self.saved_epochs = state.epochs
            return
        writes: list[tuple[Path, dict | Path]] = []
        if checkpoint:
            current = self.out / CHECKPOINT_FILE
            if self.checkpoint_is_model and self.checkpoint_on_disk and current.is_file():
                writes.append((self.out / BEST_FILE, current))  # what the last.pt on disk refers to stays
                self.best_on_disk = self.checkpoint_on_disk
            writes.append((current, checkpoint[1](copies["checkpoint"])))
            self.checkpoint_on_disk = state.epochs if self.checkpoint_is_model else 0
        best_in = None
        if state.best_state is not None:
            best_in = "model" if state.best_epoch == state.epochs else \
                CHECKPOINT_FILE if self.checkpoint_is_model else BEST_FILE
        if best_in == BEST_FILE and self.best_on_disk != state.best_epoch:
            writes.append((self.out / BEST_FILE, {"format": CHECKPOINT_FORMAT, "kind": "best",
                                                  "epoch": state.best_epoch, "state_dict": state.best_state}))
            self.best_on_disk = state.best_epoch
        model_in = CHECKPOINT_FILE if checkpoint and self.checkpoint_is_model else None
        writes.append((self.out / LAST_FILE, {
            "format": CHECKPOINT_FORMAT, "kind": "resume", "config": copy.deepcopy(cfg),
            "model": None if model_in else copies["model"], "model_in": model_in,
            "optimizer": self._optimizer.take(optimizer.state_dict()), "epoch": state.epochs,
            "history": list(state.history), "best_metric": state.best_metric, "best_epoch": state.best_epoch,
            "best_in": best_in, "best_state_dict": None, "bad_epochs": state.bad_epochs, "stopped": state.stopped,
            "seconds": state.seconds, "rng": rng_state()}))
        epochs = state.epochs
        self.writer.submit(writes, done=lambda: setattr(self, "saved_epochs", epochs))

    def wait(self, quiet: bool = False) -> None:
        """See :meth:`CheckpointWriter.wait`."""
        self.writer.wait(quiet)


# ------------------------------------------------------------------------------------------------ resuming
def config_differences(saved: dict, cfg: dict, free_keys: frozenset[str]) -> list[str]:
    """Keys (of either) whose values differ, besides ``free_keys``: a run resumes only under the same maths."""
    keys = (set(saved) | set(cfg)) - free_keys
    return sorted(k for k in keys if saved.get(k) != cfg.get(k))


def load_resume(path: Path, cfg: dict, free_keys: frozenset[str], model: nn.Module,
                optimizer: torch.optim.Optimizer) -> FitState | None:
    """Restore model/optimiser from ``last.pt`` when it belongs to this config; None to start afresh."""
    if not path.exists():
        return None
    saved = load_checkpoint(path, map_location="cpu")
    differences = config_differences(saved.get("config", {}), cfg, free_keys)
    if differences:
        if is_main_process():
            print(f"{path} was written with a different config ({', '.join(differences)} differ): starting "
                  f"from scratch", flush=True)
        return None
    weights = _SavedWeights(path.parent)
    current = weights.find(saved.get("model_in"), int(saved["epoch"])) if saved.get("model") is None \
        else saved["model"]
    best_epoch = int(saved["best_epoch"])
    best_in = saved.get("best_in")
    best_state = current if best_in == "model" else saved["best_state_dict"] if best_in is None \
        else weights.find(best_in, best_epoch)
    missing = [epoch for epoch, found in ((saved["epoch"], current), (best_epoch, best_state)) if found is False]
    if missing:
        if is_main_process():
            print(f"{path} refers to the weights of epoch {missing[0]}, which neither "
                  f"{path.parent / CHECKPOINT_FILE} nor {path.parent / BEST_FILE} holds: starting from scratch",
                  flush=True)
        return None
    model.load_state_dict(current)
    optimizer.load_state_dict(expand_zeros(saved["optimizer"]))
    state = FitState(epochs=int(saved["epoch"]), history=list(saved["history"]), best_metric=saved["best_metric"],
                     best_epoch=best_epoch, best_state=best_state,
                     bad_epochs=int(saved["bad_epochs"]), stopped=bool(saved["stopped"]),
                     seconds=float(saved["seconds"]), checkpoint_epoch=weights.checkpoint_epoch)
    if is_main_process():
        print(f"resuming from {path}: {state.epochs} epoch(s) done, best epoch {state.best_epoch}", flush=True)
    return state


def expand_zeros(optimizer_state: dict) -> dict:
    """The optimiser state of a ``last.pt`` with every ``{'zeros': shape, 'dtype': name}`` entry (how earlier
    versions stored all-zero Adam moments) made the zero tensor it stands for."""
    def expand(value):
        if isinstance(value, dict) and set(value) == {"zeros", "dtype"}:
            return torch.zeros(value["zeros"], dtype=getattr(torch, value["dtype"]))
        return value
    state = {index: {key: expand(value) for key, value in entry.items()}
             for index, entry in optimizer_state["state"].items()}
    return {**optimizer_state, "state": state}


class _SavedWeights:
    """The weights a ``last.pt`` refers to (see :class:`RunSaver`), each file of the folder read at most once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.checkpoint_epoch = 0  # set when a reference is found in checkpoint.pt
        self._read: dict[str, dict] = {}

    def find(self, name: Any, epoch: int) -> dict[str, torch.Tensor] | bool:
        """The state dict of ``epoch`` that ``name`` referred to; False when no file of the folder holds it (or
        ``name`` is not one of them). A checkpoint.pt reference is looked for in best.pt too (it keeps the
        weights checkpoint.pt held)."""
        candidates = {CHECKPOINT_FILE: (CHECKPOINT_FILE, BEST_FILE), BEST_FILE: (BEST_FILE,)}.get(str(name), ())
        for candidate in candidates:
            payload = self._payload(candidate)
            if payload.get("epoch") == epoch and isinstance(payload.get("state_dict"), dict):
                if candidate == CHECKPOINT_FILE:
                    self.checkpoint_epoch = epoch
                return payload["state_dict"]
        return False

    def _payload(self, name: str) -> dict:
        if name not in self._read:
            path = self.folder / name
            try:
                payload = load_checkpoint(path, map_location="cpu") if path.is_file() else {}
            except CheckpointError:  # damaged: it holds nothing of this run
                payload = {}
            self._read[name] = payload if isinstance(payload, dict) else {}
        return self._read[name]
