"""The notebooks execute top to bottom; the analysis notebooks read a small tiny-model sweep made here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
SWEEP = ["model=tiny_t5,tiny_t5_wide", "method=prompt_tuning,model_tuning", "trainer=debug", "baseline=false",
         "data.max_train_examples=32", "data.max_val_examples=16", "data.max_test_examples=32"]


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory) -> Path:
    """2 random T5 sizes x 2 methods, trained by a real multirun; the notebooks read it via PROMPTLEARN_SWEEP."""
    folder = tmp_path_factory.mktemp("sweep")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "promptlearn.cli.train", "-m", *SWEEP, f"hydra.sweep.dir={folder}"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, tiny_sweep, monkeypatch):
    monkeypatch.setenv("PROMPTLEARN_SWEEP", str(tiny_sweep))  # the kernel inherits this environment
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("test/score" in str(o) for o in outputs)
    if path.stem == "scaling_curves":
        assert any("image/png" in o.get("data", {}) for o in outputs)  # the scaling plot is shown
