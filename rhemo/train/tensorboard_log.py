"""Optional TensorBoard log of a run (config key ``tensorboard: true``) in ``<output_dir>/tensorboard``.

It holds, per epoch, every numeric column of ``log.csv`` as a scalar (``train/<metric>``, ``val/<metric>``,
``lr``, ``seconds``) and, at the end, the run's figures as images. The package is optional
(``pip install tensorboard``); asking for the log without it is a one-line input error. Open the log with
``tensorboard --logdir results/<experiment>``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from rhemo.train.config import ConfigError
from rhemo.train.runfolder import TENSORBOARD_DIR

__all__ = ["TensorBoardLog", "log_figures"]


class TensorBoardLog:
    """A SummaryWriter on ``<output_dir>/tensorboard`` when ``enabled`` (call on rank 0 only); a no-op otherwise."""

    def __init__(self, output_dir: str | os.PathLike, enabled: bool) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("config key 'tensorboard' is true but the tensorboard package is not installed; "
                              "run `pip install tensorboard` or set tensorboard false") from None
        self.writer = SummaryWriter(log_dir=str(Path(output_dir) / TENSORBOARD_DIR))

    def epoch(self, row: dict) -> None:
        """Log one ``log.csv`` row (flat numbers; ``epoch`` is the step, ``train_x`` becomes ``train/x``)."""
        if self.writer is None:
            return
        step = int(row["epoch"])
        for key, value in row.items():
            if key == "epoch" or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            split, _, metric = key.partition("_")
            tag = f"{split}/{metric}" if split in ("train", "val") and metric else key
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def figures(self, paths: Iterable[Path], step: int) -> None:
        """Add each existing PNG in ``paths`` as an image named after its file."""
        if self.writer is None:
            return
        import matplotlib.image

        for path in paths:
            if Path(path).is_file():
                image = matplotlib.image.imread(str(path))[..., :3]   # (H, W, 3) floats in [0, 1]
                self.writer.add_image(Path(path).stem, image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def log_figures(output_dir: str | os.PathLike, enabled: bool, names: Iterable[str], step: int) -> None:
    """Add the run folder's figures ``names`` to its TensorBoard log (when ``enabled``)."""
    board = TensorBoardLog(output_dir, enabled)
    board.figures([Path(output_dir) / name for name in names], step)
    board.close()
