"""The ``torchmem`` command: a thin layer that parses arguments and calls library functions.

Subcommands: ``train``, ``eval``, ``plot``, ``list``, ``compare``, ``bench``,
``bench-memoria``, ``memory`` and ``serve`` (the personal memory and its HTTP service,
:mod:`torchmem.personal.cli`).
Errors from the library (unknown names or options, missing or corrupt files, bad input)
print one line, ``torchmem: error: <message>``, and exit with status 2; set
``TORCHMEM_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2

_EXAMPLES_TRAIN = """\
examples:
  torchmem train --model dnc --task copy --steps 2000
  torchmem train --model ntm --set memory_slots=64 --set task.max_length=10 --out runs/ntm10
  torchmem train --out runs/ntm10 --steps 4000 --resume

--set KEY=VALUE sets a model option, a task option or a train option (see `torchmem list`);
prefix the key with model., task. or train. when a name is ambiguous.
"""

_EXAMPLES_COMPARE = """\
examples:
  torchmem compare --steps 1000 --eval-length 40
  torchmem compare --models ntm,lstm --task repeat_copy --set ntm.memory_slots=64

--set KEY=VALUE: model.KEY (or a bare model option) sets it for every compared model that has
it, MODEL.KEY (e.g. ntm.memory_slots) for one model; task.KEY and train.KEY as for `train`.
"""


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an option (repeatable); `torchmem list` shows them all",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``torchmem`` command."""
    from .registry import MODELS
    from .tasks import TASKS

    models, tasks = ", ".join(sorted(MODELS)), ", ".join(sorted(TASKS))
    parser = argparse.ArgumentParser(
        prog="torchmem",
        description="Neural memory architectures in PyTorch: train, evaluate, plot and compare.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a model on a task into a run folder",
        description="Train a model on a task; writes config.json, metrics.jsonl and checkpoint.pt.",
        epilog=_EXAMPLES_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--model", help=f"model to train ({models}; default ntm)")
    train.add_argument("--task", help=f"task to train on ({tasks}; default copy)")
    _add_set(train)
    train.add_argument("--out", type=Path, help="run folder (default runs/MODEL-TASK-sSEED)")
    train.add_argument("--steps", type=int, help="total optimiser steps (default 5000)")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--batch-size", type=int, help="sequences per step (default 16)")
    train.add_argument("--lr", type=float, help="learning rate (default 0.001)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar, no messages")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "eval",
        help="score a trained run on held-out data; prints one JSON object",
        description="Score a run on held-out data, optionally at a forced (longer) length. "
        "Prints one JSON object with loss, bit_errors_per_sequence, sequence_accuracy, "
        "length, model, task, step and checkpoint.",
    )
    evaluate.add_argument("run", type=Path, help="run folder (or checkpoint file)")
    evaluate.add_argument("--length", type=int, help="forced sequence length / item count")
    evaluate.add_argument("--batches", type=int, default=4, help="held-out batches (default 4)")
    evaluate.add_argument(
        "--batch-size", type=int, default=64, help="sequences per batch (default 64)"
    )
    evaluate.add_argument("--seed", type=int, help="held-out data seed (default: the run's own)")
    evaluate.add_argument(
        "--best",
        action="store_true",
        help="score best.pt, the best held-out evaluation during training, instead of the "
        "latest checkpoint (chosen on the run's own held-out data: report it with --seed)",
    )
    evaluate.set_defaults(handler=_eval)

    plot = commands.add_parser(
        "plot",
        help="draw a run's learning curves and memory access",
        description="Write learning_curve.png and, for memory models, memory_access.png.",
    )
    plot.add_argument("run", type=Path, help="run folder")
    plot.add_argument("--out", type=Path, help="folder for the PNG files (default: the run folder)")
    plot.set_defaults(handler=_plot)

    listing = commands.add_parser(
        "list",
        help="list models, tasks and their options",
        description="List the registered models and tasks with every option and its default.",
    )
    listing.set_defaults(handler=_list)

    compare = commands.add_parser(
        "compare",
        help="train several models on one task and compare them",
        description="Train each model with the same budget and data, score them on held-out "
        "data, print a markdown table and write comparison.md/.json/.png.",
        epilog=_EXAMPLES_COMPARE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument(
        "--models", default="ntm,dnc,lstm", help="comma-separated (default ntm,dnc,lstm)"
    )
    compare.add_argument("--task", default="copy", help=f"task ({tasks}; default copy)")
    compare.add_argument("--steps", type=int, default=1000, help="steps per model (default 1000)")
    compare.add_argument("--eval-length", type=int, help="also score at this longer length")
    compare.add_argument("--out", type=Path, help="output folder (default runs/compare-TASK-sSEED)")
    compare.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_set(compare)
    compare.add_argument("--overwrite", action="store_true", help="replace runs already in --out")
    compare.add_argument("--quiet", action="store_true", help="no progress bars, no table")
    compare.set_defaults(handler=_compare)

    from .personal.cli import add_memory_parser, add_serve_parser

    add_memory_parser(commands)
    add_serve_parser(commands)

    # `torchmem bench ...` and `torchmem bench-memoria ...` are dispatched in main before
    # parsing (their arguments belong to the benchmark); the entries here document them in
    # `torchmem --help`.
    commands.add_parser(
        "bench",
        help="run the DNC benchmarks (arguments go to torchmem.bench.dnc_bench)",
        add_help=False,
    )
    commands.add_parser(
        "bench-memoria",
        help="run the Memoria benchmark (arguments go to torchmem.bench.memoria_bench)",
        add_help=False,
    )
    return parser


# ----------------------------------------------------------------------------------------
# Handlers: each turns parsed arguments into one library call
# ----------------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    from .train import make_train_config, parse_assignments, saved_train_config, train

    assignments = parse_assignments(args.assignments)
    explicit = {
        "steps": args.steps,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "lr": args.lr,
    }
    if args.resume:
        out = args.out
        if out is None:
            seed = 0 if args.seed is None else args.seed
            out = Path("runs") / f"{args.model or 'ntm'}-{args.task or 'copy'}-s{seed}"
        base = saved_train_config(out)
        config = make_train_config(args.model, args.task, assignments, base=base, **explicit)
    else:
        config = make_train_config(args.model, args.task, assignments, **explicit)
        out = args.out or Path("runs") / f"{config.model}-{config.task}-s{config.seed}"
    train(config, out, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .train import evaluate

    result = evaluate(
        args.run,
        length=args.length,
        batches=args.batches,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint="best" if args.best else "latest",
    )
    print(json.dumps(result))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .viz import plot_run

    for path in plot_run(args.run, args.out):
        print(path)
    return 0


def _format_options(options: dict[str, Any]) -> str:
    return " ".join(
        f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"
        for key, value in options.items()
    )


def _list(args: argparse.Namespace) -> int:
    from .registry import MODELS
    from .tasks import TASKS
    from .train import settable_model_options, task_options, train_options

    width = max(len(name) for name in [*MODELS, *TASKS]) + 2
    lines = ["models (--model; options with --set KEY=VALUE):"]
    for name in sorted(MODELS):
        lines.append(f"  {name:<{width}}{MODELS[name].summary}")
        lines.append(f"  {'':<{width}}{_format_options(settable_model_options(name))}")
    lines.append("tasks (--task):")
    for name in sorted(TASKS):
        doc = (TASKS[name][0].__doc__ or "").strip().splitlines()
        summary = doc[0].replace("``", "") if doc else ""
        lines.append(f"  {name:<{width}}{summary}")
        lines.append(f"  {'':<{width}}{_format_options(task_options(name))}")
    lines.append("train options (--set train.KEY=VALUE):")
    lines.append(f"  {_format_options(train_options())}")
    print("\n".join(lines))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .experiments import compare, split_compare_overrides
    from .train import parse_assignments

    models = [name.strip() for name in args.models.split(",") if name.strip()]
    per_model, task_opts, train_opts = split_compare_overrides(
        models, args.task, parse_assignments(args.assignments)
    )
    compare(
        models,
        task=args.task,
        steps=args.steps,
        out_dir=args.out,
        seed=args.seed,
        eval_length=args.eval_length,
        quiet=args.quiet,
        model_options=per_model,
        task_options=task_opts,
        train_options=train_opts,
        overwrite=args.overwrite,
    )
    return 0


# subcommand -> benchmark module; each benchmark parses its own arguments
_BENCHMARKS = {"bench": "torchmem.bench.dnc_bench", "bench-memoria": "torchmem.bench.memoria_bench"}


def _bench(argv: list[str], module_name: str = _BENCHMARKS["bench"]) -> int:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise ValueError("the benchmarks are not available in this installation") from None
    try:
        status = module.main(argv)
    except SystemExit as exit_:  # the benchmark's own argparse (--help, usage errors)
        status = exit_.code
    if isinstance(status, str):
        print(status, file=sys.stderr)
        return 1
    return int(status or 0)


# ----------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``torchmem`` command; returns the exit status instead of exiting."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] and argv[0] in _BENCHMARKS:
            return _bench(argv[1:], _BENCHMARKS[argv[0]])
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help (0) or a usage error (2, already printed)
            return (
                exit_.code
                if isinstance(exit_.code, int)
                else (0 if exit_.code is None else EXIT_USAGE)
            )
        return args.handler(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError, KeyError) as error:
        if os.environ.get("TORCHMEM_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"torchmem: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("torchmem: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `torchmem list | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
