"""Pieces the personal-memory benchmarks share: an offline mem0 and the report files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor


def offline_mem0(folder: str | Path, dim: int, encode: Callable[[Sequence[str]], Tensor]):
    """``(memory, cache)``: mem0 ``Memory`` that needs no network, no key and no LLM call.

    Its default local store (embedded qdrant) and SQLite history live in ``folder``;
    telemetry is off. Its embedder answers from ``cache`` (text -> vector list), and runs
    ``encode`` on a miss, so the benchmarks can time mem0 with or without embedding and
    give it the very vectors torchmem uses. The LLM client is built (mem0 always builds
    one) with a dummy key and an unroutable address; ``infer=False`` never calls it.
    """
    os.environ["MEM0_TELEMETRY"] = "False"  # read when mem0 is imported: no PostHog, no fetches
    os.environ["MEM0_DIR"] = str(Path(folder) / "mem0_home")
    from mem0 import Memory
    from mem0.embeddings.base import EmbeddingBase

    cache: dict[str, list[float]] = {}

    class CachedEmbedder(EmbeddingBase):
        def __init__(self):
            super().__init__(None)
            self.config.embedding_dims = dim

        def embed(self, text, memory_action=None):
            vector = cache.get(text)
            return vector if vector is not None else encode([text])[0].tolist()

        def embed_batch(self, texts, memory_action="add"):
            return [self.embed(text) for text in texts]

    dummy = {"api_key": "unused-offline", "openai_base_url": "http://127.0.0.1:9/v1"}
    store = {"collection_name": "bench", "embedding_model_dims": dim,
             "path": str(Path(folder) / "mem0-qdrant")}  # fmt: skip
    memory = Memory.from_config(
        {
            "vector_store": {"provider": "qdrant", "config": store},
            "embedder": {"provider": "openai", "config": {**dummy, "embedding_dims": dim}},
            "llm": {"provider": "openai", "config": dict(dummy)},
            "history_db_path": str(Path(folder) / "mem0-history.db"),
        }
    )
    memory.embedding_model = CachedEmbedder()  # mem0 only calls embed / embed_batch
    return memory, cache


def write_report(report: dict, text: str, out: Path | None) -> None:
    """Print the markdown ``text``; with ``out``, also write OUT.json and OUT.md."""
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        out.with_suffix(".md").write_text(text)
