"""A resume reads the run's recorded config, never damages the run's folder when it fails, appends to
the metrics record and reuses the no-prompt baseline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from promptlearn.cli import train

RUN = ["model=tiny_llama", "method.prompt_length=3", "trainer.max_steps=4", "trainer.val_check_interval=2",
       "trainer.log_every_n_steps=1", "data.max_train_examples=40", "data.max_val_examples=8",
       "data.max_test_examples=8"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished_run(run_main, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    done = run_main(train.main, *RUN, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir


@pytest.mark.parametrize("conflict, named", [
    ("method.prompt_length=5", "method.prompt_length (3 in the run, 5 now)"),
    ("optimizer=adafactor", "optimizer._target_"),
    ("task=sst2", "task.name"),
    ("model=tiny_t5", "model.name"),
    ("seed=1", "seed (0 in the run, 1 now)"),
    ("data.batch_size=4", "data.batch_size"),
])
def test_a_conflicting_resume_is_refused_and_leaves_every_file_byte_identical(run_main, finished_run, conflict, named):
    before = snapshot(finished_run)
    done = run_main(train.main, "ckpt_path=last", f"hydra.run.dir={finished_run}", "trainer.max_steps=6", conflict)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot resume {finished_run} with other settings") and named in line
    assert snapshot(finished_run) == before


def test_resuming_from_a_prompt_file_or_a_missing_checkpoint_leaves_the_run_alone(run_main, finished_run):
    before = snapshot(finished_run)
    for ckpt, message in ((finished_run / "prompt.pt", "it is a saved prompt, not a training checkpoint"),
                          (finished_run / "checkpoints" / "gone.ckpt", "does not exist")):
        done = run_main(train.main, f"ckpt_path={ckpt}", f"hydra.run.dir={finished_run}")
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert snapshot(finished_run) == before


def test_the_run_alone_continues_it_appending_metrics_and_reusing_the_baseline(run_main, finished_run):
    first = json.loads((finished_run / "results.json").read_text())
    rows_before = list(csv.DictReader((finished_run / "csv" / "metrics.csv").open()))
    baseline_bytes = (finished_run / "baseline.json").read_bytes()
    done = run_main(train.main, "ckpt_path=last", f"hydra.run.dir={finished_run}", "trainer.max_steps=6")
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = json.loads((finished_run / "results.json").read_text())
    assert resumed["train_steps"] == 6 and resumed["trainable_params"] == first["trainable_params"] == 3 * 32
    assert resumed["baseline"] == first["baseline"]
    assert (finished_run / "baseline.json").read_bytes() == baseline_bytes
    rows = list(csv.DictReader((finished_run / "csv" / "metrics.csv").open()))
    trained_steps = [int(r["step"]) for r in rows if r.get("train/loss")]
    assert trained_steps == list(range(6))  # steps 1..6, each logged once, the first four from the first run
    assert rows[: len(rows_before)][:4] == rows_before[:4]
