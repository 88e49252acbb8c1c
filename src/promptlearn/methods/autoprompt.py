"""AutoPrompt (Shin et al. 2020): a gradient-guided search for discrete trigger tokens.

Each training step takes the gradient of the label log-likelihood with respect to the trigger
embeddings and, as in HotFlip, its dot product with every vocabulary embedding: a first-order
estimate of how much swapping in each token would raise the likelihood. At one trigger position
(drawn per step) the top-k candidates are re-scored exactly on the batch, and the best replaces the
current token if it beats it. The triggers precede the input (the encoder input for T5), so T5
scores the label in its decoder and a causal LM scores it as the next tokens.

Optional label-token search (Shin et al. §2.2): a logistic classifier is fit on the hidden state
that predicts the label's first token; substituting each output word embedding for that state
scores the token per class, and the top tokens become the class's label tokens, scored at that
position by the log of their summed probabilities.

The objective (``objective``) is Shin et al.'s, the gold label's log-likelihood over the whole
vocabulary (``label_likelihood``); or the gold choice's log-probability among the task's choices
(``choice_cross_entropy``), which a trigger cannot improve by raising every label word at once.

The search is not gradient descent on parameters: it runs under Lightning's manual optimisation
with no optimizer, so the Trainer still drives steps, validation, checkpoints and logging.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from promptlearn.utils.atomic import atomic_json_dump
from promptlearn.backbones import Backbone
from promptlearn.data.encoding import IGNORE_INDEX
from promptlearn.data.tasks import TaskInfo
from promptlearn.utils.errors import ConfigError, NonFiniteLossError
from promptlearn.methods.autoprompt_labels import LabelTokenSearch, first_of_each_row
from promptlearn.methods.base import FrozenBackboneModule, OptimizerFactory
from promptlearn.methods.settings import arguments, at_least
from promptlearn.prompts.prepend import prepend_prompt
from promptlearn.prompts.projection import candidate_token_ids, hard_prompt_text

log = logging.getLogger(__name__)

OBJECTIVES = ("label_likelihood", "choice_cross_entropy")
# The search has no optimizer on purpose; Lightning substitutes a no-op one and would warn each fit.
warnings.filterwarnings("ignore", message=r".*configure_optimizers. returned .None.")


class AutoPrompt(LabelTokenSearch, FrozenBackboneModule):
    """Only ``trigger_ids`` (``trigger_length`` token ids, and the label tokens if searched) change."""

    method_name = "autoprompt"
    virtual_tokens_shared_by_rows = True

    def __init__(
        self,
        backbone: Backbone,
        task: TaskInfo,
        optimizer: OptimizerFactory | None = None,
        trigger_length: int = 3,
        num_candidates: int = 10,
        initial_trigger: str = "the",
        vocab_size: int | None = None,
        token_pattern: str | None = None,
        exclude_label_tokens: bool = True,
        label_search: bool = False,
        label_tokens_per_class: int = 3,
        label_search_examples: int = 256,
        objective: str = "label_likelihood",
        **kwargs,
    ) -> None:
        self.check_settings(arguments(locals()))
        super().__init__(backbone, task, optimizer, **kwargs)
        self.automatic_optimization = False
        if objective not in OBJECTIVES:
            raise ConfigError(f"method.objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        self.objective = objective
        word_ids = [backbone.tokenizer(w, add_special_tokens=False)["input_ids"] for w in task.label_words]
        if objective == "choice_cross_entropy" and (task.num_choices < 2 or any(len(ids) != 1 for ids in word_ids)):
            raise ConfigError(
                "method.objective=choice_cross_entropy needs label words of one token each; these tokenize to "
                f"{[len(ids) for ids in word_ids]} tokens. Use method.objective=label_likelihood, or one-token label words"
            )
        choice_ids = [ids[0] for ids in word_ids] if objective == "choice_cross_entropy" else []
        self.register_buffer("choice_token_ids", torch.tensor(choice_ids, dtype=torch.long), persistent=False)
        if label_search and (task.num_choices < 2 or label_tokens_per_class < 1):
            raise ConfigError(
                "method.label_search needs a classification task with label_words and method.label_tokens_per_class >= 1"
            )
        tokenizer = backbone.tokenizer
        label_ids = [i for ids in word_ids for i in ids]
        candidates = candidate_token_ids(
            tokenizer,
            backbone.vocab_size,
            vocab_size=vocab_size,
            token_pattern=token_pattern,
            exclude_ids=label_ids if exclude_label_tokens else (),
        )
        self.register_buffer("allowed", self._mask(candidates), persistent=False)
        if label_search:  # label tokens come from the same filtered vocabulary, the label words' tokens included
            label_candidates = candidate_token_ids(
                tokenizer, backbone.vocab_size, vocab_size=vocab_size, token_pattern=token_pattern
            )
            self.register_buffer("label_allowed", self._mask(label_candidates), persistent=False)
        self.filter_settings = {
            "vocab_size": vocab_size, "token_pattern": token_pattern, "exclude_label_tokens": exclude_label_tokens
        }
        self.num_candidates = min(num_candidates, len(candidates))
        initial = tokenizer(initial_trigger, add_special_tokens=False)["input_ids"]
        if not initial:
            raise ConfigError("method.initial_trigger tokenizes to nothing; give a word such as 'the'")
        initial = (initial * trigger_length)[:trigger_length]
        self.trigger_ids = nn.Parameter(torch.tensor(initial, dtype=torch.long), requires_grad=False)
        self.label_search = label_search
        self.label_tokens_per_class = label_tokens_per_class
        self.label_search_examples = label_search_examples
        shape = (task.num_choices, label_tokens_per_class) if label_search else (0, 0)
        self.label_token_ids = nn.Parameter(torch.full(shape, -1, dtype=torch.long), requires_grad=False)
        self._trigger_override: torch.Tensor | None = None

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        super().check_settings(settings)
        at_least(settings, "trigger_length", 1, "3", label="trigger length")
        at_least(settings, "num_candidates", 1, "10")
        at_least(settings, "vocab_size", 1, "null", optional=True)
        at_least(settings, "label_tokens_per_class", 1, "3")
        at_least(settings, "label_search_examples", 1, "256")

    def _mask(self, token_ids: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(self.backbone.vocab_size, dtype=torch.bool)
        mask[token_ids] = True
        return mask

    # ----------------------------------------------------------------- inputs
    @property
    def num_virtual_tokens(self) -> int:
        return self.trigger_ids.shape[0]

    @property
    def vocab_embeddings(self) -> torch.Tensor:
        return self.backbone.vocabulary_embeddings()  # as the embedding module returns them

    @contextmanager
    def triggers(self, embeds: torch.Tensor) -> Iterator[None]:
        """Run the backbone with ``embeds`` (``[trigger_length, d]``) in place of the current triggers."""
        self._trigger_override = embeds
        try:
            yield
        finally:
            self._trigger_override = None

    def embed_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, mask = super().embed_inputs(input_ids, attention_mask)
        trigger = self._trigger_override
        if trigger is None:
            trigger = self.vocab_embeddings[self.trigger_ids]
        return prepend_prompt(trigger, embeds, mask)

    # ----------------------------------------------------------------- objective
    @property
    def uses_label_tokens(self) -> bool:
        return self.label_search and bool((self.label_token_ids >= 0).all())

    def label_log_likelihood(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's objective (:data:`OBJECTIVES`) and how many tokens it sums, under the current triggers."""
        among_choices = self.objective == "choice_cross_entropy"
        if not (among_choices or self.uses_label_tokens):
            return self.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])
        scores = self.class_scores(batch)
        if among_choices:
            scores = scores.log_softmax(-1)
        return scores.gather(1, batch["label"][:, None]).squeeze(1), torch.ones_like(batch["label"])

    def class_scores(self, batch: dict[str, Any]) -> torch.Tensor:
        """``[batch, classes]``: each class's log-probability at the label position, over the whole vocabulary
        (its label tokens', if searched; else its one-token label word's)."""
        if self.uses_label_tokens:
            return self.label_token_scores(batch)
        logits, _, rows = self.target_logits(batch["input_ids"], batch["attention_mask"], batch["labels"])
        return logits[first_of_each_row(rows)].float().log_softmax(-1)[:, self.choice_token_ids]

    def label_token_scores(self, batch: dict[str, Any]) -> torch.Tensor:
        """``[batch, classes]``: log of the summed probability of each class's label tokens at the label position."""
        logits, _, rows = self.target_logits(batch["input_ids"], batch["attention_mask"], batch["labels"])
        logp = logits[first_of_each_row(rows)].float().log_softmax(-1)
        return logp[:, self.label_token_ids].logsumexp(-1)

    def _objective(self, batch: dict[str, Any]) -> torch.Tensor:
        total, count = self.label_log_likelihood(batch)
        return total.sum() / count.sum()

    def trigger_gradient(self, batch: dict[str, Any]) -> torch.Tensor:
        """Gradient of the batch's mean label log-likelihood with respect to the trigger embeddings."""
        embeds = self.vocab_embeddings[self.trigger_ids].detach().requires_grad_(True)
        with torch.enable_grad(), self.triggers(embeds):
            (grad,) = torch.autograd.grad(self._objective(batch), embeds)
        return self._reduce(grad, "mean")

    def candidate_scores(self, grad: torch.Tensor) -> torch.Tensor:
        """``[trigger_length, vocab]``: each token's embedding dotted with the gradient; -inf where filtered out."""
        scores = grad.float() @ self.vocab_embeddings.detach().float().T
        return scores.masked_fill(~self.allowed, float("-inf"))

    @torch.no_grad()
    def score_triggers(self, batch: dict[str, Any], trigger_ids: torch.Tensor) -> torch.Tensor:
        """Summed label log-likelihood of the batch with ``trigger_ids`` as the trigger."""
        with self.triggers(self.vocab_embeddings[trigger_ids]):
            total, _ = self.label_log_likelihood(batch)
        return self._reduce(total.sum(), "sum")

    def _reduce(self, tensor: torch.Tensor, op: str) -> torch.Tensor:
        """Combine across processes, so that every rank makes the same swap."""
        if self._trainer is None:
            return tensor
        return self.trainer.strategy.reduce(tensor, reduce_op=op)

    def search_step(self, batch: dict[str, Any], position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One AutoPrompt step at ``position``: returns (the kept triggers, their summed log-likelihood)."""
        scores = self.candidate_scores(self.trigger_gradient(batch))[position]
        candidates = scores.topk(self.num_candidates).indices
        best_ids, best_score = self.trigger_ids.detach().clone(), self.score_triggers(batch, self.trigger_ids)
        for candidate in candidates:
            ids = self.trigger_ids.detach().clone()
            ids[position] = candidate
            score = self.score_triggers(batch, ids)
            if score > best_score:
                best_ids, best_score = ids, score
        return best_ids, best_score

    # ----------------------------------------------------------------- loops
    def configure_optimizers(self) -> None:
        return None

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [self.trigger_ids, self.label_token_ids] if self.label_search else [self.trigger_ids]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        # The position comes from the step number, so that every rank (and a resumed run) picks the same one.
        generator = torch.Generator().manual_seed(self.global_step)
        position = int(torch.randint(self.num_virtual_tokens, (1,), generator=generator))
        ids, total = self.search_step(batch, position)
        self.trigger_ids.copy_(ids)
        loss = -total / self._reduce(self.label_token_count(batch), "sum")
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"label log-likelihood is {-loss.item()} at step {self.global_step}; check the data")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        self.optimizers().step()  # counts the step: max_steps and val_check_interval are in search steps
        return loss

    def label_token_count(self, batch: dict[str, Any]) -> torch.Tensor:
        """How many label tokens :meth:`label_log_likelihood` sums over in this batch."""
        if self.uses_label_tokens or self.objective == "choice_cross_entropy":
            return torch.tensor(float(len(batch["label"])), device=batch["label"].device)
        return (batch["labels"] != IGNORE_INDEX).sum().float()

    def on_train_start(self) -> None:
        if self.label_search and not self.uses_label_tokens:
            found = self.search_label_tokens(self._label_search_batches())
            self.label_token_ids.copy_(self.trainer.strategy.broadcast(found, src=0))  # one verbalizer on every rank
            log.info("autoprompt label tokens: %s", self.label_token_texts())

    def on_train_end(self) -> None:
        log.info("autoprompt trigger: %r %s", self.trigger_text(), self.trigger_ids.tolist())

    def choice_scores(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.uses_label_tokens:
            return super().choice_scores(batch)
        scores = self.label_token_scores(batch)
        gold = scores.gather(1, batch["label"][:, None])
        return scores.flatten(), torch.ones(scores.numel(), dtype=torch.long, device=scores.device), -gold.mean()

    # ----------------------------------------------------------------- output
    def trigger_text(self) -> str:
        return hard_prompt_text(self.backbone.tokenizer, self.trigger_ids.tolist()).text

    def label_token_texts(self) -> list[list[str]]:
        decode = self.backbone.tokenizer.decode
        return [[decode([i]) for i in row] for row in self.label_token_ids.tolist()]

    def prompt_hparams(self) -> dict[str, object]:
        return {
            "trigger_length": self.num_virtual_tokens,
            "label_search": self.label_search,
            "label_tokens_per_class": self.label_tokens_per_class,
        }

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        state = {"trigger_ids": self.trigger_ids.detach()}
        if self.label_search:
            state["label_token_ids"] = self.label_token_ids.detach()
        return state

    def trigger_record(self) -> dict[str, object]:
        text = hard_prompt_text(self.backbone.tokenizer, self.trigger_ids.tolist())
        record: dict[str, object] = {
            "trigger": text.text,
            "trigger_ids": text.token_ids,
            "retokenized_ids": text.retokenized_ids,
            "retokenize_mismatch": text.mismatch,
            "vocabulary_filter": self.filter_settings,
        }
        if self.uses_label_tokens:
            record["label_tokens"] = self.label_token_texts()
            record["label_token_ids"] = self.label_token_ids.tolist()
        return record

    def save_prompt(self, path: str | Path) -> Path:
        """``prompt.pt`` as every method writes it, and beside it ``trigger.json``: the readable trigger and its ids."""
        saved = super().save_prompt(path)
        atomic_json_dump(self.trigger_record(), saved.with_name("trigger.json"))
        return saved

