"""promptlearn-invert: a hard text prompt that CLIP matches to a few images (PEZ, Wen et al. 2023).

    promptlearn-invert targets.images=path/to/folder                      # tiny random CLIP, offline smoke run
    promptlearn-invert clip=clip_vit_l14 targets.images=path/to/folder   # Stable Diffusion 1.x's text encoder
    promptlearn-invert clip=clip_vit_b32 'targets.images=[a.png,b.png]' targets.batch_size=1 method.prompt_length=8

Writes into the Hydra run directory: ``results.json`` (the prompt, its similarity through the
projected embeddings and as re-encoded plain text, and their difference), ``prompt.txt`` (the
prompt alone) and ``prompt.png`` (the target images under the prompt).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from promptlearn.cli.components import build, build_trainer
from promptlearn.cli.results import RunRecord
from promptlearn.cli.run import hydra_command
from promptlearn.clip.backbone import ClipBackbone
from promptlearn.clip.figure import save_prompt_figure
from promptlearn.clip.images import ImageDataModule
from promptlearn.clip.pez_clip import PEZClip
from promptlearn.utils.atomic import atomic_write

log = logging.getLogger("promptlearn")

# Plain-text and embedding-path similarities of a prompt that round-trips differ only by float rounding.
AGREEMENT_TOLERANCE = 1e-4


def invert(cfg: DictConfig) -> dict[str, Any]:
    """Fit a PEZ prompt to the target images and return everything results.json records."""
    output_dir = Path(cfg.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    clip: ClipBackbone = build(cfg.clip)
    make_method = build(cfg.method, _partial_=True)
    module: PEZClip = make_method(backbone=clip, optimizer=build(cfg.optimizer))
    # Objects go in through a partial: instantiate would turn the backbone dataclass into a config.
    datamodule: ImageDataModule = build(cfg.targets, _partial_=True, _convert_="all")(clip=clip, seed=cfg.seed)
    datamodule.setup("fit")

    trainer = build_trainer(cfg)
    record = RunRecord(output_dir, task="images", model=clip.name, method=module.method_name, seed=cfg.seed)
    record.describe(module)
    trainer.fit(module, datamodule=datamodule)

    outcome = module.result(datamodule.embeddings)
    agree = abs(outcome["similarity_difference"]) <= AGREEMENT_TOLERANCE
    if not agree:
        log.warning(
            "the prompt %r scores %.4f as projected ids but %.4f as plain text (difference %+.4f, %d ids differ)",
            outcome["prompt"], outcome["similarity"], outcome["text_similarity"],
            outcome["similarity_difference"], outcome["retokenize_mismatch"],
        )
    record.describe(
        images=[str(p) for p in datamodule.paths],
        batch_size=datamodule.batch_size,
        **outcome,
        similarities_agree=agree,
        metrics={"similarity": outcome["similarity"], "text_similarity": outcome["text_similarity"]},
        trainable_params=module.prompt.numel(),
        train_steps=trainer.global_step,
    )
    if trainer.is_global_zero:
        prompt_file = atomic_write(output_dir / "prompt.txt", lambda handle: handle.write((outcome["prompt"] + "\n").encode()))
        figure = save_prompt_figure(
            output_dir / "prompt.png", datamodule.images, outcome["prompt"], outcome["text_similarity"],
            outcome["per_image_text_similarity"], ids_similarity=outcome["similarity"], max_images=cfg.figure_images,
        )
        record.describe(prompt_file=str(prompt_file), figure=str(figure))
    results = record.finish(write=trainer.is_global_zero)
    log.info("prompt %r: similarity %.4f (plain text %.4f)", outcome["prompt"], outcome["similarity"], outcome["text_similarity"])
    return results


@hydra_command("invert")
def main(cfg: DictConfig) -> float:
    """Return the found prompt's similarity, the number a Hydra sweeper optimises."""
    return invert(cfg)["similarity"]


if __name__ == "__main__":
    main()
