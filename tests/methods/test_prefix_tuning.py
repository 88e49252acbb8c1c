"""Prefix Tuning and P-Tuning v2: the forward pass against an independent attention computation that
inserts the same keys and values by hand, folding, generation, parameter counts, training, errors."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import torch
from transformers import AttentionInterface, ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

from promptlearn.backbones import Backbone, build_tiny_llama, build_tiny_t5, freeze
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.utils.errors import ConfigError
from promptlearn.cli.eval import evaluate
from promptlearn.methods.prefix_tuning import PrefixTuning, PTuningV2
from promptlearn.cli.train import train

from conftest import ToyCopy, ToySentiment, adamw
from test_prompt_tuning_forward import encoded_batch
from test_training import fit


def build_tiny_gqa_llama(attn_implementation: str = "eager") -> Backbone:
    """Grouped-query attention, as in SmolLM2: 4 query heads share 2 key/value heads."""
    tokenizer = ByT5Tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.3,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    return Backbone("tiny_gqa_llama", freeze(model), tokenizer)


BUILD = {"tiny_t5": build_tiny_t5, "tiny_llama": build_tiny_llama, "tiny_gqa_llama": build_tiny_gqa_llama}

# ---------------------------------------------------------------- the reference
# An attention function written out by hand: softmax(q [K_prefix; K]^T * scale + bias + mask) [V_prefix; V].
# It runs on unpadded single examples, with no cache and with its own masks; the prefix of each layer is
# read straight from the module's flat [length, 2 * layers * heads * head_dim] tensors.
REFERENCE = "promptlearn_prefix_reference"
_active: dict[int, tuple] = {}  # id(attention module) -> (prefix keys, prefix values, bias source, causal)


def _reference_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    keys_prefix, values_prefix, bias_from, causal = _active[id(module)]
    length = keys_prefix.shape[2]
    keys = torch.cat([keys_prefix.expand(len(key), -1, -1, -1), key], dim=2)
    values = torch.cat([values_prefix.expand(len(value), -1, -1, -1), value], dim=2)
    groups = (
        query.shape[1] // keys.shape[1]
    )  # grouped-query attention: each key/value head serves `groups` heads
    keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
    scores = query @ keys.transpose(2, 3) * (query.shape[-1] ** -0.5 if scaling is None else scaling)
    q, k = query.shape[2], key.shape[2]
    if bias_from is not None:  # T5: the prefix is the `length` positions before the sequence
        scores = scores + bias_from.compute_bias(q, length + k, past_seen_tokens=length)
    if causal:
        future = torch.ones(q, k, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(
            torch.cat([torch.zeros(q, length, dtype=torch.bool), future], 1), float("-inf")
        )
    weights = scores.softmax(-1)
    return (weights @ values).transpose(1, 2), weights


AttentionInterface.register(REFERENCE, _reference_attention)


def _layer_kv(flat: torch.Tensor, layer: int, layers: int, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer ``layer``'s keys and values, ``[1, heads, length, head_dim]``, from a flat prefix."""
    per_position = flat.view(flat.shape[0], layers, 2, heads, -1)[:, layer]
    return per_position[:, 0].transpose(0, 1)[None], per_position[:, 1].transpose(0, 1)[None]


@contextmanager
def reference_attention(model, flat: dict[str, torch.Tensor]):
    """Run ``model`` with every attention layer replaced by the hand-written prefix attention."""
    config = model.config
    if config.is_encoder_decoder:
        n_enc, n_dec, heads = config.num_layers, config.num_decoder_layers, config.num_heads
        enc_bias, dec_bias = (
            model.encoder.block[0].layer[0].SelfAttention,
            model.decoder.block[0].layer[0].SelfAttention,
        )
        for i, block in enumerate(model.encoder.block):
            _active[id(block.layer[0].SelfAttention)] = (
                *_layer_kv(flat["encoder"], i, n_enc, heads),
                enc_bias,
                False,
            )
        for i, block in enumerate(model.decoder.block):
            _active[id(block.layer[0].SelfAttention)] = (
                *_layer_kv(flat["decoder"], i, n_dec, heads),
                dec_bias,
                True,
            )
            _active[id(block.layer[1].EncDecAttention)] = (
                *_layer_kv(flat["cross"], i, n_dec, heads),
                None,
                False,
            )
    else:
        layers = model.model.layers
        for i, layer in enumerate(layers):
            _active[id(layer.self_attn)] = (
                *_layer_kv(flat["self"], i, len(layers), config.num_key_value_heads),
                None,
                True,
            )
    configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values()
    saved = [c._attn_implementation for c in configs]
    for c in configs:
        c._attn_implementation = REFERENCE
    try:
        yield
    finally:
        for c, implementation in zip(configs, saved, strict=True):
            c._attn_implementation = implementation
        _active.clear()


def reference_logits(backbone, flat, source: list[int], decoder_or_target: list[int]) -> torch.Tensor:
    """Full logits of one unpadded example: the decoder's for T5; for a causal LM those over source + target,
    with the real tokens at positions prefix_length, prefix_length + 1, ..."""
    model, embed = backbone.model, backbone.model.get_input_embeddings()
    length = next(iter(flat.values())).shape[0]
    with torch.no_grad(), reference_attention(model, flat):
        if backbone.is_encoder_decoder:
            return model(
                inputs_embeds=embed(torch.tensor([source])),
                decoder_input_ids=torch.tensor([decoder_or_target]),
            ).logits[0]
        ids = torch.tensor([source + decoder_or_target], dtype=torch.long)
        positions = length + torch.arange(ids.shape[1])[None]
        return model(inputs_embeds=embed(ids), position_ids=positions).logits[0]


def reference_log_likelihood(backbone, flat, examples) -> torch.Tensor:
    scores = []
    for e in examples:
        target = torch.tensor(e.target_ids)
        if backbone.is_encoder_decoder:
            logits = reference_logits(
                backbone,
                flat,
                e.source_ids,
                [backbone.model.config.decoder_start_token_id, *e.target_ids[:-1]],
            )
        else:
            start = len(e.source_ids) - 1
            logits = reference_logits(backbone, flat, e.source_ids, e.target_ids)[start : start + len(target)]
        scores.append(logits.log_softmax(-1)[torch.arange(len(target)), target].sum())
    return torch.stack(scores)


def log_likelihood(module, batch) -> torch.Tensor:
    with torch.no_grad():
        return module.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])[0]


# ---------------------------------------------------------------- forward pass
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama", "tiny_gqa_llama"])
def test_forward_equals_hand_inserted_keys_and_values(model, attention):
    torch.manual_seed(0)
    backbone, task = BUILD[model](attn_implementation=attention), ToySentiment()
    module = PrefixTuning(backbone, task.info(), adamw(), prefix_length=3, mlp_hidden_size=16).eval()
    examples, batch = encoded_batch(backbone, task)  # right-padded rows of different lengths
    flat = module.folded_prefixes()
    assert set(flat) == ({"encoder", "decoder", "cross"} if model == "tiny_t5" else {"self"})
    assert model != "tiny_gqa_llama" or flat["self"].shape == (
        3,
        2 * 2 * 2 * 8,
    )  # layers x (k, v) x 2 kv heads x 8 dims
    torch.testing.assert_close(
        log_likelihood(module, batch),
        reference_log_likelihood(backbone, flat, examples),
        rtol=1e-5,
        atol=1e-5,
    )
    # the prefix matters in every attention kind
    for kind in flat:
        other = dict(flat, **{kind: torch.zeros_like(flat[kind])})
        assert not torch.allclose(
            reference_log_likelihood(backbone, other, examples), log_likelihood(module, batch), atol=1e-3
        )


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_folded_prefixes_give_identical_outputs(model, tmp_path):
    torch.manual_seed(0)
    backbone, task = BUILD[model](), ToySentiment()
    module = PrefixTuning(backbone, task.info(), adamw(), prefix_length=4, mlp_hidden_size=16).eval()
    _, batch = encoded_batch(backbone, task)
    before = log_likelihood(module, batch)
    path = module.save_prompt(tmp_path / "prompt.pt")
    module.fold()
    assert {name for name, p in module.named_parameters() if p.requires_grad} == {
        f"prefixes.{k}" for k in module.stacks
    }
    assert torch.equal(log_likelihood(module, batch), before)

    payload = torch.load(path, weights_only=True)
    width = 2 * 2 * 32  # 2 (key, value) x 2 layers x 4 heads x 8 dims
    assert {k: tuple(v.shape) for k, v in payload["state_dict"].items()} == {
        f"prefixes.{k}": (4, width) for k in module.stacks
    }
    assert payload["hparams"]["reparameterize"] is False
    # a fresh reparameterised module folds itself on loading the folded prompt
    torch.manual_seed(1)
    fresh = PrefixTuning(backbone, task.info(), adamw(), prefix_length=4, mlp_hidden_size=16).eval()
    assert not torch.equal(log_likelihood(fresh, batch), before)
    fresh.load_prompt(path)
    assert not fresh.reparameterize
    assert torch.equal(log_likelihood(fresh, batch), before)


def test_unfolded_prompt_keeps_the_mlp_and_loads_for_further_training(tmp_path):
    torch.manual_seed(0)
    backbone, task = build_tiny_llama(), ToySentiment()
    module = PrefixTuning(
        backbone, task.info(), adamw(), prefix_length=4, mlp_hidden_size=16, fold_on_save=False
    ).eval()
    _, batch = encoded_batch(backbone, task)
    path = module.save_prompt(tmp_path / "prompt.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["hparams"]["reparameterize"] is True
    assert set(payload["state_dict"]) == {
        "prefix_mlps.self.embedding",
        *(f"prefix_mlps.self.mlp.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")),
    }
    torch.manual_seed(1)
    fresh = PrefixTuning(backbone, task.info(), adamw(), prefix_length=4, mlp_hidden_size=16).eval()
    fresh.load_prompt(path)
    assert fresh.reparameterize
    assert torch.equal(log_likelihood(fresh, batch), log_likelihood(module, batch))


# ---------------------------------------------------------------- generation
@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_generation_matches_stepwise_greedy_with_the_same_prefix(model):
    torch.manual_seed(3)  # a prefix under which both random models generate more than padding
    backbone, task = BUILD[model](), ToyCopy()
    module = PTuningV2(
        backbone, task.info(), adamw(), prefix_length=2, prefix_dropout=0.5, max_new_tokens=5
    ).eval()
    examples, batch = encoded_batch(backbone, task, train=False)  # causal rows are left-padded
    texts = module.generate_texts(batch["gen_input_ids"], batch["gen_attention_mask"])
    flat, eos = module.folded_prefixes(), backbone.tokenizer.eos_token_id
    start = getattr(backbone.model.config, "decoder_start_token_id", None)
    references = []
    for example in examples:
        generated: list[int] = []
        for _ in range(5):
            if backbone.is_encoder_decoder:
                logits = reference_logits(backbone, flat, example.source_ids, [start, *generated])
            else:
                logits = reference_logits(backbone, flat, example.source_ids, generated)
            token = int(logits[-1].argmax())
            if token == eos:
                break
            generated.append(token)
        references.append(backbone.tokenizer.decode(generated, skip_special_tokens=True))
    assert texts == references
    assert any(references)  # something was generated, so the comparison has teeth


# ---------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama", "tiny_gqa_llama"])
def test_trainable_parameter_counts_match_the_formulas(model):
    backbone, task = BUILD[model](), ToySentiment()
    config = backbone.model.config
    d, p, h = backbone.hidden_size, 5, 24
    if model == "tiny_t5":
        widths = [
            2 * config.num_layers * config.num_heads * config.d_kv,
            *[2 * config.num_decoder_layers * config.num_heads * config.d_kv] * 2,
        ]
    else:  # 2 * L * d without grouped-query attention
        widths = [
            2 * config.num_hidden_layers * config.num_key_value_heads * (d // config.num_attention_heads)
        ]
    counts = {}
    for reparameterize in (True, False):
        module = PrefixTuning(
            backbone, task.info(), adamw(), prefix_length=p, mlp_hidden_size=h, reparameterize=reparameterize
        )
        counts[reparameterize] = sum(x.numel() for x in module.trainable_parameters())
    assert counts[True] == sum(p * d + d * h + h + h * w + w for w in widths)
    assert counts[False] == sum(p * w for w in widths)
    module.fold()  # nothing to fold: still the direct prefixes
    assert sum(x.numel() for x in module.trainable_parameters()) == counts[False]


# ---------------------------------------------------------------- training
@pytest.mark.parametrize(("method", "lr"), [(PrefixTuning, 0.01), (PTuningV2, 0.1)])
@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_loss_drops_on_a_learnable_toy_task(model, method, lr):
    torch.manual_seed(0)
    backbone, task = BUILD[model](), ToySentiment()
    module = method(backbone, task.info(), adamw(lr), prefix_length=4, mlp_hidden_size=64, prefix_dropout=0.0)
    datamodule = TaskDataModule(task, backbone, batch_size=16)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    initial = float(-log_likelihood(module.eval(), batch).sum())
    fit(module, datamodule, steps=20)
    assert float(-log_likelihood(module.eval(), batch).sum()) < 0.5 * initial
    assert all(torch.equal(before[k], v) for k, v in backbone.model.state_dict().items())


# ---------------------------------------------------------------- bad input
def test_prefix_that_fills_the_positions_is_refused():
    backbone, task = build_tiny_llama(max_position_embeddings=64), ToySentiment()
    with pytest.raises(
        ConfigError, match=r"prefix of 64 positions leaves no room .* tiny_llama's 64 positions"
    ):
        PrefixTuning(backbone, task.info(), prefix_length=64)
    module = PrefixTuning(backbone, task.info(), prefix_length=60)
    module.check_fits(4)
    with pytest.raises(ConfigError, match=r"60 prompt tokens \+ the longest example \(5 tokens\) exceed"):
        module.check_fits(5)


@pytest.mark.parametrize("attention", ["flash_attention_2", "flex_attention"])
@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_attention_that_cannot_take_prefixes_is_refused(model, attention):
    backbone = BUILD[model]()
    backbone.model.config._attn_implementation = attention  # as loaded on a GPU with that kernel
    with pytest.raises(
        ConfigError, match=rf"'{attention}' cannot take key/value prefixes; .*attn_implementation=sdpa"
    ):
        PTuningV2(backbone, ToySentiment().info())


# ---------------------------------------------------------------- the CLI path
TINY = [
    "trainer=debug",
    "data.max_val_examples=4",
    "data.max_test_examples=4",
    "data.max_train_examples=16",
    "baseline=false",
]


@pytest.mark.parametrize("method", ["prefix_tuning", "p_tuning_v2"])
@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama"])
def test_train_then_evaluate_the_saved_prefix(compose_train, tmp_path, model, method):
    results = train(compose_train(f"model={model}", f"method={method}", "method.prefix_length=3", *TINY))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["method"] == method and on_disk["train_steps"] == 2
    stored = torch.load(results["prompt_checkpoint"], weights_only=True)["state_dict"]
    assert all(key.startswith("prefixes.") for key in stored)  # folded: the MLP is not saved
    evaluated = evaluate(
        compose_train(
            f"model={model}",
            f"method={method}",
            f"prompt={results['prompt_checkpoint']}",
            "trainer=debug",
            "data.max_test_examples=4",
            "splits=[test]",
            config_name="eval",
        )
    )
    assert evaluated["metrics"]["test/score"] == pytest.approx(results["metrics"]["test/score"])
    assert evaluated["metrics"]["test/loss"] == pytest.approx(results["metrics"]["test/loss"], rel=1e-5)


# ---------------------------------------------------------------- a pretrained backbone
@pytest.mark.slow
def test_smollm2_forward_equals_hand_inserted_keys_and_values():
    """SmolLM2: grouped-query attention (9 heads, 3 key/value heads), 30 layers, sdpa, pretrained weights."""
    from promptlearn.backbones import load_smollm2

    torch.manual_seed(0)
    backbone, task = load_smollm2(), ToySentiment()
    module = PTuningV2(backbone, task.info(), adamw(), prefix_length=2).eval()
    assert module.stacks["self"].width == 2 * 30 * 3 * 64
    task.size = 3
    examples, batch = encoded_batch(backbone, task)
    torch.testing.assert_close(
        log_likelihood(module, batch),
        reference_log_likelihood(backbone, module.folded_prefixes(), examples),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("reparameterize", [False, True])
def test_a_prefix_from_words_is_those_words_before_the_input(reparameterize):
    """Li & Liang's init from real words: a causal LM scores the input after the prefix exactly as after the words."""
    backbone = build_tiny_llama()
    words = " good bad"
    ids = backbone.tokenizer(words, add_special_tokens=False)["input_ids"]
    module = PrefixTuning(backbone, ToySentiment().info(), adamw(), prefix_length=len(ids), init="text",
                          init_text=words, reparameterize=reparameterize, prefix_dropout=0.0).eval()
    text = backbone.tokenizer(" so good =>", add_special_tokens=False)["input_ids"]
    batch = torch.tensor([text])
    with torch.no_grad():
        ours = module.model(**module.model_inputs(batch, torch.ones_like(batch))).logits
        alone = backbone.model(input_ids=torch.tensor([ids + text])).logits[:, len(ids):]
    tolerance = 1e-5 if not reparameterize else 1e-3  # the MLP is fitted to the words' keys and values
    torch.testing.assert_close(ours, alone, rtol=tolerance, atol=tolerance)


def test_a_t5_prefix_from_words_starts_at_their_keys_and_values():
    backbone = build_tiny_t5()
    task = ToySentiment()
    module = PTuningV2(backbone, task.info(), adamw(), prefix_length=3, init="class_label").eval()
    ids = backbone.tokenizer("".join(task.label_words), add_special_tokens=False)["input_ids"][:3]
    encoder = backbone.model.get_encoder()
    with torch.no_grad():  # independently: each encoder layer's key projection of its (normed) input states
        states = encoder(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        layered = module.stacks["encoder"].unflatten(module.prefixes["encoder"])
        for i, block in enumerate(encoder.block):
            normed = block.layer[0].layer_norm(states[i])
            keys = block.layer[0].SelfAttention.k(normed)[0].view(3, -1, backbone.model.config.d_kv).transpose(0, 1)
            torch.testing.assert_close(layered[i, 0], keys, rtol=1e-5, atol=1e-5)


def test_an_unknown_prefix_init_is_one_line():
    with pytest.raises(ConfigError, match="unknown prefix init"):
        PrefixTuning(build_tiny_llama(), ToySentiment().info(), adamw(), prefix_length=2, init="words")
