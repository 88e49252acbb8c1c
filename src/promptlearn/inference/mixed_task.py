"""Mixed-task inference: one batch holding examples of several tasks, each read with its own prompt, on one
frozen backbone (the serving scenario of Lester et al. 2021, §2: one model, a prompt per task).

Prompts of different lengths share a batch by padding the prompt block on the left and masking the
padding: for T5 (relative positions) and rotary models that leaves every real token's attention
unchanged, and for causal LMs positions are counted over attended tokens only, as generation does,
so each example is scored exactly as it would be alone. Batches come from a
:class:`~promptlearn.data.mixture.Mixture` (whose examples name their task), so a mixture's
DataModule evaluates with per-task metrics, and :func:`mixed_batch` builds one from loose examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from promptlearn.backbones import Backbone
from promptlearn.data.encoding import Collator, TextToTextEncoder
from promptlearn.data.mixture import Mixture
from promptlearn.data.tasks import Example, Task, TaskInfo
from promptlearn.utils.errors import ConfigError
from promptlearn.inference.soft_prompts import read_soft_prompt
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.methods.scoring import Prediction


class MixedTaskPrompts(FrozenBackboneModule):
    """A bank of per-task prompts; each row of a batch is prompted by its own task's prompt. Nothing trains."""

    method_name = "mixed_task_prompts"

    def __init__(self, backbone: Backbone, task: TaskInfo, prompts: Mapping[str, torch.Tensor], **kwargs: Any) -> None:
        super().__init__(backbone, task, None, **kwargs)
        needed = [part.name for part in task.parts] or [task.name]
        missing = [name for name in needed if name not in prompts]
        if missing:
            raise ConfigError(f"no prompt for task(s) {missing}; give one per task of '{task.name}': {needed}")
        hidden = backbone.hidden_size
        wrong = {name: tuple(p.shape) for name, p in prompts.items() if p.ndim != 2 or p.shape[1] != hidden}
        if wrong:
            raise ConfigError(f"prompts must be [length, {hidden}] for {backbone.name}; got {wrong}")
        self.task_index = {name: i for i, name in enumerate(prompts)}
        longest = max(p.shape[0] for p in prompts.values())
        bank = torch.zeros(len(prompts), longest, hidden)
        mask = torch.zeros(len(prompts), longest, dtype=torch.long)
        for i, prompt in enumerate(prompts.values()):
            bank[i, longest - len(prompt) :] = prompt.detach().float()  # left-padded: prompt right before the input
            mask[i, longest - len(prompt) :] = 1
        self.register_buffer("bank", bank, persistent=False)
        self.register_buffer("bank_mask", mask, persistent=False)
        self._rows: torch.Tensor | None = None

    @classmethod
    def from_files(cls, backbone: Backbone, task: TaskInfo, prompt_files: Mapping[str, str | Path], **kwargs: Any) -> MixedTaskPrompts:
        """Prompts saved by method=prompt_tuning runs, one ``prompt.pt`` per task name."""
        return cls(backbone, task, {name: read_soft_prompt(path, backbone) for name, path in prompt_files.items()}, **kwargs)

    @property
    def num_virtual_tokens(self) -> int:
        return self.bank.shape[1]

    def task_rows(self, names: Sequence[str]) -> torch.Tensor:
        unknown = sorted(set(names) - set(self.task_index))
        if unknown:
            raise ConfigError(f"batch holds examples of {unknown}, which have no prompt; known: {sorted(self.task_index)}")
        return torch.tensor([self.task_index[name] for name in names], device=self.bank.device)

    @contextmanager
    def prompting(self, rows: torch.Tensor) -> Iterator[None]:
        """Within this block, row ``i`` of every forward pass reads prompt ``rows[i]``."""
        previous, self._rows = self._rows, rows
        try:
            yield
        finally:
            self._rows = previous

    def embed_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, mask = super().embed_inputs(input_ids, attention_mask)
        if self._rows is None or len(self._rows) != embeds.shape[0]:
            raise ConfigError("mixed-task rows were not assigned prompts; score batches through predict() or a Trainer")
        prompts = self.bank[self._rows].to(embeds.dtype)
        return torch.cat([prompts, embeds], dim=1), torch.cat([self.bank_mask[self._rows].to(mask.dtype), mask], dim=1)

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
        inputs = super().model_inputs(input_ids, attention_mask)
        if not self.backbone.is_encoder_decoder:  # count positions over attended tokens only, as generate() does
            mask = inputs["attention_mask"].long()
            inputs["position_ids"] = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        return inputs

    def choice_scores(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tasks = self.task_rows(batch["task"])
        # One-token choices of a causal LM are read from the example rows; otherwise every choice has a row.
        rows = tasks if "choice_token_ids" in batch else tasks.repeat_interleave(batch["choice_counts"].to(tasks.device))
        with self.prompting(rows):
            return super().choice_scores(batch)

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> Prediction:
        """Each example's answer under its own task's prompt (see :meth:`Scorer.predict`)."""
        with self.prompting(self.task_rows(batch["task"])):
            return super().predict(batch)


def mixed_batch(tasks: Mapping[str, Task], requests: Sequence[tuple[str, Example]], backbone: Backbone) -> tuple[Mixture, dict[str, Any]]:
    """One evaluation batch from ``(task name, example)`` pairs in any order, and the mixture it belongs to."""
    mixture = Mixture(name="+".join(tasks), tasks=dict(tasks))
    by_name = {task.name: key for key, task in tasks.items()}
    unknown = sorted({name for name, _ in requests} - set(by_name))
    if unknown:
        raise ConfigError(f"requests name unknown tasks {unknown}; known: {sorted(by_name)}")
    encoder = TextToTextEncoder(backbone.tokenizer, backbone.is_encoder_decoder, prepend_bos=backbone.prepend_bos)
    encoded = [encoder.encode(mixture, dataclasses.replace(example, task=name)) for name, example in requests]
    collate = Collator(backbone.is_encoder_decoder, backbone.tokenizer.pad_token_id, mixture.eval_mode, train=False)
    return mixture, collate(encoded)
