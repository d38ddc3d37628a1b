"""The write gate: a sigmoid importance score deciding what is worth remembering.

``p = sigmoid(w . x + b)`` over ``x = [text embedding ; text signals]`` (d + 10 numbers,
see :mod:`.signals`): logistic regression, the seed's "Importance Score =
Sigmoid(Controller Output)". Each encoder has its own trained weights, shipped in
``torchmem/personal/weights/gate-<encoder>.safetensors`` and made by
``python -m torchmem.personal.gate_training`` from generated messages (see that module).
A user's gate starts from these weights and is then moved by feedback
(:func:`.functional.reinforce_gate`), and saved with the user's store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .functional import gate_probability
from .signals import TEXT_SIGNALS, text_signals

WEIGHTS_DIR = Path(__file__).with_name("weights")


def weights_path(encoder_name: str) -> Path:
    """Where the shipped default gate weights of an encoder live."""
    return WEIGHTS_DIR / f"gate-{encoder_name}.safetensors"


def gate_features(embeddings: Tensor, signals: Tensor) -> Tensor:
    """``(m, d)`` embeddings and ``(m, S)`` signal rows -> ``(m, d + 10)`` gate inputs."""
    return torch.cat([embeddings, text_signals(signals)], dim=-1)


@dataclass
class WriteGate:
    """Parameters of the write gate.

    Attributes:
        weight: ``(d + len(TEXT_SIGNALS),)`` float32, w.
        bias: ``()`` float32, b.
        encoder: name of the encoder whose embeddings it reads.
    """

    weight: Tensor
    bias: Tensor
    encoder: str

    @property
    def dim(self) -> int:
        """Embedding width it expects."""
        return self.weight.shape[0] - len(TEXT_SIGNALS)

    def probability(self, features: Tensor) -> Tensor:
        """Importance p of ``(m, f)`` gate features: ``(m,)``."""
        return gate_probability(features, self.weight, self.bias)

    @classmethod
    def untrained(cls, encoder: str, dim: int) -> WriteGate:
        """All-zero weights: p = 0.5 for everything (stores every message at the default
        threshold); for encoders without shipped weights."""
        return cls(torch.zeros(dim + len(TEXT_SIGNALS)), torch.zeros(()), encoder)

    @classmethod
    def load(cls, path: str | Path) -> WriteGate:
        """Read gate weights written by :meth:`save` (safetensors, no pickle)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
        if "encoder" not in meta:
            raise ValueError(f"{path} holds no encoder name; not a torchmem gate file")
        return cls(weight.to(torch.float32), bias.to(torch.float32).reshape(()), meta["encoder"])

    def save(self, path: str | Path, **metadata: object) -> Path:
        """Write the weights with ``encoder`` and any ``metadata`` (JSON-encoded values)."""
        from safetensors.torch import save_file

        meta = {"encoder": self.encoder, **{k: json.dumps(v) for k, v in metadata.items()}}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(
            {"weight": self.weight.contiguous(), "bias": self.bias.reshape(1)},
            str(path),
            metadata=meta,
        )
        return path

    @classmethod
    def default(cls, encoder: str, dim: int) -> WriteGate:
        """The shipped weights of ``encoder``, or :meth:`untrained` when there are none."""
        path = weights_path(encoder)
        if not path.exists():
            return cls.untrained(encoder, dim)
        gate = cls.load(path)
        if gate.dim != dim:
            raise ValueError(
                f"shipped gate weights {path.name} expect {gate.dim}-d embeddings, the "
                f"encoder {encoder!r} gives {dim}-d"
            )
        return gate


__all__ = ["WEIGHTS_DIR", "WriteGate", "gate_features", "weights_path"]
