"""``torchmem memory ...``: every verb through the real entry point."""

from __future__ import annotations

import json

from torchmem.cli import main

T0 = "1700000000"


def run(capsys, tmp_path, *argv, user="alice"):
    status = main(["memory", "--store", str(tmp_path), "--user", user, "--at", T0, *argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_every_verb(tmp_path, capsys):
    status, out, _ = run(capsys, tmp_path, "add", "I prefer visual explanations")
    assert status == 0 and json.loads(out)["action"] == "created"
    assert json.loads(run(capsys, tmp_path, "add", "Hi")[1])["stored"] is False
    status, out, _ = run(capsys, tmp_path, "search", "visual explanations")
    assert status == 0 and "#1  I prefer visual explanations" in out
    hits = json.loads(run(capsys, tmp_path, "search", "visual", "--json")[1])
    assert hits[0]["id"] == 1 and set(hits[0]) >= {"score", "similarity", "strength"}
    out = run(capsys, tmp_path, "prompt", "visual explanations", "--budget", "50")[1]
    assert out.splitlines()[1] == "- I prefer visual explanations"
    assert json.loads(run(capsys, tmp_path, "feedback", "1", "0.5")[1]) == {"ids": [1]}
    assert json.loads(run(capsys, tmp_path, "get", "1")[1])["count"] == 1
    assert [r["id"] for r in json.loads(run(capsys, tmp_path, "list")[1])] == [1]
    updated = json.loads(run(capsys, tmp_path, "update", "1", "I prefer diagrams")[1])
    assert updated["text"] == "I prefer diagrams"
    events = [e["event"] for e in json.loads(run(capsys, tmp_path, "history", "1")[1])]
    assert events == ["created", "feedback", "updated"]
    assert json.loads(run(capsys, tmp_path, "stats")[1])["active"] == 1
    export = tmp_path / "alice.jsonl"
    assert json.loads(run(capsys, tmp_path, "export", str(export))[1])["exported"] == 1
    assert json.loads(run(capsys, tmp_path, "import", str(export), user="bob")[1]) == {
        "imported": 1
    }
    assert json.loads(run(capsys, tmp_path, "delete", "1")[1]) == {"deleted": 1}
    assert json.loads(run(capsys, tmp_path, "list")[1]) == []
    status, _, err = run(capsys, tmp_path, "forget")
    assert status == 2 and "add --yes" in err
    assert run(capsys, tmp_path, "forget", "--yes")[0] == 0
    assert not (tmp_path / "alice").exists() and (tmp_path / "bob").exists()


def test_errors_are_one_line(tmp_path, capsys):
    status, _, err = run(capsys, tmp_path, "add", "hi", user="../x")
    assert status == 2 and err.startswith("torchmem: error: invalid user_id '../x'")
    status, _, err = run(capsys, tmp_path, "get", "9")
    assert status == 2 and err.strip() == "torchmem: error: no memory with id 9"
    status, _, err = run(capsys, tmp_path, "add", "")
    assert status == 2 and "text is empty" in err
    status, _, err = run(capsys, tmp_path, "feedback", "1", "5")
    assert status == 2


def test_demo_passes_its_checks(capsys):
    assert main(["memory", "demo"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "FAILED" not in out
