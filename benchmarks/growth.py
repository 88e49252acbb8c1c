"""Growth: prompt-tuning training-step cost vs prompt length and vs batch size.

Each row is the real ``PromptTuning`` module's training step (forward, backward, AdamW step) on
Rotten Tomatoes batches: median step time, examples/s and peak tensor memory.

    python benchmarks/growth.py --model smollm2 --steps 2 --lengths 1 5 20 50 100 150 --batch-sizes 1 2 4 8 16 32
"""

from __future__ import annotations

import argparse

from common import (
    add_common_args, cycling, describe_run, frozen_step_flops, load_backbone, mfu, mib, print_table,
    prompt_tuning_module, rotten_tomatoes_batches, settle_args, side_by_side, to_device, training_phase,
)


def measure_step(backbone, args, prompt_length: int, batch_size: int) -> list[str]:
    module, optimizer = prompt_tuning_module(backbone, prompt_length, args.device)
    batches = [to_device(b, args.device) for b in rotten_tomatoes_batches(
        backbone, batch_size, args.warmup + args.steps, args.max_source_length)]
    result = side_by_side({"step": cycling(batches, training_phase(module, optimizer, "step"))},
                          args.steps, args.warmup, args.device)["step"]
    flops = sum(frozen_step_flops(backbone, b, prompt_length) for b in batches) / len(batches)
    return [str(prompt_length), str(batch_size), f"{result.seconds * 1e3:.0f}", f"{batch_size / result.seconds:.2f}",
            mib(result.peak_bytes), mfu(flops, result.seconds, args.device)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, steps=2)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1, 5, 20, 50, 100, 150])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    args = settle_args(parser.parse_args(argv))
    if args.quick:
        args.lengths, args.batch_sizes = [1, 5], [1, 2]
    backbone = load_backbone(args.model, args.device, args.dtype)
    columns = ["prompt length", "batch", "step ms (median)", "examples/s", "peak MiB", "MFU"]
    rows = [measure_step(backbone, args, length, args.batch_size) for length in args.lengths]
    print_table(f"cost vs prompt length ({describe_run(args)})", columns, rows)
    rows = [measure_step(backbone, args, args.prompt_length, size) for size in args.batch_sizes]
    print_table(f"cost vs batch size ({describe_run(args)})", columns, rows)


if __name__ == "__main__":
    main()
