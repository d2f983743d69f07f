"""Corpus readers: one function per on-disk layout, all returning the same utterance records.

``read_corpus(dataset, root)`` walks a corpus folder and returns ``(utterances, skipped)``: the usable
utterances sorted by path (deterministic on every filesystem), and the files that look like utterances but
cannot be used (no label line, malformed label line, unknown label, bad file name, duplicate id, not a regular
file, broken symlink, empty file), each with a reason that starts with a category word (``'no label: ...'``);
nothing named like an utterance is opened before it is known to be a regular file (a FIFO would block).
Macintosh ``._*`` companions and other hidden files, non-audio files and unrelated folders are ignored. A root
that does not exist or matches nothing of the expected layout raises :class:`ReaderError` saying what was
expected where.

Layouts:

* ``iemocap``: ``ROOT/SessionN/sentences/wav/<dialog>/<utt>.wav``; labels and V/A/D (1-5) from
  ``ROOT/SessionN/dialog/EmoEvaluation/<dialog>.txt`` header lines ``[START - END]\\tUTT_ID\\tLABEL\\t[V, A, D]``
  (exact id match). Speaker = ``Ses`` + session digits + the gender letter that starts the last ``_`` field
  of the id: ``Ses01F_impro01_M013`` is spoken by ``Ses01M``.
* ``ravdess``: ``ROOT/**/Actor_NN/MM-CC-EE-II-SS-RR-AA.wav``; label from EE; speaker ``Actor_AA``.
* ``emodb``: ``ROOT/wav/03a01Fa.wav`` (or the wav folder itself); speaker = the first 2 digits; label from
  the 6th character.
* ``tess``: ``ROOT/**/OAF_<emotion>/OAF_<word>_<emotion>.wav`` and ``YAF_...`` in any capitalisation;
  label from the file name's last field (``ps`` = pleasant surprise); speaker ``OAF`` or ``YAF``.
* ``folder``: ``ROOT/<label>/**/<file>.<audio ext>``, or ``ROOT`` = a CSV manifest with rows
  ``path,label[,speaker]`` (optional header; relative paths are relative to the manifest's folder).
  Speaker is ``''`` (unknown) when not given.

Example:
    >>> utts, skipped = read_corpus('emodb', '/data/emodb')            # doctest: +SKIP
    >>> utts[0].utterance_id, utts[0].speaker, utts[0].label            # doctest: +SKIP
    ('03a01Fa', '03', 'happiness')
"""

from __future__ import annotations

import csv
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from rhemo.errors import InputError

__all__ = [
    "Utterance",
    "Skipped",
    "ReaderError",
    "DATASETS",
    "READERS",
    "read_corpus",
    "read_iemocap",
    "read_ravdess",
    "read_emodb",
    "read_tess",
    "read_folder",
    "parse_emo_evaluation",
    "IEMOCAP_LABELS",
    "RAVDESS_EMOTIONS",
    "EMODB_EMOTIONS",
    "TESS_LABELS",
    "AUDIO_EXTENSIONS",
    "file_problem",
]


@dataclass(frozen=True)
class Utterance:
    """One usable audio file and its annotation. V/A/D are raw corpus values (IEMOCAP: 1-5) or None."""

    utterance_id: str
    path: str
    speaker: str
    session: int | None
    label: str
    valence: float | None = None
    arousal: float | None = None
    dominance: float | None = None


@dataclass(frozen=True)
class Skipped:
    """A file left out, with a reason of the form ``'<category>: <detail>'``."""

    path: str
    reason: str


class ReaderError(InputError):
    """The corpus root is wrong: missing, or nothing in it matches the expected layout."""


IEMOCAP_LABELS = ("neu", "ang", "hap", "sad", "exc", "fru", "fea", "sur", "dis", "oth", "xxx")
RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                    "07": "disgust", "08": "surprised"}
EMODB_EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
                  "N": "neutral"}
# The class order of the reference code (happy first).
TESS_LABELS = ("happy", "sad", "angry", "disgust", "neutral", "pleasant_surprise", "fear")
# The one list of audio file extensions (preprocessing and predict.py both walk folders with it): what
# soundfile (libsndfile) reads, plus .m4a, which features.load_audio reads through librosa/audioread.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd",
                    ".w64", ".caf", ".m4a")

_TESS_ALIASES = {"angry": "angry", "anger": "angry", "disgust": "disgust", "disgusted": "disgust",
                 "fear": "fear", "fearful": "fear", "happy": "happy", "happiness": "happy",
                 "neutral": "neutral", "sad": "sad", "sadness": "sad", "ps": "pleasant_surprise"}


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
def _visible(entry: Path) -> bool:
    """False for hidden entries, which includes macOS '._name' resource forks and .DS_Store."""
    return not entry.name.startswith(".")


_SPECIAL_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                  (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"))


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be an audio file, found without opening it (opening a FIFO blocks); None if it is
    an existing regular file (or a symlink to one). Reasons start with a category: ``'not a regular file'``,
    ``'broken symlink'``, ``'missing file'``, ``'empty file'`` or ``'unreadable'``."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"broken symlink: it points to {target}, which cannot be reached ({exc.strerror})"
        if isinstance(exc, FileNotFoundError):
            return "missing file: the file does not exist"
        return f"unreadable: {exc.strerror or exc}"
    for is_kind, kind in _SPECIAL_KINDS:
        if is_kind(info.st_mode):
            return f"not a regular file: it is {kind}"
    if info.st_size == 0:
        return "empty file: 0 bytes"
    return None


def _label_from_name(wav: Path, name_re: re.Pattern, group: int, labels: dict[str, str], bad_name: str,
                     code_kind: str, expected: str) -> tuple[re.Match, str] | Skipped:
    """(name match, label) of a file whose name carries its emotion code in ``name_re``'s ``group``, or the
    Skipped record of a bad name or an unknown code (``expected``: the codes, for the message)."""
    match = name_re.match(wav.stem)
    if match is None:
        return Skipped(str(wav), f"bad name: {bad_name}")
    label = labels.get(match[group])
    if label is None:
        return Skipped(str(wav), f"unknown label: {code_kind} {match[group]!r}; expected {expected}")
    return match, label


def _files(folder: Path, extensions: Iterable[str], skipped: list[Skipped]) -> list[Path]:
    """Regular non-empty audio files of ``folder``, sorted; other entries with an audio name (FIFO, directory,
    broken symlink, empty file) are recorded in ``skipped``."""
    exts = tuple(extensions)
    found = []
    for entry in sorted(p for p in folder.iterdir() if _visible(p) and p.suffix.lower() in exts):
        problem = file_problem(entry)
        if problem is None:
            found.append(entry)
        else:
            skipped.append(Skipped(str(entry), problem))
    return found


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _visible(p) and p.is_dir())


def _walk_dirs(root: Path) -> Iterable[Path]:
    """Every visible folder under root (root included), in sorted order, following no symlink loops."""
    for current, dirs, _ in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield Path(current)


def _require_dir(root: str | os.PathLike, dataset: str, expected: str) -> Path:
    path = Path(os.path.abspath(root))
    if not path.exists():
        raise ReaderError(f"{dataset}: input folder {path} does not exist (expected {expected})")
    if not path.is_dir():
        raise ReaderError(f"{dataset}: input {path} is not a folder (expected {expected})")
    return path


def _matching_dirs(root: Path, pattern: re.Pattern, dataset: str, what: str, expected: str) -> list[Path]:
    """Every folder under ``root`` whose name matches ``pattern``; none is a ReaderError naming the layout."""
    found = [d for d in _walk_dirs(root) if pattern.match(d.name)]
    if not found:
        raise ReaderError(f"{dataset}: no {what} folders under {root}; expected {expected}")
    return found


def _finish(utterances: list[Utterance], skipped: list[Skipped]) -> tuple[list[Utterance], list[Skipped]]:
    """Sort by path; later files that repeat an utterance id are skipped (ids must be unique in a store)."""
    utterances = sorted(utterances, key=lambda u: u.path)
    seen: dict[str, str] = {}
    kept = []
    for utt in utterances:
        if utt.utterance_id in seen:
            skipped.append(Skipped(utt.path, f"duplicate: utterance id {utt.utterance_id!r} already read "
                                             f"from {seen[utt.utterance_id]}"))
            continue
        seen[utt.utterance_id] = utt.path
        kept.append(utt)
    return kept, sorted(skipped, key=lambda s: (s.path, s.reason))


# ---------------------------------------------------------------------------------------------------------
# IEMOCAP
# ---------------------------------------------------------------------------------------------------------
_IEMOCAP_EXPECTED = ("the IEMOCAP release layout ROOT/SessionN/sentences/wav/<dialog>/<utt>.wav with labels in "
                     "ROOT/SessionN/dialog/EmoEvaluation/<dialog>.txt")
_SESSION_RE = re.compile(r"^Session(\d+)$")
_IEMOCAP_ID_RE = re.compile(r"^Ses(\d{2})[MF]_.+_([MF])[^_]*$")
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_VAD_RE = re.compile(r"^\[\s*" + _NUM + r"\s*,\s*" + _NUM + r"\s*,\s*" + _NUM + r"\s*\]$")
_HEADER_ID_RE = re.compile(r"^\[[^\]]*\]\s*(\S+)")  # the id after "[START - END]", whatever the separators


def parse_emo_evaluation(path: str | os.PathLike) -> dict[str, tuple[str, float, float, float] | str]:
    """Read one EmoEvaluation file: utterance id → (label, valence, arousal, dominance).

    Only header lines ``[START - END]\\tID\\tLABEL\\t[V, A, D]`` count; the per-annotator lines are ignored.
    An id whose header line is not tab-separated or whose V/A/D field cannot be parsed maps to a string with
    the reason instead. The first header line of an id wins.
    """
    entries: dict[str, tuple[str, float, float, float] | str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.startswith("["):
                continue
            parts = [p.strip() for p in line.rstrip("\r\n").split("\t")]
            if len(parts) < 4 or not parts[1]:
                found = _HEADER_ID_RE.match(line)
                if found and found[1] not in entries:
                    entries[found[1]] = (f"malformed line: line {line_no} of {path} has {len(parts)} tab-separated "
                                         f"field(s); expected [START - END]<TAB>ID<TAB>LABEL<TAB>[V, A, D]")
                continue
            utt_id, label, vad = parts[1], parts[2], parts[3]
            if utt_id in entries:
                continue
            match = _VAD_RE.match(vad)
            if match is None:
                entries[utt_id] = f"bad label line: V/A/D field {vad!r} of {utt_id} in {path} is not [v, a, d]"
            else:
                entries[utt_id] = (label, float(match[1]), float(match[2]), float(match[3]))
    return entries


def _iemocap_utterance(wav: Path, labels: dict | None, label_file: Path) -> Utterance | Skipped:
    """The utterance of one dialog wav, or why it is skipped; ``labels``: the parsed ``label_file`` (None: the
    file is missing)."""
    utt_id = wav.stem
    if labels is None:
        return Skipped(str(wav), f"no label: label file {label_file} not found")
    entry = labels.get(utt_id)
    if entry is None:
        return Skipped(str(wav), f"no label: no line for {utt_id} in {label_file}")
    if isinstance(entry, str):
        return Skipped(str(wav), entry)
    label, val, aro, dom = entry
    if label not in IEMOCAP_LABELS:
        return Skipped(str(wav), f"unknown label: {label!r} for {utt_id} in {label_file}; "
                                 f"expected one of {list(IEMOCAP_LABELS)}")
    match = _IEMOCAP_ID_RE.match(utt_id)
    if match is None:
        return Skipped(str(wav), f"bad name: {utt_id!r} is not an IEMOCAP utterance id like Ses01F_impro01_M013")
    return Utterance(utterance_id=utt_id, path=str(wav), speaker=f"Ses{match[1]}{match[2]}",
                     session=int(match[1]), label=label, valence=val, arousal=aro, dominance=dom)


def read_iemocap(root: str | os.PathLike) -> tuple[list[Utterance], list[Skipped]]:
    """IEMOCAP reader (see the module docstring)."""
    root = _require_dir(root, "iemocap", _IEMOCAP_EXPECTED)
    sessions = [(int(m[1]), p) for p in _subdirs(root) if (m := _SESSION_RE.match(p.name))]
    if not sessions:
        found = ", ".join(p.name for p in _subdirs(root)[:5]) or "no folders"
        raise ReaderError(f"iemocap: no 'SessionN' folders in {root} (found: {found}); expected "
                          f"{_IEMOCAP_EXPECTED}")
    utterances: list[Utterance] = []
    skipped: list[Skipped] = []
    n_wav = 0
    for _, session_dir in sorted(sessions):
        wav_root = session_dir / "sentences" / "wav"
        eval_dir = session_dir / "dialog" / "EmoEvaluation"
        if not wav_root.is_dir():
            skipped.append(Skipped(str(session_dir), f"no audio: missing folder {wav_root}"))
            continue
        for dialog_dir in _subdirs(wav_root):
            before = len(skipped)
            wavs = _files(dialog_dir, (".wav",), skipped)
            n_wav += len(wavs) + len(skipped) - before
            if not wavs:
                continue
            label_file = eval_dir / f"{dialog_dir.name}.txt"
            labels = parse_emo_evaluation(label_file) if label_file.is_file() else None
            for wav in wavs:
                record = _iemocap_utterance(wav, labels, label_file)
                (utterances if isinstance(record, Utterance) else skipped).append(record)
    if n_wav == 0:
        raise ReaderError(f"iemocap: no .wav files under {root}/Session*/sentences/wav/<dialog>/; expected "
                          f"{_IEMOCAP_EXPECTED}")
    return _finish(utterances, skipped)


# ---------------------------------------------------------------------------------------------------------
# RAVDESS
# ---------------------------------------------------------------------------------------------------------
_RAVDESS_EXPECTED = "ROOT/Actor_NN/MM-CC-EE-II-SS-RR-AA.wav (RAVDESS audio release)"
_ACTOR_DIR_RE = re.compile(r"^Actor_(\d+)$", re.IGNORECASE)
_RAVDESS_NAME_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


def read_ravdess(root: str | os.PathLike) -> tuple[list[Utterance], list[Skipped]]:
    """RAVDESS reader (see the module docstring)."""
    root = _require_dir(root, "ravdess", _RAVDESS_EXPECTED)
    actor_dirs = _matching_dirs(root, _ACTOR_DIR_RE, "ravdess", "'Actor_NN'", _RAVDESS_EXPECTED)
    utterances, skipped = [], []
    for actor_dir in actor_dirs:
        for wav in _files(actor_dir, (".wav",), skipped):
            named = _label_from_name(wav, _RAVDESS_NAME_RE, 3, RAVDESS_EMOTIONS,
                                     "expected MM-CC-EE-II-SS-RR-AA.wav", "emotion code", "01-08")
            if isinstance(named, Skipped):
                skipped.append(named)
                continue
            match, label = named
            utterances.append(Utterance(utterance_id=wav.stem, path=str(wav), speaker=f"Actor_{match[7]}",
                                        session=None, label=label))
    if not utterances and not skipped:
        raise ReaderError(f"ravdess: the Actor_NN folders under {root} hold no .wav files; expected "
                          f"{_RAVDESS_EXPECTED}")
    return _finish(utterances, skipped)


# ---------------------------------------------------------------------------------------------------------
# EmoDB
# ---------------------------------------------------------------------------------------------------------
_EMODB_EXPECTED = "ROOT/wav/<speaker 2 digits><text a01..b10><emotion letter><version>.wav, e.g. 03a01Fa.wav"
_EMODB_NAME_RE = re.compile(r"^(\d{2})([a-z]\d{2})([A-Za-z])([a-z]*)$")


def read_emodb(root: str | os.PathLike) -> tuple[list[Utterance], list[Skipped]]:
    """EmoDB reader (see the module docstring)."""
    root = _require_dir(root, "emodb", _EMODB_EXPECTED)
    wav_dir = root / "wav" if (root / "wav").is_dir() else root
    skipped: list[Skipped] = []
    wavs = _files(wav_dir, (".wav",), skipped)
    n_special = len(skipped)
    if not wavs and not skipped:
        raise ReaderError(f"emodb: no .wav files in {wav_dir}; expected {_EMODB_EXPECTED}")
    utterances = []
    for wav in wavs:
        named = _label_from_name(wav, _EMODB_NAME_RE, 3, EMODB_EMOTIONS, "expected e.g. 03a01Fa.wav",
                                 "emotion letter", f"one of {''.join(EMODB_EMOTIONS)}")
        if isinstance(named, Skipped):
            skipped.append(named)
            continue
        match, label = named
        utterances.append(Utterance(utterance_id=wav.stem, path=str(wav), speaker=match[1], session=None,
                                    label=label))
    if not utterances and wavs and len(skipped) - n_special == len(wavs):
        raise ReaderError(f"emodb: none of the {len(wavs)} .wav files in {wav_dir} is named like an EmoDB "
                          f"utterance; expected {_EMODB_EXPECTED}")
    return _finish(utterances, skipped)


# ---------------------------------------------------------------------------------------------------------
# TESS
# ---------------------------------------------------------------------------------------------------------
_TESS_EXPECTED = "ROOT/OAF_<emotion>/OAF_<word>_<emotion>.wav and ROOT/YAF_<emotion>/YAF_<word>_<emotion>.wav"
_TESS_DIR_RE = re.compile(r"^(OAF|YAF)_", re.IGNORECASE)


def _tess_label(stem: str) -> str | None:
    name = stem.lower()
    if name.endswith(("_pleasant_surprise", "_pleasant_surprised")):
        return "pleasant_surprise"
    return _TESS_ALIASES.get(name.rsplit("_", 1)[-1])


def read_tess(root: str | os.PathLike) -> tuple[list[Utterance], list[Skipped]]:
    """TESS reader (see the module docstring)."""
    root = _require_dir(root, "tess", _TESS_EXPECTED)
    speaker_dirs = _matching_dirs(root, _TESS_DIR_RE, "tess", "'OAF_*' or 'YAF_*'", _TESS_EXPECTED)
    utterances, skipped = [], []
    for folder in speaker_dirs:
        speaker = folder.name[:3].upper()
        for wav in _files(folder, (".wav",), skipped):
            label = _tess_label(wav.stem)
            if label is None:
                skipped.append(Skipped(str(wav), f"unknown label: last name field of {wav.name!r} is not one "
                                                 f"of {sorted(_TESS_ALIASES)}"))
                continue
            utterances.append(Utterance(utterance_id=wav.stem, path=str(wav), speaker=speaker, session=None,
                                        label=label))
    if not utterances and not skipped:
        raise ReaderError(f"tess: the OAF_/YAF_ folders under {root} hold no .wav files; expected "
                          f"{_TESS_EXPECTED}")
    return _finish(utterances, skipped)


# ---------------------------------------------------------------------------------------------------------
# Generic: one folder per label, or a CSV manifest
# ---------------------------------------------------------------------------------------------------------
_FOLDER_EXPECTED = ("ROOT/<label>/<file>.wav (one folder per label) or a CSV manifest file with rows "
                    "path,label[,speaker]")


def read_folder(root: str | os.PathLike) -> tuple[list[Utterance], list[Skipped]]:
    """Generic reader: label folders, or a CSV manifest when ``root`` is a .csv file."""
    path = Path(os.path.abspath(root))
    if path.is_file() and path.suffix.lower() == ".csv":
        return _read_manifest(path)
    root = _require_dir(path, "folder", _FOLDER_EXPECTED)
    utterances, skipped = [], []
    for label_dir in _subdirs(root):
        for folder in _walk_dirs(label_dir):
            for audio in _files(folder, AUDIO_EXTENSIONS, skipped):
                rel = audio.relative_to(root).with_suffix("").as_posix()
                utterances.append(Utterance(utterance_id=rel, path=str(audio), speaker="", session=None,
                                            label=label_dir.name))
    if not utterances and not skipped:
        raise ReaderError(f"folder: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in the label folders of "
                          f"{root}; expected {_FOLDER_EXPECTED}")
    return _finish(utterances, skipped)


def _read_manifest(manifest: Path) -> tuple[list[Utterance], list[Skipped]]:
    base = manifest.parent
    utterances, skipped = [], []
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    for line_no, row in enumerate(rows, start=1):
        row = [c.strip() for c in row]
        if not row or not any(row):
            continue
        if line_no == 1 and [c.lower() for c in row[:2]] == ["path", "label"]:
            continue
        if len(row) not in (2, 3):
            raise ReaderError(f"folder: {manifest} line {line_no} has {len(row)} columns; expected "
                              f"path,label[,speaker]")
        rel, label = row[0], row[1]
        speaker = row[2] if len(row) == 3 else ""
        audio = Path(rel) if os.path.isabs(rel) else base / rel
        if not label:
            skipped.append(Skipped(str(audio), f"no label: empty label on line {line_no} of {manifest}"))
            continue
        problem = file_problem(audio)
        if problem is not None:
            skipped.append(Skipped(str(audio), f"{problem} (line {line_no} of {manifest})"))
            continue
        utt_id = Path(rel).with_suffix("").as_posix()
        utterances.append(Utterance(utterance_id=utt_id, path=str(audio), speaker=speaker, session=None,
                                    label=label))
    if not utterances and not skipped:
        raise ReaderError(f"folder: manifest {manifest} has no rows; expected {_FOLDER_EXPECTED}")
    return _finish(utterances, skipped)


# ---------------------------------------------------------------------------------------------------------
READERS: dict[str, Callable[[str | os.PathLike], tuple[list[Utterance], list[Skipped]]]] = {
    "iemocap": read_iemocap,
    "ravdess": read_ravdess,
    "emodb": read_emodb,
    "tess": read_tess,
    "folder": read_folder,
}
DATASETS = tuple(READERS)


def read_corpus(dataset: str, root: str | os.PathLike) -> tuple[list[Utterance], list[Skipped]]:
    """Read a corpus: ``(utterances sorted by path, skipped files with reasons)``. Raises ReaderError."""
    reader = READERS.get(dataset)
    if reader is None:
        raise ReaderError(f"unknown dataset {dataset!r}; expected one of {list(DATASETS)}")
    return reader(root)
