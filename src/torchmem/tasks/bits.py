"""The algorithmic tasks of the Neural Turing Machine paper.

Graves, Wayne & Danihelka (2014), "Neural Turing Machines", section 4:
copy, repeat copy, associative recall and priority sort, with the paper's
default sizes. Shapes use ``B`` = batch size, ``T`` = total time steps.

Every sequence of a batch shares one length (or item/repeat count), drawn
once per batch from the generator; ``length=`` forces it, including values
beyond the configured range, to measure generalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import (
    Batch,
    BitTask,
    check_batch_size,
    distinct_rows,
    generator_device,
    random_bits,
    resolve_count,
)

__all__ = [
    "CopyConfig",
    "CopyTask",
    "RepeatCopyConfig",
    "RepeatCopyTask",
    "AssociativeRecallConfig",
    "AssociativeRecallTask",
    "PrioritySortConfig",
    "PrioritySortTask",
]

_F32 = torch.float32


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_range(low_name: str, low: int, high_name: str, high: int, minimum: int) -> None:
    _require(low >= minimum, f"{low_name} must be >= {minimum}, got {low}")
    _require(high >= low, f"{high_name} ({high}) must be >= {low_name} ({low})")


# --------------------------------------------------------------------------
# Copy
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyConfig:
    """Copy task settings (paper: 8-bit vectors, lengths 1 to 20).

    Attributes:
        bits: width of each random binary vector.
        min_length: shortest sequence sampled when no length is forced.
        max_length: longest sequence sampled when no length is forced.
    """

    bits: int = 8
    min_length: int = 1
    max_length: int = 20

    def __post_init__(self) -> None:
        _require(self.bits >= 1, f"bits must be >= 1, got {self.bits}")
        _check_range("min_length", self.min_length, "max_length", self.max_length, 1)


class CopyTask(BitTask):
    """Read a sequence of random bit vectors, then write it back.

    Layout for sequence length ``L`` (``T = 2L + 1`` steps):

    * steps ``0..L-1``: the vectors on input channels ``0..bits-1``;
    * step ``L``: only the delimiter channel (``bits``) is 1;
    * steps ``L+1..2L``: zero input, target = the vectors, scored.

    ``input_size = bits + 1``, ``output_size = bits``.
    """

    name = "copy"

    def __init__(self, config: CopyConfig | None = None) -> None:
        self.config = config if config is not None else CopyConfig()
        self.input_size = self.config.bits + 1
        self.output_size = self.config.bits

    def input_labels(self) -> list[str]:
        return [f"bit {i}" for i in range(self.config.bits)] + ["delim"]

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        length: int | None = None,
    ) -> Batch:
        """Draw a batch.

        Args:
            batch_size: ``B``.
            generator: source of all randomness (torch's global one if None).
            length: forced sequence length ``L`` (>= 1); drawn uniformly from
                ``[min_length, max_length]`` when None.

        Returns:
            ``Batch`` with inputs ``(B, 2L+1, bits+1)``, targets
            ``(B, 2L+1, bits)`` and mask ``(B, 2L+1)``.
        """
        cfg = self.config
        check_batch_size(batch_size)
        device = generator_device(generator)
        n = resolve_count(length, cfg.min_length, cfg.max_length, 1, "length", generator, device)
        seq = random_bits((batch_size, n, cfg.bits), generator, device)

        total = 2 * n + 1
        inputs = torch.zeros(batch_size, total, self.input_size, device=device, dtype=_F32)
        targets = torch.zeros(batch_size, total, self.output_size, device=device, dtype=_F32)
        mask = torch.zeros(batch_size, total, device=device, dtype=_F32)
        inputs[:, :n, : cfg.bits] = seq
        inputs[:, n, cfg.bits] = 1.0
        targets[:, n + 1 :] = seq
        mask[:, n + 1 :] = 1.0
        return Batch(inputs, targets, mask)


# --------------------------------------------------------------------------
# Repeat copy
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatCopyConfig:
    """Repeat copy settings (paper: 8 bits, lengths 1-10, repeats 1-10).

    Attributes:
        bits: width of each random binary vector.
        min_length, max_length: range of sequence lengths when not forced.
        min_repeats, max_repeats: range of repeat counts when not forced;
            also defines the normalisation of the repeat-count input.
    """

    bits: int = 8
    min_length: int = 1
    max_length: int = 10
    min_repeats: int = 1
    max_repeats: int = 10

    def __post_init__(self) -> None:
        _require(self.bits >= 1, f"bits must be >= 1, got {self.bits}")
        _check_range("min_length", self.min_length, "max_length", self.max_length, 1)
        _check_range("min_repeats", self.min_repeats, "max_repeats", self.max_repeats, 1)


class RepeatCopyTask(BitTask):
    """Read a sequence and a repeat count ``n``, write the sequence ``n`` times, then stop.

    Layout for length ``L`` and ``n`` repeats (``T = L + 1 + n*L + 1``):

    * steps ``0..L-1``: the vectors on input channels ``0..bits-1``;
    * step ``L``: delimiter channel (``bits``) = 1 and repeat channel
      (``bits+1``) = ``n`` normalised (see :meth:`normalise_repeats`);
    * steps ``L+1..L+n*L``: target = the sequence tiled ``n`` times;
    * step ``L+n*L+1`` (last): target = end marker on output channel ``bits``.

    The whole output phase (steps ``L+1..T-1``) is scored.
    ``input_size = bits + 2``, ``output_size = bits + 1``.
    """

    name = "repeat_copy"

    def __init__(self, config: RepeatCopyConfig | None = None) -> None:
        self.config = config if config is not None else RepeatCopyConfig()
        self.input_size = self.config.bits + 2
        self.output_size = self.config.bits + 1
        low, high = self.config.min_repeats, self.config.max_repeats
        # Moments of the discrete uniform distribution on [low, high], so the
        # input has mean 0 / variance 1 over the training repeat counts.
        self._repeat_mean = (low + high) / 2.0
        count = high - low + 1
        self._repeat_std = math.sqrt((count * count - 1) / 12.0) if count > 1 else 1.0

    def normalise_repeats(self, repeats: int | float) -> float:
        """Value fed on the repeat channel for ``repeats`` copies."""
        return (repeats - self._repeat_mean) / self._repeat_std

    def decode_repeats(self, value: float) -> int:
        """Inverse of :meth:`normalise_repeats`, rounded to the nearest count."""
        return int(round(value * self._repeat_std + self._repeat_mean))

    def input_labels(self) -> list[str]:
        return [f"bit {i}" for i in range(self.config.bits)] + ["delim", "repeats"]

    def output_labels(self) -> list[str]:
        return [f"bit {i}" for i in range(self.config.bits)] + ["end"]

    def scalar_ranges(self) -> dict[int, tuple[float, float]]:
        cfg = self.config
        return {
            cfg.bits + 1: (
                self.normalise_repeats(cfg.min_repeats),
                self.normalise_repeats(cfg.max_repeats),
            )
        }

    def describe(self, batch: Batch, index: int) -> str:
        delim = batch.inputs[index, :, self.config.bits]
        step = int(torch.nonzero(delim > 0.5)[0, 0].item())
        repeats = self.decode_repeats(float(batch.inputs[index, step, self.config.bits + 1]))
        return f"length {step}, repeats {repeats}"

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        length: int | None = None,
        repeats: int | None = None,
    ) -> Batch:
        """Draw a batch.

        Args:
            batch_size: ``B``.
            generator: source of all randomness (torch's global one if None).
            length: forced sequence length ``L`` (>= 1), else drawn from
                ``[min_length, max_length]``.
            repeats: forced repeat count ``n`` (>= 1), else drawn from
                ``[min_repeats, max_repeats]``. Counts outside the range are
                normalised with the training range's mean and std.

        Returns:
            ``Batch`` with inputs ``(B, T, bits+2)``, targets ``(B, T, bits+1)``
            and mask ``(B, T)``, ``T = L + 1 + n*L + 1``.
        """
        cfg = self.config
        check_batch_size(batch_size)
        device = generator_device(generator)
        n = resolve_count(length, cfg.min_length, cfg.max_length, 1, "length", generator, device)
        reps = resolve_count(
            repeats, cfg.min_repeats, cfg.max_repeats, 1, "repeats", generator, device
        )
        seq = random_bits((batch_size, n, cfg.bits), generator, device)

        total = n + 1 + reps * n + 1
        inputs = torch.zeros(batch_size, total, self.input_size, device=device, dtype=_F32)
        targets = torch.zeros(batch_size, total, self.output_size, device=device, dtype=_F32)
        mask = torch.zeros(batch_size, total, device=device, dtype=_F32)
        inputs[:, :n, : cfg.bits] = seq
        inputs[:, n, cfg.bits] = 1.0
        inputs[:, n, cfg.bits + 1] = self.normalise_repeats(reps)
        targets[:, n + 1 : n + 1 + reps * n, : cfg.bits] = seq.repeat(1, reps, 1)
        targets[:, -1, cfg.bits] = 1.0
        mask[:, n + 1 :] = 1.0
        return Batch(inputs, targets, mask)


# --------------------------------------------------------------------------
# Associative recall
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AssociativeRecallConfig:
    """Associative recall settings (paper: 6 bits, 3-vector items, 2-6 items).

    Attributes:
        bits: width of each binary vector.
        item_length: vectors per item.
        min_items, max_items: range of the item count when not forced (>= 2,
            since the query may not be the last item).
    """

    bits: int = 6
    item_length: int = 3
    min_items: int = 2
    max_items: int = 6

    def __post_init__(self) -> None:
        _require(self.bits >= 1, f"bits must be >= 1, got {self.bits}")
        _require(self.item_length >= 1, f"item_length must be >= 1, got {self.item_length}")
        _check_range("min_items", self.min_items, "max_items", self.max_items, 2)
        _check_capacity(self.bits, self.item_length, self.max_items)


def _check_capacity(bits: int, item_length: int, items: int) -> None:
    # Items are drawn distinct (otherwise the answer can be ambiguous), which
    # is impossible when there are fewer possible items than requested.
    code_bits = bits * item_length
    if code_bits < 63 and 2**code_bits < items:
        raise ValueError(
            f"{items} distinct items are impossible with bits * item_length = {code_bits} "
            f"({2**code_bits} possible items)"
        )


class AssociativeRecallTask(BitTask):
    """See a list of items, then given one item, output the item that followed it.

    Layout for ``K`` items of ``I`` vectors (``T = K*(I+1) + (I+2) + I``):

    * for each item ``k``: one step with item delimiter (channel ``bits``)
      set, then the item's ``I`` vectors on channels ``0..bits-1``;
    * query: a step with the query delimiter (channel ``bits+1``), the ``I``
      vectors of item ``q`` (``q`` uniform in ``0..K-2``, per example), and
      another query-delimiter step that asks for the answer;
    * last ``I`` steps: zero input, target = item ``q+1``, scored.

    Items within one example are distinct, so the answer is unambiguous.
    ``input_size = bits + 2``, ``output_size = bits``.
    """

    name = "associative_recall"

    def __init__(self, config: AssociativeRecallConfig | None = None) -> None:
        self.config = config if config is not None else AssociativeRecallConfig()
        self.input_size = self.config.bits + 2
        self.output_size = self.config.bits

    def input_labels(self) -> list[str]:
        return [f"bit {i}" for i in range(self.config.bits)] + ["item", "query"]

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        length: int | None = None,
    ) -> Batch:
        """Draw a batch.

        Args:
            batch_size: ``B``.
            generator: source of all randomness (torch's global one if None).
            length: forced number of items ``K`` (>= 2), else drawn from
                ``[min_items, max_items]``.

        Returns:
            ``Batch`` with inputs ``(B, T, bits+2)``, targets ``(B, T, bits)``
            and mask ``(B, T)``, ``T = K*(I+1) + 2*I + 2``.
        """
        cfg = self.config
        check_batch_size(batch_size)
        device = generator_device(generator)
        k = resolve_count(length, cfg.min_items, cfg.max_items, 2, "length", generator, device)
        _check_capacity(cfg.bits, cfg.item_length, k)
        size = cfg.item_length

        flat = random_bits((batch_size, k, size * cfg.bits), generator, device)
        items = distinct_rows(flat, generator, device).view(batch_size, k, size, cfg.bits)
        query_index = torch.randint(0, k - 1, (batch_size,), generator=generator, device=device)
        rows = torch.arange(batch_size, device=device)
        query = items[rows, query_index]  # (B, I, bits)
        answer = items[rows, query_index + 1]  # (B, I, bits)

        # Each item becomes a block of (delimiter step, item steps).
        blocks = torch.zeros(batch_size, k, size + 1, self.input_size, device=device, dtype=_F32)
        blocks[:, :, 0, cfg.bits] = 1.0
        blocks[:, :, 1:, : cfg.bits] = items

        list_end = k * (size + 1)
        query_end = list_end + size + 2
        total = query_end + size
        inputs = torch.zeros(batch_size, total, self.input_size, device=device, dtype=_F32)
        targets = torch.zeros(batch_size, total, self.output_size, device=device, dtype=_F32)
        mask = torch.zeros(batch_size, total, device=device, dtype=_F32)
        inputs[:, :list_end] = blocks.reshape(batch_size, list_end, self.input_size)
        inputs[:, list_end, cfg.bits + 1] = 1.0
        inputs[:, list_end + 1 : list_end + 1 + size, : cfg.bits] = query
        inputs[:, query_end - 1, cfg.bits + 1] = 1.0
        targets[:, query_end:] = answer
        mask[:, query_end:] = 1.0
        return Batch(inputs, targets, mask)


# --------------------------------------------------------------------------
# Priority sort
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PrioritySortConfig:
    """Priority sort settings (paper: 8 bits, 20 inputs, 16 outputs).

    Attributes:
        bits: width of each random binary vector.
        num_inputs: vectors shown (the "length" when not forced).
        num_outputs: highest-priority vectors to write back, best first.
    """

    bits: int = 8
    num_inputs: int = 20
    num_outputs: int = 16

    def __post_init__(self) -> None:
        _require(self.bits >= 1, f"bits must be >= 1, got {self.bits}")
        _check_range("num_outputs", self.num_outputs, "num_inputs", self.num_inputs, 1)


class PrioritySortTask(BitTask):
    """Read vectors with priorities, write the top ones in descending priority order.

    Layout for ``N`` inputs and ``M`` outputs (``T = N + 1 + M``):

    * steps ``0..N-1``: a vector on channels ``0..bits-1`` and its priority,
      uniform in ``[-1, 1)``, on channel ``bits``;
    * step ``N``: delimiter channel (``bits+1``) = 1;
    * steps ``N+1..N+M``: target = the ``M`` highest-priority vectors,
      highest first, scored.

    ``input_size = bits + 2``, ``output_size = bits``.
    """

    name = "priority_sort"

    def __init__(self, config: PrioritySortConfig | None = None) -> None:
        self.config = config if config is not None else PrioritySortConfig()
        self.input_size = self.config.bits + 2
        self.output_size = self.config.bits

    def num_outputs_for(self, num_inputs: int) -> int:
        """Output count used when ``num_inputs`` vectors are shown.

        Keeps the configured fraction ``num_outputs / num_inputs`` (so a
        forced longer input also asks for proportionally more outputs),
        rounded half up and clamped to ``[1, num_inputs]``. Equals
        ``num_outputs`` at the configured ``num_inputs``.
        """
        cfg = self.config
        scaled = math.floor(cfg.num_outputs * num_inputs / cfg.num_inputs + 0.5)
        return min(num_inputs, max(1, scaled))

    def input_labels(self) -> list[str]:
        return [f"bit {i}" for i in range(self.config.bits)] + ["priority", "delim"]

    def scalar_ranges(self) -> dict[int, tuple[float, float]]:
        return {self.config.bits: (-1.0, 1.0)}

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        length: int | None = None,
    ) -> Batch:
        """Draw a batch.

        Args:
            batch_size: ``B``.
            generator: source of all randomness (torch's global one if None).
            length: forced number of inputs ``N`` (>= 1); the number of
                outputs is then ``num_outputs_for(N)``. None uses the
                configured ``num_inputs`` / ``num_outputs``.

        Returns:
            ``Batch`` with inputs ``(B, N+1+M, bits+2)``, targets
            ``(B, N+1+M, bits)`` and mask ``(B, N+1+M)``.
        """
        cfg = self.config
        check_batch_size(batch_size)
        device = generator_device(generator)
        n = resolve_count(length, cfg.num_inputs, cfg.num_inputs, 1, "length", generator, device)
        m = self.num_outputs_for(n)

        vectors = random_bits((batch_size, n, cfg.bits), generator, device)
        priority = torch.rand(batch_size, n, generator=generator, device=device, dtype=_F32) * 2 - 1
        order = priority.topk(m, dim=1, largest=True, sorted=True).indices  # (B, M)
        ranked = vectors.gather(1, order.unsqueeze(-1).expand(batch_size, m, cfg.bits))

        total = n + 1 + m
        inputs = torch.zeros(batch_size, total, self.input_size, device=device, dtype=_F32)
        targets = torch.zeros(batch_size, total, self.output_size, device=device, dtype=_F32)
        mask = torch.zeros(batch_size, total, device=device, dtype=_F32)
        inputs[:, :n, : cfg.bits] = vectors
        inputs[:, :n, cfg.bits] = priority
        inputs[:, n, cfg.bits + 1] = 1.0
        targets[:, n + 1 :] = ranked
        mask[:, n + 1 :] = 1.0
        return Batch(inputs, targets, mask)
