"""Experiment 1 (and 4) of "Memory Is All You Need": recall accuracy against the distance
between a fact and its query, for MemNet, its ablations and the baselines.

Every variant is trained on :mod:`gap_recall <torchmem.tasks.gap_recall>` (key-value facts
among distractors, one fact queried ``gap`` steps later) with the same data, steps and
seed, then scored on one held-out set whose examples carry their gap, and the accuracy is
binned by gap. The variants (``VARIANTS``):

* ``memnet`` and its ablations (experiment 4): ``memnet-alpha0`` (no spreading activation,
  alpha = 0), ``memnet-no-dream`` (``dream_every=0``: no scheduled dreaming),
  ``memnet-topk-only`` (the top-k read policy alone), ``memnet-no-recon`` (reconstruction
  weight 0); on request (``--variants``) ``memnet-no-merge`` (dreaming without merging
  near-duplicate slots, ``merge_threshold=1``);
* ``dnc``, ``ntm``, ``lstm``;
* ``segment-transformer``: a causal transformer restarted every ``segment_length`` steps.
  The stream is sized so that the answer's segment is the last ``segment_length`` steps
  (T = 2 S by default), so it sees facts with a gap up to ``segment_length - 2`` and none
  beyond: the transformer whose attention window is shorter than the gap.

For the memory models it also measures, on the held-out set (``memory_stats``): slot
reuse (``slots_written``: slots whose write weight summed over the episode reaches 0.5;
``writes_per_slot``: the episode's total write weight per such slot, above 1 when slots
are overwritten) and read sparsity (``read_entropy``: the mean normalised entropy
H(w) / log N of the read weights over steps and heads; 0 one slot, 1 uniform).

Writes, under the output folder: ``<variant>/`` (the trainer's run folder of each run),
``results.json`` (settings and one record per variant), ``results.md`` (tables) and
``accuracy_vs_gap.png``. Run it with ``python -m torchmem.experiments.memnet_gap --help``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..core.regularizers import normalized_entropy
from ..tasks import GapRecallConfig, GapRecallTask
from ..tasks.base import bit_errors
from ..train import CONFIG_FILE, TrainConfig, eval_seed, load_run, train
from ._cli import add_eval_arguments, add_gap_task_arguments, add_training_arguments, names

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "accuracy_vs_gap.png"

#: Variant name -> (registry model, options of the variant).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "memnet": ("memnet", {}),
    "memnet-alpha0": ("memnet", {"spread_alpha": 0.0}),
    "memnet-no-dream": ("memnet", {"dream_every": 0}),
    "memnet-topk-only": ("memnet", {"policies": "topk"}),
    "memnet-no-recon": ("memnet", {"reconstruction_weight": 0.0}),
    "dnc": ("dnc", {}),
    "ntm": ("ntm", {}),
    "lstm": ("lstm", {}),
    "segment-transformer": ("segment-transformer", {}),
    # Not run by default: dreaming's refinement without its slot merging, to tell which of
    # the two is behind memnet-no-dream's lead.
    "memnet-no-merge": ("memnet", {"merge_threshold": 1.0}),
}
DEFAULT_VARIANTS = tuple(name for name in VARIANTS if name != "memnet-no-merge")

#: Sizes shared by a model's variants at the experiment's CPU scale.
SCALE_OPTIONS: dict[str, dict[str, Any]] = {
    "memnet": {"hidden_size": 64, "memory_slots": 16},
    "dnc": {"hidden_size": 64, "memory_slots": 16},
    "ntm": {"hidden_size": 64, "memory_slots": 16},
    "lstm": {"hidden_size": 64},
    "segment-transformer": {"hidden_size": 64},
}


def resolve_options(
    table: Mapping[str, tuple[str, Mapping[str, Any]]],
    names: Sequence[str],
    model_options: Mapping[str, Mapping[str, Any]] | None,
    segment_length: int,
    kind: str,
) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{name: (registry model, options)}`` for the compared ``names`` of ``table`` (variant
    or model name -> (registry model, its options)): ``SCALE_OPTIONS``, then the table's
    options, then ``model_options[name]``; the segment transformer's window defaults to
    ``segment_length``. Unknown names, and options for a name not compared, raise."""
    unknown = [name for name in names if name not in table]
    if unknown or not names:
        raise ValueError(
            f"unknown {kind} {', '.join(unknown) or '(none given)'}; valid: {', '.join(table)}"
        )
    strays = sorted(set(model_options or {}) - set(names))
    if strays:
        raise ValueError(f"model options given for {', '.join(strays)}, which is not compared")
    resolved = {}
    for name in names:
        model, options = table[name]
        options = {**SCALE_OPTIONS.get(model, {}), **options, **(model_options or {}).get(name, {})}
        if model == "segment-transformer":
            options.setdefault("segment_length", segment_length)
        resolved[name] = (model, options)
    return resolved


def gap_bins(min_gap: int, max_gap: int, width: int) -> list[tuple[int, int]]:
    """Inclusive gap ranges of ``width`` gaps each (the last one may be shorter)."""
    if width < 1:
        raise ValueError(f"bin width must be >= 1, got {width}")
    return [(low, min(low + width - 1, max_gap)) for low in range(min_gap, max_gap + 1, width)]


def _normalise(weights: torch.Tensor) -> torch.Tensor:
    """Write weights (B, T, N) or (B, T, H, N) -> (B, T, H, N)."""
    return weights.unsqueeze(2) if weights.dim() == 3 else weights


def memory_stats(trace: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Slot reuse and read sparsity from a model's ``trace`` (``read_weights`` and
    ``write_weights``, time at dim 1): see the module docstring."""
    reads = _normalise(trace["read_weights"])  # (B, T, R, N)
    writes = _normalise(trace["write_weights"])  # (B, T, V, N)
    per_slot = writes.sum(dim=(1, 2))  # (B, N)
    written = (per_slot >= 0.5).sum(dim=-1).to(per_slot.dtype)  # (B,)
    mass = per_slot.sum(dim=-1)
    return {
        "slots_written": float(written.mean()),
        "writes_per_slot": float((mass / written.clamp_min(1.0)).mean()),
        "write_mass": float(mass.mean()),
        "read_entropy": float(normalized_entropy(reads).mean()),
    }


def score_by_gap(
    model: torch.nn.Module,
    task: GapRecallTask,
    bins: Sequence[tuple[int, int]],
    *,
    batches: int,
    batch_size: int,
    seed: int,
) -> dict[str, Any]:
    """Held-out accuracy overall and per gap bin, plus :func:`memory_stats` for a model
    with ``trace``. Eval mode, no gradients; data from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    correct, bit_right, gaps, stats = [], [], [], []
    try:
        with torch.no_grad():
            for _ in range(batches):
                batch, batch_gaps = task.sample_with_gaps(batch_size, generator)
                if hasattr(model, "trace"):
                    outputs, trace = model.trace(batch.inputs)
                    stats.append(memory_stats(trace))
                else:
                    outputs, _ = model(batch.inputs)
                errors = bit_errors(outputs, batch)
                correct.append(errors == 0)
                bit_right.append(1.0 - errors / task.output_size)
                gaps.append(batch_gaps)
    finally:
        model.train(was_training)
    correct_t, bits_t, gaps_t = torch.cat(correct), torch.cat(bit_right), torch.cat(gaps)
    per_bin = []
    for low, high in bins:
        inside = (gaps_t >= low) & (gaps_t <= high)
        count = int(inside.sum())
        per_bin.append(
            {
                "gap_low": low,
                "gap_high": high,
                "count": count,
                "accuracy": float(correct_t[inside].float().mean()) if count else None,
                "bit_accuracy": float(bits_t[inside].mean()) if count else None,
            }
        )
    result: dict[str, Any] = {
        "accuracy": float(correct_t.float().mean()),
        "bit_accuracy": float(bits_t.mean()),
        "by_gap": per_bin,
    }
    if stats:
        result["memory"] = {key: sum(s[key] for s in stats) / len(stats) for key in stats[0]}
    return result


def gap_train_config(
    model: str,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    log_every: int,
    model_options: dict,
    task_options: dict,
) -> TrainConfig:
    """The trainer settings of the gap-recall experiments: Adam, gradient clip 10, no
    held-out evaluation or checkpoints during training (the experiments score afterwards)."""
    return TrainConfig(
        model=model,
        task="gap_recall",
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        grad_clip=10.0,
        seed=seed,
        eval_every=0,
        eval_batches=1,
        eval_batch_size=64,
        checkpoint_every=0,
        log_every=log_every,
        model_options=model_options,
        task_options=task_options,
    )


def run_gap_experiment(
    out_dir: str | Path,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    steps: int = 1000,
    bits: int = 4,
    facts: int = 2,
    max_gap: int = 14,
    segment_length: int = 8,
    bin_width: int = 2,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    eval_batches: int = 4,
    eval_batch_size: int = 256,
    model_options: Mapping[str, Mapping[str, Any]] | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    plots: bool = True,
) -> dict[str, Any]:
    """Train and score every variant; write results.json / .md / .png.

    Args:
        out_dir: output folder.
        variants: names from ``VARIANTS``.
        steps, batch_size, lr, seed: training budget, the same for every variant.
        bits, facts, max_gap: the task (gaps 1..max_gap, stream of max_gap steps).
        segment_length: the segment transformer's window.
        bin_width: gaps per accuracy bin.
        eval_batches, eval_batch_size: held-out examples (the same for every variant).
        model_options: extra options per variant, overriding ``SCALE_OPTIONS`` and the
            variant's own, e.g. ``{"memnet": {"memory_slots": 32}}``.
        overwrite: replace run folders left by an earlier call.
        quiet: no progress bars, no table printed.
        plots: draw the PNG (skipped with a note when matplotlib is missing).

    Returns:
        ``{"settings": {...}, "results": [record, ...]}`` as written to results.json; a
        record has ``variant``, ``model``, ``options``, ``accuracy``, ``bit_accuracy``,
        ``by_gap`` (per bin: range, count, accuracy, bit accuracy), ``memory`` (memory
        models), ``parameters``, ``steps``, ``cpu_seconds``, ``wall_seconds``, ``run_dir``.
    """
    resolved = resolve_options(VARIANTS, variants, model_options, segment_length, "variants")
    task_options = {"bits": bits, "facts": facts, "min_gap": 1, "max_gap": max_gap}
    task = GapRecallTask(GapRecallConfig(**task_options))
    bins = gap_bins(1, max_gap, bin_width)
    out = Path(out_dir)
    configs = {}
    for name, (model, options) in resolved.items():
        # Built up front so that a bad option fails before any training.
        configs[name] = gap_train_config(
            model, steps, batch_size, lr, seed, max(1, min(50, steps)), options, task_options
        )
    settings = {
        "variants": list(variants),
        "steps": steps,
        "task": task_options,
        "stream_steps": max(max_gap, facts),
        "segment_length": segment_length,
        "bins": bins,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "eval_batches": eval_batches,
        "eval_batch_size": eval_batch_size,
        "model_options": {name: config.model_options for name, config in configs.items()},
        "torch_threads": torch.get_num_threads(),
    }

    records = []
    runs = tqdm(configs.items(), desc="memnet gap", unit="run", disable=quiet)
    for name, config in runs:
        runs.set_postfix_str(name)
        run_dir = out / name
        start = time.perf_counter()
        final = train(config, run_dir, quiet=quiet, progress=not quiet, overwrite=overwrite)
        wall = time.perf_counter() - start
        model, _, _, _ = load_run(run_dir)
        scores = score_by_gap(
            model,
            task,
            bins,
            batches=eval_batches,
            batch_size=eval_batch_size,
            seed=eval_seed(seed),
        )
        resolved = json.loads((run_dir / CONFIG_FILE).read_text())
        records.append(
            {
                "variant": name,
                "model": config.model,
                "options": config.model_options,
                **scores,
                "final_train_loss": final["loss"],
                "parameters": resolved["model"]["parameters"],
                "steps": steps,
                "cpu_seconds": final["cpu_seconds"],
                "seconds_per_step": final["cpu_seconds"] / steps,
                "wall_seconds": wall,
                "run_dir": str(run_dir),
            }
        )
    result = {"settings": settings, "results": records}
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_JSON).write_text(json.dumps(result, indent=2) + "\n")
    text = format_tables(records, bins)
    (out / RESULTS_MD).write_text(_markdown(settings, text))
    if plots:
        note = plot_accuracy_vs_gap(records, out / RESULTS_PNG, settings)
        if note and not quiet:
            tqdm.write(note)
    if not quiet:
        tqdm.write(text)
    return result


def format_tables(records: Sequence[Mapping[str, Any]], bins: Sequence[tuple[int, int]]) -> str:
    """Markdown: accuracy per variant (rows) and gap bin (columns); then memory statistics."""
    labels = [f"{low}" if low == high else f"{low}-{high}" for low, high in bins]
    header = "| variant | all | " + " | ".join(f"gap {label}" for label in labels) + " |"
    rule = "|---|---:|" + "---:|" * len(bins)
    rows = []
    for r in records:
        cells = ["-" if b["accuracy"] is None else f"{b['accuracy']:.3f}" for b in r["by_gap"]]
        rows.append(f"| {r['variant']} | {r['accuracy']:.3f} | " + " | ".join(cells) + " |")
    lines = [header, rule, *rows, ""]
    lines += [
        "| variant | parameters | CPU s/step | bit accuracy | slots written | "
        "writes per slot | read entropy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        memory = r.get("memory")
        stats = (
            f"{memory['slots_written']:.2f} | {memory['writes_per_slot']:.2f} | "
            f"{memory['read_entropy']:.3f}"
            if memory
            else "- | - | -"
        )
        lines.append(
            f"| {r['variant']} | {r['parameters']:,} | {r['seconds_per_step']:.3f} | "
            f"{r['bit_accuracy']:.3f} | {stats} |"
        )
    return "\n".join(lines) + "\n"


def _markdown(settings: Mapping[str, Any], text: str) -> str:
    task = settings["task"]
    return (
        "# Gap recall: accuracy against the distance between a fact and its query\n\n"
        f"Held-out value accuracy (all {task['bits']} bits right; chance "
        f"{2.0 ** -task['bits']:.3f}) after {settings['steps']} steps of batch "
        f"{settings['batch_size']}, seed {settings['seed']}; {task['facts']} facts among "
        f"{settings['stream_steps']} stream steps, gaps 1-{task['max_gap']}; segment "
        f"transformer window {settings['segment_length']}; "
        f"{settings['eval_batches'] * settings['eval_batch_size']} held-out examples.\n\n" + text
    )


def plot_accuracy_vs_gap(
    records: Sequence[Mapping[str, Any]], path: str | Path, settings: Mapping[str, Any]
) -> str | None:
    """Accuracy against gap (bin centres), one line per variant; returns a note if skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: skipped the plot"
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for r in records:
        points = [
            ((b["gap_low"] + b["gap_high"]) / 2, b["accuracy"])
            for b in r["by_gap"]
            if b["accuracy"] is not None
        ]
        style = "--" if r["variant"].startswith("memnet-") else "-"
        axes.plot(*zip(*points), style, marker="o", markersize=3, label=r["variant"])
    axes.axhline(2.0 ** -settings["task"]["bits"], color="grey", linewidth=0.8, linestyle=":")
    axes.axvline(settings["segment_length"] - 1.5, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xlabel("gap (steps from the fact to its query)")
    axes.set_ylabel("held-out accuracy")
    axes.set_ylim(0, 1)
    axes.set_title(f"gap recall, {settings['steps']} steps, seed {settings['seed']}")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m torchmem.experiments.memnet_gap",
        description="Train MemNet, its ablations and baselines on gap recall; write accuracy "
        "by gap, slot reuse and read sparsity to results.json, results.md and a plot.",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/memnet-gap"))
    parser.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated, of: "
        + ", ".join(VARIANTS),
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=1000)
    add_gap_task_arguments(parser)
    parser.add_argument("--segment-length", type=int, default=8)
    parser.add_argument("--bin-width", type=int, default=2)
    add_eval_arguments(parser, 4, 256)
    add_training_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    run_gap_experiment(
        args.out,
        variants=names(args.variants),
        steps=args.steps,
        bits=args.bits,
        facts=args.facts,
        max_gap=args.max_gap,
        segment_length=args.segment_length,
        bin_width=args.bin_width,
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
