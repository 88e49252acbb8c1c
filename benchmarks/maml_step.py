"""MAML meta-step: promptlearn's ``MetaPromptTuning`` vs a plain per-task autograd implementation.

All take one meta-step over the same episodes (toy keyword tasks, N-way K-shot): for each task,
k inner SGD steps on the support set, the query loss of the adapted prompt, backward into the
initial prompt, then one AdamW step. Ours, twice: the tasks batched into one backbone pass per
inner step (``batched_meta_loss``, the default: what vmap over tasks would give) and task by task
(``meta_loss``, ``torch.func.grad`` inner loop, one task's graph at a time). The plain one loops
``torch.autograd.grad(..., create_graph=not first_order)`` task by task. Median time and peak tensor
memory, first and second order, k = 1, 3, 5; speed-up and memory ratio are ours over plain.

    python benchmarks/maml_step.py --model tiny_llama --steps 5
"""

from __future__ import annotations

import argparse
import functools

import torch
import torch.nn.functional as F

from common import add_common_args, describe_run, load_backbone, mib, print_table, settle_args, side_by_side
from promptlearn.data.episode_data import EpisodeDataModule
from promptlearn.data.episodes import TaskSource
from promptlearn.meta.maml import MetaPromptTuning
from promptlearn.meta.toy import keyword_family


def episodes(backbone, tasks_per_step: int, shots: int) -> list[dict]:
    family = keyword_family(range(6), size=12)
    pools = {"meta_train": [TaskSource(t) for t in family[:4]], "meta_test": [TaskSource(t) for t in family[4:]]}
    data = EpisodeDataModule(pools, backbone, n_way=2, k_shot=shots, query_shots=shots,
                             tasks_per_step=tasks_per_step, test_episodes=1)
    sampler = data.samplers["meta_train"]
    return [data.collate(sampler.episode(i)) for i in range(tasks_per_step)]


def ours_batched(module: MetaPromptTuning, optimizer, batch: list[dict]):
    def run():
        optimizer.zero_grad(set_to_none=True)
        with module._attention():
            losses, _ = module.batched_meta_loss(batch, module.step_weights())
            losses.mean().backward()
        optimizer.step()
    return run


def ours(module: MetaPromptTuning, optimizer, batch: list[dict]):
    def run():
        optimizer.zero_grad(set_to_none=True)
        weights = module.step_weights()
        with module._attention():
            for episode in batch:
                loss, _ = module.meta_loss(episode, weights)
                (loss / len(batch)).backward()
        optimizer.step()
    return run


def plain(module: MetaPromptTuning, optimizer, batch: list[dict]):
    """The textbook loop: per task, inner steps by torch.autograd.grad, outer loss backward."""
    def run():
        optimizer.zero_grad(set_to_none=True)
        weights = module.step_weights()
        with module._attention():
            for episode in batch:
                prompt, losses = module.prompt, []
                for _ in range(module.inner_steps):
                    inner = prompt if not module.first_order else prompt.detach().requires_grad_(True)
                    (g,) = torch.autograd.grad(module.loss(inner, episode["support"]), inner,
                                               create_graph=not module.first_order)
                    prompt = prompt - module.base_inner_lr * g
                    losses.append(F.cross_entropy(module.logits(prompt, episode["query"]), episode["query"]["label"]))
                loss = sum(w * l for w, l in zip(weights.tolist(), losses) if w > 0)
                (loss / len(batch)).backward()
        optimizer.step()
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, model="tiny_llama", steps=5)
    parser.add_argument("--tasks-per-step", type=int, default=4)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--inner-steps", type=int, nargs="+", default=[1, 3, 5])
    args = settle_args(parser.parse_args(argv))
    if args.quick:
        args.inner_steps, args.tasks_per_step, args.shots = [2], 2, 2  # k=2: a Hessian path through two steps
    backbone = load_backbone(args.model, args.device, args.dtype)
    batch = episodes(backbone, args.tasks_per_step, args.shots)
    rows = []
    for first_order in (True, False):
        for k in args.inner_steps:
            module = MetaPromptTuning(backbone, functools.partial(torch.optim.AdamW, lr=0.01),
                                      prompt_length=args.prompt_length, inner_steps=k, first_order=first_order,
                                      per_step_loss_weights=False).to(args.device)
            optimizer = module.configure_optimizers()
            contenders = {"batched": ours_batched(module, optimizer, batch), "per task": ours(module, optimizer, batch),
                          "plain": plain(module, optimizer, batch)}
            results = side_by_side(contenders, args.steps, args.warmup, args.device)
            b, o, p = results["batched"], results["per task"], results["plain"]
            rows.append(["first" if first_order else "second", k, f"{b.seconds * 1e3:.0f}", f"{o.seconds * 1e3:.0f}",
                         f"{p.seconds * 1e3:.0f}", f"{p.seconds / b.seconds:.2f}", f"{p.seconds / o.seconds:.2f}",
                         mib(b.peak_bytes), mib(o.peak_bytes), mib(p.peak_bytes),
                         f"{b.peak_bytes / max(p.peak_bytes, 1):.2f}"])
    print_table(f"MAML meta-step, {args.tasks_per_step} tasks x 2-way {args.shots}-shot ({describe_run(args)})",
                ["order", "k", "batched ms", "per-task ms", "plain ms", "speed-up batched", "speed-up per task",
                 "batched MiB", "per-task MiB", "plain MiB", "memory ratio batched"], rows)


if __name__ == "__main__":
    main()
