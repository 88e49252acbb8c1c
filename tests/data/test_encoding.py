"""Batches put the loss on target tokens only, and truncation keeps the template's cue."""

from __future__ import annotations

import torch
from transformers import ByT5Tokenizer

from promptlearn.data.encoding import IGNORE_INDEX, Collator, TextToTextEncoder, model_batch
from promptlearn.data.tasks import Example

from conftest import ToySentiment

TOKENIZER = ByT5Tokenizer()


def ids(text: str) -> list[int]:
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


def test_causal_batch_labels_cover_the_target_only():
    batch = model_batch([[5, 6, 7], [8]], [[9], [10, 11]], is_encoder_decoder=False, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 9], [8, 10, 11, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX] * 3 + [9], [IGNORE_INDEX, 10, 11, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_seq2seq_batch_keeps_source_and_target_apart():
    batch = model_batch([[5, 6, 7], [8]], [[9], [10, 11]], is_encoder_decoder=True, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[9, IGNORE_INDEX], [10, 11]]


def test_t5_sources_and_targets_end_in_eos_causal_ones_do_not():
    task = ToySentiment()
    example = Example({"text": "good"}, " yes", (" no", " yes"), 1)
    t5 = TextToTextEncoder(TOKENIZER, is_encoder_decoder=True).encode(task, example)
    assert t5.source_ids == ids("good =>") + [1] and t5.target_ids == ids(" yes") + [1]
    causal = TextToTextEncoder(TOKENIZER, is_encoder_decoder=False).encode(task, example)
    assert causal.source_ids == ids("good =>") and causal.target_ids == ids(" yes")
    assert causal.choice_ids == (ids(" no"), ids(" yes"))


def test_truncation_cuts_fields_first_then_the_start_and_counts_both():
    task = ToySentiment()
    encoder = TextToTextEncoder(TOKENIZER, is_encoder_decoder=False, max_field_tokens=4, max_source_length=6)
    encoded = encoder.encode(task, Example({"text": "abcdefgh"}, " yes", (" no", " yes"), 1))
    # field cut to "abcd", template "abcd =>" (7 bytes), then its start dropped to keep the cue
    assert encoded.source_ids == ids("bcd =>")
    assert (encoder.counts.fields, encoder.counts.sources) == (1, 1)


def test_generation_batches_are_left_padded_for_causal_lms():
    task = ToySentiment()
    encoder = TextToTextEncoder(TOKENIZER, is_encoder_decoder=False)
    examples = [encoder.encode(task, Example({"text": t}, " yes", (" no", " yes"), 1)) for t in ("a", "abc")]
    batch = Collator(False, 0, eval_mode="generate", train=False)(examples)
    assert batch["gen_input_ids"][0].tolist() == [0, 0] + ids("a =>")
    assert batch["gen_attention_mask"].tolist() == [[0, 0, 1, 1, 1, 1], [1] * 6]
    assert batch["target_text"] == [" yes", " yes"]


def test_rank_batches_expand_multi_token_choices():
    task = ToySentiment()
    encoder = TextToTextEncoder(TOKENIZER, is_encoder_decoder=False)
    examples = [encoder.encode(task, Example({"text": "a"}, " yes", (" no", " yes"), 1))]
    batch = Collator(False, 0, eval_mode="rank", train=False)(examples)
    assert batch["choice_counts"].tolist() == [2]
    assert batch["choice_input_ids"].shape[0] == 2 and "choice_token_ids" not in batch
    assert torch.equal(batch["choice_labels"][1][batch["choice_labels"][1] != IGNORE_INDEX], torch.tensor(ids(" yes")))
