"""task=superglue: examples-proportional mixing with a cap, one stream, and per-task plus average metrics."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hydra.utils import instantiate

from promptlearn.data.mixture import Mixture, ProportionalSampler
from promptlearn.data.tasks.superglue import BoolQ, COPA, MultiRC
from promptlearn.utils.errors import ConfigError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "superglue"


def test_examples_proportional_rates_with_a_cap():
    tasks = ["a"] * 10 + ["b"] * 3 + ["c"] * 50
    sampler = ProportionalSampler(tasks, cap=8, seed=0)
    # rate_i = min(n_i, cap) / sum_j min(n_j, cap) = 8/19, 3/19, 8/19
    assert sampler.rates() == pytest.approx({"a": 8 / 19, "b": 3 / 19, "c": 8 / 19})
    epoch = list(sampler)
    assert len(epoch) == len(sampler) == 19 and len(set(epoch)) == 19
    assert Counter(tasks[i] for i in epoch) == {"a": 8, "b": 3, "c": 8}
    assert list(sampler) == epoch  # deterministic for a seed and epoch
    sampler.set_epoch(1)
    assert set(list(sampler)) != set(epoch)  # a fresh subset of the capped tasks
    assert ProportionalSampler(tasks, cap=None).rates() == pytest.approx({"a": 10 / 63, "b": 3 / 63, "c": 50 / 63})


def test_superglue_config_mixes_all_eight_tasks(compose_train):
    task = instantiate(compose_train("task=superglue", f"task.data_dir={FIXTURES}").task, _convert_="all")
    assert isinstance(task, Mixture) and list(task.tasks) == ["boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"]
    splits = task.load_splits()
    per_task = Counter(e.task for e in splits["test"])  # test = each task's official validation split
    assert per_task == {"boolq": 3, "cb": 3, "copa": 3, "multirc": 5, "record": 2, "rte": 3, "wic": 3, "wsc": 2}
    copa = next(e for e in splits["test"] if e.task == "copa")
    assert task.source_text(copa, copa.fields) == "Premise: The man broke his toe.\nWhat was the cause?\nAnswer:"
    info = task.info()
    assert [p.name for p in info.parts] == list(task.tasks) and info.metrics == ("score",)
    assert info.label_words == (" no", " yes", " True", " False", " Neither")


def test_a_mixture_needs_one_eval_mode_and_distinct_names():
    boolq = BoolQ(path=str(FIXTURES / "boolq"))
    with pytest.raises(ConfigError, match="mix eval modes"):
        Mixture(tasks={"boolq": boolq, "multirc": MultiRC(path=str(FIXTURES / "multirc"), eval_mode="generate")})
    with pytest.raises(ConfigError, match="names repeat"):
        Mixture(tasks={"a": boolq, "b": BoolQ(path=str(FIXTURES / "boolq"))})
    with pytest.raises(ConfigError, match="at least one task"):
        Mixture(tasks={})
    assert Mixture(tasks={"copa": COPA()}, data_dir=str(FIXTURES)).tasks["copa"].path == str(FIXTURES / "copa")


def test_split_limits_apply_to_each_task_of_a_mixture():
    from promptlearn.data.datamodule import first_of_each_task
    from promptlearn.data.tasks import Example

    examples = [Example({}, "x", task=t) for t in "aaaabbbcc"]
    assert "".join(e.task for e in first_of_each_task(examples, 2)) == "aabbcc"
    single = [Example({"i": str(i)}, "x") for i in range(5)]
    assert first_of_each_task(single, 3) == single[:3]
