"""A reduced ``make paper-mini``: the shipped experiment files, unchanged, on tiny generated IEMOCAP and EmoDB
stores through --store_root and one --override (1 epoch, small heads): RH-emo (experiment 1), the IEMOCAP AlexNets
(experiments 2 and 3, run 1) and EmoDB's four AlexNet variants (experiment 6, runs 1-4), then the paper table."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rhemo.experiments import launcher, paper_table
from rhemo.train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
SMALL = {"num_epochs": 1, "model_hidden_size": 16, "batch_size": 10}
RHEMO = {"experiment": 1, "run": 2}


def make_store(tmp: Path, corpus: str, utterances: int) -> None:
    for command in (["-m", "rhemo.data.synthetic", "--layout", corpus, "--output", str(tmp / "corpora" / corpus),
                     "--utterances", str(utterances), "--max-seconds", "3.5", "--seed", "0", "--quiet"],
                    ["preprocessing.py", "--dataset", corpus, "--input", str(tmp / "corpora" / corpus), "--output",
                     str(tmp / "stores")]):
        subprocess.run([sys.executable, *command], cwd=REPO, check=True, capture_output=True)


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> tuple[Path, dict, str]:
    tmp = tmp_path_factory.mktemp("paper_mini")
    make_store(tmp, "iemocap", 20)
    make_store(tmp, "emodb", 12)
    results = tmp / "results"
    console = io.StringIO()

    def run(ids, override=None, **kw) -> int:
        return launcher.launch(launcher.LaunchOptions(ids=ids, output_folder=results, store_root=tmp / "stores",
                                                      override={**SMALL, **(override or {})}, **kw), console)

    refused = run([6], first=2, last=2)  # Base+pre before the IEMOCAP AlexNet exists
    assert run([1], last=1) == 0
    assert run([1], {"load_pretrained": {"experiment": 1, "run": 1}}, first=2) == 0
    assert run([2, 3], {"r2he_model_path": RHEMO}, last=1) == 0, console.getvalue()
    assert run([6], last=4) == 0, console.getvalue()
    assert paper_table.write_all(results, REPO / "experiments", io.StringIO()) == 0
    return results, {"refused": refused}, console.getvalue()


def fold_dir(results: Path, stem: str, run: int) -> Path:
    return results / stem / str(run) / "fold0"


def test_pre_runs_are_refused_until_their_iemocap_run_exists(mini):
    _, codes, out = mini
    assert codes["refused"] == 1
    assert "[refuse] 6_paper_EmoDB run 2 fold 0: not started: load_pretrained needs 3_SER_real_baselines run 1" in out


def test_each_variant_loads_what_its_reference_names(mini):
    results, _, _ = mini
    rhemo = str(fold_dir(results, "1_RHemo_train_onlyrecon", 2) / "checkpoint.pt")
    expected = {1: (None, None), 2: (fold_dir(results, "3_SER_real_baselines", 1), None),
                3: (None, rhemo), 4: (fold_dir(results, "2_SER_quaternion_rhemo", 1), rhemo)}
    for run, (pretrained, r2he) in expected.items():
        cfg = json.loads((fold_dir(results, "6_paper_EmoDB", run) / "config.json").read_text())
        assert cfg["load_pretrained"] == (None if pretrained is None else str(pretrained / "checkpoint.pt"))
        checkpoint = load_checkpoint(fold_dir(results, "6_paper_EmoDB", run) / "checkpoint.pt")
        assert (checkpoint["rhemo"] or {}).get("source") == r2he
        assert len(checkpoint["label_names"]) == 7  # EmoDB's own classes, the IEMOCAP head dropped


def test_the_table_has_the_finished_cells_beside_the_published_ones_and_leaves_the_rest_missing(mini):
    results, _, _ = mini
    with open(results / "paper_table.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["metric"] == "test accuracy" and r["setting"] == "paper"]
    filled = {(r["corpus"], r["network"], r["variant"]): r for r in rows if r["ours_mean"]}
    assert set(filled) == {("EmoDB", "AlexNet", v) for v in paper_table.VARIANTS} | {
        ("IEMOCAP", "AlexNet", "Base"), ("IEMOCAP", "AlexNet", "RH-emo")}
    for (corpus, _, variant), row in filled.items():
        stem, run = {"EmoDB": ("6_paper_EmoDB", 1 + paper_table.VARIANTS.index(variant)),
                     "IEMOCAP": ("3_SER_real_baselines" if variant == "Base" else "2_SER_quaternion_rhemo", 1)}[corpus]
        wa = json.loads((fold_dir(results, stem, run) / "metrics.json").read_text())["test"]["wa"]
        assert float(row["ours_mean"]) == pytest.approx(100 * wa, abs=1e-4) and row["n_runs"] == "1"
        assert float(row["delta"]) == pytest.approx(float(row["ours_mean"]) - float(row["published"]), abs=1e-3)
    assert filled[("EmoDB", "AlexNet", "RH-emo+pre")]["published"] == "71.0000"
    missing = [r for r in rows if not r["ours_mean"]]
    assert len(missing) == len(rows) - 6 and all(r["n_runs"] == "0" and not r["delta"] for r in missing)
    assert (results / "paper_table.png").stat().st_size > 10_000 and (results / "paper_table.xlsx").is_file()
    assert "| EmoDB | ResNet-50 | missing / 48.00 |" in (results / "paper_table.md").read_text()
