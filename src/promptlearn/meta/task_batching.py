"""One batch for a meta-step's tasks, so that every task's inner step is one pass of the backbone.

Batching over tasks is what ``torch.func.vmap`` over a per-task loss would give: one forward for
all tasks, each row under its own task's prompt. Built directly as a batch, it also runs where
vmap does not (transformers builds masks with data-dependent checks, and the scorer selects target
positions with boolean masks, whose shapes vmap cannot know), and packing then removes the padding
that tasks of different lengths would add.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from promptlearn.data.encoding import IGNORE_INDEX


def _pad_value(key: str, pad_id: int) -> int:
    if key.endswith("input_ids"):
        return pad_id
    return 0 if key.endswith("attention_mask") else IGNORE_INDEX


def stack_task_batches(batches: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any] | None:
    """The tensors of several tasks' rank-classification batches as one batch, with ``task_of_row``.

    Token tensors are right-padded to the widest task's width. None when the batches differ in
    kind (say, one-token choices in one task and longer ones in another): score them task by task.
    """
    keys = [sorted(k for k, v in batch.items() if isinstance(v, torch.Tensor)) for batch in batches]
    if any(k != keys[0] for k in keys):
        return None
    stacked: dict[str, Any] = {}
    for key in keys[0]:
        values = [batch[key] for batch in batches]
        if values[0].dim() == 2:
            width = max(v.shape[1] for v in values)
            values = [F.pad(v, (0, width - v.shape[1]), value=_pad_value(key, pad_id)) for v in values]
        stacked[key] = torch.cat(values)
    sizes = torch.tensor([len(batch["label"]) for batch in batches], device=stacked["label"].device)
    stacked["task_of_row"] = torch.repeat_interleave(torch.arange(len(batches), device=sizes.device), sizes)
    return stacked


def mean_by_task(values: torch.Tensor, task_of_row: torch.Tensor, tasks: int) -> torch.Tensor:
    """``[tasks]``: the mean of ``values`` (one per row) over each task's rows."""
    totals = values.new_zeros(tasks).index_add(0, task_of_row, values)
    return totals / torch.bincount(task_of_row, minlength=tasks).to(values.dtype)
