"""torchmem: neural memory architectures in PyTorch behind one ``nn.LSTM``-like interface.

>>> import torch, torchmem
>>> model = torchmem.DNC(input_size=9, output_size=8)
>>> y, state = model(torch.zeros(2, 5, 9))
>>> y.shape, state.memory.shape
(torch.Size([2, 5, 8]), torch.Size([2, 64, 16]))
"""

from .layers import GatedMemory, MemoryLayer, RecurrentMemoryLayer, TransformerMemoryLayer
from .models.associative import (
    AttentionMemory,
    AttentionMemoryConfig,
    AttentionMemoryState,
    FastWeights,
    FastWeightsConfig,
    FastWeightsState,
    HopfieldMemory,
    HopfieldMemoryConfig,
    HopfieldMemoryState,
)
from .models.dnc import DNC, DNCConfig, DNCState
from .models.hierarchical import (
    HierarchicalMemory,
    HierarchicalMemoryConfig,
    HierarchicalMemoryState,
)
from .models.lstm import LSTM, LSTMConfig
from .models.mann import MANN, MANNConfig, MANNState
from .models.memnet import MemNet, MemNetConfig, MemNetState
from .models.memoria_transformer import (
    MemoriaTransformer,
    MemoriaTransformerConfig,
    MemoriaTransformerState,
)
from .models.memory_rnn import MemoryEnhancedRNN, MemoryEnhancedRNNConfig
from .models.ntm import NTM, NTMConfig, NTMState
from .models.sam import SAM, SAMConfig, SAMState
from .models.segment_transformer import (
    SegmentTransformer,
    SegmentTransformerConfig,
    TransformerXL,
    TransformerXLConfig,
)
from .models.sparse_dnc import SparseDNC, SparseDNCConfig, SparseDNCState
from .personal import PersonalMemory, PersonalMemoryConfig
from .registry import MODELS, make_model, model_options
from .state import detach_state, map_state, state_to

__version__ = "0.1.0"

__all__ = [
    "AttentionMemory",
    "AttentionMemoryConfig",
    "AttentionMemoryState",
    "DNC",
    "DNCConfig",
    "DNCState",
    "FastWeights",
    "FastWeightsConfig",
    "FastWeightsState",
    "HierarchicalMemory",
    "HierarchicalMemoryConfig",
    "HierarchicalMemoryState",
    "HopfieldMemory",
    "HopfieldMemoryConfig",
    "HopfieldMemoryState",
    "LSTM",
    "LSTMConfig",
    "MODELS",
    "GatedMemory",
    "MANN",
    "MANNConfig",
    "MANNState",
    "SAM",
    "SAMConfig",
    "SAMState",
    "SparseDNC",
    "SparseDNCConfig",
    "SparseDNCState",
    "MemNet",
    "MemNetConfig",
    "MemNetState",
    "MemoryEnhancedRNN",
    "MemoryEnhancedRNNConfig",
    "MemoryLayer",
    "MemoriaTransformer",
    "MemoriaTransformerConfig",
    "MemoriaTransformerState",
    "NTM",
    "NTMConfig",
    "NTMState",
    "PersonalMemory",
    "PersonalMemoryConfig",
    "RecurrentMemoryLayer",
    "SegmentTransformer",
    "SegmentTransformerConfig",
    "TransformerMemoryLayer",
    "TransformerXL",
    "TransformerXLConfig",
    "detach_state",
    "make_model",
    "map_state",
    "model_options",
    "state_to",
]
