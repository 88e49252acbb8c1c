"""The DataModule: length bucketing, mixture sampling, evaluation metadata, and every offline task end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import RandomSampler

from promptlearn.backbones import build_tiny_t5
from promptlearn.data.batching import LengthBucketBatchSampler
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.data.mixture import Mixture, ProportionalSampler
from promptlearn.data.tasks.superglue import MultiRC, ReCoRD
from promptlearn.cli.train import train

FIXTURES = Path(__file__).parents[1] / "fixtures"
SUPERGLUE = ["boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"]


def test_length_buckets_cover_every_example_once_and_pad_little():
    lengths = [int(x) for x in torch.randint(1, 200, (103,), generator=torch.Generator().manual_seed(0))]
    base = RandomSampler(range(103), generator=torch.Generator().manual_seed(0))
    sampler = LengthBucketBatchSampler(base, 8, False, lengths, pool_batches=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(103))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    unbucketed = [list(range(103))[i : i + 8] for i in range(0, 103, 8)]
    assert padded < 0.8 * sum(len(b) * max(lengths[i] for i in b) for b in unbucketed)
    again = LengthBucketBatchSampler(RandomSampler(range(103), generator=torch.Generator().manual_seed(0)), 8, False, lengths, 4, seed=0)
    assert list(again) == batches


def test_bucketed_training_batches_are_seeded_and_evaluation_sorted(toy_sentiment):
    backbone = build_tiny_t5()
    dm = TaskDataModule(toy_sentiment, backbone, batch_size=8, eval_batch_size=4, bucket_by_length=True, seed=3)
    dm.setup()
    first = [b["input_ids"].tolist() for b in dm.train_dataloader()]
    dm2 = TaskDataModule(toy_sentiment, backbone, batch_size=8, bucket_by_length=True, seed=3)
    dm2.setup()
    assert [b["input_ids"].tolist() for b in dm2.train_dataloader()] == first
    widths = [b["attention_mask"].sum(1).tolist() for b in dm.val_dataloader()]
    flat = [w for batch in widths for w in batch]
    assert flat == sorted(flat, reverse=True)  # evaluation order: longest first, no shuffling


def test_evaluation_batches_carry_what_grouped_metrics_need():
    backbone = build_tiny_t5()
    task = Mixture(name="two", tasks={"multirc": MultiRC(heldout_fraction=0), "record": ReCoRD(heldout_fraction=0)},
                   data_dir=str(FIXTURES / "superglue"))
    dm = TaskDataModule(task, backbone, eval_batch_size=64)
    dm.setup()
    assert isinstance(dm.train_dataloader().batch_sampler.sampler, ProportionalSampler)
    (batch,) = list(dm.test_dataloader())
    assert batch["task"] == ["multirc"] * 5 + ["record"] * 2
    assert batch["group"].tolist()[:5] == [0, 0, 0, 1, 1] and batch["group"].tolist()[5:] == [-1, -1]
    assert batch["answers"][5] == (" Lionel Messi", " Messi")
    assert batch["choices"][6] == (" Amazon", " Brazil", " Atlantic Ocean")
    assert batch["choice_counts"].tolist() == [2] * 5 + [4, 3]


def run_train(compose_train, *overrides: str, model: str = "tiny_t5") -> dict:
    cfg = compose_train(f"model={model}", "trainer=debug", "method.prompt_length=2", "baseline=false", *overrides)
    return train(cfg)


def task_overrides(name: str) -> list[str]:
    # Tasks whose choices differ per example have no class labels to initialise a prompt from.
    no_labels = ["method.init=sampled_vocab"] if name in ("copa", "record", "bigbench") else []
    if name in SUPERGLUE:
        return [f"task={name}", f"task.path={FIXTURES / 'superglue' / name}", *no_labels]
    if name in ("sst2", "mrpc", "qqp"):
        return [f"task={name}", f"task.path={FIXTURES / 'glue' / name}"]
    if name == "bigbench":
        return ["task=bigbench", "task.task_name=tiny_fact_check", f"task.task_json={FIXTURES / 'bigbench/tiny_fact_check/task.json'}", *no_labels]
    local = FIXTURES / "local"
    return ["task=local", f"task.train={local / 'train.jsonl'}", f"task.validation={local / 'validation.jsonl'}",
            f"task.test={local / 'test.csv'}", "task.input_fields=[review]", "task.template='Review: {review}\nSentiment:'",
            "task.label_field=sentiment", "task.label_values=[neg,pos]", "data.bucket_by_length=true"]


# The superglue test below runs all eight SuperGLUE task configs in one go; one by one they are marked slow.
@pytest.mark.parametrize(
    "name", [*(pytest.param(n, marks=pytest.mark.slow) for n in [*SUPERGLUE, "sst2", "qqp"]), "mrpc", "bigbench", "local"]
)
def test_every_offline_task_config_trains_end_to_end(compose_train, tmp_path, name):
    results = run_train(compose_train, *task_overrides(name))
    assert results["train_steps"] == 2
    metrics = results["metrics"]
    assert 0.0 <= metrics["val/score"] <= 1.0 and 0.0 <= metrics["test/score"] <= 1.0
    assert json.loads((tmp_path / "results.json").read_text())["metrics"] == pytest.approx(metrics)


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_superglue_end_to_end_reports_every_task_and_their_average(compose_train, model):
    metrics = run_train(compose_train, "task=superglue", f"task.data_dir={FIXTURES / 'superglue'}", model=model)["metrics"]
    for stage in ("val", "test"):
        task_scores = [metrics[f"{stage}/{t}/score"] for t in SUPERGLUE]
        assert metrics[f"{stage}/score"] == pytest.approx(sum(task_scores) / 8)
    assert metrics["test/cb/score"] == pytest.approx((metrics["test/cb/accuracy"] + metrics["test/cb/f1_macro"]) / 2)
    assert {"test/multirc/f1a", "test/multirc/question_em", "test/record/answer_f1", "test/record/answer_em"} <= set(metrics)
