"""From an experiment file's run to the trainings the launcher starts: references, seeds, overrides.

**References.** Wherever a run needs a checkpoint of another run (``load_pretrained``, ``r2he_model_path``) it
may name that run instead of typing a path::

    "load_pretrained": {"experiment": 3, "run": 1}            # fold 0 of experiment 3, run 1
    "r2he_model_path": {"experiment": 1, "run": 2}            # the RH-emo of experiment 1, run 2
    "load_pretrained": {"run": 1, "fold": "same"}             # same file, run 1, the fold being trained
    "load_pretrained": {"experiment": 3, "run": 1, "seed": 2} # pin the seed of a seeded run

``experiment`` defaults to the file holding the reference, ``fold`` to 0 (``"same"``: the fold being trained,
which needs both runs to have the same ``num_folds``). When the referenced run has seeds, the reference follows
the seed being trained unless it pins one. The reference becomes
``<output_folder>/<file stem>/<run>[/seed<s>]/fold<k>/checkpoint.pt`` before the schema checks the key (kind
``path``); the launcher refuses to start a fold whose referenced fold has no ``metrics.json`` yet. Whether the
referenced run is seeded: as this command trains it when its experiment is among ``--ids``; otherwise as its
folders on disk show (``seed<s>`` or ``fold<k>``), or, before it ever ran, as its file (and ``--seeds``) say.

**Seeds.** A run's ``seeds`` list (or ``exp_instance.py --seeds 1,2,3``, which wins) makes one training per
seed, each in ``<run>/seed<s>/`` with ``seed`` set to it. Without seeds the run folder is ``<run>/`` as before.

**Overrides.** ``--override '{"num_epochs": 1}'`` (a JSON object, never evaluated) is merged over every run,
after the run's own keys; ``--store_root DIR`` makes every run read ``DIR/<name of its store folder>``. Together
they let the shipped files run unchanged on small corpora (``make paper-mini``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rhemo.train.config import SCRIPT_FILES, ConfigError, coerce, defaults, options_for, parse_json_object
from rhemo.train.runfolder import CHECKPOINT_FILE, FOLD_DIR_PATTERN, METRICS_FILE, fold_dir, seed_dirs

#: configuration keys that may hold a reference to another run's checkpoint
REFERENCE_KEYS = ("load_pretrained", "r2he_model_path")
SAME = "same"
_REFERENCE_FIELDS = ("experiment", "run", "fold", "seed")


def parse_seeds(text: str) -> list[int]:
    """Parse ``--seeds``: "1,2,3" or a JSON list "[1,2,3]" of distinct integers.

    >>> parse_seeds('1,2,3'), parse_seeds('[4]')
    ([1, 2, 3], [4])
    """
    try:
        value = json.loads(text if text.strip().startswith("[") else f"[{text}]")
    except json.JSONDecodeError:
        value = None
    try:
        if value is None:
            raise ConfigError(text)
        return coerce(options_for("launcher")["seeds"], value, "--seeds")
    except ConfigError:
        raise ConfigError(f"--seeds: expected distinct integers such as 1,2,3, got {text!r}") from None


def parse_override(text: str) -> dict[str, Any]:
    """Parse ``--override``: a JSON object of configuration keys merged over every run."""
    value = parse_json_object(text, "--override", 'a JSON object such as {"num_epochs": 1}')
    if "seeds" in value:
        raise ConfigError("--override: set seeds with --seeds, not in the override")
    return value


@dataclass(frozen=True)
class Reference:
    """A resolved reference: which fold folder of which run a configuration key points at."""

    key: str
    stem: str  # file stem of the referenced experiment
    run: int
    fold: int | None  # None: the fold being trained
    seed: int | None  # None: the referenced run has no seed folders
    output_folder: Path

    def fold_dir(self, fold: int) -> Path:
        return fold_dir(self.output_folder / self.stem / str(self.run), fold if self.fold is None else self.fold,
                        self.seed)

    def path(self, fold: int) -> str:
        return str(self.fold_dir(fold) / CHECKPOINT_FILE)

    def describe(self, fold: int) -> str:
        seed = "" if self.seed is None else f" seed {self.seed}"
        which = fold if self.fold is None else self.fold
        return f"{self.stem} run {self.run}{seed} fold {which}"

    def finished(self, fold: int) -> bool:
        return (self.fold_dir(fold) / METRICS_FILE).is_file()


NOT_ON_DISK = "not on disk"


def seeds_on_disk(run_dir: Path) -> list[int] | None | str:
    """How a run folder was trained: its seeds (``seed<s>`` folders), None (``fold<k>`` folders, unseeded) or
    :data:`NOT_ON_DISK`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return NOT_ON_DISK
    seeds = [seed for seed, _ in seed_dirs(run_dir)]
    if seeds:
        return seeds
    return None if any(FOLD_DIR_PATTERN.match(p.name) and p.is_dir() for p in run_dir.iterdir()) else NOT_ON_DISK


def reference_paths(references: dict[str, Reference], fold: int) -> dict[str, str]:
    """The checkpoint path of every reference for ``fold`` (key → path)."""
    return {key: ref.path(fold) for key, ref in references.items()}


def unfinished(references: dict[str, Reference], fold: int) -> list[str]:
    """One line per reference of ``fold`` whose run has not finished (no metrics.json), naming where it looked."""
    return [f"{key} needs {ref.describe(fold)}, which has not finished ({ref.fold_dir(fold) / METRICS_FILE} is "
            f"missing); run it first" for key, ref in references.items() if not ref.finished(fold)]


def _reference_spec(key: str, value: dict, source: str) -> dict[str, Any]:
    """Check the fields of one reference object; returns them with their defaults filled."""
    where = f"{source}: key '{key}' (a reference)"
    extra = [k for k in value if k not in _REFERENCE_FIELDS]
    if extra:
        raise ConfigError(f"{where} has unknown field(s) {', '.join(extra)}; expected {', '.join(_REFERENCE_FIELDS)}")

    def integer(name: str, minimum: int, allow_same: bool) -> Any:
        field = value[name]
        if allow_same and field == SAME:
            return SAME
        if isinstance(field, bool) or not isinstance(field, int) or field < minimum:
            same = ' or "same"' if allow_same else ""
            raise ConfigError(f"{where}: field '{name}' expects an integer >= {minimum}{same}, got {field!r}")
        return field

    if "run" not in value:
        raise ConfigError(f"{where} needs a 'run' number, e.g. {{\"experiment\": 3, \"run\": 1}}")
    return {"experiment": integer("experiment", 0, False) if "experiment" in value else None,
            "run": integer("run", 0, False),
            "fold": integer("fold", 0, True) if "fold" in value else 0,
            "seed": integer("seed", 0, True) if "seed" in value else SAME}


@dataclass
class RunParams:
    """A run's parameters as the launcher will train them: merged, overridden, store redirected, seeds popped."""

    params: dict[str, Any]
    seeds: list[int] | None
    source: str

    @property
    def num_folds(self) -> int:
        return self.params.get("num_folds", 1)


def run_params(merged: dict[str, Any], source: str, override: dict[str, Any], store_root: Path | None,
               cli_seeds: list[int] | None) -> RunParams:
    """Apply the override and the store root to a run's merged parameters and take out its seeds."""
    params = {**merged, **override}
    file_seeds = coerce(options_for("launcher")["seeds"], params.pop("seeds", None), source)
    if store_root is not None:
        kind = SCRIPT_FILES.get(params.get("script"), "ser")
        params["store_path"] = str(Path(store_root) / Path(params.get("store_path",
                                                                      defaults(kind)["store_path"])).name)
    return RunParams(params, cli_seeds if cli_seeds is not None else file_seeds, source)


def resolve_references(this: RunParams, seed: int | None, experiment_id: int,
                       lookup: Callable[[int, int], tuple[str, RunParams]], output_folder: Path
                       ) -> dict[str, Reference]:
    """Turn every reference object of ``this`` into a :class:`Reference` (raises ConfigError naming the key).

    ``lookup(experiment id, run)`` gives the referenced run's file stem and parameters (or raises ConfigError);
    ``seed`` is the seed being trained (None: unseeded).
    """
    resolved = {}
    for key in REFERENCE_KEYS:
        value = this.params.get(key)
        if not isinstance(value, dict):
            continue
        spec = _reference_spec(key, value, this.source)
        target_id = experiment_id if spec["experiment"] is None else spec["experiment"]
        try:
            stem, target = lookup(target_id, spec["run"])
        except ConfigError as exc:
            raise ConfigError(f"{this.source}: key '{key}': {exc}") from None
        where = f"{this.source}: key '{key}' refers to {stem} run {spec['run']}"
        if spec["fold"] == SAME and target.num_folds != this.num_folds:
            raise ConfigError(f"{where} with fold \"same\", but that run has {target.num_folds} fold(s) and this "
                              f"one {this.num_folds}")
        if spec["fold"] != SAME and spec["fold"] >= target.num_folds:
            raise ConfigError(f"{where}, fold {spec['fold']}, but that run has {target.num_folds} fold(s)")
        resolved[key] = Reference(key, stem, spec["run"], None if spec["fold"] == SAME else spec["fold"],
                                  _reference_seed(spec["seed"], seed, target.seeds, where), Path(output_folder))
    return resolved


def _reference_seed(wanted: Any, seed: int | None, target_seeds: list[int] | None, where: str) -> int | None:
    """The seed folder a reference points at (None: the referenced run is unseeded)."""
    if target_seeds is None:
        if wanted != SAME:
            raise ConfigError(f"{where} with seed {wanted}, but that run has no seeds")
        return None
    chosen = seed if wanted == SAME else wanted
    if chosen not in target_seeds:
        detail = "this run is not seeded" if chosen is None else f"seed {chosen} is not among them"
        raise ConfigError(f"{where}, whose seeds are {target_seeds}, and {detail}; pin one with \"seed\" in the "
                          f"reference or run both with the same --seeds")
    return chosen
