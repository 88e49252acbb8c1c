"""What the command-line entry points share: building components from config, errors, results."""

from __future__ import annotations

import functools
import logging
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import DDPStrategy
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from promptlearn.backbones import Backbone
from promptlearn.checkpointing import AtomicCheckpointIO
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.data.few_shot import FewShotTask
from promptlearn.data.tasks import Task
from promptlearn.errors import ConfigError, PromptlearnError
from promptlearn.hydra_callbacks import unwritable_reason
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.settings import check_setting_types
from promptlearn.atomic import atomic_json_dump

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


def report_errors(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """An entry point's guard: check the settings' types, then print any :class:`PromptlearnError`
    as one line on stderr and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            check_setting_types(cfg)
            return fn(cfg)
        except PromptlearnError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def build_backbone_and_task(cfg: DictConfig) -> tuple[Backbone, Task, TaskDataModule]:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone: Backbone = build(cfg.model)
    task: Task = build(cfg.task, _convert_="all")
    num_shots = cfg.method.get("num_shots", 0)
    if num_shots:
        task = FewShotTask(task, num_shots, seed=cfg.seed, balanced=cfg.method.get("balanced_shots", True))
    datamodule = TaskDataModule(task, backbone, seed=cfg.seed, **cfg.data)
    datamodule.setup()
    return backbone, task, datamodule


def build_method(cfg: DictConfig, backbone: Backbone, task: Task, **overrides: Any) -> FrozenBackboneModule:
    # Objects go in through a partial: instantiate would turn dataclass arguments into configs.
    make_method = build(cfg.method, _partial_=True, **overrides)
    return make_method(backbone=backbone, task=task.info(), optimizer=build(cfg.optimizer))


def count_parameters(module: FrozenBackboneModule) -> dict[str, int]:
    return {
        "trainable_params": sum(p.numel() for p in module.trainable_parameters()),
        "total_params": sum(p.numel() for p in module.parameters()),
    }


def cluster_plugins(cfg: DictConfig) -> list[Any]:
    """On SLURM: Lightning's requeue on the signal that comes before the time limit or a preemption.

    The handler saves ``hpc_ckpt_<n>.ckpt`` in the run folder and calls ``scontrol requeue``; the
    requeued job reruns the same command in the same folder and resumes from that checkpoint.
    """
    settings = cfg.get("slurm") or {}
    if not SLURMEnvironment.detect():
        return []
    name = str(settings.get("requeue_signal", "SIGUSR2"))
    if not hasattr(signal, name) or not name.startswith("SIG"):
        raise ConfigError(f"slurm.requeue_signal must name a signal such as SIGUSR1 or SIGUSR2, got {name!r}")
    return [SLURMEnvironment(auto_requeue=bool(settings.get("auto_requeue", True)), requeue_signal=getattr(signal, name))]


def build_trainer(cfg: DictConfig, callbacks: list[Callback], **kwargs: Any) -> L.Trainer:
    """The configured trainer, with crash-safe checkpoints and the user's extra callbacks."""
    extra = [build(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]
    trainer: L.Trainer = build(
        cfg.trainer, logger=build(cfg.logger), callbacks=[*callbacks, *extra], plugins=cluster_plugins(cfg),
        default_root_dir=cfg.output_dir, **kwargs,
    )
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


def evaluation_trainer(cfg: DictConfig, **kwargs: Any) -> L.Trainer:
    """A trainer from the same preset, for evaluation only: no logger, no checkpoints."""
    from lightning.pytorch.callbacks import RichProgressBar

    return build(cfg.trainer, logger=False, enable_checkpointing=False, callbacks=[RichProgressBar()], **kwargs)


def as_floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.items()}


def write_results(output_dir: str | Path, results: dict[str, Any]) -> Path:
    path = Path(output_dir) / "results.json"
    atomic_json_dump(results, path)
    log.info("results written to %s", path)
    return path


def config_summary(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
