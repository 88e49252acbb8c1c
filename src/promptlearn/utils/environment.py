"""What the machine provides: tracker credentials."""

from __future__ import annotations

import netrc
import os


def wandb_has_credentials() -> bool:
    """Whether W&B has an API key here: ``WANDB_API_KEY``, or a netrc entry that ``wandb login`` wrote."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False
