"""The store on disk: reopening, recovery from torn logs and crashes, corruption errors,
the lock, concurrent writers in threads and processes, kill -9 at random points."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from torchmem.personal import PersonalMemory, StoreError
from torchmem.personal.store import decode_lines, encode_line

sys.path.insert(0, str(Path(__file__).parent))
from _writer import CONFIG, message  # noqa: E402

WRITER = Path(__file__).with_name("_writer.py")
T0 = 1_700_000_000.0


def texts(mem):
    return sorted(r["text"] for r in mem.list(at=T0))


def _fill(mem, n, writer=0):
    return [mem.add(message(writer, i), at=T0 + i).id for i in range(n)]


def test_reopen_gives_back_the_same_memory_with_and_without_snapshot(tmp_path):
    mem = PersonalMemory(tmp_path, "u", config={**CONFIG, "snapshot_every": 5})
    ids = _fill(mem, 12)  # two snapshots and a log tail of two events
    mem.feedback(ids[0], -0.5, at=T0 + 20)
    expected = mem.list(at=T0 + 30)
    gate = mem.table.gate_weight.clone()
    # no close(): what is on disk must be enough
    again = PersonalMemory(tmp_path, "u", config=CONFIG)
    assert again.list(at=T0 + 30) == expected
    assert again.table.gate_weight.equal(gate)
    assert again.store.generation == 3  # 15 events, a snapshot every 5
    assert again.history(ids[0]) == mem.history(ids[0])


def test_log_lines_are_checksummed_and_a_torn_tail_is_dropped(tmp_path):
    events = [{"op": "x", "n": i, "text": "é"} for i in range(3)]
    data = b"".join(encode_line(e) for e in events)
    assert decode_lines(data) == (events, len(data))
    assert decode_lines(data[:-1])[0] == events[:2]  # last line torn
    flipped = data.replace(b'"n":1', b'"n":7')
    assert decode_lines(flipped)[0] == events[:1]  # checksum catches the change

    mem = PersonalMemory(tmp_path, "u", config=CONFIG)
    _fill(mem, 3)
    log = mem.store.path / "log-000000.jsonl"
    whole = log.read_bytes()
    log.write_bytes(whole + b'0badc0de {"op": "insert", "id": 9')  # a crash mid-write
    again = PersonalMemory(tmp_path, "u", config=CONFIG)
    assert len(again.list(at=T0)) == 3
    assert log.read_bytes() == whole  # the torn line is gone, the rest kept


def test_corruption_inside_the_log_or_a_snapshot_is_an_error(tmp_path):
    mem = PersonalMemory(tmp_path, "u", config=CONFIG)
    _fill(mem, 3)
    log = mem.store.path / "log-000000.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0] + lines[1].replace(b"note", b"nope") + lines[2])
    with pytest.raises(StoreError, match="log-000000.jsonl is corrupt: the line at byte"):
        PersonalMemory(tmp_path, "u", config=CONFIG)

    mem = PersonalMemory(tmp_path, "v", config=CONFIG)
    _fill(mem, 3)
    mem.snapshot()
    snap = mem.store.path / "snapshot-000001.safetensors"
    data = bytearray(snap.read_bytes())
    data[-5] ^= 0xFF
    snap.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="snapshot-000001.safetensors is corrupt"):
        PersonalMemory(tmp_path, "v", config=CONFIG)
    (mem.store.path / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="manifest.json is not valid JSON"):
        PersonalMemory(tmp_path, "v", config=CONFIG)
    (mem.store.path / "manifest.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(StoreError, match="not a torchmem personal-memory manifest"):
        PersonalMemory(tmp_path, "v", config=CONFIG)


def test_a_crash_during_a_snapshot_leaves_the_old_generation(tmp_path):
    mem = PersonalMemory(tmp_path, "u", config=CONFIG)
    _fill(mem, 4)
    path = mem.store.path
    # The new generation's files were written but the manifest was not switched yet.
    (path / "snapshot-000001.safetensors").write_bytes(b"half")
    (path / "snapshot-000001.json.partial").write_bytes(b"{")
    again = PersonalMemory(tmp_path, "u", config=CONFIG)
    assert len(again.list(at=T0)) == 4
    assert sorted(p.name for p in path.iterdir()) == [".lock", "log-000000.jsonl", "manifest.json"]


def test_concurrent_writers_in_threads_lose_nothing(tmp_path):
    mem = PersonalMemory(tmp_path, "u", config={**CONFIG, "snapshot_every": 17})

    def work(writer):
        for i in range(25):
            mem.add(message(writer, i), at=T0 + i)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = sorted(message(w, i) for w in range(4) for i in range(25))
    assert texts(mem) == expected
    assert texts(PersonalMemory(tmp_path, "u", config=CONFIG)) == expected


def _writer(store, user, writer, count, snapshot_every=1000, **kwargs):
    return subprocess.Popen(
        [
            sys.executable,
            str(WRITER),
            str(store),
            user,
            str(writer),
            str(count),
            str(snapshot_every),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    procs = [_writer(tmp_path, "u", w, 20, snapshot_every=9) for w in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert len(out.splitlines()) == 20
    mem = PersonalMemory(tmp_path, "u", config=CONFIG)
    assert texts(mem) == sorted(message(w, i) for w in range(3) for i in range(20))
    assert len({r["id"] for r in mem.list(at=T0)}) == 60


def _kill_and_check(tmp_path, rounds, seed):
    rng = random.Random(seed)
    acknowledged: set[str] = set()
    for round_ in range(rounds):
        proc = _writer(tmp_path, "u", round_, 10_000, snapshot_every=rng.choice([3, 7, 50]))
        deadline = time.monotonic() + rng.uniform(0.0, 0.6)
        lines = []
        # Wait for the writer to start writing, then kill it at a random point.
        first = proc.stdout.readline()
        if first:
            lines.append(first)
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
        lines.extend(rest.splitlines(keepends=True))
        for line in lines:
            if line.startswith("ack "):
                acknowledged.add(message(round_, int(line.split()[1])))
        stored = set(texts(PersonalMemory(tmp_path, "u", config=CONFIG)))  # loads, always
        missing = acknowledged - stored
        assert not missing, f"round {round_}: acknowledged but lost: {sorted(missing)[:3]}"
    return acknowledged


def test_kill_9_at_random_points_loses_nothing_acknowledged(tmp_path):
    assert len(_kill_and_check(tmp_path, rounds=4, seed=0)) > 0


@pytest.mark.slow
def test_kill_9_many_times(tmp_path):
    assert len(_kill_and_check(tmp_path, rounds=60, seed=1)) > 0
