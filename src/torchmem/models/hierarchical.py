"""A hierarchical memory: several levels, each with its own capacity and time scale.

Level 0 keeps the last N patterns the controller wrote, one per step. Level l >= 1 is
written every ``stride ** l`` steps, with the summary of what level l - 1 received in that
span: the mean of its last ``stride`` keys (renormalised) and values. Each level is a ring
of ``memory_slots`` slots, so level l remembers about ``memory_slots * stride ** l`` steps
back, ever coarser: detail for the recent past, gist for the distant one. Reads are
modern-Hopfield retrievals (:func:`torchmem.core.associative.hopfield_retrieve`) over the
filled slots of all levels at once, so a query finds a recent detail or an old summary,
whichever matches.

Wiring as the DNC: an LSTM controller reads ``[x_t; r_{t-1}]``; its interface gives the
write key and value, the read queries and their inverse temperatures; the read-out sees
``[h_t; r_t]``.

Legend: B batch, L levels, N slots per level, D key width, E value width, R read heads,
s stride.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_positive
from ..config import build_config
from ..core.addressing import unit_vector
from ..core.associative import hopfield_retrieve, recent_summary, ring_write
from .controlled import ControlledMemory


@dataclass
class HierarchicalMemoryConfig:
    """Options of :class:`HierarchicalMemory`."""

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 64
    levels: int = 3  # L
    memory_slots: int = 16  # N per level (>= stride)
    stride: int = 4  # s: level l is written every s ** l steps
    key_size: int = 32  # D
    value_size: int = 32  # E
    read_heads: int = 1  # R
    controller: str = "lstm"
    fused_controller: bool = True


class HierarchicalMemoryState(NamedTuple):
    """State after step t."""

    controller: Any
    keys: Tensor  # (B, L, N, D)
    values: Tensor  # (B, L, N, E)
    written_at: Tensor  # (B, L, N) step (from 1) of each slot's last write; 0: empty
    step: Tensor  # (B,) steps seen, t
    read_weights: Tensor  # (B, R, L, N)
    read_vectors: Tensor  # (B, R, E)


class HierarchicalMemory(ControlledMemory):
    """``y, state = model(x, state=None)``: controller + a multi-level, multi-time-scale store."""

    config_class = HierarchicalMemoryConfig

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            HierarchicalMemoryConfig,
            {"input_size": input_size, "output_size": output_size, **options},
            "hierarchical",
        )
        names = ("hidden_size", "levels", "memory_slots", "stride", "key_size", "value_size")
        check_positive(c, (*names, "read_heads"), "hierarchical")
        if c.levels > 1 and c.memory_slots < c.stride:
            raise ValueError(
                f"hierarchical option memory_slots ({c.memory_slots}) must be at least stride "
                f"({c.stride}): a level summarises the last stride slots of the one below"
            )
        # interface: key (D), value (E), queries (R D), beta per head (R)
        interface = c.key_size + c.value_size + c.read_heads * (c.key_size + 1)
        self._wire(c, interface, c.read_heads * c.value_size)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> HierarchicalMemoryState:
        c = self.config
        zeros, controller = self._zeros(batch_size, device, dtype)
        return HierarchicalMemoryState(
            controller,
            zeros(c.levels, c.memory_slots, c.key_size),
            zeros(c.levels, c.memory_slots, c.value_size),
            zeros(c.levels, c.memory_slots),
            zeros(),
            zeros(c.read_heads, c.levels, c.memory_slots),
            zeros(c.read_heads, c.value_size),
        )

    def _step(self, x_t: Tensor, state: HierarchicalMemoryState):
        c = self.config
        hidden, controller, interface = self._control(x_t, state)
        key, value, queries, beta = interface.split(
            [c.key_size, c.value_size, c.read_heads * c.key_size, c.read_heads], dim=-1
        )
        now = state.step + 1
        key = unit_vector(key)
        keys, values, written = [], [], []
        for level in range(c.levels):
            span = c.stride**level
            gate = (torch.remainder(now, span) == 0).to(now.dtype)
            if level > 0:  # what the level below received over the last span steps
                key, value = recent_summary(keys[-1], values[-1], written[-1], now - span)
            k, v, w = ring_write(
                state.keys[:, level], state.values[:, level], state.written_at[:, level],
                key, value, now, gate,
            )  # fmt: skip
            keys.append(k), values.append(v), written.append(w)
        keys, values, written = (torch.stack(t, dim=1) for t in (keys, values, written))
        xi = unit_vector(queries.unflatten(-1, (c.read_heads, c.key_size)))  # (B, R, D)
        reads, weights = hopfield_retrieve(
            xi, keys.flatten(1, 2), 1 + F.softplus(beta), values.flatten(1, 2),
            mask=written.flatten(1) > 0,
        )  # fmt: skip
        state = HierarchicalMemoryState(
            controller, keys, values, written, now, weights.unflatten(-1, written.shape[1:]), reads
        )
        return torch.cat([hidden, reads.flatten(1)], dim=-1), state
