"""Command-line mistakes Hydra would report over several lines, as one ``error:`` line instead.

:func:`checked_command_line` wraps a ``@hydra.main`` entry point. It composes the config from the
command line first, as Hydra is about to, and turns a composition error (an unknown config option
such as ``model=smollm2``, a key that does not exist, bad override syntax) into one line with exit
status 2; an unknown option comes with the closest valid name. Composing takes a fraction of a
second; sweeps (``-m``) and Hydra's help and introspection flags go straight to Hydra.
"""

from __future__ import annotations

import difflib
import functools
import re
import sys
from collections.abc import Callable
from typing import Any

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from promptlearn.utils.paths import config_dir
from promptlearn.utils.errors import ConfigError, PromptlearnError, unknown_name


def checked_command_line(config_name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    def decorate(hydra_main: Callable[[], Any]) -> Callable[[], Any]:
        @functools.wraps(hydra_main)
        def main() -> Any:
            try:
                compose_command_line(config_name, sys.argv[1:])
            except PromptlearnError as err:
                print(f"error: {err}", file=sys.stderr)
                sys.exit(2)
            return hydra_main()

        return main

    return decorate


def compose_command_line(config_name: str, argv: list[str]) -> None:
    args, _ = get_args_parser().parse_known_args(argv)
    if args.multirun or args.help or args.hydra_help or args.cfg or args.info or args.shell_completion:
        return
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            compose(config_name, overrides=list(args.overrides))
    except MissingConfigException as err:
        raise unknown_option(err) from None
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err) + closest_key_hint(config_name, str(err))) from None
    finally:
        GlobalHydra.instance().clear()


def closest_key_hint(config_name: str, message: str) -> str:
    """For an override of a key that does not exist: the existing keys it most likely meant."""
    found = re.search(r"Could not override '([^']+)'", message)
    if found is None:
        return ""
    wanted = found.group(1)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        keys = dotted_keys(OmegaConf.to_container(compose(config_name), resolve=False))
    leaf = wanted.rsplit(".", 1)[-1]
    close = [key for key in keys if key.rsplit(".", 1)[-1] == leaf] or difflib.get_close_matches(wanted, keys, n=3)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def dotted_keys(node: object, prefix: str = "") -> list[str]:
    """Every leaf key of a nested dict, as ``a.b.c``."""
    if not isinstance(node, dict) or not node:
        return [prefix] if prefix else []
    keys = []
    for name, value in node.items():
        keys += dotted_keys(value, f"{prefix}.{name}" if prefix else str(name))
    return keys


def unknown_option(err: MissingConfigException) -> ConfigError:
    found = re.search(r"Could not find '([^']+)/([^'/]+)'", str(err))
    if found is None or not err.options:
        return ConfigError(one_line(err))
    group, name = found.groups()
    return unknown_name(group, name, [option for option in err.options if not option.startswith("_")])  # _base: not a choice


def one_line(err: BaseException) -> str:
    """Hydra's message with its lines joined, and the first line of its cause."""
    lines = [line.strip().rstrip(".") for line in str(err).splitlines() if line.strip()]
    cause = str(err.__cause__ or "").strip()
    if cause and cause.splitlines()[0].strip() not in lines:
        lines.append(cause.splitlines()[0].strip())
    return "; ".join(lines) or type(err).__name__
