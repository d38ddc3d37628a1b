"""Plots of run folders: learning curves, memory access over time, model comparisons.

matplotlib is optional (``pip install torchmem[viz]``) and imported only when a plot is
drawn. Figures are built with the object-oriented API on an Agg canvas, so plotting never
opens a window and never changes pyplot's global backend.

Legend: B batch, T time, N memory slots, H heads, I input width, O output width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

LEARNING_CURVE_FILE = "learning_curve.png"
MEMORY_ACCESS_FILE = "memory_access.png"

# Trace entries drawn first, in this order, with their titles; other (T, X) entries follow.
_TRACE_TITLES = {
    "write_weights": "write weights",
    "read_weights": "read weights",
    "usage": "usage",
}
_MAX_HEADS = 4  # heads drawn per trace entry; more would crowd the figure


def _figure(width: float, height: float):
    """A matplotlib ``Figure`` on an Agg canvas, or an ImportError saying what to install."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib, which is not installed: pip install torchmem[viz]"
        ) from None
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that hold ``key``."""
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in points], [float(p[1]) for p in points]


def _set_log_scale_if_wide(axes, values: Sequence[float]) -> None:
    """Log y axis when the values span at least a decade; plain text tick labels.

    Within one decade a log axis only has minor ticks, whose labels come out unreadable,
    and matplotlib's default mathtext labels triple the drawing time.
    """
    from matplotlib.ticker import FuncFormatter, NullFormatter

    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) >= 10:
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_formatter(NullFormatter())


def _set_bit_error_scale(axes) -> None:
    """symlog: bit errors reach exactly 0, which a log axis cannot show."""
    from matplotlib.ticker import FuncFormatter

    axes.set_yscale("symlog", linthresh=1.0)
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def plot_learning_curves(
    records: Sequence[Mapping[str, Any]], path: str | Path, title: str | None = None
) -> Path:
    """Loss and bit errors per sequence against step, training and held-out.

    The loss axis is logarithmic when the loss spans a decade or more; the bit error axis
    is symlog (linear below 1, so that 0 shows).

    Args:
        records: ``metrics.jsonl`` records (dicts with ``step``, ``loss``,
            ``bit_errors_per_sequence`` and, at evaluations, ``eval_*``).
        path: the PNG file to write.
        title: figure title.
    """
    if not records:
        raise ValueError("no metrics records to plot")
    figure = _figure(10, 4)
    loss_axes, bits_axes = figure.subplots(1, 2)
    for axes, key, label in (
        (loss_axes, "loss", "loss (BCE)"),
        (bits_axes, "bit_errors_per_sequence", "bit errors per sequence"),
    ):
        steps, values = _series(records, key)
        axes.plot(steps, values, label="train", color="tab:blue", alpha=0.8)
        steps, values = _series(records, f"eval_{key}")
        if steps:
            axes.plot(steps, values, "o-", label="held-out", color="tab:orange", markersize=3)
        axes.set_xlabel("step")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        axes.legend()
    _set_log_scale_if_wide(
        loss_axes, _series(records, "loss")[1] + _series(records, "eval_loss")[1]
    )
    _set_bit_error_scale(bits_axes)
    if title:
        figure.suptitle(title)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.88, wspace=0.25)
    return _save(figure, path)


def _trace_panels(trace: Mapping[str, Tensor], index: int) -> list[tuple[str, Tensor]]:
    """(title, (X, T) matrix) for each drawable trace entry of example ``index``."""
    panels = []
    ordered = [k for k in _TRACE_TITLES if k in trace] + sorted(
        k for k in trace if k not in _TRACE_TITLES
    )
    for key in ordered:
        value = trace[key]
        if not isinstance(value, Tensor) or value.dim() < 3:
            continue  # (B, T) scalars per step are not heatmaps
        example = value[index].detach().to("cpu", torch.float32)
        name = _TRACE_TITLES.get(key, key.replace("_", " "))
        if example.dim() == 2:  # (T, N)
            panels.append((name, example.T))
        elif example.dim() == 3 and key in _TRACE_TITLES:  # (T, H, N): one panel per head
            heads = example.shape[1]
            for head in range(min(heads, _MAX_HEADS)):
                suffix = f", head {head}" if heads > 1 else ""
                panels.append((name + suffix, example[:, head].T))
        # Other 3-d entries may be (T, N, N) link matrices: not one heatmap over time.
    return panels


def plot_trace(
    trace: Mapping[str, Tensor],
    batch: Any,
    path: str | Path,
    title: str | None = None,
    *,
    outputs: Tensor | None = None,
    index: int = 0,
) -> Path:
    """Heatmaps over time of one example: input, target, (output), then memory access.

    Args:
        trace: ``model.trace(x)[1]``: ``str -> Tensor`` with batch at dim 0 and time at
            dim 1, e.g. ``write_weights`` (B, T, N) or (B, T, H, N), ``read_weights``
            (B, T, H, N), ``usage`` (B, T, N).
        batch: the task batch (``inputs`` (B, T, I), ``targets`` (B, T, O), ``mask`` (B, T)).
        path: the PNG file to write.
        title: figure title.
        outputs: optional logits (B, T, O), drawn as ``sigmoid(outputs)``.
        index: which example of the batch to draw.
    """
    inputs = batch.inputs[index].detach().to("cpu", torch.float32)
    mask = batch.mask[index].detach().to("cpu", torch.float32)
    # Unscored steps are blanked so the target shows only what is asked for.
    targets = batch.targets[index].detach().to("cpu", torch.float32) * mask.unsqueeze(-1)
    panels: list[tuple[str, Tensor]] = [("input", inputs.T), ("target", targets.T)]
    if outputs is not None:
        predicted = torch.sigmoid(
            outputs[index].detach().to("cpu", torch.float32)
        ) * mask.unsqueeze(-1)
        panels.append(("output (sigmoid)", predicted.T))
    panels += _trace_panels(trace, index)

    heights = [max(1.0, min(4.0, matrix.shape[0] / 8)) for _, matrix in panels]
    figure = _figure(max(6.0, min(16.0, inputs.shape[0] / 4 + 3)), sum(heights) + 1.2)
    from matplotlib.ticker import MaxNLocator

    axes_list = figure.subplots(len(panels), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    for axes, (name, matrix) in zip(axes_list, panels, strict=True):
        # Each panel has its own colour scale (read weights may span 0.03-0.04 early in
        # training); the label gives the range instead of a colour bar, which is slow to draw.
        low, high = float(matrix.min()), float(matrix.max())
        axes.imshow(
            matrix.numpy(), aspect="auto", origin="lower", cmap="viridis", interpolation="nearest"
        )
        axes.set_ylabel(f"{name}\n[{low:.2g}, {high:.2g}]", rotation=0, ha="right", va="center")
        axes.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    axes_list[-1].set_xlabel("time step")
    if title:
        figure.suptitle(title)
    # Fixed margins: tight_layout costs more than the rest of the figure.
    figure.subplots_adjust(
        left=0.24,
        right=0.97,
        bottom=0.9 / figure.get_figheight(),
        top=1 - 0.6 / figure.get_figheight(),
        hspace=0.35,
    )
    return _save(figure, path)


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write a run's plots and return their paths.

    ``learning_curve.png`` always; ``memory_access.png`` when the run has a checkpoint and
    its model has ``trace`` (memory models do, the LSTM does not): one held-out episode,
    drawn from the run's held-out generator.

    Args:
        run_dir: the run folder.
        out_dir: where to write the PNG files (the run folder when None).
    """
    # Imported here so that importing torchmem.viz does not import every model and task.
    from ..train import CHECKPOINT_FILE, eval_seed, load_run, read_metrics

    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"no run folder at {run}")
    out = Path(out_dir) if out_dir is not None else run
    records = read_metrics(run)
    name = run.resolve().name
    paths = [plot_learning_curves(records, out / LEARNING_CURVE_FILE, title=name)]
    if not (run / CHECKPOINT_FILE).exists():
        return paths
    model, task, config, checkpoint = load_run(run)
    if not hasattr(model, "trace"):
        return paths
    generator = torch.Generator().manual_seed(eval_seed(config.seed))
    batch = task.sample(1, generator=generator)
    with torch.no_grad():
        outputs, trace = model.trace(batch.inputs)
    title = f"{config.model} on {config.task}, step {checkpoint['step']}: one held-out episode"
    paths.append(plot_trace(trace, batch, out / MEMORY_ACCESS_FILE, title, outputs=outputs))
    return paths


def plot_comparison(
    results: Sequence[Mapping[str, Any]], path: str | Path, title: str | None = None
) -> Path:
    """Learning curves of several runs on one axes, and a bar chart of their final scores.

    Args:
        results: one dict per run, as returned by :func:`torchmem.experiments.compare`:
            ``model``, ``bit_errors_per_sequence`` (held-out, training lengths), optionally
            ``bit_errors_per_sequence_at_length`` and ``eval_length``, and either
            ``records`` (metrics records) or ``run_dir`` (to read ``metrics.jsonl``).
        path: the PNG file to write.
        title: figure title.
    """
    if not results:
        raise ValueError("no results to plot")
    from ..train import read_metrics

    figure = _figure(11, 4)
    curves, bars = figure.subplots(1, 2)
    for result in results:
        records = result.get("records")
        if records is None:
            records = read_metrics(result["run_dir"])
        key = "eval_bit_errors_per_sequence"
        steps, values = _series(records, key)
        if not steps:
            steps, values = _series(records, "bit_errors_per_sequence")
        curves.plot(steps, values, "o-", markersize=3, label=str(result["model"]))
    curves.set_xlabel("step")
    curves.set_ylabel("held-out bit errors per sequence")
    _set_bit_error_scale(curves)
    curves.grid(True, alpha=0.3)
    curves.legend()

    names = [str(r["model"]) for r in results]
    positions = list(range(len(results)))
    at_length = [r.get("bit_errors_per_sequence_at_length") for r in results]
    longer = any(v is not None for v in at_length)
    width = 0.4 if longer else 0.6
    shift = width / 2 if longer else 0.0
    bars.bar(
        [p - shift for p in positions],
        [float(r["bit_errors_per_sequence"]) for r in results],
        width,
        label="training lengths",
    )
    if longer:
        length = next((r.get("eval_length") for r in results if r.get("eval_length")), "L")
        bars.bar(
            [p + shift for p in positions],
            [float(v) if v is not None else 0.0 for v in at_length],
            width,
            label=f"length {length}",
        )
    bars.set_xticks(positions)
    bars.set_xticklabels(names)
    bars.set_ylabel("held-out bit errors per sequence")
    bars.grid(True, axis="y", alpha=0.3)
    bars.legend()
    if title:
        figure.suptitle(title)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.88, wspace=0.25)
    return _save(figure, path)


__all__ = [
    "LEARNING_CURVE_FILE",
    "MEMORY_ACCESS_FILE",
    "plot_comparison",
    "plot_learning_curves",
    "plot_run",
    "plot_trace",
]
