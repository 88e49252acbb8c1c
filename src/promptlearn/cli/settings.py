"""Every setting checked where settings enter, before anything is built (a backbone takes seconds to load,
and a wrong value found after training has run wastes the run).

- Plain settings (``seed``, ``data.*``, ``checkpoint.*``, ``episodes.*``, ``trainer.*``) against a table
  of types and ranges.
- Components (every node with a ``_target_``) against the signature of what they build
  (:mod:`promptlearn.cli.signatures`), then against the class's own ``check_settings`` where it has
  one (methods check their lengths, inits and rates there, and again when built from Python).
- The optimizer is built once on a dummy parameter, so the library's own checks (a negative LR)
  run now; ``checkpoint.monitor`` must be a metric the run logs.

Each refusal is one :class:`ConfigError` naming the key, the value and a valid example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from promptlearn.cli.signatures import check_component
from promptlearn.utils.errors import ConfigError

COMPONENTS = ("model", "method", "task", "optimizer", "trainer", "meta", "targets", "clip", "corpus", "transfer_task")


KINDS: dict[str, Callable[[Any], bool]] = {
    "an integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "a number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "true or false": lambda v: isinstance(v, bool),
    "a string": lambda v: isinstance(v, str),
}


@dataclass(frozen=True)
class Rule:
    """A plain setting: its kind, whether null is allowed, and the values it may take beyond that."""

    kind: str
    example: str
    optional: bool = False
    allowed: Callable[[Any], bool] = lambda value: True
    allowed_text: str = ""

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None if self.optional else self.kind
        if not KINDS[self.kind](value):
            return self.kind + (" or null" if self.optional else "")
        return None if self.allowed(value) else self.allowed_text


def at_least(low: float) -> Callable[[Any], bool]:
    return lambda value: value >= low


def one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda value: value in choices


def val_check_interval(value: Any) -> bool:
    return value >= 1 if isinstance(value, int) else 0 < value <= 1


INT, NUM, BOOL, STR = "an integer", "a number", "true or false", "a string"
POSITIVE = {"allowed": at_least(1), "allowed_text": "1 or more"}
NATURAL = {"allowed": at_least(0), "allowed_text": "0 or more"}

RULES: dict[str, Rule] = {
    "seed": Rule(INT, "0", **NATURAL),
    "baseline": Rule(BOOL, "true"),
    "test": Rule(BOOL, "true"),
    "ckpt_path": Rule(STR, "last", optional=True),
    "on_nonfinite": Rule(STR, "stop", allowed=one_of("stop", "skip"), allowed_text="'stop' or 'skip'"),
    "prompt": Rule(STR, "outputs/<run>/prompt.pt", optional=True),
    "untrained": Rule(BOOL, "false"),
    "data.batch_size": Rule(INT, "8", **POSITIVE),
    "data.eval_batch_size": Rule(INT, "32", **POSITIVE),
    "data.max_field_tokens": Rule(INT, "64", optional=True, allowed=at_least(1),
                                  allowed_text="1 or more, or null for no limit (0 would empty every input)"),
    "data.max_source_length": Rule(INT, "512", **POSITIVE),
    "data.max_target_length": Rule(INT, "64", **POSITIVE),
    "data.max_train_examples": Rule(INT, "null", optional=True, **NATURAL),
    "data.max_val_examples": Rule(INT, "200", optional=True, **POSITIVE),
    "data.max_test_examples": Rule(INT, "null", optional=True, **POSITIVE),
    "data.num_workers": Rule(INT, "0", **NATURAL),
    "data.bucket_by_length": Rule(BOOL, "false"),
    "data.sentinel_target": Rule(BOOL, "false"),
    "checkpoint.monitor": Rule(STR, "val/score", optional=True),
    "checkpoint.mode": Rule(STR, "max", allowed=one_of("min", "max"), allowed_text="'min' or 'max'"),
    "checkpoint.every_n_train_steps": Rule(INT, "null", optional=True, **POSITIVE),
    "checkpoint.every_n_minutes": Rule(NUM, "10", optional=True, **NATURAL),
    "trainer.max_steps": Rule(INT, "200", allowed=lambda v: v >= 1 or v == -1, allowed_text="1 or more"),
    "trainer.val_check_interval": Rule(NUM, "50", optional=True, allowed=val_check_interval,
                                       allowed_text="a number of steps of 1 or more, or a fraction in (0, 1]"),
    "trainer.max_epochs": Rule(INT, "-1", optional=True, allowed=lambda v: v >= 1 or v == -1,
                               allowed_text="1 or more, or -1 (training is counted in trainer.max_steps)"),
    "trainer.log_every_n_steps": Rule(INT, "10", **POSITIVE),
    "trainer.gradient_clip_val": Rule(NUM, "1.0", optional=True, **NATURAL),
    "trainer.accumulate_grad_batches": Rule(INT, "1", **POSITIVE),
    "trainer.limit_val_batches": Rule(NUM, "1.0", **NATURAL),
    "trainer.limit_test_batches": Rule(NUM, "1.0", **NATURAL),
    "episodes.n_way": Rule(INT, "2", allowed=at_least(2), allowed_text="2 or more"),
    "episodes.k_shot": Rule(INT, "4", **POSITIVE),
    "episodes.query_shots": Rule(INT, "8", **POSITIVE),
    "episodes.tasks_per_step": Rule(INT, "4", **POSITIVE),
    "episodes.val_episodes": Rule(INT, "40", **NATURAL),
    "episodes.test_episodes": Rule(INT, "200", **POSITIVE),
    "episodes.eval_batch_episodes": Rule(INT, "8", **POSITIVE),
}

_MISSING = object()


def check_plain_settings(cfg: DictConfig) -> None:
    for key, rule in RULES.items():
        value = OmegaConf.select(cfg, key, default=_MISSING)
        problem = None if value is _MISSING else rule.problem(value)
        if problem is not None:
            raise ConfigError(f"{key} must be {problem}, got {value!r}; for example {key}={rule.example}")


def check_components(cfg: DictConfig) -> None:
    for name in COMPONENTS:
        node = cfg.get(name)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        if name in ("task", "transfer_task"):  # a task checks itself when built (which loads no data), and says more
            from promptlearn.cli.components import build

            build(node, _convert_="all")
        check_component(name, node)
        try:
            target = get_object(node._target_)
        except Exception:  # noqa: BLE001 (reported by the builder, with its config node)
            continue
        own_check = None if name in ("task", "transfer_task") else getattr(target, "check_settings", None)
        if callable(own_check):
            settings = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if not k.startswith("_")}
            own_check(settings)


def check_optimizer(cfg: DictConfig) -> None:
    """Build the optimizer on a dummy parameter: its own checks (LR, betas, weight decay) run now."""
    node = cfg.get("optimizer")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    lr = node.get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr <= 0:
        raise ConfigError(f"optimizer.lr must be positive, got {lr}; for example optimizer.lr=0.01")
    try:
        instantiate(node)([torch.nn.Parameter(torch.zeros(1))])
    except Exception as err:  # noqa: BLE001 (whatever the library refuses, said in one line with the key)
        cause = err.__cause__ or err
        message = " ".join(str(cause).split())
        raise ConfigError(f"optimizer settings refused ({node._target_.rsplit('.', 1)[-1]}: {message}); "
                          "check optimizer.* (for example optimizer.lr=0.01)") from None


def logged_metrics(cfg: DictConfig) -> set[str]:
    """What a training run logs that a checkpoint may be chosen by."""
    metrics = {"val/score", "val/loss", "train/loss"}
    task = cfg.get("task")
    if isinstance(task, DictConfig):
        names = task.get("metrics") or ["accuracy"]
        metrics |= {f"val/{name}" for name in names}
        for part in (task.get("tasks") or {}).values() if isinstance(task.get("tasks"), DictConfig) else ():
            part_name = part.get("name")
            for name in part.get("metrics") or ["accuracy"]:
                metrics |= {f"val/{part_name}/{name}", f"val/{part_name}/score"}
    return metrics


def check_monitor(cfg: DictConfig) -> None:
    monitor = OmegaConf.select(cfg, "checkpoint.monitor", default=None)
    if monitor is None or "task" not in cfg:
        return
    known = logged_metrics(cfg)
    if monitor not in known:
        raise ConfigError(f"checkpoint.monitor={monitor} is not a metric this run logs; choose one of "
                          f"{', '.join(sorted(known))} (for example checkpoint.monitor=val/score)")


def check_settings(cfg: DictConfig) -> None:
    """Raise one :class:`ConfigError` for the first setting that is wrong, before anything is built."""
    check_plain_settings(cfg)
    check_components(cfg)
    check_optimizer(cfg)
    check_monitor(cfg)
