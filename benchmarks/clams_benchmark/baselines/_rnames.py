"""Names that R single-cell packages keep as given (unique, no underscores)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["r_safe_names"]


def r_safe_names(names: Sequence[str], *, prefix: str = "") -> list[str]:
    """``names`` made unique and free of ``_`` (Seurat turns ``_`` into ``-`` in features).

    With ``prefix``, cell names are replaced by ``prefix`` + position, which sidesteps any
    character R or Seurat would rewrite; outputs are matched back by position.
    """
    if prefix:
        return [f"{prefix}{i}" for i in range(len(names))]
    out, seen = [], set()
    for name in np.asarray(names).astype(str):
        base = name.replace("_", "-") or "gene"
        new, k = base, 1
        while new in seen:
            new, k = f"{base}.{k}", k + 1
        seen.add(new)
        out.append(new)
    return out
