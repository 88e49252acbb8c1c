"""Learned soft prompts read back for inference: the ``[length, hidden]`` tensor a prompt-tuning run saved."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import torch

from promptlearn.backbones import Backbone
from promptlearn.utils.errors import CheckpointError, ConfigError
from promptlearn.prompts.checkpoint import check_compatible, read_prompt

PROMPT_METHOD = "prompt_tuning"


def read_soft_prompt(path: str | Path, backbone: Backbone) -> torch.Tensor:
    """The prompt of a ``prompt.pt`` written by method=prompt_tuning, refused if it belongs to another backbone."""
    payload = read_prompt(path)
    check_compatible(payload, path, PROMPT_METHOD, backbone.fingerprint())
    prompt = payload["state_dict"].get("prompt")
    if prompt is None or prompt.ndim != 2:
        raise CheckpointError(f"{path} holds no [length, hidden] prompt; pass a prompt.pt from method=prompt_tuning")
    return prompt.float()


def expand_paths(patterns: Sequence[str | Path]) -> list[Path]:
    """Paths as given, with shell-style patterns (``multirun/x/*/prompt.pt``) expanded in sorted order."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(pattern))) if glob.has_magic(str(pattern)) else [str(pattern)]
        if not matches:
            raise ConfigError(f"no prompt file matches '{pattern}'")
        paths.extend(Path(m) for m in matches)
    return paths
