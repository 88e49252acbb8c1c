"""Padding-free forward passes: a padded batch's sequences laid end to end in a few packed rows.

A batch padded to its longest row spends a third or more of its compute on padding when lengths
vary, as they do in classification data. Packing places each row's real tokens (prompt included)
into rows of at most ``width`` tokens (balanced, see :func:`cheapest_bins`), with a block-diagonal
attention mask so each sequence attends only to itself (causally, for a causal LM), and positions
that restart at 0 for every sequence. Every token then sees exactly what it saw in the padded batch: rotary and
absolute positions are the same, and T5's relative position buckets depend only on differences.
Outputs are scattered back into the padded layout, so everything after the backbone is unchanged.

A causal LM's prompt is the same for every row and, coming first, sees nothing of the example, so
its keys and values are computed once, for one row, and every packed sequence attends to them as
a cached prefix (``prefix`` in :meth:`Packing.attention_mask`): a 20-token prompt before 35-token
examples is a third of the tokens saved again.

The mask is a 4-D additive float mask, which transformers passes through unchanged to its eager
and SDPA attention; other kernels (flash-attention, flex) are not packed. A model with sliding-window
layers gets a second mask that also keeps each query to the last ``window`` positions of its own
sequence, one mask per layer type, where its family takes them (:data:`PER_LAYER_TYPE_MASKS`); other
sliding-window families are not packed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch

# Families checked to take a custom 4-D mask and per-sequence positions with unchanged outputs.
PACKABLE_MODEL_TYPES = ("llama", "qwen2", "qwen3", "t5", "gemma3_text")
# Families whose forward takes ``{layer type: mask}``, so sliding-window layers can get a windowed mask.
PER_LAYER_TYPE_MASKS = ("gemma3_text",)
PACKABLE_ATTENTION = ("eager", "sdpa")
# A packed row of this many tokens doubles the cost of each of its positions, by a rough CPU and
# GPU estimate: attention's work per token grows with the row, the projections' does not.
ATTENTION_TOKENS = 1024


def sliding_window(config: object) -> int | None:
    """The window of a model's sliding-window layers, or None where every layer attends to everything before it."""
    window = getattr(config, "sliding_window", None)
    slides = getattr(config, "use_sliding_window", False) or "sliding_attention" in (getattr(config, "layer_types", None) or ())
    return window if window and slides else None


@dataclass(frozen=True)
class Packing:
    """Where each real token of a padded ``[batch, length]`` layout goes in a packed ``[rows, width]`` one."""

    source: torch.Tensor  # [tokens] flat index of each real token in the padded layout
    target: torch.Tensor  # [tokens] flat index of the same token in the packed layout
    segment: torch.Tensor  # [rows, width] the batch row each packed position holds; -1 for filler
    position_ids: torch.Tensor  # [rows, width] position of each token within its own sequence
    batch: int
    length: int
    bins: tuple[tuple[int, ...], ...]  # the batch rows in each packed row, in order

    @property
    def rows(self) -> int:
        return self.segment.shape[0]

    @property
    def width(self) -> int:
        return self.segment.shape[1]

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """``[batch, length, ...]`` -> ``[rows, width, ...]``; filler positions are zeros."""
        flat = padded.flatten(0, 1)
        packed = flat.new_zeros((self.rows * self.width, *flat.shape[1:]))
        return packed.index_copy(0, self.target, flat[self.source]).unflatten(0, (self.rows, self.width))

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """``[rows, width, ...]`` -> ``[batch, length, ...]``; padding positions are zeros."""
        flat = packed.flatten(0, 1)
        padded = flat.new_zeros((self.batch * self.length, *flat.shape[1:]))
        return padded.index_copy(0, self.source, flat[self.target]).unflatten(0, (self.batch, self.length))

    def attention_mask(self, dtype: torch.dtype, causal: bool, prefix: int = 0, window: int | None = None) -> torch.Tensor:
        """``[rows, 1, width, prefix + width]`` additive mask: 0 within a sequence (up to the query, if causal).

        ``prefix`` positions come first in every row's keys (a cached prefix all sequences share) and
        are seen by every query. With ``window``, a query also sees only keys fewer than ``window``
        positions before it in its own sequence (prefix included), as a sliding-window layer does.
        Filler positions attend to themselves, so no query row is fully masked (which would give NaN,
        and NaN gradients through the softmax); no real token sees them.
        """
        same = self.segment[:, :, None] == self.segment[:, None, :]
        if causal:
            same = same & torch.ones(self.width, self.width, dtype=torch.bool, device=same.device).tril()
        shared = same.new_ones(self.rows, self.width, prefix)
        if window is not None:
            query = self.position_ids[:, :, None] + prefix
            same = same & (query - (self.position_ids[:, None, :] + prefix) < window)
            shared = query - torch.arange(prefix, device=same.device) < window
        same = same | torch.eye(self.width, dtype=torch.bool, device=same.device)
        return additive(torch.cat([shared, same], dim=2), dtype)

    def cross_attention_mask(self, keys: Packing, dtype: torch.dtype) -> torch.Tensor:
        """``[rows, 1, width, keys.width]``: each sequence here attends to the same sequence in ``keys``
        (packed into the same bins: T5's decoder over its encoder). Filler attends to everything."""
        same = (self.segment[:, :, None] == keys.segment[:, None, :]) | (self.segment < 0)[:, :, None]
        return additive(same, dtype)

    def positions(self) -> torch.Tensor:
        """``[batch, length]``: where each padded position is in the flattened packed layout (0 for padding)."""
        flat = torch.zeros(self.batch * self.length, dtype=torch.long, device=self.source.device)
        return flat.index_copy(0, self.source, self.target).view(self.batch, self.length)


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean ``[rows, queries, keys]`` mask as the ``[rows, 1, queries, keys]`` additive float mask attention takes."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def balanced_bins(lengths: list[int], rows: int) -> list[list[int]]:
    """Row indices in ``rows`` bins of nearly equal fill: longest first, each to the emptiest bin."""
    bins: list[list[int]] = [[] for _ in range(rows)]
    heap = [(0, b) for b in range(rows)]
    for row in sorted(range(len(lengths)), key=lambda r: -lengths[r]):
        fill, b = heapq.heappop(heap)
        bins[b].append(row)
        heapq.heappush(heap, (fill + lengths[row], b))
    return [b for b in bins if b]


def cheapest_bins(lengths: list[int], width: int) -> list[list[int]]:
    """The packing into rows of at most ``max(width, longest)`` tokens with the least estimated cost.

    Cost is positions computed, each made ``row width / ATTENTION_TOKENS`` dearer by attention, which
    grows with the row; tried for the row counts that widths of 32 to ``width`` tokens suggest.
    """
    total, limit = sum(lengths), max(width, max(lengths))
    counts = {min(len(lengths), -(-total // w)) for w in (32, 64, 128, 256, 512, 1024, 2048, limit) if w <= limit}
    best, best_cost = [[r] for r in range(len(lengths))], float("inf")
    for count in sorted(counts):
        bins = balanced_bins(lengths, count)
        fill = max(sum(lengths[r] for r in b) for b in bins)
        cost = len(bins) * fill * (1 + fill / ATTENTION_TOKENS)
        if fill <= limit and cost < best_cost:
            best, best_cost = bins, cost
    return best


def layout(bins: list[list[int]], sizes: list[int], length: int, device: torch.device) -> Packing:
    """The :class:`Packing` that places each bin's rows end to end in one packed row."""
    packed_width = max(sum(sizes[r] for r in b) for b in bins)
    source, target, segment_rows, position_rows = [], [], [], []
    for index, rows in enumerate(bins):
        offset = 0
        segment = torch.full((packed_width,), -1, dtype=torch.long)
        position = torch.zeros(packed_width, dtype=torch.long)
        for row in rows:
            n = sizes[row]
            source.append(row * length + torch.arange(n))
            target.append(index * packed_width + offset + torch.arange(n))
            segment[offset:offset + n] = row
            position[offset:offset + n] = torch.arange(n)
            offset += n
        segment_rows.append(segment)
        position_rows.append(position)
    return Packing(
        source=torch.cat(source).to(device),
        target=torch.cat(target).to(device),
        segment=torch.stack(segment_rows).to(device),
        position_ids=torch.stack(position_rows).to(device),
        batch=len(sizes),
        length=length,
        bins=tuple(tuple(b) for b in bins),
    )


def plan_packing(attention_mask: torch.Tensor, width: int, min_saving: float | None = 0.1) -> Packing | None:
    """How to lay out a right-padded batch in rows of about ``max(width, longest row)`` tokens.

    None when rows are not one run of real tokens from position 0, or when packing saves less than
    ``min_saving`` of the padded positions (its mask and wider attention cost a little); with
    ``min_saving=None``, rows that would not pack stay one sequence per row.
    """
    batch, length = attention_mask.shape
    lengths = attention_mask.sum(1)
    positions = torch.arange(length, device=attention_mask.device)
    if not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]) or int(lengths.min()) == 0:
        return None
    sizes = lengths.tolist()
    bins = cheapest_bins(sizes, width)
    packed = len(bins) * max(sum(sizes[r] for r in b) for b in bins)
    if packed > (1 - (min_saving or 0.0)) * batch * length:
        if min_saving is not None:
            return None
        bins = [[row] for row in range(batch)]
    return layout(bins, sizes, length, attention_mask.device)
