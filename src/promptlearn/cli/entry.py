"""The console scripts. ``--help`` is answered here, in well under two seconds, without loading torch,
Lightning or transformers; anything else imports the command and runs it.

``--help`` prints the config groups the command really uses (with their options), its flags, the
settings most often changed, and three example commands. Hydra's own generated help is
``--help-full``; Hydra's help about itself is ``--hydra-help``; every key with its value is ``--cfg job``.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import textwrap
from pathlib import Path

from promptlearn.utils.paths import config_dir

HYDRA_COMMANDS = {
    "train": ("promptlearn-train", "promptlearn.cli.train", "train", [
        ("model=<name>", "the frozen backbone (offline: smollm2_135m, tiny_t5, tiny_llama; hub: t5_*, gpt2)"),
        ("method=<name>", "prompt_tuning, prefix_tuning, p_tuning, p_tuning_v2, autoprompt, pez, prompt_design, ..."),
        ("task=<name>", "rotten_tomatoes, the SuperGLUE and GLUE tasks, bigbench, roget, local"),
        ("trainer=<name>", "cpu, gpu, debug (two steps), ddp, fsdp, deepspeed"),
        ("method.prompt_length=20", "virtual tokens (prefix_length for prefix tuning)"),
        ("method.init=class_label", "random_uniform, sampled_vocab, class_label, text"),
        ("optimizer.lr=0.01", "the learning rate (each model config carries its tested one)"),
        ("trainer.max_steps=200", "training steps; trainer.val_check_interval=50 validates every 50"),
        ("data.batch_size=8", "training batch size (data.eval_batch_size for evaluation)"),
        ("ckpt_path=last", "resume the run in hydra.run.dir=<run> from its last checkpoint"),
    ], [
        "promptlearn-train                                         # SmolLM2-135M on Rotten Tomatoes, offline",
        "promptlearn-train model=tiny_t5 method=prefix_tuning trainer=debug   # a seconds-long smoke run",
        "promptlearn-train -m method.prompt_length=1,5,20 seed=0,1,2          # a multirun sweep",
    ]),
    "eval": ("promptlearn-eval", "promptlearn.cli.eval", "eval", [
        ("prompt=<run>/prompt.pt", "the prompt to evaluate (its method is read from the file); none: the template alone"),
        ("model=<name>", "the backbone the prompt was trained on"),
        ("task=<name>", "the task to evaluate on"),
        ("splits=[validation,test]", "which splits"),
        ("data.max_test_examples=null", "evaluate on the first N test examples"),
        ("data.eval_batch_size=32", "evaluation batch size"),
        ("trainer=<name>", "cpu or gpu"),
        ("method.length_normalize=false", "rank choices by mean rather than summed log-likelihood"),
        ("seed=0", "for tasks that draw (few-shot demonstrations)"),
        ("hydra.run.dir=<dir>", "where results.json and predictions/ go"),
    ], [
        "promptlearn-eval prompt=outputs/rotten_tomatoes/smollm2_135m/prompt_tuning/<time>/prompt.pt",
        "promptlearn-eval model=tiny_t5                            # no prompt: the template alone",
        "promptlearn-eval prompt=<run>/prompt.pt task=sst2         # the same prompt on another task",
    ]),
    "meta": ("promptlearn-meta", "promptlearn.cli.meta", "meta", [
        ("meta_pool=<name>", "the meta-train / meta-val / meta-test task pools (bigbench, toy, yours)"),
        ("meta_experiment=<name>", "presets: toy, and the recipes in docs/metaprompting.md"),
        ("meta.inner_steps=3", "adaptation steps per episode"),
        ("meta.inner_lr=0.3", "the inner SGD step size"),
        ("meta.first_order=false", "first-order MAML (no gradient through the inner gradients)"),
        ("episodes.n_way=2", "classes per episode"),
        ("episodes.k_shot=4", "support examples per class"),
        ("episodes.test_episodes=200", "meta-test episodes"),
        ("trainer.max_steps=200", "meta-steps"),
        ("model=<name>", "the frozen backbone"),
    ], [
        "promptlearn-meta meta_experiment=toy                      # tiny Llama, synthetic tasks: seconds",
        "promptlearn-meta meta.first_order=true trainer.max_steps=50",
        "promptlearn-meta -m meta.inner_steps=1,3 seed=0,1",
    ]),
    "invert": ("promptlearn-invert", "promptlearn.cli.invert", "invert", [
        ("targets.images=<folder>", "the images a hard prompt should describe (a folder or a list)"),
        ("clip=<name>", "tiny_clip (offline), clip_vit_b32, clip_vit_l14 (hub)"),
        ("method.prompt_length=16", "tokens in the prompt"),
        ("targets.batch_size=null", "images per step (null: all)"),
        ("optimizer.lr=0.1", "the learning rate"),
        ("trainer.max_steps=3000", "optimisation steps"),
        ("method.token_pattern=null", "a regex every prompt token must match"),
        ("method.whole_words=false", "only tokens that end a word"),
        ("seed=0", "the initial prompt's draw"),
        ("hydra.run.dir=<dir>", "where prompt.txt, prompt.png and results.json go"),
    ], [
        "promptlearn-invert targets.images=path/to/folder",
        "promptlearn-invert clip=clip_vit_l14 targets.images=path/to/folder",
        "promptlearn-invert clip=clip_vit_b32 'targets.images=[a.png,b.png]' method.prompt_length=8",
    ]),
    "lm_adapt": ("promptlearn-lm-adapt", "promptlearn.cli.lm_adapt", "lm_adapt", [
        ("model=<name>", "the T5 checkpoint to adapt"),
        ("corpus=<name>", "c4 (streamed) or local_text"),
        ("corpus.paths=[...]", "with corpus=local_text: text files"),
        ("trainer.max_steps=10000", "adaptation steps"),
        ("lm_adapt.save_every_n_steps=10000", "also write hf/step-<N> every N steps"),
        ("lm_adapt.data.batch_size=32", "spans per batch"),
        ("lm_adapt.data.span_length=128", "tokens per span"),
        ("optimizer.lr=0.001", "the learning rate (every weight trains)"),
        ("trainer=<name>", "cpu or gpu"),
        ("seed=0", "data order"),
    ], [
        "promptlearn-lm-adapt model=t5_v1_1_base trainer=gpu trainer.max_steps=10000",
        "promptlearn-lm-adapt model=tiny_t5 corpus=local_text 'corpus.paths=[notes/*.txt]' trainer.max_steps=50",
        "promptlearn-train model=local_t5 model.name_or_path=<run>/hf/step-10000   # then prompt-tune it",
    ]),
}
FLAGS = [
    ("-m, --multirun", "sweep over comma-separated values (key=a,b,c)"),
    ("--cfg job", "print the composed config (every key) and exit"),
    ("--config-dir <dir>", "add your own config groups and options"),
    ("--help-full", "Hydra's generated help; --hydra-help: Hydra's own"),
]


def groups_of(config_name: str) -> list[tuple[str, list[str]]]:
    """The config groups a primary config's defaults list names, with their options, read without Hydra."""
    root = Path(config_dir())
    text = (root / f"{config_name}.yaml").read_text()
    names = re.findall(r"^\s*-\s*(?:override\s+)?/?([A-Za-z_][\w/]*)\s*:", text.split("\n\n", 1)[0] + text, re.M)
    found = []
    for name in dict.fromkeys(names):
        folder = root / name
        if folder.is_dir():
            found.append((name, sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))))
    return found


def help_text(command: str) -> str:
    script, module, config_name, keys, examples = HYDRA_COMMANDS[command]
    source = importlib.util.find_spec(module).loader.get_source(module) or ""
    doc = " ".join(source.split('"""')[1].strip().split("\n\n")[0].split())
    lines = [f"{script}: {doc.split(': ', 1)[-1]}", "", f"usage: {script} [group=option ...] [key=value ...] [flags]", "",
             "config groups (group=option):"]
    for group, options in groups_of(config_name):
        wrapped = textwrap.wrap(", ".join(options), width=80)
        lines += [f"  {group if i == 0 else '':<16} {part}" for i, part in enumerate(wrapped)]
    lines += ["", "most used settings:"] + [f"  {key:<34} {what}" for key, what in keys]
    lines += ["", "flags:"] + [f"  {flag:<34} {what}" for flag, what in FLAGS]
    lines += ["", "examples:"] + [f"  {example}" for example in examples]
    return "\n".join(lines)


def run(command: str) -> None:
    args = sys.argv[1:]
    if "-h" in args or "--help" in args:
        print(help_text(command))
        return
    if "--help-full" in args:
        sys.argv = [sys.argv[0], *["--help" if a == "--help-full" else a for a in args]]
    importlib.import_module(HYDRA_COMMANDS[command][1]).main()


def train() -> None:
    run("train")


def evaluate() -> None:
    run("eval")


def meta() -> None:
    run("meta")


def invert() -> None:
    run("invert")


def lm_adapt() -> None:
    run("lm_adapt")
