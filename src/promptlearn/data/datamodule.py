"""The Lightning DataModule: load a task's splits once, tokenize once, pad per batch.

Training batches are shuffled (a mixture's examples are drawn examples-proportionally with a cap,
see :mod:`promptlearn.data.mixture`); with ``bucket_by_length`` every loader groups examples of
similar length into a batch. Everything is deterministic given ``seed`` and the epoch, and a run
resumed from a mid-epoch checkpoint continues with exactly the batches it had not yet trained on.
Truncation is the encoder's (see :mod:`promptlearn.data.encoding`).
"""

from __future__ import annotations

import logging
from collections import Counter

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler, SequentialSampler

from promptlearn.backbones import Backbone
from promptlearn.data.batching import EpochShuffleSampler, LengthBucketBatchSampler, ResumableBatchSampler
from promptlearn.data.encoding import Collator, EncodedExample, TextToTextEncoder
from promptlearn.data.mixture import Mixture, ProportionalSampler
from promptlearn.data.tasks import Example, Task
from promptlearn.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def first_of_each_task(examples: list[Example], limit: int) -> list[Example]:
    """The first ``limit`` examples; in a mixture, the first ``limit`` of every sub-task, so none is left out."""
    taken: Counter[str] = Counter()
    kept = []
    for example in examples:
        if taken[example.task] < limit:
            taken[example.task] += 1
            kept.append(example)
    return kept


class TaskDataModule(L.LightningDataModule):
    """Serves one task to one backbone. Splits are the task's own; limits take a split's first examples
    (a mixture's: the first of each sub-task)."""

    def __init__(
        self,
        task: Task,
        backbone: Backbone,
        batch_size: int = 8,
        eval_batch_size: int = 32,
        max_field_tokens: int | None = None,
        max_source_length: int = 512,
        max_target_length: int = 64,
        sentinel_target: bool = False,
        max_train_examples: int | None = None,
        max_val_examples: int | None = None,
        max_test_examples: int | None = None,
        num_workers: int = 0,
        bucket_by_length: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError(f"batch sizes must be at least 1, got data.batch_size={batch_size}, "
                              f"data.eval_batch_size={eval_batch_size}")
        self.task = task
        self.is_encoder_decoder = backbone.is_encoder_decoder
        self.pad_id = backbone.tokenizer.pad_token_id
        self.encoder = TextToTextEncoder(
            backbone.tokenizer,
            backbone.is_encoder_decoder,
            prepend_bos=backbone.prepend_bos,
            max_field_tokens=max_field_tokens,
            max_source_length=max_source_length,
            max_target_length=max_target_length,
            sentinel_target=sentinel_target,
        )
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.limits = {"train": max_train_examples, "validation": max_val_examples, "test": max_test_examples}
        self.num_workers = num_workers
        self.bucket_by_length = bucket_by_length
        self.seed = seed
        self.encoded: dict[str, list[EncodedExample]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.encoded:
            return
        for split, examples in self.task.load_splits().items():
            limit = self.limits.get(split)
            if limit == 0:
                continue
            examples = first_of_each_task(examples, limit) if limit is not None else examples
            if not examples:
                raise DataError(f"task '{self.task.name}': split '{split}' is empty; check the data or its limit")
            self.encoded[split] = [self.encoder.encode(self.task, example) for example in examples]
        self.warn_of_leaks()
        sizes = ", ".join(f"{split} {len(rows)}" for split, rows in self.encoded.items())
        log.info("task %s: %s; %s", self.task.name, sizes, self.encoder.counts.summary())

    def split_sizes(self) -> dict[str, int]:
        """How many examples each split the runs uses holds (after the ``max_*_examples`` limits)."""
        self.setup()
        return {split: len(rows) for split, rows in self.encoded.items()}

    def require_splits(self, *splits: str) -> None:
        """Fail before training, not after it, when a split the run will need is missing."""
        for split in splits:
            if split not in self.encoded:
                raise DataError(f"task '{self.task.name}' has no '{split}' split; give it one (a local task takes "
                                f"task.{'validation' if split == 'validation' else split}=<file>)"
                                + (", or run with test=false" if split == "test" else ""))

    def warn_of_leaks(self) -> None:
        """One line when evaluation examples also appear, with the same input, in the training split."""
        if "train" not in self.encoded:
            return
        seen = {tuple(e.source_ids) for e in self.encoded["train"]}
        for split in ("validation", "test"):
            rows = self.encoded.get(split, [])
            leaked = sum(tuple(e.source_ids) in seen for e in rows)
            if leaked:
                log.warning("task %s: %d of %d %s examples also appear in train with the same input; "
                            "their scores overstate what the method does on unseen data", self.task.name, leaked,
                            len(rows), split)

    def longest_sequence(self) -> int:
        """The longest source + target any split holds, for checking against the model's positions."""
        self.setup()
        return max(e.length for rows in self.encoded.values() for e in rows)

    def _sampler(self, split: str, train: bool) -> Sampler[int]:
        rows = self.encoded[split]
        if not train:
            return SequentialSampler(rows)
        if isinstance(self.task, Mixture):
            return ProportionalSampler([e.task for e in rows], self.task.cap, seed=self.seed)
        return EpochShuffleSampler(len(rows), seed=self.seed)

    def _batches_already_trained(self) -> int:
        """On resuming mid-epoch: how many of this epoch's batches the checkpointed run had trained on."""
        trainer = self.trainer
        if trainer is None or not trainer.fit_loop.restarting:
            return 0
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.encoded:
            raise DataError(f"task '{self.task.name}' has no '{split}' split")
        collate = Collator(self.is_encoder_decoder, self.pad_id, self.task.eval_mode, train=train)
        batch_size = self.batch_size if train else self.eval_batch_size
        sampler = self._sampler(split, train)
        skip = self._batches_already_trained() if train else 0
        if self.bucket_by_length:
            lengths = [e.length for e in self.encoded[split]]
            pool = 50 if train else None  # evaluation sorts the whole split: order does not matter there
            batches: ResumableBatchSampler = LengthBucketBatchSampler(
                sampler, batch_size, False, lengths, pool, shuffle=train, seed=self.seed, skip_batches=skip
            )
        else:
            batches = ResumableBatchSampler(sampler, batch_size, False, skip_batches=skip)
        # Its own generator: creating the loader's iterator must not draw from the global RNG.
        return DataLoader(self.encoded[split], batch_sampler=batches, collate_fn=collate, num_workers=self.num_workers,
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
