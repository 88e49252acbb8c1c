"""PEZ for CLIP (Wen et al. 2023, *Hard Prompts Made Easy*, §4): a hard text prompt that describes images.

The same projection as :mod:`promptlearn.methods.pez` (:func:`~promptlearn.prompts.projection.project_to_vocab`),
with an image objective: the projected prompt goes through CLIP's text tower, and the loss is
``1 - cos(text embedding, mean of the unit-norm target image embeddings)``. For a fixed set of
images this ranks prompts exactly as the paper's mean per-image cosine does (the two differ by the
positive factor ``|mean|``). The gradient reaches the continuous prompt straight through the
projection; the best projected prompt seen, scored against all target images, is kept.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from promptlearn.clip.backbone import ClipBackbone
from promptlearn.utils.errors import ConfigError
from promptlearn.methods.base import OptimizerFactory
from promptlearn.prompts.init import initial_prompt
from promptlearn.prompts.projection import candidate_token_ids, hard_prompt_text, project_to_vocab


def target_direction(image_embeds: torch.Tensor) -> torch.Tensor:
    """The unit-norm mean of unit-norm image embeddings ``[N, D]``."""
    return F.normalize(F.normalize(image_embeds.float(), dim=-1).mean(dim=0), dim=-1)


class PEZClip(L.LightningModule):
    """Only the continuous ``prompt`` trains; CLIP's text tower sees its projection onto the vocabulary."""

    method_name = "pez_clip"

    def __init__(
        self,
        backbone: ClipBackbone,
        optimizer: OptimizerFactory | None = None,
        prompt_length: int = 16,
        init: str = "sampled_vocab",
        init_range: float = 0.5,
        init_vocab_size: int | None = None,
        init_text: str | None = None,
        vocab_size: int | None = None,
        token_pattern: str | None = None,
        whole_words: bool = False,
        task: object | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, ClipBackbone) or task is not None:
            raise ConfigError(
                "method=pez_clip learns a prompt from images with a CLIP model; run "
                "promptlearn-invert targets.images=path/to/folder instead of promptlearn-train"
            )
        backbone.check_prompt_length(prompt_length)
        self.clip = backbone
        self.optimizer_factory = optimizer or (lambda params: torch.optim.AdamW(params, lr=0.1, weight_decay=0.1))
        self.init = init
        self.filter_settings = {"vocab_size": vocab_size, "token_pattern": token_pattern, "whole_words": whole_words}
        table = backbone.token_embeddings
        candidates = candidate_token_ids(
            backbone.tokenizer, table.shape[0], vocab_size=vocab_size, token_pattern=token_pattern,
            exclude_ids=backbone.word_piece_ids() if whole_words else (),
        )
        self.register_buffer("candidate_ids", candidates, persistent=False)
        self.prompt = nn.Parameter(
            initial_prompt(
                init, length=prompt_length, embeddings=table, tokenizer=backbone.tokenizer, init_range=init_range,
                vocab_size=init_vocab_size or table.shape[0], text=init_text,
            )
        )
        self.best_similarity = float("-inf")
        self.best_ids: list[int] = []
        self.best_step = -1
        self.initial_similarity: float | None = None

    # The frozen CLIP is not a submodule: it stays out of state_dict and the optimizer, so it is moved here.
    def on_fit_start(self) -> None:
        self.clip.model.to(self.device)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory([self.prompt])

    def projected_ids(self) -> torch.Tensor:
        return project_to_vocab(self.prompt, self.clip.token_embeddings, self.candidate_ids).token_ids

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        projection = project_to_vocab(self.prompt, self.clip.token_embeddings, self.candidate_ids)
        text = self.clip.text_embeddings_from_prompt(projection.embeds[None])[0]
        loss = 1 - text @ target_direction(batch["image_embeds"])
        # Scoring against every target image needs no second forward: the text embedding does not depend on them.
        similarity = float(text.detach() @ target_direction(batch["all_image_embeds"]))
        if self.initial_similarity is None:
            self.initial_similarity = similarity
        if similarity > self.best_similarity:
            self.best_similarity, self.best_ids, self.best_step = similarity, projection.token_ids.tolist(), self.global_step
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/similarity", similarity)
        self.log("train/best_similarity", self.best_similarity, prog_bar=True)
        return loss

    # ----------------------------------------------------------------- output
    @torch.no_grad()
    def ids_similarity(self, token_ids: list[int], image_embeds: torch.Tensor) -> float:
        """Similarity of a prompt given as vocabulary ids, through the same embedding path as training."""
        prompt = self.clip.token_embeddings[torch.tensor(token_ids, device=self.clip.token_embeddings.device)]
        text = self.clip.text_embeddings_from_prompt(prompt[None])[0]
        return float(text @ target_direction(image_embeds.to(text.device)))

    @torch.no_grad()
    def result(self, image_embeds: torch.Tensor) -> dict[str, Any]:
        """The best prompt as text, its similarity to the images, and that of the text encoded again as a user would."""
        if not self.best_ids:
            raise ConfigError("no training step ran, so there is no prompt to report; set trainer.max_steps to 1 or more")
        text = hard_prompt_text(self.clip.tokenizer, self.best_ids)
        similarity = self.ids_similarity(self.best_ids, image_embeds)
        plain_ids = self.clip.encode_text(text.text).to(self.clip.model.device)
        direction = target_direction(image_embeds.to(plain_ids.device))
        plain = self.clip.text_embeddings_from_ids(plain_ids)[0]
        text_similarity = float(plain @ direction)
        per_image = (F.normalize(image_embeds.float().to(plain.device), dim=-1) @ plain).tolist()
        return {
            "prompt": text.text,
            "token_ids": text.token_ids,
            "retokenized_ids": text.retokenized_ids,
            "retokenize_mismatch": text.mismatch,
            "round_trips": text.mismatch == 0,
            "similarity": similarity,
            "text_similarity": text_similarity,
            "similarity_difference": text_similarity - similarity,
            "per_image_text_similarity": per_image,
            "initial_similarity": self.initial_similarity,
            "best_step": self.best_step,
            "prompt_length": self.prompt.shape[0],
            "init": self.init,
            "vocabulary_filter": self.filter_settings,
        }
