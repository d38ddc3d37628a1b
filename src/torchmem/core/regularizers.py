"""Auxiliary objectives of memory models, and the :class:`LossTerm` a model reports them in.

Pure functions ("Memory Is All You Need", "Optimization & Training"):
L_total = L_task + l1 L_reconstruction + l2 L_utilization + l3 L_sparsity.

Legend: B batch, T time, H heads, N memory slots, I input width.

A model that has auxiliary terms exposes ``forward_with_losses(x, state=None) ->
(y, state, {name: LossTerm})``; the trainer adds ``sum(weight * value)`` to the task loss
and logs every ``value`` as ``loss_<name>`` (see :func:`torchmem.train.trainer.train`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

ENTROPY_EPS = 1e-12


class LossTerm(NamedTuple):
    """One auxiliary term: its unweighted scalar ``value`` and the ``weight`` (lambda) it
    enters the total loss with."""

    value: Tensor
    weight: float


def entropy(weights: Tensor, eps: float = ENTROPY_EPS) -> Tensor:
    """H(w) = -sum_i w_i log w_i over the last dim, w normalised to sum to 1 first.

    weights (..., N) >= 0 -> (...). log is taken of max(w, eps), which keeps the gradient
    finite at exact zeros (top-k weights have many).
    """
    w = weights / weights.sum(dim=-1, keepdim=True).clamp_min(eps)
    return -(w * torch.log(w.clamp_min(eps))).sum(dim=-1)


def normalized_entropy(weights: Tensor) -> Tensor:
    """H(w) / log N in [0, 1] (0 for N = 1). weights (..., N) -> (...)."""
    size = weights.shape[-1]
    if size < 2:
        return weights.new_zeros(weights.shape[:-1])
    return entropy(weights) / math.log(size)


def reconstruction_loss(reconstruction: Tensor, inputs: Tensor) -> Tensor:
    """L_reconstruction = mean (x^ - x)^2: reconstruction x^ and inputs x (B, T, I) -> scalar."""
    return torch.mean((reconstruction - inputs.detach()) ** 2)


def utilization_loss(weights: Tensor) -> Tensor:
    """L_utilization = 1 - H(u) / log N, averaged over the batch, against addressing collapse.

    weights (B, T, H, N): the addressing weights of an episode. u (B, N) is each example's
    slot use, sum_{t, h} w_{t,h} normalised to a distribution; the loss is 0 when every
    slot is used equally and 1 when a single slot takes everything.
    """
    use = weights.sum(dim=(1, 2))  # (B, N)
    return torch.mean(1.0 - normalized_entropy(use))


def sparsity_loss(weights: Tensor) -> Tensor:
    """L_sparsity = mean_{b, t, h} H(w_{b,t,h}) / log N: each single read should be sharp.

    weights (B, T, H, N) -> scalar in [0, 1]. Together with :func:`utilization_loss` this
    asks for sharp reads that, over an episode, spread over all slots.
    """
    return torch.mean(normalized_entropy(weights))


__all__ = [
    "LossTerm",
    "entropy",
    "normalized_entropy",
    "reconstruction_loss",
    "sparsity_loss",
    "utilization_loss",
]
