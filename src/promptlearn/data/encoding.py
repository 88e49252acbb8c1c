"""Turn text-to-text examples into token ids, and token ids into padded model batches.

Truncation policy: each input field is first cut to ``max_field_tokens`` tokens (so the template's
own words, such as the final "Sentiment:" cue, always survive); if the filled template is still
longer than ``max_source_length`` tokens, its *start* is dropped, keeping the cue and any EOS.
Targets longer than ``max_target_length`` are cut at the end. Every cut is counted and reported.

Batch layout, the same for every method:
- causal LMs read ``source + target`` as one right-padded sequence; ``labels`` is -100 except on
  target tokens, so the loss covers the target only.
- seq2seq models read ``source`` in the encoder and ``target`` (``labels``) in the decoder.
- generation batches are left-padded for causal LMs, so new tokens follow the real input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from promptlearn.data.tasks import Example, Task
from promptlearn.utils.errors import ConfigError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedExample:
    source_ids: list[int]
    target_ids: list[int]
    choice_ids: tuple[list[int], ...]
    label: int
    target_text: str
    choices: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()
    group: int = -1
    task: str = ""

    @property
    def length(self) -> int:
        """Tokens in the longest sequence this example puts in a batch."""
        return len(self.source_ids) + max([len(self.target_ids), *map(len, self.choice_ids)])


@dataclass
class TruncationCounts:
    fields: int = 0
    sources: int = 0
    targets: int = 0
    examples: int = 0

    def summary(self) -> str:
        return (
            f"{self.examples} examples encoded; fields cut: {self.fields}, "
            f"sources cut: {self.sources}, targets cut: {self.targets}"
        )


@dataclass
class TextToTextEncoder:
    """Tokenizes examples for one backbone. Holds no data; counts what it truncated."""

    tokenizer: PreTrainedTokenizerBase
    is_encoder_decoder: bool
    prepend_bos: bool = False
    max_field_tokens: int | None = None
    max_source_length: int = 512
    max_target_length: int = 64
    sentinel_target: bool = False
    counts: TruncationCounts = field(default_factory=TruncationCounts)

    def __post_init__(self) -> None:
        self.sentinel_id = t5_sentinel_id(self.tokenizer, self.is_encoder_decoder) if self.sentinel_target else None

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _cut_field(self, text: str) -> str:
        if self.max_field_tokens is None:
            return text
        ids = self._ids(text)
        if len(ids) <= self.max_field_tokens:
            return text
        self.counts.fields += 1
        return self.tokenizer.decode(ids[: self.max_field_tokens])

    def source_ids(self, text: str) -> list[int]:
        if self.is_encoder_decoder:
            ids = self.tokenizer(text)["input_ids"]  # T5 convention: ends in EOS
        else:
            ids = ([self.tokenizer.bos_token_id] if self.prepend_bos else []) + self._ids(text)
        if len(ids) > self.max_source_length:
            self.counts.sources += 1
            ids = ids[-self.max_source_length :]
        return ids

    def target_ids(self, text: str, append_eos: bool) -> list[int]:
        """Seq2seq targets always end in EOS; causal targets only when generation must learn to stop."""
        if self.is_encoder_decoder:
            ids = self.tokenizer(text)["input_ids"]
        else:
            ids = self._ids(text) + ([self.tokenizer.eos_token_id] if append_eos else [])
        if self.sentinel_id is not None:  # span-corruption output format: "<extra_id_0> positive</s>"
            ids = [self.sentinel_id, *ids]
        if len(ids) > self.max_target_length:
            self.counts.targets += 1
            ids = ids[: self.max_target_length]
        return ids

    def encode(self, task: Task, example: Example) -> EncodedExample:
        self.counts.examples += 1
        fields = {name: self._cut_field(value) for name, value in example.fields.items()}
        append_eos = task.eval_mode == "generate"
        return EncodedExample(
            source_ids=self.source_ids(task.source_text(example, fields)),
            target_ids=self.target_ids(example.target, append_eos),
            choice_ids=tuple(self.target_ids(choice, append_eos) for choice in example.choices),
            label=example.label,
            target_text=example.target,
            choices=example.choices,
            answers=example.gold_texts,
            group=example.group,
            task=example.task,
        )


def t5_sentinel_id(tokenizer: PreTrainedTokenizerBase, is_encoder_decoder: bool) -> int:
    """The id of T5's first sentinel, ``<extra_id_0>``, which opens every span-corruption target."""
    sentinel = "<extra_id_0>"
    token_id = tokenizer.convert_tokens_to_ids(sentinel) if is_encoder_decoder else None
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ConfigError(
            f"data.sentinel_target=true needs a T5-style seq2seq backbone whose tokenizer has {sentinel}; "
            "this one has none: set data.sentinel_target=false or pick a T5 model"
        )
    return token_id


def pad(rows: Sequence[Sequence[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max(len(row) for row in rows)
    padded = [([value] * (width - len(r)) + list(r)) if left else (list(r) + [value] * (width - len(r))) for r in rows]
    return torch.tensor(padded, dtype=torch.long)


def model_batch(
    sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], is_encoder_decoder: bool, pad_id: int
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` for teacher-forced scoring of targets."""
    if is_encoder_decoder:
        input_ids = pad(sources, pad_id)
        labels = pad(targets, IGNORE_INDEX)
    else:
        input_ids = pad([list(s) + list(t) for s, t in zip(sources, targets)], pad_id)
        labels = pad([[IGNORE_INDEX] * len(s) + list(t) for s, t in zip(sources, targets)], IGNORE_INDEX)
    lengths = torch.tensor([len(s) if is_encoder_decoder else len(s) + len(t) for s, t in zip(sources, targets)])
    attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@dataclass
class Collator:
    """Builds training batches, and evaluation batches for rank classification or generation."""

    is_encoder_decoder: bool
    pad_id: int
    eval_mode: str = "rank"
    train: bool = True

    def __call__(self, examples: Sequence[EncodedExample]) -> dict[str, object]:
        batch: dict[str, object] = {"label": torch.tensor([e.label for e in examples])}
        sources = [e.source_ids for e in examples]
        batch.update(model_batch(sources, [e.target_ids for e in examples], self.is_encoder_decoder, self.pad_id))
        if self.train:
            return batch
        # What the metrics need besides the prediction: choice texts, every gold answer, groups, sub-tasks.
        batch["choices"] = [e.choices for e in examples]
        batch["answers"] = [e.answers for e in examples]
        batch["group"] = torch.tensor([e.group for e in examples])
        batch["task"] = [e.task for e in examples]
        if self.eval_mode == "rank":
            batch["choice_counts"] = torch.tensor([len(e.choice_ids) for e in examples])
            if not self.is_encoder_decoder and all(len(c) == 1 for e in examples for c in e.choice_ids):
                # One-token choices of a causal LM are all read from the gold batch's single forward pass.
                batch["choice_token_ids"] = torch.tensor([c[0] for e in examples for c in e.choice_ids])
            else:
                rows = [(e.source_ids, choice) for e in examples for choice in e.choice_ids]
                choices = model_batch([s for s, _ in rows], [c for _, c in rows], self.is_encoder_decoder, self.pad_id)
                batch.update({f"choice_{key}": value for key, value in choices.items()})
        else:
            batch["gen_input_ids"] = pad(sources, self.pad_id, left=not self.is_encoder_decoder)
            lengths = torch.tensor([len(s) for s in sources])
            positions = torch.arange(batch["gen_input_ids"].shape[1])[None, :]
            width = batch["gen_input_ids"].shape[1]
            real = positions >= (width - lengths[:, None]) if not self.is_encoder_decoder else positions < lengths[:, None]
            batch["gen_attention_mask"] = real.long()
            batch["target_text"] = [e.target_text for e in examples]
        return batch
