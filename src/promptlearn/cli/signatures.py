"""A component's settings checked against the signature of what it builds, before anything is built.

Every config node with a ``_target_`` (``model``, ``method``, ``task``, ``optimizer``, ``trainer``, ...)
names a class or function. Its keys must be parameters of it (or of the base classes it passes
``**kwargs`` on to), and each value must have the parameter's annotated type: ``method.prompt_length=abc``,
``optimizer.lr=abc`` or ``task.label_words=' yes'`` (a string where a list of strings is meant, which
would otherwise become three one-letter label words) are each refused in one line naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from promptlearn.utils.errors import ConfigError

HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def parameters(target: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any]]:
    """The keyword parameters ``target`` takes, following ``**kwargs`` up the MRO of a class, with their hints."""
    owners = [klass for klass in target.__mro__ if "__init__" in vars(klass)] if inspect.isclass(target) else [target]
    found: dict[str, inspect.Parameter] = {}
    hints: dict[str, Any] = {}
    for owner in owners:
        function = owner.__init__ if inspect.isclass(owner) else owner
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            return found, hints
        try:  # a dataclass's generated __init__ resolves its annotations in the wrong module: ask the class
            owner_hints = typing.get_type_hints(owner if dataclasses.is_dataclass(owner) else function)
        except Exception:  # noqa: BLE001 (a third-party annotation that does not resolve: check names only)
            owner_hints = {}
        takes_more = False
        for name, parameter in signature.parameters.items():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                takes_more = True
            elif name != "self" and parameter.kind is not inspect.Parameter.VAR_POSITIONAL and name not in found:
                found[name] = parameter
                if name in owner_hints:
                    hints[name] = owner_hints[name]
        if not takes_more or not inspect.isclass(target):
            return found, hints
    return found, hints


def matches(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` (as composed: ints, floats, strings, lists) fits ``hint``; None where it cannot tell."""
    if hint is Any or hint is inspect.Parameter.empty:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        verdicts = [matches(value, option) for option in typing.get_args(hint)]
        return True if any(v is True for v in verdicts) else (None if any(v is None for v in verdicts) else False)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    container = origin or hint
    if isinstance(container, type) and issubclass(container, (str, bytes)):
        return isinstance(value, str)
    if isinstance(container, type) and issubclass(container, Mapping):
        return isinstance(value, (Mapping, DictConfig))
    if isinstance(container, type) and issubclass(container, Sequence):
        if isinstance(value, str) or not isinstance(value, (list, tuple, ListConfig)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if len(args) == 1:
            verdicts = [matches(item, args[0]) for item in value]
            return False if any(v is False for v in verdicts) else True
        return True
    return None


def literals(hint: Any) -> list[Any]:
    """Every literal value a hint allows (``Literal[...]``, inside unions too)."""
    if typing.get_origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [value for option in typing.get_args(hint) for value in literals(option)]
    return []


def describe(hint: Any) -> str:
    if matches(["x"], hint) and not matches("x", hint):
        return "a list of strings, for example [' no', ' yes']" if matches(["x"], hint) is True and matches([1], hint) is False else "a list"
    allowed = literals(hint)
    if allowed:
        shown = ", ".join(repr(v) for v in allowed[:10]) + (", ..." if len(allowed) > 10 else "")
        return f"one of {shown}"
    text = str(hint).replace("typing.", "").replace("collections.abc.", "")
    return {"<class 'int'>": "an integer", "<class 'float'>": "a number", "<class 'str'>": "a string",
            "<class 'bool'>": "true or false"}.get(text, text)


def check_component(node_name: str, node: DictConfig) -> None:
    """Refuse an unknown key or a value of the wrong type in the component ``node`` builds."""
    target_name = node.get("_target_")
    if not isinstance(target_name, str):
        return
    try:
        target = get_object(target_name)
    except Exception:  # noqa: BLE001 (a target that does not import is the builder's error to report)
        return
    known, hints = parameters(target)
    takes_anything = not inspect.isclass(target) and any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(target).parameters.values()
    )
    for key in node:
        if key in HYDRA_KEYS:
            continue
        full = f"{node_name}.{key}"
        if key not in known:
            if takes_anything or not known:
                continue
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean {node_name}.{close[0]}?" if close else f"; its settings: {', '.join(sorted(known))}"
            raise ConfigError(f"{full} is not a setting of {target_name.rsplit('.', 1)[-1]}{hint}")
        value = OmegaConf.select(node, str(key), throw_on_missing=False)
        if OmegaConf.is_missing(node, str(key)):
            raise ConfigError(f"{full} must be set; for example {full}=...")
        if key in hints and matches(value, hints[key]) is False:
            shown = repr(value) if not isinstance(value, (ListConfig, DictConfig)) else OmegaConf.to_yaml(value).strip()
            raise ConfigError(f"{full} must be {describe(hints[key])}, got {shown}")
