"""PEFT interop, checked with PEFT itself: an exported prompt gives PEFT the same logits, and an imported one gives us PEFT's."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, PromptTuningConfig, TaskType, get_peft_model

from promptlearn.backbones import build_tiny_llama, build_tiny_t5
from promptlearn.utils.errors import CheckpointError
from promptlearn.methods.prompt_tuning import PromptTuning
from promptlearn.prompts.peft_interop import export_prompt_file, import_peft_adapter, import_to_prompt_file

from conftest import ToySentiment, adamw

BUILDERS = {"tiny_t5": build_tiny_t5, "tiny_llama": build_tiny_llama}


def batch_of(backbone):
    tokenizer = backbone.tokenizer
    encoded = tokenizer(["good good =>", "bad =>", "a longer input here =>"], padding=True, return_tensors="pt")
    decoder = torch.tensor([[0, 101, 102], [0, 103, 104], [0, 105, 106]])
    return encoded["input_ids"], encoded["attention_mask"], decoder


def our_logits(module, input_ids, mask, decoder):
    inputs = module.model_inputs(input_ids, mask)
    if module.backbone.is_encoder_decoder:
        return module.model(**inputs, decoder_input_ids=decoder).logits
    return module.model(**inputs).logits


def peft_logits(peft_model, backbone, input_ids, mask, decoder):
    if backbone.is_encoder_decoder:
        return peft_model(input_ids=input_ids, attention_mask=mask, decoder_input_ids=decoder).logits
    return peft_model(input_ids=input_ids, attention_mask=mask).logits


@pytest.mark.parametrize("model", sorted(BUILDERS))
@torch.no_grad()
def test_an_exported_prompt_gives_peft_our_logits(model, tmp_path):
    ours = BUILDERS[model]()
    torch.manual_seed(0)
    module = PromptTuning(ours, ToySentiment().info(), adamw(), prompt_length=5, init="random_uniform").eval()
    adapter = export_prompt_file(module.save_prompt(tmp_path / "prompt.pt"), tmp_path / "adapter", "local/tiny")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_transformer_submodules"] == 1
    assert config["task_type"] == ("SEQ_2_SEQ_LM" if ours.is_encoder_decoder else "CAUSAL_LM")

    peft_model = PeftModel.from_pretrained(BUILDERS[model]().model, str(adapter)).eval()
    inputs = batch_of(ours)
    expected = our_logits(module, *inputs)
    got = peft_logits(peft_model, ours, *inputs)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    plain = our_logits(PromptTuning(ours, ToySentiment().info(), prompt_length=5, init="random_uniform").eval(), *inputs)
    assert not torch.allclose(got, plain, atol=1e-3)  # the prompt matters, so equality means it was carried over
    assert torch.equal(import_peft_adapter(adapter, ours), module.prompt.detach())  # and the round trip is exact


@pytest.mark.parametrize("model", sorted(BUILDERS))
@torch.no_grad()
def test_an_adapter_trained_in_peft_gives_us_its_logits(model, tmp_path):
    backbone = BUILDERS[model]()
    task_type = TaskType.SEQ_2_SEQ_LM if backbone.is_encoder_decoder else TaskType.CAUSAL_LM
    torch.manual_seed(1)
    peft_model = get_peft_model(BUILDERS[model]().model, PromptTuningConfig(
        task_type=task_type, num_virtual_tokens=4, num_transformer_submodules=1)).eval()
    peft_model.save_pretrained(str(tmp_path / "peft"))

    path = import_to_prompt_file(tmp_path / "peft", backbone, tmp_path / "prompt.pt")
    module = PromptTuning(backbone, ToySentiment().info(), prompt_length=4, init="random_uniform")
    module.load_prompt(path)
    module.eval()
    inputs = batch_of(backbone)
    torch.testing.assert_close(our_logits(module, *inputs), peft_logits(peft_model, backbone, *inputs), rtol=1e-5, atol=1e-5)


def test_adapters_we_cannot_represent_are_refused(tmp_path):
    t5 = build_tiny_t5()
    both = get_peft_model(build_tiny_t5().model, PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=2))
    both.save_pretrained(str(tmp_path / "both"))
    with pytest.raises(CheckpointError, match="prompts the decoder too"):
        import_peft_adapter(tmp_path / "both", t5)

    lora = get_peft_model(build_tiny_llama().model, LoraConfig(task_type=TaskType.CAUSAL_LM, target_modules=["q_proj"]))
    lora.save_pretrained(str(tmp_path / "lora"))
    with pytest.raises(CheckpointError, match="is a LORA adapter"):
        import_peft_adapter(tmp_path / "lora", build_tiny_llama())

    wide = build_tiny_t5(d_model=64, d_ff=128)
    module = PromptTuning(wide, ToySentiment().info(), prompt_length=2, init="random_uniform")
    export_prompt_file(module.save_prompt(tmp_path / "wide.pt"), tmp_path / "wide")
    with pytest.raises(CheckpointError, match="token_dim=64, but tiny_t5 has hidden size 32"):
        import_peft_adapter(tmp_path / "wide", t5)
    with pytest.raises(CheckpointError, match="not a PEFT adapter folder"):
        import_peft_adapter(tmp_path, t5)
