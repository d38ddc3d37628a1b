"""A transformer controller stepped one time step at a time over a sliding window.

Legend: B batch, I input width, D width (``hidden_size``), L layers, C window (past steps
attended), K heads.

A memory model must be stepped (its reads at step t feed the controller at t + 1), so the
controller sees one input per call. Each layer keeps the keys and values of the last C steps
(a per-layer KV cache), and the new step attends causally to them and to itself: exactly a
causal transformer with sliding-window attention of width C + 1, computed incrementally.
Order is given by a learned bias per layer, head and relative offset 0..C (no absolute
positions, so a stream of any length can be read). C = 0 makes it a feed-forward network.
Blocks are pre-norm: x += Attn(LN(x)); x += MLP(LN(x)); the output is LN(x).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn


class TransformerControllerState(NamedTuple):
    """The window of past steps: oldest first, the newest at index C - 1."""

    keys: Tensor  # (B, L, C, D)  attention keys of the last C steps, per layer
    values: Tensor  # (B, L, C, D)
    valid: Tensor  # (B, C)  1 where the window holds a real past step, 0 before the start
    hidden: Tensor  # (B, D)  the last output h_t


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.attention_out = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )


class TransformerController(nn.Module):
    """``hidden, state = controller.step(inputs, state)``: inputs (B, I) -> hidden (B, D).

    Follows the :class:`~torchmem.models.controller.Controller` protocol.
    """

    def __init__(
        self, input_size: int, hidden_size: int, layers: int = 2, heads: int = 4, window: int = 8
    ):
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"controller heads ({heads}) must divide hidden_size ({hidden_size})")
        if layers < 1 or window < 0:
            raise ValueError(
                f"controller needs layers >= 1 and window >= 0, got {layers}, {window}"
            )
        self.hidden_size, self.layers, self.heads, self.window = hidden_size, layers, heads, window
        self.input = nn.Linear(input_size, hidden_size)
        self.blocks = nn.ModuleList(_Block(hidden_size) for _ in range(layers))
        # bias[l, k, c]: added to the score of window position c (c = C is the current step)
        self.position_bias = nn.Parameter(torch.zeros(layers, heads, window + 1))
        self.norm = nn.LayerNorm(hidden_size)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> TransformerControllerState:
        b, d, c = batch_size, self.hidden_size, self.window
        cache = torch.zeros(b, self.layers, c, d, device=device, dtype=dtype)
        return TransformerControllerState(
            cache,
            cache,
            torch.zeros(b, c, device=device, dtype=dtype),
            torch.zeros(b, d, device=device, dtype=dtype),
        )

    def step(
        self, inputs: Tensor, state: TransformerControllerState
    ) -> tuple[Tensor, TransformerControllerState]:
        """inputs (B, I) -> output h_t (B, D) and the window moved on by one step."""
        b, d, k = inputs.shape[0], self.hidden_size, self.heads
        x = self.input(inputs)
        ones = inputs.new_ones(b, 1)
        attend = torch.cat([state.valid, ones], dim=1)  # (B, C + 1)
        mask = (attend == 0).view(b, 1, -1)
        new_keys, new_values = [], []
        for layer, block in enumerate(self.blocks):
            q, key, value = block.qkv(block.attention_norm(x)).split(d, dim=-1)
            keys = torch.cat([state.keys[:, layer], key.unsqueeze(1)], dim=1)  # (B, C + 1, D)
            values = torch.cat([state.values[:, layer], value.unsqueeze(1)], dim=1)
            # Batched matmuls over (B, K): cheaper to dispatch than the equivalent einsums.
            heads_k = keys.view(b, -1, k, d // k).permute(0, 2, 3, 1)  # (B, K, D / K, C + 1)
            scores = torch.matmul(q.view(b, k, 1, d // k), heads_k).squeeze(2)  # (B, K, C + 1)
            scores = scores / math.sqrt(d // k) + self.position_bias[layer]
            weights = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
            heads_v = values.view(b, -1, k, d // k).transpose(1, 2)  # (B, K, C + 1, D / K)
            mixed = torch.matmul(weights.unsqueeze(2), heads_v)  # (B, K, 1, D / K)
            x = x + block.attention_out(mixed.reshape(b, d))
            x = x + block.mlp(block.mlp_norm(x))
            new_keys.append(keys[:, 1:])
            new_values.append(values[:, 1:])
        hidden = self.norm(x)
        return hidden, TransformerControllerState(
            torch.stack(new_keys, dim=1), torch.stack(new_values, dim=1), attend[:, 1:], hidden
        )


__all__ = ["TransformerController", "TransformerControllerState"]
