"""Loading from the model hub on a node that cannot reach it: decide once, quickly, and load from the cache.

Without this, every hub file on an offline node costs huggingface_hub's five retries with back-off
(about 23 s each) before the load fails or falls back to the cache.
"""

from __future__ import annotations

import functools
import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants

log = logging.getLogger("promptlearn")


@functools.cache
def hub_unreachable_reason() -> str | None:
    """Why the hub cannot be reached (offline mode set, or its host does not resolve), or None if it may be."""
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    host = urlparse(constants.ENDPOINT).hostname or constants.ENDPOINT
    try:
        socket.getaddrinfo(host, 443)
    except OSError as err:
        return f"the hub's host {host} does not resolve ({err.strerror or err})"
    return None


@contextmanager
def cache_only_if_hub_unreachable(name_or_path: str | None = None) -> Iterator[str | None]:
    """Within the block, hub loads read only the local cache when the hub cannot be reached; yields the
    reason, or None where the hub may be reached or ``name_or_path`` is a local folder (no hub needed)."""
    reason = None if name_or_path is not None and Path(name_or_path).is_dir() else hub_unreachable_reason()
    if reason is None or constants.HF_HUB_OFFLINE:
        yield reason
        return
    log.warning("%s: loading from the local cache only, as with HF_HUB_OFFLINE=1", reason)
    flags = [constants]
    if "datasets.config" in sys.modules:  # datasets copies the flag when it is imported
        flags.append(sys.modules["datasets.config"])
    saved = [module.HF_HUB_OFFLINE for module in flags]
    for module in flags:
        module.HF_HUB_OFFLINE = True
    try:
        yield reason
    finally:
        for module, value in zip(flags, saved):
            module.HF_HUB_OFFLINE = value


def why_not_loaded(offline: str | None, err: BaseException) -> str:
    """The cause a failed load names: the unreachable hub, or the loader's own first line."""
    return f"{offline}, and it is not in the local cache" if offline else str(err).splitlines()[0]
