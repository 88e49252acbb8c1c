"""Zero-shot transfer: evaluate a trained prompt on another task's test split, as it is (Lester et al. 2021, §6).

The domain_transfer experiment trains on QQP and evaluates on MRPC (and the reverse); a run's config
names the second task under ``transfer_task`` and results.json records ``transfer: {<task>: metrics}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
from torch import nn

from promptlearn.data.datamodule import TaskDataModule
from promptlearn.data.tasks import TaskInfo
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.metrics import build_metrics


@contextmanager
def evaluating_as(module: FrozenBackboneModule, info: TaskInfo) -> Iterator[FrozenBackboneModule]:
    """The module scored as if built for ``info`` (its label words, evaluation mode and metrics), then restored."""
    task, metrics = module.task, module.metrics
    module.task = info
    module.metrics = nn.ModuleDict({stage: build_metrics(info) for stage in ("val", "test")}).to(module.device)
    try:
        yield module
    finally:
        module.task, module.metrics = task, metrics


def evaluate_on(module: FrozenBackboneModule, datamodule: TaskDataModule, trainer: L.Trainer) -> dict[str, float]:
    """Test metrics of ``module``'s prompt on the datamodule's task, scored as that task is."""
    with evaluating_as(module, datamodule.task.info()):
        metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    return {key: float(value) for key, value in metrics.items()}
