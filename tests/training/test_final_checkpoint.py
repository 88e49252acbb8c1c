"""A run's final state is always saved: last.ckpt when training ends, the last step validated,
a periodic cadence before the first validation, and a finished run extended with more steps."""

from __future__ import annotations


import torch

from promptlearn.cli.train import train

SMALL = ["model=tiny_llama", "method.prompt_length=4", "data.max_train_examples=40", "data.max_val_examples=8",
         "data.max_test_examples=8", "baseline=false", "trainer.log_every_n_steps=1"]


def step_of(path) -> int:
    return torch.load(path, weights_only=True)["global_step"]


def test_a_run_shorter_than_its_validation_interval_leaves_a_resumable_checkpoint(compose_train, tmp_path):
    train(compose_train(*SMALL, "trainer.max_steps=4", "trainer.val_check_interval=50"))
    assert step_of(tmp_path / "checkpoints" / "last.ckpt") == 4
    assert step_of(tmp_path / "checkpoints" / "best.ckpt") == 4  # the final step was validated


def test_steps_after_the_last_validation_are_validated_and_can_be_best(compose_train, tmp_path):
    results = train(compose_train(*SMALL, "trainer.max_steps=5", "trainer.val_check_interval=2",
                                  "checkpoint.monitor=train/loss", "checkpoint.mode=min"))
    assert results["train_steps"] == 5
    assert step_of(tmp_path / "checkpoints" / "last.ckpt") == 5
    logged = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    header = logged[0].split(",")
    rows = [dict(zip(header, row.split(","))) for row in logged[1:]]
    # During fit (epoch 0: 40 examples in batches of 8), Lightning logs the validation after step n at n - 1.
    during_fit = [int(row["step"]) for row in rows if row["val/score"] and row["epoch"] == "0"]
    assert during_fit == [1, 3, 4]


def test_a_finished_run_is_extended_with_more_steps(compose_train, tmp_path):
    train(compose_train(*SMALL, "trainer.max_steps=3", "trainer.val_check_interval=2"))
    first = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    results = train(compose_train(*SMALL, "trainer.max_steps=6", "trainer.val_check_interval=2", "ckpt_path=last"))
    assert results["train_steps"] == 6 and step_of(tmp_path / "checkpoints" / "last.ckpt") == 6
    assert not torch.equal(torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["prompt"],
                           first["state_dict"]["prompt"])


def test_the_periodic_cadence_saves_between_validations(compose_train, tmp_path, monkeypatch):
    saved_at: list[int] = []
    from promptlearn.training.checkpoints import LatestCheckpoint

    original = LatestCheckpoint._save_checkpoint

    def spy(self, trainer, filepath):
        saved_at.append(trainer.global_step)
        original(self, trainer, filepath)

    monkeypatch.setattr(LatestCheckpoint, "_save_checkpoint", spy)
    train(compose_train(*SMALL, "trainer.max_steps=6", "trainer.val_check_interval=50",
                        "checkpoint.every_n_train_steps=2", "checkpoint.every_n_minutes=null"))
    assert saved_at == [2, 4, 6]
    saved_at.clear()
    train(compose_train(*SMALL, "trainer.max_steps=3", "trainer.val_check_interval=50", "checkpoint.every_n_minutes=0"))
    assert saved_at == [1, 2, 3]  # a zero-minute cadence saves after every step
