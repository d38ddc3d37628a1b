"""Latency of the personal memory, side by side with mem0 (``mem0ai``, ``infer=False``).

    python -m torchmem.bench.personal_bench --sizes 10000 100000 1000000 \\
        --mem0-sizes 10000 100000 --out docs/bench/personal-latency

For each store size N: a fresh store is filled with N memories (random unit vectors and
short texts: the content does not change a brute-force search's cost, and embedding a
million texts would take hours), then timed with the public API, one thread:

* ``add`` and ``search`` (k=5) excluding embedding (``add_encoded`` / ``search_encoded``
  here; mem0 with its embedder answering from a cache of the same MiniLM vectors),
  ``--probes`` calls each, p50 and p95;
* the same including embedding (the real encoder on each call), fewer calls;
* cold start: opening the store in a fresh process (page cache warm; imports excluded).

Both stores live in the same folder on the same file system. torchmem fsyncs each
acknowledged add (its default); mem0 commits to SQLite. mem0 is filled through its vector
store's batch insert with the payload ``Memory.add`` writes (the fill is not timed; one
``Memory.add`` per memory would take hours at 1e5), then timed through ``Memory.add``
and ``Memory.search``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ._common import offline_mem0, write_report

T0 = 1_767_225_600.0  # 2026-01-01 UTC
USER = "bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1e3 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": statistics.fmean(ms),
    }


def probe_messages(count: int, seed: int) -> list[str]:
    """Messages worth storing (preferences, facts), each made unique."""
    from torchmem.personal.messages import generate_messages

    rows = [
        r["text"]
        for s in ("train", "test")
        for r in generate_messages(s, seed, 20)
        if r["label"] == 1
    ]
    rng = random.Random(seed)
    return [f"{rng.choice(rows)} (note {i})" for i in range(count)]


def queries(count: int, seed: int) -> list[str]:
    topics = [
        "drinks",
        "music",
        "explanations",
        "my job",
        "where I live",
        "my pets",
        "languages",
        "food allergies",
        "weekend habits",
        "answer style",
    ]
    rng = random.Random(seed)
    return [f"what do you know about {rng.choice(topics)}? ({i})" for i in range(count)]


def background(count: int, dim: int, seed: int) -> tuple[list[str], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    keys = torch.nn.functional.normalize(torch.randn(count, dim, generator=generator), dim=1)
    return [f"background fact {i}" for i in range(count)], keys


def cold_start(store: Path, encoder: str) -> float:
    code = (
        "import time, torch; from torchmem.personal import PersonalMemory; "
        "torch.set_num_threads(1);"
        f"t = time.perf_counter(); PersonalMemory({str(store)!r}, {USER!r}, encoder={encoder!r});"
        "print(time.perf_counter() - t)"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def run_torchmem(size, folder, encoder, probe_texts, probe_keys, query_texts, query_keys, live):
    from torchmem.personal import PersonalMemory

    store = Path(folder) / "torchmem"
    mem = PersonalMemory(store, USER, encoder=encoder)
    texts, keys = background(size, mem.encoder.dim, seed=size)
    start = time.perf_counter()
    mem.add_many_encoded(texts, keys, at=T0)
    build = time.perf_counter() - start
    del texts, keys
    mem.close()
    result = {
        "size": size,
        "build_s": build,
        "cold_start_s": cold_start(store, encoder),
        "disk_mib": sum(p.stat().st_size for p in (store / USER).iterdir()) / 2**20,
    }
    mem = PersonalMemory(store, USER, encoder=encoder)
    adds, searches, stored = [], [], 0
    for i, (text, key) in enumerate(zip(probe_texts, probe_keys)):
        start = time.perf_counter()
        stored += mem.add_encoded(text, key, at=T0 + 60 + i).stored
        adds.append(time.perf_counter() - start)
    for i, key in enumerate(query_keys):
        start = time.perf_counter()
        mem.search_encoded(key, k=5, at=T0 + 3600 + i)
        searches.append(time.perf_counter() - start)
    result["add"], result["search"], result["stored"] = summary(adds), summary(searches), stored
    adds_live, searches_live = [], []
    for i, text in enumerate(probe_texts[:live]):
        start = time.perf_counter()
        mem.add(text + " again", at=T0 + 7200 + i)
        adds_live.append(time.perf_counter() - start)
    for i, text in enumerate(query_texts[:live]):
        start = time.perf_counter()
        mem.search(text, k=5, at=T0 + 9000 + i)
        searches_live.append(time.perf_counter() - start)
    result["add_with_embedding"] = summary(adds_live)
    result["search_with_embedding"] = summary(searches_live)
    mem.forget()
    return result


def run_mem0(size, folder, encode, probe_texts, probe_keys, query_texts, query_keys, live):
    """mem0 2.x, offline: qdrant local store, SQLite history, a cached-vector embedder."""
    import hashlib
    import uuid
    from datetime import datetime, timezone

    dim = probe_keys.shape[1]
    memory, cache = offline_mem0(folder, dim, encode)
    texts, keys = background(size, dim, seed=size)
    start = time.perf_counter()
    now = datetime.now(timezone.utc).isoformat()
    for lo in range(0, size, 2000):
        chunk = texts[lo : lo + 2000]
        payloads = [
            {
                "user_id": USER,
                "data": t,
                "hash": hashlib.md5(t.encode()).hexdigest(),
                "created_at": now,
                "updated_at": now,
            }
            for t in chunk
        ]
        memory.vector_store.insert(
            vectors=keys[lo : lo + 2000].tolist(),
            payloads=payloads,
            ids=[str(uuid.uuid4()) for _ in chunk],
        )
    build = time.perf_counter() - start
    del texts, keys
    cache.update({t: k.tolist() for t, k in zip(probe_texts, probe_keys)})
    cache.update({t: k.tolist() for t, k in zip(query_texts, query_keys)})
    adds, searches = [], []
    for text in probe_texts:
        start = time.perf_counter()
        memory.add(text, user_id=USER, infer=False)
        adds.append(time.perf_counter() - start)
    for text in query_texts:
        start = time.perf_counter()
        memory.search(text, filters={"user_id": USER}, top_k=5)
        searches.append(time.perf_counter() - start)
    result = {"size": size, "build_s": build, "add": summary(adds), "search": summary(searches)}
    cache.clear()
    adds_live, searches_live = [], []
    for text in probe_texts[:live]:
        start = time.perf_counter()
        memory.add(text + " again", user_id=USER, infer=False)
        adds_live.append(time.perf_counter() - start)
    for text in query_texts[:live]:
        start = time.perf_counter()
        memory.search(text, filters={"user_id": USER}, top_k=5)
        searches_live.append(time.perf_counter() - start)
    result["add_with_embedding"] = summary(adds_live)
    result["search_with_embedding"] = summary(searches_live)
    memory.vector_store.client.close()
    return result


def run(sizes, mem0_sizes, probes, live, encoder, folder, progress=print) -> dict:
    from torchmem.personal.encoders import make_encoder

    torch.set_num_threads(1)
    enc = make_encoder(encoder)
    probe_texts, query_texts = probe_messages(probes, 0), queries(probes, 1)
    start = time.perf_counter()
    probe_keys = enc.encode(probe_texts)
    query_keys = enc.encode(query_texts)
    singles = []
    for text in query_texts[:live]:
        t = time.perf_counter()
        enc.encode([text])
        singles.append(time.perf_counter() - t)
    progress(f"encoded {2 * probes} probe texts in {time.perf_counter() - start:.1f} s")
    report = {
        "encoder": encoder,
        "probes": probes,
        "live_probes": live,
        "embedding_single": summary(singles),
        "torchmem": [],
        "mem0": [],
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "folder": str(folder),
    }
    for size in sizes:
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            row = run_torchmem(
                size, scratch, encoder, probe_texts, probe_keys, query_texts, query_keys, live
            )
        report["torchmem"].append(row)
        progress(
            f"torchmem N={size}: add p50 {row['add']['p50_ms']:.2f} ms, search p95 "
            f"{row['search']['p95_ms']:.2f} ms, cold start {row['cold_start_s']:.2f} s"
        )
    for size in mem0_sizes:
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            row = run_mem0(
                size, scratch, enc.encode, probe_texts, probe_keys, query_texts, query_keys, live
            )
        report["mem0"].append(row)
        progress(
            f"mem0 N={size}: add p50 {row['add']['p50_ms']:.2f} ms, search p95 "
            f"{row['search']['p95_ms']:.2f} ms"
        )
    return report


def format_report(report: dict) -> str:
    lines = [
        f"Personal memory latency, {report['date']}, torch {report['torch']}, one thread, "
        f"encoder {report['encoder']} (single-text embedding p50 "
        f"{report['embedding_single']['p50_ms']:.1f} ms). {report['probes']} timed calls per "
        f"cell without embedding, {report['live_probes']} with. Milliseconds; p50 / p95.",
        "",
        "| system | N | add, no embedding | search k=5, no embedding | add with embedding "
        "| search with embedding | cold start s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    mem0 = {row["size"]: row for row in report["mem0"]}
    for name, rows in (("torchmem", report["torchmem"]), ("mem0 (infer=False)", report["mem0"])):
        for row in rows:
            cells = [
                f"{row[k]['p50_ms']:.2f} / {row[k]['p95_ms']:.2f}"
                for k in ("add", "search", "add_with_embedding", "search_with_embedding")
            ]
            cold = f"{row['cold_start_s']:.2f}" if "cold_start_s" in row else ""
            lines.append(f"| {name} | {row['size']:,} | " + " | ".join(cells) + f" | {cold} |")
    ratios = []
    for row in report["torchmem"]:
        other = mem0.get(row["size"])
        if other:

            def ratio(kind: str, q: str, other=other, row=row) -> str:
                return f"{other[kind][q] / row[kind][q]:.1f}x"

            ratios.append(
                f"- N={row['size']:,}: mem0 time / torchmem time: add p50 "
                f"{ratio('add', 'p50_ms')}, search p50 {ratio('search', 'p50_ms')}, search p95 "
                f"{ratio('search', 'p95_ms')}; with embedding: add p50 "
                f"{ratio('add_with_embedding', 'p50_ms')}, search p50 "
                f"{ratio('search_with_embedding', 'p50_ms')}"
            )
    if ratios:
        lines += ["", "Ratios (measured in the same run):", *ratios]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m torchmem.bench.personal_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--mem0-sizes",
        type=int,
        nargs="*",
        default=[],
        help="sizes to run mem0 at (needs pip install mem0ai)",
    )
    parser.add_argument("--probes", type=int, default=200, help="timed calls per cell")
    parser.add_argument("--live", type=int, default=30, help="timed calls with embedding")
    parser.add_argument("--encoder", default="minilm", help="minilm (default) or hash")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the scratch stores go (default the system temp folder)",
    )
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)
    report = run(args.sizes, args.mem0_sizes, args.probes, args.live, args.encoder, args.dir)
    write_report(report, format_report(report), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
