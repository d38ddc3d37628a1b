"""Memoria Transformer (Park & Bak, ICML 2024, arXiv:2310.03052): a GPT-style decoder with
Memoria's engram memory, reading a long sequence segment by segment.

Per segment n of S tokens (the paper's Memoria Transformer, as in its experiment code):

1. **Working memory.** An :class:`~torchmem.memoria.Abstractor` summarises the final
   hidden states of segment n-1 into W vectors, ``M_wm = Abstractor(h_{n-1})``.
2. **Remind.** ``M_wm`` is added to Memoria as working-memory engrams and
   ``Memoria.remind()`` returns the short- and long-term engrams it reminds,
   ``M_rem`` (R vectors, -1 indices for padding), firing them together (Hebbian counts).
3. **Decode.** Every block runs causal self-attention, then cross-attention to ``M_wm``,
   then to ``M_rem`` (one shared cross-attention, one norm per stream), then its MLP.
4. **Memorize & forget.** Each reminded engram i gains lifespan
   ``delta_i = a_i * R_b * lifespan_extend_scale``, where ``a_i`` is the attention it
   received averaged over layers, heads and the segment's S tokens and ``R_b`` is the
   number of real engrams reminded for that example (so uniform attention gives
   ``lifespan_extend_scale``); then ``Memoria.adjust_lifespan_and_memories`` ages every
   engram, turns working memory into short-term memory, moves short-term overflow to
   long-term memory and forgets engrams whose lifespan ran out.

The first segment has no working memory and reminds nothing. Gradients flow into the
Abstractor through the working memory of the segment that reads it; the hidden states it
summarises and every engram are detached (Memoria is rule-updated, not trained through).

The engram memory is used through the memoria-pytorch API (``torchmem.memoria.Memoria``,
a drop-in re-implementation of memoria-pytorch 1.1.0). Its store lives in the state as
plain tensors (:class:`EngramState`) and a transient ``Memoria`` is rebuilt around copies
of them at each segment boundary, so the model keeps no state on ``self``. Memoria's
random tie-breaks draw from a private generator seeded by the segment's index, so the
model is a deterministic function of its inputs and never moves torch's global generator.

Differences from the paper's experiment code (GPT-2 with Memoria), all deliberate:
rotary relative positions instead of learned absolute ones (shared with the baselines);
``R_b`` counts the real reminded engrams of each example instead of the padded width of the
batch (which made one example's lifespans depend on the others); an example with no real
reminded engram gets a zero read instead of a uniform read of padding; attention weights
for the lifespans are taken before dropout.

Legend: B batch, T time, S segment length, D width, W working-memory slots
(``num_memories``), R reminded engrams, N engram slots in the store, L layers, H heads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .._validation import check_sequence_input
from ..config import build_config
from ..memoria import Abstractor, Engrams, Memoria
from ._decoder import Memory, SegmentDecoder, check_segment_config, run_in_segments, steps_taken
from .segment_transformer import (
    DecoderCache,
    SegmentTransformerConfig,
    cached_piece,
    initial_cache,
)

_TIE_BREAK_SEED = 0x6D656D6F  # "memo"; plus the segment index


@dataclass
class MemoriaTransformerConfig(SegmentTransformerConfig):
    """Memoria Transformer options: the decoder's (see :class:`SegmentTransformerConfig`)
    plus Memoria's. The paper's sorting run used W=128, stm_capacity=512,
    num_reminded_stm=256, num_reminded_ltm=640, ltm_search_depth=10, initial_lifespan=5,
    lifespan_extend_scale=8 on a 512-wide, 4-layer model; the defaults here are scaled down
    to train on a CPU.

    Attributes:
        num_memories: W, working-memory engrams the Abstractor makes per segment.
        stm_capacity: short-term engrams kept per example; older ones become long-term.
        num_reminded_stm: short-term engrams the working memory reminds.
        num_reminded_ltm: long-term engrams returned after the search (``num_final_ltms``).
        ltm_search_depth: steps of the greedy walk along long-term links.
        initial_lifespan: lifespan of a new engram, in segments.
        lifespan_extend_scale: lifespan gained by an engram of average attention.
        fix_reference_bugs: use Memoria's corrected behaviour for memoria-pytorch's known
            bugs (padding competing in top-k, engram 0 reminded when there is no long-term
            memory, ...; see :class:`torchmem.memoria.Memoria`). False reproduces the
            reference exactly.
    """

    num_memories: int = 16
    stm_capacity: int = 64
    num_reminded_stm: int = 16
    num_reminded_ltm: int = 32
    ltm_search_depth: int = 5
    initial_lifespan: int = 5
    lifespan_extend_scale: float = 8.0
    fix_reference_bugs: bool = True


class EngramState(NamedTuple):
    """Memoria's engram store as tensors (front-padded per example, as Memoria keeps it).

    Attributes:
        data: (B, N, D) float32 engram vectors (0 in padding slots).
        induce_counts: (B, N, N) int32 co-firing counts (the Hebbian links).
        types: (B, N) uint8 :class:`~torchmem.memoria.EngramType` values (0 = padding).
        lifespan: (B, N) float32 remaining lifespan, in segments.
    """

    data: Tensor
    induce_counts: Tensor
    types: Tensor
    lifespan: Tensor


class MemoriaTransformerState(NamedTuple):
    """Everything the Memoria Transformer carries between calls.

    Attributes:
        cache: self-attention keys and values of the open segment's tokens so far.
        hidden: (B, F, D) final hidden states of the current segment so far, detached.
            F = S means the segment is complete: they become the next working memory.
        working_memory: (B, W, D) the open segment's working memory (W = 0 in the first
            segment); it carries the Abstractor's graph until detached.
        reminded: (B, R, D) engrams reminded for the open segment (0 for padding).
        reminded_indices: (B, R) int64 their slots in ``engrams``, -1 for padding.
        attention_sums: (B, R) attention each reminded engram received so far in the open
            segment, summed over layers, heads and tokens.
        engrams: Memoria's store.
    """

    cache: DecoderCache
    hidden: Tensor
    working_memory: Tensor
    reminded: Tensor
    reminded_indices: Tensor
    attention_sums: Tensor
    engrams: EngramState


class MemoriaTransformer(nn.Module):
    """``y, state = model(x, state=None)``, x (B, T, input_size) -> logits (B, T, output_size).

    Reads x in segments of ``segment_length`` tokens; between segments, Memoria remembers
    (see the module docstring). Segments may be split over several calls.
    """

    config_class = MemoriaTransformerConfig

    def __init__(self, input_size: int, output_size: int, **options):
        super().__init__()
        owner = "memoria-transformer"
        self.config = c = build_config(
            MemoriaTransformerConfig,
            {"input_size": input_size, "output_size": output_size, **options},
            owner,
        )
        check_segment_config(c, owner)
        for name in ("num_memories", "initial_lifespan"):
            if getattr(c, name) < 1:
                raise ValueError(f"{owner} option {name} must be >= 1, got {getattr(c, name)}")
        for name in ("stm_capacity", "num_reminded_stm", "num_reminded_ltm", "ltm_search_depth"):
            if getattr(c, name) < 0:
                raise ValueError(f"{owner} option {name} must be >= 0, got {getattr(c, name)}")
        if not (math.isfinite(c.lifespan_extend_scale) and c.lifespan_extend_scale >= 0):
            raise ValueError(
                f"{owner} option lifespan_extend_scale must be a finite number >= 0, "
                f"got {c.lifespan_extend_scale}"
            )
        self.decoder = SegmentDecoder(
            c.input_size, c.output_size, c.hidden_size, c.num_heads, c.num_layers,
            c.ff_size, c.dropout, memory_streams=2,
        )  # fmt: skip
        self.abstractor = Abstractor(c.num_memories, c.hidden_size, c.ff_size)

    @classmethod
    def from_config(cls, config: MemoriaTransformerConfig) -> MemoriaTransformer:
        return cls(**dataclasses.asdict(config))

    # ------------------------------------------------------------------------------------
    # State
    # ------------------------------------------------------------------------------------

    def initial_state(self, batch_size: int, device=None, dtype=None) -> MemoriaTransformerState:
        p = self.decoder.head.weight
        device, dtype = device or p.device, dtype or p.dtype
        width = self.config.hidden_size
        empty = torch.zeros(batch_size, 0, width, device=device, dtype=dtype)
        return MemoriaTransformerState(
            cache=initial_cache(self.decoder, batch_size, device, dtype),
            hidden=empty,
            working_memory=empty,
            reminded=empty,
            reminded_indices=torch.zeros(batch_size, 0, dtype=torch.long, device=device),
            attention_sums=torch.zeros(batch_size, 0, device=device, dtype=dtype),
            engrams=EngramState(
                torch.zeros(batch_size, 0, width, device=device),
                torch.zeros(batch_size, 0, 0, dtype=torch.int32, device=device),
                torch.zeros(batch_size, 0, dtype=torch.uint8, device=device),
                torch.zeros(batch_size, 0, device=device),
            ),
        )

    def _memoria(self, engrams: EngramState) -> Memoria:
        """A transient Memoria around copies of the stored engrams (it edits in place)."""
        c = self.config
        memoria = Memoria(
            num_reminded_stm=c.num_reminded_stm,
            stm_capacity=c.stm_capacity,
            ltm_search_depth=c.ltm_search_depth,
            initial_lifespan=c.initial_lifespan,
            num_final_ltms=c.num_reminded_ltm,
            fix_reference_bugs=c.fix_reference_bugs,
        )
        if engrams.data.shape[1]:
            memoria.engrams = Engrams(
                engrams.data.detach().float().clone(),
                induce_counts=engrams.induce_counts.clone(),
                engrams_types=engrams.types.clone(),
                lifespan=engrams.lifespan.detach().float().clone(),
            )
        return memoria

    @staticmethod
    def _engram_state(memoria: Memoria) -> EngramState:
        e = memoria.engrams
        return EngramState(e.data, e.induce_counts, e.engrams_types, e.lifespan)

    # ------------------------------------------------------------------------------------
    # Segment boundaries
    # ------------------------------------------------------------------------------------

    def _open_segment(self, state: MemoriaTransformerState, segment: int):
        """Steps 1-2: abstract the finished segment into working memory and remind."""
        previous = state.hidden
        empty = previous[:, :0]
        if previous.shape[1] == 0:  # the first segment: nothing to remember yet
            return state._replace(working_memory=empty, reminded=empty)
        working_memory = self.abstractor(previous)  # (B, W, D), with gradient
        memoria = self._memoria(state.engrams)
        with _private_generator(working_memory.device, _TIE_BREAK_SEED + segment):
            memoria.add_working_memory(working_memory.detach())
            reminded, indices = memoria.remind()  # (B, R, D), (B, R)
        return state._replace(
            hidden=empty,
            working_memory=working_memory,
            reminded=reminded.to(previous.dtype),
            reminded_indices=indices,
            attention_sums=previous.new_zeros(indices.shape),
            engrams=self._engram_state(memoria),
        )

    def _close_segment(self, state: MemoriaTransformerState, segment: int):
        """Step 4: lifespan deltas from the attention received, then memorize & forget."""
        if state.working_memory.shape[1] == 0:  # the first segment did not use Memoria
            return state
        c = self.config
        indices = state.reminded_indices
        real = (indices >= 0).sum(dim=1, keepdim=True)  # (B, 1) R_b
        reads = c.num_layers * c.num_heads * c.segment_length
        delta = state.attention_sums / reads * real * c.lifespan_extend_scale  # (B, R)
        memoria = self._memoria(state.engrams)
        with _private_generator(indices.device, _TIE_BREAK_SEED + segment):
            memoria.adjust_lifespan_and_memories(indices.clone(), delta.detach().float())
        return state._replace(engrams=self._engram_state(memoria))

    # ------------------------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------------------------

    def _piece(self, x: Tensor, state: MemoriaTransformerState):
        """Run x (B, T', I) lying inside one segment; open / close the segment around it."""
        c = self.config
        steps = int(state.cache.steps[0])
        segment, filled = divmod(steps, c.segment_length)
        if filled == 0:
            state = self._open_segment(state, segment)
        memories = (
            Memory(state.working_memory),
            Memory(state.reminded, state.reminded_indices >= 0, need_weights=True),
        )
        out, cache = cached_piece(
            self.decoder, x, state.cache, c.segment_length, 0, "memoria-transformer", memories
        )
        received = state.attention_sums
        for weights in out.memory_weights:  # per layer: [working memory, reminded]
            if weights[1] is not None:
                received = received + weights[1].detach().sum(dim=(1, 2))
        state = state._replace(
            cache=cache,
            hidden=torch.cat([state.hidden, out.hidden.detach()], dim=1),
            attention_sums=received,
        )
        if filled + x.shape[1] == c.segment_length:
            state = self._close_segment(state, segment)
        return out.logits, state

    def forward(
        self, x: Tensor, state: MemoriaTransformerState | None = None
    ) -> tuple[Tensor, MemoriaTransformerState]:
        c = self.config
        check_sequence_input(x, c.input_size, "MemoriaTransformer")
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        steps = steps_taken(state.cache.steps, x.shape[0], "MemoriaTransformer")
        return run_in_segments(
            self._piece, x, state, steps % c.segment_length, c.segment_length,
            c.grad_segments, c.output_size,
        )  # fmt: skip


@contextmanager
def _private_generator(device: torch.device, seed: int) -> Iterator[None]:
    """Seed torch's generator for ``device`` inside the block and restore it afterwards."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            torch.cuda.default_generators[index].manual_seed(seed)
            yield
        return
    # CPU (or another device whose draws come from the CPU generator in Memoria): seeding
    # the default generator directly skips torch.manual_seed's per-call CUDA bookkeeping.
    saved = torch.default_generator.get_state()
    try:
        torch.default_generator.manual_seed(seed)
        yield
    finally:
        torch.default_generator.set_state(saved)
