"""The limit: training-step time over forward time, for prompt tuning and (for contrast) full fine-tuning.

forward = the module's ``training_step`` with autograd recording (as in training), graph then dropped;
fwd+bwd = forward + ``loss.backward()``; step = fwd+bwd + the optimizer step (AdamW).
A frozen backbone needs only the input-gradient half of the backward, so its ideal step/forward is
about 2.0; full fine-tuning also computes weight gradients, about 3.0. Target for prompt tuning: <= 2.2.

    python benchmarks/limit.py --model smollm2 --batch-size 8 --steps 5
"""

from __future__ import annotations

import argparse
import functools

import torch

from common import (
    add_common_args, cycling, describe_run, load_backbone, print_table, prompt_tuning_module,
    rotten_tomatoes_batches, settle_args, side_by_side, to_device, training_phase, verdict,
)
from promptlearn.data.tasks.rotten_tomatoes import RottenTomatoes
from promptlearn.methods.model_tuning import ModelTuning

PHASES = ("forward", "fwd+bwd", "step")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--no-full", action="store_true", help="skip the full fine-tuning contrast")
    args = settle_args(parser.parse_args(argv))
    backbone = load_backbone(args.model, args.device, args.dtype)
    batches = [to_device(b, args.device) for b in rotten_tomatoes_batches(
        backbone, args.batch_size, args.warmup + args.steps, args.max_source_length)]
    prompt_module, prompt_optimizer = prompt_tuning_module(backbone, args.prompt_length, args.device)
    methods = {"prompt tuning": (prompt_module, prompt_optimizer)}
    if not args.no_full:
        full = ModelTuning(load_backbone(args.model, args.device, args.dtype), RottenTomatoes().info(),
                           functools.partial(torch.optim.AdamW, lr=1e-5)).to(args.device)
        methods["full fine-tuning"] = (full, full.configure_optimizers())
    contenders = {}
    for name, (module, optimizer) in methods.items():
        for phase, hook in zip(PHASES, ("forward", "backward", "step")):
            contenders[f"{name}: {phase}"] = cycling(batches, training_phase(module, optimizer, hook))
    results = side_by_side(contenders, args.steps, args.warmup, args.device)
    rows = []
    for name in methods:
        forward, backward, step = (results[f"{name}: {phase}"].seconds for phase in PHASES)
        target = verdict(step / forward, 2.2, higher_is_better=False) if name == "prompt tuning" else f"{step / forward:.2f} (ideal ~3.0)"
        rows.append([name, f"{forward * 1e3:.0f}", f"{backward * 1e3:.0f}", f"{step * 1e3:.0f}",
                     f"{backward / forward:.2f}", target])
    print_table(f"step time / forward time ({describe_run(args)})",
                ["method", "forward ms", "fwd+bwd ms", "step ms", "fwd+bwd / forward", "step / forward (target)"], rows)


if __name__ == "__main__":
    main()
