"""The Hebbian slot graph of MemNet: a temporal (STDP-like) update and spreading activation.

Pure functions, one equation each ("Memory Is All You Need", section "Hebbian Graph Memory").
A is a directed adjacency over memory slots; A_ij is the strength of the edge i -> j
("slot j tends to be active right after slot i").

Legend: B batch, H heads, N memory slots.

Why bounded: the seed's rule dA_ij = eta pre_i post_j only ever adds, so A grows linearly
in time and any spreading through it eventually swamps the direct reads. Two bounds are
offered and both are on by default in MemNet: exponential decay (A shrinks by a factor
1 - lambda per step, so entries stay below eta / lambda) and row normalisation (a row whose
out-going mass exceeds ``max_row_sum`` is rescaled onto it). With ``max_row_sum = 1`` every
row of A is a sub-distribution, so ``W A`` is again a sub-distribution and spreading can
never create read mass: sum_j W_final(j) <= sum_j W_base(j).
"""

from __future__ import annotations

import torch
from torch import Tensor


def bound_rows(adjacency: Tensor, max_row_sum: float = 1.0) -> Tensor:
    """A_i. <- A_i. / max(1, sum_j A_ij / max_row_sum): rows above the bound are rescaled.

    adjacency (B, N, N) with non-negative entries -> (B, N, N). Rows within the bound are
    left exactly as they are.
    """
    row_sums = adjacency.sum(dim=-1, keepdim=True)
    return adjacency / (row_sums / max_row_sum).clamp_min(1.0)


def hebbian_update(
    adjacency: Tensor,
    pre: Tensor,
    post: Tensor,
    rate: float,
    decay: float = 0.0,
    max_row_sum: float | None = 1.0,
) -> Tensor:
    """A_t = bound((1 - lambda) A_{t-1} + eta pre_{t-1} (x) post_t), diagonal kept at zero.

    adjacency A_{t-1} (B, N, N); pre (B, N) the slots' activity at step t-1 (the "pre-
    synaptic" slots, Pre_i), post (B, N) their activity at step t (Post_j); rate eta >= 0;
    decay lambda in [0, 1]; ``max_row_sum`` the row bound of :func:`bound_rows` (None: no
    normalisation, the seed's bare additive rule when ``decay`` is 0 too) -> A_t (B, N, N).

    A slot is not linked to itself: the outer product's diagonal is dropped (a self-loop
    would only echo the base read back onto itself), so A's diagonal stays zero.
    """
    outer = pre.unsqueeze(-1) * post.unsqueeze(-2)  # (B, N, N) Pre_i Post_j
    # In place on a fresh tensor (the product's backward does not read it): no N x N mask.
    outer.diagonal(dim1=-2, dim2=-1).zero_()
    updated = adjacency * (1.0 - decay) + outer * rate
    return updated if max_row_sum is None else bound_rows(updated, max_row_sum)


def spread_activation(weights: Tensor, adjacency: Tensor, alpha: float | Tensor) -> Tensor:
    """W_final = (1 - alpha) W_base + alpha W_base A (spreading activation, one hop).

    weights W_base (B, H, N); adjacency A (B, N, N); alpha a float in [0, 1] or a tensor
    broadcastable to (B, H, 1) -> (B, H, N). Mass flows along the edges out of the slots a
    head attends to: with W_base on slot i, slot j receives alpha A_ij.
    """
    spread = torch.matmul(weights, adjacency)  # (B, H, N): sum_i W(i) A_ij
    return (1.0 - alpha) * weights + alpha * spread


__all__ = ["bound_rows", "hebbian_update", "spread_activation"]
