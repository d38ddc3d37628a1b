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
* Scan (not in the seed; how a brute-force search over many memories stays fast): the
  keys are also kept in bfloat16, half the bytes to stream, and every dot product from
  that copy comes with a bound on its error, so that only rows the bound cannot rule
  out are rescored from the float32 keys: the result is the float32 search's.
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
    return strength_weighted(similarity, strength, threshold, exponent), similarity


def strength_weighted(
    similarity: Tensor, strength: Tensor, threshold: float, exponent: float = 1.0
) -> Tensor:
    """``similarity * strength ** exponent``, ``-inf`` where ``strength < threshold``: the
    score of :func:`retrieval_scores` from similarities computed elsewhere (``(n,)`` each)."""
    score = similarity * strength.clamp_min(0.0).pow(exponent)
    return score.masked_fill(strength < threshold, float("-inf"))


def quantize_keys(keys: Tensor, dtype: torch.dtype = torch.bfloat16) -> tuple[Tensor, Tensor]:
    """A low-precision copy of ``keys`` for the scan, and the row norms that bound its error.

    Rounding to nearest moves each element by at most u times itself (u = eps / 2, 2^-8
    for bfloat16, whose exponent range is float32's), so ``|k_i - k~_i| <= u |k_i|`` and
    ``|k~_i| <= (1 + u) |k_i|``: the norms are all :func:`scan_similarity` needs.

    Args:
        keys: ``(n, d)`` float32 rows k_i.
        dtype: the copy's dtype.

    Returns:
        ``(low, norm)``: ``low`` ``(n, d)`` = k~_i, ``keys`` rounded to ``dtype``, and
        ``norm`` ``(n,)`` = |k_i|.
    """
    return keys.to(dtype), keys.norm(dim=1)


def scan_similarity(query: Tensor, low: Tensor, norm: Tensor | float) -> tuple[Tensor, Tensor]:
    """Approximate ``keys @ query`` from :func:`quantize_keys`'s copy, with an error bound.

    With k~_i, q~ the key and the query rounded to ``low``'s dtype (unit roundoff u):
    ``q . k_i - q~ . k~_i = q . (k_i - k~_i) + (q - q~) . k~_i``, so by Cauchy-Schwarz the
    rounded product is off by at most ``(|q| u + |q - q~| (1 + u)) |k_i|``. It is
    accumulated in float32 (torch's CPU reduced-precision matrix-vector kernels do), at
    most ``d 2^-23 |q~| |k~_i|`` off (twice float32's ``d u``), and the sum is rounded to
    ``low``'s dtype, at most ``2 u |q~| |k~_i|`` off (``|q~ . k~_i| <= |q~| |k~_i|``; the
    factor 2 is slack). A float32 ``low`` gives the exact product and a zero margin.

    Args:
        query: ``(d,)`` float32.
        low: ``(n, d)``.
        norm: |k_i| per row ``(n,)``, or one upper bound for all rows (a number): the
            margin is then one number.

    Returns:
        ``(approx, margin)``: ``(n,)`` float32, and ``(n,)`` or ``()`` float32, with
        ``|q . k_i - approx_i| <= margin_i``.
    """
    if low.dtype == query.dtype:
        return low @ query, torch.zeros(())
    rounded = query.to(low.dtype)
    approx = (low @ rounded).to(query.dtype)
    restored = rounded.to(query.dtype)
    u = torch.finfo(low.dtype).eps / 2
    query_norm = float(restored.norm())
    per_norm = float(query.norm()) * u + (1 + u) * (
        float((query - restored).norm()) + (query.shape[0] * 2.0**-23 + 2 * u) * query_norm
    )
    # 1e-30: slack for values below bfloat16's normal range, where u does not hold.
    return approx, (per_norm * torch.as_tensor(norm) + 1e-30).to(query.dtype)


def bounded_top(estimate: Tensor, margin: Tensor | float, m: int) -> Tensor:
    """Indices that may hold the ``m`` largest exact values, given estimates within a margin.

    Every value x_i lies in ``estimate_i +- margin_i`` (``margin``: ``(n,)`` or one
    number). With tau the m-th largest lower bound, m rows are known to reach tau, so a
    row whose upper bound is below tau cannot be among the m largest: the rest is returned,
    ``(c,)`` int64, ascending. ``-inf`` estimates mark rows that take no part; ``m`` at
    least the number of rows taking part returns all of them.
    """
    taking_part = estimate > float("-inf")
    if m < int(taking_part.sum()):
        tau = torch.topk(estimate - margin, m).values[-1]
        taking_part &= estimate + margin >= tau
    return taking_part.nonzero().flatten()


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


__all__ = [
    "bounded_top",
    "decayed_strength",
    "gate_probability",
    "quantize_keys",
    "reinforce_gate",
    "retrieval_scores",
    "scan_similarity",
    "strength_weighted",
]
