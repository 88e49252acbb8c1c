"""Gather the ``results.json`` of every run under a folder into one tidy table: one row per run.

A row holds what the run recorded (task, model, method, seed, parameter counts, steps, wall time,
every final metric, the no-prompt baseline) and every setting of its composed config
(``.hydra/config.yaml``), flat, as ``method.prompt_length``, ``trainer.gradient_clip_val``, ....

Two runs are seeds of one setting only when their composed configs are equal apart from the seed
and what only says where things go or how often they are saved (:data:`NOT_A_SETTING`): the
``setting`` column is a digest of the rest. A sweep over ``trainer.gradient_clip_val=0.001,10.0`` is
two settings, whatever the command line looked like.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from promptlearn.utils.errors import DataError

log = logging.getLogger(__name__)

RUN_COLUMNS = ["task", "model", "method", "seed", "trainable_params", "total_params", "train_steps", "wall_time_s"]
# Short names for the settings the plots are drawn against.
ALIASES = {"prompt_length": "method.prompt_length", "init": "method.init", "lr": "optimizer.lr",
           "experiment": "experiment_name"}
# Config keys (or prefixes) that never make two runs different settings.
NOT_A_SETTING = (
    "seed", "output_dir", "ckpt_path", "logger.", "slurm.", "callbacks.", "hydra.", "baseline", "test",
    "checkpoint.every_n_train_steps", "checkpoint.every_n_minutes", "data.num_workers", "data.eval_batch_size",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps", "model.cache_dir",
    "sweep_resume",
)
CONFIG_PREFIX = "config."


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"method": {"prompt_length": 20}}`` -> ``{"method.prompt_length": 20}``; lists become tuples."""
    if isinstance(tree, Mapping):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(tree, (list, tuple)):
        return {prefix: json.dumps(list(tree), sort_keys=True, default=str)}
    return {prefix: tree}


def is_setting(key: str) -> bool:
    return not any(key == skip or key.startswith(skip) for skip in NOT_A_SETTING)


def setting_digest(config: Mapping[str, Any]) -> str:
    """What makes a setting: every config value but the seed and where-things-go, as a short digest."""
    identity = {k: v for k, v in sorted(config.items()) if is_setting(k)}
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]


def backbone_params(total: float, trainable: float) -> float:
    """Parameters of the frozen backbone: the total less what trained, unless everything trained (model tuning)."""
    return total - trainable if trainable < total else total


def make_row(results: Mapping[str, Any], config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """One table row from a run's results and its flat config."""
    missing = {"task", "model", "method", "metrics"} - set(results)
    if missing:
        raise DataError(f"{source} lacks {sorted(missing)}; is it a promptlearn results.json?")
    row: dict[str, Any] = {"run": source}
    row.update({key: results.get(key) for key in RUN_COLUMNS})
    row["device"] = results.get("environment", {}).get("device")
    row.update({alias: config.get(key) for alias, key in ALIASES.items()})
    if row["total_params"] is not None and row["trainable_params"] is not None:
        row["backbone_params"] = backbone_params(row["total_params"], row["trainable_params"])
    row["setting"] = setting_digest({**config, "task.name": results["task"], "model.name": results["model"],
                                     "method.name": results["method"]})
    row.update({key: float(value) for key, value in results["metrics"].items()})
    row.update({f"baseline/{key}": float(value) for key, value in results.get("baseline", {}).items()})
    for task, metrics in results.get("transfer", {}).items():  # zero-shot evaluation on other tasks
        row.update({f"transfer/{task}/{key}": float(value) for key, value in metrics.items()})
    row.update({CONFIG_PREFIX + key: value for key, value in config.items()})
    return row


def saved_config(path: Path) -> dict[str, Any]:
    """A run's composed config, flat; interpolations Hydra resolved at run time are left as written."""
    if not path.is_file():
        return {}
    return flatten(OmegaConf.to_container(OmegaConf.load(path), resolve=False))


def run_row(results_path: Path, name: str) -> dict[str, Any]:
    try:
        results = json.loads(results_path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{results_path} is not valid JSON ({err.msg}); delete it or rerun that job") from None
    return make_row(results, saved_config(results_path.parent / ".hydra" / "config.yaml"), name)


def job_folders(root: Path) -> list[Path]:
    """Every run folder under ``root``: those Hydra started (``.hydra/``) and those that finished (``results.json``)."""
    started = {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
    finished = {p.parent for p in root.rglob("results.json")}
    return sorted(started | finished)


def read_runs_table(path: Path) -> pd.DataFrame:
    """The ``runs.csv`` an earlier report wrote: the same rows, for run folders that are gone."""
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not a readable runs table ({err}); pass the runs.csv a report wrote") from None
    missing = {"run", "task", "model", "method", "setting"} - set(table.columns)
    if missing:
        raise DataError(f"{path} lacks the columns {sorted(missing)}; pass the runs.csv a report wrote, not its summary")
    table["setting"] = table["setting"].astype(str)
    table.attrs["missing"] = []
    log.info("read %d runs from %s", len(table), path)
    return table


def collect_runs(root: str | Path) -> pd.DataFrame:
    """Every ``results.json`` under ``root`` (a multirun folder, or several), one row each, in path order;
    or, for a ``.csv`` file, the runs table an earlier report wrote (:func:`read_runs_table`).

    The ``run`` column names each run's folder relative to ``root``. Jobs that started but have no
    ``results.json`` are named in a warning and in the table's ``attrs["missing"]``.
    """
    root = Path(root)
    if root.suffix == ".csv" and root.is_file():
        return read_runs_table(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass a sweep folder such as multirun/<date>_<time>, "
                        "or a runs.csv an earlier report wrote")
    folders = job_folders(root)
    done = [f for f in folders if (f / "results.json").is_file()]
    missing = [str(f.relative_to(root)) for f in folders if f not in done]
    if not done:
        raise DataError(f"no results.json under {root}; has the sweep finished a run?")
    if missing:
        log.warning("%s: %d of %d jobs have no results.json yet (unfinished or failed): %s", root, len(missing),
                    len(folders), ", ".join(missing))
    log.info("read %d runs under %s", len(done), root)
    table = pd.DataFrame([run_row(f / "results.json", str(f.relative_to(root))) for f in done])
    table.attrs["missing"] = missing
    return table


# A run read twice (its folder, and the runs.csv of a report that already read it) matches on these.
RUN_IDENTITY = ("run", "setting", "seed", "wall_time_s")


def combine(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The runs of several tables, each run once: a run given twice (say, by a runs.csv and by the folder
    it was read from) counts once."""
    tables = list(tables)
    combined = pd.concat(tables, ignore_index=True)
    identity = [c for c in RUN_IDENTITY if c in combined.columns]
    repeated = combined.duplicated(subset=identity)
    if repeated.any():
        log.warning("%d run(s) given twice, counted once: %s", int(repeated.sum()),
                    ", ".join(combined.loc[repeated, "run"].astype(str)))
        combined = combined[~repeated].reset_index(drop=True)
    combined.attrs["missing"] = [m for t in tables for m in t.attrs.get("missing", [])]
    return combined


def _as_text(value: Any) -> str:
    """A cell as the command line would write it: 3.0 is 3, a missing value is empty."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def select_runs(runs: pd.DataFrame, conditions: Iterable[str]) -> pd.DataFrame:
    """The runs that meet every ``column=value[,value...]`` condition (``method=prompt_tuning,model_tuning``,
    ``config.method.num_shots=0``); values are compared as written, so ``seed=0`` matches 0 and 0.0."""
    conditions = list(conditions)
    if not conditions:
        return runs
    kept = runs
    for condition in conditions:
        column, equals, values = condition.partition("=")
        if not equals or not column:
            raise DataError(f"--where {condition!r}: write COLUMN=VALUE[,VALUE...], such as method=prompt_tuning")
        if column not in runs.columns:
            known = ", ".join(c for c in runs.columns if not c.startswith("config.")) + ", config.<setting>"
            raise DataError(f"--where {condition!r}: the runs have no column '{column}'; they have {known}")
        wanted = set(values.split(","))
        kept = kept[kept[column].map(_as_text).isin(wanted)]
    if kept.empty:
        raise DataError(f"no run meets --where {' '.join(conditions)}; the runs.csv of a report lists the values")
    kept = kept.reset_index(drop=True)
    kept.attrs["missing"] = runs.attrs.get("missing", [])
    return kept
