"""Algorithmic tasks for memory-augmented networks, and a name registry.

Example::

    task = make_task("copy", max_length="10")
    batch = task.sample(4, torch.Generator().manual_seed(0))
    loss = task.loss(model(batch.inputs), batch)
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

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
    "PrioritySortConfig",
    "PrioritySortTask",
]

#: Task name -> (task class, config class). Task classes take the config as
#: their only constructor argument.
TASKS: dict[str, tuple[type, type]] = {
    "copy": (CopyTask, CopyConfig),
    "repeat_copy": (RepeatCopyTask, RepeatCopyConfig),
    "associative_recall": (AssociativeRecallTask, AssociativeRecallConfig),
    "priority_sort": (PrioritySortTask, PrioritySortConfig),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(task: str, option: str, value: Any, kind: Any) -> Any:
    """Convert ``value`` (possibly a CLI string) to the config field's type."""

    def fail() -> ValueError:
        name = getattr(kind, "__name__", str(kind))
        return ValueError(f"option {option!r} of task {task!r} expects {name}, got {value!r}")

    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise fail()
    if kind is int:
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
            try:
                value_f = float(value)
            except ValueError:
                raise fail() from None
        elif isinstance(value, float):
            value_f = value
        else:
            raise fail()
        # "20.0" or 20.0 are fine as an int; 20.5 is a mistake worth reporting.
        if value_f.is_integer():
            return int(value_f)
        raise fail()
    if kind is float:
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise fail() from None
        raise fail()
    if kind is str:
        return str(value)
    return value


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
    hints = typing.get_type_hints(config_cls)
    valid = [f.name for f in dataclasses.fields(config_cls)]

    kwargs: dict[str, Any] = {}
    for option, value in overrides.items():
        field = option.replace("-", "_")
        if field not in valid:
            raise ValueError(
                f"unknown option {option!r} for task {key!r}; valid options: {', '.join(valid)}"
            )
        if value is None:
            continue
        kwargs[field] = _coerce(key, field, value, hints.get(field))
    return task_cls(config_cls(**kwargs))


def task_config(task: Task) -> dict[str, Any]:
    """The task's config as a plain dict (``dataclasses.asdict``), for run folders.

    ``make_task(task.name, **task_config(task))`` rebuilds an equal task.
    """
    config = getattr(task, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise ValueError(f"task {getattr(task, 'name', task)!r} has no dataclass config")
    return dataclasses.asdict(config)
