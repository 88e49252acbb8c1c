"""Episodes scored under a prompt that is an argument, not a parameter: what ``torch.func.grad`` needs.

:class:`EpisodePrompts` is the scorer's input source (:class:`~promptlearn.methods.scoring.InputSource`)
for one prompt ``[length, hidden]`` shared by every row, or one prompt per task ``[tasks, length,
hidden]`` for a batch of several tasks' rows (see :mod:`~promptlearn.meta.task_batching`), each row
under its own task's prompt. :func:`episode_logits` is the rank-classification score of every
example's choices, as prompt tuning evaluates them.
"""

from __future__ import annotations

from typing import Any

import torch

from promptlearn.backbones import Backbone
from promptlearn.methods.scoring import Scorer
from promptlearn.prompts.prepend import prepend_prompt


class EpisodePrompts:
    """The backbone's inputs for ``prompts``; ``prompt_rows`` gives each batch row's task where there are several."""

    def __init__(self, backbone: Backbone, prompts: torch.Tensor, prompt_rows: torch.Tensor | None = None) -> None:
        self.backbone, self.prompts, self.prompt_rows = backbone, prompts, prompt_rows

    @property
    def shared_prefix(self) -> int:
        return self.prompts.shape[0] if self.prompts.dim() == 2 else 0

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
        prompts = self.prompts if self.prompts.dim() == 2 else self.prompts[self.prompt_rows]
        embeds, mask = prepend_prompt(prompts, self.backbone.embed(input_ids), attention_mask)
        return {"inputs_embeds": embeds, "attention_mask": mask}


def episode_logits(scorer: Scorer, prompts: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """``[examples, N]``: the log-likelihood of each example's N label words under ``prompts``.

    ``prompts`` is ``[length, hidden]``, or ``[tasks, length, hidden]`` for a batch with ``task_of_row``;
    one task's ``[1, length, hidden]`` is scored as a shared prompt, computed once.
    """
    rows = None
    if prompts.dim() == 3 and prompts.shape[0] == 1:
        prompts = prompts[0]
    elif prompts.dim() == 3:
        tasks = batch["task_of_row"]
        # One-token choices are read from the example rows; otherwise every choice has a row.
        rows = tasks if "choice_token_ids" in batch else tasks.repeat_interleave(batch["choice_counts"])
    scores, count, _ = scorer.choice_scores(EpisodePrompts(scorer.backbone, prompts, rows), batch)
    if scorer.length_normalize:
        scores = scores / count
    return scores.view(len(batch["label"]), -1)
