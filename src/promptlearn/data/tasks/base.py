"""The task contract: text-to-text examples with a template, a verbalizer and official metrics.

A task never knows which method trains on it or which backbone reads it; it yields plain strings.
"""

from __future__ import annotations

import string
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from promptlearn.utils.errors import ConfigError

EvalMode = Literal["rank", "generate"]
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    """One example: the fields the template reads, the gold target, and (for classification) its choices.

    ``answers`` holds every acceptable target where there are several (ReCoRD); empty means just
    ``target``. ``group`` ties examples that are scored together (a MultiRC question's answer
    options); ``task`` names the sub-task an example comes from inside a mixture.
    """

    fields: Mapping[str, str]
    target: str
    choices: tuple[str, ...] = ()
    label: int = -1
    answers: tuple[str, ...] = ()
    group: int = -1
    task: str = ""

    @property
    def gold_texts(self) -> tuple[str, ...]:
        return self.answers or (self.target,)


@dataclass(frozen=True)
class TaskInfo:
    """What a method needs to know about a task: its name, label words, metrics and evaluation mode.

    A mixture lists its sub-tasks in ``parts``; its ``label_words`` are theirs, without repeats.
    """

    name: str
    metrics: tuple[str, ...]
    eval_mode: EvalMode
    label_words: tuple[str, ...] = ()
    num_choices: int = 0
    parts: tuple[TaskInfo, ...] = ()


def template_fields(template: str) -> set[str]:
    """The placeholder names of a ``str.format`` template."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def check_label_words(task: str, words: Sequence[str]) -> None:
    """Label words are a list of distinct non-empty strings: ``task.label_words=' yes'`` (one string) is refused,
    as it would otherwise become three one-letter label words."""
    if isinstance(words, str):
        raise ConfigError(f"task '{task}': label_words must be a list, got the string {words!r}; "
                          f"write task.label_words=[' no',' yes']")
    if any(not isinstance(word, str) or not word for word in words):
        raise ConfigError(f"task '{task}': every label word must be a non-empty string, got {list(words)!r}")
    repeated = sorted({word for word in words if list(words).count(word) > 1})
    if repeated:
        raise ConfigError(f"task '{task}': label words must be distinct, but {repeated} appear more than once; "
                          "give each class its own word")


@dataclass
class Task(ABC):
    """A text-to-text task. Subclasses only say where the examples come from."""

    name: str
    template: str
    metrics: Sequence[str] = ("accuracy",)
    label_words: Sequence[str] = ()
    eval_mode: EvalMode = "rank"
    input_fields: Sequence[str] = field(default_factory=lambda: ("text",))

    def __post_init__(self) -> None:
        missing = set(self.input_fields) - template_fields(self.template)
        if missing:
            slots = " ".join("{" + f + "}" for f in sorted(missing))
            raise ConfigError(f"task '{self.name}': template {self.template!r} has no slot for {slots}; add it")
        if self.eval_mode not in ("rank", "generate"):
            raise ConfigError(f"task '{self.name}': eval_mode must be 'rank' or 'generate', got {self.eval_mode!r}")
        if self.eval_mode == "rank" and not self.label_words and not self.has_per_example_choices:
            raise ConfigError(f"task '{self.name}': rank classification needs label_words")
        check_label_words(self.name, self.label_words)

    has_per_example_choices = False

    @abstractmethod
    def load_splits(self) -> dict[str, list[Example]]:
        """Every split the task has, deterministic across calls."""

    def info(self) -> TaskInfo:
        return TaskInfo(
            name=self.name,
            metrics=tuple(self.metrics),
            eval_mode=self.eval_mode,
            label_words=tuple(self.label_words),
            num_choices=len(self.label_words),
        )

    def render(self, fields: Mapping[str, str]) -> str:
        return self.template.format(**fields)

    def source_text(self, example: Example, fields: Mapping[str, str]) -> str:
        """The model input for ``example`` with (possibly truncated) ``fields``; mixtures pick the sub-task's template."""
        return self.render(fields)
