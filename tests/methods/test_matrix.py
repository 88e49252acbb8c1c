"""Every method config on the tiny backbones (T5, Llama, and Gemma 3 with its quirks), through the real entry points: trained for a few
steps, evaluated, saved, and reloaded by promptlearn-eval to the same scores.

Not in the matrix, with the reason:
- ``pez_clip``: optimises a CLIP text prompt against images, run by promptlearn-invert (tests/clip/).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import open_dict

from promptlearn.cli.eval import evaluate
from promptlearn.cli.train import train
from promptlearn.utils.paths import config_dir

METHODS = sorted(p.stem for p in (Path(config_dir()) / "method").glob("*.yaml") if not p.stem.startswith("_"))
NOT_IN_THE_MATRIX = {"pez_clip": "a CLIP text prompt, run by promptlearn-invert"}
NOTHING_TO_TRAIN = {"prompt_design", "prompt_ensemble"}
TINY = ["trainer=debug", "data.max_train_examples=32", "data.max_val_examples=8", "data.max_test_examples=8",
        "baseline=false"]
SMALL = {"prompt_tuning": ["method.prompt_length=3"], "p_tuning": ["method.prompt_length=3"],
         "pez": ["method.prompt_length=3"], "prefix_tuning": ["method.prefix_length=3"],
         "p_tuning_v2": ["method.prefix_length=3"], "autoprompt": ["method.trigger_length=2", "method.num_candidates=3"]}


def compose_into(compose_train, folder: Path, *overrides: str, config_name: str = "train"):
    cfg = compose_train(*overrides, config_name=config_name)
    with open_dict(cfg):
        cfg.output_dir = str(folder)
    return cfg


def test_the_matrix_covers_every_method_config():
    assert set(METHODS) - set(NOT_IN_THE_MATRIX) == set(MATRIX_METHODS)


MATRIX_METHODS = [m for m in METHODS if m not in NOT_IN_THE_MATRIX]


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_llama", "tiny_gemma3"])
@pytest.mark.parametrize("method", MATRIX_METHODS)
def test_each_method_trains_evaluates_saves_and_reloads(compose_train, tmp_path, model, method):
    extra = SMALL.get(method, [])
    if method == "prompt_ensemble":  # its members: two prompts trained by method=prompt_tuning
        members = [train(compose_into(compose_train, tmp_path / f"member{seed}", f"model={model}", f"seed={seed}",
                                      "method=prompt_tuning", "method.prompt_length=3", *TINY))["prompt_checkpoint"]
                   for seed in (0, 1)]
        extra = [f"method.prompts=[{','.join(members)}]"]
    trained = train(compose_into(compose_train, tmp_path / "train", f"model={model}", f"method={method}", *extra, *TINY))
    assert trained["method"] == method and trained["model"] == model
    assert trained["train_steps"] == (0 if method in NOTHING_TO_TRAIN else 2)
    assert (trained["trainable_params"] == 0) == (method in NOTHING_TO_TRAIN)
    assert {"val/score", "test/score"} <= set(trained["metrics"])
    assert Path(trained["prompt_checkpoint"]).is_file()

    evaluated = evaluate(compose_into(
        compose_train, tmp_path / "eval", f"model={model}", f"method={method}", *extra,
        f"prompt={trained['prompt_checkpoint']}", "trainer=debug", "data.max_val_examples=8", "data.max_test_examples=8",
        config_name="eval",
    ))
    assert evaluated["method"] == method
    assert evaluated["metrics"]["test/score"] == pytest.approx(trained["metrics"]["test/score"])
    assert evaluated["metrics"]["val/score"] == pytest.approx(trained["metrics"]["val/score"])
