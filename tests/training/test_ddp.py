"""Scale-out presets: DDP on two CPU processes keeps the ranks' prompts identical; every strategy composes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

# Lightning's DDP relaunches sys.argv for every extra rank, which cannot be pytest: the job is a script.
JOB = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path

    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir
    from lightning.pytorch.callbacks import ModelCheckpoint

    from promptlearn.cli.components import build, build_backbone_and_task, build_method
    from promptlearn.utils.paths import config_dir

    out = Path(sys.argv[1])
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[
            "model=tiny_t5", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
            "trainer.precision=32-true", "trainer.max_steps=3", "trainer.deterministic=false",
            "trainer.limit_val_batches=0", "method.prompt_length=4", "method.init=random_uniform",
            "data.max_train_examples=64", "data.max_val_examples=8", "data.max_test_examples=8", "data.batch_size=4",
        ])
    rank = int(os.environ.get("LOCAL_RANK", 0))
    backbone, task, datamodule = build_backbone_and_task(cfg)
    torch.manual_seed(100 + rank)  # each rank starts from a different prompt: DDP must broadcast rank 0's
    module = build_method(cfg, backbone, task)
    initial = module.prompt.detach().clone()

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                self.first_batch = batch["input_ids"].clone()

        def on_train_end(self, trainer, pl_module):
            torch.save({"rank": trainer.global_rank, "world": trainer.world_size, "initial": initial,
                        "prompt": pl_module.prompt.detach().clone(), "first_batch": self.first_batch},
                       out / f"rank{trainer.global_rank}.pt")

    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True)
    trainer = build(cfg.trainer, logger=False, callbacks=[Record(), checkpoints], enable_progress_bar=False)
    trainer.fit(module, datamodule=datamodule)
    """
)


@pytest.mark.slow
def test_two_process_cpu_ddp_keeps_prompts_identical(tmp_path: Path):
    script = tmp_path / "ddp_job.py"
    script.write_text(JOB)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per rank: two ranks share the CPU
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["world"] == rank1["world"] == 2 and {rank0["rank"], rank1["rank"]} == {0, 1}
    assert not torch.equal(rank0["initial"], rank1["initial"])            # they started apart ...
    assert not torch.equal(rank0["first_batch"], rank1["first_batch"])    # ... and saw different data,
    assert torch.equal(rank0["prompt"], rank1["prompt"])                  # yet hold bit-identical prompts
    assert not torch.equal(rank0["prompt"], rank0["initial"])             # that trained
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert set(checkpoint["state_dict"]) == {"prompt"}
    torch.testing.assert_close(checkpoint["state_dict"]["prompt"], rank0["prompt"])
    assert (tmp_path / "checkpoints" / "last.ckpt").stat().st_size < 50_000


@pytest.mark.parametrize("preset", ["cpu", "gpu", "ddp", "fsdp", "deepspeed"])
def test_every_trainer_preset_composes(compose_train, preset):
    cfg = compose_train(f"trainer={preset}")
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    expected = {"ddp": "DDPStrategy", "fsdp": "FSDPStrategy", "deepspeed": "DeepSpeedStrategy"}
    if preset in expected:
        assert cfg.trainer.strategy._target_.endswith(expected[preset])


def test_ddp_and_fsdp_strategies_instantiate(compose_train):
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    assert isinstance(instantiate(compose_train("trainer=ddp").trainer.strategy), DDPStrategy)
    fsdp = instantiate(compose_train("trainer=fsdp").trainer.strategy)
    assert isinstance(fsdp, FSDPStrategy)
    assert fsdp.kwargs["use_orig_params"] is True  # frozen and trainable tensors may share a flat parameter
    policy = fsdp.kwargs["auto_wrap_policy"]
    big, small = torch.nn.Linear(4000, 4000), torch.nn.Linear(10, 10)
    assert policy(big, recurse=False, nonwrapped_numel=big.weight.numel()) is True
    assert policy(small, recurse=False, nonwrapped_numel=small.weight.numel()) is False


def test_deepspeed_preset_excludes_frozen_weights_and_names_the_install(compose_train):
    strategy = compose_train("trainer=deepspeed").trainer.strategy
    assert strategy.exclude_frozen_parameters is True
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        with pytest.raises(Exception, match="pip install"):
            instantiate(strategy)
