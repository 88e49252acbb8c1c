"""The prompt-tuned forward pass equals an independent reference built from the unmodified model."""

from __future__ import annotations

import torch

from promptlearn.data.encoding import Collator, TextToTextEncoder
from promptlearn.methods.prompt_tuning import PromptTuning

from conftest import adamw


def encoded_batch(backbone, task, train: bool = True):
    encoder = TextToTextEncoder(backbone.tokenizer, backbone.is_encoder_decoder)
    examples = [encoder.encode(task, e) for e in task.load_splits()["train"][:4]]
    return examples, Collator(backbone.is_encoder_decoder, backbone.tokenizer.pad_token_id, task.eval_mode, train=train)(examples)


def reference_log_likelihood(backbone, prompt, examples) -> torch.Tensor:
    """Concatenate prompt and input embeddings by hand, one unpadded example at a time, full logits."""
    model, embed = backbone.model, backbone.model.get_input_embeddings()
    scores = []
    for example in examples:
        source = torch.tensor([example.source_ids])
        target = torch.tensor([example.target_ids])
        if backbone.is_encoder_decoder:
            inputs = torch.cat([prompt[None], embed(source)], dim=1)
            decoder_input = torch.cat([torch.tensor([[model.config.decoder_start_token_id]]), target[:, :-1]], dim=1)
            logits = model(inputs_embeds=inputs, decoder_input_ids=decoder_input).logits[0]
        else:
            inputs = torch.cat([prompt[None], embed(source), embed(target)], dim=1)
            start = prompt.shape[0] + source.shape[1] - 1
            logits = model(inputs_embeds=inputs).logits[0, start : start + target.shape[1]]
        scores.append(logits.log_softmax(-1)[torch.arange(target.shape[1]), target[0]].sum())
    return torch.stack(scores)


def test_log_likelihood_matches_manual_concatenation(tiny_backbone, toy_sentiment):
    torch.manual_seed(0)
    module = PromptTuning(tiny_backbone, toy_sentiment.info(), adamw(), prompt_length=7, init="random_uniform").eval()
    examples, batch = encoded_batch(tiny_backbone, toy_sentiment)
    with torch.no_grad():
        total, count = module.target_log_likelihood(batch["input_ids"], batch["attention_mask"], batch["labels"])
        reference = reference_log_likelihood(tiny_backbone, module.prompt.detach(), examples)
    assert torch.equal(count, torch.tensor([len(e.target_ids) for e in examples]))
    torch.testing.assert_close(total, reference, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(total, reference_log_likelihood(tiny_backbone, torch.zeros_like(module.prompt), examples))


def test_prompt_changes_encoder_only_for_t5():
    from promptlearn.backbones import build_tiny_t5
    from conftest import ToySentiment

    backbone, task = build_tiny_t5(), ToySentiment()
    module = PromptTuning(backbone, task.info(), adamw(), prompt_length=3, init="random_uniform")
    _, batch = encoded_batch(backbone, task)
    embeds, mask = module.embed_inputs(batch["input_ids"], batch["attention_mask"])
    assert embeds.shape[1] == batch["input_ids"].shape[1] + 3
    assert mask[:, :3].eq(1).all() and torch.equal(mask[:, 3:], batch["attention_mask"])
    # decoder inputs are untouched: only the encoder sees the prompt
    assert torch.equal(module.model.prepare_decoder_input_ids_from_labels(labels=batch["labels"])[:, 1:].clamp(min=0),
                       batch["labels"][:, :-1].clamp(min=0))


def test_one_token_choice_fast_path_equals_expanded_rows(toy_sentiment):
    """For a causal LM with one-token labels, the single-forward scorer equals scoring each choice row."""
    from promptlearn.backbones import build_tiny_llama
    from promptlearn.data.encoding import model_batch

    backbone = build_tiny_llama()
    toy_sentiment.label_words = ("0", "1")  # one byte each
    module = PromptTuning(backbone, toy_sentiment.info(), adamw(), prompt_length=4, init="random_uniform").eval()
    examples, batch = encoded_batch(backbone, toy_sentiment, train=False)
    assert "choice_token_ids" in batch
    rows = [(e.source_ids, c) for e in examples for c in e.choice_ids]
    expanded = model_batch([s for s, _ in rows], [c for _, c in rows], False, backbone.tokenizer.pad_token_id)
    with torch.no_grad():
        fast, _, loss = module.choice_scores(batch)
        slow, _ = module.target_log_likelihood(expanded["input_ids"], expanded["attention_mask"], expanded["labels"])
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    gold = torch.arange(len(examples)) * 2 + batch["label"]
    torch.testing.assert_close(loss, -slow[gold].mean())


def test_generation_with_prompt_matches_manual_greedy(tiny_backbone, toy_copy):
    torch.manual_seed(0)
    module = PromptTuning(tiny_backbone, toy_copy.info(), adamw(), prompt_length=3, init="random_uniform", max_new_tokens=5)
    module.eval()
    examples, batch = encoded_batch(tiny_backbone, toy_copy, train=False)
    texts = module.generate_texts(batch["gen_input_ids"], batch["gen_attention_mask"])
    model, embed = tiny_backbone.model, tiny_backbone.model.get_input_embeddings()
    eos = tiny_backbone.tokenizer.eos_token_id
    with torch.no_grad():
        for example, text in zip(examples, texts):
            source = embed(torch.tensor([example.source_ids]))
            inputs = torch.cat([module.prompt[None], source], dim=1)
            generated: list[int] = []
            for _ in range(5):
                if tiny_backbone.is_encoder_decoder:
                    decoder = torch.tensor([[model.config.decoder_start_token_id, *generated]])
                    logits = model(inputs_embeds=inputs, decoder_input_ids=decoder).logits
                else:
                    logits = model(inputs_embeds=torch.cat([inputs, embed(torch.tensor([generated], dtype=torch.long))], 1)).logits
                token = int(logits[0, -1].argmax())
                if token == eos:
                    break
                generated.append(token)
            assert text == tiny_backbone.tokenizer.decode(generated, skip_special_tokens=True)
