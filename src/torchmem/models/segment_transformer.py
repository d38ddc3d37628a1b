"""Segment-wise transformer baselines for the Memoria comparison.

* :class:`SegmentTransformer` reads a long sequence in segments of S tokens and carries
  nothing from one segment to the next: a token sees only the earlier tokens of its own
  segment (the "Transformer with the same segment length" of the Memoria paper).
* :class:`TransformerXL` also attends to the keys and values of the last ``memory_length``
  tokens of the previous segments, without gradient through them (Dai et al. 2019,
  segment-level recurrence with a stop-gradient cache; positions are relative, rotary).

Both share the decoder of :mod:`._decoder` with the Memoria Transformer. A segment may be
split over several calls: the state keeps the open segment's keys and values, so whole,
chunked and step-by-step runs give the same outputs.

Legend: B batch, T time, L layers, H heads, E head width, C cached tokens, S segment length.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .._validation import check_sequence_input
from ..config import build_config
from ._decoder import SegmentDecoder, check_segment_config, run_in_segments, steps_taken


@dataclass
class SegmentTransformerConfig:
    """Options of the plain segment-wise transformer (small enough to train on a CPU).

    Attributes:
        input_size, output_size: set by the task.
        hidden_size: D, the model width.
        num_heads: H; hidden_size / num_heads must be even (rotary positions).
        num_layers: L decoder blocks.
        ff_size: width of the feed-forward layer.
        segment_length: S, tokens per segment.
        dropout: dropout on embeddings and residual branches.
        grad_segments: backpropagate only through the last this many segments of each call
            (0: all). Exact when the loss reads only those segments' outputs (no gradient
            crosses a segment boundary); saves the backward pass over the rest.
    """

    input_size: int = 21
    output_size: int = 20
    hidden_size: int = 64
    num_heads: int = 4
    num_layers: int = 2
    ff_size: int = 256
    segment_length: int = 64
    dropout: float = 0.0
    grad_segments: int = 0


@dataclass
class TransformerXLConfig(SegmentTransformerConfig):
    """Options of the Transformer-XL-style baseline: the plain ones plus the cache length.

    Attributes:
        memory_length: cached tokens of earlier segments every token also attends to
            (Transformer-XL's ``mem_len``; 0 makes it the plain segment transformer).
    """

    memory_length: int = 64


class DecoderCache(NamedTuple):
    """Self-attention cache of a segment-wise transformer.

    Attributes:
        keys: (B, L, H, C, E) un-rotated keys of the cached tokens: first the carried
            tokens of earlier segments (Transformer-XL only), then the open segment's.
        values: (B, L, H, C, E) their values.
        steps: (B,) int64 tokens processed so far (equal across the batch).
    """

    keys: Tensor
    values: Tensor
    steps: Tensor


def carried_tokens(steps: int, segment_length: int, memory_length: int) -> int:
    """How many tokens of earlier segments are cached once ``steps`` tokens were read."""
    return min(memory_length, (steps // segment_length) * segment_length)


def initial_cache(
    decoder: SegmentDecoder, batch_size: int, device: torch.device, dtype: torch.dtype
) -> DecoderCache:
    keys, values = decoder.empty_cache(batch_size, device, dtype)
    return DecoderCache(keys, values, torch.zeros(batch_size, dtype=torch.long, device=device))


def cached_piece(
    decoder: SegmentDecoder,
    x: Tensor,
    cache: DecoderCache,
    segment_length: int,
    memory_length: int,
    owner: str,
    memories=(),
):
    """Run one piece (inside one segment) and advance the cache.

    When the piece completes its segment, the cache keeps the last ``memory_length`` tokens
    (detached: no gradient flows into an earlier segment) and drops the rest.

    Returns:
        The decoder's :class:`~._decoder.PieceOutput` and the new :class:`DecoderCache`.
    """
    steps = int(cache.steps[0]) if cache.steps.numel() else 0
    carried = carried_tokens(steps, segment_length, memory_length)
    expected = carried + steps % segment_length
    if cache.keys.shape[3] != expected:
        raise ValueError(
            f"{owner} state holds {cache.keys.shape[3]} cached tokens, but after {steps} steps "
            f"this model caches {expected}: the state comes from another model or config"
        )
    out = decoder(x, cache.keys, cache.values, carried, memories)
    steps += x.shape[1]
    keys, values = out.keys, out.values
    if steps % segment_length == 0:  # the segment is complete
        keep = carried_tokens(steps, segment_length, memory_length)
        keys = keys[:, :, :, keys.shape[3] - keep :].detach()
        values = values[:, :, :, values.shape[3] - keep :].detach()
    return out, DecoderCache(keys, values, cache.steps + x.shape[1])


class SegmentTransformer(nn.Module):
    """``y, state = model(x, state=None)``: a causal transformer restarted every S tokens.

    x (B, T, input_size) -> logits y (B, T, output_size). The state only holds the open
    segment's keys and values (so a segment may be fed over several calls).
    """

    config_class = SegmentTransformerConfig

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            self.config_class,
            {"input_size": input_size, "output_size": output_size, **options},
            self._owner(),
        )
        check_segment_config(c, self._owner())
        if getattr(c, "memory_length", 0) < 0:
            raise ValueError(f"{self._owner()} option memory_length must be >= 0")
        self.decoder = SegmentDecoder(
            c.input_size, c.output_size, c.hidden_size, c.num_heads, c.num_layers,
            c.ff_size, c.dropout,
        )  # fmt: skip

    @classmethod
    def _owner(cls) -> str:
        return "segment-transformer"

    @property
    def memory_length(self) -> int:
        return 0

    @classmethod
    def from_config(cls, config: SegmentTransformerConfig) -> SegmentTransformer:
        return cls(**dataclasses.asdict(config))

    def initial_state(self, batch_size: int, device=None, dtype=None) -> DecoderCache:
        p = self.decoder.head.weight
        return initial_cache(self.decoder, batch_size, device or p.device, dtype or p.dtype)

    def _piece(self, x: Tensor, state: DecoderCache) -> tuple[Tensor, DecoderCache]:
        out, state = cached_piece(
            self.decoder, x, state, self.config.segment_length, self.memory_length, self._owner()
        )
        return out.logits, state

    def forward(self, x: Tensor, state: DecoderCache | None = None) -> tuple[Tensor, DecoderCache]:
        c = self.config
        check_sequence_input(x, c.input_size, type(self).__name__)
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        steps = steps_taken(state.steps, x.shape[0], type(self).__name__)
        return run_in_segments(
            self._piece, x, state, steps % c.segment_length, c.segment_length,
            c.grad_segments, c.output_size,
        )  # fmt: skip


class TransformerXL(SegmentTransformer):
    """Segment transformer whose tokens also read the cached last ``memory_length`` tokens.

    The cache holds keys and values of earlier segments, detached (no gradient through it,
    as in Transformer-XL); relative (rotary) positions place them before the segment.
    """

    config_class = TransformerXLConfig

    @classmethod
    def _owner(cls) -> str:
        return "transformer-xl"

    @property
    def memory_length(self) -> int:
        return self.config.memory_length
