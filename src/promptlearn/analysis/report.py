"""Turn a run table into the files of a sweep report: CSV and markdown tables, PNG and PDF figures.

- ``runs.{csv,md}``: one row per run. ``summary.{csv,md}``: one row per setting (seeds collapsed
  only where everything else is equal), with its seed count, mean and standard deviation.
- Figures for whatever the sweep varied: model size (``scaling``), prompt length, initialisation,
  methods side by side; an Optuna search gets its objective by trial and the best trial instead.
- A half-finished sweep is reported as far as it got, with the missing jobs named.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from promptlearn.analysis.plots import plot_init, plot_methods, plot_prompt_length, plot_scaling, plot_trials
from promptlearn.analysis.tables import require_metric, setting_columns, suite_average, summarize, to_markdown
from promptlearn.utils.atomic import atomic_write

log = logging.getLogger(__name__)


def default_metric(runs: pd.DataFrame) -> str:
    """``test/score`` where the runs have it, else ``val/score``."""
    return "test/score" if "test/score" in runs and runs["test/score"].notna().any() else "val/score"


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The table without empty columns and the raw config, for markdown; the CSV keeps every column."""
    kept = table.loc[:, [c for c in table.columns if not str(c).startswith("config.") and c != "setting"]]
    return kept.dropna(axis=1, how="all").loc[:, lambda t: ~(t.astype(str) == "").all()]


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode()))


def write_table(table: pd.DataFrame, out_dir: Path, stem: str, note: str = "") -> list[Path]:
    csv_path = write_text(out_dir / f"{stem}.csv", table.to_csv(index=False))
    md_path = write_text(out_dir / f"{stem}.md", (note + "\n\n" if note else "") + to_markdown(readable(table)))
    return [csv_path, md_path]


def significant(value: object, digits: int = 3) -> object:
    """A searched value as a reader wants it: 0.0031, not 0.0030958233423849."""
    if isinstance(value, float) and value == value and value != 0 and not value.is_integer():
        return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return value


def optuna_trials(runs: pd.DataFrame, objective: str) -> pd.DataFrame:
    """One row per trial of a search: its number, objective and the parameters that were searched."""
    trials = runs.assign(trial=runs["run"].map(lambda name: int(str(name).split("/")[-1].split("_")[0])))
    params = [c for c in setting_columns(runs) if c not in ("task", "model", "method")]
    table = trials[["trial", objective, *params]].sort_values("trial").reset_index(drop=True)
    for column in params:
        table[column] = table[column].map(significant)
    return table.rename(columns={c: c.removeprefix("config.") for c in table.columns})


def is_search(folder: Path) -> bool:
    multirun = folder / "multirun.yaml"
    return (folder / "optimization_results.yaml").is_file() or (
        multirun.is_file() and "optuna" in multirun.read_text().split("sweeper:", 1)[-1][:400])


def write_search_report(runs: pd.DataFrame, out_dir: Path, objective: str) -> list[Path]:
    trials = optuna_trials(runs, objective)
    best = trials.loc[trials[objective].idxmax()]
    note = (f"Best trial: {int(best['trial'])}, {objective} = {best[objective]:.4f}, with "
            + ", ".join(f"{k}={best[k]}" for k in trials.columns if k not in ("trial", objective)))
    return [*write_table(trials, out_dir, "trials", note), *plot_trials(trials, objective, out_dir / "trials.png")]


def write_report(runs: pd.DataFrame, out_dir: str | Path, metric: str | None = None, search: bool = False) -> list[Path]:
    """Write the tables and whichever figures the sweep's axes allow; return the files written.

    With several tasks, ``summary`` also holds their average (task ``average``: the SuperGLUE score
    of per-task runs), and the figures show that average, with one method figure per task beside it
    (``methods_<task>.png``); with one task they show that task.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metric = metric or default_metric(runs)
    require_metric(runs, metric)
    missing = runs.attrs.get("missing", [])
    note = f"Warning: {len(missing)} jobs have no results.json yet: {', '.join(missing)}." if missing else ""
    written = write_table(runs, out_dir, "runs", note)
    if search:
        return written + write_search_report(runs, out_dir, "val/score" if "val/score" in runs else metric)

    summary = summarize(runs, metric)
    focus = runs
    if runs["task"].nunique() > 1:
        focus = suite_average(runs, metric)
        if not focus.empty:
            summary = pd.concat([summary, summarize(focus.assign(run=""), metric)], ignore_index=True)
    written += write_table(summary, out_dir, "summary", note)

    task = focus["task"].iloc[0] if not focus.empty else ""
    def varies(column: str) -> bool:
        """Within one method: the prompt lengths of different methods are no length axis."""
        return column in focus and any(rows[column].dropna().nunique() > 1 for _, rows in focus.groupby("method"))

    if focus["model"].nunique() > 1:
        written += plot_scaling(focus, metric, out_dir / "scaling.png", title=f"{task}: by model size")
    if varies("prompt_length"):
        written += plot_prompt_length(focus, metric, out_dir / "prompt_length.png", title=f"{task}: by prompt length")
    if varies("init"):
        written += plot_init(focus, metric, out_dir / "init.png", title=f"{task}: by prompt initialisation")
    if focus["method"].nunique() > 1 and focus["model"].nunique() == 1:
        written += plot_methods(focus, metric, out_dir / "methods.png", title=f"{task}: by method")
    if runs["task"].nunique() > 1:  # the average hides each task's own ranking, and needs every method on every task
        for name, rows in runs.groupby("task", sort=True):
            if rows["method"].nunique() > 1 and rows["model"].nunique() == 1:
                written += plot_methods(rows, metric, out_dir / f"methods_{name}.png", title=f"{name}: by method")
    for path in written:
        log.info("wrote %s", path)
    return written
