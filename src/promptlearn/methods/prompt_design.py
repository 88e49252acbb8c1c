"""Prompt design: the task's manual template, optionally after k in-context demonstrations.

Nothing trains. The template comes from the task config (``task.template``) and the
demonstrations are added to it by :class:`~promptlearn.data.few_shot.FewShotTask` when the method
config sets ``num_shots``; this module evaluates the result by rank classification (or generation)
exactly as every other method is evaluated, so its scores sit beside theirs.
"""

from __future__ import annotations

from promptlearn.backbones import Backbone
from promptlearn.data.tasks import TaskInfo
from promptlearn.methods.base import FrozenBackboneModule, OptimizerFactory
from promptlearn.methods.settings import arguments, at_least


class PromptDesign(FrozenBackboneModule):
    """The frozen backbone on the (few-shot) template; no trainable parameters."""

    method_name = "prompt_design"

    def __init__(
        self,
        backbone: Backbone,
        task: TaskInfo,
        optimizer: OptimizerFactory | None = None,
        num_shots: int = 0,
        balanced_shots: bool = True,
        **kwargs,
    ) -> None:
        self.check_settings(arguments(locals()))
        super().__init__(backbone, task, optimizer, **kwargs)
        self.num_shots = num_shots
        self.balanced_shots = balanced_shots

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        super().check_settings(settings)
        at_least(settings, "num_shots", 0, "4", label="method.num_shots (no demonstrations: 0)")

    def prompt_hparams(self) -> dict[str, object]:
        return {"num_shots": self.num_shots, "balanced_shots": self.balanced_shots}
