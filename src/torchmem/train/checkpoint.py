"""Checkpoint files: save atomically, load with errors that say what went wrong.

A checkpoint is a plain ``dict`` of tensors and primitive values (numbers, strings, lists,
dicts), so it loads with ``torch.load(..., weights_only=True)``: opening a checkpoint never
runs code from the file. Keys:

* ``format``: the string ``"torchmem-checkpoint"``; ``format_version``: :data:`FORMAT_VERSION`
* ``step``: optimiser steps taken so far
* ``model_name``, ``model_config``: registry name and the model's resolved config as a dict
* ``model_state``, ``optimizer_state``: the two ``state_dict()``s
* ``task_name``, ``task_config``: registry name and the task's resolved config as a dict
* ``train_config``: the :class:`~torchmem.train.TrainConfig` as a dict
* ``data_rng_state``: ``ByteTensor`` state of the training-data ``torch.Generator``
* ``torch_rng_state``: ``ByteTensor`` state of torch's global CPU generator;
  ``cuda_rng_states``: list of CUDA generator states (empty without CUDA)
* ``wall_seconds``, ``cpu_seconds``: wall-clock and process CPU seconds spent training so far
* ``best`` (optional): ``{"step": ..., "eval_bit_errors_per_sequence": ..., "eval_loss": ...}``
  of the best held-out evaluation so far (the run folder's ``best.pt``), or None
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "torchmem-checkpoint"
FORMAT_VERSION = 1

REQUIRED_KEYS: tuple[str, ...] = (
    "format",
    "format_version",
    "step",
    "model_name",
    "model_config",
    "model_state",
    "optimizer_state",
    "task_name",
    "task_config",
    "train_config",
    "data_rng_state",
    "torch_rng_state",
)


class CheckpointError(ValueError):
    """A file exists but is not a checkpoint this version of torchmem can read."""


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (a crash never leaves half a file).

    ``format`` and ``format_version`` are filled in when missing; the other
    :data:`REQUIRED_KEYS` must be present.
    """
    path = Path(path)
    content = {"format": FORMAT, "format_version": FORMAT_VERSION, **checkpoint}
    missing = [key for key in REQUIRED_KEYS if key not in content]
    if missing:
        raise ValueError(f"checkpoint to save lacks required key(s): {', '.join(missing)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(content, partial)
    os.replace(partial, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: the file is unreadable, not a torchmem checkpoint, lacks keys,
            or has an unsupported format version.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a torchmem checkpoint file")
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many kinds for foreign or truncated files
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path} is not a valid torchmem checkpoint: torch.load failed with "
            f"{type(error).__name__}: {detail[:300]}"
        ) from None
    if not isinstance(content, dict):
        raise CheckpointError(
            f"{path} is not a valid torchmem checkpoint: it holds a {type(content).__name__}, "
            f"not a dict"
        )
    if content.get("format") != FORMAT:
        found = ", ".join(sorted(map(str, content))[:12]) or "nothing"
        raise CheckpointError(
            f"{path} is not a valid torchmem checkpoint: no format marker {FORMAT!r}; "
            f"it holds the keys {found}"
        )
    version = content.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is a torchmem checkpoint of format version {version!r}; this version of "
            f"torchmem reads version {FORMAT_VERSION}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in content]
    if missing:
        raise CheckpointError(
            f"{path} is not a valid torchmem checkpoint: missing key(s) {', '.join(missing)}"
        )
    return content


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "REQUIRED_KEYS",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
]
