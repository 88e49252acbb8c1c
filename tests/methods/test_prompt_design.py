"""Prompt design: the manual template, k in-context demonstrations, evaluation only, clear errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from promptlearn.cli.components import build_backbone_and_task
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.data.few_shot import FewShotTask
from promptlearn.data.tasks import Example, Task
from promptlearn.utils.errors import ConfigError, DataError
from promptlearn.cli.train import train

from conftest import ToySentiment

TINY = ["trainer=debug", "data.max_val_examples=8", "data.max_test_examples=8", "data.max_train_examples=64"]


@dataclass
class BraceTask(Task):
    """Examples whose text holds format-string braces."""

    name: str = "braces"
    template: str = "In: {text}\nOut:"
    label_words: tuple[str, ...] = (" a", " b")

    def load_splits(self) -> dict[str, list[Example]]:
        rows = [Example({"text": f"{{x}} {i} }}{{"}, self.label_words[i % 2], self.label_words, i % 2) for i in range(6)]
        return {"train": rows, "validation": rows[:2], "test": rows[2:4]}


def test_demonstrations_are_drawn_once_from_train_and_prepended():
    task = ToySentiment()
    few = FewShotTask(task, num_shots=3, seed=5)
    train_split = task.load_splits()["train"]
    assert len(few.demonstrations) == 3 and all(d in train_split for d in few.demonstrations)
    assert FewShotTask(task, num_shots=3, seed=5).demonstrations == few.demonstrations
    assert FewShotTask(task, num_shots=3, seed=6).demonstrations != few.demonstrations

    fields = {"text": "good good"}
    demos = "".join(f"{d.fields['text']} =>{d.target}\n\n" for d in few.demonstrations)  # template "{text} =>"
    assert few.render(fields) == demos + "good good =>"
    assert few.template.format(**fields) == few.render(fields)
    assert few.load_splits() == task.load_splits() and few.info() == task.info()


def test_demonstrations_are_balanced_across_labels_unless_asked_not_to():
    task = ToySentiment()
    for seed in range(5):
        labels = [d.label for d in FewShotTask(task, num_shots=4, seed=seed).demonstrations]
        assert sorted(labels) == [0, 0, 1, 1]
        assert sorted(d.label for d in FewShotTask(task, num_shots=3, seed=seed).demonstrations) in ([0, 0, 1], [0, 1, 1])
    unbalanced = [sorted(d.label for d in FewShotTask(task, 4, seed=s, balanced=False).demonstrations) for s in range(10)]
    assert any(labels != [0, 0, 1, 1] for labels in unbalanced)  # a plain random draw is not forced to balance


def test_braces_in_demonstrations_stay_literal():
    few = FewShotTask(BraceTask(), num_shots=2, seed=0)
    rendered = few.render({"text": "q"})
    for demo in few.demonstrations:
        assert f"In: {demo.fields['text']}\nOut:{demo.target}\n\n" in rendered
    assert rendered.endswith("In: q\nOut:") and few.template.format(text="q") == rendered


def test_encoded_sources_hold_the_demonstrations(tiny_backbone):
    few = FewShotTask(ToySentiment(), num_shots=2, seed=0)
    datamodule = TaskDataModule(few, tiny_backbone, max_val_examples=4)
    datamodule.setup()
    example = few.load_splits()["validation"][0]
    source = tiny_backbone.tokenizer.decode(datamodule.encoded["validation"][0].source_ids, skip_special_tokens=True)
    assert source == few.render(example.fields)
    assert source.startswith(few.prefix) and few.prefix.count(" =>") == 2


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_zero_shot_prompt_design_is_the_template_alone_and_trains_nothing(compose_train, tmp_path, model):
    results = train(compose_train(f"model={model}", "method=prompt_design", *TINY))
    assert results["method"] == "prompt_design" and results["train_steps"] == 0 and results["trainable_params"] == 0
    assert results["best_checkpoint"] is None and not (tmp_path / "checkpoints").exists()
    assert results["metrics"]["test/score"] == results["baseline"]["test/score"]  # the no-prompt baseline, same template
    assert torch.load(results["prompt_checkpoint"], weights_only=True)["state_dict"] == {}


def test_num_shots_in_the_method_config_reaches_the_encoded_inputs(compose_train):
    cfg = compose_train("model=tiny_t5", "method=prompt_design", "method.num_shots=2", "data.max_source_length=4096", *TINY)
    backbone, task, datamodule = build_backbone_and_task(cfg)
    assert isinstance(task, FewShotTask) and task.num_shots == 2 and task.name == "rotten_tomatoes"
    assert sorted(d.label for d in task.demonstrations) == [0, 1]
    source = backbone.tokenizer.decode(datamodule.encoded["test"][0].source_ids, skip_special_tokens=True)
    assert source.startswith(task.prefix) and source.count("Sentiment:") == 3
    _, plain, _ = build_backbone_and_task(compose_train("model=tiny_t5", "method=prompt_design", *TINY))
    assert not isinstance(plain, FewShotTask)


def test_template_without_the_input_slot_is_a_one_line_error(compose_train):
    cfg = compose_train("model=tiny_t5", "method=prompt_design", "task.template=Sentiment:", *TINY)
    with pytest.raises(ConfigError, match=r"template 'Sentiment:' has no slot for \{text\}; add it") as info:
        train(cfg)
    assert "\n" not in str(info.value)


def test_impossible_shot_counts_are_clear_errors():
    with pytest.raises(ConfigError, match=r"num_shots must be 0 \(no demonstrations\) or more, got -1"):
        FewShotTask(ToySentiment(), num_shots=-1)
    with pytest.raises(DataError, match=r"100 demonstrations asked for but its train split has 64 examples"):
        FewShotTask(ToySentiment(), num_shots=100)
