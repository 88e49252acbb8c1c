"""The run settings that are not components: their types, checked before anything is built.

A component (model, method, task, trainer, ...) is checked by the code it instantiates; these plain
values would otherwise fail deep inside a run (``seed=abc`` in the seeding call, ``data.batch_size=abc``
in the first comparison), so a wrong type is caught here and named with its key.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from promptlearn.utils.errors import ConfigError

INT, OPTIONAL_INT, BOOL, OPTIONAL_STR, STR = "an integer", "an integer or null", "true or false", "a string or null", "a string"

SETTING_TYPES: dict[str, str] = {
    "seed": INT,
    "baseline": BOOL,
    "test": BOOL,
    "ckpt_path": OPTIONAL_STR,
    "on_nonfinite": STR,
    "prompt": OPTIONAL_STR,
    "data.batch_size": INT,
    "data.eval_batch_size": INT,
    "data.max_field_tokens": OPTIONAL_INT,
    "data.max_source_length": INT,
    "data.max_target_length": INT,
    "data.max_train_examples": OPTIONAL_INT,
    "data.max_val_examples": OPTIONAL_INT,
    "data.max_test_examples": OPTIONAL_INT,
    "data.num_workers": INT,
    "data.bucket_by_length": BOOL,
    "data.sentinel_target": BOOL,
    "checkpoint.every_n_train_steps": OPTIONAL_INT,
    "episodes.n_way": INT,
    "episodes.k_shot": INT,
    "episodes.query_shots": INT,
    "episodes.tasks_per_step": INT,
    "episodes.val_episodes": INT,
    "episodes.test_episodes": INT,
    "episodes.eval_batch_episodes": INT,
}


def _has_type(value: Any, expected: str) -> bool:
    if value is None:
        return expected in (OPTIONAL_INT, OPTIONAL_STR)
    if expected in (INT, OPTIONAL_INT):
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == BOOL:
        return isinstance(value, bool)
    return isinstance(value, str)


def check_setting_types(cfg: DictConfig) -> None:
    """Raise a :class:`ConfigError` for the first setting of the wrong type (settings a config lacks are skipped)."""
    for key, expected in SETTING_TYPES.items():
        missing = object()
        value = OmegaConf.select(cfg, key, default=missing)
        if value is not missing and not _has_type(value, expected):
            raise ConfigError(f"{key} must be {expected}, got {value!r}; for example {key}={_example(expected)}")


def _example(expected: str) -> str:
    return {INT: "8", OPTIONAL_INT: "null", BOOL: "true", OPTIONAL_STR: "null", STR: "stop"}[expected]
