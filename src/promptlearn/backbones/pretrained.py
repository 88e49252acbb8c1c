"""Pretrained backbones with ``from_pretrained``: a hub id or a local HF folder."""

from __future__ import annotations

from typing import Literal

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from promptlearn.backbones.base import Backbone, ensure_pad_token, freeze
from promptlearn.utils.errors import ConfigError
from promptlearn.utils.hub import cache_only_if_hub_unreachable, why_not_loaded

Architecture = Literal["seq2seq", "causal"]


def load_pretrained(
    name: str,
    name_or_path: str,
    architecture: Architecture,
    dtype: str = "float32",
    revision: str | None = None,
    prepend_bos: bool = False,
    attn_implementation: str | None = None,
) -> Backbone:
    """Load a hub id or a local HF folder with ``from_pretrained`` and freeze it."""
    auto = {"seq2seq": AutoModelForSeq2SeqLM, "causal": AutoModelForCausalLM}
    if architecture not in auto:
        raise ConfigError(f"model.architecture must be 'seq2seq' or 'causal', got '{architecture}'")
    kwargs: dict[str, object] = {"dtype": getattr(torch, dtype), "revision": revision}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        with cache_only_if_hub_unreachable(name_or_path) as offline:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
            model = auto[architecture].from_pretrained(name_or_path, **kwargs)
    except OSError as err:
        raise ConfigError(
            f"could not load '{name_or_path}' ({why_not_loaded(offline, err)}); check the hub id or local path, "
            "or use an offline model such as model=smollm2_135m or model=tiny_t5"
        ) from err
    return Backbone(name, freeze(model), ensure_pad_token(tokenizer), prepend_bos=prepend_bos)


