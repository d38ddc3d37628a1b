"""Sparse Access Memory (SAM; Rae et al. 2016), lazily materialised.

An LSTM controller fed ``[x_t; r_{t-1}]`` drives one sparse write and R sparse reads per
step (the equations are in :mod:`torchmem.core.sparse`): the write goes to the words last
read and to the least recently accessed word, which is erased first; each read takes the K
words nearest to its query. With an index of the N words the paper makes a step cost
O(log N); here the index is not needed at all:

**Lazy materialisation.** All N words start equal (``memory_init``) and never accessed,
and ties go to the lowest index, so the untouched words are always taken in index order
and every word past the highest one touched is still untouched. The state therefore holds
only the first S rows of the memory, S >= min(N, frontier + K + 1) where the frontier is
one past the highest word touched; it grows by a block when a step could reach past it.
Reads and writes over those S rows give exactly what they give over all N rows (a test
checks this against a state padded to N rows), and the cost of a step grows with the words
an episode has touched, at most K + 1 a step, never with N: one million slots cost what a
thousand do, gradients included. What it gives up against the paper's approximate index
is an episode that touches millions of words: there the exact scan of the touched rows is
O(S) a step where an index would be O(log S).

Legend: B batch, N slots, S materialised rows, W word width, R read heads, K words per
read, J = R K + 1 write entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .._validation import check_positive
from ..config import build_config
from ..core.addressing import oneplus
from ..core.sparse import (
    least_recently_used,
    record_access,
    sam_write_weights,
    sparse_content_weights,
    sparse_read,
    sparse_write,
)
from .controlled import ControlledMemory

#: Rows added at a time when a step could reach past the materialised ones.
GROW_BLOCK = 32


@dataclass
class SAMConfig:
    """Options of :class:`SAM` (paper: LSTM 100, K = 4, delta = 0.005)."""

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 100
    memory_slots: int = 1024  # N: any size; only touched words are stored
    memory_width: int = 20  # W
    read_heads: int = 1  # R
    sparse_reads: int = 4  # K words per read
    access_threshold: float = 0.005  # delta: a weight above it counts as an access
    memory_init: float = 0.0  # every word's initial value
    controller: str = "lstm"
    fused_controller: bool = True


class SAMState(NamedTuple):
    """State after step t (S grows with the words touched, see the module docstring)."""

    controller: Any
    memory: Tensor  # (B, S, W)  the first S rows of M_t; the rest equal memory_init
    last_access: Tensor  # (B, S)  U_t, -1 for never
    frontier: Tensor  # (B,) long: one past the highest row ever read or written
    time: Tensor  # (B,)  t, the step just taken (-1 before the first)
    write_index: Tensor  # (B, J) long  w^W_t as (index, weight)
    write_weights: Tensor  # (B, J)
    read_index: Tensor  # (B, R, K) long  w^R_t as (index, weight)
    read_weights: Tensor  # (B, R, K)
    read_vectors: Tensor  # (B, R, W)  r_t


#: What an untouched row holds, per state field indexed by row (dim 1); memory: memory_init.
UNTOUCHED = {"last_access": -1.0, "link_index": 0, "link_weights": 0.0}


def materialise(state: Any, rows: int, fill: float) -> Any:
    """The same state (SAM's or the sparse DNC's) with ``rows`` materialised rows: untouched
    words (``fill``, never accessed, no links) appended."""
    have = state.memory.shape[1]
    if rows <= have:
        return state
    grown = {}
    for name, value in (("memory", fill), *UNTOUCHED.items()):
        if name in state._fields:
            old = getattr(state, name)
            pad = old.new_full((old.shape[0], rows - have, *old.shape[2:]), value)
            grown[name] = torch.cat([old, pad], dim=1)
    return state._replace(**grown)


class SAM(ControlledMemory):
    """``y, state = model(x, state=None)``: LSTM controller + sparse access memory."""

    config_class = SAMConfig
    trace_fields = ("read_index", "read_weights", "write_index", "write_weights")

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            SAMConfig, {"input_size": input_size, "output_size": output_size, **options}, "sam"
        )
        check_positive(
            c, ("hidden_size", "memory_slots", "memory_width", "read_heads", "sparse_reads"), "sam"
        )
        if c.sparse_reads > c.memory_slots:
            raise ValueError(
                f"sam option sparse_reads ({c.sparse_reads}) must not exceed memory_slots "
                f"({c.memory_slots})"
            )
        if not 0 <= c.access_threshold < 1:
            raise ValueError(
                f"sam option access_threshold must be in [0, 1), got {c.access_threshold}"
            )
        # per read head: query (W) and strength (1); one write: add vector (W), alpha, gamma
        interface = c.read_heads * (c.memory_width + 1) + c.memory_width + 2
        self._wire(c, interface, c.read_heads * c.memory_width)

    def _rows_needed(self, frontier: int) -> int:
        c = self.config
        return min(c.memory_slots, frontier + c.sparse_reads + 1)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> SAMState:
        c = self.config
        zeros, controller = self._zeros(batch_size, device, dtype)
        rows = min(c.memory_slots, self._rows_needed(0) + GROW_BLOCK)
        k = min(c.sparse_reads, rows)
        index = torch.zeros(batch_size, dtype=torch.long, device=zeros(0).device)
        return SAMState(
            controller,
            zeros(rows, c.memory_width) + c.memory_init,
            zeros(rows) - 1,
            index,
            zeros() - 1,
            index.new_zeros(batch_size, c.read_heads * k + 1),
            zeros(c.read_heads * k + 1),
            index.new_zeros(batch_size, c.read_heads, k),
            zeros(c.read_heads, k),
            zeros(c.read_heads, c.memory_width),
        )

    def _step(self, x_t: Tensor, state: SAMState) -> tuple[Tensor, SAMState]:
        c = self.config
        needed = self._rows_needed(int(state.frontier.max()))
        if needed > state.memory.shape[1]:
            state = materialise(state, min(c.memory_slots, needed + GROW_BLOCK), c.memory_init)
        hidden, controller, interface = self._control(x_t, state)
        reads, write = interface.split(
            [c.read_heads * (c.memory_width + 1), c.memory_width + 2], dim=-1
        )
        keys, strength = reads.unflatten(-1, (c.read_heads, -1)).split([c.memory_width, 1], -1)
        add, gates = write.split([c.memory_width, 2], dim=-1)
        alpha, gamma = torch.sigmoid(gates).unbind(-1)

        lru = least_recently_used(state.last_access)
        write_index, write_weights = sam_write_weights(
            state.read_index, state.read_weights, lru, alpha, gamma
        )
        memory = sparse_write(state.memory, lru, write_index, write_weights, add)
        read_index, read_weights = sparse_content_weights(
            memory, keys, oneplus(strength[..., 0]), c.sparse_reads
        )
        read_vectors = sparse_read(memory, read_index, read_weights)

        time = state.time + 1
        accessed = torch.cat([read_index.flatten(1), write_index], dim=1)
        last_access = record_access(
            state.last_access,
            accessed,
            torch.cat([read_weights.flatten(1), write_weights], dim=1),
            time,
            c.access_threshold,
        )
        frontier = torch.maximum(state.frontier, accessed.max(dim=1).values + 1)
        state = SAMState(
            controller, memory, last_access, frontier, time, write_index, write_weights,
            read_index, read_weights, read_vectors,
        )  # fmt: skip
        return torch.cat([hidden, read_vectors.flatten(1)], dim=-1), state


__all__ = ["SAM", "SAMConfig", "SAMState", "materialise"]
