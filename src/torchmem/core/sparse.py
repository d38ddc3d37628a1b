"""Sparse reads, writes and usage of Sparse Access Memory (Rae et al. 2016).

"Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes", section 3: every
read and write touches at most K words of the memory, so a step costs the same whatever
the number of slots N. Pure functions, one equation each:

    read   w^R_t = softmax over the K words nearest to q (cosine) of beta cos(q, M_t(i)),
                   zero elsewhere;                r_t = sum_i w^R_t(i) M_t(i)
    write  w^W_t = alpha (gamma w^R_{t-1} + (1 - gamma) I^U_t)
           M_t   = (1 - R_t) o M_{t-1} + w^W_t a_t^T,     R_t = I^U_t 1^T
    usage  U_t(i) = the last step at which w^R_t(i) + w^W_t(i) > delta   (-1: never)
           I^U_t  = one-hot of argmin_i U_{t-1}(i), the least recently accessed word

A sparse weighting is a pair ``(index, weight)`` of equal shape (..., K): ``weight[k]``
sits on word ``index[k]``; an index may repeat (the weights then add up).

Ties (equal cosines, equal access times) go to the lowest index. That makes the memory
*lazily materialised* exactly: while the words past some row S are still untouched (all
equal to the initial word, never accessed), no read or write can pick one of them before
an untouched word with a lower index, so only the first S rows need to exist (see
:func:`torchmem.models.sam.SAM`). The cost of a step then grows with the words touched
so far, never with N.

Legend: B batch, H heads, K words per sparse read, S materialised rows (<= N slots),
W word width, J entries of a sparse write weighting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .addressing import cosine_similarity


def top_k_lowest_first(scores: Tensor, k: int) -> Tensor:
    """Indices (..., k) of the k largest scores, equal scores taken lowest index first.

    ``torch.topk`` does not promise an order among ties; a stable descending sort does,
    and the lazily materialised memory depends on it.
    """
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]


def sparse_content_weights(
    memory: Tensor, keys: Tensor, strengths: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """The sparse read weighting w^R: softmax of beta cos(q, M(i)) over the K nearest words.

    memory (B, S, W), keys q (B, H, W), strengths beta (B, H) -> ``(index (B, H, K'),
    weight (B, H, K'))`` with K' = min(k, S). Exact nearest neighbours (a scan of the S
    rows); gradients flow to the chosen words' scores, not through the choice.
    """
    scores = cosine_similarity(memory, keys)  # (B, H, S)
    index = top_k_lowest_first(scores.detach(), min(k, scores.shape[-1]))
    weight = torch.softmax(strengths.unsqueeze(-1) * scores.gather(-1, index), dim=-1)
    return index, weight


def sparse_read(memory: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """r = sum_k weight[k] M(index[k]).

    memory (B, S, W), index and weight (B, H, K) -> (B, H, W).
    """
    batch, heads, k = index.shape
    rows = memory.gather(1, index.reshape(batch, heads * k, 1).expand(-1, -1, memory.shape[-1]))
    return (weight.unsqueeze(-1) * rows.view(batch, heads, k, -1)).sum(-2)


def least_recently_used(last_access: Tensor) -> Tensor:
    """I^U as an index: the word accessed longest ago, the lowest such index on ties.

    last_access U (B, S) (-1 for never) -> (B,) long. ``argmin`` returns the first minimum.
    """
    return last_access.argmin(dim=-1)


def sam_write_weights(
    read_index: Tensor, read_weight: Tensor, lru: Tensor, alpha: Tensor, gamma: Tensor
) -> tuple[Tensor, Tensor]:
    """w^W_t = alpha (gamma w^R_{t-1} + (1 - gamma) I^U_t), with R read heads averaged.

    read_index, read_weight (B, R, K) w^R_{t-1}; lru (B,) I^U_t; write gate alpha and
    interpolation gate gamma (B,) in [0, 1] -> ``(index (B, R K + 1), weight (B, R K + 1))``.
    """
    heads = read_index.shape[1]
    index = torch.cat([read_index.flatten(1), lru.unsqueeze(1)], dim=1)
    gamma = gamma.unsqueeze(1)
    weight = torch.cat([gamma * read_weight.flatten(1) / heads, 1 - gamma], dim=1)
    return index, alpha.unsqueeze(1) * weight


def dense_weights(index: Tensor, weight: Tensor, slots: int) -> Tensor:
    """The sparse weighting as a dense (..., slots) vector (repeated indices add up)."""
    dense = weight.new_zeros(*weight.shape[:-1], slots)
    return dense.scatter_add(-1, index, weight)


def sparse_write(memory: Tensor, lru: Tensor, index: Tensor, weight: Tensor, add: Tensor) -> Tensor:
    """M_t = (1 - I^U 1^T) o M_{t-1} + w^W a^T: erase the least recently used word, add a.

    memory (B, S, W), lru (B,), index and weight (B, J) w^W, add a (B, W) -> (B, S, W).
    Costs O(S W) here because the rows are kept dense; nothing depends on N.
    """
    slots = memory.shape[1]
    keep = 1 - F.one_hot(lru, slots).to(memory.dtype)  # (B, S)
    written = dense_weights(index, weight, slots)  # (B, S)
    return memory * keep.unsqueeze(-1) + written.unsqueeze(-1) * add.unsqueeze(1)


def record_access(
    last_access: Tensor, index: Tensor, weight: Tensor, time: Tensor, delta: float
) -> Tensor:
    """U_t(i) = t where w^R_t(i) + w^W_t(i) > delta, else U_{t-1}(i).

    last_access (B, S); index, weight (B, J) every head's read and write entries together;
    time t (B,) -> (B, S). Not differentiable (an access time), as in the paper.
    """
    accessed = dense_weights(index, weight.detach(), last_access.shape[-1]) > delta
    return torch.where(accessed, time.unsqueeze(-1).to(last_access.dtype), last_access)
