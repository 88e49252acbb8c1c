"""The backbone's forward pass over packed rows (:mod:`promptlearn.methods.packing`), for the scorer.

- :func:`packed_seq2seq_logits`: T5 packed end to end. Each example's decoder tokens go into the same
  packed row as its encoder tokens, and cross-attention is masked to its own sequence, so no padded
  tensor is ever rebuilt.
- :func:`packed_decoder_states`: a causal LM's last hidden states, padding-free, with the leading
  positions that every row shares (a method's prompt) computed once, for one row, and attended to
  by every packed sequence as a cached prefix.
- :func:`packed_prefill_cache`: the same forward pass over a left-padded generation batch, keeping
  the keys and values instead, laid out as the padded batch's cache: greedy decoding starts from it.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel

from promptlearn.methods.packing import PER_LAYER_TYPE_MASKS, Packing, layout, plan_packing, sliding_window
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


def causal_packed_mask(model: PreTrainedModel, packing: Packing, dtype: torch.dtype, prefix: int) -> torch.Tensor | dict:
    """A causal LM's packed mask: one for every layer, or one per layer type where some layers slide."""
    full = packing.attention_mask(dtype, causal=True, prefix=prefix)
    window = sliding_window(model.config)
    if window is None:
        return full
    assert model.config.model_type in PER_LAYER_TYPE_MASKS, "the scorer packs no other sliding-window family"
    return {"full_attention": full,
            "sliding_attention": packing.attention_mask(dtype, causal=True, prefix=prefix, window=window)}


def shared_prefix_states(model: PreTrainedModel, prefix_embeds: torch.Tensor, rows: int) -> tuple[Any, torch.Tensor]:
    """The keys and values of ``prefix_embeds`` (``[1, length, d]``) as a cache for ``rows`` rows, and its
    last hidden states for every row: a prefix that sees nothing after it, computed once."""
    # A cache of full layers: a sliding-window layer's own cache would keep only its last window of positions.
    prefix = model.base_model(inputs_embeds=prefix_embeds, cache=DynamicCache(), use_cache=True)
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
        attention_mask=causal_packed_mask(model, packing, embeds.dtype, shared),
        position_ids=packing.position_ids + shared,
        cache=cache,
        use_cache=False,
    )
    return torch.cat([prefix_states, packing.unpack(packed.last_hidden_state)], dim=1)


def packed_prefill_cache(model: PreTrainedModel, inputs: dict[str, Any], shared: int, width: int) -> DynamicCache | None:
    """The keys and values of every position of a left-padded causal batch but the last, as the cache
    ``generate`` would have built for it: the first ``shared`` positions computed once, the rest
    padding-free; None when the rows are not left-padded after the shared positions.

    Padding positions hold zeros (the attention mask hides them). Positions restart after the shared
    ones in every row, as ``generate`` counts them from the attention mask.
    """
    embeds, mask = inputs["inputs_embeds"][:, shared:-1], inputs["attention_mask"][:, shared:-1]
    length = mask.shape[1]
    if length == 0:
        return None
    lengths = mask.sum(1)
    columns = torch.arange(length, device=mask.device)
    if int(lengths.min()) == 0 or not torch.equal(mask.bool(), columns[None, :] >= (length - lengths)[:, None]):
        return None
    # Left-padded -> right-padded (the layout packing takes) and back: a rotation of each row by its padding.
    to_right = (columns[None, :] + (length - lengths)[:, None]) % length
    to_left = (columns[None, :] - (length - lengths)[:, None]) % length
    packing = plan_packing(mask.gather(1, to_right), width, min_saving=None)
    cache = shared_prefix_states(model, inputs["inputs_embeds"][:1, :shared], packing.rows)[0] if shared else None
    cache = cache if cache is not None else DynamicCache()
    right_embeds = embeds.gather(1, to_right[..., None].expand_as(embeds))
    model.base_model(
        inputs_embeds=packing.pack(right_embeds),
        attention_mask=causal_packed_mask(model, packing, embeds.dtype, shared),
        position_ids=packing.position_ids + shared,
        cache=cache,
        use_cache=True,
    )
    rows = len(mask)
    layers = []
    for layer in cache.layers:
        pair = []
        for states in (layer.keys, layer.values):  # [packed rows, kv heads, shared + width, head dim]
            own = packing.unpack(states[:, :, shared:].transpose(1, 2))  # [rows, length, kv heads, head dim]
            own = own.gather(1, to_left[:, :, None, None].expand_as(own)).transpose(1, 2)
            pair.append(torch.cat([states[:1, :, :shared].expand(rows, -1, -1, -1), own], dim=2))
        layers.append(tuple(pair))
    return DynamicCache(layers)
