"""W&B run tracking that makes a sweep chartable in the project's workspace.

:class:`WandbTracking` is a Lightning callback. It acts only when the trainer logs to W&B
(``logger=wandb``) and only on global rank zero; otherwise it does nothing. It

- logs the composed config flat (``model/name``, ``method/prompt_length``, ...), plus the method's name;
- defines summary metrics: the best and the final value of every ``val/`` metric, the last ``test/``
  value, the lowest ``train/loss``, and the parameter counts (``params/backbone``, ``params/trainable``),
  so that a workspace scatter or line plot of ``test/score`` against ``params/backbone`` grouped by
  ``method/name`` is a scaling curve with no further processing;
- logs a table of test predictions (input, gold, prediction, correct) for the first examples;
- at :meth:`finish`, logs the learned prompt (and its nearest-token interpretation) as an artifact
  of type ``prompt``, adds the run's results to the summary and closes the run, so that the next job
  of a Hydra multirun starts a run of its own.

Grouping (by ``experiment_name``) and tags (model, method, task) come from ``conf/logger/wandb.yaml``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from promptlearn.training.predictions import records

log = logging.getLogger(__name__)

PREDICTIONS_KEY = "test/predictions"
PROMPT_ARTIFACT_TYPE = "prompt"


class WandbTracking(L.Callback):
    """Flat config, summary metrics, a predictions table and the prompt artifact for a W&B run."""

    def __init__(
        self, config: Mapping[str, Any] | None = None, overrides: list[str] = (), max_predictions: int = 100,
        monitor: str | None = "val/score", mode: str = "max",
    ) -> None:
        self.config = dict(config or {})  # flat: {"model/name": ..., "method/prompt_length": ...}
        self.monitor, self.mode = monitor, mode
        self.overrides = list(overrides)
        self.max_predictions = max_predictions
        self.logger: WandbLogger | None = None
        self.predictions: list[list[Any]] = []

    @property
    def run(self) -> Any:
        return None if self.logger is None else self.logger.experiment

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.logger is not None or not trainer.is_global_zero:
            return
        self.logger = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        if self.logger is None:
            return
        run = self.run
        config = dict(self.config)
        config["method/name"] = getattr(pl_module, "method_name", type(pl_module).__name__)
        config["run/overrides"] = self.overrides
        run.config.update(config, allow_val_change=True)
        # The run table and scaling charts read the summary: the best validation, not the last.
        run.define_metric("val/*", step_metric="trainer/global_step", summary="max,last")
        run.define_metric("train/*", step_metric="trainer/global_step", summary="last")
        for loss in ("train/loss", "val/loss"):  # W&B globs are suffixes only: the losses are named one by one
            run.define_metric(loss, step_metric="trainer/global_step", summary="min,last")
        if self.monitor is not None and not self.monitor.endswith("/loss"):
            run.define_metric(self.monitor, step_metric="trainer/global_step", summary=f"{self.mode},last")
        run.define_metric("test/*", summary="last")
        for name in ("params/backbone", "params/trainable", "params/total"):
            run.define_metric(name, summary="last")

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.logger is None or len(self.predictions) >= self.max_predictions:
            return
        if not (isinstance(outputs, Mapping) and "prediction" in outputs):
            return
        for row in records(pl_module, batch, outputs["prediction"]):  # what the test step decided, not scored again
            if len(self.predictions) < self.max_predictions:
                self.predictions.append([row["input"], row["target"], row["prediction"], row["correct"]])

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.logger is None or not self.predictions:
            return
        import wandb

        table = wandb.Table(columns=["input", "target", "prediction", "correct"], data=self.predictions)
        self.run.log({PREDICTIONS_KEY: table})
        self.predictions = []

    def finish(self, results: Mapping[str, Any], prompt_path: str | Path, extra_files: tuple[str | Path, ...] = ()) -> None:
        """Log the prompt as an artifact and the results to the summary, then close the W&B run."""
        if self.logger is None:
            return
        import wandb

        run = self.run
        total, trainable = results.get("total_params"), results.get("trainable_params")
        summary: dict[str, Any] = {"params/total": total, "params/trainable": trainable}
        if total is not None and trainable is not None:
            summary["params/backbone"] = total - trainable if trainable < total else total
        summary.update({f"baseline/{k}": v for k, v in results.get("baseline", {}).items()})
        summary.update({f"final/{k}": v for k, v in results.get("metrics", {}).items()})
        # results' metrics are the best checkpoint's (results["evaluated"] says which): record them as such
        summary.update({f"best/{k}": v for k, v in results.get("metrics", {}).items()})
        if "evaluated" in results:
            summary["best/step"] = results["evaluated"].get("step")
        run.summary.update(summary)

        metadata = {key: results[key] for key in ("task", "model", "method", "seed", "trainable_params") if key in results}
        metadata["metrics"] = dict(results.get("metrics", {}))
        artifact = wandb.Artifact(f"prompt-{run.id}", type=PROMPT_ARTIFACT_TYPE, metadata=metadata)
        artifact.add_file(str(prompt_path))
        for path in extra_files:
            artifact.add_file(str(path))
        run.log_artifact(artifact, aliases=["latest", f"seed-{results.get('seed', 0)}"])
        run.finish()
        self.logger = None
