"""The pretrained offline default: SmolLM2-135M from its PyPI package (slow: converts once, ~20 s)."""

from __future__ import annotations

import json

import pytest
import torch

from promptlearn.backbones import load_smollm2
from promptlearn.cli.train import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return load_smollm2()


def test_smollm2_loads_frozen_from_the_package(smollm2):
    assert smollm2.model.config.model_type == "llama"
    assert smollm2.hidden_size == 576 and smollm2.vocab_size == 49152
    assert sum(p.numel() for p in smollm2.model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert not any(p.requires_grad for p in smollm2.model.parameters())
    assert 0.10 < smollm2.model.get_input_embeddings().weight.std().item() < 0.17
    # the label words of the default task are single tokens, so rank classification takes one forward pass
    assert [len(smollm2.tokenizer(w, add_special_tokens=False)["input_ids"]) for w in (" negative", " positive")] == [1, 1]
    # a pretrained model, not a random one: it continues a common phrase sensibly
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        next_token = smollm2.model(ids).logits[0, -1].argmax()
    assert smollm2.tokenizer.decode(next_token).strip() == "Paris"


def test_two_step_default_run(compose_train, tmp_path, smollm2):
    cfg = compose_train(
        "trainer=debug", "data.batch_size=2", "data.eval_batch_size=8",
        "data.max_val_examples=8", "data.max_test_examples=8", "data.max_train_examples=32",
    )
    results = train(cfg)
    assert results["model"] == "smollm2_135m" and results["train_steps"] == 2
    assert results["trainable_params"] == 20 * 576
    assert json.loads((tmp_path / "results.json").read_text())["metrics"]["test/score"] == results["metrics"]["test/score"]
