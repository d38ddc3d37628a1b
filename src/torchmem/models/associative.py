"""Associative and attention memory models: a controller driving delta-rule fast weights, a
Hopfield store or multi-head attention over its past.

All are wired like the DNC (:class:`ControlledMemory`, which the hierarchical memory and
the MANN share too): an LSTM (or feed-forward) controller reads ``[x_t; r_{t-1}]``, emits
an interface vector, the memory is written and then read, and the read-out sees
``[h_t; r_t]``. The maths are in :mod:`torchmem.core.associative`.

* :class:`FastWeights`: the memory is one matrix W (E x D) per sequence, written by the
  delta rule ``W_t = W_{t-1} + beta_t (v_t - W_{t-1} k_t) k_t^T`` and read ``r = W_t q``
  (Schlag, Irie & Schmidhuber 2021). Keys and queries are unit vectors, beta_t a sigmoid:
  at beta_t = 1 the value stored under k_t is replaced exactly. Memory cost E x D whatever
  the sequence length.
* :class:`HopfieldMemory`: the memory holds the last N written patterns (keys and values,
  a ring of N slots), read by modern-Hopfield retrieval ``V softmax(beta X^T xi)``
  (Ramsauer et al. 2021) with a learned inverse temperature per head; with
  ``updates`` > 1 the query is first moved ``updates - 1`` times by the Hopfield update
  ``xi <- X softmax(beta X^T xi)`` (pattern completion) before the values are read.
* :class:`AttentionMemory`: the same ring of the last N steps, per head, read by scaled
  dot-product attention ``softmax(q K^T / sqrt(D)) V`` with the keys as written.

Legend: B batch, T time, H hidden size, D key width, E value width, R read heads, N slots.
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
from ..core.associative import (
    delta_rule_write,
    fast_weight_read,
    hopfield_retrieve,
    ring_write,
)
from .controlled import ControlledMemory


@dataclass
class FastWeightsConfig:
    """Options of :class:`FastWeights`."""

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 64
    key_size: int = 32  # D
    value_size: int = 32  # E
    read_heads: int = 1  # R
    controller: str = "lstm"  # or "feedforward"
    fused_controller: bool = True


class FastWeightsState(NamedTuple):
    """State after step t."""

    controller: Any  # LSTMState or FeedForwardState
    memory: Tensor  # (B, E, D)  W_t
    write_strength: Tensor  # (B,)  beta_t
    read_vectors: Tensor  # (B, R, E)  r_t = W_t q_t


class FastWeights(ControlledMemory):
    """``y, state = model(x, state=None)``: controller + delta-rule fast-weight memory."""

    config_class = FastWeightsConfig
    trace_fields = ("write_strength",)

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            FastWeightsConfig,
            {"input_size": input_size, "output_size": output_size, **options},
            "fast-weights",
        )
        check_positive(c, ("hidden_size", "key_size", "value_size", "read_heads"), "fast-weights")
        # interface: key (D), value (E), beta (1), queries (R D)
        interface = c.key_size + c.value_size + 1 + c.read_heads * c.key_size
        self._wire(c, interface, c.read_heads * c.value_size)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> FastWeightsState:
        c = self.config
        zeros, controller = self._zeros(batch_size, device, dtype)
        return FastWeightsState(
            controller,
            zeros(c.value_size, c.key_size),
            zeros(),
            zeros(c.read_heads, c.value_size),
        )

    def _step(self, x_t: Tensor, state: FastWeightsState) -> tuple[Tensor, FastWeightsState]:
        c = self.config
        hidden, controller, interface = self._control(x_t, state)
        key, value, beta, queries = interface.split(
            [c.key_size, c.value_size, 1, c.read_heads * c.key_size], dim=-1
        )
        beta = torch.sigmoid(beta[:, 0])
        memory = delta_rule_write(state.memory, unit_vector(key), value, beta)
        queries = unit_vector(queries.unflatten(-1, (c.read_heads, c.key_size)))  # (B, R, D)
        reads = fast_weight_read(memory[:, None], queries)  # (B, R, E)
        return (
            torch.cat([hidden, reads.flatten(1)], dim=-1),
            FastWeightsState(controller, memory, beta, reads),
        )


@dataclass
class HopfieldMemoryConfig:
    """Options of :class:`HopfieldMemory`."""

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 64
    memory_slots: int = 64  # N: the last N written patterns are kept
    key_size: int = 32  # D
    value_size: int = 32  # E
    read_heads: int = 1  # R
    updates: int = 1  # Hopfield updates per read (>= 1; the last one reads the values)
    controller: str = "lstm"
    fused_controller: bool = True


class HopfieldMemoryState(NamedTuple):
    """State after step t: the ring of stored patterns and the reads of step t."""

    controller: Any
    keys: Tensor  # (B, N, D)  X
    values: Tensor  # (B, N, E)  V
    written_at: Tensor  # (B, N) step (from 1) each slot was last written at; 0: empty
    read_weights: Tensor  # (B, R, N)  softmax(beta X^T xi) of the last update
    read_vectors: Tensor  # (B, R, E)


class HopfieldMemory(ControlledMemory):
    """``y, state = model(x, state=None)``: controller + modern-Hopfield pattern store."""

    config_class = HopfieldMemoryConfig

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            HopfieldMemoryConfig,
            {"input_size": input_size, "output_size": output_size, **options},
            "hopfield",
        )
        check_positive(
            c,
            ("hidden_size", "memory_slots", "key_size", "value_size", "read_heads", "updates"),
            "hopfield",
        )
        # interface: key (D), value (E), queries (R D), beta per head (R)
        interface = c.key_size + c.value_size + c.read_heads * (c.key_size + 1)
        self._wire(c, interface, c.read_heads * c.value_size)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> HopfieldMemoryState:
        c = self.config
        zeros, controller = self._zeros(batch_size, device, dtype)
        return HopfieldMemoryState(
            controller,
            zeros(c.memory_slots, c.key_size),
            zeros(c.memory_slots, c.value_size),
            zeros(c.memory_slots),
            zeros(c.read_heads, c.memory_slots),
            zeros(c.read_heads, c.value_size),
        )

    def _step(self, x_t: Tensor, state: HopfieldMemoryState) -> tuple[Tensor, HopfieldMemoryState]:
        c = self.config
        hidden, controller, interface = self._control(x_t, state)
        key, value, queries, beta = interface.split(
            [c.key_size, c.value_size, c.read_heads * c.key_size, c.read_heads], dim=-1
        )
        # Write the pattern over the least recently written slot (an empty one first, in
        # slot order: a ring), then read, so the pattern of this step is already retrievable.
        now = state.written_at.amax(-1) + 1
        keys, values, written = ring_write(
            state.keys, state.values, state.written_at, unit_vector(key), value, now,
            torch.ones_like(now),
        )  # fmt: skip
        filled = written > 0
        beta = 1 + F.softplus(beta)  # (B, R), >= 1 as DNC key strengths
        xi = unit_vector(queries.unflatten(-1, (c.read_heads, c.key_size)))  # (B, R, D)
        for _ in range(c.updates - 1):
            xi, _ = hopfield_retrieve(xi, keys, beta, mask=filled)
        reads, weights = hopfield_retrieve(xi, keys, beta, values, mask=filled)
        state = HopfieldMemoryState(controller, keys, values, written, weights, reads)
        return torch.cat([hidden, reads.flatten(1)], dim=-1), state


@dataclass
class AttentionMemoryConfig:
    """Options of :class:`AttentionMemory`."""

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 64
    memory_slots: int = 64  # N: the last N steps' keys and values are kept
    num_heads: int = 4  # attention heads, each with its own key/value projections
    key_size: int = 16  # per head
    value_size: int = 16  # per head
    controller: str = "lstm"
    fused_controller: bool = True


class AttentionMemoryState(NamedTuple):
    """State after step t: the ring of past keys and values per head, and this step's read."""

    controller: Any
    keys: Tensor  # (B, heads, N, D)
    values: Tensor  # (B, heads, N, E)
    written_at: Tensor  # (B, N) step (from 1) of each slot's last write; 0: empty
    read_weights: Tensor  # (B, heads, N)
    read_vectors: Tensor  # (B, heads, E)


class AttentionMemory(ControlledMemory):
    """``y, state = model(x, state=None)``: controller + multi-head attention over a memory of
    its last N steps (the keys and values it wrote), scaled dot-product as in Vaswani et al.
    (2017): ``softmax(q K^T / sqrt(D)) V`` per head, keys not normalised, one fixed
    temperature; the Hopfield memory is the variant with unit keys and learned inverse
    temperatures."""

    config_class = AttentionMemoryConfig

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            AttentionMemoryConfig,
            {"input_size": input_size, "output_size": output_size, **options},
            "attention",
        )
        check_positive(
            c, ("hidden_size", "memory_slots", "num_heads", "key_size", "value_size"), "attention"
        )
        # per head: write key (D), write value (E), query (D)
        interface = c.num_heads * (2 * c.key_size + c.value_size)
        self._wire(c, interface, c.num_heads * c.value_size)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> AttentionMemoryState:
        c = self.config
        zeros, controller = self._zeros(batch_size, device, dtype)
        return AttentionMemoryState(
            controller,
            zeros(c.num_heads, c.memory_slots, c.key_size),
            zeros(c.num_heads, c.memory_slots, c.value_size),
            zeros(c.memory_slots),
            zeros(c.num_heads, c.memory_slots),
            zeros(c.num_heads, c.value_size),
        )

    def _step(self, x_t: Tensor, state: AttentionMemoryState):
        c = self.config
        hidden, controller, interface = self._control(x_t, state)
        key, value, query = interface.unflatten(
            -1, (c.num_heads, 2 * c.key_size + c.value_size)
        ).split(
            [c.key_size, c.value_size, c.key_size], dim=-1
        )  # (B, heads, D), (B, heads, E), (B, heads, D)
        # The least recently written slot takes this step's keys and values (all heads).
        now = state.written_at.amax(-1) + 1
        keys, values, written = ring_write(
            state.keys, state.values, state.written_at, key, value, now, torch.ones_like(now)
        )
        reads, weights = hopfield_retrieve(
            query[:, :, None], keys, c.key_size**-0.5, values, mask=(written > 0)[:, None]
        )  # (B, heads, 1, E), (B, heads, 1, N)
        reads, weights = reads[:, :, 0], weights[:, :, 0]
        state = AttentionMemoryState(controller, keys, values, written, weights, reads)
        return torch.cat([hidden, reads.flatten(1)], dim=-1), state
