"""The one schema of every hyperparameter, shared by the training scripts, the launcher and the README.

A run's configuration is a flat JSON object. The same keys are accepted on the command line of
``training_RHemo.py`` / ``training_SER.py`` (``--key value``), in a JSON file given with ``--config``, and in
the numbered experiment files read by ``exp_instance.py``. Values are typed JSON: booleans are ``true`` /
``false``, lists are JSON lists, ``null`` means "not set". Nothing is ever evaluated as code.

Example:
    >>> cfg = validate({"learning_rate": 1e-3, "num_epochs": 3}, script="ser", source="example")
    >>> cfg["learning_rate"], cfg["batch_size"]
    (0.001, 20)
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.registry import RHEMO_MODEL
from models.registry import names as model_names
from rhemo.data.normalisation import INPUT_TRANSFORMS, NORMALISATIONS
from rhemo.data.splits import PROTOCOLS
from rhemo.data.views import VIEWS as LABEL_VIEWS
from rhemo.errors import InputError

SCRIPTS = ("rhemo", "ser")
SCRIPT_FILES = {"training_RHemo.py": "rhemo", "training_SER.py": "ser"}
#: save_model_metric → (metric key of the validation dict, 'min' | 'max'), per script: the values a script
#: accepts and what each one measures (rhemo.train.loop selects the best checkpoint with it).
MONITORS = {
    "rhemo": {"total_loss": ("total", "min"), "recon": ("recon", "min")},
    "ser": {"loss": ("loss", "min"), "acc": ("wa", "max"), "wa": ("wa", "max"), "ua": ("ua", "max"),
            "f1": ("f1", "max")},
}
SER_MODELS = model_names("ser")
RHEMO_MODELS = model_names("rhemo")


class ConfigError(InputError):
    """A configuration value is missing, unknown or of the wrong type; the message names source and key."""


@dataclass(frozen=True)
class Option:
    """One configuration key.

    ``kind`` is one of ``bool``, ``int``, ``float``, ``str``, ``path`` (a string path), ``floats`` (list of
    numbers), ``ints`` (non-empty list of distinct integers). ``default`` may be a dict keyed by script name when the two scripts differ. ``scripts`` lists the
    scripts that accept the key; ``"launcher"`` marks keys only ``exp_instance.py`` reads.
    """

    name: str
    kind: str
    default: Any
    help: str
    scripts: tuple[str, ...] = SCRIPTS
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    minimum: float | None = None

    def default_for(self, script: str) -> Any:
        if isinstance(self.default, dict):
            return self.default[script]
        return self.default


def _opt(name, kind, default, help, **kw) -> Option:
    return Option(name, kind, default, help, **kw)


_BOTH = SCRIPTS
_R = ("rhemo",)
_S = ("ser",)
_L = ("launcher",)

OPTIONS: dict[str, Option] = {o.name: o for o in [
    # launcher-only bookkeeping
    _opt("script", "str", None, "Training script of the run: training_RHemo.py or training_SER.py.",
         scripts=_L, choices=tuple(SCRIPT_FILES)),
    _opt("nproc", "int", 1, "Processes per run; >1 launches the run through torchrun (one per GPU, or gloo "
         "processes on CPU).", scripts=_L, minimum=1),
    # paper evaluation (issue 9): several seeds per run
    _opt("seeds", "ints", None, "Seeds of the run: each seed trains in its own folder <run>/seed<s>/fold<k> "
         "with 'seed' set to it; summary.json aggregates over seeds and folds. null: one training with 'seed'. "
         "exp_instance.py --seeds overrides it.", scripts=_L, nullable=True),
    _opt("comment_1", "str", "", "Free text copied to the spreadsheet.", scripts=_BOTH + _L),
    _opt("comment_2", "str", "", "Free text copied to the spreadsheet.", scripts=_BOTH + _L),
    # TensorBoard log (optional)
    _opt("tensorboard", "bool", False, "Also write a TensorBoard log to <output_dir>/tensorboard: the log.csv "
         "scalars per epoch and the run's figures (needs the optional tensorboard package)."),
    # where things are
    _opt("output_dir", "path", "results/manual", "Run folder: config.json, log.csv, checkpoint.pt, "
         "metrics.json and plots are written here. The launcher sets it."),
    _opt("store_path", "path", "data/stores/iemocap", "Segment store folder written by preprocessing.py "
         "(the folder holding predictors.npy and segments.csv)."),
    # data, labels, protocol
    _opt("label_view", "str", {"rhemo": "complete", "ser": "iemocap4"},
         "Which labels to train on: iemocap4 (neu/ang/hap/sad), iemocap4_exc (exc merged into hap), complete "
         "(every utterance; labels outside the 4 classes become 'other'), native (the corpus's own classes).",
         choices=LABEL_VIEWS),
    _opt("protocol", "str", "random", "random: utterance-level random split (the paper). speaker: "
         "speaker-independent folds (IEMOCAP: leave-one-session-out; others: leave-speakers-out).",
         choices=PROTOCOLS),
    _opt("split_fractions", "floats", [0.7, 0.2, 0.1], "Train/val/test fractions of utterances for the "
         "random protocol (the paper: 0.7/0.2/0.1 on IEMOCAP, 0.7/0.15/0.15 elsewhere). With the speaker "
         "protocol only the validation share of the training speakers is used."),
    _opt("num_folds", "int", 1, "Folds. The launcher runs every fold; a training script runs the one in "
         "'fold'.", minimum=1),
    _opt("fold", "int", 0, "Fold to run (0-based). The launcher sets it.", minimum=0),
    _opt("train_fraction", "float", 1.0, "Keep only this fraction of the training utterances (ablation on "
         "reduced data).", minimum=0.0),
    _opt("normalisation", "str", "max", "max: divide by the training-split maximum (the authors' way). "
         "zscore: subtract the training mean, divide by the training std, both over the real STFT frames; the "
         "zero rows padding a segment to time_frames stay 0 (the authors' '0mean', used by their real "
         "baselines).", choices=NORMALISATIONS),
    # reproducibility and hardware
    _opt("seed", "int", 1, "Seed of splits, initialisation and batch order."),
    _opt("gpu_id", "int", 0, "CUDA device to use when CUDA is available; otherwise the run uses the CPU and "
         "says so.", minimum=0),
    _opt("use_cuda", "bool", True, "Use CUDA when it is available."),
    _opt("amp", "bool", False, "bfloat16 autocast for the forward pass."),
    _opt("channels_last", "bool", {"rhemo": None, "ser": False}, "channels_last memory format for the "
         "convolutional nets. null (RH-emo's default): on when the run is on the CPU, where it makes RH-emo's "
         "thin convolutions about 1.5x faster (bench/bench_training.py), off on CUDA; it changes only the float "
         "rounding.", nullable=True),
    # speed and GPU options (issue 14)
    _opt("eval_batch_size", "int", None, "Batch size of the evaluation passes (validation, final metrics; no "
         "gradients are kept, so a larger batch fits). null: 2 x batch_size.", nullable=True, minimum=1),
    _opt("cudnn_benchmark", "bool", False, "Let cuDNN autotune its convolution algorithms on CUDA (faster; "
         "no longer bit-reproducible)."),
    _opt("num_workers", "int", 0, "DataLoader worker processes.", minimum=0),
    # multi-process training (rhemo/train/loaders.py, loop.place_model)
    _opt("sync_batchnorm", "bool", False, "Under torchrun, compute training-mode BatchNorm statistics over the "
         "global batch (torch.nn.SyncBatchNorm) instead of per process. The quaternion BatchNorm "
         "(QuaternionBatchNorm2d) stays per process."),
    # optimisation
    _opt("num_epochs", "int", {"rhemo": 200000, "ser": 500}, "Maximum number of epochs.", minimum=1),
    _opt("batch_size", "int", {"rhemo": 50, "ser": 20}, "Global batch size (split across processes under "
         "torchrun).", minimum=1),
    _opt("learning_rate", "float", {"rhemo": 1e-3, "ser": 1e-5}, "Adam learning rate.", minimum=0.0),
    _opt("regularization_lambda", "float", 0.0, "Adam weight decay (L2).", minimum=0.0),
    _opt("early_stopping", "bool", True, "Stop early when the monitored validation metric stops improving "
         "(see early_stopping_rule)."),
    _opt("patience", "int", {"rhemo": 100, "ser": 20}, "Early-stopping patience in epochs.", minimum=1),
    # authors' protocol switches
    _opt("early_stopping_rule", "str", "authors", "authors: from 0-based epoch patience+1 on, stop when the oldest "
         "of the last patience-1 validation values is their best (ties included; patience 1 looks at the whole "
         "history, patience 2 stops at epoch index 3). patience: stop after 'patience' epochs without a strict "
         "improvement.", choices=("authors", "patience")),
    _opt("loss_averaging", "str", "batch", "How validation/test losses that select the checkpoint and drive early "
         "stopping are averaged: batch = mean of per-batch means over batches of batch_size in store order (the "
         "authors); sample = mean over segments. Both are reported.", choices=("batch", "sample")),
    _opt("loss_recon_div4", "bool", False, "true: the reconstruction is the decoder's channel sum divided by 4 "
         "whatever the channel count (the authors; shrinks the real decoder's output by 4, for their real RH-emo "
         "ablation). false: mean over the channels. Identical for the quaternion decoder.", scripts=_R),
    _opt("r2he_bn_mode", "str", "eval", "RH-emo's encoder BatchNorms during SER. eval: running statistics, "
         "frozen, embeddings cached (recommended). batch: each batch's own statistics in training, validation "
         "and test, embeddings computed per batch, no cache (the authors never called eval()).", scripts=_S,
         choices=("eval", "batch")),
    _opt("allow_rhemo_test_overlap", "bool", False, "Run even when SER test utterances were in the training "
         "split of a labelled (loss_beta > 0) stage of the RH-emo in r2he_model_path; false refuses such a "
         "leaking run.", scripts=_S),
    _opt("save_model_metric", "str", {"rhemo": "total_loss", "ser": "loss"},
         "Validation metric that selects the best checkpoint and drives early stopping. RH-emo: total_loss "
         "or recon. SER: loss, acc (= wa), wa, ua or f1.",
         choices=tuple(monitor for script in SCRIPTS for monitor in MONITORS[script])),
    _opt("load_pretrained", "path", None, "Checkpoint to start from. RH-emo: e.g. the stage-1 model. SER: a "
         "network trained elsewhere; its final classification layer is dropped.", nullable=True),
    # models
    _opt("model_name", "str", {"rhemo": RHEMO_MODEL, "ser": "VGGNet"},
         "Model from the registry in models/.", choices=RHEMO_MODELS + SER_MODELS),
    _opt("model_quat", "bool", True, "RH-emo: quaternion decoder. SER: quaternion network on RH-emo "
         "embeddings (false: real network on the spectrogram)."),
    _opt("model_hidden_size", "int", 4096, "Hidden width of the classifier MLPs (RH-emo heads; AlexNet and "
         "VGG classifiers).", minimum=4),
    _opt("model_classifier_dropout", "float", 0.5, "Dropout in the classifier MLPs.", minimum=0.0),
    _opt("model_architecture", "str", "VGG16", "VGG depth for VGGNet.", scripts=_S,
         choices=("VGG11", "VGG13", "VGG16", "VGG19")),
    # RH-emo loss
    _opt("loss_alpha", "float", 1.0, "Weight of the reconstruction BCE.", scripts=_R, minimum=0.0),
    _opt("loss_beta", "float", 0.0, "Weight of all emotion terms (stage 1: 0; stage 2: 0.01).", scripts=_R,
         minimum=0.0),
    _opt("loss_beta_class", "float", 1.0, "Weight of the discrete-emotion cross-entropy inside the emotion "
         "term.", scripts=_R, minimum=0.0),
    _opt("loss_beta_vad", "float", 1.0, "Weight of the valence+arousal+dominance BCEs inside the emotion "
         "term (stage 2: 100).", scripts=_R, minimum=0.0),
    _opt("emo_loss_warmup_epochs", "int", 0, "Scale the emotion weights by epoch/W during the first W "
         "epochs (0: off).", scripts=_R, minimum=0),
    _opt("emo_loss_holes", "int", 0, "Zero the emotion weights every h-th epoch (0: off).", scripts=_R,
         minimum=0),
    # RH-emo health remedies (issue 12; beyond the paper: the defaults are the authors' behaviour)
    _opt("input_transform", "str", "none", "Beyond the paper. Transform of the magnitudes before the "
         "normalisation: none (the authors'), or log1p: x -> log1p(x / training mean), which lifts the "
         "max-normalised input from ~1e-3 to ~0.1 so that Adam's steps on the encoder biases no longer kill "
         "its ReLUs. Recorded with the normalisation in every checkpoint; training_SER.py refuses an RH-emo "
         "trained with another transform, and predict.py applies the recorded one.",
         choices=INPUT_TRANSFORMS),
    _opt("encoder_bias_init", "float", 0.0, "Beyond the paper. Initial value of RH-emo's encoder conv "
         "biases (the authors: 0). 0.1 keeps every encoder ReLU active at the start, so Adam's ~lr-sized bias "
         "steps cannot silence a channel in the first epochs (see README, RH-emo health).", scripts=_R),
    _opt("decoder_bias_init", "str", "zero", "Beyond the paper. zero (the authors'), or data_mean: t_conv3's "
         "biases start at logit(training mean), so the reconstruction starts at the best constant instead of "
         "0.5 and the first steps do not push every unit down.", scripts=_R, choices=("zero", "data_mean")),
    # SER front end
    _opt("use_r2he", "bool", True, "Feed the network RH-emo embeddings (4x64x64) instead of the raw "
         "spectrogram. Must be true for quaternion networks.", scripts=_S),
    _opt("r2he_model_path", "path", "models/pretrained_RHemo", "RH-emo checkpoint: the authors' "
         "pretrained_RHemo or a checkpoint.pt from training_RHemo.py. null: randomly initialised RH-emo "
         "(ablation).", scripts=_S, nullable=True),
    _opt("finetune_r2he", "bool", False, "Train RH-emo's encoder end to end with the SER network instead "
         "of keeping it frozen.", scripts=_S),
    # embedding cache location (issue 11: read-only stores)
    _opt("embeddings_cache", "path", None, "Folder for the frozen RH-emo embedding cache instead of "
         "<store>/embeddings, e.g. when the store is read-only. null: next to the store; when no cache can be "
         "written the embeddings are computed in memory.", scripts=_S, nullable=True),
    _opt("cache_embeddings", "bool", True, "Compute the frozen RH-emo embeddings once per store and "
         "checkpoint and reuse them (ignored when finetune_r2he is true).", scripts=_S),
]}


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _type_name(option: Option) -> str:
    names = {"bool": "a boolean (true/false)", "int": "an integer", "float": "a number", "str": "a string",
             "path": "a path string", "floats": "a list of numbers",
             "ints": "a non-empty list of distinct integers"}
    text = names[option.kind]
    if option.nullable:
        text += " or null"
    if option.choices:
        text += " among " + ", ".join(map(str, option.choices))
    return text


def coerce(option: Option, value: Any, source: str) -> Any:
    """Check one JSON value against its option and return it normalised (ints become floats where needed)."""

    def fail(detail: str = "") -> ConfigError:
        return ConfigError(f"{source}: key '{option.name}' expects {_type_name(option)}, got {value!r}"
                           + (f" ({detail})" if detail else ""))

    if value is None:
        if option.nullable:
            return None
        raise fail()
    kind = option.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise fail("write true or false without quotes" if isinstance(value, str) else "")
        result: Any = value
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        result = value
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        result = float(value)
    elif kind in ("str", "path"):
        if not isinstance(value, str):
            raise fail()
        result = value
    elif kind == "floats":
        if not isinstance(value, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise fail()
        result = [float(v) for v in value]
    elif kind == "ints":
        if not isinstance(value, list) or not value or len(set(value)) != len(value) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise fail()
        result = list(value)
    else:  # pragma: no cover - schema error
        raise AssertionError(kind)
    if option.choices and result not in option.choices:
        raise fail()
    if kind == "float" and not math.isfinite(result):
        raise fail("must be a finite number")
    if option.minimum is not None and kind in ("int", "float") and result < option.minimum:
        raise fail(f"must be >= {option.minimum}")
    return result


def options_for(script: str) -> dict[str, Option]:
    """The options accepted by ``script`` ('rhemo', 'ser' or 'launcher')."""
    return {name: o for name, o in OPTIONS.items() if script in o.scripts}


def defaults(script: str) -> dict[str, Any]:
    """Every key of ``script`` with its default value."""
    return {name: o.default_for(script) for name, o in options_for(script).items()}


def validate(params: dict[str, Any], *, script: str, source: str, partial: bool = False) -> dict[str, Any]:
    """Type-check ``params`` for ``script`` and fill defaults.

    Args:
        params: a flat mapping key → JSON value.
        script: 'rhemo' or 'ser'.
        source: where the values come from (a file name, 'command line'), used in error messages.
        partial: only check the given keys; do not fill defaults.

    Raises:
        ConfigError: on an unknown key or a value of the wrong type, naming ``source`` and the key.
    """
    if script not in SCRIPTS:
        raise ConfigError(f"{source}: unknown script kind {script!r}; expected one of {SCRIPTS}")
    accepted = options_for(script)
    unknown = [k for k in params if k not in accepted]
    if unknown:
        hint = ", ".join(sorted(unknown))
        raise ConfigError(f"{source}: unknown key(s) {hint} for {script_file(script)}; see the README's "
                          f"configuration table for the accepted keys")
    result = {} if partial else defaults(script)
    for key, value in params.items():
        result[key] = coerce(accepted[key], value, source)
    if not partial:
        _check_consistency(result, script, source)
        _check_training_values(result, script, source)
    return result


def _check_training_values(cfg: dict[str, Any], script: str, source: str) -> None:
    """Values that type-check but cannot train: dropout outside [0, 1), a monitor the script does not have."""
    if not 0.0 <= cfg["model_classifier_dropout"] < 1.0:
        raise ConfigError(f"{source}: key 'model_classifier_dropout' must be in [0, 1) (a drop probability), got "
                          f"{cfg['model_classifier_dropout']}")
    allowed = tuple(MONITORS[script])
    if cfg["save_model_metric"] not in allowed:
        raise ConfigError(f"{source}: key 'save_model_metric' is {cfg['save_model_metric']!r}, which "
                          f"{script_file(script)} does not compute; expected one of {', '.join(allowed)}")


def _check_consistency(cfg: dict[str, Any], script: str, source: str) -> None:
    if script == "rhemo":
        if cfg["model_name"] not in RHEMO_MODELS:
            raise ConfigError(f"{source}: key 'model_name' must be one of {RHEMO_MODELS} for training_RHemo.py, "
                              f"got {cfg['model_name']!r}")
        if cfg["normalisation"] != "max":
            raise ConfigError(f"{source}: key 'normalisation' must be 'max' for training_RHemo.py: RH-emo "
                              f"reconstructs its input through a sigmoid with a BCE loss, which needs inputs in "
                              f"[0, 1]")
    if script == "ser":
        if cfg["model_name"] not in SER_MODELS:
            raise ConfigError(f"{source}: key 'model_name' must be one of {SER_MODELS} for training_SER.py, "
                              f"got {cfg['model_name']!r}")
        if cfg["model_quat"] and not cfg["use_r2he"]:
            raise ConfigError(f"{source}: a quaternion network (model_quat true) needs use_r2he true: it reads "
                              f"the 4-channel RH-emo embedding")
    fractions = cfg["split_fractions"]
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"{source}: key 'split_fractions' expects three non-negative numbers summing to 1, "
                          f"got {fractions}")
    if cfg["fold"] >= cfg["num_folds"]:
        raise ConfigError(f"{source}: key 'fold' is {cfg['fold']} but num_folds is {cfg['num_folds']}")
    if not 0.0 < cfg["train_fraction"] <= 1.0:
        raise ConfigError(f"{source}: key 'train_fraction' must be in (0, 1], got {cfg['train_fraction']}")


def script_file(script: str) -> str:
    return {v: k for k, v in SCRIPT_FILES.items()}[script]


def _parse_cli_value(option: Option, text: str) -> Any:
    """Turn one command-line string into a JSON value for ``option`` (never evaluated as code)."""
    if text.lower() in ("null", "none") and option.nullable:
        return None
    if option.kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise argparse.ArgumentTypeError(f"--{option.name} expects true or false, got {text!r}")
    if option.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{option.name} expects an integer, got {text!r}") from None
    if option.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{option.name} expects a number, got {text!r}") from None
    if option.kind == "floats":
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise argparse.ArgumentTypeError(
                f"--{option.name} expects a JSON list such as [0.7,0.2,0.1], got {text!r}") from None
        return value
    return text


#: The --help text of a key shared by both scripts whose schema text describes both (the README table keeps
#: the schema text); each script's help then speaks only of itself.
SCRIPT_HELP = {
    ("model_name", "rhemo"): "RH-emo model (the registry in models/ has one).",
    ("model_name", "ser"): "SER network from the registry in models/.",
    ("model_quat", "rhemo"): "Quaternion decoder (false: a real decoder with one output channel).",
    ("model_quat", "ser"): "true: quaternion network on the RH-emo embeddings (needs use_r2he true). false: real "
                           "network, on the spectrogram when use_r2he is false, or on the RH-emo embeddings when "
                           "use_r2he is true.",
    ("model_hidden_size", "rhemo"): "Hidden width of the emotion heads' MLPs.",
    ("model_hidden_size", "ser"): "Hidden width of the AlexNet and VGG classifier MLPs (resnet50 has none).",
    ("save_model_metric", "rhemo"): "Validation loss that selects the best checkpoint and drives early stopping.",
    ("save_model_metric", "ser"): "Validation metric that selects the best checkpoint and drives early stopping "
                                  "(acc is wa).",
    ("load_pretrained", "rhemo"): "RH-emo checkpoint to start from, e.g. the stage-1 model (a checkpoint.pt of "
                                  "training_RHemo.py or the authors' file).",
    ("load_pretrained", "ser"): "SER checkpoint trained elsewhere to start from; its final classification layer "
                                "is dropped.",
}
#: Choices of a shared key that differ per script.
SCRIPT_CHOICES = {("model_name", "rhemo"): RHEMO_MODELS, ("model_name", "ser"): SER_MODELS,
                  **{("save_model_metric", script): tuple(MONITORS[script]) for script in SCRIPTS}}


def build_parser(script: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with ``--config FILE`` plus one ``--key value`` flag per option of ``script``.

    The description (the script's docstring) keeps its line breaks; each flag's help is the text and the
    choices for ``script`` (:data:`SCRIPT_HELP`, :data:`SCRIPT_CHOICES`).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file with a flat object of options; command-line flags override it.")
    parser.add_argument("--force", action="store_true",
                        help="Retrain in an output_dir that holds a finished run or a run of another config "
                             "(the old metrics.json is kept as metrics.previous.json).")
    for option in options_for(script).values():
        choices = SCRIPT_CHOICES.get((option.name, script), option.choices)
        metavar = "{" + ",".join(map(str, choices)) + "}" if choices else option.kind.upper()
        text = SCRIPT_HELP.get((option.name, script), option.help)
        parser.add_argument(f"--{option.name}", dest=option.name, default=argparse.SUPPRESS,
                            type=lambda text, o=option: _parse_cli_value(o, text), metavar=metavar,
                            help=f"{text} (default: {json.dumps(option.default_for(script))})")
    return parser


def parse_json_object(text: str, source: str, expected: str = "a JSON object") -> dict[str, Any]:
    """Parse ``text`` as a JSON object (never evaluated as code); bad JSON or another JSON type raises
    ConfigError naming ``source`` and saying what was ``expected``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected {expected}, got {type(data).__name__}")
    return data


def load_json_object(path: Path) -> dict[str, Any]:
    """Read a JSON object from ``path``; a missing file or bad JSON raises ConfigError naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return parse_json_object(text, str(path), "a JSON object at the top level")


def parse_args(script: str, description: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Parse a training script's command line into a validated, complete config dict.

    Precedence: defaults < ``--config`` file < explicit flags.
    """
    return parse_command(script, description, argv)[0]


def parse_command(script: str, description: str, argv: list[str] | None = None) -> tuple[dict[str, Any], bool]:
    """:func:`parse_args` plus the command-only ``--force`` flag: (config, force)."""
    parser = build_parser(script, description)
    namespace = vars(parser.parse_args(argv))
    config_path = namespace.pop("config")
    force = namespace.pop("force")
    params: dict[str, Any] = {}
    try:
        if config_path is not None:
            file_params = load_json_object(config_path)
            # the launcher's resolved config.json also carries launcher-only keys; they are not ours to check
            launcher_only = set(options_for("launcher")) - set(options_for(script))
            params.update({k: v for k, v in file_params.items() if k not in launcher_only})
        params.update(namespace)
        return validate(params, script=script, source=str(config_path) if config_path else "command line"), force
    except ConfigError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def markdown_table() -> str:
    """The README's configuration table, generated from the schema so that the two never disagree."""
    rows = ["| key | used by | type | default | meaning |", "|---|---|---|---|---|"]
    for option in OPTIONS.values():
        used = ", ".join({"rhemo": "RH-emo", "ser": "SER", "launcher": "launcher"}[s] for s in option.scripts)
        if isinstance(option.default, dict):
            default = ", ".join(f"{k}: {json.dumps(v)}" for k, v in option.default.items())
        else:
            default = json.dumps(option.default)
        kind = option.kind + (" or null" if option.nullable else "")
        rows.append(f"| `{option.name}` | {used} | {kind} | `{default}` | {option.help} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m rhemo.train.config > table.md (regenerates the README table)
    print(markdown_table())
