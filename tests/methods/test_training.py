"""Training moves the prompt and nothing else, and the loss actually drops."""

from __future__ import annotations

import lightning as L
import torch

from promptlearn.data.datamodule import TaskDataModule
from promptlearn.methods.prompt_tuning import PromptTuning

from conftest import adamw


def fit(module, datamodule, steps: int) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    return trainer


def test_backbone_stays_frozen_and_bit_identical(tiny_backbone, toy_sentiment):
    before = {k: v.clone() for k, v in tiny_backbone.model.state_dict().items()}
    module = PromptTuning(tiny_backbone, toy_sentiment.info(), adamw(), prompt_length=4, init="random_uniform")
    prompt_before = module.prompt.detach().clone()
    fit(module, TaskDataModule(toy_sentiment, tiny_backbone, batch_size=8), steps=3)
    assert all(p.grad is None for p in tiny_backbone.model.parameters())
    after = tiny_backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(module.prompt.detach(), prompt_before)
    optimizer_params = {id(p) for group in module.optimizers().optimizer.param_groups for p in group["params"]}
    assert optimizer_params == {id(module.prompt)}


def test_loss_drops_on_a_learnable_toy_task(tiny_backbone, toy_sentiment):
    torch.manual_seed(0)
    module = PromptTuning(tiny_backbone, toy_sentiment.info(), adamw(0.3), prompt_length=8, init="random_uniform")
    datamodule = TaskDataModule(toy_sentiment, tiny_backbone, batch_size=16)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))

    def loss() -> float:
        with torch.no_grad():
            total, count = module.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])
        return float(-total.sum() / count.sum())

    initial = loss()
    fit(module, datamodule, steps=30)
    assert loss() < 0.5 * initial
