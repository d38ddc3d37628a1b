"""Dynamic memory allocation of the DNC: usage, retention and the free list.

Graves et al. 2016, methods section "Dynamic memory allocation". Pure functions.

Legend: B batch, R read heads, N memory slots.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Usage is squeezed into [EPS, 1]: a slot with usage exactly 0 would make every later product
# in the free list 0, and the sort of tied zeros would then decide allocation arbitrarily.
EPS = 1e-6


def retention(free_gates: Tensor, prev_read_weights: Tensor) -> Tensor:
    """psi_t = prod_i (1 - f_t^i w_{t-1}^{r,i}).

    free_gates f (B, R) in [0, 1]; prev_read_weights (B, R, N) -> psi (B, N).
    """
    kept = 1 - free_gates.unsqueeze(-1) * prev_read_weights
    return kept[:, 0] if kept.shape[1] == 1 else torch.prod(kept, dim=1)


def update_usage(prev_usage: Tensor, prev_write_weights: Tensor, retention: Tensor) -> Tensor:
    """u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} o w^w_{t-1}) o psi_t.

    prev_usage (B, N), prev_write_weights (B, N), retention psi (B, N) -> (B, N) in [0, 1].
    """
    return (prev_usage + prev_write_weights - prev_usage * prev_write_weights) * retention


def allocation_weights(usage: Tensor) -> Tensor:
    """a_t[phi_j] = (1 - u_t[phi_j]) prod_{i<j} u_t[phi_i], phi = slots sorted by usage.

    usage (B, N) -> a (B, N), non-negative and summing to at most 1. The sort is not
    differentiable; gradients flow through the sorted usage values, as in the paper.
    """
    usage = EPS + (1 - EPS) * usage
    sorted_usage, order = torch.sort(usage, dim=-1, stable=True)
    # Exclusive cumulative product as exp(cumsum(log u) - log u): usage >= EPS keeps the log
    # finite, and its backward is a handful of ops where cumprod's (built to survive zeros)
    # is about twenty, a real cost at one call per time step.
    log_usage = sorted_usage.log()
    free_before = (log_usage.cumsum(dim=-1) - log_usage).exp()
    sorted_allocation = (1 - sorted_usage) * free_before
    return torch.zeros_like(usage).scatter(-1, order, sorted_allocation)


def write_weights(
    allocation: Tensor, content: Tensor, allocation_gate: Tensor, write_gate: Tensor
) -> Tensor:
    """w^w_t = g^w_t [g^a_t a_t + (1 - g^a_t) c^w_t].

    allocation a (B, N), content c^w (B, N), gates g^a, g^w (B,) -> (B, N).
    """
    ga = allocation_gate.unsqueeze(-1)
    return write_gate.unsqueeze(-1) * (ga * allocation + (1 - ga) * content)
