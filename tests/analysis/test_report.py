"""promptlearn-report: a real tiny multirun feeds the tables and plots; aggregation checked against numpy."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from promptlearn.analysis import collect_runs, suite_average, summarize, to_markdown, write_report
from promptlearn.analysis.runs import combine
from promptlearn.analysis.wandb_runs import collect_wandb_runs
from promptlearn.utils.errors import DataError
from promptlearn.cli.report import main as report_main

SWEEP = ["model=tiny_t5,tiny_t5_wide", "method=prompt_tuning,model_tuning", "trainer=debug", "baseline=false",
         "data.max_train_examples=32", "data.max_val_examples=16", "data.max_test_examples=32"]


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory) -> Path:
    """2 model sizes x 2 methods, trained for real by a Hydra multirun of promptlearn-train."""
    folder = tmp_path_factory.mktemp("multirun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: threads only contend on a shared CPU
    done = subprocess.run([sys.executable, "-m", "promptlearn.cli.train", "-m", *SWEEP, f"hydra.sweep.dir={folder}"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def image_is_a_plot(path: Path) -> None:
    pixels = matplotlib.image.imread(path)[..., :3]
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 500
    assert len(colours) > 20  # lines, markers, text and antialiasing, not a blank canvas
    assert (pixels.std(axis=(0, 1)) > 0.05).any()


@pytest.mark.slow
def test_a_real_multirun_feeds_the_report(tiny_sweep):
    written = {p.name for p in map(Path, subprocess_free_report(tiny_sweep))}
    assert {"runs.csv", "runs.md", "summary.csv", "summary.md", "scaling.png"} <= written

    runs = pd.read_csv(tiny_sweep / "report" / "runs.csv")
    assert len(runs) == 4
    assert set(zip(runs["model"], runs["method"])) == {
        (m, k) for m in ("tiny_t5", "tiny_t5_wide") for k in ("prompt_tuning", "model_tuning")}
    for results_path in tiny_sweep.rglob("results.json"):  # every number comes from its run's own file
        results = json.loads(results_path.read_text())
        row = runs[runs["run"] == str(results_path.parent.relative_to(tiny_sweep))].iloc[0]
        assert row["test/score"] == pytest.approx(results["metrics"]["test/score"])
        assert row["trainable_params"] == results["trainable_params"]
    tuned = runs[runs["method"] == "model_tuning"]
    assert (tuned["trainable_params"] == tuned["total_params"]).all()
    sizes = runs.groupby("model")["backbone_params"].min()
    assert sizes["tiny_t5_wide"] > sizes["tiny_t5"]
    prompt = runs[runs["method"] == "prompt_tuning"]
    assert (prompt["backbone_params"] == prompt["total_params"] - prompt["trainable_params"]).all()

    summary = pd.read_csv(tiny_sweep / "report" / "summary.csv")
    assert len(summary) == 4 and (summary["seeds"] == 1).all()
    markdown = (tiny_sweep / "report" / "summary.md").read_text().splitlines()
    assert len(markdown) == 2 + 4 and markdown[0].startswith("| task | model | method |")
    image_is_a_plot(tiny_sweep / "report" / "scaling.png")


def subprocess_free_report(folder: Path) -> list[str]:
    """The console entry point, called in-process."""
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        report_main([str(folder)])
    return out.getvalue().split()


def write_run(root: Path, name: str, *, task="rte", model="t5_small_lm_adapt", method="prompt_tuning", seed=0,
              score=0.5, total=1000, trainable=10, length=100, init="class_label", extra: tuple[str, ...] = ()) -> None:
    """A finished run's folder; ``extra`` overrides (``method.init_range=0.1``) are set in its config too."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    results = {"task": task, "model": model, "method": method, "seed": seed, "trainable_params": trainable,
               "total_params": total, "train_steps": 5, "wall_time_s": 1.0,
               "metrics": {"test/score": score, "val/score": score + 0.01}, "baseline": {"test/score": 0.3}}
    (run / "results.json").write_text(json.dumps(results))
    config = OmegaConf.create({"experiment_name": "lester_scaling", "seed": seed, "method": {"prompt_length": length, "init": init},
                               "optimizer": {"lr": 0.3}, "data": {"batch_size": 32}, "trainer": {"max_steps": 30000}})
    for override in extra:
        key, value = override.split("=", 1)
        OmegaConf.update(config, key, OmegaConf.create({"v": value}).v if not value.replace(".", "").isdigit() else float(value), force_add=True)
    OmegaConf.save(config, run / ".hydra" / "config.yaml")
    overrides = [f"model={model}", f"task={task}", f"seed={seed}", "experiment=lester_scaling", *extra]
    OmegaConf.save(OmegaConf.create(overrides), run / ".hydra" / "overrides.yaml")


def test_seeds_collapse_into_mean_and_std_per_setting(tmp_path):
    scores = {0: 0.61, 1: 0.65, 2: 0.70}
    for seed, score in scores.items():
        write_run(tmp_path, f"a{seed}", seed=seed, score=score)
        write_run(tmp_path, f"b{seed}", seed=seed, score=score - 0.2, extra=("method.init_range=0.1",))
    summary = summarize(collect_runs(tmp_path), "test/score")
    assert len(summary) == 2  # the init_range override is a setting of its own, not another seed
    assert "method.init_range" in summary  # and the summary shows it, as the setting that varies
    plain = summary[summary["method.init_range"].isna()].iloc[0]
    assert plain["seeds"] == 3
    assert plain["test/score mean"] == pytest.approx(np.mean(list(scores.values())))
    assert plain["test/score std"] == pytest.approx(np.std(list(scores.values()), ddof=1))


def test_tasks_average_into_a_suite_score_only_when_complete(tmp_path):
    for seed in (0, 1):
        for task, score in (("rte", 0.6), ("cb", 0.8)):
            write_run(tmp_path, f"{task}{seed}", task=task, seed=seed, score=score + seed / 10, extra=(f"task={task}",))
    write_run(tmp_path, "lonely", task="rte", model="t5_base_lm_adapt", score=0.9, total=5000)  # no cb run
    table = suite_average(collect_runs(tmp_path), "test/score")
    assert table["task"].unique().tolist() == ["average"] and table["model"].unique().tolist() == ["t5_small_lm_adapt"]
    assert table.sort_values("seed")["test/score"].tolist() == pytest.approx([0.7, 0.8])


def test_ablation_sweeps_plot_length_and_init(tmp_path):
    for model, total in (("t5_small_lm_adapt", 60e6), ("t5_base_lm_adapt", 220e6)):
        for length in (1, 20, 100):
            for seed in (0, 1):
                write_run(tmp_path, f"{model}-{length}-{seed}", model=model, total=int(total), length=length, seed=seed,
                          score=0.5 + length / 1000 + seed / 100, trainable=length * 8)
        for init in ("random_uniform", "sampled_vocab"):
            write_run(tmp_path, f"{model}-{init}", model=model, total=int(total), init=init, score=0.55)
    written = {p.name for p in write_report(collect_runs(tmp_path), tmp_path / "report")}
    assert {"scaling.png", "prompt_length.png", "init.png"} <= written
    for name in ("scaling.png", "prompt_length.png", "init.png"):
        image_is_a_plot(tmp_path / "report" / name)


def test_wandb_runs_give_the_same_rows_as_local_files(tmp_path):
    write_run(tmp_path, "run", seed=2, score=0.75, extra=("method.init_range=0.1",))
    local = collect_runs(tmp_path).iloc[0]
    config = {"model/name": "t5_small_lm_adapt", "task/name": "rte", "method/name": "prompt_tuning", "seed": 2,
              "method/init_range": 0.1,
              "experiment_name": "lester_scaling", "method/prompt_length": 100, "method/init": "class_label",
              "optimizer/lr": 0.3, "data/batch_size": 32, "trainer/max_steps": 30000,
              "run/overrides": ["model=t5_small_lm_adapt", "task=rte", "seed=2", "method.init_range=0.1"]}
    summary = {"final/test/score": 0.75, "final/val/score": 0.76, "baseline/test/score": 0.3, "test/score": {"last": 0.75},
               "params/total": 1000, "params/trainable": 10, "trainer/global_step": 5}
    api = SimpleNamespace(runs=lambda path, filters: [SimpleNamespace(config=config, summary_metrics=summary,
                                                                      path=["team", "promptlearn", "abc"])])
    remote = collect_wandb_runs("team/promptlearn", group="lester_scaling", api=api).iloc[0]
    for column in ("task", "model", "method", "seed", "prompt_length", "init", "lr", "setting", "backbone_params",
                   "test/score", "val/score", "baseline/test/score", "experiment"):
        assert remote[column] == local[column], column


def test_markdown_tables_need_no_extra_dependency():
    table = pd.DataFrame({"model": ["a|b", "c"], "score": [0.51234, float("nan")], "params": [1000.0, 2.0]})
    assert to_markdown(table, digits=3).splitlines() == [
        "| model | score | params |", "|---|---:|---:|", "| a\\|b | 0.512 | 1000 |", "| c |  | 2 |"]


def test_bad_input_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(tmp_path / "missing")])
    assert exit_info.value.code == 2 and "is not a folder" in capsys.readouterr().err
    write_run(tmp_path, "run")
    with pytest.raises(SystemExit):
        report_main([str(tmp_path), "--metric", "test/f1"])
    assert "no run recorded 'test/f1'; choose one of ['test/score', 'val/score']" in capsys.readouterr().err


def test_a_trainer_axis_is_two_settings_not_two_seeds(tmp_path):
    for number, clip in enumerate(("0.001", "10.0")):
        write_run(tmp_path, f"{number}_clip", score=0.5 + number / 10, extra=(f"trainer.gradient_clip_val={clip}",))
    summary = summarize(collect_runs(tmp_path), "test/score")
    assert len(summary) == 2 and (summary["seeds"] == 1).all()
    assert sorted(summary["trainer.gradient_clip_val"]) == [0.001, 10.0]


def test_a_half_finished_sweep_names_its_missing_jobs(tmp_path, caplog):
    write_run(tmp_path, "0_done")
    (tmp_path / "1_running" / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"seed": 1}), tmp_path / "1_running" / ".hydra" / "config.yaml")
    with caplog.at_level("WARNING"):
        runs = collect_runs(tmp_path)
    assert runs.attrs["missing"] == ["1_running"] and "1_running" in caplog.text
    write_report(runs, tmp_path / "report")
    assert "1 jobs have no results.json yet: 1_running" in (tmp_path / "report" / "summary.md").read_text()


def test_figures_come_as_png_and_pdf(tmp_path):
    for method, score in (("prompt_tuning", 0.8), ("prefix_tuning", 0.7)):
        for seed in (0, 1):
            write_run(tmp_path, f"{method}{seed}", method=method, seed=seed, score=score + seed / 50)
    written = {p.name for p in write_report(collect_runs(tmp_path), tmp_path / "report")}
    assert {"methods.png", "methods.pdf"} <= written
    image_is_a_plot(tmp_path / "report" / "methods.png")
    assert (tmp_path / "report" / "methods.pdf").read_bytes().startswith(b"%PDF")


def test_several_tasks_get_a_method_figure_each(tmp_path):
    for task, scores in (("rte", (0.8, 0.7)), ("boolq", (0.6, 0.65))):
        for method, score in zip(("prompt_tuning", "prefix_tuning"), scores):
            write_run(tmp_path, f"{task}_{method}", task=task, method=method, score=score)
    write_run(tmp_path, "rte_model_tuning", task="rte", method="model_tuning", score=0.9)  # on one task only
    written = {p.name for p in write_report(collect_runs(tmp_path), tmp_path / "report")}
    assert {"methods_rte.png", "methods_boolq.png", "methods.png"} <= written  # methods.png: the 2-task average
    for task in ("rte", "boolq"):
        image_is_a_plot(tmp_path / "report" / f"methods_{task}.png")
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    average = summary[summary["task"] == "average"]
    assert sorted(average["method"]) == ["prefix_tuning", "prompt_tuning"]  # model tuning missed boolq
    assert average.set_index("method").loc["prompt_tuning", "test/score mean"] == pytest.approx(0.7)


def test_style_words_percentages_and_ticks():
    from promptlearn.analysis import style

    assert style.metric_label("test/score") == "Test score"
    assert style.metric_label("val/f1_macro") == "Validation F1 macro"
    assert sorted(["len 16", "len 2", "len 100"], key=style.natural_key) == ["len 2", "len 16", "len 100"]
    fig, ax = style.figure()
    ax.plot([1, 5, 20, 100, 150], [0.5, 0.6, 0.7, 0.72, 0.71])
    style.log_axis(ax, [1, 5, 20, 100, 150])
    style.percent_axis(ax, [0.5, 0.72])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "5", "20", "100", "150"]
    assert len(ax.xaxis.get_minor_locator().tick_values(1, 150)) == 0
    assert ax.yaxis.get_major_formatter()(0.5, 0).endswith("%")
    assert style.spread_note([3, 3]) == "mean ± 1 std over 3 seeds"


def test_an_optuna_search_is_reported_by_trial(tmp_path):
    for trial, (lr, score) in enumerate(((0.0030958233423849, 0.6), (0.031, 0.75), (0.3, 0.55))):
        write_run(tmp_path, f"{trial}_trial", score=score, extra=(f"optimizer.lr={lr}",))
    (tmp_path / "optimization_results.yaml").write_text("name: optuna\nbest_params: {optimizer.lr: 0.031}\n")
    from promptlearn.analysis.report import is_search

    assert is_search(tmp_path)
    written = {p.name for p in write_report(collect_runs(tmp_path), tmp_path / "report", search=True)}
    assert {"trials.csv", "trials.md", "trials.png", "trials.pdf"} <= written
    trials = pd.read_csv(tmp_path / "report" / "trials.csv")
    assert trials["trial"].tolist() == [0, 1, 2] and trials["lr"].tolist() == [0.0031, 0.031, 0.3]
    assert (tmp_path / "report" / "trials.md").read_text().startswith("Best trial: 1, val/score = 0.7600")


def test_wandb_report_without_credentials_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        report_main(["--wandb", "team/promptlearn", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: reading runs from W&B needs a login")


@pytest.mark.slow
def test_a_sweep_with_a_trainer_axis_reports_every_setting_with_its_seeds(tmp_path):
    """2 methods x 2 lengths x 2 seeds x 2 gradient clips, trained for real: 8 settings of 2 seeds each."""
    sweep = ["model=tiny_llama", "method=prompt_tuning,p_tuning", "method.prompt_length=2,8", "seed=0,1",
             "trainer.gradient_clip_val=0.5,5.0", "trainer=debug", "data.max_train_examples=16",
             "data.max_val_examples=8", "data.max_test_examples=16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "promptlearn.cli.train", "-m", *sweep, f"hydra.sweep.dir={tmp_path}"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    written = {p.name for p in map(Path, subprocess_free_report(tmp_path))}
    assert {"summary.md", "prompt_length.png", "prompt_length.pdf", "methods.png"} <= written
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert len(summary) == 8 and (summary["seeds"] == 2).all()
    assert set(zip(summary["method"], summary["prompt_length"], summary["trainer.gradient_clip_val"])) == {
        (m, n, c) for m in ("prompt_tuning", "p_tuning") for n in (2, 8) for c in (0.5, 5.0)}
    runs = collect_runs(tmp_path)
    for _, row in summary.iterrows():
        members = runs[(runs["method"] == row["method"]) & (runs["prompt_length"] == row["prompt_length"])
                       & (runs["config.trainer.gradient_clip_val"] == row["trainer.gradient_clip_val"])]
        assert row["test/score mean"] == pytest.approx(members["test/score"].mean())
    image_is_a_plot(tmp_path / "report" / "prompt_length.png")


def test_a_runs_table_from_an_earlier_report_stands_in_for_its_run_folders(tmp_path):
    """Seeds whose run folders are gone come back from the runs.csv their report wrote, and collapse
    with new seeds of the same setting."""
    for seed, score in ((0, 0.61), (1, 0.65)):
        write_run(tmp_path / "old", f"a{seed}", seed=seed, score=score)
        write_run(tmp_path / "old", f"b{seed}", seed=seed, score=score - 0.2, extra=("method.init_range=0.1",))
    write_report(collect_runs(tmp_path / "old"), tmp_path / "old_report")
    write_run(tmp_path / "new", "a2", seed=2, score=0.70)
    runs = combine([collect_runs(tmp_path / "old_report" / "runs.csv"), collect_runs(tmp_path / "new")])
    summary = summarize(runs, "test/score").sort_values("test/score mean")
    assert summary["seeds"].tolist() == [2, 3]
    assert summary["test/score mean"].tolist() == pytest.approx([0.43, np.mean([0.61, 0.65, 0.70])])
    direct = summarize(collect_runs(tmp_path / "old"), "test/score")
    reread = summarize(collect_runs(tmp_path / "old_report" / "runs.csv"), "test/score")
    assert reread["test/score mean"].tolist() == pytest.approx(direct["test/score mean"].tolist())


def test_a_run_given_by_its_folder_and_by_a_runs_table_counts_once(tmp_path, caplog):
    for seed, score in ((0, 0.61), (1, 0.65)):
        write_run(tmp_path / "old", f"a{seed}", seed=seed, score=score)
    write_report(collect_runs(tmp_path / "old"), tmp_path / "report")
    with caplog.at_level(logging.WARNING):
        runs = combine([collect_runs(tmp_path / "report" / "runs.csv"), collect_runs(tmp_path / "old")])
    assert len(runs) == 2 and "2 run(s) given twice, counted once" in caplog.text
    summary = summarize(runs, "test/score")
    assert summary["seeds"].tolist() == [2]
    assert summary["test/score std"].iloc[0] == pytest.approx(np.std([0.61, 0.65], ddof=1))


def test_a_summary_table_is_no_runs_table(tmp_path):
    write_run(tmp_path / "old", "a0")
    write_report(collect_runs(tmp_path / "old"), tmp_path / "report")
    with pytest.raises(DataError, match="lacks the columns .*not its summary"):
        collect_runs(tmp_path / "report" / "summary.csv")


def test_the_no_prompt_line_is_the_trained_runs_baseline_not_a_few_shot_prompt_s():
    from promptlearn.analysis.plots import _baseline_value

    runs = pd.DataFrame({"trainable_params": [10, 10, 0], "test/score": [0.8, 0.82, 0.5],
                         "baseline/test/score": [0.78, 0.78, 0.5]})  # the last: a 4-shot prompt's own score
    assert _baseline_value(runs, "test/score") == pytest.approx(0.78)
    untrained = runs[runs["trainable_params"] == 0]
    assert _baseline_value(untrained, "test/score") == pytest.approx(0.5)  # nothing trained: what was measured


def test_where_keeps_only_the_runs_that_meet_every_condition(tmp_path, capsys):
    for seed in (0, 1):
        for method, score in (("prompt_tuning", 0.6), ("model_tuning", 0.8), ("prompt_design", 0.4)):
            write_run(tmp_path / "sweep", f"{method}{seed}", method=method, seed=seed, score=score + seed / 100)
    write_report(collect_runs(tmp_path / "sweep"), tmp_path / "first")  # the runs come back from its runs.csv
    out = tmp_path / "report"
    report_main([str(tmp_path / "first" / "runs.csv"), "--where", "method=prompt_tuning,model_tuning",
                 "--where", "seed=1", "--out", str(out)])
    kept = pd.read_csv(out / "runs.csv")
    assert sorted(zip(kept["method"], kept["seed"], kept["test/score"])) == [("model_tuning", 1, 0.81), ("prompt_tuning", 1, 0.61)]
    for bad, message in (("methd=pez", "the runs have no column 'methd'"), ("method", "write COLUMN=VALUE"),
                         ("method=pez", "no run meets --where method=pez")):
        with pytest.raises(SystemExit) as exit_info:
            report_main([str(tmp_path / "sweep"), "--where", bad, "--out", str(tmp_path / "bad")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_the_scaling_figure_marks_each_backbone_s_own_no_prompt_score(tmp_path, monkeypatch):
    from promptlearn.analysis import plots

    for model, size, no_prompt in (("small", 100, 0.78), ("large", 300, 0.66)):
        for method, trainable in (("prompt_tuning", 10), ("prompt_design", 0)):
            write_run(tmp_path, f"{model}_{method}", model=model, method=method, total=size, trainable=trainable)
            results = json.loads((tmp_path / f"{model}_{method}" / "results.json").read_text())
            results["baseline"] = {"test/score": no_prompt}
            (tmp_path / f"{model}_{method}" / "results.json").write_text(json.dumps(results))
    runs = collect_runs(tmp_path)
    drawn = {}
    monkeypatch.setattr(plots.style, "save", lambda fig, path: drawn.setdefault("fig", fig) and [])
    plots.plot_scaling(runs, "test/score", tmp_path / "scaling.png")
    (ax,) = drawn["fig"].axes
    (no_prompt,) = [line for line in ax.get_lines() if line.get_label().startswith("No prompt")]
    assert no_prompt.get_ydata().tolist() == pytest.approx([0.78, 0.66])  # not one line at their mean, 0.72


def test_an_init_figure_over_two_backbones_draws_each_one_s_no_prompt_line(tmp_path, monkeypatch):
    from promptlearn.analysis import plots

    for model, no_prompt in (("small", 0.78), ("large", 0.66)):
        for init in ("random_uniform", "class_label"):
            write_run(tmp_path, f"{model}_{init}", model=model, init=init)
            results = json.loads((tmp_path / f"{model}_{init}" / "results.json").read_text())
            results["baseline"] = {"test/score": no_prompt}
            (tmp_path / f"{model}_{init}" / "results.json").write_text(json.dumps(results))
    drawn = {}
    monkeypatch.setattr(plots.style, "save", lambda fig, path: drawn.setdefault("fig", fig) and [])
    plots.plot_init(collect_runs(tmp_path), "test/score", tmp_path / "init.png")
    (ax,) = drawn["fig"].axes
    lines = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if line.get_label().startswith("No prompt")}
    assert lines == pytest.approx({"No prompt (large)": 0.66, "No prompt (small)": 0.78})


def test_percent_ticks_read_their_own_values():
    from promptlearn.analysis import style

    for low, high in ((0.66, 0.84), (0.5, 0.72), (0.781, 0.812)):
        fig, ax = style.figure()
        ax.plot([0, 1], [low, high])
        style.percent_axis(ax, [low, high])
        ticks = ax.yaxis.get_major_locator().tick_values(low, high)
        labels = [ax.yaxis.get_major_formatter()(t, i) for i, t in enumerate(ticks)]
        assert [float(label.replace("\\", "").rstrip("%")) for label in labels] == pytest.approx([100 * t for t in ticks])
