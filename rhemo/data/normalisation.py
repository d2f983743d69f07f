"""Normalisation of spectrogram magnitudes, with constants computed on the training rows only.

The constants come from the **training** rows (computed chunk by chunk over the store's memmap) and are applied
to every split, as the authors did; they are saved in the checkpoint so that evaluation and prediction reuse them.

Example:
    >>> import numpy as np
    >>> arr = np.stack([np.full((3, 2), 4.0), np.full((3, 2), 8.0)]).astype(np.float32)  # 2 rows of 3x2
    >>> norm = compute_normalisation(arr, np.array([0]), 'max')  # row 0 is the training split
    >>> norm.max, float(norm.apply(arr[1]).max())
    (4.0, 2.0)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from rhemo.errors import DataError

__all__ = ["NORMALISATIONS", "INPUT_TRANSFORMS", "Normalisation", "compute_normalisation", "pad_start"]

NORMALISATIONS = ("max", "zscore")
#: Input transforms applied before the normalisation (beyond the paper; config key input_transform).
INPUT_TRANSFORMS = ("none", "log1p")


@dataclass(frozen=True)
class Normalisation:
    """How raw spectrogram magnitudes become network input.

    ``max``: x / max (the authors' way; the training split then lies in [0, 1]).
    ``zscore``: (x - mean) / std. Both constants are always recorded (the unused ones are for reference).
    ``frames``: rows of a segment that hold STFT frames (501 of 512 by default); the rows after them pad the
    segment and stay 0 after normalisation, as in the authors' code, which normalised before padding. None:
    no pad rows.
    ``transform`` (beyond the paper, config key input_transform) is applied first: ``log1p`` maps x to
    log1p(x / transform_scale), transform_scale being the training split's raw mean magnitude; max, mean and
    std are then those of the transformed training data.
    """
    kind: str
    max: float
    mean: float
    std: float
    frames: int | None = None
    transform: str = "none"
    transform_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in NORMALISATIONS:
            raise DataError(f"normalisation kind must be one of {NORMALISATIONS}, got {self.kind!r}")
        if self.transform not in INPUT_TRANSFORMS:
            raise DataError(f"input transform must be one of {INPUT_TRANSFORMS}, got {self.transform!r}")

    def apply(self, x: Any) -> Any:
        """Normalise a numpy array or torch tensor of shape (..., T, F) (returns a new array/tensor)."""
        x = _transform(x, self.transform, self.transform_scale)
        if self.kind == "max":
            return x / self.max
        out = (x - self.mean) / self.std
        if self.frames is not None:
            out[..., self.frames:, :] = 0
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Normalisation":
        """Inverse of :meth:`to_dict`; raises DataError naming the missing key. Records written before pad rows
        or input transforms were recorded mean no pad rows and no transform."""
        try:
            frames = data.get("frames")
            return cls(kind=str(data["kind"]), max=float(data["max"]), mean=float(data["mean"]),
                       std=float(data["std"]), frames=None if frames is None else int(frames),
                       transform=str(data.get("transform", "none")),
                       transform_scale=float(data.get("transform_scale", 1.0)))
        except (KeyError, TypeError, AttributeError) as err:
            raise DataError(f"normalisation record {data!r} lacks or mistypes {err}") from None


def _transform(x: Any, transform: str, scale: float) -> Any:
    if transform == "none":
        return x
    return torch.log1p(x / scale) if isinstance(x, torch.Tensor) else np.log1p(x / scale)


def pad_start(settings: Any) -> int | None:
    """First pad row of a stored segment (its STFT frame count), or None when the segments have no pad rows.

    ``settings``: the store's ``FeatureSettings``. The authors' statistics also covered the Nyquist bin, which
    the store does not keep; ours are over the 128 stored bins.
    """
    frames = int(settings.frames_per_segment)
    return frames if frames < int(settings.time_frames) else None


def _chunk_statistics(array: np.ndarray, rows: np.ndarray, chunk_rows: int, frames: int | None, transform: str,
                      scale: float) -> tuple[float, float, float]:
    """(max, mean, population std) of transformed ``array[rows, :frames]``, merged chunk by chunk (Chan et al.)."""
    peak, count, mean, m2 = -math.inf, 0, 0.0, 0.0
    for start in range(0, rows.size, chunk_rows):
        chunk = np.asarray(array[rows[start:start + chunk_rows], :frames], dtype=np.float64)
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
                          frames: int | None = None, transform: str = "none") -> Normalisation:
    """Max, mean and (population) std of ``array[rows, :frames]``, read ``chunk_rows`` rows at a time.

    Args:
        array: (N, T, F) float array, typically the store's read-only memmap.
        rows: (n,) int64 row indices of the training segments.
        kind: 'max' or 'zscore' (which constant :meth:`Normalisation.apply` uses).
        frames: the statistics cover the first ``frames`` rows of each segment, the real STFT frames
            (:func:`pad_start`); the pad rows after them are left out and stay 0 after z-scoring. None: all.
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
    peak, mean, std = _chunk_statistics(array, rows, chunk_rows, frames, "none", 1.0)
    scale = 1.0
    if transform != "none":
        if mean <= 0:
            raise DataError(f"cannot apply input_transform {transform!r}: the training mean magnitude is {mean}")
        scale = mean
        peak, mean, std = _chunk_statistics(array, rows, chunk_rows, frames, transform, scale)
    if kind == "max" and peak <= 0:
        raise DataError(f"cannot normalise by the training maximum: it is {peak} (all-silent training data?)")
    if kind == "zscore" and std == 0:
        raise DataError("cannot z-score: the training predictors are constant (std 0)")
    return Normalisation(kind=kind, max=peak, mean=mean, std=std, frames=frames, transform=transform,
                         transform_scale=scale)
