"""Soft prompts to and from PEFT adapters (:mod:`promptlearn.prompts.peft_interop`), from the command line.

    python -m promptlearn.cli.peft export outputs/<run>/prompt.pt adapters/rte --base google/t5-base-lm-adapt
    python -m promptlearn.cli.peft import adapters/rte outputs/imported/prompt.pt --model t5_base_lm_adapt
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from promptlearn.cli.components import build
from promptlearn.cli.interpret import model_config
from promptlearn.cli.run import one_line_errors
from promptlearn.prompts.peft_interop import export_prompt_file, import_to_prompt_file


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m promptlearn.cli.peft", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="prompt.pt -> PEFT adapter folder")
    export.add_argument("prompt", type=Path)
    export.add_argument("output_dir", type=Path)
    export.add_argument("--base", help="base_model_name_or_path to record (the hub id of the backbone)")
    imported = commands.add_parser("import", help="PEFT adapter folder -> prompt.pt")
    imported.add_argument("adapter_dir", type=Path)
    imported.add_argument("output", type=Path)
    imported.add_argument("--model", required=True, help="model config name (conf/model/) of the adapter's backbone")
    return parser.parse_args(argv)


@one_line_errors
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "export":
        print(export_prompt_file(args.prompt, args.output_dir, args.base))
    else:
        print(import_to_prompt_file(args.adapter_dir, build(model_config(args.output, args.model)), args.output))


if __name__ == "__main__":
    main()
