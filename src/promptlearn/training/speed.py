"""Training speed in the metrics, whatever the logger: ``train/step_time_s``, ``train/tokens_per_s`` (real
tokens, padding left out) and the learning rate, ``train/lr``."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class TrainingSpeed(L.Callback):
    def __init__(self) -> None:
        self._started: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._started is None:
            return
        seconds = time.perf_counter() - self._started
        logged = {"train/step_time_s": seconds}
        if isinstance(batch, dict) and "attention_mask" in batch:
            logged["train/tokens_per_s"] = float(batch["attention_mask"].sum()) / max(seconds, 1e-9)
        optimizers = trainer.optimizers
        if optimizers and getattr(optimizers[0], "param_groups", None):
            logged["train/lr"] = float(optimizers[0].param_groups[0]["lr"])
        pl_module.log_dict(logged, on_step=True, on_epoch=False, batch_size=1)
