"""Checkpoints a killed run can always resume from, exactly.

- :class:`AtomicCheckpointIO` writes every Lightning checkpoint to a temporary file in the same
  folder, fsyncs it, then renames it over the old one: a kill during a save leaves the previous
  checkpoint intact, never a torn file.
- :class:`RNGStateCheckpoint` stores the global random states (torch, CUDA, numpy, Python) in each
  checkpoint and restores them when training resumes, so dropout draws continue where they stopped.
  Data order needs no saving: it depends on seed and epoch only (:mod:`promptlearn.data.batching`).
"""

from __future__ import annotations

import logging
import random
import signal
import time
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from promptlearn.training.preemption import PREEMPTED, CheckpointBeforeRequeue, requeued_checkpoint
from promptlearn.utils.atomic import atomic_torch_save
from promptlearn.utils.errors import CheckpointError

log = logging.getLogger("promptlearn")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO for local paths, made crash-safe: temporary file, fsync, rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)


def rng_states() -> dict[str, Any]:
    """The global random states, in types a ``weights_only`` checkpoint load accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


class RNGStateCheckpoint(Callback):
    """Saves the global RNG states with each checkpoint; restores them when resumed training starts."""

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict.get("rng")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Restored here, not on load: nothing random may run between this point and the next batch.
        if self._to_restore is not None:
            set_rng_states(self._to_restore)
            self._to_restore = None


class LatestCheckpoint(ModelCheckpoint):
    """``last.ckpt``: at every validation, every ``every_n_train_steps`` steps or ``every_n_minutes``
    minutes of training (whichever comes first), and when training ends, so that a finished run can
    be extended (``trainer.max_steps=<more> ckpt_path=last``) and a killed one loses little."""

    def __init__(self, dirpath: Path, every_n_train_steps: int | None = None, every_n_minutes: float | None = None) -> None:
        super().__init__(dirpath=dirpath, filename="last", save_top_k=1, enable_version_counter=False)
        self.every_n_steps = every_n_train_steps
        self.every_s = None if every_n_minutes is None else 60 * every_n_minutes
        self._last_save_time = time.monotonic()

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._last_save_time = time.monotonic()
        for logger in trainer.loggers:  # what was logged up to the checkpoint is on disk with it
            logger.save()

    def save_now(self, trainer: L.Trainer) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_none_monitor_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_save_time = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        due_by_steps = bool(self.every_n_steps) and trainer.global_step % self.every_n_steps == 0
        due_by_time = self.every_s is not None and time.monotonic() - self._last_save_time >= self.every_s
        if due_by_steps or due_by_time:
            self.save_now(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self.save_now(trainer)


class ValidateFinalStep(Callback):
    """Validates after the last training step too, when ``val_check_interval`` does not fall on it,
    so the steps trained since the last validation can become the best checkpoint."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True  # Lightning validates a step at which training is asked to stop


class BestAndLatestCheckpoints:
    """``best.ckpt`` by the monitored metric and ``last.ckpt`` (see :class:`LatestCheckpoint`), with
    the RNG states that make resuming from either exact. The last step is always validated.

    Lightning's own ``save_last`` writes only when the best improves, so the latest state has a callback of its own.
    """

    def __init__(
        self,
        directory: Path,
        monitor: str | None,
        mode: str = "max",
        every_n_train_steps: int | None = None,
        every_n_minutes: float | None = None,
        requeue_signal: int = signal.SIGUSR2,
    ) -> None:
        self.directory = Path(directory)
        self.best = ModelCheckpoint(
            dirpath=directory, filename="best", monitor=monitor, mode=mode, save_top_k=1, enable_version_counter=False
        )
        self.latest = LatestCheckpoint(directory, every_n_train_steps, every_n_minutes)
        self.preemption = CheckpointBeforeRequeue(self.directory, requeue_signal)
        self.callbacks: list[Callback] = [ValidateFinalStep(), self.best, self.latest, RNGStateCheckpoint(),
                                          self.preemption]

    @property
    def best_path(self) -> str | None:
        return self.best.best_model_path or None

    def resume_point(self, ckpt_path: str | None) -> str | None:
        """What to resume from: the checkpoint asked for, else the one a preempted attempt of this job left."""
        if ckpt_path is not None:
            return resolve_ckpt_path(ckpt_path, self.directory)
        requeued = requeued_checkpoint(self.directory)
        if requeued is not None:
            log.warning("this job was requeued after a preemption: resuming from %s", requeued)
        return requeued

    def finished(self) -> None:
        """Training completed: a preempted attempt's checkpoint is no longer where to continue from."""
        (self.directory / PREEMPTED).unlink(missing_ok=True)

    def resume_hint(self, run_dir: Path) -> str:
        last = self.directory / "last.ckpt"
        if not last.is_file():
            return "no checkpoint was saved before it"
        return f"last good checkpoint: {last} (resume with ckpt_path=last hydra.run.dir={run_dir})"


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a Lightning checkpoint was saved at."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: Path) -> str | None:
    """The checkpoint to resume from: ``"last"`` means this run's ``last.ckpt``. It must exist and be whole."""
    if ckpt_path is None:
        return None
    path = checkpoint_dir / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} does not exist; pass hydra.run.dir=<the run to resume> with ckpt_path=last")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a torn or foreign file is not one
        raise CheckpointError(f"cannot resume: {path} is truncated or not a checkpoint; resume from another one, "
                              "e.g. checkpoints/best.ckpt, or start afresh with ckpt_path=null")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 (any unreadable file is the same mistake for the user)
        raise CheckpointError(f"cannot resume: {path} is unreadable ({type(err).__name__}); resume from another "
                              "checkpoint, or start afresh with ckpt_path=null") from None
    if isinstance(contents, dict) and "loops" not in contents and {"method", "backbone"} <= set(contents):
        raise CheckpointError(f"cannot resume from {path}: it is a saved prompt, not a training checkpoint; resume "
                              "from the run's checkpoints/last.ckpt (ckpt_path=last), or evaluate the prompt with "
                              f"promptlearn-eval prompt={path}")
    if not isinstance(contents, dict) or "loops" not in contents or "promptlearn" not in contents:
        raise CheckpointError(f"cannot resume from {path}: it is not a promptlearn training checkpoint; resume from "
                              "a run's checkpoints/last.ckpt")
    return str(path)
