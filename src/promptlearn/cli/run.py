"""The skeleton every command runs on: a checked command line, Hydra, one-line errors, and one
record of the run written as ``results.json``.

A Hydra command is a ``main(cfg)`` decorated with :func:`hydra_command`; an argparse command (report,
interpret, peft) wraps its body in :func:`one_line_errors`. Either way a :class:`PromptlearnError`
becomes one ``error:`` line on stderr and exit status 2.
"""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import hydra
from omegaconf import DictConfig

from promptlearn.cli import resolvers  # noqa: F401  (registers the config's resolvers before Hydra composes)
from promptlearn.cli.command_line import Completion, checked_command_line
from promptlearn.cli.quiet import quiet_libraries
from promptlearn.cli.settings import check_settings
from promptlearn.utils.errors import PromptlearnError
from promptlearn.utils.paths import config_dir

T = TypeVar("T")
# Storage failures are the machine's, not the code's: one line, and what to do. (Checkpoints are written
# atomically, so the last complete one is still whole.)
STORAGE_ERRORS = {
    errno.ENOSPC: "free some space, or write elsewhere with hydra.run.dir=<dir>; the last checkpoint is intact",
    errno.EDQUOT: "the disk quota is full: free some space, or write elsewhere with hydra.run.dir=<dir>",
    errno.EROFS: "that file system is read-only: write elsewhere with hydra.run.dir=<dir>",
    errno.EACCES: "no permission to write there: write elsewhere with hydra.run.dir=<dir>",
}


def one_line_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Print any :class:`PromptlearnError` as one line on stderr and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except PromptlearnError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except OSError as err:
            if err.errno not in STORAGE_ERRORS:
                raise
            where = f" writing {err.filename}" if err.filename else ""
            print(f"error: {err.strerror or STORAGE_ERRORS[err.errno]}{where}; {STORAGE_ERRORS[err.errno]}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def hydra_command(config_name: str, complete: Completion | None = None) -> Callable[[Callable[[DictConfig], T]], Callable[[], T]]:
    """``main(cfg)`` as a console script over ``conf/<config_name>.yaml``: the command line composed
    and checked first, then Hydra (runs, sweeps, ``--help``), then the settings checked, then ``main``."""

    def decorate(main: Callable[[DictConfig], T]) -> Callable[[], T]:
        @functools.wraps(main)
        def checked(cfg: DictConfig) -> T:
            quiet_libraries()
            check_settings(cfg)
            return main(cfg)

        return checked_command_line(config_name, complete)(
            hydra.main(config_path=config_dir(), config_name=config_name, version_base="1.3")(one_line_errors(checked))
        )

    return decorate
