"""Controllers: the recurrent (or feed-forward) network that drives a memory.

Legend: B batch, I controller input width, H hidden size.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor, nn


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
    """One LSTM cell stepped by hand so the memory's reads can be fed back every step."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.cell = nn.LSTMCell(input_size, hidden_size)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> LSTMState:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return LSTMState(zeros, zeros)

    def step(self, inputs: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """inputs (B, I) -> output h_t (B, H) and the new state."""
        hidden, cell = self.cell(inputs, (state.hidden, state.cell))
        return hidden, LSTMState(hidden, cell)


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


def make_controller(kind: str, input_size: int, hidden_size: int) -> nn.Module:
    if kind not in CONTROLLERS:
        raise ValueError(
            f"unknown controller {kind!r}; valid controllers: {', '.join(CONTROLLERS)}"
        )
    return CONTROLLERS[kind](input_size, hidden_size)
