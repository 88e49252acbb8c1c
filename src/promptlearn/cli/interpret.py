"""promptlearn-interpret: the nearest vocabulary tokens of each position of a learned prompt (Lester et al. §7).

    promptlearn-interpret outputs/<run>                       # the run's prompt.pt on the run's own backbone
    promptlearn-interpret outputs/<run>/prompt.pt -k 10 --json neighbours.json
    promptlearn-interpret path/to/prompt.pt --model smollm2_135m   # any model config name from conf/model/
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from promptlearn.cli.components import build
from promptlearn.cli.run import one_line_errors
from promptlearn.utils.atomic import atomic_json_dump
from promptlearn.backbones import Backbone
from promptlearn.utils.paths import config_dir
from promptlearn.utils.errors import CheckpointError, ConfigError
from promptlearn.prompts.checkpoint import check_compatible, read_prompt
from promptlearn.prompts.interpret import format_neighbours, nearest_tokens, neighbours_table

PROMPT_FILE = "prompt.pt"


def model_config(prompt_path: Path, model: str | None) -> DictConfig:
    """``conf/model/<model>.yaml`` if named, else the model node of the run's saved Hydra config."""
    if model is not None:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose("train", overrides=[f"model={model}"]).model
    saved = prompt_path.parent / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"{saved} not found: name the backbone with --model (a config in conf/model/, e.g. tiny_t5)")
    return OmegaConf.load(saved).model


def input_space_prompt(payload: dict, path: Path, backbone: Backbone) -> torch.Tensor:
    check_compatible(payload, path, payload["method"], backbone.fingerprint())
    prompt = payload["state_dict"].get("prompt")
    if prompt is None or prompt.ndim != 2:
        raise CheckpointError(
            f"{path} holds a '{payload['method']}' prompt with no [length, hidden] input embeddings "
            f"(tensors: {sorted(payload['state_dict'])}); only input-space prompts have nearest tokens"
        )
    return prompt


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="promptlearn-interpret", description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a run folder holding prompt.pt, or a prompt.pt")
    parser.add_argument("--model", help="model config name (default: the run's own, from .hydra/config.yaml)")
    parser.add_argument("-k", "--top-k", type=int, default=5, help="neighbours per position (default 5)")
    parser.add_argument("--json", type=Path, help="also write the neighbours to this JSON file")
    parser.add_argument("--include-special", action="store_true",
                        help="also show special tokens (padding, BOS/EOS, <extra_id_N>) as neighbours")
    return parser.parse_args(argv)


def interpret(args: argparse.Namespace) -> str:
    path = args.path / PROMPT_FILE if args.path.is_dir() else args.path
    payload = read_prompt(path)
    backbone: Backbone = build(model_config(path, args.model))
    prompt = input_space_prompt(payload, path, backbone)
    neighbours = nearest_tokens(prompt, backbone.vocabulary_embeddings(), backbone.tokenizer, args.top_k,
                                include_special=args.include_special)
    if args.json is not None:
        atomic_json_dump(neighbours_table(neighbours), args.json)
    return format_neighbours(neighbours)


@one_line_errors
def main(argv: Sequence[str] | None = None) -> None:
    print(interpret(parse_args(argv)))


if __name__ == "__main__":
    main()
