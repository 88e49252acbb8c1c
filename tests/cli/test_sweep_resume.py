"""sweep_resume=true: a sweep cut off part way runs only the jobs it had not finished, to the same table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptlearn.analysis import collect_runs
from promptlearn.cli.command_line import complete_command_line
from promptlearn.cli.sweep_resume import ENVIRONMENT
from promptlearn.utils.errors import ConfigError

SWEEP = ["model=tiny_llama", "method.prompt_length=2,4", "seed=0,1", "trainer=debug", "baseline=false",
         "data.max_train_examples=16", "data.max_val_examples=8", "data.max_test_examples=16"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ENV.pop(ENVIRONMENT, None)


def sweep_command(folder: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "promptlearn.cli.train", "-m", *SWEEP, f"hydra.sweep.dir={folder}", *extra]


def run_sweep(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run(sweep_command(folder, *extra), capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def job(folder: Path, number: int) -> Path:
    (found,) = folder.glob(f"{number}_*")
    return found


def cut_off_after_two_jobs(folder: Path) -> None:
    process = subprocess.Popen(sweep_command(folder), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=ENV, start_new_session=True)
    deadline = time.monotonic() + 600
    while not list(folder.glob("1_*/results.json")):
        assert process.poll() is None and time.monotonic() < deadline, "the sweep ended before its second job"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_a_sweep_killed_after_two_jobs_resumes_with_the_rest_only(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_sweep(whole)
    cut_off_after_two_jobs(cut)
    assert not list(cut.glob("3_*/results.json"))
    finished = {n: {p.relative_to(job(cut, n)): p.read_bytes() for p in job(cut, n).rglob("*") if p.is_file()
                    and p.name != "train.log"} for n in (0, 1)}

    resumed = run_sweep(cut, "sweep_resume=true")
    log = resumed.stdout + resumed.stderr
    assert log.count("is finished (results.json); skipped") == 2, log[-3000:]
    for n, files in finished.items():  # the finished jobs' files, their .hydra record included, are untouched
        assert {p.relative_to(job(cut, n)): p.read_bytes() for p in job(cut, n).rglob("*")
                if p.is_file() and p.name != "train.log"} == files
    columns = ["prompt_length", "seed", "train_steps", "test/score", "val/score"]
    table = collect_runs(cut)[["run", *columns]].sort_values("run").reset_index(drop=True)
    reference = collect_runs(whole)[["run", *columns]].sort_values("run").reset_index(drop=True)
    assert len(table) == 4 and table.equals(reference)


def test_sweep_resume_mistakes_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(ENVIRONMENT, "")  # restored afterwards, whatever the command line sets
    with pytest.raises(ConfigError, match="resumes a multirun"):
        complete_command_line("train", ["sweep_resume=true", f"hydra.run.dir={tmp_path}"])
    with pytest.raises(ConfigError, match="needs hydra.sweep.dir"):
        complete_command_line("train", ["-m", "seed=0,1", "sweep_resume=true"])
    with pytest.raises(ConfigError, match="no sweep to resume"):
        complete_command_line("train", ["-m", "seed=0,1", f"hydra.sweep.dir={tmp_path}", "sweep_resume=true"])
    with pytest.raises(ConfigError, match="true or false"):
        complete_command_line("train", ["-m", "sweep_resume=maybe"])
    with pytest.raises(ConfigError, match="promptlearn-train sweeps only"):
        complete_command_line("eval", ["-m", "sweep_resume=true"])
    (tmp_path / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['seed=0,1', model=tiny_llama]\n")
    with pytest.raises(ConfigError, match=r"missing now: \['model=tiny_llama'\]; new: \['model=tiny_t5'\]"):
        complete_command_line("train", ["-m", "seed=0,1", "model=tiny_t5", f"hydra.sweep.dir={tmp_path}",
                                        "sweep_resume=true"])
    assert complete_command_line("train", ["-m", "seed=0,1", "sweep_resume=false"]) == ["-m", "seed=0,1"]


def test_a_matching_resume_is_passed_on_without_the_flag(tmp_path, monkeypatch):
    monkeypatch.setenv(ENVIRONMENT, "")  # restored afterwards, whatever the command line sets
    (tmp_path / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['seed=0,1', model=tiny_llama]\n")
    argv = ["-m", "model=tiny_llama", "seed=0,1", f"hydra.sweep.dir={tmp_path}", "sweep_resume=true"]
    assert complete_command_line("train", argv) == argv[:-1]
    assert os.environ[ENVIRONMENT] == "1"
    from promptlearn.cli.sweep_resume import resuming_sweep

    assert not resuming_sweep()  # outside a Hydra multirun, a run is never skipped
