"""On-disk cache of finished benchmark runs, so that an interrupted benchmark resumes.

One run is keyed by (experiment, protocol, method, seed) and stored under
``<root>/<experiment>/<protocol>/<method>/seed<seed>``:

* ``.json``: the metrics row (status, reason, wall time, metrics, extra facts) and the hash of
  the options it ran with;
* ``.csv.gz``: the per-cell predictions with the true label (for the figures), when it ran.

Only runs with ``status == "ok"`` are reused; a failed or not-installed method is retried on
the next run (it may have been fixed or installed since). A cached run whose options differ
(other epochs, device...) is run again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger("pyclams")

__all__ = ["RunKey", "RunCache", "options_hash", "slug"]


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (``"CD14+ Mono"`` -> ``"CD14p_Mono"``)."""
    text = str(text).replace("+", "p")
    return re.sub(r"[^A-Za-z0-9_.=\-]+", "_", text).strip("_") or "_"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def options_hash(options: dict) -> str:
    """Short stable hash of a method's options (JSON with sorted keys)."""
    text = json.dumps(_jsonable(options), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunKey:
    """What identifies one run."""

    experiment: str
    protocol: str
    method: str
    seed: int

    def stem(self, root: Path) -> Path:
        return root / slug(self.experiment) / slug(self.protocol) / slug(self.method) / \
            f"seed{self.seed}"


class RunCache:
    """Finished runs under ``root`` (created on the first write)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def load(self, key: RunKey, options: dict) -> tuple[dict, pd.DataFrame | None] | None:
        """The cached ``(row, predictions)`` of ``key`` when it ran fine with ``options``."""
        stem = key.stem(self.root)
        meta = stem.with_suffix(".json")
        if not meta.exists():
            return None
        try:
            stored = json.loads(meta.read_text())
        except (OSError, ValueError) as err:
            logger.warning("ignoring unreadable cache entry %s: %s", meta, err)
            return None
        if stored.get("options_hash") != options_hash(options):
            return None
        row = stored.get("row", {})
        if row.get("status") != "ok":
            return None
        return row, self.predictions(key)

    def predictions(self, key: RunKey) -> pd.DataFrame | None:
        """The stored per-cell table of ``key`` (``None`` when there is none)."""
        path = key.stem(self.root).with_suffix(".csv.gz")
        if not path.exists():
            return None
        return pd.read_csv(path, index_col=0, keep_default_na=False, na_values=[""],
                           dtype={"label": str, "label_raw": str, "truth": str})

    def save(self, key: RunKey, options: dict, row: dict,
             predictions: pd.DataFrame | None) -> None:
        """Store a run (predictions first, so a readable ``.json`` means a complete entry)."""
        stem = key.stem(self.root)
        stem.parent.mkdir(parents=True, exist_ok=True)
        if predictions is not None:
            predictions.to_csv(stem.with_suffix(".csv.gz"))
        meta = {"key": _jsonable(key.__dict__), "options": _jsonable(options),
                "options_hash": options_hash(options), "row": _jsonable(row)}
        tmp = stem.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=1, default=str))
        tmp.replace(stem.with_suffix(".json"))
