"""Stratified train/validation/test split (8:1:1 by default, as the paper)."""

from __future__ import annotations

import numpy as np


def stratified_split(y: np.ndarray, *, val_fraction: float = 0.1, test_fraction: float = 0.1,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train, validation and test cells, stratified by class.

    Every class keeps at least one training cell; a class with two cells gives one to
    validation, with three or more also one to test when ``test_fraction > 0``.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError("val_fraction and test_fraction must be >= 0 and sum to less than 1")
    train, val, test = [], [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = idx.size
        n_test = int(np.floor(test_fraction * n + 0.5)) if n >= 3 else 0
        n_test = min(max(n_test, 1 if (test_fraction > 0 and n >= 3) else 0), n - 2)
        n_val = int(np.floor(val_fraction * n + 0.5))
        n_val = min(max(n_val, 1 if (val_fraction > 0 and n >= 2) else 0), n - 1 - n_test)
        test.append(idx[:n_test])
        val.append(idx[n_test:n_test + n_val])
        train.append(idx[n_test + n_val:])
    return tuple(np.sort(np.concatenate(part)) for part in (train, val, test))
