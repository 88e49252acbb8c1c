"""Evaluation speed: rank classification vs generation-based evaluation, in examples/s.

Rank: the module's ``choice_scores`` (for one-token label words of a causal LM, one forward over the
gold batch scores every choice) and the best choice. Generation: ``generate_texts`` (greedy, stopping at EOS) and matching
the text to a label word, twice: with the method's default ``max_new_tokens`` (32, what a
generation-evaluated run uses) and with the longest label word's token count (the bound most
favourable to generation, which only a run that knows its labels could set). Same module, prompt, examples and batch size, under ``no_grad``.
Target: rank >= 3x generation's examples/s.

Generation's prefill, at the default ``max_new_tokens``: decoding from a cache computed padding-free
with the prompt run once (``packed``, the default), with only the prompt run once (``shared``), and
``generate``'s own padded prefill, which recomputes the prompt for every row (``padded``). The
outputs are checked equal token for token. Target: packed >= 2x padded's examples/s.

    python benchmarks/eval_modes.py --model smollm2 --batch-size 32 --steps 5
"""

from __future__ import annotations

import argparse

import torch

from common import (
    add_common_args, cycling, describe_run, load_backbone, print_table, prompt_tuning_module,
    rotten_tomatoes_batches, settle_args, side_by_side, to_device, verdict,
)
from promptlearn.methods.scoring import best_choice
from promptlearn.metrics import match_choice


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, batch_size=32)
    args = settle_args(parser.parse_args(argv))
    backbone = load_backbone(args.model, args.device, args.dtype)
    module, _ = prompt_tuning_module(backbone, args.prompt_length, args.device)
    module.eval()
    count = args.warmup + args.steps
    rank_batches = [to_device(b, args.device) for b in rotten_tomatoes_batches(
        backbone, args.batch_size, count, args.max_source_length, split="validation", train=False)]
    gen_batches = [to_device(b, args.device) for b in rotten_tomatoes_batches(
        backbone, args.batch_size, count, args.max_source_length, split="validation", train=False, eval_mode="generate")]
    default_new_tokens = module.scorer.max_new_tokens
    label_tokens = max(len(backbone.tokenizer(w, add_special_tokens=False).input_ids) for w in module.task.label_words)

    @torch.no_grad()
    def rank(batch: dict) -> list[int]:
        scores, _, _ = module.choice_scores(batch)
        return best_choice(scores, batch["choice_counts"]).tolist()

    def texts(batch: dict, max_new_tokens: int, prefill: str = "packed") -> list[str]:
        module.scorer.max_new_tokens, module.scorer.generation_prefill = max_new_tokens, prefill
        return module.generate_texts(batch["gen_input_ids"], batch["gen_attention_mask"])

    def generate(max_new_tokens: int, prefill: str = "packed"):
        def run(batch: dict) -> list[int]:
            return [match_choice(t, c) for t, c in zip(texts(batch, max_new_tokens, prefill), batch["choices"])]
        return run

    for prefill in ("shared", "padded"):  # the contenders must agree before their speeds mean anything
        if texts(gen_batches[0], default_new_tokens, prefill) != texts(gen_batches[0], default_new_tokens):
            raise SystemExit(f"generation with prefill '{prefill}' differs from 'packed' on the first batch")
    contenders = {
        "rank classification": cycling(rank_batches, rank),
        f"generation, max_new_tokens={default_new_tokens}": cycling(gen_batches, generate(default_new_tokens)),
        f"generation, max_new_tokens={label_tokens}": cycling(gen_batches, generate(label_tokens)),
        f"generation, max_new_tokens={default_new_tokens}, shared prefill": cycling(
            gen_batches, generate(default_new_tokens, "shared")),
        f"generation, max_new_tokens={default_new_tokens}, padded prefill": cycling(
            gen_batches, generate(default_new_tokens, "padded")),
    }
    results = side_by_side(contenders, args.steps, args.warmup, args.device)
    rows = [[name, f"{r.seconds * 1e3:.0f}", f"{args.batch_size / r.seconds:.1f}"] for name, r in results.items()]
    print_table(f"evaluation ({describe_run(args)})", ["mode", "batch ms (median)", "examples/s"], rows)
    rank_seconds = results["rank classification"].seconds
    print_table("rank / generation, examples/s", ["generation setting", "ratio (target)"], [
        [name, verdict(r.seconds / rank_seconds, 3.0)] for name, r in results.items()
        if name.startswith("generation") and not name.endswith("prefill")
    ])
    packed = results[f"generation, max_new_tokens={default_new_tokens}"].seconds
    print_table("packed prefill / other prefills, examples/s", ["prefill", "ratio (target)"], [
        ["shared prompt once", f"{results[f'generation, max_new_tokens={default_new_tokens}, shared prefill'].seconds / packed:.2f}"],
        ["padded (generate's own)", verdict(results[f"generation, max_new_tokens={default_new_tokens}, padded prefill"].seconds / packed, 2.0)],
    ])


if __name__ == "__main__":
    main()
