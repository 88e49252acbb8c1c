"""Prompt Tuning (Lester et al. 2021): a learned soft prompt before the input embeddings.

For T5 the prompt goes on the encoder input only, as in the paper; for a causal LM it precedes the
whole sequence. The attention mask is extended with ones to cover it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from promptlearn.backbones import Backbone
from promptlearn.data.tasks import TaskInfo
from promptlearn.methods.base import FrozenBackboneModule, OptimizerFactory
from promptlearn.methods.settings import arguments, check_init
from promptlearn.prompts.init import initial_prompt
from promptlearn.prompts.prepend import prepend_prompt


class PromptTuning(FrozenBackboneModule):
    """Only ``prompt`` (``prompt_length x hidden_size``) trains."""

    method_name = "prompt_tuning"

    def __init__(
        self,
        backbone: Backbone,
        task: TaskInfo,
        optimizer: OptimizerFactory | None = None,
        prompt_length: int = 100,
        init: str = "class_label",
        init_range: float = 0.5,
        init_vocab_size: int = 5000,
        init_text: str | None = None,
        label_words: Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        self.check_settings(arguments(locals()))
        super().__init__(backbone, task, optimizer, **kwargs)
        self.init = init
        self.prompt = nn.Parameter(
            initial_prompt(
                init,
                length=prompt_length,
                embeddings=backbone.vocabulary_embeddings(),
                tokenizer=backbone.tokenizer,
                init_range=init_range,
                vocab_size=init_vocab_size,
                label_words=task.label_words if label_words is None else label_words,
                text=init_text,
            )
        )

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        super().check_settings(settings)
        check_init(settings)

    @property
    def num_virtual_tokens(self) -> int:
        return self.prompt.shape[-2]

    @property
    def virtual_tokens_shared_by_rows(self) -> bool:
        return self.prompt.dim() == 2

    def embed_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, mask = super().embed_inputs(input_ids, attention_mask)
        return prepend_prompt(self.prompt, embeds, mask)

    def prompt_hparams(self) -> dict[str, object]:
        return {"prompt_length": self.num_virtual_tokens, "init": self.init}
