"""Builders shared by the engine tests: tiny hand-written segment stores, RH-emo weights, run configs.

The stores follow the store contract (predictors.npy, segments.csv, info.json). Each class puts its energy in its
own frequency band, so a network can learn (or memorise) the labels quickly. Scripts run in-process through
``main(argv)``.
"""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from rhemo.data.features import FeatureSettings
from rhemo.data.store import SEGMENT_COLUMNS, SegmentStore

REPO = Path(__file__).resolve().parents[1]
T, F = 512, 128


# ----------------------------------------------------------------------------------------------- helpers
def make_store(root: Path, labels: list[str], segments_per_utterance: int = 1, seed: int = 0,
               dataset: str = "iemocap") -> Path:
    """A store with one utterance per entry of ``labels``; class-specific frequency bands plus noise.

    Speakers alternate between two per session and sessions cycle 1..2, V/A/D are 1..5 ratings.
    """
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    rows, arrays = [], []
    for u, label in enumerate(labels):
        band = classes.index(label)
        for k in range(segments_per_utterance):
            x = rng.random((T, F), dtype=np.float32) * 0.2
            x[:, 32 * (band % 4):32 * (band % 4) + 32] += 1.0 + rng.random()
            arrays.append(x)
            session = u % 2 + 1
            rows.append([f"utt{u:03d}", f"/corpus/utt{u:03d}.wav", f"spk{session}{u % 4 // 2}", session, k, label,
                         1 + (u % 5), 1 + ((u + 2) % 5), 1 + ((u + 4) % 5)])
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "predictors.npy", np.stack(arrays).astype(np.float32))
    with open(root / "segments.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SEGMENT_COLUMNS)
        writer.writerows(rows)
    info = {"format": "rhemo-store/1", "dataset": dataset, "feature_settings": FeatureSettings().to_dict()}
    (root / "info.json").write_text(json.dumps(info))
    return root


def make_rhemo_weights(path: Path, store: Path, hidden_size: int = 8, seed: int = 0) -> Path:
    """An RH-emo state_dict file in the authors' bare format: random weights whose encoder BatchNorm statistics
    are calibrated on the store (a randomly initialised encoder's raw statistics give near-zero embeddings)."""
    from models import simple_autoencoder_2_vad

    torch.manual_seed(seed)
    model = simple_autoencoder_2_vad(hidden_size=hidden_size)
    predictors = torch.from_numpy(np.array(SegmentStore(store).predictors)).unsqueeze(1)
    for bn in (model.conv1_bn, model.conv2_bn):
        bn.momentum = None  # cumulative average over the calibration pass
        bn.reset_running_stats()
    model.train()
    with torch.no_grad():
        model.encode(predictors / predictors.max())
    torch.save(model.state_dict(), path)
    return path


def load_script(name: str):
    """Import training_RHemo.py / training_SER.py from the repository root as a module."""
    spec = importlib.util.spec_from_file_location(name.replace(".py", ""), REPO / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, cfg: dict, tmp: Path) -> int:
    """Write ``cfg`` to a JSON file and run the script's ``main(['--config', file])`` in this process."""
    path = tmp / f"cfg_{abs(hash(json.dumps(cfg, sort_keys=True)))}.json"
    path.write_text(json.dumps(cfg))
    return load_script(name).main(["--config", str(path)])


def read_metrics(folder: Path) -> dict:
    return json.loads((Path(folder) / "metrics.json").read_text())


def ser_config(store: Path, out: Path, **overrides) -> dict:
    cfg = {"store_path": str(store), "output_dir": str(out), "use_cuda": False, "label_view": "iemocap4",
           "model_name": "AlexNet", "model_quat": False, "use_r2he": False, "model_hidden_size": 16,
           "model_classifier_dropout": 0.0, "batch_size": 4, "learning_rate": 1e-4, "num_epochs": 3,
           "split_fractions": [0.5, 0.25, 0.25], "seed": 3, "early_stopping": False, "r2he_model_path": None}
    cfg.update(overrides)
    return cfg


FOUR = ["neu", "ang", "hap", "sad"]


# ----------------------------------------------------------------------------------------------- data


def rhemo_config(store: Path, out: Path, **overrides) -> dict:
    cfg = {"store_path": str(store), "output_dir": str(out), "use_cuda": False, "model_hidden_size": 8,
           "batch_size": 4, "learning_rate": 1e-3, "num_epochs": 2, "split_fractions": [0.5, 0.25, 0.25],
           "seed": 1, "early_stopping": False}
    cfg.update(overrides)
    return cfg
