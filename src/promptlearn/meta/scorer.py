"""Scoring episodes for MAML: prompt tuning's rank classification, callable with any prompt.

:class:`EpisodeScorer` is :class:`PromptTuning` with a ``forward``, so that
``torch.func.functional_call`` can swap an adapted prompt in for its ``prompt``, one prompt for a
batch, or one per task for a batch of several tasks' rows.
"""

from __future__ import annotations

from typing import Any

import torch

from promptlearn.methods.prompt_tuning import PromptTuning, prepend_prompt


class EpisodeScorer(PromptTuning):
    """Prompt tuning whose forward scores every (example, choice) row of an episode batch.

    Given a prompt per task (``[tasks, length, hidden]``) and a batch of several tasks' rows (see
    :func:`~promptlearn.meta.task_batching.stack_task_batches`), each row gets its task's prompt.
    """

    _prompt_rows: torch.Tensor | None = None

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.prompt.dim() == 2:
            return self.choice_scores(batch)
        tasks = batch["task_of_row"]
        # One-token choices are read from the example rows; otherwise every choice has a row.
        one_token = "choice_token_ids" in batch
        self._prompt_rows = tasks if one_token else tasks.repeat_interleave(batch["choice_counts"])
        try:
            return self.choice_scores(batch)
        finally:
            self._prompt_rows = None

    def embed_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prompt.dim() == 2:
            return super().embed_inputs(input_ids, attention_mask)
        embeds = self.model.get_input_embeddings()(input_ids)
        return prepend_prompt(self.prompt[self._prompt_rows], embeds, attention_mask)
