"""One-shot classification episodes, Omniglot style, from scikit-learn's bundled digits.

Santoro et al. (2016) train a memory-augmented network on episodes: C classes are drawn,
each is given a random label for this episode only, and C x K images (K of each class) are
shown in random order; at step t the network sees image t and the *correct label of
image t - 1*, and must output the label of image t. The first image of a class can only
be guessed; from the second on, a network that bound the first image to its label (shown
one step later) can answer. Accuracy by instance (1st, 2nd, ... image of its class in the
episode) is the paper's measure.

No data is downloaded: the images are scikit-learn's 8 x 8 digits (1,797 of them, pixel
values scaled to [0, 1]), and as Santoro et al. made new Omniglot classes by rotation, each
digit upright and turned 90 degrees is a class of its own: 20 classes. Images are split
70 / 30 by index into ``"train"`` and ``"test"`` (config ``images``); the trainer draws
held-out episodes from the same split, so score a run on the other split with
``torchmem eval RUN --set task.images=test``.

Step layout: inputs ``(B, C K, 64 + C)`` = image, previous label (zeros at step 0);
targets ``(B, C K, C)`` one-hot labels; every step is scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Batch, check_batch_size, check_outputs, generator_device

__all__ = ["OneShotConfig", "OneShotTask", "digit_classes"]

_F32 = torch.float32
PIXELS = 64
SPLITS = ("train", "test")


@lru_cache(maxsize=1)
def _digits() -> tuple[Tensor, Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the one_shot task needs scikit-learn's bundled digits: pip install scikit-learn "
            '(or pip install -e ".[data]")'
        ) from error
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=_F32) / 16.0  # (1797, 8, 8) in [0, 1]
    return images, torch.tensor(digits.target, dtype=torch.int64)


def digit_classes(split: str) -> list[Tensor]:
    """The 20 classes of one split: ``[(n_c, 64) images]``, class ``2 d + r`` holding
    digit d turned by r x 90 degrees (built once per split, shared by every batch)."""
    if split not in SPLITS:
        raise ValueError(f"images must be one of {', '.join(SPLITS)}, got {split!r}")
    return list(_classes(split))


@lru_cache(maxsize=len(SPLITS))
def _classes(split: str) -> tuple[Tensor, ...]:
    images, labels = _digits()
    cut = int(0.7 * len(images))
    part = slice(0, cut) if split == "train" else slice(cut, None)
    images, labels = images[part], labels[part]
    classes = []
    for digit in range(10):
        upright = images[labels == digit]
        for turns in range(2):
            classes.append(torch.rot90(upright, turns, dims=(1, 2)).flatten(1).contiguous())
    return tuple(classes)


@dataclass(frozen=True)
class OneShotConfig:
    """One-shot episode settings (Santoro et al. 2016 used 5 classes and 10 instances).

    Attributes:
        classes: C, classes per episode (at most 20), each with a random label in 0..C-1.
        instances: K, images of each class per episode (episode length C K).
        images: ``"train"`` or ``"test"``: which 70 / 30 split of the digits to draw from.
    """

    classes: int = 5
    instances: int = 10
    images: str = "train"

    def __post_init__(self) -> None:
        if not 2 <= self.classes <= 20:
            raise ValueError(f"classes must be in 2..20, got {self.classes}")
        if self.instances < 1:
            raise ValueError(f"instances must be >= 1, got {self.instances}")
        if self.images not in SPLITS:
            raise ValueError(f"images must be one of {', '.join(SPLITS)}, got {self.images!r}")


class OneShotTask:
    """Label each image of an episode, shown its true label one step later."""

    name = "one_shot"

    def __init__(self, config: OneShotConfig | None = None) -> None:
        self.config = config if config is not None else OneShotConfig()
        self.input_size = PIXELS + self.config.classes
        self.output_size = self.config.classes

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, length: int | None = None
    ) -> Batch:
        """Draw ``batch_size`` episodes; ``length`` forces K, the instances per class."""
        cfg = self.config
        check_batch_size(batch_size)
        if length is not None and (isinstance(length, bool) or length < 1):
            raise ValueError(f"length (instances per class) must be >= 1, got {length!r}")
        k = cfg.instances if length is None else int(length)
        c = cfg.classes
        device = generator_device(generator)
        pool = digit_classes(cfg.images)
        steps = c * k
        inputs = torch.zeros(batch_size, steps, self.input_size, dtype=_F32, device=device)
        labels = torch.empty(batch_size, steps, dtype=torch.int64, device=device)
        for b in range(batch_size):
            chosen = torch.randperm(len(pool), generator=generator, device=device)[:c].tolist()
            order = torch.randperm(steps, generator=generator, device=device)
            episode_labels = torch.arange(c, device=device).repeat_interleave(k)[order]
            images = []
            for cls in chosen:
                index = torch.randint(len(pool[cls]), (k,), generator=generator, device=device)
                images.append(pool[cls].to(device)[index])
            inputs[b, :, :PIXELS] = torch.cat(images)[order]
            labels[b] = episode_labels
        one_hot = F.one_hot(labels, c).to(_F32)
        inputs[:, 1:, PIXELS:] = one_hot[:, :-1]
        mask = torch.ones(batch_size, steps, dtype=_F32, device=device)
        return Batch(inputs, one_hot, mask)

    @staticmethod
    def instance_numbers(batch: Batch) -> Tensor:
        """``(B, T)`` int64: 1 for the first image of its label in the episode, 2 for the
        second, ..."""
        one_hot = batch.targets
        return (one_hot.cumsum(dim=1) * one_hot).sum(-1).to(torch.int64)

    def _cross_entropy(self, outputs: Tensor, batch: Batch) -> Tensor:
        labels = batch.targets.to(outputs.device).argmax(-1)
        return F.cross_entropy(outputs.flatten(0, 1), labels.flatten())

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        """Cross-entropy of the logits ``(B, T, C)`` over every step."""
        check_outputs(outputs, batch, self.output_size)
        return self._cross_entropy(outputs, batch)

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """``loss``, ``accuracy``, ``accuracy_instance_<n>`` (the paper's columns: 1, 2, 3,
        5, 10 where the episode has them), and per episode ``bit_errors_per_sequence`` (the
        trainer's name: wrong labels) and ``sequence_accuracy`` (no wrong label)."""
        check_outputs(outputs, batch, self.output_size)
        with torch.no_grad():
            outputs = outputs.detach()
            right = outputs.argmax(-1) == batch.targets.to(outputs.device).argmax(-1)
            instance = self.instance_numbers(batch).to(outputs.device)
            wrong = (~right).sum(1).to(_F32)
            out = {
                "loss": float(self._cross_entropy(outputs, batch)),
                "accuracy": float(right.to(_F32).mean()),
                "bit_errors_per_sequence": float(wrong.mean()),
                "sequence_accuracy": float((wrong == 0).to(_F32).mean()),
            }
            for n in (1, 2, 3, 5, 10):
                at = instance == n
                if at.any():
                    out[f"accuracy_instance_{n}"] = float(right[at].to(_F32).mean())
        return out

    def render(self, batch: Batch, outputs: Tensor | None = None, index: int = 0) -> str:
        """The episode's labels, instance numbers and, given logits, the guesses."""
        batch_size = batch.mask.shape[0]
        if not -batch_size <= index < batch_size:
            raise ValueError(f"index {index} out of range for batch of size {batch_size}")
        labels = batch.targets[index].argmax(-1).tolist()
        instance = self.instance_numbers(batch)[index].tolist()
        lines = [
            f"{self.name} (example {index}, {self.config.classes} classes x "
            f"{len(labels) // self.config.classes} instances)",
            "  label    | " + " ".join(map(str, labels)),
            "  instance | " + " ".join(str(min(i, 9)) for i in instance),
        ]
        if outputs is not None:
            check_outputs(outputs, batch, self.output_size)
            guess = outputs[index].detach().argmax(-1).tolist()
            lines.append("  output   | " + " ".join(map(str, guess)))
            lines.append(
                "  errors   | " + " ".join("." if g == y else "x" for g, y in zip(guess, labels))
            )
        return "\n".join(lines)
