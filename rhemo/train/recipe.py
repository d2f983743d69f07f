"""What ``training_RHemo.py`` and ``training_SER.py`` share around :func:`rhemo.train.loop.fit`.

A training script is a recipe of these steps; only the model, the task and the figures are its own::

    out = recipe.start(cfg, "training_SER.py", force, process)     # seed, run folder, environment.json
    data = recipe.RunData.load(cfg)                                # store, label view + split, normalisation
    loaders = recipe.Loaders.make(data.datasets(), cfg, process)   # training and evaluation loaders
    ...                                                            # the script's model and task
    checkpoint = data.checkpoint(cfg, model_name, model_kwargs)    # what checkpoint.pt says besides weights
    state, results = recipe.train_best(model, net, task, loaders, cfg, process, out, checkpoint, show_keys)
    recipe.finish(out, {**data.record(...), **results}, state, lines)   # metrics.json, result lines

``main`` is :func:`run_command`, which validates the config once per process.

Only rank 0 writes files and prints; every rank trains and evaluates.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from rhemo.data.normalisation import Normalisation, compute_normalisation, pad_start
from rhemo.data.selection import Selection, select_rows
from rhemo.data.store import SegmentStore
from models.registry import count_parameters
from rhemo.train import config, loop, runfolder
from rhemo.train.checkpoint import TrainedCheckpoint
from rhemo.train.environment import write_environment
from rhemo.train.loaders import eval_batch_size, make_datasets, make_eval_loader, make_train_loader
from rhemo.train.runtime import LAUNCHER_PID_ENV, Runtime, is_main_process, seed_everything, setup

__all__ = ["run_command", "start", "RunData", "Loaders", "train_best", "finish", "announce"]


def run_command(script: str, description: str, train: Callable[..., None], argv: list[str] | None) -> int:
    """A training script's ``main``: parse (and validate, once) its command line, set up the process, run
    ``train(cfg, process, force=...)`` under :func:`rhemo.train.loop.run_guarded`; returns the exit code."""
    cfg, force = config.parse_command(script, description, argv)
    process = setup(cfg["use_cuda"], cfg["gpu_id"])
    return loop.run_guarded(functools.partial(train, force=force), cfg, process)


def start(cfg: dict, script_file: str, force: bool, process: Runtime) -> Path:
    """Seed every generator, lock the run folder (:func:`rhemo.train.runfolder.lock_for_training`), check and
    create it (see :func:`rhemo.train.loop.prepare_output_dir`, ``force`` retrains a finished or foreign one)
    and write its ``environment.json``; returns the folder."""
    seed_everything(cfg["seed"])
    if is_main_process():
        runfolder.lock_for_training(cfg["output_dir"], os.environ.get(LAUNCHER_PID_ENV, ""))
    out = loop.prepare_output_dir(cfg["output_dir"], cfg, script_file, force=force)
    if is_main_process():
        write_environment(out, process.device, process.world_size)
    return out


@dataclass
class RunData:
    """The store, its selection (label view and split) and the normalisation fitted on the training split."""

    store: SegmentStore
    selection: Selection
    norm: Normalisation

    @classmethod
    def load(cls, cfg: dict) -> "RunData":
        store = SegmentStore(cfg["store_path"])
        selection = select_rows(store, cfg)
        norm = compute_normalisation(store.predictors, selection.rows["train"], cfg["normalisation"],
                                     frames=pad_start(store.feature_settings), transform=cfg["input_transform"])
        return cls(store, selection, norm)

    @property
    def label_names(self) -> list[str]:
        return self.selection.label_names

    def datasets(self, features: np.ndarray | None = None) -> dict:
        """Per split, the normalised (N, 1, 512, 128) store segments, or rows of precomputed ``features``
        (e.g. (N, 4, 64, 64) cached RH-emo embeddings, already normalised)."""
        if features is None:
            return make_datasets(self.store.predictors, self.selection, self.norm)
        return make_datasets(features, self.selection, None)

    def record(self, script: str, model_name: str, cfg: dict, net: nn.Module) -> dict[str, Any]:
        """The fields every ``metrics.json`` starts with."""
        return {"script": script, "model_name": model_name, "quat": cfg["model_quat"],
                "params": count_parameters(net), "label_names": self.label_names}

    def checkpoint(self, cfg: dict, model_name: str, model_kwargs: dict, rhemo: dict | None = None,
                   provenance: dict | None = None) -> TrainedCheckpoint:
        """The run's :class:`TrainedCheckpoint` before training: what ``checkpoint.pt`` says besides weights."""
        return TrainedCheckpoint(model_name=model_name, model_kwargs=model_kwargs, label_names=self.label_names,
                                 label_view=cfg["label_view"], dataset=self.store.dataset,
                                 normalisation=self.norm.to_dict(),
                                 feature_settings=self.store.feature_settings.to_dict(), rhemo=rhemo,
                                 provenance=provenance)


@dataclass
class Loaders:
    """The training loader and one evaluation loader per split."""

    train: Any
    evaluation: dict[str, Any]

    @classmethod
    def make(cls, datasets: dict, cfg: dict, process: Runtime) -> "Loaders":
        workers = cfg["num_workers"]
        train = make_train_loader(datasets["train"], cfg["batch_size"], cfg["seed"], process, workers)
        evaluation = {split: make_eval_loader(dataset, eval_batch_size(cfg), process, workers)
                      for split, dataset in datasets.items()}
        return cls(train, evaluation)


def announce(line: str) -> None:
    """Print ``line`` once (rank 0)."""
    if is_main_process():
        print(line, flush=True)


def train_best(model: nn.Module, net: nn.Module, task: loop.Task, loaders: Loaders, cfg: dict, process: Runtime,
               out: Path, checkpoint: TrainedCheckpoint, show_keys: list[str],
               epoch_callback: Callable | None = None) -> tuple[loop.FitState, dict]:
    """:func:`rhemo.train.loop.fit`, then the best epoch's weights back into ``net`` (the unwrapped ``model``)
    and its metrics on every split: (fit state, {split: metrics}, an empty split giving {})."""
    state = loop.fit(model, task, loaders.train, loaders.evaluation["val"], cfg=cfg, runtime=process,
                     output_dir=out, checkpoint=checkpoint, show_keys=show_keys, epoch_callback=epoch_callback)
    net.load_state_dict(state.best_state)
    return state, loop.evaluate_splits(net, task, loaders.evaluation, process, cfg)


def finish(out: str | os.PathLike, record: dict, state: loop.FitState, lines: list[str]) -> None:
    """Write ``metrics.json`` (the run is finished, see :func:`rhemo.train.loop.write_metrics`), then print
    ``lines`` and the run folder (rank 0)."""
    loop.write_metrics(out, record, state)
    if is_main_process():
        for line in lines:
            print(line)
        print(f"run folder: {out}")
