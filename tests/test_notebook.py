"""examples/rhemo_embeddings.ipynb runs headless (nbclient) on a tiny store's RH-emo checkpoint and a few
synthetic audio files, and is committed without outputs."""
from __future__ import annotations

import os

import numpy as np
import pytest

from engine_helpers import FOUR, REPO, make_store, rhemo_config, run_script

NOTEBOOK = REPO / "examples" / "rhemo_embeddings.ipynb"


def test_notebook_is_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_notebook_runs_headless(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    import soundfile

    from rhemo.data.features import FeatureSettings, file_to_segments
    from rhemo.data.synthetic import synthesize_utterance

    store = make_store(tmp_path / "store", FOUR * 2)
    assert run_script("training_RHemo.py", rhemo_config(store, tmp_path / "rhemo", num_epochs=1), tmp_path) == 0
    audio = tmp_path / "audio"
    audio.mkdir()
    for k, (style, seconds) in enumerate((("neutral", 4.5), ("angry", 9.0), ("sad", 4.2), ("happy", 5.0))):
        soundfile.write(audio / f"f{k}.wav", synthesize_utterance(style, seconds=seconds, seed=k), 16000)
    monkeypatch.setenv("RHEMO_CHECKPOINT", str(tmp_path / "rhemo" / "checkpoint.pt"))
    monkeypatch.setenv("RHEMO_AUDIO", str(audio))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "examples")}}).execute()
    text = "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.outputs)
    for k in range(3):
        count = len(file_to_segments(audio / f"f{k}.wav", FeatureSettings()))
        assert f"f{k}.wav: {count} segment(s) -> embeddings ({count}, 4, 64, 64)" in text
    assert "f1.wav: 1 segment" not in text and "f3.wav" not in text     # 9 s: several segments; N_FILES = 3
    assert "normalisation: Normalisation(kind='max'" in text
    probabilities = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("f2.wav [")]
    assert probabilities and np.isclose(sum(eval_list(probabilities[0])), 1.0, atol=2e-3)
    assert any("image/png" in output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs)


def eval_list(text: str) -> list[float]:
    return [float(v) for v in text.strip("[] ").split(",")]
