"""promptlearn-lm-adapt: LM-adapt a T5 checkpoint (continue training every weight on the prefix-LM
objective), writing HF-format checkpoints that ``model=local_t5 model.name_or_path=<dir>`` loads.

    promptlearn-lm-adapt model=t5_v1_1_base trainer=gpu trainer.max_steps=10000        # C4, streamed
    promptlearn-lm-adapt model=tiny_t5 corpus=local_text 'corpus.paths=[notes/*.txt]' trainer.max_steps=50
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ThroughputMonitor
from omegaconf import DictConfig

from promptlearn.cli.components import build, build_trainer
from promptlearn.cli.results import RunRecord, as_floats
from promptlearn.cli.run import hydra_command
from promptlearn.lm_adaptation.datamodule import PrefixLMDataModule
from promptlearn.lm_adaptation.module import HFCheckpoint, LMAdaptationModule
from promptlearn.lm_adaptation.prefix_lm import real_tokens

log = logging.getLogger("promptlearn")


def lm_adapt(cfg: DictConfig) -> dict[str, Any]:
    """Adapt the configured backbone, save it, and return what results.json records."""
    output_dir = Path(cfg.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone = build(cfg.model)
    datamodule = PrefixLMDataModule(build(cfg.corpus), backbone.tokenizer, seed=cfg.seed, **cfg.lm_adapt.data)
    module = LMAdaptationModule(backbone, build(cfg.optimizer))
    checkpoints = HFCheckpoint(output_dir / "hf", cfg.lm_adapt.save_every_n_steps)
    throughput = ThroughputMonitor(  # logs train/device/items_per_sec: real (non-padding) tokens/s
        batch_size_fn=lambda batch: len(batch["input_ids"]), length_fn=real_tokens,
        window_size=cfg.lm_adapt.throughput_window,
    )
    trainer = build_trainer(cfg, [checkpoints, throughput])
    corpus = cfg.corpus._target_.rsplit(".", 1)[-1]
    record = RunRecord(output_dir, task=corpus, model=backbone.name, method="lm_adaptation", seed=cfg.seed)
    record.describe(module)
    initial = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    fit_started = time.time()
    trainer.fit(module, datamodule=datamodule)
    fit_seconds = time.time() - fit_started
    final = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    results = record.finish(
        write=trainer.is_global_zero,
        corpus=corpus,
        train_steps=trainer.global_step,
        initial_val_loss=as_floats(initial)["val/loss"],
        final_val_loss=as_floats(final)["val/loss"],
        metrics={"val/loss": as_floats(final)["val/loss"]},
        train_tokens=module.tokens_seen,
        tokens_per_sec=round(module.tokens_seen / fit_seconds, 1),
        checkpoint=str(checkpoints.saved[-1]) if checkpoints.saved else None,
        checkpoints=[str(path) for path in checkpoints.saved],
    )
    if trainer.is_global_zero:
        log.info("held-out prefix-LM loss %.4f -> %.4f; %.0f tokens/s; saved %s",
                 results["initial_val_loss"], results["final_val_loss"], results["tokens_per_sec"],
                 results["checkpoint"])
    return results


@hydra_command("lm_adapt")
def main(cfg: DictConfig) -> float:
    """Return the final held-out prefix-LM loss."""
    return lm_adapt(cfg)["final_val_loss"]


if __name__ == "__main__":
    main()
