"""Train RH-emo, the real-to-quaternion autoencoder whose latent feeds the quaternion SER networks.

Stage 1 (reconstruction only, loss_beta 0) trains on every segment of the store (label_view complete); stage 2
(loss_beta 0.01, loss_beta_vad 100) starts from stage 1 (load_pretrained) and adds the discrete-emotion and
valence/arousal/dominance heads on the 4-class view. The loss is reference §3: BCE between the mean of the
decoder's output channels and the max-normalised input, plus beta·(beta_class·CE + beta_vad·(BCE_v+BCE_a+BCE_d)).

Run folder (output_dir): config.json, environment.json (versions, device, git commit, command), log.csv,
checkpoint.pt (best validation total loss; its ``provenance`` records the store, split and, per stage, whether
labels were used, for the SER leakage check), last.pt (resume state, removed at the end), curves.png,
diagnostics.png (input, reconstruction, decoder and embedding channels of fixed validation segments, PCA of
the embeddings), metrics.json (written last: the run finished).

Examples:
    python training_RHemo.py --store_path data/stores/iemocap --output_dir results/manual/rhemo_stage1 \\
        --loss_beta 0
    python training_RHemo.py --config stage2.json --load_pretrained results/manual/rhemo_stage1/checkpoint.pt
    torchrun --nproc_per_node=2 training_RHemo.py --config stage1.json      # DDP, global batch split in 2
Re-running the same command after a crash or Ctrl-C resumes from the last finished epoch. A folder that holds a
finished run, or a run of another config, is refused; --force retrains it.
"""
from __future__ import annotations

import functools
import sys

from models.registry import count_parameters, create_model
from rhemo.data.store import SegmentStore
from rhemo.train import config, loaders as data, runtime as device, health, loop, plots, provenance
from rhemo.train.diagnostics import rhemo_diagnostics
from rhemo.train.environment import write_environment
from rhemo.train.tensorboard_log import log_figures
from rhemo.train.weights import load_rhemo
from rhemo.data.normalisation import compute_normalisation, pad_start
from rhemo.data.selection import select_rows

MODEL_NAME = "simple_autoencoder_2_vad"
AUTHORS_CLASSES = 5  # the authors' discrete head: neu, ang, hap, sad, other


def load_stage1(model, path: str) -> None:
    """Copy RH-emo weights from ``path`` (our checkpoint.pt or the authors' file) into ``model``, strictly."""
    source = load_rhemo(path, map_location="cpu")
    mine = {"quat": model.quat, "hidden_size": model.hidden_size, "num_classes": model.num_classes}
    theirs = {"quat": source.quat, "hidden_size": source.hidden_size, "num_classes": source.num_classes}
    if mine != theirs:
        raise config.ConfigError(f"load_pretrained {path} holds an RH-emo with {theirs}, but this run builds "
                                 f"{mine} (config keys model_quat, model_hidden_size, label_view)")
    model.load_state_dict(source.state_dict(), strict=True)


def write_figures(net, cfg: dict, state: loop.FitState, val_dataset, label_names: list[str], out, runtime
                  ) -> None:
    """curves.png and diagnostics.png of the finished run, also in its TensorBoard log if asked (rank 0)."""
    kind = "quaternion" if cfg["model_quat"] else "real"
    stage = "stage 1, reconstruction only" if cfg["loss_beta"] == 0 else f"β = {cfg['loss_beta']:g}"
    title = f"RH-emo ({kind} decoder, {stage}) — {out.parent.name}/{out.name}"
    plots.plot_rhemo_curves(state.history, out / "curves.png", title, alpha=cfg["loss_alpha"],
                            beta=cfg["loss_beta"], beta_class=cfg["loss_beta_class"], beta_vad=cfg["loss_beta_vad"],
                            best_epoch=state.best_epoch)
    diagnostics = rhemo_diagnostics(net, val_dataset, label_names, runtime.device)
    plots.plot_rhemo_diagnostics(diagnostics, out / "diagnostics.png",
                                 f"{title}, best epoch {state.best_epoch}: validation segments")
    log_figures(out, cfg["tensorboard"], ["curves.png", "diagnostics.png"], state.epochs)


def train(cfg: dict, runtime: device.Runtime, force: bool = False) -> None:
    """One run from the validated config: data, model, fit, final evaluation, run folder. ``force`` retrains
    in a folder holding a finished run or a run of another config (see loop.prepare_output_dir)."""
    device.seed_everything(cfg["seed"])
    out = loop.prepare_output_dir(cfg["output_dir"], cfg, "training_RHemo.py", force=force)
    if runtime.is_main:
        write_environment(out, runtime.device, runtime.world_size)
    task = loop.RHemoTask(alpha=cfg["loss_alpha"], beta=cfg["loss_beta"], beta_class=cfg["loss_beta_class"],
                          beta_vad=cfg["loss_beta_vad"], warmup_epochs=cfg["emo_loss_warmup_epochs"],
                          holes=cfg["emo_loss_holes"], monitor=cfg["save_model_metric"],
                          recon_div4=cfg["loss_recon_div4"])

    # data: label view + split of the store, normalised by the training split's maximum
    store = SegmentStore(cfg["store_path"])
    selection = select_rows(store, cfg)
    norm = compute_normalisation(store.predictors, selection.rows["train"], cfg["normalisation"],
                                      frames=pad_start(store.feature_settings),
                                      transform=cfg["input_transform"])
    datasets = data.make_datasets(store.predictors, selection, norm)
    origin = provenance.rhemo_provenance(cfg, store, cfg["load_pretrained"])
    batch, workers = cfg["batch_size"], cfg["num_workers"]
    train_loader = data.make_train_loader(datasets["train"], batch, cfg["seed"], runtime, workers)
    eval_loaders = {s: data.make_eval_loader(ds, data.eval_batch_size(cfg), runtime, workers)
                    for s, ds in datasets.items()}

    # model: 5 logits at least, so that the authors' weights (and stage 1 → stage 2) always fit
    model_kwargs = {"quat": cfg["model_quat"], "hidden_size": cfg["model_hidden_size"],
                    "classifier_dropout": cfg["model_classifier_dropout"],
                    "num_classes": max(AUTHORS_CLASSES, len(selection.label_names))}
    net = create_model(MODEL_NAME, **model_kwargs)
    monitor = health.EpochMonitor(datasets, runtime.device, alpha=cfg["loss_alpha"])
    health.init_encoder_biases(net, cfg["encoder_bias_init"])
    if cfg["decoder_bias_init"] == "data_mean":
        health.init_decoder_bias(net, float(monitor.train_bin_mean.double().mean()))
    if cfg["load_pretrained"]:
        load_stage1(net, cfg["load_pretrained"])
    model = loop.place_model(net, runtime, cfg["channels_last"], cfg["sync_batchnorm"])
    if runtime.is_main:
        print(f"RH-emo {model_kwargs}: {count_parameters(net):,} trainable parameters; splits "
              f"{selection.sizes()} segments; {runtime.world_size} process(es) on {runtime.device}", flush=True)

    def checkpoint_payload(trained) -> dict:
        return {"model_name": MODEL_NAME, "model_kwargs": model_kwargs,
                "state_dict": {k: v.detach().cpu() for k, v in trained.state_dict().items()},
                "label_names": selection.label_names, "label_view": cfg["label_view"],
                "dataset": store.dataset, "normalisation": norm.to_dict(),
                "feature_settings": store.feature_settings.to_dict(), "rhemo": None, "provenance": origin}

    state = loop.fit(model, task, train_loader, eval_loaders["val"], cfg=cfg, runtime=runtime, output_dir=out,
                     payload_fn=checkpoint_payload, show_keys=["total", "recon", "emo", "acc"],
                     epoch_callback=monitor)

    # final evaluation of the best epoch, with the training loss weights
    net.load_state_dict(state.best_state)
    results = loop.evaluate_splits(net, task, eval_loaders, runtime, cfg)
    report = monitor.report(net, results["val"])
    if runtime.is_main:
        write_figures(net, cfg, state, datasets["val"], selection.label_names, out, runtime)
    loop.write_metrics(out, {"script": "rhemo", "model_name": MODEL_NAME, "quat": cfg["model_quat"],
                             "params": count_parameters(net), "label_names": selection.label_names,
                             **results, "health": report}, state)
    if runtime.is_main:
        for split, values in results.items():
            shown = ", ".join(f"{k} {values[k]:.4f}" for k in ("total", "recon", "acc") if k in values)
            print(f"{split}: {shown}")
        print(health.summary_line(report))
        print(f"WARNING {report['warning']}" if report["warning"] else "RH-emo health: OK (no dead encoder channel, "
              "recon BCE beats the trivial predictors)")
        print(f"run folder: {out}")


def main(argv: list[str] | None = None) -> int:
    cfg, force = config.parse_command("rhemo", __doc__, argv)
    runtime = device.setup(cfg["use_cuda"], cfg["gpu_id"])
    return loop.run_guarded(functools.partial(train, force=force), cfg, runtime)


if __name__ == "__main__":
    sys.exit(main())
