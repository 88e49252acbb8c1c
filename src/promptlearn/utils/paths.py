"""Where promptlearn's files live: the Hydra config tree, and the cache of converted offline assets."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def config_dir() -> str:
    """``promptlearn/conf`` in an installed wheel; the repository's ``conf/`` in a source checkout."""
    packaged = PACKAGE_DIR / "conf"
    if packaged.is_dir():
        return str(packaged)
    return str(PACKAGE_DIR.parents[1] / "conf")


def default_cache_dir() -> Path:
    """``$PROMPTLEARN_CACHE``, else ``~/.cache/promptlearn``: converted models and downloaded data, made once."""
    return Path(os.environ.get("PROMPTLEARN_CACHE", Path.home() / ".cache" / "promptlearn"))
