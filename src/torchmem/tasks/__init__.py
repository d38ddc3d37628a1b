"""Algorithmic tasks for memory-augmented networks, and a name registry.

Example::

    task = make_task("copy", max_length="10")
    batch = task.sample(4, torch.Generator().manual_seed(0))
    loss = task.loss(model(batch.inputs), batch)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import build_config
from .base import Batch, BitTask, Task
from .bits import (
    AssociativeRecallConfig,
    AssociativeRecallTask,
    CopyConfig,
    CopyTask,
    PrioritySortConfig,
    PrioritySortTask,
    RepeatCopyConfig,
    RepeatCopyTask,
)
from .gap_recall import GapRecallConfig, GapRecallTask, gaps_of
from .one_shot import OneShotConfig, OneShotTask
from .sorting import SortingConfig, SortingTask

__all__ = [
    "Batch",
    "Task",
    "BitTask",
    "TASKS",
    "make_task",
    "task_config",
    "CopyConfig",
    "CopyTask",
    "RepeatCopyConfig",
    "RepeatCopyTask",
    "AssociativeRecallConfig",
    "AssociativeRecallTask",
    "GapRecallConfig",
    "GapRecallTask",
    "gaps_of",
    "OneShotConfig",
    "OneShotTask",
    "PrioritySortConfig",
    "PrioritySortTask",
    "SortingConfig",
    "SortingTask",
]

#: Task name -> (task class, config class). Task classes take the config as
#: their only constructor argument.
TASKS: dict[str, tuple[type, type]] = {
    "copy": (CopyTask, CopyConfig),
    "repeat_copy": (RepeatCopyTask, RepeatCopyConfig),
    "associative_recall": (AssociativeRecallTask, AssociativeRecallConfig),
    "gap_recall": (GapRecallTask, GapRecallConfig),
    "priority_sort": (PrioritySortTask, PrioritySortConfig),
    "sorting": (SortingTask, SortingConfig),
    "one_shot": (OneShotTask, OneShotConfig),
}


def make_task(name: str, **overrides: Any) -> Task:
    """Build a task by registry name, overriding config defaults.

    Args:
        name: one of ``TASKS`` (hyphens are accepted for underscores).
        **overrides: config fields (hyphens accepted); values may be strings
            such as ``"20"`` or ``"0.5"``, converted to the field's type.
            ``None`` values are skipped, leaving the default, so unset CLI
            options can be passed straight through.

    Raises:
        ValueError: unknown task name, unknown option, a value that does not
            convert, or an invalid configuration (e.g. min > max).
    """
    key = name.strip().replace("-", "_")
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    task_cls, config_cls = TASKS[key]
    return task_cls(build_config(config_cls, overrides, f"task {key!r}"))


def task_config(task: Task) -> dict[str, Any]:
    """The task's config as a plain dict (``dataclasses.asdict``), for run folders.

    ``make_task(task.name, **task_config(task))`` rebuilds an equal task.
    """
    config = getattr(task, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise ValueError(f"task {getattr(task, 'name', task)!r} has no dataclass config")
    return dataclasses.asdict(config)
