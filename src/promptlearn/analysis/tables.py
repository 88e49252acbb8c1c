"""Summaries of a run table: the spread over seeds per setting, averages over a suite of tasks, markdown."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import pandas as pd

from promptlearn.analysis.runs import ALIASES, CONFIG_PREFIX, is_setting, setting_digest
from promptlearn.utils.errors import ConfigError

log = logging.getLogger(__name__)

NAMED = ["task", "model", "method"]
SUITE_TASK = "average"
MEANS = ["trainable_params", "train_steps", "wall_time_s", "backbone_params"]


def require_metric(runs: pd.DataFrame, metric: str) -> None:
    if metric not in runs:
        found = sorted(c for c in runs.columns if "/" in c and not c.startswith(("baseline/", "transfer/")))
        raise ConfigError(f"no run recorded '{metric}'; choose one of {found} with --metric")


def varying_settings(runs: pd.DataFrame) -> list[str]:
    """The config settings (``method.prompt_length``, ``trainer.gradient_clip_val``) that tell runs of one
    task, model and method apart; what follows from the model or the method alone is not repeated."""
    named = [c for c in NAMED if c in runs]
    groups = runs.groupby(named, dropna=False) if named else [(None, runs)]
    columns = []
    for column in runs.columns:
        if column.startswith(CONFIG_PREFIX) and is_setting(column[len(CONFIG_PREFIX):]):
            if any(rows[column].astype(str).nunique(dropna=False) > 1 for _, rows in groups):
                columns.append(column)
    return columns


def setting_columns(runs: pd.DataFrame) -> list[str]:
    """The columns a summary shows for each setting: task, model, method, and every setting that varies."""
    aliased = {CONFIG_PREFIX + key: alias for alias, key in ALIASES.items()}
    shown = [c for c in NAMED if c in runs]
    for column in varying_settings(runs):
        shown.append(aliased.get(column, column))
    return list(dict.fromkeys(shown))


def readable_name(column: str) -> str:
    return column[len(CONFIG_PREFIX):] if column.startswith(CONFIG_PREFIX) else column


def summarize(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per setting (runs equal in every setting but the seed): how many seeds, the mean and standard
    deviation (``ddof=1``) of ``metric``, and the mean parameter counts, steps and wall time."""
    require_metric(runs, metric)
    shown = setting_columns(runs)
    grouped = runs.groupby("setting", dropna=False, sort=False)
    summary = grouped[shown].first()
    summary["seeds"] = grouped["seed"].nunique()
    summary["runs"] = grouped.size()
    summary[f"{metric} mean"] = grouped[metric].mean()
    summary[f"{metric} std"] = grouped[metric].std(ddof=1)
    for column in MEANS:
        if column in runs:
            summary[column] = grouped[column].mean()
    baseline = f"baseline/{metric}"
    if baseline in runs:
        summary[f"{baseline} mean"] = grouped[baseline].mean()
    summary = summary.reset_index().sort_values([c for c in shown], kind="stable", key=_natural)
    summary = summary.rename(columns={c: readable_name(c) for c in summary.columns})
    return summary.reset_index(drop=True)


def _natural(column: pd.Series) -> pd.Series:
    """Numbers by value, then text: "2" before "16"."""
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().all() else column.astype(str)


def suite_average(runs: pd.DataFrame, metric: str, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (setting apart from the task, seed) holding ``metric`` averaged over ``tasks``.

    This is how a SuperGLUE score is formed from per-task runs (Lester et al. train one prompt per task).
    Settings that miss a task are left out, with a warning, rather than averaged over fewer tasks.
    """
    require_metric(runs, metric)
    tasks = sorted(runs["task"].unique()) if tasks is None else list(tasks)
    if len(tasks) < 2:
        raise ConfigError(f"averaging over tasks needs at least two, got {tasks}")
    members = runs[runs["task"].isin(tasks)].copy()
    def of_the_task(column: str) -> bool:
        return column == f"{CONFIG_PREFIX}task" or column.startswith(f"{CONFIG_PREFIX}task.")

    config = [c for c in members if c.startswith(CONFIG_PREFIX) and not of_the_task(c)]

    def without_task(row: pd.Series) -> str:
        return setting_digest({**{c[len(CONFIG_PREFIX):]: row[c] for c in config}, "model.name": row["model"],
                               "method.name": row["method"]})

    members["setting"] = members.apply(without_task, axis=1)
    shown = [c for c in setting_columns(members) if c != "task" and not of_the_task(c)]
    grouped = members.groupby(["setting", "seed"], dropna=False, sort=True)
    table = grouped.agg(**{metric: (metric, "mean"), "tasks": ("task", "nunique"),
                           "backbone_params": ("backbone_params", "median"),
                           **{c: (c, "first") for c in shown}}).reset_index()
    complete = table["tasks"] == len(tasks)
    if not complete.all():
        log.warning("%d settings lack some of the %d tasks and are left out of the average", (~complete).sum(), len(tasks))
    table = table[complete].drop(columns="tasks")
    table.insert(0, "task", SUITE_TASK)
    return table.reset_index(drop=True)


def _cell(value: object, digits: int) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else f"{value:.{digits}f}"
    return "" if value is None else str(value).replace("|", "\\|")


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned), with no dependency beyond pandas."""
    columns = [str(c) for c in table.columns]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, digits) for v in row) + " |")
    return "\n".join(lines) + "\n"
