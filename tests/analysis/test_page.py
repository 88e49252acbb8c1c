"""promptlearn-report --page: the generated section of a results page, rewritten in place, the prose kept."""

from __future__ import annotations

import pytest

from promptlearn.analysis.page import BEGIN, END
from promptlearn.cli.report import main as report_main
from test_report import image_is_a_plot, write_run


def sweep(root, scores: dict[str, list[float]]) -> None:
    for method, per_seed in scores.items():
        for seed, score in enumerate(per_seed):
            write_run(root, f"{method}_seed{seed}", task="rotten_tomatoes", model="smollm2_135m", method=method,
                      seed=seed, score=score, trainable=100 if method != "model_tuning" else 1000,
                      length=20 if method == "prompt_tuning" else 10)


def test_the_page_holds_mean_and_std_per_method_and_keeps_its_prose(tmp_path):
    runs, page = tmp_path / "multirun", tmp_path / "docs" / "results.md"
    sweep(runs, {"prompt_tuning": [0.80, 0.84, 0.82], "model_tuning": [0.90, 0.90, 0.93]})
    page.parent.mkdir()
    page.write_text(f"# Results\n\nHow the defaults were chosen.\n\n{BEGIN}\nstale table\n{END}\n\n## Notes\nkept\n")

    report_main([str(runs), "--page", str(page)])
    text = page.read_text()
    assert "stale table" not in text and "How the defaults were chosen." in text and text.endswith("## Notes\nkept\n")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert f"`promptlearn-report {runs} --page {page}`" in text
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in text.splitlines() if line.startswith("| rotten_tomatoes")}
    assert rows["prompt_tuning"][4] == "82.0 ± 2.0" and rows["model_tuning"][4] == "91.0 ± 1.7"
    assert rows["prompt_tuning"][3] == "3" and rows["prompt_tuning"][5] == "30.0"  # seeds, no-prompt baseline
    assert rows["model_tuning"][6] == "1,000" and rows["model_tuning"][2] == ""  # no setting varies
    assert "![methods](results/methods.png)" in text
    image_is_a_plot(tmp_path / "docs" / "results" / "methods.png")

    assert not (tmp_path / "docs" / "results" / "prompt_length.png").exists()  # lengths differ by method only

    sweep(runs, {"p_tuning": [0.7]})  # a rerun replaces the section, never appends a second one
    report_main([str(runs), "--page", str(page)])
    again = page.read_text()
    assert again.count(BEGIN) == 1 and "| p_tuning |" in again and "How the defaults were chosen." in again


def test_a_new_page_is_started_and_a_wrong_suffix_is_refused(tmp_path, capsys):
    runs = tmp_path / "multirun"
    sweep(runs, {"prompt_tuning": [0.8]})
    report_main([str(runs), "--page", str(tmp_path / "new.md")])
    assert (tmp_path / "new.md").read_text().startswith("# Results\n\n" + BEGIN)
    with pytest.raises(SystemExit):
        report_main([str(runs), "--page", str(tmp_path / "results.html")])
    assert "give a markdown file" in capsys.readouterr().err
