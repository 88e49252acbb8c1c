"""User-facing errors: each says in one line what was wrong and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PromptlearnError(Exception):
    """A problem with the user's input (config, data, checkpoint); printed as one line, no traceback."""


class ConfigError(PromptlearnError):
    """An impossible or inconsistent configuration value."""


class DataError(PromptlearnError):
    """A task's data is missing, malformed or empty."""


class CheckpointError(PromptlearnError):
    """A checkpoint is unreadable or belongs to another backbone or method."""


class MissingPackageError(PromptlearnError):
    """An optional package that holds offline assets is not installed."""


class NonFiniteLossError(PromptlearnError):
    """Training produced a NaN or infinite loss."""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> ConfigError:
    """An error for an unknown name that lists the valid choices and the closest match."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown {kind} '{name}'.{hint} Valid choices: {', '.join(choices)}")
