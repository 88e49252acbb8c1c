"""The LM-adaptation LightningModule and the callback that writes HF-format checkpoints."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch

from promptlearn.backbones import Backbone
from promptlearn.utils.errors import ConfigError
from promptlearn.lm_adaptation.prefix_lm import real_tokens


class LMAdaptationModule(L.LightningModule):
    """Continues training every weight of a seq2seq backbone on prefix-LM batches."""

    flops_per_batch = None  # ThroughputMonitor: report tokens/s, not MFU

    def __init__(self, backbone: Backbone, optimizer: Callable[..., torch.optim.Optimizer]) -> None:
        super().__init__()
        if not backbone.is_encoder_decoder:
            raise ConfigError(f"LM adaptation continues a seq2seq (T5) checkpoint; '{backbone.name}' is a causal LM")
        self.backbone = backbone
        self.model = backbone.model.requires_grad_(True).train()
        self.optimizer_factory = optimizer
        self.tokens_seen = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**batch).loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch)
        self.tokens_seen += real_tokens(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # Token-weighted mean over the held-out set: each batch's mean loss weighted by its target tokens.
        targets = int((batch["labels"] != -100).sum())
        self.log("val/loss", self(batch), prog_bar=True, batch_size=targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.model.parameters())


def save_hf_checkpoint(backbone: Backbone, target: str | Path) -> Path:
    """``save_pretrained`` model and tokenizer into a temporary folder, then rename it into place.

    A reader (or a killed run) sees the previous complete folder or the new one, never a partial one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        backbone.model.save_pretrained(staging)
        backbone.tokenizer.save_pretrained(staging)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


class HFCheckpoint(L.Callback):
    """Writes ``<dirpath>/step-<N>`` every ``every_n_steps`` optimizer steps and after the last step."""

    def __init__(self, dirpath: str | Path, every_n_steps: int | None = None) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(f"lm_adapt.save_every_n_steps must be at least 1 or null, got {every_n_steps}")
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.saved: list[Path] = []

    def _save(self, trainer: L.Trainer, module: LMAdaptationModule) -> None:
        target = self.dirpath / f"step-{trainer.global_step}"
        if trainer.is_global_zero and target not in self.saved:
            self.saved.append(save_hf_checkpoint(module.backbone, target))

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._save(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer, module)
