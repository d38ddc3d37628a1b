"""Associative memories as pure functions: modern Hopfield retrieval and delta-rule fast weights.

Modern (continuous) Hopfield network (Ramsauer et al. 2021, "Hopfield Networks is All You
Need"): stored patterns X = (x_1 .. x_N) and a state (query) xi. The energy

    E(xi) = -lse(beta, X^T xi) + 1/2 xi^T xi + log(N) / beta + 1/2 M^2,
    lse(beta, z) = log(sum_i exp(beta z_i)) / beta,   M = max_i |x_i|,

is lowered by the update xi_new = X softmax(beta X^T xi) (their Theorem 1: the iteration
converges; each update does not raise E), which is attention with the patterns as keys and
values. With separate values V it retrieves V softmax(beta X^T xi).

Fast weights with the delta rule (Schlag, Irie & Schmidhuber 2021, "Linear Transformers Are
Secretly Fast Weight Programmers"; the Widrow-Hoff rule): a matrix memory W maps keys to
values. Writing value v under key k with strength beta replaces what W returned for k by
an interpolation towards v:

    W_t = W_{t-1} + beta (v - W_{t-1} k) k^T,     read: y = W_t q.

For a unit key and beta = 1, W_t k = v exactly, and W_t u = W_{t-1} u for every u
orthogonal to k: one association is overwritten and the others are left alone, which a
purely additive (Hebbian) write W + v k^T cannot do.

Rings of slots (the Hopfield, attention and hierarchical memories keep the last N writes):
``ring_write`` puts a pattern over the least recently written slot, ``recent_summary``
averages the slots written since a given step.

Legend: B batch (any leading dims), N stored patterns, Q queries, D key width, E value width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .addressing import unit_vector


def hopfield_retrieve(
    query: Tensor,
    patterns: Tensor,
    beta: Tensor | float,
    values: Tensor | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One modern-Hopfield update: ``V softmax(beta X^T xi)`` for each query.

    Args:
        query: ``(..., Q, D)`` states xi.
        patterns: ``(..., N, D)`` stored patterns X (the keys).
        beta: inverse temperature, a number or ``(..., Q)``.
        values: ``(..., N, E)``; None retrieves the patterns themselves (E = D).
        mask: ``(..., N)`` bool, False for empty slots (never retrieved); at least one True.

    Returns:
        ``(retrieved (..., Q, E), weights (..., Q, N))``, the weights a distribution over
        the patterns.
    """
    scores = query @ patterns.transpose(-1, -2)  # (..., Q, N)
    beta = torch.as_tensor(beta, dtype=scores.dtype, device=scores.device)
    scores = scores * (beta[..., None] if beta.dim() else beta)
    if mask is not None:
        scores = scores.masked_fill(~mask[..., None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ (patterns if values is None else values), weights


def hopfield_energy(query: Tensor, patterns: Tensor, beta: float) -> Tensor:
    """The modern Hopfield energy E(xi) of each query (module docstring): ``(..., Q)``."""
    n = patterns.shape[-2]
    lse = torch.logsumexp(beta * (query @ patterns.transpose(-1, -2)), dim=-1) / beta
    largest = patterns.norm(dim=-1).amax(dim=-1, keepdim=True)  # M, (..., 1)
    return -lse + 0.5 * (query * query).sum(-1) + math.log(n) / beta + 0.5 * largest**2


def delta_rule_write(memory: Tensor, key: Tensor, value: Tensor, beta: Tensor) -> Tensor:
    """``W + beta (v - W k) k^T``: write ``value`` under ``key``.

    Args:
        memory: ``(..., E, D)`` W.
        key: ``(..., D)`` k (unit norm for the exact overwrite property).
        value: ``(..., E)`` v.
        beta: ``(...)`` write strength, in [0, 1] for an interpolation.

    Returns:
        The new ``(..., E, D)`` memory (a new tensor).
    """
    error = value - fast_weight_read(memory, key)  # (..., E)
    return memory + (beta[..., None] * error)[..., :, None] * key[..., None, :]


def fast_weight_read(memory: Tensor, query: Tensor) -> Tensor:
    """``W q``: ``(..., E, D)``, ``(..., D)`` -> ``(..., E)``."""
    return (memory @ query[..., None])[..., 0]


def ring_write(
    keys: Tensor, values: Tensor, written_at: Tensor, key: Tensor, value: Tensor, now: Tensor,
    gate: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Write (key, value) over the least recently written slot of a ring where ``gate`` is 1,
    as a one-hot blend (so autograd and any device follow).

    Args:
        keys: ``(B, ..., N, D)``; values: ``(B, ..., N, E)``: the ring, with any dims (heads)
            between batch and slots, all written at the same slot.
        written_at: ``(B, N)`` step of each slot's last write, 0 for empty (empty slots are
            taken first, in slot order).
        key: ``(B, ..., D)``; value: ``(B, ..., E)``; now: ``(B,)`` the step (>= 1).
        gate: ``(B,)`` 1 to write, 0 to leave the ring as it is.

    Returns:
        The new ``(keys, values, written_at)``.
    """
    n = keys.shape[-2]
    slot = F.one_hot(written_at.argmin(-1), n).to(keys.dtype) * gate[:, None]  # (B, N)
    blend = slot.reshape(slot.shape[0], *[1] * (keys.dim() - 3), n, 1)
    return (
        keys + blend * (key.unsqueeze(-2) - keys),
        values + blend * (value.unsqueeze(-2) - values),
        written_at + slot * (now[:, None] - written_at),
    )


def recent_summary(
    keys: Tensor, values: Tensor, written_at: Tensor, since: Tensor
) -> tuple[Tensor, Tensor]:
    """Mean key (renormalised) and mean value of the slots written after ``since``.

    Args:
        keys: ``(B, N, D)``; values: ``(B, N, E)``; written_at: ``(B, N)``.
        since: ``(B,)``: slots with ``written_at > since`` count.

    Returns:
        ``(key (B, D), value (B, E))``; zeros where no slot counts.
    """
    recent = (written_at > since[:, None]).to(keys.dtype)  # (B, N)
    count = recent.sum(-1, keepdim=True).clamp_min(1)
    key = (recent[..., None] * keys).sum(-2) / count
    value = (recent[..., None] * values).sum(-2) / count
    return unit_vector(key), value


__all__ = [
    "delta_rule_write",
    "fast_weight_read",
    "hopfield_energy",
    "hopfield_retrieve",
    "recent_summary",
    "ring_write",
]
