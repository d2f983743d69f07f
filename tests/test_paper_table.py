"""The paper table (rhemo.experiments.paper_table) on hand-written run folders: mean ± std over seeds and folds,
missing cells left empty, published values and deltas, the Wilcoxon test against its exact value, and clear
errors for bad data files."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from rhemo.experiments import paper_table

NETWORKS = paper_table.NETWORKS


def write_metrics(folder: Path, wa: float) -> None:
    folder.mkdir(parents=True)
    split = {"wa": wa, "ua": wa / 2, "f1": wa / 4, "loss": 1.0}
    (folder / "metrics.json").write_text(json.dumps({"status": "done", "test": split, "val": split}))


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """Experiment 5: runs 1-12 are Base/RH-emo of RAVDESS and TESS for the three networks, run 13 RAVDESS VGG16
    Base+pre (never run). RH-emo beats Base by 1..6 points, in ours and in the published values (ours + 10);
    Base of RAVDESS AlexNet has 2 seeds x 2 folds (38, 40, 41, 41: mean 40)."""
    experiments, results = tmp_path / "experiments", tmp_path / "results"
    experiments.mkdir()
    (experiments / "5_cells.txt").write_text("{}")
    cells = ["# comment line", "experiment,run,corpus,network,variant,setting"]
    published = ["corpus,network,variant,metric,published,source"]
    run = 1
    for corpus_index, corpus in enumerate(("RAVDESS", "TESS")):
        for net_index, network in enumerate(NETWORKS):
            diff = 1 + corpus_index * 3 + net_index
            for variant, wa in (("Base", 0.40), ("RH-emo", 0.40 + diff / 100)):
                cells.append(f"5,{run},{corpus},{network},{variant},paper")
                published.append(f"{corpus},{network},{variant},test accuracy,{wa * 100 + 10:.0f},dev repo")
                if (corpus, network, variant) == ("RAVDESS", "AlexNet", "Base"):
                    for seed, fold in ((1, 0), (1, 1), (2, 0), (2, 1)):
                        write_metrics(results / "5_cells" / str(run) / f"seed{seed}" / f"fold{fold}",
                                      [0.38, 0.40, 0.41, 0.41][2 * (seed - 1) + fold])
                else:
                    write_metrics(results / "5_cells" / str(run) / "fold0", wa)
                run += 1
    cells.append(f"5,{run},RAVDESS,VGG16,Base+pre,paper")
    (experiments / paper_table.CELLS_FILE).write_text("\n".join(cells) + "\n")
    (experiments / paper_table.PUBLISHED_FILE).write_text("\n".join(published) + "\n")
    return experiments, results


def read_table(results: Path) -> dict:
    with open(results / "paper_table.csv", newline="") as handle:
        return {(r["corpus"], r["network"], r["variant"], r["metric"]): r for r in csv.DictReader(handle)}


def test_cells_are_means_over_seeds_and_folds_beside_published_and_missing_stays_empty(tree):
    experiments, results = tree
    assert paper_table.write_all(results, experiments, io.StringIO()) == 0
    table = read_table(results)
    base = table[("RAVDESS", "AlexNet", "Base", "test accuracy")]
    values = np.array([38.0, 40.0, 41.0, 41.0])
    assert base["n_runs"] == "4" and float(base["ours_mean"]) == pytest.approx(values.mean(), abs=1e-4)
    assert float(base["ours_std"]) == pytest.approx(values.std(), abs=1e-4)
    assert float(base["delta"]) == pytest.approx(values.mean() - 50, abs=1e-3)
    assert table[("TESS", "VGG16", "RH-emo", "test UA")]["ours_mean"] == "23.0000"  # 100 * 0.46 / 2
    assert table[("TESS", "VGG16", "RH-emo", "test UA")]["published"] == ""  # only accuracy is published
    never = table[("RAVDESS", "VGG16", "Base+pre", "test accuracy")]
    assert (never["ours_mean"], never["ours_std"], never["n_runs"], never["published"]) == ("", "", "0", "")
    assert "| RAVDESS | VGG16 | 40.00 ± 0.00 (n=1) / 50.00 | missing | 43.00 ± 0.00 (n=1) / 53.00 | – |" in \
        (results / "paper_table.md").read_text()


def test_wilcoxon_matches_the_exact_signed_rank_distribution(tree):
    """RH-emo − Base over six pairs is 1..6 points, ours and published: all positive, so the signed-rank statistic
    is 0 and the exact two-sided p is 2 / 2**6."""
    experiments, results = tree
    paper_table.write_all(results, experiments, io.StringIO())
    tests = {(t["test"], t["values"]): t for t in json.loads((results / "paper_table_wilcoxon.json").read_text())}
    for source in ("ours", "published"):
        test = tests[("Base vs RH-emo", source)]
        assert test["n_pairs"] == 6 and test["statistic"] == 0.0
        assert test["p_value"] == pytest.approx(2 / 2 ** 6)
        assert test["mean_difference_pp"] == pytest.approx(3.5)


@pytest.mark.parametrize("line, message", [("5,1,IEMOCAP,AlexNet,Base,paper", "listed twice"),
                                           ("5,x,RAVDESS,AlexNet,Base,paper", "must be integers"),
                                           ("5,9,RAVDESS,LeNet,Base,paper", "network 'LeNet'")])
def test_a_bad_cells_file_is_one_line_naming_the_line(tree, capsys, line, message):
    experiments, results = tree
    path = experiments / paper_table.CELLS_FILE
    text = path.read_text()
    path.write_text(text + "5,1,IEMOCAP,AlexNet,Base,paper\n" + line + "\n")
    assert paper_table.write_all(results, experiments, io.StringIO()) == 2
    err = capsys.readouterr().err
    assert f"{path}, line" in err and message in err and len(err.strip().splitlines()) == 1
