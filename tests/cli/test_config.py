"""The config tree composes for every option, and model configs carry their tested optimizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from transformers.optimization import Adafactor

from promptlearn.utils.paths import config_dir

MODELS = sorted(p.stem for p in (Path(config_dir()) / "model").glob("*.yaml"))


def test_issue_listed_models_exist():
    expected = {"tiny_t5", "tiny_llama", "smollm2_135m", "gpt2", "flan_t5_small", "flan_t5_base"}
    expected |= {f"t5_{s}{v}" for s in ("small", "base", "large", "xl", "xxl") for v in ("", "_lm_adapt")}
    assert expected <= set(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_composes(compose_train, model):
    cfg = compose_train(f"model={model}")
    assert cfg.model.name == model
    expected = "adafactor" if "t5" in model and not model.startswith("tiny") else "adamw"
    assert cfg.optimizer._target_.endswith("Adafactor" if expected == "adafactor" else "AdamW")


def test_lm_adapt_configs_point_at_the_lm_adapted_checkpoints(compose_train):
    for size, hub in [("small", "t5-small"), ("base", "t5-base"), ("large", "t5-large"), ("xl", "t5-xl"), ("xxl", "t5-xxl")]:
        assert compose_train(f"model=t5_{size}_lm_adapt").model.name_or_path == f"google/{hub}-lm-adapt"


def test_command_line_optimizer_wins_over_the_model_default(compose_train):
    assert compose_train("model=t5_base_lm_adapt", "optimizer=adamw").optimizer._target_ == "torch.optim.AdamW"
    assert compose_train("model=smollm2_135m", "optimizer=adafactor").optimizer._target_.endswith("Adafactor")


def test_adafactor_has_lesters_settings(compose_train):
    prompt = torch.nn.Parameter(torch.zeros(3, 4))
    optimizer = instantiate(compose_train("optimizer=adafactor").optimizer)([prompt])
    assert isinstance(optimizer, Adafactor)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.3 and group["weight_decay"] == 1e-5 and group["decay_rate"] == -0.8
    assert group["scale_parameter"] is False and group["relative_step"] is False and group["warmup_init"] is False
    prompt.grad = torch.ones(3, 4)
    optimizer.step()
    assert torch.all(prompt < 0)  # a constant LR step, no relative-step schedule


def test_wandb_logger_runs_offline_without_an_api_key(compose_train, monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    from promptlearn.cli.train import train

    results = train(compose_train(
        "model=tiny_t5", "logger=wandb", "trainer=debug", "baseline=false",
        "data.max_val_examples=4", "data.max_test_examples=4", "data.max_train_examples=16",
    ))
    assert results["train_steps"] == 2
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))


METHODS = sorted(p.stem for p in (Path(config_dir()) / "method").glob("*.yaml") if not p.stem.startswith("_"))
# Not a FrozenBackboneModule: PEZ for CLIP optimises a CLIP text prompt (promptlearn-invert).
NOT_ON_THE_BASE = {"pez_clip"}


@pytest.mark.parametrize("method", [m for m in METHODS if m not in NOT_ON_THE_BASE])
def test_every_method_config_starts_from_the_base_keys(compose_train, method):
    from omegaconf import OmegaConf

    base = set(OmegaConf.load(Path(config_dir()) / "method" / "_base.yaml"))
    own = OmegaConf.load(Path(config_dir()) / "method" / f"{method}.yaml")
    assert "_base" in own.defaults, f"conf/method/{method}.yaml must list _base in its defaults"
    composed = compose_train(f"method={method}", *(["method.prompts=[x]"] if method == "prompt_ensemble" else []))
    assert base <= set(composed.method)
    import inspect

    from hydra.utils import get_class
    accepted = set(inspect.signature(get_class(composed.method._target_)).parameters) | set(
        inspect.signature(get_class("promptlearn.methods.base.FrozenBackboneModule")).parameters)
    assert base <= accepted  # every base key is one the method really takes


def test_prefix_tuning_trains_its_mlp_at_li_and_liangs_lr(compose_train):
    """The MLP multiplies each step: at a soft prompt's LR 0.01 (or 1e-3) SmolLM2 fell below its bare template."""
    for model in ("smollm2_135m", "t5_base_lm_adapt"):
        optimizer = compose_train(f"model={model}", "method=prefix_tuning").optimizer
        assert optimizer._target_ == "torch.optim.AdamW" and optimizer.lr == 5e-5
    assert compose_train("method=prefix_tuning", "optimizer.lr=1e-3").optimizer.lr == 1e-3
    assert compose_train("method=p_tuning_v2").optimizer.lr == 0.01
