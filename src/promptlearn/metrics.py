"""Task metrics, keyed by the names task configs use, computed on what an evaluation batch predicts.

Every metric reads a :class:`Predictions`: the chosen choice's index (rank classification, or a
generation matched against the choices; -1 where it matched none, which counts as wrong), the
predicted text (the chosen choice, or the generation), the gold label, every gold answer, the group
(a MultiRC question) and the sub-task (inside a mixture) of each example.

| name | official for | what |
|---|---|---|
| ``accuracy`` | most tasks | share of examples whose chosen index is the label |
| ``f1`` | MRPC, QQP | F1 of the positive class (label 1) |
| ``f1a`` | MultiRC | F1 of the positive class over all answer options |
| ``f1_macro`` | CB | unweighted mean of the per-class F1 |
| ``question_em`` | MultiRC | share of questions whose answer options are all classified correctly |
| ``answer_f1``, ``answer_em`` | ReCoRD | SQuAD token F1 / exact match, maximum over the gold answers |
| ``exact_match`` | generation | generated text equals a gold text after lower-casing and whitespace folding |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import BinaryF1Score, MulticlassF1Score
from torchmetrics.text import SQuAD

from promptlearn.data.tasks import TaskInfo
from promptlearn.utils.errors import ConfigError, unknown_name


def normalize_answer(text: str) -> str:
    return " ".join(text.strip().lower().split())


@dataclass
class Predictions:
    """One evaluation batch: predictions and what the metrics compare them with."""

    index: torch.Tensor
    label: torch.Tensor
    texts: Sequence[str] = ()
    answers: Sequence[Sequence[str]] = ()
    group: torch.Tensor | None = None
    task: Sequence[str] = field(default_factory=tuple)

    def select(self, rows: torch.Tensor) -> Predictions:
        keep = rows.tolist()
        return Predictions(
            self.index[rows],
            self.label[rows],
            [self.texts[i] for i in keep] if self.texts else (),
            [self.answers[i] for i in keep] if self.answers else (),
            None if self.group is None else self.group[rows],
            [self.task[i] for i in keep] if self.task else (),
        )


def match_choice(text: str, choices: Sequence[str]) -> int:
    """The index of the choice a generated text spells out, or -1."""
    wanted = normalize_answer(text)
    return next((i for i, choice in enumerate(choices) if normalize_answer(choice) == wanted), -1)


def invalid_as_wrong(index: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Replace -1 (a generation that is no label word) by a class other than the gold one."""
    return torch.where(index < 0, (label + 1) % num_classes, index)


class ExactMatch(Metric):
    """Share of texts equal to one of their gold texts after lower-casing and whitespace normalisation."""

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], targets: Sequence[str | Sequence[str]]) -> None:
        for pred, gold in zip(preds, targets):
            golds = [gold] if isinstance(gold, str) else gold
            self.correct += any(normalize_answer(pred) == normalize_answer(g) for g in golds)
        self.total += len(targets)

    def compute(self) -> torch.Tensor:
        return self.correct / self.total.clamp(min=1)


class GroupExactMatch(Metric):
    """Share of groups (MultiRC questions) in which every member is classified correctly."""

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("groups", default=[], dist_reduce_fx="cat")
        self.add_state("correct", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor, groups: torch.Tensor) -> None:
        self.groups.append(groups.long())
        self.correct.append((preds == target).long())

    def compute(self) -> torch.Tensor:
        groups, correct = torch.cat(self.groups), torch.cat(self.correct)
        ids, member = torch.unique(groups, return_inverse=True)
        wrong = torch.zeros(len(ids), device=correct.device, dtype=torch.long).index_add(0, member, 1 - correct)
        return (wrong == 0).float().mean()


class ChoiceAccuracy(MeanMetric):
    """Accuracy for any number of choices per example (COPA, ReCoRD, BIG-bench), invalid predictions included."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        super().update((preds == target).float())


class AnswerScore(SQuAD):
    """ReCoRD's F1 or exact match: SQuAD normalisation, maximum over the gold answers, as a fraction."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def update(self, preds: Sequence[str], targets: Sequence[Sequence[str]]) -> None:  # type: ignore[override]
        ids = [str(i) for i in range(len(preds))]
        super().update(
            [{"prediction_text": p, "id": i} for p, i in zip(preds, ids)],
            [{"answers": {"text": list(golds), "answer_start": [0] * len(golds)}, "id": i} for golds, i in zip(targets, ids)],
        )

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        return super().compute()[self.key] / 100


@dataclass(frozen=True)
class MetricSpec:
    """How to build a metric (from the number of label words) and which predictions it reads."""

    build: Callable[[int], Metric]
    reads: str  # "index", "group" or "text"
    needs_classes: bool = False


def _binary_f1(n: int) -> Metric:
    return BinaryF1Score()


METRICS: dict[str, MetricSpec] = {
    "accuracy": MetricSpec(lambda n: ChoiceAccuracy(), "index"),
    "f1": MetricSpec(_binary_f1, "index", needs_classes=True),
    "f1a": MetricSpec(_binary_f1, "index", needs_classes=True),
    "f1_macro": MetricSpec(lambda n: MulticlassF1Score(num_classes=n, average="macro"), "index", needs_classes=True),
    "question_em": MetricSpec(lambda n: GroupExactMatch(), "group"),
    "answer_f1": MetricSpec(lambda n: AnswerScore("f1"), "text"),
    "answer_em": MetricSpec(lambda n: AnswerScore("exact_match"), "text"),
    "exact_match": MetricSpec(lambda n: ExactMatch(), "text"),
}


class TaskMetrics(nn.Module):
    """A task's metrics, or, for a mixture, each sub-task's, with the headline ``score``.

    ``compute`` returns ``{metric: value, "score": mean}`` for one task and
    ``{"<task>/<metric>": value, "<task>/score": mean, "score": mean of the task scores}`` for a mixture.
    """

    def __init__(self, info: TaskInfo) -> None:
        super().__init__()
        self.is_mixture = bool(info.parts)
        self.infos = list(info.parts or (info,))
        # Module names may not hold dots, task names may: the modules are numbered, in the order of infos.
        self.parts = nn.ModuleList([_build_part(part) for part in self.infos])

    def update(self, predictions: Predictions) -> None:
        for info, metrics in zip(self.infos, self.parts):
            name = info.name
            if self.is_mixture:
                rows = torch.tensor([i for i, task in enumerate(predictions.task) if task == name], dtype=torch.long)
                if not len(rows):
                    continue
                part = predictions.select(rows.to(predictions.index.device))
            else:
                part = predictions
            for metric_name, metric in metrics.items():
                _update(metric, METRICS[metric_name], part, info.num_choices)

    def compute(self) -> dict[str, float]:
        values: dict[str, float] = {}
        scores = []
        for info, metrics in zip(self.infos, self.parts):
            name = info.name
            if self.is_mixture and not any(m.update_count for m in metrics.values()):
                continue  # a sub-task this evaluation did not reach
            part = {metric_name: float(metric.compute()) for metric_name, metric in metrics.items()}
            part["score"] = headline_score(part, list(metrics))
            scores.append(part["score"])
            values.update({f"{name}/{k}" if self.is_mixture else k: v for k, v in part.items()})
        if self.is_mixture:
            values["score"] = sum(scores) / len(scores) if scores else 0.0
        return values

    def reset(self) -> None:
        for metrics in self.parts:
            for metric in metrics.values():
                metric.reset()


def _build_part(info: TaskInfo) -> nn.ModuleDict:
    metrics = {}
    for name in info.metrics:
        if name not in METRICS:
            raise unknown_name(f"metric of task '{info.name}'", name, METRICS)
        spec = METRICS[name]
        if spec.needs_classes and info.num_choices < 2:
            raise ConfigError(f"metric '{name}' of task '{info.name}' needs label_words (a fixed set of classes)")
        metrics[name] = spec.build(info.num_choices)
    return nn.ModuleDict(metrics)


def _update(metric: Metric, spec: MetricSpec, p: Predictions, num_classes: int) -> None:
    if spec.reads == "text":
        metric.update(list(p.texts), [list(a) for a in p.answers])
    elif spec.reads == "group":
        if p.group is None or bool((p.group < 0).any()):
            raise ConfigError("question_em needs every example's group (MultiRC question); this task has none")
        metric.update(p.index, p.label, p.group)
    elif spec.needs_classes:
        metric.update(invalid_as_wrong(p.index, p.label, num_classes), p.label)
    else:
        metric.update(p.index, p.label)


def build_metrics(info: TaskInfo) -> TaskMetrics:
    return TaskMetrics(info)


def headline_score(values: dict[str, float], names: Sequence[str]) -> float:
    """A task's headline number: the mean of its metrics (the SuperGLUE convention)."""
    return float(sum(values[name] for name in names) / len(names))
