"""Prompt ensembling: one batched pass, majority vote, checked against prompts evaluated one by one."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from promptlearn.backbones import build_tiny_llama, build_tiny_t5
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.utils.errors import CheckpointError, ConfigError
from promptlearn.methods.scoring import best_choice
from promptlearn.inference.prompt_ensemble import PromptEnsemble
from promptlearn.methods.prompt_tuning import PromptTuning

from conftest import adamw


def saved_prompts(backbone, task, tmp_path, seeds, length=4):
    paths, modules = [], []
    for seed in seeds:
        torch.manual_seed(seed)
        module = PromptTuning(backbone, task.info(), adamw(), prompt_length=length, init="random_uniform", init_range=2.0)
        paths.append(module.save_prompt(tmp_path / f"prompt{seed}.pt"))
        modules.append(module.eval())
    return paths, modules


def eval_batches(backbone, task):
    datamodule = TaskDataModule(task, backbone, eval_batch_size=8)
    datamodule.setup()
    return list(datamodule.test_dataloader())


def run_test(module, backbone, task) -> dict[str, float]:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    return trainer.test(module, datamodule=TaskDataModule(task, backbone, eval_batch_size=8), verbose=False)[0]


def test_a_prompt_ensembled_with_itself_equals_the_prompt(tiny_backbone, toy_sentiment, tmp_path):
    (path,), (single,) = saved_prompts(tiny_backbone, toy_sentiment, tmp_path, seeds=[0])
    ensemble = PromptEnsemble(tiny_backbone, toy_sentiment.info(), prompts=[path] * 3).eval()
    with torch.no_grad():
        for batch in eval_batches(tiny_backbone, toy_sentiment):
            alone_scores, _, alone_loss = single.choice_scores(batch)
            alone = best_choice(alone_scores, batch["choice_counts"])
            voted, members = ensemble.member_predictions(batch)
            assert torch.equal(voted.index, alone)
            assert all(torch.equal(member.index, alone) for member in members)
            torch.testing.assert_close(voted.loss, alone_loss, rtol=1e-5, atol=1e-5)
    ensembled, single_metrics = run_test(ensemble, tiny_backbone, toy_sentiment), run_test(single, tiny_backbone, toy_sentiment)
    assert ensembled["test/score"] == single_metrics["test/score"]
    assert ensembled["test/member_mean/score"] == ensembled["test/member_best/score"] == single_metrics["test/score"]


def test_self_ensemble_equals_the_prompt_for_generation(toy_copy, tmp_path):
    backbone = build_tiny_llama()
    (path,), (single,) = saved_prompts(backbone, toy_copy, tmp_path, seeds=[0])
    single.scorer.max_new_tokens = 4
    ensemble = PromptEnsemble(backbone, toy_copy.info(), prompts=[path, path], max_new_tokens=4).eval()
    for batch in eval_batches(backbone, toy_copy):
        alone = single.generate_texts(batch["gen_input_ids"], batch["gen_attention_mask"])
        voted, members = ensemble.member_predictions(batch)
        assert voted.texts == alone and [member.texts for member in members] == [alone, alone]


@pytest.mark.parametrize("members", [2, 3])
def test_vote_equals_a_vote_over_prompts_run_one_by_one(toy_sentiment, tmp_path, members):
    backbone = build_tiny_t5()
    paths, singles = saved_prompts(backbone, toy_sentiment, tmp_path, seeds=range(members))
    ensemble = PromptEnsemble(backbone, toy_sentiment.info(), prompts=paths).eval()
    disagreements = 0
    with torch.no_grad():
        for batch in eval_batches(backbone, toy_sentiment):
            voted = ensemble.member_predictions(batch)[0].index
            per_prompt = []
            for single in singles:
                scores, _, _ = single.choice_scores(batch)
                per_prompt.append(scores.view(len(batch["label"]), 2))  # two choices per example
            for example in range(len(batch["label"])):
                picks = [int(s[example].argmax()) for s in per_prompt]
                votes = [picks.count(c) for c in (0, 1)]
                if votes[0] != votes[1]:
                    expected = votes.index(max(votes))
                else:  # a tie: the higher probability averaged over the prompts
                    mean = sum(s[example].softmax(-1) for s in per_prompt) / members
                    expected = int(mean.argmax())
                disagreements += len(set(picks)) > 1
                assert int(voted[example]) == expected
    assert disagreements > 0  # the prompts really disagreed somewhere, so the vote decided something


def test_bad_ensembles_are_refused(toy_sentiment, tmp_path):
    backbone = build_tiny_t5()
    (short,), _ = saved_prompts(backbone, toy_sentiment, tmp_path / "a", seeds=[0], length=2)
    (long,), _ = saved_prompts(backbone, toy_sentiment, tmp_path / "b", seeds=[0], length=5)
    with pytest.raises(ConfigError, match="must share one shape"):
        PromptEnsemble(backbone, toy_sentiment.info(), prompts=[short, long])
    with pytest.raises(ConfigError, match="no prompt file matches"):
        PromptEnsemble(backbone, toy_sentiment.info(), prompts=[str(tmp_path / "missing*" / "prompt.pt")])
    with pytest.raises(CheckpointError, match="load it with model=tiny_t5"):
        PromptEnsemble(build_tiny_llama(), toy_sentiment.info(), prompts=[short])


def test_ensemble_runs_from_the_config_tree(compose_train, tmp_path):
    from promptlearn.cli.train import train

    backbone = build_tiny_t5()
    from conftest import ToySentiment

    paths, _ = saved_prompts(backbone, ToySentiment(), tmp_path / "prompts", seeds=[0, 1, 2], length=3)
    results = train(compose_train(
        "model=tiny_t5", "method=prompt_ensemble", f"method.prompts=[{tmp_path}/prompts/prompt*.pt]", "baseline=false",
        "data.max_val_examples=16", "data.max_test_examples=16", "data.max_train_examples=8", "trainer=debug",
    ))
    assert results["method"] == "prompt_ensemble" and results["train_steps"] == 0 and results["trainable_params"] == 0
    assert {f"test/member{i}/score" for i in range(3)} <= set(results["metrics"])
    assert results["metrics"]["test/member_best/score"] == max(results["metrics"][f"test/member{i}/score"] for i in range(3))
    saved = torch.load(results["prompt_checkpoint"], weights_only=True)
    assert saved["hparams"]["prompts"] == [str(p) for p in paths]
    assert json.loads((tmp_path / "results.json").read_text())["method"] == "prompt_ensemble"
