"""Gemma 3's quirks, handled in general on a tiny random Gemma 3: an embedding module that scales by
sqrt(d), one key/value head shared by the query heads, sliding-window attention, a vocabulary too
large for [batch, sequence, vocabulary] logits."""

from __future__ import annotations

import logging

import torch

from promptlearn.backbones import build_tiny_gemma3
from promptlearn.methods.autoprompt import AutoPrompt
from promptlearn.methods.pez import PEZ
from promptlearn.methods.prefix_tuning import PrefixTuning
from promptlearn.methods.prompt_tuning import PromptTuning

from conftest import ToySentiment, adamw


def test_the_embedding_module_scales_and_class_label_rows_are_what_it_returns():
    backbone = build_tiny_gemma3()
    task = ToySentiment()
    ids = [backbone.tokenizer(w, add_special_tokens=False)["input_ids"] for w in task.label_words]
    raw = backbone.model.get_input_embeddings().weight
    scaled = backbone.embed(torch.tensor(ids[0]))
    assert not torch.allclose(scaled, raw[ids[0]])  # the module multiplies by sqrt(hidden_size)
    torch.testing.assert_close(scaled, raw[ids[0]] * backbone.hidden_size ** 0.5)
    module = PromptTuning(backbone, task.info(), adamw(), prompt_length=4, init="class_label")
    for row, word_ids in zip(module.prompt, ids):  # one row per label word: its tokens' mean, as the model sees them
        torch.testing.assert_close(row, backbone.embed(torch.tensor(word_ids)).mean(0))


def test_discrete_prompts_feed_the_model_what_its_embedding_module_returns():
    backbone = build_tiny_gemma3()
    task = ToySentiment()
    pez = PEZ(backbone, task.info(), adamw(), prompt_length=3).eval()
    batch = torch.tensor([[5, 6, 7]])
    embeds, _ = pez.embed_inputs(batch, torch.ones_like(batch))
    torch.testing.assert_close(embeds[0, :3], backbone.embed(pez.projected_ids()))
    auto = AutoPrompt(backbone, task.info(), None, trigger_length=2).eval()
    embeds, _ = auto.embed_inputs(batch, torch.ones_like(batch))
    torch.testing.assert_close(embeds[0, :2], backbone.embed(auto.trigger_ids))


def test_packed_sliding_window_layers_keep_their_window():
    """Packed scores and prompt gradient equal unpadded ones, one example at a time, on a window
    shorter than the examples: the packed mask keeps each sliding layer's window."""
    from test_packing import loss_and_gradient, sentiment_batch
    from test_prompt_tuning_forward import reference_log_likelihood

    backbone = build_tiny_gemma3(sliding_window=4, attn_implementation="sdpa")
    backbone.model.double()
    task, examples, batch = sentiment_batch(backbone)
    assert min(len(e.source_ids) for e in examples) > 4  # every example is longer than the window
    torch.manual_seed(0)
    packed = PromptTuning(backbone, task.info(), adamw(), prompt_length=3, init="random_uniform").eval()
    padded = PromptTuning(backbone, task.info(), adamw(), prompt_length=3, init="random_uniform",
                          pack_sequences=False).eval()
    padded.load_state_dict(packed.state_dict())
    inputs = packed.model_inputs(batch["input_ids"], batch["attention_mask"])
    assert packed.scorer.can_pack(inputs) and packed.scorer.shared_prefix_length(inputs, packed.shared_prefix) == 3

    packed_total, packed_gradient = loss_and_gradient(packed, batch)
    _, padded_gradient = loss_and_gradient(padded, batch)
    with torch.no_grad():
        alone = reference_log_likelihood(backbone, packed.prompt.detach(), examples)
    torch.testing.assert_close(packed_total, alone.float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(packed_gradient, padded_gradient, rtol=1e-4, atol=1e-6)
    backbone.model.config.sliding_window = 10_000  # the same model without a window scores otherwise
    with torch.no_grad():
        windowless = reference_log_likelihood(backbone, packed.prompt.detach(), examples)
    assert (windowless - alone).abs().max() > 1e-3


def test_sliding_window_families_without_per_layer_masks_run_padded_and_say_why(caplog, monkeypatch):
    from promptlearn.methods import scoring

    monkeypatch.setattr(scoring, "PER_LAYER_TYPE_MASKS", ())
    backbone = build_tiny_gemma3()
    module = PromptTuning(backbone, ToySentiment().info(), adamw(), prompt_length=2, init="random_uniform")
    batch = torch.tensor([[5, 6, 7, 0], [5, 6, 0, 0]])
    mask = (batch != 0).long()
    with caplog.at_level(logging.INFO, logger="promptlearn.methods.scoring"):
        assert not module.scorer.can_pack(module.model_inputs(batch, mask))
    assert "sliding-window layers would lose their window" in caplog.text


def test_scoring_reads_the_lm_head_at_target_positions_only():
    backbone = build_tiny_gemma3()
    module = PromptTuning(backbone, ToySentiment().info(), adamw(), prompt_length=2, init="random_uniform")
    shapes = []
    hook = backbone.model.get_output_embeddings().register_forward_hook(lambda m, args, out: shapes.append(args[0].shape))
    batch = torch.tensor([[5, 6, 7, 8], [5, 6, 9, 8]])
    labels = torch.tensor([[-100, -100, -100, 8], [-100, -100, -100, 8]])
    try:
        module.target_log_likelihood(batch, torch.ones_like(batch), labels)
    finally:
        hook.remove()
    assert shapes == [torch.Size([2, backbone.hidden_size])]  # two target positions, never [batch, seq, vocab]


def test_a_prefix_of_words_on_one_shared_key_value_head_is_those_words_before_the_input():
    backbone = build_tiny_gemma3()
    assert backbone.model.config.num_key_value_heads == 1 < backbone.model.config.num_attention_heads
    words = " good bad"
    ids = backbone.tokenizer(words, add_special_tokens=False)["input_ids"]
    module = PrefixTuning(backbone, ToySentiment().info(), adamw(), prefix_length=len(ids), init="text",
                          init_text=words, reparameterize=False).eval()
    text = backbone.tokenizer(" so good =>", add_special_tokens=False)["input_ids"]
    batch = torch.tensor([text])
    with torch.no_grad():
        ours = module.model(**module.model_inputs(batch, torch.ones_like(batch))).logits
        alone = backbone.model(input_ids=torch.tensor([ids + text])).logits[:, len(ids):]
    torch.testing.assert_close(ours, alone, rtol=1e-5, atol=1e-5)


def test_vocabulary_embeddings_follow_an_in_place_write():
    backbone = build_tiny_gemma3()
    before = backbone.vocabulary_embeddings().clone()
    with torch.no_grad():
        backbone.model.get_input_embeddings().weight[5] = 7.0
    after = backbone.vocabulary_embeddings()
    assert torch.allclose(after[5], backbone.embed(torch.tensor([5]))[0].float())
    assert not torch.allclose(after[5], before[5]) and torch.equal(after[6], before[6])
