"""Experiment 2 of "Memory Is All You Need": continual learning under distribution shift.

A sequence of K tasks (3 by default), each a shifted :mod:`gap_recall
<torchmem.tasks.gap_recall>` (:class:`ShiftedGapRecallTask`, drawn by :func:`task_shifts`):

* **input shift**: task k's fact and query keys come from its own slice of the ``2**bits``
  keys (the slices are disjoint and drawn from the seed; distractors stay uniform noise);
* **answer shift**: its answer is a fixed transformation of the queried value,
  ``target[b] = value[perm_k[b]] ^ mask_k[b]``, the identity for task 0 and different for
  every later task.

The query's key tells which task an example belongs to, so one network can be right on all
the tasks at once (they do not contradict each other), but nothing forces it to keep the old
transformations while it learns a new one: that is what sequential training tests. (Without
the input shift, the same inputs would need different answers per task and old tasks would
be lost by construction.)

Each model (``MODELS``: ``memnet``, ``segment-transformer``, the Transformer without memory,
and ``lstm``) is trained on task 0, then 1, ..., then K - 1, ``steps_per_task`` steps each,
with one Adam optimiser throughout (plain sequential fine-tuning, no replay). Training is the
trainer's step (:func:`~torchmem.train.trainer.forward_with_losses`, the task loss plus the
model's auxiliary terms, gradient clipping at 10, the trainer's seeding): the trainer's
``train`` builds its task by registry name and refuses to resume on another task, so the
loop is written out here. Before training and after each stage the model is scored on every
task's fixed held-out set (:func:`~torchmem.experiments.memnet_gap.score_by_gap`, seeded
``eval_seed(seed)``), which gives the accuracy matrix
``R[i][j]``: accuracy on task j after training on task i. Reported (Lopez-Paz & Ranzato
2017; Chaudhry et al. 2018):

* ``ACC = mean_j R[K-1][j]`` (:func:`average_accuracy`);
* ``BWT = mean_{j<K-1} (R[K-1][j] - R[j][j])`` (:func:`backward_transfer`), negative when
  training on later tasks made the model forget earlier ones;
* ``FWT = mean_{j>0} (R[j-1][j] - b_j)`` with b the untrained model's accuracies
  (:func:`forward_transfer`);
* forgetting per task, ``max_{l<K-1} R[l][j] - R[K-1][j]`` (:func:`forgetting`), and the
  forgetting curves: task j's accuracy after each stage.

With ``--joint`` a fresh copy of each model is also trained on all the tasks interleaved,
batch by batch, for as many steps as the whole sequence: the multi-task reference, which
shows how much of the tasks one network holds when nothing is sequential.

Writes, under the output folder: ``results.json`` (settings, each task's keys and transformation,
one record per model), ``results.md`` (tables) and ``forgetting.png``. Run it with
``python -m torchmem.experiments.memnet_continual --help``.
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

from ..registry import make_model
from ..tasks import GapRecallConfig, GapRecallTask
from ..tasks.base import Batch
from ..train import eval_seed
from ..train.trainer import count_parameters, forward_with_losses, make_optimizer, seed_everything
from ._cli import add_eval_arguments, add_gap_task_arguments, add_training_arguments, names
from .memnet_gap import gap_bins, resolve_options, score_by_gap

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "forgetting.png"

#: Compared model name -> (registry model, options of the variant).
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "memnet": ("memnet", {}),
    "segment-transformer": ("segment-transformer", {}),
    "lstm": ("lstm", {}),
}
DEFAULT_MODELS = tuple(MODELS)

#: Offset of the transformations' seed from the experiment seed (apart from data seeds).
SHIFT_SEED_OFFSET = 7919


# -- metrics -------------------------------------------------------------------------------
def _check_matrix(matrix: Sequence[Sequence[float]]) -> int:
    k = len(matrix)
    if k < 1 or any(len(row) != k for row in matrix):
        raise ValueError("the accuracy matrix must be K x K with K >= 1")
    return k


def average_accuracy(matrix: Sequence[Sequence[float]]) -> float:
    """ACC = mean_j R[K-1][j]: mean accuracy over all tasks after the last stage."""
    k = _check_matrix(matrix)
    return sum(matrix[k - 1]) / k


def backward_transfer(matrix: Sequence[Sequence[float]]) -> float | None:
    """BWT = mean_{j<K-1} (R[K-1][j] - R[j][j]); None for K = 1."""
    k = _check_matrix(matrix)
    if k == 1:
        return None
    return sum(matrix[k - 1][j] - matrix[j][j] for j in range(k - 1)) / (k - 1)


def forward_transfer(matrix: Sequence[Sequence[float]], initial: Sequence[float]) -> float | None:
    """FWT = mean_{j>0} (R[j-1][j] - b_j), b the untrained model's accuracies; None for K = 1."""
    k = _check_matrix(matrix)
    if len(initial) != k:
        raise ValueError(f"initial accuracies must have K = {k} entries, got {len(initial)}")
    if k == 1:
        return None
    return sum(matrix[j - 1][j] - initial[j] for j in range(1, k)) / (k - 1)


def forgetting(matrix: Sequence[Sequence[float]]) -> list[float | None]:
    """Per task j < K-1: max_{l<K-1} R[l][j] - R[K-1][j] (best accuracy lost); None for the
    last task (nothing trained after it)."""
    k = _check_matrix(matrix)
    result: list[float | None] = [
        max(matrix[stage][j] for stage in range(j, k - 1)) - matrix[k - 1][j] for j in range(k - 1)
    ]
    return result + [None]


def forgetting_curves(
    matrix: Sequence[Sequence[float]], initial: Sequence[float] | None = None
) -> list[list[float]]:
    """Per task j: its accuracy after each stage (column j of R), prefixed with the
    untrained accuracy when ``initial`` is given."""
    k = _check_matrix(matrix)
    return [([initial[j]] if initial is not None else []) + [matrix[i][j] for i in range(k)]
            for j in range(k)]  # fmt: skip


# -- the shifted tasks ---------------------------------------------------------------------
#: The largest key width whose keys are dealt out to the tasks (2**16 codes).
MAX_SHIFT_BITS = 16


def task_shifts(tasks: int, bits: int, seed: int, facts: int = 1) -> list[dict[str, list[int]]]:
    """The K tasks' shifts ``{"keys", "permutation", "mask"}``, from a generator seeded
    ``seed + SHIFT_SEED_OFFSET``.

    ``keys``: the key codes (integers, bit b on key channel b) task k draws its facts from,
    every ``K``-th code of a random ordering of all ``2**bits`` codes, so the slices are
    disjoint and each holds at least ``facts`` keys. ``permutation``, ``mask``: the answer's
    transformation, the identity for task 0, each later one redrawn until it differs from every
    earlier one (``2**bits * bits!`` are possible).
    """
    if tasks < 1:
        raise ValueError(f"tasks must be >= 1, got {tasks}")
    if not 1 <= bits <= MAX_SHIFT_BITS:
        raise ValueError(f"bits must be in [1, {MAX_SHIFT_BITS}] to deal out keys, got {bits}")
    if tasks > math.factorial(bits) * 2**bits:
        raise ValueError(f"{tasks} distinct tasks are impossible with {bits} value bits")
    if 2**bits // tasks < facts:
        raise ValueError(
            f"{tasks} tasks with {facts} distinct keys each need 2**bits >= {tasks * facts} "
            f"keys, got bits={bits}"
        )
    generator = torch.Generator().manual_seed(seed + SHIFT_SEED_OFFSET)
    codes = torch.randperm(2**bits, generator=generator).tolist()
    identity = {"permutation": list(range(bits)), "mask": [0] * bits}
    answers = [identity]
    while len(answers) < tasks:
        candidate = {
            "permutation": torch.randperm(bits, generator=generator).tolist(),
            "mask": torch.randint(0, 2, (bits,), generator=generator).tolist(),
        }
        if candidate not in answers:
            answers.append(candidate)
    return [{"keys": sorted(codes[k::tasks]), **answer} for k, answer in enumerate(answers)]


class ShiftedGapRecallTask(GapRecallTask):
    """Gap recall with its fact keys drawn from ``keys`` (integer codes; None: all keys) and
    its answer ``value[permutation] ^ mask``; with neither it is the plain task."""

    name = "gap_recall_shifted"

    def __init__(
        self,
        config: GapRecallConfig | None = None,
        permutation: Sequence[int] | None = None,
        mask: Sequence[int] | None = None,
        keys: Sequence[int] | None = None,
    ) -> None:
        super().__init__(config)
        bits, facts = self.config.bits, self.config.facts
        permutation = list(range(bits)) if permutation is None else [int(p) for p in permutation]
        mask = [0] * bits if mask is None else [int(m) for m in mask]
        if sorted(permutation) != list(range(bits)):
            raise ValueError(f"permutation must reorder 0..{bits - 1}, got {permutation}")
        if len(mask) != bits or any(m not in (0, 1) for m in mask):
            raise ValueError(f"mask must be {bits} bits of 0 or 1, got {mask}")
        if keys is not None:
            keys = [int(k) for k in keys]
            if len(set(keys)) != len(keys) or any(not 0 <= k < 2**bits for k in keys):
                raise ValueError(f"keys must be distinct codes in [0, 2**{bits}), got {keys}")
            if len(keys) < facts:
                raise ValueError(f"{facts} facts need at least {facts} keys, got {len(keys)}")
        self.permutation = permutation
        self.mask = mask
        self.keys = keys

    def draw_keys(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        """``facts`` distinct keys per example, uniform over ``self.keys``."""
        if self.keys is None:
            return super().draw_keys(batch_size, generator, device)
        codes = torch.tensor(self.keys, device=device)
        order = torch.rand(batch_size, len(self.keys), generator=generator, device=device)
        chosen = codes[order.argsort(dim=1)[:, : self.config.facts]]  # (B, K) codes
        channels = torch.arange(self.config.bits, device=device)
        return ((chosen.unsqueeze(-1) >> channels) & 1).float()  # (B, K, bits)

    def shift(self, batch: Batch) -> Batch:
        """The same batch with its targets transformed (scored steps only)."""
        index = torch.tensor(self.permutation, device=batch.targets.device)
        mask = torch.tensor(self.mask, dtype=batch.targets.dtype, device=batch.targets.device)
        shifted = (batch.targets.index_select(-1, index) - mask).abs()  # XOR on 0/1 values
        targets = torch.where(batch.mask.unsqueeze(-1) > 0, shifted, batch.targets)
        return Batch(batch.inputs, targets, batch.mask)

    def sample_with_gaps(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        length: int | None = None,
    ) -> tuple[Batch, torch.Tensor]:
        batch, gaps = super().sample_with_gaps(batch_size, generator, length)
        return self.shift(batch), gaps


# -- the experiment ------------------------------------------------------------------------
def _train_stage(
    model, optimizer, tasks, steps, batch_size, generator, desc: str = "", quiet: bool = True
) -> float:
    """``steps`` of the trainer's step, batch i drawn from ``tasks[i % len(tasks)]`` (one task:
    a stage of the sequence; all of them: joint training); returns the mean task loss."""
    model.train()
    total = 0.0
    for step in tqdm(range(steps), desc=desc, unit="step", leave=False, disable=quiet):
        task = tasks[step % len(tasks)]
        batch = task.sample(batch_size, generator=generator)
        outputs, terms = forward_with_losses(model, batch.inputs)
        task_loss = task.loss(outputs, batch)
        loss = task_loss
        for term in terms.values():
            loss = loss + term.weight * term.value
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        total += float(task_loss.detach())
    return total / max(steps, 1)


def run_continual_experiment(
    out_dir: str | Path,
    models: Sequence[str] = DEFAULT_MODELS,
    tasks: int = 3,
    steps_per_task: int = 500,
    bits: int = 4,
    facts: int = 2,
    max_gap: int = 14,
    segment_length: int = 8,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    eval_batches: int = 2,
    eval_batch_size: int = 256,
    model_options: Mapping[str, Mapping[str, Any]] | None = None,
    joint: bool = False,
    quiet: bool = False,
    plots: bool = True,
) -> dict[str, Any]:
    """Train every model on the task sequence, scoring all tasks after each stage.

    Args:
        out_dir: output folder.
        models: names from ``MODELS``.
        tasks: K, tasks in the sequence (task 0 answers with the recalled value itself).
        steps_per_task, batch_size, lr, seed: training, the same for every model.
        bits, facts, max_gap: the gap recall task (gaps 1..max_gap).
        segment_length: the segment transformer's window.
        eval_batches, eval_batch_size: held-out examples per task (the same for every
            model, seed ``eval_seed(seed)``).
        model_options: extra options per model over ``SCALE_OPTIONS``.
        joint: also train a fresh copy of each model on all tasks interleaved (batch i from
            task i mod K, as many steps as the whole sequence): the multi-task reference,
            which shows how much of the tasks one network can hold at once.
        quiet: no progress bars, no table printed.
        plots: draw the PNG (skipped with a note when matplotlib is missing).

    Returns:
        ``{"settings", "shifts", "results"}`` as written to results.json; a record has
        ``model``, ``options``, ``parameters``, ``initial`` (untrained accuracy per task),
        ``matrix`` (R), ``bit_matrix`` (bit accuracies), ``acc``, ``bwt``, ``fwt``,
        ``forgetting``, ``curves``, ``train_loss`` (per stage), ``cpu_seconds``, and with
        ``joint`` ``joint`` (accuracy per task after joint training) and ``joint_acc``.
    """
    resolved = resolve_options(MODELS, models, model_options, segment_length, "models")
    if steps_per_task < 1:
        raise ValueError(f"steps_per_task must be >= 1, got {steps_per_task}")
    task_options = {"bits": bits, "facts": facts, "min_gap": 1, "max_gap": max_gap}
    config = GapRecallConfig(**task_options)
    shifts = task_shifts(tasks, bits, seed, facts)
    sequence = [ShiftedGapRecallTask(config, **shift) for shift in shifts]
    bins = gap_bins(1, max_gap, max_gap)  # one bin: overall accuracy
    settings = {
        "models": list(models),
        "tasks": tasks,
        "steps_per_task": steps_per_task,
        "task": task_options,
        "segment_length": segment_length,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "eval_batches": eval_batches,
        "eval_batch_size": eval_batch_size,
        "eval_seed": eval_seed(seed),
        "joint": joint,
        "model_options": {name: options for name, (_, options) in resolved.items()},
        "torch_threads": torch.get_num_threads(),
    }

    def score_all(model) -> tuple[list[float], list[float]]:
        scores = [
            score_by_gap(model, task, bins, batches=eval_batches, batch_size=eval_batch_size,
                         seed=eval_seed(seed))
            for task in sequence
        ]  # fmt: skip
        return [s["accuracy"] for s in scores], [s["bit_accuracy"] for s in scores]

    records = []
    bar = tqdm(resolved.items(), desc="memnet continual", unit="model", disable=quiet)
    for name, (registry_name, options) in bar:
        bar.set_postfix_str(name)
        seed_everything(seed)
        model = make_model(registry_name, config.bits * 2 + 2, config.bits, **options)
        optimizer = make_optimizer("adam", model.parameters(), lr)
        generator = torch.Generator().manual_seed(seed)
        initial, _ = score_all(model)
        matrix, bit_matrix, losses = [], [], []
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        for k, task in enumerate(sequence):
            desc = f"{name} task {k}"
            losses.append(
                _train_stage(model, optimizer, [task], steps_per_task, batch_size, generator,
                             desc, quiet)
            )  # fmt: skip
            accuracies, bit_accuracies = score_all(model)
            matrix.append(accuracies)
            bit_matrix.append(bit_accuracies)
        record = {
            "model": name,
            "registry_model": registry_name,
            "options": options,
            "parameters": count_parameters(model),
            "initial": initial,
            "matrix": matrix,
            "bit_matrix": bit_matrix,
            "acc": average_accuracy(matrix),
            "bwt": backward_transfer(matrix),
            "fwt": forward_transfer(matrix, initial),
            "forgetting": forgetting(matrix),
            "curves": forgetting_curves(matrix, initial),
            "train_loss": losses,
            "cpu_seconds": time.process_time() - cpu_start,
            "wall_seconds": time.perf_counter() - wall_start,
        }
        if joint:
            seed_everything(seed)
            model = make_model(registry_name, config.bits * 2 + 2, config.bits, **options)
            optimizer = make_optimizer("adam", model.parameters(), lr)
            generator = torch.Generator().manual_seed(seed)
            total = steps_per_task * len(sequence)
            _train_stage(model, optimizer, sequence, total, batch_size, generator,
                         f"{name} joint", quiet)  # fmt: skip
            record["joint"], _ = score_all(model)
            record["joint_acc"] = sum(record["joint"]) / len(record["joint"])
        records.append(record)
    result = {"settings": settings, "shifts": shifts, "results": records}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_JSON).write_text(json.dumps(result, indent=2) + "\n")
    text = format_tables(records)
    (out / RESULTS_MD).write_text(_markdown(settings, shifts, text))
    if plots:
        note = plot_forgetting(records, out / RESULTS_PNG, settings)
        if note and not quiet:
            tqdm.write(note)
    if not quiet:
        tqdm.write(text)
    return result


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def format_tables(records: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: ACC / BWT / FWT per model, then each model's accuracy matrix."""
    lines = [
        "| model | parameters | ACC | BWT | FWT | forgetting per task | joint ACC |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in records:
        lost = ", ".join(_cell(f) for f in r["forgetting"][:-1]) or "-"
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['acc']:.3f} | "
            f"{_cell(r['bwt'], True)} | {_cell(r['fwt'], True)} | {lost} | "
            f"{_cell(r.get('joint_acc'))} |"
        )
    for r in records:
        k = len(r["matrix"])
        lines += [
            "",
            f"{r['model']}: R[i][j], accuracy on task j (columns) after training on task i",
            "",
            "| after | " + " | ".join(f"task {j}" for j in range(k)) + " |",
            "|---|" + "---:|" * k,
            "| untrained | " + " | ".join(_cell(a) for a in r["initial"]) + " |",
        ]
        lines += [
            f"| task {i} | " + " | ".join(_cell(a) for a in row) + " |"
            for i, row in enumerate(r["matrix"])
        ]
        if "joint" in r:
            lines.append("| all, jointly | " + " | ".join(_cell(a) for a in r["joint"]) + " |")
    return "\n".join(lines) + "\n"


def _markdown(settings: Mapping[str, Any], shifts: Sequence[Mapping], text: str) -> str:
    task = settings["task"]
    described = "; ".join(
        f"task {k}: keys {s['keys']}, permutation {s['permutation']}, mask {s['mask']}"
        for k, s in enumerate(shifts)
    )
    return (
        "# Continual learning: gap recall under a sequence of key and answer shifts\n\n"
        f"{settings['tasks']} tasks trained in turn, {settings['steps_per_task']} steps each "
        f"of batch {settings['batch_size']}, seed {settings['seed']}; {task['facts']} facts, "
        f"{task['bits']} bits (chance {2.0 ** -task['bits']:.3f}), gaps 1-{task['max_gap']}; "
        f"{settings['eval_batches'] * settings['eval_batch_size']} held-out examples per "
        f"task. Tasks: {described}. ACC = mean_j R[K-1][j]; BWT = mean_(j<K-1) "
        "(R[K-1][j] - R[j][j]); FWT = mean_(j>0) (R[j-1][j] - untrained_j); joint ACC: a fresh "
        "model trained on all tasks interleaved for as many steps (the multi-task reference)."
        "\n\n" + text
    )


def plot_forgetting(
    records: Sequence[Mapping[str, Any]], path: str | Path, settings: Mapping[str, Any]
) -> str | None:
    """Forgetting curves: one panel per model, one line per task (accuracy after each
    stage, from the untrained model); returns a note if skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: skipped the plot"
    figure, axes = plt.subplots(
        1, len(records), figsize=(4 * len(records), 3.8), sharey=True, squeeze=False
    )
    stages = ["init"] + [f"T{i}" for i in range(settings["tasks"])]
    for axis, r in zip(axes[0], records):
        for j, curve in enumerate(r["curves"]):
            axis.plot(range(len(curve)), curve, marker="o", markersize=3, label=f"task {j}")
        axis.axhline(2.0 ** -settings["task"]["bits"], color="grey", linewidth=0.8, linestyle=":")
        axis.set_xticks(range(len(stages)), stages)
        axis.set_xlabel("after training on")
        axis.set_title(f"{r['model']}: ACC {r['acc']:.2f}, BWT {_cell(r['bwt'], True)}")
        axis.set_ylim(0, 1)
        axis.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("held-out accuracy")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m torchmem.experiments.memnet_continual",
        description="Train MemNet and baselines on a sequence of shifted gap recall tasks; "
        "write the accuracy matrix, ACC, BWT and forgetting curves.",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/memnet-continual"))
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help="comma-separated, of: "
        + ", ".join(MODELS),
    )  # fmt: skip
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--steps-per-task", type=int, default=500)
    add_gap_task_arguments(parser)
    parser.add_argument("--segment-length", type=int, default=8)
    parser.add_argument(
        "--joint", action="store_true",
        help="also train each model on all tasks interleaved (the multi-task reference)",
    )  # fmt: skip
    add_eval_arguments(parser, 2, 256)
    add_training_arguments(parser, overwrite=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    run_continual_experiment(
        args.out,
        models=names(args.models),
        tasks=args.tasks,
        steps_per_task=args.steps_per_task,
        bits=args.bits,
        facts=args.facts,
        max_gap=args.max_gap,
        segment_length=args.segment_length,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        eval_batches=args.eval_batches,
        eval_batch_size=args.eval_batch_size,
        joint=args.joint,
        quiet=args.quiet,
        plots=not args.no_plot,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
