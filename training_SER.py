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

import sys

from models.registry import count_parameters, create_model, final_layer_prefix
from rhemo.train import config, embeddings, health, loop, plots, provenance, recipe, runfolder, runtime
from rhemo.train.checkpoint import load_checkpoint, plain_state_dict, state_dict_mismatch
from rhemo.train.predictions import write_predictions
from rhemo.train.tensorboard_log import log_figures


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
    mismatch = state_dict_mismatch(net.state_dict(), state, ignored_prefix=prefix)
    if mismatch:
        raise config.ConfigError(f"load_pretrained {path} does not fit {model_name} (final layer {prefix}* "
                                 f"excluded): {mismatch}")
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith(prefix)}, strict=False)


def check_rhemo_leakage(cfg: dict, data: recipe.RunData):
    """The RH-emo test-leakage check (None without a loaded RH-emo); its lines are printed once."""
    if not cfg["use_r2he"] or cfg["r2he_model_path"] is None:
        return None
    check = provenance.check_test_overlap(cfg["r2he_model_path"], data.store, cfg, data.selection.rows["test"])
    for line in check.lines:
        recipe.announce(line)
    return check


def ser_inputs(cfg: dict, data: recipe.RunData, process: runtime.Runtime):
    """What the SER network reads: (datasets, RH-emo front end run per batch or None, the checkpoint's 'rhemo'
    entry of an RH-emo whose embeddings are cached or None, description for the logs). Cached embeddings of a
    frozen RH-emo, RH-emo run per batch (fine-tuned, or BatchNorm with batch statistics), or the spectrogram."""
    rhemo = source = None
    if cfg["use_r2he"]:
        rhemo, source = embeddings.load_frontend(cfg["r2he_model_path"], process.device)
        health.check_loaded(rhemo, cfg["r2he_model_path"], cfg["input_transform"])
    per_batch_bn = cfg["r2he_bn_mode"] == "batch"
    if rhemo is not None and cfg["cache_embeddings"] and not cfg["finetune_r2he"] and not per_batch_bn:
        features = embeddings.cached_embeddings(data.store, rhemo, data.norm, process.device,
                                                progress=runtime.is_main_process() and sys.stderr.isatty(),
                                                cache_dir=cfg["embeddings_cache"])
        return (data.datasets(features), None, embeddings.rhemo_record(rhemo, source),
                "cached RH-emo embeddings (4x64x64)")
    datasets = data.datasets()
    if rhemo is None:
        return datasets, None, None, "spectrogram (1x512x128)"
    frontend = embeddings.RHemoEncoder(rhemo, trainable=cfg["finetune_r2he"], bn_mode=cfg["r2he_bn_mode"],
                                       source=source)
    mode = "fine-tuned" if cfg["finetune_r2he"] else "frozen"
    if per_batch_bn:
        mode += ", BatchNorm with batch statistics, no cache"
    return datasets, frontend, None, f"RH-emo embeddings per batch ({mode})"


def write_outputs(state: loop.FitState, results: dict, segments: dict, data: recipe.RunData, out, name: str,
                  tensorboard: bool) -> None:
    """curves.png, confusion.png, confusion_utterance.png (also in the TensorBoard log if asked) and the
    predictions CSVs of the finished run (rank 0)."""
    plots.plot_ser_curves(state.history, out / runfolder.CURVES_FILE, f"{name} — {out.parent.name}/{out.name}",
                          state.best_epoch)
    which = "test" if results["test"] else "val"
    shown = results[which]
    for level, prefix, file_name in (("segments", "", runfolder.CONFUSION_FILE),
                                     ("utterances", "utt_", runfolder.CONFUSION_UTTERANCE_FILE)):
        title = (f"{name}\n{which} {level}: WA {100 * shown[prefix + 'wa']:.1f}%, "
                 f"UA {100 * shown[prefix + 'ua']:.1f}% — {out.parent.name}/{out.name}")
        plots.plot_confusion(shown[prefix + "confusion"], data.label_names, out / file_name, title=title)
    log_figures(out, tensorboard, [runfolder.CURVES_FILE, runfolder.CONFUSION_FILE,
                                   runfolder.CONFUSION_UTTERANCE_FILE], state.epochs)
    table = data.store.table
    for split in ("val", "test"):
        if segments[split] is not None:
            rows = data.selection.rows[split]
            write_predictions(out / runfolder.predictions_file(split), segments[split]["logits"],
                              segments[split]["target"], table.utterance_id[rows], table.speaker[rows],
                              data.label_names)


def result_lines(results: dict) -> list[str]:
    return [f"{split}: loss {values['loss']:.4f}  WA {values['wa']:.4f}  UA {values['ua']:.4f}  "
            f"F1 {values['f1']:.4f}  utterance WA {values['utt_wa']:.4f}" for split, values in results.items() if values]


def train(cfg: dict, process: runtime.Runtime, force: bool = False) -> None:
    """One run from the validated config: data, model, fit, final evaluation, run folder. ``force`` retrains
    in a folder holding a finished run or a run of another config (see loop.prepare_output_dir)."""
    out = recipe.start(cfg, "training_SER.py", force, process)
    data = recipe.RunData.load(cfg)
    task = loop.SERTask(len(data.label_names), cfg["save_model_metric"], data.label_names)
    rhemo_check = check_rhemo_leakage(cfg, data)
    datasets, frontend, cached_rhemo, input_desc = ser_inputs(cfg, data, process)
    loaders = recipe.Loaders.make(datasets, cfg, process)
    model_name, model_kwargs = cfg["model_name"], network_kwargs(cfg, len(data.label_names))
    net = create_model(model_name, **model_kwargs)
    if cfg["load_pretrained"]:
        load_backbone(net, model_name, cfg["load_pretrained"])
    ser = embeddings.SERModel(net, frontend)
    model = loop.place_model(ser, process, loop.use_channels_last(cfg, process.device),
                             cfg["sync_batchnorm"])
    recipe.announce(f"{model_name} {model_kwargs}: {count_parameters(net):,} trainable parameters; input: "
                    f"{input_desc}; splits {data.selection.sizes()} segments; {process.world_size} "
                    f"process(es) on {process.device}")
    checkpoint = data.checkpoint(cfg, model_name, model_kwargs, rhemo=cached_rhemo)
    state, results = recipe.train_best(model, ser, task, loaders, cfg, process, out, checkpoint,
                                       ["loss", "wa", "ua", "f1"])
    segments = {split: values.pop("segments", None) for split, values in results.items()}
    if runtime.is_main_process():
        name = f"{model_name} {'quaternion' if cfg['model_quat'] else 'real'} on {input_desc}"
        write_outputs(state, results, segments, data, out, name, cfg["tensorboard"])
    recipe.finish(out, {**data.record("ser", model_name, cfg, net), **(rhemo_check.record() if rhemo_check else {}),
                        **results}, state, result_lines(results))


def main(argv: list[str] | None = None) -> int:
    return recipe.run_command("ser", __doc__, train, argv)


if __name__ == "__main__":
    sys.exit(main())
