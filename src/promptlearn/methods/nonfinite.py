"""What a NaN or infinite training loss does: stop the run, or skip that update (``on_nonfinite``)."""

from __future__ import annotations

import torch

from promptlearn.utils.errors import ConfigError, NonFiniteLossError

POLICIES = ("stop", "skip")


class NonFiniteLossPolicy:
    """LightningModule mixin: :meth:`loss_is_usable` says whether to train on a step's loss.

    ``stop`` raises one line naming the step; ``skip`` drops the update, and still stops after
    ``max_consecutive_skips`` in a row. Skipping needs the step to be skipped on every rank alike,
    so under DDP any rank's bad loss counts for all (one small all-reduce a step; ``stop`` needs none).
    """

    on_nonfinite = "stop"
    max_consecutive_skips = 10
    consecutive_skips = 0
    skipped_steps = 0

    def set_nonfinite_policy(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ConfigError(f"on_nonfinite must be 'stop' or 'skip', got {policy!r}")
        self.on_nonfinite = policy

    def loss_is_usable(self, loss: torch.Tensor) -> bool:
        finite = bool(torch.isfinite(loss))
        if self.on_nonfinite == "skip" and self._trainer is not None:
            finite = bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))
        if finite:
            self.consecutive_skips = 0
            return True
        where = f"training loss is {loss.item()} at step {self.global_step}"
        if self.on_nonfinite == "stop":
            raise NonFiniteLossError(f"{where}; lower optimizer.lr or check the data, or set on_nonfinite=skip")
        self.consecutive_skips += 1
        self.skipped_steps += 1
        if self.consecutive_skips > self.max_consecutive_skips:
            raise NonFiniteLossError(
                f"{where}, the {self.consecutive_skips}th non-finite loss in a row; lower optimizer.lr or check the data"
            )
        self.log("train/skipped_steps", float(self.skipped_steps))
        return False
