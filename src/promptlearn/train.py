"""promptlearn-train: learn a prompt for a frozen backbone, evaluate it, write results.json.

    promptlearn-train                                    # SmolLM2-135M on Rotten Tomatoes, offline
    promptlearn-train model=tiny_t5 trainer=debug        # any model/method/task/trainer/logger combination
    promptlearn-train -m method.prompt_length=1,5,20     # a Hydra multirun sweep
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from promptlearn import config
from promptlearn.command_line import checked_command_line
from promptlearn.app import (
    as_floats,
    build_backbone_and_task,
    build_method,
    build_trainer,
    check_writable,
    count_parameters,
    evaluation_trainer,
    report_errors,
    write_results,
)
from promptlearn.checkpointing import BestAndLatestCheckpoints, resolve_ckpt_path
from promptlearn.errors import ConfigError, NonFiniteLossError
from promptlearn.inference.transfer import transfer_results
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.progress import StepProgressBar
from promptlearn.prompts.interpret import write_neighbours
from promptlearn.tracking import WandbTracking

log = logging.getLogger("promptlearn")


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


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the configured method and return everything results.json records."""
    started = time.time()
    output_dir = Path(cfg.output_dir)
    check_writable(output_dir)
    backbone, task, datamodule = build_backbone_and_task(cfg)
    module = build_method(cfg, backbone, task)
    module.set_nonfinite_policy(cfg.on_nonfinite)
    module.check_fits(datamodule.longest_sequence())

    results: dict[str, Any] = {
        "task": task.name,
        "model": backbone.name,
        "method": module.method_name,
        "seed": cfg.seed,
        **count_parameters(module),
    }
    if cfg.baseline and cfg.test:
        no_prompt = FrozenBackboneModule(backbone, task.info())
        (baseline,) = evaluation_trainer(cfg).test(no_prompt, datamodule=datamodule, verbose=False)
        results["baseline"] = as_floats(baseline)

    checkpoint_dir = output_dir / "checkpoints"
    checkpoints = BestAndLatestCheckpoints(
        checkpoint_dir, cfg.checkpoint.monitor, cfg.checkpoint.mode, cfg.checkpoint.every_n_train_steps,
        cfg.checkpoint.get("every_n_minutes"),
    )
    tracking = WandbTracking(cfg)
    trainer = build_trainer(cfg, [*checkpoints.callbacks, StepProgressBar(), tracking])
    best = None
    if module.trainable_parameters():
        ckpt_path = resolve_ckpt_path(cfg.ckpt_path, checkpoint_dir)
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        except NonFiniteLossError as err:
            raise NonFiniteLossError(f"{err}; {checkpoints.resume_hint(output_dir)}") from None
        best = checkpoints.best_path
    else:
        log.info("method '%s' has nothing to train: evaluating only", module.method_name)
    metrics = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    if cfg.test:
        metrics.update(trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0])
    prompt_path = module.save_prompt(output_dir / "prompt.pt")
    neighbours_path = write_neighbours(module, output_dir)
    transfer = transfer_results(cfg, module, backbone) if cfg.test else {}

    results.update(
        metrics=as_floats(metrics),
        train_steps=trainer.global_step,
        wall_time_s=round(time.time() - started, 1),
        prompt_checkpoint=str(prompt_path),
        best_checkpoint=best,
        prompt_neighbours=str(neighbours_path) if neighbours_path else None,
    )
    if transfer:
        results["transfer"] = transfer
    if trainer.is_global_zero:  # under DDP every rank runs train()
        write_results(output_dir, results)
    tracking.finish(results, prompt_path, extra_files=(neighbours_path,) if neighbours_path else ())
    print_summary(results)
    return results


@checked_command_line("train")
@hydra.main(config_path=config.config_dir(), config_name="train", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> float:
    """Return the validation score, the number a Hydra sweeper optimises."""
    return train(cfg)["metrics"]["val/score"]


if __name__ == "__main__":
    main()
