"""Settings dataclasses built from an instance, a dict of overrides or None (the defaults)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

import numpy as np

from .errors import PyClamsInputError

T = TypeVar("T")


def check_whole(value: Any, name: str, minimum: int) -> int:
    """``value`` if it is a whole number (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise PyClamsInputError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return int(value)


def build_config(cls: type[T], value: Any, name: str) -> T:
    """``cls`` from an instance, a dict of overrides or None; unknown keys are an error."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}
        bad = sorted(set(value) - known)
        if bad:
            raise PyClamsInputError(f"unknown {name} setting(s) {bad}; known: {sorted(known)}")
        try:
            return cls(**value)
        except (TypeError, ValueError) as err:
            raise PyClamsInputError(f"bad {name} settings: {err}") from None
    raise PyClamsInputError(f"{name} must be a {cls.__name__} or a dict, not {type(value)}")
