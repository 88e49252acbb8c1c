"""Several tasks as one: a single training stream mixed examples-proportionally with a cap (T5, Raffel et al.
2020, section 3.5.2), and evaluation that reports every sub-task's metrics plus their average.

Each epoch draws ``min(n_i, cap)`` training examples from sub-task ``i`` (all of them when it has fewer,
a fresh random subset when it has more), shuffled together; so sub-task ``i`` is sampled at rate
``min(n_i, cap) / sum_j min(n_j, cap)``. Validation and test keep every sub-task's examples; metrics
are logged as ``val/<task>/<metric>`` and ``val/<task>/score``, and ``val/score`` is the mean of the
sub-task scores (the SuperGLUE average, where a task with two metrics counts as their mean).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Sampler

from promptlearn.data.tasks import Example, Task, TaskInfo
from promptlearn.utils.errors import ConfigError, DataError


@dataclass
class Mixture(Task):
    """``tasks`` maps names to tasks; ``data_dir`` (optional) holds one folder per sub-task in the hub schema."""

    name: str = "mixture"
    template: str = ""
    metrics: Sequence[str] = ("score",)
    input_fields: Sequence[str] = ()
    tasks: Mapping[str, Task] = field(default_factory=dict)
    cap: int | None = None
    data_dir: str | None = None
    has_per_example_choices = True

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError(f"task '{self.name}': a mixture needs at least one task under task.tasks")
        modes = {task.eval_mode for task in self.tasks.values()}
        if len(modes) != 1:
            raise ConfigError(f"task '{self.name}': sub-tasks mix eval modes {sorted(modes)}; set one eval_mode for all")
        self.eval_mode = modes.pop()
        if self.cap is not None and self.cap < 1:
            raise ConfigError(f"task '{self.name}': cap must be a positive number of examples or null, got {self.cap}")
        if self.data_dir is not None:
            self.tasks = {key: self._from_folder(key, task) for key, task in self.tasks.items()}
        self._by_name = {task.name: task for task in self.tasks.values()}
        if len(self._by_name) != len(self.tasks):
            raise ConfigError(f"task '{self.name}': sub-task names repeat: {[t.name for t in self.tasks.values()]}")

    def _from_folder(self, key: str, task: Task) -> Task:
        if not hasattr(task, "path"):
            raise ConfigError(f"task '{self.name}': data_dir applies to hub tasks; '{key}' is a {type(task).__name__}")
        return dataclasses.replace(task, path=str(Path(self.data_dir) / key), data_files=None)

    def load_splits(self) -> dict[str, list[Example]]:
        splits: dict[str, list[Example]] = {}
        for task in self.tasks.values():
            for split, examples in task.load_splits().items():
                splits.setdefault(split, []).extend(dataclasses.replace(e, task=task.name) for e in examples)
        return splits

    def source_text(self, example: Example, fields: Mapping[str, str]) -> str:
        return self._by_name[example.task].source_text(example, fields)

    def info(self) -> TaskInfo:
        parts = tuple(task.info() for task in self.tasks.values())
        words = tuple(dict.fromkeys(w for part in parts for w in part.label_words))
        return TaskInfo(self.name, tuple(self.metrics), self.eval_mode, words, len(words), parts)


class ProportionalSampler(Sampler[int]):
    """Examples-proportional mixing with a cap over a dataset whose items name their sub-task.

    Deterministic given ``seed`` and the epoch (Lightning calls :meth:`set_epoch`).
    """

    def __init__(self, tasks: Sequence[str], cap: int | None, seed: int = 0) -> None:
        self.indices: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            self.indices.setdefault(task, []).append(i)
        self.cap = cap
        self.seed = seed
        self.epoch = 0

    def quota(self) -> dict[str, int]:
        return {task: len(rows) if self.cap is None else min(len(rows), self.cap) for task, rows in self.indices.items()}

    def rates(self) -> dict[str, float]:
        quota = self.quota()
        total = sum(quota.values())
        return {task: n / total for task, n in quota.items()}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.quota().values())

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        drawn = []
        for task, n in self.quota().items():
            rows = self.indices[task]
            drawn += rows if n == len(rows) else rng.sample(rows, n)
        rng.shuffle(drawn)
        if not drawn:
            raise DataError("the mixture has no training examples")
        return iter(drawn)
