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


import functools  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def after_epoch(monkeypatch):
    """A list of ``hook(epoch)`` callables run after each finished training epoch (1-based), while its files may
    still be being written (a KeyboardInterrupt raised by a hook lets them finish): every
    :func:`rhemo.train.loop.fit` of the test gets them as its ``after_epoch``. Tests fill it to interrupt a run
    at a chosen epoch (``after_epoch[:] = [hook]``) and clear it to let the next run finish."""
    from rhemo.train import loop

    hooks: list = []

    def run_hooks(epoch: int) -> None:
        for hook in list(hooks):
            hook(epoch)

    monkeypatch.setattr(loop, "fit", functools.partial(loop.fit, after_epoch=run_hooks))
    return hooks
