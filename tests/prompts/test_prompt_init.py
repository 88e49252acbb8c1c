"""Each initialiser gives what its definition says."""

from __future__ import annotations

import pytest
import torch
from transformers import ByT5Tokenizer

from promptlearn.utils.errors import ConfigError
from promptlearn.prompts.init import common_token_ids, initial_prompt

TOKENIZER = ByT5Tokenizer()  # ids 0-2 special, 3-258 bytes, 259-383 sentinels (special)
EMBEDDINGS = torch.randn(len(TOKENIZER), 16)


def make(init: str, length: int, **kwargs) -> torch.Tensor:
    torch.manual_seed(0)
    return initial_prompt(init, length=length, embeddings=EMBEDDINGS, tokenizer=TOKENIZER, **kwargs)


def rows_of(prompt: torch.Tensor) -> list[int]:
    """The vocabulary row each prompt row is an exact copy of."""
    matches = (prompt[:, None, :] == EMBEDDINGS[None]).all(-1)
    assert matches.any(-1).all(), "every row must be an exact vocabulary embedding"
    return matches.float().argmax(-1).tolist()


def test_common_token_ids_skip_special_tokens_and_keep_vocab_order():
    ids = common_token_ids(TOKENIZER, 5000, EMBEDDINGS.shape[0])
    assert ids.tolist() == list(range(3, 259))
    assert common_token_ids(TOKENIZER, 10, EMBEDDINGS.shape[0]).tolist() == list(range(3, 13))


@pytest.mark.parametrize("scale", [0.5, 0.01])
def test_random_uniform_stays_in_range_and_fills_it(scale):
    prompt = make("random_uniform", 200, init_range=scale)
    assert prompt.shape == (200, 16)
    assert prompt.abs().max() <= scale
    assert prompt.min() < -0.9 * scale and prompt.max() > 0.9 * scale
    assert abs(prompt.std().item() - scale / 3**0.5) < 0.05 * scale  # std of U[-a, a] is a / sqrt(3)


def test_sampled_vocab_draws_distinct_rows_from_the_most_common_tokens():
    rows = rows_of(make("sampled_vocab", 20, vocab_size=50))
    assert len(set(rows)) == 20
    assert all(3 <= r < 53 for r in rows)


def test_class_label_rows_are_mean_label_embeddings_then_sampled_vocab():
    labels = (" no", "yes!")
    prompt = make("class_label", 5, label_words=labels, vocab_size=40)
    for row, label in zip(prompt, labels):
        ids = TOKENIZER(label, add_special_tokens=False)["input_ids"]
        assert len(ids) > 1  # multi-token labels are averaged
        torch.testing.assert_close(row, EMBEDDINGS[ids].mean(0))
    assert all(3 <= r < 43 for r in rows_of(prompt[2:]))


def test_class_label_shorter_than_label_set_keeps_first_labels():
    prompt = make("class_label", 1, label_words=("a", "b"))
    torch.testing.assert_close(prompt[0], EMBEDDINGS[TOKENIZER("a", add_special_tokens=False)["input_ids"]].mean(0))


def test_text_init_tiles_and_cuts():
    ids = TOKENIZER("abc", add_special_tokens=False)["input_ids"]
    assert rows_of(make("text", 7, text="abc")) == (ids * 3)[:7]
    assert rows_of(make("text", 2, text="abc")) == ids[:2]


@pytest.mark.parametrize("init", ["random_uniform", "sampled_vocab", "class_label", "text"])
def test_length_one_works_for_every_init(init):
    assert make(init, 1, label_words=("a", "b"), text="hello").shape == (1, 16)


def test_bad_inputs_give_one_line_errors():
    cases = [
        (dict(init="random_uniform", length=0), "at least 1"),
        (dict(init="class_label", length=3), "needs a task with label words"),
        (dict(init="text", length=3), "init_text"),
        (dict(init="sampled_vocb", length=3), "Did you mean 'sampled_vocab'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            make(kwargs.pop("init"), kwargs.pop("length"))
        assert "\n" not in str(info.value)
