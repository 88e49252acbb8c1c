"""Frozen backbones: what a backbone is (:mod:`.base`), random ones for tests (:mod:`.tiny`), hub ids
and local folders (:mod:`.pretrained`), and the offline pretrained models (:mod:`.offline`)."""

from promptlearn.backbones.base import Backbone, ensure_pad_token, freeze, fuse_activations
from promptlearn.backbones.offline import convert_gemma3, convert_smollm2, load_gemma3, load_smollm2, smollm2_gguf_path
from promptlearn.backbones.pretrained import load_pretrained
from promptlearn.backbones.tiny import build_tiny_gemma3, build_tiny_llama, build_tiny_t5, untie_lm_head

__all__ = [
    "Backbone", "build_tiny_gemma3", "build_tiny_llama", "build_tiny_t5", "convert_gemma3", "convert_smollm2",
    "ensure_pad_token", "freeze", "fuse_activations", "load_gemma3", "load_pretrained", "load_smollm2",
    "smollm2_gguf_path", "untie_lm_head",
]
