"""Resuming a run from its own record, and refusing, before anything in its folder is touched, a resume
that would not continue the same run.

``promptlearn-train ckpt_path=last hydra.run.dir=<run>`` alone continues the run: the overrides it
was started with (``<run>/.hydra/overrides.yaml``) come first and the new ones after them, so only
what is new changes (``trainer.max_steps=<more>`` extends it). A new value for anything that shapes
the trained tensors, the optimizer state or the data order (``model``, ``method``, ``optimizer``,
``task``, ``data``, ``seed``, ...) is refused in one line naming the keys: it would fail part way, or
silently train something else under the old run's name. The checkpoint itself is checked too. All
of this runs before Hydra writes the run's ``.hydra/`` record or a logger opens its files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from promptlearn.training.checkpoints import resolve_ckpt_path
from promptlearn.utils.errors import ConfigError

# What a resumed run must share with the run it continues.
LOCKED = ("model", "method", "optimizer", "task", "data", "seed", "meta", "meta_pool", "episodes", "transfer_task")
# Within those, what only changes how much is evaluated, not what is trained.
UNLOCKED = {"data.max_val_examples", "data.max_test_examples", "data.eval_batch_size", "data.num_workers"}


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def override_value(overrides: list[str], key: str) -> str | None:
    for override in reversed(overrides):
        if "=" in override and override_key(override) == key:
            return override.split("=", 1)[1]
    return None


def recorded_overrides(run_dir: Path) -> list[str] | None:
    path = run_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else None


def merged_overrides(recorded: list[str], new: list[str]) -> list[str]:
    """The run's own overrides, then the new ones; a key given anew replaces its recorded value.

    Extra callbacks (``callbacks.*``) belong to the command, not to the run: they are given anew.
    """
    new_keys = {override_key(o) for o in new}
    carried = [o for o in recorded if override_key(o) not in new_keys and not override_key(o).startswith("callbacks")]
    return carried + list(new)


def differences(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            found += differences(old.get(key, "<unset>"), new.get(key, "<unset>"), f"{prefix}.{key}")
        return found
    return [] if old == new or prefix in UNLOCKED else [f"{prefix} ({old!r} in the run, {new!r} now)"]


def conflicts(recorded: dict[str, Any], composed: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for section in LOCKED:
        if section in recorded or section in composed:
            found += differences(recorded.get(section, "<unset>"), composed.get(section, "<unset>"), section)
    return found


def resume_overrides(overrides: list[str], compose: Any) -> list[str]:
    """The overrides Hydra should run with: for a resume, the run's recorded ones first; refused on conflict.

    ``compose(overrides)`` composes the config without resolving it, as Hydra is about to.
    """
    ckpt_path = override_value(overrides, "ckpt_path")
    if ckpt_path in (None, "null"):
        return overrides
    run_dir = override_value(overrides, "hydra.run.dir")
    if run_dir is None:
        if ckpt_path == "last":
            raise ConfigError("cannot resume: ckpt_path=last needs hydra.run.dir=<the run to resume>")
        return overrides  # a new run that starts from another run's checkpoint
    run_dir_path = Path(run_dir)
    resolve_ckpt_path(ckpt_path, run_dir_path / "checkpoints")
    recorded = recorded_overrides(run_dir_path)
    if recorded is None:
        return overrides
    merged = merged_overrides(recorded, overrides)
    recorded_config = OmegaConf.to_container(OmegaConf.load(run_dir_path / ".hydra" / "config.yaml"), resolve=False)
    found = conflicts(recorded_config, compose(merged))
    if found:
        raise ConfigError(
            f"cannot resume {run_dir} with other settings than it was trained with: {'; '.join(found)}. A resume "
            "reads the run's recorded config (ckpt_path=last hydra.run.dir=<run> is enough); drop those overrides, "
            "or start a new run in another hydra.run.dir"
        )
    return merged
