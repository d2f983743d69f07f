"""Why does RH-emo's encoder die in stage 1? Dead channels and recon BCE against trivial predictors.

Builds (or reuses) two small synthetic stores under --workdir: the demo's IEMOCAP layout (seed 0) and an EmoDB
layout (seed 7), then trains stage 1 (reconstruction only, beta 0, heads 16 wide) with the engine's own loaders,
loss and pass (Adam, zero_grad → backward → step, as the authors). After every epoch it records the fraction of
dead encoder channels (post-ReLU output 0 for every probed training input), conv1's biases, the
validation recon BCE and the trivial predictors' BCE. Variants:

* ``paper``: lr 1e-3, training-max normalisation, zero biases (the authors' setting);
* ``lr3e-4``, ``lr1e-4``: lower learning rates;
* ``p99.9``: divide by the training 99.9th percentile instead of the max (clipped at 1): a ~2-5x larger input;
* ``log1p``: input_transform log1p (x → log1p(x / training mean), then max-normalised);
* ``bias0.01``, ``bias0.1``: encoder biases initialised to +0.01 / +0.1 (encoder_bias_init);
* ``outbias``: t_conv3's biases start at logit(training mean) (decoder_bias_init data_mean);
* ``bias0.1+outbias``: both (the demo's switches);
* ``frozen_bias``: the encoder biases are not trained (a probe of the mechanism, not a remedy).

Usage: python bench/bench_rhemo_health.py [--quick] [--seeds 5] [--epochs 4] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.registry import RHEMO_MODEL, create_model  # noqa: E402
from rhemo.data.store import SegmentStore  # noqa: E402
from rhemo.train import config, health, loaders, loop, runtime  # noqa: E402
from rhemo.data.normalisation import Normalisation, compute_normalisation  # noqa: E402
from rhemo.data.selection import select_rows  # noqa: E402

CORPORA = {"demo-iemocap": ("iemocap", 0), "emodb-seed7": ("emodb", 7)}
VARIANTS = {
    "paper": {},
    "lr3e-4": {"learning_rate": 3e-4},
    "lr1e-4": {"learning_rate": 1e-4},
    "p99.9": {"percentile": 99.9},
    "log1p": {"input_transform": "log1p"},
    "bias0.01": {"encoder_bias_init": 0.01},
    "bias0.1": {"encoder_bias_init": 0.1},
    "outbias": {"decoder_bias_init": "data_mean"},
    "bias0.1+outbias": {"encoder_bias_init": 0.1, "decoder_bias_init": "data_mean"},
    "frozen_bias": {"frozen_bias": True},
}
QUICK_VARIANTS = ("paper", "outbias", "bias0.1+outbias")


def build_store(workdir: Path, name: str, utterances: int) -> Path:
    """The synthetic corpus ``name`` preprocessed into a store (kept and reused between runs)."""
    layout, seed = CORPORA[name]
    store = workdir / f"{name}-{utterances}" / "store" / layout
    if (store / "predictors.npy").exists():
        return store
    corpus = workdir / f"{name}-{utterances}" / "corpus"
    python = sys.executable
    subprocess.run([python, "-m", "rhemo.data.synthetic", "--layout", layout, "--output", str(corpus),
                    "--utterances", str(utterances), "--seed", str(seed), "--quiet", "--force"], check=True, cwd=REPO)
    subprocess.run([python, "preprocessing.py", "--dataset", layout, "--input", str(corpus), "--output",
                    str(store.parent), "--no-progress"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return store


class Clipped(Normalisation):
    """Bench-only normalisation: divide by a percentile of the training data and clip at 1."""

    def apply(self, x):
        return np.minimum(x / self.max, 1.0) if isinstance(x, np.ndarray) else (x / self.max).clamp(max=1.0)


def normalisation_for(store: SegmentStore, rows: np.ndarray, variant: dict) -> Normalisation:
    norm = compute_normalisation(store.predictors, rows, "max", transform=variant.get("input_transform", "none"))
    if "percentile" in variant:
        sample = np.asarray(store.predictors[np.sort(rows)], dtype=np.float64)
        return Clipped("max", float(np.percentile(sample, variant["percentile"])), norm.mean, norm.std)
    return norm


def run(store_path: Path, seed: int, variant: dict, epochs: int) -> list[dict]:
    """Stage-1 training of one (store, seed, variant); one record per epoch (epoch 0 = at init)."""
    view = "complete" if SegmentStore(store_path).dataset == "iemocap" else "native"
    cfg = config.validate({"store_path": str(store_path), "label_view": view, "seed": seed, "loss_beta": 0.0,
                           "batch_size": 20, "learning_rate": variant.get("learning_rate", 1e-3)},
                          script="rhemo", source="bench")
    runtime.seed_everything(seed)
    process = runtime.Runtime(torch.device("cpu"))
    store = SegmentStore(store_path)
    selection = select_rows(store, cfg)
    norm = normalisation_for(store, selection.rows["train"], variant)
    sets = loaders.make_datasets(store.predictors, selection, norm)
    train_loader = loaders.make_train_loader(sets["train"], cfg["batch_size"], seed, process)
    val_loader = loaders.make_eval_loader(sets["val"], cfg["batch_size"], process)
    train_bin_mean = health.bin_mean(sets["train"])
    trivial = health.trivial_bce(sets["train"], sets["val"], train_bin_mean)
    probe = health.probe_subset(sets["train"])
    net = create_model(RHEMO_MODEL, hidden_size=16, classifier_dropout=0.0,
                       num_classes=max(5, len(selection.label_names)))
    health.init_encoder_biases(net, variant.get("encoder_bias_init", 0.0))
    if variant.get("decoder_bias_init") == "data_mean":
        health.init_decoder_bias(net, float(train_bin_mean.double().mean()))
    if variant.get("frozen_bias"):
        for layer in (net.conv1, net.conv2, net.conv3):
            layer.bias.requires_grad_(False)
    task = loop.RHemoTask(alpha=1.0, beta=0.0, beta_class=1.0, beta_vad=1.0)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=cfg["learning_rate"])
    records = []
    for epoch in range(epochs + 1):
        if epoch:
            train_loader.sampler.set_epoch(epoch - 1)
            net.train()
            loop.run_pass(net, task, train_loader, process.device, optimizer=optimizer, epoch=epoch - 1)
        val = loop.evaluate(net, task, val_loader, process.device)
        report = health.health_report(net, probe, process.device, val["recon"], trivial)
        dead = sum(report["dead_count"].values())
        records.append({"epoch": epoch, "dead_fraction": dead / sum(report["channels"].values()),
                        "dead": report["dead_count"], "recon": val["recon"], "trivial": trivial,
                        "conv1_bias": net.conv1.bias.detach().tolist(),
                        "conv1_bn_mean": report["bn"]["conv1_bn"]["running_mean"],
                        "conv1_bn_var": report["bn"]["conv1_bn"]["running_var"],
                        "zero_fraction": float(np.mean([report["embedding"][c]["zero_fraction"]
                                                        for c in health.COMPONENTS])),
                        "steps": epoch * len(train_loader)})
    return records


def summarise(results: dict) -> None:
    """Per corpus × variant: mean dead fraction per epoch over seeds, runs with any dead channel, recon/trivial."""
    for corpus, by_variant in results.items():
        print(f"\n== {corpus}")
        print(f"{'variant':12s} {'dead fraction per epoch (mean over seeds)':48s} {'runs dead':>9s} "
              f"{'recon':>7s} {'const':>7s} {'binmean':>7s} {'|conv1.b|':>9s}")
        for name, runs in by_variant.items():
            curve = np.mean([[r["dead_fraction"] for r in run] for run in runs], axis=0)
            any_dead = sum(run[-1]["dead_fraction"] > 0 for run in runs)
            last = [run[-1] for run in runs]
            recon = np.mean([r["recon"] for r in last])
            const = np.mean([r["trivial"]["constant"] for r in last])
            binmean = np.mean([r["trivial"]["bin_mean"] for r in last])
            bias = np.mean([np.abs(r["conv1_bias"]).max() for r in last])
            print(f"{name:12s} {' '.join(f'{v:.2f}' for v in curve):48s} {any_dead:>4d}/{len(runs):<4d} "
                  f"{recon:7.4f} {const:7.4f} {binmean:7.4f} {bias:9.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 3 epochs, 100 utterances, 3 variants")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--variants", nargs="*", default=None, help=f"subset of {list(VARIANTS)}")
    parser.add_argument("--corpora", nargs="*", default=list(CORPORA), help=f"subset of {list(CORPORA)}")
    parser.add_argument("--workdir", default="/tmp/bench_rhemo_health")
    parser.add_argument("--json", default=None, help="write every per-epoch record here")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.utterances = 1, min(args.epochs, 3), 100
    variants = args.variants or (QUICK_VARIANTS if args.quick else list(VARIANTS))
    torch.set_num_threads(2)
    results: dict = {}
    started = time.perf_counter()
    for corpus in args.corpora:
        store = build_store(Path(args.workdir), corpus, args.utterances)
        results[corpus] = {}
        for name in variants:
            results[corpus][name] = [run(store, seed, VARIANTS[name], args.epochs) for seed in range(1, args.seeds + 1)]
            print(f"{corpus} {name}: done after {time.perf_counter() - started:.0f} s", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
    summarise(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
