"""PEZ: exact projection with a straight-through gradient, re-tokenized text, training, evaluation as text."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from promptlearn.backbones import build_tiny_llama
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.utils.errors import ConfigError
from promptlearn.methods.pez import PEZ
from promptlearn.methods.prompt_tuning import PromptTuning
from promptlearn.prompts.projection import candidate_token_ids, hard_prompt_text, project_to_vocab

from conftest import adamw


def test_projection_returns_exact_vocabulary_rows_nearest_by_cosine():
    torch.manual_seed(0)
    vocab = torch.randn(50, 8) * torch.rand(50, 1) * 3  # rows of varied norms: cosine differs from L2
    continuous = torch.randn(6, 8, requires_grad=True)
    projection = project_to_vocab(continuous, vocab)
    expected_ids = torch.tensor(
        [max(range(50), key=lambda v: F.cosine_similarity(row, vocab[v], dim=0).item()) for row in continuous.detach()]
    )
    assert torch.equal(projection.token_ids, expected_ids)
    assert torch.equal(projection.embeds.detach(), vocab[expected_ids])  # bit-exact rows, not an approximation
    assert not torch.equal(projection.token_ids, torch.cdist(continuous.detach(), vocab).argmin(1))

    allowed = torch.tensor([3, 7, 11])
    restricted = project_to_vocab(continuous, vocab, allowed)
    assert set(restricted.token_ids.tolist()) <= {3, 7, 11}
    assert torch.equal(restricted.embeds.detach(), vocab[restricted.token_ids])


def test_projection_gradient_goes_straight_through_to_the_continuous_prompt():
    torch.manual_seed(1)
    vocab = torch.randn(20, 4, requires_grad=True)
    continuous = torch.randn(3, 4, requires_grad=True)
    weights = torch.randn(3, 4)
    (project_to_vocab(continuous, vocab).embeds * weights).sum().backward()
    assert torch.equal(continuous.grad, weights)
    assert vocab.grad is None  # the vocabulary stays frozen


def test_text_round_trip_and_reported_mismatch(tiny_backbone):
    tokenizer = tiny_backbone.tokenizer
    ids = tokenizer("hi there", add_special_tokens=False)["input_ids"]
    clean = hard_prompt_text(tokenizer, ids)
    assert clean.text == "hi there" and clean.retokenized_ids == ids and clean.mismatch == 0
    lone_byte = 0xC3 + 3  # ByT5: the first byte of a two-byte character, which no string reproduces
    broken = hard_prompt_text(tokenizer, [lone_byte, *ids[:2]])
    assert broken.retokenized_ids == ids[:2]
    assert broken.mismatch == 3  # two positions differ, and one id is gone
    assert lone_byte not in candidate_token_ids(tokenizer, tiny_backbone.vocab_size).tolist()


@pytest.mark.slow
def test_bpe_merge_across_tokens_is_reported():
    from promptlearn.backbones import load_smollm2

    tokenizer = load_smollm2().tokenizer
    (the,) = tokenizer(" the", add_special_tokens=False)["input_ids"]
    (re,) = tokenizer("re", add_special_tokens=False)["input_ids"]
    text = hard_prompt_text(tokenizer, [the, re])
    assert text.text == " there"
    assert text.retokenized_ids == tokenizer(" there", add_special_tokens=False)["input_ids"] != [the, re]
    assert text.mismatch >= 1


def fit(module, datamodule, steps: int) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    return trainer


def test_loss_and_gradient_are_prompt_tunings_at_the_projected_tokens(tiny_backbone, toy_sentiment):
    """PEZ = the loss of the hard prompt, with its gradient (w.r.t. the token embeddings) applied to the soft one."""
    torch.manual_seed(0)
    module = PEZ(tiny_backbone, toy_sentiment.info(), adamw(), prompt_length=4)
    datamodule = TaskDataModule(toy_sentiment, tiny_backbone, batch_size=16)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    ids = module.projected_ids()
    assert not torch.equal(module.prompt.detach(), tiny_backbone.model.get_input_embeddings().weight[ids])

    reference = PromptTuning(tiny_backbone, toy_sentiment.info(), prompt_length=4, init="random_uniform")
    reference.prompt.data = tiny_backbone.model.get_input_embeddings().weight[ids].detach().clone()
    losses = []
    for prompted in (module, reference):
        total, count = prompted.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])
        loss = -total.sum() / count.sum()
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(module.prompt.grad, reference.prompt.grad)
    assert module.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_backbone.model.parameters())


def test_training_moves_the_hard_prompt_and_leaves_the_backbone(tiny_backbone, toy_sentiment, tmp_path):
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in tiny_backbone.model.state_dict().items()}
    optimizer = lambda params: torch.optim.AdamW(params, lr=0.1, weight_decay=0.1)  # noqa: E731  (Wen et al.)
    module = PEZ(tiny_backbone, toy_sentiment.info(), optimizer, prompt_length=4)
    initial_ids = module.projected_ids().clone()
    fit(module, TaskDataModule(toy_sentiment, tiny_backbone, batch_size=32), steps=30)
    assert not torch.equal(module.projected_ids(), initial_ids)
    assert all(torch.equal(before[k], v) for k, v in tiny_backbone.model.state_dict().items())

    module.save_prompt(tmp_path / "prompt.pt")
    record = json.loads((tmp_path / "hard_prompt.json").read_text())
    assert record["hard_prompt"] == module.hard_prompt().text
    assert record["token_ids"] == module.projected_ids().tolist() and record["retokenize_mismatch"] == 0
    assert list(torch.load(tmp_path / "prompt.pt", weights_only=True)["state_dict"]) == ["prompt"]


def test_evaluation_scores_the_retokenized_string_and_logs_the_mismatch(toy_sentiment):
    backbone = build_tiny_llama()
    embeddings = backbone.model.get_input_embeddings().weight.detach()
    a, b, lone_byte = ord("a") + 3, ord("b") + 3, 0xC3 + 3
    module = PEZ(backbone, toy_sentiment.info(), adamw(), prompt_length=3)
    module.candidate_ids = torch.tensor([a, b, lone_byte])  # let the projection reach a token text cannot reproduce
    module.prompt.data = embeddings[[lone_byte, a, b]].clone()
    assert module.projected_ids().tolist() == [lone_byte, a, b]

    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    datamodule = TaskDataModule(toy_sentiment, backbone, eval_batch_size=16)
    (pez,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    assert pez["val/retokenize_mismatch"] == 3.0

    as_text = PromptTuning(backbone, toy_sentiment.info(), prompt_length=2, init="random_uniform")
    as_text.prompt.data = embeddings[[a, b]].clone()  # "ab": what the decoded string tokenizes to
    (reference,) = trainer.validate(as_text, datamodule=datamodule, verbose=False)
    assert pez["val/loss"] == pytest.approx(reference["val/loss"], rel=1e-5)
    assert pez["val/accuracy"] == reference["val/accuracy"]


def test_bad_settings_are_one_line_errors(toy_sentiment):
    backbone = build_tiny_llama()
    with pytest.raises(ConfigError, match=r"prompt length must be at least 1, got 0"):
        PEZ(backbone, toy_sentiment.info(), prompt_length=0)
    with pytest.raises(ConfigError, match=r"vocabulary filter leaves no candidate tokens") as info:
        PEZ(backbone, toy_sentiment.info(), token_pattern="[A-Z]{3}")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"vocab_size must be at least 1"):
        PEZ(backbone, toy_sentiment.info(), vocab_size=0)
