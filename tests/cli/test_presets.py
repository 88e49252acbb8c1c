"""Experiment, launcher and search presets: they expand to the papers' grids and every sweep point composes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from promptlearn.utils.paths import config_dir

from hydra_presets import hydra_compose, sweep_axes

LM_ADAPT = [f"t5_{size}_lm_adapt" for size in ("small", "base", "large", "xl", "xxl")]
SUPERGLUE = ["boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"]


def sweep_jobs(experiment: str) -> list[list[str]]:
    params = hydra_compose(f"experiment={experiment}").hydra.sweeper.params
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    (batch,) = BasicSweeper.split_arguments(overrides, None)
    return batch


def covering_jobs(experiment: str) -> list[list[str]]:
    """A few sweep points that between them take every value of every axis."""
    axes = sweep_axes(experiment)
    return [[f"{k}={v[i % len(v)]}" for k, v in axes.items()] for i in range(max(map(len, axes.values())))]


@pytest.mark.parametrize(("experiment", "runs"), [
    ("lester_scaling", 5 * 3 * 8 * 3), ("ablation_prompt_length", 5 * 5 * 8 * 3),
    ("ablation_init", 5 * 3 * 8 * 3), ("domain_transfer", 2 * 2 * 3),
])
def test_experiments_expand_to_the_papers_grids(experiment, runs):
    axes = sweep_axes(experiment)
    assert len(sweep_jobs(experiment)) == runs
    assert axes["seed"] == ["0", "1", "2"]
    if experiment != "domain_transfer":
        assert axes["model"] == LM_ADAPT and axes["task"] == SUPERGLUE
    expected = {
        "lester_scaling": ("experiment/lester_method", ["prompt_tuning", "model_tuning", "prompt_design"]),
        "ablation_prompt_length": ("method.prompt_length", ["1", "5", "20", "100", "150"]),
        "ablation_init": ("method.init", ["random_uniform", "sampled_vocab", "class_label"]),
        "domain_transfer": ("experiment/transfer", ["qqp_to_mrpc", "mrpc_to_qqp"]),
    }[experiment]
    assert [str(v) for v in axes[expected[0]]] == expected[1]


@pytest.mark.parametrize("experiment", ["lester_scaling", "ablation_prompt_length", "ablation_init", "domain_transfer"])
def test_every_axis_value_composes_with_lesters_settings(experiment):
    for job in covering_jobs(experiment):
        cfg = hydra_compose(f"experiment={experiment}", *job)
        chosen = dict(o.split("=", 1) for o in job)
        method = cfg.hydra.runtime.choices.method
        assert cfg.experiment_name == experiment
        assert cfg.optimizer._target_.endswith("Adafactor") and cfg.optimizer.decay_rate == -0.8
        assert cfg.trainer.max_steps == 30000 and cfg.data.batch_size == 32 and cfg.data.max_val_examples is None
        if method == "prompt_tuning":
            assert cfg.optimizer.lr == 0.3
            assert cfg.method.prompt_length == int(chosen.get("method.prompt_length", 100))
            assert cfg.method.init == chosen.get("method.init", "class_label")
        elif method == "model_tuning":
            assert cfg.optimizer.lr == 0.001
        if experiment == "domain_transfer":
            assert {cfg.task.name, cfg.transfer_task.name} == {"qqp", "mrpc"}
        else:
            assert cfg.model.name == chosen["model"] and cfg.task.name == chosen["task"]
        sweep = OmegaConf.to_container(cfg.hydra.sweep)  # run folders: multirun/<experiment>/<time>/<num>_<task>_...
        assert sweep["dir"].startswith("multirun/${experiment_name}/")
        assert sweep["subdir"] == "${hydra.job.num}_${task.name}_${model.name}_${hydra:runtime.choices.method}_seed${seed}"


def test_a_sweep_axis_can_be_narrowed_on_the_command_line():
    params = hydra_compose("experiment=ablation_init").hydra.sweeper.params
    parser = OverridesParser.create()
    overrides = parser.parse_overrides([*(f"{k}={v}" for k, v in params.items()), "model=tiny_t5", "task=rotten_tomatoes"])
    (jobs,) = BasicSweeper.split_arguments(overrides, None)
    assert len(jobs) == 3 * 3 and all("model=tiny_t5" in job and "task=rotten_tomatoes" in job for job in jobs)


def test_slurm_launcher_preset_extends_the_submitit_plugin():
    launcher = hydra_compose("hydra/launcher=slurm").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.timeout_min == 2880 and launcher.tasks_per_node == 1
    plain = hydra_compose("hydra/launcher=submitit_slurm").hydra.launcher
    assert plain._target_ == launcher._target_


def test_optuna_preset_searches_lr_and_length():
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override
    from optuna.distributions import CategoricalDistribution, LogUniformDistribution

    listed = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "train.yaml").defaults)
    defaults = [next(iter(d)) if isinstance(d, dict) else d for d in listed]
    prefix = "" if "hparams_search" in defaults else "+"
    cfg = hydra_compose(f"{prefix}hparams_search=optuna", "model=tiny_t5")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    parsed = {o.get_key_element(): create_optuna_distribution_from_override(o)
              for o in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in sweeper.params.items()])}
    assert isinstance(parsed["optimizer.lr"], LogUniformDistribution)
    assert (parsed["optimizer.lr"].low, parsed["optimizer.lr"].high) == (1e-4, 1.0)
    assert isinstance(parsed["method.prompt_length"], CategoricalDistribution)
    assert list(parsed["method.prompt_length"].choices) == [1, 5, 20, 100]


def test_transfer_evaluation_equals_a_prompt_built_for_the_other_task(toy_sentiment):
    import lightning as L

    from promptlearn.backbones import build_tiny_llama
    from promptlearn.data.datamodule import TaskDataModule
    from promptlearn.inference.transfer import evaluate_on
    from promptlearn.methods.prompt_tuning import PromptTuning

    from conftest import ToySentiment, adamw

    backbone = build_tiny_llama()
    other = ToySentiment(name="toy_b", template="Q: {text} ?", label_words=(" bad", " good", " meh"))
    torch.manual_seed(0)
    trained = PromptTuning(backbone, toy_sentiment.info(), adamw(), prompt_length=3, init="random_uniform", init_range=1.0)
    reference = PromptTuning(backbone, other.info(), adamw(), prompt_length=3, init="random_uniform")
    reference.prompt.data.copy_(trained.prompt.data)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    transferred = evaluate_on(trained, TaskDataModule(other, backbone, eval_batch_size=8, max_train_examples=0), trainer)
    expected = trainer.test(reference, datamodule=TaskDataModule(other, backbone, eval_batch_size=8), verbose=False)[0]
    assert transferred == pytest.approx({k: float(v) for k, v in expected.items()})
    assert trained.task == toy_sentiment.info()  # the module is its own task's again


@pytest.mark.parametrize(("experiment", "axis", "values"), [
    ("offline_ablation_init", "method.init", ["random_uniform", "sampled_vocab", "class_label"]),
    ("offline_ablation_prompt_length", "method.prompt_length", ["1", "5", "20", "100", "150"]),
])
def test_offline_ablations_sweep_both_real_backbones_with_the_offline_prompt_tuning_settings(experiment, axis, values):
    axes = sweep_axes(experiment)
    assert axes["model"] == ["smollm2_135m", "gemma3_270m"] and axes["seed"] == ["0", "1", "2"]
    assert [str(v) for v in axes[axis]] == values
    assert len(sweep_jobs(experiment)) == 2 * len(values) * 3
    for job in covering_jobs(experiment):
        cfg = hydra_compose(f"experiment={experiment}", *job)
        chosen = dict(o.split("=", 1) for o in job)
        assert cfg.experiment_name == experiment and cfg.task.name == "rotten_tomatoes"
        assert cfg.model.name == chosen["model"] and cfg.hydra.runtime.choices.method == "prompt_tuning"
        assert cfg.trainer.max_steps == 100 and cfg.trainer.val_check_interval == 25 and cfg.optimizer.lr == 0.01
        assert str(getattr(cfg.method, axis.split(".")[1])) == chosen[axis]


def test_offline_scale_compares_prompt_tuning_model_tuning_and_prompt_design_at_both_real_backbones():
    axes = sweep_axes("offline_scale")
    assert axes["experiment/offline_method"] == ["prompt_design", "prompt_tuning", "model_tuning"]
    assert axes["model"] == ["smollm2_135m", "gemma3_270m"] and axes["seed"] == ["0", "1", "2"]
    assert len(sweep_jobs("offline_scale")) == 3 * 2 * 3
    for job in covering_jobs("offline_scale"):
        cfg = hydra_compose("experiment=offline_scale", *job)
        chosen = dict(o.split("=", 1) for o in job)
        method = cfg.hydra.runtime.choices.method
        assert cfg.model.name == chosen["model"] and cfg.task.name == "rotten_tomatoes"
        assert method == chosen["experiment/offline_method"] and cfg.trainer.max_steps == 300
        same_as_methods_sweep = hydra_compose("experiment=offline_methods", f"experiment/offline_method={method}", f"model={cfg.model.name}")
        assert cfg.method == same_as_methods_sweep.method and cfg.optimizer == same_as_methods_sweep.optimizer
        assert cfg.data == same_as_methods_sweep.data


def test_meta_training_keeps_its_meta_step_budget_on_any_trainer(compose_train):
    # trainer=gpu alone carries prompt tuning's 30,000 steps; a meta run must keep its own budget.
    assert compose_train(config_name="meta").trainer.max_steps == 200
    on_gpu = compose_train("trainer=gpu", config_name="meta").trainer
    assert (on_gpu.accelerator, on_gpu.max_steps, on_gpu.val_check_interval) == ("gpu", 200, 50)
    assert compose_train("trainer=gpu", "trainer.max_steps=20", config_name="meta").trainer.max_steps == 20


def test_metaprompting_gpu_recipe_is_second_order_maml_plus_plus_in_fp32(compose_train):
    paper = compose_train("meta_experiment=paper_gpu", config_name="meta")
    assert (paper.meta.first_order, paper.meta.inner_steps, paper.meta.per_step_loss_weights) == (False, 3, True)
    assert (paper.trainer.accelerator, paper.trainer.precision, paper.trainer.max_steps) == ("gpu", "32-true", 200)
    assert paper.model.name == "smollm2_135m" and paper.episodes.n_way == 2
    on_node = compose_train("meta_experiment=paper_gpu", "trainer=ddp", config_name="meta").trainer
    assert on_node.strategy._target_.endswith("DDPStrategy") and on_node.precision == "32-true"


def test_metaprompting_cpu_recipe_is_first_order_over_the_offline_roget_pool(compose_train):
    cpu = compose_train("meta_experiment=cpu", config_name="meta")
    assert (cpu.meta.first_order, cpu.meta.inner_steps, cpu.meta.per_step_loss_weights) == (True, 1, False)
    assert cpu.trainer.accelerator == "cpu" and cpu.episodes.tasks_per_step == len(cpu.meta_pool.meta_train)
    assert cpu.episodes.test_episodes >= 200 and cpu.episodes.n_way == 2 and cpu.episodes.k_shot == 4
    assert {t._target_ for split in ("meta_train", "meta_val", "meta_test") for t in cpu.meta_pool[split]} == {
        "promptlearn.data.tasks.roget.RogetTopics"}


def test_the_roget_ceiling_run_tunes_a_prompt_on_exactly_the_roget_meta_test_task(compose_train):
    meta_test = compose_train("meta_pool=roget", config_name="meta").meta_pool.meta_test
    ceiling = compose_train("experiment=meta_test_ceiling_roget", "experiment/offline_method=prompt_tuning")
    assert len(meta_test) == 1
    assert {k: v for k, v in ceiling.task.items() if k in meta_test[0]} == dict(meta_test[0])
    assert ceiling.method._target_.endswith("PromptTuning") and ceiling.model.name == "smollm2_135m"
    assert sweep_axes("meta_test_ceiling_roget") == {"experiment/offline_method": ["prompt_tuning"], "seed": [0]}


def test_meta_test_ceilings_tune_a_prompt_on_each_meta_test_task_of_the_bigbench_pool(compose_train):
    pool = compose_train(config_name="meta").meta_pool
    axes = sweep_axes("meta_test_ceilings")
    assert axes["task.task_name"] == [entry.task_name for entry in pool.meta_test]  # the same tasks, in order
    assert axes["experiment/offline_method"] == ["prompt_tuning"] and len(sweep_jobs("meta_test_ceilings")) == 3
    for name in axes["task.task_name"]:
        cfg = hydra_compose("experiment=meta_test_ceilings", f"task.task_name={name}")
        methods = hydra_compose("experiment=offline_methods_bigbench", f"task.task_name={name}")
        assert cfg.hydra.runtime.choices.method == "prompt_tuning" and cfg.task.skip_bad_rows
        assert cfg.method == methods.method and cfg.trainer.max_steps == methods.trainer.max_steps == 300
