"""The preference-drift data set, the quality score, and the benchmarks on tiny sizes."""

from __future__ import annotations

import pytest
import torch

from torchmem.bench.personal_quality import _miss, format_report, run_torchmem, score
from torchmem.personal import PersonalMemory
from torchmem.personal.drift import SUBJECTS, generate_drift, mentions
from torchmem.personal.encoders import make_encoder


def test_drift_data_set_is_well_formed():
    messages, queries = generate_drift(users=5, seed=3)
    assert (messages, queries) == generate_drift(users=5, seed=3)
    for values, templates, _ in SUBJECTS.values():
        assert not any(a != b and a.lower() in b.lower() for a in values for b in values)
        assert all("{v}" in template for template in templates)
    for user in {m["user"] for m in messages}:
        times = [m["t"] for m in messages if m["user"] == user]
        assert times == sorted(times)
        last = max(times)
        assert all(q["t"] > last for q in queries if q["user"] == user)
    for q in queries:
        assert q["current"] not in q["stale"]
        said = [m for m in messages if m["user"] == q["user"] and m["subject"] == q["subject"]]
        assert said[-1]["value"] == q["current"]  # the last statement is the current value
    assert {m["kind"] for m in messages} == {"signal", "noise"}
    assert any(q["stale"] for q in queries)


def test_score_by_hand():
    messages = [
        {"user": "u", "kind": "signal", "subject": "drink", "value": "tea", "text": "I like tea"},
        {"user": "u", "kind": "signal", "subject": "drink", "value": "tea", "text": "tea again"},
        {"user": "u", "kind": "noise", "subject": "", "value": "", "text": "hi"},
        {"user": "u", "kind": "noise", "subject": "", "value": "", "text": "zebra crossing?"},
        {"user": "u", "kind": "signal", "subject": "drink", "value": "cola", "text": "cola now"},
    ]
    queries = [
        {"user": "u", "subject": "drink", "current": "cola", "stale": ["tea"]},
        {"user": "u", "subject": "drink", "current": "cola", "stale": ["tea"]},
    ]
    result = score(messages, queries, [1, 1, None, 7, None], [["cola now"], ["I like tea", "x"]])
    assert result["current_first"] == 0.5 and result["stale_in_top3"] == 0.5
    assert result["noise_admitted"] == 0.5 and result["signal_rejected"] == pytest.approx(1 / 3)
    assert result["unseen_noise_admitted"] == 1.0  # "hi" is in the gate's data, "zebra" not
    assert result["slots_per_fact"] == 0.5  # one slot for two facts
    assert mentions("I LIKE TEA", "tea")


def test_quality_run_on_a_small_data_set(tmp_path):
    messages, queries = generate_drift(users=3, seed=0)
    encoder = make_encoder("hash")
    keys = {
        "messages": encoder.encode([m["text"] for m in messages]),
        "queries": encoder.encode([q["text"] for q in queries]),
    }
    result = run_torchmem(messages, queries, "hash", keys, tmp_path)
    assert 0 <= result["current_first"] <= 1 and result["signal"] > 0
    assert sum(result["actions"].values()) == len(messages)
    # every query whose first hit is not the current value is counted once, with a reason
    missed = round((1 - result["current_first"]) * result["queries"])
    assert missed > 0 and sum(result["misses"].values()) == missed
    report = {"torchmem": result, "users": 3, "seed": 0, "encoder": "hash", "date": "today"}
    assert "| current_first | >= 0.9 |" in format_report(report)
    assert "torchmem misses of current_first" in format_report(report)


def test_misses_are_sorted_by_cause():
    query = {"current": "matcha", "stale": ["espresso"]}
    active = {"status": "active", "text": "I've switched to matcha now"}
    replaced = {"status": "superseded", "text": "I've switched to matcha now"}
    assert _miss(query, [], [active]) == "no_hit"
    assert _miss(query, ["I drink espresso"], [active]) == "replaced_first"
    assert _miss(query, ["I like jazz"], [replaced]) == "current_not_active"
    assert _miss(query, ["I like jazz"], [active, replaced]) == "other_first"


def test_encoded_verbs_check_their_vectors(tmp_path):
    mem = PersonalMemory(tmp_path, "u", config={"fsync": False})
    key = mem.encoder.encode(["I like tea"])[0]
    assert mem.add_encoded("I like tea", key, at=1.0).stored
    assert mem.search_encoded(key, k=1, at=2.0)[0].text == "I like tea"
    with pytest.raises(ValueError, match=r"key must be a float tensor of shape \(384,\)"):
        mem.add_encoded("I like tea", torch.zeros(3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        mem.search_encoded(torch.full((384,), float("nan")))
    with pytest.raises(TypeError, match="key must be a tensor"):
        mem.add_encoded("I like tea", [0.0] * 384)


def test_latency_benchmark_runs_at_a_tiny_size(tmp_path):
    from torchmem.bench.personal_bench import format_report, run

    report = run(
        [300], [], probes=5, live=2, encoder="hash", folder=tmp_path, progress=lambda s: None
    )
    row = report["torchmem"][0]
    assert row["size"] == 300 and row["add"]["n"] == 5 and row["search_with_embedding"]["n"] == 2
    assert row["add"]["p50_ms"] > 0 and row["cold_start_s"] > 0
    assert "| torchmem | 300 |" in format_report(report)
    assert list(tmp_path.iterdir()) == []  # scratch stores removed
