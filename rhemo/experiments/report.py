"""Experiment reports: fold status, per-run ``summary.json``, the xlsx spreadsheet and the console results table.

Everything is read back from the run folders written by the training scripts and the launcher (their file
names and the fold rule are :mod:`rhemo.train.runfolder`'s)::

    results/<experiment>/<run>[/seed<s>]/fold<k>/{config.json, metrics.json, error.txt, run.log, ...}
    results/<experiment>/<run>[/seed<s>]/summary.json  mean ± std over the finished folds
    results/<experiment>/<run>/summary.json            of a seeded run: over all its seeds and folds
    results/<experiment>/<experiment>_results.csv      tidy: one row per run × fold (pandas.read_csv reads it as is)
    results/<experiment>/<experiment>_results.xlsx     sheet 'folds' (the same rows), sheet 'mean ± std' (one per run)

A fold's status is ``done`` (readable ``metrics.json`` with status done), ``corrupt`` (a ``metrics.json`` that
cannot be read), ``failed`` (an ``error.txt`` written by the launcher) or ``missing`` (not run yet, or stopped
without a record). Accuracies, UA and F1 are stored as fractions (the xlsx shows them as percentages).

Regenerate the reports of an experiment from disk::

    python -m rhemo.experiments.report results/2_SER_quaternion_rhemo
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from rhemo.atomic import atomic_path, json_safe, write_json
from rhemo.train.config import SCRIPT_FILES
from rhemo.train.metrics import mean_std
from rhemo.train.runfolder import (CONFIG_FILE, ERROR_FILE, FOLD_DIR_PATTERN, METRICS_FILE, RUN_LOG_FILE,
                                   SEED_DIR_PATTERN, SUMMARY_FILE, fold_dir, read_metrics, seed_dirs)

#: the launcher's copy of a fold's console output (beside error.txt)
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
    config: dict[str, Any] = field(default_factory=dict)  # the first readable fold config (fallback per fold)

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
                   comment_2=str(config.get("comment_2", "") or ""), config=dict(config))


def run_sort_key(label: str) -> tuple:
    """Order of run labels: numbered runs by number ('2' before '10'), a seeded run's seeds ('1/seed2') by seed
    right after its number, any other label last."""
    run, _, seed = label.partition("/seed")
    if run.isdigit() and (not seed or seed.isdigit()):
        return (0, int(run), int(seed) if seed else -1, "")
    return (1, 0, 0, label)


def _run_info(experiment: str, label: str, run_dir: Path) -> RunInfo | None:
    """The run of ``run_dir`` from its first readable fold ``config.json`` (None when there is none)."""
    for config_path in sorted(run_dir.glob(f"fold*/{CONFIG_FILE}")):
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            return RunInfo.from_config(experiment, label, run_dir, config)
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return None


def runs_on_disk(experiment_dir: Path) -> list[RunInfo]:
    """The runs found under ``experiment_dir``: numbered folders whose folds hold a readable ``config.json``.

    A run trained over seeds (``<run>/seed<s>/fold<k>``) gives one RunInfo per seed, labelled ``<run>/seed<s>``
    (as the launcher labels it). A numbered folder without any readable fold configuration is reported on
    stderr and left out.
    """
    experiment_dir = Path(experiment_dir)
    if not experiment_dir.is_dir():
        return []
    infos = []
    for run_dir in sorted((p for p in experiment_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                          key=lambda p: int(p.name)):
        folders = [(f"{run_dir.name}/seed{seed}", path) for seed, path in seed_dirs(run_dir)]
        found = [_run_info(experiment_dir.name, label, path) for label, path in folders or [(run_dir.name, run_dir)]]
        if not any(found):
            print(f"report: {run_dir} has no readable fold*/{CONFIG_FILE}; left out of the report", file=sys.stderr)
        infos += [info for info in found if info is not None]
    return infos


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
            return FoldRecord(fold, "failed", None, first[0] if first else f"{ERROR_FILE} is empty")
        if (Path(fold_dir) / RUN_LOG_FILE).exists():
            note = "started but not finished"
    return FoldRecord(fold, status, metrics, note)


def fold_records(info: RunInfo) -> list[FoldRecord]:
    """One record per fold of the run, ``fold0`` … ``fold<num_folds-1>``. A stage-1 RH-emo run's emotion
    accuracies (heads it never trained, see :func:`untrained_heads`) are left out."""
    records = [fold_record(fold_dir(info.run_dir, k), k) for k in range(info.num_folds)]
    if untrained_heads(info.config):
        for record in records:
            if record.metrics is not None:
                record.metrics = {key: ({k: v for k, v in value.items() if not k.startswith("acc")}
                                        if key in ("train", "val", "test") and isinstance(value, dict) else value)
                                  for key, value in record.metrics.items()}
    return records


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
    """Mean and std (``rhemo.train.metrics.mean_std``) of every numeric metric over the finished folds.

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


def run_summary(info: RunInfo) -> dict[str, Any]:
    """The content of ``summary.json``: fold statuses and mean ± std of every numeric metric.

    Example shape: ``{'experiment': '2_SER', 'run': '1', ..., 'folds_done': 5,
    'folds': {'0': 'done', ...}, 'mean_std': {'test': {'wa': {'mean': 0.61, 'std': 0.02}, ...}, 'epochs': ...}}``
    (nan becomes null).
    """
    records = fold_records(info)
    return json_safe({
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
    write_json(path, run_summary(info))
    return path


def finished_metrics(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every finished training of a run folder: {'seed1/fold0' or 'fold0': metrics} (seeds and folds)."""
    found = {}
    if not run_dir.is_dir():
        return found
    for child in sorted(run_dir.iterdir()):
        if SEED_DIR_PATTERN.match(child.name) and child.is_dir():
            found.update({f"{child.name}/{k}": v for k, v in finished_metrics(child).items()})
        elif FOLD_DIR_PATTERN.match(child.name) and (child / METRICS_FILE).is_file():
            status, metrics, _ = read_metrics(child / METRICS_FILE)
            if status == "done":  # a corrupt record is not a finished training
                found[child.name] = metrics
    return found


def seed_summary(run_dir: Path) -> dict[str, Any]:
    """Mean ± std (ddof 0) of every numeric metric over all finished seeds and folds of a seeded run folder.

    ``mean_std`` is flat: {'test.wa': {'mean': ..., 'std': ...}, ...} over the keys every training has."""
    found = finished_metrics(Path(run_dir))
    flats = [flat_numbers(m) for m in found.values()]
    common = [k for k in (flats[0] if flats else {}) if all(k in f for f in flats)]
    stats = {k: {"mean": float(np.mean([f[k] for f in flats])), "std": float(np.std([f[k] for f in flats]))}
             for k in common}
    seeds = sorted({int(SEED_DIR_PATTERN.match(name.split("/")[0]).group(1)) for name in found if "/" in name})
    return {"run_dir": str(run_dir), "seeds_done": seeds, "trainings_done": len(found), "trainings": sorted(found),
            "mean_std": {k: v for k, v in stats.items() if math.isfinite(v["mean"])}}


def write_seed_summary(run_dir: Path) -> Path:
    """Write ``<run_dir>/summary.json`` over all seeds and folds (atomically) and return its path (the launcher
    writes it after each seed; each ``seed<s>/summary.json`` is :func:`write_run_summary`'s)."""
    path = Path(run_dir) / SUMMARY_FILE
    write_json(path, seed_summary(run_dir))
    return path


# ------------------------------------------------------------------------------------------- tables
#: Hyperparameter columns of the results table: column name → config key.
HYPERPARAMETERS = {"lr": "learning_rate", "batch_size": "batch_size", "patience": "patience",
                   "max_epochs": "num_epochs", "normalisation": "normalisation", "protocol": "protocol",
                   "label_view": "label_view", "seed": "seed"}
_METRICS = {"ser": ("wa", "ua", "f1", "utt_wa", "utt_ua", "utt_f1", "wa_batchmean", "loss"),
            "rhemo": ("total", "recon", "emo", "cls", "vad", "acc", "acc_valence", "acc_arousal", "acc_dominance")}
#: Metric columns of the results table, ``<split>_<metric>`` (values as in metrics.json: fractions, not %).
METRIC_COLUMNS = [f"{split}_{key}" for kind in ("ser", "rhemo") for split in ("test", "val")
                  for key in _METRICS[kind]]
RUN_COLUMNS = ["experiment", "run", "fold", "status", "script", "model", "quat", "input", "params",
               *HYPERPARAMETERS, "epochs", "best_epoch"]
TRAILING_COLUMNS = ["seconds", "health", "comment_1", "comment_2", "note"]
_PERCENT = tuple(f"{split}_{key}" for split in ("test", "val") for key in
                 ("wa", "ua", "f1", "utt_wa", "utt_ua", "utt_f1", "wa_batchmean", "acc", "acc_valence", "acc_arousal", "acc_dominance"))
FORMULA_PREFIXES = ("=", "+", "-", "@")


def input_description(config: dict[str, Any]) -> str:
    """What the network reads, from a run's config: 'spectrogram' or 'RH-emo embeddings (<which RH-emo>)'."""
    if SCRIPT_FILES.get(config.get("script", "")) != "ser" or not config.get("use_r2he", True):
        return "spectrogram"
    source = config.get("r2he_model_path", "unknown RH-emo") or "randomly initialised"
    mode = ", fine-tuned" if config.get("finetune_r2he") else ""
    return f"RH-emo embeddings ({source}{mode})"


def _scalar(value: Any) -> Any:
    """A config value as one table cell: lists and dicts become their JSON text."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _fold_config(info: RunInfo, fold: int) -> dict[str, Any]:
    try:
        config = json.loads((fold_dir(info.run_dir, fold) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def untrained_heads(config: dict[str, Any]) -> bool:
    """A stage-1 RH-emo run (loss_beta 0) never trained its emotion heads: their accuracies are not reported."""
    return SCRIPT_FILES.get(config.get("script", "")) == "rhemo" and float(config.get("loss_beta", 0.0)) == 0.0


def fold_row(info: RunInfo, record: FoldRecord) -> dict[str, Any]:
    """One row of the results table: the run, the fold's config and its metrics (nan where absent)."""
    config = _fold_config(info, record.fold) or info.config
    metrics = record.metrics or {}
    health = metrics.get("health")
    row: dict[str, Any] = {
        "experiment": info.experiment, "run": int(info.run) if info.run.isdigit() else info.run,
        "fold": record.fold, "status": record.status, "script": info.script_file,
        "model": metrics.get("model_name", config.get("model_name", info.model_name)),
        "quat": bool(metrics.get("quat", config.get("model_quat", info.quat))),
        "input": input_description(config), "params": metrics.get("params"),
        **{column: _scalar(config.get(key)) for column, key in HYPERPARAMETERS.items()},
        "epochs": metrics.get("epochs"), "best_epoch": metrics.get("best_epoch")}
    for column in METRIC_COLUMNS:
        split, key = column.split("_", 1)
        value = (metrics.get(split) or {}).get(key)
        row[column] = math.nan if value is None else value
    row.update({"seconds": metrics.get("seconds"),
                "health": health.get("warning") if isinstance(health, dict) else None,
                "comment_1": config.get("comment_1", info.comment_1) or "",
                "comment_2": config.get("comment_2", info.comment_2) or "", "note": record.note})
    return row


def results_frame(infos: Iterable[RunInfo]):
    """The tidy results table (pandas DataFrame): one row per run × fold, columns :data:`RUN_COLUMNS`, the
    :data:`METRIC_COLUMNS` of the script kinds present (nan where a fold has no value), :data:`TRAILING_COLUMNS`.
    Runs sorted by number."""
    import pandas as pd

    infos = sorted(infos, key=lambda i: run_sort_key(i.run))
    rows = [fold_row(info, record) for info in infos for record in fold_records(info)]
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS + METRIC_COLUMNS + TRAILING_COLUMNS)
    kinds = {info.kind for info in infos}
    used = [c for c in METRIC_COLUMNS if any(c.split("_", 1)[1] in _METRICS[kind] for kind in kinds)]
    return frame[RUN_COLUMNS + used + TRAILING_COLUMNS]


def summary_frame(results):
    """Mean and population std (ddof 0, as :func:`rhemo.train.metrics.mean_std`) per run over its finished
    folds (and seeds): one row per run, ``<metric>_mean`` and ``<metric>_std`` columns, ``folds_done``."""
    import pandas as pd

    keys = ["experiment", "run", "script", "model", "quat", "input"]
    numeric = [c for c in results.columns if c in METRIC_COLUMNS + ["params", "epochs", "best_epoch", "seconds"]]
    done = results[results["status"] == "done"]
    rows = []
    for (experiment, run), group in results.groupby(["experiment", "run"], sort=False):
        finished = done[(done["experiment"] == experiment) & (done["run"] == run)]
        row = {k: group[k].iloc[0] for k in keys}
        row["folds_done"] = f"{len(finished)}/{len(group)}"
        for column in numeric:
            values = pd.to_numeric(finished[column], errors="coerce")
            row[f"{column}_mean"] = values.mean() if len(values) else math.nan
            row[f"{column}_std"] = values.std(ddof=0) if len(values) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _as_text_cells(sheet) -> None:
    """Store every string cell as text: openpyxl turns a string starting with '=' into a live formula."""
    for row in sheet.iter_rows():
        for cell in row:
            if isinstance(cell.value, str) and cell.value.startswith(FORMULA_PREFIXES):
                cell.data_type = "s"
                cell.quotePrefix = True


def _format_sheet(sheet, frame) -> None:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    for index, column in enumerate(frame.columns, start=1):
        letter = get_column_letter(index)
        sheet[f"{letter}1"].font = Font(bold=True)
        sheet.column_dimensions[letter].width = max(8, min(40, len(str(column)) + 2))
        base = column.rsplit("_", 1)[0] if column.endswith(("_mean", "_std")) else column
        number_format = "0.00%" if base in _PERCENT else "#,##0" if base == "params" else None
        if number_format:
            for cell in sheet[letter][1:]:
                cell.number_format = number_format
    sheet.freeze_panes = "D2"
    _as_text_cells(sheet)


def table_paths(experiment_dir: Path) -> tuple[Path, Path]:
    """(``<exp>_results.csv``, ``<exp>_results.xlsx``) of an experiment folder."""
    experiment_dir = Path(experiment_dir)
    return (experiment_dir / f"{experiment_dir.name}_results.csv",
            experiment_dir / f"{experiment_dir.name}_results.xlsx")


def write_tables(experiment_dir: Path, infos: Sequence[RunInfo]) -> tuple[Path, Path]:
    """Write the results CSV and the xlsx (sheet 'folds': the same rows; sheet 'mean ± std': one row per run),
    both from one DataFrame and atomically. Every string cell of the xlsx is stored as text, never as a
    formula. Returns (csv path, xlsx path)."""
    import pandas as pd

    experiment_dir = Path(experiment_dir)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    results = results_frame(infos)
    csv_path, xlsx_path = table_paths(experiment_dir)
    with atomic_path(csv_path) as tmp_csv:
        results.to_csv(tmp_csv, index=False)
    with atomic_path(xlsx_path) as tmp_xlsx, pd.ExcelWriter(tmp_xlsx, engine="openpyxl") as writer:
        for name, frame in (("folds", results), ("mean ± std", summary_frame(results))):
            frame.to_excel(writer, sheet_name=name, index=False)
            _format_sheet(writer.sheets[name], frame)
    return csv_path, xlsx_path


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


def _health_warning(record: FoldRecord) -> str | None:
    """The RH-emo health warning of a finished fold (``metrics.json`` → health.warning), or None."""
    health = (record.metrics or {}).get("health") if record.status == "done" else None
    return health.get("warning") if isinstance(health, dict) else None


def console_table(infos: Iterable[RunInfo]) -> str:
    """A plain-text, aligned table with one line per run: mean (± std over folds when there are several).

    Columns: run, model, quat, params, test WA/UA/F1 % (SER) or test recon / acc % and health (RH-emo),
    epochs, time per fold (s), status (finished folds / folds). SER and RH-emo runs get separate tables; below
    the RH-emo table, one line per fold whose ``metrics.json`` carries a health warning.
    """
    infos = sorted(infos, key=lambda i: run_sort_key(i.run))
    blocks = []
    for kind in dict.fromkeys(i.kind for i in infos):
        metric_cols = _TABLE_METRICS[kind]
        health_col = ["health"] if kind == "rhemo" else []
        rows = [["run", "model", "quat", "params", *[m[0] for m in metric_cols], *health_col, "epochs",
                 "time/fold (s)", "status"]]
        warnings = []
        for info in (i for i in infos if i.kind == kind):
            records = fold_records(info)
            folds_warned = [(r.fold, _health_warning(r)) for r in records if _health_warning(r)]
            warnings += [f"WARNING run {info.run} fold {fold}: {text}" for fold, text in folds_warned]
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
                         *[get(key, k) for _, key, k in metric_cols],
                         *(["WARN" if folds_warned else ("ok" if done else "-")] if health_col else []),
                         get("epochs", "int"), get("seconds", "seconds"), status])
        blocks.append("\n".join([f"{KIND_TITLES[kind]} runs", _align(rows), *warnings]))
    return "\n\n".join(blocks) if blocks else "(no runs)"


# ------------------------------------------------------------------------------------------- CLI
def regenerate(experiment_dir: Path) -> tuple[tuple[Path, Path], str]:
    """Rewrite every run's summary.json (a seeded run's: each seed's and the one over its seeds) and the
    results CSV and xlsx of ``experiment_dir`` from disk; return the (csv, xlsx) paths and the console table."""
    infos = runs_on_disk(experiment_dir)
    for info in infos:
        write_run_summary(info)
    for seeded_run_dir in dict.fromkeys(i.run_dir.parent for i in infos if SEED_DIR_PATTERN.match(i.run_dir.name)):
        write_seed_summary(seeded_run_dir)
    return write_tables(experiment_dir, infos), console_table(infos)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild the summaries, spreadsheet and results table of an "
                                                 "experiment folder (results/<experiment>) from its run folders.")
    parser.add_argument("experiment_dir", type=Path)
    args = parser.parse_args(argv)
    if not args.experiment_dir.is_dir():
        print(f"report: {args.experiment_dir} is not a folder", file=sys.stderr)
        return 2
    (csv_path, xlsx_path), table = regenerate(args.experiment_dir)
    print(table)
    print(f"results table: {csv_path}\nspreadsheet: {xlsx_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
