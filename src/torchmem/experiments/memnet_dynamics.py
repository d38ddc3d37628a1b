"""Experiment 3 of "Memory Is All You Need": MemNet's learned forgetting dynamics over training.

MemNet is trained on :mod:`gap_recall <torchmem.tasks.gap_recall>` for ``steps`` steps (the
trainer's loop, resumed every ``every`` steps, which gives exactly the numbers of one
uninterrupted run). At step 0 (the untrained model, initialised as the trainer does) and
every ``every`` steps, one fixed held-out probe batch goes through ``MemNet.trace`` (eval
mode, no noise) and the addressing is summarised (:func:`dynamics_stats`):

* **Overwrite weight** of slot i at step t: o_t(i) = 1 - prod_v (1 - w^w_{t,v}(i)) over the
  write heads v, the fraction of the slot's age wiped at t (as in ``update_ages``).
* **Write frequency** of slot i: the mean of o_t(i) over steps and probe examples;
  ``write_concentration`` is the normalised entropy of those frequencies (1: every slot is
  written equally often, 0: one slot takes every write).
* **Overwrite events**: o_t(i) > ``threshold`` (0.5 by default), a substantial overwrite. A
  *content* is what an event writes; its **lifetime** is the number of steps to the next
  event in the same slot (t' - t; at least 1). A content with no later event is censored:
  seen intact for T - 1 - t steps. ``slot_lifetimes`` is each slot's mean observed lifetime.
* **Survival curve** S(d), d = 0..T-1: the fraction of contents not yet overwritten d steps
  after being written (Kaplan-Meier, so censored contents count while they are observed):
  S(0) = 1, S(d) = S(d-1) (1 - ended(d) / at_risk(d)) with ended(d) the contents of lifetime
  exactly d and at_risk(d) those observed (ended or still intact) for at least d steps;
  None where no content is at risk any more. ``median_lifetime`` is the first d with
  S(d) <= 0.5 (None: more than half survive the episode).
* **Soft survival** S_soft(d), with no threshold (MemNet's writes are soft and spread over
  slots, so few single writes pass 0.5): the write-mass-weighted fraction of what was
  written that is still in place d steps later, counting a slot's later overwrite weights
  as erasing that fraction (an upper bound on the loss: the erase vector may spare some
  of it), ``soft_median_lifetime`` its first d with S_soft(d) <= 0.5
  (:func:`soft_survival_curve`).
* **Read entropy**: the mean normalised entropy H(w) / log N of the read weights (after
  spreading activation; ``base_read_entropy`` before it) over steps, heads and examples.
* :func:`~torchmem.experiments.memnet_gap.memory_stats` (slot reuse over the episode), the
  probe accuracy and the mean slot age at the last step.

For the first and last checkpoints it also keeps the (T, N) read weights (mean over read
heads) and overwrite weights of probe example 0, for heatmaps.

Writes, under the output folder: ``run/`` (the trainer's run folder), ``results.json``
(settings, one record per checkpoint, the heatmaps), ``results.md`` (a table),
``survival.png``, ``heatmaps.png`` and ``training.png``. Run it with
``python -m torchmem.experiments.memnet_dynamics --help``.
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
from ..registry import make_model
from ..tasks import GapRecallConfig, GapRecallTask
from ..tasks.base import bit_errors
from ..train import TrainConfig, eval_seed, load_run, train
from ..train.trainer import seed_everything
from ._cli import add_gap_task_arguments, add_training_arguments
from .memnet_gap import SCALE_OPTIONS, _normalise, gap_train_config, memory_stats

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
SURVIVAL_PNG = "survival.png"
HEATMAPS_PNG = "heatmaps.png"
TRAINING_PNG = "training.png"
RUN_DIR = "run"

#: Delays d at which results.md shows the survival curve S(d).
TABLE_DELAYS = (2, 4, 8)


# -- statistics ----------------------------------------------------------------------------
def overwrite_weights(write_weights: torch.Tensor) -> torch.Tensor:
    """o = 1 - prod_v (1 - w_v): write weights (B, T, N) or (B, T, V, N) -> (B, T, N)."""
    return 1.0 - torch.prod(1.0 - _normalise(write_weights), dim=2)


def content_lifetimes(events: torch.Tensor) -> tuple[list[int], list[int]]:
    """Lifetimes of the contents written by overwrite events (B, T, N) bool.

    Returns ``(ended, censored)``: the lifetimes t' - t of contents overwritten again at t',
    and for each slot's last content the steps T - 1 - t it was seen intact.
    """
    t_len = events.shape[1]
    ended: list[int] = []
    censored: list[int] = []
    for b, n in torch.nonzero(events.any(dim=1)).tolist():
        times = torch.nonzero(events[b, :, n]).flatten().tolist()
        ended += [later - earlier for earlier, later in zip(times, times[1:])]
        censored.append(t_len - 1 - times[-1])
    return ended, censored


def slot_lifetimes(events: torch.Tensor) -> list[float | None]:
    """Each slot's mean observed lifetime over the batch (None: no content of it ended)."""
    result: list[float | None] = []
    for n in range(events.shape[2]):
        ended, _ = content_lifetimes(events[:, :, n : n + 1])
        result.append(sum(ended) / len(ended) if ended else None)
    return result


def survival_curve(ended: Sequence[int], censored: Sequence[int], horizon: int) -> list:
    """Kaplan-Meier S(d) for d = 0..horizon (see the module docstring); None once no content
    is at risk."""
    curve: list[float | None] = [1.0]
    value: float | None = 1.0
    for d in range(1, horizon + 1):
        at_risk = sum(1 for x in ended if x >= d) + sum(1 for x in censored if x >= d)
        if value is None or at_risk == 0:
            value = None
        else:
            value *= 1.0 - sum(1 for x in ended if x == d) / at_risk
        curve.append(value)
    return curve


def soft_survival_curve(overwrite: torch.Tensor) -> list[float | None]:
    """Threshold-free survival from overwrite weights o (B, T, N): S_soft(d) = sum over
    writes o_t(i) prod_{u=t+1}^{t+d} (1 - o_u(i)) / sum o_t(i), over the writes with t + d
    within the episode (t <= T - 1 - d); None where they carry no write mass."""
    t_len = overwrite.shape[1]
    keep = torch.ones_like(overwrite)
    curve: list[float | None] = []
    for d in range(t_len):
        written = overwrite[:, : t_len - d]
        mass = float(written.sum())
        curve.append(float((written * keep[:, : t_len - d]).sum()) / mass if mass > 0 else None)
        if d + 1 < t_len:
            keep[:, : t_len - d - 1] *= 1.0 - overwrite[:, d + 1 :]
    return curve


def median_lifetime(curve: Sequence[float | None]) -> int | None:
    """First d with S(d) <= 0.5 (None if there is none)."""
    return next((d for d, s in enumerate(curve) if s is not None and s <= 0.5), None)


def dynamics_stats(trace: Mapping[str, torch.Tensor], threshold: float = 0.5) -> dict[str, Any]:
    """Write frequency, lifetimes, survival and read entropy from a MemNet ``trace``."""
    overwrite = overwrite_weights(trace["write_weights"])  # (B, T, N)
    events = overwrite > threshold
    batch, t_len, slots = overwrite.shape
    frequency = overwrite.mean(dim=(0, 1))  # (N,)
    share = frequency / frequency.sum().clamp_min(1e-12)
    ended, censored = content_lifetimes(events)
    curve = survival_curve(ended, censored, t_len - 1)
    soft = soft_survival_curve(overwrite)
    stats: dict[str, Any] = {
        "write_frequency": frequency.tolist(),
        "write_frequency_mean": float(frequency.mean()),
        "write_frequency_max": float(frequency.max()),
        "write_concentration": float(normalized_entropy(share)),
        "write_mass_per_step": float(overwrite.sum(dim=-1).mean()),
        "events_per_example": float(events.sum()) / batch,
        "slots_overwritten": float(events.any(dim=1).sum()) / batch,
        "contents_ended": len(ended),
        "contents_censored": len(censored),
        "lifetime_mean": sum(ended) / len(ended) if ended else None,
        "slot_lifetimes": slot_lifetimes(events),
        "survival": curve,
        "median_lifetime": median_lifetime(curve),
        "soft_survival": soft,
        "soft_median_lifetime": median_lifetime(soft),
        "read_entropy": float(normalized_entropy(_normalise(trace["read_weights"])).mean()),
    }
    if "base_read_weights" in trace:
        base = _normalise(trace["base_read_weights"])
        stats["base_read_entropy"] = float(normalized_entropy(base).mean())
    if "ages" in trace:
        stats["mean_age_final"] = float(trace["ages"][:, -1].mean())
    return stats


def probe(
    model: torch.nn.Module, batch, threshold: float, example: int = 0
) -> tuple[dict[str, Any], dict[str, list]]:
    """Statistics of one probe batch (eval mode, no gradients) and the (T, N) read and
    overwrite weights of probe example ``example``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs, trace = model.trace(batch.inputs)
    finally:
        model.train(was_training)
    errors = bit_errors(outputs, batch)
    stats = {
        "accuracy": float((errors == 0).float().mean()),
        "bit_accuracy": float((1.0 - errors / outputs.shape[-1]).mean()),
        **dynamics_stats(trace, threshold),
        "memory": memory_stats(trace),
    }
    heatmaps = {
        "reads": _normalise(trace["read_weights"])[example].mean(dim=1).tolist(),
        "writes": overwrite_weights(trace["write_weights"])[example].tolist(),
    }
    return stats, heatmaps


# -- the experiment ------------------------------------------------------------------------
def run_dynamics_experiment(
    out_dir: str | Path,
    steps: int = 600,
    every: int = 100,
    bits: int = 4,
    facts: int = 2,
    max_gap: int = 14,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    probe_size: int = 256,
    threshold: float = 0.5,
    model_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    plots: bool = True,
) -> dict[str, Any]:
    """Train MemNet, probing it at step 0 and every ``every`` steps; write the results.

    Args:
        out_dir: output folder (the run folder is ``out_dir/run``).
        steps, every: training steps and probe interval (the last probe is at ``steps``).
        bits, facts, max_gap: the gap recall task (gaps 1..max_gap).
        batch_size, lr, seed: training (Adam, grad clip 10).
        probe_size: held-out probe examples (seed ``eval_seed(seed)``), the same at every
            checkpoint.
        threshold: overwrite weight above which a write is an overwrite event.
        model_options: MemNet options over ``SCALE_OPTIONS["memnet"]``.
        overwrite: replace a run folder left by an earlier call.
        quiet: no progress bar, no table printed.
        plots: draw the PNGs (skipped with a note when matplotlib is missing).

    Returns:
        ``{"settings", "checkpoints", "heatmaps"}`` as written to results.json: one record
        per checkpoint (``step``, ``cpu_seconds`` of training so far, the statistics of
        :func:`probe`); ``heatmaps`` the first and last checkpoints' example matrices.
    """
    if steps < 1 or every < 1:
        raise ValueError(f"steps and every must be >= 1, got {steps} and {every}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    task_options = {"bits": bits, "facts": facts, "min_gap": 1, "max_gap": max_gap}
    task = GapRecallTask(GapRecallConfig(**task_options))
    options = {**SCALE_OPTIONS["memnet"], **(model_options or {})}
    out = Path(out_dir)
    run_dir = out / RUN_DIR
    targets = list(range(every, steps, every)) + [steps]

    def config_for(target: int) -> TrainConfig:
        return gap_train_config(
            "memnet", target, batch_size, lr, seed, max(1, min(50, every)), options, task_options
        )

    config_for(steps)  # a bad option fails before anything runs
    probe_batch, probe_gaps = task.sample_with_gaps(
        probe_size, torch.Generator().manual_seed(eval_seed(seed))
    )
    settings = {
        "steps": steps,
        "every": every,
        "task": task_options,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "probe_size": probe_size,
        "probe_seed": eval_seed(seed),
        "threshold": threshold,
        "model_options": options,
        "heatmap_example_gap": int(probe_gaps[0]),
        "torch_threads": torch.get_num_threads(),
    }

    seed_everything(seed)  # the trainer's initialisation, for the step-0 probe
    model = make_model("memnet", task.input_size, task.output_size, **options)
    stats, first_maps = probe(model, probe_batch, threshold)
    checkpoints = [{"step": 0, "cpu_seconds": 0.0, **stats}]
    last_maps = first_maps
    start = time.perf_counter()
    bar = tqdm(targets, desc="memnet dynamics", unit="checkpoint", disable=quiet)
    for index, target in enumerate(bar):
        final = train(
            config_for(target),
            run_dir,
            resume=index > 0,
            overwrite=overwrite and index == 0,
            quiet=True,
        )
        model, _, _, _ = load_run(run_dir)
        stats, last_maps = probe(model, probe_batch, threshold)
        checkpoints.append({"step": target, "cpu_seconds": final["cpu_seconds"], **stats})
        bar.set_postfix(acc=f"{stats['accuracy']:.3f}")
    settings["wall_seconds"] = time.perf_counter() - start
    result = {
        "settings": settings,
        "checkpoints": checkpoints,
        "heatmaps": {"first": {"step": 0, **first_maps}, "last": {"step": steps, **last_maps}},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_JSON).write_text(json.dumps(result, indent=2) + "\n")
    table = format_table(checkpoints)
    (out / RESULTS_MD).write_text(_markdown(settings, table))
    if plots:
        note = plot_all(result, out)
        if note and not quiet:
            tqdm.write(note)
    if not quiet:
        tqdm.write(table)
    return result


def _at(curve: Sequence[float | None], d: int) -> str:
    value = curve[d] if d < len(curve) else None
    return "-" if value is None else f"{value:.3f}"


def format_table(checkpoints: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one row of statistics per checkpoint."""
    delays = " | ".join(f"S({d})" for d in TABLE_DELAYS)
    soft_delays = " | ".join(f"soft S({d})" for d in TABLE_DELAYS)
    lines = [
        "| step | accuracy | read entropy | write freq mean | write freq max | "
        f"write concentration | events / example | slots overwritten | mean lifetime | "
        f"median lifetime | {delays} | soft median | {soft_delays} | mean age at end |",
        "|---:|" + "---:|" * (11 + 2 * len(TABLE_DELAYS)),
    ]
    for c in checkpoints:
        lifetime = "-" if c["lifetime_mean"] is None else f"{c['lifetime_mean']:.2f}"
        median = "-" if c["median_lifetime"] is None else str(c["median_lifetime"])
        survival = " | ".join(_at(c["survival"], d) for d in TABLE_DELAYS)
        soft = " | ".join(_at(c["soft_survival"], d) for d in TABLE_DELAYS)
        soft_median = "-" if c["soft_median_lifetime"] is None else str(c["soft_median_lifetime"])
        lines.append(
            f"| {c['step']} | {c['accuracy']:.3f} | {c['read_entropy']:.3f} | "
            f"{c['write_frequency_mean']:.3f} | {c['write_frequency_max']:.3f} | "
            f"{c['write_concentration']:.3f} | {c['events_per_example']:.2f} | "
            f"{c['slots_overwritten']:.2f} | {lifetime} | {median} | {survival} | "
            f"{soft_median} | {soft} | "
            f"{c.get('mean_age_final', float('nan')):.2f} |"
        )
    return "\n".join(lines) + "\n"


def _markdown(settings: Mapping[str, Any], table: str) -> str:
    task = settings["task"]
    return (
        "# MemNet forgetting dynamics over training (gap recall)\n\n"
        f"MemNet ({', '.join(f'{k}={v}' for k, v in settings['model_options'].items())}) "
        f"trained {settings['steps']} steps (batch {settings['batch_size']}, lr "
        f"{settings['lr']}, seed {settings['seed']}) on gap recall ({task['bits']}-bit keys "
        f"and values, {task['facts']} facts, gaps 1-{task['max_gap']}); probed at step 0 and "
        f"every {settings['every']} steps on {settings['probe_size']} fixed held-out "
        f"examples. Overwrite event: overwrite weight > {settings['threshold']}; S(d): "
        "fraction of written contents not yet overwritten d steps later (Kaplan-Meier); "
        "soft S(d): write-mass-weighted fraction still in place d steps later (no threshold); "
        "write concentration: normalised entropy of the per-slot write frequencies.\n\n" + table
    )


# -- plots ---------------------------------------------------------------------------------
def plot_all(result: Mapping[str, Any], out: str | Path) -> str | None:
    """survival.png, heatmaps.png and training.png; returns a note if skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: skipped the plots"
    out = Path(out)
    checkpoints = result["checkpoints"]
    first, last = checkpoints[0], checkpoints[-1]

    figure, axes = plt.subplots(figsize=(6, 4))
    for record, color in ((first, "tab:blue"), (last, "tab:orange")):
        step = record["step"]
        soft = [(d, s) for d, s in enumerate(record["soft_survival"]) if s is not None]
        if soft:
            axes.plot(*zip(*soft), "-", marker="o", markersize=3, color=color,
                      label=f"soft, step {step}")  # fmt: skip
        points = [(d, s) for d, s in enumerate(record["survival"]) if s is not None]
        if len(points) > 1:
            axes.step(*zip(*points), "--", where="post", color=color,
                      label=f"events > {result['settings']['threshold']}, step {step}")  # fmt: skip
    axes.set_xlabel("steps since the content was written (d)")
    axes.set_ylabel("fraction not yet overwritten S(d)")
    axes.set_ylim(0, 1.05)
    axes.set_title("slot content survival (probe batch)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(out / SURVIVAL_PNG, dpi=120)
    plt.close(figure)

    maps = result["heatmaps"]
    figure, axes = plt.subplots(2, 2, figsize=(9, 7), squeeze=False)
    for column, key in enumerate(("first", "last")):
        for row, kind in enumerate(("reads", "writes")):
            ax = axes[row][column]
            image = ax.imshow(
                torch.tensor(maps[key][kind]).T.numpy(),
                aspect="auto",
                origin="lower",
                cmap="viridis",
                vmin=0,
                vmax=1,
            )
            ax.set_title(f"{kind[:-1]} weights, step {maps[key]['step']}")
            ax.set_xlabel("time step t")
            ax.set_ylabel("slot")
            figure.colorbar(image, ax=ax)
    figure.suptitle(f"probe example 0 (gap {result['settings']['heatmap_example_gap']})")
    figure.tight_layout()
    figure.savefig(out / HEATMAPS_PNG, dpi=120)
    plt.close(figure)

    steps = [c["step"] for c in checkpoints]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (
        ("read_entropy", "read entropy"),
        ("write_concentration", "write concentration"),
        ("accuracy", "probe accuracy"),
    ):
        left.plot(steps, [c[key] for c in checkpoints], marker="o", markersize=3, label=label)
    left.plot(
        steps,
        [c["write_frequency_max"] for c in checkpoints],
        marker="o",
        markersize=3,
        label="max slot write frequency",
    )
    left.set_xlabel("training step")
    left.set_ylim(0, 1.05)
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    frequencies = torch.tensor([c["write_frequency"] for c in checkpoints]).T.numpy()
    image = right.imshow(frequencies, aspect="auto", origin="lower", cmap="magma")
    right.set_xticks(range(len(steps)), [str(s) for s in steps], rotation=45, fontsize=7)
    right.set_xlabel("training step")
    right.set_ylabel("slot")
    right.set_title("write frequency per slot")
    figure.colorbar(image, ax=right)
    figure.tight_layout()
    figure.savefig(out / TRAINING_PNG, dpi=120)
    plt.close(figure)
    return None


# -- command line --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m torchmem.experiments.memnet_dynamics",
        description="Train MemNet on gap recall and record its write frequency, slot "
        "lifetimes, survival curves and read entropy over training.",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/memnet-dynamics"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100, help="probe every this many steps")
    add_gap_task_arguments(parser)
    parser.add_argument("--probe-size", type=int, default=256)
    parser.add_argument("--threshold", type=float, default=0.5, help="overwrite event level")
    parser.add_argument("--slots", type=int, default=None, help="memory slots (default 16)")
    parser.add_argument("--hidden-size", type=int, default=None, help="default 64")
    add_training_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    options = {}
    if args.slots is not None:
        options["memory_slots"] = args.slots
    if args.hidden_size is not None:
        options["hidden_size"] = args.hidden_size
    run_dynamics_experiment(
        args.out,
        steps=args.steps,
        every=args.every,
        bits=args.bits,
        facts=args.facts,
        max_gap=args.max_gap,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        probe_size=args.probe_size,
        threshold=args.threshold,
        model_options=options,
        overwrite=args.overwrite,
        quiet=args.quiet,
        plots=not args.no_plot,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
