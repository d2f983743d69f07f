"""Quaternion layer speed: forward+backward against the real torch layer, and model construction time
against the authors' per-element init.

    .venv/bin/python bench/bench_layers.py            # 20 timed repeats per layer
    .venv/bin/python bench/bench_layers.py --quick    # 5 repeats, smaller init subset

Part 1, for each representative shape: the median wall time of one forward + backward (input and parameter
gradients, grads reset to None between repeats) of our quaternion layer and of the real torch layer with
the same *real* channel counts (so the real layer has 4× the parameters), measured interleaved to share the
machine's load, and the ratio ours/real. Goal: every ratio ≤ 1.10.

Part 2: construction time of the quaternion AlexNet, VGG16 and ResNet-50 (from ``models``), against the
authors' init: per weight, one vectorised ``scipy.stats.chi.rvs`` for the moduli, numpy uniforms for the
axis, a Python loop over every element normalising the axis, a fresh RandomState for the phase, float64
products cast to float32 (the description in original_system.md §1.4, re-stated here). That loop is timed on
a subset and EXTRAPOLATED linearly to the model's quaternion weight count; non-quaternion layers are not
counted on the authors' side, so the speed-up is a lower bound. The speed-up compares equal resources (our
construction at 1 torch thread, like the authors' Python loop); the time at --threads is printed too.
Goal: ≥ 10×.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quaternion_layers import (QuaternionConv, QuaternionLinear,  # noqa: E402
                               QuaternionTransposeConv)

QUATERNION_LAYERS = (QuaternionConv, QuaternionTransposeConv, QuaternionLinear)


# ------------------------------------------------------------------------------------------ part 1: layers
def layer_cases():
    """(label, quaternion layer, real layer, input shape)."""
    return [
        ("RH-emo decoder tconv 4→4 k3 s(2,1) p1 op(1,0), x(20,4,64,64)",
         QuaternionTransposeConv(4, 4, 3, stride=(2, 1), padding=1, output_padding=(1, 0), seed=0),
         nn.ConvTranspose2d(4, 4, 3, stride=(2, 1), padding=1, output_padding=(1, 0)), (20, 4, 64, 64)),
        ("AlexNet conv1 4→64 k11 s4 p2, x(20,4,64,64)",
         QuaternionConv(4, 64, 11, stride=4, padding=2, seed=0),
         nn.Conv2d(4, 64, 11, stride=4, padding=2), (20, 4, 64, 64)),
        ("conv 64→64 k3 p1, x(8,64,64,64)",
         QuaternionConv(64, 64, 3, padding=1, seed=0), nn.Conv2d(64, 64, 3, padding=1), (8, 64, 64, 64)),
        ("linear 2048→4096, x(20,2048)",
         QuaternionLinear(2048, 4096, seed=0), nn.Linear(2048, 4096), (20, 2048)),
    ]


def _step(layer: nn.Module, x: torch.Tensor) -> float:
    for p in layer.parameters():
        p.grad = None
    x.grad = None
    start = time.perf_counter()
    layer(x).sum().backward()
    return time.perf_counter() - start


def bench_layers(repeats: int, warmup: int) -> list[float]:
    ratios = []
    print(f"{'layer':58s} {'ours ms':>9s} {'real ms':>9s} {'ratio':>6s}")
    for label, quat, real, shape in layer_cases():
        x = torch.randn(shape, generator=torch.Generator().manual_seed(1), requires_grad=True)
        for _ in range(warmup):
            _step(quat, x), _step(real, x)
        ours, theirs = [], []
        for _ in range(repeats):    # interleaved, so both see the same background load
            ours.append(_step(quat, x))
            theirs.append(_step(real, x))
        q_ms, r_ms = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
        ratios.append(q_ms / r_ms)
        print(f"{label:58s} {q_ms:9.2f} {r_ms:9.2f} {q_ms / r_ms:6.2f}")
    return ratios


# -------------------------------------------------------------------------------------- part 2: construction
def authors_style_init(n: int, s: float, rng_seed: int = 0) -> tuple[np.ndarray, ...]:
    """The authors' polar init for n quaternions, re-stated (§1.4): per-element Python normalisation loop."""
    from scipy.stats import chi

    np.random.seed(rng_seed)
    modulus = chi.rvs(4, loc=0, scale=s, size=n)
    v_i, v_j, v_k = (np.random.uniform(-1.0, 1.0, n) for _ in range(3))
    for e in range(n):
        norm = math.sqrt(v_i[e] ** 2 + v_j[e] ** 2 + v_k[e] ** 2 + 1e-4)
        v_i[e] /= norm
        v_j[e] /= norm
        v_k[e] /= norm
    phase = np.random.RandomState(np.random.randint(1, 1234)).uniform(-np.pi, np.pi, n)
    parts = (modulus * np.cos(phase), modulus * v_i * np.sin(phase), modulus * v_j * np.sin(phase),
             modulus * v_k * np.sin(phase))
    return tuple(torch.from_numpy(p).float() for p in parts)


def authors_seconds_per_quaternion(subset: int) -> float:
    start = time.perf_counter()
    authors_style_init(subset, 0.01)
    return (time.perf_counter() - start) / subset


def quaternion_count(model: nn.Module) -> int:
    return sum(m.r_weight.numel() for m in model.modules() if isinstance(m, QUATERNION_LAYERS))


def model_builders():
    try:
        from models import AlexNet, VGGNet, resnet50
    except Exception as exc:  # noqa: BLE001 - any import failure means "not there yet"
        print(f"models not available yet ({type(exc).__name__}: {exc})")
        return []
    return [("AlexNet (quat)", lambda: AlexNet(quat=True, num_classes=4)),
            ("VGG16 (quat)", lambda: VGGNet(architecture="VGG16", quat=True, num_classes=4)),
            ("ResNet-50 (quat)", lambda: resnet50(quat=True, num_classes=4))]


def _median_build_seconds(build, repeats: int, threads: int) -> tuple[float, nn.Module]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = []
        for _ in range(repeats):
            torch.manual_seed(0)
            start = time.perf_counter()
            model = build()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(times), model


def bench_construction(repeats: int, subset: int, threads: int) -> list[float]:
    """Speed-ups are taken at 1 torch thread, the resources of the authors' single-threaded Python loop;
    the time with ``threads`` threads is shown alongside (on a busy machine it can be much slower)."""
    builders = model_builders()
    if not builders:
        return []
    per_element = authors_seconds_per_quaternion(subset)
    print(f"authors' init: {per_element * 1e6:.2f} µs per quaternion (timed on {subset:,} quaternions, "
          f"1 thread)")
    print(f"{'model':18s} {'quaternions':>12s} {'ours s, 1 thr':>14s} {f'ours s, {threads} thr':>14s} "
          f"{'authors s (extrapolated)':>25s} {'speed-up':>9s}")
    speedups = []
    for label, build in builders:
        single, model = _median_build_seconds(build, repeats, 1)
        multi = _median_build_seconds(build, repeats, threads)[0] if threads != 1 else single
        n = quaternion_count(model)
        theirs = per_element * n
        speedups.append(theirs / single)
        print(f"{label:18s} {n:12,d} {single:14.3f} {multi:14.3f} {theirs:25.1f} {theirs / single:8.0f}×")
    return speedups


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats and a smaller init subset")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="torch intra-op threads for every measurement (default: min(2, cores))")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    repeats, warmup = (5, 2) if args.quick else (20, 3)
    subset = 20_000 if args.quick else 100_000
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {repeats} repeats, "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    if load > (os.cpu_count() or 1) - args.threads + 0.5:
        print("warning: the machine is busy; timings (and ratios) are noisy, re-run when it is idle")
    print()
    ratios = bench_layers(repeats, warmup)
    print(f"\nlayer goal ratio ≤ 1.10: {'met' if max(ratios) <= 1.10 else 'NOT met'} (worst {max(ratios):.2f})\n")
    speedups = bench_construction(1 if args.quick else 3, subset, args.threads)
    if speedups:
        print(f"\nconstruction goal ≥ 10×: {'met' if min(speedups) >= 10 else 'NOT met'} "
              f"(smallest {min(speedups):.0f}×)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
