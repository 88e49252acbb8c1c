"""P-Tuning: the prompt encoder's output placed before the input, folding, parameter counts, training."""

from __future__ import annotations

import json

import pytest
import torch

from promptlearn.backbones import build_tiny_llama, build_tiny_t5
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.utils.errors import ConfigError
from promptlearn.cli.eval import evaluate
from promptlearn.methods.p_tuning import PTuning
from promptlearn.cli.train import train

from conftest import ToyCopy, ToySentiment, adamw
from test_prompt_tuning_forward import encoded_batch, reference_log_likelihood
from test_training import fit

BUILD = {"tiny_t5": build_tiny_t5, "tiny_llama": build_tiny_llama}


def log_likelihood(module, batch) -> torch.Tensor:
    with torch.no_grad():
        return module.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])[0]


def test_mlp_encoder_computes_linear_relu_linear():
    torch.manual_seed(0)
    module = PTuning(
        build_tiny_llama(), ToySentiment().info(), prompt_length=3, encoder="mlp", encoder_hidden_size=7
    )
    encoder = module.prompt_encoder
    first, last = encoder.mlp[0], encoder.mlp[2]
    by_hand = torch.relu(encoder.embedding @ first.weight.T + first.bias) @ last.weight.T + last.bias
    torch.testing.assert_close(module.virtual_tokens(), by_hand)
    assert first.weight.shape == (7, 32)


def test_lstm_encoder_is_bidirectional():
    """Every virtual token depends on every input embedding, earlier and later ones."""
    torch.manual_seed(0)
    module = PTuning(build_tiny_llama(), ToySentiment().info(), prompt_length=5, encoder="lstm")
    embedding = module.prompt_encoder.embedding
    jacobian = torch.autograd.functional.jacobian(
        lambda e: module.prompt_encoder.mlp(module.prompt_encoder.lstm(e[None])[0][0]), embedding.detach()
    )  # [5, d, 5, d]
    influence = jacobian.abs().sum(dim=(1, 3))  # output row x input row
    assert (influence > 0).all()
    assert module.prompt_encoder.lstm.bidirectional and module.prompt_encoder.lstm.num_layers == 2


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_forward_equals_manual_concatenation_of_the_encoder_output(model):
    torch.manual_seed(0)
    backbone, task = BUILD[model](), ToySentiment()
    module = PTuning(backbone, task.info(), adamw(), prompt_length=4).eval()
    examples, batch = encoded_batch(backbone, task)
    with torch.no_grad():
        reference = reference_log_likelihood(backbone, module.prompt_encoder(), examples)
    torch.testing.assert_close(log_likelihood(module, batch), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_folded_prompt_gives_identical_outputs(model, tmp_path):
    torch.manual_seed(0)
    backbone, task = BUILD[model](), ToyCopy()
    module = PTuning(
        backbone, task.info(), adamw(), prompt_length=3, lstm_dropout=0.5, max_new_tokens=4
    ).eval()
    _, batch = encoded_batch(backbone, task, train=False)
    before = log_likelihood(module, batch)
    texts = module.generate_texts(batch["gen_input_ids"], batch["gen_attention_mask"])
    path = module.save_prompt(tmp_path / "prompt.pt")
    module.fold()
    assert [name for name, p in module.named_parameters() if p.requires_grad] == ["prompt"]
    assert torch.equal(log_likelihood(module, batch), before)

    payload = torch.load(path, weights_only=True)
    assert set(payload["state_dict"]) == {"prompt"} and payload["hparams"]["encoder"] is None
    torch.manual_seed(1)
    fresh = PTuning(backbone, task.info(), adamw(), prompt_length=3, max_new_tokens=4).eval()
    assert not torch.equal(log_likelihood(fresh, batch), before)
    fresh.load_prompt(path)
    assert fresh.prompt_encoder is None
    assert torch.equal(log_likelihood(fresh, batch), before)
    assert fresh.generate_texts(batch["gen_input_ids"], batch["gen_attention_mask"]) == texts


def test_trainable_parameter_counts_match_the_formulas():
    backbone, task = build_tiny_llama(), ToySentiment()
    p, d = 6, backbone.hidden_size

    def count(**kwargs) -> int:
        return sum(
            x.numel()
            for x in PTuning(backbone, task.info(), prompt_length=p, **kwargs).trainable_parameters()
        )

    h = 10
    assert count(encoder="mlp", encoder_hidden_size=h) == p * d + (d * h + h) + (h * d + d)
    h = d // 2  # the paper's code: the two directions together are as wide as the model
    lstm = 2 * (4 * h * (d + h) + 8 * h) + 2 * (4 * h * (2 * h + h) + 8 * h)
    assert count(encoder="lstm") == p * d + lstm + (2 * h * d + d) + (d * d + d)
    assert count(encoder=None) == p * d


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_loss_drops_on_a_learnable_toy_task(model):
    torch.manual_seed(0)
    backbone, task = BUILD[model](), ToySentiment()
    module = PTuning(backbone, task.info(), adamw(0.2), prompt_length=8, encoder="lstm")
    datamodule = TaskDataModule(task, backbone, batch_size=16)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    initial = float(-log_likelihood(module.eval(), batch).sum())
    fit(module, datamodule, steps=20)
    # The encoder learns more slowly than a free prompt on these random backbones
    # (to 0.59 and 0.65 of the initial loss here).
    assert float(-log_likelihood(module.eval(), batch).sum()) < 0.75 * initial


def test_bad_settings_are_one_clear_error():
    backbone, task = build_tiny_llama(max_position_embeddings=64), ToySentiment().info()
    with pytest.raises(
        ConfigError, match=r"unknown P-Tuning prompt encoder \(method.encoder\) 'lstn'. Did you mean 'lstm'"
    ):
        PTuning(backbone, task, encoder="lstn")
    with pytest.raises(
        ConfigError, match=r"64 virtual tokens leave no room for input in tiny_llama's 64 positions"
    ):
        PTuning(backbone, task, prompt_length=64)
    with pytest.raises(ConfigError, match=r"prompt length must be at least 1, got 0"):
        PTuning(backbone, task, prompt_length=0)


TINY = [
    "trainer=debug",
    "data.max_val_examples=4",
    "data.max_test_examples=4",
    "data.max_train_examples=16",
    "baseline=false",
]


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_train_then_evaluate_the_saved_prompt(compose_train, tmp_path, model):
    results = train(compose_train(f"model={model}", "method=p_tuning", "method.prompt_length=3", *TINY))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["method"] == "p_tuning" and on_disk["train_steps"] == 2
    assert set(torch.load(results["prompt_checkpoint"], weights_only=True)["state_dict"]) == {"prompt"}
    evaluated = evaluate(
        compose_train(
            f"model={model}",
            "method=p_tuning",
            f"prompt={results['prompt_checkpoint']}",
            "trainer=debug",
            "data.max_test_examples=4",
            "splits=[test]",
            config_name="eval",
        )
    )
    assert evaluated["metrics"]["test/score"] == pytest.approx(results["metrics"]["test/score"])
    assert evaluated["metrics"]["test/loss"] == pytest.approx(results["metrics"]["test/loss"], rel=1e-5)
