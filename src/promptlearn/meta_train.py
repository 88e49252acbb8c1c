"""promptlearn-meta: meta-learn a soft-prompt initialisation over a pool of tasks (MetaPrompting), then
compare it at meta-test with standard inits adapted the same way, and write results.json.

    promptlearn-meta                                      # SmolLM2-135M over BIG-bench tasks
    promptlearn-meta meta_experiment=toy                  # seconds, offline: tiny Llama, synthetic tasks
    promptlearn-meta -m meta.inner_steps=1,3 meta.first_order=true,false   # a Hydra multirun sweep
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from promptlearn import config
from promptlearn.command_line import checked_command_line
from promptlearn.app import build, build_trainer, check_writable, report_errors, write_results
from promptlearn.checkpointing import BestAndLatestCheckpoints, resolve_ckpt_path
from promptlearn.progress import StepProgressBar
from promptlearn.data.episodes import META_SPLITS, EpisodeDataModule, TaskSource
from promptlearn.data.tasks import Task
from promptlearn.errors import ConfigError
from promptlearn.meta.maml import MetaPromptTuning

log = logging.getLogger("promptlearn")

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


def print_summary(results: dict[str, Any]) -> None:
    meta_test = results["meta_test"]
    table = Table(
        title=f"meta-test: {meta_test['episodes']} episodes, "
        f"{results['n_way']}-way {results['k_shot']}-shot, "
        f"{results['eval_inner_steps']} adaptation steps"
    )
    for column in ("init", "query accuracy", "95% CI"):
        table.add_column(column, justify="left" if column == "init" else "right")
    for name, stats in meta_test["inits"].items():
        ci = stats["ci95"]
        table.add_row(name, f"{100 * stats['mean']:.1f}", "" if ci is None else f"± {100 * ci:.1f}")
    Console().print(table)


def meta_train(cfg: DictConfig) -> dict[str, Any]:
    """Meta-train, meta-test, and return everything results.json records."""
    started = time.time()
    output_dir = Path(cfg.output_dir)
    check_writable(output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone = build(cfg.model)
    pools = build_pools(cfg.meta_pool)
    datamodule = EpisodeDataModule(pools, backbone, seed=cfg.seed, **cfg.episodes, **cfg.data)
    module: MetaPromptTuning = build(cfg.meta, _partial_=True)(
        backbone=backbone, optimizer=build(cfg.optimizer), seed=cfg.seed
    )

    validate = bool(pools["meta_val"]) and cfg.episodes.val_episodes > 0
    checkpoint_dir = output_dir / "checkpoints"
    checkpoints = BestAndLatestCheckpoints(checkpoint_dir, "val/score" if validate else None, "max",
                                           cfg.checkpoint.every_n_train_steps, cfg.checkpoint.get("every_n_minutes"))
    trainer = build_trainer(
        cfg,
        [*checkpoints.callbacks, StepProgressBar()],
        inference_mode=False,  # meta-validation and meta-test adapt prompts with gradients
        **({} if validate else {"limit_val_batches": 0}),
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg.ckpt_path, checkpoint_dir))
    best = checkpoints.best_path
    val_metrics = {
        key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")
    }
    trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)

    results: dict[str, Any] = {
        "method": module.method_name,
        "model": backbone.name,
        "tasks": {split: [source.name for source in sources] for split, sources in pools.items()},
        "seed": cfg.seed,
        **OmegaConf.to_container(cfg.episodes),
        "inner_steps": module.inner_steps,
        "eval_inner_steps": module.eval_inner_steps,
        "inner_lr": module.base_inner_lr,
        "first_order": module.first_order,
        "learn_inner_lr": module.inner_lr is not None,
        "per_step_loss_weights": module.per_step_loss_weights,
        "trainable_params": sum(p.numel() for p in module.trainable_parameters()),
        "total_params": sum(p.numel() for p in module.parameters()),
        "train_steps": trainer.global_step,
        "val_metrics": val_metrics,  # the last meta-validation
        "best_val_score": None
        if checkpoints.best.best_model_score is None
        else float(checkpoints.best.best_model_score),
        "meta_test": module.meta_test,
        "best_checkpoint": best,
    }
    if trainer.is_global_zero:
        results["prompt_checkpoint"] = str(module.export_prompt(output_dir / "prompt.pt"))
        results["wall_time_s"] = round(time.time() - started, 1)
        write_results(output_dir, results)
        print_summary(results)
    return results


@checked_command_line("meta")
@hydra.main(config_path=config.config_dir(), config_name="meta", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> float:
    """Return the meta-validation score (the meta-test score without a meta_val pool), for sweepers."""
    results = meta_train(cfg)
    return results["val_metrics"].get("val/score", results["meta_test"]["inits"]["meta"]["mean"])


if __name__ == "__main__":
    main()
