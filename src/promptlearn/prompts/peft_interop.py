"""Soft prompts to and from PEFT's prompt-tuning adapter format (``adapter_config.json`` + ``adapter_model.safetensors``).

A promptlearn prompt is PEFT's ``PromptTuningConfig`` with ``num_transformer_submodules=1``: for T5
the prompt goes on the encoder only, as in Lester et al. (PEFT's seq2seq default, 2, also prompts the
decoder; such adapters are refused on import). The weights file holds one tensor,
``prompt_embeddings`` of shape ``[num_virtual_tokens, token_dim]``.

The command line is ``python -m promptlearn.cli.peft`` (:mod:`promptlearn.cli.peft`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import PromptTuningConfig, PromptTuningInit, TaskType
from safetensors.torch import load_file, save_file
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

from promptlearn.backbones import Backbone
from promptlearn.utils.errors import CheckpointError
from promptlearn.prompts.checkpoint import read_prompt, save_prompt

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
WEIGHTS_KEY = "prompt_embeddings"
METHOD = "prompt_tuning"


def is_seq2seq(model_type: str) -> bool:
    return model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES


def export_peft_adapter(
    prompt: torch.Tensor, output_dir: str | Path, *, seq2seq: bool, base_model_name_or_path: str | None = None
) -> Path:
    """Write ``prompt`` (``[length, hidden]``) as a PEFT prompt-tuning adapter folder; returns the folder."""
    if prompt.ndim != 2:
        raise CheckpointError(f"a soft prompt is [length, hidden], got shape {tuple(prompt.shape)}")
    output_dir = Path(output_dir)
    config = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM,
        num_virtual_tokens=prompt.shape[0],
        token_dim=prompt.shape[1],
        num_transformer_submodules=1,  # encoder only for T5, as Lester et al. prompt it
        prompt_tuning_init=PromptTuningInit.RANDOM,  # how PEFT would initialise a fresh one; the weights replace it
        base_model_name_or_path=base_model_name_or_path,
        inference_mode=True,
    )
    config.save_pretrained(str(output_dir))
    save_file({WEIGHTS_KEY: prompt.detach().float().cpu().contiguous()}, str(output_dir / WEIGHTS_FILE))
    return output_dir


def export_prompt_file(prompt_path: str | Path, output_dir: str | Path, base_model_name_or_path: str | None = None) -> Path:
    """A ``prompt.pt`` written by method=prompt_tuning, as a PEFT adapter folder."""
    payload = read_prompt(prompt_path)
    if payload["method"] != METHOD or "prompt" not in payload["state_dict"]:
        raise CheckpointError(f"{prompt_path} holds a '{payload['method']}' prompt; only method=prompt_tuning prompts export to PEFT")
    seq2seq = is_seq2seq(str(payload["backbone"].get("model_type")))
    return export_peft_adapter(payload["state_dict"]["prompt"], output_dir, seq2seq=seq2seq,
                               base_model_name_or_path=base_model_name_or_path)


def import_peft_adapter(adapter_dir: str | Path, backbone: Backbone) -> torch.Tensor:
    """The ``[length, hidden]`` prompt of a PEFT prompt-tuning adapter, checked against ``backbone``."""
    adapter_dir = Path(adapter_dir)
    config_path, weights_path = adapter_dir / CONFIG_FILE, adapter_dir / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{adapter_dir} is not a PEFT adapter folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    config = json.loads(config_path.read_text())
    if config.get("peft_type") != "PROMPT_TUNING":
        raise CheckpointError(f"{adapter_dir} is a {config.get('peft_type')} adapter; only PROMPT_TUNING adapters are soft prompts")
    if config.get("token_dim") != backbone.hidden_size:
        raise CheckpointError(
            f"{adapter_dir} was trained for token_dim={config.get('token_dim')}, but {backbone.name} has hidden size "
            f"{backbone.hidden_size}; load it on the backbone it was trained for"
        )
    submodules = config.get("num_transformer_submodules") or (2 if config.get("task_type") == "SEQ_2_SEQ_LM" else 1)
    if submodules != 1:
        raise CheckpointError(
            f"{adapter_dir} prompts the decoder too (num_transformer_submodules={submodules}); promptlearn prompts "
            "the encoder only, as Lester et al.: train the adapter with num_transformer_submodules=1"
        )
    expected = "SEQ_2_SEQ_LM" if backbone.is_encoder_decoder else "CAUSAL_LM"
    if config.get("task_type") not in (None, expected):
        raise CheckpointError(f"{adapter_dir} is a {config['task_type']} adapter, but {backbone.name} needs {expected}")
    weights = load_file(str(weights_path))
    if WEIGHTS_KEY not in weights:
        raise CheckpointError(f"{weights_path} has no '{WEIGHTS_KEY}' tensor (found {sorted(weights)})")
    prompt = weights[WEIGHTS_KEY].float()
    if prompt.shape != (config["num_virtual_tokens"], backbone.hidden_size):
        raise CheckpointError(f"{weights_path}: '{WEIGHTS_KEY}' has shape {tuple(prompt.shape)}, "
                              f"expected ({config['num_virtual_tokens']}, {backbone.hidden_size})")
    return prompt


def import_to_prompt_file(adapter_dir: str | Path, backbone: Backbone, output_path: str | Path) -> Path:
    """A PEFT adapter as a promptlearn ``prompt.pt``, for promptlearn-eval, ensembles and interpretation."""
    prompt = import_peft_adapter(adapter_dir, backbone)
    # "init" only shapes the module before the saved values replace it; any valid init will do.
    hparams = {"prompt_length": prompt.shape[0], "init": "random_uniform"}
    return save_prompt(output_path, {"prompt": prompt}, METHOD, backbone.fingerprint(), hparams)
