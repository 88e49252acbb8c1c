"""Scoring a task's examples with a frozen backbone, however a method feeds it: shared by every method,
MetaPrompting, tracking and inference.

A method is an :class:`InputSource`: it turns token ids into the keyword arguments of the backbone's
forward (``inputs_embeds`` and ``attention_mask``, and for some methods a prefix ``cache`` or
``encoder_outputs``), and says how many leading positions are the same in every row. The
:class:`Scorer` does the rest:

- :meth:`Scorer.target_logits`: logits at target positions only (a ``[batch, sequence, vocabulary]``
  tensor is never built), padding-free where that pays (:mod:`~promptlearn.methods.packed_forward`),
  with a causal LM's shared prompt computed once;
- :meth:`Scorer.choice_scores`: each (example, choice) row's log-likelihood, for rank classification;
- :meth:`Scorer.generate`: greedy decoding, with a shared prompt's keys and values computed once;
- :meth:`Scorer.predict`: scores -> length normalisation -> best choice -> text, the one decision
  every evaluation makes (:class:`Prediction`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from promptlearn.backbones import Backbone
from promptlearn.data.encoding import IGNORE_INDEX
from promptlearn.utils.errors import ConfigError
from promptlearn.methods.packed_forward import (
    packed_decoder_states, packed_prefill_cache, packed_seq2seq_logits, shared_prefix_states,
)
from promptlearn.methods.packing import (
    PACKABLE_ATTENTION, PACKABLE_MODEL_TYPES, PER_LAYER_TYPE_MASKS, plan_packing, sliding_window,
)
from promptlearn.metrics import match_choice

log = logging.getLogger(__name__)

# How a causal LM's generation computes its inputs before decoding (see Scorer.generate).
GENERATION_PREFILLS = ("packed", "shared", "padded")
# Models whose logits are post-processed after the LM head; for them the full forward is used.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale")


class InputSource(Protocol):
    """What a method gives the scorer: backbone inputs for token ids, and how much of them every row shares."""

    @property
    def shared_prefix(self) -> int:
        """Leading positions of ``inputs_embeds`` that are the same in every row (a causal LM computes them once)."""

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
        """Keyword arguments of the backbone's forward; positions beyond ``input_ids`` come first."""


class ScoredMethod(InputSource, Protocol):
    """A method as :meth:`Scorer.predict` reads it: its own choice scores and generations (a method may
    score choices its own way, as AutoPrompt's label tokens do)."""

    def choice_scores(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def generate_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]: ...


@dataclass
class Prediction:
    """One evaluation batch as decided: the chosen choice of each example (-1: a generation that spells
    none), its text, the gold loss, and for rank classification the ``[examples, choices]`` scores."""

    index: torch.Tensor
    texts: list[str]
    loss: torch.Tensor
    scores: torch.Tensor | None = None


def choice_matrix(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Flat (example, choice) scores as ``[examples, max_choices]``, missing choices at -inf."""
    matrix = torch.full((len(counts), int(counts.max())), float("-inf"), device=scores.device)
    example = torch.repeat_interleave(torch.arange(len(counts), device=scores.device), counts)
    position = torch.arange(len(scores), device=scores.device) - (torch.cumsum(counts, 0) - counts)[example]
    matrix[example, position] = scores.float()
    return matrix


def best_choice(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Index of the highest-scoring choice of each example, from a flat score per (example, choice)."""
    return choice_matrix(scores, counts).argmax(dim=1)


class Scorer:
    """Target logits, choice scores, generation and predictions of one frozen backbone."""

    def __init__(
        self,
        backbone: Backbone,
        length_normalize: bool = False,
        max_new_tokens: int = 32,
        pack_sequences: bool = True,
        pack_width: int = 512,
        generation_prefill: str = "packed",
    ) -> None:
        if pack_width < 1:
            raise ConfigError(f"pack_width must be a positive number of tokens, got {pack_width}")
        if generation_prefill not in GENERATION_PREFILLS:
            raise ConfigError(f"generation_prefill must be one of {', '.join(GENERATION_PREFILLS)}, got {generation_prefill!r}")
        self.backbone = backbone
        self.length_normalize = length_normalize
        self.max_new_tokens = max_new_tokens
        self.pack_sequences = pack_sequences
        self.pack_width = pack_width
        self.generation_prefill = generation_prefill
        config = backbone.model.config
        self.head_only_logits = not any(getattr(config, key, None) for key in _LOGIT_POSTPROCESSING)
        self._said_why = False

    @property
    def model(self):
        return self.backbone.model

    # ----------------------------------------------------------------- logits
    def model_refuses_packing(self) -> str | None:
        """Why this backbone runs padded whatever the inputs, or None where it packs."""
        config = self.model.config
        if sliding_window(config) is not None and config.model_type not in PER_LAYER_TYPE_MASKS:
            return "its sliding-window layers would lose their window under a packed mask"
        if config.model_type not in PACKABLE_MODEL_TYPES:
            return f"model type '{config.model_type}' is not one checked to take a custom 4-D mask"
        if config._attn_implementation not in PACKABLE_ATTENTION:
            return f"the '{config._attn_implementation}' attention kernel takes no custom mask"
        if not (self.backbone.is_encoder_decoder or self.head_only_logits):
            return "its logits are post-processed after the LM head"
        return None

    def can_pack(self, inputs: dict[str, Any]) -> bool:
        """Whether ``inputs`` may run padding-free (see :mod:`~promptlearn.methods.packing`).

        Yes for inputs that are embeddings and a padding mask alone (a method passing a cache or
        positions is left padded), on a model family and attention kernel known to take a custom mask;
        a backbone that cannot take one says why, once.
        """
        if not self.pack_sequences or set(inputs) != {"inputs_embeds", "attention_mask"}:
            return False
        reason = self.model_refuses_packing()
        if reason is not None and not self._said_why:
            log.info("%s runs padded batches: %s", self.backbone.name, reason)
            self._said_why = True
        return reason is None

    def shared_prefix_length(self, inputs: dict[str, Any], shared: int) -> int:
        """How many leading positions a causal LM may compute once: ``shared`` where every row attends to them."""
        if self.backbone.is_encoder_decoder or shared == 0 or inputs["inputs_embeds"].shape[0] == 1:
            return 0
        return shared if bool(inputs["attention_mask"][:, :shared].all()) else 0

    def _seq2seq_logits(self, inputs: dict[str, Any], labels: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        packing = plan_packing(inputs["attention_mask"], self.pack_width) if self.can_pack(inputs) else None
        contiguous = torch.equal(selected, torch.arange(selected.shape[1], device=selected.device) < selected.sum(1)[:, None])
        if packing is None or not contiguous:
            decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(labels=labels)
            return self.model(**inputs, decoder_input_ids=decoder_input_ids).logits[selected]
        return packed_seq2seq_logits(self.model, inputs, labels, selected, packing)

    def _lm_logits(self, inputs: dict[str, Any], selected: torch.Tensor, shared: int) -> torch.Tensor:
        if not self.head_only_logits:
            return self.model(**inputs).logits[:, :-1][selected]
        hidden = None
        if self.can_pack(inputs):
            hidden = packed_decoder_states(self.model, inputs, self.shared_prefix_length(inputs, shared), self.pack_width)
        if hidden is None:
            hidden = self.model.base_model(**inputs).last_hidden_state
        return self.model.get_output_embeddings()(hidden[:, :-1][selected])

    def target_logits(
        self, source: InputSource, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits at every target position (``labels != -100``), flattened in row order.

        Returns ``(logits [n, vocab], target_ids [n], row_of_each [n])``.
        """
        inputs = source.model_inputs(input_ids, attention_mask)
        if self.backbone.is_encoder_decoder:
            selected = labels != IGNORE_INDEX
            logits, targets = self._seq2seq_logits(inputs, labels, selected), labels[selected]
        else:
            labels = F.pad(labels, (inputs["inputs_embeds"].shape[1] - labels.shape[1], 0), value=IGNORE_INDEX)
            selected = labels[:, 1:] != IGNORE_INDEX  # position t predicts token t + 1
            logits, targets = self._lm_logits(inputs, selected, source.shared_prefix), labels[:, 1:][selected]
        return logits, targets, selected.nonzero()[:, 0]

    def target_log_likelihood(
        self, source: InputSource, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log-probability of each row's target tokens, and how many there are."""
        logits, targets, rows = self.target_logits(source, input_ids, attention_mask, labels)
        token_logp = logits.float().log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
        total = torch.zeros(len(labels), device=token_logp.device).index_add(0, rows, token_logp)
        return total, torch.bincount(rows, minlength=len(labels))

    # ----------------------------------------------------------------- rank classification
    def choice_scores(self, source: InputSource, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-likelihood and token count of every (example, choice) row, and the gold rows' loss."""
        counts = batch["choice_counts"]
        if "choice_token_ids" in batch:  # one-token choices: one forward over the gold batch scores them all
            logits, _, rows = self.target_logits(source, batch["input_ids"], batch["attention_mask"], batch["labels"])
            scores = logits.float().log_softmax(-1)[torch.repeat_interleave(rows, counts), batch["choice_token_ids"]]
            count = torch.ones_like(scores, dtype=torch.long)
        else:
            scores, count = self.target_log_likelihood(
                source, batch["choice_input_ids"], batch["choice_attention_mask"], batch["choice_labels"]
            )
        gold = torch.cumsum(counts, 0) - counts + batch["label"]
        return scores, count, -scores[gold].sum() / count[gold].sum()

    # ----------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(self, source: InputSource, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
        """Greedy decoding from the (prompted) inputs; causal batches must be left-padded.

        A causal LM starts decoding from a cache of every input position but the last, computed
        padding-free with the shared prompt run once (``generation_prefill="packed"``, where the
        backbone packs); or with only the shared prompt run once (``"shared"``); or from nothing
        (``"padded"``: ``generate``'s own prefill). A method's own cache (prefix tuning) is used as it
        is. ``generate`` reads ``inputs_embeds`` as spanning the cached positions too, and skips that many.
        """
        inputs = source.model_inputs(input_ids, attention_mask)
        if not self.backbone.is_encoder_decoder:
            inputs = self._generation_cache(inputs, source.shared_prefix)
        tokenizer = self.backbone.tokenizer
        output = self.model.generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        return tokenizer.batch_decode(output, skip_special_tokens=True)

    def _generation_cache(self, inputs: dict[str, Any], shared_prefix: int) -> dict[str, Any]:
        """``inputs`` with the cache decoding starts from (see :meth:`generate`)."""
        embeds = inputs["inputs_embeds"]
        if "cache" in inputs:
            cached = inputs["cache"].get_seq_length()
            inputs["inputs_embeds"] = torch.cat([embeds.new_zeros(len(embeds), cached, embeds.shape[2]), embeds], 1)
            return inputs
        if self.generation_prefill == "padded":
            return inputs
        shared = self.shared_prefix_length(inputs, shared_prefix)
        cache = None
        if self.generation_prefill == "packed" and self.can_pack(inputs):
            cache = packed_prefill_cache(self.model, inputs, shared, self.pack_width)
        if cache is None and shared:
            cache, _ = shared_prefix_states(self.model, embeds[:1, :shared], len(embeds))
        if cache is not None:
            inputs["cache"] = cache
        return inputs

    # ----------------------------------------------------------------- decisions
    def predict(self, method: ScoredMethod, batch: dict[str, Any], eval_mode: str) -> Prediction:
        """What ``method`` predicts for an evaluation batch, and the batch's gold loss.

        Rank classification picks the best (length-normalised, if set) choice score; generation
        reads the label word a generation spells out (-1: none, counted wrong).
        """
        if eval_mode == "rank":
            scores, count, loss = method.choice_scores(batch)
            if self.length_normalize:
                scores = scores / count
            matrix = choice_matrix(scores, batch["choice_counts"])
            index = matrix.argmax(dim=1)
            texts = [choices[i] for choices, i in zip(batch["choices"], index.tolist())]
            return Prediction(index, texts, loss, matrix)
        total, count = self.target_log_likelihood(method, batch["input_ids"], batch["attention_mask"], batch["labels"])
        texts = method.generate_texts(batch["gen_input_ids"], batch["gen_attention_mask"])
        index = torch.tensor([match_choice(t, c) for t, c in zip(texts, batch["choices"])], device=total.device)
        return Prediction(index, texts, -total.sum() / count.sum())
