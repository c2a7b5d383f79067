"""The one progress-bar helper of the package."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, verbose: bool = True,
             leave: bool = False) -> tqdm:
    """Wrap ``iterable`` in a tqdm bar that is silent when ``verbose`` is False."""
    return tqdm(iterable, desc=desc, total=total, disable=not verbose, leave=leave,
                dynamic_ncols=True)
