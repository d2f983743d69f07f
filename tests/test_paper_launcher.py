"""Launcher features of the paper evaluation with fake training scripts: references between runs, the refusal
while a referenced run is unfinished, seeds (folders, resume, summary over seeds and folds), --override and
--store_root, and the consistency of the shipped experiment files with experiments/paper_cells.csv."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from rhemo.experiments import launcher, paper_table
from rhemo.train.config import ConfigError
from rhemo.experiments.launcher import LaunchOptions

REPO = Path(__file__).resolve().parents[1]

# writes a metrics.json whose test WA encodes the seed and the fold: 0.1 * seed + 0.01 * fold
FAKE = r'''
import json, os, sys
cfg = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
with open(os.path.join(os.getcwd(), "calls.txt"), "a") as log:
    log.write(json.dumps({k: cfg.get(k) for k in ("output_dir", "seed", "fold", "load_pretrained",
                                                  "r2he_model_path", "store_path", "num_epochs")}) + "\n")
wa = 0.1 * cfg["seed"] + 0.01 * cfg["fold"]
split = {"loss": 1.0, "wa": wa, "ua": wa, "f1": wa}
metrics = {"status": "done", "script": "ser", "model_name": cfg["model_name"], "quat": cfg["model_quat"],
           "train": split, "val": split, "test": split, "epochs": 1}
json.dump(metrics, open(os.path.join(cfg["output_dir"], "metrics.json"), "w"))
'''
SER = {"script": "training_SER.py", "use_r2he": False, "model_quat": False, "model_name": "AlexNet"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("training_SER.py", "training_RHemo.py"):
        (tmp_path / name).write_text(FAKE)
    (tmp_path / "experiments").mkdir()
    return tmp_path


def write_exp(root: Path, name: str, data: dict) -> None:
    (root / "experiments" / name).write_text(json.dumps(data))


def opts(root: Path, ids, **kw) -> LaunchOptions:
    return LaunchOptions(ids=list(ids), experiments_folder=root / "experiments", output_folder=root / "results",
                         scripts_dir=root, **kw)


def calls(root: Path) -> list[dict]:
    path = root / "calls.txt"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def launch(options: LaunchOptions) -> tuple[int, str]:
    console = io.StringIO()
    return launcher.launch(options, console), console.getvalue()


# ------------------------------------------------------------------------------------------- references
def test_a_reference_becomes_the_checkpoint_of_the_named_run_and_same_fold_follows_the_fold(root):
    write_exp(root, "3_base.txt", {"global_parameters": {**SER, "num_folds": 2}, "1": {}})
    write_exp(root, "5_pre.txt", {"global_parameters": {**SER, "num_folds": 2},
                                  "1": {"load_pretrained": {"experiment": 3, "run": 1, "fold": "same"}},
                                  "2": {"load_pretrained": {"experiment": 3, "run": 1}}})
    assert launch(opts(root, [3, 5]))[0] == 0
    base = root / "results" / "3_base" / "1"
    loaded = {(Path(c["output_dir"]).parent.name, c["fold"]): c["load_pretrained"] for c in calls(root)}
    assert loaded[("1", 0)] == str(base / "fold0" / "checkpoint.pt")
    assert loaded[("1", 1)] == str(base / "fold1" / "checkpoint.pt")
    assert loaded[("2", 1)] == str(base / "fold0" / "checkpoint.pt")  # fold 0 by default, for every fold


def test_a_run_whose_reference_is_unfinished_is_refused_with_the_missing_file_named(root):
    write_exp(root, "3_base.txt", {"global_parameters": SER, "1": {}})
    write_exp(root, "5_pre.txt", {"global_parameters": SER, "1": {"load_pretrained": {"experiment": 3, "run": 1}}})
    code, out = launch(opts(root, [5]))
    missing = root / "results" / "3_base" / "1" / "fold0" / "metrics.json"
    assert code == 1 and calls(root) == []
    assert "[refuse] 5_pre run 1 fold 0" in out and f"{missing} is missing" in out
    dry = launch(opts(root, [5], dry_run=True))[1]  # the dry run shows the resolved path and its state
    assert f"load_pretrained = 3_base run 1 fold 0 [not finished yet] {missing.parent / 'checkpoint.pt'}" in dry
    assert launch(opts(root, [3]))[0] == 0 and launch(opts(root, [5]))[0] == 0
    assert len(calls(root)) == 2


@pytest.mark.parametrize("reference, message", [
    ({"experiment": 3}, "needs a 'run'"),
    ({"experiment": 3, "run": 9}, "run 9, which does not exist"),
    ({"experiment": 8, "run": 1}, "names experiment 8"),
    ({"experiment": 3, "run": 1, "path": "x"}, "unknown field(s) path"),
    ({"experiment": 3, "run": 1, "fold": "same"}, "that run has 1 fold(s) and this one 2"),
    ({"experiment": 3, "run": 1, "fold": 1}, "fold 1, but that run has 1 fold(s)"),
    ({"experiment": 3, "run": "1"}, "field 'run' expects an integer"),
    ({"experiment": 3, "run": 1, "seed": 4}, "with seed 4, but that run has no seeds"),
])
def test_bad_references_name_the_file_the_key_and_the_problem(root, reference, message):
    write_exp(root, "3_base.txt", {"global_parameters": SER, "1": {}})
    write_exp(root, "5_pre.txt", {"global_parameters": {**SER, "num_folds": 2}, "1": {"load_pretrained": reference}})
    with pytest.raises(ConfigError, match="5_pre.txt, run 1") as exc:
        launcher.build_plans(opts(root, [5]))
    assert message in str(exc.value)


# ------------------------------------------------------------------------------------------------- seeds
def test_seeds_train_in_their_own_folders_resume_per_seed_and_summary_covers_seeds_and_folds(root):
    write_exp(root, "3_base.txt", {"global_parameters": {**SER, "num_folds": 2, "seeds": [1, 2]}, "1": {}})
    assert launch(opts(root, [3]))[0] == 0
    run_dir = root / "results" / "3_base" / "1"
    assert sorted((c["seed"], c["fold"]) for c in calls(root)) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert (run_dir / "seed2" / "fold1" / "metrics.json").is_file()
    assert launch(opts(root, [3], seeds=[1, 2, 3]))[0] == 0  # --seeds wins; seeds 1 and 2 are finished
    assert sorted((c["seed"], c["fold"]) for c in calls(root)[4:]) == [(3, 0), (3, 1)]
    summary = json.loads((run_dir / "summary.json").read_text())
    expected = [0.1 * s + 0.01 * f for s in (1, 2, 3) for f in (0, 1)]
    assert summary["trainings_done"] == 6 and summary["seeds_done"] == [1, 2, 3]
    assert summary["mean_std"]["test.wa"]["mean"] == pytest.approx(np.mean(expected))
    assert summary["mean_std"]["test.wa"]["std"] == pytest.approx(np.std(expected))


def test_a_reference_follows_the_seed_being_trained_unless_it_pins_one(root):
    write_exp(root, "3_base.txt", {"global_parameters": SER, "1": {}})
    write_exp(root, "5_pre.txt", {"global_parameters": SER, "1": {"load_pretrained": {"experiment": 3, "run": 1}},
                                  "2": {"load_pretrained": {"experiment": 3, "run": 1, "seed": 1}}})
    assert launch(opts(root, [3, 5], seeds=[1, 2]))[0] == 0
    base = root / "results" / "3_base" / "1"
    loaded = {(Path(c["output_dir"]).parts[-3], c["seed"]): c["load_pretrained"] for c in calls(root)}
    assert loaded[("1", 2)] == str(base / "seed2" / "fold0" / "checkpoint.pt")
    assert loaded[("2", 2)] == str(base / "seed1" / "fold0" / "checkpoint.pt")


def test_override_is_merged_over_every_run_and_store_root_redirects_the_store(root):
    write_exp(root, "3_base.txt", {"global_parameters": {**SER, "num_epochs": 50, "store_path": "data/stores/tess"},
                                   "1": {"num_epochs": 70}})
    assert launch(opts(root, [3], override={"num_epochs": 1}, store_root=root / "mini"))[0] == 0
    (call,) = calls(root)
    assert call["num_epochs"] == 1 and call["store_path"] == str(root / "mini" / "tess")


@pytest.mark.parametrize("flag, value, message", [("--seeds", "1,x", "--seeds"), ("--seeds", "1,1", "--seeds"),
                                                  ("--override", "[1]", "JSON object"),
                                                  ("--override", "{'a': 1}", "invalid JSON"),
                                                  ("--override", '{"seeds": [1]}', "--seeds")])
def test_bad_seeds_and_overrides_exit_with_one_line(capsys, flag, value, message):
    with pytest.raises(SystemExit) as exc:
        launcher.options_from_args(["--ids", "[1]", flag, value])
    assert exc.value.code == 2 and message in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ shipped files
def test_every_shipped_experiment_file_validates_in_a_dry_run(tmp_path):
    ids = sorted(int(p.name.split("_")[0]) for p in (REPO / "experiments").glob("[0-9]*_*.txt"))
    options = LaunchOptions(ids=ids, output_folder=tmp_path, dry_run=True)
    code, out = launch(options)
    assert code == 0 and "dry run: every run is valid" in out


NETWORK_OF = {"AlexNet": "AlexNet", "resnet50": "ResNet-50", "VGGNet": "VGG16"}


def test_paper_cells_name_runs_that_train_exactly_that_cell(tmp_path):
    """Each cell's run trains the named network, on the named corpus's store, real/quaternion and with or
    without a pretrained network as its variant says."""
    plans = {(int(p.experiment.stem.split("_")[0]), p.run): p
             for _, runs in launcher.build_plans(LaunchOptions(ids=[2, 3, 4, 5, 6, 7, 10], output_folder=tmp_path))
             for p in runs}
    cells = paper_table.read_cells(REPO / "experiments" / paper_table.CELLS_FILE)
    assert len(cells) == 3 * 2 + 3 * 3 * 4 + 9
    for cell in cells:
        cfg = plans[(cell.experiment, cell.run)].config
        assert NETWORK_OF[cfg["model_name"]] == cell.network
        assert Path(cfg["store_path"]).name == cell.corpus.lower()
        assert cfg["model_quat"] == cell.variant.startswith("RH-emo")
        assert (cfg["load_pretrained"] is not None) == cell.variant.endswith("+pre")
        assert (cfg["protocol"] == "speaker") == (cell.setting != "paper")
    published = paper_table.read_published(REPO / "experiments" / paper_table.PUBLISHED_FILE)
    assert len(published) == 6 + 36 and published[("TESS", "ResNet-50", "RH-emo", "test accuracy")] == 99.76
    with open(REPO / "experiments" / paper_table.PUBLISHED_FILE) as handle:
        header = [line for line in handle if not line.startswith("#")][0]
    assert next(csv.reader([header])) == ["corpus", "network", "variant", "metric", "published", "source"]
