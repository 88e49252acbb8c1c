"""task=local: your own jsonl/csv files, with errors that name the file, the line and the field."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from promptlearn.data.tasks.local_files import LocalTask
from promptlearn.utils.errors import ConfigError, DataError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "local"
REVIEWS = dict(
    name="reviews",
    input_fields=("review",),
    template="Review: {review}\nSentiment:",
    label_field="sentiment",
    label_words=(" negative", " positive"),
    label_values=("neg", "pos"),
)


def reviews(**overrides) -> LocalTask:
    files = dict(train=str(FIXTURES / "train.jsonl"), validation=str(FIXTURES / "validation.jsonl"), test=str(FIXTURES / "test.csv"))
    return LocalTask(**{**REVIEWS, **files, **overrides})


def test_jsonl_and_csv_splits_with_raw_label_values():
    splits = reviews().load_splits()
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "validation": 2, "test": 3}
    first = splits["train"][1]
    assert first.fields == {"review": "Dull from the first scene to the last."}
    assert (first.label, first.target, first.choices) == (0, " negative", (" negative", " positive"))
    assert [e.label for e in splits["test"]] == [1, 0, 1]
    assert splits["test"][0].fields["review"] == "Sharp, tender, unforgettable."  # quoted csv cell


def test_integer_labels_in_csv_and_a_held_out_validation_split(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\n" + "".join(f"example {i},{i % 2}\n" for i in range(10)))
    task = LocalTask(train=str(path), label_words=(" no", " yes"), validation_fraction=0.2)
    splits = task.load_splits()
    assert len(splits["train"]) == 8 and len(splits["validation"]) == 2
    assert {e.fields["text"] for e in splits["train"] + splits["validation"]} == {f"example {i}" for i in range(10)}
    assert all(e.label == int(e.fields["text"][-1]) % 2 for e in splits["train"])
    assert [e.fields for e in task.load_splits()["validation"]] == [e.fields for e in splits["validation"]]


def test_multiple_choice_from_a_choices_field():
    task = LocalTask(name="quiz", train=str(FIXTURES / "questions.jsonl"), input_fields=("question",),
                     template="{question}\nAnswer:", label_field="answer", label_words=(), choices_field="options",
                     validation_fraction=0.25)
    example = LocalTask.to_example(task, {"question": "Which is a fruit?", "options": ["carrot", "apple"], "answer": 1})
    assert (example.choices, example.label, example.target) == (("carrot", "apple"), 1, "apple")
    assert sum(len(v) for v in task.load_splits().values()) == 4


def test_free_form_targets_for_generation(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"q": "2+2", "a": "4"}\n{"q": "3+3", "a": "6"}\n')
    task = LocalTask(train=str(path), input_fields=("q",), template="{q} =", label_field=None, label_words=(),
                     target_field="a", eval_mode="generate", metrics=("exact_match",))
    examples = [e for split in task.load_splits().values() for e in split]
    assert sorted((e.fields["q"], e.target, e.choices) for e in examples) == [("2+2", "4", ()), ("3+3", "6", ())]


def broken(tmp_path: Path, line: str, suffix: str = ".jsonl") -> LocalTask:
    good = (FIXTURES / "train.jsonl").read_text().splitlines()
    path = tmp_path / f"train{suffix}"
    path.write_text("\n".join(good[:2] + [line] + good[2:]) + "\n")
    return reviews(train=str(path))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"review": "Fine.", "sentiment": "meh"}', r"line 3: field 'sentiment' is 'meh', not one of the labels \['neg', 'pos'\]"),
        ('{"sentiment": "pos"}', r"line 3: field 'review' is missing"),
        ('{"review": "Fine.", "sentiment": "pos"', r"line 3: is not valid JSON"),
        ('["Fine.", "pos"]', r"line 3: should be a JSON object"),
        ('{"review": 7, "sentiment": "pos"}', r"line 3: field 'review' should be a string, got int 7"),
    ],
)
def test_bad_lines_name_the_file_line_and_field(tmp_path, line, message):
    with pytest.raises(DataError, match=str(tmp_path / "train.jsonl").replace(".", r"\.") + ", " + message):
        broken(tmp_path, line).load_splits()


def test_bad_csv_rows_name_the_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("review,sentiment\nGood.,pos\nToo,many,cells\nBad.,neg\n")
    with pytest.raises(DataError, match=r"train\.csv, line 3: has 3 fields, the header has 2"):
        reviews(train=str(path)).load_splits()


def test_skip_bad_rows_reports_kept_and_skipped(tmp_path, caplog):
    task = broken(tmp_path, '{"review": "Fine.", "sentiment": "meh"}')
    task.skip_bad_rows = True
    with caplog.at_level(logging.INFO, logger="promptlearn.data.tasks.rows"):
        splits = task.load_splits()
    assert len(splits["train"]) == 6
    assert f"{tmp_path / 'train.jsonl'}: kept 6 rows, skipped 1 (1 with bad field 'sentiment')" in caplog.text


def test_empty_and_missing_files_and_bad_settings(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match=r"validation file .*empty\.jsonl has no usable rows"):
        reviews(validation=str(empty)).load_splits()
    with pytest.raises(DataError, match=r"test file .*nope\.csv does not exist"):
        reviews(test=str(tmp_path / "nope.csv")).load_splits()
    with pytest.raises(ConfigError, match=r"must end in \.jsonl or \.csv"):
        reviews(train=str(tmp_path / "data.txt"))
    with pytest.raises(ConfigError, match="2 label_values for 3 label_words"):
        reviews(label_words=(" a", " b", " c"))
    with pytest.raises(ConfigError, match=r"no slot for \{review\}"):
        reviews(template="{text}")


def test_holding_out_everything_names_the_local_tasks_own_setting(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text('{"review": "Fine.", "sentiment": "pos"}\n')
    task = reviews(train=str(path), validation=None, validation_fraction=0.5)
    with pytest.raises(DataError, match=r"leaves no training data; lower task\.validation_fraction"):
        task.load_splits()
