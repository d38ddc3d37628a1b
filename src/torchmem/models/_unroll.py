"""The time loop shared by every step-wise memory model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor


def unroll(
    step: Callable[[Tensor, Any], tuple[Tensor, Any]],
    x: Tensor,
    state: Any,
    trace_fields: Sequence[str] = (),
) -> tuple[Tensor, Any, dict[str, Tensor]]:
    """Run ``step`` over time.

    x (B, T, I); ``step(x_t, state) -> (features_t (B, F), state)``. Returns the stacked
    features (B, T, F) (the caller applies its output layer once over all of them, not per
    step), the final state, and ``{field: (B, T, ...)}`` for each requested state field.
    """
    features = []
    traced: dict[str, list[Tensor]] = {name: [] for name in trace_fields}
    for t in range(x.shape[1]):
        out, state = step(x[:, t], state)
        features.append(out)
        for name in trace_fields:
            traced[name].append(getattr(state, name))
    stacked = {name: torch.stack(values, dim=1) for name, values in traced.items()}
    return torch.stack(features, dim=1), state, stacked
