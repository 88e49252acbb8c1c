"""promptlearn-report: tables and plots of a sweep, from its run folders or from a W&B project.

    promptlearn-report multirun/2025-01-31_12-00-00             # writes multirun/<...>/report/
    promptlearn-report multirun/a multirun/b --out reports/lester --metric val/score
    promptlearn-report --wandb my-team/promptlearn --group lester_scaling --out reports/lester
    promptlearn-report multirun/offline_methods/<date> --page docs/results.md   # also its generated section
    promptlearn-report docs/results/runs.csv multirun/more_seeds --page docs/results.md  # old runs, from their table
    promptlearn-report docs/results/runs.csv --where method=prompt_tuning,model_tuning --where task=rotten_tomatoes --out r
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from promptlearn.analysis import collect_runs, write_report
from promptlearn.analysis.page import generated_section, update_page
from promptlearn.analysis.report import default_metric, is_search
from promptlearn.analysis.tables import summarize
from promptlearn.analysis.runs import combine, select_runs
from promptlearn.cli.run import one_line_errors
from promptlearn.utils.errors import ConfigError


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="promptlearn-report", description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="*", type=Path, help="folders holding run directories with results.json, "
                        "or runs.csv tables an earlier report wrote")
    parser.add_argument("--out", type=Path, help="where to write the report (default: <first sweep>/report)")
    parser.add_argument("--metric", help="metric to tabulate and plot (default: test/score, else val/score)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read the finished runs of this W&B project")
    parser.add_argument("--group", help="with --wandb: only this group (an experiment name)")
    parser.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE...]",
                        help="only the runs whose COLUMN (of runs.csv: method, model, seed, config.method.init, ...) "
                        "is one of the values (an empty value: runs without that setting, as in config.method.num_shots=,0); "
                        "repeat for several conditions")
    parser.add_argument("--page", type=Path, help="a markdown page (docs/results.md) whose generated section is "
                        "rewritten from this report; the figures go to <page folder>/<page name>/ unless --out")
    return parser.parse_args(argv)


def report(args: argparse.Namespace) -> list[Path]:
    if not args.sweeps and not args.wandb:
        raise ConfigError("give at least one sweep folder, or --wandb ENTITY/PROJECT")
    if not args.sweeps and args.out is None:
        raise ConfigError("with --wandb alone, say where to write the report with --out")
    tables = [collect_runs(folder) for folder in args.sweeps]
    if args.wandb:
        from promptlearn.analysis.wandb_runs import collect_wandb_runs

        tables.append(collect_wandb_runs(args.wandb, group=args.group))
    if args.page is not None and args.page.suffix != ".md":
        raise ConfigError(f"--page {args.page}: give a markdown file, such as docs/results.md")
    runs = select_runs(combine(tables), args.where)
    out = args.out or (args.page.with_suffix("") if args.page else args.sweeps[0] / "report")
    search = bool(args.sweeps) and all(is_search(folder) for folder in args.sweeps)
    written = write_report(runs, out, metric=args.metric, search=search)
    if args.page is not None:
        metric = args.metric or default_metric(runs)
        command = "promptlearn-report " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)
        section = generated_section(runs, summarize(runs, metric), metric, written, args.page, command)
        written.append(update_page(args.page, section))
    return written


@one_line_errors
def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    args.argv = None if argv is None else list(argv)
    for path in report(args):
        print(path)


if __name__ == "__main__":
    main()
