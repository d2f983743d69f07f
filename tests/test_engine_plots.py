"""Run-folder plots: valid PNG files, and clear errors on empty input."""

import pytest

from rhemo.engine import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_curves_and_confusion_are_written_as_png(tmp_path):
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "train_wa": 0.2 * e, "val_wa": 0.1 * e}
               for e in (1, 2, 3)]
    plots.plot_curves(history, "loss", "wa", tmp_path / "curves.png", best_epoch=3, title="t")
    plots.plot_confusion([[3, 1], [0, 4]], ["neu", "ang"], tmp_path / "confusion.png", title="test")
    for name in ("curves.png", "confusion.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_empty_history_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="empty history"):
        plots.plot_curves([], "loss", "wa", tmp_path / "curves.png")
