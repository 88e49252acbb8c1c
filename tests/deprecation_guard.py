"""A test fails when promptlearn's own code leads to a deprecation warning.

Libraries announce a rename (``past_key_values`` -> ``cache`` in transformers 5.24) with a
``FutureWarning`` or ``DeprecationWarning`` one release before the old name stops working, and
transformers also logs some deprecations through its logger. Whichever way it comes, a warning
counts as ours when a frame of ``src/promptlearn`` is on the stack at the moment it is shown: the
deprecated call was made by our code or by a library on our behalf. The warning filters of
``pyproject.toml`` still apply, so what they ignore never reaches this guard.

Registered from ``conftest.py``; :func:`deprecations_from_our_code` fails the test that caused one.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

import promptlearn

PACKAGE_DIR = str(Path(promptlearn.__file__).resolve().parent)
CATEGORIES = (FutureWarning, DeprecationWarning, PendingDeprecationWarning)
LOGGED_DEPRECATION = ("deprecated", "will be removed")


@dataclass(frozen=True)
class Hit:
    message: str
    our_frame: str  # the innermost promptlearn frame on the stack: where our code made the call

    def __str__(self) -> str:
        return f"{self.message} (reached from {self.our_frame})"


hits: list[Hit] = []


def innermost_own_frame() -> str | None:
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(PACKAGE_DIR):
            return f"{Path(filename).relative_to(Path(PACKAGE_DIR).parent)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def record(message: str) -> None:
    where = innermost_own_frame()
    if where is not None:
        hits.append(Hit(" ".join(message.split()), where))


_original_showwarnmsg = warnings._showwarnmsg  # called, in Python, for every warning the filters let through


def _guarded_showwarnmsg(msg: warnings.WarningMessage) -> None:
    if issubclass(msg.category, CATEGORIES):
        record(f"{msg.category.__name__}: {msg.message}")
    _original_showwarnmsg(msg)


class _DeprecationLogHandler(logging.Handler):
    def emit(self, record_: logging.LogRecord) -> None:
        text = record_.getMessage()
        if any(word in text.lower() for word in LOGGED_DEPRECATION):
            record(f"logged by {record_.name}: {text}")


def install() -> None:
    warnings._showwarnmsg = _guarded_showwarnmsg
    logging.getLogger("transformers").addHandler(_DeprecationLogHandler(level=logging.WARNING))


@pytest.fixture(autouse=True)
def deprecations_from_our_code():
    hits.clear()
    yield
    if hits:
        found = "; ".join(sorted({str(hit) for hit in hits}))
        hits.clear()
        pytest.fail(f"deprecated API used by promptlearn: {found}", pytrace=False)
