"""Interpreting a soft prompt: the nearest vocabulary tokens of each prompt position (Lester et al. 2021, §7).

Each prompt row is compared with every row of the frozen model's input embedding matrix by cosine
similarity; the ``k`` most similar tokens are the row's nearest neighbours. Rows initialised from
label words tend to keep those words (and their near-synonyms) as neighbours after training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from promptlearn.utils.atomic import atomic_json_dump
from promptlearn.utils.errors import ConfigError

NEIGHBOURS_FILE = "prompt_neighbours.json"


@dataclass(frozen=True)
class Neighbour:
    token_id: int
    token: str
    similarity: float


def nearest_token_ids(
    prompt: torch.Tensor, embeddings: torch.Tensor, k: int = 5, exclude_ids: Sequence[int] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities ``[length, k]`` and token ids ``[length, k]`` of each prompt row's ``k`` nearest tokens,
    never one of ``exclude_ids``."""
    if prompt.ndim != 2 or embeddings.ndim != 2 or prompt.shape[1] != embeddings.shape[1]:
        raise ConfigError(
            f"a prompt of shape {tuple(prompt.shape)} does not live in the embedding space {tuple(embeddings.shape)}; "
            "interpret it with the backbone it was trained on"
        )
    if not 1 <= k <= embeddings.shape[0]:
        raise ConfigError(f"top-k must be between 1 and the vocabulary size {embeddings.shape[0]}, got {k}")
    similarity = F.normalize(prompt.detach().float(), dim=-1) @ F.normalize(embeddings.detach().float(), dim=-1).T
    if len(exclude_ids):
        similarity[:, torch.as_tensor(list(exclude_ids), dtype=torch.long)] = float("-inf")
    return similarity.topk(min(k, embeddings.shape[0] - len(set(exclude_ids))), dim=-1)


def special_token_ids(tokenizer: PreTrainedTokenizerBase, vocab_rows: int) -> list[int]:
    """Ids that are no word: special tokens (padding, BOS/EOS, T5's ``<extra_id_N>`` sentinels) and the
    embedding rows beyond the tokenizer's vocabulary (padding rows some models add)."""
    special = {i for i in tokenizer.all_special_ids if i is not None and i < vocab_rows}
    return sorted(special | set(range(len(tokenizer), vocab_rows)))


def nearest_tokens(
    prompt: torch.Tensor, embeddings: torch.Tensor, tokenizer: PreTrainedTokenizerBase, k: int = 5,
    include_special: bool = False,
) -> list[list[Neighbour]]:
    """For each prompt position, its ``k`` nearest vocabulary tokens, most similar first; special tokens
    are left out unless ``include_special``."""
    excluded = [] if include_special else special_token_ids(tokenizer, embeddings.shape[0])
    scores, ids = nearest_token_ids(prompt, embeddings, k, excluded)
    return [
        [Neighbour(int(i), tokenizer.convert_ids_to_tokens(int(i)), float(s)) for s, i in zip(row_scores, row_ids)]
        for row_scores, row_ids in zip(scores, ids)
    ]


def prompt_embeddings(module: torch.nn.Module) -> torch.Tensor | None:
    """The input-space prompt of a method, if it has one: ``prompt_embeddings()`` or a ``[length, hidden]`` ``prompt``.

    Methods whose prompt lives elsewhere (prefix tuning's key/value prefixes) have none to interpret.
    """
    if callable(getattr(module, "prompt_embeddings", None)):
        return module.prompt_embeddings()
    prompt = getattr(module, "prompt", None)
    hidden = module.model.get_input_embeddings().embedding_dim if hasattr(module, "model") else None
    if isinstance(prompt, torch.Tensor) and prompt.ndim == 2 and prompt.shape[1] == hidden:
        return prompt
    return None


def neighbours_table(neighbours: list[list[Neighbour]]) -> list[dict[str, object]]:
    return [{"position": p, "neighbours": [asdict(n) for n in row]} for p, row in enumerate(neighbours)]


def write_neighbours(module: torch.nn.Module, output_dir: str | Path, k: int = 5) -> Path | None:
    """Write ``prompt_neighbours.json`` for a trained method into its run folder; None if it has no input-space prompt."""
    prompt = prompt_embeddings(module)
    if prompt is None:
        return None
    backbone = module.backbone
    neighbours = nearest_tokens(prompt, backbone.vocabulary_embeddings(), backbone.tokenizer, k)
    return atomic_json_dump(neighbours_table(neighbours), Path(output_dir) / NEIGHBOURS_FILE)


def format_neighbours(neighbours: list[list[Neighbour]]) -> str:
    """One line per position: ``  3  ▁positive 0.91 | ▁good 0.55 | ...``."""
    lines = []
    for position, row in enumerate(neighbours):
        cells = " | ".join(f"{json.dumps(n.token, ensure_ascii=False)} {n.similarity:.2f}" for n in row)
        lines.append(f"{position:>4}  {cells}")
    return "\n".join(lines)
