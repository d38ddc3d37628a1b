"""One user's memories in memory: tensors with a row per memory, and the events that change them.

The store is event-sourced: every change is an event (a plain dict, see
:meth:`MemoryTable.apply`), appended to the user's log before it is applied, and the table
is rebuilt on start from the last snapshot plus the log. Events record *results*
(``"this row now has strength 0.8"``), not requests, so replaying them needs no encoder,
no gate and no clock, and gives back exactly the table that was acknowledged.

Row tensors (capacity grows by doubling, so an insert is amortised O(d)):

=================  ==========  ==========================================================
``keys``           (n, d) f32  unit text embeddings
``signals``        (n, S) f32  implicit signals of the message (:mod:`.signals`)
``strength``       (n,) f32    S at ``updated_at``
``updated_at``     (n,) f64    seconds of the last strength change
``created_at``     (n,) f64    seconds of the insert
``stability``      (n,) f32    multiplies the half-life; grows when the memory recurs
``importance``     (n,) f32    the write gate's p when it was stored
``count``          (n,) i64    times said (1 + recurrences)
``status``         (n,) i8     ACTIVE, SUPERSEDED (kept as history) or DELETED
``ids``            (n,) i64    public memory id
=================  ==========  ==========================================================

Beside ``keys`` the table keeps the scan's copy of them (:func:`.functional.quantize_keys`):
``scan_keys`` in ``scan_dtype`` (bfloat16 by default; float32 means the keys themselves),
refreshed wherever a key changes, and ``scan_norm``, an upper bound on the keys' norms
(it only grows between loads, which keeps it a bound), from which the scan bounds its
rounding error. It is derived, never stored: a snapshot holds the float32 keys.
"""

from __future__ import annotations

import base64
from collections import deque
from typing import Any

import torch
from torch import Tensor

from .functional import quantize_keys

ACTIVE, SUPERSEDED, DELETED = 0, 1, 2
STATUS_NAMES = {ACTIVE: "active", SUPERSEDED: "superseded", DELETED: "deleted"}

_QUANTIZE_BLOCK = 1 << 15

#: The float row columns (name -> dtype), in the order records and exports list them.
FLOAT_COLUMNS = {
    "strength": torch.float32,
    "updated_at": torch.float64,
    "created_at": torch.float64,
    "stability": torch.float32,
    "importance": torch.float32,
}


def encode_tensor(tensor: Tensor) -> str:
    """float32 tensor -> base64 of its little-endian bytes (for JSON events)."""
    return base64.b64encode(
        tensor.detach().to(torch.float32).contiguous().numpy().tobytes()
    ).decode()


def decode_tensor(text: str, length: int) -> Tensor:
    """Inverse of :func:`encode_tensor`; checks the length."""
    raw = base64.b64decode(text.encode(), validate=True)
    if len(raw) != 4 * length:
        raise ValueError(f"encoded vector holds {len(raw) // 4} numbers, expected {length}")
    return torch.frombuffer(bytearray(raw), dtype=torch.float32).clone()


class MemoryTable:
    """The rows of one user's memory, the short-term buffer and the write gate's parameters.

    Args:
        dim: embedding width d.
        signal_dim: signal width S.
        gate_weight, gate_bias: the write gate's starting parameters.
        stm_size: how many recent messages the short-term memory keeps.
        scan_dtype: dtype of the scan's copy of the keys (float32: the keys themselves).
    """

    def __init__(
        self,
        dim: int,
        signal_dim: int,
        gate_weight: Tensor,
        gate_bias: Tensor,
        stm_size: int,
        scan_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        self.dim, self.signal_dim = dim, signal_dim
        self.scan_dtype = scan_dtype
        self.n = 0
        self.keys = torch.zeros(0, dim)
        self.scan_keys = self.keys if scan_dtype == torch.float32 else self.keys.to(scan_dtype)
        self.scan_norm = 0.0
        self.signals = torch.zeros(0, signal_dim)
        self.columns = {name: torch.zeros(0, dtype=dtype) for name, dtype in FLOAT_COLUMNS.items()}
        self.count = torch.zeros(0, dtype=torch.int64)
        self.status = torch.zeros(0, dtype=torch.int8)
        self.ids = torch.zeros(0, dtype=torch.int64)
        self.texts: list[str | None] = []
        self.sources: list[str] = []  # how each row was created: add, promoted, import, bulk
        self.row_of: dict[int, int] = {}
        # Events after creation, per id (the "created" entry is derived from the row, so a
        # million bulk-loaded memories cost no history at all); a deleted memory keeps its
        # own created entry here, as its row is compacted away.
        self.histories: dict[int, list[dict]] = {}
        self.links: dict[int, dict[str, list[int]]] = {}  # id -> supersedes / superseded_by
        self.next_id = 1
        self.seq = 0  # last event applied
        self.gate_weight, self.gate_bias = gate_weight.clone(), gate_bias.clone()
        # Short-term memory: recent messages (seq, text, key, importance, t), bounded.
        self.stm: deque[dict[str, Any]] = deque(maxlen=stm_size)

    # ------------------------------------------------------------------ rows

    def __len__(self) -> int:
        return self.n

    def column(self, name: str) -> Tensor:
        """The first n entries of a float column (a view)."""
        return self.columns[name][: self.n]

    def _grow(self, need: int) -> None:
        capacity = self.keys.shape[0]
        if need <= capacity:
            return
        capacity = max(need, 2 * capacity, 64)

        def grown(tensor: Tensor) -> Tensor:
            # Rows from n on are written before they are read: no need to zero (or touch)
            # the pages of a million-row capacity.
            out = torch.empty((capacity, *tensor.shape[1:]), dtype=tensor.dtype)
            out[: self.n] = tensor[: self.n]
            return out

        self.keys, self.signals = grown(self.keys), grown(self.signals)
        # A float32 scan reads the keys themselves.
        self.scan_keys = self.keys if self.scan_dtype == torch.float32 else grown(self.scan_keys)
        self.columns = {name: grown(tensor) for name, tensor in self.columns.items()}
        self.count, self.status, self.ids = grown(self.count), grown(self.status), grown(self.ids)

    def _set_keys(self, rows: slice | int, keys: Tensor) -> None:
        """Write key rows (a slice, or one row) and their scan copy."""
        if isinstance(rows, int):
            rows = slice(rows, rows + 1)
        self.keys[rows] = keys.reshape(-1, self.dim)
        # In blocks, so that a million rows need no gigabytes of temporaries.
        for start in range(rows.start, rows.stop, _QUANTIZE_BLOCK):
            block = slice(start, min(start + _QUANTIZE_BLOCK, rows.stop))
            low, norm = quantize_keys(self.keys[block], self.scan_dtype)
            if self.scan_keys is not self.keys:
                self.scan_keys[block] = low
            if len(norm):
                self.scan_norm = max(self.scan_norm, float(norm.max()))

    def row(self, memory_id: int) -> int:
        """Row of a memory id; KeyError naming the id when there is none."""
        try:
            return self.row_of[memory_id]
        except KeyError:
            raise KeyError(f"no memory with id {memory_id}") from None

    def active_mask(self) -> Tensor:
        return self.status[: self.n] == ACTIVE

    def record(self, memory_id: int) -> dict[str, Any]:
        """A row as plain Python values (strength as stored, not decayed)."""
        r = self.row(memory_id)
        return {
            "id": memory_id,
            "text": self.texts[r],
            "status": STATUS_NAMES[int(self.status[r])],
            **{name: float(self.columns[name][r]) for name in FLOAT_COLUMNS},
            "count": int(self.count[r]),
            "supersedes": list(self.links.get(memory_id, {}).get("supersedes", [])),
            "superseded_by": list(self.links.get(memory_id, {}).get("superseded_by", [])),
        }

    # ------------------------------------------------------------------ events

    def apply(self, event: dict[str, Any]) -> None:
        """Apply one event (already validated and logged). Event kinds:

        * ``insert``: ``id, text, key, signals`` (base64), ``t, strength, stability,
          importance, count, source``, optional ``supersedes`` (ids made SUPERSEDED) and
          ``consumes`` (short-term entries, by seq, folded into this memory);
        * ``touch``: ``id, t, strength, stability, count, reason`` (recurrence, recall,
          feedback), optional ``text`` (what was said again);
        * ``update``: ``id, t, text, key, signals`` (the user's correction);
        * ``link``: ``old, new, t``: ``new`` supersedes ``old`` (imports);
        * ``delete``: ``ids, t, reason``; the text leaves the row and the history, the row
          stays as a tombstone until compaction;
        * ``stm``: ``text, key, importance, t`` pushed on the short-term memory;
        * ``gate``: ``weight`` (base64), ``bias``: new write-gate parameters;
        * ``feedback``: ``id, reward, t``: recorded in the memory's history.
        """
        op = event["op"]
        handler = getattr(self, f"_apply_{op}", None)
        if handler is None:
            raise ValueError(f"unknown event op {op!r}")
        handler(event)
        self.seq = max(self.seq, int(event.get("seq", self.seq)))

    def _history(self, memory_id: int, entry: dict[str, Any]) -> None:
        self.histories.setdefault(memory_id, []).append(entry)

    def _apply_insert(self, e: dict[str, Any]) -> None:
        memory_id = int(e["id"])
        self._grow(self.n + 1)
        r = self.n
        self._set_keys(r, decode_tensor(e["key"], self.dim))
        self.signals[r] = decode_tensor(e["signals"], self.signal_dim)
        self.columns["strength"][r] = e["strength"]
        self.columns["updated_at"][r] = e["t"]
        self.columns["created_at"][r] = e["t"]
        self.columns["stability"][r] = e["stability"]
        self.columns["importance"][r] = e["importance"]
        self.count[r], self.status[r], self.ids[r] = int(e["count"]), ACTIVE, memory_id
        self.texts.append(e["text"])
        self.sources.append(e["source"])
        self.row_of[memory_id] = r
        self.n += 1
        self.next_id = max(self.next_id, memory_id + 1)
        for old in e.get("supersedes", []):
            self._supersede(int(old), memory_id, e["t"])
        consumed = set(e.get("consumes", []))
        if consumed:
            kept = [item for item in self.stm if item["seq"] not in consumed]
            self.stm.clear()
            self.stm.extend(kept)

    def _created_entry(self, memory_id: int) -> dict[str, Any]:
        r = self.row(memory_id)
        entry = {"event": "created", "t": float(self.columns["created_at"][r])}
        if self.texts[r] is not None:
            # The text it was created with: the first correction's "old", if corrected.
            updates = [h for h in self.histories.get(memory_id, []) if h["event"] == "updated"]
            entry["text"] = updates[0].get("old", self.texts[r]) if updates else self.texts[r]
        entry["source"] = self.sources[r]
        supersedes = self.links.get(memory_id, {}).get("supersedes")
        if supersedes:
            entry["supersedes"] = list(supersedes)
        return entry

    def history(self, memory_id: int) -> list[dict[str, Any]]:
        """What happened to a memory, oldest first; KeyError for an unknown id."""
        later = [dict(entry) for entry in self.histories.get(memory_id, [])]
        if memory_id in self.row_of and not (later and later[0]["event"] == "created"):
            return [self._created_entry(memory_id), *later]
        if not later:
            raise KeyError(f"no memory with id {memory_id}")
        return later

    def deleted_count(self) -> int:
        return sum(1 for h in self.histories.values() if h and h[-1]["event"] == "deleted")

    def _supersede(self, old: int, new: int, t: float) -> None:
        self.status[self.row(old)] = SUPERSEDED
        self.links.setdefault(old, {}).setdefault("superseded_by", []).append(new)
        self.links.setdefault(new, {}).setdefault("supersedes", []).append(old)
        self._history(old, {"event": "superseded", "t": t, "by": new})

    def _apply_link(self, e: dict[str, Any]) -> None:
        self._supersede(int(e["old"]), int(e["new"]), e["t"])

    def _apply_touch(self, e: dict[str, Any]) -> None:
        memory_id = int(e["id"])
        r = self.row(memory_id)
        self.columns["strength"][r] = e["strength"]
        self.columns["updated_at"][r] = e["t"]
        self.columns["stability"][r] = e["stability"]
        self.count[r] = int(e["count"])
        # Recalls are frequent (counted, not each kept); feedback has its own entry.
        if e["reason"] not in ("recall", "feedback"):
            entry = {"event": e["reason"], "t": e["t"], "strength": e["strength"]}
            if "text" in e:
                entry["text"] = e["text"]
            self._history(memory_id, entry)

    def _apply_update(self, e: dict[str, Any]) -> None:
        memory_id = int(e["id"])
        r = self.row(memory_id)
        old = self.texts[r]
        self.texts[r] = e["text"]
        self._set_keys(r, decode_tensor(e["key"], self.dim))
        self.signals[r] = decode_tensor(e["signals"], self.signal_dim)
        self._history(memory_id, {"event": "updated", "t": e["t"], "old": old, "text": e["text"]})

    def _apply_delete(self, e: dict[str, Any]) -> None:
        for memory_id in e["ids"]:
            r = self.row(int(memory_id))
            history = self.histories.setdefault(int(memory_id), [])
            if not (history and history[0]["event"] == "created"):
                history.insert(0, self._created_entry(int(memory_id)))
            self.status[r] = DELETED
            self.texts[r] = None  # the words are gone; the tombstone only says when and why
            self._set_keys(r, torch.zeros(self.dim))
            for entry in self.histories.get(int(memory_id), []):  # no copy of the words left
                for key in ("text", "old"):
                    entry.pop(key, None)
            self._history(int(memory_id), {"event": "deleted", "t": e["t"], "reason": e["reason"]})

    def _apply_stm(self, e: dict[str, Any]) -> None:
        self.stm.append(
            {
                "seq": int(e["seq"]),
                "text": e["text"],
                "key": decode_tensor(e["key"], self.dim),
                "importance": float(e["importance"]),
                "t": float(e["t"]),
            }
        )

    def _apply_gate(self, e: dict[str, Any]) -> None:
        self.gate_weight = decode_tensor(e["weight"], self.gate_weight.shape[0])
        self.gate_bias = torch.tensor(float(e["bias"]))

    def _apply_feedback(self, e: dict[str, Any]) -> None:
        self._history(int(e["id"]), {"event": "feedback", "t": e["t"], "reward": e["reward"]})

    def bulk_insert(
        self,
        texts: list[str],
        keys: Tensor,
        signals: Tensor,
        columns: dict[str, Tensor],
        count: Tensor,
        source: str,
    ) -> list[int]:
        """Insert many memories at once, vectorised (imports and benchmarks); not logged
        event by event: the caller writes a snapshot. Returns their new ids.

        ``keys`` (m, d), ``signals`` (m, S), ``columns`` holds every float column (m,),
        ``count`` (m,).
        """
        m = len(texts)
        ids = list(range(self.next_id, self.next_id + m))
        self._grow(self.n + m)
        rows = slice(self.n, self.n + m)
        self._set_keys(rows, keys)
        self.signals[rows] = signals
        for name in FLOAT_COLUMNS:
            self.columns[name][rows] = columns[name]
        self.count[rows], self.status[rows] = count, ACTIVE
        self.ids[rows] = torch.tensor(ids, dtype=torch.int64)
        self.texts.extend(texts)
        self.sources.extend([source] * m)
        self.row_of.update(zip(ids, range(self.n, self.n + m)))
        self.n += m
        self.next_id += m
        return ids

    def link(self, old: int, new: int, t: float) -> None:
        """``new`` supersedes ``old`` (imports)."""
        self._supersede(old, new, t)

    # ------------------------------------------------------------------ snapshots

    def to_snapshot(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """``(tensors, json_part)`` of the table with deleted rows compacted away.

        Deleted memories keep their id and history (a tombstone in the JSON part), not
        their text or vector.
        """
        keep = (self.status[: self.n] != DELETED).nonzero().flatten()
        tensors = {
            "keys": self.keys[keep].contiguous(),
            "signals": self.signals[keep].contiguous(),
            "count": self.count[keep].contiguous(),
            "status": self.status[keep].contiguous(),
            "ids": self.ids[keep].contiguous(),
            "gate.weight": self.gate_weight.contiguous(),
            "gate.bias": self.gate_bias.reshape(1).contiguous(),
            "stm.keys": torch.stack([item["key"] for item in self.stm])
            if self.stm
            else torch.zeros(0, self.dim),
        }
        for name in FLOAT_COLUMNS:
            tensors[name] = self.columns[name][keep].contiguous()
        meta = {
            "texts": [self.texts[int(r)] for r in keep],
            "sources": [self.sources[int(r)] for r in keep],
            "histories": {str(k): v for k, v in self.histories.items()},
            "links": {str(k): v for k, v in self.links.items()},
            "next_id": self.next_id,
            "seq": self.seq,
            "stm": [{k: v for k, v in item.items() if k != "key"} for item in self.stm],
        }
        return tensors, meta

    def load_snapshot(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Replace the table's contents with a snapshot from :meth:`to_snapshot`."""
        n = tensors["ids"].shape[0]
        if tensors["keys"].shape != (n, self.dim):
            raise ValueError(
                f"snapshot keys have shape {tuple(tensors['keys'].shape)}, "
                f"expected ({n}, {self.dim})"
            )
        if len(meta["texts"]) != n:
            raise ValueError(f"snapshot holds {len(meta['texts'])} texts for {n} rows")
        self.n = 0
        self.keys = torch.zeros(0, self.dim)
        self.scan_norm = 0.0
        self._grow(max(n, 1))
        self.n = n
        self._set_keys(slice(0, n), tensors["keys"])
        self.signals[:n] = tensors["signals"]
        for name in FLOAT_COLUMNS:
            self.columns[name][:n] = tensors[name]
        self.count[:n], self.status[:n], self.ids[:n] = (
            tensors["count"],
            tensors["status"],
            tensors["ids"],
        )
        self.texts = list(meta["texts"])
        self.sources = list(meta["sources"])
        self.row_of = {int(i): r for r, i in enumerate(tensors["ids"].tolist())}
        self.histories = {int(k): v for k, v in meta["histories"].items()}
        self.links = {int(k): v for k, v in meta["links"].items()}
        self.next_id, self.seq = int(meta["next_id"]), int(meta["seq"])
        self.gate_weight = tensors["gate.weight"].clone()
        self.gate_bias = tensors["gate.bias"].reshape(()).clone()
        self.stm.clear()
        for item, key in zip(meta["stm"], tensors["stm.keys"]):
            self.stm.append({**item, "key": key.clone()})


__all__ = [
    "ACTIVE",
    "DELETED",
    "FLOAT_COLUMNS",
    "STATUS_NAMES",
    "SUPERSEDED",
    "MemoryTable",
    "decode_tensor",
    "encode_tensor",
]
