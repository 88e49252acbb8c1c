"""Packed vs padded: the prompt-tuning training step with padding-free rows (the default) and without.

Both contenders are the real ``PromptTuning`` module, with the same prompt, on the same Rotten
Tomatoes batches, alternated step by step; only ``pack_sequences`` differs. Packed, a causal LM's
prompt is computed once per batch and each example attends to it as a cached prefix; padded, every
row recomputes it. On Gemma 3 the packed mask keeps the sliding-window layers' window. The losses
of the two are compared, as a check that they train the same thing.

    python benchmarks/packing_step.py --model gemma3_270m --lengths 1 20 100 150 --steps 3
"""

from __future__ import annotations

import argparse

import torch

from common import (
    add_common_args, cycling, describe_run, load_backbone, mib, print_table, prompt_tuning_module,
    rotten_tomatoes_batches, settle_args, side_by_side, to_device, training_phase,
)


def measure(backbone, args, prompt_length: int) -> list[str]:
    packed, packed_optimizer = prompt_tuning_module(backbone, prompt_length, args.device)
    padded, padded_optimizer = prompt_tuning_module(backbone, prompt_length, args.device)
    padded.load_state_dict(packed.state_dict())
    padded.scorer.pack_sequences = False
    batches = [to_device(b, args.device) for b in rotten_tomatoes_batches(
        backbone, args.batch_size, args.warmup + args.steps, args.max_source_length)]
    with torch.no_grad():
        gap = max(abs(float(packed.training_step(b, 0)) - float(padded.training_step(b, 0))) for b in batches)
    contenders = {
        "packed": cycling(batches, training_phase(packed, packed_optimizer, "step")),
        "padded": cycling(batches, training_phase(padded, padded_optimizer, "step")),
    }
    results = side_by_side(contenders, args.steps, args.warmup, args.device)
    p, q = results["packed"], results["padded"]
    return [str(prompt_length), f"{p.seconds * 1e3:.0f}", f"{q.seconds * 1e3:.0f}", f"{q.seconds / p.seconds:.2f}",
            mib(p.peak_bytes), mib(q.peak_bytes), f"{gap:.1e}"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, model="gemma3_270m", steps=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1, 20, 100, 150])
    args = settle_args(parser.parse_args(argv))
    if args.quick:
        args.lengths = [1, 5]
    backbone = load_backbone(args.model, args.device, args.dtype)
    rows = [measure(backbone, args, length) for length in args.lengths]
    print_table(f"prompt-tuning step, packed vs padded ({describe_run(args)})",
                ["prompt length", "packed ms", "padded ms", "speed-up packed", "packed MiB", "padded MiB",
                 "largest loss gap"], rows)


if __name__ == "__main__":
    main()
