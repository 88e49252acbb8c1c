"""A frozen CLIP (text and vision towers) with its tokenizer and image processor.

``load_clip`` takes a hub id (``openai/clip-vit-base-patch32``) or a local folder; ``build_tiny_clip``
builds a seeded random CLIP with a small word-level vocabulary that needs no files (tests, offline
smoke runs). The text tower is also exposed on input embeddings, which ``CLIPTextModel.forward``
does not accept: a prompt of embeddings is wrapped in BOS/EOS, positioned, run through the causal
encoder, and pooled at its EOS position, exactly as token ids would be.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import (
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    PreTrainedTokenizerBase,
)
from transformers.masking_utils import create_causal_mask

from promptlearn.backbones.base import freeze
from promptlearn.backbones.tiny import seeded_init
from promptlearn.utils.errors import ConfigError
from promptlearn.utils.hub import cache_only_if_hub_unreachable, why_not_loaded

# A vocabulary small enough for tests to search: common image words, one token each.
TINY_WORDS = (
    "a photo of the red blue green yellow pink white cat dog bird fish horse tree flower house car boat "
    "sun moon sky sea river mountain city street night day snow rain fire light dark old young big small "
    "painting drawing portrait landscape art style by with and in on"
).split()


@dataclass
class ClipBackbone:
    """A frozen CLIP model, its tokenizer and its image processor."""

    name: str
    model: CLIPModel
    tokenizer: PreTrainedTokenizerBase
    processor: CLIPProcessor

    @property
    def token_embeddings(self) -> torch.Tensor:
        """The text tower's vocabulary embedding table ``[V, d]``."""
        return self.model.text_model.embeddings.token_embedding.weight

    @property
    def context_length(self) -> int:
        """Most tokens the text tower positions, BOS and EOS included (77 for OpenAI's CLIP)."""
        return self.model.config.text_config.max_position_embeddings

    def check_prompt_length(self, prompt_length: int) -> None:
        if prompt_length < 1:
            raise ConfigError(f"prompt length must be at least 1, got {prompt_length}; set method.prompt_length=16 (for example)")
        if prompt_length + 2 > self.context_length:
            raise ConfigError(
                f"prompt length {prompt_length} plus BOS and EOS exceeds {self.name}'s {self.context_length}-token "
                f"context; set method.prompt_length={self.context_length - 2} or less"
            )

    def word_piece_ids(self) -> list[int]:
        """Ids of tokens that do not end a word (no ``</w>``): decoded, they fuse with the next token's text."""
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(min(len(self.tokenizer), self.token_embeddings.shape[0]))))
        return [i for i, token in enumerate(tokens) if token is not None and not token.endswith("</w>")]

    @torch.no_grad()
    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embeddings ``[N, projection_dim]``."""
        return F.normalize(self.model.get_image_features(pixel_values=pixel_values).pooler_output.float(), dim=-1)

    def text_embeddings_from_ids(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Unit-norm text embeddings of plain token ids ``[B, T]`` (BOS and EOS included), via the model's own forward."""
        return F.normalize(self.model.get_text_features(input_ids=token_ids).pooler_output.float(), dim=-1)

    def text_embeddings_from_prompt(self, prompt: torch.Tensor) -> torch.Tensor:
        """Unit-norm text embeddings ``[B, projection_dim]`` of prompts given as input embeddings ``[B, L, d]``."""
        text = self.model.text_model
        table = self.token_embeddings
        batch = prompt.shape[0]
        bos = table[self.tokenizer.bos_token_id].expand(batch, 1, -1)
        eos = table[self.tokenizer.eos_token_id].expand(batch, 1, -1)
        hidden = text.embeddings(inputs_embeds=torch.cat([bos, prompt.to(table.dtype), eos], dim=1))
        mask = create_causal_mask(config=text.config, inputs_embeds=hidden, attention_mask=None, cache=None)
        hidden = text.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
        pooled = text.final_layer_norm(hidden)[:, -1]  # EOS is the last position: no padding, causal attention
        return F.normalize(self.model.text_projection(pooled).float(), dim=-1)

    def encode_text(self, text: str) -> torch.Tensor:
        """The token ids ``[1, T]`` a user's string gets (BOS and EOS included), cut to the context length."""
        return self.tokenizer(text, truncation=True, max_length=self.context_length, return_tensors="pt")["input_ids"]


def tiny_clip_tokenizer(words: tuple[str, ...] = TINY_WORDS) -> CLIPTokenizer:
    """A CLIP BPE tokenizer built in memory: the letters, the merges that spell each word, and the words."""
    specials = ["<|startoftext|>", "<|endoftext|>"]
    letters = sorted({c for word in words for c in word})
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    for token in [*specials, *letters, *(f"{c}</w>" for c in letters)]:
        add(token)
    # Longer words' merges rank first, so that no shorter word's merge splits them (each word stays one token).
    for word in sorted(words, key=len, reverse=True):
        pieces = [*word[:-1], f"{word[-1]}</w>"]
        prefix = pieces[0]
        for piece in pieces[1:]:
            if (prefix, piece) not in merges:
                merges.append((prefix, piece))
            prefix += piece
            add(prefix)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def build_tiny_clip(
    name: str = "tiny_clip",
    seed: int = 0,
    hidden_size: int = 32,
    intermediate_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    projection_dim: int = 32,
    image_size: int = 32,
    patch_size: int = 8,
    max_position_embeddings: int = 77,
) -> ClipBackbone:
    """A randomly initialised CLIP with a word-level tokenizer and a small image processor: offline, seeded."""
    tokenizer = tiny_clip_tokenizer()
    tower = {"hidden_size": hidden_size, "intermediate_size": intermediate_size, "num_hidden_layers": num_layers,
             "num_attention_heads": num_heads}
    config = CLIPConfig(
        text_config={**tower, "vocab_size": len(tokenizer), "max_position_embeddings": max_position_embeddings,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**tower, "image_size": image_size, "patch_size": patch_size},
        projection_dim=projection_dim,
    )
    model = seeded_init(seed, lambda: CLIPModel(config))
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return ClipBackbone(name, freeze(model).eval(), tokenizer, processor)


def load_clip(name: str, name_or_path: str, dtype: str = "float32", revision: str | None = None) -> ClipBackbone:
    """``CLIPModel`` and ``CLIPProcessor`` from a hub id or a local folder, frozen."""
    try:
        with cache_only_if_hub_unreachable(name_or_path) as offline:
            processor = CLIPProcessor.from_pretrained(name_or_path, revision=revision)
            model = CLIPModel.from_pretrained(name_or_path, dtype=getattr(torch, dtype), revision=revision)
    except OSError as err:
        raise ConfigError(
            f"could not load CLIP '{name_or_path}' ({why_not_loaded(offline, err)}); check the hub id or local path, "
            "or use clip=tiny_clip offline"
        ) from err
    return ClipBackbone(name, freeze(model).eval(), processor.tokenizer, processor)
