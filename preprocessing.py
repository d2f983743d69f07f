"""Turn a speech emotion corpus into a segment store (spectrogram segments + tables) for training.

    python3 preprocessing.py            # IEMOCAP from input_iemocap_folder of preprocessing_config.ini
    python3 preprocessing.py --dataset iemocap --input /data/IEMOCAP_full_release --output data/stores

writes ``OUTPUT/<dataset>/{predictors.npy, segments.csv, skipped.csv, info.json}`` (see rhemo/data/store.py).
Defaults come from preprocessing_config.ini next to this script; command-line flags override them. With no
arguments the dataset is IEMOCAP and the store goes to data/stores/iemocap, where the experiment files look.
An interrupted run resumes when the same command is run again.
"""

from __future__ import annotations

import argparse
import configparser
import ctypes
import dataclasses
import os
import sys
from pathlib import Path

from rhemo.data.features import FeatureSettings
from rhemo.data.readers import DATASETS, read_corpus
from rhemo.data.store import store_path, write_store
from rhemo.errors import InputError

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "preprocessing_config.ini"
SECTION = "preprocessing"
DEFAULT_DATASET = "iemocap"
#: ini key of each corpus folder, named as in the authors' ini (input_iemocap_folder); 'folder' is the generic layout
INPUT_KEYS = {d: "input_folder" if d == "folder" else f"input_{d}_folder" for d in DATASETS}
OUTPUT_KEY = "output_folder"
#: names of earlier versions of this repository, still accepted
PATH_ALIASES = {**{f"input_{d}": key for d, key in INPUT_KEYS.items() if d != "folder"}, "output": OUTPUT_KEY}
_PATH_KEYS = tuple(INPUT_KEYS.values()) + (OUTPUT_KEY,)
_FEATURE_FIELDS = {f.name: f for f in dataclasses.fields(FeatureSettings)}
_FEATURE_HELP = {
    "sample_rate": "target sample rate in Hz (files are resampled to it)",
    "segment_seconds": "segment length in seconds; shorter files are zero-padded to it",
    "segment_hop_seconds": "distance between segment starts in seconds (= segment_seconds: no overlap)",
    "window": "STFT window name (scipy.signal.get_window)",
    "n_fft": "STFT frame length in samples",
    "stft_overlap": "STFT frame overlap in samples (hop = n_fft - stft_overlap)",
    "time_frames": "rows of each stored segment (zero-padded / cropped)",
    "freq_bins": "columns of each stored segment (low bins kept)",
    "time_reversed": "true: rows run from the last frame to the first, as np.rot90 in the reference",
    "silence_threshold": "skip files whose max |x| is at or below this",
}


class UsageError(InputError):
    """Bad configuration file or command-line value."""


def _parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _convert(name: str, text: str):
    kind = type(_FEATURE_FIELDS[name].default)
    try:
        if kind is bool:
            return _parse_bool(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return str(text)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}") from None


def _canonical_keys(values: dict, path: Path) -> tuple[dict, dict]:
    """(values under their current names, current name → name as written in the file); an alias and its
    current name both present is an error naming both."""
    renamed, written = {}, {}
    for key, text in values.items():
        name = PATH_ALIASES.get(key, key)
        if name in renamed:
            raise UsageError(f"{path}: both {written[name]} and {key} are set; keep only {name}")
        renamed[name], written[name] = text, key
    return renamed, written


def read_config(path: Path) -> dict:
    """The [preprocessing] section as typed values; relative folders resolved against the file's folder.

    Path keys are returned under their current names (``input_iemocap_folder``, ``output_folder``); the
    ``"key_names"`` entry maps each of them to the name written in the file (an old alias or itself)."""
    if not path.is_file():
        raise UsageError(f"configuration file {path} not found")
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise UsageError(f"{path}: {exc}") from None
    if not parser.has_section(SECTION):
        raise UsageError(f"{path}: no [{SECTION}] section")
    values, written = _canonical_keys(dict(parser.items(SECTION)), path)
    known = set(_PATH_KEYS) | set(_FEATURE_FIELDS) | {"workers"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {unknown} in [{SECTION}]; known: {sorted(known)}")
    config: dict = {"key_names": written}
    for key, text in values.items():
        if key in _PATH_KEYS:
            config[key] = str((path.parent / text).resolve()) if text else ""
        elif key == "workers":
            try:
                config[key] = int(text)
            except ValueError:
                raise UsageError(f"{path}: workers = {text!r} is not an integer") from None
        else:
            try:
                config[key] = _convert(key, text)
            except UsageError as exc:
                raise UsageError(f"{path}: {exc}") from None
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preprocessing.py",
        description="Turn a speech emotion corpus into a segment store OUTPUT/<dataset>/ (predictors.npy, "
                    "segments.csv, skipped.csv, info.json). Defaults come from preprocessing_config.ini next "
                    "to this script. Re-running an interrupted command resumes it.",
    )
    parser.add_argument("--dataset", default=DEFAULT_DATASET, choices=DATASETS,
                        help=f"corpus layout to read (default: {DEFAULT_DATASET})")
    parser.add_argument("--input", help="corpus folder (for 'folder' also a CSV manifest); default: "
                                        "input_<dataset>_folder of the config file")
    parser.add_argument("--output", help="folder that receives the store <output>/<name>/ (default: config)")
    parser.add_argument("--name", help="store folder name (default: the dataset name)")
    parser.add_argument("--workers", type=int, help="worker processes (default: config; 0 = all cores)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="configuration file "
                        f"(default: {DEFAULT_CONFIG.name} next to this script)")
    parser.add_argument("--overwrite", action="store_true",
                        help="rebuild the store if one built from other inputs or settings exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = parser.add_argument_group("feature settings (override the config file)")
    for name, fld in _FEATURE_FIELDS.items():
        group.add_argument(f"--{name}", dest=name, metavar=type(fld.default).__name__.upper(), help=_FEATURE_HELP[name])
    return parser


def _input_path(args: argparse.Namespace, config: dict) -> str:
    """The corpus path from --input or the config file; a path that does not exist names where it came from."""
    if args.input:
        if not Path(args.input).exists():
            raise UsageError(f"--input {args.input}: no such file or folder")
        return args.input
    key = INPUT_KEYS[args.dataset]
    written = config["key_names"].get(key, key)
    input_path = config.get(key)
    if not input_path:
        raise UsageError(f"no input folder: pass --input or set {key} in {args.config}")
    if not Path(input_path).exists():
        raise UsageError(f"{written} = {input_path} in {args.config}: no such folder; put the path of your "
                         f"{args.dataset} copy there (or pass --input)")
    return input_path


def run(args: argparse.Namespace) -> int:
    config = read_config(Path(args.config).resolve())
    feature_values = {k: v for k, v in config.items() if k in _FEATURE_FIELDS}
    for name in _FEATURE_FIELDS:
        text = getattr(args, name)
        if text is not None:
            feature_values[name] = _convert(name, text)
    try:
        settings = FeatureSettings.from_dict(feature_values, source="preprocessing settings")
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    input_path = _input_path(args, config)
    output = args.output or config.get(OUTPUT_KEY)
    if not output:
        raise UsageError(f"no output folder: pass --output or set {OUTPUT_KEY} in {args.config}")
    workers = args.workers if args.workers is not None else config.get("workers", 0)
    if workers < 0:
        raise UsageError(f"workers must be >= 0, got {workers}")
    workers = workers or os.cpu_count() or 1
    store_dir = store_path(output, args.name, default=args.dataset)

    utterances, skipped = read_corpus(args.dataset, input_path)
    print(f"{args.dataset}: {len(utterances)} utterances found in {Path(input_path).resolve()}"
          f"{f', {len(skipped)} files left out by the reader' if skipped else ''}; {workers} workers")
    summary = write_store(utterances, store_dir, settings, workers=workers, skipped=skipped,
                          dataset=args.dataset, overwrite=args.overwrite, progress=not args.no_progress)
    if summary.reused:
        print("an identical store already exists; nothing to do")
    elif summary.resumed_files:
        print(f"resumed an interrupted run: {summary.resumed_files} files were already done")
    print(f"utterances: {summary.utterances}")
    print(f"segments:   {summary.segments}")
    print(f"skipped:    {len(summary.skipped)}")
    for reason, count in summary.skipped_by_reason().items():
        print(f"  {count:6d}  {reason}")
    if summary.skipped:
        print(f"  (details in {summary.path / 'skipped.csv'})")
    print(f"store: {summary.path}")
    if summary.segments == 0:
        print("preprocessing.py: error: no usable audio: the store is empty", file=sys.stderr)
        return 1
    return 0


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed blocks instead of returning them to the OS after every file.

    Each file allocates a few half-megabyte arrays; by default glibc maps and unmaps them each time, and the
    page faults cost about 15 % of the per-file time. This process (and the workers it forks) does nothing
    else, so a higher mmap/trim threshold is safe. Not glibc: nothing to do.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 * 1024 * 1024)    # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 * 1024 * 1024)   # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _keep_freed_memory()
    try:
        return run(args)
    except InputError as exc:  # usage, reader and store errors: one line, no traceback
        print(f"preprocessing.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\npreprocessing.py: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
