"""Memoria: a Hebbian working / short-term / long-term engram memory (arXiv:2310.03052, Section 3).

:class:`Memoria` has memoria-pytorch 1.1.0's constructor, attributes and methods, and on
the same inputs and seed gives the same outputs and the same engram state. One step is::

    memoria.add_working_memory(x)                  # x (B, W, D) becomes working memory
    memories, indices = memoria.remind()           # (B, R, D), (B, R) reminded engrams
    memoria.adjust_lifespan_and_memories(indices, lifespan_delta)   # memorize & forget

``remind`` is the paper's retrieval: the working memory cues the nearest short-term
engrams, those lead to long-term engrams they fired with, a greedy walk along the
strongest long-term links finds more, and the ones nearest to the cue are kept; then the
cue and everything reminded fire together (Hebbian update). ``adjust_lifespan_and_memories``
is "memorize & forget": reminded engrams gain the caller's lifespan delta, every engram
loses one, working memory becomes short-term memory, short-term overflow becomes long-term
memory, and engrams whose lifespan reached zero are forgotten.

The maths lives in :mod:`torchmem.memoria.functional`; this class only keeps the state and
wires the steps. Unlike the house style's immutable state tuples, the state is kept on the
object, because that is memoria-pytorch's API. Per step it copies the (B, N, N) co-firing
counts twice (growing them for new engrams, compacting out forgotten ones) and otherwise
reads only the rows it needs, where the reference builds, copies and masks several dense
(B, N, N) and (B, L, L) matrices; and it ranks distances without the reference's
(B, W, K, D) temporary unless a near-tie needs the exact float32 kernel (see
:func:`~.functional.topk_by_distance`).

``fix_reference_bugs=True`` switches on the corrected behaviour for the reference's bugs
(all listed in the class docstring); the default reproduces memoria-pytorch exactly.
"""

from __future__ import annotations

import numbers
import sys

import torch
from torch import Tensor

from . import functional as F
from .engram import Engrams, EngramType
from .history_manager import HistoryManager
from .utils import super_unique

__all__ = ["Memoria", "EmptyMemoryError"]


class EmptyMemoryError(RuntimeError, IndexError):
    """``remind`` was called with no engram stored.

    memoria-pytorch raises RuntimeError (nothing ever added) or IndexError (everything
    forgotten) there; this error is both, so ``except`` clauses written for it still work.
    """


def _count(name: str, value, minimum: int = 0) -> int:
    """Validate a non-negative integer option (integral floats such as 4.0 are accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Memoria option {name} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral) or float(value).is_integer():
        if int(value) >= minimum:
            return int(value)
    raise ValueError(f"Memoria option {name} must be an integer >= {minimum}, got {value!r}")


class Memoria:
    """Memoria, a general memory network for sequential modelling (memoria-pytorch API).

    Args:
        num_reminded_stm: how many short-term engrams the working memory reminds.
        stm_capacity: short-term engrams kept per row; the oldest overflow to long-term.
        ltm_search_depth: steps of each greedy walk through long-term memory.
        initial_lifespan: lifespan of a new engram.
        num_final_ltms: how many found long-term engrams are returned.
        track_age: keep ``engrams.age``.
        track_id: keep ``engrams.engram_ids``.
        keep_history: record an :class:`~.types.EngramsInfo` per row after every adjustment
            in ``history`` (one :class:`HistoryManager` per row); forces ids and ages on.
        device: where the engrams live (default: the device of the first data).
        fix_reference_bugs: keyword-only, default False (memoria-pytorch 1.1.0 behaviour).
            True corrects these reference bugs, one switch for all:

            1. *Padding takes part in the top-k.* Rows with fewer short-term engrams are
               padded with zero vectors that compete in the short-term top-k, and -1 entries
               of the found long-term list compete in the final top-k, taking places that
               real engrams should get. Fixed: padding scores -inf.
            2. *Long-term positions used as engram indices.* The walk returns positions
               within the long-term list, but the final choice reads, returns and fires them
               as engram indices. They coincide only in rows without front padding; other
               rows remind (and can revive) the wrong engrams, even padding slots. Fixed:
               positions are mapped to engram indices, and lifespan deltas aimed at padding
               slots are ignored.
            3. *Zeros instead of -1 when there is no long-term memory.* The walk then returns
               zeros, so engram 0 is reminded and fired every step. Fixed: nothing found.
            4. *The caller's index tensor is changed in place.* ``adjust_lifespan_and_memories``
               rewrites negative entries of ``indices`` to -1. Fixed: left untouched.
            5. *-1 used as an index.* A non-reminded short-term slot reads the last engram's
               counts and seeds a random long-term memory; a -1 walk start or dead end
               restarts from, and marks visited, the last long-term slot. Fixed: -1 stays -1.
            6. *A zero tie-break draw picks engram 0.* When every float16 draw among the
               maximal candidates is 0.0, argmax returns position 0 whether or not it is
               maximal. Fixed: only maximal candidates can be picked.
            7. *Repeated indices lose deltas.* When ``indices`` repeats an engram, only one of
               its deltas is applied. Fixed: they add up.

            The fixed mode draws the same random numbers at the same points, so both modes
            agree wherever none of these cases occurs.

    Attributes:
        engrams: the :class:`Engrams` store.
        next_engram_id: id of the next engram (with ``track_id``).
        timestep: number of ``add_working_memory`` calls since the last reset.
        history: list of :class:`HistoryManager`, one per row, or None.
        ext_device: device of the last data given (results are returned there).
    """

    def __init__(
        self,
        num_reminded_stm: float,
        stm_capacity: int,
        ltm_search_depth: int,
        initial_lifespan: int,
        num_final_ltms: int,
        track_age: bool = False,
        track_id: bool = False,
        keep_history: bool = False,
        device: str | torch.device | None = None,
        *,
        fix_reference_bugs: bool = False,
    ) -> None:
        self.engrams: Engrams = None  # type: ignore[assignment]
        self.next_engram_id: int = None  # type: ignore[assignment]
        self.timestep: int = None  # type: ignore[assignment]
        self.history: list[HistoryManager] | None = None

        if keep_history:
            if not track_id:
                track_id = True
                print(
                    "Warning: `keep_history` is True, so `track_id` is automatically set to True",
                    file=sys.stderr,
                )
            if not track_age:
                track_age = True
                print(
                    "Warning: `keep_history` is True, so `track_age` is automatically set to True",
                    file=sys.stderr,
                )
        if isinstance(initial_lifespan, bool) or not isinstance(initial_lifespan, numbers.Real):
            raise ValueError(
                f"Memoria option initial_lifespan must be a number, got {initial_lifespan!r}"
            )
        if initial_lifespan != initial_lifespan or abs(initial_lifespan) == float("inf"):
            raise ValueError(
                f"Memoria option initial_lifespan must be finite, got {initial_lifespan!r}"
            )

        self.num_reminded_stm = _count("num_reminded_stm", num_reminded_stm)
        self.stm_capacity = _count("stm_capacity", stm_capacity)
        self.ltm_search_depth = _count("ltm_search_depth", ltm_search_depth)
        self.initial_lifespan = initial_lifespan
        self.num_final_ltms = _count("num_final_ltms", num_final_ltms)
        self.track_age: bool = track_age
        self.track_id: bool = track_id
        self.keep_history: bool = keep_history
        self.device = torch.device(device) if device else None
        self.ext_device: torch.device | None = None
        self.fix_reference_bugs: bool = bool(fix_reference_bugs)

        self.reset_memory()

    @property
    def _reference_bugs(self) -> bool:
        return not self.fix_reference_bugs

    # ----------------------------------------------------------------------------------
    # Public API
    # ----------------------------------------------------------------------------------

    @torch.no_grad()
    def add_working_memory(self, data: Tensor) -> None:
        """Append new engrams as working memory.

        Args:
            data: (B, W, D) real tensor; stored as float32 on ``device``. B and D must match
                the engrams already stored (unless the store is empty).
        """
        if not isinstance(data, Tensor):
            raise TypeError(
                f"data must be a torch.Tensor of shape (B, W, D), got {type(data).__name__}"
            )
        if data.dim() != 3:
            raise ValueError(
                f"data must have shape (B, W, D) (batch, working memories, width), "
                f"got a {data.dim()}-d tensor of shape {tuple(data.shape)}"
            )
        if data.dtype.is_complex:
            raise ValueError(f"data must be real, got dtype {data.dtype}")
        if data.size(0) == 0:
            raise ValueError(
                f"data must hold at least one batch row, got shape {tuple(data.shape)}"
            )
        if data.is_floating_point() and not bool(torch.isfinite(data).all()):
            bad = int((~torch.isfinite(data)).sum())
            raise ValueError(f"data holds {bad} NaN or infinite value(s)")
        stored = self.engrams
        if len(stored) and (data.size(0), data.size(2)) != (stored.batch_size, stored.hidden_dim):
            raise ValueError(
                f"data of shape {tuple(data.shape)} does not fit the stored engrams: expected "
                f"(B={stored.batch_size}, W, D={stored.hidden_dim}); call reset_memory() to "
                "start over with another batch size or width"
            )

        self.ext_device = data.device
        self.device = self.device or data.device
        new = Engrams(
            data.to(self.device),
            engrams_types=EngramType.WORKING,
            lifespan=self.initial_lifespan,
            engram_ids=self.next_engram_id,
            track_age=self.track_age,
            track_engram_id=self.track_id,
        )
        self.engrams = self.engrams + new
        if self.track_id and new.memory_length:
            self.next_engram_id = int(new.engram_ids.max()) + 1
        self.timestep += 1

    @torch.no_grad()
    def remind(self) -> tuple[Tensor, Tensor]:
        """Retrieve the engrams the working memory reminds, and fire them together with it.

        Returns:
            memories: (B, R, D) float32 data of the reminded engrams (0 for -1 entries), on
                the device of the last data given.
            indices: (B, R) int64 distinct engram indices, -1 padded (see
                :func:`~.utils.super_unique`); short-term ones first, then long-term.
        """
        engrams = self.engrams
        if engrams.batch_size == 0 or engrams.memory_length == 0:
            raise EmptyMemoryError(
                "Memoria.remind() needs stored engrams: call add_working_memory() first "
                f"(engrams have shape {tuple(engrams.data.shape)})"
            )
        fix = self.fix_reference_bugs
        types, data = engrams.engrams_types, engrams.data
        length = engrams.memory_length

        working = F.indices_with_mask(types == F.WORKING)  # (B, W)
        shortterm = F.indices_with_mask(types == F.SHORTTERM)  # (B, S)
        longterm = F.indices_with_mask(types == F.LONGTERM)  # (B, L)
        cue = F.gather_padded(data, working, 0.0)  # (B, W, D)

        # a. short-term memories nearest to the cue.
        keys = F.gather_padded(data, shortterm, 0.0)
        take = min(self.num_reminded_stm, shortterm.size(1))
        chosen = self._nearest(cue, keys, take, "mean", shortterm, shortterm < 0 if fix else None)
        picked = torch.zeros_like(shortterm, dtype=torch.bool).scatter_(1, chosen, True)
        reminded_stm = shortterm.masked_fill(~picked, -1)  # (B, S)

        # b, c. long-term memories linked to them, then greedy walks along the links.
        initial = F.initial_longterm_indices(
            engrams.induce_counts, types, reminded_stm, reference_bugs=not fix
        )
        if initial.numel() == 0 or longterm.numel() == 0:
            width = 0 if fix else (self.ltm_search_depth + 1) * initial.size(1)
            found = torch.zeros(engrams.batch_size, width, dtype=torch.long, device=types.device)
        else:
            starts = F.local_positions_of(initial, longterm, length)
            found = F.search_longterm(
                engrams.induce_counts,
                longterm,
                starts,
                self.ltm_search_depth,
                reference_bugs=not fix,
            )
            if fix:
                found = F.gather_padded(longterm, found, -1)

        # d. the found long-term memories nearest to the cue.
        if found.size(1):
            keys = F.gather_padded(data, found, 0.0)
            take = min(self.num_final_ltms, found.size(1))
            chosen = self._nearest(cue, keys, take, "sum", found, found < 0 if fix else None)
            reminded_ltm = found.gather(1, chosen)
        else:
            reminded_ltm = found

        # e. the cue and everything reminded fire together.
        reminded = torch.cat([reminded_stm, reminded_ltm], dim=1)
        fired = F.mask_with_indices(torch.cat([working, reminded], dim=1), length)
        F.hebbian_update_(engrams.induce_counts, fired)

        reminded = super_unique(reminded, dim=1)
        memories = F.gather_padded(data, reminded, 0.0).to(self.ext_device).contiguous()
        return memories, reminded

    @torch.no_grad()
    def adjust_lifespan_and_memories(self, indices: Tensor, lifespan_delta: Tensor) -> None:
        """Memorize & forget.

        Args:
            indices: (B, R) integer engram indices to reward, usually those ``remind``
                returned; negative entries are ignored (and rewritten to -1 in place unless
                ``fix_reference_bugs``).
            lifespan_delta: (B, R) (or broadcastable) lifespan increments; indices[b, r]
                gains lifespan_delta[b, r].
        """
        engrams = self.engrams
        length = engrams.memory_length
        if not isinstance(indices, Tensor):
            raise TypeError(
                f"indices must be a torch.Tensor of shape (B, R), got {type(indices).__name__}"
            )
        if indices.dim() != 2 or indices.size(0) != engrams.batch_size:
            raise ValueError(
                f"indices must have shape (B={engrams.batch_size}, R), got {tuple(indices.shape)}"
            )
        if (
            indices.dtype.is_floating_point
            or indices.dtype.is_complex
            or indices.dtype == torch.bool
        ):
            raise ValueError(f"indices must be an integer tensor, got dtype {indices.dtype}")
        if indices.numel() and int(indices.max()) >= length:
            raise ValueError(
                f"indices holds {int(indices.max())} but the engrams have {length} slots per row "
                f"(valid: 0..{length - 1}, negative for none)"
            )
        delta = (
            lifespan_delta
            if isinstance(lifespan_delta, Tensor)
            else torch.as_tensor(lifespan_delta)
        )
        if delta.dtype.is_complex or delta.dtype == torch.bool:
            raise ValueError(f"lifespan_delta must be a real tensor, got dtype {delta.dtype}")
        # The broadcasting rule by hand: torch.broadcast_shapes imports sympy on first use,
        # most of a second in a fresh process.
        if not all(
            a == b or a == 1 or b == 1 for a, b in zip(delta.shape[::-1], indices.shape[::-1])
        ):
            raise ValueError(
                f"lifespan_delta of shape {tuple(delta.shape)} does not match indices of shape "
                f"{tuple(indices.shape)}"
            )
        if delta.is_floating_point() and not bool(torch.isfinite(delta).all()):
            raise ValueError("lifespan_delta holds NaN or infinite values")
        delta = delta.to(self.device)

        if self._reference_bugs:
            indices[indices < 0] = -1  # memoria-pytorch rewrites the caller's tensor
        gain = F.lifespan_increments(
            indices.to(engrams.lifespan.device).long(),
            delta,
            length,
            reference_bugs=self._reference_bugs,
        )
        if self.fix_reference_bugs:
            gain = gain.masked_fill_(engrams.engrams_types == F.NULL, 0.0)
        engrams.lifespan += gain
        engrams.decrease_lifespan()
        engrams.increase_age()

        types = engrams.engrams_types
        types.masked_fill_(types == F.WORKING, F.SHORTTERM)
        types.masked_fill_(F.overflow_to_longterm(types, self.stm_capacity), F.LONGTERM)

        alive = engrams.lifespan > 0
        if not bool(alive.all()):
            engrams = engrams.mask_select(alive)
        self.engrams = engrams

        if self.keep_history:
            if self.history is None:
                self.history = [HistoryManager() for _ in range(indices.size(0))]
            for history, summary in zip(self.history, engrams.status_summary()):
                history.add_summary(summary)

    def reset_memory(self) -> None:
        """Forget everything: empty engrams, ids from 0, timestep 0, no history."""
        self.engrams = Engrams.empty(track_age=self.track_age, track_engram_id=self.track_id)
        self.next_engram_id = 0
        self.timestep = 0
        self.history = None

    # ----------------------------------------------------------------------------------
    # Internals
    # ----------------------------------------------------------------------------------

    def _nearest(
        self,
        cue: Tensor,
        keys: Tensor,
        k: int,
        reduce: str,
        key_ids: Tensor,
        exclude: Tensor | None,
    ) -> Tensor:
        """(B, k) positions of the keys nearest to the cue: the one distance hook.

        A subclass may override it to try another similarity (the test of the README's
        memoria-pytorch 1.0.0 values swaps in that version's exp(-d^2) kernel).
        """
        return F.topk_by_distance(cue, keys, k, reduce=reduce, key_ids=key_ids, exclude=exclude)
