"""A NaN or infinite training loss stops the run with the step and the last good checkpoint, or skips the step."""

from __future__ import annotations

import pytest
import torch

from promptlearn.utils.errors import ConfigError, NonFiniteLossError
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.cli.train import train

RUN = ["model=tiny_llama", "method.prompt_length=4", "trainer=cpu", "trainer.max_steps=6", "trainer.val_check_interval=2",
       "data.max_train_examples=64", "data.max_val_examples=8", "data.max_test_examples=8", "baseline=false"]


@pytest.fixture
def nan_loss_at(monkeypatch):
    """Make the training loss NaN for the given training batches, counted from 0 (evaluation is left alone).

    Returns the global step and the prompt at each poisoned batch.
    """

    def poison(*batches: int) -> tuple[list[int], list[torch.Tensor]]:
        seen: list[int] = []
        prompts: list[torch.Tensor] = []
        count = {"batches": 0}
        original = FrozenBackboneModule.target_log_likelihood

        def target_log_likelihood(self, input_ids, attention_mask, labels):
            total, tokens = original(self, input_ids, attention_mask, labels)
            if self._trainer is not None and self.trainer.training:
                if count["batches"] in batches:
                    seen.append(self.global_step)
                    prompts.append(self.prompt.detach().clone())
                    total = total * float("nan")
                count["batches"] += 1
            return total, tokens

        monkeypatch.setattr(FrozenBackboneModule, "target_log_likelihood", target_log_likelihood)
        return seen, prompts

    return poison


def test_nan_loss_stops_naming_the_step_and_the_last_good_checkpoint(compose_train, tmp_path, nan_loss_at):
    nan_loss_at(3)
    with pytest.raises(NonFiniteLossError) as err:
        train(compose_train(*RUN))
    message = str(err.value)
    assert "training loss is nan at step 3" in message
    assert f"last good checkpoint: {tmp_path / 'checkpoints' / 'last.ckpt'}" in message and "ckpt_path=last" in message
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    assert "\n" not in message


def test_nan_loss_before_any_checkpoint_says_there_is_none(compose_train, nan_loss_at):
    nan_loss_at(0)
    with pytest.raises(NonFiniteLossError, match="at step 0; .*no checkpoint was saved before it"):
        train(compose_train(*RUN))


def test_skipped_steps_leave_the_prompt_untouched(compose_train, tmp_path, nan_loss_at):
    seen, prompts = nan_loss_at(2, 3, 4)
    results = train(compose_train(*RUN, "on_nonfinite=skip"))
    assert seen == [2, 3, 4] and results["train_steps"] == 6
    assert torch.equal(prompts[0], prompts[1]) and torch.equal(prompts[1], prompts[2])
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert torch.isfinite(last["state_dict"]["prompt"]).all() and not torch.equal(last["state_dict"]["prompt"], prompts[0])
    assert all(torch.isfinite(torch.tensor(v)) for v in results["metrics"].values())


def test_too_many_skips_in_a_row_stop_the_run(compose_train, nan_loss_at):
    nan_loss_at(*range(100))
    with pytest.raises(NonFiniteLossError, match="the 11th non-finite loss in a row"):
        train(compose_train(*RUN, "on_nonfinite=skip", "trainer.max_steps=20"))


def test_unknown_nonfinite_setting_is_refused(compose_train):
    with pytest.raises(ConfigError, match="on_nonfinite must be 'stop' or 'skip', got 'ignore'"):
        train(compose_train(*RUN, "on_nonfinite=ignore"))
