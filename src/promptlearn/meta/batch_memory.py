"""Whether a meta-step's tasks fit in memory batched into one pass, or must be backpropagated one by one.

Batched, a meta-step holds every task's graph at once; task by task, one. With
``meta.batch_tasks=auto`` the first meta-step measures the peak memory of the batched step on one
task and on two, extrapolates linearly to all of the step's tasks, and batches when that fits the
budget: ``meta.max_batch_memory_gib``, or by default 90% of free GPU memory (half the available RAM
on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from promptlearn.utils.memory import available_bytes, human_bytes


@dataclass(frozen=True)
class BatchingChoice:
    batched: bool
    tasks: int
    estimated_bytes: int  # peak of the batched step over ``tasks`` tasks
    budget_bytes: int

    def describe(self) -> str:
        verdict = "batching them" if self.batched else "backpropagating them one at a time"
        return (f"meta.batch_tasks=auto: {self.tasks} tasks batched would peak at about {human_bytes(self.estimated_bytes)} "
                f"against a budget of {human_bytes(self.budget_bytes)}; {verdict} (set meta.batch_tasks or "
                "meta.max_batch_memory_gib to choose)")


def extrapolate_peak(one_task: int, two_tasks: int, tasks: int) -> int:
    """Peak of ``tasks`` tasks batched, from the measured peaks of one and of two: linear in the tasks."""
    return one_task + max(two_tasks - one_task, 0) * (tasks - 1)


def memory_budget(max_gib: float | None, device: torch.device) -> int:
    """Bytes the batched step may use."""
    if max_gib is not None:
        return int(max_gib * 2**30)
    return int((0.9 if device.type == "cuda" else 0.5) * available_bytes(device))
