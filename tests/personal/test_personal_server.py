"""The HTTP service: every route, per-user tokens that never cross users, clear 4xx errors
that write nothing, the OpenAPI schema."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from torchmem.personal.server import add_token, create_app, load_tokens  # noqa: E402

T0 = 1_700_000_000.0


@pytest.fixture
def service(tmp_path):
    token_file = tmp_path / "tokens.json"
    alice, bob = add_token(token_file, "alice"), add_token(token_file, "bob")
    assert alice not in token_file.read_text()  # only digests are stored
    client = TestClient(create_app(tmp_path / "store", load_tokens(token_file)))
    return client, {"Authorization": f"Bearer {alice}"}, {"Authorization": f"Bearer {bob}"}


def test_routes(service):
    client, alice, _ = service
    assert client.get("/health").json() == {"status": "ok"}
    r = client.post(
        "/memories", json={"text": "I prefer visual explanations", "at": T0}, headers=alice
    )
    assert r.status_code == 200 and r.json()["action"] == "created"
    memory_id = r.json()["id"]
    assert (
        client.post("/memories", json={"text": "Hi", "at": T0}, headers=alice).json()["stored"]
        is False
    )
    hits = client.post(
        "/search", json={"query": "visual explanations", "at": T0}, headers=alice
    ).json()
    assert hits[0]["id"] == memory_id and hits[0]["score"] > 0
    block = client.post(
        "/prompt", json={"query": "visual", "token_budget": 50, "at": T0}, headers=alice
    )
    assert "- I prefer visual explanations" in block.json()["prompt"]
    assert client.post(
        "/feedback", json={"target": memory_id, "reward": 0.5}, headers=alice
    ).json() == {"ids": [memory_id]}
    assert client.get(f"/memories/{memory_id}", headers=alice).json()["text"].startswith("I prefer")
    assert [m["id"] for m in client.get("/memories", headers=alice).json()] == [memory_id]
    patched = client.patch(
        f"/memories/{memory_id}", json={"text": "I prefer diagrams"}, headers=alice
    )
    assert patched.json()["text"] == "I prefer diagrams"
    history = client.get(f"/memories/{memory_id}/history", headers=alice).json()
    assert [e["event"] for e in history] == ["created", "feedback", "updated"]
    assert client.get("/stats", headers=alice).json()["active"] == 1
    exported = client.get("/export", headers=alice).text
    assert client.post(
        "/import", content=exported, headers={**alice, "Content-Type": "text/plain"}
    ).json() == {"imported": 1}
    assert client.delete(f"/memories/{memory_id}", headers=alice).json() == {"deleted": memory_id}
    assert client.delete("/user", headers=alice).json() == {"forgotten": "alice"}
    assert client.get("/memories", headers=alice).json() == []  # a fresh, empty store
    schema = client.get("/openapi.json").json()
    assert {"/memories", "/search", "/prompt", "/feedback", "/export", "/import"} <= set(
        schema["paths"]
    )


def test_a_token_never_reaches_another_user(service):
    client, alice, bob = service
    r = client.post("/memories", json={"text": "I live in Oslo", "at": T0}, headers=alice)
    alice_id = r.json()["id"]
    assert client.get("/memories", headers=bob).json() == []
    assert client.post("/search", json={"query": "Oslo", "at": T0}, headers=bob).json() == []
    assert client.get(f"/memories/{alice_id}", headers=bob).status_code == 404
    assert client.delete(f"/memories/{alice_id}", headers=bob).status_code == 404
    assert client.delete("/user", headers=bob).status_code == 200  # forgets bob only
    assert client.get(f"/memories/{alice_id}", headers=alice).json()["text"] == "I live in Oslo"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        assert client.get("/memories", headers=headers).status_code == 401


def test_bad_input_is_4xx_with_a_message_and_writes_nothing(service, tmp_path):
    client, alice, _ = service
    client.post("/memories", json={"text": "I like tea", "at": T0}, headers=alice)
    log = tmp_path / "store" / "alice" / "log-000000.jsonl"
    before = log.read_bytes()
    cases = [
        ({"text": ""}, 422, "text is empty"),
        ({"text": "x" * 9000}, 422, "the limit is 8000"),
        ({"text": 5}, 422, None),
        ({"text": "I like tea", "at": "soon"}, 422, None),
        ({}, 422, None),
    ]
    for body, status, message in cases:
        r = client.post("/memories", json=body, headers=alice)
        assert r.status_code == status, (body, r.text)
        if message:
            assert message in r.json()["detail"]
    r = client.post(
        "/memories",
        content=b'{"text": "\xff\xfe"}',
        headers={**alice, "Content-Type": "application/json"},
    )
    assert 400 <= r.status_code < 500  # FastAPI: the body is not JSON
    r = client.post("/feedback", json={"target": 1, "reward": 9}, headers=alice)
    assert r.status_code == 422 and "reward must be a number in [-1, 1]" in r.json()["detail"]
    assert client.get("/memories/99", headers=alice).status_code == 404
    r = client.post(
        "/memories", content=b"x" * (2 << 20), headers={**alice, "Content-Type": "application/json"}
    )
    assert r.status_code == 413
    r = client.post(
        "/import", content="not an export", headers={**alice, "Content-Type": "text/plain"}
    )
    assert r.status_code == 422 and "not a torchmem memory export" in r.json()["detail"]
    assert log.read_bytes() == before


def test_token_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no token file"):
        load_tokens(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError, match="not a torchmem token file"):
        load_tokens(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="invalid user_id"):
        add_token(tmp_path / "t.json", "../root")


def test_serve_command_runs_a_real_server(tmp_path, capsys):
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from torchmem.cli import main

    assert main(["serve", "--store", str(tmp_path), "--add-token", "carol"]) == 0
    token = capsys.readouterr().out.strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torchmem", "serve", "--store", str(tmp_path), "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.post(f"{url}/memories", json={"text": "I like jazz"}, headers=headers)
        assert r.status_code == 200 and r.json()["stored"]
        assert (
            httpx.get(f"{url}/memories", headers={"Authorization": "Bearer x"}).status_code == 401
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (tmp_path / "carol" / "manifest.json").exists()
