"""Memory-augmented neural network with least-recently-used access (Santoro et al. 2016).

"One-shot Learning with Memory-Augmented Neural Networks": an LSTM controller and a memory
M (N x W) read by content and written by LRUA, which puts new information either where
the heads last read (to refresh it) or in the least used slots (to add it). Per head h,
with key k and write gate alpha from the controller's output:

    w^w_t    = sigmoid(alpha) w^r_{t-1} + (1 - sigmoid(alpha)) w^lu_{t-1}     write weights
    M_t      = M_{t-1} with the least used slot of w^u_{t-1} zeroed, plus sum_h w^w_t k^T
    w^r_t    = softmax_i(cos(k, M_t[i]))                                      read weights
    r_t      = sum_i w^r_t[i] M_t[i]
    w^u_t    = gamma w^u_{t-1} + sum_h (w^r_t + w^w_t)                         usage
    w^lu_t[i] = 1 if w^u_t[i] <= the R-th smallest usage, else 0              R = heads

The least-used vector is a hard choice (no gradient flows through it), as in the paper.

Legend: B batch, N slots, W slot width, R heads, H hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_positive
from ..config import build_config
from ..core.addressing import cosine_similarity, oneplus
from .controlled import ControlledMemory


def least_used(usage: Tensor, count: int) -> Tensor:
    """``(B, N)`` 0/1: the slots whose usage is at most the ``count``-th smallest."""
    threshold = usage.kthvalue(count, dim=-1, keepdim=True).values
    return (usage <= threshold).to(usage.dtype)


def lrua_write(
    memory: Tensor, usage: Tensor, prev_read: Tensor, prev_least: Tensor, key: Tensor,
    gate: Tensor,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """One LRUA write.

    Args:
        memory: ``(B, N, W)`` M_{t-1}; usage: ``(B, N)`` w^u_{t-1}.
        prev_read: ``(B, R, N)`` w^r_{t-1}; prev_least: ``(B, N)`` w^lu_{t-1}.
        key: ``(B, R, W)`` what each head writes; gate: ``(B, R)`` sigmoid(alpha).

    Returns:
        ``(M_t (B, N, W), w^w_t (B, R, N))``.
    """
    write = gate[..., None] * prev_read + (1 - gate[..., None]) * prev_least[:, None]
    emptied = F.one_hot(usage.argmin(-1), memory.shape[-2]).to(memory.dtype)  # (B, N)
    memory = memory * (1 - emptied)[..., None] + write.transpose(1, 2) @ key
    return memory, write


@dataclass
class MANNConfig:
    """Options of :class:`MANN` (paper: LSTM 200, 128 slots of 40, 4 heads, gamma 0.95)."""

    input_size: int = 69
    output_size: int = 5
    hidden_size: int = 200
    memory_slots: int = 128  # N
    memory_width: int = 40  # W
    read_heads: int = 4  # R (each also writes)
    usage_decay: float = 0.95  # gamma
    # Not in the paper: a learned key strength beta >= 1 per head, w^r = softmax(beta cos),
    # as in the NTM. Without it (the paper's equation) a read over 128 slots can put at most
    # e^2 / (e^2 + 127) = 5.5% of its weight on one slot.
    read_strength: bool = False
    controller: str = "lstm"
    fused_controller: bool = True


class MANNState(NamedTuple):
    """State after step t."""

    controller: Any
    memory: Tensor  # (B, N, W)  M_t
    usage: Tensor  # (B, N)  w^u_t
    least_used: Tensor  # (B, N)  w^lu_t
    write_weights: Tensor  # (B, R, N)  w^w_t
    read_weights: Tensor  # (B, R, N)  w^r_t
    read_vectors: Tensor  # (B, R, W)  r_t


class MANN(ControlledMemory):
    """``y, state = model(x, state=None)``: LSTM controller + LRUA memory."""

    config_class = MANNConfig

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            MANNConfig, {"input_size": input_size, "output_size": output_size, **options}, "mann"
        )
        check_positive(c, ("hidden_size", "memory_slots", "memory_width", "read_heads"), "mann")
        if c.read_heads > c.memory_slots:
            raise ValueError(
                f"mann option read_heads ({c.read_heads}) must not exceed memory_slots "
                f"({c.memory_slots})"
            )
        if not 0 <= c.usage_decay <= 1:
            raise ValueError(f"mann option usage_decay must be in [0, 1], got {c.usage_decay}")
        # per head: key (W), write gate alpha (1)[, key strength (1)]
        per_head = c.memory_width + 1 + int(c.read_strength)
        self._wire(c, c.read_heads * per_head, c.read_heads * c.memory_width)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> MANNState:
        c = self.config
        zeros, controller = self._zeros(batch_size, device, dtype)
        usage = zeros(c.memory_slots)
        return MANNState(
            controller,
            zeros(c.memory_slots, c.memory_width),
            usage,
            least_used(usage, c.read_heads),
            zeros(c.read_heads, c.memory_slots),
            zeros(c.read_heads, c.memory_slots),
            zeros(c.read_heads, c.memory_width),
        )

    def _step(self, x_t: Tensor, state: MANNState) -> tuple[Tensor, MANNState]:
        c = self.config
        hidden, controller, interface = self._control(x_t, state)
        key, alpha, strength = interface.unflatten(-1, (c.read_heads, -1)).split(
            [c.memory_width, 1, int(c.read_strength)], dim=-1
        )
        memory, write = lrua_write(
            state.memory, state.usage, state.read_weights, state.least_used, key,
            torch.sigmoid(alpha[..., 0]),
        )  # fmt: skip
        similarity = cosine_similarity(memory, key)  # (B, R, N)
        if c.read_strength:
            similarity = similarity * oneplus(strength)
        read = torch.softmax(similarity, dim=-1)
        reads = read @ memory  # (B, R, W)
        usage = c.usage_decay * state.usage + (read + write).sum(1)
        state = MANNState(
            controller, memory, usage, least_used(usage, c.read_heads), write, read, reads
        )
        return torch.cat([hidden, reads.flatten(1)], dim=-1), state
