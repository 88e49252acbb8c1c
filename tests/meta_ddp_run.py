"""Meta-train on the toy task family with N CPU processes (gloo), then meta-test; every rank saves, for
every meta-step, its prompt, its learned inner step sizes, and the gradient all-reduces DDP ran, and
the per-episode meta-test accuracies of every init.

    python tests/meta_ddp_run.py --devices 2 --out DIR     # Lightning relaunches this script for rank 1
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from promptlearn.backbones import build_tiny_llama
from promptlearn.data.episode_data import EpisodeDataModule
from promptlearn.data.episodes import TaskSource
from promptlearn.meta.maml import MetaPromptTuning
from promptlearn.meta.toy import keyword_family

STEPS = 3
TASKS_PER_STEP = 4
TEST_EPISODES = 7  # odd, so the ranks hold different numbers of episodes


class AllReduceRecorder(L.Callback):
    """Counts DDP's gradient all-reduces (by a comm hook); snapshots the trainables after each meta-step."""

    def __init__(self) -> None:
        self.pending: list[int] = []  # elements of each bucket all-reduced since the last step ended
        self.steps: list[dict] = []

    def hook(self, state, bucket):
        self.pending.append(bucket.buffer().numel())
        return default_hooks.allreduce_hook(state, bucket)

    def on_fit_start(self, trainer, module) -> None:
        # Lightning registers DDPStrategy(ddp_comm_hook=...) on CUDA only, so the hook goes on by hand.
        if isinstance(trainer.strategy.model, DistributedDataParallel):
            trainer.strategy.model.register_comm_hook(None, self.hook)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append(
            {
                "allreduced_elements": self.pending,
                "prompt": module.prompt.detach().clone(),
                "inner_lr": module.inner_lr.detach().clone(),
                "episodes": [episode["index"] for episode in batch],
            }
        )
        self.pending = []


def run(devices: int, out: Path) -> Path:
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    backbone = build_tiny_llama()
    pools = {
        "meta_train": [TaskSource(t) for t in keyword_family(range(6), size=8)],
        "meta_test": [TaskSource(t) for t in keyword_family(range(6, 9), size=8)],
    }
    datamodule = EpisodeDataModule(
        pools, backbone, n_way=2, k_shot=2, query_shots=2, tasks_per_step=TASKS_PER_STEP,
        test_episodes=TEST_EPISODES, eval_batch_episodes=2,
    )
    module = MetaPromptTuning(
        backbone,
        functools.partial(torch.optim.AdamW, lr=0.05),
        prompt_length=4,
        init="random_uniform",
        inner_steps=2,
        inner_lr=0.003,
        learn_inner_lr=True,
    )
    recorder = AllReduceRecorder()
    strategy = DDPStrategy(process_group_backend="gloo") if devices > 1 else "auto"
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        inference_mode=False,
        callbacks=[recorder],
    )
    trainer.fit(module, datamodule=datamodule)
    module.eval_tasks_per_pass = 3  # chunks that cut across episodes, differently on 1 and on 2 processes
    trainer.test(module, datamodule=datamodule, verbose=False)
    per_episode = {name: stats["per_episode"] for name, stats in module.meta_test["inits"].items()}
    path = Path(out) / f"devices{devices}_rank{trainer.global_rank}.pt"
    torch.save({"steps": recorder.steps, "world_size": trainer.world_size, "meta_test": per_episode}, path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    run(args.devices, args.out)
