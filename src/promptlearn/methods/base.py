"""FrozenBackboneModule: what every prompt method shares.

It owns the frozen backbone, the target-only loss for seq2seq and causal LMs, evaluation by rank
classification (log-likelihood of each verbalized label) or by generation (exact match), metrics,
the optimizer built from config, and prompt-only checkpoints.

A method changes how inputs reach the backbone by overriding :meth:`embed_inputs` (virtual
tokens in the input) or :meth:`model_inputs` (anything else the backbone's forward takes, such as
a prefix cache), and sets :attr:`num_virtual_tokens` to what it adds to the sequence length.
On its own this class adds nothing to the backbone, so evaluating it measures the task template
with no learned prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from promptlearn.backbones import Backbone
from promptlearn.checkpointing import TrainableOnlyCheckpoints
from promptlearn.data.encoding import IGNORE_INDEX
from promptlearn.data.tasks import TaskInfo
from promptlearn.errors import CheckpointError, ConfigError, NonFiniteLossError
from promptlearn.methods.packing import PACKABLE_ATTENTION, PACKABLE_MODEL_TYPES, layout, plan_packing
from promptlearn.metrics import Predictions, build_metrics, match_choice
from promptlearn.prompts.checkpoint import check_compatible, read_prompt, save_prompt
from promptlearn.prompts.prefix_cache import prefix_cache

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

# Models whose logits are post-processed after the LM head; for them the full forward is used.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale")


def best_choice(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Index of the highest-scoring choice of each example, from a flat score per (example, choice)."""
    padded = torch.full((len(counts), int(counts.max())), float("-inf"), device=scores.device)
    example = torch.repeat_interleave(torch.arange(len(counts), device=scores.device), counts)
    offsets = torch.cumsum(counts, 0) - counts
    position = torch.arange(len(scores), device=scores.device) - offsets[example]
    padded[example, position] = scores.float()
    return padded.argmax(dim=1)


class FrozenBackboneModule(TrainableOnlyCheckpoints, L.LightningModule):
    """A frozen language model evaluated (and, in subclasses, prompted) on a text-to-text task."""

    method_name = "no_prompt"
    num_virtual_tokens = 0
    # True where every row's virtual tokens are one and the same tensor (not an ensemble's or a task
    # mixture's per-row prompts): a causal LM then computes them once for all rows.
    virtual_tokens_shared_by_rows = False
    on_nonfinite = "stop"  # or "skip": what a NaN or infinite training loss does (set from config)
    max_consecutive_skips = 10
    consecutive_skips = 0
    skipped_steps = 0

    def __init__(
        self,
        backbone: Backbone,
        task: TaskInfo,
        optimizer: OptimizerFactory | None = None,
        length_normalize: bool = False,
        max_new_tokens: int = 32,
        backbone_dropout: bool = True,
        pack_sequences: bool = True,
        pack_width: int = 512,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.model = backbone.model
        self.task = task
        self.optimizer_factory = optimizer
        self.model.train(backbone_dropout)  # frozen is not eval: the paper keeps T5's dropout on while training
        self.length_normalize = length_normalize
        self.max_new_tokens = max_new_tokens
        if pack_width < 1:
            raise ConfigError(f"pack_width must be a positive number of tokens, got {pack_width}")
        self.pack_sequences = pack_sequences
        self.pack_width = pack_width
        self.metrics = nn.ModuleDict({stage: build_metrics(task) for stage in ("val", "test")})
        self.strict_loading = False  # checkpoints hold the trainable tensors only
        config = self.model.config
        self._head_only_logits = not any(getattr(config, key, None) for key in _LOGIT_POSTPROCESSING)

    # ----------------------------------------------------------------- inputs
    def embed_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embeddings and attention mask for the encoder (seq2seq) or the decoder (causal LM).

        Methods that add virtual tokens to the input sequence (prompt tuning, P-tuning) override this.
        """
        return self.model.get_input_embeddings()(input_ids), attention_mask

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
        """Keyword arguments for the backbone's forward and ``generate``.

        ``inputs_embeds`` and ``attention_mask`` always; methods that act inside the layers (prefix
        tuning) override this to add, for example, a prefix ``cache``. For causal LMs, any positions
        that ``inputs_embeds`` holds beyond ``input_ids`` are taken to come first.
        """
        embeds, mask = self.embed_inputs(input_ids, attention_mask)
        return {"inputs_embeds": embeds, "attention_mask": mask}

    def check_fits(self, longest_sequence: int) -> None:
        """Fail early if prompt plus the longest example exceed the backbone's positions."""
        limit = self.backbone.max_positions
        if limit is not None and self.num_virtual_tokens + longest_sequence > limit:
            raise ConfigError(
                f"{self.num_virtual_tokens} prompt tokens + the longest example ({longest_sequence} tokens) exceed "
                f"{self.backbone.name}'s {limit} positions; shorten the prompt or lower data.max_source_length"
            )

    # ----------------------------------------------------------------- scoring
    def can_pack(self, inputs: dict[str, Any]) -> bool:
        """Whether ``inputs`` may run padding-free (see :mod:`~promptlearn.methods.packing`).

        Yes for inputs that are embeddings and a padding mask alone (a method passing a cache or
        positions is left padded), on a model family and attention kernel known to take a custom mask.
        """
        config = self.model.config
        return (
            self.pack_sequences
            and set(inputs) == {"inputs_embeds", "attention_mask"}
            and config.model_type in PACKABLE_MODEL_TYPES
            and config._attn_implementation in PACKABLE_ATTENTION
            and not getattr(config, "use_sliding_window", False)  # a custom mask would drop the window
            and (self.backbone.is_encoder_decoder or self._head_only_logits)
        )

    def shared_prefix_length(self, inputs: dict[str, Any]) -> int:
        """How many leading positions of a causal LM's ``inputs`` are the same in every row: the virtual
        tokens, where the method says every row has the same (:attr:`virtual_tokens_shared_by_rows`)."""
        length, rows = self.num_virtual_tokens, inputs["inputs_embeds"].shape[0]
        if self.backbone.is_encoder_decoder or not self.virtual_tokens_shared_by_rows or rows == 1:
            return 0
        return length if bool(inputs["attention_mask"][:, :length].all()) else 0

    def _seq2seq_logits(self, inputs: dict[str, Any], labels: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """T5's logits at the ``selected`` target positions; padding-free when that pays.

        Packed, each example's decoder tokens go into the same packed row as its encoder tokens, and
        cross-attention is masked to its own sequence, so no padded tensor is ever rebuilt.
        """
        decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(labels=labels)
        packing = plan_packing(inputs["attention_mask"], self.pack_width) if self.can_pack(inputs) else None
        targets = selected.sum(1)
        contiguous = torch.equal(selected, torch.arange(selected.shape[1], device=selected.device) < targets[:, None])
        if packing is None or not contiguous:
            return self.model(**inputs, decoder_input_ids=decoder_input_ids).logits[selected]
        decoder = layout(packing.bins, targets.tolist(), selected.shape[1], selected.device)
        embeds = inputs["inputs_embeds"]
        states = self.model.get_encoder()(
            inputs_embeds=packing.pack(embeds), attention_mask=packing.attention_mask(embeds.dtype, causal=False)
        ).last_hidden_state
        logits = self.model(
            encoder_outputs=(states,),
            attention_mask=decoder.cross_attention_mask(packing, embeds.dtype),
            decoder_input_ids=decoder.pack(decoder_input_ids[..., None])[..., 0],
            decoder_attention_mask=decoder.attention_mask(embeds.dtype, causal=True),
            use_cache=False,
        ).logits
        return logits.flatten(0, 1)[decoder.positions()[selected]]

    def _decoder_hidden_states(self, inputs: dict[str, Any]) -> torch.Tensor:
        """A causal LM's last hidden states ``[batch, length, d]``: padding-free when that pays, with a
        prefix shared by every row computed once."""
        if not self.can_pack(inputs):
            return self.model.base_model(**inputs).last_hidden_state
        embeds, mask = inputs["inputs_embeds"], inputs["attention_mask"]
        shared = self.shared_prefix_length(inputs)  # computing it once pays, packed or not
        packing = plan_packing(mask[:, shared:], self.pack_width, min_saving=None if shared else 0.1)
        if packing is None:
            return self.model.base_model(**inputs).last_hidden_state
        cache, prefix_states = None, embeds[:, :0]
        if shared:
            prefix = self.model.base_model(inputs_embeds=embeds[:1, :shared], use_cache=True)
            layers = prefix.cache.layers
            keys_values = torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in layers])
            cache = prefix_cache(keys_values, packing.rows)
            prefix_states = prefix.last_hidden_state.expand(len(embeds), -1, -1)
        packed = self.model.base_model(
            inputs_embeds=packing.pack(embeds[:, shared:]),
            attention_mask=packing.attention_mask(embeds.dtype, causal=True, prefix=shared),
            position_ids=packing.position_ids + shared,
            cache=cache,
            use_cache=False,
        )
        return torch.cat([prefix_states, packing.unpack(packed.last_hidden_state)], dim=1)

    def _lm_logits(self, inputs: dict[str, Any], selected: torch.Tensor) -> torch.Tensor:
        """Causal LM logits at the ``selected`` positions only; a [batch, seq, vocab] tensor is never built."""
        if not self._head_only_logits:
            return self.model(**inputs).logits[:, :-1][selected]
        hidden = self._decoder_hidden_states(inputs)
        return self.model.get_output_embeddings()(hidden[:, :-1][selected])

    def target_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits at every target position (``labels != -100``), flattened in row order.

        Returns ``(logits [n, vocab], target_ids [n], row_of_each [n])``.
        """
        inputs = self.model_inputs(input_ids, attention_mask)
        if self.backbone.is_encoder_decoder:
            selected = labels != IGNORE_INDEX
            logits, targets = self._seq2seq_logits(inputs, labels, selected), labels[selected]
        else:
            labels = F.pad(labels, (inputs["inputs_embeds"].shape[1] - labels.shape[1], 0), value=IGNORE_INDEX)
            selected = labels[:, 1:] != IGNORE_INDEX  # position t predicts token t + 1
            logits, targets = self._lm_logits(inputs, selected), labels[:, 1:][selected]
        return logits, targets, selected.nonzero()[:, 0]

    def target_log_likelihood(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log-probability of each row's target tokens, and how many there are."""
        logits, targets, rows = self.target_logits(input_ids, attention_mask, labels)
        token_logp = logits.float().log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
        total = torch.zeros(len(labels), device=token_logp.device).index_add(0, rows, token_logp)
        return total, torch.bincount(rows, minlength=len(labels))

    def choice_scores(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-likelihood and token count of every (example, choice) row, and the gold rows' loss."""
        counts = batch["choice_counts"]
        if "choice_token_ids" in batch:  # one-token choices: one forward over the gold batch scores them all
            logits, _, rows = self.target_logits(batch["input_ids"], batch["attention_mask"], batch["labels"])
            scores = logits.float().log_softmax(-1)[torch.repeat_interleave(rows, counts), batch["choice_token_ids"]]
            count = torch.ones_like(scores, dtype=torch.long)
        else:
            scores, count = self.target_log_likelihood(
                batch["choice_input_ids"], batch["choice_attention_mask"], batch["choice_labels"]
            )
        gold = torch.cumsum(counts, 0) - counts + batch["label"]
        return scores, count, -scores[gold].sum() / count[gold].sum()

    @torch.no_grad()
    def generate_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
        """Greedy decoding from the (prompted) inputs; causal batches must be left-padded."""
        tokenizer = self.backbone.tokenizer
        output = self.model.generate(
            **self.model_inputs(input_ids, attention_mask),
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        return tokenizer.batch_decode(output, skip_special_tokens=True)

    # ----------------------------------------------------------------- loops
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        total, count = self.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])
        loss = -total.sum() / count.sum()
        if not self.loss_is_usable(loss):
            return None  # Lightning skips the backward pass and the optimizer step
        self.log("train/loss", loss, prog_bar=True, batch_size=len(total))
        return loss

    def loss_is_usable(self, loss: torch.Tensor) -> bool:
        """Whether to train on ``loss``; a NaN or infinite one stops the run, or is skipped (``on_nonfinite``).

        Skipping needs the step to be skipped on every rank alike, so with ``skip`` under DDP any
        rank's bad loss counts for all (one small all-reduce a step; ``stop`` needs none).
        """
        finite = bool(torch.isfinite(loss))
        if self.on_nonfinite == "skip" and self._trainer is not None:
            finite = bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))
        if finite:
            self.consecutive_skips = 0
            return True
        where = f"training loss is {loss.item()} at step {self.global_step}"
        if self.on_nonfinite == "stop":
            raise NonFiniteLossError(f"{where}; lower optimizer.lr or check the data, or set on_nonfinite=skip")
        self.consecutive_skips += 1
        self.skipped_steps += 1
        if self.consecutive_skips > self.max_consecutive_skips:
            raise NonFiniteLossError(
                f"{where}, the {self.consecutive_skips}th non-finite loss in a row; lower optimizer.lr or check the data"
            )
        self.log("train/skipped_steps", float(self.skipped_steps))
        return False

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> None:
        if self.task.eval_mode == "rank":
            scores, count, loss = self.choice_scores(batch)
            if self.length_normalize:
                scores = scores / count
            index = best_choice(scores, batch["choice_counts"])
            texts = [choices[i] for choices, i in zip(batch["choices"], index.tolist())]
        else:
            total, count = self.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])
            loss = -total.sum() / count.sum()
            texts = self.generate_texts(batch["gen_input_ids"], batch["gen_attention_mask"])
            # Classification metrics read the label word a generation spells out (-1: none, counted wrong).
            index = torch.tensor([match_choice(t, c) for t, c in zip(texts, batch["choices"])], device=loss.device)
        self.log(f"{stage}/loss", loss, batch_size=len(batch["label"]))
        predictions = Predictions(index, batch["label"], texts, batch["answers"], batch["group"], batch["task"])
        self.metrics[stage].update(predictions)

    def _log_epoch_metrics(self, stage: str) -> None:
        """``<stage>/<metric>`` and ``<stage>/score``; a mixture adds ``<stage>/<task>/<metric>`` per sub-task."""
        values = self.metrics[stage].compute()
        self.metrics[stage].reset()
        self.log_dict({f"{stage}/{name}": value for name, value in values.items() if "/" in name})
        self.log_dict({f"{stage}/{name}": value for name, value in values.items() if "/" not in name},
                      prog_bar=(stage == "val"))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    # ----------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = self.trainable_parameters()
        if not params:
            raise ConfigError(f"method '{self.method_name}' has nothing to train; evaluate it with promptlearn-eval")
        if self.optimizer_factory is None:
            raise ConfigError("no optimizer given; choose one with optimizer=adafactor or optimizer=adamw")
        return self.optimizer_factory(params)

    # ----------------------------------------------------------------- checkpoints
    def prompt_hparams(self) -> dict[str, object]:
        """What a saved prompt records about how it was built (subclasses add their settings)."""
        return {}

    def save_prompt(self, path: str | Path) -> Path:
        """Write the trainable tensors alone (kilobytes), with the backbone they belong to."""
        return save_prompt(path, self.trainable_state_dict(), self.method_name, self.backbone.fingerprint(), self.prompt_hparams())

    def load_prompt(self, path: str | Path) -> None:
        """Load a prompt saved by :meth:`save_prompt`, refusing one from another method or backbone."""
        payload = read_prompt(path)
        check_compatible(payload, path, self.method_name, self.backbone.fingerprint())
        self._require_keys(payload["state_dict"], str(path))
        own = self.trainable_state_dict()
        for key, value in payload["state_dict"].items():
            if key in own and own[key].shape != value.shape:
                raise CheckpointError(
                    f"{path}: '{key}' has shape {tuple(value.shape)} but this {self.method_name} expects "
                    f"{tuple(own[key].shape)}; match the method settings it was trained with: {payload['hparams']}"
                )
        self.load_state_dict(payload["state_dict"], strict=False)
