"""The sorting task of the Memoria paper: output the symbols sorted by their frequency.

Park & Bak (2024, arXiv:2310.03052) take it from the infinity-former paper (Martins et al.
2022): a long sequence of symbols is drawn from a distribution that drifts from a start
distribution to an end distribution, then the model writes every symbol of the vocabulary
once, most frequent first. Early symbols count as much as late ones, so a model that only
remembers recent tokens sorts by the end distribution and gets it wrong.

Generation (as in the authors' data script): per example, two weight vectors over the V
symbols with integer weights uniform in ``1..max_weight``, normalised to ``p_start`` and
``p_end``; symbol j (0-based) of a length-L sequence is drawn from
``(1 - r_j) p_start + r_j p_end`` with ``r_j = (j + 1) / L``. The answer lists the symbols
by decreasing count, ties broken by first occurrence (Python's ``Counter.most_common``),
then the symbols that never occurred in increasing order.

Layout (T = L + V steps, one-hot tokens, teacher forcing as in a causal language model):

* steps 0..L-1: the sequence, symbol s on input channel s;
* step L: the separator, input channel V;
* steps L+1..L+V-1: the answer so far (answer[k-1] at step L+k), as in the paper's
  language-modelling set-up;
* targets: answer[k] at step L+k (k = 0..V-1), one-hot over the V output channels; only
  these V steps are scored (``mask``).

``input_size = V + 1``, ``output_size = V``. The loss is cross-entropy over the V symbols at
the scored steps; accuracy is the fraction of answer symbols predicted right (the paper's
metric, with the previous answer symbols given).

Legend: B batch, L sequence length, V symbols, T = L + V steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Batch, check_batch_size, check_outputs, generator_device, resolve_count

__all__ = ["SortingConfig", "SortingTask", "sort_by_frequency"]

_F32 = torch.float32


@dataclass(frozen=True)
class SortingConfig:
    """Sorting task settings (paper: 20 symbols, weights 1..9, lengths 1K to 32K).

    Attributes:
        symbols: V, the vocabulary size (the answer has V steps).
        min_length, max_length: range of the sequence length L when it is not forced
            (the CPU-sized default is 256).
        max_weight: start and end weights are drawn uniformly from ``1..max_weight``
            (1 makes both distributions uniform).
    """

    symbols: int = 20
    min_length: int = 256
    max_length: int = 256
    max_weight: int = 9

    def __post_init__(self) -> None:
        if self.symbols < 2:
            raise ValueError(f"symbols must be >= 2, got {self.symbols}")
        if self.min_length < 1:
            raise ValueError(f"min_length must be >= 1, got {self.min_length}")
        if self.max_length < self.min_length:
            raise ValueError(
                f"max_length ({self.max_length}) must be >= min_length ({self.min_length})"
            )
        if self.max_weight < 1:
            raise ValueError(f"max_weight must be >= 1, got {self.max_weight}")


def sort_by_frequency(sequence: Tensor, symbols: int) -> Tensor:
    """Symbols by decreasing count, ties by first occurrence, absent ones last in order.

    Args:
        sequence: (B, L) int64 symbols in ``0..symbols-1``.
        symbols: V.

    Returns:
        (B, V) int64, a permutation of ``0..V-1`` per row.
    """
    batch, length = sequence.shape
    counts = F.one_hot(sequence, symbols).sum(dim=1)  # (B, V)
    positions = torch.arange(length, device=sequence.device).expand(batch, length)
    first = torch.full((batch, symbols), length, dtype=torch.long, device=sequence.device)
    first = first.scatter_reduce(1, sequence, positions, reduce="amin")  # (B, V)
    # Absent symbols (first = L) then order by their own index.
    first = first + (counts == 0) * torch.arange(symbols, device=sequence.device)
    # One integer key: more occurrences first, then earlier first occurrence.
    key = counts * (length + symbols + 1) - first
    return key.argsort(dim=1, descending=True, stable=True)


class SortingTask:
    """Write the symbols of a long drifting sequence sorted by frequency (Memoria's task).

    See the module docstring for the generation rule and the step layout.
    """

    name = "sorting"

    def __init__(self, config: SortingConfig | None = None) -> None:
        self.config = config if config is not None else SortingConfig()
        self.input_size = self.config.symbols + 1
        self.output_size = self.config.symbols

    # -- data ---------------------------------------------------------------------------
    def draw_weights(
        self, batch_size: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Start and end weights (B, V), integers uniform in ``1..max_weight`` (unnormalised)."""
        cfg = self.config
        weights = torch.randint(
            1,
            cfg.max_weight + 1,
            (2, batch_size, cfg.symbols),
            generator=generator,
            device=generator_device(generator),
        ).to(_F32)
        return weights[0], weights[1]

    @staticmethod
    def mix(start: Tensor, end: Tensor, length: int, generator: torch.Generator | None) -> Tensor:
        """Draw (B, L) int64 symbols, symbol j from ``(1 - r_j) p_start + r_j p_end``.

        Args:
            start, end: (B, V) non-negative weights of p_start and p_end (normalised here).
            length: L; ``r_j = (j + 1) / L``.

        The mixture is sampled by its components: a symbol from each distribution, then the
        end one with probability ``r_j``.
        """
        device = start.device
        from_start = torch.multinomial(start, length, replacement=True, generator=generator)
        from_end = torch.multinomial(end, length, replacement=True, generator=generator)
        r = torch.arange(1, length + 1, device=device, dtype=torch.float64) / length
        pick_end = torch.rand(start.shape[0], length, generator=generator, device=device) < r
        return torch.where(pick_end, from_end, from_start)

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        length: int | None = None,
    ) -> Batch:
        """Draw a batch.

        Args:
            batch_size: B.
            generator: source of all randomness (torch's global one if None).
            length: forced sequence length L (>= 1), else drawn from
                ``[min_length, max_length]``.

        Returns:
            ``Batch`` with inputs (B, L+V, V+1), targets (B, L+V, V) and mask (B, L+V).
        """
        cfg = self.config
        check_batch_size(batch_size)
        device = generator_device(generator)
        n = resolve_count(length, cfg.min_length, cfg.max_length, 1, "length", generator, device)
        v = cfg.symbols
        start, end = self.draw_weights(batch_size, generator)
        sequence = self.mix(start, end, n, generator)  # (B, L)
        answer = sort_by_frequency(sequence, v)  # (B, V)

        total = n + v
        inputs = torch.zeros(batch_size, total, self.input_size, device=device, dtype=_F32)
        inputs[:, :n] = F.one_hot(sequence, self.input_size).to(_F32)
        inputs[:, n, v] = 1.0
        inputs[:, n + 1 :] = F.one_hot(answer[:, :-1], self.input_size).to(_F32)
        targets = torch.zeros(batch_size, total, self.output_size, device=device, dtype=_F32)
        targets[:, n:] = F.one_hot(answer, v).to(_F32)
        mask = torch.zeros(batch_size, total, device=device, dtype=_F32)
        mask[:, n:] = 1.0
        return Batch(inputs, targets, mask)

    @staticmethod
    def decode(batch: Batch) -> tuple[Tensor, Tensor]:
        """The sequence (B, L) and the answer (B, V) a batch holds (int64)."""
        scored = batch.mask[0] > 0.5
        length = int(torch.nonzero(scored)[0, 0])
        sequence = batch.inputs[:, :length].argmax(dim=-1)
        answer = batch.targets[:, length:].argmax(dim=-1)
        return sequence, answer

    # -- scoring ------------------------------------------------------------------------
    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        """Cross-entropy of the logits over the V symbols, averaged over the scored steps.

        Args:
            outputs: logits (B, T, V).
            batch: the batch they answer.

        Returns:
            Scalar tensor, differentiable w.r.t. ``outputs``.
        """
        check_outputs(outputs, batch, self.output_size)
        return self._cross_entropy(outputs, batch)

    def _cross_entropy(self, outputs: Tensor, batch: Batch) -> Tensor:
        mask = batch.mask.to(device=outputs.device) > 0.5
        scored = outputs[mask]  # (N, V): only the scored steps enter the graph
        labels = batch.targets.to(outputs.device)[mask].argmax(dim=-1)
        if scored.shape[0] == 0:
            return outputs.sum() * 0.0
        return F.cross_entropy(scored, labels)

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """Loss and accuracies of logits (B, T, V).

        Returns:
            ``loss`` (cross-entropy), ``accuracy`` (fraction of answer symbols right: the
            paper's metric), ``token_errors_per_sequence`` (wrong answer symbols per
            sequence), ``bit_errors_per_sequence`` (the same number, under the name the
            trainer logs for every task), ``sequence_accuracy`` (all V symbols right).
        """
        check_outputs(outputs, batch, self.output_size)
        with torch.no_grad():
            loss = self._cross_entropy(outputs.detach(), batch)
            mask = batch.mask.to(outputs.device) > 0.5
            predicted = outputs.detach().argmax(dim=-1)
            expected = batch.targets.to(outputs.device).argmax(dim=-1)
            wrong = ((predicted != expected) & mask).sum(dim=1).to(_F32)  # (B,)
            scored = mask.sum().clamp_min(1).to(_F32)
        errors = float(wrong.mean())
        return {
            "loss": float(loss),
            "accuracy": float(1.0 - wrong.sum() / scored),
            "token_errors_per_sequence": errors,
            "bit_errors_per_sequence": errors,
            "sequence_accuracy": float((wrong == 0).to(_F32).mean()),
        }

    # -- rendering ----------------------------------------------------------------------
    def render(self, batch: Batch, outputs: Tensor | None = None, index: int = 0) -> str:
        """Text picture of example ``index``: the sequence (ends only when long), the
        symbol counts, the answer and, given logits, the predicted answer."""
        batch_size = batch.mask.shape[0]
        if not -batch_size <= index < batch_size:
            raise ValueError(f"index {index} out of range for batch of size {batch_size}")
        if outputs is not None:
            check_outputs(outputs, batch, self.output_size)
        sequence, answer = self.decode(batch)
        seq, ans = sequence[index].tolist(), answer[index].tolist()
        shown = " ".join(map(str, seq))
        if len(seq) > 60:
            shown = " ".join(map(str, seq[:30])) + " ... " + " ".join(map(str, seq[-30:]))
        counts = torch.bincount(sequence[index], minlength=self.config.symbols).tolist()
        lines = [
            f"{self.name} (example {index}, L={len(seq)}, V={self.config.symbols})",
            f"  sequence | {shown}",
            "  counts   | " + " ".join(f"{s}:{c}" for s, c in enumerate(counts)),
            "  answer   | " + " ".join(map(str, ans)),
        ]
        if outputs is not None:
            length = len(seq)
            predicted = outputs[index, length:].detach().argmax(dim=-1).tolist()
            marks = " ".join(
                ("." if p == a else "x").rjust(len(str(p))) for p, a in zip(predicted, ans)
            )
            wrong = sum(p != a for p, a in zip(predicted, ans))
            lines.append("  output   | " + " ".join(map(str, predicted)) + f"  ({wrong} wrong)")
            lines.append("  errors   | " + marks)
        return "\n".join(lines)
