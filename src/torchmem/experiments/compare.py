"""Train several models on one task with the same budget and compare them.

``compare`` writes, under its output folder, one run folder per model (``<out>/<model>``,
each with its own plots) and ``comparison.md`` (a markdown table), ``comparison.json``
(settings and every number) and ``comparison.png`` (held-out learning curves and final
scores).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..registry import MODELS
from ..train import (
    TrainConfig,
    count_parameters,
    evaluate,
    load_run,
    read_metrics,
    settable_model_options,
    split_overrides,
    task_options,
    train,
    train_options,
)

COMPARISON_MD = "comparison.md"
COMPARISON_JSON = "comparison.json"
COMPARISON_PNG = "comparison.png"

DEFAULT_MODELS = ("ntm", "dnc", "lstm")


def compare(
    models: Sequence[str] = DEFAULT_MODELS,
    task: str = "copy",
    steps: int = 1000,
    out_dir: str | Path | None = None,
    seed: int = 0,
    eval_length: int | None = None,
    quiet: bool = False,
    model_options: Mapping[str, Mapping[str, Any]] | None = None,
    task_options: Mapping[str, Any] | None = None,
    train_options: Mapping[str, Any] | None = None,
    *,
    eval_batches: int = 4,
    eval_batch_size: int = 64,
    overwrite: bool = False,
    plots: bool = True,
) -> list[dict[str, Any]]:
    """Train each model on ``task`` for ``steps`` steps and score them on held-out data.

    Every model sees the same training batches (same seed) and the same held-out batches.

    Args:
        models: registry names, e.g. ``("ntm", "dnc", "lstm")``.
        task: registry name of the task.
        steps: optimiser steps per model.
        out_dir: output folder (``runs/compare-<task>-s<seed>`` when None).
        seed: seed of every run.
        eval_length: also score at this forced sequence length (longer than trained on,
            to measure generalisation); None skips it.
        quiet: print nothing (no progress bars, no table).
        model_options: per model name, options for that model,
            e.g. ``{"ntm": {"memory_slots": 64}}``.
        task_options: task config overrides, shared by every run.
        train_options: other :class:`TrainConfig` fields, e.g. ``{"batch_size": 32}``.
        eval_batches, eval_batch_size: held-out data for the final scores.
        overwrite: replace run folders left by an earlier comparison.
        plots: draw the comparison and per-run plots (skipped, with a note, when
            matplotlib is not installed).

    Returns:
        One dict per model: ``model``, ``task``, ``run_dir``, ``parameters``, ``steps``,
        ``cpu_seconds`` and ``wall_seconds`` (of its training loop, evaluations included),
        ``total_cpu_seconds`` (of the whole ``train`` call, set-up included),
        ``loss``, ``bit_errors_per_sequence``, ``sequence_accuracy`` (held-out, training
        lengths), ``eval_length`` and, when it is set, ``loss_at_length``,
        ``bit_errors_per_sequence_at_length``, ``sequence_accuracy_at_length``.
    """
    models = list(models)
    if not models:
        raise ValueError(f"no models to compare; valid models: {', '.join(sorted(MODELS))}")
    for name in models:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    if len(set(models)) != len(models):
        raise ValueError(f"each model may appear once, got {', '.join(models)}")
    model_options = dict(model_options or {})
    strays = sorted(set(model_options) - set(models))
    if strays:
        raise ValueError(
            f"model options given for {', '.join(strays)}, which is not among the compared "
            f"models ({', '.join(models)})"
        )
    train_options = dict(train_options or {})
    clash = sorted(
        set(train_options) & {"model", "task", "steps", "seed", "model_options", "task_options"}
    )
    if clash:
        raise ValueError(
            f"train_options may not set {', '.join(clash)}; use compare's own arguments"
        )

    out = Path(out_dir) if out_dir is not None else Path("runs") / f"compare-{task}-s{seed}"
    configs = {
        name: TrainConfig(
            model=name,
            task=task,
            steps=steps,
            seed=seed,
            model_options=dict(model_options.get(name, {})),
            task_options=dict(task_options or {}),
            **train_options,
        )
        for name in models
    }  # built up front so that a bad option fails before any training

    results = []
    for name, config in configs.items():
        run_dir = out / name
        cpu_start = time.process_time()
        final = train(config, run_dir, quiet=quiet, overwrite=overwrite)
        total_cpu_seconds = time.process_time() - cpu_start
        model, task_obj, _, _ = load_run(run_dir)
        scores = {"batches": eval_batches, "batch_size": eval_batch_size}
        held_out = evaluate(run_dir, **scores)
        result: dict[str, Any] = {
            "model": name,
            "task": config.task,
            "run_dir": str(run_dir),
            "parameters": count_parameters(model),
            "steps": config.steps,
            # The training loop's own process_time difference, as logged by train: the
            # setup around it includes one-off imports (torch.optim pulls in torch._dynamo,
            # about 3 CPU s) that would be charged to whichever model runs first.
            "cpu_seconds": final["cpu_seconds"],
            "wall_seconds": final["wall_seconds"],
            "total_cpu_seconds": total_cpu_seconds,
            "loss": held_out["loss"],
            "bit_errors_per_sequence": held_out["bit_errors_per_sequence"],
            "sequence_accuracy": held_out["sequence_accuracy"],
            "eval_length": eval_length,
        }
        if eval_length is not None:
            longer = evaluate(run_dir, length=eval_length, **scores)
            result["loss_at_length"] = longer["loss"]
            result["bit_errors_per_sequence_at_length"] = longer["bit_errors_per_sequence"]
            result["sequence_accuracy_at_length"] = longer["sequence_accuracy"]
        results.append(result)

    table = format_table(results)
    settings = (
        f"Task `{task}`, {steps} steps per model, seed {seed}, batch size "
        f"{configs[models[0]].batch_size}; held-out scores over "
        f"{eval_batches} x {eval_batch_size} sequences."
    )
    (out / COMPARISON_MD).write_text(f"# Model comparison\n\n{settings}\n\n{table}\n")
    summary = {
        "task": task,
        "steps": steps,
        "seed": seed,
        "eval_length": eval_length,
        "train_config": {name: dataclasses.asdict(c) for name, c in configs.items()},
        "results": results,
    }
    (out / COMPARISON_JSON).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if plots:
        _draw(results, out, task, quiet)
    if not quiet:
        print(table)
        print(f"\nwrote {out / COMPARISON_MD}, {out / COMPARISON_JSON}")
    return results


def split_compare_overrides(
    models: Sequence[str], task: str, assignments: Mapping[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Sort ``key=value`` overrides into (per-model options, task options, train options).

    ``<model>.key`` (e.g. ``ntm.memory_slots``) sets one model's option; ``model.key`` or a
    bare model option sets it for every compared model that has it; ``task.key`` /
    ``train.key`` or a bare task / train option as for :func:`~torchmem.train.split_overrides`.

    Raises:
        ValueError: unknown, ambiguous or mistyped options, listing the valid ones.
    """
    models = list(models)
    for name in models:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    per_model: dict[str, dict[str, Any]] = {name: {} for name in models}
    task_opts: dict[str, Any] = {}
    train_opts: dict[str, Any] = {}
    model_opts = {name: settable_model_options(name) for name in models}

    def valid_list() -> str:
        per = "; ".join(f"{name}: {', '.join(opts)}" for name, opts in model_opts.items())
        return (
            f"valid model options ({per}), written as model.KEY for every model that has it or "
            f"MODEL.KEY for one; task options ({task}): {', '.join(task_options(task))}; "
            f"train options: {', '.join(train_options())}"
        )

    for key, value in assignments.items():
        prefix, dot, name = key.partition(".")
        if dot and prefix in per_model:
            if name not in model_opts[prefix]:
                raise ValueError(f"unknown option {name!r} for model {prefix}; {valid_list()}")
            per_model[prefix].update(split_overrides(prefix, task, {f"model.{name}": value})[0])
            continue
        if dot and prefix not in ("model", "task", "train"):
            raise ValueError(
                f"unknown prefix {prefix!r} in {key!r}: use model., task., train. or one of the "
                f"compared models ({', '.join(models)})"
            )
        group = prefix if dot else None
        option = name if dot else key
        owners = [m for m in models if option in model_opts[m]] if group in (None, "model") else []
        kinds = ["model"] if owners else []
        if group in (None, "task") and option in task_options(task):
            kinds.append("task")
        if group in (None, "train") and option in train_options():
            kinds.append("train")
        if not kinds:
            raise ValueError(f"unknown option {key!r}; {valid_list()}")
        if len(kinds) > 1:
            spelled = " or ".join(f"{kind}.{option}" for kind in kinds)
            raise ValueError(f"option {key!r} is ambiguous; write {spelled}")
        if kinds == ["model"]:
            for owner in owners:
                per_model[owner].update(split_overrides(owner, task, {f"model.{option}": value})[0])
        elif kinds == ["task"]:
            task_opts[option] = value
        else:
            train_opts.update(split_overrides(models[0], task, {f"train.{option}": value})[2])
    # Task options are checked together: a task config may relate them (min <= max length).
    task_opts = split_overrides(models[0], task, {f"task.{k}": v for k, v in task_opts.items()})[1]
    return per_model, task_opts, train_opts


def _draw(results: list[dict[str, Any]], out: Path, task: str, quiet: bool) -> None:
    from ..viz import plot_comparison, plot_run

    try:
        with_records = [{**r, "records": read_metrics(r["run_dir"])} for r in results]
        plot_comparison(with_records, out / COMPARISON_PNG, title=f"held-out bit errors on {task}")
        for result in results:
            plot_run(result["run_dir"])
    except ImportError as error:  # matplotlib is optional; the numbers are already written
        if not quiet:
            print(f"skipping plots: {error}")


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(results: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of :func:`compare`'s results, one row per model.

    Columns: model, parameters, steps, CPU seconds, held-out bit errors per sequence at the
    training lengths, at the forced length L (when one was asked for), and held-out
    sequence accuracy.
    """
    length = next((r.get("eval_length") for r in results if r.get("eval_length") is not None), None)
    header = ["model", "params", "steps", "CPU s", "bit errors/seq (held-out)"]
    if length is not None:
        header.append(f"bit errors/seq (length {length})")
    header.append("sequence accuracy")
    rows = []
    for r in results:
        row = [
            str(r["model"]),
            f"{int(r['parameters']):,}",
            str(r["steps"]),
            _number(r.get("cpu_seconds"), 1),
            _number(r.get("bit_errors_per_sequence"), 3),
        ]
        if length is not None:
            row.append(_number(r.get("bit_errors_per_sequence_at_length"), 3))
        row.append(_number(r.get("sequence_accuracy"), 3))
        rows.append(row)
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join("-" * (w + 1) + ":" if i else ":" + "-" * (w + 1) for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


__all__ = [
    "COMPARISON_JSON",
    "COMPARISON_MD",
    "COMPARISON_PNG",
    "DEFAULT_MODELS",
    "compare",
    "format_table",
    "split_compare_overrides",
]
