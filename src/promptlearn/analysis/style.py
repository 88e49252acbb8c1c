"""The one style every promptlearn figure follows, written down once.

- Size and type: 6.4 x 4.2 in, 10 pt text, no top or right spines, a light grid on the value axis.
- Words, not keys: axes and legends are labelled in words (:func:`metric_label`, :data:`SETTING_LABELS`).
- Scores in [0, 1] are shown as percentages.
- Log axes carry ticks at the values that were run, printed plainly ("1, 5, 20, 100"), no minor ticks.
- The spread is named: "mean ± 1 std over n seeds" in the legend or caption.
- The no-prompt baseline is a dashed grey line, labelled.
- Legends are sorted numerically ("2" before "16").
- Every figure is written as PNG (for the docs) and PDF (for a paper), atomically.

Figures are built without pyplot, so no backend is chosen or changed (headless jobs and notebooks alike).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator, PercentFormatter

from promptlearn.utils.atomic import atomic_write

RC = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9, "xtick.labelsize": 9,
    "ytick.labelsize": 9, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "axes.grid.axis": "y", "grid.alpha": 0.3, "legend.frameon": False, "savefig.bbox": "tight",
    "lines.linewidth": 1.8, "lines.markersize": 5,
}
SIZE = (6.4, 4.2)
BASELINE_STYLE = {"color": "0.45", "linestyle": "--", "linewidth": 1.2}
SPLITS = {"test": "Test", "val": "Validation", "train": "Training", "baseline": "No-prompt"}
SETTING_LABELS = {
    "prompt_length": "Prompt length (tokens)", "init": "Prompt initialisation", "backbone_params": "Model parameters",
    "lr": "Learning rate", "method": "Method", "model": "Model", "trial": "Trial",
}
METHOD_LABELS = {
    "prompt_tuning": "Prompt tuning", "prefix_tuning": "Prefix tuning", "p_tuning": "P-tuning",
    "p_tuning_v2": "P-tuning v2", "autoprompt": "AutoPrompt", "pez": "PEZ", "prompt_design": "Prompt design",
    "model_tuning": "Model tuning", "no_prompt": "No prompt",
}
INIT_LABELS = {"random_uniform": "Random uniform", "sampled_vocab": "Sampled vocabulary", "class_label": "Class label",
               "text": "Text"}


def figure(size: tuple[float, float] = SIZE) -> tuple[Figure, Axes]:
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=size)
        ax = fig.subplots()
    return fig, ax


def metric_label(metric: str) -> str:
    """``test/score`` -> "Test score"; ``val/accuracy`` -> "Validation accuracy"; ``test/f1_macro`` -> "Test F1 macro"."""
    split, _, name = metric.rpartition("/")
    words = name.replace("_", " ").replace("f1", "F1").replace("em", "EM") if name != "score" else "score"
    return f"{SPLITS.get(split.split('/')[0], split)} {words}".strip()


def is_fraction(values: Iterable[float]) -> bool:
    values = [v for v in values if v == v]
    return bool(values) and all(0.0 <= v <= 1.0 for v in values)


def percent_axis(ax: Axes, values: Iterable[float], axis: str = "y") -> None:
    """Show scores in [0, 1] as percentages."""
    values = list(values)
    if is_fraction(values):
        target = ax.yaxis if axis == "y" else ax.xaxis
        target.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 5, 10]))  # 2.5 would tick 72.5% as "73%"
        span = max(values) - min(values) if values else 1.0
        target.set_major_formatter(PercentFormatter(1.0, decimals=0 if span >= 0.1 else 1))


def plain_number(value: float) -> str:
    """Ticks as a reader writes them: 1, 20, 150, 135M, 1.2B."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size and value >= 1e4:
            return f"{value / size:.3g}{suffix}"
    return f"{value:g}"


def log_axis(ax: Axes, values: Sequence[float], labels: Sequence[str] | None = None) -> None:
    """A log x axis with ticks at the values run, labelled plainly (or with ``labels``), and no minor ticks."""
    ticks = sorted(set(float(v) for v in values))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels(labels if labels is not None else [plain_number(v) for v in ticks])
    if len(ticks) > 1:
        ax.set_xlim(ticks[0] / 1.4, ticks[-1] * 1.4)


def baseline(ax: Axes, value: float | None, label: str = "No prompt (template alone)") -> None:
    if value is not None and value == value:
        ax.axhline(value, label=label, **BASELINE_STYLE)


def natural_key(text: str) -> list[object]:
    """Sort key that orders numbers by value inside text: "len 2" < "len 16"."""
    return [float(part) if re.fullmatch(r"\d+(\.\d+)?", part) else part for part in re.split(r"(\d+(?:\.\d+)?)", text)]


def legend(ax: Axes, title: str | None = None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    order = sorted(range(len(labels)), key=lambda i: (labels[i].startswith("No prompt"), natural_key(labels[i])))
    # Beside the axes, not over the data.
    ax.legend([handles[i] for i in order], [labels[i] for i in order], title=title, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def spread_note(seeds: Iterable[int]) -> str:
    counts = sorted(set(int(n) for n in seeds if n == n))
    if not counts or counts == [1]:
        return "one seed each"
    shown = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"mean ± 1 std over {shown} seeds"


def save(fig: Figure, path: str | Path) -> list[Path]:
    """``path`` (.png) and the same figure as PDF beside it, each written atomically."""
    path = Path(path).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for target, kind in ((path, "png"), (path.with_suffix(".pdf"), "pdf")):
        buffer = io.BytesIO()
        with matplotlib.rc_context(RC):
            fig.savefig(buffer, format=kind, dpi=200)
        written.append(atomic_write(target, lambda handle, data=buffer.getvalue(): handle.write(data)))
    return written
