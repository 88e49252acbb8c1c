"""promptlearn-eval: evaluate a saved prompt, or the backbone with no prompt, and write results.json.

    promptlearn-eval model=smollm2_135m task=rotten_tomatoes prompt=outputs/.../prompt.pt
    promptlearn-eval model=tiny_t5 task=rotten_tomatoes            # no prompt: the template alone
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from promptlearn import config
from promptlearn.command_line import checked_command_line
from promptlearn.app import (
    as_floats,
    build_backbone_and_task,
    build_method,
    count_parameters,
    evaluation_trainer,
    report_errors,
    write_results,
)
from promptlearn.errors import ConfigError
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.prompts.checkpoint import read_prompt


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    started = time.time()
    backbone, task, datamodule = build_backbone_and_task(cfg)
    if cfg.prompt is None:
        module: FrozenBackboneModule = FrozenBackboneModule(backbone, task.info())
    else:
        hparams = read_prompt(cfg.prompt)["hparams"]
        module = build_method(cfg, backbone, task, **hparams)
        module.load_prompt(cfg.prompt)
    module.check_fits(datamodule.longest_sequence())

    trainer = evaluation_trainer(cfg)
    metrics: dict[str, float] = {}
    for split in cfg.splits:
        if split not in ("validation", "test"):
            raise ConfigError(f"splits may hold 'validation' and 'test', not '{split}'")
        run = trainer.validate if split == "validation" else trainer.test
        metrics.update(as_floats(run(module, datamodule=datamodule, verbose=False)[0]))
    results = {
        "task": task.name,
        "model": backbone.name,
        "method": module.method_name,
        "prompt_checkpoint": cfg.prompt,
        "seed": cfg.seed,
        "metrics": metrics,
        **count_parameters(module),
        "wall_time_s": round(time.time() - started, 1),
    }
    write_results(Path(cfg.output_dir), results)
    for key, value in sorted(metrics.items()):
        print(f"{key}: {value:.4f}")
    return results


@checked_command_line("eval")
@hydra.main(config_path=config.config_dir(), config_name="eval", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
