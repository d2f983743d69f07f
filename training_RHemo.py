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

import sys

from models.registry import RHEMO_MODEL, count_parameters, create_model
from rhemo.train import config, health, loop, plots, provenance, recipe, runfolder, runtime
from rhemo.train.diagnostics import rhemo_diagnostics
from rhemo.train.tensorboard_log import log_figures
from rhemo.train.weights import load_rhemo

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


def write_figures(net, cfg: dict, state: loop.FitState, val_dataset, label_names: list[str], out,
                  process: runtime.Runtime) -> None:
    """curves.png and diagnostics.png of the finished run, also in its TensorBoard log if asked (rank 0)."""
    kind = "quaternion" if cfg["model_quat"] else "real"
    stage = "stage 1, reconstruction only" if cfg["loss_beta"] == 0 else f"β = {cfg['loss_beta']:g}"
    title = f"RH-emo ({kind} decoder, {stage}) — {out.parent.name}/{out.name}"
    plots.plot_rhemo_curves(state.history, out / runfolder.CURVES_FILE, title, alpha=cfg["loss_alpha"],
                            beta=cfg["loss_beta"], beta_class=cfg["loss_beta_class"], beta_vad=cfg["loss_beta_vad"],
                            best_epoch=state.best_epoch)
    diagnostics = rhemo_diagnostics(net, val_dataset, label_names, process.device)
    plots.plot_rhemo_diagnostics(diagnostics, out / runfolder.DIAGNOSTICS_FILE,
                                 f"{title}, best epoch {state.best_epoch}: validation segments")
    log_figures(out, cfg["tensorboard"], [runfolder.CURVES_FILE, runfolder.DIAGNOSTICS_FILE], state.epochs)


def rhemo_task(cfg: dict) -> loop.RHemoTask:
    return loop.RHemoTask(alpha=cfg["loss_alpha"], beta=cfg["loss_beta"], beta_class=cfg["loss_beta_class"],
                          beta_vad=cfg["loss_beta_vad"], warmup_epochs=cfg["emo_loss_warmup_epochs"],
                          holes=cfg["emo_loss_holes"], monitor=cfg["save_model_metric"],
                          recon_div4=cfg["loss_recon_div4"])


def build_rhemo(cfg: dict, model_kwargs: dict, datasets: dict, process: runtime.Runtime):
    """(RH-emo, its health monitor): a new RH-emo with the configured bias initialisation, or stage 1's weights
    (load_pretrained)."""
    net = create_model(RHEMO_MODEL, **model_kwargs)
    monitor = health.EpochMonitor(datasets, process.device, alpha=cfg["loss_alpha"])
    health.init_encoder_biases(net, cfg["encoder_bias_init"])
    if cfg["decoder_bias_init"] == "data_mean":
        health.init_decoder_bias(net, float(monitor.train_bin_mean.double().mean()))
    if cfg["load_pretrained"]:
        load_stage1(net, cfg["load_pretrained"])
    return net, monitor


def result_lines(results: dict, report: dict) -> list[str]:
    lines = [f"{split}: " + ", ".join(f"{k} {values[k]:.4f}" for k in ("total", "recon", "acc") if k in values)
             for split, values in results.items()]
    return lines + [health.summary_line(report),
                    f"WARNING {report['warning']}" if report["warning"] else "RH-emo health: OK (no dead encoder "
                    f"channel, recon BCE beats the best constant predictor; {health.bin_mean_comparison(report)})"]


def train(cfg: dict, process: runtime.Runtime, force: bool = False) -> None:
    """One run from the validated config: data, model, fit, final evaluation, run folder. ``force`` retrains
    in a folder holding a finished run or a run of another config (see loop.prepare_output_dir)."""
    out = recipe.start(cfg, "training_RHemo.py", force, process)
    task = rhemo_task(cfg)
    data = recipe.RunData.load(cfg)
    datasets = data.datasets()
    origin = provenance.rhemo_provenance(cfg, data.store, cfg["load_pretrained"])
    loaders = recipe.Loaders.make(datasets, cfg, process)
    # 5 logits at least, so that the authors' weights (and stage 1 → stage 2) always fit
    model_kwargs = {"quat": cfg["model_quat"], "hidden_size": cfg["model_hidden_size"],
                    "classifier_dropout": cfg["model_classifier_dropout"],
                    "num_classes": max(AUTHORS_CLASSES, len(data.label_names))}
    net, monitor = build_rhemo(cfg, model_kwargs, datasets, process)
    model = loop.place_model(net, process, loop.use_channels_last(cfg, process.device),
                             cfg["sync_batchnorm"])
    recipe.announce(f"RH-emo {model_kwargs}: {count_parameters(net):,} trainable parameters; splits "
                    f"{data.selection.sizes()} segments; {process.world_size} process(es) on {process.device}")
    checkpoint = data.checkpoint(cfg, RHEMO_MODEL, model_kwargs, provenance=origin)
    state, results = recipe.train_best(model, net, task, loaders, cfg, process, out, checkpoint,
                                       ["total", "recon", "emo", "acc"], epoch_callback=monitor)
    report = monitor.report(net, results["val"])
    if runtime.is_main_process():
        write_figures(net, cfg, state, datasets["val"], data.label_names, out, process)
    recipe.finish(out, {**data.record("rhemo", RHEMO_MODEL, cfg, net), **results, "health": report}, state,
                  result_lines(results, report))


def main(argv: list[str] | None = None) -> int:
    return recipe.run_command("rhemo", __doc__, train, argv)


if __name__ == "__main__":
    sys.exit(main())
