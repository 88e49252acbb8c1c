"""What every benchmark shares: models, data, side-by-side timing, peak memory, MFU and tables.

Peak memory is tensor memory allocated during a call above what was allocated before it: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the same quantity replayed from ``torch.profiler``'s
allocation records (:func:`cpu_peak_bytes`). Backbone weights, loaded before, are not counted; the
activations, saved tensors, gradients and optimizer state a step creates are. Contenders run
alternately in one process, after a warm-up, and the median is reported.
"""

from __future__ import annotations

import argparse
import functools
import gc
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.table import Table
from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

from promptlearn.backbones import (
    Backbone, build_tiny_gemma3, build_tiny_llama, build_tiny_t5, convert_smollm2, freeze, load_gemma3, load_smollm2,
    untie_lm_head,
)
from promptlearn.data.datamodule import TaskDataModule
from promptlearn.data.tasks.rotten_tomatoes import RottenTomatoes
from promptlearn.utils.memory import cpu_peak_bytes, peak_bytes

MODELS = ("smollm2", "gemma3_270m", "t5_base", "t5_base_bytes", "tiny_llama", "tiny_gemma3", "tiny_t5")

# Dense bf16 tensor-core peaks (FLOP/s), from the vendors' data sheets (SXM parts, no sparsity).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}

console = Console(width=160)
_clock = time.perf_counter  # set by settle_args

# Modules are driven outside a Trainer here, so their self.log calls have nowhere to go.
warnings.filterwarnings("ignore", message=".*self.log.*")
warnings.filterwarnings("ignore", category=FutureWarning)


def add_common_args(parser: argparse.ArgumentParser, model: str = "smollm2", batch_size: int = 8, steps: int = 5) -> None:
    parser.add_argument("--model", choices=MODELS, default=model)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--steps", type=int, default=steps, help="measured repetitions per contender (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--max-source-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time, robust to other jobs on shared CPU cores (CPU runs only)")
    parser.add_argument("--quick", action="store_true", help="tiny model and sizes, for the smoke test")


def settle_args(args: argparse.Namespace) -> argparse.Namespace:
    """Apply --quick, pick the dtype for the device, set threads."""
    if args.quick:
        tiny = {"smollm2": "tiny_llama", "gemma3_270m": "tiny_gemma3", "t5_base": "tiny_t5", "t5_base_bytes": "tiny_t5"}
        args.model = tiny.get(args.model, args.model)
        args.batch_size, args.steps, args.warmup = min(args.batch_size, 4), 2, 1
        args.prompt_length = min(args.prompt_length, 5)
        args.max_source_length = min(args.max_source_length, 32)
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    if args.threads:
        torch.set_num_threads(args.threads)
    # Subnormal floats (random weights make some) slow CPU arithmetic tenfold at random; flush them.
    torch.set_flush_denormal(True)
    global _clock
    _clock = time.process_time if args.clock == "cpu" and not args.device.startswith("cuda") else time.perf_counter
    torch.manual_seed(0)
    return args


def t5_base_random(tokenizer: str = "bpe", seed: int = 0) -> Backbone:
    """A T5 with t5-v1_1-base dimensions and random weights.

    ``bpe``: SmolLM2's subword tokenizer (49,152 tokens; T5's own sentencepiece vocabulary does not
    ship offline), so examples have the lengths, and batches the padding, that a real T5 sees.
    ``bytes``: the byte-level tokenizer, whose examples mostly fill the length limit (little padding).
    """
    if tokenizer == "bpe":
        from transformers import AutoTokenizer

        vocab = AutoTokenizer.from_pretrained(convert_smollm2())
        if vocab.pad_token_id is None:
            vocab.pad_token = vocab.eos_token
    else:
        vocab = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(vocab) if tokenizer == "bpe" else 32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12,
        num_decoder_layers=12, num_heads=12, feed_forward_proj="gated-gelu", dropout_rate=0.0, tie_word_embeddings=False,
        pad_token_id=vocab.pad_token_id, eos_token_id=vocab.eos_token_id, decoder_start_token_id=vocab.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = untie_lm_head(T5ForConditionalGeneration(config))  # T5.1.1's head is its own matrix
    model.generation_config.decoder_start_token_id = vocab.pad_token_id
    return Backbone(f"t5_base_random_{tokenizer}", freeze(model), vocab)


def load_backbone(name: str, device: str = "cpu", dtype: str = "float32") -> Backbone:
    builders: dict[str, Callable[[], Backbone]] = {
        "smollm2": load_smollm2, "t5_base": t5_base_random, "t5_base_bytes": functools.partial(t5_base_random, "bytes"),
        "gemma3_270m": load_gemma3, "tiny_llama": build_tiny_llama, "tiny_gemma3": build_tiny_gemma3, "tiny_t5": build_tiny_t5,
    }
    backbone = builders[name]()
    backbone.model.to(device=device, dtype=getattr(torch, dtype))
    return backbone


def rotten_tomatoes_batches(
    backbone: Backbone, batch_size: int, count: int, max_source_length: int, split: str = "train", train: bool = True,
    eval_mode: str = "rank",
) -> list[dict]:
    """``count`` batches of Rotten Tomatoes as the training (or evaluation) loader serves them."""
    limit = batch_size * count  # encode only the examples served
    data = TaskDataModule(
        RottenTomatoes(eval_mode=eval_mode), backbone, batch_size=batch_size, eval_batch_size=batch_size,
        max_field_tokens=max_source_length, max_source_length=max_source_length + 8,
        max_train_examples=limit, max_val_examples=limit, max_test_examples=limit,
    )
    data.setup()
    loader = data.train_dataloader() if train else {"validation": data.val_dataloader, "test": data.test_dataloader}[split]()
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            break
    return batches


def stock_activations(model: torch.nn.Module) -> int:
    """Undo promptlearn's activation fusion (a model as transformers builds it); how many modules changed."""
    from transformers.activations import GELUTanh, NewGELUActivation

    config = model.config
    if "gelu_new" not in (getattr(config, "dense_act_fn", None), getattr(config, "hidden_act", None)):
        return 0
    changed = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is GELUTanh:
                setattr(parent, name, NewGELUActivation())
                changed += 1
    return changed


def to_device(batch: dict, device: str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def measure(fn: Callable[[], object], device: str) -> tuple[float, int | None]:
    """Seconds of one call of ``fn``, and on CUDA its peak allocated bytes (on CPU: None, see :func:`cpu_peak_bytes`)."""
    gc.collect()
    if device.startswith("cuda"):
        seconds = []

        def timed() -> None:
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)

        peak = peak_bytes(timed, torch.device(device))
        return seconds[0], peak
    start = _clock()
    fn()
    return _clock() - start, None


@dataclass
class Result:
    seconds: float  # median
    peak_bytes: int  # median
    runs: int


def side_by_side(contenders: dict[str, Callable[[], object]], steps: int, warmup: int, device: str) -> dict[str, Result]:
    """Warm every contender up, then alternate them ``steps`` times; medians of time and peak memory."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[tuple[float, int | None]]] = {name: [] for name in contenders}
    for rep in range(steps):
        order = list(contenders.items())
        for name, fn in order if rep % 2 == 0 else reversed(order):  # alternate who goes first
            samples[name].append(measure(fn, device))
    results = {}
    for name, runs in samples.items():
        # On CPU one extra, profiled call per contender gives its memory (the profiler would skew timings).
        peak = int(statistics.median(m for _, m in runs)) if device.startswith("cuda") else cpu_peak_bytes(contenders[name])
        results[name] = Result(statistics.median(s for s, _ in runs), peak, len(runs))
    return results


def peak_flops(device: str) -> float | None:
    """The device's dense bf16 peak, where it is in :data:`PEAK_BF16_FLOPS`."""
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def frozen_step_flops(backbone: Backbone, batch: dict, prompt_length: int) -> float:
    """Useful FLOPs of a frozen-backbone training step: forward 2·N·T plus input-gradient backward 2·N·T.

    N counts matmul weights (the input embedding table is a lookup and is left out), T the tokens each
    stack processes, padding included: for a causal LM N·T = N·batch·(prompt + width); for T5
    N_encoder·batch·(prompt + source width) + N_decoder·batch·target width, the LM head counted with the
    decoder. Attention's sequence-quadratic terms are left out.
    """
    model, rows = backbone.model, batch["input_ids"].shape[0]
    embedding = model.get_input_embeddings().weight.numel()
    if backbone.is_encoder_decoder:
        n_encoder = sum(p.numel() for p in model.encoder.parameters()) - embedding
        n_decoder = sum(p.numel() for p in model.decoder.parameters()) - embedding + model.lm_head.weight.numel()
        tokens_encoder = rows * (prompt_length + batch["input_ids"].shape[1])
        return 4.0 * (n_encoder * tokens_encoder + n_decoder * rows * batch["labels"].shape[1])
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    n = sum(p.numel() for p in model.parameters()) - (0 if tied else embedding)  # a tied table is the LM head
    return 4.0 * n * rows * (prompt_length + batch["input_ids"].shape[1])


def mfu(flops: float, seconds: float, device: str) -> str:
    peak = peak_flops(device)
    return "n/a (CPU)" if peak is None else f"{flops / seconds / peak:.1%}"


def mib(n: int) -> str:
    return f"{n / 2**20:.0f}"


def print_table(title: str, columns: list[str], rows: list[list[object]], caption: str | None = None) -> None:
    table = Table(title=title, caption=caption)
    for column in columns:
        table.add_column(column, justify="right" if column != columns[0] else "left")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    met = value >= target if higher_is_better else value <= target
    return f"{value:.2f} ({'meets' if met else 'misses'} {'>=' if higher_is_better else '<='} {target})"


def describe_run(args: argparse.Namespace) -> str:
    return (f"model={args.model} device={args.device} dtype={args.dtype} batch={args.batch_size} "
            f"prompt={args.prompt_length} steps={args.steps} clock={args.clock} threads={torch.get_num_threads()} torch={torch.__version__}")


def prompt_tuning_module(backbone: Backbone, prompt_length: int, device: str, lr: float = 0.01):
    """The real ``PromptTuning`` LightningModule on Rotten Tomatoes, with its AdamW optimizer."""
    from promptlearn.methods.prompt_tuning import PromptTuning

    module = PromptTuning(
        backbone, RottenTomatoes().info(), functools.partial(torch.optim.AdamW, lr=lr),
        prompt_length=prompt_length, init="sampled_vocab",
    ).to(device)
    return module, module.configure_optimizers()


def training_phase(module, optimizer, phase: str) -> Callable[[dict], torch.Tensor]:
    """One call of the module's ``training_step`` taken as far as ``phase``: forward, backward or step.

    "forward" records autograd (as in training) and then drops the graph; "step" adds the optimizer step.
    """
    def run(batch: dict) -> torch.Tensor:
        loss = module.training_step(batch, 0)
        if phase in ("backward", "step"):
            loss.backward()
        if phase == "step":
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return run


def cycling(batches: list[dict], fn: Callable[[dict], object]) -> Callable[[], object]:
    """A no-argument call that feeds ``fn`` the next batch each time (the same order for every contender)."""
    state = {"i": 0}

    def run() -> object:
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        return fn(batch)

    return run
