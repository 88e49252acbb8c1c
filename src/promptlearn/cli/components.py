"""Components built from the composed config: the one place a ``cfg`` turns into objects.

Everything below the command layer takes built objects, never ``cfg``. Any failure to build a
component becomes one :class:`ConfigError` naming the config node (:func:`build`), and every
Lightning trainer of every command comes from :func:`build_trainer`.
"""

from __future__ import annotations

import logging
import re
import signal
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig, OmegaConf
from torch import nn

from promptlearn.backbones import Backbone
from promptlearn.cli.hydra_callbacks import unwritable_reason
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.data.episode_data import EpisodeDataModule
from promptlearn.data.episodes import META_SPLITS, TaskSource
from promptlearn.data.few_shot import FewShotTask
from promptlearn.data.tasks import Task
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.training.checkpoints import AtomicCheckpointIO
from promptlearn.training.progress import StepProgressBar
from promptlearn.utils.errors import ConfigError, PromptlearnError

log = logging.getLogger("promptlearn")


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``; what goes wrong inside comes out as one :class:`PromptlearnError`.

    Our own errors pass through as they are. Any other failure to build a component (a wrong type
    in an override, a setting the library refuses, a missing accelerator) is a config mistake: it
    becomes a :class:`ConfigError` naming the config node and the library's complaint.
    """
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause: BaseException | None = err
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, PromptlearnError):
            raise cause from None
        named = re.search(r"full_key: (\S+)", str(err))
        key = named.group(1) if named else str(node.get("_target_", "component"))
        complaint = " ".join(str(cause).split()) or type(cause).__name__
        raise ConfigError(f"could not build {key} from the config: {type(cause).__name__}: {complaint}; "
                          f"check the {key}.* settings (--cfg job prints the composed config)") from None


def build_task(cfg: DictConfig, node: DictConfig | None = None) -> Task:
    """The configured task (or ``node``), with the method's few-shot demonstrations if it asks for them."""
    task: Task = build(cfg.task if node is None else node, _convert_="all")
    num_shots = cfg.method.get("num_shots", 0)
    if num_shots:
        task = FewShotTask(task, num_shots, seed=cfg.seed, balanced=cfg.method.get("balanced_shots", True))
    return task


def build_datamodule(cfg: DictConfig, task: Task, backbone: Backbone, **overrides: Any) -> TaskDataModule:
    datamodule = TaskDataModule(task, backbone, seed=cfg.seed, **{**cfg.data, **overrides})
    datamodule.setup()
    return datamodule


def build_backbone_and_task(cfg: DictConfig) -> tuple[Backbone, Task, TaskDataModule]:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone: Backbone = build(cfg.model)
    task = build_task(cfg)
    return backbone, task, build_datamodule(cfg, task, backbone)


def build_method(cfg: DictConfig, backbone: Backbone, task: Task, **overrides: Any) -> FrozenBackboneModule:
    # Objects go in through a partial: instantiate would turn dataclass arguments into configs.
    make_method = build(cfg.method, _partial_=True, **overrides)
    module = make_method(backbone=backbone, task=task.info(), optimizer=build(cfg.optimizer))
    if "on_nonfinite" in cfg:
        module.set_nonfinite_policy(cfg.on_nonfinite)
    return module


SOURCE_KEYS = {"task", "labels", "splits"}


def build_pools(node: DictConfig) -> dict[str, list[TaskSource]]:
    """Task sources per meta-split: a task config, or ``{task: <config>, labels: [...], splits: [...]}``.

    Entries with the same task config share one :class:`Task`, so its data is loaded once.
    """
    if unknown := set(node) - set(META_SPLITS):
        raise ConfigError(f"meta_pool has unknown key(s) {sorted(unknown)}; use {', '.join(META_SPLITS)}")
    tasks: dict[str, Task] = {}
    pools: dict[str, list[TaskSource]] = {}
    for split in META_SPLITS:
        pools[split] = []
        for entry in node.get(split) or []:
            spec = entry if "task" in entry else OmegaConf.create({"task": entry})
            if unknown := set(spec) - SOURCE_KEYS:
                raise ConfigError(
                    f"meta_pool.{split} entry has unknown key(s) {sorted(unknown)}; use {sorted(SOURCE_KEYS)}"
                )
            key = OmegaConf.to_yaml(spec.task)
            if key not in tasks:
                tasks[key] = build(spec.task, _convert_="all")
            labels, splits = spec.get("labels"), spec.get("splits")
            pools[split].append(
                TaskSource(
                    tasks[key],
                    None if labels is None else tuple(labels),
                    None if splits is None else tuple(splits),
                )
            )
    return pools


def build_episode_data(cfg: DictConfig, backbone: Backbone) -> EpisodeDataModule:
    """The meta-train, meta-validation and meta-test episodes of ``cfg.meta_pool`` for ``backbone``."""
    return EpisodeDataModule(build_pools(cfg.meta_pool), backbone, seed=cfg.seed, **cfg.episodes, **cfg.data)


def count_parameters(module: nn.Module) -> dict[str, int]:
    trainable = [p for p in module.parameters() if p.requires_grad]
    if hasattr(module, "trainable_parameters"):
        trainable = module.trainable_parameters()
    return {
        "trainable_params": sum(p.numel() for p in trainable),
        "total_params": sum(p.numel() for p in module.parameters()),
    }


def requeue_signal(cfg: DictConfig) -> int:
    """The signal a cluster sends before a time limit or a preemption (``slurm.requeue_signal``)."""
    name = str((cfg.get("slurm") or {}).get("requeue_signal", "SIGUSR2"))
    if not hasattr(signal, name) or not name.startswith("SIG"):
        raise ConfigError(f"slurm.requeue_signal must name a signal such as SIGUSR1 or SIGUSR2, got {name!r}")
    return getattr(signal, name)


def cluster_plugins(cfg: DictConfig) -> list[Any]:
    """On SLURM: Lightning's requeue on the signal that comes before the time limit or a preemption.

    The handler saves ``hpc_ckpt_<n>.ckpt`` in the run folder and calls ``scontrol requeue``; the
    requeued job reruns the same command in the same folder and resumes from that checkpoint.
    """
    settings = cfg.get("slurm") or {}
    if not SLURMEnvironment.detect():
        return []
    signum = requeue_signal(cfg)
    return [SLURMEnvironment(auto_requeue=bool(settings.get("auto_requeue", True)), requeue_signal=signum)]


def build_trainer(cfg: DictConfig, callbacks: list[Callback] = (), evaluation: bool = False, **kwargs: Any) -> L.Trainer:
    """The configured trainer: crash-safe checkpoint IO, the step-counted progress bar, the user's extra
    callbacks, SLURM requeue; ``evaluation=True`` is the same preset with no logger and no checkpoints."""
    if evaluation:
        kwargs = {"logger": False, "enable_checkpointing": False, **kwargs}
        callbacks = [*callbacks, StepProgressBar()]
    else:
        extra = [build(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]
        logger = build(cfg.logger) if "logger" in cfg else False
        kwargs = {"logger": logger, "plugins": cluster_plugins(cfg), "default_root_dir": cfg.output_dir, **kwargs}
        callbacks = [*callbacks, StepProgressBar(), *extra]
    trainer: L.Trainer = build(cfg.trainer, callbacks=list(callbacks), **kwargs)
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # sharded strategies keep their own IO
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    if isinstance(trainer.strategy, DDPStrategy) and trainer.world_size < 2:
        raise ConfigError(
            f"the trainer runs DDP on {trainer.world_size} device; use trainer=cpu or trainer=gpu for one device, "
            "or set trainer.devices to 2 or more"
        )
    return trainer


def check_writable(output_dir: Path) -> None:
    """Fail before any training if results could not be written."""
    reason = unwritable_reason(output_dir)
    if reason is not None:
        raise ConfigError(f"cannot write to the output directory {output_dir} ({reason}); "
                          "choose a writable one with output_dir=<dir>")
