"""N-way K-shot episodes for meta-learning, drawn from a pool of tasks.

A pool is a list of :class:`TaskSource`: a task, optionally restricted to some of its labels (so
the classes of one multi-class dataset can be split between meta-train and meta-test). An episode
picks one source, ``n_way`` of its classes, and ``k_shot`` support plus ``query_shots`` query
examples of each class, relabelled ``0..n_way-1`` with the chosen classes' label words as choices.

Episode ``i`` is a pure function of ``(i, seed)``: the same index gives the same episode in any
process, in any order, which is what lets distributed ranks share out the tasks of a meta-step.
Meta-step ``s`` takes episodes ``s * B .. s * B + B - 1`` (``B`` tasks per step), and those ``B``
episodes come from ``B`` distinct sources.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptlearn.data.encoding import Collator, TextToTextEncoder
from promptlearn.data.tasks import Example, Task
from promptlearn.utils.errors import ConfigError, DataError

META_SPLITS = ("meta_train", "meta_val", "meta_test")
_STREAMS = {name: i for i, name in enumerate(META_SPLITS)}  # independent random streams per meta-split


@dataclass(frozen=True)
class TaskSource:
    """A task of a pool: all its labels or only ``labels``, from its ``splits`` (default: all of them)."""

    task: Task
    labels: tuple[int, ...] | None = None
    splits: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.task.name if self.labels is None else f"{self.task.name}{list(self.labels)}"


@dataclass(frozen=True)
class Episode:
    """Support and query examples of one N-way task, labelled ``0..N-1`` in the order of ``label_words``."""

    index: int
    source: str
    task: Task
    classes: tuple[int, ...]  # the task's own label ids, in episode label order
    label_words: tuple[str, ...]
    support: tuple[Example, ...]
    query: tuple[Example, ...]


def class_words(task: Task, examples: Sequence[Example]) -> tuple[str, ...]:
    """A task's label set: its label words, or the one set of choices all its examples share
    (in the order the first example lists them; BIG-bench tasks may list them in any order)."""
    if task.label_words:
        return tuple(task.label_words)
    if not examples or not examples[0].choices or len({frozenset(e.choices) for e in examples}) != 1:
        raise DataError(
            f"task '{task.name}' has no label words and its examples do not share one set of choices; "
            "N-way episodes need a fixed label set"
        )
    return examples[0].choices


def class_of(example: Example, words: Sequence[str]) -> int:
    """An example's class in the task's label set, whatever order its own choices are in."""
    if example.label < 0:
        raise DataError("episodes need classification tasks, and an example has no label")
    return words.index(example.choices[example.label]) if example.choices else example.label


def check_disjoint(pools: Mapping[str, Sequence[TaskSource]]) -> None:
    """Meta-train, -validation and -test must not share a task, or share labels of a task split by label."""
    for (first, pool), (second, other) in itertools.combinations(pools.items(), 2):
        for a, b in itertools.product(pool, other):
            overlap = a.labels is None or b.labels is None or set(a.labels) & set(b.labels)
            if a.task.name == b.task.name and overlap:
                raise ConfigError(
                    f"{first} and {second} both use task '{a.task.name}' ({a.name} and {b.name}); the "
                    "meta-splits must be disjoint: use another task, or disjoint label subsets via 'labels'"
                )


SplitLoader = Callable[[Task], Mapping[str, Sequence[Example]]]


class EpisodeSampler:
    """Episodes of one meta-split. ``tasks_per_batch`` consecutive episodes come from distinct sources."""

    def __init__(
        self,
        sources: Sequence[TaskSource],
        n_way: int,
        k_shot: int,
        query_shots: int,
        tasks_per_batch: int,
        seed: int = 0,
        split: str = "meta_train",
        load: SplitLoader | None = None,
    ) -> None:
        if n_way < 2 or k_shot < 1 or query_shots < 1:
            raise ConfigError(
                f"episodes need n_way >= 2, k_shot >= 1 and query_shots >= 1; "
                f"got {n_way}, {k_shot}, {query_shots}"
            )
        if seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed}")
        if not sources:
            raise ConfigError(
                f"the {split} task pool is empty; list at least one task under meta_pool.{split}"
            )
        if tasks_per_batch > len(sources):
            raise ConfigError(
                f"the {split} pool has {len(sources)} task(s) but each meta-step takes {tasks_per_batch} "
                "distinct tasks; "
                "add tasks to the pool or lower episodes.tasks_per_step"
            )
        self.sources = list(sources)
        self.n_way, self.k_shot, self.query_shots = n_way, k_shot, query_shots
        self.tasks_per_batch = tasks_per_batch
        self.seed = seed
        self.stream = _STREAMS.get(split, len(_STREAMS))
        load = load or (lambda task: task.load_splits())
        self.words: list[tuple[str, ...]] = []
        self.by_class: list[dict[int, list[Example]]] = []
        self.eligible: list[list[int]] = []
        for source in self.sources:
            self._index(source, load(source.task))

    def _index(self, source: TaskSource, splits: Mapping[str, Sequence[Example]]) -> None:
        task = source.task
        chosen = source.splits or tuple(splits)
        if unknown := [s for s in chosen if s not in splits]:
            raise ConfigError(f"task '{task.name}' has no split(s) {unknown}; it has {sorted(splits)}")
        examples = [example for split in chosen for example in splits[split]]
        words = class_words(task, examples)
        labels = tuple(range(len(words))) if source.labels is None else tuple(source.labels)
        if bad := [label for label in labels if not 0 <= label < len(words)]:
            raise ConfigError(f"task '{task.name}' has labels 0..{len(words) - 1}; labels {bad} do not exist")
        by_class: dict[int, list[Example]] = {label: [] for label in labels}
        for example in examples:
            if example.label < 0:
                raise DataError(
                    f"task '{task.name}' has unlabelled examples; episodes need classification tasks"
                )
            if (cls := class_of(example, words)) in by_class:
                by_class[cls].append(example)
        need = self.k_shot + self.query_shots
        eligible = [label for label in labels if len(by_class[label]) >= need]
        if len(labels) < self.n_way:
            raise ConfigError(
                f"task '{source.name}' has {len(labels)} labels but episodes.n_way={self.n_way}; "
                "lower n_way or remove the task from the pool"
            )
        if len(eligible) < self.n_way:
            smallest = min(len(by_class[label]) for label in labels)
            raise ConfigError(
                f"task '{source.name}': only {len(eligible)} of its labels have the {need} examples an "
                f"episode takes from each (k_shot={self.k_shot} + query_shots={self.query_shots}; its "
                f"smallest class has {smallest}) but n_way={self.n_way}; lower episodes.k_shot or "
                "episodes.query_shots"
            )
        self.words.append(words)
        self.by_class.append(by_class)
        self.eligible.append(eligible)

    def _rng(self, kind: int, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.stream, kind, index)))

    def source_of(self, index: int) -> int:
        """Which source episode ``index`` uses: a fresh permutation of the pool for each batch of episodes."""
        batch, slot = divmod(index, self.tasks_per_batch)
        return int(self._rng(0, batch).permutation(len(self.sources))[slot])

    def episode(self, index: int) -> Episode:
        if index < 0:
            raise ValueError(f"episode index must be non-negative, got {index}")
        which = self.source_of(index)
        source, by_class = self.sources[which], self.by_class[which]
        rng = self._rng(1, index)
        classes = tuple(int(c) for c in rng.choice(self.eligible[which], size=self.n_way, replace=False))
        words = tuple(self.words[which][c] for c in classes)
        support: list[Example] = []
        query: list[Example] = []
        for new_label, cls in enumerate(classes):
            pool = by_class[cls]
            picks = rng.choice(len(pool), size=self.k_shot + self.query_shots, replace=False)
            relabelled = [
                dataclasses.replace(pool[i], target=words[new_label], choices=words, label=new_label)
                for i in picks
            ]
            support += relabelled[: self.k_shot]
            query += relabelled[self.k_shot :]
        support = [support[i] for i in rng.permutation(len(support))]
        query = [query[i] for i in rng.permutation(len(query))]
        return Episode(index, source.name, source.task, classes, words, tuple(support), tuple(query))


@dataclass
class EpisodeCollator:
    """Tokenizes an episode into rank-classification batches for its support and query sets."""

    encoder: TextToTextEncoder
    pad_id: int

    def __call__(self, episode: Episode) -> dict[str, Any]:
        collate = Collator(self.encoder.is_encoder_decoder, self.pad_id, "rank", train=False)

        def batch(examples: Sequence[Example]) -> dict[str, Any]:
            return collate([self.encoder.encode(episode.task, example) for example in examples])

        return {
            "index": episode.index,
            "source": episode.source,
            "label_words": episode.label_words,
            "support": batch(episode.support),
            "query": batch(episode.query),
        }
