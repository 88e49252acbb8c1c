"""Shared fixtures: tiny offline backbones, toy tasks, and composed Hydra configs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from promptlearn.backbones import Backbone, build_tiny_llama, build_tiny_t5
from promptlearn.utils.paths import config_dir
from promptlearn.cli import resolvers  # noqa: F401  (the config tree's resolvers, as every command registers them)
from promptlearn.data.tasks import Example, Task

import deprecation_guard
from deprecation_guard import deprecations_from_our_code  # noqa: F401  (autouse: a deprecation from our code fails its test)

deprecation_guard.install()

# Tiny models run fastest on one thread; OpenMP threads fighting over 2 shared cores cost 5-10x.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts on one thread, whatever a test before it set (benchmarks' --threads)."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(params=["tiny_t5", "tiny_llama"])
def tiny_backbone(request) -> Backbone:
    return {"tiny_t5": build_tiny_t5, "tiny_llama": build_tiny_llama}[request.param]()


@dataclass
class ToySentiment(Task):
    """Texts of 'good'/'bad' words; the label says which word the text repeats. Learnable by a prompt."""

    name: str = "toy_sentiment"
    template: str = "{text} =>"
    label_words: tuple[str, ...] = (" no", " yes")
    size: int = 64

    def load_splits(self) -> dict[str, list[Example]]:
        rng = torch.Generator().manual_seed(0)
        examples = []
        for i in range(self.size):
            label = int(torch.randint(2, (1,), generator=rng))
            text = " ".join(["good" if label else "bad"] * (1 + i % 3))
            examples.append(Example({"text": text}, self.label_words[label], tuple(self.label_words), label))
        return {"train": examples, "validation": examples[:16], "test": examples[16:32]}


@dataclass
class ToyCopy(Task):
    """Free-form targets, evaluated by generation: copy the first word."""

    name: str = "toy_copy"
    template: str = "copy: {text}"
    metrics: tuple[str, ...] = ("exact_match",)
    eval_mode: str = "generate"

    def load_splits(self) -> dict[str, list[Example]]:
        words = ["ab", "cd", "ef", "gh"]
        examples = [Example({"text": " ".join([w] * (1 + i % 3))}, w) for i, w in enumerate(words * 4)]
        return {"train": examples, "validation": examples[:8], "test": examples[8:]}


@pytest.fixture
def toy_sentiment() -> ToySentiment:
    return ToySentiment()


@pytest.fixture
def toy_copy() -> ToyCopy:
    return ToyCopy()


def adamw(lr: float = 0.1):
    return functools.partial(torch.optim.AdamW, lr=lr)


@pytest.fixture
def compose_train(tmp_path: Path):
    """Compose conf/train.yaml with overrides, as the CLI would, writing into tmp_path."""

    def _compose(*overrides: str, config_name: str = "train") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.output_dir = str(tmp_path)
            del cfg.hydra
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def run_main(monkeypatch, capsys):
    """Run a console script's ``main`` in this process with ``argv``: its exit status, stdout and stderr."""
    import subprocess
    import sys

    from hydra.core.global_hydra import GlobalHydra

    def _run(main, *argv: str) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", ["promptlearn", *argv])
        GlobalHydra.instance().clear()
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exit_info:
            code = exit_info.code
        finally:
            GlobalHydra.instance().clear()
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, captured.out, captured.err)

    return _run
