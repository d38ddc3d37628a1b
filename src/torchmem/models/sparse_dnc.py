"""The sparse DNC (SDNC; Rae et al. 2016, supplementary): SAM's memory with the DNC's
temporal links, kept sparse.

Per step, after SAM's write (to the words last read and the least recently accessed one,
:mod:`torchmem.core.sparse`):

    L_t      = the DNC's link update on the sparse L_{t-1} and p_{t-1}, each row then cut to
               its K_L largest entries                                   (sparse_link_update)
    p_t      = the DNC's precedence update, cut to its K_L largest entries
    f, b     = L_t w^R_{t-1}, L_t^T w^R_{t-1}, each cut to its K largest entries
    c        = the K-sparse content weighting (SAM's read)
    w^R_t    = pi[1] b + pi[2] c + pi[3] f                         (pi: softmax read modes)

so each read head reads at most 3K words and a step touches O(R K + K_L) of them. The memory
is lazily materialised as in :class:`~torchmem.models.sam.SAM` (exact: untouched rows have no
links either), so a step's cost does not depend on N, and nothing is N x N.

What this reading of the paper fixes where it is brief: rows of L are cut to K_L entries
(columns are not cut separately; b is computed exactly from the rows), and the R read heads'
weightings are averaged in the write's gamma w^R_{t-1} term.

Legend: B batch, N slots, S materialised rows, W width, R read heads, K words per content
read, K_L link entries per row.
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
    dense_weights,
    least_recently_used,
    record_access,
    sam_write_weights,
    sparse_content_weights,
    sparse_directional_weights,
    sparse_link_update,
    sparse_precedence,
    sparse_read,
    sparse_write,
    top_entries,
)
from .controlled import ControlledMemory
from .sam import GROW_BLOCK, materialise


@dataclass
class SparseDNCConfig:
    """Options of :class:`SparseDNC` (paper: K = 4, K_L = 8, delta = 0.005)."""

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 64
    memory_slots: int = 1024  # N: any size; only touched words are stored
    memory_width: int = 16  # W
    read_heads: int = 1  # R
    sparse_reads: int = 4  # K
    link_entries: int = 8  # K_L
    access_threshold: float = 0.005  # delta
    memory_init: float = 0.0
    controller: str = "lstm"
    fused_controller: bool = True


class SparseDNCState(NamedTuple):
    """State after step t."""

    controller: Any
    memory: Tensor  # (B, S, W)
    last_access: Tensor  # (B, S)  -1 for never
    frontier: Tensor  # (B,) long
    time: Tensor  # (B,)
    link_index: Tensor  # (B, S, K_L) long  L_t, row-sparse
    link_weights: Tensor  # (B, S, K_L)
    precedence_index: Tensor  # (B, K_L) long  p_t, sparse
    precedence: Tensor  # (B, K_L)
    write_index: Tensor  # (B, 3 R K + 1) long
    write_weights: Tensor  # (B, 3 R K + 1)
    read_index: Tensor  # (B, R, 3 K) long  [backward | content | forward]
    read_weights: Tensor  # (B, R, 3 K)
    read_vectors: Tensor  # (B, R, W)


class SparseDNC(ControlledMemory):
    """``y, state = model(x, state=None)``: LSTM controller + sparse DNC memory."""

    config_class = SparseDNCConfig
    trace_fields = ("read_index", "read_weights", "write_index", "write_weights")

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            SparseDNCConfig,
            {"input_size": input_size, "output_size": output_size, **options},
            "sparse-dnc",
        )
        sizes = ("hidden_size", "memory_slots", "memory_width", "read_heads", "sparse_reads",
                 "link_entries")  # fmt: skip
        check_positive(c, sizes, "sparse-dnc")
        if c.sparse_reads > c.memory_slots:
            raise ValueError(
                f"sparse-dnc option sparse_reads ({c.sparse_reads}) must not exceed "
                f"memory_slots ({c.memory_slots})"
            )
        if not 0 <= c.access_threshold < 1:
            raise ValueError(
                f"sparse-dnc option access_threshold must be in [0, 1), got {c.access_threshold}"
            )
        # per read head: key (W), strength, 3 read modes; the write: add (W), alpha, gamma
        interface = c.read_heads * (c.memory_width + 4) + c.memory_width + 2
        self._wire(c, interface, c.read_heads * c.memory_width)

    def _rows_needed(self, frontier: int) -> int:
        c = self.config
        return min(c.memory_slots, frontier + c.sparse_reads + 1)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> SparseDNCState:
        c = self.config
        zeros, controller = self._zeros(batch_size, device, dtype)
        rows = min(c.memory_slots, self._rows_needed(0) + GROW_BLOCK)
        k = min(c.sparse_reads, rows)
        keep = min(c.link_entries, rows)
        index = torch.zeros(batch_size, dtype=torch.long, device=zeros(0).device)
        return SparseDNCState(
            controller,
            zeros(rows, c.memory_width) + c.memory_init,
            zeros(rows) - 1,
            index,
            zeros() - 1,
            index.new_zeros(batch_size, rows, keep),
            zeros(rows, keep),
            index.new_zeros(batch_size, keep),
            zeros(keep),
            index.new_zeros(batch_size, 3 * c.read_heads * k + 1),
            zeros(3 * c.read_heads * k + 1),
            index.new_zeros(batch_size, c.read_heads, 3 * k),
            zeros(c.read_heads, 3 * k),
            zeros(c.read_heads, c.memory_width),
        )

    def _step(self, x_t: Tensor, state: SparseDNCState) -> tuple[Tensor, SparseDNCState]:
        c = self.config
        needed = self._rows_needed(int(state.frontier.max()))
        if needed > state.memory.shape[1]:
            state = materialise(state, min(c.memory_slots, needed + GROW_BLOCK), c.memory_init)
        rows = state.memory.shape[1]
        hidden, controller, interface = self._control(x_t, state)
        reads, write = interface.split(
            [c.read_heads * (c.memory_width + 4), c.memory_width + 2], dim=-1
        )
        keys, strength, modes = reads.unflatten(-1, (c.read_heads, -1)).split(
            [c.memory_width, 1, 3], dim=-1
        )
        add, gates = write.split([c.memory_width, 2], dim=-1)
        alpha, gamma = torch.sigmoid(gates).unbind(-1)

        lru = least_recently_used(state.last_access)
        write_index, write_weights = sam_write_weights(
            state.read_index, state.read_weights, lru, alpha, gamma
        )
        memory = sparse_write(state.memory, lru, write_index, write_weights, add)
        written = dense_weights(write_index, write_weights, rows)  # (B, S)
        link_index, link_weights = sparse_link_update(
            state.link_index, state.link_weights, written, state.precedence_index, state.precedence
        )
        precedence_index, precedence = sparse_precedence(
            state.precedence_index, state.precedence, written, c.link_entries
        )

        previous = dense_weights(state.read_index, state.read_weights, rows)  # (B, R, S)
        forward, backward = sparse_directional_weights(link_index, link_weights, previous)
        content_index, content = sparse_content_weights(
            memory, keys, oneplus(strength[..., 0]), c.sparse_reads
        )
        backward_index, backward = top_entries(backward, c.sparse_reads)
        forward_index, forward = top_entries(forward, c.sparse_reads)
        pi = torch.softmax(modes, dim=-1)  # (B, R, 3)
        read_index = torch.cat([backward_index, content_index, forward_index], dim=-1)
        read_weights = torch.cat(
            [pi[..., :1] * backward, pi[..., 1:2] * content, pi[..., 2:] * forward], dim=-1
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
        state = SparseDNCState(
            controller, memory, last_access, frontier, time, link_index, link_weights,
            precedence_index, precedence, write_index, write_weights, read_index, read_weights,
            read_vectors,
        )  # fmt: skip
        return torch.cat([hidden, read_vectors.flatten(1)], dim=-1), state
