"""Prompt-only checkpoints round-trip and refuse a backbone or method they do not belong to."""

from __future__ import annotations

import pytest
import torch

from promptlearn.backbones import build_tiny_llama, build_tiny_t5
from promptlearn.utils.errors import CheckpointError
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.methods.prompt_tuning import PromptTuning


def prompt_module(backbone, task, length=5):
    return PromptTuning(backbone, task.info(), prompt_length=length, init="random_uniform")


def test_round_trip_restores_the_prompt_and_stores_only_it(tmp_path, toy_sentiment):
    backbone = build_tiny_t5()
    torch.manual_seed(1)
    saved = prompt_module(backbone, toy_sentiment)
    path = saved.save_prompt(tmp_path / "prompt.pt")
    payload = torch.load(path, weights_only=True)
    assert list(payload["state_dict"]) == ["prompt"]
    assert path.stat().st_size < 20_000  # kilobytes, not the backbone
    torch.manual_seed(2)
    loaded = prompt_module(backbone, toy_sentiment)
    assert not torch.equal(loaded.prompt, saved.prompt)
    loaded.load_prompt(path)
    assert torch.equal(loaded.prompt, saved.prompt)


def test_another_hidden_size_is_refused_with_a_clear_error(tmp_path, toy_sentiment):
    path = prompt_module(build_tiny_t5(d_model=32), toy_sentiment).save_prompt(tmp_path / "prompt.pt")
    wider = prompt_module(build_tiny_t5(d_model=64, name="tiny_t5_wide"), toy_sentiment)
    with pytest.raises(CheckpointError, match=r"trained on backbone 'tiny_t5' \(hidden_size=32\).*hidden_size=64.*model=tiny_t5") as info:
        wider.load_prompt(path)
    assert "\n" not in str(info.value)


def test_another_architecture_or_method_or_length_is_refused(tmp_path, toy_sentiment):
    path = prompt_module(build_tiny_t5(), toy_sentiment).save_prompt(tmp_path / "prompt.pt")
    with pytest.raises(CheckpointError, match="model_type"):
        prompt_module(build_tiny_llama(), toy_sentiment).load_prompt(path)
    with pytest.raises(CheckpointError, match="expects"):
        prompt_module(build_tiny_t5(), toy_sentiment, length=9).load_prompt(path)
    with pytest.raises(CheckpointError, match="method=prompt_tuning"):
        FrozenBackboneModule(build_tiny_t5(), toy_sentiment.info()).load_prompt(path)


def test_truncated_or_foreign_files_are_refused(tmp_path, toy_sentiment):
    module = prompt_module(build_tiny_t5(), toy_sentiment)
    path = module.save_prompt(tmp_path / "prompt.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="unreadable"):
        module.load_prompt(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"prompt": torch.zeros(5, 32)}, foreign)
    with pytest.raises(CheckpointError, match="not a promptlearn prompt"):
        module.load_prompt(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        module.load_prompt(tmp_path / "missing.pt")


def test_lightning_checkpoint_holds_no_backbone_weights(toy_sentiment):
    module = prompt_module(build_tiny_llama(), toy_sentiment)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert list(checkpoint["state_dict"]) == ["prompt"]
    assert checkpoint["promptlearn"]["backbone"]["name"] == "tiny_llama"
    module.on_load_checkpoint(checkpoint)  # accepted by its own module
    with pytest.raises(CheckpointError, match="model_type"):
        prompt_module(build_tiny_t5(), toy_sentiment).on_load_checkpoint(checkpoint)
