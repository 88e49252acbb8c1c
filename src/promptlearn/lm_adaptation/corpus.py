"""Text corpora for LM adaptation, and their packing into fixed-length token spans.

A corpus yields documents (plain strings) for training and for held-out evaluation. C4 is streamed
from the hub with ``datasets`` (nothing is downloaded up front); local text files are read from disk,
one document per paragraph (blank-line separated), the last ``holdout`` share held out.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from promptlearn.utils.errors import ConfigError, DataError, MissingPackageError
from promptlearn.utils.hub import cache_only_if_hub_unreachable


@dataclass
class C4Corpus:
    """C4 (or any hub text dataset with a ``text`` column), streamed split by split."""

    path: str = "allenai/c4"
    name: str | None = "en"
    train_split: str = "train"
    val_split: str = "validation"
    text_column: str = "text"

    def _stream(self, split: str) -> Iterator[str]:
        try:
            import datasets
        except ImportError:
            raise MissingPackageError("streaming C4 needs the package 'datasets': pip install datasets") from None
        offline = None
        try:
            with cache_only_if_hub_unreachable() as offline:
                stream = datasets.load_dataset(self.path, self.name, split=split, streaming=True)
            for row in stream:
                yield row[self.text_column]
        except (OSError, ConnectionError, ValueError) as err:
            cause = offline or str(err).splitlines()[0]
            raise DataError(
                f"could not stream '{self.path}' ({self.name}, {split}): {cause}; "
                "check hub access, or train on local files with corpus=local_text corpus.paths=[...]"
            ) from err

    def train_texts(self) -> Iterator[str]:
        return self._stream(self.train_split)

    def val_texts(self) -> Iterator[str]:
        return self._stream(self.val_split)


@dataclass
class LocalTextCorpus:
    """Plain-text files (paths or glob patterns); each blank-line separated paragraph is a document."""

    paths: list[str]
    holdout: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.holdout < 1:
            raise ConfigError(f"corpus.holdout must be between 0 and 1, got {self.holdout}")
        files = sorted({f for pattern in self.paths for f in glob.glob(str(Path(pattern).expanduser()))})
        if not files:
            raise DataError(f"no text files match corpus.paths={list(self.paths)}; point it at .txt files")
        documents = [p.strip() for f in files for p in Path(f).read_text(encoding="utf-8").split("\n\n") if p.strip()]
        if len(documents) < 2:
            raise DataError(f"{files} hold {len(documents)} paragraph(s); need at least 2 to hold one out")
        cut = min(len(documents) - 1, max(1, round(len(documents) * (1 - self.holdout))))
        self.documents = {"train": documents[:cut], "val": documents[cut:]}

    def train_texts(self) -> Iterator[str]:
        return iter(self.documents["train"])

    def val_texts(self) -> Iterator[str]:
        return iter(self.documents["val"])


def token_spans(
    texts: Iterable[str], tokenizer: PreTrainedTokenizerBase, span_length: int, separator_id: int | None = None
) -> Iterator[list[int]]:
    """Pack documents end to end (``separator_id`` between them) and cut the stream into spans of ``span_length``.

    The tail shorter than a span is dropped, as T5's packing does.
    """
    if span_length < 2:
        raise ConfigError(f"span length must be at least 2 tokens to split into prefix and continuation, got {span_length}")
    buffer: list[int] = []
    for text in texts:
        buffer += tokenizer(text, add_special_tokens=False)["input_ids"]
        if separator_id is not None:
            buffer.append(separator_id)
        while len(buffer) >= span_length:
            yield buffer[:span_length]
            buffer = buffer[span_length:]
