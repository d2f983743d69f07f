"""The environment of a run: ``environment.json`` in its run folder, written when the run starts.

It records what a reader of the results needs to reproduce them: the versions of Python and of the numerical
libraries, the device, the git commit of the code (and whether the working tree had uncommitted changes),
the command line, the host and the start time. A resumed run appends its earlier starts under
``earlier_starts``, so no record is lost.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from rhemo.atomic import write_json
from rhemo.train.runfolder import ENVIRONMENT_FILE

#: Distributions whose versions are recorded (importlib.metadata names).
PACKAGES = ("torch", "numpy", "scipy", "librosa", "scikit-learn", "pandas", "matplotlib")
REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["environment_record", "git_state", "write_environment"]


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def git_state(root: Path = REPO_ROOT) -> dict[str, Any]:
    """{'commit': full hash or None, 'dirty': True if tracked files differ from the commit (None without git)}."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_record(device: torch.device) -> dict[str, Any]:
    """The device type, index and human-readable name (the GPU's model, or the CPU's)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"device": str(device), "device_name": name, "cuda_version": torch.version.cuda,
            "torch_threads": torch.get_num_threads()}


def environment_record(device: torch.device, world_size: int = 1, argv: list[str] | None = None) -> dict[str, Any]:
    """The content of ``environment.json`` for a run starting now on ``device`` with ``world_size`` processes."""
    return {
        "start_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "command": [sys.executable, *(sys.argv if argv is None else argv)],
        "cwd": os.getcwd(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in PACKAGES},
        **device_record(device), "world_size": world_size,
        "git": git_state(),
    }


def write_environment(output_dir: str | os.PathLike, device: torch.device, world_size: int = 1,
                      argv: list[str] | None = None) -> Path:
    """Write ``<output_dir>/environment.json`` atomically (call on rank 0); earlier starts are kept."""
    path = Path(output_dir) / ENVIRONMENT_FILE
    record = environment_record(device, world_size, argv)
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    if isinstance(previous, dict):
        earlier = previous.pop("earlier_starts", [])
        record["earlier_starts"] = [*earlier, previous] if isinstance(earlier, list) else [previous]
    write_json(path, record)
    return path
