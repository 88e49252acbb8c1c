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
from promptlearn.cli.resume import override_value
from promptlearn.cli.run import hydra_command
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.prompts.checkpoint import read_prompt
from promptlearn.training.predictions import PredictionsWriter
from promptlearn.utils.errors import ConfigError


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    for split in cfg.splits:
        if split not in ("validation", "test"):
            raise ConfigError(f"splits may hold 'validation' and 'test', not '{split}'")
    backbone, task, datamodule = build_backbone_and_task(cfg)
    if cfg.prompt is None and cfg.get("untrained"):
        module: FrozenBackboneModule = build_method(cfg, backbone, task)  # as initialised with this seed
    elif cfg.prompt is None:
        module = FrozenBackboneModule(backbone, task.info())
    else:
        hparams = read_prompt(cfg.prompt)["hparams"]
        module = build_method(cfg, backbone, task, **hparams)
        module.load_prompt(cfg.prompt)
    module.check_fits(datamodule.longest_sequence())
    record = RunRecord(Path(cfg.output_dir), task=task.name, model=backbone.name, method=module.method_name, seed=cfg.seed)
    record.describe(module, prompt_checkpoint=cfg.prompt)

    trainer = build_trainer(cfg, [PredictionsWriter(cfg.output_dir)], evaluation=True)
    metrics: dict[str, float] = {}
    for split in cfg.splits:
        run = trainer.validate if split == "validation" else trainer.test
        metrics.update(as_floats(run(module, datamodule=datamodule, verbose=False)[0]))
    results = record.finish(metrics=metrics, examples=datamodule.split_sizes())
    for key, value in sorted(metrics.items()):
        print(f"{key}: {value:.4f}")
    return results


def method_of_the_prompt(overrides: list[str]) -> list[str]:
    """``prompt=<file>`` without ``method=``: the method is the one the prompt was trained with."""
    prompt = override_value(overrides, "prompt")
    if prompt in (None, "null") or override_value(overrides, "method") is not None:
        return overrides
    return [*overrides, f"method={read_prompt(prompt)['method']}"]


@hydra_command("eval", complete=method_of_the_prompt)
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
