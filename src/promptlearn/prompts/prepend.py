"""Virtual tokens before the input: the one way every input-space prompt enters the backbone."""

from __future__ import annotations

import torch


def prepend_prompt(
    prompt: torch.Tensor, embeds: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[prompt; embeds]`` for every row, and the mask with the prompt positions attended.

    ``prompt`` is one ``[length, hidden]`` prompt for all rows, or ``[rows, length, hidden]``, one per row.
    """
    batch = embeds.shape[0]
    prompt = prompt.to(embeds.dtype).expand(batch, -1, -1)
    prompt_mask = attention_mask.new_ones(batch, prompt.shape[1])
    return torch.cat([prompt, embeds], dim=1), torch.cat([prompt_mask, attention_mask], dim=1)
