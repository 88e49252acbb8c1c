"""Turn raw rows (from the hub, a local file or a BIG-bench task) into examples, with row-level errors.

A bad row (a missing field, a label outside the verbalizer, a wrong type) stops loading with one line
naming the source, the row and the field; with ``skip_bad_rows`` it is skipped instead and counted.
Either way the log says how many rows each split kept and skipped, so nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptlearn.data.tasks import Example
from promptlearn.utils.errors import DataError

log = logging.getLogger(__name__)


class BadRow(ValueError):
    """What is wrong with one row; ``field`` names the offending field, if one is to blame."""

    def __init__(self, field_name: str | None, problem: str) -> None:
        super().__init__(f"field '{field_name}' {problem}" if field_name else problem)
        self.field = field_name

    @property
    def reason(self) -> str:
        return f"bad field '{self.field}'" if self.field else "malformed rows"


def text(row: Mapping[str, Any], name: str) -> str:
    """A required, non-empty string field."""
    if name not in row or row[name] is None:
        raise BadRow(name, "is missing")
    value = row[name]
    if not isinstance(value, str):
        raise BadRow(name, f"should be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise BadRow(name, "is empty")
    return value


def integer(row: Mapping[str, Any], name: str) -> int:
    if name not in row or row[name] is None:
        raise BadRow(name, "is missing")
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRow(name, f"should be an integer, got {type(value).__name__} {value!r}")
    return value


def strings(row: Mapping[str, Any], name: str) -> list[str]:
    """A required, non-empty list of strings."""
    if name not in row or row[name] is None:
        raise BadRow(name, "is missing")
    value = row[name]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise BadRow(name, f"should be a list of strings, got {value!r}")
    if not value:
        raise BadRow(name, "is an empty list")
    return list(value)


def label_index(row: Mapping[str, Any], name: str, label_words: Sequence[str], values: Sequence[Any] = ()) -> int:
    """The verbalizer index of a row's label: the label itself (an integer id), or its position in ``values``."""
    if name not in row or row[name] is None:
        raise BadRow(name, "is missing")
    value = row[name]
    if values:
        matches = [i for i, v in enumerate(values) if v == value or str(v) == str(value)]
        if not matches:
            raise BadRow(name, f"is {value!r}, not one of the labels {list(values)}")
        return matches[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRow(name, f"should be an integer label id, got {value!r}; or list the raw labels in task.label_values")
    if not 0 <= value < len(label_words):
        hidden = " (-1 marks a hidden test label)" if value == -1 else ""
        raise BadRow(name, f"is {value}, outside the {len(label_words)} label words {list(label_words)}{hidden}")
    return value


@dataclass
class SplitReport:
    """How many rows of one split were kept and why the others were skipped."""

    source: str
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        reasons = ", ".join(f"{n} with {why}" for why, n in self.skipped.most_common())
        skipped = sum(self.skipped.values())
        return f"{self.source}: kept {self.kept} rows, skipped {skipped}" + (f" ({reasons})" if reasons else "")


def convert_rows(
    rows: Iterable[tuple[int, Mapping[str, Any] | BadRow]],
    convert: Callable[[Mapping[str, Any]], Example],
    source: str,
    skip_bad_rows: bool = False,
    unit: str = "row",
) -> tuple[list[Example], SplitReport]:
    """Apply ``convert`` to every numbered row; a reader passes a :class:`BadRow` for a row it could not parse."""
    report = SplitReport(source)
    examples = []
    for number, row in rows:
        try:
            if isinstance(row, BadRow):
                raise row
            examples.append(convert(row))
        except BadRow as err:
            if not skip_bad_rows:
                raise DataError(f"{source}, {unit} {number}: {err}; fix it or set task.skip_bad_rows=true") from None
            report.skipped[err.reason] += 1
    report.kept = len(examples)
    log.info(report.summary())
    return examples, report
