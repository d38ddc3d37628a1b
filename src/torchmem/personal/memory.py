"""``PersonalMemory``: what an LLM application remembers about one user.

The seed's pipeline (``../shared/seeds`` "Adaptive Neural Memory for LLMs"), wired from
:mod:`.functional` (maths), :mod:`.gate` (the write gate), :mod:`.table` (rows and events)
and :mod:`.store` (files):

1. **Encode** the message: a unit text vector (:mod:`.encoders`) and its implicit signals
   (:mod:`.signals`), kept apart.
2. **Gate**: importance ``p = sigmoid(w . x + b)``. ``p >= store_threshold``: written to
   long-term memory now. ``stm_threshold <= p < store_threshold``: a candidate, held in
   short-term memory and promoted when it recurs (``promote_after`` similar candidates).
   Below: chit-chat, kept only as recent context in short-term memory.
3. **Consolidate** into long-term memory: a message nearly identical to an active memory
   (cosine >= ``repeat_similarity``) reinforces it (strength back up, stability grows,
   count + 1) instead of duplicating it; one on the same subject but saying something
   else (``subject_similarity <= cosine < repeat_similarity``) supersedes it (the old one
   is kept as history, never retrieved); anything else is a new memory.
4. **Decay**: ``S(now) = S * 0.5 ** (elapsed / (half_life * stability))``; below
   ``retrieve_threshold`` a memory is not retrieved, below ``remove_threshold`` it is
   deleted before the next automatic snapshot (or by :meth:`PersonalMemory.forget_stale`).
   Recall and positive feedback strengthen.
5. **Retrieve**: ``score = cos(query, key) * S(now) ** strength_exponent``, top-k, with
   the parts of the score; a hit that a newer hit on the same subject shadows (the two at
   least ``shadow_similarity`` alike) is left out. Each retrieved memory is recalled: its
   strength rises by ``recall_boost * cos``.
6. **Feedback** moves strengths and trains the gate by REINFORCE.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .encoders import Encoder, make_encoder
from .functional import (
    bounded_top,
    decayed_strength,
    gate_probability,
    reinforce_gate,
    scan_similarity,
    strength_weighted,
)
from .gate import WriteGate, gate_features
from .signals import SIGNAL_NAMES, message_signals
from .store import StoreError, UserStore, check_user_id
from .table import (
    ACTIVE,
    FLOAT_COLUMNS,
    STATUS_NAMES,
    SUPERSEDED,
    MemoryTable,
    decode_tensor,
    encode_tensor,
)

DAY = 86400.0
EXPORT_FORMAT = "torchmem-personal-memory-export"

#: Similarity thresholds per encoder, used where the config leaves them None: cosines of
#: the lexical hash encoder and of MiniLM live on different scales.
ENCODER_THRESHOLDS: dict[str, dict[str, float]] = {
    "hash": {
        "repeat_similarity": 0.85,
        "subject_similarity": 0.7,
        "min_similarity": 0.1,
        "shadow_similarity": 1.0,
    },
    "minilm": {
        "repeat_similarity": 0.9,
        "subject_similarity": 0.4,
        "min_similarity": 0.1,
        "shadow_similarity": 0.3,
    },
}
SCAN_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
#: ... and for an encoder not listed there.
OTHER_ENCODER_THRESHOLDS = {
    "repeat_similarity": 0.9,
    "subject_similarity": 0.7,
    "min_similarity": 0.2,
    "shadow_similarity": 1.0,
}


@dataclass
class PersonalMemoryConfig:
    """Settings of a personal memory (defaults in brackets).

    Attributes:
        half_life_days: days after which an untouched memory keeps half its strength [30].
        retrieve_threshold: minimum current strength to be retrieved [0.05].
        remove_threshold: below this strength a memory is deleted at maintenance [0.01].
        store_threshold: gate probability from which a message goes to long-term memory [0.5].
        stm_threshold: gate probability from which a message is a candidate that
            short-term memory promotes when it recurs [0.3].
        promote_after: similar candidates in short-term memory that make a pattern [2].
        stm_size: recent messages kept in short-term memory [64].
        repeat_similarity: cosine from which a message repeats a memory; None: the
            encoder's default (:data:`ENCODER_THRESHOLDS`).
        subject_similarity: cosine from which a message is about the same subject and
            supersedes the memory; None: the encoder's default.
        min_similarity: a hit's cosine similarity must exceed this; None: the encoder's
            default.
        shadow_similarity: two hits at least this similar to each other are on one
            subject and only the newer is returned; 1 disables; None: the encoder's
            default.
        strength_exponent: alpha in ``score = cos * S ** alpha`` [0.5].
        recall_boost: a retrieved memory's strength rises by this times its similarity
            to the query [0.5].
        feedback_boost: strength added per unit of positive reward [0.3].
        feedback_penalty: share of strength removed per unit of negative reward [0.5].
        stability_growth: factor on a memory's half-life each time it recurs [1.5].
        gate_lr: REINFORCE step size of the gate on feedback [2.0].
        max_chars: longest text accepted [8000].
        snapshot_every: events between automatic snapshots, at least; a store of n
            memories waits for n / 4 events [2000].
        utc_offset_hours: the user's time zone, for time-of-day signals [0].
        fsync: fsync acknowledged writes (off only for throwaway stores) [True].
        scan_dtype: ``"bfloat16"``: add and search stream a bfloat16 copy of the keys
            (half the bytes) and rescore from the float32 keys every row whose error
            bound leaves it in question, so the results are the float32 scan's
            (:func:`.functional.scan_similarity`); costs 2 bytes per dimension per memory
            more RAM. ``"float32"``: scan the float32 keys [``"bfloat16"``].
    """

    half_life_days: float = 30.0
    retrieve_threshold: float = 0.05
    remove_threshold: float = 0.01
    store_threshold: float = 0.5
    stm_threshold: float = 0.3
    promote_after: int = 2
    stm_size: int = 64
    repeat_similarity: float | None = None
    subject_similarity: float | None = None
    min_similarity: float | None = None
    shadow_similarity: float | None = None
    strength_exponent: float = 0.5
    recall_boost: float = 0.5
    feedback_boost: float = 0.3
    feedback_penalty: float = 0.5
    stability_growth: float = 1.5
    gate_lr: float = 2.0
    max_chars: int = 8000
    snapshot_every: int = 2000
    utc_offset_hours: float = 0.0
    fsync: bool = True
    scan_dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        if self.scan_dtype not in SCAN_DTYPES:
            raise ValueError(
                f"scan_dtype must be one of {', '.join(SCAN_DTYPES)}, got {self.scan_dtype!r}"
            )
        for name in ("half_life_days", "gate_lr", "stability_growth", "strength_exponent"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in (
            "retrieve_threshold",
            "remove_threshold",
            "store_threshold",
            "stm_threshold",
            "recall_boost",
            "feedback_boost",
            "feedback_penalty",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        for name in ("promote_after", "stm_size", "max_chars", "snapshot_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in (
            "repeat_similarity",
            "subject_similarity",
            "min_similarity",
            "shadow_similarity",
        ):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and -1 <= value <= 1):
                raise ValueError(f"{name} must be None or a number in [-1, 1], got {value!r}")
        if self.stm_threshold > self.store_threshold:
            raise ValueError(
                f"stm_threshold ({self.stm_threshold}) must not exceed store_threshold "
                f"({self.store_threshold})"
            )


@dataclass(frozen=True)
class AddResult:
    """What :meth:`PersonalMemory.add` did.

    Attributes:
        stored: True when the message is in long-term memory (new or reinforcing).
        id: the long-term memory it went to (None when not stored).
        action: ``"created"``, ``"reinforced"``, ``"superseded"`` (created, replacing the
            ids in ``superseded``), ``"promoted"`` (created from a recurring short-term
            pattern), ``"short_term"`` (a candidate held in short-term memory) or
            ``"ignored"`` (chit-chat).
        importance: the gate's p.
        superseded: ids this memory replaced.
        similarity: cosine to the closest active memory before the write (0 if none).
    """

    stored: bool
    id: int | None
    action: str
    importance: float
    superseded: tuple[int, ...] = ()
    similarity: float = 0.0


@dataclass(frozen=True)
class Hit:
    """One retrieved memory: ``score = similarity * strength ** strength_exponent``
    (``strength`` at the time of the search, before the recall strengthened it)."""

    id: int
    text: str
    score: float
    similarity: float
    strength: float
    count: int
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_text(text: object, max_chars: int, what: str = "text") -> str:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{what} is not valid UTF-8: {error}") from None
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{what} is not valid UTF-8 text: {error}") from None
    if not text.strip():
        raise ValueError(f"{what} is empty")
    if len(text) > max_chars:
        raise ValueError(f"{what} has {len(text)} characters; the limit is {max_chars}")
    return text


def _check_time(at: object) -> float:
    if at is None:
        return time.time()
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        raise ValueError(f"at must be a finite number of seconds or None, got {at!r}")
    return float(at)


def _check_id(memory_id: object) -> int:
    if isinstance(memory_id, str) and memory_id.strip().isdigit():
        memory_id = int(memory_id)
    if isinstance(memory_id, bool) or not isinstance(memory_id, int):
        raise TypeError(f"memory id must be an integer, got {memory_id!r}")
    return memory_id


class PersonalMemory:
    """One user's long-term memory in ``<store_dir>/<user_id>``, created on first use.

    Args:
        store_dir: folder holding one sub-folder per user.
        user_id: 1-128 characters from ``A-Z a-z 0-9 _ . @ -``.
        encoder: ``"hash"`` (no model), ``"minilm"`` (``torchmem[minilm]``) or an
            :class:`~.encoders.Encoder`; None (default): the store's own encoder, or
            ``"hash"`` for a new store. An existing store must be opened with the encoder
            it was made with.
        config: :class:`PersonalMemoryConfig` (or a dict of its fields).

    Every method that takes ``at`` reads it as "now" in seconds (default: the clock), so
    decay can be tested and replayed without waiting.
    """

    def __init__(
        self,
        store_dir: str | Path,
        user_id: str,
        encoder: str | Encoder | None = None,
        config: PersonalMemoryConfig | dict | None = None,
    ) -> None:
        if isinstance(config, dict):
            known = {f.name for f in fields(PersonalMemoryConfig)}
            unknown = sorted(set(config) - known)
            if unknown:
                raise ValueError(
                    f"unknown PersonalMemory option(s) {', '.join(unknown)}; valid: "
                    f"{', '.join(sorted(known))}"
                )
            config = PersonalMemoryConfig(**config)
        self.config = config or PersonalMemoryConfig()
        self.user_id = check_user_id(user_id)
        self.store = UserStore(store_dir, user_id, fsync=self.config.fsync)
        if encoder is None:
            manifest = self.store.read_manifest()
            encoder = manifest["encoder"] if manifest is not None else "hash"
        self.encoder = make_encoder(encoder)
        defaults = ENCODER_THRESHOLDS.get(self.encoder.name, OTHER_ENCODER_THRESHOLDS)
        for name, default in defaults.items():
            value = getattr(self.config, name)
            setattr(self, name, default if value is None else float(value))
        self._closed = False
        self._events_since_snapshot = 0
        with self.store.locked():
            self._open()

    # ------------------------------------------------------------------ opening

    def _new_table(self) -> MemoryTable:
        gate = WriteGate.default(self.encoder.name, self.encoder.dim)
        return MemoryTable(
            self.encoder.dim,
            len(SIGNAL_NAMES),
            gate.weight,
            gate.bias,
            self.config.stm_size,
            SCAN_DTYPES[self.config.scan_dtype],
        )

    def _open(self) -> None:
        manifest = self.store.read_manifest()
        if manifest is None:
            manifest = self.store.create(self.encoder.name, self.encoder.dim)
        if manifest["encoder"] != self.encoder.name or manifest["dim"] != self.encoder.dim:
            raise StoreError(
                f"the store of {self.user_id!r} was made with encoder {manifest['encoder']!r} "
                f"({manifest['dim']}-d); it cannot be opened with {self.encoder.name!r} "
                f"({self.encoder.dim}-d). Export it and import into a new store to re-encode."
            )
        self.manifest = manifest
        snapshot, events = self.store.load(manifest)
        table = self._new_table()
        if snapshot is not None:
            try:
                table.load_snapshot(snapshot["tensors"], snapshot["meta"])
            except (KeyError, ValueError) as error:
                raise StoreError(
                    f"snapshot of {self.store.path} is inconsistent: {error}"
                ) from None
        for event in events:
            table.apply(event)
        self.table = table
        self._events_since_snapshot = len(events)

    def _sync(self) -> None:
        """Catch up with events other processes appended (call under the lock)."""
        if self._closed:
            raise RuntimeError(f"the memory of {self.user_id!r} is closed (or was forgotten)")
        reload, events = self.store.new_events()
        if reload:
            self._open()
            return
        for event in events:
            self.table.apply(event)
        self._events_since_snapshot += len(events)

    def _log(self, events: list[dict[str, Any]], durable: bool = True) -> None:
        """Number, log, then apply events (call under the exclusive lock, after _sync)."""
        for event in events:
            self.table.seq += 1
            event["seq"] = self.table.seq
        self.store.append(events, durable=durable)
        for event in events:
            self.table.apply(event)
        self._events_since_snapshot += len(events)

    def _commit(self, events: list[dict[str, Any]], durable: bool = True) -> None:
        """:meth:`_log` the events, then snapshot when one is due."""
        self._log(events, durable)
        # At least snapshot_every events, and at least a quarter of the rows: a snapshot
        # rewrites every row, so its cost stays O(1) per event however large the store.
        # Memories that decayed below remove_threshold (by the latest event's clock) are
        # deleted first, so the snapshot drops them: stale memories are removed by
        # themselves, not only by forget_stale().
        if self._events_since_snapshot >= max(self.config.snapshot_every, self.table.n // 4):
            times = [float(e["t"]) for e in events if "t" in e]
            if times:
                self._delete_stale(max(times))
            self.snapshot()

    # ------------------------------------------------------------------ maths helpers

    def _half_life(self) -> Tensor:
        return self.config.half_life_days * DAY * self.table.column("stability")

    def strengths(self, at: float | None = None) -> Tensor:
        """``(n,)`` current strength of every row (0 for superseded and deleted rows)."""
        now = _check_time(at)
        t = self.table
        current = decayed_strength(
            t.column("strength"), t.column("updated_at"), now, self._half_life()
        )
        return torch.where(t.active_mask(), current, torch.zeros_like(current))

    def _encode(self, text: str, at: float) -> tuple[Tensor, Tensor]:
        key = self.encoder.encode([text])[0]
        if key.shape != (self.encoder.dim,) or not torch.isfinite(key).all():
            raise RuntimeError(f"encoder {self.encoder.name!r} returned a bad vector for {text!r}")
        return key, message_signals(text, at, self.config.utc_offset_hours)

    def importance(self, text: str, at: float | None = None) -> float:
        """The write gate's p for a message (nothing is stored)."""
        now = _check_time(at)
        key, signals = self._encode(_check_text(text, self.config.max_chars), now)
        return self._importance(key, signals)

    def _importance(self, key: Tensor, signals: Tensor) -> float:
        features = gate_features(key[None], signals[None])
        return float(gate_probability(features, self.table.gate_weight, self.table.gate_bias)[0])

    def _touch(
        self,
        row: int,
        now: float,
        strength: float,
        reason: str,
        *,
        grow: bool = False,
        count: int | None = None,
        text: str | None = None,
    ) -> dict[str, Any]:
        t = self.table
        stability = float(t.columns["stability"][row])
        if grow:
            stability *= self.config.stability_growth
        event = {
            "op": "touch",
            "id": int(t.ids[row]),
            "t": now,
            "strength": min(1.0, max(0.0, strength)),
            "stability": stability,
            "count": int(t.count[row]) if count is None else count,
            "reason": reason,
        }
        if text is not None:
            event["text"] = text
        return event

    # ------------------------------------------------------------------ verbs

    def add(self, text: str, at: float | None = None) -> AddResult:
        """Remember a message if it is worth it; see the module docstring for the rules.

        Raises:
            TypeError, ValueError: text not a non-empty UTF-8 string of at most
                ``max_chars`` characters, or a bad ``at``; nothing is written.
        """
        text = _check_text(text, self.config.max_chars)
        now = _check_time(at)
        key, signals = self._encode(text, now)
        return self._add(text, key, signals, now)

    def add_encoded(self, text: str, key: Tensor, at: float | None = None) -> AddResult:
        """:meth:`add` with the text's vector already computed (``key``: ``(d,)``, unit
        norm, from this store's encoder): for applications that batch their encoding."""
        text = _check_text(text, self.config.max_chars)
        now = _check_time(at)
        key = self._check_key(key)
        return self._add(text, key, message_signals(text, now, self.config.utc_offset_hours), now)

    def _check_key(self, key: Tensor) -> Tensor:
        if not isinstance(key, Tensor):
            raise TypeError(f"key must be a tensor, got {type(key).__name__}")
        if key.shape != (self.encoder.dim,) or not key.is_floating_point():
            raise ValueError(
                f"key must be a float tensor of shape ({self.encoder.dim},), got "
                f"{key.dtype} {tuple(key.shape)}"
            )
        if not torch.isfinite(key).all():
            raise ValueError("key holds NaN or infinite values")
        return key.detach().to("cpu", torch.float32)

    def _add(self, text: str, key: Tensor, signals: Tensor, now: float) -> AddResult:
        with self.store.locked():
            self._sync()
            p = self._importance(key, signals)
            if p >= self.config.store_threshold:
                return self._write_long_term(text, key, signals, p, now, "add", ())
            stm_event = {
                "op": "stm",
                "text": text,
                "key": encode_tensor(key),
                "importance": p,
                "t": now,
            }
            if p >= self.config.stm_threshold:
                similar = [
                    item["seq"]
                    for item in self.table.stm
                    if item["importance"] >= self.config.stm_threshold
                    and float(item["key"] @ key) >= self.repeat_similarity
                ]
                if len(similar) + 1 >= self.config.promote_after:
                    return self._write_long_term(
                        text, key, signals, p, now, "promoted", tuple(similar)
                    )
                self._commit([stm_event], durable=False)
                return AddResult(False, None, "short_term", p)
            self._commit([stm_event], durable=False)
            return AddResult(False, None, "ignored", p)

    def _write_long_term(
        self,
        text: str,
        key: Tensor,
        signals: Tensor,
        p: float,
        now: float,
        source: str,
        consumes: tuple[int, ...],
    ) -> AddResult:
        t = self.table
        rows, similarity = self._neighbours(key)
        best_similarity, best = (0.0, -1)
        if len(rows):
            value, at_row = similarity.max(0)
            best_similarity, best = float(value), int(rows[at_row])
        if best >= 0 and best_similarity >= self.repeat_similarity:
            event = self._touch(
                best, now, 1.0, "repeated", grow=True, count=int(t.count[best]) + 1, text=text
            )
            self._commit([event])
            return AddResult(True, int(t.ids[best]), "reinforced", p, (), best_similarity)
        band = (similarity >= self.subject_similarity) & (similarity < self.repeat_similarity)
        superseded = tuple(int(i) for i in t.ids[rows[band]].tolist())
        memory_id = t.next_id
        event = {
            "op": "insert",
            "id": memory_id,
            "text": text,
            "key": encode_tensor(key),
            "signals": encode_tensor(signals),
            "t": now,
            "strength": 1.0,
            "stability": 1.0,
            "importance": p,
            "count": len(consumes) + 1,
            "source": source,
        }
        if superseded:
            event["supersedes"] = list(superseded)
        if consumes:
            event["consumes"] = list(consumes)
        self._commit([event])
        action = "superseded" if superseded else ("promoted" if source == "promoted" else "created")
        return AddResult(True, memory_id, action, p, superseded, max(best_similarity, 0.0))

    def _scan(self, key: Tensor) -> tuple[Tensor, Tensor]:
        """:func:`.functional.scan_similarity` of ``key`` with every row: ``(approx (n,),
        margin ())``."""
        t = self.table
        return scan_similarity(key, t.scan_keys[: t.n], t.scan_norm)

    def _neighbours(self, key: Tensor) -> tuple[Tensor, Tensor]:
        """Active rows that may be the nearest to ``key`` or reach ``subject_similarity``,
        with their exact cosine: ``(rows (c,) int64, similarity (c,))``. Every active row
        at or above the subject threshold is among them, and so is the nearest one."""
        t = self.table
        if t.n == 0:
            return torch.zeros(0, dtype=torch.int64), torch.zeros(0)
        approx, margin = self._scan(key)
        approx.masked_fill_(~t.active_mask(), float("-inf"))
        # Rows at or above the subject threshold, and the nearest row, which is above the
        # best lower bound (upper bound >= cut <=> approx >= cut - margin).
        cut = torch.clamp(approx.max() - margin, max=self.subject_similarity)
        rows = ((approx >= cut - margin) & (approx > float("-inf"))).nonzero().flatten()
        return rows, t.keys[rows] @ key

    def search(
        self, query: str, k: int = 5, at: float | None = None, *, reinforce: bool = True
    ) -> list[Hit]:
        """The ``k`` active memories with the highest ``similarity * strength **
        strength_exponent``, best first.

        Memories whose current strength is below ``retrieve_threshold``, whose similarity
        is at most ``min_similarity``, or that a newer hit shadows (see
        :meth:`_drop_shadowed`) are not returned. With ``reinforce``, each returned memory
        gains ``recall_boost * similarity`` strength.
        """
        query = _check_text(query, self.config.max_chars, "query")
        return self.search_encoded(self.encoder.encode([query])[0], k, at, reinforce=reinforce)

    def search_encoded(
        self, query_key: Tensor, k: int = 5, at: float | None = None, *, reinforce: bool = True
    ) -> list[Hit]:
        """:meth:`search` with the query's vector already computed (``(d,)``)."""
        query_key = self._check_key(query_key)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        now = _check_time(at)
        with self.store.locked():
            self._sync()
            return self._search(query_key, k, now, reinforce)

    def _drop_shadowed(self, rows: list[int]) -> list[int]:
        """Drop candidates shadowed by a newer candidate on the same subject.

        Two memories that both answer the query and whose own cosine similarity is at
        least ``shadow_similarity`` are taken to state the same subject: only the newer
        (by ``created_at``) is returned. This catches changes phrased without the
        subject's words ("I've switched to matcha now" after "My favourite drink is
        espresso"), too far apart to supersede at write time but both found by "what
        does the user drink?". Rows keep their order.
        """
        if len(rows) < 2 or self.shadow_similarity >= 1:
            return rows
        t = self.table
        index = torch.tensor(rows)
        pair = t.keys[index] @ t.keys[index].T
        created = t.columns["created_at"][index]
        newer = created[None, :] > created[:, None]  # [i, j]: j is newer than i
        shadowed = ((pair >= self.shadow_similarity) & newer).any(1)
        return [row for row, gone in zip(rows, shadowed.tolist()) if not gone]

    def _search(self, q: Tensor, k: int, now: float, reinforce: bool) -> list[Hit]:
        t = self.table
        if t.n == 0:
            return []
        strength = self.strengths(now)
        threshold, alpha = self.config.retrieve_threshold, self.config.strength_exponent
        # score = cos * S ** alpha, from the scan's bounds on cos (the weight is at most
        # max S ** alpha): only rows that may be in the top 3k are rescored exactly.
        approx, margin = self._scan(q)
        estimate = strength_weighted(approx, strength, threshold, alpha)
        margin = margin * strength.clamp_min(0.0).max().pow(alpha)
        candidates = bounded_top(estimate, margin, 3 * k)
        exact = t.keys[candidates] @ q
        score = strength_weighted(exact, strength[candidates], threshold, alpha)
        top = torch.topk(score, min(3 * k, len(candidates))).indices.tolist()
        similarity = {int(candidates[i]): float(exact[i]) for i in top}
        value = {int(candidates[i]): float(score[i]) for i in top}
        rows = [row for row in similarity if similarity[row] > self.min_similarity]
        rows = self._drop_shadowed(rows)[:k]
        hits, events = [], []
        for row in rows:
            hits.append(
                Hit(
                    int(t.ids[row]),
                    t.texts[row],
                    value[row],
                    similarity[row],
                    float(strength[row]),
                    int(t.count[row]),
                    float(t.columns["created_at"][row]),
                    float(t.columns["updated_at"][row]),
                )
            )
            if reinforce and self.config.recall_boost > 0:
                events.append(
                    self._touch(
                        row,
                        now,
                        float(strength[row]) + self.config.recall_boost * similarity[row],
                        "recall",
                    )
                )
        if events:
            self._commit(events, durable=False)
        return hits

    def build_prompt(
        self, query: str, k: int = 5, token_budget: int = 200, at: float | None = None
    ) -> str:
        """The system-prompt block to inject: the most relevant memories within a budget.

        Tokens are estimated as words and punctuation marks (``len(re.findall(r"\\w+|[^\\w\\s]",
        text))``), a close upper bound for the short sentences memories are; a memory
        that would overflow ``token_budget`` is left out. Returns "" when nothing is
        relevant.
        """
        import re

        if isinstance(token_budget, bool) or not isinstance(token_budget, int) or token_budget < 1:
            raise ValueError(f"token_budget must be a positive integer, got {token_budget!r}")
        hits = self.search(query, k=k, at=at)
        header = "What you know about the user (most relevant first):"
        used = len(re.findall(r"\w+|[^\w\s]", header))
        lines = []
        for hit in hits:
            line = f"- {hit.text.strip()}"
            cost = len(re.findall(r"\w+|[^\w\s]", line))
            if used + cost > token_budget:
                continue
            lines.append(line)
            used += cost
        return "\n".join([header, *lines]) if lines else ""

    def feedback(self, target: int | str, reward: float, at: float | None = None) -> list[int]:
        """Reward (> 0) or penalise (< 0) a memory, or the best match of a query.

        Strength: ``+ feedback_boost * reward`` for a reward, ``* (1 - feedback_penalty *
        |reward|)`` for a penalty. The gate takes a REINFORCE step with the memory's
        features, action "stored" and this reward, so content like it becomes more (or
        less) likely to be stored. Returns the ids that received the feedback.
        """
        if (
            isinstance(reward, bool)
            or not isinstance(reward, (int, float))
            or not (math.isfinite(reward) and -1 <= reward <= 1)
        ):
            raise ValueError(f"reward must be a number in [-1, 1], got {reward!r}")
        now = _check_time(at)
        query_key = None
        if isinstance(target, str) and not target.strip().isdigit():
            query_key = self.encoder.encode([_check_text(target, self.config.max_chars, "query")])[
                0
            ]
        with self.store.locked():
            self._sync()
            if query_key is not None:
                ids = [hit.id for hit in self._search(query_key, 1, now, reinforce=False)]
            else:
                memory_id = _check_id(target)
                self.table.row(memory_id)
                ids = [memory_id]
            if not ids:
                return []
            t, strength = self.table, self.strengths(now)
            events, features = [], []
            for memory_id in ids:
                row = t.row(memory_id)
                if int(t.status[row]) != ACTIVE:
                    raise ValueError(f"memory {memory_id} is {STATUS_NAMES[int(t.status[row])]}")
                current = float(strength[row])
                if reward >= 0:
                    new = current + self.config.feedback_boost * reward
                else:
                    new = current * (1 - self.config.feedback_penalty * -reward)
                events.append({"op": "feedback", "id": memory_id, "reward": reward, "t": now})
                events.append(self._touch(row, now, new, "feedback"))
                features.append(gate_features(t.keys[row][None], t.signals[row][None])[0])
            x = torch.stack(features)
            weight, bias = reinforce_gate(
                x,
                torch.ones(len(ids)),
                torch.full((len(ids),), reward),
                t.gate_weight,
                t.gate_bias,
                self.config.gate_lr,
            )
            events.append({"op": "gate", "weight": encode_tensor(weight), "bias": float(bias)})
            self._commit(events)
            return ids

    def get(self, memory_id: int, at: float | None = None) -> dict[str, Any]:
        """A memory's record: text, status, current strength, times, count, links."""
        memory_id = _check_id(memory_id)
        now = _check_time(at)
        with self.store.locked(exclusive=False):
            self._sync()
            record = self.table.record(memory_id)
            row = self.table.row(memory_id)
            record["current_strength"] = float(self.strengths(now)[row])
            record["signals"] = dict(zip(SIGNAL_NAMES, self.table.signals[row].tolist()))
            return record

    def list(self, at: float | None = None, include_inactive: bool = False) -> list[dict[str, Any]]:
        """Records of the active memories (and superseded ones with ``include_inactive``),
        strongest first."""
        now = _check_time(at)
        with self.store.locked(exclusive=False):
            self._sync()
            t = self.table
            strength = self.strengths(now)
            rows = [
                r
                for r in range(t.n)
                if int(t.status[r]) == ACTIVE or (include_inactive and t.texts[r] is not None)
            ]
            rows.sort(key=lambda r: -float(strength[r]))
            out = []
            for r in rows:
                record = t.record(int(t.ids[r]))
                record["current_strength"] = float(strength[r])
                out.append(record)
            return out

    def update(self, memory_id: int, text: str, at: float | None = None) -> dict[str, Any]:
        """Correct a memory's text (re-encoded; strength and history kept)."""
        memory_id = _check_id(memory_id)
        text = _check_text(text, self.config.max_chars)
        now = _check_time(at)
        key, signals = self._encode(text, now)
        with self.store.locked():
            self._sync()
            row = self.table.row(memory_id)
            if int(self.table.status[row]) != ACTIVE:
                raise ValueError(
                    f"memory {memory_id} is {STATUS_NAMES[int(self.table.status[row])]}"
                )
            self._commit(
                [
                    {
                        "op": "update",
                        "id": memory_id,
                        "t": now,
                        "text": text,
                        "key": encode_tensor(key),
                        "signals": encode_tensor(signals),
                    }
                ]
            )
            return self.table.record(memory_id)

    def delete(self, memory_id: int, at: float | None = None) -> None:
        """Delete a memory: its text and vector are gone, from disk too (a snapshot is
        written at once, so the log that held the words is removed); its history keeps
        when it was deleted."""
        memory_id = _check_id(memory_id)
        now = _check_time(at)
        with self.store.locked():
            self._sync()
            self.table.row(memory_id)  # deleted rows are compacted away at once
            self._commit([{"op": "delete", "ids": [memory_id], "t": now, "reason": "user"}])
            self.snapshot()

    def history(self, memory_id: int) -> list[dict[str, Any]]:
        """What happened to a memory, oldest first (created, repeated, feedback,
        superseded, updated, deleted), also after it was deleted."""
        memory_id = _check_id(memory_id)
        with self.store.locked(exclusive=False):
            self._sync()
            return self.table.history(memory_id)

    def forget_stale(self, at: float | None = None) -> list[int]:
        """Delete active memories whose strength has decayed below ``remove_threshold``
        (done automatically before every automatic snapshot; this does it now)."""
        now = _check_time(at)
        with self.store.locked():
            self._sync()
            return self._delete_stale(now)

    def _delete_stale(self, now: float) -> list[int]:
        t = self.table
        stale = t.active_mask() & (self.strengths(now) < self.config.remove_threshold)
        ids = [int(i) for i in t.ids[: t.n][stale].tolist()]
        if ids:  # logged without the snapshot check: it runs inside one
            self._log([{"op": "delete", "ids": ids, "t": now, "reason": "decayed"}])
        return ids

    def short_term(self) -> list[dict[str, Any]]:
        """The short-term memory: recent messages with their importance, oldest first."""
        with self.store.locked(exclusive=False):
            self._sync()
            return [{k: v for k, v in item.items() if k != "key"} for item in self.table.stm]

    def stats(self, at: float | None = None) -> dict[str, Any]:
        """Counts, thresholds and sizes."""
        now = _check_time(at)
        with self.store.locked(exclusive=False):
            self._sync()
            t = self.table
            status = t.status[: t.n]
            strength = self.strengths(now)
            return {
                "user_id": self.user_id,
                "encoder": self.encoder.name,
                "active": int((status == ACTIVE).sum()),
                "retrievable": int((strength >= self.config.retrieve_threshold).sum()),
                "superseded": int((status == SUPERSEDED).sum()),
                "deleted": t.deleted_count(),
                "short_term": len(t.stm),
                "events": t.seq,
                "generation": self.store.generation,
                "disk_bytes": self.store.size_bytes(),
                "config": asdict(self.config),
                "repeat_similarity": self.repeat_similarity,
                "subject_similarity": self.subject_similarity,
                "min_similarity": self.min_similarity,
            }

    # ------------------------------------------------------------------ files

    def snapshot(self) -> None:
        """Write a snapshot now (compacting deleted rows) and start a new log."""
        with self.store.locked():
            self._sync()
            tensors, meta = self.table.to_snapshot()
            self.manifest = self.store.write_snapshot(tensors, meta, self.manifest)
            self.table.load_snapshot(tensors, meta)
            self._events_since_snapshot = 0

    def export(self, path: str | Path) -> int:
        """Write :meth:`export_jsonl` to ``path``; returns the number of memories."""
        text, count = self._export()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return count

    def export_jsonl(self) -> str:
        """Every memory (active and superseded, with history) as JSONL; the first line
        records the format and the encoder."""
        return self._export()[0]

    def _export(self) -> tuple[str, int]:
        with self.store.locked(exclusive=False):
            self._sync()
            t = self.table
            header = {
                "format": EXPORT_FORMAT,
                "version": 1,
                "user_id": self.user_id,
                "encoder": self.encoder.name,
                "dim": self.encoder.dim,
                "exported_at": time.time(),
            }
            lines = [json.dumps(header)]
            for r in range(t.n):
                if t.texts[r] is None:
                    continue
                memory_id = int(t.ids[r])
                record = t.record(memory_id)
                record["key"] = encode_tensor(t.keys[r])
                record["signals"] = encode_tensor(t.signals[r])
                record["history"] = t.history(memory_id)
                lines.append(json.dumps(record, ensure_ascii=False))
        return "\n".join(lines) + "\n", len(lines) - 1

    def import_(self, path: str | Path) -> int:
        """:meth:`import_jsonl` of a file written by :meth:`export`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} is not UTF-8 text: {error}") from None
        return self.import_jsonl(text, str(path))

    def import_jsonl(self, text: str, source: str = "the export") -> int:
        """Add the memories of an export (new ids; strengths, times, counts and
        supersession kept). Vectors are reused when the export's encoder is this store's,
        re-computed from the text otherwise. Returns the number imported.

        Raises:
            ValueError: not an export (the header line is checked first) or a malformed
                line, named by ``source`` and its number; nothing is imported then.
        """
        raw = text.splitlines()
        if not raw:
            raise ValueError(f"{source} is empty, not a torchmem memory export")
        try:
            header = json.loads(raw[0])
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
            raise ValueError(f"{source} is not a torchmem memory export (no header line)")
        same_space = (
            header.get("encoder") == self.encoder.name and header.get("dim") == self.encoder.dim
        )
        zeros = encode_tensor(torch.zeros(len(SIGNAL_NAMES)))
        records = []
        for number, line in enumerate(raw[1:], start=2):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                record["text"] = _check_text(record["text"], self.config.max_chars)
                for name in FLOAT_COLUMNS:
                    record[name] = float(record[name])
                record["count"], record["id"] = int(record["count"]), int(record["id"])
                if record["status"] not in ("active", "superseded"):
                    raise ValueError(f"status {record['status']!r}")
                record["signals"] = decode_tensor(record.get("signals") or zeros, len(SIGNAL_NAMES))
                if same_space:
                    record["key"] = decode_tensor(record["key"], self.encoder.dim)
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"{source}, line {number}: not a memory record ({error})"
                ) from None
            records.append(record)
        texts = [r["text"] for r in records]
        keys = (
            torch.stack([r["key"] for r in records])
            if same_space and records
            else self.encoder.encode(texts)
        )
        signals = (
            torch.stack([r["signals"] for r in records])
            if records
            else torch.zeros(0, len(SIGNAL_NAMES))
        )
        columns = {
            name: torch.tensor([r[name] for r in records], dtype=torch.float64)
            for name in FLOAT_COLUMNS
        }
        count = torch.tensor([r["count"] for r in records], dtype=torch.int64)
        with self.store.locked():
            self._sync()
            # bulk_insert numbers the rows from next_id on, in order.
            renumber = {r["id"]: self.table.next_id + i for i, r in enumerate(records)}
            links = [
                (renumber[r["id"]], renumber[r["superseded_by"][0]], r["updated_at"])
                for r in records
                if r["status"] == "superseded" and (r.get("superseded_by") or [None])[0] in renumber
            ]
            return len(self._bulk_insert(texts, keys, signals, columns, count, "import", links))

    def _bulk_insert(
        self,
        texts: list[str],
        keys: Tensor,
        signals: Tensor,
        columns: dict[str, Tensor],
        count: Tensor,
        source: str,
        links: list[tuple[int, int, float]] = (),
    ) -> list[int]:
        """Insert many memories, then the ``(old, new, t)`` supersession ``links`` between
        them, as one snapshot (call under the lock, after _sync): all or nothing on disk,
        and the table reloaded from disk if writing fails."""
        try:
            new_ids = self.table.bulk_insert(texts, keys, signals, columns, count, source)
            for old, new, when in links:
                self.table.link(old, new, when)
            self.snapshot()
        except BaseException:
            self._open()
            raise
        return new_ids

    def add_many(self, texts: list[str], at: float | None = None) -> list[int]:
        """Store many texts at once as new memories, without the gate or consolidation
        (a bulk load: seeding a store, benchmarks); written as one snapshot, all or nothing.
        Returns their ids."""
        texts = [_check_text(text, self.config.max_chars) for text in texts]
        now = _check_time(at)
        keys = self.encoder.encode(texts) if texts else torch.zeros(0, self.encoder.dim)
        return self.add_many_encoded(texts, keys, at=now)

    def add_many_encoded(
        self, texts: list[str], keys: Tensor, at: float | None = None
    ) -> list[int]:
        """:meth:`add_many` with the texts' unit vectors already computed: ``keys`` (m, d)."""
        texts = [_check_text(text, self.config.max_chars) for text in texts]
        now = _check_time(at)
        if keys.shape != (len(texts), self.encoder.dim):
            raise ValueError(
                f"keys must have shape ({len(texts)}, {self.encoder.dim}), got {tuple(keys.shape)}"
            )
        m = len(texts)
        signals = (
            torch.stack(
                [message_signals(text, now, self.config.utc_offset_hours) for text in texts]
            )
            if m
            else torch.zeros(0, len(SIGNAL_NAMES))
        )
        full = torch.full((m,), now, dtype=torch.float64)
        columns = {
            "strength": torch.ones(m),
            "updated_at": full,
            "created_at": full,
            "stability": torch.ones(m),
            "importance": torch.ones(m),
        }
        with self.store.locked():
            self._sync()
            return self._bulk_insert(
                texts,
                keys.to(torch.float32),
                signals,
                columns,
                torch.ones(m, dtype=torch.int64),
                "bulk",
            )

    def forget(self) -> None:
        """Forget the user: delete their folder and everything in it. The object is closed."""
        with self.store.locked():
            self.store.destroy()
            self._closed = True

    def close(self) -> None:
        """Snapshot (when anything changed since the last one) and stop using the store."""
        if self._closed:
            return
        if self._events_since_snapshot:
            self.snapshot()
        self._closed = True

    def __enter__(self) -> PersonalMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"PersonalMemory(user_id={self.user_id!r}, encoder={self.encoder.name!r}, "
            f"memories={len(self.table)})"
        )


__all__ = [
    "AddResult",
    "ENCODER_THRESHOLDS",
    "Hit",
    "PersonalMemory",
    "PersonalMemoryConfig",
]
