"""Nearest vocabulary tokens of a prompt (Lester §7), written per run and available as a command."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from promptlearn.backbones import build_tiny_t5
from promptlearn.utils.errors import ConfigError
from promptlearn.cli.interpret import main as interpret_main
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.methods.prompt_tuning import PromptTuning
from promptlearn.prompts.interpret import NEIGHBOURS_FILE, nearest_token_ids, nearest_tokens, write_neighbours

from conftest import ToySentiment, adamw


def brute_force_neighbours(prompt: torch.Tensor, embeddings: torch.Tensor, k: int) -> list[list[int]]:
    """One cosine at a time, sorted in Python: an independent reference."""
    result = []
    for row in prompt:
        sims = [(float(F.cosine_similarity(row, e, dim=0)), i) for i, e in enumerate(embeddings)]
        result.append([i for _, i in sorted(sims, key=lambda t: -t[0])[:k]])
    return result


def test_neighbours_match_a_brute_force_cosine_ranking(tiny_backbone):
    torch.manual_seed(0)
    embeddings = tiny_backbone.model.get_input_embeddings().weight.detach()
    prompt = torch.randn(3, embeddings.shape[1])
    scores, ids = nearest_token_ids(prompt, embeddings, k=4)
    assert ids.tolist() == brute_force_neighbours(prompt, embeddings, 4)
    expected = F.cosine_similarity(prompt[:, None, :], embeddings[ids], dim=-1)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)
    assert torch.all(scores[:, :-1] >= scores[:, 1:])


def test_a_prompt_made_of_token_embeddings_finds_those_tokens():
    backbone = build_tiny_t5()
    module = PromptTuning(backbone, ToySentiment().info(), adamw(), prompt_length=5, init="text", init_text="hello")
    neighbours = nearest_tokens(module.prompt, backbone.model.get_input_embeddings().weight, backbone.tokenizer, k=2)
    assert [row[0].token for row in neighbours] == list("hello")
    assert all(row[0].similarity == pytest.approx(1.0, abs=1e-5) for row in neighbours)
    assert all(row[1].similarity < 1.0 - 1e-3 for row in neighbours)


def test_written_with_a_run_only_for_input_space_prompts(tmp_path):
    backbone, task = build_tiny_t5(), ToySentiment()
    module = PromptTuning(backbone, task.info(), adamw(), prompt_length=4, init="class_label")
    path = write_neighbours(module, tmp_path, k=3)
    table = json.loads(path.read_text())
    assert path.name == NEIGHBOURS_FILE and [row["position"] for row in table] == [0, 1, 2, 3]
    assert all(len(row["neighbours"]) == 3 for row in table)
    assert write_neighbours(FrozenBackboneModule(backbone, task.info()), tmp_path / "none") is None


def test_wrong_shapes_and_k_are_one_line_errors():
    embeddings = torch.randn(10, 8)
    with pytest.raises(ConfigError, match="does not live in the embedding space"):
        nearest_token_ids(torch.randn(2, 4), embeddings)
    with pytest.raises(ConfigError, match="top-k must be between 1 and the vocabulary size 10"):
        nearest_token_ids(torch.randn(2, 8), embeddings, k=11)


def test_command_reads_a_run_folder(compose_train, tmp_path, capsys):
    backbone, task = build_tiny_t5(), ToySentiment()
    torch.manual_seed(0)
    module = PromptTuning(backbone, task.info(), adamw(), prompt_length=3, init="sampled_vocab")
    module.save_prompt(tmp_path / "prompt.pt")
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(compose_train("model=tiny_t5"), tmp_path / ".hydra" / "config.yaml")

    interpret_main([str(tmp_path), "-k", "2", "--json", str(tmp_path / "n.json")])
    lines = capsys.readouterr().out.strip().splitlines()
    expected = nearest_tokens(module.prompt, backbone.model.get_input_embeddings().weight, backbone.tokenizer, k=2)
    assert len(lines) == 3
    for line, row in zip(lines, expected):
        assert json.dumps(row[0].token, ensure_ascii=False) in line and f"{row[0].similarity:.2f}" in line
    saved = json.loads((tmp_path / "n.json").read_text())
    assert [[n["token_id"] for n in row["neighbours"]] for row in saved] == [[n.token_id for n in r] for r in expected]


def test_command_without_a_backbone_says_how_to_name_one(tmp_path, capsys):
    backbone = build_tiny_t5()
    PromptTuning(backbone, ToySentiment().info(), adamw(), prompt_length=2, init="random_uniform").save_prompt(tmp_path / "p.pt")
    with pytest.raises(SystemExit) as exit_info:
        interpret_main([str(tmp_path / "p.pt")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith("name the backbone with --model (a config in conf/model/, e.g. tiny_t5)")
    with pytest.raises(SystemExit):
        interpret_main([str(tmp_path / "p.pt"), "--model", "tiny_llama"])  # another backbone: refused
    assert "load it with model=tiny_t5" in capsys.readouterr().err


def test_special_tokens_are_no_neighbours_unless_asked_for():
    backbone = build_tiny_t5()
    embeddings = backbone.model.get_input_embeddings().weight.detach()
    special = [backbone.tokenizer.pad_token_id, backbone.tokenizer.eos_token_id]
    prompt = embeddings[special]  # rows that are the special tokens' own embeddings
    plain = nearest_tokens(prompt, embeddings, backbone.tokenizer, k=3)
    assert all(n.token_id not in backbone.tokenizer.all_special_ids for row in plain for n in row)
    with_special = nearest_tokens(prompt, embeddings, backbone.tokenizer, k=3, include_special=True)
    assert [row[0].token_id for row in with_special] == special
