"""N-way K-shot episodes: what they hold, that they are pure functions of (index, seed), and clear errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from promptlearn.backbones import build_tiny_llama
from promptlearn.data.episode_data import EpisodeDataModule, EvalEpisodes, MetaTrainEpisodes
from promptlearn.data.episodes import EpisodeSampler, TaskSource, check_disjoint
from promptlearn.data.tasks import Example, Task
from promptlearn.utils.errors import ConfigError, DataError
from promptlearn.meta.toy import ToyKeywordTask, keyword_family


def sampler(sources=None, **kwargs) -> EpisodeSampler:
    sources = sources or [TaskSource(t) for t in keyword_family(range(4), size=10)]
    settings = dict(n_way=2, k_shot=3, query_shots=2, tasks_per_batch=2, seed=0) | kwargs
    return EpisodeSampler(sources, **settings)


def test_an_episode_holds_n_way_k_shot_support_and_disjoint_query():
    task = ToyKeywordTask(size=10)
    episode = sampler([TaskSource(task)], n_way=3, tasks_per_batch=1).episode(5)
    originals = {ex.fields["text"]: ex for ex in task.load_splits()["train"]}
    assert len(set(episode.classes)) == 3 and len(episode.support) == 3 * 3 and len(episode.query) == 3 * 2
    assert episode.label_words == tuple(task.label_words[c] for c in episode.classes)
    for examples, per_class in ((episode.support, 3), (episode.query, 2)):
        assert sorted(e.label for e in examples) == sorted(list(range(3)) * per_class)
        for example in examples:
            original = originals[example.fields["text"]]
            assert original.label == episode.classes[example.label]  # relabelled, not reassigned
            assert (
                example.choices == episode.label_words
                and example.target == episode.label_words[example.label]
            )
    support_texts = {e.fields["text"] for e in episode.support}
    assert not support_texts & {e.fields["text"] for e in episode.query}


def test_an_episode_is_a_pure_function_of_index_and_seed():
    first, second = sampler(), sampler()
    forward = [first.episode(i) for i in range(12)]
    backward = [second.episode(i) for i in reversed(range(12))][::-1]
    assert forward == backward
    other_seed = sampler(seed=1)
    assert any(other_seed.episode(i) != forward[i] for i in range(12))
    assert len({(e.source, e.classes, tuple(x.fields["text"] for x in e.support)) for e in forward}) == 12


def test_each_batch_of_episodes_takes_distinct_tasks_and_all_tasks_are_used():
    s = sampler(tasks_per_batch=3)
    batches = [[s.episode(b * 3 + j).source for j in range(3)] for b in range(20)]
    assert all(len(set(batch)) == 3 for batch in batches)
    assert {name for batch in batches for name in batch} == {f"toy_{i}" for i in range(4)}


def test_label_subsets_of_one_task_stay_within_their_labels():
    task = ToyKeywordTask(size=10)
    train, test = TaskSource(task, labels=(0, 1)), TaskSource(task, labels=(2, 3))
    check_disjoint({"meta_train": [train], "meta_test": [test]})
    for source, allowed in ((train, {0, 1}), (test, {2, 3})):
        episodes = [sampler([source], tasks_per_batch=1).episode(i) for i in range(10)]
        assert {c for e in episodes for c in e.classes} == allowed
    assert train.name == "toy_keywords[0, 1]"


@pytest.mark.parametrize(
    "pools",
    [
        {"meta_train": ["a", "b"], "meta_test": ["b"]},
        {"meta_train": [("a", (0, 1))], "meta_val": [("a", (1, 2))]},
        {"meta_train": [("a", (0, 1))], "meta_test": ["a"]},
    ],
)
def test_meta_splits_that_share_a_task_are_refused(pools):
    tasks = {name: ToyKeywordTask(name=name) for name in "ab"}

    def source(entry):
        return (
            TaskSource(tasks[entry])
            if isinstance(entry, str)
            else TaskSource(tasks[entry[0]], labels=entry[1])
        )

    with pytest.raises(ConfigError, match="must be disjoint"):
        check_disjoint({split: [source(e) for e in entries] for split, entries in pools.items()})


def test_n_larger_than_a_tasks_labels_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"task 'toy_0' has 4 labels but episodes.n_way=5; lower n_way"):
        sampler(n_way=5)


def test_k_larger_than_a_class_has_is_one_clear_error():
    with pytest.raises(
        ConfigError, match=r"k_shot=9 \+ query_shots=2; its smallest class has 10\) .*lower episodes.k_shot"
    ):
        sampler(k_shot=9)


def test_a_pool_smaller_than_the_batch_of_tasks_is_one_clear_error():
    with pytest.raises(
        ConfigError, match=r"meta_train pool has 4 task\(s\) but each meta-step takes 5 distinct tasks"
    ):
        sampler(tasks_per_batch=5)


def test_an_empty_pool_and_bad_shot_counts_are_refused():
    with pytest.raises(ConfigError, match="pool is empty"):
        EpisodeSampler([], n_way=2, k_shot=1, query_shots=1, tasks_per_batch=1)
    with pytest.raises(ConfigError, match="n_way >= 2"):
        sampler(n_way=1)


@dataclass
class SharedChoices(Task):
    """No label words; every example carries the same choices (as BIG-bench multiple-choice tasks do)."""

    name: str = "shared_choices"
    template: str = "{text}"
    has_per_example_choices = True
    differ: bool = False

    def load_splits(self) -> dict[str, list[Example]]:
        examples = []
        for i in range(12):
            choices = ("yes", "no", f"maybe{i}") if self.differ else ("yes", "no")
            choices = choices[::-1] if i % 3 == 0 else choices  # the same set, listed in another order
            gold = ("yes", "no")[i % 2]
            examples.append(Example({"text": f"t{i}"}, gold, choices, choices.index(gold)))
        return {"train": examples[:8], "test": examples[8:]}


def test_a_task_without_label_words_uses_its_shared_choices_and_all_its_splits():
    episode = sampler([TaskSource(SharedChoices())], tasks_per_batch=1, k_shot=2, query_shots=4).episode(0)
    assert set(episode.label_words) == {"yes", "no"}
    for example in episode.support + episode.query:  # gold answers survive choices listed in any order
        assert example.target == ("yes", "no")[int(example.fields["text"][1:]) % 2]
        assert example.target == episode.label_words[example.label]
    with pytest.raises(DataError, match="do not share one set of choices"):
        sampler([TaskSource(SharedChoices(differ=True))], tasks_per_batch=1, k_shot=1, query_shots=1)
    with pytest.raises(ConfigError, match=r"has no split\(s\) \['validation'\]"):
        sampler([TaskSource(SharedChoices(), splits=("validation",))], tasks_per_batch=1)


def test_ranks_share_out_each_meta_step_and_evaluation_episodes():
    s = sampler(tasks_per_batch=4)

    def ranks(world):
        streams = [
            iter(MetaTrainEpisodes(s, lambda e: e, rank, world, start_step=2)) for rank in range(world)
        ]
        return [[e.index for rank in streams for e in next(rank)] for _ in range(3)]

    assert ranks(1) == ranks(2) == ranks(4) == [list(range(8, 12)), list(range(12, 16)), list(range(16, 20))]
    dealt = [[e.index for e in EvalEpisodes(s, lambda e: e, 7, rank, 3)] for rank in range(3)]
    assert dealt == [[0, 3, 6], [1, 4], [2, 5]]


def test_datamodule_collates_rank_classification_batches_and_checks_the_device_count():
    backbone = build_tiny_llama()
    tasks = keyword_family(range(3), size=10)
    pools = {"meta_train": [TaskSource(t) for t in tasks[:2]], "meta_test": [TaskSource(tasks[2])]}
    datamodule = EpisodeDataModule(
        pools, backbone, n_way=2, k_shot=2, query_shots=3, tasks_per_step=2, test_episodes=3
    )
    step = next(iter(datamodule.train_dataloader()))
    assert [e["index"] for e in step] == [0, 1]
    support, query = step[0]["support"], step[0]["query"]
    assert support["label"].shape == (4,) and query["label"].shape == (6,)
    assert support["choice_counts"].tolist() == [2] * 4  # one-byte label words: scored from one forward
    assert len(support["choice_token_ids"]) == 8
    assert sum(len(batch) for batch in datamodule.test_dataloader()) == 3
    with pytest.raises(ConfigError, match="no meta_val episodes"):
        datamodule.val_dataloader()

    class ThreeDevices:
        global_rank, world_size, global_step = 0, 3, 0

    datamodule.trainer = ThreeDevices()
    with pytest.raises(ConfigError, match="tasks_per_step=2 does not split evenly over 3 processes"):
        datamodule.train_dataloader()
