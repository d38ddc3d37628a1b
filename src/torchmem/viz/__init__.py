"""Plots of run folders (needs matplotlib: ``pip install torchmem[viz]``)."""

from .plots import (
    LEARNING_CURVE_FILE,
    MEMORY_ACCESS_FILE,
    plot_comparison,
    plot_learning_curves,
    plot_run,
    plot_trace,
)

__all__ = [
    "LEARNING_CURVE_FILE",
    "MEMORY_ACCESS_FILE",
    "plot_comparison",
    "plot_learning_curves",
    "plot_run",
    "plot_trace",
]
