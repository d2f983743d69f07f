"""Emotion prediction on arbitrary audio files with a trained checkpoint (the engine behind ``predict.py``).

A :class:`Predictor` is built from what training wrote, and from nothing else: a ``checkpoint.pt``, a fold
folder holding one, or a run folder holding ``fold<k>/checkpoint.pt``. The checkpoint carries the label
names, the normalisation constants, the feature settings, the network's registry name and keyword arguments
and, for quaternion networks, the RH-emo encoder weights. File names are never parsed.

How a file is predicted:

1. ``load_audio`` reads it (wav, flac, ogg, mp3, ...; any rate, any channel count) as mono at the stored
   sample rate; only regular files are opened (an open FIFO would block forever). Files that are not
   regular (FIFO, directory, broken symlink), empty files, files shorter than :data:`MIN_SECONDS`, silent
   files and files with NaN/inf samples are reported as errors (a :class:`FilePrediction` with
   ``status='error'``), never raised.
2. The signal is cut into windows of ``segment_seconds`` (4 s) every ``hop_seconds`` (default: the stored
   ``segment_hop_seconds``), starting at 0 s. When the hops do not land exactly on the end of the file, one
   more window aligned to the end is added, so every sample is seen. A file shorter than one window gives a
   single window, zero-padded like in training.
3. Each window goes through the training feature function ``audio_to_segments`` (one segment per window,
   so the features of a 4-s window are exactly those of a 4-s training segment), then the stored
   normalisation (``max`` or ``zscore``). Training cut its segments by the authors' rule instead, which
   aligns them to the end of the file and drops the start of files between one and two segments long;
   prediction must see every sample and report window times, hence its own windowing.
4. Networks trained on RH-emo embeddings (the quaternion ones) first run the frozen RH-emo encoder (eval
   mode, no grad) to get the (4, 64, 64) embedding, exactly as ``training_SER.py``'s ``SERModel`` does.
5. The network's logits become probabilities with a softmax per window; the utterance probabilities are the
   mean of the window probabilities and the label is their argmax. RH-emo checkpoints also give valence,
   arousal and dominance: their sigmoid outputs, i.e. the probability that the dimension is *high* (the
   training targets were the 1-5 ratings binarised at > 2.5), averaged the same way. RH-emo's discrete head
   keeps the authors' 5 outputs even with fewer label names; the unnamed outputs are left out of the softmax.
   Steps 3-5 run ``batch_size`` windows at a time and keep only running sums (and the timeline when it is
   asked for), so memory beyond the decoded signal does not grow with the file's length.

A run folder with several folds is an ensemble: every fold's model (each with its own normalisation and
RH-emo encoder) predicts every window, and the window probabilities are averaged over folds before the
utterance mean. The folds must agree on label names and feature settings. ``fold=k`` selects one fold.

Example:
    >>> predictor = load_predictor("results/2_SER_quaternion_rhemo/1")   # doctest: +SKIP
    >>> result = predictor.predict_file("speech.wav")                     # doctest: +SKIP
    >>> result.label, result.probabilities                                # doctest: +SKIP
    ('ang', {'neu': 0.21, 'ang': 0.52, 'hap': 0.17, 'sad': 0.10})
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from models.registry import RHEMO_MODEL, create_model
from rhemo.atomic import atomic_path
from rhemo.data.features import AudioError, FeatureSettings, audio_to_segments, check_signal, load_audio
from rhemo.data.normalisation import Normalisation
# Extensions collected when a directory is walked (the ones preprocessing reads); explicitly named files are
# tried whatever their extension.
from rhemo.data.readers import AUDIO_EXTENSIONS
from rhemo.train.checkpoint import CheckpointError, TrainedCheckpoint, load_checkpoint, read_normalisation
from rhemo.train.embeddings import RHemoEncoder, SERModel, encoder_model
from rhemo.train.losses import VAD_NAMES
from rhemo.train.runfolder import CHECKPOINT_FILE, LAST_FILE, fold_dirs

MIN_SECONDS = 0.1
_EXPECTED_PATH = ("a checkpoint file (checkpoint.pt), a fold folder holding checkpoint.pt "
                  "(results/<exp>/<run>/fold0) or a run folder holding fold<k>/checkpoint.pt "
                  "(results/<exp>/<run>)")


class PredictorError(ValueError):
    """The model path is missing, is not one of ours, or its checkpoint cannot be used; the message names it."""


@dataclass
class WindowPrediction:
    """One analysis window: ``start``/``end`` in seconds of the original file, its label and probabilities."""

    start: float
    end: float
    label: str
    probabilities: dict[str, float]
    vad: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": self.start, "end": self.end, "label": self.label,
                               "probabilities": dict(self.probabilities)}
        if self.vad is not None:
            out["vad"] = dict(self.vad)
        return out


@dataclass
class FilePrediction:
    """The result for one file.

    ``status`` is 'ok' or 'error'. On 'ok': ``label`` (argmax of ``probabilities``), ``probabilities`` (class
    name → mean window probability, summing to 1, in checkpoint order), ``vad`` (valence/arousal/dominance →
    probability of 'high', or None when the model has no V/A/D heads), ``duration`` in seconds and the
    per-window ``windows`` (empty when the timeline was not asked for) out of ``num_windows``. On 'error':
    ``reason`` says what is wrong with the file.
    """

    path: str
    status: str
    reason: str = ""
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    vad: dict[str, float] | None = None
    duration: float | None = None
    windows: list[WindowPrediction] = field(default_factory=list)
    num_windows: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self, per_window: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; ``per_window`` adds the window timeline."""
        out: dict[str, Any] = {"path": self.path, "status": self.status}
        if not self.ok:
            out["reason"] = self.reason
            return out
        out.update(label=self.label, probabilities=dict(self.probabilities), duration=self.duration,
                   num_windows=self.num_windows)
        if self.vad is not None:
            out["vad"] = dict(self.vad)
        if per_window:
            out["windows"] = [w.to_dict() for w in self.windows]
        return out

    def summary_line(self) -> str:
        """``path  label  (p1 name1, p2 name2 ...)  [V .. A .. D ..]`` with probabilities in decreasing order."""
        if not self.ok:
            return f"{self.path}  ERROR  {self.reason}"
        return f"{self.path}  {self.label}  {_format_probabilities(self.probabilities)}{_format_vad(self.vad)}"

    def window_lines(self) -> list[str]:
        """One indented line per window: ``start - end s  label  (probabilities)  [V/A/D]``."""
        return [f"    {w.start:7.2f} - {w.end:7.2f} s  {w.label}  {_format_probabilities(w.probabilities)}"
                f"{_format_vad(w.vad)}" for w in self.windows]


def _format_probabilities(probabilities: dict[str, float]) -> str:
    ordered = sorted(probabilities.items(), key=lambda item: -item[1])
    return "(" + ", ".join(f"{p:.3f} {name}" for name, p in ordered) + ")"


def _format_vad(vad: dict[str, float] | None) -> str:
    if vad is None:
        return ""
    return "  [P(high): " + " ".join(f"{name[0].upper()} {vad[name]:.3f}" for name in VAD_NAMES) + "]"


# ----------------------------------------------------------------------------------------------- model path
def resolve_checkpoints(path: str | os.PathLike, fold: int | None = None) -> list[Path]:
    """The checkpoint file(s) a model path stands for.

    Args:
        path: a checkpoint file, a fold folder holding ``checkpoint.pt``, or a run folder holding
            ``fold<k>/checkpoint.pt`` folders.
        fold: with a run folder, use only ``fold<fold>``; None uses every fold (an ensemble).

    Returns:
        The checkpoint paths, folds in numerical order.

    Raises:
        PredictorError: the path does not exist, holds no checkpoint, is an experiment folder (the run must
            be chosen), or one of the folds has not finished training.
    """
    path = Path(path)
    if not path.exists():
        raise PredictorError(f"model path {path} does not exist; expected {_EXPECTED_PATH}")
    if path.is_file():
        _refuse_fold(fold, f"the model path {path} is a file")
        return [path]
    if (path / CHECKPOINT_FILE).is_file():
        _refuse_fold(fold, f"{path} is a fold folder")
        return [path / CHECKPOINT_FILE]
    folds = fold_dirs(path)
    if folds:
        return _fold_checkpoints(path, folds, fold)
    if (path / LAST_FILE).is_file():
        raise PredictorError(f"{path} holds {LAST_FILE} but no {CHECKPOINT_FILE}: its training has not finished")
    runs = sorted(child.name for child in path.iterdir() if child.is_dir() and fold_dirs(child))
    if runs:
        raise PredictorError(f"{path} is an experiment folder; choose one of its runs: "
                             + ", ".join(str(path / r) for r in runs))
    raise PredictorError(f"no checkpoint found in folder {path}; expected {_EXPECTED_PATH}")


def _refuse_fold(fold: int | None, what: str) -> None:
    if fold is not None:
        raise PredictorError(f"fold={fold} only applies to a run folder, but {what}")


def _fold_checkpoints(path: Path, folds: list[tuple[int, Path]], fold: int | None) -> list[Path]:
    """The ``checkpoint.pt`` of each of a run folder's ``folds`` ((k, folder), sorted), or of fold ``fold``."""
    if fold is not None:
        chosen = [child for k, child in folds if k == fold]
        if not chosen:
            raise PredictorError(f"run folder {path} has no fold{fold}; it has "
                                 + ", ".join(child.name for _, child in folds))
        folds = [(fold, chosen[0])]
    unfinished = [child.name for _, child in folds if not (child / CHECKPOINT_FILE).is_file()]
    if unfinished:
        raise PredictorError(f"run folder {path}: {', '.join(unfinished)} has no {CHECKPOINT_FILE} (training "
                             f"unfinished or failed); choose a finished fold with --fold")
    return [child / CHECKPOINT_FILE for _, child in folds]


# ------------------------------------------------------------------------------------------ one checkpoint
@dataclass
class _Member:
    """One checkpoint made ready for inference, in eval mode on the device.

    ``network`` is the RH-emo autoencoder for RH-emo checkpoints (``has_vad``), else the training script's
    ``SERModel``: the frozen RH-emo front end (when the checkpoint has one) followed by the SER network.
    """

    path: Path
    network: torch.nn.Module
    normalisation: Normalisation
    label_names: list[str]
    settings: FeatureSettings
    has_vad: bool
    description: str


def _fail(path: Path, message: str) -> PredictorError:
    return PredictorError(f"checkpoint {path}: {message}")


def _load_state(path: Path, module: torch.nn.Module, state: Any, what: str) -> None:
    if not isinstance(state, dict):
        raise _fail(path, f"{what} must be a dict of tensors, got {type(state).__name__}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:4])
        raise _fail(path, f"{what} does not fit the model it describes: {detail}") from None


def _build_encoder(path: Path, info: Any) -> torch.nn.Module:
    """The frozen RH-emo whose ``encode`` turns (N,1,512,128) spectrograms into (N,4,64,64) embeddings."""
    if not isinstance(info, dict) or "encoder_state_dict" not in info or "model_kwargs" not in info:
        raise _fail(path, "'rhemo' must be None or a dict with 'model_kwargs' and 'encoder_state_dict'")
    state, kwargs = info["encoder_state_dict"], info["model_kwargs"]
    if not isinstance(state, dict):
        raise _fail(path, f"the RH-emo 'encoder_state_dict' must be a dict of tensors, got {type(state).__name__}")
    if not isinstance(kwargs, dict):
        raise _fail(path, f"the RH-emo 'model_kwargs' must be a dict, got {type(kwargs).__name__}")
    try:
        return encoder_model(state, quat=kwargs.get("quat", True))
    except (ValueError, RuntimeError) as exc:
        raise _fail(path, f"the RH-emo 'encoder_state_dict' does not fit: {exc}") from None


def _check_normalisation(path: Path, record: Any) -> Normalisation:
    """The Normalisation of a checkpoint's 'normalisation' record; PredictorError naming ``path`` if unusable."""
    try:
        return read_normalisation(record, path)
    except CheckpointError as exc:
        raise PredictorError(str(exc)) from None


def _read_checkpoint(path: Path) -> TrainedCheckpoint:
    try:
        return TrainedCheckpoint.from_payload(load_checkpoint(path, map_location="cpu"), path)
    except CheckpointError as exc:
        raise PredictorError(str(exc)) from None


def _build_network(path: Path, trained: TrainedCheckpoint) -> tuple[torch.nn.Module, bool]:
    """The checkpoint's network with its weights: RH-emo itself, or a :class:`SERModel` (with its RH-emo front
    end when it has one); and whether the SER network reads RH-emo embeddings."""
    name, kwargs = trained.model_name, trained.model_kwargs
    try:
        network = create_model(name, **kwargs)
    except (TypeError, ValueError, KeyError) as exc:
        raise _fail(path, f"cannot build model {name!r} with {kwargs!r}: {exc}") from None
    _load_state(path, network, trained.state_dict, "'state_dict'")
    is_rhemo = name == RHEMO_MODEL
    frontend = None
    if trained.rhemo is not None and not is_rhemo:
        frontend = RHemoEncoder(_build_encoder(path, trained.rhemo), trainable=False)
    elif not is_rhemo and kwargs.get("quat"):
        raise _fail(path, f"quaternion {name} needs RH-emo embeddings, but 'rhemo' is None")
    out_classes = kwargs.get("num_classes")
    if isinstance(out_classes, int) and out_classes < len(trained.label_names):
        raise _fail(path, f"{len(trained.label_names)} label names but the model has only {out_classes} outputs")
    return (network if is_rhemo else SERModel(network, frontend)), frontend is not None


def _read_member(path: Path, device: torch.device) -> _Member:
    trained = _read_checkpoint(path)
    network, on_embeddings = _build_network(path, trained)
    network.to(device).eval()
    network.requires_grad_(False)
    is_rhemo = trained.model_name == RHEMO_MODEL
    kind = "quaternion" if trained.model_kwargs.get("quat") else "real"
    description = (f"{trained.model_name} ({'RH-emo, V/A/D heads' if is_rhemo else kind}"
                   f"{', on RH-emo embeddings' if on_embeddings else ''}), "
                   f"dataset {trained.dataset or '?'}, view {trained.label_view or '?'}")
    return _Member(path=path, network=network, normalisation=_check_normalisation(path, trained.normalisation), label_names=trained.label_names,
                   settings=trained.settings(), has_vad=is_rhemo, description=description)


# ----------------------------------------------------------------------------------------------- predictor
def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of the analysis windows of a signal.

    Windows start every ``hop`` samples from 0; if the last one does not reach the end, one more window
    aligned to the end is added. A signal no longer than ``window`` has the single start 0.

    Example:
        >>> window_starts(11, 4, 4)
        [0, 4, 7]
        >>> window_starts(3, 4, 2)
        [0]
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive sample counts, got window={window}, hop={hop}")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


class Predictor:
    """Predicts the emotion of audio files with one checkpoint or an ensemble of fold checkpoints.

    Attributes:
        label_names: class names, in the order of ``probabilities``.
        feature_settings: the (shared) :class:`FeatureSettings` of the checkpoints.
        checkpoints: the checkpoint paths in use.
        has_vad: True when the models give valence/arousal/dominance (RH-emo checkpoints).
        device: where the networks run.
        batch_size: windows per forward pass.
    """

    def __init__(self, members: Sequence[_Member], device: torch.device, batch_size: int = 32):
        if not members:
            raise PredictorError("no checkpoint to predict with")
        first = members[0]
        for other in members[1:]:
            if other.label_names != first.label_names:
                raise PredictorError(f"checkpoints {first.path} and {other.path} disagree on label names "
                                     f"({first.label_names} vs {other.label_names}); they cannot be ensembled")
            if other.settings != first.settings:
                raise PredictorError(f"checkpoints {first.path} and {other.path} disagree on feature settings; "
                                     f"they cannot be ensembled")
            if other.has_vad != first.has_vad:
                raise PredictorError(f"checkpoints {first.path} and {other.path} are of different kinds "
                                     f"(RH-emo vs SER); they cannot be ensembled")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._members = list(members)
        self.label_names = list(first.label_names)
        self.feature_settings = first.settings
        self.checkpoints = [m.path for m in members]
        self.has_vad = first.has_vad
        self.device = device
        self.batch_size = batch_size

    def describe(self) -> str:
        """One line saying which model(s) predict, for logs."""
        names = "/".join(self.label_names)
        if len(self._members) == 1:
            return f"model {self.checkpoints[0]}: {self._members[0].description}; classes {names}"
        return (f"ensemble of {len(self._members)} folds ({', '.join(str(p) for p in self.checkpoints)}): "
                f"{self._members[0].description}; classes {names}")

    # -- windows
    def _hop_samples(self, hop_seconds: float | None) -> int:
        settings = self.feature_settings
        hop = settings.segment_hop_seconds if hop_seconds is None else hop_seconds
        if isinstance(hop, bool) or not isinstance(hop, (int, float)) or not math.isfinite(hop) or hop <= 0:
            raise ValueError(f"hop_seconds must be a positive number of seconds, got {hop!r}")
        if hop > settings.segment_seconds:
            raise ValueError(f"hop_seconds {hop} is longer than the {settings.segment_seconds}-s window: parts of "
                             f"the audio would never be seen")
        return max(1, int(round(hop * settings.sample_rate)))

    def check_hop(self, hop_seconds: float | None) -> None:
        """Raise ValueError if ``hop_seconds`` is not usable (≤ 0, not finite, or longer than a window)."""
        self._hop_samples(hop_seconds)

    def windows(self, num_samples: int, hop_seconds: float | None = None) -> list[tuple[int, int]]:
        """(start, end) sample indices of the windows of a signal of ``num_samples`` at the stored rate."""
        window = int(round(self.feature_settings.segment_seconds * self.feature_settings.sample_rate))
        return [(s, min(s + window, num_samples))
                for s in window_starts(num_samples, window, self._hop_samples(hop_seconds))]

    def segments(self, signal: np.ndarray, bounds: Iterable[tuple[int, int]]) -> np.ndarray:
        """Training features of each window: float32 (W, time_frames, freq_bins), one segment per window."""
        out = []
        for start, end in bounds:
            seg = audio_to_segments(signal[start:end], self.feature_settings)
            if seg.shape[0] != 1:
                raise RuntimeError(f"audio_to_segments gave {seg.shape[0]} segments for one "
                                   f"{(end - start) / self.feature_settings.sample_rate:.3f}-s window")
            out.append(seg[0])
        return np.stack(out).astype(np.float32, copy=False)

    # -- model
    @torch.no_grad()
    def predict_segments(self, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities (and V/A/D) of spectrogram segments.

        Args:
            segments: float32 (W, time_frames, freq_bins), un-normalised, as ``audio_to_segments`` gives.

        Returns:
            probabilities: float64 (W, C), each row a softmax, averaged over the ensemble's folds.
            vad: float64 (W, 3) sigmoid outputs (probability of 'high' valence, arousal, dominance),
                or None for models without V/A/D heads.
        """
        n_classes = len(self.label_names)
        probs = np.zeros((len(segments), n_classes))
        vad = np.zeros((len(segments), 3)) if self.has_vad else None
        for member in self._members:
            for lo in range(0, len(segments), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(segments[lo:lo + self.batch_size]))
                x = member.normalisation.apply(x.to(self.device).unsqueeze(1))
                if member.has_vad:
                    # RH-emo's heads read the latent; its decoder output is not needed here.
                    logits, valence, arousal, dominance = member.network.classify(member.network.encode(x))
                    vad[lo:lo + len(x)] += torch.cat([valence, arousal, dominance], 1).double().cpu().numpy()
                else:
                    logits = member.network(x)   # RH-emo front end (if any), then the SER network
                # The authors' RH-emo head always has 5 outputs, also when only 4 classes are labelled:
                # the unnamed output was never a target, so it is left out of the softmax.
                logits = logits[:, :n_classes]
                probs[lo:lo + len(x)] += torch.softmax(logits.double(), dim=1).cpu().numpy()
        probs /= len(self._members)
        if vad is not None:
            vad /= len(self._members)
        return probs, vad

    # -- files
    def predict_signal(self, signal: np.ndarray, path: str = "<signal>", hop_seconds: float | None = None,
                       per_window: bool = True) -> FilePrediction:
        """Predict a mono float signal already at ``feature_settings.sample_rate``; see :meth:`predict_file`.

        Windows are cut, featurised and classified ``batch_size`` at a time and only running sums are kept
        (plus the timeline when ``per_window``), so memory beyond the signal does not grow with its length.
        """
        settings = self.feature_settings
        duration = len(signal) / settings.sample_rate
        if duration < MIN_SECONDS:
            return FilePrediction(str(path), "error", f"too short: {duration:.3f} s (at least {MIN_SECONDS} s "
                                                      f"needed)", duration=duration)
        try:
            check_signal(signal, settings)
        except AudioError as exc:
            return FilePrediction(str(path), "error", _audio_reason(exc), duration=duration)
        bounds = self.windows(len(signal), hop_seconds)
        prob_sum = np.zeros(len(self.label_names))
        vad_sum = np.zeros(len(VAD_NAMES)) if self.has_vad else None
        windows: list[WindowPrediction] = []
        for lo in range(0, len(bounds), self.batch_size):
            batch = bounds[lo:lo + self.batch_size]
            probs, vad = self.predict_segments(self.segments(signal, batch))
            if not np.all(np.isfinite(probs)) or (vad is not None and not np.all(np.isfinite(vad))):
                return FilePrediction(str(path), "error", "the model produced non-finite outputs",
                                      duration=duration)
            prob_sum += probs.sum(axis=0)
            if vad is not None:
                vad_sum += vad.sum(axis=0)
            if per_window:
                windows += self._window_predictions(batch, probs, vad)
        mean = prob_sum / len(bounds)
        return FilePrediction(str(path), "ok", label=self.label_names[int(np.argmax(mean))],
                              probabilities=self._named(mean),
                              vad=None if vad_sum is None else self._named_vad(vad_sum / len(bounds)),
                              duration=duration, windows=windows, num_windows=len(bounds))

    def _window_predictions(self, bounds: Sequence[tuple[int, int]], probs: np.ndarray,
                            vad: np.ndarray | None) -> list[WindowPrediction]:
        """Timeline entries of windows ``bounds`` (samples) from their probabilities (W, C) and V/A/D (W, 3)."""
        rate = self.feature_settings.sample_rate
        return [WindowPrediction(start=s / rate, end=e / rate, label=self.label_names[int(np.argmax(p))],
                                 probabilities=self._named(p), vad=None if vad is None else self._named_vad(vad[i]))
                for i, ((s, e), p) in enumerate(zip(bounds, probs))]

    def predict_file(self, path: str | os.PathLike, hop_seconds: float | None = None,
                     per_window: bool = True) -> FilePrediction:
        """Predict the emotion of one audio file.

        Args:
            path: any file soundfile or librosa can read (wav, flac, ogg, mp3, ...), any rate and channels.
            hop_seconds: distance between window starts; None uses the checkpoint's ``segment_hop_seconds``.
            per_window: keep the window timeline (``windows``); False keeps only the utterance result.

        Returns:
            A :class:`FilePrediction`. Problems with the file (not a regular file, empty, unreadable, shorter
            than 0.1 s, silent, NaN/inf samples) give ``status='error'`` and a ``reason``; they are never
            raised. Only regular files are opened (a FIFO would block forever).

        Raises:
            ValueError: only for a bad ``hop_seconds`` (a caller error, not a file problem).
        """
        self.check_hop(hop_seconds)
        try:
            signal = load_audio(path, self.feature_settings.sample_rate)
        except AudioError as exc:
            return FilePrediction(str(path), "error", _audio_reason(exc))
        return self.predict_signal(signal, str(path), hop_seconds, per_window)

    def _named(self, probabilities: np.ndarray) -> dict[str, float]:
        return {name: float(p) for name, p in zip(self.label_names, probabilities)}

    @staticmethod
    def _named_vad(values: np.ndarray) -> dict[str, float]:
        return {name: float(v) for name, v in zip(VAD_NAMES, values)}


def _audio_reason(exc: AudioError) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc)


def load_predictor(path: str | os.PathLike, device: str | torch.device = "cpu", fold: int | None = None,
                   batch_size: int = 32) -> Predictor:
    """Build a :class:`Predictor` from a checkpoint file, a fold folder or a run folder.

    A run folder with several folds gives an ensemble (window probabilities averaged over folds) unless
    ``fold`` picks one. See the module docstring for the whole pipeline.

    Raises:
        PredictorError: the path is unknown, holds no finished checkpoint, or a checkpoint is not in our
            format or does not match the model it names.
    """
    device = torch.device(device)
    members = [_read_member(p, device) for p in resolve_checkpoints(path, fold)]
    return Predictor(members, device, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------- file lists
def find_audio_files(directory: str | os.PathLike) -> list[Path]:
    """Audio files under ``directory``, recursively, by extension (:data:`AUDIO_EXTENSIONS`), sorted.

    Hidden files and folders (name starting with '.', e.g. macOS ``._x.wav`` resource forks) are skipped.
    """
    found = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root) / name for name in names
                  if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS]
    return sorted(found)


def csv_columns(label_names: Sequence[str], has_vad: bool) -> list[str]:
    """Header of a predictions CSV: path, status, label, one ``p_<class>`` per class, V/A/D, bookkeeping."""
    vad = [f"p_high_{name}" for name in VAD_NAMES] if has_vad else []
    return (["path", "status", "label"] + [f"p_{name}" for name in label_names] + vad
            + ["duration", "num_windows", "reason"])


def write_predictions_csv(path: str | os.PathLike, predictions: Sequence[FilePrediction],
                          label_names: Sequence[str], has_vad: bool) -> Path:
    """Write one row per file to ``path`` atomically (:func:`rhemo.atomic.atomic_path`); returns the path.

    Raises OSError (with the file name) when the folder cannot be written; no temp file is left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            _write_rows(handle, predictions, label_names, has_vad)
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise
    return path


def _write_rows(handle, predictions: Sequence[FilePrediction], label_names: Sequence[str], has_vad: bool) -> None:
    writer = csv.DictWriter(handle, fieldnames=csv_columns(label_names, has_vad))
    writer.writeheader()
    for p in predictions:
        row: dict[str, Any] = {"path": p.path, "status": p.status, "label": p.label or "",
                               "duration": "" if p.duration is None else f"{p.duration:.3f}",
                               "num_windows": p.num_windows if p.ok else "", "reason": p.reason}
        for name in label_names:
            row[f"p_{name}"] = f"{p.probabilities[name]:.6f}" if p.ok else ""
        if has_vad:
            for name in VAD_NAMES:
                row[f"p_high_{name}"] = f"{p.vad[name]:.6f}" if p.ok and p.vad else ""
        writer.writerow(row)
