"""The train/eval engine shared by ``training_RHemo.py`` and ``training_SER.py``.

A *task* says what one batch means (:class:`SERTask`: cross-entropy and classification reports;
:class:`RHemoTask`: the RH-emo loss and accuracies); :func:`fit` does the rest, identically for both:

* Adam(lr, weight_decay) on the trainable parameters; optional bf16 autocast (``amp``) and ``channels_last``;
* each epoch a training pass and a validation pass; metrics are reduced over all processes under torchrun, so
  every rank takes the same early-stopping decision;
* the best epoch on the monitored validation metric (strict improvement; minimum for losses, maximum for
  wa/ua/f1) is written to ``checkpoint.pt``; training stops after ``patience`` epochs without improvement;
* ``last.pt`` (model, optimiser, history, best state, RNG states) is rewritten atomically after every epoch.
  Re-running the same command after a crash or Ctrl-C resumes after the last finished epoch. The randomness of
  an epoch (batch order, dropout) is re-seeded from (seed, epoch, rank), so a resumed run gives exactly the
  metrics of an uninterrupted one;
* only rank 0 writes files; ``log.csv`` gets one flushed row per epoch.

After :func:`fit`, the scripts reload the best weights (``FitState.best_state``), call :func:`evaluate` on
train/val/test and :func:`write_metrics`, which writes ``metrics.json`` last and removes ``last.pt``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from rhemo.data.store import StoreError
from rhemo.engine import device as dev
from rhemo.engine import losses, metrics
from rhemo.engine.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from rhemo.engine.config import ConfigError
from rhemo.engine.data import DataError
from rhemo.engine.weights import WeightsError

#: Errors about the user's inputs (config, store, checkpoints, device): reported in one line, no traceback.
INPUT_ERRORS = (ConfigError, StoreError, DataError, CheckpointError, WeightsError, dev.DeviceError)

__all__ = ["MONITORS", "Task", "SERTask", "RHemoTask", "FitState", "TrainingInterrupted", "run_guarded", "unwrap",
           "place_model", "run_pass", "evaluate", "evaluate_splits", "fit", "prepare_output_dir", "write_metrics",
           "AFTER_EPOCH_HOOKS", "RESUME_FREE_KEYS", "CHECKPOINT_FILE", "LAST_FILE", "METRICS_FILE", "LOG_FILE",
           "CONFIG_FILE"]

CHECKPOINT_FILE = "checkpoint.pt"
LAST_FILE = "last.pt"
METRICS_FILE = "metrics.json"
LOG_FILE = "log.csv"
CONFIG_FILE = "config.json"

#: save_model_metric → (metric key of the validation dict, 'min' | 'max'), per script.
MONITORS = {
    "rhemo": {"total_loss": ("total", "min"), "recon": ("recon", "min")},
    "ser": {"loss": ("loss", "min"), "acc": ("wa", "max"), "wa": ("wa", "max"), "ua": ("ua", "max"),
            "f1": ("f1", "max")},
}

#: Config keys that may change between an interrupted run and its resumption (they do not change the maths
#: of the epochs already run).
RESUME_FREE_KEYS = frozenset({"num_epochs", "early_stopping", "patience", "num_workers", "gpu_id", "use_cuda",
                              "comment_1", "comment_2", "output_dir"})

#: Callables ``hook(epoch)`` run after each finished epoch (1-based), once ``last.pt`` is on disk. Empty in
#: normal runs; tests use it to simulate an interruption at a chosen epoch.
AFTER_EPOCH_HOOKS: list[Callable[[int], None]] = []


class TrainingInterrupted(RuntimeError):
    """Ctrl-C during training; ``last.pt`` holds the last finished epoch and a re-run resumes from it."""


def run_guarded(train: Callable[[dict, dev.Runtime], None], cfg: dict, runtime: dev.Runtime) -> int:
    """Run a training script's body; the exit code is 0, 2 after an input error, or 130 after Ctrl-C.

    An input error (:data:`INPUT_ERRORS`: a missing store, a checkpoint that does not fit, ...) is printed as one
    line naming the script. Ctrl-C inside ``fit`` has already saved ``last.pt``; outside the epochs (data
    preparation, final evaluation) there is nothing to save, and a re-run resumes from the last finished epoch
    either way. The process group is always left.
    """
    try:
        train(cfg, runtime)
        return 0
    except INPUT_ERRORS as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except TrainingInterrupted:
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", flush=True)
        return 130
    finally:
        dev.cleanup()


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def place_model(net: nn.Module, runtime: dev.Runtime, channels_last: bool = False) -> nn.Module:
    """Move ``net`` to the run's device (channels_last memory format if asked) and, under torchrun, wrap it in
    DistributedDataParallel (gradients averaged over processes at each step). Returns the model to train."""
    net.to(runtime.device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    if not runtime.distributed:
        return net
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids)


# --------------------------------------------------------------------------------------------------- tasks
class Task:
    """What a batch means. Subclasses define ``loss`` and ``summarise`` (``forward`` is ``model(batch["x"])``).

    ``forward`` runs inside autocast; ``loss`` runs outside it (and casts the outputs to float32); it returns
    (loss with graph, {name: 0-dim tensor summed over the batch's rows}, {name: per-row tensors to keep}).
    ``summarise`` turns the sums (over all processes), the row count and the concatenated kept tensors (all
    rows of all processes, in order) into the metrics dict of a pass.
    """

    script: str = ""

    def __init__(self, monitor: str) -> None:
        choices = MONITORS[self.script]
        if monitor not in choices:
            raise ValueError(f"save_model_metric {monitor!r} is not available for the {self.script} script; "
                             f"choose one of {sorted(choices)}")
        self.monitor_key, self.mode = choices[monitor]

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        return model(batch["x"])

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor], epoch: int | None, training: bool
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        raise NotImplementedError

    def summarise(self, sums: dict[str, float], count: int, kept: dict[str, torch.Tensor]) -> dict[str, Any]:
        raise NotImplementedError


class SERTask(Task):
    """Cross-entropy on (N, C) logits; metrics loss, wa, ua, f1, confusion (+ utt_* on validation/test)."""

    script = "ser"

    def __init__(self, num_classes: int, monitor: str = "loss") -> None:
        super().__init__(monitor)
        self.num_classes = int(num_classes)

    def loss(self, outputs, batch, epoch, training):
        logits = outputs.float()
        value = losses.ser_loss(logits, batch["target"])
        n = logits.shape[0]
        kept = {"logits": logits.detach(), "target": batch["target"]}
        if not training:
            kept["group"] = batch["group"]
        return value, {"loss": value.detach() * n}, kept

    def summarise(self, sums, count, kept):
        out: dict[str, Any] = {"loss": sums["loss"] / count}
        groups = kept["group"].cpu().numpy() if "group" in kept else None
        out.update(metrics.classification_report(kept["logits"], kept["target"], self.num_classes, groups=groups))
        out.pop("utt_count", None)
        return out


class RHemoTask(Task):
    """The RH-emo loss (reference §3) and its accuracies.

    Training epochs use the warm-up/holes-scaled emotion weights of that epoch; validation and the final
    evaluation use the configured weights (beta, beta_vad), so validation values are comparable across epochs
    and the final figures measure the objective that was trained (the authors re-evaluated with
    beta = beta_vad = 1, which reports a different loss than the one optimised).
    """

    script = "rhemo"

    def __init__(self, *, alpha: float, beta: float, beta_class: float, beta_vad: float, warmup_epochs: int = 0,
                 holes: int = 0, monitor: str = "total_loss") -> None:
        super().__init__(monitor)
        self.alpha, self.beta, self.beta_class, self.beta_vad = alpha, beta, beta_class, beta_vad
        self.warmup_epochs, self.holes = warmup_epochs, holes

    def weights(self, epoch: int | None, training: bool) -> tuple[float, float]:
        """(beta, beta_vad) for a pass: scheduled on training epochs (0-based), the configured ones otherwise."""
        if training and epoch is not None:
            return losses.emotion_weights(epoch, self.beta, self.beta_vad, self.warmup_epochs, self.holes)
        return self.beta, self.beta_vad

    def loss(self, outputs, batch, epoch, training):
        recon, logits, valence, arousal, dominance = outputs
        beta, beta_vad = self.weights(epoch, training)
        vad_pred = torch.cat([valence, arousal, dominance], dim=1)
        terms = losses.rhemo_loss(recon, batch["x"], logits, vad_pred, batch["target"], batch["vad"],
                                  alpha=self.alpha, beta=beta, beta_class=self.beta_class, beta_vad=beta_vad)
        n = recon.shape[0]
        sums = {name: value.detach() * n for name, value in terms.items()}
        kept = {"logits": logits.detach().float(), "vad_pred": vad_pred.detach().float(),
                "target": batch["target"], "vad": batch["vad"]}
        return terms["total"], sums, kept

    def summarise(self, sums, count, kept):
        out: dict[str, Any] = {name: value / count for name, value in sums.items()}
        out.update(metrics.rhemo_metrics(kept["logits"], kept["vad_pred"], kept["target"], kept["vad"]))
        return out


# ----------------------------------------------------------------------------------------------- passes
def _to_device(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool) -> dict:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if channels_last and out["x"].dim() == 4:
        out["x"] = out["x"].contiguous(memory_format=torch.channels_last)
    return out


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else nullcontext()


def _progress(iterable: Iterable, desc: str, total: int | None = None):
    from tqdm import tqdm

    show = dev.is_main_process() and sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, leave=False, disable=not show, dynamic_ncols=True)


def run_pass(model: nn.Module, task: Task, loader, device: torch.device, *, optimizer=None, epoch: int | None,
             amp: bool = False, channels_last: bool = False, desc: str = "") -> dict[str, Any]:
    """One pass over ``loader`` (any iterable of batch dicts): training when ``optimizer`` is given (the model
    must then be in train mode), else evaluation under no_grad. Returns the task's metrics of the pass, reduced
    over all processes. ``epoch`` (0-based) selects RH-emo's scheduled loss weights; None = configured ones."""
    training = optimizer is not None
    sums: dict[str, torch.Tensor] = {}
    kept: dict[str, list[torch.Tensor]] = {}
    count = 0
    grad = nullcontext() if training else torch.no_grad()
    with grad:
        for batch in _progress(loader, desc):
            batch = _to_device(batch, device, channels_last)
            with _autocast(device, amp):
                outputs = task.forward(model, batch)
            loss, batch_sums, batch_kept = task.loss(outputs, batch, epoch, training)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            for name, value in batch_sums.items():
                sums[name] = sums[name] + value if name in sums else value
            for name, value in batch_kept.items():
                kept.setdefault(name, []).append(value)
            count += int(batch["x"].shape[0])
    # one collective for all sums: [count, sum_1, ..., sum_k] in float64
    names = sorted(sums)
    local = torch.tensor([float(count)] + [float(sums[n]) for n in names], dtype=torch.float64)
    total = dev.all_reduce_sum(local)
    count_all = int(total[0].item())
    if count_all == 0:
        raise ValueError(f"{desc or 'a pass'}: the loader produced no rows")
    reduced = {n: float(total[i + 1]) for i, n in enumerate(names)}
    gathered = {n: dev.all_gather_rows(torch.cat(v)) for n, v in kept.items()}
    return task.summarise(reduced, count_all, gathered)


def evaluate_splits(net: nn.Module, task: Task, loaders: dict, runtime: dev.Runtime, cfg: dict) -> dict:
    """:func:`evaluate` on each named loader ({'train': ..., 'val': ..., 'test': ...}); an empty split gives {}."""
    return {name: evaluate(net, task, loader, runtime.device, amp=cfg["amp"], channels_last=cfg["channels_last"],
                           desc=f"final {name}") if len(loader.dataset) else {}
            for name, loader in loaders.items()}


def evaluate(model: nn.Module, task: Task, loader, device: torch.device, *, amp: bool = False,
             channels_last: bool = False, desc: str = "eval") -> dict[str, Any]:
    """Metrics of ``model`` (eval mode, no_grad) over ``loader``; under torchrun each rank passes its shard
    and every rank gets the metrics of the whole set. Pass the unwrapped network (see :func:`unwrap`)."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    try:
        return run_pass(model, task, loader, device, epoch=None, amp=amp, channels_last=channels_last, desc=desc)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------- run folder
def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def prepare_output_dir(output_dir: str | os.PathLike, cfg: dict, script_file: str) -> Path:
    """Create the run folder and write ``config.json`` (rank 0 only).

    The resolved config is written with a ``script`` entry; launcher-only keys already present in an existing
    config.json (the launcher writes one there before starting the script) are kept. A ``metrics.json`` of an
    earlier run is removed: its presence must mean that *this* run finished.
    """
    from rhemo.engine.config import options_for

    out = Path(output_dir)
    if dev.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {}
        existing = out / CONFIG_FILE
        if existing.is_file():
            try:
                old = json.loads(existing.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = {}
            if isinstance(old, dict):
                launcher_keys = set(options_for("launcher")) - set(cfg)
                record.update({k: v for k, v in old.items() if k in launcher_keys})
        record["script"] = script_file
        record.update(cfg)
        _write_text_atomic(existing, json.dumps(record, indent=2) + "\n")
        if (out / METRICS_FILE).exists():
            (out / METRICS_FILE).unlink()
    dev.barrier()
    return out


class _EpochLog:
    """``log.csv``: one row per epoch, appended and flushed as soon as the epoch ends (rank 0 only)."""

    def __init__(self, path: Path, history: list[dict]) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if dev.is_main_process():
            if history:  # a resumed run: the log restarts from the state that last.pt vouches for
                self.fields = list(history[0])
                tmp = path.with_name(path.name + ".tmp")
                with open(tmp, "w", newline="", encoding="utf-8") as handle:
                    writer = csv.DictWriter(handle, self.fields, extrasaction="ignore")
                    writer.writeheader()
                    writer.writerows(history)
                os.replace(tmp, path)
            elif path.exists():
                path.unlink()

    def append(self, row: dict) -> None:
        if not dev.is_main_process():
            return
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
            handle.flush()


# ------------------------------------------------------------------------------------------------- fit
@dataclass
class FitState:
    """Progress of a training run (what ``last.pt`` stores besides the model and optimiser).

    ``epochs``: epochs finished; ``history``: one flat dict of numbers per epoch (the rows of log.csv);
    ``best_*``: the best validation epoch (1-based) and its metric and weights (CPU copies); ``stopped``:
    early stopping fired; ``seconds``: training time, summed over resumptions.
    """
    epochs: int = 0
    history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    stopped: bool = False
    seconds: float = 0.0


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _scalars(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}_{k}": float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _improved(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _config_differences(saved: dict, cfg: dict) -> list[str]:
    keys = (set(saved) | set(cfg)) - RESUME_FREE_KEYS
    return sorted(k for k in keys if saved.get(k) != cfg.get(k))


def _load_resume(path: Path, cfg: dict, model: nn.Module, optimizer: torch.optim.Optimizer) -> FitState | None:
    """Restore model/optimiser from ``last.pt`` when it belongs to this config; None to start afresh."""
    if not path.exists():
        return None
    saved = load_checkpoint(path, map_location="cpu")
    differences = _config_differences(saved.get("config", {}), cfg)
    if differences:
        if dev.is_main_process():
            print(f"{path} was written with a different config ({', '.join(differences)} differ): starting "
                  f"from scratch", flush=True)
        return None
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    state = FitState(epochs=int(saved["epoch"]), history=list(saved["history"]), best_metric=saved["best_metric"],
                     best_epoch=int(saved["best_epoch"]), best_state=saved["best_state_dict"],
                     bad_epochs=int(saved["bad_epochs"]), stopped=bool(saved["stopped"]),
                     seconds=float(saved["seconds"]))
    if dev.is_main_process():
        print(f"resuming from {path}: {state.epochs} epoch(s) done, best epoch {state.best_epoch}", flush=True)
    return state


def _save_resume(path: Path, cfg: dict, model: nn.Module, optimizer: torch.optim.Optimizer, state: FitState
                 ) -> None:
    save_checkpoint(path, {
        "format": CHECKPOINT_FORMAT, "kind": "resume", "config": cfg, "model": _cpu_state(model),
        "optimizer": optimizer.state_dict(), "epoch": state.epochs, "history": state.history,
        "best_metric": state.best_metric, "best_epoch": state.best_epoch, "best_state_dict": state.best_state,
        "bad_epochs": state.bad_epochs, "stopped": state.stopped, "seconds": state.seconds, "rng": _rng_state()})


def _epoch_line(epoch: int, num_epochs: int, train: dict, val: dict, keys: list[str], seconds: float,
                best: bool) -> str:
    def part(values: dict) -> str:
        return " ".join(f"{k} {values[k]:.4f}" for k in keys if k in values)
    return (f"epoch {epoch}/{num_epochs}  train {part(train)} | val {part(val)} | {seconds:.1f} s"
            + ("  *best" if best else ""))


def fit(model: nn.Module, task: Task, train_loader, val_loader, *, cfg: dict, runtime: dev.Runtime,
        output_dir: str | os.PathLike, payload_fn: Callable[[nn.Module], dict], show_keys: list[str],
        epoch_callback: Callable[[nn.Module, dict, dict], tuple[dict, str | None]] | None = None) -> FitState:
    """Train ``model`` until ``num_epochs`` or early stopping; returns the final :class:`FitState`.

    Args:
        model: the network on ``runtime.device`` (wrapped in DistributedDataParallel under torchrun).
        task: :class:`SERTask` or :class:`RHemoTask`.
        train_loader: from :func:`rhemo.engine.data.make_train_loader` (its sampler has ``set_epoch``).
        val_loader: from :func:`rhemo.engine.data.make_eval_loader`.
        cfg: the validated config (keys learning_rate, regularization_lambda, num_epochs, early_stopping,
            patience, seed, amp, channels_last; the whole dict is stored for resume checks).
        output_dir: the run folder (checkpoint.pt, last.pt, log.csv).
        payload_fn: unwrapped model → checkpoint payload without 'format', 'code_version', 'epoch',
            'best_metric', 'config' (filled in here).
        show_keys: metric names printed in the one-line epoch summary.
        epoch_callback: optional ``(unwrapped model, train metrics, val metrics) → (extra numeric log.csv
            columns, line printed after the epoch summary or None)``, called after each validation pass.

    Raises:
        TrainingInterrupted: on Ctrl-C (``last.pt`` holds the last finished epoch).
        FloatingPointError: when the training loss becomes nan/inf.
    """
    from rhemo import __version__

    out = Path(output_dir)
    net = unwrap(model)
    device = runtime.device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg["learning_rate"], weight_decay=cfg["regularization_lambda"])
    state = _load_resume(out / LAST_FILE, cfg, net, optimizer) or FitState()
    log = _EpochLog(out / LOG_FILE, state.history)
    num_epochs = cfg["num_epochs"]
    run_kwargs = {"amp": cfg["amp"], "channels_last": cfg["channels_last"]}
    saved_epochs = state.epochs  # what last.pt vouches for

    try:
        while not state.stopped and state.epochs < num_epochs:
            epoch = state.epochs  # 0-based index of the epoch about to run
            started = time.perf_counter()
            seed = dev.epoch_seed(cfg["seed"], epoch, runtime.rank)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            train_loader.sampler.set_epoch(epoch)
            model.train()
            train = run_pass(model, task, train_loader, device, optimizer=optimizer, epoch=epoch,
                              desc=f"epoch {epoch + 1} train", **run_kwargs)
            if not all(math.isfinite(v) for k, v in train.items() if k in ("loss", "total")):
                raise FloatingPointError(f"the training loss is {train.get('loss', train.get('total'))} at epoch "
                                         f"{epoch + 1}; lower learning_rate or check the input normalisation")
            val = evaluate(net, task, val_loader, device, desc=f"epoch {epoch + 1} val", **run_kwargs)
            monitored = float(val[task.monitor_key])
            best = _improved(monitored, state.best_metric, task.mode)
            state.epochs = epoch + 1
            if best:
                state.best_metric, state.best_epoch, state.bad_epochs = monitored, epoch + 1, 0
                state.best_state = _cpu_state(net)
                if runtime.is_main:
                    payload = dict(payload_fn(net))
                    payload.update({"format": CHECKPOINT_FORMAT, "code_version": __version__,
                                    "epoch": epoch + 1, "best_metric": monitored, "config": cfg})
                    save_checkpoint(out / CHECKPOINT_FILE, payload)
            else:
                state.bad_epochs += 1
            extra_columns, extra_line = epoch_callback(net, train, val) if epoch_callback else ({}, None)
            seconds = time.perf_counter() - started
            state.seconds += seconds
            state.history.append({"epoch": epoch + 1, **_scalars("train", train), **_scalars("val", val),
                                  **extra_columns, "seconds": round(seconds, 3)})
            if cfg["early_stopping"] and state.bad_epochs >= cfg["patience"]:
                state.stopped = True
            if runtime.is_main:
                _save_resume(out / LAST_FILE, cfg, net, optimizer, state)
            saved_epochs = state.epochs
            if runtime.is_main:
                log.append(state.history[-1])
                print(_epoch_line(epoch + 1, num_epochs, train, val, show_keys, seconds, best), flush=True)
                if extra_line:
                    print(extra_line, flush=True)
                if state.stopped:
                    print(f"early stopping: no improvement of val {task.monitor_key} for {cfg['patience']} "
                          f"epochs (best epoch {state.best_epoch})", flush=True)
            for hook in AFTER_EPOCH_HOOKS:
                hook(epoch + 1)
    except KeyboardInterrupt:
        if runtime.is_main:
            print(f"\ninterrupted: {out / LAST_FILE} holds {saved_epochs} finished epoch(s); run the same command "
                  f"again to resume", flush=True)
        raise TrainingInterrupted(f"training interrupted after {saved_epochs} saved epoch(s)") from None
    if state.best_state is None:
        raise FloatingPointError(f"the validation {task.monitor_key} was never finite; no checkpoint was written")
    return state


def write_metrics(output_dir: str | os.PathLike, record: dict, state: FitState) -> dict:
    """Write ``metrics.json`` (atomically, rank 0) and delete ``last.pt``: the run is finished.

    ``record`` holds the script-specific fields (script, model_name, quat, params, label_names, train, val,
    test); the status, epoch counts and time come from ``state``.
    """
    full = {"status": "done", **record, "epochs": state.epochs, "best_epoch": state.best_epoch,
            "seconds": round(state.seconds, 3)}
    out = Path(output_dir)
    if dev.is_main_process():
        _write_text_atomic(out / METRICS_FILE, json.dumps(_json_safe(full), indent=2) + "\n")
        last = out / LAST_FILE
        if last.exists():
            last.unlink()
    dev.barrier()
    return full


def _json_safe(value: Any) -> Any:
    """nan/inf → None (JSON has no nan); numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
