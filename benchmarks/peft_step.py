"""Prompt-tuning training step: promptlearn's PromptTuning vs PEFT's prompt tuning, side by side.

Same backbone weights, batches (Rotten Tomatoes, classification targets), prompt length and optimizer
(AdamW, LR 0.01). Our side is the real ``PromptTuning`` module's ``training_step`` + backward +
optimizer step; PEFT's is ``get_peft_model(PromptTuningConfig)`` with its standard loss (labels with
-100), on the model as transformers builds it. Where promptlearn's backbone loader changes the model
(T5.1.1's activation, see ``fuse_activations``), PEFT also runs on promptlearn's backbone, so the
table separates that from the step itself. Target: >= 1.2x PEFT's examples/s at equal or lower peak memory.

    python benchmarks/peft_step.py --model smollm2 --batch-size 8 --steps 5
    python benchmarks/peft_step.py --model t5_base --batch-size 8 --steps 5
"""

from __future__ import annotations

import argparse

import torch
from peft import PromptTuningConfig, TaskType, get_peft_model

from common import (
    add_common_args, cycling, describe_run, frozen_step_flops, load_backbone, mfu, mib, print_table,
    prompt_tuning_module, rotten_tomatoes_batches, settle_args, side_by_side, stock_activations, to_device,
    training_phase, verdict,
)

PEFT_FUSED = "peft on promptlearn's backbone"


def peft(backbone, args):
    task_type = TaskType.SEQ_2_SEQ_LM if backbone.is_encoder_decoder else TaskType.CAUSAL_LM
    model = get_peft_model(backbone.model, PromptTuningConfig(task_type=task_type, num_virtual_tokens=args.prompt_length))
    model.to(args.device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.01)

    def step(batch):
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    args = settle_args(parser.parse_args(argv))
    ours_backbone = load_backbone(args.model, args.device, args.dtype)
    peft_backbone = load_backbone(args.model, args.device, args.dtype)  # PEFT wraps its own copy
    fused_by_promptlearn = stock_activations(peft_backbone.model)
    batches = [to_device(b, args.device) for b in rotten_tomatoes_batches(
        ours_backbone, args.batch_size, args.warmup + args.steps, args.max_source_length)]
    module, optimizer = prompt_tuning_module(ours_backbone, args.prompt_length, args.device)
    steps = {"promptlearn": training_phase(module, optimizer, "step"), "peft": peft(peft_backbone, args)}
    if fused_by_promptlearn:
        steps[PEFT_FUSED] = peft(load_backbone(args.model, args.device, args.dtype), args)
    results = side_by_side({name: cycling(batches, fn) for name, fn in steps.items()}, args.steps, args.warmup, args.device)
    flops = sum(frozen_step_flops(ours_backbone, b, args.prompt_length) for b in batches) / len(batches)
    rows = [
        [name, f"{r.seconds * 1e3:.0f}", f"{args.batch_size / r.seconds:.2f}", mib(r.peak_bytes), mfu(flops, r.seconds, args.device)]
        for name, r in results.items()
    ]
    print_table(f"prompt-tuning training step ({describe_run(args)})",
                ["contender", "step ms (median)", "examples/s", "peak MiB", "MFU"], rows)
    ours_r, peft_r = results["promptlearn"], results["peft"]
    speedup = peft_r.seconds / ours_r.seconds
    resolvable = min(ours_r.peak_bytes, peft_r.peak_bytes) >= 2**20
    memory = verdict(ours_r.peak_bytes / peft_r.peak_bytes, 1.0, higher_is_better=False) if resolvable else "n/a (< 1 MiB)"
    rows = [["throughput", verdict(speedup, 1.2)], ["peak memory", memory]]
    if PEFT_FUSED in results:
        rows.append([f"throughput vs {PEFT_FUSED}", f"{results[PEFT_FUSED].seconds / ours_r.seconds:.2f}"])
    print_table("promptlearn / PEFT", ["measure", "ratio (target)"], rows)


if __name__ == "__main__":
    main()
