"""A user's memory on disk: a snapshot, an append-only log, a manifest and a lock. No database.

Folder ``<store_dir>/<user_id>/``::

    manifest.json                  format, user, encoder, current generation g, file hashes
    snapshot-<g>.safetensors       the table's tensors at generation g (absent for g = 0)
    snapshot-<g>.json              its texts, histories, links, short-term memory
    log-<g>.jsonl                  events since that snapshot, one per line: "<crc32> <json>"
    .lock                          flock'ed by whoever reads or writes

Durability: an acknowledged event is a complete, checksummed log line that was flushed
and fsync'ed. A crash can leave at most one torn line at the end of the log; recovery
drops it (it was never acknowledged). A snapshot is written as new files (write, fsync,
rename), then the manifest is replaced the same way to point at them, then the old
generation is deleted; a crash at any point leaves either the old or the new generation
complete and named by the manifest. Snapshots are safetensors and JSON: loading one never
runs code.

Concurrency: every operation holds an exclusive ``fcntl.flock`` on ``.lock`` (shared for
pure reads) and first catches up with events other processes appended, so writers in
several processes and threads interleave without losing anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import Tensor

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

FORMAT = "torchmem-personal-memory"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"

_USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


class StoreError(ValueError):
    """A store folder that cannot be read as a torchmem personal memory."""


def check_user_id(user_id: object) -> str:
    """A user id safe to use as a folder name: 1-128 of ``A-Z a-z 0-9 _ . @ -``,
    starting with a letter or digit (so never ``..``, ``/`` or a hidden name)."""
    if not isinstance(user_id, str):
        raise TypeError(f"user_id must be a string, got {type(user_id).__name__}")
    if not _USER_ID.match(user_id) or ".." in user_id:
        raise ValueError(
            f"invalid user_id {user_id!r}: use 1-128 characters from A-Z a-z 0-9 _ . @ -, "
            f"starting with a letter or digit, without '..'"
        )
    return user_id


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    _fsync_dir(path.parent)


def encode_line(event: dict[str, Any]) -> bytes:
    """One log line: the CRC-32 of the compact JSON, a space, the JSON, a newline."""
    payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def decode_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Events of a log's bytes and the length of its valid prefix.

    Reading stops at the first line that is incomplete (no newline) or fails its checksum:
    everything from there on was never acknowledged.
    """
    events, good = [], 0
    while good < len(data):
        end = data.find(b"\n", good)
        if end < 0:
            break
        line = data[good:end]
        crc, _, payload = line.partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(payload):
                break
            events.append(json.loads(payload))
        except ValueError:
            break
        good = end + 1
    return events, good


class UserStore:
    """The files of one user's memory. Not thread-safe by itself: the caller serialises.

    Args:
        root: the store folder holding one sub-folder per user.
        user_id: checked with :func:`check_user_id`.
        fsync: fsync each acknowledged append (turn off only for throwaway stores).
    """

    def __init__(self, root: str | Path, user_id: str, *, fsync: bool = True) -> None:
        self.user_id = check_user_id(user_id)
        self.root = Path(root)
        self.path = self.root / user_id
        self.fsync = fsync
        self.generation = -1  # generation whose log ``offset`` counts into
        self.offset = 0
        self._lock_file = None
        self._lock_depth = 0
        self._thread_lock = threading.RLock()

    # ------------------------------------------------------------------ locking

    @contextlib.contextmanager
    def locked(self, exclusive: bool = True) -> Iterator[None]:
        """Hold the store's lock (re-entrant within this object)."""
        with self._thread_lock:
            if self._lock_depth == 0:
                self.path.mkdir(parents=True, exist_ok=True)
                self._lock_file = open(self.path / LOCK, "a+b")  # noqa: SIM115
                if fcntl is not None:
                    fcntl.flock(self._lock_file, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    if fcntl is not None:
                        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                    self._lock_file.close()
                    self._lock_file = None

    # ------------------------------------------------------------------ files

    def _name(self, kind: str, generation: int) -> Path:
        suffix = {"log": "jsonl", "tensors": "safetensors", "meta": "json"}[kind]
        stem = "log" if kind == "log" else "snapshot"
        return self.path / f"{stem}-{generation:06d}.{suffix}"

    def read_manifest(self) -> dict[str, Any] | None:
        path = self.path / MANIFEST
        if not path.exists():
            return None
        try:
            manifest = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise StoreError(f"{path} is not valid JSON ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise StoreError(f"{path} is not a torchmem personal-memory manifest")
        if manifest.get("version") != FORMAT_VERSION:
            raise StoreError(
                f"{path} has format version {manifest.get('version')!r}; this torchmem reads "
                f"version {FORMAT_VERSION}"
            )
        return manifest

    def create(self, encoder: str, dim: int, extra: dict[str, Any] | None = None) -> dict:
        """Start an empty store (generation 0). Call under :meth:`locked`."""
        self.path.mkdir(parents=True, exist_ok=True)
        log = self._name("log", 0)
        log.write_bytes(b"")
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "user_id": self.user_id,
            "encoder": encoder,
            "dim": dim,
            "generation": 0,
            "snapshot": None,
            **(extra or {}),
        }
        atomic_write(self.path / MANIFEST, json.dumps(manifest, indent=2).encode())
        self.generation, self.offset = 0, 0
        return manifest

    def load(self, manifest: dict[str, Any]) -> tuple[dict | None, list[dict]]:
        """``(snapshot, events)`` of the manifest's generation; torn log tail truncated.

        ``snapshot`` is ``{"tensors": ..., "meta": ...}`` or None at generation 0. Call
        under an exclusive :meth:`locked` (truncation writes).
        """
        generation = int(manifest["generation"])
        snapshot = None
        if manifest.get("snapshot"):
            snapshot = self._read_snapshot(generation, manifest["snapshot"])
        log = self._name("log", generation)
        data = log.read_bytes() if log.exists() else b""
        events, good = decode_lines(data)
        rest = data[good:]
        if rest.count(b"\n") > 1 or (b"\n" in rest and not rest.endswith(b"\n")):
            raise StoreError(
                f"{log} is corrupt: the line at byte {good} fails its checksum and complete "
                f"lines follow it (a crash only ever tears the last line)"
            )
        if rest:  # a torn last line: it was never acknowledged
            with open(log, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        self.generation, self.offset = generation, good
        self._remove_stale(generation)
        return snapshot, events

    def new_events(self) -> tuple[bool, list[dict]]:
        """Catch up: ``(reload_needed, events)`` appended by others since our last read.

        ``reload_needed`` is True when another process wrote a new snapshot (then call
        :meth:`load` again).
        """
        manifest = self.read_manifest()
        if manifest is None:
            raise StoreError(
                f"the store {self.path} has disappeared (forgotten by another process?)"
            )
        if int(manifest["generation"]) != self.generation:
            return True, []
        log = self._name("log", self.generation)
        size = log.stat().st_size
        if size == self.offset:
            return False, []
        with open(log, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        events, good = decode_lines(data)
        self.offset += good
        return False, events

    def append(self, events: list[dict[str, Any]], durable: bool = True) -> None:
        """Append events to the log; with ``durable`` they are on disk when this returns."""
        if not events:
            return
        data = b"".join(encode_line(event) for event in events)
        with open(self._name("log", self.generation), "ab") as f:
            f.write(data)
            f.flush()
            if durable and self.fsync:
                os.fsync(f.fileno())
        self.offset += len(data)

    def write_snapshot(
        self, tensors: dict[str, Tensor], meta: dict[str, Any], manifest: dict
    ) -> dict:
        """Write generation g+1 from the table and switch the manifest to it; returns it."""
        from safetensors.torch import save

        generation = int(manifest["generation"]) + 1
        tensor_bytes = save({k: v.contiguous() for k, v in tensors.items()})
        meta_bytes = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode()
        atomic_write(self._name("tensors", generation), tensor_bytes)
        atomic_write(self._name("meta", generation), meta_bytes)
        atomic_write(self._name("log", generation), b"")
        new_manifest = {
            **manifest,
            "generation": generation,
            "snapshot": {
                "tensors_sha256": hashlib.sha256(tensor_bytes).hexdigest(),
                "meta_sha256": hashlib.sha256(meta_bytes).hexdigest(),
                "rows": int(tensors["ids"].shape[0]),
            },
        }
        atomic_write(self.path / MANIFEST, json.dumps(new_manifest, indent=2).encode())
        self.generation, self.offset = generation, 0
        self._remove_stale(generation)
        return new_manifest

    def _read_snapshot(self, generation: int, info: dict[str, Any]) -> dict[str, Any]:
        from safetensors.torch import load

        paths = self._name("tensors", generation), self._name("meta", generation)
        contents = []
        for path, key in zip(paths, ("tensors_sha256", "meta_sha256")):
            if not path.exists():
                raise StoreError(f"{path} is missing; the manifest names it")
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != info.get(key):
                raise StoreError(f"{path} is corrupt: its SHA-256 differs from the manifest's")
            contents.append(data)
        try:
            tensors = load(contents[0])
            meta = json.loads(contents[1])
        except Exception as error:  # safetensors raises its own error types
            raise StoreError(
                f"snapshot {generation} of {self.path} cannot be read: {error}"
            ) from None
        return {"tensors": tensors, "meta": meta}

    def _remove_stale(self, generation: int) -> None:
        """Delete files of other generations and half-written ones (left by a crash)."""
        keep = {self._name(kind, generation).name for kind in ("log", "tensors", "meta")}
        for path in self.path.iterdir():
            name = path.name
            stale_generation = re.match(r"^(log|snapshot)-\d{6}\.(jsonl|safetensors|json)$", name)
            if name.endswith(".partial") or (stale_generation and name not in keep):
                path.unlink(missing_ok=True)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def destroy(self) -> None:
        """Delete the user's folder and everything in it. Call under :meth:`locked`."""
        for path in self.path.iterdir():
            if path.name != LOCK:
                path.unlink()
        (self.path / LOCK).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.path.rmdir()
        self.generation, self.offset = -1, 0


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "StoreError",
    "UserStore",
    "atomic_write",
    "check_user_id",
    "decode_lines",
    "encode_line",
]
