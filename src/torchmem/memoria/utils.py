"""Small tensor helpers shared by the Memoria modules (memoria-pytorch 1.1.0 ``memoria.utils``)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["super_unique"]


def super_unique(t: Tensor, dim: int) -> Tensor:
    """Distinct values of every slice of ``t`` along ``dim``, padded with -1.

    Unlike ``torch.unique(dim=...)``, which deduplicates whole slices, this deduplicates
    *within* each slice independently, as Memoria needs for per-row index lists. A value of
    -1 in the input is kept as one of the distinct values (so a row that held -1 still holds
    one), and rows with fewer distinct values than the widest row are filled with -1.

    Args:
        t: integer tensor, e.g. (B, K) indices with -1 for "none".
        dim: dimension along which to deduplicate.

    Returns:
        int64 tensor shaped like ``t`` except ``dim``, whose size becomes
        min(t.size(dim), largest number of distinct values in a slice). The order of the
        values within a slice is the order in which ``torch.topk`` lists the set members of
        a presence mask; it is kept because callers of memoria-pytorch see it, and an empty
        ``t`` is returned unchanged.
    """
    if t.numel() == 0:
        return t
    offset = t.min()
    shifted = t - offset
    presence_shape = list(t.shape)
    presence_shape[dim] = int(shifted.max()) + 1
    # presence[..., v, ...] is True when value v + offset occurs in that slice.
    presence = torch.zeros(presence_shape, dtype=torch.bool, device=t.device)
    presence.scatter_(dim, shifted.long(), True)
    width = min(t.size(dim), int(presence.sum(dim).max()))
    present, values = presence.int().topk(width, dim=dim)
    values += offset
    return values.masked_fill_(present == 0, -1)
