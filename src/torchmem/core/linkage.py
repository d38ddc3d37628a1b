"""Temporal memory linkage of the DNC: precedence, link matrix and directional reads.

Graves et al. 2016, methods section "Temporal memory linkage"; the link sharpness option of
Csordas & Schmidhuber 2019 ("Improving Differentiable Neural Computers Through Memory
Masking, De-allocation, and Link Distribution Sharpness Control"). Pure functions.

Legend: B batch, R read heads, N memory slots.
"""

from __future__ import annotations

import torch
from torch import Tensor


def update_precedence(prev_precedence: Tensor, write_weights: Tensor) -> Tensor:
    """p_t = (1 - sum_i w^w_t[i]) p_{t-1} + w^w_t. Both (B, N) -> (B, N)."""
    return (1 - write_weights.sum(dim=-1, keepdim=True)) * prev_precedence + write_weights


def update_link(prev_link: Tensor, write_weights: Tensor, prev_precedence: Tensor) -> Tensor:
    """L_t[i, j] = (1 - w^w_t[i] - w^w_t[j]) L_{t-1}[i, j] + w^w_t[i] p_{t-1}[j], L_t[i, i] = 0.

    prev_link (B, N, N); write_weights, prev_precedence (B, N) -> (B, N, N). Reference version:
    one equation, several N x N temporaries. ``torchmem.core.fused_link`` has the fast one.
    """
    w_row = write_weights.unsqueeze(-1)  # w[i]
    w_col = write_weights.unsqueeze(-2)  # w[j]
    link = (1 - w_row - w_col) * prev_link + w_row * prev_precedence.unsqueeze(-2)
    # In place on a fresh tensor (autograd-safe: the add that made it keeps no output).
    link.diagonal(dim1=-2, dim2=-1).zero_()
    return link


def directional_weights(link: Tensor, prev_read_weights: Tensor) -> tuple[Tensor, Tensor]:
    """f^i_t = L_t w^{r,i}_{t-1} and b^i_t = L_t^T w^{r,i}_{t-1}.

    link (B, N, N); prev_read_weights (B, R, N) -> (forward, backward), each (B, R, N).
    """
    forward = torch.matmul(prev_read_weights, link.transpose(-1, -2))
    backward = torch.matmul(prev_read_weights, link)
    return forward, backward


def sharpen_distribution(weights: Tensor, sharpness: Tensor, eps: float = 1e-6) -> Tensor:
    """S(d, s)_i = d_i^s / sum_j d_j^s, keeping the original total mass (Csordas 2019, eq. 5).

    weights (B, R, N), sharpness s (B, R) >= 1 -> (B, R, N). The link rows sum to at most one;
    rescaling to the original total keeps that property.
    """
    total = weights.sum(dim=-1, keepdim=True)
    powered = (weights + eps).pow(sharpness.unsqueeze(-1))
    return powered / powered.sum(dim=-1, keepdim=True) * total


def read_mode_mix(backward: Tensor, content: Tensor, forward: Tensor, modes: Tensor) -> Tensor:
    """w^{r,i}_t = pi^i[1] b^i + pi^i[2] c^{r,i} + pi^i[3] f^i.

    backward, content, forward (B, R, N); modes pi (B, R, 3), rows summing to 1 -> (B, R, N).
    """
    stacked = torch.stack([backward, content, forward], dim=-1)  # (B, R, N, 3)
    return torch.matmul(stacked, modes.unsqueeze(-1)).squeeze(-1)
