"""AutoPrompt's label-token search (Shin et al. 2020, §2.2): which tokens should stand for each class.

A logistic classifier is fit on the hidden state that predicts the label's first token;
substituting each output word embedding for that state scores the token per class, and the top
tokens become the class's label tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from promptlearn.data.encoding import IGNORE_INDEX


def first_of_each_row(rows: torch.Tensor) -> torch.Tensor:
    """Mask of the first entry of each row in a row-sorted index vector (``target_logits``' order)."""
    first = torch.ones_like(rows, dtype=torch.bool)
    first[1:] = rows[1:] != rows[:-1]
    return first


def fit_logistic_regression(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float = 1e-3, steps: int = 100
) -> nn.Linear:
    """A multinomial logistic regression on ``features`` (full-batch L-BFGS, L2-regularised)."""
    features = features.detach().float()
    classifier = nn.Linear(features.shape[1], num_classes).to(features.device)
    optimizer = torch.optim.LBFGS(classifier.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(classifier(features), labels) + weight_decay * classifier.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return classifier.requires_grad_(False)


def class_margins(logits: torch.Tensor) -> torch.Tensor:
    """``[classes, n]``: each class's logit minus the log-sum-exp of the others'.

    This orders tokens as ``p(class | token)`` does, but does not saturate at 1 for large logits.
    """
    classes = torch.arange(logits.shape[1], device=logits.device)
    return torch.stack([logits[:, y] - logits[:, classes != y].logsumexp(-1) for y in range(logits.shape[1])])


class LabelTokenSearch:
    """AutoPrompt's label-token search, for a module with ``label_token_ids``, ``label_allowed`` and
    ``label_search_examples`` (see :class:`~promptlearn.methods.autoprompt.AutoPrompt`)."""

    def _label_search_batches(self) -> Iterator[dict[str, Any]]:
        seen = 0
        for batch in self.trainer.train_dataloader:
            if seen >= self.label_search_examples:
                return
            seen += len(batch["label"])
            yield self.trainer.strategy.batch_to_device(batch)

    @torch.no_grad()
    def label_features(self, batch: dict[str, Any]) -> torch.Tensor:
        """``[batch, d]``: the hidden state the LM head reads at each row's first label position."""
        captured: list[torch.Tensor] = []
        head = self.model.get_output_embeddings()
        hook = head.register_forward_hook(lambda module, args, output: captured.append(args[0]))
        packing, self.scorer.pack_sequences = self.scorer.pack_sequences, False  # the head's input, in the padded layout
        try:
            _, _, rows = self.target_logits(batch["input_ids"], batch["attention_mask"], batch["labels"])
        finally:
            hook.remove()
            self.scorer.pack_sequences = packing
        hidden, labels = captured[-1], batch["labels"]
        if hidden.dim() == 3:  # the head ran on every position; pick the target ones as target_logits does
            if self.backbone.is_encoder_decoder:
                hidden = hidden[labels != IGNORE_INDEX]
            else:
                labels = F.pad(labels, (hidden.shape[1] - labels.shape[1], 0), value=IGNORE_INDEX)
                hidden = hidden[:, :-1][labels[:, 1:] != IGNORE_INDEX]
        return hidden[first_of_each_row(rows)]

    def search_label_tokens(self, batches: Iterable[dict[str, Any]]) -> torch.Tensor:
        """``[classes, label_tokens_per_class]`` token ids, the highest-scoring per class first."""
        features, labels = [], []
        for batch in batches:
            features.append(self.label_features(batch).float())
            labels.append(batch["label"])
        classifier = fit_logistic_regression(torch.cat(features), torch.cat(labels), self.task.num_choices)
        class_logits = classifier(self.model.get_output_embeddings().weight.detach().float())  # [vocab, classes]
        margins = class_margins(class_logits)
        rows = min(margins.shape[1], len(self.label_allowed))  # output and input vocabularies may differ in padding rows
        margins = margins[:, :rows].masked_fill(~self.label_allowed[:rows], float("-inf"))
        return margins.topk(self.label_token_ids.shape[1], dim=1).indices
