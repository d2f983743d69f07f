"""Run the numbered experiment files in ``experiments/``: the engine behind ``exp_instance.py``.

An experiment file ``experiments/<N>_<name>.txt`` is a JSON object::

    {"global_parameters": {"script": "training_SER.py", "learning_rate": 1e-5, ...},
     "1": {"model_name": "AlexNet"},
     "2": {"model_name": "VGGNet", "learning_rate": 1e-4}}

Each numbered run is the global parameters with the run's own keys merged **over** them: on a conflict the
run wins (in the authors' launcher the globals won, which made per-run overrides silently useless). ``script``
names the training script; ``nproc`` (optional) > 1 starts the run through ``torchrun``. Every other key is a
key of :mod:`rhemo.train.config`; ``fold``, ``output_dir`` and ``gpu_id`` are set by the launcher and may not
appear in a file. ``seeds``, references to other runs' checkpoints (``{"experiment": 3, "run": 1}``),
``--override`` and ``--store_root`` are described in :mod:`rhemo.experiments.references`.

For every selected run and every fold ``k < num_folds`` the launcher

1. writes the resolved configuration to ``<output>/<file stem>/<run>[/seed<s>]/fold<k>/config.json`` (the
   names are :mod:`rhemo.train.runfolder`'s);
2. starts ``python <script> --config that/config.json`` in its own process (working directory: the folder of
   the training scripts, i.e. the repository root, so relative paths in experiment files are relative to it),
   echoing its output to the console and appending it to ``run.log`` in the fold folder;
3. records a crash, a non-zero exit or a timeout in ``error.txt`` (exit code and the last output lines) and
   goes on with the next fold; a fold whose ``metrics.json`` exists is finished and skipped unless ``force``.

After each run it writes ``<run>/summary.json`` (mean ± std over folds) and rewrites the experiment
spreadsheet (:mod:`rhemo.experiments.report`); at the end it prints a results table.

Example (validate only, nothing runs):

    >>> main(['--ids', '[2]', '--last', '3', '--dry_run'])  # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import codecs
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Sequence, TextIO

from rhemo.atomic import write_json, write_text
from rhemo.experiments import paper_table, references, report
from rhemo.train import protocol, runfolder
from rhemo.train.config import SCRIPT_FILES, ConfigError, coerce, options_for, validate
from rhemo.train.runfolder import CONFIG_FILE, ERROR_FILE, METRICS_FILE, PREVIOUS_METRICS_FILE
from rhemo.train.runtime import LAUNCHER_PID_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
GLOBAL_KEY = "global_parameters"
#: keys the launcher sets per fold; an experiment file may not set them
LAUNCHER_SET_KEYS = ("fold", "output_dir", "gpu_id")
TAIL_LINES = 50
#: seconds a stopped run gets to exit after SIGINT/SIGTERM before it is killed
STOP_GRACE_SECONDS = 20.0
_FILE_PATTERN = re.compile(r"^(\d+)_.*\.txt$")


class LauncherError(ValueError):
    """Bad launcher input: experiment selection, ids, run ranges or missing scripts. The message names them."""


# ----------------------------------------------------------------------------------------------- selection
def parse_ids(text: str) -> list[int]:
    """Parse ``--ids``: a JSON integer or list of integers ("1", "[1]", "[1,2]"); "1,2" is also accepted.

    >>> parse_ids('[1, 2]'), parse_ids('3'), parse_ids('4,5')
    ([1, 2], [3], [4, 5])
    """
    value: Any
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = json.loads(f"[{text}]")
        except json.JSONDecodeError:
            raise LauncherError(f"--ids: expected an integer or a list of integers such as [1,2], got {text!r}") \
                from None
    if not isinstance(value, list):
        value = [value]
    if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
        raise LauncherError(f"--ids: expected a non-empty list of non-negative integers such as [1,2], got {text!r}")
    if len(set(value)) != len(value):
        raise LauncherError(f"--ids: an id is repeated in {text!r}")
    return value


def find_experiment_files(folder: Path, ids: Sequence[int]) -> list[Path]:
    """The experiment file of each id, in the order of ``ids``.

    Files are matched by their integer prefix (``12_name.txt`` has id 12); files without one (README, .DS_Store,
    notes) are ignored. Raises LauncherError when the folder is missing, an id has no file, or two files share
    an id.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LauncherError(f"experiments folder {folder} does not exist")
    by_id: dict[int, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        match = _FILE_PATTERN.match(path.name)
        if match and path.is_file():
            by_id.setdefault(int(match.group(1)), []).append(path)
    result = []
    for exp_id in ids:
        paths = by_id.get(exp_id, [])
        if not paths:
            known = ", ".join(str(i) for i in sorted(by_id)) or "none"
            raise LauncherError(f"no experiment file with id {exp_id} (a file named {exp_id}_<name>.txt) in "
                                f"{folder}; ids present: {known}")
        if len(paths) > 1:
            raise LauncherError(f"experiment id {exp_id} is used by several files: "
                                + " and ".join(str(p) for p in paths))
        result.append(paths[0])
    return result


@dataclass
class Experiment:
    """One experiment file: its global parameters and its numbered runs (raw JSON values)."""

    path: Path
    global_parameters: dict[str, Any]
    runs: dict[int, dict[str, Any]]

    @property
    def stem(self) -> str:
        return self.path.stem


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise LauncherError(f"key {key!r} appears twice in the same JSON object")
        seen[key] = value
    return seen


def load_experiment(path: Path) -> Experiment:
    """Read and structurally check one experiment file (JSON; duplicate keys are an error, not "last wins")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LauncherError(f"cannot read experiment file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        raise LauncherError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except LauncherError as exc:
        raise LauncherError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise LauncherError(f"{path}: expected a JSON object with '{GLOBAL_KEY}' and numbered runs, got "
                            f"{type(data).__name__}")
    globals_ = data.get(GLOBAL_KEY, {})
    if not isinstance(globals_, dict):
        raise LauncherError(f"{path}: '{GLOBAL_KEY}' must be a JSON object, got {type(globals_).__name__}")
    runs: dict[int, dict[str, Any]] = {}
    for key, value in data.items():
        if key == GLOBAL_KEY:
            continue
        if not key.isdigit():
            raise LauncherError(f"{path}: top-level key {key!r} is neither '{GLOBAL_KEY}' nor a run number")
        if not isinstance(value, dict):
            raise LauncherError(f"{path}: run {key} must be a JSON object, got {type(value).__name__}")
        if int(key) in runs:
            raise LauncherError(f"{path}: run {int(key)} is defined twice")
        runs[int(key)] = value
    if not runs:
        raise LauncherError(f"{path}: no numbered runs (expected keys \"1\", \"2\", ...)")
    return Experiment(path, globals_, dict(sorted(runs.items())))


def select_runs(experiment: Experiment, first: int, last: int | None) -> list[int]:
    """Run numbers between ``first`` and ``last`` (inclusive; None: up to the last run), in numeric order."""
    if last is not None and last < first:
        raise LauncherError(f"--first {first} is after --last {last}")
    chosen = [r for r in experiment.runs if r >= first and (last is None or r <= last)]
    if not chosen:
        present = ", ".join(map(str, experiment.runs))
        upper = "the end" if last is None else str(last)
        raise LauncherError(f"{experiment.path}: no run between {first} and {upper}; runs present: {present}")
    return chosen


# --------------------------------------------------------------------------------------------- resolution
@dataclass
class RunPlan:
    """A validated run: the training script, its process count and the complete configuration (no fold keys)."""

    experiment: Experiment
    run: int
    script_file: str
    kind: str  # 'rhemo' or 'ser'
    nproc: int
    config: dict[str, Any]
    #: the seed of this training when the run has seeds (its folder is <run>/seed<s>); None: unseeded
    seed_folder: int | None = None
    #: configuration key -> the run whose checkpoint it loads (resolved per fold)
    references: dict[str, references.Reference] = field(default_factory=dict)

    @property
    def source(self) -> str:
        seed = "" if self.seed_folder is None else f", seed {self.seed_folder}"
        return f"{self.experiment.path}, run {self.run}{seed}"

    def run_dir(self, output_folder: Path) -> Path:
        return runfolder.seed_dir(Path(output_folder) / self.experiment.stem / str(self.run), self.seed_folder)

    def fold_dir(self, output_folder: Path, fold: int) -> Path:
        return runfolder.fold_dir(self.run_dir(output_folder), fold)

    def file_config(self, **fold_keys: Any) -> dict[str, Any]:
        """The configuration as its fold's ``config.json`` holds it: the launcher's own keys (``script``,
        ``nproc``: taken out of the file's run by :func:`resolve_run`) back in front, then ``fold_keys``."""
        return {"script": self.script_file, "nproc": self.nproc, **self.config, **fold_keys}

    def info(self, output_folder: Path) -> report.RunInfo:
        label = str(self.run) if self.seed_folder is None else f"{self.run}/seed{self.seed_folder}"
        return report.RunInfo.from_config(self.experiment.stem, label, self.run_dir(output_folder),
                                          self.file_config())


def merge_run(experiment: Experiment, run: int) -> dict[str, Any]:
    """The run's parameters: the globals, then the run's own keys on top (the run wins on a conflict)."""
    return {**experiment.global_parameters, **experiment.runs[run]}


def resolve_run(experiment: Experiment, run: int, nproc_override: int | None = None,
                prepared: dict[str, Any] | None = None, source: str | None = None) -> RunPlan:
    """Merge and validate one run (the only validation of its config in the launcher: the fold keys added by
    :func:`fold_config` are valid by construction); ConfigError names the file, the run, the key and the
    expected type.

    ``prepared``: the run's parameters already merged (and overridden, references replaced by paths) by
    :func:`plan_run`; None merges the file's run as it is.
    """
    source = source or f"{experiment.path}, run {run}"
    params = merge_run(experiment, run) if prepared is None else dict(prepared)
    launcher_options = options_for("launcher")
    if "script" not in params:
        raise ConfigError(f"{source}: key 'script' is missing; set it to one of {', '.join(SCRIPT_FILES)} "
                          f"(in '{GLOBAL_KEY}' or in the run)")
    script_file = coerce(launcher_options["script"], params.pop("script"), source)
    nproc = coerce(launcher_options["nproc"], params.pop("nproc", 1), source)
    coerce(launcher_options["seeds"], params.pop("seeds", None), source)
    if nproc_override is not None:
        nproc = nproc_override
    set_here = [k for k in LAUNCHER_SET_KEYS if k in params]
    if set_here:
        raise ConfigError(f"{source}: key(s) {', '.join(set_here)} are set by the launcher for every fold "
                          f"(gpu_id comes from --gpu_id); remove them from the experiment file")
    kind = SCRIPT_FILES[script_file]
    config = validate(params, script=kind, source=source)
    return RunPlan(experiment, run, script_file, kind, nproc, config)


def fold_config(plan: RunPlan, fold: int, fold_dir: Path, gpu_id: int) -> dict[str, Any]:
    """The complete configuration of one fold, as written to its ``config.json``: the validated run config with
    the fold's own checkpoint references, ``fold`` (< num_folds), ``output_dir`` and ``gpu_id`` (>= 0)."""
    return plan.file_config(**references.reference_paths(plan.references, fold), fold=fold,
                            output_dir=str(fold_dir), gpu_id=gpu_id)


def fold_command(plan: RunPlan, config_path: Path, scripts_dir: Path) -> list[str]:
    """The command line of one fold: the script with ``--config``, through torchrun when ``nproc`` > 1."""
    script = str(Path(scripts_dir) / plan.script_file)
    if plan.nproc > 1:
        # ``python -m torch.distributed.run`` is torchrun, without relying on the PATH of the venv
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                str(plan.nproc), script, "--config", str(config_path)]
    return [sys.executable, script, "--config", str(config_path)]


# ------------------------------------------------------------------------------------------- processes
@dataclass
class ProcessResult:
    """How a child process ended: its exit code (None if it was stopped), why it was stopped, its last lines."""

    returncode: int | None
    timed_out: bool
    interrupted: bool
    tail: list[str]
    seconds: float


class _Tail:
    """The last bytes of a stream, turned into the last lines (progress-bar carriage returns collapsed)."""

    def __init__(self, limit: int = 64 * 1024):
        self.limit = limit
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            del self.data[:-self.limit]

    def lines(self, count: int) -> list[str]:
        text = bytes(self.data[-self.limit:]).decode("utf-8", errors="replace")
        # a progress bar redraws its line with "\r": keep what the line finally showed
        lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
        while lines and not lines[-1].strip():
            lines.pop()
        return lines[-count:]


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        elif sig == getattr(signal, "SIGKILL", None):
            proc.kill()
        else:
            proc.terminate()
    except (ProcessLookupError, PermissionError):
        pass


def _stop(proc: subprocess.Popen, first_signal: int, grace: float) -> None:
    """Ask the child's process group to stop with ``first_signal``; kill it if it is still alive after ``grace``."""
    _signal_group(proc, first_signal)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
        pass
    if proc.poll() is None:
        _signal_group(proc, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        proc.wait()
    elif os.name == "posix":
        # the leader is gone; make sure no worker of its group (e.g. torchrun's) outlives it
        _signal_group(proc, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent_hook():
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when this process dies (Linux; None elsewhere).

    libc's prctl is resolved here, in the parent: the hook itself runs between fork and exec, where importing
    or loading libraries is not safe.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return hook


def _pump(stream: BinaryIO, tail: _Tail, log: BinaryIO, console: TextIO) -> None:
    """Copy a child's output to ``tail``, ``log`` and ``console`` until it closes (a reader thread's loop)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        chunk = stream.read1(65536)
        if not chunk:
            break
        tail.add(chunk)
        try:
            log.write(chunk)
            log.flush()
        except ValueError:  # log closed: a leftover grandchild still holds the pipe after we gave up
            break
        try:
            console.write(decoder.decode(chunk))
            console.flush()
        except (OSError, ValueError):  # console closed: keep logging
            pass


def run_process(command: Sequence[str], cwd: Path, log_path: Path, timeout_seconds: float | None,
                console: TextIO | None = None, stop_grace: float | None = None) -> ProcessResult:
    """Run ``command``, echoing its merged stdout/stderr to ``console`` and appending it to ``log_path``.

    The child gets its own process group so that a timeout or Ctrl-C stops it together with any workers it
    started. On Ctrl-C the child receives SIGINT (so a training script can save its resume state), the
    function waits up to ``stop_grace`` seconds, kills what is left, and returns with ``interrupted`` set.
    If this process dies without cleaning up (kill -9), the child dies too: on Linux the kernel kills it
    (PR_SET_PDEATHSIG), and every training process (torchrun's workers included) also watches the pid in
    ``RHEMO_LAUNCHER_PID`` (rhemo.train.runtime.exit_with_launcher), so a re-run never overlaps an orphan.
    """
    console = sys.stdout if console is None else console
    stop_grace = STOP_GRACE_SECONDS if stop_grace is None else stop_grace
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{LAUNCHER_PID_ENV: str(os.getpid())})
    tail = _Tail()
    start = time.monotonic()
    with open(log_path, "ab") as log:
        header = f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode()
        log.write(header)
        log.flush()
        try:
            proc = subprocess.Popen(list(command), cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=(os.name == "posix"),
                                    preexec_fn=_die_with_parent_hook())
        except OSError as exc:
            message = f"could not start {command[0]}: {exc}"
            log.write(f"{message}\n".encode())
            return ProcessResult(127, False, False, [message], time.monotonic() - start)

        reader = threading.Thread(target=_pump, args=(proc.stdout, tail, log, console), daemon=True)
        timed_out = interrupted = False
        try:
            reader.start()
            proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc, signal.SIGTERM, stop_grace)
        except KeyboardInterrupt:
            interrupted = True
            _stop(proc, signal.SIGINT, stop_grace)
        reader.join(timeout=10)
    return ProcessResult(None if (timed_out or interrupted) else proc.returncode, timed_out, interrupted,
                         tail.lines(TAIL_LINES), time.monotonic() - start)


# --------------------------------------------------------------------------------------------- folds
@dataclass
class LaunchOptions:
    """Everything ``exp_instance.py`` takes from its command line."""

    ids: list[int]
    experiments_folder: Path = REPO_ROOT / "experiments"
    output_folder: Path = REPO_ROOT / "results"
    scripts_dir: Path = REPO_ROOT
    first: int = 1
    last: int | None = None
    gpu_id: int = 0
    nproc: int | None = None
    force: bool = False
    dry_run: bool = False
    timeout_hours: float | None = None
    #: --seeds: every run trains once per seed (overrides the files' 'seeds')
    seeds: list[int] | None = None
    #: --override: configuration keys merged over every run
    override: dict[str, Any] = field(default_factory=dict)
    #: --store_root: every run reads <store_root>/<name of its store folder>
    store_root: Path | None = None
    #: --paper_table: write the paper table from the finished runs instead of training
    paper_table: bool = False


def run_fold(plan: RunPlan, fold: int, opts: LaunchOptions, console: TextIO) -> str:
    """Run one fold; returns 'done', 'failed', 'skipped' or 'interrupted'. Failures are written to error.txt.

    The fold folder is locked (:class:`rhemo.train.runfolder.FoldLock`) while the fold runs: a second
    launcher on the same experiment skips the fold and says so.
    """
    fold_dir = plan.fold_dir(opts.output_folder, fold)
    label = f"{plan.experiment.stem} run {plan.run} fold {fold}"
    if runfolder.run_finished(fold_dir) and not opts.force:
        print(f"[skip] {label}: already finished ({fold_dir / METRICS_FILE} exists; --force re-runs it)",
              file=console)
        return "skipped"
    lock = runfolder.FoldLock(fold_dir)
    if not lock.acquire():
        print(f"[busy] {label}: another launcher (pid {lock.holder or '?'}) is training this fold "
              f"({lock.path}); skipped", file=console, flush=True)
        return "skipped"
    try:
        return _run_locked_fold(plan, fold, fold_dir, label, opts, console)
    finally:
        lock.release()


def _run_locked_fold(plan: RunPlan, fold: int, fold_dir: Path, label: str, opts: LaunchOptions,
                     console: TextIO) -> str:
    """:func:`run_fold` once the fold's lock is held."""
    metrics_path = fold_dir / METRICS_FILE
    if runfolder.run_finished(fold_dir) and not opts.force:  # finished by another launcher while we waited for the lock
        print(f"[skip] {label}: already finished ({metrics_path} exists; --force re-runs it)", file=console)
        return "skipped"
    error_path = fold_dir / ERROR_FILE
    config_path = fold_dir / CONFIG_FILE
    config = fold_config(plan, fold, fold_dir, opts.gpu_id)
    differences = [] if opts.force else _foreign_config(config_path, config)
    if differences:
        reason = (f"{fold_dir} holds a run with a different config ({', '.join(differences)} differ); --force "
                  f"retrains it")
        write_text(error_path, f"{label}: {reason}\n")
        print(f"[FAIL] {label}: {reason}. Going on.", file=console, flush=True)
        return "failed"
    if metrics_path.exists():
        # a forced re-run (or an unreadable record): keep the old record aside so a crash cannot pass for done
        os.replace(metrics_path, fold_dir / PREVIOUS_METRICS_FILE)
    if error_path.exists():
        error_path.unlink()
    write_json(config_path, config)
    command = fold_command(plan, config_path, opts.scripts_dir) + (["--force"] if opts.force else [])
    print(f"[run ] {label}: {' '.join(command)}", file=console, flush=True)
    timeout = None if opts.timeout_hours is None else opts.timeout_hours * 3600.0
    result = run_process(command, opts.scripts_dir, fold_dir / runfolder.RUN_LOG_FILE, timeout, console)
    return _record_outcome(result, fold_dir, label, command, opts, console)


def _foreign_config(config_path: Path, config: dict[str, Any]) -> list[str]:
    """Keys in which the config.json of a fold folder holding results differs from ``config`` (resume-free keys
    aside)."""
    from rhemo.train.loop import RESUME_FREE_KEYS

    if not runfolder.holds_results(config_path.parent):
        return []
    try:
        saved = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return runfolder.config_differences(saved, config, RESUME_FREE_KEYS) if isinstance(saved, dict) else []


def _record_outcome(result: ProcessResult, fold_dir: Path, label: str, command: list[str], opts: LaunchOptions,
                    console: TextIO) -> str:
    """Print how the fold ended; a failure or interruption is written to error.txt."""
    if result.returncode == 0 and runfolder.run_finished(fold_dir):
        print(f"[done] {label} in {result.seconds:.1f} s", file=console, flush=True)
        return "done"
    if result.interrupted:
        reason = "interrupted by the user (Ctrl-C)"
    elif result.timed_out:
        reason = f"timed out after {result.seconds:.0f} s (--timeout_hours {opts.timeout_hours})"
    elif result.returncode == 0:
        reason = f"exit code 0 but no readable {METRICS_FILE} was written"
    else:
        reason = f"exit code {result.returncode}"
    error_path = fold_dir / ERROR_FILE
    lines = [f"{label}: {reason}", f"command: {' '.join(command)}", f"full output: {fold_dir / runfolder.RUN_LOG_FILE}",
             f"--- last {len(result.tail)} lines of output ---", *result.tail]
    write_text(error_path, "\n".join(lines) + "\n")
    if result.interrupted:
        print(f"[stop] {label}: {reason}", file=console, flush=True)
        return "interrupted"
    print(f"[FAIL] {label}: {reason}; see {error_path}. Going on.", file=console, flush=True)
    return "failed"


# --------------------------------------------------------------------------------------------- driver
class _RunLookup:
    """The parameters of any run of any experiment file, as this launch would train them (files read once)."""

    def __init__(self, opts: LaunchOptions):
        self.opts = opts
        self.experiments: dict[int, Experiment] = {}

    def experiment(self, exp_id: int) -> Experiment:
        if exp_id not in self.experiments:
            self.experiments[exp_id] = load_experiment(find_experiment_files(self.opts.experiments_folder,
                                                                             [exp_id])[0])
        return self.experiments[exp_id]

    def params(self, experiment: Experiment, run: int) -> references.RunParams:
        return references.run_params(merge_run(experiment, run), f"{experiment.path}, run {run}",
                                     self.opts.override, self.opts.store_root, self.opts.seeds)

    def __call__(self, exp_id: int, run: int) -> tuple[str, references.RunParams]:
        try:
            experiment = self.experiment(exp_id)
        except LauncherError as exc:
            raise ConfigError(f"a reference names experiment {exp_id}: {exc}") from None
        if run not in experiment.runs:
            raise ConfigError(f"a reference names {experiment.path}, run {run}, which does not exist; runs: "
                              f"{', '.join(map(str, experiment.runs))}")
        target = self.params(experiment, run)
        if exp_id not in self.opts.ids:  # trained by an earlier command: its folders say whether it was seeded
            on_disk = references.seeds_on_disk(Path(self.opts.output_folder) / experiment.stem / str(run))
            if on_disk != references.NOT_ON_DISK:
                target.seeds = on_disk
        return experiment.stem, target


def plan_run(experiment: Experiment, run: int, opts: LaunchOptions, lookup: _RunLookup) -> list[RunPlan]:
    """The trainings of one run: one plan per seed (or one unseeded plan), references resolved, validated."""
    this = lookup.params(experiment, run)
    exp_id = int(_FILE_PATTERN.match(experiment.path.name).group(1))
    plans = []
    for seed in this.seeds or [None]:
        refs = references.resolve_references(this, seed, exp_id, lookup, opts.output_folder)
        prepared = {**this.params, **references.reference_paths(refs, 0)}
        if seed is not None:
            prepared["seed"] = seed
        source = this.source if seed is None else f"{this.source}, seed {seed}"
        plan = resolve_run(experiment, run, opts.nproc, prepared=prepared, source=source)
        plan.seed_folder, plan.references = seed, refs
        plans.append(plan)
    return plans


def build_plans(opts: LaunchOptions) -> list[tuple[Experiment, list[RunPlan]]]:
    """Select and validate every run of every selected experiment, before anything runs."""
    plans = []
    lookup = _RunLookup(opts)
    for path in find_experiment_files(opts.experiments_folder, opts.ids):
        experiment = load_experiment(path)
        runs = [plan for r in select_runs(experiment, opts.first, opts.last)
                for plan in plan_run(experiment, r, opts, lookup)]
        plans.append((experiment, runs))
    needed = sorted({p.script_file for _, runs in plans for p in runs})
    missing = [s for s in needed if not (Path(opts.scripts_dir) / s).is_file()]
    if missing:
        raise LauncherError(f"training script(s) {', '.join(missing)} not found in {opts.scripts_dir}")
    return plans


def _experiment_runs(experiment: Experiment, plans: list[RunPlan], output_folder: Path) -> list[report.RunInfo]:
    """The runs of the spreadsheet: the ones planned now plus the ones already on disk, by run number."""
    infos = {info.run: info for info in report.runs_on_disk(Path(output_folder) / experiment.stem)}
    infos.update({info.run: info for info in (p.info(output_folder) for p in plans)})
    return [infos[label] for label in sorted(infos, key=report.run_sort_key)]


def _update_reports(experiment: Experiment, plans: list[RunPlan], plan: RunPlan, output_folder: Path,
                    console: TextIO) -> None:
    """Write the run's summary.json and rewrite the experiment spreadsheet. A failure here is reported and does
    not stop the remaining runs (the reports can be rebuilt later with ``python -m rhemo.experiments.report``)."""
    try:
        report.write_run_summary(plan.info(output_folder))
        if plan.seed_folder is not None:
            report.write_seed_summary(plan.run_dir(output_folder).parent)
        table, sheet = report.write_tables(Path(output_folder) / experiment.stem,
                                           _experiment_runs(experiment, plans, output_folder))
    except Exception as exc:  # noqa: BLE001 - a report problem must not cost the remaining trainings
        print(f"[warn] could not update the reports of {experiment.stem}: {type(exc).__name__}: {exc}. "
              f"Rebuild them with: python -m rhemo.experiments.report {Path(output_folder) / experiment.stem}",
              file=console, flush=True)
        return
    print(f"[csv] {table}\n[xlsx] {sheet}", file=console, flush=True)


def print_plan(plans: list[tuple[Experiment, list[RunPlan]]], opts: LaunchOptions, console: TextIO) -> None:
    """The dry-run listing: every fold with its folder, its state and its command."""
    for experiment, runs in plans:
        print(f"experiment {experiment.stem} ({experiment.path})", file=console)
        for plan in runs:
            model = plan.config.get("model_name")
            quat = "quaternion" if plan.config.get("model_quat") else "real"
            print(f"  run {plan.run}: {plan.script_file} {model} ({quat}), {plan.config['num_folds']} fold(s), "
                  f"nproc {plan.nproc}", file=console)
            print(f"    rules: {protocol.describe_rules(plan.config, plan.kind)}", file=console)
            for fold in range(plan.config["num_folds"]):
                fold_dir = plan.fold_dir(opts.output_folder, fold)
                state = "finished, skip" if runfolder.run_finished(fold_dir) and not opts.force else "to run"
                command = fold_command(plan, fold_dir / CONFIG_FILE, opts.scripts_dir)
                print(f"    fold {fold} [{state}] {fold_dir}\n      {' '.join(command)}", file=console)
    print("dry run: every run is valid; nothing was started", file=console)


def print_references(plans: list[tuple[Experiment, list[RunPlan]]], console: TextIO) -> None:
    """The dry-run listing of every resolved reference: which checkpoint each fold will load, and its state."""
    for experiment, runs in plans:
        for plan in runs:
            for key, ref in plan.references.items():
                folds = range(plan.config["num_folds"]) if ref.fold is None else [0]
                for fold in folds:
                    state = "finished" if ref.finished(fold) else "not finished yet"
                    print(f"reference: {experiment.stem} run {plan.run}"
                          f"{'' if plan.seed_folder is None else f' seed {plan.seed_folder}'}"
                          f"{'' if ref.fold is not None else f' fold {fold}'}: {key} = {ref.describe(fold)} "
                          f"[{state}] {ref.path(fold)}", file=console)


def start_fold(plan: RunPlan, fold: int, opts: LaunchOptions, console: TextIO) -> str:
    """:func:`run_fold`, unless a run this fold loads has not finished: then it is refused ('failed')."""
    blocked = references.unfinished(plan.references, fold)
    if blocked and not (runfolder.run_finished(plan.fold_dir(opts.output_folder, fold)) and not opts.force):
        for line in blocked:
            print(f"[refuse] {plan.experiment.stem} run {plan.run} fold {fold}: not started: {line}",
                  file=console, flush=True)
        return "failed"
    return run_fold(plan, fold, opts, console)


def launch(opts: LaunchOptions, console: TextIO | None = None) -> int:
    """Validate everything, then run each fold in order. Returns 0 if all folds finished, 1 if some failed,
    130 after Ctrl-C. Raises ConfigError / LauncherError on invalid input (before anything runs)."""
    console = sys.stdout if console is None else console
    plans = build_plans(opts)
    if opts.dry_run:
        print_references(plans, console)
        print_plan(plans, opts, console)
        return 0
    failures = 0
    for experiment, runs in plans:
        for plan in runs:
            print(f"=== {experiment.stem} run {plan.run}: {plan.script_file} {plan.config.get('model_name')}",
                  file=console, flush=True)
            interrupted = False
            for fold in range(plan.config["num_folds"]):
                outcome = start_fold(plan, fold, opts, console)
                failures += outcome == "failed"
                if outcome == "interrupted":
                    interrupted = True
                    break
            _update_reports(experiment, runs, plan, opts.output_folder, console)
            if interrupted:
                print("interrupted: the launcher stops here. Run the same command again to resume: finished "
                      "folds are skipped.", file=console, flush=True)
                return 130
        infos = _experiment_runs(experiment, runs, opts.output_folder)
        print(f"\nResults of {experiment.stem}:\n{report.console_table(infos)}\n", file=console, flush=True)
    if failures:
        print(f"{failures} fold(s) failed; their error.txt files say why.", file=console, flush=True)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run the numbered experiment files experiments/<N>_<name>.txt (JSON: global_parameters plus "
                    "numbered runs; a run's own keys override the globals). Results go to "
                    "<output_folder>/<file stem>/<run>/fold<k>/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--ids", type=str, default=None,
                        help="Experiment ids to run: a JSON integer or list, e.g. [1] or [2,3] (required "
                             "unless --paper_table).")
    parser.add_argument("--experiments_folder", type=Path, default=REPO_ROOT / "experiments",
                        help="Folder of the experiment files.")
    parser.add_argument("--output_folder", type=Path, default=REPO_ROOT / "results",
                        help="Folder of the results.")
    parser.add_argument("--first", type=int, default=1, help="First run number to execute.")
    parser.add_argument("--last", type=int, default=None, help="Last run number to execute; None: up to the last run of each file.")
    parser.add_argument("--gpu_id", type=int, default=0, help="CUDA device given to every run (CPU if none).")
    parser.add_argument("--nproc", type=int, default=None,
                        help="Processes per run, overriding the files' 'nproc'; > 1 runs through torchrun "
                             "--standalone --nproc_per_node K.")
    parser.add_argument("--force", action="store_true", help="Re-run folds that already finished.")
    parser.add_argument("--dry_run", action="store_true", help="Validate and print the plan; run nothing.")
    parser.add_argument("--timeout_hours", type=float, default=None,
                        help="Stop a fold that runs longer than this and record it as failed; None: no limit.")
    parser.add_argument("--seeds", type=str, default=None,
                        help="Seeds for every selected run, e.g. 1,2,3 (overrides the files' 'seeds'): one "
                             "training per seed in <run>/seed<s>/; summary.json gives mean ± std over seeds "
                             "and folds.")
    parser.add_argument("--override", type=str, default=None,
                        help="JSON object of configuration keys merged over every run, e.g. "
                             "'{\"num_epochs\": 1}' (typed JSON, never evaluated).")
    parser.add_argument("--store_root", type=Path, default=None,
                        help="Every run reads <store_root>/<name of its store folder> instead of its "
                             "store_path (e.g. small stores with the shipped files unchanged).")
    parser.add_argument("--paper_table", action="store_true",
                        help="Collect the finished runs under --output_folder into paper_table.csv/.md/.xlsx "
                             "and paper_table.png beside the published numbers; train nothing.")
    parser.add_argument("--scripts_dir", type=Path, default=REPO_ROOT,
                        help="Folder holding training_RHemo.py and training_SER.py. Runs start in it, so "
                             "relative paths inside experiment files are relative to it.")
    return parser


def options_from_args(argv: Sequence[str] | None = None) -> LaunchOptions:
    """Parse the command line into LaunchOptions (argparse exits with a usage message on bad flags)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ids is None and not args.paper_table:
        parser.error("--ids is required (e.g. --ids [1]), unless --paper_table")
    try:
        ids = [] if args.ids is None else parse_ids(args.ids)
        extra = _evaluation_options(args)
    except (LauncherError, ConfigError) as exc:
        parser.error(str(exc))
    if args.first < 0:
        parser.error(f"--first must be >= 0, got {args.first}")
    if args.nproc is not None and args.nproc < 1:
        parser.error(f"--nproc must be >= 1, got {args.nproc}")
    if args.gpu_id < 0:
        parser.error(f"--gpu_id must be >= 0, got {args.gpu_id}")
    if args.timeout_hours is not None and not args.timeout_hours > 0:
        parser.error(f"--timeout_hours must be > 0, got {args.timeout_hours}")
    return LaunchOptions(ids=ids, experiments_folder=args.experiments_folder.resolve(),
                         output_folder=args.output_folder.resolve(), scripts_dir=args.scripts_dir.resolve(),
                         first=args.first, last=args.last, gpu_id=args.gpu_id, nproc=args.nproc,
                         force=args.force, dry_run=args.dry_run, timeout_hours=args.timeout_hours, **extra)


def _evaluation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The LaunchOptions of --seeds, --override, --store_root and --paper_table (ConfigError on bad values)."""
    return {"seeds": None if args.seeds is None else references.parse_seeds(args.seeds),
            "override": {} if args.override is None else references.parse_override(args.override),
            "store_root": None if args.store_root is None else args.store_root.resolve(),
            "paper_table": args.paper_table}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``exp_instance.py``; returns the process exit code (2 on invalid input)."""
    opts = options_from_args(argv)
    try:
        if opts.paper_table:
            return paper_table.write_all(opts.output_folder, opts.experiments_folder, sys.stdout)
        return launch(opts)
    except (ConfigError, LauncherError) as exc:
        print(f"exp_instance.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which has exited
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
