"""Backbones as built for the tests: tiny T5's LM head is tied by default, and really untied on request."""

from __future__ import annotations

import torch

from promptlearn.backbones import build_tiny_t5


def test_tiny_t5_is_tied_by_default():
    model = build_tiny_t5().model
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_tiny_t5_untied_has_an_lm_head_of_its_own_that_stays_untied():
    model = build_tiny_t5(tie_word_embeddings=False).model
    head, embeddings = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert head is not embeddings and not torch.equal(head, embeddings)
    model.tie_weights()  # what loading and resizing call: must not share them again
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    assert not model.config.scale_decoder_outputs  # T5.1.1 does not rescale decoder outputs before the head


def test_tiny_t5_is_the_same_model_for_the_same_seed():
    first, second = build_tiny_t5(seed=3).model, build_tiny_t5(seed=3).model
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
