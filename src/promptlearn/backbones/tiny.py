"""Random models built from configs, with a byte-level tokenizer: offline, seeded, seconds to build.

``tiny_t5`` and ``tiny_llama`` are the test backbones; ``tiny_gemma3`` has Gemma 3's quirks (an
embedding module that scales by sqrt(d), one key/value head shared by the query heads, sliding-window
attention on most layers), so that code which must go through them can be tested on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn
from transformers import (
    ByT5Tokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    T5Config,
    T5ForConditionalGeneration,
)

from promptlearn.backbones.base import Backbone, freeze
from promptlearn.utils.errors import ConfigError

T = TypeVar("T")


def seeded_init(seed: int, build: Callable[[], T]) -> T:
    """What ``build()`` returns, with its random weights drawn from ``seed`` (the global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def check_shape(model: str, width: int, num_layers: int, num_heads: int, width_key: str) -> None:
    """A random model's sizes, refused in one line before anything is built."""
    for key, value in ((width_key, width), ("num_layers", num_layers), ("num_heads", num_heads)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"model.{key} must be an integer of 1 or more, got {value!r}; for example model.{key}=2")
    if width % num_heads:
        raise ConfigError(f"model.{width_key}={width} does not split into model.num_heads={num_heads} heads; "
                          f"choose a multiple of {num_heads} (for {model})")


def build_tiny_t5(
    name: str = "tiny_t5",
    seed: int = 0,
    d_model: int = 32,
    d_ff: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    dropout_rate: float = 0.0,
    feed_forward_proj: str = "gated-gelu",
    attn_implementation: str = "eager",
    tie_word_embeddings: bool = True,
) -> Backbone:
    """A randomly initialised T5 with a byte-level tokenizer: offline, seeded, seconds to build.

    Its LM head shares the input embeddings (transformers' ``T5Config`` always ties them), and, as in
    T5.1.1, decoder outputs are not rescaled before the head. ``tie_word_embeddings=False`` gives the
    head a matrix of its own, as T5.1.1 and the LM-adapted checkpoints have.
    """
    check_shape(name, d_model, num_layers, num_heads, "d_model")
    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=d_ff,
        num_layers=num_layers,
        num_decoder_layers=num_layers,
        num_heads=num_heads,
        dropout_rate=dropout_rate,
        feed_forward_proj=feed_forward_proj,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config._attn_implementation = attn_implementation
    untie = (lambda model: model) if tie_word_embeddings else untie_lm_head
    model = seeded_init(seed, lambda: untie(T5ForConditionalGeneration(config)))
    model.generation_config.decoder_start_token_id = tokenizer.pad_token_id
    return Backbone(name, freeze(model), tokenizer)


def untie_lm_head(model: PreTrainedModel) -> PreTrainedModel:
    """Give the LM head its own weights, drawn as T5 initialises an untied head (N(0, 1)), and keep them apart."""
    head = model.get_output_embeddings()
    if head.weight is model.get_input_embeddings().weight:
        head.weight = nn.Parameter(torch.randn_like(head.weight) * model.config.initializer_factor)
    model.config.tie_word_embeddings = False  # tie_weights() would share them again
    return model


def build_tiny_llama(
    name: str = "tiny_llama",
    seed: int = 0,
    hidden_size: int = 32,
    intermediate_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 512,
    initializer_range: float = 0.3,
    attn_implementation: str = "eager",
    num_key_value_heads: int | None = None,
) -> Backbone:
    """A randomly initialised Llama with a byte-level tokenizer: offline, seeded, seconds to build.
    ``num_key_value_heads`` below ``num_heads`` shares key/value heads between query heads (GQA/MQA).

    The default ``initializer_range`` is larger than Llama's 0.02 so that the random model's output
    distribution is peaked enough for a prompt to move it (as a pretrained model's is).
    """
    check_shape(name, hidden_size, num_layers, num_heads, "hidden_size")
    tokenizer = ByT5Tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_key_value_heads or num_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    config._attn_implementation = attn_implementation
    model = seeded_init(seed, lambda: LlamaForCausalLM(config))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return Backbone(name, freeze(model), tokenizer)


def build_tiny_gemma3(
    name: str = "tiny_gemma3",
    seed: int = 0,
    hidden_size: int = 32,
    intermediate_size: int = 64,
    num_layers: int = 3,
    num_heads: int = 4,
    num_kv_heads: int = 1,
    sliding_window: int = 16,
    max_position_embeddings: int = 512,
    initializer_range: float = 0.3,
    attn_implementation: str = "eager",
) -> Backbone:
    """A randomly initialised Gemma 3: embeddings scaled by sqrt(hidden_size) in the embedding module,
    ``num_heads`` query heads sharing ``num_kv_heads`` key/value heads, and a sliding window on all
    layers but the last (Gemma 3's 5-in-6 pattern, cut to ``num_layers``)."""
    check_shape(name, hidden_size, num_layers, num_heads, "hidden_size")
    if num_heads % num_kv_heads:
        raise ConfigError(f"model.num_kv_heads={num_kv_heads} must divide model.num_heads={num_heads}")
    tokenizer = ByT5Tokenizer()
    layer_types = ["sliding_attention"] * (num_layers - 1) + ["full_attention"]
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads, sliding_window=sliding_window, layer_types=layer_types,
        max_position_embeddings=max_position_embeddings, initializer_range=initializer_range,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        query_pre_attn_scalar=hidden_size // num_heads,
    )
    config._attn_implementation = attn_implementation
    model = seeded_init(seed, lambda: Gemma3ForCausalLM(config))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return Backbone(name, freeze(model), tokenizer)
