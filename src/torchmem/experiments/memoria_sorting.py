"""Sorting accuracy against sequence length: Memoria Transformer vs two segment baselines.

The Memoria paper (arXiv:2310.03052) trains each model on the sorting task at several
sequence lengths and reports accuracy per length: the longer the sequence, the more of it
lies in segments a model can no longer attend to, and only a memory that keeps old
information can still count the early symbols. This script does the same at CPU scale:
for every length it trains ``memoria-transformer``, ``segment-transformer`` (same segment
length, nothing carried over) and ``transformer-xl`` (stop-gradient cache of the previous
segment) with the same data, steps and seed, scores them on held-out sequences of that
length and writes, under the output folder,

* ``<out>/L<length>/<model>/``: the trainer's run folder of each run;
* ``results.json``: the settings and one record per (model, length);
* ``results.md``: a markdown table, accuracy per model (rows) and length (columns);
* ``accuracy_vs_length.png``: the curve (when matplotlib is installed).

By default the lengths are ``k * segment_length - symbols`` so that the answer ends a
segment: the answer's segment then also holds the last ``segment_length - symbols``
symbols of the sequence, and at k = 1 the whole sequence fits in one segment (all models
see everything: the sanity anchor).

Run it with ``python -m torchmem.experiments.memoria_sorting --help``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..train import CONFIG_FILE, TrainConfig, train
from ._cli import add_eval_arguments, add_training_arguments, names

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "accuracy_vs_length.png"

MODELS = ("segment-transformer", "transformer-xl", "memoria-transformer")
DEFAULT_SEGMENTS = (1, 2, 4, 8)


def default_lengths(segment_length: int, symbols: int, segments: Sequence[int]) -> list[int]:
    """Sequence lengths whose stream (sequence + answer) fills exactly ``k`` segments."""
    lengths = [k * segment_length - symbols for k in segments]
    if min(lengths) < 1:
        raise ValueError(
            f"segment_length ({segment_length}) must exceed symbols ({symbols}) for the "
            "default lengths; pass lengths explicitly"
        )
    return lengths


def run_sorting_experiment(
    out_dir: str | Path,
    lengths: Sequence[int] | None = None,
    models: Sequence[str] = MODELS,
    steps: int = 800,
    symbols: int = 8,
    segment_length: int = 32,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    eval_batches: int = 4,
    eval_batch_size: int = 64,
    model_options: Mapping[str, Mapping[str, Any]] | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    plots: bool = True,
) -> dict[str, Any]:
    """Train and score every model at every length; write results.json/.md/.png.

    Args:
        out_dir: output folder.
        lengths: sequence lengths L; None uses :func:`default_lengths` with 1, 2, 4 and 8
            segments.
        models: registry names.
        steps, batch_size, lr, seed: training budget, the same for every run.
        symbols: V, the sorting vocabulary.
        segment_length: S, the same for every model.
        eval_batches, eval_batch_size: held-out sequences scored per run.
        model_options: extra options per model name, e.g.
            ``{"memoria-transformer": {"num_memories": 8}}``.
        overwrite: replace run folders left by an earlier call.
        quiet: no progress bars, no table printed.
        plots: draw the PNG (skipped with a note when matplotlib is missing).

    Returns:
        ``{"settings": {...}, "results": [record, ...]}``, as written to results.json;
        each record has ``model``, ``length``, ``segments``, ``accuracy``,
        ``sequence_accuracy``, ``loss``, ``parameters``, ``steps``, ``cpu_seconds``,
        ``wall_seconds`` and ``run_dir``.
    """
    if lengths is None:
        lengths = default_lengths(segment_length, symbols, DEFAULT_SEGMENTS)
    lengths = [int(length) for length in lengths]
    if not lengths or min(lengths) < 1:
        raise ValueError(f"lengths must be positive integers, got {lengths}")
    model_options = {name: dict(options) for name, options in (model_options or {}).items()}
    strays = sorted(set(model_options) - set(models))
    if strays:
        raise ValueError(f"model options given for {', '.join(strays)}, which is not compared")
    out = Path(out_dir)
    # Only the answer's segments need gradients (exact: no gradient crosses a segment).
    grad_segments = math.ceil(symbols / segment_length) + 1
    settings = {
        "lengths": lengths,
        "models": list(models),
        "steps": steps,
        "symbols": symbols,
        "segment_length": segment_length,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "eval_batches": eval_batches,
        "eval_batch_size": eval_batch_size,
        "grad_segments": grad_segments,
        "model_options": model_options,
        "torch_threads": torch.get_num_threads(),
    }
    configs = {
        (length, name): TrainConfig(
            model=name,
            task="sorting",
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            grad_clip=1.0,
            seed=seed,
            eval_every=0,
            eval_batches=eval_batches,
            eval_batch_size=eval_batch_size,
            checkpoint_every=0,
            log_every=max(1, min(50, steps)),
            model_options={
                "segment_length": segment_length,
                "grad_segments": grad_segments,
                **model_options.get(name, {}),
            },
            task_options={"symbols": symbols, "min_length": length, "max_length": length},
        )
        for length in lengths
        for name in models
    }  # built up front so that a bad option fails before any training

    records = []
    runs = tqdm(configs.items(), desc="memoria sorting", unit="run", disable=quiet)
    for (length, name), config in runs:
        runs.set_postfix_str(f"L={length} {name}")
        run_dir = out / f"L{length}" / name
        start = time.perf_counter()
        # eval_every=0: the trainer scores the held-out set once, after the last step.
        final = train(config, run_dir, quiet=quiet, progress=not quiet, overwrite=overwrite)
        resolved = json.loads((run_dir / CONFIG_FILE).read_text())
        records.append(
            {
                "model": name,
                "length": length,
                "segments": math.ceil((length + symbols) / segment_length),
                "accuracy": final["eval_accuracy"],
                "sequence_accuracy": final["eval_sequence_accuracy"],
                "loss": final["eval_loss"],
                "parameters": resolved["model"]["parameters"],
                "steps": steps,
                "cpu_seconds": final["cpu_seconds"],
                "wall_seconds": time.perf_counter() - start,
                "run_dir": str(run_dir),
            }
        )
    result = {"settings": settings, "results": records}
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_JSON).write_text(json.dumps(result, indent=2) + "\n")
    table = format_table(records, lengths, list(models))
    (out / RESULTS_MD).write_text(_markdown(settings, table))
    if plots:
        note = plot_accuracy_vs_length(records, out / RESULTS_PNG, settings)
        if note and not quiet:
            tqdm.write(note)
    if not quiet:
        tqdm.write(table)
    return result


def format_table(records: Sequence[Mapping[str, Any]], lengths: Sequence[int], models) -> str:
    """Markdown table: one row per model, held-out accuracy per length."""
    score = {(r["model"], r["length"]): r["accuracy"] for r in records}
    header = "| model | " + " | ".join(f"L={length}" for length in lengths) + " |"
    rule = "|---|" + "---:|" * len(lengths)
    rows = [
        f"| {name} | "
        + " | ".join(
            f"{score[(name, length)]:.3f}" if (name, length) in score else "-" for length in lengths
        )
        + " |"
        for name in models
    ]
    return "\n".join([header, rule, *rows]) + "\n"


def _markdown(settings: Mapping[str, Any], table: str) -> str:
    return (
        "# Sorting accuracy vs sequence length\n\n"
        f"Held-out answer-symbol accuracy (teacher forcing) after {settings['steps']} steps "
        f"of batch {settings['batch_size']}; {settings['symbols']} symbols, segment length "
        f"{settings['segment_length']}, seed {settings['seed']}, "
        f"{settings['eval_batches'] * settings['eval_batch_size']} held-out sequences per "
        "cell.\n\n" + table
    )


def plot_accuracy_vs_length(
    records: Sequence[Mapping[str, Any]], path: str | Path, settings: Mapping[str, Any]
) -> str | None:
    """Draw accuracy against length, one line per model; returns a note if skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: skipped the plot"
    figure, axes = plt.subplots(figsize=(6, 4))
    for name in settings["models"]:
        points = sorted((r["length"], r["accuracy"]) for r in records if r["model"] == name)
        if points:
            xs, ys = zip(*points)
            axes.plot(xs, ys, marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("sequence length L (symbols)")
    axes.set_ylabel("held-out accuracy")
    axes.set_ylim(0, 1)
    axes.set_title(
        f"sorting, V={settings['symbols']}, segment {settings['segment_length']}, "
        f"{settings['steps']} steps"
    )
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m torchmem.experiments.memoria_sorting",
        description="Train Memoria Transformer and two segment baselines on the sorting task "
        "at several sequence lengths; write results.json, results.md and a plot.",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/memoria-sorting"))
    parser.add_argument(
        "--lengths",
        help="comma-separated sequence lengths (default: k*segment_length - symbols, k=1,2,4,8)",
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--segment-length", type=int, default=32)
    add_eval_arguments(parser, 4, 64)
    add_training_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    lengths = [int(v) for v in args.lengths.split(",")] if args.lengths else None
    run_sorting_experiment(
        args.out,
        lengths=lengths,
        models=names(args.models),
        steps=args.steps,
        symbols=args.symbols,
        segment_length=args.segment_length,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        eval_batches=args.eval_batches,
        eval_batch_size=args.eval_batch_size,
        overwrite=args.overwrite,
        quiet=args.quiet,
        plots=not args.no_plot,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
