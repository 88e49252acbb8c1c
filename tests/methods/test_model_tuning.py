"""Model tuning trains and saves the whole backbone; the prompt methods never do either. End to end per method."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from promptlearn.backbones import build_tiny_llama, build_tiny_t5
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.methods.autoprompt import AutoPrompt
from promptlearn.methods.model_tuning import ModelTuning
from promptlearn.methods.pez import PEZ
from promptlearn.methods.prompt_design import PromptDesign
from promptlearn.cli.train import train

from conftest import adamw

TINY = ["trainer=debug", "data.max_val_examples=8", "data.max_test_examples=8", "data.max_train_examples=64"]


def fit(module, datamodule, steps: int, tmp_path) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=datamodule)
    return trainer


def test_model_tuning_trains_every_weight_and_saves_a_full_checkpoint(tiny_backbone, toy_sentiment, tmp_path):
    before = {k: v.clone() for k, v in tiny_backbone.model.state_dict().items()}
    module = ModelTuning(tiny_backbone, toy_sentiment.info(), adamw(1e-2))
    datamodule = TaskDataModule(toy_sentiment, tiny_backbone, batch_size=16)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))

    def loss() -> float:
        with torch.no_grad():
            total, count = module.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])
        return float(-total.sum() / count.sum())

    initial = loss()
    trainer = fit(module, datamodule, steps=10, tmp_path=tmp_path)
    assert loss() < 0.5 * initial
    optimized = {id(p) for group in module.optimizers().optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in tiny_backbone.model.parameters()}
    after = tiny_backbone.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert {k for k, _ in tiny_backbone.model.named_parameters()} <= set(changed)  # tied weights appear once here

    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert set(checkpoint["state_dict"]) == {f"model.{k}" for k in after}
    path = module.save_prompt(tmp_path / "prompt.pt")
    fresh = ModelTuning((build_tiny_t5 if tiny_backbone.is_encoder_decoder else build_tiny_llama)(), toy_sentiment.info())
    assert not torch.equal(fresh.model.get_input_embeddings().weight, tiny_backbone.model.get_input_embeddings().weight)
    fresh.load_prompt(path)
    assert all(torch.equal(v, after[k]) for k, v in fresh.model.state_dict().items())
    assert trainer.global_step == 10


@pytest.mark.parametrize("method", ["autoprompt", "pez", "prompt_design"])
def test_prompt_methods_never_change_or_save_the_backbone(toy_sentiment, tmp_path, method):
    backbone = build_tiny_llama()
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    make = {
        "autoprompt": lambda: AutoPrompt(backbone, toy_sentiment.info(), trigger_length=2, num_candidates=3),
        "pez": lambda: PEZ(backbone, toy_sentiment.info(), adamw(0.1), prompt_length=3),
        "prompt_design": lambda: PromptDesign(backbone, toy_sentiment.info()),
    }
    module = make[method]()
    if module.trainable_parameters():
        fit(module, TaskDataModule(toy_sentiment, backbone, batch_size=16), steps=3, tmp_path=tmp_path)
        checkpoint = torch.load(next(tmp_path.rglob("*.ckpt")), weights_only=False)
        assert checkpoint["state_dict"] and not any(k.startswith("model.") for k in checkpoint["state_dict"])
    assert all(torch.equal(before[k], v) for k, v in backbone.model.state_dict().items())
    assert all(not p.requires_grad for p in backbone.model.parameters())
    saved = torch.load(module.save_prompt(tmp_path / "prompt.pt"), weights_only=True)["state_dict"]
    assert not any(k.startswith("model.") for k in saved)
    assert (tmp_path / "prompt.pt").stat().st_size < 20_000


@pytest.mark.parametrize(
    ("overrides", "target", "lr"),
    [
        (["method=model_tuning"], "transformers.optimization.Adafactor", 1e-3),
        (["method=model_tuning", "model=t5_base"], "transformers.optimization.Adafactor", 1e-3),  # model picks Adafactor 0.3
        (["method=model_tuning", "optimizer=adamw"], "torch.optim.AdamW", 0.01),  # the command line wins
        (["method=pez", "model=t5_base"], "torch.optim.AdamW", 0.1),
        (["method=pez", "optimizer=adafactor"], "transformers.optimization.Adafactor", 0.3),
        (["method=prompt_tuning", "model=t5_base"], "transformers.optimization.Adafactor", 0.3),
    ],
)
def test_methods_select_their_optimizer_and_the_command_line_wins(compose_train, overrides, target, lr):
    cfg = compose_train(*overrides)
    assert cfg.optimizer._target_ == target and cfg.optimizer.lr == pytest.approx(lr)


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
@pytest.mark.parametrize("method", ["autoprompt", "pez", "prompt_design", "model_tuning"])
def test_each_method_trains_end_to_end_from_the_composed_config(compose_train, tmp_path, model, method):
    fast = {"autoprompt": ["method.num_candidates=3", "baseline=false"], "prompt_design": []}.get(method, ["baseline=false"])
    results = train(compose_train(f"model={model}", f"method={method}", *fast, *TINY))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["method"] == method and on_disk["model"] == model
    assert {"val/score", "test/score"} <= set(on_disk["metrics"]) and 0.0 <= on_disk["metrics"]["test/score"] <= 1.0
    expected_steps = {"prompt_design": 0}.get(method, 2)
    assert on_disk["train_steps"] == expected_steps
    trainable = {
        "autoprompt": 3,  # trigger_length token ids
        "pez": 10 * 32,  # prompt_length x hidden
        "prompt_design": 0,
        "model_tuning": on_disk["total_params"],
    }[method]
    assert on_disk["trainable_params"] == trainable
    if method == "prompt_design":
        assert on_disk["metrics"]["test/score"] == on_disk["baseline"]["test/score"]
    else:
        assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    side_file = {"autoprompt": "trigger.json", "pez": "hard_prompt.json"}.get(method)
    if side_file:
        record = json.loads((tmp_path / side_file).read_text())
        text = record.get("trigger", record.get("hard_prompt"))
        assert isinstance(text, str) and record["retokenize_mismatch"] >= 0
    if method == "pez":
        assert "test/retokenize_mismatch" in on_disk["metrics"]
    assert results["prompt_checkpoint"] == str(tmp_path / "prompt.pt")
