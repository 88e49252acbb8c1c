"""promptlearn-meta: meta-learn a soft-prompt initialisation over a pool of tasks (MetaPrompting), then
compare it at meta-test with standard inits adapted the same way, and write results.json.

    promptlearn-meta                                      # SmolLM2-135M over BIG-bench tasks
    promptlearn-meta meta_experiment=toy                  # seconds, offline: tiny Llama, synthetic tasks
    promptlearn-meta -m meta.inner_steps=1,3 meta.first_order=true,false   # a Hydra multirun sweep
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from promptlearn.cli.components import build, build_episode_data, build_trainer, check_writable, requeue_signal
from promptlearn.cli.results import RunRecord
from promptlearn.cli.run import hydra_command
from promptlearn.meta.maml import MetaPromptTuning
from promptlearn.training.checkpoints import BestAndLatestCheckpoints, checkpoint_step
from promptlearn.training.csv_log import continue_metrics

log = logging.getLogger("promptlearn")


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
    output_dir = Path(cfg.output_dir)
    check_writable(output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone = build(cfg.model)
    datamodule = build_episode_data(cfg, backbone)
    module: MetaPromptTuning = build(cfg.meta, _partial_=True)(
        backbone=backbone, optimizer=build(cfg.optimizer), seed=cfg.seed
    )
    pools = datamodule.pools
    record = RunRecord(output_dir, task="+".join(source.name for source in pools["meta_test"]), model=backbone.name,
                       method=module.method_name, seed=cfg.seed)
    record.describe(module, tasks={split: [source.name for source in sources] for split, sources in pools.items()})

    validate = bool(pools["meta_val"]) and cfg.episodes.val_episodes > 0
    checkpoints = BestAndLatestCheckpoints(output_dir / "checkpoints", "val/score" if validate else None, "max",
                                           cfg.checkpoint.every_n_train_steps, cfg.checkpoint.get("every_n_minutes"),
                                           requeue_signal(cfg))
    trainer = build_trainer(
        cfg,
        checkpoints.callbacks,
        inference_mode=False,  # meta-validation and meta-test adapt prompts with gradients
        **({} if validate else {"limit_val_batches": 0}),
    )
    resume_from = checkpoints.resume_point(cfg.ckpt_path)
    continue_metrics(trainer.loggers, checkpoint_step(resume_from) if resume_from else None)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    checkpoints.finished()
    best = checkpoints.best_path
    val_metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
    trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)

    record.describe(
        **OmegaConf.to_container(cfg.episodes),
        inner_steps=module.inner_steps,
        eval_inner_steps=module.eval_inner_steps,
        inner_lr=module.base_inner_lr,
        first_order=module.first_order,
        learn_inner_lr=module.inner_lr is not None,
        per_step_loss_weights=module.per_step_loss_weights,
        train_steps=trainer.global_step,
        val_metrics=val_metrics,  # the last meta-validation
        best_val_score=None if checkpoints.best.best_model_score is None else float(checkpoints.best.best_model_score),
        metrics={"test/score": module.meta_test["inits"]["meta"]["mean"], **val_metrics},
        meta_test=module.meta_test,
        best_checkpoint=best,
    )
    if not trainer.is_global_zero:
        return record.finish(write=False)
    results = record.finish(prompt_checkpoint=str(module.export_prompt(output_dir / "prompt.pt")))
    print_summary(results)
    return results


@hydra_command("meta")
def main(cfg: DictConfig) -> float:
    """Return the meta-validation score (the meta-test score without a meta_val pool), for sweepers."""
    results = meta_train(cfg)
    return results["val_metrics"].get("val/score", results["meta_test"]["inits"]["meta"]["mean"])


if __name__ == "__main__":
    main()
