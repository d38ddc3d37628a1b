"""Input checks shared by every model: clear errors that say what was expected and what came."""

from __future__ import annotations

import torch
from torch import Tensor


def check_sequence_input(x: Tensor, input_size: int, model_name: str) -> None:
    """Raise a clear error unless ``x`` is a finite float tensor of shape (B, T, input_size)."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{model_name} expects a torch.Tensor of shape (B, T, {input_size}), "
            f"got {type(x).__name__}"
        )
    if x.dim() != 3:
        raise ValueError(
            f"{model_name} expects input of shape (B, T, {input_size}) (batch first), "
            f"got a {x.dim()}-d tensor of shape {tuple(x.shape)}"
        )
    if x.shape[-1] != input_size:
        raise ValueError(
            f"{model_name} was built with input_size={input_size} but got input of shape "
            f"{tuple(x.shape)} (last dimension {x.shape[-1]})"
        )
    if not x.is_floating_point():
        raise TypeError(f"{model_name} expects a floating-point input, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"{model_name} got an input with {bad} NaN or infinite value(s)")


def check_positive(config, names: tuple[str, ...], owner: str) -> None:
    """Raise unless every ``config.<name>`` (a size: slots, width, heads, ...) is >= 1."""
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{owner} option {name} must be >= 1, got {getattr(config, name)}")
