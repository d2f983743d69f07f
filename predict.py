"""Predict the emotion of audio files with a trained RH-emo or SER model.

Usage:
    python3 predict.py speech.wav other.mp3 --model results/2_SER_quaternion_rhemo/1
    python3 predict.py recordings/ --model results/2_SER_quaternion_rhemo/1 --output preds.csv --per-window

Every file is resampled to the model's rate, mixed to mono, cut into 4-s windows and classified; the
utterance label is the argmax of the mean window probabilities. See rhemo/inference.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = """\
Predict the emotion of audio files with a model trained by training_SER.py or training_RHemo.py.

Files: wav, flac, ogg, mp3 (whatever soundfile or librosa reads), any sample rate, any channel count.
Each file is resampled to the model's rate, mixed to mono, cut into 4-s windows and classified; its label
is the argmax of the mean window probabilities. RH-emo models also report valence, arousal and dominance
as the probability of 'high'. A directory is searched recursively for audio files, with a progress bar,
and its results go to DIR/predictions.csv. Files that cannot be used (unreadable, shorter than 0.1 s,
silent, NaN) are reported and the others go on.

Only regular files are opened: a FIFO, a directory or a broken symlink named like audio gets an ERROR line.
When a CSV cannot be written (read-only folder, full disk), every result is still printed, then one line
says where the CSV could not be written.

Exit status: 0 when at least one file was predicted, 1 when none was, 2 for a bad model path or option,
3 when results were printed but a CSV could not be written."""

EPILOG = """examples:
  python3 predict.py speech.wav --model results/2_SER_quaternion_rhemo/1
  python3 predict.py a.flac b.mp3 --model results/2_SER_quaternion_rhemo/1/fold0/checkpoint.pt --per-window --hop 1
  python3 predict.py recordings/ --model results/2_SER_quaternion_rhemo/1 --json > predictions.json"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predict.py", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files and/or directories")
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="run folder results/<exp>/<run> (all its folds are ensembled), a fold folder "
                             "results/<exp>/<run>/fold<k>, or a checkpoint.pt file")
    parser.add_argument("--fold", type=int, default=None, metavar="K",
                        help="with a run folder, use only fold K instead of the ensemble of all folds")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of text lines")
    parser.add_argument("--per-window", dest="per_window", action="store_true",
                        help="also give the timeline: start/end seconds, label and probabilities per window")
    parser.add_argument("--hop", type=float, default=None, metavar="SECONDS",
                        help="seconds between window starts (default: the model's segment hop, 4 s; must "
                             "be > 0 and at most the 4-s window)")
    parser.add_argument("--output", type=Path, default=None, metavar="CSV",
                        help="write every result to this CSV (default: a directory argument DIR gets "
                             "DIR/predictions.csv; single files get no CSV)")
    parser.add_argument("--gpu_id", type=int, default=None, metavar="G",
                        help="run on CUDA device G when CUDA is available (default: CPU)")
    parser.add_argument("--batch_size", type=int, default=32, metavar="B", help="windows per forward pass")
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(f"predict.py: error: {message}", file=sys.stderr)
    return code


def _load_predictor(args: argparse.Namespace):
    """The predictor for ``--model`` on the chosen device; raises an input error (a ValueError) for a bad
    model path, checkpoint or option."""
    from rhemo.inference import load_predictor
    from rhemo.train.runtime import select_device

    device = "cpu" if args.gpu_id is None else select_device(True, args.gpu_id, verbose=False)
    if args.gpu_id is not None and device.type == "cpu":
        print("predict.py: CUDA is not available; running on the CPU", file=sys.stderr)
    predictor = load_predictor(args.model, device=device, fold=args.fold, batch_size=args.batch_size)
    predictor.check_hop(args.hop)
    return predictor


def _file_groups(paths: list[str]) -> list[tuple[Path | None, list[Path]]]:
    """(default CSV target or None, audio files) per command-line path: a directory is searched recursively
    and gets DIR/predictions.csv; a file stands for itself and gets no CSV."""
    from rhemo.inference import find_audio_files

    groups: list[tuple[Path | None, list[Path]]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = find_audio_files(path)
            if not files:
                print(f"predict.py: no audio files under {path}", file=sys.stderr)
            groups.append((path / "predictions.csv", files))
        else:
            groups.append((None, [path]))
    return groups


def _predict_groups(predictor, groups: list[tuple[Path | None, list[Path]]], args: argparse.Namespace):
    """Predict every file, printing each result as it comes; returns (results, results per directory CSV)."""
    from tqdm import tqdm

    total = sum(len(files) for _, files in groups)
    results = []
    per_csv: dict[Path, list] = {}
    show_bar = any(target is not None for target, _ in groups) or total > 1
    with tqdm(total=total, unit="file", disable=not show_bar, file=sys.stderr) as bar:
        for target, files in groups:
            for file in files:
                result = predictor.predict_file(file, hop_seconds=args.hop, per_window=args.per_window)
                results.append(result)
                if target is not None and args.output is None:
                    per_csv.setdefault(target, []).append(result)
                if not args.json:
                    lines = [result.summary_line()] + (result.window_lines() if args.per_window else [])
                    bar.write("\n".join(lines), file=sys.stdout)
                bar.update(1)
    return results, per_csv


def _write_csvs(per_csv: dict[Path, list], predictor) -> int:
    """Write each CSV; a CSV that cannot be written gets one line on stderr. Returns how many failed."""
    from rhemo.inference import write_predictions_csv

    unwritten = 0
    for target, rows in per_csv.items():
        try:
            written = write_predictions_csv(target, rows, predictor.label_names, predictor.has_vad)
        except OSError as exc:
            unwritten += 1
            print(f"predict.py: could not write the CSV {target} ({exc.strerror or exc}); every "
                  f"result is printed (pass --output to write the CSV elsewhere)", file=sys.stderr)
            continue
        print(f"predict.py: wrote {len(rows)} row(s) to {written}", file=sys.stderr)
    return unwritten


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported after parsing so that --help is instant and does not need torch.
    from rhemo.inference import PredictorError
    from rhemo.train.checkpoint import CheckpointError

    try:
        predictor = _load_predictor(args)
    except (PredictorError, CheckpointError, ValueError) as exc:  # ValueError covers every rhemo InputError
        return _fail(str(exc))
    print(f"predict.py: {predictor.describe()}", file=sys.stderr)

    groups = _file_groups(args.paths)
    if not any(files for _, files in groups):
        return _fail("no audio file to predict", code=1)
    results, per_csv = _predict_groups(predictor, groups, args)
    unwritten = _write_csvs({args.output: results} if args.output is not None else per_csv, predictor)
    if args.json:
        json.dump([r.to_dict(per_window=args.per_window) for r in results], sys.stdout, indent=2)
        sys.stdout.write("\n")

    ok = sum(r.ok for r in results)
    if ok < len(results):
        print(f"predict.py: {len(results) - ok} of {len(results)} file(s) could not be predicted", file=sys.stderr)
    if not ok:
        return 1
    return 3 if unwritten else 0


if __name__ == "__main__":
    sys.exit(main())
