"""Merging redundant memory slots: the parameter-free half of MemNet's "dreaming".

Pure functions ("Memory Is All You Need", "Neural Memory Synthesis": dreaming "merges
redundant information"). The seed does not say how; the rule here is:

1. Slot j is a duplicate of an earlier slot i < j by m_ij = clip(2 (cos(M_i, M_j) - theta) /
   (1 - theta), 0, 1): 0 below the threshold theta, 1 from (1 + theta) / 2 on, linear (and
   differentiable) in between. All-zero (empty) slots have cosine 0 and never merge.
2. Only slots that are not themselves duplicates receive: m~_ij = m_ij (1 - max_h m_hi).
   Slot j's redundancy is d_j = max_i m~_ij, and its content goes to the receivers in
   proportion to m~: T_ij = d_j m~_ij / sum_i' m~_i'j.
3. K = diag(1 - d) + T is column-stochastic: column j says where slot j goes (it keeps
   1 - d_j of itself). Then
   * memory: M'_i = (1 - d_i) sum_j K_ij M_j / sum_j K_ij (a receiver becomes the weighted
     mean of itself and what it absorbs; a fully redundant slot is emptied);
   * ages: a freed slot becomes the oldest, age'_j = (1 - d_j) age_j + d_j (max_i age_i + 1),
     so age-based allocation writes there next;
   * graph: A' = bound(K A K^T) with a zero diagonal: the edges of a merged slot are moved
     onto the slot that absorbed it (an edge between the two becomes a dropped self-loop).

Two identical non-zero slots i < j therefore leave slot i unchanged, slot j zero and the
oldest, and every edge into or out of j re-attached to i.

Legend: B batch, N memory slots, W slot width.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .addressing import cosine_similarity
from .hebbian import bound_rows


class MergeResult(NamedTuple):
    memory: Tensor  # (B, N, W)
    ages: Tensor  # (B, N)
    adjacency: Tensor  # (B, N, N)
    freed: Tensor  # (B, N) d_j, how much of slot j was merged away


def duplicate_scores(memory: Tensor, threshold: float) -> Tensor:
    """m_ij = clip(2 (cos(M_i, M_j) - theta) / (1 - theta), 0, 1) for i < j, else 0.

    memory (B, N, W); threshold theta < 1 -> (B, N, N).
    """
    if not threshold < 1:
        raise ValueError(f"merge threshold must be < 1, got {threshold}")
    similarity = cosine_similarity(memory, memory)  # (B, N, N), [i, j] = cos(M_i, M_j)
    scores = ((similarity - threshold) * (2.0 / (1.0 - threshold))).clamp(0.0, 1.0)
    return torch.triu(scores, diagonal=1)


def merge_matrix(duplicates: Tensor) -> tuple[Tensor, Tensor]:
    """(K, d) from m (B, N, N): K = diag(1 - d) + T (B, N, N), column-stochastic; d (B, N)."""
    receivers = 1.0 - duplicates.amax(dim=-2)  # (B, N): 1 - max_h m_hi
    eligible = duplicates * receivers.unsqueeze(-1)  # m~_ij
    freed = eligible.amax(dim=-2)  # (B, N) d_j
    tiny = torch.finfo(duplicates.dtype).tiny
    shares = eligible / eligible.sum(dim=-2, keepdim=True).clamp_min(tiny)
    return shares * freed.unsqueeze(-2) + torch.diag_embed(1.0 - freed), freed


def merge_redundant_slots(
    memory: Tensor,
    ages: Tensor,
    adjacency: Tensor,
    threshold: float,
    max_row_sum: float = 1.0,
) -> MergeResult:
    """Merge near-duplicate slots (see the module docstring).

    memory (B, N, W); ages (B, N); adjacency (B, N, N); threshold theta < 1; ``max_row_sum``
    the graph's row bound (:func:`~torchmem.core.hebbian.bound_rows`) -> :class:`MergeResult`.
    """
    merge, freed = merge_matrix(duplicate_scores(memory, threshold))
    tiny = torch.finfo(memory.dtype).tiny
    kept = (1.0 - freed).unsqueeze(-1)
    gathered = torch.matmul(merge, memory) / merge.sum(dim=-1, keepdim=True).clamp_min(tiny)
    oldest = ages.amax(dim=-1, keepdim=True) + 1.0
    new_ages = (1.0 - freed) * ages + freed * oldest
    moved = torch.matmul(torch.matmul(merge, adjacency), merge.transpose(-1, -2))
    eye = torch.eye(moved.shape[-1], dtype=torch.bool, device=moved.device)
    new_adjacency = bound_rows(moved.masked_fill(eye, 0.0), max_row_sum)
    return MergeResult(kept * gathered, new_ages, new_adjacency, freed)


__all__ = ["MergeResult", "duplicate_scores", "merge_matrix", "merge_redundant_slots"]
