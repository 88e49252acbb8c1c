"""Soft-prompt initialisers of Lester et al. 2021, §3.

"Most common tokens" means the lowest non-special token ids. That is a frequency order for the
tokenizers we support: SentencePiece unigram vocabularies (T5) are sorted by piece log-probability
on the pretraining corpus, and byte-level BPE vocabularies (GPT-2, Llama, SmolLM2) number tokens in
merge order, which follows pair frequency on the tokenizer's training corpus. Byte tokenizers (ByT5)
have a few hundred tokens, so the whole vocabulary is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from promptlearn.utils.errors import ConfigError, unknown_name

INITS = ("random_uniform", "sampled_vocab", "class_label", "text")


def common_token_ids(tokenizer: PreTrainedTokenizerBase, n: int, vocab_rows: int) -> torch.Tensor:
    """The ``n`` lowest non-special token ids that have an embedding row."""
    special = set(tokenizer.all_special_ids)
    usable = [i for i in range(min(len(tokenizer), vocab_rows)) if i not in special]
    return torch.tensor(usable[:n], dtype=torch.long)


def random_uniform(length: int, dim: int, scale: float) -> torch.Tensor:
    return torch.empty(length, dim).uniform_(-scale, scale)


def sampled_vocab(embeddings: torch.Tensor, token_ids: torch.Tensor, length: int) -> torch.Tensor:
    """Rows of distinct tokens drawn from ``token_ids`` (with replacement only if there are too few)."""
    if length <= len(token_ids):
        picks = token_ids[torch.randperm(len(token_ids))[:length]]
    else:
        picks = token_ids[torch.randint(len(token_ids), (length,))]
    return embeddings[picks].clone()


def label_embeddings(embeddings: torch.Tensor, tokenizer: PreTrainedTokenizerBase, labels: Sequence[str]) -> torch.Tensor:
    """One row per label: the mean embedding of the label's tokens."""
    rows = []
    for label in labels:
        ids = tokenizer(label, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ConfigError(f"label word {label!r} tokenizes to nothing; give a non-empty label word")
        rows.append(embeddings[ids].mean(dim=0))
    return torch.stack(rows)


def text_embeddings(embeddings: torch.Tensor, tokenizer: PreTrainedTokenizerBase, text: str, length: int) -> torch.Tensor:
    """The embeddings of ``text``'s tokens, tiled or cut to ``length`` rows."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError("method.init_text tokenizes to nothing; give a non-empty string for init=text")
    repeats = -(-length // len(ids))
    return embeddings[(ids * repeats)[:length]].clone()


def initial_prompt(
    init: str,
    *,
    length: int,
    embeddings: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    init_range: float = 0.5,
    vocab_size: int = 5000,
    label_words: Sequence[str] = (),
    text: str | None = None,
) -> torch.Tensor:
    """A ``[length, hidden]`` float32 prompt, drawn from the global torch RNG (seed it first).

    ``embeddings`` are the vocabulary as the model's embedding module returns it
    (:meth:`~promptlearn.backbones.Backbone.vocabulary_embeddings`), so that a row taken from a token
    is what the model would see for that token, any scaling included (Gemma multiplies by sqrt(d)).
    """
    if length < 1:
        raise ConfigError(f"prompt length must be at least 1, got {length}; set method.prompt_length=20 (for example)")
    embeddings = embeddings.detach().float()
    if init == "random_uniform":
        return random_uniform(length, embeddings.shape[1], init_range)
    common = common_token_ids(tokenizer, vocab_size, embeddings.shape[0])
    if init == "sampled_vocab":
        return sampled_vocab(embeddings, common, length)
    if init == "class_label":
        if not label_words:
            raise ConfigError(
                "init=class_label needs a task with label words, and this task has none; "
                "use method.init=sampled_vocab or method.init=random_uniform"
            )
        labels = label_embeddings(embeddings, tokenizer, label_words)[:length]
        rest = sampled_vocab(embeddings, common, length - len(labels)) if length > len(labels) else labels[:0]
        return torch.cat([labels, rest])
    if init == "text":
        if not text:
            raise ConfigError("init=text needs method.init_text='...'; set it or choose another init")
        return text_embeddings(embeddings, tokenizer, text, length)
    raise unknown_name("prompt init", init, INITS)
