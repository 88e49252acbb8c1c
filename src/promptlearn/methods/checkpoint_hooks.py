"""Checkpoints of a frozen-backbone module hold its trained tensors alone, never the backbone."""

from __future__ import annotations

from typing import Any

import torch

from promptlearn.prompts.checkpoint import check_compatible
from promptlearn.utils.errors import CheckpointError


class TrainableOnlyCheckpoints:
    """LightningModule hooks for checkpoints that hold the trained tensors alone, tagged with the
    method and backbone they belong to, and refuse to load into another. Needs ``method_name`` and
    ``backbone``; the frozen backbone is rebuilt from config, never saved."""

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        return {key: value for key, value in self.state_dict().items() if key in names}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = self.trainable_state_dict()
        checkpoint["promptlearn"] = {"method": self.method_name, "backbone": self.backbone.fingerprint()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("promptlearn")
        if meta is None:
            raise CheckpointError("this checkpoint was not written by promptlearn; resume from a run's checkpoints/last.ckpt")
        check_compatible(meta, "checkpoint", self.method_name, self.backbone.fingerprint())
        self._require_keys(checkpoint["state_dict"], "checkpoint")

    def _require_keys(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        missing = set(self.trainable_state_dict()) - set(state_dict)
        if missing:
            raise CheckpointError(f"{source} lacks trained tensors {sorted(missing)}; was it saved by method={self.method_name}?")
