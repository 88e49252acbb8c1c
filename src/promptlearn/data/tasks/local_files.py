"""Your own data: one jsonl or csv file per split, with the field names, template and label words you choose.

Rows are numbered by their line in the file (a csv header is line 1). A malformed line, a missing or
empty field, or a label outside the verbalizer stops loading with one line naming the file, the line
and the field; ``skip_bad_rows=true`` skips such rows instead, and the log says how many each split
kept and skipped. Without a validation file, a fixed share of train (``validation_fraction``) is held out.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlearn.data.tasks.hub import heldout_split
from promptlearn.data.tasks.rows import BadRow, convert_rows, label_index, strings, text
from promptlearn.data.tasks import Example, Task
from promptlearn.utils.errors import ConfigError, DataError

FORMATS = (".jsonl", ".csv")


def read_jsonl(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | BadRow]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                yield number, BadRow(None, f"is not valid JSON ({err})")
                continue
            yield number, row if isinstance(row, dict) else BadRow(None, f"should be a JSON object, got {line.strip()[:60]}")


def read_csv(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | BadRow]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        width = len(reader.fieldnames or ())
        for row in reader:
            if None in row or None in row.values():  # csv's markers for extra and missing cells
                found = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or ())
                yield reader.line_num, BadRow(None, f"has {found} fields, the header has {width}")
            else:
                yield reader.line_num, row


@dataclass
class LocalTask(Task):
    """Classification (``label_field`` + ``label_words``), multiple choice (``choices_field``) or free-form
    generation (``target_field``) from local files."""

    name: str = "local"
    template: str = "{text}\nAnswer:"
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    label_field: str | None = "label"
    label_values: Sequence[Any] = ()
    choices_field: str | None = None
    target_field: str | None = None
    validation_fraction: float = 0.1
    split_seed: int = 0
    skip_bad_rows: bool = False

    def __post_init__(self) -> None:
        self.has_per_example_choices = self.choices_field is not None
        super().__post_init__()
        if not self.train:
            raise ConfigError(f"task '{self.name}': set task.train to a .jsonl or .csv file")
        for split, file in self.files().items():
            if Path(file).suffix not in FORMATS:
                raise ConfigError(f"task '{self.name}': {split} file {file} must end in {' or '.join(FORMATS)}")
        if self.target_field is None and self.label_field is None:
            raise ConfigError(f"task '{self.name}': set task.label_field (classification) or task.target_field (free-form)")
        if self.label_values and len(self.label_values) != len(self.label_words):
            raise ConfigError(
                f"task '{self.name}': {len(self.label_values)} label_values for {len(self.label_words)} label_words; "
                "list one raw label per label word, in the same order"
            )

    def files(self) -> dict[str, str]:
        return {split: f for split, f in (("train", self.train), ("validation", self.validation), ("test", self.test)) if f}

    def to_example(self, row: Mapping[str, Any]) -> Example:
        fields = {name: text(row, name) for name in self.input_fields}
        if self.target_field is not None:
            target = text(row, self.target_field)
            return Example(fields, target)
        if self.choices_field is not None:
            choices = tuple(strings(row, self.choices_field))
            label = label_index(row, self.label_field or "label", choices)
            return Example(fields, choices[label], choices, label)
        name = self.label_field or "label"
        label = label_index(_numeric(row, name, self.label_values), name, self.label_words, self.label_values)
        words = tuple(self.label_words)
        return Example(fields, words[label], words, label)

    def load_splits(self) -> dict[str, list[Example]]:
        splits = {}
        for split, file in self.files().items():
            path = Path(file)
            if not path.is_file():
                raise DataError(f"task '{self.name}': {split} file {path} does not exist")
            rows = read_jsonl(path) if path.suffix == ".jsonl" else read_csv(path)
            try:
                examples, _ = convert_rows(rows, self.to_example, str(path), self.skip_bad_rows, unit="line")
            except UnicodeDecodeError as err:
                raise DataError(f"task '{self.name}': {path} is not UTF-8 (byte {err.object[err.start]:#x} at offset "
                                f"{err.start}); re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8") from None
            if not examples:
                raise DataError(f"task '{self.name}': {split} file {path} has no usable rows")
            splits[split] = examples
        if "validation" not in splits and self.validation_fraction > 0:
            train, fraction = splits["train"], self.validation_fraction
            splits["train"], splits["validation"] = heldout_split(
                train, fraction, len(train), self.split_seed, key="task.validation_fraction"
            )
        return splits


def _numeric(row: Mapping[str, Any], name: str, values: Sequence[Any]) -> Mapping[str, Any]:
    """csv holds every label as text: read "1" as the class id 1 unless raw label values are listed."""
    value = row.get(name)
    if not values and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return {**row, name: int(value)}
    return row
