"""From selected store rows to DataLoaders: datasets, samplers and the batch order of every run.

The predictors stay on disk: datasets index the store's memory-mapped ``predictors.npy`` (N, 512, 128) one row
at a time, so a run never copies the whole array into RAM, and DataLoader workers share the page cache.
Normalisation (:mod:`rhemo.data.normalisation`) is applied per row.

Batch order and multi-process training. Every run, including a single-process one, draws its training order
from :class:`GlobalBatchSampler`: each epoch one permutation P of the training set (seeded by ``seed + epoch``,
the same on every rank) cut into global batches P[kB:(k+1)B], the last one partial; rank r of W takes the
r-th of W near-equal contiguous parts of each global batch. So a ``torchrun`` run with global batch B sees
exactly the global batches of a single process with batch B, on any training-set size, with no row repeated.
A rank whose part of the last batch is empty steps on one padding row of weight 0 (DDP needs every rank in
each step); :func:`rhemo.train.loop.run_pass` scales each rank's mean loss by its share of the global batch
and counts only real rows in the metrics.

Example:
    >>> import numpy as np
    >>> from rhemo.data.normalisation import compute_normalisation
    >>> arr = np.stack([np.full((3, 2), 4.0), np.full((3, 2), 8.0)]).astype(np.float32)  # 2 rows of 3x2
    >>> item = SegmentDataset(arr, np.array([1]), np.array([3]), normalisation=compute_normalisation(arr, np.array([0]), 'max'))[0]
    >>> tuple(item['x'].shape), float(item['x'].max()), int(item['target'])
    ((1, 3, 2), 2.0, 3)
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from rhemo.data.normalisation import Normalisation
from rhemo.data.selection import SPLITS, Selection
from rhemo.train.runtime import Runtime
from rhemo.errors import DataError

__all__ = ["SegmentDataset", "make_datasets", "ShardSampler", "GlobalBatchSampler", "WeightedRows",
           "make_train_loader", "make_eval_loader", "eval_batch_size", "collate_batch"]


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
        return {k: v[0] for k, v in self.__getitems__([i]).items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A whole batch in one read: ``x`` (n, 1, T, F) or (n, C, H, W) float32, ``target`` (n,), ``vad``
        (n, 3), ``group`` (n,). The DataLoaders call this instead of n ``__getitem__`` calls and a stack
        (:func:`collate_batch`), which saves a copy of every batch and the per-row Python work."""
        picked = np.asarray(indices, dtype=np.int64)
        x = np.asarray(self.array[self.rows[picked]], dtype=np.float32)  # one fancy-indexed read = one copy
        if self.normalisation is not None:
            x = self.normalisation.apply(x).astype(np.float32, copy=False)
        if self.array.ndim == 3:  # (T, F) rows gain their channel axis
            x = x[:, None]
        return {"x": torch.from_numpy(x), "target": torch.from_numpy(self.targets[picked]),
                "vad": torch.from_numpy(self.vad[picked]), "group": torch.from_numpy(self.groups[picked])}

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


class GlobalBatchSampler(Sampler[tuple[int, float]]):
    """This process's part of every global training batch, as (row, weight) items (weight 0: padding).

    Each epoch (:meth:`set_epoch`) draws one permutation P of ``range(n)`` from ``seed + epoch``, identical on
    every rank; global batch k is P[kB:(k+1)B]. Rank r takes the r-th of ``world_size`` contiguous parts of it
    (the first ``len % world_size`` ranks one row more). Every part holds at most B/W rows, so a DataLoader
    reading B/W items at a time yields exactly these parts. A rank whose part of the last, partial, batch is
    empty gets that batch's first row with weight 0: it takes part in the step without adding a sample.

    >>> [list(GlobalBatchSampler(5, 4, rank=r, world_size=2, shuffle=False)) for r in (0, 1)]
    [[(0, 1.0), (1, 1.0), (4, 1.0)], [(2, 1.0), (3, 1.0), (4, 0.0)]]
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True) -> None:
        self.n, self.batch_size, self.rank, self.world_size = int(n), int(batch_size), int(rank), int(world_size)
        self.seed, self.shuffle, self.epoch = int(seed), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=generator).tolist()

    def _parts(self) -> Iterator[list[tuple[int, float]]]:
        order = self._order()
        for start in range(0, self.n, self.batch_size):
            batch = order[start:start + self.batch_size]
            size = len(batch)
            first = self.rank * (size // self.world_size) + min(self.rank, size % self.world_size)
            count = size // self.world_size + (self.rank < size % self.world_size)
            yield [(i, 1.0) for i in batch[first:first + count]] or [(batch[0], 0.0)]

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return (item for part in self._parts() for item in part)

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts())


class WeightedRows(Dataset):
    """``dataset`` read through (row, weight) items: each item is the row's dict plus ``weight`` (0-dim float32;
    0 marks a padding row that must not count)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, float]) -> dict[str, torch.Tensor]:
        row, weight = item
        return {**self.dataset[row], "weight": torch.tensor(weight, dtype=torch.float32)}
def collate_batch(batch: Any) -> dict[str, torch.Tensor]:
    """The DataLoaders' collate function: a batch already assembled by ``SegmentDataset.__getitems__`` is passed
    through; a list of items (a dataset without ``__getitems__``) is stacked as usual."""
    return batch if isinstance(batch, dict) else default_collate(batch)


def _loader_options(runtime: Runtime, num_workers: int) -> dict:
    # pinned host memory only helps (and only works) for copies to a GPU
    return {"num_workers": num_workers, "pin_memory": runtime.device.type == "cuda",
            "persistent_workers": num_workers > 0, "collate_fn": collate_batch}


def make_train_loader(dataset: SegmentDataset, batch_size: int, seed: int, runtime: Runtime,
                      num_workers: int = 0) -> DataLoader:
    """Shuffled training batches of ``batch_size / world_size`` rows per process (see the module docstring);
    each batch dict also holds ``weight`` (B_local,), 0 on a padding row.

    Call ``loader.sampler.set_epoch(epoch)`` before each epoch. Raises DataError when the global batch does
    not split evenly over the processes.
    """
    world = runtime.world_size
    if batch_size % world:
        raise DataError(f"batch_size {batch_size} (the global batch) must be divisible by the number of "
                        f"processes {world}")
    sampler = GlobalBatchSampler(len(dataset), batch_size, runtime.rank, world, seed)
    generator = torch.Generator().manual_seed(seed)  # keeps the loader off the global RNG (worker seeds)
    return DataLoader(WeightedRows(dataset), batch_size=batch_size // world, sampler=sampler, generator=generator,
                      **_loader_options(runtime, num_workers))


def eval_batch_size(cfg: dict) -> int:
    """Rows per evaluation batch: config key eval_batch_size, or twice batch_size when it is null. Evaluation
    keeps no activations for a backward pass, and eval mode has no batch dependence, so any size gives the same
    metrics."""
    return cfg["eval_batch_size"] or 2 * cfg["batch_size"]


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
