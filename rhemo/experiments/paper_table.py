"""The paper's main table rebuilt from finished runs, beside the published numbers (``exp_instance.py --paper_table``).

Two data files in ``experiments/`` drive it:

* ``paper_cells.csv``: which run of which experiment file reproduces each cell (experiment, run, corpus,
  network, variant, setting). ``setting`` is ``paper`` for the main table (random split, RH-emo pretrained on
  all of IEMOCAP), ``speaker-shared`` for experiment 4 (leave-one-session-out, one RH-emo for every fold) and
  ``speaker-per-fold`` for the strictly speaker-independent chain (each fold's own RH-emo);
* ``published_results.csv``: the published test accuracy of each (corpus, network, variant) with its source.

A cell's value is the mean ± std (population, ddof 0) over every finished training of its run: all seeds
(``<run>/seed<s>/fold<k>``) and folds (``<run>/fold<k>``), read from their ``metrics.json``. A cell without a
finished training stays empty ("missing"): nothing is filled in. Written to the output folder:
``paper_table.csv`` (tidy: one row per cell and metric), ``paper_table.md``, ``paper_table.xlsx`` and
``paper_table.png`` (ours against published, one panel per corpus), plus the paired Wilcoxon signed-rank test
of Base against RH-emo (and Base+pre against RH-emo+pre) over all cells where both values exist.
"""
from __future__ import annotations

import csv
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from rhemo.atomic import atomic_path, write_json, write_text
from rhemo.experiments.report import finished_metrics

CELLS_FILE = "paper_cells.csv"
PUBLISHED_FILE = "published_results.csv"
CORPORA = ("IEMOCAP", "RAVDESS", "EmoDB", "TESS")
NETWORKS = ("AlexNet", "ResNet-50", "VGG16")
VARIANTS = ("Base", "Base+pre", "RH-emo", "RH-emo+pre")
SETTINGS = ("paper", "speaker-shared", "speaker-per-fold")
#: (metric name in the table, key in metrics.json 'test', published?) - the paper reports segment accuracy
METRICS = (("test accuracy", "wa", True), ("test UA", "ua", False), ("test macro F1", "f1", False))
PAIRS = (("Base", "RH-emo"), ("Base+pre", "RH-emo+pre"))
TABLE_COLUMNS = ("corpus", "network", "variant", "setting", "metric", "ours_mean", "ours_std", "n_runs",
                 "published", "delta", "experiment", "run")


class TableError(ValueError):
    """A bad data file (cells or published values): the message names the file, the line and the field."""


# ----------------------------------------------------------------------------------------------- reading
def _read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file whose lines starting with '#' are comments: (line number, row)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TableError(f"cannot read {path}: {exc.strerror}") from None
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(line for _, line in numbered)))
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise TableError(f"{path}: header lacks column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    return [(numbered[i + 1][0], row) for i, row in enumerate(reader)]


def _check_choice(path: Path, line: int, row: dict[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = row[name]
    if value not in choices:
        raise TableError(f"{path}, line {line}: {name} {value!r} is not one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class Cell:
    """One cell of the table and the run that fills it."""

    corpus: str
    network: str
    variant: str
    setting: str
    experiment: int
    run: int


def read_cells(path: Path) -> list[Cell]:
    """``paper_cells.csv`` → cells; a bad value or a cell listed twice raises TableError naming the line."""
    cells, seen = [], set()
    for line, row in _read_csv(path, ("experiment", "run", "corpus", "network", "variant", "setting")):
        try:
            experiment, run = int(row["experiment"]), int(row["run"])
        except (TypeError, ValueError):
            raise TableError(f"{path}, line {line}: experiment and run must be integers, got "
                             f"{row['experiment']!r}, {row['run']!r}") from None
        cell = Cell(_check_choice(path, line, row, "corpus", CORPORA),
                    _check_choice(path, line, row, "network", NETWORKS),
                    _check_choice(path, line, row, "variant", VARIANTS),
                    _check_choice(path, line, row, "setting", SETTINGS), experiment, run)
        key = (cell.corpus, cell.network, cell.variant, cell.setting)
        if key in seen:
            raise TableError(f"{path}, line {line}: cell {' / '.join(key)} is listed twice")
        seen.add(key)
        cells.append(cell)
    return cells


def read_published(path: Path) -> dict[tuple[str, str, str, str], float]:
    """``published_results.csv`` → {(corpus, network, variant, metric): value in %}."""
    values = {}
    for line, row in _read_csv(path, ("corpus", "network", "variant", "metric", "published", "source")):
        key = (_check_choice(path, line, row, "corpus", CORPORA), _check_choice(path, line, row, "network", NETWORKS),
               _check_choice(path, line, row, "variant", VARIANTS), row["metric"])
        try:
            values[key] = float(row["published"])
        except ValueError:
            raise TableError(f"{path}, line {line}: published must be a number, got {row['published']!r}") from None
    return values


# ----------------------------------------------------------------------------------------------- the table
@dataclass
class Row:
    """One cell and metric of the tidy table (values in %; None = missing)."""

    cell: Cell
    metric: str
    ours_mean: float | None
    ours_std: float | None
    n_runs: int
    published: float | None
    values: list[float] = field(default_factory=list)

    @property
    def delta(self) -> float | None:
        return None if self.ours_mean is None or self.published is None else self.ours_mean - self.published

    def record(self) -> dict[str, Any]:
        c = self.cell
        return {"corpus": c.corpus, "network": c.network, "variant": c.variant, "setting": c.setting,
                "metric": self.metric, "ours_mean": self.ours_mean, "ours_std": self.ours_std,
                "n_runs": self.n_runs, "published": self.published, "delta": self.delta,
                "experiment": c.experiment, "run": c.run}


def experiment_stems(experiments_folder: Path) -> dict[int, str]:
    """{experiment id: file stem} of the numbered files in ``experiments_folder``."""
    stems = {}
    for path in Path(experiments_folder).glob("*.txt"):
        match = re.match(r"^(\d+)_", path.name)
        if match:
            stems[int(match.group(1))] = path.stem
    return stems


def build_rows(cells: list[Cell], published: dict, stems: dict[int, str], results: Path) -> list[Row]:
    """One row per cell and metric, from the finished trainings under ``results``."""
    rows = []
    for cell in cells:
        stem = stems.get(cell.experiment)
        found = {} if stem is None else finished_metrics(Path(results) / stem / str(cell.run))
        for name, key, has_published in METRICS:
            values = [100.0 * m["test"][key] for m in found.values()
                      if isinstance(m.get("test"), dict) and isinstance(m["test"].get(key), (int, float))]
            publ = published.get((cell.corpus, cell.network, cell.variant, name)) \
                if has_published and cell.setting == "paper" else None
            rows.append(Row(cell, name, float(np.mean(values)) if values else None,
                            float(np.std(values)) if values else None, len(values), publ, values))
    return rows


def wilcoxon_tests(rows: list[Row]) -> list[dict[str, Any]]:
    """Paired Wilcoxon signed-rank tests (two-sided) of the main table's test accuracy, for ours and published:
    Base vs RH-emo, and over both pairs (Base vs RH-emo, Base+pre vs RH-emo+pre), over every (corpus, network)
    where both values exist."""
    from scipy.stats import wilcoxon

    acc = {(r.cell.corpus, r.cell.network, r.cell.variant): r for r in rows
           if r.metric == METRICS[0][0] and r.cell.setting == "paper"}
    tests = []
    for label, pairs in (("Base vs RH-emo", PAIRS[:1]), ("Base vs RH-emo and Base+pre vs RH-emo+pre", PAIRS)):
        for source in ("ours", "published"):
            diffs = []
            for (corpus, network, variant), row in acc.items():
                for base, ours in pairs:
                    other = acc.get((corpus, network, ours))
                    if variant == base and other is not None:
                        a, b = (row.ours_mean, other.ours_mean) if source == "ours" else (row.published,
                                                                                          other.published)
                        if a is not None and b is not None:
                            diffs.append(b - a)
            record = {"test": label, "values": source, "n_pairs": len(diffs),
                      "mean_difference_pp": float(np.mean(diffs)) if diffs else None, "statistic": None,
                      "p_value": None, "note": ""}
            if sum(d != 0 for d in diffs) < 2:
                record["note"] = "not computable: fewer than 2 pairs with a non-zero difference"
            else:
                result = wilcoxon(diffs)
                record.update(statistic=float(result.statistic), p_value=float(result.pvalue))
            tests.append(record)
    return tests


# ----------------------------------------------------------------------------------------------- writers
def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_csv(rows: list[Row], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (_fmt(v, 4) if isinstance(v, float) else v) for k, v in row.record().items()})
    write_text(path, buffer.getvalue())


def _cell_text(row: Row | None) -> str:
    if row is None or row.ours_mean is None:
        ours = "missing"
    else:
        ours = f"{row.ours_mean:.2f} ± {row.ours_std:.2f} (n={row.n_runs})"
    published = "" if row is None or row.published is None else f" / {row.published:.2f}"
    return ours + published


def markdown(rows: list[Row], tests: list[dict[str, Any]]) -> str:
    """The table as Markdown: the main table (ours ± std (n) / published), the speaker-independent table, the
    Wilcoxon tests."""
    acc = {(r.cell.corpus, r.cell.network, r.cell.variant, r.cell.setting): r for r in rows
           if r.metric == METRICS[0][0]}
    lines = ["# Test accuracy (%): ours (mean ± std over seeds and folds, n trainings) / published", "",
             "Published values: the authors' development repo, not checked against the PDF "
             "(experiments/published_results.csv). Empty published: none exists (dash in the paper's table).", "",
             "| corpus | network | " + " | ".join(VARIANTS) + " |", "|---|---|" + "---|" * len(VARIANTS)]
    for corpus in CORPORA:
        for network in NETWORKS:
            if any((corpus, network, v, "paper") in acc for v in VARIANTS):
                cells = [_cell_text(acc.get((corpus, network, v, "paper"))) if (corpus, network, v, "paper") in acc
                         else "–" for v in VARIANTS]
                lines.append(f"| {corpus} | {network} | " + " | ".join(cells) + " |")
    columns = [("Base", "speaker-shared"), ("RH-emo", "speaker-shared"), ("RH-emo", "speaker-per-fold")]
    lines += ["", "## IEMOCAP, speaker-independent (leave one session out; beyond the paper)", "",
              "| network | Base (exp. 4) | RH-emo, one RH-emo for all folds (exp. 4) | RH-emo, each fold's own "
              "RH-emo (strict chain) |", "|---|---|---|---|"]
    for network in NETWORKS:
        keys = [("IEMOCAP", network, v, s) for v, s in columns]
        if any(k in acc for k in keys):
            lines.append(f"| {network} | " + " | ".join(_cell_text(acc.get(k)) if k in acc else "–" for k in keys)
                         + " |")
    lines += ["", "## Paired Wilcoxon signed-rank tests (two-sided) over the main table's cells", "",
              "| test | values | pairs | mean difference (pp) | statistic | p |", "|---|---|---|---|---|---|"]
    for t in tests:
        p = _fmt(t["p_value"], 4) if t["p_value"] is not None else t["note"]
        lines.append(f"| {t['test']} | {t['values']} | {t['n_pairs']} | {_fmt(t['mean_difference_pp'])} | "
                     f"{_fmt(t['statistic'], 1)} | {p} |")
    return "\n".join(lines) + "\n"


def write_xlsx(rows: list[Row], tests: list[dict[str, Any]], path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "paper table"
    sheet.append(list(TABLE_COLUMNS))
    for row in rows:
        record = row.record()
        if record["ours_mean"] is None:
            record["ours_mean"] = "missing"
        sheet.append([record[k] for k in TABLE_COLUMNS])
    stats = book.create_sheet("wilcoxon")
    keys = ("test", "values", "n_pairs", "mean_difference_pp", "statistic", "p_value", "note")
    stats.append(list(keys))
    for t in tests:
        stats.append([t[k] for k in keys])
    with atomic_path(path) as tmp:
        book.save(tmp)


def write_chart(rows: list[Row], path: Path) -> None:
    """Bars of test accuracy, ours (with std) against published, one panel per corpus of the main table."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    acc = [r for r in rows if r.metric == METRICS[0][0] and r.cell.setting == "paper"]
    corpora = [c for c in CORPORA if any(r.cell.corpus == c for r in acc)]
    fig, axes = plt.subplots(len(corpora) or 1, 1, figsize=(13, 3.2 * max(len(corpora), 1)), squeeze=False)
    for ax, corpus in zip(axes[:, 0], corpora):
        cells = [r for r in acc if r.cell.corpus == corpus]
        x = np.arange(len(cells))
        ours = [np.nan if r.ours_mean is None else r.ours_mean for r in cells]
        std = [0.0 if r.ours_std is None else r.ours_std for r in cells]
        published = [np.nan if r.published is None else r.published for r in cells]
        ax.bar(x - 0.2, ours, 0.4, yerr=std, capsize=3, label="ours (mean ± std)", color="tab:blue")
        ax.bar(x + 0.2, published, 0.4, label="published (dev repo)", color="tab:gray")
        for i, r in enumerate(cells):
            if r.ours_mean is None:
                ax.text(x[i] - 0.2, 1, "missing", rotation=90, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, [f"{r.cell.network}\n{r.cell.variant}" for r in cells], fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(corpus)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: TESS bars reach 100
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def write_all(results: Path, experiments_folder: Path, console: TextIO | None = None) -> int:
    """Collect the finished runs under ``results`` and write paper_table.{csv,md,xlsx,png} and
    paper_table_wilcoxon.json there. Returns 0, or 2 with one line on stderr for a bad data file."""
    console = sys.stdout if console is None else console
    try:
        cells = read_cells(Path(experiments_folder) / CELLS_FILE)
        published = read_published(Path(experiments_folder) / PUBLISHED_FILE)
    except TableError as exc:
        print(f"exp_instance.py --paper_table: error: {exc}", file=sys.stderr)
        return 2
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    rows = build_rows(cells, published, experiment_stems(experiments_folder), results)
    tests = wilcoxon_tests(rows)
    write_csv(rows, results / "paper_table.csv")
    text = markdown(rows, tests)
    write_text(results / "paper_table.md", text)
    write_xlsx(rows, tests, results / "paper_table.xlsx")
    write_chart(rows, results / "paper_table.png")
    write_json(results / "paper_table_wilcoxon.json", tests)
    filled = sum(r.ours_mean is not None for r in rows if r.metric == METRICS[0][0])
    print(text, file=console)
    print(f"{filled} of {len(cells)} cells have finished runs; written: "
          f"{', '.join(str(results / n) for n in ('paper_table.csv', 'paper_table.md', 'paper_table.xlsx', 'paper_table.png'))}",
          file=console)
    return 0
