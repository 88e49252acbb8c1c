"""A node that cannot reach the model hub: hub ids load from the local cache at once, or fail in one line,
instead of spending huggingface_hub's retries (about 23 s per file) first."""

from __future__ import annotations

import logging

import pytest
from huggingface_hub import constants

from promptlearn.backbones import build_tiny_llama
from promptlearn.backbones.pretrained import load_pretrained
from promptlearn.data.tasks.hub import load_rows
from promptlearn.utils import hub
from promptlearn.utils.errors import ConfigError, DataError

REPO = "someone/tiny-llama"


@pytest.fixture
def unresolvable_hub(monkeypatch, tmp_path):
    """The hub's host is one that never resolves (.invalid, RFC 2606), with an empty cache of our own."""
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hub.hub_unreachable_reason.cache_clear()
    yield tmp_path / "hub"
    hub.hub_unreachable_reason.cache_clear()


def cache_as_the_hub_would(backbone, cache) -> None:
    """Write a model into ``cache`` in the hub cache's layout: refs/main naming a snapshot folder."""
    repo = cache / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    backbone.model.save_pretrained(snapshot)
    backbone.tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)


def test_an_unresolvable_host_is_the_reason_given(unresolvable_hub):
    assert "hub.invalid does not resolve" in hub.hub_unreachable_reason()


def test_a_model_not_in_the_cache_fails_in_one_line_naming_why(unresolvable_hub):
    with pytest.raises(ConfigError) as caught:
        load_pretrained("x", REPO, "causal")
    message = str(caught.value)
    assert "hub.invalid does not resolve" in message and "not in the local cache" in message
    assert "\n" not in message


def test_a_cached_model_loads_from_the_cache_and_says_so(unresolvable_hub, caplog):
    tiny = build_tiny_llama()
    cache_as_the_hub_would(tiny, unresolvable_hub)
    with caplog.at_level(logging.WARNING, logger="promptlearn"):
        loaded = load_pretrained("x", REPO, "causal")
    assert "loading from the local cache only" in caplog.text
    for name, weight in tiny.model.state_dict().items():
        assert loaded.model.state_dict()[name].equal(weight), name
    assert constants.HF_HUB_OFFLINE is False  # offline only while loading


def test_a_hub_dataset_fails_in_one_line_naming_why(unresolvable_hub):
    with pytest.raises(DataError) as caught:
        load_rows("someone/some-dataset", None, None, None)
    assert "hub.invalid does not resolve" in str(caught.value)
    assert "without hub access" in str(caught.value)


def test_a_streamed_corpus_fails_in_one_line_naming_why(unresolvable_hub):
    from promptlearn.lm_adaptation.corpus import C4Corpus

    with pytest.raises(DataError) as caught:
        next(C4Corpus(path="someone/some-corpus").train_texts())
    assert "hub.invalid does not resolve" in str(caught.value) and "corpus=local_text" in str(caught.value)
