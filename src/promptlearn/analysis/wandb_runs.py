"""The same run table, pulled from a W&B project instead of local files.

Reads runs logged with :class:`promptlearn.training.tracking.WandbTracking`: their flat config
(``model/name``, ``task/name``, ``method/name``, ``seed``, ...) and their summary (final metrics and
parameter counts). Needs network access and a W&B login; local sweeps never need this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from promptlearn.analysis.runs import flatten, make_row
from promptlearn.utils.environment import wandb_has_credentials
from promptlearn.utils.errors import DataError

# summary keys -> results.json keys
_PARAMS = {"params/total": "total_params", "params/trainable": "trainable_params"}


def _final(value: Any) -> Any:
    """A summary value, or its ``last`` where the metric was defined with several summaries."""
    return value.get("last") if isinstance(value, Mapping) else value


def row_from_wandb(config: Mapping[str, Any], summary: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A table row from one W&B run's flat config and summary."""
    summary = {key: _final(value) for key, value in summary.items()}
    metrics = {k[len("final/"):]: v for k, v in summary.items() if k.startswith("final/")}
    if not metrics:  # a run that ended before WandbTracking.finish: its last logged values
        metrics = {k: v for k, v in summary.items() if k.startswith(("val/", "test/")) and isinstance(v, (int, float))}
    results = {
        "task": config.get("task/name"),
        "model": config.get("model/name"),
        "method": config.get("method/name"),
        "seed": config.get("seed"),
        "metrics": metrics,
        "baseline": {k[len("baseline/"):]: v for k, v in summary.items() if k.startswith("baseline/")},
        "train_steps": summary.get("trainer/global_step"),
        **{ours: summary.get(theirs) for theirs, ours in _PARAMS.items()},
    }
    flat = flatten({key.replace("/", "."): value for key, value in config.items()
                    if not key.startswith(("run/", "method/name"))})
    return make_row(results, flat, name)


def collect_wandb_runs(project: str, group: str | None = None, api: Any = None) -> pd.DataFrame:
    """Every finished run of ``entity/project`` (optionally one group, i.e. one experiment), one row each."""
    if api is None:
        import wandb

        if not wandb_has_credentials():
            raise DataError("reading runs from W&B needs a login: run `wandb login` or set WANDB_API_KEY, "
                            "or report local sweep folders instead")
        api = wandb.Api()
    filters: dict[str, Any] = {"state": "finished"}
    if group is not None:
        filters["group"] = group
    rows = [row_from_wandb(run.config, run.summary_metrics, "/".join(run.path)) for run in api.runs(project, filters=filters)]
    if not rows:
        raise DataError(f"no finished runs in W&B project '{project}'" + (f" group '{group}'" if group else ""))
    return pd.DataFrame(rows)
