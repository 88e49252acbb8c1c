"""Key/value prefixes for every attention layer, carried by transformers' ``Cache`` objects.

A prefix for one attention stack is a tensor ``[layers, 2 (key, value), kv_heads, length, head_dim]``.
It enters the backbone as a cache that already holds ``length`` positions, so every attention layer
attends to ``[prefix; real tokens]`` with the backbone's own attention code:

- decoder-only LMs: a :class:`~transformers.DynamicCache` holding the prefix of each layer;
- T5: decoder self-attention and cross-attention prefixes in an
  :class:`~transformers.EncoderDecoderCache`, marked not-yet-filled so that each cross-attention
  layer appends the encoder's keys and values after its prefix; the encoder drops caches on
  purpose, so :func:`encoder_prefix` hands its self-attention layers a cache for one call.

Positions: the real tokens come after the prefix, as they would after ``length`` earlier tokens. A
causal LM gives them positions ``length, length + 1, ...`` (transformers starts ``cache_position``
at the cache length); T5's relative position buckets treat the prefix as the ``length`` positions
before the sequence in all three attention kinds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import DynamicCache, EncoderDecoderCache, PreTrainedModel

from promptlearn.utils.errors import ConfigError

# Verified to attend to cached keys and values with padding masks; other kernels are refused.
PREFIX_ATTENTION = ("eager", "sdpa")
# Encoder-decoder families whose layout (encoder.block[i].layer[0].SelfAttention) this module knows.
SEQ2SEQ_MODEL_TYPES = ("t5",)


@dataclass(frozen=True)
class AttentionStack:
    """The attention layers of one kind (a causal LM's, or T5's encoder, decoder or cross attention)."""

    layers: int
    kv_heads: int
    head_dim: int

    @property
    def width(self) -> int:
        """Numbers per prefix position, a key and a value per layer: ``2 * layers * kv_heads * head_dim``."""
        return 2 * self.layers * self.kv_heads * self.head_dim

    def unflatten(self, flat: torch.Tensor) -> torch.Tensor:
        """``[length, width]`` -> ``[layers, 2, kv_heads, length, head_dim]``."""
        length = flat.shape[0]
        return flat.view(length, self.layers, 2, self.kv_heads, self.head_dim).permute(1, 2, 3, 0, 4)

    def flatten(self, layered: torch.Tensor) -> torch.Tensor:
        """``[layers, 2, kv_heads, length, head_dim]`` -> ``[length, width]``: the inverse of :meth:`unflatten`."""
        return layered.permute(3, 0, 1, 2, 4).reshape(layered.shape[3], self.width)


def attention_stacks(model: PreTrainedModel) -> dict[str, AttentionStack]:
    """Every attention kind of the backbone that takes a prefix: ``self`` for a causal LM; T5's
    ``encoder`` (self-attention), ``decoder`` (self-attention) and ``cross`` (decoder over encoder)."""
    config = model.config
    if config.is_encoder_decoder:
        if config.model_type not in SEQ2SEQ_MODEL_TYPES:
            raise ConfigError(
                f"prefixes for encoder-decoder model type '{config.model_type}' are not supported; use a T5 "
                "checkpoint or a decoder-only model"
            )
        decoder_layers = config.num_decoder_layers or config.num_layers
        return {
            "encoder": AttentionStack(config.num_layers, config.num_heads, config.d_kv),
            "decoder": AttentionStack(decoder_layers, config.num_heads, config.d_kv),
            "cross": AttentionStack(decoder_layers, config.num_heads, config.d_kv),
        }
    config = config.get_text_config(decoder=True)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {"self": AttentionStack(config.num_hidden_layers, kv_heads, head_dim)}


def check_attention_implementation(model: PreTrainedModel, name: str) -> None:
    """Refuse attention kernels that do not read prefixes from the cache (flash-attention, flex, paged)."""
    implementation = model.config._attn_implementation
    if implementation not in PREFIX_ATTENTION:
        raise ConfigError(
            f"{name}'s attention implementation '{implementation}' cannot take key/value prefixes; "
            "load it with "
            "model.attn_implementation=sdpa (or eager)"
        )


@torch.no_grad()
def text_prefix(model: PreTrainedModel, token_ids: list[int]) -> dict[str, torch.Tensor]:
    """The keys and values the backbone computes for ``token_ids`` at positions ``0..n-1``, per attention
    kind (:func:`attention_stacks`), each ``[layers, 2, kv_heads, n, head_dim]``: the prefix those words
    would be (Li & Liang's init from the activations of real words).

    A causal LM's come from its cache. T5's are read off each attention's key and value projections:
    the encoder's over the words, the decoder's over the words as decoder input, and cross-attention's
    over the encoder's states of the words.
    """
    ids = torch.tensor([token_ids], device=model.device)
    if not model.config.is_encoder_decoder:
        cache = model.base_model(input_ids=ids, use_cache=True).cache
        return {"self": torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers]).float()}
    config = model.config
    captured: dict[str, list[torch.Tensor]] = {"encoder": [], "decoder": [], "cross": []}

    def capture(kind: str):
        def hook(module, args, output):
            captured[kind].append(output[0].view(-1, config.num_heads, config.d_kv).transpose(0, 1))
        return hook

    attentions = [("encoder", block.layer[0].SelfAttention) for block in model.get_encoder().block]
    for block in model.get_decoder().block:
        attentions += [("decoder", block.layer[0].SelfAttention), ("cross", block.layer[1].EncDecAttention)]
    handles = [projection.register_forward_hook(capture(kind))
               for kind, attention in attentions for projection in (attention.k, attention.v)]
    try:
        model(input_ids=ids, decoder_input_ids=ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return {kind: torch.stack([torch.stack(pair) for pair in zip(rows[0::2], rows[1::2])]).float()
            for kind, rows in captured.items()}


def prefix_cache(prefix: torch.Tensor, batch_size: int) -> DynamicCache:
    """A fresh cache holding ``prefix`` (``[layers, 2, kv_heads, length, head_dim]``) for every row."""
    return DynamicCache(
        [
            (layer[0].expand(batch_size, -1, -1, -1), layer[1].expand(batch_size, -1, -1, -1))
            for layer in prefix
        ]
    )


def seq2seq_prefix_cache(decoder: torch.Tensor, cross: torch.Tensor, batch_size: int) -> EncoderDecoderCache:
    """Decoder self-attention and cross-attention prefixes for T5.

    A cross-attention layer whose cache entry is marked updated reuses it as the full keys and values;
    marked not updated, it computes the encoder's and appends them to what the cache holds, the prefix.
    """
    cache = EncoderDecoderCache(prefix_cache(decoder, batch_size), prefix_cache(cross, batch_size))
    for layer in cache.is_updated:
        cache.is_updated[layer] = False
    return cache


@contextmanager
def encoder_prefix(model: PreTrainedModel, prefix: torch.Tensor, batch_size: int) -> Iterator[None]:
    """While open, T5's encoder self-attention layers attend to ``[prefix; input]``.

    T5's encoder stack passes no cache to its layers, so each self-attention module is handed one
    through a forward pre-hook; the hooks go when the block exits, leaving the backbone untouched.
    """
    cache = prefix_cache(prefix, batch_size)

    def give_cache(module, args, kwargs):
        return args, {**kwargs, "cache": cache}

    handles = [
        block.layer[0].SelfAttention.register_forward_pre_hook(give_cache, with_kwargs=True)
        for block in model.get_encoder().block
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
