"""GLUE's SST-2, MRPC and QQP as text-to-text, read from the hub (``nyu-mll/glue``) or local files in its schema.

MRPC and QQP are both paraphrase detection; with the same label words and parallel templates a prompt
trained on one can be evaluated on the other (the domain-transfer experiment of Lester et al. 2021,
Table 2): ``promptlearn-eval task=mrpc prompt=<a QQP run>/prompt.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptlearn.data.tasks.superglue import SuperGlueTask

HUB_ID = "nyu-mll/glue"


@dataclass
class GlueTask(SuperGlueTask):
    """Same row layout as SuperGLUE: string fields and an integer class id in ``label``."""

    path: str = HUB_ID


@dataclass
class SST2(GlueTask):
    """Labels 0 negative, 1 positive."""

    name: str = "sst2"
    template: str = "Review: {sentence}\nSentiment:"
    label_words: tuple[str, ...] = (" negative", " positive")
    config_name: str = "sst2"
    input_fields: tuple[str, ...] = ("sentence",)


@dataclass
class MRPC(GlueTask):
    """Labels 0 not_equivalent, 1 equivalent. Official metrics: accuracy and F1 of the positive class."""

    name: str = "mrpc"
    template: str = "Text 1: {sentence1}\nText 2: {sentence2}\nDo they mean the same thing?\nAnswer:"
    label_words: tuple[str, ...] = (" no", " yes")
    config_name: str = "mrpc"
    input_fields: tuple[str, ...] = ("sentence1", "sentence2")
    metrics: tuple[str, ...] = ("accuracy", "f1")


@dataclass
class QQP(GlueTask):
    """Labels 0 not_duplicate, 1 duplicate. Official metrics: accuracy and F1 of the positive class."""

    name: str = "qqp"
    template: str = "Text 1: {question1}\nText 2: {question2}\nDo they mean the same thing?\nAnswer:"
    label_words: tuple[str, ...] = (" no", " yes")
    config_name: str = "qqp"
    input_fields: tuple[str, ...] = ("question1", "question2")
    metrics: tuple[str, ...] = ("accuracy", "f1")
