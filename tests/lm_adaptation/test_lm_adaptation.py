"""LM adaptation on tiny T5 with local text: prefix-LM batches, a held-out loss that drops, and an
HF checkpoint that loads back as a frozen backbone for prompt tuning."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from promptlearn.cli.components import build
from promptlearn.backbones import build_tiny_t5
from promptlearn.utils.errors import DataError
from promptlearn.lm_adaptation.corpus import LocalTextCorpus, token_spans
from promptlearn.lm_adaptation.datamodule import PrefixLMDataModule
from promptlearn.lm_adaptation.prefix_lm import PrefixLMCollator, PrefixLMStream
from promptlearn.cli.lm_adapt import lm_adapt
from promptlearn.cli.train import train

from hydra_presets import hydra_compose, sweep_axes

CORPUS = Path(__file__).parents[1] / "fixtures" / "lm_adapt_corpus.txt"
SPAN = 48


def test_prefix_plus_continuation_is_the_original_span():
    tokenizer = build_tiny_t5().tokenizer
    corpus = LocalTextCorpus([str(CORPUS)])
    spans = list(itertools.islice(token_spans(corpus.train_texts(), tokenizer, SPAN, tokenizer.eos_token_id), 32))
    stream = PrefixLMStream(lambda: iter(spans), seed=0)
    examples = list(itertools.islice(stream, len(spans)))
    batch = PrefixLMCollator(tokenizer.pad_token_id, tokenizer.eos_token_id)(examples)
    eos = tokenizer.eos_token_id
    for span, ids, mask, labels in zip(spans, batch["input_ids"], batch["attention_mask"], batch["labels"]):
        source = ids[mask.bool()].tolist()
        target = labels[labels != -100].tolist()
        assert source[-1] == eos and target[-1] == eos
        assert source[:-1] + target[:-1] == span  # token level, before EOS
        assert tokenizer.decode(source[:-1]) + tokenizer.decode(target[:-1]) == tokenizer.decode(span)
        assert source[:-1] and target[:-1]
    assert len(spans) == 32 and all(len(span) == SPAN for span in spans)
    assert len({len(e.prefix) for e in examples}) > 5  # the split point is random


def test_local_corpus_holds_out_its_last_paragraphs_and_refuses_missing_files(tmp_path):
    corpus = LocalTextCorpus([str(CORPUS)], holdout=0.25)
    assert len(corpus.documents["train"]) == 36 and len(corpus.documents["val"]) == 12
    assert not set(corpus.documents["train"]) & set(corpus.documents["val"])
    with pytest.raises(DataError, match=r"^no text files match corpus.paths="):
        LocalTextCorpus([str(tmp_path / "*.txt")])


def test_c4_without_hub_access_fails_in_one_line():
    code = ("import itertools; from promptlearn.lm_adaptation.corpus import C4Corpus; "
            "list(itertools.islice(C4Corpus().train_texts(), 1))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "promptlearn.utils.errors.DataError: could not stream 'allenai/c4' (en, train)" in run.stderr
    assert "corpus=local_text" in run.stderr


def held_out_loss(backbone) -> float:
    """Token-weighted prefix-LM loss of a backbone on the fixture's held-out spans, computed afresh."""
    datamodule = PrefixLMDataModule(LocalTextCorpus([str(CORPUS)]), backbone.tokenizer, SPAN, 8, val_spans=16)
    datamodule.setup()
    total, count = 0.0, 0
    model = backbone.model.eval()
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            n = int((batch["labels"] != -100).sum())
            total += float(model(**batch).loss) * n
            count += n
    return total / count


def test_lm_adaptation_lowers_held_out_loss_and_its_checkpoint_prompt_tunes(compose_train, tmp_path):
    cfg = compose_train(
        "model=tiny_t5", "corpus=local_text", f"corpus.paths=[{CORPUS}]", "trainer.max_steps=40",
        "trainer.val_check_interval=20", "trainer.log_every_n_steps=5", "lm_adapt.save_every_n_steps=20",
        "lm_adapt.throughput_window=5", f"lm_adapt.data.span_length={SPAN}", "lm_adapt.data.batch_size=16",
        "lm_adapt.data.val_spans=16", "optimizer.lr=3e-3", config_name="lm_adapt",
    )
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "adapt")
    before = held_out_loss(build(cfg.model))
    results = lm_adapt(cfg)

    assert results["train_steps"] == 40
    assert results["initial_val_loss"] == pytest.approx(before, rel=1e-4)
    assert results["final_val_loss"] < 0.5 * results["initial_val_loss"]
    assert results["tokens_per_sec"] > 0 and results["train_tokens"] > 40 * 16 * SPAN // 2
    final = Path(results["checkpoint"])
    assert final == tmp_path / "adapt" / "hf" / "step-40"
    assert [Path(p).name for p in results["checkpoints"]] == ["step-20", "step-40"]
    assert not [p for p in final.parent.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    metrics = (tmp_path / "adapt" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/device/items_per_sec" in metrics  # tokens/s per device

    # The HF folder loads by path as a frozen backbone whose held-out loss is the adapted one.
    loaded = build(compose_train("model=local_t5", f"model.name_or_path={final}").model)
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert held_out_loss(loaded) == pytest.approx(results["final_val_loss"], rel=1e-4)

    tuned = train(compose_train(
        "model=local_t5", f"model.name_or_path={final}", "model.name=tiny_t5_lm40", "method.prompt_length=4",
        "trainer=debug", "data.max_val_examples=8", "data.max_test_examples=8", "data.max_train_examples=64",
    ))
    assert tuned["model"] == "tiny_t5_lm40" and tuned["train_steps"] == 2
    assert tuned["trainable_params"] == 4 * 32 and 0 <= tuned["metrics"]["test/score"] <= 1


@pytest.mark.parametrize(("experiment", "axis", "expected"), [
    ("ablation_pretraining_objective", "experiment/pretraining_objective", {
        "span_corruption": ("t5_v1_1_base", "google/t5-v1_1-base", False),
        "span_corruption_sentinel": ("t5_v1_1_base", "google/t5-v1_1-base", True),
        "lm_adapt": ("t5_base_lm_adapt", "google/t5-base-lm-adapt", False),
    }),
    ("ablation_lm_adaptation_steps", "experiment/lm_adaptation_steps", {
        "steps_0": ("t5_v1_1_base", "google/t5-v1_1-base", False),
        "steps_10k": ("t5_v1_1_base_lm10k", "lm_adapted/t5_v1_1_base/hf/step-10000", False),
        "steps_50k": ("t5_v1_1_base_lm50k", "lm_adapted/t5_v1_1_base/hf/step-50000", False),
        "steps_100k": ("t5_base_lm_adapt", "google/t5-base-lm-adapt", False),
    }),
])
def test_pretraining_presets_pick_each_checkpoint_with_lesters_prompt_tuning(experiment, axis, expected):
    axes = sweep_axes(experiment)
    assert axes["t5_size"] == ["small", "base", "large", "xl", "xxl"] and sorted(axes[axis]) == sorted(expected)
    for value, (name, path, sentinel) in expected.items():
        cfg = hydra_compose(f"experiment={experiment}", f"{axis}={value}", "t5_size=base")
        assert (cfg.model.name, cfg.model.name_or_path, cfg.data.sentinel_target) == (name, path, sentinel)
        assert cfg.method.prompt_length == 100 and cfg.method.init == "class_label" and cfg.optimizer.lr == 0.3
        assert cfg.hydra.sweep.dir.startswith(f"multirun/{experiment}/")
    xxl = hydra_compose(f"experiment={experiment}", f"{axis}={next(iter(expected))}", "t5_size=xxl")
    assert xxl.model.name_or_path == "google/t5-v1_1-xxl"


def test_t5_v1_1_model_configs_name_the_span_corruption_checkpoints():
    for size in ("small", "base", "large", "xl", "xxl"):
        cfg = hydra_compose(f"model=t5_v1_1_{size}")
        assert cfg.model.name_or_path == f"google/t5-v1_1-{size}" and cfg.model.architecture == "seq2seq"
        assert cfg.optimizer._target_ == "transformers.optimization.Adafactor"
