"""The time loop shared by every step-wise memory model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import check_sequence_input


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


def run_model(
    model: nn.Module, x: Tensor, state: Any, trace_fields: Sequence[str] = ()
) -> tuple[Tensor, Any, dict[str, Tensor]]:
    """The body of every step-wise model's ``forward``: check x (B, T, I), start a fresh state
    if none is given, unroll ``model._step`` and apply ``model.output`` once to all steps."""
    check_sequence_input(x, model.config.input_size, type(model).__name__)
    if state is None:
        state = model.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
    features, state, trace = unroll(model._step, x, state, trace_fields)
    return model.output(features), state, trace
