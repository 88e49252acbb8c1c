"""A kill in the middle of writing a checkpoint leaves the previous checkpoint whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import torch

from promptlearn.training.checkpoints import AtomicCheckpointIO

WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from promptlearn.training.checkpoints import AtomicCheckpointIO

    class KillWhilePickled:
        def __reduce__(self):  # runs while torch.save is writing: the file is half written
            os.kill(os.getpid(), signal.SIGKILL)

    path = sys.argv[1]
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "state_dict": {"prompt": torch.ones(256, 64)}}, path)
    io.save_checkpoint({"global_step": 2, "state_dict": {"prompt": torch.zeros(256, 64)}, "z": KillWhilePickled()}, path)
    """
)


def test_sigkill_during_a_save_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    done = subprocess.run([sys.executable, "-c", WRITER, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert leftovers and all(p.name.startswith(".last.ckpt.") for p in leftovers)  # the torn write, aside
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["global_step"] == 1 and torch.equal(checkpoint["state_dict"]["prompt"], torch.ones(256, 64))


def test_a_failed_save_cleans_up_and_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    try:
        io.save_checkpoint({"global_step": 2, "z": Unpicklable()}, path)
    except RuntimeError:
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert torch.load(path, weights_only=True)["global_step"] == 1
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the permissions of any other file the run writes
