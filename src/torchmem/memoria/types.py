"""Plain records describing engrams and their history (memoria-pytorch 1.1.0 ``memoria.types``).

These frozen dataclasses are what :meth:`Engrams.status_summary` and :class:`HistoryManager`
produce for engram analysis (arXiv:2310.03052, the engram-analysis section: primacy, recency
and temporal contiguity are read from them). Field names, order and types follow the
reference package so that pickled histories and code that reads them carry over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["EngramConnection", "EngramInfo", "EngramsInfo", "Firing", "EngramHistory"]


@dataclass(slots=True, frozen=True)
class EngramConnection:
    """A directed edge of the engram graph.

    ``weight`` is the conditional firing probability P(target fires | source fires), i.e.
    the co-firing count divided by the source's own fire count (the Hebbian connection weight).
    """

    #: Id of the engram the edge leaves.
    source_id: int
    #: Id of the engram the edge enters.
    target_id: int
    #: Connection weight: cofire_count / fire count of the source.
    weight: float
    #: How many times source and target fired together.
    cofire_count: int


@dataclass(slots=True, frozen=True)
class EngramInfo:
    """Snapshot of one engram: its level, lifespan, age, fire count and edges."""

    #: Engram id (unique within one batch row).
    id: int
    #: Memory level name.
    type: Literal["WORKING", "SHORTTERM", "LONGTERM"]
    #: Remaining lifespan (a float in practice, as in the reference).
    lifespan: int
    #: Age in adjustment steps, or None when ages are not tracked.
    age: int | None
    #: How many times the engram has fired.
    fire_count: int
    #: Edges leaving this engram, ordered by target position.
    outgoings: tuple[EngramConnection]
    #: Edges entering this engram, ordered by source position.
    incoming: tuple[EngramConnection]

    @property
    def cofire_counts(self) -> dict[int, int]:
        """Map target id -> co-firing count over the outgoing edges."""
        return {edge.target_id: edge.cofire_count for edge in self.outgoings}


@dataclass(slots=True, frozen=True)
class EngramsInfo:
    """Snapshot of all engrams of one batch row."""

    #: Engram id -> EngramInfo, in memory order.
    engrams: dict[int, EngramInfo]
    #: (source id, target id) -> EngramConnection, for every edge.
    edges: dict[tuple[int, int], EngramConnection]
    #: Ids of working-memory engrams, in memory order.
    working: tuple[int]
    #: Ids of short-term-memory engrams, in memory order.
    shortterm: tuple[int]
    #: Ids of long-term-memory engrams, in memory order.
    longterm: tuple[int]


@dataclass(slots=True, frozen=True)
class Firing:
    """One firing of an engram seen between two summaries."""

    #: Summary index (time step) at which the firing was seen.
    timestep: int
    #: Id of the engram that fired.
    engram_id: int
    #: Lifespan gained at that step (new - old + 1, the +1 undoing the per-step decay).
    lifespan_gain: float


@dataclass(slots=True, frozen=True)
class EngramHistory:
    """Everything recorded about one engram over its life."""

    #: Engram id.
    id: int
    #: Time step of the first summary that contains the engram.
    creation_timestep: int
    #: Time step of the first summary without it, or None while alive.
    deletion_timestep: int | None
    #: Number of summaries the engram appeared in.
    duration: int | None
    #: Time steps at which it fired.
    firing_times: list[int]
    #: Its firings, in time order.
    firings: list[Firing]
    #: The summaries from its creation to its deletion.
    summaries: list[EngramsInfo]
