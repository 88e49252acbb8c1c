"""Episodes served to Lightning: the meta-train stream indexed by meta-step, and fixed evaluation episodes.

Episodes themselves are drawn in :mod:`promptlearn.data.episodes`; here they are shared out
between distributed ranks and served by one DataModule over disjoint meta-train, meta-validation
and meta-test pools.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, IterableDataset

from promptlearn.backbones import Backbone
from promptlearn.data.encoding import TextToTextEncoder
from promptlearn.data.episodes import META_SPLITS, EpisodeCollator, EpisodeSampler, TaskSource, check_disjoint
from promptlearn.data.tasks import Example, Task
from promptlearn.utils.errors import ConfigError


class MetaTrainEpisodes(IterableDataset):
    """This process's share of every meta-step, from ``start_step`` on, without end.

    Each item is a list of collated episodes: of meta-step ``s``'s episodes ``s * B .. s * B + B - 1``,
    rank ``r`` of ``W`` takes the ``B / W`` starting at ``s * B + r * B / W``.
    """

    def __init__(
        self,
        sampler: EpisodeSampler,
        collate: EpisodeCollator,
        rank: int,
        world_size: int,
        start_step: int = 0,
    ):
        self.sampler, self.collate = sampler, collate
        self.per_rank = sampler.tasks_per_batch // world_size
        self.rank, self.start_step = rank, start_step

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        step = self.start_step
        while True:
            first = step * self.sampler.tasks_per_batch + self.rank * self.per_rank
            yield [self.collate(self.sampler.episode(first + j)) for j in range(self.per_rank)]
            step += 1


class EvalEpisodes(IterableDataset):
    """Episodes ``0..count-1``, dealt to ranks round-robin (no episode twice, none left out)."""

    def __init__(
        self,
        sampler: EpisodeSampler,
        collate: EpisodeCollator,
        count: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.sampler, self.collate, self.count = sampler, collate, count
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.count, self.world_size))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index in range(self.rank, self.count, self.world_size):
            yield self.collate(self.sampler.episode(index))


def as_list(episodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluation batches are lists of collated episodes, adapted together (:mod:`promptlearn.meta.meta_test`)."""
    return episodes


class EpisodeDataModule(L.LightningDataModule):
    """Serves meta-train, meta-validation and meta-test episodes from disjoint task pools to one backbone."""

    def __init__(
        self,
        pools: Mapping[str, Sequence[TaskSource]],
        backbone: Backbone,
        n_way: int = 2,
        k_shot: int = 4,
        query_shots: int = 8,
        tasks_per_step: int = 4,
        val_episodes: int = 50,
        test_episodes: int = 200,
        eval_batch_episodes: int = 8,
        seed: int = 0,
        max_field_tokens: int | None = None,
        max_source_length: int = 512,
        max_target_length: int = 64,
    ) -> None:
        super().__init__()
        if unknown := set(pools) - set(META_SPLITS):
            raise ConfigError(f"unknown meta-split(s) {sorted(unknown)}; use {', '.join(META_SPLITS)}")
        if "meta_train" not in pools:
            raise ConfigError("the task pool needs a meta_train list")
        if eval_batch_episodes < 1:
            raise ConfigError(f"episodes.eval_batch_episodes must be at least 1, got {eval_batch_episodes}")
        self.eval_batch_episodes = eval_batch_episodes
        if tasks_per_step < 1:
            raise ConfigError(f"episodes.tasks_per_step must be at least 1, got {tasks_per_step}")
        check_disjoint(pools)
        self.pools = {split: list(pools.get(split) or []) for split in META_SPLITS}
        loaded: dict[int, Mapping[str, Sequence[Example]]] = {}

        def load(task: Task) -> Mapping[str, Sequence[Example]]:  # a task shared by two sources loads once
            if id(task) not in loaded:
                loaded[id(task)] = task.load_splits()
            return loaded[id(task)]

        shots = dict(n_way=n_way, k_shot=k_shot, query_shots=query_shots, seed=seed, load=load)
        self.samplers = {
            split: EpisodeSampler(
                sources,
                tasks_per_batch=tasks_per_step if split == "meta_train" else len(sources),
                split=split,
                **shots,
            )
            for split, sources in pools.items()
            if sources
        }
        self.episodes = {"meta_val": val_episodes, "meta_test": test_episodes}
        self.tasks_per_step = tasks_per_step
        encoder = TextToTextEncoder(
            backbone.tokenizer,
            backbone.is_encoder_decoder,
            prepend_bos=backbone.prepend_bos,
            max_field_tokens=max_field_tokens,
            max_source_length=max_source_length,
            max_target_length=max_target_length,
        )
        self.collate = EpisodeCollator(encoder, backbone.tokenizer.pad_token_id)

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _eval_loader(self, split: str) -> DataLoader:
        if split not in self.samplers or not self.episodes[split]:
            raise ConfigError(
                f"no {split} episodes: list tasks under meta_pool.{split} and set a positive episode count"
            )
        rank, world = self._rank_and_world()
        return DataLoader(
            EvalEpisodes(self.samplers[split], self.collate, self.episodes[split], rank, world),
            batch_size=self.eval_batch_episodes,
            collate_fn=as_list,
        )

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_and_world()
        if self.tasks_per_step % world:
            raise ConfigError(
                f"episodes.tasks_per_step={self.tasks_per_step} does not split evenly over {world} "
                "processes; "
                "make it a multiple of the number of devices"
            )
        start = (
            self.trainer.global_step if self.trainer is not None else 0
        )  # a resumed run continues the episode stream
        return DataLoader(
            MetaTrainEpisodes(self.samplers["meta_train"], self.collate, rank, world, start), batch_size=None
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("meta_val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("meta_test")
