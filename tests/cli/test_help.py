"""``--help`` answers at once (nothing heavy is imported), with the command's real groups, keys and examples."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_entry(command: str, *args: str) -> subprocess.CompletedProcess:
    code = ("import sys; sys.argv = ['promptlearn', *sys.argv[1:]]; from promptlearn.cli import entry; "
            f"entry.{command}(); print('heavy imports:', sorted(m for m in ('torch', 'lightning', 'transformers') "
            "if m in sys.modules))")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command, group, example", [
    ("train", "method", "promptlearn-train -m method.prompt_length=1,5,20"),
    ("evaluate", "task", "promptlearn-eval prompt="),
    ("meta", "meta_pool", "promptlearn-meta meta_experiment=toy"),
    ("invert", "clip", "promptlearn-invert targets.images="),
    ("lm_adapt", "corpus", "promptlearn-lm-adapt model=t5_v1_1_base"),
])
def test_help_lists_the_commands_groups_keys_and_examples_without_loading_torch(command, group, example):
    done = run_entry(command, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "config groups (group=option):" in out and f"\n  {group} " in out
    assert "most used settings:" in out and len(out.split("most used settings:")[1].split("flags:")[0].strip().splitlines()) == 10
    assert example in out and "--help-full" in out
    assert out.strip().endswith("heavy imports: []")


def test_hydras_own_help_stays_available():
    done = run_entry("train", "--help-full")
    assert done.returncode == 0 and "== Configuration groups ==" in done.stdout
