"""Preemption and time limits under a job launcher that owns the requeue signal (submitit, which
``hydra/launcher=slurm`` uses).

submitit installs its own handler for the signal SLURM sends before a time limit or a preemption,
and requeues the job from it; Lightning, seeing a handler already there, installs none of its own,
so nothing would be saved. :class:`CheckpointBeforeRequeue` chains onto the launcher's handler: on
the signal it finishes the current training step, writes ``checkpoints/preempted.ckpt`` (atomically,
with the RNG states), and only then hands over to the launcher, which requeues. The requeued job
reruns the same command in the same folder and resumes from that checkpoint (:func:`requeued_checkpoint`).

Without such a launcher (plain ``sbatch``), Lightning's own SLURM handler does the same job.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

log = logging.getLogger("promptlearn")

PREEMPTED = "preempted.ckpt"


def requeued_checkpoint(checkpoint_dir: Path) -> str | None:
    """The checkpoint a requeued job continues from, if its previous attempt was preempted."""
    path = checkpoint_dir / PREEMPTED
    return str(path) if path.is_file() else None


class CheckpointBeforeRequeue(Callback):
    """On ``signum``, where another handler (the launcher's) owns it: checkpoint at the end of the
    current step, then call that handler."""

    def __init__(self, checkpoint_dir: Path, signum: int = signal.SIGUSR2) -> None:
        self.path = Path(checkpoint_dir) / PREEMPTED
        self.signum = signum
        self.launcher_handler: Any = None
        self.requested = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        current = signal.getsignal(self.signum)
        if callable(current) and current not in (signal.SIG_DFL, signal.SIG_IGN):
            self.launcher_handler = current
            signal.signal(self.signum, self._request)

    def _request(self, signum: int, frame: Any) -> None:
        log.warning("received %s: checkpointing after this step, then requeueing", signal.Signals(signum).name)
        self.requested = True

    def _hand_over_if_requested(self, trainer: L.Trainer) -> None:
        if not self.requested:
            return
        self.requested = False
        trainer.save_checkpoint(self.path)
        for logger in trainer.loggers:
            logger.save()
        log.warning("checkpoint written to %s; the requeued job resumes from it", self.path)
        handler, self.launcher_handler = self.launcher_handler, None
        signal.signal(self.signum, handler)
        handler(self.signum, None)  # the launcher requeues the job and exits

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._hand_over_if_requested(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._hand_over_if_requested(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.launcher_handler is not None:
            signal.signal(self.signum, self.launcher_handler)
