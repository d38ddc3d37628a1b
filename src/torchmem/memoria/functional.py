"""Memoria's maths as pure tensor functions, one operation each (arXiv:2310.03052, Section 3).

The paper's memory has three levels of *engrams* (stored vectors): working memory (the
newest inputs), short-term memory (a FIFO of the most recent engrams) and long-term memory
(engrams that left short-term memory and are kept while their lifespan lasts). Engrams are
linked by Hebbian co-firing counts ("fire together, wire together"); the connection weight
of i -> j is count[i, j] / count[i, i]. One step is:

1. **Remind** (retrieval): working memory is the cue.

   a. short-term memories nearest to the cue (L2) are reminded: :func:`topk_by_distance`;
   b. each reminded short-term memory points to the long-term memory it fired with most
      (random among ties): :func:`initial_longterm_indices`;
   c. from those, greedy walks along the strongest links find more long-term memories:
      :func:`search_longterm`;
   d. the found ones nearest to the cue are kept: :func:`topk_by_distance`;
   e. the cue and everything reminded fire together: :func:`hebbian_update_`.

2. **Memorize & forget**: lifespans grow by the caller's reward and shrink by one, working
   memory becomes short-term memory, the overflow of short-term memory becomes long-term
   memory, and engrams whose lifespan ran out are dropped -> :func:`lifespan_increments`,
   :func:`overflow_to_longterm`, :func:`gather_padded`.

Layout conventions (shared with memoria-pytorch 1.1.0): every batch row holds N engram
slots in creation order; rows with fewer live engrams are padded at the *front* with NULL
slots (type 0, data 0, lifespan -1, counts -1). Index lists are int64, ascending, padded
with -1 at the front (:func:`indices_with_mask`).

Legend: B batch, N engram slots per row, D engram width, W working memories (the cue),
S short-term slots, L long-term slots, I initial long-term memories, K key slots,
k how many to keep.

Where memoria-pytorch has a bug, the functions take a ``reference_bugs`` flag: True
reproduces the reference exactly, False gives the corrected behaviour; each flag's
docstring says what differs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .utils import super_unique

__all__ = [
    "NULL",
    "WORKING",
    "SHORTTERM",
    "LONGTERM",
    "first_argmax",
    "indices_with_mask",
    "mask_with_indices",
    "gather_padded",
    "gather_padded_square",
    "negative_squared_distances",
    "reduce_cue_scores",
    "topk_by_distance",
    "initial_longterm_indices",
    "local_positions_of",
    "search_longterm",
    "hebbian_update_",
    "lifespan_increments",
    "overflow_to_longterm",
]

#: Engram type codes stored in ``engrams_types`` (uint8), as in memoria-pytorch.
NULL, WORKING, SHORTTERM, LONGTERM = 0, 1, 2, 3

# Unit roundoff of the two float formats used by the certified top-k.
_U32 = 2.0**-24
_U64 = 2.0**-53
# Above this a float32 squared distance may overflow: leave such rows to the exact kernel.
_F32_SAFE = 1e36


# --------------------------------------------------------------------------------------
# Index bookkeeping
# --------------------------------------------------------------------------------------


def first_argmax(values: Tensor, dim: int) -> Tensor:
    """Index of the first maximum along ``dim`` (ties go to the lowest index), like argmax.

    ``max(dim).indices`` gives the same answer and is several times faster than
    ``argmax`` on large CPU tensors, but has a large fixed cost on small ones. (It is used
    only with several rows, where no thread ever splits a row.)
    """
    if values.numel() >= 1 << 15 and values.numel() > values.size(dim):
        return values.max(dim=dim).indices
    return values.argmax(dim=dim)


def indices_with_mask(mask: Tensor) -> Tensor:
    """Positions of the True entries of each row, ascending, right-aligned with -1 padding.

    Args:
        mask: (B, N) bool.

    Returns:
        (B, M) int64 with M = the largest number of True entries in a row; row b holds its
        positions in ascending order in its last count_b columns and -1 before them.
    """
    batch, length = mask.shape
    counts = mask.sum(dim=1)
    width = int(counts.max()) if batch > 0 else 0
    # Column of each True entry in the output: its rank in the row, shifted right by the
    # row's padding. False entries go to a spare column that is cut off.
    column = mask.cumsum(dim=1) - 1 + (width - counts).unsqueeze(1)
    column = torch.where(mask, column, width)
    positions = torch.arange(length, device=mask.device).expand(batch, length)
    out = torch.full((batch, width + 1), -1, dtype=torch.long, device=mask.device)
    out.scatter_(1, column, positions)
    return out[:, :width]


def mask_with_indices(indices: Tensor, length: int) -> Tensor:
    """Boolean (B, length) mask that is True at the non-negative entries of ``indices``.

    Args:
        indices: (B, K) integer; negative entries mean "none" and are ignored.
        length: N, the number of slots.

    Returns:
        (B, N) bool. Repeated indices count once.
    """
    batch = indices.size(0)
    spare = torch.where(indices < 0, length, indices.long())
    mask = torch.zeros(batch, length + 1, dtype=torch.bool, device=indices.device)
    mask.scatter_(1, spare, True)
    return mask[:, :length]


def gather_padded(values: Tensor, indices: Tensor, fill: float | int) -> Tensor:
    """Gather ``values`` along dim 1 at ``indices``, writing ``fill`` where the index is -1.

    Args:
        values: (B, N) or (B, N, D).
        indices: (B, K) int64, entries in [-1, N).
        fill: value for the -1 entries (0 for data, -1 for lifespans, ids and ages...).

    Returns:
        (B, K) or (B, K, D), same dtype as ``values``.
    """
    null = indices < 0
    safe = indices.clamp(min=0)
    if values.dim() == 3:
        batch, length, width = values.shape
        # Whole rows: index_select copies them as blocks, much faster than gather.
        offsets = torch.arange(batch, device=values.device).unsqueeze(1) * length
        rows = values.reshape(batch * length, width).index_select(0, (safe + offsets).view(-1))
        return rows.view(batch, -1, width).masked_fill_(null.unsqueeze(2), fill)
    return values.gather(1, safe).masked_fill_(null, fill)


def gather_padded_square(counts: Tensor, indices: Tensor, fill: int = -1) -> Tensor:
    """The (B, K, K) sub-matrix counts[b, indices[b, i], indices[b, j]], ``fill`` where -1.

    Args:
        counts: (B, N, N) co-firing counts.
        indices: (B, K) int64 in [-1, N).

    Returns:
        (B, K, K), same dtype as ``counts``.
    """
    batch, width = indices.shape
    length = counts.size(1)
    null = indices < 0
    safe = indices.clamp(min=0)
    # Whole rows first (contiguous copies), then the columns of each row.
    offsets = torch.arange(batch, device=counts.device).unsqueeze(1) * length
    rows = counts.reshape(batch * length, length).index_select(0, (safe + offsets).view(-1))
    out = rows.view(batch, width, length).gather(2, safe.unsqueeze(1).expand(batch, width, width))
    if bool(null.any()):
        # Only the padding rows and columns are overwritten, not the whole block.
        b, i = null.nonzero(as_tuple=True)
        out[b, i, :] = fill
        out[b, :, i] = fill
    return out


# --------------------------------------------------------------------------------------
# Distances and the certified top-k
# --------------------------------------------------------------------------------------


def negative_squared_distances(query: Tensor, keys: Tensor) -> Tensor:
    """-||q_w - k_j||^2 for every cue / key pair, with memoria-pytorch's float32 kernel.

    The expression and its order of operations are the reference's (broadcast difference,
    square, sum over D, negate), so the values agree with it bit for bit. It builds a
    (B, W, K, D) temporary; :func:`topk_by_distance` calls it only where it must.

    Args:
        query: (B, W, D) cue (working memory).
        keys: (B, K, D) candidate engrams.

    Returns:
        (B, W, K).
    """
    return (query.unsqueeze(2) - keys.unsqueeze(1)).pow(2).sum(dim=3).neg()


def reduce_cue_scores(weights: Tensor, reduce: str) -> Tensor:
    """Collapse (B, W, K) cue-key weights over the cue: ``"mean"`` (short-term) or ``"sum"``."""
    if reduce == "mean":
        return weights.mean(dim=1)
    if reduce == "sum":
        return weights.sum(dim=1)
    raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")


def _exact_topk(query: Tensor, keys: Tensor, k: int, reduce: str, exclude: Tensor | None):
    scores = reduce_cue_scores(negative_squared_distances(query, keys), reduce)
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))
    return scores.topk(k, dim=1).indices


def topk_by_distance(
    query: Tensor,
    keys: Tensor,
    k: int,
    *,
    reduce: str,
    key_ids: Tensor,
    exclude: Tensor | None = None,
    force_exact: bool = False,
    stats: dict | None = None,
) -> Tensor:
    """Positions of the k keys nearest to the cue, the same set memoria-pytorch picks.

    The score of key j is -sum_w ||q_w - k_j||^2, averaged over the W cue vectors when
    ``reduce="mean"`` (short-term remind) or summed when ``reduce="sum"`` (final long-term
    choice); the k highest scores win.

    The reference computes the scores from a (B, W, K, D) float32 temporary. Only the *set*
    of winners matters downstream, so this function first ranks the keys with the cheap
    expansion sum_w ||q_w||^2 + W ||k_j||^2 - 2 (sum_w q_w) . k_j in float64, and bounds how
    far the reference's float32 value can lie from the exact one (a summation of D + W
    non-negative terms: relative error below 1.01 (D + W + 10) u32 in any order). When
    every kept key's interval lies above every dropped key's interval, the reference
    must keep exactly those keys. Rows where the intervals overlap (near-ties, duplicate
    keys, W = 0, huge values) are recomputed with the reference's own kernel and
    ``torch.topk``, so ties are broken as the reference breaks them.

    Keys sharing an id are interchangeable (padding slots with id -1 are identical zero
    vectors): the function may return any of them, and their order among themselves is
    not certified.

    Args:
        query: (B, W, D) float32 cue.
        keys: (B, K, D) float32 candidates.
        k: how many to keep, 0 <= k <= K.
        reduce: "mean" or "sum" over the cue.
        key_ids: (B, K) int64, what each key slot stands for; equal ids are interchangeable.
        exclude: optional (B, K) bool, keys scored -inf (never kept unless k forces it).
        force_exact: skip the float64 ranking and use the reference kernel for every row.
        stats: optional dict; its "exact_rows" entry is increased by the recomputed rows.

    Returns:
        (B, k) int64 positions into the K keys.
    """
    batch, cue, width = query.shape
    num_keys = keys.size(1)
    if k == 0 or num_keys == 0 or batch == 0:
        return torch.zeros(batch, 0, dtype=torch.long, device=keys.device)
    if force_exact or cue == 0:
        if stats is not None:
            stats["exact_rows"] = stats.get("exact_rows", 0) + batch
        return _exact_topk(query, keys, k, reduce, exclude)

    q = query.double()
    c = keys.double()
    q_sum = q.sum(dim=1)  # (B, D)
    q_sq = q.pow(2).sum(dim=(1, 2))  # (B,)
    c_sq = c.pow(2).sum(dim=2)  # (B, K)
    cross = torch.bmm(c, q_sum.unsqueeze(2)).squeeze(2)  # (B, K)
    total = q_sq.unsqueeze(1) + cue * c_sq - 2.0 * cross  # sum_w ||q_w - k_j||^2
    # Error of the float64 expansion, and of the reference's float32 summation.
    cross_bound = q_sum.norm(dim=1, keepdim=True) * c_sq.sqrt()
    magnitude = q_sq.unsqueeze(1) + cue * c_sq + 2.0 * cross_bound
    error = 4.0 * (cue * width + cue + width + 8) * _U64 * magnitude
    # Float32 side: rounding of D + W additions, squares and the mean, plus underflow of
    # up to W * D tiny squares (flushed to zero in the worst case).
    error = error + 1.01 * (width + cue + 10) * _U32 * total.abs() + cue * width * 2.0**-120
    scale = 1.0 / cue if reduce == "mean" else 1.0
    score = -total * scale
    error = error * scale
    unsafe = (total.abs() > _F32_SAFE).any(dim=1)
    if exclude is not None:
        score = score.masked_fill(exclude, float("-inf"))
        error = error.masked_fill(exclude, 0.0)

    order = score.argsort(dim=1, descending=True, stable=True)
    kept, dropped = order[:, :k], order[:, k:]
    low = (score - error).gather(1, kept)  # (B, k)
    high = (score + error).gather(1, dropped)  # (B, K - k)
    same_id = key_ids.gather(1, kept).unsqueeze(2) == key_ids.gather(1, dropped).unsqueeze(1)
    separated = (low.unsqueeze(2) > high.unsqueeze(1)) | same_id
    certain = separated.flatten(1).all(dim=1) & ~unsafe
    if bool(certain.all()):
        return kept
    redo = (~certain).nonzero().squeeze(1)
    if stats is not None:
        stats["exact_rows"] = stats.get("exact_rows", 0) + redo.numel()
    exact = _exact_topk(
        query[redo], keys[redo], k, reduce, None if exclude is None else exclude[redo]
    )
    kept = kept.clone()
    kept[redo] = exact
    return kept


# --------------------------------------------------------------------------------------
# Long-term memory retrieval
# --------------------------------------------------------------------------------------


def initial_longterm_indices(
    counts: Tensor,
    engram_types: Tensor,
    reminded_shortterm: Tensor,
    *,
    reference_bugs: bool = True,
) -> Tensor:
    """Remind stage b: for each reminded short-term engram, its strongest long-term partner.

    For reminded slot s the candidate is argmax over long-term engrams l of counts[s, l]
    (the co-firing count), ties broken uniformly at random with one float16 draw per
    (row, slot, engram), exactly the draw memoria-pytorch makes, so the global RNG advances
    identically. Slots whose pick is not long-term memory (there is none) give -1.

    ``reference_bugs=True`` reproduces two reference faults: a slot holding -1 (not
    reminded) reads row -1, the *last* engram (usually a fresh working memory whose counts
    are all zero), so every non-reminded slot seeds a random long-term memory; and when
    every draw among the maximal candidates is exactly 0.0 (float16 draws are 0 with
    probability about 2.5e-4) the argmax falls back to engram 0 even if it is not maximal.
    ``False`` gives -1 for non-reminded slots and only ever picks maximal candidates.

    Args:
        counts: (B, N, N) co-firing counts.
        engram_types: (B, N) uint8 type codes.
        reminded_shortterm: (B, S) int64 engram indices, -1 where not reminded.

    Returns:
        (B, I) int64 distinct initial long-term engram indices (via ``super_unique``; -1
        kept as a value and used as padding).
    """
    batch, length = engram_types.shape
    slots = reminded_shortterm.size(1)
    rows = reminded_shortterm
    if reference_bugs:
        rows = torch.where(rows < 0, rows + length, rows)
    offsets = torch.arange(batch, device=counts.device).unsqueeze(1) * length
    gathered = counts.reshape(batch * length, length).index_select(
        0, (rows.clamp(min=0) + offsets).view(-1)
    )
    gathered = gathered.view(batch, slots, length)
    is_ltm = (engram_types == LONGTERM).unsqueeze(1)
    gathered = gathered.masked_fill_(~is_ltm, -1)  # (B, S, N)
    best = gathered == gathered.max(dim=2, keepdim=True).values
    draw = torch.rand(batch, slots, length, dtype=torch.float16, device=counts.device)
    if reference_bugs:
        chosen = first_argmax(draw * best, dim=2)
    else:
        chosen = first_argmax(torch.where(best, draw, -1.0), dim=2)
    chosen = chosen.masked_fill_(engram_types.gather(1, chosen) != LONGTERM, -1)
    if not reference_bugs:
        chosen = chosen.masked_fill_(reminded_shortterm < 0, -1)
    return super_unique(chosen, dim=1)


def local_positions_of(global_indices: Tensor, subset_indices: Tensor, length: int) -> Tensor:
    """Positions within ``subset_indices`` of the engrams listed in ``global_indices``.

    Args:
        global_indices: (B, I) engram indices in [-1, N); -1 is ignored.
        subset_indices: (B, L) ascending engram indices of a subset (e.g. long-term memory),
            -1 padded, as from :func:`indices_with_mask`.
        length: N, the number of engram slots.

    Returns:
        (B, M) int64 ascending positions into the L subset slots, -1 padded at the front.
    """
    # One spare column (index N) is never marked: -1 entries of either list land there.
    marked = mask_with_indices(global_indices, length + 1)
    wanted = marked.gather(1, torch.where(subset_indices < 0, length, subset_indices))
    return indices_with_mask(wanted)


def search_longterm(
    counts: Tensor,
    longterm_indices: Tensor,
    start_positions: Tensor,
    depth: int,
    *,
    reference_bugs: bool = True,
) -> Tensor:
    """Remind stage c: greedy walks along the strongest long-term links.

    Each walk starts at one initial long-term engram; at every step all walks move, at the
    same time, to the not-yet-visited long-term engram with the highest co-firing count from
    their current engram (lowest position among ties), and that engram is marked visited.
    A walk with nowhere left to go yields -1. Only the rows of the slots the walks stand on
    are read (at most (B, I, L), usually far fewer as walks merge), never the whole
    (B, L, L) long-term block.

    ``reference_bugs=True`` reproduces the reference's use of -1 as an index: a -1 start or
    dead end reads row -1 (the *last* long-term slot) and marks that slot visited, so such
    walks restart from the last long-term memory and it can never be found. ``False``
    keeps -1 walks at -1.

    Args:
        counts: (B, N, N) co-firing counts.
        longterm_indices: (B, L) engram indices of long-term memory, -1 padded at the front.
        start_positions: (B, I) positions into the L slots, -1 padded.
        depth: number of steps of every walk.

    Returns:
        (B, F) int64 distinct *positions into the L long-term slots* (not engram indices)
        reached by the walks, starts included, via ``super_unique``.
    """
    batch, num_ltm = longterm_indices.shape
    num_walks = start_positions.size(1)
    length = counts.size(1)
    if num_walks == 0:
        return start_positions.new_zeros(batch, 0)
    flat = counts.reshape(batch, length * length)  # a view when counts is contiguous
    columns = longterm_indices.clamp(min=0).unsqueeze(1)  # (B, 1, L)
    # Slot L stands for "nowhere" (a -1 walk in the corrected mode): it holds no engram.
    engram_of_slot = torch.cat([longterm_indices, longterm_indices.new_full((batch, 1), -1)], 1)
    # visited[:, L] is a spare column that absorbs the writes of -1 walks.
    visited = torch.cat([longterm_indices < 0, longterm_indices.new_ones(batch, 1).bool()], 1)
    walk_numbers = torch.arange(num_walks, device=counts.device).expand(batch, num_walks)

    def mark(positions: Tensor) -> None:
        if reference_bugs:
            target = torch.where(positions < 0, positions + num_ltm, positions)
        else:
            target = torch.where(positions < 0, num_ltm, positions)
        visited.scatter_(1, target, True)

    found = [start_positions]
    mark(start_positions)
    current = start_positions
    for _ in range(depth):
        if reference_bugs:
            stand = torch.where(current < 0, current + num_ltm, current)
        else:
            stand = torch.where(current < 0, num_ltm, current)
        # Walks standing on the same slot see the same row and the same visited set, so
        # they take the same step: compute it once per occupied slot (after the first
        # step most walks have merged).
        occupied = torch.zeros(batch, num_ltm + 1, dtype=torch.bool, device=counts.device)
        slots = indices_with_mask(occupied.scatter_(1, stand, True))  # (B, U), -1 padded
        number_of_slot = torch.zeros(batch, num_ltm + 2, dtype=torch.long, device=counts.device)
        number_of_slot.scatter_(
            1, torch.where(slots < 0, num_ltm + 1, slots), walk_numbers[:, : slots.size(1)]
        )
        walk_slot = number_of_slot.gather(1, stand)  # (B, I): which unique slot each walk is on

        engram = gather_padded(engram_of_slot, slots, -1)  # (B, U) engram under each slot
        stranded = engram < 0
        index = engram.clamp(min=0).unsqueeze(2) * length + columns  # (B, U, L)
        row = flat.gather(1, index.view(batch, -1)).view(batch, slots.size(1), num_ltm)
        # Visited (and padding) slots read -1; real counts are >= 0.
        row = torch.where(visited[:, :num_ltm].unsqueeze(1), -1, row)
        step = first_argmax(row, dim=2)
        # A walk standing on padding reads an all -1 row, whose first maximum is slot 0.
        step = step.masked_fill_(stranded, 0)
        step = step.masked_fill_(visited.gather(1, step), -1)
        if not reference_bugs:
            step = step.masked_fill_(slots == num_ltm, -1)
        step = step.gather(1, walk_slot)  # back to one step per walk
        found.append(step)
        mark(step)
        current = step
    return super_unique(torch.stack(found, dim=1).view(batch, -1), dim=1)


# --------------------------------------------------------------------------------------
# Hebbian update and memorize & forget
# --------------------------------------------------------------------------------------


def hebbian_update_(counts: Tensor, fired: Tensor) -> Tensor:
    """counts[b, i, j] += 1 for every pair of engrams i, j that fired together (in place).

    Equal to ``counts += outer(fired, fired)`` (the diagonal is each engram's fire count)
    but touches only the (B, F, F) fired pairs, not all N^2 entries.

    Args:
        counts: (B, N, N) int32 co-firing counts, modified in place.
        fired: (B, N) bool, which engrams fired.

    Returns:
        ``counts``.
    """
    positions = indices_with_mask(fired)  # (B, F), -1 padded
    if positions.size(1) == 0:
        return counts
    batch, length = fired.shape
    valid = positions >= 0
    pairs = (valid.unsqueeze(2) & valid.unsqueeze(1)).to(counts.dtype)
    safe = positions.clamp(min=0)
    if counts.is_contiguous():
        # Padding pairs add 0 to entry (0, 0); within a row the scatter is serial.
        flat_index = (safe.unsqueeze(2) * length + safe.unsqueeze(1)).view(batch, -1)
        counts.view(batch, -1).scatter_add_(1, flat_index, pairs.view(batch, -1))
    else:
        rows = torch.arange(batch, device=counts.device).view(-1, 1, 1)
        counts.index_put_((rows, safe.unsqueeze(2), safe.unsqueeze(1)), pairs, accumulate=True)
    return counts


def lifespan_increments(
    indices: Tensor, lifespan_delta: Tensor, length: int, *, reference_bugs: bool = True
) -> Tensor:
    """Per-slot lifespan increments from (index, delta) pairs.

    ``reference_bugs=True`` gives the reference's semantics: when an index repeats, one of
    its deltas wins and the others are lost (PyTorch's non-accumulating ``index_put``).
    ``False`` adds all of them up.

    Args:
        indices: (B, R) int64 engram indices, negative entries ignored.
        lifespan_delta: (B, R) (or broadcastable) increments.
        length: N.

    Returns:
        (B, N) float32 increments.
    """
    batch = indices.size(0)
    spare = torch.where(indices < 0, length, indices)
    increments = torch.zeros(batch, length + 1, dtype=torch.float32, device=indices.device)
    rows = torch.arange(batch, device=indices.device).unsqueeze(1)
    if reference_bugs:
        increments[rows, spare] += lifespan_delta
    else:
        delta = torch.broadcast_to(lifespan_delta, spare.shape).to(torch.float32)
        increments.index_put_((rows.expand_as(spare), spare), delta, accumulate=True)
    return increments[:, :length]


def overflow_to_longterm(engram_types: Tensor, capacity: int) -> Tensor:
    """Memorize: which short-term engrams move to long-term memory.

    Per row, the oldest max(0, count - capacity) short-term engrams overflow (engrams are
    kept in creation order, so oldest = lowest position).

    Args:
        engram_types: (B, N) uint8.
        capacity: short-term capacity per row.

    Returns:
        (B, N) bool, True for the engrams that become long-term memory.
    """
    shortterm = engram_types == SHORTTERM
    rank = shortterm.cumsum(dim=1)
    excess = shortterm.sum(dim=1, keepdim=True) - capacity
    return shortterm & (rank <= excess)
