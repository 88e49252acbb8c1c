"""Generation from a prefilled cache (packed, shared prompt once) gives the tokens plain padded
``generate`` gives, and those of greedy decoding by hand, one unpadded example at a time."""

from __future__ import annotations

import pytest
import torch

from promptlearn.backbones import build_tiny_gemma3, build_tiny_llama, load_smollm2
from promptlearn.data.encoding import Collator, TextToTextEncoder
from promptlearn.data.tasks.rotten_tomatoes import RottenTomatoes
from promptlearn.methods.prompt_design import PromptDesign
from promptlearn.methods.prompt_tuning import PromptTuning
from promptlearn.methods.scoring import GENERATION_PREFILLS
from promptlearn.utils.errors import ConfigError

from conftest import ToyCopy, adamw


def generation_batch(backbone, task, examples):
    encoder = TextToTextEncoder(backbone.tokenizer, backbone.is_encoder_decoder)
    encoded = [encoder.encode(task, e) for e in examples]
    collate = Collator(backbone.is_encoder_decoder, backbone.tokenizer.pad_token_id, task.eval_mode, train=False)
    return encoded, collate(encoded)


def generations(module, batch) -> dict[str, list[str]]:
    texts = {}
    for prefill in GENERATION_PREFILLS:
        module.scorer.generation_prefill = prefill
        texts[prefill] = module.generate_texts(batch["gen_input_ids"], batch["gen_attention_mask"])
    return texts


def greedy_by_hand(backbone, prompt, source_ids, steps: int) -> str:
    model, embed, eos = backbone.model, backbone.model.get_input_embeddings(), backbone.tokenizer.eos_token_id
    generated: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            ids = torch.tensor([[*source_ids, *generated]])
            inputs = torch.cat([prompt[None], embed(ids)], dim=1) if prompt is not None else embed(ids)
            token = int(model(inputs_embeds=inputs).logits[0, -1].argmax())
            if token == eos:
                break
            generated.append(token)
    return backbone.tokenizer.decode(generated, skip_special_tokens=True)


BUILDS = {
    "llama": lambda: build_tiny_llama(num_heads=4, num_key_value_heads=4),
    "llama_mqa": lambda: build_tiny_llama(num_heads=4, num_key_value_heads=1),  # every query head shares one
    "gemma3_window_4": lambda: build_tiny_gemma3(sliding_window=4, attn_implementation="sdpa"),  # sliding layers
}


@pytest.mark.parametrize("model", sorted(BUILDS))
@pytest.mark.parametrize("prompted", [True, False])
def test_every_prefill_decodes_the_tokens_of_greedy_by_hand(prompted, model):
    backbone = BUILDS[model]()
    task = ToyCopy()
    examples, batch = generation_batch(backbone, task, task.load_splits()["train"][:6])
    assert len(set(batch["gen_attention_mask"].sum(1).tolist())) > 1  # rows of different lengths: real padding
    torch.manual_seed(0)
    if prompted:
        module = PromptTuning(backbone, task.info(), adamw(), prompt_length=3, init="random_uniform", max_new_tokens=6)
    else:
        module = PromptDesign(backbone, task.info(), max_new_tokens=6)
    module.eval()
    texts = generations(module, batch)
    prompt = module.prompt.detach() if prompted else None
    expected = [greedy_by_hand(backbone, prompt, e.source_ids, 6) for e in examples]
    assert texts == {prefill: expected for prefill in GENERATION_PREFILLS}


def test_packed_prefill_holds_the_padded_batch_cache():
    """The cache decoding starts from equals the one a padded forward builds, at every real position."""
    from promptlearn.methods.packed_forward import packed_prefill_cache

    backbone = build_tiny_llama()
    task = ToyCopy()
    _, batch = generation_batch(backbone, task, task.load_splits()["train"][:5])
    torch.manual_seed(0)
    module = PromptTuning(backbone, task.info(), adamw(), prompt_length=3, init="random_uniform")
    inputs = module.model_inputs(batch["gen_input_ids"], batch["gen_attention_mask"])
    with torch.no_grad():
        packed = packed_prefill_cache(backbone.model, inputs, shared=3, width=64)
        position_ids = (inputs["attention_mask"].cumsum(1) - 1).clamp(min=0)
        padded = backbone.model.base_model(
            inputs_embeds=inputs["inputs_embeds"][:, :-1], attention_mask=inputs["attention_mask"][:, :-1],
            position_ids=position_ids[:, :-1], use_cache=True,
        ).cache
    real = inputs["attention_mask"][:, :-1].bool()
    assert packed.get_seq_length() == real.shape[1]
    for ours, reference in zip(packed.layers, padded.layers):
        for a, b in ((ours.keys, reference.keys), (ours.values, reference.values)):
            torch.testing.assert_close(a.transpose(1, 2)[real], b.transpose(1, 2)[real], rtol=1e-5, atol=1e-5)
            assert not a.transpose(1, 2)[~real].any()


def test_an_unknown_prefill_is_refused():
    backbone = build_tiny_llama()
    with pytest.raises(ConfigError, match="generation_prefill must be one of packed, shared, padded"):
        from promptlearn.methods.scoring import Scorer

        Scorer(backbone, generation_prefill="cached")


@pytest.mark.slow
def test_smollm2_generations_are_the_same_token_for_token():
    backbone = load_smollm2()
    task = RottenTomatoes(eval_mode="generate")
    examples = task.load_splits()["validation"][:6]
    _, batch = generation_batch(backbone, task, examples)
    torch.manual_seed(0)
    module = PromptTuning(backbone, task.info(), adamw(), prompt_length=20, init="sampled_vocab", max_new_tokens=12)
    module.eval()
    texts = generations(module, batch)
    assert texts["packed"] == texts["padded"] and texts["shared"] == texts["padded"]
    assert all(texts["padded"])  # real continuations, not empty strings
