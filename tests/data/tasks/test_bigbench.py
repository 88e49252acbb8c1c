"""BIG-bench tasks from fixture task.json files in the BIG-bench schema, and from the tarball layout."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from promptlearn.data.tasks import bigbench
from promptlearn.data.tasks.bigbench import BigBenchTask
from promptlearn.utils.errors import ConfigError, DataError, MissingPackageError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "bigbench"


def from_json(task: str, **kwargs) -> BigBenchTask:
    return BigBenchTask(task_json=str(FIXTURES / task / "task.json"), **kwargs)


def test_target_scores_become_choices_with_the_best_as_label():
    task = from_json("tiny_fact_check")
    examples = task.load_examples()
    assert task.name == "tiny_fact_check" and len(examples) == 10
    third = examples[2]
    assert third.choices == (" True", " False", " Neither") and (third.label, third.target) == (2, " Neither")
    assert task.render(third.fields) == (
        "Q: Evidence: Bees make honey. Claim: Bees can see ultraviolet light."
        "\n  choice: True\n  choice: False\n  choice: Neither\nA:"
    )
    assert [e.label for e in examples] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]


def test_a_tasks_own_choice_prefix_and_ragged_choice_counts():
    examples = from_json("tiny_suite/easy", name="animals").load_examples()
    assert [len(e.choices) for e in examples] == [2, 4, 3, 2, 2]
    assert [e.target for e in examples] == [" cat", " horse", " owl", " frog", " bee"]
    assert examples[0].fields["choices"] == "\n  option: rock\n  option: cat"


def test_free_form_targets_need_generation():
    task = from_json("tiny_arithmetic", eval_mode="generate", metrics=("exact_match",))
    second = task.load_examples()[1]
    assert (second.target, second.answers, second.choices) == (" 14", (" 14", " fourteen"), ())
    with pytest.raises(DataError, match=r"tiny_arithmetic/task\.json, row 1: field 'target_scores' is missing; .*eval_mode=generate"):
        from_json("tiny_arithmetic").load_examples()


def test_fixed_shuffle_splits():
    task = from_json("tiny_fact_check", validation_fraction=0.1, test_fraction=0.2)
    splits = task.load_splits()
    assert {k: len(v) for k, v in splits.items()} == {"test": 2, "validation": 1, "train": 7}
    inputs = lambda s: [e.fields["input"] for e in s]  # noqa: E731
    assert sorted(sum(map(inputs, splits.values()), [])) == sorted(inputs(task.load_examples()))
    assert inputs(task.load_splits()["test"]) == inputs(splits["test"])
    assert inputs(from_json("tiny_fact_check", split_seed=1).load_splits()["test"]) != inputs(splits["test"])


def make_tarball(path: Path) -> Path:
    """The sdist's layout: bigbench-1.0.0/bigbench/benchmark_tasks/<task>[/<subtask>]/task.json."""
    with tarfile.open(path, "w:gz") as archive:
        readme = b"not a task"
        info = tarfile.TarInfo("bigbench-1.0.0/README.md")
        info.size = len(readme)
        archive.addfile(info, io.BytesIO(readme))
        for file in sorted(FIXTURES.rglob("task.json")):
            archive.add(file, f"{bigbench.MEMBER_PREFIX}{file.parent.relative_to(FIXTURES)}/task.json")
    return path


def test_reads_one_task_out_of_the_tarball_and_caches_it(tmp_path):
    tar = make_tarball(tmp_path / bigbench.TARBALL)
    cache = tmp_path / "cache"
    task = BigBenchTask(task_name="tiny_suite/easy", tarball=str(tar), cache_dir=str(cache))
    assert task.name == "tiny_suite_easy"
    assert [e.target for e in task.load_examples()] == [" cat", " horse", " owl", " frog", " bee"]
    cached = cache / "bigbench" / "tasks" / "tiny_suite" / "easy" / "task.json"
    assert json.loads(cached.read_text()) == json.loads((FIXTURES / "tiny_suite" / "easy" / "task.json").read_text())
    tar.unlink()  # from now on the cache serves it
    assert len(BigBenchTask(task_name="tiny_suite/easy", tarball=str(tar), cache_dir=str(cache)).load_examples()) == 5


def test_unknown_tasks_and_parent_tasks_say_what_to_pick(tmp_path):
    tar = make_tarball(tmp_path / bigbench.TARBALL)
    cache = str(tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"unknown BIG-bench JSON task .* 'tiny_fact_chek'\. Did you mean 'tiny_fact_check'\?"):
        BigBenchTask(task_name="tiny_fact_chek", tarball=str(tar), cache_dir=cache).load_examples()
    with pytest.raises(DataError, match=r"holds no examples; it is split into subtasks: tiny_suite/easy"):
        BigBenchTask(task_name="tiny_suite", tarball=str(tar), cache_dir=cache).load_examples()


def test_missing_tarball_is_one_clear_line(tmp_path, monkeypatch):
    with pytest.raises(MissingPackageError, match=r"BIG-bench is not downloaded; download bigbench-1\.0\.0\.tar\.gz from https://pypi"):
        BigBenchTask(task_name="strategyqa", cache_dir=str(tmp_path), download=False).load_examples()

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(bigbench.urllib.request, "urlopen", offline)
    with pytest.raises(MissingPackageError, match=r"cannot download bigbench-1\.0\.0\.tar\.gz \(Name or service not known\)"):
        BigBenchTask(task_name="strategyqa", cache_dir=str(tmp_path)).load_examples()
    with pytest.raises(ConfigError, match="needs task.task_name"):
        BigBenchTask(name="x")


def test_a_tarball_the_index_no_longer_lists_is_one_line_saying_so(tmp_path, monkeypatch):
    index = {"files": [{"filename": "bigbench-0.0.1.tar.gz", "url": "https://example.invalid/bigbench-0.0.1.tar.gz"}]}
    monkeypatch.setattr(bigbench.urllib.request, "urlopen", lambda *args, **kwargs: io.BytesIO(json.dumps(index).encode()))
    with pytest.raises(MissingPackageError) as caught:
        BigBenchTask(task_name="strategyqa", cache_dir=str(tmp_path)).load_examples()
    message = str(caught.value)
    assert message.startswith(bigbench.NOT_LISTED) and "(it lists bigbench-0.0.1.tar.gz)" in message
    assert "task.tarball=" in message and "\n" not in message
    assert not list(tmp_path.rglob("*.part"))  # nothing half-written is left behind


@pytest.mark.slow
def test_real_tarball_strategyqa(tmp_path):
    """Downloads the 358 MB sdist once into the shared cache if needed, then reads one task out of it."""
    try:
        tar = bigbench._tarball(None, None, download=True)
    except MissingPackageError as err:
        if bigbench.NOT_LISTED not in str(err):
            raise
        pytest.skip(str(err))  # the registry stopped serving it: nothing here to read
    task = BigBenchTask(task_name="strategyqa", tarball=str(tar), cache_dir=str(tmp_path))
    examples = task.load_examples()
    assert len(examples) == 2290
    assert all(e.choices == (" Yes", " No") for e in examples)
    assert sum(e.target == " Yes" for e in examples) == 1071  # the rest are " No"
    assert task.render(examples[0].fields) == "Q: Is it common to see frost during some college commencements?\nA:"


def test_a_task_whose_examples_share_their_choices_has_them_as_label_words():
    task = from_json("tiny_fact_check")
    fact_check = task.info()
    assert fact_check.label_words == (" True", " False", " Neither") and fact_check.num_choices == 3
    task.load_examples = None  # asking again must not read the task file again
    assert task.info() == fact_check
    ragged = from_json("tiny_suite/easy", name="animals").info()
    assert ragged.label_words == () and ragged.num_choices == 0
