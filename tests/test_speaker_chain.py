"""The strictly speaker-independent chain (experiments/10_speaker_independent_chain.txt), run for real by the
launcher on a tiny generated 2-session IEMOCAP corpus with 2 folds: each fold's SER network must read the RH-emo
trained for that fold, and that RH-emo must never have trained on a speaker of the fold's test session."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rhemo.data.store import SegmentStore
from rhemo.experiments import launcher
from rhemo.train.checkpoint import file_sha256, load_checkpoint
from rhemo.train.config import validate
from rhemo.data.selection import select_rows

REPO = Path(__file__).resolve().parents[1]
CHAIN = "10_speaker_independent_chain"


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("chain")
    corpus, stores = tmp / "corpus", tmp / "stores"
    for command in (["-m", "rhemo.data.synthetic", "--layout", "iemocap", "--output", str(corpus), "--utterances",
                     "24", "--sessions", "2", "--max-seconds", "3.5", "--seed", "1", "--quiet"],
                    ["preprocessing.py", "--dataset", "iemocap", "--input", str(corpus), "--output", str(stores)]):
        subprocess.run([sys.executable, *command], cwd=REPO, check=True, capture_output=True)
    options = launcher.LaunchOptions(ids=[10], last=3, output_folder=tmp / "results", store_root=stores,
                                     override={"num_epochs": 1, "model_hidden_size": 16, "num_folds": 2,
                                               "batch_size": 10})
    console = io.StringIO()
    assert launcher.launch(options, console) == 0, console.getvalue()
    return tmp / "results" / CHAIN, stores / "iemocap"


def fold_config(results: Path, run: int, fold: int) -> dict:
    return json.loads((results / str(run) / f"fold{fold}" / "config.json").read_text())


def speakers(store: SegmentStore, cfg: dict, split: str) -> set[str]:
    script = "rhemo" if cfg["script"] == "training_RHemo.py" else "ser"
    keys = {k: v for k, v in cfg.items() if k not in ("script", "nproc")}
    selection = select_rows(store, validate(keys, script=script, source="test"))
    return set(np.asarray(store.table.speaker)[selection.rows[split]])


def test_each_fold_loads_its_own_folds_rhemo(chain):
    results, _ = chain
    digests = []
    for fold in (0, 1):
        stage1 = results / "1" / f"fold{fold}" / "checkpoint.pt"
        stage2 = results / "2" / f"fold{fold}" / "checkpoint.pt"
        assert fold_config(results, 2, fold)["load_pretrained"] == str(stage1)
        assert fold_config(results, 3, fold)["r2he_model_path"] == str(stage2)
        record = load_checkpoint(results / "3" / f"fold{fold}" / "checkpoint.pt", map_location="cpu")["rhemo"]
        assert record["source"] == str(stage2) and record["sha256"] == file_sha256(stage2)
        digests.append(record["sha256"])
    assert digests[0] != digests[1]  # two RH-emos, one per fold


def test_each_folds_rhemo_never_trained_on_a_test_speaker(chain):
    results, store_path = chain
    store = SegmentStore(store_path)
    table_sessions = dict(zip(np.asarray(store.table.speaker), np.asarray(store.table.session)))
    for fold in (0, 1):
        test = speakers(store, fold_config(results, 3, fold), "test")
        # leave-one-session-out: the test speakers are exactly the speakers of session fold + 1
        assert test == {s for s, session in table_sessions.items() if int(session) == fold + 1} and test
        for run in (1, 2):  # RH-emo stage 1 (all labels) and stage 2 (4 classes)
            trained_on = speakers(store, fold_config(results, run, fold), "train")
            assert trained_on and not trained_on & test
