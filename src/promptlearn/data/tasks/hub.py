"""Tasks stored as `datasets` datasets: a hub id, or local files in the same schema, split as Lester et al. did.

The SuperGLUE and GLUE test splits hide their labels (every ``label`` is -1), so, as in Lester et al.
(2021), a held-out part of the official train split serves for validation and early stopping, and the
official validation split is reported as ``test``. The held-out part is a fixed shuffle
(``split_seed``) of train, by group where examples come in groups (MultiRC questions), of size
``min(heldout_max, round(heldout_fraction * train))`` (at least 1); ``heldout_fraction=0`` validates on the
official validation split instead (early stopping on dev, which flatters the test number).
"""

from __future__ import annotations

import random
from abc import abstractmethod
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlearn.data.tasks.rows import convert_rows
from promptlearn.data.tasks import Example, Task
from promptlearn.utils.errors import ConfigError, DataError
from promptlearn.utils.hub import cache_only_if_hub_unreachable, why_not_loaded

BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
SOURCE_SPLITS = ("train", "validation")  # the official test split has no labels


def load_rows(
    path: str, config_name: str | None, data_files: Mapping[str, str] | None, revision: str | None
) -> dict[str, tuple[str, Any]]:
    """``{split: (where it came from, rows)}`` for the train and validation splits.

    ``data_files`` maps split names to local files (jsonl, json, csv or parquet); otherwise ``path`` is a hub id
    (with ``config_name``) or a local folder holding ``train.*`` and ``validation.*`` files in the hub's schema.
    """
    import datasets  # slow to import; only tasks that need it pay

    if data_files:
        suffixes = {Path(f).suffix for f in data_files.values()}
        if len(suffixes) != 1 or next(iter(suffixes)) not in BUILDERS:
            raise ConfigError(f"data_files must share one format out of {sorted(BUILDERS)}; got {dict(data_files)}")
        for split, file in data_files.items():
            if not Path(file).is_file():
                raise DataError(f"data file for split '{split}' does not exist: {file}")
        builder, files, where = BUILDERS[suffixes.pop()], dict(data_files), dict(data_files)
        load = lambda: datasets.load_dataset(builder, data_files=files)  # noqa: E731
    else:
        local = Path(path).is_dir()
        where = {s: _split_file(Path(path), s) if local else f"{path}/{config_name} {s}" for s in SOURCE_SPLITS}
        load = lambda: datasets.load_dataset(path, None if local else config_name, revision=revision)  # noqa: E731
    try:
        with nullcontext(None) if data_files else cache_only_if_hub_unreachable(path) as offline:
            loaded = load()
    except (ConnectionError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as err:
        raise DataError(
            f"cannot load '{path}' ({config_name}): {why_not_loaded(offline, err)}; without hub access, point task.path "
            "at a local folder (train.jsonl, validation.jsonl in the hub schema) or set task.data_files"
        ) from None
    except (ValueError, datasets.exceptions.DatasetGenerationError) as err:
        cause = err.__cause__ or err
        empty = " (is a split file empty?)" if "corresponds to no data" in str(err) else ""
        raise DataError(f"cannot read {data_files or path}: {str(cause).splitlines()[0]}{empty}") from None
    missing = [split for split in SOURCE_SPLITS if split not in loaded]
    if missing:
        raise DataError(
            f"{path}: no {' or '.join(missing)} split (found {sorted(loaded)}); name the files train.* and validation.*"
        )
    return {split: (where[split], loaded[split]) for split in SOURCE_SPLITS}


def _split_file(folder: Path, split: str) -> str:
    matches = sorted(p for p in folder.iterdir() if p.name.startswith(split) and p.suffix in BUILDERS)
    return str(matches[0]) if len(matches) == 1 else f"{folder} {split}"


def heldout_split(
    examples: list[Example], fraction: float, maximum: int, seed: int, key: str = "task.heldout_fraction"
) -> tuple[list[Example], list[Example]]:
    """(train, held-out): whole groups (or single examples) drawn by a fixed shuffle; both keep file order.

    ``key`` names the setting that chose ``fraction``, for the error when nothing would be left to train on.
    """
    units = sorted({e.group if e.group >= 0 else -1 - i for i, e in enumerate(examples)})
    size = max(1, min(maximum, round(fraction * len(units))))
    if size >= len(units):
        raise DataError(
            f"holding out {size} of {len(units)} training units leaves no training data; lower {key} or add training examples"
        )
    held = set(random.Random(seed).sample(units, size))
    unit = [e.group if e.group >= 0 else -1 - i for i, e in enumerate(examples)]
    train = [e for e, u in zip(examples, unit) if u not in held]
    heldout = [e for e, u in zip(examples, unit) if u in held]
    return train, heldout


@dataclass
class HubTask(Task):
    """A task read with ``datasets``: subclasses turn one row of the hub schema into an :class:`Example`."""

    path: str = ""
    config_name: str | None = None
    data_files: dict[str, str] | None = None
    revision: str | None = None
    heldout_fraction: float = 0.1
    heldout_max: int = 1000
    split_seed: int = 0
    skip_bad_rows: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.heldout_fraction < 1:
            raise ConfigError(f"task '{self.name}': heldout_fraction must be in [0, 1), got {self.heldout_fraction}")

    @abstractmethod
    def to_example(self, row: Mapping[str, Any]) -> Example:
        """One row of the hub schema as an example; raise :class:`~promptlearn.data.tasks.rows.BadRow` if it is unusable."""

    def load_splits(self) -> dict[str, list[Example]]:
        loaded = load_rows(self.path, self.config_name, self.data_files, self.revision)
        converted = {}
        for split, (where, rows) in loaded.items():
            examples, _ = convert_rows(enumerate(rows, 1), self.to_example, f"{self.name}: {where}", self.skip_bad_rows)
            if not examples:
                raise DataError(f"{self.name}: {where} has no usable rows")
            converted[split] = examples
        if self.heldout_fraction == 0:
            return {"train": converted["train"], "validation": converted["validation"], "test": converted["validation"]}
        train, heldout = heldout_split(converted["train"], self.heldout_fraction, self.heldout_max, self.split_seed)
        return {"train": train, "validation": heldout, "test": converted["validation"]}
