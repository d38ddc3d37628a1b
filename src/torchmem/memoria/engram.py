"""Engrams: the stored memories of Memoria and their Hebbian links (arXiv:2310.03052, Section 3).

An engram is one stored vector with a memory level (working, short-term, long-term), a
lifespan, optionally an age and an id, and co-firing counts with every other engram of its
batch row; ``induce_counts[b, i, j]`` counts how often i and j fired together and its
diagonal is each engram's fire count. The connection weight i -> j of the paper is
``induce_counts[b, i, j] / induce_counts[b, i, i]``.

:class:`Engrams` is the container of memoria-pytorch 1.1.0 with the same constructor,
attributes, dtypes, padding conventions and methods; the index and gather work is done by
the pure functions of :mod:`torchmem.memoria.functional`.

Legend: B batch, N engram slots per row (``memory_length``), D width (``hidden_dim``),
K selected slots.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum

import torch
from torch import Tensor

from . import functional as F
from .types import EngramConnection, EngramInfo, EngramsInfo

__all__ = ["EngramType", "Engrams"]


class EngramType(Enum):
    """Memory level of an engram; ``NULL`` marks a padding slot."""

    NULL = 0
    WORKING = 1
    SHORTTERM = 2
    LONGTERM = 3


def _check_index_tensor(indices: Tensor, batch_size: int, length: int, what: str) -> None:
    if not isinstance(indices, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(indices).__name__}")
    if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
        raise ValueError(f"{what} must be an integer tensor, got dtype {indices.dtype}")
    if indices.dim() != 2 or indices.size(0) != batch_size:
        raise ValueError(
            f"{what} must have shape (batch_size={batch_size}, K), got {tuple(indices.shape)}"
        )
    if indices.numel() and int(indices.max()) >= length:
        raise ValueError(
            f"{what} holds index {int(indices.max())} but there are only {length} engram slots "
            f"per row (valid: -1 for none, 0..{length - 1})"
        )


class Engrams:
    """Engram store of a batch: data, levels, lifespans, co-firing counts, ages and ids.

    Attributes:
        batch_size: B.
        memory_length: N, slots per row (live engrams plus front padding).
        hidden_dim: D.
        data: (B, N, D) float32 engram vectors (0 in padding slots).
        induce_counts: (B, N, N) int32 co-firing counts (-1 in padding rows and columns).
        engrams_types: (B, N) uint8 :class:`EngramType` values (0 in padding slots).
        lifespan: (B, N) float32 remaining lifespan (-1 in padding slots).
        age: (B, N) int32 steps since creation, or None when ``track_age`` is False.
        engram_ids: (B, N) int32 ids, or None when ``track_engram_id`` is False.
        track_age: whether ``age`` is kept.
        track_engram_id: whether ``engram_ids`` is kept.

    Args:
        data: (B, N, D) vectors; converted to float32 and detached.
        induce_counts: (B, N, N) counts, zeros when None.
        engrams_types: (B, N) tensor, or one :class:`EngramType` for all (WORKING when None).
        lifespan: (B, N) tensor or one number for all.
        age: (B, N) tensor; zeros when None or a number (only used with ``track_age``).
        engram_ids: (B, N) tensor, or the first id (row b gets first..first+N-1).
        track_age: keep ages.
        track_engram_id: keep ids.
    """

    @torch.no_grad()
    def __init__(
        self,
        data: Tensor,
        induce_counts: Tensor | None = None,
        engrams_types: Tensor | EngramType | None = None,
        lifespan: Tensor | int = 0,
        age: Tensor | int | None = None,
        engram_ids: Tensor | int | None = None,
        track_age: bool = False,
        track_engram_id: bool = False,
    ) -> None:
        if not isinstance(data, Tensor) or data.dim() != 3:
            shape = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
            raise ValueError(f"Engrams data must be a (B, N, D) tensor, got {shape}")
        self.batch_size, self.memory_length, self.hidden_dim = data.shape
        self.track_age = track_age
        self.track_engram_id = track_engram_id
        batch, length, device = self.batch_size, self.memory_length, data.device

        self.data: Tensor = data.detach().float()
        if induce_counts is None:
            self.induce_counts = torch.zeros(
                batch, length, length, dtype=torch.int32, device=device
            )
        else:
            self.induce_counts = induce_counts.detach().type(torch.int32)
        if isinstance(engrams_types, Tensor):
            self.engrams_types = engrams_types.detach().type(torch.uint8)
        else:
            level = engrams_types if isinstance(engrams_types, EngramType) else EngramType.WORKING
            self.engrams_types = torch.full(
                (batch, length), level.value, dtype=torch.uint8, device=device
            )
        if isinstance(lifespan, Tensor):
            self.lifespan = lifespan.detach().type(torch.float32)
        else:
            self.lifespan = torch.full(
                (batch, length), lifespan, dtype=torch.float32, device=device
            )

        self.age: Tensor | None = None
        if track_age:
            if isinstance(age, Tensor):
                self.age = age.detach().type(torch.int32)
            else:
                self.age = torch.zeros(batch, length, dtype=torch.int32, device=device)

        self.engram_ids: Tensor | None = None
        if track_engram_id:
            if isinstance(engram_ids, Tensor):
                self.engram_ids = engram_ids.detach().type(torch.int32)
            else:
                first = engram_ids or 0
                ids = torch.arange(first, first + length, dtype=torch.int32, device=device)
                self.engram_ids = ids.unsqueeze(0).repeat(batch, 1)

    @classmethod
    def _from_parts(
        cls,
        data: Tensor,
        induce_counts: Tensor,
        engrams_types: Tensor,
        lifespan: Tensor,
        age: Tensor | None,
        engram_ids: Tensor | None,
        track_age: bool,
        track_engram_id: bool,
    ) -> Engrams:
        """Wrap tensors that already have the right dtypes, without copying them."""
        new = cls.__new__(cls)
        new.batch_size, new.memory_length, new.hidden_dim = data.shape
        new.track_age, new.track_engram_id = track_age, track_engram_id
        new.data, new.induce_counts = data, induce_counts
        new.engrams_types, new.lifespan = engrams_types, lifespan
        new.age = age if track_age else None
        new.engram_ids = engram_ids if track_engram_id else None
        return new

    @classmethod
    def empty(cls, track_age: bool = False, track_engram_id: bool = False) -> Engrams:
        """A store with no rows and no slots: data (0, 0, 0)."""
        return cls(torch.zeros(0, 0, 0), track_age=track_age, track_engram_id=track_engram_id)

    def __len__(self) -> int:
        """B * N, the number of slots (padding included)."""
        return self.lifespan.numel()

    @torch.no_grad()
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Engrams):
            return NotImplemented

        def same(a: Tensor | None, b: Tensor | None) -> bool:
            return a is not None and b is not None and a.shape == b.shape and bool((a == b).all())

        equal = (
            same(self.data, other.data)
            and same(self.induce_counts, other.induce_counts)
            and same(self.engrams_types, other.engrams_types)
            and same(self.lifespan, other.lifespan)
            and self.track_age == other.track_age
            and self.track_engram_id == other.track_engram_id
        )
        if equal and self.track_age:
            equal = same(self.age, other.age)
        if equal and self.track_engram_id:
            equal = same(self.engram_ids, other.engram_ids)
        return equal

    __hash__ = None  # mutable container, like the reference

    @torch.no_grad()
    def __add__(self, other: Engrams) -> Engrams:
        """Concatenate along the slots: ``other``'s engrams come after ``self``'s.

        The co-firing counts of the result are block-diagonal (no links between the two).
        If either side is empty the other one itself is returned.
        """
        if len(self) == 0:
            return other
        if len(other) == 0:
            return self
        if other.batch_size != self.batch_size or other.hidden_dim != self.hidden_dim:
            raise ValueError(
                "cannot concatenate engrams of batch size / width "
                f"{self.batch_size}/{self.hidden_dim} and {other.batch_size}/{other.hidden_dim}"
            )
        track_age = self.track_age and other.track_age
        track_id = self.track_engram_id and other.track_engram_id
        if self.track_age != other.track_age:
            print("Warning: track_age is disabled due to inconsistency")
        if self.track_engram_id != other.track_engram_id:
            print("Warning: track_engram_id is disabled due to inconsistency")
        n = self.memory_length
        counts = self.induce_counts.new_empty(
            self.batch_size, n + other.memory_length, n + other.memory_length
        )
        # Each entry is written once: the two diagonal blocks, and zeros between them.
        counts[:, :n, :n] = self.induce_counts
        counts[:, n:, n:] = other.induce_counts
        counts[:, :n, n:] = 0
        counts[:, n:, :n] = 0
        return Engrams._from_parts(
            torch.cat([self.data, other.data], dim=1),
            counts,
            torch.cat([self.engrams_types, other.engrams_types], dim=1),
            torch.cat([self.lifespan, other.lifespan], dim=1),
            torch.cat([self.age, other.age], dim=1) if track_age else None,
            torch.cat([self.engram_ids, other.engram_ids], dim=1) if track_id else None,
            track_age,
            track_id,
        )

    @torch.no_grad()
    def __iter__(self) -> Iterator[Engrams]:
        """One single-row :class:`Engrams` per batch row (views, not copies)."""
        for b in range(self.batch_size):
            yield Engrams._from_parts(
                self.data[b : b + 1],
                self.induce_counts[b : b + 1],
                self.engrams_types[b : b + 1],
                self.lifespan[b : b + 1],
                self.age[b : b + 1] if self.track_age else None,
                self.engram_ids[b : b + 1] if self.track_engram_id else None,
                self.track_age,
                self.track_engram_id,
            )

    @property
    def working_memory_mask(self) -> Tensor:
        """(B, N) bool, True for working-memory engrams."""
        return self.engrams_types == EngramType.WORKING.value

    @property
    def shortterm_memory_mask(self) -> Tensor:
        """(B, N) bool, True for short-term engrams."""
        return self.engrams_types == EngramType.SHORTTERM.value

    @property
    def longterm_memory_mask(self) -> Tensor:
        """(B, N) bool, True for long-term engrams."""
        return self.engrams_types == EngramType.LONGTERM.value

    @property
    def fire_count(self) -> Tensor:
        """(B, N) fire counts: the diagonal of ``induce_counts`` (a view)."""
        return self.induce_counts.diagonal(dim1=1, dim2=2)

    @fire_count.setter
    def fire_count(self, value: Tensor) -> None:
        with torch.no_grad():
            diagonal = torch.arange(value.size(1), device=value.device)
            self.induce_counts[:, diagonal, diagonal] = value.to(self.induce_counts.dtype)

    @torch.no_grad()
    def get_indices_with_mask(self, mask: Tensor) -> Tensor:
        """(B, M) ascending indices of the True entries of a (B, N) mask, -1 padded in front."""
        return F.indices_with_mask(mask)

    @torch.no_grad()
    def get_mask_with_indices(self, indices: Tensor) -> Tensor:
        """(B, N) bool mask of (B, K) indices; negative entries are ignored.

        Like memoria-pytorch, this rewrites every negative entry of ``indices`` to -1 in place.
        """
        _check_index_tensor(indices, self.batch_size, self.memory_length, "indices")
        indices[indices < 0] = -1
        return F.mask_with_indices(indices, self.memory_length)

    def _split(self, mask: Tensor) -> tuple[Engrams, Tensor]:
        indices = F.indices_with_mask(mask)
        return self.select(indices), indices

    @torch.no_grad()
    def get_working_memory(self) -> tuple[Engrams, Tensor]:
        """Working-memory engrams (padded) and their (B, W) indices (-1 = none)."""
        return self._split(self.working_memory_mask)

    @torch.no_grad()
    def get_shortterm_memory(self) -> tuple[Engrams, Tensor]:
        """Short-term engrams (padded) and their (B, S) indices (-1 = none)."""
        return self._split(self.shortterm_memory_mask)

    @torch.no_grad()
    def get_longterm_memory(self) -> tuple[Engrams, Tensor]:
        """Long-term engrams (padded) and their (B, L) indices (-1 = none)."""
        return self._split(self.longterm_memory_mask)

    @torch.no_grad()
    def get_local_indices_from_global_indices(
        self, partial_mask: Tensor, global_indices: Tensor
    ) -> Tensor:
        """Positions, within the sub-store selected by ``partial_mask``, of some engrams.

        Args:
            partial_mask: (B, N) bool selecting a sub-store (e.g. long-term memory).
            global_indices: (B, K) engram indices, -1 ignored.

        Returns:
            (B, M) ascending positions into ``mask_select(partial_mask)``, -1 padded.
        """
        subset = F.indices_with_mask(partial_mask)
        return F.local_positions_of(global_indices, subset, self.memory_length)

    @torch.no_grad()
    def fire_together_wire_together(self, indices: Tensor) -> None:
        """Hebbian update: every pair of the (B, K) engram indices fires together once.

        -1 entries are ignored and repeated indices count once (negative entries of
        ``indices`` are rewritten to -1 in place, as in memoria-pytorch).
        """
        fired = self.get_mask_with_indices(indices)
        F.hebbian_update_(self.induce_counts, fired)

    @torch.no_grad()
    def mask_select(self, mask: Tensor) -> Engrams:
        """The engrams where the (B, N) ``mask`` is True, in order, front-padded with NULL."""
        return self.select(F.indices_with_mask(mask))

    @torch.no_grad()
    def select(self, indices: Tensor) -> Engrams:
        """Engrams at ``indices``: (K,) for the same slots in every row, or (B, K) per row.

        With 2-d indices, -1 gives a NULL padding slot (data 0, counts -1, type NULL,
        lifespan -1, age -1, id -1). 1-d indices follow Python indexing (no padding).
        """
        if indices.dim() == 1:
            ages = self.age[:, indices] if self.track_age else None
            ids = self.engram_ids[:, indices] if self.track_engram_id else None
            return Engrams._from_parts(
                self.data[:, indices],
                self.induce_counts[:, indices][:, :, indices],
                self.engrams_types[:, indices],
                self.lifespan[:, indices],
                ages,
                ids,
                self.track_age,
                self.track_engram_id,
            )
        if indices.dim() != 2:
            raise ValueError(f"indices must be a 1d or 2d tensor, got shape {tuple(indices.shape)}")
        _check_index_tensor(indices, self.batch_size, self.memory_length, "indices")
        indices = indices.long()
        return Engrams._from_parts(
            F.gather_padded(self.data, indices, 0.0),
            F.gather_padded_square(self.induce_counts, indices, -1),
            F.gather_padded(self.engrams_types, indices, EngramType.NULL.value),
            F.gather_padded(self.lifespan, indices, -1.0),
            F.gather_padded(self.age, indices, -1) if self.track_age else None,
            F.gather_padded(self.engram_ids, indices, -1) if self.track_engram_id else None,
            self.track_age,
            self.track_engram_id,
        )

    @torch.no_grad()
    def delete(self, indices: Tensor) -> None:
        """Remove the engrams at (B, K) ``indices`` (-1 ignored); rows are re-padded."""
        keep = ~self.get_mask_with_indices(indices)
        self._become(self.mask_select(keep))

    def _become(self, other: Engrams) -> None:
        self.batch_size, self.memory_length = other.batch_size, other.memory_length
        self.data, self.induce_counts = other.data, other.induce_counts
        self.engrams_types, self.lifespan = other.engrams_types, other.lifespan
        self.age, self.engram_ids = other.age, other.engram_ids

    @torch.no_grad()
    def extend_lifespan(self, indices: Tensor, lifespan_delta: Tensor) -> None:
        """lifespan[b, indices[b, r]] += lifespan_delta[b, r]; negative indices are ignored.

        As in memoria-pytorch, negative entries of ``indices`` are rewritten to -1 in place,
        and when an index repeats only one of its deltas is applied.
        """
        _check_index_tensor(indices, self.batch_size, self.memory_length, "indices")
        indices[indices < 0] = -1
        self.lifespan += F.lifespan_increments(indices, lifespan_delta, self.memory_length)

    @torch.no_grad()
    def decrease_lifespan(self) -> None:
        """Every slot loses one unit of lifespan (padding included)."""
        self.lifespan -= 1.0

    @torch.no_grad()
    def increase_age(self) -> None:
        """Every slot gets one step older (when ages are tracked)."""
        if self.track_age:
            self.age += 1

    @torch.no_grad()
    def status_summary(self) -> list[EngramsInfo]:
        """One :class:`EngramsInfo` per batch row: every live engram and its edges.

        The weight of edge i -> j is ``induce_counts[i, j] / fire_count[i]`` in float32; an
        edge is listed when it is positive and joins two different live engrams. Needs
        ``track_engram_id``.
        """
        if not self.track_engram_id:
            raise ValueError("status_summary needs engram ids: build with track_engram_id=True")
        levels = {t.value: t for t in EngramType}
        summaries = []
        for row in self:
            counts = row.induce_counts[0]
            weights = counts / row.fire_count[0].unsqueeze(1)  # (N, N) float32, row i / fire_i
            ids = row.engram_ids[0]
            live = row.engrams_types[0] != EngramType.NULL.value
            linked = (weights > 0) & (ids.unsqueeze(0) != ids.unsqueeze(1))
            ids_list = ids.tolist()
            types_list = row.engrams_types[0].tolist()
            lifespans = row.lifespan[0].tolist()
            ages = row.age[0].tolist() if row.track_age else None
            fires = row.fire_count[0].tolist()

            # Outgoing i -> j needs a live target j; incoming j -> i a live source j. Both
            # read their co-firing count from row i, as the reference does.
            outgoing: dict[int, list[EngramConnection]] = {}
            source, target = (linked & live.unsqueeze(0)).nonzero(as_tuple=True)
            for i, j, w, c in zip(
                source.tolist(),
                target.tolist(),
                weights[source, target].tolist(),
                counts[source, target].tolist(),
            ):
                outgoing.setdefault(i, []).append(EngramConnection(ids_list[i], ids_list[j], w, c))
            incoming: dict[int, list[EngramConnection]] = {}
            source, target = (linked & live.unsqueeze(1)).nonzero(as_tuple=True)
            for j, i, w, c in zip(
                source.tolist(),
                target.tolist(),
                weights[source, target].tolist(),
                counts[target, source].tolist(),
            ):
                incoming.setdefault(i, []).append(EngramConnection(ids_list[j], ids_list[i], w, c))
            # nonzero() lists (source, target) row-major, so each incoming list is in source
            # order already; outgoing lists are in target order.

            engrams: dict[int, EngramInfo] = {}
            edges: dict[tuple[int, int], EngramConnection] = {}
            by_level: dict[int, list[int]] = {1: [], 2: [], 3: []}
            for i, level in enumerate(types_list):
                if level == EngramType.NULL.value:
                    continue
                engram_id = ids_list[i]
                by_level[levels[level].value].append(engram_id)
                outs = tuple(outgoing.get(i, ()))
                for connection in outs:
                    edges[connection.source_id, connection.target_id] = connection
                engrams[engram_id] = EngramInfo(
                    id=engram_id,
                    type=levels[level].name,
                    lifespan=lifespans[i],
                    age=ages[i] if ages is not None else None,
                    fire_count=fires[i],
                    outgoings=outs,
                    incoming=tuple(incoming.get(i, ())),
                )
            summaries.append(
                EngramsInfo(
                    engrams=engrams,
                    edges=edges,
                    working=tuple(by_level[1]),
                    shortterm=tuple(by_level[2]),
                    longterm=tuple(by_level[3]),
                )
            )
        return summaries
