"""Experiments built on the trainer: model comparisons on one task."""

from .compare import (
    COMPARISON_JSON,
    COMPARISON_MD,
    COMPARISON_PNG,
    DEFAULT_MODELS,
    compare,
    format_table,
    split_compare_overrides,
)

__all__ = [
    "COMPARISON_JSON",
    "COMPARISON_MD",
    "COMPARISON_PNG",
    "DEFAULT_MODELS",
    "compare",
    "format_table",
    "split_compare_overrides",
]
