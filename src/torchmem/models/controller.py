"""Controllers: the recurrent (or feed-forward) network that drives a memory.

Legend: B batch, I controller input width, H hidden size.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor, nn

from ..core import fused_link


class LSTMState(NamedTuple):
    """State of one LSTM layer, batch first."""

    hidden: Tensor  # (B, H)  h_t
    cell: Tensor  # (B, H)  c_t


class FeedForwardState(NamedTuple):
    """A feed-forward controller keeps no memory; its last output is kept for inspection."""

    hidden: Tensor  # (B, H)


class Controller(Protocol):
    """What a memory model needs from its controller."""

    hidden_size: int

    def initial_state(self, batch_size: int, device=None, dtype=None): ...

    def step(self, inputs: Tensor, state) -> tuple[Tensor, object]: ...


class LSTMController(nn.Module):
    """One LSTM cell stepped by hand so the memory's reads can be fed back every step.

    ``fused``: on CPU float32/float64, run the step as one C++ operator with a hand-written
    backward (``csrc/lstm_cell.h``; nn.LSTMCell's maths and parameters, about twice as fast at
    the benchmark's sizes, differentiable once). False, or anywhere else: ``nn.LSTMCell``.
    """

    def __init__(self, input_size: int, hidden_size: int, fused: bool = True):
        super().__init__()
        self.hidden_size = hidden_size
        self.fused = fused
        self.cell = nn.LSTMCell(input_size, hidden_size)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> LSTMState:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return LSTMState(zeros, zeros)

    def step(self, inputs: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """inputs (B, I) -> output h_t (B, H) and the new state."""
        if self._use_fused(inputs):
            c = self.cell
            hidden, cell = torch.ops.torchmem_fused_link.lstm_cell(
                inputs, state.hidden, state.cell, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh
            )
        else:
            hidden, cell = self.cell(inputs, (state.hidden, state.cell))
        return hidden, LSTMState(hidden, cell)

    def _use_fused(self, inputs: Tensor) -> bool:
        return (
            self.fused
            and inputs.device.type == "cpu"
            and inputs.dtype in (torch.float32, torch.float64)
            and inputs.dtype == self.cell.weight_ih.dtype
            and fused_link.cpp_available()
        )


class FeedForwardController(nn.Module):
    """A one-layer tanh network: all memory must live in the external memory."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.layer = nn.Linear(input_size, hidden_size)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> FeedForwardState:
        return FeedForwardState(
            torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        )

    def step(self, inputs: Tensor, state: FeedForwardState) -> tuple[Tensor, FeedForwardState]:
        hidden = torch.tanh(self.layer(inputs))
        return hidden, FeedForwardState(hidden)


CONTROLLERS = {"lstm": LSTMController, "feedforward": FeedForwardController}


def make_controller(kind: str, input_size: int, hidden_size: int, fused: bool = True) -> nn.Module:
    """``fused`` applies to the LSTM controller (see LSTMController); the feed-forward one is a
    single Linear + tanh already."""
    if kind not in CONTROLLERS:
        raise ValueError(
            f"unknown controller {kind!r}; valid controllers: {', '.join(CONTROLLERS)}"
        )
    if kind == "lstm":
        return LSTMController(input_size, hidden_size, fused)
    return CONTROLLERS[kind](input_size, hidden_size)
