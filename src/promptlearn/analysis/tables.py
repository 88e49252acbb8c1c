"""Summaries of a run table: the spread over seeds, averages over a suite of tasks, markdown."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import pandas as pd

from promptlearn.analysis.runs import CONFIG_COLUMNS
from promptlearn.utils.errors import ConfigError

log = logging.getLogger(__name__)

SETTING_COLUMNS = ["experiment", "task", "model", "method", *[c for c in CONFIG_COLUMNS if c != "experiment"], "variant"]
SUITE_TASK = "average"


def require_metric(runs: pd.DataFrame, metric: str) -> None:
    if metric not in runs:
        found = sorted(c for c in runs.columns if "/" in c and not c.startswith("baseline/"))
        raise ConfigError(f"no run recorded '{metric}'; choose one of {found} with --metric")


def settings(runs: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    return [c for c in SETTING_COLUMNS if c in runs and c not in exclude]


def summarize(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, standard deviation (over seeds, ``ddof=1``) and number of seeds of ``metric`` per setting."""
    require_metric(runs, metric)
    keys = settings(runs)
    grouped = runs.groupby(keys, dropna=False, sort=True)
    summary = grouped[metric].agg(mean="mean", std="std", seeds="count").reset_index()
    summary["backbone_params"] = grouped["backbone_params"].median().values if "backbone_params" in runs else math.nan
    return summary.rename(columns={"mean": f"{metric} mean", "std": f"{metric} std"})


def suite_average(runs: pd.DataFrame, metric: str, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (setting, seed) holding ``metric`` averaged over ``tasks`` (all tasks present by default).

    This is how a SuperGLUE score is formed from per-task runs (Lester et al. train one prompt per task).
    Settings that miss a task are left out, with a warning, rather than averaged over fewer tasks.
    """
    require_metric(runs, metric)
    tasks = sorted(runs["task"].unique()) if tasks is None else list(tasks)
    if len(tasks) < 2:
        raise ConfigError(f"averaging over tasks needs at least two, got {tasks}")
    members = runs[runs["task"].isin(tasks)]
    keys = [*settings(members, exclude=["task"]), "seed"]
    grouped = members.groupby(keys, dropna=False, sort=True)
    table = grouped.agg(**{metric: (metric, "mean"), "tasks": ("task", "nunique"),
                           "backbone_params": ("backbone_params", "median")}).reset_index()
    complete = table["tasks"] == len(tasks)
    if not complete.all():
        log.warning("%d settings lack some of the %d tasks and are left out of the average", (~complete).sum(), len(tasks))
    table = table[complete].drop(columns="tasks")
    table.insert(1, "task", SUITE_TASK)
    return table


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
