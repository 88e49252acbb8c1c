"""The resolvers the config tree uses (``${wandb_offline:}``), registered when a command starts."""

from __future__ import annotations

import netrc
import os

from omegaconf import OmegaConf


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("wandb_offline", lambda: not wandb_has_credentials(), replace=True)


register_resolvers()
