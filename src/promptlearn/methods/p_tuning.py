"""P-Tuning (Liu et al. 2021, *GPT Understands, Too*): virtual token embeddings produced by a prompt
encoder, placed before the input.

The encoder follows the paper's code: ``prompt_length x hidden_size`` embeddings go through a
two-layer bidirectional LSTM and an MLP (``Linear -> ReLU -> Linear``), or through the MLP alone.
As in prompt tuning, the virtual tokens go on T5's encoder input only and precede a causal LM's
whole sequence. After training, :meth:`PTuning.fold` keeps only the encoder's output, which is what
a saved prompt holds (``fold_on_save``); a folded prompt is a plain soft prompt (``encoder=None``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from promptlearn.backbones import Backbone
from promptlearn.data.tasks import TaskInfo
from promptlearn.utils.errors import ConfigError, unknown_name
from promptlearn.methods.base import FrozenBackboneModule, OptimizerFactory
from promptlearn.methods.settings import arguments, at_least, fraction
from promptlearn.prompts.prepend import prepend_prompt
from promptlearn.prompts.checkpoint import read_prompt, save_prompt

ENCODERS = ("lstm", "mlp")


class PromptEncoder(nn.Module):
    """Maps ``length`` learned input embeddings to ``length`` virtual token embeddings.

    ``lstm``: ``LSTM(d, h, lstm_layers, bidirectional) -> Linear(2h, d) -> ReLU -> Linear(d, d)``,
    ``h = d // 2`` by default (the paper's code). ``mlp``: ``Linear(d, h) -> ReLU -> Linear(h, d)``,
    ``h = d`` by default.
    """

    def __init__(
        self,
        kind: str,
        length: int,
        hidden_size: int,
        encoder_hidden_size: int | None = None,
        lstm_layers: int = 2,
        lstm_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        d = hidden_size
        self.embedding = nn.Parameter(
            torch.randn(length, d)
        )  # nn.Embedding's N(0, 1), as in the paper's code
        if kind == "lstm":
            h = encoder_hidden_size or d // 2
            self.lstm: nn.LSTM | None = nn.LSTM(
                d, h, num_layers=lstm_layers, dropout=lstm_dropout, bidirectional=True, batch_first=True
            )
            self.mlp = nn.Sequential(nn.Linear(2 * h, d), nn.ReLU(), nn.Linear(d, d))
        else:
            h = encoder_hidden_size or d
            self.lstm = None
            self.mlp = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, d))

    def forward(self) -> torch.Tensor:
        states = self.embedding
        if self.lstm is not None:
            states = self.lstm(states.unsqueeze(0))[0].squeeze(0)
        return self.mlp(states)


class PTuning(FrozenBackboneModule):
    """Only the prompt encoder trains; its output, ``prompt_length x hidden_size``, precedes the input.

    Trainable parameters, with ``p = prompt_length``, ``d = hidden_size``, ``h = encoder_hidden_size``:

    - ``encoder="mlp"``: ``p*d + (d*h + h) + (h*d + d)``;
    - ``encoder="lstm"`` (``n = lstm_layers``): ``p*d`` + the LSTM's ``2 * [4h*(d + h) + 8h]`` for the
      first layer and ``2 * [4h*(2h + h) + 8h]`` for each further one, + ``(2h*d + d) + (d*d + d)``;
    - ``encoder=None`` (a folded prompt): ``p*d``.
    """

    method_name = "p_tuning"
    virtual_tokens_shared_by_rows = True

    def __init__(
        self,
        backbone: Backbone,
        task: TaskInfo,
        optimizer: OptimizerFactory | None = None,
        prompt_length: int = 20,
        encoder: str | None = "lstm",
        encoder_hidden_size: int | None = None,
        lstm_layers: int = 2,
        lstm_dropout: float = 0.0,
        fold_on_save: bool = True,
        **kwargs: Any,
    ) -> None:
        self.check_settings(arguments(locals()))
        super().__init__(backbone, task, optimizer, **kwargs)
        limit = backbone.max_positions
        if limit is not None and prompt_length >= limit:
            raise ConfigError(
                f"{prompt_length} virtual tokens leave no room for input in {backbone.name}'s "
                f"{limit} positions; set method.prompt_length well below {limit}"
            )
        self.prompt_length = prompt_length
        self.encoder_hidden_size = encoder_hidden_size
        self.lstm_layers = lstm_layers
        self.fold_on_save = fold_on_save
        self.prompt_encoder: PromptEncoder | None = None
        self.prompt: nn.Parameter | None = None
        if encoder is None:
            self.prompt = nn.Parameter(torch.zeros(prompt_length, backbone.hidden_size))
        else:
            self.prompt_encoder = PromptEncoder(
                encoder, prompt_length, backbone.hidden_size, encoder_hidden_size, lstm_layers, lstm_dropout
            )
        self.encoder_type = encoder

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        super().check_settings(settings)
        at_least(settings, "prompt_length", 1, "20", label="prompt length")
        encoder = settings.get("encoder", "lstm")
        if encoder is not None and encoder not in ENCODERS:
            raise unknown_name("P-Tuning prompt encoder (method.encoder)", str(encoder), ENCODERS)
        at_least(settings, "lstm_layers", 1, "2")
        at_least(settings, "encoder_hidden_size", 1, "null", optional=True)
        fraction(settings, "lstm_dropout", "0.0")

    @property
    def num_virtual_tokens(self) -> int:
        return self.prompt_length

    def virtual_tokens(self) -> torch.Tensor:
        """The ``prompt_length x hidden_size`` embeddings placed before the input."""
        return self.prompt if self.prompt_encoder is None else self.prompt_encoder()

    def embed_inputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, mask = super().embed_inputs(input_ids, attention_mask)
        return prepend_prompt(self.virtual_tokens(), embeds, mask)

    # ----------------------------------------------------------------- folding
    @torch.no_grad()
    def folded_prompt(self) -> torch.Tensor:
        """The virtual tokens as inference sees them (encoder in eval mode: no LSTM dropout), detached."""
        if self.prompt_encoder is None:
            return self.prompt.detach().clone()
        was_training = self.prompt_encoder.training
        self.prompt_encoder.eval()
        try:
            return self.prompt_encoder().detach().clone()
        finally:
            self.prompt_encoder.train(was_training)

    def fold(self) -> None:
        """Replace the prompt encoder by the virtual tokens it produces. For inference, after training."""
        if self.prompt_encoder is None:
            return
        self.prompt = nn.Parameter(self.folded_prompt())
        self.prompt_encoder = None
        self.encoder_type = None

    # ----------------------------------------------------------------- checkpoints
    def prompt_hparams(self) -> dict[str, object]:
        return {
            "prompt_length": self.prompt_length,
            "encoder": self.encoder_type,
            "encoder_hidden_size": self.encoder_hidden_size,
            "lstm_layers": self.lstm_layers,
        }

    def save_prompt(self, path: str | Path) -> Path:
        """Write the folded virtual tokens (``fold_on_save``, the default) or the encoder as it is."""
        if not (self.fold_on_save and self.prompt_encoder is not None):
            return super().save_prompt(path)
        hparams = {**self.prompt_hparams(), "encoder": None}
        return save_prompt(
            path, {"prompt": self.folded_prompt()}, self.method_name, self.backbone.fingerprint(), hparams
        )

    def load_prompt(self, path: str | Path) -> None:
        """Load a saved prompt; a folded one replaces this module's encoder, ready for inference."""
        if self.prompt_encoder is not None and read_prompt(path)["hparams"].get("encoder", "") is None:
            self.fold()
        super().load_prompt(path)
