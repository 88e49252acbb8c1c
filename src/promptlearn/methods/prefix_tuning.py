"""Prefix Tuning (Li & Liang 2021) and P-Tuning v2 (Liu et al. 2022): learned keys and values
prepended in every attention layer of the frozen backbone.

A decoder-only LM gets a prefix in each self-attention layer. T5 gets three, as the paper does for
BART: encoder self-attention, decoder self-attention and cross-attention. The prefixes reach the
backbone as transformers ``Cache`` objects (:mod:`promptlearn.prompts.prefix_cache`), so the real
tokens sit after the prefix: positions ``prefix_length, prefix_length + 1, ...`` in a causal LM.

Prefix Tuning trains the prefixes through an MLP (``reparameterize=True``): a ``prefix_length x
hidden_size`` matrix goes through ``Linear(hidden_size, mlp_hidden_size) -> tanh ->
Linear(mlp_hidden_size, width)`` for each attention kind. :meth:`PrefixTuning.fold` evaluates the MLP
once and keeps only its output, which is what a saved prompt holds (``fold_on_save``). P-Tuning v2
trains the same prefixes directly (``reparameterize=False``), which is also the form a folded
prefix takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from promptlearn.backbones import Backbone
from promptlearn.data.tasks import TaskInfo
from promptlearn.utils.errors import ConfigError, unknown_name
from promptlearn.methods.base import FrozenBackboneModule, OptimizerFactory
from promptlearn.methods.settings import arguments, at_least, fraction
from promptlearn.prompts.checkpoint import read_prompt, save_prompt
from promptlearn.prompts.prefix_cache import (
    attention_stacks,
    check_attention_implementation,
    encoder_prefix,
    prefix_cache,
    seq2seq_prefix_cache,
    text_prefix,
)

# random: N(0, 1) as in Li & Liang's code; text and class_label: the activations of real words (their
# recommendation, and PEFT's prefix init from a text).
PREFIX_INITS = ("random", "text", "class_label")


class PrefixMLP(nn.Module):
    """``MLP(P')`` (Li & Liang), with ``P'`` a ``length x d`` matrix: the prefix of one attention kind."""

    def __init__(self, length: int, hidden_size: int, mlp_hidden_size: int, width: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(
            torch.randn(length, hidden_size)
        )  # nn.Embedding's N(0, 1), as in their code
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_hidden_size), nn.Tanh(), nn.Linear(mlp_hidden_size, width)
        )

    def forward(self) -> torch.Tensor:
        return self.mlp(self.embedding)

    def fit(self, target: torch.Tensor, steps: int = 300, lr: float = 1e-3) -> float:
        """Start at ``target`` (``[length, width]``): fit ``MLP(P')`` to it by least squares, a second or two.
        Returns the relative error left, ``||MLP(P') - target|| / ||target||``."""
        target = target.detach().to(self.embedding.dtype)
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                optimizer.zero_grad()
                F.mse_loss(self(), target).backward()
                optimizer.step()
        with torch.no_grad():
            return float((self() - target).norm() / target.norm().clamp_min(1e-12))



class PrefixTuning(FrozenBackboneModule):
    """Keys and values for every attention layer; only they (or the MLP that makes them) train.

    Trainable parameters, with ``p = prefix_length``, ``d = hidden_size``, ``h = mlp_hidden_size`` and,
    for each attention kind ``k``, ``w_k = 2 * layers_k * kv_heads * head_dim`` (``2 * L * d`` for a
    causal LM without grouped-query attention):

    - ``reparameterize=True``: ``sum_k (p*d + d*h + h + h*w_k + w_k)``;
    - ``reparameterize=False`` (and after :meth:`fold`): ``sum_k p*w_k``.

    A causal LM has one kind (``self``); T5 has three (``encoder``, ``decoder``, ``cross``).
    """

    method_name = "prefix_tuning"

    def __init__(
        self,
        backbone: Backbone,
        task: TaskInfo,
        optimizer: OptimizerFactory | None = None,
        prefix_length: int = 10,
        reparameterize: bool = True,
        mlp_hidden_size: int = 512,
        prefix_dropout: float = 0.0,
        fold_on_save: bool = True,
        init: str = "random",
        init_text: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.check_settings(arguments(locals()))
        super().__init__(backbone, task, optimizer, **kwargs)
        check_attention_implementation(self.model, backbone.name)
        limit = backbone.max_positions
        if limit is not None and prefix_length >= limit:
            raise ConfigError(
                f"a prefix of {prefix_length} positions leaves no room for input in {backbone.name}'s "
                f"{limit} positions; set method.prefix_length well below {limit} (Li & Liang use 10)"
            )
        self.prefix_length = prefix_length
        self.mlp_hidden_size = mlp_hidden_size
        self.prefix_dropout = prefix_dropout
        self.fold_on_save = fold_on_save
        self.stacks = attention_stacks(self.model)
        self.init = init
        self.prefix_mlps: nn.ModuleDict | None = None
        self.prefixes: nn.ParameterDict | None = None
        start = self.words_prefix(init, init_text, task.label_words)  # None: random
        if reparameterize:
            hidden = backbone.hidden_size
            self.prefix_mlps = nn.ModuleDict(
                {
                    kind: PrefixMLP(prefix_length, hidden, mlp_hidden_size, stack.width)
                    for kind, stack in self.stacks.items()
                }
            )
            if start is not None:
                self.init_error = {kind: mlp.fit(start[kind]) for kind, mlp in self.prefix_mlps.items()}
        else:
            self.prefixes = nn.ParameterDict(
                {
                    kind: nn.Parameter(torch.randn(prefix_length, stack.width) if start is None else start[kind].clone())
                    for kind, stack in self.stacks.items()
                }
            )

    def words_prefix(self, init: str, text: str | None, label_words: Sequence[str]) -> dict[str, torch.Tensor] | None:
        """Per attention kind, ``[prefix_length, width]``: the keys and values of real words, tiled to the
        prefix length (``init=text``: ``init_text``; ``init=class_label``: the label words); None for ``random``."""
        if init == "random":
            return None
        words = text if init == "text" else "".join(label_words)
        ids = self.backbone.tokenizer(words or "", add_special_tokens=False)["input_ids"]
        if not ids:
            raise ConfigError(f"method.init={init} needs words to start from: "
                              + ("set method.init_text='...'" if init == "text" else "this task has no label words"))
        ids = (ids * -(-self.prefix_length // len(ids)))[: self.prefix_length]
        layered = text_prefix(self.model, ids)
        return {kind: self.stacks[kind].flatten(layered[kind]) for kind in self.stacks}

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        super().check_settings(settings)
        at_least(settings, "prefix_length", 1, "10", label="prefix length")
        fraction(settings, "prefix_dropout", "0.1")
        if settings.get("reparameterize", True):
            at_least(settings, "mlp_hidden_size", 1, "512")
        init = settings.get("init", "random")
        if init not in PREFIX_INITS:
            raise unknown_name("prefix init (method.init)", str(init), PREFIX_INITS)
        if init == "text" and not settings.get("init_text"):
            raise ConfigError("method.init=text needs method.init_text='...'; set it or choose another init")

    @property
    def num_virtual_tokens(self) -> int:
        return self.prefix_length

    @property
    def reparameterize(self) -> bool:
        return self.prefix_mlps is not None

    # ----------------------------------------------------------------- prefixes
    def flat_prefixes(self) -> dict[str, torch.Tensor]:
        """Each attention kind's prefix as ``[prefix_length, width]``: the MLP's output, or the parameter."""
        if self.prefix_mlps is not None:
            return {kind: mlp() for kind, mlp in self.prefix_mlps.items()}
        return dict(self.prefixes.items())

    def layer_prefixes(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Each kind's prefix as ``[layers, 2, kv_heads, prefix_length, head_dim]``, ready for a cache."""
        return {
            kind: self.stacks[kind].unflatten(F.dropout(flat, self.prefix_dropout, self.training).to(dtype))
            for kind, flat in self.flat_prefixes().items()
        }

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
        """The input embeddings, a mask covering prefix and input, and a fresh prefix cache.

        For T5 the encoder runs here, with its self-attention prefix, and ``encoder_outputs`` replaces
        ``inputs_embeds``; the same mask then serves cross-attention over ``[prefix; encoder output]``.
        """
        embeds, mask = self.embed_inputs(input_ids, attention_mask)
        batch = embeds.shape[0]
        prefixes = self.layer_prefixes(embeds.dtype)
        mask = torch.cat([mask.new_ones(batch, self.prefix_length), mask], dim=1)
        if not self.backbone.is_encoder_decoder:
            return {
                "inputs_embeds": embeds,
                "attention_mask": mask,
                "cache": prefix_cache(prefixes["self"], batch),
            }
        with encoder_prefix(self.model, prefixes["encoder"], batch):
            encoded = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return {
            "encoder_outputs": BaseModelOutput(last_hidden_state=encoded),
            "attention_mask": mask,
            "cache": seq2seq_prefix_cache(prefixes["decoder"], prefixes["cross"], batch),
        }

    # ----------------------------------------------------------------- folding
    @torch.no_grad()
    def folded_prefixes(self) -> dict[str, torch.Tensor]:
        """The prefixes the MLP produces now (or the direct ones), detached: all that inference needs."""
        return {kind: flat.detach().clone() for kind, flat in self.flat_prefixes().items()}

    def fold(self) -> None:
        """Replace the MLP by the prefixes it produces; outputs stay identical. For inference."""
        if self.prefix_mlps is None:
            return
        self.prefixes = nn.ParameterDict(
            {kind: nn.Parameter(flat) for kind, flat in self.folded_prefixes().items()}
        )
        self.prefix_mlps = None

    # ----------------------------------------------------------------- checkpoints
    def prompt_hparams(self) -> dict[str, object]:
        return {
            "init": self.init,
            "prefix_length": self.prefix_length,
            "reparameterize": self.reparameterize,
            "mlp_hidden_size": self.mlp_hidden_size,
        }

    def save_prompt(self, path: str | Path) -> Path:
        """Write the folded prefixes (``fold_on_save``, the default) or the trainable tensors as they are."""
        if not (self.fold_on_save and self.reparameterize):
            return super().save_prompt(path)
        state = {f"prefixes.{kind}": flat for kind, flat in self.folded_prefixes().items()}
        hparams = {**self.prompt_hparams(), "reparameterize": False}
        return save_prompt(path, state, self.method_name, self.backbone.fingerprint(), hparams)

    def load_prompt(self, path: str | Path) -> None:
        """Load a saved prompt; a folded one replaces this module's MLP, leaving it ready for inference."""
        if self.reparameterize and read_prompt(path)["hparams"].get("reparameterize") is False:
            self.fold()
        super().load_prompt(path)


class PTuningV2(PrefixTuning):
    """P-Tuning v2 (Liu et al. 2022): deep prompts in every layer, trained directly by default.

    ``reparameterize=True`` is their optional ``prefix_projection``, the same MLP as Prefix Tuning.
    """

    method_name = "p_tuning_v2"

    def __init__(
        self,
        backbone: Backbone,
        task: TaskInfo,
        optimizer: OptimizerFactory | None = None,
        reparameterize: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, task, optimizer, reparameterize=reparameterize, **kwargs)
