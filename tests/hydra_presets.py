"""Composing the config tree as the CLI does, and reading a preset's sweep axes: shared by the preset tests."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from promptlearn.utils.paths import config_dir


def hydra_compose(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def sweep_axes(experiment: str) -> dict[str, list[str]]:
    params = hydra_compose(f"experiment={experiment}").hydra.sweeper.params
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return {o.get_key_element(): list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()] for o in parsed}
