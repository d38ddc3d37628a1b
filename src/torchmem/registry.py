"""Names -> (model class, config dataclass), used by the trainer, the CLI and the benchmarks."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from torch import nn

from .config import config_fields
from .models.associative import (
    AttentionMemory,
    AttentionMemoryConfig,
    FastWeights,
    FastWeightsConfig,
    HopfieldMemory,
    HopfieldMemoryConfig,
)
from .models.dnc import DNC, DNCConfig
from .models.hierarchical import HierarchicalMemory, HierarchicalMemoryConfig
from .models.lstm import LSTM, LSTMConfig
from .models.mann import MANN, MANNConfig
from .models.memnet import MemNet, MemNetConfig
from .models.memoria_transformer import MemoriaTransformer, MemoriaTransformerConfig
from .models.memory_rnn import MemoryEnhancedRNN, MemoryEnhancedRNNConfig
from .models.ntm import NTM, NTMConfig
from .models.sam import SAM, SAMConfig
from .models.segment_transformer import (
    SegmentTransformer,
    SegmentTransformerConfig,
    TransformerXL,
    TransformerXLConfig,
)
from .models.sparse_dnc import SparseDNC, SparseDNCConfig


class ModelSpec(NamedTuple):
    model_class: type[nn.Module]
    config_class: type
    summary: str


MODELS: dict[str, ModelSpec] = {
    "ntm": ModelSpec(NTM, NTMConfig, "Neural Turing Machine (Graves et al. 2014)"),
    "dnc": ModelSpec(DNC, DNCConfig, "Differentiable Neural Computer (Graves et al. 2016)"),
    "lstm": ModelSpec(LSTM, LSTMConfig, "LSTM baseline, no external memory"),
    "sam": ModelSpec(
        SAM, SAMConfig, "Sparse Access Memory: top-K reads, LRU writes (Rae et al. 2016)"
    ),
    "sparse-dnc": ModelSpec(
        SparseDNC, SparseDNCConfig, "sparse DNC: SAM's memory with sparse temporal links (SDNC)"
    ),
    "fast-weights": ModelSpec(
        FastWeights,
        FastWeightsConfig,
        "LSTM + delta-rule fast-weight memory (Schlag, Irie & Schmidhuber 2021)",
    ),
    "hopfield": ModelSpec(
        HopfieldMemory,
        HopfieldMemoryConfig,
        "LSTM + modern Hopfield pattern store (Ramsauer et al. 2021)",
    ),
    "attention": ModelSpec(
        AttentionMemory,
        AttentionMemoryConfig,
        "LSTM + multi-head scaled dot-product attention over its last N steps",
    ),
    "mann": ModelSpec(
        MANN, MANNConfig, "memory-augmented network with LRU access (Santoro et al. 2016)"
    ),
    "memory-rnn": ModelSpec(
        MemoryEnhancedRNN,
        MemoryEnhancedRNNConfig,
        "LSTM whose outputs pass through a gated product-key memory layer (Lample et al. 2019)",
    ),
    "hierarchical": ModelSpec(
        HierarchicalMemory,
        HierarchicalMemoryConfig,
        "LSTM + multi-level store, level l written every stride**l steps with summaries",
    ),
    "memnet": ModelSpec(
        MemNet,
        MemNetConfig,
        "MemNet: Hebbian graph memory, meta-policy reads, dreaming (Memory Is All You Need)",
    ),
    "memoria-transformer": ModelSpec(
        MemoriaTransformer,
        MemoriaTransformerConfig,
        "Memoria Transformer: segment-wise GPT with engram memory (Park & Bak 2024)",
    ),
    "segment-transformer": ModelSpec(
        SegmentTransformer,
        SegmentTransformerConfig,
        "causal transformer restarted every segment, no memory (Memoria baseline)",
    ),
    "transformer-xl": ModelSpec(
        TransformerXL,
        TransformerXLConfig,
        "segment transformer with a stop-gradient cache of past segments (Dai et al. 2019)",
    ),
}


def get_model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def make_model(name: str, input_size: int, output_size: int, **options: Any) -> nn.Module:
    """Build a registered model; unknown names or options raise with the valid list."""
    spec = get_model_spec(name)
    return spec.model_class(input_size=input_size, output_size=output_size, **options)


def model_from_config(name: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from the config dict saved in a checkpoint."""
    spec = get_model_spec(name)
    return spec.model_class(**config)


def model_options(name: str) -> dict[str, Any]:
    """``{option: default}`` of a registered model (what ``--set key=value`` accepts)."""
    return config_fields(get_model_spec(name).config_class)


def model_config_dict(model: nn.Module) -> dict[str, Any]:
    return dataclasses.asdict(model.config)
