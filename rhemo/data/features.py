"""Audio loading and the authors' spectrogram pipeline: audio file → float32 segments of shape (512, 128).

The pipeline reproduces the reference preprocessing (``spectrum_fast`` + ``segment_datapoint``) exactly, so
that the published RH-emo weights apply to our features:

1. load, mix to mono, resample to 16 kHz (soxr "HQ", which is what ``librosa.load(sr=16000)`` uses);
2. reject empty, non-finite and silent signals (:func:`check_signal`);
3. zero-pad files shorter than one segment (4 s) at the end; longer files are kept whole;
4. ``|scipy.signal.stft(x, window='hamming', nperseg=256, noverlap=128)|`` with scipy's defaults (fs=1,
   zero boundary extension of n_fft//2 on each side, padding to whole frames, 'spectrum' scaling = divide by
   the window sum, one-sided). We compute it ourselves with a strided frame view and one float32 rfft over
   only the frames that end up in a segment; it equals scipy to float32 precision (tested) and is about three
   times faster;
5. ``np.rot90`` orientation: rows are frames with time *reversed* (row 0 = last frame), columns are
   frequency bins ascending (column 0 = DC);
6. cut into windows of ``frames_per_segment`` rows (501 for 4 s) with step
   ``round(frames_per_segment * segment_hop_seconds / segment_seconds)``; every full window from row 0 is
   kept, and when a partial window remains and the file has more than ``frames*(1 + hop/segment)`` rows
   (i.e. more than two segments without overlap) the last ``frames`` rows are added as an extra segment;
7. each segment is zero-padded / cropped to ``time_frames × freq_bins`` (512 × 128): time is padded at the
   end, frequency keeps the low bins, which drops the Nyquist bin.

Example:
    >>> import numpy as np
    >>> s = FeatureSettings()
    >>> audio_to_segments(np.zeros(16000, np.float32), s).shape   # 1 s → padded to 4 s → one segment
    (1, 512, 128)
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft

from rhemo.errors import InputError

from .readers import file_problem

__all__ = [
    "AudioError",
    "FeatureSettings",
    "load_audio",
    "check_signal",
    "resample",
    "magnitude_stft",
    "stft_frame_count",
    "window_array",
    "segment_starts",
    "audio_to_segments",
    "file_to_segments",
]


class AudioError(InputError):
    """An audio file cannot be used: unreadable, empty, non-finite or silent.

    ``path`` is the file (or None for an in-memory signal) and ``reason`` a short text that starts with a
    category word followed by a colon (``'unreadable: ...'``, ``'empty: ...'``, ``'silent: ...'``,
    ``'non-finite: ...'``), so skip reports can be grouped by category.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)

    def __reduce__(self):  # keep (path, reason) when the error crosses a process boundary
        return (AudioError, (self.path, self.reason))


@dataclass(frozen=True)
class FeatureSettings:
    """Every knob of the feature pipeline. The defaults are the authors' configuration.

    ``segment_hop_seconds`` is the distance between segment starts; equal to ``segment_seconds`` means no
    overlap (the authors' ``sequence_overlap = 1.0``). ``stft_overlap`` is in samples (the STFT hop is
    ``n_fft - stft_overlap``). ``silence_threshold`` rejects a file whose max |x| is at or below it (the
    authors compared the *signed* maximum, which also rejects loud files whose positive peak is small; we use
    the absolute value on purpose).
    """

    sample_rate: int = 16000
    segment_seconds: float = 4.0
    segment_hop_seconds: float = 4.0
    window: str = "hamming"
    n_fft: int = 256
    stft_overlap: int = 128
    time_frames: int = 512
    freq_bins: int = 128
    time_reversed: bool = True
    silence_threshold: float = 0.005

    def __post_init__(self):
        _check_int(self, "sample_rate", 1)
        _check_float(self, "segment_seconds", 0.0, strict=True)
        _check_float(self, "segment_hop_seconds", 0.0, strict=True)
        _check_int(self, "n_fft", 2)
        _check_int(self, "stft_overlap", 0)
        _check_int(self, "time_frames", 1)
        _check_int(self, "freq_bins", 1)
        _check_float(self, "silence_threshold", 0.0, strict=False)
        if not isinstance(self.time_reversed, (bool, np.bool_)):
            raise InputError(f"feature setting 'time_reversed' must be true or false, got {self.time_reversed!r}")
        object.__setattr__(self, "time_reversed", bool(self.time_reversed))
        if not isinstance(self.window, str) or not self.window:
            raise InputError(f"feature setting 'window' must be a scipy window name, got {self.window!r}")
        try:
            window_array(self.window, self.n_fft)
        except Exception as exc:  # scipy raises ValueError/KeyError/TypeError depending on the name
            raise InputError(f"feature setting 'window' = {self.window!r} is not a scipy window name "
                             f"({exc})") from None
        if self.stft_overlap >= self.n_fft:
            raise InputError(f"feature setting 'stft_overlap' ({self.stft_overlap}) must be smaller than "
                             f"'n_fft' ({self.n_fft})")
        if self.segment_samples < self.n_fft:
            raise InputError(f"feature setting 'segment_seconds' ({self.segment_seconds}) gives "
                             f"{self.segment_samples} samples, fewer than 'n_fft' ({self.n_fft})")

    # --- derived quantities -------------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """STFT hop in samples (128 by default: 8 ms at 16 kHz)."""
        return self.n_fft - self.stft_overlap

    @property
    def segment_samples(self) -> int:
        """Samples in one segment (64000 by default); short files are zero-padded to this length."""
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def frames_per_segment(self) -> int:
        """STFT frames of one segment-long signal (501 by default), the authors' ``seq_len_frames``."""
        return stft_frame_count(self.segment_samples, self)

    @property
    def segment_step_frames(self) -> int:
        """Rows between segment starts: ``round(frames_per_segment * hop / segment)`` (501 = no overlap)."""
        return max(1, int(np.round(self.frames_per_segment * self.segment_hop_seconds / self.segment_seconds)))

    # --- (de)serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "feature settings") -> "FeatureSettings":
        """Build from a dict; missing keys take the defaults. Unknown keys raise InputError naming them."""
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected a dict of feature settings, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{source}: unknown feature setting(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**data)
        except ValueError as exc:
            raise InputError(f"{source}: {exc}") from None

    def replace(self, **changes: Any) -> "FeatureSettings":
        """A copy with some fields changed (validated)."""
        return self.from_dict({**self.to_dict(), **changes})


def _check_int(obj: FeatureSettings, name: str, minimum: int) -> None:
    value = getattr(obj, name)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InputError(f"feature setting {name!r} must be an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"feature setting {name!r} must be >= {minimum}, got {value}")
    object.__setattr__(obj, name, int(value))


def _check_float(obj: FeatureSettings, name: str, minimum: float, strict: bool) -> None:
    value = getattr(obj, name)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"feature setting {name!r} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        raise InputError(f"feature setting {name!r} must be {'>' if strict else '>='} {minimum}, got {value}")
    object.__setattr__(obj, name, value)


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------
def resample(signal: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample a 1-D float signal; a no-op when the rates are equal.

    Uses soxr at "HQ" quality (librosa ≥ 0.10's default ``res_type='soxr_hq'``, so the output equals today's
    ``librosa.load(sr=target_rate)``), or ``scipy.signal.resample_poly`` when soxr is not installed. The
    authors ran librosa 0.8, whose default was resampy 'kaiser_best'; both are high-quality band-limited
    resamplers and only corpora not recorded at 16 kHz (RAVDESS, TESS) are resampled at all.
    """
    if orig_rate == target_rate or signal.size == 0:
        return signal
    try:
        import soxr
    except ImportError:
        import scipy.signal

        g = math.gcd(int(orig_rate), int(target_rate))
        out = scipy.signal.resample_poly(signal, target_rate // g, orig_rate // g)
        return out.astype(np.float32, copy=False)
    return soxr.resample(signal, orig_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Read an audio file as float32 mono at ``sample_rate``: shape (n_samples,).

    soundfile first (wav, flac, ogg, mp3 with libsndfile ≥ 1.1); librosa (audioread) as a fallback for other
    containers. Multichannel audio is averaged to mono, as librosa does; resampling only happens when the
    file's rate differs. Raises :class:`AudioError` when no decoder can read it (``'unreadable: ...'``) and,
    without opening it, when it is not a regular file, a broken symlink, missing or empty (reasons of
    :func:`rhemo.data.readers.file_problem`): opening a FIFO would block forever.
    """
    import soundfile

    path = os.fspath(path)
    problem = file_problem(path)
    if problem is not None:
        raise AudioError(path, problem)
    try:
        with soundfile.SoundFile(path) as f:
            rate = f.samplerate
            data = f.read(dtype="float32")  # 1-D for mono files, (n, channels) otherwise
    except Exception as sf_exc:  # libsndfile raises LibsndfileError / RuntimeError / TypeError
        data, rate = _load_with_librosa(path, sf_exc)
    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    data = np.ascontiguousarray(data, dtype=np.float32)
    return resample(data, int(rate), int(sample_rate))


def _load_with_librosa(path: str, sf_exc: Exception) -> tuple[np.ndarray, int]:
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, rate = librosa.load(path, sr=None, mono=True)
    except Exception as exc:
        first = str(sf_exc).strip().splitlines()[0] if str(sf_exc).strip() else type(sf_exc).__name__
        raise AudioError(path, f"unreadable: soundfile: {first}; librosa: {type(exc).__name__}") from None
    return np.asarray(data, dtype=np.float32), int(rate)


def check_signal(signal: np.ndarray, settings: FeatureSettings, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`AudioError` if the signal (1-D) is empty, contains NaN/inf, or is silent.

    Silent means ``max |x| <= settings.silence_threshold`` (the authors kept a file when its *signed* max
    exceeded 0.005; the absolute value is the intended test).
    """
    if signal.ndim != 1:
        raise AudioError(path, f"bad shape: expected a 1-D signal, got shape {signal.shape}")
    if signal.size == 0:
        raise AudioError(path, "empty: no samples")
    high, low = float(signal.max()), float(signal.min())  # max/min propagate NaN; no |x| temporary
    if not (math.isfinite(high) and math.isfinite(low)):
        raise AudioError(path, "non-finite: the signal contains NaN or inf")
    peak = max(high, -low)
    if peak <= settings.silence_threshold:
        raise AudioError(path, f"silent: max |x| = {peak:.3g} <= threshold {settings.silence_threshold}")


# ---------------------------------------------------------------------------------------------------------
# STFT and segmentation
# ---------------------------------------------------------------------------------------------------------
def stft_frame_count(n_samples: int, settings: FeatureSettings) -> int:
    """Frames scipy.signal.stft returns for ``n_samples`` (boundary='zeros', padded=True). 64000 → 501."""
    half = settings.n_fft // 2
    extended = n_samples + 2 * half
    hop = settings.hop_length
    extended += (-(extended - settings.n_fft)) % hop
    return (extended - settings.n_fft) // hop + 1


# Periodic ("DFT-even") cosine windows as scipy.signal.get_window builds them; coefficients of cos(2πkn/N).
_COSINE_WINDOWS = {"hamming": (0.54, 0.46), "hann": (0.5, 0.5), "hanning": (0.5, 0.5)}
_WINDOW_CACHE: dict[tuple[str, int], np.ndarray] = {}


def window_array(name: str, n_fft: int) -> np.ndarray:
    """``scipy.signal.get_window(name, n_fft)`` (periodic) as float64 (n_fft,).

    Hamming and Hann are built here so that worker processes need not import scipy.signal (about a second
    of start-up); other names go to scipy.
    """
    if name in _COSINE_WINDOWS:
        a0, a1 = _COSINE_WINDOWS[name]
        return a0 - a1 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    import scipy.signal

    return np.asarray(scipy.signal.get_window(name, n_fft), dtype=np.float64)


def _scaled_window(settings: FeatureSettings) -> np.ndarray:
    """float32 window divided by its sum: scipy's 'spectrum' scaling folded into the windowing product."""
    key = (settings.window, settings.n_fft)
    if key not in _WINDOW_CACHE:
        win = window_array(settings.window, settings.n_fft)
        _WINDOW_CACHE[key] = (win / win.sum()).astype(np.float32)
    return _WINDOW_CACHE[key]


def _stft_frames(signal: np.ndarray, settings: FeatureSettings, first: int, stop: int) -> np.ndarray:
    """|STFT| frames ``first .. stop-1`` (scipy numbering) of ``signal``: float32 (stop - first, n_fft//2 + 1).

    Frame f covers samples ``[f·hop - n_fft//2, f·hop + n_fft//2)`` of the signal, zeros outside it (scipy's
    boundary='zeros' and padded=True).
    """
    n_fft, hop = settings.n_fft, settings.hop_length
    offset = first * hop - n_fft // 2  # signal index of the buffer's first sample
    buf = np.zeros((stop - first - 1) * hop + n_fft, dtype=np.float32)
    lo, hi = max(offset, 0), min(offset + buf.shape[0], signal.shape[0])
    if hi > lo:
        buf[lo - offset:hi - offset] = signal[lo:hi]
    frames = np.lib.stride_tricks.sliding_window_view(buf, n_fft)[::hop]
    return np.abs(scipy.fft.rfft(frames * _scaled_window(settings), axis=1))


def magnitude_stft(signal: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """|STFT| with scipy.signal.stft semantics, time-major: float32 (n_frames, n_fft//2 + 1).

    Row t is frame t in natural time order (no reversal here). Equals
    ``np.abs(scipy.signal.stft(x, window=settings.window, nperseg=n_fft, noverlap=stft_overlap)[2]).T``.
    """
    return _stft_frames(np.asarray(signal), settings, 0, stft_frame_count(signal.shape[0], settings))


def segment_starts(n_frames: int, settings: FeatureSettings) -> list[int]:
    """Row offsets of the segments cut from a spectrogram of ``n_frames`` rows (authors' rule).

    Full windows start at 0, step, 2·step, …; if some start leaves a partial window and
    ``n_frames > frames·(1 + hop/segment)``, one extra window ``[n_frames - frames, n_frames)`` is added. (The
    reference appended that tail once per partial start, which duplicates it when segments overlap; we add
    it once. Without overlap — the default — there is at most one partial start, so this is identical.)
    """
    length = settings.frames_per_segment
    step = settings.segment_step_frames
    starts = []
    partial = False
    for start in range(0, n_frames, step):
        if start + length <= n_frames:
            starts.append(start)
        else:
            partial = True
    ratio = settings.segment_hop_seconds / settings.segment_seconds
    if partial and n_frames > length + length * ratio:
        starts.append(n_frames - length)
    return starts


def audio_to_segments(signal: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Signal (n_samples,) at ``settings.sample_rate`` → float32 (S, time_frames, freq_bins), S ≥ 1.

    The authors' pipeline steps 3-7 (see the module docstring). ``signal`` should have passed
    :func:`check_signal`.

    Example:
        >>> s = FeatureSettings()
        >>> audio_to_segments(np.ones(9 * 16000, np.float32), s).shape   # 9 s: 2 full windows + tail
        (3, 512, 128)
    """
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ValueError(f"audio_to_segments: expected a 1-D signal, got shape {signal.shape}")
    if signal.shape[0] < settings.segment_samples:
        signal = np.concatenate([signal, np.zeros(settings.segment_samples - signal.shape[0], signal.dtype)])
    n_frames = stft_frame_count(signal.shape[0], settings)
    starts = segment_starts(n_frames, settings)
    rows = min(settings.frames_per_segment, settings.time_frames)
    # Only rows [first_row, stop_row) of the oriented spectrogram are stored (a 6 s file keeps 501 of its
    # 751 frames), so only their frames are transformed.
    first_row, stop_row = min(starts), max(starts) + rows
    if settings.time_reversed:  # oriented row r = frame n_frames - 1 - r (np.rot90)
        mag = _stft_frames(signal, settings, n_frames - stop_row, n_frames - first_row)[::-1]
    else:
        mag = _stft_frames(signal, settings, first_row, stop_row)
    cols = min(mag.shape[1], settings.freq_bins)
    out = np.zeros((len(starts), settings.time_frames, settings.freq_bins), dtype=np.float32)
    for i, start in enumerate(starts):
        out[i, :rows, :cols] = mag[start - first_row:start - first_row + rows, :cols]
    return out


def file_to_segments(path: str | os.PathLike, settings: FeatureSettings) -> np.ndarray:
    """Load, check and segment one file: float32 (S, time_frames, freq_bins). Raises AudioError."""
    signal = load_audio(path, settings.sample_rate)
    check_signal(signal, settings, path)
    return audio_to_segments(signal, settings)
