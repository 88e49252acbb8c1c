"""promptlearn-train: learn a prompt for a frozen backbone, evaluate it, write results.json.

    promptlearn-train                                    # SmolLM2-135M on Rotten Tomatoes, offline
    promptlearn-train model=tiny_t5 trainer=debug        # any model/method/task/trainer/logger combination
    promptlearn-train -m method.prompt_length=1,5,20     # a Hydra multirun sweep
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from promptlearn.cli import shared_baseline
from promptlearn.cli.components import (
    build,
    build_backbone_and_task,
    build_datamodule,
    build_method,
    build_trainer,
    check_writable,
    requeue_signal,
)
from promptlearn.cli.results import RunRecord, as_floats
from promptlearn.cli.run import hydra_command
from promptlearn.cli.run_config import flat_config, hydra_overrides
from promptlearn.cli.sweep_resume import cut_off, finished_results, resuming_sweep
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.inference.transfer import evaluate_on
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.prompts.interpret import write_neighbours
from promptlearn.training.checkpoints import BestAndLatestCheckpoints, checkpoint_step
from promptlearn.training.csv_log import continue_metrics
from promptlearn.utils.atomic import atomic_json_dump
from promptlearn.training.predictions import PredictionsWriter
from promptlearn.training.speed import TrainingSpeed
from promptlearn.training.tracking import WandbTracking
from promptlearn.utils.errors import NonFiniteLossError

log = logging.getLogger("promptlearn")
BASELINE_FILE = "baseline.json"


def print_summary(results: dict[str, Any]) -> None:
    table = Table(title=f"{results['method']} on {results['task']} with {results['model']}")
    table.add_column("prompt")
    table.add_column("split")
    table.add_column("score", justify="right")
    for label, metrics in (("no prompt", results.get("baseline", {})), (results["method"], results["metrics"])):
        for key, value in metrics.items():
            if key.endswith("/score"):
                table.add_row(label, key.rsplit("/", 1)[0], f"{100 * value:.1f}")
    Console().print(table)


def fit(trainer: L.Trainer, module: FrozenBackboneModule, datamodule: TaskDataModule,
        checkpoints: BestAndLatestCheckpoints, resume_from: str | None, output_dir: Path) -> str | None:
    """Train (or resume) the method; the best checkpoint's path, or None for a method with nothing to train."""
    if not module.trainable_parameters():
        log.info("method '%s' has nothing to train: evaluating only", module.method_name)
        return None
    continue_metrics(trainer.loggers, checkpoint_step(resume_from) if resume_from else None)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    except NonFiniteLossError as err:
        raise NonFiniteLossError(f"{err}; {checkpoints.resume_hint(output_dir)}") from None
    checkpoints.finished()
    return checkpoints.best_path


def no_prompt_baseline(cfg: DictConfig, backbone: Any, task: Any, datamodule: TaskDataModule,
                       output_dir: Path, resuming: bool) -> dict[str, float]:
    """The template's test metrics with no prompt, kept in ``baseline.json``: a resumed run reads them back,
    and a sweep's later jobs with the same backbone, template and test data reuse them (``shared_baseline``)."""
    saved = output_dir / BASELINE_FILE
    if resuming and saved.is_file():
        return json.loads(saved.read_text())
    shared = shared_baseline.shared_file(cfg, task.info(), datamodule)
    baseline = shared_baseline.reuse(shared, output_dir)
    if baseline is None:
        no_prompt = FrozenBackboneModule(backbone, task.info())
        trainer = build_trainer(cfg, [PredictionsWriter(output_dir, prefix="baseline_")], evaluation=True)
        (measured,) = trainer.test(no_prompt, datamodule=datamodule, verbose=False)
        baseline = as_floats(measured)
        shared_baseline.keep(shared, baseline, output_dir)
    atomic_json_dump(baseline, saved)
    return baseline


def evaluated_checkpoint(best: str | None, trainer: L.Trainer) -> dict[str, Any]:
    """Which state ``metrics`` and ``prompt.pt`` describe: the best checkpoint by ``checkpoint.monitor``."""
    if best is None:
        return {"checkpoint": "untrained", "step": trainer.global_step}
    return {"checkpoint": "best", "path": best, "step": checkpoint_step(best)}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the configured method and return everything results.json records."""
    output_dir = Path(cfg.output_dir)
    check_writable(output_dir)
    ckpt_path = cfg.ckpt_path
    if resuming_sweep():
        done = finished_results(output_dir)
        if done is not None:
            log.info("sweep_resume: %s is finished (results.json); skipped", output_dir)
            return done
        if cut_off(output_dir):
            log.info("sweep_resume: %s was cut off; continuing from checkpoints/last.ckpt", output_dir)
            ckpt_path = "last"
    backbone, task, datamodule = build_backbone_and_task(cfg)
    module = build_method(cfg, backbone, task)
    module.check_fits(datamodule.longest_sequence())
    datamodule.require_splits(*(["train"] if module.trainable_parameters() else []), "validation",
                              *(["test"] if cfg.test else []))
    record = RunRecord(output_dir, task=task.name, model=backbone.name, method=module.method_name, seed=cfg.seed)
    record.describe(module)
    checkpoints = BestAndLatestCheckpoints(
        output_dir / "checkpoints", cfg.checkpoint.monitor, cfg.checkpoint.mode, cfg.checkpoint.every_n_train_steps,
        cfg.checkpoint.get("every_n_minutes"), requeue_signal(cfg),
    )
    resume_from = checkpoints.resume_point(ckpt_path)
    if cfg.baseline and cfg.test:
        record.describe(baseline=no_prompt_baseline(cfg, backbone, task, datamodule, output_dir, resume_from is not None))

    tracking = WandbTracking(flat_config(cfg), hydra_overrides(), monitor=cfg.checkpoint.monitor, mode=cfg.checkpoint.mode)
    trainer = build_trainer(cfg, [*checkpoints.callbacks, TrainingSpeed(), PredictionsWriter(output_dir), tracking])
    best = fit(trainer, module, datamodule, checkpoints, resume_from, output_dir)
    metrics = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    if cfg.test:
        metrics.update(trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0])
    prompt_path = module.save_prompt(output_dir / "prompt.pt")
    neighbours_path = write_neighbours(module, output_dir)
    record.describe(
        metrics=as_floats(metrics),
        train_steps=trainer.global_step,
        examples=datamodule.split_sizes(),
        prompt_checkpoint=str(prompt_path),
        best_checkpoint=best,
        evaluated=evaluated_checkpoint(best, trainer),
        prompt_neighbours=str(neighbours_path) if neighbours_path else None,
    )
    if cfg.test and cfg.get("transfer_task") is not None:
        other = build(cfg.transfer_task, _convert_="all")
        transfer_data = build_datamodule(cfg, other, backbone, max_train_examples=0)
        record.describe(transfer={other.name: evaluate_on(module, transfer_data, build_trainer(cfg, evaluation=True))})
    results = record.finish(write=trainer.is_global_zero)  # under DDP every rank runs train()
    tracking.finish(results, prompt_path, extra_files=(neighbours_path,) if neighbours_path else ())
    print_summary(results)
    return results


@hydra_command("train")
def main(cfg: DictConfig) -> float:
    """Return the validation score, the number a Hydra sweeper optimises."""
    return train(cfg)["metrics"]["val/score"]


if __name__ == "__main__":
    main()
