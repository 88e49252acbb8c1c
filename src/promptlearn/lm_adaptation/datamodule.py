"""Serves prefix-LM batches from a corpus: an endless training stream and a fixed held-out set."""

from __future__ import annotations

import itertools
import random

import lightning as L
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from promptlearn.utils.errors import DataError
from promptlearn.lm_adaptation.corpus import C4Corpus, LocalTextCorpus, token_spans
from promptlearn.lm_adaptation.prefix_lm import PrefixLMCollator, PrefixLMExample, PrefixLMStream, split_span


class PrefixLMDataModule(L.LightningDataModule):
    def __init__(
        self,
        corpus: C4Corpus | LocalTextCorpus,
        tokenizer: PreTrainedTokenizerBase,
        span_length: int = 128,
        batch_size: int = 32,
        val_spans: int = 256,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.corpus = corpus
        self.tokenizer = tokenizer
        self.span_length = span_length
        self.batch_size = batch_size
        self.val_spans = val_spans
        self.seed = seed
        self.num_workers = num_workers
        self.collate = PrefixLMCollator(tokenizer.pad_token_id, tokenizer.eos_token_id)
        self.val_examples: list[PrefixLMExample] = []

    def _spans(self, texts):
        return token_spans(texts, self.tokenizer, self.span_length, separator_id=self.tokenizer.eos_token_id)

    def setup(self, stage: str | None = None) -> None:
        if self.val_examples:
            return
        rng = random.Random(self.seed)  # the held-out split points are fixed, so losses compare across runs
        spans = itertools.islice(self._spans(self.corpus.val_texts()), self.val_spans)
        self.val_examples = [split_span(span, rng) for span in spans]
        if not self.val_examples:
            raise DataError(f"the held-out text holds no span of {self.span_length} tokens; lower lm_adapt.span_length")

    def train_dataloader(self) -> DataLoader:
        stream = PrefixLMStream(lambda: self._spans(self.corpus.train_texts()), seed=self.seed)
        return DataLoader(stream, batch_size=self.batch_size, collate_fn=self.collate, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_examples, batch_size=self.batch_size, collate_fn=self.collate)
