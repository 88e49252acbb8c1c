"""The composed config as trackers record it: flat keys, and the overrides a sweep varied."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def flatten(tree: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """``{"model": {"name": "t5"}}`` -> ``{"model/name": "t5"}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name, sep))
        else:
            flat[name] = value
    return flat


def flat_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The composed config, resolved where it can be (``${hydra:...}`` needs a running Hydra app), and flat."""
    if isinstance(cfg, DictConfig):
        try:
            tree = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException:  # an interpolation that only resolves inside a Hydra app: keep it as written
            tree = OmegaConf.to_container(cfg, resolve=False)
    else:
        tree = dict(cfg)
    return flatten(tree)  # type: ignore[arg-type]


def hydra_overrides() -> list[str]:
    """The running Hydra job's command-line overrides (what a sweep varied), or none outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)
