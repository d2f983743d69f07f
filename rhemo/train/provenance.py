"""Where an RH-emo checkpoint's training data came from, and the SER test-set leakage check.

``training_RHemo.py`` records in its checkpoint a ``provenance`` entry::

    {"store_fingerprint": ..., "seed": 1, "protocol": "random", "label_view": "iemocap4",
     "stages": [{"store_fingerprint", "store_path", "dataset", "label_view", "protocol", "split_fractions",
                 "seed", "num_folds", "fold", "train_fraction", "labelled": beta > 0, "output_dir"}, ...]}

one stage per training run the weights went through, the earlier ones carried over from ``load_pretrained``
(a file without provenance, e.g. the authors' weights, becomes an ``{"external": path}`` stage).

``training_SER.py`` then recomputes each stage's training split on its own store and refuses to run when one
of its test utterances was in the training split of a *labelled* stage (the RH-emo head saw its label), unless
``allow_rhemo_test_overlap`` is true. Overlap with a label-free stage (reconstruction only) is reported and
allowed: the paper's stage 1 splits a different utterance list. An RH-emo that cannot be checked (not trained
by this repository, or on another store) is reported in one line.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rhemo.train.checkpoint import load_checkpoint
from rhemo.train.config import ConfigError
from rhemo.data.store import INFO_FILE

__all__ = ["SPLIT_KEYS", "store_identity", "rhemo_provenance", "read_provenance", "OverlapCheck",
           "check_test_overlap"]

#: config keys that fix a run's split of a store
SPLIT_KEYS = ("label_view", "protocol", "split_fractions", "seed", "num_folds", "fold", "train_fraction")


def store_identity(store: Any) -> str:
    """The store's fingerprint from info.json, or (older stores) a SHA-256 of info.json and the array shape."""
    fingerprint = store.info.get("fingerprint")
    if fingerprint:
        return str(fingerprint)
    digest = hashlib.sha256((Path(store.path) / INFO_FILE).read_bytes())
    digest.update(repr(tuple(store.predictors.shape)).encode())
    return digest.hexdigest()


def read_provenance(path: str | os.PathLike) -> dict | None:
    """The ``provenance`` entry of a checkpoint, or None (a bare state_dict such as the authors' file)."""
    saved = load_checkpoint(path, map_location="cpu")
    record = saved.get("provenance") if isinstance(saved, dict) else None
    return record if isinstance(record, dict) and isinstance(record.get("stages"), list) else None


def rhemo_provenance(cfg: dict, store: Any, pretrained: str | os.PathLike | None) -> dict:
    """The provenance of an RH-emo run with config ``cfg`` on ``store``, after the stages of ``pretrained``."""
    stages: list[dict] = []
    if pretrained:
        earlier = read_provenance(pretrained)
        stages = list(earlier["stages"]) if earlier else [{"external": str(pretrained)}]
    identity = store_identity(store)
    stage = {"store_fingerprint": identity, "store_path": str(store.path), "dataset": store.dataset,
             **{k: cfg[k] for k in SPLIT_KEYS}, "labelled": cfg["loss_beta"] > 0, "output_dir": cfg["output_dir"]}
    return {"store_fingerprint": identity, "seed": cfg["seed"], "protocol": cfg["protocol"],
            "label_view": cfg["label_view"], "stages": stages + [stage]}


@dataclass
class OverlapCheck:
    """Outcome of :func:`check_test_overlap`: lines to print, and the worst finding for the run record.

    ``status``: 'clean', 'label-free overlap', 'labelled overlap allowed' or 'unverified'.
    """
    status: str
    lines: list[str]
    labelled_overlap: int = 0
    label_free_overlap: int = 0

    def record(self) -> dict:
        """The run record's entries: ``rhemo_check`` and a spreadsheet ``note`` when the check is not clean."""
        return {"rhemo_check": {"status": self.status, "labelled_overlap": self.labelled_overlap,
                                "label_free_overlap": self.label_free_overlap},
                "note": "" if self.status == "clean" else f"RH-emo: {self.status}"}


def _training_utterances(store: Any, cfg: dict, stage: dict) -> set:
    from rhemo.data.selection import select_rows

    selection = select_rows(store, {**cfg, **{k: stage[k] for k in SPLIT_KEYS}})
    return set(np.asarray(store.table.utterance_id)[selection.rows["train"]].tolist())


def check_test_overlap(path: str | os.PathLike, store: Any, cfg: dict, test_rows: np.ndarray) -> OverlapCheck:
    """Check the SER run's test segments (store rows ``test_rows``) against the RH-emo checkpoint ``path``.

    Raises ConfigError (one line) when test utterances were in a labelled stage's training split and
    ``cfg['allow_rhemo_test_overlap']`` is false.
    """
    test = set(np.asarray(store.table.utterance_id)[np.asarray(test_rows, dtype=np.int64)].tolist())
    provenance = read_provenance(path)
    if provenance is None:
        return OverlapCheck("unverified", [
            f"RH-emo {path} was not trained by training_RHemo.py (e.g. the authors' weights): its training "
            f"utterances are unknown and may include this run's test set (with the authors' weights and our split "
            f"about 70 % of it); train it with experiment 1 on this store for a clean test"])
    check = OverlapCheck("clean", [])
    identity = store_identity(store)
    for number, stage in enumerate(provenance["stages"], start=1):
        where = f"stage {number} of RH-emo {path}"
        if "external" in stage or stage.get("store_fingerprint") != identity:
            origin = f"started from {stage['external']}" if "external" in stage else \
                f"was trained on another store ({stage.get('store_path')})"
            check.status = "unverified"
            check.lines.append(f"{where} {origin}: its overlap with this run's test set cannot be checked")
            continue
        shared = test & _training_utterances(store, cfg, stage)
        if not shared:
            continue
        text = (f"{len(shared)} of {len(test)} test utterances were in the training split of {where} "
                f"(label_view {stage['label_view']}, protocol {stage['protocol']}, seed {stage['seed']})")
        if not stage["labelled"]:
            check.label_free_overlap = max(check.label_free_overlap, len(shared))
            check.lines.append(f"{text}, which used no labels (reconstruction only, as in the paper): allowed")
            if check.status == "clean":
                check.status = "label-free overlap"
            continue
        if not cfg["allow_rhemo_test_overlap"]:
            raise ConfigError(f"{text}, which was trained with labels (loss_beta > 0): the test set leaks. Train "
                              f"RH-emo stage 2 with this run's store, label_view, protocol and seed, or set "
                              f"allow_rhemo_test_overlap: true")
        check.labelled_overlap = max(check.labelled_overlap, len(shared))
        check.lines.append(f"{text}, which was trained with labels: allowed by allow_rhemo_test_overlap")
        check.status = "labelled overlap allowed"
    return check
