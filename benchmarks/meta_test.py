"""MetaPrompting's meta-test: (episode, init) pairs adapted together vs one pair at a time.

Both adapt the meta-learned prompt and every standard init (random_uniform, sampled_vocab,
class_label) on each episode's support set, first order, ``eval_inner_steps`` SGD steps, and score
the query set: what ``promptlearn-meta`` does at meta-test. "One at a time" is the loop before
batching (``meta.eval_tasks_per_pass=1``): one backbone pass per pair per inner step. "Together"
stacks ``--pairs-per-pass`` pairs' support sets into one batch, each row under its own pair's
prompt, so an inner step is one pass for all of them, and the query scores one more. The episodes
are Rotten Tomatoes 2-way 4-shot (8 query examples per class), as texts of real length. Reported:
episodes per second (median over repetitions), the speed-up, peak tensor memory, and whether every pair's accuracy is
the same in both.

    python benchmarks/meta_test.py --model tiny_llama --episodes 16 --steps 3
    python benchmarks/meta_test.py --model smollm2 --episodes 8 --steps 2 --warmup 0
"""

from __future__ import annotations

import argparse
import functools

import torch

from common import add_common_args, describe_run, load_backbone, mib, print_table, side_by_side, settle_args, verdict
from promptlearn.data.episode_data import EpisodeDataModule
from promptlearn.data.episodes import TaskSource
from promptlearn.data.tasks.rotten_tomatoes import RottenTomatoes
from promptlearn.meta.maml import MetaPromptTuning
from promptlearn.meta.meta_test import META_INIT
from promptlearn.meta.toy import keyword_family


def test_episodes(backbone, count: int, shots: int, max_source_length: int) -> list[dict]:
    pools = {"meta_train": [TaskSource(t) for t in keyword_family(range(1))],
             "meta_test": [TaskSource(RottenTomatoes())]}
    data = EpisodeDataModule(pools, backbone, n_way=2, k_shot=shots, query_shots=2 * shots, test_episodes=count,
                             eval_batch_episodes=count, tasks_per_step=1, max_field_tokens=max_source_length,
                             max_source_length=max_source_length + 16)
    return [episode for batch in data.test_dataloader() for episode in batch]


def meta_test(module: MetaPromptTuning, episodes: list[dict], pairs_per_pass: int, out: list):
    """The meta-test of ``episodes``, as ``MetaPromptTuning.test_step`` runs it; the accuracies go to ``out``."""
    names = (META_INIT, *module.eval_inits)

    def run():
        module.eval_tasks_per_pass = pairs_per_pass
        starts, pairs, lrs = [], [], []
        for episode in episodes:
            for name in names:
                starts.append(module.prompt if name == META_INIT else module.baseline_prompt(name, episode))
                pairs.append(episode)
                lrs.append(module.base_inner_lr)
        out[:] = module.adapted_accuracies(starts, pairs, lrs).tolist()
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, model="tiny_llama", steps=3)
    parser.add_argument("--episodes", type=int, default=16, help="meta-test episodes per timed call")
    parser.add_argument("--shots", type=int, default=4, help="support examples per class (query: twice as many)")
    parser.add_argument("--inner-steps", type=int, default=3)
    parser.add_argument("--inner-lr", type=float, default=0.3)
    parser.add_argument("--pairs-per-pass", type=int, default=32, help="meta.eval_tasks_per_pass of 'together'")
    args = settle_args(parser.parse_args(argv))
    if args.quick:
        args.episodes, args.shots, args.inner_steps = 2, 2, 1
    backbone = load_backbone(args.model, args.device, args.dtype)
    episodes = test_episodes(backbone, args.episodes, args.shots, args.max_source_length)
    module = MetaPromptTuning(backbone, functools.partial(torch.optim.AdamW, lr=0.01), prompt_length=args.prompt_length,
                              inner_steps=args.inner_steps, inner_lr=args.inner_lr, first_order=True).to(args.device)
    alone, together = [], []
    results = side_by_side({"one at a time": meta_test(module, episodes, 1, alone),
                            "together": meta_test(module, episodes, args.pairs_per_pass, together)},
                           args.steps, args.warmup, args.device)
    one, many = results["one at a time"], results["together"]
    pairs = len(episodes) * (1 + len(module.eval_inits))
    rows = [["one pair at a time (before)", f"{len(episodes) / one.seconds:.3f}", f"{one.seconds:.2f}", "1.00",
             mib(one.peak_bytes)],
            [f"{args.pairs_per_pass} pairs per pass", f"{len(episodes) / many.seconds:.3f}", f"{many.seconds:.2f}",
             verdict(one.seconds / many.seconds, 10.0), mib(many.peak_bytes)]]
    same = "yes" if alone == together else f"NO: {sum(a != b for a, b in zip(alone, together))} of {pairs} differ"
    print_table(f"meta-test, {len(episodes)} episodes x {1 + len(module.eval_inits)} inits, 2-way {args.shots}-shot, "
                f"{args.inner_steps} inner steps ({describe_run(args)})",
                ["meta-test", "episodes/s", "seconds", "speed-up", "peak MiB"], rows,
                caption=f"every pair's query accuracy the same in both: {same}")


if __name__ == "__main__":
    main()
