"""Discrete prompts: which vocabulary tokens may appear, projection onto them, and their text.

Shared by the discrete-prompt methods: AutoPrompt searches over :func:`candidate_token_ids`, PEZ
(Wen et al. 2023) keeps a continuous prompt and uses :func:`project_to_vocab` in every forward
pass. Nothing here depends on a language model's forward, so the same projection serves any
objective (a CLIP image-text loss as well as a label log-likelihood).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from promptlearn.utils.errors import ConfigError


def token_texts(tokenizer: PreTrainedTokenizerBase, vocab_rows: int) -> list[str]:
    """Each token id's text on its own, as the tokenizer decodes it."""
    return tokenizer.batch_decode([[i] for i in range(vocab_rows)], clean_up_tokenization_spaces=False)


def candidate_token_ids(
    tokenizer: PreTrainedTokenizerBase,
    vocab_rows: int,
    *,
    vocab_size: int | None = None,
    token_pattern: str | None = None,
    exclude_ids: Sequence[int] = (),
) -> torch.Tensor:
    """Token ids a discrete prompt may use, in increasing order.

    Always left out: special tokens, ids without an embedding row, and tokens that decode to
    nothing or to an incomplete character (a lone UTF-8 byte), since no text reproduces them.
    ``vocab_size`` keeps the lowest ids only (the most common, see :mod:`promptlearn.prompts.init`),
    ``token_pattern`` keeps tokens whose decoded text fully matches the regular expression, and
    ``exclude_ids`` drops ids the caller names (AutoPrompt leaves out the label tokens).
    """
    if vocab_size is not None and vocab_size < 1:
        raise ConfigError(f"method.vocab_size must be at least 1 or null (the whole vocabulary), got {vocab_size}")
    try:
        pattern = re.compile(token_pattern) if token_pattern is not None else None
    except re.error as err:
        raise ConfigError(f"method.token_pattern {token_pattern!r} is not a regular expression ({err})") from None
    rows = min(len(tokenizer), vocab_rows)
    excluded = set(tokenizer.all_special_ids) | set(exclude_ids)
    texts = token_texts(tokenizer, rows)
    kept = [
        i
        for i, text in enumerate(texts)
        if i not in excluded and text and "\ufffd" not in text and (pattern is None or pattern.fullmatch(text))
    ]
    if vocab_size is not None:
        kept = kept[:vocab_size]
    if not kept:
        raise ConfigError(
            f"the vocabulary filter leaves no candidate tokens (token_pattern={token_pattern!r}, "
            f"vocab_size={vocab_size}, {len(excluded)} ids excluded); loosen method.token_pattern or method.vocab_size"
        )
    return torch.tensor(kept, dtype=torch.long)


def nearest_token_ids(
    embeds: torch.Tensor, vocab: torch.Tensor, candidate_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """For each row of ``embeds`` ``[..., d]``, the id of the vocabulary row ``[V, d]`` nearest by cosine."""
    pool = vocab if candidate_ids is None else vocab[candidate_ids]
    similarity = F.normalize(embeds.detach().float(), dim=-1) @ F.normalize(pool.detach().float(), dim=-1).T
    best = similarity.argmax(dim=-1)
    return best if candidate_ids is None else candidate_ids.to(best.device)[best]


class _StraightThrough(torch.autograd.Function):
    """Forward: the projected rows, exactly. Backward: their gradient, unchanged, to the continuous rows."""

    @staticmethod
    def forward(ctx, continuous: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return projected.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


@dataclass(frozen=True)
class Projection:
    """A continuous prompt projected onto the vocabulary."""

    embeds: torch.Tensor  # exact vocabulary rows; gradients flow straight through to the continuous prompt
    token_ids: torch.Tensor


def project_to_vocab(
    continuous: torch.Tensor, vocab: torch.Tensor, candidate_ids: torch.Tensor | None = None
) -> Projection:
    """PEZ's projection: each row replaced by its nearest vocabulary embedding (cosine).

    The loss is computed on the projected rows, and its gradient with respect to them is applied to
    the continuous rows (a straight-through estimator), as in Wen et al. 2023, Algorithm 1.
    """
    ids = nearest_token_ids(continuous, vocab, candidate_ids)
    projected = vocab.detach()[ids].to(continuous.dtype)
    return Projection(_StraightThrough.apply(continuous, projected), ids)


@dataclass(frozen=True)
class HardPromptText:
    """A discrete prompt as text, and what the tokenizer makes of that text."""

    text: str
    token_ids: list[int]
    retokenized_ids: list[int]

    @property
    def mismatch(self) -> int:
        """How many ids differ when the text is tokenized again (position by position, plus the length change)."""
        same_length = sum(a != b for a, b in zip(self.token_ids, self.retokenized_ids))
        return same_length + abs(len(self.token_ids) - len(self.retokenized_ids))


def hard_prompt_text(tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int]) -> HardPromptText:
    """Decode ``token_ids`` to a string, then tokenize that string again, as a user pasting it would."""
    ids = [int(i) for i in token_ids]
    text = tokenizer.decode(ids, clean_up_tokenization_spaces=False)
    return HardPromptText(text, ids, tokenizer(text, add_special_tokens=False)["input_ids"])
