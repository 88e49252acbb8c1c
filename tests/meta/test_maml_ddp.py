"""MAML under Lightning DDP: 2 CPU processes (gloo) stay bit-identical, all-reduce once per meta-step,
and match a single process meta-training on the same episodes; their meta-test gives the single
process's per-episode accuracies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from meta_ddp_run import STEPS, TASKS_PER_STEP, TEST_EPISODES, run

SCRIPT = Path(__file__).parents[1] / "meta_ddp_run.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("ddp")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--devices", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    threads = torch.get_num_threads()
    try:
        single = run(1, out)
    finally:
        torch.set_num_threads(threads)
    loaded = {
        name: torch.load(out / f"devices2_rank{rank}.pt") for rank, name in enumerate(("rank0", "rank1"))
    }
    loaded["single"] = torch.load(single)
    return loaded


def test_ranks_take_different_tasks_that_together_are_the_single_process_meta_batch(runs):
    assert runs["rank0"]["world_size"] == 2
    for step in range(STEPS):
        first, second = runs["rank0"]["steps"][step]["episodes"], runs["rank1"]["steps"][step]["episodes"]
        assert not set(first) & set(second)
        assert (
            first + second
            == runs["single"]["steps"][step]["episodes"]
            == list(range(step * TASKS_PER_STEP, (step + 1) * TASKS_PER_STEP))
        )


def test_one_gradient_all_reduce_per_meta_step_covering_every_trainable_tensor(runs):
    prompt = runs["single"]["steps"][0]["prompt"]
    for rank in ("rank0", "rank1"):
        assert [step["allreduced_elements"] for step in runs[rank]["steps"]] == [[2 * prompt.numel()]] * STEPS
    assert all(step["allreduced_elements"] == [] for step in runs["single"]["steps"])


def test_prompts_are_bit_identical_across_ranks_after_every_meta_step(runs):
    for first, second in zip(runs["rank0"]["steps"], runs["rank1"]["steps"], strict=True):
        assert torch.equal(first["prompt"], second["prompt"])
        assert torch.equal(first["inner_lr"], second["inner_lr"])


def test_distributed_meta_training_equals_a_single_process_over_the_same_episodes(runs):
    after_first = runs["single"]["steps"][0]["prompt"]
    for ddp, single in zip(runs["rank0"]["steps"], runs["single"]["steps"], strict=True):
        torch.testing.assert_close(ddp["prompt"], single["prompt"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ddp["inner_lr"], single["inner_lr"], rtol=1e-5, atol=1e-6)
    moved = (runs["single"]["steps"][-1]["prompt"] - after_first).abs().max()
    assert moved > 0.05  # the prompt really trained, so agreement is not trivial


def test_meta_test_gives_the_same_per_episode_accuracies_on_one_and_on_two_processes(runs):
    single = runs["single"]["meta_test"]
    assert set(single) == {"meta", "random_uniform", "sampled_vocab", "class_label"}
    assert all(len(values) == TEST_EPISODES for values in single.values())
    for rank in ("rank0", "rank1"):
        assert runs[rank]["meta_test"] == single  # every rank ends with all episodes, in episode order
    assert len({value for values in single.values() for value in values}) > 1  # not one constant outcome
