"""The backbone's forward pass over packed rows (:mod:`promptlearn.methods.packing`), for the scorer.

- :func:`packed_seq2seq_logits`: T5 packed end to end. Each example's decoder tokens go into the same
  packed row as its encoder tokens, and cross-attention is masked to its own sequence, so no padded
  tensor is ever rebuilt.
- :func:`packed_decoder_states`: a causal LM's last hidden states, padding-free, with the leading
  positions that every row shares (a method's prompt) computed once, for one row, and attended to
  by every packed sequence as a cached prefix.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from promptlearn.methods.packing import Packing, layout, plan_packing
from promptlearn.prompts.prefix_cache import prefix_cache


def packed_seq2seq_logits(
    model: PreTrainedModel, inputs: dict[str, Any], labels: torch.Tensor, selected: torch.Tensor, packing: Packing
) -> torch.Tensor:
    """T5's logits at the ``selected`` target positions (contiguous from position 0 in each row)."""
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
    decoder = layout(packing.bins, selected.sum(1).tolist(), selected.shape[1], selected.device)
    embeds = inputs["inputs_embeds"]
    states = model.get_encoder()(
        inputs_embeds=packing.pack(embeds), attention_mask=packing.attention_mask(embeds.dtype, causal=False)
    ).last_hidden_state
    logits = model(
        encoder_outputs=(states,),
        attention_mask=decoder.cross_attention_mask(packing, embeds.dtype),
        decoder_input_ids=decoder.pack(decoder_input_ids[..., None])[..., 0],
        decoder_attention_mask=decoder.attention_mask(embeds.dtype, causal=True),
        use_cache=False,
    ).logits
    return logits.flatten(0, 1)[decoder.positions()[selected]]


def shared_prefix_states(model: PreTrainedModel, prefix_embeds: torch.Tensor, rows: int) -> tuple[Any, torch.Tensor]:
    """The keys and values of ``prefix_embeds`` (``[1, length, d]``) as a cache for ``rows`` rows, and its
    last hidden states for every row: a prefix that sees nothing after it, computed once."""
    prefix = model.base_model(inputs_embeds=prefix_embeds, use_cache=True)
    layers = prefix.cache.layers
    keys_values = torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in layers])
    return prefix_cache(keys_values, rows), prefix.last_hidden_state


def packed_decoder_states(
    model: PreTrainedModel, inputs: dict[str, Any], shared: int, width: int
) -> torch.Tensor | None:
    """A causal LM's last hidden states ``[batch, length, d]`` with the first ``shared`` positions
    computed once; None when packing would not pay (and nothing is shared)."""
    embeds, mask = inputs["inputs_embeds"], inputs["attention_mask"]
    packing = plan_packing(mask[:, shared:], width, min_saving=None if shared else 0.1)
    if packing is None:
        return None
    cache, prefix_states = None, embeds[:, :0]
    if shared:
        cache, prefix_states = shared_prefix_states(model, embeds[:1, :shared], packing.rows)
        prefix_states = prefix_states.expand(len(embeds), -1, -1)
    packed = model.base_model(
        inputs_embeds=packing.pack(embeds[:, shared:]),
        attention_mask=packing.attention_mask(embeds.dtype, causal=True, prefix=shared),
        position_ids=packing.position_ids + shared,
        cache=cache,
        use_cache=False,
    )
    return torch.cat([prefix_states, packing.unpack(packed.last_hidden_state)], dim=1)
