"""One no-prompt baseline per sweep: jobs with the same backbone, template and test data share it.

Every job of a sweep over methods, seeds or prompt settings would evaluate the same bare template on
the same test examples (1,000 snippets take 1.5 minutes on SmolLM2 on a CPU, 2 on Gemma-3-270M). The
first job keeps its baseline in ``<sweep dir>/baselines/<key>.json``; later jobs whose key matches copy
it, and its predictions, instead. The key hashes everything the baseline's numbers depend on: the
model's config, the task's label words and evaluation mode, every encoded test example (so a few-shot
template or another test subset is another key), the evaluation batch size and the trainer's
accelerator, devices and precision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from promptlearn.data.datamodule import TaskDataModule
from promptlearn.data.tasks.base import TaskInfo
from promptlearn.utils.atomic import atomic_json_dump

log = logging.getLogger("promptlearn")
PREDICTIONS = Path("predictions") / "baseline_test.jsonl"


def baseline_key(cfg: DictConfig, task: TaskInfo, datamodule: TaskDataModule) -> str:
    """A hash of what the no-prompt test metrics depend on, and of nothing else."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    payload = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "task": dataclasses.asdict(task),
        "test": [dataclasses.astuple(example) for example in datamodule.encoded.get("test", [])],
        "eval_batch_size": datamodule.eval_batch_size,
        "trainer": {k: trainer.get(k) for k in ("accelerator", "devices", "precision")},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sweep_folder() -> Path | None:
    """The running multirun's ``hydra.sweep.dir``; None for a single run or outside Hydra."""
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    return Path(hydra.sweep.dir) if hydra.mode == RunMode.MULTIRUN else None


def shared_file(cfg: DictConfig, task: TaskInfo, datamodule: TaskDataModule) -> Path | None:
    """Where the sweep keeps this run's baseline; None outside a multirun (and no key is computed)."""
    folder = sweep_folder()
    return folder / "baselines" / f"{baseline_key(cfg, task, datamodule)}.json" if folder is not None else None


def reuse(shared: Path | None, output_dir: Path) -> dict[str, float] | None:
    """The sweep's kept baseline with its predictions copied into ``output_dir``, or None if none is kept."""
    if shared is None or not shared.is_file():
        return None
    kept = json.loads(shared.read_text())
    source = Path(kept["run"])
    if (source / PREDICTIONS).is_file():
        (output_dir / PREDICTIONS).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / PREDICTIONS, output_dir / PREDICTIONS)
    log.info("baseline: the same backbone, template and test data as %s; its no-prompt metrics are reused", source)
    return kept["metrics"]


def keep(shared: Path | None, metrics: dict[str, float], output_dir: Path) -> None:
    """Offer this run's baseline to the sweep's later jobs."""
    if shared is not None:
        atomic_json_dump({"run": str(output_dir.resolve()), "metrics": metrics}, shared)
