"""Backbones run with fused activation kernels that compute what the stock modules compute."""

from __future__ import annotations

import copy

import torch
from transformers.activations import GELUTanh, NewGELUActivation

from promptlearn.backbones import build_tiny_t5


def test_t5_gated_gelu_runs_fused_with_unchanged_outputs():
    backbone = build_tiny_t5(feed_forward_proj="gated-gelu")
    model = backbone.model
    assert not any(isinstance(m, NewGELUActivation) for m in model.modules())
    assert sum(isinstance(m, GELUTanh) for m in model.modules()) == 2 * model.config.num_layers
    stock = copy.deepcopy(model)
    for block in (*stock.encoder.block, *stock.decoder.block):
        block.layer[-1].DenseReluDense.act = NewGELUActivation()
    ids = torch.randint(3, 200, (2, 9))
    decoder_ids = torch.randint(3, 200, (2, 4))
    with torch.no_grad():
        fused = model(input_ids=ids, decoder_input_ids=decoder_ids).logits
        reference = stock(input_ids=ids, decoder_input_ids=decoder_ids).logits
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
