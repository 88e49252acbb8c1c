"""Prompt ensembling (Lester et al. 2021, §6.2 and Table 3): several learned prompts, one frozen model, a vote.

Every example of a batch is repeated once per prompt, so all prompts are evaluated in one batched
forward pass (rows are ordered prompt by prompt), and each example's prediction is the majority vote
of the prompts. For rank classification a tie goes to the tied choice with the higher probability
averaged over the prompts; for generation, to the answer of the earliest prompt among the tied.
Each member's own score is logged too (``test/member0/score``, ...), with their mean and best, the
three columns of Lester et al.'s Table 3. Nothing trains: evaluate with promptlearn-train (which
skips fitting) or promptlearn-eval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from promptlearn.backbones import Backbone
from promptlearn.data.tasks import TaskInfo
from promptlearn.utils.errors import ConfigError
from promptlearn.inference.soft_prompts import expand_paths, read_soft_prompt
from promptlearn.methods.base import FrozenBackboneModule, OptimizerFactory
from promptlearn.methods.settings import arguments
from promptlearn.methods.scoring import Prediction
from promptlearn.prompts.prepend import prepend_prompt
from promptlearn.metrics import Predictions, build_metrics, match_choice, normalize_answer


def repeat_batch(batch: Mapping[str, Any], times: int) -> dict[str, Any]:
    """The batch ``times`` over, copy after copy: rows (and choice rows) of copy ``i`` come ``i``-th."""
    repeated: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            repeated[key] = value.repeat(times, *[1] * (value.ndim - 1))
        elif isinstance(value, list):
            repeated[key] = value * times
        else:
            repeated[key] = value
    return repeated


def majority_vote(picks: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """Each example's most voted choice from ``picks [members, examples]``; ties by mean probability.

    ``probabilities`` is ``[members, examples, choices]``. The mean probability (at most 1) is halved
    before it is added to the integer vote counts, so it only ever decides between tied choices.
    """
    votes = nn.functional.one_hot(picks, probabilities.shape[-1]).sum(0).float()
    return (votes + 0.5 * probabilities.mean(0)).argmax(-1)


def vote_texts(members: Sequence[Sequence[str]]) -> list[str]:
    """Per example, the most frequent (normalised) answer over the members; ties to the earliest member."""
    winners = []
    for answers in zip(*members):
        counts = Counter(normalize_answer(a) for a in answers)
        best = max(counts.values())
        winners.append(next(a for a in answers if counts[normalize_answer(a)] == best))
    return winners


class PromptEnsemble(FrozenBackboneModule):
    """Majority vote of several prompts saved by method=prompt_tuning, evaluated in one batched pass."""

    method_name = "prompt_ensemble"

    def __init__(
        self,
        backbone: Backbone,
        task: TaskInfo,
        optimizer: OptimizerFactory | None = None,
        prompts: Sequence[str | Path] = (),
        **kwargs: Any,
    ) -> None:
        self.check_settings(arguments(locals()))
        super().__init__(backbone, task, optimizer, **kwargs)
        paths = expand_paths(prompts)
        tensors = [read_soft_prompt(path, backbone) for path in paths]
        lengths = {tuple(t.shape) for t in tensors}
        if len(lengths) > 1:
            raise ConfigError(f"ensembled prompts must share one shape, got {sorted(lengths)}; ensemble prompts of one length")
        self.prompt_paths = [str(p) for p in paths]
        self.register_buffer("prompts", torch.stack(tensors), persistent=False)  # [members, length, hidden]
        self.member_metrics = nn.ModuleDict(
            {stage: nn.ModuleList(build_metrics(task) for _ in paths) for stage in ("val", "test")}
        )

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        super().check_settings(settings)
        prompts = settings.get("prompts", ())
        if isinstance(prompts, str) or not prompts:
            raise ConfigError("prompt ensembling needs prompts: set method.prompts=[run1/prompt.pt,run2/prompt.pt]")

    @property
    def members(self) -> int:
        return self.prompts.shape[0]

    @property
    def num_virtual_tokens(self) -> int:
        return self.prompts.shape[1]

    def embed_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows come prompt by prompt (see :func:`repeat_batch`): block ``i`` gets prompt ``i``."""
        embeds, mask = super().embed_inputs(input_ids, attention_mask)
        if embeds.shape[0] % self.members:
            raise ConfigError(f"{embeds.shape[0]} rows cannot hold {self.members} prompts' copies of a batch")
        blocks = [prepend_prompt(p, e, m) for p, e, m in zip(self.prompts, embeds.chunk(self.members), mask.chunk(self.members))]
        return torch.cat([e for e, _ in blocks]), torch.cat([m for _, m in blocks])

    def member_predictions(self, batch: Mapping[str, Any]) -> tuple[Prediction, list[Prediction]]:
        """The ensemble's prediction and each member's, from one pass over the batch repeated per member."""
        size = len(batch["label"])
        repeated = repeat_batch(batch, self.members)
        together = self.scorer.predict(self, repeated, self.task.eval_mode)
        if self.task.eval_mode == "rank":
            picks = together.index.view(self.members, size)
            matrix = together.scores.view(self.members, size, -1)
            index = majority_vote(picks, matrix.softmax(-1))
            texts = [choices[i] for choices, i in zip(batch["choices"], index.tolist())]
        else:
            texts = vote_texts([together.texts[i * size : (i + 1) * size] for i in range(self.members)])
            index = torch.tensor([match_choice(t, c) for t, c in zip(texts, batch["choices"])], device=batch["label"].device)
        members = [
            Prediction(together.index[i * size : (i + 1) * size], together.texts[i * size : (i + 1) * size], together.loss)
            for i in range(self.members)
        ]
        return Prediction(index, texts, together.loss), members

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> Prediction:
        """The ensemble's answer to each example: the members' majority vote."""
        return self.member_predictions(batch)[0]

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> dict[str, Prediction]:
        prediction, members = self.member_predictions(batch)
        self.log(f"{stage}/loss", prediction.loss, batch_size=len(batch["label"]))
        for metrics, decided in zip([self.metrics[stage], *self.member_metrics[stage]], [prediction, *members]):
            metrics.update(Predictions(decided.index, batch["label"], decided.texts, batch["answers"], batch["group"], batch["task"]))
        return {"prediction": prediction}

    def _log_epoch_metrics(self, stage: str) -> None:
        super()._log_epoch_metrics(stage)
        scores = []
        for metrics in self.member_metrics[stage]:
            scores.append(metrics.compute()["score"])
            metrics.reset()
        logged = {f"{stage}/member{i}/score": s for i, s in enumerate(scores)}
        logged.update({f"{stage}/member_mean/score": sum(scores) / len(scores), f"{stage}/member_best/score": max(scores)})
        self.log_dict(logged)

    def prompt_hparams(self) -> dict[str, object]:
        return {"prompts": self.prompt_paths}
