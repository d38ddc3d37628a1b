"""A large key-value memory as a layer: product-key lookup (Lample et al. 2019).

``MemoryLayer`` maps ``(..., input_size)`` to ``(..., value_size)``: each head turns the
input into a query, finds its k best of N = n^2 product keys exactly in O(n + k^2)
(:func:`torchmem.core.product_keys.product_key_topk`) and reads the softmax-weighted sum
of their values; the heads' reads are summed. Only k values per head and position take
part, so a memory of 65,536 values costs about what 512 dense ones would, and only those
values receive gradient. Differences from the paper: queries are layer-normalised (the
paper batch-normalises them, which would make one example's output depend on the others
in its batch), and the values are a plain dense parameter (the paper's sparse
EmbeddingBag updates are an optimisation this CPU-first layer does without).

``RecurrentMemoryLayer`` is the per-sequence counterpart: a delta-rule associative memory
written and read by the input at every step, carried across calls in an explicit state.

``GatedMemory`` puts it beside the input: ``y = (1 - g) x + g read``, g = sigmoid(W x + b)
per feature, so a network starts close to its memory-less self and learns how much to
read.

Legend: B any leading dims, H heads, n sub-keys per half, N = n^2, k keys read per head,
D key width, E value width.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .._validation import check_sequence_input
from ..core.associative import delta_rule_write, fast_weight_read
from ..core.product_keys import product_key_read


def _check_sizes(owner: str, **sizes: object) -> None:
    """Raise naming the first size that is not a positive integer."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner} {name} must be a positive integer, got {value!r}")


class MemoryLayer(nn.Module):
    """``read = layer(x)``: ``(..., input_size)`` -> ``(..., value_size)``.

    Args:
        input_size: width of x.
        value_size: width of the values and of the output (default input_size).
        subkeys: n, sub-keys per half; the memory holds n^2 values [128 -> 16,384].
        heads: H, independent queries whose reads are summed [4].
        topk: k, keys read per head [32].
        key_size: D, query width (even) [128].
    """

    def __init__(
        self,
        input_size: int,
        value_size: int | None = None,
        subkeys: int = 128,
        heads: int = 4,
        topk: int = 32,
        key_size: int = 128,
    ) -> None:
        super().__init__()
        value_size = value_size or input_size
        _check_sizes(
            "MemoryLayer",
            input_size=input_size,
            value_size=value_size,
            subkeys=subkeys,
            heads=heads,
            topk=topk,
            key_size=key_size,
        )
        if key_size % 2:
            raise ValueError(f"MemoryLayer key_size must be even (two halves), got {key_size}")
        if topk > subkeys * subkeys:
            raise ValueError(
                f"MemoryLayer topk ({topk}) cannot exceed the number of values "
                f"({subkeys}^2 = {subkeys * subkeys})"
            )
        self.input_size, self.value_size, self.heads, self.topk = (
            input_size,
            value_size,
            heads,
            topk,
        )
        self.query = nn.Linear(input_size, heads * key_size)
        self.query_norm = nn.LayerNorm(key_size)
        # Sub-keys uniform on the sphere's scale, values small: reads start near zero.
        self.subkeys = nn.Parameter(
            torch.randn(heads, 2, subkeys, key_size // 2) / (key_size // 2) ** 0.5
        )
        self.values = nn.Parameter(torch.randn(subkeys * subkeys, value_size) / value_size**0.5)

    @property
    def memory_size(self) -> int:
        """N, the number of values."""
        return self.values.shape[0]

    def lookup(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(read (..., E), weights (..., H, k), indices (..., H, k))`` for inspection."""
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"MemoryLayer expects inputs of width {self.input_size} in the last dim, "
                f"got shape {tuple(x.shape)}"
            )
        query = self.query_norm(self.query(x).unflatten(-1, (self.heads, -1)))
        read, weights, indices = product_key_read(query, self.subkeys, self.values, self.topk)
        return read.sum(-2), weights, indices

    def forward(self, x: Tensor) -> Tensor:
        return self.lookup(x)[0]


class GatedMemory(nn.Module):
    """``y = (1 - g) x + g MemoryLayer(x)`` with a per-feature gate g = sigmoid(W x + b);
    ``(..., size)`` -> ``(..., size)``. ``memory_options`` go to :class:`MemoryLayer`."""

    def __init__(self, size: int, gate_bias: float = -2.0, **memory_options) -> None:
        super().__init__()
        self.memory = MemoryLayer(size, size, **memory_options)
        self.gate = nn.Linear(size, size)
        nn.init.constant_(self.gate.bias, gate_bias)  # sigmoid(-2) = 0.12: mostly x at first

    def forward(self, x: Tensor) -> Tensor:
        g = torch.sigmoid(self.gate(x))
        return (1 - g) * x + g * self.memory(x)


class RecurrentMemoryState(NamedTuple):
    """State of :class:`RecurrentMemoryLayer`: one delta-rule matrix per head."""

    memory: Tensor  # (B, heads, E, D)


class RecurrentMemoryLayer(nn.Module):
    """``y, state = layer(x, state=None)``: ``(B, T, size)`` -> ``(B, T, size)`` with a
    per-sequence associative memory carried across calls.

    At each step the input itself drives the memory: per head, a unit key k, a value v, a
    write strength beta = sigmoid(.) and a unit query q are linear in x_t; the memory W
    (E x D) is written by the delta rule ``W += beta (v - W k) k^T`` and read ``r = W q``
    (:mod:`torchmem.core.associative`), and ``y_t = x_t + W_o [r_1; ...; r_heads]``. The
    read-out starts at zero, so the layer starts as the identity. Memory cost heads x E x D
    per sequence, whatever its length: a recurrent alternative to attention over the past
    (the linear-transformer-as-fast-weights view of Schlag, Irie & Schmidhuber 2021).
    """

    def __init__(self, size: int, heads: int = 4, key_size: int = 32, value_size: int = 32):
        super().__init__()
        _check_sizes(
            "RecurrentMemoryLayer", size=size, heads=heads, key_size=key_size, value_size=value_size
        )
        self.size, self.heads, self.key_size, self.value_size = size, heads, key_size, value_size
        self.interface = nn.Linear(size, heads * (2 * key_size + value_size + 1))
        self.read_out = nn.Linear(heads * value_size, size)
        nn.init.zeros_(self.read_out.weight)
        nn.init.zeros_(self.read_out.bias)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> RecurrentMemoryState:
        p = self.read_out.weight
        shape = (batch_size, self.heads, self.value_size, self.key_size)
        return RecurrentMemoryState(
            torch.zeros(shape, device=device or p.device, dtype=dtype or p.dtype)
        )

    def forward(
        self, x: Tensor, state: RecurrentMemoryState | None = None
    ) -> tuple[Tensor, RecurrentMemoryState]:
        check_sequence_input(x, self.size, "RecurrentMemoryLayer")
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        d, e = self.key_size, self.value_size
        parts = self.interface(x).unflatten(-1, (self.heads, 2 * d + e + 1))
        key, value, query, beta = parts.split([d, e, d, 1], dim=-1)  # (B, T, heads, .)
        key = torch.nn.functional.normalize(key, dim=-1, eps=1e-6)
        query = torch.nn.functional.normalize(query, dim=-1, eps=1e-6)
        beta = torch.sigmoid(beta[..., 0])
        memory, reads = state.memory, []
        for t in range(x.shape[1]):
            memory = delta_rule_write(memory, key[:, t], value[:, t], beta[:, t])
            reads.append(fast_weight_read(memory, query[:, t]))  # (B, heads, E)
        reads = torch.stack(reads, dim=1).flatten(2)  # (B, T, heads E)
        return x + self.read_out(reads), RecurrentMemoryState(memory)


class TransformerMemoryState(NamedTuple):
    """State of :class:`TransformerMemoryLayer`: the memory tokens carried to the next
    segment."""

    memory: Tensor  # (B, M, size)


class TransformerMemoryLayer(nn.Module):
    """``y, state = layer(x, state=None)``: a transformer layer that reads a long sequence
    segment by segment and carries ``memory_tokens`` tokens across segments (the Recurrent
    Memory Transformer of Bulatov, Kuratov & Burtsev 2022).

    Each segment of ``segment_length`` steps is processed as ``[read memory; segment;
    write memory]`` by one pre-norm ``nn.TransformerEncoderLayer``; the outputs at the write
    positions are the memory of the next segment, the outputs at the segment positions are
    ``y``. With ``causal``, a segment token sees the read memory and the segment up to
    itself, and the write tokens see everything. The first segment reads learned initial
    memory tokens. A call's last, shorter segment is processed as it is, so calls split at
    segment boundaries give the same outputs as one call.
    """

    def __init__(
        self,
        size: int,
        memory_tokens: int = 8,
        segment_length: int = 32,
        heads: int = 4,
        ff_size: int | None = None,
        causal: bool = True,
    ) -> None:
        super().__init__()
        _check_sizes(
            "TransformerMemoryLayer",
            size=size,
            memory_tokens=memory_tokens,
            segment_length=segment_length,
            heads=heads,
        )
        if size % heads:
            raise ValueError(f"TransformerMemoryLayer size ({size}) must divide by heads ({heads})")
        self.size, self.memory_tokens, self.segment_length = size, memory_tokens, segment_length
        self.causal = causal
        self.block = nn.TransformerEncoderLayer(
            size, heads, ff_size or 4 * size, dropout=0.0, batch_first=True, norm_first=True
        )
        self.initial_memory = nn.Parameter(torch.randn(memory_tokens, size) * size**-0.5)
        self.write_embedding = nn.Parameter(torch.zeros(memory_tokens, size))

    def initial_state(self, batch_size: int, device=None, dtype=None) -> TransformerMemoryState:
        memory = self.initial_memory.expand(batch_size, -1, -1)
        return TransformerMemoryState(memory.to(device=device, dtype=dtype))

    def _mask(self, length: int, device) -> Tensor | None:
        """``(M + L + M) x (M + L + M)`` bool, True = may not attend."""
        if not self.causal:
            return None
        m = self.memory_tokens
        total = 2 * m + length
        blocked = torch.zeros(total, total, dtype=torch.bool, device=device)
        future = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
        blocked[:m, m : m + length] = True  # the read memory comes before the segment
        blocked[m : m + length, m : m + length] = future  # segment: causal
        blocked[: m + length, m + length :] = True  # nobody but the writers sees the writers
        blocked[m + length :, m + length :] = False
        return blocked

    def forward(
        self, x: Tensor, state: TransformerMemoryState | None = None
    ) -> tuple[Tensor, TransformerMemoryState]:
        check_sequence_input(x, self.size, "TransformerMemoryLayer")
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        memory, outputs = state.memory, []
        write = self.write_embedding.to(x.dtype).expand(x.shape[0], -1, -1)
        m = self.memory_tokens
        for segment in x.split(self.segment_length, dim=1):
            length = segment.shape[1]
            tokens = torch.cat([memory, segment, memory + write], dim=1)
            out = self.block(tokens, src_mask=self._mask(length, x.device))
            outputs.append(out[:, m : m + length])
            memory = out[:, m + length :]
        return torch.cat(outputs, dim=1), TransformerMemoryState(memory)
