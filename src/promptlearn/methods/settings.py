"""Checking a method's settings: one line naming the key, the value and a valid example.

Each method class has a ``check_settings(settings)`` classmethod. The command line calls it on the
composed config before the backbone is loaded; the constructor calls it too, so a method built from
Python is checked the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptlearn.prompts.init import INITS
from promptlearn.utils.errors import ConfigError, unknown_name

CONSTRUCTOR_ARGUMENTS = {"self", "backbone", "task", "optimizer", "kwargs", "__class__"}


def arguments(frame_locals: Mapping[str, Any]) -> dict[str, Any]:
    """A constructor's own arguments (``locals()`` at its top), with what it passes on in ``**kwargs``."""
    settings = {k: v for k, v in frame_locals.items() if k not in CONSTRUCTOR_ARGUMENTS}
    return {**settings, **frame_locals.get("kwargs", {})}


def require(ok: bool, key: str, value: Any, expected: str, example: str, prefix: str = "method",
            label: str | None = None) -> None:
    """Refuse ``value`` unless ``ok``: "<label> must be <expected>, got <value>; set <prefix>.<key>=<example> (for example)"."""
    if not ok:
        raise ConfigError(f"{label or f'{prefix}.{key}'} must be {expected}, got {value!r}; "
                          f"set {prefix}.{key}={example} (for example)")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def at_least(settings: Mapping[str, Any], key: str, low: int, example: str, optional: bool = False,
             prefix: str = "method", label: str | None = None) -> None:
    if key not in settings or (optional and settings[key] is None):
        return
    value = settings[key]
    require(is_int(value) and value >= low, key, value, f"at least {low}" + (" (or null)" if optional else ""),
            example, prefix, label)


def fraction(settings: Mapping[str, Any], key: str, example: str, prefix: str = "method") -> None:
    if key in settings:
        value = settings[key]
        require(is_number(value) and 0 <= value < 1, key, value, "in [0, 1)", example, prefix)


def positive(settings: Mapping[str, Any], key: str, example: str, prefix: str = "method") -> None:
    if key in settings:
        value = settings[key]
        require(is_number(value) and value > 0, key, value, "positive", example, prefix)


def check_init(settings: Mapping[str, Any], prefix: str = "method", length_key: str = "prompt_length") -> None:
    """The settings of a soft-prompt initialiser (:mod:`promptlearn.prompts.init`)."""
    at_least(settings, length_key, 1, "20", prefix=prefix, label="prompt length")
    init = settings.get("init", "class_label")
    if init not in INITS:
        raise unknown_name("prompt init", str(init), INITS)
    positive(settings, "init_range", "0.5", prefix)
    at_least(settings, "init_vocab_size", 1, "5000", optional=True, prefix=prefix)
    if init == "text" and not settings.get("init_text"):
        raise ConfigError(f"{prefix}.init=text needs {prefix}.init_text='...'; set it or choose another init")
