"""Differentiable Neural Computer (Graves et al. 2016), wired: controller + access + read-out.

Legend: B batch, T time, N slots, W slot width, R read heads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .._validation import check_positive
from ..config import build_config
from ..core.fused_link import BACKENDS
from ..memories.dnc_memory import DNCMemory, DNCMemoryState
from ._unroll import run_model
from .controller import make_controller


@dataclass
class DNCConfig:
    """DNC options. The three Csordas & Schmidhuber (2019) improvements are off by default."""

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 64
    memory_slots: int = 64  # N (>= 41 so copies of length 40 fit)
    memory_width: int = 16  # W
    read_heads: int = 1  # R
    controller: str = "lstm"  # or "feedforward"
    # Clamp the controller output h_t to [-clip, clip] before the interface layer, as
    # pytorch-dnc does; the LSTM and tanh controllers stay within [-1, 1], so at clip >= 1
    # it only guards controllers with unbounded outputs.
    clip: float = 20.0
    masking: bool = False  # masked content addressing
    deallocation: bool = False  # wipe freed slots
    link_sharpness: bool = False  # sharpen forward/backward link distributions
    # How the N x N link update runs: "auto" (fused C++ kernel on CPU, else fused torch ops),
    # "cpp", "torch", or "reference" (plain autograd through core.linkage; slowest).
    link_backend: str = "auto"
    # How each memory step runs: "auto" (one fused C++ operator with a hand-written backward
    # where it applies: CPU float32/float64, link_backend auto or cpp, none of the three
    # options above, no compile; else the composed step), "fused" (that operator or an
    # error), or "composed" (core functions + the link backend; any device, any option).
    step_backend: str = "auto"
    # torch.compile the small-op parts of the composed step (a one-off compile of a minute or
    # so). It turns the fused step off: on CPU the fused step is the faster of the two, so this
    # is for the composed path (other devices, the options above).
    compile: bool = False
    # Run the LSTM controller's step as one C++ operator on CPU (nn.LSTMCell's maths and
    # parameters; differentiable once). False: nn.LSTMCell, e.g. for double backward.
    fused_controller: bool = True


class DNCState(NamedTuple):
    """DNC state after step t; the weights are those used at step t."""

    controller: Any  # LSTMState or FeedForwardState, (B, H) tensors
    memory: Tensor  # (B, N, W)  M_t
    usage: Tensor  # (B, N)  u_t
    link: Tensor  # (B, N, N)  L_t
    precedence: Tensor  # (B, N)  p_t
    write_weights: Tensor  # (B, N)  w^w_t
    read_weights: Tensor  # (B, R, N)  w^r_t
    read_vectors: Tensor  # (B, R, W)  r_t


class DNC(nn.Module):
    """``y, state = dnc(x, state=None)``, x (B, T, input_size) -> y (B, T, output_size) logits."""

    config_class = DNCConfig

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            DNCConfig, {"input_size": input_size, "output_size": output_size, **options}, "dnc"
        )
        check_positive(c, ("hidden_size", "memory_slots", "memory_width", "read_heads"), "dnc")
        if c.link_backend not in BACKENDS:
            raise ValueError(
                f"unknown dnc link_backend {c.link_backend!r}; valid: {', '.join(BACKENDS)}"
            )
        reads = c.read_heads * c.memory_width
        self.controller = make_controller(
            c.controller, c.input_size + reads, c.hidden_size, c.fused_controller
        )
        self.memory = DNCMemory(
            c.hidden_size, c.memory_slots, c.memory_width, c.read_heads,
            c.masking, c.deallocation, c.link_sharpness, c.link_backend, c.step_backend,
        )  # fmt: skip
        self.output = nn.Linear(c.hidden_size + reads, c.output_size)
        if c.compile:
            self.memory.compile_step()

    @classmethod
    def from_config(cls, config: DNCConfig) -> DNC:
        return cls(**dataclasses.asdict(config))

    def initial_state(self, batch_size: int, device=None, dtype=None) -> DNCState:
        p = self.output.weight
        device, dtype = device or p.device, dtype or p.dtype
        mem = self.memory.initial_state(batch_size, device, dtype)
        return DNCState(self.controller.initial_state(batch_size, device, dtype), *mem)

    def _step(self, x_t: Tensor, state: DNCState) -> tuple[Tensor, DNCState]:
        reads = state.read_vectors.flatten(1)
        hidden, controller = self.controller.step(torch.cat([x_t, reads], dim=-1), state.controller)
        if self.config.clip < 1:  # both controllers' outputs lie in (-1, 1): else a no-op
            hidden = hidden.clamp(-self.config.clip, self.config.clip)
        mem = self.memory.step(hidden, DNCMemoryState(*state[1:]))
        return torch.cat([hidden, mem.read_vectors.flatten(1)], dim=-1), DNCState(controller, *mem)

    def forward(self, x: Tensor, state: DNCState | None = None) -> tuple[Tensor, DNCState]:
        y, state, _ = run_model(self, x, state)
        return y, state

    def trace(self, x: Tensor, state: DNCState | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Like ``forward`` but also returns weights and usage over time (time at dim 1)."""
        y, _, trace = run_model(self, x, state, ("read_weights", "write_weights", "usage"))
        return y, trace
