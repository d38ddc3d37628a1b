"""Helpers for the explicit, immutable recurrent state every torchmem model returns.

State is a (possibly nested) ``NamedTuple`` of batch-first tensors. It is passed into and
returned from ``forward`` and never kept on a module, so these helpers work on any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def map_state(fn: Callable[[Tensor], Tensor], state: Any) -> Any:
    """Apply ``fn`` to every tensor in a nested state, keeping its structure and types."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # NamedTuple
        return type(state)(*(map_state(fn, s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(fn, s) for s in state)
    if isinstance(state, dict):
        return {k: map_state(fn, v) for k, v in state.items()}
    raise TypeError(f"cannot map over a state leaf of type {type(state).__name__}")


def detach_state(state: Any) -> Any:
    """Cut the autograd graph behind a state (truncated backpropagation through time)."""
    return map_state(torch.Tensor.detach, state)


def state_to(state: Any, device: torch.device | str | None = None, dtype=None) -> Any:
    """Move a state to another device and/or floating dtype."""
    return map_state(
        lambda t: t.to(device=device, dtype=dtype if t.is_floating_point() else None), state
    )


def state_tensors(state: Any, prefix: str = "") -> dict[str, Tensor]:
    """Flatten a nested NamedTuple state into ``{"field.subfield": tensor}`` (for plots/tests)."""
    out: dict[str, Tensor] = {}
    if isinstance(state, Tensor):
        out[prefix or "state"] = state
    elif isinstance(state, tuple) and hasattr(state, "_fields"):
        for name, value in zip(state._fields, state):
            out.update(state_tensors(value, f"{prefix}.{name}" if prefix else name))
    elif isinstance(state, (tuple, list)):
        for i, value in enumerate(state):
            out.update(state_tensors(value, f"{prefix}.{i}" if prefix else str(i)))
    return out
