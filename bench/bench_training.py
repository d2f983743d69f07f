"""Training speed and memory of the engine, for RH-emo and every SER network, at batch 20 on CPU.

    .venv/bin/python bench/bench_training.py                 # paper sizes (hidden 4096), 5 timed steps
    .venv/bin/python bench/bench_training.py --quick         # hidden 256, 3 timed steps, small store
    .venv/bin/python bench/bench_training.py --models AlexNet --hidden 1024 --json out.json

A synthetic IEMOCAP-layout corpus is generated and preprocessed into a segment store (rhemo.data.synthetic →
rhemo.data.store, cached under --workdir). Each (network, variant) is then measured in its own fresh process:

* step: time of one optimisation step (forward, loss, backward, Adam) on a resident batch of 20,
  through the engine's own ``loop.run_pass``;
* epoch: one training epoch over every segment of the store (DataLoader over the memory-mapped store);
* peak RSS of that process (includes the ~0.3 GB of the torch import).

Variants:
* ``plain``: every option off: eager float32, contiguous memory; a quaternion SER net recomputes the frozen
  RH-emo embeddings of every batch. This is the "straightforward eager implementation" baseline.
* ``engine``: (quaternion SER nets only) the engine's default: the embeddings cached once per store are read
  instead (the one-off cache build is timed separately). For RH-emo and the real nets the engine's default
  *is* ``plain``, so that row is not repeated.
* ``+channels_last`` / ``+bf16``: the engine's default plus one option (config keys ``channels_last``, ``amp``).
  bf16 autocast only pays on hardware with native bf16 (GPUs, AVX512-BF16/AMX CPUs); elsewhere it is emulated
  and many times slower, so those rows are skipped unless --bf16 forces them.

Times are the minimum over the repeats (the machine may be shared; interference only adds time).
``ratio`` = plain time / variant time (> 1: faster than plain). Goal (issue 5): SER epoch of the quaternion
nets with cached embeddings >= 2x faster than recomputing them per batch. The classifier width of RH-emo's
heads and of AlexNet/VGG is --hidden (the paper: 4096, slow on CPU); the output says which was used.
--quick (hidden 256, 3 timed steps, 2 epochs of a 40-utterance store) leaves out the real VGG16 and ResNet-50
(about 20 s and 8 s per step at batch 20 on 2 cores); it takes about 3 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BATCH = 20
NETS = [  # (label, registry name, quat)
    ("RH-emo", "simple_autoencoder_2_vad", True),
    ("AlexNet real", "AlexNet", False), ("AlexNet quat", "AlexNet", True),
    ("VGG16 real", "VGGNet", False), ("VGG16 quat", "VGGNet", True),
    ("ResNet-50 real", "resnet50", False), ("ResNet-50 quat", "resnet50", True),
]
VARIANTS = ("plain", "engine", "+channels_last", "+bf16")
HEAVY = ("VGG16 real", "ResNet-50 real")  # left out by --quick


# ----------------------------------------------------------------------------------------------- worker
def measure(store_path: str, name: str, quat: bool, variant: str, hidden: int, steps: int, epoch_count: int
            ) -> dict:
    """Runs in a fresh process: time one configuration and report its peak RSS."""
    import numpy as np
    import torch

    from models.registry import count_parameters, create_model
    from rhemo.data.store import SegmentStore
    from rhemo.engine import data, device, embeddings, loop

    warnings.simplefilter("ignore")
    device.seed_everything(0)
    runtime = device.Runtime(torch.device("cpu"))
    store = SegmentStore(store_path)
    rows = np.arange(len(store))
    norm = data.compute_normalisation(store.predictors, rows, "max")
    labels = np.arange(len(store)) % 4
    amp, channels_last = variant == "+bf16", variant == "+channels_last"
    result: dict = {"cache_build_s": None, "encoder_s": None}
    frontend = None

    if name == "simple_autoencoder_2_vad":
        net = create_model(name, quat=True, hidden_size=hidden, classifier_dropout=0.5)
        task = loop.RHemoTask(alpha=1.0, beta=0.01, beta_class=1.0, beta_vad=100.0)
        model, array, ds_norm = net, store.predictors, norm
    else:
        kwargs = {"quat": quat, "num_classes": 4, "in_channels": 4 if quat else 1}
        if name in ("AlexNet", "VGGNet"):
            kwargs["hidden_size"] = hidden
        net = create_model(name, **kwargs)
        task = loop.SERTask(4)
        array, ds_norm = store.predictors, norm
        if quat:
            rhemo, _ = embeddings.load_frontend(None, runtime.device)
            if variant == "plain":
                frontend = embeddings.RHemoEncoder(rhemo)
            else:
                started = time.perf_counter()
                array, ds_norm = embeddings.cached_embeddings(store, rhemo, norm, runtime.device,
                                                              progress=False), None
                result["cache_build_s"] = time.perf_counter() - started
        model = embeddings.SERModel(net, frontend)
    model = loop.place_model(model, runtime, channels_last)
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    dataset = data.SegmentDataset(array, rows, labels, normalisation=ds_norm)
    loader = data.make_train_loader(dataset, BATCH, seed=0, runtime=runtime)
    loader.sampler.set_epoch(0)
    batch = next(iter(loader))
    run = dict(optimizer=optimizer, epoch=0, amp=amp, channels_last=channels_last)

    loop.run_pass(model, task, [batch], runtime.device, **run)  # warm-up (allocator, kernels)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        loop.run_pass(model, task, [batch], runtime.device, **run)
        times.append(time.perf_counter() - started)
    epochs = []
    for epoch in range(epoch_count):
        loader.sampler.set_epoch(epoch)
        started = time.perf_counter()
        loop.run_pass(model, task, loader, runtime.device, **run)
        epochs.append(time.perf_counter() - started)
    if frontend is not None:  # what caching saves per step: the frozen encoder's forward pass
        encoder_times = []
        for _ in range(steps):
            started = time.perf_counter()
            frontend(batch["x"])
            encoder_times.append(time.perf_counter() - started)
        result["encoder_s"] = min(encoder_times)
    # minimum over repeats: the machine may be shared, and interference only ever adds time
    result.update({"step_s": min(times), "epoch_s": min(epochs), "segments": len(store),
                   "params": count_parameters(net),
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    return result


# ----------------------------------------------------------------------------------------------- parent
def build_store(workdir: Path, utterances: int) -> Path:
    """Synthetic IEMOCAP corpus → segment store (reused when already there)."""
    from rhemo.data.features import FeatureSettings
    from rhemo.data.readers import read_corpus
    from rhemo.data.store import write_store
    from rhemo.data.synthetic import make_corpus

    corpus, store = workdir / f"corpus_{utterances}", workdir / f"store_{utterances}"
    if not (store / "info.json").exists():
        make_corpus(corpus, layout="iemocap", n_utterances=utterances, seed=0)
        found, skipped = read_corpus("iemocap", corpus)
        write_store(found, store, FeatureSettings(), workers=2, skipped=skipped, dataset="iemocap", progress=False)
    return store


def run_worker(store: Path, name: str, quat: bool, variant: str, hidden: int, steps: int, epochs: int) -> dict:
    spec = json.dumps({"store_path": str(store), "name": name, "quat": quat, "variant": variant,
                       "hidden": hidden, "steps": steps, "epoch_count": epochs})
    result = subprocess.run([sys.executable, __file__, "--worker", spec], cwd=REPO, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"worker {name} quat={quat} {variant} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small store, hidden 256, 3 timed steps, no real VGG16/ResNet-50")
    parser.add_argument("--hidden", type=int, default=None, help="classifier width (default 4096; quick: 256)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 5)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="timed epochs per configuration, minimum kept (default 1; quick: 2)")
    parser.add_argument("--utterances", type=int, default=None, help="synthetic utterances (default 200)")
    parser.add_argument("--models", nargs="*", default=None,
                        help="subset of labels' first words: RH-emo AlexNet VGG16 ResNet-50")
    parser.add_argument("--bf16", action="store_true", help="measure bf16 autocast even without native bf16")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rhemo_bench_training"))
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(measure(**spec)))
        return 0

    hidden = args.hidden or (256 if args.quick else 4096)
    steps = args.steps or (3 if args.quick else 5)
    epochs = args.epochs or (2 if args.quick else 1)
    utterances = args.utterances or (40 if args.quick else 200)
    nets = [n for n in NETS if (not args.models or n[0].split()[0] in args.models)
            and not (args.quick and n[0] in HEAVY)]
    import torch

    native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    variants = [v for v in VARIANTS if v != "+bf16" or native_bf16 or args.bf16]
    args.workdir.mkdir(parents=True, exist_ok=True)
    store = build_store(args.workdir, utterances)
    shutil.rmtree(store / "embeddings", ignore_errors=True)  # the first cached run times the cache build

    print(f"batch {BATCH}, CPU, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}; classifier hidden "
          f"size {hidden}" + ("" if hidden == 4096 else " (NOT the paper's 4096: shrunk to fit a CPU run)")
          + f"; {steps} timed steps; store of {utterances} synthetic utterances", flush=True)
    header = f"{'network':15} {'variant':15} {'params':>11} {'step s':>8} {'ratio':>6} {'epoch s':>8} {'ratio':>6} " \
             f"{'peak RSS MB':>11}"
    print(header)
    print("-" * len(header))
    results = []
    for label, name, quat in nets:
        plain = None
        for variant in variants:
            if variant == "engine" and not (quat and name != "simple_autoencoder_2_vad"):
                continue
            r = run_worker(store, name, quat, variant, hidden, steps, epochs)
            r.update(network=label, variant=variant)
            plain = plain or r
            r["step_ratio"] = plain["step_s"] / r["step_s"]
            r["epoch_ratio"] = plain["epoch_s"] / r["epoch_s"]
            results.append(r)
            print(f"{label:15} {variant:15} {r['params']:>11,} {r['step_s']:>8.3f} {r['step_ratio']:>6.2f} "
                  f"{r['epoch_s']:>8.2f} {r['epoch_ratio']:>6.2f} {r['peak_rss_mb']:>11.0f}", flush=True)
    print(f"\nepoch = one pass over the {results[0]['segments'] if results else '?'} segments of the store")
    if args.quick:
        print(f"--quick: {', '.join(HEAVY)} left out (run without --quick to include them)")
    if "+bf16" not in variants:
        print("bf16 rows skipped: this CPU has no native bf16 (emulated bf16 is many times slower; --bf16 forces)")
    builds = [r["cache_build_s"] for r in results if r["cache_build_s"]]
    if builds:
        print(f"embedding cache build (one-off per store and RH-emo weights): {max(builds):.2f} s")
    for label, name, quat in nets:
        if name != "simple_autoencoder_2_vad" and quat:
            by = {r["variant"]: r for r in results if r["network"] == label}
            speedup = by["plain"]["epoch_s"] / by["engine"]["epoch_s"]
            verdict = "meets" if speedup >= 2 else "MISSES"
            share = by["plain"]["encoder_s"] / by["plain"]["step_s"]
            print(f"{label}: epoch with cached embeddings {speedup:.2f}x faster than recomputing per batch "
                  f"({verdict} the >= 2x goal); the frozen encoder is {share:.0%} of a recomputing step "
                  f"({by['plain']['encoder_s'] * 1000:.0f} ms), the bound on what caching can save")
    if args.json:
        args.json.write_text(json.dumps({"hidden": hidden, "steps": steps, "utterances": utterances,
                                         "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
