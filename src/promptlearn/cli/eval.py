"""promptlearn-eval: evaluate a saved prompt, or the backbone with no prompt, and write results.json.

    promptlearn-eval model=smollm2_135m task=rotten_tomatoes prompt=outputs/.../prompt.pt
    promptlearn-eval model=tiny_t5 task=rotten_tomatoes            # no prompt: the template alone
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from promptlearn.cli.components import build_backbone_and_task, build_method, build_trainer
from promptlearn.cli.results import RunRecord, as_floats
from promptlearn.cli.run import hydra_command
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.prompts.checkpoint import read_prompt
from promptlearn.utils.errors import ConfigError


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    for split in cfg.splits:
        if split not in ("validation", "test"):
            raise ConfigError(f"splits may hold 'validation' and 'test', not '{split}'")
    backbone, task, datamodule = build_backbone_and_task(cfg)
    if cfg.prompt is None:
        module: FrozenBackboneModule = FrozenBackboneModule(backbone, task.info())
    else:
        hparams = read_prompt(cfg.prompt)["hparams"]
        module = build_method(cfg, backbone, task, **hparams)
        module.load_prompt(cfg.prompt)
    module.check_fits(datamodule.longest_sequence())
    record = RunRecord(Path(cfg.output_dir), task=task.name, model=backbone.name, method=module.method_name, seed=cfg.seed)
    record.describe(module, prompt_checkpoint=cfg.prompt)

    trainer = build_trainer(cfg, evaluation=True)
    metrics: dict[str, float] = {}
    for split in cfg.splits:
        run = trainer.validate if split == "validation" else trainer.test
        metrics.update(as_floats(run(module, datamodule=datamodule, verbose=False)[0]))
    results = record.finish(metrics=metrics)
    for key, value in sorted(metrics.items()):
        print(f"{key}: {value:.4f}")
    return results


@hydra_command("eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
