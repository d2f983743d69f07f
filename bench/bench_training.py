"""Where training time goes, and what the engine's speed-ups buy: RH-emo stage 1 and 2 and every SER network.

    .venv/bin/python bench/bench_training.py                 # paper sizes (hidden 4096), 5 epochs, 5 steps
    .venv/bin/python bench/bench_training.py --quick         # hidden 256, 40-utterance store, no real VGG/ResNet
    .venv/bin/python bench/bench_training.py --models stage1 stage2 --epochs 2 --json out.json

A synthetic IEMOCAP-layout corpus is preprocessed into a segment store (cached under --workdir). Each (network,
variant) then runs in its own fresh process, with --threads torch threads (default 1), at the configs' batch
size (RH-emo 50, SER 20) and learning rate:

* ``engine``: the engine as it is (``loop.fit``: training pass, validation, checkpoint.pt, last.pt/best.pt).
  RH-emo runs in the channels_last memory format (its default on the CPU), stage 1 without its heads (the
  emotion terms weigh 0, their Adam state a step count), Adam is fused, evaluation runs under inference_mode
  at eval_batch_size, checkpoints are written in the background while the next epoch trains (RH-emo's last.pt
  referring to checkpoint.pt for the weights it holds), quaternion SER nets read cached embeddings;
* ``off``: the same ``loop.fit`` with every switchable optimisation off: contiguous tensors, full heads,
  default Adam, evaluation at the training batch size, checkpoints written before the next epoch starts (each
  file with its own copy of the weights), quaternion SER nets recomputing the frozen RH-emo embeddings of
  every batch;
* ``authors``: (RH-emo only) a RE-CREATION of the authors' ``training_RHemo.py`` loop from its specification
  (reference §3 and §4.2; their code is not available here): default Adam, per batch zero_grad / forward /
  emo_loss_vad with its 12 per-batch Python floats / backward / step, the heads always computed, data as
  in-RAM tensors, validation every epoch, ``torch.save`` of the state_dict when the validation total improves;
* ``contiguous``: (RH-emo only) the engine with ``channels_last: false``: its ratio is what that memory
  format buys the thin convolutions;
* ``recompute``: (quaternion SER nets only) the engine, but the frozen RH-emo embeddings are recomputed for
  every batch instead of read from the cache: its ratio is what the cache alone buys.

Figures: ``step`` = median time of one training step on a resident batch (forward, loss, backward, Adam);
``epoch`` = median over the epochs of one epoch (training + validation + checkpoint writes: with
background_writes they overlap the next epoch, which waits for them if they are slower; the last epoch counts
the wait for its own at the end of the run); ``train``, ``val``, ``save`` = its parts (``save`` on the writer
thread when it runs in the background); ``peak RSS`` of the process; ``ratio`` = the ``off`` (or ``authors``)
time divided by the ``engine`` time (> 1: the engine is faster). Medians, because the machine may be shared;
the load average before and after is printed. The sizes of the engine's checkpoint.pt, last.pt and best.pt
at the end of the run are reported.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rhemo.data.normalisation import compute_normalisation  # noqa: E402
from rhemo.data.selection import select_rows  # noqa: E402

#: label → (script, config overrides); the RH-emo stages as in experiments/1, SER nets on their inputs.
NETS = {
    "stage1": ("RH-emo stage 1", "rhemo", {"loss_beta": 0.0, "label_view": "complete", "batch_size": 50,
                                           "learning_rate": 1e-3}),
    "stage2": ("RH-emo stage 2", "rhemo", {"loss_beta": 0.01, "loss_beta_vad": 100.0, "label_view": "iemocap4",
                                           "batch_size": 20, "learning_rate": 1e-6, "regularization_lambda": 1e-5}),
    "AlexNet-real": ("AlexNet real", "ser", {"model_name": "AlexNet", "model_quat": False, "use_r2he": False}),
    "AlexNet-quat": ("AlexNet quat", "ser", {"model_name": "AlexNet", "model_quat": True}),
    "VGG16-real": ("VGG16 real", "ser", {"model_name": "VGGNet", "model_quat": False, "use_r2he": False}),
    "VGG16-quat": ("VGG16 quat", "ser", {"model_name": "VGGNet", "model_quat": True}),
    "ResNet-50-real": ("ResNet-50 real", "ser", {"model_name": "resnet50", "model_quat": False, "use_r2he": False}),
    "ResNet-50-quat": ("ResNet-50 quat", "ser", {"model_name": "resnet50", "model_quat": True}),
}
HEAVY = ("VGG16-real", "ResNet-50-real")  # left out by --quick


# ----------------------------------------------------------------------------------------------- worker
class _Timers:
    """Wraps the engine's run_pass and save_checkpoint to split an epoch into training, validation and writes
    (on the writer thread, overlapping the next epoch, when background_writes is on)."""

    def __init__(self, loop, resume) -> None:
        self.totals = {"train": 0.0, "val": 0.0, "save": 0.0}
        run_pass, save = loop.run_pass, resume.save_checkpoint

        def timed_pass(*args, **kwargs):
            started = time.perf_counter()
            try:
                return run_pass(*args, **kwargs)
            finally:
                self.totals["train" if kwargs.get("optimizer") is not None else "val"] += \
                    time.perf_counter() - started

        def timed_save(*args, **kwargs):
            started = time.perf_counter()
            try:
                return save(*args, **kwargs)
            finally:
                self.totals["save"] += time.perf_counter() - started

        loop.run_pass, resume.save_checkpoint = timed_pass, timed_save
        self.run_pass = run_pass

    def take(self) -> dict[str, float]:
        out, self.totals = self.totals, dict.fromkeys(self.totals, 0.0)
        return out


def _engine_setup(spec: dict, cfg: dict):
    """The scripts' data/model preparation (training_RHemo.py / training_SER.py): (process, model, net, task,
    loaders, checkpoint)."""
    import torch

    from models.registry import RHEMO_MODEL, create_model
    from rhemo.data.store import SegmentStore
    from rhemo.train import embeddings, loaders, loop
    from rhemo.train.checkpoint import TrainedCheckpoint
    from rhemo.train.runtime import Runtime

    process = Runtime(torch.device("cpu"))
    store = SegmentStore(cfg["store_path"])
    selection = select_rows(store, cfg)
    norm = compute_normalisation(store.predictors, selection.rows["train"], "max")
    array, ds_norm, frontend = store.predictors, norm, None
    if spec["script"] == "rhemo":
        net = create_model(RHEMO_MODEL, hidden_size=cfg["model_hidden_size"])
        task = loop.RHemoTask(alpha=1.0, beta=cfg["loss_beta"], beta_class=1.0, beta_vad=cfg["loss_beta_vad"])
        model = net
    else:
        from training_SER import network_kwargs

        net = create_model(cfg["model_name"], **network_kwargs(cfg, len(selection.label_names)))
        task = loop.SERTask(len(selection.label_names))
        if cfg["model_quat"]:
            rhemo, _ = embeddings.load_frontend(None, process.device)
            if spec["variant"] == "engine":
                array, ds_norm = embeddings.cached_embeddings(store, rhemo, norm, process.device, progress=False), None
            else:
                frontend = embeddings.RHemoEncoder(rhemo)
        model = embeddings.SERModel(net, frontend)
    model = loop.place_model(model, process, loop.use_channels_last(cfg, process.device))  # as the scripts do
    datasets = loaders.make_datasets(array, selection, ds_norm)
    train_loader = loaders.make_train_loader(datasets["train"], cfg["batch_size"], cfg["seed"], process)
    val_loader = loaders.make_eval_loader(datasets["val"], loaders.eval_batch_size(cfg), process)
    checkpoint = TrainedCheckpoint(model_name=cfg["model_name"], model_kwargs={}, label_names=selection.label_names,
                                   label_view=cfg["label_view"], dataset=store.dataset, normalisation=norm.to_dict(),
                                   feature_settings=store.feature_settings.to_dict())
    return process, model, net, task, train_loader, val_loader, checkpoint


def measure_engine(spec: dict) -> dict:
    """``engine`` / ``off`` / ``contiguous``: loop.fit for spec['epochs'] epochs plus a step timing on a
    resident batch."""
    from models.registry import count_parameters
    from rhemo.train import config, loop, resume, runfolder, runtime

    off = spec["variant"] == "off"
    if spec["variant"] in ("off", "contiguous"):
        spec = {**spec, "overrides": {**spec["overrides"], "channels_last": False}}
    for switch in ("skip_idle_heads", "fast_adam", "background_writes", "single_copy"):
        setattr(loop.SPEEDUPS, switch, not off)
    params = {"store_path": spec["store"], "model_hidden_size": spec["hidden"], "num_epochs": spec["epochs"],
              "early_stopping": False, "use_cuda": False, **spec["overrides"]}
    if spec["script"] == "ser":
        params["r2he_model_path"] = None  # a random-init front end: same cost as trained weights
    cfg = config.validate(params, script=spec["script"], source="bench")
    if off:
        cfg["eval_batch_size"] = cfg["batch_size"]
    runtime.seed_everything(cfg["seed"])
    started = time.perf_counter()
    process, model, net, task, train_loader, val_loader, checkpoint = _engine_setup(spec, cfg)
    setup_s = time.perf_counter() - started
    timers = _Timers(loop, resume)
    epochs, clock = [], [time.perf_counter()]

    sizes = {}
    with tempfile.TemporaryDirectory() as out:
        cfg["output_dir"] = out

        def end_of_epoch(epoch: int) -> None:  # once its writes are submitted (background) or done
            clock.append(time.perf_counter())
            epochs.append({**timers.take(), "epoch": clock[-1] - clock[-2]})

        clock[0] = time.perf_counter()
        loop.fit(model, task, train_loader, val_loader, cfg=cfg, runtime=process, output_dir=out,
                 checkpoint=checkpoint, show_keys=[], after_epoch=end_of_epoch)
        flush = time.perf_counter() - clock[-1]  # fit waits for the last epoch's writes: they count in it
        epochs[-1]["epoch"] += flush
        epochs[-1]["save"] += timers.take()["save"]
        sizes.update({name: os.path.getsize(Path(out) / name) / 2**20
                      for name in (runfolder.CHECKPOINT_FILE, runfolder.LAST_FILE, runfolder.BEST_FILE)
                      if (Path(out) / name).exists()})
    step_s = _step_time(timers.run_pass, model, task, train_loader, spec["steps"], cfg)
    return {"setup_s": setup_s, "step_s": step_s, "params": count_parameters(net), "epochs": epochs,
            "files_mb": sizes, "segments": len(train_loader.dataset) + len(val_loader.dataset),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _step_time(run_pass, model, task, loader, steps: int, cfg: dict) -> float:
    import torch

    from rhemo.train import loop

    optimizer = loop.make_optimizer([p for p in model.parameters() if p.requires_grad], cfg["learning_rate"],
                                    cfg["regularization_lambda"])
    batch = next(iter(loader))
    model.train()
    kwargs = {"optimizer": optimizer, "epoch": 0,
              "channels_last": loop.use_channels_last(cfg, torch.device("cpu"))}
    run_pass(model, task, [batch], torch.device("cpu"), **kwargs)  # allocator, Adam state
    times = []
    for _ in range(steps):  # one pass over several batches: per-pass work (metrics, head state) spread as in an epoch
        started = time.perf_counter()
        run_pass(model, task, [batch] * 4, torch.device("cpu"), **kwargs)
        times.append((time.perf_counter() - started) / 4)
    return statistics.median(times)


def measure_authors(spec: dict) -> dict:
    """``authors``: the re-created training_RHemo.py loop (see the module docstring)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from models.registry import count_parameters, create_model
    from rhemo.data.store import SegmentStore
    from rhemo.train import config, runtime

    params = {"store_path": spec["store"], **spec["overrides"]}
    cfg = config.validate(params, script="rhemo", source="bench")
    runtime.seed_everything(cfg["seed"])
    store = SegmentStore(cfg["store_path"])
    selection = select_rows(store, cfg)
    predictors = np.asarray(store.predictors)
    peak = float(predictors[selection.rows["train"]].max())

    def tensors(split):  # the authors' load_datasets: whole splits as in-RAM tensors, labels (N, 4)
        x = torch.from_numpy(predictors[selection.rows[split]] / peak).float().unsqueeze(1)
        truth = np.column_stack([np.maximum(selection.targets[split], 0), np.nan_to_num(selection.vad[split])])
        return torch.utils.data.TensorDataset(x, torch.from_numpy(truth).float())

    train = torch.utils.data.DataLoader(tensors("train"), batch_size=cfg["batch_size"], shuffle=True)
    val = torch.utils.data.DataLoader(tensors("val"), batch_size=cfg["batch_size"], shuffle=False)
    model = create_model("simple_autoencoder_2_vad", hidden_size=spec["hidden"])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["learning_rate"], weight_decay=cfg["regularization_lambda"])
    beta, beta_vad = cfg["loss_beta"], cfg["loss_beta_vad"]

    def emo_loss_vad(sounds, truth):
        recon, c, v, a, d = model(sounds)
        l_rec = F.binary_cross_entropy((recon.sum(1) / 4).squeeze(), sounds.squeeze().clamp(0, 1))
        bces = [F.binary_cross_entropy(p.squeeze(), truth[:, k + 1]) for k, p in enumerate((v, a, d))]
        l_cls = F.cross_entropy(c, truth[:, 0].long())
        l_vad = beta_vad * sum(bces)
        l_emo = beta * (l_cls + l_vad)
        total = l_rec + l_emo
        floats = {"recon": l_rec.item(), "emo": l_emo.item(), "vad": l_vad.item(), "at": 0.0,
                  "acc": (c.argmax(1) == truth[:, 0]).float().mean().item()}
        for k, (name, p) in enumerate(zip(("valence", "arousal", "dominance"), (v, a, d))):
            floats[name] = bces[k].item()
            floats[f"acc_{name}"] = (p.squeeze().round() == truth[:, k + 1]).float().mean().item()
        floats["total"] = total.item()
        return total, floats

    epochs, best = [], None
    with tempfile.TemporaryDirectory() as out:
        for _ in range(spec["epochs"]):
            parts, started = {}, time.perf_counter()
            model.train()
            for sounds, truth in train:
                optimizer.zero_grad()
                loss, _ = emo_loss_vad(sounds, truth)
                loss.backward()
                optimizer.step()
            parts["train"] = time.perf_counter() - started
            model.eval()
            with torch.no_grad():
                totals = [emo_loss_vad(sounds, truth)[1]["total"] for sounds, truth in val]
            parts["val"] = time.perf_counter() - started - parts["train"]
            value = float(np.mean(totals))
            if best is None or value < best:
                best = value
                torch.save(model.state_dict(), Path(out) / "model")
            parts["save"] = time.perf_counter() - started - parts["train"] - parts["val"]
            parts["epoch"] = time.perf_counter() - started
            epochs.append(parts)
    sounds, truth = next(iter(train))
    model.train()
    times = []
    for _ in range(spec["steps"] + 1):
        started = time.perf_counter()
        optimizer.zero_grad()
        loss, _ = emo_loss_vad(sounds, truth)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return {"setup_s": 0.0, "step_s": statistics.median(times[1:]), "params": count_parameters(model),
            "epochs": epochs, "files_mb": {}, "segments": len(train.dataset) + len(val.dataset),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def worker(spec: dict) -> dict:
    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(spec["threads"])
    return measure_authors(spec) if spec["variant"] == "authors" else measure_engine(spec)


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


def run_worker(spec: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"worker {spec['net']} {spec['variant']} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarise(result: dict) -> dict:
    """Medians over the epochs of the epoch time and its parts."""
    return {key: statistics.median(e[key] for e in result["epochs"]) for key in ("epoch", "train", "val", "save")}


def print_row(label: str, variant: str, r: dict, engine: dict) -> None:
    """One table row; the ratio columns are this variant's time / the engine's (blank on the engine row)."""
    med, eng = summarise(r), summarise(engine)
    blank = r is engine
    step_ratio = f"{'':>6}" if blank else f"{r['step_s'] / engine['step_s']:>6.2f}"
    epoch_ratio = f"{'':>6}" if blank else f"{med['epoch'] / eng['epoch']:>6.2f}"
    print(f"{label:15} {variant:13} {r['params']:>12,} {r['step_s']:>8.3f} {step_ratio} {med['epoch']:>8.2f} "
          f"{epoch_ratio} {med['train']:>7.2f} {med['val']:>6.2f} {med['save']:>6.2f} {r['peak_rss_mb']:>8.0f}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="hidden 256, 40-utterance store, 2 epochs, 3 steps, "
                                                             "no real VGG16/ResNet-50")
    parser.add_argument("--hidden", type=int, default=None, help="classifier width (default 4096; quick: 256)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per run, median kept (default 5: the first epoch fills the copy buffers, the "
                             "last waits for its own writes; quick 2)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run, median kept (default 5)")
    parser.add_argument("--utterances", type=int, default=None, help="synthetic utterances (default 200)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--models", nargs="*", default=None, choices=list(NETS), help="subset of the networks")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rhemo_bench_training"))
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    hidden = args.hidden or (256 if args.quick else 4096)
    epochs = args.epochs or (2 if args.quick else 5)
    steps = args.steps or (3 if args.quick else 5)
    utterances = args.utterances or (40 if args.quick else 200)
    names = args.models or [n for n in NETS if not (args.quick and n in HEAVY)]
    args.workdir.mkdir(parents=True, exist_ok=True)
    store = build_store(args.workdir, utterances)
    print(f"CPU, {args.threads} torch thread(s) per run; classifier hidden size {hidden}"
          + ("" if hidden == 4096 else " (NOT the paper's 4096)") + f"; {epochs} epochs and {steps} steps per run "
          f"(medians); store of {utterances} synthetic utterances; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores", flush=True)
    header = f"{'network':15} {'variant':13} {'params':>12} {'step s':>8} {'ratio':>6} {'epoch s':>8} {'ratio':>6} " \
             f"{'train':>7} {'val':>6} {'save':>6} {'RSS MB':>8}"
    print(header + "\n" + "-" * len(header))
    results = []
    for name in names:
        label, script, overrides = NETS[name]
        variants = {"rhemo": ("engine", "off", "authors", "contiguous"), "ser": ("engine", "off")}[script]
        if overrides.get("model_quat"):
            variants += ("recompute",)
        rows = {}
        for variant in variants:
            spec = {"net": name, "script": script, "variant": variant, "store": str(store), "hidden": hidden,
                    "epochs": epochs, "steps": steps, "threads": args.threads, "overrides": overrides}
            rows[variant] = run_worker(spec)
            rows[variant].update(network=label, variant=variant)
            results.append(rows[variant])
        for variant, r in rows.items():
            print_row(label, variant, r, rows["engine"])
        files = rows["engine"]["files_mb"]
        if files:
            print(f"{'':15} engine run folder: " + ", ".join(f"{k} {v:.1f} MB" for k, v in files.items()), flush=True)
    print(f"\nratio = variant time / engine time (> 1: the engine is faster); epoch = training + validation + "
          f"checkpoint writes; 'authors' is a re-creation of their loop, not their code. Load average after: "
          f"{os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"hidden": hidden, "epochs": epochs, "utterances": utterances,
                                         "threads": args.threads, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
