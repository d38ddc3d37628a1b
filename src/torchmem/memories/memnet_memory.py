"""MemNet's memory: a multi-head slot bank with meta-policy reads, age-based writes behind a
semantic bottleneck and a Hebbian slot graph; and the synthesizer that "dreams" over it.

"Memory Is All You Need" (the seed in ``shared/seeds``) names the parts; where it is vague,
the choices made here are stated in the docstrings. The maths lives in
:mod:`torchmem.core.policies`, :mod:`torchmem.core.hebbian` and
:mod:`torchmem.core.consolidation`; these modules own the parameters and call it.

Legend: B batch, D controller width, N slots, W slot width, R read heads, V write heads,
Z bottleneck width, P read policies.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..core.addressing import content_weights, cosine_similarity, erase_and_add, oneplus
from ..core.addressing import read_memory as weighted_read
from ..core.consolidation import MergeResult, merge_redundant_slots
from ..core.hebbian import hebbian_update, spread_activation
from ..core.policies import (
    POLICIES,
    age_weights,
    mix_policies,
    policy_candidates,
    update_ages,
)

#: Where the Hebbian rule takes slot activity from: the heads' mean base read weights, the
#: write heads' mean write weights, or the average of the two.
HEBBIAN_ACTIVITIES = ("read", "write", "both")

#: Every row of the slot graph is kept a sub-distribution (see core.hebbian).
GRAPH_MAX_ROW_SUM = 1.0


class MemNetMemoryState(NamedTuple):
    """The memory after step t; the weights are those used at step t."""

    memory: Tensor  # (B, N, W)  M_t
    ages: Tensor  # (B, N)  steps since each slot was last written (soft)
    adjacency: Tensor  # (B, N, N)  A_t, the Hebbian slot graph (edge i -> j)
    activity: Tensor  # (B, N)  slot activity at t: "Pre" of the next Hebbian update
    read_weights: Tensor  # (B, R, N)  W_final, after spreading activation
    base_read_weights: Tensor  # (B, R, N)  W_base, the policy mixture before spreading
    policy_weights: Tensor  # (B, R, P)  pi, the meta-policy's mixture per head
    write_weights: Tensor  # (B, V, N)  w^w_t
    read_vectors: Tensor  # (B, R, W)  r_t = W_final M_t


class ReadInterface(NamedTuple):
    """What the controller asks of the read heads (after the activations)."""

    keys: Tensor  # (B, R, W)  k
    strengths: Tensor  # (B, R)  beta >= 1
    policy_weights: Tensor  # (B, R, P)  pi, rows sum to 1


class WriteInterface(NamedTuple):
    """What the controller asks of the write heads (after the activations)."""

    keys: Tensor  # (B, V, W)  content key of the slot to update
    strengths: Tensor  # (B, V)  beta^w >= 1
    allocation_gate: Tensor  # (B, V)  g^a in [0, 1]: oldest slot vs most similar slot
    age_sharpness: Tensor  # (B, V)  gamma >= 1
    write_gate: Tensor  # (B, V)  g^w in [0, 1]: how much to write at all
    erase: Tensor  # (B, V, W)  e in [0, 1]
    values: Tensor  # (B, V, W)  a in [-1, 1]


class MultiHeadMemoryBank(nn.Module):
    """N slots of width W with age tracking, R meta-policy read heads, V write heads behind a
    semantic bottleneck, and a Hebbian graph over the slots.

    One step (write, then read, then link; the order of the NTM and DNC, so that a read can
    see what was just written, which the reconstruction head needs):

    1. **Write** (consolidation). The controller output h passes a *semantic bottleneck*:
       z_v = tanh(U_v h) with Z < W units per head; the write key, erase and value vectors
       are all decoded from z_v alone, so what enters memory is a low-dimensional code
       of h, while the control signals (gates, strengths) come from h directly. The write
       address mixes the most similar slot and the oldest one,
       w^w = g^w (g^a softmax(gamma age) + (1 - g^a) softmax(beta^w cos(k^w, M))), and
       M_t = M (1 - w^w e) + w^w a (NTM erase/add). Ages: age_t = (age + 1) prod(1 - w^w);
       an empty memory starts with ages N, N-1, ..., 1, so it is filled in slot order.
    2. **Read** (associative recall). Scores s = beta cos(k, M_t); each head mixes the
       top-k, uniform and random policies with its own learned, input-dependent gate pi
       (:mod:`torchmem.core.policies`) into W_base, which spreads one hop through the graph
       of the previous step: W_final = (1 - alpha) W_base + alpha W_base A_{t-1};
       r = W_final M_t.
    3. **Link.** Slot activity is the heads' mean W_base (``activity="read"``; base, not
       final weights, so the graph does not feed on its own spreading);
       A_t = bound((1 - lambda) A_{t-1} + eta activity_{t-1} (x) activity_t).
    """

    def __init__(
        self,
        hidden_size: int,
        memory_slots: int,
        memory_width: int,
        read_heads: int,
        write_heads: int,
        bottleneck_size: int,
        policies: tuple[str, ...] = POLICIES,
        top_k: int = 4,
        random_temperature: float = 1.0,
        hebbian_rate: float = 0.5,
        hebbian_decay: float = 0.02,
        spread_alpha: float = 0.2,
        activity: str = "read",
    ):
        super().__init__()
        unknown = [p for p in policies if p not in POLICIES]
        if unknown or not policies or len(set(policies)) != len(policies):
            raise ValueError(
                f"read policies must be distinct names from {', '.join(POLICIES)}, "
                f"got {', '.join(policies) or 'none'}"
            )
        if activity not in HEBBIAN_ACTIVITIES:
            raise ValueError(
                f"unknown Hebbian activity {activity!r}; valid: {', '.join(HEBBIAN_ACTIVITIES)}"
            )
        self.memory_slots, self.memory_width = memory_slots, memory_width
        self.read_heads, self.write_heads = read_heads, write_heads
        self.bottleneck_size = bottleneck_size
        self.policies = tuple(policies)
        self.top_k, self.random_temperature = top_k, random_temperature
        self.hebbian_rate, self.hebbian_decay = hebbian_rate, hebbian_decay
        self.spread_alpha, self.activity = spread_alpha, activity
        w, p = memory_width, len(self.policies)
        self.read_interface = nn.Linear(hidden_size, read_heads * (w + 1 + p))
        self.write_control = nn.Linear(hidden_size, write_heads * 4)
        self.bottleneck = nn.Linear(hidden_size, write_heads * bottleneck_size)
        self.write_content = nn.Linear(bottleneck_size, 3 * w)  # key, erase, value

    @property
    def uses_noise(self) -> bool:
        return "random" in self.policies

    def initial_state(self, batch_size: int, device=None, dtype=None) -> MemNetMemoryState:
        b, n, w = batch_size, self.memory_slots, self.memory_width
        r, v, p = self.read_heads, self.write_heads, len(self.policies)

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(*shape, device=device, dtype=dtype)

        ages = torch.arange(n, 0, -1, device=device, dtype=dtype).repeat(b, 1)
        return MemNetMemoryState(
            zeros(b, n, w), ages, zeros(b, n, n), zeros(b, n),
            zeros(b, r, n), zeros(b, r, n), zeros(b, r, p), zeros(b, v, n), zeros(b, r, w),
        )  # fmt: skip

    def interface(self, hidden: Tensor) -> tuple[ReadInterface, WriteInterface]:
        """hidden h (B, D) -> the read and write heads' parameters."""
        batch, w = hidden.shape[0], self.memory_width
        raw = self.read_interface(hidden).view(batch, self.read_heads, -1)
        read = ReadInterface(
            raw[..., :w], oneplus(raw[..., w]), torch.softmax(raw[..., w + 1 :], dim=-1)
        )
        control = self.write_control(hidden).view(batch, self.write_heads, 4)
        code = torch.tanh(self.bottleneck(hidden).view(batch, self.write_heads, -1))  # z
        key, erase, value = self.write_content(code).split(w, dim=-1)
        write = WriteInterface(
            key,
            oneplus(control[..., 0]),
            torch.sigmoid(control[..., 1]),
            oneplus(control[..., 2]),
            torch.sigmoid(control[..., 3]),
            torch.sigmoid(erase),
            torch.tanh(value),
        )
        return read, write

    def step(
        self, hidden: Tensor, state: MemNetMemoryState, gumbel: Tensor | None = None
    ) -> MemNetMemoryState:
        """hidden (B, D); gumbel (B, R, N) noise for the random policy (None: no noise)."""
        read, write = self.interface(hidden)
        return self.update(read, write, state, gumbel)

    def update(
        self,
        read: ReadInterface,
        write: WriteInterface,
        state: MemNetMemoryState,
        gumbel: Tensor | None = None,
    ) -> MemNetMemoryState:
        """One write, read and link (see the class docstring) from explicit head parameters."""
        content = content_weights(state.memory, write.keys, write.strengths)  # (B, V, N)
        oldest = age_weights(state.ages, write.age_sharpness)
        allocation = write.allocation_gate.unsqueeze(-1)
        write_weights = write.write_gate.unsqueeze(-1) * (
            allocation * oldest + (1.0 - allocation) * content
        )
        memory = erase_and_add(state.memory, write_weights, write.erase, write.values)
        ages = update_ages(state.ages, write_weights)

        scores = read.strengths.unsqueeze(-1) * cosine_similarity(memory, read.keys)
        candidates = policy_candidates(
            scores, self.policies, self.top_k, self.random_temperature, gumbel
        )
        base = mix_policies(candidates, read.policy_weights)  # (B, R, N)
        final = spread_activation(base, state.adjacency, self.spread_alpha)

        if self.activity == "read":
            activity = base.mean(dim=1)
        elif self.activity == "write":
            activity = write_weights.mean(dim=1)
        else:
            activity = 0.5 * (base.mean(dim=1) + write_weights.mean(dim=1))
        adjacency = hebbian_update(
            state.adjacency,
            state.activity,
            activity,
            self.hebbian_rate,
            self.hebbian_decay,
            GRAPH_MAX_ROW_SUM,
        )
        return MemNetMemoryState(
            memory, ages, adjacency, activity, final, base, read.policy_weights,
            write_weights, weighted_read(memory, final),
        )  # fmt: skip


class MemorySynthesizer(nn.Module):
    """ "Dreaming": self-attention over the memory slots with a residual refinement, then a
    merge of redundant slots.

    memory (B, N, W) is read as a set of N tokens of width W (no positions: slots are
    unordered, so the refinement is permutation-equivariant). One pre-norm transformer
    block, M' = M + a * Attn(LN(M)); M'' = M' + b * MLP(LN(M')), with ReZero scalars a and b
    that start at 0, so an untrained synthesizer leaves the contents as they are and
    learns how far to move them. Then :func:`~torchmem.core.consolidation.
    merge_redundant_slots` merges near-duplicate slots (cosine above ``merge_threshold``),
    frees them (zero content, oldest age) and re-attaches their graph edges;
    ``merge_threshold >= 1`` turns merging off.
    """

    def __init__(self, memory_width: int, heads: int, merge_threshold: float = 0.9):
        super().__init__()
        if memory_width % heads:
            raise ValueError(f"dream heads ({heads}) must divide the memory width ({memory_width})")
        self.heads, self.merge_threshold = heads, merge_threshold
        w = memory_width
        self.attention_norm = nn.LayerNorm(w)
        self.qkv = nn.Linear(w, 3 * w)
        self.attention_out = nn.Linear(w, w)
        self.mlp_norm = nn.LayerNorm(w)
        self.mlp = nn.Sequential(nn.Linear(w, 2 * w), nn.GELU(), nn.Linear(2 * w, w))
        self.attention_gate = nn.Parameter(torch.zeros(()))  # a
        self.mlp_gate = nn.Parameter(torch.zeros(()))  # b

    def refine(self, memory: Tensor) -> Tensor:
        """The learned residual refinement: memory (B, N, W) -> (B, N, W)."""
        b, n, w = memory.shape
        h = self.heads
        q, k, v = self.qkv(self.attention_norm(memory)).view(b, n, 3, h, w // h).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, N, W / heads)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(w // h)
        mixed = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, n, w)
        memory = memory + self.attention_gate * self.attention_out(mixed)
        return memory + self.mlp_gate * self.mlp(self.mlp_norm(memory))

    def forward(self, memory: Tensor, ages: Tensor, adjacency: Tensor) -> MergeResult:
        """memory (B, N, W), ages (B, N), adjacency (B, N, N) -> the dreamed-over versions."""
        memory = self.refine(memory)
        if self.merge_threshold >= 1:
            return MergeResult(memory, ages, adjacency, ages.new_zeros(ages.shape))
        return merge_redundant_slots(
            memory, ages, adjacency, self.merge_threshold, GRAPH_MAX_ROW_SUM
        )


__all__ = [
    "GRAPH_MAX_ROW_SUM",
    "HEBBIAN_ACTIVITIES",
    "MemNetMemoryState",
    "MemorySynthesizer",
    "MultiHeadMemoryBank",
    "ReadInterface",
    "WriteInterface",
]
