"""Gather the ``results.json`` of every run under a folder into one tidy table: one row per run.

A row holds what the run recorded (task, model, method, seed, parameter counts, every final metric,
the no-prompt baseline) and the settings a sweep varies, read from the run's ``.hydra/config.yaml``
and ``.hydra/overrides.yaml`` where they exist.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from promptlearn.utils.errors import DataError

log = logging.getLogger(__name__)

# Table column -> config key; the settings sweeps in this project vary.
CONFIG_COLUMNS: dict[str, str] = {
    "experiment": "experiment_name",
    "prompt_length": "method.prompt_length",
    "init": "method.init",
    "lr": "optimizer.lr",
    "batch_size": "data.batch_size",
    "max_steps": "trainer.max_steps",
}
RUN_COLUMNS = ["task", "model", "method", "seed", "trainable_params", "total_params", "train_steps", "wall_time_s"]
# Overrides that never tell two settings apart (seeds are what a summary averages over).
IGNORED_OVERRIDES = (
    "seed", "hydra.", "hydra/", "output_dir", "logger", "trainer", "experiment", "ckpt_path", "hparams_search", "baseline",
)


def backbone_params(total: float, trainable: float) -> float:
    """Parameters of the frozen backbone: the total less what trained, unless everything trained (model tuning)."""
    return total - trainable if trainable < total else total


def variant(overrides: Iterable[str]) -> str:
    """The overrides that set what no table column shows, sorted; the seed is left out.

    Runs that differ only by seed share a variant, and runs that differ in a setting without a column
    of its own (``method.init_range=0.1``, say) do not.
    """
    shown = {"model", "task", "method", *CONFIG_COLUMNS.values()}
    kept = []
    for override in overrides:
        override = override.lstrip("+~")
        key = override.split("=", 1)[0]
        if key not in shown and not key.startswith(IGNORED_OVERRIDES):
            kept.append(override)
    return ",".join(sorted(kept))


def make_row(results: Mapping[str, Any], config: Mapping[str, Any], overrides: Iterable[str], source: str) -> dict[str, Any]:
    """One table row from a run's results, its (flat) config and its command-line overrides."""
    missing = {"task", "model", "method", "metrics"} - set(results)
    if missing:
        raise DataError(f"{source} lacks {sorted(missing)}; is it a promptlearn results.json?")
    row: dict[str, Any] = {"run": source}
    row.update({key: results.get(key) for key in RUN_COLUMNS})
    row.update({column: config.get(key) for column, key in CONFIG_COLUMNS.items()})
    if row["total_params"] is not None and row["trainable_params"] is not None:
        row["backbone_params"] = backbone_params(row["total_params"], row["trainable_params"])
    row["variant"] = variant(overrides)
    row.update({key: float(value) for key, value in results["metrics"].items()})
    row.update({f"baseline/{key}": float(value) for key, value in results.get("baseline", {}).items()})
    for task, metrics in results.get("transfer", {}).items():  # zero-shot evaluation on other tasks
        row.update({f"transfer/{task}/{key}": float(value) for key, value in metrics.items()})
    return row


def flat_config(path: Path) -> dict[str, Any]:
    """The values of ``CONFIG_COLUMNS`` in a saved Hydra config; interpolations are left unresolved."""
    if not path.is_file():
        return {}
    config = OmegaConf.load(path)
    return {key: OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
            for key in CONFIG_COLUMNS.values()}


def run_row(results_path: Path, name: str) -> dict[str, Any]:
    try:
        results = json.loads(results_path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{results_path} is not valid JSON ({err.msg}); delete it or rerun that job") from None
    hydra_dir = results_path.parent / ".hydra"
    overrides_path = hydra_dir / "overrides.yaml"
    overrides = list(OmegaConf.load(overrides_path)) if overrides_path.is_file() else []
    return make_row(results, flat_config(hydra_dir / "config.yaml"), overrides, name)


def collect_runs(root: str | Path) -> pd.DataFrame:
    """Every ``results.json`` under ``root`` (a multirun folder, or several), one row each, in path order.

    The ``run`` column names each run's folder relative to ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass a sweep folder such as multirun/<date>_<time>")
    paths = sorted(root.rglob("results.json"))
    if not paths:
        raise DataError(f"no results.json under {root}; has the sweep finished a run?")
    log.info("read %d runs under %s", len(paths), root)
    return pd.DataFrame([run_row(path, str(path.parent.relative_to(root))) for path in paths])
