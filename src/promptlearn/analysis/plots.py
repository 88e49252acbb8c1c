"""PNG plots of a run table: scaling curves (Lester et al. 2021, Fig. 1), prompt length, and initialisation.

Every curve is the mean over seeds with a band of one standard deviation where there are several seeds.
Figures are built without pyplot, so no backend is chosen or changed (headless jobs and notebooks alike).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from promptlearn.analysis.tables import require_metric, settings
from promptlearn.utils.errors import ConfigError

# Settings that tell curves apart but never name one: they are the x axis, the facet, or fixed by the model.
_NOT_A_LABEL = {"task", "model", "experiment", "variant"}


def curve_labels(runs: pd.DataFrame, by: str, exclude: tuple[str, ...] = ()) -> pd.Series:
    """``by``'s value, plus any setting that varies among that value's runs: ``prompt_tuning (init=text)``."""
    labels = runs[by].astype(str)
    candidates = [c for c in settings(runs, exclude=[by, *_NOT_A_LABEL, *exclude])]
    for value, rows in runs.groupby(by, dropna=False):
        varying = [c for c in candidates if rows[c].nunique(dropna=False) > 1]
        if varying:
            extra = rows[varying].astype(str).apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1)
            labels[rows.index] = str(value) + " (" + extra + ")"
    return labels


def _band(ax: Axes, x: np.ndarray, mean: np.ndarray, std: np.ndarray, label: str) -> None:
    (line,) = ax.plot(x, mean, marker="o", label=label)
    if np.isfinite(std).any():
        ax.fill_between(x, mean - np.nan_to_num(std), mean + np.nan_to_num(std), color=line.get_color(), alpha=0.2)


def _curves(runs: pd.DataFrame, x: str, labels: pd.Series, metric: str) -> dict[str, pd.DataFrame]:
    frame = runs.assign(_label=labels.values)
    curves = {}
    for label, rows in frame.groupby("_label", sort=True):
        stats = rows.groupby(x, sort=True)[metric].agg(["mean", "std"]).reset_index()
        curves[str(label)] = stats
    return curves


def _finish(fig: Figure, ax: Axes, title: str, metric: str, path: str | Path) -> Path:
    ax.set_title(title)
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_scaling(runs: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> Path:
    """Score against backbone parameters (log x), one curve per method, as Lester et al.'s Fig. 1."""
    require_metric(runs, metric)
    runs = runs.dropna(subset=[metric, "backbone_params"])
    if runs.empty:
        raise ConfigError(f"no run has both '{metric}' and parameter counts to plot")
    # One x per model: methods that add parameters (a prompt) must not shift a model's point.
    sizes = runs.groupby("model")["backbone_params"].transform("min")
    runs = runs.assign(backbone_params=sizes)
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    for label, stats in _curves(runs, "backbone_params", curve_labels(runs, "method"), metric).items():
        _band(ax, stats["backbone_params"].to_numpy(float), stats["mean"].to_numpy(float), stats["std"].to_numpy(float), label)
    ax.set_xscale("log")
    ax.set_xlabel("model parameters")
    for model, size in runs.groupby("model")["backbone_params"].first().items():
        ax.annotate(str(model), (size, 0), xycoords=("data", "axes fraction"), xytext=(0, 3),
                    textcoords="offset points", ha="center", fontsize="x-small", rotation=90)
    return _finish(fig, ax, title or f"{metric} vs model size", metric, path)


def plot_prompt_length(runs: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> Path:
    """Score against prompt length (log x), one curve per model (and per any other varying setting)."""
    require_metric(runs, metric)
    runs = runs.dropna(subset=[metric, "prompt_length"])
    if runs["prompt_length"].nunique() < 2:
        raise ConfigError("plotting against prompt length needs runs with at least two lengths")
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    labels = curve_labels(runs, "model", exclude=("prompt_length",))
    for label, stats in _curves(runs, "prompt_length", labels, metric).items():
        _band(ax, stats["prompt_length"].to_numpy(float), stats["mean"].to_numpy(float), stats["std"].to_numpy(float), label)
    lengths = sorted(runs["prompt_length"].unique())
    ax.set_xscale("log")
    ax.set_xticks(lengths, [str(int(n)) for n in lengths])
    ax.set_xlabel("prompt length (tokens)")
    return _finish(fig, ax, title or f"{metric} vs prompt length", metric, path)


def plot_init(runs: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> Path:
    """Score per prompt initialisation, one curve per model, with the spread over seeds as error bars."""
    require_metric(runs, metric)
    runs = runs.dropna(subset=[metric, "init"])
    inits = sorted(runs["init"].unique())
    if len(inits) < 2:
        raise ConfigError("plotting against initialisation needs runs with at least two inits")
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    labels = curve_labels(runs, "model", exclude=("init",))
    curves = _curves(runs, "init", labels, metric)
    width = 0.8 / max(len(curves), 1)
    for i, (label, stats) in enumerate(curves.items()):
        x = np.array([inits.index(v) for v in stats["init"]]) + (i - (len(curves) - 1) / 2) * width
        ax.errorbar(x, stats["mean"], yerr=np.nan_to_num(stats["std"].to_numpy(float)), fmt="o", capsize=3, label=label)
    ax.set_xticks(range(len(inits)), inits)
    ax.set_xlabel("prompt initialisation")
    return _finish(fig, ax, title or f"{metric} by prompt initialisation", metric, path)
