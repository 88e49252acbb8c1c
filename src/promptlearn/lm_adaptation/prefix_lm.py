"""The prefix-LM objective of LM adaptation: split a span at a random point; the encoder reads the
prefix and the decoder predicts the continuation (Raffel et al. 2020, Sec. 3.3; Lester et al. 2021)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import IterableDataset, get_worker_info

from promptlearn.data.encoding import model_batch


@dataclass(frozen=True)
class PrefixLMExample:
    prefix: list[int]
    continuation: list[int]


def split_span(span: Sequence[int], rng: random.Random) -> PrefixLMExample:
    """Split at a uniform point that leaves at least one token on each side."""
    point = rng.randint(1, len(span) - 1)
    return PrefixLMExample(list(span[:point]), list(span[point:]))


class PrefixLMStream(IterableDataset):
    """Endless prefix-LM examples: spans from ``make_spans()``, restarted when it runs out, split at random."""

    def __init__(self, make_spans: Callable[[], Iterable[list[int]]], seed: int = 0) -> None:
        self.make_spans = make_spans
        self.seed = seed

    def __iter__(self) -> Iterator[PrefixLMExample]:
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        rng = random.Random(self.seed * 1000 + worker_id)
        while True:
            produced = False
            for i, span in enumerate(self.make_spans()):
                if i % num_workers == worker_id:
                    produced = True
                    yield split_span(span, rng)
            if not produced:
                return


@dataclass
class PrefixLMCollator:
    """Encoder input ``prefix + EOS``, decoder labels ``continuation + EOS``, padded like task batches."""

    pad_id: int
    eos_id: int

    def __call__(self, examples: Sequence[PrefixLMExample]) -> dict[str, torch.Tensor]:
        sources = [e.prefix + [self.eos_id] for e in examples]
        targets = [e.continuation + [self.eos_id] for e in examples]
        return model_batch(sources, targets, is_encoder_decoder=True, pad_id=self.pad_id)


def real_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Tokens the model reads and predicts, padding excluded: what tokens/s counts."""
    return int(batch["attention_mask"].sum() + (batch["labels"] != -100).sum())
