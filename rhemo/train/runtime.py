"""Where a run executes: device choice, seeding and the torch.distributed helpers used under ``torchrun``.

One process trains alone unless ``torchrun`` started it: torchrun sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``, and :func:`setup` then joins the process group (NCCL on GPU, gloo on CPU). Every helper below
also works without a process group (it then acts on the single process), so the training code never branches
on "distributed or not".

Example (single process):
    >>> rt = setup(use_cuda=False, gpu_id=0)
    >>> rt.device, rt.rank, rt.world_size, is_main_process()
    (device(type='cpu'), 0, 1, True)
"""
from __future__ import annotations

import os
import random
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["Runtime", "DeviceError", "select_device", "setup", "cleanup", "is_distributed", "get_rank",
           "get_world_size", "is_main_process", "barrier", "all_reduce_sum",
           "all_gather_rows", "seed_everything", "epoch_seed", "LAUNCHER_PID_ENV", "exit_with_launcher"]

#: set by the launcher (rhemo.experiments.launcher.run_process) to its pid; every training process watches it
LAUNCHER_PID_ENV = "RHEMO_LAUNCHER_PID"


class DeviceError(ValueError):
    """The requested device or the torchrun environment is unusable; the message says which value is wrong."""


@dataclass(frozen=True)
class Runtime:
    """The process's place in the run: its device, its rank among ``world_size`` processes (whether it is rank
    0, the one that writes files, is :func:`is_main_process`)."""
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def select_device(use_cuda: bool, gpu_id: int, *, verbose: bool = True) -> torch.device:
    """``cuda:<gpu_id>`` when asked for and available, else the CPU.

    Without CUDA the run falls back to the CPU and prints one line saying so (when ``verbose``). A
    ``gpu_id`` beyond the visible devices is an error, not a silent fallback.

    >>> select_device(False, 0)
    device(type='cpu')
    """
    if isinstance(gpu_id, bool) or not isinstance(gpu_id, int) or gpu_id < 0:
        raise DeviceError(f"gpu_id must be an int >= 0, got {gpu_id!r}")
    if not use_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if verbose:
            print("CUDA not available: running on CPU", flush=True)
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if gpu_id >= count:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise DeviceError(f"gpu_id {gpu_id} does not exist: {count} CUDA device(s) visible "
                          f"(valid ids 0..{count - 1}; CUDA_VISIBLE_DEVICES={visible!r})")
    device = torch.device("cuda", gpu_id)
    torch.cuda.set_device(device)
    return device


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise DeviceError(f"environment variable {name}={text!r} is not an integer (set by torchrun)") from None
    if value < 0:
        raise DeviceError(f"environment variable {name}={value} must be >= 0")
    return value


def setup(use_cuda: bool, gpu_id: int) -> Runtime:
    """Pick the device and, under torchrun (``WORLD_SIZE`` > 1), join the process group.

    Under torchrun each process uses GPU ``gpu_id + LOCAL_RANK`` (so ``--gpu_id 0`` with 2 processes per node
    uses GPUs 0 and 1) and the NCCL backend; on CPU it uses gloo. Only rank 0 prints the CPU-fallback line.
    A process started by the launcher exits when the launcher dies (:func:`exit_with_launcher`).
    """
    exit_with_launcher()
    world_size = _env_int("WORLD_SIZE") or 1
    rank = _env_int("RANK") or 0
    local_rank = _env_int("LOCAL_RANK") or 0
    if rank >= world_size:
        raise DeviceError(f"RANK={rank} must be smaller than WORLD_SIZE={world_size}")
    device = select_device(use_cuda, gpu_id + local_rank, verbose=rank == 0)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return Runtime(device=device, rank=rank, world_size=world_size, local_rank=local_rank)


def _process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(0) succeeding is all we know


def exit_with_launcher(interval: float = 1.0) -> threading.Thread | None:
    """When started by the launcher (``RHEMO_LAUNCHER_PID`` set), exit as soon as the launcher is gone.

    A daemon thread checks the launcher's pid every ``interval`` seconds and ends this process with exit code
    137 when it has died (e.g. kill -9): the kernel's parent-death signal only reaches the launcher's direct
    child, not torchrun's workers, and not at all outside Linux. ``last.pt`` is written atomically, so the
    next run resumes from the last finished epoch. Returns the thread (None when not under the launcher).
    """
    text = os.environ.get(LAUNCHER_PID_ENV, "")
    if not text.isdigit():
        return None
    launcher = int(text)

    def watch() -> None:
        while _process_alive(launcher):
            time.sleep(interval)
        print(f"the launcher (pid {launcher}) is gone: stopping this training process", file=sys.stderr,
              flush=True)
        os._exit(137)

    thread = threading.Thread(target=watch, name="exit-with-launcher", daemon=True)
    thread.start()
    return thread


def cleanup() -> None:
    """Leave the process group (no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 and in a single-process run: the one process that writes files."""
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _collective_device() -> torch.device:
    # NCCL only reduces CUDA tensors; gloo only CPU ones.
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``values`` over all processes (a copy; float64 kept as given). Any shape."""
    out = values.detach().clone()
    if is_distributed():
        moved = out.to(_collective_device())
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        out = moved.to(values.device)
    return out


def all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Concatenate along dim 0 the ``rows`` of every process, in rank order (ranks may hold different counts).

    Shapes: (n_r, *S) on rank r → (sum_r n_r, *S) on every rank, on the device of ``rows``.
    """
    if not is_distributed():
        return rows
    device = _collective_device()
    local = rows.detach().to(device).contiguous()
    count = torch.tensor([local.shape[0]], dtype=torch.int64, device=device)
    counts = [torch.zeros_like(count) for _ in range(get_world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    longest = max(sizes)
    padded = torch.zeros((longest,) + tuple(local.shape[1:]), dtype=local.dtype, device=device)
    padded[:local.shape[0]] = local
    pieces = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(pieces, padded)
    return torch.cat([p[:n] for p, n in zip(pieces, sizes)]).to(rows.device)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device).

    Also asks cuDNN for deterministic kernels and no autotuning (cheap; the CPU path is deterministic already
    for a fixed thread count). Nets whose ops have no deterministic CUDA kernel still run: they only warn.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one (epoch, rank): randomness inside an epoch (dropout) is a pure function of these three,
    so a resumed run replays exactly what an uninterrupted one would have drawn.

    >>> epoch_seed(1, 0, 0) != epoch_seed(1, 1, 0) != epoch_seed(1, 0, 1)
    True
    """
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + int(rank) * 104_729) % 2**63
