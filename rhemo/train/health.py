"""Is an RH-emo alive? Dead encoder channels, BatchNorm statistics, embedding statistics, trivial baselines.

RH-emo's encoder is conv → ReLU → pool → BN (twice), then conv3 → ReLU → pool = the (N, 4, 64, 64) latent.
A channel whose ReLU output is 0 for every input is *dead*: it gets no gradient, never recovers, and its
BatchNorm output is a constant. This module measures, for a trained or training RH-emo:

* **dead channels** per encoder layer (``conv1_bn`` and ``conv2_bn``: the post-ReLU-pool input of that BN;
  ``conv3``: the latent), by running the encoder in eval mode on a probe set (:func:`probe_encoder`);
* the **smallest BN running variance** of each encoder BN. Below the BN eps (1e-5) BatchNorm divides by about
  √eps in eval mode and amplifies whatever leaks through about 300×;
* **embedding statistics** per quaternion component r, i, j, k: mean, std, fraction of exact zeros, and the
  spread between utterances (std over utterances of the per-utterance mean embedding, averaged over the 64×64
  positions);
* the validation **reconstruction BCE** beside the BCE of two trivial predictors (:func:`trivial_bce`): the best
  constant (the training mean) and the per-bin training mean spectrogram (512×128).

:func:`warning_line` turns a report into one line (None when healthy). :func:`checkpoint_warning` is the cheap
check of a *loaded* RH-emo (training_SER.py, the authors' file): from the BN buffers alone, a channel whose
running mean and variance have both decayed to ~0 saw (almost) only zeros in its last training steps.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from rhemo.train.loaders import collate_batch

__all__ = ["LAYERS", "COMPONENTS", "BN_EPS", "probe_encoder", "bn_statistics", "trivial_bce", "probe_rows",
           "bin_mean", "health_report", "warning_line", "EpochMonitor", "check_loaded",
           "init_encoder_biases", "init_decoder_bias", "summary_line", "log_columns", "checkpoint_warning"]

#: Encoder layers checked for dead channels: the inputs of the two BNs, and the latent.
LAYERS = ("conv1_bn", "conv2_bn", "conv3")
BN_LAYERS = ("conv1_bn", "conv2_bn")
COMPONENTS = ("r", "i", "j", "k")
#: torch's BatchNorm eps: a running variance below it makes eval-mode BN an amplifier.
BN_EPS = 1e-5
#: Buffers-only criterion: running mean and running variance both below these after training.
DEAD_RUNNING_MEAN = 1e-6
DEAD_RUNNING_VAR = 1e-3
#: Largest probe: evenly spaced training rows.
PROBE_ROWS = 128


def probe_rows(n: int, limit: int = PROBE_ROWS) -> list[int]:
    """``limit`` evenly spaced indices of ``range(n)`` (all of them when n ≤ limit)."""
    return list(range(n)) if n <= limit else np.linspace(0, n - 1, limit).round().astype(int).tolist()


@torch.no_grad()
def probe_encoder(net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  device: torch.device | str = "cpu") -> dict[str, Any]:
    """Dead channels and embedding statistics of RH-emo ``net`` (eval mode) over ``batches``.

    Args:
        net: a ``simple_autoencoder_2_vad`` (its train/eval mode is restored afterwards).
        batches: (x (N, 1, 512, 128) normalised input, groups (N,) int utterance codes).

    Returns {'dead': {layer: [channel, ...]}, 'channels': {layer: C}, 'embedding': {component: {mean, std,
    zero_fraction, utterance_spread}}, 'rows': probed rows}.
    """
    peaks: dict[str, torch.Tensor] = {}
    captured: dict[str, torch.Tensor] = {}
    hooks = [getattr(net, name).register_forward_pre_hook(
        lambda _module, inputs, name=name: captured.__setitem__(name, inputs[0])) for name in BN_LAYERS]
    was_training = net.training
    net.eval()
    total, total_sq, zeros, rows = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64), \
        torch.zeros(4, dtype=torch.float64), 0
    utterance_sums: dict[int, torch.Tensor] = {}
    utterance_counts: dict[int, int] = {}
    try:
        for x, groups in batches:
            latent = net.encode(x.to(device)).double().cpu()  # (N, 4, 64, 64)
            captured["conv3"] = latent
            for name in LAYERS:
                peak = captured[name].amax(dim=(0, 2, 3)).double().cpu()
                peaks[name] = peak if name not in peaks else torch.maximum(peaks[name], peak)
            total += latent.sum(dim=(0, 2, 3))
            total_sq += (latent ** 2).sum(dim=(0, 2, 3))
            zeros += (latent == 0).sum(dim=(0, 2, 3)).double()
            rows += latent.shape[0]
            for row, group in zip(latent, groups.tolist()):
                utterance_sums[group] = utterance_sums.get(group, 0) + row
                utterance_counts[group] = utterance_counts.get(group, 0) + 1
    finally:
        for hook in hooks:
            hook.remove()
        net.train(was_training)
    if rows == 0:
        raise ValueError("probe_encoder: the probe set is empty")
    per_component = rows * latent.shape[2] * latent.shape[3]
    mean = total / per_component
    std = (total_sq / per_component - mean ** 2).clamp_min(0).sqrt()
    utterances = torch.stack([utterance_sums[g] / utterance_counts[g] for g in sorted(utterance_sums)])
    spread = utterances.std(dim=0, unbiased=False).mean(dim=(1, 2)) if len(utterances) > 1 else torch.zeros(4)
    embedding = {c: {"mean": float(mean[i]), "std": float(std[i]), "zero_fraction": float(zeros[i] / per_component),
                     "utterance_spread": float(spread[i])} for i, c in enumerate(COMPONENTS)}
    return {"dead": {name: [int(c) for c in torch.nonzero(peaks[name] <= 0).flatten()] for name in LAYERS},
            "channels": {name: int(peaks[name].numel()) for name in LAYERS}, "embedding": embedding, "rows": rows}


def bn_statistics(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """From an RH-emo state_dict alone: per encoder BN its smallest running variance, the channels whose running
    mean and variance have both decayed to ~0 ('dead_by_stats'), and whether the statistics were ever updated."""
    out: dict[str, Any] = {}
    for name in BN_LAYERS:
        mean = state_dict[f"{name}.running_mean"].double().cpu()
        var = state_dict[f"{name}.running_var"].double().cpu()
        tracked = state_dict.get(f"{name}.num_batches_tracked")
        trained = tracked is None or int(tracked) > 0
        dead = torch.nonzero((mean.abs() < DEAD_RUNNING_MEAN) & (var < DEAD_RUNNING_VAR)).flatten().tolist()
        out[name] = {"min_running_var": float(var.min()), "running_mean": mean.tolist(),
                     "running_var": var.tolist(), "trained": trained, "dead_by_stats": dead if trained else []}
    return out


def _loader(dataset: Dataset, batch_size: int = 32) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)


@torch.no_grad()
def bin_mean(train_set: Dataset) -> torch.Tensor:
    """(1, T, F) float32 mean over ``train_set``'s inputs (items with ``x`` (1, T, F)), accumulated in float64."""
    total, count = None, 0
    for batch in _loader(train_set):
        x = batch["x"].double()
        total = x.sum(dim=0) if total is None else total + x.sum(dim=0)
        count += x.shape[0]
    return (total / count).float()


@torch.no_grad()
def trivial_bce(train_set: Dataset, eval_set: Dataset, train_bin_mean: torch.Tensor | None = None
                ) -> dict[str, float]:
    """Reconstruction BCE (as in the RH-emo loss: target clamped to [0, 1], mean over all elements, log clamped
    at −100) of two trivial predictors of ``eval_set``'s inputs, fitted on ``train_set``'s inputs (items with
    ``x`` (1, T, F); ``train_bin_mean``: :func:`bin_mean` of train_set when already computed):

    * 'constant': every bin predicted as the training mean (the best constant under BCE);
    * 'bin_mean': each (t, f) bin predicted as its training mean over segments.
    """
    per_bin = bin_mean(train_set) if train_bin_mean is None else train_bin_mean
    constant = float(per_bin.double().mean())
    sums = {"constant": 0.0, "bin_mean": 0.0}
    elements = 0
    for batch in _loader(eval_set):
        x = batch["x"].float().clamp(0.0, 1.0)  # the RH-emo loss clamps its BCE target the same way
        sums["constant"] += float(F.binary_cross_entropy(torch.full_like(x, constant), x, reduction="sum"))
        sums["bin_mean"] += float(F.binary_cross_entropy(per_bin.expand_as(x), x, reduction="sum"))
        elements += x.numel()
    return {name: value / elements for name, value in sums.items()}


def health_report(net: nn.Module, probe_set: Dataset, device: torch.device | str, recon_bce: float | None,
                  trivial: Mapping[str, float] | None) -> dict[str, Any]:
    """The full health record of RH-emo ``net``: probe on ``probe_set`` (dataset items with x and group),
    BN statistics, recon BCE vs trivial predictors, and the one-line ``warning`` (str or None)."""
    probe = probe_encoder(net, ((b["x"], b["group"]) for b in _loader(probe_set)), device)
    bn = bn_statistics(net.state_dict())
    report = {**probe, "dead_count": {k: len(v) for k, v in probe["dead"].items()},
              "min_bn_running_var": min(bn[name]["min_running_var"] for name in BN_LAYERS), "bn": bn,
              "recon_bce": recon_bce, "trivial_bce": dict(trivial) if trivial else None}
    report["warning"] = warning_line(report)
    return report


def probe_subset(dataset: Dataset) -> Subset:
    """The probe set of a run: up to PROBE_ROWS evenly spaced rows of the training dataset."""
    return Subset(dataset, probe_rows(len(dataset)))


def _beats_trivial(report: Mapping[str, Any]) -> tuple[bool, str]:
    trivial = report.get("trivial_bce")
    recon = report.get("recon_bce")
    if not trivial or recon is None or not math.isfinite(recon):
        return True, ""
    return recon < trivial["constant"], f"recon BCE {recon:.4g} does not beat the best constant predictor " \
                                        f"({trivial['constant']:.4g})"


def bin_mean_comparison(report: Mapping[str, Any]) -> str:
    """Whether the recon BCE also beats the per-bin training mean (reported, never a warning)."""
    trivial, recon = report.get("trivial_bce"), report.get("recon_bce")
    if not trivial or recon is None or not math.isfinite(recon):
        return "no per-bin mean to compare with"
    verdict = "beats" if recon < trivial["bin_mean"] else "does not beat"
    return f"{verdict} the per-bin training mean ({trivial['bin_mean']:.4g})"


def warning_line(report: Mapping[str, Any]) -> str | None:
    """One line naming every problem of a health report, or None when the RH-emo is healthy: dead channels, and
    a recon BCE no better than the best constant (the BCE's trivial solution). The per-bin mean, a 512×128
    fitted baseline, is reported beside it but does not trigger the warning."""
    problems = [f"{name} {len(report['dead'][name])}/{report['channels'][name]} dead (channel "
                f"{', '.join(map(str, report['dead'][name]))})" for name in LAYERS if report["dead"][name]]
    beats, text = _beats_trivial(report)
    if not beats:
        problems.append(text)
    return "RH-emo unhealthy: " + "; ".join(problems) if problems else None


def summary_line(report: Mapping[str, Any]) -> str:
    """The per-epoch health line: dead counts, smallest BN variance, zero fractions, recon vs trivial."""
    dead = " ".join(f"{name} {report['dead_count'][name]}/{report['channels'][name]}" for name in LAYERS)
    zeros = " ".join(f"{c} {report['embedding'][c]['zero_fraction']:.2f}" for c in COMPONENTS)
    trivial = report.get("trivial_bce") or {}
    recon = report.get("recon_bce")
    bce = "" if recon is None else f" | val recon {recon:.4g} vs constant {trivial.get('constant', math.nan):.4g}" \
                                   f" / bin mean {trivial.get('bin_mean', math.nan):.4g}"
    state = "OK" if report.get("warning") is None else "WARNING"
    return f"health {state}: dead {dead} | min BN var {report['min_bn_running_var']:.2g} | zeros {zeros}{bce}"


def log_columns(report: Mapping[str, Any]) -> dict[str, float]:
    """The numeric columns a health report adds to a log.csv row."""
    columns = {f"health_dead_{name}": float(report["dead_count"][name]) for name in LAYERS}
    columns["health_min_bn_var"] = float(report["min_bn_running_var"])
    columns["health_zero_fraction"] = float(np.mean([report["embedding"][c]["zero_fraction"] for c in COMPONENTS]))
    trivial = report.get("trivial_bce")
    if trivial:
        columns["health_trivial_bce"] = float(min(trivial.values()))
    return columns


def checkpoint_warning(state_dict: Mapping[str, torch.Tensor], source: str = "RH-emo") -> str | None:
    """The cheap check of a loaded RH-emo from its BN buffers alone: one warning line, or None.

    Flags channels dead by their statistics (running mean and variance both ~0) and BNs whose smallest running
    variance is below eps (eval-mode BN then amplifies that channel ~1/√eps). Untrained statistics (a random
    RH-emo: num_batches_tracked 0) are not judged.
    """
    stats = bn_statistics(state_dict)
    problems = []
    for name in BN_LAYERS:
        entry = stats[name]
        if not entry["trained"]:
            continue
        if entry["dead_by_stats"]:
            problems.append(f"{name} channel(s) {entry['dead_by_stats']} look dead (running mean and variance ~0)")
        elif entry["min_running_var"] < BN_EPS:
            problems.append(f"{name} running variance {entry['min_running_var']:.2g} < eps: BN amplifies ~"
                            f"{1 / math.sqrt(entry['min_running_var'] + BN_EPS):.0f}x")
    return f"{source}: RH-emo unhealthy: " + "; ".join(problems) if problems else None


class EpochMonitor:
    """The health of an RH-emo run, as ``fit``'s ``epoch_callback``: trivial BCEs computed once, a fixed probe.

    ``datasets``: the run's {'train', 'val', ...} datasets; ``alpha``: the loss weight of the reconstruction
    (the val ``recon`` metric includes it).
    """

    def __init__(self, datasets: Mapping[str, Dataset], device: torch.device | str, alpha: float = 1.0) -> None:
        self.train_bin_mean = bin_mean(datasets["train"])
        self.trivial = trivial_bce(datasets["train"], datasets["val"], self.train_bin_mean)
        self.probe = probe_subset(datasets["train"])
        self.device = device
        self.alpha = alpha

    def report(self, net: nn.Module, val: Mapping[str, Any]) -> dict[str, Any]:
        """Full health report of ``net`` given its validation metrics (their ``recon``)."""
        recon = val.get("recon")
        recon = recon / self.alpha if recon is not None and self.alpha > 0 else None
        return health_report(net, self.probe, self.device, recon, self.trivial)

    def __call__(self, net: nn.Module, train: Mapping[str, Any], val: Mapping[str, Any]
                 ) -> tuple[dict[str, float], str]:
        report = self.report(net, val)
        line = summary_line(report)
        return log_columns(report), line if report["warning"] is None else f"{line}\n{report['warning']}"


def check_loaded(rhemo: nn.Module, path: str | None, input_transform: str) -> str | None:
    """After training_SER.py loads RH-emo from ``path``: refuse an input-transform mismatch (ConfigError) and
    print and return the :func:`checkpoint_warning` line (None when the buffers look healthy or path is None)."""
    if path is None:
        return None
    from rhemo.train.config import ConfigError

    try:  # memory-mapped: the paper-size file is ~0.5 GB and only its normalisation record is read here
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        from rhemo.train.checkpoint import load_checkpoint

        payload = load_checkpoint(path)
    record = payload.get("normalisation") if isinstance(payload, dict) else None
    trained_with = record.get("transform", "none") if isinstance(record, dict) else "none"
    if trained_with != input_transform:
        raise ConfigError(f"r2he_model_path {path} was trained with input_transform {trained_with!r}, but this "
                          f"run uses {input_transform!r}; set input_transform to {trained_with!r}")
    warning = checkpoint_warning(rhemo.state_dict(), source=str(path))
    if warning:
        print(f"WARNING {warning}", flush=True)
    return warning


def init_encoder_biases(net: nn.Module, value: float) -> None:
    """Set the biases of RH-emo's encoder convs (conv1-3) to ``value`` (config key encoder_bias_init, beyond
    the paper: the authors zero them)."""
    with torch.no_grad():
        for layer in (net.conv1, net.conv2, net.conv3):
            layer.bias.fill_(float(value))


def init_decoder_bias(net: nn.Module, train_mean: float) -> None:
    """Start RH-emo's reconstruction at the best constant: t_conv3's biases = logit(training mean) (config key
    decoder_bias_init data_mean, beyond the paper: the authors zero them, so the sigmoid starts at 0.5 against
    a mean input of ~0.003 and the first steps only push every output down)."""
    mean = min(max(float(train_mean), 1e-6), 1 - 1e-6)
    with torch.no_grad():
        net.t_conv3.bias.fill_(math.log(mean / (1 - mean)))
