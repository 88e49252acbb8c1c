"""The training progress bar counts optimizer steps to max_steps when a run is counted in steps."""

from __future__ import annotations

import lightning as L

from promptlearn.training.progress import StepProgressBar
from promptlearn.methods.prompt_tuning import PromptTuning
from promptlearn.backbones import build_tiny_llama
from promptlearn.data.datamodule import TaskDataModule
from conftest import ToySentiment, adamw


class RecordBar(L.Callback):
    def __init__(self, bar: StepProgressBar) -> None:
        self.bar, self.seen = bar, []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        task = self.bar.progress.tasks[self.bar.train_progress_bar_id]
        self.seen.append((task.description, task.completed, task.total))


def test_the_bar_counts_steps_across_epochs():
    backbone = build_tiny_llama()
    task = ToySentiment(size=24)  # 3 batches an epoch: 7 steps cross two epoch boundaries
    module = PromptTuning(backbone, task.info(), adamw(), prompt_length=2)
    bar = StepProgressBar()
    record = RecordBar(bar)
    trainer = L.Trainer(max_steps=7, max_epochs=-1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        callbacks=[bar, record], enable_model_summary=False)
    trainer.fit(module, datamodule=TaskDataModule(task, backbone, batch_size=8))
    assert [(d, c, t) for d, c, t in record.seen] == [(f"Step {s}/7", s, 7) for s in range(1, 8)]
