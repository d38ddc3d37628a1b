"""MemoryEnhancedRNN: an LSTM whose every output passes through a gated product-key memory.

``h_t = LSTM(x_t, state)``, ``z_t = GatedMemory(h_t)`` (:mod:`torchmem.layers`),
``y_t = W z_t + b``. The memory is a large learned key-value table (N = subkeys^2 values,
k read per head), a long-term store of what helps across all sequences, not a per-sequence
scratchpad like the DNC's: its state is the LSTM's alone.

Legend: B batch, T time, L layers, H hidden size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor, nn

from .._validation import check_positive
from ..config import build_config
from ..layers import GatedMemory
from .lstm import LSTMBaselineState, lstm_initial_state, run_lstm


@dataclass
class MemoryEnhancedRNNConfig:
    """Options of :class:`MemoryEnhancedRNN`."""

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 128
    num_layers: int = 1
    subkeys: int = 32  # n: the memory holds n^2 values
    heads: int = 4
    topk: int = 16
    key_size: int = 64


class MemoryEnhancedRNN(nn.Module):
    """``y, state = model(x, state=None)``: LSTM -> GatedMemory -> linear read-out."""

    config_class = MemoryEnhancedRNNConfig

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            MemoryEnhancedRNNConfig,
            {"input_size": input_size, "output_size": output_size, **options},
            "memory-rnn",
        )
        names = ("hidden_size", "num_layers", "subkeys", "heads", "topk", "key_size")
        check_positive(c, names, "memory-rnn")
        self.lstm = nn.LSTM(c.input_size, c.hidden_size, c.num_layers, batch_first=True)
        self.memory = GatedMemory(
            c.hidden_size, subkeys=c.subkeys, heads=c.heads, topk=c.topk, key_size=c.key_size
        )
        self.output = nn.Linear(c.hidden_size, c.output_size)

    @classmethod
    def from_config(cls, config: MemoryEnhancedRNNConfig) -> MemoryEnhancedRNN:
        return cls(**dataclasses.asdict(config))

    def initial_state(self, batch_size: int, device=None, dtype=None) -> LSTMBaselineState:
        return lstm_initial_state(self.lstm, batch_size, device, dtype)

    def forward(self, x: Tensor, state: LSTMBaselineState | None = None):
        """x (B, T, input_size) -> y (B, T, output_size), new state."""
        hidden, state = run_lstm(self.lstm, x, state, "MemoryEnhancedRNN")
        return self.output(self.memory(hidden)), state
