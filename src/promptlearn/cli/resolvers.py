"""The resolvers the config tree uses (``${wandb_offline:}``), registered when a command starts."""

from __future__ import annotations

import functools
import logging
import os
import socket
from urllib.parse import urlparse

from omegaconf import OmegaConf

from promptlearn.utils.environment import wandb_has_credentials

log = logging.getLogger("promptlearn")
PROBE_TIMEOUT_S = 3.0


@functools.cache
def wandb_reachable() -> bool:
    """Whether the W&B server answers within a few seconds (the client itself waits about two minutes)."""
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        with socket.create_connection((url.hostname or "api.wandb.ai", url.port or 443), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def wandb_offline() -> bool:
    """Log offline without credentials, and with credentials but no network (saying so once)."""
    if os.environ.get("WANDB_MODE") == "offline" or not wandb_has_credentials():
        return True
    if not wandb_reachable():
        log.warning("W&B is unreachable from here; logging offline into the run folder (upload later with "
                    "`wandb sync <run dir>/wandb/offline-run-*`)")
        return True
    return False


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)


register_resolvers()
