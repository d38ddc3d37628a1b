"""The personal memory's maths as pure functions on tensors.

Legend: n stored memories, d embedding width, f gate features.

* Decay (the seed's forgetting curve ``S_{t+1} = S_t * lambda``, per unit of real time):
  ``S(now) = S(t0) * lambda ** ((now - t0) / unit)`` with ``lambda = 0.5`` per half-life.
  A memory's half-life is the store's half-life times its own stability, which grows
  each time the memory recurs (spaced repetition: what is said often fades slower).
* Retrieval (the seed's "cosine similarity ... weighted by memory strength"):
  ``score_i = cos(q, k_i) * S_i(now) ** alpha``, memories below the retrieval threshold
  excluded; ``alpha`` < 1 softens the weighting so that a relevant memory which has faded
  somewhat still beats a strong one that is barely related.
* Write gate (the seed's "Importance Score = Sigmoid(Controller Output)"):
  ``p = sigmoid(w . x + b)`` over the text embedding and the text's signals.
* Gate feedback (the seed's "controller (RL agent)"): one REINFORCE step on the Bernoulli
  policy "store with probability p": ``w += lr * r * (a - p) * x`` (the gradient of
  ``r * log pi(a | x)``), ``a`` = 1 for a stored message.
"""

from __future__ import annotations

import torch
from torch import Tensor


def decayed_strength(
    strength: Tensor, updated_at: Tensor, now: float, half_life: Tensor | float
) -> Tensor:
    """Strength at time ``now`` of memories last set to ``strength`` at ``updated_at``.

    Args:
        strength: ``(n,)`` S at the last update, in [0, 1].
        updated_at: ``(n,)`` float64 seconds of the last update.
        now: the time to decay to, in seconds; earlier than ``updated_at`` means no decay.
        half_life: seconds after which an untouched memory keeps half its strength:
            a number or ``(n,)`` per memory.

    Returns:
        ``(n,)`` S(now) = S * 0.5 ** (max(now - t, 0) / half_life), in ``strength``'s dtype.
    """
    elapsed = (now - updated_at).clamp_min(0.0)
    return (strength * torch.exp2(-elapsed / half_life)).to(strength.dtype)


def retrieval_scores(
    query: Tensor, keys: Tensor, strength: Tensor, threshold: float, exponent: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Strength-weighted cosine scores of all memories for one query.

    Args:
        query: ``(d,)`` unit vector.
        keys: ``(n, d)`` unit rows (zero rows for free slots score 0).
        strength: ``(n,)`` current strengths; rows below ``threshold`` (and inactive rows,
            given strength 0) score ``-inf``.
        threshold: minimum strength to be retrieved.
        exponent: alpha, the weight of strength in the score.

    Returns:
        ``(score, similarity)``, each ``(n,)``: ``similarity * strength ** alpha`` (or
        ``-inf``) and the cosine similarity itself.
    """
    similarity = keys @ query
    score = similarity * strength.clamp_min(0.0).pow(exponent)
    return score.masked_fill(strength < threshold, float("-inf")), similarity


def gate_probability(features: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Importance ``p = sigmoid(features @ weight + bias)``: ``(..., f)`` -> ``(...)``."""
    return torch.sigmoid(features @ weight + bias)


def reinforce_gate(
    features: Tensor,
    action: Tensor,
    reward: Tensor,
    weight: Tensor,
    bias: Tensor,
    lr: float,
) -> tuple[Tensor, Tensor]:
    """One REINFORCE step of the write gate from rewarded decisions.

    Args:
        features: ``(m, f)`` gate inputs of the decisions.
        action: ``(m,)`` 1 where the message was stored, 0 where it was not.
        reward: ``(m,)`` feedback, positive to encourage the decision, negative to discourage.
        weight: ``(f,)``; bias: ``()``; the gate's current parameters.
        lr: step size.

    Returns:
        The new ``(weight, bias)``: ``+ lr * mean_m r (a - p) x`` (and ``r (a - p)`` for b),
        the gradient of the mean of ``r log pi(a | x)``.
    """
    advantage = reward * (action - gate_probability(features, weight, bias))
    return (
        weight + lr * (advantage[:, None] * features).mean(0),
        bias + lr * advantage.mean(),
    )


__all__ = ["decayed_strength", "gate_probability", "reinforce_gate", "retrieval_scores"]
