"""Tasks: the contract every task follows (:mod:`~promptlearn.data.tasks.base`), and one reader per dataset."""

from promptlearn.data.tasks.base import SPLITS, EvalMode, Example, Task, TaskInfo, template_fields

__all__ = ["SPLITS", "EvalMode", "Example", "Task", "TaskInfo", "template_fields"]
