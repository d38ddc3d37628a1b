"""Gap recall: key-value facts in a stream of distractors, one of them queried a controlled
number of steps later (experiment 1 of "Memory Is All You Need": accuracy against the
distance between a fact and its query).

Every example is a stream of S steps holding K key-value *facts* (distinct keys) at random
positions, every other step a *distractor* (random key and value bits, fact flag off), then
a query step that shows the key of one fact, then an answer step whose target is that fact's
value. The **gap** of an example is the number of steps from the queried fact to the query
(1: the fact came just before it). It is drawn per example, uniformly from
``[min_gap, max_gap]``, and recorded (:meth:`GapRecallTask.sample_with_gaps`,
:func:`gaps_of`), so that accuracy can be binned by gap. The other K - 1 facts lie anywhere
in the stream, before or after the queried one: the model has to keep all of them, and
ignore the distractors, because it learns which key is asked only at the query.

Layout (T = S + 2 steps, S = max(max_gap, facts), or the forced gap when it is larger):

* steps 0..S-1, channels: key bits ``0..bits-1``, value bits ``bits..2 bits-1``, fact flag
  ``2 bits`` (1 on the K fact steps, 0 on distractors);
* step S: the query, its key on the key channels and the query flag ``2 bits + 1``;
* step S+1: zero input; target = the queried value (``bits`` outputs), the only scored step.

``input_size = 2 bits + 2``, ``output_size = bits``. Scoring is :class:`BitTask`'s: masked
BCE, ``sequence_accuracy`` is the fraction of values recalled with every bit right (chance
``2**-bits``).

Legend: B batch, S stream steps, T = S + 2, K facts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Batch, BitTask, check_batch_size, distinct_rows, generator_device, random_bits

__all__ = ["GapRecallConfig", "GapRecallTask", "gaps_of"]

_F32 = torch.float32


@dataclass(frozen=True)
class GapRecallConfig:
    """Gap recall settings.

    Attributes:
        bits: width of keys and values (the answer has ``bits`` outputs).
        facts: K, key-value facts per example (distinct keys, so ``2**bits >= facts``).
        min_gap, max_gap: range of the queried fact's gap (steps from it to the query).
    """

    bits: int = 4
    facts: int = 4
    min_gap: int = 1
    max_gap: int = 16

    def __post_init__(self) -> None:
        if self.bits < 1:
            raise ValueError(f"bits must be >= 1, got {self.bits}")
        if self.facts < 1:
            raise ValueError(f"facts must be >= 1, got {self.facts}")
        if self.bits < 63 and 2**self.bits < self.facts:
            raise ValueError(
                f"{self.facts} facts need distinct keys, impossible with {self.bits} bits"
            )
        if self.min_gap < 1:
            raise ValueError(f"min_gap must be >= 1, got {self.min_gap}")
        if self.max_gap < self.min_gap:
            raise ValueError(f"max_gap ({self.max_gap}) must be >= min_gap ({self.min_gap})")


def gaps_of(batch: Batch, bits: int) -> Tensor:
    """The gap of every example, read back from its inputs: (B,) int64.

    The query step is the one with the query flag; the queried fact is the fact step whose
    key equals the query's key (fact keys are distinct). Gap = query step - fact step.
    """
    inputs = batch.inputs
    query_step = inputs[:, :, 2 * bits + 1].argmax(dim=1)  # (B,)
    rows = torch.arange(inputs.shape[0], device=inputs.device)
    query_key = inputs[rows, query_step, :bits]  # (B, bits)
    is_fact = inputs[:, :, 2 * bits] > 0.5  # (B, T)
    same_key = (inputs[:, :, :bits] == query_key.unsqueeze(1)).all(dim=-1)  # (B, T)
    fact_step = (is_fact & same_key).to(torch.int64).argmax(dim=1)
    return query_step - fact_step


class GapRecallTask(BitTask):
    """Recall the value of a fact queried ``gap`` steps after it (see the module docstring)."""

    name = "gap_recall"

    def __init__(self, config: GapRecallConfig | None = None) -> None:
        self.config = config if config is not None else GapRecallConfig()
        self.input_size = 2 * self.config.bits + 2
        self.output_size = self.config.bits

    def input_labels(self) -> list[str]:
        bits = self.config.bits
        keys = [f"key {i}" for i in range(bits)]
        return keys + [f"val {i}" for i in range(bits)] + ["fact", "query"]

    def describe(self, batch: Batch, index: int) -> str:
        return f"gap {int(gaps_of(_row(batch, index), self.config.bits))}"

    def draw_keys(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> Tensor:
        """The K fact keys of every example, distinct within it: (B, K, bits) of 0/1 floats,
        uniform over all ``2**bits`` keys (subclasses may draw from fewer)."""
        shape = (batch_size, self.config.facts, self.config.bits)
        return distinct_rows(random_bits(shape, generator, device), generator, device)

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        length: int | None = None,
    ) -> Batch:
        """Draw a batch; ``length`` forces every example's gap (any value >= 1)."""
        return self.sample_with_gaps(batch_size, generator, length)[0]

    def sample_with_gaps(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        length: int | None = None,
    ) -> tuple[Batch, Tensor]:
        """Draw a batch and the gap of each example.

        Args:
            batch_size: B.
            generator: source of all randomness (torch's global one if None).
            length: forced gap for every example (>= 1, may exceed ``max_gap``); None draws
                each example's gap uniformly from ``[min_gap, max_gap]``.

        Returns:
            ``(Batch, gaps)``: inputs (B, T, 2 bits + 2), targets (B, T, bits), mask (B, T),
            T = S + 2; gaps (B,) int64.
        """
        cfg = self.config
        check_batch_size(batch_size)
        device = generator_device(generator)
        if length is not None:
            if isinstance(length, bool) or not isinstance(length, int) or length < 1:
                raise ValueError(f"length (the forced gap) must be an int >= 1, got {length!r}")
        stream = max(cfg.max_gap, cfg.facts, length or 0)  # S
        bits, facts = cfg.bits, cfg.facts
        rows = torch.arange(batch_size, device=device)
        if length is None:
            gaps = torch.randint(
                cfg.min_gap, cfg.max_gap + 1, (batch_size,), generator=generator, device=device
            )
        else:
            gaps = torch.full((batch_size,), length, dtype=torch.int64, device=device)

        # Fact positions: the queried one at S - gap, the K - 1 others at random elsewhere.
        priority = torch.rand(batch_size, stream, generator=generator, device=device)
        queried = stream - gaps
        priority[rows, queried] = 2.0  # above every random priority: always chosen, first
        positions = torch.topk(priority, facts, dim=1).indices  # (B, K), [:, 0] = queried

        keys = self.draw_keys(batch_size, generator, device)
        values = random_bits((batch_size, facts, bits), generator, device)
        noise = random_bits((batch_size, stream, 2 * bits), generator, device)

        total = stream + 2
        inputs = torch.zeros(batch_size, total, self.input_size, device=device, dtype=_F32)
        targets = torch.zeros(batch_size, total, self.output_size, device=device, dtype=_F32)
        mask = torch.zeros(batch_size, total, device=device, dtype=_F32)
        inputs[:, :stream, : 2 * bits] = noise
        fact_rows = rows.unsqueeze(1).expand(batch_size, facts)
        inputs[fact_rows, positions, : 2 * bits] = torch.cat([keys, values], dim=-1)
        inputs[fact_rows, positions, 2 * bits] = 1.0
        inputs[:, stream, :bits] = keys[:, 0]
        inputs[:, stream, 2 * bits + 1] = 1.0
        targets[:, stream + 1] = values[:, 0]
        mask[:, stream + 1] = 1.0
        return Batch(inputs, targets, mask), gaps


def _row(batch: Batch, index: int) -> Batch:
    end = index + 1 if index != -1 else None
    return Batch(batch.inputs[index:end], batch.targets[index:end], batch.mask[index:end])
