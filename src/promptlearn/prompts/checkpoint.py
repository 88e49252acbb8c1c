"""Prompt-only checkpoints: kilobytes of trainable tensors plus the backbone they belong to.

Files are written atomically, so a run killed mid-save leaves the old file or the new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from promptlearn.utils.atomic import atomic_torch_save
from promptlearn.utils.errors import CheckpointError

FORMAT = "promptlearn.prompt/1"


def save_prompt(
    path: str | Path, state_dict: dict[str, torch.Tensor], method: str, backbone: dict[str, object], hparams: dict[str, object]
) -> Path:
    payload = {
        "format": FORMAT,
        "method": method,
        "backbone": backbone,
        "hparams": hparams,
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
    }
    return atomic_torch_save(payload, path)


def read_prompt(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"prompt checkpoint {path} does not exist; pass the prompt.pt a training run wrote")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise CheckpointError(f"prompt checkpoint {path} is unreadable ({type(err).__name__}); it may be truncated, re-save it") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a promptlearn prompt checkpoint (expected format {FORMAT})")
    return payload


def check_compatible(payload: dict[str, Any], path: str | Path, method: str, backbone: dict[str, object]) -> None:
    """Refuse a prompt saved by another method or for a backbone of another shape."""
    if payload["method"] != method:
        raise CheckpointError(f"{path} holds a '{payload['method']}' prompt; load it with method={payload['method']}, not {method}")
    saved = payload["backbone"]
    for key in ("hidden_size", "vocab_size", "model_type"):
        if saved.get(key) != backbone.get(key):
            raise CheckpointError(
                f"{path} was trained on backbone '{saved.get('name')}' ({key}={saved.get(key)}), but this backbone "
                f"'{backbone.get('name')}' has {key}={backbone.get(key)}; load it with model={saved.get('name')}"
            )

