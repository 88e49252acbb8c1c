"""Meta-validation and meta-test: every init adapted the same way on each episode's support set, and
scored on its query set.

Adaptation at evaluation needs no graph through the inner gradients, so it runs first order. Many
(episode, init) pairs are adapted at once: their support sets are stacked into one batch, each row
under its own pair's prompt (:mod:`~promptlearn.meta.task_batching`), so an inner step is one pass
of the backbone for all of them, and the query scores of all of them are one more. Each pair's
accuracy is the one it would get alone (``meta.eval_tasks_per_pass=1`` runs them one by one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from promptlearn.meta.summary import summarize
from promptlearn.meta.task_batching import mean_by_task, stack_task_batches
from promptlearn.prompts.init import initial_prompt
from promptlearn.utils.errors import ConfigError

META_INIT = "meta"  # the meta-learned prompt, in meta-test results


class MetaEvaluation:
    """Meta-validation and meta-test hooks of :class:`~promptlearn.meta.maml.MetaPromptTuning`."""

    eval_tasks_per_pass = 4

    def _meta_lr(self) -> torch.Tensor | float:
        return self.base_inner_lr if self.inner_lr is None else self.inner_lr.detach()

    def baseline_prompt(self, init: str, episode: dict[str, Any]) -> torch.Tensor:
        """A standard init for one episode: the same on every rank and in every run with this seed."""
        state = np.random.SeedSequence(self.seed, spawn_key=(episode["index"],)).generate_state(1)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(state))
            prompt = initial_prompt(
                init,
                embeddings=self.backbone.vocabulary_embeddings(),
                tokenizer=self.backbone.tokenizer,
                label_words=episode["label_words"],
                **self.init_settings,
            )
        return prompt.to(self.prompt.device)

    def adapted_accuracies(
        self, starts: Sequence[torch.Tensor], episodes: Sequence[dict[str, Any]], lrs: Sequence[torch.Tensor | float]
    ) -> torch.Tensor:
        """``[pairs]``: the query accuracy of each (start prompt, episode, inner LR) after ``eval_inner_steps``
        first-order steps on the episode's support set, ``eval_tasks_per_pass`` pairs per backbone pass."""
        if torch.is_inference_mode_enabled():
            raise ConfigError(
                "meta-evaluation adapts prompts with gradients; build the Trainer with inference_mode=False"
            )
        size = max(1, self.eval_tasks_per_pass)
        chunks = [range(i, min(i + size, len(starts))) for i in range(0, len(starts), size)]
        return torch.cat([self._adapted_chunk([starts[i] for i in c], [episodes[i] for i in c], [lrs[i] for i in c])
                          for c in chunks])

    def _adapted_chunk(self, starts: list[torch.Tensor], episodes: list[dict[str, Any]], lrs: list) -> torch.Tensor:
        pad_id = self.backbone.tokenizer.pad_token_id
        support = stack_task_batches([e["support"] for e in episodes], pad_id)
        query = stack_task_batches([e["query"] for e in episodes], pad_id)
        if len(episodes) == 1 or support is None or query is None:  # one at a time: episodes of different kinds
            return torch.stack([self._adapted_one(p, e, lr) for p, e, lr in zip(starts, episodes, lrs)])
        prompts = torch.stack([p.detach() for p in starts])
        lr = torch.stack([torch.as_tensor(lr, dtype=prompts.dtype, device=prompts.device).expand_as(p)
                          for lr, p in zip(lrs, prompts)])
        with torch.enable_grad():
            path = self.adapt(prompts, support, self.eval_inner_steps, lr, second_order=False)
        final = path[-1].detach() if path else prompts
        with torch.no_grad():
            correct = (self.logits(final, query).argmax(-1) == query["label"]).float()
        return mean_by_task(correct, query["task_of_row"], len(episodes))

    def _adapted_one(self, prompt: torch.Tensor, episode: dict[str, Any], lr: torch.Tensor | float) -> torch.Tensor:
        with torch.enable_grad():
            path = self.adapt(prompt.detach(), episode["support"], self.eval_inner_steps, lr, second_order=False)
        final = path[-1] if path else prompt
        with torch.no_grad():
            predictions = self.logits(final.detach(), episode["query"]).argmax(-1)
        return (predictions == episode["query"]["label"]).float().mean()

    def adapted_accuracy(self, prompt: torch.Tensor, episode: dict[str, Any], lr: torch.Tensor | float) -> torch.Tensor:
        """Query accuracy after adapting ``prompt`` on the support set for ``eval_inner_steps`` steps."""
        return self.adapted_accuracies([prompt], [episode], [lr])[0]

    # ----------------------------------------------------------------- Lightning hooks
    @staticmethod
    def _episodes(batch: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
        return batch if isinstance(batch, list) else [batch]

    def validation_step(self, batch: dict[str, Any] | list[dict[str, Any]], batch_idx: int) -> None:
        episodes = self._episodes(batch)
        accuracies = self.adapted_accuracies([self.prompt] * len(episodes), episodes, [self._meta_lr()] * len(episodes))
        for accuracy in accuracies:
            self.val_accuracy.update(accuracy)

    def on_validation_epoch_end(self) -> None:
        accuracy = self.val_accuracy.compute()
        self.val_accuracy.reset()
        # Already reduced over ranks by the metric; sync_dist averages identical values: exact.
        self.log_dict({"val/accuracy": accuracy, "val/score": accuracy}, prog_bar=True, sync_dist=True)

    def test_step(self, batch: dict[str, Any] | list[dict[str, Any]], batch_idx: int) -> None:
        names = (META_INIT, *self.eval_inits)
        starts, episodes, lrs = [], [], []
        for episode in self._episodes(batch):
            for name in names:
                meta = name == META_INIT
                starts.append(self.prompt if meta else self.baseline_prompt(name, episode))
                lrs.append(self._meta_lr() if meta else self.base_inner_lr)
                episodes.append(episode)
        accuracies = self.adapted_accuracies(starts, episodes, lrs).view(-1, len(names))
        for row, episode in zip(accuracies, self._episodes(batch)):
            for name, accuracy in zip(names, row):
                self.test_accuracy[name].update(accuracy)
            self.test_episode.update(torch.tensor(float(episode["index"]), device=self.prompt.device))

    def on_test_epoch_end(self) -> None:
        order = self.test_episode.compute().reshape(-1).argsort()
        per_init = {
            name: metric.compute().reshape(-1)[order].tolist() for name, metric in self.test_accuracy.items()
        }
        self.meta_test = summarize(per_init, reference=META_INIT)
        logged = {f"test/{name}/accuracy": stats["mean"] for name, stats in self.meta_test["inits"].items()}
        logged["test/score"] = self.meta_test["inits"][META_INIT]["mean"]
        self.log_dict(logged, sync_dist=True)
        self.test_episode.reset()
        for metric in self.test_accuracy.values():
            metric.reset()
