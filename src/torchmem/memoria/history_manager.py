"""History of engram summaries, for the paper's engram analysis (arXiv:2310.03052).

The paper reads primacy, recency and temporal contiguity effects off the lives of engrams:
when each was created and forgotten, when it fired and how much lifespan each firing
earned. :class:`HistoryManager` (memoria-pytorch 1.1.0's class of the same name) collects
that from one :class:`~.types.EngramsInfo` per step for one batch row.
"""

from __future__ import annotations

import gzip
import pickle
from collections import defaultdict

from .types import EngramHistory, EngramInfo, EngramsInfo, Firing

__all__ = ["HistoryManager"]


class HistoryManager:
    """Per-engram creation, deletion, firings and durations over a sequence of summaries.

    Attributes:
        summaries: every summary added, one per time step.
        engram_creation_times: engram id -> step of its first appearance.
        engram_deletion_times: engram id -> first step it was missing from.
        engram_durations: engram id -> number of steps it has been present.
        engram_firing_times: engram id -> steps at which its fire count grew.
        engram_firings: engram id -> its :class:`~.types.Firing` records.
        firings_per_time: per step, the firings seen at that step.
        alive_engram_ids: ids present in the last summary.
        deleted_engram_ids: ids that have disappeared, in order of disappearance.
    """

    def __init__(self) -> None:
        self.summaries: list[EngramsInfo] = []
        self.engram_creation_times: dict[int, int] = {}
        self.engram_deletion_times: dict[int, int] = {}
        self.engram_durations: dict[int, int] = {}
        self.engram_firing_times: dict[int, list[int]] = defaultdict(list)
        self.engram_firings: dict[int, list[Firing]] = defaultdict(list)
        self.firings_per_time: list[list[Firing]] = []
        self.alive_engram_ids: list[int] = []
        self.deleted_engram_ids: list[int] = []

    def __len__(self) -> int:
        return len(self.summaries)

    def __getitem__(self, index: int) -> EngramsInfo:
        return self.summaries[index]

    def save(self, path: str) -> None:
        """Write the whole manager to a gzip-compressed pickle at ``path``."""
        with gzip.open(path, "wb") as f:
            pickle.dump(self, f)

    @classmethod
    def load(cls, path: str) -> HistoryManager:
        """Read a manager written by :meth:`save`. Only load files you trust (pickle)."""
        with gzip.open(path, "rb") as f:
            return pickle.load(f)

    @property
    def timestep(self) -> int:
        """Number of summaries added so far (the index the next one will get)."""
        return len(self)

    @property
    def engram_ids(self) -> list[int]:
        """Every engram id ever seen, in order of creation."""
        return list(self.engram_creation_times)

    @property
    def engram_fire_counts(self) -> dict[int, int]:
        """engram id -> number of recorded firings (engrams that fired at least once)."""
        return {engram_id: len(firings) for engram_id, firings in self.engram_firings.items()}

    @property
    def engram_lastest_alive_timestep(self) -> dict[int, int]:
        """engram id -> last step it was present (name kept from the reference)."""
        return {
            engram_id: created + self.engram_durations[engram_id] - 1
            for engram_id, created in self.engram_creation_times.items()
        }

    @property
    def latest_engram_infos(self) -> dict[int, EngramInfo]:
        """engram id -> its :class:`~.types.EngramInfo` in the last step it was present."""
        last = self.engram_lastest_alive_timestep
        return {i: self.summaries[last[i]].engrams[i] for i in self.engram_ids}

    def add_summary(self, summary: EngramsInfo) -> None:
        """Record the next step's summary.

        An engram is created at its first appearance; it fires at a step where it was
        present at the previous step and its fire count grew (the lifespan gain recorded is
        new lifespan - old lifespan + 1, undoing the per-step decay); it is deleted at the
        first step it is missing from.
        """
        step = self.timestep
        previous = self.summaries[-1].engrams if self.summaries else {}
        alive = set(self.alive_engram_ids)
        firings = []
        for engram_id, engram in summary.engrams.items():
            if engram_id not in alive:
                self.engram_creation_times[engram_id] = step
                self.alive_engram_ids.append(engram_id)
                alive.add(engram_id)
                continue
            before = previous.get(engram_id)
            if before is not None and engram.fire_count > before.fire_count:
                firing = Firing(
                    timestep=step,
                    engram_id=engram_id,
                    lifespan_gain=engram.lifespan - before.lifespan + 1.0,
                )
                self.engram_firing_times[engram_id].append(step)
                self.engram_firings[engram_id].append(firing)
                firings.append(firing)
        self.firings_per_time.append(firings)

        for engram_id in self.alive_engram_ids:
            if engram_id not in summary.engrams:
                self.engram_deletion_times[engram_id] = step
                self.deleted_engram_ids.append(engram_id)
        self.alive_engram_ids = list(summary.engrams)
        for engram_id in self.alive_engram_ids:
            self.engram_durations[engram_id] = step - self.engram_creation_times[engram_id] + 1
        self.summaries.append(summary)

    def inspect(self, engram_id: int) -> EngramHistory:
        """Everything recorded about one engram (KeyError if it was never seen)."""
        created = self.engram_creation_times[engram_id]
        deleted = self.engram_deletion_times.get(engram_id)
        return EngramHistory(
            id=engram_id,
            creation_timestep=created,
            deletion_timestep=deleted,
            duration=self.engram_durations.get(engram_id),
            firing_times=self.engram_firing_times.get(engram_id, []),
            firings=self.engram_firings.get(engram_id, []),
            summaries=self.summaries[created:deleted],
        )
