"""Quality of the personal memory on the generated preference-drift data set, beside mem0.

    python -m torchmem.bench.personal_quality --encoder minilm --mem0 \
        --out docs/bench/personal-quality

Every message of :func:`torchmem.personal.drift.generate_drift` goes through ``add`` at
its own time; then every query is searched (top 3, no recall reinforcement) at its time.

* ``current_first``: share of queries whose first hit states the current value;
* ``stale_in_top3``: share of queries about a changed subject with a replaced value in
  the top 3;
* ``noise_admitted``: share of noise messages stored; ``signal_rejected``: share of
  statements not stored (held in short-term memory counts as not stored);
* ``slots_per_fact``: distinct memories the statements went to, per distinct (user,
  subject, value) stated (1.0: every repeat reinforced its fact's one memory);
* ``misses`` (torchmem): why the queries whose first hit is not the current value missed:
  ``no_hit``; ``replaced_first`` (a replaced value came first); ``current_not_active``
  (no active memory states the current value: superseded by another statement, or never
  stored); ``other_first`` (something else came first although an active memory states
  the current value).

mem0 (``mem0ai``, ``infer=False``, the same MiniLM vectors) stores every message as is
and ranks by cosine similarity.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from torchmem.personal.drift import generate_drift, mentions

from ._common import offline_mem0, write_report


def gate_training_texts() -> set[str]:
    """The write gate's generated messages (both splits), normalised for comparison."""
    from torchmem.personal.gate_training import PER_TEMPLATE
    from torchmem.personal.messages import generate_messages

    return {
        _plain(r["text"]) for s in ("train", "test") for r in generate_messages(s, 0, PER_TEMPLATE)
    }


def _plain(text: str) -> str:
    return text.lower().strip(" .!?")


def score(messages, queries, stored_ids, hits) -> dict:
    """Metrics from ``stored_ids`` (memory id or None per message) and ``hits`` (texts of
    the top hits per query)."""
    noise = [m for m in messages if m["kind"] == "noise"]
    seen = gate_training_texts()
    unseen_noise = [m for m in noise if _plain(m["text"]) not in seen]
    signal = [m for m in messages if m["kind"] == "signal"]
    stored = dict(zip(map(id, messages), stored_ids))
    facts = {(m["user"], m["subject"], m["value"]) for m in signal}
    slots = {(m["user"], stored[id(m)]) for m in signal if stored[id(m)] is not None}
    changed = [q for q, _ in zip(queries, hits) if q["stale"]]
    return {
        "current_first": sum(
            bool(h) and mentions(h[0], q["current"]) for q, h in zip(queries, hits)
        )
        / len(queries),
        "stale_in_top3": sum(
            any(mentions(t, s) for t in h[:3] for s in q["stale"])
            for q, h in zip(queries, hits)
            if q["stale"]
        )
        / max(len(changed), 1),
        "noise_admitted": sum(stored[id(m)] is not None for m in noise) / max(len(noise), 1),
        # Common chit-chat ("hi", "ok") is also in the gate's generated data: the rate on
        # the noise messages that are not.
        "unseen_noise_admitted": sum(stored[id(m)] is not None for m in unseen_noise)
        / max(len(unseen_noise), 1),
        "signal_rejected": sum(stored[id(m)] is None for m in signal) / max(len(signal), 1),
        "slots_per_fact": len(slots) / max(len(facts), 1),
        "messages": len(messages),
        "noise": len(noise),
        "signal": len(signal),
        "facts": len(facts),
        "queries": len(queries),
        "changed_queries": len(changed),
    }


def run_torchmem(messages, queries, encoder, keys, folder, config=None) -> dict:
    from torchmem.personal import PersonalMemory

    memories: dict[str, PersonalMemory] = {}
    stored_ids, actions = [], {}
    start = time.process_time()
    for message, key in zip(messages, keys["messages"]):
        mem = memories.get(message["user"])
        if mem is None:
            mem = memories[message["user"]] = PersonalMemory(
                folder, message["user"], encoder, config
            )
        result = mem.add_encoded(message["text"], key, at=message["t"])
        stored_ids.append(result.id if result.stored else None)
        actions[result.action] = actions.get(result.action, 0) + 1
    hits, misses = [], {}
    for query, key in zip(queries, keys["queries"]):
        mem = memories[query["user"]]
        found = [hit.text for hit in mem.search_encoded(key, k=3, at=query["t"], reinforce=False)]
        hits.append(found)
        if not (found and mentions(found[0], query["current"])):
            why = _miss(query, found, mem.list(at=query["t"], include_inactive=True))
            misses[why] = misses.get(why, 0) + 1
    result = score(messages, queries, stored_ids, hits)
    result["actions"] = actions
    result["misses"] = misses
    result["cpu_s"] = time.process_time() - start
    for mem in memories.values():
        mem.close()
    return result


def _miss(query: dict, found: list[str], records: list[dict]) -> str:
    """Why a query's first hit is not its current value (see the module docstring)."""
    if not found:
        return "no_hit"
    if any(mentions(found[0], value) for value in query["stale"]):
        return "replaced_first"
    if not any(r["status"] == "active" and mentions(r["text"], query["current"]) for r in records):
        return "current_not_active"
    return "other_first"


def run_mem0(messages, queries, keys, folder) -> dict:
    def unexpected(texts):
        raise KeyError(f"no cached vector for {texts!r}")

    memory, cache = offline_mem0(folder, keys["messages"].shape[1], unexpected)
    cache.update({m["text"]: k.tolist() for m, k in zip(messages, keys["messages"])})
    cache.update({q["text"]: k.tolist() for q, k in zip(queries, keys["queries"])})
    start = time.process_time()
    stored_ids = []
    for message in messages:
        out = memory.add(message["text"], user_id=message["user"], infer=False)
        results = out.get("results", []) if isinstance(out, dict) else []
        stored_ids.append(results[0]["id"] if results else None)
    hits = []
    for query in queries:
        found = memory.search(query["text"], filters={"user_id": query["user"]}, top_k=3)
        hits.append([r["memory"] for r in found.get("results", [])])
    result = score(messages, queries, stored_ids, hits)
    result["cpu_s"] = time.process_time() - start
    memory.vector_store.client.close()
    return result


def run(encoder: str, users: int, seed: int, with_mem0: bool, progress=print) -> dict:
    from torchmem.personal.encoders import make_encoder

    torch.set_num_threads(1)
    messages, queries = generate_drift(users=users, seed=seed)
    enc = make_encoder(encoder)
    start = time.perf_counter()
    keys = {
        "messages": enc.encode([m["text"] for m in messages]),
        "queries": enc.encode([q["text"] for q in queries]),
    }
    progress(
        f"encoded {len(messages)} messages and {len(queries)} queries in "
        f"{time.perf_counter() - start:.1f} s"
    )
    report = {"encoder": encoder, "users": users, "seed": seed, "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as folder:
        report["torchmem"] = run_torchmem(messages, queries, encoder, keys, Path(folder) / "tm")
        progress(f"torchmem: {json.dumps(report['torchmem'])}")
        if with_mem0:
            report["mem0"] = run_mem0(messages, queries, keys, Path(folder) / "mem0")
            progress(f"mem0: {json.dumps(report['mem0'])}")
    return report


GOALS = {
    "current_first": (">=", 0.90),
    "stale_in_top3": ("<=", 0.10),
    "noise_admitted": ("<=", 0.05),
    "signal_rejected": ("<=", 0.02),
}


def format_report(report: dict) -> str:
    t = report["torchmem"]
    lines = [
        f"Preference-drift quality, {report['date']}: {report['users']} users, seed "
        f"{report['seed']}, encoder {report['encoder']}; {t['messages']} messages ({t['signal']} "
        f"statements of {t['facts']} facts, {t['noise']} noise), {t['queries']} queries "
        f"({t['changed_queries']} about changed preferences).",
        "",
        "| metric | goal | torchmem | mem0 (infer=False) |",
        "|---|---|---:|---:|",
    ]
    for metric in (
        "current_first",
        "stale_in_top3",
        "noise_admitted",
        "unseen_noise_admitted",
        "signal_rejected",
        "slots_per_fact",
    ):
        goal = " ".join(str(x) for x in GOALS.get(metric, ("", "")))
        other = report.get("mem0", {}).get(metric)
        lines.append(
            f"| {metric} | {goal} | {t[metric]:.3f} | {'' if other is None else f'{other:.3f}'} |"
        )
    lines += [
        "",
        f"torchmem actions: {json.dumps(t['actions'])}",
        "",
        f"torchmem misses of current_first: {json.dumps(t['misses'])}",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m torchmem.bench.personal_quality", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mem0", action="store_true", help="also run mem0 (pip install mem0ai)")
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)
    report = run(args.encoder, args.users, args.seed, args.mem0)
    write_report(report, format_report(report), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
