"""The benchmark scripts: each runs at tiny size and prints its table; their measuring tools are right."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import common  # noqa: E402
import eval_modes  # noqa: E402
import growth  # noqa: E402
import limit  # noqa: E402
import maml_step  # noqa: E402
import meta_test  # noqa: E402
import packing_step  # noqa: E402
import peft_step  # noqa: E402

from promptlearn.backbones import build_tiny_llama, build_tiny_t5  # noqa: E402
from promptlearn.meta.maml import MetaPromptTuning  # noqa: E402


def printed(capsys, script, *argv: str) -> str:
    common.console.width = 200
    script.main(["--quick", *argv])
    return capsys.readouterr().out


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_t5"])
def test_peft_step_prints_both_contenders_and_the_ratio(capsys, model):
    out = printed(capsys, peft_step, "--model", model)
    assert "promptlearn" in out and "peft" in out
    assert ">= 1.2" in out and "throughput" in out


def test_limit_prints_step_over_forward_for_prompt_and_full_tuning(capsys):
    out = printed(capsys, limit)
    assert "prompt tuning" in out and "full fine-tuning" in out and "<= 2.2" in out


def test_eval_modes_prints_rank_and_generation(capsys):
    out = printed(capsys, eval_modes)
    assert "rank classification" in out and "max_new_tokens=32" in out and ">= 3.0" in out
    assert "padded prefill" in out and ">= 2.0" in out


def test_maml_step_prints_both_orders(capsys):
    out = printed(capsys, maml_step)
    assert "first" in out and "second" in out and "speed-up batched" in out


def test_meta_test_prints_both_loops_and_finds_the_same_accuracies(capsys):
    out = printed(capsys, meta_test)
    assert "one pair at a time" in out and "pairs per pass" in out and ">= 10.0" in out
    assert "the same in both: yes" in out


@pytest.mark.parametrize(("model", "stand_in"), [("smollm2", "tiny_llama"), ("gemma3_270m", "tiny_gemma3")])
def test_growth_prints_both_tables(capsys, model, stand_in):
    out = printed(capsys, growth, "--model", model)  # --quick runs the model's tiny stand-in
    assert "cost vs prompt length" in out and "cost vs batch size" in out and f"model={stand_in}" in out


@pytest.mark.parametrize(("model", "stand_in"), [("gemma3_270m", "tiny_gemma3"), ("smollm2", "tiny_llama")])
def test_packing_step_prints_both_and_finds_the_same_losses(capsys, model, stand_in):
    out = printed(capsys, packing_step, "--model", model)
    assert "packed vs padded" in out and f"model={stand_in}" in out and "speed-up packed" in out
    gaps = [float(line.split("│")[-2]) for line in out.splitlines() if line.startswith("│")]
    assert len(gaps) == 2 and max(gaps) < 1e-4


# ----------------------------------------------------------------- the measuring tools
def test_cpu_peak_bytes_sees_the_largest_set_of_live_tensors():
    def allocate():
        a = torch.ones(1024, 1024)  # 4 MiB
        b = torch.ones(2048, 1024)  # 8 MiB, both alive: 12 MiB
        del a
        c = torch.ones(1024, 1024)  # back to 12 MiB
        return b.sum() + c.sum()

    assert common.cpu_peak_bytes(allocate) == pytest.approx(12 * 2**20, rel=0.01)


def test_frozen_step_flops_counts_four_flops_per_weight_and_token():
    backbone = build_tiny_llama()
    model = backbone.model
    batch = {"input_ids": torch.zeros(3, 7, dtype=torch.long)}
    weights = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    assert common.frozen_step_flops(backbone, batch, prompt_length=5) == 4 * weights * 3 * (5 + 7)


def test_frozen_step_flops_splits_encoder_and_decoder_tokens():
    backbone = build_tiny_t5()
    model = backbone.model
    batch = {"input_ids": torch.zeros(2, 6, dtype=torch.long), "labels": torch.zeros(2, 3, dtype=torch.long)}
    embedding = model.shared.weight.numel()
    encoder = sum(p.numel() for p in model.encoder.parameters()) - embedding
    decoder = sum(p.numel() for p in model.decoder.parameters()) - embedding + model.lm_head.weight.numel()
    expected = 4 * (encoder * 2 * (4 + 6) + decoder * 2 * 3)
    assert common.frozen_step_flops(backbone, batch, prompt_length=4) == expected


@pytest.mark.parametrize("first_order", [True, False])
def test_plain_maml_reference_gives_the_modules_meta_gradient(first_order):
    """The benchmark's textbook autograd loop and the module's torch.func path agree, so timings compare like with like."""
    torch.manual_seed(0)
    backbone = build_tiny_llama()
    batch = maml_step.episodes(backbone, tasks_per_step=2, shots=2)
    module = MetaPromptTuning(backbone, functools.partial(torch.optim.SGD, lr=1.0), prompt_length=4,
                              inner_steps=2, first_order=first_order, per_step_loss_weights=False)
    optimizer = module.configure_optimizers()
    start = module.prompt.detach().clone()
    grads = []
    for run in (maml_step.ours, maml_step.plain, maml_step.ours_batched):
        with torch.no_grad():
            module.prompt.copy_(start)
        run(module, optimizer, batch)()
        grads.append(start - module.prompt.detach())  # SGD at LR 1: the step is the meta-gradient
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    # batched tasks sum in another order; second-order terms of this random model amplify the rounding
    torch.testing.assert_close(grads[2], grads[1], rtol=1e-3, atol=1e-3 * grads[1].abs().max())
