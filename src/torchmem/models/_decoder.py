"""The decoder maths shared by the segment-wise transformers: plain, Transformer-XL style, Memoria.

All three read a long sequence segment by segment with the same GPT-style pre-norm block
(causal self-attention, optional cross-attention to memory streams, feed-forward). They
differ only in what crosses a segment boundary: nothing (plain), the previous segment's
keys and values without gradient (Transformer-XL), or an Abstractor summary and reminded
engrams (Memoria). This file holds the pure functions (rotary positions, masked attention,
causal mask, segment splitting), the block, the decoder stack and the segment loop; each
model file only wires its own state through them.

Positions are rotary (RoPE) and relative to the open segment's first token: cached keys of
the previous segment sit at -C..-1, so Transformer-XL's cache and a segment continued over
several calls see exactly the relative offsets a single call would. (GPT-2 and the Memoria
paper use learned absolute positions; rotary ones keep the block identical for all three
models and give the Transformer-XL baseline the relative positions it needs.)

Legend: B batch, T tokens of the piece being processed, C cached tokens (keys and values
computed earlier: the carried previous segment, then the open segment's earlier tokens),
K = C + T keys, D width (``hidden_size``), H heads, E = D / H head width, M memory slots,
L layers, S segment length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROPE_BASE = 10_000.0


# ----------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------


def rotary_tables(
    positions: Tensor, width: int, dtype: torch.dtype, base: float = ROPE_BASE
) -> tuple[Tensor, Tensor]:
    """Cosines and sines of the rotary angles ``position * base ** (-2i / E)``, i < E/2.

    Args:
        positions: (N,) integer positions (negative allowed).
        width: E, the (even) head width.

    Returns:
        cos, sin: (N, E/2) each, in ``dtype`` on the positions' device.
    """
    exponents = torch.arange(width // 2, device=positions.device, dtype=dtype) * (-2.0 / width)
    angles = positions.to(dtype).unsqueeze(-1) * torch.pow(base, exponents)
    return angles.cos(), angles.sin()


def rotate_positions(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary position embedding (Su et al. 2021) with tables from :func:`rotary_tables`.

    Channel i of the first half pairs with channel i of the second half and the pair is
    rotated by its angle, so that ``rotate(q, m) . rotate(k, n)`` depends on ``m - n`` only.

    Args:
        x: (..., N, E) with E even.
        cos, sin: (N, E/2).

    Returns:
        (..., N, E).
    """
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


def causal_mask(cached: int, length: int, device: torch.device) -> Tensor:
    """Which keys each new token may attend to: all cached ones and itself and earlier.

    Returns:
        (T, C + T) bool, True where query i may read key j, i.e. ``j <= C + i``.
    """
    keys = torch.arange(cached + length, device=device)
    queries = torch.arange(length, device=device) + cached
    return keys.unsqueeze(0) <= queries.unsqueeze(1)


def attend(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    allowed: Tensor | None = None,
    need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention, ``softmax(q k^T / sqrt(E)) v``, with a boolean mask.

    A query that may read no key at all (an example whose memory is empty) gets a zero
    output and zero weights, not NaN.

    Args:
        query: (B, H, T, E).
        key, value: (B, H, K, E).
        allowed: bool, broadcastable to (B, H, T, K); True where reading is allowed.
            None allows everything.
        need_weights: also return the attention weights.

    Returns:
        out (B, H, T, E) and weights (B, H, T, K) (None unless ``need_weights``).
    """
    if key.shape[-2] == 0:  # nothing to read: skip the softmax over an empty axis
        empty = query.new_zeros(*query.shape[:-1], 0) if need_weights else None
        return torch.zeros_like(query), empty
    if not need_weights:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=allowed), None
    scores = query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5
    if allowed is None:
        weights = scores.softmax(dim=-1)
    else:
        # A finite fill keeps fully masked rows NaN-free (uniform, then zeroed below).
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1) * allowed
    return weights @ value, weights


def segment_pieces(filled: int, length: int, segment_length: int) -> list[tuple[int, int]]:
    """Split ``length`` new tokens at segment boundaries.

    Args:
        filled: tokens of the open segment that earlier calls already processed (< S).
        length: T, tokens given now.
        segment_length: S.

    Returns:
        ``[(start, end), ...]`` slices of the new tokens; each lies inside one segment.
    """
    pieces, start = [], 0
    room = segment_length - filled
    while start < length:
        end = min(length, start + room)
        pieces.append((start, end))
        start, room = end, segment_length
    return pieces


# ----------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------


class Memory(NamedTuple):
    """A stream of memory slots the block cross-attends to.

    Attributes:
        states: (B, M, D) slot vectors.
        allowed: (B, M) bool, False for empty (padding) slots; None when all are real.
        need_weights: return the attention each slot received.
    """

    states: Tensor
    allowed: Tensor | None = None
    need_weights: bool = False


class MultiHeadAttention(nn.Module):
    """Query, key, value and output projections around :func:`attend`."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)

    def split(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, H, N, E)."""
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def merge(self, x: Tensor) -> Tensor:
        """(B, H, N, E) -> (B, N, D)."""
        b, h, n, e = x.shape
        return x.transpose(1, 2).reshape(b, n, h * e)


class DecoderBlock(nn.Module):
    """Pre-norm GPT block: causal self-attention, memory cross-attention, feed-forward.

    ``x + SelfAttn(LN(x))``, then for each memory stream ``x + MemAttn(LN_s(x), memory_s)``
    (one cross-attention shared by every stream, one norm per stream, as in the Memoria
    Transformer), then ``x + FF(LN(x))``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        ff_size: int,
        dropout: float,
        memory_streams: int = 0,
    ) -> None:
        super().__init__()
        self.self_norm = nn.LayerNorm(hidden_size)
        self.self_attention = MultiHeadAttention(hidden_size, num_heads)
        if memory_streams:
            self.memory_norms = nn.ModuleList(
                nn.LayerNorm(hidden_size) for _ in range(memory_streams)
            )
            self.memory_attention = MultiHeadAttention(hidden_size, num_heads)
        self.ff_norm = nn.LayerNorm(hidden_size)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, ff_size), nn.GELU(), nn.Linear(ff_size, hidden_size)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        cached_keys: Tensor,
        cached_values: Tensor,
        rotary: tuple[Tensor, Tensor],
        allowed: Tensor,
        memories: Sequence[Memory] = (),
    ) -> tuple[Tensor, Tensor, Tensor, list[Tensor | None]]:
        """One block over a piece of T tokens.

        Args:
            x: (B, T, D) block input.
            cached_keys, cached_values: (B, H, C, E) un-rotated keys and values of the
                cached tokens.
            rotary: (cos, sin), each (C + T, E/2), of the keys' positions; the queries are
                the last T of them.
            allowed: (T, C + T) causal mask (see :func:`causal_mask`).
            memories: streams to cross-attend to, in order.

        Returns:
            x (B, T, D); keys and values (B, H, C + T, E) (un-rotated, for the cache); per
            stream the attention weights (B, H, T, M) when it asked for them, else None.
        """
        norms = getattr(self, "memory_norms", ())
        if len(memories) != len(norms):
            raise ValueError(
                f"this block has {len(norms)} memory stream(s), got {len(memories)} memories"
            )
        attention = self.self_attention
        normed = self.self_norm(x)
        keys = torch.cat([cached_keys, attention.split(attention.key(normed))], dim=2)
        values = torch.cat([cached_values, attention.split(attention.value(normed))], dim=2)
        cos, sin = rotary
        new = slice(cos.shape[0] - x.shape[1], None)  # the queries are the last T keys
        query = rotate_positions(attention.split(attention.query(normed)), cos[new], sin[new])
        read, _ = attend(query, rotate_positions(keys, cos, sin), values, allowed)
        x = x + self.dropout(attention.output(attention.merge(read)))

        weights: list[Tensor | None] = []
        for norm, memory in zip(norms, memories):
            cross = self.memory_attention
            mask = None if memory.allowed is None else memory.allowed[:, None, None, :]
            read, w = attend(
                cross.split(cross.query(norm(x))),
                cross.split(cross.key(memory.states)),
                cross.split(cross.value(memory.states)),
                mask,
                need_weights=memory.need_weights,
            )
            x = x + self.dropout(cross.output(cross.merge(read)))
            weights.append(w)

        x = x + self.dropout(self.feed_forward(self.ff_norm(x)))
        return x, keys, values, weights


class PieceOutput(NamedTuple):
    """What :meth:`SegmentDecoder.forward` returns for one piece.

    Attributes:
        hidden: (B, T, D) final hidden states (after the last norm).
        logits: (B, T, output_size).
        keys, values: (B, L, H, C + T, E) un-rotated keys and values, cached tokens first.
        memory_weights: per layer, per memory stream, (B, H, T, M) or None.
    """

    hidden: Tensor
    logits: Tensor
    keys: Tensor
    values: Tensor
    memory_weights: list[list[Tensor | None]]


class SegmentDecoder(nn.Module):
    """Input projection, L decoder blocks, final norm and read-out: the shared stack.

    Inputs are real vectors (B, T, input_size) (one-hot tokens in the sorting task), so the
    token embedding is a linear map.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_size: int,
        num_heads: int,
        num_layers: int,
        ff_size: int,
        dropout: float,
        memory_streams: int = 0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.embed = nn.Linear(input_size, hidden_size)
        self.embed_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(hidden_size, num_heads, ff_size, dropout, memory_streams)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, output_size)
        self.apply(_init_weights)

    def empty_cache(
        self, batch_size: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor]:
        """Keys and values of no token: two (B, L, H, 0, E) tensors."""
        width = self.embed.out_features
        shape = (batch_size, len(self.blocks), self.num_heads, 0, width // self.num_heads)
        return (
            torch.zeros(shape, device=device, dtype=dtype),
            torch.zeros(shape, device=device, dtype=dtype),
        )

    def forward(
        self,
        x: Tensor,
        cached_keys: Tensor,
        cached_values: Tensor,
        carried: int,
        memories: Sequence[Memory] = (),
    ) -> PieceOutput:
        """Run a piece of T tokens that lies inside one segment.

        Args:
            x: (B, T, input_size).
            cached_keys, cached_values: (B, L, H, C, E); the first ``carried`` tokens come
                from earlier segments (positions -carried..-1), the rest are the open
                segment's earlier tokens (positions 0..C-carried-1).
            carried: how many cached tokens belong to earlier segments.
            memories: streams every block cross-attends to.
        """
        cached = cached_keys.shape[3]
        filled, length = cached - carried, x.shape[1]
        positions = torch.arange(-carried, filled + length, device=x.device)
        rotary = rotary_tables(positions, cached_keys.shape[-1], x.dtype)
        allowed = causal_mask(cached, length, x.device)
        h = self.embed_dropout(self.embed(x))
        keys, values, weights = [], [], []
        for layer, block in enumerate(self.blocks):
            h, k, v, w = block(
                h,
                cached_keys[:, layer],
                cached_values[:, layer],
                rotary,
                allowed,
                memories,
            )
            keys.append(k)
            values.append(v)
            weights.append(w)
        hidden = self.norm(h)
        return PieceOutput(
            hidden, self.head(hidden), torch.stack(keys, 1), torch.stack(values, 1), weights
        )


def _init_weights(module: nn.Module) -> None:
    # GPT-2's initialisation: small normal weights, zero biases.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------------------
# The segment loop
# ----------------------------------------------------------------------------------------


def run_in_segments(
    piece: Callable[[Tensor, Any], tuple[Tensor, Any]],
    x: Tensor,
    state: Any,
    filled: int,
    segment_length: int,
    grad_segments: int,
    output_size: int,
) -> tuple[Tensor, Any]:
    """Feed ``x`` to ``piece`` one segment at a time, threading the state.

    Args:
        piece: ``piece(x_piece (B, T', I), state) -> (y (B, T', O), state)``, called on
            slices that each lie inside one segment.
        x: (B, T, I).
        state: the state before ``x``.
        filled: tokens of the open segment already processed.
        segment_length: S.
        grad_segments: build the autograd graph only for the last this many pieces (0: all).
            No gradient crosses a segment boundary in these models, so the gradients are
            exactly the same whenever the loss reads only those pieces' outputs.
        output_size: O (for the shape of an empty output when T = 0).

    Returns:
        y (B, T, O) and the state after ``x``.
    """
    pieces = segment_pieces(filled, x.shape[1], segment_length)
    first_with_grad = max(0, len(pieces) - grad_segments) if grad_segments else 0
    outputs = []
    for index, (start, end) in enumerate(pieces):
        with torch.set_grad_enabled(torch.is_grad_enabled() and index >= first_with_grad):
            y, state = piece(x[:, start:end], state)
        outputs.append(y)
    if not outputs:  # T = 0
        return x.new_zeros(x.shape[0], 0, output_size), state
    return torch.cat(outputs, dim=1), state


def check_segment_config(config: Any, owner: str) -> None:
    """Clear errors for sizes that cannot build the shared decoder."""
    for name in ("input_size", "output_size", "hidden_size", "num_heads", "num_layers"):
        if getattr(config, name) < 1:
            raise ValueError(f"{owner} option {name} must be >= 1, got {getattr(config, name)}")
    for name in ("ff_size", "segment_length"):
        if getattr(config, name) < 1:
            raise ValueError(f"{owner} option {name} must be >= 1, got {getattr(config, name)}")
    if config.hidden_size % config.num_heads:
        raise ValueError(
            f"{owner} option hidden_size ({config.hidden_size}) must be a multiple of "
            f"num_heads ({config.num_heads})"
        )
    if (config.hidden_size // config.num_heads) % 2:
        raise ValueError(
            f"{owner} needs an even head width hidden_size / num_heads for rotary positions, "
            f"got {config.hidden_size} / {config.num_heads} = "
            f"{config.hidden_size // config.num_heads}"
        )
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"{owner} option dropout must be in [0, 1), got {config.dropout}")
    if config.grad_segments < 0:
        raise ValueError(f"{owner} option grad_segments must be >= 0, got {config.grad_segments}")


def steps_taken(steps: Tensor, batch_size: int, owner: str) -> int:
    """Tokens processed so far, from a state's ``steps`` field (B,) (equal across the batch)."""
    if steps.shape != (batch_size,):
        raise ValueError(
            f"{owner} state is for a batch of {tuple(steps.shape)}, the input has {batch_size} "
            "rows; start a new state with initial_state(batch_size)"
        )
    return int(steps[0]) if batch_size else 0
