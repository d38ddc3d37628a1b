"""Memory layers that drop into any network (they map ``(..., input_size)`` tensors)."""

from .memory_layer import (
    GatedMemory,
    MemoryLayer,
    RecurrentMemoryLayer,
    RecurrentMemoryState,
    TransformerMemoryLayer,
    TransformerMemoryState,
)

__all__ = [
    "GatedMemory",
    "MemoryLayer",
    "RecurrentMemoryLayer",
    "RecurrentMemoryState",
    "TransformerMemoryLayer",
    "TransformerMemoryState",
]
