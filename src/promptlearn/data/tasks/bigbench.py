"""BIG-bench JSON tasks, read offline from the ``bigbench==1.0.0`` source tarball on PyPI.

The tarball (358 MB, 1,041 ``task.json`` files) is downloaded once from PyPI into
``$PROMPTLEARN_CACHE/bigbench/`` (or given as ``tarball``), and each task's ``task.json`` is read out
of it with :mod:`tarfile` and cached on its own; the package is never installed or imported.
(``pip download --no-deps bigbench==1.0.0`` stops on the package's direct-URL dependency under
current pip, so the sdist is fetched from PyPI's simple index and its SHA-256 checked.)

Multiple-choice examples (``target_scores``) become rank-classification examples whose choices are
the keys and whose label is the highest-scoring key; free-form examples (``target``) need
``eval_mode=generate``. BIG-bench has no splits: a fixed shuffle (``split_seed``) cuts test,
validation and train. ``python -m promptlearn.data.tasks.bigbench`` lists the tasks that suit prompt tuning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from promptlearn.utils.paths import default_cache_dir
from promptlearn.data.tasks.rows import BadRow, convert_rows, text
from promptlearn.data.tasks import Example, Task, TaskInfo
from promptlearn.utils.errors import ConfigError, DataError, MissingPackageError, unknown_name

log = logging.getLogger(__name__)

VERSION = "1.0.0"
TARBALL = f"bigbench-{VERSION}.tar.gz"
TARBALL_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
INDEX_URL = "https://pypi.org/simple/bigbench/"
MEMBER_PREFIX = f"bigbench-{VERSION}/bigbench/benchmark_tasks/"
GET_IT = (
    f"download {TARBALL} from https://pypi.org/project/bigbench/{VERSION}/#files into {{cache}} "
    "or set task.tarball=/path/to/it"
)
NOT_LISTED = f"PyPI's index no longer lists {TARBALL}"
NOT_ENGLISH = {"non-English", "multilingual", "translation", "low-resource language", "non-language"}


def bigbench_cache(cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()).expanduser() / "bigbench"


def download_tarball(target: Path) -> Path:
    """Fetch the sdist from PyPI's simple index (PEP 691), check its SHA-256, and move it into place."""
    try:
        request = urllib.request.Request(INDEX_URL, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            files = json.load(response)["files"]
        url = next((f["url"] for f in files if f["filename"] == TARBALL), None)
        if url is None:
            listed = ", ".join(f["filename"] for f in files) or "nothing"
            raise MissingPackageError(
                f"{NOT_LISTED} (it lists {listed}); copy {TARBALL} (SHA-256 {TARBALL_SHA256[:12]}...) from a machine "
                f"that has it into {target.parent}, or set task.tarball=/path/to/it"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=60) as response, tempfile.NamedTemporaryFile(
            dir=target.parent, suffix=".part", delete=False
        ) as part:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                part.write(chunk)
    except (OSError, KeyError, ValueError) as err:
        raise MissingPackageError(f"cannot download {TARBALL} ({err}); {GET_IT.format(cache=target.parent)}") from None
    if digest.hexdigest() != TARBALL_SHA256:
        Path(part.name).unlink()
        raise MissingPackageError(f"{TARBALL} from PyPI has an unexpected SHA-256; {GET_IT.format(cache=target.parent)}")
    Path(part.name).replace(target)
    return target


def _task_members(tar: Path) -> Iterator[tuple[str, tarfile.TarFile, tarfile.TarInfo]]:
    """(task name, archive, member) for every ``task.json``, streaming through the gzip once."""
    try:
        with tarfile.open(tar, "r|gz") as archive:
            for member in archive:
                if member.isfile() and member.name.startswith(MEMBER_PREFIX) and member.name.endswith("/task.json"):
                    yield member.name[len(MEMBER_PREFIX) : -len("/task.json")], archive, member
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{tar} is not a readable BIG-bench tarball ({err}); delete it to download it again") from None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as part:
        part.write(data)
    Path(part.name).replace(path)


def task_names(tarball: str | Path | None = None, cache_dir: str | Path | None = None, download: bool = True) -> list[str]:
    """Every JSON task in the tarball (``name`` or ``name/subtask``), listed once and cached."""
    index = bigbench_cache(cache_dir) / "tasks.json"
    if not index.is_file():
        names = [name for name, _, _ in _task_members(_tarball(tarball, cache_dir, download))]
        _write_atomic(index, json.dumps(sorted(names)).encode())
    return json.loads(index.read_text())


def _tarball(tarball: str | Path | None, cache_dir: str | Path | None, download: bool) -> Path:
    if tarball is not None:
        if not Path(tarball).is_file():
            raise MissingPackageError(f"BIG-bench tarball {tarball} does not exist; {GET_IT.format(cache=Path(tarball).parent)}")
        return Path(tarball)
    cached = bigbench_cache(cache_dir) / TARBALL
    if cached.is_file():
        return cached
    if not download:
        raise MissingPackageError(f"BIG-bench is not downloaded; {GET_IT.format(cache=cached.parent)}, or set task.download=true")
    log.info("downloading %s (358 MB) into %s", TARBALL, cached.parent)
    return download_tarball(cached)


def read_task_json(
    task_name: str, tarball: str | Path | None = None, cache_dir: str | Path | None = None, download: bool = True
) -> dict[str, Any]:
    """A BIG-bench ``task.json`` as a dict; read out of the tarball on first use, then from the cache."""
    cached = bigbench_cache(cache_dir) / "tasks" / task_name / "task.json"
    if not cached.is_file():
        names = []
        for name, archive, member in _task_members(_tarball(tarball, cache_dir, download)):
            names.append(name)
            if name == task_name:
                _write_atomic(cached, archive.extractfile(member).read())  # type: ignore[union-attr]
                break
        else:
            _write_atomic(bigbench_cache(cache_dir) / "tasks.json", json.dumps(sorted(names)).encode())
            raise unknown_name("BIG-bench JSON task (programmatic tasks are not supported)", task_name, names)
    try:
        return json.loads(cached.read_text(encoding="utf-8"))
    except ValueError as err:
        raise DataError(f"{cached} is not valid JSON ({err}); delete it to read it again") from None


@dataclass
class BigBenchTask(Task):
    """One BIG-bench JSON task. Stable constructor: ``BigBenchTask(name=..., task_name=...)``, the rest optional.

    ``task_name`` is the folder under ``bigbench/benchmark_tasks``: ``"strategyqa"``, or
    ``"abstract_narrative_understanding/4_distractors"`` for a subtask. ``task_json`` reads a
    ``task.json`` file directly instead (no tarball needed).
    """

    name: str = ""
    template: str = "Q: {input}{choices}\nA:"
    input_fields: tuple[str, ...] = ("input", "choices")
    metrics: tuple[str, ...] = ("accuracy",)
    task_name: str = ""
    task_json: str | None = None
    tarball: str | None = None
    cache_dir: str | None = None
    download: bool = True
    choice_prefix: str | None = None  # how choices are listed in the input; null: the task's own (default "\n  choice: ")
    answer_prefix: str = " "  # put before each choice as a target
    validation_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    max_examples: int | None = None
    skip_bad_rows: bool = False
    has_per_example_choices = True

    def __post_init__(self) -> None:
        if not self.task_name and not self.task_json:
            raise ConfigError("a BIG-bench task needs task.task_name (a folder in bigbench/benchmark_tasks) or task.task_json")
        self.name = self.name or (self.task_name or Path(self.task_json or "").parent.name).replace("/", "_")
        super().__post_init__()
        fractions = (self.validation_fraction, self.test_fraction)
        if min(fractions) < 0 or sum(fractions) >= 1:
            raise ConfigError(f"task '{self.name}': validation_fraction + test_fraction must be below 1")

    def _read(self) -> tuple[dict[str, Any], str]:
        if self.task_json:
            path = Path(self.task_json)
            if not path.is_file():
                raise DataError(f"task '{self.name}': {path} does not exist")
            try:
                return json.loads(path.read_text(encoding="utf-8")), str(path)
            except ValueError as err:
                raise DataError(f"{path} is not valid JSON ({err})") from None
        data = read_task_json(self.task_name, self.tarball, self.cache_dir, self.download)
        return data, f"BIG-bench {self.task_name}/task.json"

    def load_examples(self) -> list[Example]:
        """Every example of the task, in file order (up to ``max_examples`` after the fixed shuffle)."""
        data, source = self._read()
        if "examples" not in data:
            subtasks = [n for n in task_names(self.tarball, self.cache_dir, self.download) if n.startswith(self.task_name + "/")]
            hint = f"; it is split into subtasks: {', '.join(subtasks)}" if subtasks else ""
            raise DataError(f"{source} holds no examples{hint}")
        choice_prefix = self.choice_prefix if self.choice_prefix is not None else data.get("choice_prefix", "\n  choice: ")
        list_choices = data.get("append_choices_to_input", True)

        def convert(row: Mapping[str, Any]) -> Example:
            return self._to_example(row, choice_prefix if list_choices else None)

        examples, _ = convert_rows(enumerate(data["examples"], 1), convert, f"{self.name}: {source}", self.skip_bad_rows)
        if not examples:
            raise DataError(f"{source}: no usable examples")
        return examples

    def _to_example(self, row: Mapping[str, Any], choice_prefix: str | None) -> Example:
        if not isinstance(row, Mapping):
            raise BadRow(None, f"should be an object with 'input', got {row!r}")
        question = text(row, "input")
        scores = row.get("target_scores")
        if scores is None:
            if self.eval_mode == "rank":
                raise BadRow("target_scores", "is missing; this example is free-form: set task.eval_mode=generate")
            targets = row.get("target")
            targets = [targets] if isinstance(targets, str) else targets
            if not targets or not all(isinstance(t, str) for t in targets):
                raise BadRow("target", f"should be a string or a list of strings, got {row.get('target')!r}")
            answers = tuple(self.answer_prefix + t for t in targets)
            return Example({"input": question, "choices": ""}, answers[0], answers=answers)
        if not isinstance(scores, Mapping) or len(scores) < 2:
            raise BadRow("target_scores", f"should map at least two choices to scores, got {scores!r}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
            raise BadRow("target_scores", f"has non-numeric scores: {scores!r}")
        keys = list(scores)
        label = max(range(len(keys)), key=lambda i: scores[keys[i]])  # the first of equal maxima
        listed = "".join(choice_prefix + k for k in keys) if choice_prefix is not None else ""
        choices = tuple(self.answer_prefix + k for k in keys)
        return Example({"input": question, "choices": listed}, choices[label], choices, label)

    def info(self) -> TaskInfo:
        """A task whose examples all offer the same choices in the same order (` Valid`, ` Invalid`) is a
        classification task: those choices are its label words, for ``init=class_label`` and class metrics."""
        info = super().info()
        if info.label_words or self.eval_mode != "rank" or not self._shared_choices:
            return info
        return replace(info, label_words=self._shared_choices, num_choices=len(self._shared_choices))

    @cached_property
    def _shared_choices(self) -> tuple[str, ...]:
        """The choices every example offers, in order; empty where they differ. Read once: a run asks for
        ``info()`` several times, and each read parses the whole task file."""
        choice_lists = {example.choices for example in self.load_examples()}
        return next(iter(choice_lists)) if len(choice_lists) == 1 else ()

    def load_splits(self) -> dict[str, list[Example]]:
        examples = self.load_examples()
        random.Random(self.split_seed).shuffle(examples)
        examples = examples[: self.max_examples] if self.max_examples is not None else examples
        n_test, n_val = (max(1, round(f * len(examples))) if f > 0 else 0
                         for f in (self.test_fraction, self.validation_fraction))
        if len(examples) - n_test - n_val < 1:
            raise DataError(f"task '{self.name}': {len(examples)} examples leave no training data; lower the fractions")
        return {
            "test": examples[:n_test],
            "validation": examples[n_test : n_test + n_val],
            "train": examples[n_test + n_val :],
        }


def survey(tarball: str | Path, min_examples: int = 200) -> list[dict[str, Any]]:
    """Multiple-choice English JSON tasks with at least ``min_examples`` examples, read from the tarball.

    English: no keyword among ``NOT_ENGLISH`` and at least 95% ASCII characters in the inputs.
    """
    suitable = []
    for name, archive, member in _task_members(Path(tarball)):
        data = json.load(archive.extractfile(member))  # type: ignore[arg-type]
        examples = data.get("examples", [])
        if len(examples) < min_examples or NOT_ENGLISH & set(data.get("keywords", [])):
            continue
        if not all(isinstance(e.get("target_scores"), dict) and len(e["target_scores"]) >= 2 for e in examples):
            continue
        inputs = "".join(str(e.get("input", "")) for e in examples)
        if sum(c.isascii() for c in inputs) < 0.95 * len(inputs):
            continue
        counts = sorted({len(e["target_scores"]) for e in examples})
        suitable.append({"task": name, "examples": len(examples), "choices": counts})
    return sorted(suitable, key=lambda row: row["task"])


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="List the BIG-bench JSON tasks that suit rank classification.")
    parser.add_argument("--tarball", default=None, help=f"{TARBALL}; default: the cached copy (downloaded if missing)")
    parser.add_argument("--min-examples", type=int, default=200)
    args = parser.parse_args()
    rows = survey(_tarball(args.tarball, None, download=True), args.min_examples)
    print("| task | examples | choices |\n|---|---:|---|")
    for row in rows:
        low, high = row["choices"][0], row["choices"][-1]
        choices = f"{low}–{high}" if low != high else str(low)
        print(f"| `{row['task']}` | {row['examples']:,} | {choices} |")
    print(f"\n{len(rows)} tasks")


if __name__ == "__main__":
    main()
