"""Suite-wide settings.

Tests run with one intra-op thread, in this process and in the training subprocesses they start: on a small
machine, torch's thread pool competing with other processes (DDP workers, launcher children) slows tiny
workloads by an order of magnitude, and one thread also keeps CPU results reproducible.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402  (the environment must be set before torch starts its thread pool)

torch.set_num_threads(1)
