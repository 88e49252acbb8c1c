"""``results.json``: one record per run, built the same way by every command.

Every record holds what the run was (``task``, ``model``, ``method``, ``seed``, parameter counts),
what it measured (``metrics`` and the command's own fields), how long it took (``wall_time_s``),
and where it ran (``environment``: the git commit and whether the tree was dirty, the versions of
torch, transformers and lightning, and the device), so that a number can always be traced back.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from promptlearn.cli.components import count_parameters
from promptlearn.utils.atomic import atomic_json_dump
from promptlearn.utils.paths import PACKAGE_DIR

log = logging.getLogger("promptlearn")

VERSIONED = ("torch", "transformers", "lightning", "promptlearn")


def as_floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.items()}


def git_state(folder: Path = PACKAGE_DIR) -> dict[str, Any]:
    """The commit of the checkout promptlearn runs from, and whether it has uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def environment(device: str | None = None) -> dict[str, Any]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    if device is None:
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.machine()})"
    return {**git_state(), "versions": versions, "device": device, "threads": torch.get_num_threads()}


class RunRecord:
    """The results of one run, filled in as it goes and written atomically at the end."""

    def __init__(self, output_dir: str | Path, **identity: Any) -> None:
        self.output_dir = Path(output_dir)
        self.started = time.time()
        self.fields: dict[str, Any] = dict(identity)

    def describe(self, module: nn.Module | None = None, **fields: Any) -> RunRecord:
        if module is not None:
            self.fields.update(count_parameters(module))
        self.fields.update(fields)
        return self

    def finish(self, write: bool = True, device: str | None = None, **fields: Any) -> dict[str, Any]:
        """The complete record, with wall time and environment; written to ``results.json`` if ``write``."""
        self.fields.update(fields)
        self.fields["wall_time_s"] = round(time.time() - self.started, 1)
        self.fields["environment"] = environment(device)
        if write:
            path = atomic_json_dump(self.fields, self.output_dir / "results.json")
            log.info("results written to %s", path)
        return self.fields
