"""The command line, checked and completed before Hydra runs, so mistakes are one line and a run folder
is never touched by a command that is about to fail.

:func:`checked_command_line` wraps a ``@hydra.main`` entry point. It composes the config from the
command line first, as Hydra is about to, and turns a composition error (an unknown config option
such as ``model=smollm2``, a key that does not exist, bad override syntax) into one line with exit
status 2; an unknown option comes with the closest valid name. Then it completes the command line:

- a resume (``ckpt_path=...`` into an existing ``hydra.run.dir``) gets the run's recorded overrides,
  and is refused if it conflicts with them (:mod:`promptlearn.cli.resume`);
- ``sweep_resume=true`` on a sweep is checked against the sweep's record and taken off the command
  line (:mod:`promptlearn.cli.sweep_resume`);
- an explicit ``trainer=<preset>`` keeps its own values over the ``trainer.*`` an ``experiment=``
  preset sets (a smoke run with ``trainer=debug`` stays a smoke run), said in one note.

Hydra's own ``--config-dir`` (extra config groups and options) is honoured. Sweeps (``-m``) and
Hydra's help and introspection flags go straight to Hydra.
"""

from __future__ import annotations

import difflib
import functools
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from promptlearn.cli.resume import override_key, override_value, resume_overrides
from promptlearn.cli.sweep_resume import take_sweep_resume
from promptlearn.utils.errors import ConfigError, PromptlearnError, unknown_name
from promptlearn.utils.paths import config_dir


Completion = Callable[[list[str]], list[str]]


def checked_command_line(config_name: str, complete: Completion | None = None) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """``complete`` is the command's own completion of the overrides (promptlearn-eval reads the method from the prompt)."""
    def decorate(hydra_main: Callable[[], Any]) -> Callable[[], Any]:
        @functools.wraps(hydra_main)
        def main() -> Any:
            try:
                sys.argv = [sys.argv[0], *complete_command_line(config_name, sys.argv[1:], complete)]
            except PromptlearnError as err:
                print(f"error: {err}", file=sys.stderr)
                sys.exit(2)
            return hydra_main()

        return main

    return decorate


@contextmanager
def composer(extra_config_dir: str | None) -> Iterator[Callable[..., Any]]:
    """``compose(config_name, overrides)`` over the package's config tree (and ``--config-dir``, as Hydra adds it)."""
    GlobalHydra.instance().clear()
    search = [f"hydra.searchpath=[file://{extra_config_dir}]"] if extra_config_dir else []
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            yield lambda name, overrides=(): compose(name, overrides=[*search, *overrides])
    finally:
        GlobalHydra.instance().clear()


def compose_checked(run: Callable[..., Any], config_name: str, overrides: list[str]) -> Any:
    try:
        return run(config_name, overrides)
    except MissingConfigException as err:
        raise unknown_option(err) from None
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err) + closest_key_hint(config_name, str(err))) from None


def complete_command_line(config_name: str, argv: list[str], complete: Completion | None = None) -> list[str]:
    """``argv`` as Hydra should run it: checked, and completed for a resume or an explicit trainer preset."""
    args, _ = get_args_parser().parse_known_args(argv)
    argv = take_sweep_resume(config_name, argv, bool(args.multirun))
    args, _ = get_args_parser().parse_known_args(argv)
    if args.multirun or args.help or args.hydra_help or args.cfg or args.info or args.shell_completion:
        return argv
    overrides = complete(list(args.overrides)) if complete else list(args.overrides)
    flags = [a for a in argv if a not in overrides]
    refuse_unread_additions(overrides, args.config_dir)
    with composer(args.config_dir) as run:
        compose_checked(run, config_name, overrides)
        completed = resume_overrides(
            overrides, lambda merged: OmegaConf.to_container(compose_checked(run, config_name, merged), resolve=False)
        )
        completed = explicit_trainer_wins(run, config_name, completed)
        if completed != list(args.overrides):
            compose_checked(run, config_name, completed)
    return [*flags, *completed]


def refuse_unread_additions(overrides: list[str], extra_config_dir: str | None) -> None:
    """``+name=value`` at the top level adds a setting no command reads (a config group is chosen without ``+``
    unless it has no default, as ``+experiment=``)."""
    roots = [Path(config_dir())] + ([Path(extra_config_dir)] if extra_config_dir else [])
    groups = {p.name for root in roots if root.is_dir() for p in root.iterdir() if p.is_dir()}
    for override in overrides:
        if override.startswith("+") and "=" in override:
            key = override.split("=", 1)[0].lstrip("+")
            if "." not in key and "/" not in key and key not in groups:
                raise ConfigError(f"{override} adds a setting nothing reads; to change a setting, name it without '+' "
                                  "(--cfg job prints them all), to choose a config write group=option")


def explicit_trainer_wins(run: Callable[..., Any], config_name: str, overrides: list[str]) -> list[str]:
    """With ``trainer=<preset>`` and ``experiment=<preset>`` both given, the trainer preset's own values win
    over the ``trainer.*`` the experiment sets, unless a ``trainer.<key>=`` override says otherwise."""
    if override_value(overrides, "trainer") is None or override_value(overrides, "experiment") is None:
        return overrides
    with_experiment = run(config_name, overrides).trainer
    without = run(config_name, [o for o in overrides if override_key(o) != "experiment"]).trainer
    explicit = {override_key(o) for o in overrides}
    kept = {key: without[key] for key in without
            if key in with_experiment and with_experiment[key] != without[key] and f"trainer.{key}" not in explicit}
    if not kept:
        return overrides
    print(f"note: trainer={override_value(overrides, 'trainer')} keeps its own {', '.join(sorted(kept))} over "
          f"experiment={override_value(overrides, 'experiment')}'s; set trainer.<key>=... to choose", file=sys.stderr)
    return [*overrides, *(f"trainer.{key}={OmegaConf.to_yaml(OmegaConf.create({'v': value})).split(':', 1)[1].strip()}"
                          for key, value in kept.items())]


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
