"""The guard that fails a test whose call into a library used a deprecated API (tests/deprecation_guard.py)."""

from __future__ import annotations

import builtins
import warnings

from omegaconf import OmegaConf

import deprecation_guard
from promptlearn.cli.components import build


def warn_deprecated(category: str = "FutureWarning") -> int:
    warnings.warn("`old_name` is deprecated; use `new_name`", getattr(builtins, category), stacklevel=2)
    return 1


def planted(target: dict) -> list[deprecation_guard.Hit]:
    """What the guard records while ``target`` is built through promptlearn; cleared after, and kept
    out of pytest's warning summary, so that the planted deprecation neither fails nor litters the suite."""
    deprecation_guard.hits.clear()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        build(OmegaConf.create(target))
    caught = list(deprecation_guard.hits)
    deprecation_guard.hits.clear()
    return caught


def test_a_deprecation_reached_from_our_code_is_caught():
    # promptlearn.cli.components.build -> hydra.utils.instantiate -> this module: the library call was ours.
    caught = planted({"_target_": f"{__name__}.warn_deprecated"})
    assert len(caught) == 1
    assert "old_name" in caught[0].message and caught[0].our_frame.startswith("promptlearn/cli/components.py:")


def test_deprecation_warning_category_is_caught_too():
    caught = planted({"_target_": f"{__name__}.warn_deprecated", "category": "DeprecationWarning"})
    assert [hit.message.split(":")[0] for hit in caught] == ["DeprecationWarning"]


def test_a_deprecation_outside_our_code_is_not_ours():
    deprecation_guard.hits.clear()
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        warn_deprecated()
    assert len(shown) == 1 and deprecation_guard.hits == []
