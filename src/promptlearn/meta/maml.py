"""MetaPrompting (Hou et al. 2022): MAML over a soft prompt for a frozen backbone.

The meta-parameter is a prompt-tuning prompt. For each episode the inner loop takes ``inner_steps``
SGD steps on the support loss, with gradients taken by ``torch.func.grad`` through the frozen
backbone; the outer loss is the query loss of the adapted prompt, backpropagated by ordinary
autograd (second order: through the inner gradients; first order: around them). Options: learned
per-parameter inner learning rates (Meta-SGD, Li et al. 2017) and MAML++'s annealed per-step query
losses (Antoniou et al. 2019). The outer optimizer comes from config.

The loss of an episode is cross-entropy over its N label words, each scored by its log-likelihood
(rank classification, as every method evaluates), by the shared
:class:`~promptlearn.methods.scoring.Scorer` with the prompt as an argument
(:mod:`~promptlearn.meta.episode_prompts`). One task and a batch of tasks take the same path: a
single task is a batch of one.

Distributed runs: each rank adapts its own share of a meta-step's tasks; every task's query loss
goes through ``manual_backward``, all but the last inside ``block_backward_sync``, so DDP
all-reduces the accumulated gradient once per meta-step and the ranks' prompts stay identical.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import ParallelStrategy
from torch import nn
from torch.func import grad
from torch.nn.attention import SDPBackend, sdpa_kernel
from torchmetrics import CatMetric, MeanMetric

from promptlearn.backbones import Backbone
from promptlearn.utils.errors import ConfigError, NonFiniteLossError, unknown_name
from promptlearn.utils.memory import peak_bytes
from promptlearn.methods.checkpoint_hooks import TrainableOnlyCheckpoints
from promptlearn.meta.batch_memory import BatchingChoice, extrapolate_peak, memory_budget
from promptlearn.meta.episode_prompts import episode_logits
from promptlearn.meta.meta_test import META_INIT, MetaEvaluation
from promptlearn.meta.msl import msl_weights
from promptlearn.meta.task_batching import mean_by_task, stack_task_batches
from promptlearn.methods.base import OptimizerFactory
from promptlearn.methods.scoring import Scorer
from promptlearn.methods.settings import arguments, at_least, check_init, positive
from promptlearn.methods.prompt_tuning import PromptTuning
from promptlearn.prompts.checkpoint import save_prompt
from promptlearn.prompts.init import INITS, initial_prompt

log = logging.getLogger(__name__)



class MetaPromptTuning(MetaEvaluation, TrainableOnlyCheckpoints, L.LightningModule):
    """Meta-learns a prompt-tuning init over episodes; compares it with standard inits at meta-test."""

    method_name = "metaprompting"

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerFactory | None = None,
        prompt_length: int = 20,
        init: str = "sampled_vocab",
        init_range: float = 0.5,
        init_vocab_size: int = 5000,
        init_text: str | None = None,
        inner_steps: int = 3,
        inner_lr: float = 0.1,
        first_order: bool = False,
        learn_inner_lr: bool = False,
        per_step_loss_weights: bool = True,
        msl_anneal_steps: int = 100,
        eval_inner_steps: int | None = None,
        eval_inits: Sequence[str] = ("random_uniform", "sampled_vocab", "class_label"),
        length_normalize: bool = False,
        backbone_dropout: bool = False,
        batch_tasks: bool | str = "auto",
        max_batch_memory_gib: float | None = None,
        eval_tasks_per_pass: int = 4,
        seed: int = 0,
    ) -> None:
        self.check_settings(arguments(locals()))
        super().__init__()
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints hold the trainable tensors only
        self.backbone = backbone
        self.model = backbone.model
        if self.model.is_activation_checkpointing:
            raise ConfigError(
                "gradient checkpointing does not compose with torch.func; turn it off for meta-learning"
            )
        self.optimizer_factory = optimizer
        self.init_settings = dict(
            length=prompt_length, init_range=init_range, vocab_size=init_vocab_size, text=init_text
        )
        self.init = init
        self.model.train(backbone_dropout)
        self.scorer = Scorer(backbone, length_normalize=length_normalize)
        self.prompt = nn.Parameter(
            initial_prompt(
                init, embeddings=backbone.vocabulary_embeddings(), tokenizer=backbone.tokenizer,
                **self.init_settings,
            )
        )
        self.inner_steps = inner_steps
        self.eval_inner_steps = inner_steps if eval_inner_steps is None else eval_inner_steps
        self.base_inner_lr = inner_lr
        self.inner_lr = (
            nn.Parameter(torch.full_like(self.prompt, inner_lr)) if learn_inner_lr else None
        )
        self.first_order = first_order
        self.per_step_loss_weights = per_step_loss_weights
        self.msl_anneal_steps = msl_anneal_steps
        self.length_normalize = length_normalize
        self.eval_inits = tuple(eval_inits)
        self.batch_tasks = batch_tasks
        self.max_batch_memory_gib = max_batch_memory_gib
        self.batching_choice: BatchingChoice | None = None  # what batch_tasks=auto decided, at the first meta-step
        self.eval_tasks_per_pass = eval_tasks_per_pass
        self.seed = seed
        self.val_accuracy = MeanMetric()
        self.test_accuracy = nn.ModuleDict({name: CatMetric() for name in (META_INIT, *self.eval_inits)})
        self.test_episode = CatMetric()
        self.meta_test: dict[str, Any] = {}
        self._math_sdpa = self._prepare_double_backward()

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        """Refuse impossible ``meta.*`` settings in one line, before anything is built."""
        check_init(settings, prefix="meta")
        if settings.get("init") == "class_label":
            raise ConfigError("meta.init=class_label needs one task's label words, and a meta-learned init serves "
                              "many tasks; use meta.init=sampled_vocab (class_label is compared at meta-test)")
        at_least(settings, "inner_steps", 1, "3", prefix="meta")
        at_least(settings, "eval_inner_steps", 0, "null", optional=True, prefix="meta")
        positive(settings, "inner_lr", "0.3", prefix="meta")
        at_least(settings, "msl_anneal_steps", 1, "100", prefix="meta")
        at_least(settings, "eval_tasks_per_pass", 1, "32", prefix="meta")
        if settings.get("batch_tasks", "auto") not in (True, False, "auto"):
            raise ConfigError(f"meta.batch_tasks must be true, false or auto, not {settings['batch_tasks']!r}")
        if settings.get("max_batch_memory_gib") is not None:
            positive(settings, "max_batch_memory_gib", "8", prefix="meta")
        for name in settings.get("eval_inits", ()):
            if name not in INITS:
                raise unknown_name("meta.eval_inits entry", str(name), INITS)

    # ----------------------------------------------------------------- double backward
    def _prepare_double_backward(self) -> bool:
        """Make attention twice differentiable for second order; True where SDPA must use its math backend.

        Fused SDPA kernels (the CPU flash kernel, CUDA flash and memory-efficient) have no double
        backward; SDPA's math backend and eager attention do. Other implementations are switched to eager.
        """
        impl = getattr(self.model.config, "_attn_implementation", "eager")
        if self.first_order or impl == "eager":
            return False
        if impl == "sdpa":
            log.info("second-order MAML: SDPA runs on its math backend, whose backward is differentiable")
            return True
        log.warning(
            "second-order MAML needs double backward, which %s attention lacks: switching %s to eager",
            impl,
            self.backbone.name,
        )
        self.model.set_attn_implementation("eager")
        return False

    def _attention(self) -> contextlib.AbstractContextManager:
        return sdpa_kernel(SDPBackend.MATH) if self._math_sdpa else contextlib.nullcontext()

    # ----------------------------------------------------------------- the inner loop
    def logits(self, prompts: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """``[examples, N]`` log-likelihood of each example's N label words (see :func:`episode_logits`)."""
        return episode_logits(self.scorer, prompts, batch)

    def loss(self, prompt: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return F.cross_entropy(self.logits(prompt, batch), batch["label"])

    def task_losses(self, prompts: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """``[tasks]``: each task's loss under its own prompt (``[tasks, length, hidden]``; ``[length, hidden]``
        is one task), all in one pass."""
        per_row = F.cross_entropy(self.logits(prompts, batch), batch["label"], reduction="none")
        return self._mean_by_task(per_row, batch, prompts)

    @staticmethod
    def _mean_by_task(values: torch.Tensor, batch: dict[str, Any], prompts: torch.Tensor) -> torch.Tensor:
        tasks = prompts.shape[0] if prompts.dim() == 3 else 1
        task_of_row = batch.get("task_of_row")
        if task_of_row is None:
            task_of_row = torch.zeros(len(values), dtype=torch.long, device=values.device)
        return mean_by_task(values, task_of_row, tasks)

    def adapt(
        self, prompts: torch.Tensor, support: dict[str, Any], steps: int, lr: torch.Tensor | float, second_order: bool
    ) -> list[torch.Tensor]:
        """The prompts after each of ``steps`` SGD steps on the support loss.

        The gradient of the summed task losses with respect to ``[tasks, length, hidden]`` prompts is
        each task's own gradient, in its own slot. Second order keeps each inner gradient's graph, so
        the outer backward differentiates through it; first order takes the gradient at detached
        prompts, a constant to the outer backward.
        """
        def total(p: torch.Tensor) -> torch.Tensor:
            return self.task_losses(p, support).sum()

        path = []
        for _ in range(steps):
            prompts = prompts - lr * grad(total)(prompts if second_order else prompts.detach())
            path.append(prompts)
        return path

    def _meta_losses(
        self, start: torch.Tensor, support: dict[str, Any], query: dict[str, Any], weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per task: the weighted query losses along the adapted path, and the final prompt's query accuracy."""
        lr = self.base_inner_lr if self.inner_lr is None else self.inner_lr
        path = self.adapt(start, support, self.inner_steps, lr, second_order=not self.first_order)
        logits = self.logits(path[-1], query)
        per_row = F.cross_entropy(logits, query["label"], reduction="none")
        losses = weights[-1] * self._mean_by_task(per_row, query, start)
        for prompts, weight in zip(path[:-1], weights[:-1].tolist(), strict=True):
            if weight > 0:
                losses = losses + weight * self.task_losses(prompts, query)
        correct = (logits.argmax(-1) == query["label"]).float()
        return losses, self._mean_by_task(correct, query, start).detach()

    def batched_meta_loss(
        self, episodes: Sequence[dict[str, Any]], weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """:meth:`meta_loss` of every episode, ``([tasks], [tasks])``, from one batch per inner step;
        None where the episodes cannot share a batch."""
        stacked = self._stacked(episodes)
        if stacked is None:
            return None
        support, query = stacked
        return self._meta_losses(self.prompt.expand(len(episodes), -1, -1), support, query, weights)

    def _stacked(self, episodes: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The episodes' support and query batches, each stacked into one; None where they cannot share one."""
        pad_id = self.backbone.tokenizer.pad_token_id
        support = stack_task_batches([e["support"] for e in episodes], pad_id)
        query = stack_task_batches([e["query"] for e in episodes], pad_id)
        return None if support is None or query is None else (support, query)

    def meta_loss(self, episode: dict[str, Any], weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One episode's weighted query losses along the adapted path, and the final prompt's query accuracy."""
        losses, accuracies = self._meta_losses(self.prompt, episode["support"], episode["query"], weights)
        return losses[0], accuracies[0]

    def step_weights(self) -> torch.Tensor:
        """How much each inner step's query loss counts in the meta-loss."""
        if self.per_step_loss_weights:
            return msl_weights(self.inner_steps, self.global_step, self.msl_anneal_steps)
        return F.one_hot(torch.tensor(self.inner_steps - 1), self.inner_steps).float()

    # ----------------------------------------------------------------- training
    def training_step(self, batch: list[dict[str, Any]], batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        optimizer.zero_grad()
        weights = self.step_weights()
        with self._attention():
            batched = self.batched_meta_loss(batch, weights) if self._batch_this_step(batch, weights) else None
            if batched is not None:
                losses, accuracies = batched
                self._check_finite(losses.sum())
                self.manual_backward(losses.mean())
                losses = losses.detach()
            else:
                losses, accuracies = self._per_task_meta_step(batch, weights)
        optimizer.step()
        mean_loss = losses.mean()
        self.log("train/loss", mean_loss, prog_bar=True, batch_size=len(batch))
        self.log("train/accuracy", accuracies.mean(), batch_size=len(batch))
        return mean_loss

    def _batch_this_step(self, batch: list[dict[str, Any]], weights: torch.Tensor) -> bool:
        if len(batch) < 2 or self.batch_tasks is False:
            return False
        if self.batch_tasks is True:
            return True
        if self.batching_choice is None:
            self.batching_choice = self._choose_batching(batch, weights)
            if self.batching_choice is not None:
                log.info(self.batching_choice.describe())
        return self.batching_choice is not None and self.batching_choice.batched

    def _choose_batching(self, batch: list[dict[str, Any]], weights: torch.Tensor) -> BatchingChoice | None:
        """Measure the batched step's peak memory on one task and on two (gradients discarded); every rank
        decides on the largest estimate. None where these tasks cannot share a batch (decided later)."""
        if self._stacked(batch[:2]) is None:
            return None

        def step(episodes: list[dict[str, Any]]):
            def run() -> None:
                with self._block_gradient_sync():
                    losses, _ = self.batched_meta_loss(episodes, weights)
                    losses.mean().backward()
            return run

        device = self.prompt.device
        one, two = peak_bytes(step(batch[:1]), device), peak_bytes(step(batch[:2]), device)
        for parameter in self.trainable_parameters():
            parameter.grad = None
        estimate = torch.tensor(float(extrapolate_peak(one, two, len(batch))), device=device)
        if self.trainer.world_size > 1:
            estimate = self.all_gather(estimate).max()
        budget = memory_budget(self.max_batch_memory_gib, device)
        return BatchingChoice(int(estimate.item()) <= budget, len(batch), int(estimate.item()), budget)

    def _per_task_meta_step(
        self, batch: list[dict[str, Any]], weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Backward each task's meta-loss in turn: one task's graph in memory at a time."""
        losses, accuracies = [], []
        for i, episode in enumerate(batch):
            loss, accuracy = self.meta_loss(episode, weights)
            self._check_finite(loss)
            # One all-reduce per meta-step: DDP syncs only the last backward, over the summed gradient.
            last = i == len(batch) - 1
            with contextlib.nullcontext() if last else self._block_gradient_sync():
                self.manual_backward(loss / len(batch))
            losses.append(loss.detach())
            accuracies.append(accuracy)
        return torch.stack(losses), torch.stack(accuracies)

    def _check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"meta-loss is {loss.item()} at step {self.global_step}; lower meta.inner_lr or optimizer.lr"
            )

    def _block_gradient_sync(self) -> contextlib.AbstractContextManager:
        strategy = self.trainer.strategy
        return (
            strategy.block_backward_sync()
            if isinstance(strategy, ParallelStrategy)
            else contextlib.nullcontext()
        )

    # ----------------------------------------------------------------- optimizer and checkpoints
    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_factory is None:
            raise ConfigError(
                "no optimizer given; choose the outer optimizer with optimizer=adamw (for example)"
            )
        return self.optimizer_factory(self.trainable_parameters())

    def export_prompt(self, path: str | Path) -> Path:
        """Save the meta-learned prompt as a prompt-tuning prompt (loadable by ``method=prompt_tuning``)."""
        hparams = {"prompt_length": self.prompt.shape[0], "init": self.init}
        return save_prompt(
            path, {"prompt": self.prompt}, PromptTuning.method_name, self.backbone.fingerprint(), hparams
        )
