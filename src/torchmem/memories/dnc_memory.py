"""The DNC's memory access: interface vector -> gates, one write and R reads per step.

Graves et al. 2016 (methods); optional improvements of Csordas & Schmidhuber 2019: masked
content addressing, de-allocation (freed slots are wiped), and link sharpness.

Legend: B batch, H controller hidden size, N slots, W slot width, R read heads.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..core import allocation as alloc
from ..core import fused_link, linkage
from ..core.addressing import content_weights, erase_and_add, oneplus, read_memory
from ..core.fused_link import link_step

STEP_BACKENDS = ("auto", "fused", "composed")


class DNCMemoryState(NamedTuple):
    memory: Tensor  # (B, N, W)  M_t
    usage: Tensor  # (B, N)  u_t
    link: Tensor  # (B, N, N)  L_t
    precedence: Tensor  # (B, N)  p_t
    write_weights: Tensor  # (B, N)  w^w_t
    read_weights: Tensor  # (B, R, N)  w^{r,i}_t
    read_vectors: Tensor  # (B, R, W)  r^i_t


class DNCMemory(nn.Module):
    """One DNC memory step from the controller output ``hidden`` (B, H).

    The interface vector xi_t holds, per the paper: read keys k^{r,i} (R x W), read strengths
    beta^{r,i} (oneplus), write key k^w (W), write strength beta^w (oneplus), erase e (sigmoid,
    W), write vector v (W), free gates f^i (sigmoid), allocation gate g^a and write gate g^w
    (sigmoid), read modes pi^i (softmax over 3). Options add content masks (sigmoid,
    (R + 1) x W) and link sharpness exponents (oneplus, 2R).
    """

    def __init__(
        self,
        hidden_size: int,
        memory_slots: int,
        memory_width: int,
        read_heads: int,
        masking: bool = False,
        deallocation: bool = False,
        link_sharpness: bool = False,
        link_backend: str = "auto",
        step_backend: str = "auto",
    ):
        super().__init__()
        if step_backend not in STEP_BACKENDS:
            raise ValueError(
                f"unknown DNC step_backend {step_backend!r}; valid: {', '.join(STEP_BACKENDS)}"
            )
        self.memory_slots, self.memory_width, self.read_heads = (
            memory_slots,
            memory_width,
            read_heads,
        )
        self.masking, self.deallocation, self.link_sharpness = masking, deallocation, link_sharpness
        self.link_backend, self.step_backend = link_backend, step_backend
        self._compiled = None  # (write part, read part) once compile_step() has run
        r, w = read_heads, memory_width
        self.sizes = {
            "read_keys": r * w,
            "read_strengths": r,
            "write_key": w,
            "write_strength": 1,
            "erase": w,
            "write_vector": w,
            "free_gates": r,
            "allocation_gate": 1,
            "write_gate": 1,
            "read_modes": 3 * r,
        }
        if masking:
            self.sizes["masks"] = (r + 1) * w
        if link_sharpness:
            self.sizes["sharpness"] = 2 * r
        self.interface = nn.Linear(hidden_size, sum(self.sizes.values()))

    def initial_state(self, batch_size: int, device=None, dtype=None) -> DNCMemoryState:
        b, n, w, r = batch_size, self.memory_slots, self.memory_width, self.read_heads
        zeros = lambda *shape: torch.zeros(shape, device=device, dtype=dtype)  # noqa: E731
        return DNCMemoryState(
            zeros(b, n, w), zeros(b, n), zeros(b, n, n), zeros(b, n), zeros(b, n),
            zeros(b, r, n), zeros(b, r, w),
        )  # fmt: skip

    def split_interface(self, hidden: Tensor) -> dict[str, Tensor]:
        """hidden (B, H) -> the named, squashed interface parameters."""
        b, r, w = hidden.shape[0], self.read_heads, self.memory_width
        raw = dict(
            zip(self.sizes, torch.split(self.interface(hidden), list(self.sizes.values()), -1))
        )
        out = {
            "read_keys": raw["read_keys"].view(b, r, w),
            "read_strengths": oneplus(raw["read_strengths"]),
            "write_key": raw["write_key"].view(b, 1, w),
            "write_strength": oneplus(raw["write_strength"]),
            "erase": torch.sigmoid(raw["erase"]).view(b, 1, w),
            "write_vector": raw["write_vector"].view(b, 1, w),
            "free_gates": torch.sigmoid(raw["free_gates"]),
            "allocation_gate": torch.sigmoid(raw["allocation_gate"]).squeeze(-1),
            "write_gate": torch.sigmoid(raw["write_gate"]).squeeze(-1),
            "read_modes": torch.softmax(raw["read_modes"].view(b, r, 3), dim=-1),
        }
        if self.masking:
            masks = torch.sigmoid(raw["masks"]).view(b, r + 1, w)
            out["read_masks"], out["write_mask"] = masks[:, :r], masks[:, r:]
        if self.link_sharpness:
            sharp = oneplus(raw["sharpness"]).view(b, 2, r)
            out["forward_sharpness"], out["backward_sharpness"] = sharp[:, 0], sharp[:, 1]
        return out

    def fused(self, hidden: Tensor) -> bool:
        """Whether ``step`` runs as one fused C++ operator for inputs like ``hidden``.

        The operator (``csrc/dnc_step.h``) covers the paper's DNC on CPU float32/float64, with
        none of the Csordas & Schmidhuber options; everything else runs the composed step.
        """
        if self.step_backend == "composed":
            return False
        supported = (
            not (self.masking or self.deallocation or self.link_sharpness)
            and self.link_backend in ("auto", "cpp")
            and self._compiled is None
            and hidden.device.type == "cpu"
            and hidden.dtype in (torch.float32, torch.float64)
        )
        if self.step_backend == "fused":
            if not supported:
                raise ValueError(
                    "step_backend='fused' needs CPU float32/float64 tensors, link_backend "
                    "'auto' or 'cpp', no compile, and masking, deallocation and "
                    "link_sharpness off; use step_backend='auto' or 'composed'"
                )
            if not fused_link.cpp_available():
                raise RuntimeError(
                    "step_backend='fused' needs the C++ kernels, which failed to build"
                )
            return True
        return supported and fused_link.cpp_available()

    def step(self, hidden: Tensor, state: DNCMemoryState) -> DNCMemoryState:
        """hidden (B, H) -> the memory state after one write and R reads (DNC methods).

        Fused (see ``fused``): one C++ operator with a hand-written backward. Composed: three
        parts, everything before the link update, the fused N x N link update, and everything
        after it. The two outer parts are many small ops; ``compile_step`` hands them to
        ``torch.compile`` (the link kernel stays a hand-written autograd Function).
        """
        if self.fused(hidden):
            outputs = torch.ops.torchmem_fused_link.dnc_step(self.interface(hidden), *state[:6])
            return DNCMemoryState(*outputs)
        write_part, read_part = self._compiled or (self._write_part, self._read_part)
        p, usage, memory, write_w = write_part(hidden, state)
        # L_t, f_t = L_t w^r_{t-1}, b_t = L_t^T w^r_{t-1} in one fused pass over the N x N link.
        link, forward, backward = link_step(
            state.link, write_w, state.precedence, state.read_weights, backend=self.link_backend
        )
        precedence, read_w, read_vectors = read_part(
            p, memory, write_w, state.precedence, forward, backward
        )
        return DNCMemoryState(memory, usage, link, precedence, write_w, read_w, read_vectors)

    def compile_step(self, **options) -> None:
        """Compile the small-op parts of ``step`` with ``torch.compile`` (first call is slow)."""
        self._compiled = (
            torch.compile(self._write_part, dynamic=False, **options),
            torch.compile(self._read_part, dynamic=False, **options),
        )

    def _write_part(self, hidden: Tensor, state: DNCMemoryState):
        """Interface, usage, allocation, write weights and the erase/add write."""
        p = self.split_interface(hidden)
        psi = alloc.retention(p["free_gates"], state.read_weights)
        usage = alloc.update_usage(state.usage, state.write_weights, psi)
        memory = state.memory
        if self.deallocation:  # Csordas & Schmidhuber 2019: freed slots are wiped
            memory = memory * psi.unsqueeze(-1)

        write_content = content_weights(
            memory, p["write_key"], p["write_strength"], p.get("write_mask")
        ).squeeze(1)
        write_w = alloc.write_weights(
            alloc.allocation_weights(usage), write_content, p["allocation_gate"], p["write_gate"]
        )
        memory = erase_and_add(memory, write_w.unsqueeze(1), p["erase"], p["write_vector"])
        return p, usage, memory, write_w

    def _read_part(self, p, memory, write_w, prev_precedence, forward, backward):
        """Precedence, (sharpened) directional weights, content reads and the read-mode mix."""
        precedence = linkage.update_precedence(prev_precedence, write_w)
        if self.link_sharpness:
            forward = linkage.sharpen_distribution(forward, p["forward_sharpness"])
            backward = linkage.sharpen_distribution(backward, p["backward_sharpness"])
        read_content = content_weights(
            memory, p["read_keys"], p["read_strengths"], p.get("read_masks")
        )
        read_w = linkage.read_mode_mix(backward, read_content, forward, p["read_modes"])
        return precedence, read_w, read_memory(memory, read_w)
