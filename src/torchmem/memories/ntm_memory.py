"""The NTM's memory and heads: parameters of the head interface, and one memory step.

Legend: B batch, H controller hidden size, N slots, W slot width (the NTM paper's M),
R read heads, V write heads, S = 2 * shift_range + 1 allowed shifts.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..core.addressing import erase_and_add, ntm_address, read_memory


class NTMMemoryState(NamedTuple):
    memory: Tensor  # (B, N, W)  M_t
    read_weights: Tensor  # (B, R, N)  w^r_t, the weights used at step t
    write_weights: Tensor  # (B, V, N)  w^w_t
    read_vectors: Tensor  # (B, R, W)  r_t


class NTMMemory(nn.Module):
    """Turns the controller output into head parameters and performs one write and one read.

    Per head the interface is: key k (W), strength beta (softplus), gate g (sigmoid),
    shift s (softmax over S), sharpening gamma (1 + softplus); write heads add erase e
    (sigmoid, W) and add a (tanh, W). As Collier & Beel (2018) recommend, the raw controller
    outputs are clipped to [-clip, clip] and the memory starts at a small constant.
    """

    def __init__(
        self,
        hidden_size: int,
        memory_slots: int,
        memory_width: int,
        read_heads: int,
        write_heads: int,
        shift_range: int,
        clip: float,
        init_memory: float,
    ):
        super().__init__()
        self.memory_slots, self.memory_width = memory_slots, memory_width
        self.read_heads, self.write_heads = read_heads, write_heads
        self.shifts = 2 * shift_range + 1
        self.clip, self.init_memory = clip, init_memory
        addressing = memory_width + 3 + self.shifts  # k, beta, g, s, gamma
        self.read_interface = nn.Linear(hidden_size, read_heads * addressing)
        self.write_interface = nn.Linear(hidden_size, write_heads * (addressing + 2 * memory_width))
        # Learned initial read vectors (Collier & Beel's "learned" read-vector initialisation).
        self.initial_read = nn.Parameter(torch.randn(read_heads, memory_width) * 0.01)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> NTMMemoryState:
        device = device or self.initial_read.device
        dtype = dtype or self.initial_read.dtype
        n, w = self.memory_slots, self.memory_width
        memory = torch.full((batch_size, n, w), self.init_memory, device=device, dtype=dtype)
        # Heads start focused on slot 0, so pure shifts can walk the memory from step one.
        start = torch.zeros(n, device=device, dtype=dtype)
        start[0] = 1
        read_w = start.expand(batch_size, self.read_heads, n)
        write_w = start.expand(batch_size, self.write_heads, n)
        read = self.initial_read.to(device=device, dtype=dtype).expand(batch_size, -1, -1)
        return NTMMemoryState(memory, read_w, write_w, read)

    def _address(self, raw: Tensor, memory: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        """raw (B, heads, width) head parameters -> weights (B, heads, N), rest of raw."""
        w = self.memory_width
        key, strength, gate = raw[..., :w], raw[..., w], raw[..., w + 1]
        shift = raw[..., w + 2 : w + 2 + self.shifts]
        gamma = raw[..., w + 2 + self.shifts]
        weights = ntm_address(
            memory,
            previous,
            key,
            F.softplus(strength),
            torch.sigmoid(gate),
            torch.softmax(shift, dim=-1),
            1 + F.softplus(gamma),
        )
        return weights, raw[..., w + 3 + self.shifts :]

    def step(self, hidden: Tensor, state: NTMMemoryState) -> NTMMemoryState:
        """hidden (B, H) -> the memory state after one write then one read."""
        batch = hidden.shape[0]
        write_raw = self.write_interface(hidden).clamp(-self.clip, self.clip)
        write_raw = write_raw.view(batch, self.write_heads, -1)
        write_w, rest = self._address(write_raw, state.memory, state.write_weights)
        w = self.memory_width
        erase, add = torch.sigmoid(rest[..., :w]), torch.tanh(rest[..., w:])
        memory = erase_and_add(state.memory, write_w, erase, add)

        read_raw = self.read_interface(hidden).clamp(-self.clip, self.clip)
        read_w, _ = self._address(
            read_raw.view(batch, self.read_heads, -1), memory, state.read_weights
        )
        return NTMMemoryState(memory, read_w, write_w, read_memory(memory, read_w))
