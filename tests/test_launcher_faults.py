"""Launcher faults (issue 11) with real processes: two launchers on one experiment, a launcher killed with
kill -9 (its training child must die with it), a fold folder holding another config, and --force reaching the
training script."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rhemo.experiments import launcher
from rhemo.experiments.launcher import LaunchOptions

REPO = Path(__file__).resolve().parents[1]

# A stand-in training script: records its pid and argv, then (comment_1 "wait") waits for a file named
# "release" in the working directory, or (comment_1 "nometrics") exits 0 without a record.
FAKE = r'''
import json, os, sys, time
cfg = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
out = cfg["output_dir"]
with open(os.path.join(out, "child.pid"), "w") as f:
    f.write(str(os.getpid()))
with open("calls.txt", "a") as f:
    f.write(json.dumps({"fold": out, "argv": sys.argv[1:]}) + "\n")
mode = cfg.get("comment_1", "")
if mode == "nometrics":
    sys.exit(0)
if mode == "wait":
    while not os.path.exists("release"):
        time.sleep(0.05)
with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump({"status": "done", "script": "ser", "train": {}, "val": {}, "test": {}}, f)
'''


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "training_SER.py").write_text(FAKE)
    (tmp_path / "training_RHemo.py").write_text(FAKE)
    (tmp_path / "experiments").mkdir()
    return tmp_path


def experiment(root: Path, **run) -> None:
    data = {"global_parameters": {"script": "training_SER.py", "use_r2he": False, "model_quat": False}, "1": run}
    (root / "experiments" / "1_x.txt").write_text(json.dumps(data))


def options(root: Path, **kw) -> LaunchOptions:
    return LaunchOptions(ids=[1], experiments_folder=root / "experiments", output_folder=root / "results",
                         scripts_dir=root, **kw)


def calls(root: Path) -> list[dict]:
    path = root / "calls.txt"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start_launcher(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "exp_instance.py"), "--ids", "1", "--experiments_folder",
                             str(root / "experiments"), "--output_folder", str(root / "results"), "--scripts_dir",
                             str(root)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat") as handle:  # an orphan that died is reaped by init; be sure anyway
            if handle.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return True
        time.sleep(0.05)
    return False


fold0 = Path("results") / "1_x" / "1" / "fold0"


def test_a_second_launcher_skips_the_fold_the_first_is_training(root):
    experiment(root, comment_1="wait")
    first = start_launcher(root)
    try:
        wait_for(root / fold0 / "child.pid")
        out = io.StringIO()
        assert launcher.launch(options(root, timeout_hours=20 / 3600), console=out) == 0  # no hang if it trains
        assert "[busy] 1_x run 1 fold 0: another launcher (pid " in out.getvalue()
        assert len(calls(root)) == 1                       # the second launcher started nothing
        (root / "release").write_text("")
        stdout, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0 and "[done] 1_x run 1 fold 0" in stdout
    out = io.StringIO()
    assert launcher.launch(options(root), console=out) == 0  # the lock was released: now it is just finished
    assert "[skip]" in out.getvalue() and len(calls(root)) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_the_training_child_dies_with_a_killed_launcher(root):
    experiment(root, comment_1="wait")
    first = start_launcher(root)
    wait_for(root / fold0 / "child.pid")
    child = int((root / fold0 / "child.pid").read_text())
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert gone_within(child, 5), "the training child outlived its launcher"
    # the kernel released the dead launcher's lock: a re-run trains the fold
    (root / "release").write_text("")
    assert launcher.launch(options(root), console=io.StringIO()) == 0
    assert len(calls(root)) == 2


def test_a_training_process_exits_when_the_launcher_pid_is_gone(tmp_path):
    # the fallback for what the parent-death signal does not reach (torchrun's workers, non-Linux systems):
    # a "launcher" starts a plain child (no PR_SET_PDEATHSIG) that only watches RHEMO_LAUNCHER_PID
    pid_file = tmp_path / "worker.pid"
    worker = ("import os, time; from rhemo.train import runtime; runtime.exit_with_launcher(interval=0.1); "
              f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)")
    fake_launcher = ("import os, subprocess, sys, time; "
                     f"subprocess.Popen([sys.executable, '-c', {worker!r}], "
                     "env={**os.environ, 'RHEMO_LAUNCHER_PID': str(os.getpid())}); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", fake_launcher], env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_for(pid_file)
    finally:
        parent.kill()
        parent.wait(timeout=30)
    assert gone_within(int(pid_file.read_text()), 5), "the worker outlived the launcher"


def test_a_fold_holding_another_config_is_refused_and_force_reaches_the_script(root):
    experiment(root, learning_rate=1e-5, comment_1="wait")
    (root / "release").write_text("")
    assert launcher.launch(options(root), console=io.StringIO()) == 0
    config_before = (root / fold0 / "config.json").read_text()
    (root / fold0 / "metrics.json").unlink()           # as if interrupted: last results, no record
    (root / fold0 / "last.pt").write_bytes(b"resume state")
    experiment(root, learning_rate=1e-4, comment_1="wait")
    out = io.StringIO()
    assert launcher.launch(options(root), console=out) == 1
    assert "holds a run with a different config (learning_rate differ); --force retrains it" in out.getvalue()
    assert (root / fold0 / "config.json").read_text() == config_before and len(calls(root)) == 1
    assert "learning_rate" in (root / fold0 / "error.txt").read_text()
    assert launcher.launch(options(root, force=True), console=io.StringIO()) == 0
    assert calls(root)[-1]["argv"][-1] == "--force"
    assert json.loads((root / fold0 / "config.json").read_text())["learning_rate"] == 1e-4
    experiment(root, learning_rate=1e-4, comment_1="another comment")  # a resume-free key: not a new config
    (root / fold0 / "metrics.json").unlink()
    assert launcher.launch(options(root), console=io.StringIO()) == 0
    assert "--force" not in calls(root)[-1]["argv"]


def test_dry_run_refuses_a_monitor_the_script_does_not_compute(root):
    experiment(root, save_model_metric="recon")
    done = subprocess.run([sys.executable, str(REPO / "exp_instance.py"), "--ids", "[1]", "--dry_run",
                           "--experiments_folder", str(root / "experiments"),
                           "--output_folder", str(root / "results"), "--scripts_dir", str(root)],
                          capture_output=True, text=True, cwd=root, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "1_x.txt, run 1" in lines[0] and "key 'save_model_metric'" in lines[0] and "'recon'" in lines[0]
    assert "expected one of loss, acc, wa, ua, f1" in lines[0]
    assert not (root / "results").exists()
