"""Metrics on hand-worked cases, and evaluation by generation through Lightning."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from promptlearn.data.datamodule import TaskDataModule
from promptlearn.data.tasks import TaskInfo
from promptlearn.utils.errors import ConfigError
from promptlearn.methods.base import FrozenBackboneModule
from promptlearn.methods.scoring import best_choice
from promptlearn.metrics import ExactMatch, Predictions, build_metrics, headline_score, match_choice


def scores(info: TaskInfo, *batches: Predictions) -> dict[str, float]:
    metrics = build_metrics(info)
    for batch in batches:
        metrics.update(batch)
    return metrics.compute()


def test_best_choice_handles_ragged_choice_counts():
    scores_ = torch.tensor([-1.0, -0.5, -3.0, -0.1, -2.0, -9.0])  # example 0: 2 choices; 1: 3; 2: 1
    assert best_choice(scores_, torch.tensor([2, 3, 1])).tolist() == [1, 1, 0]


def test_exact_match_normalises_case_and_space_and_accepts_any_gold_text():
    metric = ExactMatch()
    metric.update(["Paris ", "london", "rome"], ["paris", "London", "Madrid"])
    assert metric.compute().item() == pytest.approx(2 / 3)
    metric.reset()
    metric.update(["Rome"], [["Madrid", " rome"]])
    assert metric.compute().item() == 1.0


def test_accuracy_and_positive_class_f1_by_hand():
    info = TaskInfo("t", ("accuracy", "f1"), "rank", (" no", " yes"), 2)
    # preds 1,1,0,0 vs labels 1,0,1,0: TP=1 FP=1 FN=1 -> F1 = 2*1/(2*1+1+1) = 0.5; accuracy 2/4
    values = scores(info, Predictions(torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 1, 0])))
    assert values == pytest.approx({"accuracy": 0.5, "f1": 0.5, "score": 0.5})
    assert headline_score(values, ("accuracy", "f1")) == pytest.approx(0.5)


def test_cb_accuracy_and_macro_f1_by_hand():
    info = TaskInfo("cb", ("accuracy", "f1_macro"), "rank", (" True", " False", " Neither"), 3)
    labels, preds = torch.tensor([0, 0, 1, 2, 2, 1]), torch.tensor([0, 1, 1, 2, 0, 1])
    # class 0: TP 1, FP 1, FN 1 -> 0.5; class 1: TP 2, FP 1, FN 0 -> 0.8; class 2: TP 1, FP 0, FN 1 -> 2/3
    macro = (0.5 + 0.8 + 2 / 3) / 3
    values = scores(info, Predictions(preds[:4], labels[:4]), Predictions(preds[4:], labels[4:]))
    assert values == pytest.approx({"accuracy": 4 / 6, "f1_macro": macro, "score": (4 / 6 + macro) / 2})


def test_multirc_f1a_and_exact_match_by_hand():
    info = TaskInfo("multirc", ("f1a", "question_em"), "rank", (" no", " yes"), 2)
    # Question 0 has three answer options (labels 1,0,1), question 1 two (labels 0,1).
    # Predictions miss question 0's third option: TP 2, FP 0, FN 1 -> F1a = 4/5; EM: only question 1 is all right.
    labels = torch.tensor([1, 0, 1, 0, 1])
    preds = torch.tensor([1, 0, 0, 0, 1])
    groups = torch.tensor([0, 0, 0, 1, 1])
    # split mid-question across batches: the metric groups over the whole epoch
    first = Predictions(preds[:2], labels[:2], group=groups[:2])
    second = Predictions(preds[2:], labels[2:], group=groups[2:])
    values = scores(info, first, second)
    assert values == pytest.approx({"f1a": 0.8, "question_em": 0.5, "score": 0.65})


def test_record_f1_and_exact_match_take_the_best_gold_answer():
    info = TaskInfo("record", ("answer_f1", "answer_em"), "rank")
    texts = [" Serena Williams", "the Amazon river", "Paris, France"]
    answers = [(" Serena Williams", " Williams"), (" Amazon",), ("Paris",)]
    # 1: exact. 2: "amazon river" vs "amazon" (article dropped): P 1/2, R 1 -> F1 2/3. 3: "paris france" vs "paris": 2/3.
    values = scores(info, Predictions(torch.zeros(3), torch.zeros(3), texts, answers))
    assert values == pytest.approx({"answer_f1": (1 + 2 / 3 + 2 / 3) / 3, "answer_em": 1 / 3, "score": (7 / 9 + 1 / 3) / 2})


def test_generations_that_are_no_label_word_count_as_wrong():
    choices = (" no", " yes")
    index = torch.tensor([match_choice(t, choices) for t in [" yes", "No", "maybe"]])
    assert index.tolist() == [1, 0, -1]
    info = TaskInfo("t", ("accuracy", "f1"), "generate", choices, 2)
    # labels 1,0,1: the third (invalid) is a false negative -> TP 1, FN 1 -> F1 2/3
    values = scores(info, Predictions(index, torch.tensor([1, 0, 1])))
    assert values == pytest.approx({"accuracy": 2 / 3, "f1": 2 / 3, "score": 2 / 3})


def test_mixture_reports_each_task_and_the_average_of_task_scores():
    parts = (
        TaskInfo("boolq", ("accuracy",), "rank", (" no", " yes"), 2),
        TaskInfo("mrpc", ("accuracy", "f1"), "rank", (" no", " yes"), 2),
        TaskInfo("wic", ("accuracy",), "rank", (" no", " yes"), 2),
    )
    info = TaskInfo("mix", ("score",), "rank", (" no", " yes"), 2, parts)
    batch = Predictions(
        torch.tensor([1, 0, 1, 1, 0, 0]),
        torch.tensor([1, 1, 1, 0, 1, 0]),
        task=["boolq", "boolq", "mrpc", "mrpc", "mrpc", "mrpc"],
    )
    values = scores(info, batch)
    # boolq 1/2; mrpc: preds 1,1,0,0 vs 1,0,1,0 -> accuracy 1/2, F1 1/2; wic never evaluated, so not averaged
    assert values == pytest.approx({
        "boolq/accuracy": 0.5, "boolq/score": 0.5,
        "mrpc/accuracy": 0.5, "mrpc/f1": 0.5, "mrpc/score": 0.5, "score": 0.5,
    })


def test_class_metrics_need_a_fixed_label_set():
    with pytest.raises(ConfigError, match="metric 'f1' of task 'copa' needs label_words"):
        build_metrics(TaskInfo("copa", ("f1",), "rank"))
    with pytest.raises(ConfigError, match="unknown metric of task 't' 'f2'"):
        build_metrics(TaskInfo("t", ("f2",), "rank", (" a", " b"), 2))


def test_generation_evaluation_scores_exact_match(toy_copy):
    from promptlearn.backbones import build_tiny_t5

    backbone = build_tiny_t5()
    module = FrozenBackboneModule(backbone, toy_copy.info(), max_new_tokens=4)
    datamodule = TaskDataModule(toy_copy, backbone, eval_batch_size=4)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    expected = []
    for batch in datamodule.test_dataloader():
        texts = module.generate_texts(batch["gen_input_ids"], batch["gen_attention_mask"])
        expected += [t.strip().lower() == target.strip().lower() for t, target in zip(texts, batch["target_text"])]
    assert len(expected) == 8
    assert metrics["test/exact_match"] == pytest.approx(sum(expected) / len(expected))
    assert metrics["test/score"] == metrics["test/exact_match"]
