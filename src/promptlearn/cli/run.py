"""The skeleton every command runs on: a checked command line, Hydra, one-line errors, and one
record of the run written as ``results.json``.

A Hydra command is a ``main(cfg)`` decorated with :func:`hydra_command`; an argparse command (report,
interpret, peft) wraps its body in :func:`one_line_errors`. Either way a :class:`PromptlearnError`
becomes one ``error:`` line on stderr and exit status 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import hydra
from omegaconf import DictConfig

from promptlearn.cli import resolvers  # noqa: F401  (registers the config's resolvers before Hydra composes)
from promptlearn.cli.command_line import checked_command_line
from promptlearn.cli.settings import check_setting_types
from promptlearn.utils.errors import PromptlearnError
from promptlearn.utils.paths import config_dir

T = TypeVar("T")


def one_line_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Print any :class:`PromptlearnError` as one line on stderr and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except PromptlearnError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def hydra_command(config_name: str) -> Callable[[Callable[[DictConfig], T]], Callable[[], T]]:
    """``main(cfg)`` as a console script over ``conf/<config_name>.yaml``: the command line composed
    and checked first, then Hydra (runs, sweeps, ``--help``), then the settings checked, then ``main``."""

    def decorate(main: Callable[[DictConfig], T]) -> Callable[[], T]:
        @functools.wraps(main)
        def checked(cfg: DictConfig) -> T:
            check_setting_types(cfg)
            return main(cfg)

        return checked_command_line(config_name)(
            hydra.main(config_path=config_dir(), config_name=config_name, version_base="1.3")(one_line_errors(checked))
        )

    return decorate
