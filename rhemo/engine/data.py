"""From a segment store to DataLoaders: label view, split, training-split normalisation, datasets, samplers.

The predictors stay on disk: datasets index the store's memory-mapped ``predictors.npy`` (N, 512, 128) one row
at a time, so a run never copies the whole array into RAM, and DataLoader workers share the page cache.
Normalisation constants come from the **training** rows only (computed chunk by chunk over the memmap) and
are applied to every split, as the authors did; they are saved in the checkpoint so that evaluation and
prediction reuse them.

Batch order and multi-process training. Every run, including a single-process one, draws its training order
from ``DistributedSampler`` with ``num_replicas = world size``: each epoch one permutation P of the training
set (seeded by ``seed + epoch``, the same on every rank), rank r taking P[r::W], in batches of B/W. The k-th
batches of all ranks are then exactly P[kB:(k+1)B], the k-th batch of a single process with batch B, so a
``torchrun`` run with global batch B sees the same global batches as a single process with batch B (exact
when W divides the training-set size; otherwise the sampler repeats a few rows to even the ranks out).

Example:
    >>> import numpy as np
    >>> arr = np.stack([np.full((3, 2), 4.0), np.full((3, 2), 8.0)]).astype(np.float32)  # 2 rows of 3x2
    >>> norm = compute_normalisation(arr, np.array([0]), 'max')  # row 0 is the training split
    >>> norm.max
    4.0
    >>> item = SegmentDataset(arr, np.array([1]), np.array([3]), normalisation=norm)[0]
    >>> tuple(item['x'].shape), float(item['x'].max()), int(item['target'])
    ((1, 3, 2), 2.0, 3)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from rhemo.data.views import label_view
from rhemo.engine import splits as splits_module
from rhemo.engine.device import Runtime

__all__ = ["NORMALISATIONS", "INPUT_TRANSFORMS", "Normalisation", "compute_normalisation", "Selection", "select_rows",
           "SegmentDataset", "make_datasets", "ShardSampler", "make_train_loader", "make_eval_loader",
           "DataError"]

NORMALISATIONS = ("max", "zscore")
#: Input transforms applied before the normalisation (beyond the paper; config key input_transform).
INPUT_TRANSFORMS = ("none", "log1p")
SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """The store, view or split cannot feed a run (empty split, constant training data, bad shapes)."""


@dataclass(frozen=True)
class Normalisation:
    """How raw spectrogram magnitudes become network input.

    ``max``: x / max (the authors' way; the training split then lies in [0, 1]).
    ``zscore``: (x - mean) / std. Both constants are always recorded (the unused ones are for reference).
    ``transform`` (beyond the paper, config key input_transform) is applied first: ``log1p`` maps x to
    log1p(x / transform_scale), transform_scale being the training split's raw mean magnitude; max, mean and
    std are then those of the transformed training data.
    """
    kind: str
    max: float
    mean: float
    std: float
    transform: str = "none"
    transform_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in NORMALISATIONS:
            raise DataError(f"normalisation kind must be one of {NORMALISATIONS}, got {self.kind!r}")
        if self.transform not in INPUT_TRANSFORMS:
            raise DataError(f"input transform must be one of {INPUT_TRANSFORMS}, got {self.transform!r}")

    def apply(self, x: Any) -> Any:
        """Normalise a numpy array or torch tensor of any shape (returns a new array/tensor)."""
        x = _transform(x, self.transform, self.transform_scale)
        if self.kind == "max":
            return x / self.max
        return (x - self.mean) / self.std

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Normalisation":
        """Inverse of :meth:`to_dict`; raises DataError naming the missing key. Records written before input
        transforms existed mean no transform."""
        try:
            return cls(kind=str(data["kind"]), max=float(data["max"]), mean=float(data["mean"]),
                       std=float(data["std"]), transform=str(data.get("transform", "none")),
                       transform_scale=float(data.get("transform_scale", 1.0)))
        except (KeyError, TypeError, AttributeError) as err:
            raise DataError(f"normalisation record {data!r} lacks or mistypes {err}") from None


def _transform(x: Any, transform: str, scale: float) -> Any:
    if transform == "none":
        return x
    return torch.log1p(x / scale) if isinstance(x, torch.Tensor) else np.log1p(x / scale)


def _chunk_statistics(array: np.ndarray, rows: np.ndarray, chunk_rows: int, transform: str, scale: float
                      ) -> tuple[float, float, float]:
    """(max, mean, population std) of transformed ``array[rows]``, merged chunk by chunk (Chan et al.)."""
    peak, count, mean, m2 = -math.inf, 0, 0.0, 0.0
    for start in range(0, rows.size, chunk_rows):
        chunk = np.asarray(array[rows[start:start + chunk_rows]], dtype=np.float64)
        if not np.isfinite(chunk).all():
            raise DataError("the training predictors contain nan or inf values; re-run preprocessing")
        chunk = _transform(chunk, transform, scale)
        n_b = chunk.size
        mean_b = float(chunk.mean())
        m2_b = float(((chunk - mean_b) ** 2).sum())
        delta = mean_b - mean
        total = count + n_b
        mean += delta * n_b / total
        m2 += m2_b + delta * delta * count * n_b / total
        count = total
        peak = max(peak, float(chunk.max()))
    return peak, mean, math.sqrt(m2 / count)


def compute_normalisation(array: np.ndarray, rows: np.ndarray, kind: str, chunk_rows: int = 64,
                          transform: str = "none") -> Normalisation:
    """Max, mean and (population) std of ``array[rows]``, read ``chunk_rows`` rows at a time.

    Args:
        array: (N, ...) float array, typically the store's read-only memmap.
        rows: (n,) int64 row indices of the training segments.
        kind: 'max' or 'zscore' (which constant :meth:`Normalisation.apply` uses).
        transform: 'none' or 'log1p' (see :class:`Normalisation`; log1p costs a second pass).

    Chunk statistics are merged with Chan et al.'s pairwise formula in float64, so the result does not depend
    on the chunk size beyond rounding and never holds more than one chunk in memory.
    """
    if kind not in NORMALISATIONS:
        raise DataError(f"normalisation must be one of {NORMALISATIONS}, got {kind!r}")
    if transform not in INPUT_TRANSFORMS:
        raise DataError(f"input_transform must be one of {INPUT_TRANSFORMS}, got {transform!r}")
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if rows.size == 0:
        raise DataError("cannot compute the normalisation: the training split is empty")
    peak, mean, std = _chunk_statistics(array, rows, chunk_rows, "none", 1.0)
    scale = 1.0
    if transform != "none":
        if mean <= 0:
            raise DataError(f"cannot apply input_transform {transform!r}: the training mean magnitude is {mean}")
        scale = mean
        peak, mean, std = _chunk_statistics(array, rows, chunk_rows, transform, scale)
    if kind == "max" and peak <= 0:
        raise DataError(f"cannot normalise by the training maximum: it is {peak} (all-silent training data?)")
    if kind == "zscore" and std == 0:
        raise DataError("cannot z-score: the training predictors are constant (std 0)")
    return Normalisation(kind=kind, max=peak, mean=mean, std=std, transform=transform, transform_scale=scale)


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
    view = label_view(table, cfg["label_view"], store.info["dataset"])
    kept = np.asarray(view.indices, dtype=np.int64)
    if kept.size == 0:
        raise DataError(f"label view {cfg['label_view']!r} keeps no segment of the store at {store.path}")
    utterances = np.asarray(table.utterance_id)[kept]
    split = splits_module.make_split(
        cfg["protocol"], utterances, np.asarray(table.speaker)[kept], np.asarray(table.session)[kept],
        fractions=cfg["split_fractions"], fold=cfg["fold"], num_folds=cfg["num_folds"], seed=cfg["seed"],
        train_fraction=cfg["train_fraction"])
    _, codes = splits_module.group_codes(utterances)
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


class SegmentDataset(Dataset):
    """Rows of an (N, ...) array (a memmap of spectrograms or of cached embeddings) with their labels.

    Item i → dict with ``x`` float32 tensor of one row ((T, F) rows gain a channel axis → (1, T, F); (C, H, W)
    rows are kept), ``target`` int64, ``vad`` float32 (3,), ``group`` int64 utterance code. Only the indexed row
    is read from disk. ``normalisation`` (optional) is applied per row.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray, targets: np.ndarray, vad: np.ndarray | None = None,
                 groups: np.ndarray | None = None, normalisation: Normalisation | None = None) -> None:
        self.array = array
        self.rows = np.asarray(rows, dtype=np.int64)
        n = self.rows.size
        self.targets = np.asarray(targets, dtype=np.int64)
        self.vad = np.full((n, 3), np.nan, np.float32) if vad is None else np.asarray(vad, np.float32)
        self.groups = np.arange(n, dtype=np.int64) if groups is None else np.asarray(groups, np.int64)
        self.normalisation = normalisation
        if not (self.targets.shape == (n,) and self.vad.shape == (n, 3) and self.groups.shape == (n,)):
            raise DataError(f"SegmentDataset: rows ({n},), targets {self.targets.shape}, vad {self.vad.shape} and "
                            f"groups {self.groups.shape} must describe the same rows")
        if n and (self.rows.min() < 0 or self.rows.max() >= len(array)):
            raise DataError(f"SegmentDataset: row indices must lie in 0..{len(array) - 1}, got "
                            f"[{self.rows.min()}, {self.rows.max()}]")

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = np.array(self.array[self.rows[i]], dtype=np.float32)
        if self.normalisation is not None:
            x = self.normalisation.apply(x).astype(np.float32, copy=False)
        if x.ndim == 2:
            x = x[None]
        return {"x": torch.from_numpy(x), "target": torch.tensor(self.targets[i]),
                "vad": torch.from_numpy(self.vad[i].copy()), "group": torch.tensor(self.groups[i])}

    # A memmap would be pickled as a full in-RAM copy when DataLoader workers are spawned (not forked);
    # ship its file coordinates instead and re-open it in the worker.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if isinstance(self.array, np.memmap) and self.array.filename is not None:
            a = self.array
            state["array"] = ("memmap", a.filename, a.dtype.str, a.shape, a.offset,
                              "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C")
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state.get("array"), tuple) and state["array"][0] == "memmap":
            _, filename, dtype, shape, offset, order = state["array"]
            state["array"] = np.memmap(filename, dtype=np.dtype(dtype), mode="r", shape=shape, offset=offset,
                                       order=order)
        self.__dict__.update(state)


def make_datasets(array: np.ndarray, selection: Selection, normalisation: Normalisation | None
                  ) -> dict[str, SegmentDataset]:
    """Train/val/test datasets over ``array`` (store predictors, or cached embeddings with no normalisation)."""
    return {s: SegmentDataset(array, selection.rows[s], selection.targets[s], selection.vad[s],
                              selection.groups[s], normalisation) for s in SPLITS}


class ShardSampler(Sampler[int]):
    """Contiguous shard ``rank`` of ``range(n)`` split into ``world_size`` near-equal parts (evaluation).

    Concatenating the shards in rank order gives back ``range(n)`` with no repeats.

    >>> [list(ShardSampler(5, r, 2)) for r in range(2)]
    [[0, 1], [2, 3, 4]]
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        self.start = n * rank // world_size
        self.stop = n * (rank + 1) // world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def _loader_options(runtime: Runtime, num_workers: int) -> dict:
    return {"num_workers": num_workers, "pin_memory": runtime.device.type == "cuda",
            "persistent_workers": num_workers > 0}


def make_train_loader(dataset: SegmentDataset, batch_size: int, seed: int, runtime: Runtime,
                      num_workers: int = 0) -> DataLoader:
    """Shuffled training batches of ``batch_size / world_size`` rows per process (see the module docstring).

    Call ``loader.sampler.set_epoch(epoch)`` before each epoch. Raises DataError when the global batch does
    not split evenly over the processes.
    """
    world = runtime.world_size
    if batch_size % world:
        raise DataError(f"batch_size {batch_size} (the global batch) must be divisible by the number of "
                        f"processes {world}")
    sampler = DistributedSampler(dataset, num_replicas=world, rank=runtime.rank, shuffle=True, seed=seed,
                                 drop_last=False)
    generator = torch.Generator().manual_seed(seed)  # keeps the loader off the global RNG (worker seeds)
    return DataLoader(dataset, batch_size=batch_size // world, sampler=sampler, generator=generator,
                      **_loader_options(runtime, num_workers))


def make_eval_loader(dataset: SegmentDataset, batch_size: int, runtime: Runtime, num_workers: int = 0
                     ) -> DataLoader:
    """In-order batches of this process's contiguous shard of ``dataset`` (all of it for a single process).

    Every process must hold at least one row (the ranks gather their outputs), so a non-empty split smaller
    than the number of processes is a DataError.
    """
    if 0 < len(dataset) < runtime.world_size:
        raise DataError(f"an evaluation split has {len(dataset)} segment(s), fewer than the {runtime.world_size} "
                        f"processes; use fewer processes or larger split_fractions")
    sampler = ShardSampler(len(dataset), runtime.rank, runtime.world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      **_loader_options(runtime, num_workers))
