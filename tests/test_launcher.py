"""Tests of the experiment launcher (rhemo.experiments.launcher / exp_instance.py) with tiny fake training scripts.

The fake scripts stand in for training_SER.py / training_RHemo.py: they read ``--config``, log the fold they
were asked to run, and write a ``metrics.json`` per the run-folder contract. ``comment_1`` (a real schema key)
selects a misbehaviour: "crash" exits with code 3 after printing, "hang" sleeps (ignoring SIGTERM).
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rhemo.experiments import launcher
from rhemo.train.config import ConfigError
from rhemo.experiments.launcher import LaunchOptions, LauncherError

FAKE_SCRIPT = r'''
import json, os, signal, sys, time
cfg = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
out = cfg["output_dir"]
with open(os.path.join(os.getcwd(), "calls.txt"), "a") as log:
    log.write(f"{os.path.relpath(out, os.path.join(os.getcwd(), 'results'))}\n")
print(f"fake {KIND} training fold {cfg['fold']} gpu {cfg['gpu_id']}", flush=True)
mode = cfg.get("comment_1", "")
if mode == "crash":
    for i in range(60):
        print(f"noise line {i}")
    print("boom: the fake training crashed", flush=True)
    sys.exit(3)
if mode == "hang":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("hanging", flush=True)
    time.sleep(120)
if mode == "nometrics":
    sys.exit(0)
fold = cfg["fold"]
if KIND == "ser":
    split = {"loss": 1.0 - 0.1 * fold, "wa": 0.5 + 0.1 * fold, "ua": 0.4 + 0.1 * fold, "f1": 0.3 + 0.1 * fold,
             "confusion": [[1, 0], [0, 1]], "utt_wa": 0.6, "utt_ua": 0.55, "utt_f1": 0.5,
             "utt_confusion": [[1, 0], [0, 1]]}
else:
    split = {"total": 2.0 + fold, "recon": 0.5 + 0.1 * fold, "emo": 1.5, "cls": 1.0, "vad": 0.5, "valence": 0.1,
             "arousal": 0.2, "dominance": 0.2, "acc": 0.25 + 0.25 * fold, "acc_valence": 0.5,
             "acc_arousal": 0.6, "acc_dominance": 0.7}
metrics = {"status": "done", "script": KIND, "model_name": cfg["model_name"], "quat": cfg["model_quat"],
           "params": 1000 + fold, "epochs": 3 + fold, "best_epoch": 2, "seconds": 1.5,
           "label_names": ["neu", "ang"], "train": split, "val": split, "test": split}
tmp = os.path.join(out, "metrics.json.tmp")
with open(tmp, "w") as f:
    json.dump(metrics, f)
os.replace(tmp, os.path.join(out, "metrics.json"))
'''


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fake repository root: the two fake training scripts and an empty experiments folder."""
    for name, kind in (("training_SER.py", "ser"), ("training_RHemo.py", "rhemo")):
        (tmp_path / name).write_text(f"KIND = {kind!r}\n" + FAKE_SCRIPT)
    (tmp_path / "experiments").mkdir()
    return tmp_path


def write_exp(root: Path, name: str, data) -> Path:
    path = root / "experiments" / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def opts(root: Path, ids, **kw) -> LaunchOptions:
    return LaunchOptions(ids=list(ids), experiments_folder=root / "experiments", output_folder=root / "results",
                         scripts_dir=root, **kw)


def calls(root: Path) -> list[str]:
    path = root / "calls.txt"
    return path.read_text().split() if path.exists() else []


SER = {"script": "training_SER.py", "use_r2he": False, "model_quat": False, "num_epochs": 2}


# ---------------------------------------------------------------------------------------------- ids, files
@pytest.mark.parametrize("text, expected", [("[1]", [1]), ("[1,2]", [1, 2]), ("1", [1]), ("[3, 1]", [3, 1]),
                                            ("4,5", [4, 5])])
def test_parse_ids_accepts_json_ints(text, expected):
    assert launcher.parse_ids(text) == expected


@pytest.mark.parametrize("text", ["abc", "[1.5]", "[]", "true", "[1,1]", "__import__('os')", "[-1]", '"1"'])
def test_parse_ids_rejects_anything_else(text):
    with pytest.raises(LauncherError, match="--ids"):
        launcher.parse_ids(text)


def test_bad_ids_on_the_command_line_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        launcher.options_from_args(["--ids", "[1,x]"])
    assert exc.value.code == 2
    assert "--ids" in capsys.readouterr().err


def test_files_without_int_prefix_are_ignored(root):
    for name in ("README.md", ".DS_Store", "notes.txt", "x_1.txt", "7_old.txt.bak"):
        (root / "experiments" / name).write_text("not json")
    path = write_exp(root, "7_good.txt", {"1": SER})
    assert launcher.find_experiment_files(root / "experiments", [7]) == [path]


def test_duplicate_ids_name_both_files(root):
    write_exp(root, "2_a.txt", {"1": SER})
    write_exp(root, "2_b.txt", {"1": SER})
    with pytest.raises(LauncherError) as exc:
        launcher.find_experiment_files(root / "experiments", [2])
    assert "2_a.txt" in str(exc.value) and "2_b.txt" in str(exc.value)


def test_id_without_file_is_an_error_listing_present_ids(root):
    write_exp(root, "2_a.txt", {"1": SER})
    with pytest.raises(LauncherError, match=r"id 5.*ids present: 2"):
        launcher.find_experiment_files(root / "experiments", [5])


def test_missing_experiments_folder(tmp_path):
    with pytest.raises(LauncherError, match="does not exist"):
        launcher.find_experiment_files(tmp_path / "nope", [1])


@pytest.mark.parametrize("text, pattern", [
    ('{"1": {', r"1_x.txt: invalid JSON at line 1"),
    ('{"1": {"seed": 1, "seed": 2}}', r"1_x.txt: key 'seed' appears twice"),
    ('{"global_parameters": {}, "first": {}}', r"top-level key 'first'"),
    ('{"global_parameters": {}}', r"no numbered runs"),
    ('[1, 2]', r"expected a JSON object"),
    ('{"1": [1]}', r"run 1 must be a JSON object"),
])
def test_malformed_files(root, text, pattern):
    path = write_exp(root, "1_x.txt", text)
    with pytest.raises(LauncherError, match=pattern):
        launcher.load_experiment(path)


# ---------------------------------------------------------------------------------------------- validation
def test_unknown_key_names_file_run_and_key(root):
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {}, "2": {"learning_rat": 0.1}})
    with pytest.raises(ConfigError) as exc:
        launcher.build_plans(opts(root, [1]))
    message = str(exc.value)
    assert "1_x.txt" in message and "run 2" in message and "learning_rat" in message


def test_wrong_type_names_key_and_expected_type(root):
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {"batch_size": "20"}})
    with pytest.raises(ConfigError, match=r"1_x.txt, run 1: key 'batch_size' expects an integer, got '20'"):
        launcher.build_plans(opts(root, [1]))


def test_boolean_as_string_is_rejected(root):
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {"early_stopping": "True"}})
    with pytest.raises(ConfigError, match=r"run 1: key 'early_stopping' expects a boolean"):
        launcher.build_plans(opts(root, [1]))


def test_missing_script_is_an_error(root):
    write_exp(root, "1_x.txt", {"1": {"seed": 1}})
    with pytest.raises(ConfigError, match=r"1_x.txt, run 1: key 'script' is missing"):
        launcher.build_plans(opts(root, [1]))


def test_unknown_script_is_an_error(root):
    write_exp(root, "1_x.txt", {"1": {"script": "train.py"}})
    with pytest.raises(ConfigError, match=r"key 'script' expects a string among training_RHemo.py"):
        launcher.build_plans(opts(root, [1]))


@pytest.mark.parametrize("key, value", [("fold", 0), ("output_dir", "x"), ("gpu_id", 1)])
def test_launcher_set_keys_are_refused(root, key, value):
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {key: value}})
    with pytest.raises(ConfigError, match=rf"run 1: key\(s\) {key} are set by the launcher"):
        launcher.build_plans(opts(root, [1]))


def test_missing_training_script_is_reported_before_running(root):
    (root / "training_RHemo.py").unlink()
    write_exp(root, "1_x.txt", {"1": {"script": "training_RHemo.py"}})
    with pytest.raises(LauncherError, match=r"training_RHemo.py not found"):
        launcher.build_plans(opts(root, [1]))


def test_every_selected_run_is_validated_before_anything_runs(root):
    write_exp(root, "1_a.txt", {"global_parameters": SER, "1": {}})
    write_exp(root, "2_b.txt", {"global_parameters": SER, "1": {}, "2": {"num_folds": 0}})
    with pytest.raises(ConfigError, match=r"2_b.txt, run 2: key 'num_folds'"):
        launcher.launch(opts(root, [1, 2]), console=io.StringIO())
    assert calls(root) == [] and not (root / "results").exists()


def test_unselected_invalid_run_does_not_block(root):
    write_exp(root, "1_a.txt", {"global_parameters": SER, "1": {}, "2": {"bogus": 1}})
    assert launcher.launch(opts(root, [1], last=1), console=io.StringIO()) == 0
    assert calls(root) == ["1_a/1/fold0"]


def test_main_prints_one_line_error_and_returns_2(root, capsys):
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {"batch_size": 1.5}})
    code = launcher.main(["--ids", "[1]", "--experiments_folder", str(root / "experiments"),
                          "--output_folder", str(root / "results"), "--scripts_dir", str(root)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "batch_size" in err and "run 1" in err


# ---------------------------------------------------------------------------------------------- merge, selection
def test_run_keys_override_globals(root):
    path = write_exp(root, "1_x.txt", {"global_parameters": {**SER, "learning_rate": 0.1, "seed": 7},
                                       "1": {"learning_rate": 0.5}})
    plan = launcher.resolve_run(launcher.load_experiment(path), 1)
    assert plan.config["learning_rate"] == 0.5       # the run wins
    assert plan.config["seed"] == 7                  # globals fill the rest
    assert plan.config["batch_size"] == 20           # schema default for training_SER.py
    assert plan.script_file == "training_SER.py" and plan.kind == "ser" and plan.nproc == 1
    assert "script" not in plan.config and "nproc" not in plan.config


def test_first_last_select_runs_in_numeric_order(root):
    exp = launcher.load_experiment(write_exp(root, "1_x.txt", {"10": SER, "2": SER, "1": SER, "3": SER}))
    assert launcher.select_runs(exp, 1, None) == [1, 2, 3, 10]
    assert launcher.select_runs(exp, 2, 3) == [2, 3]
    assert launcher.select_runs(exp, 3, 100) == [3, 10]
    with pytest.raises(LauncherError, match="no run between 4 and 9"):
        launcher.select_runs(exp, 4, 9)
    with pytest.raises(LauncherError, match="--first 3 is after --last 2"):
        launcher.select_runs(exp, 3, 2)


def test_experiments_run_in_ids_order_and_runs_in_range(root):
    write_exp(root, "1_a.txt", {"global_parameters": SER, "1": {}, "2": {}, "3": {}})
    write_exp(root, "3_c.txt", {"global_parameters": SER, "2": {}, "1": {"num_folds": 2}})
    assert launcher.launch(opts(root, [3, 1], first=1, last=2), console=io.StringIO()) == 0
    assert calls(root) == ["3_c/1/fold0", "3_c/1/fold1", "3_c/2/fold0", "1_a/1/fold0", "1_a/2/fold0"]


def test_fold_config_json_is_the_resolved_config(root):
    write_exp(root, "1_x.txt", {"global_parameters": {**SER, "num_folds": 2}, "1": {"comment_2": "hello"}})
    launcher.launch(opts(root, [1], gpu_id=3), console=io.StringIO())
    fold_dir = root / "results" / "1_x" / "1" / "fold1"
    config = json.loads((fold_dir / "config.json").read_text())
    assert config["fold"] == 1 and config["gpu_id"] == 3 and config["num_folds"] == 2
    assert Path(config["output_dir"]) == fold_dir
    assert config["script"] == "training_SER.py" and config["comment_2"] == "hello"
    assert "fake ser training fold 1 gpu 3" in (fold_dir / "run.log").read_text()


def test_nproc_runs_through_torchrun(root):
    path = write_exp(root, "1_x.txt", {"global_parameters": {**SER, "nproc": 2}, "1": {}})
    exp = launcher.load_experiment(path)
    plan = launcher.resolve_run(exp, 1)
    command = launcher.fold_command(plan, Path("c.json"), root)
    assert command[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    assert command[6:] == [str(root / "training_SER.py"), "--config", "c.json"]
    single = launcher.resolve_run(exp, 1, nproc_override=1)
    assert launcher.fold_command(single, Path("c.json"), root) == [sys.executable, str(root / "training_SER.py"),
                                                                    "--config", "c.json"]


def test_dry_run_validates_and_runs_nothing(root):
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {"num_folds": 2}})
    out = io.StringIO()
    assert launcher.launch(opts(root, [1], dry_run=True), console=out) == 0
    text = out.getvalue()
    assert "fold 1 [to run]" in text and "training_SER.py --config" in text and "nothing was started" in text
    assert calls(root) == [] and not (root / "results").exists()


# ---------------------------------------------------------------------------------------------- failures
def test_crashing_run_is_recorded_and_the_launcher_goes_on(root):
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {"comment_1": "crash"}, "2": {}})
    out = io.StringIO()
    assert launcher.launch(opts(root, [1]), console=out) == 1
    fold_dir = root / "results" / "1_x" / "1" / "fold0"
    error = (fold_dir / "error.txt").read_text()
    assert error.splitlines()[0] == "1_x run 1 fold 0: exit code 3"
    assert "boom: the fake training crashed" in error
    tail = error.split("--- last 50 lines of output ---\n")[1].splitlines()
    assert len(tail) == 50 and tail[-1] == "boom: the fake training crashed"
    assert not (fold_dir / "metrics.json").exists()
    assert (root / "results" / "1_x" / "2" / "fold0" / "metrics.json").exists()
    assert "[FAIL] 1_x run 1 fold 0: exit code 3" in out.getvalue()
    summary = json.loads((root / "results" / "1_x" / "1" / "summary.json").read_text())
    assert summary["folds"] == {"0": "failed"} and summary["folds_done"] == 0


def test_exit_zero_without_metrics_is_a_failure(root):
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {"comment_1": "nometrics"}})
    assert launcher.launch(opts(root, [1]), console=io.StringIO()) == 1
    error = (root / "results" / "1_x" / "1" / "fold0" / "error.txt").read_text()
    assert "exit code 0 but no readable metrics.json" in error


def test_hanging_run_times_out_and_is_killed(root, monkeypatch):
    monkeypatch.setattr(launcher, "STOP_GRACE_SECONDS", 0.5)  # the fake ignores SIGTERM: force the SIGKILL path
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {"comment_1": "hang"}, "2": {}})
    start = time.monotonic()
    code = launcher.launch(opts(root, [1], timeout_hours=4 / 3600), console=io.StringIO())
    elapsed = time.monotonic() - start
    assert code == 1 and elapsed < 60
    error = (root / "results" / "1_x" / "1" / "fold0" / "error.txt").read_text()
    assert "timed out after" in error.splitlines()[0] and "hanging" in error
    assert (root / "results" / "1_x" / "2" / "fold0" / "metrics.json").exists()


def test_ctrl_c_stops_the_child_and_the_launcher(root):
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {"comment_1": "hang"}, "2": {}})
    log = root / "results" / "1_x" / "1" / "fold0" / "run.log"

    def press_ctrl_c():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if log.exists() and "hanging" in log.read_text():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=press_ctrl_c)
    thread.start()
    start = time.monotonic()
    code = launcher.launch(opts(root, [1]), console=io.StringIO())
    thread.join()
    assert code == 130 and time.monotonic() - start < 90
    error = (root / "results" / "1_x" / "1" / "fold0" / "error.txt").read_text()
    assert "interrupted by the user" in error
    assert calls(root) == ["1_x/1/fold0"]            # run 2 was not started


def test_run_process_kills_the_whole_process_group(tmp_path):
    # a child that starts a grandchild and hangs: the timeout must stop both
    script = tmp_path / "spawn.py"
    pid_file = tmp_path / "grandchild.pid"
    script.write_text(
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "print('spawned', flush=True)\n"
        "time.sleep(60)\n")
    result = launcher.run_process([sys.executable, str(script)], tmp_path, tmp_path / "run.log", 4.0,
                                  console=io.StringIO(), stop_grace=1.0)
    assert result.timed_out and result.returncode is None and "spawned" in result.tail
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild survived the timeout")


def test_run_process_streams_to_console_and_log(tmp_path):
    out = io.StringIO()
    result = launcher.run_process([sys.executable, "-c", "import sys; print('to stdout'); "
                                   "print('to stderr', file=sys.stderr); sys.exit(4)"],
                                  tmp_path, tmp_path / "run.log", 20, console=out)
    assert result.returncode == 4 and not result.timed_out
    assert "to stdout" in out.getvalue() and "to stderr" in out.getvalue()
    log = (tmp_path / "run.log").read_text()
    assert log.startswith("=== ") and "to stdout" in log and "to stderr" in log


# ---------------------------------------------------------------------------------------------- resume, summary
def test_finished_folds_are_skipped_and_force_reruns(root):
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {"num_folds": 2}})
    assert launcher.launch(opts(root, [1]), console=io.StringIO()) == 0
    assert calls(root) == ["1_x/1/fold0", "1_x/1/fold1"]
    out = io.StringIO()
    assert launcher.launch(opts(root, [1]), console=out) == 0
    assert calls(root) == ["1_x/1/fold0", "1_x/1/fold1"]
    assert out.getvalue().count("[skip]") == 2
    assert launcher.launch(opts(root, [1], force=True), console=io.StringIO()) == 0
    assert calls(root) == ["1_x/1/fold0", "1_x/1/fold1"] * 2
    assert (root / "results" / "1_x" / "1" / "fold0" / "metrics.previous.json").exists()


def test_failed_fold_is_retried_and_its_old_error_removed(root):
    path = write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {"comment_1": "crash"}})
    launcher.launch(opts(root, [1]), console=io.StringIO())
    fold_dir = root / "results" / "1_x" / "1" / "fold0"
    assert (fold_dir / "error.txt").exists()
    path.write_text(json.dumps({"global_parameters": SER, "1": {}}))
    assert launcher.launch(opts(root, [1]), console=io.StringIO()) == 0
    assert not (fold_dir / "error.txt").exists() and (fold_dir / "metrics.json").exists()
    assert (fold_dir / "run.log").read_text().count("=== ") == 2   # the log keeps both attempts


def test_summary_json_mean_and_std_over_folds(root):
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {"num_folds": 2}})
    launcher.launch(opts(root, [1]), console=io.StringIO())
    summary = json.loads((root / "results" / "1_x" / "1" / "summary.json").read_text())
    assert summary["folds_done"] == 2 and summary["folds"] == {"0": "done", "1": "done"}
    wa = summary["mean_std"]["test"]["wa"]          # folds: 0.5 and 0.6 → mean 0.55, population std 0.05
    assert wa["mean"] == pytest.approx(0.55) and wa["std"] == pytest.approx(0.05)
    assert summary["mean_std"]["epochs"] == {"mean": 3.5, "std": 0.5}
    assert summary["model_name"] == "VGGNet" and summary["script"] == "training_SER.py"


def test_spreadsheet_and_table_after_a_mixed_experiment(root):
    from openpyxl import load_workbook
    write_exp(root, "5_mix.txt", {"1": {"script": "training_RHemo.py", "num_epochs": 1},
                                  "2": {**SER, "comment_1": "crash"}, "3": SER})
    out = io.StringIO()
    assert launcher.launch(opts(root, [5]), console=out) == 1
    import pandas as pd
    book = load_workbook(root / "results" / "5_mix" / "5_mix_results.xlsx")
    assert book.sheetnames == ["folds", "mean ± std"]
    table = pd.read_csv(root / "results" / "5_mix" / "5_mix_results.csv")
    assert list(zip(table["run"], table["fold"], table["status"], table["script"])) == [
        (1, 0, "done", "training_RHemo.py"), (2, 0, "failed", "training_SER.py"), (3, 0, "done", "training_SER.py")]
    summary = pd.read_excel(root / "results" / "5_mix" / "5_mix_results.xlsx", sheet_name="mean ± std")
    assert summary["run"].tolist() == [1, 2, 3] and summary["folds_done"].tolist() == ["1/1", "0/1", "1/1"]
    text = out.getvalue()
    assert "Results of 5_mix" in text and "RH-emo runs" in text and "SER runs" in text


def test_exp_instance_cli_end_to_end(root):
    """The user's command line, as a subprocess, on the fake scripts."""
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {}, "2": {}, "3": {}})
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(repo / "exp_instance.py"), "--ids", "[1]", "--first", "2",
                           "--last", "3", "--gpu_id", "0", "--experiments_folder", str(root / "experiments"),
                           "--output_folder", str(root / "results"), "--scripts_dir", str(root)],
                          capture_output=True, text=True, timeout=120, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert calls(root) == ["1_x/2/fold0", "1_x/3/fold0"]
    assert "SER runs" in proc.stdout and (root / "results" / "1_x" / "1_x_results.xlsx").exists()


def test_a_report_failure_does_not_stop_the_runs(root, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(launcher.report, "write_tables", broken)
    write_exp(root, "1_x.txt", {"global_parameters": SER, "1": {}, "2": {}})
    out = io.StringIO()
    assert launcher.launch(opts(root, [1]), console=out) == 0
    assert calls(root) == ["1_x/1/fold0", "1_x/2/fold0"]
    assert out.getvalue().count("[warn] could not update the reports of 1_x: OSError: disk full") == 2


# ---------------------------------------------------------------------------------------------- shipped configs
REPO = Path(__file__).resolve().parents[1]


def shipped_plans(tmp_path: Path, ids) -> dict:
    for name in ("training_SER.py", "training_RHemo.py"):
        (tmp_path / name).touch()
    options = LaunchOptions(ids=list(ids), experiments_folder=REPO / "experiments", output_folder=REPO / "results",
                            scripts_dir=tmp_path)
    return {exp.stem: {p.run: p for p in runs} for exp, runs in launcher.build_plans(options)}


def test_shipped_configs_are_valid_and_hold_the_paper_hyperparameters(tmp_path):
    plans = shipped_plans(tmp_path, [1, 2, 3, 4, 90, 91])
    stage1, stage2 = plans["1_RHemo_train_onlyrecon"][1].config, plans["1_RHemo_train_onlyrecon"][2].config
    assert (stage1["label_view"], stage1["loss_beta"], stage1["batch_size"], stage1["learning_rate"],
            stage1["regularization_lambda"], stage1["patience"], stage1["num_epochs"], stage1["seed"],
            stage1["save_model_metric"]) == ("complete", 0.0, 50, 1e-3, 0.0, 100, 200000, 1, "total_loss")
    assert (stage2["label_view"], stage2["loss_beta"], stage2["loss_beta_vad"], stage2["batch_size"],
            stage2["learning_rate"], stage2["regularization_lambda"], stage2["patience"]) == \
        ("iemocap4", 0.01, 100.0, 20, 1e-6, 1e-5, 30)
    # stage 2 starts from where the launcher puts stage 1's best checkpoint
    # stage 2 references stage 1's run; the launcher resolves it to that run's checkpoint under --output_folder
    assert stage2["load_pretrained"].endswith("/results/1_RHemo_train_onlyrecon/1/fold0/checkpoint.pt")
    assert plans["90_demo_RHemo"][2].config["load_pretrained"].endswith("/results/90_demo_RHemo/1/fold0/checkpoint.pt")
    for stem, quat in (("2_SER_quaternion_rhemo", True), ("3_SER_real_baselines", False)):
        runs = plans[stem]
        assert [runs[r].config["model_name"] for r in (1, 2, 3)] == ["AlexNet", "resnet50", "VGGNet"]
        for plan in runs.values():
            c = plan.config
            assert (c["learning_rate"], c["batch_size"], c["num_epochs"], c["patience"], c["save_model_metric"],
                    c["label_view"], c["protocol"], c["split_fractions"], c["num_folds"]) == \
                (1e-5, 20, 500, 20, "loss", "iemocap4", "random", [0.7, 0.2, 0.1], 1)
            assert c["model_quat"] is quat and c["use_r2he"] is quat and c["store_path"] == "data/stores/iemocap"
    assert plans["2_SER_quaternion_rhemo"][1].config["r2he_model_path"] == "models/pretrained_RHemo"
    speaker = plans["4_SER_speaker_independent"]
    assert sorted(speaker) == [1, 2, 3, 4, 5, 6]
    assert [speaker[r].config["model_quat"] for r in range(1, 7)] == [True] * 3 + [False] * 3
    assert all(p.config["protocol"] == "speaker" and p.config["num_folds"] == 5 for p in speaker.values())
    demo = plans["91_demo_SER"]
    assert all(p.config["store_path"] == "data/demo_store/iemocap" for p in demo.values())
    quaternion = [p.config["r2he_model_path"] for p in demo.values() if p.config["model_quat"]]
    assert quaternion.count(None) == 1  # the random-RH-emo control
    assert all(path.endswith("/results/90_demo_RHemo/2/fold0/checkpoint.pt") for path in quaternion if path is not None)


def test_a_command_that_cannot_start_is_a_failure(tmp_path):
    result = launcher.run_process([str(tmp_path / "no_such_program")], tmp_path, tmp_path / "run.log", 5,
                                  console=io.StringIO())
    assert result.returncode == 127 and "could not start" in result.tail[0]
    assert "could not start" in (tmp_path / "run.log").read_text()
