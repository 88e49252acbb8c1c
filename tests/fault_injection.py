"""Callbacks that break a training run on purpose, loaded by the runs under test through ``+callbacks.<name>``."""

from __future__ import annotations

import os
import signal

import lightning as L
from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
    """SIGKILLs its own process as training step ``step`` begins: no cleanup, no final checkpoint."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAtStep(Callback):
    """Sends its own process ``signal`` (by name) once training step ``step`` has finished, as SLURM would."""

    def __init__(self, step: int, signal: str = "SIGUSR2") -> None:
        self.step, self.signal = step, signal

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal))
