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


# --------------------------------------------------------------------------
# The sparse DNC's temporal links (Rae et al. 2016, supplementary "SDNC")
# --------------------------------------------------------------------------
#
# The DNC's link L (N x N) and precedence p (N) are kept sparse: p as its K_L largest
# entries, L as the K_L largest entries of each row, ``(index, weight)`` of shape
# (B, S, K_L), L[i, index[i, k]] = weight[i, k]. Unused entries have weight 0.


def top_entries(values: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``(index, value)`` (..., k') of the k' = min(k, n) largest of ``values`` (..., n),
    ties lowest index first; gradients flow to the kept values."""
    index = top_k_lowest_first(values.detach(), min(k, values.shape[-1]))
    return index, values.gather(-1, index)


def sparse_precedence(index: Tensor, value: Tensor, write: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """p_t = (1 - sum_i w^W_t(i)) p_{t-1} + w^W_t, then its K_L largest entries.

    index, value (B, K_L) p_{t-1}; write (B, S) the dense w^W_t -> (index, value) (B, K_L).
    """
    previous = dense_weights(index, value, write.shape[-1])
    return top_entries((1 - write.sum(-1, keepdim=True)) * previous + write, k)


def sparse_link_update(
    link_index: Tensor, link_value: Tensor, write: Tensor, prec_index: Tensor, prec_value: Tensor
) -> tuple[Tensor, Tensor]:
    """L_t(i, j) = (1 - w(i) - w(j)) L_{t-1}(i, j) + w(i) p_{t-1}(j), L_t(i, i) = 0, then
    each row keeps its K_L largest entries.

    link_index, link_value (B, S, K_L) L_{t-1}; write w^W_t (B, S) dense; prec_index,
    prec_value (B, P) p_{t-1} -> (index, value) (B, S, K_L). Before the cut this is exactly
    the DNC's update (:func:`torchmem.core.linkage.update_link`) on the sparse L and p; it
    costs O(S K_L (K_L + P)), nothing N x N.
    """
    rows = write.shape[-1]
    keep = link_index.shape[-1]
    w_row = write.unsqueeze(-1)  # (B, S, 1) w(i)
    old = (1 - w_row - write.gather(1, link_index.flatten(1)).view_as(link_value)) * link_value
    new_index = prec_index.unsqueeze(1).expand(-1, rows, -1)  # (B, S, P) j
    new = w_row * prec_value.unsqueeze(1)  # (B, S, P) w(i) p(j)
    # an old entry on a column that p also has: add it to the new one and drop it
    same = link_index.unsqueeze(-1) == new_index.unsqueeze(-2)  # (B, S, K_L, P)
    new = new + (old.unsqueeze(-1) * same).sum(-2)
    old = old * ~same.any(-1)
    index = torch.cat([link_index, new_index], dim=-1)
    value = torch.cat([old, new], dim=-1)
    diagonal = index == torch.arange(rows, device=index.device).view(1, rows, 1)
    value = value * ~diagonal
    top = top_k_lowest_first(value.detach(), keep)
    return index.gather(-1, top), value.gather(-1, top)


def sparse_directional_weights(
    link_index: Tensor, link_value: Tensor, read: Tensor
) -> tuple[Tensor, Tensor]:
    """f = L w^R_{t-1} and b = L^T w^R_{t-1} from the row-sparse L.

    link_index, link_value (B, S, K_L); read (B, R, S) dense w^R_{t-1} -> (forward,
    backward), each (B, R, S). O(R S K_L).
    """
    batch, rows, keep = link_index.shape
    heads = read.shape[1]
    columns = link_index.flatten(1).unsqueeze(1).expand(-1, heads, -1)  # (B, R, S K_L)
    forward = read.gather(-1, columns).view(batch, heads, rows, keep) * link_value.unsqueeze(1)
    contributions = read.unsqueeze(-1) * link_value.unsqueeze(1)  # (B, R, S, K_L) w(i) L(i, j)
    backward = read.new_zeros(batch, heads, rows).scatter_add(-1, columns, contributions.flatten(2))
    return forward.sum(-1), backward
