"""Product-key memory lookup (Lample et al. 2019, "Large Memory Layers with Product Keys").

A memory of N = n^2 values is addressed by keys that are pairs (c1_i, c2_j) of two sub-key
sets of n each; key (i, j) scores ``q1 . c1_i + q2 . c2_j`` for a query split in halves
(q1, q2). The k best of the N scores are among the k x k pairs of the k best sub-keys of
each half (if a pair (i, j) is in the overall top k, no more than k - 1 pairs beat it, so
fewer than k first halves beat i and fewer than k second halves beat j), so the top k
costs O(n + k^2) scores instead of O(n^2). The read is ``softmax(top-k scores) @ values``.

Legend: B any leading dims, H heads, n sub-keys per half, N = n^2 values, k chosen keys,
D query width (even), E value width.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _half_scores(query: Tensor, subkeys: Tensor) -> tuple[Tensor, Tensor]:
    """``q1 . c1_i`` and ``q2 . c2_j``: each ``(..., H, n)``."""
    half = query.shape[-1] // 2
    first = torch.einsum("...hd,hnd->...hn", query[..., :half], subkeys[:, 0])
    second = torch.einsum("...hd,hnd->...hn", query[..., half:], subkeys[:, 1])
    return first, second


def product_key_topk(query: Tensor, subkeys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k best product keys of each query, exactly.

    Args:
        query: ``(..., H, D)``.
        subkeys: ``(H, 2, n, D / 2)``: the two sub-key sets of each head.
        k: keys to keep (at most n^2).

    Returns:
        ``(scores (..., H, k), indices (..., H, k))``, best first; index ``i * n + j``
        names the pair (c1_i, c2_j).
    """
    n = subkeys.shape[-2]
    first, second = _half_scores(query, subkeys)
    k1 = min(k, n)
    s1, i1 = first.topk(k1, dim=-1)  # (..., H, k1)
    s2, i2 = second.topk(k1, dim=-1)
    pairs = (s1[..., :, None] + s2[..., None, :]).flatten(-2)  # (..., H, k1 * k1)
    scores, best = pairs.topk(k, dim=-1)
    indices = i1.gather(-1, best // k1) * n + i2.gather(-1, best % k1)
    return scores, indices


def product_key_read(
    query: Tensor, subkeys: Tensor, values: Tensor, k: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Read the memory: ``sum_k softmax(scores)_k values[index_k]`` per head.

    Args:
        query: ``(..., H, D)``; subkeys: ``(H, 2, n, D / 2)``.
        values: ``(N, E)``, shared by the heads (as in the paper).
        k: keys per head.

    Returns:
        ``(read (..., H, E), weights (..., H, k), indices (..., H, k))``.
    """
    scores, indices = product_key_topk(query, subkeys, k)
    weights = torch.softmax(scores, dim=-1)
    read = (weights[..., None] * values[indices]).sum(-2)
    return read, weights, indices


def all_product_scores(query: Tensor, subkeys: Tensor) -> Tensor:
    """Every one of the n^2 scores, ``(..., H, N)`` (the brute force the lookup avoids)."""
    first, second = _half_scores(query, subkeys)
    return (first[..., :, None] + second[..., None, :]).flatten(-2)


__all__ = ["all_product_scores", "product_key_read", "product_key_topk"]
