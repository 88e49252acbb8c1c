"""Resuming a sweep that was cut off: the same multirun command again, with ``sweep_resume=true``.

    promptlearn-train -m <the sweep's overrides> hydra.sweep.dir=<its folder> sweep_resume=true

Each job then looks at its own folder: a complete ``results.json`` means it is done and is skipped
(its files are left as they are); a ``checkpoints/last.ckpt`` means it was cut off and continues from
there, as ``ckpt_path=last`` would; anything else starts afresh. The sweep must be resumed with the
overrides it was started with (``multirun.yaml`` records them); otherwise finished jobs would be
filed under settings they were not run with, so other overrides are refused in one line.

The flag is taken off the command line before Hydra sees it, so each job's ``.hydra/`` record is
written exactly as it was the first time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from promptlearn.cli.resume import override_key, override_value
from promptlearn.utils.errors import ConfigError

KEY = "sweep_resume"
ENVIRONMENT = "PROMPTLEARN_SWEEP_RESUME"
TRUE, FALSE = ("true", "True", "1", "yes"), ("false", "False", "0", "no")


def take_sweep_resume(config_name: str, argv: list[str], multirun: bool) -> list[str]:
    """``argv`` without ``sweep_resume=...``; with ``sweep_resume=true`` the sweep is checked and every job
    told (through the environment) to skip or continue what its folder already holds."""
    given = [a for a in argv if override_key(a) == KEY and "=" in a]
    if not given:
        return argv
    value = given[-1].split("=", 1)[1]
    if value not in TRUE + FALSE:
        raise ConfigError(f"{given[-1]}: sweep_resume is true or false")
    rest = [a for a in argv if a not in given]
    if value in FALSE:
        return rest
    if config_name != "train":
        raise ConfigError("sweep_resume=true resumes promptlearn-train sweeps only")
    if not multirun:
        raise ConfigError("sweep_resume=true resumes a multirun (-m); to continue one run, "
                          "use ckpt_path=last hydra.run.dir=<run>")
    check_same_sweep(rest)
    os.environ[ENVIRONMENT] = "1"
    return rest


def check_same_sweep(argv: list[str]) -> None:
    folder = override_value(argv, "hydra.sweep.dir")
    if folder is None:
        raise ConfigError("sweep_resume=true needs hydra.sweep.dir=<the folder of the sweep to resume>")
    record = Path(folder) / "multirun.yaml"
    if not record.is_file():
        raise ConfigError(f"no sweep to resume in {folder} (it has no multirun.yaml); check hydra.sweep.dir, "
                          "or drop sweep_resume=true to start the sweep")
    recorded = [str(o) for o in OmegaConf.load(record).hydra.overrides.task]
    given = [a for a in argv if "=" in a and not a.startswith("-") and not override_key(a).startswith("hydra.")]
    if sorted(recorded) != sorted(given):
        dropped = sorted(set(recorded) - set(given))
        added = sorted(set(given) - set(recorded))
        raise ConfigError(
            f"the sweep in {folder} was started with other overrides (missing now: {dropped or 'none'}; "
            f"new: {added or 'none'}); resume it with the overrides it was started with: {' '.join(recorded)}")


def resuming_sweep() -> bool:
    """Whether this job belongs to a sweep started with ``sweep_resume=true`` (never true outside a multirun)."""
    if os.environ.get(ENVIRONMENT) != "1" or not HydraConfig.initialized():
        return False
    return HydraConfig.get().mode == RunMode.MULTIRUN


def finished_results(output_dir: Path) -> dict | None:
    """The job's results when its ``results.json`` is complete (it is written atomically), else None."""
    path = output_dir / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return results if isinstance(results, dict) and "metrics" in results else None


def cut_off(output_dir: Path) -> bool:
    return (output_dir / "checkpoints" / "last.ckpt").is_file()
