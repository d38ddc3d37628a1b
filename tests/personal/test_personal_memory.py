"""PersonalMemory's behaviour: the seed's expected output, consolidation, supersession,
short-term promotion, decay, feedback, the verbs, export/import and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from torchmem.personal import PersonalMemory, PersonalMemoryConfig, StoreError

T0 = 1_700_000_000.0
DAY = 86400.0


@pytest.fixture
def mem(tmp_path):
    memory = PersonalMemory(tmp_path, "alice", config={"fsync": False})
    yield memory
    memory.close()


def test_the_seeds_expected_behaviour(mem):
    """Learns "I like visuals", ignores "Hi", forgets an unused memory, retrieves the
    right preference."""
    hi = mem.add("Hi", at=T0)
    assert not hi.stored and hi.action == "ignored" and hi.importance < 0.5
    visuals = mem.add("I like visuals", at=T0 + 1)
    assert visuals.stored and visuals.action == "created"
    again = mem.add("I like visuals!", at=T0 + 2 * DAY)
    assert again.stored and again.action == "reinforced" and again.id == visuals.id
    unused = mem.add("I work as a carpenter", at=T0 + 3).id
    # 150 days on: the preference was used (recalled) along the way, the job never was.
    for day in range(10, 150, 10):
        assert mem.search("visuals", k=1, at=T0 + day * DAY)[0].id == visuals.id
    hits = mem.search("what visuals do I like", at=T0 + 150 * DAY)
    assert [h.id for h in hits] == [visuals.id]
    assert hits[0].score == pytest.approx(hits[0].similarity * hits[0].strength ** 0.5)
    # 0.5 ** (150 / 30) = 0.03 < retrieve_threshold 0.05
    assert mem.get(unused, at=T0 + 150 * DAY)["current_strength"] == pytest.approx(0.5**5, rel=1e-4)
    assert mem.search("carpenter", at=T0 + 150 * DAY) == []  # faded below the threshold
    assert mem.search("carpenter", at=T0 + 10 * DAY)[0].id == unused  # it was retrievable
    assert mem.forget_stale(at=T0 + 300 * DAY) == [unused]
    assert mem.list(at=T0 + 300 * DAY)[0]["id"] == visuals.id
    assert [e["event"] for e in mem.history(unused)][-1] == "deleted"


def test_recurrence_reinforces_instead_of_duplicating(mem):
    first = mem.add("My favourite drink is green tea", at=T0)
    mem.search("drink", at=T0 + 10 * DAY, reinforce=False)
    before = mem.get(first.id, at=T0 + 10 * DAY)
    again = mem.add("my favourite drink is green tea.", at=T0 + 10 * DAY)
    after = mem.get(first.id, at=T0 + 10 * DAY)
    assert again.action == "reinforced" and again.id == first.id
    assert len(mem.list(at=T0 + 10 * DAY)) == 1
    assert after["count"] == 2 and after["current_strength"] == 1.0
    assert before["current_strength"] < 1.0
    assert after["stability"] == pytest.approx(mem.config.stability_growth)
    # Stability slows decay: after another 30 days it keeps more than half its strength.
    assert mem.get(first.id, at=T0 + 40 * DAY)["current_strength"] == pytest.approx(
        0.5 ** (1 / mem.config.stability_growth), rel=1e-5
    )


def test_a_new_preference_on_the_same_subject_supersedes_the_old(mem):
    tea = mem.add("My favourite drink is tea", at=T0).id
    coffee = mem.add("My favourite drink is coffee", at=T0 + DAY)
    assert coffee.action == "superseded" and coffee.superseded == (tea,)
    hits = mem.search("favourite drink", at=T0 + 2 * DAY)
    assert [h.id for h in hits] == [coffee.id]  # the stale one is never retrieved
    assert mem.get(tea)["status"] == "superseded"
    assert mem.get(tea)["superseded_by"] == [coffee.id]
    assert mem.get(coffee.id)["supersedes"] == [tea]
    assert [e["event"] for e in mem.history(tea)] == ["created", "superseded"]
    assert len(mem.list(include_inactive=True)) == 2 and len(mem.list()) == 1
    # An unrelated fact supersedes nothing.
    assert mem.add("I live in Lisbon", at=T0 + 3 * DAY).superseded == ()


def test_short_term_memory_promotes_a_recurring_candidate(tmp_path):
    config = PersonalMemoryConfig(store_threshold=0.99, stm_threshold=0.0, fsync=False)
    mem = PersonalMemory(tmp_path, "bob", config=config)
    first = mem.add("I go swimming on Fridays", at=T0)
    assert (first.stored, first.action) == (False, "short_term")
    assert mem.short_term()[-1]["text"] == "I go swimming on Fridays"
    mem.add("what time is it", at=T0 + 1)
    second = mem.add("I go swimming on fridays", at=T0 + DAY)
    assert second.stored and second.action == "promoted"
    record = mem.get(second.id)
    assert record["count"] == 2 and record["text"] == "I go swimming on fridays"
    # The pattern left short-term memory; the unrelated message stayed.
    assert [item["text"] for item in mem.short_term()] == ["what time is it"]
    # Short-term memory is bounded.
    for i in range(mem.config.stm_size + 5):
        mem.add(f"message {i}", at=T0 + 2 * DAY + i)
    assert len(mem.short_term()) == mem.config.stm_size
    mem.close()


def test_repeated_negative_feedback_lowers_the_chance_of_storing_that_kind(tmp_path):
    mem = PersonalMemory(tmp_path, "carol", config={"fsync": False})
    kind = ["I like sunny weather", "I love rainy weather", "I enjoy cold weather"]
    other = "I prefer short answers"
    before = [mem.importance(text) for text in kind]
    other_before = mem.importance(other)
    assert all(p >= mem.config.store_threshold for p in before)  # stored out of the box
    for round_ in range(4):
        result = mem.add(kind[round_ % 2], at=T0 + round_)
        if result.stored:
            mem.feedback(result.id, -1.0, at=T0 + round_ + 0.5)
    after = [mem.importance(text) for text in kind]
    assert all(a < b for a, b in zip(after, before))
    assert not mem.add(kind[2], at=T0 + 10).stored  # never penalised itself, not stored now
    assert mem.importance(other) > mem.config.store_threshold  # other content unaffected
    assert abs(mem.importance(other) - other_before) < abs(after[2] - before[2])
    # The gate change is part of the user's store.
    mem.close()
    reopened = PersonalMemory(tmp_path, "carol")
    assert reopened.importance(kind[2]) == pytest.approx(after[2])
    assert "feedback" in [e["event"] for e in reopened.history(1)]


def test_feedback_moves_strength(mem):
    memory_id = mem.add("I prefer step-by-step explanations", at=T0).id
    mem.feedback(memory_id, -1.0, at=T0)
    assert mem.get(memory_id, at=T0)["current_strength"] == pytest.approx(0.5)
    mem.feedback("step-by-step explanations", 1.0, at=T0)  # by query: its best match
    assert mem.get(memory_id, at=T0)["current_strength"] == pytest.approx(0.8)
    assert mem.feedback("completely unrelated zebra", 1.0, at=T0) == []
    with pytest.raises(ValueError, match=r"reward must be a number in \[-1, 1\]"):
        mem.feedback(memory_id, 3)
    with pytest.raises(KeyError, match="no memory with id 99"):
        mem.feedback(99, 1.0)


def test_verbs_get_list_update_delete_history(mem):
    a = mem.add("I speak Spanish at home", at=T0).id
    b = mem.add("I'm allergic to peanuts", at=T0 + 1).id
    assert {r["id"] for r in mem.list()} == {a, b}
    updated = mem.update(a, "I speak Portuguese at home", at=T0 + 2)
    assert updated["text"] == "I speak Portuguese at home"
    assert mem.search("Portuguese", at=T0 + 3)[0].id == a
    mem.delete(b, at=T0 + 4)
    assert mem.search("peanuts", at=T0 + 5) == []
    on_disk = b"".join(p.read_bytes() for p in mem.store.path.iterdir() if p.is_file())
    assert b"peanuts" not in on_disk  # the words left the disk at once
    with pytest.raises(KeyError, match=f"no memory with id {b}"):
        mem.delete(b)
    assert [e["event"] for e in mem.history(a)] == ["created", "updated"]
    assert mem.history(a)[0]["text"] == "I speak Spanish at home"  # as it was created
    assert [e["event"] for e in mem.history(b)] == ["created", "deleted"]
    with pytest.raises(KeyError, match=f"no memory with id {b}"):
        mem.get(b)
    assert [e["event"] for e in mem.history(b)] == ["created", "deleted"]
    assert "peanuts" not in (mem.store.path / "snapshot-000001.json").read_text()
    stats = mem.stats(at=T0 + 6)
    assert stats["active"] == 1 and stats["deleted"] == 1 and stats["encoder"] == "hash"


def test_build_prompt_respects_the_token_budget(mem):
    mem.add("I prefer visual explanations with diagrams", at=T0)
    mem.add("I like short answers in bullet points", at=T0)
    block = mem.build_prompt("explanations with diagrams", k=5, token_budget=200, at=T0)
    lines = block.splitlines()
    assert lines[0].startswith("What you know about the user")
    assert lines[1] == "- I prefer visual explanations with diagrams"
    small = mem.build_prompt("explanations with diagrams", k=5, token_budget=19, at=T0)
    assert small.splitlines()[1:] == ["- I prefer visual explanations with diagrams"]
    assert mem.build_prompt("zebra quantum", at=T0) == ""


def test_export_import_round_trip(tmp_path):
    src = PersonalMemory(tmp_path / "a", "dan", config={"fsync": False})
    tea = src.add("My favourite drink is tea", at=T0).id
    src.add("My favourite drink is coffee", at=T0 + DAY)
    src.add("I live in Oslo", at=T0 + 2 * DAY)
    src.add("I live in Oslo", at=T0 + 3 * DAY)
    path = tmp_path / "dan.jsonl"
    assert src.export(path) == 3
    header = json.loads(path.read_text().splitlines()[0])
    assert header["encoder"] == "hash" and header["format"] == "torchmem-personal-memory-export"
    dst = PersonalMemory(tmp_path / "b", "dan", config={"fsync": False})
    assert dst.import_(path) == 3
    at = T0 + 4 * DAY

    def strip(records):
        return sorted(
            (r["text"], r["status"], r["count"], round(r["current_strength"], 5)) for r in records
        )

    assert strip(dst.list(at=at, include_inactive=True)) == strip(
        src.list(at=at, include_inactive=True)
    )
    old = [r for r in dst.list(include_inactive=True) if r["status"] == "superseded"][0]
    assert dst.get(old["superseded_by"][0])["text"] == "My favourite drink is coffee"
    assert src.get(tea)["status"] == "superseded"


@pytest.mark.parametrize(
    "text, error, match",
    [
        ("", ValueError, "text is empty"),
        ("   \n", ValueError, "text is empty"),
        ("x" * 9000, ValueError, "9000 characters; the limit is 8000"),
        (b"\xff\xfe bad", ValueError, "not valid UTF-8"),
        ("bad \udcff surrogate", ValueError, "not valid UTF-8"),
        (42, TypeError, "text must be a string, got int"),
        (None, TypeError, "text must be a string, got NoneType"),
    ],
)
def test_bad_text_raises_and_writes_nothing(mem, text, error, match):
    mem.add("I like tea", at=T0)
    log = mem.store.path / "log-000000.jsonl"
    before = log.read_bytes()
    with pytest.raises(error, match=match):
        mem.add(text, at=T0)
    assert log.read_bytes() == before


def test_other_bad_input(tmp_path, mem):
    for user in ("../x", "a/b", "", ".hidden", "x" * 200, "a..b"):
        with pytest.raises(ValueError, match="invalid user_id"):
            PersonalMemory(tmp_path, user)
    with pytest.raises(TypeError, match="user_id must be a string"):
        PersonalMemory(tmp_path, 7)
    assert not (tmp_path.parent / "x").exists()
    with pytest.raises(ValueError, match="at must be a finite number"):
        mem.add("I like tea", at=float("nan"))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        mem.search("tea", k=0)
    with pytest.raises(ValueError, match="unknown PersonalMemory option"):
        PersonalMemory(tmp_path, "eve", config={"half_life": 3})
    with pytest.raises(ValueError, match="store_threshold must be a number in"):
        PersonalMemoryConfig(store_threshold=2)
    with pytest.raises(TypeError, match="memory id must be an integer"):
        mem.get(1.5)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "something else"}\n')
    with pytest.raises(ValueError, match="not a torchmem memory export"):
        mem.import_(bad)
    header = json.dumps(
        {"format": "torchmem-personal-memory-export", "encoder": "hash", "dim": 384}
    )
    bad.write_text(header + '\n{"id": 1, "text": ""}\n')
    with pytest.raises(ValueError, match="line 2: not a memory record"):
        mem.import_(bad)
    assert mem.list() == []  # nothing imported


def test_a_store_refuses_another_encoder(tmp_path):
    PersonalMemory(tmp_path, "fay").close()

    class Other:
        name, dim = "other", 384

        def encode(self, texts):
            return torch.zeros(len(texts), 384)

    with pytest.raises(StoreError, match="made with encoder 'hash'"):
        PersonalMemory(tmp_path, "fay", encoder=Other())


def test_forget_user_deletes_everything(tmp_path):
    mem = PersonalMemory(tmp_path, "gus", config={"fsync": False})
    mem.add("I live in Cairo", at=T0)
    other = PersonalMemory(tmp_path, "hal", config={"fsync": False})
    other.add("I live in Lima", at=T0)
    mem.forget()
    assert not (tmp_path / "gus").exists()
    with pytest.raises(RuntimeError, match="closed"):
        mem.search("Cairo")
    assert other.search("Lima", at=T0)[0].text == "I live in Lima"
    assert PersonalMemory(tmp_path, "gus").list() == []


def test_add_many_is_one_snapshot_all_or_nothing(tmp_path, monkeypatch):
    mem = PersonalMemory(tmp_path, "ivy", config={"fsync": False})
    ids = mem.add_many(["I like tea", "I live in Oslo", "I speak French"], at=T0)
    assert ids == [1, 2, 3] and mem.store.generation == 1
    assert [h.id for h in mem.search("Oslo", at=T0)] == [2]
    assert mem.add("My cat is called Tom", at=T0).id == 4
    with pytest.raises(ValueError, match="text is empty"):
        mem.add_many(["fine", ""])
    keys = mem.encoder.encode(["fine", "also fine"])
    with pytest.raises(ValueError, match="text is empty"):
        mem.add_many_encoded(["fine", ""], keys)
    with pytest.raises(TypeError):
        mem.add_many_encoded(["fine", 7], keys)
    assert len(mem.list(at=T0)) == 4  # nothing written by the refused calls
    # A failure while writing the snapshot leaves the store as it was.
    import torchmem.personal.store as store_module

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "atomic_write", broken)
    with pytest.raises(OSError, match="disk full"):
        mem.add_many(["I like chess"], at=T0)
    monkeypatch.undo()
    assert [r["text"] for r in mem.list(at=T0)].count("I like chess") == 0
    assert len(PersonalMemory(tmp_path, "ivy").list(at=T0)) == 4


def test_a_newer_memory_on_the_same_subject_shadows_an_older_hit(tmp_path):
    """Two hits of one query that are similar to each other: only the newer is returned."""

    class Toy:  # a 3-d encoder whose vectors are chosen by hand
        name, dim = "toy", 3
        vectors = {
            "old drink": [1.0, 0.2, 0.0],
            "new drink": [0.6, 1.0, 0.0],
            "city": [0.0, 0.0, 1.0],
            "drink?": [1.0, 1.0, 0.3],
        }

        def encode(self, texts):
            rows = torch.tensor([self.vectors[t] for t in texts])
            return torch.nn.functional.normalize(rows, dim=1)

    config = {"store_threshold": 0.0, "stm_threshold": 0.0, "subject_similarity": 0.99,
              "repeat_similarity": 0.999, "fsync": False}  # fmt: skip
    mem = PersonalMemory(tmp_path, "u", encoder=Toy(), config={**config, "shadow_similarity": 0.5})
    for i, text in enumerate(["old drink", "new drink", "city"]):
        mem.add(text, at=T0 + i)
    assert [h.text for h in mem.search("drink?", k=3, at=T0 + 9)] == ["new drink", "city"]
    off = PersonalMemory(tmp_path, "v", encoder=Toy(), config={**config, "shadow_similarity": 1.0})
    for i, text in enumerate(["old drink", "new drink", "city"]):
        off.add(text, at=T0 + i)
    assert [h.text for h in off.search("drink?", k=3, at=T0 + 9)] == [
        "new drink",
        "old drink",
        "city",
    ]


def test_stale_memories_are_removed_at_the_next_automatic_snapshot(tmp_path):
    mem = PersonalMemory(tmp_path, "kim", config={"fsync": False, "snapshot_every": 3})
    old = mem.add("I work as a carpenter", at=T0).id
    mem.add("I live in Oslo", at=T0 + 200 * DAY)  # 200 days on: the first fell below 0.01
    assert mem.get(old)["status"] == "active"
    mem.add("I speak Dutch at home", at=T0 + 200 * DAY + 1)  # third event: a snapshot
    assert mem.store.generation == 1
    with pytest.raises(KeyError, match=f"no memory with id {old}"):
        mem.get(old)
    assert mem.history(old)[-1] == {
        "event": "deleted",
        "t": T0 + 200 * DAY + 1,
        "reason": "decayed",
    }


def test_the_bfloat16_scan_gives_the_float32_scans_results(tmp_path):
    """Add and search stream a bfloat16 copy of the keys and rescore what its error bound
    leaves open: every decision and every hit equals the plain float32 scan's, through
    reinforcement, supersession, deletion, correction and a reload."""
    stores = {
        dtype: PersonalMemory(
            tmp_path / dtype, "u", encoder="hash", config={"fsync": False, "scan_dtype": dtype}
        )
        for dtype in ("bfloat16", "float32")
    }
    assert stores["bfloat16"].table.scan_keys.dtype == torch.bfloat16
    assert stores["float32"].table.scan_keys is stores["float32"].table.keys
    dim = stores["float32"].encoder.dim
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(12, dim, generator=g)
    noise = [0.02, 0.5, 0.7, 3.0]  # a repeat, the supersede band, a new memory

    def unit(v):
        return torch.nn.functional.normalize(v, dim=0)

    def same(results):
        a, b = results["bfloat16"], results["float32"]
        if isinstance(a, list):
            assert [h.id for h in a] == [h.id for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-6)
        else:
            assert (a.action, a.id, a.superseded) == (b.action, b.id, b.superseded)
            assert a.similarity == pytest.approx(b.similarity, abs=1e-6)
        return b

    actions = set()
    for i in range(300):
        centre = centres[int(torch.randint(0, 12, (1,), generator=g))]
        scale = noise[int(torch.randint(0, 4, (1,), generator=g))]
        key = unit(centre + scale * torch.randn(dim, generator=g) * centre.norm() / dim**0.5)
        result = same({d: m.add_encoded(f"fact {i}", key, at=T0 + i) for d, m in stores.items()})
        actions.add(result.action)
        if i % 7 == 0:
            query = unit(centres[i % 12] + torch.randn(dim, generator=g))
            k = 1 + i % 5
            same({d: m.search_encoded(query, k=k, at=T0 + i) for d, m in stores.items()})
    assert {"created", "reinforced", "superseded"} <= actions
    live = [r["id"] for r in stores["float32"].list(at=T0 + 300)]
    for m in stores.values():
        m.delete(live[0], at=T0 + 301)
        m.update(live[1], "corrected", at=T0 + 302)
        m.close()
    stores = {d: PersonalMemory(tmp_path / d, "u", config={"scan_dtype": d}) for d in stores}
    for j in range(12):
        query = unit(centres[j] + 0.3 * torch.randn(dim, generator=g))
        same(
            {
                d: m.search_encoded(query, k=5, at=T0 + 400, reinforce=False)
                for d, m in stores.items()
            }
        )
    for m in stores.values():
        m.close()
