"""FrozenBackboneModule: what every prompt method shares, apart from scoring.

It owns the frozen backbone, the training and evaluation loops, the metrics, the optimizer built
from config, and prompt-only checkpoints. How inputs reach the backbone and what is read back is
the :class:`~promptlearn.methods.scoring.Scorer`'s, which every method, MetaPrompting and inference share.

A method changes how inputs reach the backbone by overriding :meth:`embed_inputs` (virtual tokens
in the input) or :meth:`model_inputs` (anything else the backbone's forward takes, such as a
prefix cache), and sets :attr:`num_virtual_tokens` to what it adds to the sequence length. On its
own this class adds nothing to the backbone, so evaluating it measures the task template with no
learned prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from promptlearn.backbones import Backbone
from promptlearn.methods.checkpoint_hooks import TrainableOnlyCheckpoints
from promptlearn.data.tasks import TaskInfo
from promptlearn.utils.errors import CheckpointError, ConfigError
from promptlearn.methods.nonfinite import NonFiniteLossPolicy
from promptlearn.methods.scoring import Prediction, Scorer
from promptlearn.methods.settings import arguments, at_least
from promptlearn.metrics import Predictions, build_metrics
from promptlearn.prompts.checkpoint import check_compatible, read_prompt, save_prompt

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class FrozenBackboneModule(NonFiniteLossPolicy, TrainableOnlyCheckpoints, L.LightningModule):
    """A frozen language model evaluated (and, in subclasses, prompted) on a text-to-text task."""

    method_name = "no_prompt"
    num_virtual_tokens = 0
    # True where every row's virtual tokens are one and the same tensor (not an ensemble's or a task
    # mixture's per-row prompts): a causal LM then computes them once for all rows.
    virtual_tokens_shared_by_rows = False

    def __init__(
        self,
        backbone: Backbone,
        task: TaskInfo,
        optimizer: OptimizerFactory | None = None,
        length_normalize: bool = False,
        max_new_tokens: int = 32,
        backbone_dropout: bool = True,
        pack_sequences: bool = True,
        pack_width: int = 512,
    ) -> None:
        FrozenBackboneModule.check_settings(arguments(locals()))
        super().__init__()
        self.backbone = backbone
        self.model = backbone.model
        self.task = task
        self.optimizer_factory = optimizer
        self.model.train(backbone_dropout)  # frozen is not eval: the paper keeps T5's dropout on while training
        self.scorer = Scorer(backbone, length_normalize, max_new_tokens, pack_sequences, pack_width)
        self.metrics = nn.ModuleDict({stage: build_metrics(task) for stage in ("val", "test")})
        self.strict_loading = False  # checkpoints hold the trainable tensors only

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> None:
        """Refuse impossible settings in one line, before anything is built (see :mod:`promptlearn.methods.settings`)."""
        at_least(settings, "max_new_tokens", 1, "32")

    # ----------------------------------------------------------------- inputs
    def embed_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embeddings and attention mask for the encoder (seq2seq) or the decoder (causal LM).

        Methods that add virtual tokens to the input sequence (prompt tuning, P-tuning) override this.
        """
        return self.backbone.embed(input_ids), attention_mask

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
        """Keyword arguments for the backbone's forward and ``generate``.

        ``inputs_embeds`` and ``attention_mask`` always; methods that act inside the layers (prefix
        tuning) override this to add, for example, a prefix ``cache``. For causal LMs, any positions
        that ``inputs_embeds`` holds beyond ``input_ids`` are taken to come first.
        """
        embeds, mask = self.embed_inputs(input_ids, attention_mask)
        return {"inputs_embeds": embeds, "attention_mask": mask}

    @property
    def shared_prefix(self) -> int:
        return self.num_virtual_tokens if self.virtual_tokens_shared_by_rows else 0

    def check_fits(self, longest_sequence: int) -> None:
        """Fail early if prompt plus the longest example exceed the backbone's positions."""
        limit = self.backbone.max_positions
        if limit is not None and self.num_virtual_tokens + longest_sequence > limit:
            raise ConfigError(
                f"{self.num_virtual_tokens} prompt tokens + the longest example ({longest_sequence} tokens) exceed "
                f"{self.backbone.name}'s {limit} positions; shorten the prompt or lower data.max_source_length"
            )

    # ----------------------------------------------------------------- scoring (the scorer's, with this method's inputs)
    def target_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
        return self.scorer.target_logits(self, input_ids, attention_mask, labels)

    def target_log_likelihood(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
        return self.scorer.target_log_likelihood(self, input_ids, attention_mask, labels)

    def choice_scores(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.scorer.choice_scores(self, batch)

    def generate_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
        return self.scorer.generate(self, input_ids, attention_mask)

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> Prediction:
        """What this method answers for an evaluation batch (see :meth:`Scorer.predict`)."""
        return self.scorer.predict(self, batch, self.task.eval_mode)

    # ----------------------------------------------------------------- loops
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        total, count = self.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])
        loss = -total.sum() / count.sum()
        if not self.loss_is_usable(loss):
            return None  # Lightning skips the backward pass and the optimizer step
        self.log("train/loss", loss, prog_bar=True, batch_size=len(total))
        return loss

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> dict[str, Prediction]:
        prediction = self.predict(batch)
        self.log(f"{stage}/loss", prediction.loss, batch_size=len(batch["label"]))
        self.metrics[stage].update(
            Predictions(prediction.index, batch["label"], prediction.texts, batch["answers"], batch["group"], batch["task"])
        )
        return {"prediction": prediction}  # callbacks record it (training/predictions.py)

    def _log_epoch_metrics(self, stage: str) -> None:
        """``<stage>/<metric>`` and ``<stage>/score``; a mixture adds ``<stage>/<task>/<metric>`` per sub-task."""
        values = self.metrics[stage].compute()
        self.metrics[stage].reset()
        self.log_dict({f"{stage}/{name}": value for name, value in values.items() if "/" in name})
        self.log_dict({f"{stage}/{name}": value for name, value in values.items() if "/" not in name},
                      prog_bar=(stage == "val"))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Prediction]:
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Prediction]:
        return self._evaluation_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    # ----------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = self.trainable_parameters()
        if not params:
            raise ConfigError(f"method '{self.method_name}' has nothing to train; evaluate it with promptlearn-eval")
        if self.optimizer_factory is None:
            raise ConfigError("no optimizer given; choose one with optimizer=adafactor or optimizer=adamw")
        return self.optimizer_factory(params)

    # ----------------------------------------------------------------- checkpoints
    def prompt_hparams(self) -> dict[str, object]:
        """What a saved prompt records about how it was built (subclasses add their settings)."""
        return {}

    def save_prompt(self, path: str | Path) -> Path:
        """Write the trainable tensors alone (kilobytes), with the backbone they belong to."""
        return save_prompt(path, self.trainable_state_dict(), self.method_name, self.backbone.fingerprint(), self.prompt_hparams())

    def load_prompt(self, path: str | Path) -> None:
        """Load a prompt saved by :meth:`save_prompt`, refusing one from another method or backbone."""
        payload = read_prompt(path)
        check_compatible(payload, path, self.method_name, self.backbone.fingerprint())
        self._require_keys(payload["state_dict"], str(path))
        own = self.trainable_state_dict()
        for key, value in payload["state_dict"].items():
            if key in own and own[key].shape != value.shape:
                raise CheckpointError(
                    f"{path}: '{key}' has shape {tuple(value.shape)} but this {self.method_name} expects "
                    f"{tuple(own[key].shape)}; match the method settings it was trained with: {payload['hparams']}"
                )
        self.load_state_dict(payload["state_dict"], strict=False)
