"""Per-epoch history of a training run."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class History:
    """Rows of per-epoch statistics plus the run's outcome."""

    rows: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    diverged: bool = False
    divergence_epoch: int | None = None
    divergence_reason: str | None = None
    stopped_early: bool = False

    def add(self, **row) -> None:
        self.rows.append(row)

    def table(self) -> pd.DataFrame:
        """One row per epoch: losses, accuracies and energies."""
        return pd.DataFrame(self.rows)

    def to_dict(self) -> dict:
        return {"epochs": self.rows, "best_epoch": self.best_epoch, "diverged": self.diverged,
                "divergence_epoch": self.divergence_epoch,
                "divergence_reason": self.divergence_reason, "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(rows=list(d.get("epochs", [])), best_epoch=d.get("best_epoch"),
                   diverged=bool(d.get("diverged", False)),
                   divergence_epoch=d.get("divergence_epoch"),
                   divergence_reason=d.get("divergence_reason"),
                   stopped_early=bool(d.get("stopped_early", False)))
