"""Train a speech emotion recognition network: AlexNet, VGG or ResNet-50, real or quaternion.

Quaternion networks (model_quat true) read RH-emo's (4, 64, 64) embedding of each normalised 4-s spectrogram;
real baselines (model_quat false, use_r2he false) read the (1, 512, 128) spectrogram itself. RH-emo is loaded
from r2he_model_path and kept frozen in eval mode (the authors left it in train mode); its embeddings are then
computed once and cached next to the store (cache_embeddings). finetune_r2he trains its encoder end to end
with the network instead.

Metrics per split: loss, WA (accuracy), UA (mean per-class recall), macro F1 and the confusion matrix, at
segment level (the paper's) and at utterance level (utt_*, segment logits averaged per utterance).

Run folder (output_dir): config.json, log.csv, checkpoint.pt (best validation epoch; carries the label names,
normalisation, feature settings and the RH-emo encoder, so predict.py needs nothing else), last.pt (resume
state, removed at the end), curves.png, confusion.png, confusion_utterance.png, metrics.json (written last).

Examples:
    python training_SER.py --store_path data/stores/iemocap --output_dir results/manual/ser_qalexnet \\
        --model_name AlexNet --model_quat true --r2he_model_path models/pretrained_RHemo
    python training_SER.py --config cfg.json --model_quat false --use_r2he false      # real baseline
    torchrun --nproc_per_node=2 training_SER.py --config cfg.json                     # DDP, global batch split in 2
Re-running the same command after a crash or Ctrl-C resumes from the last finished epoch.
"""
from __future__ import annotations

import sys

from models.registry import count_parameters, create_model, final_layer_prefix
from rhemo.data.store import SegmentStore
from rhemo.engine import config, data, device, embeddings, health, loop, plots
from rhemo.engine.checkpoint import load_checkpoint, plain_state_dict


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


def train(cfg: dict, runtime: device.Runtime) -> None:
    """One run from the validated config: data, model, fit, final evaluation, run folder."""
    device.seed_everything(cfg["seed"])
    out = loop.prepare_output_dir(cfg["output_dir"], cfg, "training_SER.py")

    # data: label view + split of the store, normalisation from the training split
    store = SegmentStore(cfg["store_path"])
    selection = data.select_rows(store, cfg)
    norm = data.compute_normalisation(store.predictors, selection.rows["train"], cfg["normalisation"],
                                      transform=cfg["input_transform"])
    task = loop.SERTask(len(selection.label_names), cfg["save_model_metric"])

    # front end: frozen RH-emo with cached embeddings, RH-emo run per batch, or the raw spectrogram
    rhemo = source = frontend = None
    if cfg["use_r2he"]:
        rhemo, source = embeddings.load_frontend(cfg["r2he_model_path"], runtime.device)
        health.check_loaded(rhemo, cfg["r2he_model_path"], cfg["input_transform"])
    if rhemo is not None and cfg["cache_embeddings"] and not cfg["finetune_r2he"]:
        features = embeddings.cached_embeddings(store, rhemo, norm, runtime.device, progress=runtime.is_main)
        datasets = data.make_datasets(features, selection, None)
        input_desc = "cached RH-emo embeddings (4x64x64)"
    else:
        datasets = data.make_datasets(store.predictors, selection, norm)
        if rhemo is not None:
            frontend = embeddings.RHemoEncoder(rhemo, trainable=cfg["finetune_r2he"])
        mode = "fine-tuned" if cfg["finetune_r2he"] else "frozen"
        input_desc = "spectrogram (1x512x128)" if rhemo is None else f"RH-emo embeddings per batch ({mode})"
    batch, workers = cfg["batch_size"], cfg["num_workers"]
    train_loader = data.make_train_loader(datasets["train"], batch, cfg["seed"], runtime, workers)
    eval_loaders = {s: data.make_eval_loader(ds, batch, runtime, workers) for s, ds in datasets.items()}

    # network (+ pretrained backbone), wrapped with its front end
    model_name = cfg["model_name"]
    model_kwargs = network_kwargs(cfg, len(selection.label_names))
    net = create_model(model_name, **model_kwargs)
    if cfg["load_pretrained"]:
        load_backbone(net, model_name, cfg["load_pretrained"])
    ser = embeddings.SERModel(net, frontend)
    model = loop.place_model(ser, runtime, cfg["channels_last"])
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
    if runtime.is_main:
        metric = "wa" if task.monitor_key == "loss" else task.monitor_key
        plots.plot_curves(state.history, "loss", metric, out / "curves.png", state.best_epoch,
                          title=f"{model_name} {'quaternion' if cfg['model_quat'] else 'real'} ({out.name})")
        shown = results["test"] or results["val"]
        which = "test" if results["test"] else "val"
        plots.plot_confusion(shown["confusion"], selection.label_names, out / "confusion.png",
                             title=f"{which}, segments")
        plots.plot_confusion(shown["utt_confusion"], selection.label_names, out / "confusion_utterance.png",
                             title=f"{which}, utterances")
    loop.write_metrics(out, {"script": "ser", "model_name": model_name, "quat": cfg["model_quat"],
                             "params": count_parameters(net), "label_names": selection.label_names,
                             **results}, state)
    if runtime.is_main:
        for split, values in results.items():
            if values:
                print(f"{split}: loss {values['loss']:.4f}  WA {values['wa']:.4f}  UA {values['ua']:.4f}  "
                      f"F1 {values['f1']:.4f}  utterance WA {values['utt_wa']:.4f}")
        print(f"run folder: {out}")


def main(argv: list[str] | None = None) -> int:
    cfg = config.parse_args("ser", __doc__, argv)
    runtime = device.setup(cfg["use_cuda"], cfg["gpu_id"])
    return loop.run_guarded(train, cfg, runtime)


if __name__ == "__main__":
    sys.exit(main())
