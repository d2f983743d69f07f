"""Train a speech emotion recognition network: AlexNet, VGG or ResNet-50, real or quaternion.

Quaternion networks (model_quat true) read RH-emo's (4, 64, 64) embedding of each normalised 4-s spectrogram;
real baselines (model_quat false, use_r2he false) read the (1, 512, 128) spectrogram itself. RH-emo is loaded
from r2he_model_path and kept frozen in eval mode (the authors left it in train mode: r2he_bn_mode batch); its
embeddings are then computed once and cached next to the store (cache_embeddings). finetune_r2he trains its
encoder end to end with the network instead. Before training, the run checks that none of its test utterances
was in the training split of a labelled stage of that RH-emo (rhemo.train.provenance).

Metrics per split: loss, WA (accuracy), UA (mean per-class recall), macro F1 and the confusion matrix, at
segment level (the paper's) and at utterance level (utt_*, segment logits averaged per utterance).

Run folder (output_dir): config.json, environment.json (versions, device, git commit, command), log.csv,
checkpoint.pt (best validation epoch; carries the label names, normalisation, feature settings and the RH-emo
encoder, so predict.py needs nothing else), last.pt (resume state, removed at the end), curves.png,
confusion.png, confusion_utterance.png, predictions_val.csv and predictions_test.csv (one row per utterance),
metrics.json (written last; per split also per_class and utt_per_class reports).

Examples:
    python training_SER.py --store_path data/stores/iemocap --output_dir results/manual/ser_qalexnet \\
        --model_name AlexNet --model_quat true --r2he_model_path models/pretrained_RHemo
    python training_SER.py --config cfg.json --model_quat false --use_r2he false      # real baseline
    torchrun --nproc_per_node=2 training_SER.py --config cfg.json                     # DDP, global batch split in 2
Re-running the same command after a crash or Ctrl-C resumes from the last finished epoch. A folder that holds a
finished run, or a run of another config, is refused; --force retrains it.
"""
from __future__ import annotations

import functools
import sys

from models.registry import count_parameters, create_model, final_layer_prefix
from rhemo.data.store import SegmentStore
from rhemo.train import config, loaders as data, runtime as device, embeddings, health, loop, plots, provenance
from rhemo.train.environment import write_environment
from rhemo.train.predictions import write_predictions
from rhemo.train.tensorboard_log import log_figures
from rhemo.train.checkpoint import load_checkpoint, plain_state_dict
from rhemo.data.normalisation import compute_normalisation, pad_start
from rhemo.data.selection import select_rows


def network_kwargs(cfg: dict, num_classes: int) -> dict:
    """Constructor arguments of the SER network named in the config (registry names)."""
    kwargs = {"quat": cfg["model_quat"], "num_classes": num_classes, "in_channels": 4 if cfg["use_r2he"] else 1}
    if cfg["model_name"] in ("AlexNet", "VGGNet"):
        kwargs.update(hidden_size=cfg["model_hidden_size"], classifier_dropout=cfg["model_classifier_dropout"])
    if cfg["model_name"] == "VGGNet":
        kwargs["architecture"] = cfg["model_architecture"]
    return kwargs


def load_backbone(net, model_name: str, path: str) -> None:
    """Load every weight of a pretrained SER checkpoint except its final classification layer (strictly)."""
    state = plain_state_dict(load_checkpoint(path, map_location="cpu"))
    prefix = final_layer_prefix(model_name) + "."
    kept = {k: v for k, v in state.items() if not k.startswith(prefix)}
    own = net.state_dict()
    missing = [k for k in own if k not in kept and not k.startswith(prefix)]
    unexpected = [k for k in kept if k not in own]
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in kept.items()
              if k in own and v.shape != own[k].shape]
    if missing or unexpected or shapes:
        raise config.ConfigError(f"load_pretrained {path} does not fit {model_name} (final layer {prefix}* "
                                 f"excluded): missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes "
                                 f"{shapes[:5]}")
    net.load_state_dict(kept, strict=False)


def check_rhemo_leakage(cfg: dict, store, selection, runtime: device.Runtime):
    """The RH-emo test-leakage check (None without a loaded RH-emo); its lines are printed once."""
    if not cfg["use_r2he"] or cfg["r2he_model_path"] is None:
        return None
    check = provenance.check_test_overlap(cfg["r2he_model_path"], store, cfg, selection.rows["test"])
    if runtime.is_main:
        for line in check.lines:
            print(line, flush=True)
    return check


def write_figures(state: loop.FitState, results: dict, label_names: list[str], out, name: str, tensorboard: bool
                  ) -> None:
    """curves.png, confusion.png and confusion_utterance.png of the finished run, also in its TensorBoard log
    if asked (rank 0)."""
    plots.plot_ser_curves(state.history, out / "curves.png", f"{name} — {out.parent.name}/{out.name}",
                          state.best_epoch)
    which = "test" if results["test"] else "val"
    shown = results[which]
    for level, prefix, file_name in (("segments", "", "confusion.png"),
                                     ("utterances", "utt_", "confusion_utterance.png")):
        title = (f"{name}\n{which} {level}: WA {100 * shown[prefix + 'wa']:.1f}%, "
                 f"UA {100 * shown[prefix + 'ua']:.1f}% — {out.parent.name}/{out.name}")
        plots.plot_confusion(shown[prefix + "confusion"], label_names, out / file_name, title=title)
    log_figures(out, tensorboard, ["curves.png", "confusion.png", "confusion_utterance.png"], state.epochs)


def train(cfg: dict, runtime: device.Runtime, force: bool = False) -> None:
    """One run from the validated config: data, model, fit, final evaluation, run folder. ``force`` retrains
    in a folder holding a finished run or a run of another config (see loop.prepare_output_dir)."""
    device.seed_everything(cfg["seed"])
    out = loop.prepare_output_dir(cfg["output_dir"], cfg, "training_SER.py", force=force)
    if runtime.is_main:
        write_environment(out, runtime.device, runtime.world_size)

    # data: label view + split of the store, normalisation from the training split
    store = SegmentStore(cfg["store_path"])
    selection = select_rows(store, cfg)
    norm = compute_normalisation(store.predictors, selection.rows["train"], cfg["normalisation"],
                                      frames=pad_start(store.feature_settings),
                                      transform=cfg["input_transform"])
    task = loop.SERTask(len(selection.label_names), cfg["save_model_metric"], selection.label_names)
    rhemo_check = check_rhemo_leakage(cfg, store, selection, runtime)

    # front end: frozen RH-emo with cached embeddings, RH-emo run per batch, or the raw spectrogram
    rhemo = source = frontend = None
    if cfg["use_r2he"]:
        rhemo, source = embeddings.load_frontend(cfg["r2he_model_path"], runtime.device)
        health.check_loaded(rhemo, cfg["r2he_model_path"], cfg["input_transform"])
    per_batch_bn = cfg["r2he_bn_mode"] == "batch"
    if rhemo is not None and cfg["cache_embeddings"] and not cfg["finetune_r2he"] and not per_batch_bn:
        features = embeddings.cached_embeddings(store, rhemo, norm, runtime.device,
                                                progress=runtime.is_main and sys.stderr.isatty(),
                                                cache_dir=cfg["embeddings_cache"])
        datasets = data.make_datasets(features, selection, None)
        input_desc = "cached RH-emo embeddings (4x64x64)"
    else:
        datasets = data.make_datasets(store.predictors, selection, norm)
        if rhemo is not None:
            frontend = embeddings.RHemoEncoder(rhemo, trainable=cfg["finetune_r2he"], bn_mode=cfg["r2he_bn_mode"])
        mode = "fine-tuned" if cfg["finetune_r2he"] else "frozen"
        if per_batch_bn:
            mode += ", BatchNorm with batch statistics, no cache"
        input_desc = "spectrogram (1x512x128)" if rhemo is None else f"RH-emo embeddings per batch ({mode})"
    batch, workers = cfg["batch_size"], cfg["num_workers"]
    train_loader = data.make_train_loader(datasets["train"], batch, cfg["seed"], runtime, workers)
    eval_loaders = {s: data.make_eval_loader(ds, data.eval_batch_size(cfg), runtime, workers)
                    for s, ds in datasets.items()}

    # network (+ pretrained backbone), wrapped with its front end
    model_name = cfg["model_name"]
    model_kwargs = network_kwargs(cfg, len(selection.label_names))
    net = create_model(model_name, **model_kwargs)
    if cfg["load_pretrained"]:
        load_backbone(net, model_name, cfg["load_pretrained"])
    ser = embeddings.SERModel(net, frontend)
    model = loop.place_model(ser, runtime, cfg["channels_last"], cfg["sync_batchnorm"])
    if runtime.is_main:
        print(f"{model_name} {model_kwargs}: {count_parameters(net):,} trainable parameters; input: "
              f"{input_desc}; splits {selection.sizes()} segments; {runtime.world_size} process(es) on "
              f"{runtime.device}", flush=True)

    def checkpoint_payload(trained) -> dict:
        encoder = trained.frontend.rhemo if trained.frontend is not None else rhemo
        return {"model_name": model_name, "model_kwargs": model_kwargs,
                "state_dict": {k: v.detach().cpu() for k, v in trained.net.state_dict().items()},
                "label_names": selection.label_names, "label_view": cfg["label_view"],
                "dataset": store.dataset, "normalisation": norm.to_dict(),
                "feature_settings": store.feature_settings.to_dict(),
                "rhemo": None if encoder is None else embeddings.rhemo_record(encoder, source)}

    state = loop.fit(model, task, train_loader, eval_loaders["val"], cfg=cfg, runtime=runtime, output_dir=out,
                     payload_fn=checkpoint_payload, show_keys=["loss", "wa", "ua", "f1"])

    # final evaluation of the best epoch
    ser.load_state_dict(state.best_state)
    results = loop.evaluate_splits(ser, task, eval_loaders, runtime, cfg)
    segments = {split: values.pop("segments", None) for split, values in results.items()}
    if runtime.is_main:
        name = f"{model_name} {'quaternion' if cfg['model_quat'] else 'real'} on {input_desc}"
        write_figures(state, results, selection.label_names, out, name, cfg["tensorboard"])
        for split in ("val", "test"):
            if segments[split] is not None:
                rows = selection.rows[split]
                write_predictions(out / f"predictions_{split}.csv", segments[split]["logits"],
                                  segments[split]["target"], store.table.utterance_id[rows],
                                  store.table.speaker[rows], selection.label_names)
    loop.write_metrics(out, {"script": "ser", "model_name": model_name, "quat": cfg["model_quat"],
                             "params": count_parameters(net), "label_names": selection.label_names,
                             **(rhemo_check.record() if rhemo_check else {}), **results}, state)
    if runtime.is_main:
        for split, values in results.items():
            if values:
                print(f"{split}: loss {values['loss']:.4f}  WA {values['wa']:.4f}  UA {values['ua']:.4f}  "
                      f"F1 {values['f1']:.4f}  utterance WA {values['utt_wa']:.4f}")
        print(f"run folder: {out}")


def main(argv: list[str] | None = None) -> int:
    cfg, force = config.parse_command("ser", __doc__, argv)
    runtime = device.setup(cfg["use_cuda"], cfg["gpu_id"])
    return loop.run_guarded(functools.partial(train, force=force), cfg, runtime)


if __name__ == "__main__":
    sys.exit(main())
