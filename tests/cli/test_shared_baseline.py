"""A sweep evaluates the no-prompt baseline once per backbone, template and test set, and its jobs share it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlearn.cli.train import main

COMMON = ["model=tiny_llama", "trainer=debug", "data.max_train_examples=16", "data.max_val_examples=8"]


def baseline(folder: Path) -> dict[str, float]:
    return json.loads((folder / "baseline.json").read_text())


def job(sweep: Path, number: int) -> Path:
    (found,) = sweep.glob(f"{number}_*")
    return found


@pytest.mark.slow
def test_jobs_with_the_same_test_data_share_one_baseline_equal_to_a_fresh_one(run_main, tmp_path):
    sweep = tmp_path / "sweep"
    done = run_main(main, "-m", *COMMON, "method.prompt_length=2,4", "data.max_test_examples=8,16",
                    f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}_len${method.prompt_length}")
    assert done.returncode == 0, done.stderr[-3000:]
    log = "".join(p.read_text() for p in sweep.glob("*/train.log"))
    assert log.count("its no-prompt metrics are reused") == 2, log[-3000:]
    assert len(list((sweep / "baselines").glob("*.json"))) == 2  # one per test set: 8 and 16 examples
    # jobs 0 and 2 test on 8 examples, 1 and 3 on 16; the later job of each pair reused the earlier's
    assert baseline(job(sweep, 2)) == baseline(job(sweep, 0)) != baseline(job(sweep, 1)) == baseline(job(sweep, 3))
    for later, earlier in ((2, 0), (3, 1)):
        copied = job(sweep, later) / "predictions" / "baseline_test.jsonl"
        assert copied.read_bytes() == (job(sweep, earlier) / "predictions" / "baseline_test.jsonl").read_bytes()
        assert json.loads((job(sweep, later) / "results.json").read_text())["baseline"] == baseline(job(sweep, earlier))

    single = tmp_path / "single"  # not a sweep: it computes its own
    done = run_main(main, *COMMON, "method.prompt_length=4", "data.max_test_examples=8", f"hydra.run.dir={single}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reused" not in (single / "train.log").read_text()
    assert baseline(single) == pytest.approx(baseline(job(sweep, 2)), rel=1e-6)
