"""Label views: which segments of a store a run trains on, and their integer targets.

A store keeps every segment with the corpus's own label strings; a view chooses rows and classes at
training time:

* ``iemocap4``: IEMOCAP neu/ang/hap/sad only (the paper's set; 4,490 utterances on the real corpus);
* ``iemocap4_exc``: the same with exc merged into hap (5,531 utterances);
* ``complete``: every IEMOCAP segment; labels outside the four become ``other`` (class 4), as in the
  reference "complete" matrices used for reconstruction pretraining;
* ``native``: the corpus's own classes in a fixed canonical order (RAVDESS 8, EmoDB 7, TESS 7, IEMOCAP the
  10 categories without ``xxx`` = no majority); for ``folder`` corpora the sorted labels present.

V/A/D targets are binarised as in the reference: 1 if value > 2.5 else 0 (2.5 itself → 0); nan stays nan
(corpora without dimensional labels).

Example (a store's ``table`` has these columns; frustration is not one of the four classes):
    >>> from types import SimpleNamespace
    >>> table = SimpleNamespace(label=np.array(['ang', 'fru', 'neu']), valence=np.array([1.0, 2.0, 3.0]),
    ...                         arousal=np.array([3.0, 2.0, 2.5]), dominance=np.array([4.0, 3.0, 3.0]))
    >>> view = label_view(table, 'iemocap4', 'iemocap')
    >>> view.label_names, view.indices.tolist(), view.targets.tolist(), view.vad.tolist()
    (['neu', 'ang', 'hap', 'sad'], [0, 2], [1, 0], [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhemo.errors import DataError

from .readers import EMODB_EMOTIONS, RAVDESS_EMOTIONS, TESS_LABELS
from .store import SegmentTable

__all__ = ["LabelView", "VIEWS", "NATIVE_CLASSES", "VAD_THRESHOLD", "label_view", "binarise_vad"]

VAD_THRESHOLD = 2.5
IEMOCAP4 = ("neu", "ang", "hap", "sad")
NATIVE_CLASSES: dict[str, tuple[str, ...]] = {
    "iemocap": ("neu", "ang", "hap", "sad", "exc", "fru", "fea", "sur", "dis", "oth"),
    "ravdess": tuple(RAVDESS_EMOTIONS.values()),
    "emodb": tuple(EMODB_EMOTIONS.values()),
    "tess": TESS_LABELS,
}
VIEWS = ("iemocap4", "iemocap4_exc", "complete", "native")


@dataclass
class LabelView:
    """Rows kept and their targets.

    ``indices`` int64 (n,) rows of the segment table / predictors; ``targets`` int64 (n,) class numbers into
    ``label_names``; ``vad`` float32 (n, 3) binarised valence/arousal/dominance (nan where unknown).
    """

    indices: np.ndarray
    targets: np.ndarray
    label_names: list[str]
    vad: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


def binarise_vad(values: np.ndarray) -> np.ndarray:
    """Raw V/A/D values (any shape) → float32 1.0 where > 2.5, 0.0 where <= 2.5, nan where nan."""
    values = np.asarray(values, dtype=np.float64)
    out = (values > VAD_THRESHOLD).astype(np.float32)
    out[np.isnan(values)] = np.nan
    return out


def _class_map(view: str, dataset: str, labels: np.ndarray) -> tuple[list[str], dict[str, int], int | None]:
    """(label_names, label → class, class for any other label or None to drop those rows)."""
    if view in ("iemocap4", "iemocap4_exc", "complete"):
        if dataset != "iemocap":
            raise DataError(f"label view {view!r} needs an IEMOCAP store, but the store's dataset is "
                            f"{dataset!r}; use label_view='native' for this corpus")
        mapping = {name: i for i, name in enumerate(IEMOCAP4)}
        if view == "iemocap4_exc":
            mapping["exc"] = mapping["hap"]
        if view == "complete":
            return [*IEMOCAP4, "other"], mapping, len(IEMOCAP4)
        return list(IEMOCAP4), mapping, None
    if view == "native":
        names = list(NATIVE_CLASSES[dataset]) if dataset in NATIVE_CLASSES else sorted(set(labels.tolist()))
        return names, {name: i for i, name in enumerate(names)}, None
    raise DataError(f"unknown label view {view!r}; expected one of {list(VIEWS)}")


def label_view(table: SegmentTable, view: str, dataset: str) -> LabelView:
    """Select rows and integer targets of ``table`` for ``view`` on a store of corpus ``dataset``.

    Raises DataError (a ValueError) for an unknown view, or an IEMOCAP view on another corpus.
    """
    names, mapping, other = _class_map(view, dataset, table.label)
    lookup = np.array([mapping.get(label, -1 if other is None else other) for label in table.label.tolist()],
                      dtype=np.int64).reshape(-1)
    indices = np.flatnonzero(lookup >= 0).astype(np.int64)
    vad = np.stack([table.valence, table.arousal, table.dominance], axis=1).reshape(-1, 3)[indices]
    return LabelView(indices=indices, targets=lookup[indices], label_names=names, vad=binarise_vad(vad))
