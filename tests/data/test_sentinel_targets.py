"""Sentinel targets ("span corruption + sentinel", Lester et al. 2021 Fig. 3c): targets open with <extra_id_0>."""

from __future__ import annotations

import pytest
import torch

from promptlearn.backbones import build_tiny_llama, build_tiny_t5
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.data.encoding import TextToTextEncoder
from promptlearn.utils.errors import ConfigError
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.metrics import match_choice


@pytest.fixture(scope="module")
def t5():
    return build_tiny_t5(seed=3)


def test_targets_and_choices_open_with_the_first_sentinel(t5, toy_sentiment):
    sentinel = t5.tokenizer.convert_tokens_to_ids("<extra_id_0>")
    plain = TextToTextEncoder(t5.tokenizer, is_encoder_decoder=True)
    with_sentinel = TextToTextEncoder(t5.tokenizer, is_encoder_decoder=True, sentinel_target=True)
    example = toy_sentiment.load_splits()["train"][0]
    a, b = plain.encode(toy_sentiment, example), with_sentinel.encode(toy_sentiment, example)
    assert b.source_ids == a.source_ids
    assert b.target_ids == [sentinel, *a.target_ids]
    assert b.target_ids == t5.tokenizer(f"<extra_id_0>{example.target}")["input_ids"]  # the pretraining format
    assert all(c2 == [sentinel, *c1] for c1, c2 in zip(a.choice_ids, b.choice_ids))
    assert b.target_text == example.target  # metrics compare label words, never the sentinel


def test_training_batches_teach_the_sentinel_first(t5, toy_sentiment):
    datamodule = TaskDataModule(toy_sentiment, t5, batch_size=4, sentinel_target=True)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert (batch["labels"][:, 0] == t5.tokenizer.convert_tokens_to_ids("<extra_id_0>")).all()


def test_rank_scores_equal_log_p_of_sentinel_plus_label(t5, toy_sentiment):
    datamodule = TaskDataModule(toy_sentiment, t5, eval_batch_size=6, sentinel_target=True)
    datamodule.setup()
    batch = next(iter(datamodule.test_dataloader()))
    module = FrozenBackboneModule(t5, toy_sentiment.info()).eval()
    with torch.no_grad():
        scores, counts, _ = module.choice_scores(batch)

    # Independent reference: teacher-force "<extra_id_0>{label}</s>" through the unmodified HF model.
    model, tokenizer = t5.model.eval(), t5.tokenizer
    expected = []
    for example in datamodule.encoded["test"][:6]:
        source = torch.tensor([example.source_ids])
        for word in toy_sentiment.label_words:
            target = tokenizer(f"<extra_id_0>{word}", return_tensors="pt")["input_ids"]
            with torch.no_grad():
                logp = model(input_ids=source, labels=target).logits.log_softmax(-1)
            expected.append(logp[0, torch.arange(target.shape[1]), target[0]].sum())
    expected = torch.stack(expected)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)
    assert counts.tolist() == [len(tokenizer(f"<extra_id_0>{w}")["input_ids"]) for w in toy_sentiment.label_words] * 6
    # The shared sentinel leaves the ranking to the label words: argmax of log p(label | sentinel) agrees.
    assert torch.equal(scores.view(6, 2).argmax(-1), expected.view(6, 2).argmax(-1))


def test_generated_sentinels_are_stripped_before_matching_labels(t5):
    # Generation decodes with skip_special_tokens=True; T5 sentinels are special tokens, so a generated
    # "<extra_id_0> yes<extra_id_1></s>" reads as the label " yes".
    tokenizer = t5.tokenizer
    generated = tokenizer("<extra_id_0> yes<extra_id_1>")["input_ids"]
    assert generated[0] == tokenizer.convert_tokens_to_ids("<extra_id_0>")
    text = tokenizer.batch_decode([generated], skip_special_tokens=True)[0]
    assert match_choice(text, [" no", " yes"]) == 1


def test_a_backbone_without_sentinels_is_refused(toy_sentiment):
    with pytest.raises(ConfigError, match=r"^data.sentinel_target=true needs a T5-style seq2seq backbone"):
        TaskDataModule(toy_sentiment, build_tiny_llama(), sentinel_target=True)
