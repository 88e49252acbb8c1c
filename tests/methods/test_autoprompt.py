"""AutoPrompt: HotFlip candidate scores, the search on a planted toy, label-token search, outputs, errors."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from promptlearn.data.datamodule import TaskDataModule
from promptlearn.data.encoding import Collator, TextToTextEncoder
from promptlearn.utils.errors import ConfigError
from promptlearn.methods.autoprompt import AutoPrompt
from promptlearn.methods.prompt_tuning import PromptTuning
from promptlearn.cli.train import train
from promptlearn.backbones import build_tiny_llama

from conftest import ToySentiment

SECRET = "Q"  # a character the toy data never contains


def train_batch(backbone, task, size: int = 16):
    encoder = TextToTextEncoder(backbone.tokenizer, backbone.is_encoder_decoder)
    examples = [encoder.encode(task, e) for e in task.load_splits()["train"][:size]]
    return examples, Collator(backbone.is_encoder_decoder, backbone.tokenizer.pad_token_id, task.eval_mode)(examples)


def reference_trigger_gradient(backbone, trigger_ids, examples) -> torch.Tensor:
    """d(mean label log-likelihood)/d(trigger embeddings), one unpadded example at a time, full logits."""
    model, embed = backbone.model, backbone.model.get_input_embeddings()
    trigger = embed.weight[trigger_ids].detach().requires_grad_(True)
    total, tokens = 0.0, 0
    for example in examples:
        source, target = torch.tensor([example.source_ids]), torch.tensor([example.target_ids])
        if backbone.is_encoder_decoder:
            inputs = torch.cat([trigger[None], embed(source)], dim=1)
            start = torch.tensor([[model.config.decoder_start_token_id]])
            logits = model(inputs_embeds=inputs, decoder_input_ids=torch.cat([start, target[:, :-1]], dim=1)).logits[0]
        else:
            inputs = torch.cat([trigger[None], embed(source), embed(target)], dim=1)
            first = len(trigger_ids) + source.shape[1] - 1
            logits = model(inputs_embeds=inputs).logits[0, first : first + target.shape[1]]
        total = total + logits.log_softmax(-1)[torch.arange(target.shape[1]), target[0]].sum()
        tokens += target.shape[1]
    (grad,) = torch.autograd.grad(total / tokens, trigger)
    return grad


def test_candidate_scores_are_gradient_dot_vocabulary_embeddings(tiny_backbone, toy_sentiment):
    module = AutoPrompt(tiny_backbone, toy_sentiment.info(), trigger_length=3, initial_trigger="abc")
    examples, batch = train_batch(tiny_backbone, toy_sentiment, size=4)
    scores = module.candidate_scores(module.trigger_gradient(batch))

    vocab = tiny_backbone.model.get_input_embeddings().weight.detach()
    expected = torch.einsum("ld,vd->lv", reference_trigger_gradient(tiny_backbone, module.trigger_ids, examples), vocab)
    allowed = module.allowed
    torch.testing.assert_close(scores[:, allowed], expected[:, allowed], rtol=1e-4, atol=1e-6)
    assert torch.isneginf(scores[:, ~allowed]).all()
    tokenizer = tiny_backbone.tokenizer
    label_ids = {i for word in toy_sentiment.label_words for i in tokenizer(word, add_special_tokens=False)["input_ids"]}
    assert not allowed[sorted(label_ids)].any() and not allowed[tokenizer.all_special_ids].any()
    assert expected.abs().max() > 0


def test_choice_cross_entropy_is_the_gold_choice_log_probability_among_the_choices(tiny_backbone):
    task = ToySentiment(label_words=("n", "y"))  # one byte-level token each
    module = AutoPrompt(tiny_backbone, task.info(), trigger_length=2, initial_trigger="ab", objective="choice_cross_entropy")
    examples, batch = train_batch(tiny_backbone, task, size=6)
    total, count = module.label_log_likelihood(batch)

    model, embed = tiny_backbone.model, tiny_backbone.model.get_input_embeddings()
    trigger = embed.weight[module.trigger_ids].detach()
    word_ids = [tiny_backbone.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in task.label_words]
    expected = []
    with torch.no_grad():
        for example in examples:
            source, target = torch.tensor([example.source_ids]), torch.tensor([example.target_ids])
            if tiny_backbone.is_encoder_decoder:
                start = torch.tensor([[model.config.decoder_start_token_id]])
                logits = model(inputs_embeds=torch.cat([trigger[None], embed(source)], 1), decoder_input_ids=start).logits[0, 0]
            else:
                logits = model(inputs_embeds=torch.cat([trigger[None], embed(source)], 1)).logits[0, -1]
            expected.append(logits.log_softmax(-1)[word_ids].log_softmax(-1)[example.label])
    torch.testing.assert_close(total, torch.stack(expected), rtol=1e-4, atol=1e-5)
    assert count.tolist() == [1] * len(examples) and (total < 0).all()
    gradient = module.trigger_gradient(batch)
    assert gradient.shape == trigger.shape and gradient.abs().max() > 0


def test_choice_cross_entropy_needs_one_token_label_words(toy_sentiment):
    backbone = build_tiny_llama()
    with pytest.raises(ConfigError, match="label words of one token each; these tokenize to \\[3, 4\\] tokens"):
        AutoPrompt(backbone, toy_sentiment.info(), objective="choice_cross_entropy")
    with pytest.raises(ConfigError, match="method.objective must be one of label_likelihood, choice_cross_entropy"):
        AutoPrompt(backbone, toy_sentiment.info(), objective="accuracy")


def plant(backbone, task, batch) -> int:
    """Write a 1-token soft prompt trained on the toy into the embedding row of SECRET; return its id."""
    torch.manual_seed(0)
    soft = PromptTuning(backbone, task.info(), prompt_length=1, init="random_uniform")
    optimizer = torch.optim.Adam([soft.prompt], lr=0.3)
    for _ in range(30):
        total, count = soft.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])
        optimizer.zero_grad()
        (-total.sum() / count.sum()).backward()
        optimizer.step()
    (secret,) = backbone.tokenizer(SECRET, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        backbone.model.get_input_embeddings().weight[secret] = soft.prompt[0]
    return secret


def test_search_finds_the_planted_token(tiny_backbone, toy_sentiment, tmp_path):
    datamodule = TaskDataModule(toy_sentiment, tiny_backbone, batch_size=16)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    secret = plant(tiny_backbone, toy_sentiment, batch)
    module = AutoPrompt(tiny_backbone, toy_sentiment.info(), trigger_length=1, num_candidates=5, initial_trigger="x")

    # The planted token is the single best trigger: exhaustive search over every allowed token.
    candidates = module.allowed.nonzero()[:, 0]
    exhaustive = torch.stack([module.score_triggers(batch, token[None]) for token in candidates])
    assert candidates[exhaustive.argmax()] == secret
    assert (exhaustive.topk(2).values.diff().abs() > 1.0).all()  # by a clear margin

    trainer = L.Trainer(
        accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 3
    assert module.trigger_ids.tolist() == [secret]
    assert module.trigger_text() == SECRET

    module.save_prompt(tmp_path / "prompt.pt")
    record = json.loads((tmp_path / "trigger.json").read_text())
    assert record["trigger"] == SECRET and record["trigger_ids"] == [secret] and record["retokenize_mismatch"] == 0
    payload = torch.load(tmp_path / "prompt.pt", weights_only=True)
    assert list(payload["state_dict"]) == ["trigger_ids"] and payload["hparams"]["trigger_length"] == 1
    fresh = AutoPrompt(tiny_backbone, toy_sentiment.info(), trigger_length=1, initial_trigger="x")
    fresh.load_prompt(tmp_path / "prompt.pt")
    assert fresh.trigger_ids.tolist() == [secret]


def test_label_search_finds_planted_label_tokens(tiny_backbone, toy_sentiment):
    """Output embeddings planted along the class direction of the label-position state are the label tokens."""
    module = AutoPrompt(
        tiny_backbone, toy_sentiment.info(), trigger_length=2, label_search=True, label_tokens_per_class=1
    )
    _, batch = train_batch(tiny_backbone, toy_sentiment, size=32)
    features = module.label_features(batch)
    assert features.shape == (32, tiny_backbone.hidden_size)
    direction = features[batch["label"] == 1].mean(0) - features[batch["label"] == 0].mean(0)
    tokenizer = tiny_backbone.tokenizer
    (negative,) = tokenizer("N", add_special_tokens=False)["input_ids"]
    (positive,) = tokenizer("P", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        head = tiny_backbone.model.get_output_embeddings().weight
        head[positive] = 50 * direction / direction.norm()
        head[negative] = -50 * direction / direction.norm()

    found = module.search_label_tokens([batch])
    assert found.tolist() == [[negative], [positive]]
    module.label_token_ids.copy_(found)
    assert module.uses_label_tokens
    # The found verbalizer classifies the toy through the base's rank classification.
    eval_batch = Collator(tiny_backbone.is_encoder_decoder, tiny_backbone.tokenizer.pad_token_id, "rank", train=False)(
        train_batch(tiny_backbone, toy_sentiment, size=32)[0]
    )
    scores, counts, _ = module.choice_scores(eval_batch)
    predictions = scores.view(-1, 2).argmax(1)
    assert (predictions == eval_batch["label"]).float().mean() > 0.9
    assert torch.equal(counts, torch.ones_like(counts))


def test_label_search_runs_before_the_trigger_search_and_is_saved(toy_sentiment, tmp_path):
    from promptlearn.backbones import build_tiny_llama

    backbone = build_tiny_llama()
    module = AutoPrompt(backbone, toy_sentiment.info(), trigger_length=2, num_candidates=2, label_search=True,
                        label_tokens_per_class=2, label_search_examples=32)
    assert not module.uses_label_tokens
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=TaskDataModule(toy_sentiment, backbone, batch_size=16))
    assert module.uses_label_tokens and module.label_token_ids.shape == (2, 2)
    assert module.label_allowed[module.label_token_ids].all()
    module.save_prompt(tmp_path / "prompt.pt")
    record = json.loads((tmp_path / "trigger.json").read_text())
    assert record["label_token_ids"] == module.label_token_ids.tolist() and len(record["label_tokens"]) == 2
    fresh = AutoPrompt(backbone, toy_sentiment.info(), trigger_length=2, label_search=True, label_tokens_per_class=2)
    fresh.load_prompt(tmp_path / "prompt.pt")
    assert torch.equal(fresh.label_token_ids, module.label_token_ids) and fresh.uses_label_tokens


def test_bad_trigger_settings_are_one_line_errors(toy_sentiment):
    from promptlearn.backbones import build_tiny_t5

    backbone = build_tiny_t5()
    with pytest.raises(ConfigError, match=r"trigger length must be at least 1, got 0") as info:
        AutoPrompt(backbone, toy_sentiment.info(), trigger_length=0)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"vocabulary filter leaves no candidate tokens.*loosen") as info:
        AutoPrompt(backbone, toy_sentiment.info(), token_pattern="[0-9]{2}")  # byte tokens are one character
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"not a regular expression"):
        AutoPrompt(backbone, toy_sentiment.info(), token_pattern="(")


def test_zero_trigger_length_from_the_command_line_config(compose_train):
    cfg = compose_train("model=tiny_t5", "method=autoprompt", "method.trigger_length=0", "trainer=debug",
                        "data.max_train_examples=8", "data.max_val_examples=8", "data.max_test_examples=8")
    with pytest.raises(ConfigError, match=r"^trigger length must be at least 1, got 0; set method.trigger_length=3"):
        train(cfg)
