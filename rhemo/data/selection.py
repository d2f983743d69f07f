"""The rows of a segment store a run uses: the config's label view and split applied, labels per split."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rhemo.data.splits import group_codes, make_split
from rhemo.data.views import label_view
from rhemo.errors import DataError

__all__ = ["SPLITS", "Selection", "select_rows"]

SPLITS = ("train", "val", "test")


@dataclass
class Selection:
    """The rows of a store a run uses, and their labels, per split.

    ``rows[s]`` are store row indices (sorted int64); ``targets[s]`` class ids (int64, −1 = none);
    ``vad[s]`` (n, 3) float32 binarised V/A/D (nan = none); ``groups[s]`` int64 utterance codes (for
    utterance-level metrics). ``label_names`` index the class ids.
    """
    label_names: list[str]
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    vad: dict[str, np.ndarray] = field(default_factory=dict)
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {s: int(self.rows[s].size) for s in SPLITS}


def select_rows(store: Any, cfg: dict) -> Selection:
    """Apply the config's label view and split to a ``SegmentStore``.

    Uses config keys label_view, protocol, split_fractions, fold, num_folds, seed, train_fraction. Raises
    DataError when the view keeps no segment or the training/validation split is empty.
    """
    table = store.table
    try:
        view = label_view(table, cfg["label_view"], store.info["dataset"])
    except ValueError as exc:
        raise DataError(f"store {store.path}: key 'label_view' {cfg['label_view']!r} does not fit this corpus: "
                        f"{exc}") from None
    kept = np.asarray(view.indices, dtype=np.int64)
    if kept.size == 0:
        raise DataError(f"label view {cfg['label_view']!r} keeps no segment of the store at {store.path}")
    utterances = np.asarray(table.utterance_id)[kept]
    try:
        split = make_split(
            cfg["protocol"], utterances, np.asarray(table.speaker)[kept], np.asarray(table.session)[kept],
            fractions=cfg["split_fractions"], fold=cfg["fold"], num_folds=cfg["num_folds"], seed=cfg["seed"],
            train_fraction=cfg["train_fraction"])
    except ValueError as exc:
        raise DataError(f"store {store.path}: protocol {cfg['protocol']!r} with num_folds {cfg['num_folds']} "
                        f"(fold {cfg['fold']}) cannot split this store: {exc}") from None
    _, codes = group_codes(utterances)
    selection = Selection(label_names=list(view.label_names))
    targets = np.asarray(view.targets, dtype=np.int64)
    vad = np.asarray(view.vad, dtype=np.float32).reshape(-1, 3)
    for name, positions in zip(SPLITS, split):
        positions = np.asarray(positions, dtype=np.int64)
        selection.rows[name] = kept[positions]
        selection.targets[name] = targets[positions]
        selection.vad[name] = vad[positions]
        selection.groups[name] = codes[positions]
    for name in ("train", "val"):
        if selection.rows[name].size == 0:
            raise DataError(f"the {name} split is empty (store {store.path}, view {cfg['label_view']!r}, protocol "
                            f"{cfg['protocol']!r}, fractions {cfg['split_fractions']}); use more data or other "
                            f"split_fractions")
    return selection
