"""Figures of a run table, in the style of :mod:`promptlearn.analysis.style`: scaling curves (Lester et
al. 2021, Fig. 1), prompt length (Fig. 3a), initialisation (Fig. 3b), methods side by side, and an
Optuna search's objective by trial.

Each point is the mean over the seeds of one setting, with one standard deviation as a band or an
error bar; the no-prompt baseline is drawn where the runs recorded it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from promptlearn.analysis import style
from promptlearn.analysis.tables import require_metric, setting_columns
from promptlearn.utils.errors import ConfigError

# Settings that never name a curve: they are the x axis, the facet, or fixed by the model.
_NOT_A_LABEL = {"task", "model", "experiment", "backbone_params"}


def curve_labels(runs: pd.DataFrame, x: str, exclude: tuple[str, ...] = ()) -> pd.Series:
    """One label per curve, in words: what varies among the runs apart from ``x`` ("P-tuning, length 8,
    gradient_clip_val 5"). Only settings that vary are named; with nothing varying, the model's name."""
    varying = [c for c in ("method", "model", *setting_columns(runs)) if c in runs and c not in (x, "task", *exclude)
               and c not in ("backbone_params", "experiment") and runs[c].astype(str).nunique(dropna=False) > 1]
    varying = list(dict.fromkeys(varying))
    if not varying:
        return runs["model"].astype(str)

    def words(row: pd.Series) -> str:
        parts = []
        for column in varying:
            value = row[column]
            if value is None or (isinstance(value, float) and value != value):
                continue  # a setting this method does not have (num_shots of prompt tuning)
            if column == "method":
                parts.append(style.METHOD_LABELS.get(value, str(value)))
            elif column == "model":
                parts.append(str(value))
            elif column == "init":
                parts.append(style.INIT_LABELS.get(value, str(value)))
            else:
                name = "length" if column == "prompt_length" else column.rsplit(".", 1)[-1]
                parts.append(f"{name} {style.plain_number(value) if isinstance(value, (int, float)) else value}")
        return ", ".join(parts)

    return runs.apply(words, axis=1)


def _stats(runs: pd.DataFrame, x: str, labels: pd.Series, metric: str) -> dict[str, pd.DataFrame]:
    frame = runs.assign(_label=labels.values)
    return {str(label): rows.groupby(x, sort=True)[metric].agg(["mean", "std", "count"]).reset_index()
            for label, rows in frame.groupby("_label", sort=True)}


def _band(ax: Axes, stats: pd.DataFrame, x: str, label: str) -> None:
    xs, mean, std = stats[x].to_numpy(float), stats["mean"].to_numpy(float), stats["std"].to_numpy(float)
    (line,) = ax.plot(xs, mean, marker="o", label=label)
    if np.isfinite(std).any():
        ax.fill_between(xs, mean - np.nan_to_num(std), mean + np.nan_to_num(std), color=line.get_color(), alpha=0.18,
                        linewidth=0)


def _baseline_value(runs: pd.DataFrame, metric: str) -> float | None:
    """The no-prompt line: the mean baseline of the runs that trained a prompt. A run with nothing to
    train (prompt design) evaluates its baseline with its own demonstrations in the template, so it
    counts only where no run trained."""
    column = f"baseline/{metric}"
    if column not in runs or runs[column].isna().all():
        return None
    trained = runs[runs["trainable_params"] > 0] if "trainable_params" in runs else runs
    values = (trained if trained[column].notna().any() else runs)[column]
    return float(values.mean())


def baselines_by(runs: pd.DataFrame, metric: str, x: str) -> pd.Series:
    """Each ``x``'s own no-prompt score, picked as :func:`_baseline_value` picks one: across backbones
    the template alone scores differently, so one line for all would be none of theirs."""
    values = {key: _baseline_value(rows, metric) for key, rows in runs.groupby(x, sort=True)}
    return pd.Series({key: value for key, value in values.items() if value is not None}, dtype=float)


def _draw_baselines(ax: Axes, runs: pd.DataFrame, metric: str, baselines: pd.Series | None) -> list[float]:
    """The no-prompt baseline: a dashed curve through ``baselines`` (one per x) when given; else one line
    per backbone when the runs' backbones score differently, else one line. Returns the values drawn."""
    if baselines is not None:
        if not baselines.empty:
            ax.plot(baselines.index.to_numpy(float), baselines.to_numpy(float), marker="x",
                    label="No prompt (template alone)", **style.BASELINE_STYLE)
        return baselines.tolist()
    per_model = baselines_by(runs, metric, "model") if "model" in runs else pd.Series(dtype=float)
    if per_model.nunique() > 1:
        for (model, value), dashes in zip(per_model.items(), itertools.cycle(["--", ":", "-."])):
            ax.axhline(value, label=f"No prompt ({model})", **{**style.BASELINE_STYLE, "linestyle": dashes})
        return per_model.tolist()
    value = _baseline_value(runs, metric)
    style.baseline(ax, value)
    return [] if value is None else [value]


def _finish(ax: Axes, runs: pd.DataFrame, metric: str, title: str, seeds: pd.Series,
            baselines: pd.Series | None = None) -> None:
    values = [*runs[metric].tolist(), *_draw_baselines(ax, runs, metric, baselines)]
    style.percent_axis(ax, values)
    ax.set_ylabel(style.metric_label(metric))
    ax.set_title(f"{title}\n({style.spread_note(seeds)})", fontsize=10)
    style.legend(ax)


def _seeds(runs: pd.DataFrame, by: list[str]) -> pd.Series:
    return runs.groupby(by)["seed"].nunique()


def plot_scaling(runs: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> list[Path]:
    """Score against backbone parameters (log x, ticks named by model), one curve per method: Lester et al.'s Fig. 1."""
    require_metric(runs, metric)
    runs = runs.dropna(subset=[metric, "backbone_params"])
    if runs.empty:
        raise ConfigError(f"no run has both '{metric}' and parameter counts to plot")
    # One x per model: methods that add parameters (a prompt) must not shift a model's point.
    runs = runs.assign(backbone_params=runs.groupby("model")["backbone_params"].transform("min"))
    fig, ax = style.figure()
    for label, stats in _stats(runs, "backbone_params", curve_labels(runs, "backbone_params", ("model",)), metric).items():
        _band(ax, stats, "backbone_params", label)
    sizes = runs.groupby("model")["backbone_params"].first().sort_values()
    style.log_axis(ax, sizes.tolist(), [f"{model}\n{style.plain_number(size)}" for model, size in sizes.items()])
    ax.set_xlabel(style.SETTING_LABELS["backbone_params"])
    _finish(ax, runs, metric, title or f"{style.metric_label(metric)} by model size", _seeds(runs, ["model", "method"]),
            baselines=baselines_by(runs, metric, "backbone_params"))
    return style.save(fig, path)


def plot_prompt_length(runs: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> list[Path]:
    """Score against prompt length (log x, a tick per length run), one curve per model: Lester et al.'s Fig. 3a."""
    require_metric(runs, metric)
    runs = runs.dropna(subset=[metric, "prompt_length"])
    if runs["prompt_length"].nunique() < 2:
        raise ConfigError("plotting against prompt length needs runs with at least two lengths")
    fig, ax = style.figure()
    labels = curve_labels(runs, "prompt_length")
    for label, stats in _stats(runs, "prompt_length", labels, metric).items():
        _band(ax, stats, "prompt_length", label)
    style.log_axis(ax, runs["prompt_length"].unique().tolist())
    ax.set_xlabel(style.SETTING_LABELS["prompt_length"])
    _finish(ax, runs, metric, title or f"{style.metric_label(metric)} by prompt length",
            _seeds(runs, ["model", "prompt_length"]))
    return style.save(fig, path)


def _points_with_error_bars(ax: Axes, runs: pd.DataFrame, x: str, categories: list[str], labels: pd.Series,
                            metric: str) -> None:
    curves = _stats(runs, x, labels, metric)
    width = 0.7 / max(len(curves), 1)
    for i, (label, stats) in enumerate(curves.items()):
        position = np.array([categories.index(v) for v in stats[x]]) + (i - (len(curves) - 1) / 2) * width
        ax.errorbar(position, stats["mean"], yerr=np.nan_to_num(stats["std"].to_numpy(float)), fmt="o", capsize=4,
                    label=label)


def plot_init(runs: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> list[Path]:
    """Score per prompt initialisation, one series per model, error bars over seeds: Lester et al.'s Fig. 3b."""
    require_metric(runs, metric)
    runs = runs.dropna(subset=[metric, "init"])
    order = [i for i in style.INIT_LABELS if i in set(runs["init"])] + sorted(set(runs["init"]) - set(style.INIT_LABELS))
    if len(order) < 2:
        raise ConfigError("plotting against initialisation needs runs with at least two inits")
    fig, ax = style.figure()
    _points_with_error_bars(ax, runs, "init", order, curve_labels(runs, "init"), metric)
    ax.set_xticks(range(len(order)), [style.INIT_LABELS.get(i, i) for i in order])
    ax.set_xlabel(style.SETTING_LABELS["init"])
    _finish(ax, runs, metric, title or f"{style.metric_label(metric)} by prompt initialisation",
            _seeds(runs, ["model", "init"]))
    return style.save(fig, path)


def plot_methods(runs: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> list[Path]:
    """One bar per setting (method and what else varies), mean ± 1 std over seeds, the no-prompt baseline marked."""
    require_metric(runs, metric)
    runs = runs.dropna(subset=[metric])
    labels = curve_labels(runs, "none")
    stats = runs.assign(_label=labels.values).groupby("_label")[metric].agg(["mean", "std", "count"])
    stats = stats.sort_values("mean")
    fig, ax = style.figure((6.4, 0.45 * len(stats) + 1.6))
    positions = np.arange(len(stats))
    ax.barh(positions, stats["mean"], xerr=np.nan_to_num(stats["std"].to_numpy(float)), capsize=3, color="C0",
            alpha=0.85, height=0.6)
    ax.set_yticks(positions, [f"{label}  (n={n})" for label, n in zip(stats.index, stats["count"])])
    for y, mean, std in zip(positions, stats["mean"], stats["std"].fillna(0)):
        ax.annotate(f"{100 * mean:.1f}" if style.is_fraction([mean]) else f"{mean:.3g}", (mean + std, y),
                    xytext=(6, -3), textcoords="offset points", fontsize=8)
    base = _baseline_value(runs, metric)
    if base is not None:
        ax.axvline(base, **style.BASELINE_STYLE)
        shown = f"{100 * base:.1f}%" if style.is_fraction([base]) else f"{base:.3g}"
        ax.annotate(f"no prompt: {shown}", (base, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 4),
                    textcoords="offset points", ha="center", fontsize=8, color=style.BASELINE_STYLE["color"])
    style.percent_axis(ax, [*stats["mean"], *([base] if base is not None else [])], axis="x")
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")
    ax.set_xlabel(style.metric_label(metric))
    low = min([*(stats["mean"] - stats["std"].fillna(0)), *([base] if base is not None else [])])
    ax.set_xlim(max(0.0, low - 0.05) if style.is_fraction([low]) else None, None)
    ax.set_title(f"{title or style.metric_label(metric) + ' by method'}\n"
                 f"(bars: mean ± 1 std over n seeds; dashed: the template with no prompt)", fontsize=10, pad=16)
    return style.save(fig, path)


def plot_trials(trials: pd.DataFrame, objective: str, path: str | Path, title: str = "") -> list[Path]:
    """An Optuna search: the objective of each trial in order, the best so far, and the best trial marked."""
    fig, ax = style.figure()
    ax.plot(trials["trial"], trials[objective], "o", color="C0", label="trial")
    ax.plot(trials["trial"], trials[objective].cummax(), color="C1", label="best so far")
    best = trials.loc[trials[objective].idxmax()]
    ax.annotate(f"best: trial {int(best['trial'])}", (best["trial"], best[objective]), xytext=(6, 6),
                textcoords="offset points", fontsize=8)
    ax.set_xlabel(style.SETTING_LABELS["trial"])
    ax.set_ylabel(style.metric_label(objective))
    style.percent_axis(ax, trials[objective])
    ax.set_title(title or f"Search: {style.metric_label(objective)} by trial", fontsize=10)
    style.legend(ax)
    return style.save(fig, path)
