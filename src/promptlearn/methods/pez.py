"""PEZ (Wen et al. 2023, *Hard Prompts Made Easy*): learn a hard prompt through a continuous one.

A continuous prompt (``prompt_length x d``) is kept; every forward pass projects it onto the nearest
vocabulary embeddings (cosine), computes the loss on the projected prompt, and applies that
gradient to the continuous prompt. The backbone only ever reads real token embeddings.

Evaluation reads the prompt as a user would: the projected ids are decoded to a string, the string
is tokenized again, and those ids are the prompt. Where the tokenizer does not reproduce the ids
(merges across token boundaries, for example), the number of differing ids is logged as
``<stage>/retokenize_mismatch``; validation and test scores are always those of the string.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from promptlearn.utils.atomic import atomic_json_dump
from promptlearn.backbones import Backbone
from promptlearn.data.tasks import TaskInfo
from promptlearn.utils.errors import ConfigError
from promptlearn.methods.base import FrozenBackboneModule, OptimizerFactory
from promptlearn.methods.settings import arguments, at_least, check_init
from promptlearn.prompts.prepend import prepend_prompt
from promptlearn.prompts.init import initial_prompt
from promptlearn.prompts.projection import HardPromptText, candidate_token_ids, hard_prompt_text, project_to_vocab

log = logging.getLogger(__name__)


class PEZ(FrozenBackboneModule):
    """Only the continuous ``prompt`` trains; the backbone sees its projection onto the vocabulary."""

    method_name = "pez"
    virtual_tokens_shared_by_rows = True

    def __init__(
        self,
        backbone: Backbone,
        task: TaskInfo,
        optimizer: OptimizerFactory | None = None,
        prompt_length: int = 10,
        init: str = "sampled_vocab",
        init_range: float = 0.5,
        init_vocab_size: int = 5000,
        init_text: str | None = None,
        vocab_size: int | None = None,
        token_pattern: str | None = None,
        label_words: Sequence[str] | None = None,
        evaluate_as: str = "text",
        **kwargs,
    ) -> None:
        self.check_settings(arguments(locals()))
        self.evaluate_as = evaluate_as
        super().__init__(backbone, task, optimizer, **kwargs)
        self.init = init
        self.register_buffer(
            "candidate_ids",
            candidate_token_ids(backbone.tokenizer, backbone.vocab_size, vocab_size=vocab_size, token_pattern=token_pattern),
            persistent=False,
        )
        self.filter_settings = {"vocab_size": vocab_size, "token_pattern": token_pattern}
        self.prompt = nn.Parameter(
            initial_prompt(
                init,
                length=prompt_length,
                embeddings=self.vocab_embeddings,
                tokenizer=backbone.tokenizer,
                init_range=init_range,
                vocab_size=init_vocab_size,
                label_words=task.label_words if label_words is None else label_words,
                text=init_text,
            )
        )
        self._text_prompt_ids: torch.Tensor | None = None  # set while evaluating the decoded string
        self._mismatch = 0

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        super().check_settings(settings)
        check_init({"init": "sampled_vocab", **settings})
        if settings.get("evaluate_as", "text") not in ("text", "ids"):
            raise ConfigError(f"method.evaluate_as must be 'text' (the decoded string, re-tokenized) or 'ids' "
                              f"(the projected token ids), got {settings['evaluate_as']!r}")
        at_least(settings, "vocab_size", 1, "null", optional=True)

    @property
    def vocab_embeddings(self) -> torch.Tensor:
        return self.backbone.vocabulary_embeddings()  # as the embedding module returns them

    @property
    def num_virtual_tokens(self) -> int:
        return self.prompt.shape[0] if self._text_prompt_ids is None else len(self._text_prompt_ids)

    def projected_ids(self) -> torch.Tensor:
        """The hard prompt: the nearest allowed vocabulary token (cosine) to each continuous row."""
        return project_to_vocab(self.prompt, self.vocab_embeddings, self.candidate_ids).token_ids

    def hard_prompt(self) -> HardPromptText:
        """The hard prompt as text, and the ids that text tokenizes back to."""
        return hard_prompt_text(self.backbone.tokenizer, self.projected_ids().tolist())

    def embed_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, mask = super().embed_inputs(input_ids, attention_mask)
        if self._text_prompt_ids is not None:
            prompt = self.vocab_embeddings[self._text_prompt_ids]
        else:
            prompt = project_to_vocab(self.prompt, self.vocab_embeddings, self.candidate_ids).embeds
        return prepend_prompt(prompt, embeds, mask)

    # ----------------------------------------------------------------- evaluation as plain text
    def _start_text_evaluation(self, stage: str) -> None:
        if self.evaluate_as == "ids":  # the projected ids themselves, as training saw them
            return
        text = self.hard_prompt()
        if text.mismatch:
            log.warning(
                "pez: the hard prompt %r re-tokenizes to %d different ids; %s scores are the string's",
                text.text, text.mismatch, stage,
            )
        if not text.retokenized_ids:
            raise ConfigError(f"the PEZ prompt decodes to {text.text!r}, which tokenizes to nothing; restrict method.token_pattern")
        self._text_prompt_ids = torch.tensor(text.retokenized_ids, device=self.prompt.device)
        self._mismatch = text.mismatch

    def _end_text_evaluation(self, stage: str) -> None:
        if self.evaluate_as == "ids":
            return
        self.log(f"{stage}/retokenize_mismatch", float(self._mismatch))
        self._text_prompt_ids = None

    def on_validation_epoch_start(self) -> None:
        self._start_text_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self._start_text_evaluation("test")

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._end_text_evaluation("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._end_text_evaluation("test")

    # ----------------------------------------------------------------- output
    def prompt_hparams(self) -> dict[str, object]:
        return {"prompt_length": self.prompt.shape[0], "init": self.init}

    def hard_prompt_record(self) -> dict[str, object]:
        text = self.hard_prompt()
        return {
            "hard_prompt": text.text,
            "token_ids": text.token_ids,
            "retokenized_ids": text.retokenized_ids,
            "retokenize_mismatch": text.mismatch,
            "vocabulary_filter": self.filter_settings,
        }

    def on_train_end(self) -> None:
        log.info("pez hard prompt: %r", self.hard_prompt().text)

    def save_prompt(self, path: str | Path) -> Path:
        """``prompt.pt`` (the continuous prompt) and beside it ``hard_prompt.json``: the text and its ids."""
        saved = super().save_prompt(path)
        atomic_json_dump(self.hard_prompt_record(), saved.with_name("hard_prompt.json"))
        return saved
