"""``torchmem serve``: the personal memory over HTTP (FastAPI), one user per API token.

A token is a bearer secret bound to exactly one user id; no route names a user, so a
token can only ever read or change its own user's memories. The token file stores the
SHA-256 of each token, never the token itself (``torchmem serve --add-token USER`` makes
one and prints it once). Binds to 127.0.0.1 unless told otherwise. The OpenAPI schema is
at ``/openapi.json`` and the interactive docs at ``/docs``.

Errors: bad input (wrong types, empty or huge text, a bad id or reward) is 422 with the
library's message in ``detail``; an unknown memory 404; a missing or unknown token 401;
a body over the size limit 413. Nothing is written when a request fails.
"""

import contextlib
import hashlib
import hmac
import json
import secrets
import threading
from pathlib import Path
from typing import Any

from .memory import PersonalMemory, PersonalMemoryConfig
from .store import StoreError, check_user_id

MAX_BODY_BYTES = 1 << 20  # 1 MiB; imports may send up to IMPORT_MAX_BODY_BYTES
IMPORT_MAX_BODY_BYTES = 64 << 20


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_tokens(path: str | Path) -> dict[str, str]:
    """``{sha256(token): user_id}`` from a token file (``{"tokens": {digest: user}}``)."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
        tokens = content["tokens"]
        if not isinstance(tokens, dict):
            raise TypeError("tokens is not an object")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no token file at {path}; make one with --add-token USER"
        ) from None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a torchmem token file: {error}") from None
    for user in tokens.values():
        check_user_id(user)
    return dict(tokens)


def add_token(path: str | Path, user_id: str) -> str:
    """Make a new token for ``user_id``, record its digest in the token file, return it."""
    check_user_id(user_id)
    path = Path(path)
    tokens = load_tokens(path) if path.exists() else {}
    token = secrets.token_urlsafe(32)
    tokens[_digest(token)] = user_id
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"tokens": tokens}, indent=2))
    partial.chmod(0o600)
    partial.replace(path)
    return token


def create_app(
    store_dir: str | Path,
    tokens: dict[str, str],
    *,
    encoder: str | None = None,
    config: PersonalMemoryConfig | dict | None = None,
):
    """The FastAPI application serving ``store_dir`` to the holders of ``tokens``.

    Args:
        store_dir: the personal-memory store folder.
        tokens: ``{sha256(token): user_id}`` (see :func:`load_tokens`).
        encoder, config: passed to every user's :class:`PersonalMemory`.
    """
    try:
        from fastapi import Body, Depends, FastAPI, HTTPException, Request
        from fastapi.responses import JSONResponse, PlainTextResponse
        from pydantic import BaseModel, Field
    except ImportError:
        raise ImportError("torchmem serve needs FastAPI: pip install 'torchmem[serve]'") from None

    memories: dict[str, PersonalMemory] = {}
    opening = threading.Lock()

    def memory_of(user_id: str) -> PersonalMemory:
        with opening:
            mem = memories.get(user_id)
            if mem is None or mem._closed:
                mem = memories[user_id] = PersonalMemory(store_dir, user_id, encoder, config)
            return mem

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        for mem in memories.values():
            mem.close()

    app = FastAPI(
        lifespan=lifespan,
        title="torchmem personal memory",
        version="1",
        description="Per-user long-term memory for LLM applications. Authenticate with "
        "`Authorization: Bearer <token>`; a token reaches only its own user's memories.",
    )

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        limit = IMPORT_MAX_BODY_BYTES if request.url.path == "/import" else MAX_BODY_BYTES
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(KeyError)
    async def not_found(request: Request, error: KeyError):
        return JSONResponse({"detail": str(error.args[0]) if error.args else "not found"}, 404)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, error: StoreError):
        return JSONResponse({"detail": f"the store cannot be read: {error}"}, 500)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, error: ValueError):
        return JSONResponse({"detail": str(error)}, 422)

    @app.exception_handler(TypeError)
    async def bad_type(request: Request, error: TypeError):
        return JSONResponse({"detail": str(error)}, 422)

    def user(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        digest = _digest(token.strip())
        for known, user_id in tokens.items():
            if hmac.compare_digest(known, digest):
                return user_id
        raise HTTPException(401, "unknown token", {"WWW-Authenticate": "Bearer"})

    class AddBody(BaseModel):
        text: str = Field(description="the message")
        at: float | None = Field(None, description="seconds standing for now")

    class SearchBody(BaseModel):
        query: str
        k: int = 5
        at: float | None = None

    class PromptBody(SearchBody):
        token_budget: int = 200

    class FeedbackBody(BaseModel):
        target: int | str = Field(description="a memory id or a query")
        reward: float = Field(description="in [-1, 1]")
        at: float | None = None

    class UpdateBody(BaseModel):
        text: str
        at: float | None = None

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/memories")
    def add(body: AddBody, user_id: str = Depends(user)) -> dict[str, Any]:
        return memory_of(user_id).add(body.text, at=body.at).__dict__

    @app.get("/memories")
    def list_(user_id: str = Depends(user), at: float | None = None, all: bool = False):
        return memory_of(user_id).list(at=at, include_inactive=all)

    @app.get("/memories/{memory_id}")
    def get(memory_id: int, user_id: str = Depends(user), at: float | None = None):
        return memory_of(user_id).get(memory_id, at=at)

    @app.patch("/memories/{memory_id}")
    def update(memory_id: int, body: UpdateBody, user_id: str = Depends(user)):
        return memory_of(user_id).update(memory_id, body.text, at=body.at)

    @app.delete("/memories/{memory_id}")
    def delete(memory_id: int, user_id: str = Depends(user)) -> dict[str, int]:
        memory_of(user_id).delete(memory_id)
        return {"deleted": memory_id}

    @app.get("/memories/{memory_id}/history")
    def history(memory_id: int, user_id: str = Depends(user)):
        return memory_of(user_id).history(memory_id)

    @app.post("/search")
    def search(body: SearchBody, user_id: str = Depends(user)):
        hits = memory_of(user_id).search(body.query, k=body.k, at=body.at)
        return [hit.to_dict() for hit in hits]

    @app.post("/prompt")
    def prompt(body: PromptBody, user_id: str = Depends(user)) -> dict[str, str]:
        block = memory_of(user_id).build_prompt(body.query, body.k, body.token_budget, body.at)
        return {"prompt": block}

    @app.post("/feedback")
    def feedback(body: FeedbackBody, user_id: str = Depends(user)) -> dict[str, list[int]]:
        return {"ids": memory_of(user_id).feedback(body.target, body.reward, at=body.at)}

    @app.get("/stats")
    def stats(user_id: str = Depends(user), at: float | None = None):
        return memory_of(user_id).stats(at=at)

    @app.get("/export", response_class=PlainTextResponse)
    def export(user_id: str = Depends(user)) -> str:
        return memory_of(user_id).export_jsonl()

    @app.post("/import")
    def import_(body: str = Body(..., media_type="text/plain"), user_id: str = Depends(user)):
        return {"imported": memory_of(user_id).import_jsonl(body, "the request body")}

    @app.delete("/user")
    def forget(user_id: str = Depends(user)) -> dict[str, str]:
        memory_of(user_id).forget()
        return {"forgotten": user_id}

    return app


def serve(
    store_dir: str | Path,
    token_file: str | Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    encoder: str | None = None,
) -> None:
    """Run the service with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("torchmem serve needs uvicorn: pip install 'torchmem[serve]'") from None
    app = create_app(store_dir, load_tokens(token_file), encoder=encoder)
    uvicorn.run(app, host=host, port=port)


__all__ = ["add_token", "create_app", "load_tokens", "serve"]
