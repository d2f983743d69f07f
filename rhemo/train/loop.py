"""The train/eval engine shared by ``training_RHemo.py`` and ``training_SER.py``.

A *task* says what one batch means (:class:`SERTask`: cross-entropy and classification reports;
:class:`RHemoTask`: the RH-emo loss and accuracies); :func:`fit` does the rest, identically for both:

* Adam(lr, weight_decay) on the trainable parameters; optional bf16 autocast (``amp``) and ``channels_last``;
* each epoch a training pass and a validation pass; metrics are reduced over all processes under torchrun, so
  every rank takes the same early-stopping decision;
* the best epoch on the monitored validation metric (strict improvement; minimum for losses, maximum for
  wa/ua/f1; epoch 1 always) is written to ``checkpoint.pt``; losses are by default the mean of per-batch means
  (``loss_averaging``); early stopping follows ``early_stopping_rule`` (the authors' window rule or our
  ``patience`` epochs without improvement), see :mod:`rhemo.train.protocol`;
* ``last.pt`` (optimiser, history, RNG states and the weights no other file of the folder holds) is
  rewritten atomically after every epoch, from CPU copies while the next epoch trains; where the weights it
  refers to are kept (``checkpoint.pt``, ``best.pt``) is described in :mod:`rhemo.train.resume`. Re-running
  the same command after a crash or Ctrl-C resumes after the last finished epoch. The randomness of an epoch
  (batch order, dropout) is re-seeded from (seed, epoch, rank), so a resumed run gives exactly the metrics of
  an uninterrupted one;
* only rank 0 writes files; ``log.csv`` gets one flushed row per epoch.

After :func:`fit`, :mod:`rhemo.train.recipe` reloads the best weights (``FitState.best_state``), calls
:func:`evaluate_splits` on train/val/test and :func:`write_metrics`, which writes ``metrics.json`` last and removes
``last.pt`` and ``best.pt``. The run folder's file names are those of :mod:`rhemo.train.runfolder`.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from rhemo.atomic import atomic_path, write_json
from rhemo.data.store import StoreError
from rhemo.errors import DataError
from rhemo.train import config, losses, metrics, protocol, runfolder
from rhemo.train.checkpoint import CheckpointError, TrainedCheckpoint, load_checkpoint
from rhemo.train.config import ConfigError
from rhemo.train.embeddings import checkpoint_weights
from rhemo.train.resume import FitState, RunSaver, load_resume
from rhemo.train.runfolder import BEST_FILE, CONFIG_FILE, LAST_FILE, LOG_FILE, METRICS_FILE
from rhemo.train.runtime import DeviceError, Runtime, all_gather_rows, all_reduce_sum, barrier, cleanup, \
    epoch_seed, get_world_size, is_distributed, is_main_process
from rhemo.train.tensorboard_log import TensorBoardLog
from rhemo.train.weights import WeightsError

#: Errors about the user's inputs (config, store, checkpoints, device): reported in one line, no traceback.
INPUT_ERRORS = (ConfigError, StoreError, DataError, CheckpointError, WeightsError, DeviceError)

__all__ = ["Task", "SERTask", "RHemoTask", "FitState", "TrainingInterrupted", "TrainingDiverged",
           "run_guarded", "unwrap", "Training", "use_channels_last",
           "place_model", "run_pass", "evaluate", "evaluate_splits", "fit", "prepare_output_dir", "write_metrics",
           "RESUME_FREE_KEYS", "SPEEDUPS", "Speedups", "make_optimizer", "bf16_supported"]


#: Config keys that may change between an interrupted run and its resumption (they do not change the maths
#: of the epochs already run).
RESUME_FREE_KEYS = frozenset({"num_epochs", "early_stopping", "patience", "num_workers", "gpu_id", "use_cuda",
                              "comment_1", "comment_2", "output_dir", "early_stopping_rule", "tensorboard"})

@dataclass
class Speedups:
    """Switches of the engine's exact speed-ups (all on by default; the training bench turns them off to
    measure them): ``skip_idle_heads`` runs RH-emo without its heads when the emotion terms weigh 0,
    ``fast_adam`` uses the fused (else foreach) Adam, ``background_writes`` writes the checkpoints of an epoch
    while the next one trains, ``single_copy`` lets RH-emo's last.pt refer to checkpoint.pt for the weights it
    holds (:mod:`rhemo.train.resume`)."""
    skip_idle_heads: bool = True
    fast_adam: bool = True
    background_writes: bool = True
    single_copy: bool = True


SPEEDUPS = Speedups()

#: Device types with a fused Adam kernel (torch checks this only at the first step, so it is checked here).
_FUSED_ADAM_DEVICES = ("cpu", "cuda", "mps", "xpu")

class TrainingInterrupted(RuntimeError):
    """Ctrl-C during training; ``last.pt`` holds the last finished epoch and a re-run resumes from it."""


class TrainingDiverged(ConfigError, FloatingPointError):
    """The loss became nan/inf: an input error (learning rate, normalisation), reported in one line."""


class NonFiniteLoss(FloatingPointError):
    """A training batch's loss is nan/inf (raised before the step, so the weights stay finite)."""

    def __init__(self, value: float) -> None:
        super().__init__(f"the training loss is {value}")
        self.value = value


def run_guarded(train: Callable[[dict, Runtime], None], cfg: dict, runtime: Runtime) -> int:
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
    except OSError as exc:
        if exc.errno not in runfolder.DISK_FULL_ERRNOS:
            raise
        where = exc.filename or cfg["output_dir"]
        print(f"{Path(sys.argv[0]).name}: error: no space left on device writing {where}; free some space and "
              f"run the same command again: it resumes from the last finished epoch",
              file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", flush=True)
        return 130
    finally:
        cleanup()


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def use_channels_last(cfg: dict, device: torch.device) -> bool:
    """The ``channels_last`` key for a run on ``device``: null means on the CPU only (see the key's help)."""
    value = cfg["channels_last"]
    return device.type == "cpu" if value is None else bool(value)


def place_model(net: nn.Module, runtime: Runtime, channels_last: bool = False,
                sync_batchnorm: bool = False) -> nn.Module:
    """Move ``net`` to the run's device (channels_last memory format if asked) and, under torchrun, wrap it in
    DistributedDataParallel (gradients averaged over processes at each step). Returns the model to train.

    ``sync_batchnorm`` (torchrun on GPUs only; torch's SyncBatchNorm has no CPU kernel): every torch BatchNorm
    computes its training-mode statistics over the global batch. QuaternionBatchNorm2d is not a torch
    BatchNorm and keeps per-process statistics. A no-op in a single process."""
    if sync_batchnorm and runtime.distributed:
        if runtime.device.type == "cpu":
            raise DeviceError("sync_batchnorm true needs CUDA devices (torch's SyncBatchNorm runs on GPUs "
                              "only); on CPU set it to false: BatchNorm statistics are then per process")
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
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
    #: the metric whose mean over batches of batch_size is reported as ``<accuracy_key>_batchmean``
    accuracy_key: str = "wa"

    def __init__(self, monitor: str) -> None:
        choices = config.MONITORS[self.script]
        if monitor not in choices:
            raise ValueError(f"save_model_metric {monitor!r} is not available for the {self.script} script; "
                             f"choose one of {sorted(choices)}")
        self.monitor_key, self.mode = choices[monitor]

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor], lean: bool = False) -> Any:
        """``lean``: :meth:`idle_parameters` is not empty, the outputs that depend on them may be left out."""
        return model(batch["x"])

    def idle_parameters(self, net: nn.Module, epoch: int | None, training: bool) -> list[nn.Parameter]:
        """Parameters of ``net`` whose gradient is exactly zero in this pass (their loss terms weigh 0), so the
        pass may skip them; none by default."""
        return []

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor], epoch: int | None, training: bool
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        raise NotImplementedError

    def summarise(self, sums: dict[str, float], count: int, kept: dict[str, torch.Tensor]) -> dict[str, Any]:
        raise NotImplementedError


class SERTask(Task):
    """Cross-entropy on (N, C) logits; metrics loss, wa, ua, f1, confusion, per_class (+ utt_* on
    validation/test, and ``segments``: the pass's (N, C) logits, (N,) targets and utterance codes as numpy
    arrays, for the predictions CSVs; not a metric, never logged)."""

    script = "ser"

    def __init__(self, num_classes: int, monitor: str = "loss", label_names: list[str] | None = None) -> None:
        super().__init__(monitor)
        self.num_classes = int(num_classes)
        self.label_names = label_names

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
        out.update(metrics.classification_report(kept["logits"], kept["target"], self.num_classes, groups=groups,
                                                 label_names=self.label_names))
        out.pop("utt_count", None)
        if groups is not None:
            out["segments"] = {"logits": kept["logits"].cpu().numpy(), "target": kept["target"].cpu().numpy(),
                               "group": groups}
        return out


_RHEMO_HEADS = "classifier_"
_HEAD_TERMS = ("cls", "vad") + losses.VAD_NAMES
_HEAD_ACCURACIES = ("acc", "acc_valence", "acc_arousal", "acc_dominance")


class RHemoTask(Task):
    """The RH-emo loss (reference §3) and its accuracies.

    Training epochs use the warm-up/holes-scaled emotion weights of that epoch; validation and the final
    evaluation use the configured weights (beta, beta_vad), so validation values are comparable across epochs
    and the final figures measure the objective that was trained (the authors re-evaluated with
    beta = beta_vad = 1, which reports a different loss than the one optimised).
    """

    script = "rhemo"
    accuracy_key = "acc"

    def __init__(self, *, alpha: float, beta: float, beta_class: float, beta_vad: float, warmup_epochs: int = 0,
                 holes: int = 0, monitor: str = "total_loss", recon_div4: bool = False) -> None:
        super().__init__(monitor)
        self.alpha, self.beta, self.beta_class, self.beta_vad = alpha, beta, beta_class, beta_vad
        self.warmup_epochs, self.holes, self.recon_div4 = warmup_epochs, holes, recon_div4

    def weights(self, epoch: int | None, training: bool) -> tuple[float, float]:
        """(beta, beta_vad) for a pass: scheduled on training epochs (0-based), the configured ones otherwise."""
        if training and epoch is not None:
            return losses.emotion_weights(epoch, self.beta, self.beta_vad, self.warmup_epochs, self.holes)
        return self.beta, self.beta_vad

    def idle_parameters(self, net, epoch, training):
        beta, beta_vad = self.weights(epoch, training)
        if beta * self.beta_class or beta * beta_vad:
            return []
        return [p for name, p in net.named_parameters() if name.startswith(_RHEMO_HEADS)]

    def forward(self, model, batch, lean=False):
        return (unwrap(model).reconstruct(batch["x"]),) if lean else model(batch["x"])

    def loss(self, outputs, batch, epoch, training):
        if len(outputs) == 1:
            return self._reconstruction_loss(outputs[0], batch)
        recon, logits, valence, arousal, dominance = outputs
        beta, beta_vad = self.weights(epoch, training)
        vad_pred = torch.cat([valence, arousal, dominance], dim=1)
        terms = losses.rhemo_loss(recon, batch["x"], logits, vad_pred, batch["target"], batch["vad"],
                                  alpha=self.alpha, beta=beta, beta_class=self.beta_class, beta_vad=beta_vad,
                                  recon_div4=self.recon_div4)
        n = recon.shape[0]
        sums = {name: value.detach() * n for name, value in terms.items()}
        kept = {"logits": logits.detach().float(), "vad_pred": vad_pred.detach().float(),
                "target": batch["target"], "vad": batch["vad"]}
        return terms["total"], sums, kept

    def _reconstruction_loss(self, recon, batch):
        """The heads did not run (emotion terms weigh 0): total = recon exactly as in the full loss (recon + 0.0),
        emo = 0, and the head terms are not applicable (nan)."""
        total = losses.reconstruction_loss(recon, batch["x"], self.alpha, self.recon_div4)
        summed = total.detach() * recon.shape[0]
        sums = {"total": summed, "recon": summed, "emo": torch.zeros_like(summed)}
        sums.update(dict.fromkeys(_HEAD_TERMS, torch.full_like(summed, math.nan)))
        return total, sums, {}

    def summarise(self, sums, count, kept):
        out: dict[str, Any] = {name: value / count for name, value in sums.items()}
        if "logits" in kept:
            out.update(metrics.rhemo_metrics(kept["logits"], kept["vad_pred"], kept["target"], kept["vad"]))
        else:  # the heads were not run (untrained in this run): their accuracies are not applicable
            out.update(dict.fromkeys(_HEAD_ACCURACIES, math.nan))
        return out


# ----------------------------------------------------------------------------------------------- passes
def _to_device(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool) -> dict:
    # asynchronous copies need pinned host memory, which the loaders use on CUDA only
    asynchronous = device.type == "cuda"
    out = {k: v.to(device, non_blocking=asynchronous) for k, v in batch.items()}
    if channels_last and out["x"].dim() == 4:
        out["x"] = out["x"].contiguous(memory_format=torch.channels_last)
    return out


def bf16_supported(device: torch.device) -> bool:
    """Native bf16 on ``device``: a CUDA GPU with bf16 (Ampere or later) or a CPU with AVX512-BF16/AMX.

    Elsewhere bf16 is emulated (many times slower than float32) or, on the meta device, has no kernels.
    """
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def _autocast(device: torch.device, amp: bool):
    if amp and bf16_supported(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def make_optimizer(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam(lr, weight_decay) over ``params``: one fused kernel when every parameter is a floating-point tensor
    on a device that has it (about 4x faster than the default over RH-emo's 134 M parameters on CPU), else the
    foreach implementation; the default one when ``SPEEDUPS.fast_adam`` is off. Same maths in all three."""
    params = list(params)
    if not SPEEDUPS.fast_adam:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    fusable = all(p.is_floating_point() and p.device.type in _FUSED_ADAM_DEVICES for p in params)
    if fusable:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)


def _idle_parameters(model: nn.Module, task: Task, epoch: int | None, optimizer) -> list[nn.Parameter]:
    """The parameters this pass leaves out (see :class:`_ParkedParameters`), or [] for the full computation.

    Weight decay > 0 keeps the full computation: Adam adds weight_decay·p to the (zero) gradient, so idle
    parameters would still move. So does DistributedDataParallel, which expects a gradient for every parameter.
    """
    if not SPEEDUPS.skip_idle_heads or isinstance(model, nn.parallel.DistributedDataParallel):
        return []
    if optimizer is not None and any(group["weight_decay"] for group in optimizer.param_groups):
        return []
    return task.idle_parameters(unwrap(model), epoch, optimizer is not None)


class _ParkedParameters:
    """Keeps parameters with an exactly-zero gradient out of a training pass, their Adam state ending as the full
    computation would leave it.

    With a zero gradient (and no weight decay) Adam decays exp_avg/exp_avg_sq, advances ``step`` and moves the
    parameter by lr·m̂/(√v̂ + eps), which is exactly 0 while exp_avg is 0. So when their moments are all zero
    (never trained, e.g. stage 1) they get no gradient during the pass (Adam skips them) and :meth:`finish` adds
    the pass's steps to their step count; a parameter that never had a gradient keeps its state as that count
    alone (no ~1 GB of zero moments for RH-emo's heads), and :func:`_materialise_moments` gives it Adam's zero
    moments before it first gets one. Otherwise (momentum from earlier epochs, e.g. an emo_loss_holes epoch of
    stage 2) they get an explicit zero gradient before every step: Adam then moves them exactly as in the full
    computation, and only their forward and backward passes are saved.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
        self.optimizer, self.params, self.steps = optimizer, params, 0
        self.deferred = all(_zero_moments(optimizer.state.get(p, {})) for p in params)
        self.zeros = None if self.deferred else [torch.zeros_like(p) for p in params]

    def before_step(self) -> None:
        self.steps += 1
        if self.zeros is not None:
            for param, zero in zip(self.params, self.zeros):
                param.grad = zero

    def finish(self) -> None:
        if not self.deferred or self.steps == 0:
            return
        for param in self.params:
            state = self.optimizer.state[param]
            if "step" not in state:
                state["step"] = _adam_step(self.optimizer, param, 0.0)
            state["step"] += self.steps


def _adam_group(optimizer: torch.optim.Optimizer, param: nn.Parameter) -> dict:
    return next(group for group in optimizer.param_groups if any(p is param for p in group["params"]))


def _adam_step(optimizer: torch.optim.Optimizer, param: nn.Parameter, value: float) -> torch.Tensor:
    """A ``step`` entry as torch's Adam creates it: on the parameter's device for the fused and capturable
    implementations, else a CPU scalar; float64 only when that is the default dtype (never when fused)."""
    group = _adam_group(optimizer, param)
    wide = torch.get_default_dtype() == torch.float64 and not group.get("fused")
    on_device = group.get("fused") or group.get("capturable")
    return torch.tensor(value, dtype=torch.float64 if wide else torch.float32,
                        device=param.device if on_device else "cpu")


def _materialise_moments(optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter]) -> None:
    """Give each of ``params`` whose Adam state is a step count alone (see :class:`_ParkedParameters`) the zero
    moments Adam creates at a parameter's first step, keeping the count."""
    for param in params:
        state = optimizer.state.get(param)
        if state is None or set(state) != {"step"}:
            continue
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if _adam_group(optimizer, param).get("amsgrad"):
            state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)


def _zero_moments(state: dict) -> bool:
    return all(not torch.any(value) for key, value in state.items() if key != "step")


def _progress(iterable: Iterable, desc: str, total: int | None = None):
    from tqdm import tqdm

    show = is_main_process() and sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, leave=False, disable=not show, dynamic_ncols=True)


def _row_slice(value: Any, begin: int, end: int) -> Any:
    """Rows begin..end-1 of a tensor, or of each tensor of a tuple/list/dict (model outputs, batches)."""
    if isinstance(value, dict):
        return {k: _row_slice(v, begin, end) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_row_slice(v, begin, end) for v in value)
    return value[begin:end]


class _BatchMeans:
    """Sum over batches of each term's per-batch mean; a batch is closed by ``closes`` (or by :meth:`close`)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.blocks = 0
        self._open: dict[str, torch.Tensor] = {}
        self._rows = 0

    def add(self, batch_sums: dict[str, torch.Tensor], rows: int, closes: bool) -> None:
        for name, value in batch_sums.items():
            self._open[name] = self._open[name] + value if name in self._open else value
        self._rows += rows
        if closes:
            self.close()

    def close(self) -> None:
        if not self._rows:
            return
        for name, value in self._open.items():
            self.sums[name] = self.sums[name] + value / self._rows if name in self.sums else value / self._rows
        self.blocks += 1
        self._open, self._rows = {}, 0


def run_pass(model: nn.Module, task: Task, loader, device: torch.device, *, optimizer=None, epoch: int | None,
             amp: bool = False, channels_last: bool = False, desc: str = "",
             batch_mean_rows: int | None = None) -> dict[str, Any]:
    """One pass over ``loader`` (any iterable of batch dicts): training when ``optimizer`` is given (the model
    must then be in train mode), else evaluation under no_grad. Returns the task's metrics of the pass, reduced
    over all processes. ``epoch`` (0-based) selects RH-emo's scheduled loss weights; None = configured ones.

    Besides the per-segment means, every summed term gets ``<name>_batchmean``: the mean of per-batch means
    (the authors' averaging). In evaluation with ``batch_mean_rows = B`` the batches are consecutive blocks of B
    rows in loader order, whatever the loader's own batch size (under torchrun: of each process's shard), and
    ``<task.accuracy_key>_batchmean`` is the mean of per-block accuracies over all rows in order; otherwise the
    batches are the loader's. Parameters whose loss terms weigh 0 in the pass (``task.idle_parameters``) are not run."""
    training = optimizer is not None
    blocks = None if training else batch_mean_rows
    sums: dict[str, torch.Tensor] = {}
    kept: dict[str, list[torch.Tensor]] = {}
    means = _BatchMeans()
    count = 0
    idle = _idle_parameters(model, task, epoch, optimizer)
    parked = _ParkedParameters(optimizer, idle) if training and idle else None
    if training:
        deferred = {id(p) for p in idle} if parked is not None and parked.deferred else set()
        _materialise_moments(optimizer, (p for group in optimizer.param_groups for p in group["params"]
                                         if id(p) not in deferred))
    with nullcontext() if training else torch.inference_mode():
        for batch in _progress(loader, desc):
            batch = _to_device(batch, device, channels_last)
            with _autocast(device, amp):
                outputs = task.forward(model, batch, lean=bool(idle))
            n = int(batch["x"].shape[0])
            rows = int(batch["weight"].sum()) if "weight" in batch else n
            for begin, end in [(0, n)] if not blocks else protocol.chunk_bounds(count, n, blocks):
                part = (outputs, batch) if (begin, end) == (0, n) else \
                    (_row_slice(outputs, begin, end), _row_slice(batch, begin, end))
                loss, batch_sums, batch_kept = task.loss(part[0], part[1], epoch, training)
                if training:
                    if not torch.isfinite(loss.detach()):
                        raise NonFiniteLoss(float(loss.detach()))
                    optimizer.zero_grad(set_to_none=True)
                    (loss * _share_of_global_batch(rows)).backward()
                    if parked is not None:
                        parked.before_step()
                    optimizer.step()
                if rows == 0:  # a padding row (see rhemo.train.loaders.GlobalBatchSampler): no sample to count
                    continue
                for name, value in batch_sums.items():
                    sums[name] = sums[name] + value if name in sums else value
                for name, value in batch_kept.items():
                    kept.setdefault(name, []).append(value)
                means.add(batch_sums, end - begin, closes=not blocks or (count + end) % blocks == 0)
            count += rows
    if parked is not None:
        parked.finish()
    return _pass_metrics(task, sums, means, kept, count, desc, None if training else batch_mean_rows)


def _pass_metrics(task: Task, sums: dict[str, torch.Tensor], means: "_BatchMeans", kept: dict[str, list],
                  count: int, desc: str, batch_mean_rows: int | None) -> dict[str, Any]:
    """The metrics of a pass from this process's sums, batch means and kept rows, reduced over all processes."""
    means.close()
    batch_means, chunks = means.sums, means.blocks
    # one collective for all sums: [count, chunks, sum_1, ..., sum_k, batch-mean sum_1, ...] in float64
    names = sorted(sums)
    local = torch.tensor([float(count), float(chunks)] + [float(sums[n]) for n in names]
                         + [float(batch_means[n]) for n in names], dtype=torch.float64)
    total = all_reduce_sum(local)
    count_all, chunks_all = int(total[0].item()), float(total[1])
    if count_all == 0:
        raise ValueError(f"{desc or 'a pass'}: the loader produced no rows")
    reduced = {n: float(total[i + 2]) for i, n in enumerate(names)}
    gathered = {n: all_gather_rows(torch.cat(v)) for n, v in kept.items()}
    out = task.summarise(reduced, count_all, gathered)
    out.update({f"{n}_batchmean": float(total[i + 2 + len(names)]) / chunks_all for i, n in enumerate(names)})
    if batch_mean_rows and {"logits", "target"} <= set(gathered):
        out[f"{task.accuracy_key}_batchmean"] = protocol.batch_mean_accuracy(
            gathered["logits"], gathered["target"], batch_mean_rows)
    return out


def _share_of_global_batch(rows: int) -> float:
    """Loss factor ``rows · W / global rows`` of this rank's part of a global batch (1 in a single process).

    DistributedDataParallel averages the W ranks' gradients; with each rank's mean loss scaled by this factor,
    the average is the gradient of the mean loss over the global batch, even when the ranks' parts differ (the
    last, partial batch). Full batches split evenly give exactly 1.
    """
    if not is_distributed():
        return 1.0
    total = float(all_reduce_sum(torch.tensor([float(rows)], dtype=torch.float64))[0])
    return rows * get_world_size() / total


def evaluate_splits(net: nn.Module, task: Task, loaders: dict, runtime: Runtime, cfg: dict) -> dict:
    """:func:`evaluate` on each named loader ({'train': ..., 'val': ..., 'test': ...}); an empty split gives {}."""
    channels_last = use_channels_last(cfg, runtime.device)
    return {name: evaluate(net, task, loader, runtime.device, amp=cfg["amp"], channels_last=channels_last,
                           desc=f"final {name}", batch_mean_rows=cfg["batch_size"]) if len(loader.dataset) else {}
            for name, loader in loaders.items()}


def evaluate(model: nn.Module, task: Task, loader, device: torch.device, *, amp: bool = False,
             channels_last: bool = False, desc: str = "eval", batch_mean_rows: int | None = None) -> dict[str, Any]:
    """Metrics of ``model`` (eval mode, no_grad) over ``loader``; under torchrun each rank passes its shard
    and every rank gets the metrics of the whole set. Pass the unwrapped network (see :func:`unwrap`).
    ``batch_mean_rows``: block size of the ``*_batchmean`` metrics (see :func:`run_pass`)."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    try:
        return run_pass(model, task, loader, device, epoch=None, amp=amp, channels_last=channels_last, desc=desc,
                        batch_mean_rows=batch_mean_rows)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------- run folder
def prepare_output_dir(output_dir: str | os.PathLike, cfg: dict, script_file: str, force: bool = False) -> Path:
    """Check the run folder, create it and write ``config.json`` (rank 0 only).

    Every rank first checks the folder (:func:`rhemo.train.runfolder.check_run_folder`): a finished run, or a
    run of another config (in config.json or last.pt, outside :data:`RESUME_FREE_KEYS`), is refused with a
    RunFolderError unless ``force``. With ``force`` a last.pt of another config is removed (a last.pt of the
    same config is resumed: that gives the result of a fresh run). Temporary files of interrupted saves are
    removed. The resolved config is written with a ``script`` entry; launcher-only keys already present in an
    existing config.json (the launcher writes one there before starting the script) are kept. An earlier
    ``metrics.json`` is moved to ``metrics.previous.json``: its presence must mean that *this* run finished.
    """
    out = Path(output_dir)
    stale = runfolder.check_run_folder(out, cfg, RESUME_FREE_KEYS, force, lambda: _resume_config(out / LAST_FILE))
    barrier()  # every rank has read the folder before rank 0 changes it
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        for path in runfolder.remove_stale_temps(out):
            print(f"removed {path}, left by an interrupted save", flush=True)
        if stale:
            (out / LAST_FILE).unlink()
            print(f"--force: {out / LAST_FILE} had another config ({', '.join(stale)}); training from scratch",
                  flush=True)
        write_json(out / CONFIG_FILE, _config_record(out / CONFIG_FILE, cfg, script_file))
        if (out / METRICS_FILE).exists():
            os.replace(out / METRICS_FILE, out / runfolder.PREVIOUS_METRICS_FILE)
    barrier()
    return out


def _config_record(existing: Path, cfg: dict, script_file: str) -> dict[str, Any]:
    """What ``config.json`` holds: the launcher-only keys of an ``existing`` one, ``script``, then ``cfg``."""
    record: dict[str, Any] = {}
    if existing.is_file():
        try:
            old = json.loads(existing.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if isinstance(old, dict):
            launcher_keys = set(config.options_for("launcher")) - set(cfg)
            record.update({k: v for k, v in old.items() if k in launcher_keys})
    record["script"] = script_file
    record.update(cfg)
    return record


def _resume_config(path: Path) -> dict | None:
    """The config stored in a resume file (None when there is none)."""
    if not path.exists():
        return None
    saved = load_checkpoint(path, map_location="cpu")
    return saved.get("config", {}) if isinstance(saved, dict) else {}


class _EpochLog:
    """``log.csv``: one row per epoch, appended and flushed as soon as the epoch ends (rank 0 only)."""

    def __init__(self, path: Path, history: list[dict]) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if is_main_process():
            if history:  # a resumed run: the log restarts from the state that last.pt vouches for
                self.fields = list(history[0])
                with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
                    writer = csv.DictWriter(handle, self.fields, extrasaction="ignore")
                    writer.writeheader()
                    writer.writerows(history)
            elif path.exists():
                path.unlink()

    def append(self, row: dict) -> None:
        if not is_main_process():
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
def _scalars(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}_{k}": float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def monitored_value(val: dict[str, Any], task: Task, cfg: dict) -> tuple[str, float]:
    """(key, value) of the validation metric that selects the checkpoint and drives early stopping: a loss is
    the mean of per-batch means under ``loss_averaging: batch`` (the authors), else the per-segment mean."""
    key = task.monitor_key
    if task.mode == "min" and cfg["loss_averaging"] == "batch":
        key = f"{key}_batchmean"
    return key, float(val[key])


def should_stop(state: "FitState", key: str, mode: str, cfg: dict) -> bool:
    """Early stopping after the epoch just appended to ``state.history``, by ``early_stopping_rule``."""
    if not cfg["early_stopping"]:
        return False
    if cfg["early_stopping_rule"] == "authors":
        values = [float(row[f"val_{key}"]) for row in state.history]
        return protocol.authors_should_stop(values, cfg["patience"], mode)
    return state.bad_epochs >= cfg["patience"]


def _improved(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def _epoch_line(epoch: int, num_epochs: int, train: dict, val: dict, keys: list[str], seconds: float,
                best: bool) -> str:
    def part(values: dict) -> str:
        return " ".join(f"{k} {values[k]:.4f}" for k in keys if k in values)
    return (f"epoch {epoch}/{num_epochs}  train {part(train)} | val {part(val)} | {seconds:.1f} s"
            + ("  *best" if best else ""))


def _configure_backends(cfg: dict, device: torch.device, is_main: bool) -> None:
    """cuDNN autotuning (``cudnn_benchmark``: faster convolutions, no longer bit-reproducible) and a notice when
    ``amp`` has no native bf16 on this device (the run then stays in float32, see :func:`bf16_supported`)."""
    torch.backends.cudnn.benchmark = bool(cfg["cudnn_benchmark"])
    torch.backends.cudnn.deterministic = not cfg["cudnn_benchmark"]
    if cfg["amp"] and not bf16_supported(device) and is_main:
        print(f"amp: {device} has no native bf16, running in float32", flush=True)


def _checkpoint_is_model(net: nn.Module) -> bool:
    """Whether checkpoint.pt stores ``net``'s own state dict (RH-emo), so last.pt can refer to it."""
    weights, own = checkpoint_weights(net)[0], net.state_dict()
    return weights.keys() == own.keys() and all(
        weights[k].data_ptr() == own[k].data_ptr() and weights[k].shape == own[k].shape for k in own)


class Training:
    """One call of :func:`fit`: the optimiser, the resumed :class:`FitState`, the logs, and :meth:`run_epoch`."""

    def __init__(self, model: nn.Module, task: Task, train_loader, val_loader, cfg: dict, runtime: Runtime,
                 out: Path, checkpoint: TrainedCheckpoint, show_keys: list[str],
                 epoch_callback: Callable[[nn.Module, dict, dict], tuple[dict, str | None]] | None) -> None:
        self.model, self.net, self.task = model, unwrap(model), task
        self.train_loader, self.val_loader = train_loader, val_loader
        self.cfg, self.runtime, self.out, self.checkpoint = cfg, runtime, out, checkpoint
        self.show_keys, self.epoch_callback = show_keys, epoch_callback
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(params, cfg["learning_rate"], cfg["regularization_lambda"])
        self.state = load_resume(out / LAST_FILE, cfg, RESUME_FREE_KEYS, self.net, self.optimizer) or FitState()
        state = self.state
        self.saver = RunSaver(out, state, background=SPEEDUPS.background_writes,
                              checkpoint_is_model=SPEEDUPS.single_copy and _checkpoint_is_model(self.net))
        self.log = _EpochLog(out / LOG_FILE, state.history)
        self.board = TensorBoardLog(out, cfg.get("tensorboard", False) and is_main_process())
        self.run_kwargs = {"amp": cfg["amp"], "channels_last": use_channels_last(cfg, runtime.device)}
        _configure_backends(cfg, runtime.device, is_main_process())

    def run_epoch(self) -> None:
        """Train and validate one epoch; write checkpoint.pt if best, and last.pt (in the background, see
        :mod:`rhemo.train.resume`); log.csv and the epoch line."""
        state, cfg = self.state, self.cfg
        epoch = state.epochs  # 0-based index of the epoch about to run
        started = time.perf_counter()
        train, val = self._passes(epoch)
        monitor_key, monitored = monitored_value(val, self.task, cfg)
        best = _improved(monitored, state.best_metric, self.task.mode)
        state.epochs = epoch + 1
        if best:
            state.best_metric, state.best_epoch, state.bad_epochs = monitored, state.epochs, 0
        else:
            state.bad_epochs += 1
        extra_columns, extra_line = self.epoch_callback(self.net, train, val) if self.epoch_callback else ({}, None)
        self.saver.wait()  # the time the previous epoch's writes still take counts in this epoch's
        seconds = time.perf_counter() - started
        state.seconds += seconds
        state.history.append({"epoch": epoch + 1, **_scalars("train", train), **_scalars("val", val),
                              "lr": self.optimizer.param_groups[0]["lr"], **extra_columns,
                              "seconds": round(seconds, 3)})
        state.stopped = should_stop(state, monitor_key, self.task.mode, cfg)
        self.saver.save_epoch(self.net, self.optimizer, state, cfg, self._checkpoint(monitored) if best else None)
        if is_main_process():
            self._report(train, val, seconds, best, extra_line, monitor_key)

    def _passes(self, epoch: int) -> tuple[dict, dict]:
        """The training pass (re-seeded from (seed, epoch, rank)) and the validation pass of ``epoch``."""
        cfg = self.cfg
        seed = epoch_seed(cfg["seed"], epoch, self.runtime.rank)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        self.train_loader.sampler.set_epoch(epoch)
        self.model.train()
        device = self.runtime.device
        try:
            train = run_pass(self.model, self.task, self.train_loader, device, optimizer=self.optimizer,
                             epoch=epoch, desc=f"epoch {epoch + 1} train", **self.run_kwargs)
        except NonFiniteLoss as exc:
            self.saver.wait(quiet=True)
            raise TrainingDiverged(_divergence_message(exc.value, epoch + 1, cfg, self.out / LAST_FILE,
                                                       self.saver.saved_epochs)) from None
        val = evaluate(self.net, self.task, self.val_loader, device, desc=f"epoch {epoch + 1} val",
                       batch_mean_rows=cfg["batch_size"], **self.run_kwargs)
        return train, val

    def _checkpoint(self, monitored: float) -> tuple[dict[str, torch.Tensor], Callable[[dict], dict]]:
        """What checkpoint.pt stores of this best epoch: (its live weights, their copies → the payload)."""
        weights, rhemo = checkpoint_weights(self.net)
        epochs, cfg = self.state.epochs, self.cfg
        return weights, lambda copies: self.checkpoint.completed(copies, epochs, monitored, cfg,
                                                                 rhemo=rhemo).to_payload()

    def _report(self, train: dict, val: dict, seconds: float, best: bool, extra_line: str | None,
                monitor_key: str) -> None:
        state, cfg = self.state, self.cfg
        self.log.append(state.history[-1])
        self.board.epoch(state.history[-1])
        print(_epoch_line(state.epochs, cfg["num_epochs"], train, val, self.show_keys, seconds, best), flush=True)
        if extra_line:
            print(extra_line, flush=True)
        if state.stopped:
            print(f"early stopping ({cfg['early_stopping_rule']} rule, patience {cfg['patience']}) on val "
                  f"{monitor_key} (best epoch {state.best_epoch})", flush=True)


def fit(model: nn.Module, task: Task, train_loader, val_loader, *, cfg: dict, runtime: Runtime,
        output_dir: str | os.PathLike, checkpoint: TrainedCheckpoint, show_keys: list[str],
        epoch_callback: Callable[[nn.Module, dict, dict], tuple[dict, str | None]] | None = None,
        after_epoch: Callable[[int], None] | None = None) -> FitState:
    """Train ``model`` until ``num_epochs`` or early stopping; returns the final :class:`FitState`.

    Args:
        model: the network on ``runtime.device`` (wrapped in DistributedDataParallel under torchrun).
        task: :class:`SERTask` or :class:`RHemoTask`.
        train_loader: from :func:`rhemo.train.loaders.make_train_loader` (its sampler has ``set_epoch``).
        val_loader: from :func:`rhemo.train.loaders.make_eval_loader`.
        cfg: the validated config (keys learning_rate, regularization_lambda, num_epochs, early_stopping,
            patience, seed, amp, channels_last; the whole dict is stored for resume checks).
        output_dir: the run folder (checkpoint.pt, last.pt, log.csv).
        checkpoint: what ``checkpoint.pt`` says besides the weights; each best epoch saves it completed with
            the weights (:func:`rhemo.train.embeddings.checkpoint_weights`), epoch, metric and config.
        show_keys: metric names printed in the one-line epoch summary.
        epoch_callback: optional ``(unwrapped model, train metrics, val metrics) → (extra numeric log.csv
            columns, line printed after the epoch summary or None)``, called after each validation pass.
        after_epoch: optional ``hook(epoch)`` (1-based) called after each finished epoch, once its files are
            being written (the bench times epochs with it; tests interrupt a run at a chosen epoch: a Ctrl-C
            raised from it waits for them).

    Raises:
        TrainingInterrupted: on Ctrl-C (``last.pt`` holds the last finished epoch).
        TrainingDiverged: when the training loss becomes nan/inf (last.pt keeps the epochs before).
    """
    out = Path(output_dir)
    training = Training(model, task, train_loader, val_loader, cfg, runtime, out, checkpoint, show_keys,
                        epoch_callback)
    state = training.state
    saver = training.saver
    try:
        while not state.stopped and state.epochs < cfg["num_epochs"]:
            training.run_epoch()
            if after_epoch is not None:
                after_epoch(state.epochs)
        saver.wait()
    except KeyboardInterrupt:
        saver.wait()
        if is_main_process():
            print(f"\ninterrupted: {out / LAST_FILE} holds {saver.saved_epochs} finished epoch(s); run the same "
                  f"command again to resume", flush=True)
        raise TrainingInterrupted(f"training interrupted after {saver.saved_epochs} saved epoch(s)") from None
    except BaseException:
        saver.wait(quiet=True)  # the files of the finished epochs are kept; the error raised is the first one
        raise
    finally:
        training.board.close()
    if state.best_state is None:
        raise TrainingDiverged(f"the validation {task.monitor_key} was never finite; no checkpoint was written; "
                               f"lower learning_rate (now {cfg['learning_rate']:g}) and retrain with --force")
    return state


def _divergence_message(value: float, epoch: int, cfg: dict, last: Path, saved_epochs: int) -> str:
    kept = (f"{last} keeps the {saved_epochs} finished epoch(s) before it" if saved_epochs
            else "no epoch had finished, so nothing was saved")
    return (f"the training loss became {value} at epoch {epoch}; lower learning_rate (now "
            f"{cfg['learning_rate']:g}) and retrain with --force, or check the input normalisation; {kept}")


def write_metrics(output_dir: str | os.PathLike, record: dict, state: FitState) -> dict:
    """Write ``metrics.json`` (atomically, rank 0) and delete ``last.pt`` and ``best.pt``: the run is finished.

    ``record`` holds the script-specific fields (script, model_name, quat, params, label_names, train, val,
    test); the status, epoch counts and time come from ``state``.
    """
    full = {"status": "done", **record, "epochs": state.epochs, "best_epoch": state.best_epoch,
            "seconds": round(state.seconds, 3)}
    out = Path(output_dir)
    if is_main_process():
        runfolder.write_metrics(out, full)
        for name in (LAST_FILE, BEST_FILE):
            if (out / name).exists():
                (out / name).unlink()
    barrier()
    return full
