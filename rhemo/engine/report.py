"""Experiment reports: fold status, per-run ``summary.json``, the xlsx spreadsheet and the console results table.

Everything is read back from the run folders written by the training scripts and the launcher::

    results/<experiment>/<run>/fold<k>/{config.json, metrics.json, error.txt, run.log, ...}
    results/<experiment>/<run>/summary.json            mean ± std over the finished folds
    results/<experiment>/<experiment>_results.xlsx     one row per run × fold, plus a mean and a ± std row per run

A fold's status is ``done`` (readable ``metrics.json`` with status done), ``corrupt`` (a ``metrics.json`` that
cannot be read), ``failed`` (an ``error.txt`` written by the launcher) or ``missing`` (not run yet, or stopped
without a record). Accuracies, UA and F1 are stored as fractions and shown as percentages.

Regenerate the reports of an experiment from disk::

    python -m rhemo.engine.report results/2_SER_quaternion_rhemo
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from rhemo.engine.config import SCRIPT_FILES
from rhemo.engine.metrics import mean_std

METRICS_FILE = "metrics.json"
ERROR_FILE = "error.txt"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
STATUSES = ("done", "failed", "corrupt", "missing")
KIND_TITLES = {"ser": "SER", "rhemo": "RH-emo"}


# ------------------------------------------------------------------------------------------- run folders
@dataclass
class RunInfo:
    """What the reports need to know about one run before any fold has finished."""

    experiment: str
    run: str
    run_dir: Path
    script_file: str
    kind: str  # 'ser' or 'rhemo'
    num_folds: int
    model_name: str
    quat: bool
    comment_1: str = ""
    comment_2: str = ""

    @classmethod
    def from_config(cls, experiment: str, run: str, run_dir: Path, config: dict[str, Any]) -> "RunInfo":
        """Build from a resolved run configuration (it must hold ``script``; other keys have fallbacks)."""
        script_file = config.get("script", "")
        kind = SCRIPT_FILES.get(script_file)
        if kind is None:
            raise ValueError(f"{run_dir}: config key 'script' is {script_file!r}, expected one of "
                             f"{', '.join(SCRIPT_FILES)}")
        return cls(experiment=experiment, run=str(run), run_dir=Path(run_dir), script_file=script_file, kind=kind,
                   num_folds=int(config.get("num_folds", 1)), model_name=str(config.get("model_name", "")),
                   quat=bool(config.get("model_quat", False)), comment_1=str(config.get("comment_1", "") or ""),
                   comment_2=str(config.get("comment_2", "") or ""))


def _run_sort_key(run: str) -> tuple:
    return (0, int(run), "") if run.isdigit() else (1, 0, run)


def runs_on_disk(experiment_dir: Path) -> list[RunInfo]:
    """The runs found under ``experiment_dir`` (numbered folders whose folds hold a readable ``config.json``).

    A numbered folder without any readable fold configuration is reported on stderr and left out.
    """
    experiment_dir = Path(experiment_dir)
    if not experiment_dir.is_dir():
        return []
    infos = []
    for run_dir in sorted((p for p in experiment_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                          key=lambda p: int(p.name)):
        info = None
        for config_path in sorted(run_dir.glob(f"fold*/{CONFIG_FILE}")):
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
                info = RunInfo.from_config(experiment_dir.name, run_dir.name, run_dir, config)
                break
            except (OSError, ValueError, TypeError, AttributeError):
                continue
        if info is None:
            print(f"report: {run_dir} has no readable fold*/{CONFIG_FILE}; left out of the report", file=sys.stderr)
        else:
            infos.append(info)
    return infos


def read_metrics(path: Path) -> tuple[str, dict[str, Any] | None, str]:
    """Read a ``metrics.json``: (status, metrics or None, note). Never raises on a bad file.

    status is 'done', 'missing' (no file) or 'corrupt' (unreadable, not an object, or status not 'done').
    """
    path = Path(path)
    if not path.exists():
        return "missing", None, ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return "corrupt", None, f"unreadable {path.name}: {exc}"
    if not isinstance(data, dict):
        return "corrupt", None, f"{path.name} is not a JSON object"
    if data.get("status", "done") != "done":
        return "corrupt", None, f"{path.name} has status {data.get('status')!r}"
    return "done", data, str(data.get("note") or "")


@dataclass
class FoldRecord:
    """One fold as the reports see it."""

    fold: int
    status: str
    metrics: dict[str, Any] | None
    note: str


def fold_record(fold_dir: Path, fold: int) -> FoldRecord:
    """Status, metrics and a one-line note of one fold folder."""
    status, metrics, note = read_metrics(Path(fold_dir) / METRICS_FILE)
    if status == "missing":
        error_path = Path(fold_dir) / ERROR_FILE
        if error_path.exists():
            try:
                first = error_path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                first = []
            return FoldRecord(fold, "failed", None, first[0] if first else "error.txt is empty")
        if (Path(fold_dir) / "run.log").exists():
            note = "started but not finished"
    return FoldRecord(fold, status, metrics, note)


def fold_records(info: RunInfo) -> list[FoldRecord]:
    """One record per fold of the run, ``fold0`` … ``fold<num_folds-1>``."""
    return [fold_record(info.run_dir / f"fold{k}", k) for k in range(info.num_folds)]


# ------------------------------------------------------------------------------------------- aggregation
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flat_numbers(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric scalars of a metrics dict, nested keys joined with '.'; lists (confusion) are left out.

    >>> flat_numbers({'epochs': 3, 'test': {'wa': 0.5, 'confusion': [[1]]}, 'model_name': 'x'})
    {'epochs': 3.0, 'test.wa': 0.5}
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(flat_numbers(value, f"{prefix}{key}."))
        elif _is_number(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def aggregate(records: Sequence[FoldRecord]) -> dict[str, dict[str, float]]:
    """Mean and std (``rhemo.engine.metrics.mean_std``) of every numeric metric over the finished folds.

    Keys are flat ('test.wa'); a key missing from some folds counts as nan there (so its mean is nan).
    Returns {} when no fold is finished.
    """
    flats = [flat_numbers(r.metrics) for r in records if r.status == "done" and r.metrics is not None]
    if not flats:
        return {}
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    return mean_std([{k: flat.get(k, math.nan) for k in keys} for flat in flats])


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run_summary(info: RunInfo) -> dict[str, Any]:
    """The content of ``summary.json``: fold statuses and mean ± std of every numeric metric.

    Example shape: ``{'experiment': '2_SER', 'run': '1', ..., 'folds_done': 5,
    'folds': {'0': 'done', ...}, 'mean_std': {'test': {'wa': {'mean': 0.61, 'std': 0.02}, ...}, 'epochs': ...}}``
    (nan becomes null).
    """
    records = fold_records(info)
    return _json_safe({
        "experiment": info.experiment, "run": info.run, "script": info.script_file, "model_name": info.model_name,
        "quat": info.quat, "num_folds": info.num_folds,
        "folds_done": sum(r.status == "done" for r in records),
        "folds": {str(r.fold): r.status for r in records},
        "mean_std": _nest(aggregate(records)),
    })


def write_run_summary(info: RunInfo) -> Path:
    """Write ``<run_dir>/summary.json`` atomically and return its path."""
    info.run_dir.mkdir(parents=True, exist_ok=True)
    path = info.run_dir / SUMMARY_FILE
    _write_atomic(path, json.dumps(run_summary(info), indent=2) + "\n")
    return path


# ------------------------------------------------------------------------------------------- columns
@dataclass(frozen=True)
class Column:
    """One spreadsheet column: header, the flat key of its value, its kind and width."""

    header: str
    key: str
    kind: str = "text"  # text | int | pct | loss | seconds | bool
    width: int = 12


_NUMBER_FORMATS = {"int": "#,##0", "pct": "0.00%", "loss": "0.0000", "seconds": "0.0"}
_SUMMARY_FORMATS = {**_NUMBER_FORMATS, "int": "#,##0.0"}

_LEADING = [Column("experiment", "experiment", width=26), Column("run", "run", width=6),
            Column("fold", "fold", width=8), Column("status", "status", width=12),
            Column("script", "script", width=18), Column("model", "model", width=24),
            Column("quat", "quat", "bool", 7), Column("params", "params", "int", 13)]
_TRAILING = [Column("epochs", "epochs", "int", 8), Column("best epoch", "best_epoch", "int", 10),
             Column("time (s)", "seconds", "seconds", 10), Column("comment_1", "comment_1", width=30),
             Column("comment_2", "comment_2", width=30), Column("note", "note", width=40)]

COLUMNS: dict[str, list[Column]] = {
    "ser": _LEADING + [
        Column("test WA", "test.wa", "pct"), Column("test UA", "test.ua", "pct"),
        Column("test F1", "test.f1", "pct"), Column("test utt WA", "test.utt_wa", "pct"),
        Column("test utt UA", "test.utt_ua", "pct"), Column("test utt F1", "test.utt_f1", "pct"),
        Column("val WA", "val.wa", "pct"),
        Column("test WA batch-mean", "test.wa_batchmean", "pct", 18)] + _TRAILING,
    "rhemo": _LEADING + [
        Column("test total", "test.total", "loss"), Column("test recon", "test.recon", "loss"),
        Column("test emo", "test.emo", "loss"), Column("test acc", "test.acc", "pct"),
        Column("test acc valence", "test.acc_valence", "pct", 15),
        Column("test acc arousal", "test.acc_arousal", "pct", 15),
        Column("test acc dominance", "test.acc_dominance", "pct", 17),
        Column("val total", "val.total", "loss")] + _TRAILING,
}
_NUMERIC_KINDS = ("int", "pct", "loss", "seconds")


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _row_base(info: RunInfo) -> dict[str, Any]:
    return {"experiment": info.experiment, "run": int(info.run) if info.run.isdigit() else info.run,
            "script": info.script_file, "model": info.model_name, "quat": info.quat,
            "comment_1": info.comment_1, "comment_2": info.comment_2}


def run_rows(info: RunInfo) -> list[tuple[str, dict[str, Any]]]:
    """The spreadsheet rows of one run: ('fold', values) per fold, then ('mean', …) and ('std', …)."""
    records = fold_records(info)
    rows = []
    for record in records:
        values = {**_row_base(info), "fold": record.fold, "status": record.status, "note": record.note}
        if record.metrics is not None:
            metrics = record.metrics
            values["model"] = metrics.get("model_name", info.model_name)
            values["quat"] = bool(metrics.get("quat", info.quat))
            values.update({k: _finite(v) for k, v in flat_numbers(metrics).items()})
        rows.append(("fold", values))
    stats = aggregate(records)
    done = sum(r.status == "done" for r in records)
    summary = {**_row_base(info), "status": f"{done}/{len(records)} done"}
    if stats:
        first_done = next(r.metrics for r in records if r.metrics is not None)
        summary["model"] = first_done.get("model_name", info.model_name)
        summary["quat"] = bool(first_done.get("quat", info.quat))
    rows.append(("mean", {**summary, "fold": "mean", **{k: _finite(v["mean"]) for k, v in stats.items()}}))
    rows.append(("std", {**summary, "fold": "± std", **{k: _finite(v["std"]) for k, v in stats.items()}}))
    return rows


# ------------------------------------------------------------------------------------------- spreadsheet
def spreadsheet_path(experiment_dir: Path) -> Path:
    experiment_dir = Path(experiment_dir)
    return experiment_dir / f"{experiment_dir.name}_results.xlsx"


def write_spreadsheet(experiment_dir: Path, infos: Sequence[RunInfo]) -> Path:
    """Write ``<experiment_dir>/<name>_results.xlsx`` (one sheet per script kind present) atomically.

    Each sheet has a bold, frozen header row, one row per run × fold, and per run a 'mean' and a '± std' row
    over the finished folds. Returns the path.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    experiment_dir = Path(experiment_dir)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    infos = sorted(infos, key=lambda i: _run_sort_key(i.run))
    kinds = list(dict.fromkeys(i.kind for i in infos)) or ["ser"]
    workbook = Workbook()
    workbook.remove(workbook.active)
    header_fill = PatternFill("solid", fgColor="DDDDDD")
    summary_fill = PatternFill("solid", fgColor="EEF3FA")
    for kind in kinds:
        sheet = workbook.create_sheet(KIND_TITLES[kind])
        columns = COLUMNS[kind]
        sheet.append([c.header for c in columns])
        for index, column in enumerate(columns, start=1):
            cell = sheet.cell(row=1, column=index)
            cell.font = Font(bold=True)
            cell.fill = header_fill
            cell.alignment = Alignment(horizontal="center")
            sheet.column_dimensions[get_column_letter(index)].width = column.width
        sheet.freeze_panes = "E2"
        for info in (i for i in infos if i.kind == kind):
            for row_kind, values in run_rows(info):
                sheet.append([values.get(c.key) for c in columns])
                row = sheet.max_row
                formats = _NUMBER_FORMATS if row_kind == "fold" else _SUMMARY_FORMATS
                for index, column in enumerate(columns, start=1):
                    cell = sheet.cell(row=row, column=index)
                    if column.kind in formats:
                        cell.number_format = formats[column.kind]
                    if row_kind != "fold":
                        cell.fill = summary_fill
                        cell.font = Font(italic=True, bold=row_kind == "mean")
    path = spreadsheet_path(experiment_dir)
    tmp = path.with_name(path.name + ".tmp")
    workbook.save(tmp)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------- console
def _fmt(mean: float | None, std: float | None, kind: str, with_std: bool) -> str:
    if mean is None or not math.isfinite(mean):
        return "-"
    scale, digits = {"pct": (100.0, 1), "loss": (1.0, 4), "seconds": (1.0, 0), "int": (1.0, 0)}[kind]
    text = f"{mean * scale:.{digits}f}"
    if with_std and std is not None and math.isfinite(std):
        text += f" ± {std * scale:.{digits}f}"
    return text


def _fmt_params(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.2f}{suffix}"
    return f"{value:.0f}"


_TABLE_METRICS = {
    "ser": [("test WA %", "test.wa", "pct"), ("test UA %", "test.ua", "pct"), ("test F1 %", "test.f1", "pct")],
    "rhemo": [("test recon", "test.recon", "loss"), ("test acc %", "test.acc", "pct")],
}


def _align(rows: list[list[str]]) -> str:
    """Columns padded to a common width: text (run, model, quat, status) on the left, numbers on the right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    left = {0, 1, 2, len(widths) - 1}
    lines = ["  ".join(cell.ljust(w) if i in left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             .rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def console_table(infos: Iterable[RunInfo]) -> str:
    """A plain-text, aligned table with one line per run: mean (± std over folds when there are several).

    Columns: run, model, quat, params, test WA/UA/F1 % (SER) or test recon / acc % (RH-emo), epochs,
    time per fold (s), status (finished folds / folds). SER and RH-emo runs get separate tables.
    """
    infos = sorted(infos, key=lambda i: _run_sort_key(i.run))
    blocks = []
    for kind in dict.fromkeys(i.kind for i in infos):
        metric_cols = _TABLE_METRICS[kind]
        rows = [["run", "model", "quat", "params", *[m[0] for m in metric_cols], "epochs", "time/fold (s)",
                 "status"]]
        for info in (i for i in infos if i.kind == kind):
            records = fold_records(info)
            stats = aggregate(records)
            done = sum(r.status == "done" for r in records)
            bad = sorted({r.status for r in records if r.status != "done"})
            status = f"{done}/{len(records)} done" + (f" ({', '.join(bad)})" if bad else "")
            several = done > 1

            def get(key: str, kind_: str) -> str:
                if key not in stats:
                    return "-"
                return _fmt(stats[key]["mean"], stats[key]["std"], kind_, several)

            rows.append([info.run, info.model_name, "yes" if info.quat else "no",
                         _fmt_params(stats["params"]["mean"]) if "params" in stats else "-",
                         *[get(key, k) for _, key, k in metric_cols], get("epochs", "int"),
                         get("seconds", "seconds"), status])
        blocks.append(f"{KIND_TITLES[kind]} runs\n{_align(rows)}")
    return "\n\n".join(blocks) if blocks else "(no runs)"


# ------------------------------------------------------------------------------------------- CLI
def regenerate(experiment_dir: Path) -> tuple[Path, str]:
    """Rewrite every run's summary.json and the spreadsheet of ``experiment_dir`` from disk; return the
    spreadsheet path and the console table."""
    infos = runs_on_disk(experiment_dir)
    for info in infos:
        write_run_summary(info)
    return write_spreadsheet(experiment_dir, infos), console_table(infos)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild the summaries, spreadsheet and results table of an "
                                                 "experiment folder (results/<experiment>) from its run folders.")
    parser.add_argument("experiment_dir", type=Path)
    args = parser.parse_args(argv)
    if not args.experiment_dir.is_dir():
        print(f"report: {args.experiment_dir} is not a folder", file=sys.stderr)
        return 2
    path, table = regenerate(args.experiment_dir)
    print(table)
    print(f"spreadsheet: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
