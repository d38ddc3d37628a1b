"""The LSTM baseline: no external memory, same interface as every memory model.

Legend: B batch, T time, L layers, H hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .._validation import check_sequence_input
from ..config import build_config


@dataclass
class LSTMConfig:
    """Options of the LSTM baseline."""

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 256
    num_layers: int = 1


class LSTMBaselineState(NamedTuple):
    hidden: Tensor  # (B, L, H)
    cell: Tensor  # (B, L, H)


class LSTM(nn.Module):
    """``nn.LSTM`` (batch first) plus a linear read-out, with torchmem's state conventions."""

    config_class = LSTMConfig

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = build_config(
            LSTMConfig, {"input_size": input_size, "output_size": output_size, **options}, "lstm"
        )
        c = self.config
        self.lstm = nn.LSTM(c.input_size, c.hidden_size, c.num_layers, batch_first=True)
        self.output = nn.Linear(c.hidden_size, c.output_size)

    @classmethod
    def from_config(cls, config: LSTMConfig) -> LSTM:
        from dataclasses import asdict

        return cls(**asdict(config))

    def initial_state(self, batch_size: int, device=None, dtype=None) -> LSTMBaselineState:
        return lstm_initial_state(self.lstm, batch_size, device, dtype)

    def forward(self, x: Tensor, state: LSTMBaselineState | None = None):
        """x (B, T, input_size) -> y (B, T, output_size), new state."""
        out, state = run_lstm(self.lstm, x, state, "LSTM")
        return self.output(out), state


def lstm_initial_state(lstm: nn.LSTM, batch_size: int, device=None, dtype=None):
    """Zero :class:`LSTMBaselineState` of an ``nn.LSTM``, on its device and dtype unless given."""
    p = next(lstm.parameters())
    shape = (batch_size, lstm.num_layers, lstm.hidden_size)
    zeros = torch.zeros(shape, device=device or p.device, dtype=dtype or p.dtype)
    return LSTMBaselineState(zeros, zeros)


def run_lstm(
    lstm: nn.LSTM, x: Tensor, state: LSTMBaselineState | None, owner: str
) -> tuple[Tensor, LSTMBaselineState]:
    """Check x (B, T, I) and run a batch-first ``nn.LSTM`` from a batch-first state:
    ``(outputs (B, T, H), new state)``."""
    check_sequence_input(x, lstm.input_size, owner)
    if state is None:
        state = lstm_initial_state(lstm, x.shape[0], device=x.device, dtype=x.dtype)
    hx = (state.hidden.transpose(0, 1).contiguous(), state.cell.transpose(0, 1).contiguous())
    out, (h, c) = lstm(x, hx)
    return out, LSTMBaselineState(h.transpose(0, 1), c.transpose(0, 1))
