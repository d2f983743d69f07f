"""The seed README's commands, verbatim, on a generated IEMOCAP tree in a copy of the repository.

1. put the corpus path in ``input_iemocap_folder`` of preprocessing_config.ini;
2. ``python3 preprocessing.py`` (no arguments);
3. ``python3 exp_instance.py --ids [1] --last 2 --gpu_id 0`` (RH-emo stages 1 and 2);
4. ``python3 exp_instance.py --ids [2] --last 3 --gpu_id 0`` (quaternion AlexNet, ResNet-50, VGG16).

Only the budgets of the copied experiment files are edited down (1 epoch, tiny heads), and experiment 2 reads the
RH-emo that step 3 trained, since the authors' weights cannot be downloaded here. The copy is a fresh clone
stand-in: the scripts resolve the ini, the experiments and the results against their own folder.
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEEP = ("models", "quaternion_layers", "rhemo", "experiments")


def _copy_repo(target: Path) -> Path:
    target.mkdir()
    for path in REPO.iterdir():
        if path.suffix in (".py", ".ini", ".txt") and path.is_file():
            shutil.copy2(path, target / path.name)
    for name in KEEP:
        shutil.copytree(REPO / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _shrink(path: Path, **overrides) -> None:
    experiment = json.loads(path.read_text())
    experiment["global_parameters"].update(overrides)
    for run in (k for k in experiment if k != "global_parameters"):
        for key in overrides:
            experiment[run].pop(key, None)
    path.write_text(json.dumps(experiment, indent=2))


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_seed_readme_sequence_on_a_generated_iemocap_tree(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    corpus = tmp_path / "IEMOCAP_full_release"
    _run([sys.executable, "-m", "rhemo.data.synthetic", "--layout", "iemocap", "--output", str(corpus),
          "--utterances", "24", "--min-seconds", "1.0", "--max-seconds", "3.0", "--quiet"], repo)

    ini = repo / "preprocessing_config.ini"
    text, edits = re.subn(r"^input_iemocap_folder = .*$", f"input_iemocap_folder = {corpus}",
                          ini.read_text(), flags=re.M)
    assert edits == 1
    ini.write_text(text)
    _run([sys.executable, "preprocessing.py"], repo)
    assert (repo / "data" / "stores" / "iemocap" / "predictors.npy").is_file()

    experiments = repo / "experiments"
    _shrink(next(experiments.glob("1_*.txt")), num_epochs=1, model_hidden_size=8, batch_size=20)
    rhemo = "results/1_RHemo_train_onlyrecon/2/fold0/checkpoint.pt"
    _shrink(next(experiments.glob("2_*.txt")), num_epochs=1, model_hidden_size=16, r2he_model_path=rhemo)

    _run([sys.executable, "exp_instance.py", "--ids", "[1]", "--last", "2", "--gpu_id", "0"], repo)
    second = _run([sys.executable, "exp_instance.py", "--ids", "[2]", "--last", "3", "--gpu_id", "0"], repo)

    for experiment, runs in (("1_RHemo_train_onlyrecon", 2), ("2_SER_quaternion_rhemo", 3)):
        for run in range(1, runs + 1):
            assert (repo / "results" / experiment / str(run) / "fold0" / "metrics.json").is_file()
    ser = json.loads((repo / "results" / "2_SER_quaternion_rhemo" / "1" / "fold0" / "metrics.json").read_text())
    # stage 2 and the SER runs split the same store the same way: no labelled leak; the test batches' mean
    # accuracy is reported beside WA
    assert ser["rhemo_check"]["labelled_overlap"] == 0 and "wa_batchmean" in ser["test"]
    assert "leaks" not in second.stdout
