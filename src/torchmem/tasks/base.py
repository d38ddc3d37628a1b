"""Common protocol, batch container and shared scoring/rendering for tasks.

Every task produces a :class:`Batch` of float32 tensors laid out
batch-first:

* ``inputs``  -- ``(B, T, input_size)``
* ``targets`` -- ``(B, T, output_size)``, zero wherever ``mask`` is 0
* ``mask``    -- ``(B, T)``, 1 at the time steps whose outputs are scored

``B`` is the batch size and ``T`` the total number of time steps (input
phase plus output phase). All examples of one batch share ``T``.

Randomness comes only from the ``torch.Generator`` handed to ``sample`` (or
torch's global generator when none is given). Tensors are created on the
generator's device, which is the CPU for the usual CPU generator; move a
batch elsewhere with :meth:`Batch.to`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Batch",
    "Task",
    "BitTask",
    "generator_device",
    "random_bits",
    "sample_int",
    "resolve_count",
    "check_batch_size",
    "check_outputs",
    "masked_bce_loss",
    "bit_errors",
]


class Batch(NamedTuple):
    """One batch of a task.

    Attributes:
        inputs: ``(B, T, input_size)`` float32.
        targets: ``(B, T, output_size)`` float32, zeros where ``mask`` is 0.
        mask: ``(B, T)`` float32, 1 where the output is scored.
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor

    def to(self, device: torch.device | str) -> Batch:
        """Return a copy of the batch with every tensor on ``device``."""
        return Batch(self.inputs.to(device), self.targets.to(device), self.mask.to(device))


@runtime_checkable
class Task(Protocol):
    """What the training loop, benchmarks and CLI rely on."""

    name: str
    input_size: int
    output_size: int

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        length: int | None = None,
    ) -> Batch:
        """Draw a batch; ``length`` forces the sequence length / item count."""
        ...

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        """Masked BCE of logits ``(B, T, output_size)``; a scalar tensor."""
        ...

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """At least ``loss``, ``bit_errors_per_sequence``, ``sequence_accuracy``."""
        ...

    def render(self, batch: Batch, outputs: Tensor | None = None, index: int = 0) -> str:
        """Text picture of example ``index``: rows = channels, columns = time."""
        ...


# --------------------------------------------------------------------------
# Sampling helpers
# --------------------------------------------------------------------------


def generator_device(generator: torch.Generator | None) -> torch.device:
    """Device on which to sample: the generator's own, else the CPU.

    torch refuses a generator whose device differs from the tensor's, so
    sampling has to happen where the generator lives.
    """
    return generator.device if generator is not None else torch.device("cpu")


def random_bits(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Independent Bernoulli(0.5) bits of the given shape, as float32."""
    bits = torch.randint(0, 2, tuple(shape), generator=generator, device=device)
    return bits.to(torch.float32)


def distinct_rows(items: Tensor, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Redraw, in place, random bits for items equal to an earlier item of their example.

    items (B, K, D) bits -> the same tensor, each example's K rows now distinct. Redraws only
    the repeated rows, so a batch without repeats leaves the generator untouched.
    """
    count = items.shape[1]
    earlier = torch.ones(count, count, dtype=torch.bool, device=device).tril(-1)
    while True:
        same = (items.unsqueeze(2) == items.unsqueeze(1)).all(dim=-1)  # (B, K, K)
        repeated = (same & earlier).any(dim=-1)  # (B, K): equals an earlier item
        redraw = int(repeated.sum().item())
        if redraw == 0:
            return items
        items[repeated] = random_bits((redraw, items.shape[-1]), generator, device)


def sample_int(low: int, high: int, generator: torch.Generator | None, device: torch.device) -> int:
    """One integer uniform on the inclusive range ``[low, high]``."""
    if low == high:
        # No draw, so that a degenerate range leaves the generator untouched
        # and the rest of the batch identical to a forced value.
        return low
    value = torch.randint(low, high + 1, (1,), generator=generator, device=device)
    return int(value.item())


def resolve_count(
    value: int | None,
    low: int,
    high: int,
    minimum: int,
    what: str,
    generator: torch.Generator | None,
    device: torch.device,
) -> int:
    """Use a forced ``value`` (any integer >= ``minimum``) or draw from ``[low, high]``.

    Forced values may lie outside ``[low, high]``: that is how generalisation
    to longer sequences than trained on is evaluated.
    """
    if value is None:
        return sample_int(low, high, generator, device)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


# --------------------------------------------------------------------------
# Scoring helpers
# --------------------------------------------------------------------------


def check_outputs(outputs: Tensor, batch: Batch, output_size: int) -> None:
    """Raise ValueError unless ``outputs`` is ``(B, T, output_size)`` for ``batch``."""
    batch_size, time = batch.mask.shape
    expected = (batch_size, time, output_size)
    if not isinstance(outputs, Tensor):
        raise ValueError(
            f"outputs must be a Tensor of shape {expected}, got {type(outputs).__name__}"
        )
    if tuple(outputs.shape) != expected:
        raise ValueError(
            f"outputs must have shape (B, T, output_size) = {expected}, got {tuple(outputs.shape)}"
        )
    if tuple(batch.targets.shape) != expected:
        raise ValueError(
            f"batch targets must have shape {expected}, got {tuple(batch.targets.shape)}"
        )


def masked_bce_loss(outputs: Tensor, batch: Batch) -> Tensor:
    """BCE-with-logits averaged over scored time steps and output bits.

    Args:
        outputs: logits ``(B, T, O)``.
        batch: the batch whose ``targets`` ``(B, T, O)`` and ``mask`` ``(B, T)`` score them.

    Returns:
        A scalar tensor (differentiable w.r.t. ``outputs``).
    """
    targets = batch.targets.to(device=outputs.device, dtype=outputs.dtype)
    mask = batch.mask.to(device=outputs.device, dtype=outputs.dtype)
    per_bit = F.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
    scored = mask.sum() * outputs.shape[-1]
    # clamp keeps an all-unscored batch at 0 rather than NaN.
    return (per_bit * mask.unsqueeze(-1)).sum() / scored.clamp_min(1.0)


def bit_errors(outputs: Tensor, batch: Batch) -> Tensor:
    """Wrong bits per sequence, counting scored steps only.

    A bit is predicted 1 when ``sigmoid(logit) > 0.5``, i.e. ``logit > 0``.

    Returns:
        ``(B,)`` float32 counts.
    """
    predicted = outputs.detach() > 0
    targets = batch.targets.to(outputs.device) > 0.5
    mask = batch.mask.to(outputs.device).unsqueeze(-1) > 0.5
    wrong = (predicted != targets) & mask
    return wrong.sum(dim=(1, 2)).to(torch.float32)


# --------------------------------------------------------------------------
# Shared implementation for binary-output tasks
# --------------------------------------------------------------------------


def _binary_char(value: float) -> str:
    return "#" if value > 0.5 else "."


def _scalar_char(value: float, low: float, high: float) -> str:
    # A single digit keeps one column per time step; exact zero means
    # "channel not in use here", which matters more to the reader than the level.
    if value == 0.0:
        return "."
    span = high - low if high > low else 1.0
    level = round((value - low) / span * 9)
    return str(min(9, max(0, level)))


class BitTask:
    """Base for tasks with binary targets scored by masked BCE.

    Subclasses set ``name``, ``input_size``, ``output_size`` and implement
    ``sample``; they may override the ``*_labels`` / ``scalar_ranges`` /
    ``describe`` hooks to improve :meth:`render`.
    """

    name: str = "task"
    input_size: int
    output_size: int

    # -- hooks for render -------------------------------------------------
    def input_labels(self) -> list[str]:
        """One label per input channel."""
        return [f"in {i}" for i in range(self.input_size)]

    def output_labels(self) -> list[str]:
        """One label per output channel."""
        return [f"bit {i}" for i in range(self.output_size)]

    def scalar_ranges(self) -> dict[int, tuple[float, float]]:
        """Input channels holding real values, mapped to their (low, high) range."""
        return {}

    def describe(self, batch: Batch, index: int) -> str:
        """Extra task-specific facts about one example, appended to the title."""
        return ""

    # -- scoring ----------------------------------------------------------
    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        """Masked BCE-with-logits.

        Args:
            outputs: logits ``(B, T, output_size)``.
            batch: the batch they answer.

        Returns:
            Scalar tensor, mean over scored steps and bits.
        """
        check_outputs(outputs, batch, self.output_size)
        return masked_bce_loss(outputs, batch)

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """Loss and the NTM paper's cost in bits.

        Args:
            outputs: logits ``(B, T, output_size)``.
            batch: the batch they answer.

        Returns:
            ``loss`` (masked BCE), ``bit_errors_per_sequence`` (wrong bits on
            scored steps, summed per sequence, averaged over the batch),
            ``sequence_accuracy`` (fraction of sequences with no wrong bit) and
            ``bit_accuracy`` (fraction of scored bits that are right).
        """
        check_outputs(outputs, batch, self.output_size)
        with torch.no_grad():
            loss = masked_bce_loss(outputs.detach(), batch)
            errors = bit_errors(outputs, batch)
            scored_bits = batch.mask.sum() * self.output_size
            bit_accuracy = 1.0 - errors.sum() / scored_bits.clamp_min(1.0)
        return {
            "loss": float(loss.item()),
            "bit_errors_per_sequence": float(errors.mean().item()),
            "sequence_accuracy": float((errors == 0).to(torch.float32).mean().item()),
            "bit_accuracy": float(bit_accuracy.item()),
        }

    # -- rendering --------------------------------------------------------
    def render(self, batch: Batch, outputs: Tensor | None = None, index: int = 0) -> str:
        """Text picture of example ``index``.

        Rows are channels and columns time steps. Binary channels show ``#``
        for 1 and ``.`` for 0; real-valued input channels show a digit 0-9
        for the value's level within its range (``.`` when exactly 0).
        Targets and thresholded outputs are drawn only at scored steps
        (blank elsewhere); an ``errors`` row marks scored steps with at least
        one wrong bit by ``x``.

        Layout (line count): 1 title, ``inputs:`` + ``input_size`` rows,
        ``targets:`` + ``output_size`` rows, and when ``outputs`` is given
        ``outputs:`` + ``output_size`` rows + 1 ``errors`` row.

        Args:
            batch: the batch.
            outputs: optional logits ``(B, T, output_size)``.
            index: which example of the batch to draw.
        """
        batch_size, time = batch.mask.shape
        if not -batch_size <= index < batch_size:
            raise ValueError(f"index {index} out of range for batch of size {batch_size}")
        if outputs is not None:
            check_outputs(outputs, batch, self.output_size)

        inputs = batch.inputs[index].detach().cpu()
        targets = batch.targets[index].detach().cpu()
        scored = (batch.mask[index].detach().cpu() > 0.5).tolist()

        in_labels = self.input_labels()
        out_labels = self.output_labels()
        width = max(len(label) for label in [*in_labels, *out_labels, "errors"])
        scalars = self.scalar_ranges()

        def row(label: str, chars: Sequence[str]) -> str:
            return f"  {label:<{width}} |{''.join(chars)}"

        title = f"{self.name} (example {index}, T={time})"
        extra = self.describe(batch, index)
        if extra:
            title += f": {extra}"
        lines = [title, "inputs:"]
        for c, label in enumerate(in_labels):
            values = inputs[:, c].tolist()
            if c in scalars:
                low, high = scalars[c]
                chars = [_scalar_char(v, low, high) for v in values]
            else:
                chars = [_binary_char(v) for v in values]
            lines.append(row(label, chars))

        lines.append("targets:")
        for c, label in enumerate(out_labels):
            values = targets[:, c].tolist()
            lines.append(
                row(label, [_binary_char(v) if s else " " for v, s in zip(values, scored)])
            )

        if outputs is not None:
            predicted = (outputs[index].detach().cpu() > 0).to(torch.float32)
            wrong = (predicted != (targets > 0.5).to(torch.float32)).any(dim=-1).tolist()
            n_errors = int(bit_errors(outputs[index : index + 1], _slice(batch, index)).item())
            lines.append(f"outputs ({n_errors} bit errors):")
            for c, label in enumerate(out_labels):
                values = predicted[:, c].tolist()
                lines.append(
                    row(label, [_binary_char(v) if s else " " for v, s in zip(values, scored)])
                )
            lines.append(
                row(
                    "errors",
                    ["x" if (s and w) else ("." if s else " ") for w, s in zip(wrong, scored)],
                )
            )
        return "\n".join(lines)


def _slice(batch: Batch, index: int) -> Batch:
    end = index + 1 if index != -1 else None
    return Batch(batch.inputs[index:end], batch.targets[index:end], batch.mask[index:end])
