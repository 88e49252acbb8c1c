"""SuperGLUE tasks read from fixture files in the hub's schema: formatting, splits, and bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from promptlearn.data.tasks.superglue import CB, COPA, RTE, WSC, BoolQ, MultiRC, ReCoRD, WiC
from promptlearn.utils.errors import DataError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "superglue"


def rows(task: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / task / f"{split}.jsonl").read_text().splitlines()]


def in_file_order(task_cls, folder: str, **kwargs):
    """Train in file order (no held-out part), the official validation split as test."""
    return task_cls(path=str(FIXTURES / folder), heldout_fraction=0, **kwargs).load_splits()


def test_boolq_fills_passage_and_question_and_verbalizes_the_label():
    task = BoolQ(path=str(FIXTURES / "boolq"), heldout_fraction=0)
    example = task.load_splits()["train"][1]  # "is a tomato a vegetable", label 0
    assert task.render(example.fields) == (
        "Botanically, a tomato is a fruit, a berry, consisting of the ovary and its seeds of a flowering plant."
        "\nQuestion: is a tomato a vegetable?\nAnswer:"
    )
    assert (example.target, example.choices, example.label) == (" no", (" no", " yes"), 0)


@pytest.mark.parametrize(
    ("task_cls", "folder", "row", "fields", "target"),
    [
        (CB, "cb", 2, {"premise": "I don't think that the plan will work, she said firmly.", "hypothesis": "the plan will work"}, " False"),
        (RTE, "rte", 2, {"premise": "Cairo is now home to some 15 million people.", "hypothesis": "15 million people live in Cairo."}, " True"),
        (WiC, "wic", 1, {"word": "bank", "sentence1": "He sat on the bank of the river.", "sentence2": "The river bank was muddy."}, " yes"),
        (WSC, "wsc", 3, {"text": "The trophy doesn't fit into the brown suitcase because it is too large .", "span1_text": "The trophy", "span2_text": "it"}, " yes"),
    ],
)
def test_pair_tasks_read_their_fields_and_label(task_cls, folder, row, fields, target):
    example = in_file_order(task_cls, folder)["train"][row]
    assert dict(example.fields) == fields and example.target == target


def test_copa_scores_the_alternatives_as_continuations():
    example = in_file_order(COPA, "copa")["train"][4]  # "The man turned on the faucet." effect, label 1
    assert example.fields == {"premise": "The man turned on the faucet.", "question": "effect"}
    assert example.choices == (" the toilet filled with water.", " water flowed from the spout.")
    assert (example.label, example.target) == (1, " water flowed from the spout.")


def test_multirc_gives_each_question_one_group():
    train = in_file_order(MultiRC, "multirc")["train"]
    assert [e.group for e in train] == [0, 0, 1, 1, 1_000_000, 1_000_000, 1_000_001, 1_000_001]
    assert train[2].fields == {"paragraph": rows("multirc", "train")[2]["paragraph"], "question": "Who was sick?", "answer": "Her first friend"}
    assert [e.label for e in train] == [r["label"] for r in rows("multirc", "train")]


def test_record_ranks_entities_and_keeps_every_gold_answer():
    example = in_file_order(ReCoRD, "record")["train"][1]
    assert example.choices == (" Serena Williams", " Maria Sharapova", " Australian Open", " Melbourne", " Williams")
    assert (example.label, example.target) == (0, " Serena Williams")
    assert example.answers == (" Serena Williams", " Williams")
    # "@highlight" lines become sentences, as in T5's preprocessing
    assert example.fields["passage"] == "Serena Williams beat Maria Sharapova in the Australian Open final in Melbourne. Williams won her 23rd title"
    assert example.fields["query"] == "@placeholder lifted the trophy in Melbourne."


def test_lester_splits_hold_out_part_of_train_and_test_on_validation():
    task = BoolQ(path=str(FIXTURES / "boolq"), heldout_fraction=0.3)
    splits = task.load_splits()
    train_questions = [r["question"] for r in rows("boolq", "train")]
    held = [e.fields["question"] for e in splits["validation"]]
    kept = [e.fields["question"] for e in splits["train"]]
    assert len(held) == 2 and not set(held) & set(kept)
    assert sorted(held + kept) == sorted(train_questions)
    assert kept == [q for q in train_questions if q not in held]  # file order kept
    assert [e.fields["question"] for e in splits["test"]] == [r["question"] for r in rows("boolq", "validation")]
    assert [e.fields["question"] for e in task.load_splits()["validation"]] == held  # deterministic
    others = {tuple(e.fields["question"] for e in BoolQ(path=task.path, heldout_fraction=0.3, split_seed=s).load_splits()["validation"]) for s in range(6)}
    assert len(others) > 1  # the seed picks the held-out part


def test_multirc_holds_out_whole_questions():
    splits = MultiRC(path=str(FIXTURES / "multirc"), heldout_fraction=0.5).load_splits()
    held, kept = {e.group for e in splits["validation"]}, {e.group for e in splits["train"]}
    assert len(held) == 2 and not held & kept
    assert len(splits["validation"]) == 4  # two options per question


def test_parquet_data_files_in_the_hub_layout(tmp_path):
    import datasets

    files = {}
    for split in ("train", "validation"):
        files[split] = str(tmp_path / f"{split}-00000-of-00001.parquet")
        datasets.Dataset.from_list(rows("copa", split)).to_parquet(files[split])
    splits = COPA(data_files=files, heldout_fraction=0).load_splits()
    assert [e.fields["premise"] for e in splits["test"]] == [r["premise"] for r in rows("copa", "validation")]


def write_split(folder: Path, split: str, records: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def broken_boolq(tmp_path: Path, bad_row: dict) -> Path:
    folder = tmp_path / "boolq"
    good = rows("boolq", "train")
    write_split(folder, "train", good[:3] + [bad_row] + good[3:])
    write_split(folder, "validation", rows("boolq", "validation"))
    return folder


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ({"question": None, "passage": "p", "idx": 9, "label": 1}, r"row 4: field 'question' is missing"),
        ({"question": "q", "passage": "p", "idx": 9, "label": 2}, r"row 4: field 'label' is 2, outside the 2 label words"),
        ({"question": "q", "passage": "p", "idx": 9, "label": -1}, r"row 4: field 'label' is -1.*hidden test label"),
        ({"question": "q", "passage": "  ", "idx": 9, "label": 0}, r"row 4: field 'passage' is empty"),
    ],
)
def test_a_bad_row_names_the_file_row_and_field(tmp_path, bad_row, message):
    folder = broken_boolq(tmp_path, bad_row)
    with pytest.raises(DataError, match=r"boolq/train\.jsonl, " + message):
        BoolQ(path=str(folder)).load_splits()


def test_skip_bad_rows_counts_what_it_skipped(tmp_path, caplog):
    folder = broken_boolq(tmp_path, {"question": "q", "passage": "p", "idx": 9, "label": 5})
    with caplog.at_level(logging.INFO, logger="promptlearn.data.tasks.rows"):
        splits = BoolQ(path=str(folder), skip_bad_rows=True, heldout_fraction=0).load_splits()
    assert len(splits["train"]) == 6
    assert "train.jsonl: kept 6 rows, skipped 1 (1 with bad field 'label')" in caplog.text
    assert "validation.jsonl: kept 3 rows, skipped 0" in caplog.text


def test_record_answers_must_be_entities(tmp_path):
    folder = tmp_path / "record"
    bad = dict(rows("record", "train")[0], answers=["London"])
    write_split(folder, "train", [bad])
    write_split(folder, "validation", rows("record", "validation"))
    with pytest.raises(DataError, match=r"row 1: field 'answers' holds \['London'\], which are not among the entities"):
        ReCoRD(path=str(folder)).load_splits()


def test_an_empty_split_is_an_error(tmp_path):
    folder = tmp_path / "rte"
    write_split(folder, "train", rows("rte", "train"))
    (folder / "validation.jsonl").write_text("")
    with pytest.raises(DataError, match=r"cannot read .*rte.*is a split file empty\?"):
        RTE(path=str(folder)).load_splits()


def test_malformed_json_is_a_data_error(tmp_path):
    folder = tmp_path / "rte"
    write_split(folder, "validation", rows("rte", "validation"))
    (folder / "train.jsonl").write_text('{"premise": "a", "hypothesis": \n')
    with pytest.raises(DataError, match=r"cannot read .*rte: JSON parse error"):
        RTE(path=str(folder)).load_splits()


def test_unreachable_hub_says_how_to_use_local_files(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'aps/super_glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"cannot load 'aps/super_glue' \(boolq\).*point task.path at a local folder"):
        BoolQ().load_splits()
