"""Padding-free (packed) forward passes give what each example gives alone, unpadded."""

from __future__ import annotations

import pytest
import torch

from promptlearn.backbones import build_tiny_llama, build_tiny_t5
from promptlearn.data.encoding import Collator, TextToTextEncoder
from promptlearn.utils.errors import ConfigError
from promptlearn.methods.packing import balanced_bins, cheapest_bins, plan_packing
from promptlearn.methods.prompt_tuning import PromptTuning

from conftest import ToySentiment, adamw
from test_prompt_tuning_forward import reference_log_likelihood


def right_padded(lengths: list[int], width: int | None = None) -> torch.Tensor:
    width = width or max(lengths)
    return (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()


def test_balanced_bins_even_out_the_rows():
    assert balanced_bins([17] * 18, rows=2) == [list(range(0, 18, 2)), list(range(1, 18, 2))]  # 153 + 153
    lengths = torch.randint(1, 60, (200,), generator=torch.Generator().manual_seed(0)).tolist()
    bins = balanced_bins(lengths, rows=12)
    assert sorted(r for b in bins for r in b) == list(range(200))
    fills = [sum(lengths[r] for r in b) for b in bins]
    assert max(fills) - min(fills) <= max(lengths)


def test_cheapest_bins_trade_padding_against_row_width():
    lengths = [50, 10] * 4  # padded: 8 x 50 = 400 positions; one row of 240 pays in attention; 4 of 60 do not
    assert sorted(sorted(lengths[r] for r in b) for b in cheapest_bins(lengths, width=512)) == [[10, 50]] * 4
    assert all(len(b) == 1 for b in cheapest_bins([50] * 8, width=512))  # nothing to gain from packing


def test_plan_packs_real_tokens_end_to_end_with_restarting_positions():
    plan = plan_packing(right_padded([3, 1, 2, 1], width=8), width=4)
    assert (plan.rows, plan.width) == (2, 4)
    assert plan.segment.tolist() == [[0, 0, 0, 3], [2, 2, 1, -1]]
    assert plan.position_ids.tolist() == [[0, 1, 2, 0], [0, 1, 0, 0]]
    x = torch.arange(4 * 8).view(4, 8, 1).float()
    x = x * right_padded([3, 1, 2, 1], width=8)[..., None]
    assert torch.equal(plan.unpack(plan.pack(x)), x)
    assert plan.pack(x)[..., 0].tolist() == [[0, 1, 2, 24], [16, 17, 8, 0]]


def test_plan_mask_keeps_each_sequence_to_itself():
    plan = plan_packing(right_padded([2, 1, 1], width=6), width=4)  # one row: [a a b c]
    mask = plan.attention_mask(torch.float32, causal=True)[0, 0]
    allowed = (mask == 0).int().tolist()
    assert allowed == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    with_prefix = (plan.attention_mask(torch.float32, causal=True, prefix=2)[0, 0] == 0).int().tolist()
    assert with_prefix == [[1, 1] + row for row in allowed]
    bidirectional = (plan.attention_mask(torch.float32, causal=False)[0, 0] == 0).int().tolist()
    assert bidirectional == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def test_plan_declines_when_it_would_not_pay_or_padding_is_not_trailing():
    assert plan_packing(right_padded([8, 8, 7]), width=32) is None  # almost no padding to save
    left_padded = right_padded([2, 5]).flip(1)
    assert plan_packing(left_padded, width=32) is None
    assert plan_packing(right_padded([0, 5]), width=32) is None
    # rows of at most 8 tokens cannot pack 6 + 5 + 5 any tighter than the padded 3 x 6
    assert plan_packing(right_padded([6, 5, 5]), width=8) is None
    unpacked = plan_packing(right_padded([6, 5, 5]), width=8, min_saving=None)  # one sequence per row
    assert unpacked.segment.tolist() == [[0] * 6, [1] * 5 + [-1], [2] * 5 + [-1]]


def sentiment_batch(backbone):
    task = ToySentiment(size=16)
    encoder = TextToTextEncoder(backbone.tokenizer, backbone.is_encoder_decoder)
    examples = [encoder.encode(task, e) for e in task.load_splits()["train"][:6]]
    collate = Collator(backbone.is_encoder_decoder, backbone.tokenizer.pad_token_id, task.eval_mode, train=True)
    return task, examples, collate(examples)


def loss_and_gradient(module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's target log-likelihoods and the prompt's gradient of their negated sum."""
    total, _ = module.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])
    (gradient,) = torch.autograd.grad(-total.sum(), module.prompt)
    return total.detach(), gradient


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("build", [build_tiny_t5, build_tiny_llama], ids=["tiny_t5", "tiny_llama"])
def test_packed_scores_and_prompt_gradient_equal_unpadded_ones(build, attention):
    backbone = build(attn_implementation=attention)
    backbone.model.double()  # float64 up to the float32 log-softmax, so that float rounding barely shows
    task, examples, batch = sentiment_batch(backbone)
    torch.manual_seed(0)
    packed = PromptTuning(backbone, task.info(), adamw(), prompt_length=3, init="random_uniform").eval()
    padded = PromptTuning(
        backbone, task.info(), adamw(), prompt_length=3, init="random_uniform", pack_sequences=False
    ).eval()
    padded.load_state_dict(packed.state_dict())
    inputs = packed.model_inputs(batch["input_ids"], batch["attention_mask"])
    assert packed.scorer.can_pack(inputs) and not padded.scorer.can_pack(inputs)
    assert plan_packing(inputs["attention_mask"], packed.scorer.pack_width) is not None
    # a causal LM's prompt is computed once for all rows; T5's encoder prompt sees the example
    assert packed.scorer.shared_prefix_length(inputs, packed.shared_prefix) == (0 if backbone.is_encoder_decoder else 3)

    packed_total, packed_gradient = loss_and_gradient(packed, batch)
    padded_total, padded_gradient = loss_and_gradient(padded, batch)
    with torch.no_grad():
        alone = reference_log_likelihood(backbone, packed.prompt.detach(), examples)
    torch.testing.assert_close(packed_total, alone.float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(packed_total, padded_total, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(packed_gradient, padded_gradient, rtol=1e-4, atol=1e-6)
    assert packed_gradient.abs().sum() > 0


def test_packing_is_skipped_for_kernels_it_cannot_mask():
    backbone = build_tiny_llama()
    backbone.model.config._attn_implementation = "flash_attention_2"
    task, _, batch = sentiment_batch(backbone)
    module = PromptTuning(backbone, task.info(), adamw(), prompt_length=3, init="random_uniform")
    assert not module.scorer.can_pack(module.model_inputs(batch["input_ids"], batch["attention_mask"]))


def test_pack_width_must_be_positive():
    backbone = build_tiny_llama()
    with pytest.raises(ConfigError, match="pack_width must be a positive"):
        PromptTuning(backbone, ToySentiment().info(), adamw(), prompt_length=3, init="random_uniform", pack_width=0)
