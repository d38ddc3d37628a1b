"""Config dataclass helpers: build from ``key=value`` overrides with clear errors.

Models and tasks both describe their options as a dataclass; ``build_config`` turns a dict
of overrides (often strings from the command line) into one, or says what was wrong and
which options exist.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(value: Any, kind: Any, what: str) -> Any:
    """Convert ``value`` (possibly a CLI string) to ``kind`` (bool, int, float or str).

    ``"20"`` and ``"20.0"`` are fine for an int; ``"20.5"`` is a mistake worth reporting.
    ``what`` names the option in the error, e.g. ``"option 'bits' of task 'copy'"``.
    """

    def fail() -> ValueError:
        return ValueError(f"{what} expects {getattr(kind, '__name__', kind)}, got {value!r}")

    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise fail()
    if kind in (int, float):
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, str):
            try:
                value = float(value.strip()) if kind is float else _int_or_float(value)
            except ValueError:
                raise fail() from None
        if not isinstance(value, (int, float)):
            raise fail()
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise fail()
            return int(value)
        return float(value)
    if kind is str:
        return str(value)
    return value


def _int_or_float(text: str) -> int | float:
    try:
        return int(text.strip())
    except ValueError:
        return float(text)


def build_config(config_cls: type[C], overrides: dict[str, Any], owner: str) -> C:
    """Instantiate ``config_cls`` from overrides (hyphens accepted for underscores).

    Unknown names raise a ValueError listing the valid options; values are converted to the
    field's declared type; ``None`` leaves the default (so unset CLI options pass through).
    """
    hints = typing.get_type_hints(config_cls)
    valid = [f.name for f in dataclasses.fields(config_cls)]
    values: dict[str, Any] = {}
    for option, value in overrides.items():
        name = option.replace("-", "_")
        if name not in valid:
            raise ValueError(
                f"unknown option {option!r} for {owner}; valid options: {', '.join(valid)}"
            )
        if value is not None:
            values[name] = coerce(value, hints.get(name), f"{owner} option {name!r}")
    return config_cls(**values)


def config_fields(config_cls: type) -> dict[str, Any]:
    """``{name: default}`` for a config dataclass (``MISSING`` for required fields)."""
    out = {}
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
        else:
            out[f.name] = dataclasses.MISSING
    return out


__all__ = ["build_config", "coerce", "config_fields"]
