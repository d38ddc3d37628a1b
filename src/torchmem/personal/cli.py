"""``torchmem memory ...``: the personal memory from the shell (thin: parse, call, print).

Every command takes ``--store DIR`` (default ``$TORCHMEM_MEMORY_DIR`` or
``~/.torchmem/memories``) and ``--user ID`` (default ``$TORCHMEM_USER`` or ``default``);
``--at SECONDS`` stands for "now". Output is JSON for machine use, except ``search``,
``prompt`` and ``demo``, which print text (``search --json`` prints JSON).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

_EXAMPLES = """\
examples:
  torchmem memory demo
  torchmem memory --user alice add "I prefer visual explanations"
  torchmem memory --user alice search "how should I explain this?"
  torchmem memory --user alice prompt "explain transformers" --budget 120
  torchmem memory --user alice feedback 3 -1
  torchmem memory --user alice export alice.jsonl
"""


def default_store() -> Path:
    return Path(os.environ.get("TORCHMEM_MEMORY_DIR", Path.home() / ".torchmem" / "memories"))


def add_memory_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``memory`` and its subcommands on the top-level parser."""
    memory = commands.add_parser(
        "memory",
        help="a personal long-term memory for LLM applications",
        description="Remember what matters about a user, forget what goes stale, inject it "
        "into prompts. Stores live in one folder per user (no database).",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    memory.add_argument(
        "--store", type=Path, help="store folder ($TORCHMEM_MEMORY_DIR or ~/.torchmem/memories)"
    )
    memory.add_argument(
        "--user",
        default=os.environ.get("TORCHMEM_USER", "default"),
        help="user id (default $TORCHMEM_USER or 'default')",
    )
    memory.add_argument(
        "--encoder",
        choices=["hash", "minilm"],
        help="encoder of a new store (default: the store's own, else hash)",
    )
    memory.add_argument("--at", type=float, help="the time to act at, in seconds (default now)")
    verbs = memory.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_: str) -> argparse.ArgumentParser:
        parser = verbs.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        parser.set_defaults(handler=_run, memory_verb=name)
        return parser

    verb("add", "remember a message if it is worth it").add_argument("text")
    search = verb("search", "the memories most relevant to a query, best first")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="how many (default 5)")
    search.add_argument("--json", action="store_true", help="print JSON")
    prompt = verb("prompt", "the system-prompt block to inject for a query")
    prompt.add_argument("query")
    prompt.add_argument("-k", type=int, default=5, help="memories at most (default 5)")
    prompt.add_argument("--budget", type=int, default=200, help="token budget (default 200)")
    feedback = verb("feedback", "reward (>0) or penalise (<0) a memory id or a query's best match")
    feedback.add_argument("target", help="memory id, or a query")
    feedback.add_argument("reward", type=float, help="in [-1, 1]")
    verb("get", "one memory's record").add_argument("id", type=int)
    listing = verb("list", "the active memories, strongest first")
    listing.add_argument("--all", action="store_true", help="also superseded ones")
    verb("history", "what happened to a memory").add_argument("id", type=int)
    update = verb("update", "correct a memory's text")
    update.add_argument("id", type=int)
    update.add_argument("text")
    verb("delete", "delete a memory (its words leave the disk)").add_argument("id", type=int)
    verb("stats", "counts, thresholds and sizes")
    verb("export", "write the user's memories as JSONL").add_argument("path", type=Path)
    verb("import", "add the memories of an export file").add_argument("path", type=Path)
    forget = verb("forget", "forget the user: delete their whole store")
    forget.add_argument("--yes", action="store_true", help="required: confirms the deletion")
    demo = verb("demo", "play the seed's expected behaviour end to end (a scratch store)")
    demo.add_argument("--keep", action="store_true", help="keep the demo store in --store")


def add_serve_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``serve``: the HTTP service."""
    serve = commands.add_parser(
        "serve",
        help="serve personal memories over HTTP (FastAPI; per-user API tokens)",
        description="Serve the personal-memory store over HTTP. Each bearer token reaches "
        "exactly one user's memories. OpenAPI schema at /openapi.json, docs at /docs.",
    )
    serve.add_argument("--store", type=Path, help="store folder (as for `torchmem memory`)")
    serve.add_argument(
        "--tokens", type=Path, help="token file (default STORE/tokens.json)", default=None
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    serve.add_argument("--encoder", choices=["hash", "minilm"], help="encoder of new stores")
    serve.add_argument(
        "--add-token", metavar="USER", help="make a token for USER, print it once, and exit"
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .server import add_token, serve

    store = args.store or default_store()
    tokens = args.tokens or store / "tokens.json"
    if args.add_token:
        print(add_token(tokens, args.add_token))
        return 0
    serve(store, tokens, host=args.host, port=args.port, encoder=args.encoder)
    return 0


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _run(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .memory import PersonalMemory

    store = args.store or default_store()
    if args.memory_verb == "demo":
        failed = run_demo(store if args.keep else None, encoder=args.encoder or "hash")
        return 1 if failed else 0
    if args.memory_verb == "forget" and not args.yes:
        raise ValueError("forget deletes every memory of the user; add --yes to confirm")
    mem = PersonalMemory(store, args.user, encoder=args.encoder)
    verb, at = args.memory_verb, args.at
    try:
        if verb == "add":
            _print_json(mem.add(args.text, at=at).__dict__)
        elif verb == "search":
            hits = mem.search(args.query, k=args.k, at=at)
            if args.json:
                _print_json([hit.to_dict() for hit in hits])
            for hit in [] if args.json else hits:
                print(
                    f"{hit.score:.3f}  (similarity {hit.similarity:.3f}, strength "
                    f"{hit.strength:.3f})  #{hit.id}  {hit.text}"
                )
        elif verb == "prompt":
            print(mem.build_prompt(args.query, k=args.k, token_budget=args.budget, at=at))
        elif verb == "feedback":
            _print_json({"ids": mem.feedback(args.target, args.reward, at=at)})
        elif verb == "get":
            _print_json(mem.get(args.id, at=at))
        elif verb == "list":
            _print_json(mem.list(at=at, include_inactive=args.all))
        elif verb == "history":
            _print_json(mem.history(args.id))
        elif verb == "update":
            _print_json(mem.update(args.id, args.text, at=at))
        elif verb == "delete":
            mem.delete(args.id, at=at)
            _print_json({"deleted": args.id})
        elif verb == "stats":
            _print_json(mem.stats(at=at))
        elif verb == "export":
            _print_json({"exported": mem.export(args.path), "path": str(args.path)})
        elif verb == "import":
            _print_json({"imported": mem.import_(args.path)})
        elif verb == "forget":
            mem.forget()
            _print_json({"forgotten": args.user})
    finally:
        mem.close()
    return 0


__all__ = ["add_memory_parser", "add_serve_parser", "default_store"]
