"""MemNet ("Memory Is All You Need"): a transformer controller wired to a Hebbian graph memory
with meta-policy reads, periodic dreaming, and a reconstruction ("hallucination") head.

Per time step t (the seed's four-stage cycle):

1. **Perception.** e_t = GELU(E x_t).
2. **Control.** h_t = TransformerController([e_t, r_{t-1}]) over a sliding window of the
   last ``controller_window`` steps (:mod:`torchmem.models.transformer_controller`).
3. **Write, read, link.** :class:`~torchmem.memories.memnet_memory.MultiHeadMemoryBank`
   writes through its semantic bottleneck, reads with the top-k / uniform / random mixture
   and spreading activation, and updates the Hebbian graph.
4. **Dreaming.** Every ``dream_every`` steps (and on demand, :meth:`MemNet.dream`)
   :class:`~torchmem.memories.memnet_memory.MemorySynthesizer` refines the slots by
   self-attention and merges redundant ones.

Output: y_t = V GELU(F [h_t, r_t]) (the fusion layer, then the read-out). The
reconstruction head rebuilds x_t from the read vectors r_t alone.

Loss (:meth:`MemNet.forward_with_losses`, used by the trainer):
L = L_task + l1 L_reconstruction + l2 L_utilization + l3 L_sparsity, with L_reconstruction the
MSE of the reconstruction against x, L_utilization = 1 - H(slot use over the episode) / log N
(use: the base read weights and the write weights), L_sparsity = mean H(base read
weights) / log N (see :mod:`torchmem.core.regularizers`).

Randomness: the random read policy's Gumbel noise is a hash of (the example's
``noise_key``, its step counter, head, slot) (:func:`torchmem.core.policies.counter_uniform`),
both fields of the state, so a run is a deterministic function of its initial state and
gives the same numbers whole, in chunks or step by step. ``initial_state`` draws the keys
from the ``generator`` it is given, else (in training mode) from torch's global generator,
which the trainer seeds and checkpoints. In eval mode there is no noise: the random policy
is the tempered content softmax, like dropout switched off.

Legend: B batch, T time, I input width, O output width, D controller width, N slots,
W slot width, R read heads, V write heads, P read policies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .._validation import check_positive
from ..config import build_config
from ..core.policies import POLICIES, counter_uniform, gumbel_from_uniform
from ..core.regularizers import (
    LossTerm,
    reconstruction_loss,
    sparsity_loss,
    utilization_loss,
)
from ..memories.memnet_memory import (
    HEBBIAN_ACTIVITIES,
    MemNetMemoryState,
    MemorySynthesizer,
    MultiHeadMemoryBank,
)
from ._unroll import run_model
from .transformer_controller import TransformerController, TransformerControllerState

_NOISE_KEY_RANGE = 2**31 - 1


@dataclass
class MemNetConfig:
    """MemNet options. The seed gives no numbers; the defaults are small enough to train the
    copy task on a CPU and every choice is an option.

    Attributes:
        hidden_size: D, width of the encoder, controller and fusion layer.
        controller_layers, controller_heads: transformer controller depth and heads.
        controller_window: C, past steps the controller attends to (0: feed-forward).
        memory_slots: N. memory_width: W.
        read_heads: R. write_heads: V.
        bottleneck_size: Z, units of the semantic bottleneck the written content passes.
        policies: comma-separated read policies the meta-policy mixes (any of
            ``topk,uniform,random``; fewer for ablations).
        top_k: k of the top-k policy.
        random_temperature: tau of the random (Gumbel-softmax) policy.
        hebbian_rate: eta of the Hebbian update. hebbian_decay: its decay lambda per step.
        hebbian_activity: slot activity the graph links: ``read`` (mean base read weights),
            ``write`` (mean write weights) or ``both``.
        spread_alpha: alpha of spreading activation (0 turns it off).
        dream_every: k, dream after every k-th step (0: only on demand).
        dream_heads: attention heads of the synthesizer (must divide W).
        merge_threshold: cosine from which dreaming merges slots (>= 1: never).
        reconstruction_weight, utilization_weight, sparsity_weight: l1, l2, l3.
    """

    input_size: int = 9
    output_size: int = 8
    hidden_size: int = 64
    controller_layers: int = 2
    controller_heads: int = 4
    controller_window: int = 8
    memory_slots: int = 64  # N (>= 41 so copies of length 40 fit, as for the DNC)
    memory_width: int = 16
    read_heads: int = 2
    write_heads: int = 1
    bottleneck_size: int = 8
    policies: str = "topk,uniform,random"
    top_k: int = 4
    random_temperature: float = 1.0
    hebbian_rate: float = 0.5
    hebbian_decay: float = 0.02
    hebbian_activity: str = "read"
    spread_alpha: float = 0.2
    dream_every: int = 8
    dream_heads: int = 2
    merge_threshold: float = 0.9
    reconstruction_weight: float = 0.1
    utilization_weight: float = 0.01
    sparsity_weight: float = 0.01


def _check_config(c: MemNetConfig) -> tuple[str, ...]:
    """Raise a clear error for an impossible config; return the parsed policy names."""
    check_positive(
        c,
        (
            "hidden_size", "controller_layers", "controller_heads", "memory_slots",
            "memory_width", "read_heads", "write_heads", "bottleneck_size", "top_k",
            "dream_heads",
        ),
        "memnet",
    )  # fmt: skip
    for name in ("controller_window", "dream_every"):
        if getattr(c, name) < 0:
            raise ValueError(f"memnet option {name} must be >= 0, got {getattr(c, name)}")
    for name in ("hebbian_rate", "reconstruction_weight", "utilization_weight", "sparsity_weight"):
        if not getattr(c, name) >= 0:
            raise ValueError(f"memnet option {name} must be >= 0, got {getattr(c, name)}")
    for name in ("hebbian_decay", "spread_alpha"):
        if not 0 <= getattr(c, name) <= 1:
            raise ValueError(f"memnet option {name} must be in [0, 1], got {getattr(c, name)}")
    if not c.random_temperature > 0:
        raise ValueError(
            f"memnet option random_temperature must be > 0, got {c.random_temperature}"
        )
    if not c.merge_threshold > -1:
        raise ValueError(f"memnet option merge_threshold must be > -1, got {c.merge_threshold}")
    if c.hidden_size % c.controller_heads:
        raise ValueError(
            f"memnet controller_heads ({c.controller_heads}) must divide hidden_size "
            f"({c.hidden_size})"
        )
    if c.memory_width % c.dream_heads:
        raise ValueError(
            f"memnet dream_heads ({c.dream_heads}) must divide memory_width ({c.memory_width})"
        )
    if c.hebbian_activity not in HEBBIAN_ACTIVITIES:
        raise ValueError(
            f"unknown memnet hebbian_activity {c.hebbian_activity!r}; "
            f"valid: {', '.join(HEBBIAN_ACTIVITIES)}"
        )
    policies = tuple(p.strip() for p in c.policies.split(",") if p.strip())
    if (
        not policies
        or any(p not in POLICIES for p in policies)
        or len(set(policies)) < len(policies)
    ):
        raise ValueError(
            f"memnet option policies must be distinct names from {','.join(POLICIES)} "
            f"(comma-separated), got {c.policies!r}"
        )
    return policies


class MemNetState(NamedTuple):
    """MemNet state after step t; the weights are those used at step t."""

    controller: TransformerControllerState
    memory: Tensor  # (B, N, W)  M_t
    ages: Tensor  # (B, N)  steps since each slot was written
    adjacency: Tensor  # (B, N, N)  A_t, Hebbian edge i -> j
    activity: Tensor  # (B, N)  slot activity at t (the next update's Pre)
    read_weights: Tensor  # (B, R, N)  W_final (after spreading activation)
    base_read_weights: Tensor  # (B, R, N)  W_base (policy mixture)
    policy_weights: Tensor  # (B, R, P)  pi per head (order of ``config.policies``)
    write_weights: Tensor  # (B, V, N)
    read_vectors: Tensor  # (B, R, W)  r_t
    steps: Tensor  # (B,) int64, steps taken so far (dream schedule, noise counter)
    noise_key: Tensor  # (B,) int64, the example's key for the random policy's noise


class MemNet(nn.Module):
    """``y, state = memnet(x, state=None)``, x (B, T, input_size) -> y (B, T, output_size)
    logits; ``forward_with_losses`` adds the auxiliary loss terms."""

    config_class = MemNetConfig

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        self.config = c = build_config(
            MemNetConfig,
            {"input_size": input_size, "output_size": output_size, **options},
            "memnet",
        )
        policies = _check_config(c)
        d, reads = c.hidden_size, c.read_heads * c.memory_width
        self.encoder = nn.Sequential(nn.Linear(c.input_size, d), nn.GELU())
        self.controller = TransformerController(
            d + reads, d, c.controller_layers, c.controller_heads, c.controller_window
        )
        self.memory = MultiHeadMemoryBank(
            d, c.memory_slots, c.memory_width, c.read_heads, c.write_heads, c.bottleneck_size,
            policies, c.top_k, c.random_temperature, c.hebbian_rate, c.hebbian_decay,
            c.spread_alpha, c.hebbian_activity,
        )  # fmt: skip
        self.synthesizer = MemorySynthesizer(c.memory_width, c.dream_heads, c.merge_threshold)
        self.fusion = nn.Sequential(nn.Linear(d + reads, d), nn.GELU())
        self.readout = nn.Linear(d, c.output_size)
        self.reconstruction = nn.Sequential(
            nn.Linear(reads, d), nn.GELU(), nn.Linear(d, c.input_size)
        )

    @classmethod
    def from_config(cls, config: MemNetConfig) -> MemNet:
        return cls(**dataclasses.asdict(config))

    # -- state -------------------------------------------------------------------------
    def initial_state(
        self,
        batch_size: int,
        device=None,
        dtype=None,
        generator: torch.Generator | None = None,
    ) -> MemNetState:
        """A fresh state. The noise keys come from ``generator`` if given, else from torch's
        global generator in training mode, else (eval mode, no noise) they are 0."""
        p = self.readout.weight
        device, dtype = device or p.device, dtype or p.dtype
        if generator is not None:
            keys = torch.randint(
                _NOISE_KEY_RANGE, (batch_size,), generator=generator, device=generator.device
            )
        elif self.training and self.memory.uses_noise:
            keys = torch.randint(_NOISE_KEY_RANGE, (batch_size,))
        else:
            keys = torch.zeros(batch_size, dtype=torch.int64)
        return MemNetState(
            self.controller.initial_state(batch_size, device, dtype),
            *self.memory.initial_state(batch_size, device, dtype),
            torch.zeros(batch_size, dtype=torch.int64, device=device),
            keys.to(device),
        )

    def dream(self, state: MemNetState) -> MemNetState:
        """Run the synthesizer over every example's memory now ("on demand")."""
        dreamed = self.synthesizer(state.memory, state.ages, state.adjacency)
        return state._replace(memory=dreamed.memory, ages=dreamed.ages, adjacency=dreamed.adjacency)

    # -- one step ----------------------------------------------------------------------
    def _gumbel(self, state: MemNetState) -> Tensor | None:
        if not (self.training and self.memory.uses_noise):
            return None
        shape = (self.config.read_heads, self.config.memory_slots)
        uniform = counter_uniform(state.noise_key, state.steps, shape, state.memory.dtype)
        return gumbel_from_uniform(uniform)

    def _dream_if_due(self, memory: MemNetMemoryState, steps: Tensor) -> MemNetMemoryState:
        every = self.config.dream_every
        if every == 0:
            return memory
        due = steps % every == 0  # (B,)
        if not bool(due.any()):  # one host sync per step, and only when dreaming is on
            return memory
        dreamed = self.synthesizer(memory.memory, memory.ages, memory.adjacency)
        if not bool(due.all()):  # examples at different steps: dream only where due
            dreamed = [
                torch.where(due.view(-1, *([1] * (new.dim() - 1))), new, old)
                for new, old in zip(dreamed[:3], (memory.memory, memory.ages, memory.adjacency))
            ]
        return memory._replace(memory=dreamed[0], ages=dreamed[1], adjacency=dreamed[2])

    def _step(self, x_t: Tensor, state: MemNetState) -> tuple[Tensor, MemNetState]:
        reads = state.read_vectors.flatten(1)
        controller_in = torch.cat([self.encoder(x_t), reads], dim=-1)
        hidden, controller = self.controller.step(controller_in, state.controller)
        memory = self.memory.step(hidden, MemNetMemoryState(*state[1:10]), self._gumbel(state))
        steps = state.steps + 1
        memory = self._dream_if_due(memory, steps)
        features = torch.cat([hidden, memory.read_vectors.flatten(1)], dim=-1)
        return features, MemNetState(controller, *memory, steps, state.noise_key)

    def output(self, features: Tensor) -> Tensor:
        """The fusion layer and read-out: [h, r] (..., D + R W) -> logits (..., O)."""
        return self.readout(self.fusion(features))

    def reconstruct(self, read_vectors: Tensor) -> Tensor:
        """The hallucination head: read vectors (..., R, W) -> reconstructed input (..., I)."""
        return self.reconstruction(read_vectors.flatten(-2))

    # -- whole sequences ---------------------------------------------------------------
    def forward(self, x: Tensor, state: MemNetState | None = None) -> tuple[Tensor, MemNetState]:
        y, state, _ = run_model(self, x, state)
        return y, state

    def forward_with_losses(
        self, x: Tensor, state: MemNetState | None = None
    ) -> tuple[Tensor, MemNetState, dict[str, LossTerm]]:
        """Like ``forward``, plus the auxiliary terms ``reconstruction``, ``utilization`` and
        ``sparsity`` (unweighted values with their weights l1, l2, l3)."""
        fields = ("read_vectors", "base_read_weights", "write_weights")
        y, state, trace = run_model(self, x, state, fields)
        c, reads = self.config, trace["base_read_weights"]  # (B, T, R, N)
        addressing = torch.cat([reads, trace["write_weights"]], dim=2)
        terms = {
            "reconstruction": LossTerm(
                reconstruction_loss(self.reconstruct(trace["read_vectors"]), x),
                c.reconstruction_weight,
            ),
            "utilization": LossTerm(utilization_loss(addressing), c.utilization_weight),
            "sparsity": LossTerm(sparsity_loss(reads), c.sparsity_weight),
        }
        return y, state, terms

    def trace(
        self, x: Tensor, state: MemNetState | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Like ``forward`` but also returns, time at dim 1: ``read_weights``,
        ``base_read_weights``, ``policy_weights``, ``write_weights``, ``ages``, ``activity``,
        ``read_vectors`` and ``reconstruction`` (B, T, I)."""
        fields = (
            "read_weights", "base_read_weights", "policy_weights", "write_weights", "ages",
            "activity", "read_vectors",
        )  # fmt: skip
        y, _, trace = run_model(self, x, state, fields)
        trace["reconstruction"] = self.reconstruct(trace["read_vectors"])
        return y, trace


__all__ = ["MemNet", "MemNetConfig", "MemNetState"]
