"""SLURM preemption: the requeue signal saves a checkpoint and requeues; the requeued run resumes from it exactly.

SLURM is simulated: its environment variables, a fake ``scontrol`` on PATH that records its
arguments and then kills the job (as SLURM does when it requeues it), and the signal itself,
sent by the job to itself after a given step.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_resume import RUN, TESTS, flatten

SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "promptlearn", "SLURM_NODELIST": "node1",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
SETUP = ["model=tiny_t5", "+model.dropout_rate=0.1", "method.prompt_length=4"]


def fake_scontrol(folder: Path) -> Path:
    """An ``scontrol`` that appends its arguments to a log, then SIGKILLs the job that called it."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {folder / "calls.log"}\nkill -9 $PPID\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder / "calls.log"


def train(run_dir: Path, *overrides: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "promptlearn.cli.train", *RUN, *SETUP, *overrides, f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=600, env=env,
    )


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return {**last["state_dict"], **flatten(last["optimizer_states"], "optimizer")}


@pytest.mark.slow
def test_requeue_signal_checkpoints_requeues_and_the_rerun_resumes_exactly(tmp_path):
    unbroken = train(tmp_path / "unbroken", env={})
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]

    calls = fake_scontrol(tmp_path / "bin")
    slurm = {**SLURM_ENV, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    run_dir = tmp_path / "job"
    preempted = train(run_dir, "+callbacks.preempt._target_=fault_injection.SignalAtStep", "+callbacks.preempt.step=6",
                      env=slurm)
    assert preempted.returncode == -signal.SIGKILL, preempted.stderr[-3000:]
    assert calls.read_text().split() == ["requeue", "4242"]
    hpc = torch.load(run_dir / "hpc_ckpt_1.ckpt", weights_only=True)
    assert hpc["global_step"] == 6

    requeued = train(run_dir, env=slurm)  # SLURM reruns the same command
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "Restored all states from the checkpoint" in requeued.stdout + requeued.stderr
    expected = final_state(tmp_path / "unbroken")
    resumed = final_state(run_dir)
    assert resumed.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(resumed[name], tensor), name


def test_a_bad_requeue_signal_name_is_refused(monkeypatch):
    from omegaconf import OmegaConf

    from promptlearn.cli.components import cluster_plugins
    from promptlearn.utils.errors import ConfigError

    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    plugin = cluster_plugins(OmegaConf.create({"slurm": {"requeue_signal": "SIGUSR1"}}))[0]
    assert plugin.auto_requeue and plugin.requeue_signal == signal.SIGUSR1
    with pytest.raises(ConfigError, match="slurm.requeue_signal must name a signal"):
        cluster_plugins(OmegaConf.create({"slurm": {"requeue_signal": "USR3"}}))
    for key in SLURM_ENV:
        monkeypatch.delenv(key)
    assert cluster_plugins(OmegaConf.create({"slurm": {"requeue_signal": "SIGUSR1"}})) == []


@pytest.mark.slow
def test_the_submitit_launcher_checkpoints_requeues_and_the_requeued_job_resumes_exactly(tmp_path):
    """The chain our SLURM preset runs, on submitit's local executor: the job's own launcher owns the requeue
    signal; the run checkpoints at the end of its step, submitit requeues the job, and the rerun resumes."""
    unbroken = train(tmp_path / "unbroken", env={})
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]

    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    launched = subprocess.run(
        [sys.executable, "-m", "promptlearn.cli.train", "-m", "hydra/launcher=submitit_local",
         "hydra.launcher.timeout_min=20", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=job",
         *RUN, *SETUP, "+callbacks.preempt._target_=fault_injection.SignalAtStep", "+callbacks.preempt.step=6"],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    logs = "\n".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "Requeued job" in logs  # submitit requeued it, after our checkpoint
    assert "resuming from" in logs and "preempted.ckpt" in logs
    job = sweep / "job"
    assert not (job / "checkpoints" / "preempted.ckpt").exists()  # finished: nothing left to resume from
    expected, resumed = final_state(tmp_path / "unbroken"), final_state(job)
    assert resumed.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(resumed[name], tensor), name
