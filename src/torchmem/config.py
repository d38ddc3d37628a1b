"""Config dataclass helpers: build from ``key=value`` overrides with clear errors."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(value: Any, field: dataclasses.Field, owner: str) -> Any:
    """Turn a CLI string such as ``"20"`` or ``"false"`` into the field's declared type."""
    if not isinstance(value, str):
        return value
    hint = field.type if not isinstance(field.type, str) else None
    default = field.default if field.default is not dataclasses.MISSING else None
    kind = hint if isinstance(hint, type) else (type(default) if default is not None else None)
    if kind is None and isinstance(field.type, str):
        kind = {"int": int, "float": float, "bool": bool, "str": str}.get(
            field.type.split("|")[0].strip()
        )
    try:
        if kind is bool:
            low = value.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(value)
        if kind in (int, float):
            return kind(value)
    except ValueError:
        raise ValueError(
            f"{owner} option {field.name!r} expects {kind.__name__}, got {value!r}"
        ) from None
    return value


def build_config(config_cls: type[C], overrides: dict[str, Any], owner: str) -> C:
    """Instantiate ``config_cls`` from overrides, rejecting unknown names with the valid list."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for {owner}; "
            f"valid options: {', '.join(sorted(fields))}"
        )
    values = {k: _coerce(v, fields[k], owner) for k, v in overrides.items()}
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


__all__ = ["build_config", "config_fields"]
