"""Command-line pieces shared by the experiment scripts (``python -m torchmem.experiments.*``)."""

from __future__ import annotations

import argparse


def add_training_arguments(parser: argparse.ArgumentParser, *, overwrite: bool = True) -> None:
    """--batch-size, --lr, --seed, --threads, [--overwrite,] --quiet and --no-plot."""
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    if overwrite:
        parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--no-plot", action="store_true")


def add_eval_arguments(parser: argparse.ArgumentParser, batches: int, batch_size: int) -> None:
    """--eval-batches and --eval-batch-size with this script's defaults."""
    parser.add_argument("--eval-batches", type=int, default=batches)
    parser.add_argument("--eval-batch-size", type=int, default=batch_size)


def add_gap_task_arguments(parser: argparse.ArgumentParser) -> None:
    """The gap_recall task's --bits, --facts and --max-gap."""
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--facts", type=int, default=2)
    parser.add_argument("--max-gap", type=int, default=14)


def names(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']: a comma-separated list of model or variant names."""
    return [name.strip() for name in text.split(",") if name.strip()]
