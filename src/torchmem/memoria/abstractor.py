"""A learned summariser that turns N hidden states into a fixed number of memories.

This is the memory encoder of the Memoria Transformer experiments (arXiv:2310.03052, the
section applying Memoria to Transformers): a set of learned queries attends over the
hidden states and a two-layer projection produces one engram per query. Parameter names,
shapes and initialisation order follow memoria-pytorch 1.1.0 so that checkpoints load
and the same seed gives the same weights.

Legend: B batch, N input positions, M memories made (``num_memories``), H hidden width,
F feed-forward width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Abstractor"]


class Abstractor(nn.Module):
    """Summarise hidden states (B, N, H) into ``num_memories`` vectors (B, M, H).

    out = Output(FeedForward(softmax(Q K^T) V)), where Q (1, M, H) are learned query
    embeddings (normal, std 0.02) and K, V are linear maps of the hidden states. As in the
    reference there is no 1/sqrt(H) scaling and no non-linearity between the two output
    layers.

    Args:
        num_memories: M, how many memory vectors to produce per example.
        hidden_dim: H, width of the hidden states and of the memories.
        feedforward_dim: F, width of the intermediate projection.
    """

    def __init__(self, num_memories: int, hidden_dim: int, feedforward_dim: int) -> None:
        super().__init__()
        for name, value in (
            ("num_memories", num_memories),
            ("hidden_dim", hidden_dim),
            ("feedforward_dim", feedforward_dim),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Abstractor {name} must be an int >= 1, got {value!r}")
        # Creation order matters: it fixes which random numbers each parameter receives.
        queries = torch.empty(1, num_memories, hidden_dim)
        nn.init.normal_(queries, std=0.02)
        self.query_embeddings = nn.Parameter(queries)
        self.key_transform = nn.Linear(hidden_dim, hidden_dim)
        self.value_transform = nn.Linear(hidden_dim, hidden_dim)
        self.feedforward = nn.Linear(hidden_dim, feedforward_dim)
        self.output = nn.Linear(feedforward_dim, hidden_dim)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """Map hidden states (B, N, H) to memories (B, M, H)."""
        width = self.query_embeddings.size(-1)
        if hidden_states.dim() != 3 or hidden_states.size(-1) != width:
            raise ValueError(
                f"Abstractor expects hidden states of shape (B, N, {width}), "
                f"got {tuple(hidden_states.shape)}"
            )
        keys = self.key_transform(hidden_states)  # (B, N, H)
        values = self.value_transform(hidden_states)  # (B, N, H)
        attention = (self.query_embeddings @ keys.transpose(-2, -1)).softmax(dim=-1)  # (B, M, N)
        summary = attention @ values  # (B, M, H)
        return self.output(self.feedforward(summary))
