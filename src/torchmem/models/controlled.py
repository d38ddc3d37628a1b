"""The wiring the controller-driven memories share (associative, attention, hierarchical,
MANN): a controller fed ``[x_t; r_{t-1}]``, an interface layer on its output, a read-out on
``[h_t; r_t]``, built from a config with ``input_size``, ``output_size``, ``hidden_size``,
``controller`` and ``fused_controller``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from ._unroll import run_model
from .controller import make_controller


class ControlledMemory(nn.Module):
    """The wiring these models share: a controller fed ``[x_t; r_{t-1}]``, an interface
    layer on its output, a read-out on ``[h_t; r_t]``. A subclass sets ``config_class`` and
    ``trace_fields``, calls :meth:`_wire` and writes ``initial_state`` and ``_step``; its
    state has ``controller`` and ``read_vectors`` fields."""

    config_class: type
    trace_fields: tuple[str, ...] = ("read_weights",)

    def _wire(self, c: Any, interface_size: int, reads: int) -> None:
        self.controller = make_controller(
            c.controller, c.input_size + reads, c.hidden_size, c.fused_controller
        )
        self.interface = nn.Linear(c.hidden_size, interface_size)
        self.output = nn.Linear(c.hidden_size + reads, c.output_size)

    @classmethod
    def from_config(cls, config: Any) -> ControlledMemory:
        return cls(**dataclasses.asdict(config))

    def _zeros(self, batch_size: int, device, dtype):
        """``zeros(*shape)`` -> a (batch_size, *shape) tensor on the model's device and dtype
        unless given, and the controller's initial state."""
        p = self.output.weight
        device, dtype = device or p.device, dtype or p.dtype

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(batch_size, *shape, device=device, dtype=dtype)

        return zeros, self.controller.initial_state(batch_size, device, dtype)

    def _control(self, x_t: Tensor, state: Any) -> tuple[Tensor, Any, Tensor]:
        """``(h_t, controller state, interface vector)`` for one step."""
        hidden, controller = self.controller.step(
            torch.cat([x_t, state.read_vectors.flatten(1)], dim=-1), state.controller
        )
        return hidden, controller, self.interface(hidden)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        y, state, _ = run_model(self, x, state)
        return y, state

    def trace(self, x: Tensor, state: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Like ``forward`` but also returns ``trace_fields`` over time (time at dim 1)."""
        y, _, trace = run_model(self, x, state, self.trace_fields)
        return y, trace
