"""The eight SuperGLUE tasks as text-to-text, read from the hub (``aps/super_glue``) or local files in its schema.

Each class only turns one row of the hub schema into an :class:`Example`; templates and label words
come from ``conf/task/<task>.yaml``. ``label_words[i]`` verbalizes the hub's class id ``i``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptlearn.data.tasks.hub import HubTask
from promptlearn.data.tasks.rows import BadRow, integer, label_index, strings, text
from promptlearn.data.tasks import Example

HUB_ID = "aps/super_glue"
QUESTIONS_PER_PARAGRAPH = 1_000_000  # MultiRC groups: one id per (paragraph, question)


@dataclass
class SuperGlueTask(HubTask):
    """Fields named in ``input_fields`` are read from the row as strings; the label is the hub's class id."""

    path: str = HUB_ID

    def read_fields(self, row: Mapping[str, Any]) -> dict[str, str]:
        return {name: text(row, name) for name in self.input_fields}

    def classify(self, row: Mapping[str, Any], **extra: Any) -> Example:
        label = label_index(row, "label", self.label_words)
        words = tuple(self.label_words)
        return Example(self.read_fields(row), words[label], words, label, **extra)

    def to_example(self, row: Mapping[str, Any]) -> Example:
        return self.classify(row)


@dataclass
class BoolQ(SuperGlueTask):
    name: str = "boolq"
    template: str = "{passage}\nQuestion: {question}?\nAnswer:"
    label_words: tuple[str, ...] = (" no", " yes")
    config_name: str = "boolq"
    input_fields: tuple[str, ...] = ("passage", "question")


@dataclass
class CB(SuperGlueTask):
    """Three-way entailment; labels 0 entailment, 1 contradiction, 2 neutral. Official metrics: accuracy, macro F1."""

    name: str = "cb"
    template: str = "{premise}\nQuestion: {hypothesis} True, False, or Neither?\nAnswer:"
    label_words: tuple[str, ...] = (" True", " False", " Neither")
    config_name: str = "cb"
    input_fields: tuple[str, ...] = ("premise", "hypothesis")


@dataclass
class RTE(SuperGlueTask):
    """Labels 0 entailment, 1 not_entailment."""

    name: str = "rte"
    template: str = "{premise}\nQuestion: {hypothesis} True or False?\nAnswer:"
    label_words: tuple[str, ...] = (" True", " False")
    config_name: str = "rte"
    input_fields: tuple[str, ...] = ("premise", "hypothesis")


@dataclass
class WiC(SuperGlueTask):
    name: str = "wic"
    template: str = (
        "Sentence 1: {sentence1}\nSentence 2: {sentence2}\n"
        "Is the word \"{word}\" used in the same sense in both sentences?\nAnswer:"
    )
    label_words: tuple[str, ...] = (" no", " yes")
    config_name: str = "wic"
    input_fields: tuple[str, ...] = ("word", "sentence1", "sentence2")


@dataclass
class WSC(SuperGlueTask):
    """Does the pronoun (span 2) refer to the noun phrase (span 1)? ``wsc.fixed`` repairs spans that are not substrings."""

    name: str = "wsc"
    template: str = "{text}\nIn the passage above, does \"{span2_text}\" refer to \"{span1_text}\"?\nAnswer:"
    label_words: tuple[str, ...] = (" no", " yes")
    config_name: str = "wsc.fixed"
    input_fields: tuple[str, ...] = ("text", "span1_text", "span2_text")


@dataclass
class COPA(SuperGlueTask):
    """Two alternatives scored as continuations: the choices are the alternatives' texts, the label picks one."""

    name: str = "copa"
    template: str = "Premise: {premise}\nWhat was the {question}?\nAnswer:"
    config_name: str = "copa"
    input_fields: tuple[str, ...] = ("premise", "question")
    choice_prefix: str = " "
    has_per_example_choices = True

    def to_example(self, row: Mapping[str, Any]) -> Example:
        fields = self.read_fields(row)
        if fields["question"] not in ("cause", "effect"):
            raise BadRow("question", f"is {fields['question']!r}, expected 'cause' or 'effect'")
        choices = tuple(self.choice_prefix + _lower_first(text(row, name)) for name in ("choice1", "choice2"))
        label = label_index(row, "label", choices)
        return Example(fields, choices[label], choices, label)


@dataclass
class MultiRC(SuperGlueTask):
    """Is this candidate answer to a question about a paragraph correct? Scored per answer option (F1a) and
    per question (exact match over all of its options), so each example carries its question as ``group``."""

    name: str = "multirc"
    template: str = "{paragraph}\nQuestion: {question}\nIs the answer \"{answer}\" correct?\nAnswer:"
    label_words: tuple[str, ...] = (" no", " yes")
    config_name: str = "multirc"
    input_fields: tuple[str, ...] = ("paragraph", "question", "answer")
    metrics: tuple[str, ...] = ("f1a", "question_em")

    def to_example(self, row: Mapping[str, Any]) -> Example:
        idx = row.get("idx")
        if not isinstance(idx, Mapping):
            raise BadRow("idx", f"should be {{paragraph, question, answer}}, got {idx!r}")
        paragraph, question = integer(idx, "paragraph"), integer(idx, "question")
        if not 0 <= question < QUESTIONS_PER_PARAGRAPH or paragraph < 0:
            raise BadRow("idx", f"has paragraph {paragraph}, question {question}; "
                                f"expected non-negative ids, questions below {QUESTIONS_PER_PARAGRAPH}")
        return self.classify(row, group=paragraph * QUESTIONS_PER_PARAGRAPH + question)


@dataclass
class ReCoRD(SuperGlueTask):
    """Cloze-style reading comprehension: fill ``@placeholder`` in the query with an entity from the passage.

    ``eval_mode=rank`` scores every candidate entity as the target (candidate ranking);
    ``eval_mode=generate`` generates the answer (free-form). Either way F1 and exact match are the
    maximum over the gold answers, after SQuAD normalisation, as the official evaluation does.
    Training targets the first gold answer.
    """

    name: str = "record"
    template: str = "{passage}\nQuery: {query}\nWhat does @placeholder stand for?\nAnswer:"
    config_name: str = "record"
    input_fields: tuple[str, ...] = ("passage", "query")
    metrics: tuple[str, ...] = ("answer_f1", "answer_em")
    choice_prefix: str = " "
    has_per_example_choices = True

    def to_example(self, row: Mapping[str, Any]) -> Example:
        fields = {"passage": _highlights_as_sentences(text(row, "passage")), "query": text(row, "query")}
        answers = tuple(dict.fromkeys(strings(row, "answers")))
        entities = tuple(dict.fromkeys(strings(row, "entities")))
        missing = [a for a in answers if a not in entities]
        if missing:
            raise BadRow("answers", f"holds {missing}, which are not among the entities")
        choices = tuple(self.choice_prefix + e for e in entities)
        label = entities.index(answers[0])
        return Example(fields, choices[label], choices, label, answers=tuple(self.choice_prefix + a for a in answers))


def _lower_first(sentence: str) -> str:
    """'The sun rose.' -> 'the sun rose.', so an alternative reads as a continuation ("because the sun rose.")."""
    return sentence[:1].lower() + sentence[1:] if sentence[1:2].islower() else sentence


def _highlights_as_sentences(passage: str) -> str:
    """ReCoRD passages end in "@highlight" bullet lines; join them into sentences, as T5's preprocessing does."""
    passage = re.sub(r"([.?!\"'])\n@highlight\n", r"\1 ", passage)
    return re.sub(r"\n@highlight\n", ". ", passage)
