"""Hydra callbacks: checks that must run before Hydra itself touches the output folder."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def unwritable_reason(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (created if missing), or None if they can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


class CheckOutputFolder(Callback):
    """Stops at once, in one line, when the run (or sweep) folder cannot be written.

    Hydra creates the folder before the job starts; left to itself it fails with a traceback.
    """

    def _check(self, folder: str, setting: str) -> None:
        reason = unwritable_reason(Path(folder))
        if reason is not None:
            print(f"error: cannot write to the output directory {folder} ({reason}); "
                  f"choose a writable one with {setting}=<dir>", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")
