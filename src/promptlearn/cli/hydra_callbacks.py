"""Hydra callbacks: checks that must run before Hydra itself touches the output folder."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def unwritable_reason(folder: Path) -> str | None:
    """Why files cannot be created in ``folder``, or None if they can; nothing is created to find out.

    The folder need not exist yet: its nearest existing ancestor must take a new file (a temporary one,
    removed at once), which is what creating the folder and its files will need.
    """
    folder = Path(folder).absolute()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return "a path in it is not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        return f"{err.strerror or type(err).__name__} in {existing}"
    return None


class CheckOutputFolder(Callback):
    """Stops at once, in one line, when the run (or sweep) folder cannot be written.

    Hydra creates the folder before the job starts; left to itself it fails with a traceback.
    """

    def _check(self, config: DictConfig, key: str, setting: str) -> None:
        HydraConfig.instance().set_config(config)  # the folder's name reads ${hydra:...}; Hydra sets this next anyway
        folder = str(config.hydra.run.dir if key == "run" else config.hydra.sweep.dir)
        reason = unwritable_reason(Path(folder))
        if reason is not None:
            print(f"error: cannot write to the output directory {Path(folder).absolute()} ({reason}); "
                  f"choose a writable one with {setting}=<dir>", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "run", "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "sweep", "hydra.sweep.dir")
