"""Mixed-task inference: a batch of several tasks, each with its own prompt, equals each task run alone."""

from __future__ import annotations

import dataclasses

import lightning as L
import pytest
import torch

from promptlearn.backbones import build_tiny_llama
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.data.encoding import Collator, TextToTextEncoder
from promptlearn.data.mixture import Mixture
from promptlearn.utils.errors import ConfigError
from promptlearn.inference.mixed_task import MixedTaskPrompts, mixed_batch
from promptlearn.methods.prompt_tuning import PromptTuning

from conftest import ToyCopy, ToySentiment, adamw


def two_tasks(kind: str):
    if kind == "rank":
        return ToySentiment(), ToySentiment(name="toy_b", template="Q: {text} ?", label_words=(" bad", " good", " meh"))
    if kind == "one_token":
        return ToySentiment(label_words=("0", "1")), ToySentiment(name="toy_b", template="Q: {text} ?", label_words=("a", "b"))
    return ToyCopy(), ToyCopy(name="toy_copy_b", template="repeat {text} please")


def alone(module: PromptTuning, task, backbone, examples):
    """The task's own batch through prompt tuning with its own prompt: the reference."""
    encoder = TextToTextEncoder(backbone.tokenizer, backbone.is_encoder_decoder)
    batch = Collator(backbone.is_encoder_decoder, backbone.tokenizer.pad_token_id, task.eval_mode, train=False)(
        [encoder.encode(task, e) for e in examples])
    with torch.no_grad():
        if task.eval_mode == "generate":
            return module.generate_texts(batch["gen_input_ids"], batch["gen_attention_mask"]), None
        scores, _, _ = module.choice_scores(batch)
        picks = module.choice_scores(batch)[0].view(len(examples), -1).argmax(-1)
        return [task.label_words[i] for i in picks], scores.view(len(examples), -1)


@pytest.mark.parametrize("kind", ["rank", "one_token", "generate"])
def test_a_mixed_batch_equals_each_task_alone(tiny_backbone, kind):
    first, second = two_tasks(kind)
    if kind == "one_token" and tiny_backbone.is_encoder_decoder:
        pytest.skip("the one-token fast path is for causal LMs")
    torch.manual_seed(0)
    modules = {task.name: PromptTuning(tiny_backbone, task.info(), adamw(), prompt_length=length, init="random_uniform",
                                       init_range=1.0, max_new_tokens=4).eval()
               for task, length in ((first, 3), (second, 7))}
    examples = {task.name: task.load_splits()["test"][:5] for task in (first, second)}
    requests = [(name, e) for pair in zip(*[[(n, e) for e in ex] for n, ex in examples.items()]) for name, e in pair]
    mixture, batch = mixed_batch({"a": first, "b": second}, requests, tiny_backbone)
    assert len({len(c) for c in batch["choices"]}) == (2 if kind == "rank" else 1)  # the tasks differ in choices
    mixed = MixedTaskPrompts(tiny_backbone, mixture.info(), {n: m.prompt for n, m in modules.items()}, max_new_tokens=4).eval()

    answers = mixed.predict(batch).texts
    for name, task in ((first.name, first), (second.name, second)):
        rows = [i for i, (n, _) in enumerate(requests) if n == name]
        reference, reference_scores = alone(modules[name], task, tiny_backbone, examples[name])
        assert [answers[i] for i in rows] == reference
        if reference_scores is not None:
            with torch.no_grad():
                scores, _, _ = mixed.choice_scores(batch)
            per_example = torch.split(scores, batch["choice_counts"].tolist())
            torch.testing.assert_close(torch.stack([per_example[i] for i in rows]), reference_scores, rtol=1e-4, atol=1e-4)


def test_a_mixture_evaluates_with_per_task_metrics_like_separate_runs():
    backbone = build_tiny_llama()
    first, second = two_tasks("rank")
    torch.manual_seed(1)
    modules = {t.name: PromptTuning(backbone, t.info(), adamw(), prompt_length=n, init="random_uniform", init_range=1.0)
               for t, n in ((first, 2), (second, 5))}
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    separate = {t.name: trainer.test(modules[t.name], datamodule=TaskDataModule(t, backbone, eval_batch_size=8), verbose=False)[0]
                for t in (first, second)}
    mixture = Mixture(name="both", tasks={"a": first, "b": second})
    mixed = MixedTaskPrompts(backbone, mixture.info(), {n: m.prompt for n, m in modules.items()})
    together = trainer.test(mixed, datamodule=TaskDataModule(mixture, backbone, eval_batch_size=8), verbose=False)[0]
    for name in separate:
        assert together[f"test/{name}/accuracy"] == pytest.approx(separate[name]["test/accuracy"])
    assert together["test/score"] == pytest.approx((separate[first.name]["test/score"] + separate[second.name]["test/score"]) / 2)


def test_missing_prompts_and_unknown_tasks_are_one_line_errors():
    backbone = build_tiny_llama()
    first, second = two_tasks("rank")
    mixture, batch = mixed_batch({"a": first, "b": second}, [(first.name, first.load_splits()["test"][0])], backbone)
    with pytest.raises(ConfigError, match=r"no prompt for task\(s\) \['toy_b'\]"):
        MixedTaskPrompts(backbone, mixture.info(), {first.name: torch.zeros(2, 32)})
    with pytest.raises(ConfigError, match=r"prompts must be \[length, 32\]"):
        MixedTaskPrompts(backbone, mixture.info(), {first.name: torch.zeros(2, 32), second.name: torch.zeros(2, 8)})
    with pytest.raises(ConfigError, match="unknown tasks"):
        mixed_batch({"a": first}, [("nope", first.load_splits()["test"][0])], backbone)
    module = MixedTaskPrompts(backbone, mixture.info(), {first.name: torch.zeros(2, 32), second.name: torch.zeros(3, 32)})
    stray = dict(batch, task=["other"])
    with pytest.raises(ConfigError, match=r"examples of \['other'\], which have no prompt"):
        module.predict(stray)
    assert dataclasses.replace(first.load_splits()["test"][0], task=first.name).task == first.name
