"""MemNet's read policies (top-k, uniform, random), their learned mixture, age-based
allocation, and counter-based noise.

Pure functions, one equation each ("Memory Is All You Need", "Meta-Policy Addressing").

Legend: B batch, H heads, N memory slots, P policies.

Each policy turns content scores s (B, H, N), typically beta * cos(k, M(i)), into a
distribution over slots:

* top-k:   w(i) = softmax over the k best scores, 0 elsewhere (precise retrieval);
* uniform: w(i) = 1 / N (global context: the mean of the memory);
* random:  w = softmax((s + g) / tau) with Gumbel noise g, i.e. one relaxed sample of a slot
  from the content distribution (Gumbel-softmax, Jang et al. 2017; Maddison et al. 2017):
  Boltzmann exploration that stays differentiable in the scores. Without noise (g = 0, what
  MemNet uses in eval mode) it is the tempered content softmax. With flat scores it is a
  relaxed pick of a uniformly random slot, i.e. pure exploration.

The mixture is w = sum_p pi_p w_p with pi a softmax over policies that the controller
emits per head and step, so every mixed row is a distribution.

The noise is explicit (a tensor argument) so that runs are reproducible. MemNet makes it
with :func:`counter_uniform`: a stateless integer hash of (example key, step, head, slot),
so the noise an example sees at step t does not depend on how the sequence was chunked, on
the rest of the batch, or on any generator's position.
"""

from __future__ import annotations

import torch
from torch import Tensor

POLICIES = ("topk", "uniform", "random")

_MASK32 = 0xFFFFFFFF
_HASH_MULTIPLIER = 0x45D9F3B  # < 2**27: products of 32-bit values stay below 2**63


def top_k_weights(scores: Tensor, k: int) -> Tensor:
    """w(i) = exp(s_i) / sum_{j in top_k(s)} exp(s_j) for i in top_k(s), else 0.

    scores (B, H, N) -> (B, H, N). ``k >= N`` is the plain softmax. Ties are broken as
    ``torch.topk`` breaks them. Gradients reach the selected scores only.
    """
    if k < 1:
        raise ValueError(f"top_k needs k >= 1, got {k}")
    if k >= scores.shape[-1]:
        return torch.softmax(scores, dim=-1)
    indices = torch.topk(scores, k, dim=-1).indices
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, indices, True)
    return torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)


def uniform_weights(scores: Tensor) -> Tensor:
    """w(i) = 1 / N, shaped like scores (B, H, N)."""
    return torch.full_like(scores, 1.0 / scores.shape[-1])


def random_weights(scores: Tensor, gumbel: Tensor | None, temperature: float) -> Tensor:
    """w = softmax((s + g) / tau): a relaxed sample from softmax(s) (Gumbel-softmax).

    scores s (B, H, N); gumbel g (B, H, N) standard Gumbel noise, or None for g = 0;
    temperature tau > 0 -> (B, H, N).
    """
    if gumbel is not None:
        scores = scores + gumbel
    return torch.softmax(scores / temperature, dim=-1)


def policy_candidates(
    scores: Tensor,
    policies: tuple[str, ...],
    top_k: int,
    temperature: float,
    gumbel: Tensor | None = None,
) -> Tensor:
    """Each named policy's weights: scores (B, H, N) -> (B, H, P, N), P = len(policies)."""
    candidates = []
    for name in policies:
        if name == "topk":
            candidates.append(top_k_weights(scores, top_k))
        elif name == "uniform":
            candidates.append(uniform_weights(scores))
        elif name == "random":
            candidates.append(random_weights(scores, gumbel, temperature))
        else:
            raise ValueError(f"unknown read policy {name!r}; valid: {', '.join(POLICIES)}")
    return torch.stack(candidates, dim=-2)


def mix_policies(candidates: Tensor, gates: Tensor) -> Tensor:
    """w = sum_p pi_p w_p. candidates (B, H, P, N), gates pi (B, H, P) summing to 1 -> (B, H, N)."""
    return torch.matmul(gates.unsqueeze(-2), candidates).squeeze(-2)


def age_weights(ages: Tensor, sharpness: Tensor) -> Tensor:
    """w^a(i) = softmax_i(gamma * age_i): allocation that favours the oldest slots.

    ages (B, N) >= 0, steps since each slot was last written; sharpness gamma (B, H) > 0
    -> (B, H, N). With a large gamma this writes to the least recently written slot.
    """
    return torch.softmax(sharpness.unsqueeze(-1) * ages.unsqueeze(-2), dim=-1)


def update_ages(ages: Tensor, write_weights: Tensor) -> Tensor:
    """age_t(i) = (age_{t-1}(i) + 1) prod_h (1 - w^w_h(i)).

    ages (B, N); write_weights (B, H, N) in [0, 1] -> (B, N). A slot fully written at step t
    has age 0; an untouched slot ages by one step; a partial write makes it younger.
    """
    return (ages + 1.0) * torch.prod(1.0 - write_weights, dim=1)


def _hash32(x: Tensor) -> Tensor:
    """A 32-bit integer mixing hash (int64 tensors holding values in [0, 2**32))."""
    x = ((x >> 16) ^ x) * _HASH_MULTIPLIER & _MASK32
    x = ((x >> 16) ^ x) * _HASH_MULTIPLIER & _MASK32
    return (x >> 16) ^ x


def counter_uniform(
    key: Tensor, counter: Tensor, shape: tuple[int, ...], dtype: torch.dtype
) -> Tensor:
    """Uniform noise u in (0, 1), a pure function of (key, counter, position).

    key, counter (B,) int64 -> (B, *shape) of ``dtype`` on key's device. Equal (key,
    counter) give equal noise; any other pair gives unrelated noise.
    """
    if key.dtype != torch.int64 or counter.dtype != torch.int64:
        raise TypeError(f"key and counter must be int64, got {key.dtype} and {counter.dtype}")
    base = _hash32(_hash32(key & _MASK32) ^ (counter & _MASK32))  # (B,)
    size = 1
    for n in shape:
        size *= n
    index = torch.arange(size, device=key.device, dtype=torch.int64).view(shape)
    bits = _hash32(base.view(-1, *([1] * len(shape))) ^ index)  # (B, *shape)
    tiny = torch.finfo(dtype).eps
    return ((bits.to(torch.float64) + 0.5) / 2.0**32).clamp(tiny, 1.0 - tiny).to(dtype)


def gumbel_from_uniform(uniform: Tensor) -> Tensor:
    """g = -log(-log u): standard Gumbel noise from uniform noise u in (0, 1)."""
    return -torch.log(-torch.log(uniform))


__all__ = [
    "POLICIES",
    "age_weights",
    "counter_uniform",
    "gumbel_from_uniform",
    "mix_policies",
    "policy_candidates",
    "random_weights",
    "top_k_weights",
    "uniform_weights",
    "update_ages",
]
