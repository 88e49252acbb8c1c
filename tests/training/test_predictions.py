"""What every run records locally, whatever the logger: predictions, speed, sizes and where it ran."""

from __future__ import annotations

import csv
import json

import pytest
from omegaconf import open_dict

from promptlearn.cli.eval import evaluate
from promptlearn.cli.train import train

TINY = ["model=tiny_llama", "method.prompt_length=3", "trainer=debug", "data.max_train_examples=32",
        "data.max_val_examples=8", "data.max_test_examples=12", "trainer.log_every_n_steps=1"]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_writes_its_predictions_speed_sizes_and_environment(compose_train, tmp_path):
    results = train(compose_train(*TINY))
    val, test = (read_jsonl(tmp_path / "predictions" / name) for name in ("val.jsonl", "test.jsonl"))
    assert len(val) == 8 and len(test) == 12
    assert sum(r["correct"] for r in test) / 12 == pytest.approx(results["metrics"]["test/accuracy"])
    assert {"input", "target", "prediction", "scores", "correct"} <= set(test[0])
    assert all(len(r["scores"]) == 2 and r["prediction"] in (" negative", " positive") for r in test)
    assert all((r["prediction"] == r["target"]) == r["correct"] for r in test)
    assert test[0]["input"].startswith("Review: ") and test[0]["input"].endswith("Sentiment:")
    assert len(read_jsonl(tmp_path / "predictions" / "baseline_test.jsonl")) == 12

    header = next(csv.reader((tmp_path / "csv" / "metrics.csv").open()))
    assert {"train/step_time_s", "train/tokens_per_s", "train/lr"} <= set(header)

    assert results["examples"] == {"train": 32, "validation": 8, "test": 12}
    environment = results["environment"]
    assert set(environment["versions"]) >= {"torch", "transformers", "lightning"}
    assert environment["device"].startswith("cpu") and "git_commit" in environment and "git_dirty" in environment


def test_eval_writes_the_same_records(compose_train, tmp_path):
    trained = train(compose_train(*TINY))
    cfg = compose_train("model=tiny_llama", f"prompt={trained['prompt_checkpoint']}", "trainer=debug",
                        "data.max_val_examples=8", "data.max_test_examples=12", config_name="eval")
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "eval")
    evaluated = evaluate(cfg)
    test = read_jsonl(tmp_path / "eval" / "predictions" / "test.jsonl")
    assert [r["prediction"] for r in test] == [r["prediction"] for r in read_jsonl(tmp_path / "predictions" / "test.jsonl")]
    assert evaluated["examples"] == {"validation": 8, "test": 12} and "environment" in evaluated
