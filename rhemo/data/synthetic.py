"""Synthetic, speech-like emotional corpora in the exact on-disk layouts of IEMOCAP, RAVDESS, EmoDB and TESS.

The demo and the test-suite cannot ship the real corpora, so this module writes stand-ins that every corpus
reader can be run on. The audio is made with a small source-filter model, in numpy and scipy only:

* a glottal source: a Rosenberg pulse train whose F0 follows a contour (phrase declination, pitch accents,
  slow wander), with jitter, shimmer and aspiration noise;
* a vocal tract: five 2nd-order resonators whose frequencies glide between vowel targets, updated every 10 ms;
* syllable rhythm: vowel nuclei with fricative / plosive onsets and codas, word gaps, pauses, inhalations,
  and a low room-noise floor.

Emotion is carried by prosody only: F0 level and range, speaking rate, loudness and voice quality (pressed
versus breathy voice: open quotient, spectral tilt, aspiration, jitter). Every utterance draws its parameters
from a class-conditional distribution with a large spread, and speakers add their own F0, vocal-tract length,
rate and loudness, so the classes overlap: a model can learn them, but not perfectly.

Layouts (``make_corpus(root, layout=...)``):

========  =====================================================================================  ========
layout    files                                                                                  rate
========  =====================================================================================  ========
iemocap   ``SessionN/sentences/wav/<dialog>/<dialog>_<F|M>NNN.wav`` and                          16 kHz
          ``SessionN/dialog/EmoEvaluation/<dialog>.txt`` (labels, V/A/D, evaluator lines)
ravdess   ``Actor_NN/03-01-EE-II-SS-RR-NN.wav`` (odd actor = male; one file is stereo)           48 kHz
emodb     ``wav/03a01Fa.wav`` (speaker, text, emotion letter W/L/E/A/F/T/N, version)              16 kHz
tess      ``OAF_angry/OAF_back_angry.wav``, ``YAF_pleasant_surprised/YAF_back_ps.wav`` ...        24.414 kHz
folder    ``<label>/<speaker>_NNNNN.wav`` (labels neutral, angry, happy, sad)                     16 kHz
========  =====================================================================================  ========

Every corpus gets ``synthetic_corpus.json`` at its root: generator version, arguments, label counts, the
speakers' traits and one record per utterance (path, label, speaker, session, V/A/D, seconds). The same seed
gives byte-identical files.

Example::

    >>> import tempfile
    >>> from rhemo.data.synthetic import make_corpus
    >>> root = make_corpus(tempfile.mkdtemp() + '/iemocap', 'iemocap', n_utterances=10, sessions=1)
    >>> sorted(p.name for p in root.iterdir())
    ['Session1', 'synthetic_corpus.json']

Command line: ``python -m rhemo.data.synthetic --layout iemocap --output DIR --utterances 200 --seed 0``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pickle
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal, special

from rhemo.atomic import write_text
from rhemo.errors import InputError

GENERATOR_VERSION = "1.0"
MANIFEST_NAME = "synthetic_corpus.json"
LAYOUTS = ("iemocap", "ravdess", "emodb", "tess", "folder")
NATIVE_SAMPLE_RATES = {"iemocap": 16000, "ravdess": 48000, "emodb": 16000, "tess": 24414, "folder": 16000}
# IEMOCAP-like spread: under 4 s (zero-padded to one segment) up to past 8.01 s (where the extra tail
# segment of the reference segmentation appears).
DEFAULT_SECONDS = {"iemocap": (1.5, 11.0), "ravdess": (3.0, 4.5), "emodb": (1.5, 5.0), "tess": (1.2, 2.4),
                   "folder": (1.5, 8.0)}

# Stream ids keep the random draws of the corpus plan, the speakers and each utterance independent, so that
# e.g. changing how an utterance is synthesised never changes which labels the corpus gets.
_STREAM_PLAN, _STREAM_SPEAKER, _STREAM_UTTERANCE = 1, 2, 3
_LAYOUT_CODE = {name: i for i, name in enumerate(LAYOUTS)}


class SyntheticCorpusError(InputError):
    """Bad arguments to the generator, or an output folder it must not write into."""


# ----------------------------------------------------------------------------------------------- emotions

@dataclass(frozen=True)
class Delivery:
    """How speech is delivered; shared by an emotion's centre (:class:`Style`) and one utterance (:class:`Prosody`).

    f0_range: pitch-accent height in semitones; rate: syllables per second; level_db: loudness relative to
    neutral; tension: -1 breathy .. +1 pressed voice; jitter: period-to-period F0 perturbation in percent;
    pause: probability of a pause after a word; f1_scale: jaw opening (F1 factor).
    """

    f0_range: float
    rate: float
    level_db: float
    tension: float
    jitter: float
    pause: float
    f1_scale: float


@dataclass(frozen=True, kw_only=True)
class Style(Delivery):
    """Class-conditional centre of the prosody of one emotion (the within-class spread is added per utterance).

    f0_shift: semitones above the speaker's base F0; vad: mean valence, arousal, dominance on IEMOCAP's 1-5
    scale; the other fields are :class:`Delivery`'s.
    """

    f0_shift: float
    vad: tuple[float, float, float]


def _style(f0_shift: float, f0_range: float, rate: float, level_db: float, tension: float, jitter: float,
           pause: float, f1_scale: float, vad: tuple[float, float, float]) -> Style:
    """A :class:`Style` from one row of the table below (F0 shift first, as the columns are read)."""
    return Style(f0_range, rate, level_db, tension, jitter, pause, f1_scale, f0_shift=f0_shift, vad=vad)


STYLES = {
    "neutral": _style(0.0, 2.5, 4.2, 0.0, 0.0, 1.0, 0.15, 1.00, (3.0, 2.6, 2.9)),
    "angry": _style(2.5, 4.0, 4.9, 6.0, 0.8, 1.4, 0.10, 1.06, (1.9, 3.7, 3.9)),
    "happy": _style(4.0, 6.0, 4.6, 3.0, 0.3, 1.0, 0.12, 1.04, (3.9, 3.2, 3.2)),
    "sad": _style(-2.0, 1.2, 3.1, -6.0, -0.7, 1.7, 0.30, 0.96, (2.1, 2.2, 2.5)),
    "excited": _style(5.0, 6.5, 5.1, 4.5, 0.4, 1.1, 0.10, 1.05, (3.9, 3.7, 3.4)),
    "frustrated": _style(1.0, 3.0, 4.4, 2.0, 0.5, 1.3, 0.18, 1.02, (2.0, 3.1, 3.3)),
    "surprised": _style(5.5, 8.0, 4.3, 2.5, 0.1, 1.0, 0.15, 1.04, (3.2, 3.6, 3.0)),
    "fearful": _style(5.0, 3.5, 5.3, -1.0, -0.2, 3.0, 0.20, 1.00, (2.1, 3.4, 2.5)),
    "disgusted": _style(-1.0, 3.0, 3.5, 1.0, 0.4, 1.5, 0.25, 0.98, (1.9, 3.1, 3.4)),
    "calm": _style(-1.0, 1.8, 3.7, -3.0, -0.4, 0.8, 0.20, 0.99, (3.4, 2.0, 2.8)),
    "bored": _style(-2.0, 1.0, 3.4, -3.0, -0.3, 1.2, 0.25, 0.97, (2.3, 1.8, 2.4)),
}
# 'ambiguous' (IEMOCAP's xxx: the evaluators did not agree) blends two of these at random.
_AMBIGUOUS_SOURCES = ("neutral", "angry", "happy", "sad", "frustrated", "excited")
EMOTION_STYLES = tuple(STYLES) + ("ambiguous",)

# Within-class spread (standard deviations); large on purpose so that the classes overlap.
_SPREAD_F0_SEMITONES = 2.0
_SPREAD_LOG_RANGE = 0.35
_SPREAD_LOG_RATE = 0.15
_SPREAD_LEVEL_DB = 3.0
_SPREAD_TENSION = 0.35
_SPREAD_LOG_JITTER = 0.3
_SPREAD_PAUSE = 0.06

# IEMOCAP label code -> (style, share of the corpus). Real IEMOCAP has far more xxx/fru; the demo wants the
# four paper classes to dominate while the 'complete' and 'exc merged' views still differ from the 4-class one.
IEMOCAP_LABELS = {"neu": ("neutral", 0.24), "ang": ("angry", 0.17), "hap": ("happy", 0.14),
                  "sad": ("sad", 0.17), "exc": ("excited", 0.09), "fru": ("frustrated", 0.09),
                  "sur": ("surprised", 0.03), "xxx": ("ambiguous", 0.07)}
_IEMOCAP_CATEGORY_NAMES = {"neu": "Neutral", "ang": "Anger", "hap": "Happiness", "sad": "Sadness",
                           "exc": "Excited", "fru": "Frustration", "sur": "Surprise", "fea": "Fear",
                           "dis": "Disgust", "oth": "Other"}
RAVDESS_EMOTIONS = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust",
                    8: "surprised"}
_RAVDESS_STYLE = {"disgust": "disgusted"}
EMODB_EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
                  "N": "neutral"}
_EMODB_STYLE = {"W": "angry", "L": "bored", "E": "disgusted", "A": "fearful", "F": "happy", "T": "sad",
                "N": "neutral"}
EMODB_SPEAKERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M", "13": "F", "14": "F",
                  "15": "M", "16": "F"}
EMODB_TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")
# TESS emotion -> (file-name suffix, style, folder name per speaker); the odd capitalisation is the real one.
TESS_EMOTIONS = {
    "angry": ("angry", "angry", {"OAF": "OAF_angry", "YAF": "YAF_angry"}),
    "disgust": ("disgust", "disgusted", {"OAF": "OAF_disgust", "YAF": "YAF_disgust"}),
    "fear": ("fear", "fearful", {"OAF": "OAF_Fear", "YAF": "YAF_fear"}),
    "happy": ("happy", "happy", {"OAF": "OAF_happy", "YAF": "YAF_happy"}),
    "neutral": ("neutral", "neutral", {"OAF": "OAF_neutral", "YAF": "YAF_neutral"}),
    "pleasant_surprise": ("ps", "surprised", {"OAF": "OAF_Pleasant_surprise", "YAF": "YAF_pleasant_surprised"}),
    "sad": ("sad", "sad", {"OAF": "OAF_Sad", "YAF": "YAF_sad"}),
}
TESS_WORDS = ("back", "bar", "base", "bath", "bean", "beg", "bite", "boat", "bone", "book", "bought", "burn",
              "cab", "calm", "came", "cause", "chain", "chair", "chalk", "chat", "check", "cheek", "chief",
              "choice", "cool", "dab", "date", "dead", "death", "deep", "dime", "dip", "ditch", "dodge", "dog",
              "doll", "door", "fail", "fall", "far", "fat", "fit", "five", "food", "gap", "gas", "gaze", "germ",
              "get", "gin", "goal", "good", "goose", "gun", "half", "hall", "hash", "hate", "have", "haze",
              "hire", "hit", "hole", "home", "hurl", "jail", "jar", "join", "judge", "juice", "keen", "keep",
              "keg", "kick", "kill", "king", "kite", "knock", "late", "laud", "lean", "learn", "lease", "lid",
              "life", "limb", "live", "loaf", "long", "lore", "lose", "lot", "love", "luck", "make", "match",
              "merge", "mess", "met", "mill", "mob", "mode", "mood", "moon", "mop", "mouse", "nag", "name",
              "near", "neat", "nice", "note", "numb", "pad", "page", "pain", "pass", "pearl", "peg", "perch",
              "phone", "pick", "pike", "pole", "pool", "puff", "rag", "raid", "rain", "raise", "rat", "reach",
              "read", "red", "ring", "ripe", "road", "room", "rose", "rot", "rough", "rush", "said", "sail",
              "search", "seize", "sell", "shack", "shall", "shawl", "sheep", "shirt", "should", "shout",
              "size", "soap", "soup", "sour", "south", "sub", "such", "sure", "take", "talk", "tape", "team",
              "tell", "thin", "third", "thought", "thumb", "time", "tip", "tire", "ton", "tool", "tough",
              "turn", "vine", "voice", "void", "vote", "wag", "walk", "wash", "week", "wheat", "when",
              "which", "whip", "white", "wife", "wire", "witch", "yearn", "yes", "young", "youth", "jug",
              "wheel")
FOLDER_LABELS = ("neutral", "angry", "happy", "sad")


# ----------------------------------------------------------------------------------------------- speakers

@dataclass(frozen=True)
class Speaker:
    """Fixed traits of one synthetic talker.

    f0_hz: base F0 of neutral speech; formant_scale: inverse vocal-tract length factor (1 = adult male);
    rate_factor: multiplies the speaking rate; level_db: loudness offset; tension: voice-quality offset;
    jitter_extra: added jitter in percent (older voices).
    """

    speaker_id: str
    gender: str
    f0_hz: float
    formant_scale: float
    rate_factor: float
    level_db: float
    tension: float
    jitter_extra: float


def make_speaker(speaker_id: str, gender: str, seed: int, key: tuple[int, ...], older: bool = False) -> Speaker:
    """Draw the traits of speaker ``speaker_id`` ('F' or 'M'); the same (seed, key) gives the same speaker.

    >>> a = make_speaker('Ses01F', 'F', 0, (0, 1, 0)); b = make_speaker('Ses02F', 'F', 0, (0, 2, 0))
    >>> a.f0_hz != b.f0_hz and a == make_speaker('Ses01F', 'F', 0, (0, 1, 0))
    True
    """
    if gender not in ("F", "M"):
        raise SyntheticCorpusError(f"speaker {speaker_id!r}: gender must be 'F' or 'M', got {gender!r}")
    rng = np.random.default_rng([seed, _STREAM_SPEAKER, *key])
    if gender == "F":
        f0 = rng.normal(205.0, 18.0) - (30.0 if older else 0.0)
        scale = rng.normal(1.16, 0.04)
    else:
        f0 = rng.normal(118.0, 11.0)
        scale = rng.normal(1.0, 0.04)
    return Speaker(speaker_id=speaker_id, gender=gender, f0_hz=float(np.clip(f0, 80.0, 280.0)),
                   formant_scale=float(scale), rate_factor=float(np.exp(rng.normal(0.0, 0.08))),
                   level_db=float(rng.normal(0.0, 1.5)), tension=float(rng.normal(0.0, 0.15)),
                   jitter_extra=0.6 if older else 0.0)


# ----------------------------------------------------------------------------------------------- prosody

@dataclass(frozen=True, kw_only=True)
class Prosody(Delivery):
    """Parameters of one utterance: its emotion ``style``, its F0 ``f0_hz``, the speaker's ``formant_scale``
    (vocal-tract length factor) and the :class:`Delivery` fields."""

    style: str
    f0_hz: float
    formant_scale: float


_STYLE_FIELDS = ("f0_shift", "f0_range", "rate", "level_db", "tension", "jitter", "pause", "f1_scale")


def _style_vector(name: str) -> np.ndarray:
    style = STYLES[name]
    return np.array([getattr(style, f) for f in _STYLE_FIELDS] + list(style.vad))


def _style_centre(style: str, rng: np.random.Generator) -> np.ndarray:
    """Centre of the class distribution as a vector (_STYLE_FIELDS then V, A, D)."""
    if style == "ambiguous":
        first, second = rng.choice(len(_AMBIGUOUS_SOURCES), size=2, replace=False)
        weight = rng.uniform(0.3, 0.7)
        return (weight * _style_vector(_AMBIGUOUS_SOURCES[first])
                + (1 - weight) * _style_vector(_AMBIGUOUS_SOURCES[second]))
    if style not in STYLES:
        raise SyntheticCorpusError(f"unknown emotion style {style!r}; expected one of {EMOTION_STYLES}")
    return _style_vector(style)


def draw_prosody(rng: np.random.Generator, style: str, speaker: Speaker,
                 intensity: float = 1.0) -> tuple[Prosody, np.ndarray]:
    """Draw one utterance's prosody for an emotion ``style`` (a key of STYLES or 'ambiguous').

    ``intensity`` scales the distance from neutral (RAVDESS 'strong' = 1.5). Returns the prosody and a latent
    (valence, arousal, dominance) on the 1-5 scale, which moves with the drawn loudness and rate.
    """
    neutral = _style_vector("neutral")
    centre = neutral + intensity * (_style_centre(style, rng) - neutral)
    c = dict(zip(_STYLE_FIELDS + ("v", "a", "d"), centre))
    z = rng.normal(size=7)
    level_dev = _SPREAD_LEVEL_DB * z[3]
    rate_dev = _SPREAD_LOG_RATE * z[2]
    prosody = Prosody(
        style=style,
        f0_hz=float(speaker.f0_hz * 2.0 ** ((c["f0_shift"] + _SPREAD_F0_SEMITONES * z[0]) / 12.0)),
        f0_range=float(c["f0_range"] * np.exp(_SPREAD_LOG_RANGE * z[1])),
        rate=float(c["rate"] * speaker.rate_factor * np.exp(rate_dev)),
        level_db=float(c["level_db"] + speaker.level_db + level_dev),
        tension=float(np.clip(c["tension"] + speaker.tension + _SPREAD_TENSION * z[4], -1.2, 1.2)),
        jitter=float(c["jitter"] * np.exp(_SPREAD_LOG_JITTER * z[5]) + speaker.jitter_extra),
        pause=float(np.clip(c["pause"] + _SPREAD_PAUSE * z[6], 0.02, 0.6)),
        formant_scale=speaker.formant_scale,
        f1_scale=float(c["f1_scale"]),
    )
    # Louder / faster than the class centre reads as more aroused and dominant, so V/A/D carry information
    # beyond the class label.
    latent = np.array([c["v"] + rng.normal(0.0, 0.45),
                       c["a"] + 0.35 * z[3] + 0.25 * z[2] + rng.normal(0.0, 0.35),
                       c["d"] + 0.3 * z[3] + rng.normal(0.0, 0.4)])
    return prosody, latent


def rate_vad(rng: np.random.Generator, latent: np.ndarray, n_evaluators: int) -> np.ndarray:
    """Integer 1-5 ratings (n_evaluators, 3) of valence, arousal, dominance around a latent value."""
    ratings = np.rint(latent[None, :] + rng.normal(0.0, 0.5, size=(n_evaluators, 3)))
    return np.clip(ratings, 1, 5).astype(int)


# ----------------------------------------------------------------------------------------------- synthesis

# Vowel targets F1-F3 (Hz) of an adult male voice: i, I, E, ae, a, O, U, u, V, 3r, schwa.
_VOWELS = np.array([[270, 2290, 3010], [390, 1990, 2550], [530, 1840, 2480], [660, 1720, 2410],
                    [730, 1090, 2440], [570, 840, 2410], [440, 1020, 2240], [300, 870, 2240],
                    [640, 1190, 2390], [490, 1350, 1690], [500, 1500, 2500]], dtype=float)
_UPPER_FORMANTS = np.array([3500.0, 4500.0])
_BANDWIDTHS = np.array([70.0, 100.0, 140.0, 220.0, 280.0])
_BLOCK_SECONDS = 0.01
# Fricative noise bands (centre Hz, Q): s, sh, f.
_FRICATIVES = ((5500.0, 2.0), (3000.0, 2.0), (1800.0, 0.7))


@dataclass
class _Events:
    nuclei: list  # (start, end, vowel, amplitude, accent) in samples / relative units
    consonants: list  # (start, end, kind) kind 0-2 fricatives, 3 plosive burst
    breaths: list  # (start, end)
    phrases: list  # (start, end)


def _plan_events(p: Prosody, n: int, sr: int, rng: np.random.Generator) -> _Events:
    """Lay out syllables, word gaps, pauses and inhalations over n samples."""
    ev = _Events([], [], [], [])
    seconds = n / sr
    t = min(rng.uniform(0.08, 0.3), 0.1 * seconds)
    end = seconds - min(rng.uniform(0.08, 0.25), 0.1 * seconds)
    syllable = 1.0 / p.rate
    phrase_start = t
    while t < end - 0.1 or not ev.nuclei:
        n_syl = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        stressed = int(rng.integers(n_syl))
        for k in range(n_syl):
            dur = syllable * rng.lognormal(0.0, 0.25)
            pos = t
            if rng.random() < 0.65:
                c = min(0.35 * dur, rng.uniform(0.04, 0.1))
                if rng.random() < 0.45:  # plosive: closure silence, then a short burst
                    ev.consonants.append((pos + 0.6 * c, pos + c, 3))
                else:
                    ev.consonants.append((pos, pos + c, int(rng.integers(3))))
                pos += c
            nucleus_end = t + dur * rng.uniform(0.8, 0.95)
            if rng.random() < 0.25:
                coda = min(0.25 * dur, rng.uniform(0.03, 0.08))
                ev.consonants.append((nucleus_end - 0.3 * coda, nucleus_end + 0.7 * coda, int(rng.integers(3))))
            accent = rng.uniform(0.5, 1.0) if k == stressed else rng.uniform(0.0, 0.3)
            amplitude = 1.0 if k == stressed else rng.uniform(0.55, 0.85)
            ev.nuclei.append((pos, max(nucleus_end, pos + 0.04), int(rng.integers(len(_VOWELS))), amplitude,
                              accent))
            t += dur
            if t >= end:
                break
        if rng.random() < p.pause:
            pause = rng.uniform(0.12, 0.45) * math.sqrt(4.2 / p.rate)
            ev.phrases.append((phrase_start, t))
            if pause > 0.25 and rng.random() < 0.5:
                ev.breaths.append((t + 0.2 * pause, t + 0.85 * pause))
            t += pause
            phrase_start = t
        else:
            t += rng.uniform(0.0, 0.04)
    ev.phrases.append((phrase_start, min(t, n / sr)))

    def clip(a: float) -> int:
        return int(np.clip(round(a * sr), 0, n))

    ev.nuclei = [(clip(s), clip(e), v, a, acc) for s, e, v, a, acc in ev.nuclei if clip(e) - clip(s) > 8]
    if not ev.nuclei:  # the formant glides need at least one vowel
        ev.nuclei = [(n // 4, 3 * n // 4, len(_VOWELS) - 1, 1.0, 0.5)]
    ev.consonants = [(clip(s), clip(e), kind) for s, e, kind in ev.consonants if clip(e) - clip(s) > 4]
    ev.breaths = [(clip(s), clip(e)) for s, e in ev.breaths if clip(e) - clip(s) > 8]
    ev.phrases = [(clip(s), clip(e)) for s, e in ev.phrases]
    return ev


def _raised_cosine_gate(length: int, ramp: int) -> np.ndarray:
    gate = np.ones(length)
    ramp = max(1, min(ramp, length // 2))
    edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    gate[:ramp] = edge
    gate[length - ramp:] = edge[::-1]
    return gate


def _f0_contour(p: Prosody, ev: _Events, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """F0 in Hz per sample: declination per phrase, pitch accents on syllables, slow wander."""
    hop = max(1, int(sr * 0.005))
    frames = np.arange(0, n + hop, hop, dtype=float)
    semis = np.zeros(frames.size)
    for start, stop in ev.phrases:
        inside = (frames >= start) & (frames < max(stop, start + 1))
        progress = (frames[inside] - start) / max(stop - start, 1)
        semis[inside] += p.f0_range * (0.35 - 0.7 * progress)
    for start, stop, _, _, accent in ev.nuclei:
        centre, width = 0.5 * (start + stop), 0.45 * (stop - start) + 0.02 * sr
        semis += p.f0_range * accent * np.exp(-0.5 * ((frames - centre) / width) ** 2)
    wander = np.cumsum(rng.normal(0.0, 0.12, frames.size))
    wander = signal.lfilter([0.05], [1.0, -0.95], wander - wander.mean())
    semis += wander
    f0 = p.f0_hz * 2.0 ** ((semis - semis.mean()) / 12.0)
    return np.interp(np.arange(n), frames, np.clip(f0, 55.0, 650.0))


def _glottal_source(p: Prosody, f0: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Differentiated Rosenberg pulse train with jitter, shimmer and flow-modulated aspiration noise."""
    rough_phase = np.cumsum(f0) / sr
    n_periods = int(rough_phase[-1]) + 2
    jitter = 1.0 + (p.jitter / 100.0) * rng.standard_normal(n_periods)
    phase = np.cumsum(f0 * jitter[rough_phase.astype(int)]) / sr
    period = phase.astype(int)
    frac = phase - period
    open_quotient = float(np.clip(0.6 - 0.15 * p.tension, 0.35, 0.85))
    rise, fall = 0.62 * open_quotient, 0.38 * open_quotient
    flow = np.zeros(f0.size)
    opening = frac < rise
    closing = ~opening & (frac < rise + fall)
    flow[opening] = 0.5 - 0.5 * np.cos((np.pi / rise) * frac[opening])
    flow[closing] = np.cos((0.5 * np.pi / fall) * (frac[closing] - rise))
    shimmer = 1.0 + (0.03 + 0.03 * abs(p.tension)) * rng.standard_normal(int(period[-1]) + 2)
    flow *= shimmer[period]
    excitation = np.diff(flow, prepend=0.0) * sr / np.maximum(f0, 1.0)
    breathiness = float(np.clip(0.08 + 0.25 * (0.3 - p.tension), 0.02, 0.6))
    aspiration = breathiness * rng.standard_normal(f0.size, dtype=np.float32) * (0.25 + flow)
    tilt = float(np.clip(0.35 - 0.3 * p.tension, 0.0, 0.85))
    return signal.lfilter([1.0 - tilt], [1.0, -tilt], excitation) + aspiration


def _vocal_tract(x: np.ndarray, p: Prosody, ev: _Events, sr: int) -> np.ndarray:
    """Filter x through five resonators whose frequencies glide between the vowel targets (10 ms blocks)."""
    n = x.size
    block = max(1, int(round(sr * _BLOCK_SECONDS)))
    n_blocks = -(-n // block)
    centres = np.array([0.5 * (s + e) for s, e, *_ in ev.nuclei])
    targets = _VOWELS[[v for _, _, v, _, _ in ev.nuclei]]
    t = (np.arange(n_blocks) + 0.5) * block
    freqs = np.empty((n_blocks, 5))
    for k in range(3):
        freqs[:, k] = np.interp(t, centres, targets[:, k])
    freqs[:, 3:] = _UPPER_FORMANTS
    freqs *= p.formant_scale
    freqs[:, 0] *= p.f1_scale
    freqs = np.minimum(freqs, 0.45 * sr)
    bandwidths = _BANDWIDTHS * (1.0 + 0.25 * max(0.0, -p.tension))
    r = np.exp(-np.pi * bandwidths / sr)
    c = 2.0 * r * np.cos(2.0 * np.pi * freqs / sr)
    # The five resonators of a block are merged into one 10th-order section: one lfilter call per block is
    # several times cheaper than sosfilt, and in float64 the poles (radius <= 0.99, spread) stay accurate.
    denominator = np.zeros((n_blocks, 11))
    denominator[:, 0] = 1.0
    for k in range(5):
        shifted1 = np.zeros_like(denominator)
        shifted2 = np.zeros_like(denominator)
        shifted1[:, 1:] = denominator[:, :-1]
        shifted2[:, 2:] = denominator[:, :-2]
        denominator = denominator - c[:, k:k + 1] * shifted1 + r[k] ** 2 * shifted2
    gain = np.prod(1.0 - c + r ** 2, axis=1)  # unity gain at DC, as in cascade formant synthesisers
    y = np.empty(n)
    state = np.zeros(10)
    for i in range(n_blocks):
        seg = slice(i * block, min(n, (i + 1) * block))
        y[seg], state = signal.lfilter(gain[i:i + 1], denominator[i], x[seg], zi=state)
    return y


@functools.lru_cache(maxsize=64)
def _noise_filter(kind: str, centre: float, q: float, sr: int) -> np.ndarray:
    """Cached 2nd-order Butterworth band-pass (or high-pass) sections for the consonant and breath noises."""
    if kind == "highpass":
        return signal.butter(2, centre, btype="highpass", fs=sr, output="sos")
    centre = min(centre, 0.42 * sr)
    low, high = centre / (1 + 0.5 / q), min(centre * (1 + 0.5 / q), 0.47 * sr)
    return signal.butter(2, [low, high], btype="bandpass", fs=sr, output="sos")


def _bandpass(x: np.ndarray, centre: float, q: float, sr: int) -> np.ndarray:
    return signal.sosfilt(_noise_filter("bandpass", centre, q, sr), x)


def synthesize(p: Prosody, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Render one utterance of ``seconds`` at ``sample_rate``; float64 mono in [-1, 1], shape (n,).

    >>> spk = make_speaker('s', 'F', 0, (0,))
    >>> rng = np.random.default_rng(0)
    >>> prosody, _ = draw_prosody(rng, 'angry', spk)
    >>> synthesize(prosody, 1.0, 16000, rng).shape
    (16000,)
    """
    n = int(round(seconds * sample_rate))
    if n < int(0.3 * sample_rate):
        raise SyntheticCorpusError(f"utterance of {seconds} s is too short; need at least 0.3 s")
    sr = sample_rate
    ev = _plan_events(p, n, sr, rng)

    voicing = np.zeros(n)
    for start, stop, _, amplitude, _ in ev.nuclei:
        voicing[start:stop] = amplitude * _raised_cosine_gate(stop - start, int(0.02 * sr))
    f0 = _f0_contour(p, ev, n, sr, rng)
    voiced = _vocal_tract(_glottal_source(p, f0, sr, rng) * voicing, p, ev, sr)
    active = voicing > 0.3
    # Loudness: the active-speech RMS is set in dBFS; emotion and speaker move it around -24 dBFS.
    target_rms = 10.0 ** ((-24.0 + p.level_db) / 20.0)
    voiced *= target_rms / max(float(np.sqrt(np.mean(voiced[active] ** 2))), 1e-9)

    # Noise is drawn per event, not over the whole file: most of the file needs none.
    noise = np.zeros(n)
    for start, stop, kind in ev.consonants:
        length = stop - start
        white = rng.standard_normal(length)
        if kind == 3:  # plosive burst: decaying high-passed noise
            burst = signal.sosfilt(_noise_filter("highpass", 0.1 * sr, 1.0, sr), white)
            noise[start:stop] += 0.45 * burst * np.exp(-np.arange(length) / (0.3 * length + 1))
        else:
            centre, q = _FRICATIVES[kind]
            gate = _raised_cosine_gate(length, int(0.01 * sr))
            noise[start:stop] += 0.35 * _bandpass(white, centre, q, sr) * gate
    noise *= target_rms * (1.0 + 0.3 * p.tension)
    for start, stop in ev.breaths:
        noise[start:stop] += (0.04 * target_rms * np.sin(np.linspace(0.0, np.pi, stop - start))
                              * _bandpass(rng.standard_normal(stop - start), 1200.0, 0.8, sr))
    hiss = rng.standard_normal(n, dtype=np.float32).astype(float)
    room = 0.3 * 10.0 ** (-62.0 / 20.0) * signal.lfilter([1.0], [1.0, -0.9], hiss)

    out = voiced + noise + room
    # A soft knee rather than clipping, so loud (angry) takes saturate like a real overdriven microphone.
    peak = np.abs(out)
    knee = 0.85
    over = peak > knee
    out[over] = np.sign(out[over]) * (knee + (1 - knee) * np.tanh((peak[over] - knee) / (1 - knee)))
    return out


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float [-1, 1] -> int16 with rounding and clipping (shape kept)."""
    return np.clip(np.rint(x * 32767.0), -32768, 32767).astype(np.int16)


def synthesize_utterance(style: str = "neutral", seconds: float = 2.0, sample_rate: int = 16000,
                         gender: str = "F", seed: int = 0) -> np.ndarray:
    """One standalone utterance (float32, shape (round(seconds*sample_rate),)) for hand-made test files.

    >>> x = synthesize_utterance('sad', seconds=1.5, seed=3)
    >>> x.dtype, x.shape
    (dtype('float32'), (24000,))
    """
    _check_seed(seed)
    rng = np.random.default_rng([seed, _STREAM_UTTERANCE, 99])
    speaker = make_speaker("standalone", gender, seed, (99,))
    prosody, _ = draw_prosody(rng, style, speaker)
    return synthesize(prosody, seconds, sample_rate, rng).astype(np.float32)


def draw_seconds(rng: np.random.Generator, low: float, high: float) -> float:
    """Truncated log-normal duration in [low, high], median sqrt(low*high), sigma ln(high/low)/4."""
    if high <= low:
        return float(low)
    mu, sigma = 0.5 * math.log(low * high), math.log(high / low) / 4.0
    a, b = special.ndtr((math.log(low) - mu) / sigma), special.ndtr((math.log(high) - mu) / sigma)
    return float(np.exp(mu + sigma * special.ndtri(rng.uniform(a, b))))


# ----------------------------------------------------------------------------------------------- corpus plans

@dataclass
class _Item:
    """One planned file. ``meta`` holds layout-specific fields (IEMOCAP dialog, order in the dialog)."""

    relpath: str
    label: str
    style: str
    speaker: Speaker
    intensity: float = 1.0
    session: int | None = None
    channels: int = 1
    meta: dict | None = None


def _quotas(n: int, weights: dict[str, float]) -> dict[str, int]:
    """Split n into integer counts proportional to weights (largest remainder, ties in dict order)."""
    names = list(weights)
    raw = np.array([weights[k] for k in names], dtype=float)
    raw = raw / raw.sum() * n
    counts = np.floor(raw).astype(int)
    order = sorted(range(len(names)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - counts.sum()]:
        counts[i] += 1
    return dict(zip(names, counts.tolist()))


def _round_robin(groups: list[list], n: int) -> list:
    """Take n items cycling over groups (each already shuffled), so every group is represented early."""
    out, cursors = [], [0] * len(groups)
    while len(out) < n:
        progressed = False
        for g, items in enumerate(groups):
            if cursors[g] < len(items) and len(out) < n:
                out.append(items[cursors[g]])
                cursors[g] += 1
                progressed = True
        if not progressed:
            break
    return out


def _iemocap_dialogs(session: int) -> list[str]:
    """Dialog names of one session, the odd real-world spellings first so that small corpora contain them."""
    s = f"Ses{session:02d}"
    second = {1: f"{s}M_script01_1b", 3: f"{s}M_impro05a", 5: f"{s}M_script01_1b"}.get(session,
                                                                                       f"{s}M_script01_1")
    names = [f"{s}F_impro01", second, f"{s}F_script02_2", f"{s}M_impro03", f"{s}F_impro05",
             f"{s}M_script03_1", f"{s}F_impro07", f"{s}M_impro02", f"{s}F_script01_3", f"{s}M_impro06",
             f"{s}F_script03_2", f"{s}M_impro08", f"{s}F_impro04", f"{s}M_script02_1"]
    if session == 3:
        names += [f"{s}M_impro05b", f"{s}M_impro08a", f"{s}M_impro08b"]
    return names


def _plan_iemocap(n: int, seed: int, sessions: int, rng: np.random.Generator) -> list[_Item]:
    labels = [lab for lab, count in _quotas(n, {k: w for k, (_, w) in IEMOCAP_LABELS.items()}).items()
              for _ in range(count)]
    labels = [labels[i] for i in rng.permutation(n)]
    per_session = [n // sessions + (1 if s < n % sessions else 0) for s in range(sessions)]
    items, cursor = [], 0
    for s, count in enumerate(per_session, start=1):
        speakers = {g: make_speaker(f"Ses{s:02d}{g}", g, seed, (_LAYOUT_CODE["iemocap"], s, i))
                    for i, g in enumerate("FM")}
        pool = _iemocap_dialogs(s)
        n_dialogs = int(np.clip(math.ceil(count / 12), 1, len(pool)))
        bounds = np.linspace(0, count, n_dialogs + 1).round().astype(int)
        for d, dialog in enumerate(pool[:n_dialogs]):
            turns = {"F": 0, "M": 0}
            gender = "F" if rng.random() < 0.5 else "M"
            for order in range(bounds[d + 1] - bounds[d]):
                if order and rng.random() < 0.8:  # mostly alternating turns
                    gender = "M" if gender == "F" else "F"
                utt = f"{dialog}_{gender}{turns[gender]:03d}"
                turns[gender] += 1
                label = labels[cursor]
                cursor += 1
                items.append(_Item(f"Session{s}/sentences/wav/{dialog}/{utt}.wav", label,
                                   IEMOCAP_LABELS[label][0], speakers[gender], session=s,
                                   meta={"dialog": dialog, "utterance_id": utt, "order": order}))
    return items


def _plan_ravdess(n: int, seed: int, rng: np.random.Generator) -> list[_Item]:
    n_actors = int(np.clip(math.ceil(n / 10), 2, 24))
    actors = {a: make_speaker(f"Actor_{a:02d}", "M" if a % 2 else "F", seed, (_LAYOUT_CODE["ravdess"], a))
              for a in range(1, n_actors + 1)}
    groups = []
    for code, name in RAVDESS_EMOTIONS.items():
        combos = [(a, code, i, st, rep) for a in actors for i in ((1,) if code == 1 else (1, 2))
                  for st in (1, 2) for rep in (1, 2)]
        groups.append([combos[i] for i in rng.permutation(len(combos))])
    chosen = _round_robin(groups, n)
    stereo_every = 50  # a few real RAVDESS files are stereo; readers must downmix
    items = []
    for k, (a, code, intensity, statement, rep) in enumerate(chosen):
        name = RAVDESS_EMOTIONS[code]
        items.append(_Item(f"Actor_{a:02d}/03-01-{code:02d}-{intensity:02d}-{statement:02d}-{rep:02d}-{a:02d}.wav",
                           name, _RAVDESS_STYLE.get(name, name), actors[a],
                           intensity=1.5 if intensity == 2 else 1.0, channels=2 if k % stereo_every == 1 else 1))
    return items


def _plan_emodb(n: int, seed: int, rng: np.random.Generator) -> list[_Item]:
    speakers = {code: make_speaker(code, g, seed, (_LAYOUT_CODE["emodb"], int(code)))
                for code, g in EMODB_SPEAKERS.items()}
    groups = []
    for letter in EMODB_EMOTIONS:
        combos = [(spk, text, letter, version) for spk in speakers for text in EMODB_TEXTS for version in "ab"]
        groups.append([combos[i] for i in rng.permutation(len(combos))])
    return [_Item(f"wav/{spk}{text}{letter}{version}.wav", EMODB_EMOTIONS[letter], _EMODB_STYLE[letter],
                  speakers[spk], intensity=1.2)
            for spk, text, letter, version in _round_robin(groups, n)]


def _plan_tess(n: int, seed: int, rng: np.random.Generator) -> list[_Item]:
    speakers = {"OAF": make_speaker("OAF", "F", seed, (_LAYOUT_CODE["tess"], 0), older=True),
                "YAF": make_speaker("YAF", "F", seed, (_LAYOUT_CODE["tess"], 1))}
    groups = []
    for emotion in TESS_EMOTIONS:
        for spk in speakers:
            groups.append([(spk, emotion, TESS_WORDS[i]) for i in rng.permutation(len(TESS_WORDS))])
    items = []
    for spk, emotion, word in _round_robin(groups, n):
        suffix, style, folders = TESS_EMOTIONS[emotion]
        items.append(_Item(f"{folders[spk]}/{spk}_{word}_{suffix}.wav", emotion, style, speakers[spk],
                           intensity=1.2))
    return items


def _plan_folder(n: int, seed: int, rng: np.random.Generator) -> list[_Item]:
    speakers = [make_speaker(f"spk{i:02d}", "FM"[i % 2], seed, (_LAYOUT_CODE["folder"], i)) for i in range(6)]
    items = []
    for k in range(n):
        label = FOLDER_LABELS[k % len(FOLDER_LABELS)]
        speaker = speakers[int(rng.integers(len(speakers)))]
        items.append(_Item(f"{label}/{speaker.speaker_id}_{k:05d}.wav", label, label, speaker))
    return items


_CAPACITY = {"ravdess": 24 * 60, "emodb": len(EMODB_SPEAKERS) * len(EMODB_TEXTS) * 2 * len(EMODB_EMOTIONS),
             "tess": 2 * len(TESS_WORDS) * len(TESS_EMOTIONS)}


# ----------------------------------------------------------------------------------------------- IEMOCAP text files

def _emo_evaluation_block(rng: np.random.Generator, item: _Item, start: float, end: float,
                          ratings: np.ndarray, vad: np.ndarray) -> str:
    """One EmoEvaluation block: the turn line, then categorical (C-) and attribute (A-) evaluator lines."""
    utt = item.meta["utterance_id"]
    lines = [f"[{start:.4f} - {end:.4f}]\t{utt}\t{item.label}\t[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]"]
    others = [v for k, v in _IEMOCAP_CATEGORY_NAMES.items() if k != item.label]
    evaluators = sorted(rng.choice(6, size=3, replace=False) + 1)
    if item.label == "xxx":
        votes = list(rng.choice(list(_IEMOCAP_CATEGORY_NAMES.values()), size=3, replace=False))
    else:
        votes = [_IEMOCAP_CATEGORY_NAMES[item.label]] * 3
        if rng.random() < 0.4:
            votes[int(rng.integers(3))] = str(rng.choice(others))
    for e, vote in zip(evaluators, votes):
        lines.append(f"C-E{e}:\t{vote};\t()")
    if rng.random() < 0.5:
        lines.append(f"C-{item.speaker.gender}1:\t{votes[0]};\t()")
    for e, (v, a, d) in zip(evaluators, ratings):
        lines.append(f"A-E{e}:\tval {v}; act {a}; dom  {d};\t()")
    return "\n".join(lines) + "\n"


_FILLER_WORDS = ("well", "I", "you", "know", "that", "was", "really", "not", "what", "we", "just", "can't",
                 "believe", "it", "okay", "yeah", "so", "the", "thing", "is", "maybe", "sure", "go", "now")


def _write_iemocap_text(root: Path, items: list[_Item], records: list[dict], seed: int) -> None:
    """EmoEvaluation label files, plus the clutter a real IEMOCAP tree carries (sub-folders, ._ files, .pk)."""
    rng = np.random.default_rng([seed, _STREAM_PLAN, _LAYOUT_CODE["iemocap"], 1])
    by_dialog: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_dialog.setdefault(item.meta["dialog"], []).append(i)
    for dialog, members in by_dialog.items():
        session = items[members[0]].session
        emo_dir = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        blocks, transcript, categorical = [], [], []
        clock = rng.uniform(1.5, 8.0)
        for i in members:
            item, rec = items[i], records[i]
            start, end = clock, clock + rec["seconds"]
            clock = end + rng.uniform(0.2, 3.0)
            blocks.append(_emo_evaluation_block(rng, item, start, end, np.array(rec["ratings"]),
                                                np.array(rec["vad"])))
            words = " ".join(rng.choice(_FILLER_WORDS, size=int(rng.integers(2, 9))))
            transcript.append(f"{item.meta['utterance_id']} [{start:08.4f}-{end:08.4f}]: {words.capitalize()}.")
            categorical.append(f"{item.meta['utterance_id']} :{_IEMOCAP_CATEGORY_NAMES.get(item.label, 'Other')};"
                               f" ()")
        _write_text(emo_dir / f"{dialog}.txt",
                    "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" + "\n".join(blocks) + "\n")
        # Sub-folders and transcripts also mention the utterance ids: a reader must take labels only from
        # the top-level EmoEvaluation/<dialog>.txt.
        _write_text(emo_dir / "Categorical" / f"{dialog}_e2_cat.txt", "\n".join(categorical) + "\n")
        _write_text(emo_dir / "Attribute" / f"{dialog}_e3_atr.txt", "\n".join(categorical) + "\n")
        _write_text(root / f"Session{session}" / "dialog" / "transcriptions" / f"{dialog}.txt",
                    "\n".join(transcript) + "\n")
    first_of_session: dict[int, _Item] = {}
    for item in items:
        first_of_session.setdefault(item.session, item)
    for session, item in first_of_session.items():
        wav_dir = root / item.relpath.rsplit("/", 1)[0]
        # macOS AppleDouble companion: not audio, must be ignored by readers.
        apple = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4096 - 24)
        (wav_dir / f"._{item.meta['utterance_id']}.wav").write_bytes(apple)
        (wav_dir / f"{item.meta['dialog']}.pk").write_bytes(
            pickle.dumps({"dialog": item.meta["dialog"], "note": "not audio"}, protocol=4))


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


# ----------------------------------------------------------------------------------------------- writing

def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SyntheticCorpusError(f"seed must be a non-negative integer, got {seed!r}")


def _write_manifest(root: Path, manifest: dict) -> None:
    write_text(root / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")


def _is_manifest_temp(name: str) -> bool:
    """A temporary manifest left by an interrupted write (:func:`rhemo.atomic.atomic_path` names, or the
    ``<manifest>.tmp`` of earlier versions)."""
    return name.startswith(MANIFEST_NAME + ".") and name.endswith(".tmp")


def _prepare_root(root: Path, force: bool) -> None:
    """Make root ready: empty, or a previous synthetic corpus (whose entries are removed), or --force."""
    if root.exists() and not root.is_dir():
        raise SyntheticCorpusError(f"output {root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    existing = sorted(p.name for p in root.iterdir())
    if not existing:
        return
    manifest = root / MANIFEST_NAME
    previous = None
    if manifest.is_file():
        try:
            previous = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
    ours = (isinstance(previous, dict) and previous.get("generator") == __name__
            and isinstance(previous.get("entries"), list))
    if ours:
        entries = {e for e in previous["entries"] if isinstance(e, str) and e and "/" not in e and e not in
                   (".", "..")}
        foreign = [e for e in existing if e not in entries and e != MANIFEST_NAME and not _is_manifest_temp(e)]
        if foreign and not force:
            raise SyntheticCorpusError(
                f"output {root} holds a previous synthetic corpus plus other entries {foreign[:5]}; "
                f"use another folder or force=True / --force")
        for name in entries & set(existing):
            target = root / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        return
    if not force:
        raise SyntheticCorpusError(
            f"output {root} is not empty and does not hold a synthetic corpus ({MANIFEST_NAME} missing); "
            f"found {existing[:5]}; use an empty folder or force=True / --force")


def make_corpus(root, layout: str = "iemocap", n_utterances: int = 200, seed: int = 0,
                sample_rate: int | None = None, min_seconds: float | None = None,
                max_seconds: float | None = None, sessions: int = 5, force: bool = False,
                progress: bool = False) -> Path:
    """Write a synthetic corpus of ``n_utterances`` wav files in ``layout``'s real on-disk layout; returns root.

    sample_rate: None = the corpus's native rate (NATIVE_SAMPLE_RATES: RAVDESS 48 kHz, TESS 24414 Hz,
    others 16 kHz). min_seconds / max_seconds: None = DEFAULT_SECONDS[layout]. sessions: IEMOCAP sessions
    (1-5, each with one female and one male speaker). force: write into a non-empty folder that is not a
    previous synthetic corpus (nothing of it is deleted). A previous synthetic corpus in root is replaced.
    Raises SyntheticCorpusError on bad arguments or a foreign non-empty root.
    """
    args = _corpus_args(layout, n_utterances, seed, sample_rate, min_seconds, max_seconds, sessions)
    root = Path(root)
    _prepare_root(root, force)
    plan_rng = np.random.default_rng([seed, _STREAM_PLAN, _LAYOUT_CODE[layout]])
    if layout == "iemocap":
        items = _plan_iemocap(n_utterances, seed, sessions, plan_rng)
    else:
        items = {"ravdess": _plan_ravdess, "emodb": _plan_emodb, "tess": _plan_tess,
                 "folder": _plan_folder}[layout](n_utterances, seed, plan_rng)

    entries = sorted({item.relpath.split("/", 1)[0] for item in items})
    manifest = {"generator": __name__, "version": GENERATOR_VERSION, "rhemo_version": _rhemo_version(),
                "args": args, "complete": False, "entries": entries}
    _write_manifest(root, manifest)
    records = _write_utterances(root, items, args, progress)
    if layout == "iemocap":
        _write_iemocap_text(root, items, records, seed)

    counts: dict[str, int] = {}
    for rec in records:
        counts[rec["label"]] = counts.get(rec["label"], 0) + 1
    speakers = {item.speaker.speaker_id: asdict(item.speaker) for item in items}
    manifest.update(complete=True, label_counts=dict(sorted(counts.items())),
                    total_seconds=round(sum(r["seconds"] for r in records), 3),
                    speakers=dict(sorted(speakers.items())),
                    utterances=[{k: v for k, v in r.items() if k != "ratings"} for r in records])
    _write_manifest(root, manifest)
    return root


def _corpus_args(layout: str, n_utterances: int, seed: int, sample_rate: int | None, min_seconds: float | None,
                 max_seconds: float | None, sessions: int) -> dict:
    """The checked arguments of :func:`make_corpus`, defaults filled in, as recorded in the manifest."""
    if layout not in LAYOUTS:
        raise SyntheticCorpusError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    _check_seed(seed)
    if isinstance(n_utterances, bool) or not isinstance(n_utterances, (int, np.integer)) or n_utterances < 1:
        raise SyntheticCorpusError(f"n_utterances must be a positive integer, got {n_utterances!r}")
    if layout in _CAPACITY and n_utterances > _CAPACITY[layout]:
        raise SyntheticCorpusError(f"layout {layout!r} has at most {_CAPACITY[layout]} distinct file names "
                                   f"(as the real corpus), got n_utterances={n_utterances}")
    if isinstance(sessions, bool) or not isinstance(sessions, (int, np.integer)) or not 1 <= sessions <= 5:
        raise SyntheticCorpusError(f"sessions must be an integer in 1..5, got {sessions!r}")
    sr = NATIVE_SAMPLE_RATES[layout] if sample_rate is None else sample_rate
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not 8000 <= sr <= 192000:
        raise SyntheticCorpusError(f"sample_rate must be an integer in 8000..192000 Hz, got {sample_rate!r}")
    low, high = DEFAULT_SECONDS[layout]
    low = low if min_seconds is None else float(min_seconds)
    high = high if max_seconds is None else float(max_seconds)
    if not (0.5 <= low <= high <= 120.0):
        raise SyntheticCorpusError(f"need 0.5 <= min_seconds <= max_seconds <= 120, got {low}, {high}")
    return {"layout": layout, "n_utterances": int(n_utterances), "seed": int(seed), "sample_rate": int(sr),
            "min_seconds": low, "max_seconds": high, "sessions": int(sessions) if layout == "iemocap" else None}


def _write_utterances(root: Path, items: list[_Item], args: dict, progress: bool) -> list[dict]:
    """Synthesise and write every planned utterance (16-bit wav); returns one manifest record per item."""
    from tqdm import tqdm

    layout, seed, sr = args["layout"], args["seed"], args["sample_rate"]
    records = []
    for index, item in enumerate(tqdm(items, desc=f"synthetic {layout}", unit="utt", disable=not progress)):
        rng = np.random.default_rng([seed, _STREAM_UTTERANCE, _LAYOUT_CODE[layout], index])
        seconds = draw_seconds(rng, args["min_seconds"], args["max_seconds"])
        prosody, latent = draw_prosody(rng, item.style, item.speaker, item.intensity)
        audio = synthesize(prosody, seconds, sr, rng)
        ratings = rate_vad(rng, latent, 2 if rng.random() < 0.6 else 3)
        vad = ratings.mean(axis=0)
        pcm = to_pcm16(audio)
        if item.channels == 2:
            pcm = np.stack([pcm, to_pcm16(audio * 0.9)], axis=1)
        path = root / item.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, pcm, sr, subtype="PCM_16", format="WAV")
        records.append({"path": item.relpath, "label": item.label, "style": item.style,
                        "speaker": item.speaker.speaker_id, "gender": item.speaker.gender,
                        "session": item.session, "seconds": pcm.shape[0] / sr, "channels": item.channels,
                        "vad": [round(float(v), 4) for v in vad] if layout == "iemocap" else None,
                        "ratings": ratings.tolist() if layout == "iemocap" else None})
    return records


def read_manifest(root) -> dict:
    """The manifest of a finished synthetic corpus at root (raises SyntheticCorpusError if absent/partial)."""
    path = Path(root) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SyntheticCorpusError(f"cannot read synthetic corpus manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or not manifest.get("complete"):
        raise SyntheticCorpusError(f"{path} is not the manifest of a finished synthetic corpus")
    return manifest


def _rhemo_version() -> str:
    try:
        from rhemo import __version__
    except ImportError:
        return "unknown"
    return __version__


# ----------------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rhemo.data.synthetic",
        description="Write a deterministic, speech-like emotional corpus in the on-disk layout of IEMOCAP, "
                    "RAVDESS, EmoDB or TESS (or one folder per label), for demos and tests. A "
                    f"{MANIFEST_NAME} manifest at the root records the generator version and arguments.")
    parser.add_argument("--layout", choices=LAYOUTS, default="iemocap", help="corpus layout (default iemocap)")
    parser.add_argument("--output", required=True, type=Path,
                        help="root folder of the corpus; must be empty, absent or a previous synthetic corpus "
                             "(which is replaced) unless --force")
    parser.add_argument("--utterances", type=int, default=200, help="number of wav files (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed = identical files (default 0)")
    parser.add_argument("--sample-rate", type=int, default=None,
                        help="Hz; default the corpus's native rate: " +
                             ", ".join(f"{k} {v}" for k, v in NATIVE_SAMPLE_RATES.items()))
    parser.add_argument("--min-seconds", type=float, default=None,
                        help="shortest utterance; default per layout: " +
                             ", ".join(f"{k} {v[0]}" for k, v in DEFAULT_SECONDS.items()))
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="longest utterance; default per layout: " +
                             ", ".join(f"{k} {v[1]}" for k, v in DEFAULT_SECONDS.items()))
    parser.add_argument("--sessions", type=int, default=5, help="IEMOCAP sessions, 1-5 (default 5)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder that is not a synthetic corpus (deletes nothing)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        root = make_corpus(args.output, layout=args.layout, n_utterances=args.utterances, seed=args.seed,
                           sample_rate=args.sample_rate, min_seconds=args.min_seconds,
                           max_seconds=args.max_seconds, sessions=args.sessions, force=args.force,
                           progress=not args.quiet)
    except SyntheticCorpusError as exc:
        parser.exit(2, f"error: {exc}\n")
    if not args.quiet:
        manifest = read_manifest(root)
        elapsed = time.perf_counter() - started
        labels = ", ".join(f"{k} {v}" for k, v in manifest["label_counts"].items())
        print(f"wrote {args.utterances} {args.layout} utterances ({manifest['total_seconds']:.0f} s of audio at "
              f"{manifest['args']['sample_rate']} Hz) to {root} in {elapsed:.1f} s "
              f"({args.utterances / elapsed:.0f} utt/s); labels: {labels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
