"""Neural Turing Machine (Graves, Wayne & Danihelka 2014), wired: controller + memory + read-out.

Legend: B batch, T time, N slots, W slot width, R read heads, V write heads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .._validation import check_positive
from ..config import build_config
from ..memories.ntm_memory import NTMMemory, NTMMemoryState
from ._unroll import run_model
from .controller import make_controller


@dataclass
class NTMConfig:
    """NTM options. Defaults: the NTM paper's copy setup (N=128, M=20, one read and one write
    head, shifts -1..1) with a 100-unit LSTM controller."""

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 100
    memory_slots: int = 128  # N
    memory_width: int = 20  # W (M in the NTM paper)
    read_heads: int = 1  # R
    write_heads: int = 1
    shift_range: int = 1  # shifts -k..k
    controller: str = "lstm"  # or "feedforward"
    clip: float = 20.0  # controller-output clipping (Collier & Beel 2018)
    init_memory: float = 1e-6  # constant memory initialisation (Collier & Beel 2018)
    # Run the LSTM controller's step as one C++ operator on CPU (nn.LSTMCell's maths and
    # parameters; differentiable once). False: nn.LSTMCell, e.g. for double backward.
    fused_controller: bool = True


class NTMState(NamedTuple):
    """NTM state after step t; the weights are those used at step t."""

    controller: Any  # LSTMState or FeedForwardState, (B, H) tensors
    memory: Tensor  # (B, N, W)
    read_weights: Tensor  # (B, R, N)
    write_weights: Tensor  # (B, V, N)
    read_vectors: Tensor  # (B, R, W)


class NTM(nn.Module):
    """``y, state = ntm(x, state=None)``, x (B, T, input_size) -> y (B, T, output_size) logits."""

    config_class = NTMConfig

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            NTMConfig, {"input_size": input_size, "output_size": output_size, **options}, "ntm"
        )
        check_positive(
            c, ("hidden_size", "memory_slots", "memory_width", "read_heads", "write_heads"), "ntm"
        )
        if c.shift_range < 0 or 2 * c.shift_range + 1 > c.memory_slots:
            raise ValueError(
                f"ntm shift_range must be in [0, (memory_slots-1)/2], got {c.shift_range}"
            )
        reads = c.read_heads * c.memory_width
        self.controller = make_controller(
            c.controller, c.input_size + reads, c.hidden_size, c.fused_controller
        )
        self.memory = NTMMemory(
            c.hidden_size,
            c.memory_slots,
            c.memory_width,
            c.read_heads,
            c.write_heads,
            c.shift_range,
            c.clip,
            c.init_memory,
        )
        self.output = nn.Linear(c.hidden_size + reads, c.output_size)

    @classmethod
    def from_config(cls, config: NTMConfig) -> NTM:
        return cls(**dataclasses.asdict(config))

    def initial_state(self, batch_size: int, device=None, dtype=None) -> NTMState:
        p = self.output.weight
        device, dtype = device or p.device, dtype or p.dtype
        mem = self.memory.initial_state(batch_size, device, dtype)
        return NTMState(self.controller.initial_state(batch_size, device, dtype), *mem)

    def _step(self, x_t: Tensor, state: NTMState) -> tuple[Tensor, NTMState]:
        reads = state.read_vectors.flatten(1)
        hidden, controller = self.controller.step(torch.cat([x_t, reads], dim=-1), state.controller)
        mem = self.memory.step(hidden, NTMMemoryState(*state[1:]))
        return torch.cat([hidden, mem.read_vectors.flatten(1)], dim=-1), NTMState(controller, *mem)

    def forward(self, x: Tensor, state: NTMState | None = None) -> tuple[Tensor, NTMState]:
        y, state, _ = run_model(self, x, state)
        return y, state

    def trace(self, x: Tensor, state: NTMState | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Like ``forward`` but also returns read/write weights over time, (B, T, heads, N)."""
        y, _, trace = run_model(self, x, state, ("read_weights", "write_weights"))
        return y, trace
