"""In-context demonstrations: a task wrapper that prepends k solved training examples to the template.

The demonstrations are drawn once, deterministically from ``seed``, from the task's train split and
are the same for every evaluated example (a fixed k-shot prompt). For classification they are
balanced across labels by default (then shuffled): k random demonstrations that happen to share a
label bias the model towards it (Zhao et al. 2021). Each is the task's own template
filled with the demonstration's fields, followed by its target; they are joined by ``separator``
and put before the template. Their text is escaped, so braces in the data never become slots.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from promptlearn.data.tasks import Example, Task, TaskInfo
from promptlearn.utils.errors import ConfigError, DataError


def escape_braces(text: str) -> str:
    """``text`` as a literal inside a ``str.format`` template."""
    return text.replace("{", "{{").replace("}", "}}")


def demonstration(task: Task, example: Example) -> str:
    """One solved example: the filled template, then the target (after a space unless it starts with one)."""
    source = task.source_text(example, example.fields)
    joiner = "" if example.target[:1].isspace() or source[-1:].isspace() else " "
    return source + joiner + example.target


def draw_demonstrations(examples: Sequence[Example], k: int, seed: int, balanced: bool) -> list[Example]:
    """``k`` distinct examples; with ``balanced``, labels take turns (in a random order) until k are drawn."""
    rng = random.Random(seed)
    labels = sorted({e.label for e in examples})
    if not balanced or labels == [-1]:
        return rng.sample(list(examples), k)
    pools = {label: [e for e in examples if e.label == label] for label in labels}
    for pool in pools.values():
        rng.shuffle(pool)
    rng.shuffle(labels)
    drawn: list[Example] = []
    while len(drawn) < k:
        for label in labels:
            if pools[label] and len(drawn) < k:
                drawn.append(pools[label].pop())
    rng.shuffle(drawn)
    return drawn


class FewShotTask(Task):
    """``task`` with ``num_shots`` demonstrations from its train split in front of its template."""

    def __init__(
        self, task: Task, num_shots: int, seed: int = 0, balanced: bool = True, separator: str = "\n\n"
    ) -> None:
        if num_shots < 0:
            raise ConfigError(f"method.num_shots must be 0 (no demonstrations) or more, got {num_shots}")
        self.task = task
        self.num_shots = num_shots
        self.has_per_example_choices = task.has_per_example_choices
        self._splits = task.load_splits()
        train = self._splits.get("train", [])
        if len(train) < num_shots:
            raise DataError(
                f"task '{task.name}': {num_shots} demonstrations asked for but its train split has {len(train)} "
                "examples; lower method.num_shots"
            )
        self.demonstrations = draw_demonstrations(train, num_shots, seed, balanced)
        self.prefix = "".join(demonstration(task, example) + separator for example in self.demonstrations)
        super().__init__(
            name=task.name,
            template=escape_braces(self.prefix) + task.template,
            metrics=task.metrics,
            label_words=task.label_words,
            eval_mode=task.eval_mode,
            input_fields=task.input_fields,
        )

    def load_splits(self) -> dict[str, list[Example]]:
        return self._splits

    def info(self) -> TaskInfo:
        return self.task.info()

    def render(self, fields: Mapping[str, str]) -> str:
        return self.prefix + self.task.render(fields)

    def source_text(self, example: Example, fields: Mapping[str, str]) -> str:
        return self.prefix + self.task.source_text(example, fields)
