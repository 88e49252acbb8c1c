"""A run killed with SIGKILL part way resumes with ckpt_path=last and ends bit-identical to an unbroken run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parents[1]  # tests/, which holds fault_injection.py for the runs under test
# 40 examples in batches of 8: 5 steps an epoch, so the checkpoints of steps 4 and 8 both fall mid-epoch.
RUN = ["trainer=cpu", "trainer.max_steps=12", "trainer.val_check_interval=4", "trainer.log_every_n_steps=1",
       "data.max_train_examples=40", "data.max_val_examples=8", "data.max_test_examples=8", "baseline=false",
       "checkpoint.monitor=val/loss", "checkpoint.mode=min"]  # val loss keeps falling: the best is a late step


def train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "promptlearn.cli.train", *RUN, *overrides, f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=600, env=env,
    )


def outcome(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, float], int]:
    """The final trained tensors and optimizer state (last.ckpt), and the best checkpoint's metrics."""
    results = json.loads((run_dir / "results.json").read_text())
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    tensors = {**last["state_dict"], **flatten(last["optimizer_states"], "optimizer")}
    return tensors, results["metrics"], results["train_steps"]


def flatten(value: object, prefix: str) -> dict[str, torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) else ()
    return {key: tensor for name, item in items for key, tensor in flatten(item, f"{prefix}.{name}").items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "setup",
    [
        # With dropout on, the random draws must resume where they stopped too.
        ["model=tiny_t5", "+model.dropout_rate=0.1", "method=prompt_tuning", "method.prompt_length=4"],
        ["model=tiny_llama", "method=model_tuning"],
    ],
    ids=["prompt_tuning", "model_tuning"],
)
def test_sigkilled_run_resumes_bit_identical(tmp_path, setup):
    unbroken = train(tmp_path / "unbroken", *setup)
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]

    broken_dir = tmp_path / "broken"
    killed = train(broken_dir, *setup, "+callbacks.kill._target_=fault_injection.KillAtStep", "+callbacks.kill.step=10")
    assert killed.returncode == -signal.SIGKILL
    assert not (broken_dir / "results.json").exists()
    assert torch.load(broken_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8

    resumed = train(broken_dir, *setup, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    prompt, metrics, steps = outcome(broken_dir)
    expected_prompt, expected_metrics, expected_steps = outcome(tmp_path / "unbroken")
    assert steps == expected_steps == 12
    assert prompt.keys() == expected_prompt.keys() and any("exp_avg" in name for name in prompt)
    for name, tensor in expected_prompt.items():
        assert torch.equal(prompt[name], tensor), name
    assert metrics == expected_metrics
    best = json.loads((broken_dir / "results.json").read_text())["best_checkpoint"]
    assert torch.load(best, weights_only=True)["global_step"] > 8  # the metrics come from after the kill


def test_resuming_a_run_that_has_no_checkpoint_is_one_clear_line(tmp_path):
    done = train(tmp_path, "model=tiny_llama", "ckpt_path=last")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: cannot resume: ")
    assert "Traceback" not in done.stderr


def meta_train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "promptlearn.cli.meta", "meta_experiment=toy", "trainer.max_steps=8",
         "trainer.val_check_interval=3", "episodes.val_episodes=4", "episodes.test_episodes=4",
         *overrides, f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=600, env=env,
    )


@pytest.mark.slow
def test_sigkilled_maml_run_resumes_bit_identical(tmp_path):
    unbroken = meta_train(tmp_path / "unbroken")
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    broken_dir = tmp_path / "broken"
    killed = meta_train(broken_dir, "+callbacks.kill._target_=fault_injection.KillAtStep", "+callbacks.kill.step=7")
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(broken_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    resumed = meta_train(broken_dir, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def final(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
        last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        results = json.loads((run_dir / "results.json").read_text())
        return {**last["state_dict"], **flatten(last["optimizer_states"], "optimizer")}, results["meta_test"]

    tensors, meta_test = final(broken_dir)
    expected_tensors, expected_meta_test = final(tmp_path / "unbroken")
    assert tensors.keys() == expected_tensors.keys()
    for name, tensor in expected_tensors.items():
        assert torch.equal(tensors[name], tensor), name
    assert meta_test == expected_meta_test
